/* SPDX-License-Identifier: MIT */
/*
 * The repairer. For one dataset:
 *
 *   1. resume: mutations journaled by an earlier run but without an outcome (the process died
 *      between the journal and the write, or between the write and its outcome) are checked on
 *      their replica and settled: applied if the row is still as the decision saw it, recorded
 *      as applied if the row already is what the decision wanted, skipped otherwise;
 *   2. compare the replicas now (the diff engine), and for each divergent key ask the policy;
 *   3. per batch of keys: journal the decisions and their mutations with before-images (one
 *      durable group), then apply each replica's mutations as conditional writes in one
 *      transaction, then journal every outcome (another durable group).
 *
 * Because every write is conditional on the row the decision saw, a write that arrived meanwhile
 * is never overwritten (it is skipped, and the next comparison looks at it again), a run that is
 * repeated applies nothing twice, and a resumed intent cannot clobber a newer row.
 *
 * Mutation bodies carry what is needed to redo or undo them exactly: the spec of the comparison,
 * the expected state of the row (present, tombstone, version, fingerprint), the state it is
 * written to, the written columns and values (the encoded tuple in hex), and the before-image.
 */
#include "converge/mclock.h"
#include "converge/journal.h"
#include "converge/json.h"
#include "converge/repair.h"
#include "converge/store.h"
#include "jpipe.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_VERSION 256

typedef struct kcopy {
  int state; /* cvg_rstate */
  cvg_fp fp;
  unsigned char ver[MAX_VERSION];
  size_t ver_len;
} kcopy;

/* One replica's copy of a divergent key, as the comparison saw it. */
typedef struct icopy {
  int state; /* cvg_rstate */
  cvg_fp fp;
  const unsigned char *ver; /* into the item's block */
  size_t ver_len;
} icopy;

typedef struct item {
  unsigned char *block; /* OWNED: the copies, then the key, then the versions */
  icopy *c;             /* n_rep copies */
  const unsigned char *key;
  size_t key_len;
  uint32_t shard;
  cvg_class cls;
} item;

typedef struct collect {
  item *items;
  size_t n, cap;
  long shard;
  size_t n_rep;
  int oom;
} collect;

static void say(const cvg_repair_opts *o, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void say(const cvg_repair_opts *o, const char *fmt, ...) {
  if (!o->print)
    return;
  char line[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  o->print(o->print_ctx, line);
}

static int on_divergence(void *ctx, const cvg_divergence *d) {
  collect *c = ctx;
  if (c->shard >= 0 && (long)d->shard != c->shard)
    return 0;
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 256;
    item *g = realloc(c->items, cap * sizeof *g);
    if (!g) {
      c->oom = 1;
      return 1;
    }
    c->items = g;
    c->cap = cap;
  }
  item *it = &c->items[c->n];
  memset(it, 0, sizeof *it);
  size_t total = d->n_copies * sizeof(icopy) + d->key_len;
  for (size_t i = 0; i < d->n_copies; i++)
    total += d->copies[i].version_len;
  if (!(it->block = malloc(total ? total : 1))) {
    c->oom = 1;
    return 1;
  }
  it->c = (icopy *)it->block;
  unsigned char *p = it->block + d->n_copies * sizeof(icopy);
  memcpy(p, d->key, d->key_len);
  it->key = p;
  it->key_len = d->key_len;
  p += d->key_len;
  it->shard = d->shard;
  it->cls = d->cls;
  for (size_t i = 0; i < d->n_copies; i++) {
    const cvg_copy *cp = &d->copies[i];
    it->c[i].state = cp->state;
    it->c[i].fp = cp->fp;
    if (cp->version_len)
      memcpy(p, cp->version, cp->version_len);
    it->c[i].ver = p;
    it->c[i].ver_len = cp->version_len;
    p += cp->version_len;
  }
  c->n++;
  return 0;
}

static void collect_free(collect *c) {
  for (size_t i = 0; i < c->n; i++)
    free(c->items[i].block);
  free(c->items);
}

/* ---- hex and JSON helpers ---- */

static int nibble(char c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int from_hex(const char *s, cvg_buf *out) {
  size_t n = s ? strlen(s) : 0;
  if (n % 2)
    return -1;
  if (cvg_buf_reserve(out, n / 2))
    return -1;
  for (size_t i = 0; i < n; i += 2) {
    int hi = nibble(s[i]), lo = nibble(s[i + 1]);
    if (hi < 0 || lo < 0)
      return -1;
    out->data[out->len++] = (unsigned char)(hi << 4 | lo);
  }
  return 0;
}

static int state_from_json(json_t *j, kcopy *c) {
  memset(c, 0, sizeof *c);
  if (!json_is_object(j))
    return -1;
  int present = json_is_true(json_object_get(j, "present"));
  int tomb = json_is_true(json_object_get(j, "tombstone"));
  c->state = !present ? CVG_ABSENT : tomb ? CVG_TOMBSTONED : CVG_LIVE;
  cvg_buf b;
  cvg_buf_init(&b, MAX_VERSION);
  int rc = from_hex(json_string_value(json_object_get(j, "version")), &b);
  if (!rc) {
    if (b.len)
      memcpy(c->ver, b.data, b.len);
    c->ver_len = b.len;
  }
  cvg_buf_reset(&b);
  if (!rc && !(rc = from_hex(json_string_value(json_object_get(j, "fp")), &b)) &&
      b.len == sizeof c->fp)
    memcpy(&c->fp, b.data, sizeof c->fp);
  cvg_buf_release(&b);
  return rc;
}

/* ---- a small JSON writer for the hot records (decisions, mutations): jansson's object
 * building costs more than everything else of a repair together. Keys are written sorted, as
 * jansson's JSON_SORT_KEYS would. ---- */

static int jw_raw(cvg_buf *b, const char *s) {
  return cvg_buf_append(b, s, strlen(s));
}

static int jw_str(cvg_buf *b, const char *s) {
  int rc = cvg_buf_append(b, "\"", 1);
  for (const unsigned char *c = (const unsigned char *)s; !rc && *c; c++) {
    char esc[8];
    if (*c == '"' || *c == '\\') {
      esc[0] = '\\';
      esc[1] = (char)*c;
      rc = cvg_buf_append(b, esc, 2);
    } else if (*c < 0x20) {
      snprintf(esc, sizeof esc, "\\u%04x", *c);
      rc = cvg_buf_append(b, esc, 6);
    } else {
      rc = cvg_buf_append(b, c, 1);
    }
  }
  return rc || cvg_buf_append(b, "\"", 1);
}

static int jw_hex(cvg_buf *b, const unsigned char *p, size_t n) {
  static const char digits[] = "0123456789abcdef";
  int rc = cvg_buf_reserve(b, 2 * n + 2);
  if (rc)
    return rc;
  b->data[b->len++] = '"';
  for (size_t i = 0; i < n; i++) {
    b->data[b->len++] = (unsigned char)digits[p[i] >> 4];
    b->data[b->len++] = (unsigned char)digits[p[i] & 15];
  }
  b->data[b->len++] = '"';
  return 0;
}

/* {"fp":"..","present":true,"tombstone":false,"version":".."}, as state_json */
static int jw_state(cvg_buf *b, const icopy *c) {
  return jw_raw(b, "{\"fp\":") || jw_hex(b, (const unsigned char *)&c->fp, sizeof c->fp) ||
         jw_raw(b, c->state != CVG_ABSENT ? ",\"present\":true" : ",\"present\":false") ||
         jw_raw(b, c->state == CVG_TOMBSTONED ? ",\"tombstone\":true" : ",\"tombstone\":false") ||
         jw_raw(b, ",\"version\":") || jw_hex(b, c->ver, c->ver_len) || jw_raw(b, "}");
}

static char *dump(json_t *j) {
  char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  json_decref(j);
  return s;
}

/* Time spent on the journal by the current run (cvg_repair_run is not reentrant per thread). */
static _Thread_local double *journal_clock;

/* Appends a record with a JSON body (consumed). */
static int jappend_text(cvg_journal *jn, cvg_jkind kind, const char *dataset,
                        const unsigned char *key, size_t key_len, const char *text, size_t len,
                        int64_t *seq, cvg_error *err);

static int jappend_(cvg_journal *jn, cvg_jkind kind, const char *dataset, const unsigned char *key,
                    size_t key_len, json_t *body, int64_t *seq, cvg_error *err) {
  char *s = dump(body);
  if (!s)
    return cvg_error_set(err, CVG_ENOMEM, "journal", "out of memory");
  int rc = jappend_text(jn, kind, dataset, key, key_len, s, strlen(s), seq, err);
  free(s);
  return rc;
}

/* The record buffer, reused: a cvg_jrecord holds a 4 KiB key. */
static _Thread_local cvg_jrecord *jrec;

static int jappend_text(cvg_journal *jn, cvg_jkind kind, const char *dataset,
                        const unsigned char *key, size_t key_len, const char *text, size_t len,
                        int64_t *seq, cvg_error *err) {
  if (!jrec && !(jrec = malloc(sizeof *jrec)))
    return cvg_error_set(err, CVG_ENOMEM, "journal", "out of memory");
  if (key_len > CVG_JOURNAL_KEY_MAX)
    return cvg_error_set(err, CVG_ETOOBIG, "journal", "key too long for the journal");
  cvg_jrecord *r = jrec;
  r->kind = kind;
  r->at = cvg_wall_now();
  snprintf(r->dataset, sizeof r->dataset, "%s", dataset);
  if (key_len)
    memcpy(r->key, key, key_len);
  r->key_len = key_len;
  r->body = (char *)text;
  r->body_len = len;
  int rc = cvg_journal_append(jn, r, err);
  if (seq)
    *seq = r->seq;
  return rc;
}

static void jrec_release(void) {
  free(jrec);
  jrec = NULL;
}

/* Appends a record whose body was written into b. */
static int jappend_buf(cvg_journal *jn, cvg_jkind kind, const char *dataset,
                       const unsigned char *key, size_t key_len, cvg_buf *b, int64_t *seq,
                       cvg_error *err) {
  double t = journal_clock ? cvg_wall_now() : 0;
  int rc = cvg_buf_append(b, "", 1) ? cvg_error_set(err, CVG_ENOMEM, "journal", "out of memory")
                                    : jappend_text(jn, kind, dataset, key, key_len,
                                                   (const char *)b->data, b->len - 1, seq, err);
  if (journal_clock)
    *journal_clock += cvg_wall_now() - t;
  return rc;
}

static int jappend(cvg_journal *jn, cvg_jkind kind, const char *dataset, const unsigned char *key,
                   size_t key_len, json_t *body, int64_t *seq, cvg_error *err) {
  double t = journal_clock ? cvg_wall_now() : 0;
  int rc = jappend_(jn, kind, dataset, key, key_len, body, seq, err);
  if (journal_clock)
    *journal_clock += cvg_wall_now() - t;
  return rc;
}

static int jcommit(cvg_journal *jn, cvg_error *err) {
  double t = journal_clock ? cvg_wall_now() : 0;
  int rc = cvg_journal_commit(jn, err);
  if (journal_clock)
    *journal_clock += cvg_wall_now() - t;
  return rc;
}

/* A batch's group of decisions and mutations: through the journal's thread when there is one
 * (jpipe.h), else appended here. The journal's clock counts the time the repair waits. A run
 * follows its own groups (chain): when no one else appended between them, everything it
 * journaled is settled at its end (see cvg_journal_settled_get). */
typedef struct jchain {
  int64_t end;     /* the head after the run's last group */
  int interleaved; /* another writer appended between the run's groups */
} jchain;

static int pbegin(cvg_journal *jn, jpipe *jp, jchain *ch, cvg_error *err) {
  int rc = jp ? jpipe_begin(jp, err) : cvg_journal_begin(jn, err);
  if (rc == CVG_OK) {
    int64_t head;
    unsigned char h[32];
    cvg_journal_head(jn, &head, h);
    ch->interleaved |= head != ch->end;
  }
  return rc;
}

static int pappend(cvg_journal *jn, jpipe *jp, cvg_jkind kind, const char *dataset,
                   const unsigned char *key, size_t key_len, cvg_buf *b, int64_t *seq,
                   cvg_error *err) {
  if (!jp)
    return jappend_buf(jn, kind, dataset, key, key_len, b, seq, err);
  double t = journal_clock ? cvg_wall_now() : 0;
  int rc = jpipe_append(jp, kind, dataset, key, key_len, (const char *)b->data, b->len, seq, err);
  if (journal_clock)
    *journal_clock += cvg_wall_now() - t;
  return rc;
}

static int pcommit(cvg_journal *jn, jpipe *jp, jchain *ch, cvg_error *err) {
  double t = journal_clock ? cvg_wall_now() : 0;
  int rc = jp ? jpipe_commit(jp, err) : cvg_journal_commit(jn, err);
  if (journal_clock)
    *journal_clock += cvg_wall_now() - t;
  if (rc == CVG_OK) {
    unsigned char h[32];
    cvg_journal_head(jn, &ch->end, h);
  }
  return rc;
}

static void prollback(cvg_journal *jn, jpipe *jp) {
  if (jp)
    jpipe_rollback(jp);
  else
    cvg_journal_rollback(jn);
}

static const char *result_name(cvg_mut_result r) {
  return r == CVG_MUT_APPLIED ? "applied" : r == CVG_MUT_SKIPPED ? "skipped" : "failed";
}

/* ---- the comparison spec, from the diff or from a journaled decision ---- */

typedef struct spec_store {
  cvg_scan_spec spec;
  const char *key_cols[64], *cmp_cols[2000];
  json_t *owner; /* OWNED; the JSON the names point into */
} spec_store;

static json_t *spec_json(const cvg_scan_spec *s) {
  json_t *k = json_array(), *c = json_array();
  for (size_t i = 0; k && i < s->n_key; i++)
    json_array_append_new(k, json_string(s->key_cols[i]));
  for (size_t i = 0; c && i < s->n_cmp; i++)
    json_array_append_new(c, json_string(s->cmp_cols[i]));
  json_t *o =
      json_pack("{s:o, s:o}", "key", k ? k : json_array(), "compared", c ? c : json_array());
  if (o && s->version_col)
    json_object_set_new(o, "version", json_string(s->version_col));
  if (o && s->tombstone_col)
    json_object_set_new(o, "tombstone", json_string(s->tombstone_col));
  return o;
}

static int spec_from_json(json_t *j, spec_store *ss) {
  memset(ss, 0, sizeof *ss);
  json_t *k = json_object_get(j, "key"), *c = json_object_get(j, "compared");
  if (!json_is_array(k) || !json_is_array(c) || json_array_size(k) == 0 ||
      json_array_size(k) > 64 || json_array_size(c) > 2000)
    return -1;
  for (size_t i = 0; i < json_array_size(k); i++)
    if (!(ss->key_cols[i] = json_string_value(json_array_get(k, i))))
      return -1;
  for (size_t i = 0; i < json_array_size(c); i++)
    if (!(ss->cmp_cols[i] = json_string_value(json_array_get(c, i))))
      return -1;
  ss->owner = json_incref(j); /* only once nothing can fail: a failure leaves nothing to free */
  ss->spec.key_cols = ss->key_cols;
  ss->spec.n_key = json_array_size(k);
  ss->spec.cmp_cols = ss->cmp_cols;
  ss->spec.n_cmp = json_array_size(c);
  ss->spec.version_col = json_string_value(json_object_get(j, "version"));
  ss->spec.tombstone_col = json_string_value(json_object_get(j, "tombstone"));
  return 0;
}

/* ---- replicas ---- */

typedef struct reps {
  const cvg_cat_dataset *d;
  cvg_store *st[CVG_DIFF_MAX_REPLICAS];
} reps;

static int reps_open_flags(reps *r, const cvg_cat_dataset *d, unsigned flags, cvg_error *err) {
  memset(r, 0, sizeof *r);
  r->d = d;
  for (size_t i = 0; i < d->n_replicas && i < CVG_DIFF_MAX_REPLICAS; i++) {
    int rc = cvg_store_open(&r->st[i], d->replicas[i].url, flags, err);
    if (rc) {
      if (err) /* never show the expanded URL: it may hold a password */
        snprintf(err->input, sizeof err->input, "%s", d->replicas[i].url_display);
      return rc;
    }
  }
  return CVG_OK;
}

static int reps_open(reps *r, const cvg_cat_dataset *d, cvg_error *err) {
  return reps_open_flags(r, d, 0, err);
}

static int replica_index(const cvg_cat_dataset *d, const char *name);

/* The catalog's journal, for appending: verified from the head kept in the state file. */
static int journal_open_for_writing(cvg_journal **jn, const cvg_catalog *cat, cvg_journal_mode mode,
                                    cvg_error *err) {
  cvg_journal_opts jo;
  memset(&jo, 0, sizeof jo);
  jo.mode = mode;
  jo.head_path = cat->alerting.state_file;
  jo.key = cat->journal_key;
  jo.key_len = cat->journal_key_len;
  return cvg_journal_open_opts(jn, cat->journal, &jo, err);
}

/* ---- the merge policy: per-column rules over the lww winner's row ---- */

/* Order of two values: NULL first, numbers by value, then text, then blobs (by bytes). */
static int value_cmp(const cvg_value *a, const cvg_value *b) {
  int ra = a->type == CVG_NULL                               ? 0
           : (a->type == CVG_INTEGER || a->type == CVG_REAL) ? 1
           : a->type == CVG_TEXT                             ? 2
                                                             : 3;
  int rb = b->type == CVG_NULL                               ? 0
           : (b->type == CVG_INTEGER || b->type == CVG_REAL) ? 1
           : b->type == CVG_TEXT                             ? 2
                                                             : 3;
  if (ra != rb)
    return ra < rb ? -1 : 1;
  if (ra == 1) {
    double x = a->type == CVG_INTEGER ? (double)a->u.i : a->u.r;
    double y = b->type == CVG_INTEGER ? (double)b->u.i : b->u.r;
    if (a->type == CVG_INTEGER && b->type == CVG_INTEGER)
      return (a->u.i > b->u.i) - (a->u.i < b->u.i);
    return (x > y) - (x < y);
  }
  if (ra >= 2) {
    size_t n = a->u.s.n < b->u.s.n ? a->u.s.n : b->u.s.n;
    int c = memcmp(a->u.s.p, b->u.s.p, n);
    return c ? (c > 0 ? 1 : -1) : (a->u.s.n > b->u.s.n) - (a->u.s.n < b->u.s.n);
  }
  return 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The union of comma-separated sets (trimmed, deduplicated, sorted) into out. */
static int set_union(const cvg_value *const *v, size_t n, cvg_buf *out) {
  char *toks[4096];
  size_t nt = 0;
  cvg_buf all;
  cvg_buf_init(&all, 1u << 24);
  int rc = 0;
  for (size_t i = 0; !rc && i < n; i++)
    if (v[i] && v[i]->type == CVG_TEXT)
      rc = cvg_buf_append(&all, v[i]->u.s.p, v[i]->u.s.n) || cvg_buf_append(&all, ",", 1);
  rc = rc || cvg_buf_append(&all, "", 1);
  for (char *p = rc ? NULL : (char *)all.data, *save = NULL, *t; p || save; p = NULL) {
    t = strtok_r(p, ",", &save);
    if (!t)
      break;
    while (*t == ' ')
      t++;
    size_t l = strlen(t);
    while (l && t[l - 1] == ' ')
      t[--l] = '\0';
    if (l && nt < 4096)
      toks[nt++] = t;
  }
  qsort(toks, nt, sizeof *toks, cmp_str);
  for (size_t i = 0, w = 0; !rc && i < nt; i++) {
    if (i && !strcmp(toks[i], toks[i - 1]))
      continue;
    rc = (w++ ? cvg_buf_append(out, ",", 1) : 0) || cvg_buf_append(out, toks[i], strlen(toks[i]));
  }
  cvg_buf_release(&all);
  return rc;
}

/*
 * The common base of `sum` columns. A counter that two replicas both incremented while apart
 * is merged as base + the sum of each copy's delta from the base, where the base is the value
 * every replica held at the last moment they agreed. converge knows such a moment for certain in
 * one case: its own last merge of the key, when every mutation of that decision was applied and
 * none was reverted since. Such a decision carries "sums" - the values it wrote. Without one (a
 * key never merged before, or a merge that was skipped, failed, rejected or reverted) the data
 * does not allow a sum: the rule falls back (max, or a person's approval with sum:manual).
 *
 * The journal is read from the key's newest decision on (found through the key index), once:
 * a later key whose newest decision is older reads from there again. A key never decided reads
 * nothing, so the cost follows the keys merged, not the journal's history.
 */
typedef struct sdec {
  int64_t seq;
  unsigned char *key; /* OWNED */
  size_t key_len;
  json_t *sums; /* OWNED: the decision's "sums" object, or NULL */
  size_t n_mut, n_applied;
  int bad; /* a mutation not applied, or reverted; or the decision rejected */
} sdec;

typedef struct smut {
  int64_t seq, decision;
} smut;

typedef struct sum_bases {
  int loaded;
  int64_t from; /* the records read are those after from */
  int reloads;
  sdec *d; /* in seq order while loading; by (key, seq descending) after */
  size_t n, cap;
  smut *m; /* in seq order */
  size_t nm, cm;
  int oom;
} sum_bases;

static sdec *sdec_find(sum_bases *b, int64_t seq) {
  size_t lo = 0, hi = b->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (b->d[mid].seq < seq)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < b->n && b->d[lo].seq == seq ? &b->d[lo] : NULL;
}

static sdec *sdec_of_mutation(sum_bases *b, int64_t mseq) {
  size_t lo = 0, hi = b->nm;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (b->m[mid].seq < mseq)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < b->nm && b->m[lo].seq == mseq ? sdec_find(b, b->m[lo].decision) : NULL;
}

static void sum_outcome(sum_bases *b, json_t *o) {
  sdec *sd = sdec_of_mutation(b, json_integer_value(json_object_get(o, "mutation")));
  const char *res = json_string_value(json_object_get(o, "result"));
  if (!sd)
    return;
  if (res && !strcmp(res, "applied"))
    sd->n_applied++;
  else
    sd->bad = 1;
}

static int sum_load_cb(void *ctx, const cvg_jrecord *r) {
  sum_bases *b = ctx;
  json_t *body = json_loadb(r->body, r->body_len, 0, NULL);
  if (!body)
    return 0;
  if (r->kind == CVG_J_DECISION) {
    if (b->n == b->cap) {
      size_t cap = b->cap ? 2 * b->cap : 256;
      sdec *nd = realloc(b->d, cap * sizeof *nd);
      if (!nd) {
        b->oom = 1;
        json_decref(body);
        return 1;
      }
      b->d = nd;
      b->cap = cap;
    }
    sdec *sd = &b->d[b->n];
    memset(sd, 0, sizeof *sd);
    sd->seq = r->seq;
    sd->key_len = r->key_len;
    if (!(sd->key = malloc(r->key_len ? r->key_len : 1))) {
      b->oom = 1;
      json_decref(body);
      return 1;
    }
    memcpy(sd->key, r->key, r->key_len);
    json_t *sums = json_object_get(body, "sums");
    if (json_is_object(sums))
      sd->sums = json_incref(sums);
    b->n++;
  } else if (r->kind == CVG_J_MUTATION) {
    sdec *sd = sdec_find(b, json_integer_value(json_object_get(body, "decision")));
    if (sd) {
      if (b->nm == b->cm) {
        size_t cap = b->cm ? 2 * b->cm : 256;
        smut *nm = realloc(b->m, cap * sizeof *nm);
        if (!nm) {
          b->oom = 1;
          json_decref(body);
          return 1;
        }
        b->m = nm;
        b->cm = cap;
      }
      b->m[b->nm].seq = r->seq;
      b->m[b->nm++].decision = sd->seq;
      sd->n_mut++;
    }
  } else if (r->kind == CVG_J_OUTCOME) {
    json_t *outs = json_object_get(body, "outcomes");
    size_t i;
    json_t *o;
    if (json_is_array(outs)) {
      json_array_foreach(outs, i, o) sum_outcome(b, o);
    } else {
      sum_outcome(b, body);
    }
  } else if (r->kind == CVG_J_REVERT) {
    sdec *sd = sdec_find(b, json_integer_value(json_object_get(body, "decision")));
    if (sd)
      sd->bad = 1;
  } else if (r->kind == CVG_J_APPROVAL) {
    sdec *sd = sdec_find(b, json_integer_value(json_object_get(body, "decision")));
    if (sd && !json_is_true(json_object_get(body, "approved")))
      sd->bad = 1;
  }
  json_decref(body);
  return 0;
}

static int sdec_by_key_newest(const void *a, const void *b) {
  const sdec *x = a, *y = b;
  size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
  int c = memcmp(x->key, y->key, n);
  if (c || x->key_len != y->key_len)
    return c ? c : x->key_len < y->key_len ? -1 : 1;
  return x->seq > y->seq ? -1 : x->seq < y->seq;
}

static void sum_bases_release(sum_bases *b) {
  for (size_t i = 0; i < b->n; i++) {
    free(b->d[i].key);
    json_decref(b->d[i].sums);
  }
  free(b->d);
  free(b->m);
  memset(b, 0, sizeof *b);
}

/* The base of column col for key, or NULL: what the key's newest decision wrote everywhere. */
static json_t *sum_base(sum_bases *b, cvg_journal *jn, const char *dataset, const item *it,
                        const char *col, cvg_error *err, int *rc) {
  *rc = CVG_OK;
  if (!jn)
    return NULL;
  int64_t newest = 0;
  if ((*rc = cvg_journal_newest(jn, dataset, it->key, it->key_len, CVG_J_DECISION, &newest, err)))
    return NULL;
  if (!newest)
    return NULL; /* never decided: no base */
  if (b->loaded && newest <= b->from) {
    /* read again from further back; after a few times, from the start, once */
    int reloads = b->reloads + 1;
    sum_bases_release(b);
    b->reloads = reloads;
    b->from = reloads > 3 ? 0 : newest - 1;
  } else if (!b->loaded)
    b->from = newest - 1;
  if (!b->loaded) {
    b->loaded = 1;
    if ((*rc = cvg_journal_scan(jn, b->from, dataset, NULL, 0, 0, -1, sum_load_cb, b, err)))
      return NULL;
    if (b->oom) {
      *rc = cvg_error_set(err, CVG_ENOMEM, dataset, "out of memory reading the journal");
      return NULL;
    }
    free(b->m); /* the mutations were only needed to settle outcomes */
    b->m = NULL;
    b->nm = b->cm = 0;
    if (b->n)
      qsort(b->d, b->n, sizeof *b->d, sdec_by_key_newest);
  }
  sdec probe = {.seq = INT64_MAX, .key = (unsigned char *)it->key, .key_len = it->key_len};
  size_t lo = 0, hi = b->n; /* the first entry not before (key, newest) */
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (sdec_by_key_newest(&b->d[mid], &probe) < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == b->n || b->d[lo].key_len != it->key_len || memcmp(b->d[lo].key, it->key, it->key_len))
    return NULL;
  const sdec *sd = &b->d[lo];
  if (sd->bad || !sd->sums || sd->n_applied != sd->n_mut)
    return NULL;
  json_t *v = json_object_get(sd->sums, col);
  return json_is_number(v) ? v : NULL;
}

static int numeric(const cvg_value *v, double *out) {
  if (v->type == CVG_INTEGER)
    *out = (double)v->u.i;
  else if (v->type == CVG_REAL)
    *out = v->u.r;
  else
    return 0;
  return 1;
}

/* base + the sum of each live copy's delta from it; 0 if a value or the total is not a number
 * converge can add exactly (an integer overflow, or a NaN). */
static int sum_deltas(const cvg_value *const *vs, size_t n, json_t *base, cvg_value *out) {
  int all_int = json_is_integer(base);
  for (size_t r = 0; r < n; r++) {
    double x;
    if (vs[r] && !numeric(vs[r], &x))
      return 0;
    if (vs[r] && vs[r]->type != CVG_INTEGER)
      all_int = 0;
  }
  if (all_int) {
    int64_t b = (int64_t)json_integer_value(base), total = b;
    for (size_t r = 0; r < n; r++) {
      int64_t delta;
      if (vs[r] && (__builtin_sub_overflow(vs[r]->u.i, b, &delta) ||
                    __builtin_add_overflow(total, delta, &total)))
        return 0;
    }
    out->type = CVG_INTEGER;
    out->u.i = total;
    return 1;
  }
  double b = json_number_value(base), total = b;
  for (size_t r = 0; r < n; r++) {
    double x = 0;
    if (vs[r] && numeric(vs[r], &x))
      total += x - b;
  }
  if (total != total)
    return 0;
  out->type = CVG_REAL;
  out->u.r = total;
  return 1;
}

/*
 * The merged row of a divergent key: the lww winner's row, with each merge rule's column taken
 * over every live copy. out gets its encoded tuple (all columns), mc its state (fingerprint of the
 * compared columns), why what was merged. sums gets the values of `sum` columns as a JSON object
 * (empty when there are none); *manual is set when a sum:manual column had no common base.
 */
static int merge_row(const cvg_cat_dataset *d, reps *rp, const cvg_scan_spec *spec, const item *it,
                     int winner, const char **all, size_t n_all, cvg_buf *out, icopy *mc, char *why,
                     size_t why_size, sum_bases *sb, cvg_journal *jn, cvg_buf *sums, int *manual,
                     cvg_error *err) {
  cvg_buf rows[CVG_DIFF_MAX_REPLICAS], scratch[CVG_DIFF_MAX_REPLICAS], uni, cmp;
  cvg_value *vals[CVG_DIFF_MAX_REPLICAS] = {0};
  cvg_value *m = calloc(n_all ? n_all : 1, sizeof *m);
  size_t *uoff = calloc(n_all ? n_all : 1, sizeof *uoff); /* union columns: offset + 1 in uni */
  int rc = m && uoff ? CVG_OK : cvg_error_set(err, CVG_ENOMEM, d->name, "out of memory");
  cvg_buf_init(&uni, 1u << 24);
  cvg_buf_init(&cmp, 64u << 20);
  for (size_t r = 0; r < d->n_replicas; r++) {
    cvg_buf_init(&rows[r], 64u << 20);
    cvg_buf_init(&scratch[r], 64u << 20);
  }
  for (size_t r = 0; rc == CVG_OK && r < d->n_replicas; r++) {
    if (it->c[r].state != CVG_LIVE)
      continue;
    int found = 0;
    size_t nv = 0;
    if ((rc = cvg_store_fetch(rp->st[r], spec, it->key, it->key_len, all, n_all, &rows[r], &found,
                              err)))
      break;
    if (!found)
      continue; /* deleted meanwhile: the conditional writes will notice */
    if (!(vals[r] = calloc(n_all ? n_all : 1, sizeof *vals[r])))
      rc = cvg_error_set(err, CVG_ENOMEM, d->name, "out of memory");
    else if (cvg_decode_tuple(rows[r].data, rows[r].len, vals[r], n_all, &nv, &scratch[r]) ||
             nv != n_all)
      rc = cvg_error_set(err, CVG_ECORRUPT, d->name, "cannot decode a row to merge");
  }
  if (rc == CVG_OK && !vals[winner])
    rc = cvg_error_set(err, CVG_EINVAL, d->name, "the winning row vanished while merging");
  size_t o = 0;
  why[0] = '\0';
  *manual = 0;
  cvg_buf_reset(sums);
  json_t *sumj = json_object();
  if (!sumj && rc == CVG_OK)
    rc = cvg_error_set(err, CVG_ENOMEM, d->name, "out of memory");
  for (size_t c = 0; rc == CVG_OK && c < n_all; c++)
    m[c] = vals[winner][c];
  for (size_t k = 0; rc == CVG_OK && k < d->n_merge; k++) {
    size_t c = 0;
    while (c < n_all && strcmp(all[c], d->merge_cols[k]) != 0)
      c++;
    if (c == n_all) {
      rc = cvg_error_set(err, CVG_ENOCOLUMN, d->name, "merge column '%s' is not in the table",
                         d->merge_cols[k]);
      break;
    }
    const char *rule = d->merge_rules[k];
    if (!strcmp(rule, "max") || !strcmp(rule, "min")) {
      int want = !strcmp(rule, "max") ? 1 : -1;
      for (size_t r = 0; r < d->n_replicas; r++)
        if (vals[r] && value_cmp(&vals[r][c], &m[c]) * want > 0)
          m[c] = vals[r][c];
    } else if (!strcmp(rule, "union")) {
      const cvg_value *vs[CVG_DIFF_MAX_REPLICAS];
      for (size_t r = 0; r < d->n_replicas; r++)
        vs[r] = vals[r] ? &vals[r][c] : NULL;
      size_t start = uni.len;
      if (set_union(vs, d->n_replicas, &uni)) {
        rc = cvg_error_set(err, CVG_ENOMEM, d->name, "out of memory");
        break;
      }
      m[c].type = CVG_TEXT;
      m[c].u.s.n = uni.len - start;
      uoff[c] = start + 1; /* the bytes are pointed at once uni stops growing */
    } else if (!strncmp(rule, "prefer:", 7)) {
      int ri = replica_index(d, rule + 7);
      if (ri >= 0 && vals[ri])
        m[c] = vals[ri][c];
    } else if (!strncmp(rule, "sum", 3)) {
      const cvg_value *vs[CVG_DIFF_MAX_REPLICAS];
      for (size_t r = 0; r < d->n_replicas; r++)
        vs[r] = vals[r] ? &vals[r][c] : NULL;
      int agree = 1; /* every copy holds the same value: nothing to add up */
      for (size_t r = 0; r < d->n_replicas; r++)
        agree &= !vs[r] || value_cmp(vs[r], &m[c]) == 0;
      json_t *base = agree ? NULL : sum_base(sb, jn, d->name, it, all[c], err, &rc);
      if (rc)
        break;
      char bs[64] = "";
      if (agree) {
        /* m[c] is the value every copy holds */
      } else if (base && sum_deltas(vs, d->n_replicas, base, &m[c])) {
        if (json_is_integer(base))
          snprintf(bs, sizeof bs, "%lld", (long long)json_integer_value(base));
        else
          snprintf(bs, sizeof bs, "%.17g", json_real_value(base));
        o += (size_t)snprintf(why + o, o < why_size ? why_size - o : 0,
                              "%s%s=sum of deltas against the base %s of the last merge",
                              o ? ", " : "", all[c], bs);
      } else {
        for (size_t r = 0; r < d->n_replicas; r++) /* the fallback: max */
          if (vals[r] && value_cmp(&vals[r][c], &m[c]) > 0)
            m[c] = vals[r][c];
        int ask = !strcmp(rule, "sum:manual");
        *manual |= ask;
        o += (size_t)snprintf(why + o, o < why_size ? why_size - o : 0,
                              "%s%s=%s (no common base in the journal: %s)", o ? ", " : "", all[c],
                              rule, ask ? "a person decides; max proposed" : "max");
      }
      json_t *jv = m[c].type == CVG_INTEGER ? json_integer((json_int_t)m[c].u.i)
                   : m[c].type == CVG_REAL  ? json_real(m[c].u.r)
                                            : NULL; /* not a number: no base next time */
      if (jv && json_object_set_new(sumj, all[c], jv))
        rc = cvg_error_set(err, CVG_ENOMEM, d->name, "out of memory");
      continue;
    }
    o += (size_t)snprintf(why + o, o < why_size ? why_size - o : 0, "%s%s=%s", o ? ", " : "",
                          all[c], rule);
  }
  if (rc == CVG_OK && sumj && json_object_size(sumj)) {
    char *t = json_dumps(sumj, JSON_COMPACT | JSON_SORT_KEYS);
    if (!t || cvg_buf_append(sums, t, strlen(t)))
      rc = cvg_error_set(err, CVG_ENOMEM, d->name, "out of memory");
    free(t);
  }
  json_decref(sumj);
  /* uni may have moved while it grew: point the union columns at their bytes now */
  for (size_t c = 0; rc == CVG_OK && c < n_all; c++)
    if (uoff[c])
      m[c].u.s.p = uni.data ? uni.data + uoff[c] - 1 : (const unsigned char *)"";
  for (size_t c = 0; rc == CVG_OK && c < n_all; c++) {
    rc = cvg_encode_value(out, &m[c]);
    if (rc)
      rc = cvg_error_set(err, rc, d->name, "cannot encode the merged row");
  }
  for (size_t i = 0; rc == CVG_OK && i < spec->n_cmp; i++) {
    size_t c = 0;
    while (c < n_all && strcmp(all[c], spec->cmp_cols[i]) != 0)
      c++;
    if (c < n_all && cvg_encode_value(&cmp, &m[c]))
      rc = cvg_error_set(err, CVG_ENOMEM, d->name, "out of memory");
  }
  if (rc == CVG_OK) {
    mc->state = CVG_LIVE;
    mc->fp = cvg_fingerprint(cmp.data ? (const void *)cmp.data : (const void *)"", cmp.len);
    mc->ver = it->c[winner].ver;
    mc->ver_len = it->c[winner].ver_len;
  }
  for (size_t r = 0; r < d->n_replicas; r++) {
    free(vals[r]);
    cvg_buf_release(&rows[r]);
    cvg_buf_release(&scratch[r]);
  }
  free(m);
  free(uoff);
  cvg_buf_release(&uni);
  cvg_buf_release(&cmp);
  return rc;
}

static void reps_close(reps *r) {
  for (size_t i = 0; i < CVG_DIFF_MAX_REPLICAS; i++)
    cvg_store_close(r->st[i]);
}

static int replica_index(const cvg_cat_dataset *d, const char *name) {
  for (size_t i = 0; name && i < d->n_replicas; i++)
    if (strcmp(d->replicas[i].name, name) == 0)
      return (int)i;
  return -1;
}

/* ---- applying journaled mutations (resume, approve, revert) ---- */

typedef struct pending {
  int64_t seq;      /* the mutation record */
  int64_t decision; /* its decision record */
  json_t *body;     /* OWNED */
  json_t *dbody;    /* OWNED; its decision's body (spec, columns) */
  unsigned char key[CVG_JOURNAL_KEY_MAX];
  size_t key_len;
  int outcome;  /* 0 none; else the cvg_mut_result recorded */
  int reverted; /* a revert of it was applied */
} pending;

typedef struct scan_state {
  const char *dataset;
  int64_t last_decision; /* the decision record seen last, and its body */
  json_t *last_dbody;
  int64_t decision;  /* 0: every decision */
  int64_t run;       /* > 0: only the decisions of that run (their "run" field) */
  int64_t *run_decs; /* the run's decisions, ascending */
  size_t n_run_decs, cap_run_decs;
  pending *p;
  size_t n, cap;
  int oom;
  /* decisions waiting for approval, and decisions approved or rejected */
  int64_t *awaiting, *settled;
  size_t n_awaiting, n_settled, cap_awaiting, cap_settled;
} scan_state;

static int push64(int64_t **a, size_t *n, size_t *cap, int64_t v) {
  if (*n == *cap) {
    size_t c = *cap ? *cap * 2 : 64;
    int64_t *g = realloc(*a, c * sizeof *g);
    if (!g)
      return -1;
    *a = g;
    *cap = c;
  }
  (*a)[(*n)++] = v;
  return 0;
}

static int sorted_has64(const int64_t *a, size_t n, int64_t v) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (a[mid] < v)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < n && a[lo] == v;
}

static int has64(const int64_t *a, size_t n, int64_t v) {
  for (size_t i = 0; i < n; i++)
    if (a[i] == v)
      return 1;
  return 0;
}

/* The pending mutation with that record number: they are appended in journal order, so the
 * array is sorted by seq. */
static pending *find_pending(scan_state *s, int64_t seq) {
  size_t lo = 0, hi = s->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (s->p[mid].seq < seq)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < s->n && s->p[lo].seq == seq ? &s->p[lo] : NULL;
}

static int scan_cb(void *ctx, const cvg_jrecord *r) {
  scan_state *s = ctx;
  if (strcmp(r->dataset, s->dataset) != 0)
    return 0;
  json_t *b = json_loadb(r->body, r->body_len, 0, NULL);
  if (!b)
    return 0;
  if (r->kind == CVG_J_DECISION) {
    /* the first decision of each batch carries the spec and columns of the whole batch */
    if (json_object_get(b, "spec")) {
      json_decref(s->last_dbody);
      s->last_dbody = json_incref(b);
    }
    s->last_decision = r->seq;
    if (s->run && json_integer_value(json_object_get(b, "run")) == s->run &&
        push64(&s->run_decs, &s->n_run_decs, &s->cap_run_decs, r->seq))
      s->oom = 1;
    const char *st = json_string_value(json_object_get(b, "status"));
    if (st && strcmp(st, "awaiting_approval") == 0 &&
        push64(&s->awaiting, &s->n_awaiting, &s->cap_awaiting, r->seq))
      s->oom = 1;
  } else if (r->kind == CVG_J_APPROVAL) {
    if (push64(&s->settled, &s->n_settled, &s->cap_settled,
               json_integer_value(json_object_get(b, "decision"))))
      s->oom = 1;
  } else if (r->kind == CVG_J_MUTATION) {
    int64_t dec = json_integer_value(json_object_get(b, "decision"));
    if ((s->decision && dec != s->decision) ||
        (s->run && !sorted_has64(s->run_decs, s->n_run_decs, dec))) {
      json_decref(b);
      return 0;
    }
    if (s->n == s->cap) {
      size_t c = s->cap ? s->cap * 2 : 64;
      pending *g = realloc(s->p, c * sizeof *g);
      if (!g) {
        s->oom = 1;
        json_decref(b);
        return 1;
      }
      s->p = g;
      s->cap = c;
    }
    pending *p = &s->p[s->n++];
    memset(p, 0, sizeof *p);
    p->seq = r->seq;
    p->decision = dec;
    p->body = b;
    p->dbody = dec == s->last_decision ? json_incref(s->last_dbody) : NULL;
    memcpy(p->key, r->key, r->key_len);
    p->key_len = r->key_len;
    return 0;
  } else if (r->kind == CVG_J_REVERT) {
    const char *res = json_string_value(json_object_get(b, "result"));
    pending *p = find_pending(s, json_integer_value(json_object_get(b, "mutation")));
    if (p && res && strcmp(res, "applied") == 0)
      p->reverted = 1;
  } else if (r->kind == CVG_J_OUTCOME) {
    /* one outcome, or a batch's: {"outcomes": [{mutation, result, reason}, ...]} */
    json_t *list = json_object_get(b, "outcomes");
    size_t n = list ? json_array_size(list) : 1;
    for (size_t k = 0; k < n; k++) {
      json_t *o = list ? json_array_get(list, k) : b;
      int64_t m = json_integer_value(json_object_get(o, "mutation"));
      const char *res = json_string_value(json_object_get(o, "result"));
      pending *p = find_pending(s, m);
      if (p)
        p->outcome = res && strcmp(res, "applied") == 0   ? CVG_MUT_APPLIED
                     : res && strcmp(res, "skipped") == 0 ? CVG_MUT_SKIPPED
                                                          : CVG_MUT_FAILED;
    }
  }
  json_decref(b);
  return 0;
}

static void scan_free(scan_state *s) {
  json_decref(s->last_dbody);
  for (size_t i = 0; i < s->n; i++) {
    json_decref(s->p[i].body);
    json_decref(s->p[i].dbody);
  }
  free(s->p);
  free(s->awaiting);
  free(s->settled);
  free(s->run_decs);
}

/*
 * Builds the conditional write of a journaled mutation: forward (as planned) or backward (the
 * revert: from the written state back to the before-image). buf holds the decoded hex.
 */
static int build_mutation(json_t *b, json_t *db, int revert, cvg_mutation *m, kcopy *expect,
                          cvg_buf *values, const char **cols, size_t max_cols, size_t *n_cols) {
  memset(m, 0, sizeof *m);
  json_t *ex = json_object_get(b, revert ? "target" : "expect");
  if (state_from_json(ex, expect))
    return -1;
  m->expect_present = expect->state != CVG_ABSENT;
  m->expect_tombstone = expect->state == CVG_TOMBSTONED;
  m->expect_version = expect->ver;
  m->expect_version_len = expect->ver_len;
  m->expect_fp = expect->fp;
  json_t *cj = json_object_get(db, "columns");
  *n_cols = json_array_size(cj);
  if (*n_cols > max_cols)
    return -1;
  for (size_t i = 0; i < *n_cols; i++)
    if (!(cols[i] = json_string_value(json_array_get(cj, i))))
      return -1;
  const char *hex;
  if (revert) {
    hex = json_string_value(json_object_get(b, "before_values"));
    m->op = hex ? CVG_MUT_UPSERT : CVG_MUT_DELETE;
  } else {
    const char *op = json_string_value(json_object_get(b, "op"));
    m->op = op && strcmp(op, "delete") == 0 ? CVG_MUT_DELETE : CVG_MUT_UPSERT;
    hex = json_string_value(json_object_get(b, "values"));
  }
  if (m->op == CVG_MUT_UPSERT) {
    if (!hex || from_hex(hex, values))
      return -1;
    m->values = values->data;
    m->values_len = values->len;
    m->cols = cols;
    m->n_cols = *n_cols;
  }
  return 0;
}

/* Does the row now equal the state json (the mutation's target)? */
static int row_is(cvg_store *st, const cvg_scan_spec *spec, const unsigned char *key,
                  size_t key_len, json_t *state) {
  kcopy want;
  if (state_from_json(state, &want))
    return 0;
  cvg_scan_row row;
  int found = 0;
  if (cvg_store_lookup(st, spec, key, key_len, &row, &found, NULL) != CVG_OK)
    return 0;
  if (!found)
    return want.state == CVG_ABSENT;
  return want.state != CVG_ABSENT && row.tombstone == (want.state == CVG_TOMBSTONED) &&
         row.version_len == want.ver_len && !memcmp(row.version, want.ver, want.ver_len) &&
         !memcmp(&row.fp, &want.fp, sizeof row.fp);
}

/* Applies journaled mutations one by one (resume, approval) or their reverts, journaling each
 * outcome or revert record. */
static int settle(cvg_journal *jn, reps *rp, pending *p, size_t n, int revert, const char *why,
                  cvg_repair_stats *stats, const cvg_repair_opts *o, cvg_error *err) {
  const char **cols = malloc(2000 * sizeof *cols);
  if (!cols)
    return cvg_error_set(err, CVG_ENOMEM, "repair", "out of memory");
  cvg_buf values;
  cvg_buf_init(&values, 64u << 20);
  int rc = CVG_OK;
  for (size_t i = 0; i < n && rc == CVG_OK; i++) {
    json_t *b = p[i].body;
    const char *dataset = rp->d->name;
    int ri = replica_index(rp->d, json_string_value(json_object_get(b, "replica")));
    spec_store ss;
    ss.owner = NULL; /* spec_from_json sets it when the spec parses */
    cvg_mutation m;
    kcopy expect;
    size_t n_cols = 0;
    cvg_buf_reset(&values);
    const char *result, *reason = "";
    char rbuf[300];
    json_t *db = p[i].dbody;
    int broken = ri < 0 || !db || spec_from_json(json_object_get(db, "spec"), &ss) ||
                 build_mutation(b, db, revert, &m, &expect, &values, cols, 2000, &n_cols);
    if (broken) {
      result = "failed";
      reason = "the journaled mutation cannot be read back (its replica left the catalog?)";
      stats->failed++;
    } else {
      m.key = p[i].key;
      m.key_len = p[i].key_len;
      cvg_error aerr;
      cvg_error_clear(&aerr);
      if (cvg_store_apply(rp->st[ri], &ss.spec, &m, 1, &aerr) != CVG_OK) {
        snprintf(m.reason, sizeof m.reason, "%.190s", aerr.msg);
        m.result = CVG_MUT_FAILED;
      }
      if (!revert && m.result == CVG_MUT_SKIPPED &&
          row_is(rp->st[ri], &ss.spec, m.key, m.key_len, json_object_get(b, "target"))) {
        m.result = CVG_MUT_APPLIED;
        snprintf(m.reason, sizeof m.reason, "found already applied");
      }
      result = result_name(m.result);
      snprintf(rbuf, sizeof rbuf, "%s%s%s", why, m.reason[0] ? ": " : "", m.reason);
      reason = rbuf;
      stats->applied += m.result == CVG_MUT_APPLIED;
      stats->skipped += m.result == CVG_MUT_SKIPPED;
      stats->failed += m.result == CVG_MUT_FAILED;
    }
    json_decref(ss.owner); /* set only when the spec parsed; memset to NULL otherwise */
    json_t *body =
        revert ? json_pack("{s:I, s:I, s:s, s:s}", "decision", (json_int_t)p[i].decision,
                           "mutation", (json_int_t)p[i].seq, "result", result, "reason", reason)
               : json_pack("{s:I, s:s, s:s, s:b}", "mutation", (json_int_t)p[i].seq, "result",
                           result, "reason", reason, "resumed", 1);
    rc = jappend(jn, revert ? CVG_J_REVERT : CVG_J_OUTCOME, dataset, p[i].key, p[i].key_len, body,
                 NULL, err);
    say(o, "  %s of mutation %lld on %s: %s%s%s", revert ? "revert" : "outcome",
        (long long)p[i].seq, json_string_value(json_object_get(b, "replica")), result,
        reason[0] ? " - " : "", reason);
  }
  cvg_buf_release(&values);
  free(cols);
  return rc;
}

/* Settles mutations journaled without an outcome (an interrupted run). */
static int resume(cvg_journal *jn, reps *rp, const cvg_repair_opts *o, cvg_repair_stats *stats,
                  cvg_error *err) {
  scan_state s;
  memset(&s, 0, sizeof s);
  s.dataset = rp->d->name;
  int64_t from = 0, head = 0;
  unsigned char hh[32];
  cvg_journal_settled_get(jn, rp->d->name, &from);
  cvg_journal_head(jn, &head, hh);
  int rc = cvg_journal_scan(jn, from, rp->d->name, NULL, 0, 0, -1, scan_cb, &s, err);
  if (!rc && s.oom)
    rc = cvg_error_set(err, CVG_ENOMEM, "repair", "out of memory reading the journal");
  size_t w = 0;
  for (size_t i = 0; !rc && i < s.n; i++) {
    /* a decision made for approval is settled by `approve` alone, in the group that journals
     * its outcomes; a rejected one has none and must never be applied */
    int waiting = has64(s.awaiting, s.n_awaiting, s.p[i].decision);
    if (s.p[i].outcome || waiting) {
      json_decref(s.p[i].body);
      json_decref(s.p[i].dbody);
      continue;
    }
    s.p[w++] = s.p[i];
  }
  if (!rc)
    s.n = w; /* the others were released above; on an error scan_free releases them all */
  if (!rc && w) {
    say(o, "resuming %zu mutation(s) journaled by an interrupted run", w);
    rc = cvg_journal_begin(jn, err);
    if (!rc) {
      uint64_t before = stats->applied + stats->skipped + stats->failed;
      rc = settle(jn, rp, s.p, w, 0, "resumed after an interruption", stats, o, err);
      stats->resumed += stats->applied + stats->skipped + stats->failed - before;
      rc = rc ? (cvg_journal_rollback(jn), rc) : cvg_journal_commit(jn, err);
    }
  }
  /* everything up to the head read above is settled now (or waits for approval) */
  if (!rc && head > from)
    rc = cvg_journal_settled_set(jn, rp->d->name, head, err);
  scan_free(&s);
  return rc;
}

/* ---- a run ---- */

typedef struct planned {
  cvg_mutation m;
  int replica;
  int64_t seq; /* its journal record */
  size_t item;
} planned;

static int token_wait(double rate, double *t0, uint64_t *done, size_t add, const int *cancel) {
  if (rate <= 0)
    return 0;
  *done += add;
  double due = *t0 + (double)*done / rate, now = cvg_wall_now();
  while (now < due) {
    if (cancel && __atomic_load_n(cancel, __ATOMIC_SEQ_CST))
      return 1;
    double s = due - now > 0.1 ? 0.1 : due - now;
    struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
    nanosleep(&ts, NULL);
    now = cvg_wall_now();
  }
  return 0;
}

/* The given keys, compared now by looking each up on every replica; those that still differ
 * are collected as the diff would have yielded them. */
/* Whether a copy holds a version newer than the one key k was confirmed on (opts.key_newest). */
static int written_since(const cvg_repair_opts *o, size_t k, const cvg_copy *cps, size_t n) {
  if (!o->key_newest || !o->key_newest_lens || !o->key_newest_lens[k])
    return 0;
  for (size_t r = 0; r < n; r++)
    if (cps[r].state != CVG_ABSENT && cps[r].version_len &&
        cvg_key_compare(cps[r].version, cps[r].version_len, o->key_newest[k],
                        o->key_newest_lens[k]) > 0)
      return 1;
  return 0;
}

static int compare_keys(const cvg_repair_opts *o, const cvg_cat_dataset *d, reps *rp,
                        const cvg_scan_spec *spec, collect *col, uint64_t *deferred,
                        cvg_error *err) {
  cvg_buf vers;
  cvg_buf_init(&vers, (size_t)CVG_DIFF_MAX_REPLICAS * 4096);
  int rc = CVG_OK;
  for (size_t k = 0; rc == CVG_OK && k < o->n_keys && !col->oom; k++) {
    cvg_copy cps[CVG_DIFF_MAX_REPLICAS];
    size_t off[CVG_DIFF_MAX_REPLICAS];
    cvg_buf_reset(&vers);
    for (size_t r = 0; rc == CVG_OK && r < d->n_replicas; r++) {
      cvg_scan_row row;
      int found = 0;
      memset(&cps[r], 0, sizeof cps[r]);
      rc = cvg_store_lookup(rp->st[r], spec, o->keys[k], o->key_lens[k], &row, &found, err);
      if (rc || !found)
        continue;
      cps[r].state = row.tombstone ? CVG_TOMBSTONED : CVG_LIVE;
      cps[r].fp = row.fp;
      off[r] = vers.len;
      cps[r].version_len = row.version_len;
      if (row.version_len && cvg_buf_append(&vers, row.version, row.version_len))
        rc = cvg_error_set(err, CVG_ENOMEM, d->name, "out of memory");
    }
    if (rc)
      break;
    for (size_t r = 0; r < d->n_replicas; r++)
      if (cps[r].state != CVG_ABSENT && cps[r].version_len)
        cps[r].version = vers.data + off[r];
    int cls = cvg_classify(cps, d->n_replicas, d->version != NULL, 0, NULL);
    if (cls <= 0)
      continue; /* they agree now (replication caught up), or cannot be judged */
    if (written_since(o, k, cps, d->n_replicas)) {
      (*deferred)++; /* written again since confirmed: the watch confirms it anew, or not */
      continue;
    }
    cvg_divergence dv = {
        o->keys[k],     o->key_lens[k], cvg_shard_of(o->keys[k], o->key_lens[k], d->shards),
        (cvg_class)cls, d->n_replicas,  cps};
    on_divergence(col, &dv);
  }
  cvg_buf_release(&vers);
  return rc;
}

static int by_shard(const void *a, const void *b) {
  const item *x = a, *y = b;
  if (x->shard != y->shard)
    return x->shard < y->shard ? -1 : 1;
  return cvg_key_compare(x->key, x->key_len, y->key, y->key_len);
}

/* How many keys of items [lo, hi) still differ between the replicas, looked up now. */
static int still_divergent(reps *rp, const cvg_cat_dataset *d, const cvg_scan_spec *spec,
                           const collect *col, size_t lo, size_t hi, size_t *left, cvg_error *err) {
  *left = 0;
  for (size_t k = lo; k < hi; k++) {
    const item *it = &col->items[k];
    cvg_fp fp0;
    memset(&fp0, 0, sizeof fp0);
    int state0 = -1, same = 1;
    for (size_t r = 0; r < d->n_replicas && same; r++) {
      cvg_scan_row row;
      int found = 0;
      int rc = cvg_store_lookup(rp->st[r], spec, it->key, it->key_len, &row, &found, err);
      if (rc)
        return rc;
      int state = !found ? CVG_ABSENT : row.tombstone ? CVG_TOMBSTONED : CVG_LIVE;
      if (state0 < 0) {
        state0 = state;
        fp0 = row.fp;
      } else {
        same = state == state0 && (state == CVG_ABSENT || !memcmp(&row.fp, &fp0, sizeof fp0));
      }
    }
    *left += !same;
  }
  return CVG_OK;
}

/* One run's shared state. Workers (o->concurrency, or repair.concurrency) repair whole shards
 * at once, each with its own replica connections and buffers; the lock covers the journal (one
 * chain: a worker's decisions, mutations and outcomes are each appended as one group), the
 * stats, the sum bases, the pace and the progress. Only the writes to the replicas run outside
 * it. */
typedef struct runctx {
  const cvg_repair_opts *o;
  const cvg_cat_dataset *d;
  const char *const *names;
  const char *const *kc;
  size_t n_key;
  const cvg_scan_spec *spec;
  const char **all;
  size_t n_all;
  const char *specs, *colss;
  size_t batch;
  collect *col;
  cvg_journal *jn, *bj; /* BORROWED: the journal, and the one a dry run reads bases from */
  jpipe *jp;            /* OWNED: the journal's thread for decisions and mutations, or NULL */
  jchain chain;
  cvg_repair_stats *stats;
  sum_bases sb;
  double rate, t0, t0r;
  uint64_t paced, paced_r;
  pthread_mutex_t mu;
  int stopped, rc;
  cvg_error *err;  /* the run's: gets the first worker's error */
  size_t done;     /* keys through, for the progress bar */
  size_t next, hi; /* the current stage's keys not yet handed out, [next, hi) */
  int64_t run_id;  /* the run's record in the journal (0: a dry run) */
} runctx;

typedef struct worker {
  runctx *x;
  reps rp; /* OWNED, except worker 0's, which is the run's */
  int own_rp;
  planned *pl; /* OWNED: a batch's planned mutations */
  cvg_buf *bufs;
  cvg_mutation *grp;
  cvg_buf before, jbuf, kbuf, sumsb;
  cvg_buf obuf;         /* the last batch's outcome record, */
  int outcomes_pending; /* while not yet journaled */
  cvg_error err;
} worker;

static void worker_release(worker *w) {
  size_t n = w->x->batch * w->x->d->n_replicas + 1;
  for (size_t i = 0; w->bufs && i < n; i++)
    cvg_buf_release(&w->bufs[i]);
  free(w->bufs);
  free(w->pl);
  free(w->grp);
  cvg_buf_release(&w->before);
  cvg_buf_release(&w->jbuf);
  cvg_buf_release(&w->kbuf);
  cvg_buf_release(&w->sumsb);
  cvg_buf_release(&w->obuf);
  if (w->own_rp)
    reps_close(&w->rp);
}

static int worker_init(worker *w, runctx *x, const reps *shared) {
  memset(w, 0, sizeof *w);
  w->x = x;
  size_t n = x->batch * x->d->n_replicas + 1;
  w->pl = calloc(n, sizeof *w->pl);
  w->bufs = calloc(n, sizeof *w->bufs);
  w->grp = calloc(n, sizeof *w->grp);
  cvg_buf_init(&w->before, 64u << 20);
  cvg_buf_init(&w->jbuf, CVG_JOURNAL_BODY_MAX);
  cvg_buf_init(&w->kbuf, CVG_JOURNAL_BODY_MAX);
  cvg_buf_init(&w->sumsb, CVG_JOURNAL_BODY_MAX);
  cvg_buf_init(&w->obuf, CVG_JOURNAL_BODY_MAX);
  for (size_t i = 0; w->bufs && i < n; i++)
    cvg_buf_init(&w->bufs[i], 64u << 20);
  if (!w->pl || !w->bufs || !w->grp)
    return cvg_error_set(&w->err, CVG_ENOMEM, x->d->name, "out of memory");
  if (shared) {
    w->rp = *shared;
    return CVG_OK;
  }
  w->own_rp = 1;
  return x->o->execute ? reps_open(&w->rp, x->d, &w->err)
                       : reps_open_flags(&w->rp, x->d, CVG_STORE_READONLY, &w->err);
}

/* The first failure of the run wins; the others stop at their next batch. */
static void run_fail(runctx *x, worker *w, int rc) {
  pthread_mutex_lock(&x->mu);
  if (!x->rc) {
    x->rc = rc;
    if (x->err)
      *x->err = w->err;
  }
  pthread_mutex_unlock(&x->mu);
}

/* Plans, journals and applies keys [b0, b1) of the run with worker w's connections and buffers.
 * Holds the run's lock except while writing to the replicas. */
static int run_batch(worker *w, size_t b0, size_t b1) {
  runctx *x = w->x;
  const cvg_repair_opts *o = x->o;
  const cvg_cat_dataset *d = x->d;
  const char *const *names = x->names;
  const char *const *kc = x->kc;
  size_t n_key = x->n_key, n_all = x->n_all, batch = x->batch;
  const char **all = x->all;
  const char *specs = x->specs, *colss = x->colss;
  cvg_scan_spec spec = *x->spec;
  cvg_journal *jn = x->jn;
  cvg_repair_stats *stats = x->stats;
  reps *rpp = &w->rp;
  planned *pl = w->pl;
  cvg_buf *bufs = w->bufs, *bef = &w->before;
  cvg_mutation *grp = w->grp;
  cvg_error *err = &w->err;
  int rc = CVG_OK;
  pthread_mutex_lock(&x->mu);
  do {
    if (x->stopped || x->rc)
      break;
    if (o->cancel && __atomic_load_n(o->cancel, __ATOMIC_SEQ_CST)) {
      say(o, "stopped before key %zu of %zu", b0 + 1, x->col->n);
      x->stopped = 1;
      break;
    }
    size_t np = 0;
    if (o->execute && (rc = pbegin(jn, x->jp, &x->chain, err)))
      break;
    /* the previous batch's outcomes first */
    if (o->execute && w->outcomes_pending &&
        (rc = pappend(jn, x->jp, CVG_J_OUTCOME, d->name, NULL, 0, &w->obuf, NULL, err))) {
      prollback(jn, x->jp);
      break;
    }
    /* one read snapshot per replica for the batch's fetches (before-images, winners' rows) */
    for (size_t r = 0; o->execute && rc == CVG_OK && r < d->n_replicas; r++)
      rc = cvg_store_read_txn(rpp->st[r], 1, err);
    for (size_t k = b0; rc == CVG_OK && k < b1; k++) {
      item *it = &x->col->items[k];
      cvg_copy cps[CVG_DIFF_MAX_REPLICAS];
      for (size_t i = 0; i < d->n_replicas; i++) {
        cps[i].state = (cvg_rstate)it->c[i].state;
        cps[i].fp = it->c[i].fp;
        cps[i].version = it->c[i].ver;
        cps[i].version_len = it->c[i].ver_len;
        cps[i].vvec = NULL;
        cps[i].vvec_len = 0;
        cps[i].newest = 0;
      }
      cvg_decision dec;
      if ((rc = cvg_decide((cvg_policy)d->policy, cps, d->n_replicas, names, d->authority, &dec,
                           err)))
        break;
      cvg_buf_reset(&w->kbuf);
      const char *ks = cvg_key_json_append(&w->kbuf, it->key, it->key_len, kc, n_key) ||
                               cvg_buf_append(&w->kbuf, "", 1)
                           ? NULL
                           : (const char *)w->kbuf.data;
      /* the targets: every replica whose copy differs from the winner's */
      int targets[CVG_DIFF_MAX_REPLICAS];
      size_t nt = 0;
      const icopy *wc = &it->c[dec.winner];
      /* merge: the winner's row with the merge rules' columns taken over every live copy */
      icopy mc;
      cvg_buf *merged = &bufs[batch * d->n_replicas];
      int is_merge = d->policy == CVG_POLICY_MERGE && wc->state == CVG_LIVE && !dec.delete_all;
      if (is_merge) {
        char why[300];
        cvg_buf_reset(merged);
        int ask = 0;
        if ((rc = merge_row(d, rpp, &spec, it, dec.winner, all, n_all, merged, &mc, why, sizeof why,
                            &x->sb, x->jn ? x->jn : x->bj, &w->sumsb, &ask, err)))
          break;
        size_t rl = strlen(dec.rationale);
        snprintf(dec.rationale + rl, sizeof dec.rationale - rl, "; merged %s%s", why,
                 ask && !dec.manual ? "; awaiting approval" : "");
        dec.manual |= ask;
        wc = &mc;
      }
      for (size_t i = 0; i < d->n_replicas; i++) {
        if ((int)i == dec.winner && !is_merge) /* a merged row may differ from every copy */
          continue;
        const icopy *c = &it->c[i];
        int same = c->state == wc->state &&
                   (c->state == CVG_ABSENT ||
                    (c->ver_len == wc->ver_len && !memcmp(c->ver, wc->ver, c->ver_len) &&
                     !memcmp(&c->fp, &wc->fp, sizeof c->fp)));
        if (!same)
          targets[nt++] = (int)i;
      }
      if (o->verbose || !o->execute) {
        char tl[512] = "";
        size_t tlo = 0;
        for (size_t t = 0; t < nt && tlo < sizeof tl - 1; t++)
          tlo += (size_t)snprintf(tl + tlo, sizeof tl - tlo, "%s%s %s", t ? ", " : "",
                                  dec.delete_all ? "delete on" : "write to", names[targets[t]]);
        say(o, "%s %s shard %u %s: %s%s - %s", o->execute ? "repair" : "plan", ks ? ks : "?",
            it->shard, cvg_class_name(it->cls), dec.manual ? "awaiting approval; would " : "", tl,
            dec.rationale);
      }
      stats->decisions++;
      stats->mutations += nt;
      stats->awaiting += dec.manual;
      if (!o->execute)
        continue;
      /* the winner's whole row */
      cvg_buf *after = &bufs[batch * d->n_replicas];
      int found = is_merge; /* merged: after already holds the merged row */
      if (!is_merge)
        cvg_buf_reset(after);
      if (!is_merge && !dec.delete_all &&
          (rc = cvg_store_fetch(rpp->st[dec.winner], &spec, it->key, it->key_len, all, n_all, after,
                                &found, err)))
        break;
      /* the decision: sorted keys, as every record */
      cvg_buf *jb = &w->jbuf;
      cvg_buf_reset(jb);
      int wrc = jw_raw(jb, "{\"class\":") || jw_str(jb, cvg_class_name(it->cls));
      if (!wrc && k == b0) /* the first decision of a batch carries the batch's columns */
        wrc = jw_raw(jb, ",\"columns\":") || jw_raw(jb, colss);
      wrc = wrc || jw_raw(jb, ",\"copies\":{");
      for (size_t i = 0; !wrc && i < d->n_replicas; i++)
        wrc = (i ? jw_raw(jb, ",") : 0) || jw_str(jb, names[i]) || jw_raw(jb, ":") ||
              jw_state(jb, &it->c[i]);
      char shard[32], run[40] = "";
      snprintf(shard, sizeof shard, ",\"shard\":%u", it->shard);
      if (x->run_id)
        snprintf(run, sizeof run, ",\"run\":%lld", (long long)x->run_id);
      wrc = wrc || jw_raw(jb, "},\"key\":") || jw_raw(jb, ks ? ks : "null") ||
            jw_raw(jb, ",\"policy\":") || jw_str(jb, cvg_policy_names[d->policy]) ||
            jw_raw(jb, ",\"rationale\":") || jw_str(jb, dec.rationale) || jw_raw(jb, run) ||
            jw_raw(jb, shard);
      if (!wrc && k == b0)
        wrc = jw_raw(jb, ",\"spec\":") || jw_raw(jb, specs);
      wrc = wrc || jw_raw(jb, ",\"status\":") ||
            jw_str(jb, dec.manual ? "awaiting_approval" : "planned");
      if (!wrc && is_merge && w->sumsb.len) /* the values of sum columns: the next merge's base */
        wrc = jw_raw(jb, ",\"sums\":") || cvg_buf_append(jb, w->sumsb.data, w->sumsb.len);
      wrc = wrc || jw_raw(jb, ",\"winner\":") || jw_str(jb, names[dec.winner]) || jw_raw(jb, "}");
      int64_t dseq = 0;
      rc = wrc ? cvg_error_set(err, CVG_ENOMEM, d->name, "out of memory")
               : pappend(jn, x->jp, CVG_J_DECISION, d->name, it->key, it->key_len, jb, &dseq, err);
      for (size_t t = 0; rc == CVG_OK && t < nt; t++) {
        int ri = targets[t];
        const icopy *tc = &it->c[ri];
        cvg_buf_reset(bef);
        int bfound = 0;
        if (tc->state != CVG_ABSENT &&
            (rc = cvg_store_fetch(rpp->st[ri], &spec, it->key, it->key_len, all, n_all, bef,
                                  &bfound, err)))
          break;
        int del = dec.delete_all || wc->state == CVG_ABSENT || !found;
        /* values and before-image as exact encoded tuples (hex) in the decision's columns;
       * `converge audit` shows them decoded */
        planned *p = &pl[np];
        memset(p, 0, sizeof *p);
        cvg_buf *mb = &w->jbuf;
        cvg_buf_reset(mb);
        char dnum[48];
        snprintf(dnum, sizeof dnum, ",\"decision\":%lld,\"expect\":", (long long)dseq);
        int mrc =
            jw_raw(mb, "{\"before_values\":") ||
            (bfound ? jw_hex(mb, bef->data, bef->len) : jw_raw(mb, "null")) || jw_raw(mb, dnum) ||
            jw_state(mb, tc) || jw_raw(mb, ",\"op\":") || jw_str(mb, del ? "delete" : "upsert") ||
            jw_raw(mb, ",\"replica\":") || jw_str(mb, names[ri]) || jw_raw(mb, ",\"target\":") ||
            jw_state(mb, wc) || jw_raw(mb, ",\"values\":") ||
            (del ? jw_raw(mb, "null") : jw_hex(mb, after->data, after->len)) || jw_raw(mb, "}");
        rc = mrc ? cvg_error_set(err, CVG_ENOMEM, d->name, "out of memory")
                 : pappend(jn, x->jp, CVG_J_MUTATION, d->name, it->key, it->key_len, mb, &p->seq,
                           err);
        if (rc || dec.manual)
          continue;
        /* the conditional write */
        cvg_buf *vb = &bufs[np];
        cvg_buf_reset(vb);
        if (!del && cvg_buf_append(vb, after->data, after->len)) {
          rc = cvg_error_set(err, CVG_ENOMEM, d->name, "out of memory");
          break;
        }
        p->replica = ri;
        p->item = k;
        p->m.key = it->key;
        p->m.key_len = it->key_len;
        p->m.op = del ? CVG_MUT_DELETE : CVG_MUT_UPSERT;
        p->m.expect_present = tc->state != CVG_ABSENT;
        p->m.expect_tombstone = tc->state == CVG_TOMBSTONED;
        p->m.expect_version = tc->ver;
        p->m.expect_version_len = tc->ver_len;
        p->m.expect_fp = tc->fp;
        p->m.cols = all;
        p->m.n_cols = n_all;
        p->m.values = vb->data;
        p->m.values_len = vb->len;
        np++;
      }
    }
    if (!o->execute)
      continue;
    for (size_t r = 0; r < d->n_replicas; r++) {
      int trc = cvg_store_read_txn(rpp->st[r], 0, rc ? NULL : err);
      if (!rc)
        rc = trc;
    }
    /* the decisions and mutations are durable before anything is written */
    if (rc) {
      prollback(jn, x->jp);
      break;
    }
    if ((rc = pcommit(jn, x->jp, &x->chain, err)))
      break;                 /* rolled back */
    w->outcomes_pending = 0; /* durable now */
    /* other workers plan and journal while this one writes */
    pthread_mutex_unlock(&x->mu);
    /* apply, one transaction per replica */
    for (size_t r = 0; r < d->n_replicas && rc == CVG_OK; r++) {
      size_t ng = 0;
      for (size_t i = 0; i < np; i++)
        if (pl[i].replica == (int)r)
          grp[ng++] = pl[i].m;
      if (!ng)
        continue;
      cvg_error aerr;
      cvg_error_clear(&aerr);
      cvg_store_apply(rpp->st[r], &spec, grp, ng, &aerr); /* failures are per mutation */
      for (size_t g = 0; g < ng; g++)
        if (grp[g].result == CVG_MUT_PENDING) {
          grp[g].result = CVG_MUT_FAILED;
          snprintf(grp[g].reason, sizeof grp[g].reason, "%.190s", aerr.msg);
        }
      for (size_t i = 0, g = 0; i < np; i++)
        if (pl[i].replica == (int)r)
          pl[i].m = grp[g++];
    }
    pthread_mutex_lock(&x->mu);
    /* the batch's outcomes, as one record: they were applied by the same transactions. It is
     * journaled with the next batch's group (one durable commit for both), or alone after the
     * last batch (outcomes_flush); a crash before that leaves mutations without an outcome,
     * which the next run settles by looking at the rows, as after any crash */
    cvg_buf *ob = &w->obuf; /* {"outcomes":[{"mutation":N,"reason":"...","result":"..."},...]} */
    cvg_buf_reset(ob);
    int orc = jw_raw(ob, "{\"outcomes\":[");
    for (size_t i = 0; i < np; i++) {
      planned *p = &pl[i];
      stats->applied += p->m.result == CVG_MUT_APPLIED;
      stats->skipped += p->m.result == CVG_MUT_SKIPPED;
      stats->failed += p->m.result == CVG_MUT_FAILED;
      char mnum[48];
      snprintf(mnum, sizeof mnum, "%s{\"mutation\":%lld,\"reason\":", i ? "," : "",
               (long long)p->seq);
      orc = orc || jw_raw(ob, mnum) || jw_str(ob, p->m.reason) || jw_raw(ob, ",\"result\":") ||
            jw_str(ob, result_name(p->m.result)) || jw_raw(ob, "}");
      if (p->m.result != CVG_MUT_APPLIED && (o->verbose || p->m.result == CVG_MUT_FAILED))
        say(o, "  %s on %s: %s", result_name(p->m.result), names[p->replica], p->m.reason);
    }
    orc = orc || jw_raw(ob, "]}");
    if (orc) {
      rc = cvg_error_set(err, CVG_ENOMEM, d->name, "out of memory");
      break;
    }
    w->outcomes_pending = np > 0;
    x->done += b1 - b0;
    if (o->progress)
      o->progress(o->print_ctx, x->done, x->col->n, stats);
    /* per-replica limit: the busiest replica of the batch sets the pace */
    size_t most = 0, per[CVG_DIFF_MAX_REPLICAS] = {0};
    for (size_t i = 0; i < np; i++)
      if (++per[pl[i].replica] > most)
        most = per[pl[i].replica];
    if (d->repair_replica_rate > 0 &&
        token_wait(d->repair_replica_rate, &x->t0r, &x->paced_r, most, o->cancel)) {
      x->stopped = 1;
      break;
    }
    if (token_wait(x->rate, &x->t0, &x->paced, np, o->cancel)) {
      x->stopped = 1;
      break;
    }
  } while (0);
  pthread_mutex_unlock(&x->mu);
  return rc;
}

/* A worker of a concurrent stage: takes whole shards until none is left. */
static void *stage_worker(void *arg) {
  worker *w = arg;
  runctx *x = w->x;
  journal_clock = &x->stats->journal_seconds;
  for (;;) {
    pthread_mutex_lock(&x->mu);
    size_t lo = x->next, hi = lo;
    int go = !x->rc && !x->stopped && lo < x->hi;
    if (go) {
      uint32_t sh = x->col->items[lo].shard;
      while (hi < x->hi && x->col->items[hi].shard == sh)
        hi++;
      x->next = hi;
    }
    pthread_mutex_unlock(&x->mu);
    if (!go)
      break;
    for (size_t b0 = lo; b0 < hi; b0 += x->batch) {
      int rc = run_batch(w, b0, b0 + x->batch < hi ? b0 + x->batch : hi);
      if (rc) {
        run_fail(x, w, rc);
        break;
      }
    }
  }
  journal_clock = NULL;
  jrec_release();
  return NULL;
}

/* Keys [lo, hi) of the run (one stage): in batches by worker 0, or shard by shard by up to
 * `concurrency` workers at once. */
/* Journals the outcomes the workers still hold, each in a group of its own: at the end of a
 * stage, after an interruption and after a failure too (the writes were made). */
static void outcomes_flush(runctx *x, worker *ws, size_t nw) {
  for (size_t i = 0; i < nw; i++) {
    worker *w = &ws[i];
    if (!w->outcomes_pending)
      continue;
    int rc = pbegin(x->jn, x->jp, &x->chain, &w->err);
    if (rc == CVG_OK &&
        (rc = pappend(x->jn, x->jp, CVG_J_OUTCOME, x->d->name, NULL, 0, &w->obuf, NULL, &w->err)))
      prollback(x->jn, x->jp);
    else if (rc == CVG_OK)
      rc = pcommit(x->jn, x->jp, &x->chain, &w->err);
    w->outcomes_pending = rc != CVG_OK;
    if (rc != CVG_OK)
      run_fail(x, w, rc);
  }
}

static int run_stage(runctx *x, worker *ws, size_t nw, size_t lo, size_t hi) {
  if (nw <= 1) {
    for (size_t b0 = lo; !x->rc && !x->stopped && b0 < hi; b0 += x->batch) {
      int rc = run_batch(&ws[0], b0, b0 + x->batch < hi ? b0 + x->batch : hi);
      if (rc)
        run_fail(x, &ws[0], rc);
    }
    outcomes_flush(x, ws, 1);
    return x->rc;
  }
  x->next = lo;
  x->hi = hi;
  pthread_t th[CVG_REPAIR_MAX_CONCURRENCY];
  size_t started = 0;
  for (size_t i = 0; i < nw; i++) {
    if (pthread_create(&th[i], NULL, stage_worker, &ws[i]) != 0) {
      cvg_error_set(&ws[i].err, CVG_ENOMEM, x->d->name, "cannot start a repair worker thread");
      run_fail(x, &ws[i], CVG_ENOMEM);
      break;
    }
    started++;
  }
  for (size_t i = 0; i < started; i++)
    pthread_join(th[i], NULL);
  outcomes_flush(x, ws, nw);
  return x->rc;
}

/* ---- the blast-radius limit ---- */

/* What the run would write if it went ahead: per replica the rows it would delete, and the
 * writes in all. Decisions that wait for approval write nothing now and are not counted. */
static void plan_counts(const cvg_cat_dataset *d, const collect *col, const char *const *names,
                        uint64_t *deletes, uint64_t *changes) {
  for (size_t k = 0; k < col->n; k++) {
    const item *it = &col->items[k];
    cvg_copy cps[CVG_DIFF_MAX_REPLICAS];
    memset(cps, 0, sizeof cps);
    for (size_t i = 0; i < d->n_replicas; i++) {
      cps[i].state = (cvg_rstate)it->c[i].state;
      cps[i].fp = it->c[i].fp;
      cps[i].version = it->c[i].ver;
      cps[i].version_len = it->c[i].ver_len;
    }
    cvg_decision dec;
    if (cvg_decide((cvg_policy)d->policy, cps, d->n_replicas, names, d->authority, &dec, NULL) ||
        dec.manual)
      continue; /* undecidable keys fail in the run itself */
    const icopy *wc = &it->c[dec.winner];
    int del = dec.delete_all || wc->state == CVG_ABSENT;
    for (size_t i = 0; i < d->n_replicas; i++) {
      const icopy *c = &it->c[i];
      if ((int)i == dec.winner && d->policy != CVG_POLICY_MERGE)
        continue;
      if (del) {
        deletes[i] += c->state != CVG_ABSENT;
        *changes += c->state != CVG_ABSENT;
        continue;
      }
      int same = c->state == wc->state &&
                 (c->state == CVG_ABSENT ||
                  (c->ver_len == wc->ver_len && !memcmp(c->ver, wc->ver, c->ver_len) &&
                   !memcmp(&c->fp, &wc->fp, sizeof c->fp)));
      *changes += !same || d->policy == CVG_POLICY_MERGE;
    }
  }
}

/* The rows of a replica's table, for the delete fraction. */
static int replica_rows(cvg_store *st, int64_t *rows, cvg_error *err) {
  double v = 0;
  int is_null = 0;
  int rc = cvg_store_scalar(st, "count(*)", &v, &is_null, err);
  *rows = rc == CVG_OK && !is_null ? (int64_t)v : 0;
  return rc;
}

/* What earlier runs of the dataset tell the limits: the deletes per replica of the runs that
 * went ahead within repair.limit_window, and the authority's rows at the newest run that was
 * not refused (-1: none known). */
typedef struct run_history {
  const cvg_cat_dataset *d;
  const char *const *names;
  double since;
  uint64_t deleted[CVG_DIFF_MAX_REPLICAS];
  int64_t authority_rows, authority_run;
} run_history;

static int history_cb(void *ctx, const cvg_jrecord *r) {
  run_history *h = ctx;
  json_t *body = json_loadb(r->body, r->body_len, 0, NULL);
  const char *status = json_string_value(json_object_get(body, "status"));
  if (status && strcmp(status, "refused")) {
    json_t *dj = json_object_get(body, "deletes"), *rj = json_object_get(body, "rows");
    for (size_t i = 0; i < h->d->n_replicas; i++) {
      json_int_t n = json_integer_value(json_object_get(dj, h->names[i]));
      /* runs the operator forced through are not counted against later ones */
      if (r->at >= h->since && !strcmp(status, "started") && n > 0)
        h->deleted[i] += (uint64_t)n;
      if ((int)i == h->d->authority && json_is_integer(json_object_get(rj, h->names[i]))) {
        h->authority_rows = json_integer_value(json_object_get(rj, h->names[i]));
        h->authority_run = r->seq;
      }
    }
  }
  json_decref(body);
  return 0;
}

static int run_history_read(cvg_journal *jn, run_history *h, cvg_error *err) {
  int64_t from = 0;
  h->authority_rows = h->authority_run = -1;
  int rc = cvg_journal_runs_from(jn, h->d->name, h->since, &from, err);
  if (rc == CVG_OK && from > 0)
    rc = cvg_journal_scan(jn, from - 1, h->d->name, NULL, 0, 0, CVG_J_RUN, history_cb, h, err);
  return rc;
}

/*
 * The run's limits, before anything is written: past repair.max_changes_per_run, past
 * repair.max_delete_fraction of any replica's rows, or with an empty authority, an executing run
 * journals its refusal and returns CVG_ELIMIT having applied nothing - unless --force-limits,
 * which is journaled too. A run with work to do gets a run record (its id in *run_id). A dry
 * run only says what --execute would do.
 */
static int check_limits(const cvg_repair_opts *o, const cvg_cat_dataset *d, reps *rp,
                        const collect *col, const char *const *names, cvg_journal *jn,
                        int64_t *run_id, cvg_repair_stats *stats, cvg_error *err) {
  uint64_t deletes[CVG_DIFF_MAX_REPLICAS] = {0}, changes = 0;
  int64_t rows[CVG_DIFF_MAX_REPLICAS] = {0};
  plan_counts(d, col, names, deletes, &changes);
  char reason[400] = "";
  int rc = CVG_OK;
  cvg_store *const *st = rp->st;
  reps ro;
  memset(&ro, 0, sizeof ro);
  if (!st[0]) { /* a dry run of a policy that opened nothing: read-only connections to count */
    if ((rc = reps_open_flags(&ro, d, CVG_STORE_READONLY, err)))
      return rc;
    st = ro.st;
  }
  for (size_t i = 0; rc == CVG_OK && i < d->n_replicas; i++)
    if (deletes[i] || (int)i == d->authority)
      rc = replica_rows(st[i], &rows[i], err);
  reps_close(&ro);
  run_history h = {.d = d, .names = names, .since = cvg_wall_now() - d->repair_limit_window};
  if (rc == CVG_OK && jn)
    rc = run_history_read(jn, &h, err);
  else
    h.authority_rows = -1;
  if (rc)
    return rc;
  if (d->repair_max_changes && changes > d->repair_max_changes)
    snprintf(reason, sizeof reason,
             "it would write %llu changes, more than repair.max_changes_per_run (%llu)",
             (unsigned long long)changes, (unsigned long long)d->repair_max_changes);
  for (size_t i = 0; !reason[0] && i < d->n_replicas; i++) {
    if (!deletes[i])
      continue;
    /* the rows the replica had before the window's deletes, and all deleted since */
    double before = (double)rows[i] + (double)h.deleted[i];
    double total = (double)deletes[i] + (double)h.deleted[i];
    int64_t arows = d->authority >= 0 ? rows[d->authority] : -1;
    if (d->authority >= 0 && (int)i != d->authority && arows == 0)
      snprintf(reason, sizeof reason,
               "the authority '%s' is empty: it would delete all %llu row(s) of '%s' (a "
               "botched restore or a wrong table?)",
               names[d->authority], (unsigned long long)deletes[i], names[i]);
    else if (d->authority >= 0 && (int)i != d->authority && h.authority_rows > 0 &&
             (double)(h.authority_rows - arows) >
                 d->repair_max_delete_fraction * (double)h.authority_rows)
      snprintf(reason, sizeof reason,
               "the authority '%s' has %lld row(s), %lld fewer than at run %lld (%.1f%%, more "
               "than repair.max_delete_fraction, %g%%): it would delete %llu row(s) of '%s' "
               "(a botched restore or a wrong table?)",
               names[d->authority], (long long)arows, (long long)(h.authority_rows - arows),
               (long long)h.authority_run,
               100.0 * (double)(h.authority_rows - arows) / (double)h.authority_rows,
               100 * d->repair_max_delete_fraction, (unsigned long long)deletes[i], names[i]);
    else if (total > d->repair_max_delete_fraction * before) {
      char earlier[120] = "";
      if (h.deleted[i])
        snprintf(earlier, sizeof earlier, " (with %llu deleted by runs in the last %gs)",
                 (unsigned long long)h.deleted[i], d->repair_limit_window);
      snprintf(reason, sizeof reason,
               "it would delete %llu of the %lld row(s) of '%s'%s: %.1f%%, more than "
               "repair.max_delete_fraction (%g%%)%s",
               (unsigned long long)deletes[i], (long long)rows[i], names[i], earlier,
               before > 0 ? 100.0 * total / before : 100.0, 100 * d->repair_max_delete_fraction,
               d->authority >= 0 ? ": has the authority lost rows?" : "");
    }
  }
  stats->limit_changes = changes;
  if (!o->execute) {
    if (reason[0])
      say(o, "note: --execute would refuse this run: %s", reason);
    return CVG_OK;
  }
  const char *status = !reason[0] ? "started" : o->force_limits ? "overridden" : "refused";
  json_t *dj = json_object(), *rj = json_object();
  for (size_t i = 0; dj && rj && i < d->n_replicas; i++) {
    json_object_set_new(dj, names[i], json_integer((json_int_t)deletes[i]));
    if (deletes[i] || (int)i == d->authority)
      json_object_set_new(rj, names[i], json_integer((json_int_t)rows[i]));
  }
  json_t *body =
      json_pack("{s:I, s:o, s:b, s:{s:I, s:f}, s:s, s:o, s:s}", "changes", (json_int_t)changes,
                "deletes", dj, "force_limits", o->force_limits, "limits", "max_changes_per_run",
                (json_int_t)d->repair_max_changes, "max_delete_fraction",
                d->repair_max_delete_fraction, "reason", reason, "rows", rj, "status", status);
  if ((rc = jappend(jn, CVG_J_RUN, d->name, NULL, 0, body, run_id, err)))
    return rc;
  stats->run_id = *run_id;
  if (!reason[0]) {
    say(o,
        "run %lld: %llu change(s) planned (undo the whole run with: converge repair revert "
        "--run %lld)",
        (long long)*run_id, (unsigned long long)changes, (long long)*run_id);
    return CVG_OK;
  }
  if (o->force_limits) {
    say(o, "limits overridden by --force-limits (journaled as run %lld): %s", (long long)*run_id,
        reason);
    return CVG_OK;
  }
  stats->refused = 1;
  cvg_error_set(err, CVG_ELIMIT, d->name, "repair refused, nothing was applied: %s", reason);
  cvg_error_hint(err, "check the replicas (converge diff) before anything else; if the change is "
                      "intended, raise the limit in the catalog or run converge repair once with "
                      "--force-limits");
  return CVG_ELIMIT;
}

int cvg_repair_run(const cvg_repair_opts *o, cvg_repair_stats *stats, cvg_error *err) {
  memset(stats, 0, sizeof *stats);
  double t_start = cvg_wall_now();
  journal_clock = &stats->journal_seconds;
  const cvg_cat_dataset *d = &o->cat->datasets[o->dataset];
  if (!d->policy)
    return cvg_error_set(err, CVG_EINVAL, d->name,
                         "dataset '%s' has no repair policy; add policy: lww, authority or manual",
                         d->name);
  if (d->n_replicas > CVG_DIFF_MAX_REPLICAS)
    return cvg_error_set(err, CVG_EINVAL, d->name, "too many replicas to repair");
  const char *urls[CVG_DIFF_MAX_REPLICAS], *names[CVG_DIFF_MAX_REPLICAS];
  for (size_t i = 0; i < d->n_replicas; i++) {
    urls[i] = d->replicas[i].url;
    names[i] = d->replicas[i].name;
  }
  /* the window is checked before anything is written, the resumption of an interrupted run
   * included */
  if (o->execute && d->repair_window_start >= 0 && !o->ignore_window) {
    int ws = d->repair_window_start, we = d->repair_window_end;
    if (!cvg_in_utc_window(cvg_wall_now(), ws, we)) {
      int rc =
          cvg_error_set(err, CVG_EBUSY, d->name,
                        "outside the repair window %02d:%02d-%02d:%02d UTC; nothing was written",
                        ws / 60, ws % 60, we / 60, we % 60);
      cvg_error_hint(err, "run it inside the window, or with --ignore-window");
      return rc;
    }
  }
  cvg_journal *jn = NULL;
  reps rp;
  memset(&rp, 0, sizeof rp);
  int rc = CVG_OK;
  if (o->execute) {
    if ((rc = journal_open_for_writing(&jn, o->cat, CVG_JOURNAL_CREATE, err)) ||
        (rc = reps_open(&rp, d, err)) || (rc = resume(jn, &rp, o, stats, err))) {
      reps_close(&rp);
      cvg_journal_close(jn);
      return rc;
    }
  }
  /* a merge plan reads every copy's whole row, even in a dry run */
  if (!o->execute && d->policy == CVG_POLICY_MERGE &&
      (rc = reps_open_flags(&rp, d, CVG_STORE_READONLY, err))) {
    reps_close(&rp);
    return rc;
  }
  /* compare now */
  cvg_diff_options dopt;
  cvg_diff_options_from_dataset(&dopt, d);
  dopt.urls = urls;
  dopt.n_urls = d->n_replicas;
  cvg_diff *df = NULL;
  collect col;
  memset(&col, 0, sizeof col);
  col.shard = o->shard;
  col.n_rep = d->n_replicas;
  cvg_diff_summary sum;
  memset(&sum, 0, sizeof sum);
  if (o->keys && !o->execute) {
    rc = cvg_error_set(err, CVG_EINVAL, d->name, "repairing given keys needs execute");
    goto out;
  }
  if ((rc = cvg_diff_prepare(&df, &dopt, err)))
    goto out;
  size_t n_key = 0, n_cmp = 0;
  const char *const *kc = cvg_diff_key_cols(df, &n_key);
  const char *const *cc = cvg_diff_cmp_cols(df, &n_cmp);
  cvg_scan_spec spec;
  memset(&spec, 0, sizeof spec);
  spec.key_cols = kc;
  spec.n_key = n_key;
  spec.cmp_cols = cc;
  spec.n_cmp = n_cmp;
  spec.version_col = cvg_diff_version_col(df); /* as the tables spell them */
  spec.tombstone_col = cvg_diff_tombstone_col(df);
  spec.real_digits = d->real_digits;
  spec.time_digits = d->time_digits;
  if (o->keys)
    rc = compare_keys(o, d, &rp, &spec, &col, &stats->deferred, err);
  else
    rc = cvg_diff_run(df, on_divergence, &col, &sum, err);
  if (rc)
    goto out;
  if (col.oom) {
    rc = cvg_error_set(err, CVG_ENOMEM, d->name, "out of memory collecting divergences");
    goto out;
  }
  stats->divergent = col.n;
  char where[64] = "";
  if (o->shard >= 0)
    snprintf(where, sizeof where, " in shard %ld", o->shard);
  say(o, "%s: %zu divergent key(s)%s; policy %s", d->name, col.n, where,
      cvg_policy_names[d->policy]);
  int64_t run_id = 0;
  if (col.n && (rc = check_limits(o, d, &rp, &col, names, jn, &run_id, stats, err)))
    goto out;
  /* every column of the table, for whole-row writes */
  cvg_table_desc desc;
  memset(&desc, 0, sizeof desc);
  const char **all = NULL;
  size_t n_all = 0;
  if ((o->execute || d->policy == CVG_POLICY_MERGE) && col.n) {
    if ((rc = cvg_store_describe(rp.st[0], &desc, err)))
      goto out;
    if (!(all = calloc(desc.n_cols ? desc.n_cols : 1, sizeof *all))) {
      rc = cvg_error_set(err, CVG_ENOMEM, d->name, "out of memory");
      goto out;
    }
    for (size_t i = 0; i < desc.n_cols; i++)
      all[n_all++] = desc.cols[i].name;
  }
  json_t *specj = spec_json(&spec);
  json_t *colsj = json_array();
  for (size_t c = 0; colsj && c < n_all; c++)
    json_array_append_new(colsj, json_string(all[c]));
  char *specs = specj ? json_dumps(specj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  char *colss = colsj ? json_dumps(colsj, JSON_COMPACT) : NULL;
  runctx x;
  memset(&x, 0, sizeof x);
  x.o = o;
  x.d = d;
  x.names = names;
  x.kc = kc;
  x.n_key = n_key;
  x.spec = &spec;
  x.all = all;
  x.n_all = n_all;
  x.specs = specs;
  x.colss = colss;
  x.batch = o->batch ? o->batch : (d->repair_batch > 0 ? (size_t)d->repair_batch : 2000);
  x.col = &col;
  x.jn = jn;
  x.stats = stats;
  x.rate = o->rows_per_sec > 0 ? o->rows_per_sec : d->repair_rate;
  x.t0 = x.t0r = cvg_wall_now();
  x.err = err;
  x.run_id = run_id;
  pthread_mutex_init(&x.mu, NULL);
  if (jn) {
    unsigned char h[32];
    cvg_journal_head(jn, &x.chain.end, h);
  }
  /* the journal's thread, but not for merges: their sum bases read the journal mid-group */
  if (rc == CVG_OK && jn && o->execute && d->policy != CVG_POLICY_MERGE)
    rc = jpipe_start(&x.jp, jn, x.batch * (1 + d->n_replicas) + 1, err);
  /* a dry run reads the bases of sum columns from the journal, if there is one */
  for (size_t k = 0; !jn && k < d->n_merge && !x.bj; k++)
    if (!strncmp(d->merge_rules[k], "sum", 3) &&
        cvg_journal_open(&x.bj, o->cat->journal, CVG_JOURNAL_READ, NULL) != CVG_OK)
      break;
  /* workers: one per shard in flight; a dry run plans with one */
  size_t nw = o->concurrency > 0 ? (size_t)o->concurrency : (size_t)d->repair_concurrency;
  if (nw < 1 || !o->execute)
    nw = 1;
  if (nw > CVG_REPAIR_MAX_CONCURRENCY)
    nw = CVG_REPAIR_MAX_CONCURRENCY;
  worker ws[CVG_REPAIR_MAX_CONCURRENCY];
  size_t nws = 0;
  if (!specs || !colss)
    rc = cvg_error_set(err, CVG_ENOMEM, d->name, "out of memory");
  for (; rc == CVG_OK && nws < nw; nws++) /* a worker that fails to start is counted, released */
    if ((rc = worker_init(&ws[nws], &x, nws ? NULL : &rp)) && err)
      *err = ws[nws].err;
  if (rc == CVG_OK && nw > 1)
    say(o, "%zu shard(s) at a time", nws);
  /* Stages: everything at once, or (staged) the first shard, verified converged, then growing
   * groups of shards: 2, 4, 8, ... */
  if ((d->repair_staged || nws > 1) && col.n)
    qsort(col.items, col.n, sizeof *col.items, by_shard);
  size_t lo = 0, stage = 0, stage_shards = 1;
  int stopped = 0;
  while (rc == CVG_OK && lo < col.n && !stopped) {
    size_t hi = col.n;
    if (d->repair_staged) {
      size_t shards = 0;
      hi = lo;
      while (hi < col.n && shards < stage_shards) {
        uint32_t sh = col.items[hi].shard;
        shards++;
        while (hi < col.n && col.items[hi].shard == sh)
          hi++;
      }
      stage++;
      say(o, "stage %zu: %zu shard(s), %zu key(s)", stage, shards, hi - lo);
    }
    rc = run_stage(&x, ws, nws, lo, hi);
    stopped = x.stopped;
    /* staged: the stage must have converged before the next one starts */
    if (d->repair_staged && o->execute && rc == CVG_OK && !stopped && !stats->awaiting) {
      size_t left = 0;
      rc = still_divergent(&rp, d, &spec, &col, lo, hi, &left, err);
      if (!rc && left > stats->skipped) {
        say(o,
            "stage %zu did not converge: %zu key(s) still differ; the later stages are not "
            "run",
            stage, left);
        stats->stopped_stage = stage;
        stopped = 1;
      } else if (!rc) {
        say(o, "stage %zu converged", stage);
      }
    }
    lo = hi;
    stage_shards *= 2;
  }
  stats->interrupted = x.stopped;
  stats->keys_done = x.done;
  /* every mutation this run journaled has its outcome (or waits for approval): when nothing
   * else was appended between its groups, the next run's resumption starts after them */
  int unsettled = 0;
  for (size_t i = 0; i < nws; i++)
    unsettled |= ws[i].outcomes_pending;
  if (rc == CVG_OK && jn && o->execute && !unsettled && !x.chain.interleaved)
    cvg_journal_settled_set(jn, d->name, x.chain.end, NULL);
  for (size_t i = 0; i < nws; i++)
    worker_release(&ws[i]);
  json_decref(specj);
  json_decref(colsj);
  free(specs);
  free(colss);
  sum_bases_release(&x.sb);
  cvg_journal_close(x.bj);
  jpipe_stop(x.jp);
  pthread_mutex_destroy(&x.mu);
  free(all);
  cvg_table_desc_release(&desc);
out:
  journal_clock = NULL;
  jrec_release();
  stats->seconds = cvg_wall_now() - t_start;
  collect_free(&col);
  cvg_diff_free(df);
  reps_close(&rp);
  if (jn) {
    cvg_journal_head(jn, &stats->head_seq, stats->head_hash);
    int hrc = cvg_journal_save_head(jn, rc ? NULL : err);
    rc = rc ? rc : hrc;
  }
  cvg_journal_close(jn);
  jrec_release();
  return rc;
}

/* ---- revert and approval ---- */

typedef struct find_ctx {
  int64_t id;
  int found;
  cvg_jkind kind;
  char dataset[128];
  json_t *body; /* OWNED */
} find_ctx;

static int find_cb(void *ctx, const cvg_jrecord *r) {
  find_ctx *f = ctx;
  if (r->seq != f->id)
    return 1;
  f->found = 1;
  f->kind = r->kind;
  snprintf(f->dataset, sizeof f->dataset, "%s", r->dataset);
  f->body = json_loadb(r->body, r->body_len, 0, NULL);
  return 1;
}

/* Opens the journal and the replicas of decision id's dataset. */
static int open_decision(const cvg_catalog *cat, int64_t id, cvg_journal **jn, reps *rp,
                         find_ctx *f, cvg_error *err) {
  memset(f, 0, sizeof *f);
  f->id = id;
  int rc = journal_open_for_writing(jn, cat, CVG_JOURNAL_WRITE, err);
  if (!rc)
    rc = cvg_journal_scan(*jn, id - 1, NULL, NULL, 0, 0, -1, find_cb, f, err);
  if (!rc && (!f->found || f->kind != CVG_J_DECISION))
    rc = cvg_error_set(err, CVG_ENOENT, cat->journal, "record %lld is not a decision",
                       (long long)id);
  size_t ds = 0;
  while (!rc && ds < cat->n_datasets && strcmp(cat->datasets[ds].name, f->dataset) != 0)
    ds++;
  if (!rc && ds == cat->n_datasets)
    rc = cvg_error_set(err, CVG_ENOENT, f->dataset,
                       "decision %lld is of dataset '%s', which is not in the catalog",
                       (long long)id, f->dataset);
  if (!rc)
    rc = reps_open(rp, &cat->datasets[ds], err);
  return rc;
}

int cvg_repair_revert(const cvg_catalog *cat, int64_t decision, cvg_repair_print print,
                      void *print_ctx, cvg_repair_stats *stats, cvg_error *err) {
  memset(stats, 0, sizeof *stats);
  cvg_repair_opts o;
  memset(&o, 0, sizeof o);
  o.print = print;
  o.print_ctx = print_ctx;
  cvg_journal *jn = NULL;
  reps rp;
  memset(&rp, 0, sizeof rp);
  find_ctx f;
  int rc = open_decision(cat, decision, &jn, &rp, &f, err);
  scan_state s;
  memset(&s, 0, sizeof s);
  s.dataset = f.dataset;
  s.decision = decision;
  if (!rc) /* from the start: the spec is in the first decision of the decision's batch */
    rc = cvg_journal_scan(jn, 0, f.dataset, NULL, 0, 0, -1, scan_cb, &s, err);
  if (!rc && s.oom)
    rc = cvg_error_set(err, CVG_ENOMEM, "repair", "out of memory reading the journal");
  /* only what was applied is reverted */
  size_t w = 0;
  for (size_t i = 0; !rc && i < s.n; i++)
    if (s.p[i].outcome == CVG_MUT_APPLIED) {
      s.p[w++] = s.p[i];
    } else {
      json_decref(s.p[i].body);
      json_decref(s.p[i].dbody);
    }
  if (!rc)
    s.n = w;
  if (!rc && w == 0)
    rc = cvg_error_set(err, CVG_EINVAL, cat->journal,
                       "decision %lld has no applied mutation to revert", (long long)decision);
  if (!rc) {
    say(&o, "reverting decision %lld: %zu mutation(s)", (long long)decision, w);
    rc = cvg_journal_begin(jn, err);
    if (!rc) {
      rc = settle(jn, &rp, s.p, w, 1, "revert", stats, &o, err);
      rc = rc ? (cvg_journal_rollback(jn), rc) : cvg_journal_commit(jn, err);
    }
  }
  scan_free(&s);
  json_decref(f.body);
  reps_close(&rp);
  cvg_journal_close(jn);
  jrec_release();
  return rc;
}

/* The run record id: its dataset, or an error naming what id is. */
static int find_run(cvg_journal *jn, const cvg_catalog *cat, int64_t id, find_ctx *f, size_t *ds,
                    cvg_error *err) {
  memset(f, 0, sizeof f[0]);
  f->id = id;
  int rc = cvg_journal_scan(jn, id - 1, NULL, NULL, 0, 0, -1, find_cb, f, err);
  if (!rc && (!f->found || f->kind != CVG_J_RUN))
    rc = cvg_error_set(err, CVG_ENOENT, cat->journal,
                       "record %lld is not a repair run (converge audit show --kind run lists "
                       "them)",
                       (long long)id);
  for (*ds = 0; !rc && *ds < cat->n_datasets && strcmp(cat->datasets[*ds].name, f->dataset); ++*ds)
    ;
  if (!rc && *ds == cat->n_datasets)
    rc = cvg_error_set(err, CVG_ENOENT, f->dataset,
                       "run %lld is of dataset '%s', which is not in the catalog", (long long)id,
                       f->dataset);
  return rc;
}

int cvg_repair_revert_run(const cvg_catalog *cat, int64_t run, cvg_repair_print print,
                          void *print_ctx, cvg_repair_stats *stats, cvg_error *err) {
  memset(stats, 0, sizeof *stats);
  cvg_repair_opts o;
  memset(&o, 0, sizeof o);
  o.print = print;
  o.print_ctx = print_ctx;
  cvg_journal *jn = NULL;
  reps rp;
  memset(&rp, 0, sizeof rp);
  find_ctx f;
  memset(&f, 0, sizeof f);
  size_t ds = 0;
  int rc = journal_open_for_writing(&jn, cat, CVG_JOURNAL_WRITE, err);
  if (!rc)
    rc = find_run(jn, cat, run, &f, &ds, err);
  if (!rc)
    rc = reps_open(&rp, &cat->datasets[ds], err);
  scan_state s;
  memset(&s, 0, sizeof s);
  s.dataset = f.dataset;
  s.run = run;
  if (!rc) /* the run's decisions, their batches' specs and their mutations all follow it */
    rc = cvg_journal_scan(jn, run - 1, f.dataset, NULL, 0, 0, -1, scan_cb, &s, err);
  if (!rc && s.oom)
    rc = cvg_error_set(err, CVG_ENOMEM, "repair", "out of memory reading the journal");
  size_t w = 0, already = 0;
  for (size_t i = 0; !rc && i < s.n; i++) {
    already += s.p[i].reverted;
    if (s.p[i].outcome == CVG_MUT_APPLIED && !s.p[i].reverted) {
      s.p[w++] = s.p[i];
    } else {
      json_decref(s.p[i].body);
      json_decref(s.p[i].dbody);
    }
  }
  if (!rc)
    s.n = w;
  if (!rc && w == 0)
    rc = cvg_error_set(err, CVG_EINVAL, cat->journal,
                       "run %lld has no applied mutation left to revert (%zu decision(s), %zu "
                       "mutation(s) reverted before)",
                       (long long)run, s.n_run_decs, already);
  if (!rc) {
    say(&o, "reverting run %lld: %zu decision(s), %zu applied mutation(s)", (long long)run,
        s.n_run_decs, w);
    rc = cvg_journal_begin(jn, err);
    if (!rc) {
      rc = settle(jn, &rp, s.p, w, 1, "revert of the run", stats, &o, err);
      rc = rc ? (cvg_journal_rollback(jn), rc) : cvg_journal_commit(jn, err);
    }
  }
  scan_free(&s);
  json_decref(f.body);
  reps_close(&rp);
  cvg_journal_close(jn);
  jrec_release();
  return rc;
}

int cvg_repair_approve(const cvg_catalog *cat, int64_t decision, int approve, const char *by,
                       const char *note, cvg_repair_print print, void *print_ctx,
                       cvg_repair_stats *stats, cvg_error *err) {
  memset(stats, 0, sizeof *stats);
  cvg_repair_opts o;
  memset(&o, 0, sizeof o);
  o.print = print;
  o.print_ctx = print_ctx;
  cvg_journal *jn = NULL;
  reps rp;
  memset(&rp, 0, sizeof rp);
  find_ctx f;
  int rc = open_decision(cat, decision, &jn, &rp, &f, err);
  const char *status = f.body ? json_string_value(json_object_get(f.body, "status")) : NULL;
  if (!rc && (!status || strcmp(status, "awaiting_approval") != 0))
    rc = cvg_error_set(err, CVG_EINVAL, cat->journal,
                       "decision %lld does not wait for approval (its policy applied it)",
                       (long long)decision);
  scan_state s;
  memset(&s, 0, sizeof s);
  s.dataset = f.dataset;
  s.decision = decision;
  if (!rc)
    rc = cvg_journal_scan(jn, 0, f.dataset, NULL, 0, 0, -1, scan_cb, &s, err);
  if (!rc && has64(s.settled, s.n_settled, decision))
    rc = cvg_error_set(err, CVG_EINVAL, cat->journal,
                       "decision %lld was already approved or rejected", (long long)decision);
  if (!rc)
    rc = cvg_journal_begin(jn, err);
  if (!rc) {
    rc = jappend(jn, CVG_J_APPROVAL, f.dataset, NULL, 0,
                 json_pack("{s:I, s:b, s:s, s:s}", "decision", (json_int_t)decision, "approved",
                           approve, "by", by ? by : "", "note", note ? note : ""),
                 NULL, err);
    say(&o, "decision %lld %s by %s", (long long)decision, approve ? "approved" : "rejected",
        by ? by : "");
    if (!rc && approve)
      rc = settle(jn, &rp, s.p, s.n, 0, "approved", stats, &o, err);
    rc = rc ? (cvg_journal_rollback(jn), rc) : cvg_journal_commit(jn, err);
  }
  scan_free(&s);
  json_decref(f.body);
  reps_close(&rp);
  cvg_journal_close(jn);
  jrec_release();
  return rc;
}

/* ---- purging tombstones past their grace period ---- */

/* The version as seconds since the epoch, per the dataset's version clock; -1 if it is not. */
static double version_time(const cvg_cat_dataset *d, const unsigned char *ver, size_t len) {
  cvg_value v;
  size_t n = 0;
  cvg_buf scratch;
  cvg_buf_init(&scratch, 1u << 16);
  double t = -1;
  if (cvg_decode_tuple(ver, len, &v, 1, &n, &scratch) == CVG_OK && n == 1) {
    double x = v.type == CVG_INTEGER ? (double)v.u.i : v.type == CVG_REAL ? v.u.r : -1;
    t = x < 0 ? -1 : x / d->version_clock_div;
  }
  cvg_buf_release(&scratch);
  return t;
}

int cvg_repair_purge(const cvg_repair_opts *o, cvg_repair_stats *stats, cvg_error *err) {
  memset(stats, 0, sizeof *stats);
  double t_start = cvg_wall_now();
  const cvg_cat_dataset *d = &o->cat->datasets[o->dataset];
  if (!d->tombstone || !d->version || d->tombstone_grace <= 0 || d->version_clock_div <= 0)
    return cvg_error_set(err, CVG_EINVAL, d->name,
                         "purging tombstones needs tombstone:, version:, and repair: "
                         "{tombstone_grace: DURATION, version_clock: unix_s|unix_ms|unix_us}");
  double cutoff = cvg_wall_now() - d->tombstone_grace;
  reps rp;
  int rc = reps_open_flags(&rp, d, o->execute ? 0 : CVG_STORE_READONLY, err);
  cvg_journal *jn = NULL;
  if (!rc && o->execute)
    rc = journal_open_for_writing(&jn, o->cat, CVG_JOURNAL_CREATE, err);
  cvg_table_desc desc;
  memset(&desc, 0, sizeof desc);
  const char **all = NULL;
  size_t n_all = 0;
  cvg_scan_spec spec;
  memset(&spec, 0, sizeof spec);
  if (!rc)
    rc = cvg_store_describe(rp.st[0], &desc, err);
  if (!rc && !(all = calloc(desc.n_cols ? desc.n_cols : 1, sizeof *all)))
    rc = cvg_error_set(err, CVG_ENOMEM, d->name, "out of memory");
  const char *key_cols[64];
  size_t n_key = 0;
  for (size_t i = 0; !rc && i < desc.n_cols; i++)
    all[n_all++] = desc.cols[i].name;
  if (!rc) {
    if (d->n_key)
      for (size_t i = 0; i < d->n_key && i < 64; i++)
        key_cols[n_key++] = d->key[i];
    else
      for (int pos = 1; pos <= 64; pos++)
        for (size_t c = 0; c < desc.n_cols; c++)
          if (desc.cols[c].pk == pos)
            key_cols[n_key++] = desc.cols[c].name;
    if (!n_key)
      rc = cvg_error_set(err, CVG_ENOKEY, d->name, "the table has no key to purge by");
  }
  spec.key_cols = key_cols;
  spec.n_key = n_key;
  spec.cmp_cols = all; /* every column: purge only copies that are identical */
  spec.n_cmp = n_all;
  int vi = d->version ? cvg_table_desc_find(&desc, d->version) : -1; /* as the table spells them */
  int ti = d->tombstone ? cvg_table_desc_find(&desc, d->tombstone) : -1;
  spec.version_col = vi >= 0 ? desc.cols[vi].name : d->version;
  spec.tombstone_col = ti >= 0 ? desc.cols[ti].name : d->tombstone;
  spec.real_digits = d->real_digits;
  spec.time_digits = d->time_digits;
  /* candidates: tombstones on the first replica older than the cutoff */
  collect col;
  memset(&col, 0, sizeof col);
  col.shard = -1;
  col.n_rep = d->n_replicas;
  cvg_scan *sc = NULL;
  if (!rc)
    rc = cvg_scan_open(rp.st[0], &spec, &sc, err);
  while (!rc && !col.oom) {
    cvg_scan_row row;
    int s = cvg_scan_next(sc, &row, err);
    if (s == CVG_DONE)
      break;
    if ((rc = s))
      break;
    if (!row.tombstone)
      continue;
    double t = version_time(d, row.version, row.version_len);
    if (t < 0 || t > cutoff)
      continue;
    cvg_copy cps[CVG_DIFF_MAX_REPLICAS];
    memset(cps, 0, sizeof cps);
    cps[0].state = CVG_TOMBSTONED;
    cps[0].fp = row.fp;
    cps[0].version = row.version;
    cps[0].version_len = row.version_len;
    cvg_divergence dv = {row.key,
                         row.key_len,
                         cvg_shard_of(row.key, row.key_len, d->shards),
                         CVG_CLASS_TOMBSTONE,
                         d->n_replicas,
                         cps};
    on_divergence(&col, &dv); /* the other copies are looked up below */
  }
  cvg_scan_close(sc);
  if (!rc && col.oom)
    rc = cvg_error_set(err, CVG_ENOMEM, d->name, "out of memory");
  /* keep the keys whose every copy is the same tombstone */
  size_t w = 0;
  for (size_t k = 0; !rc && k < col.n; k++) {
    item *it = &col.items[k];
    int same = 1;
    for (size_t r = 1; !rc && same && r < d->n_replicas; r++) {
      cvg_scan_row row;
      int found = 0;
      rc = cvg_store_lookup(rp.st[r], &spec, it->key, it->key_len, &row, &found, err);
      same = !rc && found && row.tombstone && row.version_len == it->c[0].ver_len &&
             !memcmp(row.version, it->c[0].ver, row.version_len) &&
             !memcmp(&row.fp, &it->c[0].fp, sizeof row.fp);
    }
    if (same) {
      for (size_t r = 1; r < d->n_replicas; r++)
        it->c[r] = it->c[0];
      col.items[w++] = *it;
    } else {
      free(it->block);
    }
  }
  if (!rc)
    col.n = w;
  stats->divergent = col.n;
  say(o, "%s: %zu tombstone(s) identical on every replica and older than the grace of %gs", d->name,
      col.n, d->tombstone_grace);
  /* journal, then conditional deletes, then outcomes: as any repair */
  cvg_buf jb, before;
  cvg_buf_init(&jb, CVG_JOURNAL_BODY_MAX);
  cvg_buf_init(&before, 64u << 20);
  cvg_mutation *muts = calloc(col.n * d->n_replicas + 1, sizeof *muts);
  int64_t *mseq = calloc(col.n * d->n_replicas + 1, sizeof *mseq);
  int *mrep = calloc(col.n * d->n_replicas + 1, sizeof *mrep);
  if (!rc && (!muts || !mseq || !mrep))
    rc = cvg_error_set(err, CVG_ENOMEM, d->name, "out of memory");
  char *specs = NULL, *colss = NULL;
  if (!rc) {
    json_t *sj = spec_json(&spec), *cj = json_array();
    for (size_t c = 0; cj && c < n_all; c++)
      json_array_append_new(cj, json_string(all[c]));
    specs = sj ? json_dumps(sj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    colss = cj ? json_dumps(cj, JSON_COMPACT) : NULL;
    json_decref(sj);
    json_decref(cj);
    if (!specs || !colss)
      rc = cvg_error_set(err, CVG_ENOMEM, d->name, "out of memory");
  }
  size_t nm = 0;
  if (!rc && o->execute && col.n)
    rc = cvg_journal_begin(jn, err);
  for (size_t k = 0; !rc && k < col.n; k++) {
    item *it = &col.items[k];
    json_t *kj = cvg_key_to_json(it->key, it->key_len, key_cols, n_key);
    char *ks = kj ? json_dumps(kj, JSON_COMPACT) : NULL;
    json_decref(kj);
    char vt[64], why[400];
    time_t vsec = (time_t)version_time(d, it->c[0].ver, it->c[0].ver_len);
    struct tm tm;
    gmtime_r(&vsec, &tm);
    strftime(vt, sizeof vt, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(why, sizeof why,
             "purge: the tombstone of %s is identical on every replica and older than the grace "
             "period (%gs)",
             vt, d->tombstone_grace);
    if (!o->execute || o->verbose)
      say(o, "%s %s shard %u: delete on every replica - %s", o->execute ? "purge" : "plan",
          ks ? ks : "?", it->shard, why);
    stats->decisions++;
    stats->mutations += d->n_replicas;
    if (!o->execute) {
      free(ks);
      continue;
    }
    cvg_buf_reset(&jb);
    int wrc = jw_raw(&jb, "{\"class\":\"tombstone\",\"columns\":") || jw_raw(&jb, colss) ||
              jw_raw(&jb, ",\"key\":") || jw_raw(&jb, ks ? ks : "null") ||
              jw_raw(&jb, ",\"policy\":\"purge\",\"rationale\":") || jw_str(&jb, why) ||
              jw_raw(&jb, ",\"spec\":") || jw_raw(&jb, specs) ||
              jw_raw(&jb, ",\"status\":\"planned\",\"winner\":null}");
    free(ks);
    int64_t dseq = 0;
    rc = wrc ? cvg_error_set(err, CVG_ENOMEM, d->name, "out of memory")
             : jappend_buf(jn, CVG_J_DECISION, d->name, it->key, it->key_len, &jb, &dseq, err);
    for (size_t r = 0; !rc && r < d->n_replicas; r++) {
      int found = 0;
      cvg_buf_reset(&before);
      if ((rc = cvg_store_fetch(rp.st[r], &spec, it->key, it->key_len, all, n_all, &before, &found,
                                err)))
        break;
      icopy gone = {CVG_ABSENT, {0, 0}, NULL, 0};
      char dnum[48];
      snprintf(dnum, sizeof dnum, ",\"decision\":%lld,\"expect\":", (long long)dseq);
      cvg_buf_reset(&jb);
      wrc = jw_raw(&jb, "{\"before_values\":") ||
            (found ? jw_hex(&jb, before.data, before.len) : jw_raw(&jb, "null")) ||
            jw_raw(&jb, dnum) || jw_state(&jb, &it->c[r]) ||
            jw_raw(&jb, ",\"op\":\"delete\",\"replica\":") || jw_str(&jb, d->replicas[r].name) ||
            jw_raw(&jb, ",\"target\":") || jw_state(&jb, &gone) || jw_raw(&jb, ",\"values\":null}");
      rc =
          wrc ? cvg_error_set(err, CVG_ENOMEM, d->name, "out of memory")
              : jappend_buf(jn, CVG_J_MUTATION, d->name, it->key, it->key_len, &jb, &mseq[nm], err);
      cvg_mutation *m = &muts[nm];
      memset(m, 0, sizeof *m);
      m->key = it->key;
      m->key_len = it->key_len;
      m->op = CVG_MUT_DELETE;
      m->expect_present = 1;
      m->expect_tombstone = 1;
      m->expect_version = it->c[0].ver;
      m->expect_version_len = it->c[0].ver_len;
      m->expect_fp = it->c[0].fp;
      mrep[nm++] = (int)r;
    }
  }
  if (!rc && o->execute && col.n) {
    rc = jcommit(jn, err);
    for (size_t r = 0; !rc && r < d->n_replicas; r++) {
      size_t ng = 0;
      cvg_mutation *grp = calloc(nm + 1, sizeof *grp);
      if (!grp) {
        rc = cvg_error_set(err, CVG_ENOMEM, d->name, "out of memory");
        break;
      }
      for (size_t i = 0; i < nm; i++)
        if (mrep[i] == (int)r)
          grp[ng++] = muts[i];
      cvg_error aerr;
      cvg_error_clear(&aerr);
      if (ng)
        cvg_store_apply(rp.st[r], &spec, grp, ng, &aerr);
      for (size_t i = 0, g = 0; i < nm; i++)
        if (mrep[i] == (int)r) {
          muts[i] = grp[g++];
          if (muts[i].result == CVG_MUT_PENDING) {
            muts[i].result = CVG_MUT_FAILED;
            snprintf(muts[i].reason, sizeof muts[i].reason, "%.190s", aerr.msg);
          }
        }
      free(grp);
    }
    json_t *outs = json_array();
    for (size_t i = 0; !rc && outs && i < nm; i++) {
      stats->applied += muts[i].result == CVG_MUT_APPLIED;
      stats->skipped += muts[i].result == CVG_MUT_SKIPPED;
      stats->failed += muts[i].result == CVG_MUT_FAILED;
      json_array_append_new(outs,
                            json_pack("{s:I, s:s, s:s}", "mutation", (json_int_t)mseq[i], "result",
                                      result_name(muts[i].result), "reason", muts[i].reason));
    }
    if (!rc && !outs)
      rc = cvg_error_set(err, CVG_ENOMEM, d->name, "out of memory");
    if (!rc && !(rc = cvg_journal_begin(jn, err))) {
      rc = jappend(jn, CVG_J_OUTCOME, d->name, NULL, 0, json_pack("{s:o}", "outcomes", outs), NULL,
                   err);
      outs = NULL;
      rc = rc ? (cvg_journal_rollback(jn), rc) : jcommit(jn, err);
    }
    json_decref(outs);
  }
  free(specs);
  free(colss);
  free(muts);
  free(mseq);
  free(mrep);
  cvg_buf_release(&jb);
  cvg_buf_release(&before);
  collect_free(&col);
  free(all);
  cvg_table_desc_release(&desc);
  reps_close(&rp);
  cvg_journal_close(jn);
  jrec_release();
  stats->seconds = cvg_wall_now() - t_start;
  return rc;
}
