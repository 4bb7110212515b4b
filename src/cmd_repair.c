/* SPDX-License-Identifier: MIT */
/*
 * converge repair: compares a dataset's replicas now and repairs what differs per its policy,
 * journaling every decision before any write; revert and approve/reject act on journaled
 * decisions. See docs/repair.md.
 */
#include "cli.h"
#include "converge/catalog.h"
#include "converge/repair.h"

#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static int stop_flag;
static void on_signal(int sig) {
  (void)sig;
  __atomic_store_n(&stop_flag, 1, __ATOMIC_SEQ_CST);
}

static void print_line(void *ctx, const char *line) {
  (void)ctx;
  printf("%s\n", line);
  fflush(stdout);
}

static void summary(const cvg_repair_stats *s, int execute) {
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
      {"batch", required_argument, NULL, 'b'},  {"verbose", no_argument, NULL, 'v'},
      {"by", required_argument, NULL, 'B'},     {"note", required_argument, NULL, 'N'},
      {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
  const char *config = NULL, *dataset = NULL, *by = NULL, *note = NULL;
  long shard = -1;
  int dry = 0, execute = 0, verbose = 0, c;
  double rate = 0;
  uint64_t batch = 0, u;
  const char *sub = NULL;
  if (argc >= 2 && argv[1][0] != '-') {
    sub = argv[1];
    if (strcmp(sub, "revert") && strcmp(sub, "approve") && strcmp(sub, "reject"))
      return usage_error("repair", "unknown subcommand '%s'; use revert, approve or reject", sub);
    argc--;
    argv++;
  }
  optind = 1;
  while ((c = getopt_long(argc, argv, "c:d:s:nxr:b:vB:N:h", opts, NULL)) != -1) {
    switch (c) {
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
    case 'v':
      verbose = 1;
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
  if (sub) {
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
  cvg_catalog *cat = NULL;
  cvg_error err;
  cvg_error_clear(&err);
  if (cvg_catalog_load(&cat, config, &err) != CVG_OK) {
    print_error(&err);
    return EXIT_TROUBLE;
  }
  cvg_repair_stats st;
  memset(&st, 0, sizeof st);
  int rc;
  if (sub && strcmp(sub, "revert") == 0) {
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
    o.print = print_line;
    o.cancel = &stop_flag;
    rc = cvg_repair_run(&o, &st, &err);
  }
  if (rc) {
    print_error(&err);
    cvg_catalog_free(cat);
    return EXIT_TROUBLE;
  }
  if (!sub)
    summary(&st, execute);
  else
    printf("%s %lld: %llu applied, %llu skipped, %llu failed\n", sub, (long long)id,
           (unsigned long long)st.applied, (unsigned long long)st.skipped,
           (unsigned long long)st.failed);
  cvg_catalog_free(cat);
  return st.skipped || st.failed ? EXIT_DIFFERENT : 0;
}
