/* SPDX-License-Identifier: MIT */
/*
 * The replica generator (see gen.h). Every value is a hash of (seed, row, field), so rows can be
 * produced in any order and on several threads without sharing a random stream: one thread per
 * replica writes its file, all of them walking the same sorted list of injected divergences.
 */
#include "converge/gen.h"
#include "converge/fixture.h"
#include "converge/json.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { K_MISSING, K_EXTRA, K_STALE, K_CONFLICT, K_TOMBSTONE };
static const char *const kind_names[] = {"missing", "extra", "stale", "conflict", "tombstone"};
static const char *const kind_class[] = {"missing", "missing", "stale", "conflict", "tombstone"};

typedef struct inject {
  uint64_t idx;   /* row index; extras use rows + j */
  uint8_t kind;   /* K_* */
  uint8_t victim; /* replica index */
} inject;

typedef struct gen_job {
  const cvg_gen_options *opt;
  const inject *inj; /* sorted by idx */
  size_t n_inj;
  unsigned replica;
  char path[4096];
  int started; /* the writer thread was created */
  int rc;
  cvg_error err;
} gen_job;

static uint64_t mix(uint64_t x) { /* splitmix64 finaliser */
  x += UINT64_C(0x9E3779B97F4A7C15);
  x = (x ^ (x >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  x = (x ^ (x >> 27)) * UINT64_C(0x94D049BB133111EB);
  return x ^ (x >> 31);
}

static uint64_t h(uint64_t seed, uint64_t idx, uint64_t field) {
  return mix(seed ^ mix(idx * 31 + field));
}

static const char *const regions[] = {"ap-south", "eu-west", "sa-east", "us-east", "us-west"};
static const char *const words[] = {
    "plain",      "caf\303\251",  "\303\274ber",  "\346\227\245\346\234\254",
    "\303\270re", "\316\251mega", "na\303\257ve", "Zeta"};
static const char *const names[] = {"alice", "bob",   "carol", "dave", "erin",    "frank",
                                    "grace", "heidi", "ivan",  "judy", "mallory", "niaj"};
static const char *const currencies[] = {"EUR", "USD", "JPY", "BRL"};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

typedef struct row {
  cvg_value v[10]; /* values in schema order */
  size_t n;
  char key_text[96]; /* storage for text keys */
  char vclock[64];   /* storage for the version vector */
} row;

static size_t key_cols(cvg_gen_key k) {
  return k == CVG_GEN_KEY_COMPOSITE ? 2 : 1;
}

static void set_text(cvg_value *v, const char *s) {
  v->type = CVG_TEXT;
  v->u.s.p = (const unsigned char *)s;
  v->u.s.n = strlen(s);
}

static void set_int(cvg_value *v, int64_t i) {
  v->type = CVG_INTEGER;
  v->u.i = i;
}

/* Builds row idx as replica r holds it, given the injection at idx (or NULL). */
static void make_row(const cvg_gen_options *o, uint64_t idx, const inject *in, unsigned r, row *w) {
  uint64_t s = o->seed;
  size_t k = 0;
  switch (o->key) {
  case CVG_GEN_KEY_INT:
    set_int(&w->v[k++], (int64_t)idx + 1);
    break;
  case CVG_GEN_KEY_COMPOSITE:
    set_text(&w->v[k++], regions[h(s, idx, 1) % N_OF(regions)]);
    set_int(&w->v[k++], (int64_t)idx + 1);
    break;
  case CVG_GEN_KEY_TEXT:
    snprintf(w->key_text, sizeof w->key_text, "acct-%s-%llu", words[h(s, idx, 1) % N_OF(words)],
             (unsigned long long)idx);
    set_text(&w->v[k++], w->key_text);
    break;
  }
  uint64_t null_cut = (uint64_t)(o->nulls * 10000.0);
  int owner_null = h(s, idx, 2) % 10000 < null_cut;
  int cur_null = h(s, idx, 3) % 10000 < null_cut;
  int64_t balance = (int64_t)(h(s, idx, 4) % 10000000);
  double score = (double)(h(s, idx, 5) % 100000) / 100.0;
  int64_t updated = 1700000000 + (int64_t)idx + (int64_t)(h(s, idx, 6) % 1000);
  int64_t deleted = 0;
  int64_t eu = 2 + (int64_t)(h(s, idx, 7) % 50), us = 2 + (int64_t)(h(s, idx, 8) % 50);
  const char *owner = owner_null ? NULL : names[h(s, idx, 9) % N_OF(names)];

  if (in && in->victim == r) {
    uint64_t x = h(s, idx, 10);
    switch (in->kind) {
    case K_STALE:
      updated -= 1 + (int64_t)(x % 1000);
      balance += 1 + (int64_t)(x % 100);
      eu -= 1;
      break;
    case K_CONFLICT:
      if (o->vvec) {
        eu += 1;
        us -= 1;
        updated += 5;
        balance += 1 + (int64_t)(x % 100);
      } else if (o->nulls > 0 && (x & 1)) {
        owner = owner ? NULL : "mallory"; /* a NULL on one side only */
      } else {
        balance += 1 + (int64_t)(x % 100);
      }
      break;
    case K_TOMBSTONE:
      deleted = 1;
      updated += 1;
      eu += 1;
      break;
    default:
      break;
    }
  }
  if (owner)
    set_text(&w->v[k++], owner);
  else
    w->v[k++].type = CVG_NULL;
  set_int(&w->v[k++], balance);
  if (cur_null)
    w->v[k++].type = CVG_NULL;
  else
    set_text(&w->v[k++], currencies[h(s, idx, 11) % N_OF(currencies)]);
  w->v[k].type = CVG_REAL;
  w->v[k++].u.r = score;
  set_int(&w->v[k++], updated);
  set_int(&w->v[k++], deleted);
  if (o->vvec) {
    snprintf(w->vclock, sizeof w->vclock, "{\"eu\":%lld,\"us\":%lld}", (long long)eu,
             (long long)us);
    set_text(&w->v[k++], w->vclock);
  }
  w->n = k;
}

static int build_schema(const cvg_gen_options *o, cvg_table_desc *t, cvg_column *cols) {
  static const char *const tail_names[] = {"owner",      "balance", "currency", "score",
                                           "updated_at", "deleted", "vclock"};
  static const char *const tail_types[] = {"TEXT",    "INTEGER", "TEXT", "REAL",
                                           "INTEGER", "INTEGER", "TEXT"};
  size_t n = 0;
  memset(t, 0, sizeof *t);
  memset(cols, 0, 10 * sizeof *cols);
  switch (o->key) {
  case CVG_GEN_KEY_INT:
    cols[n++] = (cvg_column){"id", "INTEGER", CVG_AFF_INTEGER, 1, 1};
    break;
  case CVG_GEN_KEY_COMPOSITE:
    cols[n++] = (cvg_column){"region", "TEXT", CVG_AFF_TEXT, 1, 1};
    cols[n++] = (cvg_column){"id", "INTEGER", CVG_AFF_INTEGER, 2, 1};
    t->without_rowid = 1;
    break;
  case CVG_GEN_KEY_TEXT:
    cols[n++] = (cvg_column){"code", "TEXT", CVG_AFF_TEXT, 1, 1};
    break;
  }
  t->n_pk = n;
  for (size_t i = 0; i < N_OF(tail_names) - (o->vvec ? 0 : 1); i++)
    cols[n++] = (cvg_column){(char *)tail_names[i], (char *)tail_types[i], CVG_AFF_BLOB, 0, 1};
  t->table = (char *)(o->table ? o->table : "accounts");
  t->cols = cols;
  t->n_cols = n;
  return CVG_OK;
}

static void *write_replica(void *arg) {
  gen_job *j = arg;
  const cvg_gen_options *o = j->opt;
  cvg_table_desc t;
  cvg_column cols[10];
  build_schema(o, &t, cols);
  cvg_fixture *fx = NULL;
  j->rc = cvg_fixture_create(&fx, j->path, &t, &j->err);
  if (j->rc)
    return NULL;
  row w;
  size_t p = 0;
  uint64_t total = o->rows + o->n_extra;
  for (uint64_t idx = 0; idx < total; idx++) {
    const inject *in = NULL;
    while (p < j->n_inj && j->inj[p].idx < idx)
      p++;
    if (p < j->n_inj && j->inj[p].idx == idx)
      in = &j->inj[p];
    if (idx >= o->rows && !(in && in->kind == K_EXTRA && in->victim == j->replica))
      continue; /* an extra row lives on its victim only */
    if (in && in->kind == K_MISSING && in->victim == j->replica)
      continue;
    make_row(o, idx, in, j->replica, &w);
    if ((j->rc = cvg_fixture_insert(fx, w.v, w.n, &j->err))) {
      cvg_fixture_abort(fx);
      return NULL;
    }
  }
  j->rc = cvg_fixture_finish(fx, &j->err);
  return NULL;
}

static int cmp_inject(const void *a, const void *b) {
  const inject *x = a, *y = b;
  return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int write_truth(const cvg_gen_options *o, const inject *inj, size_t n, cvg_error *err) {
  char path[4096], tmp[4200];
  snprintf(path, sizeof path, "%s/truth.jsonl", o->dir);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (!f)
    return cvg_error_set(err, CVG_EIO, path, "cannot write the ground truth file");
  const char *kc[2];
  size_t nk = key_cols(o->key);
  if (o->key == CVG_GEN_KEY_INT)
    kc[0] = "id";
  else if (o->key == CVG_GEN_KEY_TEXT)
    kc[0] = "code";
  else {
    kc[0] = "region";
    kc[1] = "id";
  }
  cvg_buf key;
  cvg_buf_init(&key, 1u << 16);
  int rc = CVG_OK;
  for (size_t i = 0; i < n && !rc; i++) {
    row w;
    make_row(o, inj[i].idx, NULL, 0, &w);
    cvg_buf_reset(&key);
    for (size_t c = 0; c < nk && !rc; c++)
      rc = cvg_encode_value(&key, &w.v[c]);
    json_t *jk = rc ? NULL : cvg_key_to_json(key.data, key.len, kc, nk);
    json_t *obj =
        jk ? json_pack("{s:o,s:s,s:s,s:i}", "key", jk, "class", kind_class[inj[i].kind], "injected",
                       kind_names[inj[i].kind], "replica", (int)inj[i].victim + 1)
           : NULL;
    if (!obj || json_dumpf(obj, f, JSON_COMPACT | JSON_ENSURE_ASCII) != 0 || fputc('\n', f) == EOF)
      rc = CVG_EIO;
    json_decref(obj);
  }
  cvg_buf_release(&key);
  if (fclose(f) != 0)
    rc = CVG_EIO;
  if (rc || rename(tmp, path) != 0) {
    unlink(tmp);
    return cvg_error_set(err, CVG_EIO, path, "cannot write the ground truth file");
  }
  return CVG_OK;
}

int cvg_gen(const cvg_gen_options *o, cvg_error *err) {
  if (o->replicas < 2 || o->replicas > 32)
    return cvg_error_set(err, CVG_EINVAL, "", "--replicas must be 2..32, got %u", o->replicas);
  if (o->rows < 1)
    return cvg_error_set(err, CVG_EINVAL, "", "--rows must be at least 1");
  if (o->nulls < 0 || o->nulls > 1)
    return cvg_error_set(err, CVG_EINVAL, "", "--nulls is a fraction from 0 to 1");
  uint64_t k_in = o->n_missing + o->n_stale + o->n_conflict + o->n_tombstone;
  if (k_in > o->rows)
    return cvg_error_set(err, CVG_EINVAL, "",
                         "%llu divergences were asked of %llu rows; at most one per row",
                         (unsigned long long)k_in, (unsigned long long)o->rows);
  size_t n_inj = (size_t)(k_in + o->n_extra);
  inject *inj = calloc(n_inj ? n_inj : 1, sizeof *inj);
  unsigned char *taken = calloc((size_t)(o->rows / 8 + 1), 1);
  gen_job *jobs = calloc(o->replicas, sizeof *jobs);
  pthread_t *th = calloc(o->replicas, sizeof *th);
  int rc = CVG_OK;
  if (!inj || !taken || !jobs || !th) {
    rc = cvg_error_set(err, CVG_ENOMEM, "", "out of memory");
    goto done;
  }
  /* Choose distinct rows by rejection; each kind gets its count, each a seeded victim. */
  const uint64_t counts[] = {o->n_missing, o->n_extra, o->n_stale, o->n_conflict, o->n_tombstone};
  size_t m = 0;
  uint64_t draw = 0;
  for (int kind = 0; kind < 5; kind++) {
    for (uint64_t c = 0; c < counts[kind]; c++) {
      inject *in = &inj[m++];
      in->kind = (uint8_t)kind;
      in->victim = (uint8_t)(h(o->seed, c, 1000 + (uint64_t)kind) % o->replicas);
      if (kind == K_EXTRA) {
        in->idx = o->rows + c;
        continue;
      }
      uint64_t idx;
      do
        idx = h(o->seed, draw++, 999) % o->rows;
      while (taken[idx / 8] & (1u << (idx % 8)));
      taken[idx / 8] |= (unsigned char)(1u << (idx % 8));
      in->idx = idx;
    }
  }
  qsort(inj, n_inj, sizeof *inj, cmp_inject);
  for (unsigned r = 0; r < o->replicas; r++) {
    gen_job *j = &jobs[r];
    j->opt = o;
    j->inj = inj;
    j->n_inj = n_inj;
    j->replica = r;
    snprintf(j->path, sizeof j->path, "%s/replica-%u.db", o->dir, r + 1);
    if (pthread_create(&th[r], NULL, write_replica, j) != 0)
      j->rc = cvg_error_set(&j->err, CVG_ETHREAD, "", "cannot start a writer thread");
    else
      j->started = 1;
  }
  for (unsigned r = 0; r < o->replicas; r++)
    if (jobs[r].started)
      pthread_join(th[r], NULL);
  for (unsigned r = 0; r < o->replicas && !rc; r++)
    if (jobs[r].rc) {
      rc = jobs[r].rc;
      if (err)
        *err = jobs[r].err;
    }
  if (!rc)
    rc = write_truth(o, inj, n_inj, err);
done:
  free(inj);
  free(taken);
  free(jobs);
  free(th);
  return rc;
}
