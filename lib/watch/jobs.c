/* SPDX-License-Identifier: MIT */
/*
 * The watch's jobs, each run by the scheduler (sched.c) on its pool: take the dataset's lock
 * for memory, call detect (converge/probe.h, converge/check.h) without it, update the state the
 * renderers read (watch_int.h), log what changed. The quick pool runs heartbeat, canary and
 * invariants; the sweep pool the incremental check and the full sweep. Detect decides what a
 * reading means; this file decides when to read, what to keep of it and what to say.
 *
 *
 * Sweeps. The full sweep and the incremental check: detect's cvg_check_* phases and the diff
 * engine find and record the divergences; here are the jobs around them: opening and describing
 * the replicas, schema drift, the replicas' up state and watermarks, the invariants'
 * aggregates, the logs and the sweep metrics.
 */
#include "converge/check.h"
#include "converge/diff.h"
#include "converge/json.h"
#include "converge/mclock.h"
#include "converge/probe.h"
#include "converge/store.h"
#include "converge/tracker.h"
#include "watch_int.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

/* ---- heartbeat ---- */

void cvgi_job_hb_write(cvg_monitor *m, job *j) {
  dset *ds = j->ds;
  const cvg_cat_probes *p = &ds->cfg->probes;
  rep *r = &ds->reps[ds->cfg->authority];
  cvg_error err;
  cvg_error_clear(&err);
  int rc = cvgi_ensure_open(&j->st, r, 0, &err);
  pthread_mutex_lock(&ds->mu);
  int64_t last = ds->hb_seq;
  pthread_mutex_unlock(&ds->mu);
  int64_t seq = rc ? 0 : cvg_probe_heartbeat_next(j->st, p->heartbeat_table, ds->cfg->name, last);
  double now = cvg_wall_now();
  cvg_native_view nv; /* the authority's own view of what it sends (pg_stat_replication) */
  if (!rc)
    rc = cvg_probe_heartbeat_write(j->st, p->heartbeat_table, ds->cfg->name, seq, now,
                                   p->create_tables, &nv, &err);
  pthread_mutex_lock(&ds->mu);
  if (rc) {
    ds->hb_write_ok = 0;
    cvgi_set_up(m, ds, r, 0, &err);
  } else {
    snprintf(r->native_role, sizeof r->native_role, "%s", nv.role);
    r->native_lag = nv.known ? nv.lag : NAN;
    r->native_up = nv.up;
    if (nv.lsn_known) /* read after the heartbeat's commit: all before `now` is at or below it */
      cvgi_lsn_push(ds, now, nv.lsn);
    snprintf(ds->auth_senders, sizeof ds->auth_senders, "%s", nv.senders);
    ds->auth_sysid = nv.sysid;
    ds->hb_seq = seq; /* this job alone writes it: never two runs at once */
    ds->hb_write_ok = 1;
    cvgi_set_up(m, ds, r, 1, NULL);
    r->hb_seen = 1;
    r->hb_seq = seq;
    r->hb_ts = now;
    r->lag = 0;
    r->state = RS_OK;
  }
  pthread_mutex_unlock(&ds->mu);
  if (rc)
    cvgi_drop_conn(&j->st);
}

/* The lag above which a replica is "lagging" rather than "ok". */
static double lag_threshold(const cvg_cat_dataset *d) {
  if (d->inv.max_lag_seconds >= 0)
    return d->inv.max_lag_seconds;
  return 3 * d->probes.heartbeat_interval + 1;
}

void cvgi_job_hb_read(cvg_monitor *m, job *j) {
  dset *ds = j->ds;
  rep *r = &ds->reps[j->rep];
  const cvg_cat_probes *p = &ds->cfg->probes;
  cvg_error err;
  cvg_error_clear(&err);
  int rc = cvgi_ensure_open(&j->st, r, CVG_STORE_READONLY, &err);
  int hb = ds->cfg->authority >= 0 && p->heartbeat_interval > 0;
  cvg_hb_reading rd; /* the heartbeat, and the engine's view (subscription or standby) */
  if (!rc)
    rc = cvg_probe_heartbeat_read(j->st, p->heartbeat_table, ds->cfg->name, hb, &rd, &err);
  int64_t seq = rc ? 0 : rd.seq;
  double ts = rc ? 0 : rd.ts;
  int found = !rc && rd.found, absent = !rc && rd.table_absent;
  double now = cvg_wall_now();
  pthread_mutex_lock(&ds->mu);
  if (rc) {
    cvgi_set_up(m, ds, r, 0, &err);
  } else {
    cvgi_set_up(m, ds, r, 1, NULL);
    snprintf(r->native_role, sizeof r->native_role, "%s", rd.native.role);
    r->native_lag = rd.native.known ? rd.native.lag : NAN;
    r->native_up = rd.native.up;
    rstate before = r->state;
    r->hb_table_absent = absent;
    if (hb)
      cvgi_native_update(m, ds, r, &rd, now);
    if (!hb) {
      r->state = RS_OK;
    } else if (r->hb_unreplicated) {
      cvgi_native_state(ds, r, now, lag_threshold(ds->cfg));
    } else if (absent || !found) {
      r->lag = NAN;
      r->state = RS_STOPPED;
    } else {
      if (!r->hb_seen || seq != r->hb_seq) {
        r->no_progress = 0;
        r->auth_seq_at_last = ds->hb_seq;
        r->hb_moved_at = now;
      } else if (ds->hb_write_ok && ds->hb_seq > r->auth_seq_at_last) {
        r->no_progress++;
        r->auth_seq_at_last = ds->hb_seq;
      }
      r->hb_seen = 1;
      r->hb_seq = seq;
      r->hb_ts = ts;
      r->lag = now - ts > 0 ? now - ts : 0;
      cvg_trend_add(&r->trend, now, r->lag, seq);
      if (r->native_halted) /* the engine says its apply worker is down or failing: now */
        r->state = RS_STOPPED;
      else if (r->no_progress >= p->stall_after)
        r->state = RS_STALLED;
      else if (r->lag > lag_threshold(ds->cfg))
        r->state = RS_LAGGING;
      else
        r->state = RS_OK;
    }
    if (before != r->state) {
      char lag[32];
      cvgi_fmt_double(lag, sizeof lag, r->lag);
      cvgi_logf_event(m, r->state == RS_OK ? CVG_LOG_INFO : CVG_LOG_WARN, "replica_state", ds, r,
                      "state", cvgi_rstate_names[r->state], "lag_seconds", lag);
    }
  }
  pthread_mutex_unlock(&ds->mu);
  if (rc)
    cvgi_drop_conn(&j->st);
}

/* ---- canary ---- */

void cvgi_job_canary_write(cvg_monitor *m, job *j) {
  dset *ds = j->ds;
  const cvg_cat_probes *p = &ds->cfg->probes;
  rep *r = &ds->reps[ds->cfg->authority];
  cvg_error err;
  cvg_error_clear(&err);
  char token[CVG_CANARY_TOKEN_MAX];
  double wall = cvg_wall_now();
  cvg_probe_canary_token(token, sizeof token, wall, (uint64_t)(uintptr_t)j ^ (uint64_t)random());
  int rc = cvgi_ensure_open(&j->st, r, 0, &err);
  if (!rc) /* canaries older than ten timeouts are gone: the table stays small */
    rc = cvg_probe_canary_write(j->st, p->canary_table, ds->cfg->name, token, wall,
                                wall - 10 * (p->canary_timeout > 60 ? p->canary_timeout : 60),
                                p->create_tables, &err);
  pthread_mutex_lock(&ds->mu);
  if (rc) {
    cvgi_set_up(m, ds, r, 0, &err);
  } else {
    if (ds->n_canaries == MAX_CANARIES) { /* the oldest has long timed out: count and drop */
      memmove(&ds->canaries[0], &ds->canaries[1], (MAX_CANARIES - 1) * sizeof ds->canaries[0]);
      ds->n_canaries--;
    }
    canary *c = &ds->canaries[ds->n_canaries++];
    snprintf(c->token, sizeof c->token, "%s", token);
    c->written_mono = cvg_mono_now();
    c->pending = 0;
    for (size_t i = 0; i < ds->n; i++)
      if ((int)i != ds->cfg->authority)
        c->pending |= 1u << i;
  }
  pthread_mutex_unlock(&ds->mu);
  if (rc)
    cvgi_drop_conn(&j->st);
}

/* Records a canary outcome for the SLO (ds->mu held). */
static void outcome(dset *ds, int good) {
  if (!ds->out_t)
    return;
  ds->out_t[ds->out_head] = cvg_wall_now();
  ds->out_good[ds->out_head] = (unsigned char)good;
  ds->out_head = (ds->out_head + 1) % OUTCOMES;
  if (ds->out_n < OUTCOMES)
    ds->out_n++;
}

void cvgi_job_canary_poll(cvg_monitor *m, job *j) {
  dset *ds = j->ds;
  rep *r = &ds->reps[j->rep];
  const cvg_cat_probes *p = &ds->cfg->probes;
  uint32_t bit = 1u << j->rep;
  char tokens[MAX_CANARIES][CVG_CANARY_TOKEN_MAX];
  size_t n = 0;
  pthread_mutex_lock(&ds->mu);
  for (size_t i = 0; i < ds->n_canaries; i++)
    if (ds->canaries[i].pending & bit)
      memcpy(tokens[n++], ds->canaries[i].token, CVG_CANARY_TOKEN_MAX);
  pthread_mutex_unlock(&ds->mu);
  if (n == 0)
    return;
  cvg_error err;
  cvg_error_clear(&err);
  int seen[MAX_CANARIES] = {0};
  int rc = cvgi_ensure_open(&j->st, r, CVG_STORE_READONLY, &err);
  if (!rc)
    rc = cvg_probe_canary_poll(j->st, p->canary_table, (const char(*)[CVG_CANARY_TOKEN_MAX])tokens,
                               n, seen, &err);
  double now = cvg_mono_now();
  pthread_mutex_lock(&ds->mu);
  if (rc)
    cvgi_set_up(m, ds, r, 0, &err);
  for (size_t k = 0; k < ds->n_canaries; k++) {
    canary *c = &ds->canaries[k];
    if (!(c->pending & bit))
      continue;
    size_t i = 0;
    while (i < n && strcmp(tokens[i], c->token) != 0)
      i++;
    if (i < n && seen[i]) {
      cvgi_hist_add(&r->conv, cvgi_conv_le, CONV_BUCKETS, now - c->written_mono);
      r->last_conv = now - c->written_mono;
      r->canaries_seen++;
      c->pending &= ~bit;
      outcome(ds, !ds->cfg->slo.declared || now - c->written_mono <= ds->cfg->slo.within);
    } else if (now - c->written_mono > p->canary_timeout && r->hb_unreplicated) {
      c->pending &= ~bit; /* its table is not in the publication either: not judged */
    } else if (now - c->written_mono > p->canary_timeout) {
      r->canary_failures++;
      r->fail_t[r->n_fail_t++ % 16] = cvg_wall_now();
      c->pending &= ~bit;
      outcome(ds, 0);
      char t[32];
      snprintf(t, sizeof t, "%g", p->canary_timeout);
      cvgi_logf_event(m, CVG_LOG_WARN, "canary_timeout", ds, r, "timeout_seconds", t, "token",
                      c->token);
    }
  }
  size_t w = 0; /* drop canaries every replica has settled */
  for (size_t k = 0; k < ds->n_canaries; k++)
    if (ds->canaries[k].pending)
      ds->canaries[w++] = ds->canaries[k];
  ds->n_canaries = w;
  pthread_mutex_unlock(&ds->mu);
  if (rc)
    cvgi_drop_conn(&j->st);
}

/* ---- invariants ---- */

static void set_inv(cvg_monitor *m, dset *ds, size_t i, const char *name, int known, int ok,
                    double value, double limit) {
  inv_result *r = &ds->inv[i];
  int was_known = r->known, was_ok = r->ok;
  r->name = name;
  r->known = known;
  r->ok = ok;
  r->value = value;
  r->limit = limit;
  if (known && (!was_known || was_ok != ok) && (was_known || !ok)) {
    char v[32], l[32];
    cvgi_fmt_double(v, sizeof v, value);
    cvgi_fmt_double(l, sizeof l, limit);
    cvg_log(m->lg, ok ? CVG_LOG_INFO : CVG_LOG_WARN,
            ok ? "invariant_restored" : "invariant_violated", "dataset", ds->cfg->name, "invariant",
            name, "value", v, "limit", l, (const char *)NULL);
  }
}

void cvgi_job_inv(cvg_monitor *m, job *j) {
  dset *ds = j->ds;
  const cvg_cat_invariants *iv = &ds->cfg->inv;
  double now = cvg_wall_now();
  pthread_mutex_lock(&ds->mu);
  size_t n = 0, n_up = 0;
  for (size_t i = 0; i < ds->n; i++)
    n_up += ds->reps[i].up != 0;
  uint64_t confirmed = 0;
  double oldest = 0;
  int min_agree = (int)n_up;
  size_t cur = 0;
  for (const cvg_tracked *t; (t = cvg_tracker_next(ds->trk, &cur));) {
    if (!t->confirmed)
      continue;
    confirmed++;
    if (now - t->first_seen > oldest)
      oldest = now - t->first_seen;
    if (t->agreeing < min_agree)
      min_agree = t->agreeing;
  }
  if (iv->max_lag_seconds >= 0) {
    double worst = 0;
    int known = ds->cfg->authority >= 0;
    for (size_t i = 0; i < ds->n; i++)
      if ((int)i != ds->cfg->authority && ds->reps[i].up != 0) {
        if (ds->reps[i].up < 0)
          known = 0;
        else if (isnan(ds->reps[i].lag))
          worst = INFINITY; /* no heartbeat has arrived: stopped */
        else if (ds->reps[i].lag > worst)
          worst = ds->reps[i].lag;
      }
    set_inv(m, ds, n++, "max_lag_seconds", known, worst <= iv->max_lag_seconds, worst,
            iv->max_lag_seconds);
  }
  if (iv->max_divergent_rows >= 0)
    set_inv(m, ds, n++, "max_divergent_rows", ds->have_full,
            confirmed <= (uint64_t)iv->max_divergent_rows, (double)confirmed,
            (double)iv->max_divergent_rows);
  if (iv->max_divergent_fraction >= 0) {
    double f = ds->keys_total ? (double)confirmed / (double)ds->keys_total : 0;
    set_inv(m, ds, n++, "max_divergent_fraction", ds->have_full, f <= iv->max_divergent_fraction, f,
            iv->max_divergent_fraction);
  }
  if (iv->min_agreeing_replicas >= 0)
    set_inv(m, ds, n++, "min_agreeing_replicas", ds->have_full,
            min_agree >= iv->min_agreeing_replicas, (double)min_agree,
            (double)iv->min_agreeing_replicas);
  if (iv->max_divergence_age_seconds >= 0)
    set_inv(m, ds, n++, "max_divergence_age_seconds", ds->have_full,
            oldest <= iv->max_divergence_age_seconds, oldest, iv->max_divergence_age_seconds);
  for (size_t a = 0; a < iv->n_aggregates && n < sizeof ds->inv / sizeof ds->inv[0]; a++) {
    double lo = INFINITY, hi = -INFINITY;
    int known = 1, count = 0;
    for (size_t i = 0; i < ds->n; i++) {
      if (ds->reps[i].up != 1)
        continue;
      if (!ds->reps[i].agg_ok[a]) {
        known = 0;
        continue;
      }
      count++;
      if (ds->reps[i].agg[a] < lo)
        lo = ds->reps[i].agg[a];
      if (ds->reps[i].agg[a] > hi)
        hi = ds->reps[i].agg[a];
    }
    double spread = count ? hi - lo : 0;
    set_inv(m, ds, n++, iv->aggregates[a].expr, known && count >= 2,
            spread <= iv->aggregates[a].tolerance, spread, iv->aggregates[a].tolerance);
  }
  ds->n_inv = n;
  pthread_mutex_unlock(&ds->mu);
  (void)j;
}

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
  cvgi_check_ctx cx; /* the apply positions as the sweep began */
} full_ctx;

static int full_cb(void *vctx, const cvg_divergence *dv) {
  full_ctx *fc = vctx;
  pthread_mutex_lock(&fc->ds->mu);
  cvgi_check_at(&fc->cx, fc->ds, "full sweep", fc->now, fc->wait, 0, 1);
  cvg_sweep_record(fc->ds->trk, &fc->cx.chk, fc->idx, fc->k, dv);
  pthread_mutex_unlock(&fc->ds->mu);
  return 0;
}

int cvgi_in_window(const cvg_cat_probes *p) {
  return cvg_in_utc_window(cvg_wall_now(), p->window_start, p->window_end);
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
  double fresh[CVG_DIFF_MAX_REPLICAS];
  cvgi_apply_fresh(ds, sts, fresh);
  pthread_mutex_lock(&ds->mu);
  full_ctx fc;
  memset(&fc, 0, sizeof fc);
  fc.ds = ds;
  fc.idx = idx;
  fc.k = k;
  fc.now = cvg_wall_now();
  fc.wait = cvgi_confirm_wait(ds);
  cvgi_apply_snapshot(&fc.cx, ds, fresh);
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
                     size_t k, cvgi_check_ctx *cx, uint64_t *compared, cvg_error *err) {
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
    cvgi_check_at(cx, ds, "incremental check", now, cvgi_confirm_wait(ds), 1, 0);
    *compared = cvg_check_record(c, ds->trk, &cx->chk);
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
  double fresh[CVG_DIFF_MAX_REPLICAS];
  cvgi_apply_fresh(ds, sts, fresh);
  cvg_check_replica cr[CVG_DIFF_MAX_REPLICAS];
  memset(cr, 0, sizeof cr);
  pthread_mutex_lock(&ds->mu);
  for (size_t x = 0; x < k; x++) {
    cr[x].st = sts[idx[x]];
    cr[x].index = idx[x];
    cr[x].wm_len = ds->reps[idx[x]].wm_len;
    memcpy(cr[x].wm, ds->reps[idx[x]].wm, cr[x].wm_len);
  }
  cvgi_check_ctx cx; /* the apply positions before anything is read */
  cvgi_apply_snapshot(&cx, ds, fresh);
  pthread_mutex_unlock(&ds->mu);
  cvg_check *c = NULL;
  rc = cvg_check_new(&c, &spec, ds->cfg->version != NULL, ds->n, ds->cfg->name, err);
  if (!rc)
    rc = run_check(m, ds, sts, c, cr, k, &cx, compared, err);
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
