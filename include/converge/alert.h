/* SPDX-License-Identifier: MIT */
/*
 * Alerts: rule evaluation, the Prometheus alert lifecycle, stages and inhibition, lag trend
 * statuses, adaptive baselines, persisted state, change events, and delivery to Alertmanager
 * (API v2), webhooks and a JSON-lines log. docs/alerts.md is the user's reference.
 *
 * The pieces without threads or I/O (lifecycle, trend, baseline) take the time as an argument,
 * so tests drive them with an injected clock.
 */
#ifndef CONVERGE_ALERT_H
#define CONVERGE_ALERT_H

#include "converge/catalog.h"
#include "converge/encode.h"
#include "converge/log.h"
#include "converge/status.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- lifecycle (lib/alert/lifecycle.c) ---------------------------------------------------- */

typedef enum cvg_alert_state {
  CVG_ALERT_INACTIVE = 0,
  CVG_ALERT_PENDING,  /* the condition holds, for `for` not yet elapsed */
  CVG_ALERT_FIRING,   /* sent to receivers, re-sent every resend interval */
  CVG_ALERT_RESOLVED, /* kept and re-sent as resolved for the retention period */
} cvg_alert_state;

extern const char *const cvg_alert_state_names[]; /* indexed by cvg_alert_state */

typedef struct cvg_alert_life {
  cvg_alert_state state;
  double active_at;   /* when the condition began to hold (pending since) */
  double starts_at;   /* first firing time: startsAt, kept across restarts */
  double last_true;   /* last time the condition held */
  double resolved_at; /* when it resolved (endsAt of the resolved alert) */
  double last_sent;   /* last time it was handed to delivery; 0 never */
} cvg_alert_life;

/*
 * The condition of rule for value v, given whether the alert is active (pending or firing):
 * an inactive alert needs the firing threshold crossed; an active one stays until the value is
 * past the resolve threshold (hysteresis), or back across the firing threshold when the rule has
 * none. NAN is "no value": the condition does not hold.
 */
int cvg_alert_cond(const cvg_cat_rule *rule, int active, double v);

/*
 * Advances a life by one evaluation at time now, with the condition cond (1 holds, 0 not).
 * Returns 1 when the state changed. Transitions, as Prometheus defines them:
 *   inactive/resolved --cond--> pending (active_at = now), or firing at once when for_s is 0
 *   pending --cond for for_s--> firing (starts_at = now); pending --!cond--> inactive
 *   firing --!cond for keep_firing_for--> resolved (resolved_at = now)
 */
int cvg_alert_step(cvg_alert_life *a, int cond, double now, double for_s, double keep_firing_for);

/* ---- adaptive baseline (lib/alert/baseline.c) --------------------------------------------- */

#define CVG_BASELINE_KEEP 64 /* samples kept per season bucket */
#define CVG_BASELINE_MIN 12  /* samples a bucket needs before it judges */

typedef struct cvg_bl_bucket {
  double v[CVG_BASELINE_KEEP];
  uint32_t n, head;
} cvg_bl_bucket;

/*
 * A learned baseline of one metric: per hour of the week (168 buckets), falling back to the hour
 * of the day (24) while the weekly bucket is thin. With an intensity (e.g. write rate), buckets
 * hold value / intensity and the baseline scales with the current intensity.
 */
typedef struct cvg_baseline {
  cvg_bl_bucket *week; /* OWNED; 168 */
  cvg_bl_bucket *day;  /* OWNED; 24 */
  double first_t;      /* first sample's time; 0 none */
  uint64_t samples;
} cvg_baseline;

typedef struct cvg_bl_judgement {
  int warm;        /* 0: still warming up; nothing is judged */
  int anomalous;   /* 1: above the band */
  double expected; /* the baseline at this time and intensity */
  double band;     /* how far above expected is still normal */
} cvg_bl_judgement;

int cvg_baseline_init(cvg_baseline *b);
void cvg_baseline_free(cvg_baseline *b);
/* Judges value v at time t (seconds since the epoch, UTC), then learns it; an anomalous value is
 * learned only up to the band's edge. intensity < 0: none. */
cvg_bl_judgement cvg_baseline_observe(cvg_baseline *b, double t, double v, double intensity,
                                      double k, double floor, double warmup);

/* ---- the engine (lib/alert/engine.c) ------------------------------------------------------- */

/* Where the engine reads the monitor's state. Called from the evaluation thread. */
typedef struct cvg_alert_source {
  void *ctx;
  /* The value of a rule's subject for dataset ds and replica rep (SIZE_MAX: the dataset).
   * Returns 1 and sets *v when known, 0 when there is no value (the condition does not hold).
   * For invariant rules *v is 1 when breached, 0 when it holds; for trend rules the status. */
  int (*value)(void *ctx, size_t ds, size_t rep, const cvg_cat_rule *rule, double *v);
  /* Adds the context annotations of an active alert (affected shards, sample keys, classes,
   * detection trace, origin) to ann, a JSON object of string values. onset is its active_at. */
  void (*context)(void *ctx, size_t ds, size_t rep, const cvg_cat_rule *rule, double onset,
                  void *ann /* json_t* */);
  /* 1 once the monitor's view of dataset ds is complete (after a start, its first full sweep and
   * the confirmation wait). Before that a condition that does not hold resolves nothing: the
   * alerts restored from the state file keep their state until the monitor can judge them. */
  int (*ready)(void *ctx, size_t ds);
} cvg_alert_source;

typedef struct cvg_alerts cvg_alerts;

/* Creates the engine for cat (BORROWED): opens the state file (creating it), restores persisted
 * alerts, and starts the delivery thread. */
int cvg_alerts_new(cvg_alerts **out, const cvg_catalog *cat, cvg_logger *lg, cvg_error *err);
/* An engine holding only the effective rules (no state file, no delivery), to explain them;
 * cvg_alerts_rules() works on it, cvg_alerts_eval() must not be called. */
int cvg_alerts_rules_new(cvg_alerts **out, const cvg_catalog *cat);
void cvg_alerts_free(cvg_alerts *e);
/* One evaluation of every rule at wall time now. */
int cvg_alerts_eval(cvg_alerts *e, const cvg_alert_source *src, double now);
/* Current alerts as JSON ({"alerts": [...], "delivery": {...}}) for /api/v1/alerts; only the
 * alert with that fingerprint when it is not NULL. */
int cvg_alerts_json(cvg_alerts *e, const char *fingerprint, cvg_buf *out);
/* Alert state and delivery counters as Prometheus text. */
int cvg_alerts_metrics(cvg_alerts *e, cvg_buf *out);
/* The effective rules of dataset ds (built-in, global and its own), for explanations. */
const cvg_cat_rule *const *cvg_alerts_rules(const cvg_alerts *e, size_t ds, size_t *n);
/* Waits until the delivery queue is empty or timeout seconds passed (tests, shutdown). */
void cvg_alerts_flush(cvg_alerts *e, double timeout);

/* ---- change events and the state file (lib/alert/state.c) -------------------------------- */

#define CVG_EVENT_TEXT_MAX 1024

typedef struct cvg_event {
  int64_t id;
  double at;         /* seconds since the epoch */
  char kind[32];     /* deploy, migration, config, incident, other */
  char dataset[128]; /* "" for all datasets */
  char text[CVG_EVENT_TEXT_MAX];
  char source[64]; /* cli, api */
} cvg_event;

/* 1 when kind is one of the known event kinds. */
int cvg_event_kind_ok(const char *kind);
/* Records a change event in the state file at path (created if missing). */
int cvg_event_add(const char *path, cvg_event *ev, cvg_error *err);
/* Reads up to max events (newest first) with at in [since, until], of dataset (or all when
 * NULL; events for every dataset always match). *n gets the count. */
int cvg_event_list(const char *path, double since, double until, const char *dataset,
                   cvg_event *out, size_t max, size_t *n, cvg_error *err);

/* Prints persisted alerts from the state file as JSON ({"alerts": [...]}), as `converge alerts`
 * shows them when the daemon is not reachable. */
int cvg_alerts_state_json(const char *path, cvg_buf *out, cvg_error *err);

#ifdef __cplusplus
}
#endif
#endif
