/* SPDX-License-Identifier: MIT */
/*
 * The monitor of `converge watch` (monitor.h): probes, their schedule, and what they found.
 *
 * Jobs. Each probe of each dataset (and, for per-replica probes, of each replica) is one job
 * with an interval. The scheduler thread hands due jobs to one of two pools — quick probes
 * (heartbeat, canary, invariants) and sweeps — and never runs a job twice at once. A job owns
 * its replica connections (opened on first use, closed after any error so that the next run
 * reconnects), so no connection is ever shared between threads.
 *
 * Heartbeat. The authority's job writes (source = dataset name, seq, ts = wall time) into the
 * heartbeat table; each other replica's job reads that row as it arrived through replication:
 * lag = now - ts. A replica whose seq has not moved for stall_after reads while the authority's
 * did is "stalled"; one with no heartbeat table or row yet is "stopped" (lag unknown); one that
 * cannot be reached is "down".
 *
 * Canary. The authority's job writes a row with a fresh token; each other replica's job polls
 * for the tokens it has not seen, records now - written in a histogram when one appears, and
 * counts a failure when one has not appeared within the timeout.
 *
 * Divergences. Every key found divergent is tracked in a hash table (key -> class, when first
 * seen, each replica's state and version, each replica's digest contribution). A key is
 * "suspected" when first seen and "confirmed" when a later check, made more than the involved
 * replicas' lag (plus one heartbeat interval) after it was first seen, still finds it divergent;
 * the wait never exceeds confirm_within, and a replica of unknown lag waits that long. Keys that
 * agree again are dropped. A stale key whose every copy has reached the newest version of the
 * previous check is suspected afresh: a hot key whose newest write is always in flight is not
 * drift (the chaos lab's Zipf workload showed it).
 *
 * Incremental check (with a version column): each replica's rows with version >= its watermark
 * (the greatest version seen so far) are read through an index on the version column, every
 * tracked key is added, and each of these keys is looked up on the replicas that did not yield
 * it; so a re-check after k changes costs O(k) lookups. The full sweep reads everything with
 * the diff engine (rate-limited, in its window), replaces the tracked set, the digests and the
 * watermarks, and catches what versions cannot show: hard deletes and silent corruption.
 *
 * Shard digests. The full sweep computes each replica's digest of each shard exactly
 * (encode.h). An incremental check adds each compared key's new contribution and subtracts the
 * one remembered for a tracked key; a key that was agreeing had the same unknown contribution
 * on every replica, so its old value is left in place. Absolute digests therefore drift from
 * the table's true sum between full sweeps, but by the same amount on every replica: the
 * comparison between replicas — all that "this shard differs" needs — stays exact.
 *
 * Locks: m->mu guards the job table and pools; each dataset's mu guards its state and is held
 * only for memory work (never across a database call); its sweep_mu keeps the full and the
 * incremental sweep of a dataset from running together.
 */
#include "converge/mclock.h"
#include "converge/monitor.h"
#include "converge/alert.h"
#include "converge/json.h"
#include "converge/repair.h"
#include "converge/diff.h"
#include "converge/json.h"
#include "converge/store.h"
#include "converge/version.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#define CONV_BUCKETS 14
static const double conv_le[CONV_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                             1,     2.5,  5,     10,   30,  60,   120};
#define SWEEP_BUCKETS 10
static const double sweep_le[SWEEP_BUCKETS] = {0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600};
#define MAX_CANARIES 64        /* canaries in flight per dataset */
#define MAX_CHANGED (1u << 20) /* an incremental check reading more asks for a full sweep */
#define CANARY_POLL 0.1        /* seconds between canary polls */
#define INVARIANT_INTERVAL 1.0 /* seconds between invariant evaluations */

typedef struct hist {
  uint64_t bucket[CONV_BUCKETS + 1]; /* non-cumulative counts; last is +Inf */
  double sum;
  uint64_t count;
} hist;

static void hist_add(hist *h, const double *le, size_t n_le, double v) {
  size_t i = 0;
  while (i < n_le && v > le[i])
    i++;
  h->bucket[i]++;
  h->sum += v;
  h->count++;
}

typedef enum rstate {
  RS_UNKNOWN = 0,
  RS_OK,
  RS_LAGGING,
  RS_STALLED,
  RS_STOPPED,
  RS_DOWN,
  RS_ERROR /* reachable, but its sweeps fail (shown_state) */
} rstate;
static const char *const rstate_names[] = {"unknown", "ok",   "lagging", "stalled",
                                           "stopped", "down", "error"};

enum { KIND_INCR = 0, KIND_FULL = 1 };
static const char *const kind_names[] = {"incremental", "full"};

typedef struct rep {
  const cvg_cat_replica *cfg; /* BORROWED from the catalog */
  int up;                     /* -1 not yet known, 0 down, 1 up */
  char error[2 * CVG_ERROR_MSG_MAX +
             8];            /* last error (never holds a password: URLs are url_display) */
  int hb_seen;              /* a heartbeat row has been read */
  int64_t hb_seq;           /* newest heartbeat seq seen */
  double hb_ts;             /* its wall time */
  int64_t auth_seq_at_last; /* the authority's seq when hb_seq last moved */
  int no_progress;          /* reads without progress while the authority advanced */
  int hb_table_absent;      /* the heartbeat table is not there (yet) */
  double lag;               /* seconds; NAN when unknown */
  rstate state;
  hist conv;                                /* canary convergence seconds */
  uint64_t canaries_seen;                   /* canaries that arrived */
  uint64_t canary_failures;                 /* canaries that did not arrive within the timeout */
  unsigned char wm[256];                    /* watermark: greatest encoded version seen */
  size_t wm_len;                            /* 0: none yet */
  uint64_t rows_read[2];                    /* by kind */
  uint64_t probe_errors;                    /* failed probe runs */
  uint64_t read_errors;                     /* sweeps that failed reading this replica */
  uint32_t sweep_streak[2];                 /* consecutive failed sweeps of each kind, reading it */
  char sweep_error[CVG_ERROR_MSG_MAX + 32]; /* the last one's message */
  cvg_fp *digest;                           /* OWNED; n_shards entries */
  int digest_valid;                         /* 1 once a full sweep included this replica */
  int index_checked;                        /* the version index has been looked for */
  double *agg;                              /* OWNED; aggregate values, one per equal_aggregate */
  unsigned char *agg_ok;                    /* OWNED; 1 when agg[i] is known */
  cvg_trend trend;                          /* lag samples for the trend status */
  double last_conv;  /* seconds the last canary took to arrive; NAN none yet */
  double fail_t[16]; /* times of the last canary failures (ring) */
  size_t n_fail_t;
  char native_role[16]; /* the engine's own view of replication: "subscriber", "standby", "" */
  double native_lag;    /* its lag in seconds; NAN unknown */
  int native_up;        /* 0 when the engine says replication into it is stopped */
} rep;

/* A tracked divergent key. One allocation: the struct, then n contributions, n+1 version
 * offsets, n replica states, the key and the versions. */
typedef struct tracked {
  uint64_t hash;     /* XXH3-64 of the key */
  uint32_t shard;    /* shard of the key */
  cvg_class cls;     /* current class */
  int confirmed;     /* 0 suspected, 1 confirmed */
  int agreeing;      /* size of the largest group of replicas that agree */
  double first_seen; /* wall time first found divergent */
  double confirmed_at;
  double last_checked;
  size_t key_len;
  cvg_fp *contrib;        /* per replica: digest contribution (zero when absent) */
  uint32_t *ver_off;      /* per replica: version bytes at [ver_off[i], ver_off[i+1]) */
  unsigned char *rstates; /* per replica: 0 absent, 1 live, 2 tombstone, 3 unknown (down) */
  unsigned char *key;     /* key bytes, then the versions */
} tracked;

typedef struct canary {
  char token[64];      /* unique token */
  double written_mono; /* monotonic time of the write */
  uint32_t pending;    /* replicas that have not seen it (bit per replica) */
} canary;

typedef struct inv_result {
  const char *name; /* invariant name, or the aggregate expression */
  int known;        /* 0 until it can be judged */
  int ok;           /* 1 holds */
  double value;     /* the measured value */
  double limit;     /* the declared bound */
} inv_result;

/* The detection trace of a dataset's current divergence episode: from the first suspected key
 * until no key is tracked any more. Its id appears in logs and alert annotations. */
typedef struct trace {
  int active;
  int restored; /* loaded from the state file; continued by the first divergence found */
  char id[32];
  char first_probe[32]; /* "incremental check" or "full sweep" */
  double suspected_at, lag_suspected;
  double confirmed_at, lag_confirmed; /* 0: not confirmed yet */
} trace;

#define OUTCOMES 8192 /* canary outcomes kept for SLO burn rates */

/* Conflict hotspots: the keys confirmed as conflicts most often, kept by the Space-Saving
 * algorithm (Metwally et al.): HOT_K counters; a new key replaces the smallest and inherits its
 * count as its possible overestimate (error). */
#define HOT_K 32
#define HOT_KEY_MAX 256
typedef struct hot {
  unsigned char key[HOT_KEY_MAX];
  size_t key_len;
  uint64_t count, error;
} hot;

typedef struct dset {
  struct cvg_monitor *m;
  const cvg_cat_dataset *cfg; /* BORROWED */
  size_t idx;
  pthread_mutex_t mu;       /* guards all below */
  pthread_mutex_t sweep_mu; /* one sweep at a time */
  rep *reps;                /* OWNED; cfg->n_replicas */
  size_t n;
  int64_t hb_seq;  /* last seq written on the authority */
  int hb_write_ok; /* last write succeeded */
  canary canaries[MAX_CANARIES];
  size_t n_canaries;
  tracked **tab; /* OWNED open-addressing table of tracked keys, tab_cap slots */
  size_t tab_cap, n_tracked;
  uint64_t dropped;      /* divergent keys not tracked because max_tracked was reached */
  uint64_t resolved[2];  /* tracked keys that agreed again, by state (suspected, confirmed) */
  uint64_t keys_total;   /* keys seen by the last full sweep */
  int have_full;         /* a full sweep has completed */
  int full_requested;    /* an incremental check asks for a full sweep */
  double last_full_wall; /* wall time of the last full sweep's end */
  double last_incr_wall;
  hist sweep_dur[2];
  uint64_t sweeps_ok[2], sweeps_err[2];
  int schema_drift;      /* 1 when replicas' schemas differ */
  int sweep_culprit;     /* the replica whose read failed the sweep in progress, or -1 */
  char origin_note[400]; /* likely cause from the origin column ("" none; origin_cause) */
  double origin_at;      /* monotonic time of the last origin_cause, 0 never */
  uint64_t n_confirmations, origin_seen; /* keys confirmed so far; as origin_cause last saw */
  char schema_msg[1024];                 /* what differs */
  inv_result inv[6 + 16];                /* the invariants */
  size_t n_inv;
  trace tr;
  cvg_episode synced; /* the episode as last saved (evaluation thread only) */
  int synced_active;
  double first_full_wall; /* end of the first full sweep since the start; 0 none yet */
  hot hot[HOT_K];         /* conflict hotspots */
  size_t n_hot;
  uint64_t *conflicts; /* OWNED; confirmed conflicts per shard, since the start */
  /* automatic repair (auto_repair) */
  uint64_t rep_runs, rep_applied, rep_skipped, rep_failed, rep_errors;
  uint64_t rep_last_failed;  /* mutations that failed in the last run */
  uint64_t rep_refused;      /* the last run was refused by a safety limit: the changes it held
                               back (0: not refused) */
  uint64_t rep_refusals;     /* runs refused so far */
  double rep_refused_at;     /* wall time of the last refusal: retried after REPAIR_REFUSED_RETRY */
  char rep_refused_why[400]; /* the limit's message */
  int rep_stalled_runs;      /* consecutive runs with a backlog and nothing applied */
  int rep_paused;            /* 1: automatic repair held (POST /api/v1/repair/pause) */
  double rep_last_ok;        /* wall time of the last run that applied everything it planned */
  double rep_last_run;       /* wall time the last run ended; 0 none yet */
  double rep_last_rate;      /* mutations applied per second by the last run */
  char rep_error[CVG_ERROR_MSG_MAX];
  const char *probe;       /* the probe recording keys right now */
  double write_rate;       /* rows past the watermark per second, last incremental check */
  double *out_t;           /* OWNED; canary outcome times (ring of OUTCOMES) */
  unsigned char *out_good; /* OWNED; 1 converged within the SLO */
  size_t out_n, out_head;
} dset;

typedef enum jkind {
  J_HB_WRITE,
  J_HB_READ,
  J_CANARY_WRITE,
  J_CANARY_POLL,
  J_INCR,
  J_FULL,
  J_INV,
  J_ALERT,
  J_REPAIR
} jkind;

typedef struct job {
  jkind kind;
  dset *ds;
  size_t rep;       /* replica, for per-replica jobs */
  double interval;  /* seconds */
  double next_due;  /* monotonic */
  int running;      /* handed to a pool and not finished */
  int pool;         /* 0 quick, 1 sweeps */
  cvg_store *st;    /* OWNED connection of single-replica jobs */
  cvg_store **sts;  /* OWNED connections of incremental checks, one per replica */
  struct job *next; /* in a pool's queue */
} job;

typedef struct pool {
  pthread_t *threads;
  size_t n_threads, started;
  job *head, *tail; /* queue */
  pthread_cond_t cv;
} pool;

struct cvg_monitor {
  const cvg_catalog *cat; /* BORROWED */
  cvg_logger *lg;         /* BORROWED */
  dset *ds;               /* OWNED; cat->n_datasets */
  size_t n_ds;
  job *jobs; /* OWNED */
  size_t n_jobs;
  pthread_mutex_t mu; /* guards jobs' running/next_due, pools, stopping */
  pthread_cond_t sched_cv;
  pool pools[2];
  pthread_t sched;
  int sched_started;
  int stopping;
  int cancel;         /* asks a running full sweep to stop (atomic stores and loads) */
  double sched_beat;  /* monotonic time of the scheduler's last loop */
  cvg_alerts *alerts; /* OWNED; the alert engine */
  double started_wall;
};

static void fmt_double(char *buf, size_t n, double v) {
  if (isnan(v))
    snprintf(buf, n, "NaN");
  else if (isinf(v))
    snprintf(buf, n, v > 0 ? "+Inf" : "-Inf");
  else
    snprintf(buf, n, "%.17g", v);
}

/* ---- tracked keys: an open-addressing table with linear probing and backward-shift delete */

static size_t slot_of(const dset *ds, uint64_t h) {
  return (size_t)h & (ds->tab_cap - 1);
}

static tracked *tr_find(dset *ds, const unsigned char *key, size_t key_len, uint64_t h,
                        size_t *slot) {
  if (!ds->tab_cap)
    return NULL;
  for (size_t i = slot_of(ds, h);; i = (i + 1) & (ds->tab_cap - 1)) {
    tracked *t = ds->tab[i];
    if (!t) {
      if (slot)
        *slot = i;
      return NULL;
    }
    if (t->hash == h && t->key_len == key_len && memcmp(t->key, key, key_len) == 0) {
      if (slot)
        *slot = i;
      return t;
    }
  }
}

static int tr_grow(dset *ds) {
  size_t cap = ds->tab_cap ? ds->tab_cap * 2 : 1024;
  tracked **tab = calloc(cap, sizeof *tab);
  if (!tab)
    return CVG_ENOMEM;
  for (size_t i = 0; i < ds->tab_cap; i++) {
    tracked *t = ds->tab[i];
    if (!t)
      continue;
    size_t j = (size_t)t->hash & (cap - 1);
    while (tab[j])
      j = (j + 1) & (cap - 1);
    tab[j] = t;
  }
  free(ds->tab);
  ds->tab = tab;
  ds->tab_cap = cap;
  return CVG_OK;
}

static void tr_remove_slot(dset *ds, size_t i) {
  free(ds->tab[i]);
  ds->tab[i] = NULL;
  ds->n_tracked--;
  size_t mask = ds->tab_cap - 1;
  for (size_t j = (i + 1) & mask; ds->tab[j]; j = (j + 1) & mask) {
    size_t home = (size_t)ds->tab[j]->hash & mask;
    /* move j back to i when i lies cyclically in [home, j) */
    if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
      ds->tab[i] = ds->tab[j];
      ds->tab[j] = NULL;
      i = j;
    }
  }
}

static void tr_clear(dset *ds) {
  for (size_t i = 0; i < ds->tab_cap; i++)
    free(ds->tab[i]);
  free(ds->tab);
  ds->tab = NULL;
  ds->tab_cap = ds->n_tracked = 0;
}

/* The state of one key on each replica, as gathered by a check. */
typedef struct keystate {
  cvg_copy copies[CVG_DIFF_MAX_REPLICAS];     /* per replica (absent for down ones) */
  unsigned char known[CVG_DIFF_MAX_REPLICAS]; /* 1 when the replica was read */
} keystate;

/* Largest group of read replicas with the same state, fingerprint and version. */
static int agreeing_group(const keystate *ks, size_t n) {
  int best = 0;
  for (size_t i = 0; i < n; i++) {
    if (!ks->known[i])
      continue;
    int g = 0;
    for (size_t j = 0; j < n; j++) {
      if (!ks->known[j])
        continue;
      const cvg_copy *a = &ks->copies[i], *b = &ks->copies[j];
      int same = a->state == b->state;
      if (same && a->state == CVG_LIVE)
        same = cvg_fp_equal(a->fp, b->fp) && a->version_len == b->version_len &&
               (a->version_len == 0 || memcmp(a->version, b->version, a->version_len) == 0);
      if (a->state != CVG_LIVE && b->state != CVG_LIVE)
        same = 1; /* absent and tombstoned agree: deleted */
      g += same;
    }
    if (g > best)
      best = g;
  }
  return best;
}

static cvg_fp contribution(const unsigned char *key, size_t key_len, const cvg_copy *c) {
  cvg_fp zero = {0, 0};
  if (c->state != CVG_LIVE)
    return zero;
  return cvg_digest_contribution(key, key_len, c->fp, c->version, c->version_len);
}

/* How long a divergence on these replicas must persist before it is confirmed. */
/* Counts one more confirmed conflict of key (ds->mu held). */
static void hot_add(dset *ds, const unsigned char *key, size_t key_len, uint32_t shard) {
  if (ds->conflicts && shard < ds->cfg->shards)
    ds->conflicts[shard]++;
  if (key_len > HOT_KEY_MAX)
    return;
  size_t min = 0;
  for (size_t i = 0; i < ds->n_hot; i++) {
    if (ds->hot[i].key_len == key_len && !memcmp(ds->hot[i].key, key, key_len)) {
      ds->hot[i].count++;
      return;
    }
    if (ds->hot[i].count < ds->hot[min].count)
      min = i;
  }
  hot *h = ds->n_hot < HOT_K ? &ds->hot[ds->n_hot++] : &ds->hot[min];
  uint64_t base = h == &ds->hot[min] && ds->n_hot == HOT_K ? h->count : 0;
  memcpy(h->key, key, key_len);
  h->key_len = key_len;
  h->error = base;
  h->count = base + 1;
}

/* The largest lag among the non-authority replicas that are up (NAN if none is known). */
static double worst_lag(const dset *ds) {
  double w = NAN;
  for (size_t i = 0; i < ds->n; i++)
    if ((int)i != ds->cfg->authority && ds->reps[i].up == 1 && !isnan(ds->reps[i].lag) &&
        (isnan(w) || ds->reps[i].lag > w))
      w = ds->reps[i].lag;
  return w;
}

static double confirm_wait(const dset *ds) {
  double wait = ds->cfg->probes.confirm_within, worst = 0;
  int unknown = ds->cfg->authority < 0 || ds->cfg->probes.heartbeat_interval <= 0;
  for (size_t i = 0; i < ds->n && !unknown; i++) {
    if ((int)i == ds->cfg->authority || ds->reps[i].up == 0)
      continue;
    if (isnan(ds->reps[i].lag))
      unknown = 1;
    else if (ds->reps[i].lag > worst)
      worst = ds->reps[i].lag;
  }
  if (unknown)
    return wait;
  /* A row written at t reaches a replica by t + D, and the newest heartbeat there is at most one
   * interval older than that, so D <= lag. One more interval absorbs probe scheduling jitter. */
  worst += 2 * ds->cfg->probes.heartbeat_interval;
  return worst < wait ? worst : wait;
}

/*
 * Records the result of checking one key (called with ds->mu held). cls is its class among the
 * replicas read. Updates digests, the tracked set and the confirmation state.
 */
static void record_key(dset *ds, const unsigned char *key, size_t key_len, cvg_class cls,
                       const keystate *ks, double now, double wait, int update_digests) {
  uint64_t h = XXH3_64bits(key, key_len);
  size_t slot = 0;
  tracked *t = tr_find(ds, key, key_len, h, &slot);
  uint32_t shard = cvg_shard_of(key, key_len, ds->cfg->shards);
  if (update_digests) {
    for (size_t i = 0; i < ds->n; i++) {
      if (!ks->known[i] || !ds->reps[i].digest_valid)
        continue;
      cvg_fp c = contribution(key, key_len, &ks->copies[i]);
      if (t)
        cvg_digest_sub(&ds->reps[i].digest[shard], t->contrib[i]);
      if (t || cls != CVG_CLASS_NONE)
        cvg_digest_add(&ds->reps[i].digest[shard], c);
    }
  }
  if (cls == CVG_CLASS_NONE) {
    if (t) {
      ds->resolved[t->confirmed]++;
      tr_remove_slot(ds, slot);
      if (ds->n_tracked == 0 && ds->tr.active) {
        ds->tr.active = 0;
        cvg_log(ds->m->lg, CVG_LOG_INFO, "divergence_cleared", "dataset", ds->cfg->name, "trace_id",
                ds->tr.id, (const char *)NULL);
      }
    }
    return;
  }
  if (!ds->tr.active && ds->tr.restored && !ds->first_full_wall) {
    /* the episode in progress when converge stopped: continue it (same trace, same clock) */
    ds->tr.active = 1;
    ds->tr.restored = 0;
    cvg_log(ds->m->lg, CVG_LOG_INFO, "divergence_continued", "dataset", ds->cfg->name, "trace_id",
            ds->tr.id, (const char *)NULL);
  } else if (!ds->tr.active) {
    ds->tr.active = 1;
    ds->tr.restored = 0;
    snprintf(ds->tr.id, sizeof ds->tr.id, "trc-%016" PRIx64,
             XXH3_64bits_withSeed(key, key_len, (uint64_t)(now * 1e6)));
    snprintf(ds->tr.first_probe, sizeof ds->tr.first_probe, "%s", ds->probe ? ds->probe : "probe");
    ds->tr.suspected_at = now;
    ds->tr.lag_suspected = worst_lag(ds);
    ds->tr.confirmed_at = 0;
    cvg_log(ds->m->lg, CVG_LOG_INFO, "divergence_suspected", "dataset", ds->cfg->name, "trace_id",
            ds->tr.id, "probe", ds->tr.first_probe, (const char *)NULL);
  }
  size_t vlen = 0;
  for (size_t i = 0; i < ds->n; i++)
    vlen += ks->known[i] ? ks->copies[i].version_len : (t ? t->ver_off[i + 1] - t->ver_off[i] : 0);
  size_t n = ds->n;
  size_t size =
      sizeof(tracked) + n * sizeof(cvg_fp) + (n + 1) * sizeof(uint32_t) + n + key_len + vlen;
  tracked *nt = malloc(size);
  if (!nt)
    return; /* out of memory: the key stays as it was; the next check retries */
  unsigned char *p = (unsigned char *)(nt + 1);
  nt->contrib = (cvg_fp *)p;
  p += n * sizeof(cvg_fp);
  nt->ver_off = (uint32_t *)p;
  p += (n + 1) * sizeof(uint32_t);
  nt->rstates = p;
  p += n;
  nt->key = p;
  memcpy(nt->key, key, key_len);
  nt->key_len = key_len;
  nt->hash = h;
  nt->shard = shard;
  nt->cls = cls;
  nt->first_seen = t ? t->first_seen : now;
  /* A hot key can differ at every check without being drift: each time, the newest write is
   * still on its way. If every replica now holds at least the newest version of the previous
   * check, what differed then has arrived; what differs now is a new difference, suspected
   * from now on. A replica stuck below that version (a lost change) never makes progress. */
  if (t && !t->confirmed && ds->cfg->version && cls == CVG_CLASS_STALE) {
    const unsigned char *pm = NULL;
    size_t pml = 0;
    for (size_t i = 0; i < ds->n; i++) {
      size_t l = t->ver_off[i + 1] - t->ver_off[i];
      const unsigned char *v = t->key + t->key_len + t->ver_off[i];
      if (l && (!pm || cvg_key_compare(v, l, pm, pml) > 0)) {
        pm = v;
        pml = l;
      }
    }
    int progressed = pm != NULL;
    for (size_t i = 0; progressed && i < ds->n; i++)
      progressed = ks->known[i] && ks->copies[i].version_len &&
                   cvg_key_compare(ks->copies[i].version, ks->copies[i].version_len, pm, pml) >= 0;
    if (progressed)
      nt->first_seen = now;
  }
  /* Keys found before the first full sweep after a start belong to the episode that was in
   * progress when converge stopped (if any): their divergence began no later than it did. */
  if (!t && !ds->first_full_wall && ds->tr.active && ds->tr.suspected_at < now)
    nt->first_seen = ds->tr.suspected_at;
  nt->confirmed = t ? t->confirmed : 0;
  nt->confirmed_at = t ? t->confirmed_at : 0;
  nt->last_checked = now;
  nt->agreeing = agreeing_group(ks, n);
  uint32_t off = (uint32_t)key_len;
  for (size_t i = 0; i < n; i++) {
    nt->ver_off[i] = off - (uint32_t)key_len;
    if (ks->known[i]) {
      const cvg_copy *c = &ks->copies[i];
      nt->contrib[i] = contribution(key, key_len, c);
      nt->rstates[i] = c->state == CVG_LIVE ? 1 : c->state == CVG_TOMBSTONED ? 2 : 0;
      if (c->version_len)
        memcpy(nt->key + off, c->version, c->version_len);
      off += (uint32_t)c->version_len;
    } else if (t) {
      nt->contrib[i] = t->contrib[i];
      nt->rstates[i] = 3;
      size_t l = t->ver_off[i + 1] - t->ver_off[i];
      memcpy(nt->key + off, t->key + t->key_len + t->ver_off[i], l);
      off += (uint32_t)l;
    } else {
      memset(&nt->contrib[i], 0, sizeof nt->contrib[i]);
      nt->rstates[i] = 3;
    }
  }
  nt->ver_off[n] = off - (uint32_t)key_len;
  if (!nt->confirmed && now - nt->first_seen > wait && t) {
    nt->confirmed = 1;
    nt->confirmed_at = now;
    ds->n_confirmations++;
    if (cls == CVG_CLASS_CONFLICT)
      hot_add(ds, key, key_len, shard);
    if (ds->tr.active && ds->tr.confirmed_at == 0) {
      ds->tr.confirmed_at = now;
      ds->tr.lag_confirmed = worst_lag(ds);
      cvg_log(ds->m->lg, CVG_LOG_WARN, "divergence_confirmed", "dataset", ds->cfg->name, "trace_id",
              ds->tr.id, "class", cvg_class_name(cls), (const char *)NULL);
    }
  }
  if (t) {
    free(t);
    ds->tab[slot] = nt;
    return;
  }
  if (ds->n_tracked >= ds->cfg->probes.max_tracked) {
    ds->dropped++;
    free(nt);
    return;
  }
  if ((ds->n_tracked + 1) * 2 > ds->tab_cap) {
    if (tr_grow(ds) != CVG_OK) {
      free(nt);
      return;
    }
    tr_find(ds, key, key_len, h, &slot);
  }
  ds->tab[slot] = nt;
  ds->n_tracked++;
}

/* ---- logging helpers ---- */

static void logf_event(cvg_monitor *m, cvg_log_level lvl, const char *event, const dset *ds,
                       const rep *r, const char *k1, const char *v1, const char *k2,
                       const char *v2) {
  cvg_log(m->lg, lvl, event, "dataset", ds->cfg->name, r ? "replica" : k1, r ? r->cfg->name : v1,
          r ? k1 : k2, r ? v1 : v2, r ? k2 : NULL, r ? v2 : NULL, (const char *)NULL);
}

/* Marks a replica up or down (ds->mu held), logging transitions. */
static void set_up(cvg_monitor *m, dset *ds, rep *r, int up, const cvg_error *err) {
  if (up) {
    if (r->up == 0)
      logf_event(m, CVG_LOG_INFO, "replica_up", ds, r, NULL, NULL, NULL, NULL);
    r->up = 1;
    r->error[0] = '\0';
    return;
  }
  char msg[CVG_ERROR_MSG_MAX + CVG_ERROR_MSG_MAX + 8];
  snprintf(msg, sizeof msg, "%s%s%s", err ? err->msg : "unreachable",
           err && err->hint[0] ? "; " : "", err && err->hint[0] ? err->hint : "");
  if (r->up != 0 || strcmp(r->error, msg) != 0)
    logf_event(m, CVG_LOG_WARN, "replica_down", ds, r, "error", msg, NULL, NULL);
  snprintf(r->error, sizeof r->error, "%s", msg);
  r->up = 0;
  r->state = RS_DOWN;
  r->probe_errors++;
}

/* Opens *st for replica r if it is not open. */
static int ensure_open(cvg_store **st, const rep *r, unsigned flags, cvg_error *err) {
  if (*st)
    return CVG_OK;
  int rc = cvg_store_open(st, r->cfg->url, flags, err);
  if (rc && err) /* never show the expanded URL: it may hold a password */
    snprintf(err->input, sizeof err->input, "%s", r->cfg->url_display);
  return rc;
}

static void drop_conn(cvg_store **st) {
  cvg_store_close(*st);
  *st = NULL;
}

/* ---- heartbeat ---- */

static void job_hb_write(cvg_monitor *m, job *j) {
  dset *ds = j->ds;
  const cvg_cat_probes *p = &ds->cfg->probes;
  rep *r = &ds->reps[ds->cfg->authority];
  cvg_error err;
  cvg_error_clear(&err);
  int rc = ensure_open(&j->st, r, 0, &err);
  int64_t seq = 0;
  if (!rc && ds->hb_seq == 0) { /* continue the sequence across restarts */
    double ts;
    int found = 0;
    int64_t old = 0;
    if (cvg_store_heartbeat_read(j->st, p->heartbeat_table, ds->cfg->name, &old, &ts, &found,
                                 NULL) == CVG_OK &&
        found)
      seq = old;
  }
  pthread_mutex_lock(&ds->mu);
  seq = (seq > ds->hb_seq ? seq : ds->hb_seq) + 1;
  pthread_mutex_unlock(&ds->mu);
  double now = cvg_wall_now();
  if (!rc)
    rc = cvg_store_heartbeat_write(j->st, p->heartbeat_table, ds->cfg->name, seq, now,
                                   p->create_tables, &err);
  /* the authority's own view of what it sends (PostgreSQL: pg_stat_replication) */
  char nrole[16] = "";
  double nlag = 0;
  int nknown = 0, nup = 1;
  if (!rc) {
    cvg_error nerr;
    cvg_error_clear(&nerr);
    if (cvg_store_native_lag(j->st, nrole, sizeof nrole, &nlag, &nknown, &nup, &nerr) != CVG_OK)
      nrole[0] = '\0';
  }
  pthread_mutex_lock(&ds->mu);
  if (!rc) {
    snprintf(r->native_role, sizeof r->native_role, "%s", strcmp(nrole, "none") ? nrole : "");
    r->native_lag = nknown ? nlag : NAN;
    r->native_up = nup;
  }
  if (rc) {
    ds->hb_write_ok = 0;
    set_up(m, ds, r, 0, &err);
  } else {
    ds->hb_seq = seq;
    ds->hb_write_ok = 1;
    set_up(m, ds, r, 1, NULL);
    r->hb_seen = 1;
    r->hb_seq = seq;
    r->hb_ts = now;
    r->lag = 0;
    r->state = RS_OK;
  }
  pthread_mutex_unlock(&ds->mu);
  if (rc)
    drop_conn(&j->st);
}

/* The lag above which a replica is "lagging" rather than "ok". */
static double lag_threshold(const cvg_cat_dataset *d) {
  if (d->inv.max_lag_seconds >= 0)
    return d->inv.max_lag_seconds;
  return 3 * d->probes.heartbeat_interval + 1;
}

static void job_hb_read(cvg_monitor *m, job *j) {
  dset *ds = j->ds;
  rep *r = &ds->reps[j->rep];
  const cvg_cat_probes *p = &ds->cfg->probes;
  cvg_error err;
  cvg_error_clear(&err);
  int64_t seq = 0;
  double ts = 0;
  int found = 0;
  int rc = ensure_open(&j->st, r, CVG_STORE_READONLY, &err);
  int hb = ds->cfg->authority >= 0 && p->heartbeat_interval > 0;
  if (!rc && hb)
    rc =
        cvg_store_heartbeat_read(j->st, p->heartbeat_table, ds->cfg->name, &seq, &ts, &found, &err);
  int absent = rc == CVG_ENOTABLE;
  /* beside the heartbeat: the engine's own view (PostgreSQL subscription or standby) */
  char nrole[16] = "";
  double nlag = 0;
  int nknown = 0, nup = 1;
  if (!rc || absent) {
    cvg_error nerr;
    cvg_error_clear(&nerr);
    if (cvg_store_native_lag(j->st, nrole, sizeof nrole, &nlag, &nknown, &nup, &nerr) != CVG_OK)
      nrole[0] = '\0';
  }
  if (absent)
    rc = CVG_OK;
  double now = cvg_wall_now();
  pthread_mutex_lock(&ds->mu);
  if (rc) {
    set_up(m, ds, r, 0, &err);
  } else {
    set_up(m, ds, r, 1, NULL);
    snprintf(r->native_role, sizeof r->native_role, "%s", strcmp(nrole, "none") ? nrole : "");
    r->native_lag = nknown ? nlag : NAN;
    r->native_up = nup;
    rstate before = r->state;
    r->hb_table_absent = absent;
    if (!hb) {
      r->state = RS_OK;
    } else if (absent || !found) {
      r->lag = NAN;
      r->state = RS_STOPPED;
    } else {
      if (!r->hb_seen || seq != r->hb_seq) {
        r->no_progress = 0;
        r->auth_seq_at_last = ds->hb_seq;
      } else if (ds->hb_write_ok && ds->hb_seq > r->auth_seq_at_last) {
        r->no_progress++;
        r->auth_seq_at_last = ds->hb_seq;
      }
      r->hb_seen = 1;
      r->hb_seq = seq;
      r->hb_ts = ts;
      r->lag = now - ts > 0 ? now - ts : 0;
      cvg_trend_add(&r->trend, now, r->lag, seq);
      if (r->no_progress >= p->stall_after)
        r->state = RS_STALLED;
      else if (r->lag > lag_threshold(ds->cfg))
        r->state = RS_LAGGING;
      else
        r->state = RS_OK;
    }
    if (before != r->state) {
      char lag[32];
      fmt_double(lag, sizeof lag, r->lag);
      logf_event(m, r->state == RS_OK ? CVG_LOG_INFO : CVG_LOG_WARN, "replica_state", ds, r,
                 "state", rstate_names[r->state], "lag_seconds", lag);
    }
  }
  pthread_mutex_unlock(&ds->mu);
  if (rc)
    drop_conn(&j->st);
}

/* ---- canary ---- */

static void job_canary_write(cvg_monitor *m, job *j) {
  dset *ds = j->ds;
  const cvg_cat_probes *p = &ds->cfg->probes;
  rep *r = &ds->reps[ds->cfg->authority];
  cvg_error err;
  cvg_error_clear(&err);
  char token[64];
  double wall = cvg_wall_now();
  snprintf(token, sizeof token, "%" PRIx64 "-%" PRIx64, (uint64_t)(wall * 1e6),
           XXH3_64bits_withSeed(&j, sizeof j, (uint64_t)(wall * 1e9)) ^ (uint64_t)random());
  int rc = ensure_open(&j->st, r, 0, &err);
  if (!rc) /* keep the table small: canaries older than ten timeouts are gone */
    cvg_store_canary_purge(j->st, p->canary_table, ds->cfg->name,
                           wall - 10 * (p->canary_timeout > 60 ? p->canary_timeout : 60), NULL);
  if (!rc)
    rc = cvg_store_canary_write(j->st, p->canary_table, ds->cfg->name, token, wall,
                                p->create_tables, &err);
  pthread_mutex_lock(&ds->mu);
  if (rc) {
    set_up(m, ds, r, 0, &err);
  } else {
    if (ds->n_canaries == MAX_CANARIES) { /* the oldest has long timed out: count and drop */
      memmove(&ds->canaries[0], &ds->canaries[1], (MAX_CANARIES - 1) * sizeof ds->canaries[0]);
      ds->n_canaries--;
    }
    canary *c = &ds->canaries[ds->n_canaries++];
    snprintf(c->token, sizeof c->token, "%s", token);
    c->written_mono = cvg_mono_now();
    c->pending = 0;
    for (size_t i = 0; i < ds->n; i++)
      if ((int)i != ds->cfg->authority)
        c->pending |= 1u << i;
  }
  pthread_mutex_unlock(&ds->mu);
  if (rc)
    drop_conn(&j->st);
}

/* Records a canary outcome for the SLO (ds->mu held). */
static void outcome(dset *ds, int good) {
  if (!ds->out_t)
    return;
  ds->out_t[ds->out_head] = cvg_wall_now();
  ds->out_good[ds->out_head] = (unsigned char)good;
  ds->out_head = (ds->out_head + 1) % OUTCOMES;
  if (ds->out_n < OUTCOMES)
    ds->out_n++;
}

static void job_canary_poll(cvg_monitor *m, job *j) {
  dset *ds = j->ds;
  rep *r = &ds->reps[j->rep];
  const cvg_cat_probes *p = &ds->cfg->probes;
  uint32_t bit = 1u << j->rep;
  char tokens[MAX_CANARIES][64];
  size_t n = 0;
  pthread_mutex_lock(&ds->mu);
  for (size_t i = 0; i < ds->n_canaries; i++)
    if (ds->canaries[i].pending & bit)
      memcpy(tokens[n++], ds->canaries[i].token, 64);
  pthread_mutex_unlock(&ds->mu);
  if (n == 0)
    return;
  cvg_error err;
  cvg_error_clear(&err);
  int seen[MAX_CANARIES] = {0};
  int rc = ensure_open(&j->st, r, CVG_STORE_READONLY, &err);
  for (size_t i = 0; !rc && i < n; i++) {
    rc = cvg_store_canary_seen(j->st, p->canary_table, tokens[i], &seen[i], &err);
    if (rc == CVG_ENOTABLE) /* not replicated here yet */
      rc = CVG_OK;
  }
  double now = cvg_mono_now();
  pthread_mutex_lock(&ds->mu);
  if (rc)
    set_up(m, ds, r, 0, &err);
  for (size_t k = 0; k < ds->n_canaries; k++) {
    canary *c = &ds->canaries[k];
    if (!(c->pending & bit))
      continue;
    size_t i = 0;
    while (i < n && strcmp(tokens[i], c->token) != 0)
      i++;
    if (i < n && seen[i]) {
      hist_add(&r->conv, conv_le, CONV_BUCKETS, now - c->written_mono);
      r->last_conv = now - c->written_mono;
      r->canaries_seen++;
      c->pending &= ~bit;
      outcome(ds, !ds->cfg->slo.declared || now - c->written_mono <= ds->cfg->slo.within);
    } else if (now - c->written_mono > p->canary_timeout) {
      r->canary_failures++;
      r->fail_t[r->n_fail_t++ % 16] = cvg_wall_now();
      c->pending &= ~bit;
      outcome(ds, 0);
      char t[32];
      snprintf(t, sizeof t, "%g", p->canary_timeout);
      logf_event(m, CVG_LOG_WARN, "canary_timeout", ds, r, "timeout_seconds", t, "token", c->token);
    }
  }
  size_t w = 0; /* drop canaries every replica has settled */
  for (size_t k = 0; k < ds->n_canaries; k++)
    if (ds->canaries[k].pending)
      ds->canaries[w++] = ds->canaries[k];
  ds->n_canaries = w;
  pthread_mutex_unlock(&ds->mu);
  if (rc)
    drop_conn(&j->st);
}

/* ---- sweeps ---- */

/* The up replicas of ds, opening the job's connections as needed; returns how many. Each table
 * is described - a cheap query: is it still there? The reachable replicas go to idx[0..k), and
 * with descs their descriptions to descs[0..k) (the caller releases them). */
static size_t open_replicas(cvg_monitor *m, dset *ds, cvg_store **sts, size_t *idx, unsigned flags,
                            cvg_table_desc *descs) {
  size_t k = 0;
  for (size_t i = 0; i < ds->n; i++) {
    cvg_error err;
    cvg_error_clear(&err);
    cvg_table_desc desc;
    memset(&desc, 0, sizeof desc);
    int rc = ensure_open(&sts[i], &ds->reps[i], CVG_STORE_READONLY | flags, &err);
    if (rc == CVG_OK)
      rc = cvg_store_describe(sts[i], &desc, &err);
    if (rc == CVG_OK && descs)
      descs[k] = desc;
    else
      cvg_table_desc_release(&desc);
    pthread_mutex_lock(&ds->mu);
    set_up(m, ds, &ds->reps[i], rc == CVG_OK, &err);
    pthread_mutex_unlock(&ds->mu);
    if (rc)
      drop_conn(&sts[i]);
    else
      idx[k++] = i;
  }
  return k;
}

/* Prepares a diff over the replicas idx[0..k) to settle columns and see schema drift; with
 * descs (the tables as open_replicas described them), for that only: the caller reads rows. */
static int prepare(cvg_monitor *m, dset *ds, const size_t *idx, size_t k, int digests,
                   const cvg_table_desc *descs, cvg_diff **out, cvg_error *err) {
  const cvg_cat_dataset *c = ds->cfg;
  const char *urls[CVG_DIFF_MAX_REPLICAS];
  for (size_t i = 0; i < k; i++)
    urls[i] = c->replicas[idx[i]].url;
  cvg_diff_options o;
  cvg_diff_options_from_dataset(&o, c);
  o.urls = urls;
  o.n_urls = k;
  o.digests = digests;
  o.rows_per_sec = c->probes.full_sweep_rate;
  o.cancel = &m->cancel;
  o.described = descs;
  int rc = cvg_diff_prepare(out, &o, err);
  const char *warn = rc == CVG_OK ? cvg_diff_warnings(*out) : "";
  pthread_mutex_lock(&ds->mu);
  int was = ds->schema_drift;
  if (rc == CVG_ESCHEMA) {
    ds->schema_drift = 1;
    snprintf(ds->schema_msg, sizeof ds->schema_msg, "%s", err->msg);
  } else if (rc == CVG_OK) {
    ds->schema_drift = warn[0] != '\0';
    snprintf(ds->schema_msg, sizeof ds->schema_msg, "%s", warn);
  }
  if (rc == CVG_OK || rc == CVG_ESCHEMA) {
    if (ds->schema_drift != was)
      cvg_log(m->lg, ds->schema_drift ? CVG_LOG_WARN : CVG_LOG_INFO,
              ds->schema_drift ? "schema_drift" : "schema_drift_resolved", "dataset", c->name,
              "detail", ds->schema_msg, (const char *)NULL);
  }
  pthread_mutex_unlock(&ds->mu);
  return rc;
}

/* The replica a failed sweep could not read (ds->mu held): the one the sweep named, else the one
 * the error's input names; NULL when the failure is nobody's (a cancel, memory, a schema
 * difference, fewer than two replicas up - those have their own states and alerts). */
static rep *sweep_culprit(dset *ds, int rc, const cvg_error *err) {
  int i = ds->sweep_culprit;
  ds->sweep_culprit = -1;
  if (rc == CVG_OK || rc == CVG_ESCHEMA || rc == CVG_ENOMEM || rc == CVG_EDOWN)
    return NULL;
  for (size_t k = 0; i < 0 && err && err->input[0] && k < ds->n; k++)
    if (strcmp(err->input, ds->reps[k].cfg->url_display) == 0)
      i = (int)k;
  return i >= 0 && (size_t)i < ds->n && ds->reps[i].up == 1 ? &ds->reps[i] : NULL;
}

/* What status and metrics call the replica's state: its replication state, or "error" while it
 * answers probes but its sweeps fail. */
static rstate shown_state(const rep *r) {
  if (r->up == 1 && (r->sweep_streak[KIND_INCR] || r->sweep_streak[KIND_FULL]))
    return RS_ERROR;
  return r->state;
}

/* The replica's error for people: why it is down, else why its sweeps fail, else "". */
static const char *rep_error(const rep *r) {
  if (r->error[0] || r->up != 1)
    return r->error;
  return shown_state(r) == RS_ERROR ? r->sweep_error : "";
}

static void sweep_done(cvg_monitor *m, dset *ds, int kind, int rc, double started,
                       const cvg_error *err) {
  if (rc && __atomic_load_n(&m->cancel, __ATOMIC_RELAXED))
    return; /* stopped on purpose (shutdown, reload): not a failure */
  double dur = cvg_mono_now() - started;
  pthread_mutex_lock(&ds->mu);
  hist_add(&ds->sweep_dur[kind], sweep_le, SWEEP_BUCKETS, dur);
  if (rc == CVG_OK)
    ds->sweeps_ok[kind]++;
  else
    ds->sweeps_err[kind]++;
  rep *who = sweep_culprit(ds, rc, err);
  for (size_t i = 0; i < ds->n; i++) /* a sweep that read the replica, or failed elsewhere */
    if (rc == CVG_OK && ds->reps[i].up == 1)
      ds->reps[i].sweep_streak[kind] = 0;
  uint32_t streak = 0;
  if (who) {
    who->read_errors++;
    streak = ++who->sweep_streak[kind];
    snprintf(who->sweep_error, sizeof who->sweep_error, "%s sweep failed: %s", kind_names[kind],
             err ? err->msg : "");
  }
  pthread_mutex_unlock(&ds->mu);
  if (rc && rc != CVG_ESCHEMA) {
    char n[16];
    snprintf(n, sizeof n, "%u", streak);
    cvg_log(m->lg, CVG_LOG_WARN, "sweep_failed", "dataset", ds->cfg->name, "kind", kind_names[kind],
            "replica", who ? who->cfg->name : "", "consecutive", n, "error", err ? err->msg : "",
            "input", err ? err->input : "", (const char *)NULL);
  }
}

typedef struct full_ctx {
  dset *ds;
  const size_t *idx; /* replica of each diff input */
  size_t k;
  double now, wait;
} full_ctx;

static int full_cb(void *vctx, const cvg_divergence *dv) {
  full_ctx *fc = vctx;
  keystate ks;
  memset(&ks, 0, sizeof ks);
  for (size_t i = 0; i < fc->k; i++) {
    ks.copies[fc->idx[i]] = dv->copies[i];
    ks.known[fc->idx[i]] = 1;
  }
  pthread_mutex_lock(&fc->ds->mu);
  fc->ds->probe = "full sweep";
  record_key(fc->ds, dv->key, dv->key_len, dv->cls, &ks, fc->now, fc->wait, 0);
  fc->ds->probe = NULL;
  uint64_t h = XXH3_64bits(dv->key, dv->key_len);
  tracked *t = tr_find(fc->ds, dv->key, dv->key_len, h, NULL);
  if (t)
    t->last_checked = -t->last_checked - 1; /* mark: seen by this sweep (restored below) */
  pthread_mutex_unlock(&fc->ds->mu);
  return 0;
}

static int in_window(const cvg_cat_probes *p) {
  if (p->window_start < 0)
    return 1;
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  int min = tm.tm_hour * 60 + tm.tm_min;
  if (p->window_start < p->window_end)
    return min >= p->window_start && min < p->window_end;
  return min >= p->window_start || min < p->window_end;
}

static int full_sweep(cvg_monitor *m, dset *ds, cvg_store **sts, cvg_error *err) {
  size_t idx[CVG_DIFF_MAX_REPLICAS];
  size_t k = open_replicas(m, ds, sts, idx, 0, NULL);
  if (k < 2)
    return cvg_error_set(err, CVG_EDOWN, ds->cfg->name,
                         "fewer than two replicas reachable; nothing to compare");
  cvg_diff *d = NULL;
  int rc = prepare(m, ds, idx, k, 1, NULL, &d, err);
  if (rc)
    return rc;
  pthread_mutex_lock(&ds->mu);
  full_ctx fc = {ds, idx, k, cvg_wall_now(), confirm_wait(ds)};
  pthread_mutex_unlock(&ds->mu);
  cvg_diff_summary sum;
  rc = cvg_diff_run(d, full_cb, &fc, &sum, err);
  pthread_mutex_lock(&ds->mu);
  int failed = rc ? cvg_diff_failed_replica(d) : -1;
  ds->sweep_culprit = failed >= 0 ? (int)idx[failed] : -1;
  if (rc == CVG_OK && !sum.stopped_early) {
    /* Keys tracked but not found divergent by the sweep agree now (on the replicas read). */
    for (size_t i = 0; i < ds->tab_cap;) {
      tracked *t = ds->tab[i];
      if (t && t->last_checked >= 0) {
        int involved_down = 0;
        for (size_t r = 0; r < ds->n; r++)
          if (t->rstates[r] != 3 && !ds->reps[r].up)
            involved_down = 1;
        if (!involved_down) {
          ds->resolved[t->confirmed]++;
          tr_remove_slot(ds, i);
          continue; /* slot i now holds a shifted entry (or NULL) */
        }
      }
      i++;
    }
    for (size_t i = 0; i < ds->tab_cap; i++)
      if (ds->tab[i] && ds->tab[i]->last_checked < 0)
        ds->tab[i]->last_checked = -ds->tab[i]->last_checked - 1;
    for (size_t i = 0; i < k; i++) {
      rep *r = &ds->reps[idx[i]];
      memcpy(r->digest, sum.digest + i * ds->cfg->shards, ds->cfg->shards * sizeof(cvg_fp));
      r->digest_valid = 1;
      r->rows_read[KIND_FULL] += sum.rows[i];
      if (sum.max_version_len[i] && sum.max_version_len[i] <= sizeof r->wm &&
          (r->wm_len == 0 ||
           cvg_key_compare(sum.max_version[i], sum.max_version_len[i], r->wm, r->wm_len) > 0)) {
        memcpy(r->wm, sum.max_version[i], sum.max_version_len[i]);
        r->wm_len = sum.max_version_len[i];
      }
    }
    for (size_t r = 0; r < ds->n; r++) {
      int in = 0;
      for (size_t i = 0; i < k; i++)
        in |= idx[i] == r;
      if (!in)
        ds->reps[r].digest_valid = 0;
    }
    ds->keys_total = sum.keys;
    ds->have_full = 1;
    ds->full_requested = 0;
    ds->last_full_wall = cvg_wall_now();
    if (!ds->first_full_wall)
      ds->first_full_wall = ds->last_full_wall;
    if (ds->tr.restored) /* the sweep found nothing of the restored episode: it is over */
      ds->tr.active = ds->tr.restored = 0;
  } else {
    for (size_t i = 0; i < ds->tab_cap; i++)
      if (ds->tab[i] && ds->tab[i]->last_checked < 0)
        ds->tab[i]->last_checked = -ds->tab[i]->last_checked - 1;
    if (rc == CVG_OK)
      rc = cvg_error_set(err, CVG_EINVAL, ds->cfg->name, "full sweep cancelled");
  }
  pthread_mutex_unlock(&ds->mu);
  cvg_diff_free(d);
  return rc;
}

/* A bump allocator for the keys and versions of one check: chunks never move, so pointers into
 * them stay valid, and everything is freed at once. */
typedef struct chunk {
  struct chunk *next;
  size_t used, cap;
  unsigned char data[];
} chunk;

static void *arena_alloc(chunk **head, size_t n) {
  if (!*head || (*head)->cap - (*head)->used < n) {
    size_t cap = n > 65536 ? n : 65536;
    chunk *c = malloc(sizeof *c + cap);
    if (!c)
      return NULL;
    c->next = *head;
    c->used = 0;
    c->cap = cap;
    *head = c;
  }
  void *p = (*head)->data + (*head)->used;
  (*head)->used += n;
  return p;
}

static void arena_free(chunk **head) {
  while (*head) {
    chunk *next = (*head)->next;
    free(*head);
    *head = next;
  }
}

/* Keys an incremental check compares, with what each replica said of them. */
typedef struct change {
  const unsigned char *key; /* in the arena */
  size_t key_len;
  uint64_t hash;
  uint32_t have; /* bit i: replica i's copy is known (scanned or looked up) */
} change;

typedef struct changeset {
  change *items;
  cvg_copy *copies; /* n_rep per item: item k's copy on replica i is copies[k * n_rep + i] */
  size_t n_rep;
  size_t n, cap;
  size_t *slots; /* open addressing: index+1 into items, 0 empty */
  size_t slot_cap;
  chunk *arena; /* keys and versions */
} changeset;

static void cs_free(changeset *cs) {
  free(cs->items);
  free(cs->copies);
  free(cs->slots);
  arena_free(&cs->arena);
  memset(cs, 0, sizeof *cs);
}

static cvg_copy *cs_copy(changeset *cs, size_t k, size_t i) {
  return &cs->copies[k * cs->n_rep + i];
}

/* Makes room for n more keys without growing while they are added. */
static int cs_reserve(changeset *cs, size_t n) {
  size_t want = cs->n + n;
  if (want > cs->cap) {
    size_t cap = cs->cap ? cs->cap * 2 : 1024;
    if (cap < want)
      cap = want;
    change *items = realloc(cs->items, cap * sizeof *items);
    if (!items)
      return CVG_ENOMEM;
    cs->items = items;
    cvg_copy *copies = realloc(cs->copies, cap * cs->n_rep * sizeof *copies);
    if (!copies)
      return CVG_ENOMEM;
    cs->copies = copies;
    cs->cap = cap;
  }
  size_t slots = cs->slot_cap ? cs->slot_cap : 4096;
  while (slots < 2 * (want + 1))
    slots *= 2;
  if (slots > cs->slot_cap) {
    size_t *s = calloc(slots, sizeof *s);
    if (!s)
      return CVG_ENOMEM;
    for (size_t i = 0; i < cs->n; i++) {
      size_t k = (size_t)cs->items[i].hash & (slots - 1);
      while (s[k])
        k = (k + 1) & (slots - 1);
      s[k] = i + 1;
    }
    free(cs->slots);
    cs->slots = s;
    cs->slot_cap = slots;
  }
  return CVG_OK;
}

/* The index of key in the set, added if new; SIZE_MAX when out of memory. */
static size_t cs_get(changeset *cs, const unsigned char *key, size_t key_len) {
  uint64_t h = XXH3_64bits(key, key_len);
  if (cs_reserve(cs, 1) != CVG_OK) /* room for one more key: a no-op unless full */
    return SIZE_MAX;
  size_t s = (size_t)h & (cs->slot_cap - 1);
  for (; cs->slots[s]; s = (s + 1) & (cs->slot_cap - 1)) {
    change *c = &cs->items[cs->slots[s] - 1];
    if (c->hash == h && c->key_len == key_len && memcmp(c->key, key, key_len) == 0)
      return cs->slots[s] - 1;
  }
  change *c = &cs->items[cs->n];
  unsigned char *k = arena_alloc(&cs->arena, key_len ? key_len : 1);
  if (!k)
    return SIZE_MAX;
  memcpy(k, key, key_len);
  c->key = k;
  c->key_len = key_len;
  c->hash = h;
  c->have = 0;
  memset(cs_copy(cs, cs->n, 0), 0, cs->n_rep * sizeof(cvg_copy));
  cs->slots[s] = ++cs->n;
  return cs->n - 1;
}

/* Keeps replica i's copy of item k: the row, or absent when !found. */
static int cs_set(changeset *cs, size_t k, size_t i, const cvg_scan_row *row, int found) {
  cvg_copy *cp = cs_copy(cs, k, i);
  memset(cp, 0, sizeof *cp);
  cs->items[k].have |= 1u << i;
  if (!found)
    return CVG_OK;
  cp->state = row->tombstone ? CVG_TOMBSTONED : CVG_LIVE;
  cp->fp = row->fp;
  cp->version_len = row->version_len;
  if (row->version_len) {
    unsigned char *v = arena_alloc(&cs->arena, row->version_len);
    if (!v)
      return CVG_ENOMEM;
    memcpy(v, row->version, row->version_len);
    cp->version = v;
  }
  return CVG_OK;
}

/* One replica's incremental read, run on its own thread (its connection is used by no one
 * else meanwhile). Rows are packed into an arena: since_rec, key bytes, version bytes. */
typedef struct since_rec {
  cvg_fp fp;
  uint32_t key_len, ver_len;
  int tomb;
} since_rec;

typedef struct since_read {
  cvg_store *st;         /* BORROWED: the job's connection to the replica */
  cvg_scan_spec spec;    /* with since = wm */
  unsigned char wm[256]; /* the watermark read from */
  size_t wm_len;
  unsigned char new_wm[256]; /* the greatest version read */
  size_t new_wm_len;
  cvg_buf rows; /* the arena */
  uint64_t n_rows;
  const unsigned char **recs; /* OWNED; the n_rows records in the arena, in key order */
  int sorted;                 /* recs is set: ascending keys, no key twice */
  int rc;                     /* status of the read */
  cvg_error err;              /* its detail */
  int active;                 /* the replica was read */
  int started;                /* a thread was started */
  pthread_t thread;
} since_read;

static int rec_cmp(const void *a, const void *b) {
  const unsigned char *x = *(const unsigned char *const *)a, *y = *(const unsigned char *const *)b;
  since_rec hx, hy;
  memcpy(&hx, x, sizeof hx);
  memcpy(&hy, y, sizeof hy);
  return cvg_key_compare(x + sizeof hx, hx.key_len, y + sizeof hy, hy.key_len);
}

/* Points sr->recs at the records read, in key order (the fast path yields them so; any other
 * order is sorted here, on the reader's thread). A key read twice leaves sr->sorted 0: the
 * caller then folds by hashing instead of merging. */
static void since_index(since_read *sr) {
  size_t n = (size_t)sr->n_rows;
  if (!n) {
    sr->sorted = 1; /* nothing read: nothing out of order */
    return;
  }
  if (!(sr->recs = malloc(n * sizeof *sr->recs)))
    return;
  const unsigned char *p = sr->rows.data;
  int in_order = 1;
  for (size_t i = 0; i < n; i++) {
    since_rec h;
    memcpy(&h, p, sizeof h);
    sr->recs[i] = p;
    if (i && in_order && rec_cmp(&sr->recs[i - 1], &sr->recs[i]) >= 0)
      in_order = 0;
    p += sizeof h + h.key_len + h.ver_len;
  }
  if (!in_order) {
    qsort(sr->recs, n, sizeof *sr->recs, rec_cmp);
    for (size_t i = 1; i < n; i++)
      if (rec_cmp(&sr->recs[i - 1], &sr->recs[i]) == 0)
        return; /* a key twice: not sorted */
  }
  sr->sorted = 1;
}

static void *since_main(void *arg) {
  since_read *sr = arg;
  cvg_scan *sc = NULL;
  int rc = cvg_scan_open(sr->st, &sr->spec, &sc, &sr->err);
  cvg_scan_row row;
  while (!rc && (rc = cvg_scan_next(sc, &row, &sr->err)) == CVG_OK) {
    since_rec h = {row.fp, (uint32_t)row.key_len, (uint32_t)row.version_len, row.tombstone};
    if (sr->n_rows >= MAX_CHANGED) /* the caller stops there too */
      break;
    if (cvg_buf_append(&sr->rows, &h, sizeof h) ||
        cvg_buf_append(&sr->rows, row.key, row.key_len) ||
        (row.version_len && cvg_buf_append(&sr->rows, row.version, row.version_len))) {
      rc = cvg_error_set(&sr->err, CVG_ENOMEM, cvg_store_url(sr->st), "out of memory");
      break;
    }
    sr->n_rows++;
    if (row.version_len && row.version_len <= sizeof sr->new_wm &&
        cvg_key_compare(row.version, row.version_len, sr->new_wm, sr->new_wm_len) > 0) {
      memcpy(sr->new_wm, row.version, row.version_len);
      sr->new_wm_len = row.version_len;
    }
  }
  if (rc == CVG_DONE)
    rc = CVG_OK;
  cvg_scan_close(sc);
  if (!rc && sr->n_rows < MAX_CHANGED)
    since_index(sr);
  sr->rc = rc;
  return NULL;
}

/* Merges the k sorted reads (reads[x] of replica idx[x]) key by key: a key that every replica
 * yielded with the same copy (cvg_classify: none) and that is not tracked is only counted in
 * *agreed; every other key goes into the change set with the copies read. */
static int merge_reads(dset *ds, since_read *reads, const size_t *idx, size_t k, changeset *cs,
                       uint64_t *agreed, cvg_error *err) {
  size_t pos[CVG_DIFF_MAX_REPLICAS] = {0};
  int rc = CVG_OK;
  pthread_mutex_lock(&ds->mu); /* tr_find reads the tracked keys */
  while (!rc) {
    since_rec h[CVG_DIFF_MAX_REPLICAS];
    const unsigned char *key[CVG_DIFF_MAX_REPLICAS];
    const unsigned char *mk = NULL;
    size_t mlen = 0;
    for (size_t x = 0; x < k; x++) {
      key[x] = NULL;
      if (pos[x] == reads[x].n_rows)
        continue;
      memcpy(&h[x], reads[x].recs[pos[x]], sizeof h[x]);
      key[x] = reads[x].recs[pos[x]] + sizeof h[x];
      if (!mk || cvg_key_compare(key[x], h[x].key_len, mk, mlen) < 0) {
        mk = key[x];
        mlen = h[x].key_len;
      }
    }
    if (!mk)
      break;
    /* The bulk: every replica holds the same copy (state, fingerprint, version), which
     * cvg_classify would call agreement; only then is the key looked for among the tracked. */
    size_t have = 0;
    int same = 1;
    for (size_t x = 0; x < k; x++) {
      if (!key[x] || h[x].key_len != mlen || memcmp(key[x], mk, mlen) != 0) {
        key[x] = NULL; /* not at this key */
        same = 0;
        continue;
      }
      have++;
      if (x && same)
        same = h[x].tomb == h[0].tomb && cvg_fp_equal(h[x].fp, h[0].fp) &&
               h[x].ver_len == h[0].ver_len &&
               memcmp(key[x] + mlen, key[0] + mlen, h[x].ver_len) == 0;
    }
    if (have == k && same &&
        (!ds->n_tracked || !tr_find(ds, mk, mlen, XXH3_64bits(mk, mlen), NULL))) {
      (*agreed)++;
    } else if (cs->n >= MAX_CHANGED) {
      ds->full_requested = 1;
      rc = cvg_error_set(err, CVG_ETOOBIG, ds->cfg->name,
                         "more than %u rows changed since the last check; a full sweep follows",
                         MAX_CHANGED);
    } else {
      size_t c = cs_get(cs, mk, mlen);
      for (size_t x = 0; c != SIZE_MAX && x < k && !rc; x++) {
        if (!key[x])
          continue;
        cvg_scan_row row;
        memset(&row, 0, sizeof row);
        row.key = key[x];
        row.key_len = h[x].key_len;
        row.version = key[x] + h[x].key_len;
        row.version_len = h[x].ver_len;
        row.fp = h[x].fp;
        row.tombstone = h[x].tomb;
        if (cs_set(cs, c, idx[x], &row, 1))
          c = SIZE_MAX;
      }
      if (c == SIZE_MAX)
        rc = cvg_error_set(err, CVG_ENOMEM, ds->cfg->name, "out of memory");
    }
    for (size_t x = 0; x < k; x++)
      if (key[x])
        pos[x]++;
  }
  pthread_mutex_unlock(&ds->mu);
  return rc;
}

static int incremental(cvg_monitor *m, dset *ds, cvg_store **sts, uint64_t *compared,
                       cvg_error *err) {
  size_t idx[CVG_DIFF_MAX_REPLICAS];
  *compared = 0;
  cvg_table_desc descs[CVG_DIFF_MAX_REPLICAS];
  size_t k = open_replicas(m, ds, sts, idx, ds->cfg->probes.keep_mapped ? CVG_STORE_KEEP_MAPPED : 0,
                           descs);
  cvg_diff *d = NULL;
  int rc = k < 2 ? cvg_error_set(err, CVG_EDOWN, ds->cfg->name,
                                 "fewer than two replicas reachable; nothing to compare")
                 : prepare(m, ds, idx, k, 0, descs, &d, err); /* no new connection */
  for (size_t x = 0; x < k; x++)
    cvg_table_desc_release(&descs[x]);
  if (rc)
    return rc;
  size_t n_key, n_cmp;
  cvg_scan_spec spec;
  memset(&spec, 0, sizeof spec);
  spec.key_cols = cvg_diff_key_cols(d, &n_key);
  spec.n_key = n_key;
  spec.cmp_cols = cvg_diff_cmp_cols(d, &n_cmp);
  spec.n_cmp = n_cmp;
  spec.version_col = cvg_diff_version_col(d); /* as the tables spell them */
  spec.tombstone_col = cvg_diff_tombstone_col(d);
  spec.real_digits = ds->cfg->real_digits;
  spec.time_digits = ds->cfg->time_digits;
  changeset cs;
  memset(&cs, 0, sizeof cs);
  cs.n_rep = ds->n;
  unsigned char new_wm[CVG_DIFF_MAX_REPLICAS][256];
  size_t new_wm_len[CVG_DIFF_MAX_REPLICAS] = {0};
  uint64_t rows[CVG_DIFF_MAX_REPLICAS] = {0};

  /* Without an index on the version column, "version >= watermark" reads the whole table every
   * time: say so once per replica, loudly, since the check then costs O(table). */
  for (size_t x = 0; ds->cfg->version && x < k; x++) {
    rep *r = &ds->reps[idx[x]];
    int yes = 1;
    if (r->index_checked || cvg_store_has_index(sts[idx[x]], ds->cfg->version, &yes, NULL))
      continue;
    r->index_checked = 1;
    if (!yes)
      cvg_log(m->lg, CVG_LOG_WARN, "no_version_index", "dataset", ds->cfg->name, "replica",
              r->cfg->name, "column", ds->cfg->version, "hint",
              "incremental checks read the whole table without an index whose first column is "
              "the version column; create one",
              (const char *)NULL);
  }
  /* 1. rows past each replica's watermark, every replica read by its own thread */
  since_read reads[CVG_DIFF_MAX_REPLICAS];
  memset(reads, 0, sizeof reads);
  for (size_t x = 0; ds->cfg->version && x < k; x++) {
    size_t i = idx[x];
    since_read *sr = &reads[x];
    sr->st = sts[i];
    sr->spec = spec;
    cvg_buf_init(&sr->rows, (size_t)1 << 31);
    cvg_error_clear(&sr->err);
    pthread_mutex_lock(&ds->mu);
    sr->wm_len = ds->reps[i].wm_len;
    memcpy(sr->wm, ds->reps[i].wm, sr->wm_len);
    pthread_mutex_unlock(&ds->mu);
    if (!sr->wm_len)
      continue; /* no watermark until a full sweep has read this replica */
    memcpy(sr->new_wm, sr->wm, sr->wm_len);
    sr->new_wm_len = sr->wm_len;
    sr->spec.since = sr->wm;
    sr->spec.since_len = sr->wm_len;
    sr->active = 1;
    sr->started = k > 1 && pthread_create(&sr->thread, NULL, since_main, sr) == 0;
    if (!sr->started)
      since_main(sr);
  }
  int merge = ds->cfg->version != NULL && k >= 2;
  for (size_t x = 0; ds->cfg->version && x < k; x++) {
    if (reads[x].started)
      pthread_join(reads[x].thread, NULL);
    merge = merge && reads[x].active && !reads[x].rc && reads[x].sorted;
  }
  /* Every replica read its rows in key order: merge them. Keys whose copies agree everywhere
   * and that are not tracked need no change-set entry (the bulk of a check: rows that
   * replicated), so only the others are hashed into it. Otherwise, fold every row by hashing. */
  uint64_t agreed = 0;
  if (merge && (rc = merge_reads(ds, reads, idx, k, &cs, &agreed, err)) == CVG_OK) {
    for (size_t x = 0; x < k; x++) {
      rows[idx[x]] = reads[x].n_rows;
      memcpy(new_wm[idx[x]], reads[x].new_wm, reads[x].new_wm_len);
      new_wm_len[idx[x]] = reads[x].new_wm_len;
    }
  }
  for (size_t x = 0; !merge && ds->cfg->version && x < k; x++) {
    since_read *sr = &reads[x];
    size_t i = idx[x];
    if (x == 0 && !rc && cs_reserve(&cs, (size_t)(sr->n_rows < MAX_CHANGED ? sr->n_rows : 0)))
      rc = cvg_error_set(err, CVG_ENOMEM, ds->cfg->name, "out of memory");
    if (!sr->active)
      continue;
    rows[i] = sr->n_rows;
    memcpy(new_wm[i], sr->new_wm, sr->new_wm_len);
    new_wm_len[i] = sr->new_wm_len;
    if (!rc && sr->rc) {
      rc = sr->rc;
      if (err)
        *err = sr->err;
      if (rc != CVG_ENOMEM) {
        pthread_mutex_lock(&ds->mu);
        set_up(m, ds, &ds->reps[i], 0, &sr->err);
        pthread_mutex_unlock(&ds->mu);
        drop_conn(&sts[i]);
      }
    }
    /* fold the rows into the change set */
    const unsigned char *p = sr->rows.data, *e = p ? p + sr->rows.len : p; /* none read: NULL */
    while (!rc && p < e) {
      since_rec h;
      memcpy(&h, p, sizeof h);
      p += sizeof h;
      if (cs.n >= MAX_CHANGED) {
        pthread_mutex_lock(&ds->mu);
        ds->full_requested = 1;
        pthread_mutex_unlock(&ds->mu);
        rc = cvg_error_set(err, CVG_ETOOBIG, ds->cfg->name,
                           "more than %u rows changed since the last check; a full sweep "
                           "follows",
                           MAX_CHANGED);
        break;
      }
      cvg_scan_row row;
      memset(&row, 0, sizeof row);
      row.key = p;
      row.key_len = h.key_len;
      row.version = p + h.key_len;
      row.version_len = h.ver_len;
      row.fp = h.fp;
      row.tombstone = h.tomb;
      p += h.key_len + h.ver_len;
      size_t c = cs_get(&cs, row.key, row.key_len);
      if (c == SIZE_MAX || cs_set(&cs, c, i, &row, 1))
        rc = cvg_error_set(err, CVG_ENOMEM, ds->cfg->name, "out of memory");
    }
  }
  for (size_t x = 0; x < k; x++) {
    cvg_buf_release(&reads[x].rows);
    free(reads[x].recs);
  }
  /* 2. every tracked key is re-checked */
  if (!rc) {
    pthread_mutex_lock(&ds->mu);
    for (size_t s = 0; s < ds->tab_cap && !rc; s++)
      if (ds->tab[s] && cs_get(&cs, ds->tab[s]->key, ds->tab[s]->key_len) == SIZE_MAX)
        rc = cvg_error_set(err, CVG_ENOMEM, ds->cfg->name, "out of memory");
    pthread_mutex_unlock(&ds->mu);
  }
  /* 3. look each key up where the scans did not yield it: a replica at a time, in one read
   * transaction (one snapshot, and one lock instead of one per key) */
  for (size_t x = 0; !rc && x < k; x++) {
    size_t i = idx[x];
    int txn = 0;
    for (size_t c = 0; !rc && c < cs.n; c++) {
      if (cs.items[c].have & (1u << i))
        continue;
      if (!txn)
        txn = cvg_store_read_txn(sts[i], 1, NULL) == CVG_OK ? 1 : -1; /* -1: key by key */
      cvg_scan_row row;
      int found = 0;
      rc = cvg_store_lookup(sts[i], &spec, cs.items[c].key, cs.items[c].key_len, &row, &found, err);
      if (rc && rc != CVG_ENOMEM) {
        pthread_mutex_lock(&ds->mu);
        ds->sweep_culprit = (int)i;
        pthread_mutex_unlock(&ds->mu);
      }
      if (!rc && cs_set(&cs, c, i, &row, found))
        rc = cvg_error_set(err, CVG_ENOMEM, ds->cfg->name, "out of memory");
    }
    if (txn == 1)
      cvg_store_read_txn(sts[i], 0, NULL);
  }
  /* 4. classify and record */
  if (!rc) {
    double now = cvg_wall_now();
    pthread_mutex_lock(&ds->mu);
    double wait = confirm_wait(ds);
    ds->probe = "incremental check";
    for (size_t c = 0; c < cs.n; c++) {
      cvg_copy sub[CVG_DIFF_MAX_REPLICAS];
      for (size_t x = 0; x < k; x++)
        sub[x] = *cs_copy(&cs, c, idx[x]);
      int cls = cvg_classify(sub, k, ds->cfg->version != NULL, 0, NULL);
      if (cls < 0)
        continue;
      uint64_t h = cs.items[c].hash;
      if (cls == CVG_CLASS_NONE && !tr_find(ds, cs.items[c].key, cs.items[c].key_len, h, NULL))
        continue; /* agrees and was not tracked: nothing to record (see "Shard digests") */
      keystate ks;
      memset(&ks, 0, sizeof ks);
      for (size_t x = 0; x < k; x++) {
        ks.copies[idx[x]] = sub[x];
        ks.known[idx[x]] = 1;
      }
      record_key(ds, cs.items[c].key, cs.items[c].key_len, (cvg_class)cls, &ks, now, wait, 1);
    }
    for (size_t x = 0; x < k; x++) {
      rep *r = &ds->reps[idx[x]];
      r->rows_read[KIND_INCR] += rows[idx[x]];
      if (new_wm_len[idx[x]] &&
          (r->wm_len == 0 ||
           cvg_key_compare(new_wm[idx[x]], new_wm_len[idx[x]], r->wm, r->wm_len) > 0)) {
        memcpy(r->wm, new_wm[idx[x]], new_wm_len[idx[x]]);
        r->wm_len = new_wm_len[idx[x]];
      }
    }
    if (ds->last_incr_wall > 0 && now > ds->last_incr_wall) {
      uint64_t most = 0;
      for (size_t x = 0; x < k; x++)
        most = rows[idx[x]] > most ? rows[idx[x]] : most;
      ds->write_rate = (double)most / (now - ds->last_incr_wall);
    }
    ds->last_incr_wall = now;
    ds->probe = NULL;
    pthread_mutex_unlock(&ds->mu);
    *compared = cs.n + agreed;
  }
  /* 5. equal aggregates */
  for (size_t a = 0; !rc && a < ds->cfg->inv.n_aggregates; a++) {
    for (size_t x = 0; x < k; x++) {
      double v = 0;
      int is_null = 0;
      cvg_error aerr;
      cvg_error_clear(&aerr);
      int arc = cvg_store_scalar(sts[idx[x]], ds->cfg->inv.aggregates[a].expr, &v, &is_null, &aerr);
      pthread_mutex_lock(&ds->mu);
      ds->reps[idx[x]].agg[a] = is_null ? 0 : v;
      ds->reps[idx[x]].agg_ok[a] = arc == CVG_OK;
      pthread_mutex_unlock(&ds->mu);
      if (arc)
        cvg_log(m->lg, CVG_LOG_WARN, "aggregate_failed", "dataset", ds->cfg->name, "replica",
                ds->reps[idx[x]].cfg->name, "error", aerr.msg, (const char *)NULL);
    }
  }
  cs_free(&cs);
  cvg_diff_free(d);
  return rc;
}

static void origin_cause(dset *ds, cvg_store **sts);

static void job_full(cvg_monitor *m, job *j) {
  dset *ds = j->ds;
  if (!in_window(&ds->cfg->probes)) {
    j->interval = 60; /* look again in a minute */
    return;
  }
  j->interval = ds->cfg->probes.full_sweep_interval;
  pthread_mutex_lock(&ds->sweep_mu);
  double t0 = cvg_mono_now();
  cvg_error err;
  cvg_error_clear(&err);
  int rc = full_sweep(m, ds, j->sts, &err);
  sweep_done(m, ds, KIND_FULL, rc, t0, &err);
  pthread_mutex_unlock(&ds->sweep_mu);
  if (rc == CVG_OK) {
    char n[32], dur[32];
    snprintf(n, sizeof n, "%zu", ds->n_tracked);
    snprintf(dur, sizeof dur, "%.3f", cvg_mono_now() - t0);
    cvg_log(m->lg, CVG_LOG_INFO, "full_sweep", "dataset", ds->cfg->name, "tracked", n,
            "duration_seconds", dur, (const char *)NULL);
  }
  if (rc == CVG_OK)
    origin_cause(ds, j->sts);
  /* The job's connections are not kept between full sweeps: they are hours apart. */
  for (size_t i = 0; i < ds->n; i++)
    drop_conn(&j->sts[i]);
}

static void job_incr(cvg_monitor *m, job *j) {
  dset *ds = j->ds;
  if (pthread_mutex_trylock(&ds->sweep_mu) != 0)
    return; /* a full sweep is running: it will do better */
  double t0 = cvg_mono_now();
  cvg_error err;
  cvg_error_clear(&err);
  uint64_t n = 0;
  int rc = incremental(m, ds, j->sts, &n, &err);
  sweep_done(m, ds, KIND_INCR, rc, t0, &err);
  pthread_mutex_unlock(&ds->sweep_mu);
  if (rc == CVG_OK)
    origin_cause(ds, j->sts);
}

/* ---- invariants ---- */

static void set_inv(cvg_monitor *m, dset *ds, size_t i, const char *name, int known, int ok,
                    double value, double limit) {
  inv_result *r = &ds->inv[i];
  int was_known = r->known, was_ok = r->ok;
  r->name = name;
  r->known = known;
  r->ok = ok;
  r->value = value;
  r->limit = limit;
  if (known && (!was_known || was_ok != ok) && (was_known || !ok)) {
    char v[32], l[32];
    fmt_double(v, sizeof v, value);
    fmt_double(l, sizeof l, limit);
    cvg_log(m->lg, ok ? CVG_LOG_INFO : CVG_LOG_WARN,
            ok ? "invariant_restored" : "invariant_violated", "dataset", ds->cfg->name, "invariant",
            name, "value", v, "limit", l, (const char *)NULL);
  }
}

static void job_inv(cvg_monitor *m, job *j) {
  dset *ds = j->ds;
  const cvg_cat_invariants *iv = &ds->cfg->inv;
  double now = cvg_wall_now();
  pthread_mutex_lock(&ds->mu);
  size_t n = 0, n_up = 0;
  for (size_t i = 0; i < ds->n; i++)
    n_up += ds->reps[i].up != 0;
  uint64_t confirmed = 0;
  double oldest = 0;
  int min_agree = (int)n_up;
  for (size_t s = 0; s < ds->tab_cap; s++) {
    tracked *t = ds->tab[s];
    if (!t || !t->confirmed)
      continue;
    confirmed++;
    if (now - t->first_seen > oldest)
      oldest = now - t->first_seen;
    if (t->agreeing < min_agree)
      min_agree = t->agreeing;
  }
  if (iv->max_lag_seconds >= 0) {
    double worst = 0;
    int known = ds->cfg->authority >= 0;
    for (size_t i = 0; i < ds->n; i++)
      if ((int)i != ds->cfg->authority && ds->reps[i].up != 0) {
        if (ds->reps[i].up < 0)
          known = 0;
        else if (isnan(ds->reps[i].lag))
          worst = INFINITY; /* no heartbeat has arrived: stopped */
        else if (ds->reps[i].lag > worst)
          worst = ds->reps[i].lag;
      }
    set_inv(m, ds, n++, "max_lag_seconds", known, worst <= iv->max_lag_seconds, worst,
            iv->max_lag_seconds);
  }
  if (iv->max_divergent_rows >= 0)
    set_inv(m, ds, n++, "max_divergent_rows", ds->have_full,
            confirmed <= (uint64_t)iv->max_divergent_rows, (double)confirmed,
            (double)iv->max_divergent_rows);
  if (iv->max_divergent_fraction >= 0) {
    double f = ds->keys_total ? (double)confirmed / (double)ds->keys_total : 0;
    set_inv(m, ds, n++, "max_divergent_fraction", ds->have_full, f <= iv->max_divergent_fraction, f,
            iv->max_divergent_fraction);
  }
  if (iv->min_agreeing_replicas >= 0)
    set_inv(m, ds, n++, "min_agreeing_replicas", ds->have_full,
            min_agree >= iv->min_agreeing_replicas, (double)min_agree,
            (double)iv->min_agreeing_replicas);
  if (iv->max_divergence_age_seconds >= 0)
    set_inv(m, ds, n++, "max_divergence_age_seconds", ds->have_full,
            oldest <= iv->max_divergence_age_seconds, oldest, iv->max_divergence_age_seconds);
  for (size_t a = 0; a < iv->n_aggregates && n < sizeof ds->inv / sizeof ds->inv[0]; a++) {
    double lo = INFINITY, hi = -INFINITY;
    int known = 1, count = 0;
    for (size_t i = 0; i < ds->n; i++) {
      if (ds->reps[i].up != 1)
        continue;
      if (!ds->reps[i].agg_ok[a]) {
        known = 0;
        continue;
      }
      count++;
      if (ds->reps[i].agg[a] < lo)
        lo = ds->reps[i].agg[a];
      if (ds->reps[i].agg[a] > hi)
        hi = ds->reps[i].agg[a];
    }
    double spread = count ? hi - lo : 0;
    set_inv(m, ds, n++, iv->aggregates[a].expr, known && count >= 2,
            spread <= iv->aggregates[a].tolerance, spread, iv->aggregates[a].tolerance);
  }
  ds->n_inv = n;
  pthread_mutex_unlock(&ds->mu);
  (void)j;
}

/* ---- scheduler and pools ---- */

/* What each kind of job runs, indexed by jkind. */
/* ---- alerts: what the engine reads ---- */

static json_t *tracked_json(const dset *ds, const tracked *t);
static json_t *key_json(const dset *ds, const unsigned char *key, size_t key_len);

/* A summary of the tracked keys (ds->mu held). */
typedef struct div_summary {
  uint64_t confirmed, suspected, by_class[CVG_CLASS__COUNT];
  double oldest; /* wall time the oldest confirmed key was first seen; 0 none */
  uint32_t shards, conflict_shards;
} div_summary;

static void summarize(const dset *ds, div_summary *sm, unsigned char *shard_bits,
                      unsigned char *conflict_bits) {
  memset(sm, 0, sizeof *sm);
  for (size_t s = 0; s < ds->tab_cap; s++) {
    const tracked *t = ds->tab[s];
    if (!t)
      continue;
    if (!t->confirmed) {
      sm->suspected++;
      continue;
    }
    sm->confirmed++;
    sm->by_class[t->cls]++;
    if (sm->oldest == 0 || t->first_seen < sm->oldest)
      sm->oldest = t->first_seen;
    if (shard_bits && !(shard_bits[t->shard / 8] & (1u << (t->shard % 8)))) {
      shard_bits[t->shard / 8] |= (unsigned char)(1u << (t->shard % 8));
      sm->shards++;
    }
    if (conflict_bits && t->cls == CVG_CLASS_CONFLICT &&
        !(conflict_bits[t->shard / 8] & (1u << (t->shard % 8)))) {
      conflict_bits[t->shard / 8] |= (unsigned char)(1u << (t->shard % 8));
      sm->conflict_shards++;
    }
  }
}

static int is_named_invariant(const char *name) {
  for (size_t i = 0; cvg_rule_invariants[i]; i++)
    if (strcmp(cvg_rule_invariants[i], name) == 0)
      return 1;
  return 0;
}

static int metric_value(dset *ds, size_t r, const char *name, double now, double *v) {
  const rep *rp = r < ds->n ? &ds->reps[r] : NULL;
  if (rp) {
    if (strcmp(name, "replica_down") == 0) {
      *v = rp->up == 0;
      return rp->up >= 0;
    }
    if (strcmp(name, "sweep_failures") == 0) { /* consecutive, of the worse kind */
      uint32_t a = rp->sweep_streak[KIND_INCR], b = rp->sweep_streak[KIND_FULL];
      *v = (double)(a > b ? a : b);
      return rp->up == 1;
    }
    if (rp->up != 1)
      return 0;
    if (strcmp(name, "lag_seconds") == 0) {
      if (rp->state == RS_STOPPED)
        return *v = INFINITY, 1; /* no heartbeat has ever arrived */
      *v = rp->lag;
      return !isnan(rp->lag);
    }
    if (strcmp(name, "convergence_seconds") == 0) {
      *v = rp->last_conv;
      return !isnan(rp->last_conv);
    }
    if (strcmp(name, "canary_failures") == 0) {
      size_t n = 0;
      for (size_t i = 0; i < 16 && i < rp->n_fail_t; i++)
        n += now - rp->fail_t[i] <= 600;
      *v = (double)n;
      return 1;
    }
    return 0;
  }
  if (strcmp(name, "schema_drift") == 0)
    return *v = ds->schema_drift, 1;
  if (strcmp(name, "untracked_rows") == 0)
    return *v = (double)ds->dropped, 1;
  if (strcmp(name, "repair_failures") == 0)
    return *v = (double)ds->rep_last_failed + (ds->rep_error[0] ? 1 : 0), ds->cfg->auto_repair;
  if (strcmp(name, "repair_stalled_runs") == 0)
    return *v = ds->rep_stalled_runs, ds->cfg->auto_repair;
  if (strcmp(name, "repair_refused") == 0)
    return *v = (double)ds->rep_refused, ds->cfg->auto_repair;
  if (strcmp(name, "write_rate") == 0) {
    *v = ds->write_rate;
    return ds->last_incr_wall > 0;
  }
  size_t nb = ds->cfg->shards / 8 + 1;
  unsigned char *sb = calloc(nb, 1), *cb = calloc(nb, 1);
  div_summary sm;
  summarize(ds, &sm, sb, cb);
  free(sb);
  free(cb);
  if (!sb || !cb)
    return 0;
  if (strcmp(name, "divergent_rows") == 0)
    *v = (double)sm.confirmed;
  else if (strcmp(name, "suspected_rows") == 0)
    *v = (double)sm.suspected;
  else if (strcmp(name, "divergent_shards") == 0)
    *v = sm.shards;
  else if (strcmp(name, "conflict_shards") == 0)
    *v = sm.conflict_shards;
  else if (strcmp(name, "divergence_age_seconds") == 0)
    *v = sm.oldest > 0 ? now - sm.oldest : 0;
  else if (strcmp(name, "repair_backlog") == 0)
    *v = (double)sm.confirmed;
  else if (strcmp(name, "divergent_fraction") == 0) {
    if (!ds->have_full || !ds->keys_total)
      return 0;
    *v = (double)sm.confirmed / (double)ds->keys_total;
  } else
    return 0;
  return 1;
}

static int alert_value(void *ctx, size_t d, size_t r, const cvg_cat_rule *rule, double *v) {
  cvg_monitor *m = ctx;
  dset *ds = &m->ds[d];
  double now = cvg_wall_now();
  int known = 0;
  pthread_mutex_lock(&ds->mu);
  switch (rule->kind) {
  case CVG_RULE_METRIC:
    known = metric_value(ds, r, rule->subject, now, v);
    break;
  case CVG_RULE_INVARIANT: {
    int agg = strcmp(rule->subject, "equal_aggregate") == 0;
    *v = 0;
    for (size_t i = 0; i < ds->n_inv; i++) {
      const inv_result *ir = &ds->inv[i];
      if (agg ? is_named_invariant(ir->name) : strcmp(ir->name, rule->subject) != 0)
        continue;
      if (ir->known) {
        known = 1;
        if (!ir->ok)
          *v = 1;
      }
    }
    break;
  }
  case CVG_RULE_TREND:
    if (r < ds->n && ds->reps[r].up == 1) {
      double tol =
          2 * (ds->cfg->probes.heartbeat_interval > 0 ? ds->cfg->probes.heartbeat_interval : 1);
      cvg_trend_status st = cvg_trend_eval(&ds->reps[r].trend, now, tol);
      *v = st;
      known = st != CVG_TREND_INCOMPLETE;
    } else if (r < ds->n && ds->reps[r].up == 0 && ds->reps[r].trend.n) {
      /* an unreadable replica gives no samples: the trend judges the silence (STOP) */
      double tol =
          2 * (ds->cfg->probes.heartbeat_interval > 0 ? ds->cfg->probes.heartbeat_interval : 1);
      cvg_trend_status st = cvg_trend_eval(&ds->reps[r].trend, now, tol);
      *v = st;
      known = st != CVG_TREND_INCOMPLETE;
    }
    break;
  case CVG_RULE_SLO: {
    if (!ds->cfg->slo.declared || !ds->out_t)
      break;
    size_t total = 0, bad = 0;
    for (size_t i = 0; i < ds->out_n; i++)
      if (now - ds->out_t[i] <= rule->window) {
        total++;
        bad += !ds->out_good[i];
      }
    if (total) {
      *v = ((double)bad / (double)total) / (1 - ds->cfg->slo.objective);
      known = 1;
    }
    break;
  }
  }
  pthread_mutex_unlock(&ds->mu);
  return known;
}

static void fmt_age(char *buf, size_t n, double s) {
  if (s < 60)
    snprintf(buf, n, "%.1fs", s);
  else if (s < 3600)
    snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
  else
    snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
}

/* What repair does about the dataset's divergences, for the detection trace (ds->mu held). */
static void repair_note(const dset *ds, char *buf, size_t size) {
  const char *const *pol = cvg_policy_names;
  int p = ds->cfg->policy >= 0 && ds->cfg->policy <= CVG_POLICY_MERGE ? ds->cfg->policy : 0;
  if (!ds->cfg->auto_repair)
    snprintf(buf, size, "; repair: none attempted (auto_repair is off%s)",
             p ? "; run converge repair" : "; no policy");
  else if (__atomic_load_n(&ds->rep_paused, __ATOMIC_SEQ_CST))
    snprintf(buf, size, "; repair: automatic (policy %s), paused", pol[p]);
  else
    snprintf(buf, size,
             "; repair: automatic (policy %s), %llu runs so far, %llu rows applied, %llu failed%s",
             pol[p], (unsigned long long)ds->rep_runs, (unsigned long long)ds->rep_applied,
             (unsigned long long)ds->rep_failed,
             ds->rep_refused ? ", the last run refused by a safety limit" : "");
}
/* Context annotations for an active alert. */
static void alert_context(void *ctx, size_t d, size_t r, const cvg_cat_rule *rule, double onset,
                          void *vann) {
  cvg_monitor *m = ctx;
  dset *ds = &m->ds[d];
  json_t *ann = vann;
  double now = cvg_wall_now();
  char buf[4096], t1[40], t2[40], a1[32], a2[32];
  fmt_age(a1, sizeof a1, now - onset);
  snprintf(buf, sizeof buf, "since %s (%s)", cvg_fmt_time(t1, sizeof t1, onset), a1);
  json_object_set_new(ann, "duration", json_string(buf));
  pthread_mutex_lock(&ds->mu);
  if (r < ds->n) {
    const rep *rp = &ds->reps[r];
    char lag[32];
    fmt_double(lag, sizeof lag, rp->lag);
    if (isnan(rp->lag))
      snprintf(lag, sizeof lag, "unknown ");
    snprintf(buf, sizeof buf, "state %s, lag %ss, heartbeat seq %lld, canary failures %llu%s%s",
             rstate_names[shown_state(rp)], lag, (long long)rp->hb_seq,
             (unsigned long long)rp->canary_failures, rep_error(rp)[0] ? ", last error: " : "",
             rep_error(rp));
    json_object_set_new(ann, "replica_state", json_string(buf));
  }
  if (rule->kind == CVG_RULE_INVARIANT) {
    size_t o = 0;
    for (size_t i = 0; i < ds->n_inv && o < sizeof buf - 1; i++) {
      const inv_result *ir = &ds->inv[i];
      int agg = strcmp(rule->subject, "equal_aggregate") == 0;
      if (agg ? is_named_invariant(ir->name) : strcmp(ir->name, rule->subject) != 0)
        continue;
      char v[32], l[32];
      fmt_double(v, sizeof v, ir->value);
      fmt_double(l, sizeof l, ir->limit);
      o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%s = %s, limit %s%s", o ? "; " : "",
                            ir->name, v, l, ir->known ? (ir->ok ? " (holds)" : " (breached)") : "");
    }
    if (o)
      json_object_set_new(ann, "measured", json_string(buf));
  }
  int divergence = r >= ds->n && rule->kind != CVG_RULE_SLO;
  if (divergence && ds->n_tracked) {
    size_t nb = ds->cfg->shards / 8 + 1;
    unsigned char *sb = calloc(nb, 1);
    div_summary sm;
    summarize(ds, &sm, sb, NULL);
    if (sb && sm.shards) {
      size_t o = (size_t)snprintf(buf, sizeof buf, "%u of %u:", sm.shards, ds->cfg->shards);
      unsigned listed = 0;
      for (uint32_t sh = 0; sh < ds->cfg->shards && o < sizeof buf - 16; sh++)
        if (sb[sh / 8] & (1u << (sh % 8))) {
          if (listed++ == 20) {
            o += (size_t)snprintf(buf + o, sizeof buf - o, " ...");
            break;
          }
          o += (size_t)snprintf(buf + o, sizeof buf - o, " %u", sh);
        }
      json_object_set_new(ann, "affected_shards", json_string(buf));
      char cnt[16];
      snprintf(cnt, sizeof cnt, "%u", sm.shards);
      json_object_set_new(ann, "affected_shard_count", json_string(cnt));
    }
    free(sb);
    size_t o = 0;
    buf[0] = '\0';
    for (int c = 1; c < CVG_CLASS__COUNT; c++)
      if (sm.by_class[c])
        o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%s %llu", o ? ", " : "",
                              cvg_class_name((cvg_class)c), (unsigned long long)sm.by_class[c]);
    if (o)
      json_object_set_new(ann, "divergence_classes", json_string(buf));
    if (sm.suspected) {
      snprintf(buf, sizeof buf, "%llu", (unsigned long long)sm.suspected);
      json_object_set_new(ann, "suspected_rows", json_string(buf));
    }
    /* sample keys with each replica's version (keys and versions only; never row values):
     * {"id":5} conflict, shard 13: primary=17 replica=17; ... */
    o = 0;
    size_t listed = 0;
    for (size_t s = 0; s < ds->tab_cap && listed < 5 && o < sizeof buf - 1; s++) {
      const tracked *t = ds->tab[s];
      if (!t || !t->confirmed)
        continue;
      json_t *sj = tracked_json(ds, t);
      char *k = sj ? json_dumps(json_object_get(sj, "key"), JSON_COMPACT) : NULL;
      o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%s %s, shard %u:", listed ? "; " : "",
                            k ? k : "?", cvg_class_name(t->cls), t->shard);
      free(k);
      json_t *reps = json_object_get(sj, "replicas");
      for (size_t i = 0; i < ds->n && o < sizeof buf - 1; i++) {
        json_t *rj = json_object_get(reps, ds->reps[i].cfg->name);
        const char *st = json_string_value(json_object_get(rj, "state"));
        char *vs = json_dumps(json_object_get(rj, "version"), JSON_COMPACT | JSON_ENCODE_ANY);
        o += (size_t)snprintf(buf + o, sizeof buf - o, " %s=%s%s%s", ds->reps[i].cfg->name,
                              st && strcmp(st, "live") ? st
                              : vs                     ? vs
                                                       : "none",
                              st && strcmp(st, "live") && vs ? "@" : "",
                              st && strcmp(st, "live") && vs ? vs : "");
        free(vs);
      }
      if (o >= sizeof buf)
        o = sizeof buf - 1;
      json_decref(sj);
      listed++;
    }
    if (listed)
      json_object_set_new(ann, "sample_keys", json_string(buf));
  }
  int want_origin = divergence && ds->n_tracked && ds->cfg->origin;
  if (divergence && ds->tr.active) {
    const trace *tr = &ds->tr;
    char l1[32], l2[32];
    fmt_double(l1, sizeof l1, tr->lag_suspected);
    fmt_double(l2, sizeof l2, tr->lag_confirmed);
    if (isnan(tr->lag_suspected))
      snprintf(l1, sizeof l1, "unknown ");
    if (isnan(tr->lag_confirmed))
      snprintf(l2, sizeof l2, "unknown ");
    int o = snprintf(buf, sizeof buf, "first seen by the %s at %s (worst lag %ss)", tr->first_probe,
                     cvg_fmt_time(t1, sizeof t1, tr->suspected_at), l1);
    if (tr->confirmed_at > 0 && o > 0 && (size_t)o < sizeof buf) {
      fmt_age(a2, sizeof a2, tr->confirmed_at - tr->suspected_at);
      o += snprintf(buf + o, sizeof buf - o, "; confirmed at %s after %s (worst lag %ss)",
                    cvg_fmt_time(t2, sizeof t2, tr->confirmed_at), a2, l2);
    }
    if (o > 0 && (size_t)o < sizeof buf)
      repair_note(ds, buf + o, sizeof buf - o);
    json_object_set_new(ann, "detection_trace", json_string(buf));
    json_object_set_new(ann, "trace_id", json_string(tr->id));
  }
  if (want_origin && ds->origin_note[0]) /* found by the sweep job (origin_cause) */
    json_object_set_new(ann, "likely_cause", json_string(ds->origin_note));
  pthread_mutex_unlock(&ds->mu);
}

/* A divergent key whose origin is looked up: on the replica holding the divergent copy. */
typedef struct origin_probe {
  unsigned char key[512];
  size_t key_len;
  size_t rep;
} origin_probe;

#define ORIGIN_SAMPLES 20
#define ORIGIN_EVERY 10.0 /* seconds between likely-cause lookups */

/*
 * The writer or pipeline (origin column) most divergent rows share: up to ORIGIN_SAMPLES
 * confirmed keys, each read on the replica whose copy differs from the authority's (or, without
 * an authority, the one with the greatest version), kept in ds->origin_note for the alerts'
 * likely_cause. Run by the sweep jobs on the connections they hold (sts, opened if missing and
 * left open for the job), right after a sweep that confirmed keys and otherwise at most every
 * ORIGIN_EVERY seconds - never by the alert evaluation,
 * which shares its pool with the heartbeats. Reads the replicas, so never under ds->mu.
 */
static void origin_cause(dset *ds, cvg_store **sts) {
  const cvg_cat_dataset *cfg = ds->cfg;
  if (!cfg->origin)
    return;
  pthread_mutex_lock(&ds->mu);
  double now = cvg_mono_now();
  int fresh = ds->n_confirmations != ds->origin_seen; /* new confirmations: look at once */
  int due = ds->n_tracked && (fresh || ds->origin_at == 0 || now - ds->origin_at >= ORIGIN_EVERY);
  if (due) {
    ds->origin_at = now;
    ds->origin_seen = ds->n_confirmations;
  }
  if (!ds->n_tracked)
    ds->origin_note[0] = '\0';
  pthread_mutex_unlock(&ds->mu);
  if (!due)
    return;
  origin_probe *pr = calloc(ORIGIN_SAMPLES, sizeof *pr);
  if (!pr)
    return;
  size_t n = 0;
  int auth = cfg->authority;
  pthread_mutex_lock(&ds->mu);
  for (size_t s = 0; s < ds->tab_cap && n < ORIGIN_SAMPLES; s++) {
    const tracked *t = ds->tab[s];
    if (!t || !t->confirmed || t->key_len > sizeof pr[n].key)
      continue;
    size_t best = SIZE_MAX;
    for (size_t i = 0; i < ds->n; i++) {
      if (t->rstates[i] != 1 || (int)i == auth)
        continue;
      if (auth >= 0 && memcmp(&t->contrib[i], &t->contrib[auth], sizeof t->contrib[i]) == 0)
        continue;
      if (best == SIZE_MAX)
        best = i;
      else {
        size_t lb = t->ver_off[best + 1] - t->ver_off[best], li = t->ver_off[i + 1] - t->ver_off[i];
        if (cvg_key_compare(t->key + t->key_len + t->ver_off[i], li,
                            t->key + t->key_len + t->ver_off[best], lb) > 0)
          best = i;
      }
    }
    if (best == SIZE_MAX)
      continue;
    memcpy(pr[n].key, t->key, t->key_len);
    pr[n].key_len = t->key_len;
    pr[n].rep = best;
    n++;
  }
  pthread_mutex_unlock(&ds->mu);
  char names[ORIGIN_SAMPLES][96];
  size_t counts[ORIGIN_SAMPLES] = {0}, n_names = 0, looked = 0;
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
    if (!sts[r] && ensure_open(&sts[r], &ds->reps[r], CVG_STORE_READONLY, &err) != CVG_OK)
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
    if (cvg_decode_tuple(out.data, out.len, &v, 1, &nv, &scratch) != CVG_OK || nv != 1)
      continue;
    char name[96];
    if (v.type == CVG_TEXT)
      snprintf(name, sizeof name, "%.*s", (int)(v.u.s.n < 90 ? v.u.s.n : 90),
               (const char *)v.u.s.p);
    else if (v.type == CVG_INTEGER)
      snprintf(name, sizeof name, "%lld", (long long)v.u.i);
    else if (v.type == CVG_NULL)
      snprintf(name, sizeof name, "(none)");
    else
      continue;
    looked++;
    size_t i = 0;
    while (i < n_names && strcmp(names[i], name) != 0)
      i++;
    if (i == n_names)
      memcpy(names[n_names++], name, sizeof name);
    counts[i]++;
  }
  cvg_table_desc_release(&desc);
  cvg_buf_release(&out);
  cvg_buf_release(&scratch);
  free(pr);
  size_t top = 0;
  for (size_t i = 1; i < n_names; i++)
    if (counts[i] > counts[top])
      top = i;
  pthread_mutex_lock(&ds->mu);
  if (looked)
    snprintf(ds->origin_note, sizeof ds->origin_note,
             "origin '%s' wrote %zu of %zu sampled divergent rows (column %s)", names[top],
             counts[top], looked, cfg->origin);
  else
    ds->origin_note[0] = '\0';
  pthread_mutex_unlock(&ds->mu);
}

/* ---- automatic repair ---- */

#define REPAIR_MAX_KEYS 10000 /* confirmed keys handed to one repair run */
#define REPAIR_REFUSED_RETRY                                                                       \
  60.0 /* seconds before a run refused by a safety limit is tried again */

static void job_repair(cvg_monitor *m, job *j) {
  dset *ds = j->ds;
  if (__atomic_load_n(&ds->rep_paused, __ATOMIC_SEQ_CST))
    return;
  if (ds->cfg->repair_window_start >= 0) { /* outside its window, repair waits */
    cvg_cat_probes w;
    memset(&w, 0, sizeof w);
    w.window_start = ds->cfg->repair_window_start;
    w.window_end = ds->cfg->repair_window_end;
    if (!in_window(&w))
      return;
  }
  /* a refused run is not retried at every interval (each journals its refusal) */
  pthread_mutex_lock(&ds->mu);
  int wait = ds->rep_refused && cvg_wall_now() - ds->rep_refused_at < REPAIR_REFUSED_RETRY;
  pthread_mutex_unlock(&ds->mu);
  if (wait)
    return;
  unsigned char **keys = calloc(REPAIR_MAX_KEYS, sizeof *keys);
  size_t *lens = calloc(REPAIR_MAX_KEYS, sizeof *lens), n = 0;
  int oom = !keys || !lens;
  pthread_mutex_lock(&ds->mu);
  for (size_t s = 0; !oom && s < ds->tab_cap && n < REPAIR_MAX_KEYS; s++) {
    const tracked *t = ds->tab[s];
    if (!t || !t->confirmed)
      continue;
    if (!(keys[n] = malloc(t->key_len ? t->key_len : 1))) {
      oom = 1;
      break;
    }
    memcpy(keys[n], t->key, t->key_len);
    lens[n++] = t->key_len;
  }
  pthread_mutex_unlock(&ds->mu);
  cvg_repair_stats st;
  memset(&st, 0, sizeof st);
  cvg_error err;
  cvg_error_clear(&err);
  int rc = CVG_OK;
  if (oom) {
    rc = cvg_error_set(&err, CVG_ENOMEM, ds->cfg->name, "out of memory collecting keys to repair");
  } else if (n) {
    cvg_repair_opts o;
    memset(&o, 0, sizeof o);
    o.cat = m->cat;
    o.dataset = ds->idx;
    o.shard = -1;
    o.execute = 1;
    o.rows_per_sec = ds->cfg->repair_rate;
    o.batch = (size_t)ds->cfg->repair_batch;
    o.cancel = &m->cancel;
    o.keys = (const unsigned char *const *)keys;
    o.key_lens = lens;
    o.n_keys = n;
    rc = cvg_repair_run(&o, &st, &err);
  }
  for (size_t i = 0; keys && i < n; i++)
    free(keys[i]);
  free(keys);
  free(lens);
  pthread_mutex_lock(&ds->mu);
  if (n || rc) {
    ds->rep_runs++;
    ds->rep_applied += st.applied;
    ds->rep_skipped += st.skipped;
    ds->rep_failed += st.failed;
    ds->rep_last_failed = st.failed;
    ds->rep_last_run = cvg_wall_now();
    ds->rep_last_rate = st.seconds > 0 ? (double)st.applied / st.seconds : 0;
    ds->rep_refused = rc == CVG_ELIMIT ? (st.limit_changes ? st.limit_changes : 1) : 0;
    if (rc == CVG_ELIMIT) {
      ds->rep_refusals++;
      ds->rep_refused_at = cvg_wall_now();
      snprintf(ds->rep_refused_why, sizeof ds->rep_refused_why, "%.399s", err.msg);
      ds->rep_error[0] = '\0';
    } else if (rc) {
      ds->rep_errors++;
      snprintf(ds->rep_error, sizeof ds->rep_error, "%s", err.msg);
    } else {
      ds->rep_error[0] = '\0';
    }
    if (rc != CVG_ELIMIT) /* a refusal is its own alert, not a stall */
      ds->rep_stalled_runs =
          (rc || (st.applied == 0 && st.decisions > 0)) ? ds->rep_stalled_runs + 1 : 0;
    if (!rc && !st.failed && !st.skipped)
      ds->rep_last_ok = cvg_wall_now();
  } else {
    ds->rep_stalled_runs = 0;
    ds->rep_last_failed = 0;
  }
  pthread_mutex_unlock(&ds->mu);
  if (n || rc) {
    char a[32], sk[32], f[32], dv[32], hs[32], hh[65];
    snprintf(hs, sizeof hs, "%lld", (long long)st.head_seq);
    for (int i = 0; i < 32; i++)
      snprintf(hh + 2 * i, 3, "%02x", st.head_hash[i]);
    snprintf(a, sizeof a, "%llu", (unsigned long long)st.applied);
    snprintf(sk, sizeof sk, "%llu", (unsigned long long)st.skipped);
    snprintf(f, sizeof f, "%llu", (unsigned long long)st.failed);
    snprintf(dv, sizeof dv, "%llu", (unsigned long long)st.divergent);
    cvg_log(m->lg, rc || st.failed ? CVG_LOG_WARN : CVG_LOG_INFO,
            rc == CVG_ELIMIT ? "repair_refused"
            : rc             ? "repair_failed"
                             : "repair",
            "dataset", ds->cfg->name, "still_divergent", dv, "applied", a, "skipped", sk, "failed",
            f, "error", rc ? err.msg : "", "journal", m->cat->journal, "journal_head", hs,
            "journal_head_hash", st.head_seq ? hh : "", (const char *)NULL);
  }
}

static int alert_ready(void *ctx, size_t d) {
  cvg_monitor *m = ctx;
  dset *ds = &m->ds[d];
  pthread_mutex_lock(&ds->mu);
  int ready = ds->first_full_wall > 0 && cvg_wall_now() - ds->first_full_wall >=
                                             confirm_wait(ds) + 2 * ds->cfg->probes.sweep_interval;
  if (ds->cfg->probes.full_sweep_interval <= 0) /* no full sweep: the first minute decides */
    ready = cvg_wall_now() - m->started_wall >= 60;
  pthread_mutex_unlock(&ds->mu);
  return ready;
}

/* Saves each dataset's divergence episode when it changed, so a restart continues it. */
static void sync_episodes(cvg_monitor *m) {
  for (size_t i = 0; i < m->n_ds; i++) {
    dset *ds = &m->ds[i];
    cvg_episode ep;
    memset(&ep, 0, sizeof ep);
    pthread_mutex_lock(&ds->mu);
    int active = ds->tr.active, restored = ds->tr.restored;
    snprintf(ep.trace_id, sizeof ep.trace_id, "%s", ds->tr.id);
    snprintf(ep.first_probe, sizeof ep.first_probe, "%s", ds->tr.first_probe);
    ep.suspected_at = ds->tr.suspected_at;
    ep.lag_suspected = ds->tr.lag_suspected;
    ep.confirmed_at = ds->tr.confirmed_at;
    ep.lag_confirmed = ds->tr.lag_confirmed;
    pthread_mutex_unlock(&ds->mu);
    if (restored)
      continue; /* not judged yet since the start: keep what is saved */
    if (active == ds->synced_active && (!active || (strcmp(ep.trace_id, ds->synced.trace_id) == 0 &&
                                                    ep.confirmed_at == ds->synced.confirmed_at)))
      continue;
    cvg_alerts_episode_save(m->alerts, ds->cfg->name, active ? &ep : NULL);
    ds->synced = ep;
    ds->synced_active = active;
  }
}

static void job_alert(cvg_monitor *m, job *j) {
  (void)j;
  sync_episodes(m);
  cvg_alert_source src = {m, alert_value, alert_context, alert_ready};
  cvg_alerts_eval(m->alerts, &src, cvg_wall_now());
}

static void (*const job_run[])(cvg_monitor *m, job *j) = {
    [J_HB_WRITE] = job_hb_write,
    [J_HB_READ] = job_hb_read,
    [J_CANARY_WRITE] = job_canary_write,
    [J_CANARY_POLL] = job_canary_poll,
    [J_INCR] = job_incr,
    [J_FULL] = job_full,
    [J_INV] = job_inv,
    [J_ALERT] = job_alert,
    [J_REPAIR] = job_repair,
};

static void *worker_main(void *arg) {
  cvg_monitor *m = ((void **)arg)[0];
  int which = (int)(intptr_t)((void **)arg)[1];
  free(arg);
  pool *p = &m->pools[which];
  pthread_mutex_lock(&m->mu);
  for (;;) {
    while (!p->head && !m->stopping)
      pthread_cond_wait(&p->cv, &m->mu);
    if (m->stopping)
      break;
    job *j = p->head;
    p->head = j->next;
    if (!p->head)
      p->tail = NULL;
    pthread_mutex_unlock(&m->mu);
    job_run[j->kind](m, j);
    pthread_mutex_lock(&m->mu);
    double now = cvg_mono_now();
    j->running = 0;
    j->next_due += j->interval;
    if (j->next_due < now)
      j->next_due = now; /* fell behind: run again soon, never in a burst */
    pthread_cond_signal(&m->sched_cv);
  }
  pthread_mutex_unlock(&m->mu);
  return NULL;
}

static void *sched_main(void *arg) {
  cvg_monitor *m = arg;
  pthread_mutex_lock(&m->mu);
  while (!m->stopping) {
    double now = cvg_mono_now();
    m->sched_beat = now;
    double next = now + 0.5;
    for (size_t i = 0; i < m->n_jobs; i++) {
      job *j = &m->jobs[i];
      if (j->running)
        continue;
      if (j->kind == J_FULL && j->next_due > now) {
        pthread_mutex_lock(&j->ds->mu); /* lock order: m->mu, then a dataset's mu */
        if (j->ds->full_requested)
          j->next_due = now; /* an incremental check overflowed */
        pthread_mutex_unlock(&j->ds->mu);
      }
      if (j->next_due <= now) {
        j->running = 1;
        j->next = NULL;
        pool *p = &m->pools[j->pool];
        if (p->tail)
          p->tail->next = j;
        else
          p->head = j;
        p->tail = j;
        pthread_cond_signal(&p->cv);
      } else if (j->next_due < next) {
        next = j->next_due;
      }
    }
    double wait = next - cvg_mono_now();
    if (wait < 0.001)
      wait = 0.001;
    struct timespec ts;
    cvg_deadline_after(&ts, wait); /* due times are monotonic, and so is this wait */
    pthread_cond_timedwait(&m->sched_cv, &m->mu, &ts);
  }
  pthread_mutex_unlock(&m->mu);
  return NULL;
}

static int add_job(cvg_monitor *m, jkind kind, dset *ds, size_t r, double interval, int pool_,
                   double first) {
  job *j = &m->jobs[m->n_jobs++];
  memset(j, 0, sizeof *j);
  j->kind = kind;
  j->ds = ds;
  j->rep = r;
  j->interval = interval;
  j->pool = pool_;
  j->next_due = first;
  if (kind == J_INCR || kind == J_FULL) {
    j->sts = calloc(ds->n, sizeof *j->sts);
    if (!j->sts)
      return CVG_ENOMEM;
  }
  return CVG_OK;
}

int cvg_monitor_new(cvg_monitor **out, const cvg_catalog *cat, cvg_logger *lg, cvg_error *err) {
  *out = NULL;
  cvg_monitor *m = calloc(1, sizeof *m);
  if (!m)
    return cvg_error_set(err, CVG_ENOMEM, cat->path, "out of memory");
  m->cat = cat;
  m->lg = lg;
  m->n_ds = cat->n_datasets;
  pthread_mutex_init(&m->mu, NULL);
  cvg_cond_init_monotonic(&m->sched_cv);
  pthread_cond_init(&m->pools[0].cv, NULL);
  pthread_cond_init(&m->pools[1].cv, NULL);
  m->ds = calloc(m->n_ds, sizeof *m->ds);
  size_t max_jobs = 0;
  for (size_t i = 0; i < m->n_ds; i++)
    max_jobs += 6 + 2 * cat->datasets[i].n_replicas;
  max_jobs++; /* alert evaluation */
  m->jobs = calloc(max_jobs, sizeof *m->jobs);
  if (!m->ds || !m->jobs)
    goto oom;
  double now = cvg_mono_now();
  for (size_t i = 0; i < m->n_ds; i++) {
    dset *ds = &m->ds[i];
    const cvg_cat_dataset *c = &cat->datasets[i];
    ds->m = m;
    ds->cfg = c;
    ds->idx = i;
    ds->n = c->n_replicas;
    pthread_mutex_init(&ds->mu, NULL);
    pthread_mutex_init(&ds->sweep_mu, NULL);
    ds->sweep_culprit = -1;
    ds->reps = calloc(ds->n, sizeof *ds->reps);
    ds->out_t = calloc(OUTCOMES, sizeof *ds->out_t);
    ds->conflicts = calloc(c->shards, sizeof *ds->conflicts);
    ds->out_good = calloc(OUTCOMES, 1);
    if (!ds->reps || !ds->out_t || !ds->out_good || !ds->conflicts)
      goto oom;
    for (size_t r = 0; r < ds->n; r++) {
      rep *rp = &ds->reps[r];
      rp->cfg = &c->replicas[r];
      rp->up = -1;
      rp->lag = NAN;
      rp->native_lag = NAN;
      rp->native_up = 1;
      rp->last_conv = NAN;
      if (cvg_trend_init(&rp->trend, (size_t)cat->alerting.trend_window) != CVG_OK)
        goto oom;
      rp->digest = calloc(c->shards, sizeof *rp->digest);
      rp->agg = calloc(c->inv.n_aggregates + 1, sizeof *rp->agg);
      rp->agg_ok = calloc(c->inv.n_aggregates + 1, 1);
      if (!rp->digest || !rp->agg || !rp->agg_ok)
        goto oom;
    }
    const cvg_cat_probes *p = &c->probes;
    int hb = c->authority >= 0 && p->heartbeat_interval > 0;
    int rc = 0;
    if (hb)
      rc = add_job(m, J_HB_WRITE, ds, (size_t)c->authority, p->heartbeat_interval, 0, now);
    for (size_t r = 0; !rc && r < ds->n; r++)
      if ((int)r != c->authority)
        rc = add_job(m, J_HB_READ, ds, r, hb ? p->heartbeat_interval : 5, 0, now + 0.05);
    if (!rc && c->authority >= 0 && p->canary_interval > 0) {
      rc = add_job(m, J_CANARY_WRITE, ds, (size_t)c->authority, p->canary_interval, 0, now + 0.1);
      double poll = p->canary_interval / 10 < CANARY_POLL ? p->canary_interval / 10 : CANARY_POLL;
      for (size_t r = 0; !rc && r < ds->n; r++)
        if ((int)r != c->authority)
          rc = add_job(m, J_CANARY_POLL, ds, r, poll, 0, now + 0.1);
    }
    if (!rc && p->full_sweep_interval > 0)
      rc = add_job(m, J_FULL, ds, 0, p->full_sweep_interval, 1, now + 0.2);
    if (!rc && p->sweep_interval > 0)
      rc = add_job(m, J_INCR, ds, 0, p->sweep_interval, 1, now + p->sweep_interval);
    if (!rc)
      rc = add_job(m, J_INV, ds, 0, INVARIANT_INTERVAL, 0, now + 1);
    if (!rc && c->auto_repair)
      rc = add_job(m, J_REPAIR, ds, 0, c->repair_interval, 1, now + c->repair_interval);
    if (rc)
      goto oom;
  }
  if (m->n_ds && add_job(m, J_ALERT, &m->ds[0], 0, cat->alerting.evaluation_interval, 0, now + 1))
    goto oom;
  if (cvg_alerts_new(&m->alerts, cat, lg, err) != CVG_OK) {
    cvg_monitor_free(m);
    return err ? err->status : CVG_EIO;
  }
  for (size_t i = 0; i < m->n_ds; i++) {
    dset *ds = &m->ds[i];
    cvg_episode ep;
    if (!cvg_alerts_episode_load(m->alerts, ds->cfg->name, &ep))
      continue;
    ds->tr.restored = 1;
    ds->tr.active = 0;
    snprintf(ds->tr.id, sizeof ds->tr.id, "%s", ep.trace_id);
    snprintf(ds->tr.first_probe, sizeof ds->tr.first_probe, "%s", ep.first_probe);
    ds->tr.suspected_at = ep.suspected_at;
    ds->tr.lag_suspected = ep.lag_suspected;
    ds->tr.confirmed_at = ep.confirmed_at;
    ds->tr.lag_confirmed = ep.lag_confirmed;
    ds->synced = ep;
    ds->synced_active = 1;
  }
  m->pools[0].n_threads = (size_t)cat->workers;
  m->pools[1].n_threads = (size_t)cat->workers;
  m->started_wall = cvg_wall_now();
  *out = m;
  return CVG_OK;
oom:
  cvg_monitor_free(m);
  return cvg_error_set(err, CVG_ENOMEM, cat->path, "out of memory");
}

int cvg_monitor_start(cvg_monitor *m, cvg_error *err) {
  for (int p = 0; p < 2; p++) {
    pool *pl = &m->pools[p];
    pl->threads = calloc(pl->n_threads, sizeof *pl->threads);
    if (!pl->threads)
      goto fail;
    for (size_t i = 0; i < pl->n_threads; i++) {
      void **arg = malloc(2 * sizeof *arg);
      if (!arg)
        goto fail;
      arg[0] = m;
      arg[1] = (void *)(intptr_t)p;
      if (pthread_create(&pl->threads[i], NULL, worker_main, arg) != 0) {
        free(arg);
        goto fail;
      }
      pl->started++;
    }
  }
  m->sched_beat = cvg_mono_now();
  if (pthread_create(&m->sched, NULL, sched_main, m) != 0)
    goto fail;
  m->sched_started = 1;
  return CVG_OK;
fail:
  cvg_monitor_stop(m);
  return cvg_error_set(err, CVG_ETHREAD, m->cat->path, "cannot start the probe threads");
}

void cvg_monitor_stop(cvg_monitor *m) {
  if (!m)
    return;
  pthread_mutex_lock(&m->mu);
  m->stopping = 1;
  __atomic_store_n(&m->cancel, 1, __ATOMIC_RELAXED);
  pthread_cond_broadcast(&m->sched_cv);
  pthread_cond_broadcast(&m->pools[0].cv);
  pthread_cond_broadcast(&m->pools[1].cv);
  pthread_mutex_unlock(&m->mu);
  if (m->sched_started)
    pthread_join(m->sched, NULL);
  m->sched_started = 0;
  for (int p = 0; p < 2; p++) {
    for (size_t i = 0; i < m->pools[p].started; i++)
      pthread_join(m->pools[p].threads[i], NULL);
    m->pools[p].started = 0;
    free(m->pools[p].threads);
    m->pools[p].threads = NULL;
  }
}

void cvg_monitor_free(cvg_monitor *m) {
  if (!m)
    return;
  cvg_monitor_stop(m);
  for (size_t i = 0; i < m->n_jobs; i++) {
    job *j = &m->jobs[i];
    cvg_store_close(j->st);
    for (size_t r = 0; j->sts && r < j->ds->n; r++)
      cvg_store_close(j->sts[r]);
    free(j->sts);
  }
  free(m->jobs);
  for (size_t i = 0; m->ds && i < m->n_ds; i++) {
    dset *ds = &m->ds[i];
    for (size_t r = 0; ds->reps && r < ds->n; r++) {
      free(ds->reps[r].digest);
      free(ds->reps[r].agg);
      free(ds->reps[r].agg_ok);
      cvg_trend_free(&ds->reps[r].trend);
    }
    free(ds->reps);
    free(ds->out_t);
    free(ds->out_good);
    free(ds->conflicts);
    tr_clear(ds);
    pthread_mutex_destroy(&ds->mu);
    pthread_mutex_destroy(&ds->sweep_mu);
  }
  free(m->ds);
  cvg_alerts_free(m->alerts);
  pthread_cond_destroy(&m->pools[0].cv);
  pthread_cond_destroy(&m->pools[1].cv);
  pthread_cond_destroy(&m->sched_cv);
  pthread_mutex_destroy(&m->mu);
  free(m);
}

int cvg_monitor_recheck(cvg_monitor *m, size_t ds_idx, uint64_t *compared, cvg_error *err) {
  if (ds_idx >= m->n_ds)
    return cvg_error_set(err, CVG_EINVAL, "", "no dataset %zu", ds_idx);
  dset *ds = &m->ds[ds_idx];
  job *j = NULL;
  for (size_t i = 0; i < m->n_jobs && !j; i++)
    if (m->jobs[i].ds == ds && m->jobs[i].kind == J_INCR)
      j = &m->jobs[i];
  if (!j)
    return cvg_error_set(err, CVG_EINVAL, ds->cfg->name, "incremental sweeps are off");
  pthread_mutex_lock(&ds->sweep_mu);
  double t0 = cvg_mono_now();
  int rc = incremental(m, ds, j->sts, compared, err);
  sweep_done(m, ds, KIND_INCR, rc, t0, err);
  pthread_mutex_unlock(&ds->sweep_mu);
  return rc;
}

int cvg_monitor_full_sweep(cvg_monitor *m, size_t ds_idx, cvg_error *err) {
  if (ds_idx >= m->n_ds)
    return cvg_error_set(err, CVG_EINVAL, "", "no dataset %zu", ds_idx);
  dset *ds = &m->ds[ds_idx];
  cvg_store *sts[CVG_DIFF_MAX_REPLICAS] = {0};
  pthread_mutex_lock(&ds->sweep_mu);
  double t0 = cvg_mono_now();
  int rc = full_sweep(m, ds, sts, err);
  sweep_done(m, ds, KIND_FULL, rc, t0, err);
  pthread_mutex_unlock(&ds->sweep_mu);
  for (size_t i = 0; i < ds->n; i++)
    cvg_store_close(sts[i]);
  return rc;
}

int cvg_monitor_repair_pause(cvg_monitor *m, const char *dataset, int pause) {
  int n = 0, found = 0;
  for (size_t i = 0; i < m->n_ds; i++) {
    dset *ds = &m->ds[i];
    if (dataset && strcmp(dataset, ds->cfg->name) != 0)
      continue;
    found = 1;
    if (!ds->cfg->auto_repair)
      continue;
    __atomic_store_n(&ds->rep_paused, pause ? 1 : 0, __ATOMIC_SEQ_CST);
    cvg_log(m->lg, CVG_LOG_INFO, pause ? "repair_paused" : "repair_resumed", "dataset",
            ds->cfg->name, (const char *)NULL);
    n++;
  }
  return found ? n : -1;
}

int cvg_monitor_hotspots_json(cvg_monitor *m, const char *dataset, cvg_buf *out) {
  json_t *arr = json_array();
  int found = 0;
  for (size_t i = 0; arr && i < m->n_ds; i++) {
    dset *ds = &m->ds[i];
    if (dataset && strcmp(dataset, ds->cfg->name) != 0)
      continue;
    found = 1;
    json_t *shards = json_object(), *top = json_array();
    pthread_mutex_lock(&ds->mu);
    for (uint32_t sh = 0; shards && sh < ds->cfg->shards; sh++)
      if (ds->conflicts[sh]) {
        char k[16];
        snprintf(k, sizeof k, "%u", sh);
        json_object_set_new(shards, k, json_integer((json_int_t)ds->conflicts[sh]));
      }
    size_t order[HOT_K];
    for (size_t h = 0; h < ds->n_hot; h++)
      order[h] = h;
    for (size_t a = 1; a < ds->n_hot; a++) /* by count, descending */
      for (size_t b = a; b > 0 && ds->hot[order[b]].count > ds->hot[order[b - 1]].count; b--) {
        size_t t = order[b];
        order[b] = order[b - 1];
        order[b - 1] = t;
      }
    for (size_t h = 0; top && h < ds->n_hot; h++) {
      const hot *e = &ds->hot[order[h]];
      json_array_append_new(
          top, json_pack("{s:o, s:I, s:I, s:I}", "key", key_json(ds, e->key, e->key_len), "shard",
                         (json_int_t)cvg_shard_of(e->key, e->key_len, ds->cfg->shards), "conflicts",
                         (json_int_t)e->count, "overestimate_at_most", (json_int_t)e->error));
    }
    pthread_mutex_unlock(&ds->mu);
    json_array_append_new(arr, json_pack("{s:s, s:o, s:o}", "dataset", ds->cfg->name,
                                         "conflicts_by_shard", shards ? shards : json_object(),
                                         "top_conflicting_keys", top ? top : json_array()));
  }
  if (!found) {
    json_decref(arr);
    return CVG_ENOENT;
  }
  json_t *root = json_pack("{s:o}", "hotspots", arr ? arr : json_array());
  char *txt = root ? json_dumps(root, JSON_INDENT(2)) : NULL;
  int rc = txt ? cvg_buf_append(out, txt, strlen(txt)) : CVG_ENOMEM;
  free(txt);
  json_decref(root);
  return rc;
}

int cvg_monitor_alerts_json(cvg_monitor *m, const char *fingerprint, cvg_buf *out) {
  return cvg_alerts_json(m->alerts, fingerprint, out);
}

const cvg_catalog *cvg_monitor_catalog(const cvg_monitor *m) {
  return m->cat;
}

int cvg_monitor_healthy(cvg_monitor *m) {
  pthread_mutex_lock(&m->mu);
  int ok = m->sched_started && !m->stopping && cvg_mono_now() - m->sched_beat < 5;
  pthread_mutex_unlock(&m->mu);
  return ok;
}

/* ---- rendering: the Prometheus text format ---- */

typedef struct out {
  cvg_buf *b;
  int rc;
} out;

static void emit(out *o, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void emit(out *o, const char *fmt, ...) {
  if (o->rc)
    return;
  char line[2048];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if ((size_t)n >= sizeof line)
    n = (int)sizeof line - 1;
  o->rc = cvg_buf_append(o->b, line, (size_t)n);
}

/* A label value escaped as the text format requires (\\, \", \n). */
static const char *esc(char *buf, size_t size, const char *s) {
  size_t j = 0;
  for (; *s && j + 3 < size; s++) {
    if (*s == '\\' || *s == '"') {
      buf[j++] = '\\';
      buf[j++] = *s;
    } else if (*s == '\n') {
      buf[j++] = '\\';
      buf[j++] = 'n';
    } else {
      buf[j++] = *s;
    }
  }
  buf[j] = '\0';
  return buf;
}

static void head(out *o, const char *name, const char *type, const char *help) {
  emit(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void emit_hist(out *o, const char *name, const char *labels, const hist *h, const double *le,
                      size_t n_le) {
  uint64_t cum = 0;
  for (size_t i = 0; i < n_le; i++) {
    cum += h->bucket[i];
    emit(o, "%s_bucket{%s,le=\"%g\"} %" PRIu64 "\n", name, labels, le[i], cum);
  }
  cum += h->bucket[n_le];
  emit(o, "%s_bucket{%s,le=\"+Inf\"} %" PRIu64 "\n", name, labels, cum);
  char sum[40];
  fmt_double(sum, sizeof sum, h->sum);
  emit(o, "%s_sum{%s} %s\n%s_count{%s} %" PRIu64 "\n", name, labels, sum, name, labels, h->count);
}

/* Calls fn for every dataset with its lock held. */
#define FOR_DS(m, ds) for (dset *ds = (m)->ds; ds < (m)->ds + (m)->n_ds; ds++)

/* A value per replica (ds->mu held): returns 0 to leave the replica out. */
typedef int (*rep_value_fn)(const dset *ds, size_t i, double *v);

static int v_up(const dset *ds, size_t i, double *v) {
  *v = ds->reps[i].up;
  return ds->reps[i].up >= 0;
}
static int v_lag(const dset *ds, size_t i, double *v) {
  *v = ds->reps[i].lag;
  return ds->cfg->authority >= 0 && ds->reps[i].up == 1 && ds->reps[i].state != RS_UNKNOWN;
}
static int v_native_lag(const dset *ds, size_t i, double *v) {
  *v = ds->reps[i].native_lag;
  return ds->reps[i].native_role[0] && ds->reps[i].up == 1 && !isnan(ds->reps[i].native_lag);
}
static int v_native_up(const dset *ds, size_t i, double *v) {
  *v = ds->reps[i].native_up;
  return ds->reps[i].native_role[0] && ds->reps[i].up == 1;
}
static int v_hb_seq(const dset *ds, size_t i, double *v) {
  *v = (double)ds->reps[i].hb_seq;
  return ds->reps[i].hb_seen;
}
static int v_canary_failures(const dset *ds, size_t i, double *v) {
  *v = (double)ds->reps[i].canary_failures;
  return ds->cfg->authority >= 0 && ds->cfg->probes.canary_interval > 0 &&
         (int)i != ds->cfg->authority;
}
static int v_trend(const dset *ds, size_t i, double *v) {
  if ((int)i == ds->cfg->authority || ds->cfg->probes.heartbeat_interval <= 0)
    return 0;
  double tol = 2 * ds->cfg->probes.heartbeat_interval;
  *v = cvg_trend_eval(&ds->reps[i].trend, cvg_wall_now(), tol);
  return 1;
}

static int v_read_errors(const dset *ds, size_t i, double *v) {
  *v = (double)ds->reps[i].read_errors;
  return 1;
}

static int v_probe_errors(const dset *ds, size_t i, double *v) {
  *v = (double)ds->reps[i].probe_errors;
  return 1;
}

/* One family with a sample per replica of every dataset, labelled dataset and replica (and
 * region when asked). */
static void emit_per_replica(out *o, cvg_monitor *m, const char *name, const char *type,
                             const char *help, rep_value_fn fn, int with_region) {
  char e1[512], e2[512], e3[512], val[40];
  head(o, name, type, help);
  FOR_DS(m, ds) {
    pthread_mutex_lock(&ds->mu);
    for (size_t i = 0; i < ds->n; i++) {
      double v;
      if (!fn(ds, i, &v))
        continue;
      fmt_double(val, sizeof val, v);
      if (with_region)
        emit(o, "%s{dataset=\"%s\",replica=\"%s\",region=\"%s\"} %s\n", name,
             esc(e1, sizeof e1, ds->cfg->name), esc(e2, sizeof e2, ds->reps[i].cfg->name),
             esc(e3, sizeof e3, ds->reps[i].cfg->region), val);
      else
        emit(o, "%s{dataset=\"%s\",replica=\"%s\"} %s\n", name, esc(e1, sizeof e1, ds->cfg->name),
             esc(e2, sizeof e2, ds->reps[i].cfg->name), val);
    }
    pthread_mutex_unlock(&ds->mu);
  }
}

/* A value per dataset (ds->mu held): returns 0 to leave the dataset out. */
typedef int (*ds_value_fn)(const dset *ds, double *v);

/* 1 when the digests of shard sh differ between the reachable replicas (ds->mu held). */
static int shard_differs(const dset *ds, uint32_t sh) {
  const cvg_fp *ref = NULL;
  for (size_t i = 0; i < ds->n; i++) {
    if (ds->reps[i].up != 1 || !ds->reps[i].digest_valid)
      continue;
    if (!ref)
      ref = &ds->reps[i].digest[sh];
    else if (!cvg_fp_equal(*ref, ds->reps[i].digest[sh]))
      return 1;
  }
  return 0;
}

static int v_divergent_shards(const dset *ds, double *v) {
  uint64_t diff = 0;
  for (uint32_t sh = 0; sh < ds->cfg->shards; sh++)
    diff += (uint64_t)shard_differs(ds, sh);
  *v = (double)diff;
  return ds->have_full;
}
static int v_rows(const dset *ds, double *v) {
  *v = (double)ds->keys_total;
  return ds->have_full;
}
static int v_untracked(const dset *ds, double *v) {
  *v = (double)ds->dropped;
  return 1;
}
static int v_last_full(const dset *ds, double *v) {
  *v = ds->last_full_wall;
  return ds->have_full;
}
static int v_schema_drift(const dset *ds, double *v) {
  *v = ds->schema_drift;
  return 1;
}

/* One family with a sample per dataset, labelled dataset. */
static int v_rep_runs(const dset *ds, double *v) {
  return *v = (double)ds->rep_runs, ds->cfg->auto_repair;
}
static int v_rep_applied(const dset *ds, double *v) {
  return *v = (double)ds->rep_applied, ds->cfg->auto_repair;
}
static int v_rep_skipped(const dset *ds, double *v) {
  return *v = (double)ds->rep_skipped, ds->cfg->auto_repair;
}
static int v_rep_failed(const dset *ds, double *v) {
  return *v = (double)ds->rep_failed, ds->cfg->auto_repair;
}
static int v_rep_backlog(const dset *ds, double *v) {
  uint64_t n = 0;
  for (size_t s = 0; s < ds->tab_cap; s++)
    n += ds->tab[s] && ds->tab[s]->confirmed;
  return *v = (double)n, ds->cfg->auto_repair;
}
static int v_rep_stalled(const dset *ds, double *v) {
  return *v = ds->rep_stalled_runs, ds->cfg->auto_repair;
}
static int v_rep_refused(const dset *ds, double *v) {
  return *v = (double)ds->rep_refused, ds->cfg->auto_repair;
}
static int v_rep_refusals(const dset *ds, double *v) {
  return *v = (double)ds->rep_refusals, ds->cfg->auto_repair;
}
static int v_rep_paused(const dset *ds, double *v) {
  return *v = __atomic_load_n(&ds->rep_paused, __ATOMIC_SEQ_CST), ds->cfg->auto_repair;
}
static int v_rep_rate(const dset *ds, double *v) {
  return *v = ds->rep_last_rate, ds->cfg->auto_repair && ds->rep_last_run > 0;
}
static int v_rep_last_ok(const dset *ds, double *v) {
  return *v = ds->rep_last_ok, ds->cfg->auto_repair && ds->rep_last_ok > 0;
}

static void emit_per_dataset(out *o, cvg_monitor *m, const char *name, const char *type,
                             const char *help, ds_value_fn fn) {
  char e1[512], val[40];
  head(o, name, type, help);
  FOR_DS(m, ds) {
    pthread_mutex_lock(&ds->mu);
    double v;
    if (fn(ds, &v)) {
      fmt_double(val, sizeof val, v);
      emit(o, "%s{dataset=\"%s\"} %s\n", name, esc(e1, sizeof e1, ds->cfg->name), val);
    }
    pthread_mutex_unlock(&ds->mu);
  }
}

int cvg_monitor_metrics(cvg_monitor *m, cvg_buf *b) {
  out o = {b, 0};
  char e1[512], e2[512], e3[512], val[40];
  head(&o, "converge_build_info", "gauge", "The converge version, as a label; always 1.");
  emit(&o, "converge_build_info{version=\"%s\"} 1\n", CVG_VERSION);
  head(&o, "converge_start_time_seconds", "gauge", "When converge watch started (unix seconds).");
  emit(&o, "converge_start_time_seconds %.3f\n", m->started_wall);

  /* One family at a time, each over every dataset, as the format wants families contiguous. */
  emit_per_replica(&o, m, "converge_replica_up", "gauge",
                   "1 when the replica could be reached at the last probe, 0 when it could not.",
                   v_up, 1);
  emit_per_replica(&o, m, "converge_replication_lag_seconds", "gauge",
                   "Now minus the newest heartbeat seen on the replica; NaN when no heartbeat "
                   "arrived yet.",
                   v_lag, 0);
  emit_per_replica(&o, m, "converge_native_replication_lag_seconds", "gauge",
                   "The engine's own view of the replica's lag (PostgreSQL: time since the "
                   "subscription's apply worker last heard from the publisher, or a standby's "
                   "replay delay), beside the heartbeat's.",
                   v_native_lag, 0);
  emit_per_replica(&o, m, "converge_native_replication_up", "gauge",
                   "0 when the engine says replication into the replica is stopped (a disabled "
                   "subscription, no apply worker, no WAL receiver), else 1.",
                   v_native_up, 0);
  emit_per_replica(&o, m, "converge_heartbeat_sequence", "gauge",
                   "Sequence number of the newest heartbeat seen on the replica.", v_hb_seq, 0);
  head(&o, "converge_replica_state", "gauge",
       "1 for the replica's current replication state: ok, lagging, stalled (heartbeat not "
       "advancing while the authority's does), stopped (no heartbeat arrived), down, error "
       "(it answers, but sweeps fail reading it).");
  FOR_DS(m, ds) {
    pthread_mutex_lock(&ds->mu);
    for (size_t i = 0; i < ds->n; i++) {
      rstate st = shown_state(&ds->reps[i]);
      if (st == RS_UNKNOWN)
        continue;
      for (int s = RS_OK; s <= RS_ERROR; s++)
        emit(&o, "converge_replica_state{dataset=\"%s\",replica=\"%s\",state=\"%s\"} %d\n",
             esc(e1, sizeof e1, ds->cfg->name), esc(e2, sizeof e2, ds->reps[i].cfg->name),
             rstate_names[s], (int)st == s);
    }
    pthread_mutex_unlock(&ds->mu);
  }
  head(&o, "converge_convergence_seconds", "histogram",
       "Time from writing a canary on the authority to seeing it on the replica.");
  FOR_DS(m, ds) {
    pthread_mutex_lock(&ds->mu);
    for (size_t i = 0; i < ds->n && ds->cfg->authority >= 0 && ds->cfg->probes.canary_interval > 0;
         i++) {
      if ((int)i == ds->cfg->authority)
        continue;
      char labels[1100];
      snprintf(labels, sizeof labels, "dataset=\"%s\",replica=\"%s\"",
               esc(e1, sizeof e1, ds->cfg->name), esc(e2, sizeof e2, ds->reps[i].cfg->name));
      emit_hist(&o, "converge_convergence_seconds", labels, &ds->reps[i].conv, conv_le,
                CONV_BUCKETS);
    }
    pthread_mutex_unlock(&ds->mu);
  }
  emit_per_replica(&o, m, "converge_canary_failures_total", "counter",
                   "Canaries not seen on the replica within the timeout: a silent replication "
                   "break.",
                   v_canary_failures, 0);
  head(&o, "converge_divergent_rows", "gauge",
       "Divergent keys by dataset, shard, class and state (suspected or confirmed); shards "
       "without divergent keys are not listed.");
  FOR_DS(m, ds) {
    pthread_mutex_lock(&ds->mu);
    /* count per (shard, class, state) over the tracked keys: sort-free, by a small scan per
     * shard that has any. */
    uint32_t ns = ds->cfg->shards;
    uint64_t *cnt = calloc((size_t)ns * CVG_CLASS__COUNT * 2, sizeof *cnt);
    if (!cnt) {
      o.rc = CVG_ENOMEM;
    } else {
      for (size_t s = 0; s < ds->tab_cap; s++) {
        tracked *t = ds->tab[s];
        if (t)
          cnt[((size_t)t->shard * CVG_CLASS__COUNT + t->cls) * 2 + (size_t)t->confirmed]++;
      }
      for (uint32_t sh = 0; sh < ns; sh++)
        for (int c = 1; c < CVG_CLASS__COUNT; c++)
          for (int st = 0; st < 2; st++) {
            uint64_t v = cnt[((size_t)sh * CVG_CLASS__COUNT + (size_t)c) * 2 + (size_t)st];
            if (v)
              emit(&o,
                   "converge_divergent_rows{dataset=\"%s\",shard=\"%u\",class=\"%s\",state=\"%s\"}"
                   " %" PRIu64 "\n",
                   esc(e1, sizeof e1, ds->cfg->name), sh, cvg_class_name((cvg_class)c),
                   st ? "confirmed" : "suspected", v);
          }
      free(cnt);
    }
    pthread_mutex_unlock(&ds->mu);
  }
  head(&o, "converge_dataset_divergent_rows", "gauge",
       "Divergent keys of the dataset by class and state, over all shards.");
  FOR_DS(m, ds) {
    pthread_mutex_lock(&ds->mu);
    uint64_t cnt[CVG_CLASS__COUNT][2];
    memset(cnt, 0, sizeof cnt);
    for (size_t s = 0; s < ds->tab_cap; s++)
      if (ds->tab[s])
        cnt[ds->tab[s]->cls][ds->tab[s]->confirmed]++;
    for (int c = 1; c < CVG_CLASS__COUNT; c++)
      for (int st = 0; st < 2; st++)
        emit(&o,
             "converge_dataset_divergent_rows{dataset=\"%s\",class=\"%s\",state=\"%s\"} %" PRIu64
             "\n",
             esc(e1, sizeof e1, ds->cfg->name), cvg_class_name((cvg_class)c),
             st ? "confirmed" : "suspected", cnt[c][st]);
    pthread_mutex_unlock(&ds->mu);
  }
  head(&o, "converge_divergence_impact", "gauge",
       "Confirmed divergent rows times the value of one row (catalog impact.per_row), in the "
       "catalog's impact.unit; datasets without impact.per_row are not listed.");
  FOR_DS(m, ds) {
    if (ds->cfg->impact.per_row <= 0)
      continue;
    pthread_mutex_lock(&ds->mu);
    uint64_t conf = 0;
    for (size_t s = 0; s < ds->tab_cap; s++)
      if (ds->tab[s] && ds->tab[s]->confirmed)
        conf++;
    emit(&o, "converge_divergence_impact{dataset=\"%s\",unit=\"%s\"} %.17g\n",
         esc(e1, sizeof e1, ds->cfg->name), esc(e2, sizeof e2, ds->cfg->impact.unit),
         (double)conf * ds->cfg->impact.per_row);
    pthread_mutex_unlock(&ds->mu);
  }
  emit_per_dataset(&o, m, "converge_divergent_shards", "gauge",
                   "Shards whose digests differ between the reachable replicas.",
                   v_divergent_shards);
  emit_per_dataset(&o, m, "converge_dataset_rows", "gauge", "Keys seen by the last full sweep.",
                   v_rows);
  emit_per_dataset(&o, m, "converge_untracked_divergences_total", "counter",
                   "Divergent keys not tracked because the dataset's max_tracked was reached.",
                   v_untracked);
  head(&o, "converge_divergences_resolved_total", "counter",
       "Divergent keys that agreed again, by the state they had reached: suspected ones were "
       "rows in flight, confirmed ones were repaired or healed.");
  FOR_DS(m, ds) {
    pthread_mutex_lock(&ds->mu);
    for (int st = 0; st < 2; st++)
      emit(&o, "converge_divergences_resolved_total{dataset=\"%s\",state=\"%s\"} %" PRIu64 "\n",
           esc(e1, sizeof e1, ds->cfg->name), st ? "confirmed" : "suspected", ds->resolved[st]);
    pthread_mutex_unlock(&ds->mu);
  }
  head(&o, "converge_sweep_rows_total", "counter", "Rows read from the replica by sweeps.");
  FOR_DS(m, ds) {
    pthread_mutex_lock(&ds->mu);
    for (size_t i = 0; i < ds->n; i++)
      for (int k = 0; k < 2; k++)
        emit(&o,
             "converge_sweep_rows_total{dataset=\"%s\",replica=\"%s\",kind=\"%s\"} %" PRIu64 "\n",
             esc(e1, sizeof e1, ds->cfg->name), esc(e2, sizeof e2, ds->reps[i].cfg->name),
             kind_names[k], ds->reps[i].rows_read[k]);
    pthread_mutex_unlock(&ds->mu);
  }
  head(&o, "converge_sweeps_total", "counter", "Sweeps run, by kind and result.");
  FOR_DS(m, ds) {
    pthread_mutex_lock(&ds->mu);
    for (int k = 0; k < 2; k++)
      emit(&o,
           "converge_sweeps_total{dataset=\"%s\",kind=\"%s\",result=\"ok\"} %" PRIu64 "\n"
           "converge_sweeps_total{dataset=\"%s\",kind=\"%s\",result=\"error\"} %" PRIu64 "\n",
           esc(e1, sizeof e1, ds->cfg->name), kind_names[k], ds->sweeps_ok[k], e1, kind_names[k],
           ds->sweeps_err[k]);
    pthread_mutex_unlock(&ds->mu);
  }
  head(&o, "converge_sweep_duration_seconds", "histogram", "How long sweeps take, by kind.");
  FOR_DS(m, ds) {
    pthread_mutex_lock(&ds->mu);
    for (int k = 0; k < 2; k++) {
      char labels[700];
      snprintf(labels, sizeof labels, "dataset=\"%s\",kind=\"%s\"",
               esc(e1, sizeof e1, ds->cfg->name), kind_names[k]);
      emit_hist(&o, "converge_sweep_duration_seconds", labels, &ds->sweep_dur[k], sweep_le,
                SWEEP_BUCKETS);
    }
    pthread_mutex_unlock(&ds->mu);
  }
  emit_per_dataset(&o, m, "converge_last_full_sweep_timestamp_seconds", "gauge",
                   "When the last full sweep of the dataset ended (unix seconds).", v_last_full);
  emit_per_dataset(&o, m, "converge_schema_drift", "gauge",
                   "1 when the replicas' schemas (columns or declared types) differ.",
                   v_schema_drift);
  emit_per_dataset(&o, m, "converge_repair_runs_total", "counter",
                   "Automatic repair runs (auto_repair) that had confirmed divergences to repair.",
                   v_rep_runs);
  emit_per_dataset(&o, m, "converge_repair_applied_total", "counter",
                   "Repair mutations applied (conditional writes that held).", v_rep_applied);
  emit_per_dataset(&o, m, "converge_repair_skipped_total", "counter",
                   "Repair mutations skipped because the row changed after the decision.",
                   v_rep_skipped);
  emit_per_dataset(&o, m, "converge_repair_failed_total", "counter",
                   "Repair mutations that failed (the error is in the journal and the log).",
                   v_rep_failed);
  emit_per_dataset(&o, m, "converge_repair_backlog", "gauge",
                   "Confirmed divergent keys waiting for repair.", v_rep_backlog);
  emit_per_dataset(&o, m, "converge_repair_paused", "gauge",
                   "1 while automatic repair is held (POST /api/v1/repair/pause).", v_rep_paused);
  emit_per_dataset(&o, m, "converge_repair_stalled_runs", "gauge",
                   "Consecutive repair runs that applied nothing while keys were waiting.",
                   v_rep_stalled);
  emit_per_dataset(&o, m, "converge_repair_refused", "gauge",
                   "Changes the last automatic repair run held back because a safety limit "
                   "refused it (repair.max_delete_fraction, max_changes_per_run, an empty "
                   "authority); 0 when it was not refused.",
                   v_rep_refused);
  emit_per_dataset(&o, m, "converge_repair_refusals_total", "counter",
                   "Automatic repair runs refused by a safety limit.", v_rep_refusals);
  head(&o, "converge_conflicts_confirmed_total", "counter",
       "Keys confirmed as conflicts, per shard, since converge watch started (conflict "
       "hotspots: rate() shows where the data model invites conflicts; /api/v1/hotspots "
       "names the keys).");
  for (size_t i = 0; i < m->n_ds; i++) {
    dset *ds = &m->ds[i];
    pthread_mutex_lock(&ds->mu);
    for (uint32_t sh = 0; sh < ds->cfg->shards; sh++)
      if (ds->conflicts[sh])
        emit(&o, "converge_conflicts_confirmed_total{dataset=\"%s\",shard=\"%u\"} %llu\n",
             esc(e1, sizeof e1, ds->cfg->name), sh, (unsigned long long)ds->conflicts[sh]);
    pthread_mutex_unlock(&ds->mu);
  }
  emit_per_dataset(&o, m, "converge_repair_rows_per_second", "gauge",
                   "Mutations applied per second by the last automatic repair run "
                   "(comparison included).",
                   v_rep_rate);
  emit_per_dataset(&o, m, "converge_repair_last_success_timestamp_seconds", "gauge",
                   "When a repair run last applied everything it planned.", v_rep_last_ok);
  head(&o, "converge_invariant_ok", "gauge",
       "1 when the declared invariant holds, 0 when it is violated; absent until it can be "
       "judged.");
  FOR_DS(m, ds) {
    pthread_mutex_lock(&ds->mu);
    for (size_t i = 0; i < ds->n_inv; i++)
      if (ds->inv[i].known)
        emit(&o, "converge_invariant_ok{dataset=\"%s\",invariant=\"%s\"} %d\n",
             esc(e1, sizeof e1, ds->cfg->name), esc(e2, sizeof e2, ds->inv[i].name), ds->inv[i].ok);
    pthread_mutex_unlock(&ds->mu);
  }
  head(&o, "converge_invariant_value", "gauge",
       "The measured value each invariant is judged on (lag seconds, rows, fraction, replicas, "
       "aggregate spread, seconds).");
  FOR_DS(m, ds) {
    pthread_mutex_lock(&ds->mu);
    for (size_t i = 0; i < ds->n_inv; i++)
      if (ds->inv[i].known) {
        fmt_double(val, sizeof val, ds->inv[i].value);
        emit(&o, "converge_invariant_value{dataset=\"%s\",invariant=\"%s\"} %s\n",
             esc(e1, sizeof e1, ds->cfg->name), esc(e2, sizeof e2, ds->inv[i].name), val);
      }
    pthread_mutex_unlock(&ds->mu);
  }
  head(&o, "converge_aggregate_value", "gauge",
       "The value of each equal_aggregate expression on each replica.");
  FOR_DS(m, ds) {
    pthread_mutex_lock(&ds->mu);
    for (size_t a = 0; a < ds->cfg->inv.n_aggregates; a++)
      for (size_t i = 0; i < ds->n; i++)
        if (ds->reps[i].agg_ok[a]) {
          fmt_double(val, sizeof val, ds->reps[i].agg[a]);
          emit(&o, "converge_aggregate_value{dataset=\"%s\",replica=\"%s\",expr=\"%s\"} %s\n",
               esc(e1, sizeof e1, ds->cfg->name), esc(e2, sizeof e2, ds->reps[i].cfg->name),
               esc(e3, sizeof e3, ds->cfg->inv.aggregates[a].expr), val);
        }
    pthread_mutex_unlock(&ds->mu);
  }
  emit_per_replica(&o, m, "converge_probe_errors_total", "counter",
                   "Probe runs that failed to reach or read the replica.", v_probe_errors, 0);
  emit_per_replica(&o, m, "converge_replica_errors_total", "counter",
                   "Sweeps (incremental and full) that failed reading the replica while it "
                   "answered probes: corrupt pages, a file changed mid-scan, a scan error.",
                   v_read_errors, 0);
  emit_per_replica(&o, m, "converge_replication_lag_trend", "gauge",
                   "Lag trend over the last trend_window heartbeat samples: -1 window not yet "
                   "full, 0 ok, 1 warn (lag never decreases), 2 stall (nothing applied), "
                   "3 stop (no reading for longer than the window).",
                   v_trend, 0);
  head(&o, "converge_slo_burn_rate", "gauge",
       "Burn rate of the convergence SLO's error budget over the window (1 = exactly on budget).");
  for (size_t i = 0; i < m->n_ds; i++) {
    dset *ds = &m->ds[i];
    if (!ds->cfg->slo.declared)
      continue;
    static const double windows[] = {300, 3600, 21600};
    static const char *const wnames[] = {"5m", "1h", "6h"};
    for (size_t w = 0; w < 3; w++) {
      cvg_cat_rule r;
      memset(&r, 0, sizeof r);
      r.kind = CVG_RULE_SLO;
      r.window = windows[w];
      double v;
      if (alert_value(m, i, SIZE_MAX, &r, &v)) {
        fmt_double(val, sizeof val, v);
        emit(&o, "converge_slo_burn_rate{dataset=\"%s\",window=\"%s\"} %s\n",
             esc(e1, sizeof e1, ds->cfg->name), wnames[w], val);
      }
    }
  }
  if (o.rc == CVG_OK && m->alerts)
    o.rc = cvg_alerts_metrics(m->alerts, b);
  return o.rc;
}

/* ---- rendering: JSON ---- */

static json_t *jnum(double v) {
  return isfinite(v) ? json_real(v) : json_null();
}

/* Settled key columns are not kept; keys are shown with the catalog's key names, or k1, k2... */
static json_t *key_json(const dset *ds, const unsigned char *key, size_t key_len) {
  const char *names[64];
  char gen[64][8];
  size_t n = ds->cfg->n_key;
  if (n == 0 || n > 64) {
    cvg_value vals[64];
    size_t nv = 0;
    cvg_buf scratch;
    cvg_buf_init(&scratch, 1u << 20);
    if (cvg_decode_tuple(key, key_len, vals, 64, &nv, &scratch) != CVG_OK)
      nv = 0;
    cvg_buf_release(&scratch);
    n = nv;
    for (size_t i = 0; i < n; i++) {
      snprintf(gen[i], sizeof gen[i], "k%zu", i + 1);
      names[i] = gen[i];
    }
  } else {
    for (size_t i = 0; i < n; i++)
      names[i] = ds->cfg->key[i];
  }
  json_t *j = cvg_key_to_json(key, key_len, names, n);
  return j ? j : json_null();
}

static json_t *version_json(const unsigned char *v, size_t n) {
  if (!n)
    return json_null();
  cvg_value val;
  size_t nv = 0;
  cvg_buf scratch;
  cvg_buf_init(&scratch, 1u << 20);
  json_t *j = NULL;
  if (cvg_decode_tuple(v, n, &val, 1, &nv, &scratch) == CVG_OK && nv == 1)
    j = cvg_value_to_json(&val);
  cvg_buf_release(&scratch);
  return j ? j : json_null();
}

static const char *const copy_state[] = {"absent", "live", "tombstone", "unknown"};

static json_t *tracked_json(const dset *ds, const tracked *t) {
  json_t *o = json_object();
  json_object_set_new(o, "dataset", json_string(ds->cfg->name));
  json_object_set_new(o, "key", key_json(ds, t->key, t->key_len));
  json_object_set_new(o, "shard", json_integer(t->shard));
  json_object_set_new(o, "class", json_string(cvg_class_name(t->cls)));
  json_object_set_new(o, "state", json_string(t->confirmed ? "confirmed" : "suspected"));
  json_object_set_new(o, "first_seen", json_real(t->first_seen));
  json_object_set_new(o, "confirmed_at", t->confirmed ? json_real(t->confirmed_at) : json_null());
  json_object_set_new(o, "last_checked", json_real(t->last_checked));
  json_object_set_new(o, "agreeing_replicas", json_integer(t->agreeing));
  json_t *reps = json_object();
  for (size_t i = 0; i < ds->n; i++) {
    json_t *r = json_object();
    json_object_set_new(r, "state", json_string(copy_state[t->rstates[i]]));
    json_object_set_new(
        r, "version",
        version_json(t->key + t->key_len + t->ver_off[i], t->ver_off[i + 1] - t->ver_off[i]));
    json_object_set_new(reps, ds->reps[i].cfg->name, r);
  }
  json_object_set_new(o, "replicas", reps);
  return o;
}

static int dump_into(json_t *j, cvg_buf *b) {
  if (!j)
    return CVG_ENOMEM;
  char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(j);
  if (!s)
    return CVG_ENOMEM;
  int rc = cvg_buf_append(b, s, strlen(s));
  free(s);
  return rc;
}

#define STATUS_SAMPLES 10 /* sample keys per dataset in /api/v1/status */

/* The dataset's repair: policy, automatic repair's state and counts (ds->mu held). */
static json_t *repair_json(const dset *ds) {
  int p = ds->cfg->policy >= 0 && ds->cfg->policy <= CVG_POLICY_MERGE ? ds->cfg->policy : 0;
  json_t *r = json_object();
  double backlog = 0;
  v_rep_backlog(ds, &backlog);
  json_object_set_new(r, "policy", json_string(cvg_policy_names[p]));
  json_object_set_new(r, "auto_repair", json_boolean(ds->cfg->auto_repair));
  json_object_set_new(r, "paused",
                      json_boolean(__atomic_load_n(&ds->rep_paused, __ATOMIC_SEQ_CST)));
  json_object_set_new(r, "backlog", json_integer((json_int_t)backlog));
  json_object_set_new(r, "runs", json_integer((json_int_t)ds->rep_runs));
  json_object_set_new(r, "applied", json_integer((json_int_t)ds->rep_applied));
  json_object_set_new(r, "skipped", json_integer((json_int_t)ds->rep_skipped));
  json_object_set_new(r, "failed", json_integer((json_int_t)ds->rep_failed));
  json_object_set_new(r, "stalled_runs", json_integer(ds->rep_stalled_runs));
  json_object_set_new(r, "last_run",
                      ds->rep_last_run > 0 ? json_real(ds->rep_last_run) : json_null());
  json_object_set_new(r, "last_rows_per_second",
                      ds->rep_last_run > 0 ? json_real(ds->rep_last_rate) : json_null());
  json_object_set_new(r, "last_success",
                      ds->rep_last_ok > 0 ? json_real(ds->rep_last_ok) : json_null());
  json_object_set_new(r, "error", ds->rep_error[0] ? json_string(ds->rep_error) : json_null());
  return r;
}

int cvg_monitor_status_json(cvg_monitor *m, cvg_buf *b) {
  json_t *root = json_object();
  json_object_set_new(root, "version", json_string(CVG_VERSION));
  json_object_set_new(root, "catalog", json_string(m->cat->path));
  json_object_set_new(root, "started_at", json_real(m->started_wall));
  json_object_set_new(root, "now", json_real(cvg_wall_now()));
  json_t *dsa = json_array();
  FOR_DS(m, ds) {
    pthread_mutex_lock(&ds->mu);
    json_t *d = json_object();
    json_object_set_new(d, "name", json_string(ds->cfg->name));
    json_object_set_new(d, "owner", json_string(ds->cfg->owner));
    json_object_set_new(d, "shards", json_integer(ds->cfg->shards));
    json_object_set_new(d, "rows",
                        ds->have_full ? json_integer((json_int_t)ds->keys_total) : json_null());
    json_object_set_new(d, "last_full_sweep",
                        ds->have_full ? json_real(ds->last_full_wall) : json_null());
    json_object_set_new(d, "last_incremental_sweep",
                        ds->last_incr_wall > 0 ? json_real(ds->last_incr_wall) : json_null());
    json_object_set_new(d, "schema_drift", json_boolean(ds->schema_drift));
    json_object_set_new(d, "schema_detail", json_string(ds->schema_msg));
    json_t *ra = json_array();
    for (size_t i = 0; i < ds->n; i++) {
      const rep *r = &ds->reps[i];
      json_t *rj = json_object();
      json_object_set_new(rj, "name", json_string(r->cfg->name));
      json_object_set_new(rj, "url", json_string(r->cfg->url_display));
      json_object_set_new(rj, "authority", json_boolean(r->cfg->authority));
      json_object_set_new(rj, "region", json_string(r->cfg->region));
      json_object_set_new(rj, "up", r->up < 0 ? json_null() : json_boolean(r->up));
      json_object_set_new(rj, "state", json_string(rstate_names[shown_state(r)]));
      json_object_set_new(rj, "lag_seconds", jnum(r->lag));
      json_object_set_new(rj, "heartbeat_seq", r->hb_seen ? json_integer(r->hb_seq) : json_null());
      json_object_set_new(rj, "canaries_seen", json_integer((json_int_t)r->canaries_seen));
      json_object_set_new(rj, "canary_failures", json_integer((json_int_t)r->canary_failures));
      json_object_set_new(rj, "error", rep_error(r)[0] ? json_string(rep_error(r)) : json_null());
      json_object_set_new(rj, "read_errors", json_integer((json_int_t)r->read_errors));
      if (r->native_role[0])
        json_object_set_new(rj, "native",
                            json_pack("{s:s, s:o, s:b}", "role", r->native_role, "lag_seconds",
                                      jnum(r->native_lag), "up", r->native_up));
      json_array_append_new(ra, rj);
    }
    json_object_set_new(d, "replicas", ra);
    json_t *ia = json_array();
    for (size_t i = 0; i < ds->n_inv; i++) {
      json_t *ij = json_object();
      json_object_set_new(ij, "name", json_string(ds->inv[i].name));
      json_object_set_new(ij, "status",
                          json_string(!ds->inv[i].known ? "unknown"
                                      : ds->inv[i].ok   ? "ok"
                                                        : "violated"));
      json_object_set_new(ij, "value", ds->inv[i].known ? jnum(ds->inv[i].value) : json_null());
      json_object_set_new(ij, "limit", jnum(ds->inv[i].limit));
      json_array_append_new(ia, ij);
    }
    json_object_set_new(d, "invariants", ia);
    uint64_t by[CVG_CLASS__COUNT][2];
    memset(by, 0, sizeof by);
    json_t *samples = json_array();
    json_t *shards = json_object();
    for (size_t s = 0; s < ds->tab_cap; s++) {
      tracked *t = ds->tab[s];
      if (!t)
        continue;
      by[t->cls][t->confirmed]++;
      char sh[16];
      snprintf(sh, sizeof sh, "%u", t->shard);
      json_t *c = json_object_get(shards, sh);
      json_object_set_new(shards, sh, json_integer(c ? json_integer_value(c) + 1 : 1));
      if (json_array_size(samples) < STATUS_SAMPLES)
        json_array_append_new(samples, tracked_json(ds, t));
    }
    json_t *dv = json_object();
    uint64_t sus = 0, conf = 0;
    json_t *cls = json_object();
    for (int c = 1; c < CVG_CLASS__COUNT; c++) {
      sus += by[c][0];
      conf += by[c][1];
      json_t *cj = json_object();
      json_object_set_new(cj, "suspected", json_integer((json_int_t)by[c][0]));
      json_object_set_new(cj, "confirmed", json_integer((json_int_t)by[c][1]));
      json_object_set_new(cls, cvg_class_name((cvg_class)c), cj);
    }
    json_object_set_new(dv, "suspected", json_integer((json_int_t)sus));
    json_object_set_new(dv, "confirmed", json_integer((json_int_t)conf));
    json_object_set_new(dv, "by_class", cls);
    json_object_set_new(dv, "by_shard", shards);
    json_t *diff_shards = json_array(); /* shards whose digests differ between reachable replicas */
    for (uint32_t sh = 0; ds->have_full && sh < ds->cfg->shards; sh++)
      if (shard_differs(ds, sh))
        json_array_append_new(diff_shards, json_integer(sh));
    json_object_set_new(dv, "digest_differs", diff_shards);
    json_object_set_new(dv, "untracked", json_integer((json_int_t)ds->dropped));
    json_object_set_new(dv, "samples", samples);
    json_object_set_new(d, "divergences", dv);
    const cvg_cat_impact *im = &ds->cfg->impact;
    json_t *ij = json_object();
    json_object_set_new(ij, "tier", json_string(cvg_cat_tiers[im->tier & 3]));
    json_object_set_new(ij, "per_row", im->per_row > 0 ? json_real(im->per_row) : json_null());
    json_object_set_new(ij, "unit", json_string(im->unit));
    json_object_set_new(ij, "note", json_string(im->note));
    json_object_set_new(ij, "confirmed_value",
                        im->per_row > 0 ? json_real((double)conf * im->per_row) : json_null());
    json_object_set_new(ij, "suspected_value",
                        im->per_row > 0 ? json_real((double)sus * im->per_row) : json_null());
    json_object_set_new(d, "impact", ij);
    json_object_set_new(d, "repair", repair_json(ds));
    json_array_append_new(dsa, d);
    pthread_mutex_unlock(&ds->mu);
  }
  json_object_set_new(root, "datasets", dsa);
  return dump_into(root, b);
}

int cvg_monitor_divergences_json(cvg_monitor *m, const char *dataset, long shard, const char *cls,
                                 const char *state, size_t limit, cvg_buf *b) {
  int found = dataset == NULL;
  json_t *arr = json_array();
  size_t total = 0;
  FOR_DS(m, ds) {
    if (dataset && strcmp(dataset, ds->cfg->name) != 0)
      continue;
    found = 1;
    pthread_mutex_lock(&ds->mu);
    for (size_t s = 0; s < ds->tab_cap; s++) {
      tracked *t = ds->tab[s];
      if (!t || (shard >= 0 && (long)t->shard != shard) ||
          (cls && strcmp(cls, cvg_class_name(t->cls)) != 0) ||
          (state && strcmp(state, t->confirmed ? "confirmed" : "suspected") != 0))
        continue;
      total++;
      if (json_array_size(arr) < limit)
        json_array_append_new(arr, tracked_json(ds, t));
    }
    pthread_mutex_unlock(&ds->mu);
  }
  if (!found) {
    json_decref(arr);
    return CVG_ENOENT;
  }
  json_t *root = json_object();
  json_object_set_new(root, "total", json_integer((json_int_t)total));
  json_object_set_new(root, "returned", json_integer((json_int_t)json_array_size(arr)));
  json_object_set_new(root, "divergences", arr);
  return dump_into(root, b);
}
