/* SPDX-License-Identifier: MIT */
/*
 * The divergence tracker (tracker.h): an open-addressing hash table of the divergent keys
 * (linear probing, backward-shift delete, at most half full), each replica's shard digests, the
 * conflict hotspots and the episode in progress.
 *
 * Shard digests. A completed sweep sets each replica's digest of each shard exactly (encode.h).
 * A check that updates digests adds each compared key's new contribution and subtracts the one
 * remembered for a tracked key; a key that was agreeing had the same unknown contribution on
 * every replica, so its old value is left in place. Absolute digests therefore drift from the
 * table's true sum between sweeps, but by the same amount on every replica: the comparison
 * between replicas - all that "this shard differs" needs - stays exact.
 */
#include "converge/tracker.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

struct cvg_tracker {
  cvg_tracker_config cfg;
  cvg_trk_event_fn fn;
  void *ctx;
  cvg_tracked **tab; /* OWNED; tab_cap slots (a power of two), or NULL */
  size_t tab_cap, n_tracked, n_confirmed;
  uint64_t dropped, resolved[2], confirmations;
  int swept;                /* a sweep has completed */
  int continued;            /* the episode is one restored from before a restart */
  cvg_fp *digest;           /* OWNED; n_replicas * shards */
  unsigned char *digest_ok; /* OWNED; per replica */
  cvg_hot hot[CVG_HOT_K];
  size_t n_hot;
  uint64_t *conflicts; /* OWNED; per shard */
  cvg_trk_episode ep;
};

int cvg_tracker_new(cvg_tracker **out, const cvg_tracker_config *cfg, cvg_trk_event_fn fn,
                    void *ctx) {
  *out = NULL;
  if (cfg->n_replicas < 1 || cfg->n_replicas > CVG_DIFF_MAX_REPLICAS || cfg->shards < 1 ||
      cfg->shards > CVG_DIFF_MAX_SHARDS)
    return CVG_EINVAL;
  cvg_tracker *tr = calloc(1, sizeof *tr);
  if (!tr)
    return CVG_ENOMEM;
  tr->cfg = *cfg;
  tr->fn = fn;
  tr->ctx = ctx;
  tr->digest = calloc(cfg->n_replicas * cfg->shards, sizeof *tr->digest);
  tr->digest_ok = calloc(cfg->n_replicas, 1);
  tr->conflicts = calloc(cfg->shards, sizeof *tr->conflicts);
  if (!tr->digest || !tr->digest_ok || !tr->conflicts) {
    cvg_tracker_free(tr);
    return CVG_ENOMEM;
  }
  *out = tr;
  return CVG_OK;
}

void cvg_tracker_free(cvg_tracker *tr) {
  if (!tr)
    return;
  for (size_t i = 0; i < tr->tab_cap; i++)
    free(tr->tab[i]);
  free(tr->tab);
  free(tr->digest);
  free(tr->digest_ok);
  free(tr->conflicts);
  free(tr);
}

static void emit(cvg_tracker *tr, cvg_trk_event_kind kind, const unsigned char *key, size_t key_len,
                 cvg_class cls, int was_confirmed) {
  if (!tr->fn)
    return;
  cvg_trk_event ev = {kind, key, key_len, cls, was_confirmed, &tr->ep};
  tr->fn(tr->ctx, &ev);
}

/* ---- the table ---- */

static cvg_tracked *find_slot(const cvg_tracker *tr, const unsigned char *key, size_t key_len,
                              uint64_t h, size_t *slot) {
  if (!tr->tab_cap)
    return NULL;
  size_t mask = tr->tab_cap - 1;
  for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
    cvg_tracked *t = tr->tab[i];
    if (!t || (t->hash == h && t->key_len == key_len && memcmp(t->key, key, key_len) == 0)) {
      if (slot)
        *slot = i;
      return t;
    }
  }
}

static int grow(cvg_tracker *tr) {
  size_t cap = tr->tab_cap ? tr->tab_cap * 2 : 1024;
  cvg_tracked **tab = calloc(cap, sizeof *tab);
  if (!tab)
    return CVG_ENOMEM;
  for (size_t i = 0; i < tr->tab_cap; i++) {
    cvg_tracked *t = tr->tab[i];
    if (!t)
      continue;
    size_t j = (size_t)t->hash & (cap - 1);
    while (tab[j])
      j = (j + 1) & (cap - 1);
    tab[j] = t;
  }
  free(tr->tab);
  tr->tab = tab;
  tr->tab_cap = cap;
  return CVG_OK;
}

/* Frees slot i's key and shifts back the entries after it that would no longer be found. */
static void remove_slot(cvg_tracker *tr, size_t i) {
  tr->n_confirmed -= tr->tab[i]->confirmed != 0;
  free(tr->tab[i]);
  tr->tab[i] = NULL;
  tr->n_tracked--;
  size_t mask = tr->tab_cap - 1;
  for (size_t j = (i + 1) & mask; tr->tab[j]; j = (j + 1) & mask) {
    size_t home = (size_t)tr->tab[j]->hash & mask;
    /* move j back to i when i lies cyclically in [home, j) */
    if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
      tr->tab[i] = tr->tab[j];
      tr->tab[j] = NULL;
      i = j;
    }
  }
}

/* Drops the key in slot i as agreeing again; ends the episode with the last key. */
static void resolve_slot(cvg_tracker *tr, size_t i) {
  cvg_tracked *t = tr->tab[i];
  int was = t->confirmed != 0;
  tr->resolved[was]++;
  emit(tr, CVG_TRK_KEY_RESOLVED, t->key, t->key_len, t->cls, was); /* before its bytes die */
  remove_slot(tr, i);
  if (tr->n_tracked == 0 && tr->ep.active) {
    tr->ep.active = 0;
    emit(tr, CVG_TRK_EPISODE_END, NULL, 0, CVG_CLASS_NONE, 0);
  }
}

const cvg_tracked *cvg_tracker_find(const cvg_tracker *tr, const unsigned char *key,
                                    size_t key_len) {
  if (!tr->n_tracked)
    return NULL;
  return find_slot(tr, key, key_len, XXH3_64bits(key, key_len), NULL);
}

const cvg_tracked *cvg_tracker_next(const cvg_tracker *tr, size_t *cursor) {
  while (*cursor < tr->tab_cap) {
    const cvg_tracked *t = tr->tab[(*cursor)++];
    if (t)
      return t;
  }
  return NULL;
}

size_t cvg_tracker_count(const cvg_tracker *tr) {
  return tr->n_tracked;
}

void cvg_tracker_stats(const cvg_tracker *tr, cvg_trk_stats *st) {
  st->tracked = tr->n_tracked;
  st->confirmed = tr->n_confirmed;
  st->dropped = tr->dropped;
  st->resolved[0] = tr->resolved[0];
  st->resolved[1] = tr->resolved[1];
  st->confirmations = tr->confirmations;
  st->swept = tr->swept;
}

/* ---- what a key's copies say ---- */

/* Largest group of read replicas with the same state, fingerprint and version. */
static int agreeing_group(const cvg_keystate *ks, size_t n) {
  int best = 0;
  for (size_t i = 0; i < n; i++) {
    if (!ks->known[i])
      continue;
    int g = 0;
    for (size_t j = 0; j < n; j++) {
      if (!ks->known[j])
        continue;
      const cvg_copy *a = &ks->copies[i], *b = &ks->copies[j];
      int same = a->state == b->state;
      if (same && a->state == CVG_LIVE)
        same = cvg_fp_equal(a->fp, b->fp) && a->version_len == b->version_len &&
               (a->version_len == 0 || memcmp(a->version, b->version, a->version_len) == 0);
      if (a->state != CVG_LIVE && b->state != CVG_LIVE)
        same = 1; /* absent and tombstoned agree: deleted */
      g += same;
    }
    if (g > best)
      best = g;
  }
  return best;
}

static cvg_fp contribution(const unsigned char *key, size_t key_len, const cvg_copy *c) {
  cvg_fp zero = {0, 0};
  if (c->state != CVG_LIVE)
    return zero;
  return cvg_digest_contribution(key, key_len, c->fp, c->version, c->version_len);
}

/* Counts one more confirmed conflict of key (Space-Saving). */
static void hot_add(cvg_tracker *tr, const unsigned char *key, size_t key_len, uint32_t shard) {
  if (shard < tr->cfg.shards)
    tr->conflicts[shard]++;
  if (key_len > CVG_HOT_KEY_MAX)
    return;
  size_t min = 0;
  for (size_t i = 0; i < tr->n_hot; i++) {
    if (tr->hot[i].key_len == key_len && !memcmp(tr->hot[i].key, key, key_len)) {
      tr->hot[i].count++;
      return;
    }
    if (tr->hot[i].count < tr->hot[min].count)
      min = i;
  }
  int replace = tr->n_hot == CVG_HOT_K;
  cvg_hot *h = replace ? &tr->hot[min] : &tr->hot[tr->n_hot++];
  uint64_t base = replace ? h->count : 0;
  memcpy(h->key, key, key_len);
  h->key_len = key_len;
  h->error = base;
  h->count = base + 1;
}

/* A hot key can differ at every check without being drift: each time, the newest write is still
 * on its way. If every replica now holds at least the newest version of the previous check, what
 * differed then has arrived; what differs now is a new difference. A replica stuck below that
 * version (a lost change) never makes progress. */
const unsigned char *cvg_tracked_newest(const cvg_tracked *t, size_t n, size_t *len) {
  const unsigned char *pm = NULL;
  size_t pml = 0;
  for (size_t i = 0; i < n; i++) {
    size_t l;
    const unsigned char *v = cvg_tracked_version(t, i, &l);
    if (l && (!pm || cvg_key_compare(v, l, pm, pml) > 0)) {
      pm = v;
      pml = l;
    }
  }
  *len = pml;
  return pm;
}

/* Whether a check found a version of the key higher than any t held: a write since. */
static int newer_write(const cvg_tracked *t, const cvg_keystate *ks, size_t n) {
  size_t pml = 0;
  const unsigned char *pm = cvg_tracked_newest(t, n, &pml);
  for (size_t i = 0; i < n; i++)
    if (ks->known[i] && ks->copies[i].version_len &&
        (!pm || cvg_key_compare(ks->copies[i].version, ks->copies[i].version_len, pm, pml) > 0))
      return 1;
  return 0;
}

static int progressed(const cvg_tracked *t, const cvg_keystate *ks, size_t n) {
  size_t pml = 0;
  const unsigned char *pm = cvg_tracked_newest(t, n, &pml);
  if (!pm)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!ks->known[i] || !ks->copies[i].version_len ||
        cvg_key_compare(ks->copies[i].version, ks->copies[i].version_len, pm, pml) < 0)
      return 0;
  return 1;
}

/* ---- recording a check ---- */

static void update_digests(cvg_tracker *tr, const cvg_tracked *t, const unsigned char *key,
                           size_t key_len, uint32_t shard, cvg_class cls, const cvg_keystate *ks) {
  for (size_t i = 0; i < tr->cfg.n_replicas; i++) {
    if (!ks->known[i] || !tr->digest_ok[i])
      continue;
    cvg_fp *d = &tr->digest[i * tr->cfg.shards + shard];
    if (t)
      cvg_digest_sub(d, t->contrib[i]);
    if (t || cls != CVG_CLASS_NONE)
      cvg_digest_add(d, contribution(key, key_len, &ks->copies[i]));
  }
}

/* Starts (or continues a restored) episode with this key. */
static void episode_begin(cvg_tracker *tr, const cvg_trk_check *chk, const unsigned char *key,
                          size_t key_len, cvg_class cls) {
  if (tr->ep.restored && !tr->swept) {
    /* the episode in progress when converge stopped: continue it (same id, same clock) */
    tr->ep.active = 1;
    tr->ep.restored = 0;
    tr->continued = 1;
    emit(tr, CVG_TRK_EPISODE_CONTINUED, key, key_len, cls, 0);
    return;
  }
  tr->ep.active = 1;
  tr->ep.restored = 0;
  tr->continued = 0;
  snprintf(tr->ep.id, sizeof tr->ep.id, "trc-%016" PRIx64,
           XXH3_64bits_withSeed(key, key_len, (uint64_t)(chk->now * 1e6)));
  snprintf(tr->ep.first_probe, sizeof tr->ep.first_probe, "%s", chk->probe ? chk->probe : "probe");
  tr->ep.suspected_at = chk->now;
  tr->ep.lag_suspected = chk->lag;
  tr->ep.confirmed_at = 0;
  tr->ep.lag_confirmed = 0;
  emit(tr, CVG_TRK_EPISODE_START, key, key_len, cls, 0);
}

/* A new entry for key from this check and the old entry t (or NULL); NULL out of memory. */
static cvg_tracked *build(const cvg_tracker *tr, const cvg_tracked *t, const unsigned char *key,
                          size_t key_len, uint64_t h, uint32_t shard, cvg_class cls,
                          const cvg_keystate *ks) {
  size_t n = tr->cfg.n_replicas, vlen = 0;
  for (size_t i = 0; i < n; i++)
    vlen += ks->known[i] ? ks->copies[i].version_len : (t ? t->ver_off[i + 1] - t->ver_off[i] : 0);
  size_t size =
      sizeof(cvg_tracked) + n * sizeof(cvg_fp) + (n + 1) * sizeof(uint32_t) + n + key_len + vlen;
  cvg_tracked *nt = malloc(size);
  if (!nt)
    return NULL;
  unsigned char *p = (unsigned char *)(nt + 1);
  nt->contrib = (cvg_fp *)p;
  p += n * sizeof(cvg_fp);
  nt->ver_off = (uint32_t *)p;
  p += (n + 1) * sizeof(uint32_t);
  nt->rstates = p;
  p += n;
  nt->key = p;
  memcpy(nt->key, key, key_len);
  nt->key_len = key_len;
  nt->hash = h;
  nt->shard = shard;
  nt->cls = cls;
  nt->swept = t ? t->swept : 0;
  nt->agreeing = agreeing_group(ks, n);
  uint32_t off = (uint32_t)key_len;
  for (size_t i = 0; i < n; i++) {
    nt->ver_off[i] = off - (uint32_t)key_len;
    if (ks->known[i]) {
      const cvg_copy *c = &ks->copies[i];
      nt->contrib[i] = contribution(key, key_len, c);
      nt->rstates[i] = c->state == CVG_LIVE ? 1 : c->state == CVG_TOMBSTONED ? 2 : 0;
      if (c->version_len)
        memcpy(nt->key + off, c->version, c->version_len);
      off += (uint32_t)c->version_len;
    } else if (t) {
      nt->contrib[i] = t->contrib[i];
      nt->rstates[i] = 3;
      size_t l;
      const unsigned char *v = cvg_tracked_version(t, i, &l);
      memcpy(nt->key + off, v, l);
      off += (uint32_t)l;
    } else {
      memset(&nt->contrib[i], 0, sizeof nt->contrib[i]);
      nt->rstates[i] = 3;
    }
  }
  nt->ver_off[n] = off - (uint32_t)key_len;
  return nt;
}

/* Puts nt (a key not tracked yet) in the table; 0 when it was not (full, or out of memory). */
static int insert(cvg_tracker *tr, cvg_tracked *nt, size_t slot) {
  if (tr->n_tracked >= tr->cfg.max_tracked) {
    tr->dropped++;
    return 0;
  }
  if ((tr->n_tracked + 1) * 2 > tr->tab_cap) {
    if (grow(tr) != CVG_OK)
      return 0;
    find_slot(tr, nt->key, nt->key_len, nt->hash, &slot);
  }
  tr->tab[slot] = nt;
  tr->n_tracked++;
  return 1;
}

static int same_copy(const cvg_copy *a, const cvg_copy *b) {
  if (a->state != b->state)
    return 0;
  if (a->state == CVG_ABSENT)
    return 1;
  return cvg_fp_equal(a->fp, b->fp) && a->version_len == b->version_len &&
         (!a->version_len || memcmp(a->version, b->version, a->version_len) == 0);
}

/* Whether the key's divergence is settled (the confirmation rule; see cvg_trk_check.apply):
 * some replica holding a differing copy has had its chance to receive what was written before
 * the key's newest version was first seen. *in_flight gets the differing replicas that have not:
 * their copies may still be on their way. */
static int settled(const cvg_tracker *tr, const cvg_trk_check *chk, const cvg_tracked *nt,
                   const cvg_keystate *ks, uint32_t *in_flight) {
  *in_flight = 0;
  int waited = chk->now - nt->newest_seen > chk->wait;
  if (!chk->apply)
    return waited;
  int any = 0, differs = 0;
  int a = chk->authority;
  int auth_known = a >= 0 && (size_t)a < tr->cfg.n_replicas && ks->known[a];
  for (size_t i = 0; i < tr->cfg.n_replicas; i++) {
    if ((int)i == a || !ks->known[i])
      continue;
    if (auth_known && same_copy(&ks->copies[i], &ks->copies[a]))
      continue; /* this replica agrees with the authority: not the one in flight */
    /* stopped: nothing applied for confirm_within, and the key waited as long (a replica that
     * stopped before the key was first seen must not confirm it on its first recheck) */
    double ap = chk->apply[i];
    int stopped = chk->idle && chk->idle[i] >= chk->confirm_within &&
                  chk->now - nt->first_seen >= chk->confirm_within;
    differs = 1;
    if (isnan(ap) ? waited : ap >= nt->newest_seen + chk->hb_interval || stopped)
      any = 1;
    else
      *in_flight |= (uint32_t)1 << i;
  }
  return any || !differs;
}

void cvg_tracker_record(cvg_tracker *tr, const cvg_trk_check *chk, const unsigned char *key,
                        size_t key_len, cvg_class cls, const cvg_keystate *ks) {
  uint64_t h = XXH3_64bits(key, key_len);
  size_t slot = 0;
  cvg_tracked *t = find_slot(tr, key, key_len, h, &slot);
  uint32_t shard = cvg_shard_of(key, key_len, tr->cfg.shards);
  if (chk->update_digests)
    update_digests(tr, t, key, key_len, shard, cls, ks);
  if (cls == CVG_CLASS_NONE) {
    if (t)
      resolve_slot(tr, slot);
    return;
  }
  if (!tr->ep.active)
    episode_begin(tr, chk, key, key_len, cls);
  cvg_tracked *nt = build(tr, t, key, key_len, h, shard, cls, ks);
  if (!nt)
    return; /* out of memory: the key stays as it was; the next check retries */
  nt->first_seen = t ? t->first_seen : chk->now;
  int afresh = t && !t->confirmed && tr->cfg.versioned && cls == CVG_CLASS_STALE &&
               progressed(t, ks, tr->cfg.n_replicas);
  if (afresh)
    nt->first_seen = chk->now;
  /* Keys found before the first sweep after a restart belong to the episode that was in progress
   * when converge stopped (if one is continued): their divergence began no later than it did. A
   * fresh episode backdates nothing - a key first seen now may be a row in flight now. */
  if (!t && !tr->swept && tr->continued && tr->ep.active && tr->ep.suspected_at < chk->now)
    nt->first_seen = tr->ep.suspected_at;
  /* the wait runs from the newest write seen: one made after first_seen may still be on its way
   * (a hot key rewritten while a replica lags must not be confirmed on its older write) */
  nt->newest_seen = t && !afresh ? t->newest_seen : nt->first_seen;
  int rewritten = t && !afresh && tr->cfg.versioned && newer_write(t, ks, tr->cfg.n_replicas);
  if (rewritten)
    nt->newest_seen = chk->now;
  nt->confirmed = t ? t->confirmed : 0;
  nt->confirmed_at = t ? t->confirmed_at : 0;
  nt->last_checked = chk->now;
  if (chk->sweep)
    nt->swept = 1;
  /* A confirmed key written again is suspected again unless the rule holds for the new write
   * too: what was confirmed (a copy lost) may be mended by the write on its way, and a repair
   * now would race it. */
  int ok = settled(tr, chk, nt, ks, &nt->in_flight);
  int demote = rewritten && nt->confirmed && !ok;
  if (demote) {
    nt->confirmed = 0;
    nt->confirmed_at = 0;
    tr->n_confirmed--;
  }
  int confirm = !nt->confirmed && !demote && t && ok;
  if (confirm) {
    nt->confirmed = 1;
    nt->confirmed_at = chk->now;
    tr->confirmations++;
    tr->n_confirmed++;
    if (cls == CVG_CLASS_CONFLICT)
      hot_add(tr, key, key_len, shard);
  }
  if (t) {
    free(t);
    tr->tab[slot] = nt;
  } else if (!insert(tr, nt, slot)) {
    free(nt);
    return;
  }
  if (!t || afresh || demote)
    emit(tr, CVG_TRK_KEY_SUSPECTED, key, key_len, cls, 0);
  if (confirm) {
    emit(tr, CVG_TRK_KEY_CONFIRMED, key, key_len, cls, 0);
    if (tr->ep.active && tr->ep.confirmed_at == 0) {
      tr->ep.confirmed_at = chk->now;
      tr->ep.lag_confirmed = chk->lag;
      emit(tr, CVG_TRK_EPISODE_CONFIRMED, key, key_len, cls, 0);
    }
  }
}

void cvg_tracker_sweep_end(cvg_tracker *tr, int completed, const unsigned char *down) {
  if (completed) {
    for (size_t i = 0; i < tr->tab_cap;) {
      cvg_tracked *t = tr->tab[i];
      int resolve = t && !t->swept;
      for (size_t r = 0; resolve && r < tr->cfg.n_replicas; r++)
        if (t->rstates[r] != 3 && down && down[r])
          resolve = 0; /* a copy it held cannot be read now */
      if (resolve) {
        resolve_slot(tr, i);
        continue; /* slot i now holds a shifted entry (or NULL) */
      }
      i++;
    }
    tr->swept = 1;
    if (tr->ep.restored) /* the sweep found nothing of the restored episode: it is over */
      tr->ep.active = tr->ep.restored = 0;
  }
  for (size_t i = 0; i < tr->tab_cap; i++)
    if (tr->tab[i])
      tr->tab[i]->swept = 0;
}

/* ---- digests, hotspots, episode ---- */

const cvg_fp *cvg_tracker_digest(const cvg_tracker *tr, size_t i) {
  return i < tr->cfg.n_replicas && tr->digest_ok[i] ? tr->digest + i * tr->cfg.shards : NULL;
}

void cvg_tracker_set_digest(cvg_tracker *tr, size_t i, const cvg_fp *digest) {
  if (i >= tr->cfg.n_replicas)
    return;
  tr->digest_ok[i] = digest != NULL;
  if (digest)
    memcpy(tr->digest + i * tr->cfg.shards, digest, tr->cfg.shards * sizeof *digest);
}

int cvg_tracker_shard_differs(const cvg_tracker *tr, uint32_t sh, const unsigned char *up) {
  const cvg_fp *ref = NULL;
  if (sh >= tr->cfg.shards)
    return 0;
  for (size_t i = 0; i < tr->cfg.n_replicas; i++) {
    if (!up[i] || !tr->digest_ok[i])
      continue;
    const cvg_fp *d = &tr->digest[i * tr->cfg.shards + sh];
    if (!ref)
      ref = d;
    else if (!cvg_fp_equal(*ref, *d))
      return 1;
  }
  return 0;
}

const cvg_hot *cvg_tracker_hot(const cvg_tracker *tr, size_t *n) {
  *n = tr->n_hot;
  return tr->hot;
}

const uint64_t *cvg_tracker_conflicts(const cvg_tracker *tr) {
  return tr->conflicts;
}

const cvg_trk_episode *cvg_tracker_episode(const cvg_tracker *tr) {
  return &tr->ep;
}

void cvg_tracker_restore_episode(cvg_tracker *tr, const cvg_trk_episode *ep) {
  tr->ep = *ep;
  tr->ep.active = 0;
  tr->ep.restored = 1;
}

double cvg_tracker_confirm_wait(const double *lag, const int *up, size_t n, int authority,
                                double heartbeat_interval, double confirm_within) {
  double worst = 0;
  if (authority < 0 || heartbeat_interval <= 0)
    return confirm_within;
  for (size_t i = 0; i < n; i++) {
    if ((int)i == authority || up[i] == 0)
      continue;
    if (isnan(lag[i]))
      return confirm_within;
    if (lag[i] > worst)
      worst = lag[i];
  }
  worst += 2 * heartbeat_interval;
  return worst < confirm_within ? worst : confirm_within;
}
