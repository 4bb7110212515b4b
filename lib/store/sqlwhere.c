/* SPDX-License-Identifier: MIT */
/*
 * The lexical check of a --where expression (sqlwhere.h).
 *
 * A scan puts the user's text inside parentheses: "... WHERE (" text ")". Text whose parentheses
 * go below zero, such as "id<10) UNION ALL SELECT * FROM t WHERE (1=1", would close the scan's
 * own parenthesis and append what it likes - balanced overall, yet not one expression. The only
 * way to know which ')' is live is to lex the text as the engine does: strings, quoted names and
 * comments hide parentheses, and each engine draws their bounds its own way. So this file follows
 * each lexer's rules exactly where they differ:
 *
 *   SQLite (tokenize.c)    '...' with '' doubled; "...", [...] and `...` names; -- to LF;
 *                          block comments never nested; ? :a @a $a #a are parameters
 *   PostgreSQL (scan.l)    '...' with '' doubled, and '\' escapes too when
 *                          standard_conforming_strings is off; E'...' always takes '\' escapes;
 *                          "..." names; -- to LF or CR; block comments nested; $tag$...$tag$;
 *                          $1 is a parameter
 *
 * The engine's parser then compiles the whole scan without running it, which decides whether
 * the text is a valid expression; this check decides that it is only one.
 */
#include "sqlwhere.h"

#include <string.h>

typedef struct lexer {
  const char *s;
  size_t n, i;
  cvgi_sql_dialect d;
} lexer;

static int ident_start(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

static int ident_cont(unsigned char c) {
  return ident_start(c) || (c >= '0' && c <= '9') || c == '$';
}

/* Skips a quoted run opened at lx->i by q and closed by q (a doubled q stays inside); with
 * escapes, '\' takes the next byte with it. 0 when it ends inside the run. */
static int skip_quoted(lexer *lx, char q, int escapes) {
  for (lx->i++; lx->i < lx->n; lx->i++) {
    char c = lx->s[lx->i];
    if (escapes && c == '\\') {
      lx->i++;
      continue;
    }
    if (c == q) {
      if (lx->i + 1 < lx->n && lx->s[lx->i + 1] == q) {
        lx->i++;
        continue;
      }
      lx->i++;
      return 1;
    }
  }
  return 0;
}

/* Skips a block comment opened at lx->i; PostgreSQL's nest. 0 when it is left open. */
static int skip_block_comment(lexer *lx) {
  int nest = lx->d != CVGI_SQL_SQLITE, depth = 1;
  for (lx->i += 2; lx->i < lx->n; lx->i++) {
    if (lx->s[lx->i] == '*' && lx->i + 1 < lx->n && lx->s[lx->i + 1] == '/') {
      lx->i++;
      if (--depth == 0) {
        lx->i++;
        return 1;
      }
    } else if (nest && lx->s[lx->i] == '/' && lx->i + 1 < lx->n && lx->s[lx->i + 1] == '*') {
      lx->i++;
      depth++;
    }
  }
  return 0;
}

/* The length of a PostgreSQL dollar-quote delimiter ($$ or $tag$) at lx->i, or 0. */
static size_t dollar_delim(const lexer *lx) {
  size_t j = lx->i + 1;
  if (j < lx->n && ident_start((unsigned char)lx->s[j]))
    while (j < lx->n && lx->s[j] != '$' && ident_cont((unsigned char)lx->s[j]))
      j++;
  return j < lx->n && lx->s[j] == '$' ? j + 1 - lx->i : 0;
}

/* Skips a dollar-quoted string whose delimiter of length dl starts at lx->i. */
static int skip_dollar(lexer *lx, size_t dl) {
  const char *delim = lx->s + lx->i;
  for (size_t j = lx->i + dl; j + dl <= lx->n; j++) {
    if (memcmp(lx->s + j, delim, dl) == 0) {
      lx->i = j + dl;
      return 1;
    }
  }
  return 0;
}

static int refuse(const char *where, const char *input, cvg_error *err, const char *why,
                  size_t col) {
  if (col)
    cvg_error_set(err, CVG_ESQL, input, "--where '%.200s' is not one expression: %s at column %zu",
                  where, why, col);
  else
    cvg_error_set(err, CVG_ESQL, input, "--where '%.200s' is not one expression: %s", where, why);
  cvg_error_hint(err, "give one boolean SQL expression over the table's columns, e.g. "
                      "\"updated_at > 1700000000\"; quote text as 'like this'");
  return CVG_ESQL;
}

/* One token at lx->i that is not a plain byte: a string, a name, a comment, a parameter. Returns
 * 1 when it consumed something, 0 when the byte at lx->i is ordinary, -1 (with why) when it is
 * refused. */
static int skip_token(lexer *lx, const char **why) {
  const char *s = lx->s;
  size_t i = lx->i;
  unsigned char c = (unsigned char)s[i], c1 = i + 1 < lx->n ? (unsigned char)s[i + 1] : 0;
  int sqlite = lx->d == CVGI_SQL_SQLITE;
  if (c == '\'') {
    *why = "a string is left open";
    return skip_quoted(lx, '\'', lx->d == CVGI_SQL_POSTGRES_ESCAPES) ? 1 : -1;
  }
  if (c == '"' || (sqlite && c == '`')) {
    *why = "a quoted name is left open";
    return skip_quoted(lx, (char)c, 0) ? 1 : -1;
  }
  if (sqlite && c == '[') {
    const char *close = memchr(s + i, ']', lx->n - i);
    *why = "a quoted name is left open";
    if (!close)
      return -1;
    lx->i = (size_t)(close - s) + 1;
    return 1;
  }
  if (c == '-' && c1 == '-') {
    while (lx->i < lx->n && s[lx->i] != '\n' && (sqlite || s[lx->i] != '\r'))
      lx->i++;
    return 1;
  }
  if (c == '/' && c1 == '*') {
    *why = "a comment is left open";
    return skip_block_comment(lx) ? 1 : -1;
  }
  if (ident_start(c)) {
    /* E'...' takes backslash escapes on PostgreSQL whatever the setting */
    if (!sqlite && (c == 'e' || c == 'E') && c1 == '\'') {
      lx->i++;
      *why = "a string is left open";
      return skip_quoted(lx, '\'', 1) ? 1 : -1;
    }
    while (lx->i < lx->n && ident_cont((unsigned char)s[lx->i]))
      lx->i++;
    return 1;
  }
  if (c >= '0' && c <= '9') {
    while (lx->i < lx->n && (ident_start((unsigned char)s[lx->i]) ||
                             (s[lx->i] >= '0' && s[lx->i] <= '9') || s[lx->i] == '.'))
      lx->i++;
    return 1;
  }
  if (sqlite && (c == '?' || ((c == ':' || c == '@' || c == '$' || c == '#') &&
                              (ident_cont(c1) || c1 == ':')))) {
    *why = "a bound parameter is not allowed";
    return -1;
  }
  if (!sqlite && c == '$') {
    if (c1 >= '0' && c1 <= '9') {
      *why = "a bound parameter is not allowed";
      return -1;
    }
    size_t dl = dollar_delim(lx);
    if (dl) {
      *why = "a dollar-quoted string is left open";
      return skip_dollar(lx, dl) ? 1 : -1;
    }
  }
  return 0;
}

int cvgi_where_check(const char *where, cvgi_sql_dialect dialect, const char *input,
                     cvg_error *err) {
  size_t n = strlen(where);
  if (n > CVGI_WHERE_MAX) {
    cvg_error_set(err, CVG_ESQL, input, "--where is %zu bytes long; the limit is %d", n,
                  CVGI_WHERE_MAX);
    cvg_error_hint(err, "give one short expression over the table's columns");
    return CVG_ESQL;
  }
  lexer lx = {where, n, 0, dialect};
  long depth = 0;
  size_t open_at = 0; /* where the outermost '(' still open began */
  int any = 0;
  while (lx.i < n) {
    size_t at = lx.i;
    unsigned char c = (unsigned char)where[at];
    const char *why = NULL;
    int t = skip_token(&lx, &why);
    if (t < 0)
      return refuse(where, input, err, why, at + 1);
    if (t > 0) {
      any |= where[at] != '-' && where[at] != '/';
      continue;
    }
    lx.i++;
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v')
      continue;
    any = 1;
    if (c == ';')
      return refuse(where, input, err, "';' ends the statement", at + 1);
    if (c == '(' && depth++ == 0)
      open_at = at + 1;
    if (c == ')' && --depth < 0)
      return refuse(where, input, err, "this ')' closes a parenthesis it did not open", at + 1);
  }
  if (depth > 0)
    return refuse(where, input, err, "the '(' is never closed", open_at);
  if (!any)
    return refuse(where, input, err, "it is empty", 0);
  return CVG_OK;
}
