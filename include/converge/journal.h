/* SPDX-License-Identifier: MIT */
/*
 * The repair journal: an append-only, hash-chained log of every divergence seen, every decision
 * taken, every planned mutation with its before-image, every outcome, revert and approval.
 * lib/repair/journal.c documents the record format; docs/audit.md is the user's page.
 *
 * Each record carries the SHA-256 of the previous record, and its own hash covers its sequence
 * number, that previous hash, its kind, time, dataset, key and body, so changing, deleting,
 * inserting or reordering any record breaks the chain at a record `converge audit verify` names.
 *
 * Threading: a cvg_journal is used by one thread at a time.
 */
#ifndef CONVERGE_JOURNAL_H
#define CONVERGE_JOURNAL_H

#include "converge/encode.h"
#include "converge/status.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CVG_JOURNAL_BODY_MAX (1u << 20) /* largest record body (JSON text) */
#define CVG_JOURNAL_KEY_MAX 4096        /* largest encoded key */

/* Record kinds. */
typedef enum cvg_jkind {
  CVG_J_DIVERGENCE = 0, /* a divergence seen: key, class, each replica's version */
  CVG_J_DECISION,       /* a decision: policy, versions compared, winner, rationale */
  CVG_J_MUTATION,       /* a planned write on one replica, with the row's before-image */
  CVG_J_OUTCOME,        /* what happened to a mutation: applied, skipped (row changed), failed */
  CVG_J_REVERT,         /* a revert of a decision's mutations */
  CVG_J_APPROVAL,       /* a person approved or rejected a manual decision */
  CVG_J__COUNT
} cvg_jkind;

extern const char *const cvg_jkind_names[]; /* "divergence", "decision", ... */

typedef struct cvg_jrecord {
  int64_t seq; /* 1, 2, ... */
  cvg_jkind kind;
  double at; /* seconds since the epoch */
  char dataset[128];
  unsigned char key[CVG_JOURNAL_KEY_MAX]; /* encoded key tuple; key_len 0 for none */
  size_t key_len;
  char *body; /* JSON object text; OWNED by the reader or BORROWED when appending */
  size_t body_len;
  unsigned char prev[32]; /* SHA-256 of the previous record (zeros for the first) */
  unsigned char hash[32]; /* SHA-256 of this record */
} cvg_jrecord;

typedef struct cvg_journal cvg_journal;

/* Opens (creating if asked) the journal at path. */
int cvg_journal_open(cvg_journal **out, const char *path, int create, cvg_error *err);
void cvg_journal_close(cvg_journal *j);

/* Begins a group of appends that become durable together at cvg_journal_commit (one fsync).
 * Appends outside a group are committed one by one. */
int cvg_journal_begin(cvg_journal *j, cvg_error *err);
int cvg_journal_commit(cvg_journal *j, cvg_error *err);
void cvg_journal_rollback(cvg_journal *j);

/* Appends a record: r->kind, at, dataset, key, body are read; seq, prev and hash are filled in.
 * body must be a JSON object (it is stored as given; write it with sorted keys). */
int cvg_journal_append(cvg_journal *j, cvg_jrecord *r, cvg_error *err);

/* The hash of a record from its fields (seq, prev, kind, at, dataset, key, body). */
void cvg_journal_hash(const cvg_jrecord *r, unsigned char out[32]);

/* Verification: walks the whole chain. *records gets the number checked. On the first record
 * that does not match, returns CVG_ECORRUPT with err naming it (seq and what is wrong). */
int cvg_journal_verify(cvg_journal *j, int64_t *records, cvg_error *err);

/* Reads records in order with seq > after, filtered (NULL/0: any) by dataset, key, since (time)
 * and kind (-1: any). cb gets each; a non-zero return stops the walk. */
typedef int (*cvg_journal_cb)(void *ctx, const cvg_jrecord *r);
int cvg_journal_scan(cvg_journal *j, int64_t after, const char *dataset, const unsigned char *key,
                     size_t key_len, double since, int kind, cvg_journal_cb cb, void *ctx,
                     cvg_error *err);

#ifdef __cplusplus
}
#endif
#endif
