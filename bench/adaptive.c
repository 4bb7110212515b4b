/* SPDX-License-Identifier: MIT */
/*
 * Adaptive thresholds against a fixed threshold, on synthetic seasonal replication lag.
 *
 * Three weeks of lag, one sample a minute: a daily shape (busy 08:00-20:00 UTC, quiet at night),
 * quieter weekends, a write rate that drives the lag, and noise. Weeks 1-2 teach the baseline
 * (the adaptive rule's warm-up); week 3 is judged. Into week 3 go ANOMALIES lag excursions of
 * 10-40 minutes, each +1.5 s to +4 s above what the hour would have, at random times of day.
 *
 * Both detectors see the same samples:
 *   adaptive  converge's cvg_baseline_observe (lib/alert/baseline.c), k = 4, floor 0.5 s, the
 *             code a rule with `threshold: adaptive` runs; also with the write rate as intensity
 *   fixed     lag > T, with T the lowest threshold (0.05 s steps) whose false alarms in week 3
 *             are no more than the adaptive rule's: the same false-alarm budget
 * Scoring: an anomaly is found when an alerting minute falls inside it (recall = anomalies found /
 * anomalies); precision = alerting minutes inside anomalies / all alerting minutes; the false
 * alarms are the alerting minutes outside any anomaly, which is the budget both get. Alert
 * episodes (runs of alerting minutes) that touch no anomaly are shown as well.
 * Five seeds; the median of each figure is printed with the ratio adaptive / fixed.
 *
 * usage: adaptive [SEEDS]
 */
#include "converge/alert.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MINUTES (21 * 24 * 60)
#define EVAL_FROM (14 * 24 * 60)
#define ANOMALIES 20

static uint64_t rng;
static double uni(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}
static double gauss(void) {
  double u = uni() + 1e-12, v = uni();
  return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

typedef struct series {
  double lag[MINUTES], rate[MINUTES];
  int anomaly[MINUTES]; /* index + 1 of the anomaly covering the minute, 0 none */
} series;

static void generate(series *s, uint64_t seed) {
  rng = seed * 0x9E3779B97F4A7C15ull + 1;
  for (int m = 0; m < MINUTES; m++) {
    int day = (m / 1440) % 7, minute = m % 1440; /* day 0 = Monday */
    double h = minute / 60.0;
    double shape = 0.15 + 0.85 * exp(-pow((h - 14) / 4.5, 2)); /* peak mid-afternoon */
    if (day >= 5)
      shape *= 0.4;
    s->rate[m] = 2000 * shape * (1 + 0.05 * gauss());
    s->lag[m] = 0.3 + 0.002 * s->rate[m] * (1 + 0.12 * gauss()) + 0.05 * fabs(gauss());
    s->anomaly[m] = 0;
  }
  for (int a = 0; a < ANOMALIES; a++) {
    int len = 10 + (int)(uni() * 31);
    int start = EVAL_FROM + (int)(uni() * (MINUTES - EVAL_FROM - len));
    double add = 1.5 + uni() * 2.5;
    for (int m = start; m < start + len; m++) {
      s->lag[m] += add;
      s->anomaly[m] = a + 1;
    }
  }
}

typedef struct score {
  int found, episodes, true_episodes, false_episodes;
  int true_minutes, false_minutes;
  double precision, recall;
} score;

static score judge(const series *s, const unsigned char *alert) {
  score sc;
  memset(&sc, 0, sizeof sc);
  int found[ANOMALIES + 1] = {0};
  for (int m = EVAL_FROM; m < MINUTES; m++) {
    if (alert[m] && s->anomaly[m])
      found[s->anomaly[m]] = 1;
    if (alert[m]) {
      if (s->anomaly[m])
        sc.true_minutes++;
      else
        sc.false_minutes++;
    }
    if (alert[m] && (m == EVAL_FROM || !alert[m - 1])) { /* an episode starts */
      int e = m, hit = 0;
      while (e < MINUTES && alert[e])
        hit |= s->anomaly[e++] != 0;
      sc.episodes++;
      if (hit)
        sc.true_episodes++;
      else
        sc.false_episodes++;
    }
  }
  int present = 0;
  for (int a = 1; a <= ANOMALIES; a++) {
    int exists = 0;
    for (int m = EVAL_FROM; m < MINUTES && !exists; m++)
      exists = s->anomaly[m] == a;
    present += exists;
    sc.found += found[a];
  }
  sc.recall = present ? (double)sc.found / present : 0;
  int alerting = sc.true_minutes + sc.false_minutes;
  sc.precision = alerting ? (double)sc.true_minutes / alerting : 1;
  return sc;
}

static void adaptive(const series *s, int with_intensity, unsigned char *alert) {
  cvg_baseline b;
  if (cvg_baseline_init(&b) != CVG_OK)
    exit(2);
  double t0 = 1795651200; /* a Monday, 00:00 UTC */
  for (int m = 0; m < MINUTES; m++) {
    cvg_bl_judgement j = cvg_baseline_observe(&b, t0 + 60.0 * m, s->lag[m],
                                              with_intensity ? s->rate[m] : -1, 4, 0.5, 86400);
    alert[m] = j.warm && j.anomalous;
  }
  cvg_baseline_free(&b);
}

static score fixed_for_budget(const series *s, int budget, unsigned char *alert, double *t_out) {
  score sc;
  memset(&sc, 0, sizeof sc);
  for (double t = 0.05; t < 20; t += 0.05) {
    for (int m = 0; m < MINUTES; m++)
      alert[m] = s->lag[m] > t;
    sc = judge(s, alert);
    if (sc.false_minutes <= budget) {
      *t_out = t;
      return sc;
    }
  }
  *t_out = NAN;
  return sc;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}
static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv) {
  int seeds = argc > 1 ? atoi(argv[1]) : 5;
  if (seeds < 3 || seeds > 99) {
    fprintf(stderr, "usage: adaptive [SEEDS (3-99)]\n");
    return 2;
  }
  series *s = malloc(sizeof *s);
  unsigned char *alert = malloc(MINUTES);
  if (!s || !alert)
    return 2;
  double ap[99], ar[99], ip[99], ir[99], fp[99], fr[99], fa[99], thr[99];
  printf("adaptive vs fixed threshold: 3 weeks of seasonal lag, 1 sample/min, %d anomalies in "
         "week 3\n",
         ANOMALIES);
  printf("%-5s %-34s %-30s %s\n", "seed", "adaptive P / R (false alarms)",
         "adaptive+rate P / R (false)", "fixed P / R at T (same budget)");
  for (int k = 0; k < seeds; k++) {
    generate(s, (uint64_t)k + 1);
    adaptive(s, 0, alert);
    score a = judge(s, alert);
    adaptive(s, 1, alert);
    score i = judge(s, alert);
    double t;
    score f = fixed_for_budget(s, a.false_minutes, alert, &t);
    printf(
        "%-5d %.3f / %.3f (%3d min, %2d ep)  %.3f / %.3f (%3d min)     %.3f / %.3f at %.2f s (%3d "
        "min, %2d ep)\n",
        k + 1, a.precision, a.recall, a.false_minutes, a.false_episodes, i.precision, i.recall,
        i.false_minutes, f.precision, f.recall, t, f.false_minutes, f.false_episodes);
    ap[k] = a.precision;
    ar[k] = a.recall;
    ip[k] = i.precision;
    ir[k] = i.recall;
    fp[k] = f.precision;
    fr[k] = f.recall;
    fa[k] = a.false_minutes;
    thr[k] = t;
  }
  double mar = median(ar, seeds), mfr = median(fr, seeds);
  printf("median: adaptive precision %.3f recall %.3f; adaptive with write rate precision %.3f "
         "recall %.3f;\n        fixed (T median %.2f s, false-alarm minutes <= adaptive's, median "
         "%.0f) "
         "precision %.3f recall %.3f\n",
         median(ap, seeds), mar, median(ip, seeds), median(ir, seeds), median(thr, seeds),
         median(fa, seeds), median(fp, seeds), mfr);
  printf("recall ratio adaptive / fixed: %.2fx\n", mfr > 0 ? mar / mfr : INFINITY);
  free(s);
  free(alert);
  return 0;
}
