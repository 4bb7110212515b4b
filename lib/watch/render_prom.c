/* SPDX-License-Identifier: MIT */
/*
 * /metrics: the watch's state in the Prometheus text format, driven by one table of families
 * (name, type, help, and how to get its samples), in the order they are shown. Reads the state
 * the jobs keep (watch_int.h) under the same locks, and never waits on a database. A new metric
 * is one row in `families` and, unless it is one value per replica or per dataset, one samples
 * function.
 */
#include "converge/json.h"
#include "converge/mclock.h"
#include "converge/version.h"
#include "watch_int.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* ---- rendering: the Prometheus text format ---- */

typedef struct out {
  cvg_buf *b;
  int rc;
} out;

static void emit(out *o, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void emit(out *o, const char *fmt, ...) {
  if (o->rc)
    return;
  char line[2048];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if ((size_t)n >= sizeof line)
    n = (int)sizeof line - 1;
  o->rc = cvg_buf_append(o->b, line, (size_t)n);
}

/* A label value escaped as the text format requires (\\, \", \n). */
static const char *esc(char *buf, size_t size, const char *s) {
  size_t j = 0;
  for (; *s && j + 3 < size; s++) {
    if (*s == '\\' || *s == '"') {
      buf[j++] = '\\';
      buf[j++] = *s;
    } else if (*s == '\n') {
      buf[j++] = '\\';
      buf[j++] = 'n';
    } else {
      buf[j++] = *s;
    }
  }
  buf[j] = '\0';
  return buf;
}

static void head(out *o, const char *name, const char *type, const char *help) {
  emit(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void emit_hist(out *o, const char *name, const char *labels, const hist *h, const double *le,
                      size_t n_le) {
  uint64_t cum = 0;
  for (size_t i = 0; i < n_le; i++) {
    cum += h->bucket[i];
    emit(o, "%s_bucket{%s,le=\"%g\"} %" PRIu64 "\n", name, labels, le[i], cum);
  }
  cum += h->bucket[n_le];
  emit(o, "%s_bucket{%s,le=\"+Inf\"} %" PRIu64 "\n", name, labels, cum);
  char sum[40];
  cvgi_fmt_double(sum, sizeof sum, h->sum);
  emit(o, "%s_sum{%s} %s\n%s_count{%s} %" PRIu64 "\n", name, labels, sum, name, labels, h->count);
}

/* A value per replica (ds->mu held): returns 0 to leave the replica out. */
typedef int (*rep_value_fn)(const dset *ds, size_t i, double *v);

static int v_up(const dset *ds, size_t i, double *v) {
  *v = ds->reps[i].up;
  return ds->reps[i].up >= 0;
}
static int v_lag(const dset *ds, size_t i, double *v) {
  *v = ds->reps[i].lag;
  return ds->cfg->authority >= 0 && ds->reps[i].up == 1 && ds->reps[i].state != RS_UNKNOWN;
}
static int v_native_lag(const dset *ds, size_t i, double *v) {
  *v = ds->reps[i].native_lag;
  return ds->reps[i].native_role[0] && ds->reps[i].up == 1 && !isnan(ds->reps[i].native_lag);
}
static int v_native_up(const dset *ds, size_t i, double *v) {
  *v = ds->reps[i].native_up;
  return ds->reps[i].native_role[0] && ds->reps[i].up == 1;
}
static int v_hb_seq(const dset *ds, size_t i, double *v) {
  *v = (double)ds->reps[i].hb_seq;
  return ds->reps[i].hb_seen;
}
static int v_canary_failures(const dset *ds, size_t i, double *v) {
  *v = (double)ds->reps[i].canary_failures;
  return ds->cfg->authority >= 0 && ds->cfg->probes.canary_interval > 0 &&
         (int)i != ds->cfg->authority;
}
static int v_trend(const dset *ds, size_t i, double *v) {
  if ((int)i == ds->cfg->authority || ds->cfg->probes.heartbeat_interval <= 0)
    return 0;
  double tol = 2 * ds->cfg->probes.heartbeat_interval;
  *v = cvg_trend_eval(&ds->reps[i].trend, cvg_wall_now(), tol);
  return 1;
}

static int v_read_errors(const dset *ds, size_t i, double *v) {
  *v = (double)ds->reps[i].read_errors;
  return 1;
}

static int v_probe_errors(const dset *ds, size_t i, double *v) {
  *v = (double)ds->reps[i].probe_errors;
  return 1;
}

/* A value per dataset (ds->mu held): returns 0 to leave the dataset out. */
typedef int (*ds_value_fn)(const dset *ds, double *v);

static int v_divergent_shards(const dset *ds, double *v) {
  uint64_t diff = 0;
  unsigned char up[CVG_DIFF_MAX_REPLICAS];
  cvgi_reachable(ds, up);
  for (uint32_t sh = 0; sh < ds->cfg->shards; sh++)
    diff += (uint64_t)cvg_tracker_shard_differs(ds->trk, sh, up);
  *v = (double)diff;
  return ds->have_full;
}
static int v_rows(const dset *ds, double *v) {
  *v = (double)ds->keys_total;
  return ds->have_full;
}
static int v_untracked(const dset *ds, double *v) {
  cvg_trk_stats st;
  cvg_tracker_stats(ds->trk, &st);
  *v = (double)st.dropped;
  return 1;
}
static int v_last_full(const dset *ds, double *v) {
  *v = ds->last_full_wall;
  return ds->have_full;
}
static int v_schema_drift(const dset *ds, double *v) {
  *v = ds->schema_drift;
  return 1;
}

/* One family with a sample per dataset, labelled dataset. */
static int v_rep_runs(const dset *ds, double *v) {
  return *v = (double)ds->rep_runs, ds->cfg->auto_repair;
}
static int v_rep_applied(const dset *ds, double *v) {
  return *v = (double)ds->rep_applied, ds->cfg->auto_repair;
}
static int v_rep_skipped(const dset *ds, double *v) {
  return *v = (double)ds->rep_skipped, ds->cfg->auto_repair;
}

static int v_rep_deferred(const dset *ds, double *v) {
  return *v = (double)ds->rep_deferred, ds->cfg->auto_repair;
}
static int v_rep_failed(const dset *ds, double *v) {
  return *v = (double)ds->rep_failed, ds->cfg->auto_repair;
}
static int v_rep_backlog(const dset *ds, double *v) {
  cvg_trk_stats st;
  cvg_tracker_stats(ds->trk, &st);
  return *v = (double)st.confirmed, ds->cfg->auto_repair;
}
static int v_rep_stalled(const dset *ds, double *v) {
  return *v = ds->rep_stalled_runs, ds->cfg->auto_repair;
}
static int v_rep_refused(const dset *ds, double *v) {
  return *v = (double)ds->rep_refused, ds->cfg->auto_repair;
}
static int v_rep_refusals(const dset *ds, double *v) {
  return *v = (double)ds->rep_refusals, ds->cfg->auto_repair;
}
static int v_rep_paused(const dset *ds, double *v) {
  return *v = __atomic_load_n(&ds->rep_paused, __ATOMIC_SEQ_CST), ds->cfg->auto_repair;
}
static int v_rep_rate(const dset *ds, double *v) {
  return *v = ds->rep_last_rate, ds->cfg->auto_repair && ds->rep_last_run > 0;
}
static int v_rep_last_ok(const dset *ds, double *v) {
  return *v = ds->rep_last_ok, ds->cfg->auto_repair && ds->rep_last_ok > 0;
}

/* ---- families whose samples are not one value per replica or per dataset ---- */

/* Samples of one family for one dataset (ds->mu held, unless the family says otherwise). */
typedef void (*samples_fn)(out *o, cvg_monitor *m, dset *ds, const char *name);

static void s_build_info(out *o, cvg_monitor *m, dset *ds, const char *name) {
  (void)m, (void)ds;
  emit(o, "%s{version=\"%s\"} 1\n", name, CVG_VERSION);
}
static void s_start_time(out *o, cvg_monitor *m, dset *ds, const char *name) {
  (void)ds;
  emit(o, "%s %.3f\n", name, m->started_wall);
}
static void s_replica_state(out *o, cvg_monitor *m, dset *ds, const char *name) {
  char e1[512], e2[512];
  (void)m;
  for (size_t i = 0; i < ds->n; i++) {
    rstate st = cvgi_shown_state(&ds->reps[i]);
    if (st == RS_UNKNOWN)
      continue;
    for (int s = RS_OK; s <= RS_ERROR; s++)
      emit(o, "%s{dataset=\"%s\",replica=\"%s\",state=\"%s\"} %d\n", name,
           esc(e1, sizeof e1, ds->cfg->name), esc(e2, sizeof e2, ds->reps[i].cfg->name),
           cvgi_rstate_names[s], (int)st == s);
  }
}
static void s_convergence(out *o, cvg_monitor *m, dset *ds, const char *name) {
  char e1[512], e2[512], labels[1100];
  (void)m;
  if (ds->cfg->authority < 0 || ds->cfg->probes.canary_interval <= 0)
    return;
  for (size_t i = 0; i < ds->n; i++) {
    if ((int)i == ds->cfg->authority)
      continue;
    snprintf(labels, sizeof labels, "dataset=\"%s\",replica=\"%s\"",
             esc(e1, sizeof e1, ds->cfg->name), esc(e2, sizeof e2, ds->reps[i].cfg->name));
    emit_hist(o, name, labels, &ds->reps[i].conv, cvgi_conv_le, CONV_BUCKETS);
  }
}
/* Per (shard, class, state) over the tracked keys; shards without divergent keys are left out. */
static void s_divergent_rows(out *o, cvg_monitor *m, dset *ds, const char *name) {
  char e1[512];
  (void)m;
  uint32_t ns = ds->cfg->shards;
  uint64_t *cnt = calloc((size_t)ns * CVG_CLASS__COUNT * 2, sizeof *cnt);
  if (!cnt) {
    o->rc = CVG_ENOMEM;
    return;
  }
  size_t cur = 0;
  for (const cvg_tracked *t; (t = cvg_tracker_next(ds->trk, &cur));)
    cnt[((size_t)t->shard * CVG_CLASS__COUNT + t->cls) * 2 + (size_t)t->confirmed]++;
  for (uint32_t sh = 0; sh < ns; sh++)
    for (int c = 1; c < CVG_CLASS__COUNT; c++)
      for (int st = 0; st < 2; st++) {
        uint64_t v = cnt[((size_t)sh * CVG_CLASS__COUNT + (size_t)c) * 2 + (size_t)st];
        if (v)
          emit(o, "%s{dataset=\"%s\",shard=\"%u\",class=\"%s\",state=\"%s\"} %" PRIu64 "\n", name,
               esc(e1, sizeof e1, ds->cfg->name), sh, cvg_class_name((cvg_class)c),
               st ? "confirmed" : "suspected", v);
      }
  free(cnt);
}
static void s_dataset_divergent_rows(out *o, cvg_monitor *m, dset *ds, const char *name) {
  char e1[512];
  uint64_t cnt[CVG_CLASS__COUNT][2];
  (void)m;
  memset(cnt, 0, sizeof cnt);
  size_t cur = 0;
  for (const cvg_tracked *t; (t = cvg_tracker_next(ds->trk, &cur));)
    cnt[t->cls][t->confirmed]++;
  for (int c = 1; c < CVG_CLASS__COUNT; c++)
    for (int st = 0; st < 2; st++)
      emit(o, "%s{dataset=\"%s\",class=\"%s\",state=\"%s\"} %" PRIu64 "\n", name,
           esc(e1, sizeof e1, ds->cfg->name), cvg_class_name((cvg_class)c),
           st ? "confirmed" : "suspected", cnt[c][st]);
}
static void s_impact(out *o, cvg_monitor *m, dset *ds, const char *name) {
  char e1[512], e2[512];
  (void)m;
  if (ds->cfg->impact.per_row <= 0)
    return;
  cvg_trk_stats st;
  cvg_tracker_stats(ds->trk, &st);
  emit(o, "%s{dataset=\"%s\",unit=\"%s\"} %.17g\n", name, esc(e1, sizeof e1, ds->cfg->name),
       esc(e2, sizeof e2, ds->cfg->impact.unit), (double)st.confirmed * ds->cfg->impact.per_row);
}
static void s_resolved(out *o, cvg_monitor *m, dset *ds, const char *name) {
  char e1[512];
  (void)m;
  cvg_trk_stats ts;
  cvg_tracker_stats(ds->trk, &ts);
  for (int st = 0; st < 2; st++)
    emit(o, "%s{dataset=\"%s\",state=\"%s\"} %" PRIu64 "\n", name,
         esc(e1, sizeof e1, ds->cfg->name), st ? "confirmed" : "suspected", ts.resolved[st]);
}
static void s_sweep_rows(out *o, cvg_monitor *m, dset *ds, const char *name) {
  char e1[512], e2[512];
  (void)m;
  for (size_t i = 0; i < ds->n; i++)
    for (int k = 0; k < 2; k++)
      emit(o, "%s{dataset=\"%s\",replica=\"%s\",kind=\"%s\"} %" PRIu64 "\n", name,
           esc(e1, sizeof e1, ds->cfg->name), esc(e2, sizeof e2, ds->reps[i].cfg->name),
           cvgi_kind_names[k], ds->reps[i].rows_read[k]);
}
static void s_sweeps(out *o, cvg_monitor *m, dset *ds, const char *name) {
  char e1[512];
  (void)m;
  esc(e1, sizeof e1, ds->cfg->name);
  for (int k = 0; k < 2; k++)
    emit(o,
         "%s{dataset=\"%s\",kind=\"%s\",result=\"ok\"} %" PRIu64 "\n"
         "%s{dataset=\"%s\",kind=\"%s\",result=\"error\"} %" PRIu64 "\n",
         name, e1, cvgi_kind_names[k], ds->sweeps_ok[k], name, e1, cvgi_kind_names[k],
         ds->sweeps_err[k]);
}
static void s_sweep_duration(out *o, cvg_monitor *m, dset *ds, const char *name) {
  char e1[512], labels[700];
  (void)m;
  for (int k = 0; k < 2; k++) {
    snprintf(labels, sizeof labels, "dataset=\"%s\",kind=\"%s\"", esc(e1, sizeof e1, ds->cfg->name),
             cvgi_kind_names[k]);
    emit_hist(o, name, labels, &ds->sweep_dur[k], cvgi_sweep_le, SWEEP_BUCKETS);
  }
}
static void s_conflicts(out *o, cvg_monitor *m, dset *ds, const char *name) {
  char e1[512];
  (void)m;
  const uint64_t *conflicts = cvg_tracker_conflicts(ds->trk);
  for (uint32_t sh = 0; sh < ds->cfg->shards; sh++)
    if (conflicts[sh])
      emit(o, "%s{dataset=\"%s\",shard=\"%u\"} %llu\n", name, esc(e1, sizeof e1, ds->cfg->name), sh,
           (unsigned long long)conflicts[sh]);
}
static void s_invariant_ok(out *o, cvg_monitor *m, dset *ds, const char *name) {
  char e1[512], e2[512];
  (void)m;
  for (size_t i = 0; i < ds->n_inv; i++)
    if (ds->inv[i].known)
      emit(o, "%s{dataset=\"%s\",invariant=\"%s\"} %d\n", name, esc(e1, sizeof e1, ds->cfg->name),
           esc(e2, sizeof e2, ds->inv[i].name), ds->inv[i].ok);
}
static void s_invariant_value(out *o, cvg_monitor *m, dset *ds, const char *name) {
  char e1[512], e2[512], val[40];
  (void)m;
  for (size_t i = 0; i < ds->n_inv; i++)
    if (ds->inv[i].known) {
      cvgi_fmt_double(val, sizeof val, ds->inv[i].value);
      emit(o, "%s{dataset=\"%s\",invariant=\"%s\"} %s\n", name, esc(e1, sizeof e1, ds->cfg->name),
           esc(e2, sizeof e2, ds->inv[i].name), val);
    }
}
static void s_aggregate(out *o, cvg_monitor *m, dset *ds, const char *name) {
  char e1[512], e2[512], e3[512], val[40];
  (void)m;
  for (size_t a = 0; a < ds->cfg->inv.n_aggregates; a++)
    for (size_t i = 0; i < ds->n; i++)
      if (ds->reps[i].agg_ok[a]) {
        cvgi_fmt_double(val, sizeof val, ds->reps[i].agg[a]);
        emit(o, "%s{dataset=\"%s\",replica=\"%s\",expr=\"%s\"} %s\n", name,
             esc(e1, sizeof e1, ds->cfg->name), esc(e2, sizeof e2, ds->reps[i].cfg->name),
             esc(e3, sizeof e3, ds->cfg->inv.aggregates[a].expr), val);
      }
}
/* Called without ds->mu: the alert source's value takes it. */
static void s_slo_burn(out *o, cvg_monitor *m, dset *ds, const char *name) {
  static const double windows[] = {300, 3600, 21600};
  static const char *const wnames[] = {"5m", "1h", "6h"};
  char e1[512], val[40];
  if (!ds->cfg->slo.declared)
    return;
  for (size_t w = 0; w < 3; w++) {
    cvg_cat_rule r;
    memset(&r, 0, sizeof r);
    r.kind = CVG_RULE_SLO;
    r.window = windows[w];
    double v;
    if (cvgi_alert_value(m, (size_t)(ds - m->ds), SIZE_MAX, &r, &v)) {
      cvgi_fmt_double(val, sizeof val, v);
      emit(o, "%s{dataset=\"%s\",window=\"%s\"} %s\n", name, esc(e1, sizeof e1, ds->cfg->name),
           wnames[w], val);
    }
  }
}

/* ---- the families, in the order /metrics shows them ---- */

enum { ONCE = 1, REGION = 2, UNLOCKED = 4 };

typedef struct family {
  const char *name, *type, *help;
  rep_value_fn per_replica; /* one sample per replica, labelled dataset and replica */
  ds_value_fn per_dataset;  /* one sample per dataset, labelled dataset */
  samples_fn samples;       /* or the family's own samples, per dataset (or ONCE) */
  unsigned flags;           /* ONCE: samples called once; REGION: a region label too;
                               UNLOCKED: samples called without ds->mu */
} family;

static const family families[] = {
    {"converge_build_info", "gauge", "The converge version, as a label; always 1.", NULL, NULL,
     s_build_info, ONCE},
    {"converge_start_time_seconds", "gauge", "When converge watch started (unix seconds).", NULL,
     NULL, s_start_time, ONCE},
    {"converge_replica_up", "gauge",
     "1 when the replica could be reached at the last probe, 0 when it could not.", v_up, NULL,
     NULL, REGION},
    {"converge_replication_lag_seconds", "gauge",
     "Now minus the newest heartbeat seen on the replica; NaN when no heartbeat arrived yet.",
     v_lag, NULL, NULL, 0},
    {"converge_native_replication_lag_seconds", "gauge",
     "The engine's own view of the replica's lag (PostgreSQL: time since the subscription's apply "
     "worker last heard from the publisher, or a standby's replay delay), beside the heartbeat's.",
     v_native_lag, NULL, NULL, 0},
    {"converge_native_replication_up", "gauge",
     "0 when the engine says replication into the replica is stopped (a disabled subscription, no "
     "apply worker, no WAL receiver), else 1.",
     v_native_up, NULL, NULL, 0},
    {"converge_heartbeat_sequence", "gauge",
     "Sequence number of the newest heartbeat seen on the replica.", v_hb_seq, NULL, NULL, 0},
    {"converge_replica_state", "gauge",
     "1 for the replica's current replication state: ok, lagging, stalled (heartbeat not "
     "advancing while the authority's does), stopped (no heartbeat arrived), down, error (it "
     "answers, but sweeps fail reading it).",
     NULL, NULL, s_replica_state, 0},
    {"converge_convergence_seconds", "histogram",
     "Time from writing a canary on the authority to seeing it on the replica.", NULL, NULL,
     s_convergence, 0},
    {"converge_canary_failures_total", "counter",
     "Canaries not seen on the replica within the timeout: a silent replication break.",
     v_canary_failures, NULL, NULL, 0},
    {"converge_divergent_rows", "gauge",
     "Divergent keys by dataset, shard, class and state (suspected or confirmed); shards without "
     "divergent keys are not listed.",
     NULL, NULL, s_divergent_rows, 0},
    {"converge_dataset_divergent_rows", "gauge",
     "Divergent keys of the dataset by class and state, over all shards.", NULL, NULL,
     s_dataset_divergent_rows, 0},
    {"converge_divergence_impact", "gauge",
     "Confirmed divergent rows times the value of one row (catalog impact.per_row), in the "
     "catalog's impact.unit; datasets without impact.per_row are not listed.",
     NULL, NULL, s_impact, 0},
    {"converge_divergent_shards", "gauge",
     "Shards whose digests differ between the reachable replicas.", NULL, v_divergent_shards, NULL,
     0},
    {"converge_dataset_rows", "gauge", "Keys seen by the last full sweep.", NULL, v_rows, NULL, 0},
    {"converge_untracked_divergences_total", "counter",
     "Divergent keys not tracked because the dataset's max_tracked was reached.", NULL, v_untracked,
     NULL, 0},
    {"converge_divergences_resolved_total", "counter",
     "Divergent keys that agreed again, by the state they had reached: suspected ones were rows "
     "in flight, confirmed ones were repaired or healed.",
     NULL, NULL, s_resolved, 0},
    {"converge_sweep_rows_total", "counter", "Rows read from the replica by sweeps.", NULL, NULL,
     s_sweep_rows, 0},
    {"converge_sweeps_total", "counter", "Sweeps run, by kind and result.", NULL, NULL, s_sweeps,
     0},
    {"converge_sweep_duration_seconds", "histogram", "How long sweeps take, by kind.", NULL, NULL,
     s_sweep_duration, 0},
    {"converge_last_full_sweep_timestamp_seconds", "gauge",
     "When the last full sweep of the dataset ended (unix seconds).", NULL, v_last_full, NULL, 0},
    {"converge_schema_drift", "gauge",
     "1 when the replicas' schemas (columns or declared types) differ.", NULL, v_schema_drift, NULL,
     0},
    {"converge_repair_runs_total", "counter",
     "Automatic repair runs (auto_repair) that had confirmed divergences to repair.", NULL,
     v_rep_runs, NULL, 0},
    {"converge_repair_applied_total", "counter",
     "Repair mutations applied (conditional writes that held).", NULL, v_rep_applied, NULL, 0},
    {"converge_repair_skipped_total", "counter",
     "Repair mutations skipped because the row changed after the decision.", NULL, v_rep_skipped,
     NULL, 0},
    {"converge_repair_deferred_total", "counter",
     "Times automatic repair left a confirmed key for a later run: a copy of it was still on its "
     "way to a replica, or it was written again since its confirmation (repair would race "
     "replication).",
     NULL, v_rep_deferred, NULL, 0},
    {"converge_repair_failed_total", "counter",
     "Repair mutations that failed (the error is in the journal and the log).", NULL, v_rep_failed,
     NULL, 0},
    {"converge_repair_backlog", "gauge", "Confirmed divergent keys waiting for repair.", NULL,
     v_rep_backlog, NULL, 0},
    {"converge_repair_paused", "gauge",
     "1 while automatic repair is held (POST /api/v1/repair/pause).", NULL, v_rep_paused, NULL, 0},
    {"converge_repair_stalled_runs", "gauge",
     "Consecutive repair runs that applied nothing while keys were waiting.", NULL, v_rep_stalled,
     NULL, 0},
    {"converge_repair_refused", "gauge",
     "Changes the last automatic repair run held back because a safety limit refused it "
     "(repair.max_delete_fraction, max_changes_per_run, an empty authority); 0 when it was not "
     "refused.",
     NULL, v_rep_refused, NULL, 0},
    {"converge_repair_refusals_total", "counter",
     "Automatic repair runs refused by a safety limit.", NULL, v_rep_refusals, NULL, 0},
    {"converge_conflicts_confirmed_total", "counter",
     "Keys confirmed as conflicts, per shard, since converge watch started (conflict hotspots: "
     "rate() shows where the data model invites conflicts; /api/v1/hotspots names the keys).",
     NULL, NULL, s_conflicts, 0},
    {"converge_repair_rows_per_second", "gauge",
     "Mutations applied per second by the last automatic repair run (comparison included).", NULL,
     v_rep_rate, NULL, 0},
    {"converge_repair_last_success_timestamp_seconds", "gauge",
     "When a repair run last applied everything it planned.", NULL, v_rep_last_ok, NULL, 0},
    {"converge_invariant_ok", "gauge",
     "1 when the declared invariant holds, 0 when it is violated; absent until it can be judged.",
     NULL, NULL, s_invariant_ok, 0},
    {"converge_invariant_value", "gauge",
     "The measured value each invariant is judged on (lag seconds, rows, fraction, replicas, "
     "aggregate spread, seconds).",
     NULL, NULL, s_invariant_value, 0},
    {"converge_aggregate_value", "gauge",
     "The value of each equal_aggregate expression on each replica.", NULL, NULL, s_aggregate, 0},
    {"converge_probe_errors_total", "counter",
     "Probe runs that failed to reach or read the replica.", v_probe_errors, NULL, NULL, 0},
    {"converge_replica_errors_total", "counter",
     "Sweeps (incremental and full) that failed reading the replica while it answered probes: "
     "corrupt pages, a file changed mid-scan, a scan error.",
     v_read_errors, NULL, NULL, 0},
    {"converge_replication_lag_trend", "gauge",
     "Lag trend over the last trend_window heartbeat samples: -1 window not yet full, 0 ok, "
     "1 warn (lag never decreases), 2 stall (nothing applied), 3 stop (no reading for longer "
     "than the window).",
     v_trend, NULL, NULL, 0},
    {"converge_slo_burn_rate", "gauge",
     "Burn rate of the convergence SLO's error budget over the window (1 = exactly on budget).",
     NULL, NULL, s_slo_burn, UNLOCKED},
};

/* One dataset's samples of family f (ds->mu held). */
static void family_samples(out *o, cvg_monitor *m, dset *ds, const family *f) {
  char e1[512], e2[512], e3[512], val[40];
  double v;
  if (f->samples) {
    f->samples(o, m, ds, f->name);
  } else if (f->per_dataset) {
    if (f->per_dataset(ds, &v)) {
      cvgi_fmt_double(val, sizeof val, v);
      emit(o, "%s{dataset=\"%s\"} %s\n", f->name, esc(e1, sizeof e1, ds->cfg->name), val);
    }
  } else {
    for (size_t i = 0; i < ds->n; i++) {
      if (!f->per_replica(ds, i, &v))
        continue;
      cvgi_fmt_double(val, sizeof val, v);
      esc(e1, sizeof e1, ds->cfg->name);
      esc(e2, sizeof e2, ds->reps[i].cfg->name);
      if (f->flags & REGION)
        emit(o, "%s{dataset=\"%s\",replica=\"%s\",region=\"%s\"} %s\n", f->name, e1, e2,
             esc(e3, sizeof e3, ds->reps[i].cfg->region), val);
      else
        emit(o, "%s{dataset=\"%s\",replica=\"%s\"} %s\n", f->name, e1, e2, val);
    }
  }
}

/* One family at a time, each over every dataset, as the text format wants families contiguous;
 * then the alert engine's own. */
int cvg_monitor_metrics(cvg_monitor *m, cvg_buf *b) {
  out o = {b, 0};
  for (size_t k = 0; k < sizeof families / sizeof families[0]; k++) {
    const family *f = &families[k];
    head(&o, f->name, f->type, f->help);
    if (f->flags & ONCE) {
      f->samples(&o, m, NULL, f->name);
      continue;
    }
    for (dset *ds = m->ds; ds < m->ds + m->n_ds; ds++) {
      int lock = !(f->flags & UNLOCKED);
      if (lock)
        pthread_mutex_lock(&ds->mu);
      family_samples(&o, m, ds, f);
      if (lock)
        pthread_mutex_unlock(&ds->mu);
    }
  }
  if (o.rc == CVG_OK && m->alerts)
    o.rc = cvg_alerts_metrics(m->alerts, b);
  return o.rc;
}
