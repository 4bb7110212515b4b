/* SPDX-License-Identifier: MIT */
/*
 * Automatic repair (catalog auto_repair): a job that hands the confirmed keys to the repair
 * engine (repair.h) under the dataset's policy and limits, records what it did for metrics,
 * status and alerts, and backs off after a run refused by a safety limit.
 */
#include "converge/diff.h"
#include "converge/json.h"
#include "converge/mclock.h"
#include "converge/repair.h"
#include "converge/store.h"
#include "converge/tracker.h"
#include "watch_int.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

/* ---- automatic repair ---- */

#define REPAIR_MAX_KEYS 10000 /* confirmed keys handed to one repair run */
#define REPAIR_REFUSED_RETRY                                                                       \
  60.0 /* seconds before a run refused by a safety limit is tried again */

void cvgi_job_repair(cvg_monitor *m, job *j) {
  dset *ds = j->ds;
  if (__atomic_load_n(&ds->rep_paused, __ATOMIC_SEQ_CST))
    return;
  if (ds->cfg->repair_window_start >= 0) { /* outside its window, repair waits */
    cvg_cat_probes w;
    memset(&w, 0, sizeof w);
    w.window_start = ds->cfg->repair_window_start;
    w.window_end = ds->cfg->repair_window_end;
    if (!cvgi_in_window(&w))
      return;
  }
  /* a refused run is not retried at every interval (each journals its refusal) */
  pthread_mutex_lock(&ds->mu);
  int wait = ds->rep_refused && cvg_wall_now() - ds->rep_refused_at < REPAIR_REFUSED_RETRY;
  pthread_mutex_unlock(&ds->mu);
  if (wait)
    return;
  /* each key with the newest version its confirmation was about, in one allocation */
  unsigned char **keys = calloc(REPAIR_MAX_KEYS, sizeof *keys);
  const unsigned char **newest = calloc(REPAIR_MAX_KEYS, sizeof *newest);
  size_t *lens = calloc(REPAIR_MAX_KEYS, sizeof *lens), n = 0;
  size_t *nlens = calloc(REPAIR_MAX_KEYS, sizeof *nlens);
  int oom = !keys || !lens || !newest || !nlens;
  pthread_mutex_lock(&ds->mu);
  size_t cur = 0;
  for (const cvg_tracked *t;
       !oom && (t = cvg_tracker_next(ds->trk, &cur)) && n < REPAIR_MAX_KEYS;) {
    if (!t->confirmed)
      continue;
    if (t->in_flight) { /* a copy of it is still on its way somewhere: repair would race it */
      ds->rep_deferred++;
      continue;
    }
    size_t vl = 0;
    const unsigned char *v = cvg_tracked_newest(t, ds->n, &vl);
    if (!(keys[n] = malloc(t->key_len + vl + 1))) {
      oom = 1;
      break;
    }
    memcpy(keys[n], t->key, t->key_len);
    if (vl)
      memcpy(keys[n] + t->key_len, v, vl);
    newest[n] = keys[n] + t->key_len;
    nlens[n] = vl;
    lens[n++] = t->key_len;
  }
  pthread_mutex_unlock(&ds->mu);
  cvg_repair_stats st;
  memset(&st, 0, sizeof st);
  cvg_error err;
  cvg_error_clear(&err);
  int rc = CVG_OK;
  if (oom) {
    rc = cvg_error_set(&err, CVG_ENOMEM, ds->cfg->name, "out of memory collecting keys to repair");
  } else if (n) {
    cvg_repair_opts o;
    memset(&o, 0, sizeof o);
    o.cat = m->cat;
    o.dataset = ds->idx;
    o.shard = -1;
    o.execute = 1;
    o.rows_per_sec = ds->cfg->repair_rate;
    o.batch = (size_t)ds->cfg->repair_batch;
    o.cancel = &m->cancel;
    o.keys = (const unsigned char *const *)keys;
    o.key_lens = lens;
    o.n_keys = n;
    o.key_newest = newest;
    o.key_newest_lens = nlens;
    rc = cvg_repair_run(&o, &st, &err);
  }
  for (size_t i = 0; keys && i < n; i++)
    free(keys[i]);
  free(keys);
  free(lens);
  free(newest);
  free(nlens);
  pthread_mutex_lock(&ds->mu);
  if (n || rc) {
    ds->rep_runs++;
    ds->rep_applied += st.applied;
    ds->rep_skipped += st.skipped;
    ds->rep_deferred += st.deferred;
    ds->rep_failed += st.failed;
    ds->rep_last_failed = st.failed;
    ds->rep_last_run = cvg_wall_now();
    ds->rep_last_rate = st.seconds > 0 ? (double)st.applied / st.seconds : 0;
    ds->rep_refused = rc == CVG_ELIMIT ? (st.limit_changes ? st.limit_changes : 1) : 0;
    if (rc == CVG_ELIMIT) {
      ds->rep_refusals++;
      ds->rep_refused_at = cvg_wall_now();
      snprintf(ds->rep_refused_why, sizeof ds->rep_refused_why, "%.399s", err.msg);
      ds->rep_error[0] = '\0';
    } else if (rc) {
      ds->rep_errors++;
      snprintf(ds->rep_error, sizeof ds->rep_error, "%s", err.msg);
    } else {
      ds->rep_error[0] = '\0';
    }
    if (rc != CVG_ELIMIT) /* a refusal is its own alert, not a stall */
      ds->rep_stalled_runs =
          (rc || (st.applied == 0 && st.decisions > 0)) ? ds->rep_stalled_runs + 1 : 0;
    if (!rc && !st.failed && !st.skipped)
      ds->rep_last_ok = cvg_wall_now();
  } else {
    ds->rep_stalled_runs = 0;
    ds->rep_last_failed = 0;
  }
  pthread_mutex_unlock(&ds->mu);
  if (n || rc) {
    char a[32], sk[32], f[32], dv[32], hs[32], hh[65];
    snprintf(hs, sizeof hs, "%lld", (long long)st.head_seq);
    for (int i = 0; i < 32; i++)
      snprintf(hh + 2 * i, 3, "%02x", st.head_hash[i]);
    snprintf(a, sizeof a, "%llu", (unsigned long long)st.applied);
    snprintf(sk, sizeof sk, "%llu", (unsigned long long)st.skipped);
    snprintf(f, sizeof f, "%llu", (unsigned long long)st.failed);
    snprintf(dv, sizeof dv, "%llu", (unsigned long long)st.divergent);
    cvg_log(m->lg, rc || st.failed ? CVG_LOG_WARN : CVG_LOG_INFO,
            rc == CVG_ELIMIT ? "repair_refused"
            : rc             ? "repair_failed"
                             : "repair",
            "dataset", ds->cfg->name, "still_divergent", dv, "applied", a, "skipped", sk, "failed",
            f, "error", rc ? err.msg : "", "journal", m->cat->journal, "journal_head", hs,
            "journal_head_hash", st.head_seq ? hh : "", (const char *)NULL);
  }
}
