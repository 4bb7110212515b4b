/* SPDX-License-Identifier: MIT */
/*
 * Internal contract between store.c and the engines. Every engine's scan handle begins with
 * cvgi_scan_base so that store.c can dispatch on it.
 */
#ifndef CONVERGE_STORE_INT_H
#define CONVERGE_STORE_INT_H

#include "converge/store.h"

typedef struct cvgi_scan_base {
  const cvg_store_ops *ops; /* the engine that opened the scan */
} cvgi_scan_base;

extern const cvg_store_ops cvgi_sqlite_ops;
extern const cvg_store_ops cvgi_postgres_ops;

/* Appends name as a double-quoted SQL identifier (embedded quotes doubled). */
int cvgi_quote_ident(cvg_buf *b, const char *name);
/* Does the row (found, as looked up now) still hold what the mutation expects? If not, why says
 * what changed. The condition of every engine's conditional writes. */
int cvgi_mutation_matches(const cvg_mutation *m, int found, const cvg_scan_row *row, char *why,
                          size_t why_size);
/* Appends a NUL-terminated string (without its NUL). */
int cvgi_append_str(cvg_buf *b, const char *s);

#endif
