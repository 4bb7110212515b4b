/* SPDX-License-Identifier: MIT */
/*
 * The N-way diff: parallel ordered scans merged in key order.
 *
 *   replica 1 --scan--> reader thread --[ring of RING batches]--+
 *   replica 2 --scan--> reader thread --[ring of RING batches]--+--> merge (calling thread)
 *   ...                                                         |      classify, count, callback
 *
 * Each reader fills a batch (up to BATCH_ROWS rows: key bytes, fingerprint, version, tombstone,
 * version vector) and publishes it; the merger consumes batches in order and hands them back.
 * Memory is RING * batch size per replica, whatever the table size. A reader checks that keys
 * strictly increase in byte order: if the engine's order is not the canonical order (a key
 * column mixing integers and reals) or the key is not unique, the diff stops with an error
 * rather than reporting phantom differences.
 *
 * Lifetime rule of the merge: copies point into batch arenas, so a consumed batch is handed back
 * only after the key that used its last row has been classified and reported.
 */
#include "converge/mclock.h"
#include "converge/diff.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define BATCH_ROWS 8192
#define BATCH_BYTES (4u << 20) /* a batch is flushed early once its arenas hold this much */
#define RING 4
#define ARENA_MAX ((size_t)1 << 31)
#define WARN_MAX 8192

typedef struct batch {
  size_t n;                /* rows in the batch */
  size_t *key_off;         /* BATCH_ROWS + 1 offsets into keys */
  size_t *ver_off;         /* ... into vers */
  size_t *vv_off;          /* ... into vvs */
  cvg_fp *fp;              /* fingerprints */
  unsigned char *tomb;     /* tombstone flags */
  cvg_buf keys, vers, vvs; /* arenas */
} batch;

typedef struct reader {
  struct cvg_diff *d; /* BORROWED; the owning diff */
  size_t idx;         /* replica number */
  cvg_scan *scan;     /* OWNED while running */
  pthread_t thread;
  int started;        /* thread was created */
  pthread_mutex_t mu; /* guards head, tail, eof, cancel, status, err */
  pthread_cond_t cv;
  batch ring[RING];
  size_t head;       /* batches published (writer) */
  size_t tail;       /* batches handed back (merger) */
  int eof;           /* the reader has published its last batch */
  int cancel;        /* the merger asks the reader to stop */
  int status;        /* CVG_OK, or the error that ended the scan */
  cvg_error err;     /* detail of status */
  cvg_buf prev;      /* last key of the previous batch, for the order check */
  uint64_t rows;     /* rows read */
  double started_at; /* monotonic seconds at start, for the throttle */
  /* merger side */
  batch *cur; /* batch being merged, or NULL */
  size_t pos; /* next row in cur */
  int done;   /* stream exhausted */
} reader;

struct cvg_diff {
  size_t n;                                   /* replicas */
  int failed;                                 /* replica whose read ended the last run, or -1 */
  int describe_only;                          /* prepared with described: no st[] */
  cvg_store *st[CVG_DIFF_MAX_REPLICAS];       /* OWNED scan connections */
  cvg_store *fetch_st[CVG_DIFF_MAX_REPLICAS]; /* OWNED fetch connections, opened lazily */
  char *urls[CVG_DIFF_MAX_REPLICAS];          /* OWNED copies, to open the replicas */
  char *shown[CVG_DIFF_MAX_REPLICAS]; /* OWNED; the same with passwords as ***, for messages */
  char **key_cols;                    /* OWNED list */
  size_t n_key;
  char **cmp_cols; /* OWNED list */
  size_t n_cmp;
  char *version_col, *tombstone_col, *vvec_col, *where; /* OWNED or NULL */
  uint32_t n_shards;
  int stop_at_first;
  cvg_scan_spec spec; /* views of the lists above */
  char warnings[WARN_MAX];
  reader *readers;                       /* OWNED during run */
  uint64_t *by_shard;                    /* OWNED */
  int digests;                           /* compute shard digests */
  cvg_fp *digest;                        /* OWNED; n * n_shards when digests */
  cvg_buf maxver[CVG_DIFF_MAX_REPLICAS]; /* greatest version read from each replica */
  double rows_per_sec;                   /* reader throttle, 0 = none */
  const int *cancel;                     /* BORROWED; stop when nonzero (read atomically) */
};

/* ---- string lists ---- */

static void free_list(char **l, size_t n) {
  for (size_t i = 0; l && i < n; i++)
    free(l[i]);
  free(l);
}

static int list_push(char ***l, size_t *n, const char *s) {
  char **nl = realloc(*l, (*n + 1) * sizeof *nl);
  if (!nl)
    return CVG_ENOMEM;
  *l = nl;
  nl[*n] = strdup(s);
  if (!nl[*n])
    return CVG_ENOMEM;
  (*n)++;
  return CVG_OK;
}

static int list_has(char **l, size_t n, const char *s) {
  for (size_t i = 0; i < n; i++)
    if (strcasecmp(l[i], s) == 0)
      return 1;
  return 0;
}

static void warn_append(cvg_diff *d, const char *line) {
  size_t used = strlen(d->warnings);
  snprintf(d->warnings + used, sizeof d->warnings - used, "%s\n", line);
}

/* ---- prepare: open, describe, settle columns, detect schema drift ---- */

static void columns_hint(const cvg_table_desc *t, char *buf, size_t size) {
  size_t used = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < t->n_cols && used + 1 < size; i++) {
    int k = snprintf(buf + used, size - used, "%s%s", i ? ", " : "", t->cols[i].name);
    if (k < 0)
      break;
    used += (size_t)k;
  }
}

/* A column every replica lacks is a plain error; one some replicas lack is drift (later). */
static int require_somewhere(const cvg_table_desc *desc, size_t n, const char *col,
                             const char *what, const char *url0, cvg_error *err) {
  for (size_t r = 0; r < n; r++)
    if (cvg_table_desc_find(&desc[r], col) >= 0)
      return CVG_OK;
  char cols[600];
  columns_hint(&desc[0], cols, sizeof cols);
  cvg_error_set(err, CVG_ENOCOLUMN, url0, "%s names column '%s', which table '%s' does not have",
                what, col, desc[0].table);
  cvg_error_hint(err, "columns of '%s': %s", desc[0].table, cols);
  return CVG_ENOCOLUMN;
}

static const char *canonical_name(const cvg_table_desc *desc, size_t n, const char *col) {
  for (size_t r = 0; r < n; r++) {
    int i = cvg_table_desc_find(&desc[r], col);
    if (i >= 0)
      return desc[r].cols[i].name;
  }
  return col;
}

static int is_used(const cvg_diff *d, const char *col) {
  return list_has(d->key_cols, d->n_key, col) || list_has(d->cmp_cols, d->n_cmp, col) ||
         (d->version_col && strcasecmp(d->version_col, col) == 0) ||
         (d->tombstone_col && strcasecmp(d->tombstone_col, col) == 0) ||
         (d->vvec_col && strcasecmp(d->vvec_col, col) == 0);
}

/* Compares every replica's columns with the union; returns CVG_ESCHEMA if a used column drifts. */
static int check_drift(cvg_diff *d, const cvg_table_desc *desc, cvg_error *err) {
  char msg[CVG_ERROR_MSG_MAX];
  size_t used = 0;
  int fatal = 0, n_fatal = 0;
  msg[0] = '\0';
  for (size_t r = 0; r < d->n; r++) {
    for (size_t c = 0; c < desc[r].n_cols; c++) {
      const cvg_column *col = &desc[r].cols[c];
      /* Report each column once: at the first replica that has it. */
      int first = 1;
      for (size_t q = 0; q < r && first; q++)
        first = cvg_table_desc_find(&desc[q], col->name) < 0;
      if (!first)
        continue;
      for (size_t q = 0; q < d->n; q++) {
        if (q == r)
          continue;
        int k = cvg_table_desc_find(&desc[q], col->name);
        char line[700];
        if (k < 0)
          snprintf(line, sizeof line,
                   "column '%s' (%s) is on replica %zu but not on replica %zu "
                   "(%s)",
                   col->name, col->decl_type[0] ? col->decl_type : "no type", r + 1, q + 1,
                   d->shown[q]);
        else if (desc[q].cols[k].affinity != col->affinity)
          snprintf(line, sizeof line, "column '%s' is %s on replica %zu but %s on replica %zu (%s)",
                   col->name, col->decl_type[0] ? col->decl_type : "untyped", r + 1,
                   desc[q].cols[k].decl_type[0] ? desc[q].cols[k].decl_type : "untyped", q + 1,
                   d->shown[q]);
        else
          continue;
        if (is_used(d, col->name)) {
          fatal = 1;
          n_fatal++;
          int w = snprintf(msg + used, sizeof msg - used, "\n  %s", line);
          if (w > 0 && (size_t)w < sizeof msg - used)
            used += (size_t)w;
        } else {
          char wl[800];
          snprintf(wl, sizeof wl, "schema drift outside the compared columns: %s", line);
          warn_append(d, wl);
        }
      }
    }
  }
  if (!fatal)
    return CVG_OK;
  cvg_error_set(err, CVG_ESCHEMA, d->shown[0],
                "schema drift between the replicas (%d "
                "difference%s in compared columns):%s",
                n_fatal, n_fatal == 1 ? "" : "s", msg);
  cvg_error_hint(err, "compare only the columns all replicas share with --columns, or leave the "
                      "drifted ones out with --exclude");
  return CVG_ESCHEMA;
}

static int settle_key(cvg_diff *d, const cvg_diff_options *opt, const cvg_table_desc *desc,
                      cvg_error *err) {
  int rc;
  if (opt->n_key) {
    for (size_t i = 0; i < opt->n_key; i++) {
      if ((rc = require_somewhere(desc, d->n, opt->key_cols[i], "--key", d->shown[0], err)))
        return rc;
      if (list_push(&d->key_cols, &d->n_key, canonical_name(desc, d->n, opt->key_cols[i])))
        return cvg_error_set(err, CVG_ENOMEM, "", "out of memory");
    }
    return CVG_OK;
  }
  for (size_t r = 0; r < d->n; r++) {
    if (desc[r].n_pk == 0) {
      cvg_error_set(err, CVG_ENOKEY, d->shown[r], "table '%s' has no primary key", desc[r].table);
      cvg_error_hint(err, "name the columns that identify a row with --key COL[,COL...]");
      return CVG_ENOKEY;
    }
  }
  for (size_t p = 1; p <= desc[0].n_pk; p++)
    for (size_t c = 0; c < desc[0].n_cols; c++)
      if ((size_t)desc[0].cols[c].pk == p &&
          list_push(&d->key_cols, &d->n_key, desc[0].cols[c].name))
        return cvg_error_set(err, CVG_ENOMEM, "", "out of memory");
  for (size_t r = 1; r < d->n; r++) {
    int same = desc[r].n_pk == d->n_key;
    for (size_t i = 0; same && i < d->n_key; i++) {
      int k = cvg_table_desc_find(&desc[r], d->key_cols[i]);
      same = k >= 0 && (size_t)desc[r].cols[k].pk == i + 1;
    }
    if (!same) {
      cvg_error_set(err, CVG_ESCHEMA, d->shown[r],
                    "schema drift: the primary key of this replica differs from replica 1's");
      cvg_error_hint(err, "name the key columns all replicas share with --key");
      return CVG_ESCHEMA;
    }
  }
  return CVG_OK;
}

/* Settings that would compare less than they seem to - and so call differing replicas
 * identical - are refused: nothing left to compare, a key column named twice, the version or
 * tombstone inside the key, one column as both version and tombstone. */
static int check_columns(const cvg_diff *d, const cvg_diff_options *opt, cvg_error *err) {
  for (size_t i = 0; i < d->n_key; i++)
    for (size_t j = i + 1; j < d->n_key; j++)
      if (strcasecmp(d->key_cols[i], d->key_cols[j]) == 0) {
        cvg_error_set(err, CVG_EINVAL, "--key", "the key names column '%s' twice", d->key_cols[i]);
        cvg_error_hint(err, "name each key column once: --key COL[,COL...]");
        return CVG_EINVAL;
      }
  const char *singles[2] = {d->version_col, d->tombstone_col};
  const char *names[2] = {"--version", "--tombstone"};
  for (int i = 0; i < 2; i++)
    if (singles[i] && list_has(d->key_cols, d->n_key, singles[i])) {
      cvg_error_set(err, CVG_EINVAL, names[i], "'%s' is a key column: it cannot also be the %s",
                    singles[i], i ? "tombstone" : "version");
      cvg_error_hint(err, "a key column never changes, so it can tell neither which copy is "
                          "newer nor whether a row was deleted; name another column");
      return CVG_EINVAL;
    }
  if (d->version_col && d->tombstone_col && strcasecmp(d->version_col, d->tombstone_col) == 0) {
    cvg_error_set(err, CVG_EINVAL, "--tombstone",
                  "'%s' cannot be both the version and the tombstone column", d->version_col);
    cvg_error_hint(err, "the version orders the copies of a row, the tombstone marks it deleted: "
                        "name two different columns");
    return CVG_EINVAL;
  }
  if ((opt->n_columns || opt->n_exclude) && d->n_cmp == 0) {
    cvg_error_set(err, CVG_EINVAL, opt->n_columns ? "--columns" : "--exclude",
                  "no column is left to compare: %s",
                  opt->n_columns && opt->n_exclude
                      ? "--exclude removes every column --columns names"
                      : "every column that is not in the key is excluded");
    cvg_error_hint(err, "a diff that compares no column would call differing replicas identical; "
                        "keep at least one column outside the key");
    return CVG_EINVAL;
  }
  return CVG_OK;
}

static int settle_columns(cvg_diff *d, const cvg_diff_options *opt, const cvg_table_desc *desc,
                          cvg_error *err) {
  int rc;
  for (size_t i = 0; i < opt->n_exclude; i++)
    if ((rc = require_somewhere(desc, d->n, opt->exclude[i], "--exclude", d->shown[0], err)))
      return rc;
  const char *singles[3] = {opt->version_col, opt->tombstone_col, opt->vvec_col};
  const char *names[3] = {"--version", "--tombstone", "--version-vector"};
  char **dst[3] = {&d->version_col, &d->tombstone_col, &d->vvec_col};
  for (int i = 0; i < 3; i++) {
    if (!singles[i])
      continue;
    if ((rc = require_somewhere(desc, d->n, singles[i], names[i], d->shown[0], err)))
      return rc;
    *dst[i] = strdup(canonical_name(desc, d->n, singles[i]));
    if (!*dst[i])
      return cvg_error_set(err, CVG_ENOMEM, "", "out of memory");
  }
  if (opt->n_columns) {
    for (size_t i = 0; i < opt->n_columns; i++) {
      if ((rc = require_somewhere(desc, d->n, opt->columns[i], "--columns", d->shown[0], err)))
        return rc;
      const char *name = canonical_name(desc, d->n, opt->columns[i]);
      if (list_has(d->key_cols, d->n_key, name) || list_has(d->cmp_cols, d->n_cmp, name))
        continue;
      if (list_push(&d->cmp_cols, &d->n_cmp, name))
        return cvg_error_set(err, CVG_ENOMEM, "", "out of memory");
    }
  } else {
    for (size_t r = 0; r < d->n; r++)
      for (size_t c = 0; c < desc[r].n_cols; c++) {
        const char *name = desc[r].cols[c].name;
        if (list_has(d->key_cols, d->n_key, name) || list_has(d->cmp_cols, d->n_cmp, name))
          continue;
        if (list_push(&d->cmp_cols, &d->n_cmp, name))
          return cvg_error_set(err, CVG_ENOMEM, "", "out of memory");
      }
  }
  /* Exclusions apply to the compared set only: the key is always read. */
  for (size_t i = 0; i < opt->n_exclude; i++) {
    for (size_t j = 0; j < d->n_cmp; j++) {
      if (strcasecmp(d->cmp_cols[j], opt->exclude[i]) == 0) {
        free(d->cmp_cols[j]);
        memmove(&d->cmp_cols[j], &d->cmp_cols[j + 1], (d->n_cmp - j - 1) * sizeof *d->cmp_cols);
        d->n_cmp--;
        break;
      }
    }
  }
  return check_columns(d, opt, err);
}

int cvg_diff_prepare(cvg_diff **out, const cvg_diff_options *opt, cvg_error *err) {
  *out = NULL;
  if (opt->n_urls < 2)
    return cvg_error_set(err, CVG_EINVAL, "", "a diff needs at least two replicas, got %zu",
                         opt->n_urls);
  if (opt->n_urls > CVG_DIFF_MAX_REPLICAS)
    return cvg_error_set(err, CVG_EINVAL, "", "at most %d replicas can be compared at once",
                         CVG_DIFF_MAX_REPLICAS);
  if (opt->n_shards < 1 || opt->n_shards > CVG_DIFF_MAX_SHARDS)
    return cvg_error_set(err, CVG_EINVAL, "", "the shard count must be 1..%d", CVG_DIFF_MAX_SHARDS);
  for (size_t i = 0; i < opt->n_urls; i++)
    for (size_t j = i + 1; j < opt->n_urls; j++)
      if (strcmp(opt->urls[i], opt->urls[j]) == 0) {
        char *shown = cvg_url_redact(opt->urls[i]);
        cvg_error_set(err, CVG_EINVAL, shown ? shown : "", "the same replica is named twice");
        free(shown);
        cvg_error_hint(err, "name each replica once");
        return CVG_EINVAL;
      }

  cvg_diff *d = calloc(1, sizeof *d);
  if (d)
    for (size_t i = 0; i < CVG_DIFF_MAX_REPLICAS; i++)
      cvg_buf_init(&d->maxver[i], 1u << 20);
  cvg_table_desc desc[CVG_DIFF_MAX_REPLICAS];
  memset(desc, 0, sizeof desc);
  if (!d)
    return cvg_error_set(err, CVG_ENOMEM, "", "out of memory");
  int rc = CVG_OK;
  d->n = opt->n_urls;
  d->n_shards = opt->n_shards;
  d->stop_at_first = opt->stop_at_first;
  d->digests = opt->digests;
  d->rows_per_sec = opt->rows_per_sec;
  d->cancel = opt->cancel;
  for (size_t i = 0; i < d->n; i++) {
    d->urls[i] = strdup(opt->urls[i]);
    d->shown[i] = cvg_url_redact(opt->urls[i]);
    if (!d->shown[i] || !d->shown[i]) {
      rc = cvg_error_set(err, CVG_ENOMEM, "", "out of memory");
      goto fail;
    }
  }
  d->describe_only = opt->described != NULL; /* the caller's descriptions; no connection */
  for (size_t i = 0; i < d->n && !d->describe_only; i++) {
    if ((rc = cvg_store_open(&d->st[i], d->urls[i], CVG_STORE_READONLY, err)))
      goto fail;
    if ((rc = cvg_store_describe(d->st[i], &desc[i], err)))
      goto fail;
  }
  const cvg_table_desc *dd = d->describe_only ? opt->described : desc;
  if ((rc = settle_key(d, opt, dd, err)) || (rc = settle_columns(d, opt, dd, err)))
    goto fail;
  if ((rc = check_drift(d, dd, err)))
    goto fail;
  if (opt->where && !(d->where = strdup(opt->where))) {
    rc = cvg_error_set(err, CVG_ENOMEM, "", "out of memory");
    goto fail;
  }
  d->spec.key_cols = (const char *const *)d->key_cols;
  d->spec.n_key = d->n_key;
  d->spec.cmp_cols = (const char *const *)d->cmp_cols;
  d->spec.n_cmp = d->n_cmp;
  d->spec.version_col = d->version_col;
  d->spec.tombstone_col = d->tombstone_col;
  d->spec.real_digits = opt->real_digits;
  d->spec.time_digits = opt->time_digits;
  d->spec.vvec_col = d->vvec_col;
  d->spec.where = d->where;
  d->by_shard = calloc(d->n_shards, sizeof *d->by_shard);
  if (d->digests)
    d->digest = calloc((size_t)d->n * d->n_shards, sizeof *d->digest);
  if (!d->by_shard || (d->digests && !d->digest)) {
    rc = cvg_error_set(err, CVG_ENOMEM, "", "out of memory");
    goto fail;
  }
  for (size_t i = 0; i < d->n; i++)
    cvg_table_desc_release(&desc[i]);
  *out = d;
  return CVG_OK;

fail:
  for (size_t i = 0; i < CVG_DIFF_MAX_REPLICAS; i++)
    cvg_table_desc_release(&desc[i]);
  cvg_diff_free(d);
  return rc;
}

void cvg_diff_free(cvg_diff *d) {
  if (!d)
    return;
  for (size_t i = 0; i < CVG_DIFF_MAX_REPLICAS; i++) {
    cvg_store_close(d->st[i]);
    cvg_store_close(d->fetch_st[i]);
    free(d->urls[i]);
    free(d->shown[i]);
  }
  free_list(d->key_cols, d->n_key);
  free_list(d->cmp_cols, d->n_cmp);
  free(d->version_col);
  free(d->tombstone_col);
  free(d->vvec_col);
  free(d->where);
  free(d->by_shard);
  free(d->digest);
  for (size_t i = 0; i < CVG_DIFF_MAX_REPLICAS; i++)
    cvg_buf_release(&d->maxver[i]);
  free(d);
}

const char *const *cvg_diff_key_cols(const cvg_diff *d, size_t *n) {
  *n = d->n_key;
  return (const char *const *)d->key_cols;
}

const char *const *cvg_diff_cmp_cols(const cvg_diff *d, size_t *n) {
  *n = d->n_cmp;
  return (const char *const *)d->cmp_cols;
}

const char *cvg_diff_version_col(const cvg_diff *d) {
  return d->version_col;
}

const char *cvg_diff_tombstone_col(const cvg_diff *d) {
  return d->tombstone_col;
}

void cvg_diff_options_from_dataset(cvg_diff_options *o, const cvg_cat_dataset *d) {
  memset(o, 0, sizeof *o);
  o->key_cols = (const char *const *)d->key;
  o->n_key = d->n_key;
  o->columns = (const char *const *)d->columns;
  o->n_columns = d->n_columns;
  o->exclude = (const char *const *)d->exclude;
  o->n_exclude = d->n_exclude;
  o->version_col = d->version;
  o->tombstone_col = d->tombstone;
  o->n_shards = d->shards;
  o->real_digits = d->real_digits;
  o->time_digits = d->time_digits;
}

int cvg_diff_failed_replica(const cvg_diff *d) {
  return d ? d->failed : -1;
}

const char *cvg_diff_warnings(const cvg_diff *d) {
  return d->warnings;
}

int cvg_diff_fetch(cvg_diff *d, size_t replica, const unsigned char *key, size_t key_len,
                   cvg_buf *out, int *found, cvg_error *err) {
  *found = 0;
  if (replica >= d->n)
    return cvg_error_set(err, CVG_EINVAL, "", "no replica %zu", replica + 1);
  if (!d->fetch_st[replica]) {
    int rc = cvg_store_open(&d->fetch_st[replica], d->urls[replica], CVG_STORE_READONLY, err);
    if (rc)
      return rc;
  }
  return cvg_store_fetch(d->fetch_st[replica], &d->spec, key, key_len,
                         (const char *const *)d->cmp_cols, d->n_cmp, out, found, err);
}

/* ---- readers ---- */

static int batch_init(batch *b) {
  memset(b, 0, sizeof *b);
  b->key_off = malloc((BATCH_ROWS + 1) * sizeof *b->key_off);
  b->ver_off = malloc((BATCH_ROWS + 1) * sizeof *b->ver_off);
  b->vv_off = malloc((BATCH_ROWS + 1) * sizeof *b->vv_off);
  b->fp = malloc(BATCH_ROWS * sizeof *b->fp);
  b->tomb = malloc(BATCH_ROWS);
  cvg_buf_init(&b->keys, ARENA_MAX);
  cvg_buf_init(&b->vers, ARENA_MAX);
  cvg_buf_init(&b->vvs, ARENA_MAX);
  return b->key_off && b->ver_off && b->vv_off && b->fp && b->tomb ? CVG_OK : CVG_ENOMEM;
}

static void batch_release(batch *b) {
  free(b->key_off);
  free(b->ver_off);
  free(b->vv_off);
  free(b->fp);
  free(b->tomb);
  cvg_buf_release(&b->keys);
  cvg_buf_release(&b->vers);
  cvg_buf_release(&b->vvs);
}

static const unsigned char *bkey(const batch *b, size_t i, size_t *n) {
  *n = b->key_off[i + 1] - b->key_off[i];
  return b->keys.data + b->key_off[i];
}

/* Fills b from the scan. Returns CVG_OK (batch full), CVG_DONE (scan ended) or an error. */
static int fill_batch(reader *r, batch *b) {
  b->n = 0;
  cvg_buf_reset(&b->keys);
  cvg_buf_reset(&b->vers);
  cvg_buf_reset(&b->vvs);
  b->key_off[0] = b->ver_off[0] = b->vv_off[0] = 0;
  cvg_scan_row row;
  while (b->n < BATCH_ROWS && b->keys.len + b->vers.len + b->vvs.len < BATCH_BYTES) {
    int rc = cvg_scan_next(r->scan, &row, &r->err);
    if (rc)
      return rc;
    const unsigned char *prev;
    size_t prev_len;
    if (b->n)
      prev = bkey(b, b->n - 1, &prev_len);
    else {
      prev = r->prev.data;
      prev_len = r->prev.len;
    }
    if ((b->n || r->rows) && cvg_key_compare(prev, prev_len, row.key, row.key_len) >= 0) {
      int dup = cvg_key_compare(prev, prev_len, row.key, row.key_len) == 0;
      cvg_error_set(&r->err, dup ? CVG_EDUPKEY : CVG_EORDER, r->d->shown[r->idx],
                    dup ? "two rows have the same key: the key columns do not identify a row"
                        : "the replica returned keys out of canonical (byte) order");
      cvg_error_hint(&r->err, dup ? "name a unique key with --key"
                                  : "a key column probably mixes integer and real values; "
                                    "store one type in it");
      return r->err.status;
    }
    if (cvg_buf_append(&b->keys, row.key, row.key_len) ||
        (row.version_len && cvg_buf_append(&b->vers, row.version, row.version_len)) ||
        (row.vvec_len && cvg_buf_append(&b->vvs, row.vvec, row.vvec_len)))
      return cvg_error_set(&r->err, CVG_ENOMEM, r->d->shown[r->idx], "out of memory");
    b->fp[b->n] = row.fp;
    b->tomb[b->n] = (unsigned char)row.tombstone;
    b->n++;
    b->key_off[b->n] = b->keys.len;
    b->ver_off[b->n] = b->vers.len;
    b->vv_off[b->n] = b->vvs.len;
    r->rows++;
  }
  return CVG_OK;
}

/* Set by another thread at any time: read atomically. */
static int cancelled(const cvg_diff *d) {
  return d->cancel && __atomic_load_n(d->cancel, __ATOMIC_RELAXED);
}

/* Holds a reader to rows_per_sec: after each batch, sleeps until the rows read so far are due.
 * Sleeps in short steps so that a cancelled run stops promptly. */
static void throttle(reader *r) {
  double rate = r->d->rows_per_sec;
  if (rate <= 0)
    return;
  for (;;) {
    double due = r->started_at + (double)r->rows / rate, now = cvg_mono_now();
    pthread_mutex_lock(&r->mu);
    int cancel = r->cancel;
    pthread_mutex_unlock(&r->mu);
    if (now >= due || cancel || cancelled(r->d))
      return;
    double step = due - now < 0.1 ? due - now : 0.1;
    struct timespec ts = {(time_t)step, (long)((step - (double)(time_t)step) * 1e9)};
    nanosleep(&ts, NULL);
  }
}

static void *reader_main(void *arg) {
  reader *r = arg;
  int rc = CVG_OK;
  for (;;) {
    pthread_mutex_lock(&r->mu);
    while (r->head - r->tail == RING && !r->cancel)
      pthread_cond_wait(&r->cv, &r->mu);
    int cancel = r->cancel;
    batch *b = &r->ring[r->head % RING];
    pthread_mutex_unlock(&r->mu);
    if (cancel)
      break;
    rc = fill_batch(r, b);
    throttle(r);
    if (b->n) { /* remember the last key for the order check across batches */
      size_t n;
      const unsigned char *k = bkey(b, b->n - 1, &n);
      cvg_buf_reset(&r->prev);
      if (cvg_buf_append(&r->prev, k, n) && rc == CVG_OK)
        rc = cvg_error_set(&r->err, CVG_ENOMEM, r->d->shown[r->idx], "out of memory");
    }
    pthread_mutex_lock(&r->mu);
    if (rc == CVG_OK || rc == CVG_DONE)
      r->head++;
    if (rc != CVG_OK) {
      r->eof = 1;
      r->status = rc == CVG_DONE ? CVG_OK : rc;
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (rc != CVG_OK)
      break;
  }
  pthread_mutex_lock(&r->mu);
  r->eof = 1;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  return NULL;
}

/* Merger: make r->cur the next non-empty batch, or mark the stream done. */
static int next_batch(reader *r, cvg_error *err) {
  for (;;) {
    pthread_mutex_lock(&r->mu);
    if (r->cur) { /* hand the consumed batch back */
      r->tail++;
      r->cur = NULL;
      pthread_cond_broadcast(&r->cv);
    }
    while (r->head == r->tail && !r->eof)
      pthread_cond_wait(&r->cv, &r->mu);
    int status = r->status;
    if (r->head == r->tail) {
      pthread_mutex_unlock(&r->mu);
      r->done = 1;
      if (status) {
        if (err)
          *err = r->err;
        r->d->failed = (int)r->idx;
        return status;
      }
      return CVG_OK;
    }
    r->cur = &r->ring[r->tail % RING];
    r->pos = 0;
    pthread_mutex_unlock(&r->mu);
    if (r->cur->n)
      return CVG_OK;
  }
}

static void stop_readers(cvg_diff *d) {
  for (size_t i = 0; i < d->n; i++) {
    reader *r = &d->readers[i];
    if (!r->started)
      continue;
    pthread_mutex_lock(&r->mu);
    r->cancel = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
  }
  for (size_t i = 0; i < d->n; i++) {
    reader *r = &d->readers[i];
    if (r->started)
      pthread_join(r->thread, NULL);
    r->started = 0;
  }
}

static void free_readers(cvg_diff *d) {
  if (!d->readers)
    return;
  stop_readers(d);
  for (size_t i = 0; i < d->n; i++) {
    reader *r = &d->readers[i];
    cvg_scan_close(r->scan);
    for (int k = 0; k < RING; k++)
      batch_release(&r->ring[k]);
    cvg_buf_release(&r->prev);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
  }
  free(d->readers);
  d->readers = NULL;
}

static int merge(cvg_diff *d, cvg_diff_cb cb, void *ctx, cvg_diff_summary *sum, cvg_error *err) {
  int rc;
  cvg_copy copies[CVG_DIFF_MAX_REPLICAS];
  int use_version = d->version_col != NULL, use_vvec = d->vvec_col != NULL;
  for (size_t i = 0; i < d->n; i++)
    if ((rc = next_batch(&d->readers[i], err)))
      return rc;
  for (;;) {
    const unsigned char *min = NULL;
    size_t min_len = 0;
    for (size_t i = 0; i < d->n; i++) {
      reader *r = &d->readers[i];
      if (r->done)
        continue;
      size_t n;
      const unsigned char *k = bkey(r->cur, r->pos, &n);
      if (!min || cvg_key_compare(k, n, min, min_len) < 0) {
        min = k;
        min_len = n;
      }
    }
    if (!min)
      return CVG_OK;
    for (size_t i = 0; i < d->n; i++) {
      reader *r = &d->readers[i];
      cvg_copy *c = &copies[i];
      size_t n;
      const unsigned char *k;
      if (r->done || (k = bkey(r->cur, r->pos, &n), n != min_len || memcmp(k, min, n) != 0)) {
        memset(c, 0, sizeof *c);
        continue;
      }
      const batch *b = r->cur;
      size_t p = r->pos;
      c->state = b->tomb[p] ? CVG_TOMBSTONED : CVG_LIVE;
      c->fp = b->fp[p];
      c->version_len = b->ver_off[p + 1] - b->ver_off[p];
      c->version = c->version_len ? b->vers.data + b->ver_off[p] : NULL;
      if (c->version_len &&
          (d->maxver[i].len == 0 ||
           cvg_key_compare(c->version, c->version_len, d->maxver[i].data, d->maxver[i].len) > 0)) {
        cvg_buf_reset(&d->maxver[i]);
        if (cvg_buf_append(&d->maxver[i], c->version, c->version_len))
          return cvg_error_set(err, CVG_ENOMEM, d->shown[i], "out of memory");
      }
      c->vvec_len = b->vv_off[p + 1] - b->vv_off[p];
      c->vvec = c->vvec_len ? b->vvs.data + b->vv_off[p] : NULL;
      r->pos++;
    }
    sum->keys++;
    if (d->digests) {
      uint32_t shard = cvg_shard_of(min, min_len, d->n_shards);
      for (size_t i = 0; i < d->n; i++)
        if (copies[i].state == CVG_LIVE)
          cvg_digest_add(&d->digest[i * d->n_shards + shard],
                         cvg_digest_contribution(min, min_len, copies[i].fp, copies[i].version,
                                                 copies[i].version_len));
    }
    int cls = cvg_classify(copies, d->n, use_version, use_vvec, err);
    if (cls < 0) {
      if (err)
        snprintf(err->input, sizeof err->input, "%s", d->shown[0]);
      return -cls;
    }
    int stop = 0;
    if (cls != CVG_CLASS_NONE) {
      cvg_divergence dv = {min,  min_len, cvg_shard_of(min, min_len, d->n_shards), (cvg_class)cls,
                           d->n, copies};
      sum->divergent++;
      sum->by_class[cls]++;
      d->by_shard[dv.shard]++;
      if (cb)
        stop = cb(ctx, &dv);
      if (d->stop_at_first)
        stop = 1;
    }
    /* Only now may consumed batches go back: the copies pointed into them. */
    for (size_t i = 0; i < d->n; i++) {
      reader *r = &d->readers[i];
      if (!r->done && r->pos == r->cur->n && (rc = next_batch(r, err)))
        return rc;
    }
    if (cancelled(d))
      stop = 1;
    if (stop) {
      sum->stopped_early = 1;
      return CVG_OK;
    }
  }
}

int cvg_diff_run(cvg_diff *d, cvg_diff_cb cb, void *ctx, cvg_diff_summary *sum, cvg_error *err) {
  memset(sum, 0, sizeof *sum);
  if (d->describe_only)
    return cvg_error_set(err, CVG_EINVAL, "", "this diff was prepared to describe tables only");
  memset(d->by_shard, 0, d->n_shards * sizeof *d->by_shard);
  sum->by_shard = d->by_shard;
  sum->n_shards = d->n_shards;
  if (d->digests) {
    memset(d->digest, 0, d->n * d->n_shards * sizeof *d->digest);
    sum->digest = d->digest;
  }
  for (size_t i = 0; i < d->n; i++)
    cvg_buf_reset(&d->maxver[i]);
  int rc = CVG_OK;
  d->readers = calloc(d->n, sizeof *d->readers);
  if (!d->readers)
    return cvg_error_set(err, CVG_ENOMEM, "", "out of memory");
  for (size_t i = 0; i < d->n; i++) {
    reader *r = &d->readers[i];
    r->d = d;
    r->idx = i;
    r->started_at = cvg_mono_now();
    cvg_buf_init(&r->prev, ARENA_MAX);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    for (int k = 0; k < RING; k++)
      if (batch_init(&r->ring[k])) {
        rc = cvg_error_set(err, CVG_ENOMEM, "", "out of memory");
        goto done;
      }
  }
  /* Compile every scan before starting any thread, so a bad --where fails fast and cleanly. */
  for (size_t i = 0; i < d->n; i++)
    if ((rc = cvg_scan_open(d->st[i], &d->spec, &d->readers[i].scan, err))) {
      d->failed = (int)i;
      goto done;
    }
  for (size_t i = 0; i < d->n; i++) {
    reader *r = &d->readers[i];
    if (pthread_create(&r->thread, NULL, reader_main, r) != 0) {
      rc = cvg_error_set(err, CVG_ETHREAD, "", "cannot start a reader thread");
      goto done;
    }
    r->started = 1;
  }
  rc = merge(d, cb, ctx, sum, err);
done:
  if (d->readers) {
    stop_readers(d); /* joined: rows are final */
    for (size_t i = 0; i < d->n; i++) {
      sum->rows[i] = d->readers[i].rows;
      sum->max_version[i] = d->maxver[i].data;
      sum->max_version_len[i] = d->maxver[i].len;
    }
  }
  free_readers(d);
  return rc;
}
