/* SPDX-License-Identifier: MIT */
/*
 * The HTTP server of `converge watch` (libmicrohttpd), read-only:
 *   GET /metrics                Prometheus text exposition format 0.0.4
 *   GET /api/v1/status          datasets, replicas, shards, invariants, divergences with samples
 *   GET /api/v1/divergences     ?dataset=&shard=&class=&state=&limit= (default 100, max 10000)
 *   GET /healthz                200 "ok" while the scheduler runs, else 503
 * Anything else is 404; a method other than GET or HEAD is 405. Query values are checked and a
 * bad one is a 400 with a JSON {"error": ...} saying which and what is expected.
 *
 * Threading: requests are served on libmicrohttpd's own thread; they read the monitor's state
 * under its short locks and never touch a database. The monitor can be swapped (on reload)
 * while the server runs.
 */
#ifndef CONVERGE_SERVE_H
#define CONVERGE_SERVE_H

#include "converge/watch.h"
#include "converge/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cvg_http cvg_http;

/* Listens on listen ("host:port", "[v6]:port"; port 0 picks a free one). m is BORROWED and may
 * be NULL (then every endpoint but /healthz answers 503). OWNED result: cvg_http_stop(). */
int cvg_http_start(cvg_http **out, const char *listen, cvg_monitor *m, cvg_error *err);
/* The port actually bound. */
unsigned cvg_http_port(const cvg_http *h);
/* Replaces the monitor the handlers read; returns once no request uses the old one. */
void cvg_http_set_monitor(cvg_http *h, cvg_monitor *m);
void cvg_http_stop(cvg_http *h);

#ifdef __cplusplus
}
#endif
#endif
