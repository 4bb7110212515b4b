/* SPDX-License-Identifier: MIT */
/*
 * The journal pipeline (internal to lib/repair): a thread that hashes and appends a group's
 * records while the repair goes on planning the next ones, so that the journal's cost on a
 * 2-core machine overlaps the repair's own work instead of adding to it.
 *
 * The rule that makes it safe is unchanged: nothing is written to a replica before the group
 * that journals it is durable. jpipe_commit waits for every record handed over, then commits;
 * an append that failed in the thread fails the commit, which rolls the group back. Sequence
 * numbers are handed out at jpipe_append, as the journal will give them (one writer holds the
 * journal's write lock for the group); the thread checks that it is so.
 *
 * Between jpipe_begin and jpipe_commit/jpipe_rollback the journal belongs to the thread: the
 * caller must not use it directly. One caller thread at a time (the repair's lock).
 */
#ifndef CONVERGE_JPIPE_H
#define CONVERGE_JPIPE_H

#include "converge/journal.h"

typedef struct jpipe jpipe;

/* Starts the thread for journal jn (BORROWED; it outlives the pipe); up to cap records per
 * group are queued, more are appended by the caller's thread after the queue drains. */
int jpipe_start(jpipe **out, cvg_journal *jn, size_t cap, cvg_error *err);
/* Begins a group (cvg_journal_begin, in the caller's thread). */
int jpipe_begin(jpipe *p, cvg_error *err);
/* Hands a record over; *seq gets the number the journal gives it. The bytes are copied. An
 * error of the thread is reported here as soon as it is known, else at jpipe_commit. */
int jpipe_append(jpipe *p, cvg_jkind kind, const char *dataset, const unsigned char *key,
                 size_t key_len, const char *body, size_t body_len, int64_t *seq, cvg_error *err);
/* Waits until every record is appended, then commits the group (durable on return). */
int jpipe_commit(jpipe *p, cvg_error *err);
/* Waits, then rolls the group back. */
void jpipe_rollback(jpipe *p);
/* Stops the thread (after jpipe_commit or jpipe_rollback) and frees the pipe. NULL is a no-op. */
void jpipe_stop(jpipe *p);

#endif
