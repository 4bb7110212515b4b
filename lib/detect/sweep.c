/* SPDX-License-Identifier: MIT */
/*
 * What a full sweep does to the tracker (converge/check.h): each divergence the diff engine
 * reports is recorded under the replica indices of the dataset, and a completed sweep resolves
 * every key it did not see and replaces the shard digests. The caller runs the diff
 * (cvg_diff_run) and holds the tracker's lock around these calls.
 */
#include "converge/check.h"
#include "converge/tracker.h"

#include <string.h>

void cvg_sweep_record(cvg_tracker *tr, const cvg_trk_check *chk, const size_t *idx, size_t k,
                      const cvg_divergence *dv) {
  cvg_keystate ks;
  memset(&ks, 0, sizeof ks);
  for (size_t i = 0; i < k; i++) {
    ks.copies[idx[i]] = dv->copies[i];
    ks.known[idx[i]] = 1;
  }
  cvg_tracker_record(tr, chk, dv->key, dv->key_len, dv->cls, &ks);
}

void cvg_sweep_finish(cvg_tracker *tr, const size_t *idx, size_t k, size_t n_rep, size_t shards,
                      const cvg_diff_summary *sum, int completed, const unsigned char *down) {
  /* Keys tracked but not found divergent by a completed sweep agree now (on the replicas read). */
  cvg_tracker_sweep_end(tr, completed, down);
  if (!completed)
    return;
  unsigned char in[CVG_DIFF_MAX_REPLICAS] = {0};
  for (size_t i = 0; i < k; i++) {
    in[idx[i]] = 1;
    cvg_tracker_set_digest(tr, idx[i], sum->digest + i * shards);
  }
  for (size_t r = 0; r < n_rep; r++)
    if (!in[r])
      cvg_tracker_set_digest(tr, r, NULL);
}
