/* SPDX-License-Identifier: MIT */
/*
 * The watch's quick probes: heartbeat, canary and invariants, each a job (sched.c).
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
 * Invariants. Every second the declared bounds (lag, divergent rows, agreeing replicas, age of
 * the oldest divergence, equal aggregates) are judged from what the other probes found; a
 * change of verdict is logged.
 */
#include "converge/diff.h"
#include "converge/json.h"
#include "converge/mclock.h"
#include "converge/probe.h"
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
