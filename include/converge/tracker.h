/* SPDX-License-Identifier: MIT */
/*
 * The divergence tracker: what the checks of one dataset have found so far. Every key found
 * divergent is kept (key -> class, when first seen, each replica's state, version and digest
 * contribution) until a later check finds it agreeing; beside the keys, each replica's digest of
 * each shard, the conflict hotspots, and the divergence episode in progress.
 *
 * The confirmation rule. A key is "suspected" when first seen and "confirmed" when a later check
 * still finds it divergent and the replicas holding its differing copies have had the chance to
 * receive everything written before it was first seen: with heartbeats, when each of them has
 * applied a heartbeat written a heartbeat interval after that (or has applied nothing for
 * confirm_within: see cvg_trk_check.apply); without, when the check is more than `wait` seconds
 * after it was first seen, the caller computing the wait from the replicas' lag
 * (cvg_tracker_confirm_wait). A stale key whose every
 * copy has reached the newest version of the previous check is suspected afresh: a hot key whose
 * newest write is always in flight is not drift.
 *
 * Episodes. An episode runs from the first suspected key until no key is tracked any more; it
 * has an id (for logs and alert annotations) and remembers when it was suspected and confirmed
 * and the worst lag at those times. An episode saved when converge stopped can be restored: the
 * first divergence found before the first complete sweep continues it.
 *
 * Events. Changes are reported through the callback given to cvg_tracker_new (it may be NULL),
 * called from inside cvg_tracker_record / cvg_tracker_sweep_end; it must not call back into the
 * tracker.
 *
 * Threading: none of its own. The tracker takes the time from the caller (so that a test can
 * drive it) and the caller holds whatever lock guards it; every function may be called from any
 * thread that holds that lock.
 */
#ifndef CONVERGE_TRACKER_H
#define CONVERGE_TRACKER_H

#include "converge/diff.h"
#include "converge/encode.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A tracked divergent key. Read-only for callers; valid until the next call that changes the
 * tracker. One allocation: the struct, then n contributions, n+1 version offsets, n replica
 * states, the key and the versions. */
typedef struct cvg_tracked {
  uint64_t hash;      /* XXH3-64 of the key */
  uint32_t shard;     /* shard of the key */
  cvg_class cls;      /* current class */
  int confirmed;      /* 0 suspected, 1 confirmed */
  uint32_t in_flight; /* bit i: replica i holds a differing copy that may still be on its way
                         (the rule does not hold for it yet): a repair must not write it */
  int agreeing;       /* size of the largest group of replicas that agree */
  int swept;          /* seen by the full sweep in progress */
  double first_seen;  /* wall time first found divergent */
  double newest_seen; /* wall time its newest version (the highest among the copies) was first
                         seen: a write after first_seen moves it, and the confirmation waits for
                         what was written before it to arrive */
  double confirmed_at;
  double last_checked;
  size_t key_len;
  cvg_fp *contrib;        /* per replica: digest contribution (zero when absent) */
  uint32_t *ver_off;      /* per replica: version bytes at [ver_off[i], ver_off[i+1]) */
  unsigned char *rstates; /* per replica: 0 absent, 1 live, 2 tombstone, 3 unknown (not read) */
  unsigned char *key;     /* key bytes, then the versions */
} cvg_tracked;

/* Replica i's version of t (len 0: none or unknown). */
static inline const unsigned char *cvg_tracked_version(const cvg_tracked *t, size_t i,
                                                       size_t *len) {
  *len = t->ver_off[i + 1] - t->ver_off[i];
  return t->key + t->key_len + t->ver_off[i];
}

/* The highest version among t's n copies (NULL, *len 0: none known): the write the key's
 * confirmation was about. */
const unsigned char *cvg_tracked_newest(const cvg_tracked *t, size_t n, size_t *len);

/* The state of one key on each replica, as gathered by a check. */
typedef struct cvg_keystate {
  cvg_copy copies[CVG_DIFF_MAX_REPLICAS];     /* per replica (absent for unread ones) */
  unsigned char known[CVG_DIFF_MAX_REPLICAS]; /* 1 when the replica was read */
} cvg_keystate;

/* The divergence episode in progress (or the last one). */
typedef struct cvg_trk_episode {
  int active;
  int restored; /* loaded from a saved state; continued by the first divergence found */
  char id[32];
  char first_probe[32]; /* the probe that found its first key ("incremental check", ...) */
  double suspected_at, lag_suspected;
  double confirmed_at, lag_confirmed; /* confirmed_at 0: not confirmed yet */
} cvg_trk_episode;

/* Conflict hotspots: the keys confirmed as conflicts most often, kept by the Space-Saving
 * algorithm (Metwally et al.): CVG_HOT_K counters; a new key replaces the smallest and inherits
 * its count as its possible overestimate (error). Keys longer than CVG_HOT_KEY_MAX are not kept. */
#define CVG_HOT_K 32
#define CVG_HOT_KEY_MAX 256
typedef struct cvg_hot {
  unsigned char key[CVG_HOT_KEY_MAX];
  size_t key_len;
  uint64_t count, error;
} cvg_hot;

typedef enum cvg_trk_event_kind {
  CVG_TRK_KEY_SUSPECTED,     /* a key is tracked for the first time (or suspected afresh) */
  CVG_TRK_KEY_CONFIRMED,     /* a tracked key is confirmed */
  CVG_TRK_KEY_RESOLVED,      /* a tracked key agrees again and is dropped */
  CVG_TRK_EPISODE_START,     /* the first key of a new episode */
  CVG_TRK_EPISODE_CONTINUED, /* the first key after a restore continues the saved episode */
  CVG_TRK_EPISODE_CONFIRMED, /* the episode's first confirmed key */
  CVG_TRK_EPISODE_END        /* no key is tracked any more */
} cvg_trk_event_kind;

typedef struct cvg_trk_event {
  cvg_trk_event_kind kind;
  const unsigned char *key; /* the key (NULL for EPISODE_END after a sweep); BORROWED */
  size_t key_len;
  cvg_class cls;                  /* its class (key events, EPISODE_CONFIRMED) */
  int was_confirmed;              /* KEY_RESOLVED: it had been confirmed */
  const cvg_trk_episode *episode; /* the episode; BORROWED */
} cvg_trk_event;

typedef void (*cvg_trk_event_fn)(void *ctx, const cvg_trk_event *ev);

typedef struct cvg_tracker_config {
  size_t n_replicas;  /* 2..CVG_DIFF_MAX_REPLICAS */
  uint32_t shards;    /* 1..CVG_DIFF_MAX_SHARDS */
  size_t max_tracked; /* keys beyond it are counted (dropped), not tracked */
  int versioned;      /* the dataset has a version column (the in-flight rule applies) */
} cvg_tracker_config;

/* One check's circumstances, for cvg_tracker_record. */
typedef struct cvg_trk_check {
  double now;         /* wall time of the check */
  double wait;        /* confirmation wait (cvg_tracker_confirm_wait) */
  double lag;         /* the worst lag now (NAN unknown): remembered by a new episode */
  const char *probe;  /* "incremental check", "full sweep"... for a new episode */
  int update_digests; /* add the key's new contributions to the replicas' digests */
  int sweep;          /* part of a full sweep: marks the key as seen (cvg_tracker_sweep_end) */
  /* The apply-position rule, when the dataset has heartbeats (apply set; NULL: the wait alone).
   * apply[i]: replica i's apply position - the authority's wall time of the newest heartbeat it
   * holds (NAN unknown: the wait decides for that replica); idle[i]: seconds since it last
   * advanced. A key is confirmed once some replica whose copy differs from the authority's has
   * applied past newest_seen + hb_interval (all written before the key's newest version was
   * first seen has had its chance to arrive; a write to the key after first_seen moves
   * newest_seen) or has not advanced for confirm_within since first_seen, the key having waited
   * as long (a stopped replication cannot hold confirmation back, and a key first seen while it
   * was stopped still gets confirm_within). A replica merely slow never gets one confirmed; the
   * differing replicas the rule does not hold for yet are the key's in_flight, which a repair
   * leaves alone. Without apply, the wait runs from newest_seen too. */
  const double *apply;
  const double *idle;
  int authority; /* the authority's index (apply set) */
  double hb_interval;
  double confirm_within;
} cvg_trk_check;

typedef struct cvg_tracker cvg_tracker;

/* CVG_OK, CVG_EINVAL (a bound passed) or CVG_ENOMEM. */
int cvg_tracker_new(cvg_tracker **out, const cvg_tracker_config *cfg, cvg_trk_event_fn fn,
                    void *ctx);
void cvg_tracker_free(cvg_tracker *tr);

/*
 * Records the result of checking one key: cls is its class among the replicas read
 * (CVG_CLASS_NONE: it agrees). Updates the digests (when asked), the tracked set and the
 * confirmation state. Out of memory, the key stays as it was: the next check retries.
 */
void cvg_tracker_record(cvg_tracker *tr, const cvg_trk_check *chk, const unsigned char *key,
                        size_t key_len, cvg_class cls, const cvg_keystate *ks);

/*
 * Ends a full sweep whose divergent keys were recorded with chk->sweep set. completed: it read
 * every key of the replicas in reached (1 per replica read), and then every tracked key it did not
 * find agrees now and is resolved - unless a replica that held a copy of it is down (down[i] 1).
 * A completed sweep also ends a restored episode it found nothing of. Marks are cleared either
 * way.
 */
void cvg_tracker_sweep_end(cvg_tracker *tr, int completed, const unsigned char *down);

/* The tracked key, or NULL. */
const cvg_tracked *cvg_tracker_find(const cvg_tracker *tr, const unsigned char *key,
                                    size_t key_len);
/* Iterates the tracked keys: start with *cursor = 0; NULL at the end. */
const cvg_tracked *cvg_tracker_next(const cvg_tracker *tr, size_t *cursor);
size_t cvg_tracker_count(const cvg_tracker *tr);

typedef struct cvg_trk_stats {
  size_t tracked;         /* keys tracked now */
  size_t confirmed;       /* of which confirmed */
  uint64_t dropped;       /* divergent keys not tracked because max_tracked was reached */
  uint64_t resolved[2];   /* keys that agreed again, by state (suspected, confirmed) */
  uint64_t confirmations; /* keys confirmed so far */
  int swept;              /* a full sweep has completed */
} cvg_trk_stats;
void cvg_tracker_stats(const cvg_tracker *tr, cvg_trk_stats *st);

/* Replica i's digest of each shard, or NULL while unknown (no completed sweep read it). */
const cvg_fp *cvg_tracker_digest(const cvg_tracker *tr, size_t i);
/* Sets replica i's digests (shards entries, from a completed sweep); NULL forgets them. */
void cvg_tracker_set_digest(cvg_tracker *tr, size_t i, const cvg_fp *digest);
/* 1 when shard sh's digest differs between the replicas with up[i] set and a known digest. */
int cvg_tracker_shard_differs(const cvg_tracker *tr, uint32_t sh, const unsigned char *up);

/* The hotspots, unordered (*n of them), and the confirmed conflicts per shard since the start. */
const cvg_hot *cvg_tracker_hot(const cvg_tracker *tr, size_t *n);
const uint64_t *cvg_tracker_conflicts(const cvg_tracker *tr);

const cvg_trk_episode *cvg_tracker_episode(const cvg_tracker *tr);
/* Restores a saved episode (its active flag is ignored): the next divergence continues it
 * unless a sweep completes first. */
void cvg_tracker_restore_episode(cvg_tracker *tr, const cvg_trk_episode *ep);

/*
 * The confirmation wait for replicas with the given lag (seconds, NAN unknown) and up state
 * (-1 unknown, 0 down, 1 up): the worst lag of the reachable non-authority replicas plus two
 * heartbeat intervals, never more than confirm_within; confirm_within when there is no authority,
 * no heartbeat, or a lag is unknown. A row written at t reaches a replica by t + D, and the
 * newest heartbeat there is at most one interval older than that, so D <= lag; the second
 * interval absorbs probe scheduling jitter.
 */
double cvg_tracker_confirm_wait(const double *lag, const int *up, size_t n, int authority,
                                double heartbeat_interval, double confirm_within);

#ifdef __cplusplus
}
#endif

#endif
