/* SPDX-License-Identifier: MIT */
/* The --where check (lib/store/sqlwhere.c): one expression as each engine's lexer reads it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../lib/store/sqlwhere.h"

#include <stdlib.h>
#include <string.h>

typedef struct where_case {
  const char *where;
  int ok;          /* accepted? */
  const char *why; /* part of the message when refused */
} where_case;

static void run_cases(const where_case *c, size_t n, cvgi_sql_dialect d) {
  for (size_t i = 0; i < n; i++) {
    cvg_error err;
    cvg_error_clear(&err);
    int rc = cvgi_where_check(c[i].where, d, "r1", &err);
    if ((rc == CVG_OK) != c[i].ok || (!c[i].ok && !strstr(err.msg, c[i].why)))
      fail_msg("dialect %d, --where \"%s\": rc %d, message '%s'", (int)d, c[i].where, rc, err.msg);
    if (!c[i].ok) {
      assert_int_equal(rc, CVG_ESQL);
      assert_string_equal(err.input, "r1");
      assert_true(err.hint[0] != '\0');
    }
  }
}

/* What both engines read alike. */
static const where_case common[] = {
    {"id < 10", 1, NULL},
    {"(a OR b) AND (c OR (d))", 1, NULL},
    {"v = ')'", 1, NULL},
    {"v = 'it''s )'", 1, NULL},
    {"\"odd ) name\" = 1", 1, NULL},
    {"\"a\"\"b\" > 0", 1, NULL},
    {"id < 10 -- a note )", 1, NULL},
    {"v = 'a' /* ) */", 1, NULL},
    {"x IN (SELECT 1 UNION SELECT 2)", 1, NULL}, /* a subquery is one expression */
    {"id<10) UNION ALL SELECT * FROM t WHERE (1=1", 0, "closes a parenthesis it did not open"},
    {"1) OR (1", 0, "at column 2"},
    {"(id < 10", 0, "never closed at column 1"},
    {"id < 10; DROP TABLE t", 0, "';' ends the statement at column 8"},
    {"v = 'open", 0, "a string is left open at column 5"},
    {"\"open", 0, "quoted name is left open"},
    {"a /* open", 0, "comment is left open"},
    {"", 0, "it is empty"},
    {"   \n\t", 0, "it is empty"},
    {"-- only a comment", 0, "it is empty"},
    {"a -- )\n) UNION SELECT 1 FROM t WHERE (1", 0, "closes a parenthesis"},
};

static void test_common(void **state) {
  (void)state;
  run_cases(common, sizeof common / sizeof *common, CVGI_SQL_SQLITE);
  run_cases(common, sizeof common / sizeof *common, CVGI_SQL_POSTGRES);
  run_cases(common, sizeof common / sizeof *common, CVGI_SQL_POSTGRES_ESCAPES);
}

/* Where SQLite's lexer differs: names in [] and ``, comments that never nest, a '--' comment that
 * only a LF ends, parameters. */
static void test_sqlite(void **state) {
  (void)state;
  static const where_case c[] = {
      {"[odd ) name] = 1", 1, NULL},
      {"`odd ) name` = 1", 1, NULL},
      {"v = 'a\\' OR v = ')'", 1, NULL},                     /* no backslash escapes: two strings */
      {"a$b = 1", 1, NULL},                                  /* $ inside a name */
      {"a /* /* */ = 1", 1, NULL},                           /* never nested: one comment */
      {"a /* /* */ */ = 1", 1, NULL},                        /* ... then '*' '/' operators */
      {"a -- x\r) UNION SELECT 1 FROM t WHERE (1", 1, NULL}, /* CR does not end it */
      {"[open", 0, "quoted name is left open"},
      {"id = ?", 0, "bound parameter"},
      {"id = ?1", 0, "bound parameter"},
      {"id = :v", 0, "bound parameter"},
      {"id = @v", 0, "bound parameter"},
      {"id = $v", 0, "bound parameter"},
      {"v = 'a\\') UNION SELECT 1 FROM t WHERE ('", 0, "closes a parenthesis"},
      {"a /* /* */ ) UNION SELECT 1 FROM t WHERE (1", 0, "closes a parenthesis"},
  };
  run_cases(c, sizeof c / sizeof *c, CVGI_SQL_SQLITE);
}

/* Where PostgreSQL's lexer differs: E'' escapes, standard_conforming_strings off, dollar quotes,
 * nested comments, '--' ended by CR, $1 parameters; [ and ` are plain bytes. */
static void test_postgres(void **state) {
  (void)state;
  static const where_case on[] = {
      {"v = E'\\')'", 1, NULL},
      {"v = e'a\\\\' AND w = ')'", 1, NULL},
      {"v = 'a\\' AND w = ')'", 1, NULL}, /* standard strings: '\' is a plain byte */
      {"v = 'a\\'' OR w = ')'", 0, "closes a parenthesis"}, /* '' stays inside */
      {"v = $$ ) $$", 1, NULL},
      {"v = $tag$ $$ ) $tag$", 1, NULL},
      {"a$b = 1", 1, NULL},
      {"a /* /* ) */ ) */ = 1", 1, NULL},
      {"x ? 'k'", 1, NULL}, /* a jsonb operator */
      {"j @> '{}'", 1, NULL},
      {"a::int > 0", 1, NULL},
      {"v = E'\\') UNION SELECT 1 FROM t WHERE (true", 0, "string is left open"}, /* \' escaped */
      {"v = 'a\\') UNION SELECT 1 FROM t WHERE ('", 0, "closes a parenthesis"},
      {"a -- x\r) UNION SELECT 1 FROM t WHERE (1", 0, "closes a parenthesis"},
      {"a /* /* */ )", 0, "comment is left open"}, /* nested: still open */
      {"v = $q$ open", 0, "dollar-quoted string is left open"},
      {"id = $1", 0, "bound parameter"},
  };
  run_cases(on, sizeof on / sizeof *on, CVGI_SQL_POSTGRES);
  static const where_case off[] = {
      {"v = 'a\\'' OR w = ')'", 1, NULL}, /* \' stays inside, then ' closes */
      {"v = 'x\\\\' OR w = ')'", 1, NULL},
      {"v = 'a\\' ) UNION SELECT 1 FROM t WHERE (true", 0, "string is left open"},
  };
  run_cases(off, sizeof off / sizeof *off, CVGI_SQL_POSTGRES_ESCAPES);
}

static void test_long(void **state) {
  (void)state;
  size_t n = CVGI_WHERE_MAX + 1;
  char *w = malloc(n + 1);
  assert_non_null(w);
  memset(w, '(', n / 2);
  memset(w + n / 2, ')', n - n / 2);
  w[n] = '\0';
  cvg_error err;
  cvg_error_clear(&err);
  assert_int_equal(cvgi_where_check(w, CVGI_SQL_SQLITE, "r1", &err), CVG_ESQL);
  assert_non_null(strstr(err.msg, "the limit is 16384"));
  free(w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_common),
      cmocka_unit_test(test_sqlite),
      cmocka_unit_test(test_postgres),
      cmocka_unit_test(test_long),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
