/* SPDX-License-Identifier: MIT */
/*
 * The repair journal (SQLite), hash-chained with SHA-256 (OpenSSL libcrypto).
 *
 * Record format. One row per record in the table converge_journal:
 *
 *   seq     INTEGER PRIMARY KEY   1, 2, 3, ... without gaps
 *   at_us   INTEGER               microseconds since the epoch
 *   kind    TEXT                  divergence | decision | mutation | outcome | revert | approval
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
 * Purges are decisions with policy "purge" and delete mutations on every replica.
 *
 * Durability: WAL mode with synchronous=FULL: a record is on disk when its transaction commits,
 * and a crash leaves whole records or none (SQLite's atomic commit); a group of appends
 * (cvg_journal_begin/commit) is durable together. The journal is append-only: converge never
 * updates or deletes a record.
 */
#include "converge/journal.h"

#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const cvg_jkind_names[] = {"divergence", "decision", "mutation",
                                       "outcome",    "revert",   "approval"};

struct cvg_journal {
  sqlite3 *db;
  char path[512];
  sqlite3_stmt *ins; /* OWNED */
  int64_t last_seq;
  unsigned char last_hash[32];
  int in_group;
  EVP_MD *sha256;    /* OWNED; fetched once, not per record */
  EVP_MD_CTX *mdctx; /* OWNED; reused for every record */
};

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

int cvg_journal_open(cvg_journal **out, const char *path, int create, cvg_error *err) {
  *out = NULL;
  cvg_journal *j = calloc(1, sizeof *j);
  if (!j)
    return cvg_error_set(err, CVG_ENOMEM, path, "out of memory");
  snprintf(j->path, sizeof j->path, "%s", path);
  int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0) | SQLITE_OPEN_NOMUTEX;
  int rc = sqlite3_open_v2(path, &j->db, flags, NULL);
  if (rc != SQLITE_OK) {
    cvg_error_set(err, rc == SQLITE_CANTOPEN ? CVG_ENOENT : CVG_EIO, path,
                  "cannot open the journal: %s",
                  j->db ? sqlite3_errmsg(j->db) : sqlite3_errstr(rc));
    cvg_error_hint(err, create ? "set journal: to a writable path in the catalog"
                               : "give the journal's path (--journal) or the catalog (-c); it is "
                                 "created by the first repair");
    cvg_journal_close(j);
    return err ? err->status : CVG_EIO;
  }
  sqlite3_busy_timeout(j->db, 10000);
  if (!(j->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL)) || !(j->mdctx = EVP_MD_CTX_new())) {
    cvg_error_set(err, CVG_ENOMEM, path, "cannot set up SHA-256 (OpenSSL)");
    cvg_journal_close(j);
    return err ? err->status : CVG_ENOMEM;
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
      "CREATE INDEX IF NOT EXISTS converge_journal_key ON converge_journal(dataset, key);",
      NULL, NULL, &msg);
  if (rc != SQLITE_OK) {
    cvg_error_set(err, rc == SQLITE_NOTADB ? CVG_ENOTDB : CVG_EIO, path,
                  "cannot prepare the journal: %s", msg ? msg : sqlite3_errstr(rc));
    cvg_error_hint(err, "is it a converge journal, on a writable file system?");
    sqlite3_free(msg);
    cvg_journal_close(j);
    return err ? err->status : CVG_EIO;
  }
  if (sqlite3_prepare_v2(j->db, "INSERT INTO converge_journal VALUES (?,?,?,?,?,?,?,?)", -1,
                         &j->ins, NULL) != SQLITE_OK ||
      (rc = load_head(j, err)) != CVG_OK) {
    if (!rc)
      db_err(j, err, "cannot prepare the journal");
    cvg_journal_close(j);
    return err ? err->status : CVG_EIO;
  }
  *out = j;
  return CVG_OK;
}

void cvg_journal_close(cvg_journal *j) {
  if (!j)
    return;
  sqlite3_finalize(j->ins);
  sqlite3_close(j->db);
  EVP_MD_CTX_free(j->mdctx);
  EVP_MD_free(j->sha256);
  free(j);
}

int cvg_journal_begin(cvg_journal *j, cvg_error *err) {
  if (sqlite3_exec(j->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
    return db_err(j, err, "cannot begin a journal transaction");
  j->in_group = 1;
  return load_head(j, err); /* another process may have appended */
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

/* The record's hash with context c and digest md (both the caller's). */
static void hash_with(EVP_MD_CTX *c, const EVP_MD *md, const cvg_jrecord *r,
                      unsigned char out[32]) {
  static const char magic[] = "converge-journal-v1";
  unsigned char hdr[8 + 32 + 1 + 8], len[4];
  be64(hdr, (uint64_t)r->seq);
  memcpy(hdr + 8, r->prev, 32);
  hdr[40] = (unsigned char)r->kind;
  be64(hdr + 41, (uint64_t)to_us(r->at));
  unsigned int n = 0;
  if (!c || !md || EVP_DigestInit_ex(c, md, NULL) != 1) {
    memset(out, 0, 32); /* matches no record: verification names it */
    return;
  }
  EVP_DigestUpdate(c, magic, sizeof magic); /* with its NUL */
  EVP_DigestUpdate(c, hdr, sizeof hdr);
  size_t dl = strlen(r->dataset);
  be32(len, (uint32_t)dl);
  EVP_DigestUpdate(c, len, 4);
  EVP_DigestUpdate(c, r->dataset, dl);
  be32(len, (uint32_t)r->key_len);
  EVP_DigestUpdate(c, len, 4);
  EVP_DigestUpdate(c, r->key, r->key_len);
  be32(len, (uint32_t)r->body_len);
  EVP_DigestUpdate(c, len, 4);
  EVP_DigestUpdate(c, r->body, r->body_len);
  EVP_DigestFinal_ex(c, out, &n);
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
  hash_with(j->mdctx, j->sha256, r, r->hash);
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

int cvg_journal_verify(cvg_journal *j, int64_t *records, cvg_error *err) {
  *records = 0;
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(j->db,
                         "SELECT seq, at_us, kind, dataset, key, body, prev, hash"
                         " FROM converge_journal ORDER BY seq",
                         -1, &st, NULL) != SQLITE_OK)
    return db_err(j, err, "cannot read the journal");
  cvg_jrecord *r = malloc(sizeof *r);
  if (!r) {
    sqlite3_finalize(st);
    return cvg_error_set(err, CVG_ENOMEM, j->path, "out of memory");
  }
  unsigned char prev[32] = {0}, h[32];
  int64_t expect = 1;
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
    if (memcmp(r->prev, prev, 32) != 0) {
      rc = cvg_error_set(err, CVG_ETAMPER, where,
                         "record %lld does not follow record %lld: its previous-record hash does "
                         "not match (a record was changed, removed, inserted or reordered)",
                         (long long)r->seq, (long long)(r->seq - 1));
      break;
    }
    hash_with(j->mdctx, j->sha256, r, h);
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
  if (rc == CVG_ETAMPER)
    cvg_error_hint(err, "the journal no longer proves what converge did; keep this copy for the "
                        "investigation and compare it with a backup");
  if (rc == CVG_OK && err) {
    char hx[65];
    hex(hx, prev, 32);
    snprintf(err->hint, sizeof err->hint, "%s", hx); /* the head hash, for the caller to show */
  }
  free(r);
  sqlite3_finalize(st);
  return rc;
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
          " ORDER BY seq",
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
  cvg_jrecord *r = malloc(sizeof *r);
  int rc = r ? CVG_OK : cvg_error_set(err, CVG_ENOMEM, j->path, "out of memory"), s;
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
  return rc;
}
