/* SPDX-License-Identifier: MIT */
/*
 * The chaos lab: a replicated system on N SQLite replicas (an authority applying a seeded
 * workload and shipping every change to the others through per-link queues), faults injected
 * on a schedule, the real `converge watch` (detection, alerts, automatic repair) run against it
 * as a child process, and a verdict per fault plus a model check of every replica at the end.
 * Scenario format: docs/chaos.md; examples in examples/chaos/.
 */
#ifndef CONVERGE_CHAOS_H
#define CONVERGE_CHAOS_H

#include "converge/status.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CVG_CHAOS_MAX_FAULTS 64
#define CVG_CHAOS_MAX_REPLICAS 8

typedef enum cvg_fault_kind {
  CVG_FAULT_DROP,         /* changes on a link are lost (probability p) */
  CVG_FAULT_DELAY,        /* a link's latency grows by `latency` (plus jitter) */
  CVG_FAULT_REORDER,      /* pairs of changes to one key arrive in reverse order */
  CVG_FAULT_DUPLICATE,    /* changes arrive twice, the copy `latency` later */
  CVG_FAULT_PARTITION,    /* nothing is delivered for a while, then everything */
  CVG_FAULT_CORRUPT,      /* rows change on a replica without a new version */
  CVG_FAULT_CLOCK_SKEW,   /* a writer with a skewed clock writes straight to a replica */
  CVG_FAULT_STOP,         /* replication to a replica stops: changes are lost until it resumes */
  CVG_FAULT_CRASH,        /* the replica is gone for a while, then restarts and catches up */
  CVG_FAULT_DIRECT_WRITE, /* a conflicting writer writes straight to a replica */
  CVG_FAULT_SCHEMA,       /* a column is added on one replica (dropped again at the end) */
  CVG_FAULT__COUNT
} cvg_fault_kind;

extern const char *const cvg_fault_names[]; /* "drop", "delay", ... */

typedef struct cvg_chaos_fault {
  cvg_fault_kind kind;
  int replica;         /* index (0 is the authority, never a victim) */
  double at, duration; /* seconds from the start; duration 0 for instant faults */
  double probability;  /* drop, duplicate, reorder: share of changes affected (default 1) */
  double latency;      /* delay: added latency; duplicate: how much later the copy comes */
  double ramp;         /* delay: seconds over which the added latency grows from 0 (0: at once) */
  double skew;         /* clock_skew: seconds ahead */
  int rows;            /* corrupt, clock_skew, direct_write: rows touched */
  /* the verdict */
  int masked;          /* nothing lasting to detect: replication overwrote every affected key */
  int detected;        /* a confirmed divergence of its keys or an alert naming its replica */
  double detect_after; /* seconds from injection to detection */
  int stage;           /* highest alert stage attributed: 0 none, 1 early, 2 mid, 3 late */
  double stage_after;  /* seconds from injection to that stage */
  int repaired;        /* converged again */
  double repair_after; /* seconds from injection to converged */
  size_t affected;     /* keys affected on the victim */
} cvg_chaos_fault;

typedef struct cvg_chaos_scenario {
  char name[128];
  uint64_t seed;
  double duration; /* of the workload and the faults */
  int replicas;    /* 2..CVG_CHAOS_MAX_REPLICAS; replica 0 is the authority */
  int rows;        /* initial rows */
  double rate;     /* writes per second */
  int zipf;        /* key skew: 0 uniform, 1 Zipf */
  double zipf_s;   /* Zipf exponent */
  int mix_update, mix_insert, mix_delete; /* percentages */
  double latency, jitter;                 /* every link */
  double settle;         /* at most this long after the run for the replicas to converge */
  double max_lag;        /* the lab's lag invariant (seconds) */
  double confirm_within; /* the watch's confirm_within (seconds): how long a replica may apply
                            nothing before its differences are confirmed */
  cvg_chaos_fault faults[CVG_CHAOS_MAX_FAULTS];
  size_t n_faults;
} cvg_chaos_scenario;

/* Parses a scenario file; errors name file:line:column and what is expected. */
int cvg_chaos_load(const char *path, cvg_chaos_scenario *sc, cvg_error *err);
/* The same from text in memory; path names it in errors. */
int cvg_chaos_parse(const char *path, const char *text, size_t len, cvg_chaos_scenario *sc,
                    cvg_error *err);

typedef void (*cvg_chaos_print)(void *ctx, const char *line);

typedef struct cvg_chaos_opts {
  const char *dir;          /* working folder for the replicas, catalog, journal, logs */
  const char *converge_exe; /* the converge program started as `watch` */
  const char *ledger;       /* JSON lines appended with the run's verdicts; NULL: none */
  const char *scenario_path;
  int sabotage;          /* tests only: the lab loses a replica's write on purpose */
  cvg_chaos_print print; /* progress lines; may be NULL */
  void *print_ctx;
  const int *cancel;   /* when set and nonzero (atomic), the run winds down early */
  int realtime_banner; /* print where to look (metrics, API) when the watch is up */
  int port;            /* converge watch's HTTP port on 127.0.0.1; 0: a free one */
} cvg_chaos_opts;

typedef struct cvg_chaos_result {
  size_t faults, detected, masked, repaired;
  double recall, precision;
  double mttd, worst_ttd, mttr, worst_ttr;
  size_t false_alarms, true_alerts;
  /* per key: every confirmation the watch made, judged against what the links carried */
  size_t confirmations;       /* keys confirmed divergent */
  size_t false_confirmations; /* of which the differing copy was still in flight (FCONF) */
  size_t unjudged;            /* confirmations the lab could not read (the watch's ring passed) */
  size_t unexplained;         /* true confirmations of keys no fault touched */
  size_t inflight_repairs;    /* repair writes to a key whose change was still in flight */
  double key_precision; /* confirmations of keys a fault spoiled / confirmations (1 when none) */
  size_t lost, resurrected, duplicated, corrupt; /* the model check, summed over replicas */
  int converged;                                 /* every replica equal to the model at the end */
  int pass;        /* recall 1, no false alarm, no false confirmation, no repair of a row in flight,
               nothing lost, resurrected or duplicated */
  int interrupted; /* stopped early (Ctrl-C): never a pass */
  size_t not_run;  /* faults an interrupted run never reached */
  uint64_t ops;    /* workload writes */
  char ops_digest[17]; /* hex FNV-1a of the workload's operations: equal for equal seeds */
} cvg_chaos_result;

int cvg_chaos_run(cvg_chaos_scenario *sc, const cvg_chaos_opts *o, cvg_chaos_result *res,
                  cvg_error *err);

#ifdef __cplusplus
}
#endif

#endif
