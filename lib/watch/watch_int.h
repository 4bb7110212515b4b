/* SPDX-License-Identifier: MIT */
/*
 * The watch's state, shared by its parts: watch.c (life, shared helpers), sched.c (the jobs'
 * schedule), jobs.c (the jobs that observe), origin.c (the likely cause), signals.c (the alert
 * source),
 * wstate.c (the watch's own state),
 * autorepair.c, render_prom.c and render_json.c (metrics and JSON). Not installed: the public face is
 * converge/watch.h.
 *
 * Locks: m->mu guards the scheduler's fields; each dataset's ds->mu guards everything of the
 * dataset and its replicas that a probe updates, and its tracker; ds->sweep_mu keeps one sweep
 * per dataset.
 */
#ifndef CONVERGE_WATCH_INT_H
#define CONVERGE_WATCH_INT_H

#include "converge/alert.h"
#include "converge/diff.h"
#include "converge/watch.h"
#include "converge/store.h"
#include "converge/probe.h"
#include "converge/tracker.h"
#include "converge/trend.h"

#include <jansson.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define CONV_BUCKETS 14
extern const double cvgi_conv_le[CONV_BUCKETS];
#define SWEEP_BUCKETS 10
extern const double cvgi_sweep_le[SWEEP_BUCKETS];
#define MAX_CANARIES 64        /* canaries in flight per dataset */
#define CANARY_POLL 0.1        /* seconds between canary polls */
#define INVARIANT_INTERVAL 1.0 /* seconds between invariant evaluations */

typedef struct hist {
  uint64_t bucket[CONV_BUCKETS + 1]; /* non-cumulative counts; last is +Inf */
  double sum;
  uint64_t count;
} hist;

void cvgi_hist_add(hist *h, const double *le, size_t n_le, double v);

typedef enum rstate {
  RS_UNKNOWN = 0,
  RS_OK,
  RS_LAGGING,
  RS_STALLED,
  RS_STOPPED,
  RS_DOWN,
  RS_ERROR /* reachable, but its sweeps fail (shown_state) */
} rstate;
extern const char *const cvgi_rstate_names[];

enum { KIND_INCR = 0, KIND_FULL = 1 };
extern const char *const cvgi_kind_names[];

typedef struct rep {
  const cvg_cat_replica *cfg; /* BORROWED from the catalog */
  int up;                     /* -1 not yet known, 0 down, 1 up */
  char error[2 * CVG_ERROR_MSG_MAX +
             8];            /* last error (never holds a password: URLs are url_display) */
  int hb_seen;              /* a heartbeat row has been read */
  int64_t hb_seq;           /* newest heartbeat seq seen */
  double hb_ts;             /* its wall time (on the authority): the replica's apply position */
  double hb_moved_at;       /* wall time hb_seq last changed here */
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
  /* The engine's own apply position (a PostgreSQL subscriber's latest_end_lsn, placed in the
   * authority's LSN ring: the authority's wall time of the newest LSN it has reached), used
   * beside the heartbeat and instead of it when the heartbeat is not replicated. */
  double npos;   /* NAN unknown; -INFINITY: known, but older than the ring (before any key
                           converge has seen) */
  uint64_t nlsn; /* the raw LSN behind it */
  int nlsn_known;
  double npos_moved_at; /* wall time the LSN last advanced */
  uint64_t nrecv;       /* the engine's received LSN (standby, subscriber) */
  int nrecv_known;
  double nrecv_moved_at;  /* wall time it last advanced: WAL still arrives, so a replica that
                            applies nothing (a delayed standby) is not stopped */
  int hb_unreplicated;    /* a subscriber whose subscription runs while converge's heartbeat never
                           arrives (its tables are not in the publication) */
  char publications[128]; /* subscriber: its publications, for the hint */
  int64_t apply_errors;   /* subscriber: apply_error_count at the last reading */
  int apply_errors_known;
  double apply_err_at; /* wall time the count last rose, 0 never */
  int native_halted;   /* the apply worker is not running, or its errors rose lately */
} rep;

typedef struct canary {
  char token[CVG_CANARY_TOKEN_MAX]; /* unique token */
  double written_mono;              /* monotonic time of the write */
  uint32_t pending;                 /* replicas that have not seen it (bit per replica) */
} canary;

typedef struct inv_result {
  const char *name; /* invariant name, or the aggregate expression */
  int known;        /* 0 until it can be judged */
  int ok;           /* 1 holds */
  double value;     /* the measured value */
  double limit;     /* the declared bound */
} inv_result;

#define OUTCOMES 8192 /* canary outcomes kept for SLO burn rates */

/* The authority's WAL position at each heartbeat (wall time, LSN), oldest first from lsn_head:
 * a replica that reached LSN v has applied everything committed before the time paired with
 * the greatest LSN <= v. */
#define LSN_RING 1024

typedef struct dset {
  struct cvg_monitor *m;
  const cvg_cat_dataset *cfg; /* BORROWED */
  size_t idx;
  pthread_mutex_t mu;       /* guards all below */
  pthread_mutex_t sweep_mu; /* one sweep at a time */
  rep *reps;                /* OWNED; cfg->n_replicas */
  size_t n;
  int64_t hb_seq; /* last seq written on the authority */
  double lsn_t[LSN_RING];
  uint64_t lsn_v[LSN_RING];
  size_t lsn_n, lsn_head; /* entries, and where the next goes */
  char auth_senders[256]; /* the authority's walsenders (application_name), comma-separated */
  uint64_t auth_sysid;    /* the authority's system identifier (0 unknown) */
  int hb_write_ok;        /* last write succeeded */
  canary canaries[MAX_CANARIES];
  size_t n_canaries;
  cvg_tracker *trk;    /* OWNED; the divergent keys, digests, hotspots and episode */
  json_t **confs;      /* OWNED; ring of the last CONF_RING confirmations (cvgi_tracked_json
                            at the moment each was confirmed, with its "seq"); NULL slots empty */
  uint64_t conf_seq;   /* confirmations recorded so far; entry seq s sits at confs[(s-1) % ring] */
  uint64_t keys_total; /* keys seen by the last full sweep */
  int have_full;       /* a full sweep has completed */
  int full_requested;  /* an incremental check asks for a full sweep */
  double last_full_wall; /* wall time of the last full sweep's end */
  double last_incr_wall;
  hist sweep_dur[2];
  uint64_t sweeps_ok[2], sweeps_err[2];
  int schema_drift;       /* 1 when replicas' schemas differ */
  int sweep_culprit;      /* the replica whose read failed the sweep in progress, or -1 */
  char origin_note[400];  /* likely cause from the origin column ("" none; origin_cause) */
  double origin_at;       /* monotonic time of the last origin_cause, 0 never */
  uint64_t origin_seen;   /* confirmations as origin_cause last saw them */
  char schema_msg[1024];  /* what differs */
  inv_result inv[6 + 16]; /* the invariants */
  size_t n_inv;
  cvg_trk_episode synced; /* the episode as last saved (evaluation job only: wstate.c) */
  int synced_active;
  double first_full_wall; /* end of the first full sweep since the start; 0 none yet */
  /* automatic repair (auto_repair) */
  uint64_t rep_runs, rep_applied, rep_skipped, rep_failed, rep_errors;
  uint64_t rep_deferred;    /* times a confirmed key was left for a later run: a copy of it still on
                            its way somewhere (in_flight), or written again since confirmed */
  uint64_t rep_last_failed; /* mutations that failed in the last run */
  uint64_t rep_refused;     /* the last run was refused by a safety limit: the changes it held
                               back (0: not refused) */
  uint64_t rep_refusals;    /* runs refused so far */
  double rep_refused_at;    /* wall time of the last refusal: retried after REPAIR_REFUSED_RETRY */
  char rep_refused_why[400]; /* the limit's message */
  int rep_stalled_runs;      /* consecutive runs with a backlog and nothing applied */
  int rep_paused;            /* 1: automatic repair held (POST /api/v1/repair/pause) */
  double rep_last_ok;        /* wall time of the last run that applied everything it planned */
  double rep_last_run;       /* wall time the last run ended; 0 none yet */
  double rep_last_rate;      /* mutations applied per second by the last run */
  char rep_error[CVG_ERROR_MSG_MAX];
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
  int cancel;               /* asks a running full sweep to stop (atomic stores and loads) */
  double sched_beat;        /* monotonic time of the scheduler's last loop */
  cvg_alerts *alerts;       /* OWNED; the alert engine */
  struct sqlite3 *state_db; /* OWNED; the watch's own state (wstate.c); NULL: not kept */
  double started_wall;
};

/* ---- helpers the jobs give the renderers ---- */

/* A double as metrics and logs print it ("NaN", "+Inf", or the shortest exact form). */
void cvgi_fmt_double(char *buf, size_t n, double v);
/* The replica's state as shown: its replication state, or RS_ERROR while its sweeps fail. */
rstate cvgi_shown_state(const rep *r);
/* The replica's error for people: why it is down, else why its sweeps fail, else "". */
const char *cvgi_rep_error(const rep *r);
/* The alert source's value of rule on dataset d (and replica r, or SIZE_MAX): 1 when known. */
int cvgi_alert_value(void *ctx, size_t d, size_t r, const cvg_cat_rule *rule, double *v);

/* ---- and render_json.c gives signals.c (for alert annotations) ---- */

json_t *cvgi_tracked_json(const dset *ds, const cvg_tracked *t);
/* How many confirmations each dataset keeps for /api/v1/confirmations. */
#define CONF_RING 4096
json_t *cvgi_key_json(const dset *ds, const unsigned char *key, size_t key_len);

/* ---- what the parts of the watch give each other ---- */

/* autorepair.c */
void cvgi_job_repair(cvg_monitor *m, job *j);

/* native.c: the engine's own position (ds->mu held for all) */
void cvgi_lsn_push(dset *ds, double t, uint64_t lsn);
/* The authority's wall time paired with the greatest LSN <= lsn in the ring; -INFINITY when lsn
 * is older than every entry, NAN when the ring is empty. */
double cvgi_lsn_time(const dset *ds, uint64_t lsn);
/* Whether name is one of the comma-separated senders. */
int cvgi_sender_named(const char *senders, const char *name);
/* After a heartbeat reading of r: its engine position, halts, and whether its heartbeat is
 * unreplicated (logged once when that changes). */
void cvgi_native_update(cvg_monitor *m, dset *ds, rep *r, const cvg_hb_reading *rd, double now);
/* r's lag and state from the engine, while its heartbeat is unreplicated. */
void cvgi_native_state(dset *ds, rep *r, double now, double threshold);
/* What to do about an unreplicated heartbeat, for the log and status. */
void cvgi_unreplicated_hint(const dset *ds, const rep *r, char *buf, size_t size);

/* watch.c */
/* up[i] = 1 for each reachable replica (ds->mu held): whose digests are compared. */
void cvgi_reachable(const dset *ds, unsigned char *up);
/* A check's circumstances for the tracker, with the arrays its apply-position rule reads. */
typedef struct cvgi_check_ctx {
  cvg_trk_check chk;
  int on;                              /* heartbeats: the apply-position rule applies */
  double apply[CVG_DIFF_MAX_REPLICAS]; /* each replica's apply position (tracker.h), NAN unknown */
  double idle[CVG_DIFF_MAX_REPLICAS];  /* seconds it has not advanced */
} cvgi_check_ctx;
/* Each replica's heartbeat as the check reads it itself, on its own connections sts (by replica
 * index; NULL: not open), no lock held: up to one heartbeat interval fresher than the heartbeat
 * job's last reading, so a confirmation need not wait for that job. fresh[i] NAN: not read. */
void cvgi_apply_fresh(const dset *ds, cvg_store **sts, double *fresh);
/* Each replica's apply position now (ds->mu held), taken before a check reads the replicas: what
 * the check then reads is at least as new as the positions it is judged by (a position read after
 * the rows could vouch for rows the check never saw). fresh (may be NULL): cvgi_apply_fresh's
 * readings, taken before too; a fresher one moves a position forward. */
void cvgi_apply_snapshot(cvgi_check_ctx *cx, const dset *ds, const double *fresh);
/* One check's circumstances for the tracker (ds->mu held), with cx's snapshot. */
void cvgi_check_at(cvgi_check_ctx *cx, const dset *ds, const char *probe, double now, double wait,
                   int update_digests, int sweep);
double cvgi_confirm_wait(const dset *ds);
void cvgi_drop_conn(cvg_store **st);
int cvgi_ensure_open(cvg_store **st, const rep *r, unsigned flags, cvg_error *err);
void cvgi_logf_event(cvg_monitor *m, cvg_log_level lvl, const char *event, const dset *ds,
                     const rep *r, const char *k1, const char *v1, const char *k2, const char *v2);
void cvgi_set_up(cvg_monitor *m, dset *ds, rep *r, int up, const cvg_error *err);

/* wstate.c: the watch's own state (divergence episodes, holds on repair) */
void cvgi_episodes_open(cvg_monitor *m);    /* in cvg_monitor_new; failing: a warning, none kept */
void cvgi_episodes_restore(cvg_monitor *m); /* in cvg_monitor_new: the saved episodes */
void cvgi_episodes_sync(cvg_monitor *m);    /* the evaluation job: saves those that changed */
void cvgi_episodes_close(cvg_monitor *m);
/* The holds on repair as the state file records them (first: in cvg_monitor_new; else again,
 * once a reload serves the new monitor: cvg_monitor_restore_pauses). */
void cvgi_pauses_restore(cvg_monitor *m, int first);
/* Records a hold on (pause 1) or release of automatic repair of dataset (NULL: every dataset)
 * in the state file at path; run by the state-file worker (writeq.c). */
int cvgi_pause_save(const char *path, const char *dataset, int pause, double at, cvg_error *err);

/* jobs.c: the quick probes */
void cvgi_job_canary_poll(cvg_monitor *m, job *j);
void cvgi_job_canary_write(cvg_monitor *m, job *j);
void cvgi_job_hb_read(cvg_monitor *m, job *j);
void cvgi_job_hb_write(cvg_monitor *m, job *j);
void cvgi_job_inv(cvg_monitor *m, job *j);

/* sched.c */
int cvgi_add_job(cvg_monitor *m, jkind kind, dset *ds, size_t r, double interval, int pool_,
                 double first);

/* signals.c */
void cvgi_job_alert(cvg_monitor *m, job *j);

/* origin.c: the likely cause (the origin column most divergent rows share) */
void cvgi_origin_cause(dset *ds, cvg_store **sts);

/* jobs.c: the sweeps */
int cvgi_full_sweep(cvg_monitor *m, dset *ds, cvg_store **sts, cvg_error *err);
int cvgi_in_window(const cvg_cat_probes *p);
int cvgi_incremental(cvg_monitor *m, dset *ds, cvg_store **sts, uint64_t *compared, cvg_error *err);
void cvgi_job_full(cvg_monitor *m, job *j);
void cvgi_job_incr(cvg_monitor *m, job *j);
void cvgi_sweep_done(cvg_monitor *m, dset *ds, int kind, int rc, double started,
                     const cvg_error *err);

#endif
