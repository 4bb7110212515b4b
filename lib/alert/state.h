/* SPDX-License-Identifier: MIT */
/*
 * The alert state file (SQLite), shared by `converge watch`, `converge annotate` and
 * `converge alerts`. Private to lib/alert/.
 *
 *   converge_alert_state  one row per alert the daemon holds (pending, firing, resolved within
 *                         retention): its labels and annotations (JSON), lifecycle times, value
 *   converge_events       change events (deploys, migrations, configuration changes)
 *   converge_episode      per dataset, the divergence episode in progress (its detection trace),
 *                         so that a restart continues it instead of starting the clock again
 *
 * WAL mode: the daemon, the CLI and the HTTP server's connections write side by side.
 */
#ifndef CONVERGE_ALERT_STATE_H
#define CONVERGE_ALERT_STATE_H

#include "converge/status.h"

#include <sqlite3.h>

/* Opens (creating if asked) the state file and its tables. */
int cvg_state_open(sqlite3 **db, const char *path, int create, cvg_error *err);

#endif
