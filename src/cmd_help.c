/* SPDX-License-Identifier: MIT */
/*
 * converge help [CMD]: the overview, or a command's manual page. The pages are the files in
 * docs/ (docs/<cmd>.md), compiled in by the Makefile (build/help_pages.c), so `converge help
 * diff` and docs/diff.md can never disagree.
 */
#include "cli.h"

#include <string.h>

struct help_page {
  const char *name; /* command */
  const char *text; /* the page */
};
extern const struct help_page cvg_help_pages[];
extern const size_t cvg_help_n_pages;

static const char overview[] =
    "usage: converge <command> [options]\n"
    "\n"
    "converge finds where replicas of a table have drifted apart and says how.\n"
    "\n"
    "commands:\n"
    "  diff URL URL [URL...]   compare two or more replicas of a table, row by row\n"
    "  gen --out DIR           write replicas with injected divergences and their ground truth\n"
    "  watch -c converge.yaml  monitor datasets continuously; Prometheus metrics and a JSON API\n"
    "  alerts -c converge.yaml list current alerts (pending, firing, resolved)\n"
    "  annotate -c converge.yaml --kind K --text T\n"
    "                          register a change event (deploy, migration, config)\n"
    "  repair -c converge.yaml --dataset D --dry-run|--execute\n"
    "                          repair divergent rows per the dataset's policy, journaled\n"
    "  audit verify|show|export -c converge.yaml\n"
    "                          check and read the repair journal's hash chain\n"
    "  chaos -c SCENARIO.yaml  inject replication faults into a live lab; prove detection and\n"
    "                          repair (converge chaos ledger: the history of verdicts)\n"
    "  check-config FILE       validate a catalog (converge.yaml) and explain it\n"
    "  help [COMMAND]          show this overview or a command's manual\n"
    "  version                 print the version\n"
    "\n"
    "replica URLs: sqlite:///abs/path.db?table=T  or  sqlite:rel/path.db?table=T\n"
    "exit status of diff: 0 identical, 1 differences found, 2 trouble\n"
    "\n"
    "'converge help diff' shows the manual of diff; likewise gen, watch, alerts,\n"
    "annotate, repair, audit, chaos, check-config.\n"
    "'converge help dashboard': the browser view every converge watch serves at /dashboard/.\n"
    "The catalog format is described in docs/catalog.md.\n";

int print_help(FILE *f, const char *cmd) {
  if (!cmd) {
    fputs(overview, f);
    return 0;
  }
  for (size_t i = 0; i < cvg_help_n_pages; i++)
    if (strcmp(cvg_help_pages[i].name, cmd) == 0) {
      fputs(cvg_help_pages[i].text, f);
      return 0;
    }
  return -1;
}

int cmd_help(int argc, char **argv) {
  if (argc < 2) {
    print_help(stdout, NULL);
    return 0;
  }
  if (print_help(stdout, argv[1]) != 0) {
    fprintf(stderr, "converge help: no manual for '%s'\n  see 'converge help' for the commands\n",
            argv[1]);
    return EXIT_TROUBLE;
  }
  return 0;
}
