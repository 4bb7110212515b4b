/* SPDX-License-Identifier: MIT */
/*
 * converge gen: writes SQLite replicas with injected divergences and their ground truth.
 */
#include "cli.h"
#include "converge/gen.h"

#include <errno.h>
#include <getopt.h>
#include <string.h>
#include <sys/stat.h>

int cmd_gen(int argc, char **argv) {
  enum {
    O_ROWS = 256,
    O_REPLICAS,
    O_SEED,
    O_KEY,
    O_NULLS,
    O_VVEC,
    O_MISSING,
    O_EXTRA,
    O_STALE,
    O_CONFLICT,
    O_TOMBSTONE,
    O_TABLE,
    O_OUT,
    O_HELP
  };
  static const struct option longopts[] = {{"rows", required_argument, NULL, O_ROWS},
                                           {"replicas", required_argument, NULL, O_REPLICAS},
                                           {"seed", required_argument, NULL, O_SEED},
                                           {"key", required_argument, NULL, O_KEY},
                                           {"nulls", required_argument, NULL, O_NULLS},
                                           {"vvec", no_argument, NULL, O_VVEC},
                                           {"missing", required_argument, NULL, O_MISSING},
                                           {"extra", required_argument, NULL, O_EXTRA},
                                           {"stale", required_argument, NULL, O_STALE},
                                           {"conflict", required_argument, NULL, O_CONFLICT},
                                           {"tombstone", required_argument, NULL, O_TOMBSTONE},
                                           {"table", required_argument, NULL, O_TABLE},
                                           {"out", required_argument, NULL, O_OUT},
                                           {"help", no_argument, NULL, O_HELP},
                                           {NULL, 0, NULL, 0}};
  cvg_gen_options o;
  memset(&o, 0, sizeof o);
  o.rows = 1000;
  o.replicas = 2;
  o.seed = 1;
  o.dir = NULL;
  int c;
  uint64_t u;
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
    const char *name = option_name(longopts, c);
    switch (c) {
    case O_ROWS:
    case O_REPLICAS:
    case O_SEED:
    case O_MISSING:
    case O_EXTRA:
    case O_STALE:
    case O_CONFLICT:
    case O_TOMBSTONE:
      if (parse_u64(optarg, &u))
        return usage_error("gen", "%s takes a non-negative whole number, got '%s'", name, optarg);
      if (c == O_ROWS)
        o.rows = u;
      else if (c == O_REPLICAS)
        o.replicas = u > 1000 ? 1000 : (unsigned)u;
      else if (c == O_SEED)
        o.seed = u;
      else if (c == O_MISSING)
        o.n_missing = u;
      else if (c == O_EXTRA)
        o.n_extra = u;
      else if (c == O_STALE)
        o.n_stale = u;
      else if (c == O_CONFLICT)
        o.n_conflict = u;
      else
        o.n_tombstone = u;
      break;
    case O_KEY:
      if (strcmp(optarg, "int") == 0)
        o.key = CVG_GEN_KEY_INT;
      else if (strcmp(optarg, "composite") == 0)
        o.key = CVG_GEN_KEY_COMPOSITE;
      else if (strcmp(optarg, "text") == 0)
        o.key = CVG_GEN_KEY_TEXT;
      else
        return usage_error("gen", "--key takes int, composite or text, got '%s'", optarg);
      break;
    case O_NULLS:
      if (parse_double(optarg, &o.nulls) || o.nulls < 0 || o.nulls > 1)
        return usage_error("gen", "--nulls takes a fraction from 0 to 1, got '%s'", optarg);
      break;
    case O_VVEC:
      o.vvec = 1;
      break;
    case O_TABLE:
      o.table = optarg;
      break;
    case O_OUT:
      o.dir = optarg;
      break;
    case O_HELP:
      print_help(stdout, "gen");
      return 0;
    default:
      return usage_error("gen", "option '%s' is unknown or lacks its value", argv[optind - 1]);
    }
  }
  if (optind < argc)
    return usage_error("gen", "unexpected argument '%s'", argv[optind]);
  if (!o.dir)
    return usage_error("gen", "name the output folder with --out DIR");
  struct stat sb;
  if (stat(o.dir, &sb) != 0) {
    if (errno != ENOENT || mkdir(o.dir, 0777) != 0) {
      fprintf(stderr, "converge: %s: cannot create the output folder: %s\n", o.dir,
              strerror(errno));
      return EXIT_TROUBLE;
    }
  } else if (!S_ISDIR(sb.st_mode)) {
    fprintf(stderr, "converge: %s: not a folder\n  hint: --out names a folder to write into\n",
            o.dir);
    return EXIT_TROUBLE;
  }
  cvg_error err;
  cvg_error_clear(&err);
  if (cvg_gen(&o, &err)) {
    print_error(&err);
    return EXIT_TROUBLE;
  }
  const char *t = o.table ? o.table : "accounts";
  printf("wrote %u replicas of %s (%llu base rows) and %s/truth.jsonl (%llu divergences)\n",
         o.replicas, t, (unsigned long long)o.rows, o.dir,
         (unsigned long long)(o.n_missing + o.n_extra + o.n_stale + o.n_conflict + o.n_tombstone));
  printf("compare them with:\n  converge diff --%s %s --tombstone deleted",
         o.vvec ? "version-vector" : "version", o.vvec ? "vclock" : "updated_at");
  for (unsigned r = 1; r <= o.replicas; r++)
    printf(" 'sqlite:%s/replica-%u.db?table=%s'", o.dir, r, t);
  printf("\n");
  return 0;
}
