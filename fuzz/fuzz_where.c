/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the --where check (lib/store/sqlwhere.c) on any text, in every dialect. It
 * must never crash or read out of bounds, and - with SQLite's own parser as the oracle - a text
 * it accepts as one expression must be one: "SELECT (" text ") AS alias FROM t" must then either
 * fail to compile or give exactly one column, named alias. A text that closed the parenthesis
 * early (a UNION, a second column, a FROM of its own) would show there.
 *
 * Input: the first byte picks the dialect (mod 3), the rest is the expression.
 */
#include "../lib/store/sqlwhere.h"

#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sqlite3 *db;

static void oracle(const char *where) {
  if (!db && (sqlite3_open(":memory:", &db) != SQLITE_OK ||
              sqlite3_exec(db, "CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT, c REAL)", NULL, NULL,
                           NULL) != SQLITE_OK))
    abort();
  size_t n = strlen(where) + 64;
  char *sql = malloc(n);
  if (!sql)
    return;
  snprintf(sql, n, "SELECT (\n%s\n) AS cvg_fuzz_alias FROM t", where);
  sqlite3_stmt *st = NULL;
  const char *tail = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &st, &tail) == SQLITE_OK && st) {
    const char *name = sqlite3_column_name(st, 0);
    if (sqlite3_column_count(st) != 1 || !name || strcmp(name, "cvg_fuzz_alias") != 0 ||
        (tail && *tail))
      abort(); /* accepted as one expression, but it was not */
  }
  sqlite3_finalize(st);
  free(sql);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  cvgi_sql_dialect d = (cvgi_sql_dialect)(data[0] % 3);
  char *s = malloc(size);
  if (!s)
    return 0;
  memcpy(s, data + 1, size - 1);
  s[size - 1] = '\0';
  cvg_error err;
  cvg_error_clear(&err);
  int rc = cvgi_where_check(s, d, "fuzz", &err);
  if (rc != CVG_OK && (rc != CVG_ESQL || !err.msg[0]))
    abort();
  if (rc == CVG_OK && d == CVGI_SQL_SQLITE)
    oracle(s);
  free(s);
  return 0;
}
