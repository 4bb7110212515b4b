/* SPDX-License-Identifier: MIT */
/*
 * converge chaos: run a scenario of the chaos lab, or print the confidence ledger.
 */
#include "cli.h"
#include "converge/chaos.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static volatile int cancel_flag;

static void on_signal(int sig) {
  (void)sig;
  __atomic_store_n(&cancel_flag, 1, __ATOMIC_SEQ_CST);
}

static void print_line(void *ctx, const char *line) {
  (void)ctx;
  printf("%s\n", line);
  fflush(stdout);
}

static const char *stage_name(int s) {
  return s == 3 ? "late" : s == 2 ? "mid" : s == 1 ? "early" : "-";
}

static void print_verdicts(const cvg_chaos_scenario *sc, const cvg_chaos_result *r) {
  printf("\n%-3s %-14s %-7s %-7s %-9s %-7s %-13s %-9s %s\n", "#", "FAULT", "REPLICA", "AT",
         "DETECTED", "AFTER", "STAGE (AFTER)", "REPAIRED", "KEYS");
  for (size_t i = 0; i < sc->n_faults; i++) {
    const cvg_chaos_fault *f = &sc->faults[i];
    char at[32], det[32], rep[32];
    snprintf(at, sizeof at, "%gs", f->at);
    if (f->masked)
      snprintf(det, sizeof det, "masked");
    else
      snprintf(det, sizeof det, "%s", f->detected ? "yes" : "NO");
    char after[32] = "-";
    if (f->detected)
      snprintf(after, sizeof after, "%.1fs", f->detect_after);
    if (f->masked)
      snprintf(rep, sizeof rep, "-");
    else if (f->repaired)
      snprintf(rep, sizeof rep, "%.1fs", f->repair_after);
    else
      snprintf(rep, sizeof rep, "NO");
    char stage[32];
    if (f->stage)
      snprintf(stage, sizeof stage, "%s (%.1fs)", stage_name(f->stage), f->stage_after);
    else
      snprintf(stage, sizeof stage, "-");
    printf("%-3zu %-14s r%-6d %-7s %-9s %-7s %-13s %-9s %zu\n", i + 1, cvg_fault_names[f->kind],
           f->replica + 1, at, det, after, stage, rep, f->affected);
  }
  printf("\nrecall %.2f (%zu of %zu faults detected, %zu masked), precision %.2f (%zu false "
         "alarm(s))\n",
         r->recall, r->detected, r->faults - r->masked - r->not_run, r->masked, r->precision,
         r->false_alarms);
  printf("confirmations: %zu key(s) confirmed divergent, %zu false (the change was still in "
         "flight), key precision %.2f%s; repair writes to rows in flight: %zu\n",
         r->confirmations, r->false_confirmations, r->key_precision,
         r->unjudged ? " - SOME NOT JUDGED (the lab could not read them)" : "",
         r->inflight_repairs);
  if (r->unjudged)
    printf("%zu confirmation(s) not judged: not a pass\n", r->unjudged);
  if (r->unexplained)
    printf("%zu confirmation(s) of keys no fault touched and nothing in flight: not a pass\n",
           r->unexplained);
  printf("time to detect: mean %.1fs, worst %.1fs; time to repair: mean %.1fs, worst %.1fs\n",
         r->mttd, r->worst_ttd, r->mttr, r->worst_ttr);
  printf("model check: %zu lost, %zu resurrected, %zu duplicated, %zu with other values - %s\n",
         r->lost, r->resurrected, r->duplicated, r->corrupt,
         r->converged ? "every replica holds exactly the expected rows" : "NOT CONVERGED");
  printf("workload: %llu writes (operations digest %s)\n", (unsigned long long)r->ops,
         r->ops_digest);
  if (r->not_run)
    printf("%zu fault(s) not reached before the interruption: no verdict for them\n", r->not_run);
  printf("verdict: %s\n", r->interrupted ? "INTERRUPTED (not a pass)" : r->pass ? "PASS" : "FAIL");
}

static void count_or_dash(json_t *j, const char *name, char *out, size_t cap) {
  json_t *v = json_object_get(j, name);
  if (json_is_integer(v))
    snprintf(out, cap, "%lld", (long long)json_integer_value(v));
  else
    snprintf(out, cap, "-");
}

/* The ledger for reading, or NULL with the message said. */
static FILE *open_ledger(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "converge: %s: cannot open the ledger: %s\n", path, strerror(errno));
    fprintf(stderr,
            "  hint: run a scenario first (converge chaos -c SCENARIO), or give --ledger\n");
  }
  return f;
}

static int print_ledger(const char *path) {
  FILE *f = open_ledger(path);
  if (!f)
    return EXIT_TROUBLE;
  printf("%-20s %-18s %-6s %-8s %-6s %-6s %-6s %-7s %-7s %-5s %-4s %-5s %-16s %s\n", "TIME",
         "SCENARIO", "SEED", "VERSION", "FAULTS", "RECALL", "PREC", "MTTD", "MTTR", "LOST", "FA",
         "FCONF", "INFLIGHT_REPAIRS", "VERDICT");
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  int lineno = 0, bad = 0;
  while ((n = getline(&line, &cap, f)) > 0) {
    lineno++;
    json_error_t je;
    json_t *j = json_loadb(line, (size_t)n, 0, &je);
    if (!json_is_object(j)) {
      fprintf(stderr, "converge: %s:%d: not a ledger entry (%s); skipped\n", path, lineno, je.text);
      json_decref(j);
      bad = 1;
      continue;
    }
    char mttd[16], mttr[16];
    snprintf(mttd, sizeof mttd, "%.1fs", json_number_value(json_object_get(j, "mttd")));
    snprintf(mttr, sizeof mttr, "%.1fs", json_number_value(json_object_get(j, "mttr")));
    long long lost = json_integer_value(json_object_get(j, "lost")) +
                     json_integer_value(json_object_get(j, "resurrected")) +
                     json_integer_value(json_object_get(j, "duplicated"));
    const char *t = json_string_value(json_object_get(j, "time"));
    const char *s = json_string_value(json_object_get(j, "scenario"));
    const char *v = json_string_value(json_object_get(j, "version"));
    char fconf[16], infl[16]; /* entries written before the lab counted per key: "-" */
    count_or_dash(j, "false_confirmations", fconf, sizeof fconf);
    count_or_dash(j, "inflight_repairs", infl, sizeof infl);
    printf("%-20s %-18.18s %-6lld %-8s %-6zu %-6.2f %-6.2f %-7s %-7s %-5lld %-4lld %-5s %-16s %s\n",
           t ? t : "?", s ? s : "?", (long long)json_integer_value(json_object_get(j, "seed")),
           v ? v : "?", json_array_size(json_object_get(j, "faults")),
           json_number_value(json_object_get(j, "recall")),
           json_number_value(json_object_get(j, "precision")), mttd, mttr, lost,
           (long long)json_integer_value(json_object_get(j, "false_alarms")), fconf, infl,
           json_is_true(json_object_get(j, "interrupted")) ? "interrupted"
           : json_is_true(json_object_get(j, "pass"))      ? "pass"
                                                           : "FAIL");
    json_decref(j);
  }
  free(line);
  fclose(f);
  if (!lineno)
    printf("(no runs yet)\n");
  return bad ? EXIT_DIFFERENT : 0;
}

/* One scenario's runs in a ledger, summed up. */
typedef struct sumrow {
  char name[128];
  int runs, passes;
  double worst_recall, worst_ttd, worst_ttr;
  long long false_alarms, fconf, inflight;
  int per_key; /* some run counted confirmations per key */
} sumrow;

static sumrow *sum_find(sumrow **rows, size_t *n, size_t *cap, const char *name) {
  for (size_t i = 0; i < *n; i++)
    if (!strcmp((*rows)[i].name, name))
      return &(*rows)[i];
  if (*n == *cap) {
    size_t nc = *cap ? 2 * *cap : 16;
    sumrow *g = realloc(*rows, nc * sizeof *g);
    if (!g)
      return NULL;
    *rows = g;
    *cap = nc;
  }
  sumrow *r = &(*rows)[(*n)++];
  memset(r, 0, sizeof *r);
  snprintf(r->name, sizeof r->name, "%s", name);
  r->worst_recall = 1;
  return r;
}

static void sum_add(sumrow *r, json_t *j) {
  double recall = json_number_value(json_object_get(j, "recall"));
  double ttd = json_number_value(json_object_get(j, "worst_ttd"));
  double ttr = json_number_value(json_object_get(j, "worst_ttr"));
  json_t *fc = json_object_get(j, "false_confirmations");
  r->runs++;
  r->passes +=
      json_is_true(json_object_get(j, "pass")) && !json_is_true(json_object_get(j, "interrupted"));
  r->worst_recall = recall < r->worst_recall ? recall : r->worst_recall;
  r->worst_ttd = ttd > r->worst_ttd ? ttd : r->worst_ttd;
  r->worst_ttr = ttr > r->worst_ttr ? ttr : r->worst_ttr;
  r->false_alarms += json_integer_value(json_object_get(j, "false_alarms"));
  r->fconf += json_integer_value(fc);
  r->inflight += json_integer_value(json_object_get(j, "inflight_repairs"));
  r->per_key |= json_is_integer(fc);
}

/* `converge chaos ledger --summary`: per scenario, over all its runs in the ledger - how many
 * passed, the worst recall, the false alarms and false confirmations, the repairs of rows in
 * flight, the worst time to detect and to repair. Exit 1 when a run failed. */
static int print_summary(const char *path) {
  FILE *f = open_ledger(path);
  if (!f)
    return EXIT_TROUBLE;
  sumrow *rows = NULL;
  size_t n = 0, cap = 0;
  char *line = NULL;
  size_t lcap = 0;
  ssize_t len;
  int lineno = 0, bad = 0, oom = 0;
  while (!oom && (len = getline(&line, &lcap, f)) > 0) {
    lineno++;
    json_t *j = json_loadb(line, (size_t)len, 0, NULL);
    const char *name = json_string_value(json_object_get(j, "scenario"));
    if (!json_is_object(j) || !name) {
      fprintf(stderr, "converge: %s:%d: not a ledger entry; skipped\n", path, lineno);
      bad = 1;
    } else {
      sumrow *r = sum_find(&rows, &n, &cap, name);
      if (r)
        sum_add(r, j);
      oom = !r;
    }
    json_decref(j);
  }
  free(line);
  fclose(f);
  if (oom) {
    free(rows);
    fprintf(stderr, "converge: out of memory reading the ledger\n");
    return EXIT_TROUBLE;
  }
  printf("%-18s %-5s %-6s %-12s %-12s %-6s %-16s %-10s %s\n", "SCENARIO", "RUNS", "PASSED",
         "WORST_RECALL", "FALSE_ALARMS", "FCONF", "INFLIGHT_REPAIRS", "WORST_TTD", "WORST_TTR");
  int failed = 0;
  for (size_t i = 0; i < n; i++) {
    const sumrow *r = &rows[i];
    char fc[24] = "-", inf[24] = "-"; /* runs before the lab counted per key: "-" */
    if (r->per_key) {
      snprintf(fc, sizeof fc, "%lld", r->fconf);
      snprintf(inf, sizeof inf, "%lld", r->inflight);
    }
    printf("%-18.18s %-5d %-6d %-12.2f %-12lld %-6s %-16s %-10.1f %.1f\n", r->name, r->runs,
           r->passes, r->worst_recall, r->false_alarms, fc, inf, r->worst_ttd, r->worst_ttr);
    failed |= r->passes < r->runs;
  }
  if (!n)
    printf("(no runs yet)\n");
  free(rows);
  return bad ? EXIT_DIFFERENT : failed ? 1 : 0;
}

int cmd_chaos(int argc, char **argv) {
  static const struct option opts[] = {{"scenario", required_argument, NULL, 'c'},
                                       {"dir", required_argument, NULL, 'D'},
                                       {"ledger", required_argument, NULL, 'l'},
                                       {"seed", required_argument, NULL, 's'},
                                       {"sabotage", no_argument, NULL, 'S'},
                                       {"port", required_argument, NULL, 'p'},
                                       {"summary", no_argument, NULL, 'U'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *scenario = NULL, *dir = NULL, *ledger = "chaos-ledger.jsonl";
  int sabotage = 0, c, ledger_cmd = 0, have_seed = 0, port = 0, summary = 0;
  uint64_t seed = 0;
  if (argc >= 2 && argv[1][0] != '-') {
    if (strcmp(argv[1], "ledger") != 0)
      return usage_error("chaos", "unknown subcommand '%s'; use ledger", argv[1]);
    ledger_cmd = 1;
    argc--;
    argv++;
  }
  optind = 1;
  while ((c = getopt_long(argc, argv, "c:D:l:s:Sp:Uh", opts, NULL)) != -1) {
    switch (c) {
    case 'c':
      scenario = optarg;
      break;
    case 'D':
      dir = optarg;
      break;
    case 'l':
      ledger = optarg;
      break;
    case 's':
      if (parse_u64(optarg, &seed) != 0)
        return usage_error("chaos", "--seed must be a whole number");
      have_seed = 1;
      break;
    case 'S':
      sabotage = 1;
      break;
    case 'U':
      summary = 1;
      break;
    case 'p': {
      uint64_t v;
      if (parse_u64(optarg, &v) != 0 || v < 1 || v > 65535)
        return usage_error("chaos", "--port must be a TCP port, 1 to 65535");
      port = (int)v;
      break;
    }
    case 'h':
      return print_help(stdout, "chaos"), 0;
    default:
      return usage_error("chaos", "unknown option");
    }
  }
  if (optind != argc)
    return usage_error("chaos", "unexpected argument '%s'", argv[optind]);
  if (summary && !ledger_cmd)
    return usage_error("chaos", "--summary goes with the ledger: converge chaos ledger --summary");
  if (ledger_cmd)
    return summary ? print_summary(ledger) : print_ledger(ledger);
  if (!scenario)
    return usage_error("chaos", "give the scenario with -c SCENARIO.yaml (see examples/chaos/)");
  cvg_error err;
  cvg_error_clear(&err);
  cvg_chaos_scenario *sc = malloc(sizeof *sc);
  if (!sc)
    return fprintf(stderr, "converge: out of memory\n"), EXIT_TROUBLE;
  if (cvg_chaos_load(scenario, sc, &err) != CVG_OK) {
    print_error(&err);
    free(sc);
    return EXIT_TROUBLE;
  }
  if (have_seed)
    sc->seed = seed;
  char tmpl[] = "/tmp/converge-chaos-XXXXXX"; /* a mkdtemp template */
  if (!dir) {
    if (!mkdtemp(tmpl)) {
      fprintf(stderr, "converge: cannot make a working folder in /tmp: %s\n", strerror(errno));
      free(sc);
      return EXIT_TROUBLE;
    }
    dir = tmpl;
  } else if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
    fprintf(stderr, "converge: %s: cannot make the working folder: %s\n", dir, strerror(errno));
    free(sc);
    return EXIT_TROUBLE;
  }
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) {
    fprintf(stderr, "converge: cannot find the converge program to start watch: %s\n",
            strerror(errno));
    free(sc);
    return EXIT_TROUBLE;
  }
  exe[n] = '\0';
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  cvg_chaos_opts o;
  memset(&o, 0, sizeof o);
  o.dir = dir;
  o.converge_exe = exe;
  o.ledger = ledger;
  o.scenario_path = scenario;
  o.sabotage = sabotage;
  o.port = port;
  o.print = print_line;
  o.cancel = (const int *)&cancel_flag;
  cvg_chaos_result r;
  int rc = cvg_chaos_run(sc, &o, &r, &err);
  if (rc) {
    print_error(&err);
    free(sc);
    return EXIT_TROUBLE;
  }
  if (cancel_flag) {
    printf("interrupted: the verdicts below cover the run so far\n");
  }
  print_verdicts(sc, &r);
  printf("ledger: %s (converge chaos ledger --ledger %s); replicas and logs in %s\n", ledger,
         ledger, dir);
  free(sc);
  return r.pass ? 0 : EXIT_DIFFERENT;
}
