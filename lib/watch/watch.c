/* SPDX-License-Identifier: MIT */
/*
 * The watch of `converge watch` (converge/watch.h): its life, its datasets and replicas.
 *
 * Divergences. What the checks find goes to the dataset's tracker (converge/tracker.h, in
 * detect): the divergent keys, the confirmation rule, the episode and the shard digests. This
 * file gives it the time, the confirmation wait computed from the replicas' lag, and logs its
 * episode events.
 *
 * Locks: m->mu guards the job table and pools; each dataset's mu guards its state and is held
 * only for memory work (never across a database call); its sweep_mu keeps the full and the
 * incremental sweep of a dataset from running together.
 *
 * The parts: sched.c runs the jobs; jobs.c holds the jobs that observe (heartbeat, canary,
 * invariants, incremental check, full sweep); signals.c is what the alert engine reads;
 * autorepair.c the automatic repair; wstate.c the watch's own saved state; render_prom.c and
 * render_json.c render metrics and JSON. The state they share is declared in watch_int.h. This file: the monitor's life (new, free, recheck, pause) and the
 * helpers every job uses.
 */
#include "converge/diff.h"
#include "converge/json.h"
#include "converge/mclock.h"
#include "converge/probe.h"
#include "converge/watch.h"
#include "converge/store.h"
#include "converge/tracker.h"
#include "watch_int.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

const double cvgi_conv_le[CONV_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                           1,     2.5,  5,     10,   30,  60,   120};
const double cvgi_sweep_le[SWEEP_BUCKETS] = {0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600};
const char *const cvgi_rstate_names[] = {"unknown", "ok",   "lagging", "stalled",
                                         "stopped", "down", "error"};
const char *const cvgi_kind_names[] = {"incremental", "full"};

void cvgi_hist_add(hist *h, const double *le, size_t n_le, double v) {
  size_t i = 0;
  while (i < n_le && v > le[i])
    i++;
  h->bucket[i]++;
  h->sum += v;
  h->count++;
}

void cvgi_fmt_double(char *buf, size_t n, double v) {
  if (isnan(v))
    snprintf(buf, n, "NaN");
  else if (isinf(v))
    snprintf(buf, n, v > 0 ? "+Inf" : "-Inf");
  else
    snprintf(buf, n, "%.17g", v);
}

void cvgi_reachable(const dset *ds, unsigned char *up) {
  for (size_t i = 0; i < ds->n; i++)
    up[i] = ds->reps[i].up == 1;
}

/* ---- the tracker's part: confirmation wait, worst lag, events ---- */

/* The largest lag among the non-authority replicas that are up (NAN if none is known). */
static double worst_lag(const dset *ds) {
  double w = NAN;
  for (size_t i = 0; i < ds->n; i++)
    if ((int)i != ds->cfg->authority && ds->reps[i].up == 1 && !isnan(ds->reps[i].lag) &&
        (isnan(w) || ds->reps[i].lag > w))
      w = ds->reps[i].lag;
  return w;
}

/* How long a divergence on these replicas must persist before it is confirmed (ds->mu held). */
double cvgi_confirm_wait(const dset *ds) {
  double lag[CVG_DIFF_MAX_REPLICAS];
  int up[CVG_DIFF_MAX_REPLICAS];
  for (size_t i = 0; i < ds->n; i++) {
    lag[i] = ds->reps[i].lag;
    up[i] = ds->reps[i].up;
  }
  return cvg_tracker_confirm_wait(lag, up, ds->n, ds->cfg->authority,
                                  ds->cfg->probes.heartbeat_interval,
                                  ds->cfg->probes.confirm_within);
}

void cvgi_apply_fresh(const dset *ds, cvg_store **sts, double *fresh) {
  const cvg_cat_probes *p = &ds->cfg->probes;
  for (size_t i = 0; i < ds->n; i++) {
    fresh[i] = NAN;
    if ((int)i == ds->cfg->authority || ds->cfg->authority < 0 || p->heartbeat_interval <= 0 ||
        !sts[i])
      continue;
    cvg_hb_reading rd;
    cvg_error err;
    cvg_error_clear(&err);
    if (cvg_probe_heartbeat_read(sts[i], p->heartbeat_table, ds->cfg->name, 1, &rd, &err) ==
            CVG_OK &&
        rd.found)
      fresh[i] = rd.ts;
  }
}

void cvgi_apply_snapshot(cvgi_check_ctx *cx, const dset *ds, const double *fresh) {
  const cvg_cat_probes *p = &ds->cfg->probes;
  double now = cvg_wall_now();
  cx->on = ds->cfg->authority >= 0 && p->heartbeat_interval > 0;
  for (size_t i = 0; cx->on && i < ds->n; i++) {
    const rep *r = &ds->reps[i];
    /* a halted subscriber keeps its frozen position: the stopped rule confirms after
     * confirm_within; an unreplicated heartbeat gives none */
    int known = r->hb_seen && !r->hb_unreplicated && (r->state != RS_STOPPED || r->native_halted);
    cx->apply[i] = (int)i == ds->cfg->authority ? now : known ? r->hb_ts : NAN;
    cx->idle[i] = known ? now - r->hb_moved_at : 0;
    /* the engine's own position beside it (exact: native.c), when it is ahead */
    if ((int)i != ds->cfg->authority && !isnan(r->npos) &&
        (isnan(cx->apply[i]) || r->npos > cx->apply[i])) {
      cx->apply[i] = r->npos;
      cx->idle[i] = now - r->npos_moved_at;
    }
    /* WAL still arriving (exact, from the authority): applying nothing is a delay, not a stop */
    if ((int)i != ds->cfg->authority && r->nrecv_known && now - r->nrecv_moved_at < cx->idle[i])
      cx->idle[i] = now - r->nrecv_moved_at;
    /* a fresher reading taken by the check itself moves the position, never back */
    if (fresh && !isnan(fresh[i]) && (int)i != ds->cfg->authority &&
        (isnan(cx->apply[i]) || fresh[i] > cx->apply[i])) {
      cx->apply[i] = fresh[i];
      cx->idle[i] = 0;
    }
  }
}

void cvgi_check_at(cvgi_check_ctx *cx, const dset *ds, const char *probe, double now, double wait,
                   int update_digests, int sweep) {
  cvg_trk_check c = {.now = now,
                     .wait = wait,
                     .lag = worst_lag(ds),
                     .probe = probe,
                     .update_digests = update_digests,
                     .sweep = sweep};
  if (cx->on) {
    c.apply = cx->apply;
    c.idle = cx->idle;
    c.authority = ds->cfg->authority;
    c.hb_interval = ds->cfg->probes.heartbeat_interval;
    c.confirm_within = ds->cfg->probes.confirm_within;
  }
  cx->chk = c;
}

/* A key just confirmed, kept in the dataset's ring as it was seen at that moment (ds->mu held):
 * what /api/v1/confirmations serves, so that a client polling it misses no confirmation, even of
 * a key that agreed again before it looked. Out of memory, the entry is skipped (its seq too). */
static void record_confirmation(dset *ds, const cvg_trk_event *ev) {
  if (!ds->confs)
    return;
  uint64_t seq = ++ds->conf_seq;
  const cvg_tracked *t = cvg_tracker_find(ds->trk, ev->key, ev->key_len);
  json_t *j = t ? cvgi_tracked_json(ds, t) : NULL;
  if (j)
    json_object_set_new(j, "seq", json_integer((json_int_t)seq));
  size_t slot = (size_t)((seq - 1) % CONF_RING);
  json_decref(ds->confs[slot]);
  ds->confs[slot] = j;
}

/* The tracker's events, logged (called with ds->mu held). */
static void on_tracker_event(void *ctx, const cvg_trk_event *ev) {
  dset *ds = ctx;
  const char *name = ds->cfg->name, *id = ev->episode->id;
  switch (ev->kind) {
  case CVG_TRK_EPISODE_START:
    cvg_log(ds->m->lg, CVG_LOG_INFO, "divergence_suspected", "dataset", name, "trace_id", id,
            "probe", ev->episode->first_probe, (const char *)NULL);
    break;
  case CVG_TRK_EPISODE_CONTINUED:
    cvg_log(ds->m->lg, CVG_LOG_INFO, "divergence_continued", "dataset", name, "trace_id", id,
            (const char *)NULL);
    break;
  case CVG_TRK_EPISODE_CONFIRMED:
    cvg_log(ds->m->lg, CVG_LOG_WARN, "divergence_confirmed", "dataset", name, "trace_id", id,
            "class", cvg_class_name(ev->cls), (const char *)NULL);
    break;
  case CVG_TRK_EPISODE_END:
    cvg_log(ds->m->lg, CVG_LOG_INFO, "divergence_cleared", "dataset", name, "trace_id", id,
            (const char *)NULL);
    break;
  case CVG_TRK_KEY_CONFIRMED:
    record_confirmation(ds, ev);
    break;
  default: /* other key events: counted by the tracker, not logged one by one */
    break;
  }
}

/* ---- logging helpers ---- */

void cvgi_logf_event(cvg_monitor *m, cvg_log_level lvl, const char *event, const dset *ds,
                     const rep *r, const char *k1, const char *v1, const char *k2, const char *v2) {
  cvg_log(m->lg, lvl, event, "dataset", ds->cfg->name, r ? "replica" : k1, r ? r->cfg->name : v1,
          r ? k1 : k2, r ? v1 : v2, r ? k2 : NULL, r ? v2 : NULL, (const char *)NULL);
}

/* Marks a replica up or down (ds->mu held), logging transitions. */
void cvgi_set_up(cvg_monitor *m, dset *ds, rep *r, int up, const cvg_error *err) {
  if (up) {
    if (r->up == 0)
      cvgi_logf_event(m, CVG_LOG_INFO, "replica_up", ds, r, NULL, NULL, NULL, NULL);
    r->up = 1;
    r->error[0] = '\0';
    return;
  }
  char msg[CVG_ERROR_MSG_MAX + CVG_ERROR_MSG_MAX + 8];
  snprintf(msg, sizeof msg, "%s%s%s", err ? err->msg : "unreachable",
           err && err->hint[0] ? "; " : "", err && err->hint[0] ? err->hint : "");
  if (r->up != 0 || strcmp(r->error, msg) != 0)
    cvgi_logf_event(m, CVG_LOG_WARN, "replica_down", ds, r, "error", msg, NULL, NULL);
  snprintf(r->error, sizeof r->error, "%s", msg);
  r->up = 0;
  r->state = RS_DOWN;
  r->probe_errors++;
}

/* Opens *st for replica r if it is not open. */
int cvgi_ensure_open(cvg_store **st, const rep *r, unsigned flags, cvg_error *err) {
  if (*st)
    return CVG_OK;
  int rc = cvg_store_open(st, r->cfg->url, flags, err);
  if (rc && err) /* never show the expanded URL: it may hold a password */
    snprintf(err->input, sizeof err->input, "%s", r->cfg->url_display);
  return rc;
}

void cvgi_drop_conn(cvg_store **st) {
  cvg_store_close(*st);
  *st = NULL;
}

/* What status and metrics call the replica's state: its replication state, or "error" while it
 * answers probes but its sweeps fail. */
rstate cvgi_shown_state(const rep *r) {
  if (r->up == 1 && (r->sweep_streak[KIND_INCR] || r->sweep_streak[KIND_FULL]))
    return RS_ERROR;
  return r->state;
}

/* The replica's error for people: why it is down, else why its sweeps fail, else "". */
const char *cvgi_rep_error(const rep *r) {
  if (r->error[0] || r->up != 1)
    return r->error;
  return cvgi_shown_state(r) == RS_ERROR ? r->sweep_error : "";
}

int cvg_monitor_new(cvg_monitor **out, const cvg_catalog *cat, cvg_logger *lg, cvg_error *err) {
  *out = NULL;
  cvg_monitor *m = calloc(1, sizeof *m);
  if (!m)
    return cvg_error_set(err, CVG_ENOMEM, cat->path, "out of memory");
  m->cat = cat;
  m->lg = lg;
  m->n_ds = cat->n_datasets;
  pthread_mutex_init(&m->mu, NULL);
  cvg_cond_init_monotonic(&m->sched_cv);
  pthread_cond_init(&m->pools[0].cv, NULL);
  pthread_cond_init(&m->pools[1].cv, NULL);
  m->ds = calloc(m->n_ds, sizeof *m->ds);
  size_t max_jobs = 0;
  for (size_t i = 0; i < m->n_ds; i++)
    max_jobs += 6 + 2 * cat->datasets[i].n_replicas;
  max_jobs++; /* alert evaluation */
  m->jobs = calloc(max_jobs, sizeof *m->jobs);
  if (!m->ds || !m->jobs)
    goto oom;
  double now = cvg_mono_now();
  for (size_t i = 0; i < m->n_ds; i++) {
    dset *ds = &m->ds[i];
    const cvg_cat_dataset *c = &cat->datasets[i];
    ds->m = m;
    ds->cfg = c;
    ds->idx = i;
    ds->n = c->n_replicas;
    pthread_mutex_init(&ds->mu, NULL);
    pthread_mutex_init(&ds->sweep_mu, NULL);
    ds->sweep_culprit = -1;
    ds->reps = calloc(ds->n, sizeof *ds->reps);
    ds->out_t = calloc(OUTCOMES, sizeof *ds->out_t);
    ds->out_good = calloc(OUTCOMES, 1);
    ds->confs = calloc(CONF_RING, sizeof *ds->confs);
    cvg_tracker_config tc = {c->n_replicas, c->shards, c->probes.max_tracked, c->version != NULL};
    if (!ds->reps || !ds->out_t || !ds->out_good || !ds->confs ||
        cvg_tracker_new(&ds->trk, &tc, on_tracker_event, ds) != CVG_OK)
      goto oom;
    for (size_t r = 0; r < ds->n; r++) {
      rep *rp = &ds->reps[r];
      rp->cfg = &c->replicas[r];
      rp->up = -1;
      rp->lag = NAN;
      rp->native_lag = NAN;
      rp->native_up = 1;
      rp->npos = NAN;
      rp->last_conv = NAN;
      if (cvg_trend_init(&rp->trend, (size_t)cat->alerting.trend_window) != CVG_OK)
        goto oom;
      rp->agg = calloc(c->inv.n_aggregates + 1, sizeof *rp->agg);
      rp->agg_ok = calloc(c->inv.n_aggregates + 1, 1);
      if (!rp->agg || !rp->agg_ok)
        goto oom;
    }
    const cvg_cat_probes *p = &c->probes;
    int hb = c->authority >= 0 && p->heartbeat_interval > 0;
    int rc = 0;
    if (hb)
      rc = cvgi_add_job(m, J_HB_WRITE, ds, (size_t)c->authority, p->heartbeat_interval, 0, now);
    for (size_t r = 0; !rc && r < ds->n; r++)
      if ((int)r != c->authority)
        rc = cvgi_add_job(m, J_HB_READ, ds, r, hb ? p->heartbeat_interval : 5, 0, now + 0.05);
    if (!rc && c->authority >= 0 && p->canary_interval > 0) {
      rc = cvgi_add_job(m, J_CANARY_WRITE, ds, (size_t)c->authority, p->canary_interval, 0,
                        now + 0.1);
      double poll = p->canary_interval / 10 < CANARY_POLL ? p->canary_interval / 10 : CANARY_POLL;
      for (size_t r = 0; !rc && r < ds->n; r++)
        if ((int)r != c->authority)
          rc = cvgi_add_job(m, J_CANARY_POLL, ds, r, poll, 0, now + 0.1);
    }
    if (!rc && p->full_sweep_interval > 0)
      rc = cvgi_add_job(m, J_FULL, ds, 0, p->full_sweep_interval, 1, now + 0.2);
    if (!rc && p->sweep_interval > 0)
      rc = cvgi_add_job(m, J_INCR, ds, 0, p->sweep_interval, 1, now + p->sweep_interval);
    if (!rc)
      rc = cvgi_add_job(m, J_INV, ds, 0, INVARIANT_INTERVAL, 0, now + 1);
    if (!rc && c->auto_repair)
      rc = cvgi_add_job(m, J_REPAIR, ds, 0, c->repair_interval, 1, now + c->repair_interval);
    if (rc)
      goto oom;
  }
  if (m->n_ds &&
      cvgi_add_job(m, J_ALERT, &m->ds[0], 0, cat->alerting.evaluation_interval, 0, now + 1))
    goto oom;
  if (cvg_alerts_new(&m->alerts, cat, lg, err) != CVG_OK) {
    cvg_monitor_free(m);
    return err ? err->status : CVG_EIO;
  }
  cvgi_episodes_open(m);
  cvgi_episodes_restore(m);
  cvgi_pauses_restore(m, 1);
  m->pools[0].n_threads = (size_t)cat->workers;
  m->pools[1].n_threads = (size_t)cat->workers;
  m->started_wall = cvg_wall_now();
  *out = m;
  return CVG_OK;
oom:
  cvg_monitor_free(m);
  return cvg_error_set(err, CVG_ENOMEM, cat->path, "out of memory");
}

void cvg_monitor_free(cvg_monitor *m) {
  if (!m)
    return;
  cvg_monitor_stop(m);
  for (size_t i = 0; i < m->n_jobs; i++) {
    job *j = &m->jobs[i];
    cvg_store_close(j->st);
    for (size_t r = 0; j->sts && r < j->ds->n; r++)
      cvg_store_close(j->sts[r]);
    free(j->sts);
  }
  free(m->jobs);
  for (size_t i = 0; m->ds && i < m->n_ds; i++) {
    dset *ds = &m->ds[i];
    for (size_t r = 0; ds->reps && r < ds->n; r++) {
      free(ds->reps[r].agg);
      free(ds->reps[r].agg_ok);
      cvg_trend_free(&ds->reps[r].trend);
    }
    free(ds->reps);
    free(ds->out_t);
    free(ds->out_good);
    cvg_tracker_free(ds->trk);
    for (size_t c = 0; ds->confs && c < CONF_RING; c++)
      json_decref(ds->confs[c]);
    free(ds->confs);
    pthread_mutex_destroy(&ds->mu);
    pthread_mutex_destroy(&ds->sweep_mu);
  }
  free(m->ds);
  cvg_alerts_free(m->alerts);
  cvgi_episodes_close(m);
  pthread_cond_destroy(&m->pools[0].cv);
  pthread_cond_destroy(&m->pools[1].cv);
  pthread_cond_destroy(&m->sched_cv);
  pthread_mutex_destroy(&m->mu);
  free(m);
}

int cvg_monitor_recheck(cvg_monitor *m, size_t ds_idx, uint64_t *compared, cvg_error *err) {
  if (ds_idx >= m->n_ds)
    return cvg_error_set(err, CVG_EINVAL, "", "no dataset %zu", ds_idx);
  dset *ds = &m->ds[ds_idx];
  job *j = NULL;
  for (size_t i = 0; i < m->n_jobs && !j; i++)
    if (m->jobs[i].ds == ds && m->jobs[i].kind == J_INCR)
      j = &m->jobs[i];
  if (!j)
    return cvg_error_set(err, CVG_EINVAL, ds->cfg->name, "incremental sweeps are off");
  pthread_mutex_lock(&ds->sweep_mu);
  double t0 = cvg_mono_now();
  int rc = cvgi_incremental(m, ds, j->sts, compared, err);
  cvgi_sweep_done(m, ds, KIND_INCR, rc, t0, err);
  pthread_mutex_unlock(&ds->sweep_mu);
  return rc;
}

int cvg_monitor_full_sweep(cvg_monitor *m, size_t ds_idx, cvg_error *err) {
  if (ds_idx >= m->n_ds)
    return cvg_error_set(err, CVG_EINVAL, "", "no dataset %zu", ds_idx);
  dset *ds = &m->ds[ds_idx];
  cvg_store *sts[CVG_DIFF_MAX_REPLICAS] = {0};
  pthread_mutex_lock(&ds->sweep_mu);
  double t0 = cvg_mono_now();
  int rc = cvgi_full_sweep(m, ds, sts, err);
  cvgi_sweep_done(m, ds, KIND_FULL, rc, t0, err);
  pthread_mutex_unlock(&ds->sweep_mu);
  for (size_t i = 0; i < ds->n; i++)
    cvg_store_close(sts[i]);
  return rc;
}

int cvg_monitor_repair_pause(cvg_monitor *m, const char *dataset, int pause) {
  int n = 0, found = 0;
  for (size_t i = 0; i < m->n_ds; i++) {
    dset *ds = &m->ds[i];
    if (dataset && strcmp(dataset, ds->cfg->name) != 0)
      continue;
    found = 1;
    if (!ds->cfg->auto_repair)
      continue;
    if (__atomic_exchange_n(&ds->rep_paused, pause ? 1 : 0, __ATOMIC_SEQ_CST) != (pause ? 1 : 0))
      cvg_log(m->lg, CVG_LOG_INFO, pause ? "repair_paused" : "repair_resumed", "dataset",
              ds->cfg->name, (const char *)NULL);
    n++;
  }
  return found ? n : -1;
}

int cvg_monitor_hotspots_json(cvg_monitor *m, const char *dataset, cvg_buf *out) {
  json_t *arr = json_array();
  int found = 0;
  for (size_t i = 0; arr && i < m->n_ds; i++) {
    dset *ds = &m->ds[i];
    if (dataset && strcmp(dataset, ds->cfg->name) != 0)
      continue;
    found = 1;
    json_t *shards = json_object(), *top = json_array();
    pthread_mutex_lock(&ds->mu);
    const uint64_t *conflicts = cvg_tracker_conflicts(ds->trk);
    for (uint32_t sh = 0; shards && sh < ds->cfg->shards; sh++)
      if (conflicts[sh]) {
        char k[16];
        snprintf(k, sizeof k, "%u", sh);
        json_object_set_new(shards, k, json_integer((json_int_t)conflicts[sh]));
      }
    size_t n_hot, order[CVG_HOT_K];
    const cvg_hot *hot = cvg_tracker_hot(ds->trk, &n_hot);
    for (size_t h = 0; h < n_hot; h++)
      order[h] = h;
    for (size_t a = 1; a < n_hot; a++) /* by count, descending */
      for (size_t b = a; b > 0 && hot[order[b]].count > hot[order[b - 1]].count; b--) {
        size_t t = order[b];
        order[b] = order[b - 1];
        order[b - 1] = t;
      }
    for (size_t h = 0; top && h < n_hot; h++) {
      const cvg_hot *e = &hot[order[h]];
      json_array_append_new(
          top,
          json_pack("{s:o, s:I, s:I, s:I}", "key", cvgi_key_json(ds, e->key, e->key_len), "shard",
                    (json_int_t)cvg_shard_of(e->key, e->key_len, ds->cfg->shards), "conflicts",
                    (json_int_t)e->count, "overestimate_at_most", (json_int_t)e->error));
    }
    pthread_mutex_unlock(&ds->mu);
    json_array_append_new(arr, json_pack("{s:s, s:o, s:o}", "dataset", ds->cfg->name,
                                         "conflicts_by_shard", shards ? shards : json_object(),
                                         "top_conflicting_keys", top ? top : json_array()));
  }
  if (!found) {
    json_decref(arr);
    return CVG_ENOENT;
  }
  json_t *root = json_pack("{s:o}", "hotspots", arr ? arr : json_array());
  char *txt = root ? json_dumps(root, JSON_INDENT(2)) : NULL;
  int rc = txt ? cvg_buf_append(out, txt, strlen(txt)) : CVG_ENOMEM;
  free(txt);
  json_decref(root);
  return rc;
}

int cvg_monitor_alerts_json(cvg_monitor *m, const char *fingerprint, cvg_buf *out) {
  return cvg_alerts_json(m->alerts, fingerprint, out);
}

const cvg_catalog *cvg_monitor_catalog(const cvg_monitor *m) {
  return m->cat;
}

int cvg_monitor_healthy(cvg_monitor *m) {
  pthread_mutex_lock(&m->mu);
  int ok = m->sched_started && !m->stopping && cvg_mono_now() - m->sched_beat < 5;
  pthread_mutex_unlock(&m->mu);
  return ok;
}
