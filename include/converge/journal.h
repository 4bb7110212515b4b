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

#include "converge/catalog.h" /* CVG_JOURNAL_KEY_BYTES_MIN/MAX */
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
  CVG_J_RUN,            /* a repair run with work to do: its safety-limit counts, and whether it
                           started, was refused or had its limits overridden */
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

/* How a journal is opened. Only a file that holds converge's journal table (with its columns)
 * is opened: any other database gets CVG_ENOTDB "not a converge journal" and is left as it was. */
typedef enum cvg_journal_mode {
  CVG_JOURNAL_READ = 0, /* read-only: nothing in or beside the file is created or changed; works
                           on a read-only file system and a full disk */
  CVG_JOURNAL_WRITE,    /* append to an existing journal */
  CVG_JOURNAL_CREATE    /* append, first creating the journal in a new or empty file */
} cvg_journal_mode;

/*
 * Trust. A journal opened for appending (WRITE, CREATE) is verified before the open returns: the
 * chain from the head saved outside the journal at the end of the last run (head_path; the
 * whole chain when none is saved) to its end must verify, and the journal must not have fewer
 * records than that head counted. Every group of appends first verifies what others appended
 * since; nothing is appended after a record that does not verify. Records a writer reads with
 * cvg_journal_scan are checked too (content against hash, and the next record's link to it),
 * so a revert, resume or approval never acts on an edited record. Failures are CVG_ETAMPER,
 * naming the record. Closing a writer saves its verified head in head_path.
 */
typedef struct cvg_journal_opts {
  cvg_journal_mode mode;
  const char *head_path;    /* BORROWED; SQLite file that keeps the verified head (seq, hash)
                            outside the journal - the catalog's state file; NULL: none */
  const unsigned char *key; /* BORROWED; the HMAC-SHA256 key (journal.key_file), or NULL for a
                               plain SHA-256 chain. A journal is created keyed or not and stays
                               so; verifying or appending with the other kind is refused. */
  size_t key_len;
  int64_t scrub_records; /* records below the saved head a writer re-verifies at open, from a
                            cursor kept beside the head (0: CVG_JOURNAL_SCRUB_RECORDS) */
} cvg_journal_opts;

/* The scrub's default slice: an edit below the saved head is refused within
 * ceil(records / CVG_JOURNAL_SCRUB_RECORDS) writer opens. */
#define CVG_JOURNAL_SCRUB_RECORDS 8192

/* Opens the journal at path. OWNED: close with cvg_journal_close. */
int cvg_journal_open_opts(cvg_journal **out, const char *path, const cvg_journal_opts *opts,
                          cvg_error *err);
/* The same with mode only (no saved head: a writer verifies the whole chain). */
int cvg_journal_open(cvg_journal **out, const char *path, cvg_journal_mode mode, cvg_error *err);

/* The head this handle knows: for a writer the verified one. hash gets 32 bytes. */
void cvg_journal_head(const cvg_journal *j, int64_t *seq, unsigned char hash[32]);

/* Saves a writer's verified head in its head_path (done by cvg_journal_close too); a saved head
 * only moves forward. */
int cvg_journal_save_head(cvg_journal *j, cvg_error *err);

/*
 * The settled mark of a dataset, kept beside the head (head_path): every mutation of the
 * dataset journaled at or before it has an outcome, or belongs to a decision waiting for
 * approval. Resumption reads only the records after it, so a run's cost follows the work left,
 * not the journal's history. A lost or wrong mark costs only time: 0 means "read everything".
 */
int cvg_journal_settled_get(const cvg_journal *j, const char *dataset, int64_t *seq);
int cvg_journal_settled_set(cvg_journal *j, const char *dataset, int64_t seq, cvg_error *err);

/* The head saved for journal_path in head_path, read-only: *seq 0 when none was saved. */
int cvg_journal_saved_head(const char *head_path, const char *journal_path, int64_t *seq,
                           unsigned char hash[32], cvg_error *err);
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

/* 1 if the journal was created with an HMAC key (its chain is HMAC-SHA256), else 0. */
int cvg_journal_keyed(const cvg_journal *j);

/* Verification: walks the whole chain. *records gets the number checked. On the first record
 * that does not match, returns CVG_ECORRUPT with err naming it (seq and what is wrong). */
int cvg_journal_verify(cvg_journal *j, int64_t *records, cvg_error *err);

/* Reads records in order with seq > after, filtered (NULL/0: any) by dataset, key, since (time)
 * and kind (-1: any). cb gets each; a non-zero return stops the walk. */
typedef int (*cvg_journal_cb)(void *ctx, const cvg_jrecord *r);
int cvg_journal_scan(cvg_journal *j, int64_t after, const char *dataset, const unsigned char *key,
                     size_t key_len, double since, int kind, cvg_journal_cb cb, void *ctx,
                     cvg_error *err);

/* The seq of the newest record of kind for (dataset, key), through the key index, or 0: where a
 * scan must start to see it. Unauthenticated: only the scan that follows reads the record (and
 * a record edited to move this answer lies inside that scan). */
int cvg_journal_newest(cvg_journal *j, const char *dataset, const unsigned char *key,
                       size_t key_len, int kind, int64_t *seq, cvg_error *err);

/* Where a scan of a dataset's run records must start to see every run at or after since and
 * the newest run before it that was not refused: *seq is that record's seq (0 when the dataset
 * has no run record). Read through an index of run records, so its cost follows the runs, not
 * the journal's history. */
int cvg_journal_runs_from(cvg_journal *j, const char *dataset, double since, int64_t *seq,
                          cvg_error *err);

#ifdef __cplusplus
}
#endif
#endif
