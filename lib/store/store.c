/* SPDX-License-Identifier: MIT */
/*
 * Engine-independent half of the replica interface: picks the engine by URL scheme and
 * forwards every call through its cvg_store_ops. A new engine adds one line to `engines`.
 */
#include "converge/store.h"
#include "store_int.h"

#include <ctype.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const cvg_store_ops *const engines[] = {&cvgi_sqlite_ops, &cvgi_postgres_ops};

int cvg_store_scheme_known(const char *scheme) {
  for (size_t i = 0; i < sizeof engines / sizeof engines[0]; i++)
    if (strcmp(engines[i]->scheme, scheme) == 0)
      return 1;
  return 0;
}

int cvg_store_open(cvg_store **out, const char *url_text, unsigned flags, cvg_error *err) {
  *out = NULL;
  /* Messages name the replica by its URL with any password shown as ***. */
  char *shown = cvg_url_redact(url_text);
  if (!shown)
    return cvg_error_set(err, CVG_ENOMEM, "", "out of memory");
  cvg_url url;
  int rc = cvg_url_parse(&url, url_text, err);
  if (rc) {
    if (err)
      snprintf(err->input, sizeof err->input, "%s", shown);
    free(shown);
    return rc;
  }
  const cvg_store_ops *ops = NULL;
  for (size_t i = 0; i < sizeof engines / sizeof engines[0]; i++)
    if (strcmp(engines[i]->scheme, url.scheme) == 0)
      ops = engines[i];
  if (!ops) {
    cvg_error_set(err, CVG_ESCHEME, shown, "unsupported URL scheme '%s'", url.scheme);
    cvg_error_hint(err,
                   "this build reads: sqlite:///abs/path.db?table=T, sqlite:rel/path.db?table=T, "
                   "postgresql://user@host:port/db?table=[schema.]T");
    cvg_url_release(&url);
    free(shown);
    return CVG_ESCHEME;
  }
  cvg_store *st = NULL;
  rc = ops->open(&st, &url, flags, err);
  cvg_url_release(&url);
  if (rc) {
    free(shown);
    return rc;
  }
  st->ops = ops;
  st->url = shown;
  *out = st;
  return CVG_OK;
}

void cvg_store_close(cvg_store *st) {
  if (!st)
    return;
  char *url = st->url;
  st->ops->close(st);
  free(url);
}

const char *cvg_store_url(const cvg_store *st) {
  return st ? st->url : "";
}

int cvg_store_describe(cvg_store *st, cvg_table_desc *out, cvg_error *err) {
  return st->ops->describe(st, out, err);
}

int cvg_scan_open(cvg_store *st, const cvg_scan_spec *spec, cvg_scan **out, cvg_error *err) {
  *out = NULL;
  return st->ops->scan_open(st, spec, out, err);
}

int cvg_scan_next(cvg_scan *sc, cvg_scan_row *row, cvg_error *err) {
  return ((cvgi_scan_base *)sc)->ops->scan_next(sc, row, err);
}

void cvg_scan_close(cvg_scan *sc) {
  if (sc)
    ((cvgi_scan_base *)sc)->ops->scan_close(sc);
}

int cvg_store_fetch(cvg_store *st, const cvg_scan_spec *spec, const unsigned char *key,
                    size_t key_len, const char *const *cols, size_t n_cols, cvg_buf *out,
                    int *found, cvg_error *err) {
  return st->ops->fetch(st, spec, key, key_len, cols, n_cols, out, found, err);
}

int cvgi_append_str(cvg_buf *b, const char *s) {
  return cvg_buf_append(b, s, strlen(s));
}

int cvgi_quote_ident(cvg_buf *b, const char *name) {
  int rc = cvg_buf_append(b, "\"", 1);
  for (const char *p = name; !rc && *p;) {
    size_t n = strcspn(p, "\"");
    rc = cvg_buf_append(b, p, n);
    p += n;
    if (!rc && *p == '"') { /* a quote is doubled */
      rc = cvg_buf_append(b, "\"\"", 2);
      p++;
    }
  }
  return rc ? rc : cvg_buf_append(b, "\"", 1);
}

void cvg_table_desc_release(cvg_table_desc *d) {
  if (!d)
    return;
  for (size_t i = 0; i < d->n_cols; i++) {
    free(d->cols[i].name);
    free(d->cols[i].decl_type);
  }
  free(d->cols);
  free(d->table);
  memset(d, 0, sizeof *d);
}

int cvg_table_desc_find(const cvg_table_desc *d, const char *name) {
  for (size_t i = 0; i < d->n_cols; i++)
    if (strcasecmp(d->cols[i].name, name) == 0)
      return (int)i;
  return -1;
}

int cvg_tombstone_truthy(const cvg_value *v) {
  static const char *const live_words[] = {"", "0", "false", "f", "no", "n"};
  switch (v->type) {
  case CVG_NULL:
    return 0;
  case CVG_INTEGER:
    return v->u.i != 0;
  case CVG_REAL:
    return v->u.r != 0.0;
  case CVG_BLOB:
    return v->u.s.n != 0;
  case CVG_TEXT:
    for (size_t i = 0; i < sizeof live_words / sizeof live_words[0]; i++) {
      size_t n = strlen(live_words[i]);
      if (v->u.s.n == n && strncasecmp((const char *)v->u.s.p, live_words[i], n) == 0)
        return 0;
    }
    return 1;
  }
  return 1;
}

static int unsupported(cvg_store *st, const char *what, cvg_error *err) {
  return cvg_error_set(err, CVG_EINVAL, st->url, "the %s engine cannot %s", st->ops->scheme, what);
}

int cvg_store_lookup(cvg_store *st, const cvg_scan_spec *spec, const unsigned char *key,
                     size_t key_len, cvg_scan_row *row, int *found, cvg_error *err) {
  if (!st->ops->lookup)
    return unsupported(st, "look up keys", err);
  return st->ops->lookup(st, spec, key, key_len, row, found, err);
}

int cvg_store_heartbeat_write(cvg_store *st, const char *table, const char *source, int64_t seq,
                              double ts, int create, cvg_error *err) {
  if (!st->ops->heartbeat_write)
    return unsupported(st, "write heartbeats", err);
  return st->ops->heartbeat_write(st, table, source, seq, ts, create, err);
}

int cvg_store_heartbeat_read(cvg_store *st, const char *table, const char *source, int64_t *seq,
                             double *ts, int *found, cvg_error *err) {
  if (!st->ops->heartbeat_read)
    return unsupported(st, "read heartbeats", err);
  return st->ops->heartbeat_read(st, table, source, seq, ts, found, err);
}

int cvg_store_canary_write(cvg_store *st, const char *table, const char *source, const char *token,
                           double ts, int create, cvg_error *err) {
  if (!st->ops->canary_write)
    return unsupported(st, "write canaries", err);
  return st->ops->canary_write(st, table, source, token, ts, create, err);
}

int cvg_store_canary_seen(cvg_store *st, const char *table, const char *token, int *found,
                          cvg_error *err) {
  if (!st->ops->canary_seen)
    return unsupported(st, "read canaries", err);
  return st->ops->canary_seen(st, table, token, found, err);
}

int cvg_store_canary_purge(cvg_store *st, const char *table, const char *source, double before,
                           cvg_error *err) {
  if (!st->ops->canary_purge)
    return unsupported(st, "purge canaries", err);
  return st->ops->canary_purge(st, table, source, before, err);
}

int cvg_store_scalar(cvg_store *st, const char *expr, double *out, int *is_null, cvg_error *err) {
  if (!st->ops->scalar)
    return unsupported(st, "evaluate aggregates", err);
  return st->ops->scalar(st, expr, out, is_null, err);
}

int cvg_store_has_index(cvg_store *st, const char *col, int *yes, cvg_error *err) {
  if (!st->ops->has_index)
    return unsupported(st, "list indexes", err);
  return st->ops->has_index(st, col, yes, err);
}

int cvg_store_apply(cvg_store *st, const cvg_scan_spec *spec, cvg_mutation *m, size_t n,
                    cvg_error *err) {
  if (!st->ops->apply)
    return unsupported(st, "apply repairs", err);
  return st->ops->apply(st, spec, m, n, err);
}

int cvg_store_native_view(cvg_store *st, cvg_native_view *out, cvg_error *err) {
  memset(out, 0, sizeof *out);
  out->up = 1;
  snprintf(out->role, sizeof out->role, "none");
  if (!st->ops->native_view)
    return CVG_OK;
  return st->ops->native_view(st, out, err);
}

int cvg_store_read_txn(cvg_store *st, int begin, cvg_error *err) {
  return st->ops->read_txn ? st->ops->read_txn(st, begin, err) : CVG_OK;
}

/* Does the row (as looked up now, by any engine) match what the mutation expects? */
int cvgi_mutation_matches(const cvg_mutation *m, int found, const cvg_scan_row *row, char *why,
                          size_t why_size) {
  if (!m->expect_present) {
    if (found)
      snprintf(why, why_size, "a row was written meanwhile (expected none)");
    return !found;
  }
  if (!found) {
    snprintf(why, why_size, "the row was deleted meanwhile");
    return 0;
  }
  if (row->tombstone != m->expect_tombstone) {
    snprintf(why, why_size, "the row was %s meanwhile", row->tombstone ? "tombstoned" : "revived");
    return 0;
  }
  if (m->expect_version_len &&
      (row->version_len != m->expect_version_len ||
       memcmp(row->version, m->expect_version, m->expect_version_len) != 0)) {
    snprintf(why, why_size, "the row's version changed meanwhile");
    return 0;
  }
  if (memcmp(&row->fp, &m->expect_fp, sizeof row->fp) != 0) {
    snprintf(why, why_size, "the row's content changed meanwhile");
    return 0;
  }
  return 1;
}
