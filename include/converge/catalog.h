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
  cvg_cat_replica *replicas; /* OWNED; n_replicas >= 2 */
  size_t n_replicas;
  int authority; /* index of the authority replica, -1 if none */
  cvg_cat_probes probes;
  cvg_cat_invariants inv;
  int line, column; /* where the dataset is declared */
} cvg_cat_dataset;

typedef struct cvg_catalog {
  char *path;                /* OWNED; the file it was loaded from */
  char *listen;              /* OWNED; HTTP address host:port; default "127.0.0.1:9464" */
  char *log_format;          /* OWNED; "json" or "logfmt"; default "json" */
  char *log_level;           /* OWNED; "debug", "info", "warn" or "error"; default "info" */
  int workers;               /* probe worker threads; default 4 */
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

/* Splits "host:port" (or "[v6]:port"); host OWNED by caller (free()). 0 on success. */
int cvg_parse_listen(const char *s, char **host, unsigned *port);

#ifdef __cplusplus
}
#endif
#endif
