/* SPDX-License-Identifier: MIT */
/*
 * The incremental check (check.h) on two SQLite replicas with an indexed version column: only
 * rows past the watermark are read (a difference below it is left to the full sweep), a value
 * differing at the same version is a conflict and a row absent on one side is missing; rows read
 * out of key order (versions falling as keys rise) are sorted and merged the same; a tracked key
 * is looked up again and resolved once the replicas agree; the watermarks advance to the greatest
 * version read. And the full sweep's side: cvg_sweep_finish resolves what a completed sweep did
 * not see.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "converge/check.h"
#include "converge/encode.h"

#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];
static const char *const key_cols[] = {"id"};
static const char *const cmp_cols[] = {"v"};

static void exec(const char *name, const char *sql) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  sqlite3 *db;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  char *msg = NULL;
  int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
  if (rc != SQLITE_OK)
    fail_msg("%s: %s", sql, msg ? msg : "?");
  sqlite3_close(db);
}

static cvg_store *open_db(const char *name) {
  char url[600];
  snprintf(url, sizeof url, "sqlite://%s/%s?table=t", dir, name);
  cvg_store *st = NULL;
  cvg_error err;
  cvg_error_clear(&err);
  assert_int_equal(cvg_store_open(&st, url, CVG_STORE_READONLY, &err), CVG_OK);
  return st;
}

/* Both replicas: ids 1..50, v = 'v<id>', version = ver(id). */
static void make_pair(int descending) {
  char sql[512];
  snprintf(sql, sizeof sql,
           "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, ver INTEGER);"
           "CREATE INDEX t_ver ON t(ver);"
           "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50) "
           "INSERT INTO t SELECT i, 'v' || i, %s FROM n;",
           descending ? "100 - i" : "i");
  exec("a.db", sql);
  exec("b.db", sql);
}

static cvg_scan_spec spec_of(void) {
  cvg_scan_spec s;
  memset(&s, 0, sizeof s);
  s.key_cols = key_cols;
  s.n_key = 1;
  s.cmp_cols = cmp_cols;
  s.n_cmp = 1;
  s.version_col = "ver";
  return s;
}

static cvg_tracker *tracker(void) {
  cvg_tracker_config cfg = {2, 16, 1000, 1};
  cvg_tracker *tr = NULL;
  assert_int_equal(cvg_tracker_new(&tr, &cfg, NULL, NULL), CVG_OK);
  return tr;
}

static void set_wm(cvg_check_replica *r, int64_t v) {
  cvg_buf b;
  cvg_buf_init(&b, 64);
  assert_int_equal(cvg_encode_int(&b, v), CVG_OK);
  memcpy(r->wm, b.data, b.len);
  r->wm_len = b.len;
  cvg_buf_release(&b);
}

/* One incremental check of a.db and b.db from watermark wm; returns the keys compared. */
static uint64_t check(cvg_tracker *tr, int64_t wm, cvg_check_replica *cr, double now) {
  cvg_scan_spec spec = spec_of();
  cvg_error err;
  cvg_error_clear(&err);
  memset(cr, 0, 2 * sizeof *cr);
  cr[0].st = open_db("a.db");
  cr[1].st = open_db("b.db");
  cr[1].index = 1;
  set_wm(&cr[0], wm);
  set_wm(&cr[1], wm);
  cvg_check *c = NULL;
  assert_int_equal(cvg_check_new(&c, &spec, 1, 2, "ds", &err), CVG_OK);
  int failed = 7;
  assert_int_equal(cvg_check_read(c, cr, 2, &failed, &err), CVG_OK);
  assert_int_equal(failed, -1);
  assert_int_equal(cvg_check_gather(c, tr, &err), CVG_OK);
  assert_int_equal(cvg_check_lookup(c, &failed, &err), CVG_OK);
  cvg_trk_check chk = {
      .now = now, .wait = 5, .lag = NAN, .probe = "incremental check", .update_digests = 1};
  uint64_t n = cvg_check_record(c, tr, &chk);
  cvg_check_free(c);
  cvg_store_close(cr[0].st);
  cvg_store_close(cr[1].st);
  return n;
}

static void count_classes(const cvg_tracker *tr, size_t *by) {
  memset(by, 0, CVG_CLASS__COUNT * sizeof *by);
  size_t cur = 0;
  for (const cvg_tracked *t; (t = cvg_tracker_next(tr, &cur));)
    by[t->cls]++;
}

static void run_past_watermark(int descending) {
  make_pair(descending);
  /* row 45 differs at the same version, row 47 is absent on b, row 10 differs below the
   * watermark (descending: the versions of 5, 3 and 40) */
  char sql[256];
  snprintf(sql, sizeof sql,
           "UPDATE t SET v = 'x' WHERE id = %d; DELETE FROM t WHERE id = %d;"
           "UPDATE t SET v = 'y' WHERE id = %d;",
           descending ? 5 : 45, descending ? 3 : 47, descending ? 40 : 10);
  exec("b.db", sql);
  cvg_tracker *tr = tracker();
  cvg_check_replica cr[2];
  /* ascending: versions >= 40 are ids 40..50; descending: versions >= 90 are ids 1..10 */
  uint64_t n = check(tr, descending ? 90 : 40, cr, 1000);
  uint64_t read = descending ? 10 : 11;
  assert_int_equal(n, read);
  size_t by[CVG_CLASS__COUNT];
  count_classes(tr, by);
  assert_int_equal(cvg_tracker_count(tr), 2); /* not the one below the watermark */
  assert_int_equal(by[CVG_CLASS_CONFLICT], 1);
  assert_int_equal(by[CVG_CLASS_MISSING], 1);
  assert_int_equal(cr[0].rows, read);
  assert_int_equal(cr[1].rows, read - 1);
  /* the new watermark: the greatest version read (50, or 99) */
  cvg_check_replica want;
  set_wm(&want, descending ? 99 : 50);
  assert_int_equal(cr[0].new_wm_len, want.wm_len);
  assert_memory_equal(cr[0].new_wm, want.wm, want.wm_len);
  cvg_tracker_free(tr);
}

static void test_past_watermark(void **state) {
  (void)state;
  run_past_watermark(0);
}

static void test_out_of_order(void **state) {
  (void)state;
  run_past_watermark(1);
}

/* A tracked key no scan yields (below the watermark) is looked up and resolved once it agrees. */
static void test_tracked_rechecked(void **state) {
  (void)state;
  make_pair(0);
  exec("b.db", "UPDATE t SET v = 'x' WHERE id = 45");
  cvg_tracker *tr = tracker();
  cvg_check_replica cr[2];
  assert_int_equal(check(tr, 40, cr, 1000), 11);
  assert_int_equal(cvg_tracker_count(tr), 1);
  /* mended (same version) and the watermark past it: only the lookup can see it */
  exec("b.db", "UPDATE t SET v = 'v45' WHERE id = 45");
  assert_int_equal(check(tr, 51, cr, 1010), 1);
  assert_int_equal(cvg_tracker_count(tr), 0);
  cvg_tracker_free(tr);
}

/* cvg_sweep_finish after a completed sweep that reported nothing: every tracked key agrees. */
static void test_sweep_finish(void **state) {
  (void)state;
  make_pair(0);
  exec("b.db", "DELETE FROM t WHERE id = 47");
  cvg_tracker *tr = tracker();
  cvg_check_replica cr[2];
  check(tr, 40, cr, 1000);
  assert_int_equal(cvg_tracker_count(tr), 1);
  size_t idx[2] = {0, 1};
  cvg_fp digest[32];
  memset(digest, 0, sizeof digest);
  cvg_diff_summary sum;
  memset(&sum, 0, sizeof sum);
  sum.digest = digest;
  unsigned char down[2] = {0, 0};
  cvg_sweep_finish(tr, idx, 2, 2, 16, &sum, 0, down); /* not completed: nothing resolved */
  assert_int_equal(cvg_tracker_count(tr), 1);
  cvg_sweep_finish(tr, idx, 2, 2, 16, &sum, 1, down);
  assert_int_equal(cvg_tracker_count(tr), 0);
  cvg_tracker_free(tr);
}

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof dir, "/tmp/cvg-check-XXXXXX"); /* mkdtemp template */
  return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char path[300];
  snprintf(path, sizeof path, "%s/a.db", dir);
  int rc = unlink(path);
  snprintf(path, sizeof path, "%s/b.db", dir);
  return rc == 0 && unlink(path) == 0 ? 0 : -1;
}

static int cleanup(void **state) {
  (void)state;
  return rmdir(dir) == 0 ? 0 : -1;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_past_watermark, NULL, teardown),
      cmocka_unit_test_setup_teardown(test_out_of_order, NULL, teardown),
      cmocka_unit_test_setup_teardown(test_tracked_rechecked, NULL, teardown),
      cmocka_unit_test_setup_teardown(test_sweep_finish, NULL, teardown),
  };
  return cmocka_run_group_tests(tests, setup, cleanup);
}
