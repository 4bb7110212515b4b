/* SPDX-License-Identifier: MIT */
/*
 * What each of the lab's links has in flight: for every (replica, key), the last few versions
 * queued on the link and when each was delivered. The lab's judge asks it whether a copy the
 * watch confirmed as divergent, or a row converge repaired, was still on its way - replication
 * alone would have delivered it. Internal to lib/chaos.
 */
#ifndef CVG_CHAOS_FLIGHT_H
#define CVG_CHAOS_FLIGHT_H

#include <stdint.h>

typedef struct cvgi_flight cvgi_flight;

/* For keys 1..max_id on replicas 0..replicas-1. -1 out of memory. */
int cvgi_flight_new(cvgi_flight **out, int replicas, int64_t max_id);
void cvgi_flight_free(cvgi_flight *f);

/* Version ver of key id was queued on replica r's link (neither dropped nor stopped). */
void cvgi_flight_sent(cvgi_flight *f, int r, int64_t id, int64_t ver);
/* A change to key id with version ver was applied on replica r at time t (a duplicate too). */
void cvgi_flight_delivered(cvgi_flight *f, int r, int64_t id, int64_t ver, double t);

/*
 * Whether version ver of key id was on its way to replica r at time since: queued on the link
 * and either not delivered yet, or first delivered after since and not overwritten afterwards by
 * an older version (a reordered or duplicated change that lands later is not in flight: nothing
 * would mend the key). 0 when ver was never queued (dropped, stopped) or is too old to know.
 */
int cvgi_flight_on_way(const cvgi_flight *f, int r, int64_t id, int64_t ver, double since);

#endif
