/* SPDX-License-Identifier: MIT */
/*
 * The chaos lab (see chaos.h and docs/chaos.md).
 *
 * One thread runs the system in real time, in ticks of 10 ms:
 *   - the workload: writes due by now (rate x elapsed) are applied to the authority (replica 0),
 *     recorded in the model (what every replica must finally hold), and queued on every link;
 *     operation i (its kind, key and value) is a pure function of the seed;
 *   - replication: each link delivers its queue in order once a change's delivery time has
 *     come, applying it blindly (INSERT OR REPLACE), as a naive log shipper does - so a lost,
 *     reordered or duplicated change leaves a wrong row behind; converge's own tables (heartbeat,
 *     canary) are shipped as snapshots through the same links;
 *   - the faults of the scenario start and end on schedule;
 *   - every 300 ms the observer reads the watch's API (confirmed divergences, alerts) and the
 *     replicas themselves, and settles each fault's verdict: detected (a confirmed divergence of
 *     a key it touched, a repair decision in the journal for one, or an alert naming its
 *     replica), the highest alert stage, repaired (every key it touched equal to the authority
 *     again), or masked (replication itself overwrote every key it spoiled before anything
 *     could see it: nothing lasting to detect).
 * `converge watch` runs as a child process with a generated catalog (policy authority,
 * auto_repair), so what is measured is the real monitor, alert engine and repairer.
 * At the end the workload stops, every fault is healed, the links drain, and the replicas get
 * `settle` seconds to converge; then each replica is checked row by row against the model:
 * lost (a model row missing or older), resurrected (live where the model has a tombstone),
 * duplicated (a row the model never had), corrupt (same version, other values).
 */
#include "converge/mclock.h"
#include "converge/chaos.h"
#include "converge/catalog.h"
#include "converge/encode.h"
#include "converge/journal.h"
#include "converge/json.h"
#include "converge/version.h"
#include "flight.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>

const char *const cvg_fault_names[] = {"drop",      "delay",        "reorder",      "duplicate",
                                       "partition", "corrupt",      "clock_skew",   "stop",
                                       "crash",     "direct_write", "schema_change"};

/* ---- small things ---- */

static void sleep_s(double s) {
  if (s <= 0)
    return;
  struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
  nanosleep(&ts, NULL);
}

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static double unit(uint64_t *s) {
  return (double)(splitmix(s) >> 11) / 9007199254740992.0;
}

static void say(const cvg_chaos_opts *o, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void say(const cvg_chaos_opts *o, const char *fmt, ...) {
  if (!o->print)
    return;
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  o->print(o->print_ctx, line);
}

/* ---- the scenario file ---- */

typedef struct sparser {
  const char *path;
  yaml_document_t doc;
  cvg_error *err;
} sparser;

static int sfail(sparser *p, const yaml_node_t *n, const char *hint, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static int sfail(sparser *p, const yaml_node_t *n, const char *hint, const char *fmt, ...) {
  char msg[400], where[600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n)
    snprintf(where, sizeof where, "%s:%lu:%lu", p->path, (unsigned long)n->start_mark.line + 1,
             (unsigned long)n->start_mark.column + 1);
  else
    snprintf(where, sizeof where, "%s", p->path);
  cvg_error_set(p->err, CVG_ECONFIG, where, "%s", msg);
  if (hint)
    cvg_error_hint(p->err, "%s", hint);
  return CVG_ECONFIG;
}

static const char *scalar(const yaml_node_t *n) {
  return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int s_num(sparser *p, yaml_node_t *v, const char *key, double lo, double hi, double *out) {
  const char *s = scalar(v);
  char *end = NULL;
  double x = s ? strtod(s, &end) : 0;
  if (!s || !*s || *end || x != x || x < lo || x > hi)
    return sfail(p, v, NULL, "'%s' must be a number from %g to %g", key, lo, hi);
  *out = x;
  return CVG_OK;
}

static int s_dur(sparser *p, yaml_node_t *v, const char *key, double *out) {
  const char *s = scalar(v);
  if (!s || cvg_parse_duration(s, out) != 0 || *out > 86400)
    return sfail(p, v, "write a duration such as 500ms, 10s or 2m", "'%s' must be a duration", key);
  return CVG_OK;
}

/* Walks a mapping: for each pair, the key must be one of allowed. */
typedef struct spair {
  const char *key;
  yaml_node_t *k, *v;
} spair;

static int s_map(sparser *p, yaml_node_t *m, const char *what, const char *const *allowed,
                 spair *out, size_t max, size_t *n) {
  *n = 0;
  if (!m || m->type != YAML_MAPPING_NODE)
    return sfail(p, m, NULL, "%s must be a mapping", what);
  for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top; pr++) {
    yaml_node_t *k = yaml_document_get_node(&p->doc, pr->key);
    yaml_node_t *v = yaml_document_get_node(&p->doc, pr->value);
    const char *ks = scalar(k);
    int ok = 0;
    for (size_t i = 0; ks && allowed[i]; i++)
      ok |= !strcmp(ks, allowed[i]);
    if (!ok) {
      char list[400] = "";
      size_t o = 0;
      for (size_t i = 0; allowed[i] && o < sizeof list; i++)
        o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "", allowed[i]);
      return sfail(p, k, NULL, "unknown key '%s' in %s; expected one of: %s", ks ? ks : "?", what,
                   list);
    }
    if (*n == max)
      return sfail(p, k, NULL, "too many keys in %s", what);
    out[*n].key = ks;
    out[*n].k = k;
    out[(*n)++].v = v;
  }
  return CVG_OK;
}

static int s_fault(sparser *p, yaml_node_t *n, const cvg_chaos_scenario *sc, cvg_chaos_fault *f) {
  static const char *const keys[] = {"kind",    "replica", "at",   "for",  "probability",
                                     "latency", "ramp",    "skew", "rows", NULL};
  spair kv[16];
  size_t nk = 0;
  int rc = s_map(p, n, "a fault", keys, kv, 16, &nk);
  if (rc)
    return rc;
  memset(f, 0, sizeof *f);
  f->kind = CVG_FAULT__COUNT;
  f->replica = -1;
  f->probability = 1;
  f->rows = 5;
  f->at = -1;
  for (size_t i = 0; i < nk && !rc; i++) {
    const char *k = kv[i].key;
    yaml_node_t *v = kv[i].v;
    double x;
    if (!strcmp(k, "kind")) {
      const char *s = scalar(v);
      for (int c = 0; s && c < CVG_FAULT__COUNT; c++)
        if (!strcmp(s, cvg_fault_names[c]))
          f->kind = (cvg_fault_kind)c;
      if (f->kind == CVG_FAULT__COUNT)
        rc = sfail(p, v,
                   "drop, delay, reorder, duplicate, partition, corrupt, clock_skew, stop, "
                   "crash, direct_write or schema_change",
                   "unknown fault kind '%s'", s ? s : "?");
    } else if (!strcmp(k, "replica")) {
      if (!(rc = s_num(p, v, "replica", 2, sc->replicas, &x)))
        f->replica = (int)x - 1;
    } else if (!strcmp(k, "at")) {
      rc = s_dur(p, v, "at", &f->at);
    } else if (!strcmp(k, "for")) {
      rc = s_dur(p, v, "for", &f->duration);
    } else if (!strcmp(k, "probability")) {
      rc = s_num(p, v, "probability", 0, 1, &f->probability);
    } else if (!strcmp(k, "latency")) {
      rc = s_dur(p, v, "latency", &f->latency);
    } else if (!strcmp(k, "ramp")) {
      rc = s_dur(p, v, "ramp", &f->ramp);
    } else if (!strcmp(k, "skew")) {
      rc = s_dur(p, v, "skew", &f->skew);
    } else if (!strcmp(k, "rows")) {
      if (!(rc = s_num(p, v, "rows", 1, 10000, &x)))
        f->rows = (int)x;
    }
  }
  if (rc)
    return rc;
  if (f->kind == CVG_FAULT__COUNT)
    return sfail(p, n, "add kind: drop|delay|...", "a fault needs a kind");
  if (f->replica < 1)
    return sfail(p, n, "replica 1 is the authority; name another, e.g. replica: 2",
                 "a fault needs the replica it hits (2 to %d)", sc->replicas);
  if (f->at < 0)
    return sfail(p, n, "add at: 10s (from the start of the workload)", "a fault needs 'at'");
  int lasting = f->kind == CVG_FAULT_DROP || f->kind == CVG_FAULT_DELAY ||
                f->kind == CVG_FAULT_REORDER || f->kind == CVG_FAULT_DUPLICATE ||
                f->kind == CVG_FAULT_PARTITION || f->kind == CVG_FAULT_STOP ||
                f->kind == CVG_FAULT_CRASH || f->kind == CVG_FAULT_SCHEMA;
  if (lasting && f->duration <= 0)
    return sfail(p, n, "add for: 5s", "a %s fault lasts a while: it needs 'for'",
                 cvg_fault_names[f->kind]);
  if (f->kind == CVG_FAULT_DELAY && f->latency <= 0)
    return sfail(p, n, "add latency: 5s", "a delay fault needs 'latency'");
  if (f->ramp > 0 && f->kind != CVG_FAULT_DELAY)
    return sfail(p, n, "remove ramp, or make the fault a delay", "only a delay fault has a ramp");
  if (f->ramp > f->duration)
    return sfail(p, n, "make ramp at most 'for'", "the ramp (%gs) is longer than the fault (%gs)",
                 f->ramp, f->duration);
  if (f->kind == CVG_FAULT_CLOCK_SKEW && f->skew <= 0)
    f->skew = 3600;
  if (f->kind == CVG_FAULT_DUPLICATE && f->latency <= 0)
    f->latency = 1;
  if (f->at + f->duration > sc->duration)
    return sfail(p, n, "make the scenario's duration longer, or the fault earlier",
                 "the fault ends at %gs, after the scenario's duration (%gs)", f->at + f->duration,
                 sc->duration);
  return CVG_OK;
}

int cvg_chaos_parse(const char *path, const char *text, size_t len, cvg_chaos_scenario *sc,
                    cvg_error *err) {
  memset(sc, 0, sizeof *sc);
  sc->seed = 1;
  sc->duration = 30;
  sc->replicas = 3;
  sc->rows = 2000;
  sc->rate = 100;
  sc->zipf_s = 1.1;
  sc->mix_update = 80;
  sc->mix_insert = 15;
  sc->mix_delete = 5;
  sc->latency = 0.05;
  sc->jitter = 0.02;
  sc->settle = 60;
  sc->max_lag = 2;
  sc->confirm_within = 10;
  const char *base = strrchr(path, '/');
  snprintf(sc->name, sizeof sc->name, "%s", base ? base + 1 : path);
  char *dot = strrchr(sc->name, '.');
  if (dot && (!strcmp(dot, ".yaml") || !strcmp(dot, ".yml")))
    *dot = '\0';
  sparser p = {.path = path, .err = err};
  yaml_parser_t yp;
  yaml_parser_initialize(&yp);
  yaml_parser_set_input_string(&yp, (const unsigned char *)text, len);
  if (!yaml_parser_load(&yp, &p.doc)) {
    char where[600];
    snprintf(where, sizeof where, "%s:%lu:%lu", path, (unsigned long)yp.problem_mark.line + 1,
             (unsigned long)yp.problem_mark.column + 1);
    cvg_error_set(err, CVG_ECONFIG, where, "not valid YAML: %s",
                  yp.problem ? yp.problem : "parse error");
    yaml_parser_delete(&yp);
    return CVG_ECONFIG;
  }
  yaml_parser_delete(&yp);
  int rc = CVG_OK;
  yaml_node_t *root = yaml_document_get_root_node(&p.doc);
  static const char *const top[] = {"name",    "seed",           "duration",    "replicas",
                                    "rows",    "workload",       "replication", "settle",
                                    "max_lag", "confirm_within", "faults",      NULL};
  spair kv[16];
  size_t nk = 0;
  if (!root)
    rc = sfail(&p, NULL, "see examples/chaos/", "the scenario is empty");
  else
    rc = s_map(&p, root, "the scenario", top, kv, 16, &nk);
  yaml_node_t *faults = NULL;
  for (size_t i = 0; i < nk && !rc; i++) {
    const char *k = kv[i].key;
    yaml_node_t *v = kv[i].v;
    double x;
    if (!strcmp(k, "name")) {
      if (!scalar(v) || !*scalar(v))
        rc = sfail(&p, v, NULL, "'name' must be text");
      else
        snprintf(sc->name, sizeof sc->name, "%s", scalar(v));
    } else if (!strcmp(k, "seed")) {
      if (!(rc = s_num(&p, v, "seed", 0, 9007199254740991.0, &x)))
        sc->seed = (uint64_t)x;
    } else if (!strcmp(k, "duration")) {
      if (!(rc = s_dur(&p, v, "duration", &sc->duration)) && sc->duration < 1)
        rc = sfail(&p, v, NULL, "'duration' must be at least 1s");
    } else if (!strcmp(k, "replicas")) {
      if (!(rc = s_num(&p, v, "replicas", 2, CVG_CHAOS_MAX_REPLICAS, &x)))
        sc->replicas = (int)x;
    } else if (!strcmp(k, "rows")) {
      if (!(rc = s_num(&p, v, "rows", 10, 10000000, &x)))
        sc->rows = (int)x;
    } else if (!strcmp(k, "settle")) {
      rc = s_dur(&p, v, "settle", &sc->settle);
    } else if (!strcmp(k, "max_lag")) {
      rc = s_dur(&p, v, "max_lag", &sc->max_lag);
    } else if (!strcmp(k, "confirm_within")) {
      if (!(rc = s_dur(&p, v, "confirm_within", &sc->confirm_within)) && sc->confirm_within < 1)
        rc = sfail(&p, v, NULL, "'confirm_within' must be at least 1s");
    } else if (!strcmp(k, "faults")) {
      faults = v;
    } else if (!strcmp(k, "workload")) {
      static const char *const wk[] = {"rate", "skew", "zipf_s", "mix", NULL};
      spair w[8];
      size_t nw = 0;
      rc = s_map(&p, v, "workload", wk, w, 8, &nw);
      for (size_t j = 0; j < nw && !rc; j++) {
        if (!strcmp(w[j].key, "rate")) {
          rc = s_num(&p, w[j].v, "rate", 1, 100000, &sc->rate);
        } else if (!strcmp(w[j].key, "zipf_s")) {
          rc = s_num(&p, w[j].v, "zipf_s", 1.01, 5, &sc->zipf_s);
        } else if (!strcmp(w[j].key, "skew")) {
          const char *s = scalar(w[j].v);
          if (s && !strcmp(s, "uniform"))
            sc->zipf = 0;
          else if (s && !strcmp(s, "zipf"))
            sc->zipf = 1;
          else
            rc = sfail(&p, w[j].v, "uniform or zipf", "unknown key skew '%s'", s ? s : "?");
        } else if (!strcmp(w[j].key, "mix")) {
          static const char *const mk[] = {"update", "insert", "delete", NULL};
          spair m[4];
          size_t nm = 0;
          rc = s_map(&p, w[j].v, "mix", mk, m, 4, &nm);
          if (!rc && nm)
            sc->mix_update = sc->mix_insert = sc->mix_delete = 0;
          for (size_t q = 0; q < nm && !rc; q++) {
            rc = s_num(&p, m[q].v, m[q].key, 0, 100, &x);
            int *dst = !strcmp(m[q].key, "update")   ? &sc->mix_update
                       : !strcmp(m[q].key, "insert") ? &sc->mix_insert
                                                     : &sc->mix_delete;
            *dst = (int)x;
          }
          if (!rc && sc->mix_update + sc->mix_insert + sc->mix_delete != 100)
            rc = sfail(&p, w[j].v, "e.g. {update: 80, insert: 15, delete: 5}",
                       "the mix must add up to 100 (it adds up to %d)",
                       sc->mix_update + sc->mix_insert + sc->mix_delete);
        }
      }
    } else if (!strcmp(k, "replication")) {
      static const char *const rk[] = {"latency", "jitter", NULL};
      spair r[4];
      size_t nr = 0;
      rc = s_map(&p, v, "replication", rk, r, 4, &nr);
      for (size_t j = 0; j < nr && !rc; j++)
        rc = s_dur(&p, r[j].v, r[j].key, !strcmp(r[j].key, "latency") ? &sc->latency : &sc->jitter);
    }
  }
  if (!rc && faults) {
    if (faults->type != YAML_SEQUENCE_NODE) {
      rc = sfail(&p, faults, "a list of faults: - {kind: drop, replica: 2, at: 5s, for: 3s}",
                 "'faults' must be a list");
    } else {
      for (yaml_node_item_t *it = faults->data.sequence.items.start;
           !rc && it < faults->data.sequence.items.top; it++) {
        if (sc->n_faults == CVG_CHAOS_MAX_FAULTS) {
          rc = sfail(&p, faults, NULL, "at most %d faults", CVG_CHAOS_MAX_FAULTS);
          break;
        }
        rc = s_fault(&p, yaml_document_get_node(&p.doc, *it), sc, &sc->faults[sc->n_faults]);
        if (!rc)
          sc->n_faults++;
      }
    }
  }
  yaml_document_delete(&p.doc);
  return rc;
}

int cvg_chaos_load(const char *path, cvg_chaos_scenario *sc, cvg_error *err) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    memset(sc, 0, sizeof *sc);
    return cvg_error_set(err, CVG_ENOENT, path, "cannot open the scenario: %s", strerror(errno));
  }
  char *text = NULL;
  size_t len = 0, cap = 0, n;
  char chunk[8192];
  int rc = CVG_OK;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
    if (len + n > (4u << 20)) {
      rc = cvg_error_set(err, CVG_ETOOBIG, path, "the scenario is larger than 4 MiB");
      break;
    }
    if (len + n > cap) {
      size_t nc = cap ? 2 * cap : 16384;
      while (nc < len + n)
        nc *= 2;
      char *g = realloc(text, nc);
      if (!g) {
        rc = cvg_error_set(err, CVG_ENOMEM, path, "out of memory");
        break;
      }
      text = g;
      cap = nc;
    }
    memcpy(text + len, chunk, n);
    len += n;
  }
  if (!rc && ferror(f))
    rc = cvg_error_set(err, CVG_EIO, path, "cannot read the scenario: %s", strerror(errno));
  fclose(f);
  if (!rc)
    rc = cvg_chaos_parse(path, text ? text : "", len, sc, err);
  free(text);
  return rc;
}

/* ---- the system ---- */

typedef struct mrow {
  int64_t ver, balance;
  uint8_t exists, deleted, writer;
} mrow;

/* A snapshot of one of converge's own tables on the authority, shipped whole. */
typedef struct aux {
  int refs;
  char table[64];
  char *create_sql; /* OWNED */
  int ncol;
  sqlite3_value **cells; /* OWNED: nrows x ncol */
  size_t nrows;
} aux;

typedef struct chg {
  int64_t id, ver, balance;
  uint8_t deleted, writer;
  aux *a; /* a snapshot instead of a row */
  double due;
} chg;

typedef struct cqueue {
  chg *v;
  size_t head, n, cap;
} cqueue;

typedef struct rlink {
  cqueue q;    /* in order: delivered head first, once due */
  cqueue side; /* duplicated copies, delivered whenever due */
  int held;    /* partition or crash: nothing delivered */
  int stopped; /* replication stopped: changes are lost */
  double extra_latency;
  double drop_p, dup_p, reorder_p, dup_latency;
  int fault_drop, fault_dup, fault_reorder, fault_span; /* the faults feeding entries, or -1 */
} rlink;

typedef struct entry {
  int64_t id, ver;
  int masked;
} entry;

typedef struct fstate {
  entry *e;
  size_t n, cap;
  int injected, healed, done;
  double t_inject, t_heal, t_repaired;
  int oom;
} fstate;

typedef struct seen_alert {
  char key[160];
  int false_alarm;
} seen_alert;

typedef struct lab {
  cvg_chaos_scenario *sc;
  const cvg_chaos_opts *o;
  char paths[CVG_CHAOS_MAX_REPLICAS][600];
  char names[CVG_CHAOS_MAX_REPLICAS][16];
  sqlite3 *db[CVG_CHAOS_MAX_REPLICAS];
  sqlite3_stmt *put[CVG_CHAOS_MAX_REPLICAS], *get[CVG_CHAOS_MAX_REPLICAS];
  int down[CVG_CHAOS_MAX_REPLICAS];
  rlink link[CVG_CHAOS_MAX_REPLICAS];
  mrow *model;
  int64_t next_id, cap_ids, last_ver;
  uint64_t ops_rng, fault_rng, ops;
  uint64_t digest;
  double t0, t_end;
  fstate fs[CVG_CHAOS_MAX_FAULTS];
  pid_t watch;
  int port;
  char base_url[64];
  char journal[600];
  int64_t journal_seq;
  CURL *curl;
  seen_alert *alerts;
  size_t n_alerts, cap_alerts;
  size_t true_alerts, false_alarms;
  cvgi_flight *flight; /* what each link carries, for the per-key judge */
  uint64_t conf_after; /* the last confirmation read from the watch */
  size_t confirmations, fconf, unjudged, unexplained, inflight_repairs;
  int64_t *inflight_muts; /* journaled mutations written while their row was in flight */
  size_t n_im, cap_im;
  int oom;
} lab;

static double elapsed(const lab *L) {
  return L->t0 > 0 ? cvg_wall_now() - L->t0 : 0;
}

static int64_t now_us(void) {
  return (int64_t)(cvg_wall_now() * 1e6);
}

static void fnv(uint64_t *h, uint64_t v) {
  for (int i = 0; i < 8; i++) {
    *h ^= (v >> (8 * i)) & 0xff;
    *h *= 0x100000001b3ull;
  }
}

static int cq_push(cqueue *q, const chg *c) {
  if (q->head + q->n == q->cap) {
    if (q->head > q->cap / 2) {
      memmove(q->v, q->v + q->head, q->n * sizeof *q->v);
      q->head = 0;
    } else {
      size_t cap = q->cap ? 2 * q->cap : 1024;
      chg *nv = realloc(q->v, cap * sizeof *nv);
      if (!nv)
        return -1;
      q->v = nv;
      q->cap = cap;
    }
  }
  q->v[q->head + q->n++] = *c;
  if (c->a)
    c->a->refs++;
  return 0;
}

static void aux_release(aux *a) {
  if (!a || --a->refs > 0)
    return;
  for (size_t i = 0; i < a->nrows * (size_t)a->ncol; i++)
    sqlite3_value_free(a->cells[i]);
  free(a->cells);
  free(a->create_sql);
  free(a);
}

static int entry_add(fstate *f, int64_t id, int64_t ver) {
  if (f->n == f->cap) {
    size_t cap = f->cap ? 2 * f->cap : 64;
    entry *ne = realloc(f->e, cap * sizeof *ne);
    if (!ne) {
      f->oom = 1;
      return -1;
    }
    f->e = ne;
    f->cap = cap;
  }
  f->e[f->n].id = id;
  f->e[f->n].ver = ver;
  f->e[f->n++].masked = 0;
  return 0;
}

static int key_fault(cvg_fault_kind k) {
  return k == CVG_FAULT_DROP || k == CVG_FAULT_REORDER || k == CVG_FAULT_DUPLICATE ||
         k == CVG_FAULT_CORRUPT || k == CVG_FAULT_CLOCK_SKEW || k == CVG_FAULT_DIRECT_WRITE;
}

/* ---- replicas ---- */

static const char table_sql[] =
    "CREATE TABLE IF NOT EXISTS accounts(id INTEGER PRIMARY KEY, owner TEXT NOT NULL,"
    " balance INTEGER NOT NULL, updated_at INTEGER NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,"
    " writer TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS accounts_updated_at ON accounts(updated_at);";

static int open_replica(lab *L, int r, cvg_error *err) {
  if (sqlite3_open_v2(L->paths[r], &L->db[r], SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
      SQLITE_OK) {
    cvg_error_set(err, CVG_EIO, L->paths[r], "cannot open the replica: %s",
                  L->db[r] ? sqlite3_errmsg(L->db[r]) : "out of memory");
    return CVG_EIO;
  }
  sqlite3_busy_timeout(L->db[r], 5000);
  if (sqlite3_exec(L->db[r], "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL,
                   NULL) != SQLITE_OK ||
      sqlite3_exec(L->db[r], table_sql, NULL, NULL, NULL) != SQLITE_OK ||
      sqlite3_prepare_v2(L->db[r],
                         "INSERT OR REPLACE INTO accounts(id, owner, balance, updated_at, deleted,"
                         " writer) VALUES (?1, 'acct-' || ?1, ?2, ?3, ?4, ?5)",
                         -1, &L->put[r], NULL) != SQLITE_OK ||
      sqlite3_prepare_v2(L->db[r],
                         "SELECT balance, updated_at, deleted FROM accounts WHERE id = ?1", -1,
                         &L->get[r], NULL) != SQLITE_OK) {
    cvg_error_set(err, CVG_EIO, L->paths[r], "cannot prepare the replica: %s",
                  sqlite3_errmsg(L->db[r]));
    return CVG_EIO;
  }
  return CVG_OK;
}

static void close_replica(lab *L, int r) {
  sqlite3_finalize(L->put[r]);
  sqlite3_finalize(L->get[r]);
  sqlite3_close(L->db[r]);
  L->put[r] = L->get[r] = NULL;
  L->db[r] = NULL;
}

static const char *const writer_names[] = {"app-1", "app-2",    "app-3",
                                           "app-4", "intruder", "skewed"};

static int put_row(lab *L, int r, int64_t id, int64_t bal, int64_t ver, int del, int w) {
  sqlite3_stmt *s = L->put[r];
  sqlite3_reset(s);
  sqlite3_bind_int64(s, 1, id);
  sqlite3_bind_int64(s, 2, bal);
  sqlite3_bind_int64(s, 3, ver);
  sqlite3_bind_int(s, 4, del);
  sqlite3_bind_text(s, 5, writer_names[w % 6], -1, SQLITE_STATIC);
  int rc = sqlite3_step(s);
  sqlite3_reset(s);
  return rc == SQLITE_DONE ? 0 : -1;
}

/* A replica's row: 1 found, 0 absent, -1 error. */
static int get_row(lab *L, int r, int64_t id, int64_t *bal, int64_t *ver, int *del) {
  sqlite3_stmt *s = L->get[r];
  if (!s)
    return -1;
  sqlite3_reset(s);
  sqlite3_bind_int64(s, 1, id);
  int rc = sqlite3_step(s), found = 0;
  if (rc == SQLITE_ROW) {
    *bal = sqlite3_column_int64(s, 0);
    *ver = sqlite3_column_int64(s, 1);
    *del = sqlite3_column_int(s, 2);
    found = 1;
  } else if (rc != SQLITE_DONE) {
    found = -1;
  }
  sqlite3_reset(s);
  return found;
}

/* Is key id on replica r the authority's row? */
static int same_as_authority(lab *L, int r, int64_t id) {
  int64_t b0 = 0, v0 = 0, b1 = 0, v1 = 0;
  int d0 = 0, d1 = 0;
  int f0 = get_row(L, 0, id, &b0, &v0, &d0), f1 = get_row(L, r, id, &b1, &v1, &d1);
  if (f0 < 0 || f1 < 0)
    return 0;
  if (f0 == 1 && d0 && f1 == 0)
    return 1; /* a tombstone and no row: deleted on both */
  return f0 == f1 && (!f0 || (b0 == b1 && v0 == v1 && d0 == d1));
}

/* Equal to the authority, or behind it only by a change still on its way (written less than the
 * link's latency ago: versions are the authority's clock in microseconds). */
static int settled(lab *L, int r, int64_t id) {
  if (same_as_authority(L, r, id))
    return 1;
  int64_t b0 = 0, v0 = 0, b1 = 0, v1 = 0;
  int d0 = 0, d1 = 0;
  if (get_row(L, 0, id, &b0, &v0, &d0) != 1)
    return 0;
  int f1 = get_row(L, r, id, &b1, &v1, &d1);
  double window = L->sc->latency + L->sc->jitter + L->link[r].extra_latency + 0.3;
  return (f1 == 0 || (f1 == 1 && v1 < v0)) && (double)(now_us() - v0) / 1e6 < window;
}

/* ---- the workload ---- */

static int64_t pick_key(lab *L) {
  double n = (double)(L->next_id - 1);
  double u = unit(&L->ops_rng);
  if (!L->sc->zipf)
    return 1 + (int64_t)(u * n);
  double s = L->sc->zipf_s, x = pow((pow(n, 1 - s) - 1) * u + 1, 1 / (1 - s));
  int64_t k = (int64_t)x;
  return k < 1 ? 1 : k > L->next_id - 1 ? L->next_id - 1 : k;
}

static int64_t next_ver(lab *L) {
  int64_t v = now_us();
  if (v <= L->last_ver)
    v = L->last_ver + 1;
  return L->last_ver = v;
}

/* Queues change c on every link, through the link's faults. pair: 0 alone, 1 the first of a
 * pair (held back for reordering), 2 the second. */
static void ship(lab *L, const chg *c, const chg *first) {
  double now = cvg_wall_now();
  for (int r = 1; r < L->sc->replicas; r++) {
    rlink *k = &L->link[r];
    chg x = *c;
    x.due = now + L->sc->latency + unit(&L->fault_rng) * L->sc->jitter + k->extra_latency;
    if (k->fault_span >= 0)
      entry_add(&L->fs[k->fault_span], x.id, x.ver);
    if (k->stopped)
      continue;
    if (k->drop_p > 0 && unit(&L->fault_rng) < k->drop_p) {
      if (k->fault_drop >= 0)
        entry_add(&L->fs[k->fault_drop], x.id, x.ver);
      continue;
    }
    if (first && k->reorder_p > 0 && unit(&L->fault_rng) < k->reorder_p) {
      /* the pair arrives second first: the older change lands last */
      chg y = *first;
      y.due = x.due;
      if (cq_push(&k->q, &x) || cq_push(&k->q, &y))
        L->oom = 1;
      cvgi_flight_sent(L->flight, r, x.id, x.ver);
      cvgi_flight_sent(L->flight, r, y.id, y.ver);
      if (k->fault_reorder >= 0)
        entry_add(&L->fs[k->fault_reorder], x.id, x.ver);
      continue;
    }
    if (first) {
      chg y = *first;
      y.due = x.due;
      if (cq_push(&k->q, &y))
        L->oom = 1;
      cvgi_flight_sent(L->flight, r, y.id, y.ver);
      if (k->dup_p > 0 && unit(&L->fault_rng) < k->dup_p) {
        y.due = x.due + k->dup_latency; /* the first, again, after the second */
        if (cq_push(&k->side, &y))
          L->oom = 1;
        if (k->fault_dup >= 0)
          entry_add(&L->fs[k->fault_dup], x.id, x.ver);
      }
    }
    if (cq_push(&k->q, &x))
      L->oom = 1;
    cvgi_flight_sent(L->flight, r, x.id, x.ver);
  }
}

/* One write of the workload, applied to the authority and the model, and shipped. Every tenth
 * operation is a pair of updates to one key (the shape a reordered or duplicated change
 * spoils). */
static int workload_op(lab *L) {
  uint64_t op = L->ops;
  int pct = (int)(splitmix(&L->ops_rng) % 100);
  int kind = pct < L->sc->mix_update ? 0 : pct < L->sc->mix_update + L->sc->mix_insert ? 1 : 2;
  int64_t id = 0;
  if (kind != 1) {
    for (int t = 0; t < 8 && !id; t++) {
      int64_t k = pick_key(L);
      if (L->model[k].exists && !L->model[k].deleted)
        id = k;
    }
    if (!id)
      kind = 1;
  }
  if (kind == 1) {
    if (L->next_id >= L->cap_ids)
      kind = 0, id = pick_key(L);
    else
      id = L->next_id++;
  }
  int w = (int)(op % 4);
  int64_t bal = (int64_t)(splitmix(&L->ops_rng) % 100000);
  int pair = kind == 0 && op % 10 == 9;
  fnv(&L->digest, (uint64_t)kind);
  fnv(&L->digest, (uint64_t)id);
  fnv(&L->digest, (uint64_t)bal);
  chg first = {0}, c = {0};
  if (pair) {
    first.id = id;
    first.ver = next_ver(L);
    first.balance = bal;
    first.writer = (uint8_t)w;
    if (put_row(L, 0, id, bal, first.ver, 0, w))
      return -1;
    bal = (bal + 1) % 100000;
  }
  c.id = id;
  c.ver = next_ver(L);
  c.balance = bal;
  c.deleted = kind == 2;
  c.writer = (uint8_t)w;
  if (put_row(L, 0, id, bal, c.ver, c.deleted, w))
    return -1;
  mrow *m = &L->model[id];
  m->exists = 1;
  m->deleted = c.deleted;
  m->ver = c.ver;
  m->balance = bal;
  m->writer = (uint8_t)w;
  ship(L, &c, pair ? &first : NULL);
  L->ops++;
  return 0;
}

/* Ships converge's own tables (heartbeat, canary) as they are on the authority now. */
static void ship_aux(lab *L) {
  static const char *const tables[] = {"converge_heartbeat", "converge_canary"};
  for (size_t t = 0; t < 2; t++) {
    sqlite3_stmt *m = NULL;
    const char *csql = NULL;
    if (sqlite3_prepare_v2(L->db[0], "SELECT sql FROM sqlite_master WHERE type='table' AND name=?1",
                           -1, &m, NULL) != SQLITE_OK)
      continue;
    sqlite3_bind_text(m, 1, tables[t], -1, SQLITE_STATIC);
    char *create = NULL;
    if (sqlite3_step(m) == SQLITE_ROW && (csql = (const char *)sqlite3_column_text(m, 0)))
      create = strdup(csql);
    sqlite3_finalize(m);
    if (!create)
      continue;
    char q[128];
    snprintf(q, sizeof q, "SELECT * FROM \"%s\"", tables[t]);
    sqlite3_stmt *s = NULL;
    aux *a = calloc(1, sizeof *a);
    if (!a || sqlite3_prepare_v2(L->db[0], q, -1, &s, NULL) != SQLITE_OK) {
      free(a);
      free(create);
      sqlite3_finalize(s);
      continue;
    }
    snprintf(a->table, sizeof a->table, "%s", tables[t]);
    a->create_sql = create;
    a->ncol = sqlite3_column_count(s);
    size_t cap = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
      if ((a->nrows + 1) * (size_t)a->ncol > cap) {
        size_t nc = cap ? 2 * cap : 64 * (size_t)a->ncol;
        sqlite3_value **g = realloc(a->cells, nc * sizeof *g);
        if (!g)
          break;
        a->cells = g;
        cap = nc;
      }
      for (int c = 0; c < a->ncol; c++)
        a->cells[a->nrows * (size_t)a->ncol + (size_t)c] =
            sqlite3_value_dup(sqlite3_column_value(s, c));
      a->nrows++;
    }
    sqlite3_finalize(s);
    a->refs = 1;
    chg c = {0};
    c.a = a;
    double now = cvg_wall_now();
    for (int r = 1; r < L->sc->replicas; r++) {
      rlink *k = &L->link[r];
      if (k->stopped)
        continue;
      c.due = now + L->sc->latency + k->extra_latency;
      if (cq_push(&k->q, &c))
        L->oom = 1;
    }
    aux_release(a);
  }
}

static void apply_aux(lab *L, int r, const aux *a) {
  sqlite3 *db = L->db[r];
  char q[160];
  snprintf(q, sizeof q, "SELECT 1 FROM sqlite_master WHERE type='table' AND name='%s'", a->table);
  sqlite3_stmt *s = NULL;
  int exists = 0;
  if (sqlite3_prepare_v2(db, q, -1, &s, NULL) == SQLITE_OK)
    exists = sqlite3_step(s) == SQLITE_ROW;
  sqlite3_finalize(s);
  if (!exists && sqlite3_exec(db, a->create_sql, NULL, NULL, NULL) != SQLITE_OK)
    return;
  snprintf(q, sizeof q, "DELETE FROM \"%s\"", a->table);
  sqlite3_exec(db, q, NULL, NULL, NULL);
  char ins[600];
  size_t o = (size_t)snprintf(ins, sizeof ins, "INSERT INTO \"%s\" VALUES (", a->table);
  for (int c = 0; c < a->ncol && o < sizeof ins; c++)
    o += (size_t)snprintf(ins + o, sizeof ins - o, "%s?", c ? "," : "");
  if (o < sizeof ins)
    snprintf(ins + o, sizeof ins - o, ")");
  if (sqlite3_prepare_v2(db, ins, -1, &s, NULL) != SQLITE_OK)
    return;
  for (size_t i = 0; i < a->nrows; i++) {
    sqlite3_reset(s);
    for (int c = 0; c < a->ncol; c++)
      sqlite3_bind_value(s, c + 1, a->cells[i * (size_t)a->ncol + (size_t)c]);
    sqlite3_step(s);
  }
  sqlite3_finalize(s);
}

/* A delivered row: every key-fault entry of this replica it overwrites with a newer version
 * is masked - replication itself mended it. */
static void mask(lab *L, int r, int64_t id, int64_t ver) {
  for (size_t f = 0; f < L->sc->n_faults; f++) {
    cvg_chaos_fault *fa = &L->sc->faults[f];
    fstate *s = &L->fs[f];
    if (fa->replica != r || !key_fault(fa->kind) || !s->injected || fa->detected)
      continue;
    for (size_t i = 0; i < s->n; i++)
      if (s->e[i].id == id && ver > s->e[i].ver)
        s->e[i].masked = 1;
  }
}

static void deliver(lab *L, int r, double now) {
  rlink *k = &L->link[r];
  if (k->held || L->down[r] || !L->db[r])
    return;
  int began = 0;
  for (int pass = 0; pass < 2; pass++) {
    cqueue *q = pass ? &k->side : &k->q;
    size_t i = 0;
    while (i < q->n) {
      chg *c = &q->v[q->head + i];
      if (c->due > now) {
        if (!pass)
          break; /* in order: nothing overtakes the head */
        i++;
        continue;
      }
      if (!began && sqlite3_exec(L->db[r], "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return; /* busy (a repair is writing): next tick */
      began = 1;
      if (c->a) {
        apply_aux(L, r, c->a);
        aux_release(c->a);
      } else {
        put_row(L, r, c->id, c->balance, c->ver, c->deleted, c->writer);
        mask(L, r, c->id, c->ver);
        cvgi_flight_delivered(L->flight, r, c->id, c->ver, now);
      }
      if (!pass) {
        q->head++;
        q->n--;
      } else {
        q->v[q->head + i] = q->v[q->head + q->n - 1];
        q->n--;
      }
    }
  }
  if (began)
    sqlite3_exec(L->db[r], "COMMIT", NULL, NULL, NULL);
}

static void drain_free(cqueue *q) {
  for (size_t i = 0; i < q->n; i++)
    aux_release(q->v[q->head + i].a);
  free(q->v);
  memset(q, 0, sizeof *q);
}

/* ---- faults ---- */

static void crash_paths(const char *p, char out[3][640], char moved[3][640]) {
  static const char *const sfx[] = {"", "-wal", "-shm"};
  for (int i = 0; i < 3; i++) {
    snprintf(out[i], 640, "%s%s", p, sfx[i]);
    snprintf(moved[i], 640, "%s.crashed%s", p, sfx[i]);
  }
}

/* Rows the fault touches directly on its replica: live keys picked from the model. */
static void touch_rows(lab *L, size_t fi) {
  cvg_chaos_fault *f = &L->sc->faults[fi];
  int r = f->replica;
  if (!L->db[r])
    return;
  sqlite3_exec(L->db[r], "BEGIN IMMEDIATE", NULL, NULL, NULL);
  for (int i = 0; i < f->rows; i++) {
    int64_t id = 0;
    for (int t = 0; t < 32 && !id; t++) {
      int64_t k = 1 + (int64_t)(unit(&L->fault_rng) * (double)(L->next_id - 1));
      if (L->model[k].exists && !L->model[k].deleted)
        id = k;
    }
    int64_t bal = 0, ver = 0;
    int del = 0;
    if (!id || get_row(L, r, id, &bal, &ver, &del) != 1)
      continue;
    if (f->kind == CVG_FAULT_CORRUPT) {
      char q[160];
      snprintf(q, sizeof q, "UPDATE accounts SET balance = balance + 7919 WHERE id = %lld",
               (long long)id);
      sqlite3_exec(L->db[r], q, NULL, NULL, NULL); /* the version stays: silent corruption */
    } else {
      int64_t v =
          f->kind == CVG_FAULT_CLOCK_SKEW ? now_us() + (int64_t)(f->skew * 1e6) : next_ver(L);
      put_row(L, r, id, (bal + 4242) % 100000, v, 0, f->kind == CVG_FAULT_CLOCK_SKEW ? 5 : 4);
      ver = v;
    }
    entry_add(&L->fs[fi], id, ver);
  }
  sqlite3_exec(L->db[r], "COMMIT", NULL, NULL, NULL);
}

static void inject(lab *L, size_t fi) {
  cvg_chaos_fault *f = &L->sc->faults[fi];
  fstate *s = &L->fs[fi];
  rlink *k = &L->link[f->replica];
  s->injected = 1;
  s->t_inject = elapsed(L);
  int span = 0;
  switch (f->kind) {
  case CVG_FAULT_DROP:
    k->drop_p = f->probability;
    k->fault_drop = (int)fi;
    break;
  case CVG_FAULT_DELAY:
    k->extra_latency = f->ramp > 0 ? 0 : f->latency; /* a ramp grows it in ramp_delays */
    span = 1;
    break;
  case CVG_FAULT_REORDER:
    k->reorder_p = f->probability;
    k->fault_reorder = (int)fi;
    break;
  case CVG_FAULT_DUPLICATE:
    k->dup_p = f->probability;
    k->dup_latency = f->latency;
    k->fault_dup = (int)fi;
    break;
  case CVG_FAULT_PARTITION:
    k->held = 1;
    span = 1;
    break;
  case CVG_FAULT_STOP:
    k->stopped = 1;
    span = 1;
    break;
  case CVG_FAULT_CRASH: {
    char p[3][640], m[3][640];
    crash_paths(L->paths[f->replica], p, m);
    close_replica(L, f->replica);
    for (int i = 0; i < 3; i++)
      rename(p[i], m[i]);
    L->down[f->replica] = 1;
    k->held = 1;
    span = 1;
    break;
  }
  case CVG_FAULT_SCHEMA:
    if (L->db[f->replica])
      sqlite3_exec(L->db[f->replica], "ALTER TABLE accounts ADD COLUMN chaos_extra INTEGER", NULL,
                   NULL, NULL);
    break;
  case CVG_FAULT_CORRUPT:
  case CVG_FAULT_CLOCK_SKEW:
  case CVG_FAULT_DIRECT_WRITE:
    touch_rows(L, fi);
    s->healed = 1;
    s->t_heal = s->t_inject;
    break;
  default:
    break;
  }
  if (span)
    k->fault_span = (int)fi;
  say(L->o, "[%6.1fs] fault %zu injected: %s on %s%s", elapsed(L), fi + 1, cvg_fault_names[f->kind],
      L->names[f->replica],
      key_fault(f->kind) && s->healed ? ""
      : f->duration > 0               ? " (lasting)"
                                      : "");
}

/* A delay with a ramp: the link slows down gradually (its latency grows by less than a second
 * per second, so the replica keeps applying, ever later). */
static void ramp_delays(lab *L, double t) {
  for (size_t fi = 0; fi < L->sc->n_faults; fi++) {
    const cvg_chaos_fault *f = &L->sc->faults[fi];
    if (f->kind != CVG_FAULT_DELAY || f->ramp <= 0 || !L->fs[fi].injected || L->fs[fi].healed)
      continue;
    double share = (t - f->at) / f->ramp;
    L->link[f->replica].extra_latency = f->latency * (share < 0 ? 0 : share > 1 ? 1 : share);
  }
}

static void heal(lab *L, size_t fi) {
  cvg_chaos_fault *f = &L->sc->faults[fi];
  fstate *s = &L->fs[fi];
  rlink *k = &L->link[f->replica];
  if (!s->injected || s->healed)
    return;
  s->healed = 1;
  s->t_heal = elapsed(L);
  switch (f->kind) {
  case CVG_FAULT_DROP:
    k->drop_p = 0;
    k->fault_drop = -1;
    break;
  case CVG_FAULT_DELAY:
    k->extra_latency = 0;
    break;
  case CVG_FAULT_REORDER:
    k->reorder_p = 0;
    k->fault_reorder = -1;
    break;
  case CVG_FAULT_DUPLICATE:
    k->dup_p = 0;
    k->fault_dup = -1;
    break;
  case CVG_FAULT_PARTITION:
    k->held = 0;
    break;
  case CVG_FAULT_STOP:
    k->stopped = 0;
    break;
  case CVG_FAULT_CRASH: {
    char p[3][640], m[3][640];
    crash_paths(L->paths[f->replica], p, m);
    for (int i = 0; i < 3; i++)
      rename(m[i], p[i]);
    cvg_error e;
    cvg_error_clear(&e);
    if (open_replica(L, f->replica, &e) == CVG_OK)
      L->down[f->replica] = 0;
    k->held = 0;
    break;
  }
  case CVG_FAULT_SCHEMA:
    if (L->db[f->replica])
      sqlite3_exec(L->db[f->replica], "ALTER TABLE accounts DROP COLUMN chaos_extra", NULL, NULL,
                   NULL);
    break;
  default:
    break;
  }
  if (k->fault_span == (int)fi)
    k->fault_span = -1;
  say(L->o, "[%6.1fs] fault %zu healed: %s on %s", elapsed(L), fi + 1, cvg_fault_names[f->kind],
      L->names[f->replica]);
}

/* ---- the observer: the watch's API and journal, and the replicas ---- */

typedef struct hbuf {
  char *p;
  size_t n;
} hbuf;

static size_t on_body(char *d, size_t sz, size_t nm, void *ctx) {
  hbuf *b = ctx;
  size_t n = sz * nm;
  if (b->n + n > (64u << 20))
    return 0;
  char *g = realloc(b->p, b->n + n + 1);
  if (!g)
    return 0;
  memcpy(g + b->n, d, n);
  b->p = g;
  b->n += n;
  b->p[b->n] = '\0';
  return n;
}

static json_t *get_json(lab *L, const char *path) {
  char url[256];
  snprintf(url, sizeof url, "%s%s", L->base_url, path);
  hbuf b = {0};
  curl_easy_setopt(L->curl, CURLOPT_URL, url);
  curl_easy_setopt(L->curl, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(L->curl, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt(L->curl, CURLOPT_TIMEOUT_MS, 2000L);
  curl_easy_setopt(L->curl, CURLOPT_NOSIGNAL, 1L);
  long code = 0;
  json_t *j = NULL;
  if (curl_easy_perform(L->curl) == CURLE_OK &&
      curl_easy_getinfo(L->curl, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK && code == 200 && b.p)
    j = json_loads(b.p, 0, NULL);
  free(b.p);
  return j;
}

static int fault_has_key(const fstate *s, int64_t id) {
  for (size_t i = 0; i < s->n; i++)
    if (s->e[i].id == id)
      return 1;
  return 0;
}

static int is_open(const lab *L, size_t fi, double t) {
  const fstate *s = &L->fs[fi];
  return s->injected && (!s->done || t < s->t_repaired + 20);
}

static void detect(lab *L, size_t fi, double t, const char *how) {
  cvg_chaos_fault *f = &L->sc->faults[fi];
  if (f->detected)
    return;
  f->detected = 1;
  f->detect_after = t - L->fs[fi].t_inject;
  if (f->detect_after < 0)
    f->detect_after = 0;
  say(L->o, "[%6.1fs] fault %zu (%s on %s) detected after %.1fs: %s", elapsed(L), fi + 1,
      cvg_fault_names[f->kind], L->names[f->replica], f->detect_after, how);
}

static int stage_of(const char *s) {
  return !s ? 0 : !strcmp(s, "early") ? 1 : !strcmp(s, "mid") ? 2 : !strcmp(s, "late") ? 3 : 0;
}

static void observe_alerts(lab *L, double t) {
  json_t *j = get_json(L, "/api/v1/alerts");
  json_t *arr = json_is_array(j) ? j : json_object_get(j, "alerts");
  size_t i;
  json_t *a;
  json_array_foreach(arr, i, a) {
    const char *state = json_string_value(json_object_get(a, "state"));
    if (!state || strcmp(state, "firing"))
      continue;
    json_t *lab_ = json_object_get(a, "labels");
    const char *name = json_string_value(json_object_get(lab_, "alertname"));
    const char *rep = json_string_value(json_object_get(lab_, "replica"));
    int st = stage_of(json_string_value(json_object_get(lab_, "stage")));
    int attributed = 0, schema = name && strstr(name, "Schema");
    /* detected when the watch fired it, not when the lab looked (up to 300 ms later) */
    double fired = t, starts;
    const char *sa = json_string_value(json_object_get(a, "startsAt"));
    if (sa && cvg_parse_time(sa, &starts) == 0 && starts - L->t0 < t)
      fired = starts - L->t0;
    for (size_t fi = 0; fi < L->sc->n_faults; fi++) {
      cvg_chaos_fault *f = &L->sc->faults[fi];
      if (!is_open(L, fi, t))
        continue;
      /* schema alerts belong to schema changes; a replica's alerts to faults on it; the
       * dataset's other alerts to whatever fault is on */
      int mine = schema
                     ? f->kind == CVG_FAULT_SCHEMA
                     : f->kind != CVG_FAULT_SCHEMA && (!rep || !strcmp(rep, L->names[f->replica]));
      if (!mine)
        continue;
      attributed = 1; /* within the fault's window or its grace after repair: not a false alarm */
      if (L->fs[fi].done)
        continue; /* repaired already: the stage and the detection are settled */
      if (rep || schema) {
        char how[200];
        snprintf(how, sizeof how, "alert %s (%s)", name ? name : "?",
                 st == 3   ? "late"
                 : st == 2 ? "mid"
                           : "early");
        detect(L, fi, fired, how);
      }
      if (st > f->stage) {
        f->stage = st;
        f->stage_after = t - L->fs[fi].t_inject;
        say(L->o, "[%6.1fs] fault %zu reached the %s stage: %s", elapsed(L), fi + 1,
            st == 3   ? "late"
            : st == 2 ? "mid"
                      : "early",
            name ? name : "?");
      }
    }
    char key[160];
    snprintf(key, sizeof key, "%s|%s", name ? name : "?", rep ? rep : "");
    size_t k = 0;
    while (k < L->n_alerts && strcmp(L->alerts[k].key, key))
      k++;
    if (k == L->n_alerts) {
      if (L->n_alerts == L->cap_alerts) {
        size_t cap = L->cap_alerts ? 2 * L->cap_alerts : 16;
        seen_alert *g = realloc(L->alerts, cap * sizeof *g);
        if (!g) {
          L->oom = 1;
          break;
        }
        L->alerts = g;
        L->cap_alerts = cap;
      }
      snprintf(L->alerts[k].key, sizeof L->alerts[k].key, "%s", key);
      L->alerts[k].false_alarm = !attributed;
      L->n_alerts++;
      if (attributed)
        L->true_alerts++;
      else {
        L->false_alarms++;
        say(L->o, "[%6.1fs] FALSE ALARM: %s fired with no fault behind it", elapsed(L), key);
      }
    }
  }
  json_decref(j);
}

/* Faults that heal by themselves (a slow, held or restarting link delivers everything in the
 * end): their keys are in flight, never lost, so a confirmation of one is false, not a detection;
 * their lag and down alerts detect them. */
static int heals_itself(cvg_fault_kind k) {
  return k == CVG_FAULT_DELAY || k == CVG_FAULT_PARTITION || k == CVG_FAULT_CRASH;
}

/* Detection by key: a true confirmation or a repair decision of a key a lasting fault spoiled.
 * Returns whether some fault the lab injected touched the key. */
static int detect_key(lab *L, int64_t id, double t, const char *how) {
  int touched = 0;
  for (size_t fi = 0; fi < L->sc->n_faults; fi++) {
    if (!L->fs[fi].injected || !fault_has_key(&L->fs[fi], id))
      continue;
    touched = 1;
    if (!L->sc->faults[fi].detected && t >= L->fs[fi].t_inject &&
        !heals_itself(L->sc->faults[fi].kind))
      detect(L, fi, t, how);
  }
  return touched;
}

/* A copy in a confirmation entry: its state (0 absent, 1 live, 2 tombstone, -1 unknown) and
 * version (the lab's versions are integers). */
static int entry_copy(json_t *reps, const char *name, int64_t *ver) {
  json_t *c = json_object_get(reps, name);
  const char *st = json_string_value(json_object_get(c, "state"));
  *ver = json_integer_value(json_object_get(c, "version"));
  return !st                        ? -1
         : !strcmp(st, "absent")    ? 0
         : !strcmp(st, "live")      ? 1
         : !strcmp(st, "tombstone") ? 2
                                    : -1;
}

static int corrupted_on(const lab *L, int r, int64_t id) {
  for (size_t fi = 0; fi < L->sc->n_faults; fi++)
    if (L->sc->faults[fi].kind == CVG_FAULT_CORRUPT && L->sc->faults[fi].replica == r &&
        fault_has_key(&L->fs[fi], id))
      return 1;
  return 0;
}

/*
 * Whether a confirmation is false: every replica whose copy was older than the authority's (or
 * absent) had the authority's version still on its way - replication alone would have delivered
 * it - and no replica held a newer version or the same version with other content (those
 * divergences are real whatever is in flight).
 */
static int false_confirmation(lab *L, json_t *d, int64_t id, int *victim) {
  json_t *reps = json_object_get(d, "replicas");
  double since = json_number_value(json_object_get(d, "first_seen"));
  int64_t va = 0, v = 0;
  int a = entry_copy(reps, L->names[0], &va), older = 0;
  if (a <= 0)
    return 0; /* the authority has no row: nothing of it can be on its way */
  for (int r = 1; r < L->sc->replicas; r++) {
    int st = entry_copy(reps, L->names[r], &v);
    if (st < 0)
      continue;
    if (st != 0 && v == va && (st != a || corrupted_on(L, r, id)))
      return 0;
    if (st != 0 && v >= va)
      continue; /* agrees (or newer: handled below) */
    if (!cvgi_flight_on_way(L->flight, r, id, va, since))
      return 0;
    older++;
    *victim = r;
  }
  for (int r = 1; r < L->sc->replicas; r++)
    if (entry_copy(reps, L->names[r], &v) > 0 && v > va)
      return 0;
  return older > 0;
}

/* Every key the watch confirmed since the last look (/api/v1/confirmations: each as it was at
 * that moment, so none is missed even if it agreed again before this look), judged. */
static void observe_confirmations(lab *L, double t) {
  char path[96];
  snprintf(path, sizeof path, "/api/v1/confirmations?dataset=accounts&after=%llu&limit=10000",
           (unsigned long long)L->conf_after);
  json_t *j = get_json(L, path);
  json_t *ds = json_array_get(json_object_get(j, "datasets"), 0);
  L->unjudged += (size_t)json_integer_value(json_object_get(ds, "missed"));
  size_t i;
  json_t *d;
  json_array_foreach(json_object_get(ds, "confirmations"), i, d) {
    uint64_t seq = (uint64_t)json_integer_value(json_object_get(d, "seq"));
    if (seq > L->conf_after)
      L->conf_after = seq;
    json_t *idj = json_object_get(json_object_get(d, "key"), "id");
    if (!json_is_integer(idj)) {
      L->unjudged++;
      continue;
    }
    int64_t id = json_integer_value(idj);
    const char *cls = json_string_value(json_object_get(d, "class"));
    int victim = 0;
    L->confirmations++;
    if (false_confirmation(L, d, id, &victim)) {
      if (L->fconf++ < 5)
        say(L->o,
            "[%6.1fs] FALSE CONFIRMATION: key %lld confirmed divergent (%s) while the "
            "authority's change to it was still on its way to %s%s",
            elapsed(L), (long long)id, cls ? cls : "?", L->names[victim],
            L->fconf == 5 ? " (further ones counted, not shown)" : "");
      continue;
    }
    char how[200];
    snprintf(how, sizeof how, "key %lld confirmed divergent (%s)", (long long)id, cls ? cls : "?");
    /* detected when the watch confirmed it, not when the lab looked */
    double when = json_number_value(json_object_get(d, "confirmed_at")) - L->t0;
    if (!detect_key(L, id, when > 0 && when < t ? when : t, how) && L->unexplained++ < 5)
      say(L->o,
          "[%6.1fs] UNEXPLAINED CONFIRMATION: key %lld confirmed divergent (%s), no fault touched "
          "it and nothing of it is in flight",
          elapsed(L), (long long)id, cls ? cls : "?");
  }
  json_decref(j);
}

static int64_t key_id(const unsigned char *key, size_t len) {
  cvg_value v;
  size_t nv = 0;
  cvg_buf scratch;
  cvg_buf_init(&scratch, 4096);
  int64_t id = 0;
  if (len && cvg_decode_tuple(key, len, &v, 1, &nv, &scratch) == CVG_OK && nv == 1 &&
      v.type == CVG_INTEGER)
    id = v.u.i;
  cvg_buf_release(&scratch);
  return id;
}

/* A version journaled as the hex of its encoded tuple, as an integer (0 when not one). */
static int64_t hex_version(const char *hex) {
  unsigned char b[64];
  size_t n = hex ? strlen(hex) / 2 : 0;
  if (n == 0 || n > sizeof b)
    return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned x = 0;
    if (sscanf(hex + 2 * i, "%2x", &x) != 1)
      return 0;
    b[i] = (unsigned char)x;
  }
  return key_id(b, n);
}

/* A planned repair write: was the row it writes still on its way to that replica? */
static void observe_mutation(lab *L, const cvg_jrecord *r, json_t *body) {
  const char *rep = json_string_value(json_object_get(body, "replica"));
  json_t *target = json_object_get(body, "target");
  int64_t id = key_id(r->key, r->key_len);
  int64_t ver = hex_version(json_string_value(json_object_get(target, "version")));
  int ri = -1;
  for (int x = 1; rep && x < L->sc->replicas; x++)
    if (!strcmp(rep, L->names[x]))
      ri = x;
  if (ri < 0 || !id || !ver || !cvgi_flight_on_way(L->flight, ri, id, ver, r->at))
    return;
  if (L->n_im == L->cap_im) {
    size_t cap = L->cap_im ? 2 * L->cap_im : 64;
    int64_t *g = realloc(L->inflight_muts, cap * sizeof *g);
    if (!g) {
      L->oom = 1;
      return;
    }
    L->inflight_muts = g;
    L->cap_im = cap;
  }
  L->inflight_muts[L->n_im++] = r->seq;
}

static void observe_outcome(lab *L, json_t *o) {
  const char *res = json_string_value(json_object_get(o, "result"));
  int64_t m = json_integer_value(json_object_get(o, "mutation"));
  if (!res || strcmp(res, "applied"))
    return;
  for (size_t i = 0; i < L->n_im; i++)
    if (L->inflight_muts[i] == m) {
      if (L->inflight_repairs++ < 5)
        say(L->o,
            "[%6.1fs] REPAIR OF A ROW IN FLIGHT: mutation %lld wrote a row replication was "
            "about to deliver",
            elapsed(L), (long long)m);
      L->inflight_muts[i] = L->inflight_muts[--L->n_im];
      return;
    }
}

/* The journal since the last look: repair decisions (each a divergence converge confirmed),
 * planned writes and their outcomes. Read through the journal's own reader (journal.h), as
 * `converge audit` reads it. */
static int observe_record(void *ctx, const cvg_jrecord *r) {
  lab *L = ctx;
  L->journal_seq = r->seq;
  if (r->kind == CVG_J_DECISION) {
    int64_t id = key_id(r->key, r->key_len);
    char how[200];
    snprintf(how, sizeof how, "key %lld repaired by converge (journal decision %lld)",
             (long long)id, (long long)r->seq);
    if (id)
      detect_key(L, id, r->at - L->t0, how);
    return 0;
  }
  if (r->kind != CVG_J_MUTATION && r->kind != CVG_J_OUTCOME)
    return 0;
  json_t *body = json_loadb(r->body, r->body_len, 0, NULL);
  if (r->kind == CVG_J_MUTATION) {
    observe_mutation(L, r, body);
  } else {
    json_t *outs = json_object_get(body, "outcomes"), *o;
    size_t i;
    if (json_is_array(outs)) {
      json_array_foreach(outs, i, o) observe_outcome(L, o);
    } else {
      observe_outcome(L, body);
    }
  }
  json_decref(body);
  return 0;
}

static void observe_journal(lab *L) {
  if (access(L->journal, F_OK) != 0)
    return;
  cvg_journal *j = NULL;
  cvg_error err;
  cvg_error_clear(&err);
  if (cvg_journal_open(&j, L->journal, CVG_JOURNAL_READ, &err) != CVG_OK)
    return; /* not created yet, or busy: the next look reads it */
  cvg_journal_scan(j, L->journal_seq, NULL, NULL, 0, 0, -1, observe_record, L, &err);
  cvg_journal_close(j);
}

static int schema_alert_firing(lab *L) {
  json_t *j = get_json(L, "/api/v1/alerts");
  json_t *arr = json_is_array(j) ? j : json_object_get(j, "alerts");
  size_t i;
  json_t *a;
  int firing = 0;
  json_array_foreach(arr, i, a) {
    const char *name =
        json_string_value(json_object_get(json_object_get(a, "labels"), "alertname"));
    const char *state = json_string_value(json_object_get(a, "state"));
    firing |= name && strstr(name, "Schema") && state && !strcmp(state, "firing");
  }
  json_decref(j);
  return firing;
}

static void observe_repairs(lab *L, double t) {
  for (size_t fi = 0; fi < L->sc->n_faults; fi++) {
    cvg_chaos_fault *f = &L->sc->faults[fi];
    fstate *s = &L->fs[fi];
    if (!s->injected || !s->healed || s->done || L->down[f->replica] || !L->db[f->replica])
      continue;
    int ok = 1;
    if (f->kind == CVG_FAULT_SCHEMA)
      ok = !schema_alert_firing(L);
    for (size_t i = 0; ok && i < s->n; i++)
      if (!s->e[i].masked)
        ok = settled(L, f->replica, s->e[i].id);
    if (!ok)
      continue;
    s->done = 1;
    s->t_repaired = t;
    int all_masked = key_fault(f->kind) && !f->detected;
    for (size_t i = 0; all_masked && i < s->n; i++)
      all_masked = s->e[i].masked;
    if (all_masked) {
      f->masked = 1;
      say(L->o,
          "[%6.1fs] fault %zu (%s on %s): nothing lasting to detect - replication itself "
          "overwrote the %zu key(s) it spoiled",
          elapsed(L), fi + 1, cvg_fault_names[f->kind], L->names[f->replica], s->n);
      continue;
    }
    f->repaired = 1;
    f->repair_after = t - s->t_inject;
    say(L->o,
        "[%6.1fs] fault %zu (%s on %s) repaired: converged %.1fs after injection "
        "(%zu key(s) checked)",
        elapsed(L), fi + 1, cvg_fault_names[f->kind], L->names[f->replica], f->repair_after, s->n);
  }
}

/* ---- converge watch, the child ---- */

/* A free loopback port (want 0), or want itself if it can be bound now; -1 if not. */
static int free_port(int want) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return -1;
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons((uint16_t)want);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  socklen_t len = sizeof a;
  int port = -1;
  if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &len) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

static int write_catalog(lab *L, const char *path, cvg_error *err) {
  FILE *f = fopen(path, "w");
  if (!f)
    return cvg_error_set(err, CVG_EIO, path, "cannot write the lab's catalog: %s", strerror(errno));
  fprintf(
      f,
      "# written by converge chaos for scenario %s\n"
      "listen: 127.0.0.1:%d\n"
      "log: {level: info}\n"
      "journal: %s\n"
      "alerting:\n"
      "  evaluation_interval: 250ms\n"
      "  resend_interval: 5s\n"
      "probes:\n"
      "  heartbeat: {interval: 250ms, stall_after: 6}\n"
      "  canary: {interval: 1s, timeout: 8s}\n"
      "  sweep: {interval: 250ms}\n"
      "  full_sweep: {interval: 2s, rows_per_second: 0}\n"
      "  confirm_within: %gs\n"
      "datasets:\n"
      "  - name: accounts\n"
      "    key: [id]\n"
      "    version: updated_at\n"
      "    tombstone: deleted\n"
      "    origin: writer\n"
      "    shards: 16\n"
      "    impact: {tier: critical, per_row: 1, unit: accounts, note: \"the lab's customer "
      "accounts - one divergent row is one customer shown a wrong balance\"}\n"
      "    policy: authority\n"
      "    auto_repair: %s\n"
      "    repair: {interval: 500ms}\n"
      "    invariants: {max_lag_seconds: %g}\n"
      "    rules:\n"
      "      - {alert: ChaosReplicaDown, metric: replica_down, above: 0, for: 1s, stage: early}\n"
      "    replicas:\n",
      L->sc->name, L->port, L->journal, L->sc->confirm_within, L->o->sabotage ? "false" : "true",
      L->sc->max_lag);
  for (int r = 0; r < L->sc->replicas; r++)
    fprintf(f, "      - {name: %s, url: \"sqlite://%s?table=accounts\"%s}\n", L->names[r],
            L->paths[r], r ? "" : ", authority: true");
  if (fclose(f) != 0)
    return cvg_error_set(err, CVG_EIO, path, "cannot write the lab's catalog: %s", strerror(errno));
  return CVG_OK;
}

static int start_watch(lab *L, const char *catalog, const char *log, cvg_error *err) {
  pid_t pid = fork();
  if (pid < 0)
    return cvg_error_set(err, CVG_EIO, "chaos", "cannot start converge watch: %s", strerror(errno));
  if (pid == 0) {
    setpgid(0, 0); /* a Ctrl-C on the terminal stops the lab, and the lab stops the watch */
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    execl(L->o->converge_exe, "converge", "watch", "-c", catalog, (char *)NULL);
    _exit(127);
  }
  L->watch = pid;
  return CVG_OK;
}

static void stop_watch(lab *L) {
  if (L->watch <= 0)
    return;
  kill(L->watch, SIGTERM);
  for (int i = 0; i < 100; i++) {
    if (waitpid(L->watch, NULL, WNOHANG) == L->watch) {
      L->watch = 0;
      return;
    }
    sleep_s(0.05);
  }
  kill(L->watch, SIGKILL);
  waitpid(L->watch, NULL, 0);
  L->watch = 0;
}

static int watch_alive(lab *L) {
  return L->watch > 0 && waitpid(L->watch, NULL, WNOHANG) == 0;
}

/* ---- the model check ---- */

static void model_check(lab *L, cvg_chaos_result *res, int print) {
  res->lost = res->resurrected = res->duplicated = res->corrupt = 0;
  for (int r = 0; r < L->sc->replicas; r++) {
    if (!L->db[r])
      continue;
    size_t lost = 0, res_ = 0, dup = 0, bad = 0;
    for (int64_t id = 1; id < L->next_id; id++) {
      const mrow *m = &L->model[id];
      int64_t bal = 0, ver = 0;
      int del = 0, f = get_row(L, r, id, &bal, &ver, &del);
      if (!m->exists) {
        dup += f == 1;
      } else if (f == 0 && m->deleted) {
        /* absent where the model has a tombstone: deleted either way (converge compares a
         * tombstone and an absent row as equal, and so does the check) */
      } else if (f != 1 || ver < m->ver) {
        if (m->deleted && f == 1 && !del)
          res_++;
        else
          lost++;
      } else if (m->deleted && !del) {
        res_++;
      } else if (ver != m->ver || bal != m->balance || del != m->deleted) {
        bad++;
      }
    }
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(L->db[r], "SELECT count(*) FROM accounts WHERE id >= ?1", -1, &s,
                           NULL) == SQLITE_OK) {
      sqlite3_bind_int64(s, 1, L->next_id);
      if (sqlite3_step(s) == SQLITE_ROW)
        dup += (size_t)sqlite3_column_int64(s, 0);
    }
    sqlite3_finalize(s);
    if (print && (lost || res_ || dup || bad))
      say(L->o, "  %s: %zu lost, %zu resurrected, %zu duplicated, %zu with other values",
          L->names[r], lost, res_, dup, bad);
    res->lost += lost;
    res->resurrected += res_;
    res->duplicated += dup;
    res->corrupt += bad;
  }
  res->converged = !res->lost && !res->resurrected && !res->duplicated && !res->corrupt;
}

/* ---- the ledger ---- */

static int append_ledger(lab *L, const cvg_chaos_result *res, cvg_error *err) {
  json_t *fa = json_array();
  for (size_t i = 0; i < L->sc->n_faults; i++) {
    const cvg_chaos_fault *f = &L->sc->faults[i];
    json_array_append_new(
        fa, json_pack("{s:s, s:i, s:f, s:f, s:b, s:b, s:o, s:s, s:o, s:b, s:o, s:I}", "kind",
                      cvg_fault_names[f->kind], "replica", f->replica + 1, "at", f->at, "for",
                      f->duration, "detected", f->detected, "masked", f->masked, "detect_after",
                      f->detected ? json_real(f->detect_after) : json_null(), "stage",
                      f->stage == 3   ? "late"
                      : f->stage == 2 ? "mid"
                      : f->stage      ? "early"
                                      : "none",
                      "stage_after", f->stage ? json_real(f->stage_after) : json_null(), "repaired",
                      f->repaired, "repair_after",
                      f->repaired ? json_real(f->repair_after) : json_null(), "affected",
                      (json_int_t)f->affected));
  }
  char when[40];
  time_t t = (time_t)cvg_wall_now();
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  json_t *j = json_pack(
      "{s:s, s:s, s:s, s:I, s:s, s:f, s:I, s:s, s:o, s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:I, "
      "s:I, s:I, s:I, s:b, s:b, s:I, s:I, s:I, s:I, s:I, s:f, s:f}",
      "time", when, "scenario", L->sc->name, "path", L->o->scenario_path ? L->o->scenario_path : "",
      "seed", (json_int_t)L->sc->seed, "version", CVG_VERSION, "duration", L->sc->duration, "ops",
      (json_int_t)res->ops, "ops_digest", res->ops_digest, "faults", fa, "recall", res->recall,
      "precision", res->precision, "mttd", res->mttd, "worst_ttd", res->worst_ttd, "mttr",
      res->mttr, "worst_ttr", res->worst_ttr, "false_alarms", (json_int_t)res->false_alarms, "lost",
      (json_int_t)res->lost, "resurrected", (json_int_t)res->resurrected, "duplicated",
      (json_int_t)res->duplicated, "corrupt", (json_int_t)res->corrupt, "converged", res->converged,
      "pass", res->pass, "confirmations", (json_int_t)res->confirmations, "false_confirmations",
      (json_int_t)res->false_confirmations, "unjudged", (json_int_t)res->unjudged, "unexplained",
      (json_int_t)res->unexplained, "inflight_repairs", (json_int_t)res->inflight_repairs,
      "key_precision", res->key_precision, "confirm_within", L->sc->confirm_within);
  if (j && res->interrupted) /* Ctrl-C: kept in the history, marked, never a pass */
    json_object_set_new(j, "interrupted", json_true());
  char *line = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  if (!line)
    return cvg_error_set(err, CVG_ENOMEM, L->o->ledger, "out of memory writing the ledger");
  int fd = open(L->o->ledger, O_WRONLY | O_CREAT | O_APPEND, 0644);
  size_t n = strlen(line);
  line[n] = '\n'; /* json_dumps's NUL becomes the line's end; written with one write() */
  ssize_t w = fd >= 0 ? write(fd, line, n + 1) : -1;
  int ok = fd >= 0 && w == (ssize_t)(n + 1) && fsync(fd) == 0;
  if (fd >= 0)
    close(fd);
  free(line);
  if (!ok)
    return cvg_error_set(err, CVG_EIO, L->o->ledger, "cannot append to the ledger: %s",
                         strerror(errno));
  return CVG_OK;
}

/* ---- the run ---- */

static int cancelled(const cvg_chaos_opts *o);

static void summarize(lab *L, cvg_chaos_result *res) {
  size_t counted = 0, nd = 0, nr = 0;
  double sd = 0, sr = 0;
  res->faults = L->sc->n_faults;
  res->detected = res->masked = res->repaired = 0;
  res->worst_ttd = res->worst_ttr = 0;
  for (size_t i = 0; i < L->sc->n_faults; i++) {
    cvg_chaos_fault *f = &L->sc->faults[i];
    f->affected = L->fs[i].n;
    if (!L->fs[i].injected) { /* an interrupted run never reached it: no verdict */
      res->not_run++;
      continue;
    }
    if (f->masked) {
      res->masked++;
      continue;
    }
    counted++;
    if (f->detected) {
      res->detected++;
      nd++;
      sd += f->detect_after;
      if (f->detect_after > res->worst_ttd)
        res->worst_ttd = f->detect_after;
    }
    if (f->repaired) {
      res->repaired++;
      nr++;
      sr += f->repair_after;
      if (f->repair_after > res->worst_ttr)
        res->worst_ttr = f->repair_after;
    }
  }
  res->recall = counted ? (double)res->detected / (double)counted : 1;
  res->true_alerts = L->true_alerts;
  res->false_alarms = L->false_alarms;
  res->precision = L->true_alerts + L->false_alarms
                       ? (double)L->true_alerts / (double)(L->true_alerts + L->false_alarms)
                       : 1;
  res->confirmations = L->confirmations;
  res->false_confirmations = L->fconf;
  res->unjudged = L->unjudged;
  res->unexplained = L->unexplained;
  res->inflight_repairs = L->inflight_repairs;
  res->key_precision = L->confirmations ? (double)(L->confirmations - L->fconf - L->unexplained) /
                                              (double)L->confirmations
                                        : 1;
  res->mttd = nd ? sd / (double)nd : 0;
  res->mttr = nr ? sr / (double)nr : 0;
  res->ops = L->ops;
  snprintf(res->ops_digest, sizeof res->ops_digest, "%016llx", (unsigned long long)L->digest);
  res->interrupted = cancelled(L->o);
  res->pass = !res->interrupted && res->recall >= 1 && !res->false_alarms &&
              !res->false_confirmations && !res->unjudged && !res->unexplained &&
              !res->inflight_repairs && res->converged;
}

static int setup(lab *L, cvg_error *err) {
  const cvg_chaos_scenario *sc = L->sc;
  L->cap_ids = (int64_t)sc->rows + (int64_t)(sc->rate * sc->duration) + 16;
  if (!(L->model = calloc((size_t)L->cap_ids + 1, sizeof *L->model)) ||
      cvgi_flight_new(&L->flight, sc->replicas, L->cap_ids) != 0)
    return cvg_error_set(err, CVG_ENOMEM, "chaos", "out of memory for the model");
  L->ops_rng = sc->seed;
  L->fault_rng = sc->seed ^ 0x5DEECE66Dull;
  L->digest = 0xcbf29ce484222325ull;
  L->next_id = 1;
  int rc = CVG_OK;
  for (int r = 0; r < sc->replicas && rc == CVG_OK; r++) {
    snprintf(L->names[r], sizeof L->names[r], "r%d", r + 1);
    snprintf(L->paths[r], sizeof L->paths[r], "%s/%s.db", L->o->dir, L->names[r]);
    for (int i = 0; i < 3; i++) { /* a fresh start: a previous run's files go */
      char p[700];
      snprintf(p, sizeof p, "%s%s", L->paths[r], i == 0 ? "" : i == 1 ? "-wal" : "-shm");
      unlink(p);
    }
    rc = open_replica(L, r, err);
    L->link[r].fault_drop = L->link[r].fault_dup = L->link[r].fault_reorder =
        L->link[r].fault_span = -1;
  }
  /* the initial rows, the same everywhere */
  int64_t base = now_us() - 3600 * (int64_t)1000000;
  for (int r = 0; r < sc->replicas && rc == CVG_OK; r++) {
    sqlite3_exec(L->db[r], "BEGIN", NULL, NULL, NULL);
    uint64_t rng = sc->seed * 31 + 7;
    for (int64_t id = 1; id <= sc->rows; id++)
      put_row(L, r, id, (int64_t)(splitmix(&rng) % 100000), base + id, 0, (int)(id % 4));
    if (sqlite3_exec(L->db[r], "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
      rc = cvg_error_set(err, CVG_EIO, L->paths[r], "cannot write the initial rows: %s",
                         sqlite3_errmsg(L->db[r]));
  }
  uint64_t rng = sc->seed * 31 + 7;
  for (int64_t id = 1; id <= sc->rows; id++) {
    L->model[id].exists = 1;
    L->model[id].balance = (int64_t)(splitmix(&rng) % 100000);
    L->model[id].ver = base + id;
    L->model[id].writer = (uint8_t)(id % 4);
  }
  L->next_id = sc->rows + 1;
  L->last_ver = base + sc->rows;
  snprintf(L->journal, sizeof L->journal, "%s/journal.db", L->o->dir);
  /* the journal and the watch's state file (alerts, episode, holds) of a run before in the same
   * folder go too: a restored firing alert would be counted as a false alarm of this run */
  for (int f = 0; f < 2; f++)
    for (int i = 0; i < 3; i++) {
      char p[700];
      snprintf(p, sizeof p, "%s%s%s", f ? L->o->dir : L->journal, f ? "/converge.state.db" : "",
               i == 0   ? ""
               : i == 1 ? "-wal"
                        : "-shm");
      unlink(p);
    }
  return rc;
}

/* What the watch sees now: each replica's lag, the divergences, the alerts by stage and the
 * repairs - one line, for a person watching the run. */
static void status_line(lab *L, double t) {
  char line[900];
  size_t o = 0, depth = 0;
  for (int r = 1; r < L->sc->replicas; r++)
    depth += L->link[r].q.n;
  o += (size_t)snprintf(line + o, sizeof line - o, "[%6.1fs] %llu writes, %zu in flight; lag", t,
                        (unsigned long long)L->ops, depth);
  json_t *st = get_json(L, "/api/v1/status");
  json_t *d = json_array_get(json_object_get(st, "datasets"), 0);
  size_t i;
  json_t *r;
  json_array_foreach(json_object_get(d, "replicas"), i, r) {
    if (!i || o >= sizeof line)
      continue;
    json_t *lag = json_object_get(r, "lag_seconds");
    const char *state = json_string_value(json_object_get(r, "state"));
    if (json_is_number(lag))
      o += (size_t)snprintf(line + o, sizeof line - o, " %s %.1fs", L->names[i],
                            json_number_value(lag));
    else
      o += (size_t)snprintf(line + o, sizeof line - o, " %s %s", L->names[i], state ? state : "?");
  }
  json_t *dv = json_object_get(d, "divergences"), *rp = json_object_get(d, "repair");
  if (o < sizeof line)
    o += (size_t)snprintf(line + o, sizeof line - o,
                          "; divergent %lld suspected, %lld confirmed; repaired %lld",
                          (long long)json_integer_value(json_object_get(dv, "suspected")),
                          (long long)json_integer_value(json_object_get(dv, "confirmed")),
                          (long long)json_integer_value(json_object_get(rp, "applied")));
  json_decref(st);
  int by[4] = {0};
  json_t *al = get_json(L, "/api/v1/alerts");
  json_t *arr = json_is_array(al) ? al : json_object_get(al, "alerts");
  json_array_foreach(arr, i, r) {
    const char *state = json_string_value(json_object_get(r, "state"));
    if (state && !strcmp(state, "firing"))
      by[stage_of(json_string_value(json_object_get(json_object_get(r, "labels"), "stage")))]++;
  }
  json_decref(al);
  if (o < sizeof line)
    snprintf(line + o, sizeof line - o, "; firing: %d early, %d mid, %d late", by[1], by[2], by[3]);
  say(L->o, "%s", line);
}

static int cancelled(const cvg_chaos_opts *o) {
  return o->cancel && __atomic_load_n(o->cancel, __ATOMIC_SEQ_CST);
}

static double rate_total(const cvg_chaos_scenario *sc) {
  return (double)(uint64_t)(sc->rate * sc->duration);
}

/* One tick of the system: the workload (when on), the links, the snapshots. */
static void tick(lab *L, int workload, double *next_aux, double *owed) {
  double now = cvg_wall_now();
  if (workload) {
    if (sqlite3_exec(L->db[0], "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK) {
      uint64_t max_ops = (uint64_t)rate_total(L->sc); /* the same for a seed */
      while (*owed >= 1 && L->ops < max_ops) {
        if (workload_op(L))
          break;
        *owed -= 1;
      }
      sqlite3_exec(L->db[0], "COMMIT", NULL, NULL, NULL);
    }
  }
  if (now >= *next_aux) {
    ship_aux(L);
    *next_aux = now + 0.1;
  }
  for (int r = 1; r < L->sc->replicas; r++)
    deliver(L, r, now);
}

static int links_empty(const lab *L) {
  for (int r = 1; r < L->sc->replicas; r++) {
    /* snapshots keep coming; only row changes count */
    const cqueue *qs[2] = {&L->link[r].q, &L->link[r].side};
    for (int k = 0; k < 2; k++)
      for (size_t i = 0; i < qs[k]->n; i++)
        if (!qs[k]->v[qs[k]->head + i].a)
          return 0;
  }
  return 1;
}

int cvg_chaos_run(cvg_chaos_scenario *sc, const cvg_chaos_opts *o, cvg_chaos_result *res,
                  cvg_error *err) {
  memset(res, 0, sizeof *res);
  lab *L = calloc(1, sizeof *L);
  if (!L)
    return cvg_error_set(err, CVG_ENOMEM, "chaos", "out of memory");
  L->sc = sc;
  L->o = o;
  for (size_t i = 0; i < sc->n_faults; i++) {
    cvg_chaos_fault *f = &sc->faults[i];
    f->masked = f->detected = f->repaired = f->stage = 0;
    f->detect_after = f->stage_after = f->repair_after = 0;
  }
  int rc = setup(L, err);
  char catalog[700], log[700];
  snprintf(catalog, sizeof catalog, "%s/converge.yaml", o->dir);
  snprintf(log, sizeof log, "%s/watch.log", o->dir);
  if (!rc && (L->port = free_port(o->port)) < 0) {
    if (o->port)
      rc = cvg_error_set(err, CVG_EIO, "chaos", "port %d on 127.0.0.1 is in use", o->port);
    else
      rc = cvg_error_set(err, CVG_EIO, "chaos", "no free loopback port for converge watch");
    cvg_error_hint(err, "give another --port, or leave --port out for a free one");
  }
  snprintf(L->base_url, sizeof L->base_url, "http://127.0.0.1:%d", L->port);
  if (!rc)
    rc = write_catalog(L, catalog, err);
  if (!rc && !(L->curl = curl_easy_init()))
    rc = cvg_error_set(err, CVG_ENOMEM, "chaos", "cannot set up libcurl");
  if (!rc)
    rc = start_watch(L, catalog, log, err);
  say(o,
      "scenario %s: seed %llu, %d replicas (r1 is the authority), %d rows, %g writes/s, "
      "%zu fault(s) over %gs; working in %s",
      sc->name, (unsigned long long)sc->seed, sc->replicas, sc->rows, sc->rate, sc->n_faults,
      sc->duration, o->dir);
  /* warm-up: the watch is up and every replica has a heartbeat */
  double next_aux = 0, owed = 0, deadline = cvg_wall_now() + 30;
  int ready = 0;
  while (!rc && !ready && cvg_wall_now() < deadline && !cancelled(o)) {
    tick(L, 0, &next_aux, &owed);
    if (!watch_alive(L)) {
      rc = cvg_error_set(err, CVG_EIO, log, "converge watch exited during start-up");
      cvg_error_hint(err, "see its log for why");
      break;
    }
    json_t *st = get_json(L, "/api/v1/status");
    json_t *reps = json_object_get(json_array_get(json_object_get(st, "datasets"), 0), "replicas");
    size_t i, known = 0;
    json_t *r;
    json_array_foreach(reps, i, r) known +=
        i == 0 || json_is_number(json_object_get(r, "lag_seconds"));
    ready = reps && known == json_array_size(reps) && known == (size_t)sc->replicas;
    json_decref(st);
    if (!ready)
      sleep_s(0.1);
  }
  if (!rc && !ready)
    rc = cvg_error_set(err, CVG_EDOWN, log,
                       "converge watch did not see a heartbeat on every replica within 30s");
  if (!rc) {
    say(o,
        "converge watch is up: dashboard %s/dashboard/, metrics %s/metrics, API %s/api/v1/status, "
        "log %s",
        L->base_url, L->base_url, L->base_url, log);
    /* start-up alerts (heartbeats were absent) resolve before the clock starts */
    sleep_s(1);
  }
  L->t0 = cvg_wall_now();
  double last_tick = L->t0, next_obs = L->t0 + 0.3, next_line = L->t0 + 5;
  int phase = 0; /* 0 running, 1 settling */
  double settle_until = 0;
  while (!rc && !cancelled(o)) {
    double now = cvg_wall_now(), t = now - L->t0;
    if (phase == 0 && t >= sc->duration) {
      phase = 1;
      owed =
          rate_total(sc) - (double)L->ops; /* the rest of the operations: always the same count */
      tick(L, 1, &next_aux, &owed);
      for (size_t i = 0; i < sc->n_faults; i++)
        heal(L, i);
      /* sabotaged (no repair), nothing will converge: a short wait shows what is left */
      settle_until = now + (o->sabotage && sc->settle > 5 ? 5 : sc->settle);
      say(o,
          "[%6.1fs] workload stopped after %llu writes; every fault healed; waiting up to "
          "%gs for the replicas to converge",
          t, (unsigned long long)L->ops, sc->settle);
    }
    if (phase == 0) {
      owed += (now - last_tick) * sc->rate;
      for (size_t i = 0; i < sc->n_faults; i++) {
        cvg_chaos_fault *f = &sc->faults[i];
        if (!L->fs[i].injected && t >= f->at)
          inject(L, i);
        if (L->fs[i].injected && !L->fs[i].healed && f->duration > 0 && t >= f->at + f->duration)
          heal(L, i);
      }
      ramp_delays(L, t);
    }
    last_tick = now;
    tick(L, phase == 0, &next_aux, &owed);
    if (L->oom) {
      rc = cvg_error_set(err, CVG_ENOMEM, "chaos", "out of memory");
      break;
    }
    if (now >= next_obs) {
      observe_journal(L);
      observe_confirmations(L, t);
      observe_alerts(L, t);
      observe_repairs(L, t);
      next_obs = now + 0.3;
      if (!watch_alive(L)) {
        if (!cancelled(o))
          rc = cvg_error_set(err, CVG_EIO, log, "converge watch exited during the run");
        break;
      }
      if (phase == 1 && links_empty(L)) {
        int all_done = 1;
        for (size_t i = 0; i < sc->n_faults; i++)
          all_done &= L->fs[i].done;
        model_check(L, res, 0);
        if (all_done && res->converged)
          break;
      }
      if (phase == 1 && now > settle_until)
        break;
    }
    if (now >= next_line) {
      status_line(L, t);
      next_line = now + 5;
    }
    sleep_s(0.01);
  }
  if (!rc) {
    L->t_end = elapsed(L);
    say(o, "[%6.1fs] the model check: every replica against the workload's own record", L->t_end);
    model_check(L, res, 1);
    summarize(L, res);
    if (o->ledger)
      rc = append_ledger(L, res, err);
  }
  stop_watch(L);
  if (L->curl)
    curl_easy_cleanup(L->curl);
  for (int r = 0; r < sc->replicas; r++) {
    drain_free(&L->link[r].q);
    drain_free(&L->link[r].side);
    if (L->down[r]) { /* a run stopped mid-crash: the replica comes back */
      char p[3][640], m[3][640];
      crash_paths(L->paths[r], p, m);
      for (int i = 0; i < 3; i++)
        rename(m[i], p[i]);
    }
    close_replica(L, r);
  }
  for (size_t i = 0; i < CVG_CHAOS_MAX_FAULTS; i++)
    free(L->fs[i].e);
  free(L->alerts);
  free(L->inflight_muts);
  cvgi_flight_free(L->flight);
  free(L->model);
  free(L);
  return rc;
}
