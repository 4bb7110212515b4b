/* SPDX-License-Identifier: MIT */
/*
 * The watch's sweeps, each a job (sched.c): the full sweep and the incremental check. What
 * they find is detect's work (converge/check.h: lib/detect/check.c and sweep.c); here are the
 * jobs around it: opening and describing the replicas, schema drift, the locks, the replicas'
 * up state and watermarks, the invariants' aggregates, the logs and the sweep metrics.
 *
 * A dataset's sweep_mu keeps its full sweep and its incremental check from running together;
 * ds->mu is held only for memory work, never across a database call.
 */
#include "converge/check.h"
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
  pthread_mutex_lock(&fc->ds->mu);
  cvg_trk_check chk = cvgi_check_at(fc->ds, "full sweep", fc->now, fc->wait, 0, 1);
  cvg_sweep_record(fc->ds->trk, &chk, fc->idx, fc->k, dv);
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
  cvg_sweep_finish(ds->trk, idx, k, ds->n, ds->cfg->shards, &sum, completed, down);
  if (completed) {
    for (size_t i = 0; i < k; i++) {
      rep *r = &ds->reps[idx[i]];
      r->rows_read[KIND_FULL] += sum.rows[i];
      if (sum.max_version_len[i] && sum.max_version_len[i] <= sizeof r->wm &&
          (r->wm_len == 0 ||
           cvg_key_compare(sum.max_version[i], sum.max_version_len[i], r->wm, r->wm_len) > 0)) {
        memcpy(r->wm, sum.max_version[i], sum.max_version_len[i]);
        r->wm_len = sum.max_version_len[i];
      }
    }
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

/* Without an index on the version column, "version >= watermark" reads the whole table every
 * time: say so once per replica, loudly, since the check then costs O(table). */
static void warn_no_index(cvg_monitor *m, dset *ds, cvg_store **sts, const size_t *idx, size_t k) {
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
}

/* Each invariant aggregate, read on every replica checked (equal aggregates). */
static void read_aggregates(cvg_monitor *m, dset *ds, cvg_store **sts, const size_t *idx,
                            size_t k) {
  for (size_t a = 0; a < ds->cfg->inv.n_aggregates; a++) {
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
}

/* After a check that succeeded (ds->mu held): the replicas' rows read, their watermarks, and the
 * dataset's write rate (the most rows a replica yielded, per second since the last check). */
static void check_done(dset *ds, const cvg_check_replica *cr, size_t k, double now) {
  uint64_t most = 0;
  for (size_t x = 0; x < k; x++) {
    rep *r = &ds->reps[cr[x].index];
    r->rows_read[KIND_INCR] += cr[x].rows;
    most = cr[x].rows > most ? cr[x].rows : most;
    if (cr[x].new_wm_len && cr[x].new_wm_len <= sizeof r->wm &&
        (r->wm_len == 0 || cvg_key_compare(cr[x].new_wm, cr[x].new_wm_len, r->wm, r->wm_len) > 0)) {
      memcpy(r->wm, cr[x].new_wm, cr[x].new_wm_len);
      r->wm_len = cr[x].new_wm_len;
    }
  }
  if (ds->last_incr_wall > 0 && now > ds->last_incr_wall)
    ds->write_rate = (double)most / (now - ds->last_incr_wall);
  ds->last_incr_wall = now;
}

/* The incremental check (converge/check.h) in its four phases, ds->mu held for the two that
 * touch the tracker. */
static int run_check(cvg_monitor *m, dset *ds, cvg_store **sts, cvg_check *c, cvg_check_replica *cr,
                     size_t k, uint64_t *compared, cvg_error *err) {
  int failed = -1;
  int rc = cvg_check_read(c, cr, k, &failed, err);
  if (rc && failed >= 0 && rc != CVG_ENOMEM) {
    size_t i = cr[failed].index;
    pthread_mutex_lock(&ds->mu);
    cvgi_set_up(m, ds, &ds->reps[i], 0, err);
    pthread_mutex_unlock(&ds->mu);
    cvgi_drop_conn(&sts[i]);
  }
  if (!rc) {
    pthread_mutex_lock(&ds->mu);
    rc = cvg_check_gather(c, ds->trk, err);
    pthread_mutex_unlock(&ds->mu);
  }
  if (rc == CVG_ETOOBIG && failed < 0) { /* too many changed keys: not a replica's error */
    pthread_mutex_lock(&ds->mu);
    ds->full_requested = 1;
    pthread_mutex_unlock(&ds->mu);
  }
  if (!rc && (rc = cvg_check_lookup(c, &failed, err)) != CVG_OK && failed >= 0) {
    pthread_mutex_lock(&ds->mu);
    ds->sweep_culprit = (int)cr[failed].index;
    pthread_mutex_unlock(&ds->mu);
  }
  if (!rc) {
    double now = cvg_wall_now();
    pthread_mutex_lock(&ds->mu);
    cvg_trk_check chk = cvgi_check_at(ds, "incremental check", now, cvgi_confirm_wait(ds), 1, 0);
    *compared = cvg_check_record(c, ds->trk, &chk);
    check_done(ds, cr, k, now);
    pthread_mutex_unlock(&ds->mu);
  }
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
  warn_no_index(m, ds, sts, idx, k);
  cvg_check_replica cr[CVG_DIFF_MAX_REPLICAS];
  memset(cr, 0, sizeof cr);
  pthread_mutex_lock(&ds->mu);
  for (size_t x = 0; x < k; x++) {
    cr[x].st = sts[idx[x]];
    cr[x].index = idx[x];
    cr[x].wm_len = ds->reps[idx[x]].wm_len;
    memcpy(cr[x].wm, ds->reps[idx[x]].wm, cr[x].wm_len);
  }
  pthread_mutex_unlock(&ds->mu);
  cvg_check *c = NULL;
  rc = cvg_check_new(&c, &spec, ds->cfg->version != NULL, ds->n, ds->cfg->name, err);
  if (!rc)
    rc = run_check(m, ds, sts, c, cr, k, compared, err);
  if (!rc)
    read_aggregates(m, ds, sts, idx, k);
  cvg_check_free(c);
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
