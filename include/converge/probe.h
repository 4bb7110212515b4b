/* SPDX-License-Identifier: MIT */
/*
 * The replication probes as one-shot functions on an open store: each runs one probe once and
 * returns what it saw. The watch (lib/watch/jobs.c) schedules them, keeps their history and
 * judges a replica's state; `converge watch` is their only caller today, but nothing here needs
 * a daemon.
 *
 * Heartbeat: the authority writes (source, seq, ts = its wall time) into the heartbeat table;
 * a replica's reading of that row, as it arrived through replication, gives lag = now - ts.
 * Canary: the authority writes a row with a fresh token; a replica is polled for tokens until
 * they appear. Beside the heartbeat, each reads the engine's own view of replication
 * (PostgreSQL: pg_stat_subscription, pg_stat_wal_receiver, pg_stat_replication).
 *
 * Threading: a call uses only the store it is given (one thread at a time, as store.h says).
 */
#ifndef CONVERGE_PROBE_H
#define CONVERGE_PROBE_H

#include "converge/status.h"
#include "converge/store.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The engine's own view of replication (cvg_native_view, store.h): role "" when none. */

typedef struct cvg_hb_reading {
  int table_absent; /* the heartbeat table is not there (yet): replication has not brought it */
  int found;        /* a row of this source was read */
  int64_t seq;      /* its sequence */
  double ts;        /* its wall time */
  cvg_native_view native;
} cvg_hb_reading;

/*
 * Reads source's heartbeat on st (want_row 0: only the engine's view) and the engine's view.
 * An absent table is not an error (out->table_absent). The engine's view is best effort: when
 * it cannot be read, role is "". Returns the heartbeat read's status.
 */
int cvg_probe_heartbeat_read(cvg_store *st, const char *table, const char *source, int want_row,
                             cvg_hb_reading *out, cvg_error *err);

/* The sequence the next heartbeat of source carries: one more than the greater of last and the
 * one st holds (so that a restarted writer continues its sequence; 1 when there is none). */
int64_t cvg_probe_heartbeat_next(cvg_store *st, const char *table, const char *source,
                                 int64_t last);

/* Writes source's heartbeat (seq, now) on st, creating the table when create is set, then reads
 * the engine's view of what st sends (best effort, as above). */
int cvg_probe_heartbeat_write(cvg_store *st, const char *table, const char *source, int64_t seq,
                              double now, int create, cvg_native_view *native, cvg_error *err);

#define CVG_CANARY_TOKEN_MAX 64

/* A fresh canary token from the wall time and a salt (unique per writer and call). */
void cvg_probe_canary_token(char *buf, size_t size, double wall, uint64_t salt);

/* Writes a canary of source with token at wall on st (creating the table when create is set),
 * after dropping source's canaries written before purge_before (best effort). */
int cvg_probe_canary_write(cvg_store *st, const char *table, const char *source, const char *token,
                           double wall, double purge_before, int create, cvg_error *err);

/* For each of the n tokens, seen[i] = 1 when st holds it. A table not replicated yet holds
 * none; the first read error stops the poll. */
int cvg_probe_canary_poll(cvg_store *st, const char *table,
                          const char (*tokens)[CVG_CANARY_TOKEN_MAX], size_t n, int *seen,
                          cvg_error *err);

#ifdef __cplusplus
}
#endif

#endif
