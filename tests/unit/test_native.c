/* SPDX-License-Identifier: MIT */
/*
 * The engine's own position (lib/watch/native.c): the authority's WAL positions noted at each
 * heartbeat, and where a replica's LSN falls among them - the newest time whose LSN it has
 * reached, never one it has not (older than all: -infinity, empty ring: unknown); a ring that forgets its oldest entries and refuses an LSN going
 * back; and the check that a subscription is one of the authority's own walsenders.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../lib/watch/watch_int.h"

#include <math.h>
#include <stdlib.h>

static void test_lsn_ring(void **state) {
  (void)state;
  dset *ds = calloc(1, sizeof *ds);
  assert_non_null(ds);
  assert_true(isnan(cvgi_lsn_time(ds, 1000))); /* nothing noted yet */
  cvgi_lsn_push(ds, 10.0, 100);
  cvgi_lsn_push(ds, 10.5, 200);
  cvgi_lsn_push(ds, 11.0, 200); /* no WAL in between: the same LSN, a later time */
  cvgi_lsn_push(ds, 11.5, 300);
  /* before the first: known to be behind everything noted (before any key converge has seen),
   * never a guess */
  assert_true(isinf(cvgi_lsn_time(ds, 99)) && cvgi_lsn_time(ds, 99) < 0);
  assert_true(cvgi_lsn_time(ds, 100) == 10.0);
  assert_true(cvgi_lsn_time(ds, 250) == 11.0); /* reached 200: all before 11.0 */
  assert_true(cvgi_lsn_time(ds, 300) == 11.5);
  assert_true(cvgi_lsn_time(ds, 1u << 30) == 11.5);
  cvgi_lsn_push(ds, 12.0, 250); /* going back (another server): refused */
  assert_true(cvgi_lsn_time(ds, 1u << 30) == 11.5);
  /* the ring forgets the oldest: LSN_RING more entries push 100..300 out */
  for (size_t i = 0; i < LSN_RING; i++)
    cvgi_lsn_push(ds, 20.0 + (double)i, 1000 + i);
  assert_int_equal(ds->lsn_n, LSN_RING);
  assert_true(isinf(cvgi_lsn_time(ds, 300)) && cvgi_lsn_time(ds, 300) < 0);
  assert_true(cvgi_lsn_time(ds, 1000) == 20.0);
  assert_true(cvgi_lsn_time(ds, 1000 + LSN_RING) == 20.0 + (double)(LSN_RING - 1));
  free(ds);
}

static void test_sender_named(void **state) {
  (void)state;
  assert_true(cvgi_sender_named("sub", "sub"));
  assert_true(cvgi_sender_named("a,sub,walreceiver", "sub"));
  assert_true(cvgi_sender_named("a,sub", "sub"));
  assert_false(cvgi_sender_named("a,subx", "sub"));
  assert_false(cvgi_sender_named("su,b", "sub"));
  assert_false(cvgi_sender_named("", "sub"));
  assert_false(cvgi_sender_named("sub", ""));
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_lsn_ring),
                                     cmocka_unit_test(test_sender_named)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
