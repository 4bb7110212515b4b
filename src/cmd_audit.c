/* SPDX-License-Identifier: MIT */
/*
 * converge audit verify|show|export: reads the repair journal (the catalog's `journal:`, or
 * --journal PATH). verify checks the whole hash chain and names the first record that does not
 * match; show prints records as a table; export writes them as JSON for an investigator.
 */
#include "cli.h"
#include "converge/catalog.h"
#include "converge/journal.h"
#include "converge/json.h"

#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

typedef struct audit_opts {
  const char *config, *journal, *dataset, *key, *since, *kind, *format;
} audit_opts;

typedef struct walk {
  int json;      /* 0 table, 1 json array, 2 json lines */
  json_t *dcols; /* the columns of the last decision seen (for decoding mutations) */
  size_t n;
  const char *const *key_cols; /* for naming key values (from the catalog), or NULL */
  size_t n_key_cols;
} walk;

static void hex(char *out, const unsigned char *h, size_t n) {
  for (size_t i = 0; i < n; i++)
    snprintf(out + 2 * i, 3, "%02x", h[i]);
}

static json_t *key_json(const walk *w, const cvg_jrecord *r) {
  if (!r->key_len)
    return json_null();
  cvg_value vals[64];
  size_t n = 0;
  cvg_buf scratch;
  cvg_buf_init(&scratch, 1u << 20);
  json_t *out = NULL;
  if (cvg_decode_tuple(r->key, r->key_len, vals, 64, &n, &scratch) == CVG_OK) {
    if (w->key_cols && n == w->n_key_cols) {
      out = cvg_key_to_json(r->key, r->key_len, w->key_cols, w->n_key_cols);
    } else {
      out = json_array();
      for (size_t i = 0; out && i < n; i++)
        json_array_append_new(out, cvg_value_to_json(&vals[i]));
    }
  }
  cvg_buf_release(&scratch);
  return out ? out : json_string("(malformed key)");
}

/* a hex-encoded tuple as {column: value}, or NULL */
static json_t *decode_row(const char *hex, json_t *cols) {
  size_t n = hex ? strlen(hex) / 2 : 0, nc = json_array_size(cols);
  if (!hex || !nc || nc > 2000)
    return NULL;
  unsigned char *raw = malloc(n ? n : 1);
  cvg_value *vals = malloc(nc * sizeof *vals);
  cvg_buf scratch;
  cvg_buf_init(&scratch, 64u << 20);
  json_t *o = NULL;
  size_t nv = 0, ok = raw && vals;
  for (size_t i = 0; ok && i < n; i++) {
    unsigned v;
    ok = sscanf(hex + 2 * i, "%2x", &v) == 1;
    if (ok)
      raw[i] = (unsigned char)v;
  }
  if (ok && cvg_decode_tuple(raw, n, vals, nc, &nv, &scratch) == CVG_OK && nv == nc) {
    o = json_object();
    for (size_t i = 0; o && i < nv; i++)
      json_object_set_new(o, json_string_value(json_array_get(cols, i)),
                          cvg_value_to_json(&vals[i]));
  }
  free(raw);
  free(vals);
  cvg_buf_release(&scratch);
  return o;
}

typedef struct find_hash {
  int64_t seq;
  int found;
  unsigned char hash[32];
} find_hash;

static int find_hash_cb(void *ctx, const cvg_jrecord *r) {
  find_hash *f = ctx;
  if (r->seq == f->seq) {
    f->found = 1;
    memcpy(f->hash, r->hash, 32);
  }
  return 1;
}

/*
 * The chain verifies; is it still the chain converge left? The head saved in the state file
 * after the last run must be one of its records, with the same hash: otherwise the newest
 * records were removed, or the chain was rebuilt. err->hint keeps the head hash for the caller.
 */
static int against_saved_head(cvg_journal *j, const cvg_catalog *cat, int64_t n, cvg_error *err) {
  int64_t seq;
  unsigned char saved[32];
  char head_hint[sizeof err->hint];
  snprintf(head_hint, sizeof head_hint, "%s", err->hint);
  int rc = cvg_journal_saved_head(cat->alerting.state_file, cat->journal, &seq, saved, err);
  if (rc != CVG_OK)
    return rc; /* err says why, with its own hint */
  if (seq == 0) {
    snprintf(err->hint, sizeof err->hint, "%s", head_hint);
    return rc;
  }
  if (seq > n) {
    cvg_error_set(err, CVG_ETAMPER, cat->journal,
                  "the journal ends at record %lld, but its head after the last run was record "
                  "%lld (kept in %s): the newest records were removed",
                  (long long)n, (long long)seq, cat->alerting.state_file);
    cvg_error_hint(err, "restore the journal from a backup; repairs refuse to run until then");
    return CVG_ETAMPER;
  }
  find_hash fh = {seq, 0, {0}};
  rc = cvg_journal_scan(j, seq - 1, NULL, NULL, 0, 0, -1, find_hash_cb, &fh, err);
  if (rc == CVG_OK && (!fh.found || memcmp(fh.hash, saved, 32) != 0)) {
    cvg_error_set(err, CVG_ETAMPER, cat->journal,
                  "record %lld is not the record converge saved as the head after its last run "
                  "(kept in %s): the chain was rebuilt",
                  (long long)seq, cat->alerting.state_file);
    cvg_error_hint(err, "restore the journal from a backup; repairs refuse to run until then");
    return CVG_ETAMPER;
  }
  if (rc == CVG_OK)
    snprintf(err->hint, sizeof err->hint, "%s", head_hint);
  return rc;
}

static int print_record(void *ctx, const cvg_jrecord *r) {
  walk *w = ctx;
  char t[40], h[65], p[65];
  json_t *k = key_json(w, r);
  if (w->json) {
    json_t *body = json_loadb(r->body, r->body_len, 0, NULL);
    if (body && r->kind == CVG_J_DECISION) {
      json_decref(w->dcols);
      w->dcols = json_incref(json_object_get(body, "columns"));
    } else if (body && r->kind == CVG_J_MUTATION && w->dcols) {
      /* the exact values are hex-encoded tuples; show them decoded beside */
      json_t *b = decode_row(json_string_value(json_object_get(body, "before_values")), w->dcols);
      json_t *a = decode_row(json_string_value(json_object_get(body, "values")), w->dcols);
      json_object_set_new(body, "before", b ? b : json_null());
      json_object_set_new(body, "after", a ? a : json_null());
    }
    hex(h, r->hash, 32);
    hex(p, r->prev, 32);
    json_t *o = json_pack("{s:I, s:o, s:s, s:s, s:o, s:o, s:s, s:s}", "seq", (json_int_t)r->seq,
                          "time", cvg_json_time(r->at), "kind", cvg_jkind_names[r->kind], "dataset",
                          r->dataset, "key", k, "body",
                          body ? body : json_stringn(r->body, r->body_len), "prev", p, "hash", h);
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (s)
      printf("%s%s%s", w->json == 1 ? (w->n ? ",\n  " : "\n  ") : "", s, w->json == 2 ? "\n" : "");
    free(s);
    json_decref(o);
  } else {
    char *ks = json_dumps(k, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(k);
    printf("%-6lld %-24s %-10s %-12s %-16s %.*s\n", (long long)r->seq,
           cvg_fmt_time(t, sizeof t, r->at), cvg_jkind_names[r->kind], r->dataset, ks ? ks : "-",
           (int)(r->body_len > 200 ? 200 : r->body_len), r->body);
    free(ks);
  }
  w->n++;
  return 0;
}

/* Encodes --key: a JSON value or array of values (one per key column) as a key tuple. */
static int encode_key(const char *text, cvg_buf *out) {
  json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
  if (!j)
    j = json_string(text); /* a bare word: a text key */
  if (!j)
    return -1;
  json_t *arr = json_is_array(j) ? j : NULL;
  size_t n = arr ? json_array_size(arr) : 1;
  int rc = 0;
  for (size_t i = 0; i < n && !rc; i++) {
    json_t *v = arr ? json_array_get(arr, i) : j;
    if (json_is_integer(v))
      rc = cvg_encode_int(out, json_integer_value(v));
    else if (json_is_real(v))
      rc = cvg_encode_real(out, json_real_value(v));
    else if (json_is_string(v))
      rc = cvg_encode_text(out, json_string_value(v), json_string_length(v));
    else if (json_is_null(v))
      rc = cvg_encode_null(out);
    else
      rc = -1;
  }
  json_decref(j);
  return rc ? -1 : 0;
}

int cmd_audit(int argc, char **argv) {
  static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                       {"journal", required_argument, NULL, 'j'},
                                       {"dataset", required_argument, NULL, 'd'},
                                       {"key", required_argument, NULL, 'k'},
                                       {"since", required_argument, NULL, 's'},
                                       {"kind", required_argument, NULL, 'K'},
                                       {"format", required_argument, NULL, 'f'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  audit_opts o = {0};
  if (argc < 2 || argv[1][0] == '-') {
    if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0))
      return print_help(stdout, "audit"), 0;
    return usage_error("audit", "give a subcommand: verify, show or export");
  }
  const char *sub = argv[1];
  if (strcmp(sub, "verify") && strcmp(sub, "show") && strcmp(sub, "export"))
    return usage_error("audit", "unknown subcommand '%s'; use verify, show or export", sub);
  int c;
  optind = 1;
  argc--;
  argv++;
  while ((c = getopt_long(argc, argv, "c:j:d:k:s:K:f:h", opts, NULL)) != -1) {
    switch (c) {
    case 'c':
      o.config = optarg;
      break;
    case 'j':
      o.journal = optarg;
      break;
    case 'd':
      o.dataset = optarg;
      break;
    case 'k':
      o.key = optarg;
      break;
    case 's':
      o.since = optarg;
      break;
    case 'K':
      o.kind = optarg;
      break;
    case 'f':
      o.format = optarg;
      break;
    case 'h':
      return print_help(stdout, "audit"), 0;
    default:
      return usage_error("audit", "unknown option");
    }
  }
  if (optind != argc)
    return usage_error("audit", "unexpected argument '%s'", argv[optind]);
  if (!o.config == !o.journal)
    return usage_error("audit",
                       "give the catalog (-c converge.yaml) or the journal (--journal PATH)");
  double since = 0;
  if (o.since && cvg_parse_time(o.since, &since) != 0)
    return usage_error("audit", "--since must be RFC 3339 time, e.g. 2026-11-26T00:00:00Z");
  int kind = -1;
  if (o.kind) {
    for (int k = 0; k < CVG_J__COUNT; k++)
      if (strcmp(o.kind, cvg_jkind_names[k]) == 0)
        kind = k;
    if (kind < 0)
      return usage_error("audit", "--kind must be divergence, decision, mutation, outcome, "
                                  "revert, approval or run");
  }
  int json = 0;
  if (strcmp(sub, "export") == 0) {
    if (!o.format || strcmp(o.format, "json") == 0)
      json = 1;
    else if (strcmp(o.format, "jsonl") == 0)
      json = 2;
    else
      return usage_error("audit", "--format must be json or jsonl");
  } else if (o.format) {
    return usage_error("audit", "--format applies to export");
  }
  cvg_catalog *cat = NULL;
  cvg_error err;
  cvg_error_clear(&err);
  if (o.config && cvg_catalog_load(&cat, o.config, &err) != CVG_OK) {
    print_error(&err);
    return EXIT_TROUBLE;
  }
  walk w = {json, NULL, 0, NULL, 0};
  if (cat && o.dataset)
    for (size_t i = 0; i < cat->n_datasets; i++)
      if (strcmp(cat->datasets[i].name, o.dataset) == 0 && cat->datasets[i].n_key) {
        w.key_cols = (const char *const *)cat->datasets[i].key;
        w.n_key_cols = cat->datasets[i].n_key;
      }
  cvg_journal *j = NULL;
  int status = 0;
  cvg_journal_opts jo;
  memset(&jo, 0, sizeof jo);
  jo.mode = CVG_JOURNAL_READ;
  if (cat) {
    jo.key = cat->journal_key;
    jo.key_len = cat->journal_key_len;
  }
  if (cvg_journal_open_opts(&j, cat ? cat->journal : o.journal, &jo, &err) != CVG_OK) {
    print_error(&err);
    cvg_catalog_free(cat);
    return EXIT_TROUBLE;
  }
  if (strcmp(sub, "verify") == 0) {
    int64_t n = 0;
    int rc = cvg_journal_verify(j, &n, &err);
    if (rc == CVG_OK && cat)
      rc = against_saved_head(j, cat, n, &err);
    if (rc == CVG_OK) {
      printf("%s: %lld records, the chain is intact; head %s\n", cat ? cat->journal : o.journal,
             (long long)n, n ? err.hint : "(empty)");
    } else {
      print_error(&err);
      fprintf(stderr, "converge: %lld records before it verified\n", (long long)n);
      status = rc == CVG_ETAMPER ? EXIT_DIFFERENT : EXIT_TROUBLE;
    }
  } else {
    cvg_buf key;
    cvg_buf_init(&key, CVG_JOURNAL_KEY_MAX);
    if (o.key && encode_key(o.key, &key) != 0) {
      cvg_buf_release(&key);
      cvg_journal_close(j);
      cvg_catalog_free(cat);
      return usage_error("audit", "--key must be a value or a JSON array of values, e.g. 17 or "
                                  "'[\"eu\", 17]'");
    }
    if (json == 1) {
      json_t *jp = json_string(cat ? cat->journal : o.journal);
      char *js = jp ? json_dumps(jp, JSON_ENCODE_ANY) : NULL;
      printf("{\"journal\": %s, \"records\": [", js ? js : "null");
      free(js);
      json_decref(jp);
    } else if (!json)
      printf("%-6s %-24s %-10s %-12s %-16s %s\n", "SEQ", "TIME", "KIND", "DATASET", "KEY", "BODY");
    int rc = cvg_journal_scan(j, 0, o.dataset, o.key ? key.data : NULL, o.key ? key.len : 0, since,
                              kind, print_record, &w, &err);
    if (json == 1)
      printf("%s]}\n", w.n ? "\n" : "");
    cvg_buf_release(&key);
    if (rc) {
      print_error(&err);
      status = EXIT_TROUBLE;
    } else if (!json && !w.n) {
      printf("(no records)\n");
    }
  }
  json_decref(w.dcols);
  cvg_journal_close(j);
  cvg_catalog_free(cat);
  return status;
}
