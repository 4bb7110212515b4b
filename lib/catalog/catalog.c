/* SPDX-License-Identifier: MIT */
/*
 * Loads converge.yaml (libyaml's document API) into the plain structs of catalog.h.
 *
 * The whole file is parsed into a libyaml document first, so every node keeps its position; then
 * each mapping is walked against the keys it may hold. A mapping's keys are first collected into
 * a small table (so order in the file does not matter and duplicates are caught), then read in a
 * fixed order: top-level `probes:` are the defaults that each dataset's own `probes:` override.
 *
 * Every error names file:line:column (1-based) of the offending node, the key, and what is
 * expected; the first error stops the load and nothing is returned.
 */
#include "converge/catalog.h"
#include "converge/store.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <yaml.h>

#define MAX_KEYS 32 /* most keys any mapping of the catalog may hold */

typedef struct parser {
  const char *file;     /* name used in messages */
  yaml_document_t *doc; /* the parsed document */
  cvg_error *err;       /* where the first error goes */
} parser;

/* A mapping's keys, collected before they are read. */
typedef struct keyset {
  const char *names[MAX_KEYS]; /* key text */
  yaml_node_t *keys[MAX_KEYS]; /* key node (for positions) */
  yaml_node_t *vals[MAX_KEYS]; /* value node */
  size_t n;
} keyset;

static int fail(parser *p, const yaml_node_t *n, const char *hint, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static int check_targets(parser *p, const cvg_catalog *cat, const cvg_cat_dataset *d);

const char *const cvg_policy_names[] = {"none", "lww", "authority", "manual", "merge", NULL};

int cvg_policy_parse(const char *name) {
  for (int i = 0; cvg_policy_names[i]; i++)
    if (strcmp(name, cvg_policy_names[i]) == 0)
      return i;
  return -1;
}

static int fail(parser *p, const yaml_node_t *n, const char *hint, const char *fmt, ...) {
  char where[CVG_ERROR_INPUT_MAX], msg[CVG_ERROR_MSG_MAX];
  if (n)
    snprintf(where, sizeof where, "%s:%zu:%zu", p->file, n->start_mark.line + 1,
             n->start_mark.column + 1);
  else
    snprintf(where, sizeof where, "%s", p->file);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  cvg_error_set(p->err, CVG_ECONFIG, where, "%s", msg);
  if (hint)
    cvg_error_hint(p->err, "%s", hint);
  return CVG_ECONFIG;
}

static const char *kind_name(const yaml_node_t *n) {
  switch (n->type) {
  case YAML_SCALAR_NODE:
    return "a scalar";
  case YAML_SEQUENCE_NODE:
    return "a list";
  case YAML_MAPPING_NODE:
    return "a mapping";
  default:
    return "nothing";
  }
}

static const char *scalar(const yaml_node_t *n) {
  return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static char *dup_str(const char *s) {
  size_t n = strlen(s);
  char *d = malloc(n + 1);
  if (d)
    memcpy(d, s, n + 1);
  return d;
}

/* Collects the keys of mapping n, checking each against allowed (a NULL-terminated list). */
static int collect(parser *p, yaml_node_t *n, const char *what, const char *const *allowed,
                   keyset *ks) {
  ks->n = 0;
  if (n->type != YAML_MAPPING_NODE)
    return fail(p, n, "write it as key: value lines", "%s must be a mapping, found %s", what,
                kind_name(n));
  for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
    yaml_node_t *k = yaml_document_get_node(p->doc, pr->key);
    yaml_node_t *v = yaml_document_get_node(p->doc, pr->value);
    const char *name = scalar(k);
    if (!name)
      return fail(p, k, NULL, "a key of %s must be a plain word, found %s", what, kind_name(k));
    size_t i = 0;
    while (allowed[i] && strcmp(allowed[i], name) != 0)
      i++;
    if (!allowed[i]) {
      char hint[CVG_ERROR_MSG_MAX] = "allowed keys here:";
      size_t used = strlen(hint);
      for (size_t j = 0; allowed[j] && used + strlen(allowed[j]) + 2 < sizeof hint; j++)
        used += (size_t)snprintf(hint + used, sizeof hint - used, " %s", allowed[j]);
      return fail(p, k, hint, "unknown key '%s' in %s", name, what);
    }
    for (size_t j = 0; j < ks->n; j++)
      if (strcmp(ks->names[j], name) == 0)
        return fail(p, k, "give each key once", "duplicate key '%s' in %s (first at line %zu)",
                    name, what, ks->keys[j]->start_mark.line + 1);
    if (ks->n == MAX_KEYS)
      return fail(p, k, NULL, "too many keys in %s", what);
    ks->names[ks->n] = name;
    ks->keys[ks->n] = k;
    ks->vals[ks->n] = v;
    ks->n++;
  }
  return CVG_OK;
}

static yaml_node_t *get(const keyset *ks, const char *name) {
  for (size_t i = 0; i < ks->n; i++)
    if (strcmp(ks->names[i], name) == 0)
      return ks->vals[i];
  return NULL;
}

static int want_str(parser *p, yaml_node_t *v, const char *key, char **out) {
  const char *s = scalar(v);
  if (!s)
    return fail(p, v, "give a single value", "'%s' must be a string, found %s", key, kind_name(v));
  if (!*s)
    return fail(p, v, NULL, "'%s' must not be empty", key);
  char *d = dup_str(s);
  if (!d)
    return cvg_error_set(p->err, CVG_ENOMEM, p->file, "out of memory reading the catalog");
  free(*out);
  *out = d;
  return CVG_OK;
}

static int want_bool(parser *p, yaml_node_t *v, const char *key, int *out) {
  const char *s = scalar(v);
  static const char *const yes[] = {"true", "yes", "on", "True", "TRUE", NULL};
  static const char *const no[] = {"false", "no", "off", "False", "FALSE", NULL};
  for (size_t i = 0; s && yes[i]; i++)
    if (strcmp(s, yes[i]) == 0)
      return *out = 1, CVG_OK;
  for (size_t i = 0; s && no[i]; i++)
    if (strcmp(s, no[i]) == 0)
      return *out = 0, CVG_OK;
  return fail(p, v, "write true or false", "'%s' must be true or false, found %s%s%s", key,
              s ? "'" : "", s ? s : kind_name(v), s ? "'" : "");
}

static int want_int(parser *p, yaml_node_t *v, const char *key, int64_t lo, int64_t hi,
                    int64_t *out) {
  const char *s = scalar(v);
  char *end = NULL;
  errno = 0;
  long long x = s ? strtoll(s, &end, 10) : 0;
  if (!s || !*s || *end || errno || x < lo || x > hi) {
    char hint[96];
    snprintf(hint, sizeof hint, "write a whole number from %lld to %lld", (long long)lo,
             (long long)hi);
    return fail(p, v, hint, "'%s' must be a whole number, found %s%s%s", key, s ? "'" : "",
                s ? s : kind_name(v), s ? "'" : "");
  }
  *out = x;
  return CVG_OK;
}

static int want_double(parser *p, yaml_node_t *v, const char *key, double lo, double hi,
                       double *out) {
  const char *s = scalar(v);
  char *end = NULL;
  errno = 0;
  double x = s ? strtod(s, &end) : 0;
  if (!s || !*s || *end || errno || !isfinite(x) || x < lo || x > hi) {
    char hint[96];
    snprintf(hint, sizeof hint, "write a number from %g to %g", lo, hi);
    return fail(p, v, hint, "'%s' must be a number, found %s%s%s", key, s ? "'" : "",
                s ? s : kind_name(v), s ? "'" : "");
  }
  *out = x;
  return CVG_OK;
}

int cvg_parse_duration(const char *s, double *out) {
  if (!s || !*s)
    return -1;
  char *end = NULL;
  errno = 0;
  double x = strtod(s, &end);
  if (end == s || errno || !isfinite(x) || x < 0)
    return -1;
  double mult = 1;
  if (*end == '\0' || strcmp(end, "s") == 0)
    mult = 1;
  else if (strcmp(end, "ms") == 0)
    mult = 0.001;
  else if (strcmp(end, "m") == 0)
    mult = 60;
  else if (strcmp(end, "h") == 0)
    mult = 3600;
  else if (strcmp(end, "d") == 0)
    mult = 86400;
  else
    return -1;
  *out = x * mult;
  return 0;
}

static int want_duration(parser *p, yaml_node_t *v, const char *key, double *out) {
  const char *s = scalar(v);
  double x;
  if (!s || cvg_parse_duration(s, &x) != 0 || x > 366.0 * 86400)
    return fail(p, v, "write seconds (1.5) or a number with a unit: 250ms, 10s, 5m, 1h, 1d",
                "'%s' must be a duration, found %s%s%s", key, s ? "'" : "", s ? s : kind_name(v),
                s ? "'" : "");
  *out = x;
  return CVG_OK;
}

/* A list of names: [a, b] or a single name. */
static int want_list(parser *p, yaml_node_t *v, const char *key, char ***out, size_t *n_out) {
  size_t n = v->type == YAML_SEQUENCE_NODE
                 ? (size_t)(v->data.sequence.items.top - v->data.sequence.items.start)
                 : 1;
  if (v->type == YAML_MAPPING_NODE)
    return fail(p, v, "write [a, b] or a single column name", "'%s' must be a list of names", key);
  if (n == 0)
    return fail(p, v, "name at least one column", "'%s' must not be empty", key);
  char **items = calloc(n, sizeof *items);
  if (!items)
    return cvg_error_set(p->err, CVG_ENOMEM, p->file, "out of memory reading the catalog");
  *out = items;
  *n_out = n;
  for (size_t i = 0; i < n; i++) {
    yaml_node_t *it = v->type == YAML_SEQUENCE_NODE
                          ? yaml_document_get_node(p->doc, v->data.sequence.items.start[i])
                          : v;
    int rc = want_str(p, it, key, &items[i]);
    if (rc)
      return rc;
    for (size_t j = 0; j < i; j++)
      if (strcmp(items[j], items[i]) == 0)
        return fail(p, it, NULL, "'%s' names column '%s' twice", key, items[i]);
  }
  return CVG_OK;
}

static void free_list(char **l, size_t n) {
  for (size_t i = 0; l && i < n; i++)
    free(l[i]);
  free(l);
}

static int is_ident(const char *s) {
  if (!*s || !(isalpha((unsigned char)*s) || *s == '_'))
    return 0;
  for (; *s; s++)
    if (!(isalnum((unsigned char)*s) || *s == '_'))
      return 0;
  return 1;
}

/* ---- secrets ------------------------------------------------------------------------------- */

/* Appends n bytes to a heap string of capacity *cap, growing it. */
static int append(char **s, size_t *len, size_t *cap, const char *src, size_t n) {
  if (*len + n + 1 > *cap) {
    size_t c = (*cap ? *cap : 64);
    while (c < *len + n + 1)
      c *= 2;
    if (c > CVG_URL_MAX * 2)
      return -1;
    char *g = realloc(*s, c);
    if (!g)
      return -1;
    *s = g;
    *cap = c;
  }
  memcpy(*s + *len, src, n);
  *len += n;
  (*s)[*len] = '\0';
  return 0;
}

/* Replaces every ${NAME} in text by the environment variable NAME. */
static int expand_env(parser *p, yaml_node_t *v, const char *text, char **out) {
  char *s = NULL;
  size_t len = 0, cap = 0;
  for (const char *c = text; *c;) {
    if (c[0] == '$' && c[1] == '{') {
      const char *close = strchr(c + 2, '}');
      if (!close) {
        free(s);
        return fail(p, v, "write ${NAME} with a closing brace", "unclosed ${ in 'url'");
      }
      char name[256];
      size_t nl = (size_t)(close - c - 2);
      if (nl == 0 || nl >= sizeof name) {
        free(s);
        return fail(p, v, "write ${NAME}, NAME an environment variable", "bad ${} in 'url'");
      }
      memcpy(name, c + 2, nl);
      name[nl] = '\0';
      const char *val = getenv(name);
      if (!val) {
        free(s);
        return fail(p, v, "set the variable in converge's environment, or write the value",
                    "'url' uses ${%s}, but the environment variable %s is not set", name, name);
      }
      if (append(&s, &len, &cap, val, strlen(val))) {
        free(s);
        return fail(p, v, NULL, "'url' is too long after expanding ${%s}", name);
      }
      c = close + 1;
    } else {
      if (append(&s, &len, &cap, c, 1)) {
        free(s);
        return fail(p, v, NULL, "'url' is too long");
      }
      c++;
    }
  }
  if (!s && !(s = dup_str("")))
    return cvg_error_set(p->err, CVG_ENOMEM, p->file, "out of memory");
  *out = s;
  return CVG_OK;
}

/* Where the userinfo of scheme://user:pass@host/... lies: [*ui, *at) or 0 if none. */
static int find_userinfo(const char *url, size_t *ui, size_t *at) {
  const char *sep = strstr(url, "://");
  if (!sep)
    return 0;
  size_t start = (size_t)(sep - url) + 3;
  size_t end = start + strcspn(url + start, "/?#");
  for (size_t i = end; i > start; i--)
    if (url[i - 1] == '@') {
      *ui = start;
      *at = i - 1;
      return 1;
    }
  return 0;
}

/* Puts the first line of file into the URL's userinfo as the password (percent-encoded). */
static int add_password(parser *p, yaml_node_t *v, const char *file, char **url) {
  size_t ui, at;
  if (!find_userinfo(*url, &ui, &at))
    return fail(p, v, "write the user in the URL: postgresql://user@host:port/db?table=T",
                "'password_file' needs a user name in the replica's URL");
  if (memchr(*url + ui, ':', at - ui))
    return fail(p, v, "remove the password from the URL, or drop password_file",
                "'password_file' given, but the URL already has a password");
  FILE *f = fopen(file, "r");
  if (!f)
    return fail(p, v, "check the path and that converge may read it",
                "cannot read password_file '%s': %s", file, strerror(errno));
  char line[1024];
  if (!fgets(line, sizeof line, f))
    line[0] = '\0';
  fclose(f);
  line[strcspn(line, "\r\n")] = '\0';
  if (!line[0])
    return fail(p, v, "put the password on the file's first line", "password_file '%s' is empty",
                file);
  char *s = NULL;
  size_t len = 0, cap = 0;
  int bad = append(&s, &len, &cap, *url, at) || append(&s, &len, &cap, ":", 1);
  for (const char *c = line; !bad && *c; c++) {
    unsigned char ch = (unsigned char)*c;
    if (isalnum(ch) || strchr("-._~", ch)) {
      bad = append(&s, &len, &cap, c, 1);
    } else {
      char enc[4];
      snprintf(enc, sizeof enc, "%%%02X", ch);
      bad = append(&s, &len, &cap, enc, 3);
    }
  }
  if (!bad)
    bad = append(&s, &len, &cap, *url + at, strlen(*url + at));
  explicit_bzero(line, sizeof line);
  if (bad) {
    free(s);
    return fail(p, v, NULL, "URL too long with the password");
  }
  free(*url);
  *url = s;
  return CVG_OK;
}

/* ---- the parts of the catalog ---------------------------------------------------------------- */

static void probes_defaults(cvg_cat_probes *pr) {
  memset(pr, 0, sizeof *pr);
  pr->heartbeat_interval = 1;
  pr->stall_after = 3;
  pr->canary_interval = 10;
  pr->canary_timeout = 30;
  pr->create_tables = 1;
  pr->sweep_interval = 5;
  pr->full_sweep_interval = 3600;
  pr->full_sweep_rate = 0;
  pr->window_start = pr->window_end = -1;
  pr->confirm_within = 60;
  pr->max_tracked = 100000;
}

static int probes_copy(cvg_cat_probes *dst, const cvg_cat_probes *src) {
  *dst = *src;
  dst->heartbeat_table =
      dup_str(src->heartbeat_table ? src->heartbeat_table : "converge_heartbeat");
  dst->canary_table = dup_str(src->canary_table ? src->canary_table : "converge_canary");
  return dst->heartbeat_table && dst->canary_table ? CVG_OK : CVG_ENOMEM;
}

static int parse_window(parser *p, yaml_node_t *v, cvg_cat_probes *pr) {
  const char *s = scalar(v);
  unsigned h1, m1, h2, m2;
  char tail;
  if (!s || sscanf(s, "%u:%u-%u:%u%c", &h1, &m1, &h2, &m2, &tail) != 4 || h1 > 23 || h2 > 24 ||
      m1 > 59 || m2 > 59 || (h2 == 24 && m2 != 0) || (h1 * 60 + m1 == h2 * 60 + m2))
    return fail(p, v, "write \"HH:MM-HH:MM\" in UTC, e.g. \"01:00-05:00\" (it may wrap midnight)",
                "'window' must be a time range");
  pr->window_start = (int)(h1 * 60 + m1);
  pr->window_end = (int)(h2 * 60 + m2);
  return CVG_OK;
}

/* A probe given as `false`/`off` is turned off; otherwise a mapping of its settings. */
static int probe_off(yaml_node_t *v) {
  const char *s = scalar(v);
  return s && (strcmp(s, "false") == 0 || strcmp(s, "off") == 0 || strcmp(s, "no") == 0);
}

/*
 * One probe's section: absent (nothing changes), `off`/`false` (interval 0), or a mapping of
 * its settings, whose keys are collected into sub and whose interval is read here. *settings
 * is 1 when sub holds a mapping the caller reads further.
 */
static int probe_section(parser *p, const keyset *ks, const char *name, const char *what,
                         const char *const *keys, double *interval, keyset *sub, int *settings) {
  yaml_node_t *v = get(ks, name), *w;
  int rc;
  *settings = 0;
  if (!v)
    return CVG_OK;
  if (probe_off(v)) {
    *interval = 0;
    return CVG_OK;
  }
  if ((rc = collect(p, v, what, keys, sub)))
    return rc;
  if ((w = get(sub, "interval")) && (rc = want_duration(p, w, "interval", interval)))
    return rc;
  *settings = 1;
  return CVG_OK;
}

/* A table name for converge's own tables. */
static int want_table(parser *p, yaml_node_t *w, char **out) {
  int rc = want_str(p, w, "table", out);
  if (!rc && !is_ident(*out))
    return fail(p, w, "use letters, digits and _", "'table' must be a plain table name");
  return rc;
}

static int parse_probes(parser *p, yaml_node_t *n, cvg_cat_probes *pr) {
  static const char *const top[] = {"heartbeat",      "canary",        "sweep", "full_sweep",
                                    "confirm_within", "create_tables", NULL};
  static const char *const hb[] = {"interval", "table", "stall_after", NULL};
  static const char *const ca[] = {"interval", "timeout", "table", NULL};
  static const char *const sw[] = {"interval", "max_tracked", "keep_mapped", NULL};
  static const char *const fs[] = {"interval", "rows_per_second", "window", NULL};
  keyset ks, sub;
  yaml_node_t *v, *w;
  int64_t x;
  int rc = collect(p, n, "probes", top, &ks), more;
  if (rc)
    return rc;
  if ((rc = probe_section(p, &ks, "heartbeat", "probes.heartbeat", hb, &pr->heartbeat_interval,
                          &sub, &more)))
    return rc;
  if (more) {
    if ((w = get(&sub, "table")) && (rc = want_table(p, w, &pr->heartbeat_table)))
      return rc;
    if ((w = get(&sub, "stall_after"))) {
      if ((rc = want_int(p, w, "stall_after", 1, 1000, &x)))
        return rc;
      pr->stall_after = (int)x;
    }
  }
  if ((rc =
           probe_section(p, &ks, "canary", "probes.canary", ca, &pr->canary_interval, &sub, &more)))
    return rc;
  if (more) {
    if ((w = get(&sub, "timeout")) && (rc = want_duration(p, w, "timeout", &pr->canary_timeout)))
      return rc;
    if (w && pr->canary_timeout <= 0)
      return fail(p, w, NULL, "canary 'timeout' must be more than 0");
    if ((w = get(&sub, "table")) && (rc = want_table(p, w, &pr->canary_table)))
      return rc;
  }
  if ((rc = probe_section(p, &ks, "sweep", "probes.sweep", sw, &pr->sweep_interval, &sub, &more)))
    return rc;
  if (more) {
    if ((w = get(&sub, "max_tracked"))) {
      if ((rc = want_int(p, w, "max_tracked", 1, 100000000, &x)))
        return rc;
      pr->max_tracked = (size_t)x;
    }
    if ((w = get(&sub, "keep_mapped")) && (rc = want_bool(p, w, "keep_mapped", &pr->keep_mapped)))
      return rc;
  }
  if ((rc = probe_section(p, &ks, "full_sweep", "probes.full_sweep", fs, &pr->full_sweep_interval,
                          &sub, &more)))
    return rc;
  if (more) {
    if ((w = get(&sub, "rows_per_second")) &&
        (rc = want_double(p, w, "rows_per_second", 0, 1e12, &pr->full_sweep_rate)))
      return rc;
    if ((w = get(&sub, "window")) && (rc = parse_window(p, w, pr)))
      return rc;
  }
  if ((v = get(&ks, "confirm_within")) &&
      (rc = want_duration(p, v, "confirm_within", &pr->confirm_within)))
    return rc;
  if ((v = get(&ks, "create_tables")) &&
      (rc = want_bool(p, v, "create_tables", &pr->create_tables)))
    return rc;
  return CVG_OK;
}

static int parse_invariants(parser *p, yaml_node_t *n, cvg_cat_invariants *inv) {
  static const char *const keys[] = {"max_lag_seconds",
                                     "max_divergent_rows",
                                     "max_divergent_fraction",
                                     "min_agreeing_replicas",
                                     "equal_aggregate",
                                     "max_divergence_age_seconds",
                                     NULL};
  static const char *const agg_keys[] = {"expr", "tolerance", NULL};
  keyset ks;
  int rc = collect(p, n, "invariants", keys, &ks);
  yaml_node_t *v;
  if (rc)
    return rc;
  if ((v = get(&ks, "max_lag_seconds")) &&
      (rc = want_double(p, v, "max_lag_seconds", 0, 1e9, &inv->max_lag_seconds)))
    return rc;
  if ((v = get(&ks, "max_divergent_rows")) &&
      (rc = want_int(p, v, "max_divergent_rows", 0, INT64_MAX, &inv->max_divergent_rows)))
    return rc;
  if ((v = get(&ks, "max_divergent_fraction")) &&
      (rc = want_double(p, v, "max_divergent_fraction", 0, 1, &inv->max_divergent_fraction)))
    return rc;
  if ((v = get(&ks, "min_agreeing_replicas")) &&
      (rc = want_int(p, v, "min_agreeing_replicas", 1, 64, &inv->min_agreeing_replicas)))
    return rc;
  if ((v = get(&ks, "max_divergence_age_seconds")) &&
      (rc = want_double(p, v, "max_divergence_age_seconds", 0, 1e9,
                        &inv->max_divergence_age_seconds)))
    return rc;
  if ((v = get(&ks, "equal_aggregate"))) {
    size_t n_agg = v->type == YAML_SEQUENCE_NODE
                       ? (size_t)(v->data.sequence.items.top - v->data.sequence.items.start)
                       : 1;
    inv->aggregates = calloc(n_agg, sizeof *inv->aggregates);
    if (!inv->aggregates)
      return cvg_error_set(p->err, CVG_ENOMEM, p->file, "out of memory");
    for (size_t i = 0; i < n_agg; i++) {
      yaml_node_t *it = v->type == YAML_SEQUENCE_NODE
                            ? yaml_document_get_node(p->doc, v->data.sequence.items.start[i])
                            : v;
      cvg_cat_aggregate *a = &inv->aggregates[i];
      inv->n_aggregates = i + 1;
      if (it->type == YAML_SCALAR_NODE) {
        if ((rc = want_str(p, it, "equal_aggregate", &a->expr)))
          return rc;
      } else {
        keyset ak;
        if ((rc = collect(p, it, "equal_aggregate", agg_keys, &ak)))
          return rc;
        yaml_node_t *e = get(&ak, "expr"), *t = get(&ak, "tolerance");
        if (!e)
          return fail(p, it, "e.g. {expr: \"sum(balance)\", tolerance: 0.01}",
                      "equal_aggregate entry lacks 'expr'");
        if ((rc = want_str(p, e, "expr", &a->expr)))
          return rc;
        if (t && (rc = want_double(p, t, "tolerance", 0, 1e300, &a->tolerance)))
          return rc;
      }
      if (strchr(a->expr, ';'))
        return fail(p, it, "write one aggregate expression such as sum(balance)",
                    "equal_aggregate expression must not contain ';'");
    }
  }
  return CVG_OK;
}

/* ---- alert rules and delivery ------------------------------------------------------------- */

const cvg_signal_info cvg_signals[CVG_SIG__COUNT] = {
    [CVG_SIG_LAG_SECONDS] = {"lag_seconds", 1},
    [CVG_SIG_CONVERGENCE_SECONDS] = {"convergence_seconds", 1},
    [CVG_SIG_CANARY_FAILURES] = {"canary_failures", 1},
    [CVG_SIG_REPLICA_DOWN] = {"replica_down", 1},
    [CVG_SIG_SWEEP_FAILURES] = {"sweep_failures", 1},
    [CVG_SIG_DIVERGENT_ROWS] = {"divergent_rows", 2},
    [CVG_SIG_SUSPECTED_ROWS] = {"suspected_rows", 2},
    [CVG_SIG_DIVERGENT_FRACTION] = {"divergent_fraction", 2},
    [CVG_SIG_DIVERGENT_SHARDS] = {"divergent_shards", 2},
    [CVG_SIG_CONFLICT_SHARDS] = {"conflict_shards", 2},
    [CVG_SIG_SCHEMA_DRIFT] = {"schema_drift", 2},
    [CVG_SIG_DIVERGENCE_AGE_SECONDS] = {"divergence_age_seconds", 2},
    [CVG_SIG_UNTRACKED_ROWS] = {"untracked_rows", 2},
    [CVG_SIG_WRITE_RATE] = {"write_rate", 2},
    [CVG_SIG_REPAIR_BACKLOG] = {"repair_backlog", 2},
    [CVG_SIG_REPAIR_FAILURES] = {"repair_failures", 2},
    [CVG_SIG_REPAIR_STALLED_RUNS] = {"repair_stalled_runs", 2},
    [CVG_SIG_REPAIR_REFUSED] = {"repair_refused", 2},
};
const char *const cvg_rule_invariants[] = {"max_lag_seconds",
                                           "max_divergent_rows",
                                           "max_divergent_fraction",
                                           "min_agreeing_replicas",
                                           "max_divergence_age_seconds",
                                           "equal_aggregate",
                                           NULL};
const char *const cvg_stage_names[] = {"early", "mid", "late"};
const char *const cvg_trend_names[] = {"incomplete", "ok", "warn", "stall", "stop"};

int cvg_signal_parse(const char *name) {
  for (int i = 0; name && i < CVG_SIG__COUNT; i++)
    if (strcmp(name, cvg_signals[i].name) == 0)
      return i;
  return -1;
}

int cvg_rule_metric_scope(const char *name) {
  int i = cvg_signal_parse(name);
  return i < 0 ? 0 : cvg_signals[i].scope;
}

static int one_of(parser *p, yaml_node_t *v, const char *key, const char *const *names, int *out) {
  const char *s = scalar(v);
  for (int i = 0; s && names[i]; i++)
    if (strcmp(s, names[i]) == 0)
      return *out = i, CVG_OK;
  char hint[CVG_ERROR_MSG_MAX] = "write one of:";
  size_t used = strlen(hint);
  for (size_t j = 0; names[j] && used + strlen(names[j]) + 2 < sizeof hint; j++)
    used += (size_t)snprintf(hint + used, sizeof hint - used, " %s", names[j]);
  return fail(p, v, hint, "'%s' has an unknown value %s%s%s", key, s ? "'" : "",
              s ? s : kind_name(v), s ? "'" : "");
}

/* A mapping of names to strings (labels, annotations). */
static int want_map(parser *p, yaml_node_t *v, const char *key, int labels, char ***names,
                    char ***values, size_t *n_out) {
  if (v->type != YAML_MAPPING_NODE)
    return fail(p, v, "write name: value pairs", "'%s' must be a mapping, found %s", key,
                kind_name(v));
  size_t n = (size_t)(v->data.mapping.pairs.top - v->data.mapping.pairs.start);
  *names = calloc(n ? n : 1, sizeof **names);
  *values = calloc(n ? n : 1, sizeof **values);
  if (!*names || !*values)
    return cvg_error_set(p->err, CVG_ENOMEM, p->file, "out of memory");
  for (size_t i = 0; i < n; i++) {
    yaml_node_pair_t *pr = &v->data.mapping.pairs.start[i];
    yaml_node_t *k = yaml_document_get_node(p->doc, pr->key);
    yaml_node_t *val = yaml_document_get_node(p->doc, pr->value);
    int rc = want_str(p, k, key, &(*names)[i]);
    *n_out = i + 1;
    if (rc || (rc = want_str(p, val, (*names)[i], &(*values)[i])))
      return rc;
    if (labels && !is_ident((*names)[i]))
      return fail(p, k, "label names use letters, digits and _, and do not start with a digit",
                  "'%s' is not a valid label name", (*names)[i]);
    for (size_t j = 0; j < i; j++)
      if (strcmp((*names)[j], (*names)[i]) == 0)
        return fail(p, k, NULL, "'%s' names '%s' twice", key, (*names)[i]);
  }
  return CVG_OK;
}

void cvg_cat_rule_free(cvg_cat_rule *r) {
  free(r->alert);
  free(r->subject);
  free(r->intensity);
  free(r->severity);
  free_list(r->label_names, r->n_labels);
  free_list(r->label_values, r->n_labels);
  free_list(r->ann_names, r->n_ann);
  free_list(r->ann_values, r->n_ann);
  free(r->runbook_url);
  memset(r, 0, sizeof *r);
}

static int parse_rule(parser *p, yaml_node_t *n, cvg_cat_rule *r) {
  static const char *const keys[] = {
      "alert",  "metric",        "invariant",     "trend",       "slo",         "above",
      "below",  "resolve_below", "resolve_above", "threshold",   "k",           "floor",
      "warmup", "intensity",     "at_least",      "window",      "for",         "keep_firing_for",
      "stage",  "severity",      "labels",        "annotations", "runbook_url", NULL};
  static const char *const reserved[] = {"alertname", "dataset",  "replica", "shard",
                                         "stage",     "severity", NULL};
  static const char *const levels[] = {"ok", "warn", "stall", "stop", NULL};
  keyset ks;
  yaml_node_t *v, *w;
  int rc = collect(p, n, "an alert rule", keys, &ks), x;
  if (rc)
    return rc;
  r->line = (int)n->start_mark.line + 1;
  r->column = (int)n->start_mark.column + 1;
  r->k = 4;
  r->warmup = 86400;
  r->at_least = CVG_TREND_WARN;
  r->window = 3600;
  if (!(v = get(&ks, "alert")))
    return fail(p, n, "e.g. alert: BillingLagHigh", "alert rule lacks 'alert' (its name)");
  if ((rc = want_str(p, v, "alert", &r->alert)))
    return rc;
  if (!is_ident(r->alert))
    return fail(p, v, "use letters, digits and _ (it becomes the alertname label)",
                "alert name '%s' is not a valid name", r->alert);
  static const char *const kinds[] = {"metric", "invariant", "trend", "slo"};
  yaml_node_t *kv = NULL;
  for (int k = 0; k < 4; k++)
    if ((w = get(&ks, kinds[k]))) {
      if (kv)
        return fail(p, w, "give one of metric, invariant, trend or slo per rule",
                    "rule '%s' has both '%s' and another condition", r->alert, kinds[k]);
      kv = w;
      r->kind = (cvg_rule_kind)k;
    }
  if (!kv)
    return fail(p, n,
                "add metric: NAME (with above/below), invariant: NAME, trend: lag or slo: "
                "convergence",
                "rule '%s' has no condition", r->alert);
  if ((rc = want_str(p, kv, kinds[r->kind], &r->subject)))
    return rc;
  switch (r->kind) {
  case CVG_RULE_METRIC:
    if (!cvg_rule_metric_scope(r->subject))
      return fail(p, kv,
                  "per replica: lag_seconds convergence_seconds canary_failures replica_down; "
                  "per dataset: divergent_rows suspected_rows divergent_fraction divergent_shards "
                  "conflict_shards schema_drift divergence_age_seconds untracked_rows write_rate "
                  "repair_backlog repair_failures repair_stalled_runs",
                  "'%s' is not a metric converge measures", r->subject);
    break;
  case CVG_RULE_INVARIANT:
    if (one_of(p, kv, "invariant", cvg_rule_invariants, &x))
      return CVG_ECONFIG;
    break;
  case CVG_RULE_TREND:
    if (strcmp(r->subject, "lag") != 0)
      return fail(p, kv, "write trend: lag", "trend '%s' is unknown; only lag has a trend",
                  r->subject);
    break;
  case CVG_RULE_SLO:
    if (strcmp(r->subject, "convergence") != 0)
      return fail(p, kv, "write slo: convergence (declared per dataset with slo:)",
                  "slo '%s' is unknown", r->subject);
    break;
  }
  yaml_node_t *above = get(&ks, "above"), *below = get(&ks, "below"), *thr = get(&ks, "threshold");
  int numeric = r->kind == CVG_RULE_METRIC || r->kind == CVG_RULE_SLO;
  if (!numeric && (above || below || thr))
    return fail(p,
                above   ? above
                : below ? below
                        : thr,
                "invariant and trend rules have no "
                "threshold of their own",
                "rule '%s' cannot have a threshold", r->alert);
  if (above && below)
    return fail(p, below, "give either above or below", "rule '%s' has both above and below",
                r->alert);
  if (thr) {
    const char *t = scalar(thr);
    if (!t || strcmp(t, "adaptive") != 0)
      return fail(p, thr, "write threshold: adaptive, or a number with above: or below:",
                  "'threshold' must be adaptive");
    if (r->kind != CVG_RULE_METRIC)
      return fail(p, thr, NULL, "only metric rules may have an adaptive threshold");
    if (above || below)
      return fail(p, above ? above : below, "an adaptive rule learns its threshold",
                  "rule '%s' has both threshold: adaptive and a fixed threshold", r->alert);
    r->adaptive = 1;
  } else if (numeric && !above && !below) {
    return fail(p, n, "add above: N or below: N (or threshold: adaptive)",
                "rule '%s' has no threshold", r->alert);
  }
  if ((above && (rc = want_double(p, above, "above", -1e300, 1e300, &r->threshold))) ||
      (below && (rc = want_double(p, below, "below", -1e300, 1e300, &r->threshold))))
    return rc;
  r->below = below != NULL;
  if ((w = get(&ks, "resolve_below")) || (w = get(&ks, "resolve_above"))) {
    int rb = get(&ks, "resolve_below") != NULL;
    if (get(&ks, "resolve_below") && get(&ks, "resolve_above"))
      return fail(p, w, NULL, "give resolve_below or resolve_above, not both");
    if (!numeric || r->adaptive)
      return fail(p, w, NULL, "only rules with a fixed threshold have a resolve threshold");
    if (rb == r->below)
      return fail(p, w,
                  r->below ? "a rule firing below N resolves above a higher value: resolve_above"
                           : "a rule firing above N resolves below a lower value: resolve_below",
                  "the resolve threshold points the wrong way");
    if ((rc =
             want_double(p, w, rb ? "resolve_below" : "resolve_above", -1e300, 1e300, &r->resolve)))
      return rc;
    if ((rb && r->resolve > r->threshold) || (!rb && r->resolve < r->threshold))
      return fail(p, w, "the resolve threshold lies on the healthy side of the firing threshold",
                  "resolve threshold %g is past the firing threshold %g", r->resolve, r->threshold);
    r->has_resolve = 1;
  }
  static const char *const adaptive_keys[] = {"k", "floor", "warmup", "intensity", NULL};
  for (size_t i = 0; adaptive_keys[i]; i++)
    if ((w = get(&ks, adaptive_keys[i])) && !r->adaptive)
      return fail(p, w, "add threshold: adaptive", "'%s' applies only to adaptive thresholds",
                  adaptive_keys[i]);
  if ((w = get(&ks, "k")) && (rc = want_double(p, w, "k", 0.1, 100, &r->k)))
    return rc;
  if ((w = get(&ks, "floor")) && (rc = want_double(p, w, "floor", 0, 1e300, &r->floor)))
    return rc;
  if ((w = get(&ks, "warmup")) && (rc = want_duration(p, w, "warmup", &r->warmup)))
    return rc;
  if ((w = get(&ks, "intensity"))) {
    if ((rc = want_str(p, w, "intensity", &r->intensity)))
      return rc;
    if (!cvg_rule_metric_scope(r->intensity))
      return fail(p, w, "e.g. intensity: write_rate", "'%s' is not a metric converge measures",
                  r->intensity);
  }
  if ((w = get(&ks, "at_least"))) {
    if (r->kind != CVG_RULE_TREND)
      return fail(p, w, NULL, "'at_least' applies only to trend rules");
    if (one_of(p, w, "at_least", levels, &x))
      return CVG_ECONFIG;
    if (x == 0)
      return fail(p, w, "write warn, stall or stop", "a trend rule cannot fire at ok");
    r->at_least = (cvg_trend_status)x;
  }
  if ((w = get(&ks, "window"))) {
    if (r->kind != CVG_RULE_SLO)
      return fail(p, w, NULL, "'window' applies only to slo rules (the burn-rate window)");
    if ((rc = want_duration(p, w, "window", &r->window)))
      return rc;
    if (r->window < 1)
      return fail(p, w, NULL, "'window' must be at least 1s");
  }
  if ((w = get(&ks, "for")) && (rc = want_duration(p, w, "for", &r->for_s)))
    return rc;
  if ((w = get(&ks, "keep_firing_for")) &&
      (rc = want_duration(p, w, "keep_firing_for", &r->keep_firing_for)))
    return rc;
  static const char *const stages[] = {"early", "mid", "late", NULL};
  if ((w = get(&ks, "stage"))) {
    if (one_of(p, w, "stage", stages, &x))
      return CVG_ECONFIG;
    r->stage = (cvg_stage)x;
  }
  if ((w = get(&ks, "severity"))) {
    if ((rc = want_str(p, w, "severity", &r->severity)))
      return rc;
  } else if (!(r->severity = dup_str(r->stage == CVG_STAGE_LATE  ? "page"
                                     : r->stage == CVG_STAGE_MID ? "critical"
                                                                 : "warning"))) {
    return CVG_ENOMEM;
  }
  if ((w = get(&ks, "labels"))) {
    if ((rc = want_map(p, w, "labels", 1, &r->label_names, &r->label_values, &r->n_labels)))
      return rc;
    for (size_t i = 0; i < r->n_labels; i++)
      for (size_t j = 0; reserved[j]; j++)
        if (strcmp(r->label_names[i], reserved[j]) == 0)
          return fail(p, w,
                      "alertname, dataset, replica, shard, stage and severity are set by "
                      "converge (use stage: and severity: for the last two)",
                      "label '%s' is reserved", reserved[j]);
  }
  if ((w = get(&ks, "annotations")) &&
      (rc = want_map(p, w, "annotations", 0, &r->ann_names, &r->ann_values, &r->n_ann)))
    return rc;
  if ((w = get(&ks, "runbook_url")) && (rc = want_str(p, w, "runbook_url", &r->runbook_url)))
    return rc;
  return CVG_OK;
}

static int parse_rules(parser *p, yaml_node_t *v, cvg_cat_rule **out, size_t *n_out) {
  if (v->type != YAML_SEQUENCE_NODE)
    return fail(p, v, "write a list: - alert: Name ...", "'rules' must be a list, found %s",
                kind_name(v));
  size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
  if (!(*out = calloc(n ? n : 1, sizeof **out)))
    return cvg_error_set(p->err, CVG_ENOMEM, p->file, "out of memory");
  for (size_t i = 0; i < n; i++) {
    yaml_node_t *it = yaml_document_get_node(p->doc, v->data.sequence.items.start[i]);
    *n_out = i + 1;
    int rc = parse_rule(p, it, &(*out)[i]);
    if (rc)
      return rc;
    for (size_t j = 0; j < i; j++)
      if (strcmp((*out)[j].alert, (*out)[i].alert) == 0)
        return fail(p, it, "give each rule its own alert name", "two rules are named '%s'",
                    (*out)[i].alert);
  }
  return CVG_OK;
}

static int want_url_list(parser *p, yaml_node_t *v, const char *key, char ***out, size_t *n) {
  int rc = want_list(p, v, key, out, n);
  if (rc)
    return rc;
  for (size_t i = 0; i < *n; i++)
    if (strncmp((*out)[i], "http://", 7) != 0 && strncmp((*out)[i], "https://", 8) != 0)
      return fail(p, v, "e.g. http://127.0.0.1:9093", "'%s' entry '%s' is not an http(s) URL", key,
                  (*out)[i]);
  return CVG_OK;
}

static int parse_alerting(parser *p, yaml_node_t *n, cvg_cat_alerting *a) {
  static const char *const keys[] = {"alertmanagers",
                                     "webhooks",
                                     "log",
                                     "state",
                                     "external_url",
                                     "evaluation_interval",
                                     "resend_interval",
                                     "resolved_retention",
                                     "timeout",
                                     "queue_size",
                                     "conflict_shards",
                                     "cause_window",
                                     "trend_window",
                                     "builtin_rules",
                                     "rules",
                                     NULL};
  keyset ks;
  yaml_node_t *v;
  int64_t x;
  int rc = collect(p, n, "alerting", keys, &ks);
  if (rc)
    return rc;
  if ((v = get(&ks, "alertmanagers")) &&
      (rc = want_url_list(p, v, "alertmanagers", &a->alertmanagers, &a->n_alertmanagers)))
    return rc;
  if ((v = get(&ks, "webhooks")) &&
      (rc = want_url_list(p, v, "webhooks", &a->webhooks, &a->n_webhooks)))
    return rc;
  if ((v = get(&ks, "log")) && (rc = want_str(p, v, "log", &a->log_file)))
    return rc;
  if ((v = get(&ks, "state")) && (rc = want_str(p, v, "state", &a->state_file)))
    return rc;
  if ((v = get(&ks, "external_url")) && (rc = want_str(p, v, "external_url", &a->external_url)))
    return rc;
  struct {
    const char *key;
    double *dst, lo;
  } durs[] = {{"evaluation_interval", &a->evaluation_interval, 0.1},
              {"resend_interval", &a->resend_interval, 0.1},
              {"resolved_retention", &a->resolved_retention, 0},
              {"timeout", &a->timeout, 0.1},
              {"cause_window", &a->cause_window, 0}};
  for (size_t i = 0; i < sizeof durs / sizeof durs[0]; i++)
    if ((v = get(&ks, durs[i].key))) {
      if ((rc = want_duration(p, v, durs[i].key, durs[i].dst)))
        return rc;
      if (*durs[i].dst < durs[i].lo)
        return fail(p, v, NULL, "'%s' must be at least %gs", durs[i].key, durs[i].lo);
    }
  if ((v = get(&ks, "queue_size"))) {
    if ((rc = want_int(p, v, "queue_size", 1, 1000000, &x)))
      return rc;
    a->queue_size = (size_t)x;
  }
  if ((v = get(&ks, "conflict_shards"))) {
    if ((rc = want_int(p, v, "conflict_shards", 1, 1000000, &x)))
      return rc;
    a->conflict_shards = (int)x;
  }
  if ((v = get(&ks, "trend_window"))) {
    if ((rc = want_int(p, v, "trend_window", 2, 10000, &x)))
      return rc;
    a->trend_window = (int)x;
  }
  if ((v = get(&ks, "builtin_rules")) && (rc = want_bool(p, v, "builtin_rules", &a->builtin_rules)))
    return rc;
  if ((v = get(&ks, "rules")) && (rc = parse_rules(p, v, &a->rules, &a->n_rules)))
    return rc;
  return CVG_OK;
}

static void alerting_defaults(cvg_cat_alerting *a) {
  a->evaluation_interval = 5;
  a->resend_interval = 60;
  a->resolved_retention = 900;
  a->timeout = 10;
  a->queue_size = 10000;
  a->conflict_shards = 3;
  a->cause_window = 1800;
  a->trend_window = 10;
  a->builtin_rules = 1;
}

static int parse_slo(parser *p, yaml_node_t *n, cvg_cat_slo *s) {
  static const char *const keys[] = {"objective", "convergence_within", NULL};
  keyset ks;
  yaml_node_t *v;
  int rc = collect(p, n, "slo", keys, &ks);
  if (rc)
    return rc;
  if (!(v = get(&ks, "objective")))
    return fail(p, n, "e.g. slo: {objective: 0.99, convergence_within: 10s}",
                "slo lacks "
                "'objective'");
  if ((rc = want_double(p, v, "objective", 0, 1, &s->objective)))
    return rc;
  if (s->objective <= 0 || s->objective >= 1)
    return fail(p, v, "e.g. 0.99 (99% of canaries converge in time)",
                "'objective' must lie strictly between 0 and 1");
  if (!(v = get(&ks, "convergence_within")))
    return fail(p, n, "e.g. convergence_within: 10s", "slo lacks 'convergence_within'");
  if ((rc = want_duration(p, v, "convergence_within", &s->within)))
    return rc;
  s->declared = 1;
  return CVG_OK;
}

const char *const cvg_cat_tiers[] = {"critical", "high", "medium", "low", NULL};

static int parse_impact(parser *p, yaml_node_t *n, cvg_cat_impact *im) {
  static const char *const keys[] = {"tier", "per_row", "unit", "note", NULL};
  keyset ks;
  yaml_node_t *v;
  int rc = collect(p, n, "impact", keys, &ks);
  if (rc)
    return rc;
  if ((v = get(&ks, "tier")) && (rc = one_of(p, v, "tier", cvg_cat_tiers, &im->tier)))
    return rc;
  if ((v = get(&ks, "per_row")) && (rc = want_double(p, v, "per_row", 0, 1e15, &im->per_row)))
    return rc;
  if ((v = get(&ks, "unit"))) {
    if ((rc = want_str(p, v, "unit", &im->unit)))
      return rc;
    if (strlen(im->unit) > 32)
      return fail(p, v, "e.g. unit: USD, or unit: orders", "'unit' is longer than 32 characters");
  }
  if ((v = get(&ks, "note"))) {
    if ((rc = want_str(p, v, "note", &im->note)))
      return rc;
  }
  if (get(&ks, "unit") && !get(&ks, "per_row"))
    return fail(p, n, "e.g. impact: {per_row: 12.5, unit: USD}",
                "impact has a 'unit' but no 'per_row' (what one divergent row is worth)");
  return CVG_OK;
}

/* The journal's HMAC key: the file's bytes (one trailing newline dropped), never printed. */
static int read_journal_key(parser *p, yaml_node_t *v, cvg_catalog *cat) {
  const char *file = scalar(v);
  if (!file || !*file)
    return fail(p, v, NULL, "'key_file' must be a path");
  FILE *f = fopen(file, "rb");
  if (!f)
    return fail(p, v, "create it with: head -c 32 /dev/urandom > FILE; chmod 600 FILE",
                "cannot read key_file '%s': %s", file, strerror(errno));
  unsigned char buf[CVG_JOURNAL_KEY_BYTES_MAX + 2];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  if (n && buf[n - 1] == '\n')
    n--;
  if (n && buf[n - 1] == '\r')
    n--;
  int rc = CVG_OK;
  if (n < CVG_JOURNAL_KEY_BYTES_MIN || n > CVG_JOURNAL_KEY_BYTES_MAX)
    rc = fail(p, v, "create it with: head -c 32 /dev/urandom > FILE; chmod 600 FILE",
              "key_file '%s' must hold %d to %d bytes, it holds %zu", file,
              CVG_JOURNAL_KEY_BYTES_MIN, CVG_JOURNAL_KEY_BYTES_MAX, n);
  else if (!(cat->journal_key = malloc(n)))
    rc = cvg_error_set(p->err, CVG_ENOMEM, p->file, "out of memory reading the catalog");
  else {
    memcpy(cat->journal_key, buf, n);
    cat->journal_key_len = n;
  }
  explicit_bzero(buf, sizeof buf);
  return rc;
}

/* journal: PATH, or journal: {path: PATH, key_file: FILE} (a keyed, HMAC-SHA256 chain). */
static int parse_journal(parser *p, yaml_node_t *n, cvg_catalog *cat) {
  if (n->type == YAML_SCALAR_NODE)
    return want_str(p, n, "journal", &cat->journal);
  static const char *const keys[] = {"path", "key_file", NULL};
  keyset ks;
  yaml_node_t *v;
  int rc = collect(p, n, "journal", keys, &ks);
  if (rc)
    return rc;
  if ((v = get(&ks, "path")) && (rc = want_str(p, v, "path", &cat->journal)))
    return rc;
  if ((v = get(&ks, "key_file")) && (rc = read_journal_key(p, v, cat)))
    return rc;
  return CVG_OK;
}

static int parse_api(parser *p, yaml_node_t *n, cvg_catalog *cat) {
  static const char *const keys[] = {"token", "token_file", NULL};
  keyset ks;
  yaml_node_t *v;
  int rc = collect(p, n, "api", keys, &ks);
  if (rc)
    return rc;
  if (get(&ks, "token") && get(&ks, "token_file"))
    return fail(p, n, NULL, "give api 'token' or 'token_file', not both");
  if ((v = get(&ks, "token"))) {
    const char *raw = scalar(v);
    if (!raw || !*raw)
      return fail(p, v, "e.g. token: ${CONVERGE_API_TOKEN}", "'token' must be a string");
    if ((rc = expand_env(p, v, raw, &cat->api_token)))
      return rc;
  }
  if ((v = get(&ks, "token_file"))) {
    const char *file = scalar(v);
    if (!file || !*file)
      return fail(p, v, NULL, "'token_file' must be a path");
    FILE *f = fopen(file, "r");
    if (!f)
      return fail(p, v, "create the file with the token on its first line",
                  "cannot read token_file '%s': %s", file, strerror(errno));
    char line[1024];
    char *got = fgets(line, sizeof line, f);
    fclose(f);
    if (!got)
      return fail(p, v, NULL, "token_file '%s' is empty", file);
    line[strcspn(line, "\r\n")] = '\0';
    cat->api_token = dup_str(line);
    explicit_bzero(line, sizeof line);
    if (!cat->api_token)
      return CVG_ENOMEM;
  }
  if (cat->api_token && strlen(cat->api_token) < 16)
    return fail(p, v, "use at least 16 characters, e.g. from: head -c 24 /dev/urandom | base64",
                "the API token is too short");
  return CVG_OK;
}

static int parse_replica(parser *p, yaml_node_t *n, cvg_cat_replica *r) {
  static const char *const keys[] = {"name", "url", "authority", "region", "password_file", NULL};
  keyset ks;
  int rc = collect(p, n, "a replica", keys, &ks);
  yaml_node_t *v;
  if (rc)
    return rc;
  r->line = (int)n->start_mark.line + 1;
  r->column = (int)n->start_mark.column + 1;
  if (!(v = get(&ks, "name")))
    return fail(p, n, "give each replica a name: primary, replica-eu, ...", "replica lacks 'name'");
  if ((rc = want_str(p, v, "name", &r->name)))
    return rc;
  if (!(v = get(&ks, "url")))
    return fail(p, n, "e.g. url: sqlite:///srv/a.db?table=accounts", "replica '%s' lacks 'url'",
                r->name);
  const char *raw = scalar(v);
  if (!raw || !*raw)
    return fail(p, v, "e.g. url: sqlite:///srv/a.db?table=accounts",
                "'url' of replica '%s' must be a URL string", r->name);
  if ((rc = expand_env(p, v, raw, &r->url)))
    return rc;
  yaml_node_t *pf = get(&ks, "password_file");
  if (pf) {
    const char *file = scalar(pf);
    if (!file || !*file)
      return fail(p, pf, NULL, "'password_file' must be a path");
    if ((rc = add_password(p, pf, file, &r->url)))
      return rc;
  }
  if (!(r->url_display = cvg_url_redact(r->url)))
    return cvg_error_set(p->err, CVG_ENOMEM, p->file, "out of memory");
  cvg_url u;
  cvg_error uerr;
  cvg_error_clear(&uerr);
  if (cvg_url_parse(&u, r->url, &uerr) != CVG_OK)
    return fail(p, v, uerr.hint[0] ? uerr.hint : NULL, "bad 'url' of replica '%s' (%s): %s",
                r->name, r->url_display, uerr.msg);
  int has_table = u.table != NULL;
  int known = cvg_store_scheme_known(u.scheme);
  char scheme[64];
  snprintf(scheme, sizeof scheme, "%s", u.scheme);
  cvg_url_release(&u);
  if (!known)
    return fail(p, v, "supported: sqlite:///abs/path.db?table=T",
                "'url' of replica '%s' has an unsupported scheme '%s'", r->name, scheme);
  if (!has_table)
    return fail(p, v, "add ?table=NAME to the URL", "'url' of replica '%s' names no table",
                r->name);
  if ((v = get(&ks, "authority")) && (rc = want_bool(p, v, "authority", &r->authority)))
    return rc;
  if ((v = get(&ks, "region"))) {
    if ((rc = want_str(p, v, "region", &r->region)))
      return rc;
  } else if (!(r->region = dup_str(""))) {
    return cvg_error_set(p->err, CVG_ENOMEM, p->file, "out of memory");
  }
  return CVG_OK;
}

static int parse_dataset(parser *p, yaml_node_t *n, const cvg_cat_probes *defaults,
                         cvg_cat_dataset *d) {
  static const char *const keys[] = {"name",     "key",         "columns",         "exclude",
                                     "version",  "tombstone",   "origin",          "shards",
                                     "owner",    "team",        "payload_samples", "impact",
                                     "replicas", "probes",      "invariants",      "rules",
                                     "slo",      "policy",      "repair",          "auto_repair",
                                     "merge",    "real_digits", "time_digits",     NULL};
  keyset ks;
  int rc = collect(p, n, "a dataset", keys, &ks);
  yaml_node_t *v;
  if (rc)
    return rc;
  d->line = (int)n->start_mark.line + 1;
  d->column = (int)n->start_mark.column + 1;
  d->shards = 16;
  d->authority = -1;
  d->inv.max_lag_seconds = -1;
  d->inv.max_divergent_rows = -1;
  d->inv.max_divergent_fraction = -1;
  d->inv.min_agreeing_replicas = -1;
  d->inv.max_divergence_age_seconds = -1;
  if ((rc = probes_copy(&d->probes, defaults)))
    return cvg_error_set(p->err, rc, p->file, "out of memory");
  if (!(v = get(&ks, "name")))
    return fail(p, n, "e.g. name: accounts", "dataset lacks 'name'");
  if ((rc = want_str(p, v, "name", &d->name)))
    return rc;
  for (const char *c = d->name; *c; c++)
    if (!(isalnum((unsigned char)*c) || strchr("_-.", *c)))
      return fail(p, v, "use letters, digits, '_', '-' and '.'",
                  "dataset name '%s' has the character '%c'", d->name, *c);
  if ((v = get(&ks, "key")) && (rc = want_list(p, v, "key", &d->key, &d->n_key)))
    return rc;
  if ((v = get(&ks, "columns")) && (rc = want_list(p, v, "columns", &d->columns, &d->n_columns)))
    return rc;
  if ((v = get(&ks, "real_digits"))) {
    int64_t x;
    if ((rc = want_int(p, v, "real_digits", 1, 17, &x)))
      return rc;
    d->real_digits = (int)x;
  }
  if ((v = get(&ks, "time_digits"))) {
    int64_t x;
    if ((rc = want_int(p, v, "time_digits", 0, 6, &x)))
      return rc;
    d->time_digits = (int)x + 1;
  }
  if ((v = get(&ks, "exclude")) && (rc = want_list(p, v, "exclude", &d->exclude, &d->n_exclude)))
    return rc;
  if ((v = get(&ks, "version")) && (rc = want_str(p, v, "version", &d->version)))
    return rc;
  if ((v = get(&ks, "tombstone")) && (rc = want_str(p, v, "tombstone", &d->tombstone)))
    return rc;
  if ((v = get(&ks, "origin")) && (rc = want_str(p, v, "origin", &d->origin)))
    return rc;
  if ((v = get(&ks, "shards"))) {
    int64_t x;
    if ((rc = want_int(p, v, "shards", 1, 65536, &x)))
      return rc;
    d->shards = (uint32_t)x;
  }
  yaml_node_t *owner = get(&ks, "owner"), *team = get(&ks, "team");
  if (owner && team)
    return fail(p, team, "keep one of them", "'owner' and 'team' mean the same; give one");
  if ((owner || team) &&
      (rc = want_str(p, owner ? owner : team, owner ? "owner" : "team", &d->owner)))
    return rc;
  if (!d->owner && !(d->owner = dup_str("")))
    return cvg_error_set(p->err, CVG_ENOMEM, p->file, "out of memory");
  if ((v = get(&ks, "payload_samples")) &&
      (rc = want_bool(p, v, "payload_samples", &d->payload_samples)))
    return rc;
  d->impact.tier = 2;
  if (!(d->impact.unit = dup_str("")) || !(d->impact.note = dup_str("")))
    return cvg_error_set(p->err, CVG_ENOMEM, p->file, "out of memory");
  if ((v = get(&ks, "impact")) && (rc = parse_impact(p, v, &d->impact)))
    return rc;
  if ((v = get(&ks, "probes")) && (rc = parse_probes(p, v, &d->probes)))
    return rc;
  if ((v = get(&ks, "invariants")) && (rc = parse_invariants(p, v, &d->inv)))
    return rc;
  if ((v = get(&ks, "rules")) && (rc = parse_rules(p, v, &d->rules, &d->n_rules)))
    return rc;
  if ((v = get(&ks, "slo")) && (rc = parse_slo(p, v, &d->slo)))
    return rc;
  d->repair_batch = 2000;
  d->repair_concurrency = 1;
  d->repair_window_start = d->repair_window_end = -1;
  d->repair_interval = 10;
  d->repair_max_delete_fraction = 0.05;
  d->repair_limit_window = 3600;
  if ((v = get(&ks, "policy"))) {
    if (one_of(p, v, "policy", cvg_policy_names, &d->policy))
      return CVG_ECONFIG;
  }
  if ((v = get(&ks, "repair"))) {
    static const char *const rkeys[] = {"rows_per_second",
                                        "replica_rows_per_second",
                                        "batch",
                                        "interval",
                                        "staged",
                                        "window",
                                        "tombstone_grace",
                                        "version_clock",
                                        "concurrency",
                                        "max_delete_fraction",
                                        "max_changes_per_run",
                                        "limit_window",
                                        NULL};
    keyset rk;
    yaml_node_t *w;
    int64_t x;
    if ((rc = collect(p, v, "repair", rkeys, &rk)))
      return rc;
    if ((w = get(&rk, "rows_per_second")) &&
        (rc = want_double(p, w, "rows_per_second", 0, 1e9, &d->repair_rate)))
      return rc;
    if ((w = get(&rk, "batch"))) {
      if ((rc = want_int(p, w, "batch", 1, 100000, &x)))
        return rc;
      d->repair_batch = (int)x;
    }
    if ((w = get(&rk, "concurrency"))) {
      if ((rc = want_int(p, w, "concurrency", 1, 64, &x)))
        return rc;
      d->repair_concurrency = (int)x;
    }
    if ((w = get(&rk, "tombstone_grace")) &&
        (rc = want_duration(p, w, "tombstone_grace", &d->tombstone_grace)))
      return rc;
    if ((w = get(&rk, "version_clock"))) {
      static const char *const clocks[] = {"unix_s", "unix_ms", "unix_us", NULL};
      int ck;
      if (one_of(p, w, "version_clock", clocks, &ck))
        return CVG_ECONFIG;
      d->version_clock_div = ck == 0 ? 1 : ck == 1 ? 1e3 : 1e6;
    }
    if ((w = get(&rk, "max_delete_fraction")) &&
        (rc = want_double(p, w, "max_delete_fraction", 0, 1, &d->repair_max_delete_fraction)))
      return rc;
    if ((w = get(&rk, "limit_window"))) {
      if ((rc = want_duration(p, w, "limit_window", &d->repair_limit_window)))
        return rc;
      if (d->repair_limit_window < 0 || d->repair_limit_window > 30 * 86400.0)
        return fail(p, w, NULL, "repair 'limit_window' must be between 0 (each run alone) and 30d");
    }
    if ((w = get(&rk, "max_changes_per_run"))) {
      if ((rc = want_int(p, w, "max_changes_per_run", 0, INT64_MAX, &x)))
        return rc;
      d->repair_max_changes = (uint64_t)x;
    }
    if ((w = get(&rk, "replica_rows_per_second")) &&
        (rc = want_double(p, w, "replica_rows_per_second", 0, 1e9, &d->repair_replica_rate)))
      return rc;
    if ((w = get(&rk, "staged")) && (rc = want_bool(p, w, "staged", &d->repair_staged)))
      return rc;
    if ((w = get(&rk, "window"))) {
      cvg_cat_probes tmp;
      if ((rc = parse_window(p, w, &tmp)))
        return rc;
      d->repair_window_start = tmp.window_start;
      d->repair_window_end = tmp.window_end;
    }
    if ((w = get(&rk, "interval"))) {
      if ((rc = want_duration(p, w, "interval", &d->repair_interval)))
        return rc;
      if (d->repair_interval < 0.1)
        return fail(p, w, NULL, "repair 'interval' must be at least 100ms");
    }
  }
  if ((v = get(&ks, "auto_repair"))) {
    if ((rc = want_bool(p, v, "auto_repair", &d->auto_repair)))
      return rc;
    if (d->auto_repair && !d->policy)
      return fail(p, v, "add policy: lww, authority or manual",
                  "auto_repair needs a repair policy in dataset '%s'", d->name);
  }
  if (!(v = get(&ks, "replicas")))
    return fail(p, n, "list at least two replicas, each with name and url",
                "dataset '%s' lacks 'replicas'", d->name);
  if (v->type != YAML_SEQUENCE_NODE)
    return fail(p, v, "write a list: - name: ... url: ...", "'replicas' must be a list, found %s",
                kind_name(v));
  size_t nr = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
  if (nr > 32)
    return fail(p, v, NULL, "dataset '%s' has %zu replicas; at most 32 are supported", d->name, nr);
  if (!(d->replicas = calloc(nr ? nr : 1, sizeof *d->replicas)))
    return cvg_error_set(p->err, CVG_ENOMEM, p->file, "out of memory");
  for (size_t i = 0; i < nr; i++) {
    yaml_node_t *rn = yaml_document_get_node(p->doc, v->data.sequence.items.start[i]);
    d->n_replicas = i + 1;
    if ((rc = parse_replica(p, rn, &d->replicas[i])))
      return rc;
    for (size_t j = 0; j < i; j++)
      if (strcmp(d->replicas[j].name, d->replicas[i].name) == 0)
        return fail(p, rn, "give each replica of a dataset its own name",
                    "dataset '%s' has two replicas named '%s'", d->name, d->replicas[i].name);
    if (d->replicas[i].authority) {
      if (d->authority >= 0)
        return fail(p, rn, "mark one replica as the source of truth",
                    "dataset '%s': replicas '%s' and '%s' are both 'authority: true'", d->name,
                    d->replicas[d->authority].name, d->replicas[i].name);
      d->authority = (int)i;
    }
  }
  if (nr < 2)
    return fail(p, v, "a dataset is compared across two replicas or more",
                "dataset '%s' has %zu replica(s); it needs at least 2", d->name, nr);
  if ((v = get(&ks, "merge"))) {
    if (d->policy != CVG_POLICY_MERGE)
      return fail(p, v, "add policy: merge", "'merge' rules apply only to policy: merge");
    if ((rc = want_map(p, v, "merge", 0, &d->merge_cols, &d->merge_rules, &d->n_merge)))
      return rc;
    for (size_t i = 0; i < d->n_merge; i++) {
      const char *r = d->merge_rules[i];
      int ok = !strcmp(r, "max") || !strcmp(r, "min") || !strcmp(r, "union") || !strcmp(r, "lww") ||
               !strcmp(r, "sum") || !strcmp(r, "sum:manual");
      if (!ok && !strncmp(r, "prefer:", 7)) {
        for (size_t k = 0; k < nr && !ok; k++)
          ok = !strcmp(d->replicas[k].name, r + 7);
        if (!ok)
          return fail(p, v, "prefer:NAME names one of the dataset's replicas",
                      "merge rule of '%s' prefers '%s', which is not a replica of '%s'",
                      d->merge_cols[i], r + 7, d->name);
      }
      if (!ok)
        return fail(p, v,
                    "write max, min, union (of comma-separated sets), sum (counter deltas "
                    "against a common base), sum:manual, lww or prefer:REPLICA",
                    "merge rule '%s' of column '%s' is unknown", r, d->merge_cols[i]);
      if (d->version && !strcmp(d->merge_cols[i], d->version))
        return fail(p, v, "the version column always takes the highest version",
                    "the version column '%s' cannot have a merge rule", d->version);
      for (size_t k = 0; k < d->n_key; k++)
        if (!strcmp(d->merge_cols[i], d->key[k]))
          return fail(p, v, "merge rules apply to non-key columns; the key identifies the row",
                      "the key column '%s' cannot have a merge rule", d->key[k]);
    }
  }
  if (d->policy == CVG_POLICY_MERGE && !d->n_merge)
    return fail(p, get(&ks, "policy"), "add merge: {column: max|min|union|sum|prefer:REPLICA}",
                "policy 'merge' needs merge rules in dataset '%s'", d->name);
  if (d->policy == CVG_POLICY_MERGE && !d->version)
    return fail(p, get(&ks, "policy"), "add version: COLUMN",
                "policy 'merge' needs a 'version' column in dataset '%s'", d->name);
  if ((d->policy == CVG_POLICY_LWW || d->policy == CVG_POLICY_MANUAL) && !d->version)
    return fail(p, get(&ks, "policy"), "add version: COLUMN, or use policy: authority",
                "policy '%s' compares versions, but dataset '%s' has no 'version' column",
                cvg_policy_names[d->policy], d->name);
  if (d->policy == CVG_POLICY_AUTHORITY && d->authority < 0)
    return fail(p, get(&ks, "policy"), "mark one replica with authority: true",
                "policy 'authority' needs an authority replica in dataset '%s'", d->name);
  if (d->inv.min_agreeing_replicas > (int64_t)nr)
    return fail(p, get(&ks, "invariants"), NULL,
                "min_agreeing_replicas is %lld but dataset '%s' has only %zu replicas",
                (long long)d->inv.min_agreeing_replicas, d->name, nr);
  return CVG_OK;
}

static void dataset_free(cvg_cat_dataset *d) {
  free(d->name);
  free_list(d->key, d->n_key);
  free_list(d->columns, d->n_columns);
  free_list(d->exclude, d->n_exclude);
  free(d->version);
  free(d->tombstone);
  free(d->origin);
  free(d->owner);
  free(d->impact.unit);
  free(d->impact.note);
  for (size_t i = 0; d->replicas && i < d->n_replicas; i++) {
    cvg_cat_replica *r = &d->replicas[i];
    free(r->name);
    if (r->url) {
      explicit_bzero(r->url, strlen(r->url));
      free(r->url);
    }
    free(r->url_display);
    free(r->region);
  }
  free(d->replicas);
  free(d->probes.heartbeat_table);
  free(d->probes.canary_table);
  for (size_t i = 0; d->inv.aggregates && i < d->inv.n_aggregates; i++)
    free(d->inv.aggregates[i].expr);
  free(d->inv.aggregates);
  for (size_t i = 0; d->rules && i < d->n_rules; i++)
    cvg_cat_rule_free(&d->rules[i]);
  free(d->rules);
  free_list(d->merge_cols, d->n_merge);
  free_list(d->merge_rules, d->n_merge);
}

void cvg_catalog_free(cvg_catalog *cat) {
  if (!cat)
    return;
  for (size_t i = 0; cat->datasets && i < cat->n_datasets; i++)
    dataset_free(&cat->datasets[i]);
  free(cat->datasets);
  free(cat->path);
  free(cat->listen);
  free(cat->log_format);
  free(cat->log_level);
  free(cat->warnings);
  free(cat->journal);
  if (cat->journal_key) {
    explicit_bzero(cat->journal_key, cat->journal_key_len);
    free(cat->journal_key);
  }
  if (cat->api_token) {
    explicit_bzero(cat->api_token, strlen(cat->api_token));
    free(cat->api_token);
  }
  cvg_cat_alerting *a = &cat->alerting;
  free_list(a->alertmanagers, a->n_alertmanagers);
  free_list(a->webhooks, a->n_webhooks);
  free(a->log_file);
  free(a->state_file);
  free(a->external_url);
  for (size_t i = 0; a->rules && i < a->n_rules; i++)
    cvg_cat_rule_free(&a->rules[i]);
  free(a->rules);
  free(cat);
}

int cvg_parse_listen(const char *s, char **host, unsigned *port) {
  const char *colon;
  const char *h = s;
  size_t hl;
  if (s[0] == '[') {
    const char *rb = strchr(s, ']');
    if (!rb || rb[1] != ':')
      return -1;
    h = s + 1;
    hl = (size_t)(rb - s - 1);
    colon = rb + 1;
  } else {
    colon = strrchr(s, ':');
    if (!colon || memchr(s, ':', (size_t)(colon - s)))
      return -1;
    hl = (size_t)(colon - s);
  }
  char *end;
  errno = 0;
  unsigned long pn = strtoul(colon + 1, &end, 10);
  if (!colon[1] || *end || errno || pn > 65535 || hl == 0)
    return -1;
  char *hs = malloc(hl + 1);
  if (!hs)
    return -1;
  memcpy(hs, h, hl);
  hs[hl] = '\0';
  *host = hs;
  *port = (unsigned)pn;
  return 0;
}

static int add_warning(cvg_catalog *cat, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static int add_warning(cvg_catalog *cat, const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  size_t old = cat->warnings ? strlen(cat->warnings) : 0, add = strlen(line);
  char *w = realloc(cat->warnings, old + add + 2);
  if (!w)
    return CVG_ENOMEM;
  memcpy(w + old, line, add);
  w[old + add] = '\n';
  w[old + add + 1] = '\0';
  cat->warnings = w;
  return CVG_OK;
}

static int parse_root(parser *p, yaml_node_t *root, cvg_catalog *cat) {
  static const char *const keys[] = {"listen",   "log",     "workers",  "probes", "api",
                                     "alerting", "journal", "datasets", NULL};
  static const char *const log_keys[] = {"format", "level", NULL};
  keyset ks;
  yaml_node_t *v;
  int rc = collect(p, root, "the catalog", keys, &ks);
  if (rc)
    return rc;
  cat->workers = 4;
  if ((v = get(&ks, "listen"))) {
    if ((rc = want_str(p, v, "listen", &cat->listen)))
      return rc;
    char *host;
    unsigned port;
    if (cvg_parse_listen(cat->listen, &host, &port) != 0)
      return fail(p, v, "write host:port, e.g. 127.0.0.1:9464 (or [::1]:9464)",
                  "'listen' must be an address, found '%s'", cat->listen);
    free(host);
  } else if (!(cat->listen = dup_str("127.0.0.1:9464"))) {
    return CVG_ENOMEM;
  }
  if (!(cat->log_format = dup_str("json")) || !(cat->log_level = dup_str("info")))
    return CVG_ENOMEM;
  if ((v = get(&ks, "log"))) {
    keyset lk;
    yaml_node_t *w;
    if ((rc = collect(p, v, "log", log_keys, &lk)))
      return rc;
    if ((w = get(&lk, "format"))) {
      if ((rc = want_str(p, w, "format", &cat->log_format)))
        return rc;
      if (strcmp(cat->log_format, "json") && strcmp(cat->log_format, "logfmt"))
        return fail(p, w, "write json or logfmt", "log 'format' must be json or logfmt");
    }
    if ((w = get(&lk, "level"))) {
      if ((rc = want_str(p, w, "level", &cat->log_level)))
        return rc;
      if (strcmp(cat->log_level, "debug") && strcmp(cat->log_level, "info") &&
          strcmp(cat->log_level, "warn") && strcmp(cat->log_level, "error"))
        return fail(p, w, "write debug, info, warn or error", "log 'level' is not a level");
    }
  }
  if ((v = get(&ks, "workers"))) {
    int64_t x;
    if ((rc = want_int(p, v, "workers", 1, 256, &x)))
      return rc;
    cat->workers = (int)x;
  }
  if ((v = get(&ks, "api")) && (rc = parse_api(p, v, cat)))
    return rc;
  alerting_defaults(&cat->alerting);
  if ((v = get(&ks, "alerting")) && (rc = parse_alerting(p, v, &cat->alerting)))
    return rc;
  if (!cat->alerting.external_url) {
    char url[300];
    snprintf(url, sizeof url, "http://%s", cat->listen);
    if (!(cat->alerting.external_url = dup_str(url)))
      return CVG_ENOMEM;
  }
  /* files beside the catalog: converge.yaml -> converge.state.db, converge.journal.db */
  const char *slash = strrchr(p->file, '/');
  const char *base = slash ? slash + 1 : p->file;
  const char *dot = strrchr(base, '.');
  size_t stem = dot && dot != base ? (size_t)(dot - p->file) : strlen(p->file);
  if (!cat->alerting.state_file) {
    size_t len = stem + sizeof ".state.db";
    if (!(cat->alerting.state_file = malloc(len)))
      return CVG_ENOMEM;
    snprintf(cat->alerting.state_file, len, "%.*s.state.db", (int)stem, p->file);
  }
  if ((v = get(&ks, "journal"))) {
    if ((rc = parse_journal(p, v, cat)))
      return rc;
  }
  if (!cat->journal) {
    size_t len = stem + sizeof ".journal.db";
    if (!(cat->journal = malloc(len)))
      return CVG_ENOMEM;
    snprintf(cat->journal, len, "%.*s.journal.db", (int)stem, p->file);
  }
  cvg_cat_probes defaults;
  probes_defaults(&defaults);
  if ((v = get(&ks, "probes")) && (rc = parse_probes(p, v, &defaults)))
    goto out;
  if (!(v = get(&ks, "datasets"))) {
    rc = fail(p, root, "list the datasets to watch: datasets: [- name: ..., replicas: ...]",
              "the catalog has no 'datasets'");
    goto out;
  }
  if (v->type != YAML_SEQUENCE_NODE) {
    rc = fail(p, v, "write a list: - name: accounts ...", "'datasets' must be a list, found %s",
              kind_name(v));
    goto out;
  }
  size_t nd = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
  if (nd == 0) {
    rc = fail(p, v, "declare at least one dataset", "'datasets' is empty");
    goto out;
  }
  if (!(cat->datasets = calloc(nd, sizeof *cat->datasets))) {
    rc = CVG_ENOMEM;
    goto out;
  }
  for (size_t i = 0; i < nd; i++) {
    yaml_node_t *dn = yaml_document_get_node(p->doc, v->data.sequence.items.start[i]);
    cat->n_datasets = i + 1;
    if ((rc = parse_dataset(p, dn, &defaults, &cat->datasets[i])))
      goto out;
    for (size_t j = 0; j < i; j++)
      if (strcmp(cat->datasets[j].name, cat->datasets[i].name) == 0) {
        rc = fail(p, dn, "give each dataset its own name", "two datasets are named '%s'",
                  cat->datasets[i].name);
        goto out;
      }
    cvg_cat_dataset *d = &cat->datasets[i];
    if ((rc = check_targets(p, cat, d)))
      goto out;
    if (d->authority < 0 && (d->probes.heartbeat_interval > 0 || d->probes.canary_interval > 0))
      add_warning(cat,
                  "%s:%d:%d: dataset '%s' has no replica with 'authority: true'; heartbeat and "
                  "canary probes are off for it",
                  p->file, d->line, d->column, d->name);
    if (!d->version && d->probes.sweep_interval > 0)
      add_warning(cat,
                  "%s:%d:%d: dataset '%s' has no 'version' column; incremental sweeps are off, "
                  "only full sweeps find divergences",
                  p->file, d->line, d->column, d->name);
  }
out:
  free(defaults.heartbeat_table);
  free(defaults.canary_table);
  return rc;
}

/* Do paths a and b name one file? The same text, or (both existing) the same inode. */
/* in with empty and "." segments dropped: "a//./b" -> "a/b" ("/" kept in front). */
static void lexical_path(const char *in, char *out, size_t size) {
  size_t o = 0;
  if (*in == '/' && size > 1)
    out[o++] = '/';
  for (const char *c = in; *c;) {
    while (*c == '/')
      c++;
    size_t n = strcspn(c, "/");
    if (n && !(n == 1 && *c == '.') && o + n + 2 < size) {
      if (o && out[o - 1] != '/')
        out[o++] = '/';
      memcpy(out + o, c, n);
      o += n;
    }
    c += n;
  }
  out[o] = '\0';
}

static int same_file(const char *a, const char *b) {
  char na[4096], nb[4096];
  lexical_path(a, na, sizeof na);
  lexical_path(b, nb, sizeof nb);
  if (strcmp(na, nb) == 0)
    return 1;
  struct stat sa, sb;
  return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* A replica's file and table, when it is a SQLite replica (*path and *table OWNED), else 0. */
static int sqlite_target(const cvg_cat_replica *r, char **path, char **table) {
  cvg_url u;
  cvg_error e;
  if (cvg_url_parse(&u, r->url, &e) != CVG_OK)
    return 0;
  int ok = strcmp(u.scheme, "sqlite") == 0 && u.path && u.table;
  *path = ok ? u.path : NULL;
  *table = ok ? u.table : NULL;
  if (ok)
    u.path = u.table = NULL;
  cvg_url_release(&u);
  return ok;
}

static int table_of(const cvg_cat_replica *r, char *out, size_t size) {
  cvg_url u;
  cvg_error e;
  if (cvg_url_parse(&u, r->url, &e) != CVG_OK)
    return 0;
  const char *t = u.table ? strrchr(u.table, '.') : NULL; /* schema.table: the table */
  snprintf(out, size, "%s", t ? t + 1 : u.table ? u.table : "");
  cvg_url_release(&u);
  return out[0] != '\0';
}

/* Settings that would make converge write where it must not: the journal or the state file on a
 * replica's database file, two replicas on one table of one file (a comparison with itself),
 * and heartbeat or canary tables named like the dataset's own table. */
static int check_targets(parser *p, const cvg_catalog *cat, const cvg_cat_dataset *d) {
  char **path = calloc(d->n_replicas + 1, sizeof *path);
  char **table = calloc(d->n_replicas + 1, sizeof *table);
  int rc = path && table ? CVG_OK : CVG_ENOMEM;
  char where[CVG_ERROR_INPUT_MAX];
  for (size_t i = 0; i < d->n_replicas && !rc; i++) {
    const cvg_cat_replica *r = &d->replicas[i];
    snprintf(where, sizeof where, "%s:%d:%d", p->file, r->line, r->column);
    char t[256];
    if (table_of(r, t, sizeof t) && (strcasecmp(t, d->probes.heartbeat_table) == 0 ||
                                     strcasecmp(t, d->probes.canary_table) == 0)) {
      rc = cvg_error_set(p->err, CVG_ECONFIG, where,
                         "the %s table '%s' of dataset '%s' is the dataset's own table: converge "
                         "would write its probe rows into it",
                         strcasecmp(t, d->probes.heartbeat_table) == 0 ? "heartbeat" : "canary", t,
                         d->name);
      cvg_error_hint(p->err, "name another table in probes.heartbeat.table / probes.canary.table, "
                             "or keep the defaults converge_heartbeat and converge_canary");
      break;
    }
    for (size_t j = 0; j < i && !rc; j++)
      if (strcmp(d->replicas[j].url, r->url) == 0) {
        rc = cvg_error_set(p->err, CVG_ECONFIG, where,
                           "replicas '%s' and '%s' of dataset '%s' have the same URL: a replica "
                           "compared with itself always agrees",
                           d->replicas[j].name, r->name, d->name);
        cvg_error_hint(p->err, "point each replica at its own copy of the data");
      }
    if (rc || !sqlite_target(r, &path[i], &table[i]))
      continue;
    const char *what = same_file(path[i], cat->journal)               ? "journal"
                       : same_file(path[i], cat->alerting.state_file) ? "state file"
                                                                      : NULL;
    if (what) {
      rc = cvg_error_set(p->err, CVG_ECONFIG, where,
                         "replica '%s' of dataset '%s' is the %s's file (%s): converge would "
                         "write its records into the replica",
                         r->name, d->name, what, path[i]);
      cvg_error_hint(p->err, "give 'journal' (or alerting 'state') a path of its own");
      break;
    }
    for (size_t j = 0; j < i && !rc; j++)
      if (path[j] && same_file(path[i], path[j]) && strcmp(table[i], table[j]) == 0) {
        rc = cvg_error_set(p->err, CVG_ECONFIG, where,
                           "replicas '%s' and '%s' of dataset '%s' are one table of one file "
                           "(%s): a replica compared with itself always agrees",
                           d->replicas[j].name, r->name, d->name, path[i]);
        cvg_error_hint(p->err, "point each replica at its own copy of the data");
      }
  }
  for (size_t i = 0; path && table && i < d->n_replicas; i++) {
    free(path[i]);
    free(table[i]);
  }
  free(path);
  free(table);
  return rc;
}

/* Flow collections ("[", "{") nested deeper than NEST_MAX are refused before libyaml sees them:
 * its handling of many open flow levels is quadratic (a 200 KB file of "[" took 27 s of CPU).
 * A lexical count - quoted scalars and comments skipped, a bracket inside a plain scalar counted
 * too - so a real catalog (a few levels) is never near the limit. */
#define NEST_MAX 64
static int nesting_ok(const char *name, const char *text, size_t len, cvg_error *err) {
  size_t line = 1, col = 0;
  int depth = 0;
  char quote = 0;
  for (size_t i = 0; i < len; i++) {
    char c = text[i];
    col++;
    if (c == '\n') {
      line++;
      col = 0;
      if (quote == '#')
        quote = 0;
      continue;
    }
    if (quote) {
      if (quote == '"' && c == '\\')
        i++, col++;
      else if (c == quote && quote != '#')
        quote = 0;
      continue;
    }
    if (c == '#' && (i == 0 || text[i - 1] == ' ' || text[i - 1] == '\t' || text[i - 1] == '\n'))
      quote = '#';
    else if (c == '"' || c == '\'')
      quote = c;
    else if ((c == '[' || c == '{') && ++depth > NEST_MAX) {
      char where[CVG_ERROR_INPUT_MAX];
      snprintf(where, sizeof where, "%s:%zu:%zu", name, line, col);
      cvg_error_set(err, CVG_ECONFIG, where, "lists and mappings are nested more than %d deep here",
                    NEST_MAX);
      cvg_error_hint(err, "a catalog needs a few levels; see examples/converge.yaml");
      return 0;
    } else if ((c == ']' || c == '}') && depth > 0)
      depth--;
  }
  return 1;
}

int cvg_catalog_parse(cvg_catalog **out, const char *name, const char *text, size_t len,
                      cvg_error *err) {
  *out = NULL;
  yaml_parser_t yp;
  yaml_document_t doc;
  parser p = {name, &doc, err};
  cvg_catalog *cat = calloc(1, sizeof *cat);
  if (cat && !nesting_ok(name, text, len, err)) {
    free(cat);
    return CVG_ECONFIG;
  }
  if (!cat || !yaml_parser_initialize(&yp)) {
    free(cat);
    return cvg_error_set(err, CVG_ENOMEM, name, "out of memory reading the catalog");
  }
  yaml_parser_set_input_string(&yp, (const unsigned char *)text, len);
  if (!yaml_parser_load(&yp, &doc)) {
    char where[CVG_ERROR_INPUT_MAX];
    yaml_mark_t m = yp.problem_mark;
    snprintf(where, sizeof where, "%s:%zu:%zu", name, m.line + 1, m.column + 1);
    cvg_error_set(err, CVG_ECONFIG, where, "YAML syntax error: %s%s%s",
                  yp.problem ? yp.problem : "unknown", yp.context ? " " : "",
                  yp.context ? yp.context : "");
    cvg_error_hint(err, "check indentation (spaces, not tabs), colons and quotes near there");
    yaml_parser_delete(&yp);
    free(cat);
    return CVG_ECONFIG;
  }
  int rc;
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  if (!root || (root->type == YAML_SCALAR_NODE && !root->data.scalar.length)) {
    rc = cvg_error_set(err, CVG_ECONFIG, name, "the catalog is empty");
    cvg_error_hint(err, "see examples/converge.yaml for a catalog to start from");
  } else {
    rc = parse_root(&p, root, cat);
  }
  if (rc == CVG_OK && !(cat->path = dup_str(name)))
    rc = CVG_ENOMEM;
  if (rc == CVG_OK && !cat->warnings && !(cat->warnings = dup_str("")))
    rc = CVG_ENOMEM;
  if (rc == CVG_ENOMEM)
    cvg_error_set(err, CVG_ENOMEM, name, "out of memory reading the catalog");
  yaml_document_delete(&doc);
  yaml_parser_delete(&yp);
  if (rc) {
    cvg_catalog_free(cat);
    return rc;
  }
  *out = cat;
  return CVG_OK;
}

int cvg_catalog_load(cvg_catalog **out, const char *path, cvg_error *err) {
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) {
    int e = errno;
    cvg_error_set(err,
                  e == ENOENT   ? CVG_ENOENT
                  : e == EACCES ? CVG_EACCES
                                : CVG_EIO,
                  path, "cannot open the catalog: %s", strerror(e));
    if (err)
      err->sys_errno = e;
    cvg_error_hint(err, "give the path of a converge.yaml with -c; see examples/converge.yaml");
    return err ? err->status : CVG_EIO;
  }
  char *buf = malloc(CVG_CATALOG_MAX_BYTES + 1);
  if (!buf) {
    fclose(f);
    return cvg_error_set(err, CVG_ENOMEM, path, "out of memory");
  }
  size_t n = fread(buf, 1, CVG_CATALOG_MAX_BYTES + 1, f);
  int rd_err = ferror(f);
  fclose(f);
  int rc;
  if (rd_err)
    rc = cvg_error_set(err, CVG_EIO, path, "cannot read the catalog (is it a directory?)");
  else if (n > CVG_CATALOG_MAX_BYTES)
    rc = cvg_error_set(err, CVG_ETOOBIG, path, "the catalog is larger than %u bytes",
                       CVG_CATALOG_MAX_BYTES);
  else
    rc = cvg_catalog_parse(out, path, buf, n, err);
  free(buf);
  return rc;
}
