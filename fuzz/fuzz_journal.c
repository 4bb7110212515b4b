/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: journal records from outside (a journal file handed to `converge audit` may
 * have been tampered with in any way). The input becomes rows of the journal table - fields cut
 * at 0xff bytes: seq, at_us, kind, dataset, key, body, prev, hash, then the next row - and
 * verification and a full scan must neither crash nor accept a chain they did not check: a
 * journal that verifies must also re-verify after a genuine append.
 */
#include "converge/journal.h"

#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int count(void *ctx, const cvg_jrecord *r) {
  (void)r;
  (*(int64_t *)ctx)++;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char path[96], p2[112];
  snprintf(path, sizeof path, "/dev/shm/converge-fuzz-journal-%d.db", (int)getpid());
  const char *suffix[] = {"", "-wal", "-shm"};
  for (int i = 0; i < 3; i++) {
    snprintf(p2, sizeof p2, "%s%s", path, suffix[i]);
    unlink(p2);
  }
  cvg_journal *j = NULL;
  cvg_error err;
  if (cvg_journal_open(&j, path, CVG_JOURNAL_CREATE, &err) != CVG_OK)
    abort();
  cvg_journal_close(j);
  sqlite3 *db = NULL;
  if (sqlite3_open(path, &db) != SQLITE_OK)
    abort();
  sqlite3_stmt *st = NULL;
  sqlite3_prepare_v2(db, "INSERT OR IGNORE INTO converge_journal VALUES (?,?,?,?,?,?,?,?)", -1, &st,
                     NULL);
  size_t pos = 0;
  int field = 0, rows = 0;
  while (pos <= size && rows < 64) {
    const uint8_t *f = data + pos;
    const uint8_t *end = memchr(f, 0xff, size - pos);
    size_t len = end ? (size_t)(end - f) : size - pos;
    switch (field) {
    case 0: /* seq: a small number, so rows line up with a chain */
      sqlite3_bind_int64(st, 1, len ? (int64_t)(f[0] % 8) + 1 : rows + 1);
      break;
    case 1:
      sqlite3_bind_int64(st, 2, (int64_t)len * 1000003);
      break;
    case 2: {
      static const char *const kinds[] = {"divergence", "decision", "mutation", "outcome",
                                          "revert",     "approval", "run"};
      if (len && f[0] < 7)
        sqlite3_bind_text(st, 3, kinds[f[0]], -1, SQLITE_STATIC);
      else
        sqlite3_bind_text(st, 3, (const char *)f, (int)len, SQLITE_TRANSIENT);
      break;
    }
    case 3:
      sqlite3_bind_text(st, 4, (const char *)f, (int)len, SQLITE_TRANSIENT);
      break;
    case 4:
      sqlite3_bind_blob(st, 5, f, (int)len, SQLITE_TRANSIENT);
      break;
    case 5:
      sqlite3_bind_text(st, 6, (const char *)f, (int)len, SQLITE_TRANSIENT);
      break;
    case 6:
      sqlite3_bind_blob(st, 7, f, (int)len, SQLITE_TRANSIENT);
      break;
    case 7:
      sqlite3_bind_blob(st, 8, f, (int)len, SQLITE_TRANSIENT);
      sqlite3_step(st);
      sqlite3_reset(st);
      sqlite3_clear_bindings(st);
      rows++;
      break;
    }
    field = (field + 1) % 8;
    if (!end)
      break;
    pos += len + 1;
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  if (cvg_journal_open(&j, path, CVG_JOURNAL_READ, &err) != CVG_OK)
    abort();
  int64_t n = 0, seen = 0;
  int rc = cvg_journal_verify(j, &n, &err);
  if (rc != CVG_OK && rc != CVG_ETAMPER)
    abort();
  cvg_journal_scan(j, 0, NULL, NULL, 0, 0, -1, count, &seen, &err);
  cvg_journal_close(j);
  j = NULL;
  /* a writer verifies before it may append: it opens exactly the chains verify accepts */
  int wrc = cvg_journal_open(&j, path, CVG_JOURNAL_WRITE, &err);
  if ((wrc == CVG_OK) != (rc == CVG_OK))
    abort();
  if (rc == CVG_OK) {
    /* an intact chain stays intact after a genuine append */
    cvg_jrecord r;
    memset(&r, 0, sizeof r);
    r.kind = CVG_J_OUTCOME;
    r.body = (char *)"{}";
    r.body_len = 2;
    if (cvg_journal_append(j, &r, &err) != CVG_OK || cvg_journal_verify(j, &n, &err) != CVG_OK)
      abort();
  }
  cvg_journal_close(j);
  for (int i = 0; i < 3; i++) {
    snprintf(p2, sizeof p2, "%s%s", path, suffix[i]);
    unlink(p2);
  }
  return 0;
}
