/* SPDX-License-Identifier: MIT */
/* Timed waits on the monotonic clock, and the regular-file check of named databases. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "converge/fsfile.h"
#include "converge/mclock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A deadline is on CLOCK_MONOTONIC (whatever the wall clock says) and well-formed. */
static void test_deadline(void **state) {
  (void)state;
  const double waits[] = {0, 0.001, 0.5, 0.999999999, 1.5, 30, -1};
  for (size_t i = 0; i < sizeof waits / sizeof *waits; i++) {
    struct timespec before, d;
    clock_gettime(CLOCK_MONOTONIC, &before);
    cvg_deadline_after(&d, waits[i]);
    assert_true(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L);
    double b = (double)before.tv_sec + before.tv_nsec / 1e9;
    double t = (double)d.tv_sec + d.tv_nsec / 1e9;
    double want = waits[i] > 0 ? waits[i] : 0;
    assert_true(t >= b + want - 1e-6);
    assert_true(t < b + want + 5); /* the monotonic clock, not the wall clock (decades ahead) */
  }
}

/* A wait on a monotonic condition variable with a deadline already past returns ETIMEDOUT
 * at once: its deadline is read on the clock it was given. */
static void test_monotonic_wait(void **state) {
  (void)state;
  pthread_cond_t cv;
  pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  assert_int_equal(cvg_cond_init_monotonic(&cv), 0);
  struct timespec d;
  cvg_deadline_after(&d, 0);
  pthread_mutex_lock(&mu);
  assert_int_equal(pthread_cond_timedwait(&cv, &mu, &d), ETIMEDOUT);
  pthread_mutex_unlock(&mu);
  pthread_cond_destroy(&cv);
}

static void test_regular_file(void **state) {
  (void)state;
  char dir[] = "/tmp/cvg-fsfile-XXXXXX"; /* a mkdtemp template */
  assert_non_null(mkdtemp(dir));
  char fifo[100], file[100];
  snprintf(fifo, sizeof fifo, "%s/fifo", dir);
  snprintf(file, sizeof file, "%s/file", dir);
  assert_int_equal(mkfifo(fifo, 0600), 0);
  FILE *f = fopen(file, "w");
  assert_non_null(f);
  fclose(f);
  cvg_error err;
  cvg_error_clear(&err);
  assert_int_equal(cvg_regular_file(file, NULL, "journal", &err), CVG_OK);
  assert_int_equal(cvg_regular_file("/nonexistent/x.db", NULL, "journal", &err), CVG_OK);
  assert_int_equal(cvg_regular_file(fifo, "the-url", "replica", &err), CVG_ENOTDB);
  assert_non_null(strstr(err.msg, "it is a FIFO"));
  assert_string_equal(err.input, "the-url");
  assert_int_equal(cvg_regular_file("/dev/null", NULL, "state file", &err), CVG_ENOTDB);
  assert_non_null(strstr(err.msg, "character device"));
  assert_int_equal(cvg_regular_file(dir, NULL, "replica", &err), CVG_ENOTDB);
  assert_non_null(strstr(err.msg, "directory"));
  unlink(fifo);
  unlink(file);
  rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_deadline),
      cmocka_unit_test(test_monotonic_wait),
      cmocka_unit_test(test_regular_file),
  };
  return cmocka_run_group_tests_name("mclock_fsfile", tests, NULL, NULL);
}
