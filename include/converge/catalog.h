/* SPDX-License-Identifier: MIT */
/*
 * The catalog: converge.yaml loaded into plain structs. It names every replicated dataset, its
 * replicas, how often each probe runs, the invariants that must hold, and where the HTTP server
 * listens. docs/catalog.md is the reference; examples/converge.yaml a documented example.
 *
 * Loading is strict: an unknown key, a value of the wrong type, a missing required key or a
 * duplicate name is an error whose input is "file:line:column" (1-based, pointing at the
 * offending key or value) and whose hint says what is expected. Nothing is silently ignored.
 *
 * Secrets: a replica URL may contain ${NAME}, replaced by the environment variable NAME, and a
 * replica may name a password_file whose first line becomes the URL's password. The expanded URL
 * (url) is used to connect and must never be printed; url_display has the password replaced by
 * "***" and is what messages, logs, metrics and the API show.
 *
 * Durations are numbers of seconds (1.5) or strings with a unit: "250ms", "10s", "5m", "1h", "1d".
 *
 * Threading: a loaded cvg_catalog is immutable and may be read from any thread.
 */
#ifndef CONVERGE_CATALOG_H
#define CONVERGE_CATALOG_H

#include "converge/status.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CVG_CATALOG_MAX_BYTES (4u << 20) /* largest catalog file accepted */

typedef struct cvg_cat_replica {
  char *name;        /* OWNED; unique within the dataset */
  char *url;         /* OWNED; with secrets expanded: never print it */
  char *url_display; /* OWNED; the URL with any password replaced by "***" */
  int authority;     /* 1 for the source of truth (at most one per dataset) */
  char *region;      /* OWNED; region label, "" if none */
  int line, column;  /* where the replica is declared, for messages */
} cvg_cat_replica;

typedef struct cvg_cat_aggregate {
  char *expr;       /* OWNED; an SQL aggregate over the table, e.g. "sum(balance)" */
  double tolerance; /* largest allowed difference between replicas (>= 0) */
} cvg_cat_aggregate;

/* Invariants; a field < 0 (or n_aggregates 0) means "not declared". */
typedef struct cvg_cat_invariants {
  double max_lag_seconds;
  int64_t max_divergent_rows;
  double max_divergent_fraction;
  int64_t min_agreeing_replicas;
  double max_divergence_age_seconds;
  cvg_cat_aggregate *aggregates; /* OWNED; equal_aggregate entries */
  size_t n_aggregates;
} cvg_cat_invariants;

/* Probe settings. An interval of 0 turns the probe off. */
typedef struct cvg_cat_probes {
  double heartbeat_interval;    /* seconds between heartbeat writes and reads; default 1 */
  char *heartbeat_table;        /* OWNED; default "converge_heartbeat" */
  int stall_after;              /* heartbeat reads without progress before "stalled"; default 3 */
  double canary_interval;       /* seconds between canary writes; default 10 */
  double canary_timeout;        /* seconds before an unseen canary is a failure; default 30 */
  char *canary_table;           /* OWNED; default "converge_canary" */
  int create_tables;            /* 1: create heartbeat/canary tables on the authority; default 1 */
  double sweep_interval;        /* incremental sweep (and re-check) interval; default 5 */
  double full_sweep_interval;   /* full sweep interval; default 3600 */
  double full_sweep_rate;       /* rows per second per replica in full sweeps; 0 = unlimited */
  int window_start, window_end; /* full sweeps only from..to (minutes after midnight, UTC);
                                   -1 when unrestricted */
  double confirm_within;        /* upper bound on the confirmation wait; default 60 */
  size_t max_tracked;           /* most divergent keys tracked per dataset; default 100000 */
  int keep_mapped;              /* incremental checks keep SQLite files mapped; default 0 */
} cvg_cat_probes;

/* What an alert rule watches. */
typedef enum cvg_rule_kind {
  CVG_RULE_METRIC = 0, /* a measured value against a threshold (fixed or adaptive) */
  CVG_RULE_INVARIANT,  /* a declared invariant is breached */
  CVG_RULE_TREND,      /* the lag trend status reaches a level */
  CVG_RULE_SLO         /* the convergence SLO's burn rate over a window */
} cvg_rule_kind;

typedef enum cvg_stage { CVG_STAGE_EARLY = 0, CVG_STAGE_MID, CVG_STAGE_LATE } cvg_stage;

/* A dataset's repair policy (lib/repair/policy.c decides by it; docs/repair.md). */
typedef enum cvg_policy {
  CVG_POLICY_NONE = 0,  /* no repair */
  CVG_POLICY_LWW,       /* the higher version wins; ties: a tombstone, then replica name order */
  CVG_POLICY_AUTHORITY, /* the authority's copy (or its absence) is re-attested everywhere */
  CVG_POLICY_MANUAL,    /* the last-write-wins proposal waits for a person's approval */
  CVG_POLICY_MERGE,     /* per-column rules (max, min, union, prefer a replica) over lww */
} cvg_policy;

/* "none", "lww", "authority", "manual", "merge", then NULL: indexed by cvg_policy. */
extern const char *const cvg_policy_names[];
/* CVG_POLICY_* for a name, or -1. */
int cvg_policy_parse(const char *name);

/* Trend statuses, judged as Burrow judges consumer lag (lib/detect/trend.c). */
typedef enum cvg_trend_status {
  CVG_TREND_INCOMPLETE = -1, /* the window is not full yet: it says nothing */
  CVG_TREND_OK = 0,
  CVG_TREND_WARN,  /* lag never decreases across the window */
  CVG_TREND_STALL, /* apply position unchanged across the window while lag > 0 */
  CVG_TREND_STOP   /* no new sample for longer than the window spans while lag > 0 */
} cvg_trend_status;

/*
 * One alert rule (docs/catalog.md, "alerting"). A rule fires an alert per series it applies to:
 * per replica for replica metrics (lag_seconds, ...), per dataset for the others.
 */
typedef struct cvg_cat_rule {
  char *alert;        /* OWNED; the alert name (label alertname) */
  cvg_rule_kind kind; /* what it watches */
  char *subject;      /* OWNED; metric name, invariant name, "lag" (trend), "convergence" (slo) */
  int below;          /* 0: fires above the threshold; 1: fires below it */
  double threshold;   /* fixed threshold (metric, slo: burn rate) */
  int has_resolve;    /* 1: resolve only past resolve (hysteresis) */
  double resolve;     /* resolve threshold */
  int adaptive;       /* 1: threshold: adaptive (a learned seasonal baseline) */
  double k;           /* adaptive: robust deviations above the baseline; default 4 */
  double floor;       /* adaptive: least distance from the baseline; default 0 */
  double warmup;      /* adaptive: seconds of history before it judges; default 1 day */
  char *intensity;    /* OWNED; adaptive: workload metric the baseline scales with, or NULL */
  cvg_trend_status at_least;          /* trend: the lowest status that fires; default warn */
  double window;                      /* slo: burn-rate window in seconds; default 1h */
  double for_s;                       /* seconds the condition must hold before firing */
  double keep_firing_for;             /* seconds it keeps firing after the condition clears */
  cvg_stage stage;                    /* early, mid or late */
  char *severity;                     /* OWNED; e.g. warning, critical, page */
  char **label_names, **label_values; /* OWNED; extra labels */
  size_t n_labels;
  char **ann_names, **ann_values; /* OWNED; extra annotations (may use {{ $value }} etc.) */
  size_t n_ann;
  char *runbook_url; /* OWNED; or NULL: the built-in runbook page */
  int builtin;       /* 1 for converge's own default rules */
  int line, column;  /* where it is declared (0 for built-ins) */
} cvg_cat_rule;

/* The convergence SLO of a dataset: objective of canaries converging within `within`. */
typedef struct cvg_cat_slo {
  int declared;
  double objective; /* e.g. 0.99 */
  double within;    /* seconds */
} cvg_cat_slo;

/* Where alerts go and how they are kept (the top-level `alerting:` section). */
typedef struct cvg_cat_alerting {
  char **alertmanagers; /* OWNED; Alertmanager base URLs (POST {url}/api/v2/alerts) */
  size_t n_alertmanagers;
  char **webhooks; /* OWNED; generic JSON webhook URLs */
  size_t n_webhooks;
  char *log_file;             /* OWNED; JSON-lines alert log, or NULL */
  char *state_file;           /* OWNED; alert state and change events (SQLite) */
  char *external_url;         /* OWNED; base URL of converge's HTTP server, for links */
  double evaluation_interval; /* default 5 s */
  double resend_interval;     /* default 60 s */
  double resolved_retention;  /* resolved alerts are re-sent this long; default 900 s */
  double timeout;             /* per delivery attempt; default 10 s */
  size_t queue_size;          /* alerts waiting for delivery before the oldest are dropped */
  int conflict_shards;        /* conflicts in this many shards are late-stage; default 3 */
  double cause_window;        /* change events this long before onset are likely causes */
  int trend_window;           /* lag samples in the trend window; default 10 */
  int builtin_rules;          /* 1: the built-in rules apply (default) */
  cvg_cat_rule *rules;        /* OWNED; global rules, applied to every dataset */
  size_t n_rules;
} cvg_cat_alerting;

/* impact: what a divergent row of the dataset costs the business, for the dashboard and the API.
 * A row is worth per_row of unit (e.g. 12.5 USD, 1 order); tier orders datasets by urgency. */
typedef struct cvg_cat_impact {
  int tier;       /* 0 critical, 1 high, 2 medium (default), 3 low */
  double per_row; /* value of one divergent row in unit; 0: not declared */
  char *unit;     /* OWNED; e.g. "USD", "orders"; "" if none */
  char *note;     /* OWNED; what the dataset serves, "" if none */
} cvg_cat_impact;

/* The names of the impact tiers, by cvg_cat_impact.tier (0 critical .. 3 low), then NULL. */
extern const char *const cvg_cat_tiers[];

typedef struct cvg_cat_dataset {
  char *name; /* OWNED; unique */
  char **key; /* OWNED; key columns, n_key >= 1 (0: the primary key) */
  size_t n_key;
  char **columns; /* OWNED; compared columns, 0: every non-key column */
  size_t n_columns;
  char **exclude; /* OWNED; columns left out of the comparison */
  size_t n_exclude;
  char *version;             /* OWNED; version column or NULL */
  char *tombstone;           /* OWNED; tombstone column or NULL */
  char *origin;              /* OWNED; origin (writer/pipeline) column or NULL */
  uint32_t shards;           /* shard count; default 16 */
  char *owner;               /* OWNED; owning team, "" if none */
  int payload_samples;       /* 1: row values may appear in the API and alerts */
  cvg_cat_impact impact;     /* business impact of divergence (dashboard, API) */
  cvg_cat_replica *replicas; /* OWNED; n_replicas >= 2 */
  size_t n_replicas;
  int authority; /* index of the authority replica, -1 if none */
  cvg_cat_probes probes;
  cvg_cat_invariants inv;
  cvg_cat_rule *rules; /* OWNED; alert rules of this dataset only */
  size_t n_rules;
  cvg_cat_slo slo;
  int policy;             /* a cvg_policy */
  double repair_rate;     /* repair.rows_per_second; 0 unlimited */
  int repair_batch;       /* repair.batch: keys per journal group and transaction; default 2000 */
  int auto_repair;        /* 1: converge watch repairs confirmed divergences per the policy */
  int repair_staged;      /* repair.staged: one shard first, verified, then 2, 4, 8... shards */
  int repair_concurrency; /* repair.concurrency: shards repaired at once; default 1 */
  int real_digits;        /* > 0: reals compared rounded to this many digits (store.h) */
  int time_digits;        /* > 0: timestamps compared at time_digits - 1 digits (store.h) */
  char **merge_cols, **merge_rules; /* OWNED; policy merge: column -> max|min|union|lww|
                                       prefer:REPLICA */
  size_t n_merge;
  double tombstone_grace; /* repair.tombstone_grace: seconds a tombstone is kept; 0 never purged */
  double version_clock_div;   /* repair.version_clock: divisor to seconds (1, 1e3, 1e6); 0 unset */
  double repair_replica_rate; /* repair.replica_rows_per_second: writes per replica; 0 none */
  int repair_window_start, repair_window_end; /* repair.window (UTC minutes); -1 none */
  double repair_interval; /* repair.interval: seconds between automatic repairs; default 10 */
  double repair_max_delete_fraction; /* repair.max_delete_fraction: a run that would delete more
                                        of any replica's rows applies nothing; default 0.05 */
  double repair_limit_window;        /* repair.limit_window: seconds over which the deletes of
                                        runs add up against max_delete_fraction; default 1h */
  uint64_t repair_max_changes;       /* repair.max_changes_per_run: more planned writes and a
                                        run applies nothing; 0: no limit (the default) */
  int line, column;                  /* where the dataset is declared */
} cvg_cat_dataset;

#define CVG_JOURNAL_KEY_BYTES_MIN 16  /* shortest journal HMAC key (journal.key_file) */
#define CVG_JOURNAL_KEY_BYTES_MAX 256 /* longest journal HMAC key */

typedef struct cvg_catalog {
  char *path;       /* OWNED; the file it was loaded from */
  char *listen;     /* OWNED; HTTP address host:port; default "127.0.0.1:9464" */
  char *log_format; /* OWNED; "json" or "logfmt"; default "json" */
  char *log_level;  /* OWNED; "debug", "info", "warn" or "error"; default "info" */
  int workers;      /* probe worker threads; default 4 */
  char *api_token;  /* OWNED; bearer token for POST endpoints, or NULL (they are refused); secret */
  char *journal;    /* OWNED; the repair journal; default beside the catalog: NAME.journal.db */
  unsigned char *journal_key; /* OWNED; HMAC key from journal.key_file, or NULL; secret */
  size_t journal_key_len;
  cvg_cat_alerting alerting;
  cvg_cat_dataset *datasets; /* OWNED; n_datasets >= 1 */
  size_t n_datasets;
  char *warnings; /* OWNED; non-fatal remarks, one per line ("" if none) */
} cvg_catalog;

/* Loads and validates path. OWNED result: free with cvg_catalog_free(). On failure *out is NULL
 * and err says file:line:column, the offending key and what is expected. */
int cvg_catalog_load(cvg_catalog **out, const char *path, cvg_error *err);
/* Same, from a buffer; name is used in messages as the file name. */
int cvg_catalog_parse(cvg_catalog **out, const char *name, const char *text, size_t len,
                      cvg_error *err);
void cvg_catalog_free(cvg_catalog *cat);

/* Parses a duration ("250ms", "10s", "5m", "1h", "1d", or a number of seconds). 0 on success. */
int cvg_parse_duration(const char *s, double *out);

/* Frees what a rule owns (the catalog does this for its own rules). */
void cvg_cat_rule_free(cvg_cat_rule *r);

/*
 * The metrics an alert rule may name (`metric:`, `intensity:`): one table, which the catalog
 * validates rules against and the watch implements (lib/watch/signals.c, one getter per entry,
 * checked at compile time). A new metric is one line here and one getter there.
 */
typedef enum cvg_signal {
  CVG_SIG_LAG_SECONDS = 0, /* per replica */
  CVG_SIG_CONVERGENCE_SECONDS,
  CVG_SIG_CANARY_FAILURES,
  CVG_SIG_REPLICA_DOWN,
  CVG_SIG_SWEEP_FAILURES,
  CVG_SIG_DIVERGENT_ROWS, /* per dataset */
  CVG_SIG_SUSPECTED_ROWS,
  CVG_SIG_DIVERGENT_FRACTION,
  CVG_SIG_DIVERGENT_SHARDS,
  CVG_SIG_CONFLICT_SHARDS,
  CVG_SIG_SCHEMA_DRIFT,
  CVG_SIG_DIVERGENCE_AGE_SECONDS,
  CVG_SIG_UNTRACKED_ROWS,
  CVG_SIG_WRITE_RATE,
  CVG_SIG_REPAIR_BACKLOG,
  CVG_SIG_REPAIR_FAILURES,
  CVG_SIG_REPAIR_STALLED_RUNS,
  CVG_SIG_REPAIR_REFUSED,
  CVG_SIG__COUNT
} cvg_signal;

typedef struct cvg_signal_info {
  const char *name; /* as rules name it */
  int scope;        /* 1 per replica, 2 per dataset */
} cvg_signal_info;
extern const cvg_signal_info cvg_signals[CVG_SIG__COUNT];
/* The signal of that name, or -1. */
int cvg_signal_parse(const char *name);
/* Scope of a metric an alert rule may name: 1 per replica, 2 per dataset, 0 not a metric. */
int cvg_rule_metric_scope(const char *name);
/* Names of the invariants a rule may name with `invariant:` (NULL-terminated). */
extern const char *const cvg_rule_invariants[];
/* Names of the stages and trend statuses, indexed by value (trend: +1). */
extern const char *const cvg_stage_names[];
extern const char *const cvg_trend_names[];

/* Splits "host:port" (or "[v6]:port"); host OWNED by caller (free()). 0 on success. */
int cvg_parse_listen(const char *s, char **host, unsigned *port);

#ifdef __cplusplus
}
#endif
#endif
