/* SPDX-License-Identifier: MIT */
/*
 * The lag trend of a replica (lib/detect/trend.c): pure, no threads, no clock of its own - the
 * caller passes every time. The watch keeps one per replica and the alert rules of kind "trend"
 * read its status through the watch's signals.
 */
#ifndef CONVERGE_TREND_H
#define CONVERGE_TREND_H

#include "converge/catalog.h"

#include <stddef.h>
#include <stdint.h>

/* A sliding window of lag samples of one replica and its apply position. */
typedef struct cvg_trend {
  size_t cap, n, head; /* ring of cap samples, n filled, head = next slot */
  double *t;           /* OWNED; sample times */
  double *lag;         /* OWNED; lag seconds */
  int64_t *pos;        /* OWNED; apply position (newest heartbeat sequence seen) */
} cvg_trend;

int cvg_trend_init(cvg_trend *tr, size_t window);
void cvg_trend_free(cvg_trend *tr);
void cvg_trend_add(cvg_trend *tr, double t, double lag, int64_t pos);
/*
 * The status at time now. tolerance is the lag treated as none (a heartbeat interval: the lag of
 * a healthy replica is never exactly 0). In Burrow's order: a window not yet full says nothing
 * (INCOMPLETE); no sample for longer than the window spans, with lag, is STOP; any sample at or
 * below tolerance is OK; an apply position unchanged across the window is STALL; a lag that never
 * decreases and ends higher than it began is WARN; anything else is OK.
 */
cvg_trend_status cvg_trend_eval(const cvg_trend *tr, double now, double tolerance);

#endif
