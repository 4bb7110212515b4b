/* SPDX-License-Identifier: MIT */
/*
 * The watch's own state, kept in converge's state file (alerting.state) so that a reload or a
 * restart does not forget it:
 *
 *   converge_episode       each dataset's divergence episode (its detection trace: id, first
 *                          probe, when suspected and confirmed, the lag then), so that a restart
 *                          continues an episode instead of starting its clock again
 *   converge_repair_pause  the operator's hold on automatic repair (POST /api/v1/repair/pause):
 *                          one row per dataset, or '*' for every dataset; a dataset's own row
 *                          wins over '*'. Without it a SIGHUP or a restart released the hold.
 *
 * The file's other tables belong to the alert engine (alert state, change events) and to the
 * repairer (journal heads), each of which opens it itself; WAL mode lets them write side by side.
 *
 * Threading: cvgi_episodes_open and the restores run in cvg_monitor_new, before any thread; then
 * only the evaluation job (signals.c, one run at a time) calls cvgi_episodes_sync, on
 * m->state_db. The holds are read and written on connections of their own, opened per call
 * like the change events': cvgi_pause_save on the state-file worker (writeq.c), and
 * cvg_monitor_restore_pauses on the thread that reloads (ds->rep_paused is atomic).
 */
#include "converge/fsfile.h"
#include "converge/log.h"
#include "converge/tracker.h"
#include "watch_int.h"

#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

static const char schema[] = "CREATE TABLE IF NOT EXISTS converge_episode("
                             " dataset TEXT PRIMARY KEY, trace_id TEXT NOT NULL,"
                             " first_probe TEXT NOT NULL, suspected_at REAL NOT NULL,"
                             " lag_suspected REAL, confirmed_at REAL NOT NULL,"
                             " lag_confirmed REAL);"
                             "CREATE TABLE IF NOT EXISTS converge_repair_pause("
                             " dataset TEXT PRIMARY KEY, paused INTEGER NOT NULL,"
                             " at REAL NOT NULL);";

/* Opens the state file at path with the watch's tables; SQLITE_OK or an SQLite code (err says
 * why when the file is not a regular file). */
static int open_state(const char *path, sqlite3 **out, cvg_error *err) {
  sqlite3 *db = NULL;
  int rc = cvg_regular_file(path, NULL, "state file", err) == CVG_OK ? SQLITE_OK : SQLITE_CANTOPEN;
  if (rc == SQLITE_OK)
    rc = sqlite3_open_v2(path, &db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_busy_timeout(db, 5000);
    rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL;", NULL, NULL, NULL);
  }
  if (rc == SQLITE_OK)
    rc = sqlite3_exec(db, schema, NULL, NULL, NULL);
  if (rc != SQLITE_OK && err && !err->msg[0])
    cvg_error_set(err, CVG_EIO, path, "cannot open the state file: %s",
                  db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  if (rc != SQLITE_OK) {
    sqlite3_close(db);
    db = NULL;
  }
  *out = db;
  return rc;
}

void cvgi_episodes_open(cvg_monitor *m) {
  const char *path = m->cat->alerting.state_file;
  cvg_error err;
  cvg_error_clear(&err);
  if (open_state(path, &m->state_db, &err) != SQLITE_OK)
    /* without it the watch still works; only a restart starts episodes afresh and forgets a
     * hold on repair */
    cvg_log(m->lg, CVG_LOG_WARN, "episode_state_unavailable", "file", path, "error", err.msg,
            "hint", "set alerting.state to a writable path", (const char *)NULL);
}

void cvgi_episodes_close(cvg_monitor *m) {
  sqlite3_close(m->state_db);
  m->state_db = NULL;
}

static double real_or_nan(sqlite3_stmt *st, int i) {
  return sqlite3_column_type(st, i) == SQLITE_NULL ? NAN : sqlite3_column_double(st, i);
}

/* dataset's saved episode into *ep (1), or 0 when none is saved. */
static int load(sqlite3 *db, const char *dataset, cvg_trk_episode *ep) {
  sqlite3_stmt *st = NULL;
  int found = 0;
  if (!db || sqlite3_prepare_v2(db,
                                "SELECT trace_id, first_probe, suspected_at, lag_suspected,"
                                " confirmed_at, lag_confirmed FROM converge_episode"
                                " WHERE dataset = ?",
                                -1, &st, NULL) != SQLITE_OK)
    return 0;
  sqlite3_bind_text(st, 1, dataset, -1, SQLITE_STATIC);
  if (sqlite3_step(st) == SQLITE_ROW) {
    memset(ep, 0, sizeof *ep);
    snprintf(ep->id, sizeof ep->id, "%s", (const char *)sqlite3_column_text(st, 0));
    snprintf(ep->first_probe, sizeof ep->first_probe, "%s",
             (const char *)sqlite3_column_text(st, 1));
    ep->suspected_at = sqlite3_column_double(st, 2);
    ep->lag_suspected = real_or_nan(st, 3);
    ep->confirmed_at = sqlite3_column_double(st, 4);
    ep->lag_confirmed = real_or_nan(st, 5);
    found = 1;
  }
  sqlite3_finalize(st);
  return found;
}

static void bind_real_or_null(sqlite3_stmt *st, int i, double v) {
  if (isnan(v) || isinf(v))
    sqlite3_bind_null(st, i);
  else
    sqlite3_bind_double(st, i, v);
}

/* Saves dataset's episode (NULL: it ended). */
static void save(cvg_monitor *m, const char *dataset, const cvg_trk_episode *ep) {
  sqlite3_stmt *st = NULL;
  if (!m->state_db)
    return;
  const char *sql = ep ? "INSERT OR REPLACE INTO converge_episode VALUES (?,?,?,?,?,?,?)"
                       : "DELETE FROM converge_episode WHERE dataset = ?";
  if (sqlite3_prepare_v2(m->state_db, sql, -1, &st, NULL) != SQLITE_OK)
    return;
  sqlite3_bind_text(st, 1, dataset, -1, SQLITE_STATIC);
  if (ep) {
    sqlite3_bind_text(st, 2, ep->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, ep->first_probe, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 4, ep->suspected_at);
    bind_real_or_null(st, 5, ep->lag_suspected);
    sqlite3_bind_double(st, 6, ep->confirmed_at);
    bind_real_or_null(st, 7, ep->lag_confirmed);
  }
  if (sqlite3_step(st) != SQLITE_DONE)
    cvg_log(m->lg, CVG_LOG_WARN, "episode_not_saved", "dataset", dataset, "error",
            sqlite3_errmsg(m->state_db), (const char *)NULL);
  sqlite3_finalize(st);
}

void cvgi_episodes_restore(cvg_monitor *m) {
  for (size_t i = 0; i < m->n_ds; i++) {
    dset *ds = &m->ds[i];
    cvg_trk_episode ep;
    if (!load(m->state_db, ds->cfg->name, &ep))
      continue;
    cvg_tracker_restore_episode(ds->trk, &ep);
    ds->synced = ep;
    ds->synced_active = 1;
  }
}

void cvgi_episodes_sync(cvg_monitor *m) {
  for (size_t i = 0; i < m->n_ds; i++) {
    dset *ds = &m->ds[i];
    pthread_mutex_lock(&ds->mu);
    cvg_trk_episode ep = *cvg_tracker_episode(ds->trk);
    pthread_mutex_unlock(&ds->mu);
    if (ep.restored)
      continue; /* not judged yet since the start: keep what is saved */
    if (ep.active == ds->synced_active &&
        (!ep.active ||
         (strcmp(ep.id, ds->synced.id) == 0 && ep.confirmed_at == ds->synced.confirmed_at)))
      continue;
    save(m, ds->cfg->name, ep.active ? &ep : NULL);
    ds->synced = ep;
    ds->synced_active = ep.active;
  }
}

/* ---- the hold on automatic repair ---- */

void cvgi_pauses_restore(cvg_monitor *m, int first) {
  sqlite3 *db = NULL; /* its own connection: m->state_db belongs to the evaluation job */
  sqlite3_stmt *st = NULL;
  if (open_state(m->cat->alerting.state_file, &db, NULL) != SQLITE_OK ||
      sqlite3_prepare_v2(db,
                         "SELECT paused FROM converge_repair_pause WHERE dataset IN (?, '*')"
                         " ORDER BY dataset = '*' LIMIT 1",
                         -1, &st, NULL) != SQLITE_OK) {
    sqlite3_close(db);
    return;
  }
  for (size_t i = 0; i < m->n_ds; i++) {
    dset *ds = &m->ds[i];
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, ds->cfg->name, -1, SQLITE_STATIC);
    int held = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0);
    if (!ds->cfg->auto_repair || (first && !held))
      continue;
    if (__atomic_exchange_n(&ds->rep_paused, held, __ATOMIC_SEQ_CST) != held)
      cvg_log(m->lg, CVG_LOG_INFO, held ? "repair_paused" : "repair_resumed", "dataset",
              ds->cfg->name, "from", "state file (POST /api/v1/repair/pause|resume)",
              (const char *)NULL);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
}

void cvg_monitor_restore_pauses(cvg_monitor *m) {
  cvgi_pauses_restore(m, 0);
}

int cvgi_pause_save(const char *path, const char *dataset, int pause, double at, cvg_error *err) {
  sqlite3 *db = NULL;
  if (open_state(path, &db, err) != SQLITE_OK)
    return err ? err->status : CVG_EIO;
  int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
  if (rc == SQLITE_OK && !dataset) /* every dataset: the '*' row alone, their own rows gone */
    rc = sqlite3_exec(db, "DELETE FROM converge_repair_pause", NULL, NULL, NULL);
  sqlite3_stmt *st = NULL;
  if (rc == SQLITE_OK)
    rc = sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO converge_repair_pause VALUES (?, ?, ?)", -1,
                            &st, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(st, 1, dataset ? dataset : "*", -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, pause ? 1 : 0);
    sqlite3_bind_double(st, 3, at);
    rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
  }
  sqlite3_finalize(st);
  if (rc == SQLITE_OK)
    rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
  if (rc != SQLITE_OK) {
    cvg_error_set(err, CVG_EIO, path, "cannot record the repair %s in the state file: %s",
                  pause ? "pause" : "resume", sqlite3_errmsg(db));
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  }
  sqlite3_close(db);
  return rc == SQLITE_OK ? CVG_OK : CVG_EIO;
}
