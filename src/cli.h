/* SPDX-License-Identifier: MIT */
/*
 * Shared pieces of the converge program: the subcommand table, exit codes, error printing and
 * the small parsers every subcommand uses for its options.
 */
#ifndef CONVERGE_CLI_H
#define CONVERGE_CLI_H

#include "converge/encode.h"
#include "converge/status.h"

#include <stdint.h>
#include <stdio.h>

/* Exit codes, as diff(1). */
#define EXIT_SAME 0
#define EXIT_DIFFERENT 1
#define EXIT_TROUBLE 2

int cmd_alerts(int argc, char **argv);
int cmd_annotate(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_chaos(int argc, char **argv);
int cmd_repair(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_gen(int argc, char **argv);
int cmd_help(int argc, char **argv);
int cmd_check_config(int argc, char **argv);
int cmd_watch(int argc, char **argv);

/* Prints the help page of a command to f; returns 0, or -1 if there is no such command. */
int print_help(FILE *f, const char *cmd);

/* Prints err to stderr as "converge: input: message" plus its hint. */
void print_error(const cvg_error *err);
/* Loads the catalog at path; on failure prints the error (file:line:column) and returns NULL.
 * OWNED result: cvg_catalog_free(). */
struct cvg_catalog *load_catalog(const char *path);

/* Prints a usage error for cmd and returns EXIT_TROUBLE. */
struct option;
/* "--name" of the long option whose value is val, for messages (argv[optind - 1] is the value
 * itself when the option and its value are two words); "the option" when none has it. */
const char *option_name(const struct option *opts, int val);
int usage_error(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* A comma-separated list split into an array. OWNED by the struct; release with list_free. */
typedef struct str_list {
  char **items;
  size_t n;
} str_list;

int list_parse(str_list *l, const char *text); /* appends; 0 or -1 on empty item/no memory */
void list_free(str_list *l);

/* Parses a whole non-negative decimal number; 0 on success. */
int parse_u64(const char *s, uint64_t *out);
int parse_double(const char *s, double *out);

/* Writes a value as SQL-ish text: NULL, 42, 1.5, 'text' (quotes doubled, controls escaped),
 * x'00ff'. Truncates long values to max_chars with "...". */
void print_value(FILE *f, const cvg_value *v, size_t max_chars);

#endif
