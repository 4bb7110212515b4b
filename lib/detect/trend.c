/* SPDX-License-Identifier: MIT */
/*
 * Lag trend statuses over a sliding window of samples, after LinkedIn Burrow's consumer lag
 * evaluation: judged from the shape of the window, not from a threshold, and silent until the
 * window is full. A sample is (time, lag, apply position); the position is the newest heartbeat
 * sequence the replica has applied.
 */
#include "converge/trend.h"

#include <stdlib.h>

int cvg_trend_init(cvg_trend *tr, size_t window) {
  tr->cap = window < 2 ? 2 : window;
  tr->n = tr->head = 0;
  tr->t = calloc(tr->cap, sizeof *tr->t);
  tr->lag = calloc(tr->cap, sizeof *tr->lag);
  tr->pos = calloc(tr->cap, sizeof *tr->pos);
  if (!tr->t || !tr->lag || !tr->pos) {
    cvg_trend_free(tr);
    return CVG_ENOMEM;
  }
  return CVG_OK;
}

void cvg_trend_free(cvg_trend *tr) {
  free(tr->t);
  free(tr->lag);
  free(tr->pos);
  tr->t = tr->lag = NULL;
  tr->pos = NULL;
  tr->n = 0;
}

void cvg_trend_add(cvg_trend *tr, double t, double lag, int64_t pos) {
  if (!tr->t)
    return;
  tr->t[tr->head] = t;
  tr->lag[tr->head] = lag;
  tr->pos[tr->head] = pos;
  tr->head = (tr->head + 1) % tr->cap;
  if (tr->n < tr->cap)
    tr->n++;
}

/* i-th sample, oldest first */
static size_t at(const cvg_trend *tr, size_t i) {
  return (tr->head + tr->cap - tr->n + i) % tr->cap;
}

cvg_trend_status cvg_trend_eval(const cvg_trend *tr, double now, double tolerance) {
  if (!tr->t || tr->n < tr->cap)
    return CVG_TREND_INCOMPLETE;
  size_t first = at(tr, 0), last = at(tr, tr->n - 1);
  double span = tr->t[last] - tr->t[first];
  /* STOP: nothing new for longer than the window spans, and the last known lag is real */
  if (now - tr->t[last] > span && tr->lag[last] > tolerance)
    return CVG_TREND_STOP;
  for (size_t i = 0; i < tr->n; i++)
    if (tr->lag[at(tr, i)] <= tolerance)
      return CVG_TREND_OK;
  if (tr->pos[first] == tr->pos[last])
    return CVG_TREND_STALL;
  for (size_t i = 1; i < tr->n; i++)
    if (tr->lag[at(tr, i)] < tr->lag[at(tr, i - 1)])
      return CVG_TREND_OK;
  return tr->lag[last] > tr->lag[first] ? CVG_TREND_WARN : CVG_TREND_OK;
}
