/* SPDX-License-Identifier: MIT */
/*
 * The canonical encoding: byte order equals value order, round trips, and golden values that
 * pin the format (a change to the encoding, the fingerprint or the shard function must break
 * one of these tests).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "converge/encode.h"
#include "converge/json.h"
#include "converge/status.h"

/* Golden values. GOLDEN_FP_ROW was checked independently: the row's bytes written by hand from
 * the layout in encode.c and hashed with `xxhsum -H2` give the same digest; GOLDEN_FP_EMPTY is
 * XXH128 of nothing. */
#define GOLDEN_FP_ROW "27ecd436ef0e3129321b69c321e85ed3"
#define GOLDEN_FP_ROW_NULL "e14f3b8a32c9b7bd4dc64a79f4072639"
#define GOLDEN_FP_EMPTY "99aa06d3014798d86001c324468d497f"
#define GOLDEN_SHARD_42_OF_16 13
#define GOLDEN_SHARD_42_OF_1000 549
#define GOLDEN_SHARD_CKEY_OF_64 14

#include <math.h>
#include <stdio.h>
#include <string.h>

static cvg_value vint(int64_t i) {
  cvg_value v = {.type = CVG_INTEGER};
  v.u.i = i;
  return v;
}
static cvg_value vreal(double r) {
  cvg_value v = {.type = CVG_REAL};
  v.u.r = r;
  return v;
}
static cvg_value vtext(const char *s, size_t n) {
  cvg_value v = {.type = CVG_TEXT};
  v.u.s.p = (const unsigned char *)s;
  v.u.s.n = n;
  return v;
}
static cvg_value vblob(const char *s, size_t n) {
  cvg_value v = {.type = CVG_BLOB};
  v.u.s.p = (const unsigned char *)s;
  v.u.s.n = n;
  return v;
}
static cvg_value vnull(void) {
  cvg_value v = {.type = CVG_NULL};
  return v;
}

static void enc(cvg_buf *b, const cvg_value *v, size_t n) {
  cvg_buf_reset(b);
  for (size_t i = 0; i < n; i++)
    assert_int_equal(cvg_encode_value(b, &v[i]), CVG_OK);
}

static void hex_of(const cvg_buf *b, char *out, size_t size) {
  size_t j = 0;
  for (size_t i = 0; i < b->len && j + 3 < size; i++)
    j += (size_t)snprintf(out + j, size - j, "%02x", b->data[i]);
  out[j] = '\0';
}

/* Values listed in strictly increasing natural order (SQLite's, within a type). */
static void test_order_single_values(void **state) {
  (void)state;
  cvg_value vals[] = {
      vnull(),
      vint(INT64_MIN),
      vint(-1000000),
      vint(-1),
      vint(0),
      vint(1),
      vint(255),
      vint(256),
      vint(INT64_MAX),
      vreal(-INFINITY),
      vreal(-1e300),
      vreal(-1.5),
      vreal(-1e-300),
      vreal(0.0),
      vreal(1e-300),
      vreal(1.5),
      vreal(2.0),
      vreal(1e300),
      vreal(INFINITY),
      vtext("", 0),
      vtext("\0", 1),
      vtext("\0\0", 2),
      vtext("\x01", 1),
      vtext("A", 1),
      vtext("a", 1),
      vtext("a\0", 2),
      vtext("a\0b", 3),
      vtext("ab", 2),
      vtext("b", 1),
      vtext("caf\xc3\xa9", 6),
      vtext("\xc3\xa9", 2),
      vtext("\xff", 1),
      vblob("", 0),
      vblob("\0", 1),
      vblob("\x01\x02", 2),
      vblob("\xff\xff", 2),
  };
  size_t n = sizeof vals / sizeof vals[0];
  cvg_buf a, b;
  cvg_buf_init(&a, 1 << 20);
  cvg_buf_init(&b, 1 << 20);
  for (size_t i = 0; i < n; i++) {
    for (size_t j = 0; j < n; j++) {
      enc(&a, &vals[i], 1);
      enc(&b, &vals[j], 1);
      int c = cvg_key_compare(a.data, a.len, b.data, b.len);
      int want = i < j ? -1 : i > j ? 1 : 0;
      if ((c < 0 ? -1 : c > 0) != want)
        fail_msg("order of value %zu vs %zu: got %d, want %d", i, j, c, want);
    }
  }
  cvg_buf_release(&a);
  cvg_buf_release(&b);
}

/* Tuples order lexicographically by element, whatever the element lengths. */
static void test_order_tuples(void **state) {
  (void)state;
  cvg_value t[][2] = {
      {vtext("a", 1), vint(2)},  {vtext("a", 1), vint(10)},      {vtext("a\0", 2), vint(1)},
      {vtext("ab", 2), vint(1)}, {vtext("ab", 2), vtext("", 0)}, {vtext("b", 1), vnull()},
      {vtext("b", 1), vint(-5)},
  };
  size_t n = sizeof t / sizeof t[0];
  cvg_buf a, b;
  cvg_buf_init(&a, 1 << 20);
  cvg_buf_init(&b, 1 << 20);
  for (size_t i = 0; i + 1 < n; i++) {
    enc(&a, t[i], 2);
    enc(&b, t[i + 1], 2);
    assert_true(cvg_key_compare(a.data, a.len, b.data, b.len) < 0);
  }
  cvg_buf_release(&a);
  cvg_buf_release(&b);
}

/* Random integers: byte order equals numeric order. */
static void test_order_random_integers(void **state) {
  (void)state;
  uint64_t x = 88172645463325252ULL;
  cvg_buf a, b;
  cvg_buf_init(&a, 64);
  cvg_buf_init(&b, 64);
  for (int k = 0; k < 20000; k++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    int64_t i = (int64_t)x, j = (int64_t)(x * 2654435761u);
    cvg_value vi = vint(i), vj = vint(j);
    enc(&a, &vi, 1);
    enc(&b, &vj, 1);
    int c = cvg_key_compare(a.data, a.len, b.data, b.len);
    assert_int_equal(c < 0 ? -1 : c > 0, i < j ? -1 : i > j);
  }
  cvg_buf_release(&a);
  cvg_buf_release(&b);
}

static void test_round_trip(void **state) {
  (void)state;
  cvg_value in[] = {vnull(),         vint(-42),
                    vint(INT64_MAX), vreal(-0.25),
                    vreal(3.5e100),  vtext("h\0llo\0", 7),
                    vtext("", 0),    vblob("\0\xff\0", 3),
                    vint(INT64_MIN)};
  size_t n = sizeof in / sizeof in[0];
  cvg_buf b, scratch;
  cvg_buf_init(&b, 1 << 20);
  cvg_buf_init(&scratch, 1 << 20);
  enc(&b, in, n);
  cvg_value out[16];
  size_t k = 0;
  assert_int_equal(cvg_decode_tuple(b.data, b.len, out, 16, &k, &scratch), CVG_OK);
  assert_int_equal(k, n);
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(out[i].type, in[i].type);
    switch (in[i].type) {
    case CVG_INTEGER:
      assert_true(out[i].u.i == in[i].u.i);
      break;
    case CVG_REAL:
      assert_true(out[i].u.r == in[i].u.r);
      break;
    case CVG_TEXT:
    case CVG_BLOB:
      assert_int_equal(out[i].u.s.n, in[i].u.s.n);
      if (in[i].u.s.n)
        assert_memory_equal(out[i].u.s.p, in[i].u.s.p, in[i].u.s.n);
      break;
    default:
      break;
    }
  }
  /* Too few slots, truncated input and unknown tags are refused. */
  assert_int_equal(cvg_decode_tuple(b.data, b.len, out, 2, &k, &scratch), CVG_ETOOBIG);
  assert_int_equal(cvg_decode_tuple(b.data, 5, out, 16, &k, &scratch), CVG_ECORRUPT);
  unsigned char bad[] = {0x09};
  assert_int_equal(cvg_decode_tuple(bad, 1, out, 16, &k, &scratch), CVG_ECORRUPT);
  unsigned char unterminated[] = {CVG_TEXT, 'a', 'b'};
  assert_int_equal(cvg_decode_tuple(unterminated, 3, out, 16, &k, &scratch), CVG_ECORRUPT);
  cvg_buf_release(&b);
  cvg_buf_release(&scratch);
}

static void test_negative_zero_and_nan(void **state) {
  (void)state;
  cvg_buf a, b;
  cvg_buf_init(&a, 64);
  cvg_buf_init(&b, 64);
  cvg_value z = vreal(0.0), nz = vreal(-0.0), n1 = vreal(NAN), n2 = vreal(-NAN);
  enc(&a, &z, 1);
  enc(&b, &nz, 1);
  assert_int_equal(cvg_key_compare(a.data, a.len, b.data, b.len), 0);
  enc(&a, &n1, 1);
  enc(&b, &n2, 1);
  assert_int_equal(cvg_key_compare(a.data, a.len, b.data, b.len), 0);
  cvg_buf_release(&a);
  cvg_buf_release(&b);
}

/* GOLDEN: the byte layout of each type, checked by hand against the table in encode.c. */
static void test_golden_bytes(void **state) {
  (void)state;
  struct {
    cvg_value v;
    const char *hex;
  } cases[] = {
      {vnull(), "01"},
      {vint(0), "028000000000000000"},
      {vint(1), "028000000000000001"},
      {vint(-1), "027fffffffffffffff"},
      {vint(42), "02800000000000002a"},
      {vint(INT64_MIN), "020000000000000000"},
      {vreal(1.0), "03bff0000000000000"},
      {vreal(-1.0), "03400fffffffffffff"},
      {vreal(0.0), "038000000000000000"},
      {vtext("ab", 2), "04616200"},
      {vtext("a\0b", 3), "046100ff6200"},
      {vtext("\xc3\xa9", 2), "04c3a900"},
      {vblob("\x00\x01", 2), "0500ff0100"},
      {vtext("", 0), "0400"},
  };
  cvg_buf b;
  cvg_buf_init(&b, 64);
  char hex[64];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    enc(&b, &cases[i].v, 1);
    hex_of(&b, hex, sizeof hex);
    if (strcmp(hex, cases[i].hex) != 0)
      fail_msg("case %zu: encoded %s, golden %s", i, hex, cases[i].hex);
  }
  cvg_buf_release(&b);
}

/* GOLDEN: fingerprints and shards of fixed rows (XXH3-128 / XXH3-64, seed 0). */
static void test_golden_fingerprint_and_shard(void **state) {
  (void)state;
  cvg_value row[] = {vtext("alice", 5), vint(1200),       vtext("EUR", 3),
                     vreal(12.5),       vint(1700000000), vint(0)};
  cvg_value row_null[] = {vnull(), vint(1200), vnull(), vreal(12.5), vint(1700000000), vint(0)};
  cvg_value key[] = {vint(42)};
  cvg_value ckey[] = {vtext("eu-west", 7), vint(7)};
  cvg_buf b;
  cvg_buf_init(&b, 1 << 10);
  char hex[33];

  enc(&b, row, 6);
  cvg_fp_hex(cvg_fingerprint(b.data, b.len), hex);
  assert_string_equal(hex, GOLDEN_FP_ROW);
  enc(&b, row_null, 6);
  cvg_fp_hex(cvg_fingerprint(b.data, b.len), hex);
  assert_string_equal(hex, GOLDEN_FP_ROW_NULL);
  cvg_fp_hex(cvg_fingerprint("", 0), hex);
  assert_string_equal(hex, GOLDEN_FP_EMPTY);

  enc(&b, key, 1);
  assert_int_equal(cvg_shard_of(b.data, b.len, 16), GOLDEN_SHARD_42_OF_16);
  assert_int_equal(cvg_shard_of(b.data, b.len, 1000), GOLDEN_SHARD_42_OF_1000);
  assert_int_equal(cvg_shard_of(b.data, b.len, 1), 0);
  enc(&b, ckey, 2);
  assert_int_equal(cvg_shard_of(b.data, b.len, 64), GOLDEN_SHARD_CKEY_OF_64);
  cvg_buf_release(&b);
}

static void test_buf_max(void **state) {
  (void)state;
  cvg_buf b;
  cvg_buf_init(&b, 10);
  assert_int_equal(cvg_buf_append(&b, "0123456789", 10), CVG_OK);
  assert_int_equal(cvg_buf_append(&b, "x", 1), CVG_ETOOBIG);
  assert_int_equal(b.len, 10);
  assert_int_equal(cvg_encode_int(&b, 1), CVG_ETOOBIG);
  cvg_buf_release(&b);
}

/* The journal's fast key writer gives exactly what jansson gives for the same key. */
static void test_key_json_matches_jansson(void **state) {
  (void)state;
  const char *cols[] = {"id", "na\"me", "x"};
  cvg_value keys[][3] = {
      {vint(42), vtext("alice", 5), vint(-7)},
      {vint(INT64_MIN), vtext("quo\"te\\", 7), vnull()},
      {vreal(1.5), vtext("caf\xc3\xa9", 5), vblob("\x00\x01", 2)},
      {vint(0), vtext("bad\xff", 4), vtext("tab\there", 8)},
      {vreal(NAN), vtext("", 0), vint(INT64_MAX)},
  };
  cvg_buf key, out;
  cvg_buf_init(&key, 4096);
  cvg_buf_init(&out, 4096);
  for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
    enc(&key, keys[k], 3);
    json_t *j = cvg_key_to_json(key.data, key.len, cols, 3);
    assert_non_null(j);
    char *want = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    cvg_buf_reset(&out);
    assert_int_equal(cvg_key_json_append(&out, key.data, key.len, cols, 3), CVG_OK);
    assert_int_equal(cvg_buf_append(&out, "", 1), CVG_OK);
    assert_string_equal((const char *)out.data, want);
    free(want);
  }
  cvg_buf_reset(&out); /* a malformed key is null, as cvg_key_to_json's NULL */
  assert_int_equal(cvg_key_json_append(&out, (const unsigned char *)"\xff", 1, cols, 3), CVG_OK);
  assert_int_equal(out.len, 4);
  assert_memory_equal(out.data, "null", 4);
  cvg_buf_release(&key);
  cvg_buf_release(&out);
}

/* Cross-engine comparability: reals rounded, timestamps normalised. */
static void test_round_and_timestamps(void **state) {
  (void)state;
  assert_true(cvg_round_real(0.1 + 0.2, 15) == 0.3);
  assert_true(cvg_round_real(0.1 + 0.2, 17) != 0.3);
  assert_true(cvg_round_real(2.5, 0) == 2.5); /* 0: unchanged */
  assert_true(cvg_round_real(123456.789, 3) == 123000.0);
  char out[32];
  size_t n = cvg_norm_timestamp("2026-11-26T21:00:00.123Z", 24, 3, out, sizeof out);
  assert_int_equal(n, 23);
  assert_memory_equal(out, "2026-11-26 21:00:00.123", 23);
  n = cvg_norm_timestamp("2026-11-26 21:00:00.123456+00", 29, 3, out, sizeof out);
  assert_int_equal(n, 23);
  assert_memory_equal(out, "2026-11-26 21:00:00.123", 23); /* cut, not rounded */
  n = cvg_norm_timestamp("2026-11-26 21:00:01+00:00", 25, 2, out, sizeof out);
  assert_int_equal(n, 22);
  assert_memory_equal(out, "2026-11-26 21:00:01.00", 22);
  n = cvg_norm_timestamp("2026-11-26 21:00:01.9", 21, 0, out, sizeof out);
  assert_int_equal(n, 19);
  assert_memory_equal(out, "2026-11-26 21:00:01", 19);
  /* not UTC, not a timestamp, malformed: left alone */
  assert_int_equal(cvg_norm_timestamp("2026-11-26 21:00:01+02", 22, 3, out, sizeof out), 0);
  assert_int_equal(cvg_norm_timestamp("hello world, a text", 19, 3, out, sizeof out), 0);
  assert_int_equal(cvg_norm_timestamp("2026-11-26 21:00:01.", 20, 3, out, sizeof out), 0);
  assert_int_equal(cvg_norm_timestamp("2026-11-26", 10, 3, out, sizeof out), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_order_single_values),
      cmocka_unit_test(test_order_tuples),
      cmocka_unit_test(test_order_random_integers),
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_negative_zero_and_nan),
      cmocka_unit_test(test_golden_bytes),
      cmocka_unit_test(test_golden_fingerprint_and_shard),
      cmocka_unit_test(test_buf_max),
      cmocka_unit_test(test_key_json_matches_jansson),
      cmocka_unit_test(test_round_and_timestamps),
  };
  return cmocka_run_group_tests_name("encode", tests, NULL, NULL);
}
