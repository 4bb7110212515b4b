/* SPDX-License-Identifier: MIT */
/* Timed waits on the monotonic clock (see converge/mclock.h). */
#include "converge/mclock.h"

int cvg_cond_init_monotonic(pthread_cond_t *cv) {
  pthread_condattr_t a;
  int rc = pthread_condattr_init(&a);
  if (rc)
    return rc;
  rc = pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  if (rc == 0)
    rc = pthread_cond_init(cv, &a);
  pthread_condattr_destroy(&a);
  return rc;
}

void cvg_deadline_after(struct timespec *ts, double seconds) {
  if (seconds < 0)
    seconds = 0;
  clock_gettime(CLOCK_MONOTONIC, ts);
  time_t whole = (time_t)seconds;
  long nsec = ts->tv_nsec + (long)((seconds - (double)whole) * 1e9);
  ts->tv_sec += whole + nsec / 1000000000L;
  ts->tv_nsec = nsec % 1000000000L;
}

double cvg_mono_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double (*wall_clock)(void); /* atomic; NULL: CLOCK_REALTIME */

double cvg_wall_now(void) {
  double (*c)(void) = __atomic_load_n(&wall_clock, __ATOMIC_ACQUIRE);
  if (c)
    return c();
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void cvg_wall_clock_set(double (*clock)(void)) {
  __atomic_store_n(&wall_clock, clock, __ATOMIC_RELEASE);
}

int cvg_in_utc_window(double now, int start, int end) {
  if (start < 0)
    return 1;
  time_t t = (time_t)now;
  struct tm tm;
  gmtime_r(&t, &tm);
  int min = tm.tm_hour * 60 + tm.tm_min;
  return start < end ? min >= start && min < end : min >= start || min < end;
}
