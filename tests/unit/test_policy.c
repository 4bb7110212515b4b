/* SPDX-License-Identifier: MIT */
/* Repair policies on a table of cases: ties, tombstones, absent rows, three replicas with two
 * agreeing, the authority's absence, manual proposals; and determinism (order does not matter
 * but names do). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "converge/repair.h"

#include <stdio.h>
#include <string.h>

/* a copy: 'a' absent, 'l' live, 't' tombstone; version; content (fingerprint) id */
typedef struct spec {
  char state;
  int64_t version;
  int content;
} spec;

static unsigned char vbuf[8][16];

static void make(const spec *s, size_t n, cvg_copy *c) {
  for (size_t i = 0; i < n; i++) {
    memset(&c[i], 0, sizeof c[i]);
    c[i].state = s[i].state == 'a' ? CVG_ABSENT : s[i].state == 't' ? CVG_TOMBSTONED : CVG_LIVE;
    if (s[i].state != 'a') {
      cvg_buf b;
      cvg_buf_init(&b, 16);
      assert_int_equal(cvg_encode_int(&b, s[i].version), CVG_OK);
      memcpy(vbuf[i], b.data, b.len);
      c[i].version = vbuf[i];
      c[i].version_len = b.len;
      cvg_buf_release(&b);
      c[i].fp.lo = (uint64_t)s[i].content;
    }
  }
}

typedef struct tcase {
  const char *what;
  cvg_policy policy;
  size_t n;
  spec s[3];
  int authority;
  int winner;      /* expected */
  int delete_all;  /* expected */
  const char *why; /* a phrase of the rationale */
} tcase;

static void test_cases(void **state) {
  (void)state;
  static const char *const names[] = {"eu", "us", "ap"};
  static const tcase cases[] = {
      {"lww: the higher version wins",
       CVG_POLICY_LWW,
       2,
       {{'l', 5, 1}, {'l', 7, 2}},
       -1,
       1,
       0,
       "highest version"},
      {"lww: a tie is broken by name order (ap < eu < us)",
       CVG_POLICY_LWW,
       3,
       {{'l', 7, 1}, {'l', 7, 2}, {'l', 7, 3}},
       -1,
       2,
       0,
       "name order: 'ap' sorts before"},
      {"lww: a tombstone beats an older live row",
       CVG_POLICY_LWW,
       2,
       {{'t', 9, 0}, {'l', 8, 1}},
       -1,
       0,
       0,
       "a tombstone"},
      {"lww: a tombstone wins a tie: the delete is not undone",
       CVG_POLICY_LWW,
       2,
       {{'l', 9, 1}, {'t', 9, 0}},
       -1,
       1,
       0,
       "delete is not undone"},
      {"lww: a newer live row beats an older tombstone",
       CVG_POLICY_LWW,
       2,
       {{'t', 3, 0}, {'l', 4, 1}},
       -1,
       1,
       0,
       "highest version"},
      {"lww: an absent row loses to a present one",
       CVG_POLICY_LWW,
       2,
       {{'a', 0, 0}, {'l', 1, 1}},
       -1,
       1,
       0,
       "highest version"},
      {"lww: three replicas, two agreeing on the newest",
       CVG_POLICY_LWW,
       3,
       {{'l', 4, 1}, {'l', 6, 2}, {'l', 6, 2}},
       -1,
       2,
       0,
       "agree at the highest version"},
      {"authority: re-attested even when older",
       CVG_POLICY_AUTHORITY,
       2,
       {{'l', 1, 1}, {'l', 9, 2}},
       0,
       0,
       0,
       "source of truth"},
      {"authority: absent there means deleted everywhere",
       CVG_POLICY_AUTHORITY,
       3,
       {{'l', 2, 1}, {'a', 0, 0}, {'l', 2, 1}},
       1,
       1,
       1,
       "deleted on the other replicas"},
      {"manual: the lww proposal, awaiting approval",
       CVG_POLICY_MANUAL,
       2,
       {{'l', 5, 1}, {'l', 7, 2}},
       -1,
       1,
       0,
       "awaiting approval"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const tcase *t = &cases[i];
    cvg_copy c[3];
    make(t->s, t->n, c);
    cvg_decision d, d2;
    cvg_error err;
    assert_int_equal(cvg_decide(t->policy, c, t->n, names, t->authority, &d, &err), CVG_OK);
    if (d.winner != t->winner || d.delete_all != t->delete_all || !strstr(d.rationale, t->why))
      fail_msg("%s: winner %d delete %d: %s", t->what, d.winner, d.delete_all, d.rationale);
    assert_int_equal(d.manual, t->policy == CVG_POLICY_MANUAL);
    /* deterministic */
    assert_int_equal(cvg_decide(t->policy, c, t->n, names, t->authority, &d2, &err), CVG_OK);
    assert_int_equal(d.winner, d2.winner);
    assert_string_equal(d.rationale, d2.rationale);
  }
}

static void test_refusals(void **state) {
  (void)state;
  static const char *const names[] = {"eu", "us"};
  cvg_copy c[2];
  spec s[2] = {{'l', 1, 1}, {'l', 2, 2}};
  make(s, 2, c);
  cvg_decision d;
  cvg_error err;
  c[0].version_len = 0; /* a row without a version */
  assert_int_equal(cvg_decide(CVG_POLICY_LWW, c, 2, names, -1, &d, &err), CVG_EINVAL);
  assert_non_null(strstr(err.msg, "needs a version"));
  assert_int_equal(cvg_decide(CVG_POLICY_AUTHORITY, c, 2, names, -1, &d, &err), CVG_EINVAL);
  assert_int_equal(cvg_decide(CVG_POLICY_NONE, c, 2, names, 0, &d, &err), CVG_EINVAL);
  assert_int_equal(cvg_policy_parse("lww"), CVG_POLICY_LWW);
  assert_int_equal(cvg_policy_parse("nope"), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cases),
      cmocka_unit_test(test_refusals),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
