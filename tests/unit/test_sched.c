/* SPDX-License-Identifier: MIT */
/*
 * The scheduler keeps time on the monotonic clock: a running monitor whose wall clock (an
 * injected one, cvg_wall_clock_set) jumps an hour back, then an hour forward, goes on writing
 * heartbeats at its interval. Were any wait measured on the wall clock, the step back would stall
 * every probe for the hour.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "converge/catalog.h"
#include "converge/log.h"
#include "converge/mclock.h"
#include "converge/monitor.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

static void test_wall_clock_steps(void **state) {
  (void)state;
  char dir[] = "/tmp/cvg-sched-XXXXXX"; /* mkdtemp template */
  assert_non_null(mkdtemp(dir));
  char a[64], b[64], text[1024];
  snprintf(a, sizeof a, "%s/a.db", dir);
  snprintf(b, sizeof b, "%s/b.db", dir);
  make_replica(a);
  make_replica(b);
  snprintf(text, sizeof text,
           "alerting: {state: %s/state.db}\n"
           "datasets:\n"
           "  - name: accounts\n"
           "    key: [id]\n"
           "    version: updated_at\n"
           "    probes: {heartbeat: {interval: 100ms}, canary: off, sweep: off, full_sweep: off}\n"
           "    replicas:\n"
           "      - {name: a, url: \"sqlite://%s?table=accounts\", authority: true}\n"
           "      - {name: b, url: \"sqlite://%s?table=accounts\"}\n",
           dir, a, b);
  cvg_catalog *cat = NULL;
  cvg_error err;
  cvg_error_clear(&err);
  if (cvg_catalog_parse(&cat, "sched.yaml", text, strlen(text), &err) != CVG_OK)
    fail_msg("catalog: %s: %s", err.input, err.msg);
  FILE *devnull = fopen("/dev/null", "w");
  assert_non_null(devnull);
  cvg_logger *lg = cvg_logger_new(devnull, "json", "error");
  assert_non_null(lg);
  cvg_wall_clock_set(stepped_clock);
  cvg_monitor *m = NULL;
  assert_int_equal(cvg_monitor_new(&m, cat, lg, &err), CVG_OK);
  assert_int_equal(cvg_monitor_start(m, &err), CVG_OK);

  long long s0 = -1;
  for (int i = 0; i < 200 && s0 < 2; i++) { /* running: a few heartbeats written */
    usleep(50 * 1000);
    s0 = heartbeat_seq(a);
  }
  assert_true(s0 >= 2);
  __atomic_store_n(&offset, -3600L, __ATOMIC_RELAXED); /* the wall clock steps an hour back */
  long long back = heartbeats_after(a, heartbeat_seq(a), 5);
  __atomic_store_n(&offset, 3600L, __ATOMIC_RELAXED); /* ... and two hours forward */
  long long fwd = heartbeats_after(a, heartbeat_seq(a), 5);
  cvg_monitor_stop(m);
  cvg_monitor_free(m);
  cvg_wall_clock_set(NULL);
  cvg_logger_free(lg);
  fclose(devnull);
  cvg_catalog_free(cat);
  if (back < 5 || fwd < 5)
    fail_msg("heartbeats after the step back: %lld, after the step forward: %lld (want 5 each)",
             back, fwd);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_wall_clock_steps),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
