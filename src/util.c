/* SPDX-License-Identifier: MIT */
/*
 * Option parsing helpers and value printing shared by the subcommands.
 */
#include "cli.h"
#include "converge/catalog.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void print_error(const cvg_error *err) {
  char buf[CVG_ERROR_MSG_MAX + CVG_ERROR_INPUT_MAX + CVG_ERROR_MSG_MAX + 64];
  fprintf(stderr, "%s\n", cvg_error_format(err, buf, sizeof buf));
}

struct cvg_catalog *load_catalog(const char *path) {
  cvg_catalog *cat = NULL;
  cvg_error err;
  cvg_error_clear(&err);
  if (cvg_catalog_load(&cat, path, &err) != CVG_OK) {
    print_error(&err);
    return NULL;
  }
  return cat;
}

int usage_error(const char *cmd, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "converge %s: ", cmd);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n  see 'converge help %s'\n", cmd);
  return EXIT_TROUBLE;
}

int list_parse(str_list *l, const char *text) {
  const char *p = text;
  for (;;) {
    const char *comma = strchr(p, ',');
    const char *end = comma ? comma : p + strlen(p);
    while (p < end && (*p == ' ' || *p == '\t'))
      p++;
    const char *e = end;
    while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
      e--;
    if (e == p)
      return -1;
    char **items = realloc(l->items, (l->n + 1) * sizeof *items);
    if (!items)
      return -1;
    l->items = items;
    size_t n = (size_t)(e - p);
    char *s = malloc(n + 1);
    if (!s)
      return -1;
    memcpy(s, p, n);
    s[n] = '\0';
    l->items[l->n++] = s;
    if (!comma)
      return 0;
    p = comma + 1;
  }
}

void list_free(str_list *l) {
  for (size_t i = 0; i < l->n; i++)
    free(l->items[i]);
  free(l->items);
  l->items = NULL;
  l->n = 0;
}

int parse_u64(const char *s, uint64_t *out) {
  if (!s || !*s || *s == '-' || *s == '+')
    return -1;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end)
    return -1;
  *out = v;
  return 0;
}

int parse_double(const char *s, double *out) {
  if (!s || !*s)
    return -1;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || *end)
    return -1;
  *out = v;
  return 0;
}

void print_value(FILE *f, const cvg_value *v, size_t max_chars) {
  switch (v->type) {
  case CVG_NULL:
    fputs("NULL", f);
    return;
  case CVG_INTEGER:
    fprintf(f, "%lld", (long long)v->u.i);
    return;
  case CVG_REAL:
    fprintf(f, "%.17g", v->u.r);
    return;
  case CVG_TEXT: {
    fputc('\'', f);
    size_t n = v->u.s.n < max_chars ? v->u.s.n : max_chars;
    for (size_t i = 0; i < n; i++) {
      unsigned char c = v->u.s.p[i];
      if (c == '\'')
        fputs("''", f);
      else if (c < 0x20 || c == 0x7F)
        fprintf(f, "\\x%02x", c);
      else
        fputc(c, f);
    }
    fputc('\'', f);
    if (n < v->u.s.n)
      fputs("...", f);
    return;
  }
  case CVG_BLOB: {
    fputs("x'", f);
    size_t n = v->u.s.n < max_chars / 2 ? v->u.s.n : max_chars / 2;
    for (size_t i = 0; i < n; i++)
      fprintf(f, "%02x", v->u.s.p[i]);
    fputc('\'', f);
    if (n < v->u.s.n)
      fputs("...", f);
    return;
  }
  }
}

const char *option_name(const struct option *opts, int val) {
  static _Thread_local char buf[64];
  for (const struct option *o = opts; o->name; o++)
    if (o->val == val) {
      snprintf(buf, sizeof buf, "--%s", o->name);
      return buf;
    }
  return "the option";
}
