/* SPDX-License-Identifier: MIT */
/*
 * converge's clocks: the monotonic one for every wait, due time and duration, the wall one for
 * what is stored and shown. Timed waits on the monotonic clock. A condition variable's deadline is measured on
 * CLOCK_REALTIME unless told otherwise, so a wall-clock step back (NTP, an operator, a VM
 * resumed) would stretch every wait by the size of the step; these waits ignore the wall clock.
 */
#ifndef CONVERGE_MCLOCK_H
#define CONVERGE_MCLOCK_H

#include <pthread.h>
#include <time.h>

/* pthread_cond_init with CLOCK_MONOTONIC deadlines; 0 or an errno value. */
int cvg_cond_init_monotonic(pthread_cond_t *cv);
/* The CLOCK_MONOTONIC deadline `seconds` from now, for pthread_cond_timedwait on such a cv. */
void cvg_deadline_after(struct timespec *ts, double seconds);

/* Monotonic seconds (CLOCK_MONOTONIC): for durations, due times and deadlines. */
double cvg_mono_now(void);
/* Wall-clock seconds since the epoch, for what is stored and shown (heartbeat times, alert
 * times): CLOCK_REALTIME, or the clock cvg_wall_clock_set gave. Nothing waits on it. */
double cvg_wall_now(void);
/* Replaces the wall clock (NULL: the real one again), process-wide: a test steps it back or
 * forward and checks that no schedule moves. */
void cvg_wall_clock_set(double (*clock)(void));

/* Whether wall time `now` falls in the daily UTC window [start, end) given in minutes after
 * midnight (a window with start > end spans midnight); start < 0: no window, always inside. The
 * full sweep's and the repair's windows. */
int cvg_in_utc_window(double now, int start, int end);

#endif
