/* SPDX-License-Identifier: MIT */
/*
 * The watch (lib/watch), the daemon behind `converge watch`: runs every probe of every dataset of a catalog on its own
 * interval, keeps what they found, and renders it as Prometheus metrics and JSON.
 *
 * Probes (lib/watch/jobs.c and converge/check.h describe each in detail):
 *   heartbeat   writes (seq, time) on the authority, reads it on the other replicas: lag, stall
 *   canary      writes a unique token on the authority, polls the others: convergence time
 *   incremental rows whose version passed each replica's watermark, plus every tracked key, are
 *               compared key by key: cost O(changes), not O(table)
 *   full sweep  the whole table, rate-limited and windowed, with shard digests: finds hard
 *               deletes and silent corruption
 *   invariants  max lag, divergent rows/fraction, quorum, equal aggregates, divergence age
 *
 * Threading: a scheduler thread hands due probes to two worker pools (quick probes and sweeps),
 * so a slow replica or a long sweep never delays a heartbeat, and the HTTP server only reads
 * state under short locks — it never waits on a database. A probe never runs twice at once.
 */
#ifndef CONVERGE_WATCH_H
#define CONVERGE_WATCH_H

#include "converge/catalog.h"
#include "converge/encode.h"
#include "converge/log.h"
#include "converge/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cvg_monitor cvg_monitor;

/* Creates a monitor for cat (BORROWED: it must outlive the monitor) logging to lg (BORROWED,
 * may be NULL). Nothing runs until cvg_monitor_start(). OWNED result: cvg_monitor_free(). */
int cvg_monitor_new(cvg_monitor **out, const cvg_catalog *cat, cvg_logger *lg, cvg_error *err);
/* Starts the scheduler and workers. */
int cvg_monitor_start(cvg_monitor *m, cvg_error *err);
/* Stops all probes (a running sweep is cancelled) and joins every thread. Idempotent. */
void cvg_monitor_stop(cvg_monitor *m);
/* Stops it if needed and frees everything. NULL is fine. */
void cvg_monitor_free(cvg_monitor *m);

/* Runs one incremental re-check of dataset ds now, on the calling thread (benchmarks, tests).
 * *compared gets the number of keys compared. */
int cvg_monitor_recheck(cvg_monitor *m, size_t ds, uint64_t *compared, cvg_error *err);
/* Runs one full sweep of dataset ds now, on the calling thread. */
int cvg_monitor_full_sweep(cvg_monitor *m, size_t ds, cvg_error *err);

/* Renderers for the HTTP server. Each appends to out (a cvg_buf with a maximum) and returns
 * CVG_OK or CVG_ETOOBIG / CVG_ENOMEM. */
int cvg_monitor_metrics(cvg_monitor *m, cvg_buf *out);
int cvg_monitor_status_json(cvg_monitor *m, cvg_buf *out);
/* Divergences filtered by dataset, shard (< 0: any), class and state ("suspected"/"confirmed"),
 * each NULL for any; at most limit entries. CVG_ENOENT when dataset names no dataset. */
int cvg_monitor_divergences_json(cvg_monitor *m, const char *dataset, long shard, const char *cls,
                                 const char *state, size_t limit, cvg_buf *out);
/* The keys confirmed most recently (the last 4096 per dataset), each as it was when confirmed
 * (class, first_seen, confirmed_at, every replica's state and version) with a sequence number:
 * those with seq > after, oldest first, at most limit per dataset; "missed" counts confirmations
 * after `after` no longer kept. For /api/v1/confirmations. CVG_ENOENT when dataset names none. */
int cvg_monitor_confirmations_json(cvg_monitor *m, const char *dataset, uint64_t after,
                                   size_t limit, cvg_buf *out);
/* Current alerts (all, or the one with that fingerprint) as JSON, for /api/v1/alerts. */
int cvg_monitor_alerts_json(cvg_monitor *m, const char *fingerprint, cvg_buf *out);
/* Conflict hotspots per dataset (all, or the one named): confirmed conflicts per shard since
 * the start, and the keys confirmed as conflicts most often (a bounded top-k). CVG_ENOENT when
 * dataset names none. */
int cvg_monitor_hotspots_json(cvg_monitor *m, const char *dataset, cvg_buf *out);
/* Pauses (1) or resumes (0) the automatic repair of dataset (NULL: every dataset). Returns the
 * number of datasets changed, or -1 when no dataset has that name. */
int cvg_monitor_repair_pause(cvg_monitor *m, const char *dataset, int pause);
/* Re-reads the holds on automatic repair from the state file (as cvg_monitor_new does): a
 * reload calls it once the new monitor is served, so that a hold recorded while the new monitor
 * was being built is not lost. Any thread. */
void cvg_monitor_restore_pauses(cvg_monitor *m);
/* The catalog the monitor runs (BORROWED). */
const cvg_catalog *cvg_monitor_catalog(const cvg_monitor *m);
/* 1 when the scheduler is running and has made progress in the last few seconds. */
int cvg_monitor_healthy(cvg_monitor *m);

#ifdef __cplusplus
}
#endif
#endif
