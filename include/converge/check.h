/* SPDX-License-Identifier: MIT */
/*
 * The two checks the watch runs on a dataset, as detection: they read replicas and record what
 * they find in the dataset's tracker (converge/tracker.h), and nothing more - no alert, no
 * repair, no log, no lock of their own.
 *
 * Incremental check (lib/detect/check.c), for a table with a version column: each replica's rows
 * with version >= its watermark (the greatest version seen so far) are read through an index on
 * the version column, every tracked key is added, and each of these keys is looked up on the
 * replicas that did not yield it; so a re-check after k changes costs O(k) lookups. It runs in
 * four phases, so that the caller holds the tracker's lock for memory work only:
 *
 *   cvg_check_read     no lock     the rows past each watermark, one thread per replica
 *   cvg_check_gather   tracker's   keys to compare: the changed ones (a key whose copies agree
 *                      lock held   everywhere and that is not tracked is only counted) and the
 *                                  tracked ones
 *   cvg_check_lookup   no lock     each key on the replicas that did not yield it
 *   cvg_check_record   tracker's   classify every key and record it
 *                      lock held
 *
 * Full sweep (lib/detect/sweep.c): the diff engine reads everything (cvg_diff_run); each
 * divergence it reports goes to cvg_sweep_record, and cvg_sweep_finish then replaces the tracked
 * set and the shard digests. It catches what versions cannot show: hard deletes and silent
 * corruption.
 *
 * Threading: a cvg_check belongs to one thread (the caller's); cvg_check_read starts a reader per
 * replica and joins them before it returns. The stores are the caller's connections, used by no
 * one else while a phase runs.
 */
#ifndef CONVERGE_CHECK_H
#define CONVERGE_CHECK_H

#include "converge/diff.h"
#include "converge/status.h"
#include "converge/store.h"
#include "converge/tracker.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CVG_CHECK_MAX_CHANGED (1u << 20) /* more changed keys than this: CVG_ETOOBIG */
#define CVG_CHECK_WM_MAX 256             /* the longest watermark (a version) kept */

/* One replica of an incremental check. */
typedef struct cvg_check_replica {
  cvg_store *st;                      /* BORROWED: the caller's connection */
  size_t index;                       /* the replica's index in the dataset (and in the tracker) */
  unsigned char wm[CVG_CHECK_WM_MAX]; /* in: its watermark; wm_len 0: not read (no sweep yet) */
  size_t wm_len;
  unsigned char new_wm[CVG_CHECK_WM_MAX]; /* out: the greatest version read */
  size_t new_wm_len;
  uint64_t rows; /* out: rows read past the watermark */
} cvg_check_replica;

typedef struct cvg_check cvg_check;

/* A check of n_rep replicas reading spec's columns (spec->since is set per replica); versioned:
 * the table has a version column (without one, only the tracked keys are re-checked). name names
 * the dataset in messages. spec and name are borrowed for the check's life. */
int cvg_check_new(cvg_check **out, const cvg_scan_spec *spec, int versioned, size_t n_rep,
                  const char *name, cvg_error *err);
void cvg_check_free(cvg_check *c);

/* Phase 1, no lock: reads the rows past each watermark of reps[0..k). On a replica's read
 * failure returns its status and sets *failed to its position x in reps (else -1); CVG_ETOOBIG
 * when more than CVG_CHECK_MAX_CHANGED keys changed (the caller then wants a full sweep). */
int cvg_check_read(cvg_check *c, cvg_check_replica *reps, size_t k, int *failed, cvg_error *err);

/* Phase 2, the tracker's lock held: the keys to compare, the tracked ones among them.
 * CVG_ETOOBIG as for cvg_check_read. */
int cvg_check_gather(cvg_check *c, const cvg_tracker *tr, cvg_error *err);

/* Phase 3, no lock: looks each key up where the reads did not yield it, a replica at a time in
 * one read transaction. On failure *failed is the position of the replica (else -1). */
int cvg_check_lookup(cvg_check *c, int *failed, cvg_error *err);

/* Phase 4, the tracker's lock held: classifies every key and records in tr what is divergent or
 * was tracked. Returns how many keys were compared (agreeing changed keys included). */
uint64_t cvg_check_record(cvg_check *c, cvg_tracker *tr, const cvg_trk_check *chk);

/* A full sweep's divergence dv (over diff inputs idx[0..k): input x is replica idx[x]), recorded
 * in tr; the tracker's lock held. */
void cvg_sweep_record(cvg_tracker *tr, const cvg_trk_check *chk, const size_t *idx, size_t k,
                      const cvg_divergence *dv);

/* The end of a full sweep over replicas idx[0..k) of n_rep, the tracker's lock held. completed:
 * the sweep read every row (keys tracked but not seen agree now, except where down[r] says the
 * replica was not read); then each replica read gets the sweep's shard digests (sum->digest,
 * `shards` per input) and the others none. */
void cvg_sweep_finish(cvg_tracker *tr, const size_t *idx, size_t k, size_t n_rep, size_t shards,
                      const cvg_diff_summary *sum, int completed, const unsigned char *down);

#ifdef __cplusplus
}
#endif

#endif
