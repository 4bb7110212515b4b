/* SPDX-License-Identifier: MIT */
/*
 * The alert engine: evaluates every rule of every dataset against the monitor's state, runs each
 * alert through the Prometheus lifecycle, applies stage inhibition, builds the annotations a
 * responder needs, persists the state, and hands what is due to delivery (notify.c).
 *
 * Alerts. A rule applies per replica (replica metrics, trend) or per dataset; each series it
 * applies to is one alert, identified by its labels: alertname, dataset, replica (where it
 * applies), stage, severity, team (the dataset's owner, when set), invariant (invariant rules),
 * and the rule's own labels. The fingerprint is XXH3-64 of the sorted labels.
 *
 * Sending, as Prometheus does: a firing alert is sent when it starts firing and then every
 * resend interval with endsAt = now + 4 x resend interval (so the alerts of a daemon that died
 * expire by themselves); a resolved alert is sent with endsAt = its resolve time, and re-sent
 * every resend interval while it is kept (resolved_retention, default 15 minutes).
 *
 * Inhibition: a firing alert is inhibited while a firing alert of a later stage exists for the
 * same dataset and shard (labels equal, absent equals absent). Inhibited alerts are still sent to
 * Alertmanager, whose inhibit_rules (examples/alertmanager.yml) suppress them there, so silences
 * and routing stay Alertmanager's; converge's own views mark them "inhibited".
 *
 * Persistence: after each evaluation that changed anything, the whole set is rewritten to the
 * state file in one transaction. On start it is read back: an alert that was firing keeps its
 * startsAt, one that was pending keeps its activeAt, so a restart neither duplicates an alert
 * nor restarts its `for`.
 *
 * Threading: only the evaluation thread changes alerts; it takes e->mu for each change, and the
 * HTTP thread reads under e->mu. Context callbacks run without e->mu held.
 */
#include "notify.h"
#include "state.h"

#include "converge/alert.h"
#include "converge/json.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define MAX_ALERTS 100000 /* alerts held at once; more are not created (logged) */

typedef struct inst {
  const cvg_cat_rule *rule; /* NULL: restored alert whose rule is gone */
  size_t ds, rep;           /* rep SIZE_MAX: the dataset */
  json_t *labels;           /* OWNED */
  json_t *ann;              /* OWNED */
  char fp[17];              /* fingerprint, hex */
  cvg_alert_life life;
  double value;          /* last value (NAN unknown) */
  double expected, band; /* adaptive rules: the baseline and band; NAN otherwise */
  int inhibited;
  int seen;       /* evaluated in this round */
  int sent_state; /* state when last sent (to send transitions at once) */
} inst;

typedef struct series {
  const cvg_cat_rule *rule;
  size_t ds, rep;
  cvg_baseline bl;
  int warm;
} series;

typedef struct ds_rules {
  const cvg_cat_rule **r; /* OWNED array of BORROWED rules */
  size_t n;
} ds_rules;

struct cvg_alerts {
  const cvg_catalog *cat;
  cvg_logger *lg;
  pthread_mutex_t mu;
  inst *a; /* OWNED */
  size_t n, cap;
  series *ser; /* OWNED */
  size_t n_ser, cap_ser;
  cvg_cat_rule *builtin; /* OWNED */
  size_t n_builtin;
  ds_rules *dr; /* OWNED; one per dataset */
  sqlite3 *db;  /* state file; NULL when it could not be opened */
  uint64_t evaluations;
  cvg_notifier *nt;
  int dirty;
};

/* ---- built-in rules ------------------------------------------------------------------------- */

static char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d)
    memcpy(d, s, n);
  return d;
}

typedef struct bspec {
  const char *alert, *kind_subject;
  cvg_rule_kind kind;
  double threshold;
  int has_resolve;
  double resolve;
  double for_s;
  cvg_stage stage;
  const char *summary, *description;
} bspec;

static int add_builtin(cvg_alerts *e, const bspec *s, const char *label_name,
                       const char *label_value) {
  cvg_cat_rule *r = &e->builtin[e->n_builtin];
  memset(r, 0, sizeof *r);
  r->alert = xstrdup(s->alert);
  r->kind = s->kind;
  r->subject = xstrdup(s->kind_subject);
  r->threshold = s->threshold;
  r->has_resolve = s->has_resolve;
  r->resolve = s->resolve;
  r->for_s = s->for_s;
  r->stage = s->stage;
  r->at_least = CVG_TREND_WARN;
  r->window = 3600;
  r->severity = xstrdup(s->stage == CVG_STAGE_LATE  ? "page"
                        : s->stage == CVG_STAGE_MID ? "critical"
                                                    : "warning");
  r->builtin = 1;
  r->n_ann = 2;
  r->ann_names = calloc(2, sizeof(char *));
  r->ann_values = calloc(2, sizeof(char *));
  if (r->ann_names && r->ann_values) {
    r->ann_names[0] = xstrdup("summary");
    r->ann_values[0] = xstrdup(s->summary);
    r->ann_names[1] = xstrdup("description");
    r->ann_values[1] = xstrdup(s->description);
  }
  if (label_name) {
    r->n_labels = 1;
    r->label_names = calloc(1, sizeof(char *));
    r->label_values = calloc(1, sizeof(char *));
    if (r->label_names && r->label_values) {
      r->label_names[0] = xstrdup(label_name);
      r->label_values[0] = xstrdup(label_value);
    }
  }
  e->n_builtin++;
  if (!r->alert || !r->subject || !r->severity || !r->ann_names || !r->ann_values ||
      !r->ann_names[0] || !r->ann_values[0] || !r->ann_names[1] || !r->ann_values[1] ||
      (label_name &&
       (!r->label_names || !r->label_values || !r->label_names[0] || !r->label_values[0])))
    return CVG_ENOMEM;
  return CVG_OK;
}

/* The built-in rules of one dataset (docs/alerts.md lists them; each has a runbook). */
static int builtins_for(cvg_alerts *e, const cvg_cat_dataset *d) {
  const cvg_cat_alerting *al = &e->cat->alerting;
  const cvg_cat_invariants *iv = &d->inv;
  double hb = d->probes.heartbeat_interval > 0 ? d->probes.heartbeat_interval : 1;
  double max_lag = iv->max_lag_seconds >= 0 ? iv->max_lag_seconds : 30;
  double max_age = iv->max_divergence_age_seconds >= 0 ? iv->max_divergence_age_seconds : 900;
  const bspec specs[] = {
      {"ConvergeDivergenceConfirmed", "divergent_rows", CVG_RULE_METRIC, 0, 0, 0, 0,
       CVG_STAGE_EARLY, "{{ $value }} divergent rows confirmed in dataset {{ $labels.dataset }}",
       "Replicas of {{ $labels.dataset }} disagree on rows that stayed different past the "
       "confirmation wait (replication lag plus two heartbeat intervals): not rows in flight."},
      {"ConvergeDivergencePersisting", "divergence_age_seconds", CVG_RULE_METRIC, max_age, 0, 0, 0,
       CVG_STAGE_MID,
       "A divergence in {{ $labels.dataset }} has lasted {{ $value }}s (allowed {{ $threshold }}s)",
       "The oldest confirmed divergence outlived its allowed age: replication is not healing it "
       "by itself; the design or data model may be at fault."},
      {"ConvergeConflictsAcrossShards", "conflict_shards", CVG_RULE_METRIC, al->conflict_shards - 1,
       0, 0, 0, CVG_STAGE_LATE, "Conflicts in {{ $value }} shards of {{ $labels.dataset }}",
       "Rows whose versions are equal but contents differ (or that differ in more than one "
       "direction) repeat across several shards: a systematic fault, not a stray write."},
      {"ConvergeReplicationLag", "lag_seconds", CVG_RULE_METRIC, max_lag, 1, max_lag / 2, 3 * hb,
       CVG_STAGE_EARLY, "Replica {{ $labels.replica }} of {{ $labels.dataset }} lags {{ $value }}s",
       "The newest heartbeat this replica has applied is older than {{ $threshold }}s; it "
       "resolves below half of that."},
      {"ConvergeLagTrend", "lag", CVG_RULE_TREND, 0, 0, 0, 0, CVG_STAGE_EARLY,
       "Replication to {{ $labels.replica }} of {{ $labels.dataset }} is {{ $trend }}",
       "Judged over the last trend_window heartbeat samples: warn = lag never decreases, stall = "
       "the replica applies nothing while lag grows, stop = no reading for longer than the "
       "window."},
      {"ConvergeReplicaDown", "replica_down", CVG_RULE_METRIC, 0, 0, 0, 30, CVG_STAGE_EARLY,
       "converge cannot read replica {{ $labels.replica }} of {{ $labels.dataset }}",
       "Every probe of this replica fails; its lag and divergences are unknown while it lasts."},
      {"ConvergeSweepFailing", "sweep_failures", CVG_RULE_METRIC, 1, 0, 0, 0, CVG_STAGE_EARLY,
       "Sweeps of {{ $labels.dataset }} keep failing on replica {{ $labels.replica }} "
       "({{ $value }} in a row)",
       "The replica answers probes, but reading its rows fails (corrupt pages, a file replaced "
       "mid-scan, a scan error): drift there cannot be seen until it is fixed."},
      {"ConvergeCanaryNotConverging", "canary_failures", CVG_RULE_METRIC, 0, 0, 0, 0,
       CVG_STAGE_EARLY,
       "Canary writes did not reach {{ $labels.replica }} of {{ $labels.dataset }} "
       "({{ $value }} in the last 10 minutes)",
       "A canary written to the authority was not seen on this replica within its timeout: "
       "replication may be silently broken."},
      {"ConvergeSchemaDrift", "schema_drift", CVG_RULE_METRIC, 0, 0, 0, 0, CVG_STAGE_MID,
       "The replicas of {{ $labels.dataset }} have different schemas",
       "A column or type differs between replicas: a migration ran on some of them only."},
  };
  for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
    if (specs[i].kind == CVG_RULE_TREND && d->probes.heartbeat_interval <= 0)
      continue;
    int rc = add_builtin(e, &specs[i], NULL, NULL);
    if (rc)
      return rc;
  }
  struct {
    const char *name;
    int declared;
    cvg_stage stage;
  } invs[] = {{"max_lag_seconds", iv->max_lag_seconds >= 0, CVG_STAGE_EARLY},
              {"max_divergent_rows", iv->max_divergent_rows >= 0, CVG_STAGE_EARLY},
              {"max_divergent_fraction", iv->max_divergent_fraction >= 0, CVG_STAGE_EARLY},
              {"min_agreeing_replicas", iv->min_agreeing_replicas >= 0, CVG_STAGE_MID},
              {"max_divergence_age_seconds", iv->max_divergence_age_seconds >= 0, CVG_STAGE_MID},
              {"equal_aggregate", iv->n_aggregates > 0, CVG_STAGE_MID}};
  for (size_t i = 0; i < sizeof invs / sizeof invs[0]; i++) {
    if (!invs[i].declared)
      continue;
    bspec s = {"ConvergeInvariantBreached",
               invs[i].name,
               CVG_RULE_INVARIANT,
               0,
               0,
               0,
               0,
               invs[i].stage,
               "Invariant {{ $labels.invariant }} of {{ $labels.dataset }} is breached",
               "A declared invariant of the catalog does not hold."};
    int rc = add_builtin(e, &s, "invariant", invs[i].name);
    if (rc)
      return rc;
  }
  if (d->auto_repair) {
    bspec stalled = {"ConvergeRepairStalled",
                     "repair_stalled_runs",
                     CVG_RULE_METRIC,
                     2,
                     0,
                     0,
                     0,
                     CVG_STAGE_MID,
                     "Automatic repair of {{ $labels.dataset }} is stalled",
                     "Three repair runs or more in a row applied nothing while confirmed "
                     "divergences wait: every write is skipped (rows keep changing) or fails."};
    bspec failed = {"ConvergeRepairFailed",
                    "repair_failures",
                    CVG_RULE_METRIC,
                    0,
                    0,
                    0,
                    0,
                    CVG_STAGE_LATE,
                    "A repair of {{ $labels.dataset }} failed ({{ $value }} failure(s) in the last "
                    "run)",
                    "A corrective action failed: a conditional write or the repair run itself "
                    "returned an error. The journal and converge's log say which and why."};
    bspec refused = {"ConvergeRepairRefused",
                     "repair_refused",
                     CVG_RULE_METRIC,
                     0,
                     0,
                     0,
                     0,
                     CVG_STAGE_LATE,
                     "Automatic repair of {{ $labels.dataset }} was refused by a safety limit "
                     "({{ $value }} change(s) held back, nothing applied)",
                     "The repair would have deleted more of a replica's rows than "
                     "repair.max_delete_fraction allows, written more than "
                     "repair.max_changes_per_run, or copied an empty authority. Nothing was "
                     "written; the refusal and its counts are in the journal (converge audit show "
                     "--kind run) and the log (repair_refused). Check the authority first."};
    int rc = add_builtin(e, &stalled, NULL, NULL);
    if (rc || (rc = add_builtin(e, &failed, NULL, NULL)) ||
        (rc = add_builtin(e, &refused, NULL, NULL)))
      return rc;
  }
  if (d->slo.declared) {
    bspec fast = {"ConvergeSLOBurnFast",
                  "convergence",
                  CVG_RULE_SLO,
                  14.4,
                  0,
                  0,
                  0,
                  CVG_STAGE_MID,
                  "Convergence SLO of {{ $labels.dataset }} burning {{ $value }}x over 1h",
                  "At this rate the month's error budget of the convergence SLO is gone in about "
                  "two days."};
    bspec slow = {"ConvergeSLOBurnSlow",
                  "convergence",
                  CVG_RULE_SLO,
                  6,
                  0,
                  0,
                  0,
                  CVG_STAGE_EARLY,
                  "Convergence SLO of {{ $labels.dataset }} burning {{ $value }}x over 6h",
                  "A slow, steady burn of the convergence SLO's error budget."};
    int rc = add_builtin(e, &fast, NULL, NULL);
    if (rc || (rc = add_builtin(e, &slow, NULL, NULL)))
      return rc;
    e->builtin[e->n_builtin - 1].window = 6 * 3600;
  }
  return CVG_OK;
}

/* Effective rules of each dataset: its own, then global ones, then built-ins not replaced by a
 * rule of the same alert name. */
static int build_rules(cvg_alerts *e) {
  const cvg_catalog *cat = e->cat;
  size_t max_b = cat->n_datasets * 32;
  e->builtin = calloc(max_b ? max_b : 1, sizeof *e->builtin);
  e->dr = calloc(cat->n_datasets, sizeof *e->dr);
  if (!e->builtin || !e->dr)
    return CVG_ENOMEM;
  for (size_t i = 0; i < cat->n_datasets; i++) {
    const cvg_cat_dataset *d = &cat->datasets[i];
    size_t b0 = e->n_builtin;
    if (cat->alerting.builtin_rules) {
      int rc = builtins_for(e, d);
      if (rc)
        return rc;
    }
    size_t cap = d->n_rules + cat->alerting.n_rules + (e->n_builtin - b0);
    ds_rules *dr = &e->dr[i];
    if (!(dr->r = calloc(cap ? cap : 1, sizeof *dr->r)))
      return CVG_ENOMEM;
    for (size_t j = 0; j < d->n_rules; j++)
      dr->r[dr->n++] = &d->rules[j];
    for (size_t j = 0; j < cat->alerting.n_rules; j++) {
      int dup = 0;
      for (size_t k = 0; k < d->n_rules; k++)
        dup |= strcmp(d->rules[k].alert, cat->alerting.rules[j].alert) == 0;
      if (!dup)
        dr->r[dr->n++] = &cat->alerting.rules[j];
    }
    for (size_t j = b0; j < e->n_builtin; j++) {
      int dup = 0;
      for (size_t k = 0; k < dr->n && !dup; k++)
        dup = !dr->r[k]->builtin && strcmp(dr->r[k]->alert, e->builtin[j].alert) == 0;
      if (!dup)
        dr->r[dr->n++] = &e->builtin[j];
    }
  }
  return CVG_OK;
}

const cvg_cat_rule *const *cvg_alerts_rules(const cvg_alerts *e, size_t ds, size_t *n) {
  *n = e->dr[ds].n;
  return e->dr[ds].r;
}

/* ---- labels, fingerprints, templates -------------------------------------------------------- */

static int replica_scoped(const cvg_cat_rule *r) {
  return r->kind == CVG_RULE_TREND ||
         (r->kind == CVG_RULE_METRIC && cvg_rule_metric_scope(r->subject) == 1);
}

static json_t *make_labels(const cvg_alerts *e, const cvg_cat_rule *r, size_t ds, size_t rep) {
  const cvg_cat_dataset *d = &e->cat->datasets[ds];
  json_t *l = json_object();
  if (!l)
    return NULL;
  json_object_set_new(l, "alertname", json_string(r->alert));
  json_object_set_new(l, "dataset", json_string(d->name));
  if (rep != SIZE_MAX)
    json_object_set_new(l, "replica", json_string(d->replicas[rep].name));
  json_object_set_new(l, "stage", json_string(cvg_stage_names[r->stage]));
  json_object_set_new(l, "severity", json_string(r->severity));
  if (d->owner && *d->owner)
    json_object_set_new(l, "team", json_string(d->owner));
  if (r->kind == CVG_RULE_INVARIANT)
    json_object_set_new(l, "invariant", json_string(r->subject));
  for (size_t i = 0; i < r->n_labels; i++)
    json_object_set_new(l, r->label_names[i], json_string(r->label_values[i]));
  return l;
}

static void fingerprint(const json_t *labels, char out[17]) {
  char *s = json_dumps(labels, JSON_COMPACT | JSON_SORT_KEYS);
  uint64_t h = s ? XXH3_64bits(s, strlen(s)) : 0;
  free(s);
  snprintf(out, 17, "%016llx", (unsigned long long)h);
}

static void fmt_value(char *buf, size_t n, double v) {
  if (isnan(v))
    snprintf(buf, n, "unknown");
  else if (isinf(v))
    snprintf(buf, n, v > 0 ? "+Inf" : "-Inf");
  else if (v == floor(v) && fabs(v) < 1e15)
    snprintf(buf, n, "%.0f", v);
  else
    snprintf(buf, n, "%.3g", v);
}

/* Expands {{ $value }}, {{ $threshold }}, {{ $trend }} and {{ $labels.NAME }} in t. */
static json_t *expand(const char *t, const json_t *labels, double value, double threshold) {
  char out[2048];
  size_t o = 0;
  while (*t && o + 1 < sizeof out) {
    const char *open = strstr(t, "{{");
    const char *close = open ? strstr(open, "}}") : NULL;
    size_t lit = open && close ? (size_t)(open - t) : strlen(t);
    if (lit > sizeof out - 1 - o)
      lit = sizeof out - 1 - o;
    memcpy(out + o, t, lit);
    o += lit;
    if (!open || !close)
      break;
    char name[128];
    const char *a = open + 2, *b = close;
    while (a < b && *a == ' ')
      a++;
    while (b > a && b[-1] == ' ')
      b--;
    size_t nl = (size_t)(b - a) < sizeof name - 1 ? (size_t)(b - a) : sizeof name - 1;
    memcpy(name, a, nl);
    name[nl] = '\0';
    char rep[512] = "";
    if (strcmp(name, "$value") == 0)
      fmt_value(rep, sizeof rep, value);
    else if (strcmp(name, "$threshold") == 0)
      fmt_value(rep, sizeof rep, threshold);
    else if (strcmp(name, "$trend") == 0) {
      int s = isnan(value) ? -1 : (int)value;
      snprintf(rep, sizeof rep, "%s", cvg_trend_names[s < -1 || s > 3 ? 0 : s + 1]);
    } else if (strncmp(name, "$labels.", 8) == 0) {
      const char *lv = json_string_value(json_object_get(labels, name + 8));
      snprintf(rep, sizeof rep, "%s", lv ? lv : "");
    } else {
      snprintf(rep, sizeof rep, "{{%s}}", name);
    }
    size_t rl = strlen(rep);
    if (rl > sizeof out - 1 - o)
      rl = sizeof out - 1 - o;
    memcpy(out + o, rep, rl);
    o += rl;
    t = close + 2;
  }
  out[o] = '\0';
  return json_string(out);
}

/* ---- instances -------------------------------------------------------------------------------- */

static inst *find(cvg_alerts *e, const char *fp) {
  for (size_t i = 0; i < e->n; i++)
    if (strcmp(e->a[i].fp, fp) == 0)
      return &e->a[i];
  return NULL;
}

static inst *add_inst(cvg_alerts *e) {
  if (e->n == e->cap) {
    size_t cap = e->cap ? e->cap * 2 : 32;
    if (cap > MAX_ALERTS)
      return NULL;
    inst *g = realloc(e->a, cap * sizeof *g);
    if (!g)
      return NULL;
    e->a = g;
    e->cap = cap;
  }
  inst *in = &e->a[e->n++];
  memset(in, 0, sizeof *in);
  in->value = in->expected = in->band = NAN;
  return in;
}

static series *get_series(cvg_alerts *e, const cvg_cat_rule *r, size_t ds, size_t rep) {
  for (size_t i = 0; i < e->n_ser; i++)
    if (e->ser[i].rule == r && e->ser[i].ds == ds && e->ser[i].rep == rep)
      return &e->ser[i];
  if (e->n_ser == e->cap_ser) {
    size_t cap = e->cap_ser ? e->cap_ser * 2 : 8;
    series *g = realloc(e->ser, cap * sizeof *g);
    if (!g)
      return NULL;
    e->ser = g;
    e->cap_ser = cap;
  }
  series *s = &e->ser[e->n_ser];
  memset(s, 0, sizeof *s);
  if (cvg_baseline_init(&s->bl) != CVG_OK)
    return NULL;
  s->rule = r;
  s->ds = ds;
  s->rep = rep;
  e->n_ser++;
  return s;
}

/* ---- persistence ----------------------------------------------------------------------------- */

static void persist(cvg_alerts *e, double now) {
  if (!e->db)
    return;
  sqlite3_stmt *st = NULL;
  int ok = sqlite3_exec(e->db, "BEGIN IMMEDIATE; DELETE FROM converge_alert_state;", NULL, NULL,
                        NULL) == SQLITE_OK;
  if (ok)
    ok =
        sqlite3_prepare_v2(e->db, "INSERT INTO converge_alert_state VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                           -1, &st, NULL) == SQLITE_OK;
  for (size_t i = 0; ok && i < e->n; i++) {
    inst *in = &e->a[i];
    char *l = json_dumps(in->labels, JSON_COMPACT | JSON_SORT_KEYS);
    char *an = in->ann ? json_dumps(in->ann, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    sqlite3_bind_text(st, 1, in->fp, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, l ? l : "{}", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, an ? an : "{}", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, cvg_alert_state_names[in->life.state], -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 5, in->life.active_at);
    sqlite3_bind_double(st, 6, in->life.starts_at);
    sqlite3_bind_double(st, 7, in->life.last_true);
    sqlite3_bind_double(st, 8, in->life.resolved_at);
    if (isnan(in->value) || isinf(in->value))
      sqlite3_bind_null(st, 9);
    else
      sqlite3_bind_double(st, 9, in->value);
    sqlite3_bind_int(st, 10, in->inhibited);
    sqlite3_bind_double(st, 11, now);
    ok = sqlite3_step(st) == SQLITE_DONE;
    sqlite3_reset(st);
    free(l);
    free(an);
  }
  sqlite3_finalize(st);
  if (ok && sqlite3_exec(e->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK) {
    e->dirty = 0;
    return;
  }
  cvg_log(e->lg, CVG_LOG_WARN, "alert_state_not_saved", "file", e->cat->alerting.state_file,
          "error", sqlite3_errmsg(e->db), (const char *)NULL);
  sqlite3_exec(e->db, "ROLLBACK", NULL, NULL, NULL);
}

static void restore(cvg_alerts *e) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(e->db,
                         "SELECT fingerprint, labels, annotations, state, active_at, starts_at,"
                         " last_true, resolved_at, value FROM converge_alert_state",
                         -1, &st, NULL) != SQLITE_OK)
    return;
  while (sqlite3_step(st) == SQLITE_ROW) {
    const char *state = (const char *)sqlite3_column_text(st, 3);
    cvg_alert_state s = CVG_ALERT_INACTIVE;
    for (int k = 1; k <= 3; k++)
      if (state && strcmp(state, cvg_alert_state_names[k]) == 0)
        s = (cvg_alert_state)k;
    json_t *l = json_loads((const char *)sqlite3_column_text(st, 1), 0, NULL);
    if (s == CVG_ALERT_INACTIVE || !json_is_object(l)) {
      json_decref(l);
      continue;
    }
    inst *in = add_inst(e);
    if (!in) {
      json_decref(l);
      break;
    }
    in->labels = l;
    in->ann = json_loads((const char *)sqlite3_column_text(st, 2), 0, NULL);
    fingerprint(l, in->fp);
    in->life.state = s;
    in->life.active_at = sqlite3_column_double(st, 4);
    in->life.starts_at = sqlite3_column_double(st, 5);
    in->life.last_true = sqlite3_column_double(st, 6);
    in->life.resolved_at = sqlite3_column_double(st, 7);
    in->value = sqlite3_column_type(st, 8) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 8);
    in->sent_state = -1; /* re-send once after a restart */
    in->ds = SIZE_MAX;
    in->rep = SIZE_MAX;
  }
  sqlite3_finalize(st);
  if (e->n)
    cvg_log(e->lg, CVG_LOG_INFO, "alerts_restored", "file", e->cat->alerting.state_file,
            (const char *)NULL);
}

/* ---- public ----------------------------------------------------------------------------------- */

int cvg_alerts_new(cvg_alerts **out, const cvg_catalog *cat, cvg_logger *lg, cvg_error *err) {
  *out = NULL;
  cvg_alerts *e = calloc(1, sizeof *e);
  if (!e)
    return cvg_error_set(err, CVG_ENOMEM, "alerts", "out of memory");
  e->cat = cat;
  e->lg = lg;
  pthread_mutex_init(&e->mu, NULL);
  int rc = build_rules(e);
  if (rc) {
    cvg_alerts_free(e);
    return cvg_error_set(err, CVG_ENOMEM, "alerts", "out of memory");
  }
  cvg_error serr;
  cvg_error_clear(&serr);
  if (cvg_state_open(&e->db, cat->alerting.state_file, 1, &serr) != CVG_OK) {
    /* without the state file alerts still work; only a restart forgets them */
    cvg_log(lg, CVG_LOG_WARN, "alert_state_unavailable", "file", serr.input, "error", serr.msg,
            "hint", serr.hint, (const char *)NULL);
  } else {
    restore(e);
  }
  if ((rc = cvg_notifier_new(&e->nt, cat, lg, err))) {
    cvg_alerts_free(e);
    return rc;
  }
  *out = e;
  return CVG_OK;
}

int cvg_alerts_rules_new(cvg_alerts **out, const cvg_catalog *cat) {
  *out = NULL;
  cvg_alerts *e = calloc(1, sizeof *e);
  if (!e)
    return CVG_ENOMEM;
  e->cat = cat;
  pthread_mutex_init(&e->mu, NULL);
  if (build_rules(e) != CVG_OK) {
    cvg_alerts_free(e);
    return CVG_ENOMEM;
  }
  *out = e;
  return CVG_OK;
}

void cvg_alerts_free(cvg_alerts *e) {
  if (!e)
    return;
  cvg_notifier_free(e->nt);
  for (size_t i = 0; i < e->n; i++) {
    json_decref(e->a[i].labels);
    json_decref(e->a[i].ann);
  }
  free(e->a);
  for (size_t i = 0; i < e->n_ser; i++)
    cvg_baseline_free(&e->ser[i].bl);
  free(e->ser);
  for (size_t i = 0; e->builtin && i < e->n_builtin; i++)
    cvg_cat_rule_free(&e->builtin[i]);
  free(e->builtin);
  for (size_t i = 0; e->dr && i < e->cat->n_datasets; i++)
    free(e->dr[i].r);
  free(e->dr);
  if (e->db)
    sqlite3_close(e->db);
  pthread_mutex_destroy(&e->mu);
  free(e);
}

void cvg_alerts_flush(cvg_alerts *e, double timeout) {
  cvg_notifier_flush(e->nt, timeout);
}

/* The alert in Alertmanager's API v2 form (postableAlert). */
static json_t *postable(const cvg_alerts *e, const inst *in, double now) {
  const cvg_cat_alerting *al = &e->cat->alerting;
  double ends =
      in->life.state == CVG_ALERT_RESOLVED ? in->life.resolved_at : now + 4 * al->resend_interval;
  char url[600];
  const char *ds = json_string_value(json_object_get(in->labels, "dataset"));
  snprintf(url, sizeof url, "%s/api/v1/alerts?fingerprint=%s%s%s", al->external_url, in->fp,
           ds ? "&dataset=" : "", ds ? ds : "");
  return json_pack("{s:O, s:o, s:o, s:o, s:s}", "labels", in->labels, "annotations",
                   in->ann ? json_incref(in->ann) : json_object(), "startsAt",
                   cvg_json_time(in->life.starts_at > 0 ? in->life.starts_at : in->life.active_at),
                   "endsAt", cvg_json_time(ends), "generatorURL", url);
}

static json_t *threshold_json(const inst *in) {
  if (!in->rule)
    return json_null();
  if (in->rule->adaptive)
    return isnan(in->expected) ? json_null() : json_real(in->expected + in->band);
  if (in->rule->kind == CVG_RULE_METRIC || in->rule->kind == CVG_RULE_SLO)
    return json_real(in->rule->threshold);
  return json_null();
}

/* Annotations of an active alert: the rule's (templated), then runbook, dashboard, value, and
 * the source's context. Built without e->mu. */
static json_t *annotations(cvg_alerts *e, const cvg_alert_source *src, const inst *in) {
  const cvg_cat_rule *r = in->rule;
  const cvg_cat_alerting *al = &e->cat->alerting;
  json_t *ann = json_object();
  if (!ann)
    return NULL;
  double thr = r->adaptive ? in->expected + in->band : r->threshold;
  if (r->kind == CVG_RULE_INVARIANT)
    thr = NAN;
  for (size_t i = 0; i < r->n_ann; i++)
    json_object_set_new(ann, r->ann_names[i], expand(r->ann_values[i], in->labels, in->value, thr));
  if (!json_object_get(ann, "summary")) {
    char s[512], v[32];
    fmt_value(v, sizeof v, in->value);
    snprintf(s, sizeof s, "%s: %s %s is %s", r->alert,
             json_string_value(json_object_get(in->labels, "dataset")), r->subject, v);
    json_object_set_new(ann, "summary", json_string(s));
  }
  char buf[700];
  if (r->runbook_url)
    json_object_set_new(ann, "runbook_url", json_string(r->runbook_url));
  else {
    snprintf(buf, sizeof buf, "%s/runbooks/%s", al->external_url,
             r->builtin ? r->alert : "custom-rule");
    json_object_set_new(ann, "runbook_url", json_string(buf));
  }
  /* dataset names are letters, digits and "_-." (catalog): safe in a URL as they are */
  const char *dsname = json_string_value(json_object_get(in->labels, "dataset"));
  snprintf(buf, sizeof buf, "%s/dashboard/#dataset=%s", al->external_url, dsname);
  json_object_set_new(ann, "dashboard", json_string(buf));
  snprintf(buf, sizeof buf, "%s/api/v1/divergences?dataset=%s", al->external_url, dsname);
  json_object_set_new(ann, "divergences_url", json_string(buf));
  fmt_value(buf, sizeof buf, in->value);
  json_object_set_new(ann, "value", json_string(buf));
  if (r->adaptive && !isnan(in->expected)) {
    char ex[32], bd[32];
    fmt_value(ex, sizeof ex, in->expected);
    fmt_value(bd, sizeof bd, in->band);
    snprintf(buf, sizeof buf, "baseline %s, band +%s (k=%g, seasonal by hour of week)", ex, bd,
             r->k);
    json_object_set_new(ann, "baseline", json_string(buf));
  }
  if (src->context)
    src->context(src->ctx, in->ds, in->rep, r, in->life.active_at, ann);
  /* Alertmanager takes string annotations only */
  const char *k;
  json_t *v;
  json_object_foreach(ann, k, v) {
    if (!json_is_string(v)) {
      char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
      json_object_set_new(ann, k, json_string(t ? t : ""));
      free(t);
    }
  }
  /* likely cause: change events near the onset */
  cvg_event evs[3];
  size_t n_ev = 0;
  cvg_error err;
  cvg_error_clear(&err);
  double onset = in->life.active_at;
  if (e->db &&
      cvg_state_events(e->db, al->state_file, onset - al->cause_window,
                       onset + al->evaluation_interval,
                       json_string_value(json_object_get(in->labels, "dataset")), evs, 3, &n_ev,
                       &err) == CVG_OK &&
      n_ev) {
    size_t o = 0;
    for (size_t i = 0; i < n_ev && o < sizeof buf - 1; i++) {
      double d = onset - evs[i].at;
      o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%s \"%s\" %.0fs %s onset", i ? "; " : "",
                            evs[i].kind, evs[i].text, fabs(d), d >= 0 ? "before" : "after");
      if (o >= sizeof buf)
        o = sizeof buf - 1;
    }
    const char *origin = json_string_value(json_object_get(ann, "likely_cause"));
    char full[1400];
    snprintf(full, sizeof full, "%s%s%s", buf, origin ? "; " : "", origin ? origin : "");
    json_object_set_new(ann, "likely_cause", json_string(full));
  }
  return ann;
}

static void log_transition(cvg_alerts *e, const inst *in) {
  const char *alertname = json_string_value(json_object_get(in->labels, "alertname"));
  const char *ds = json_string_value(json_object_get(in->labels, "dataset"));
  const char *rep = json_string_value(json_object_get(in->labels, "replica"));
  const char *stage = json_string_value(json_object_get(in->labels, "stage"));
  const char *trace = json_string_value(json_object_get(in->ann, "trace_id"));
  cvg_log(e->lg, in->life.state == CVG_ALERT_FIRING ? CVG_LOG_WARN : CVG_LOG_INFO,
          in->life.state == CVG_ALERT_FIRING     ? "alert_firing"
          : in->life.state == CVG_ALERT_PENDING  ? "alert_pending"
          : in->life.state == CVG_ALERT_RESOLVED ? "alert_resolved"
                                                 : "alert_inactive",
          "alertname", alertname ? alertname : "", "dataset", ds ? ds : "", "replica",
          rep ? rep : "", "stage", stage ? stage : "", "fingerprint", in->fp, "trace_id",
          trace ? trace : "", (const char *)NULL);
}

static int stage_of(const inst *in) {
  const char *s = json_string_value(json_object_get(in->labels, "stage"));
  for (int i = 0; s && i < 3; i++)
    if (strcmp(s, cvg_stage_names[i]) == 0)
      return i;
  return 0;
}

static int same_str(const json_t *a, const json_t *b) {
  const char *x = json_string_value(a), *y = json_string_value(b);
  return (!x && !y) || (x && y && strcmp(x, y) == 0);
}

int cvg_alerts_eval(cvg_alerts *e, const cvg_alert_source *src, double now) {
  const cvg_catalog *cat = e->cat;
  for (size_t i = 0; i < e->n; i++)
    e->a[i].seen = 0;
  for (size_t d = 0; d < cat->n_datasets; d++) {
    const cvg_cat_dataset *dd = &cat->datasets[d];
    int ready = !src->ready || src->ready(src->ctx, d);
    for (size_t k = 0; k < e->dr[d].n; k++) {
      const cvg_cat_rule *r = e->dr[d].r[k];
      int per_rep = replica_scoped(r);
      size_t n_series = per_rep ? dd->n_replicas : 1;
      for (size_t s = 0; s < n_series; s++) {
        size_t rep = per_rep ? s : SIZE_MAX;
        /* lag, canary and trend mean nothing on the authority itself */
        if (per_rep && (int)rep == dd->authority && strcmp(r->subject, "replica_down") != 0)
          continue;
        double v = NAN, raw = NAN, expected = NAN, band = NAN;
        int known = src->value(src->ctx, d, rep, r, &raw);
        if (known)
          v = raw;
        if (known && r->adaptive) {
          double inten = -1;
          if (r->intensity) {
            cvg_cat_rule ir = *r;
            ir.subject = r->intensity;
            ir.adaptive = 0;
            if (!src->value(src->ctx, d, cvg_rule_metric_scope(r->intensity) == 1 ? rep : SIZE_MAX,
                            &ir, &inten))
              inten = -1;
          }
          series *se = get_series(e, r, d, rep);
          cvg_bl_judgement j =
              se ? cvg_baseline_observe(&se->bl, now, raw, inten, r->k, r->floor, r->warmup)
                 : (cvg_bl_judgement){0, 0, NAN, NAN};
          if (se)
            se->warm = j.warm;
          expected = j.expected;
          band = j.band;
          v = j.warm ? (double)j.anomalous : NAN;
        }
        json_t *labels = make_labels(e, r, d, rep);
        if (!labels)
          continue;
        char fp[17];
        fingerprint(labels, fp);
        inst *in = find(e, fp);
        int active =
            in && (in->life.state == CVG_ALERT_PENDING || in->life.state == CVG_ALERT_FIRING);
        int cond = cvg_alert_cond(r, active, v);
        if (!in && !cond) {
          json_decref(labels);
          continue;
        }
        pthread_mutex_lock(&e->mu);
        if (!in) {
          in = add_inst(e);
          if (!in) {
            pthread_mutex_unlock(&e->mu);
            json_decref(labels);
            continue;
          }
          in->labels = labels;
          memcpy(in->fp, fp, sizeof fp);
          in->sent_state = CVG_ALERT_INACTIVE;
          e->dirty = 1;
        } else {
          json_decref(labels);
        }
        in->rule = r;
        in->ds = d;
        in->rep = rep;
        in->seen = 1;
        in->value = r->adaptive ? raw : known ? raw : NAN;
        in->expected = expected;
        in->band = band;
        if (!cond && !ready) {
          pthread_mutex_unlock(&e->mu);
          continue; /* the monitor cannot judge yet: nothing resolves */
        }
        if (cvg_alert_step(&in->life, cond, now, r->for_s, r->keep_firing_for)) {
          e->dirty = 1;
          log_transition(e, in);
        }
        pthread_mutex_unlock(&e->mu);
      }
    }
  }
  /* alerts not evaluated this round (their rule or series is gone): the condition is false */
  pthread_mutex_lock(&e->mu);
  for (size_t i = 0; i < e->n; i++) {
    inst *in = &e->a[i];
    if (in->seen)
      continue;
    if (src->ready && in->ds < cat->n_datasets && !src->ready(src->ctx, in->ds))
      continue;
    if (!in->rule && src->ready) { /* restored: wait until its dataset can be judged */
      const char *dn = json_string_value(json_object_get(in->labels, "dataset"));
      size_t d = 0;
      while (dn && d < cat->n_datasets && strcmp(cat->datasets[d].name, dn) != 0)
        d++;
      if (dn && d < cat->n_datasets && !src->ready(src->ctx, d))
        continue;
    }
    if (cvg_alert_step(&in->life, 0, now, 0, 0)) {
      e->dirty = 1;
      log_transition(e, in);
    }
  }
  /* forget inactive alerts and resolved ones past retention */
  size_t w = 0;
  for (size_t i = 0; i < e->n; i++) {
    inst *in = &e->a[i];
    int drop = in->life.state == CVG_ALERT_INACTIVE ||
               (in->life.state == CVG_ALERT_RESOLVED &&
                now - in->life.resolved_at > cat->alerting.resolved_retention);
    if (drop) {
      json_decref(in->labels);
      json_decref(in->ann);
      e->dirty = 1;
      continue;
    }
    e->a[w++] = *in;
  }
  e->n = w;
  /* inhibition: a later stage of the same dataset and shard */
  for (size_t i = 0; i < e->n; i++) {
    inst *in = &e->a[i];
    int inh = 0;
    if (in->life.state == CVG_ALERT_FIRING)
      for (size_t j = 0; j < e->n && !inh; j++) {
        const inst *o = &e->a[j];
        inh = j != i && o->life.state == CVG_ALERT_FIRING && stage_of(o) > stage_of(in) &&
              same_str(json_object_get(o->labels, "dataset"),
                       json_object_get(in->labels, "dataset")) &&
              same_str(json_object_get(o->labels, "shard"), json_object_get(in->labels, "shard"));
      }
    if (inh != in->inhibited) {
      in->inhibited = inh;
      e->dirty = 1;
      cvg_log(e->lg, CVG_LOG_INFO, inh ? "alert_inhibited" : "alert_uninhibited", "alertname",
              json_string_value(json_object_get(in->labels, "alertname")), "fingerprint", in->fp,
              (const char *)NULL);
    }
  }
  pthread_mutex_unlock(&e->mu);
  /* context of active alerts, built without the lock (it reads the monitor and the state file) */
  for (size_t i = 0; i < e->n; i++) {
    inst *in = &e->a[i];
    if (!in->rule || in->life.state == CVG_ALERT_RESOLVED)
      continue;
    json_t *ann = annotations(e, src, in);
    if (!ann)
      continue;
    pthread_mutex_lock(&e->mu);
    json_decref(in->ann);
    in->ann = ann;
    pthread_mutex_unlock(&e->mu);
  }
  /* what is due for delivery */
  json_t *batch = json_array();
  json_t *hook = json_array();
  size_t n_log = 0;
  cvg_buf logl;
  cvg_buf_init(&logl, 64u << 20);
  const cvg_cat_alerting *al = &cat->alerting;
  pthread_mutex_lock(&e->mu);
  for (size_t i = 0; batch && hook && i < e->n; i++) {
    inst *in = &e->a[i];
    if (in->life.state != CVG_ALERT_FIRING && in->life.state != CVG_ALERT_RESOLVED)
      continue;
    int transition = in->sent_state != (int)in->life.state;
    if (!transition && now - in->life.last_sent < al->resend_interval)
      continue;
    json_t *p = postable(e, in, now);
    if (!p)
      continue;
    json_t *h = json_deep_copy(p);
    if (h) {
      json_object_set_new(h, "status",
                          json_string(in->life.state == CVG_ALERT_FIRING ? "firing" : "resolved"));
      json_object_set_new(h, "fingerprint", json_string(in->fp));
      json_object_set_new(h, "inhibited", json_boolean(in->inhibited));
      if (transition && in->sent_state != -1) {
        json_t *lj = json_deep_copy(h);
        if (lj) {
          json_object_set_new(lj, "time", cvg_json_time(now));
          char *s = json_dumps(lj, JSON_COMPACT | JSON_SORT_KEYS);
          if (s && cvg_buf_append(&logl, s, strlen(s)) == CVG_OK &&
              cvg_buf_append(&logl, "\n", 1) == CVG_OK)
            n_log++;
          free(s);
          json_decref(lj);
        }
      }
      json_array_append_new(hook, h);
    }
    json_array_append_new(batch, p);
    in->life.last_sent = now;
    in->sent_state = (int)in->life.state;
  }
  e->evaluations++;
  int dirty = e->dirty;
  pthread_mutex_unlock(&e->mu);
  if (batch && json_array_size(batch))
    cvg_notifier_push(e->nt, batch, hook, n_log ? (const char *)logl.data : NULL,
                      n_log ? logl.len : 0, now);
  json_decref(batch);
  json_decref(hook);
  cvg_buf_release(&logl);
  if (dirty)
    persist(e, now);
  return CVG_OK;
}

int cvg_alerts_json(cvg_alerts *e, const char *fingerprint, cvg_buf *out) {
  json_t *arr = json_array();
  if (!arr)
    return CVG_ENOMEM;
  pthread_mutex_lock(&e->mu);
  for (size_t i = 0; i < e->n; i++) {
    const inst *in = &e->a[i];
    if (fingerprint && strcmp(fingerprint, in->fp) != 0)
      continue;
    /* deep copies: the HTTP thread must not share jansson objects (and their reference counts)
     * with the evaluation thread */
    json_t *a = json_pack("{s:o, s:o, s:s, s:s, s:o, s:b}", "labels", json_deep_copy(in->labels),
                          "annotations", in->ann ? json_deep_copy(in->ann) : json_object(), "state",
                          cvg_alert_state_names[in->life.state], "fingerprint", in->fp, "activeAt",
                          cvg_json_time(in->life.active_at), "inhibited", in->inhibited);
    if (!a)
      continue;
    if (in->life.starts_at > 0)
      json_object_set_new(a, "startsAt", cvg_json_time(in->life.starts_at));
    if (in->life.state == CVG_ALERT_RESOLVED)
      json_object_set_new(a, "endsAt", cvg_json_time(in->life.resolved_at));
    json_object_set_new(a, "value",
                        isnan(in->value) || isinf(in->value) ? json_null() : json_real(in->value));
    json_object_set_new(a, "threshold", threshold_json(in));
    json_array_append_new(arr, a);
  }
  pthread_mutex_unlock(&e->mu);
  json_t *root = json_pack("{s:o, s:o}", "alerts", arr, "delivery", cvg_notifier_json(e->nt));
  char *txt = root ? json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
  int rc = txt ? cvg_buf_append(out, txt, strlen(txt)) : CVG_ENOMEM;
  free(txt);
  json_decref(root);
  return rc;
}

static int emitf(cvg_buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static int emitf(cvg_buf *b, const char *fmt, ...) {
  char line[4096];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0)
    return CVG_EINVAL;
  return cvg_buf_append(b, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/* label set as {k="v",...} with Prometheus escaping */
static void prom_labels(const json_t *labels, const char *extra_k, const char *extra_v, char *out,
                        size_t size) {
  size_t o = 0;
  const char *k;
  json_t *v;
  const char *keys[64];
  size_t nk = 0;
  json_object_foreach((json_t *)labels, k, v) {
    if (nk < 64)
      keys[nk++] = k;
  }
  for (size_t i = 1; i < nk; i++)
    for (size_t j = i; j > 0 && strcmp(keys[j - 1], keys[j]) > 0; j--) {
      const char *t = keys[j];
      keys[j] = keys[j - 1];
      keys[j - 1] = t;
    }
  o += (size_t)snprintf(out + o, size - o, "{");
  for (size_t i = 0; i <= nk && o < size; i++) {
    const char *name = i < nk ? keys[i] : extra_k;
    const char *val = i < nk ? json_string_value(json_object_get(labels, keys[i])) : extra_v;
    if (!name || !val)
      continue;
    o += (size_t)snprintf(out + o, size - o, "%s%s=\"", o > 1 ? "," : "", name);
    for (const char *c = val; *c && o + 3 < size; c++) {
      if (*c == '\\' || *c == '"') {
        out[o++] = '\\';
        out[o++] = *c;
      } else if (*c == '\n') {
        out[o++] = '\\';
        out[o++] = 'n';
      } else {
        out[o++] = *c;
      }
    }
    if (o < size)
      o += (size_t)snprintf(out + o, size - o, "\"");
  }
  if (o < size)
    snprintf(out + o, size - o, "}");
  else
    out[size - 1] = '\0';
}

int cvg_alerts_metrics(cvg_alerts *e, cvg_buf *b) {
  char lb[2048];
  int rc = CVG_OK;
  pthread_mutex_lock(&e->mu);
  rc |= emitf(b, "# HELP converge_alerts Alerts converge holds, as Prometheus's ALERTS: 1 per "
                 "pending or firing alert.\n# TYPE converge_alerts gauge\n");
  for (size_t i = 0; i < e->n; i++) {
    const inst *in = &e->a[i];
    if (in->life.state != CVG_ALERT_PENDING && in->life.state != CVG_ALERT_FIRING)
      continue;
    prom_labels(in->labels, "alertstate", cvg_alert_state_names[in->life.state], lb, sizeof lb);
    rc |= emitf(b, "converge_alerts%s 1\n", lb);
  }
  rc |= emitf(b, "# HELP converge_alert_inhibited 1 while a firing alert is inhibited by a later "
                 "stage of the same dataset and shard.\n# TYPE converge_alert_inhibited gauge\n");
  for (size_t i = 0; i < e->n; i++) {
    const inst *in = &e->a[i];
    if (in->life.state != CVG_ALERT_FIRING)
      continue;
    prom_labels(in->labels, NULL, NULL, lb, sizeof lb);
    rc |= emitf(b, "converge_alert_inhibited%s %d\n", lb, in->inhibited);
  }
  rc |= emitf(b, "# HELP converge_alert_baseline_warm 1 once an adaptive threshold has learned "
                 "enough to judge.\n# TYPE converge_alert_baseline_warm gauge\n");
  for (size_t i = 0; i < e->n_ser; i++) {
    const series *s = &e->ser[i];
    const cvg_cat_dataset *d = &e->cat->datasets[s->ds];
    rc |= emitf(
        b, "converge_alert_baseline_warm{alertname=\"%s\",dataset=\"%s\",replica=\"%s\"} %d\n",
        s->rule->alert, d->name, s->rep == SIZE_MAX ? "" : d->replicas[s->rep].name, s->warm);
  }
  rc |= emitf(b,
              "# HELP converge_alert_evaluations_total Alert rule evaluation rounds.\n"
              "# TYPE converge_alert_evaluations_total counter\n"
              "converge_alert_evaluations_total %llu\n",
              (unsigned long long)e->evaluations);
  pthread_mutex_unlock(&e->mu);
  if (rc == CVG_OK)
    rc = cvg_notifier_metrics(e->nt, b);
  return rc ? CVG_ETOOBIG : CVG_OK;
}
