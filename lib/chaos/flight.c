/* SPDX-License-Identifier: MIT */
/*
 * The lab's record of what each link carries (flight.h). Per replica and key a ring of the last
 * SLOTS versions queued: enough for a pair of updates and its reordered or duplicated copy. The
 * delivery order is a global counter, so "delivered later" does not depend on the clock's
 * resolution (a reordered pair lands in one tick).
 */
#include "flight.h"

#include <stdlib.h>

#define SLOTS 4

typedef struct slot {
  int64_t ver;       /* 0: empty */
  double first_at;   /* first delivery, 0 none yet */
  uint64_t last_seq; /* order of the last delivery, 0 none */
} slot;

typedef struct kslots {
  slot s[SLOTS];
  uint8_t next;
} kslots;

struct cvgi_flight {
  int replicas;
  int64_t max_id;
  uint64_t seq;
  kslots *k; /* replicas x (max_id + 1) */
};

int cvgi_flight_new(cvgi_flight **out, int replicas, int64_t max_id) {
  cvgi_flight *f = calloc(1, sizeof *f);
  if (!f || !(f->k = calloc((size_t)replicas * (size_t)(max_id + 1), sizeof *f->k))) {
    free(f);
    return -1;
  }
  f->replicas = replicas;
  f->max_id = max_id;
  *out = f;
  return 0;
}

void cvgi_flight_free(cvgi_flight *f) {
  if (f)
    free(f->k);
  free(f);
}

static kslots *at(const cvgi_flight *f, int r, int64_t id) {
  if (!f || r < 0 || r >= f->replicas || id < 1 || id > f->max_id)
    return NULL;
  return &f->k[(size_t)r * (size_t)(f->max_id + 1) + (size_t)id];
}

static slot *find(kslots *k, int64_t ver) {
  for (int i = 0; k && i < SLOTS; i++)
    if (k->s[i].ver == ver && ver != 0)
      return &k->s[i];
  return NULL;
}

void cvgi_flight_sent(cvgi_flight *f, int r, int64_t id, int64_t ver) {
  kslots *k = at(f, r, id);
  if (!k || find(k, ver))
    return;
  k->s[k->next] = (slot){.ver = ver};
  k->next = (uint8_t)((k->next + 1) % SLOTS);
}

void cvgi_flight_delivered(cvgi_flight *f, int r, int64_t id, int64_t ver, double t) {
  slot *s = find(at(f, r, id), ver);
  if (!s)
    return;
  if (s->first_at == 0)
    s->first_at = t;
  s->last_seq = ++f->seq;
}

int cvgi_flight_on_way(const cvgi_flight *f, int r, int64_t id, int64_t ver, double since) {
  kslots *k = at(f, r, id);
  slot *s = find(k, ver);
  if (!s)
    return 0;
  if (s->first_at == 0)
    return 1; /* still queued */
  if (s->first_at <= since)
    return 0;
  for (int i = 0; i < SLOTS; i++)
    if (k->s[i].ver != 0 && k->s[i].ver < ver && k->s[i].last_seq > s->last_seq)
      return 0; /* an older change landed on top of it */
  return 1;
}
