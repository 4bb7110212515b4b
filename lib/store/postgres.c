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
 * Scans read a server-side cursor in batches of 10,000 rows (bounded memory; the connection stays
 * usable between batches) in key order; text-like key columns are ordered with COLLATE "C",
 * which is byte order, the order of the canonical encoding.
 *
 * Everything the SQLite engine does: describe, full and incremental scans, lookups, fetches,
 * converge's heartbeat and canary tables (in the data table's schema), aggregates, and
 * conditional writes for repair (SELECT ... FOR UPDATE, compared with what the decision saw, then
 * INSERT ... ON CONFLICT DO UPDATE or DELETE; one savepoint per mutation, one transaction per
 * batch). A dropped connection is re-established on the next call, at most once per backoff
 * period (1 s doubling to 30 s); until then calls fail with "replica unreachable".
 */
#include "converge/mclock.h"
#include "converge/store.h"
#include "sqlwhere.h"
#include "store_int.h"

#include <errno.h>
#include <libpq-fe.h>
#include <time.h>
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
  char *schema, *table;                       /* OWNED; schema NULL: the search path decides */
  char *shown;                                /* OWNED; the URL as shown */
  cvg_table_desc desc;                        /* the table, described once at open */
  cvg_buf lk_key, lk_row, lk_ver, lk_scratch; /* lookup's row, kept */
  double retry_at, backoff;                   /* reconnecting a dropped connection */
  int in_txn;                                 /* read_txn began a transaction */
  unsigned cursors;                           /* cursors declared, for unique names */
  unsigned *oids;                             /* OWNED: each column's type, in desc order */
} pg_store;

typedef struct pg_scan {
  cvgi_scan_base base; /* must be first */
  pg_store *st;
  int n_key, n_cmp, ver_idx, tomb_idx; /* positions in the result */
  char cursor[32];                     /* the server-side cursor read in batches */
  int own_txn;                         /* the scan began the transaction it reads in */
  PGresult *res;                       /* the current batch */
  int row, nrows;                      /* the next row in it, and its size */
  int copy;                            /* a full scan read as COPY ... TO STDOUT */
  int real_digits;                     /* spec->real_digits, for the compared columns */
  int time_digits;                     /* spec->time_digits, likewise */
  unsigned *oids;                      /* OWNED: the type of each selected column */
  int ncols;
  char *line;    /* the current COPY row (PQfreemem) */
  cvg_buf field; /* a field with its escapes undone */
  cvg_buf key, row_buf, ver;
  int done;
} pg_scan;

/* Every occurrence of secret in msg becomes "***" (msg has room for size bytes). */
static void scrub(char *msg, size_t size, const char *secret) {
  size_t n = secret ? strlen(secret) : 0;
  char *hit;
  for (char *from = msg; n && (hit = strstr(from, secret));) {
    size_t off = (size_t)(hit - msg), tail = strlen(hit + n);
    if (off + 3 + tail + 1 > size) { /* a short secret grows the text: cut it there */
      if (off + 4 <= size)
        memcpy(hit, "***", 4);
      else
        *hit = '\0';
      break;
    }
    memmove(hit + 3, hit + n, tail + 1);
    memcpy(hit, "***", 3);
    from = hit + 3;
  }
}

/* libpq's last message without its trailing newline, and without the password whatever libpq
 * put in it (it holds the password in the connection, from the URL, PGPASSWORD or .pgpass). */
static void pg_errtext(const pg_store *st, char *msg, size_t size) {
  snprintf(msg, size, "%s", st->conn ? PQerrorMessage(st->conn) : "no connection");
  size_t l = strlen(msg);
  while (l && (msg[l - 1] == '\n' || msg[l - 1] == ' '))
    msg[--l] = '\0';
  if (st->conn)
    scrub(msg, size, PQpass(st->conn));
}

static int pg_fail(pg_store *st, const char *what, cvg_error *err) {
  char msg[600];
  pg_errtext(st, msg, sizeof msg);
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
static int pg_alive(pg_store *st, cvg_error *err);
static void pg_scan_close(cvg_scan *base);
static int value_param(const cvg_value *v, char **out);

static int pg_open(cvg_store **out, const cvg_url *url, unsigned flags, cvg_error *err) {
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
  snprintf(shown, sizeof shown, "postgresql://%s/%s?table=%s",
           hs     ? hs + 1
           : auth ? auth
                  : "",
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
  cvg_buf_init(&st->lk_key, PG_ROW_MAX);
  cvg_buf_init(&st->lk_row, PG_ROW_MAX);
  cvg_buf_init(&st->lk_ver, PG_ROW_MAX);
  cvg_buf_init(&st->lk_scratch, PG_ROW_MAX);
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
  keys[k] = "options"; /* a session that only checks cannot write, whatever --where calls */
  vals[k++] = (flags & CVG_STORE_READONLY)
                  ? "-c TimeZone=UTC -c DateStyle=ISO -c extra_float_digits=3 "
                    "-c statement_timeout=30000 -c default_transaction_read_only=on"
                  : "-c TimeZone=UTC -c DateStyle=ISO -c extra_float_digits=3 "
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
  free(st->oids);
  cvg_buf_release(&st->lk_key);
  cvg_buf_release(&st->lk_row);
  cvg_buf_release(&st->lk_ver);
  cvg_buf_release(&st->lk_scratch);
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
  const char *sql = "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.atttypid::int,"
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
    cvg_error_set(err, CVG_ENOTABLE, st->shown, "no such table: %s%s%s",
                  st->schema ? st->schema : "", st->schema ? "." : "", st->table);
    cvg_error_hint(err, "check ?table= (SCHEMA.NAME for a schema outside the search path) and "
                        "that the user may read it");
    return CVG_ENOTABLE;
  }
  cvg_table_desc *d = &st->desc;
  memset(d, 0, sizeof *d);
  d->cols = calloc((size_t)n, sizeof *d->cols);
  d->table = strdup(st->table);
  st->oids = calloc((size_t)n, sizeof *st->oids);
  if (!d->cols || !d->table || !st->oids) {
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
    st->oids[i] = (unsigned)atoi(PQgetvalue(r, i, 2));
    c->affinity = affinity_of(st->oids[i], c->decl_type);
    c->pk = atoi(PQgetvalue(r, i, 3));
    if (c->pk > 0)
      d->n_pk++;
    const char *coll = PQgetvalue(r, i, 4);
    c->binary_collation =
        c->affinity != CVG_AFF_TEXT || !strcmp(coll, "C") || !strcmp(coll, "POSIX");
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
  return c >= '0' && c <= '9'   ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                : -1;
}

/* A decimal integer as PostgreSQL prints it; strtoll with its locale machinery was a fifth of
 * a scan's time. Falls back to strtoll past 18 digits (where overflow must be checked). */
static long long parse_int(const char *s, size_t n) {
  size_t i = 0;
  int neg = 0;
  if (i < n && (s[i] == '-' || s[i] == '+'))
    neg = s[i++] == '-';
  if (n - i > 18 || i == n)
    return strtoll(s, NULL, 10);
  long long v = 0;
  for (; i < n; i++) {
    unsigned d = (unsigned)(s[i] - '0');
    if (d > 9)
      return strtoll(s, NULL, 10);
    v = v * 10 + (long long)d;
  }
  return neg ? -v : v;
}

/* Encodes one result cell onto b, per the mapping at the top. */
/* A number field as a C string (fields of COPY rows are not NUL-terminated). */
static const char *cstr(const char *s, size_t n, char *tmp, size_t size, cvg_buf *scratch) {
  if (n < size) {
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    return tmp;
  }
  cvg_buf_reset(scratch);
  if (cvg_buf_append(scratch, s, n) || cvg_buf_append(scratch, "", 1))
    return NULL;
  return (const char *)scratch->data;
}

/* Encodes one non-NULL value in PostgreSQL's text form (s, n bytes) of type oid onto b, per the
 * mapping at the top. */
static int encode_text(unsigned oid, const char *s, size_t n, cvg_buf *b, cvg_buf *scratch,
                       int digits, int tdigits) {
  char tmp[128];
  switch (oid) {
  case OID_INT2:
  case OID_INT4:
  case OID_INT8: {
    if (n <= 18)
      return cvg_encode_int(b, parse_int(s, n));
    const char *z = cstr(s, n, tmp, sizeof tmp, scratch);
    return z ? cvg_encode_int(b, strtoll(z, NULL, 10)) : CVG_ENOMEM;
  }
  case OID_BOOL:
    return cvg_encode_int(b, n > 0 && s[0] == 't');
  case OID_FLOAT4:
  case OID_FLOAT8: {
    const char *z = cstr(s, n, tmp, sizeof tmp, scratch);
    return z ? cvg_encode_real(b, cvg_round_real(strtod(z, NULL), digits)) : CVG_ENOMEM;
  }
  case OID_NUMERIC: {
    const char *z = cstr(s, n, tmp, sizeof tmp, scratch);
    if (!z)
      return CVG_ENOMEM;
    if (!strpbrk(z, ".eEN")) { /* whole (not NaN): an integer when it fits */
      errno = 0;
      char *e = NULL;
      long long v = strtoll(z, &e, 10);
      if (!errno && e && !*e)
        return cvg_encode_int(b, v);
    }
    return cvg_encode_real(b, cvg_round_real(strtod(z, NULL), digits));
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
      return cvg_encode_blob(b, scratch->data ? scratch->data : (const unsigned char *)"",
                             scratch->len);
    }
    return cvg_encode_blob(b, s, n);
  }
  default: {
    char tb[32]; /* compared timestamps, normalised (spec->time_digits) */
    size_t tl = tdigits ? cvg_norm_timestamp(s, n, tdigits - 1, tb, sizeof tb) : 0;
    return tl ? cvg_encode_text(b, tb, tl) : cvg_encode_text(b, s, n);
  }
  }
}

static int encode_cell(PGresult *r, int row, int col, cvg_buf *b, cvg_buf *scratch, int digits,
                       int tdigits) {
  if (PQgetisnull(r, row, col))
    return cvg_encode_null(b);
  return encode_text((unsigned)PQftype(r, col), PQgetvalue(r, row, col),
                     (size_t)PQgetlength(r, row, col), b, scratch, digits, tdigits);
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

/* Is where one boolean expression over the table? The lexical check first (with the session's
 * string rules), then the server's parser and planner: the statement is prepared, never run. Inside
 * the caller's transaction a savepoint keeps a refusal from aborting it. */
static int where_check(pg_store *st, const char *where, cvg_error *err) {
  const char *scs = PQparameterStatus(st->conn, "standard_conforming_strings");
  if (!scs || (strcmp(scs, "on") != 0 && strcmp(scs, "off") != 0))
    return cvg_error_set(err, CVG_ESQL, st->shown,
                         "cannot check --where: the server does not say how it reads strings "
                         "(standard_conforming_strings)");
  int rc = cvgi_where_check(where,
                            strcmp(scs, "on") == 0 ? CVGI_SQL_POSTGRES : CVGI_SQL_POSTGRES_ESCAPES,
                            st->shown, err);
  if (rc)
    return rc;
  cvg_buf q;
  cvg_buf_init(&q, PG_SQL_MAX);
  if (cvgi_append_str(&q, "SELECT 1 FROM ") || qualified(st, &q) ||
      cvgi_append_str(&q, " WHERE (\n") || cvgi_append_str(&q, where) ||
      cvgi_append_str(&q, "\n)") || cvg_buf_append(&q, "", 1)) {
    cvg_buf_release(&q);
    return cvg_error_set(err, CVG_ENOMEM, st->shown, "out of memory");
  }
  if (st->in_txn)
    PQclear(PQexec(st->conn, "SAVEPOINT converge_where"));
  PGresult *r = PQprepare(st->conn, "", (const char *)q.data, 0, NULL);
  cvg_buf_release(&q);
  int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  PQclear(r);
  if (!ok) {
    char msg[600];
    pg_errtext(st, msg, sizeof msg);
    cvg_error_set(err, CVG_ESQL, st->shown, "cannot scan table '%s' with --where '%.200s': %s",
                  st->table, where, msg);
    cvg_error_hint(err, "--where takes one boolean SQL expression over the table's columns, "
                        "e.g. \"updated_at > 1700000000\"");
  }
  if (st->in_txn)
    PQclear(PQexec(st->conn, ok ? "RELEASE SAVEPOINT converge_where"
                                : "ROLLBACK TO SAVEPOINT converge_where"));
  return ok ? CVG_OK : CVG_ESQL;
}

static int pg_scan_open(cvg_store *base, const cvg_scan_spec *spec, cvg_scan **out,
                        cvg_error *err) {
  pg_store *st = (pg_store *)base;
  *out = NULL;
  if (spec->vvec_col)
    return cvg_error_set(err, CVG_EINVAL, st->shown,
                         "the PostgreSQL engine does not read version vectors yet");
  int rc0 = pg_alive(st, err);
  if (rc0)
    return rc0;
  char *since = NULL; /* incremental: rows whose version >= since */
  if (spec->since) {
    cvg_value v;
    size_t nv = 0;
    cvg_buf_reset(&st->lk_scratch);
    if (!spec->version_col ||
        cvg_decode_tuple(spec->since, spec->since_len, &v, 1, &nv, &st->lk_scratch) != CVG_OK ||
        nv != 1 || value_param(&v, &since) != CVG_OK || !since)
      return cvg_error_set(err, CVG_EINVAL, st->shown, "malformed incremental scan");
  }
  if (spec->where && (rc0 = where_check(st, spec->where, err)))
    return rc0;
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
           cvgi_append_str(&q, " WHERE TRUE") ||
           (spec->where ? cvgi_append_str(&q, " AND (\n") || cvgi_append_str(&q, spec->where) ||
                              cvgi_append_str(&q, "\n)")
                        : 0) ||
           (since ? cvgi_append_str(&q, " AND ") || cvgi_quote_ident(&q, spec->version_col) ||
                        cvgi_append_str(&q, " >= $1")
                  : 0) ||
           order_by(st, spec, &q) || cvg_buf_append(&q, "", 1);
  if (rc) {
    free(since);
    cvg_buf_release(&q);
    return cvg_error_set(err, CVG_ENOMEM, st->shown, "out of memory");
  }
  pg_scan *sc = calloc(1, sizeof *sc);
  if (!sc) {
    free(since);
    cvg_buf_release(&q);
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
  cvg_buf_init(&sc->row_buf, PG_ROW_MAX);
  cvg_buf_init(&sc->ver, PG_ROW_MAX);
  snprintf(sc->cursor, sizeof sc->cursor, "converge_scan_%u", ++st->cursors);
  cvg_buf_init(&sc->field, PG_ROW_MAX);
  sc->ncols = next;
  sc->real_digits = spec->real_digits;
  sc->time_digits = spec->time_digits;
  sc->oids = calloc((size_t)next, sizeof *sc->oids);
  for (int i = 0; sc->oids && i < next; i++) {
    const char *c = i < sc->n_key               ? spec->key_cols[i]
                    : i < sc->n_key + sc->n_cmp ? spec->cmp_cols[i - sc->n_key]
                    : i == sc->ver_idx          ? spec->version_col
                                                : spec->tombstone_col;
    int k = col_index(&st->desc, c);
    sc->oids[i] = k >= 0 ? st->oids[k] : 25;
  }
  PGresult *r = NULL;
  if (!sc->oids) {
    free(since);
    cvg_buf_release(&q);
    pg_scan_close((cvg_scan *)sc);
    return cvg_error_set(err, CVG_ENOMEM, st->shown, "out of memory");
  }
  /* A full scan outside a caller's transaction is read as COPY (SELECT ...) TO STDOUT: the
   * server streams rows as fast as for psql's COPY (bench/pg); the connection is busy until the
   * scan ends. Incremental scans and scans inside read_txn use a cursor. */
  if (!since && !st->in_txn) {
    cvg_buf cq;
    cvg_buf_init(&cq, PG_SQL_MAX);
    int crc = cvgi_append_str(&cq, "COPY (") || cvgi_append_str(&cq, (const char *)q.data) ||
              cvgi_append_str(&cq, ") TO STDOUT") || cvg_buf_append(&cq, "", 1);
    cvg_buf_release(&q);
    if (!crc) { /* read only on every session, a writer's too */
      r = PQexec(st->conn, "BEGIN READ ONLY");
      sc->own_txn = PQresultStatus(r) == PGRES_COMMAND_OK;
      PQclear(r);
      crc = !sc->own_txn;
      if (crc) {
        cvg_buf_release(&cq);
        sc->copy = sc->done = 1; /* nothing to cancel, end or close */
        pg_scan_close((cvg_scan *)sc);
        return pg_fail(st, "cannot begin the scan", err);
      }
    }
    r = crc ? NULL : PQexec(st->conn, (const char *)cq.data);
    cvg_buf_release(&cq);
    if (crc || PQresultStatus(r) != PGRES_COPY_OUT) {
      PQclear(r);
      int rc2 = crc ? cvg_error_set(err, CVG_ENOMEM, st->shown, "out of memory")
                    : pg_fail(st, "cannot scan the table", err);
      sc->done = 1;
      pg_scan_close((cvg_scan *)sc);
      return rc2;
    }
    PQclear(r);
    sc->copy = 1;
    *out = (cvg_scan *)sc;
    return CVG_OK;
  }
  /* a cursor lives in a transaction: the caller's (read_txn), or one of the scan's own */
  if (!st->in_txn) {
    r = PQexec(st->conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    sc->own_txn = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!sc->own_txn) {
      free(since);
      cvg_buf_release(&q);
      pg_scan_close((cvg_scan *)sc);
      return pg_fail(st, "cannot begin the scan", err);
    }
  }
  cvg_buf decl;
  cvg_buf_init(&decl, PG_SQL_MAX);
  int drc = cvgi_append_str(&decl, "DECLARE ") || cvgi_append_str(&decl, sc->cursor) ||
            cvgi_append_str(&decl, " NO SCROLL CURSOR FOR ") ||
            cvgi_append_str(&decl, (const char *)q.data) || cvg_buf_append(&decl, "", 1);
  cvg_buf_release(&q);
  const char *sp[1] = {since};
  r = drc ? NULL
          : PQexecParams(st->conn, (const char *)decl.data, since ? 1 : 0, NULL, sp, NULL, NULL, 0);
  cvg_buf_release(&decl);
  free(since);
  if (drc || PQresultStatus(r) != PGRES_COMMAND_OK) {
    PQclear(r);
    int rc2 = drc ? cvg_error_set(err, CVG_ENOMEM, st->shown, "out of memory")
                  : pg_fail(st, "cannot scan the table", err);
    sc->done = 1;
    pg_scan_close((cvg_scan *)sc);
    return rc2;
  }
  PQclear(r);
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

#define FETCH_BATCH "10000"

/* The next field of a COPY text row at *p (up to end): its bytes with escapes undone (in
 * sc->field when it had any), or NULL for \N. Advances *p past the field and its tab. */
static const char *copy_field(pg_scan *sc, const char **p, const char *end, size_t *n, int *bad) {
  const char *s = *p, *e = s;
  while (e < end && *e != '\t')
    e++;
  *p = e < end ? e + 1 : e;
  if (e - s == 2 && s[0] == '\\' && s[1] == 'N')
    return NULL;
  if (!memchr(s, '\\', (size_t)(e - s))) {
    *n = (size_t)(e - s);
    return s;
  }
  cvg_buf_reset(&sc->field);
  if (cvg_buf_reserve(&sc->field, (size_t)(e - s) + 1)) {
    *bad = 1;
    return NULL;
  }
  unsigned char *o = sc->field.data;
  for (const char *c = s; c < e; c++) {
    if (*c != '\\' || c + 1 == e) {
      *o++ = (unsigned char)*c;
      continue;
    }
    char x = *++c;
    switch (x) {
    case 'b':
      *o++ = '\b';
      break;
    case 'f':
      *o++ = '\f';
      break;
    case 'n':
      *o++ = '\n';
      break;
    case 'r':
      *o++ = '\r';
      break;
    case 't':
      *o++ = '\t';
      break;
    case 'v':
      *o++ = '\v';
      break;
    default:
      if (x >= '0' && x <= '7') { /* \ooo */
        int v = x - '0', k = 1;
        while (k < 3 && c + 1 < e && c[1] >= '0' && c[1] <= '7')
          v = v * 8 + (*++c - '0'), k++;
        *o++ = (unsigned char)v;
      } else if (x == 'x' && c + 1 < e && hexv((unsigned char)c[1]) >= 0) { /* \xhh */
        int v = hexv((unsigned char)*++c);
        if (c + 1 < e && hexv((unsigned char)c[1]) >= 0)
          v = v * 16 + hexv((unsigned char)*++c);
        *o++ = (unsigned char)v;
      } else {
        *o++ = (unsigned char)x; /* \\ and any other escaped byte */
      }
    }
  }
  *n = (size_t)(o - sc->field.data);
  return (const char *)sc->field.data;
}

static int copy_next(pg_scan *sc, cvg_scan_row *row, cvg_error *err) {
  if (sc->line) {
    PQfreemem(sc->line);
    sc->line = NULL;
  }
  char *line = NULL;
  int n = PQgetCopyData(sc->st->conn, &line, 0);
  if (n == -1) { /* the end: the COPY's own result, then nothing */
    sc->done = 1;
    PGresult *r;
    int ok = 1;
    while ((r = PQgetResult(sc->st->conn))) {
      ok &= PQresultStatus(r) == PGRES_COMMAND_OK;
      PQclear(r);
    }
    return ok ? CVG_DONE : pg_fail(sc->st, "the scan failed", err);
  }
  if (n < 0) {
    sc->done = 1;
    PGresult *r;
    while ((r = PQgetResult(sc->st->conn)))
      PQclear(r);
    return pg_fail(sc->st, "the scan failed", err);
  }
  sc->line = line;
  const char *p = line, *end = line + n;
  if (end > p && end[-1] == '\n')
    end--;
  cvg_buf_reset(&sc->key);
  cvg_buf_reset(&sc->row_buf);
  cvg_buf_reset(&sc->ver);
  int rc = 0, bad = 0, tomb = 0;
  for (int i = 0; !rc && i < sc->ncols; i++) {
    size_t fl = 0;
    const char *f = copy_field(sc, &p, end, &fl, &bad);
    if (bad) {
      rc = CVG_ENOMEM;
      break;
    }
    cvg_buf *dst = i < sc->n_key               ? &sc->key
                   : i < sc->n_key + sc->n_cmp ? &sc->row_buf
                   : i == sc->ver_idx          ? &sc->ver
                                               : NULL;
    if (dst)
      rc = f ? encode_text(sc->oids[i], f, fl, dst, &sc->st->lk_scratch,
                           dst == &sc->row_buf ? sc->real_digits : 0,
                           dst == &sc->row_buf ? sc->time_digits : 0)
             : cvg_encode_null(dst);
    else if (i == sc->tomb_idx && f) {
      if (sc->oids[i] == OID_BOOL) {
        tomb = fl > 0 && f[0] == 't';
      } else {
        char tmp[64];
        const char *z = cstr(f, fl, tmp, sizeof tmp, &sc->st->lk_scratch);
        cvg_value v;
        char *e = NULL;
        double d = z ? strtod(z, &e) : 0;
        if (z && e && !*e && *z) {
          v.type = CVG_REAL;
          v.u.r = d;
        } else {
          v.type = CVG_TEXT;
          v.u.s.p = (const unsigned char *)f;
          v.u.s.n = fl;
        }
        tomb = cvg_tombstone_truthy(&v);
      }
    }
  }
  if (rc)
    return cvg_error_set(err, rc, sc->st->shown, "cannot encode a row (%s)", cvg_status_name(rc));
  row->key = sc->key.data;
  row->key_len = sc->key.len;
  row->fp = cvg_fingerprint(sc->row_buf.data ? (const void *)sc->row_buf.data : (const void *)"",
                            sc->row_buf.len);
  row->version = sc->ver_idx >= 0 ? sc->ver.data : NULL;
  row->version_len = sc->ver_idx >= 0 ? sc->ver.len : 0;
  row->tombstone = tomb;
  row->vvec = NULL;
  row->vvec_len = 0;
  return CVG_OK;
}

static int pg_scan_next(cvg_scan *base, cvg_scan_row *row, cvg_error *err) {
  pg_scan *sc = (pg_scan *)base;
  if (sc->done)
    return CVG_DONE;
  if (sc->copy)
    return copy_next(sc, row, err);
  if (!sc->res || sc->row >= sc->nrows) {
    PQclear(sc->res);
    sc->res = NULL;
    char q[96];
    snprintf(q, sizeof q, "FETCH " FETCH_BATCH " FROM %s", sc->cursor);
    PGresult *r = PQexec(sc->st->conn, q);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
      PQclear(r);
      sc->done = 1;
      return pg_fail(sc->st, "the scan failed", err);
    }
    sc->res = r;
    sc->row = 0;
    sc->nrows = PQntuples(r);
    if (sc->nrows == 0) {
      sc->done = 1;
      return CVG_DONE;
    }
  }
  PGresult *r = sc->res;
  int i0 = sc->row++;
  cvg_buf_reset(&sc->key);
  cvg_buf_reset(&sc->row_buf);
  cvg_buf_reset(&sc->ver);
  int rc = 0;
  for (int i = 0; !rc && i < sc->n_key; i++)
    rc = encode_cell(r, i0, i, &sc->key, &sc->ver, 0, 0);
  cvg_buf_reset(&sc->ver);
  for (int i = 0; !rc && i < sc->n_cmp; i++)
    rc =
        encode_cell(r, i0, sc->n_key + i, &sc->row_buf, &sc->ver, sc->real_digits, sc->time_digits);
  cvg_buf_reset(&sc->ver);
  if (!rc && sc->ver_idx >= 0)
    rc = encode_cell(r, i0, sc->ver_idx, &sc->ver, &sc->st->lk_scratch, 0, 0);
  if (rc)
    return cvg_error_set(err, rc, sc->st->shown, "cannot encode a row (%s)", cvg_status_name(rc));
  row->key = sc->key.data;
  row->key_len = sc->key.len;
  row->fp = cvg_fingerprint(sc->row_buf.data ? (const void *)sc->row_buf.data : (const void *)"",
                            sc->row_buf.len);
  row->version = sc->ver_idx >= 0 ? sc->ver.data : NULL;
  row->version_len = sc->ver_idx >= 0 ? sc->ver.len : 0;
  row->tombstone = sc->tomb_idx >= 0 ? truthy_cell(r, i0, sc->tomb_idx) : 0;
  row->vvec = NULL;
  row->vvec_len = 0;
  return CVG_OK;
}

static void pg_scan_close(cvg_scan *base) {
  pg_scan *sc = (pg_scan *)base;
  if (!sc)
    return;
  PQclear(sc->res);
  if (sc->line)
    PQfreemem(sc->line);
  if (sc->copy && !sc->done) { /* abandoned mid-way: cancel the COPY, drain what is left */
    PGcancel *c = PQgetCancel(sc->st->conn);
    char eb[256];
    if (c) {
      PQcancel(c, eb, sizeof eb);
      PQfreeCancel(c);
    }
    char *l = NULL;
    while (PQgetCopyData(sc->st->conn, &l, 0) >= 0)
      PQfreemem(l);
    PGresult *r;
    while ((r = PQgetResult(sc->st->conn)))
      PQclear(r);
  }
  free(sc->oids);
  cvg_buf_release(&sc->field);
  if (sc->copy && sc->own_txn && sc->st->conn && PQstatus(sc->st->conn) == CONNECTION_OK)
    PQclear(PQexec(sc->st->conn, "ROLLBACK")); /* the COPY's read-only transaction */
  if (!sc->copy && sc->st->conn && PQstatus(sc->st->conn) == CONNECTION_OK) {
    char q[96];
    snprintf(q, sizeof q, "CLOSE %s", sc->cursor);
    if (!sc->own_txn)
      PQclear(PQexec(sc->st->conn, q));
    else
      PQclear(PQexec(sc->st->conn, "COMMIT")); /* ends the cursor with the transaction */
  }
  cvg_buf_release(&sc->key);
  cvg_buf_release(&sc->row_buf);
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
        rc = encode_cell(r, 0, (int)i, out, &scratch, 0, 0);
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

/* ---- lookups, incremental scans, converge's own tables, aggregates, conditional writes ---- */

/* A value as a text parameter (NULL for SQL NULL): integers and reals in full precision, text
 * as is, blobs as bytea hex. OWNED result in *out. */
static int value_param(const cvg_value *v, char **out) {
  char num[64];
  *out = NULL;
  switch (v->type) {
  case CVG_INTEGER:
    snprintf(num, sizeof num, "%lld", (long long)v->u.i);
    return (*out = strdup(num)) ? CVG_OK : CVG_ENOMEM;
  case CVG_REAL:
    snprintf(num, sizeof num, "%.17g", v->u.r);
    return (*out = strdup(num)) ? CVG_OK : CVG_ENOMEM;
  case CVG_TEXT:
    if (memchr(v->u.s.p, 0, v->u.s.n))
      return CVG_EINVAL; /* PostgreSQL text cannot hold NUL */
    return (*out = strndup((const char *)v->u.s.p, v->u.s.n)) ? CVG_OK : CVG_ENOMEM;
  case CVG_BLOB: {
    static const char d[] = "0123456789abcdef";
    char *h = malloc(2 * v->u.s.n + 3);
    if (!h)
      return CVG_ENOMEM;
    h[0] = '\\';
    h[1] = 'x';
    for (size_t i = 0; i < v->u.s.n; i++) {
      h[2 + 2 * i] = d[v->u.s.p[i] >> 4];
      h[3 + 2 * i] = d[v->u.s.p[i] & 15];
    }
    h[2 + 2 * v->u.s.n] = '\0';
    *out = h;
    return CVG_OK;
  }
  default:
    return CVG_OK;
  }
}

/* " WHERE k1 = $o AND k2 IS NULL ..." with the key's values appended to params from index o-1. */
static int where_key(const cvg_scan_spec *spec, const unsigned char *key, size_t key_len,
                     cvg_buf *q, char **params, int *np, cvg_buf *scratch) {
  cvg_value v[64];
  size_t n = 0;
  if (spec->n_key > 64 || cvg_decode_tuple(key, key_len, v, 64, &n, scratch) != CVG_OK ||
      n != spec->n_key)
    return CVG_ECORRUPT;
  int rc = cvgi_append_str(q, " WHERE ");
  for (size_t i = 0; !rc && i < n; i++) {
    rc = (i ? cvgi_append_str(q, " AND ") : 0) || cvgi_quote_ident(q, spec->key_cols[i]);
    if (rc)
      break;
    if (v[i].type == CVG_NULL) {
      rc = cvgi_append_str(q, " IS NULL");
      continue;
    }
    char ph[32];
    snprintf(ph, sizeof ph, " = $%d", *np + 1);
    if ((rc = value_param(&v[i], &params[*np])))
      break;
    (*np)++;
    rc = cvgi_append_str(q, ph);
  }
  return rc;
}

/* Reconnects a dropped connection, at most once per backoff period (1 s doubling to 30 s). */
static int pg_alive(pg_store *st, cvg_error *err) {
  if (PQstatus(st->conn) == CONNECTION_OK)
    return CVG_OK;
  double now = cvg_mono_now();
  if (now >= st->retry_at) {
    PQreset(st->conn);
    st->backoff = st->backoff > 0 ? (st->backoff * 2 > 30 ? 30 : st->backoff * 2) : 1;
    st->retry_at = now + st->backoff;
    if (PQstatus(st->conn) == CONNECTION_OK) {
      st->backoff = 0;
      return CVG_OK;
    }
  }
  pg_fail(st, "the connection is down", err);
  if (err)
    err->status = CVG_EDOWN;
  return CVG_EDOWN;
}

static PGresult *run(pg_store *st, const char *sql, int n, char **params) {
  return PQexecParams(st->conn, sql, n, NULL, (const char *const *)params, NULL, NULL, 0);
}

static void free_params(char **p, int n) {
  for (int i = 0; i < n; i++)
    free(p[i]);
}

/* Fills row from result row 0 of a select_list() query; buffers are the store's own. */
static int row_from(pg_store *st, const cvg_scan_spec *spec, PGresult *r, cvg_scan_row *row,
                    cvg_error *err) {
  cvg_buf_reset(&st->lk_key);
  cvg_buf_reset(&st->lk_row);
  cvg_buf_reset(&st->lk_ver);
  int rc = 0, c = 0;
  for (size_t i = 0; !rc && i < spec->n_key; i++)
    rc = encode_cell(r, 0, c++, &st->lk_key, &st->lk_scratch, 0, 0);
  for (size_t i = 0; !rc && i < spec->n_cmp; i++)
    rc = encode_cell(r, 0, c++, &st->lk_row, &st->lk_scratch, spec->real_digits, spec->time_digits);
  int vi = spec->version_col ? c++ : -1, ti = spec->tombstone_col ? c++ : -1;
  if (!rc && vi >= 0)
    rc = encode_cell(r, 0, vi, &st->lk_ver, &st->lk_scratch, 0, 0);
  if (rc)
    return cvg_error_set(err, rc, st->shown, "cannot encode a row");
  row->key = st->lk_key.data;
  row->key_len = st->lk_key.len;
  row->fp = cvg_fingerprint(st->lk_row.data ? (const void *)st->lk_row.data : (const void *)"",
                            st->lk_row.len);
  row->version = vi >= 0 ? st->lk_ver.data : NULL;
  row->version_len = vi >= 0 ? st->lk_ver.len : 0;
  row->tombstone = ti >= 0 ? truthy_cell(r, 0, ti) : 0;
  row->vvec = NULL;
  row->vvec_len = 0;
  return CVG_OK;
}

/* The row of key as the scan would return it; lock: FOR UPDATE (inside apply). */
static int pg_lookup_(pg_store *st, const cvg_scan_spec *spec, const unsigned char *key,
                      size_t key_len, int lock, cvg_scan_row *row, int *found, cvg_error *err) {
  *found = 0;
  char *params[64] = {0};
  int np = 0;
  cvg_buf q;
  cvg_buf_init(&q, PG_SQL_MAX);
  cvg_buf_reset(&st->lk_scratch);
  int rc = select_list(spec, &q) || cvgi_append_str(&q, " FROM ") || qualified(st, &q);
  if (!rc)
    rc = where_key(spec, key, key_len, &q, params, &np, &st->lk_scratch);
  rc = rc || (lock ? cvgi_append_str(&q, " FOR UPDATE") : 0) || cvg_buf_append(&q, "", 1);
  if (rc) {
    free_params(params, np);
    cvg_buf_release(&q);
    return cvg_error_set(err, rc == CVG_ECORRUPT ? CVG_ECORRUPT : CVG_ENOMEM, st->shown,
                         "cannot look a key up");
  }
  PGresult *r = run(st, (const char *)q.data, np, params);
  free_params(params, np);
  cvg_buf_release(&q);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    PQclear(r);
    return pg_fail(st, "cannot look a key up", err);
  }
  if (PQntuples(r) > 0) {
    rc = row_from(st, spec, r, row, err);
    *found = rc == CVG_OK;
  }
  PQclear(r);
  return rc;
}

static int pg_lookup(cvg_store *base, const cvg_scan_spec *spec, const unsigned char *key,
                     size_t key_len, cvg_scan_row *row, int *found, cvg_error *err) {
  pg_store *st = (pg_store *)base;
  int rc = pg_alive(st, err);
  return rc ? rc : pg_lookup_(st, spec, key, key_len, 0, row, found, err);
}

/* converge's heartbeat and canary tables, in the data table's schema. */
static int own_name(const pg_store *st, const char *table, cvg_buf *q) {
  if (st->schema && (cvgi_quote_ident(q, st->schema) || cvgi_append_str(q, ".")))
    return CVG_ENOMEM;
  return cvgi_quote_ident(q, table);
}

/* Runs "pre <own table> post" with params; CVG_ENOTABLE when the table does not exist. */
static int own_run(pg_store *st, const char *pre, const char *table, const char *post, int n,
                   char **params, PGresult **out, cvg_error *err) {
  *out = NULL;
  int rc = pg_alive(st, err);
  if (rc)
    return rc;
  cvg_buf q;
  cvg_buf_init(&q, PG_SQL_MAX);
  if (cvgi_append_str(&q, pre) || own_name(st, table, &q) || cvgi_append_str(&q, post) ||
      cvg_buf_append(&q, "", 1)) {
    cvg_buf_release(&q);
    return cvg_error_set(err, CVG_ENOMEM, st->shown, "out of memory");
  }
  PGresult *r = run(st, (const char *)q.data, n, params);
  cvg_buf_release(&q);
  ExecStatusType s = PQresultStatus(r);
  if (s == PGRES_TUPLES_OK || s == PGRES_COMMAND_OK) {
    *out = r;
    return CVG_OK;
  }
  const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  if (state && !strcmp(state, "42P01")) { /* undefined_table */
    PQclear(r);
    cvg_error_set(err, CVG_ENOTABLE, st->shown, "no table '%s' (converge's own table)", table);
    cvg_error_hint(err, "it is created on the authority when create_tables is true, and reaches "
                        "other replicas through replication (add it to the publication)");
    return CVG_ENOTABLE;
  }
  PQclear(r);
  return pg_fail(st, "cannot use converge's table", err);
}

/* Creates one of converge's tables if it is not there. */
static int own_create(pg_store *st, const char *table, const char *cols, cvg_error *err) {
  PGresult *r = NULL;
  int rc = own_run(st, "CREATE TABLE IF NOT EXISTS ", table, cols, 0, NULL, &r, err);
  PQclear(r);
  return rc;
}

static int pg_heartbeat_write(cvg_store *base, const char *table, const char *source, int64_t seq,
                              double ts, int create, cvg_error *err) {
  pg_store *st = (pg_store *)base;
  PGresult *r = NULL;
  int rc = CVG_OK;
  if (create && (rc = own_create(st, table,
                                 " (source text PRIMARY KEY, seq bigint NOT NULL,"
                                 " ts double precision NOT NULL)",
                                 err)))
    return rc;
  char sq[32], tq[64];
  snprintf(sq, sizeof sq, "%lld", (long long)seq);
  snprintf(tq, sizeof tq, "%.17g", ts);
  char *p[3] = {(char *)source, sq, tq};
  rc = own_run(st, "INSERT INTO ", table,
               " (source, seq, ts) VALUES ($1, $2, $3) ON CONFLICT (source) DO UPDATE SET"
               " seq = excluded.seq, ts = excluded.ts",
               3, p, &r, err);
  PQclear(r);
  return rc;
}

static int pg_heartbeat_read(cvg_store *base, const char *table, const char *source, int64_t *seq,
                             double *ts, int *found, cvg_error *err) {
  pg_store *st = (pg_store *)base;
  PGresult *r = NULL;
  char *p[1] = {(char *)source};
  *found = 0;
  int rc = own_run(st, "SELECT seq, ts FROM ", table, " WHERE source = $1", 1, p, &r, err);
  if (!rc && PQntuples(r) > 0) {
    *found = 1;
    *seq = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    *ts = strtod(PQgetvalue(r, 0, 1), NULL);
  }
  PQclear(r);
  return rc;
}

static int pg_canary_write(cvg_store *base, const char *table, const char *source,
                           const char *token, double ts, int create, cvg_error *err) {
  pg_store *st = (pg_store *)base;
  PGresult *r = NULL;
  int rc = CVG_OK;
  if (create && (rc = own_create(st, table,
                                 " (token text PRIMARY KEY, source text NOT NULL,"
                                 " ts double precision NOT NULL)",
                                 err)))
    return rc;
  char tq[64];
  snprintf(tq, sizeof tq, "%.17g", ts);
  char *p[3] = {(char *)token, (char *)source, tq};
  rc = own_run(st, "INSERT INTO ", table,
               " (token, source, ts) VALUES ($1, $2, $3) ON CONFLICT (token) DO UPDATE SET"
               " source = excluded.source, ts = excluded.ts",
               3, p, &r, err);
  PQclear(r);
  return rc;
}

static int pg_canary_seen(cvg_store *base, const char *table, const char *token, int *found,
                          cvg_error *err) {
  pg_store *st = (pg_store *)base;
  PGresult *r = NULL;
  char *p[1] = {(char *)token};
  *found = 0;
  int rc = own_run(st, "SELECT 1 FROM ", table, " WHERE token = $1", 1, p, &r, err);
  if (!rc)
    *found = PQntuples(r) > 0;
  PQclear(r);
  return rc;
}

static int pg_canary_purge(cvg_store *base, const char *table, const char *source, double before,
                           cvg_error *err) {
  pg_store *st = (pg_store *)base;
  PGresult *r = NULL;
  char tq[64];
  snprintf(tq, sizeof tq, "%.17g", before);
  char *p[2] = {(char *)source, tq};
  int rc = own_run(st, "DELETE FROM ", table, " WHERE source = $1 AND ts < $2", 2, p, &r, err);
  PQclear(r);
  return rc;
}

static int pg_scalar(cvg_store *base, const char *expr, double *out, int *is_null, cvg_error *err) {
  pg_store *st = (pg_store *)base;
  int rc = pg_alive(st, err);
  if (rc)
    return rc;
  cvg_buf q;
  cvg_buf_init(&q, PG_SQL_MAX);
  if (cvgi_append_str(&q, "SELECT ((\n") || cvgi_append_str(&q, expr) ||
      cvgi_append_str(&q, "\n))::float8 FROM ") || qualified(st, &q) || cvg_buf_append(&q, "", 1)) {
    cvg_buf_release(&q);
    return cvg_error_set(err, CVG_ENOMEM, st->shown, "out of memory");
  }
  PGresult *r = PQexec(st->conn, (const char *)q.data);
  cvg_buf_release(&q);
  if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
    const char *m = PQresultErrorMessage(r);
    rc = cvg_error_set(err, CVG_ESQL, st->shown, "cannot evaluate aggregate '%s': %s", expr,
                       m && *m ? m : "not one row");
    cvg_error_hint(err, "give one aggregate over the table's columns, e.g. sum(balance)");
  } else {
    *is_null = PQgetisnull(r, 0, 0);
    *out = *is_null ? 0 : strtod(PQgetvalue(r, 0, 0), NULL);
  }
  PQclear(r);
  return rc;
}

static int pg_has_index(cvg_store *base, const char *col, int *yes, cvg_error *err) {
  pg_store *st = (pg_store *)base;
  *yes = 0;
  int rc = pg_alive(st, err);
  if (rc)
    return rc;
  const char *p[3] = {st->table, st->schema, col};
  PGresult *r =
      PQexecParams(st->conn,
                   "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
                   " JOIN pg_namespace n ON n.oid = c.relnamespace"
                   " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]"
                   " WHERE c.relname = $1 AND ($2::text IS NULL OR n.nspname = $2)"
                   " AND ($2::text IS NOT NULL OR pg_table_is_visible(c.oid)) AND a.attname = $3",
                   3, NULL, p, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK)
    rc = pg_fail(st, "cannot list the table's indexes", err);
  else
    *yes = PQntuples(r) > 0;
  PQclear(r);
  return rc;
}

static int pg_read_txn(cvg_store *base, int begin, cvg_error *err) {
  pg_store *st = (pg_store *)base;
  int rc = pg_alive(st, err);
  if (rc)
    return rc;
  PGresult *r =
      PQexec(st->conn, begin ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" : "COMMIT");
  if (PQresultStatus(r) != PGRES_COMMAND_OK)
    rc = pg_fail(st, begin ? "cannot begin reading" : "cannot end reading", err);
  PQclear(r);
  return rc;
}

/* Writes one mutation whose condition holds (inside the transaction). */
static int write_one(pg_store *st, const cvg_scan_spec *spec, cvg_mutation *mu) {
  char *params[2100] = {0};
  int np = 0, rc;
  cvg_buf q, scratch;
  cvg_buf_init(&q, PG_SQL_MAX);
  cvg_buf_init(&scratch, PG_ROW_MAX);
  if (mu->op == CVG_MUT_DELETE) {
    rc = cvgi_append_str(&q, "DELETE FROM ") || qualified(st, &q);
    if (!rc)
      rc = where_key(spec, mu->key, mu->key_len, &q, params, &np, &scratch);
  } else {
    cvg_value *v = calloc(mu->n_cols ? mu->n_cols : 1, sizeof *v);
    size_t nv = 0;
    rc = !v || mu->n_cols > 2000 ||
         cvg_decode_tuple(mu->values, mu->values_len, v, mu->n_cols, &nv, &scratch) != CVG_OK ||
         nv != mu->n_cols;
    /* INSERT ... ON CONFLICT (key) DO UPDATE: one statement whether the row is there or not */
    rc =
        rc || cvgi_append_str(&q, "INSERT INTO ") || qualified(st, &q) || cvgi_append_str(&q, " (");
    for (size_t i = 0; !rc && i < nv; i++)
      rc = (i ? cvgi_append_str(&q, ", ") : 0) || cvgi_quote_ident(&q, mu->cols[i]);
    rc = rc || cvgi_append_str(&q, ") VALUES (");
    for (size_t i = 0; !rc && i < nv; i++) {
      char ph[32];
      snprintf(ph, sizeof ph, "%s$%zu", i ? ", " : "", i + 1);
      rc = value_param(&v[i], &params[np]) || cvgi_append_str(&q, ph);
      np++;
    }
    rc = rc || cvgi_append_str(&q, ") ON CONFLICT (");
    for (size_t i = 0; !rc && i < spec->n_key; i++)
      rc = (i ? cvgi_append_str(&q, ", ") : 0) || cvgi_quote_ident(&q, spec->key_cols[i]);
    rc = rc || cvgi_append_str(&q, ") DO UPDATE SET ");
    for (size_t i = 0, w = 0; !rc && i < nv; i++) {
      int is_key = 0;
      for (size_t k = 0; k < spec->n_key; k++)
        is_key |= !strcmp(mu->cols[i], spec->key_cols[k]);
      if (is_key)
        continue;
      rc = (w++ ? cvgi_append_str(&q, ", ") : 0) || cvgi_quote_ident(&q, mu->cols[i]) ||
           cvgi_append_str(&q, " = excluded.") || cvgi_quote_ident(&q, mu->cols[i]);
    }
    free(v);
  }
  if (rc || cvg_buf_append(&q, "", 1)) {
    snprintf(mu->reason, sizeof mu->reason, "malformed mutation");
    free_params(params, np);
    cvg_buf_release(&q);
    cvg_buf_release(&scratch);
    return -1;
  }
  PGresult *r = run(st, (const char *)q.data, np, params);
  free_params(params, np);
  cvg_buf_release(&q);
  cvg_buf_release(&scratch);
  int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  if (!ok)
    snprintf(mu->reason, sizeof mu->reason, "%.190s", PQresultErrorMessage(r));
  PQclear(r);
  return ok ? 0 : -1;
}

static int pg_apply(cvg_store *base, const cvg_scan_spec *spec, cvg_mutation *m, size_t n,
                    cvg_error *err) {
  pg_store *st = (pg_store *)base;
  int rc = pg_alive(st, err);
  PGresult *r = rc ? NULL : PQexec(st->conn, "BEGIN");
  if (rc || PQresultStatus(r) != PGRES_COMMAND_OK) {
    PQclear(r);
    if (!rc)
      rc = pg_fail(st, "cannot begin the repair transaction", err);
    for (size_t i = 0; i < n; i++) {
      m[i].result = CVG_MUT_FAILED;
      snprintf(m[i].reason, sizeof m[i].reason, "cannot begin the transaction");
    }
    return rc;
  }
  PQclear(r);
  for (size_t i = 0; i < n; i++) {
    cvg_mutation *mu = &m[i];
    mu->reason[0] = '\0';
    cvg_scan_row row;
    int found = 0;
    cvg_error lerr;
    cvg_error_clear(&lerr);
    /* a savepoint per mutation: one that fails does not take the others down */
    PQclear(PQexec(st->conn, "SAVEPOINT converge_m"));
    if (pg_lookup_(st, spec, mu->key, mu->key_len, 1, &row, &found, &lerr) != CVG_OK) {
      mu->result = CVG_MUT_FAILED;
      snprintf(mu->reason, sizeof mu->reason, "%.190s", lerr.msg);
      PQclear(PQexec(st->conn, "ROLLBACK TO SAVEPOINT converge_m"));
      continue;
    }
    if (!cvgi_mutation_matches(mu, found, &row, mu->reason, sizeof mu->reason)) {
      mu->result = CVG_MUT_SKIPPED;
      continue;
    }
    if (write_one(st, spec, mu) == 0) {
      mu->result = CVG_MUT_APPLIED;
    } else {
      mu->result = CVG_MUT_FAILED;
      PQclear(PQexec(st->conn, "ROLLBACK TO SAVEPOINT converge_m"));
    }
  }
  r = PQexec(st->conn, "COMMIT");
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    rc = pg_fail(st, "cannot commit the repair transaction", err);
    for (size_t i = 0; i < n; i++) {
      m[i].result = CVG_MUT_FAILED;
      snprintf(m[i].reason, sizeof m[i].reason, "the repair transaction did not commit");
    }
  }
  PQclear(r);
  return rc;
}

/* An LSN as PostgreSQL prints it ("16/B374D848": high and low 32 bits in hex). */
static int parse_lsn(const char *s, uint64_t *out) {
  char *end = NULL;
  unsigned long long hi = strtoull(s, &end, 16), lo;
  if (end == s || *end != '/' || hi > 0xffffffffull)
    return -1;
  const char *p = end + 1;
  lo = strtoull(p, &end, 16);
  if (end == p || *end || lo > 0xffffffffull)
    return -1;
  *out = (uint64_t)hi << 32 | (uint64_t)lo;
  return 0;
}

static void text_field(PGresult *r, int row, int col, char *out, size_t size) {
  snprintf(out, size, "%s", PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col));
}

/* A subscriber's view: the first subscription of this database (by name); *found 0: none. */
static int pg_native_subscriber(pg_store *st, cvg_native_view *out, int *found, cvg_error *err) {
  *found = 0;
  PGresult *r =
      PQexec(st->conn,
             "SELECT s.subenabled, w.pid IS NOT NULL,"
             " extract(epoch from now() - w.last_msg_receipt_time), w.latest_end_lsn, s.subname,"
             " array_to_string(s.subpublications, ', '), s.oid, w.received_lsn"
             " FROM pg_subscription s"
             " LEFT JOIN pg_stat_subscription w ON w.subid = s.oid AND w.relid IS NULL"
             " WHERE s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
             " ORDER BY s.subname LIMIT 1");
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    PQclear(r);
    return pg_fail(st, "cannot read the subscription state", err);
  }
  if (PQntuples(r) != 1) {
    PQclear(r);
    return CVG_OK;
  }
  *found = 1;
  snprintf(out->role, sizeof out->role, "subscriber");
  out->up = PQgetvalue(r, 0, 0)[0] == 't' && PQgetvalue(r, 0, 1)[0] == 't';
  out->known = out->up && !PQgetisnull(r, 0, 2);
  out->lag = out->known ? strtod(PQgetvalue(r, 0, 2), NULL) : 0;
  out->lsn_known =
      out->up && !PQgetisnull(r, 0, 3) && parse_lsn(PQgetvalue(r, 0, 3), &out->lsn) == 0;
  text_field(r, 0, 4, out->name, sizeof out->name);
  text_field(r, 0, 5, out->publications, sizeof out->publications);
  char oid[32];
  text_field(r, 0, 6, oid, sizeof oid);
  out->recv_known =
      out->up && !PQgetisnull(r, 0, 7) && parse_lsn(PQgetvalue(r, 0, 7), &out->recv_lsn) == 0;
  PQclear(r);
  if (PQserverVersion(st->conn) >= 150000) { /* the apply worker's errors (PostgreSQL 15+) */
    const char *v[1] = {oid};
    r = PQexecParams(st->conn,
                     "SELECT apply_error_count FROM pg_stat_subscription_stats WHERE subid = $1", 1,
                     NULL, v, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0)) {
      out->apply_errors = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
      out->apply_errors_known = 1;
    }
    PQclear(r);
  }
  return CVG_OK;
}

/* A standby: replay delay and the WAL replayed; a subscriber: time since the apply worker last
 * heard from the publisher, whether the subscription is enabled with a worker running, the
 * publisher's WAL it has reported done, its apply errors; a primary or publisher with senders
 * (pg_stat_replication): the worst replay lag they report, their names, its current WAL LSN. */
static int pg_native_view(cvg_store *base, cvg_native_view *out, cvg_error *err) {
  pg_store *st = (pg_store *)base;
  int rc = pg_alive(st, err);
  if (rc)
    return rc;
  PGresult *r = PQexec(st->conn, "SELECT pg_is_in_recovery(),"
                                 " extract(epoch from now() - pg_last_xact_replay_timestamp()),"
                                 " (SELECT status = 'streaming' FROM pg_stat_wal_receiver LIMIT 1),"
                                 " CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()"
                                 " ELSE pg_current_wal_lsn() END,"
                                 " (SELECT system_identifier FROM pg_control_system()),"
                                 " pg_last_wal_receive_lsn()");
  if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
    PQclear(r);
    return pg_fail(st, "cannot read the replication state", err);
  }
  uint64_t lsn = 0;
  int lsn_ok = !PQgetisnull(r, 0, 3) && parse_lsn(PQgetvalue(r, 0, 3), &lsn) == 0;
  uint64_t sysid = PQgetisnull(r, 0, 4) ? 0 : strtoull(PQgetvalue(r, 0, 4), NULL, 10);
  if (PQgetvalue(r, 0, 0)[0] == 't') {
    snprintf(out->role, sizeof out->role, "standby");
    out->known = !PQgetisnull(r, 0, 1);
    out->lag = out->known ? strtod(PQgetvalue(r, 0, 1), NULL) : 0;
    out->up = !PQgetisnull(r, 0, 2) && PQgetvalue(r, 0, 2)[0] == 't';
    out->lsn = lsn;
    out->lsn_known = lsn_ok;
    out->sysid = sysid;
    out->recv_known = !PQgetisnull(r, 0, 5) && parse_lsn(PQgetvalue(r, 0, 5), &out->recv_lsn) == 0;
    PQclear(r);
    return CVG_OK;
  }
  PQclear(r);
  int sub = 0;
  if ((rc = pg_native_subscriber(st, out, &sub, err)) != CVG_OK || sub)
    return rc;
  /* a primary or publisher: its senders, and the worst replay lag they report (NULL: idle,
   * nothing to replay) */
  r = PQexec(st->conn,
             "SELECT count(*), max(extract(epoch from coalesce(replay_lag, interval '0'))),"
             " string_agg(application_name, ',' ORDER BY application_name)"
             " FROM pg_stat_replication");
  if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
      strtol(PQgetvalue(r, 0, 0), NULL, 10) > 0) {
    snprintf(out->role, sizeof out->role, "sender");
    out->known = !PQgetisnull(r, 0, 1);
    out->lag = out->known ? strtod(PQgetvalue(r, 0, 1), NULL) : 0;
    text_field(r, 0, 2, out->senders, sizeof out->senders);
  }
  PQclear(r);
  out->lsn = lsn; /* a primary's current WAL position, senders or not */
  out->lsn_known = lsn_ok;
  out->sysid = sysid;
  return CVG_OK;
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
    .lookup = pg_lookup,
    .heartbeat_write = pg_heartbeat_write,
    .heartbeat_read = pg_heartbeat_read,
    .canary_write = pg_canary_write,
    .canary_seen = pg_canary_seen,
    .canary_purge = pg_canary_purge,
    .scalar = pg_scalar,
    .has_index = pg_has_index,
    .apply = pg_apply,
    .read_txn = pg_read_txn,
    .native_view = pg_native_view,
};
