/* SPDX-License-Identifier: MIT */
/*
 * Classification rules (diff.h) and version-vector order: one test per rule and precedence.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "converge/diff.h"

#include <string.h>

static unsigned char V[8][9]; /* encoded versions */

static cvg_copy live(uint64_t fp, int ver) {
  cvg_copy c;
  memset(&c, 0, sizeof c);
  c.state = CVG_LIVE;
  c.fp.hi = fp;
  c.fp.lo = fp * 7;
  if (ver >= 0) {
    cvg_buf b;
    cvg_buf_init(&b, 9);
    cvg_encode_int(&b, ver);
    memcpy(V[ver], b.data, 9);
    cvg_buf_release(&b);
    c.version = V[ver];
    c.version_len = 9;
  }
  return c;
}
static cvg_copy tomb(int ver) {
  cvg_copy c = live(99, ver);
  c.state = CVG_TOMBSTONED;
  return c;
}
static cvg_copy absent(void) {
  cvg_copy c;
  memset(&c, 0, sizeof c);
  return c;
}
static cvg_copy vv(uint64_t fp, const char *vec) {
  cvg_copy c = live(fp, -1);
  c.vvec = (const unsigned char *)vec;
  c.vvec_len = strlen(vec);
  return c;
}

static int cls(cvg_copy *c, size_t n, int use_version, int use_vvec) {
  return cvg_classify(c, n, use_version, use_vvec, NULL);
}

static void test_equal_is_none(void **state) {
  (void)state;
  cvg_copy c[3] = {live(1, 1), live(1, 1), live(1, 1)};
  assert_int_equal(cls(c, 3, 1, 0), CVG_CLASS_NONE);
  cvg_copy d[2] = {live(1, -1), live(1, -1)};
  assert_int_equal(cls(d, 2, 0, 0), CVG_CLASS_NONE);
}

static void test_deleted_everywhere_is_none(void **state) {
  (void)state;
  cvg_copy c[3] = {tomb(1), absent(), tomb(2)};
  assert_int_equal(cls(c, 3, 1, 0), CVG_CLASS_NONE);
}

static void test_missing(void **state) {
  (void)state;
  cvg_copy c[3] = {live(1, 1), absent(), live(1, 1)};
  assert_int_equal(cls(c, 3, 1, 0), CVG_CLASS_MISSING);
  /* missing takes precedence over a value difference between the present copies */
  cvg_copy d[3] = {live(1, 1), absent(), live(2, 2)};
  assert_int_equal(cls(d, 3, 1, 0), CVG_CLASS_MISSING);
}

static void test_tombstone_beats_missing(void **state) {
  (void)state;
  cvg_copy c[3] = {live(1, 1), absent(), tomb(2)};
  assert_int_equal(cls(c, 3, 1, 0), CVG_CLASS_TOMBSTONE);
  assert_true(c[2].newest);
  assert_false(c[0].newest);
}

static void test_stale_and_newest(void **state) {
  (void)state;
  cvg_copy c[3] = {live(1, 5), live(2, 3), live(1, 5)};
  assert_int_equal(cls(c, 3, 1, 0), CVG_CLASS_STALE);
  assert_true(c[0].newest);
  assert_false(c[1].newest);
  assert_true(c[2].newest);
}

static void test_same_version_different_values_is_conflict(void **state) {
  (void)state;
  cvg_copy c[2] = {live(1, 4), live(2, 4)};
  assert_int_equal(cls(c, 2, 1, 0), CVG_CLASS_CONFLICT);
  /* conflict wins over stale when both occur among three copies */
  cvg_copy d[3] = {live(1, 4), live(2, 4), live(3, 2)};
  assert_int_equal(cls(d, 3, 1, 0), CVG_CLASS_CONFLICT);
}

static void test_no_version_means_conflict(void **state) {
  (void)state;
  cvg_copy c[2] = {live(1, 1), live(2, 2)};
  assert_int_equal(cls(c, 2, 0, 0), CVG_CLASS_CONFLICT);
}

static void test_version_vectors(void **state) {
  (void)state;
  cvg_copy dominated[2] = {vv(1, "{\"a\":2,\"b\":1}"), vv(2, "{\"a\":1,\"b\":1}")};
  assert_int_equal(cls(dominated, 2, 0, 1), CVG_CLASS_STALE);
  assert_true(dominated[0].newest);
  assert_false(dominated[1].newest);
  cvg_copy concurrent[2] = {vv(1, "{\"a\":2,\"b\":1}"), vv(2, "{\"a\":1,\"b\":2}")};
  assert_int_equal(cls(concurrent, 2, 0, 1), CVG_CLASS_CONFLICT);
  cvg_copy equal_diff[2] = {vv(1, "{\"a\":1}"), vv(2, "{\"a\":1,\"b\":0}")};
  assert_int_equal(cls(equal_diff, 2, 0, 1), CVG_CLASS_CONFLICT);
  cvg_copy absent_writer[2] = {vv(1, "{\"a\":1}"), vv(2, "{\"a\":1,\"b\":3}")};
  assert_int_equal(cls(absent_writer, 2, 0, 1), CVG_CLASS_STALE);
  cvg_copy bad[2] = {vv(1, "{\"a\":-1}"), vv(2, "{\"a\":1}")};
  assert_int_equal(cls(bad, 2, 0, 1), -CVG_EJSON);
  cvg_copy notobj[2] = {vv(1, "[1,2]"), vv(2, "{\"a\":1}")};
  assert_int_equal(cls(notobj, 2, 0, 1), -CVG_EJSON);
}

static void test_vv_compare(void **state) {
  (void)state;
  cvg_vv_order o;
  assert_int_equal(cvg_vv_compare("{}", 2, "{\"x\":0}", 7, &o, NULL), CVG_OK);
  assert_int_equal(o, CVG_VV_EQUAL);
  assert_int_equal(cvg_vv_compare("{\"x\":1}", 7, "{\"x\":2}", 7, &o, NULL), CVG_OK);
  assert_int_equal(o, CVG_VV_BEFORE);
  assert_int_equal(cvg_vv_compare("{\"x\":3}", 7, "{\"x\":2}", 7, &o, NULL), CVG_OK);
  assert_int_equal(o, CVG_VV_AFTER);
  cvg_error err;
  assert_int_equal(cvg_vv_compare("{\"x\":1,\"x\":2}", 13, "{}", 2, &o, &err), CVG_EJSON);
  assert_int_equal(cvg_vv_compare("nope", 4, "{}", 2, &o, &err), CVG_EJSON);
  assert_non_null(strstr(err.msg, "not JSON"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_equal_is_none),
      cmocka_unit_test(test_deleted_everywhere_is_none),
      cmocka_unit_test(test_missing),
      cmocka_unit_test(test_tombstone_beats_missing),
      cmocka_unit_test(test_stale_and_newest),
      cmocka_unit_test(test_same_version_different_values_is_conflict),
      cmocka_unit_test(test_no_version_means_conflict),
      cmocka_unit_test(test_version_vectors),
      cmocka_unit_test(test_vv_compare),
  };
  return cmocka_run_group_tests_name("classify", tests, NULL, NULL);
}
