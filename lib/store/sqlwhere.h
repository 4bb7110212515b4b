/* SPDX-License-Identifier: MIT */
/*
 * The check of a --where expression before it is put inside a scan's SQL (sqlwhere.c).
 */
#ifndef CONVERGE_SQLWHERE_H
#define CONVERGE_SQLWHERE_H

#include "converge/status.h"

#include <stddef.h>

typedef enum cvgi_sql_dialect {
  CVGI_SQL_SQLITE,           /* SQLite's lexer */
  CVGI_SQL_POSTGRES,         /* PostgreSQL with standard_conforming_strings on (the default) */
  CVGI_SQL_POSTGRES_ESCAPES, /* PostgreSQL with standard_conforming_strings off: '\' escapes */
} cvgi_sql_dialect;

#define CVGI_WHERE_MAX 16384 /* longest --where accepted, in bytes */

/* Is where exactly one expression as the engine's lexer reads it, so that "(" where ")" cannot
 * close the scan's parentheses early and add a clause, a UNION or a second statement? Refused,
 * with CVG_ESQL and the byte column in the message: a ')' that closes what it did not open, a
 * '(' left open, ';', a string, quoted name or comment left open, a bound parameter, an empty
 * text, and text longer than CVGI_WHERE_MAX. Where this lexer could read a construct otherwise
 * than the engine (a nested comment on SQLite, a backslash in a PostgreSQL string), it refuses.
 * Whether the expression is valid and boolean is for the engine's parser, which the caller asks
 * next (it prepares the scan without running it). input names the replica for messages. */
int cvgi_where_check(const char *where, cvgi_sql_dialect dialect, const char *input,
                     cvg_error *err);

#endif
