/* SPDX-License-Identifier: MIT */
/* Alerts with an injected clock: the lifecycle, hysteresis, lag trend statuses, the seasonal
 * baseline, and the engine's inhibition and restart from its state file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "converge/alert.h"
#include "converge/trend.h"
#include "converge/catalog.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static cvg_cat_rule fixed_rule(double above, int has_resolve, double resolve) {
  cvg_cat_rule r;
  memset(&r, 0, sizeof r);
  r.kind = CVG_RULE_METRIC;
  r.threshold = above;
  r.has_resolve = has_resolve;
  r.resolve = resolve;
  return r;
}

static void test_lifecycle(void **state) {
  (void)state;
  cvg_alert_life a;
  memset(&a, 0, sizeof a);
  /* for: 10s */
  assert_int_equal(cvg_alert_step(&a, 1, 100, 10, 0), 1);
  assert_int_equal(a.state, CVG_ALERT_PENDING);
  assert_true(a.active_at == 100);
  assert_int_equal(cvg_alert_step(&a, 1, 105, 10, 0), 0);
  assert_int_equal(a.state, CVG_ALERT_PENDING);
  assert_int_equal(cvg_alert_step(&a, 1, 110, 10, 0), 1);
  assert_int_equal(a.state, CVG_ALERT_FIRING);
  assert_true(a.starts_at == 110);
  /* still firing: startsAt stays */
  cvg_alert_step(&a, 1, 200, 10, 0);
  assert_true(a.starts_at == 110);
  /* clears: resolved at once without keep_firing_for */
  assert_int_equal(cvg_alert_step(&a, 0, 210, 10, 0), 1);
  assert_int_equal(a.state, CVG_ALERT_RESOLVED);
  assert_true(a.resolved_at == 210);
  /* holds again: a new alert, pending again with new times */
  cvg_alert_step(&a, 1, 220, 10, 0);
  assert_int_equal(a.state, CVG_ALERT_PENDING);
  assert_true(a.active_at == 220);
  assert_true(a.starts_at == 0);
  /* pending that clears goes back to inactive, never fires */
  assert_int_equal(cvg_alert_step(&a, 0, 225, 10, 0), 1);
  assert_int_equal(a.state, CVG_ALERT_INACTIVE);
  /* for: 0 fires at once */
  memset(&a, 0, sizeof a);
  cvg_alert_step(&a, 1, 300, 0, 0);
  assert_int_equal(a.state, CVG_ALERT_FIRING);
  assert_true(a.starts_at == 300);
  /* keep_firing_for: 30s */
  cvg_alert_step(&a, 0, 310, 0, 30);
  assert_int_equal(a.state, CVG_ALERT_FIRING);
  cvg_alert_step(&a, 0, 329, 0, 30);
  assert_int_equal(a.state, CVG_ALERT_FIRING);
  cvg_alert_step(&a, 1, 335, 0, 30); /* holds again within the grace: same alert */
  assert_true(a.starts_at == 300);
  cvg_alert_step(&a, 0, 366, 0, 30);
  assert_int_equal(a.state, CVG_ALERT_RESOLVED);
}

static void test_hysteresis(void **state) {
  (void)state;
  cvg_cat_rule plain = fixed_rule(10, 0, 0), hyst = fixed_rule(10, 1, 5);
  /* a value hovering at the line: 9.9, 10.1, 9.9, ... */
  cvg_alert_life a, b;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  int flips_plain = 0, flips_hyst = 0;
  for (int i = 0; i < 20; i++) {
    double v = i % 2 ? 10.1 : 9.9;
    int act_a = a.state == CVG_ALERT_PENDING || a.state == CVG_ALERT_FIRING;
    int act_b = b.state == CVG_ALERT_PENDING || b.state == CVG_ALERT_FIRING;
    flips_plain += cvg_alert_step(&a, cvg_alert_cond(&plain, act_a, v), i, 0, 0);
    flips_hyst += cvg_alert_step(&b, cvg_alert_cond(&hyst, act_b, v), i, 0, 0);
  }
  assert_true(flips_plain >= 18);  /* fires and resolves on every crossing */
  assert_int_equal(flips_hyst, 1); /* fires once and stays */
  assert_int_equal(b.state, CVG_ALERT_FIRING);
  assert_true(cvg_alert_cond(&hyst, 1, 5.5));
  assert_false(cvg_alert_cond(&hyst, 1, 4.9)); /* resolves below 5 */
  assert_false(cvg_alert_cond(&hyst, 0, 9));   /* an inactive alert needs the firing threshold */
  assert_false(cvg_alert_cond(&hyst, 1, NAN)); /* no value: the condition does not hold */
  cvg_cat_rule below = fixed_rule(2, 1, 4);
  below.below = 1;
  assert_true(cvg_alert_cond(&below, 0, 1.5));
  assert_true(cvg_alert_cond(&below, 1, 3.9));
  assert_false(cvg_alert_cond(&below, 1, 4.1));
}

static cvg_trend_status feed(const double *lag, const int64_t *pos, size_t n, double now) {
  cvg_trend tr;
  assert_int_equal(cvg_trend_init(&tr, 5), CVG_OK);
  for (size_t i = 0; i < n; i++)
    cvg_trend_add(&tr, (double)i, lag[i], pos[i]);
  cvg_trend_status s = cvg_trend_eval(&tr, now, 1.0);
  cvg_trend_free(&tr);
  return s;
}

static void test_trend(void **state) {
  (void)state;
  const double grow[] = {2, 3, 3, 4, 6}, dip[] = {2, 3, 2.5, 4, 6}, healthy[] = {3, 2, 0.5, 4, 6};
  const int64_t moving[] = {1, 2, 3, 4, 5}, stuck[] = {7, 7, 7, 7, 7};
  /* completeness guard: 4 samples of a window of 5 say nothing */
  assert_int_equal(feed(grow, moving, 4, 4), CVG_TREND_INCOMPLETE);
  assert_int_equal(feed(grow, moving, 5, 5), CVG_TREND_WARN);
  assert_int_equal(feed(dip, moving, 5, 5), CVG_TREND_OK);     /* lag decreased once */
  assert_int_equal(feed(healthy, moving, 5, 5), CVG_TREND_OK); /* a sample at ~zero lag */
  assert_int_equal(feed(grow, stuck, 5, 5), CVG_TREND_STALL);
  /* no sample for longer than the window spans (4s) while lagging */
  assert_int_equal(feed(grow, moving, 5, 9), CVG_TREND_STOP);
  assert_int_equal(feed(grow, moving, 5, 8), CVG_TREND_WARN);
  /* the window slides: old growth forgotten */
  cvg_trend tr;
  assert_int_equal(cvg_trend_init(&tr, 3), CVG_OK);
  for (int i = 0; i < 10; i++)
    cvg_trend_add(&tr, i, i < 7 ? i + 2 : 9 - (i - 7), i);
  assert_int_equal(cvg_trend_eval(&tr, 10, 1.0), CVG_TREND_OK);
  cvg_trend_free(&tr);
}

static void test_baseline(void **state) {
  (void)state;
  cvg_baseline b;
  assert_int_equal(cvg_baseline_init(&b), CVG_OK);
  /* two weeks, one sample per 10 minutes: lag 10 +- 1 at 12:00-13:00 UTC, 1 +- 0.1 otherwise */
  double t0 = 1795651200; /* a Monday 00:00 UTC */
  unsigned seed = 7;
  cvg_bl_judgement j = {0, 0, 0, 0};
  for (double t = t0; t < t0 + 14 * 86400; t += 600) {
    int hour = (int)fmod((t - t0) / 3600, 24);
    double noise = ((double)(rand_r(&seed) % 1000) / 1000 - 0.5);
    double v = hour == 12 ? 10 + noise : 1 + noise / 5;
    j = cvg_baseline_observe(&b, t, v, -1, 4, 0.5, 86400);
    if (t < t0 + 86400)
      assert_false(j.warm); /* warm-up: one day */
  }
  assert_true(j.warm);
  /* 6 at noon is normal; 6 at 03:00 is an anomaly a fixed threshold above 10 would miss */
  double noon = t0 + 14 * 86400 + 12 * 3600 + 60, night = t0 + 14 * 86400 + 3 * 3600 + 60;
  j = cvg_baseline_observe(&b, noon, 9.5, -1, 4, 0.5, 86400);
  assert_true(j.warm);
  assert_false(j.anomalous);
  j = cvg_baseline_observe(&b, night, 6, -1, 4, 0.5, 86400);
  assert_true(j.anomalous);
  assert_true(j.expected < 1.5);
  /* with an intensity, twice the write rate allows twice the lag */
  cvg_baseline w;
  assert_int_equal(cvg_baseline_init(&w), CVG_OK);
  for (double t = t0; t < t0 + 3 * 86400; t += 600)
    cvg_baseline_observe(&w, t, 2 + ((double)(rand_r(&seed) % 100) / 1000), 100, 4, 0, 86400);
  j = cvg_baseline_observe(&w, t0 + 3 * 86400 + 60, 4.1, 200, 4, 0, 86400);
  assert_true(j.warm);
  assert_false(j.anomalous);
  j = cvg_baseline_observe(&w, t0 + 3 * 86400 + 120, 4.1, 100, 4, 0, 86400);
  assert_true(j.anomalous);
  cvg_baseline_free(&w);
  cvg_baseline_free(&b);
}

/* ---- the engine, with a fake monitor ---- */

typedef struct fake {
  double lag;      /* lag_seconds of replica 1 */
  double conflict; /* conflict_shards */
  int ready;       /* the monitor's view is complete */
} fake;

static int fake_ready(void *ctx, size_t ds) {
  (void)ds;
  return ((fake *)ctx)->ready;
}

static int fake_value(void *ctx, size_t ds, size_t rep, const cvg_cat_rule *r, double *v) {
  fake *f = ctx;
  (void)ds;
  if (strcmp(r->subject, "lag_seconds") == 0 && rep == 1)
    return *v = f->lag, 1;
  if (strcmp(r->subject, "conflict_shards") == 0)
    return *v = f->conflict, 1;
  return 0;
}

static void fake_context(void *ctx, size_t ds, size_t rep, const cvg_cat_rule *r, double onset,
                         void *ann) {
  (void)ctx;
  (void)ds;
  (void)rep;
  (void)r;
  (void)onset;
  json_object_set_new(ann, "affected_shards", json_string("2 of 4: 1 3"));
}

static json_t *alerts_of(cvg_alerts *e) {
  cvg_buf b;
  cvg_buf_init(&b, 1u << 20);
  assert_int_equal(cvg_alerts_json(e, NULL, &b), CVG_OK);
  json_t *j = json_loadb((const char *)b.data, b.len, 0, NULL);
  cvg_buf_release(&b);
  assert_non_null(j);
  return j;
}

static json_t *find_alert(json_t *root, const char *name) {
  size_t i;
  json_t *a;
  json_array_foreach(json_object_get(root, "alerts"), i, a) {
    if (strcmp(json_string_value(json_object_get(json_object_get(a, "labels"), "alertname")),
               name) == 0)
      return a;
  }
  return NULL;
}

static void test_engine_inhibit_restart(void **state) {
  (void)state;
  char dir[] = "/tmp/converge-test-alert-XXXXXX"; /* mkdtemp template */
  assert_non_null(mkdtemp(dir));
  char yaml[2048];
  snprintf(
      yaml, sizeof yaml,
      "alerting:\n"
      "  state: %s/state.db\n"
      "  builtin_rules: false\n"
      "  rules:\n"
      "    - {alert: LagHigh, metric: lag_seconds, above: 10, resolve_below: 5, stage: early}\n"
      "    - {alert: Conflicts, metric: conflict_shards, above: 2, for: 10s, stage: late}\n"
      "datasets:\n"
      "  - name: accounts\n"
      "    owner: payments\n"
      "    replicas:\n"
      "      - {name: a, url: \"sqlite:///x/a.db?table=t\", authority: true}\n"
      "      - {name: b, url: \"sqlite:///x/b.db?table=t\"}\n",
      dir);
  cvg_catalog *cat = NULL;
  cvg_error err;
  assert_int_equal(cvg_catalog_parse(&cat, "t.yaml", yaml, strlen(yaml), &err), CVG_OK);
  cvg_alerts *e = NULL;
  assert_int_equal(cvg_alerts_new(&e, cat, NULL, &err), CVG_OK);
  fake f = {20, 0, 1};
  cvg_alert_source src = {&f, fake_value, fake_context, fake_ready};
  assert_int_equal(cvg_alerts_eval(e, &src, 1000), CVG_OK);
  json_t *j = alerts_of(e);
  json_t *lag = find_alert(j, "LagHigh");
  assert_non_null(lag);
  assert_string_equal(json_string_value(json_object_get(lag, "state")), "firing");
  assert_false(json_is_true(json_object_get(lag, "inhibited")));
  json_t *labels = json_object_get(lag, "labels");
  assert_string_equal(json_string_value(json_object_get(labels, "replica")), "b");
  assert_string_equal(json_string_value(json_object_get(labels, "stage")), "early");
  assert_string_equal(json_string_value(json_object_get(labels, "team")), "payments");
  assert_string_equal(json_string_value(json_object_get(labels, "severity")), "warning");
  assert_string_equal(
      json_string_value(json_object_get(json_object_get(lag, "annotations"), "affected_shards")),
      "2 of 4: 1 3");
  char starts[64];
  snprintf(starts, sizeof starts, "%s", json_string_value(json_object_get(lag, "startsAt")));
  json_decref(j);
  /* conflicts: pending for 10s, then firing, and the early alert is inhibited */
  f.conflict = 3;
  cvg_alerts_eval(e, &src, 1005);
  j = alerts_of(e);
  assert_string_equal(json_string_value(json_object_get(find_alert(j, "Conflicts"), "state")),
                      "pending");
  assert_false(json_is_true(json_object_get(find_alert(j, "LagHigh"), "inhibited")));
  json_decref(j);
  cvg_alerts_eval(e, &src, 1016);
  j = alerts_of(e);
  json_t *late = find_alert(j, "Conflicts");
  assert_string_equal(json_string_value(json_object_get(late, "state")), "firing");
  assert_string_equal(
      json_string_value(json_object_get(json_object_get(late, "labels"), "severity")), "page");
  assert_true(json_is_true(json_object_get(find_alert(j, "LagHigh"), "inhibited")));
  assert_int_equal(json_array_size(json_object_get(j, "alerts")), 2);
  json_decref(j);
  /* restart: the same alerts, the same startsAt, no duplicates */
  cvg_alerts_free(e);
  e = NULL;
  assert_int_equal(cvg_alerts_new(&e, cat, NULL, &err), CVG_OK);
  j = alerts_of(e);
  assert_int_equal(json_array_size(json_object_get(j, "alerts")), 2);
  json_decref(j);
  /* until the monitor's view is complete, a condition that does not hold resolves nothing */
  f.ready = 0;
  f.lag = 0;
  f.conflict = 0;
  cvg_alerts_eval(e, &src, 1025);
  j = alerts_of(e);
  assert_string_equal(json_string_value(json_object_get(find_alert(j, "LagHigh"), "state")),
                      "firing");
  assert_string_equal(json_string_value(json_object_get(find_alert(j, "Conflicts"), "state")),
                      "firing");
  json_decref(j);
  f.ready = 1;
  f.lag = 20;
  f.conflict = 3;
  cvg_alerts_eval(e, &src, 1030);
  j = alerts_of(e);
  assert_int_equal(json_array_size(json_object_get(j, "alerts")), 2);
  lag = find_alert(j, "LagHigh");
  assert_string_equal(json_string_value(json_object_get(lag, "state")), "firing");
  assert_string_equal(json_string_value(json_object_get(lag, "startsAt")), starts);
  json_decref(j);
  /* hysteresis across the restart: 7 is below 10 but above resolve 5: still firing */
  f.lag = 7;
  f.conflict = 0;
  cvg_alerts_eval(e, &src, 1040);
  j = alerts_of(e);
  assert_string_equal(json_string_value(json_object_get(find_alert(j, "LagHigh"), "state")),
                      "firing");
  assert_false(json_is_true(json_object_get(find_alert(j, "LagHigh"), "inhibited")));
  assert_string_equal(json_string_value(json_object_get(find_alert(j, "Conflicts"), "state")),
                      "resolved");
  json_decref(j);
  f.lag = 4;
  cvg_alerts_eval(e, &src, 1050);
  j = alerts_of(e);
  assert_string_equal(json_string_value(json_object_get(find_alert(j, "LagHigh"), "state")),
                      "resolved");
  json_decref(j);
  /* resolved alerts are kept 15 minutes, then forgotten */
  cvg_alerts_eval(e, &src, 1050 + 901);
  j = alerts_of(e);
  assert_int_equal(json_array_size(json_object_get(j, "alerts")), 0);
  json_decref(j);
  cvg_alerts_free(e);
  cvg_catalog_free(cat);
  char path[600];
  snprintf(path, sizeof path, "%s/state.db", dir);
  unlink(path);
  snprintf(path, sizeof path, "%s/state.db-wal", dir);
  unlink(path);
  snprintf(path, sizeof path, "%s/state.db-shm", dir);
  unlink(path);
  rmdir(dir);
}

/* A dead receiver and a small queue: deliveries pile up, the oldest are dropped and counted, and
 * evaluation never waits. */
static void test_queue_drops_oldest(void **state) {
  (void)state;
  char dir[] = "/tmp/converge-test-queue-XXXXXX"; /* mkdtemp template */
  assert_non_null(mkdtemp(dir));
  char yaml[2048];
  snprintf(yaml, sizeof yaml,
           "alerting:\n"
           "  state: %s/state.db\n"
           "  webhooks: [http://127.0.0.1:1/hook]\n"
           "  resend_interval: 100ms\n"
           "  queue_size: 2\n"
           "  builtin_rules: false\n"
           "  rules: [{alert: LagHigh, metric: lag_seconds, above: 10}]\n"
           "datasets:\n"
           "  - name: accounts\n"
           "    replicas:\n"
           "      - {name: a, url: \"sqlite:///x/a.db?table=t\", authority: true}\n"
           "      - {name: b, url: \"sqlite:///x/b.db?table=t\"}\n",
           dir);
  cvg_catalog *cat = NULL;
  cvg_error err;
  assert_int_equal(cvg_catalog_parse(&cat, "t.yaml", yaml, strlen(yaml), &err), CVG_OK);
  cvg_alerts *e = NULL;
  assert_int_equal(cvg_alerts_new(&e, cat, NULL, &err), CVG_OK);
  fake f = {20, 0, 1};
  cvg_alert_source src = {&f, fake_value, fake_context, fake_ready};
  for (int i = 0; i < 10; i++) /* ten resends of one firing alert */
    assert_int_equal(cvg_alerts_eval(e, &src, 2000 + i), CVG_OK);
  cvg_buf b;
  cvg_buf_init(&b, 1u << 20);
  assert_int_equal(cvg_alerts_json(e, NULL, &b), CVG_OK);
  json_t *j = json_loadb((const char *)b.data, b.len, 0, NULL);
  cvg_buf_release(&b);
  json_t *rv = json_array_get(json_object_get(json_object_get(j, "delivery"), "receivers"), 0);
  assert_non_null(rv);
  json_int_t dropped = json_integer_value(json_object_get(rv, "dropped"));
  json_int_t queued = json_integer_value(json_object_get(rv, "queued"));
  assert_true(queued <= 2);
  assert_true(dropped >= 7); /* 10 deliveries: at most 1 in flight and 2 waiting */
  json_decref(j);
  cvg_alerts_free(e); /* stops the receiver in the middle of its retries */
  cvg_catalog_free(cat);
  char path[600];
  const char *suffix[] = {"", "-wal", "-shm"};
  for (int i = 0; i < 3; i++) {
    snprintf(path, sizeof path, "%s/state.db%s", dir, suffix[i]);
    unlink(path);
  }
  rmdir(dir);
}

static void test_rule_errors(void **state) {
  (void)state;
  static const struct {
    const char *yaml, *where, *msg;
  } cases[] = {
      {"alerting:\n  rules:\n    - {alert: X, metric: lagg, above: 1}\n", "t.yaml:3:26",
       "not a metric"},
      {"alerting:\n  rules:\n    - {alert: X, metric: lag_seconds}\n", "t.yaml:3:7",
       "no threshold"},
      {"alerting:\n  rules:\n    - {alert: X, metric: lag_seconds, above: 5, resolve_below: 9}\n",
       "t.yaml:3:64", "past the firing threshold"},
      {"alerting:\n  rules:\n    - {alert: X, trend: lag, at_least: ok}\n", "t.yaml:3:40",
       "cannot fire at ok"},
      {"alerting:\n  rules:\n    - {alert: X, metric: lag_seconds, above: 1, labels: {stage: x}}\n",
       "t.yaml:3:57", "reserved"},
      {"alerting:\n  alertmanagers: [localhost:9093]\n", "t.yaml:2:18", "not an http"},
  };
  static const char tail[] = "datasets:\n  - name: d\n    replicas:\n"
                             "      - {name: a, url: \"sqlite:///x/a.db?table=t\"}\n"
                             "      - {name: b, url: \"sqlite:///x/b.db?table=t\"}\n";
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char yaml[1024];
    snprintf(yaml, sizeof yaml, "%s%s", cases[i].yaml, tail);
    cvg_catalog *cat = NULL;
    cvg_error err;
    cvg_error_clear(&err);
    assert_int_equal(cvg_catalog_parse(&cat, "t.yaml", yaml, strlen(yaml), &err), CVG_ECONFIG);
    if (strcmp(err.input, cases[i].where) != 0 || !strstr(err.msg, cases[i].msg))
      fail_msg("case %zu: got %s: %s", i, err.input, err.msg);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lifecycle),
      cmocka_unit_test(test_hysteresis),
      cmocka_unit_test(test_trend),
      cmocka_unit_test(test_baseline),
      cmocka_unit_test(test_engine_inhibit_restart),
      cmocka_unit_test(test_queue_drops_oldest),
      cmocka_unit_test(test_rule_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
