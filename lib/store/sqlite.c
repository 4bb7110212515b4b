/* SPDX-License-Identifier: MIT */
/*
 * The SQLite replica.
 *
 * Reading: the database is opened read-only (SQLITE_OPEN_READONLY plus PRAGMA query_only), so a
 * diff can never change it. Columns, declared types, collations and the primary key come from
 * the schema (pragma_table_xinfo, sqlite3_table_column_metadata). A scan is one SELECT ordered by
 * the key columns: for an INTEGER PRIMARY KEY that is the table's own b-tree order, for other
 * keys the primary-key index, so no sort is needed. A key column whose collation is not BINARY
 * gets COLLATE BINARY in the ORDER BY, because the canonical order is byte order.
 *
 * Identifiers are always double-quoted (embedded quotes doubled) and key values are bound. The
 * one piece of SQL text taken from the user is the --where expression: sqlwhere.c checks with
 * SQLite's lexing rules that it is one expression (it cannot close the scan's parentheses), and
 * it is compiled inside them on a read-only connection.
 */
#define _GNU_SOURCE /* O_NOATIME */
#include "converge/fsfile.h"
#include "converge/store.h"
#include "store_int.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mapguard.h"
#include "sqlite_btree.h"
#include "sqlwhere.h"

#define SQL_MAX (1u << 20) /* longest statement we build */
#define ROW_MAX (1u << 30) /* largest encoded row we accept */

/* What the scan's fast path learns of the table from the schema (fast_setup), kept on the store
 * while the schema cookie stays the same. */
typedef struct fast_meta {
  int valid; /* read under schema cookie `cookie` */
  uint32_t cookie;
  int eligible;       /* the table can be read directly (see fast_setup) */
  char **names;       /* OWNED; the n columns, in table order */
  unsigned char *aff; /* OWNED; their affinities (cvg_affinity) */
  int n;
  int ipk;            /* the INTEGER PRIMARY KEY column (the rowid), or -1 */
  uint32_t root;      /* root page of the table */
  char *ver_col;      /* OWNED; the version column vidx_root was looked up for, or NULL */
  uint32_t vidx_root; /* an index led by it, or 0 */
  int ver_binary;     /* its collation is BINARY */
} fast_meta;

typedef struct sqlite_store {
  cvg_store base;             /* must be first */
  sqlite3 *db;                /* OWNED connection */
  char *path;                 /* OWNED; file path as opened */
  char *table;                /* OWNED; table name */
  sqlite3_stmt *fetch;        /* OWNED; cached fetch statement, or NULL */
  char *fetch_sql;            /* OWNED; the SQL of fetch */
  struct sqlite_scan *lookup; /* OWNED; cached key lookup (a SCAN_LOOKUP scan), or NULL */
  char *lookup_sig;           /* OWNED; the spec lookup was built for */
  cvg_buf work;               /* fetch's SQL or lookup's signature, rebuilt per call, kept */
  cvg_buf kwork;              /* fetch's and lookup's decoded key, kept */
  int readonly;               /* opened with CVG_STORE_READONLY */
  int keep_map;               /* opened with CVG_STORE_KEEP_MAPPED */
  dev_t file_dev;             /* the file opened: a probe checks the path still names it */
  ino_t file_ino;
  void *map;      /* OWNED: the kept mapping of the file, or NULL */
  size_t map_len; /* its length */
  dev_t map_dev;  /* the file it maps */
  ino_t map_ino;
  sqlite3_stmt *cookie_stmt; /* OWNED; PRAGMA schema_version, or NULL */
  fast_meta meta;            /* the fast path's view of the schema */
  cvg_table_desc desc;       /* describe's last answer ... */
  uint32_t desc_cookie;      /* ... under this schema cookie */
  int desc_valid;            /* ... if set */
} sqlite_store;

typedef struct sqlite_scan sqlite_scan;
struct sqlite_scan {
  cvgi_scan_base base;           /* must be first */
  sqlite_store *st;              /* BORROWED; the store it reads */
  sqlite3_stmt *stmt;            /* OWNED */
  int n_key, n_cmp;              /* result columns: [0,n_key) key, then n_cmp compared columns */
  int ver_idx, tomb_idx, vv_idx; /* result column of each, or -1 */
  int ver_in_cmp;  /* the version is compared column ver_in_cmp (its bytes are reused), or -1 */
  int tomb_in_cmp; /* likewise for the tombstone column */
  int real_digits; /* spec->real_digits: reals of compared columns rounded before encoding */
  int time_digits; /* spec->time_digits: timestamps of compared columns normalised */
  cvg_buf key;     /* encoded key of the current row */
  cvg_buf row;     /* encoded compared columns of the current row */
  cvg_buf ver;     /* encoded version of the current row */
  /* The fast path (sqlite_btree.c): set when the table's pages are read directly. */
  int fast;                /* 1 when reading pages directly */
  int in_txn;              /* a read transaction is open on st->db */
  void *map;               /* OWNED mapping of the file */
  size_t map_len;          /* its length */
  cvgi_btree bt;           /* the walk */
  int n_tcols;             /* columns of the table */
  int ipk;                 /* table column that is the rowid alias */
  int *cmp_t;              /* OWNED: table column of each compared column */
  int ver_t, tomb_t, vv_t; /* table column of each, or -1 */
  unsigned char *real_aff; /* OWNED: per table column, 1 if REAL affinity */
  uint64_t *serial;        /* OWNED: serial type of each column of the current record */
  size_t *offset;          /* OWNED: body offset of each */
  size_t rec_cols;         /* columns present in the current record */
  int map_kept;            /* map is the store's kept mapping: not ours to unmap */
  int64_t *rowids;         /* OWNED: incremental fast path, the rows to read, ascending */
  size_t n_rowids;         /* entries in rowids */
  size_t rowid_pos;        /* next to read */
  int file_fd;             /* the file's descriptor (BORROWED from db_fd), or -1 */
  uint32_t vidx_root;      /* root page of an index led by the version column, or 0 */
  cvg_affinity ver_aff;    /* the version column's affinity */
  int ver_binary;          /* ... and its collation is BINARY */
  int changed;             /* the file shrank or was replaced under the mapping: scan failed */
};

static void meta_free(fast_meta *fm) {
  for (int i = 0; i < fm->n; i++)
    free(fm->names[i]);
  free(fm->names);
  free(fm->aff);
  free(fm->ver_col);
  memset(fm, 0, sizeof *fm);
}

/* The schema cookie (bumped by SQLite on every schema change), read through a kept statement:
 * inside a transaction this also takes the read lock. */
static int schema_cookie(sqlite_store *st, uint32_t *cookie) {
  if (!st->cookie_stmt &&
      sqlite3_prepare_v2(st->db, "PRAGMA schema_version", -1, &st->cookie_stmt, NULL) != SQLITE_OK)
    return -1;
  int ok = sqlite3_step(st->cookie_stmt) == SQLITE_ROW;
  if (ok)
    *cookie = (uint32_t)sqlite3_column_int64(st->cookie_stmt, 0);
  sqlite3_reset(st->cookie_stmt);
  return ok ? 0 : -1;
}

/* A deep copy of src into dst (zeroed on failure): 0, or -1 when out of memory. */
static int desc_copy(const cvg_table_desc *src, cvg_table_desc *dst) {
  memset(dst, 0, sizeof *dst);
  dst->n_pk = src->n_pk;
  dst->without_rowid = src->without_rowid;
  if (!(dst->table = strdup(src->table)) ||
      !(dst->cols = calloc(src->n_cols ? src->n_cols : 1, sizeof *dst->cols))) {
    cvg_table_desc_release(dst);
    return -1;
  }
  for (; dst->n_cols < src->n_cols; dst->n_cols++) {
    cvg_column *d = &dst->cols[dst->n_cols];
    *d = src->cols[dst->n_cols];
    d->name = strdup(d->name);
    d->decl_type = strdup(d->decl_type);
    if (!d->name || !d->decl_type) {
      dst->n_cols++;
      cvg_table_desc_release(dst);
      return -1;
    }
  }
  return 0;
}

/* Maps a SQLite failure to a status and records the engine's message. */
static int sqlite_fail(sqlite_store *st, int sqlite_rc, const char *doing, cvg_error *err) {
  int status;
  switch (sqlite_rc & 0xFF) {
  case SQLITE_NOTADB:
    status = CVG_ENOTDB;
    break;
  case SQLITE_CANTOPEN:
    status = CVG_ENOENT;
    break;
  case SQLITE_PERM:
  case SQLITE_AUTH:
    status = CVG_EACCES;
    break;
  case SQLITE_BUSY:
  case SQLITE_LOCKED:
    status = CVG_EBUSY;
    break;
  case SQLITE_NOMEM:
    status = CVG_ENOMEM;
    break;
  case SQLITE_IOERR:
    status = CVG_EIO;
    break;
  default:
    status = CVG_ESTORE;
  }
  const char *msg = st && st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(sqlite_rc);
  const char *input = st && st->base.url ? st->base.url : (st ? st->path : "");
  cvg_error_set(err, status, input, "%s: %s", doing, msg);
  if (err)
    err->engine_code = sqlite_rc;
  if (status == CVG_ENOTDB)
    cvg_error_hint(err, "the file exists but is not a SQLite database; check the path");
  else if (status == CVG_EBUSY)
    cvg_error_hint(err, "another process holds a lock on the database; retry later");
  return status;
}

static void sqlite_scan_close(cvg_scan *base);

static void sqlite_close(cvg_store *base) {
  sqlite_store *st = (sqlite_store *)base;
  if (!st)
    return;
  sqlite3_finalize(st->fetch);
  sqlite3_finalize(st->cookie_stmt);
  meta_free(&st->meta);
  cvg_table_desc_release(&st->desc);
  free(st->fetch_sql);
  if (st->lookup)
    sqlite_scan_close((cvg_scan *)st->lookup);
  free(st->lookup_sig);
  cvg_buf_release(&st->work);
  cvg_buf_release(&st->kwork);
  if (st->map)
    munmap(st->map, st->map_len);
  sqlite3_close_v2(st->db);
  free(st->path);
  free(st->table);
  free(st);
}

/* Names of the user tables, comma-separated, for hints. */
static void list_tables(sqlite3 *db, char *out, size_t size) {
  out[0] = '\0';
  sqlite3_stmt *s = NULL;
  if (sqlite3_prepare_v2(db,
                         "SELECT name FROM sqlite_schema WHERE type IN ('table','view') AND name "
                         "NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
                         -1, &s, NULL) != SQLITE_OK) {
    sqlite3_finalize(s);
    return;
  }
  size_t used = 0;
  while (sqlite3_step(s) == SQLITE_ROW && used + 1 < size) {
    int n = snprintf(out + used, size - used, "%s%s", used ? ", " : "",
                     (const char *)sqlite3_column_text(s, 0));
    if (n < 0)
      break;
    used += (size_t)n;
  }
  if (used >= size)
    out[size - 1] = '\0';
  sqlite3_finalize(s);
}

static int sqlite_open(cvg_store **out, const cvg_url *url, unsigned flags, cvg_error *err) {
  *out = NULL;
  const char *input = url->path;
  /* user:password@ means nothing to a file (and is never repeated in a message) */
  const char *host = strrchr(url->host, '@') ? strrchr(url->host, '@') + 1 : url->host;
  if (host[0] && strcmp(host, "localhost") != 0) {
    cvg_error_set(err, CVG_EURL, input, "a sqlite URL names a local file, not host '%s'", host);
    cvg_error_hint(err, "write sqlite:///absolute/path.db?table=T (three slashes)");
    return CVG_EURL;
  }
  struct stat sb;
  if (stat(url->path, &sb) != 0) {
    int e = errno;
    int status = e == ENOENT || e == ENOTDIR ? CVG_ENOENT : e == EACCES ? CVG_EACCES : CVG_EIO;
    cvg_error_set(err, status, input, "cannot open the replica: %s", strerror(e));
    if (err)
      err->sys_errno = e;
    if (status == CVG_ENOENT)
      cvg_error_hint(err, "check the path; a relative path is taken from the working directory "
                          "(sqlite:rel/path.db), an absolute one needs three slashes "
                          "(sqlite:///abs/path.db)");
    return status;
  }
  if (!S_ISREG(sb.st_mode)) {
    return cvg_regular_file(url->path, input, "replica", err);
  }
  if (access(url->path, (flags & CVG_STORE_READONLY) ? R_OK : R_OK | W_OK) != 0) {
    int e = errno;
    cvg_error_set(err, CVG_EACCES, input, "cannot open the replica: %s", strerror(e));
    if (err)
      err->sys_errno = e;
    cvg_error_hint(err, "grant this user read permission on the file (and write permission for "
                        "repairs)");
    return CVG_EACCES;
  }

  sqlite_store *st = calloc(1, sizeof *st);
  if (!st)
    return cvg_error_set(err, CVG_ENOMEM, input, "out of memory");
  cvg_buf_init(&st->work, SQL_MAX);
  cvg_buf_init(&st->kwork, ROW_MAX);
  int rc = CVG_OK;
  st->path = strdup(url->path);
  if (!st->path) {
    rc = cvg_error_set(err, CVG_ENOMEM, input, "out of memory");
    goto fail;
  }
  int oflags = SQLITE_OPEN_NOMUTEX |
               ((flags & CVG_STORE_READONLY) ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE);
  int src = sqlite3_open_v2(st->path, &st->db, oflags, NULL);
  if (src != SQLITE_OK) {
    rc = sqlite_fail(st, src, "cannot open the replica", err);
    goto fail;
  }
  sqlite3_extended_result_codes(st->db, 1);
  sqlite3_busy_timeout(st->db, 5000);
  st->file_dev = sb.st_dev;
  st->file_ino = sb.st_ino;
  st->readonly = (flags & CVG_STORE_READONLY) != 0;
  st->keep_map = (flags & CVG_STORE_KEEP_MAPPED) != 0;
  if (st->readonly)
    sqlite3_exec(st->db, "PRAGMA query_only=1", NULL, NULL, NULL);

  /* The first read of the schema is where "file is not a database" shows itself. */
  sqlite3_stmt *s = NULL;
  src = sqlite3_prepare_v2(st->db,
                           "SELECT name FROM sqlite_schema WHERE type IN ('table','view') AND "
                           "name = ?1 COLLATE NOCASE",
                           -1, &s, NULL);
  if (src != SQLITE_OK) {
    sqlite3_finalize(s);
    rc = sqlite_fail(st, src, "cannot read the schema", err);
    goto fail;
  }
  if (url->table) {
    sqlite3_bind_text(s, 1, url->table, -1, SQLITE_STATIC);
    src = sqlite3_step(s);
    if (src == SQLITE_ROW) {
      st->table = strdup((const char *)sqlite3_column_text(s, 0));
      sqlite3_finalize(s);
      if (!st->table) {
        rc = cvg_error_set(err, CVG_ENOMEM, input, "out of memory");
        goto fail;
      }
    } else {
      sqlite3_finalize(s);
      if (src != SQLITE_DONE) {
        rc = sqlite_fail(st, src, "cannot read the schema", err);
        goto fail;
      }
      char tables[400];
      list_tables(st->db, tables, sizeof tables);
      rc = cvg_error_set(err, CVG_ENOTABLE, input, "no such table '%s'", url->table);
      cvg_error_hint(err, "tables in this file: %s", tables[0] ? tables : "(none)");
      goto fail;
    }
  } else {
    sqlite3_finalize(s);
    /* No ?table=: take the only user table, or ask. */
    src = sqlite3_prepare_v2(st->db,
                             "SELECT name FROM sqlite_schema WHERE type='table' AND name NOT "
                             "LIKE 'sqlite\\_%' ESCAPE '\\' LIMIT 2",
                             -1, &s, NULL);
    int n = 0;
    while (src == SQLITE_OK && (src = sqlite3_step(s)) == SQLITE_ROW) {
      if (n++ == 0) {
        st->table = strdup((const char *)sqlite3_column_text(s, 0));
        if (!st->table) {
          sqlite3_finalize(s);
          rc = cvg_error_set(err, CVG_ENOMEM, input, "out of memory");
          goto fail;
        }
      }
      src = SQLITE_OK;
    }
    sqlite3_finalize(s);
    if (src != SQLITE_DONE && src != SQLITE_OK) {
      rc = sqlite_fail(st, src, "cannot read the schema", err);
      goto fail;
    }
    if (n != 1) {
      char tables[400];
      list_tables(st->db, tables, sizeof tables);
      rc = cvg_error_set(err, CVG_ENOTABLE, input,
                         n ? "the URL names no table and the file has several"
                           : "the URL names no table and the file has none");
      cvg_error_hint(err, "add ?table=NAME to the URL; tables in this file: %s",
                     tables[0] ? tables : "(none)");
      goto fail;
    }
  }
  *out = &st->base;
  return CVG_OK;

fail:
  sqlite_close(&st->base);
  return rc;
}

static cvg_affinity affinity_of(const char *t) {
  /* SQLite's rules, section 3.1 of "Datatypes In SQLite", in their order. */
  char up[128];
  size_t n = 0;
  for (; t[n] && n + 1 < sizeof up; n++)
    up[n] = (char)((t[n] >= 'a' && t[n] <= 'z') ? t[n] - 32 : t[n]);
  up[n] = '\0';
  if (strstr(up, "INT"))
    return CVG_AFF_INTEGER;
  if (strstr(up, "CHAR") || strstr(up, "CLOB") || strstr(up, "TEXT"))
    return CVG_AFF_TEXT;
  if (strstr(up, "BLOB") || n == 0)
    return CVG_AFF_BLOB;
  if (strstr(up, "REAL") || strstr(up, "FLOA") || strstr(up, "DOUB"))
    return CVG_AFF_REAL;
  return CVG_AFF_NUMERIC;
}

/*
 * A connection keeps reading a file that was moved, deleted or replaced since it was opened, so a
 * long-lived probe would not notice. Probes call this first: the path must still name the file.
 */
static int still_there(sqlite_store *st, cvg_error *err) {
  struct stat sb;
  if (stat(st->path, &sb) != 0) {
    int e = errno;
    cvg_error_set(err, e == ENOENT ? CVG_ENOENT : CVG_EIO, st->base.url,
                  "the replica's file is gone: %s", strerror(e));
    cvg_error_hint(err, "it was moved or deleted since converge opened it; restore it");
    return err ? err->status : CVG_EIO;
  }
  if (sb.st_dev != st->file_dev || sb.st_ino != st->file_ino)
    return cvg_error_set(err, CVG_EIO, st->base.url,
                         "the replica's file was replaced since it was opened");
  return CVG_OK;
}

/* 1 when the table is WITHOUT ROWID, as SQLite's table list says (3.37+). */
static int without_rowid(sqlite_store *st) {
  sqlite3_stmt *s = NULL;
  int wr = 0;
  if (sqlite3_prepare_v2(st->db,
                         "SELECT wr FROM pragma_table_list WHERE name = ?1 AND schema = 'main'", -1,
                         &s, NULL) == SQLITE_OK) {
    sqlite3_bind_text(s, 1, st->table, -1, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW)
      wr = sqlite3_column_int(s, 0) != 0;
  }
  sqlite3_finalize(s);
  return wr;
}

/* 1 when the primary key is kept in an index of its own (so it is not the rowid). */
static int pk_has_index(sqlite_store *st) {
  sqlite3_stmt *s = NULL;
  int has = 1; /* in doubt: not the rowid */
  if (sqlite3_prepare_v2(st->db, "SELECT count(*) FROM pragma_index_list(?1) WHERE origin = 'pk'",
                         -1, &s, NULL) == SQLITE_OK) {
    sqlite3_bind_text(s, 1, st->table, -1, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW)
      has = sqlite3_column_int(s, 0) != 0;
  }
  sqlite3_finalize(s);
  return has;
}

static int sqlite_describe(cvg_store *base, cvg_table_desc *out, cvg_error *err) {
  sqlite_store *st = (sqlite_store *)base;
  memset(out, 0, sizeof *out);
  int rc = still_there(st, err);
  if (rc)
    return rc;
  /* The answer is kept while the schema cookie stays the same (read first: a schema change
   * after it only makes the kept answer look stale, never the reverse). */
  uint32_t cookie = 0;
  int have_cookie = schema_cookie(st, &cookie) == 0;
  if (have_cookie && st->desc_valid && st->desc_cookie == cookie)
    return desc_copy(&st->desc, out) ? cvg_error_set(err, CVG_ENOMEM, base->url, "out of memory")
                                     : CVG_OK;
  sqlite3_stmt *s = NULL;
  int src = sqlite3_prepare_v2(st->db,
                               "SELECT name, type, pk FROM pragma_table_xinfo(?1) WHERE hidden "
                               "<> 1 ORDER BY cid",
                               -1, &s, NULL);
  if (src != SQLITE_OK) {
    rc = sqlite_fail(st, src, "cannot read the table's columns", err);
    goto done;
  }
  sqlite3_bind_text(s, 1, st->table, -1, SQLITE_STATIC);
  out->table = strdup(st->table);
  if (!out->table) {
    rc = cvg_error_set(err, CVG_ENOMEM, base->url, "out of memory");
    goto done;
  }
  size_t cap = 0;
  while ((src = sqlite3_step(s)) == SQLITE_ROW) {
    if (out->n_cols == cap) {
      size_t ncap = cap ? cap * 2 : 16;
      cvg_column *c = realloc(out->cols, ncap * sizeof *c);
      if (!c) {
        rc = cvg_error_set(err, CVG_ENOMEM, base->url, "out of memory");
        goto done;
      }
      out->cols = c;
      cap = ncap;
    }
    cvg_column *c = &out->cols[out->n_cols];
    memset(c, 0, sizeof *c);
    const char *name = (const char *)sqlite3_column_text(s, 0);
    const char *type = (const char *)sqlite3_column_text(s, 1);
    c->name = strdup(name ? name : "");
    c->decl_type = strdup(type ? type : "");
    if (!c->name || !c->decl_type) {
      free(c->name);
      free(c->decl_type);
      rc = cvg_error_set(err, CVG_ENOMEM, base->url, "out of memory");
      goto done;
    }
    out->n_cols++;
    c->affinity = affinity_of(c->decl_type);
    c->pk = sqlite3_column_int(s, 2);
    if (c->pk)
      out->n_pk++;
    const char *coll = NULL;
    c->binary_collation = 1;
    if (sqlite3_table_column_metadata(st->db, NULL, st->table, c->name, NULL, &coll, NULL, NULL,
                                      NULL) == SQLITE_OK &&
        coll && strcasecmp(coll, "BINARY") != 0)
      c->binary_collation = 0;
  }
  if (src != SQLITE_DONE) {
    rc = sqlite_fail(st, src, "cannot read the table's columns", err);
    goto done;
  }
  sqlite3_finalize(s);
  s = NULL;
  out->without_rowid = without_rowid(st);
done:
  sqlite3_finalize(s);
  if (rc)
    cvg_table_desc_release(out);
  if (!rc && have_cookie) {
    cvg_table_desc_release(&st->desc);
    st->desc_valid = desc_copy(out, &st->desc) == 0;
    st->desc_cookie = cookie;
  }
  return rc;
}

/* One API call per column (sqlite3_column_value), then cheap value accessors: the scan's hot
 * path, measured in bench/diff_vs_sqldiff. */
static int encode_column(sqlite3_stmt *s, int i, cvg_buf *b) {
  sqlite3_value *v = sqlite3_column_value(s, i);
  switch (sqlite3_value_type(v)) {
  case SQLITE_INTEGER:
    return cvg_encode_int(b, sqlite3_value_int64(v));
  case SQLITE_FLOAT:
    return cvg_encode_real(b, sqlite3_value_double(v));
  case SQLITE_TEXT: {
    const unsigned char *p = sqlite3_value_text(v);
    return cvg_encode_text(b, p, (size_t)sqlite3_value_bytes(v));
  }
  case SQLITE_BLOB: {
    const void *p = sqlite3_value_blob(v);
    return cvg_encode_blob(b, p, (size_t)sqlite3_value_bytes(v));
  }
  default:
    return cvg_encode_null(b);
  }
}

/* A compared column: as encode_column, with the spec's real rounding and timestamp
 * normalisation (sc->real_digits, sc->time_digits). */
static int encode_compared(const struct sqlite_scan *sc, sqlite3_stmt *s, int i, cvg_buf *b) {
  int t = sqlite3_column_type(s, i);
  if (sc->real_digits && t == SQLITE_FLOAT)
    return cvg_encode_real(b, cvg_round_real(sqlite3_column_double(s, i), sc->real_digits));
  if (sc->time_digits && t == SQLITE_TEXT) {
    char tb[32];
    size_t tl =
        cvg_norm_timestamp((const char *)sqlite3_column_text(s, i),
                           (size_t)sqlite3_column_bytes(s, i), sc->time_digits - 1, tb, sizeof tb);
    if (tl)
      return cvg_encode_text(b, tb, tl);
  }
  return encode_column(s, i, b);
}

static void column_value(sqlite3_stmt *s, int i, cvg_value *v) {
  switch (sqlite3_column_type(s, i)) {
  case SQLITE_INTEGER:
    v->type = CVG_INTEGER;
    v->u.i = sqlite3_column_int64(s, i);
    break;
  case SQLITE_FLOAT:
    v->type = CVG_REAL;
    v->u.r = sqlite3_column_double(s, i);
    break;
  case SQLITE_TEXT:
    v->type = CVG_TEXT;
    v->u.s.p = sqlite3_column_text(s, i);
    v->u.s.n = (size_t)sqlite3_column_bytes(s, i);
    break;
  case SQLITE_BLOB:
    v->type = CVG_BLOB;
    v->u.s.p = sqlite3_column_blob(s, i);
    v->u.s.n = (size_t)sqlite3_column_bytes(s, i);
    break;
  default:
    v->type = CVG_NULL;
  }
}

/* Is a key column's collation BINARY? Unknown columns count as BINARY; describe() reports them. */
static int key_is_binary(sqlite_store *st, const char *col) {
  const char *coll = NULL;
  if (sqlite3_table_column_metadata(st->db, NULL, st->table, col, NULL, &coll, NULL, NULL, NULL) !=
      SQLITE_OK)
    return 1;
  return !coll || strcasecmp(coll, "BINARY") == 0;
}

/* ---- the fast path: reading the table's pages directly (see sqlite_btree.c) ---- */

static void fast_teardown(sqlite_scan *sc) {
  free(sc->rowids);
  sc->rowids = NULL;
  sc->n_rowids = sc->rowid_pos = 0;
  sc->file_fd = -1;
  sc->vidx_root = 0;
  if (sc->map && !sc->map_kept)
    munmap(sc->map, sc->map_len);
  sc->map = NULL;
  sc->map_kept = 0;
  cvgi_btree_release(&sc->bt);
  if (sc->in_txn)
    sqlite3_exec(sc->st->db, "COMMIT", NULL, NULL, NULL);
  sc->in_txn = 0;
  free(sc->cmp_t);
  free(sc->real_aff);
  free(sc->serial);
  free(sc->offset);
  sc->cmp_t = NULL;
  sc->real_aff = NULL;
  sc->serial = NULL;
  sc->offset = NULL;
  sc->fast = 0;
}

static int find_col(char **names, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (strcasecmp(names[i], name) == 0)
      return i;
  return -1;
}

/*
 * Turns the fast path on when it is safe, else leaves the scan on SQL. Safe means: no --where;
 * the key is the table's INTEGER PRIMARY KEY (so rowid order is key order); no generated
 * columns and no column defaults (old records may lack added columns); a UTF-8 database; no
 * content in a WAL; and a read transaction held for the whole walk. CONVERGE_SQLITE_FASTPATH=0
 * turns it off (the tests compare both paths).
 */
/*
 * A read-only descriptor of the database file at path that is never closed. POSIX record locks
 * belong to the process, and closing ANY descriptor of a file releases every lock the process
 * holds on it - SQLite's own included. A fast-path scan that opened and closed the file would
 * silently drop the locks of this process's SQLite connections to it (a writer's among them),
 * and another process could then checkpoint and reset the WAL under them, losing writes. So
 * every file read directly gets one descriptor for the life of the process, shared by every
 * scan of it (pread and mmap need no file position). The cache is bounded; past it, scans take
 * the SQL path.
 */
#define DB_FD_MAX 1024
static pthread_mutex_t db_fd_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
  dev_t dev;
  ino_t ino;
  int fd;
} db_fds[DB_FD_MAX];
static size_t n_db_fds;

static int db_fd(const char *path) {
  struct stat sb;
  if (stat(path, &sb) != 0)
    return -1;
  int fd = -1;
  pthread_mutex_lock(&db_fd_mu);
  for (size_t i = 0; i < n_db_fds && fd < 0; i++)
    if (db_fds[i].dev == sb.st_dev && db_fds[i].ino == sb.st_ino)
      fd = db_fds[i].fd;
  if (fd < 0 && n_db_fds < DB_FD_MAX) {
    /* O_NOATIME: reading a replica is no reason to write its inode (allowed to the file's owner
     * only, hence the retry without) */
    fd = open(path, O_RDONLY | O_NOATIME | O_CLOEXEC);
    if (fd < 0)
      fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat fb;
    if (fd >= 0 && fstat(fd, &fb) == 0 && fb.st_dev == sb.st_dev && fb.st_ino == sb.st_ino) {
      db_fds[n_db_fds].dev = fb.st_dev;
      db_fds[n_db_fds].ino = fb.st_ino;
      db_fds[n_db_fds].fd = fd;
      n_db_fds++;
    } else if (fd >= 0) {
      /* the path was replaced between stat and open: this descriptor was never used for a
       * lock by this process's SQLite (its file is new to us), so leaving it open is the only
       * safe choice; it is simply not cached */
      fd = -1;
    }
  }
  pthread_mutex_unlock(&db_fd_mu);
  return fd;
}

/* Reads what the fast path needs of the table's schema into fm (under the read transaction):
 * 0 when read (fm->eligible says whether the table qualifies), -1 on failure. */
static int meta_load(sqlite_store *st, fast_meta *fm) {
  sqlite3_stmt *s = NULL;
  int n_pk = 0, ok = 1;
  fm->ipk = -1;
  if (sqlite3_prepare_v2(st->db,
                         "SELECT name, type, pk, hidden, dflt_value IS NOT NULL "
                         "FROM pragma_table_xinfo(?1) ORDER BY cid",
                         -1, &s, NULL) != SQLITE_OK) {
    sqlite3_finalize(s);
    return -1;
  }
  sqlite3_bind_text(s, 1, st->table, -1, SQLITE_STATIC);
  int src;
  while ((src = sqlite3_step(s)) == SQLITE_ROW) {
    char **nn = realloc(fm->names, (size_t)(fm->n + 1) * sizeof *nn);
    if (nn)
      fm->names = nn;
    unsigned char *na = nn ? realloc(fm->aff, (size_t)(fm->n + 1)) : NULL;
    if (na)
      fm->aff = na;
    const char *type = (const char *)sqlite3_column_text(s, 1);
    const char *name = (const char *)sqlite3_column_text(s, 0);
    if (!na || !name || !(fm->names[fm->n] = strdup(name))) {
      sqlite3_finalize(s);
      return -1;
    }
    fm->aff[fm->n] = (unsigned char)affinity_of(type ? type : "");
    if (sqlite3_column_int(s, 2)) {
      n_pk++;
      if (type && strcasecmp(type, "INTEGER") == 0)
        fm->ipk = fm->n;
    }
    if (sqlite3_column_int(s, 3) != 0 || sqlite3_column_int(s, 4) != 0)
      ok = 0; /* generated or hidden columns, or a default */
    fm->n++;
  }
  sqlite3_finalize(s);
  s = NULL;
  if (src != SQLITE_DONE)
    return -1;
  /* SQLite says whether the table has rowids and whether its INTEGER PRIMARY KEY is the rowid
   * (an "INTEGER PRIMARY KEY DESC" is not: it gets an index of its own, origin 'pk'); the SQL
   * text is never searched, so a column named "description" changes nothing. */
  if (without_rowid(st) || pk_has_index(st))
    ok = 0;
  if (sqlite3_prepare_v2(st->db,
                         "SELECT rootpage, sql FROM sqlite_schema WHERE name = ?1 AND type = "
                         "'table'",
                         -1, &s, NULL) != SQLITE_OK) {
    sqlite3_finalize(s);
    return -1;
  }
  sqlite3_bind_text(s, 1, st->table, -1, SQLITE_STATIC);
  if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 1)) {
    const char *sql = (const char *)sqlite3_column_text(s, 1);
    if (strncasecmp(sql, "CREATE TABLE", 12)) /* a virtual table: CREATE VIRTUAL TABLE */
      ok = 0;
    fm->root = (uint32_t)sqlite3_column_int64(s, 0);
  } else {
    ok = 0;
  }
  sqlite3_finalize(s);
  fm->eligible = ok && n_pk == 1 && fm->ipk >= 0 && fm->root > 1;
  return 0;
}

/* An index led by the version column col that the incremental scan can read the changed rowids
 * from (see since_rowids): a plain one (no WHERE, ascending, BINARY collation). */
static int meta_index(sqlite_store *st, fast_meta *fm, const char *col) {
  free(fm->ver_col);
  fm->vidx_root = 0;
  fm->ver_binary = 0;
  if (!(fm->ver_col = strdup(col)))
    return -1;
  sqlite3_stmt *s = NULL;
  if (sqlite3_prepare_v2(
          st->db,
          "SELECT s.rootpage FROM pragma_index_list(?1) AS l JOIN sqlite_schema AS s "
          "ON s.name = l.name AND s.type = 'index' WHERE l.partial = 0 AND EXISTS "
          "(SELECT 1 FROM pragma_index_xinfo(l.name) AS x WHERE x.seqno = 0 AND "
          "x.name = ?2 COLLATE NOCASE AND x.\"desc\" = 0 AND x.coll = 'BINARY') "
          "ORDER BY l.seq LIMIT 1",
          -1, &s, NULL) == SQLITE_OK) {
    sqlite3_bind_text(s, 1, st->table, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, col, -1, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW)
      fm->vidx_root = (uint32_t)sqlite3_column_int64(s, 0);
  }
  sqlite3_finalize(s);
  const char *coll = NULL;
  fm->ver_binary = sqlite3_table_column_metadata(st->db, NULL, st->table, col, NULL, &coll, NULL,
                                                 NULL, NULL) == SQLITE_OK &&
                   coll && strcasecmp(coll, "BINARY") == 0;
  return 0;
}

/* The mapped file's header and the table's root, read under the SIGBUS guard: a file cut
 * short meanwhile makes the fast path step aside (SQLite's own reads then report it). */
static int fast_open_tree(sqlite_scan *sc, uint32_t root) {
  sigjmp_buf jb;
  if (sigsetjmp(jb, 0)) {
    cvgi_mapguard_recover();
    return CVG_EIO;
  }
  cvgi_mapguard_enter(&jb);
  const unsigned char *h = sc->map;
  int rc = h[56] != 0 || h[57] != 0 || h[58] != 0 || h[59] != 1 /* text encoding: UTF-8 */
               ? CVG_EINVAL
               : cvgi_btree_init(&sc->bt, sc->map, sc->map_len, root);
  cvgi_mapguard_leave();
  return rc;
}

static void fast_setup(sqlite_scan *sc, const cvg_scan_spec *spec, int since) {
  sqlite_store *st = sc->st;
  const char *env = getenv("CONVERGE_SQLITE_FASTPATH");
  if ((env && strcmp(env, "0") == 0) || (spec->where && spec->where[0]) || spec->n_key != 1)
    return;
  int since_fd = -1;
  /* Take the read lock (the cookie read does), then the schema as of it: what was learnt of it
   * is kept on the store while the schema cookie stays the same. */
  fast_meta *fm = &st->meta;
  uint32_t cookie = 0;
  if (sqlite3_exec(st->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
    goto out;
  sc->in_txn = 1;
  if (schema_cookie(st, &cookie))
    goto out;
  if (!fm->valid || fm->cookie != cookie) {
    meta_free(fm);
    if (meta_load(st, fm)) {
      meta_free(fm);
      goto out;
    }
    fm->cookie = cookie;
    fm->valid = 1;
  }
  if (!fm->eligible || strcasecmp(fm->names[fm->ipk], spec->key_cols[0]) != 0)
    goto out;
  if (since && spec->version_col) {
    if ((!fm->ver_col || strcasecmp(fm->ver_col, spec->version_col) != 0) &&
        meta_index(st, fm, spec->version_col)) {
      meta_free(fm);
      goto out;
    }
    int vc = find_col(fm->names, fm->n, spec->version_col);
    sc->vidx_root = fm->vidx_root;
    sc->ver_binary = fm->ver_binary;
    sc->ver_aff = vc >= 0 ? (cvg_affinity)fm->aff[vc] : CVG_AFF_BLOB;
  }
  int n = fm->n, ipk = fm->ipk;
  uint32_t root = fm->root;
  char **names = fm->names;
  char wal[4200];
  struct stat sb;
  snprintf(wal, sizeof wal, "%s-wal", st->path);
  if (stat(wal, &sb) == 0 && sb.st_size > 0)
    goto out; /* newer pages may live in the WAL */
  int fd = db_fd(st->path);
  if (fd < 0)
    goto out;
  sc->file_fd = fd;
  if (fstat(fd, &sb) != 0 || sb.st_size < 512)
    goto out;
  void *map;
  if (since && st->keep_map) {
    /* The kept mapping is valid for this file at this size; the size is checked here, under
     * the read transaction, so no page past the end is ever touched. */
    if (!st->map || st->map_len != (size_t)sb.st_size || st->map_dev != sb.st_dev ||
        st->map_ino != sb.st_ino) {
      if (st->map)
        munmap(st->map, st->map_len);
      st->map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
      if (st->map == MAP_FAILED)
        st->map = NULL;
      st->map_len = (size_t)sb.st_size;
      st->map_dev = sb.st_dev;
      st->map_ino = sb.st_ino;
    }
    if (!st->map)
      goto out;
    map = st->map;
    sc->map_kept = 1;
  } else {
    map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED)
      goto out;
    if (since)
      since_fd = fd; /* seeks read pages with pread() */
  }
  sc->map = map;
  sc->map_len = (size_t)sb.st_size;
  if (!sc->map_kept)
    madvise(map, sc->map_len, since ? MADV_NORMAL : MADV_SEQUENTIAL);
  if (cvgi_mapguard_install() != 0 || fast_open_tree(sc, root) != CVG_OK)
    goto out;
  sc->bt.keep_resident = sc->map_kept;
  sc->bt.fd = since_fd;
  since_fd = -1;
  sc->n_tcols = n;
  sc->ipk = ipk;
  sc->cmp_t = calloc(spec->n_cmp ? spec->n_cmp : 1, sizeof *sc->cmp_t);
  sc->serial = calloc((size_t)n, sizeof *sc->serial);
  sc->offset = calloc((size_t)n, sizeof *sc->offset);
  if (!sc->cmp_t || !sc->serial || !sc->offset)
    goto out;
  for (size_t i = 0; i < spec->n_cmp; i++)
    if ((sc->cmp_t[i] = find_col(names, n, spec->cmp_cols[i])) < 0)
      goto out;
  sc->ver_t = spec->version_col ? find_col(names, n, spec->version_col) : -1;
  sc->tomb_t = spec->tombstone_col ? find_col(names, n, spec->tombstone_col) : -1;
  sc->vv_t = spec->vvec_col ? find_col(names, n, spec->vvec_col) : -1;
  if ((spec->version_col && sc->ver_t < 0) || (spec->tombstone_col && sc->tomb_t < 0) ||
      (spec->vvec_col && sc->vv_t < 0))
    goto out;
  if (!(sc->real_aff = malloc((size_t)n)))
    goto out;
  for (int i = 0; i < n; i++)
    sc->real_aff[i] = fm->aff[i] == CVG_AFF_REAL;
  sc->fast = 1;
out:
  if (!sc->fast)
    fast_teardown(sc);
}

/* The value of table column t of the current record (rowid for the rowid alias). */
static int fast_value(sqlite_scan *sc, int t, int64_t rowid, const unsigned char *body,
                      size_t body_len, cvg_value *v) {
  if (t == sc->ipk) {
    v->type = CVG_INTEGER;
    v->u.i = rowid;
    return CVG_OK;
  }
  if ((size_t)t >= sc->rec_cols) {
    v->type = CVG_NULL; /* a column added after the row was written, without a default */
    return CVG_OK;
  }
  uint64_t st = sc->serial[t];
  size_t off = sc->offset[t];
  const unsigned char *p = body + off;
  static const unsigned char int_len[] = {0, 1, 2, 3, 4, 6, 8};
  if (st == 0) {
    v->type = CVG_NULL;
    return CVG_OK;
  }
  if (st <= 6) {
    size_t len = int_len[st];
    if (off + len > body_len)
      return CVG_ECORRUPT;
    uint64_t x = (p[0] & 0x80) ? ~UINT64_C(0) : 0; /* sign extension */
    for (size_t i = 0; i < len; i++)
      x = (x << 8) | p[i];
    v->type = CVG_INTEGER;
    v->u.i = (int64_t)x;
  } else if (st == 7) {
    if (off + 8 > body_len)
      return CVG_ECORRUPT;
    uint64_t x = 0;
    for (int i = 0; i < 8; i++)
      x = (x << 8) | p[i];
    v->type = CVG_REAL;
    memcpy(&v->u.r, &x, sizeof x);
    return CVG_OK;
  } else if (st == 8 || st == 9) {
    v->type = CVG_INTEGER;
    v->u.i = st == 9;
  } else if (st >= 12) {
    size_t len = (size_t)((st - 12) / 2);
    if (off + len > body_len)
      return CVG_ECORRUPT;
    v->type = (st & 1) ? CVG_TEXT : CVG_BLOB;
    v->u.s.p = p;
    v->u.s.n = len;
    return CVG_OK;
  } else {
    return CVG_ECORRUPT;
  }
  if (sc->real_aff[t]) { /* SQLite stores integral REALs as integers; it reads them as REAL */
    double r = (double)v->u.i;
    v->type = CVG_REAL;
    v->u.r = r;
  }
  return CVG_OK;
}

static int fast_decode(sqlite_scan *sc, int64_t rowid, const unsigned char *rec, size_t rec_len,
                       cvg_scan_row *row, cvg_error *err);

/* fast_next under the SIGBUS guard (mapguard.h): a file that shrinks or is overwritten in place
 * while its pages are read (a cp over it, a truncate: neither takes SQLite's locks) fails this
 * scan instead of killing the process. */
static int fast_next_unguarded(sqlite_scan *sc, cvg_scan_row *row, cvg_error *err);

static int fast_next(sqlite_scan *sc, cvg_scan_row *row, cvg_error *err) {
  sigjmp_buf jb;
  if (sigsetjmp(jb, 0))
    sc->changed = 1;
  if (sc->changed) {
    cvgi_mapguard_recover();
    cvg_error_set(err, CVG_EIO, sc->st->base.url,
                  "the replica file changed during the scan: it shrank or was overwritten in "
                  "place while its pages were read");
    cvg_error_hint(err, "something wrote the file without SQLite's locks (cp, a restore, a "
                        "truncate); the next check reads it again");
    return CVG_EIO;
  }
  cvgi_mapguard_enter(&jb);
  int rc = fast_next_unguarded(sc, row, err);
  cvgi_mapguard_leave();
  return rc;
}

static int fast_next_unguarded(sqlite_scan *sc, cvg_scan_row *row, cvg_error *err) {
  int64_t rowid;
  const unsigned char *rec;
  size_t rec_len;
  int rc;
  if (sc->rowids) { /* an incremental scan: the rows the version index named, in rowid order */
    int found = 0;
    while (!found) {
      if (sc->rowid_pos == sc->n_rowids)
        return CVG_DONE;
      rowid = sc->rowids[sc->rowid_pos++];
      if ((rc = cvgi_btree_seek(&sc->bt, rowid, &rec, &rec_len, &found)))
        return cvg_error_set(err, rc, sc->st->base.url,
                             "the database file is malformed (table b-tree page)");
    }
    return fast_decode(sc, rowid, rec, rec_len, row, err);
  }
  rc = cvgi_btree_next(&sc->bt, &rowid, &rec, &rec_len);
  if (rc == CVG_DONE)
    return CVG_DONE;
  if (rc)
    return cvg_error_set(err, rc, sc->st->base.url,
                         "the database file is malformed (table b-tree page)");
  return fast_decode(sc, rowid, rec, rec_len, row, err);
}

static int fast_decode(sqlite_scan *sc, int64_t rowid, const unsigned char *rec, size_t rec_len,
                       cvg_scan_row *row, cvg_error *err) {
  int rc;
  /* Record header: varint header size, then one serial type per column. */
  uint64_t hsize;
  const unsigned char *end = rec + rec_len;
  size_t k = cvgi_varint(rec, end, &hsize);
  if (!k || hsize > rec_len)
    return cvg_error_set(err, CVG_ECORRUPT, sc->st->base.url, "malformed record");
  const unsigned char *hp = rec + k, *hend = rec + hsize;
  size_t body_off = 0;
  size_t c = 0;
  static const unsigned char fixed_len[] = {0, 1, 2, 3, 4, 6, 8, 8, 0, 0, 0, 0};
  while (hp < hend && c < (size_t)sc->n_tcols) {
    uint64_t st;
    size_t m = cvgi_varint(hp, hend, &st);
    if (!m)
      return cvg_error_set(err, CVG_ECORRUPT, sc->st->base.url, "malformed record header");
    hp += m;
    sc->serial[c] = st;
    sc->offset[c] = body_off;
    body_off += st < 12 ? fixed_len[st] : (size_t)((st - 12) / 2);
    c++;
  }
  sc->rec_cols = c;
  const unsigned char *body = rec + hsize;
  size_t body_len = rec_len - (size_t)hsize;
  if (body_off > body_len)
    return cvg_error_set(err, CVG_ECORRUPT, sc->st->base.url, "malformed record body");

  cvg_buf_reset(&sc->key);
  cvg_buf_reset(&sc->row);
  if (cvg_encode_int(&sc->key, rowid))
    return cvg_error_set(err, CVG_ENOMEM, sc->st->base.url, "out of memory");
  cvg_value v;
  size_t ver_start = 0, ver_end = 0;
  int have_ver = 0;
  row->tombstone = 0;
  for (int i = 0; i < sc->n_cmp; i++) {
    int t = sc->cmp_t[i];
    if ((rc = fast_value(sc, t, rowid, body, body_len, &v)))
      return cvg_error_set(err, rc, sc->st->base.url, "malformed record");
    if (t == sc->ver_t)
      ver_start = sc->row.len;
    if (v.type == CVG_REAL && sc->real_digits)
      v.u.r = cvg_round_real(v.u.r, sc->real_digits);
    char tb[32];
    size_t tl =
        v.type == CVG_TEXT && sc->time_digits
            ? cvg_norm_timestamp((const char *)v.u.s.p, v.u.s.n, sc->time_digits - 1, tb, sizeof tb)
            : 0;
    if (tl) {
      v.u.s.p = (const unsigned char *)tb;
      v.u.s.n = tl;
    }
    if ((rc = cvg_encode_value(&sc->row, &v)))
      return cvg_error_set(err, rc, sc->st->base.url, "row too large to encode");
    if (t == sc->ver_t) {
      ver_end = sc->row.len;
      have_ver = 1;
    }
    if (t == sc->tomb_t)
      row->tombstone = cvg_tombstone_truthy(&v);
  }
  row->version = NULL;
  row->version_len = 0;
  if (sc->ver_t >= 0) {
    if (!have_ver) {
      cvg_buf_reset(&sc->ver);
      if ((rc = fast_value(sc, sc->ver_t, rowid, body, body_len, &v)) ||
          (rc = cvg_encode_value(&sc->ver, &v)))
        return cvg_error_set(err, rc, sc->st->base.url, "malformed record");
      row->version = sc->ver.data;
      row->version_len = sc->ver.len;
    } else {
      row->version = sc->row.data + ver_start;
      row->version_len = ver_end - ver_start;
    }
  }
  if (sc->tomb_t >= 0 && sc->tomb_in_cmp < 0) {
    if ((rc = fast_value(sc, sc->tomb_t, rowid, body, body_len, &v)))
      return cvg_error_set(err, rc, sc->st->base.url, "malformed record");
    row->tombstone = cvg_tombstone_truthy(&v);
  }
  row->vvec = NULL;
  row->vvec_len = 0;
  if (sc->vv_t >= 0) {
    if ((rc = fast_value(sc, sc->vv_t, rowid, body, body_len, &v)))
      return cvg_error_set(err, rc, sc->st->base.url, "malformed record");
    if (v.type == CVG_TEXT || v.type == CVG_BLOB) {
      row->vvec = v.u.s.p;
      row->vvec_len = v.u.s.n;
    }
  }
  row->key = sc->key.data;
  row->key_len = sc->key.len;
  row->fp =
      cvg_fingerprint(sc->row.data ? (const void *)sc->row.data : (const void *)"", sc->row.len);
  return CVG_OK;
}

/* What a statement built by scan_build selects. */
static void sqlite_scan_close(cvg_scan *base);
static int bind_value(sqlite3_stmt *s, int i, const cvg_value *v);

enum scan_mode {
  SCAN_ALL,   /* every row (or --where), in key order */
  SCAN_SINCE, /* rows whose version >= ?1 (spec->since), in no particular order */
  SCAN_LOOKUP /* the row whose key IS ?1..?n */
};

static int scan_build(sqlite_store *st, const cvg_scan_spec *spec, enum scan_mode mode,
                      sqlite_scan **out, cvg_error *err);

/*
 * Sorts n rowids ascending: an LSD radix sort, a byte a pass, skipping the passes whose byte is
 * the same in every rowid (rowids below 2^24 take three). About ten times faster than qsort on
 * the ten thousand rowids of a typical incremental check. Falls back to insertion for tiny n
 * and to qsort when the scratch buffer cannot be had.
 */
static int cmp_rowid(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static void sort_rowids(int64_t *v, size_t n) {
  if (n < 64) {
    for (size_t i = 1; i < n; i++) {
      int64_t x = v[i];
      size_t j = i;
      for (; j > 0 && v[j - 1] > x; j--)
        v[j] = v[j - 1];
      v[j] = x;
    }
    return;
  }
  uint64_t *a = malloc(n * sizeof *a);
  if (!a) {
    qsort(v, n, sizeof *v, cmp_rowid);
    return;
  }
  uint64_t *src = (uint64_t *)(void *)v, *dst = a, flip = (uint64_t)1 << 63;
  /* the eight byte histograms in one pass, the sign bit flipped so signed order is unsigned */
  static _Thread_local size_t count[8][256];
  memset(count, 0, sizeof count);
  for (size_t i = 0; i < n; i++) {
    uint64_t x = src[i] ^= flip;
    for (int b = 0; b < 8; b++)
      count[b][(x >> (8 * b)) & 0xFF]++;
  }
  for (int b = 0, shift = 0; b < 8; b++, shift += 8) {
    if (count[b][(src[0] >> shift) & 0xFF] == n)
      continue; /* every rowid has this byte: the pass would change nothing */
    size_t sum = 0;
    for (int d = 0; d < 256; d++) {
      size_t c = count[b][d];
      count[b][d] = sum;
      sum += c;
    }
    for (size_t i = 0; i < n; i++)
      dst[count[b][(src[i] >> shift) & 0xFF]++] = src[i];
    uint64_t *t = src;
    src = dst;
    dst = t;
  }
  if (src != (uint64_t *)(void *)v)
    memcpy(v, src, n * sizeof *v);
  for (size_t i = 0; i < n; i++)
    ((uint64_t *)(void *)v)[i] ^= flip;
  free(a);
}

#define SINCE_MAX_ROWIDS ((size_t)1 << 22) /* more changed rows than this: the SQL path */

/*
 * The watermark as an index key, when walking the version index gives exactly the rows
 * "version >= ?1" selects. SQLite compares a column with a bound value after applying the
 * column's affinity to the value: a number against a numeric column, text against a TEXT or
 * untyped column, and any blob, are compared as they are; with text, only under the BINARY
 * collation the index is in. Anything else (text against a numeric column, which SQLite may
 * convert, a number against a TEXT column) is left to SQLite.
 */
static int since_key(const cvg_value *v, cvg_affinity aff, int binary, cvgi_ikey *k) {
  memset(k, 0, sizeof *k);
  switch (v->type) {
  case CVG_INTEGER:
    k->cls = 1;
    k->i = v->u.i;
    return aff != CVG_AFF_TEXT;
  case CVG_REAL:
    k->cls = 1;
    k->is_real = 1;
    k->r = v->u.r;
    return aff != CVG_AFF_TEXT && v->u.r == v->u.r;
  case CVG_TEXT:
    k->cls = 2;
    k->p = v->u.s.p;
    k->n = v->u.s.n;
    return binary && (aff == CVG_AFF_TEXT || aff == CVG_AFF_BLOB);
  case CVG_BLOB:
    k->cls = 3;
    k->p = v->u.s.p;
    k->n = v->u.s.n;
    return 1;
  default:
    return 0;
  }
}

/*
 * The incremental fast path: the rowids of rows whose version >= since come from the version
 * column's index (SELECT rowid ... reads only the index when there is one), sorted, then each
 * row is read by a b-tree descent in the mapped file — under the read transaction fast_setup
 * holds. Reading a changed row this way costs a page or two instead of a trip through the VDBE.
 * Falls back to the SQL path (already bound) on any trouble.
 */
static void since_rowids(sqlite_scan *sc, const cvg_scan_spec *spec, const cvg_value *since) {
  cvgi_ikey key;
  if (sc->vidx_root && since_key(since, sc->ver_aff, sc->ver_binary, &key)) {
    cvgi_rowids r = {NULL, 0, 0, SINCE_MAX_ROWIDS};
    int rc = cvgi_index_range(sc->file_fd, sc->map_len / sc->bt.page_size, sc->bt.page_size,
                              sc->bt.usable, sc->vidx_root, &key, &r);
    if (rc == CVG_OK && (r.v || (r.v = malloc(sizeof *r.v)))) {
      sc->rowids = r.v;
      sc->n_rowids = r.n;
      sort_rowids(sc->rowids, sc->n_rowids);
      return;
    }
    free(r.v); /* a record that spills, a malformed page: SQLite's answer instead */
  }
  cvg_buf sql;
  cvg_buf_init(&sql, SQL_MAX);
  sqlite3_stmt *s = NULL;
  int ok = !(cvgi_append_str(&sql, "SELECT rowid FROM ") || cvgi_quote_ident(&sql, sc->st->table) ||
             cvgi_append_str(&sql, " WHERE ") || cvgi_quote_ident(&sql, spec->version_col) ||
             cvgi_append_str(&sql, " >= ?1") || cvg_buf_append(&sql, "", 1));
  ok = ok && sqlite3_prepare_v2(sc->st->db, (const char *)sql.data, -1, &s, NULL) == SQLITE_OK;
  cvg_buf_release(&sql);
  size_t cap = 0;
  if (ok) {
    bind_value(s, 1, since);
    int src;
    while (ok && (src = sqlite3_step(s)) == SQLITE_ROW) {
      if (sc->n_rowids == cap) {
        cap = cap ? cap * 2 : 1024;
        int64_t *g = cap <= SINCE_MAX_ROWIDS ? realloc(sc->rowids, cap * sizeof *g) : NULL;
        if (!g) {
          ok = 0;
          break;
        }
        sc->rowids = g;
      }
      sc->rowids[sc->n_rowids++] = sqlite3_column_int64(s, 0);
    }
    ok = ok && src == SQLITE_DONE;
  }
  sqlite3_finalize(s);
  if (!ok) {
    fast_teardown(sc);
    return;
  }
  if (!sc->rowids) { /* nothing changed: an empty list, not the table walk */
    sc->rowids = malloc(sizeof *sc->rowids);
    if (!sc->rowids) {
      fast_teardown(sc);
      return;
    }
  }
  sort_rowids(sc->rowids, sc->n_rowids);
}

static int sqlite_scan_open(cvg_store *base, const cvg_scan_spec *spec, cvg_scan **out,
                            cvg_error *err) {
  sqlite_scan *sc = NULL;
  int rc = scan_build((sqlite_store *)base, spec, spec->since ? SCAN_SINCE : SCAN_ALL, &sc, err);
  if (rc)
    return rc;
  if (spec->since) {
    cvg_value v;
    cvg_buf scratch;
    size_t nv = 0;
    cvg_buf_init(&scratch, ROW_MAX);
    rc = cvg_decode_tuple(spec->since, spec->since_len, &v, 1, &nv, &scratch);
    if (rc || nv != 1) {
      cvg_buf_release(&scratch);
      sqlite_scan_close((cvg_scan *)sc);
      return cvg_error_set(err, CVG_ECORRUPT, base->url, "malformed version watermark");
    }
    bind_value(sc->stmt, 1, &v);
    fast_setup(sc, spec, 1);
    if (sc->fast)
      since_rowids(sc, spec, &v);
    cvg_buf_release(&scratch);
  } else {
    fast_setup(sc, spec, 0);
  }
  *out = (cvg_scan *)sc;
  return CVG_OK;
}

static int scan_build(sqlite_store *st, const cvg_scan_spec *spec, enum scan_mode mode,
                      sqlite_scan **out, cvg_error *err) {
  cvg_store *base = &st->base;
  if (spec->where && cvgi_where_check(spec->where, CVGI_SQL_SQLITE, base->url, err))
    return CVG_ESQL;
  sqlite_scan *sc = calloc(1, sizeof *sc);
  if (!sc)
    return cvg_error_set(err, CVG_ENOMEM, base->url, "out of memory");
  sc->base.ops = &cvgi_sqlite_ops;
  sc->st = st;
  sc->bt.fd = sc->file_fd = -1; /* no descriptor until the fast path opens one */
  cvg_buf_init(&sc->key, ROW_MAX);
  cvg_buf_init(&sc->row, ROW_MAX);
  cvg_buf_init(&sc->ver, ROW_MAX);
  cvg_buf sql;
  cvg_buf_init(&sql, SQL_MAX);
  int rc = cvgi_append_str(&sql, "SELECT ");
  int col = 0;
  for (size_t i = 0; !rc && i < spec->n_key; i++, col++) {
    rc = (col ? cvgi_append_str(&sql, ", ") : 0) || cvgi_quote_ident(&sql, spec->key_cols[i]);
  }
  for (size_t i = 0; !rc && i < spec->n_cmp; i++, col++)
    rc = cvgi_append_str(&sql, ", ") || cvgi_quote_ident(&sql, spec->cmp_cols[i]);
  sc->n_key = (int)spec->n_key;
  sc->n_cmp = (int)spec->n_cmp;
  sc->ver_idx = sc->tomb_idx = sc->vv_idx = sc->ver_in_cmp = sc->tomb_in_cmp = -1;
  sc->real_digits = spec->real_digits;
  sc->time_digits = spec->time_digits;
  for (size_t i = 0; i < spec->n_cmp; i++) {
    if (spec->version_col && strcasecmp(spec->cmp_cols[i], spec->version_col) == 0)
      sc->ver_in_cmp = (int)i;
    if (spec->tombstone_col && strcasecmp(spec->cmp_cols[i], spec->tombstone_col) == 0)
      sc->tomb_in_cmp = (int)i;
  }
  if (!rc && spec->version_col && sc->ver_in_cmp < 0) {
    sc->ver_idx = col++;
    rc = cvgi_append_str(&sql, ", ") || cvgi_quote_ident(&sql, spec->version_col);
  }
  if (!rc && spec->tombstone_col && sc->tomb_in_cmp < 0) {
    sc->tomb_idx = col++;
    rc = cvgi_append_str(&sql, ", ") || cvgi_quote_ident(&sql, spec->tombstone_col);
  }
  if (!rc && spec->vvec_col) {
    sc->vv_idx = col++;
    rc = cvgi_append_str(&sql, ", ") || cvgi_quote_ident(&sql, spec->vvec_col);
  }
  rc = rc || cvgi_append_str(&sql, " FROM ") || cvgi_quote_ident(&sql, st->table);
  if (!rc && mode == SCAN_SINCE) {
    if (!spec->version_col) {
      cvg_buf_release(&sql);
      free(sc);
      return cvg_error_set(err, CVG_EINVAL, base->url, "an incremental scan needs a version");
    }
    rc = cvgi_append_str(&sql, " WHERE ") || cvgi_quote_ident(&sql, spec->version_col) ||
         cvgi_append_str(&sql, " >= ?1");
  } else if (!rc && mode == SCAN_LOOKUP) {
    for (size_t i = 0; !rc && i < spec->n_key; i++) {
      char ph[32];
      snprintf(ph, sizeof ph, " IS ?%zu", i + 1);
      rc = cvgi_append_str(&sql, i ? " AND " : " WHERE ") ||
           cvgi_quote_ident(&sql, spec->key_cols[i]) || cvgi_append_str(&sql, ph);
    }
  }
  if (!rc && spec->where && spec->where[0])
    rc = cvgi_append_str(&sql, mode == SCAN_ALL ? " WHERE (\n" : " AND (\n") ||
         cvgi_append_str(&sql, spec->where) || cvgi_append_str(&sql, "\n)");
  if (!rc && mode == SCAN_ALL) {
    rc = cvgi_append_str(&sql, " ORDER BY ");
    for (size_t i = 0; !rc && i < spec->n_key; i++) {
      rc = (i ? cvgi_append_str(&sql, ", ") : 0) || cvgi_quote_ident(&sql, spec->key_cols[i]);
      if (!rc && !key_is_binary(st, spec->key_cols[i]))
        rc = cvgi_append_str(&sql, " COLLATE BINARY");
    }
  }
  rc = rc || cvg_buf_append(&sql, "", 1);
  if (rc) {
    rc = cvg_error_set(err, rc == CVG_ETOOBIG ? CVG_ETOOBIG : CVG_ENOMEM, base->url,
                       "cannot build the scan statement");
    goto fail;
  }
  const char *tail = NULL;
  int src = sqlite3_prepare_v2(st->db, (const char *)sql.data, (int)sql.len, &sc->stmt, &tail);
  if (src != SQLITE_OK) {
    const char *msg = sqlite3_errmsg(st->db);
    if (spec->where && spec->where[0]) {
      rc = cvg_error_set(err, CVG_ESQL, base->url, "cannot scan table '%s' with --where '%s': %s",
                         st->table, spec->where, msg);
      cvg_error_hint(err, "--where takes one SQL expression over the table's columns, e.g. "
                          "\"updated_at > 1700000000\"");
    } else {
      rc = sqlite_fail(st, src, "cannot scan the table", err);
    }
    goto fail;
  }
  for (; tail && *tail; tail++) {
    if (*tail != ' ' && *tail != '\n' && *tail != '\t' && *tail != '\r' && *tail != '\0') {
      rc = cvg_error_set(err, CVG_ESQL, base->url,
                         "--where '%s' is not a single expression (text follows it)", spec->where);
      cvg_error_hint(err, "give one SQL expression, without ';'");
      goto fail;
    }
  }
  cvg_buf_release(&sql);
  *out = sc;
  return CVG_OK;

fail:
  cvg_buf_release(&sql);
  sqlite3_finalize(sc->stmt);
  cvg_buf_release(&sc->key);
  cvg_buf_release(&sc->row);
  cvg_buf_release(&sc->ver);
  free(sc);
  return rc;
}

static int sqlite_scan_next(cvg_scan *base, cvg_scan_row *row, cvg_error *err) {
  sqlite_scan *sc = (sqlite_scan *)base;
  if (sc->fast)
    return fast_next(sc, row, err);
  sqlite3_stmt *s = sc->stmt;
  int src = sqlite3_step(s);
  if (src == SQLITE_DONE)
    return CVG_DONE;
  if (src != SQLITE_ROW)
    return sqlite_fail(sc->st, src, "scan failed", err);
  int rc = CVG_OK;
  cvg_buf_reset(&sc->key);
  cvg_buf_reset(&sc->row);
  int i = 0;
  for (; !rc && i < sc->n_key; i++)
    rc = encode_column(s, i, &sc->key);
  size_t ver_start = 0, ver_end = 0, tomb_start = 0;
  row->tombstone = 0;
  for (int c = 0; !rc && c < sc->n_cmp; c++, i++) {
    if (c == sc->ver_in_cmp)
      ver_start = sc->row.len;
    if (c == sc->tomb_in_cmp) {
      tomb_start = sc->row.len;
      /* Decide from the encoded bytes where the type allows (NULL, 0/1): no second read. */
      rc = encode_column(s, i, &sc->row);
      if (rc)
        break;
      const unsigned char *e = sc->row.data + tomb_start;
      if (e[0] == CVG_INTEGER) {
        static const unsigned char zero[8] = {0x80, 0, 0, 0, 0, 0, 0, 0};
        row->tombstone = memcmp(e + 1, zero, 8) != 0;
      } else if (e[0] != CVG_NULL) {
        cvg_value tv;
        column_value(s, i, &tv);
        row->tombstone = cvg_tombstone_truthy(&tv);
      }
      continue;
    }
    rc = encode_compared(sc, s, i, &sc->row);
    if (c == sc->ver_in_cmp)
      ver_end = sc->row.len;
  }
  row->version_len = 0;
  row->version = NULL;
  if (sc->ver_in_cmp >= 0) {
    row->version = sc->row.data + ver_start;
    row->version_len = ver_end - ver_start;
  } else if (!rc && sc->ver_idx >= 0) {
    cvg_buf_reset(&sc->ver);
    rc = encode_column(s, sc->ver_idx, &sc->ver);
    row->version = sc->ver.data;
    row->version_len = sc->ver.len;
  }
  if (rc)
    return cvg_error_set(err, rc, sc->st->base.url, "row too large to encode");
  row->key = sc->key.data;
  row->key_len = sc->key.len;
  row->fp =
      cvg_fingerprint(sc->row.data ? (const void *)sc->row.data : (const void *)"", sc->row.len);
  if (sc->tomb_idx >= 0) {
    cvg_value v;
    column_value(s, sc->tomb_idx, &v);
    row->tombstone = cvg_tombstone_truthy(&v);
  }
  row->vvec = NULL;
  row->vvec_len = 0;
  if (sc->vv_idx >= 0 && sqlite3_column_type(s, sc->vv_idx) != SQLITE_NULL) {
    row->vvec = sqlite3_column_text(s, sc->vv_idx);
    row->vvec_len = (size_t)sqlite3_column_bytes(s, sc->vv_idx);
  }
  return CVG_OK;
}

static void sqlite_scan_close(cvg_scan *base) {
  sqlite_scan *sc = (sqlite_scan *)base;
  fast_teardown(sc);
  sqlite3_finalize(sc->stmt);
  cvg_buf_release(&sc->key);
  cvg_buf_release(&sc->row);
  cvg_buf_release(&sc->ver);
  free(sc);
}

static int bind_value(sqlite3_stmt *s, int i, const cvg_value *v) {
  switch (v->type) {
  case CVG_INTEGER:
    return sqlite3_bind_int64(s, i, v->u.i);
  case CVG_REAL:
    return sqlite3_bind_double(s, i, v->u.r);
  case CVG_TEXT:
    return sqlite3_bind_text(s, i, (const char *)v->u.s.p, (int)v->u.s.n, SQLITE_TRANSIENT);
  case CVG_BLOB:
    return sqlite3_bind_blob(s, i, v->u.s.p, (int)v->u.s.n, SQLITE_TRANSIENT);
  default:
    return sqlite3_bind_null(s, i);
  }
}

#define FETCH_MAX_KEY 64

static int sqlite_fetch(cvg_store *base, const cvg_scan_spec *spec, const unsigned char *key,
                        size_t key_len, const char *const *cols, size_t n_cols, cvg_buf *out,
                        int *found, cvg_error *err) {
  sqlite_store *st = (sqlite_store *)base;
  *found = 0;
  cvg_value vals[FETCH_MAX_KEY];
  size_t n_vals = 0;
  cvg_buf *scratch = &st->kwork, *sqlb = &st->work;
  cvg_buf_reset(scratch);
  cvg_buf_reset(sqlb);
  int rc = cvg_decode_tuple(key, key_len, vals, FETCH_MAX_KEY, &n_vals, scratch);
  if (rc || n_vals != spec->n_key) {
    rc = cvg_error_set(err, CVG_ECORRUPT, base->url, "malformed key passed to fetch");
    goto done;
  }
  rc = cvgi_append_str(sqlb, "SELECT ");
  for (size_t i = 0; !rc && i < n_cols; i++)
    rc = (i ? cvgi_append_str(sqlb, ", ") : 0) || cvgi_quote_ident(sqlb, cols[i]);
  if (!rc && n_cols == 0)
    rc = cvgi_append_str(sqlb, "1");
  rc = rc || cvgi_append_str(sqlb, " FROM ") || cvgi_quote_ident(sqlb, st->table) ||
       cvgi_append_str(sqlb, " WHERE ");
  for (size_t i = 0; !rc && i < spec->n_key; i++) {
    char ph[32];
    snprintf(ph, sizeof ph, " %s ?%zu", vals[i].type == CVG_NULL ? "IS" : "=", i + 1);
    rc = (i ? cvgi_append_str(sqlb, " AND ") : 0) || cvgi_quote_ident(sqlb, spec->key_cols[i]) ||
         cvgi_append_str(sqlb, ph);
  }
  rc = rc || cvg_buf_append(sqlb, "", 1);
  if (rc) {
    rc = cvg_error_set(err, CVG_ENOMEM, base->url, "cannot build the fetch statement");
    goto done;
  }
  if (!st->fetch || strcmp(st->fetch_sql, (const char *)sqlb->data) != 0) {
    sqlite3_finalize(st->fetch);
    st->fetch = NULL;
    free(st->fetch_sql);
    st->fetch_sql = strdup((const char *)sqlb->data);
    if (!st->fetch_sql) {
      rc = cvg_error_set(err, CVG_ENOMEM, base->url, "out of memory");
      goto done;
    }
    int src = sqlite3_prepare_v2(st->db, st->fetch_sql, -1, &st->fetch, NULL);
    if (src != SQLITE_OK) {
      rc = sqlite_fail(st, src, "cannot fetch rows", err);
      goto done;
    }
  }
  sqlite3_reset(st->fetch);
  for (size_t i = 0; i < n_vals; i++)
    bind_value(st->fetch, (int)i + 1, &vals[i]);
  int src = sqlite3_step(st->fetch);
  if (src == SQLITE_ROW) {
    *found = 1;
    for (size_t i = 0; !rc && i < n_cols; i++)
      rc = encode_column(st->fetch, (int)i, out);
    if (rc)
      rc = cvg_error_set(err, rc, base->url, "row too large to encode");
  } else if (src != SQLITE_DONE) {
    rc = sqlite_fail(st, src, "cannot fetch rows", err);
  }
  sqlite3_reset(st->fetch);
done:
  return rc;
}

/* A string that changes whenever a lookup statement built from spec would. */
static int spec_signature(const cvg_scan_spec *spec, cvg_buf *b) {
  int rc = 0;
  for (size_t i = 0; !rc && i < spec->n_key; i++)
    rc = cvgi_append_str(b, "k") || cvgi_quote_ident(b, spec->key_cols[i]);
  for (size_t i = 0; !rc && i < spec->n_cmp; i++)
    rc = cvgi_append_str(b, "c") || cvgi_quote_ident(b, spec->cmp_cols[i]);
  if (!rc && spec->version_col)
    rc = cvgi_append_str(b, "v") || cvgi_quote_ident(b, spec->version_col);
  if (!rc && spec->tombstone_col)
    rc = cvgi_append_str(b, "t") || cvgi_quote_ident(b, spec->tombstone_col);
  if (!rc && spec->vvec_col)
    rc = cvgi_append_str(b, "x") || cvgi_quote_ident(b, spec->vvec_col);
  if (!rc && spec->where)
    rc = cvgi_append_str(b, "w") || cvgi_append_str(b, spec->where);
  if (!rc && (spec->real_digits || spec->time_digits)) {
    char rd[32];
    snprintf(rd, sizeof rd, "r%dt%d", spec->real_digits, spec->time_digits);
    rc = cvgi_append_str(b, rd);
  }
  return rc || cvg_buf_append(b, "", 1);
}

static int sqlite_lookup(cvg_store *base, const cvg_scan_spec *spec, const unsigned char *key,
                         size_t key_len, cvg_scan_row *row, int *found, cvg_error *err) {
  sqlite_store *st = (sqlite_store *)base;
  *found = 0;
  cvg_value vals[FETCH_MAX_KEY];
  size_t n_vals = 0;
  cvg_buf *scratch = &st->kwork, *sigb = &st->work;
  cvg_buf_reset(scratch);
  cvg_buf_reset(sigb);
  int rc = cvg_decode_tuple(key, key_len, vals, FETCH_MAX_KEY, &n_vals, scratch);
  if (rc || n_vals != spec->n_key) {
    rc = cvg_error_set(err, CVG_ECORRUPT, base->url, "malformed key passed to lookup");
    goto done;
  }
  if (spec_signature(spec, sigb)) {
    rc = cvg_error_set(err, CVG_ENOMEM, base->url, "out of memory");
    goto done;
  }
  if (!st->lookup || strcmp(st->lookup_sig, (const char *)sigb->data) != 0) {
    if (st->lookup)
      sqlite_scan_close((cvg_scan *)st->lookup);
    st->lookup = NULL;
    free(st->lookup_sig);
    st->lookup_sig = strdup((const char *)sigb->data);
    if (!st->lookup_sig) {
      rc = cvg_error_set(err, CVG_ENOMEM, base->url, "out of memory");
      goto done;
    }
    if ((rc = scan_build(st, spec, SCAN_LOOKUP, &st->lookup, err)))
      goto done;
  }
  sqlite3_reset(st->lookup->stmt);
  for (size_t i = 0; i < n_vals; i++)
    bind_value(st->lookup->stmt, (int)i + 1, &vals[i]);
  rc = sqlite_scan_next((cvg_scan *)st->lookup, row, err);
  if (rc == CVG_OK)
    *found = 1;
  else if (rc == CVG_DONE)
    rc = CVG_OK;
  /* Key, values and version were copied into the scan's buffers; the version vector was not,
   * and is not returned. Resetting ends the statement's read transaction, which would
   * otherwise block writers of a rollback-journal database between lookups. */
  row->vvec = NULL;
  row->vvec_len = 0;
  sqlite3_reset(st->lookup->stmt);
done:
  return rc;
}

/* ---- converge's own tables: heartbeat and canary rows, never the user's data ---- */

/* Runs sql (with ?1.. bound by the caller through bind) to completion. Returns CVG_ENOTABLE
 * when a table it names does not exist. */
static int own_prepare(sqlite_store *st, const char *const *parts, size_t n_parts,
                       const char *table, sqlite3_stmt **out, cvg_error *err) {
  cvg_buf sql;
  cvg_buf_init(&sql, SQL_MAX);
  int rc = 0;
  for (size_t i = 0; !rc && i < n_parts; i++)
    rc = parts[i] ? cvgi_append_str(&sql, parts[i]) : cvgi_quote_ident(&sql, table);
  rc = rc || cvg_buf_append(&sql, "", 1);
  if (rc) {
    cvg_buf_release(&sql);
    return cvg_error_set(err, CVG_ENOMEM, st->base.url, "out of memory");
  }
  int src = sqlite3_prepare_v2(st->db, (const char *)sql.data, -1, out, NULL);
  cvg_buf_release(&sql);
  if (src == SQLITE_OK)
    return CVG_OK;
  const char *msg = sqlite3_errmsg(st->db);
  if (strstr(msg, "no such table")) {
    cvg_error_set(err, CVG_ENOTABLE, st->base.url, "no table '%s' (converge's own table)", table);
    cvg_error_hint(err, "it is created on the authority when create_tables is true, and reaches "
                        "other replicas through replication");
    return CVG_ENOTABLE;
  }
  return sqlite_fail(st, src, "cannot use converge's table", err);
}

static int own_step(sqlite_store *st, sqlite3_stmt *s, const char *doing, cvg_error *err) {
  int src = sqlite3_step(s);
  int rc = src == SQLITE_DONE || src == SQLITE_ROW ? CVG_OK : sqlite_fail(st, src, doing, err);
  sqlite3_finalize(s);
  return rc;
}

static int own_writable(sqlite_store *st, cvg_error *err) {
  if (!st->readonly)
    return CVG_OK;
  return cvg_error_set(err, CVG_EACCES, st->base.url, "the replica was opened read-only");
}

static int sqlite_own_create(sqlite_store *st, const char *table, const char *cols,
                             cvg_error *err) {
  const char *parts[] = {"CREATE TABLE IF NOT EXISTS ", NULL, cols};
  sqlite3_stmt *s = NULL;
  int rc = own_prepare(st, parts, 3, table, &s, err);
  return rc ? rc : own_step(st, s, "cannot create converge's table", err);
}

static int sqlite_heartbeat_write(cvg_store *base, const char *table, const char *source,
                                  int64_t seq, double ts, int create, cvg_error *err) {
  sqlite_store *st = (sqlite_store *)base;
  int rc = own_writable(st, err);
  if (!rc && create)
    rc = sqlite_own_create(
        st, table, " (source TEXT PRIMARY KEY, seq INTEGER NOT NULL, ts REAL NOT NULL)", err);
  if (rc)
    return rc;
  const char *parts[] = {"INSERT INTO ", NULL,
                         " (source, seq, ts) VALUES (?1, ?2, ?3) ON CONFLICT(source) DO UPDATE "
                         "SET seq = excluded.seq, ts = excluded.ts"};
  sqlite3_stmt *s = NULL;
  if ((rc = own_prepare(st, parts, 3, table, &s, err)))
    return rc;
  sqlite3_bind_text(s, 1, source, -1, SQLITE_STATIC);
  sqlite3_bind_int64(s, 2, seq);
  sqlite3_bind_double(s, 3, ts);
  return own_step(st, s, "cannot write the heartbeat", err);
}

static int sqlite_heartbeat_read(cvg_store *base, const char *table, const char *source,
                                 int64_t *seq, double *ts, int *found, cvg_error *err) {
  sqlite_store *st = (sqlite_store *)base;
  int there = still_there(st, err);
  if (there)
    return there;
  const char *parts[] = {"SELECT seq, ts FROM ", NULL, " WHERE source = ?1"};
  sqlite3_stmt *s = NULL;
  *found = 0;
  int rc = own_prepare(st, parts, 3, table, &s, err);
  if (rc)
    return rc;
  sqlite3_bind_text(s, 1, source, -1, SQLITE_STATIC);
  int src = sqlite3_step(s);
  if (src == SQLITE_ROW) {
    *found = 1;
    *seq = sqlite3_column_int64(s, 0);
    *ts = sqlite3_column_double(s, 1);
  } else if (src != SQLITE_DONE) {
    rc = sqlite_fail(st, src, "cannot read the heartbeat", err);
  }
  sqlite3_finalize(s);
  return rc;
}

static int sqlite_canary_write(cvg_store *base, const char *table, const char *source,
                               const char *token, double ts, int create, cvg_error *err) {
  sqlite_store *st = (sqlite_store *)base;
  int rc = own_writable(st, err);
  if (!rc && create)
    rc = sqlite_own_create(
        st, table, " (token TEXT PRIMARY KEY, source TEXT NOT NULL, ts REAL NOT NULL)", err);
  if (rc)
    return rc;
  const char *parts[] = {"INSERT OR REPLACE INTO ", NULL,
                         " (token, source, ts) VALUES (?1, ?2, ?3)"};
  sqlite3_stmt *s = NULL;
  if ((rc = own_prepare(st, parts, 3, table, &s, err)))
    return rc;
  sqlite3_bind_text(s, 1, token, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 2, source, -1, SQLITE_STATIC);
  sqlite3_bind_double(s, 3, ts);
  return own_step(st, s, "cannot write the canary", err);
}

static int sqlite_canary_seen(cvg_store *base, const char *table, const char *token, int *found,
                              cvg_error *err) {
  sqlite_store *st = (sqlite_store *)base;
  int there = still_there(st, err);
  if (there)
    return there;
  const char *parts[] = {"SELECT 1 FROM ", NULL, " WHERE token = ?1"};
  sqlite3_stmt *s = NULL;
  *found = 0;
  int rc = own_prepare(st, parts, 3, table, &s, err);
  if (rc)
    return rc;
  sqlite3_bind_text(s, 1, token, -1, SQLITE_STATIC);
  int src = sqlite3_step(s);
  if (src == SQLITE_ROW)
    *found = 1;
  else if (src != SQLITE_DONE)
    rc = sqlite_fail(st, src, "cannot read the canary", err);
  sqlite3_finalize(s);
  return rc;
}

static int sqlite_canary_purge(cvg_store *base, const char *table, const char *source,
                               double before, cvg_error *err) {
  sqlite_store *st = (sqlite_store *)base;
  int rc = own_writable(st, err);
  if (rc)
    return rc;
  const char *parts[] = {"DELETE FROM ", NULL, " WHERE source = ?1 AND ts < ?2"};
  sqlite3_stmt *s = NULL;
  if ((rc = own_prepare(st, parts, 3, table, &s, err)))
    return rc;
  sqlite3_bind_text(s, 1, source, -1, SQLITE_STATIC);
  sqlite3_bind_double(s, 2, before);
  return own_step(st, s, "cannot purge old canaries", err);
}

static int sqlite_scalar(cvg_store *base, const char *expr, double *out, int *is_null,
                         cvg_error *err) {
  sqlite_store *st = (sqlite_store *)base;
  cvg_buf sql;
  cvg_buf_init(&sql, SQL_MAX);
  int rc = cvgi_append_str(&sql, "SELECT (\n") || cvgi_append_str(&sql, expr) ||
           cvgi_append_str(&sql, "\n) FROM ") || cvgi_quote_ident(&sql, st->table) ||
           cvg_buf_append(&sql, "", 1);
  if (rc) {
    cvg_buf_release(&sql);
    return cvg_error_set(err, CVG_ENOMEM, base->url, "out of memory");
  }
  sqlite3_stmt *s = NULL;
  const char *tail = NULL;
  int src = sqlite3_prepare_v2(st->db, (const char *)sql.data, -1, &s, &tail);
  int trailing = tail && *tail; /* tail points into sql */
  cvg_buf_release(&sql);
  if (src != SQLITE_OK || trailing) {
    rc = cvg_error_set(err, CVG_ESQL, base->url, "cannot evaluate aggregate '%s': %s", expr,
                       src != SQLITE_OK ? sqlite3_errmsg(st->db) : "text follows it");
    cvg_error_hint(err, "give one aggregate over the table's columns, e.g. sum(balance)");
    sqlite3_finalize(s);
    return rc;
  }
  src = sqlite3_step(s);
  if (src == SQLITE_ROW) {
    *is_null = sqlite3_column_type(s, 0) == SQLITE_NULL;
    *out = sqlite3_column_double(s, 0);
  } else {
    rc = sqlite_fail(st, src, "cannot evaluate the aggregate", err);
  }
  sqlite3_finalize(s);
  return rc;
}

static int sqlite_has_index(cvg_store *base, const char *col, int *yes, cvg_error *err) {
  sqlite_store *st = (sqlite_store *)base;
  sqlite3_stmt *s = NULL;
  *yes = 0;
  int src =
      sqlite3_prepare_v2(st->db,
                         "SELECT 1 FROM pragma_index_list(?1) AS l, pragma_index_info(l.name) "
                         "AS i WHERE i.seqno = 0 AND i.name = ?2 COLLATE NOCASE",
                         -1, &s, NULL);
  if (src != SQLITE_OK) {
    sqlite3_finalize(s);
    return sqlite_fail(st, src, "cannot list the table's indexes", err);
  }
  sqlite3_bind_text(s, 1, st->table, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 2, col, -1, SQLITE_STATIC);
  src = sqlite3_step(s);
  int rc = CVG_OK;
  if (src == SQLITE_ROW)
    *yes = 1;
  else if (src != SQLITE_DONE)
    rc = sqlite_fail(st, src, "cannot list the table's indexes", err);
  sqlite3_finalize(s);
  return rc;
}

/* ---- conditional writes (repair) ---- */

#define APPLY_MAX_COLS 2000

/* " WHERE k1 IS ?o AND k2 IS ?o+1 ..." */
static int where_key(cvg_buf *sql, const cvg_scan_spec *spec, int first) {
  int rc = cvgi_append_str(sql, " WHERE ");
  for (size_t i = 0; !rc && i < spec->n_key; i++) {
    char ph[32];
    snprintf(ph, sizeof ph, " IS ?%d", first + (int)i);
    rc = (i ? cvgi_append_str(sql, " AND ") : 0) || cvgi_quote_ident(sql, spec->key_cols[i]) ||
         cvgi_append_str(sql, ph);
  }
  return rc;
}

static int prepare_sql(sqlite_store *st, cvg_buf *sql, sqlite3_stmt **out, cvg_error *err) {
  if (cvg_buf_append(sql, "", 1))
    return cvg_error_set(err, CVG_ENOMEM, st->base.url, "out of memory");
  int src = sqlite3_prepare_v2(st->db, (const char *)sql->data, -1, out, NULL);
  return src == SQLITE_OK ? CVG_OK : sqlite_fail(st, src, "cannot prepare a repair statement", err);
}

/* The UPDATE, INSERT and DELETE statements of the mutations' shape. */
static int apply_prepare(sqlite_store *st, const cvg_scan_spec *spec, const cvg_mutation *m,
                         sqlite3_stmt **upd, sqlite3_stmt **ins, sqlite3_stmt **del,
                         cvg_error *err) {
  cvg_buf sql;
  cvg_buf_init(&sql, SQL_MAX);
  int rc = cvgi_append_str(&sql, "DELETE FROM ") || cvgi_quote_ident(&sql, st->table) ||
           where_key(&sql, spec, 1);
  rc = rc ? cvg_error_set(err, CVG_ENOMEM, st->base.url, "out of memory")
          : prepare_sql(st, &sql, del, err);
  if (!rc && m && m->n_cols) {
    cvg_buf_reset(&sql);
    rc = cvgi_append_str(&sql, "UPDATE ") || cvgi_quote_ident(&sql, st->table) ||
         cvgi_append_str(&sql, " SET ");
    for (size_t i = 0; !rc && i < m->n_cols; i++) {
      char ph[32];
      snprintf(ph, sizeof ph, " = ?%zu", i + 1);
      rc = (i ? cvgi_append_str(&sql, ", ") : 0) || cvgi_quote_ident(&sql, m->cols[i]) ||
           cvgi_append_str(&sql, ph);
    }
    rc = rc || where_key(&sql, spec, (int)m->n_cols + 1);
    rc = rc ? cvg_error_set(err, CVG_ENOMEM, st->base.url, "out of memory")
            : prepare_sql(st, &sql, upd, err);
    if (!rc) {
      cvg_buf_reset(&sql);
      rc = cvgi_append_str(&sql, "INSERT INTO ") || cvgi_quote_ident(&sql, st->table) ||
           cvgi_append_str(&sql, " (");
      for (size_t i = 0; !rc && i < m->n_cols; i++)
        rc = (i ? cvgi_append_str(&sql, ", ") : 0) || cvgi_quote_ident(&sql, m->cols[i]);
      rc = rc || cvgi_append_str(&sql, ") VALUES (");
      for (size_t i = 0; !rc && i < m->n_cols; i++) {
        char ph[32];
        snprintf(ph, sizeof ph, "%s?%zu", i ? ", " : "", i + 1);
        rc = cvgi_append_str(&sql, ph);
      }
      rc = rc || cvgi_append_str(&sql, ")");
      rc = rc ? cvg_error_set(err, CVG_ENOMEM, st->base.url, "out of memory")
              : prepare_sql(st, &sql, ins, err);
    }
  }
  cvg_buf_release(&sql);
  return rc;
}

/* Applies one mutation whose condition holds; returns the SQLite status of the write. */
static int apply_one(sqlite_store *st, const cvg_scan_spec *spec, cvg_mutation *mu,
                     const cvg_mutation *shape, sqlite3_stmt *upd, sqlite3_stmt *ins,
                     sqlite3_stmt *del, cvg_value *vals, cvg_buf *scratch, cvg_buf *kscratch) {
  size_t nk = 0, nv = 0;
  cvg_value *kv = vals + APPLY_MAX_COLS;
  if (cvg_decode_tuple(mu->key, mu->key_len, kv, FETCH_MAX_KEY, &nk, kscratch) != CVG_OK ||
      nk != spec->n_key) {
    snprintf(mu->reason, sizeof mu->reason, "malformed key");
    return SQLITE_MISUSE;
  }
  int src;
  if (mu->op == CVG_MUT_DELETE) {
    sqlite3_reset(del);
    for (size_t k = 0; k < nk; k++)
      bind_value(del, (int)k + 1, &kv[k]);
    src = sqlite3_step(del);
    sqlite3_reset(del);
    return src;
  }
  if (!upd || mu->n_cols != shape->n_cols ||
      cvg_decode_tuple(mu->values, mu->values_len, vals, APPLY_MAX_COLS, &nv, scratch) != CVG_OK ||
      nv != mu->n_cols) {
    snprintf(mu->reason, sizeof mu->reason, "malformed row values");
    return SQLITE_MISUSE;
  }
  sqlite3_reset(upd);
  for (size_t c = 0; c < nv; c++)
    bind_value(upd, (int)c + 1, &vals[c]);
  for (size_t k = 0; k < nk; k++)
    bind_value(upd, (int)(nv + k) + 1, &kv[k]);
  src = sqlite3_step(upd);
  sqlite3_reset(upd);
  if (src == SQLITE_DONE && sqlite3_changes(st->db) == 0) {
    sqlite3_reset(ins);
    for (size_t c = 0; c < nv; c++)
      bind_value(ins, (int)c + 1, &vals[c]);
    src = sqlite3_step(ins);
    sqlite3_reset(ins);
  }
  return src;
}

static int sqlite_apply(cvg_store *base, const cvg_scan_spec *spec, cvg_mutation *m, size_t n,
                        cvg_error *err) {
  sqlite_store *st = (sqlite_store *)base;
  if (st->readonly)
    return cvg_error_set(err, CVG_EACCES, base->url, "the replica was opened read-only");
  sqlite3_stmt *upd = NULL, *ins = NULL, *del = NULL;
  const cvg_mutation *shape = NULL;
  for (size_t i = 0; i < n && !shape; i++)
    if (m[i].op == CVG_MUT_UPSERT)
      shape = &m[i];
  if (shape && shape->n_cols > APPLY_MAX_COLS)
    return cvg_error_set(err, CVG_ETOOBIG, base->url, "too many columns to write");
  cvg_value *vals = malloc((APPLY_MAX_COLS + FETCH_MAX_KEY) * sizeof *vals);
  if (!vals)
    return cvg_error_set(err, CVG_ENOMEM, base->url, "out of memory");
  int src = sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
  if (src != SQLITE_OK) {
    free(vals);
    int rc = sqlite_fail(st, src, "cannot begin the repair transaction", err);
    for (size_t i = 0; i < n; i++) {
      m[i].result = CVG_MUT_FAILED;
      snprintf(m[i].reason, sizeof m[i].reason, "cannot begin the transaction: %.150s",
               sqlite3_errmsg(st->db));
    }
    return rc;
  }
  int rc = apply_prepare(st, spec, shape, &upd, &ins, &del, err);
  cvg_buf scratch, kscratch;
  cvg_buf_init(&scratch, ROW_MAX);
  cvg_buf_init(&kscratch, ROW_MAX);
  for (size_t i = 0; !rc && i < n; i++) {
    cvg_mutation *mu = &m[i];
    mu->reason[0] = '\0';
    cvg_scan_row row;
    int found = 0;
    cvg_error lerr;
    cvg_error_clear(&lerr);
    if (sqlite_lookup(base, spec, mu->key, mu->key_len, &row, &found, &lerr) != CVG_OK) {
      mu->result = CVG_MUT_FAILED;
      snprintf(mu->reason, sizeof mu->reason, "%.190s", lerr.msg);
      continue;
    }
    if (!cvgi_mutation_matches(mu, found, &row, mu->reason, sizeof mu->reason)) {
      mu->result = CVG_MUT_SKIPPED;
      continue;
    }
    src = apply_one(st, spec, mu, shape, upd, ins, del, vals, &scratch, &kscratch);
    if (src == SQLITE_DONE) {
      mu->result = CVG_MUT_APPLIED;
    } else {
      mu->result = CVG_MUT_FAILED;
      if (src != SQLITE_MISUSE)
        snprintf(mu->reason, sizeof mu->reason, "%s", sqlite3_errmsg(st->db));
    }
  }
  free(vals);
  cvg_buf_release(&scratch);
  cvg_buf_release(&kscratch);
  sqlite3_finalize(upd); /* statements must be done before COMMIT */
  sqlite3_finalize(ins);
  sqlite3_finalize(del);
  if (st->lookup)
    sqlite3_reset(st->lookup->stmt);
  if (!rc && (src = sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL)) != SQLITE_OK)
    rc = sqlite_fail(st, src, "cannot commit the repair transaction", err);
  if (rc) {
    sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    for (size_t i = 0; i < n; i++) {
      m[i].result = CVG_MUT_FAILED;
      snprintf(m[i].reason, sizeof m[i].reason, "the repair transaction did not commit");
    }
  }
  return rc;
}

static int sqlite_read_txn(cvg_store *base, int begin, cvg_error *err) {
  sqlite_store *st = (sqlite_store *)base;
  if (st->fetch)
    sqlite3_reset(st->fetch);
  if (st->lookup)
    sqlite3_reset(st->lookup->stmt);
  int src = sqlite3_exec(st->db, begin ? "BEGIN" : "COMMIT", NULL, NULL, NULL);
  return src == SQLITE_OK
             ? CVG_OK
             : sqlite_fail(st, src, begin ? "cannot begin reading" : "cannot end reading", err);
}

const cvg_store_ops cvgi_sqlite_ops = {
    .scheme = "sqlite",
    .open = sqlite_open,
    .close = sqlite_close,
    .describe = sqlite_describe,
    .scan_open = sqlite_scan_open,
    .scan_next = sqlite_scan_next,
    .scan_close = sqlite_scan_close,
    .fetch = sqlite_fetch,
    .lookup = sqlite_lookup,
    .heartbeat_write = sqlite_heartbeat_write,
    .heartbeat_read = sqlite_heartbeat_read,
    .canary_write = sqlite_canary_write,
    .canary_seen = sqlite_canary_seen,
    .canary_purge = sqlite_canary_purge,
    .scalar = sqlite_scalar,
    .has_index = sqlite_has_index,
    .apply = sqlite_apply,
    .read_txn = sqlite_read_txn,
};
