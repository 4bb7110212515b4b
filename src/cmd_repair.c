/* SPDX-License-Identifier: MIT */
/*
 * converge repair: compares a dataset's replicas now and repairs what differs per its policy,
 * journaling every decision before any write; revert and approve/reject act on journaled
 * decisions. See docs/repair.md.
 */
#include "cli.h"
#include "converge/mclock.h"
#include "converge/catalog.h"
#include "converge/journal.h"
#include "converge/json.h"
#include "converge/repair.h"

#include <jansson.h>

#include <errno.h>
#include <getopt.h>
#include <time.h>
#include <unistd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

/* The first SIGINT or SIGTERM asks the run to stop after its current batch (everything journaled
 * so far stays consistent and is resumed by the next run); a second one ends the process at once,
 * which the journal survives as it survives a crash. */
/* Exit status of a run refused by a safety limit (repair.max_*, an empty authority). */
#define EXIT_REFUSED 3

static int stop_flag;
static volatile sig_atomic_t stop_signal;
static void on_signal(int sig) {
  static const char msg[] =
      "\nconverge: stopping after the current batch (a second signal stops at once)\n";
  int saved = errno;
  stop_signal = sig;
  __atomic_store_n(&stop_flag, 1, __ATOMIC_SEQ_CST);
  signal(SIGINT, SIG_DFL); /* the next of either stops at once */
  signal(SIGTERM, SIG_DFL);
  ssize_t n = write(2, msg, sizeof msg - 1);
  (void)n;
  errno = saved;
}

/* What an interrupted run says, and its exit status: 128 + the signal, never success. */
static int interrupted_exit(const cvg_repair_stats *s) {
  if (s->interrupted)
    fprintf(stderr,
            "converge: interrupted: %llu of %llu divergent keys repaired (%llu mutations "
            "applied); run the same command again to resume\n",
            (unsigned long long)s->keys_done, (unsigned long long)s->divergent,
            (unsigned long long)s->applied);
  else
    fprintf(stderr, "converge: interrupted, but after the run's last batch: nothing is left to "
                    "resume\n");
  return 128 + (int)stop_signal;
}

static void print_line(void *ctx, const char *line) {
  (void)ctx;
  printf("%s\n", line);
  fflush(stdout);
}

/* A progress bar on a terminal (standard error), redrawn after each batch. */
static void progress(void *ctx, size_t done, size_t total, const cvg_repair_stats *s) {
  (void)ctx;
  static double t0;
  double now = cvg_mono_now();
  if (t0 == 0)
    t0 = now;
  char bar[41];
  size_t fill = total ? done * 40 / total : 40;
  for (size_t i = 0; i < 40; i++)
    bar[i] = i < fill ? '#' : '.';
  bar[40] = '\0';
  fprintf(stderr, "\r[%s] %zu/%zu keys, %llu applied, %llu skipped, %llu failed, %.0f rows/s%s",
          bar, done, total, (unsigned long long)s->applied, (unsigned long long)s->skipped,
          (unsigned long long)s->failed, now > t0 ? (double)s->applied / (now - t0) : 0.0,
          done == total ? "\n" : "");
  fflush(stderr);
}

static void summary(const cvg_repair_stats *s, int execute) {
  if (execute && s->head_seq > 0) {
    char hx[65];
    for (int i = 0; i < 32; i++)
      snprintf(hx + 2 * i, 3, "%02x", s->head_hash[i]);
    printf("journal head: record %lld, %s (kept in the state file too; converge audit verify "
           "compares them)\n",
           (long long)s->head_seq, hx);
  }
  if (execute)
    printf("repair: %llu divergent, %llu decisions, %llu mutations: %llu applied, %llu skipped "
           "(row changed meanwhile), %llu failed, %llu awaiting approval%s in %.2fs (journal "
           "%.2fs)\n",
           (unsigned long long)s->divergent, (unsigned long long)s->decisions,
           (unsigned long long)s->mutations, (unsigned long long)s->applied,
           (unsigned long long)s->skipped, (unsigned long long)s->failed,
           (unsigned long long)s->awaiting, s->resumed ? " (with resumed intents)" : "", s->seconds,
           s->journal_seconds);
  else
    printf("plan: %llu divergent key(s), %llu mutation(s), %llu awaiting approval; nothing was "
           "written (use --execute to apply)\n",
           (unsigned long long)s->divergent, (unsigned long long)s->mutations,
           (unsigned long long)s->awaiting);
}

/* ---- repair status: the journal, summed per dataset ---- */

typedef struct dsum {
  char name[128];
  uint64_t decisions, mutations, applied, skipped, failed, reverted, awaiting;
  double last;
  /* the last run: the dataset's trailing records with no gap over RUN_GAP seconds */
  double run_start;
  uint64_t run_applied;
} dsum;

#define RUN_GAP 5.0

typedef struct status_ctx {
  dsum *d;
  size_t n, cap;
  int64_t *waiting; /* manual decisions not yet settled */
  size_t n_waiting, cap_waiting;
  int oom;
} status_ctx;

static dsum *sum_of(status_ctx *c, const char *name) {
  for (size_t i = 0; i < c->n; i++)
    if (strcmp(c->d[i].name, name) == 0)
      return &c->d[i];
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 8;
    dsum *g = realloc(c->d, cap * sizeof *g);
    if (!g)
      return NULL;
    c->d = g;
    c->cap = cap;
  }
  dsum *d = &c->d[c->n++];
  memset(d, 0, sizeof *d);
  snprintf(d->name, sizeof d->name, "%s", name);
  return d;
}

static int status_cb(void *ctx, const cvg_jrecord *r) {
  status_ctx *c = ctx;
  dsum *d = sum_of(c, r->dataset);
  if (!d) {
    c->oom = 1;
    return 1;
  }
  if (d->last == 0 || r->at - d->last > RUN_GAP) {
    d->run_start = r->at;
    d->run_applied = 0;
  }
  d->last = r->at;
  json_t *b = json_loadb(r->body, r->body_len, 0, NULL);
  if (r->kind == CVG_J_DECISION) {
    d->decisions++;
    const char *st = json_string_value(json_object_get(b, "status"));
    if (st && strcmp(st, "awaiting_approval") == 0) {
      d->awaiting++;
      if (c->n_waiting == c->cap_waiting) {
        size_t cap = c->cap_waiting ? c->cap_waiting * 2 : 16;
        int64_t *g = realloc(c->waiting, cap * sizeof *g);
        if (!g) {
          c->oom = 1;
          json_decref(b);
          return 1;
        }
        c->waiting = g;
        c->cap_waiting = cap;
      }
      c->waiting[c->n_waiting++] = r->seq;
    }
  } else if (r->kind == CVG_J_MUTATION) {
    d->mutations++;
  } else if (r->kind == CVG_J_OUTCOME) {
    json_t *list = json_object_get(b, "outcomes");
    size_t n = list ? json_array_size(list) : 1;
    for (size_t k = 0; k < n; k++) {
      const char *res =
          json_string_value(json_object_get(list ? json_array_get(list, k) : b, "result"));
      if (res && strcmp(res, "applied") == 0) {
        d->applied++;
        d->run_applied++;
      } else if (res && strcmp(res, "skipped") == 0)
        d->skipped++;
      else
        d->failed++;
    }
  } else if (r->kind == CVG_J_REVERT) {
    const char *res = json_string_value(json_object_get(b, "result"));
    d->reverted += res && strcmp(res, "applied") == 0;
  } else if (r->kind == CVG_J_APPROVAL) {
    int64_t id = json_integer_value(json_object_get(b, "decision"));
    for (size_t i = 0; i < c->n_waiting; i++)
      if (c->waiting[i] == id) {
        c->waiting[i] = 0;
        d->awaiting--;
      }
  }
  json_decref(b);
  return 0;
}

static int repair_status(const cvg_catalog *cat) {
  cvg_journal *j = NULL;
  cvg_error err;
  cvg_error_clear(&err);
  if (cvg_journal_open(&j, cat->journal, CVG_JOURNAL_READ, &err) != CVG_OK) {
    print_error(&err);
    return EXIT_TROUBLE;
  }
  status_ctx c;
  memset(&c, 0, sizeof c);
  int rc = cvg_journal_scan(j, 0, NULL, NULL, 0, 0, -1, status_cb, &c, &err);
  cvg_journal_close(j);
  if (rc || c.oom) {
    if (rc)
      print_error(&err);
    else
      fprintf(stderr, "converge: out of memory reading the journal\n");
    free(c.d);
    free(c.waiting);
    return EXIT_TROUBLE;
  }
  printf("journal %s\n", cat->journal);
  printf("%-16s %-9s %-9s %-9s %-9s %-7s %-8s %-9s %-24s %s\n", "DATASET", "DECISIONS", "MUTATIONS",
         "APPLIED", "SKIPPED", "FAILED", "REVERTED", "AWAITING", "LAST RECORD",
         "LAST RUN (applied, rows/s)");
  for (size_t i = 0; i < c.n; i++) {
    char t[40];
    dsum *d = &c.d[i];
    double span = d->last - d->run_start;
    printf("%-16s %-9llu %-9llu %-9llu %-9llu %-7llu %-8llu %-9llu %-24s %llu, %.0f\n", d->name,
           (unsigned long long)d->decisions, (unsigned long long)d->mutations,
           (unsigned long long)d->applied, (unsigned long long)d->skipped,
           (unsigned long long)d->failed, (unsigned long long)d->reverted,
           (unsigned long long)d->awaiting, cvg_fmt_time(t, sizeof t, d->last),
           (unsigned long long)d->run_applied,
           (double)d->run_applied / (span > 0.001 ? span : 0.001));
  }
  if (!c.n)
    printf("(no repairs yet)\n");
  free(c.d);
  free(c.waiting);
  return 0;
}

static int parse_id(const char *s, int64_t *out) {
  uint64_t v;
  if (parse_u64(s, &v) != 0 || v == 0 || v > INT64_MAX)
    return -1;
  *out = (int64_t)v;
  return 0;
}

int cmd_repair(int argc, char **argv) {
  static const struct option opts[] = {
      {"config", required_argument, NULL, 'c'}, {"dataset", required_argument, NULL, 'd'},
      {"shard", required_argument, NULL, 's'},  {"dry-run", no_argument, NULL, 'n'},
      {"execute", no_argument, NULL, 'x'},      {"rate", required_argument, NULL, 'r'},
      {"batch", required_argument, NULL, 'b'},  {"concurrency", required_argument, NULL, 'j'},
      {"verbose", no_argument, NULL, 'v'},      {"ignore-window", no_argument, NULL, 'W'},
      {"by", required_argument, NULL, 'B'},     {"note", required_argument, NULL, 'N'},
      {"run", required_argument, NULL, 'R'},    {"force-limits", no_argument, NULL, 'F'},
      {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
  const char *config = NULL, *dataset = NULL, *by = NULL, *note = NULL;
  long shard = -1;
  int dry = 0, execute = 0, verbose = 0, ignore_window = 0, force_limits = 0, c;
  int64_t run_id = 0;
  double rate = 0;
  uint64_t batch = 0, conc = 0, u;
  const char *sub = NULL;
  if (argc >= 2 && argv[1][0] != '-') {
    sub = argv[1];
    if (strcmp(sub, "revert") && strcmp(sub, "approve") && strcmp(sub, "reject") &&
        strcmp(sub, "status") && strcmp(sub, "purge"))
      return usage_error(
          "repair", "unknown subcommand '%s'; use status, purge, revert, approve or reject", sub);
    argc--;
    argv++;
  }
  optind = 1;
  while ((c = getopt_long(argc, argv, "c:d:s:nxr:b:j:vWB:N:R:Fh", opts, NULL)) != -1) {
    switch (c) {
    case 'R':
      if (parse_id(optarg, &run_id) != 0)
        return usage_error("repair", "--run takes a run's id (its journal record number, as "
                                     "the run printed it), e.g. --run 1207");
      break;
    case 'F':
      force_limits = 1;
      break;
    case 'c':
      config = optarg;
      break;
    case 'd':
      dataset = optarg;
      break;
    case 's':
      if (parse_u64(optarg, &u) != 0 || u > 65535)
        return usage_error("repair", "--shard must be a shard number");
      shard = (long)u;
      break;
    case 'n':
      dry = 1;
      break;
    case 'x':
      execute = 1;
      break;
    case 'r':
      if (parse_double(optarg, &rate) != 0 || rate <= 0)
        return usage_error("repair", "--rate must be rows per second, more than 0");
      break;
    case 'b':
      if (parse_u64(optarg, &batch) != 0 || batch == 0 || batch > 100000)
        return usage_error("repair", "--batch must be 1 to 100000 keys");
      break;
    case 'j':
      if (parse_u64(optarg, &conc) != 0 || conc == 0 || conc > CVG_REPAIR_MAX_CONCURRENCY)
        return usage_error("repair", "--concurrency must be 1 to %d shards at a time",
                           CVG_REPAIR_MAX_CONCURRENCY);
      break;
    case 'v':
      verbose = 1;
      break;
    case 'W':
      ignore_window = 1;
      break;
    case 'B':
      by = optarg;
      break;
    case 'N':
      note = optarg;
      break;
    case 'h':
      return print_help(stdout, "repair"), 0;
    default:
      return usage_error("repair", "unknown option");
    }
  }
  if (!config)
    return usage_error("repair", "give the catalog with -c converge.yaml");
  int64_t id = 0;
  if (sub && strcmp(sub, "status") == 0) {
    if (optind != argc)
      return usage_error("repair", "unexpected argument '%s'", argv[optind]);
    cvg_catalog *sc = load_catalog(config);
    if (!sc)
      return EXIT_TROUBLE;
    int st = repair_status(sc);
    cvg_catalog_free(sc);
    return st;
  }
  int purge = sub && strcmp(sub, "purge") == 0;
  if (purge)
    sub = NULL; /* a run of its own kind, with the run's options */
  if (run_id && (!sub || strcmp(sub, "revert") != 0))
    return usage_error("repair", "--run goes with revert: converge repair revert --run ID");
  if (force_limits && (sub || !execute))
    return usage_error("repair", "--force-limits goes with --execute");
  if (sub && run_id) {
    if (optind != argc)
      return usage_error("repair", "give either a decision's id or --run ID, not both");
  } else if (sub) {
    if (optind != argc - 1 || parse_id(argv[optind], &id) != 0)
      return usage_error("repair",
                         "give the decision's id (its journal record number), e.g. "
                         "converge repair %s 17 -c converge.yaml",
                         sub);
  } else {
    if (optind != argc)
      return usage_error("repair", "unexpected argument '%s'", argv[optind]);
    if (dry == execute)
      return usage_error("repair", "give --dry-run (show the plan) or --execute (apply it)");
    if (!dataset)
      return usage_error("repair", "give the dataset with --dataset NAME");
  }
  cvg_catalog *cat = load_catalog(config);
  if (!cat)
    return EXIT_TROUBLE;
  cvg_error err;
  cvg_error_clear(&err);
  cvg_repair_stats st;
  memset(&st, 0, sizeof st);
  int rc;
  if (sub && run_id) {
    rc = cvg_repair_revert_run(cat, run_id, print_line, NULL, &st, &err);
    id = run_id;
  } else if (sub && strcmp(sub, "revert") == 0) {
    rc = cvg_repair_revert(cat, id, print_line, NULL, &st, &err);
  } else if (sub) {
    const char *who = by ? by : getenv("USER");
    rc = cvg_repair_approve(cat, id, strcmp(sub, "approve") == 0, who ? who : "unknown", note,
                            print_line, NULL, &st, &err);
  } else {
    size_t ds = 0;
    while (ds < cat->n_datasets && strcmp(cat->datasets[ds].name, dataset) != 0)
      ds++;
    if (ds == cat->n_datasets) {
      cvg_catalog_free(cat);
      return usage_error("repair", "--dataset '%s' is not a dataset of %s", dataset, config);
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    cvg_repair_opts o;
    memset(&o, 0, sizeof o);
    o.cat = cat;
    o.dataset = ds;
    o.shard = shard;
    o.execute = execute;
    o.rows_per_sec = rate;
    o.batch = (size_t)batch;
    o.verbose = verbose;
    o.concurrency = (int)conc;
    o.ignore_window = ignore_window;
    o.force_limits = force_limits;
    if (execute && isatty(2))
      o.progress = progress;
    o.print = print_line;
    o.cancel = &stop_flag;
    rc = purge ? cvg_repair_purge(&o, &st, &err) : cvg_repair_run(&o, &st, &err);
  }
  if (rc) {
    print_error(&err);
    cvg_catalog_free(cat);
    /* an error is reported as itself, even when a signal came too: a refusal or a broken
     * journal is not "interrupted, run again" */
    return rc == CVG_ELIMIT ? EXIT_REFUSED : EXIT_TROUBLE;
  }
  if (!sub && stop_signal) {
    summary(&st, execute);
    cvg_catalog_free(cat);
    return interrupted_exit(&st);
  }
  if (!sub)
    summary(&st, execute);
  else
    printf("%s%s %lld: %llu applied, %llu skipped, %llu failed\n", sub, run_id ? " --run" : "",
           (long long)id, (unsigned long long)st.applied, (unsigned long long)st.skipped,
           (unsigned long long)st.failed);
  cvg_catalog_free(cat);
  return st.skipped || st.failed || st.stopped_stage ? EXIT_DIFFERENT : 0;
}
