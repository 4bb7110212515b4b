/* SPDX-License-Identifier: MIT */
/*
 * Repair: policies decide which copy of a divergent key wins; the repairer journals each decision
 * and its mutations (with before-images) before anything is written, applies them as conditional
 * writes, journals every outcome, resumes unfinished intents after a crash, and reverts or
 * approves decisions. docs/repair.md is the user's page.
 */
#ifndef CONVERGE_REPAIR_H
#define CONVERGE_REPAIR_H

#include "converge/catalog.h"
#include "converge/diff.h"
#include "converge/status.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- policies (lib/repair/policy.c) -------------------------------------------------------- */

/* cvg_policy, its names and cvg_policy_parse are in catalog.h, where datasets name them. */

typedef struct cvg_decision {
  int winner;     /* the replica whose copy every other replica gets; -1 if none */
  int delete_all; /* the winner has no row: the key is deleted on the others */
  int manual;     /* waits for approval */
  char rationale[600];
} cvg_decision;

/*
 * Decides one divergent key from its copies (one per replica, names[i] its replica's name,
 * authority the authority's index or -1). Deterministic: the same copies always give the same
 * decision. Returns CVG_OK, or CVG_EINVAL when the policy cannot decide (lww without versions,
 * authority without an authority) with err saying why.
 */
int cvg_decide(cvg_policy p, const cvg_copy *copies, size_t n, const char *const *names,
               int authority, cvg_decision *out, cvg_error *err);

/* ---- the repairer (lib/repair/repair.c) ---------------------------------------------------- */

typedef struct cvg_repair_stats {
  uint64_t divergent; /* divergent keys found */
  uint64_t decisions; /* decisions journaled */
  uint64_t awaiting;  /* manual decisions waiting for approval */
  uint64_t mutations; /* mutations planned */
  uint64_t applied, skipped, failed;
  uint64_t resumed;  /* unfinished intents found in the journal and settled */
  uint64_t deferred; /* keys (opts.keys) written since they were confirmed: left for later */
  double seconds;
  double journal_seconds; /* of which: building, hashing and durably appending journal records */
  size_t stopped_stage;   /* staged: the stage that did not converge (later ones not run); 0 */
  int interrupted;        /* the run stopped early on opts.cancel (after a whole batch) */
  uint64_t keys_done;     /* divergent keys whose batch was journaled and applied */
  int refused;            /* a safety limit refused the run (CVG_ELIMIT): nothing was applied */
  int64_t run_id;         /* the run's journal record (converge repair revert --run); 0 none */
  uint64_t limit_changes; /* the writes the run planned, as the limits counted them */
  int64_t head_seq;       /* the journal's verified head after the run (0: no journal opened) */
  unsigned char head_hash[32];
} cvg_repair_stats;

/* Receives each line the repairer prints (the plan, progress, outcomes). */
typedef void (*cvg_repair_print)(void *ctx, const char *line);

#define CVG_REPAIR_MAX_CONCURRENCY 64 /* the most shards repaired at once */

typedef struct cvg_repair_opts {
  const cvg_catalog *cat; /* BORROWED */
  size_t dataset;         /* index in cat->datasets */
  long shard;             /* < 0: every shard */
  int execute;            /* 0: dry run (plan only; nothing is opened for writing) */
  double rows_per_sec;    /* > 0: token-bucket limit on applied mutations */
  size_t batch;           /* keys per journal group and transaction; default 2000 */
  int concurrency;        /* > 0: shards repaired at once (else repair.concurrency, default 1) */
  int verbose;            /* print every key's decision (always in a dry run) */
  cvg_repair_print print; /* may be NULL */
  void *print_ctx;
  const int *cancel; /* when set and nonzero (atomic), stops after the current batch */
  int force_limits;  /* run even past repair.max_* (journaled); the CLI's --force-limits only */
  /* When set, only these keys (encoded) are compared - by looking each up on every replica -
   * and repaired, instead of comparing the whole dataset: how converge watch repairs the
   * divergences it has confirmed. Needs execute. */
  const unsigned char *const *keys;
  const size_t *key_lens;
  size_t n_keys;
  /* With keys, optional: per key the newest version the watch confirmed its divergence on
   * (cvg_tracked_newest; length 0: none). A key found with a newer version on any replica was
   * written since: the write may be on its way to the replicas that lack it, so the key is left
   * for the watch to confirm again (counted in stats.deferred), never raced. */
  const unsigned char *const *key_newest;
  const size_t *key_newest_lens;
  int ignore_window; /* 1: run even outside the dataset's repair window */
  /* Called after each batch with keys done and total (progress bars); may be NULL. */
  void (*progress)(void *ctx, size_t done, size_t total, const cvg_repair_stats *stats);
} cvg_repair_opts;

/* Compares the dataset's replicas now and repairs what differs per its policy. */
int cvg_repair_run(const cvg_repair_opts *o, cvg_repair_stats *stats, cvg_error *err);

/* Deletes, on every replica, the tombstones that are identical everywhere and whose version
 * (read as time per repair.version_clock) is older than repair.tombstone_grace: journaled and
 * conditional as any repair, and revertible. A dry run (execute 0) only lists them. */
int cvg_repair_purge(const cvg_repair_opts *o, cvg_repair_stats *stats, cvg_error *err);

/* Restores the before-images of decision id's applied mutations, conditionally (a row changed
 * since is left alone and reported). */
int cvg_repair_revert(const cvg_catalog *cat, int64_t decision, cvg_repair_print print,
                      void *print_ctx, cvg_repair_stats *stats, cvg_error *err);
/* Reverts every applied, not yet reverted mutation of one run (its id: the run's journal record,
 * printed by the run and listed by converge audit show --kind run), in one journal group. */
int cvg_repair_revert_run(const cvg_catalog *cat, int64_t run, cvg_repair_print print,
                          void *print_ctx, cvg_repair_stats *stats, cvg_error *err);

/* Approves (applies, conditionally) or rejects a manual decision. by and note are recorded. */
int cvg_repair_approve(const cvg_catalog *cat, int64_t decision, int approve, const char *by,
                       const char *note, cvg_repair_print print, void *print_ctx,
                       cvg_repair_stats *stats, cvg_error *err);

#ifdef __cplusplus
}
#endif
#endif
