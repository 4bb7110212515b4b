/* SPDX-License-Identifier: MIT */
/*
 * The replica interface: every engine is one table of function pointers (cvg_store_ops) and one
 * file in lib/store/. The rest of converge talks to replicas only through the cvg_store_*
 * functions below, so adding an engine touches nothing else.
 *
 * A replica is named by URL:
 *   sqlite:///abs/path.db?table=T     absolute path
 *   sqlite:rel/path.db?table=T        relative to the working directory
 * Path and query values are percent-decoded.
 *
 * A scan yields every row of the table (optionally restricted by a WHERE expression) in the byte
 * order of its canonical key (see encode.h), each as key bytes + fingerprint of the compared
 * columns + encoded version + tombstone flag. Scans are read-only.
 *
 * Threading: a cvg_store and its scans belong to one thread at a time. Open one store per thread
 * to read a replica from several threads.
 */
#ifndef CONVERGE_STORE_H
#define CONVERGE_STORE_H

#include "converge/encode.h"
#include "converge/status.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CVG_URL_MAX 4096 /* longest URL accepted */

/* A parsed replica URL. All strings OWNED by the struct; release with cvg_url_release(). */
typedef struct cvg_url {
  char *scheme; /* "sqlite" */
  char *host;   /* authority part, "" if none */
  char *path;   /* percent-decoded path; absolute when the URL had "//" */
  char *table;  /* value of ?table=, NULL if absent */
} cvg_url;

int cvg_url_parse(cvg_url *out, const char *text, cvg_error *err);
void cvg_url_release(cvg_url *url);
/* The URL with any password (user:PASSWORD@, password=...) shown as ***. OWNED (free()); NULL
 * when out of memory. */
char *cvg_url_redact(const char *url);

/* Storage-class affinity of a declared type, as SQLite defines it. */
typedef enum cvg_affinity {
  CVG_AFF_BLOB = 'B',
  CVG_AFF_TEXT = 'T',
  CVG_AFF_NUMERIC = 'N',
  CVG_AFF_INTEGER = 'I',
  CVG_AFF_REAL = 'R'
} cvg_affinity;

typedef struct cvg_column {
  char *name;            /* OWNED; as declared */
  char *decl_type;       /* OWNED; declared type, "" if none */
  cvg_affinity affinity; /* derived from decl_type */
  int pk;                /* 0 if not in the primary key, else its 1-based position there */
  int binary_collation;  /* 1 if the column sorts by bytes (BINARY); 0 otherwise */
} cvg_column;

typedef struct cvg_table_desc {
  char *table;      /* OWNED; the table's name */
  cvg_column *cols; /* OWNED; n_cols entries in declaration order */
  size_t n_cols;
  size_t n_pk;       /* columns in the primary key (0: none declared) */
  int without_rowid; /* 1 for a WITHOUT ROWID table */
} cvg_table_desc;

void cvg_table_desc_release(cvg_table_desc *d);
/* Index of the column named name (case-insensitive, as SQL), or -1. */
int cvg_table_desc_find(const cvg_table_desc *d, const char *name);

/* What to read. All pointers BORROWED for the life of the scan. */
typedef struct cvg_scan_spec {
  const char *const *key_cols; /* the key, in order; n_key >= 1 */
  size_t n_key;
  const char *const *cmp_cols; /* the compared columns, in fingerprint order; may be 0 */
  size_t n_cmp;
  const char *version_col;   /* NULL: no version */
  const char *tombstone_col; /* NULL: no tombstone */
  const char *vvec_col;      /* NULL: no version vector */
  const char *where;         /* NULL: every row; else an SQL expression over the table */
  /* Incremental scans: when since is set, only rows whose version >= the encoded value since
   * (one encoded value) are read, in no particular order. Needs version_col. */
  const unsigned char *since;
  size_t since_len;
  /* > 0: real values of the compared columns are rounded to this many significant digits
   * before they are fingerprinted (cvg_round_real), so that float noise between engines (a
   * PostgreSQL real against a SQLite REAL, 0.1 + 0.2 against 0.3) does not count as drift. */
  int real_digits;
  /* > 0: text values of the compared columns that are ISO timestamps in UTC are compared as
   * YYYY-MM-DD HH:MM:SS with time_digits - 1 fractional digits (cvg_norm_timestamp): the same
   * instant stored with other precision or notation on another engine is then equal. */
  int time_digits;
} cvg_scan_spec;

/* One scanned row. Pointers BORROWED until the next cvg_scan_next() or cvg_scan_close(). */
typedef struct cvg_scan_row {
  const unsigned char *key; /* encoded key tuple */
  size_t key_len;
  cvg_fp fp;                    /* fingerprint of the encoded compared columns */
  const unsigned char *version; /* encoded version value; version_len 0 when no version column */
  size_t version_len;
  const unsigned char *vvec; /* version vector text as stored; vvec_len 0 if none */
  size_t vvec_len;
  int tombstone; /* 1 if the tombstone column marks the row deleted */
} cvg_scan_row;

/* A conditional write (repair). It is applied only if the row still is as the decision saw it:
 * absent, or present with that tombstone state, version and fingerprint of the compared
 * columns. Otherwise it is skipped: a write that arrived meanwhile is never overwritten. */
typedef enum cvg_mut_op { CVG_MUT_UPSERT = 0, CVG_MUT_DELETE } cvg_mut_op;
typedef enum cvg_mut_result {
  CVG_MUT_PENDING = 0,
  CVG_MUT_APPLIED,
  CVG_MUT_SKIPPED,
  CVG_MUT_FAILED
} cvg_mut_result;

typedef struct cvg_mutation {
  const unsigned char *key; /* encoded key */
  size_t key_len;
  cvg_mut_op op;
  int expect_present;                  /* 0: the row must be absent; 1: present as below */
  int expect_tombstone;                /* the tombstone state it must have */
  const unsigned char *expect_version; /* encoded version it must have (len 0: not checked) */
  size_t expect_version_len;
  cvg_fp expect_fp;        /* fingerprint of the compared columns it must have */
  const char *const *cols; /* upsert: the columns written */
  size_t n_cols;
  const unsigned char *values; /* upsert: their values, an encoded tuple in cols order */
  size_t values_len;
  cvg_mut_result result; /* OUT */
  char reason[200];      /* OUT: why skipped or failed */
} cvg_mutation;

typedef struct cvg_store cvg_store;
typedef struct cvg_scan cvg_scan;

#define CVG_STORE_READONLY 0x1u /* never write: diffing and probes */
/* SQLite: keep the file mapped (and its pages mapped in) between incremental scans, so that
 * re-reading changed rows costs memory accesses instead of page faults. The file's pages then
 * count in the process's resident memory (as shared page cache, not private memory). */
#define CVG_STORE_KEEP_MAPPED 0x2u

/* The engine's own view of replication into or out of a replica. Positions are LSNs of the
 * upstream's WAL (PostgreSQL: 64 bits, "X/Y" as hi/lo), comparable with that upstream's current
 * LSN only. */
typedef struct cvg_native_view {
  char role[16]; /* "subscriber", "standby", "sender"; "none" (or "" after a failed read) */
  double lag;    /* seconds, when known */
  int known;     /* lag is known */
  int up;        /* 0 when the engine says replication is stopped (a disabled subscription, no
                     apply worker, no WAL receiver) */
  uint64_t lsn;  /* standby: WAL replayed; subscriber: latest_end_lsn, the publisher's WAL its
                     apply worker has reported done; sender (a primary): its current WAL LSN */
  int lsn_known;
  uint64_t recv_lsn; /* standby: WAL received (pg_last_wal_receive_lsn); subscriber: received_lsn -
                        what arrives, applied or not: a delayed apply is not a stop */
  int recv_known;
  uint64_t sysid;    /* standby or primary: the cluster's system identifier (a physical standby
                     shares its primary's); 0 unknown */
  char name[64];     /* subscriber: its subscription's name (the publisher's walsender shows it as
                     application_name) */
  char senders[256]; /* sender: application_name of each walsender, comma-separated */
  char publications[128]; /* subscriber: its subscription's publications, comma-separated */
  int64_t apply_errors;   /* subscriber: pg_stat_subscription_stats.apply_error_count */
  int apply_errors_known;
} cvg_native_view;

typedef struct cvg_store_ops {
  const char *scheme; /* URL scheme this engine serves */
  int (*open)(cvg_store **out, const cvg_url *url, unsigned flags, cvg_error *err);
  void (*close)(cvg_store *st);
  int (*describe)(cvg_store *st, cvg_table_desc *out, cvg_error *err);
  int (*scan_open)(cvg_store *st, const cvg_scan_spec *spec, cvg_scan **out, cvg_error *err);
  int (*scan_next)(cvg_scan *sc, cvg_scan_row *row, cvg_error *err);
  void (*scan_close)(cvg_scan *sc);
  int (*fetch)(cvg_store *st, const cvg_scan_spec *spec, const unsigned char *key, size_t key_len,
               const char *const *cols, size_t n_cols, cvg_buf *out, int *found, cvg_error *err);
  /* The rest may be NULL when an engine lacks them (see the cvg_store_* wrappers). */
  int (*lookup)(cvg_store *st, const cvg_scan_spec *spec, const unsigned char *key, size_t key_len,
                cvg_scan_row *row, int *found, cvg_error *err);
  int (*heartbeat_write)(cvg_store *st, const char *table, const char *source, int64_t seq,
                         double ts, int create, cvg_error *err);
  int (*heartbeat_read)(cvg_store *st, const char *table, const char *source, int64_t *seq,
                        double *ts, int *found, cvg_error *err);
  int (*canary_write)(cvg_store *st, const char *table, const char *source, const char *token,
                      double ts, int create, cvg_error *err);
  int (*canary_seen)(cvg_store *st, const char *table, const char *token, int *found,
                     cvg_error *err);
  int (*canary_purge)(cvg_store *st, const char *table, const char *source, double before,
                      cvg_error *err);
  int (*scalar)(cvg_store *st, const char *expr, double *out, int *is_null, cvg_error *err);
  int (*has_index)(cvg_store *st, const char *col, int *yes, cvg_error *err);
  int (*apply)(cvg_store *st, const cvg_scan_spec *spec, cvg_mutation *m, size_t n, cvg_error *err);
  int (*read_txn)(cvg_store *st, int begin, cvg_error *err);
  /* The engine's own view of replication into this replica (PostgreSQL: a subscription or a
   * standby) or out of it (a primary or publisher with senders), into out (see
   * cvg_native_view). NULL: the engine has none. */
  int (*native_view)(cvg_store *st, cvg_native_view *out, cvg_error *err);
} cvg_store_ops;

/* Every engine's handle begins with this. */
struct cvg_store {
  const cvg_store_ops *ops; /* the engine */
  char *url;                /* OWNED; the URL as given, for messages */
};

/*
 * Opens the replica named by url. OWNED result: close with cvg_store_close(). Errors name the
 * URL and say what to do (no such file, not a database, no such table, ...).
 */
int cvg_store_open(cvg_store **out, const char *url, unsigned flags, cvg_error *err);
/* 1 if an engine serves URLs with this scheme ("sqlite"), else 0. */
int cvg_store_scheme_known(const char *scheme);
void cvg_store_close(cvg_store *st);
const char *cvg_store_url(const cvg_store *st);

int cvg_store_describe(cvg_store *st, cvg_table_desc *out, cvg_error *err);
int cvg_scan_open(cvg_store *st, const cvg_scan_spec *spec, cvg_scan **out, cvg_error *err);
/* Returns CVG_OK with a row, CVG_DONE at the end, or an error. */
int cvg_scan_next(cvg_scan *sc, cvg_scan_row *row, cvg_error *err);
void cvg_scan_close(cvg_scan *sc);

/*
 * Reads the columns cols of the row whose encoded key is key, appending their encoded tuple to
 * out. *found is 0 (and out unchanged) when no such row exists.
 */
int cvg_store_fetch(cvg_store *st, const cvg_scan_spec *spec, const unsigned char *key,
                    size_t key_len, const char *const *cols, size_t n_cols, cvg_buf *out,
                    int *found, cvg_error *err);

/*
 * The state of one key, as a scan would yield it: *found 0 when no such row. The row's pointers
 * are BORROWED until the next lookup on st. The statement is cached per spec, so looking up many
 * keys with the same spec costs one index probe each; no read transaction stays open between
 * lookups. Version vectors are not returned (vvec is NULL).
 */
int cvg_store_lookup(cvg_store *st, const cvg_scan_spec *spec, const unsigned char *key,
                     size_t key_len, cvg_scan_row *row, int *found, cvg_error *err);

/*
 * converge's own tables, beside the user's table on the same replica and never mixed with its
 * data. Heartbeat table: (source TEXT PRIMARY KEY, seq INTEGER, ts REAL unix seconds); canary
 * table: (token TEXT PRIMARY KEY, source TEXT, ts REAL). Writes need a store opened without
 * CVG_STORE_READONLY; create 1 creates the table when absent. Reads fail with CVG_ENOTABLE when
 * the table does not exist (yet) on that replica.
 */
int cvg_store_heartbeat_write(cvg_store *st, const char *table, const char *source, int64_t seq,
                              double ts, int create, cvg_error *err);
int cvg_store_heartbeat_read(cvg_store *st, const char *table, const char *source, int64_t *seq,
                             double *ts, int *found, cvg_error *err);
int cvg_store_canary_write(cvg_store *st, const char *table, const char *source, const char *token,
                           double ts, int create, cvg_error *err);
int cvg_store_canary_seen(cvg_store *st, const char *table, const char *token, int *found,
                          cvg_error *err);
/* Deletes source's canaries written before the time before. */
int cvg_store_canary_purge(cvg_store *st, const char *table, const char *source, double before,
                           cvg_error *err);
/* Evaluates one SQL aggregate (sum(balance)) over the table; *is_null when it is NULL. */
int cvg_store_scalar(cvg_store *st, const char *expr, double *out, int *is_null, cvg_error *err);

/* *yes is 1 when an index of the table starts with column col (so "col >= ?" needs no scan of
 * the whole table). */
int cvg_store_has_index(cvg_store *st, const char *col, int *yes, cvg_error *err);

/*
 * Applies n conditional mutations in one transaction: each is checked against the row as it is
 * inside that transaction (spec names the key, compared, version and tombstone columns, as the
 * diff that found the divergence read them) and applied, skipped or failed; m[i].result says
 * which. Returns an error only when the transaction itself fails (then nothing was applied and
 * every result is CVG_MUT_FAILED). Needs a store opened without CVG_STORE_READONLY.
 */
int cvg_store_apply(cvg_store *st, const cvg_scan_spec *spec, cvg_mutation *m, size_t n,
                    cvg_error *err);

/* Begins (begin 1) or ends (0) a read transaction: the fetches and lookups between see one
 * snapshot and pay for locking once. No-op on engines without it. End it before an apply. */
int cvg_store_read_txn(cvg_store *st, int begin, cvg_error *err);
/* The engine's own replication view; role "none" when the engine has none. */
int cvg_store_native_view(cvg_store *st, cvg_native_view *out, cvg_error *err);

/* Is a tombstone column value "deleted"? NULL, 0, 0.0, '', '0', 'false', 'f', 'no', 'n' (any
 * case) and an empty blob mean live; everything else means deleted. */
int cvg_tombstone_truthy(const cvg_value *v);

#ifdef __cplusplus
}
#endif
#endif
