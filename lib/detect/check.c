/* SPDX-License-Identifier: MIT */
/*
 * The incremental check (converge/check.h): the rows past each replica's watermark, merged with
 * the tracked keys, looked up where missing, classified and recorded in the tracker. Detection
 * only: the caller (lib/watch/jobs.c) holds the tracker's lock around cvg_check_gather and
 * cvg_check_record, opens and closes the connections, and logs.
 *
 * Memory: the changed keys live in a change set (open addressing on the key's XXH3) whose keys and
 * versions sit in a bump arena, freed at once; each replica's read packs its rows into its own
 * arena, sorted by key, so that the common case - every replica yielded the same rows - is a
 * k-way merge with no hashing at all.
 */
#include "converge/check.h"
#include "converge/diff.h"
#include "converge/encode.h"
#include "converge/store.h"
#include "converge/tracker.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* A bump allocator for the keys and versions of one check: chunks never move, so pointers into
 * them stay valid, and everything is freed at once. */
typedef struct chunk {
  struct chunk *next;
  size_t used, cap;
  unsigned char data[];
} chunk;

static void *arena_alloc(chunk **head, size_t n) {
  if (!*head || (*head)->cap - (*head)->used < n) {
    size_t cap = n > 65536 ? n : 65536;
    chunk *c = malloc(sizeof *c + cap);
    if (!c)
      return NULL;
    c->next = *head;
    c->used = 0;
    c->cap = cap;
    *head = c;
  }
  void *p = (*head)->data + (*head)->used;
  (*head)->used += n;
  return p;
}

static void arena_free(chunk **head) {
  while (*head) {
    chunk *next = (*head)->next;
    free(*head);
    *head = next;
  }
}

/* Keys an incremental check compares, with what each replica said of them. */
typedef struct change {
  const unsigned char *key; /* in the arena */
  size_t key_len;
  uint64_t hash;
  uint32_t have; /* bit i: replica i's copy is known (scanned or looked up) */
} change;

typedef struct changeset {
  change *items;
  cvg_copy *copies; /* n_rep per item: item k's copy on replica i is copies[k * n_rep + i] */
  size_t n_rep;
  size_t n, cap;
  size_t *slots; /* open addressing: index+1 into items, 0 empty */
  size_t slot_cap;
  chunk *arena; /* keys and versions */
} changeset;

static void cs_free(changeset *cs) {
  free(cs->items);
  free(cs->copies);
  free(cs->slots);
  arena_free(&cs->arena);
  memset(cs, 0, sizeof *cs);
}

static cvg_copy *cs_copy(changeset *cs, size_t k, size_t i) {
  return &cs->copies[k * cs->n_rep + i];
}

/* Makes room for n more keys without growing while they are added. */
static int cs_reserve(changeset *cs, size_t n) {
  size_t want = cs->n + n;
  if (want > cs->cap) {
    size_t cap = cs->cap ? cs->cap * 2 : 1024;
    if (cap < want)
      cap = want;
    change *items = realloc(cs->items, cap * sizeof *items);
    if (!items)
      return CVG_ENOMEM;
    cs->items = items;
    cvg_copy *copies = realloc(cs->copies, cap * cs->n_rep * sizeof *copies);
    if (!copies)
      return CVG_ENOMEM;
    cs->copies = copies;
    cs->cap = cap;
  }
  size_t slots = cs->slot_cap ? cs->slot_cap : 4096;
  while (slots < 2 * (want + 1))
    slots *= 2;
  if (slots > cs->slot_cap) {
    size_t *s = calloc(slots, sizeof *s);
    if (!s)
      return CVG_ENOMEM;
    for (size_t i = 0; i < cs->n; i++) {
      size_t k = (size_t)cs->items[i].hash & (slots - 1);
      while (s[k])
        k = (k + 1) & (slots - 1);
      s[k] = i + 1;
    }
    free(cs->slots);
    cs->slots = s;
    cs->slot_cap = slots;
  }
  return CVG_OK;
}

/* The index of key in the set, added if new; SIZE_MAX when out of memory. */
static size_t cs_get(changeset *cs, const unsigned char *key, size_t key_len) {
  uint64_t h = XXH3_64bits(key, key_len);
  if (cs_reserve(cs, 1) != CVG_OK) /* room for one more key: a no-op unless full */
    return SIZE_MAX;
  size_t s = (size_t)h & (cs->slot_cap - 1);
  for (; cs->slots[s]; s = (s + 1) & (cs->slot_cap - 1)) {
    change *c = &cs->items[cs->slots[s] - 1];
    if (c->hash == h && c->key_len == key_len && memcmp(c->key, key, key_len) == 0)
      return cs->slots[s] - 1;
  }
  change *c = &cs->items[cs->n];
  unsigned char *k = arena_alloc(&cs->arena, key_len ? key_len : 1);
  if (!k)
    return SIZE_MAX;
  memcpy(k, key, key_len);
  c->key = k;
  c->key_len = key_len;
  c->hash = h;
  c->have = 0;
  memset(cs_copy(cs, cs->n, 0), 0, cs->n_rep * sizeof(cvg_copy));
  cs->slots[s] = ++cs->n;
  return cs->n - 1;
}

/* Keeps replica i's copy of item k: the row, or absent when !found. */
static int cs_set(changeset *cs, size_t k, size_t i, const cvg_scan_row *row, int found) {
  cvg_copy *cp = cs_copy(cs, k, i);
  memset(cp, 0, sizeof *cp);
  cs->items[k].have |= 1u << i;
  if (!found)
    return CVG_OK;
  cp->state = row->tombstone ? CVG_TOMBSTONED : CVG_LIVE;
  cp->fp = row->fp;
  cp->version_len = row->version_len;
  if (row->version_len) {
    unsigned char *v = arena_alloc(&cs->arena, row->version_len);
    if (!v)
      return CVG_ENOMEM;
    memcpy(v, row->version, row->version_len);
    cp->version = v;
  }
  return CVG_OK;
}

/* One replica's incremental read, run on its own thread (its connection is used by no one
 * else meanwhile). Rows are packed into an arena: since_rec, key bytes, version bytes. */
typedef struct since_rec {
  cvg_fp fp;
  uint32_t key_len, ver_len;
  int tomb;
} since_rec;

typedef struct since_read {
  cvg_store *st;         /* BORROWED: the job's connection to the replica */
  cvg_scan_spec spec;    /* with since = wm */
  unsigned char wm[256]; /* the watermark read from */
  size_t wm_len;
  unsigned char new_wm[256]; /* the greatest version read */
  size_t new_wm_len;
  cvg_buf rows; /* the arena */
  uint64_t n_rows;
  const unsigned char **recs; /* OWNED; the n_rows records in the arena, in key order */
  int sorted;                 /* recs is set: ascending keys, no key twice */
  int rc;                     /* status of the read */
  cvg_error err;              /* its detail */
  int active;                 /* the replica was read */
  int started;                /* a thread was started */
  pthread_t thread;
} since_read;

static int rec_cmp(const void *a, const void *b) {
  const unsigned char *x = *(const unsigned char *const *)a, *y = *(const unsigned char *const *)b;
  since_rec hx, hy;
  memcpy(&hx, x, sizeof hx);
  memcpy(&hy, y, sizeof hy);
  return cvg_key_compare(x + sizeof hx, hx.key_len, y + sizeof hy, hy.key_len);
}

/* Points sr->recs at the records read, in key order (the fast path yields them so; any other
 * order is sorted here, on the reader's thread). A key read twice leaves sr->sorted 0: the
 * caller then folds by hashing instead of merging. */
static void since_index(since_read *sr) {
  size_t n = (size_t)sr->n_rows;
  if (!n) {
    sr->sorted = 1; /* nothing read: nothing out of order */
    return;
  }
  if (!(sr->recs = malloc(n * sizeof *sr->recs)))
    return;
  const unsigned char *p = sr->rows.data;
  int in_order = 1;
  for (size_t i = 0; i < n; i++) {
    since_rec h;
    memcpy(&h, p, sizeof h);
    sr->recs[i] = p;
    if (i && in_order && rec_cmp(&sr->recs[i - 1], &sr->recs[i]) >= 0)
      in_order = 0;
    p += sizeof h + h.key_len + h.ver_len;
  }
  if (!in_order) {
    qsort(sr->recs, n, sizeof *sr->recs, rec_cmp);
    for (size_t i = 1; i < n; i++)
      if (rec_cmp(&sr->recs[i - 1], &sr->recs[i]) == 0)
        return; /* a key twice: not sorted */
  }
  sr->sorted = 1;
}

static void *since_main(void *arg) {
  since_read *sr = arg;
  cvg_scan *sc = NULL;
  int rc = cvg_scan_open(sr->st, &sr->spec, &sc, &sr->err);
  cvg_scan_row row;
  while (!rc && (rc = cvg_scan_next(sc, &row, &sr->err)) == CVG_OK) {
    since_rec h = {row.fp, (uint32_t)row.key_len, (uint32_t)row.version_len, row.tombstone};
    if (sr->n_rows >= CVG_CHECK_MAX_CHANGED) /* the caller stops there too */
      break;
    if (cvg_buf_append(&sr->rows, &h, sizeof h) ||
        cvg_buf_append(&sr->rows, row.key, row.key_len) ||
        (row.version_len && cvg_buf_append(&sr->rows, row.version, row.version_len))) {
      rc = cvg_error_set(&sr->err, CVG_ENOMEM, cvg_store_url(sr->st), "out of memory");
      break;
    }
    sr->n_rows++;
    if (row.version_len && row.version_len <= sizeof sr->new_wm &&
        cvg_key_compare(row.version, row.version_len, sr->new_wm, sr->new_wm_len) > 0) {
      memcpy(sr->new_wm, row.version, row.version_len);
      sr->new_wm_len = row.version_len;
    }
  }
  if (rc == CVG_DONE)
    rc = CVG_OK;
  cvg_scan_close(sc);
  if (!rc && sr->n_rows < CVG_CHECK_MAX_CHANGED)
    since_index(sr);
  sr->rc = rc;
  return NULL;
}

struct cvg_check {
  cvg_scan_spec spec; /* the columns read (since: per replica) */
  int versioned;      /* the table has a version column */
  const char *name;   /* BORROWED; the dataset, in messages */
  changeset cs;
  uint64_t agreed; /* changed keys whose copies agreed everywhere and that were not tracked */
  cvg_check_replica *reps; /* BORROWED; those of cvg_check_read */
  size_t k;
  since_read reads[CVG_DIFF_MAX_REPLICAS];
  int merge; /* every replica's read is sorted: cvg_check_gather merges them */
};

int cvg_check_new(cvg_check **out, const cvg_scan_spec *spec, int versioned, size_t n_rep,
                  const char *name, cvg_error *err) {
  cvg_check *c = calloc(1, sizeof *c);
  if (!c)
    return cvg_error_set(err, CVG_ENOMEM, name, "out of memory");
  c->spec = *spec;
  c->versioned = versioned;
  c->name = name;
  c->cs.n_rep = n_rep;
  *out = c;
  return CVG_OK;
}

static void release_reads(cvg_check *c) {
  for (size_t x = 0; x < CVG_DIFF_MAX_REPLICAS; x++) {
    cvg_buf_release(&c->reads[x].rows);
    free(c->reads[x].recs);
    c->reads[x].recs = NULL;
  }
}

void cvg_check_free(cvg_check *c) {
  if (!c)
    return;
  release_reads(c);
  cs_free(&c->cs);
  free(c);
}

static int too_many(const cvg_check *c, cvg_error *err) {
  return cvg_error_set(err, CVG_ETOOBIG, c->name,
                       "more than %u rows changed since the last check; a full sweep follows",
                       CVG_CHECK_MAX_CHANGED);
}

/* Folds replica x's rows into the change set by hashing (the reads were not all in key order). */
static int fold_read(cvg_check *c, size_t x, cvg_error *err) {
  since_read *sr = &c->reads[x];
  const unsigned char *p = sr->rows.data, *e = p ? p + sr->rows.len : p; /* none read: NULL */
  while (p < e) {
    since_rec h;
    memcpy(&h, p, sizeof h);
    p += sizeof h;
    if (c->cs.n >= CVG_CHECK_MAX_CHANGED)
      return too_many(c, err);
    cvg_scan_row row;
    memset(&row, 0, sizeof row);
    row.key = p;
    row.key_len = h.key_len;
    row.version = p + h.key_len;
    row.version_len = h.ver_len;
    row.fp = h.fp;
    row.tombstone = h.tomb;
    p += h.key_len + h.ver_len;
    size_t k = cs_get(&c->cs, row.key, row.key_len);
    if (k == SIZE_MAX || cs_set(&c->cs, k, c->reps[x].index, &row, 1))
      return cvg_error_set(err, CVG_ENOMEM, c->name, "out of memory");
  }
  return CVG_OK;
}

int cvg_check_read(cvg_check *c, cvg_check_replica *reps, size_t k, int *failed, cvg_error *err) {
  c->reps = reps;
  c->k = k;
  *failed = -1;
  for (size_t x = 0; c->versioned && x < k; x++) {
    since_read *sr = &c->reads[x];
    sr->st = reps[x].st;
    sr->spec = c->spec;
    cvg_buf_init(&sr->rows, (size_t)1 << 31);
    cvg_error_clear(&sr->err);
    sr->wm_len = reps[x].wm_len;
    memcpy(sr->wm, reps[x].wm, sr->wm_len);
    if (!sr->wm_len)
      continue; /* no watermark until a full sweep has read this replica */
    memcpy(sr->new_wm, sr->wm, sr->wm_len);
    sr->new_wm_len = sr->wm_len;
    sr->spec.since = sr->wm;
    sr->spec.since_len = sr->wm_len;
    sr->active = 1;
    sr->started = k > 1 && pthread_create(&sr->thread, NULL, since_main, sr) == 0;
    if (!sr->started)
      since_main(sr);
  }
  c->merge = c->versioned && k >= 2;
  for (size_t x = 0; c->versioned && x < k; x++) {
    since_read *sr = &c->reads[x];
    if (sr->started)
      pthread_join(sr->thread, NULL);
    c->merge = c->merge && sr->active && !sr->rc && sr->sorted;
    reps[x].rows = sr->active ? sr->n_rows : 0;
    memcpy(reps[x].new_wm, sr->new_wm, sr->new_wm_len);
    reps[x].new_wm_len = sr->active ? sr->new_wm_len : 0;
  }
  if (c->merge || !c->versioned)
    return CVG_OK; /* cvg_check_gather merges the sorted reads */
  /* Not every replica read its rows in key order: fold every row by hashing. */
  int rc = CVG_OK;
  for (size_t x = 0; x < k && !rc; x++) {
    since_read *sr = &c->reads[x];
    if (x == 0 && cs_reserve(&c->cs, (size_t)(sr->n_rows < CVG_CHECK_MAX_CHANGED ? sr->n_rows : 0)))
      rc = cvg_error_set(err, CVG_ENOMEM, c->name, "out of memory");
    else if (sr->active && sr->rc) {
      rc = sr->rc;
      if (err)
        *err = sr->err;
      *failed = (int)x;
    } else if (sr->active) {
      rc = fold_read(c, x, err);
    }
  }
  release_reads(c);
  return rc;
}

/* Merges the k sorted reads key by key: a key that every replica yielded with the same copy
 * (cvg_classify: none) and that is not tracked is only counted in c->agreed; every other key goes
 * into the change set with the copies read. */
static int merge_reads(cvg_check *c, const cvg_tracker *tr, cvg_error *err) {
  size_t pos[CVG_DIFF_MAX_REPLICAS] = {0};
  since_read *reads = c->reads;
  size_t k = c->k;
  int rc = CVG_OK;
  while (!rc) {
    since_rec h[CVG_DIFF_MAX_REPLICAS];
    const unsigned char *key[CVG_DIFF_MAX_REPLICAS];
    const unsigned char *mk = NULL;
    size_t mlen = 0;
    for (size_t x = 0; x < k; x++) {
      key[x] = NULL;
      if (pos[x] == reads[x].n_rows)
        continue;
      memcpy(&h[x], reads[x].recs[pos[x]], sizeof h[x]);
      key[x] = reads[x].recs[pos[x]] + sizeof h[x];
      if (!mk || cvg_key_compare(key[x], h[x].key_len, mk, mlen) < 0) {
        mk = key[x];
        mlen = h[x].key_len;
      }
    }
    if (!mk)
      break;
    /* The bulk: every replica holds the same copy (state, fingerprint, version), which
     * cvg_classify would call agreement; only then is the key looked for among the tracked. */
    size_t have = 0;
    int same = 1;
    for (size_t x = 0; x < k; x++) {
      if (!key[x] || h[x].key_len != mlen || memcmp(key[x], mk, mlen) != 0) {
        key[x] = NULL; /* not at this key */
        same = 0;
        continue;
      }
      have++;
      if (x && same)
        same = h[x].tomb == h[0].tomb && cvg_fp_equal(h[x].fp, h[0].fp) &&
               h[x].ver_len == h[0].ver_len &&
               memcmp(key[x] + mlen, key[0] + mlen, h[x].ver_len) == 0;
    }
    if (have == k && same && !cvg_tracker_find(tr, mk, mlen)) {
      c->agreed++;
    } else if (c->cs.n >= CVG_CHECK_MAX_CHANGED) {
      rc = too_many(c, err);
    } else {
      size_t ci = cs_get(&c->cs, mk, mlen);
      for (size_t x = 0; ci != SIZE_MAX && x < k; x++) {
        if (!key[x])
          continue;
        cvg_scan_row row;
        memset(&row, 0, sizeof row);
        row.key = key[x];
        row.key_len = h[x].key_len;
        row.version = key[x] + h[x].key_len;
        row.version_len = h[x].ver_len;
        row.fp = h[x].fp;
        row.tombstone = h[x].tomb;
        if (cs_set(&c->cs, ci, c->reps[x].index, &row, 1))
          ci = SIZE_MAX;
      }
      if (ci == SIZE_MAX)
        rc = cvg_error_set(err, CVG_ENOMEM, c->name, "out of memory");
    }
    for (size_t x = 0; x < k; x++)
      if (key[x])
        pos[x]++;
  }
  return rc;
}

int cvg_check_gather(cvg_check *c, const cvg_tracker *tr, cvg_error *err) {
  int rc = c->merge ? merge_reads(c, tr, err) : CVG_OK;
  release_reads(c);
  size_t cur = 0;
  for (const cvg_tracked *t; !rc && (t = cvg_tracker_next(tr, &cur));)
    if (cs_get(&c->cs, t->key, t->key_len) == SIZE_MAX)
      rc = cvg_error_set(err, CVG_ENOMEM, c->name, "out of memory");
  return rc;
}

int cvg_check_lookup(cvg_check *c, int *failed, cvg_error *err) {
  int rc = CVG_OK;
  *failed = -1;
  for (size_t x = 0; !rc && x < c->k; x++) {
    cvg_store *st = c->reps[x].st;
    size_t i = c->reps[x].index;
    int txn = 0;
    for (size_t ci = 0; !rc && ci < c->cs.n; ci++) {
      change *ch = &c->cs.items[ci];
      if (ch->have & (1u << i))
        continue;
      if (!txn)
        txn = cvg_store_read_txn(st, 1, NULL) == CVG_OK ? 1 : -1; /* -1: key by key */
      cvg_scan_row row;
      int found = 0;
      rc = cvg_store_lookup(st, &c->spec, ch->key, ch->key_len, &row, &found, err);
      if (rc && rc != CVG_ENOMEM)
        *failed = (int)x;
      if (!rc && cs_set(&c->cs, ci, i, &row, found))
        rc = cvg_error_set(err, CVG_ENOMEM, c->name, "out of memory");
    }
    if (txn == 1)
      cvg_store_read_txn(st, 0, NULL);
  }
  return rc;
}

uint64_t cvg_check_record(cvg_check *c, cvg_tracker *tr, const cvg_trk_check *chk) {
  for (size_t ci = 0; ci < c->cs.n; ci++) {
    cvg_copy sub[CVG_DIFF_MAX_REPLICAS];
    for (size_t x = 0; x < c->k; x++)
      sub[x] = *cs_copy(&c->cs, ci, c->reps[x].index);
    int cls = cvg_classify(sub, c->k, c->versioned, 0, NULL);
    if (cls < 0)
      continue;
    const change *ch = &c->cs.items[ci];
    if (cls == CVG_CLASS_NONE && !cvg_tracker_find(tr, ch->key, ch->key_len))
      continue; /* agrees and was not tracked: nothing to record (see "Shard digests") */
    cvg_keystate ks;
    memset(&ks, 0, sizeof ks);
    for (size_t x = 0; x < c->k; x++) {
      ks.copies[c->reps[x].index] = sub[x];
      ks.known[c->reps[x].index] = 1;
    }
    cvg_tracker_record(tr, chk, ch->key, ch->key_len, (cvg_class)cls, &ks);
  }
  return c->cs.n + c->agreed;
}
