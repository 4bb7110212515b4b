/* SPDX-License-Identifier: MIT */
/*
 * The watch's state as JSON: /api/v1/status, /api/v1/divergences and the key and tracked-key
 * objects the alert annotations use. Reads the state the jobs keep (watch_int.h) under the
 * same locks, and never waits on a database.
 */
#include "converge/json.h"
#include "converge/mclock.h"
#include "converge/version.h"
#include "watch_int.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* ---- rendering: JSON ---- */

static json_t *jnum(double v) {
  return isfinite(v) ? json_real(v) : json_null();
}

/* Settled key columns are not kept; keys are shown with the catalog's key names, or k1, k2... */
json_t *cvgi_key_json(const dset *ds, const unsigned char *key, size_t key_len) {
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

json_t *cvgi_tracked_json(const dset *ds, const cvg_tracked *t) {
  json_t *o = json_object();
  json_object_set_new(o, "dataset", json_string(ds->cfg->name));
  json_object_set_new(o, "key", cvgi_key_json(ds, t->key, t->key_len));
  json_object_set_new(o, "shard", json_integer(t->shard));
  json_object_set_new(o, "class", json_string(cvg_class_name(t->cls)));
  json_object_set_new(o, "state", json_string(t->confirmed ? "confirmed" : "suspected"));
  json_object_set_new(o, "first_seen", json_real(t->first_seen));
  json_object_set_new(o, "newest_seen", json_real(t->newest_seen));
  json_object_set_new(o, "confirmed_at", t->confirmed ? json_real(t->confirmed_at) : json_null());
  json_object_set_new(o, "last_checked", json_real(t->last_checked));
  json_object_set_new(o, "agreeing_replicas", json_integer(t->agreeing));
  json_t *reps = json_object();
  for (size_t i = 0; i < ds->n; i++) {
    json_t *r = json_object();
    json_object_set_new(r, "state", json_string(copy_state[t->rstates[i]]));
    size_t vl;
    const unsigned char *v = cvg_tracked_version(t, i, &vl);
    json_object_set_new(r, "version", version_json(v, vl));
    json_object_set_new(reps, ds->reps[i].cfg->name, r);
  }
  json_object_set_new(o, "replicas", reps);
  json_t *fl = json_array();
  for (size_t i = 0; i < ds->n && i < 32; i++)
    if (t->in_flight & ((uint32_t)1 << i))
      json_array_append_new(fl, json_string(ds->reps[i].cfg->name));
  json_object_set_new(o, "in_flight_on", fl);
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

/* Every dataset of m, in catalog order. */
#define FOR_DS(m, ds) for (dset *ds = (m)->ds; ds < (m)->ds + (m)->n_ds; ds++)

#define STATUS_SAMPLES 10 /* sample keys per dataset in /api/v1/status */

/* The dataset's repair: policy, automatic repair's state and counts (ds->mu held). */
static json_t *repair_json(const dset *ds) {
  int p = ds->cfg->policy >= 0 && ds->cfg->policy <= CVG_POLICY_MERGE ? ds->cfg->policy : 0;
  json_t *r = json_object();
  cvg_trk_stats ts;
  cvg_tracker_stats(ds->trk, &ts);
  double backlog = (double)ts.confirmed;
  json_object_set_new(r, "policy", json_string(cvg_policy_names[p]));
  json_object_set_new(r, "auto_repair", json_boolean(ds->cfg->auto_repair));
  json_object_set_new(r, "paused",
                      json_boolean(__atomic_load_n(&ds->rep_paused, __ATOMIC_SEQ_CST)));
  json_object_set_new(r, "backlog", json_integer((json_int_t)backlog));
  json_object_set_new(r, "runs", json_integer((json_int_t)ds->rep_runs));
  json_object_set_new(r, "applied", json_integer((json_int_t)ds->rep_applied));
  json_object_set_new(r, "skipped", json_integer((json_int_t)ds->rep_skipped));
  json_object_set_new(r, "deferred", json_integer((json_int_t)ds->rep_deferred));
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
      json_object_set_new(rj, "state", json_string(cvgi_rstate_names[cvgi_shown_state(r)]));
      json_object_set_new(rj, "lag_seconds", jnum(r->lag));
      json_object_set_new(rj, "heartbeat_seq", r->hb_seen ? json_integer(r->hb_seq) : json_null());
      json_object_set_new(rj, "canaries_seen", json_integer((json_int_t)r->canaries_seen));
      json_object_set_new(rj, "canary_failures", json_integer((json_int_t)r->canary_failures));
      json_object_set_new(rj, "error",
                          cvgi_rep_error(r)[0] ? json_string(cvgi_rep_error(r)) : json_null());
      json_object_set_new(rj, "read_errors", json_integer((json_int_t)r->read_errors));
      if (r->native_role[0]) {
        json_t *nj = json_pack("{s:s, s:o, s:b}", "role", r->native_role, "lag_seconds",
                               jnum(r->native_lag), "up", r->native_up);
        if (nj && isfinite(r->npos)) /* the engine's exact apply position (authority time) */
          json_object_set_new(nj, "position", json_real(r->npos));
        if (nj && r->apply_errors_known)
          json_object_set_new(nj, "apply_errors", json_integer((json_int_t)r->apply_errors));
        if (nj)
          json_object_set_new(nj, "halted", json_boolean(r->native_halted));
        json_object_set_new(rj, "native", nj);
      }
      if ((int)i != ds->cfg->authority && ds->cfg->authority >= 0 &&
          ds->cfg->probes.heartbeat_interval > 0) {
        json_object_set_new(rj, "heartbeat",
                            json_string(r->hb_unreplicated ? "not_replicated"
                                        : r->hb_seen       ? "replicated"
                                                           : "absent"));
        if (r->hb_unreplicated) {
          char hint[512];
          cvgi_unreplicated_hint(ds, r, hint, sizeof hint);
          json_object_set_new(rj, "hint", json_string(hint));
        }
      }
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
    size_t cur = 0;
    for (const cvg_tracked *t; (t = cvg_tracker_next(ds->trk, &cur));) {
      by[t->cls][t->confirmed]++;
      char sh[16];
      snprintf(sh, sizeof sh, "%u", t->shard);
      json_t *c = json_object_get(shards, sh);
      json_object_set_new(shards, sh, json_integer(c ? json_integer_value(c) + 1 : 1));
      if (json_array_size(samples) < STATUS_SAMPLES)
        json_array_append_new(samples, cvgi_tracked_json(ds, t));
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
    unsigned char up[CVG_DIFF_MAX_REPLICAS];
    cvgi_reachable(ds, up);
    for (uint32_t sh = 0; ds->have_full && sh < ds->cfg->shards; sh++)
      if (cvg_tracker_shard_differs(ds->trk, sh, up))
        json_array_append_new(diff_shards, json_integer(sh));
    json_object_set_new(dv, "digest_differs", diff_shards);
    cvg_trk_stats ts;
    cvg_tracker_stats(ds->trk, &ts);
    json_object_set_new(dv, "untracked", json_integer((json_int_t)ts.dropped));
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
    size_t cur = 0;
    for (const cvg_tracked *t; (t = cvg_tracker_next(ds->trk, &cur));) {
      if ((shard >= 0 && (long)t->shard != shard) ||
          (cls && strcmp(cls, cvg_class_name(t->cls)) != 0) ||
          (state && strcmp(state, t->confirmed ? "confirmed" : "suspected") != 0))
        continue;
      total++;
      if (json_array_size(arr) < limit)
        json_array_append_new(arr, cvgi_tracked_json(ds, t));
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

/* The ring of recent confirmations (watch.c record_confirmation), per dataset: the entries with
 * seq > after, oldest first, at most limit; "missed" counts those after `after` the ring no
 * longer holds (a client that polls too rarely learns how many it did not see). */
int cvg_monitor_confirmations_json(cvg_monitor *m, const char *dataset, uint64_t after,
                                   size_t limit, cvg_buf *b) {
  int found = dataset == NULL;
  json_t *arr = json_array();
  FOR_DS(m, ds) {
    if (dataset && strcmp(dataset, ds->cfg->name) != 0)
      continue;
    found = 1;
    json_t *d = json_object(), *list = json_array();
    pthread_mutex_lock(&ds->mu);
    uint64_t last = ds->conf_seq, oldest = last > CONF_RING ? last - CONF_RING + 1 : 1;
    uint64_t from = after + 1 > oldest ? after + 1 : oldest, missed = 0;
    for (uint64_t s = from; s <= last && json_array_size(list) < limit; s++) {
      json_t *e = ds->confs[(s - 1) % CONF_RING];
      if (e)
        json_array_append(list, e);
      else
        missed++; /* not recorded (out of memory) */
    }
    pthread_mutex_unlock(&ds->mu);
    if (after + 1 < oldest)
      missed += oldest - (after + 1);
    json_object_set_new(d, "dataset", json_string(ds->cfg->name));
    json_object_set_new(d, "last_seq", json_integer((json_int_t)last));
    json_object_set_new(d, "missed", json_integer((json_int_t)missed));
    json_object_set_new(d, "confirmations", list);
    json_array_append_new(arr, d);
  }
  if (!found) {
    json_decref(arr);
    return CVG_ENOENT;
  }
  json_t *root = json_object();
  json_object_set_new(root, "datasets", arr);
  return dump_into(root, b);
}
