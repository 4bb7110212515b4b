/* SPDX-License-Identifier: MIT */
/*
 * The monitor of `converge watch` (monitor.h): probes, their schedule, and what they found.
 *
 * Jobs. Each probe of each dataset (and, for per-replica probes, of each replica) is one job
 * with an interval. The scheduler thread hands due jobs to one of two pools — quick probes
 * (heartbeat, canary, invariants) and sweeps — and never runs a job twice at once. A job owns
 * its replica connections (opened on first use, closed after any error so that the next run
 * reconnects), so no connection is ever shared between threads.
 *
 * Heartbeat. The authority's job writes (source = dataset name, seq, ts = wall time) into the
 * heartbeat table; each other replica's job reads that row as it arrived through replication:
 * lag = now - ts. A replica whose seq has not moved for stall_after reads while the authority's
 * did is "stalled"; one with no heartbeat table or row yet is "stopped" (lag unknown); one that
 * cannot be reached is "down".
 *
 * Canary. The authority's job writes a row with a fresh token; each other replica's job polls
 * for the tokens it has not seen, records now - written in a histogram when one appears, and
 * counts a failure when one has not appeared within the timeout.
 *
 * Divergences. What the checks find goes to the dataset's tracker (converge/tracker.h, in
 * detect): the divergent keys, the confirmation rule, the episode and the shard digests. This
 * file gives it the time, the confirmation wait computed from the replicas' lag, and logs its
 * episode events.
 *
 * Incremental check (with a version column): each replica's rows with version >= its watermark
 * (the greatest version seen so far) are read through an index on the version column, every
 * tracked key is added, and each of these keys is looked up on the replicas that did not yield
 * it; so a re-check after k changes costs O(k) lookups. The full sweep reads everything with
 * the diff engine (rate-limited, in its window), replaces the tracked set, the digests and the
 * watermarks, and catches what versions cannot show: hard deletes and silent corruption.
 *
 * Locks: m->mu guards the job table and pools; each dataset's mu guards its state and is held
 * only for memory work (never across a database call); its sweep_mu keeps the full and the
 * incremental sweep of a dataset from running together.
 *
 * The state is declared in monitor_int.h; render.c renders it as metrics and JSON.
 */
#include "converge/mclock.h"
#include "converge/monitor.h"
#include "converge/alert.h"
#include "converge/json.h"
#include "converge/repair.h"
#include "converge/diff.h"
#include "converge/json.h"
#include "converge/store.h"
#include "converge/version.h"
#include "monitor_int.h"

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
static double confirm_wait(const dset *ds) {
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

/* One check's circumstances for the tracker (ds->mu held). */
static cvg_trk_check check_at(const dset *ds, const char *probe, double now, double wait,
                              int update_digests, int sweep) {
  cvg_trk_check c = {now, wait, worst_lag(ds), probe, update_digests, sweep};
  return c;
}

/* The tracker's events, logged (called with ds->mu held). */
static void on_tracker_event(void *ctx, const cvg_trk_event *ev) {
  const dset *ds = ctx;
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
  default: /* key events: counted by the tracker, not logged one by one */
    break;
  }
}

/* ---- logging helpers ---- */

static void logf_event(cvg_monitor *m, cvg_log_level lvl, const char *event, const dset *ds,
                       const rep *r, const char *k1, const char *v1, const char *k2,
                       const char *v2) {
  cvg_log(m->lg, lvl, event, "dataset", ds->cfg->name, r ? "replica" : k1, r ? r->cfg->name : v1,
          r ? k1 : k2, r ? v1 : v2, r ? k2 : NULL, r ? v2 : NULL, (const char *)NULL);
}

/* Marks a replica up or down (ds->mu held), logging transitions. */
static void set_up(cvg_monitor *m, dset *ds, rep *r, int up, const cvg_error *err) {
  if (up) {
    if (r->up == 0)
      logf_event(m, CVG_LOG_INFO, "replica_up", ds, r, NULL, NULL, NULL, NULL);
    r->up = 1;
    r->error[0] = '\0';
    return;
  }
  char msg[CVG_ERROR_MSG_MAX + CVG_ERROR_MSG_MAX + 8];
  snprintf(msg, sizeof msg, "%s%s%s", err ? err->msg : "unreachable",
           err && err->hint[0] ? "; " : "", err && err->hint[0] ? err->hint : "");
  if (r->up != 0 || strcmp(r->error, msg) != 0)
    logf_event(m, CVG_LOG_WARN, "replica_down", ds, r, "error", msg, NULL, NULL);
  snprintf(r->error, sizeof r->error, "%s", msg);
  r->up = 0;
  r->state = RS_DOWN;
  r->probe_errors++;
}

/* Opens *st for replica r if it is not open. */
static int ensure_open(cvg_store **st, const rep *r, unsigned flags, cvg_error *err) {
  if (*st)
    return CVG_OK;
  int rc = cvg_store_open(st, r->cfg->url, flags, err);
  if (rc && err) /* never show the expanded URL: it may hold a password */
    snprintf(err->input, sizeof err->input, "%s", r->cfg->url_display);
  return rc;
}

static void drop_conn(cvg_store **st) {
  cvg_store_close(*st);
  *st = NULL;
}

/* ---- heartbeat ---- */

static void job_hb_write(cvg_monitor *m, job *j) {
  dset *ds = j->ds;
  const cvg_cat_probes *p = &ds->cfg->probes;
  rep *r = &ds->reps[ds->cfg->authority];
  cvg_error err;
  cvg_error_clear(&err);
  int rc = ensure_open(&j->st, r, 0, &err);
  int64_t seq = 0;
  if (!rc && ds->hb_seq == 0) { /* continue the sequence across restarts */
    double ts;
    int found = 0;
    int64_t old = 0;
    if (cvg_store_heartbeat_read(j->st, p->heartbeat_table, ds->cfg->name, &old, &ts, &found,
                                 NULL) == CVG_OK &&
        found)
      seq = old;
  }
  pthread_mutex_lock(&ds->mu);
  seq = (seq > ds->hb_seq ? seq : ds->hb_seq) + 1;
  pthread_mutex_unlock(&ds->mu);
  double now = cvg_wall_now();
  if (!rc)
    rc = cvg_store_heartbeat_write(j->st, p->heartbeat_table, ds->cfg->name, seq, now,
                                   p->create_tables, &err);
  /* the authority's own view of what it sends (PostgreSQL: pg_stat_replication) */
  char nrole[16] = "";
  double nlag = 0;
  int nknown = 0, nup = 1;
  if (!rc) {
    cvg_error nerr;
    cvg_error_clear(&nerr);
    if (cvg_store_native_lag(j->st, nrole, sizeof nrole, &nlag, &nknown, &nup, &nerr) != CVG_OK)
      nrole[0] = '\0';
  }
  pthread_mutex_lock(&ds->mu);
  if (!rc) {
    snprintf(r->native_role, sizeof r->native_role, "%s", strcmp(nrole, "none") ? nrole : "");
    r->native_lag = nknown ? nlag : NAN;
    r->native_up = nup;
  }
  if (rc) {
    ds->hb_write_ok = 0;
    set_up(m, ds, r, 0, &err);
  } else {
    ds->hb_seq = seq;
    ds->hb_write_ok = 1;
    set_up(m, ds, r, 1, NULL);
    r->hb_seen = 1;
    r->hb_seq = seq;
    r->hb_ts = now;
    r->lag = 0;
    r->state = RS_OK;
  }
  pthread_mutex_unlock(&ds->mu);
  if (rc)
    drop_conn(&j->st);
}

/* The lag above which a replica is "lagging" rather than "ok". */
static double lag_threshold(const cvg_cat_dataset *d) {
  if (d->inv.max_lag_seconds >= 0)
    return d->inv.max_lag_seconds;
  return 3 * d->probes.heartbeat_interval + 1;
}

static void job_hb_read(cvg_monitor *m, job *j) {
  dset *ds = j->ds;
  rep *r = &ds->reps[j->rep];
  const cvg_cat_probes *p = &ds->cfg->probes;
  cvg_error err;
  cvg_error_clear(&err);
  int64_t seq = 0;
  double ts = 0;
  int found = 0;
  int rc = ensure_open(&j->st, r, CVG_STORE_READONLY, &err);
  int hb = ds->cfg->authority >= 0 && p->heartbeat_interval > 0;
  if (!rc && hb)
    rc =
        cvg_store_heartbeat_read(j->st, p->heartbeat_table, ds->cfg->name, &seq, &ts, &found, &err);
  int absent = rc == CVG_ENOTABLE;
  /* beside the heartbeat: the engine's own view (PostgreSQL subscription or standby) */
  char nrole[16] = "";
  double nlag = 0;
  int nknown = 0, nup = 1;
  if (!rc || absent) {
    cvg_error nerr;
    cvg_error_clear(&nerr);
    if (cvg_store_native_lag(j->st, nrole, sizeof nrole, &nlag, &nknown, &nup, &nerr) != CVG_OK)
      nrole[0] = '\0';
  }
  if (absent)
    rc = CVG_OK;
  double now = cvg_wall_now();
  pthread_mutex_lock(&ds->mu);
  if (rc) {
    set_up(m, ds, r, 0, &err);
  } else {
    set_up(m, ds, r, 1, NULL);
    snprintf(r->native_role, sizeof r->native_role, "%s", strcmp(nrole, "none") ? nrole : "");
    r->native_lag = nknown ? nlag : NAN;
    r->native_up = nup;
    rstate before = r->state;
    r->hb_table_absent = absent;
    if (!hb) {
      r->state = RS_OK;
    } else if (absent || !found) {
      r->lag = NAN;
      r->state = RS_STOPPED;
    } else {
      if (!r->hb_seen || seq != r->hb_seq) {
        r->no_progress = 0;
        r->auth_seq_at_last = ds->hb_seq;
      } else if (ds->hb_write_ok && ds->hb_seq > r->auth_seq_at_last) {
        r->no_progress++;
        r->auth_seq_at_last = ds->hb_seq;
      }
      r->hb_seen = 1;
      r->hb_seq = seq;
      r->hb_ts = ts;
      r->lag = now - ts > 0 ? now - ts : 0;
      cvg_trend_add(&r->trend, now, r->lag, seq);
      if (r->no_progress >= p->stall_after)
        r->state = RS_STALLED;
      else if (r->lag > lag_threshold(ds->cfg))
        r->state = RS_LAGGING;
      else
        r->state = RS_OK;
    }
    if (before != r->state) {
      char lag[32];
      cvgi_fmt_double(lag, sizeof lag, r->lag);
      logf_event(m, r->state == RS_OK ? CVG_LOG_INFO : CVG_LOG_WARN, "replica_state", ds, r,
                 "state", cvgi_rstate_names[r->state], "lag_seconds", lag);
    }
  }
  pthread_mutex_unlock(&ds->mu);
  if (rc)
    drop_conn(&j->st);
}

/* ---- canary ---- */

static void job_canary_write(cvg_monitor *m, job *j) {
  dset *ds = j->ds;
  const cvg_cat_probes *p = &ds->cfg->probes;
  rep *r = &ds->reps[ds->cfg->authority];
  cvg_error err;
  cvg_error_clear(&err);
  char token[64];
  double wall = cvg_wall_now();
  snprintf(token, sizeof token, "%" PRIx64 "-%" PRIx64, (uint64_t)(wall * 1e6),
           XXH3_64bits_withSeed(&j, sizeof j, (uint64_t)(wall * 1e9)) ^ (uint64_t)random());
  int rc = ensure_open(&j->st, r, 0, &err);
  if (!rc) /* keep the table small: canaries older than ten timeouts are gone */
    cvg_store_canary_purge(j->st, p->canary_table, ds->cfg->name,
                           wall - 10 * (p->canary_timeout > 60 ? p->canary_timeout : 60), NULL);
  if (!rc)
    rc = cvg_store_canary_write(j->st, p->canary_table, ds->cfg->name, token, wall,
                                p->create_tables, &err);
  pthread_mutex_lock(&ds->mu);
  if (rc) {
    set_up(m, ds, r, 0, &err);
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
    drop_conn(&j->st);
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

static void job_canary_poll(cvg_monitor *m, job *j) {
  dset *ds = j->ds;
  rep *r = &ds->reps[j->rep];
  const cvg_cat_probes *p = &ds->cfg->probes;
  uint32_t bit = 1u << j->rep;
  char tokens[MAX_CANARIES][64];
  size_t n = 0;
  pthread_mutex_lock(&ds->mu);
  for (size_t i = 0; i < ds->n_canaries; i++)
    if (ds->canaries[i].pending & bit)
      memcpy(tokens[n++], ds->canaries[i].token, 64);
  pthread_mutex_unlock(&ds->mu);
  if (n == 0)
    return;
  cvg_error err;
  cvg_error_clear(&err);
  int seen[MAX_CANARIES] = {0};
  int rc = ensure_open(&j->st, r, CVG_STORE_READONLY, &err);
  for (size_t i = 0; !rc && i < n; i++) {
    rc = cvg_store_canary_seen(j->st, p->canary_table, tokens[i], &seen[i], &err);
    if (rc == CVG_ENOTABLE) /* not replicated here yet */
      rc = CVG_OK;
  }
  double now = cvg_mono_now();
  pthread_mutex_lock(&ds->mu);
  if (rc)
    set_up(m, ds, r, 0, &err);
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
    } else if (now - c->written_mono > p->canary_timeout) {
      r->canary_failures++;
      r->fail_t[r->n_fail_t++ % 16] = cvg_wall_now();
      c->pending &= ~bit;
      outcome(ds, 0);
      char t[32];
      snprintf(t, sizeof t, "%g", p->canary_timeout);
      logf_event(m, CVG_LOG_WARN, "canary_timeout", ds, r, "timeout_seconds", t, "token", c->token);
    }
  }
  size_t w = 0; /* drop canaries every replica has settled */
  for (size_t k = 0; k < ds->n_canaries; k++)
    if (ds->canaries[k].pending)
      ds->canaries[w++] = ds->canaries[k];
  ds->n_canaries = w;
  pthread_mutex_unlock(&ds->mu);
  if (rc)
    drop_conn(&j->st);
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
    int rc = ensure_open(&sts[i], &ds->reps[i], CVG_STORE_READONLY | flags, &err);
    if (rc == CVG_OK)
      rc = cvg_store_describe(sts[i], &desc, &err);
    if (rc == CVG_OK && descs)
      descs[k] = desc;
    else
      cvg_table_desc_release(&desc);
    pthread_mutex_lock(&ds->mu);
    set_up(m, ds, &ds->reps[i], rc == CVG_OK, &err);
    pthread_mutex_unlock(&ds->mu);
    if (rc)
      drop_conn(&sts[i]);
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

static void sweep_done(cvg_monitor *m, dset *ds, int kind, int rc, double started,
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
  cvg_trk_check chk = check_at(fc->ds, "full sweep", fc->now, fc->wait, 0, 1);
  cvg_tracker_record(fc->ds->trk, &chk, dv->key, dv->key_len, dv->cls, &ks);
  pthread_mutex_unlock(&fc->ds->mu);
  return 0;
}

static int in_window(const cvg_cat_probes *p) {
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

static int full_sweep(cvg_monitor *m, dset *ds, cvg_store **sts, cvg_error *err) {
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
  full_ctx fc = {ds, idx, k, cvg_wall_now(), confirm_wait(ds)};
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

static int incremental(cvg_monitor *m, dset *ds, cvg_store **sts, uint64_t *compared,
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
        set_up(m, ds, &ds->reps[i], 0, &sr->err);
        pthread_mutex_unlock(&ds->mu);
        drop_conn(&sts[i]);
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
    cvg_trk_check chk = check_at(ds, "incremental check", now, confirm_wait(ds), 1, 0);
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

static void origin_cause(dset *ds, cvg_store **sts);

static void job_full(cvg_monitor *m, job *j) {
  dset *ds = j->ds;
  if (!in_window(&ds->cfg->probes)) {
    j->interval = 60; /* look again in a minute */
    return;
  }
  j->interval = ds->cfg->probes.full_sweep_interval;
  pthread_mutex_lock(&ds->sweep_mu);
  double t0 = cvg_mono_now();
  cvg_error err;
  cvg_error_clear(&err);
  int rc = full_sweep(m, ds, j->sts, &err);
  sweep_done(m, ds, KIND_FULL, rc, t0, &err);
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
    origin_cause(ds, j->sts);
  /* The job's connections are not kept between full sweeps: they are hours apart. */
  for (size_t i = 0; i < ds->n; i++)
    drop_conn(&j->sts[i]);
}

static void job_incr(cvg_monitor *m, job *j) {
  dset *ds = j->ds;
  if (pthread_mutex_trylock(&ds->sweep_mu) != 0)
    return; /* a full sweep is running: it will do better */
  double t0 = cvg_mono_now();
  cvg_error err;
  cvg_error_clear(&err);
  uint64_t n = 0;
  int rc = incremental(m, ds, j->sts, &n, &err);
  sweep_done(m, ds, KIND_INCR, rc, t0, &err);
  pthread_mutex_unlock(&ds->sweep_mu);
  if (rc == CVG_OK)
    origin_cause(ds, j->sts);
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

static void job_inv(cvg_monitor *m, job *j) {
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

/* ---- scheduler and pools ---- */

/* What each kind of job runs, indexed by jkind. */
/* ---- alerts: what the engine reads ---- */

/* A summary of the tracked keys (ds->mu held). */
typedef struct div_summary {
  uint64_t confirmed, suspected, by_class[CVG_CLASS__COUNT];
  double oldest; /* wall time the oldest confirmed key was first seen; 0 none */
  uint32_t shards, conflict_shards;
} div_summary;

static void summarize(const dset *ds, div_summary *sm, unsigned char *shard_bits,
                      unsigned char *conflict_bits) {
  memset(sm, 0, sizeof *sm);
  size_t cur = 0;
  for (const cvg_tracked *t; (t = cvg_tracker_next(ds->trk, &cur));) {
    if (!t->confirmed) {
      sm->suspected++;
      continue;
    }
    sm->confirmed++;
    sm->by_class[t->cls]++;
    if (sm->oldest == 0 || t->first_seen < sm->oldest)
      sm->oldest = t->first_seen;
    if (shard_bits && !(shard_bits[t->shard / 8] & (1u << (t->shard % 8)))) {
      shard_bits[t->shard / 8] |= (unsigned char)(1u << (t->shard % 8));
      sm->shards++;
    }
    if (conflict_bits && t->cls == CVG_CLASS_CONFLICT &&
        !(conflict_bits[t->shard / 8] & (1u << (t->shard % 8)))) {
      conflict_bits[t->shard / 8] |= (unsigned char)(1u << (t->shard % 8));
      sm->conflict_shards++;
    }
  }
}

static int is_named_invariant(const char *name) {
  for (size_t i = 0; cvg_rule_invariants[i]; i++)
    if (strcmp(cvg_rule_invariants[i], name) == 0)
      return 1;
  return 0;
}

static int metric_value(dset *ds, size_t r, const char *name, double now, double *v) {
  const rep *rp = r < ds->n ? &ds->reps[r] : NULL;
  if (rp) {
    if (strcmp(name, "replica_down") == 0) {
      *v = rp->up == 0;
      return rp->up >= 0;
    }
    if (strcmp(name, "sweep_failures") == 0) { /* consecutive, of the worse kind */
      uint32_t a = rp->sweep_streak[KIND_INCR], b = rp->sweep_streak[KIND_FULL];
      *v = (double)(a > b ? a : b);
      return rp->up == 1;
    }
    if (rp->up != 1)
      return 0;
    if (strcmp(name, "lag_seconds") == 0) {
      if (rp->state == RS_STOPPED)
        return *v = INFINITY, 1; /* no heartbeat has ever arrived */
      *v = rp->lag;
      return !isnan(rp->lag);
    }
    if (strcmp(name, "convergence_seconds") == 0) {
      *v = rp->last_conv;
      return !isnan(rp->last_conv);
    }
    if (strcmp(name, "canary_failures") == 0) {
      size_t n = 0;
      for (size_t i = 0; i < 16 && i < rp->n_fail_t; i++)
        n += now - rp->fail_t[i] <= 600;
      *v = (double)n;
      return 1;
    }
    return 0;
  }
  if (strcmp(name, "schema_drift") == 0)
    return *v = ds->schema_drift, 1;
  if (strcmp(name, "untracked_rows") == 0) {
    cvg_trk_stats ts;
    cvg_tracker_stats(ds->trk, &ts);
    return *v = (double)ts.dropped, 1;
  }
  if (strcmp(name, "repair_failures") == 0)
    return *v = (double)ds->rep_last_failed + (ds->rep_error[0] ? 1 : 0), ds->cfg->auto_repair;
  if (strcmp(name, "repair_stalled_runs") == 0)
    return *v = ds->rep_stalled_runs, ds->cfg->auto_repair;
  if (strcmp(name, "repair_refused") == 0)
    return *v = (double)ds->rep_refused, ds->cfg->auto_repair;
  if (strcmp(name, "write_rate") == 0) {
    *v = ds->write_rate;
    return ds->last_incr_wall > 0;
  }
  size_t nb = ds->cfg->shards / 8 + 1;
  unsigned char *sb = calloc(nb, 1), *cb = calloc(nb, 1);
  div_summary sm;
  summarize(ds, &sm, sb, cb);
  free(sb);
  free(cb);
  if (!sb || !cb)
    return 0;
  if (strcmp(name, "divergent_rows") == 0)
    *v = (double)sm.confirmed;
  else if (strcmp(name, "suspected_rows") == 0)
    *v = (double)sm.suspected;
  else if (strcmp(name, "divergent_shards") == 0)
    *v = sm.shards;
  else if (strcmp(name, "conflict_shards") == 0)
    *v = sm.conflict_shards;
  else if (strcmp(name, "divergence_age_seconds") == 0)
    *v = sm.oldest > 0 ? now - sm.oldest : 0;
  else if (strcmp(name, "repair_backlog") == 0)
    *v = (double)sm.confirmed;
  else if (strcmp(name, "divergent_fraction") == 0) {
    if (!ds->have_full || !ds->keys_total)
      return 0;
    *v = (double)sm.confirmed / (double)ds->keys_total;
  } else
    return 0;
  return 1;
}

int cvgi_alert_value(void *ctx, size_t d, size_t r, const cvg_cat_rule *rule, double *v) {
  cvg_monitor *m = ctx;
  dset *ds = &m->ds[d];
  double now = cvg_wall_now();
  int known = 0;
  pthread_mutex_lock(&ds->mu);
  switch (rule->kind) {
  case CVG_RULE_METRIC:
    known = metric_value(ds, r, rule->subject, now, v);
    break;
  case CVG_RULE_INVARIANT: {
    int agg = strcmp(rule->subject, "equal_aggregate") == 0;
    *v = 0;
    for (size_t i = 0; i < ds->n_inv; i++) {
      const inv_result *ir = &ds->inv[i];
      if (agg ? is_named_invariant(ir->name) : strcmp(ir->name, rule->subject) != 0)
        continue;
      if (ir->known) {
        known = 1;
        if (!ir->ok)
          *v = 1;
      }
    }
    break;
  }
  case CVG_RULE_TREND:
    if (r < ds->n && ds->reps[r].up == 1) {
      double tol =
          2 * (ds->cfg->probes.heartbeat_interval > 0 ? ds->cfg->probes.heartbeat_interval : 1);
      cvg_trend_status st = cvg_trend_eval(&ds->reps[r].trend, now, tol);
      *v = st;
      known = st != CVG_TREND_INCOMPLETE;
    } else if (r < ds->n && ds->reps[r].up == 0 && ds->reps[r].trend.n) {
      /* an unreadable replica gives no samples: the trend judges the silence (STOP) */
      double tol =
          2 * (ds->cfg->probes.heartbeat_interval > 0 ? ds->cfg->probes.heartbeat_interval : 1);
      cvg_trend_status st = cvg_trend_eval(&ds->reps[r].trend, now, tol);
      *v = st;
      known = st != CVG_TREND_INCOMPLETE;
    }
    break;
  case CVG_RULE_SLO: {
    if (!ds->cfg->slo.declared || !ds->out_t)
      break;
    size_t total = 0, bad = 0;
    for (size_t i = 0; i < ds->out_n; i++)
      if (now - ds->out_t[i] <= rule->window) {
        total++;
        bad += !ds->out_good[i];
      }
    if (total) {
      *v = ((double)bad / (double)total) / (1 - ds->cfg->slo.objective);
      known = 1;
    }
    break;
  }
  }
  pthread_mutex_unlock(&ds->mu);
  return known;
}

static void fmt_age(char *buf, size_t n, double s) {
  if (s < 60)
    snprintf(buf, n, "%.1fs", s);
  else if (s < 3600)
    snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
  else
    snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
}

/* What repair does about the dataset's divergences, for the detection trace (ds->mu held). */
static void repair_note(const dset *ds, char *buf, size_t size) {
  const char *const *pol = cvg_policy_names;
  int p = ds->cfg->policy >= 0 && ds->cfg->policy <= CVG_POLICY_MERGE ? ds->cfg->policy : 0;
  if (!ds->cfg->auto_repair)
    snprintf(buf, size, "; repair: none attempted (auto_repair is off%s)",
             p ? "; run converge repair" : "; no policy");
  else if (__atomic_load_n(&ds->rep_paused, __ATOMIC_SEQ_CST))
    snprintf(buf, size, "; repair: automatic (policy %s), paused", pol[p]);
  else
    snprintf(buf, size,
             "; repair: automatic (policy %s), %llu runs so far, %llu rows applied, %llu failed%s",
             pol[p], (unsigned long long)ds->rep_runs, (unsigned long long)ds->rep_applied,
             (unsigned long long)ds->rep_failed,
             ds->rep_refused ? ", the last run refused by a safety limit" : "");
}
/* Context annotations for an active alert. */
static void alert_context(void *ctx, size_t d, size_t r, const cvg_cat_rule *rule, double onset,
                          void *vann) {
  cvg_monitor *m = ctx;
  dset *ds = &m->ds[d];
  json_t *ann = vann;
  double now = cvg_wall_now();
  char buf[4096], t1[40], t2[40], a1[32], a2[32];
  fmt_age(a1, sizeof a1, now - onset);
  snprintf(buf, sizeof buf, "since %s (%s)", cvg_fmt_time(t1, sizeof t1, onset), a1);
  json_object_set_new(ann, "duration", json_string(buf));
  pthread_mutex_lock(&ds->mu);
  if (r < ds->n) {
    const rep *rp = &ds->reps[r];
    char lag[32];
    cvgi_fmt_double(lag, sizeof lag, rp->lag);
    if (isnan(rp->lag))
      snprintf(lag, sizeof lag, "unknown ");
    snprintf(buf, sizeof buf, "state %s, lag %ss, heartbeat seq %lld, canary failures %llu%s%s",
             cvgi_rstate_names[cvgi_shown_state(rp)], lag, (long long)rp->hb_seq,
             (unsigned long long)rp->canary_failures, cvgi_rep_error(rp)[0] ? ", last error: " : "",
             cvgi_rep_error(rp));
    json_object_set_new(ann, "replica_state", json_string(buf));
  }
  if (rule->kind == CVG_RULE_INVARIANT) {
    size_t o = 0;
    for (size_t i = 0; i < ds->n_inv && o < sizeof buf - 1; i++) {
      const inv_result *ir = &ds->inv[i];
      int agg = strcmp(rule->subject, "equal_aggregate") == 0;
      if (agg ? is_named_invariant(ir->name) : strcmp(ir->name, rule->subject) != 0)
        continue;
      char v[32], l[32];
      cvgi_fmt_double(v, sizeof v, ir->value);
      cvgi_fmt_double(l, sizeof l, ir->limit);
      o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%s = %s, limit %s%s", o ? "; " : "",
                            ir->name, v, l, ir->known ? (ir->ok ? " (holds)" : " (breached)") : "");
    }
    if (o)
      json_object_set_new(ann, "measured", json_string(buf));
  }
  int divergence = r >= ds->n && rule->kind != CVG_RULE_SLO;
  if (divergence && cvg_tracker_count(ds->trk)) {
    size_t nb = ds->cfg->shards / 8 + 1;
    unsigned char *sb = calloc(nb, 1);
    div_summary sm;
    summarize(ds, &sm, sb, NULL);
    if (sb && sm.shards) {
      size_t o = (size_t)snprintf(buf, sizeof buf, "%u of %u:", sm.shards, ds->cfg->shards);
      unsigned listed = 0;
      for (uint32_t sh = 0; sh < ds->cfg->shards && o < sizeof buf - 16; sh++)
        if (sb[sh / 8] & (1u << (sh % 8))) {
          if (listed++ == 20) {
            o += (size_t)snprintf(buf + o, sizeof buf - o, " ...");
            break;
          }
          o += (size_t)snprintf(buf + o, sizeof buf - o, " %u", sh);
        }
      json_object_set_new(ann, "affected_shards", json_string(buf));
      char cnt[16];
      snprintf(cnt, sizeof cnt, "%u", sm.shards);
      json_object_set_new(ann, "affected_shard_count", json_string(cnt));
    }
    free(sb);
    size_t o = 0;
    buf[0] = '\0';
    for (int c = 1; c < CVG_CLASS__COUNT; c++)
      if (sm.by_class[c])
        o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%s %llu", o ? ", " : "",
                              cvg_class_name((cvg_class)c), (unsigned long long)sm.by_class[c]);
    if (o)
      json_object_set_new(ann, "divergence_classes", json_string(buf));
    if (sm.suspected) {
      snprintf(buf, sizeof buf, "%llu", (unsigned long long)sm.suspected);
      json_object_set_new(ann, "suspected_rows", json_string(buf));
    }
    /* sample keys with each replica's version (keys and versions only; never row values):
     * {"id":5} conflict, shard 13: primary=17 replica=17; ... */
    o = 0;
    size_t listed = 0;
    size_t cur = 0;
    for (const cvg_tracked *t;
         (t = cvg_tracker_next(ds->trk, &cur)) && listed < 5 && o < sizeof buf - 1;) {
      if (!t->confirmed)
        continue;
      json_t *sj = cvgi_tracked_json(ds, t);
      char *k = sj ? json_dumps(json_object_get(sj, "key"), JSON_COMPACT) : NULL;
      o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%s %s, shard %u:", listed ? "; " : "",
                            k ? k : "?", cvg_class_name(t->cls), t->shard);
      free(k);
      json_t *reps = json_object_get(sj, "replicas");
      for (size_t i = 0; i < ds->n && o < sizeof buf - 1; i++) {
        json_t *rj = json_object_get(reps, ds->reps[i].cfg->name);
        const char *st = json_string_value(json_object_get(rj, "state"));
        char *vs = json_dumps(json_object_get(rj, "version"), JSON_COMPACT | JSON_ENCODE_ANY);
        o += (size_t)snprintf(buf + o, sizeof buf - o, " %s=%s%s%s", ds->reps[i].cfg->name,
                              st && strcmp(st, "live") ? st
                              : vs                     ? vs
                                                       : "none",
                              st && strcmp(st, "live") && vs ? "@" : "",
                              st && strcmp(st, "live") && vs ? vs : "");
        free(vs);
      }
      if (o >= sizeof buf)
        o = sizeof buf - 1;
      json_decref(sj);
      listed++;
    }
    if (listed)
      json_object_set_new(ann, "sample_keys", json_string(buf));
  }
  int want_origin = divergence && cvg_tracker_count(ds->trk) && ds->cfg->origin;
  const cvg_trk_episode *tr = cvg_tracker_episode(ds->trk);
  if (divergence && tr->active) {
    char l1[32], l2[32];
    cvgi_fmt_double(l1, sizeof l1, tr->lag_suspected);
    cvgi_fmt_double(l2, sizeof l2, tr->lag_confirmed);
    if (isnan(tr->lag_suspected))
      snprintf(l1, sizeof l1, "unknown ");
    if (isnan(tr->lag_confirmed))
      snprintf(l2, sizeof l2, "unknown ");
    int o = snprintf(buf, sizeof buf, "first seen by the %s at %s (worst lag %ss)", tr->first_probe,
                     cvg_fmt_time(t1, sizeof t1, tr->suspected_at), l1);
    if (tr->confirmed_at > 0 && o > 0 && (size_t)o < sizeof buf) {
      fmt_age(a2, sizeof a2, tr->confirmed_at - tr->suspected_at);
      o += snprintf(buf + o, sizeof buf - o, "; confirmed at %s after %s (worst lag %ss)",
                    cvg_fmt_time(t2, sizeof t2, tr->confirmed_at), a2, l2);
    }
    if (o > 0 && (size_t)o < sizeof buf)
      repair_note(ds, buf + o, sizeof buf - o);
    json_object_set_new(ann, "detection_trace", json_string(buf));
    json_object_set_new(ann, "trace_id", json_string(tr->id));
  }
  if (want_origin && ds->origin_note[0]) /* found by the sweep job (origin_cause) */
    json_object_set_new(ann, "likely_cause", json_string(ds->origin_note));
  pthread_mutex_unlock(&ds->mu);
}

/* A divergent key whose origin is looked up: on the replica holding the divergent copy. */
typedef struct origin_probe {
  unsigned char key[512];
  size_t key_len;
  size_t rep;
} origin_probe;

#define ORIGIN_SAMPLES 20
#define ORIGIN_EVERY 10.0 /* seconds between likely-cause lookups */

/*
 * The writer or pipeline (origin column) most divergent rows share: up to ORIGIN_SAMPLES
 * confirmed keys, each read on the replica whose copy differs from the authority's (or, without
 * an authority, the one with the greatest version), kept in ds->origin_note for the alerts'
 * likely_cause. Run by the sweep jobs on the connections they hold (sts, opened if missing and
 * left open for the job), right after a sweep that confirmed keys and otherwise at most every
 * ORIGIN_EVERY seconds - never by the alert evaluation,
 * which shares its pool with the heartbeats. Reads the replicas, so never under ds->mu.
 */
static void origin_cause(dset *ds, cvg_store **sts) {
  const cvg_cat_dataset *cfg = ds->cfg;
  if (!cfg->origin)
    return;
  pthread_mutex_lock(&ds->mu);
  double now = cvg_mono_now();
  cvg_trk_stats ts;
  cvg_tracker_stats(ds->trk, &ts);
  int fresh = ts.confirmations != ds->origin_seen; /* new confirmations: look at once */
  int due = ts.tracked && (fresh || ds->origin_at == 0 || now - ds->origin_at >= ORIGIN_EVERY);
  if (due) {
    ds->origin_at = now;
    ds->origin_seen = ts.confirmations;
  }
  if (!ts.tracked)
    ds->origin_note[0] = '\0';
  pthread_mutex_unlock(&ds->mu);
  if (!due)
    return;
  origin_probe *pr = calloc(ORIGIN_SAMPLES, sizeof *pr);
  if (!pr)
    return;
  size_t n = 0;
  int auth = cfg->authority;
  pthread_mutex_lock(&ds->mu);
  size_t cur = 0;
  for (const cvg_tracked *t; (t = cvg_tracker_next(ds->trk, &cur)) && n < ORIGIN_SAMPLES;) {
    if (!t->confirmed || t->key_len > sizeof pr[n].key)
      continue;
    size_t best = SIZE_MAX;
    for (size_t i = 0; i < ds->n; i++) {
      if (t->rstates[i] != 1 || (int)i == auth)
        continue;
      if (auth >= 0 && memcmp(&t->contrib[i], &t->contrib[auth], sizeof t->contrib[i]) == 0)
        continue;
      if (best == SIZE_MAX)
        best = i;
      else {
        size_t lb, li;
        const unsigned char *vb = cvg_tracked_version(t, best, &lb);
        const unsigned char *vi = cvg_tracked_version(t, i, &li);
        if (cvg_key_compare(vi, li, vb, lb) > 0)
          best = i;
      }
    }
    if (best == SIZE_MAX)
      continue;
    memcpy(pr[n].key, t->key, t->key_len);
    pr[n].key_len = t->key_len;
    pr[n].rep = best;
    n++;
  }
  pthread_mutex_unlock(&ds->mu);
  char names[ORIGIN_SAMPLES][96];
  size_t counts[ORIGIN_SAMPLES] = {0}, n_names = 0, looked = 0;
  cvg_table_desc desc;
  memset(&desc, 0, sizeof desc);
  const char *pk[16];
  size_t n_pk = 0;
  cvg_buf out, scratch;
  cvg_buf_init(&out, 1u << 20);
  cvg_buf_init(&scratch, 1u << 20);
  for (size_t k = 0; k < n; k++) {
    size_t r = pr[k].rep;
    cvg_error err;
    cvg_error_clear(&err);
    if (!sts[r] && ensure_open(&sts[r], &ds->reps[r], CVG_STORE_READONLY, &err) != CVG_OK)
      continue;
    if (cfg->n_key == 0 && n_pk == 0) { /* the table's primary key, as diff discovers it */
      if (cvg_store_describe(sts[r], &desc, &err) != CVG_OK)
        break;
      for (int pos = 1; pos <= 16; pos++)
        for (size_t c = 0; c < desc.n_cols; c++)
          if (desc.cols[c].pk == pos)
            pk[n_pk++] = desc.cols[c].name;
      if (!n_pk)
        break;
    }
    cvg_scan_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.key_cols = cfg->n_key ? (const char *const *)cfg->key : pk;
    spec.n_key = cfg->n_key ? cfg->n_key : n_pk;
    const char *cols[1] = {cfg->origin};
    int found = 0;
    cvg_buf_reset(&out);
    if (cvg_store_fetch(sts[r], &spec, pr[k].key, pr[k].key_len, cols, 1, &out, &found, &err) !=
            CVG_OK ||
        !found)
      continue;
    cvg_value v;
    size_t nv = 0;
    cvg_buf_reset(&scratch);
    if (cvg_decode_tuple(out.data, out.len, &v, 1, &nv, &scratch) != CVG_OK || nv != 1)
      continue;
    char name[96];
    if (v.type == CVG_TEXT)
      snprintf(name, sizeof name, "%.*s", (int)(v.u.s.n < 90 ? v.u.s.n : 90),
               (const char *)v.u.s.p);
    else if (v.type == CVG_INTEGER)
      snprintf(name, sizeof name, "%lld", (long long)v.u.i);
    else if (v.type == CVG_NULL)
      snprintf(name, sizeof name, "(none)");
    else
      continue;
    looked++;
    size_t i = 0;
    while (i < n_names && strcmp(names[i], name) != 0)
      i++;
    if (i == n_names)
      memcpy(names[n_names++], name, sizeof name);
    counts[i]++;
  }
  cvg_table_desc_release(&desc);
  cvg_buf_release(&out);
  cvg_buf_release(&scratch);
  free(pr);
  size_t top = 0;
  for (size_t i = 1; i < n_names; i++)
    if (counts[i] > counts[top])
      top = i;
  pthread_mutex_lock(&ds->mu);
  if (looked)
    snprintf(ds->origin_note, sizeof ds->origin_note,
             "origin '%s' wrote %zu of %zu sampled divergent rows (column %s)", names[top],
             counts[top], looked, cfg->origin);
  else
    ds->origin_note[0] = '\0';
  pthread_mutex_unlock(&ds->mu);
}

/* ---- automatic repair ---- */

#define REPAIR_MAX_KEYS 10000 /* confirmed keys handed to one repair run */
#define REPAIR_REFUSED_RETRY                                                                       \
  60.0 /* seconds before a run refused by a safety limit is tried again */

static void job_repair(cvg_monitor *m, job *j) {
  dset *ds = j->ds;
  if (__atomic_load_n(&ds->rep_paused, __ATOMIC_SEQ_CST))
    return;
  if (ds->cfg->repair_window_start >= 0) { /* outside its window, repair waits */
    cvg_cat_probes w;
    memset(&w, 0, sizeof w);
    w.window_start = ds->cfg->repair_window_start;
    w.window_end = ds->cfg->repair_window_end;
    if (!in_window(&w))
      return;
  }
  /* a refused run is not retried at every interval (each journals its refusal) */
  pthread_mutex_lock(&ds->mu);
  int wait = ds->rep_refused && cvg_wall_now() - ds->rep_refused_at < REPAIR_REFUSED_RETRY;
  pthread_mutex_unlock(&ds->mu);
  if (wait)
    return;
  unsigned char **keys = calloc(REPAIR_MAX_KEYS, sizeof *keys);
  size_t *lens = calloc(REPAIR_MAX_KEYS, sizeof *lens), n = 0;
  int oom = !keys || !lens;
  pthread_mutex_lock(&ds->mu);
  size_t cur = 0;
  for (const cvg_tracked *t;
       !oom && (t = cvg_tracker_next(ds->trk, &cur)) && n < REPAIR_MAX_KEYS;) {
    if (!t->confirmed)
      continue;
    if (!(keys[n] = malloc(t->key_len ? t->key_len : 1))) {
      oom = 1;
      break;
    }
    memcpy(keys[n], t->key, t->key_len);
    lens[n++] = t->key_len;
  }
  pthread_mutex_unlock(&ds->mu);
  cvg_repair_stats st;
  memset(&st, 0, sizeof st);
  cvg_error err;
  cvg_error_clear(&err);
  int rc = CVG_OK;
  if (oom) {
    rc = cvg_error_set(&err, CVG_ENOMEM, ds->cfg->name, "out of memory collecting keys to repair");
  } else if (n) {
    cvg_repair_opts o;
    memset(&o, 0, sizeof o);
    o.cat = m->cat;
    o.dataset = ds->idx;
    o.shard = -1;
    o.execute = 1;
    o.rows_per_sec = ds->cfg->repair_rate;
    o.batch = (size_t)ds->cfg->repair_batch;
    o.cancel = &m->cancel;
    o.keys = (const unsigned char *const *)keys;
    o.key_lens = lens;
    o.n_keys = n;
    rc = cvg_repair_run(&o, &st, &err);
  }
  for (size_t i = 0; keys && i < n; i++)
    free(keys[i]);
  free(keys);
  free(lens);
  pthread_mutex_lock(&ds->mu);
  if (n || rc) {
    ds->rep_runs++;
    ds->rep_applied += st.applied;
    ds->rep_skipped += st.skipped;
    ds->rep_failed += st.failed;
    ds->rep_last_failed = st.failed;
    ds->rep_last_run = cvg_wall_now();
    ds->rep_last_rate = st.seconds > 0 ? (double)st.applied / st.seconds : 0;
    ds->rep_refused = rc == CVG_ELIMIT ? (st.limit_changes ? st.limit_changes : 1) : 0;
    if (rc == CVG_ELIMIT) {
      ds->rep_refusals++;
      ds->rep_refused_at = cvg_wall_now();
      snprintf(ds->rep_refused_why, sizeof ds->rep_refused_why, "%.399s", err.msg);
      ds->rep_error[0] = '\0';
    } else if (rc) {
      ds->rep_errors++;
      snprintf(ds->rep_error, sizeof ds->rep_error, "%s", err.msg);
    } else {
      ds->rep_error[0] = '\0';
    }
    if (rc != CVG_ELIMIT) /* a refusal is its own alert, not a stall */
      ds->rep_stalled_runs =
          (rc || (st.applied == 0 && st.decisions > 0)) ? ds->rep_stalled_runs + 1 : 0;
    if (!rc && !st.failed && !st.skipped)
      ds->rep_last_ok = cvg_wall_now();
  } else {
    ds->rep_stalled_runs = 0;
    ds->rep_last_failed = 0;
  }
  pthread_mutex_unlock(&ds->mu);
  if (n || rc) {
    char a[32], sk[32], f[32], dv[32], hs[32], hh[65];
    snprintf(hs, sizeof hs, "%lld", (long long)st.head_seq);
    for (int i = 0; i < 32; i++)
      snprintf(hh + 2 * i, 3, "%02x", st.head_hash[i]);
    snprintf(a, sizeof a, "%llu", (unsigned long long)st.applied);
    snprintf(sk, sizeof sk, "%llu", (unsigned long long)st.skipped);
    snprintf(f, sizeof f, "%llu", (unsigned long long)st.failed);
    snprintf(dv, sizeof dv, "%llu", (unsigned long long)st.divergent);
    cvg_log(m->lg, rc || st.failed ? CVG_LOG_WARN : CVG_LOG_INFO,
            rc == CVG_ELIMIT ? "repair_refused"
            : rc             ? "repair_failed"
                             : "repair",
            "dataset", ds->cfg->name, "still_divergent", dv, "applied", a, "skipped", sk, "failed",
            f, "error", rc ? err.msg : "", "journal", m->cat->journal, "journal_head", hs,
            "journal_head_hash", st.head_seq ? hh : "", (const char *)NULL);
  }
}

static int alert_ready(void *ctx, size_t d) {
  cvg_monitor *m = ctx;
  dset *ds = &m->ds[d];
  pthread_mutex_lock(&ds->mu);
  int ready = ds->first_full_wall > 0 && cvg_wall_now() - ds->first_full_wall >=
                                             confirm_wait(ds) + 2 * ds->cfg->probes.sweep_interval;
  if (ds->cfg->probes.full_sweep_interval <= 0) /* no full sweep: the first minute decides */
    ready = cvg_wall_now() - m->started_wall >= 60;
  pthread_mutex_unlock(&ds->mu);
  return ready;
}

/* Saves each dataset's divergence episode when it changed, so a restart continues it. */
static void sync_episodes(cvg_monitor *m) {
  for (size_t i = 0; i < m->n_ds; i++) {
    dset *ds = &m->ds[i];
    cvg_episode ep;
    memset(&ep, 0, sizeof ep);
    pthread_mutex_lock(&ds->mu);
    const cvg_trk_episode *tr = cvg_tracker_episode(ds->trk);
    int active = tr->active, restored = tr->restored;
    snprintf(ep.trace_id, sizeof ep.trace_id, "%s", tr->id);
    snprintf(ep.first_probe, sizeof ep.first_probe, "%s", tr->first_probe);
    ep.suspected_at = tr->suspected_at;
    ep.lag_suspected = tr->lag_suspected;
    ep.confirmed_at = tr->confirmed_at;
    ep.lag_confirmed = tr->lag_confirmed;
    pthread_mutex_unlock(&ds->mu);
    if (restored)
      continue; /* not judged yet since the start: keep what is saved */
    if (active == ds->synced_active && (!active || (strcmp(ep.trace_id, ds->synced.trace_id) == 0 &&
                                                    ep.confirmed_at == ds->synced.confirmed_at)))
      continue;
    cvg_alerts_episode_save(m->alerts, ds->cfg->name, active ? &ep : NULL);
    ds->synced = ep;
    ds->synced_active = active;
  }
}

static void job_alert(cvg_monitor *m, job *j) {
  (void)j;
  sync_episodes(m);
  cvg_alert_source src = {m, cvgi_alert_value, alert_context, alert_ready};
  cvg_alerts_eval(m->alerts, &src, cvg_wall_now());
}

static void (*const job_run[])(cvg_monitor *m, job *j) = {
    [J_HB_WRITE] = job_hb_write,
    [J_HB_READ] = job_hb_read,
    [J_CANARY_WRITE] = job_canary_write,
    [J_CANARY_POLL] = job_canary_poll,
    [J_INCR] = job_incr,
    [J_FULL] = job_full,
    [J_INV] = job_inv,
    [J_ALERT] = job_alert,
    [J_REPAIR] = job_repair,
};

static void *worker_main(void *arg) {
  cvg_monitor *m = ((void **)arg)[0];
  int which = (int)(intptr_t)((void **)arg)[1];
  free(arg);
  pool *p = &m->pools[which];
  pthread_mutex_lock(&m->mu);
  for (;;) {
    while (!p->head && !m->stopping)
      pthread_cond_wait(&p->cv, &m->mu);
    if (m->stopping)
      break;
    job *j = p->head;
    p->head = j->next;
    if (!p->head)
      p->tail = NULL;
    pthread_mutex_unlock(&m->mu);
    job_run[j->kind](m, j);
    pthread_mutex_lock(&m->mu);
    double now = cvg_mono_now();
    j->running = 0;
    j->next_due += j->interval;
    if (j->next_due < now)
      j->next_due = now; /* fell behind: run again soon, never in a burst */
    pthread_cond_signal(&m->sched_cv);
  }
  pthread_mutex_unlock(&m->mu);
  return NULL;
}

static void *sched_main(void *arg) {
  cvg_monitor *m = arg;
  pthread_mutex_lock(&m->mu);
  while (!m->stopping) {
    double now = cvg_mono_now();
    m->sched_beat = now;
    double next = now + 0.5;
    for (size_t i = 0; i < m->n_jobs; i++) {
      job *j = &m->jobs[i];
      if (j->running)
        continue;
      if (j->kind == J_FULL && j->next_due > now) {
        pthread_mutex_lock(&j->ds->mu); /* lock order: m->mu, then a dataset's mu */
        if (j->ds->full_requested)
          j->next_due = now; /* an incremental check overflowed */
        pthread_mutex_unlock(&j->ds->mu);
      }
      if (j->next_due <= now) {
        j->running = 1;
        j->next = NULL;
        pool *p = &m->pools[j->pool];
        if (p->tail)
          p->tail->next = j;
        else
          p->head = j;
        p->tail = j;
        pthread_cond_signal(&p->cv);
      } else if (j->next_due < next) {
        next = j->next_due;
      }
    }
    double wait = next - cvg_mono_now();
    if (wait < 0.001)
      wait = 0.001;
    struct timespec ts;
    cvg_deadline_after(&ts, wait); /* due times are monotonic, and so is this wait */
    pthread_cond_timedwait(&m->sched_cv, &m->mu, &ts);
  }
  pthread_mutex_unlock(&m->mu);
  return NULL;
}

static int add_job(cvg_monitor *m, jkind kind, dset *ds, size_t r, double interval, int pool_,
                   double first) {
  job *j = &m->jobs[m->n_jobs++];
  memset(j, 0, sizeof *j);
  j->kind = kind;
  j->ds = ds;
  j->rep = r;
  j->interval = interval;
  j->pool = pool_;
  j->next_due = first;
  if (kind == J_INCR || kind == J_FULL) {
    j->sts = calloc(ds->n, sizeof *j->sts);
    if (!j->sts)
      return CVG_ENOMEM;
  }
  return CVG_OK;
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
    cvg_tracker_config tc = {c->n_replicas, c->shards, c->probes.max_tracked, c->version != NULL};
    if (!ds->reps || !ds->out_t || !ds->out_good ||
        cvg_tracker_new(&ds->trk, &tc, on_tracker_event, ds) != CVG_OK)
      goto oom;
    for (size_t r = 0; r < ds->n; r++) {
      rep *rp = &ds->reps[r];
      rp->cfg = &c->replicas[r];
      rp->up = -1;
      rp->lag = NAN;
      rp->native_lag = NAN;
      rp->native_up = 1;
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
      rc = add_job(m, J_HB_WRITE, ds, (size_t)c->authority, p->heartbeat_interval, 0, now);
    for (size_t r = 0; !rc && r < ds->n; r++)
      if ((int)r != c->authority)
        rc = add_job(m, J_HB_READ, ds, r, hb ? p->heartbeat_interval : 5, 0, now + 0.05);
    if (!rc && c->authority >= 0 && p->canary_interval > 0) {
      rc = add_job(m, J_CANARY_WRITE, ds, (size_t)c->authority, p->canary_interval, 0, now + 0.1);
      double poll = p->canary_interval / 10 < CANARY_POLL ? p->canary_interval / 10 : CANARY_POLL;
      for (size_t r = 0; !rc && r < ds->n; r++)
        if ((int)r != c->authority)
          rc = add_job(m, J_CANARY_POLL, ds, r, poll, 0, now + 0.1);
    }
    if (!rc && p->full_sweep_interval > 0)
      rc = add_job(m, J_FULL, ds, 0, p->full_sweep_interval, 1, now + 0.2);
    if (!rc && p->sweep_interval > 0)
      rc = add_job(m, J_INCR, ds, 0, p->sweep_interval, 1, now + p->sweep_interval);
    if (!rc)
      rc = add_job(m, J_INV, ds, 0, INVARIANT_INTERVAL, 0, now + 1);
    if (!rc && c->auto_repair)
      rc = add_job(m, J_REPAIR, ds, 0, c->repair_interval, 1, now + c->repair_interval);
    if (rc)
      goto oom;
  }
  if (m->n_ds && add_job(m, J_ALERT, &m->ds[0], 0, cat->alerting.evaluation_interval, 0, now + 1))
    goto oom;
  if (cvg_alerts_new(&m->alerts, cat, lg, err) != CVG_OK) {
    cvg_monitor_free(m);
    return err ? err->status : CVG_EIO;
  }
  for (size_t i = 0; i < m->n_ds; i++) {
    dset *ds = &m->ds[i];
    cvg_episode ep;
    if (!cvg_alerts_episode_load(m->alerts, ds->cfg->name, &ep))
      continue;
    cvg_trk_episode tr;
    memset(&tr, 0, sizeof tr);
    snprintf(tr.id, sizeof tr.id, "%s", ep.trace_id);
    snprintf(tr.first_probe, sizeof tr.first_probe, "%s", ep.first_probe);
    tr.suspected_at = ep.suspected_at;
    tr.lag_suspected = ep.lag_suspected;
    tr.confirmed_at = ep.confirmed_at;
    tr.lag_confirmed = ep.lag_confirmed;
    cvg_tracker_restore_episode(ds->trk, &tr);
    ds->synced = ep;
    ds->synced_active = 1;
  }
  m->pools[0].n_threads = (size_t)cat->workers;
  m->pools[1].n_threads = (size_t)cat->workers;
  m->started_wall = cvg_wall_now();
  *out = m;
  return CVG_OK;
oom:
  cvg_monitor_free(m);
  return cvg_error_set(err, CVG_ENOMEM, cat->path, "out of memory");
}

int cvg_monitor_start(cvg_monitor *m, cvg_error *err) {
  for (int p = 0; p < 2; p++) {
    pool *pl = &m->pools[p];
    pl->threads = calloc(pl->n_threads, sizeof *pl->threads);
    if (!pl->threads)
      goto fail;
    for (size_t i = 0; i < pl->n_threads; i++) {
      void **arg = malloc(2 * sizeof *arg);
      if (!arg)
        goto fail;
      arg[0] = m;
      arg[1] = (void *)(intptr_t)p;
      if (pthread_create(&pl->threads[i], NULL, worker_main, arg) != 0) {
        free(arg);
        goto fail;
      }
      pl->started++;
    }
  }
  m->sched_beat = cvg_mono_now();
  if (pthread_create(&m->sched, NULL, sched_main, m) != 0)
    goto fail;
  m->sched_started = 1;
  return CVG_OK;
fail:
  cvg_monitor_stop(m);
  return cvg_error_set(err, CVG_ETHREAD, m->cat->path, "cannot start the probe threads");
}

void cvg_monitor_stop(cvg_monitor *m) {
  if (!m)
    return;
  pthread_mutex_lock(&m->mu);
  m->stopping = 1;
  __atomic_store_n(&m->cancel, 1, __ATOMIC_RELAXED);
  pthread_cond_broadcast(&m->sched_cv);
  pthread_cond_broadcast(&m->pools[0].cv);
  pthread_cond_broadcast(&m->pools[1].cv);
  pthread_mutex_unlock(&m->mu);
  if (m->sched_started)
    pthread_join(m->sched, NULL);
  m->sched_started = 0;
  for (int p = 0; p < 2; p++) {
    for (size_t i = 0; i < m->pools[p].started; i++)
      pthread_join(m->pools[p].threads[i], NULL);
    m->pools[p].started = 0;
    free(m->pools[p].threads);
    m->pools[p].threads = NULL;
  }
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
    pthread_mutex_destroy(&ds->mu);
    pthread_mutex_destroy(&ds->sweep_mu);
  }
  free(m->ds);
  cvg_alerts_free(m->alerts);
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
  int rc = incremental(m, ds, j->sts, compared, err);
  sweep_done(m, ds, KIND_INCR, rc, t0, err);
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
  int rc = full_sweep(m, ds, sts, err);
  sweep_done(m, ds, KIND_FULL, rc, t0, err);
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
    __atomic_store_n(&ds->rep_paused, pause ? 1 : 0, __ATOMIC_SEQ_CST);
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
