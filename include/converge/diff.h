/* SPDX-License-Identifier: MIT */
/*
 * The diff engine: compares N >= 2 replicas of one table and reports every key on which they
 * disagree, with its class.
 *
 * How: one reader thread per replica scans it in canonical key order and hands rows to the
 * merging thread in fixed-size batches through a bounded ring (so memory does not grow with the
 * table); the merging thread walks the N sorted streams like a merge sort, and for each key
 * gathers every replica's state (absent, tombstone, or live with version and fingerprint) and
 * classifies it. Divergent keys go to a callback as they are found.
 *
 * Classes (decided by cvg_classify(), in this order of precedence):
 *   tombstone  live on some replicas, tombstoned on others
 *   missing    live on some replicas, absent on others
 *   conflict   live everywhere, and two copies with the same version (or version vector, or no
 *              version at all) have different fingerprints; or version vectors are concurrent
 *   stale      live everywhere, versions differ (or one vector dominates another), and copies
 *              with equal versions agree
 * A key absent or tombstoned on every replica is not a divergence (deleted everywhere; a purged
 * tombstone is not a difference).
 *
 * Threading: a cvg_diff belongs to the thread that created it; it starts its own readers.
 */
#ifndef CONVERGE_DIFF_H
#define CONVERGE_DIFF_H

#include "converge/catalog.h"
#include "converge/encode.h"
#include "converge/status.h"
#include "converge/store.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CVG_DIFF_MAX_REPLICAS 32
#define CVG_DIFF_MAX_SHARDS 65536

typedef enum cvg_class {
  CVG_CLASS_NONE = 0,
  CVG_CLASS_MISSING,
  CVG_CLASS_STALE,
  CVG_CLASS_CONFLICT,
  CVG_CLASS_TOMBSTONE,
  CVG_CLASS__COUNT
} cvg_class;

const char *cvg_class_name(cvg_class c); /* "missing", ...; "none" for CVG_CLASS_NONE */

typedef enum cvg_rstate { CVG_ABSENT = 0, CVG_LIVE, CVG_TOMBSTONED } cvg_rstate;

/* One replica's copy of a key. Pointers BORROWED for the duration of the callback. */
typedef struct cvg_copy {
  cvg_rstate state;             /* absent, live or tombstoned */
  cvg_fp fp;                    /* fingerprint of the compared columns (not for absent) */
  const unsigned char *version; /* encoded version; version_len 0 when none */
  size_t version_len;
  const unsigned char *vvec; /* version vector JSON as stored; vvec_len 0 when none */
  size_t vvec_len;
  int newest; /* set by cvg_classify: 1 if no other live copy is newer */
} cvg_copy;

/* Version vector order (lib/detect/vvec.c). */
typedef enum cvg_vv_order {
  CVG_VV_EQUAL,
  CVG_VV_BEFORE,
  CVG_VV_AFTER,
  CVG_VV_CONCURRENT
} cvg_vv_order;

/*
 * Compares two version vectors, each a JSON object mapping a writer to a non-negative integer
 * counter (an absent writer counts as 0). *order is a's relation to b. CVG_EJSON if either is
 * not such an object.
 */
int cvg_vv_compare(const char *a, size_t na, const char *b, size_t nb, cvg_vv_order *order,
                   cvg_error *err);

/*
 * Classifies one key from its copies (n >= 2). use_version: compare versions; use_vvec: compare
 * version vectors (takes precedence over versions). Sets each copy's newest flag. Returns the
 * class, or a negative status (-CVG_EJSON) when a version vector cannot be parsed.
 */
int cvg_classify(cvg_copy *copies, size_t n, int use_version, int use_vvec, cvg_error *err);

typedef struct cvg_divergence {
  const unsigned char *key; /* encoded key; BORROWED for the callback */
  size_t key_len;
  uint32_t shard;  /* shard of the key */
  cvg_class cls;   /* never CVG_CLASS_NONE */
  size_t n_copies; /* one per replica, in the order the replicas were given */
  const cvg_copy *copies;
} cvg_divergence;

/* What to compare. Column lists are arrays of names; NULL/0 means "the default". */
typedef struct cvg_diff_options {
  const char *const *urls; /* the replicas; 2..CVG_DIFF_MAX_REPLICAS */
  size_t n_urls;
  const char *const *key_cols; /* default: the primary key of the first replica */
  size_t n_key;
  const char *const *columns; /* default: every non-key column (of any replica) */
  size_t n_columns;
  const char *const *exclude; /* removed from the compared columns */
  size_t n_exclude;
  const char *version_col;   /* NULL: none */
  const char *tombstone_col; /* NULL: none */
  const char *vvec_col;      /* NULL: none */
  const char *where;         /* NULL: all rows */
  uint32_t n_shards;         /* >= 1 */
  int real_digits;           /* > 0: compare reals rounded to this many digits (store.h) */
  int time_digits;           /* > 0: compare timestamps at time_digits - 1 digits (store.h) */
  int stop_at_first;         /* 1: stop at the first divergence (for --quiet) */
  int digests;               /* 1: also compute every replica's shard digests (encode.h) */
  double rows_per_sec;       /* > 0: each reader reads at most this many rows per second */
  const int *cancel;         /* when set and *cancel becomes nonzero (stored atomically, e.g. with
                        __atomic_store_n), the run stops early */
  /* BORROWED, optional: the replicas' tables as the caller has just described them, in urls'
   * order. No connection is opened: the diff only settles the key and compared columns and the
   * schema drift (for callers that read rows themselves, such as the monitor's incremental
   * check), and cvg_diff_run refuses with CVG_EINVAL. */
  const cvg_table_desc *described;
} cvg_diff_options;

/* Options as a catalog dataset gives them: key, compared and excluded columns, version,
 * tombstone, shards, real and time digits; everything else zero. The caller adds the URLs and
 * what is its own (digests, a rate, cancel, described tables). */
void cvg_diff_options_from_dataset(cvg_diff_options *o, const cvg_cat_dataset *d);

typedef struct cvg_diff_summary {
  uint64_t rows[CVG_DIFF_MAX_REPLICAS]; /* rows read from each replica */
  uint64_t keys;                        /* distinct keys seen */
  uint64_t divergent;                   /* divergent keys */
  uint64_t by_class[CVG_CLASS__COUNT];  /* divergent keys per class */
  uint64_t *by_shard;                   /* n_shards counters; OWNED by the diff */
  uint32_t n_shards;
  int stopped_early; /* 1 if stop_at_first or the callback stopped it */
  /* With digests: replica i's digest of shard s is digest[i * n_shards + s]. OWNED by the diff;
   * NULL without digests. */
  cvg_fp *digest;
  /* The greatest encoded version read from each replica (a watermark for incremental scans);
   * length 0 when none. OWNED by the diff, valid until the next run or cvg_diff_free. */
  const unsigned char *max_version[CVG_DIFF_MAX_REPLICAS];
  size_t max_version_len[CVG_DIFF_MAX_REPLICAS];
} cvg_diff_summary;

typedef struct cvg_diff cvg_diff;

/* Callback for each divergent key, on the calling thread. Return nonzero to stop the diff. */
typedef int (*cvg_diff_cb)(void *ctx, const cvg_divergence *d);

/*
 * Opens every replica read-only, reads their schemas and settles what is compared. Schema
 * drift touching the compared columns fails with CVG_ESCHEMA and a description in err; drift
 * elsewhere is reported through cvg_diff_warnings(). OWNED result: free with cvg_diff_free().
 */
int cvg_diff_prepare(cvg_diff **out, const cvg_diff_options *opt, cvg_error *err);
/* Runs the comparison; summary is filled even when the callback stops it early. */
int cvg_diff_run(cvg_diff *d, cvg_diff_cb cb, void *ctx, cvg_diff_summary *summary, cvg_error *err);
void cvg_diff_free(cvg_diff *d);

/* The settled column lists (BORROWED, valid until cvg_diff_free). */
const char *const *cvg_diff_key_cols(const cvg_diff *d, size_t *n);
const char *const *cvg_diff_cmp_cols(const cvg_diff *d, size_t *n);
/* The version and tombstone columns as the tables spell them (a catalog's "UpdatedAt" is
 * PostgreSQL's "updatedat"), or NULL: what every later scan or lookup must name. */
const char *cvg_diff_version_col(const cvg_diff *d);
const char *cvg_diff_tombstone_col(const cvg_diff *d);
/* Schema differences outside the compared columns, one per line; "" if none. BORROWED. */
const char *cvg_diff_warnings(const cvg_diff *d);
/* The replica (index in the order given) whose read ended the last cvg_diff_run in error - a
 * scan that could not start or failed midway - or -1 when none did. */
int cvg_diff_failed_replica(const cvg_diff *d);

/*
 * Reads the compared columns of key on replica i (for showing values), appending their encoded
 * tuple to out; *found 0 if the row is not there. Uses a separate connection per replica, opened
 * on first use; call it only from the thread that runs cvg_diff_run (e.g. inside the callback).
 */
int cvg_diff_fetch(cvg_diff *d, size_t replica, const unsigned char *key, size_t key_len,
                   cvg_buf *out, int *found, cvg_error *err);

#ifdef __cplusplus
}
#endif
#endif
