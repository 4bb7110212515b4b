/* SPDX-License-Identifier: MIT */
/*
 * What the alert engine reads from the watch (cvg_alert_source, alert.h): the value of each
 * named metric per dataset and replica, the annotations of an alert (affected shards, sample
 * keys, detection trace, likely cause, measured values), whether a dataset is ready to be judged,
 * and the evaluation job that runs the engine and saves each dataset's divergence episode
 * (wstate.c). The likely cause itself is found by the sweep jobs (origin.c).
 */
#include "converge/diff.h"
#include "converge/json.h"
#include "converge/mclock.h"
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

/* ---- the metrics rules may name (catalog.h cvg_signals): one getter each ---- */

/* What a getter reads: the dataset (ds->mu held), the replica for per-replica metrics, the
 * summary of the tracked keys for those that need one, and the wall time. Returns 1 when the
 * value is known. */
typedef struct sig_in {
  const dset *ds;
  const rep *rp;
  const div_summary *sm;
  double now;
} sig_in;

static int g_lag(const sig_in *in, double *v) {
  if (in->rp->state == RS_STOPPED)
    return *v = INFINITY, 1; /* no heartbeat has ever arrived */
  *v = in->rp->lag;
  return !isnan(in->rp->lag);
}
static int g_conv(const sig_in *in, double *v) {
  *v = in->rp->last_conv;
  return !isnan(in->rp->last_conv);
}
static int g_canary_failures(const sig_in *in, double *v) { /* in the last ten minutes */
  size_t n = 0;
  for (size_t i = 0; i < 16 && i < in->rp->n_fail_t; i++)
    n += in->now - in->rp->fail_t[i] <= 600;
  *v = (double)n;
  return 1;
}
static int g_down(const sig_in *in, double *v) {
  *v = in->rp->up == 0;
  return in->rp->up >= 0;
}
static int g_sweep_failures(const sig_in *in, double *v) { /* consecutive, of the worse kind */
  uint32_t a = in->rp->sweep_streak[KIND_INCR], b = in->rp->sweep_streak[KIND_FULL];
  *v = (double)(a > b ? a : b);
  return in->rp->up == 1;
}
static int g_divergent(const sig_in *in, double *v) {
  return *v = (double)in->sm->confirmed, 1;
}
static int g_suspected(const sig_in *in, double *v) {
  return *v = (double)in->sm->suspected, 1;
}
static int g_fraction(const sig_in *in, double *v) {
  if (!in->ds->have_full || !in->ds->keys_total)
    return 0;
  return *v = (double)in->sm->confirmed / (double)in->ds->keys_total, 1;
}
static int g_shards(const sig_in *in, double *v) {
  return *v = in->sm->shards, 1;
}
static int g_conflict_shards(const sig_in *in, double *v) {
  return *v = in->sm->conflict_shards, 1;
}
static int g_schema_drift(const sig_in *in, double *v) {
  return *v = in->ds->schema_drift, 1;
}
static int g_age(const sig_in *in, double *v) {
  return *v = in->sm->oldest > 0 ? in->now - in->sm->oldest : 0, 1;
}
static int g_untracked(const sig_in *in, double *v) {
  cvg_trk_stats ts;
  cvg_tracker_stats(in->ds->trk, &ts);
  return *v = (double)ts.dropped, 1;
}
static int g_write_rate(const sig_in *in, double *v) {
  *v = in->ds->write_rate;
  return in->ds->last_incr_wall > 0;
}
static int g_repair_failures(const sig_in *in, double *v) {
  *v = (double)in->ds->rep_last_failed + (in->ds->rep_error[0] ? 1 : 0);
  return in->ds->cfg->auto_repair;
}
static int g_repair_stalled(const sig_in *in, double *v) {
  return *v = in->ds->rep_stalled_runs, in->ds->cfg->auto_repair;
}
static int g_repair_refused(const sig_in *in, double *v) {
  return *v = (double)in->ds->rep_refused, in->ds->cfg->auto_repair;
}

typedef struct sig_getter {
  int (*get)(const sig_in *in, double *v);
  unsigned char summary; /* needs the summary of the tracked keys */
  unsigned char any_up;  /* per replica: answered while the replica is not up */
} sig_getter;

static const sig_getter getters[] = {
    [CVG_SIG_LAG_SECONDS] = {g_lag, 0, 0},
    [CVG_SIG_CONVERGENCE_SECONDS] = {g_conv, 0, 0},
    [CVG_SIG_CANARY_FAILURES] = {g_canary_failures, 0, 0},
    [CVG_SIG_REPLICA_DOWN] = {g_down, 0, 1},
    [CVG_SIG_SWEEP_FAILURES] = {g_sweep_failures, 0, 1},
    [CVG_SIG_DIVERGENT_ROWS] = {g_divergent, 1, 0},
    [CVG_SIG_SUSPECTED_ROWS] = {g_suspected, 1, 0},
    [CVG_SIG_DIVERGENT_FRACTION] = {g_fraction, 1, 0},
    [CVG_SIG_DIVERGENT_SHARDS] = {g_shards, 1, 0},
    [CVG_SIG_CONFLICT_SHARDS] = {g_conflict_shards, 1, 0},
    [CVG_SIG_SCHEMA_DRIFT] = {g_schema_drift, 0, 0},
    [CVG_SIG_DIVERGENCE_AGE_SECONDS] = {g_age, 1, 0},
    [CVG_SIG_UNTRACKED_ROWS] = {g_untracked, 0, 0},
    [CVG_SIG_WRITE_RATE] = {g_write_rate, 0, 0},
    [CVG_SIG_REPAIR_BACKLOG] = {g_divergent, 1, 0},
    [CVG_SIG_REPAIR_FAILURES] = {g_repair_failures, 0, 0},
    [CVG_SIG_REPAIR_STALLED_RUNS] = {g_repair_stalled, 0, 0},
    [CVG_SIG_REPAIR_REFUSED] = {g_repair_refused, 0, 0},
};
_Static_assert(sizeof getters / sizeof getters[0] == CVG_SIG__COUNT,
               "every metric of catalog.h cvg_signals needs a getter here");

/* The value of metric name on replica r (or, r >= ds->n, on the dataset); ds->mu held. */
static int metric_value(dset *ds, size_t r, const char *name, double now, double *v) {
  int sig = cvg_signal_parse(name);
  const rep *rp = r < ds->n ? &ds->reps[r] : NULL;
  /* !get: a hole in the designated table, which the size check above cannot see */
  if (sig < 0 || !getters[sig].get || cvg_signals[sig].scope != (rp ? 1 : 2))
    return 0;
  const sig_getter *g = &getters[sig];
  if (rp && rp->up != 1 && !g->any_up)
    return 0;
  sig_in in = {ds, rp, NULL, now};
  div_summary sm;
  if (g->summary) {
    size_t nb = ds->cfg->shards / 8 + 1;
    unsigned char *sb = calloc(nb, 1), *cb = calloc(nb, 1);
    if (sb && cb)
      summarize(ds, &sm, sb, cb);
    free(sb);
    free(cb);
    if (!sb || !cb)
      return 0;
    in.sm = &sm;
  }
  return g->get(&in, v);
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
/* The replica's state, lag, heartbeat and last error (ds->mu held). */
static void ann_replica_state(const rep *rp, json_t *ann) {
  char buf[4096], lag[32]; /* the last error alone may be 2 KiB */
  cvgi_fmt_double(lag, sizeof lag, rp->lag);
  if (isnan(rp->lag))
    snprintf(lag, sizeof lag, "unknown ");
  snprintf(buf, sizeof buf, "state %s, lag %ss, heartbeat seq %lld, canary failures %llu%s%s",
           cvgi_rstate_names[cvgi_shown_state(rp)], lag, (long long)rp->hb_seq,
           (unsigned long long)rp->canary_failures, cvgi_rep_error(rp)[0] ? ", last error: " : "",
           cvgi_rep_error(rp));
  json_object_set_new(ann, "replica_state", json_string(buf));
}

/* The measured value and limit of each invariant the rule watches (ds->mu held). */
static void ann_measured(const dset *ds, const cvg_cat_rule *rule, json_t *ann) {
  char buf[4096];
  size_t o = 0;
  for (size_t i = 0; i < ds->n_inv && o < sizeof buf - 1; i++) {
    const inv_result *ir = &ds->inv[i];
    int agg = strcmp(rule->subject, "equal_aggregate") == 0;
    if (agg ? is_named_invariant(ir->name) : strcmp(ir->name, rule->subject) != 0)
      continue;
    char v[32], l[32];
    cvgi_fmt_double(v, sizeof v, ir->value);
    cvgi_fmt_double(l, sizeof l, ir->limit);
    o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%s = %s, limit %s%s", o ? "; " : "", ir->name,
                          v, l, ir->known ? (ir->ok ? " (holds)" : " (breached)") : "");
  }
  if (o)
    json_object_set_new(ann, "measured", json_string(buf));
}

/* The affected shards (at most 20 listed), the classes and the suspected rows (ds->mu held). */
static void ann_shards(dset *ds, json_t *ann) {
  char buf[4096];
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
}

/* Up to five confirmed keys with each replica's version - keys and versions only, never row
 * values: {"id":5} conflict, shard 13: primary=17 replica=17; ... (ds->mu held) */
static void ann_sample_keys(const dset *ds, json_t *ann) {
  char buf[4096];
  size_t o = 0, listed = 0, cur = 0;
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

/* The episode's detection trace: first seen, confirmed, the repair so far (ds->mu held). */
static void ann_trace(const dset *ds, const cvg_trk_episode *tr, json_t *ann) {
  char buf[4096], t1[40], t2[40], a2[32], l1[32], l2[32];
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

/* Context annotations for an active alert. */
static void alert_context(void *ctx, size_t d, size_t r, const cvg_cat_rule *rule, double onset,
                          void *vann) {
  cvg_monitor *m = ctx;
  dset *ds = &m->ds[d];
  json_t *ann = vann;
  double now = cvg_wall_now();
  char buf[128], t1[40], a1[32];
  fmt_age(a1, sizeof a1, now - onset);
  snprintf(buf, sizeof buf, "since %s (%s)", cvg_fmt_time(t1, sizeof t1, onset), a1);
  json_object_set_new(ann, "duration", json_string(buf));
  pthread_mutex_lock(&ds->mu);
  if (r < ds->n)
    ann_replica_state(&ds->reps[r], ann);
  if (rule->kind == CVG_RULE_INVARIANT)
    ann_measured(ds, rule, ann);
  int divergence = r >= ds->n && rule->kind != CVG_RULE_SLO;
  if (divergence && cvg_tracker_count(ds->trk)) {
    ann_shards(ds, ann);
    ann_sample_keys(ds, ann);
  }
  int want_origin = divergence && cvg_tracker_count(ds->trk) && ds->cfg->origin;
  const cvg_trk_episode *tr = cvg_tracker_episode(ds->trk);
  if (divergence && tr->active)
    ann_trace(ds, tr, ann);
  if (want_origin && ds->origin_note[0]) /* found by the sweep job (origin.c) */
    json_object_set_new(ann, "likely_cause", json_string(ds->origin_note));
  pthread_mutex_unlock(&ds->mu);
}

static int alert_ready(void *ctx, size_t d) {
  cvg_monitor *m = ctx;
  dset *ds = &m->ds[d];
  pthread_mutex_lock(&ds->mu);
  int ready =
      ds->first_full_wall > 0 && cvg_wall_now() - ds->first_full_wall >=
                                     cvgi_confirm_wait(ds) + 2 * ds->cfg->probes.sweep_interval;
  if (ds->cfg->probes.full_sweep_interval <= 0) /* no full sweep: the first minute decides */
    ready = cvg_wall_now() - m->started_wall >= 60;
  pthread_mutex_unlock(&ds->mu);
  return ready;
}

void cvgi_job_alert(cvg_monitor *m, job *j) {
  (void)j;
  cvgi_episodes_sync(m);
  cvg_alert_source src = {m, cvgi_alert_value, alert_context, alert_ready};
  cvg_alerts_eval(m->alerts, &src, cvg_wall_now());
}
