/* SPDX-License-Identifier: MIT */
/*
 * The repair journal (SQLite), hash-chained with SHA-256 (OpenSSL libcrypto).
 *
 * Record format. One row per record in the table converge_journal:
 *
 *   seq     INTEGER PRIMARY KEY   1, 2, 3, ... without gaps
 *   at_us   INTEGER               microseconds since the epoch
 *   kind    TEXT                  divergence | decision | mutation | outcome | revert | approval | run
 *   dataset TEXT                  the dataset's name ("" for none)
 *   key     BLOB                  the encoded key tuple (docs/encoding.md), NULL for none
 *   body    TEXT                  a JSON object (written with sorted keys) - the record's content
 *   prev    BLOB(32)              hash of record seq-1 (32 zero bytes for record 1)
 *   hash    BLOB(32)              SHA-256 of:
 *             "converge-journal-v1" NUL
 *             seq as 8 bytes big-endian, prev (32 bytes), kind as 1 byte (its number),
 *             at_us as 8 bytes big-endian (two's complement),
 *             dataset, key and body, each as a 4-byte big-endian length then the bytes.
 *
 * The bodies by kind (keys sorted). A state is {fp, present, tombstone, version}: the
 * fingerprint of the compared columns and the encoded version, both hex. Row values are encoded
 * tuples (docs/encoding.md) in hex, in the order of the batch's columns; `converge audit export`
 * shows them decoded as "before" and "after".
 *   decision    {class, copies: {replica: state}, key, policy, rationale, shard,
 *                status: planned | awaiting_approval, sums (merge with sum rules only: the
 *                values written to those columns, {column: number}), winner}; the first
 *                decision of each batch also carries columns (every column of the table) and spec (key, compared,
 *                version and tombstone columns), which hold for the rest of the batch. The
 *                divergence seen is the decision's class and copies.
 *   mutation    {decision, replica, op: upsert|delete, expect: state (what the row must still
 *                be), target: state (what it becomes), values: hex | null,
 *                before_values: hex | null (the before-image)}
 *   outcome     {outcomes: [{mutation, result: applied|skipped|failed, reason}]} for a batch,
 *                or {mutation, result, reason, resumed: true} for an intent settled after an
 *                interruption
 *   revert      {decision, mutation, result, reason}
 *   approval    {decision, approved: true|false, by, note}
 *   run         {changes, deletes: {replica: n}, force_limits, limits: {max_changes_per_run,
 *                max_delete_fraction}, reason, rows: {replica: n}, status: started | refused |
 *                overridden} - written before the first decision of a run that has work to do;
 *                its seq is the run's id, which every decision of the run carries as "run"
 * Purges are decisions with policy "purge" and delete mutations on every replica.
 *
 * Durability: WAL mode with synchronous=FULL: a record is on disk when its transaction commits,
 * and a crash leaves whole records or none (SQLite's atomic commit); a group of appends
 * (cvg_journal_begin/commit) is durable together. The journal is append-only: converge never
 * updates or deletes a record.
 */
#include "converge/mclock.h"
#include "converge/fsfile.h"
#include "converge/journal.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *const cvg_jkind_names[] = {"divergence", "decision", "mutation", "outcome",
                                       "revert",     "approval", "run"};

struct cvg_journal {
  sqlite3 *db;
  char path[512];
  sqlite3_stmt *ins; /* OWNED */
  int64_t last_seq;
  unsigned char last_hash[32];
  int in_group;
  int64_t group_seq;            /* verified_seq when the group began: restored on rollback */
  unsigned char group_hash[32]; /* verified_hash then */
  int read_only;                /* opened with CVG_JOURNAL_READ: appends are refused */
  /* Trust (writers only). Records 1..verified_seq were verified as one chain, ending in
   * verified_hash, by this handle or - up to the saved head - by an earlier run; nothing is
   * appended until that holds, and records others append are verified before ours follow. */
  int trusted;
  int64_t verified_seq;
  unsigned char verified_hash[32];
  int64_t saved_seq;   /* the head last saved outside the journal (0: none) */
  char head_path[512]; /* where the head is kept outside the journal ("" for nowhere) */
  int64_t scrub_slice; /* records re-verified below the saved head per writer open */
  EVP_MD *sha256;      /* OWNED; fetched once, not per record */
  EVP_MD_CTX *mdctx;   /* OWNED; reused for every record */
  unsigned char key[CVG_JOURNAL_KEY_BYTES_MAX]; /* the HMAC key (secret; zeroed at close) */
  size_t key_len;                               /* 0: a plain SHA-256 chain */
  int keyed;                                    /* the journal says it was created keyed */
  EVP_MAC *hmac;                                /* OWNED; with a key */
  EVP_MAC_CTX *macctx;                          /* OWNED; with a key */
};

static int establish_trust(cvg_journal *j, const char *head_path, cvg_error *err);
static int extend_trust(cvg_journal *j, cvg_error *err);

static int db_err(cvg_journal *j, cvg_error *err, const char *what) {
  cvg_error_set(err, CVG_EIO, j->path, "%s: %s", what, sqlite3_errmsg(j->db));
  return err ? err->status : CVG_EIO;
}

static int load_head(cvg_journal *j, cvg_error *err) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(j->db, "SELECT seq, hash FROM converge_journal ORDER BY seq DESC LIMIT 1",
                         -1, &st, NULL) != SQLITE_OK)
    return db_err(j, err, "cannot read the journal");
  j->last_seq = 0;
  memset(j->last_hash, 0, sizeof j->last_hash);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    j->last_seq = sqlite3_column_int64(st, 0);
    if (sqlite3_column_bytes(st, 1) == 32)
      memcpy(j->last_hash, sqlite3_column_blob(st, 1), 32);
  }
  sqlite3_finalize(st);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? CVG_OK : db_err(j, err, "cannot read the journal");
}

/* The journal table's columns, in order: a table of that name with other columns is not ours. */
static const char *const journal_columns[] = {"seq", "at_us", "kind", "dataset",
                                              "key", "body",  "prev", "hash"};
enum { N_JOURNAL_COLUMNS = sizeof journal_columns / sizeof journal_columns[0] };

/*
 * What the open file holds: 1 a converge journal, 0 a database without schema (new or empty),
 * -1 anything else (a replica, another program's database), -2 a read error (SQLite's code in
 * *rc: the file may be no database at all, or unreadable).
 */
static int schema_kind(sqlite3 *db, int *rc) {
  sqlite3_stmt *st = NULL;
  int n_objects = 0, n_cols = 0, ours = 1;
  *rc = sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_schema", -1, &st, NULL);
  if (*rc == SQLITE_OK && (*rc = sqlite3_step(st)) == SQLITE_ROW) {
    n_objects = sqlite3_column_int(st, 0);
    *rc = SQLITE_OK;
  }
  sqlite3_finalize(st);
  if (*rc != SQLITE_OK)
    return -2;
  if (n_objects == 0)
    return 0;
  *rc = sqlite3_prepare_v2(
      db, "SELECT name FROM pragma_table_info('converge_journal') ORDER BY cid", -1, &st, NULL);
  while (*rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
    const char *name = (const char *)sqlite3_column_text(st, 0);
    if (n_cols >= N_JOURNAL_COLUMNS || !name || strcmp(name, journal_columns[n_cols]) != 0)
      ours = 0;
    n_cols++;
  }
  sqlite3_finalize(st);
  if (*rc != SQLITE_OK)
    return -2;
  return ours && n_cols == N_JOURNAL_COLUMNS ? 1 : -1;
}

/* path as a file: URI that opens it immutable (no locks, no -wal or -shm created): for reading a
 * journal where SQLite cannot create its shared-memory file (read-only file system, full disk). */
static int immutable_uri(char *out, size_t cap, const char *path) {
  size_t n = 0;
  const char *pre = "file:";
  while (path[0] == '/' && path[1] == '/')
    path++; /* "file://x" would name a host */
  for (const char *p = pre; *p && n + 1 < cap; p++)
    out[n++] = *p;
  for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
    if (n + 4 >= cap)
      return -1;
    if (*p == '?' || *p == '#' || *p == '%' || *p < 0x20 || *p >= 0x7f) {
      snprintf(out + n, 4, "%%%02X", *p);
      n += 3;
    } else {
      out[n++] = (char)*p;
    }
  }
  const char *post = "?immutable=1";
  if (n + strlen(post) + 1 > cap)
    return -1;
  memcpy(out + n, post, strlen(post) + 1);
  return 0;
}

static int open_fail(cvg_journal *j, cvg_error *err, int status, const char *msg,
                     const char *hint) {
  cvg_error_set(err, status, j->path, "%s", msg);
  cvg_error_hint(err, "%s", hint);
  cvg_journal_close(j);
  return err ? err->status : status;
}

static const char not_journal_hint[] =
    "give the path of the repair journal (the catalog's journal:, default NAME.journal.db beside "
    "the catalog); converge keeps it in a file of its own";

/* A new journal records whether its chain is keyed: a later verification with the other kind
 * is then told apart from tampering. */
static int write_chain_kind(cvg_journal *j) {
  char sql[200];
  snprintf(sql, sizeof sql,
           "CREATE TABLE converge_journal_meta(name TEXT PRIMARY KEY, value TEXT NOT NULL);"
           "INSERT INTO converge_journal_meta VALUES ('chain', '%s')",
           j->key_len ? "hmac-sha256" : "sha256");
  return sqlite3_exec(j->db, sql, NULL, NULL, NULL);
}

/* Reads the chain kind: journals from before it was recorded are plain SHA-256. */
static void read_chain_kind(cvg_journal *j) {
  sqlite3_stmt *st = NULL;
  j->keyed = 0;
  if (sqlite3_prepare_v2(j->db, "SELECT value FROM converge_journal_meta WHERE name = 'chain'", -1,
                         &st, NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW) {
    const char *v = (const char *)sqlite3_column_text(st, 0);
    j->keyed = v && strcmp(v, "sha256") != 0;
  }
  sqlite3_finalize(st);
}

int cvg_journal_keyed(const cvg_journal *j) {
  return j->keyed;
}

/* Verifying or appending needs the kind of chain the journal was created with. */
static int check_chain_kind(cvg_journal *j, cvg_error *err) {
  if (j->keyed && !j->key_len) {
    cvg_error_set(err, CVG_EINVAL, j->path,
                  "the journal's chain is keyed (HMAC-SHA256), and no key was given");
    cvg_error_hint(err, "give the catalog (-c) whose journal.key_file holds the journal's key");
    return CVG_EINVAL;
  }
  if (!j->keyed && j->key_len) {
    cvg_error_set(err, CVG_ETAMPER, j->path,
                  "the catalog gives journal.key_file, but the journal's chain is not keyed: it "
                  "was created without the key, or rebuilt by someone who does not have it");
    cvg_error_hint(err, "a journal is keyed from its first record: start a new journal path for "
                        "a keyed chain, or investigate (converge audit verify)");
    return CVG_ETAMPER;
  }
  return CVG_OK;
}

/* Read-only: nothing is written in or beside the file; where SQLite would have to create its
 * shared-memory file to read a WAL database and cannot, the file is read as immutable. */
static int open_read(cvg_journal *j, cvg_error *err) {
  if (access(j->path, F_OK) != 0)
    return open_fail(j, err, CVG_ENOENT, "cannot open the journal: no such file",
                     "give the journal's path (--journal) or the catalog (-c); it is created "
                     "by the first repair");
  /* With no write-ahead log beside it, every record is in the file itself: it is read as
   * immutable, and SQLite creates nothing beside it. With a log (a writer is at work, or one
   * died), the log must be read too: a normal read-only connection, or an error - never an
   * immutable view that would miss the newest records. */
  char wal[600], uri[1700];
  snprintf(wal, sizeof wal, "%s-wal", j->path);
  struct stat sb;
  int has_wal = stat(wal, &sb) == 0 && sb.st_size > 0;
  int flags = SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX;
  const char *name = j->path;
  if (!has_wal) {
    if (immutable_uri(uri, sizeof uri, j->path))
      return open_fail(j, err, CVG_EINVAL, "the journal's path is too long to open read-only",
                       "move the journal to a shorter path");
    name = uri;
    flags |= SQLITE_OPEN_URI;
  }
  int rc = sqlite3_open_v2(name, &j->db, flags, NULL);
  if (rc == SQLITE_OK)
    sqlite3_busy_timeout(j->db, 10000);
  int kind = rc == SQLITE_OK ? schema_kind(j->db, &rc) : -2;
  if (kind == 1)
    return CVG_OK;
  if (kind == 0 || kind == -1 || rc == SQLITE_NOTADB)
    return open_fail(j, err, CVG_ENOTDB, "not a converge journal", not_journal_hint);
  char msg[300];
  snprintf(msg, sizeof msg, "cannot read the journal%s: %s",
           has_wal ? " and its write-ahead log" : "", sqlite3_errstr(rc));
  return open_fail(j, err, CVG_EIO, msg,
                   has_wal ? "a writer may be at work or may have died: read it when converge is "
                             "not writing, or give converge write access to the folder so that "
                             "SQLite can read the log"
                           : "is the file readable?");
}

/* For appending: an existing journal, or (CREATE) a new one in a file without any schema. */
static int open_write(cvg_journal *j, cvg_journal_mode mode, cvg_error *err) {
  int flags = SQLITE_OPEN_READWRITE | (mode == CVG_JOURNAL_CREATE ? SQLITE_OPEN_CREATE : 0) |
              SQLITE_OPEN_NOMUTEX;
  int rc = sqlite3_open_v2(j->path, &j->db, flags, NULL);
  if (rc != SQLITE_OK) {
    char msg[300];
    snprintf(msg, sizeof msg, "cannot open the journal: %s",
             j->db ? sqlite3_errmsg(j->db) : sqlite3_errstr(rc));
    return open_fail(j, err, rc == SQLITE_CANTOPEN ? CVG_ENOENT : CVG_EIO, msg,
                     mode == CVG_JOURNAL_CREATE
                         ? "set journal: to a writable path in the catalog"
                         : "give the journal's path (--journal) or the catalog (-c); it is "
                           "created by the first repair");
  }
  sqlite3_busy_timeout(j->db, 10000);
  int kind = schema_kind(j->db, &rc);
  if (kind == -1 || (kind == -2 && rc == SQLITE_NOTADB) ||
      (kind == 0 && mode != CVG_JOURNAL_CREATE))
    return open_fail(j, err, CVG_ENOTDB, "not a converge journal", not_journal_hint);
  if (kind == -2) {
    char msg[300];
    snprintf(msg, sizeof msg, "cannot read the journal: %s", sqlite3_errstr(rc));
    return open_fail(j, err, CVG_EIO, msg, "is the file readable?");
  }
  char *msg = NULL;
  /* 64 KiB pages (for a new journal): records are appended in order, and large pages make the
   * journal smaller and its durable commits cheaper (bench/repair: 25% less time) */
  rc = sqlite3_exec(
      j->db,
      "PRAGMA page_size=65536; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
      "CREATE TABLE IF NOT EXISTS converge_journal("
      " seq INTEGER PRIMARY KEY, at_us INTEGER NOT NULL, kind TEXT NOT NULL,"
      " dataset TEXT NOT NULL, key BLOB, body TEXT NOT NULL,"
      " prev BLOB NOT NULL, hash BLOB NOT NULL);"
      "CREATE INDEX IF NOT EXISTS converge_journal_key ON converge_journal(dataset, key);"
      "CREATE INDEX IF NOT EXISTS converge_journal_runs ON converge_journal(dataset, seq)"
      " WHERE kind = 'run';",
      NULL, NULL, &msg);
  if (rc != SQLITE_OK) {
    char text[300];
    snprintf(text, sizeof text, "cannot prepare the journal: %s", msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return open_fail(j, err, CVG_EIO, text, "is it on a writable file system with free space?");
  }
  if (kind == 0 && (rc = write_chain_kind(j)) != SQLITE_OK) {
    char text[300];
    snprintf(text, sizeof text, "cannot prepare the journal: %s", sqlite3_errmsg(j->db));
    return open_fail(j, err, CVG_EIO, text, "is it on a writable file system with free space?");
  }
  if (sqlite3_prepare_v2(j->db, "INSERT INTO converge_journal VALUES (?,?,?,?,?,?,?,?)", -1,
                         &j->ins, NULL) != SQLITE_OK) {
    db_err(j, err, "cannot prepare the journal");
    cvg_journal_close(j);
    return err ? err->status : CVG_EIO;
  }
  return CVG_OK;
}

int cvg_journal_open(cvg_journal **out, const char *path, cvg_journal_mode mode, cvg_error *err) {
  cvg_journal_opts o;
  memset(&o, 0, sizeof o);
  o.mode = mode;
  return cvg_journal_open_opts(out, path, &o, err);
}

int cvg_journal_open_opts(cvg_journal **out, const char *path, const cvg_journal_opts *opts,
                          cvg_error *err) {
  cvg_journal_mode mode = opts->mode;
  *out = NULL;
  cvg_journal *j = calloc(1, sizeof *j);
  if (!j)
    return cvg_error_set(err, CVG_ENOMEM, path, "out of memory");
  snprintf(j->path, sizeof j->path, "%s", path);
  j->read_only = mode == CVG_JOURNAL_READ;
  j->scrub_slice = opts->scrub_records > 0 ? opts->scrub_records : CVG_JOURNAL_SCRUB_RECORDS;
  if (strlen(path) >= sizeof j->path) {
    cvg_error_set(err, CVG_EINVAL, "journal", "the journal's path is longer than %zu bytes",
                  sizeof j->path - 1);
    cvg_journal_close(j);
    return err ? err->status : CVG_EINVAL;
  }
  if (!(j->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL)) || !(j->mdctx = EVP_MD_CTX_new())) {
    cvg_error_set(err, CVG_ENOMEM, path, "cannot set up SHA-256 (OpenSSL)");
    cvg_journal_close(j);
    return err ? err->status : CVG_ENOMEM;
  }
  if (opts->key && opts->key_len) {
    if (opts->key_len < CVG_JOURNAL_KEY_BYTES_MIN || opts->key_len > CVG_JOURNAL_KEY_BYTES_MAX) {
      cvg_error_set(err, CVG_EINVAL, "journal", "the journal key must be %d to %d bytes",
                    CVG_JOURNAL_KEY_BYTES_MIN, CVG_JOURNAL_KEY_BYTES_MAX);
      cvg_journal_close(j);
      return err ? err->status : CVG_EINVAL;
    }
    memcpy(j->key, opts->key, opts->key_len);
    j->key_len = opts->key_len;
    if (!(j->hmac = EVP_MAC_fetch(NULL, "HMAC", NULL)) || !(j->macctx = EVP_MAC_CTX_new(j->hmac))) {
      cvg_error_set(err, CVG_ENOMEM, path, "cannot set up HMAC-SHA256 (OpenSSL)");
      cvg_journal_close(j);
      return err ? err->status : CVG_ENOMEM;
    }
  }
  int rc = cvg_regular_file(path, NULL, "journal", err);
  if (rc == CVG_OK && opts->head_path)
    rc = cvg_regular_file(opts->head_path, NULL, "state file", err);
  if (rc != CVG_OK) {
    cvg_journal_close(j);
    return rc;
  }
  rc = j->read_only ? open_read(j, err) : open_write(j, mode, err);
  if (rc != CVG_OK)
    return rc; /* j is closed */
  read_chain_kind(j);
  if (!j->read_only && (rc = check_chain_kind(j, err)) != CVG_OK) {
    cvg_journal_close(j);
    return rc;
  }
  if ((rc = load_head(j, err)) != CVG_OK) {
    cvg_journal_close(j);
    return rc;
  }
  if (!j->read_only && (rc = establish_trust(j, opts->head_path, err)) != CVG_OK) {
    cvg_journal_close(j);
    return rc;
  }
  *out = j;
  return CVG_OK;
}

void cvg_journal_close(cvg_journal *j) {
  if (!j)
    return;
  if (j->trusted && j->verified_seq > j->saved_seq)
    cvg_journal_save_head(j, NULL);
  sqlite3_finalize(j->ins);
  sqlite3_close(j->db);
  EVP_MD_CTX_free(j->mdctx);
  EVP_MD_free(j->sha256);
  EVP_MAC_CTX_free(j->macctx);
  EVP_MAC_free(j->hmac);
  OPENSSL_cleanse(j->key, sizeof j->key);
  free(j);
}

int cvg_journal_begin(cvg_journal *j, cvg_error *err) {
  if (j->read_only)
    return cvg_error_set(err, CVG_EINVAL, j->path, "the journal was opened read-only");
  if (sqlite3_exec(j->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
    return db_err(j, err, "cannot begin a journal transaction");
  j->in_group = 1;
  int rc = load_head(j, err); /* another process may have appended */
  if (rc == CVG_OK)
    rc = extend_trust(j, err);
  j->group_seq = j->verified_seq;
  memcpy(j->group_hash, j->verified_hash, 32);
  if (rc != CVG_OK) {
    j->in_group = 0;
    sqlite3_exec(j->db, "ROLLBACK", NULL, NULL, NULL);
  }
  return rc;
}

int cvg_journal_commit(cvg_journal *j, cvg_error *err) {
  j->in_group = 0;
  if (sqlite3_exec(j->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
    int rc = db_err(j, err, "cannot commit the journal");
    cvg_journal_rollback(j);
    return rc;
  }
  return CVG_OK;
}

void cvg_journal_rollback(cvg_journal *j) {
  j->in_group = 0;
  sqlite3_exec(j->db, "ROLLBACK", NULL, NULL, NULL);
  load_head(j, NULL);
  if (j->trusted) { /* what was verified before the group, not what the file holds now */
    j->verified_seq = j->group_seq;
    memcpy(j->verified_hash, j->group_hash, 32);
  }
}

static void be64(unsigned char *p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8)
    p[i] = (unsigned char)v;
}
static void be32(unsigned char *p, uint32_t v) {
  for (int i = 3; i >= 0; i--, v >>= 8)
    p[i] = (unsigned char)v;
}

static int64_t to_us(double at) {
  return (int64_t)(at * 1e6 + (at >= 0 ? 0.5 : -0.5));
}

/* The bytes a record's hash covers, in order, handed to feed(ctx, bytes, n). */
static void record_message(const cvg_jrecord *r, int (*feed)(void *, const void *, size_t),
                           void *ctx) {
  static const char magic[] = "converge-journal-v1";
  unsigned char hdr[8 + 32 + 1 + 8], len[4];
  be64(hdr, (uint64_t)r->seq);
  memcpy(hdr + 8, r->prev, 32);
  hdr[40] = (unsigned char)r->kind;
  be64(hdr + 41, (uint64_t)to_us(r->at));
  feed(ctx, magic, sizeof magic); /* with its NUL */
  feed(ctx, hdr, sizeof hdr);
  size_t dl = strlen(r->dataset);
  be32(len, (uint32_t)dl);
  feed(ctx, len, 4);
  feed(ctx, r->dataset, dl);
  be32(len, (uint32_t)r->key_len);
  feed(ctx, len, 4);
  feed(ctx, r->key, r->key_len);
  be32(len, (uint32_t)r->body_len);
  feed(ctx, len, 4);
  feed(ctx, r->body, r->body_len);
}

static int feed_md(void *ctx, const void *p, size_t n) {
  return EVP_DigestUpdate(ctx, p, n);
}
static int feed_mac(void *ctx, const void *p, size_t n) {
  return EVP_MAC_update(ctx, p, n);
}

/* The record's SHA-256 with context c and digest md (both the caller's). */
static void hash_with(EVP_MD_CTX *c, const EVP_MD *md, const cvg_jrecord *r,
                      unsigned char out[32]) {
  unsigned int n = 0;
  if (!c || !md || EVP_DigestInit_ex(c, md, NULL) != 1) {
    memset(out, 0, 32); /* matches no record: verification names it */
    return;
  }
  record_message(r, feed_md, c);
  EVP_DigestFinal_ex(c, out, &n);
}

/* The record's hash as this journal computes it: HMAC-SHA256 with the journal's key when it has
 * one, SHA-256 otherwise. */
static void record_hash(cvg_journal *j, const cvg_jrecord *r, unsigned char out[32]) {
  if (!j->key_len) {
    hash_with(j->mdctx, j->sha256, r, out);
    return;
  }
  size_t n = 0;
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  if (!j->macctx || EVP_MAC_init(j->macctx, j->key, j->key_len, params) != 1) {
    memset(out, 0, 32);
    return;
  }
  record_message(r, feed_mac, j->macctx);
  if (EVP_MAC_final(j->macctx, out, &n, 32) != 1 || n != 32)
    memset(out, 0, 32);
}

void cvg_journal_hash(const cvg_jrecord *r, unsigned char out[32]) {
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  hash_with(c, EVP_sha256(), r, out);
  EVP_MD_CTX_free(c);
}

int cvg_journal_append(cvg_journal *j, cvg_jrecord *r, cvg_error *err) {
  if ((unsigned)r->kind >= CVG_J__COUNT || r->key_len > CVG_JOURNAL_KEY_MAX ||
      r->body_len > CVG_JOURNAL_BODY_MAX || !r->body)
    return cvg_error_set(err, CVG_EINVAL, j->path, "malformed journal record");
  int group = j->in_group;
  int rc;
  if (!group && (rc = cvg_journal_begin(j, err)))
    return rc;
  r->seq = j->last_seq + 1;
  memcpy(r->prev, j->last_hash, 32);
  r->at = (double)to_us(r->at) / 1e6; /* what is stored is what is hashed */
  record_hash(j, r, r->hash);
  sqlite3_stmt *st = j->ins;
  sqlite3_reset(st);
  sqlite3_bind_int64(st, 1, r->seq);
  sqlite3_bind_int64(st, 2, to_us(r->at));
  sqlite3_bind_text(st, 3, cvg_jkind_names[r->kind], -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 4, r->dataset, -1, SQLITE_STATIC);
  if (r->key_len)
    sqlite3_bind_blob(st, 5, r->key, (int)r->key_len, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, 5);
  sqlite3_bind_text(st, 6, r->body, (int)r->body_len, SQLITE_STATIC);
  sqlite3_bind_blob(st, 7, r->prev, 32, SQLITE_STATIC);
  sqlite3_bind_blob(st, 8, r->hash, 32, SQLITE_STATIC);
  if (sqlite3_step(st) != SQLITE_DONE) {
    rc = db_err(j, err, "cannot append to the journal");
    sqlite3_reset(st);
    if (!group)
      cvg_journal_rollback(j);
    return rc;
  }
  sqlite3_reset(st);
  j->last_seq = r->seq;
  memcpy(j->last_hash, r->hash, 32);
  j->verified_seq = r->seq; /* it follows a verified chain */
  memcpy(j->verified_hash, r->hash, 32);
  return group ? CVG_OK : cvg_journal_commit(j, err);
}

static int kind_of(const char *s) {
  for (int k = 0; s && k < CVG_J__COUNT; k++)
    if (strcmp(s, cvg_jkind_names[k]) == 0)
      return k;
  return -1;
}

/* Fills r from a row of SELECT seq, at_us, kind, dataset, key, body, prev, hash. 0 if well-formed. */
static int row_record(sqlite3_stmt *st, cvg_jrecord *r, const char **why) {
  r->seq = sqlite3_column_int64(st, 0);
  r->at = (double)sqlite3_column_int64(st, 1) / 1e6;
  int k = kind_of((const char *)sqlite3_column_text(st, 2));
  const char *ds = (const char *)sqlite3_column_text(st, 3);
  int kl = sqlite3_column_bytes(st, 4);
  const void *key = sqlite3_column_blob(st, 4);
  const char *body = (const char *)sqlite3_column_text(st, 5);
  int bl = sqlite3_column_bytes(st, 5);
  *why = NULL;
  if (k < 0)
    *why = "its kind is not a journal record kind";
  else if (!ds || strlen(ds) >= sizeof r->dataset)
    *why = "its dataset is missing or too long";
  else if (kl > CVG_JOURNAL_KEY_MAX)
    *why = "its key is too long";
  else if (!body || bl > (int)CVG_JOURNAL_BODY_MAX)
    *why = "its body is missing or too long";
  else if (sqlite3_column_bytes(st, 6) != 32 || sqlite3_column_bytes(st, 7) != 32)
    *why = "its hashes are not 32 bytes";
  if (*why)
    return -1;
  r->kind = (cvg_jkind)k;
  snprintf(r->dataset, sizeof r->dataset, "%s", ds);
  r->key_len = (size_t)kl;
  if (kl)
    memcpy(r->key, key, (size_t)kl);
  r->body = (char *)body; /* BORROWED from the statement until the next step */
  r->body_len = (size_t)bl;
  memcpy(r->prev, sqlite3_column_blob(st, 6), 32);
  memcpy(r->hash, sqlite3_column_blob(st, 7), 32);
  return 0;
}

static void hex(char *out, const unsigned char *h, size_t n) {
  for (size_t i = 0; i < n; i++)
    snprintf(out + 2 * i, 3, "%02x", h[i]);
}

/*
 * Walks the chain from record `from` (0: from the first record) to record `to`: every record in
 * place, well-formed, linked to the one before and matching its own hash. A walk from a record
 * already verified (a checkpoint) checks that record's hash against the one given instead of its
 * link to an earlier record. *records gets the number verified; head the last record's hash.
 */
static int verify_range(cvg_journal *j, int64_t from, const unsigned char from_hash[32], int64_t to,
                        int64_t *records, unsigned char head[32], cvg_error *err) {
  *records = 0;
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(j->db,
                         "SELECT seq, at_us, kind, dataset, key, body, prev, hash"
                         " FROM converge_journal WHERE seq >= ?1 AND seq <= ?2 ORDER BY seq",
                         -1, &st, NULL) != SQLITE_OK)
    return db_err(j, err, "cannot read the journal");
  sqlite3_bind_int64(st, 1, from);
  sqlite3_bind_int64(st, 2, to);
  cvg_jrecord *r = malloc(sizeof *r);
  if (!r) {
    sqlite3_finalize(st);
    return cvg_error_set(err, CVG_ENOMEM, j->path, "out of memory");
  }
  unsigned char prev[32] = {0}, h[32];
  int64_t expect = from > 0 ? from : 1;
  int rc = CVG_OK, s;
  char where[600];
  while ((s = sqlite3_step(st)) == SQLITE_ROW) {
    const char *why = NULL;
    int bad = row_record(st, r, &why);
    snprintf(where, sizeof where, "%s: record %lld", j->path, (long long)r->seq);
    if (r->seq != expect) {
      rc = cvg_error_set(err, CVG_ETAMPER, where,
                         r->seq > expect ? "record %lld is missing: record %lld follows record %lld"
                                         : "record %lld is out of place",
                         (long long)(r->seq > expect ? expect : r->seq), (long long)r->seq,
                         (long long)(expect - 1));
      break;
    }
    if (bad) {
      rc = cvg_error_set(err, CVG_ETAMPER, where, "record %lld is malformed: %s", (long long)r->seq,
                         why);
      break;
    }
    int checkpoint = from > 0 && r->seq == from;
    if (checkpoint ? memcmp(r->hash, from_hash, 32) != 0 : memcmp(r->prev, prev, 32) != 0) {
      rc = cvg_error_set(err, CVG_ETAMPER, where,
                         checkpoint ? "record %lld is not the record converge verified there "
                                      "before: its hash differs from the saved head (the chain "
                                      "was rewritten from there or before)"
                                    : "record %lld does not follow record %lld: its "
                                      "previous-record hash does not match (a record was "
                                      "changed, removed, inserted or reordered)",
                         (long long)r->seq, (long long)(r->seq - 1));
      break;
    }
    record_hash(j, r, h);
    if (memcmp(h, r->hash, 32) != 0) {
      rc = cvg_error_set(err, CVG_ETAMPER, where,
                         "record %lld (%s) was changed after it was written: its content does not "
                         "match its hash",
                         (long long)r->seq, cvg_jkind_names[r->kind]);
      break;
    }
    memcpy(prev, r->hash, 32);
    expect++;
    (*records)++;
  }
  if (rc == CVG_OK && s != SQLITE_DONE)
    rc = db_err(j, err, "cannot read the journal");
  if (rc == CVG_OK && from > 0 && *records == 0)
    rc = cvg_error_set(err, CVG_ETAMPER, j->path,
                       "record %lld, the journal's head at the last check, is gone: the newest "
                       "records were removed",
                       (long long)from);
  if (rc == CVG_ETAMPER)
    cvg_error_hint(err, "the journal no longer proves what converge did; nothing was applied from "
                        "it. Keep this copy for the investigation, run converge audit verify, and "
                        "compare it with a backup");
  if (head)
    memcpy(head, prev, 32);
  free(r);
  sqlite3_finalize(st);
  return rc;
}

/* Walks the chain from record `from` to its end. */
static int verify_from(cvg_journal *j, int64_t from, const unsigned char from_hash[32],
                       int64_t *records, unsigned char head[32], cvg_error *err) {
  return verify_range(j, from, from_hash, INT64_MAX, records, head, err);
}

int cvg_journal_verify(cvg_journal *j, int64_t *records, cvg_error *err) {
  unsigned char head[32];
  *records = 0;
  int rc = check_chain_kind(j, err);
  if (rc != CVG_OK)
    return rc;
  rc = verify_from(j, 0, NULL, records, head, err);
  if (rc == CVG_OK && err) {
    char hx[65];
    hex(hx, head, 32);
    snprintf(err->hint, sizeof err->hint, "%s", hx); /* the head hash, for the caller to show */
  }
  return rc;
}

/* ---- the head kept outside the journal ---- */

/* The journal's name in the state file: its canonical path, so that converge.yaml,
 * ./converge.yaml and /etc/converge/converge.yaml agree on one saved head. */
static void head_key(const char *journal_path, char *out, size_t cap) {
  char *real = realpath(journal_path, NULL);
  snprintf(out, cap, "%s", real ? real : journal_path);
  free(real);
}

static const char head_table[] =
    "CREATE TABLE IF NOT EXISTS converge_journal_head(journal TEXT PRIMARY KEY,"
    " seq INTEGER NOT NULL, hash BLOB NOT NULL, at_us INTEGER NOT NULL)";

/* Opens the state file that keeps heads and settled marks: for reading, for writing (which lets
 * SQLite roll back what a process that died there left unfinished), or creating it. */
typedef enum state_mode { STATE_READ, STATE_WRITE, STATE_CREATE } state_mode;

static int state_open(const char *path, state_mode mode, sqlite3 **db) {
  int flags = mode == STATE_READ    ? SQLITE_OPEN_READONLY
              : mode == STATE_WRITE ? SQLITE_OPEN_READWRITE
                                    : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
  int rc = sqlite3_open_v2(path, db, flags | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc == SQLITE_OK)
    sqlite3_busy_timeout(*db, 10000);
  return rc;
}

/* A writer opens the state file for writing, so that SQLite can roll back the unfinished write
 * of a process that died there (a hot journal); a reader cannot, and says so. */
static int read_saved_head(const char *head_path, const char *journal_path, int writable,
                           int64_t *seq, unsigned char hash[32], cvg_error *err) {
  *seq = 0;
  memset(hash, 0, 32);
  if (!head_path || !*head_path || access(head_path, F_OK) != 0)
    return CVG_OK; /* nothing saved yet */
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  int rc = state_open(head_path, writable ? STATE_WRITE : STATE_READ, &db);
  if (rc == SQLITE_OK) {
    rc = sqlite3_prepare_v2(db, "SELECT seq, hash FROM converge_journal_head WHERE journal = ?1",
                            -1, &st, NULL);
    if (rc == SQLITE_ERROR) { /* no such table: nothing saved yet */
      sqlite3_close(db);
      return CVG_OK;
    }
  }
  if (rc == SQLITE_OK) {
    char jkey[4096];
    head_key(journal_path, jkey, sizeof jkey);
    sqlite3_bind_text(st, 1, jkey, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_bytes(st, 1) == 32) {
      *seq = sqlite3_column_int64(st, 0);
      memcpy(hash, sqlite3_column_blob(st, 1), 32);
    }
    rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
  }
  if (rc != SQLITE_OK) {
    cvg_error_set(err, CVG_EIO, head_path, "cannot read the journal's saved head: %s",
                  db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    if ((rc & 0xff) == SQLITE_READONLY)
      cvg_error_hint(err, "the state file holds the unfinished write of a converge process that "
                          "died; the next converge repair or watch recovers it (or run this "
                          "command where it may write the state file)");
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return rc == SQLITE_OK ? CVG_OK : (err ? err->status : CVG_EIO);
}

int cvg_journal_saved_head(const char *head_path, const char *journal_path, int64_t *seq,
                           unsigned char hash[32], cvg_error *err) {
  return read_saved_head(head_path, journal_path, 0, seq, hash, err);
}

int cvg_journal_save_head(cvg_journal *j, cvg_error *err) {
  if (!j->trusted || !j->head_path[0] || j->verified_seq <= j->saved_seq)
    return CVG_OK;
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  int rc = state_open(j->head_path, STATE_CREATE, &db);
  if (rc == SQLITE_OK) {
    rc = sqlite3_exec(db, head_table, NULL, NULL, NULL);
  }
  /* a head only moves forward: another process may have saved a newer one */
  if (rc == SQLITE_OK)
    rc = sqlite3_prepare_v2(db,
                            "INSERT INTO converge_journal_head VALUES (?1, ?2, ?3, ?4)"
                            " ON CONFLICT(journal) DO UPDATE SET seq = excluded.seq,"
                            " hash = excluded.hash, at_us = excluded.at_us"
                            " WHERE excluded.seq > converge_journal_head.seq",
                            -1, &st, NULL);
  if (rc == SQLITE_OK) {
    char jkey[4096];
    head_key(j->path, jkey, sizeof jkey);
    sqlite3_bind_text(st, 1, jkey, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, j->verified_seq);
    sqlite3_bind_blob(st, 3, j->verified_hash, 32, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, to_us(cvg_wall_now()));
    rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
  }
  if (rc != SQLITE_OK)
    cvg_error_set(err, CVG_EIO, j->head_path, "cannot save the journal's head: %s",
                  db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  else
    j->saved_seq = j->verified_seq;
  sqlite3_finalize(st);
  sqlite3_close(db);
  return rc == SQLITE_OK ? CVG_OK : (err ? err->status : CVG_EIO);
}

/* ---- the settled mark: where resumption starts reading ---- */

int cvg_journal_settled_get(const cvg_journal *j, const char *dataset, int64_t *seq) {
  *seq = 0;
  if (!j->head_path[0] || access(j->head_path, F_OK) != 0)
    return CVG_OK;
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  if (state_open(j->head_path, j->read_only ? STATE_READ : STATE_WRITE, &db) == SQLITE_OK &&
      sqlite3_prepare_v2(db,
                         "SELECT seq FROM converge_journal_settled WHERE journal = ?1 AND "
                         "dataset = ?2",
                         -1, &st, NULL) == SQLITE_OK) {
    char jkey[4096];
    head_key(j->path, jkey, sizeof jkey);
    sqlite3_bind_text(st, 1, jkey, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, dataset, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
      *seq = sqlite3_column_int64(st, 0);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  /* a mark past the journal's end is not ours (another journal at that path): read it all */
  if (*seq > j->last_seq)
    *seq = 0;
  return CVG_OK;
}

int cvg_journal_settled_set(cvg_journal *j, const char *dataset, int64_t seq, cvg_error *err) {
  if (!j->head_path[0])
    return CVG_OK;
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  int rc = state_open(j->head_path, STATE_CREATE, &db);
  if (rc == SQLITE_OK) {
    rc = sqlite3_exec(db,
                      "CREATE TABLE IF NOT EXISTS converge_journal_settled(journal TEXT NOT NULL,"
                      " dataset TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY(journal, "
                      "dataset))",
                      NULL, NULL, NULL);
  }
  if (rc == SQLITE_OK)
    rc = sqlite3_prepare_v2(db,
                            "INSERT INTO converge_journal_settled VALUES (?1, ?2, ?3)"
                            " ON CONFLICT(journal, dataset) DO UPDATE SET seq = excluded.seq",
                            -1, &st, NULL);
  if (rc == SQLITE_OK) {
    char jkey[4096];
    head_key(j->path, jkey, sizeof jkey);
    sqlite3_bind_text(st, 1, jkey, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, dataset, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, seq);
    rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
  }
  if (rc != SQLITE_OK)
    cvg_error_set(err, CVG_EIO, j->head_path, "cannot save the journal's settled mark: %s",
                  db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  sqlite3_finalize(st);
  sqlite3_close(db);
  return rc == SQLITE_OK ? CVG_OK : (err ? err->status : CVG_EIO);
}

void cvg_journal_head(const cvg_journal *j, int64_t *seq, unsigned char hash[32]) {
  *seq = j->trusted ? j->verified_seq : j->last_seq;
  memcpy(hash, j->trusted ? j->verified_hash : j->last_hash, 32);
}

/* ---- the scrub: the records below the saved head, one slice per writer ---- */

/*
 * A writer verifies what was added since the saved head, and the records it uses (authenticate);
 * an edit further back, in a record no run reads again, would otherwise wait for converge audit
 * verify. So each writer also re-verifies one slice of the older records, from a cursor kept in
 * the state file beside the head: hashes and links, each slice starting at the record the one
 * before ended on (every link is checked), the last slice ending on the saved head. An edit
 * anywhere in the journal is refused within ceil(head / slice) writer runs, at a bounded cost
 * per run, however long the journal grows.
 */

static const char scrub_table[] =
    "CREATE TABLE IF NOT EXISTS converge_journal_scrub(journal TEXT PRIMARY KEY,"
    " seq INTEGER NOT NULL, hash BLOB NOT NULL)";

/* The record the last slice ended on (0: start from the first record). */
static void scrub_cursor_get(const cvg_journal *j, int64_t *seq, unsigned char hash[32]) {
  *seq = 0;
  memset(hash, 0, 32);
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  if (state_open(j->head_path, STATE_WRITE, &db) == SQLITE_OK &&
      sqlite3_prepare_v2(db, "SELECT seq, hash FROM converge_journal_scrub WHERE journal = ?1", -1,
                         &st, NULL) == SQLITE_OK) {
    char jkey[4096];
    head_key(j->path, jkey, sizeof jkey);
    sqlite3_bind_text(st, 1, jkey, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_bytes(st, 1) == 32) {
      *seq = sqlite3_column_int64(st, 0);
      memcpy(hash, sqlite3_column_blob(st, 1), 32);
    }
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
}

/* Best effort: a cursor that cannot be saved makes the next writer scrub the same slice again;
 * a state file that cannot be written fails the run when it saves the head. */
static void scrub_cursor_set(const cvg_journal *j, int64_t seq, const unsigned char hash[32]) {
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  if (state_open(j->head_path, STATE_WRITE, &db) == SQLITE_OK &&
      sqlite3_exec(db, scrub_table, NULL, NULL, NULL) == SQLITE_OK &&
      sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO converge_journal_scrub VALUES (?1, ?2, ?3)",
                         -1, &st, NULL) == SQLITE_OK) {
    char jkey[4096];
    head_key(j->path, jkey, sizeof jkey);
    sqlite3_bind_text(st, 1, jkey, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, seq);
    sqlite3_bind_blob(st, 3, hash, 32, SQLITE_STATIC);
    sqlite3_step(st);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
}

/* Verifies the slice after the cursor, up to the saved head (record `saved`, hash `saved_hash`,
 * itself verified by the caller); *next gets the cursor for the next writer. */
static int scrub_slice(cvg_journal *j, int64_t saved, const unsigned char saved_hash[32],
                       int64_t *next, unsigned char next_hash[32], cvg_error *err) {
  int64_t from;
  unsigned char from_hash[32];
  scrub_cursor_get(j, &from, from_hash);
  if (from < 0 || from >= saved) /* a cursor of another journal, or past a shorter one */
    from = 0;
  int64_t to = saved - from > j->scrub_slice ? from + j->scrub_slice : saved;
  int64_t n;
  unsigned char head[32];
  int rc = verify_range(j, from, from_hash, to, &n, head, err);
  if (rc != CVG_OK)
    return rc;
  int64_t want = from > 0 ? to - from + 1 : to;
  if (n != want || (to == saved && memcmp(head, saved_hash, 32) != 0)) {
    cvg_error_set(err, CVG_ETAMPER, j->path,
                  "records %lld to %lld, below the head verified by the last run, no longer "
                  "form its chain: %lld of %lld are in place",
                  (long long)(from > 0 ? from : 1), (long long)to, (long long)n, (long long)want);
    cvg_error_hint(err, "nothing was applied; run converge audit verify, and restore the journal "
                        "from a backup");
    return CVG_ETAMPER;
  }
  *next = to == saved ? 0 : to;
  if (to == saved)
    memset(next_hash, 0, 32);
  else
    memcpy(next_hash, head, 32);
  return CVG_OK;
}

/* Before a writer appends or applies anything: the chain from the saved head (or from the first
 * record when none is saved) to the end verifies, and the journal has not lost records the saved
 * head counted. */
static int establish_trust_in(cvg_journal *j, int64_t seq, const unsigned char hash[32],
                              cvg_error *err);

static int establish_trust(cvg_journal *j, const char *head_path, cvg_error *err) {
  snprintf(j->head_path, sizeof j->head_path, "%s", head_path ? head_path : "");
  int64_t seq;
  unsigned char hash[32];
  int rc = read_saved_head(j->head_path, j->path, 1, &seq, hash, err);
  if (rc != CVG_OK)
    return rc;
  /* the head, the walk and what is trusted come from one read snapshot: a writer appending
   * meanwhile is verified by the next group, not mistaken for tampering */
  if (sqlite3_exec(j->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
    return db_err(j, err, "cannot read the journal");
  rc = load_head(j, err);
  if (rc == CVG_OK)
    rc = establish_trust_in(j, seq, hash, err);
  int64_t next = 0;
  unsigned char next_hash[32];
  int scrubbed = rc == CVG_OK && seq > 0;
  if (scrubbed && (rc = scrub_slice(j, seq, hash, &next, next_hash, err)) != CVG_OK)
    j->trusted = 0; /* nothing is appended after a chain that does not verify */
  sqlite3_exec(j->db, "COMMIT", NULL, NULL, NULL);
  if (rc == CVG_OK && scrubbed)
    scrub_cursor_set(j, next, next_hash);
  return rc;
}

static int establish_trust_in(cvg_journal *j, int64_t seq, const unsigned char hash[32],
                              cvg_error *err) {
  int rc;
  if (j->last_seq < seq) {
    cvg_error_set(err, CVG_ETAMPER, j->path,
                  "the journal ends at record %lld, but its head after the last run was record "
                  "%lld (kept in %s): the newest records were removed",
                  (long long)j->last_seq, (long long)seq, j->head_path);
    cvg_error_hint(err, "nothing was applied; run converge audit verify, and restore the journal "
                        "from a backup");
    return CVG_ETAMPER;
  }
  int64_t n;
  unsigned char head[32];
  if ((rc = verify_from(j, seq, hash, &n, head, err)) != CVG_OK)
    return rc;
  if (j->last_seq > 0 && memcmp(head, j->last_hash, 32) != 0)
    return cvg_error_set(err, CVG_ETAMPER, j->path,
                         "the journal's last record is not the one its chain ends in");
  j->saved_seq = seq;
  j->verified_seq = j->last_seq;
  memcpy(j->verified_hash, j->last_hash, 32);
  j->trusted = 1; /* last: a failure above leaves nothing trusted, nothing saved */
  return CVG_OK;
}

/* Inside a group: records another process appended since this handle last looked are verified
 * before this one appends after them. */
static int extend_trust(cvg_journal *j, cvg_error *err) {
  if (j->read_only)
    return CVG_OK;
  if (!j->trusted)
    return cvg_error_set(err, CVG_ETAMPER, j->path, "the journal has not been verified");
  if (j->last_seq < j->verified_seq) {
    cvg_error_set(err, CVG_ETAMPER, j->path,
                  "the journal ends at record %lld, but record %lld was verified a moment ago: "
                  "records were removed while converge ran",
                  (long long)j->last_seq, (long long)j->verified_seq);
    return CVG_ETAMPER;
  }
  if (j->last_seq == j->verified_seq)
    return memcmp(j->last_hash, j->verified_hash, 32) == 0
               ? CVG_OK
               : cvg_error_set(err, CVG_ETAMPER, j->path, "record %lld changed while converge ran",
                               (long long)j->last_seq);
  int64_t n;
  unsigned char head[32];
  int rc = verify_from(j, j->verified_seq, j->verified_hash, &n, head, err);
  if (rc == CVG_OK) {
    j->verified_seq = j->last_seq;
    memcpy(j->verified_hash, head, 32);
  }
  return rc;
}

/*
 * Before a writer acts on records after `after` (revert, resume, approve, a merge base): the
 * whole segment (after, verified_seq] is read in order - every record in place, well-formed,
 * linked to the one before it and matching its own hash - and its last record must be the
 * verified head. The verified head's hash commits to every record below it through the links,
 * so an edit anywhere in the segment, with or without recomputed hashes, is refused, even in
 * records of other datasets between the ones the caller wants. Runs in the caller's read
 * snapshot (the scan that follows sees the same records).
 */
static int authenticate(cvg_journal *j, int64_t after, cvg_error *err) {
  if (after >= j->verified_seq)
    return CVG_OK;
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(j->db,
                         "SELECT seq, at_us, kind, dataset, key, body, prev, hash"
                         " FROM converge_journal WHERE seq > ?1 AND seq <= ?2 ORDER BY seq",
                         -1, &st, NULL) != SQLITE_OK)
    return db_err(j, err, "cannot read the journal");
  sqlite3_bind_int64(st, 1, after);
  sqlite3_bind_int64(st, 2, j->verified_seq);
  cvg_jrecord *r = malloc(sizeof *r);
  if (!r) {
    sqlite3_finalize(st);
    return cvg_error_set(err, CVG_ENOMEM, j->path, "out of memory");
  }
  unsigned char prev[32], h[32];
  int64_t expect = after + 1;
  int rc = CVG_OK, s;
  const char *what = NULL;
  while ((s = sqlite3_step(st)) == SQLITE_ROW) {
    const char *why = NULL;
    int64_t seq = sqlite3_column_int64(st, 0);
    if (seq != expect || row_record(st, r, &why) != 0) {
      what = seq != expect ? "a record before it is missing or out of place" : why;
      r->seq = seq != expect ? expect : seq;
      r->kind = CVG_J__COUNT;
      break;
    }
    record_hash(j, r, h);
    if (memcmp(h, r->hash, 32) != 0) {
      what = "its content does not match its hash: it was changed after it was written";
      break;
    }
    if (seq > after + 1 && memcmp(r->prev, prev, 32) != 0) {
      what = "its previous-record hash does not match the record before it (a record was "
             "changed, removed, inserted or reordered)";
      break;
    }
    memcpy(prev, r->hash, 32);
    expect++;
  }
  if (!what && s != SQLITE_DONE)
    rc = db_err(j, err, "cannot read the journal");
  else if (!what && (expect - 1 != j->verified_seq || memcmp(prev, j->verified_hash, 32) != 0)) {
    what = "the chain no longer leads to the head converge verified";
    r->seq = expect - 1;
    r->kind = CVG_J__COUNT;
  }
  if (what) {
    char where[600];
    snprintf(where, sizeof where, "%s: record %lld", j->path, (long long)r->seq);
    cvg_error_set(err, CVG_ETAMPER, where,
                  "record %lld%s%s%s does not verify: %s; nothing was "
                  "applied from the journal",
                  (long long)r->seq, r->kind < CVG_J__COUNT ? " (" : "",
                  r->kind < CVG_J__COUNT ? cvg_jkind_names[r->kind] : "",
                  r->kind < CVG_J__COUNT ? ")" : "", what);
    cvg_error_hint(err, "run converge audit verify to see where the chain breaks, and restore the "
                        "journal from a backup");
    rc = CVG_ETAMPER;
  }
  free(r);
  sqlite3_finalize(st);
  return rc;
}

int cvg_journal_newest(cvg_journal *j, const char *dataset, const unsigned char *key,
                       size_t key_len, int kind, int64_t *seq, cvg_error *err) {
  sqlite3_stmt *st = NULL;
  *seq = 0;
  if (kind < 0 || kind >= CVG_J__COUNT)
    return cvg_error_set(err, CVG_EINVAL, j->path, "no such record kind");
  if (sqlite3_prepare_v2(j->db,
                         "SELECT max(seq) FROM converge_journal"
                         " WHERE dataset = ?1 AND key = ?2 AND kind = ?3",
                         -1, &st, NULL) != SQLITE_OK)
    return db_err(j, err, "cannot read the journal");
  sqlite3_bind_text(st, 1, dataset, -1, SQLITE_STATIC);
  sqlite3_bind_blob(st, 2, key_len ? (const void *)key : "", (int)key_len, SQLITE_STATIC);
  sqlite3_bind_text(st, 3, cvg_jkind_names[kind], -1, SQLITE_STATIC);
  int s = sqlite3_step(st);
  if (s == SQLITE_ROW)
    *seq = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return s == SQLITE_ROW || s == SQLITE_DONE ? CVG_OK : db_err(j, err, "cannot read the journal");
}

int cvg_journal_runs_from(cvg_journal *j, const char *dataset, double since, int64_t *seq,
                          cvg_error *err) {
  sqlite3_stmt *st = NULL;
  /* newest first, through the index of run records; unauthenticated: it only chooses where the
   * caller's (authenticated) scan starts, and a record edited to end this walk early is itself
   * inside that scan */
  if (sqlite3_prepare_v2(j->db,
                         "SELECT seq, at_us, json_extract(body, '$.status') = 'refused'"
                         " FROM converge_journal WHERE dataset = ?1 AND kind = 'run'"
                         " ORDER BY seq DESC",
                         -1, &st, NULL) != SQLITE_OK)
    return db_err(j, err, "cannot read the journal");
  sqlite3_bind_text(st, 1, dataset, -1, SQLITE_STATIC);
  int64_t at_since = to_us(since), found = 0;
  int s;
  while ((s = sqlite3_step(st)) == SQLITE_ROW) {
    found = sqlite3_column_int64(st, 0);
    if (sqlite3_column_int64(st, 1) < at_since && !sqlite3_column_int(st, 2))
      break;
  }
  sqlite3_finalize(st);
  if (s != SQLITE_ROW && s != SQLITE_DONE)
    return db_err(j, err, "cannot read the journal");
  *seq = found;
  return CVG_OK;
}

int cvg_journal_scan(cvg_journal *j, int64_t after, const char *dataset, const unsigned char *key,
                     size_t key_len, double since, int kind, cvg_journal_cb cb, void *ctx,
                     cvg_error *err) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(
          j->db,
          "SELECT seq, at_us, kind, dataset, key, body, prev, hash"
          " FROM converge_journal WHERE seq > ?1 AND (?2 IS NULL OR dataset = ?2)"
          " AND (?3 IS NULL OR key = ?3) AND at_us >= ?4 AND (?5 IS NULL OR kind = ?5)"
          " AND (?6 IS NULL OR seq <= ?6) ORDER BY seq",
          -1, &st, NULL) != SQLITE_OK)
    return db_err(j, err, "cannot read the journal");
  sqlite3_bind_int64(st, 1, after);
  if (dataset)
    sqlite3_bind_text(st, 2, dataset, -1, SQLITE_STATIC);
  if (key && key_len)
    sqlite3_bind_blob(st, 3, key, (int)key_len, SQLITE_STATIC);
  sqlite3_bind_int64(st, 4, to_us(since));
  if (kind >= 0 && kind < CVG_J__COUNT)
    sqlite3_bind_text(st, 5, cvg_jkind_names[kind], -1, SQLITE_STATIC);
  /* a writer reads only what it authenticated, in one snapshot with the authentication */
  int snapshot = !j->read_only && !j->in_group;
  int rc = CVG_OK, s;
  if (snapshot && sqlite3_exec(j->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
    rc = db_err(j, err, "cannot read the journal");
  if (rc == CVG_OK && !j->read_only) {
    if ((rc = load_head(j, err)) == CVG_OK && (rc = extend_trust(j, err)) == CVG_OK)
      rc = authenticate(j, after, err);
    sqlite3_bind_int64(st, 6, j->verified_seq);
  }
  cvg_jrecord *r = rc ? NULL : malloc(sizeof *r);
  if (rc == CVG_OK && !r)
    rc = cvg_error_set(err, CVG_ENOMEM, j->path, "out of memory");
  while (rc == CVG_OK && (s = sqlite3_step(st)) == SQLITE_ROW) {
    const char *why;
    if (row_record(st, r, &why) != 0) {
      rc = cvg_error_set(err, CVG_ETAMPER, j->path, "record %lld is malformed: %s",
                         (long long)sqlite3_column_int64(st, 0), why);
      break;
    }
    if (cb(ctx, r))
      break;
  }
  free(r);
  sqlite3_finalize(st);
  if (snapshot)
    sqlite3_exec(j->db, "COMMIT", NULL, NULL, NULL);
  return rc;
}
