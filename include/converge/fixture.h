/* SPDX-License-Identifier: MIT */
/*
 * Fixture writer: creates a new SQLite replica file holding one table and fills it quickly, for
 * `converge gen`, tests and benchmarks. The file is written under a temporary name and renamed
 * into place by cvg_fixture_finish(), so a failed or interrupted run never leaves a half-written
 * replica behind.
 *
 * Threading: a cvg_fixture belongs to one thread.
 */
#ifndef CONVERGE_FIXTURE_H
#define CONVERGE_FIXTURE_H

#include "converge/store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cvg_fixture cvg_fixture;

/* Column name, declared type and primary-key position come from schema. An existing file at path
 * is replaced only when finish succeeds. OWNED result: finish or abort it. */
int cvg_fixture_create(cvg_fixture **out, const char *path, const cvg_table_desc *schema,
                       cvg_error *err);
/* Inserts one row: vals holds one value per schema column, in order. */
int cvg_fixture_insert(cvg_fixture *fx, const cvg_value *vals, size_t n_vals, cvg_error *err);
/* Commits, closes and moves the file into place; frees fx whatever happens. */
int cvg_fixture_finish(cvg_fixture *fx, cvg_error *err);
/* Discards everything written; frees fx. Safe on NULL. */
void cvg_fixture_abort(cvg_fixture *fx);

#ifdef __cplusplus
}
#endif
#endif
