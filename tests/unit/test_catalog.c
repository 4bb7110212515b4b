/* SPDX-License-Identifier: MIT */
/* The catalog loader: the minimal catalog of the watch issue, defaults and overrides, secrets,
 * and errors that point at file:line:column. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "converge/catalog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char minimal[] = "listen: 127.0.0.1:9464\n"
                              "datasets:\n"
                              "  - name: accounts\n"
                              "    key: [id]\n"
                              "    version: updated_at\n"
                              "    replicas:\n"
                              "      - name: primary\n"
                              "        url: sqlite:///srv/a.db?table=accounts\n"
                              "        authority: true\n"
                              "      - name: replica\n"
                              "        url: sqlite:///srv/b.db?table=accounts\n";

static cvg_catalog *load(const char *text, cvg_error *err) {
  cvg_catalog *cat = NULL;
  cvg_error_clear(err);
  int rc = cvg_catalog_parse(&cat, "t.yaml", text, strlen(text), err);
  assert_true(rc == CVG_OK ? cat != NULL : cat == NULL);
  return cat;
}

static void test_minimal(void **state) {
  (void)state;
  cvg_error err;
  cvg_catalog *cat = load(minimal, &err);
  assert_non_null(cat);
  assert_string_equal(cat->listen, "127.0.0.1:9464");
  assert_int_equal(cat->n_datasets, 1);
  cvg_cat_dataset *d = &cat->datasets[0];
  assert_string_equal(d->name, "accounts");
  assert_int_equal(d->n_key, 1);
  assert_string_equal(d->key[0], "id");
  assert_string_equal(d->version, "updated_at");
  assert_null(d->tombstone);
  assert_int_equal(d->n_replicas, 2);
  assert_int_equal(d->authority, 0);
  assert_string_equal(d->replicas[1].url, "sqlite:///srv/b.db?table=accounts");
  assert_int_equal(d->shards, 16);
  assert_true(d->probes.heartbeat_interval == 1.0);
  assert_string_equal(d->probes.heartbeat_table, "converge_heartbeat");
  assert_true(d->probes.confirm_within == 60.0);
  assert_true(d->inv.max_lag_seconds < 0);
  assert_string_equal(cat->warnings, "");
  cvg_catalog_free(cat);
}

static void test_defaults_and_overrides(void **state) {
  (void)state;
  const char *text =
      "probes:\n"
      "  heartbeat: {interval: 250ms, table: hb}\n"
      "  full_sweep: {interval: 2h, rows_per_second: 5000, window: \"22:00-04:00\"}\n"
      "datasets:\n"
      "  - name: a\n"
      "    shards: 1000\n"
      "    probes:\n"
      "      heartbeat: {interval: 2s}\n"
      "      canary: off\n"
      "    invariants:\n"
      "      max_lag_seconds: 30\n"
      "      max_divergent_rows: 0\n"
      "      min_agreeing_replicas: 2\n"
      "      equal_aggregate: [{expr: sum(balance), tolerance: 0.5}, count(*)]\n"
      "    replicas:\n"
      "      - {name: p, url: \"sqlite:///a.db?table=t\", authority: true}\n"
      "      - {name: q, url: \"sqlite:///b.db?table=t\", region: eu}\n"
      "  - name: b\n"
      "    replicas:\n"
      "      - {name: p, url: \"sqlite:///a.db?table=u\"}\n"
      "      - {name: q, url: \"sqlite:///b.db?table=u\"}\n";
  cvg_error err;
  cvg_catalog *cat = load(text, &err);
  assert_non_null(cat);
  cvg_cat_dataset *a = &cat->datasets[0], *b = &cat->datasets[1];
  assert_true(a->probes.heartbeat_interval == 2.0);
  assert_string_equal(a->probes.heartbeat_table, "hb"); /* from the top-level defaults */
  assert_true(a->probes.canary_interval == 0);
  assert_true(a->probes.full_sweep_interval == 7200);
  assert_int_equal(a->probes.window_start, 22 * 60);
  assert_int_equal(a->probes.window_end, 4 * 60);
  assert_true(b->probes.heartbeat_interval == 0.25);
  assert_true(b->probes.canary_interval == 10);
  assert_int_equal(a->shards, 1000);
  assert_int_equal(a->inv.max_divergent_rows, 0);
  assert_int_equal(a->inv.n_aggregates, 2);
  assert_string_equal(a->inv.aggregates[1].expr, "count(*)");
  assert_true(a->inv.aggregates[0].tolerance == 0.5);
  assert_string_equal(a->replicas[1].region, "eu");
  /* b has no authority and no version: both are remarked on */
  assert_non_null(strstr(cat->warnings, "dataset 'b' has no replica with 'authority: true'"));
  assert_non_null(strstr(cat->warnings, "dataset 'b' has no 'version' column"));
  cvg_catalog_free(cat);
}

static void expect_error(const char *text, const char *where, const char *msg_part) {
  cvg_error err;
  cvg_catalog *cat = load(text, &err);
  assert_null(cat);
  assert_int_equal(err.status, CVG_ECONFIG);
  if (strcmp(err.input, where) != 0)
    fail_msg("input '%s', want '%s' (msg: %s)", err.input, where, err.msg);
  if (!strstr(err.msg, msg_part))
    fail_msg("message '%s' lacks '%s'", err.msg, msg_part);
}

static void test_errors(void **state) {
  (void)state;
  expect_error("datasets:\n  - name: a\n    replica: []\n", "t.yaml:3:5", "unknown key 'replica'");
  expect_error("datasets:\n  - name: a\n    shards: many\n", "t.yaml:3:13", "whole number");
  expect_error("datasets:\n  - name: a\n   key: [x\n", "t.yaml:3:4", "YAML syntax error");
  expect_error("listen: nowhere\ndatasets: []\n", "t.yaml:1:9", "'listen' must be an address");
  expect_error("datasets: []\n", "t.yaml:1:11", "'datasets' is empty");
  expect_error("datasets:\n  - name: a\n    replicas:\n      - {name: p}\n"
               "      - {name: q, url: \"sqlite:///b.db?table=t\"}\n",
               "t.yaml:4:9", "replica 'p' lacks 'url'");
  expect_error("datasets:\n  - name: a\n    replicas:\n      - {name: p, url: \"sqlite:///a.db\"}\n"
               "      - {name: q, url: \"sqlite:///b.db?table=t\"}\n",
               "t.yaml:4:24", "names no table");
  expect_error("datasets:\n  - name: a\n    replicas:\n"
               "      - {name: p, url: \"sqlite:///a.db?table=t\", authority: yes}\n"
               "      - {name: p, url: \"sqlite:///b.db?table=t\"}\n",
               "t.yaml:5:9", "two replicas named 'p'");
  expect_error("datasets:\n  - name: a\n    probes: {heartbeat: {interval: soon}}\n", "t.yaml:3:36",
               "'interval' must be a duration");
  expect_error("datasets:\n  - name: a\n    name: b\n", "t.yaml:3:5", "duplicate key 'name'");
  expect_error("datasets:\n  - name: a\n    replicas:\n"
               "      - {name: p, url: \"sqlite:///a.db?table=t\", authority: maybe}\n",
               "t.yaml:4:61", "'authority' must be true or false");
  expect_error("datasets:\n  - name: a\n    replicas:\n"
               "      - {name: p, url: \"sqlite:///a.db?table=t\"}\n",
               "t.yaml:4:7", "needs at least 2");
  expect_error("", "t.yaml", "empty");
  expect_error("datasets:\n  - name: a\n    impact: {tier: urgent}\n", "t.yaml:3:20",
               "'tier' has an unknown value 'urgent'");
  expect_error("datasets:\n  - name: a\n    impact: {unit: USD}\n", "t.yaml:3:13", "no 'per_row'");
  expect_error("datasets:\n  - name: a\n    impact: {cost: 3}\n", "t.yaml:3:14",
               "unknown key 'cost' in impact");
}

/* impact: defaults (tier medium, nothing per row) and a declared one */
static void test_impact(void **state) {
  (void)state;
  cvg_error err;
  cvg_catalog *cat = load(minimal, &err);
  assert_non_null(cat);
  assert_int_equal(cat->datasets[0].impact.tier, 2);
  assert_true(cat->datasets[0].impact.per_row == 0);
  assert_string_equal(cat->datasets[0].impact.unit, "");
  cvg_catalog_free(cat);
  char text[1024];
  snprintf(text, sizeof text,
           "%s    impact: {tier: critical, per_row: 12.5, unit: USD, note: app}\n", minimal);
  cat = load(text, &err);
  if (!cat)
    fail_msg("%s: %s", err.input, err.msg);
  const cvg_cat_impact *im = &cat->datasets[0].impact;
  assert_int_equal(im->tier, 0);
  assert_true(im->per_row == 12.5);
  assert_string_equal(im->unit, "USD");
  assert_string_equal(im->note, "app");
  cvg_catalog_free(cat);
}

static void test_secrets(void **state) {
  (void)state;
  char pwfile[] = "/tmp/cvg-test-pw-XXXXXX";
  int fd = mkstemp(pwfile);
  assert_true(fd >= 0);
  FILE *f = fdopen(fd, "w");
  fputs("p@ss:w/rd\n", f);
  fclose(f);
  setenv("CVG_TEST_DB_DIR", "/data", 1);
  char text[1024];
  snprintf(text, sizeof text,
           "datasets:\n  - name: a\n    replicas:\n"
           "      - {name: p, url: \"sqlite://alice@localhost/x.db?table=t\", password_file: %s}\n"
           "      - {name: q, url: \"sqlite://${CVG_TEST_DB_DIR}/b.db?table=t\"}\n",
           pwfile);
  cvg_error err;
  cvg_catalog *cat = load(text, &err);
  if (!cat)
    fail_msg("%s: %s", err.input, err.msg);
  assert_string_equal(cat->datasets[0].replicas[0].url,
                      "sqlite://alice:p%40ss%3Aw%2Frd@localhost/x.db?table=t");
  assert_string_equal(cat->datasets[0].replicas[0].url_display,
                      "sqlite://alice:***@localhost/x.db?table=t");
  assert_string_equal(cat->datasets[0].replicas[1].url, "sqlite:///data/b.db?table=t");
  cvg_catalog_free(cat);
  unlink(pwfile);
  expect_error("datasets:\n  - name: a\n    replicas:\n"
               "      - {name: q, url: \"sqlite:///${CVG_TEST_UNSET_VAR}/b.db?table=t\"}\n"
               "      - {name: r, url: \"sqlite:///c.db?table=t\"}\n",
               "t.yaml:4:24", "CVG_TEST_UNSET_VAR is not set");
}

static void test_duration(void **state) {
  (void)state;
  double d;
  assert_int_equal(cvg_parse_duration("250ms", &d), 0);
  assert_true(d == 0.25);
  assert_int_equal(cvg_parse_duration("1.5", &d), 0);
  assert_true(d == 1.5);
  assert_int_equal(cvg_parse_duration("5m", &d), 0);
  assert_true(d == 300);
  assert_int_equal(cvg_parse_duration("1d", &d), 0);
  assert_true(d == 86400);
  assert_int_not_equal(cvg_parse_duration("-1s", &d), 0);
  assert_int_not_equal(cvg_parse_duration("1 s", &d), 0);
  assert_int_not_equal(cvg_parse_duration("s", &d), 0);
  char *host;
  unsigned port;
  assert_int_equal(cvg_parse_listen("[::1]:80", &host, &port), 0);
  assert_string_equal(host, "::1");
  assert_int_equal(port, 80);
  free(host);
  assert_int_not_equal(cvg_parse_listen("::1:80", &host, &port), 0);
  assert_int_not_equal(cvg_parse_listen("h:99999", &host, &port), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_minimal),  cmocka_unit_test(test_defaults_and_overrides),
      cmocka_unit_test(test_errors),   cmocka_unit_test(test_secrets),
      cmocka_unit_test(test_duration), cmocka_unit_test(test_impact),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
