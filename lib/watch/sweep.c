/* SPDX-License-Identifier: MIT */
/*
 * The watch's sweeps, each a job (sched.c): the full sweep through the diff engine, and the
 * incremental check; both record what they find in the dataset's tracker.
 *
 * Incremental check (with a version column): each replica's rows with version >= its watermark
 * (the greatest version seen so far) are read through an index on the version column, every
 * tracked key is added, and each of these keys is looked up on the replicas that did not yield
 * it; so a re-check after k changes costs O(k) lookups. The full sweep reads everything with
 * the diff engine (rate-limited, in its window), replaces the tracked set, the digests and the
 * watermarks, and catches what versions cannot show: hard deletes and silent corruption.
 *
 * A dataset's sweep_mu keeps its full sweep and its incremental check from running together;
 * ds->mu is held only for memory work, never across a database call.
 */
#include "converge/diff.h"
#include "converge/json.h"
#include "converge/mclock.h"
#include "converge/store.h"
#include "converge/tracker.h"
#include "monitor_int.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

/* ---- sweeps ---- */

/* The up replicas of ds, opening the job's connections as needed; returns how many. Each table
 * is described - a cheap query: is it still there? The reachable replicas go to idx[0..k), and
 * with descs their descriptions to descs[0..k) (the caller releases them). */
static size_t open_replicas(cvg_monitor *m, dset *ds, cvg_store **sts, size_t *idx, unsigned flags,
                            cvg_table_desc *descs) {
  size_t k = 0;
  for (size_t i = 0; i < ds->n; i++) {
    cvg_error err;
    cvg_error_clear(&err);
    cvg_table_desc desc;
    memset(&desc, 0, sizeof desc);
    int rc = cvgi_ensure_open(&sts[i], &ds->reps[i], CVG_STORE_READONLY | flags, &err);
    if (rc == CVG_OK)
      rc = cvg_store_describe(sts[i], &desc, &err);
    if (rc == CVG_OK && descs)
      descs[k] = desc;
    else
      cvg_table_desc_release(&desc);
    pthread_mutex_lock(&ds->mu);
    cvgi_set_up(m, ds, &ds->reps[i], rc == CVG_OK, &err);
    pthread_mutex_unlock(&ds->mu);
    if (rc)
      cvgi_drop_conn(&sts[i]);
    else
      idx[k++] = i;
  }
  return k;
}

/* Prepares a diff over the replicas idx[0..k) to settle columns and see schema drift; with
 * descs (the tables as open_replicas described them), for that only: the caller reads rows. */
static int prepare(cvg_monitor *m, dset *ds, const size_t *idx, size_t k, int digests,
                   const cvg_table_desc *descs, cvg_diff **out, cvg_error *err) {
  const cvg_cat_dataset *c = ds->cfg;
  const char *urls[CVG_DIFF_MAX_REPLICAS];
  for (size_t i = 0; i < k; i++)
    urls[i] = c->replicas[idx[i]].url;
  cvg_diff_options o;
  cvg_diff_options_from_dataset(&o, c);
  o.urls = urls;
  o.n_urls = k;
  o.digests = digests;
  o.rows_per_sec = c->probes.full_sweep_rate;
  o.cancel = &m->cancel;
  o.described = descs;
  int rc = cvg_diff_prepare(out, &o, err);
  const char *warn = rc == CVG_OK ? cvg_diff_warnings(*out) : "";
  pthread_mutex_lock(&ds->mu);
  int was = ds->schema_drift;
  if (rc == CVG_ESCHEMA) {
    ds->schema_drift = 1;
    snprintf(ds->schema_msg, sizeof ds->schema_msg, "%s", err->msg);
  } else if (rc == CVG_OK) {
    ds->schema_drift = warn[0] != '\0';
    snprintf(ds->schema_msg, sizeof ds->schema_msg, "%s", warn);
  }
  if (rc == CVG_OK || rc == CVG_ESCHEMA) {
    if (ds->schema_drift != was)
      cvg_log(m->lg, ds->schema_drift ? CVG_LOG_WARN : CVG_LOG_INFO,
              ds->schema_drift ? "schema_drift" : "schema_drift_resolved", "dataset", c->name,
              "detail", ds->schema_msg, (const char *)NULL);
  }
  pthread_mutex_unlock(&ds->mu);
  return rc;
}

/* The replica a failed sweep could not read (ds->mu held): the one the sweep named, else the one
 * the error's input names; NULL when the failure is nobody's (a cancel, memory, a schema
 * difference, fewer than two replicas up - those have their own states and alerts). */
static rep *sweep_culprit(dset *ds, int rc, const cvg_error *err) {
  int i = ds->sweep_culprit;
  ds->sweep_culprit = -1;
  if (rc == CVG_OK || rc == CVG_ESCHEMA || rc == CVG_ENOMEM || rc == CVG_EDOWN)
    return NULL;
  for (size_t k = 0; i < 0 && err && err->input[0] && k < ds->n; k++)
    if (strcmp(err->input, ds->reps[k].cfg->url_display) == 0)
      i = (int)k;
  return i >= 0 && (size_t)i < ds->n && ds->reps[i].up == 1 ? &ds->reps[i] : NULL;
}

void cvgi_sweep_done(cvg_monitor *m, dset *ds, int kind, int rc, double started,
                     const cvg_error *err) {
  if (rc && __atomic_load_n(&m->cancel, __ATOMIC_RELAXED))
    return; /* stopped on purpose (shutdown, reload): not a failure */
  double dur = cvg_mono_now() - started;
  pthread_mutex_lock(&ds->mu);
  cvgi_hist_add(&ds->sweep_dur[kind], cvgi_sweep_le, SWEEP_BUCKETS, dur);
  if (rc == CVG_OK)
    ds->sweeps_ok[kind]++;
  else
    ds->sweeps_err[kind]++;
  rep *who = sweep_culprit(ds, rc, err);
  for (size_t i = 0; i < ds->n; i++) /* a sweep that read the replica, or failed elsewhere */
    if (rc == CVG_OK && ds->reps[i].up == 1)
      ds->reps[i].sweep_streak[kind] = 0;
  uint32_t streak = 0;
  if (who) {
    who->read_errors++;
    streak = ++who->sweep_streak[kind];
    snprintf(who->sweep_error, sizeof who->sweep_error, "%s sweep failed: %s",
             cvgi_kind_names[kind], err ? err->msg : "");
  }
  pthread_mutex_unlock(&ds->mu);
  if (rc && rc != CVG_ESCHEMA) {
    char n[16];
    snprintf(n, sizeof n, "%u", streak);
    cvg_log(m->lg, CVG_LOG_WARN, "sweep_failed", "dataset", ds->cfg->name, "kind",
            cvgi_kind_names[kind], "replica", who ? who->cfg->name : "", "consecutive", n, "error",
            err ? err->msg : "", "input", err ? err->input : "", (const char *)NULL);
  }
}

typedef struct full_ctx {
  dset *ds;
  const size_t *idx; /* replica of each diff input */
  size_t k;
  double now, wait;
} full_ctx;

static int full_cb(void *vctx, const cvg_divergence *dv) {
  full_ctx *fc = vctx;
  cvg_keystate ks;
  memset(&ks, 0, sizeof ks);
  for (size_t i = 0; i < fc->k; i++) {
    ks.copies[fc->idx[i]] = dv->copies[i];
    ks.known[fc->idx[i]] = 1;
  }
  pthread_mutex_lock(&fc->ds->mu);
  cvg_trk_check chk = cvgi_check_at(fc->ds, "full sweep", fc->now, fc->wait, 0, 1);
  cvg_tracker_record(fc->ds->trk, &chk, dv->key, dv->key_len, dv->cls, &ks);
  pthread_mutex_unlock(&fc->ds->mu);
  return 0;
}

int cvgi_in_window(const cvg_cat_probes *p) {
  if (p->window_start < 0)
    return 1;
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  int min = tm.tm_hour * 60 + tm.tm_min;
  if (p->window_start < p->window_end)
    return min >= p->window_start && min < p->window_end;
  return min >= p->window_start || min < p->window_end;
}

int cvgi_full_sweep(cvg_monitor *m, dset *ds, cvg_store **sts, cvg_error *err) {
  size_t idx[CVG_DIFF_MAX_REPLICAS];
  size_t k = open_replicas(m, ds, sts, idx, 0, NULL);
  if (k < 2)
    return cvg_error_set(err, CVG_EDOWN, ds->cfg->name,
                         "fewer than two replicas reachable; nothing to compare");
  cvg_diff *d = NULL;
  int rc = prepare(m, ds, idx, k, 1, NULL, &d, err);
  if (rc)
    return rc;
  pthread_mutex_lock(&ds->mu);
  full_ctx fc = {ds, idx, k, cvg_wall_now(), cvgi_confirm_wait(ds)};
  pthread_mutex_unlock(&ds->mu);
  cvg_diff_summary sum;
  rc = cvg_diff_run(d, full_cb, &fc, &sum, err);
  pthread_mutex_lock(&ds->mu);
  int failed = rc ? cvg_diff_failed_replica(d) : -1;
  ds->sweep_culprit = failed >= 0 ? (int)idx[failed] : -1;
  int completed = rc == CVG_OK && !sum.stopped_early;
  unsigned char down[CVG_DIFF_MAX_REPLICAS];
  for (size_t r = 0; r < ds->n; r++)
    down[r] = ds->reps[r].up == 0;
  /* Keys tracked but not found divergent by a completed sweep agree now (on the replicas read). */
  cvg_tracker_sweep_end(ds->trk, completed, down);
  if (completed) {
    unsigned char in[CVG_DIFF_MAX_REPLICAS] = {0};
    for (size_t i = 0; i < k; i++) {
      rep *r = &ds->reps[idx[i]];
      in[idx[i]] = 1;
      cvg_tracker_set_digest(ds->trk, idx[i], sum.digest + i * ds->cfg->shards);
      r->rows_read[KIND_FULL] += sum.rows[i];
      if (sum.max_version_len[i] && sum.max_version_len[i] <= sizeof r->wm &&
          (r->wm_len == 0 ||
           cvg_key_compare(sum.max_version[i], sum.max_version_len[i], r->wm, r->wm_len) > 0)) {
        memcpy(r->wm, sum.max_version[i], sum.max_version_len[i]);
        r->wm_len = sum.max_version_len[i];
      }
    }
    for (size_t r = 0; r < ds->n; r++)
      if (!in[r])
        cvg_tracker_set_digest(ds->trk, r, NULL);
    ds->keys_total = sum.keys;
    ds->have_full = 1;
    ds->full_requested = 0;
    ds->last_full_wall = cvg_wall_now();
    if (!ds->first_full_wall)
      ds->first_full_wall = ds->last_full_wall;
  } else if (rc == CVG_OK) {
    rc = cvg_error_set(err, CVG_EINVAL, ds->cfg->name, "full sweep cancelled");
  }
  pthread_mutex_unlock(&ds->mu);
  cvg_diff_free(d);
  return rc;
}

/* A bump allocator for the keys and versions of one check: chunks never move, so pointers into
 * them stay valid, and everything is freed at once. */
typedef struct chunk {
  struct chunk *next;
  size_t used, cap;
  unsigned char data[];
} chunk;

static void *arena_alloc(chunk **head, size_t n) {
  if (!*head || (*head)->cap - (*head)->used < n) {
    size_t cap = n > 65536 ? n : 65536;
    chunk *c = malloc(sizeof *c + cap);
    if (!c)
      return NULL;
    c->next = *head;
    c->used = 0;
    c->cap = cap;
    *head = c;
  }
  void *p = (*head)->data + (*head)->used;
  (*head)->used += n;
  return p;
}

static void arena_free(chunk **head) {
  while (*head) {
    chunk *next = (*head)->next;
    free(*head);
    *head = next;
  }
}

/* Keys an incremental check compares, with what each replica said of them. */
typedef struct change {
  const unsigned char *key; /* in the arena */
  size_t key_len;
  uint64_t hash;
  uint32_t have; /* bit i: replica i's copy is known (scanned or looked up) */
} change;

typedef struct changeset {
  change *items;
  cvg_copy *copies; /* n_rep per item: item k's copy on replica i is copies[k * n_rep + i] */
  size_t n_rep;
  size_t n, cap;
  size_t *slots; /* open addressing: index+1 into items, 0 empty */
  size_t slot_cap;
  chunk *arena; /* keys and versions */
} changeset;

static void cs_free(changeset *cs) {
  free(cs->items);
  free(cs->copies);
  free(cs->slots);
  arena_free(&cs->arena);
  memset(cs, 0, sizeof *cs);
}

static cvg_copy *cs_copy(changeset *cs, size_t k, size_t i) {
  return &cs->copies[k * cs->n_rep + i];
}

/* Makes room for n more keys without growing while they are added. */
static int cs_reserve(changeset *cs, size_t n) {
  size_t want = cs->n + n;
  if (want > cs->cap) {
    size_t cap = cs->cap ? cs->cap * 2 : 1024;
    if (cap < want)
      cap = want;
    change *items = realloc(cs->items, cap * sizeof *items);
    if (!items)
      return CVG_ENOMEM;
    cs->items = items;
    cvg_copy *copies = realloc(cs->copies, cap * cs->n_rep * sizeof *copies);
    if (!copies)
      return CVG_ENOMEM;
    cs->copies = copies;
    cs->cap = cap;
  }
  size_t slots = cs->slot_cap ? cs->slot_cap : 4096;
  while (slots < 2 * (want + 1))
    slots *= 2;
  if (slots > cs->slot_cap) {
    size_t *s = calloc(slots, sizeof *s);
    if (!s)
      return CVG_ENOMEM;
    for (size_t i = 0; i < cs->n; i++) {
      size_t k = (size_t)cs->items[i].hash & (slots - 1);
      while (s[k])
        k = (k + 1) & (slots - 1);
      s[k] = i + 1;
    }
    free(cs->slots);
    cs->slots = s;
    cs->slot_cap = slots;
  }
  return CVG_OK;
}

/* The index of key in the set, added if new; SIZE_MAX when out of memory. */
static size_t cs_get(changeset *cs, const unsigned char *key, size_t key_len) {
  uint64_t h = XXH3_64bits(key, key_len);
  if (cs_reserve(cs, 1) != CVG_OK) /* room for one more key: a no-op unless full */
    return SIZE_MAX;
  size_t s = (size_t)h & (cs->slot_cap - 1);
  for (; cs->slots[s]; s = (s + 1) & (cs->slot_cap - 1)) {
    change *c = &cs->items[cs->slots[s] - 1];
    if (c->hash == h && c->key_len == key_len && memcmp(c->key, key, key_len) == 0)
      return cs->slots[s] - 1;
  }
  change *c = &cs->items[cs->n];
  unsigned char *k = arena_alloc(&cs->arena, key_len ? key_len : 1);
  if (!k)
    return SIZE_MAX;
  memcpy(k, key, key_len);
  c->key = k;
  c->key_len = key_len;
  c->hash = h;
  c->have = 0;
  memset(cs_copy(cs, cs->n, 0), 0, cs->n_rep * sizeof(cvg_copy));
  cs->slots[s] = ++cs->n;
  return cs->n - 1;
}

/* Keeps replica i's copy of item k: the row, or absent when !found. */
static int cs_set(changeset *cs, size_t k, size_t i, const cvg_scan_row *row, int found) {
  cvg_copy *cp = cs_copy(cs, k, i);
  memset(cp, 0, sizeof *cp);
  cs->items[k].have |= 1u << i;
  if (!found)
    return CVG_OK;
  cp->state = row->tombstone ? CVG_TOMBSTONED : CVG_LIVE;
  cp->fp = row->fp;
  cp->version_len = row->version_len;
  if (row->version_len) {
    unsigned char *v = arena_alloc(&cs->arena, row->version_len);
    if (!v)
      return CVG_ENOMEM;
    memcpy(v, row->version, row->version_len);
    cp->version = v;
  }
  return CVG_OK;
}

/* One replica's incremental read, run on its own thread (its connection is used by no one
 * else meanwhile). Rows are packed into an arena: since_rec, key bytes, version bytes. */
typedef struct since_rec {
  cvg_fp fp;
  uint32_t key_len, ver_len;
  int tomb;
} since_rec;

typedef struct since_read {
  cvg_store *st;         /* BORROWED: the job's connection to the replica */
  cvg_scan_spec spec;    /* with since = wm */
  unsigned char wm[256]; /* the watermark read from */
  size_t wm_len;
  unsigned char new_wm[256]; /* the greatest version read */
  size_t new_wm_len;
  cvg_buf rows; /* the arena */
  uint64_t n_rows;
  const unsigned char **recs; /* OWNED; the n_rows records in the arena, in key order */
  int sorted;                 /* recs is set: ascending keys, no key twice */
  int rc;                     /* status of the read */
  cvg_error err;              /* its detail */
  int active;                 /* the replica was read */
  int started;                /* a thread was started */
  pthread_t thread;
} since_read;

static int rec_cmp(const void *a, const void *b) {
  const unsigned char *x = *(const unsigned char *const *)a, *y = *(const unsigned char *const *)b;
  since_rec hx, hy;
  memcpy(&hx, x, sizeof hx);
  memcpy(&hy, y, sizeof hy);
  return cvg_key_compare(x + sizeof hx, hx.key_len, y + sizeof hy, hy.key_len);
}

/* Points sr->recs at the records read, in key order (the fast path yields them so; any other
 * order is sorted here, on the reader's thread). A key read twice leaves sr->sorted 0: the
 * caller then folds by hashing instead of merging. */
static void since_index(since_read *sr) {
  size_t n = (size_t)sr->n_rows;
  if (!n) {
    sr->sorted = 1; /* nothing read: nothing out of order */
    return;
  }
  if (!(sr->recs = malloc(n * sizeof *sr->recs)))
    return;
  const unsigned char *p = sr->rows.data;
  int in_order = 1;
  for (size_t i = 0; i < n; i++) {
    since_rec h;
    memcpy(&h, p, sizeof h);
    sr->recs[i] = p;
    if (i && in_order && rec_cmp(&sr->recs[i - 1], &sr->recs[i]) >= 0)
      in_order = 0;
    p += sizeof h + h.key_len + h.ver_len;
  }
  if (!in_order) {
    qsort(sr->recs, n, sizeof *sr->recs, rec_cmp);
    for (size_t i = 1; i < n; i++)
      if (rec_cmp(&sr->recs[i - 1], &sr->recs[i]) == 0)
        return; /* a key twice: not sorted */
  }
  sr->sorted = 1;
}

static void *since_main(void *arg) {
  since_read *sr = arg;
  cvg_scan *sc = NULL;
  int rc = cvg_scan_open(sr->st, &sr->spec, &sc, &sr->err);
  cvg_scan_row row;
  while (!rc && (rc = cvg_scan_next(sc, &row, &sr->err)) == CVG_OK) {
    since_rec h = {row.fp, (uint32_t)row.key_len, (uint32_t)row.version_len, row.tombstone};
    if (sr->n_rows >= MAX_CHANGED) /* the caller stops there too */
      break;
    if (cvg_buf_append(&sr->rows, &h, sizeof h) ||
        cvg_buf_append(&sr->rows, row.key, row.key_len) ||
        (row.version_len && cvg_buf_append(&sr->rows, row.version, row.version_len))) {
      rc = cvg_error_set(&sr->err, CVG_ENOMEM, cvg_store_url(sr->st), "out of memory");
      break;
    }
    sr->n_rows++;
    if (row.version_len && row.version_len <= sizeof sr->new_wm &&
        cvg_key_compare(row.version, row.version_len, sr->new_wm, sr->new_wm_len) > 0) {
      memcpy(sr->new_wm, row.version, row.version_len);
      sr->new_wm_len = row.version_len;
    }
  }
  if (rc == CVG_DONE)
    rc = CVG_OK;
  cvg_scan_close(sc);
  if (!rc && sr->n_rows < MAX_CHANGED)
    since_index(sr);
  sr->rc = rc;
  return NULL;
}

/* Merges the k sorted reads (reads[x] of replica idx[x]) key by key: a key that every replica
 * yielded with the same copy (cvg_classify: none) and that is not tracked is only counted in
 * *agreed; every other key goes into the change set with the copies read. */
static int merge_reads(dset *ds, since_read *reads, const size_t *idx, size_t k, changeset *cs,
                       uint64_t *agreed, cvg_error *err) {
  size_t pos[CVG_DIFF_MAX_REPLICAS] = {0};
  int rc = CVG_OK;
  pthread_mutex_lock(&ds->mu); /* cvg_tracker_find reads the tracked keys */
  while (!rc) {
    since_rec h[CVG_DIFF_MAX_REPLICAS];
    const unsigned char *key[CVG_DIFF_MAX_REPLICAS];
    const unsigned char *mk = NULL;
    size_t mlen = 0;
    for (size_t x = 0; x < k; x++) {
      key[x] = NULL;
      if (pos[x] == reads[x].n_rows)
        continue;
      memcpy(&h[x], reads[x].recs[pos[x]], sizeof h[x]);
      key[x] = reads[x].recs[pos[x]] + sizeof h[x];
      if (!mk || cvg_key_compare(key[x], h[x].key_len, mk, mlen) < 0) {
        mk = key[x];
        mlen = h[x].key_len;
      }
    }
    if (!mk)
      break;
    /* The bulk: every replica holds the same copy (state, fingerprint, version), which
     * cvg_classify would call agreement; only then is the key looked for among the tracked. */
    size_t have = 0;
    int same = 1;
    for (size_t x = 0; x < k; x++) {
      if (!key[x] || h[x].key_len != mlen || memcmp(key[x], mk, mlen) != 0) {
        key[x] = NULL; /* not at this key */
        same = 0;
        continue;
      }
      have++;
      if (x && same)
        same = h[x].tomb == h[0].tomb && cvg_fp_equal(h[x].fp, h[0].fp) &&
               h[x].ver_len == h[0].ver_len &&
               memcmp(key[x] + mlen, key[0] + mlen, h[x].ver_len) == 0;
    }
    if (have == k && same && !cvg_tracker_find(ds->trk, mk, mlen)) {
      (*agreed)++;
    } else if (cs->n >= MAX_CHANGED) {
      ds->full_requested = 1;
      rc = cvg_error_set(err, CVG_ETOOBIG, ds->cfg->name,
                         "more than %u rows changed since the last check; a full sweep follows",
                         MAX_CHANGED);
    } else {
      size_t c = cs_get(cs, mk, mlen);
      for (size_t x = 0; c != SIZE_MAX && x < k && !rc; x++) {
        if (!key[x])
          continue;
        cvg_scan_row row;
        memset(&row, 0, sizeof row);
        row.key = key[x];
        row.key_len = h[x].key_len;
        row.version = key[x] + h[x].key_len;
        row.version_len = h[x].ver_len;
        row.fp = h[x].fp;
        row.tombstone = h[x].tomb;
        if (cs_set(cs, c, idx[x], &row, 1))
          c = SIZE_MAX;
      }
      if (c == SIZE_MAX)
        rc = cvg_error_set(err, CVG_ENOMEM, ds->cfg->name, "out of memory");
    }
    for (size_t x = 0; x < k; x++)
      if (key[x])
        pos[x]++;
  }
  pthread_mutex_unlock(&ds->mu);
  return rc;
}

int cvgi_incremental(cvg_monitor *m, dset *ds, cvg_store **sts, uint64_t *compared,
                     cvg_error *err) {
  size_t idx[CVG_DIFF_MAX_REPLICAS];
  *compared = 0;
  cvg_table_desc descs[CVG_DIFF_MAX_REPLICAS];
  size_t k = open_replicas(m, ds, sts, idx, ds->cfg->probes.keep_mapped ? CVG_STORE_KEEP_MAPPED : 0,
                           descs);
  cvg_diff *d = NULL;
  int rc = k < 2 ? cvg_error_set(err, CVG_EDOWN, ds->cfg->name,
                                 "fewer than two replicas reachable; nothing to compare")
                 : prepare(m, ds, idx, k, 0, descs, &d, err); /* no new connection */
  for (size_t x = 0; x < k; x++)
    cvg_table_desc_release(&descs[x]);
  if (rc)
    return rc;
  size_t n_key, n_cmp;
  cvg_scan_spec spec;
  memset(&spec, 0, sizeof spec);
  spec.key_cols = cvg_diff_key_cols(d, &n_key);
  spec.n_key = n_key;
  spec.cmp_cols = cvg_diff_cmp_cols(d, &n_cmp);
  spec.n_cmp = n_cmp;
  spec.version_col = cvg_diff_version_col(d); /* as the tables spell them */
  spec.tombstone_col = cvg_diff_tombstone_col(d);
  spec.real_digits = ds->cfg->real_digits;
  spec.time_digits = ds->cfg->time_digits;
  changeset cs;
  memset(&cs, 0, sizeof cs);
  cs.n_rep = ds->n;
  unsigned char new_wm[CVG_DIFF_MAX_REPLICAS][256];
  size_t new_wm_len[CVG_DIFF_MAX_REPLICAS] = {0};
  uint64_t rows[CVG_DIFF_MAX_REPLICAS] = {0};

  /* Without an index on the version column, "version >= watermark" reads the whole table every
   * time: say so once per replica, loudly, since the check then costs O(table). */
  for (size_t x = 0; ds->cfg->version && x < k; x++) {
    rep *r = &ds->reps[idx[x]];
    int yes = 1;
    if (r->index_checked || cvg_store_has_index(sts[idx[x]], ds->cfg->version, &yes, NULL))
      continue;
    r->index_checked = 1;
    if (!yes)
      cvg_log(m->lg, CVG_LOG_WARN, "no_version_index", "dataset", ds->cfg->name, "replica",
              r->cfg->name, "column", ds->cfg->version, "hint",
              "incremental checks read the whole table without an index whose first column is "
              "the version column; create one",
              (const char *)NULL);
  }
  /* 1. rows past each replica's watermark, every replica read by its own thread */
  since_read reads[CVG_DIFF_MAX_REPLICAS];
  memset(reads, 0, sizeof reads);
  for (size_t x = 0; ds->cfg->version && x < k; x++) {
    size_t i = idx[x];
    since_read *sr = &reads[x];
    sr->st = sts[i];
    sr->spec = spec;
    cvg_buf_init(&sr->rows, (size_t)1 << 31);
    cvg_error_clear(&sr->err);
    pthread_mutex_lock(&ds->mu);
    sr->wm_len = ds->reps[i].wm_len;
    memcpy(sr->wm, ds->reps[i].wm, sr->wm_len);
    pthread_mutex_unlock(&ds->mu);
    if (!sr->wm_len)
      continue; /* no watermark until a full sweep has read this replica */
    memcpy(sr->new_wm, sr->wm, sr->wm_len);
    sr->new_wm_len = sr->wm_len;
    sr->spec.since = sr->wm;
    sr->spec.since_len = sr->wm_len;
    sr->active = 1;
    sr->started = k > 1 && pthread_create(&sr->thread, NULL, since_main, sr) == 0;
    if (!sr->started)
      since_main(sr);
  }
  int merge = ds->cfg->version != NULL && k >= 2;
  for (size_t x = 0; ds->cfg->version && x < k; x++) {
    if (reads[x].started)
      pthread_join(reads[x].thread, NULL);
    merge = merge && reads[x].active && !reads[x].rc && reads[x].sorted;
  }
  /* Every replica read its rows in key order: merge them. Keys whose copies agree everywhere
   * and that are not tracked need no change-set entry (the bulk of a check: rows that
   * replicated), so only the others are hashed into it. Otherwise, fold every row by hashing. */
  uint64_t agreed = 0;
  if (merge && (rc = merge_reads(ds, reads, idx, k, &cs, &agreed, err)) == CVG_OK) {
    for (size_t x = 0; x < k; x++) {
      rows[idx[x]] = reads[x].n_rows;
      memcpy(new_wm[idx[x]], reads[x].new_wm, reads[x].new_wm_len);
      new_wm_len[idx[x]] = reads[x].new_wm_len;
    }
  }
  for (size_t x = 0; !merge && ds->cfg->version && x < k; x++) {
    since_read *sr = &reads[x];
    size_t i = idx[x];
    if (x == 0 && !rc && cs_reserve(&cs, (size_t)(sr->n_rows < MAX_CHANGED ? sr->n_rows : 0)))
      rc = cvg_error_set(err, CVG_ENOMEM, ds->cfg->name, "out of memory");
    if (!sr->active)
      continue;
    rows[i] = sr->n_rows;
    memcpy(new_wm[i], sr->new_wm, sr->new_wm_len);
    new_wm_len[i] = sr->new_wm_len;
    if (!rc && sr->rc) {
      rc = sr->rc;
      if (err)
        *err = sr->err;
      if (rc != CVG_ENOMEM) {
        pthread_mutex_lock(&ds->mu);
        cvgi_set_up(m, ds, &ds->reps[i], 0, &sr->err);
        pthread_mutex_unlock(&ds->mu);
        cvgi_drop_conn(&sts[i]);
      }
    }
    /* fold the rows into the change set */
    const unsigned char *p = sr->rows.data, *e = p ? p + sr->rows.len : p; /* none read: NULL */
    while (!rc && p < e) {
      since_rec h;
      memcpy(&h, p, sizeof h);
      p += sizeof h;
      if (cs.n >= MAX_CHANGED) {
        pthread_mutex_lock(&ds->mu);
        ds->full_requested = 1;
        pthread_mutex_unlock(&ds->mu);
        rc = cvg_error_set(err, CVG_ETOOBIG, ds->cfg->name,
                           "more than %u rows changed since the last check; a full sweep "
                           "follows",
                           MAX_CHANGED);
        break;
      }
      cvg_scan_row row;
      memset(&row, 0, sizeof row);
      row.key = p;
      row.key_len = h.key_len;
      row.version = p + h.key_len;
      row.version_len = h.ver_len;
      row.fp = h.fp;
      row.tombstone = h.tomb;
      p += h.key_len + h.ver_len;
      size_t c = cs_get(&cs, row.key, row.key_len);
      if (c == SIZE_MAX || cs_set(&cs, c, i, &row, 1))
        rc = cvg_error_set(err, CVG_ENOMEM, ds->cfg->name, "out of memory");
    }
  }
  for (size_t x = 0; x < k; x++) {
    cvg_buf_release(&reads[x].rows);
    free(reads[x].recs);
  }
  /* 2. every tracked key is re-checked */
  if (!rc) {
    pthread_mutex_lock(&ds->mu);
    size_t cur = 0;
    for (const cvg_tracked *t; !rc && (t = cvg_tracker_next(ds->trk, &cur));)
      if (cs_get(&cs, t->key, t->key_len) == SIZE_MAX)
        rc = cvg_error_set(err, CVG_ENOMEM, ds->cfg->name, "out of memory");
    pthread_mutex_unlock(&ds->mu);
  }
  /* 3. look each key up where the scans did not yield it: a replica at a time, in one read
   * transaction (one snapshot, and one lock instead of one per key) */
  for (size_t x = 0; !rc && x < k; x++) {
    size_t i = idx[x];
    int txn = 0;
    for (size_t c = 0; !rc && c < cs.n; c++) {
      if (cs.items[c].have & (1u << i))
        continue;
      if (!txn)
        txn = cvg_store_read_txn(sts[i], 1, NULL) == CVG_OK ? 1 : -1; /* -1: key by key */
      cvg_scan_row row;
      int found = 0;
      rc = cvg_store_lookup(sts[i], &spec, cs.items[c].key, cs.items[c].key_len, &row, &found, err);
      if (rc && rc != CVG_ENOMEM) {
        pthread_mutex_lock(&ds->mu);
        ds->sweep_culprit = (int)i;
        pthread_mutex_unlock(&ds->mu);
      }
      if (!rc && cs_set(&cs, c, i, &row, found))
        rc = cvg_error_set(err, CVG_ENOMEM, ds->cfg->name, "out of memory");
    }
    if (txn == 1)
      cvg_store_read_txn(sts[i], 0, NULL);
  }
  /* 4. classify and record */
  if (!rc) {
    double now = cvg_wall_now();
    pthread_mutex_lock(&ds->mu);
    cvg_trk_check chk = cvgi_check_at(ds, "incremental check", now, cvgi_confirm_wait(ds), 1, 0);
    for (size_t c = 0; c < cs.n; c++) {
      cvg_copy sub[CVG_DIFF_MAX_REPLICAS];
      for (size_t x = 0; x < k; x++)
        sub[x] = *cs_copy(&cs, c, idx[x]);
      int cls = cvg_classify(sub, k, ds->cfg->version != NULL, 0, NULL);
      if (cls < 0)
        continue;
      if (cls == CVG_CLASS_NONE && !cvg_tracker_find(ds->trk, cs.items[c].key, cs.items[c].key_len))
        continue; /* agrees and was not tracked: nothing to record (see "Shard digests") */
      cvg_keystate ks;
      memset(&ks, 0, sizeof ks);
      for (size_t x = 0; x < k; x++) {
        ks.copies[idx[x]] = sub[x];
        ks.known[idx[x]] = 1;
      }
      cvg_tracker_record(ds->trk, &chk, cs.items[c].key, cs.items[c].key_len, (cvg_class)cls, &ks);
    }
    for (size_t x = 0; x < k; x++) {
      rep *r = &ds->reps[idx[x]];
      r->rows_read[KIND_INCR] += rows[idx[x]];
      if (new_wm_len[idx[x]] &&
          (r->wm_len == 0 ||
           cvg_key_compare(new_wm[idx[x]], new_wm_len[idx[x]], r->wm, r->wm_len) > 0)) {
        memcpy(r->wm, new_wm[idx[x]], new_wm_len[idx[x]]);
        r->wm_len = new_wm_len[idx[x]];
      }
    }
    if (ds->last_incr_wall > 0 && now > ds->last_incr_wall) {
      uint64_t most = 0;
      for (size_t x = 0; x < k; x++)
        most = rows[idx[x]] > most ? rows[idx[x]] : most;
      ds->write_rate = (double)most / (now - ds->last_incr_wall);
    }
    ds->last_incr_wall = now;
    pthread_mutex_unlock(&ds->mu);
    *compared = cs.n + agreed;
  }
  /* 5. equal aggregates */
  for (size_t a = 0; !rc && a < ds->cfg->inv.n_aggregates; a++) {
    for (size_t x = 0; x < k; x++) {
      double v = 0;
      int is_null = 0;
      cvg_error aerr;
      cvg_error_clear(&aerr);
      int arc = cvg_store_scalar(sts[idx[x]], ds->cfg->inv.aggregates[a].expr, &v, &is_null, &aerr);
      pthread_mutex_lock(&ds->mu);
      ds->reps[idx[x]].agg[a] = is_null ? 0 : v;
      ds->reps[idx[x]].agg_ok[a] = arc == CVG_OK;
      pthread_mutex_unlock(&ds->mu);
      if (arc)
        cvg_log(m->lg, CVG_LOG_WARN, "aggregate_failed", "dataset", ds->cfg->name, "replica",
                ds->reps[idx[x]].cfg->name, "error", aerr.msg, (const char *)NULL);
    }
  }
  cs_free(&cs);
  cvg_diff_free(d);
  return rc;
}

void cvgi_job_full(cvg_monitor *m, job *j) {
  dset *ds = j->ds;
  if (!cvgi_in_window(&ds->cfg->probes)) {
    j->interval = 60; /* look again in a minute */
    return;
  }
  j->interval = ds->cfg->probes.full_sweep_interval;
  pthread_mutex_lock(&ds->sweep_mu);
  double t0 = cvg_mono_now();
  cvg_error err;
  cvg_error_clear(&err);
  int rc = cvgi_full_sweep(m, ds, j->sts, &err);
  cvgi_sweep_done(m, ds, KIND_FULL, rc, t0, &err);
  pthread_mutex_unlock(&ds->sweep_mu);
  if (rc == CVG_OK) {
    char n[32], dur[32];
    pthread_mutex_lock(&ds->mu);
    snprintf(n, sizeof n, "%zu", cvg_tracker_count(ds->trk));
    pthread_mutex_unlock(&ds->mu);
    snprintf(dur, sizeof dur, "%.3f", cvg_mono_now() - t0);
    cvg_log(m->lg, CVG_LOG_INFO, "full_sweep", "dataset", ds->cfg->name, "tracked", n,
            "duration_seconds", dur, (const char *)NULL);
  }
  if (rc == CVG_OK)
    cvgi_origin_cause(ds, j->sts);
  /* The job's connections are not kept between full sweeps: they are hours apart. */
  for (size_t i = 0; i < ds->n; i++)
    cvgi_drop_conn(&j->sts[i]);
}

void cvgi_job_incr(cvg_monitor *m, job *j) {
  dset *ds = j->ds;
  if (pthread_mutex_trylock(&ds->sweep_mu) != 0)
    return; /* a full sweep is running: it will do better */
  double t0 = cvg_mono_now();
  cvg_error err;
  cvg_error_clear(&err);
  uint64_t n = 0;
  int rc = cvgi_incremental(m, ds, j->sts, &n, &err);
  cvgi_sweep_done(m, ds, KIND_INCR, rc, t0, &err);
  pthread_mutex_unlock(&ds->sweep_mu);
  if (rc == CVG_OK)
    cvgi_origin_cause(ds, j->sts);
}
