/* SPDX-License-Identifier: MIT */
/*
 * The alert lifecycle as Prometheus defines it (rules/alerting.go): inactive -> pending for `for`
 * -> firing -> resolved, with keep_firing_for, plus converge's resolve threshold (hysteresis).
 * Pure functions of the time they are given.
 */
#include "converge/alert.h"

#include <math.h>

const char *const cvg_alert_state_names[] = {"inactive", "pending", "firing", "resolved"};

int cvg_alert_cond(const cvg_cat_rule *rule, int active, double v) {
  if (isnan(v))
    return 0;
  if (rule->kind == CVG_RULE_INVARIANT || rule->adaptive)
    return v >= 0.5;
  if (rule->kind == CVG_RULE_TREND)
    return v >= (double)rule->at_least;
  if (active && rule->has_resolve)
    return rule->below ? v <= rule->resolve : v >= rule->resolve;
  return rule->below ? v < rule->threshold : v > rule->threshold;
}

int cvg_alert_step(cvg_alert_life *a, int cond, double now, double for_s, double keep_firing_for) {
  cvg_alert_state was = a->state;
  if (cond) {
    a->last_true = now;
    if (was == CVG_ALERT_INACTIVE || was == CVG_ALERT_RESOLVED) {
      /* a resolved alert that holds again is a new alert: new activeAt and startsAt */
      a->active_at = now;
      a->resolved_at = 0;
      a->starts_at = 0;
      a->last_sent = 0;
      a->state = CVG_ALERT_PENDING;
    }
    if (a->state == CVG_ALERT_PENDING && now - a->active_at >= for_s) {
      a->state = CVG_ALERT_FIRING;
      a->starts_at = now;
    }
  } else if (was == CVG_ALERT_PENDING) {
    a->state = CVG_ALERT_INACTIVE;
  } else if (was == CVG_ALERT_FIRING) {
    if (!(keep_firing_for > 0 && now - a->last_true < keep_firing_for)) {
      a->state = CVG_ALERT_RESOLVED;
      a->resolved_at = now;
    }
  }
  return a->state != was;
}
