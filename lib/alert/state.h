/* SPDX-License-Identifier: MIT */
/*
 * The alert state file (SQLite), shared by `converge watch`, `converge annotate` and
 * `converge alerts`. Private to lib/alert/.
 *
 *   converge_alert_state  one row per alert the daemon holds (pending, firing, resolved within
 *                         retention): its labels and annotations (JSON), lifecycle times, value
 *   converge_events       change events (deploys, migrations, configuration changes)
 *
 * The same file holds tables of other parts, which open it themselves: converge_episode (the
 * watch's divergence episodes and holds on repair, lib/watch/wstate.c) and the journal heads (lib/repair).
 *
 * WAL mode: the daemon, the CLI and the HTTP server's connections write side by side.
 */
#ifndef CONVERGE_ALERT_STATE_H
#define CONVERGE_ALERT_STATE_H

#include "converge/status.h"

#include <sqlite3.h>

/* Opens (creating if asked) the state file and its tables. */
int cvg_state_open(sqlite3 **db, const char *path, int create, cvg_error *err);

/* cvg_event_list on an already open state file (path only names it in messages): the engine
 * reads change events through its own connection instead of opening the file per alert. */
struct cvg_event;
int cvg_state_events(sqlite3 *db, const char *path, double since, double until, const char *dataset,
                     struct cvg_event *out, size_t max, size_t *n, cvg_error *err);

#endif
