/* SPDX-License-Identifier: MIT */
/*
 * The likely cause of a divergence: the writer or pipeline (the dataset's origin column) that
 * most divergent rows share. Up to ORIGIN_SAMPLES confirmed keys are each read on the replica
 * whose copy differs from the authority's (or, without an authority, the one with the greatest
 * version); the answer goes to ds->origin_note for the alerts' likely_cause annotation
 * (signals.c).
 *
 * Threading: run by the sweep jobs (jobs.c) on the connections they hold (opened if missing and
 * left open for the job), right after a sweep that confirmed keys and otherwise at most every
 * ORIGIN_EVERY seconds - never by the alert evaluation, which shares its pool with the
 * heartbeats. It reads the replicas, so never under ds->mu; it takes ds->mu only to choose the
 * keys and to store the note.
 */
#include "converge/encode.h"
#include "converge/mclock.h"
#include "converge/store.h"
#include "converge/tracker.h"
#include "watch_int.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ORIGIN_SAMPLES 20
#define ORIGIN_EVERY 10.0 /* seconds between likely-cause lookups */

/* A divergent key whose origin is looked up: on the replica holding the divergent copy. */
typedef struct origin_probe {
  unsigned char key[512];
  size_t key_len;
  size_t rep;
} origin_probe;

/* The writers seen, with how many sampled rows each wrote. */
typedef struct origin_tally {
  char names[ORIGIN_SAMPLES][96];
  size_t counts[ORIGIN_SAMPLES];
  size_t n_names, looked;
} origin_tally;

/* Whether a lookup is due now (ds->mu held): new confirmations, or ORIGIN_EVERY passed. */
static int lookup_due(dset *ds) {
  double now = cvg_mono_now();
  cvg_trk_stats ts;
  cvg_tracker_stats(ds->trk, &ts);
  int fresh = ts.confirmations != ds->origin_seen; /* new confirmations: look at once */
  int due = ts.tracked && (fresh || ds->origin_at == 0 || now - ds->origin_at >= ORIGIN_EVERY);
  if (due) {
    ds->origin_at = now;
    ds->origin_seen = ts.confirmations;
  }
  if (!ts.tracked)
    ds->origin_note[0] = '\0';
  return due;
}

/* The replica holding t's divergent copy, or SIZE_MAX. */
static size_t divergent_replica(const dset *ds, const cvg_tracked *t) {
  int auth = ds->cfg->authority;
  size_t best = SIZE_MAX;
  for (size_t i = 0; i < ds->n; i++) {
    if (t->rstates[i] != 1 || (int)i == auth)
      continue;
    if (auth >= 0 && memcmp(&t->contrib[i], &t->contrib[auth], sizeof t->contrib[i]) == 0)
      continue;
    if (best == SIZE_MAX) {
      best = i;
    } else {
      size_t lb, li;
      const unsigned char *vb = cvg_tracked_version(t, best, &lb);
      const unsigned char *vi = cvg_tracked_version(t, i, &li);
      if (cvg_key_compare(vi, li, vb, lb) > 0)
        best = i;
    }
  }
  return best;
}

/* Up to ORIGIN_SAMPLES confirmed keys into pr, each with its replica (ds->mu held). */
static size_t pick_samples(const dset *ds, origin_probe *pr) {
  size_t n = 0, cur = 0;
  for (const cvg_tracked *t; (t = cvg_tracker_next(ds->trk, &cur)) && n < ORIGIN_SAMPLES;) {
    if (!t->confirmed || t->key_len > sizeof pr[n].key)
      continue;
    size_t best = divergent_replica(ds, t);
    if (best == SIZE_MAX)
      continue;
    memcpy(pr[n].key, t->key, t->key_len);
    pr[n].key_len = t->key_len;
    pr[n].rep = best;
    n++;
  }
  return n;
}

/* Counts the writer of value v (text, integer or none); other types are not counted. */
static void tally(origin_tally *ot, const cvg_value *v) {
  char name[96];
  if (v->type == CVG_TEXT)
    snprintf(name, sizeof name, "%.*s", (int)(v->u.s.n < 90 ? v->u.s.n : 90),
             (const char *)v->u.s.p);
  else if (v->type == CVG_INTEGER)
    snprintf(name, sizeof name, "%lld", (long long)v->u.i);
  else if (v->type == CVG_NULL)
    snprintf(name, sizeof name, "(none)");
  else
    return;
  ot->looked++;
  size_t i = 0;
  while (i < ot->n_names && strcmp(ot->names[i], name) != 0)
    i++;
  if (i == ot->n_names)
    memcpy(ot->names[ot->n_names++], name, sizeof name);
  ot->counts[i]++;
}

/* Reads the origin column of each sampled key on its replica. No lock: it reads replicas. */
static void read_origins(dset *ds, cvg_store **sts, const origin_probe *pr, size_t n,
                         origin_tally *ot) {
  const cvg_cat_dataset *cfg = ds->cfg;
  cvg_table_desc desc;
  memset(&desc, 0, sizeof desc);
  const char *pk[16];
  size_t n_pk = 0;
  cvg_buf out, scratch;
  cvg_buf_init(&out, 1u << 20);
  cvg_buf_init(&scratch, 1u << 20);
  for (size_t k = 0; k < n; k++) {
    size_t r = pr[k].rep;
    cvg_error err;
    cvg_error_clear(&err);
    if (!sts[r] && cvgi_ensure_open(&sts[r], &ds->reps[r], CVG_STORE_READONLY, &err) != CVG_OK)
      continue;
    if (cfg->n_key == 0 && n_pk == 0) { /* the table's primary key, as diff discovers it */
      if (cvg_store_describe(sts[r], &desc, &err) != CVG_OK)
        break;
      for (int pos = 1; pos <= 16; pos++)
        for (size_t c = 0; c < desc.n_cols; c++)
          if (desc.cols[c].pk == pos)
            pk[n_pk++] = desc.cols[c].name;
      if (!n_pk)
        break;
    }
    cvg_scan_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.key_cols = cfg->n_key ? (const char *const *)cfg->key : pk;
    spec.n_key = cfg->n_key ? cfg->n_key : n_pk;
    const char *cols[1] = {cfg->origin};
    int found = 0;
    cvg_buf_reset(&out);
    if (cvg_store_fetch(sts[r], &spec, pr[k].key, pr[k].key_len, cols, 1, &out, &found, &err) !=
            CVG_OK ||
        !found)
      continue;
    cvg_value v;
    size_t nv = 0;
    cvg_buf_reset(&scratch);
    if (cvg_decode_tuple(out.data, out.len, &v, 1, &nv, &scratch) == CVG_OK && nv == 1)
      tally(ot, &v);
  }
  cvg_table_desc_release(&desc);
  cvg_buf_release(&out);
  cvg_buf_release(&scratch);
}

void cvgi_origin_cause(dset *ds, cvg_store **sts) {
  const cvg_cat_dataset *cfg = ds->cfg;
  if (!cfg->origin)
    return;
  pthread_mutex_lock(&ds->mu);
  int due = lookup_due(ds);
  pthread_mutex_unlock(&ds->mu);
  if (!due)
    return;
  origin_probe *pr = calloc(ORIGIN_SAMPLES, sizeof *pr);
  origin_tally *ot = calloc(1, sizeof *ot);
  if (!pr || !ot) {
    free(pr);
    free(ot);
    return;
  }
  pthread_mutex_lock(&ds->mu);
  size_t n = pick_samples(ds, pr);
  pthread_mutex_unlock(&ds->mu);
  read_origins(ds, sts, pr, n, ot);
  free(pr);
  size_t top = 0;
  for (size_t i = 1; i < ot->n_names; i++)
    if (ot->counts[i] > ot->counts[top])
      top = i;
  pthread_mutex_lock(&ds->mu);
  if (ot->looked)
    snprintf(ds->origin_note, sizeof ds->origin_note,
             "origin '%s' wrote %zu of %zu sampled divergent rows (column %s)", ot->names[top],
             ot->counts[top], ot->looked, cfg->origin);
  else
    ds->origin_note[0] = '\0';
  pthread_mutex_unlock(&ds->mu);
  free(ot);
}
