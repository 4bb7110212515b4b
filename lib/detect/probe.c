/* SPDX-License-Identifier: MIT */
/*
 * The replication probes, one shot each (probe.h): heartbeat read and write, canary write and
 * poll, each with the engine's own view of replication beside it.
 */
#include "converge/probe.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

/* The engine's view, best effort: role "" when it has none or it cannot be read. */
static void native_view(cvg_store *st, cvg_native_view *nv) {
  cvg_error err;
  cvg_error_clear(&err);
  if (cvg_store_native_view(st, nv, &err) != CVG_OK || strcmp(nv->role, "none") == 0) {
    memset(nv, 0, sizeof *nv);
    nv->up = 1;
  }
}

int cvg_probe_heartbeat_read(cvg_store *st, const char *table, const char *source, int want_row,
                             cvg_hb_reading *out, cvg_error *err) {
  memset(out, 0, sizeof *out);
  out->native.up = 1;
  int rc = CVG_OK;
  if (want_row)
    rc = cvg_store_heartbeat_read(st, table, source, &out->seq, &out->ts, &out->found, err);
  if (rc == CVG_ENOTABLE) {
    out->table_absent = 1;
    out->found = 0;
    cvg_error_clear(err);
    rc = CVG_OK;
  }
  if (rc == CVG_OK)
    native_view(st, &out->native);
  return rc;
}

int64_t cvg_probe_heartbeat_next(cvg_store *st, const char *table, const char *source,
                                 int64_t last) {
  if (last == 0) { /* continue the sequence across restarts */
    int64_t old = 0;
    double ts;
    int found = 0;
    if (cvg_store_heartbeat_read(st, table, source, &old, &ts, &found, NULL) == CVG_OK && found &&
        old > last)
      last = old;
  }
  return last + 1;
}

int cvg_probe_heartbeat_write(cvg_store *st, const char *table, const char *source, int64_t seq,
                              double now, int create, cvg_native_view *native, cvg_error *err) {
  int rc = cvg_store_heartbeat_write(st, table, source, seq, now, create, err);
  if (rc == CVG_OK && native)
    native_view(st, native);
  return rc;
}

void cvg_probe_canary_token(char *buf, size_t size, double wall, uint64_t salt) {
  uint64_t h = XXH3_64bits_withSeed(&salt, sizeof salt, (uint64_t)(wall * 1e9));
  snprintf(buf, size, "%" PRIx64 "-%" PRIx64, (uint64_t)(wall * 1e6), h);
}

int cvg_probe_canary_write(cvg_store *st, const char *table, const char *source, const char *token,
                           double wall, double purge_before, int create, cvg_error *err) {
  cvg_store_canary_purge(st, table, source, purge_before, NULL); /* keeps the table small */
  return cvg_store_canary_write(st, table, source, token, wall, create, err);
}

int cvg_probe_canary_poll(cvg_store *st, const char *table,
                          const char (*tokens)[CVG_CANARY_TOKEN_MAX], size_t n, int *seen,
                          cvg_error *err) {
  for (size_t i = 0; i < n; i++) {
    seen[i] = 0;
    int rc = cvg_store_canary_seen(st, table, tokens[i], &seen[i], err);
    if (rc == CVG_ENOTABLE) { /* not replicated here yet */
      seen[i] = 0;
      cvg_error_clear(err);
      continue;
    }
    if (rc)
      return rc;
  }
  return CVG_OK;
}
