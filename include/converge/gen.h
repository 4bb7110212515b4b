/* SPDX-License-Identifier: MIT */
/*
 * Replica generator for tests, demos and benchmarks: M SQLite replicas of a realistic accounts
 * table with a chosen, seeded mix of injected divergences, plus a ground-truth file listing each
 * injected divergence and the class `converge diff --version updated_at --tombstone deleted`
 * (or `--version-vector vclock` with vvec) must report for it.
 *
 * Table (key columns depend on key kind):
 *   int:        id INTEGER PRIMARY KEY
 *   composite:  region TEXT, id INTEGER, PRIMARY KEY (region, id) WITHOUT ROWID
 *   text:       code TEXT PRIMARY KEY  (UTF-8 with non-ASCII characters)
 *   then: owner TEXT, balance INTEGER, currency TEXT, score REAL, updated_at INTEGER,
 *         deleted INTEGER [, vclock TEXT]
 *
 * Injected divergences, each on one randomly chosen victim replica:
 *   missing    the row is left out of the victim                        -> missing
 *   extra      a row exists only on the victim                          -> missing
 *   stale      the victim has an older updated_at (and vector) and balance -> stale
 *   conflict   the victim has the same updated_at, another balance or owner -> conflict
 *              (with vvec: a concurrent vector and a newer updated_at, which last-write-wins
 *              would take for a plain update)
 *   tombstone  the victim has deleted = 1 and a newer updated_at          -> tombstone
 * Everything is a pure function of the options (seed included): the same options give
 * byte-identical files.
 */
#ifndef CONVERGE_GEN_H
#define CONVERGE_GEN_H

#include "converge/status.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cvg_gen_key { CVG_GEN_KEY_INT, CVG_GEN_KEY_COMPOSITE, CVG_GEN_KEY_TEXT } cvg_gen_key;

typedef struct cvg_gen_options {
  const char *dir;   /* output folder (must exist) */
  const char *table; /* table name; NULL: "accounts" */
  uint64_t rows;     /* rows of the shared base table */
  unsigned replicas; /* 2..32 */
  uint64_t seed;     /* everything random derives from it */
  cvg_gen_key key;   /* key shape */
  double nulls;      /* fraction of owner/currency values that are NULL, 0..1 */
  int vvec;          /* add a version-vector column vclock */
  uint64_t n_missing, n_extra, n_stale, n_conflict, n_tombstone; /* injected divergences */
} cvg_gen_options;

/* Writes <dir>/replica-1.db ... replica-M.db and <dir>/truth.jsonl. */
int cvg_gen(const cvg_gen_options *opt, cvg_error *err);

#ifdef __cplusplus
}
#endif
#endif
