/* SPDX-License-Identifier: MIT */
/*
 * A running monitor on two SQLite replicas:
 *   - the scheduler keeps time on the monotonic clock: when the wall clock (an injected one,
 *     cvg_wall_clock_set) jumps an hour back, then two hours forward, heartbeats go on at their
 *     interval. Were any wait measured on the wall clock, the step back would stall every probe
 *     for the hour;
 *   - a slow job in the sweep pool (a ten-second full sweep) holds up no heartbeat;
 *   - its metrics are well-formed exposition: every family has HELP and TYPE before its samples,
 *     counters end in _total, and no name carries a unit other than a base one (seconds, bytes).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "converge/catalog.h"
#include "converge/log.h"
#include "converge/mclock.h"
#include "converge/watch.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <ctype.h>

static long offset; /* seconds added to the real wall clock (atomic) */

static double stepped_clock(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 +
         (double)__atomic_load_n(&offset, __ATOMIC_RELAXED);
}

static void make_replica(const char *path) {
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db,
                                "CREATE TABLE accounts(id INTEGER PRIMARY KEY, v TEXT, "
                                "updated_at INTEGER NOT NULL);"
                                "INSERT INTO accounts VALUES (1, 'a', 1), (2, 'b', 2);",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  sqlite3_close(db);
}

/* The newest heartbeat sequence written to the authority, or -1. */
static long long heartbeat_seq(const char *path) {
  sqlite3 *db = NULL;
  long long seq = -1;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 2000);
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, "SELECT max(seq) FROM converge_heartbeat", -1, &s, NULL) ==
            SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL)
      seq = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
  }
  sqlite3_close(db);
  return seq;
}

/* Waits (at most 10 s of monotonic time) for `more` heartbeats past seq; returns how many. */
static long long heartbeats_after(const char *path, long long seq, long long more) {
  long long now = seq;
  for (int i = 0; i < 200 && now < seq + more; i++) {
    usleep(50 * 1000);
    now = heartbeat_seq(path);
  }
  return now - seq;
}

typedef struct running {
  char dir[32], a[64], b[64];
  cvg_catalog *cat;
  FILE *devnull;
  cvg_logger *lg;
  cvg_monitor *m;
} running;

/* Starts a monitor (100 ms heartbeats; the full sweep as given) on two new replicas of `rows`
 * rows (0: two) and waits for 2 heartbeats. */
static void start_with(running *r, const char *full_sweep, int rows) {
  snprintf(r->dir, sizeof r->dir, "/tmp/cvg-sched-XXXXXX"); /* mkdtemp template */
  assert_non_null(mkdtemp(r->dir));
  char text[1024];
  snprintf(r->a, sizeof r->a, "%s/a.db", r->dir);
  snprintf(r->b, sizeof r->b, "%s/b.db", r->dir);
  make_replica(r->a);
  make_replica(r->b);
  for (int k = 0; k < 2 && rows > 2; k++) {
    sqlite3 *db = NULL;
    char sql[256];
    snprintf(sql, sizeof sql,
             "WITH RECURSIVE n(i) AS (SELECT 3 UNION ALL SELECT i + 1 FROM n WHERE i < %d) "
             "INSERT INTO accounts SELECT i, 'v', 1 FROM n",
             rows);
    assert_int_equal(sqlite3_open(k ? r->b : r->a, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    /* WAL: a heartbeat write then never waits for the sweep's long read transaction (in a
     * rollback journal, SQLite's own locking would hold it back, whatever the scheduler did) */
    assert_int_equal(sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
  }
  snprintf(text, sizeof text,
           "workers: 1\n"
           "alerting: {state: %s/state.db}\n"
           "datasets:\n"
           "  - name: accounts\n"
           "    key: [id]\n"
           "    version: updated_at\n"
           "    probes: {heartbeat: {interval: 100ms}, canary: off, sweep: off, full_sweep: %s}\n"
           "    replicas:\n"
           "      - {name: a, url: \"sqlite://%s?table=accounts\", authority: true}\n"
           "      - {name: b, url: \"sqlite://%s?table=accounts\"}\n",
           r->dir, full_sweep, r->a, r->b);
  cvg_error err;
  cvg_error_clear(&err);
  if (cvg_catalog_parse(&r->cat, "sched.yaml", text, strlen(text), &err) != CVG_OK)
    fail_msg("catalog: %s: %s", err.input, err.msg);
  assert_non_null(r->devnull = fopen("/dev/null", "w"));
  assert_non_null(r->lg = cvg_logger_new(r->devnull, "json", "error"));
  assert_int_equal(cvg_monitor_new(&r->m, r->cat, r->lg, &err), CVG_OK);
  assert_int_equal(cvg_monitor_start(r->m, &err), CVG_OK);
  long long s0 = -1;
  for (int i = 0; i < 200 && s0 < 2; i++) { /* running: a few heartbeats written */
    usleep(50 * 1000);
    s0 = heartbeat_seq(r->a);
  }
  assert_true(s0 >= 2);
}

static void start(running *r) {
  start_with(r, "off", 0);
}

static void stop(running *r) {
  cvg_monitor_stop(r->m);
  cvg_monitor_free(r->m);
  cvg_logger_free(r->lg);
  fclose(r->devnull);
  cvg_catalog_free(r->cat);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", r->dir);
  assert_int_equal(system(cmd), 0);
}

static void test_wall_clock_steps(void **state) {
  (void)state;
  running r;
  memset(&r, 0, sizeof r);
  cvg_wall_clock_set(stepped_clock);
  start(&r);
  const char *a = r.a;
  __atomic_store_n(&offset, -3600L, __ATOMIC_RELAXED); /* the wall clock steps an hour back */
  long long back = heartbeats_after(a, heartbeat_seq(a), 5);
  __atomic_store_n(&offset, 3600L, __ATOMIC_RELAXED); /* ... and two hours forward */
  long long fwd = heartbeats_after(a, heartbeat_seq(a), 5);
  stop(&r);
  cvg_wall_clock_set(NULL);
  if (back < 5 || fwd < 5)
    fail_msg("heartbeats after the step back: %lld, after the step forward: %lld (want 5 each)",
             back, fwd);
}

/* A slow job in the sweep pool (a full sweep rate-limited to 100 rows/s over 1,000 rows: ten
 * seconds) never holds up the quick pool: ten heartbeats (a second's worth) are written while
 * that sweep is still running - had they waited for the sweep's thread, it would have ended
 * first. One worker per pool, so each pool has a single thread. */
static void test_slow_sweep_delays_no_probe(void **state) {
  (void)state;
  running r;
  memset(&r, 0, sizeof r);
  start_with(&r, "{interval: 1h, rows_per_second: 100}", 1000);
  long long got = heartbeats_after(r.a, heartbeat_seq(r.a), 10);
  cvg_buf b;
  cvg_buf_init(&b, 64u << 20);
  assert_int_equal(cvg_monitor_metrics(r.m, &b), CVG_OK);
  assert_int_equal(cvg_buf_append(&b, "", 1), CVG_OK);
  stop(&r);
  const char *done =
      strstr((const char *)b.data,
             "converge_sweeps_total{dataset=\"accounts\",kind=\"full\",result=\"ok\"} 0");
  int running_still = done != NULL;
  cvg_buf_release(&b);
  if (got < 10)
    fail_msg("only %lld heartbeats while the full sweep ran", got);
  if (!running_still)
    fail_msg("the full sweep had ended before ten heartbeats were written: the quick pool waited");
}

/* The family a sample line belongs to: its name without {labels}, and without the _bucket,
 * _sum or _count of a histogram when the family is one. */
static void family_of(const char *line, char *out, size_t size, const char *histograms) {
  size_t n = strcspn(line, "{ ");
  snprintf(out, size, "%.*s", (int)n, line);
  static const char *const parts[] = {"_bucket", "_sum", "_count"};
  for (int i = 0; i < 3; i++) {
    size_t l = strlen(out), pl = strlen(parts[i]);
    if (l > pl && strcmp(out + l - pl, parts[i]) == 0) {
      char base[256], pat[260];
      snprintf(base, sizeof base, "%.*s", (int)(l - pl), out);
      snprintf(pat, sizeof pat, " %s ", base);
      if (strstr(histograms, pat))
        snprintf(out, size, "%s", base);
    }
  }
}

static void test_metrics_exposition(void **state) {
  (void)state;
  running r;
  memset(&r, 0, sizeof r);
  start(&r);
  cvg_buf b;
  cvg_buf_init(&b, 64u << 20);
  assert_int_equal(cvg_monitor_metrics(r.m, &b), CVG_OK);
  assert_int_equal(cvg_buf_append(&b, "", 1), CVG_OK);
  stop(&r);
  char *text = (char *)b.data, helped[65536] = " ", typed[65536] = " ", hist[16384] = " ";
  size_t families = 0, samples = 0;
  static const char *const bad_units[] = {
      "_ms",   "_milliseconds", "_microseconds", "_minutes", "_hours",
      "_days", "_kb",           "_mb",           "_percent", NULL};
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    char name[256], pat[260];
    if (sscanf(line, "# HELP %255s", name) == 1) {
      snprintf(pat, sizeof pat, " %s ", name);
      assert_null(strstr(helped, pat)); /* one HELP per family */
      strncat(helped, name, sizeof helped - strlen(helped) - 2);
      strncat(helped, " ", sizeof helped - strlen(helped) - 1);
      families++;
      for (int i = 0; bad_units[i]; i++) {
        const char *u = strstr(name, bad_units[i]);
        if (u && (u[strlen(bad_units[i])] == '\0' || u[strlen(bad_units[i])] == '_'))
          fail_msg("metric %s names a unit other than a base one", name);
      }
      continue;
    }
    char type[32];
    if (sscanf(line, "# TYPE %255s %31s", name, type) == 2) {
      snprintf(pat, sizeof pat, " %s ", name);
      if (!strstr(helped, pat))
        fail_msg("TYPE of %s comes before (or without) its HELP", name);
      if (strcmp(type, "counter") == 0 &&
          (strlen(name) < 6 || strcmp(name + strlen(name) - 6, "_total")))
        fail_msg("counter %s does not end in _total", name);
      strncat(typed, name, sizeof typed - strlen(typed) - 2);
      strncat(typed, " ", sizeof typed - strlen(typed) - 1);
      if (strcmp(type, "histogram") == 0) {
        strncat(hist, name, sizeof hist - strlen(hist) - 2);
        strncat(hist, " ", sizeof hist - strlen(hist) - 1);
      }
      continue;
    }
    if (line[0] == '#' || !isalpha((unsigned char)line[0]))
      continue;
    char fam[256];
    family_of(line, fam, sizeof fam, hist);
    snprintf(pat, sizeof pat, " %s ", fam);
    if (!strstr(typed, pat))
      fail_msg("sample '%.80s' has no HELP and TYPE before it", line);
    samples++;
  }
  cvg_buf_release(&b);
  assert_true(families >= 20);
  assert_true(samples >= families);
}

/* The daily UTC windows of full sweeps and repairs (cvg_in_utc_window), across midnight too. */
static void test_utc_window(void **state) {
  (void)state;
  double day = 1796342400;                                   /* 2026-12-04T00:00:00Z */
  assert_true(cvg_in_utc_window(day + 3 * 3600, -1, 0));     /* no window */
  assert_true(cvg_in_utc_window(day + 2 * 3600, 120, 240));  /* 02:00 in [02:00, 04:00) */
  assert_false(cvg_in_utc_window(day + 4 * 3600, 120, 240)); /* 04:00: the end is out */
  assert_false(cvg_in_utc_window(day + 3600 + 59 * 60 + 59, 120, 240));   /* 01:59:59 */
  assert_true(cvg_in_utc_window(day + 23 * 3600 + 30 * 60, 22 * 60, 60)); /* 23:30 in 22-01 */
  assert_true(cvg_in_utc_window(day + 30 * 60, 22 * 60, 60));             /* 00:30 too */
  assert_false(cvg_in_utc_window(day + 12 * 3600, 22 * 60, 60));          /* noon is not */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_wall_clock_steps),
      cmocka_unit_test(test_utc_window),
      cmocka_unit_test(test_slow_sweep_delays_no_probe),
      cmocka_unit_test(test_metrics_exposition),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
