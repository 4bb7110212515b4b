/* SPDX-License-Identifier: MIT */
/*
 * The alert state file: schema, change events, and the persisted alerts as JSON for the CLI.
 */
#include "state.h"

#include "converge/fsfile.h"
#include "converge/alert.h"
#include "converge/json.h"

#include <jansson.h>
#include <string.h>

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS converge_alert_state("
    " fingerprint TEXT PRIMARY KEY, labels TEXT NOT NULL, annotations TEXT NOT NULL,"
    " state TEXT NOT NULL, active_at REAL NOT NULL, starts_at REAL NOT NULL,"
    " last_true REAL NOT NULL, resolved_at REAL NOT NULL, value REAL, inhibited INTEGER NOT NULL,"
    " updated_at REAL NOT NULL);"
    "CREATE TABLE IF NOT EXISTS converge_events("
    " id INTEGER PRIMARY KEY, at REAL NOT NULL, kind TEXT NOT NULL,"
    " dataset TEXT NOT NULL DEFAULT '', text TEXT NOT NULL, source TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS converge_events_at ON converge_events(at);";

int cvg_state_open(sqlite3 **db, const char *path, int create, cvg_error *err) {
  *db = NULL;
  if (cvg_regular_file(path, NULL, "alert state file", err) != CVG_OK)
    return err ? err->status : CVG_ENOTDB;
  int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0) | SQLITE_OPEN_NOMUTEX;
  int rc = sqlite3_open_v2(path, db, flags, NULL);
  if (rc != SQLITE_OK) {
    cvg_error_set(err, rc == SQLITE_CANTOPEN ? CVG_ENOENT : CVG_EIO, path,
                  "cannot open the alert state file: %s",
                  *db ? sqlite3_errmsg(*db) : sqlite3_errstr(rc));
    cvg_error_hint(err, create ? "set alerting.state to a writable path"
                               : "is converge watch running with this catalog? it creates the "
                                 "file (alerting.state, default beside the catalog)");
    sqlite3_close(*db);
    *db = NULL;
    return err ? err->status : CVG_EIO;
  }
  sqlite3_busy_timeout(*db, 5000);
  char *msg = NULL;
  rc = sqlite3_exec(*db, "PRAGMA journal_mode=WAL;", NULL, NULL, &msg);
  if (rc == SQLITE_OK)
    rc = sqlite3_exec(*db, schema, NULL, NULL, &msg);
  if (rc != SQLITE_OK) {
    cvg_error_set(err, CVG_EIO, path, "cannot prepare the alert state file: %s",
                  msg ? msg : sqlite3_errstr(rc));
    cvg_error_hint(err, "is it a converge state file, and writable?");
    sqlite3_free(msg);
    sqlite3_close(*db);
    *db = NULL;
    return err ? err->status : CVG_EIO;
  }
  return CVG_OK;
}

int cvg_event_kind_ok(const char *kind) {
  static const char *const kinds[] = {"deploy", "migration", "config", "incident", "other", NULL};
  for (size_t i = 0; kinds[i]; i++)
    if (strcmp(kind, kinds[i]) == 0)
      return 1;
  return 0;
}

static int db_fail(cvg_error *err, sqlite3 *db, const char *path, const char *what) {
  cvg_error_set(err, CVG_EIO, path, "%s: %s", what, sqlite3_errmsg(db));
  return err ? err->status : CVG_EIO;
}

int cvg_event_add(const char *path, cvg_event *ev, cvg_error *err) {
  sqlite3 *db = NULL;
  int rc = cvg_state_open(&db, path, 1, err);
  if (rc)
    return rc;
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db,
                         "INSERT INTO converge_events(at, kind, dataset, text, source)"
                         " VALUES (?, ?, ?, ?, ?)",
                         -1, &st, NULL) != SQLITE_OK) {
    rc = db_fail(err, db, path, "cannot record the event");
  } else {
    sqlite3_bind_double(st, 1, ev->at);
    sqlite3_bind_text(st, 2, ev->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, ev->dataset, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, ev->text, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, ev->source, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
      rc = db_fail(err, db, path, "cannot record the event");
    else
      ev->id = sqlite3_last_insert_rowid(db);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return rc;
}

int cvg_event_list(const char *path, double since, double until, const char *dataset,
                   cvg_event *out, size_t max, size_t *n, cvg_error *err) {
  *n = 0;
  sqlite3 *db = NULL;
  int rc = cvg_state_open(&db, path, 1, err);
  if (rc)
    return rc;
  rc = cvg_state_events(db, path, since, until, dataset, out, max, n, err);
  sqlite3_close(db);
  return rc;
}

int cvg_state_events(sqlite3 *db, const char *path, double since, double until, const char *dataset,
                     cvg_event *out, size_t max, size_t *n, cvg_error *err) {
  *n = 0;
  int rc = CVG_OK;
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db,
                         "SELECT id, at, kind, dataset, text, source FROM converge_events"
                         " WHERE at >= ? AND at <= ? AND (?3 IS NULL OR dataset = '' OR"
                         " dataset = ?3) ORDER BY at DESC, id DESC LIMIT ?",
                         -1, &st, NULL) != SQLITE_OK) {
    rc = db_fail(err, db, path, "cannot read events");
  } else {
    sqlite3_bind_double(st, 1, since);
    sqlite3_bind_double(st, 2, until);
    if (dataset)
      sqlite3_bind_text(st, 3, dataset, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)max);
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW && *n < max) {
      cvg_event *e = &out[(*n)++];
      e->id = sqlite3_column_int64(st, 0);
      e->at = sqlite3_column_double(st, 1);
      snprintf(e->kind, sizeof e->kind, "%s", (const char *)sqlite3_column_text(st, 2));
      snprintf(e->dataset, sizeof e->dataset, "%s", (const char *)sqlite3_column_text(st, 3));
      snprintf(e->text, sizeof e->text, "%s", (const char *)sqlite3_column_text(st, 4));
      snprintf(e->source, sizeof e->source, "%s", (const char *)sqlite3_column_text(st, 5));
    }
    if (s != SQLITE_ROW && s != SQLITE_DONE)
      rc = db_fail(err, db, path, "cannot read events");
  }
  sqlite3_finalize(st);
  return rc;
}

int cvg_alerts_state_json(const char *path, cvg_buf *out, cvg_error *err) {
  sqlite3 *db = NULL;
  int rc = cvg_state_open(&db, path, 0, err);
  if (rc)
    return rc;
  sqlite3_stmt *st = NULL;
  json_t *arr = json_array();
  if (!arr) {
    sqlite3_close(db);
    return cvg_error_set(err, CVG_ENOMEM, path, "out of memory");
  }
  if (sqlite3_prepare_v2(db,
                         "SELECT fingerprint, labels, annotations, state, active_at, starts_at,"
                         " resolved_at, value, inhibited, updated_at FROM converge_alert_state"
                         " ORDER BY starts_at, fingerprint",
                         -1, &st, NULL) != SQLITE_OK) {
    rc = db_fail(err, db, path, "cannot read the alert state");
  } else {
    while (sqlite3_step(st) == SQLITE_ROW) {
      json_t *a = json_object();
      if (!a)
        break;
      json_object_set_new(a, "fingerprint", json_string((const char *)sqlite3_column_text(st, 0)));
      json_t *l = json_loads((const char *)sqlite3_column_text(st, 1), 0, NULL);
      json_t *an = json_loads((const char *)sqlite3_column_text(st, 2), 0, NULL);
      json_object_set_new(a, "labels", l ? l : json_object());
      json_object_set_new(a, "annotations", an ? an : json_object());
      json_object_set_new(a, "state", json_string((const char *)sqlite3_column_text(st, 3)));
      json_object_set_new(a, "activeAt", cvg_json_time(sqlite3_column_double(st, 4)));
      if (sqlite3_column_double(st, 5) > 0)
        json_object_set_new(a, "startsAt", cvg_json_time(sqlite3_column_double(st, 5)));
      if (sqlite3_column_double(st, 6) > 0)
        json_object_set_new(a, "endsAt", cvg_json_time(sqlite3_column_double(st, 6)));
      if (sqlite3_column_type(st, 7) != SQLITE_NULL)
        json_object_set_new(a, "value", json_real(sqlite3_column_double(st, 7)));
      json_object_set_new(a, "inhibited", json_boolean(sqlite3_column_int(st, 8)));
      json_object_set_new(a, "updatedAt", cvg_json_time(sqlite3_column_double(st, 9)));
      json_array_append_new(arr, a);
    }
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  if (rc == CVG_OK) {
    json_t *root = json_pack("{s:o, s:s}", "alerts", arr, "source", "state file");
    char *txt = root ? json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    rc = txt ? cvg_buf_append(out, txt, strlen(txt)) : CVG_ENOMEM;
    free(txt);
    json_decref(root);
  } else {
    json_decref(arr);
  }
  return rc;
}
