/* SPDX-License-Identifier: MIT */
/*
 * The watch's state rendered for people and programs: /metrics in the Prometheus text format and
 * the JSON of /api/v1/status, /api/v1/divergences and /api/v1/hotspots. Reads the state that
 * monitor.c keeps (monitor_int.h), under the same locks, and never waits on a database.
 */
#include "converge/json.h"
#include "converge/mclock.h"
#include "converge/version.h"
#include "monitor_int.h"

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

/* Calls fn for every dataset with its lock held. */
#define FOR_DS(m, ds) for (dset *ds = (m)->ds; ds < (m)->ds + (m)->n_ds; ds++)

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

/* One family with a sample per replica of every dataset, labelled dataset and replica (and
 * region when asked). */
static void emit_per_replica(out *o, cvg_monitor *m, const char *name, const char *type,
                             const char *help, rep_value_fn fn, int with_region) {
  char e1[512], e2[512], e3[512], val[40];
  head(o, name, type, help);
  FOR_DS(m, ds) {
    pthread_mutex_lock(&ds->mu);
    for (size_t i = 0; i < ds->n; i++) {
      double v;
      if (!fn(ds, i, &v))
        continue;
      cvgi_fmt_double(val, sizeof val, v);
      if (with_region)
        emit(o, "%s{dataset=\"%s\",replica=\"%s\",region=\"%s\"} %s\n", name,
             esc(e1, sizeof e1, ds->cfg->name), esc(e2, sizeof e2, ds->reps[i].cfg->name),
             esc(e3, sizeof e3, ds->reps[i].cfg->region), val);
      else
        emit(o, "%s{dataset=\"%s\",replica=\"%s\"} %s\n", name, esc(e1, sizeof e1, ds->cfg->name),
             esc(e2, sizeof e2, ds->reps[i].cfg->name), val);
    }
    pthread_mutex_unlock(&ds->mu);
  }
}

/* A value per dataset (ds->mu held): returns 0 to leave the dataset out. */
typedef int (*ds_value_fn)(const dset *ds, double *v);

/* up[i] = 1 for each reachable replica (ds->mu held): whose digests are compared. */
static void reachable(const dset *ds, unsigned char *up) {
  for (size_t i = 0; i < ds->n; i++)
    up[i] = ds->reps[i].up == 1;
}

static int v_divergent_shards(const dset *ds, double *v) {
  uint64_t diff = 0;
  unsigned char up[CVG_DIFF_MAX_REPLICAS];
  reachable(ds, up);
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

static void emit_per_dataset(out *o, cvg_monitor *m, const char *name, const char *type,
                             const char *help, ds_value_fn fn) {
  char e1[512], val[40];
  head(o, name, type, help);
  FOR_DS(m, ds) {
    pthread_mutex_lock(&ds->mu);
    double v;
    if (fn(ds, &v)) {
      cvgi_fmt_double(val, sizeof val, v);
      emit(o, "%s{dataset=\"%s\"} %s\n", name, esc(e1, sizeof e1, ds->cfg->name), val);
    }
    pthread_mutex_unlock(&ds->mu);
  }
}

int cvg_monitor_metrics(cvg_monitor *m, cvg_buf *b) {
  out o = {b, 0};
  char e1[512], e2[512], e3[512], val[40];
  head(&o, "converge_build_info", "gauge", "The converge version, as a label; always 1.");
  emit(&o, "converge_build_info{version=\"%s\"} 1\n", CVG_VERSION);
  head(&o, "converge_start_time_seconds", "gauge", "When converge watch started (unix seconds).");
  emit(&o, "converge_start_time_seconds %.3f\n", m->started_wall);

  /* One family at a time, each over every dataset, as the format wants families contiguous. */
  emit_per_replica(&o, m, "converge_replica_up", "gauge",
                   "1 when the replica could be reached at the last probe, 0 when it could not.",
                   v_up, 1);
  emit_per_replica(&o, m, "converge_replication_lag_seconds", "gauge",
                   "Now minus the newest heartbeat seen on the replica; NaN when no heartbeat "
                   "arrived yet.",
                   v_lag, 0);
  emit_per_replica(&o, m, "converge_native_replication_lag_seconds", "gauge",
                   "The engine's own view of the replica's lag (PostgreSQL: time since the "
                   "subscription's apply worker last heard from the publisher, or a standby's "
                   "replay delay), beside the heartbeat's.",
                   v_native_lag, 0);
  emit_per_replica(&o, m, "converge_native_replication_up", "gauge",
                   "0 when the engine says replication into the replica is stopped (a disabled "
                   "subscription, no apply worker, no WAL receiver), else 1.",
                   v_native_up, 0);
  emit_per_replica(&o, m, "converge_heartbeat_sequence", "gauge",
                   "Sequence number of the newest heartbeat seen on the replica.", v_hb_seq, 0);
  head(&o, "converge_replica_state", "gauge",
       "1 for the replica's current replication state: ok, lagging, stalled (heartbeat not "
       "advancing while the authority's does), stopped (no heartbeat arrived), down, error "
       "(it answers, but sweeps fail reading it).");
  FOR_DS(m, ds) {
    pthread_mutex_lock(&ds->mu);
    for (size_t i = 0; i < ds->n; i++) {
      rstate st = cvgi_shown_state(&ds->reps[i]);
      if (st == RS_UNKNOWN)
        continue;
      for (int s = RS_OK; s <= RS_ERROR; s++)
        emit(&o, "converge_replica_state{dataset=\"%s\",replica=\"%s\",state=\"%s\"} %d\n",
             esc(e1, sizeof e1, ds->cfg->name), esc(e2, sizeof e2, ds->reps[i].cfg->name),
             cvgi_rstate_names[s], (int)st == s);
    }
    pthread_mutex_unlock(&ds->mu);
  }
  head(&o, "converge_convergence_seconds", "histogram",
       "Time from writing a canary on the authority to seeing it on the replica.");
  FOR_DS(m, ds) {
    pthread_mutex_lock(&ds->mu);
    for (size_t i = 0; i < ds->n && ds->cfg->authority >= 0 && ds->cfg->probes.canary_interval > 0;
         i++) {
      if ((int)i == ds->cfg->authority)
        continue;
      char labels[1100];
      snprintf(labels, sizeof labels, "dataset=\"%s\",replica=\"%s\"",
               esc(e1, sizeof e1, ds->cfg->name), esc(e2, sizeof e2, ds->reps[i].cfg->name));
      emit_hist(&o, "converge_convergence_seconds", labels, &ds->reps[i].conv, cvgi_conv_le,
                CONV_BUCKETS);
    }
    pthread_mutex_unlock(&ds->mu);
  }
  emit_per_replica(&o, m, "converge_canary_failures_total", "counter",
                   "Canaries not seen on the replica within the timeout: a silent replication "
                   "break.",
                   v_canary_failures, 0);
  head(&o, "converge_divergent_rows", "gauge",
       "Divergent keys by dataset, shard, class and state (suspected or confirmed); shards "
       "without divergent keys are not listed.");
  FOR_DS(m, ds) {
    pthread_mutex_lock(&ds->mu);
    /* count per (shard, class, state) over the tracked keys: sort-free, by a small scan per
     * shard that has any. */
    uint32_t ns = ds->cfg->shards;
    uint64_t *cnt = calloc((size_t)ns * CVG_CLASS__COUNT * 2, sizeof *cnt);
    if (!cnt) {
      o.rc = CVG_ENOMEM;
    } else {
      size_t cur = 0;
      for (const cvg_tracked *t; (t = cvg_tracker_next(ds->trk, &cur));)
        cnt[((size_t)t->shard * CVG_CLASS__COUNT + t->cls) * 2 + (size_t)t->confirmed]++;
      for (uint32_t sh = 0; sh < ns; sh++)
        for (int c = 1; c < CVG_CLASS__COUNT; c++)
          for (int st = 0; st < 2; st++) {
            uint64_t v = cnt[((size_t)sh * CVG_CLASS__COUNT + (size_t)c) * 2 + (size_t)st];
            if (v)
              emit(&o,
                   "converge_divergent_rows{dataset=\"%s\",shard=\"%u\",class=\"%s\",state=\"%s\"}"
                   " %" PRIu64 "\n",
                   esc(e1, sizeof e1, ds->cfg->name), sh, cvg_class_name((cvg_class)c),
                   st ? "confirmed" : "suspected", v);
          }
      free(cnt);
    }
    pthread_mutex_unlock(&ds->mu);
  }
  head(&o, "converge_dataset_divergent_rows", "gauge",
       "Divergent keys of the dataset by class and state, over all shards.");
  FOR_DS(m, ds) {
    pthread_mutex_lock(&ds->mu);
    uint64_t cnt[CVG_CLASS__COUNT][2];
    memset(cnt, 0, sizeof cnt);
    size_t cur = 0;
    for (const cvg_tracked *t; (t = cvg_tracker_next(ds->trk, &cur));)
      cnt[t->cls][t->confirmed]++;
    for (int c = 1; c < CVG_CLASS__COUNT; c++)
      for (int st = 0; st < 2; st++)
        emit(&o,
             "converge_dataset_divergent_rows{dataset=\"%s\",class=\"%s\",state=\"%s\"} %" PRIu64
             "\n",
             esc(e1, sizeof e1, ds->cfg->name), cvg_class_name((cvg_class)c),
             st ? "confirmed" : "suspected", cnt[c][st]);
    pthread_mutex_unlock(&ds->mu);
  }
  head(&o, "converge_divergence_impact", "gauge",
       "Confirmed divergent rows times the value of one row (catalog impact.per_row), in the "
       "catalog's impact.unit; datasets without impact.per_row are not listed.");
  FOR_DS(m, ds) {
    if (ds->cfg->impact.per_row <= 0)
      continue;
    pthread_mutex_lock(&ds->mu);
    cvg_trk_stats st;
    cvg_tracker_stats(ds->trk, &st);
    uint64_t conf = st.confirmed;
    emit(&o, "converge_divergence_impact{dataset=\"%s\",unit=\"%s\"} %.17g\n",
         esc(e1, sizeof e1, ds->cfg->name), esc(e2, sizeof e2, ds->cfg->impact.unit),
         (double)conf * ds->cfg->impact.per_row);
    pthread_mutex_unlock(&ds->mu);
  }
  emit_per_dataset(&o, m, "converge_divergent_shards", "gauge",
                   "Shards whose digests differ between the reachable replicas.",
                   v_divergent_shards);
  emit_per_dataset(&o, m, "converge_dataset_rows", "gauge", "Keys seen by the last full sweep.",
                   v_rows);
  emit_per_dataset(&o, m, "converge_untracked_divergences_total", "counter",
                   "Divergent keys not tracked because the dataset's max_tracked was reached.",
                   v_untracked);
  head(&o, "converge_divergences_resolved_total", "counter",
       "Divergent keys that agreed again, by the state they had reached: suspected ones were "
       "rows in flight, confirmed ones were repaired or healed.");
  FOR_DS(m, ds) {
    pthread_mutex_lock(&ds->mu);
    cvg_trk_stats ts;
    cvg_tracker_stats(ds->trk, &ts);
    for (int st = 0; st < 2; st++)
      emit(&o, "converge_divergences_resolved_total{dataset=\"%s\",state=\"%s\"} %" PRIu64 "\n",
           esc(e1, sizeof e1, ds->cfg->name), st ? "confirmed" : "suspected", ts.resolved[st]);
    pthread_mutex_unlock(&ds->mu);
  }
  head(&o, "converge_sweep_rows_total", "counter", "Rows read from the replica by sweeps.");
  FOR_DS(m, ds) {
    pthread_mutex_lock(&ds->mu);
    for (size_t i = 0; i < ds->n; i++)
      for (int k = 0; k < 2; k++)
        emit(&o,
             "converge_sweep_rows_total{dataset=\"%s\",replica=\"%s\",kind=\"%s\"} %" PRIu64 "\n",
             esc(e1, sizeof e1, ds->cfg->name), esc(e2, sizeof e2, ds->reps[i].cfg->name),
             cvgi_kind_names[k], ds->reps[i].rows_read[k]);
    pthread_mutex_unlock(&ds->mu);
  }
  head(&o, "converge_sweeps_total", "counter", "Sweeps run, by kind and result.");
  FOR_DS(m, ds) {
    pthread_mutex_lock(&ds->mu);
    for (int k = 0; k < 2; k++)
      emit(&o,
           "converge_sweeps_total{dataset=\"%s\",kind=\"%s\",result=\"ok\"} %" PRIu64 "\n"
           "converge_sweeps_total{dataset=\"%s\",kind=\"%s\",result=\"error\"} %" PRIu64 "\n",
           esc(e1, sizeof e1, ds->cfg->name), cvgi_kind_names[k], ds->sweeps_ok[k], e1,
           cvgi_kind_names[k], ds->sweeps_err[k]);
    pthread_mutex_unlock(&ds->mu);
  }
  head(&o, "converge_sweep_duration_seconds", "histogram", "How long sweeps take, by kind.");
  FOR_DS(m, ds) {
    pthread_mutex_lock(&ds->mu);
    for (int k = 0; k < 2; k++) {
      char labels[700];
      snprintf(labels, sizeof labels, "dataset=\"%s\",kind=\"%s\"",
               esc(e1, sizeof e1, ds->cfg->name), cvgi_kind_names[k]);
      emit_hist(&o, "converge_sweep_duration_seconds", labels, &ds->sweep_dur[k], cvgi_sweep_le,
                SWEEP_BUCKETS);
    }
    pthread_mutex_unlock(&ds->mu);
  }
  emit_per_dataset(&o, m, "converge_last_full_sweep_timestamp_seconds", "gauge",
                   "When the last full sweep of the dataset ended (unix seconds).", v_last_full);
  emit_per_dataset(&o, m, "converge_schema_drift", "gauge",
                   "1 when the replicas' schemas (columns or declared types) differ.",
                   v_schema_drift);
  emit_per_dataset(&o, m, "converge_repair_runs_total", "counter",
                   "Automatic repair runs (auto_repair) that had confirmed divergences to repair.",
                   v_rep_runs);
  emit_per_dataset(&o, m, "converge_repair_applied_total", "counter",
                   "Repair mutations applied (conditional writes that held).", v_rep_applied);
  emit_per_dataset(&o, m, "converge_repair_skipped_total", "counter",
                   "Repair mutations skipped because the row changed after the decision.",
                   v_rep_skipped);
  emit_per_dataset(&o, m, "converge_repair_failed_total", "counter",
                   "Repair mutations that failed (the error is in the journal and the log).",
                   v_rep_failed);
  emit_per_dataset(&o, m, "converge_repair_backlog", "gauge",
                   "Confirmed divergent keys waiting for repair.", v_rep_backlog);
  emit_per_dataset(&o, m, "converge_repair_paused", "gauge",
                   "1 while automatic repair is held (POST /api/v1/repair/pause).", v_rep_paused);
  emit_per_dataset(&o, m, "converge_repair_stalled_runs", "gauge",
                   "Consecutive repair runs that applied nothing while keys were waiting.",
                   v_rep_stalled);
  emit_per_dataset(&o, m, "converge_repair_refused", "gauge",
                   "Changes the last automatic repair run held back because a safety limit "
                   "refused it (repair.max_delete_fraction, max_changes_per_run, an empty "
                   "authority); 0 when it was not refused.",
                   v_rep_refused);
  emit_per_dataset(&o, m, "converge_repair_refusals_total", "counter",
                   "Automatic repair runs refused by a safety limit.", v_rep_refusals);
  head(&o, "converge_conflicts_confirmed_total", "counter",
       "Keys confirmed as conflicts, per shard, since converge watch started (conflict "
       "hotspots: rate() shows where the data model invites conflicts; /api/v1/hotspots "
       "names the keys).");
  for (size_t i = 0; i < m->n_ds; i++) {
    dset *ds = &m->ds[i];
    pthread_mutex_lock(&ds->mu);
    const uint64_t *conflicts = cvg_tracker_conflicts(ds->trk);
    for (uint32_t sh = 0; sh < ds->cfg->shards; sh++)
      if (conflicts[sh])
        emit(&o, "converge_conflicts_confirmed_total{dataset=\"%s\",shard=\"%u\"} %llu\n",
             esc(e1, sizeof e1, ds->cfg->name), sh, (unsigned long long)conflicts[sh]);
    pthread_mutex_unlock(&ds->mu);
  }
  emit_per_dataset(&o, m, "converge_repair_rows_per_second", "gauge",
                   "Mutations applied per second by the last automatic repair run "
                   "(comparison included).",
                   v_rep_rate);
  emit_per_dataset(&o, m, "converge_repair_last_success_timestamp_seconds", "gauge",
                   "When a repair run last applied everything it planned.", v_rep_last_ok);
  head(&o, "converge_invariant_ok", "gauge",
       "1 when the declared invariant holds, 0 when it is violated; absent until it can be "
       "judged.");
  FOR_DS(m, ds) {
    pthread_mutex_lock(&ds->mu);
    for (size_t i = 0; i < ds->n_inv; i++)
      if (ds->inv[i].known)
        emit(&o, "converge_invariant_ok{dataset=\"%s\",invariant=\"%s\"} %d\n",
             esc(e1, sizeof e1, ds->cfg->name), esc(e2, sizeof e2, ds->inv[i].name), ds->inv[i].ok);
    pthread_mutex_unlock(&ds->mu);
  }
  head(&o, "converge_invariant_value", "gauge",
       "The measured value each invariant is judged on (lag seconds, rows, fraction, replicas, "
       "aggregate spread, seconds).");
  FOR_DS(m, ds) {
    pthread_mutex_lock(&ds->mu);
    for (size_t i = 0; i < ds->n_inv; i++)
      if (ds->inv[i].known) {
        cvgi_fmt_double(val, sizeof val, ds->inv[i].value);
        emit(&o, "converge_invariant_value{dataset=\"%s\",invariant=\"%s\"} %s\n",
             esc(e1, sizeof e1, ds->cfg->name), esc(e2, sizeof e2, ds->inv[i].name), val);
      }
    pthread_mutex_unlock(&ds->mu);
  }
  head(&o, "converge_aggregate_value", "gauge",
       "The value of each equal_aggregate expression on each replica.");
  FOR_DS(m, ds) {
    pthread_mutex_lock(&ds->mu);
    for (size_t a = 0; a < ds->cfg->inv.n_aggregates; a++)
      for (size_t i = 0; i < ds->n; i++)
        if (ds->reps[i].agg_ok[a]) {
          cvgi_fmt_double(val, sizeof val, ds->reps[i].agg[a]);
          emit(&o, "converge_aggregate_value{dataset=\"%s\",replica=\"%s\",expr=\"%s\"} %s\n",
               esc(e1, sizeof e1, ds->cfg->name), esc(e2, sizeof e2, ds->reps[i].cfg->name),
               esc(e3, sizeof e3, ds->cfg->inv.aggregates[a].expr), val);
        }
    pthread_mutex_unlock(&ds->mu);
  }
  emit_per_replica(&o, m, "converge_probe_errors_total", "counter",
                   "Probe runs that failed to reach or read the replica.", v_probe_errors, 0);
  emit_per_replica(&o, m, "converge_replica_errors_total", "counter",
                   "Sweeps (incremental and full) that failed reading the replica while it "
                   "answered probes: corrupt pages, a file changed mid-scan, a scan error.",
                   v_read_errors, 0);
  emit_per_replica(&o, m, "converge_replication_lag_trend", "gauge",
                   "Lag trend over the last trend_window heartbeat samples: -1 window not yet "
                   "full, 0 ok, 1 warn (lag never decreases), 2 stall (nothing applied), "
                   "3 stop (no reading for longer than the window).",
                   v_trend, 0);
  head(&o, "converge_slo_burn_rate", "gauge",
       "Burn rate of the convergence SLO's error budget over the window (1 = exactly on budget).");
  for (size_t i = 0; i < m->n_ds; i++) {
    dset *ds = &m->ds[i];
    if (!ds->cfg->slo.declared)
      continue;
    static const double windows[] = {300, 3600, 21600};
    static const char *const wnames[] = {"5m", "1h", "6h"};
    for (size_t w = 0; w < 3; w++) {
      cvg_cat_rule r;
      memset(&r, 0, sizeof r);
      r.kind = CVG_RULE_SLO;
      r.window = windows[w];
      double v;
      if (cvgi_alert_value(m, i, SIZE_MAX, &r, &v)) {
        cvgi_fmt_double(val, sizeof val, v);
        emit(&o, "converge_slo_burn_rate{dataset=\"%s\",window=\"%s\"} %s\n",
             esc(e1, sizeof e1, ds->cfg->name), wnames[w], val);
      }
    }
  }
  if (o.rc == CVG_OK && m->alerts)
    o.rc = cvg_alerts_metrics(m->alerts, b);
  return o.rc;
}

/* ---- rendering: JSON ---- */

static json_t *jnum(double v) {
  return isfinite(v) ? json_real(v) : json_null();
}

/* Settled key columns are not kept; keys are shown with the catalog's key names, or k1, k2... */
json_t *cvgi_key_json(const dset *ds, const unsigned char *key, size_t key_len) {
  const char *names[64];
  char gen[64][8];
  size_t n = ds->cfg->n_key;
  if (n == 0 || n > 64) {
    cvg_value vals[64];
    size_t nv = 0;
    cvg_buf scratch;
    cvg_buf_init(&scratch, 1u << 20);
    if (cvg_decode_tuple(key, key_len, vals, 64, &nv, &scratch) != CVG_OK)
      nv = 0;
    cvg_buf_release(&scratch);
    n = nv;
    for (size_t i = 0; i < n; i++) {
      snprintf(gen[i], sizeof gen[i], "k%zu", i + 1);
      names[i] = gen[i];
    }
  } else {
    for (size_t i = 0; i < n; i++)
      names[i] = ds->cfg->key[i];
  }
  json_t *j = cvg_key_to_json(key, key_len, names, n);
  return j ? j : json_null();
}

static json_t *version_json(const unsigned char *v, size_t n) {
  if (!n)
    return json_null();
  cvg_value val;
  size_t nv = 0;
  cvg_buf scratch;
  cvg_buf_init(&scratch, 1u << 20);
  json_t *j = NULL;
  if (cvg_decode_tuple(v, n, &val, 1, &nv, &scratch) == CVG_OK && nv == 1)
    j = cvg_value_to_json(&val);
  cvg_buf_release(&scratch);
  return j ? j : json_null();
}

static const char *const copy_state[] = {"absent", "live", "tombstone", "unknown"};

json_t *cvgi_tracked_json(const dset *ds, const cvg_tracked *t) {
  json_t *o = json_object();
  json_object_set_new(o, "dataset", json_string(ds->cfg->name));
  json_object_set_new(o, "key", cvgi_key_json(ds, t->key, t->key_len));
  json_object_set_new(o, "shard", json_integer(t->shard));
  json_object_set_new(o, "class", json_string(cvg_class_name(t->cls)));
  json_object_set_new(o, "state", json_string(t->confirmed ? "confirmed" : "suspected"));
  json_object_set_new(o, "first_seen", json_real(t->first_seen));
  json_object_set_new(o, "confirmed_at", t->confirmed ? json_real(t->confirmed_at) : json_null());
  json_object_set_new(o, "last_checked", json_real(t->last_checked));
  json_object_set_new(o, "agreeing_replicas", json_integer(t->agreeing));
  json_t *reps = json_object();
  for (size_t i = 0; i < ds->n; i++) {
    json_t *r = json_object();
    json_object_set_new(r, "state", json_string(copy_state[t->rstates[i]]));
    size_t vl;
    const unsigned char *v = cvg_tracked_version(t, i, &vl);
    json_object_set_new(r, "version", version_json(v, vl));
    json_object_set_new(reps, ds->reps[i].cfg->name, r);
  }
  json_object_set_new(o, "replicas", reps);
  return o;
}

static int dump_into(json_t *j, cvg_buf *b) {
  if (!j)
    return CVG_ENOMEM;
  char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(j);
  if (!s)
    return CVG_ENOMEM;
  int rc = cvg_buf_append(b, s, strlen(s));
  free(s);
  return rc;
}

#define STATUS_SAMPLES 10 /* sample keys per dataset in /api/v1/status */

/* The dataset's repair: policy, automatic repair's state and counts (ds->mu held). */
static json_t *repair_json(const dset *ds) {
  int p = ds->cfg->policy >= 0 && ds->cfg->policy <= CVG_POLICY_MERGE ? ds->cfg->policy : 0;
  json_t *r = json_object();
  double backlog = 0;
  v_rep_backlog(ds, &backlog);
  json_object_set_new(r, "policy", json_string(cvg_policy_names[p]));
  json_object_set_new(r, "auto_repair", json_boolean(ds->cfg->auto_repair));
  json_object_set_new(r, "paused",
                      json_boolean(__atomic_load_n(&ds->rep_paused, __ATOMIC_SEQ_CST)));
  json_object_set_new(r, "backlog", json_integer((json_int_t)backlog));
  json_object_set_new(r, "runs", json_integer((json_int_t)ds->rep_runs));
  json_object_set_new(r, "applied", json_integer((json_int_t)ds->rep_applied));
  json_object_set_new(r, "skipped", json_integer((json_int_t)ds->rep_skipped));
  json_object_set_new(r, "failed", json_integer((json_int_t)ds->rep_failed));
  json_object_set_new(r, "stalled_runs", json_integer(ds->rep_stalled_runs));
  json_object_set_new(r, "last_run",
                      ds->rep_last_run > 0 ? json_real(ds->rep_last_run) : json_null());
  json_object_set_new(r, "last_rows_per_second",
                      ds->rep_last_run > 0 ? json_real(ds->rep_last_rate) : json_null());
  json_object_set_new(r, "last_success",
                      ds->rep_last_ok > 0 ? json_real(ds->rep_last_ok) : json_null());
  json_object_set_new(r, "error", ds->rep_error[0] ? json_string(ds->rep_error) : json_null());
  return r;
}

int cvg_monitor_status_json(cvg_monitor *m, cvg_buf *b) {
  json_t *root = json_object();
  json_object_set_new(root, "version", json_string(CVG_VERSION));
  json_object_set_new(root, "catalog", json_string(m->cat->path));
  json_object_set_new(root, "started_at", json_real(m->started_wall));
  json_object_set_new(root, "now", json_real(cvg_wall_now()));
  json_t *dsa = json_array();
  FOR_DS(m, ds) {
    pthread_mutex_lock(&ds->mu);
    json_t *d = json_object();
    json_object_set_new(d, "name", json_string(ds->cfg->name));
    json_object_set_new(d, "owner", json_string(ds->cfg->owner));
    json_object_set_new(d, "shards", json_integer(ds->cfg->shards));
    json_object_set_new(d, "rows",
                        ds->have_full ? json_integer((json_int_t)ds->keys_total) : json_null());
    json_object_set_new(d, "last_full_sweep",
                        ds->have_full ? json_real(ds->last_full_wall) : json_null());
    json_object_set_new(d, "last_incremental_sweep",
                        ds->last_incr_wall > 0 ? json_real(ds->last_incr_wall) : json_null());
    json_object_set_new(d, "schema_drift", json_boolean(ds->schema_drift));
    json_object_set_new(d, "schema_detail", json_string(ds->schema_msg));
    json_t *ra = json_array();
    for (size_t i = 0; i < ds->n; i++) {
      const rep *r = &ds->reps[i];
      json_t *rj = json_object();
      json_object_set_new(rj, "name", json_string(r->cfg->name));
      json_object_set_new(rj, "url", json_string(r->cfg->url_display));
      json_object_set_new(rj, "authority", json_boolean(r->cfg->authority));
      json_object_set_new(rj, "region", json_string(r->cfg->region));
      json_object_set_new(rj, "up", r->up < 0 ? json_null() : json_boolean(r->up));
      json_object_set_new(rj, "state", json_string(cvgi_rstate_names[cvgi_shown_state(r)]));
      json_object_set_new(rj, "lag_seconds", jnum(r->lag));
      json_object_set_new(rj, "heartbeat_seq", r->hb_seen ? json_integer(r->hb_seq) : json_null());
      json_object_set_new(rj, "canaries_seen", json_integer((json_int_t)r->canaries_seen));
      json_object_set_new(rj, "canary_failures", json_integer((json_int_t)r->canary_failures));
      json_object_set_new(rj, "error",
                          cvgi_rep_error(r)[0] ? json_string(cvgi_rep_error(r)) : json_null());
      json_object_set_new(rj, "read_errors", json_integer((json_int_t)r->read_errors));
      if (r->native_role[0])
        json_object_set_new(rj, "native",
                            json_pack("{s:s, s:o, s:b}", "role", r->native_role, "lag_seconds",
                                      jnum(r->native_lag), "up", r->native_up));
      json_array_append_new(ra, rj);
    }
    json_object_set_new(d, "replicas", ra);
    json_t *ia = json_array();
    for (size_t i = 0; i < ds->n_inv; i++) {
      json_t *ij = json_object();
      json_object_set_new(ij, "name", json_string(ds->inv[i].name));
      json_object_set_new(ij, "status",
                          json_string(!ds->inv[i].known ? "unknown"
                                      : ds->inv[i].ok   ? "ok"
                                                        : "violated"));
      json_object_set_new(ij, "value", ds->inv[i].known ? jnum(ds->inv[i].value) : json_null());
      json_object_set_new(ij, "limit", jnum(ds->inv[i].limit));
      json_array_append_new(ia, ij);
    }
    json_object_set_new(d, "invariants", ia);
    uint64_t by[CVG_CLASS__COUNT][2];
    memset(by, 0, sizeof by);
    json_t *samples = json_array();
    json_t *shards = json_object();
    size_t cur = 0;
    for (const cvg_tracked *t; (t = cvg_tracker_next(ds->trk, &cur));) {
      by[t->cls][t->confirmed]++;
      char sh[16];
      snprintf(sh, sizeof sh, "%u", t->shard);
      json_t *c = json_object_get(shards, sh);
      json_object_set_new(shards, sh, json_integer(c ? json_integer_value(c) + 1 : 1));
      if (json_array_size(samples) < STATUS_SAMPLES)
        json_array_append_new(samples, cvgi_tracked_json(ds, t));
    }
    json_t *dv = json_object();
    uint64_t sus = 0, conf = 0;
    json_t *cls = json_object();
    for (int c = 1; c < CVG_CLASS__COUNT; c++) {
      sus += by[c][0];
      conf += by[c][1];
      json_t *cj = json_object();
      json_object_set_new(cj, "suspected", json_integer((json_int_t)by[c][0]));
      json_object_set_new(cj, "confirmed", json_integer((json_int_t)by[c][1]));
      json_object_set_new(cls, cvg_class_name((cvg_class)c), cj);
    }
    json_object_set_new(dv, "suspected", json_integer((json_int_t)sus));
    json_object_set_new(dv, "confirmed", json_integer((json_int_t)conf));
    json_object_set_new(dv, "by_class", cls);
    json_object_set_new(dv, "by_shard", shards);
    json_t *diff_shards = json_array(); /* shards whose digests differ between reachable replicas */
    unsigned char up[CVG_DIFF_MAX_REPLICAS];
    reachable(ds, up);
    for (uint32_t sh = 0; ds->have_full && sh < ds->cfg->shards; sh++)
      if (cvg_tracker_shard_differs(ds->trk, sh, up))
        json_array_append_new(diff_shards, json_integer(sh));
    json_object_set_new(dv, "digest_differs", diff_shards);
    cvg_trk_stats ts;
    cvg_tracker_stats(ds->trk, &ts);
    json_object_set_new(dv, "untracked", json_integer((json_int_t)ts.dropped));
    json_object_set_new(dv, "samples", samples);
    json_object_set_new(d, "divergences", dv);
    const cvg_cat_impact *im = &ds->cfg->impact;
    json_t *ij = json_object();
    json_object_set_new(ij, "tier", json_string(cvg_cat_tiers[im->tier & 3]));
    json_object_set_new(ij, "per_row", im->per_row > 0 ? json_real(im->per_row) : json_null());
    json_object_set_new(ij, "unit", json_string(im->unit));
    json_object_set_new(ij, "note", json_string(im->note));
    json_object_set_new(ij, "confirmed_value",
                        im->per_row > 0 ? json_real((double)conf * im->per_row) : json_null());
    json_object_set_new(ij, "suspected_value",
                        im->per_row > 0 ? json_real((double)sus * im->per_row) : json_null());
    json_object_set_new(d, "impact", ij);
    json_object_set_new(d, "repair", repair_json(ds));
    json_array_append_new(dsa, d);
    pthread_mutex_unlock(&ds->mu);
  }
  json_object_set_new(root, "datasets", dsa);
  return dump_into(root, b);
}

int cvg_monitor_divergences_json(cvg_monitor *m, const char *dataset, long shard, const char *cls,
                                 const char *state, size_t limit, cvg_buf *b) {
  int found = dataset == NULL;
  json_t *arr = json_array();
  size_t total = 0;
  FOR_DS(m, ds) {
    if (dataset && strcmp(dataset, ds->cfg->name) != 0)
      continue;
    found = 1;
    pthread_mutex_lock(&ds->mu);
    size_t cur = 0;
    for (const cvg_tracked *t; (t = cvg_tracker_next(ds->trk, &cur));) {
      if ((shard >= 0 && (long)t->shard != shard) ||
          (cls && strcmp(cls, cvg_class_name(t->cls)) != 0) ||
          (state && strcmp(state, t->confirmed ? "confirmed" : "suspected") != 0))
        continue;
      total++;
      if (json_array_size(arr) < limit)
        json_array_append_new(arr, cvgi_tracked_json(ds, t));
    }
    pthread_mutex_unlock(&ds->mu);
  }
  if (!found) {
    json_decref(arr);
    return CVG_ENOENT;
  }
  json_t *root = json_object();
  json_object_set_new(root, "total", json_integer((json_int_t)total));
  json_object_set_new(root, "returned", json_integer((json_int_t)json_array_size(arr)));
  json_object_set_new(root, "divergences", arr);
  return dump_into(root, b);
}
