/* SPDX-License-Identifier: MIT */
/*
 * converge: the command-line shell around libconverge. Each subcommand lives in its own file
 * (cmd_<name>.c) and uses the public API only; this file dispatches.
 */
#include "cli.h"
#include "converge/version.h"

#include <stdio.h>
#include <string.h>

static const struct {
  const char *name;
  int (*run)(int argc, char **argv);
} commands[] = {
    {"alerts", cmd_alerts},
    {"annotate", cmd_annotate},
    {"audit", cmd_audit},
    {"chaos", cmd_chaos},
    {"check-config", cmd_check_config},
    {"diff", cmd_diff},
    {"gen", cmd_gen},
    {"help", cmd_help},
    {"repair", cmd_repair},
    {"watch", cmd_watch},
};

int main(int argc, char **argv) {
  if (argc < 2) {
    print_help(stderr, NULL);
    return EXIT_TROUBLE;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
    print_help(stdout, NULL);
    return 0;
  }
  if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
    printf("converge %s\n", CVG_VERSION);
    return 0;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (strcmp(commands[i].name, cmd) == 0)
      return commands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "converge: unknown command '%s'\n  see 'converge help' for the commands\n", cmd);
  return EXIT_TROUBLE;
}
