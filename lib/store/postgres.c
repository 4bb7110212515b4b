/* SPDX-License-Identifier: MIT */
/*
 * The PostgreSQL engine (libpq): postgresql://[user[:password]@]host[:port]/database?table=[schema.]T
 *
 * The password comes from the URL (shown as *** everywhere), or - better - from libpq's own
 * sources: PGPASSWORD, PGPASSFILE, ~/.pgpass. Each connection sets TimeZone UTC, DateStyle ISO,
 * extra_float_digits 3 (exact round trips of floats), a statement timeout (30 s; a stuck server
 * cannot stall the monitor) and application_name converge.
 *
 * Rows are read in the text format and mapped onto the canonical encoding so that the same row
 * in SQLite and in PostgreSQL gives the same key bytes and fingerprint (docs/types.md):
 *   smallint, integer, bigint          -> integer
 *   boolean                            -> integer 0 / 1 (SQLite has no boolean)
 *   real, double precision             -> real
 *   numeric                            -> integer when it is whole and fits 64 bits, else real
 *   bytea                              -> blob
 *   everything else (text, varchar, char, date, timestamp[tz], uuid, json, jsonb, ...)
 *                                      -> text, as PostgreSQL prints it with the settings above
 * Scans stream in single-row mode (bounded memory) in key order; text-like key columns are
 * ordered with COLLATE "C", which is byte order, the order of the canonical encoding.
 *
 * This engine reads (describe, scan, fetch): cross-engine diffs. Writes (repair), heartbeats and
 * canaries are not there yet; the wrappers in store.c say so by name.
 */
#include "converge/store.h"
#include "store_int.h"

#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PG_SQL_MAX (1u << 20)
#define PG_ROW_MAX (1u << 30)

/* Type OIDs (pg_type.h; stable across versions). */
#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_INT2 21
#define OID_INT4 23
#define OID_FLOAT4 700
#define OID_FLOAT8 701
#define OID_NUMERIC 1700

typedef struct pg_store {
  cvg_store base; /* must be first */
  PGconn *conn;
  char *schema, *table; /* OWNED; schema NULL: the search path decides */
  char *shown;          /* OWNED; the URL as shown */
  cvg_table_desc desc;  /* the table, described once at open */
} pg_store;

typedef struct pg_scan {
  cvgi_scan_base base; /* must be first */
  pg_store *st;
  int n_key, n_cmp, ver_idx, tomb_idx; /* positions in the result */
  PGresult *res;                        /* the current row, single-row mode */
  cvg_buf key, row, ver;
  int done;
} pg_scan;

static int pg_fail(pg_store *st, const char *what, cvg_error *err) {
  const char *m = st->conn ? PQerrorMessage(st->conn) : "no connection";
  char msg[600];
  snprintf(msg, sizeof msg, "%s", m);
  size_t l = strlen(msg);
  while (l && (msg[l - 1] == '\n' || msg[l - 1] == ' '))
    msg[--l] = '\0';
  cvg_error_set(err, CVG_ESTORE, st->shown ? st->shown : "postgresql", "%s: %s", what, msg);
  return CVG_ESTORE;
}

/* Appends schema-qualified, quoted table name. */
static int qualified(const pg_store *st, cvg_buf *b) {
  if (st->schema && (cvgi_quote_ident(b, st->schema) || cvgi_append_str(b, ".")))
    return CVG_ENOMEM;
  return cvgi_quote_ident(b, st->table);
}

/* Splits user[:password]@host[:port] (percent escapes decoded in user and password). */
static void pct(char *s) {
  char *w = s;
  for (char *r = s; *r; r++) {
    if (r[0] == '%' && r[1] && r[2]) {
      char h[3] = {r[1], r[2], 0};
      char *e = NULL;
      long v = strtol(h, &e, 16);
      if (!*e && v > 0) {
        *w++ = (char)v;
        r += 2;
        continue;
      }
    }
    *w++ = *r;
  }
  *w = '\0';
}

static int pg_describe_now(pg_store *st, cvg_error *err);

static int pg_open(cvg_store **out, const cvg_url *url, unsigned flags, cvg_error *err) {
  (void)flags;
  *out = NULL;
  if (!url->table || !*url->table) {
    cvg_error_set(err, CVG_EURL, "postgresql", "the URL names no table");
    cvg_error_hint(err, "add ?table=NAME or ?table=SCHEMA.NAME");
    return CVG_EURL;
  }
  pg_store *st = calloc(1, sizeof *st);
  char *auth = strdup(url->host ? url->host : "");
  char *db = strdup(url->path && url->path[0] == '/' ? url->path + 1 : url->path ? url->path : "");
  const char *dot = strchr(url->table, '.');
  if (st && dot) {
    st->schema = strndup(url->table, (size_t)(dot - url->table));
    st->table = strdup(dot + 1);
  } else if (st) {
    st->table = strdup(url->table);
  }
  char shown[700]; /* for messages: host, database and table; never the user or password */
  const char *hs = auth ? strrchr(auth, '@') : NULL;
  snprintf(shown, sizeof shown, "postgresql://%s/%s?table=%s", hs ? hs + 1 : auth ? auth : "",
           db ? db : "", url->table);
  if (!st || !auth || !db || !st->table || (dot && !st->schema)) {
    free(auth);
    free(db);
    if (st) {
      free(st->schema);
      free(st->table);
      free(st);
    }
    return cvg_error_set(err, CVG_ENOMEM, "postgresql", "out of memory");
  }
  st->shown = strdup(shown);
  /* user[:password]@host[:port] */
  char *user = NULL, *pass = NULL, *host = auth, *port = NULL;
  char *at = strrchr(auth, '@');
  if (at) {
    *at = '\0';
    user = auth;
    host = at + 1;
    char *c = strchr(user, ':');
    if (c) {
      *c = '\0';
      pass = c + 1;
      pct(pass);
    }
    pct(user);
  }
  char *pc = host[0] == '[' ? strchr(host, ']') : host;
  pc = pc ? strrchr(pc, ':') : NULL;
  if (pc) {
    *pc = '\0';
    port = pc + 1;
  }
  const char *keys[12], *vals[12];
  int k = 0;
  if (*host) {
    keys[k] = "host";
    vals[k++] = host;
  }
  if (port && *port) {
    keys[k] = "port";
    vals[k++] = port;
  }
  if (user && *user) {
    keys[k] = "user";
    vals[k++] = user;
  }
  if (pass) {
    keys[k] = "password";
    vals[k++] = pass;
  }
  if (*db) {
    keys[k] = "dbname";
    vals[k++] = db;
  }
  keys[k] = "application_name";
  vals[k++] = "converge";
  keys[k] = "connect_timeout";
  vals[k++] = "10";
  keys[k] = "options";
  vals[k++] = "-c TimeZone=UTC -c DateStyle=ISO -c extra_float_digits=3 "
              "-c statement_timeout=30000 -c default_transaction_read_only=off";
  keys[k] = NULL;
  vals[k] = NULL;
  st->conn = PQconnectdbParams(keys, vals, 0);
  if (pass)
    memset(pass, 0, strlen(pass)); /* not kept in memory longer than needed */
  free(auth);
  free(db);
  int rc = CVG_OK;
  if (!st->conn || PQstatus(st->conn) != CONNECTION_OK) {
    rc = pg_fail(st, "cannot connect", err);
    if (err) {
      err->status = CVG_EDOWN;
      rc = CVG_EDOWN;
      cvg_error_hint(err, "is the server up and the URL right? Passwords come from the URL, "
                          "PGPASSWORD or ~/.pgpass");
    }
  } else {
    rc = pg_describe_now(st, err);
  }
  if (rc) {
    st->base.ops = &cvgi_postgres_ops;
    cvgi_postgres_ops.close(&st->base);
    return rc;
  }
  *out = &st->base;
  return CVG_OK;
}

static void pg_close(cvg_store *base) {
  pg_store *st = (pg_store *)base;
  if (!st)
    return;
  PQfinish(st->conn);
  cvg_table_desc_release(&st->desc);
  free(st->schema);
  free(st->table);
  free(st->shown);
  free(st);
}

static cvg_affinity affinity_of(unsigned oid, const char *type) {
  switch (oid) {
  case OID_BOOL:
  case OID_INT2:
  case OID_INT4:
  case OID_INT8:
    return CVG_AFF_INTEGER;
  case OID_FLOAT4:
  case OID_FLOAT8:
    return CVG_AFF_REAL;
  case OID_NUMERIC:
    return CVG_AFF_NUMERIC;
  case OID_BYTEA:
    return CVG_AFF_BLOB;
  default:
    (void)type;
    return CVG_AFF_TEXT;
  }
}

static int pg_describe_now(pg_store *st, cvg_error *err) {
  const char *sql =
      "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.atttypid::int,"
      " COALESCE((SELECT k.n FROM unnest(i.indkey) WITH ORDINALITY AS k(att, n)"
      "           WHERE k.att = a.attnum), 0)::int,"
      " COALESCE(co.collname, '')"
      " FROM pg_attribute a"
      " JOIN pg_class c ON c.oid = a.attrelid"
      " JOIN pg_namespace n ON n.oid = c.relnamespace"
      " LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary"
      " LEFT JOIN pg_collation co ON co.oid = a.attcollation"
      " WHERE c.relname = $1 AND ($2::text IS NULL OR n.nspname = $2)"
      "   AND ($2::text IS NOT NULL OR pg_table_is_visible(c.oid))"
      "   AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum";
  const char *params[2] = {st->table, st->schema};
  PGresult *r = PQexecParams(st->conn, sql, 2, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    PQclear(r);
    return pg_fail(st, "cannot describe the table", err);
  }
  int n = PQntuples(r);
  if (n == 0) {
    PQclear(r);
    cvg_error_set(err, CVG_ENOTABLE, st->shown, "no such table: %s%s%s", st->schema ? st->schema : "",
                  st->schema ? "." : "", st->table);
    cvg_error_hint(err, "check ?table= (SCHEMA.NAME for a schema outside the search path) and "
                        "that the user may read it");
    return CVG_ENOTABLE;
  }
  cvg_table_desc *d = &st->desc;
  memset(d, 0, sizeof *d);
  d->cols = calloc((size_t)n, sizeof *d->cols);
  d->table = strdup(st->table);
  if (!d->cols || !d->table) {
    PQclear(r);
    return cvg_error_set(err, CVG_ENOMEM, st->shown, "out of memory");
  }
  for (int i = 0; i < n; i++) {
    cvg_column *c = &d->cols[d->n_cols++];
    c->name = strdup(PQgetvalue(r, i, 0));
    c->decl_type = strdup(PQgetvalue(r, i, 1));
    if (!c->name || !c->decl_type) {
      PQclear(r);
      return cvg_error_set(err, CVG_ENOMEM, st->shown, "out of memory");
    }
    c->affinity = affinity_of((unsigned)atoi(PQgetvalue(r, i, 2)), c->decl_type);
    c->pk = atoi(PQgetvalue(r, i, 3));
    if (c->pk > 0)
      d->n_pk++;
    const char *coll = PQgetvalue(r, i, 4);
    c->binary_collation = c->affinity != CVG_AFF_TEXT || !strcmp(coll, "C") ||
                          !strcmp(coll, "POSIX");
  }
  PQclear(r);
  /* privileges: a table we cannot read fails here, by name, not halfway through a scan */
  cvg_buf q;
  cvg_buf_init(&q, PG_SQL_MAX);
  int rc = cvgi_append_str(&q, "SELECT 1 FROM ") || qualified(st, &q) ||
           cvgi_append_str(&q, " LIMIT 0") || cvg_buf_append(&q, "", 1);
  if (rc) {
    cvg_buf_release(&q);
    return cvg_error_set(err, CVG_ENOMEM, st->shown, "out of memory");
  }
  r = PQexec(st->conn, (const char *)q.data);
  cvg_buf_release(&q);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    PQclear(r);
    rc = pg_fail(st, "cannot read the table", err);
    cvg_error_hint(err, "GRANT SELECT on the table to the user converge connects as");
    return err ? (err->status = CVG_EACCES) : CVG_EACCES;
  }
  PQclear(r);
  return CVG_OK;
}

static int pg_describe(cvg_store *base, cvg_table_desc *out, cvg_error *err) {
  pg_store *st = (pg_store *)base;
  const cvg_table_desc *d = &st->desc;
  memset(out, 0, sizeof *out);
  out->cols = calloc(d->n_cols ? d->n_cols : 1, sizeof *out->cols);
  out->table = strdup(d->table);
  if (!out->cols || !out->table) {
    cvg_table_desc_release(out);
    return cvg_error_set(err, CVG_ENOMEM, st->shown, "out of memory");
  }
  for (size_t i = 0; i < d->n_cols; i++) {
    out->cols[i] = d->cols[i];
    out->cols[i].name = strdup(d->cols[i].name);
    out->cols[i].decl_type = strdup(d->cols[i].decl_type);
    out->n_cols++;
    if (!out->cols[i].name || !out->cols[i].decl_type) {
      cvg_table_desc_release(out);
      return cvg_error_set(err, CVG_ENOMEM, st->shown, "out of memory");
    }
  }
  out->n_pk = d->n_pk;
  return CVG_OK;
}

static int hexv(int c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Encodes one result cell onto b, per the mapping at the top. */
static int encode_cell(PGresult *r, int row, int col, cvg_buf *b, cvg_buf *scratch) {
  if (PQgetisnull(r, row, col))
    return cvg_encode_null(b);
  const char *s = PQgetvalue(r, row, col);
  size_t n = (size_t)PQgetlength(r, row, col);
  switch ((unsigned)PQftype(r, col)) {
  case OID_INT2:
  case OID_INT4:
  case OID_INT8:
    return cvg_encode_int(b, strtoll(s, NULL, 10));
  case OID_BOOL:
    return cvg_encode_int(b, s[0] == 't');
  case OID_FLOAT4:
  case OID_FLOAT8:
    return cvg_encode_real(b, strtod(s, NULL));
  case OID_NUMERIC: {
    if (!strpbrk(s, ".eEN")) { /* whole (not NaN): an integer when it fits */
      errno = 0;
      char *e = NULL;
      long long v = strtoll(s, &e, 10);
      if (!errno && e && !*e)
        return cvg_encode_int(b, v);
    }
    return cvg_encode_real(b, strtod(s, NULL));
  }
  case OID_BYTEA: {
    if (n >= 2 && s[0] == '\\' && s[1] == 'x') {
      cvg_buf_reset(scratch);
      if (cvg_buf_reserve(scratch, (n - 2) / 2 + 1))
        return CVG_ENOMEM;
      for (size_t i = 2; i + 1 < n; i += 2) {
        int h = hexv((unsigned char)s[i]), l = hexv((unsigned char)s[i + 1]);
        if (h < 0 || l < 0)
          return CVG_ECORRUPT;
        scratch->data[scratch->len++] = (unsigned char)(h * 16 + l);
      }
      return cvg_encode_blob(b, scratch->data ? scratch->data : (const unsigned char *)"", scratch->len);
    }
    return cvg_encode_blob(b, s, n);
  }
  default:
    return cvg_encode_text(b, s, n);
  }
}

static int col_index(const cvg_table_desc *d, const char *name) {
  return cvg_table_desc_find(d, name);
}

/* " ORDER BY k1 [COLLATE "C"], k2 ..." */
static int order_by(const pg_store *st, const cvg_scan_spec *spec, cvg_buf *q) {
  int rc = cvgi_append_str(q, " ORDER BY ");
  for (size_t i = 0; !rc && i < spec->n_key; i++) {
    int c = col_index(&st->desc, spec->key_cols[i]);
    rc = (i ? cvgi_append_str(q, ", ") : 0) || cvgi_quote_ident(q, spec->key_cols[i]) ||
         (c >= 0 && st->desc.cols[c].affinity == CVG_AFF_TEXT ? cvgi_append_str(q, " COLLATE \"C\"")
                                                              : 0);
  }
  return rc;
}

static int select_list(const cvg_scan_spec *spec, cvg_buf *q) {
  int rc = cvgi_append_str(q, "SELECT ");
  size_t n = 0;
  for (size_t i = 0; !rc && i < spec->n_key; i++, n++)
    rc = (n ? cvgi_append_str(q, ", ") : 0) || cvgi_quote_ident(q, spec->key_cols[i]);
  for (size_t i = 0; !rc && i < spec->n_cmp; i++, n++)
    rc = cvgi_append_str(q, ", ") || cvgi_quote_ident(q, spec->cmp_cols[i]);
  if (!rc && spec->version_col)
    rc = cvgi_append_str(q, ", ") || cvgi_quote_ident(q, spec->version_col);
  if (!rc && spec->tombstone_col)
    rc = cvgi_append_str(q, ", ") || cvgi_quote_ident(q, spec->tombstone_col);
  return rc;
}

static int pg_scan_open(cvg_store *base, const cvg_scan_spec *spec, cvg_scan **out,
                        cvg_error *err) {
  pg_store *st = (pg_store *)base;
  *out = NULL;
  if (spec->since || spec->vvec_col)
    return cvg_error_set(err, CVG_EINVAL, st->shown,
                         "the PostgreSQL engine does not do incremental or version-vector scans "
                         "yet");
  for (size_t i = 0; i < spec->n_key + spec->n_cmp; i++) {
    const char *c = i < spec->n_key ? spec->key_cols[i] : spec->cmp_cols[i - spec->n_key];
    if (col_index(&st->desc, c) < 0) {
      cvg_error_set(err, CVG_ENOCOLUMN, st->shown, "no such column: %s", c);
      return CVG_ENOCOLUMN;
    }
  }
  cvg_buf q;
  cvg_buf_init(&q, PG_SQL_MAX);
  int rc = select_list(spec, &q) || cvgi_append_str(&q, " FROM ") || qualified(st, &q) ||
           (spec->where ? cvgi_append_str(&q, " WHERE (") || cvgi_append_str(&q, spec->where) ||
                              cvgi_append_str(&q, ")")
                        : 0) ||
           order_by(st, spec, &q) || cvg_buf_append(&q, "", 1);
  if (rc) {
    cvg_buf_release(&q);
    return cvg_error_set(err, CVG_ENOMEM, st->shown, "out of memory");
  }
  if (!PQsendQuery(st->conn, (const char *)q.data) || !PQsetSingleRowMode(st->conn)) {
    cvg_buf_release(&q);
    return pg_fail(st, "cannot scan the table", err);
  }
  cvg_buf_release(&q);
  pg_scan *sc = calloc(1, sizeof *sc);
  if (!sc) {
    PGresult *r;
    while ((r = PQgetResult(st->conn)))
      PQclear(r);
    return cvg_error_set(err, CVG_ENOMEM, st->shown, "out of memory");
  }
  sc->base.ops = &cvgi_postgres_ops;
  sc->st = st;
  sc->n_key = (int)spec->n_key;
  sc->n_cmp = (int)spec->n_cmp;
  int next = sc->n_key + sc->n_cmp;
  sc->ver_idx = spec->version_col ? next++ : -1;
  sc->tomb_idx = spec->tombstone_col ? next++ : -1;
  cvg_buf_init(&sc->key, PG_ROW_MAX);
  cvg_buf_init(&sc->row, PG_ROW_MAX);
  cvg_buf_init(&sc->ver, PG_ROW_MAX);
  *out = (cvg_scan *)sc;
  return CVG_OK;
}

static int truthy_cell(PGresult *r, int row, int col) {
  if (PQgetisnull(r, row, col))
    return 0;
  const char *s = PQgetvalue(r, row, col);
  if (PQftype(r, col) == OID_BOOL)
    return s[0] == 't';
  cvg_value v;
  char *e = NULL;
  double d = strtod(s, &e);
  if (e && !*e && *s) {
    v.type = CVG_REAL;
    v.u.r = d;
  } else {
    v.type = CVG_TEXT;
    v.u.s.p = (const unsigned char *)s;
    v.u.s.n = strlen(s);
  }
  return cvg_tombstone_truthy(&v);
}

static int pg_scan_next(cvg_scan *base, cvg_scan_row *row, cvg_error *err) {
  pg_scan *sc = (pg_scan *)base;
  PQclear(sc->res);
  sc->res = NULL;
  if (sc->done)
    return CVG_DONE;
  PGresult *r = PQgetResult(sc->st->conn);
  if (!r) {
    sc->done = 1;
    return CVG_DONE;
  }
  ExecStatusType s = PQresultStatus(r);
  if (s == PGRES_TUPLES_OK) { /* the end: the final, empty result */
    PQclear(r);
    while ((r = PQgetResult(sc->st->conn)))
      PQclear(r);
    sc->done = 1;
    return CVG_DONE;
  }
  if (s != PGRES_SINGLE_TUPLE) {
    PQclear(r);
    while ((r = PQgetResult(sc->st->conn)))
      PQclear(r);
    sc->done = 1;
    return pg_fail(sc->st, "the scan failed", err);
  }
  sc->res = r;
  cvg_buf_reset(&sc->key);
  cvg_buf_reset(&sc->row);
  cvg_buf_reset(&sc->ver);
  int rc = 0;
  for (int i = 0; !rc && i < sc->n_key; i++)
    rc = encode_cell(r, 0, i, &sc->key, &sc->ver);
  cvg_buf_reset(&sc->ver);
  for (int i = 0; !rc && i < sc->n_cmp; i++)
    rc = encode_cell(r, 0, sc->n_key + i, &sc->row, &sc->ver);
  cvg_buf_reset(&sc->ver);
  cvg_buf scratch;
  cvg_buf_init(&scratch, PG_ROW_MAX);
  if (!rc && sc->ver_idx >= 0)
    rc = encode_cell(r, 0, sc->ver_idx, &sc->ver, &scratch);
  cvg_buf_release(&scratch);
  if (rc)
    return cvg_error_set(err, rc, sc->st->shown, "cannot encode a row (%s)", cvg_status_name(rc));
  row->key = sc->key.data;
  row->key_len = sc->key.len;
  row->fp = cvg_fingerprint(sc->row.data ? (const void *)sc->row.data : (const void *)"", sc->row.len);
  row->version = sc->ver_idx >= 0 ? sc->ver.data : NULL;
  row->version_len = sc->ver_idx >= 0 ? sc->ver.len : 0;
  row->tombstone = sc->tomb_idx >= 0 ? truthy_cell(r, 0, sc->tomb_idx) : 0;
  row->vvec = NULL;
  row->vvec_len = 0;
  return CVG_OK;
}

static void pg_scan_close(cvg_scan *base) {
  pg_scan *sc = (pg_scan *)base;
  if (!sc)
    return;
  PQclear(sc->res);
  if (!sc->done) { /* abandoned mid-way: cancel the query, drain what is left */
    PGcancel *c = PQgetCancel(sc->st->conn);
    char eb[256];
    if (c) {
      PQcancel(c, eb, sizeof eb);
      PQfreeCancel(c);
    }
    PGresult *r;
    while ((r = PQgetResult(sc->st->conn)))
      PQclear(r);
  }
  cvg_buf_release(&sc->key);
  cvg_buf_release(&sc->row);
  cvg_buf_release(&sc->ver);
  free(sc);
}

/* The key's values as text parameters for "WHERE k1 = $1 AND ...". */
static int key_params(const unsigned char *key, size_t key_len, size_t n_key, char **vals,
                      cvg_buf *scratch) {
  cvg_value v[64];
  size_t n = 0;
  if (n_key > 64 || cvg_decode_tuple(key, key_len, v, 64, &n, scratch) != CVG_OK || n != n_key)
    return CVG_ECORRUPT;
  for (size_t i = 0; i < n; i++) {
    char num[64];
    vals[i] = NULL;
    switch (v[i].type) {
    case CVG_INTEGER:
      snprintf(num, sizeof num, "%lld", (long long)v[i].u.i);
      vals[i] = strdup(num);
      break;
    case CVG_REAL:
      snprintf(num, sizeof num, "%.17g", v[i].u.r);
      vals[i] = strdup(num);
      break;
    case CVG_TEXT:
    case CVG_BLOB:
      vals[i] = strndup((const char *)v[i].u.s.p, v[i].u.s.n);
      break;
    default:
      break; /* NULL */
    }
    if (v[i].type != CVG_NULL && !vals[i])
      return CVG_ENOMEM;
  }
  return CVG_OK;
}

static int pg_fetch(cvg_store *base, const cvg_scan_spec *spec, const unsigned char *key,
                    size_t key_len, const char *const *cols, size_t n_cols, cvg_buf *out,
                    int *found, cvg_error *err) {
  pg_store *st = (pg_store *)base;
  *found = 0;
  char *vals[64] = {0};
  cvg_buf scratch, q;
  cvg_buf_init(&scratch, PG_ROW_MAX);
  cvg_buf_init(&q, PG_SQL_MAX);
  int rc = key_params(key, key_len, spec->n_key, vals, &scratch);
  if (rc) {
    rc = cvg_error_set(err, rc, st->shown, "malformed key passed to fetch");
    goto done;
  }
  rc = cvgi_append_str(&q, "SELECT ");
  for (size_t i = 0; !rc && i < n_cols; i++)
    rc = (i ? cvgi_append_str(&q, ", ") : 0) || cvgi_quote_ident(&q, cols[i]);
  if (!rc && !n_cols)
    rc = cvgi_append_str(&q, "1");
  rc = rc || cvgi_append_str(&q, " FROM ") || qualified(st, &q) || cvgi_append_str(&q, " WHERE ");
  for (size_t i = 0; !rc && i < spec->n_key; i++) {
    char ph[32];
    snprintf(ph, sizeof ph, vals[i] ? " = $%zu" : " IS NULL", i + 1);
    rc = (i ? cvgi_append_str(&q, " AND ") : 0) || cvgi_quote_ident(&q, spec->key_cols[i]) ||
         cvgi_append_str(&q, ph);
  }
  if (rc || cvg_buf_append(&q, "", 1)) {
    rc = cvg_error_set(err, CVG_ENOMEM, st->shown, "out of memory");
    goto done;
  }
  {
    const char *pv[64];
    int np = 0;
    for (size_t i = 0; i < spec->n_key; i++)
      if (vals[i])
        pv[np++] = vals[i];
    /* NULL keys use IS NULL and take no parameter: renumber */
    if (np != (int)spec->n_key) {
      cvg_buf_reset(&q);
      rc = CVG_EINVAL;
      rc = cvg_error_set(err, CVG_EINVAL, st->shown, "NULL key columns are not supported by fetch");
      goto done;
    }
    PGresult *r = PQexecParams(st->conn, (const char *)q.data, np, NULL, pv, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
      PQclear(r);
      rc = pg_fail(st, "cannot fetch a row", err);
      goto done;
    }
    if (PQntuples(r) > 0) {
      *found = 1;
      for (size_t i = 0; !rc && i < n_cols; i++)
        rc = encode_cell(r, 0, (int)i, out, &scratch);
      if (rc)
        rc = cvg_error_set(err, rc, st->shown, "cannot encode the row");
    }
    PQclear(r);
  }
done:
  for (size_t i = 0; i < 64; i++)
    free(vals[i]);
  cvg_buf_release(&scratch);
  cvg_buf_release(&q);
  return rc;
}

const cvg_store_ops cvgi_postgres_ops = {
    .scheme = "postgresql",
    .open = pg_open,
    .close = pg_close,
    .describe = pg_describe,
    .scan_open = pg_scan_open,
    .scan_next = pg_scan_next,
    .scan_close = pg_scan_close,
    .fetch = pg_fetch,
};
