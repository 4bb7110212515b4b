/* SPDX-License-Identifier: MIT */
/*
 * The divergence tracker (tracker.h), driven with an injected clock: the confirmation rule
 * (suspected first, confirmed only by a later check made more than the wait after the key was
 * first seen), rows in flight (a hot key whose copies all reached the previous check's newest
 * version is suspected afresh; a replica stuck below it is confirmed), episodes and their
 * events (start, confirmed, end; a restored episode continued or ended by a sweep), a sweep's
 * end (resolves what it did not find, except keys whose copy sits on a replica that is down),
 * max_tracked, conflict hotspots, shard digests, and the confirmation wait.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "converge/tracker.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct events {
  int n[CVG_TRK_EPISODE_END + 1];
  char last_id[32];
} events;

static void on_event(void *ctx, const cvg_trk_event *ev) {
  events *e = ctx;
  e->n[ev->kind]++;
  snprintf(e->last_id, sizeof e->last_id, "%s", ev->episode->id);
}

/* A key state for three replicas: copy i live with fingerprint fp[i] and version ver[i]
 * (0: no version; < 0: absent). */
typedef struct three {
  cvg_keystate ks;
  unsigned char v[3][8];
} three;

static void set3(three *t, const int *fp, const int *ver) {
  memset(t, 0, sizeof *t);
  for (size_t i = 0; i < 3; i++) {
    t->ks.known[i] = 1;
    cvg_copy *c = &t->ks.copies[i];
    if (ver[i] < 0) {
      c->state = CVG_ABSENT;
      continue;
    }
    c->state = CVG_LIVE;
    c->fp.lo = (uint64_t)fp[i];
    c->fp.hi = 7;
    if (ver[i] > 0) {
      for (int b = 0; b < 8; b++) /* big-endian: compares as the number */
        t->v[i][b] = (unsigned char)((uint64_t)ver[i] >> (8 * (7 - b)));
      c->version = t->v[i];
      c->version_len = 8;
    }
  }
}

static cvg_tracker *make(events *ev, size_t max_tracked, int versioned) {
  cvg_tracker_config cfg = {3, 16, max_tracked, versioned};
  cvg_tracker *tr = NULL;
  assert_int_equal(cvg_tracker_new(&tr, &cfg, ev ? on_event : NULL, ev), CVG_OK);
  return tr;
}

static cvg_trk_check at(double now, double wait) {
  cvg_trk_check c = {.now = now, .wait = wait, .lag = 0.5, .probe = "incremental check"};
  return c;
}

static const unsigned char K1[] = "key-1", K2[] = "key-2";

static void test_confirmation_rule(void **state) {
  (void)state;
  events ev = {0};
  cvg_tracker *tr = make(&ev, 100, 0);
  three s;
  set3(&s, (int[]){1, 1, 2}, (int[]){0, 0, 0});
  cvg_trk_check c = at(1000, 5);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_CONFLICT, &s.ks);
  const cvg_tracked *t = cvg_tracker_find(tr, K1, 5);
  assert_non_null(t);
  assert_int_equal(t->confirmed, 0);
  assert_int_equal(t->agreeing, 2);
  assert_true(t->first_seen == 1000);
  /* a later check within the wait: still suspected */
  c = at(1004, 5);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_CONFLICT, &s.ks);
  assert_int_equal(cvg_tracker_find(tr, K1, 5)->confirmed, 0);
  /* past the wait: confirmed, at that check's time */
  c = at(1006, 5);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_CONFLICT, &s.ks);
  t = cvg_tracker_find(tr, K1, 5);
  assert_int_equal(t->confirmed, 1);
  assert_true(t->confirmed_at == 1006);
  assert_true(t->first_seen == 1000);
  /* a key seen once only, however long ago its check was, is never confirmed by itself */
  c = at(2000, 0);
  cvg_tracker_record(tr, &c, K2, 5, CVG_CLASS_CONFLICT, &s.ks);
  assert_int_equal(cvg_tracker_find(tr, K2, 5)->confirmed, 0);
  cvg_trk_stats st;
  cvg_tracker_stats(tr, &st);
  assert_int_equal(st.tracked, 2);
  assert_int_equal(st.confirmed, 1);
  assert_int_equal(st.confirmations, 1);
  assert_int_equal(ev.n[CVG_TRK_KEY_SUSPECTED], 2);
  assert_int_equal(ev.n[CVG_TRK_KEY_CONFIRMED], 1);
  /* agreeing again: dropped and counted by the state it had reached */
  set3(&s, (int[]){1, 1, 1}, (int[]){0, 0, 0});
  c = at(2001, 5);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_NONE, &s.ks);
  assert_null(cvg_tracker_find(tr, K1, 5));
  cvg_tracker_stats(tr, &st);
  assert_int_equal(st.resolved[1], 1);
  assert_int_equal(st.resolved[0], 0);
  assert_int_equal(ev.n[CVG_TRK_KEY_RESOLVED], 1);
  cvg_tracker_free(tr);
}

static void test_rows_in_flight(void **state) {
  (void)state;
  events ev = {0};
  cvg_tracker *tr = make(&ev, 100, 1);
  three s;
  /* a hot key: versions 5, 5, 4; then 7, 7, 6 - each time the newest write is on its way, and
   * every copy reached the previous newest version: suspected afresh, never confirmed */
  set3(&s, (int[]){1, 1, 2}, (int[]){5, 5, 4});
  cvg_trk_check c = at(100, 2);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_STALE, &s.ks);
  set3(&s, (int[]){3, 3, 4}, (int[]){7, 7, 6});
  c = at(110, 2);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_STALE, &s.ks);
  const cvg_tracked *t = cvg_tracker_find(tr, K1, 5);
  assert_int_equal(t->confirmed, 0);
  assert_true(t->first_seen == 110);
  assert_int_equal(ev.n[CVG_TRK_KEY_SUSPECTED], 2);
  /* a replica stuck below the previous newest version (a lost change), but the key written
   * again (9): the wait runs from that write, which may mend the lost one */
  set3(&s, (int[]){5, 5, 4}, (int[]){9, 9, 6});
  c = at(120, 2);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_STALE, &s.ks);
  t = cvg_tracker_find(tr, K1, 5);
  assert_int_equal(t->confirmed, 0);
  assert_true(t->first_seen == 110 && t->newest_seen == 120);
  /* no newer write, still stuck once the wait has passed since 9 was seen: confirmed */
  c = at(123, 2);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_STALE, &s.ks);
  t = cvg_tracker_find(tr, K1, 5);
  assert_int_equal(t->confirmed, 1);
  size_t l;
  const unsigned char *v = cvg_tracked_version(t, 2, &l);
  assert_int_equal(l, 8);
  assert_int_equal(v[7], 6);
  /* without a version column the rule does not apply: a conflict is confirmed by time */
  cvg_tracker_free(tr);
  tr = make(&ev, 100, 0);
  set3(&s, (int[]){1, 1, 2}, (int[]){5, 5, 4});
  c = at(100, 2);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_STALE, &s.ks);
  set3(&s, (int[]){3, 3, 4}, (int[]){7, 7, 6});
  c = at(110, 2);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_STALE, &s.ks);
  assert_int_equal(cvg_tracker_find(tr, K1, 5)->confirmed, 1);
  cvg_tracker_free(tr);
}

static void test_episodes(void **state) {
  (void)state;
  events ev = {0};
  cvg_tracker *tr = make(&ev, 100, 0);
  three s;
  set3(&s, (int[]){1, 1, 2}, (int[]){0, 0, 0});
  cvg_trk_check c = at(50, 1);
  c.lag = 0.25;
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_CONFLICT, &s.ks);
  c = at(51, 1);
  cvg_tracker_record(tr, &c, K2, 5, CVG_CLASS_CONFLICT, &s.ks);
  const cvg_trk_episode *ep = cvg_tracker_episode(tr);
  assert_int_equal(ep->active, 1);
  assert_true(ep->suspected_at == 50);
  assert_true(ep->lag_suspected == 0.25);
  assert_string_equal(ep->first_probe, "incremental check");
  assert_int_equal(strncmp(ep->id, "trc-", 4), 0);
  assert_int_equal(ev.n[CVG_TRK_EPISODE_START], 1);
  char id[32];
  snprintf(id, sizeof id, "%s", ep->id);
  c = at(53, 1);
  c.lag = 1.5;
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_CONFLICT, &s.ks);
  assert_true(ep->confirmed_at == 53);
  assert_true(ep->lag_confirmed == 1.5);
  assert_int_equal(ev.n[CVG_TRK_EPISODE_CONFIRMED], 1);
  /* the episode ends with its last key, not before */
  three ok;
  set3(&ok, (int[]){1, 1, 1}, (int[]){0, 0, 0});
  c = at(54, 1);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_NONE, &ok.ks);
  assert_int_equal(ep->active, 1);
  assert_int_equal(ev.n[CVG_TRK_EPISODE_END], 0);
  cvg_tracker_record(tr, &c, K2, 5, CVG_CLASS_NONE, &ok.ks);
  assert_int_equal(ep->active, 0);
  assert_int_equal(ev.n[CVG_TRK_EPISODE_END], 1);
  assert_string_equal(ev.last_id, id);
  /* a new divergence is a new episode */
  c = at(60, 1);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_CONFLICT, &s.ks);
  assert_int_equal(ev.n[CVG_TRK_EPISODE_START], 2);
  assert_string_not_equal(ep->id, id);
  /* a sweep that resolves every key ends the episode too */
  cvg_tracker_sweep_end(tr, 1, NULL);
  assert_int_equal(cvg_tracker_count(tr), 0);
  assert_int_equal(ep->active, 0);
  assert_int_equal(ev.n[CVG_TRK_EPISODE_END], 2);
  cvg_tracker_free(tr);
}

static void test_restored_episode(void **state) {
  (void)state;
  events ev = {0};
  cvg_tracker *tr = make(&ev, 100, 0);
  cvg_trk_episode saved;
  memset(&saved, 0, sizeof saved);
  snprintf(saved.id, sizeof saved.id, "trc-saved");
  snprintf(saved.first_probe, sizeof saved.first_probe, "full sweep");
  saved.suspected_at = 10;
  cvg_tracker_restore_episode(tr, &saved);
  three s;
  set3(&s, (int[]){1, 1, 2}, (int[]){0, 0, 0});
  cvg_trk_check c = at(500, 5);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_CONFLICT, &s.ks);
  const cvg_trk_episode *ep = cvg_tracker_episode(tr);
  assert_string_equal(ep->id, "trc-saved");
  assert_int_equal(ev.n[CVG_TRK_EPISODE_CONTINUED], 1);
  assert_int_equal(ev.n[CVG_TRK_EPISODE_START], 0);
  /* keys found before the first sweep began no later than the saved episode did */
  assert_true(cvg_tracker_find(tr, K1, 5)->first_seen == 10);
  c = at(501, 5); /* so it confirms at once: it has diverged since 10 */
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_CONFLICT, &s.ks);
  assert_int_equal(cvg_tracker_find(tr, K1, 5)->confirmed, 1);
  cvg_tracker_free(tr);
  /* a completed sweep that finds nothing ends the restored episode: the next one is new */
  memset(&ev, 0, sizeof ev);
  tr = make(&ev, 100, 0);
  cvg_tracker_restore_episode(tr, &saved);
  cvg_tracker_sweep_end(tr, 1, NULL);
  assert_int_equal(cvg_tracker_episode(tr)->restored, 0);
  c = at(600, 5);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_CONFLICT, &s.ks);
  assert_int_equal(ev.n[CVG_TRK_EPISODE_START], 1);
  assert_string_not_equal(cvg_tracker_episode(tr)->id, "trc-saved");
  assert_true(cvg_tracker_find(tr, K1, 5)->first_seen == 600);
  cvg_tracker_free(tr);
}

static void test_sweep_end(void **state) {
  (void)state;
  events ev = {0};
  cvg_tracker *tr = make(&ev, 100, 0);
  three s;
  set3(&s, (int[]){1, 1, 2}, (int[]){0, 0, 0});
  cvg_trk_check c = at(10, 5);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_CONFLICT, &s.ks);
  /* K2's only divergent copy is known on replicas 0 and 1; replica 2 was not read */
  three d;
  set3(&d, (int[]){1, 2, 0}, (int[]){0, 0, 0});
  d.ks.known[2] = 0;
  cvg_tracker_record(tr, &c, K2, 5, CVG_CLASS_CONFLICT, &d.ks);
  assert_int_equal(cvg_tracker_find(tr, K2, 5)->rstates[2], 3);
  /* an interrupted sweep resolves nothing, and clears its marks */
  c = at(20, 5);
  c.sweep = 1;
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_CONFLICT, &s.ks);
  cvg_tracker_sweep_end(tr, 0, NULL);
  assert_int_equal(cvg_tracker_count(tr), 2);
  assert_int_equal(cvg_tracker_find(tr, K1, 5)->swept, 0);
  /* a completed sweep that did not find K2, while replica 1 (which holds a copy) is down:
   * K2 cannot be judged and stays */
  unsigned char down[3] = {0, 1, 0};
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_CONFLICT, &s.ks);
  cvg_tracker_sweep_end(tr, 1, down);
  assert_non_null(cvg_tracker_find(tr, K2, 5));
  /* all up: K2 agrees now; K1 was found again and stays */
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_CONFLICT, &s.ks);
  cvg_tracker_sweep_end(tr, 1, NULL);
  assert_null(cvg_tracker_find(tr, K2, 5));
  assert_non_null(cvg_tracker_find(tr, K1, 5));
  cvg_trk_stats st;
  cvg_tracker_stats(tr, &st);
  assert_int_equal(st.swept, 1);
  assert_int_equal(st.resolved[0], 1);
  cvg_tracker_free(tr);
}

static void test_max_tracked_and_many_keys(void **state) {
  (void)state;
  events ev = {0};
  cvg_tracker *tr = make(&ev, 3000, 0);
  three s;
  set3(&s, (int[]){1, 1, 2}, (int[]){0, 0, 0});
  cvg_trk_check c = at(1, 5);
  char k[32];
  for (int i = 0; i < 3500; i++) { /* grows the table past its first size, then fills it */
    int n = snprintf(k, sizeof k, "k%d", i);
    cvg_tracker_record(tr, &c, (const unsigned char *)k, (size_t)n, CVG_CLASS_CONFLICT, &s.ks);
  }
  cvg_trk_stats st;
  cvg_tracker_stats(tr, &st);
  assert_int_equal(st.tracked, 3000);
  assert_int_equal(st.dropped, 500);
  /* removing keys keeps every other one findable (backward-shift delete) */
  three ok;
  set3(&ok, (int[]){1, 1, 1}, (int[]){0, 0, 0});
  for (int i = 0; i < 3000; i += 2) {
    int n = snprintf(k, sizeof k, "k%d", i);
    cvg_tracker_record(tr, &c, (const unsigned char *)k, (size_t)n, CVG_CLASS_NONE, &ok.ks);
  }
  for (int i = 0; i < 3000; i++) {
    int n = snprintf(k, sizeof k, "k%d", i);
    const cvg_tracked *t = cvg_tracker_find(tr, (const unsigned char *)k, (size_t)n);
    if (i % 2)
      assert_non_null(t);
    else
      assert_null(t);
  }
  size_t cur = 0, seen = 0;
  while (cvg_tracker_next(tr, &cur))
    seen++;
  assert_int_equal(seen, 1500);
  cvg_tracker_free(tr);
}

static void test_hotspots(void **state) {
  (void)state;
  cvg_tracker *tr = make(NULL, 1000, 0);
  three s;
  set3(&s, (int[]){1, 1, 2}, (int[]){0, 0, 0});
  three ok;
  set3(&ok, (int[]){1, 1, 1}, (int[]){0, 0, 0});
  char k[32];
  double now = 0;
  /* key "hot" is confirmed as a conflict 5 times; 40 others once each */
  for (int round = 0; round < 5; round++) {
    cvg_trk_check c = at(now, 1);
    cvg_tracker_record(tr, &c, (const unsigned char *)"hot", 3, CVG_CLASS_CONFLICT, &s.ks);
    c = at(now + 2, 1);
    cvg_tracker_record(tr, &c, (const unsigned char *)"hot", 3, CVG_CLASS_CONFLICT, &s.ks);
    cvg_tracker_record(tr, &c, (const unsigned char *)"hot", 3, CVG_CLASS_NONE, &ok.ks);
    now += 10;
  }
  for (int i = 0; i < 40; i++) {
    int n = snprintf(k, sizeof k, "cold%d", i);
    cvg_trk_check c = at(now, 1);
    cvg_tracker_record(tr, &c, (const unsigned char *)k, (size_t)n, CVG_CLASS_CONFLICT, &s.ks);
    c = at(now + 2, 1);
    cvg_tracker_record(tr, &c, (const unsigned char *)k, (size_t)n, CVG_CLASS_CONFLICT, &s.ks);
  }
  size_t n_hot;
  const cvg_hot *hot = cvg_tracker_hot(tr, &n_hot);
  assert_int_equal(n_hot, CVG_HOT_K);
  int found = 0;
  uint64_t total_shards = 0;
  for (size_t i = 0; i < n_hot; i++)
    if (hot[i].key_len == 3 && memcmp(hot[i].key, "hot", 3) == 0) {
      found = 1;
      assert_true(hot[i].count >= 5);
      assert_true(hot[i].count - hot[i].error <= 5); /* Space-Saving: count - error <= true */
    }
  assert_true(found);
  const uint64_t *conf = cvg_tracker_conflicts(tr);
  for (uint32_t sh = 0; sh < 16; sh++)
    total_shards += conf[sh];
  assert_int_equal(total_shards, 45);
  cvg_tracker_free(tr);
}

static void test_digests(void **state) {
  (void)state;
  cvg_tracker *tr = make(NULL, 100, 0);
  cvg_fp base[16];
  memset(base, 0, sizeof base);
  unsigned char up[3] = {1, 1, 1};
  assert_null(cvg_tracker_digest(tr, 0));
  for (size_t i = 0; i < 3; i++)
    cvg_tracker_set_digest(tr, i, base);
  for (uint32_t sh = 0; sh < 16; sh++)
    assert_int_equal(cvg_tracker_shard_differs(tr, sh, up), 0);
  three s;
  set3(&s, (int[]){1, 1, 2}, (int[]){0, 0, 0});
  cvg_trk_check c = at(1, 5);
  c.update_digests = 1;
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_CONFLICT, &s.ks);
  uint32_t sh = cvg_tracker_find(tr, K1, 5)->shard;
  assert_int_equal(cvg_tracker_shard_differs(tr, sh, up), 1);
  up[2] = 0; /* the odd one out is not reachable: the others agree */
  assert_int_equal(cvg_tracker_shard_differs(tr, sh, up), 0);
  up[2] = 1;
  /* repaired: the key's contributions are replaced, the shard agrees again */
  three ok;
  set3(&ok, (int[]){1, 1, 1}, (int[]){0, 0, 0});
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_NONE, &ok.ks);
  assert_int_equal(cvg_tracker_shard_differs(tr, sh, up), 0);
  cvg_tracker_set_digest(tr, 1, NULL);
  assert_null(cvg_tracker_digest(tr, 1));
  cvg_tracker_free(tr);
}

static void test_confirm_wait(void **state) {
  (void)state;
  double lag[3] = {0, 2, 3};
  int up[3] = {1, 1, 1};
  /* worst lag 3 + two 1 s heartbeat intervals, bounded by confirm_within */
  assert_true(cvg_tracker_confirm_wait(lag, up, 3, 0, 1, 60) == 5);
  assert_true(cvg_tracker_confirm_wait(lag, up, 3, 0, 1, 4) == 4);
  /* a down replica does not count; an unknown lag waits the whole bound */
  up[2] = 0;
  assert_true(cvg_tracker_confirm_wait(lag, up, 3, 0, 1, 60) == 4);
  up[2] = 1;
  lag[1] = NAN;
  assert_true(cvg_tracker_confirm_wait(lag, up, 3, 0, 1, 60) == 60);
  /* no authority or no heartbeat: the bound */
  lag[1] = 2;
  assert_true(cvg_tracker_confirm_wait(lag, up, 3, -1, 1, 60) == 60);
  assert_true(cvg_tracker_confirm_wait(lag, up, 3, 0, 0, 60) == 60);
}

static void test_bad_config(void **state) {
  (void)state;
  cvg_tracker *tr = NULL;
  cvg_tracker_config cfg = {0, 16, 10, 0};
  assert_int_equal(cvg_tracker_new(&tr, &cfg, NULL, NULL), CVG_EINVAL);
  cfg.n_replicas = CVG_DIFF_MAX_REPLICAS + 1;
  assert_int_equal(cvg_tracker_new(&tr, &cfg, NULL, NULL), CVG_EINVAL);
  cfg.n_replicas = 2;
  cfg.shards = 0;
  assert_int_equal(cvg_tracker_new(&tr, &cfg, NULL, NULL), CVG_EINVAL);
  assert_null(tr);
}

/* The apply-position rule (heartbeats on; authority 0, heartbeat interval 1 s, confirm_within
 * 30 s): replica 2's copy differs, replica 1 agrees with the authority. */
static cvg_trk_check applied(double now, double *apply, double *idle) {
  cvg_trk_check c = at(now, 2); /* a short wait: the rule, not the wait, must decide */
  c.apply = apply;
  c.idle = idle;
  c.authority = 0;
  c.hb_interval = 1;
  c.confirm_within = 30;
  return c;
}

static void test_apply_position(void **state) {
  (void)state;
  cvg_tracker *tr = make(NULL, 100, 0);
  three s;
  set3(&s, (int[]){1, 1, 2}, (int[]){0, 0, 0});
  /* a replica 60 s behind that keeps applying: each second a new key differs on it and arrives
   * when its apply position passes the key's first sighting. No key is ever confirmed, though
   * each differs for 60 s (the wait alone, 2 s, would confirm every one) */
  set3(&s, (int[]){1, 1, 2}, (int[]){0, 0, 0});
  three same;
  set3(&same, (int[]){1, 1, 1}, (int[]){0, 0, 0});
  for (int now = 100; now <= 400; now++) {
    double apply[3] = {now, now - 90, now - 60}, idle[3] = {0, 0, 0.5};
    cvg_trk_check c = applied(now, apply, idle);
    for (int k = now - 61; k <= now; k++) { /* keys first seen at k; arrived when k <= apply */
      char key[16];
      int n = snprintf(key, sizeof key, "k%d", k);
      if (k < 100)
        continue;
      int arrived = k <= now - 60;
      if (arrived && !cvg_tracker_find(tr, (unsigned char *)key, (size_t)n))
        continue;
      cvg_tracker_record(tr, &c, (unsigned char *)key, (size_t)n,
                         arrived ? CVG_CLASS_NONE : CVG_CLASS_CONFLICT, arrived ? &same.ks : &s.ks);
    }
    cvg_trk_stats st;
    cvg_tracker_stats(tr, &st);
    assert_int_equal(st.confirmations, 0);
  }
  assert_int_equal(cvg_tracker_count(tr), 60); /* the last minute's keys, all still suspected */
  cvg_tracker_free(tr);
  /* first seen at 100; replica 2 applies up to 100.9, then past 101: confirmed then */
  tr = make(NULL, 100, 0);
  double apply[3] = {100, 99, 99}, idle[3] = {0, 0, 0};
  cvg_trk_check c = applied(100, apply, idle);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_CONFLICT, &s.ks);
  apply[2] = 100.9;
  c = applied(110, apply, idle);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_CONFLICT, &s.ks);
  assert_int_equal(cvg_tracker_find(tr, K1, 5)->confirmed, 0);
  apply[2] = 101.0;
  c = applied(111, apply, idle);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_CONFLICT, &s.ks);
  assert_int_equal(cvg_tracker_find(tr, K1, 5)->confirmed, 1);
  assert_true(cvg_tracker_find(tr, K1, 5)->confirmed_at == 111);
  cvg_tracker_free(tr);
  /* a stopped replication (apply not advanced for confirm_within) does not hold it back */
  tr = make(NULL, 100, 0);
  double apply2[3] = {200, 150, 150}, idle2[3] = {0, 0, 29};
  c = applied(200, apply2, idle2);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_CONFLICT, &s.ks);
  c = applied(205, apply2, idle2);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_CONFLICT, &s.ks);
  assert_int_equal(cvg_tracker_find(tr, K1, 5)->confirmed, 0); /* idle 29 < 30 */
  idle2[2] = 60; /* stopped long before the key was first seen: the key still waits 30 s */
  c = applied(229, apply2, idle2);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_CONFLICT, &s.ks);
  assert_int_equal(cvg_tracker_find(tr, K1, 5)->confirmed, 0);
  c = applied(230, apply2, idle2);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_CONFLICT, &s.ks);
  assert_int_equal(cvg_tracker_find(tr, K1, 5)->confirmed, 1);
  cvg_tracker_free(tr);
  /* lost on replica 1, which stopped, while replica 2 - slow, still applying - has not got it
   * yet: confirmed by replica 1 at once, replica 2 marked in flight (a repair leaves the key
   * alone); when replica 2's copy arrives, nothing is in flight any more */
  tr = make(NULL, 100, 0);
  three two;
  set3(&two, (int[]){1, 2, 3}, (int[]){0, 0, 0});
  double ap2[3] = {500, 440, 495}, id2[3] = {0, 60, 0};
  c = applied(500, ap2, id2);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_CONFLICT, &two.ks);
  c = applied(530, ap2, id2);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_CONFLICT, &two.ks);
  const cvg_tracked *tk = cvg_tracker_find(tr, K1, 5);
  assert_int_equal(tk->confirmed, 1);
  assert_int_equal(tk->in_flight, 1u << 2);
  set3(&two, (int[]){1, 2, 1}, (int[]){0, 0, 0});
  c = applied(531, ap2, id2);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_CONFLICT, &two.ks);
  tk = cvg_tracker_find(tr, K1, 5);
  assert_int_equal(tk->confirmed, 1);
  assert_int_equal(tk->in_flight, 0);
  /* both slow: nothing confirmed, both in flight */
  cvg_tracker_free(tr);
  tr = make(NULL, 100, 0);
  set3(&two, (int[]){1, 2, 3}, (int[]){0, 0, 0});
  double ap3[3] = {600, 590, 595}, id3[3] = {0, 0, 0};
  c = applied(600, ap3, id3);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_CONFLICT, &two.ks);
  c = applied(640, ap3, id3);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_CONFLICT, &two.ks);
  tk = cvg_tracker_find(tr, K1, 5);
  assert_int_equal(tk->confirmed, 0);
  assert_int_equal(tk->in_flight, (1u << 1) | (1u << 2));
  cvg_tracker_free(tr);
  /* a hot key rewritten while replica 2 lags 5 s and keeps applying: its first write was lost
   * (version 4 where 5 was written), then 7 and 9 are written. Each new write moves the wait
   * (newest_seen); no confirmation while each is on its way, and a key confirmed before a new
   * write is suspected again (a repair then would race the write in flight) */
  tr = make(NULL, 100, 1);
  three h;
  set3(&h, (int[]){1, 1, 2}, (int[]){5, 5, 4});
  double ap[3] = {400, 400, 395}, id[3] = {0, 0, 0};
  c = applied(400, ap, id);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_STALE, &h.ks);
  set3(&h, (int[]){3, 3, 2}, (int[]){7, 7, 4}); /* 7 written at 402 */
  ap[2] = 401.5;                                /* past 400 + 1: 5 should have arrived */
  c = applied(402, ap, id);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_STALE, &h.ks);
  assert_int_equal(cvg_tracker_find(tr, K1, 5)->confirmed, 0); /* 7 is on its way */
  ap[2] = 402.5;
  c = applied(407, ap, id);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_STALE, &h.ks);
  assert_int_equal(cvg_tracker_find(tr, K1, 5)->confirmed, 0);
  ap[2] = 403.5; /* past 402 + 1 and 7 did not arrive: lost too, confirmed */
  c = applied(408, ap, id);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_STALE, &h.ks);
  assert_int_equal(cvg_tracker_find(tr, K1, 5)->confirmed, 1);
  set3(&h, (int[]){5, 5, 2}, (int[]){9, 9, 4}); /* 9 written: suspected again */
  c = applied(409, ap, id);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_STALE, &h.ks);
  const cvg_tracked *hk = cvg_tracker_find(tr, K1, 5);
  assert_int_equal(hk->confirmed, 0);
  assert_true(hk->newest_seen == 409 && hk->first_seen == 400);
  cvg_trk_stats hs;
  cvg_tracker_stats(tr, &hs);
  assert_int_equal(hs.confirmed, 0);
  assert_int_equal(hs.confirmations, 1);
  /* written again while replica 2 has stopped for confirm_within: confirmed at once, kept */
  id[2] = 30;
  set3(&h, (int[]){6, 6, 2}, (int[]){11, 11, 4});
  c = applied(431, ap, id);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_STALE, &h.ks);
  assert_int_equal(cvg_tracker_find(tr, K1, 5)->confirmed, 1);
  set3(&h, (int[]){7, 7, 2}, (int[]){13, 13, 4});
  c = applied(432, ap, id);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_STALE, &h.ks);
  assert_int_equal(cvg_tracker_find(tr, K1, 5)->confirmed, 1);
  cvg_tracker_stats(tr, &hs);
  assert_int_equal(hs.confirmations, 2);
  cvg_tracker_free(tr);
  /* a replica whose apply position is unknown (no heartbeat read): the wait decides for it */
  tr = make(NULL, 100, 0);
  double apply3[3] = {300, 300, NAN}, idle3[3] = {0, 0, 0};
  c = applied(300, apply3, idle3);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_CONFLICT, &s.ks);
  c = applied(301, apply3, idle3);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_CONFLICT, &s.ks);
  assert_int_equal(cvg_tracker_find(tr, K1, 5)->confirmed, 0); /* 1 s < wait 2 s */
  c = applied(303, apply3, idle3);
  cvg_tracker_record(tr, &c, K1, 5, CVG_CLASS_CONFLICT, &s.ks);
  assert_int_equal(cvg_tracker_find(tr, K1, 5)->confirmed, 1);
  cvg_tracker_free(tr);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_confirmation_rule), cmocka_unit_test(test_rows_in_flight),
      cmocka_unit_test(test_episodes),          cmocka_unit_test(test_restored_episode),
      cmocka_unit_test(test_sweep_end),         cmocka_unit_test(test_max_tracked_and_many_keys),
      cmocka_unit_test(test_hotspots),          cmocka_unit_test(test_digests),
      cmocka_unit_test(test_confirm_wait),      cmocka_unit_test(test_apply_position),
      cmocka_unit_test(test_bad_config),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
