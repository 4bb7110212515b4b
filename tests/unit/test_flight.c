/* SPDX-License-Identifier: MIT */
/*
 * The chaos lab's record of what each link carries (lib/chaos/flight.c): the judge behind the
 * lab's false-confirmation and in-flight-repair counts. A change queued and not yet delivered is
 * on its way; delivered after the moment asked about, it was on its way then; overwritten by an
 * older change landing later (a reordered or duplicated one), it was not - nothing would mend
 * the key; never queued (dropped, stopped), it never was.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../lib/chaos/flight.h"

static void test_on_way(void **state) {
  (void)state;
  cvgi_flight *f = NULL;
  assert_int_equal(cvgi_flight_new(&f, 3, 100), 0);
  /* queued, not delivered: on its way, whenever asked */
  cvgi_flight_sent(f, 1, 7, 500);
  assert_int_equal(cvgi_flight_on_way(f, 1, 7, 500, 10.0), 1);
  assert_int_equal(cvgi_flight_on_way(f, 2, 7, 500, 10.0), 0); /* another link */
  assert_int_equal(cvgi_flight_on_way(f, 1, 7, 499, 10.0), 0); /* another version */
  /* delivered at 12: on its way at 11, not at 12 or after */
  cvgi_flight_delivered(f, 1, 7, 500, 12.0);
  assert_int_equal(cvgi_flight_on_way(f, 1, 7, 500, 11.0), 1);
  assert_int_equal(cvgi_flight_on_way(f, 1, 7, 500, 12.0), 0);
  /* a reordered pair: 601 lands, then the older 600 on top of it - 601 is not on its way */
  cvgi_flight_sent(f, 1, 8, 601);
  cvgi_flight_sent(f, 1, 8, 600);
  cvgi_flight_delivered(f, 1, 8, 601, 20.0);
  cvgi_flight_delivered(f, 1, 8, 600, 20.0);
  assert_int_equal(cvgi_flight_on_way(f, 1, 8, 601, 19.0), 0);
  /* in order, the newer last: on its way before it landed */
  cvgi_flight_sent(f, 1, 9, 700);
  cvgi_flight_sent(f, 1, 9, 701);
  cvgi_flight_delivered(f, 1, 9, 700, 30.0);
  cvgi_flight_delivered(f, 1, 9, 701, 30.0);
  assert_int_equal(cvgi_flight_on_way(f, 1, 9, 701, 29.0), 1);
  /* a duplicate of the older one landing later spoils it too */
  cvgi_flight_delivered(f, 1, 9, 700, 31.0);
  assert_int_equal(cvgi_flight_on_way(f, 1, 9, 701, 29.0), 0);
  /* never queued (dropped): never on its way; keys and replicas out of range: no */
  assert_int_equal(cvgi_flight_on_way(f, 1, 10, 800, 0.0), 0);
  assert_int_equal(cvgi_flight_on_way(f, 1, 101, 800, 0.0), 0);
  assert_int_equal(cvgi_flight_on_way(f, 3, 7, 500, 0.0), 0);
  cvgi_flight_sent(f, 1, 0, 900); /* ignored */
  assert_int_equal(cvgi_flight_on_way(f, 1, 0, 900, 0.0), 0);
  /* the ring keeps the last four versions of a key */
  for (int64_t v = 1; v <= 5; v++)
    cvgi_flight_sent(f, 2, 5, v);
  assert_int_equal(cvgi_flight_on_way(f, 2, 5, 1, 0.0), 0);
  assert_int_equal(cvgi_flight_on_way(f, 2, 5, 2, 0.0), 1);
  assert_int_equal(cvgi_flight_on_way(f, 2, 5, 5, 0.0), 1);
  cvgi_flight_free(f);
  cvgi_flight_free(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_on_way)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
