/* SPDX-License-Identifier: MIT */
/*
 * The one-shot probes (probe.h) on SQLite files: a heartbeat read before replication brought
 * the table says "absent" rather than failing; a written heartbeat reads back with its sequence
 * and time; the next sequence continues what the table holds (a restarted writer never goes
 * back); canaries are seen only once written, unknown tokens are not, and a table not there yet
 * holds none; tokens differ call to call.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "converge/probe.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

static cvg_store *open_db(const char *name, unsigned flags) {
  char path[512], url[600];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  sqlite3 *db;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  assert_int_equal(
      sqlite3_exec(db, "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY)", NULL, NULL, NULL),
      SQLITE_OK);
  sqlite3_close(db);
  snprintf(url, sizeof url, "sqlite://%s?table=t", path);
  cvg_store *st = NULL;
  cvg_error err;
  cvg_error_clear(&err);
  assert_int_equal(cvg_store_open(&st, url, flags, &err), CVG_OK);
  return st;
}

static void test_heartbeat(void **state) {
  (void)state;
  cvg_store *st = open_db("hb.db", 0);
  cvg_error err;
  cvg_error_clear(&err);
  cvg_hb_reading rd;
  assert_int_equal(cvg_probe_heartbeat_read(st, "converge_heartbeat", "ds", 1, &rd, &err), CVG_OK);
  assert_int_equal(rd.table_absent, 1);
  assert_int_equal(rd.found, 0);
  assert_string_equal(rd.native.role, ""); /* SQLite has no replication of its own */
  assert_int_equal(rd.native.up, 1);
  /* the first sequence is 1; writing without create on a missing table fails */
  assert_int_equal(cvg_probe_heartbeat_next(st, "converge_heartbeat", "ds", 0), 1);
  assert_int_not_equal(
      cvg_probe_heartbeat_write(st, "converge_heartbeat", "ds", 1, 100.5, 0, NULL, &err), CVG_OK);
  cvg_error_clear(&err);
  cvg_native_view nv;
  assert_int_equal(
      cvg_probe_heartbeat_write(st, "converge_heartbeat", "ds", 7, 100.5, 1, &nv, &err), CVG_OK);
  assert_string_equal(nv.role, "");
  assert_int_equal(cvg_probe_heartbeat_read(st, "converge_heartbeat", "ds", 1, &rd, &err), CVG_OK);
  assert_int_equal(rd.table_absent, 0);
  assert_int_equal(rd.found, 1);
  assert_int_equal(rd.seq, 7);
  assert_true(rd.ts == 100.5);
  /* another source's row is not this one's */
  assert_int_equal(cvg_probe_heartbeat_read(st, "converge_heartbeat", "other", 1, &rd, &err),
                   CVG_OK);
  assert_int_equal(rd.found, 0);
  /* a restarted writer (last 0) continues after 7; a running one after the greater */
  assert_int_equal(cvg_probe_heartbeat_next(st, "converge_heartbeat", "ds", 0), 8);
  assert_int_equal(cvg_probe_heartbeat_next(st, "converge_heartbeat", "ds", 20), 21);
  /* want_row 0: the engine's view only */
  assert_int_equal(cvg_probe_heartbeat_read(st, "converge_heartbeat", "ds", 0, &rd, &err), CVG_OK);
  assert_int_equal(rd.found, 0);
  cvg_store_close(st);
}

static void test_canary(void **state) {
  (void)state;
  cvg_store *st = open_db("can.db", 0);
  cvg_error err;
  cvg_error_clear(&err);
  char tok[3][CVG_CANARY_TOKEN_MAX];
  cvg_probe_canary_token(tok[0], sizeof tok[0], 1000.0, 1);
  cvg_probe_canary_token(tok[1], sizeof tok[1], 1000.0, 2);
  cvg_probe_canary_token(tok[2], sizeof tok[2], 1001.0, 1);
  assert_string_not_equal(tok[0], tok[1]);
  assert_string_not_equal(tok[0], tok[2]);
  int seen[3] = {1, 1, 1};
  /* no table yet: nothing seen, no error */
  assert_int_equal(
      cvg_probe_canary_poll(st, "converge_canary", (const char(*)[64])tok, 3, seen, &err), CVG_OK);
  assert_int_equal(seen[0] + seen[1] + seen[2], 0);
  assert_int_equal(cvg_probe_canary_write(st, "converge_canary", "ds", tok[0], 1000.0, 0, 1, &err),
                   CVG_OK);
  assert_int_equal(cvg_probe_canary_write(st, "converge_canary", "ds", tok[2], 1001.0, 0, 1, &err),
                   CVG_OK);
  assert_int_equal(
      cvg_probe_canary_poll(st, "converge_canary", (const char(*)[64])tok, 3, seen, &err), CVG_OK);
  assert_int_equal(seen[0], 1);
  assert_int_equal(seen[1], 0);
  assert_int_equal(seen[2], 1);
  /* a write purges the source's canaries older than purge_before */
  assert_int_equal(
      cvg_probe_canary_write(st, "converge_canary", "ds", tok[1], 2000.0, 1000.5, 1, &err), CVG_OK);
  assert_int_equal(
      cvg_probe_canary_poll(st, "converge_canary", (const char(*)[64])tok, 3, seen, &err), CVG_OK);
  assert_int_equal(seen[0], 0);
  assert_int_equal(seen[1], 1);
  assert_int_equal(seen[2], 1);
  cvg_store_close(st);
}

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof dir, "/tmp/cvg-test-probe-XXXXXX"); /* mkdtemp template */
  return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_heartbeat),
                                     cmocka_unit_test(test_canary)};
  return cmocka_run_group_tests(tests, setup, teardown);
}
