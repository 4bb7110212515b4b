/* SPDX-License-Identifier: MIT */
/*
 * SQLite fixture writer (see fixture.h). Speed matters — benchmarks build tables of ten million
 * rows — so the temporary file is written with the journal off and without syncs inside one
 * transaction; durability comes from the final fsync-free rename being of a complete, closed file
 * (a crash mid-way leaves only the temporary name, which the next run replaces).
 */
#include "converge/fixture.h"
#include "store_int.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct cvg_fixture {
  sqlite3 *db;       /* OWNED */
  sqlite3_stmt *ins; /* OWNED insert statement */
  char *path;        /* OWNED final path */
  char *tmp;         /* OWNED temporary path */
  size_t n_cols;     /* values per row */
};

static int fail_db(cvg_fixture *fx, const char *doing, cvg_error *err) {
  return cvg_error_set(err, CVG_ESTORE, fx->path, "%s: %s", doing,
                       fx->db ? sqlite3_errmsg(fx->db) : "cannot open");
}

void cvg_fixture_abort(cvg_fixture *fx) {
  if (!fx)
    return;
  sqlite3_finalize(fx->ins);
  sqlite3_close_v2(fx->db);
  if (fx->tmp)
    unlink(fx->tmp);
  free(fx->path);
  free(fx->tmp);
  free(fx);
}

int cvg_fixture_create(cvg_fixture **out, const char *path, const cvg_table_desc *schema,
                       cvg_error *err) {
  *out = NULL;
  cvg_fixture *fx = calloc(1, sizeof *fx);
  if (!fx)
    return cvg_error_set(err, CVG_ENOMEM, path, "out of memory");
  size_t n = strlen(path);
  fx->path = strdup(path);
  fx->tmp = malloc(n + 8);
  fx->n_cols = schema->n_cols;
  cvg_buf sql;
  cvg_buf_init(&sql, 1u << 20);
  int rc = CVG_OK;
  if (!fx->path || !fx->tmp) {
    rc = cvg_error_set(err, CVG_ENOMEM, path, "out of memory");
    goto fail;
  }
  snprintf(fx->tmp, n + 8, "%s.tmp", path);
  unlink(fx->tmp);
  if (sqlite3_open_v2(fx->tmp, &fx->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
      SQLITE_OK) {
    rc = cvg_error_set(err, CVG_EIO, path, "cannot create the replica file: %s",
                       fx->db ? sqlite3_errmsg(fx->db) : strerror(errno));
    goto fail;
  }
  if (sqlite3_exec(fx->db, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; BEGIN", NULL, NULL,
                   NULL) != SQLITE_OK) {
    rc = fail_db(fx, "cannot start writing", err);
    goto fail;
  }
  int brc = cvgi_append_str(&sql, "CREATE TABLE ") || cvgi_quote_ident(&sql, schema->table) ||
            cvgi_append_str(&sql, " (");
  for (size_t i = 0; !brc && i < schema->n_cols; i++) {
    brc = (i ? cvgi_append_str(&sql, ", ") : 0) || cvgi_quote_ident(&sql, schema->cols[i].name) ||
          cvgi_append_str(&sql, " ") || cvgi_append_str(&sql, schema->cols[i].decl_type);
  }
  if (!brc && schema->n_pk) {
    brc = cvgi_append_str(&sql, ", PRIMARY KEY (");
    for (size_t p = 1; !brc && p <= schema->n_pk; p++)
      for (size_t i = 0; !brc && i < schema->n_cols; i++)
        if ((size_t)schema->cols[i].pk == p)
          brc = (p > 1 ? cvgi_append_str(&sql, ", ") : 0) ||
                cvgi_quote_ident(&sql, schema->cols[i].name);
    brc = brc || cvgi_append_str(&sql, ")");
  }
  brc = brc || cvgi_append_str(&sql, schema->without_rowid ? ") WITHOUT ROWID" : ")") ||
        cvg_buf_append(&sql, "", 1);
  if (brc) {
    rc = cvg_error_set(err, CVG_ENOMEM, path, "out of memory");
    goto fail;
  }
  if (sqlite3_exec(fx->db, (const char *)sql.data, NULL, NULL, NULL) != SQLITE_OK) {
    rc = fail_db(fx, "cannot create the table", err);
    goto fail;
  }
  cvg_buf_reset(&sql);
  brc = cvgi_append_str(&sql, "INSERT INTO ") || cvgi_quote_ident(&sql, schema->table) ||
        cvgi_append_str(&sql, " VALUES (");
  for (size_t i = 0; !brc && i < schema->n_cols; i++)
    brc = cvgi_append_str(&sql, i ? ", ?" : "?");
  brc = brc || cvgi_append_str(&sql, ")") || cvg_buf_append(&sql, "", 1);
  if (brc) {
    rc = cvg_error_set(err, CVG_ENOMEM, path, "out of memory");
    goto fail;
  }
  if (sqlite3_prepare_v2(fx->db, (const char *)sql.data, -1, &fx->ins, NULL) != SQLITE_OK) {
    rc = fail_db(fx, "cannot prepare inserts", err);
    goto fail;
  }
  cvg_buf_release(&sql);
  *out = fx;
  return CVG_OK;
fail:
  cvg_buf_release(&sql);
  cvg_fixture_abort(fx);
  return rc;
}

int cvg_fixture_insert(cvg_fixture *fx, const cvg_value *vals, size_t n_vals, cvg_error *err) {
  if (n_vals != fx->n_cols)
    return cvg_error_set(err, CVG_EINVAL, fx->path, "row has %zu values, table has %zu columns",
                         n_vals, fx->n_cols);
  for (size_t i = 0; i < n_vals; i++) {
    const cvg_value *v = &vals[i];
    int c = (int)i + 1;
    switch (v->type) {
    case CVG_INTEGER:
      sqlite3_bind_int64(fx->ins, c, v->u.i);
      break;
    case CVG_REAL:
      sqlite3_bind_double(fx->ins, c, v->u.r);
      break;
    case CVG_TEXT:
      sqlite3_bind_text(fx->ins, c, (const char *)v->u.s.p, (int)v->u.s.n, SQLITE_STATIC);
      break;
    case CVG_BLOB:
      sqlite3_bind_blob(fx->ins, c, v->u.s.p, (int)v->u.s.n, SQLITE_STATIC);
      break;
    default:
      sqlite3_bind_null(fx->ins, c);
    }
  }
  int src = sqlite3_step(fx->ins);
  sqlite3_reset(fx->ins);
  if (src != SQLITE_DONE)
    return fail_db(fx, "cannot insert a row", err);
  return CVG_OK;
}

int cvg_fixture_finish(cvg_fixture *fx, cvg_error *err) {
  int rc = CVG_OK;
  sqlite3_finalize(fx->ins);
  fx->ins = NULL;
  if (sqlite3_exec(fx->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
    rc = fail_db(fx, "cannot commit", err);
    cvg_fixture_abort(fx);
    return rc;
  }
  if (sqlite3_close(fx->db) != SQLITE_OK) {
    rc = fail_db(fx, "cannot close", err);
    cvg_fixture_abort(fx);
    return rc;
  }
  fx->db = NULL;
  if (rename(fx->tmp, fx->path) != 0) {
    rc = cvg_error_set(err, CVG_EIO, fx->path, "cannot move the finished file into place: %s",
                       strerror(errno));
    cvg_fixture_abort(fx);
    return rc;
  }
  free(fx->tmp);
  fx->tmp = NULL;
  cvg_fixture_abort(fx); /* frees what is left; the file stays */
  return CVG_OK;
}
