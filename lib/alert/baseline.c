/* SPDX-License-Identifier: MIT */
/*
 * Adaptive thresholds: a seasonal baseline of one metric, judged with robust statistics.
 *
 * Each sample lands in its hour-of-week bucket (168) and its hour-of-day bucket (24); a bucket
 * keeps its last CVG_BASELINE_KEEP samples. The baseline at time t is the median of t's weekly
 * bucket, or of its daily bucket while the weekly one has fewer than CVG_BASELINE_MIN samples.
 * The band is k robust standard deviations (1.4826 x the median absolute deviation), and never
 * less than floor: a value is anomalous when it exceeds baseline + band. With a workload
 * intensity the buckets hold value / intensity, so a busy hour is allowed a proportionally
 * higher value. Nothing is judged before `warmup` seconds of history and a filled bucket.
 */
#include "converge/alert.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define INTENSITY_EPS 1e-9

int cvg_baseline_init(cvg_baseline *b) {
  memset(b, 0, sizeof *b);
  b->week = calloc(168, sizeof *b->week);
  b->day = calloc(24, sizeof *b->day);
  if (!b->week || !b->day) {
    cvg_baseline_free(b);
    return CVG_ENOMEM;
  }
  return CVG_OK;
}

void cvg_baseline_free(cvg_baseline *b) {
  free(b->week);
  free(b->day);
  b->week = b->day = NULL;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, size_t n) {
  qsort(v, n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* median and robust deviation of a bucket */
static void stats(const cvg_bl_bucket *bk, double *med, double *sigma) {
  double v[CVG_BASELINE_KEEP], d[CVG_BASELINE_KEEP];
  size_t n = bk->n;
  memcpy(v, bk->v, n * sizeof *v);
  *med = median(v, n);
  for (size_t i = 0; i < n; i++)
    d[i] = fabs(bk->v[i] - *med);
  *sigma = 1.4826 * median(d, n);
}

static void push(cvg_bl_bucket *bk, double v) {
  bk->v[bk->head] = v;
  bk->head = (bk->head + 1) % CVG_BASELINE_KEEP;
  if (bk->n < CVG_BASELINE_KEEP)
    bk->n++;
}

cvg_bl_judgement cvg_baseline_observe(cvg_baseline *b, double t, double v, double intensity,
                                      double k, double floor, double warmup) {
  cvg_bl_judgement j = {0, 0, NAN, NAN};
  if (!b->week || isnan(v))
    return j;
  time_t secs = (time_t)t;
  struct tm tm;
  gmtime_r(&secs, &tm);
  cvg_bl_bucket *wk = &b->week[tm.tm_wday * 24 + tm.tm_hour], *dy = &b->day[tm.tm_hour];
  double scale = 1, x = v;
  if (intensity >= 0) {
    scale = intensity > INTENSITY_EPS ? intensity : INTENSITY_EPS;
    x = v / scale;
  }
  if (b->first_t == 0)
    b->first_t = t;
  const cvg_bl_bucket *use = wk->n >= CVG_BASELINE_MIN ? wk : dy->n >= CVG_BASELINE_MIN ? dy : NULL;
  if (use && t - b->first_t >= warmup) {
    double med, sigma;
    stats(use, &med, &sigma);
    j.warm = 1;
    j.expected = med * scale;
    j.band = k * sigma * scale;
    if (j.band < floor)
      j.band = floor;
    j.anomalous = v > j.expected + j.band;
  }
  /* an anomaly is learned only up to the band's edge: a lasting new level is adopted slowly,
   * a spike does not teach the baseline that it is normal */
  if (j.anomalous)
    x = (j.expected + j.band) / scale;
  push(wk, x);
  push(dy, x);
  b->samples++;
  return j;
}
