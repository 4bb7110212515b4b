/* SPDX-License-Identifier: MIT */
/*
 * The engine's own replication position, beside converge's heartbeat (issue 19's "lag is not
 * drift" with PostgreSQL): the authority's WAL position is noted at each heartbeat (the LSN
 * ring), and a logical subscriber's latest_end_lsn - the publisher's WAL its apply worker has
 * reported done - is placed in it, giving an apply position in the authority's time that needs
 * no row of converge's to arrive. It is used only where it is exact: the subscriber's
 * subscription must be one of the authority's own walsenders (its name among their
 * application_name), else the LSNs belong to another server's WAL.
 *
 * When the heartbeat never arrives at a subscriber whose subscription runs - converge's tables
 * are not in the publication, the usual case - the replica is not "stopped": its lag, its halts
 * (no apply worker, apply errors rising) and the confirmation of its divergences follow the
 * engine, and the log and status say once what to add to the publication.
 */
#include "converge/log.h"
#include "converge/probe.h"
#include "watch_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define HALT_HOLD 30.0 /* seconds a rise of apply_error_count keeps a subscriber "halted" */

void cvgi_lsn_push(dset *ds, double t, uint64_t lsn) {
  size_t last = (ds->lsn_head + LSN_RING - 1) % LSN_RING;
  if (ds->lsn_n && lsn < ds->lsn_v[last])
    return; /* a WAL position never goes back; a server swapped under us: keep the old one */
  ds->lsn_t[ds->lsn_head] = t;
  ds->lsn_v[ds->lsn_head] = lsn;
  ds->lsn_head = (ds->lsn_head + 1) % LSN_RING;
  if (ds->lsn_n < LSN_RING)
    ds->lsn_n++;
}

double cvgi_lsn_time(const dset *ds, uint64_t lsn) {
  for (size_t k = 0; k < ds->lsn_n; k++) { /* newest first */
    size_t i = (ds->lsn_head + LSN_RING - 1 - k) % LSN_RING;
    if (ds->lsn_v[i] <= lsn)
      return ds->lsn_t[i];
  }
  return ds->lsn_n ? -INFINITY : NAN;
}

int cvgi_sender_named(const char *senders, const char *name) {
  size_t n = strlen(name);
  for (const char *p = senders; n && p && *p;) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == n && memcmp(p, name, n) == 0)
      return 1;
    p = e ? e + 1 : NULL;
  }
  return 0;
}

/* The replica's position in the authority's LSN ring, when that is exact: a subscriber whose
 * subscription is one of the authority's walsenders, or a physical standby of the authority's
 * cluster (the same system identifier: its replay LSN is in the authority's WAL). */
static void update_position(dset *ds, rep *r, const cvg_native_view *nv, double now) {
  int exact = ds->cfg->authority >= 0 && nv->lsn_known &&
              ((strcmp(nv->role, "subscriber") == 0 && nv->name[0] &&
                cvgi_sender_named(ds->auth_senders, nv->name)) ||
               (strcmp(nv->role, "standby") == 0 && nv->sysid && nv->sysid == ds->auth_sysid));
  if (!exact) {
    r->npos = NAN;
    r->nlsn_known = r->nrecv_known = 0;
    return;
  }
  if (nv->recv_known && nv->up) {
    if (!r->nrecv_known || nv->recv_lsn > r->nrecv) {
      r->nrecv = nv->recv_lsn;
      r->nrecv_moved_at = now;
    }
    r->nrecv_known = 1;
  } else {
    r->nrecv_known = 0; /* not receiving: nothing vouches against a stop */
  }
  if (!r->nlsn_known || nv->lsn > r->nlsn) { /* idle is judged on the LSN itself */
    r->nlsn = nv->lsn;
    r->npos_moved_at = now;
  }
  r->nlsn_known = 1;
  double p = cvgi_lsn_time(ds, nv->lsn);
  if (!isnan(p) && (isnan(r->npos) || p > r->npos))
    r->npos = p;
}

static void update_halt(rep *r, const cvg_native_view *nv, double now) {
  if (nv->apply_errors_known) {
    if (r->apply_errors_known && nv->apply_errors > r->apply_errors)
      r->apply_err_at = now;
    r->apply_errors = nv->apply_errors;
    r->apply_errors_known = 1;
  }
  r->native_halted = strcmp(nv->role, "subscriber") == 0 &&
                     (!nv->up || (r->apply_err_at > 0 && now - r->apply_err_at < HALT_HOLD));
}

void cvgi_native_update(cvg_monitor *m, dset *ds, rep *r, const cvg_hb_reading *rd, double now) {
  const cvg_native_view *nv = &rd->native;
  snprintf(r->publications, sizeof r->publications, "%s", nv->publications);
  update_position(ds, r, nv, now);
  update_halt(r, nv, now);
  int was = r->hb_unreplicated;
  /* the heartbeat does not arrive while the engine's own replication runs (or once that was
   * seen, until a heartbeat arrives) */
  r->hb_unreplicated =
      !rd->found && strcmp(nv->role, "subscriber") == 0 && (was || (nv->up && !r->native_halted));
  if (r->hb_unreplicated && !was) {
    char hint[512];
    cvgi_unreplicated_hint(ds, r, hint, sizeof hint);
    cvgi_logf_event(m, CVG_LOG_WARN, "heartbeat_not_replicated", ds, r, "hint", hint, NULL, NULL);
  } else if (was && !r->hb_unreplicated) {
    cvgi_logf_event(m, CVG_LOG_INFO, "heartbeat_replicated", ds, r, NULL, NULL, NULL, NULL);
  }
}

void cvgi_unreplicated_hint(const dset *ds, const rep *r, char *buf, size_t size) {
  const cvg_cat_probes *p = &ds->cfg->probes;
  snprintf(buf, size,
           "converge's heartbeat does not reach this subscriber while its subscription runs: add "
           "converge's tables to the publication on the authority - ALTER PUBLICATION %s ADD "
           "TABLE %s, %s; until then its lag, halts and the confirmation of its divergences "
           "follow the subscription's own position",
           r->publications[0] ? r->publications : "<publication>", p->heartbeat_table,
           p->canary_table);
}

void cvgi_native_state(dset *ds, rep *r, double now, double threshold) {
  (void)ds;
  if (r->native_halted) {
    r->lag = NAN;
    r->state = RS_STOPPED;
    return;
  }
  r->lag = isfinite(r->npos)                            ? (now - r->npos > 0 ? now - r->npos : 0)
           : r->native_role[0] && !isnan(r->native_lag) ? r->native_lag
                                                        : NAN;
  r->state = !isnan(r->lag) && r->lag > threshold ? RS_LAGGING : RS_OK;
}
