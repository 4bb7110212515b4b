/* SPDX-License-Identifier: MIT */
/*
 * converge diff URL URL [URL...]: one-shot N-way comparison of replicas of a table.
 * Output formats: text (diff-like, with differing values side by side) and json (one object
 * per divergent key, then a summary object). Exit status as diff(1): 0 same, 1 different,
 * 2 trouble.
 */
#include "cli.h"
#include "converge/mclock.h"
#include "converge/diff.h"
#include "converge/json.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define VALUE_SHOW_MAX 120 /* characters of a value shown in text output */
#define MAX_COLS 4096

enum { FMT_TEXT, FMT_JSON };

typedef struct out_ctx {
  cvg_diff *d;             /* BORROWED */
  FILE *f;                 /* where reports go */
  int format;              /* FMT_TEXT or FMT_JSON */
  int summary_only;        /* --summary */
  uint64_t limit;          /* report at most this many keys (UINT64_MAX: all) */
  uint64_t shown;          /* keys reported so far */
  const char *const *urls; /* BORROWED */
  size_t n_urls;
  const char *const *key_cols, *const *cmp_cols;
  size_t n_key, n_cmp;
  int failed;    /* a report could not be produced */
  cvg_error err; /* why */
} out_ctx;

static const char *state_name(cvg_rstate s) {
  return s == CVG_LIVE ? "live" : s == CVG_TOMBSTONED ? "tombstone" : "absent";
}

static json_t *encoded_to_json(const unsigned char *p, size_t n) {
  cvg_value v[1];
  size_t k = 0;
  cvg_buf scratch;
  cvg_buf_init(&scratch, n + 1);
  json_t *j = NULL;
  if (cvg_decode_tuple(p, n, v, 1, &k, &scratch) == CVG_OK && k == 1)
    j = cvg_value_to_json(&v[0]);
  cvg_buf_release(&scratch);
  return j;
}

static int report_json(out_ctx *o, const cvg_divergence *dv) {
  json_t *obj = json_object();
  json_t *key = cvg_key_to_json(dv->key, dv->key_len, o->key_cols, o->n_key);
  json_t *reps = json_object();
  if (!obj || !key || !reps) {
    json_decref(obj);
    json_decref(key);
    json_decref(reps);
    return -1;
  }
  json_object_set_new(obj, "key", key);
  json_object_set_new(obj, "class", json_string(cvg_class_name(dv->cls)));
  json_object_set_new(obj, "shard", json_integer(dv->shard));
  for (size_t i = 0; i < dv->n_copies; i++) {
    const cvg_copy *c = &dv->copies[i];
    json_t *r = json_object();
    if (!r)
      break;
    json_object_set_new(r, "state", json_string(state_name(c->state)));
    if (c->state != CVG_ABSENT) {
      if (c->version_len) {
        json_t *v = encoded_to_json(c->version, c->version_len);
        json_object_set_new(r, "version", v ? v : json_null());
      }
      if (c->vvec_len) {
        json_t *vv = json_loadb((const char *)c->vvec, c->vvec_len, 0, NULL);
        json_object_set_new(r, "version_vector",
                            vv ? vv : json_stringn((const char *)c->vvec, c->vvec_len));
      }
      char hex[33];
      cvg_fp_hex(c->fp, hex);
      json_object_set_new(r, "fingerprint", json_string(hex));
      json_object_set_new(r, "newest", json_boolean(c->newest));
    }
    json_object_set_new(reps, o->urls[i], r);
  }
  json_object_set_new(obj, "replicas", reps);
  int rc = json_dumpf(obj, o->f, JSON_COMPACT | JSON_ENSURE_ASCII);
  fputc('\n', o->f);
  json_decref(obj);
  return rc;
}

static void print_key_text(FILE *f, const cvg_divergence *dv, const out_ctx *o) {
  cvg_value v[64];
  size_t n = 0;
  cvg_buf scratch;
  cvg_buf_init(&scratch, dv->key_len + 1);
  if (cvg_decode_tuple(dv->key, dv->key_len, v, 64, &n, &scratch) == CVG_OK && n == o->n_key) {
    for (size_t i = 0; i < n; i++) {
      fprintf(f, "%s%s=", i ? ", " : "", o->key_cols[i]);
      print_value(f, &v[i], VALUE_SHOW_MAX);
    }
  } else {
    fputs("(undecodable key)", f);
  }
  cvg_buf_release(&scratch);
}

static int value_equal(const cvg_value *a, const cvg_value *b) {
  if (a->type != b->type)
    return 0;
  switch (a->type) {
  case CVG_NULL:
    return 1;
  case CVG_INTEGER:
    return a->u.i == b->u.i;
  case CVG_REAL:
    return a->u.r == b->u.r || (a->u.r != a->u.r && b->u.r != b->u.r);
  default:
    return a->u.s.n == b->u.s.n && (a->u.s.n == 0 || memcmp(a->u.s.p, b->u.s.p, a->u.s.n) == 0);
  }
}

/* Fetched rows of one divergent key: values per replica, or NULL where absent. */
typedef struct fetched {
  cvg_buf enc[CVG_DIFF_MAX_REPLICAS];     /* encoded tuples */
  cvg_buf scratch[CVG_DIFF_MAX_REPLICAS]; /* decoded text */
  cvg_value *vals[CVG_DIFF_MAX_REPLICAS]; /* n_cmp values, or NULL */
} fetched;

static int report_text(out_ctx *o, const cvg_divergence *dv) {
  FILE *f = o->f;
  fprintf(f, "@@ %s  ", cvg_class_name(dv->cls));
  print_key_text(f, dv, o);
  fprintf(f, "  (shard %u)\n", dv->shard);
  for (size_t i = 0; i < dv->n_copies; i++) {
    const cvg_copy *c = &dv->copies[i];
    fprintf(f, "   #%zu %-9s", i + 1, state_name(c->state));
    if (c->state != CVG_ABSENT) {
      if (c->version_len) {
        cvg_value v[1];
        size_t k;
        cvg_buf s;
        cvg_buf_init(&s, c->version_len + 1);
        if (cvg_decode_tuple(c->version, c->version_len, v, 1, &k, &s) == CVG_OK && k == 1) {
          fputs(" version ", f);
          print_value(f, &v[0], VALUE_SHOW_MAX);
        }
        cvg_buf_release(&s);
      }
      if (c->vvec_len)
        fprintf(f, " vector %.*s", (int)(c->vvec_len > 200 ? 200 : c->vvec_len),
                (const char *)c->vvec);
      char hex[33];
      cvg_fp_hex(c->fp, hex);
      fprintf(f, " fp %.12s", hex);
      if (c->newest && dv->cls == CVG_CLASS_STALE)
        fputs("  (newest)", f);
    }
    fputc('\n', f);
  }

  /* Values side by side: fetch every present copy, show columns that differ (or, when only one
   * copy exists, what it holds). */
  fetched *fx = calloc(1, sizeof *fx);
  if (!fx)
    return cvg_error_set(&o->err, CVG_ENOMEM, "", "out of memory");
  int rc = CVG_OK;
  size_t n_present = 0;
  for (size_t i = 0; i < dv->n_copies; i++) {
    cvg_buf_init(&fx->enc[i], (size_t)1 << 30);
    cvg_buf_init(&fx->scratch[i], (size_t)1 << 30);
  }
  for (size_t i = 0; !rc && i < dv->n_copies; i++) {
    if (dv->copies[i].state == CVG_ABSENT)
      continue;
    int found = 0;
    rc = cvg_diff_fetch(o->d, i, dv->key, dv->key_len, &fx->enc[i], &found, &o->err);
    if (rc || !found)
      continue; /* changed since the scan: show what the scan saw */
    fx->vals[i] = calloc(o->n_cmp ? o->n_cmp : 1, sizeof(cvg_value));
    size_t k = 0;
    if (!fx->vals[i]) {
      rc = cvg_error_set(&o->err, CVG_ENOMEM, "", "out of memory");
      break;
    }
    if (cvg_decode_tuple(fx->enc[i].data, fx->enc[i].len, fx->vals[i], o->n_cmp, &k,
                         &fx->scratch[i]) != CVG_OK ||
        k != o->n_cmp) {
      free(fx->vals[i]);
      fx->vals[i] = NULL;
      continue;
    }
    n_present++;
  }
  size_t width = 0;
  for (size_t c = 0; c < o->n_cmp; c++)
    if (strlen(o->cmp_cols[c]) > width)
      width = strlen(o->cmp_cols[c]);
  for (size_t c = 0; !rc && c < o->n_cmp; c++) {
    const cvg_value *first = NULL;
    int differs = 0;
    for (size_t i = 0; i < dv->n_copies; i++) {
      if (!fx->vals[i])
        continue;
      if (!first)
        first = &fx->vals[i][c];
      else if (!value_equal(first, &fx->vals[i][c]))
        differs = 1;
    }
    if (!first || (n_present > 1 && !differs))
      continue;
    fprintf(f, " %c %-*s", differs ? '!' : ' ', (int)width, o->cmp_cols[c]);
    for (size_t i = 0; i < dv->n_copies; i++) {
      fprintf(f, "  #%zu ", i + 1);
      if (fx->vals[i])
        print_value(f, &fx->vals[i][c], VALUE_SHOW_MAX);
      else
        fputs("-", f);
    }
    fputc('\n', f);
  }
  for (size_t i = 0; i < dv->n_copies; i++) {
    cvg_buf_release(&fx->enc[i]);
    cvg_buf_release(&fx->scratch[i]);
    free(fx->vals[i]);
  }
  free(fx);
  return rc;
}

static int on_divergence(void *ctx, const cvg_divergence *dv) {
  out_ctx *o = ctx;
  if (o->summary_only || o->shown >= o->limit)
    return 0;
  o->shown++;
  int rc = o->format == FMT_JSON ? report_json(o, dv) : report_text(o, dv);
  if (rc) {
    o->failed = 1;
    if (o->err.status == CVG_OK)
      cvg_error_set(&o->err, CVG_EIO, "", "cannot write the report");
    return 1;
  }
  return 0;
}

static void summary_text(FILE *f, const out_ctx *o, const cvg_diff_summary *s, double secs) {
  fprintf(f, "# replicas:\n");
  for (size_t i = 0; i < o->n_urls; i++)
    fprintf(f, "#   #%zu %s: %llu rows\n", i + 1, o->urls[i], (unsigned long long)s->rows[i]);
  fprintf(f, "# keys compared: %llu; divergent: %llu", (unsigned long long)s->keys,
          (unsigned long long)s->divergent);
  if (s->divergent) {
    fputs(" (", f);
    int first = 1;
    for (int c = 1; c < CVG_CLASS__COUNT; c++) {
      if (!s->by_class[c])
        continue;
      fprintf(f, "%s%s %llu", first ? "" : ", ", cvg_class_name((cvg_class)c),
              (unsigned long long)s->by_class[c]);
      first = 0;
    }
    fputc(')', f);
  }
  fputc('\n', f);
  if (s->divergent) {
    uint32_t n_div = 0;
    for (uint32_t i = 0; i < s->n_shards; i++)
      n_div += s->by_shard[i] != 0;
    fprintf(f, "# shards with divergence: %u of %u:", n_div, s->n_shards);
    uint32_t shown = 0;
    for (uint32_t i = 0; i < s->n_shards && shown < 64; i++)
      if (s->by_shard[i]) {
        fprintf(f, " %u:%llu", i, (unsigned long long)s->by_shard[i]);
        shown++;
      }
    fputs(shown < n_div ? " ...\n" : "\n", f);
  }
  if (o->limit != UINT64_MAX && s->divergent > o->shown && !o->summary_only)
    fprintf(f, "# shown: %llu of %llu divergent keys (--limit)\n", (unsigned long long)o->shown,
            (unsigned long long)s->divergent);
  if (s->stopped_early)
    fprintf(f, "# stopped at the first difference\n");
  fprintf(f, "# elapsed: %.3f s\n", secs);
}

static int summary_json(FILE *f, const out_ctx *o, const cvg_diff_summary *s, double secs) {
  json_t *obj = json_object(), *reps = json_array(), *classes = json_object(),
         *shards = json_object();
  if (!obj || !reps || !classes || !shards) {
    json_decref(obj);
    json_decref(reps);
    json_decref(classes);
    json_decref(shards);
    return -1;
  }
  json_object_set_new(obj, "summary", json_true());
  for (size_t i = 0; i < o->n_urls; i++)
    json_array_append_new(
        reps, json_pack("{s:s,s:I}", "url", o->urls[i], "rows", (json_int_t)s->rows[i]));
  json_object_set_new(obj, "replicas", reps);
  json_object_set_new(obj, "keys", json_integer((json_int_t)s->keys));
  json_object_set_new(obj, "divergent", json_integer((json_int_t)s->divergent));
  for (int c = 1; c < CVG_CLASS__COUNT; c++)
    json_object_set_new(classes, cvg_class_name((cvg_class)c),
                        json_integer((json_int_t)s->by_class[c]));
  json_object_set_new(obj, "classes", classes);
  json_object_set_new(obj, "shard_count", json_integer(s->n_shards));
  for (uint32_t i = 0; i < s->n_shards; i++)
    if (s->by_shard[i]) {
      char k[16];
      snprintf(k, sizeof k, "%u", i);
      json_object_set_new(shards, k, json_integer((json_int_t)s->by_shard[i]));
    }
  json_object_set_new(obj, "shards", shards);
  json_object_set_new(obj, "reported", json_integer((json_int_t)o->shown));
  json_object_set_new(obj, "stopped_early", json_boolean(s->stopped_early));
  json_object_set_new(obj, "elapsed_seconds", json_real(secs));
  int rc = json_dumpf(obj, f, JSON_COMPACT | JSON_ENSURE_ASCII);
  fputc('\n', f);
  json_decref(obj);
  return rc;
}

int cmd_diff(int argc, char **argv) {
  enum {
    O_KEY = 256,
    O_COLUMNS,
    O_EXCLUDE,
    O_VERSION,
    O_TOMBSTONE,
    O_VVEC,
    O_WHERE,
    O_SHARDS,
    O_FORMAT,
    O_SUMMARY,
    O_LIMIT,
    O_DIGITS,
    O_TDIGITS,
    O_HELP
  };
  static const struct option longopts[] = {{"key", required_argument, NULL, O_KEY},
                                           {"columns", required_argument, NULL, O_COLUMNS},
                                           {"exclude", required_argument, NULL, O_EXCLUDE},
                                           {"version", required_argument, NULL, O_VERSION},
                                           {"tombstone", required_argument, NULL, O_TOMBSTONE},
                                           {"version-vector", required_argument, NULL, O_VVEC},
                                           {"where", required_argument, NULL, O_WHERE},
                                           {"shards", required_argument, NULL, O_SHARDS},
                                           {"format", required_argument, NULL, O_FORMAT},
                                           {"summary", no_argument, NULL, O_SUMMARY},
                                           {"limit", required_argument, NULL, O_LIMIT},
                                           {"real-digits", required_argument, NULL, O_DIGITS},
                                           {"time-digits", required_argument, NULL, O_TDIGITS},
                                           {"quiet", no_argument, NULL, 'q'},
                                           {"help", no_argument, NULL, O_HELP},
                                           {NULL, 0, NULL, 0}};
  str_list keys = {0}, columns = {0}, exclude = {0};
  char *shown[CVG_DIFF_MAX_REPLICAS] = {0}; /* OWNED: the URLs as printed */
  cvg_diff_options opt;
  memset(&opt, 0, sizeof opt);
  opt.n_shards = 16;
  out_ctx o;
  memset(&o, 0, sizeof o);
  o.f = stdout;
  o.limit = UINT64_MAX;
  int quiet = 0, status = EXIT_TROUBLE, c;
  uint64_t u;
  cvg_diff *d = NULL;
  cvg_error err;
  cvg_error_clear(&err);

  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, "+q", longopts, NULL)) != -1) {
    switch (c) {
    case O_KEY:
    case O_COLUMNS:
    case O_EXCLUDE: {
      str_list *l = c == O_KEY ? &keys : c == O_COLUMNS ? &columns : &exclude;
      if (list_parse(l, optarg)) {
        usage_error("diff", "%s needs a comma-separated list of column names, got '%s'",
                    option_name(longopts, c), optarg);
        goto done;
      }
      break;
    }
    case O_VERSION:
      opt.version_col = optarg;
      break;
    case O_TOMBSTONE:
      opt.tombstone_col = optarg;
      break;
    case O_VVEC:
      opt.vvec_col = optarg;
      break;
    case O_WHERE:
      opt.where = optarg;
      break;
    case O_DIGITS:
      if (parse_u64(optarg, &u) || u < 1 || u > 17) {
        usage_error("diff",
                    "--real-digits takes a number of significant digits from 1 to 17, "
                    "got '%s'",
                    optarg);
        goto done;
      }
      opt.real_digits = (int)u;
      break;
    case O_TDIGITS:
      if (parse_u64(optarg, &u) || u > 6) {
        usage_error("diff",
                    "--time-digits takes the fractional digits of seconds kept, 0 to 6, "
                    "got '%s'",
                    optarg);
        goto done;
      }
      opt.time_digits = (int)u + 1;
      break;
    case O_SHARDS:
      if (parse_u64(optarg, &u) || u < 1 || u > CVG_DIFF_MAX_SHARDS) {
        usage_error("diff", "--shards takes a number from 1 to %d, got '%s'", CVG_DIFF_MAX_SHARDS,
                    optarg);
        goto done;
      }
      opt.n_shards = (uint32_t)u;
      break;
    case O_FORMAT:
      if (strcmp(optarg, "text") == 0)
        o.format = FMT_TEXT;
      else if (strcmp(optarg, "json") == 0)
        o.format = FMT_JSON;
      else {
        usage_error("diff", "--format takes text or json, got '%s'", optarg);
        goto done;
      }
      break;
    case O_SUMMARY:
      o.summary_only = 1;
      break;
    case O_LIMIT:
      if (parse_u64(optarg, &u)) {
        usage_error("diff", "--limit takes a non-negative number, got '%s'", optarg);
        goto done;
      }
      o.limit = u;
      break;
    case 'q':
      quiet = 1;
      break;
    case O_HELP:
      print_help(stdout, "diff");
      status = 0;
      goto done;
    case '?':
    default:
      if (optopt)
        usage_error("diff", "option '-%c' is unknown or lacks its value", optopt);
      else
        usage_error("diff", "option '%s' is unknown or lacks its value", argv[optind - 1]);
      goto done;
    }
  }
  if (argc - optind < 2) {
    usage_error("diff", "name at least two replicas, e.g. sqlite:a.db?table=t sqlite:b.db?table=t");
    goto done;
  }
  if (opt.vvec_col && opt.version_col) {
    usage_error("diff", "--version and --version-vector are alternatives; give one");
    goto done;
  }
  opt.urls = (const char *const *)(argv + optind);
  opt.n_urls = (size_t)(argc - optind);
  opt.key_cols = (const char *const *)keys.items;
  opt.n_key = keys.n;
  opt.columns = (const char *const *)columns.items;
  opt.n_columns = columns.n;
  opt.exclude = (const char *const *)exclude.items;
  opt.n_exclude = exclude.n;
  opt.stop_at_first = quiet;

  double t0 = cvg_mono_now();
  if (cvg_diff_prepare(&d, &opt, &err)) {
    print_error(&err);
    goto done;
  }
  const char *warn = cvg_diff_warnings(d);
  if (warn[0] && !quiet) {
    for (const char *p = warn; *p;) {
      const char *nl = strchr(p, '\n');
      int len = nl ? (int)(nl - p) : (int)strlen(p);
      fprintf(stderr, "converge: warning: %.*s\n", len, p);
      p += len + (nl != NULL);
    }
  }
  o.d = d;
  /* what is printed names each replica with any password as *** */
  for (size_t i = 0; i < opt.n_urls && i < CVG_DIFF_MAX_REPLICAS; i++)
    if (!(shown[i] = cvg_url_redact(opt.urls[i]))) {
      fprintf(stderr, "converge: out of memory\n");
      goto done;
    }
  o.urls = (const char *const *)shown;
  o.n_urls = opt.n_urls;
  o.key_cols = cvg_diff_key_cols(d, &o.n_key);
  o.cmp_cols = cvg_diff_cmp_cols(d, &o.n_cmp);
  if (!quiet && !o.summary_only && o.format == FMT_TEXT)
    for (size_t i = 0; i < o.n_urls; i++)
      fprintf(o.f, "%s #%zu %s\n", i == 0 ? "---" : "+++", i + 1, o.urls[i]);

  cvg_diff_summary sum;
  int rc = cvg_diff_run(d, quiet ? NULL : on_divergence, &o, &sum, &err);
  double secs = cvg_mono_now() - t0;
  if (rc) {
    print_error(&err);
    goto done;
  }
  if (o.failed) {
    print_error(&o.err);
    goto done;
  }
  if (!quiet) {
    if (o.format == FMT_JSON)
      summary_json(o.f, &o, &sum, secs);
    else
      summary_text(o.f, &o, &sum, secs);
  }
  if (fflush(o.f) != 0 || ferror(o.f)) {
    fprintf(stderr, "converge: cannot write the report to standard output\n");
    goto done;
  }
  status = sum.divergent ? EXIT_DIFFERENT : EXIT_SAME;

done:
  for (size_t i = 0; i < CVG_DIFF_MAX_REPLICAS; i++)
    free(shown[i]);
  cvg_diff_free(d);
  list_free(&keys);
  list_free(&columns);
  list_free(&exclude);
  return status;
}
