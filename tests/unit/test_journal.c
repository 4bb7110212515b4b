/* SPDX-License-Identifier: MIT */
/* The repair journal: appends chain, groups are atomic, and every kind of tampering - a changed,
 * deleted, inserted or reordered record - fails verification naming the record. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "converge/journal.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64], path[128];

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof dir, "/tmp/converge-test-journal-XXXXXX"); /* mkdtemp template */
  if (!mkdtemp(dir))
    return -1;
  snprintf(path, sizeof path, "%s/journal.db", dir);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char p[200];
  const char *suffix[] = {"", "-wal", "-shm"};
  for (int i = 0; i < 3; i++) {
    snprintf(p, sizeof p, "%s%s", path, suffix[i]);
    unlink(p);
  }
  rmdir(dir);
  return 0;
}

static void append(cvg_journal *j, cvg_jkind kind, const char *body, int64_t want_seq) {
  cvg_jrecord r;
  memset(&r, 0, sizeof r);
  r.kind = kind;
  r.at = 1795700000.123456;
  snprintf(r.dataset, sizeof r.dataset, "accounts");
  r.key[0] = 0x15; /* any bytes: the journal does not decode keys */
  r.key[1] = 0x11;
  r.key_len = 2;
  r.body = (char *)body;
  r.body_len = strlen(body);
  cvg_error err;
  assert_int_equal(cvg_journal_append(j, &r, &err), CVG_OK);
  assert_int_equal(r.seq, want_seq);
}

static void build(int n) {
  unlink(path);
  cvg_journal *j = NULL;
  cvg_error err;
  assert_int_equal(cvg_journal_open(&j, path, CVG_JOURNAL_CREATE, &err), CVG_OK);
  for (int i = 1; i <= n; i++) {
    char body[64];
    snprintf(body, sizeof body, "{\"i\":%d}", i);
    append(j, (cvg_jkind)(i % CVG_J__COUNT), body, i);
  }
  cvg_journal_close(j);
}

static void sql(const char *stmt) {
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  char *msg = NULL;
  if (sqlite3_exec(db, stmt, NULL, NULL, &msg) != SQLITE_OK)
    fail_msg("%s: %s", stmt, msg);
  sqlite3_close(db);
}

/* verify and return the message (empty when intact) */
static const char *verify(int64_t *n) {
  static cvg_error err;
  cvg_journal *j = NULL;
  cvg_error_clear(&err);
  assert_int_equal(cvg_journal_open(&j, path, CVG_JOURNAL_READ, &err), CVG_OK);
  int rc = cvg_journal_verify(j, n, &err);
  cvg_journal_close(j);
  assert_true(rc == CVG_OK || rc == CVG_ETAMPER);
  return rc == CVG_OK ? "" : err.msg;
}

static void test_chain(void **state) {
  (void)state;
  build(10);
  int64_t n;
  assert_string_equal(verify(&n), "");
  assert_int_equal(n, 10);
  /* reopening continues the chain */
  cvg_journal *j = NULL;
  cvg_error err;
  assert_int_equal(cvg_journal_open(&j, path, CVG_JOURNAL_WRITE, &err), CVG_OK);
  append(j, CVG_J_OUTCOME, "{\"result\":\"applied\"}", 11);
  cvg_journal_close(j);
  assert_string_equal(verify(&n), "");
  assert_int_equal(n, 11);
}

static void test_group_is_atomic(void **state) {
  (void)state;
  build(3);
  cvg_journal *j = NULL;
  cvg_error err;
  assert_int_equal(cvg_journal_open(&j, path, CVG_JOURNAL_WRITE, &err), CVG_OK);
  assert_int_equal(cvg_journal_begin(j, &err), CVG_OK);
  append(j, CVG_J_DECISION, "{\"id\":1}", 4);
  append(j, CVG_J_MUTATION, "{\"decision\":1}", 5);
  cvg_journal_rollback(j); /* as if the process died before the commit */
  append(j, CVG_J_DECISION, "{\"id\":2}", 4);
  cvg_journal_close(j);
  int64_t n;
  assert_string_equal(verify(&n), "");
  assert_int_equal(n, 4);
}

static void test_changed(void **state) {
  (void)state;
  build(10);
  sql("UPDATE converge_journal SET body = '{\"i\":999}' WHERE seq = 6");
  int64_t n;
  const char *m = verify(&n);
  assert_non_null(strstr(m, "record 6"));
  assert_non_null(strstr(m, "changed after it was written"));
  assert_int_equal(n, 5);
  build(10);
  sql("UPDATE converge_journal SET at_us = at_us + 1 WHERE seq = 3");
  assert_non_null(strstr(verify(&n), "record 3"));
  build(10);
  sql("UPDATE converge_journal SET kind = 'approval' WHERE seq = 2 AND kind != 'approval'");
  assert_non_null(strstr(verify(&n), "record 2"));
}

static void test_deleted(void **state) {
  (void)state;
  build(10);
  sql("DELETE FROM converge_journal WHERE seq = 4");
  int64_t n;
  const char *m = verify(&n);
  assert_non_null(strstr(m, "record 4 is missing"));
  assert_int_equal(n, 3);
  /* deleted and the rest renumbered to hide the gap: the chain breaks at the first moved one */
  build(10);
  sql("DELETE FROM converge_journal WHERE seq = 4;"
      "UPDATE converge_journal SET seq = seq - 1 WHERE seq > 4");
  m = verify(&n);
  assert_non_null(strstr(m, "record 4"));
  /* the first record removed */
  build(5);
  sql("DELETE FROM converge_journal WHERE seq = 1");
  assert_non_null(strstr(verify(&n), "record 1 is missing"));
}

static void test_reordered_and_inserted(void **state) {
  (void)state;
  build(10);
  sql("UPDATE converge_journal SET seq = -1 WHERE seq = 7;"
      "UPDATE converge_journal SET seq = 7 WHERE seq = 8;"
      "UPDATE converge_journal SET seq = 8 WHERE seq = -1");
  int64_t n;
  const char *m = verify(&n);
  assert_non_null(strstr(m, "record 7"));
  assert_int_equal(n, 6);
  /* a forged record appended at the end with a made-up hash */
  build(5);
  sql("INSERT INTO converge_journal SELECT 6, at_us, kind, dataset, key, body, hash, prev "
      "FROM converge_journal WHERE seq = 5");
  assert_non_null(strstr(verify(&n), "record 6"));
}

static void test_empty_and_garbage(void **state) {
  (void)state;
  build(0);
  int64_t n = -1;
  assert_string_equal(verify(&n), "");
  assert_int_equal(n, 0);
  build(3);
  sql("UPDATE converge_journal SET hash = x'00' WHERE seq = 2");
  assert_non_null(strstr(verify(&n), "record 2 is malformed"));
  /* not a journal at all */
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs("this is not a database, it is just text that is long enough to be read as a header....",
        f);
  fclose(f);
  char p[200];
  snprintf(p, sizeof p, "%s-wal", path);
  unlink(p);
  cvg_journal *j = NULL;
  cvg_error err;
  assert_int_equal(cvg_journal_open(&j, path, CVG_JOURNAL_READ, &err), CVG_ENOTDB);
  assert_null(j);
}

/* The file's bytes, for "nothing changed" checks. OWNED: free(). */
static unsigned char *slurp(const char *file, long *len) {
  FILE *f = fopen(file, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  *len = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc((size_t)*len + 1);
  assert_non_null(b);
  assert_int_equal(fread(b, 1, (size_t)*len, f), (size_t)*len);
  fclose(f);
  return b;
}

/* A replica (any database without the journal table) is never taken for a journal: reading or
 * appending to it is refused and leaves its bytes as they were; only an empty file is created. */
static void test_not_a_journal(void **state) {
  (void)state;
  unlink(path);
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db,
                                "CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INT);"
                                "INSERT INTO accounts VALUES (1, 10), (2, 20);",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  sqlite3_close(db);
  long n0, n1;
  unsigned char *before = slurp(path, &n0);
  const cvg_journal_mode modes[] = {CVG_JOURNAL_READ, CVG_JOURNAL_WRITE, CVG_JOURNAL_CREATE};
  for (int i = 0; i < 3; i++) {
    cvg_journal *j = NULL;
    cvg_error err;
    cvg_error_clear(&err);
    assert_int_equal(cvg_journal_open(&j, path, modes[i], &err), CVG_ENOTDB);
    assert_null(j);
    assert_non_null(strstr(err.msg, "not a converge journal"));
  }
  unsigned char *after = slurp(path, &n1);
  assert_int_equal(n0, n1);
  assert_memory_equal(before, after, (size_t)n0);
  free(before);
  free(after);
  char p[200];
  snprintf(p, sizeof p, "%s-wal", path);
  assert_int_not_equal(access(p, F_OK), 0);
  /* a missing file: reading says so and creates nothing; appending without create too */
  unlink(path);
  cvg_journal *j = NULL;
  cvg_error err;
  assert_int_equal(cvg_journal_open(&j, path, CVG_JOURNAL_READ, &err), CVG_ENOENT);
  assert_int_not_equal(access(path, F_OK), 0);
  assert_int_equal(cvg_journal_open(&j, path, CVG_JOURNAL_WRITE, &err), CVG_ENOENT);
  assert_int_not_equal(access(path, F_OK), 0);
  /* an empty file becomes a journal only when asked to create one */
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fclose(f);
  assert_int_equal(cvg_journal_open(&j, path, CVG_JOURNAL_READ, &err), CVG_ENOTDB);
  assert_int_equal(cvg_journal_open(&j, path, CVG_JOURNAL_WRITE, &err), CVG_ENOTDB);
  assert_int_equal(cvg_journal_open(&j, path, CVG_JOURNAL_CREATE, &err), CVG_OK);
  cvg_journal_close(j);
  /* a journal read through a read-only handle cannot be appended to */
  build(2);
  assert_int_equal(cvg_journal_open(&j, path, CVG_JOURNAL_READ, &err), CVG_OK);
  cvg_jrecord *r = calloc(1, sizeof *r);
  assert_non_null(r);
  r->kind = CVG_J_OUTCOME;
  r->body = "{}";
  r->body_len = 2;
  assert_int_not_equal(cvg_journal_append(j, r, &err), CVG_OK);
  free(r);
  cvg_journal_close(j);
  int64_t n;
  assert_string_equal(verify(&n), "");
  assert_int_equal(n, 2);
}

static int count_cb(void *ctx, const cvg_jrecord *r) {
  (void)r;
  (*(int *)ctx)++;
  return 0;
}

/* Writers trust only what verifies: the head saved outside the journal catches removed records,
 * and a record read by a writer is checked against its hash and its successor's link. */
static void test_trust(void **state) {
  (void)state;
  char head[200];
  snprintf(head, sizeof head, "%s/state.db", dir);
  unlink(head);
  build(6);
  cvg_journal_opts o;
  memset(&o, 0, sizeof o);
  o.mode = CVG_JOURNAL_WRITE;
  o.head_path = head;
  o.scrub_records = 1; /* the scrub re-verifies record 1 only: test_scrub tests it */
  cvg_journal *j = NULL;
  cvg_error err;
  cvg_error_clear(&err);
  assert_int_equal(cvg_journal_open_opts(&j, path, &o, &err), CVG_OK);
  append(j, CVG_J_OUTCOME, "{\"n\":7}", 7);
  cvg_journal_close(j); /* saves head 7 */
  int64_t seq;
  unsigned char hash[32];
  assert_int_equal(cvg_journal_saved_head(head, path, &seq, hash, &err), CVG_OK);
  assert_int_equal(seq, 7);
  /* an edited old record: the writer opens (the chain from the head verifies) but refuses to
   * read it */
  sql("UPDATE converge_journal SET body = '{\"i\":9}' WHERE seq = 2");
  assert_int_equal(cvg_journal_open_opts(&j, path, &o, &err), CVG_OK);
  int n = 0;
  assert_int_equal(cvg_journal_scan(j, 0, NULL, NULL, 0, 0, -1, count_cb, &n, &err), CVG_ETAMPER);
  assert_int_equal(n, 0); /* nothing is handed out before the segment is authenticated */
  assert_non_null(strstr(err.msg, "record 2"));
  /* even a scan for other records refuses: the edited record lies in the segment read */
  n = 0;
  assert_int_equal(cvg_journal_scan(j, 0, NULL, NULL, 0, 0, CVG_J_OUTCOME, count_cb, &n, &err),
                   CVG_ETAMPER);
  /* a scan that starts after it does not depend on it */
  assert_int_equal(cvg_journal_scan(j, 2, NULL, NULL, 0, 0, -1, count_cb, &n, &err), CVG_OK);
  assert_int_equal(n, 5);
  cvg_journal_close(j);
  /* the edit with its own hash recomputed and the next record's link rewritten to match, as
   * one record of another dataset might be: the chain above still gives it away */
  build(6);
  unlink(head);
  assert_int_equal(cvg_journal_open_opts(&j, path, &o, &err), CVG_OK); /* head saved: 6 */
  cvg_journal_close(j);
  {
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT seq, at_us, kind, dataset, key, body, prev FROM "
                                        "converge_journal WHERE seq = 2",
                                        -1, &q, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    cvg_jrecord *r = calloc(1, sizeof *r);
    assert_non_null(r);
    r->seq = 2;
    r->at = (double)sqlite3_column_int64(q, 1) / 1e6;
    r->kind = CVG_J_MUTATION; /* build(): record i is of kind i % CVG_J__COUNT */
    assert_string_equal((const char *)sqlite3_column_text(q, 2), "mutation");
    snprintf(r->dataset, sizeof r->dataset, "%s", (const char *)sqlite3_column_text(q, 3));
    r->key_len = (size_t)sqlite3_column_bytes(q, 4);
    memcpy(r->key, sqlite3_column_blob(q, 4), r->key_len);
    r->body = (char *)"{\"i\":99}";
    r->body_len = strlen(r->body);
    memcpy(r->prev, sqlite3_column_blob(q, 6), 32);
    sqlite3_finalize(q);
    cvg_journal_hash(r, r->hash);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "UPDATE converge_journal SET body = ?1, hash = ?2 WHERE "
                                        "seq = 2; ",
                                        -1, &q, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(q, 1, r->body, -1, SQLITE_STATIC);
    sqlite3_bind_blob(q, 2, r->hash, 32, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(q), SQLITE_DONE);
    sqlite3_finalize(q);
    assert_int_equal(
        sqlite3_prepare_v2(db, "UPDATE converge_journal SET prev = ?1 WHERE seq = 3", -1, &q, NULL),
        SQLITE_OK);
    sqlite3_bind_blob(q, 1, r->hash, 32, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(q), SQLITE_DONE);
    sqlite3_finalize(q);
    sqlite3_close(db);
    free(r);
  }
  assert_int_equal(cvg_journal_open_opts(&j, path, &o, &err), CVG_OK);
  n = 0;
  assert_int_equal(cvg_journal_scan(j, 1, NULL, NULL, 0, 0, CVG_J_MUTATION, count_cb, &n, &err),
                   CVG_ETAMPER);
  assert_int_equal(n, 0);
  assert_non_null(strstr(err.msg, "record 3"));
  cvg_journal_close(j);
  /* the newest record removed: no writer opens */
  sql("DELETE FROM converge_journal WHERE seq = 6");
  cvg_error_clear(&err);
  assert_int_equal(cvg_journal_open_opts(&j, path, &o, &err), CVG_ETAMPER);
  assert_null(j);
  assert_non_null(strstr(err.msg, "newest records were removed"));
  /* the head record replaced by another with a valid hash: the saved hash differs */
  build(5);
  assert_int_equal(cvg_journal_open(&j, path, CVG_JOURNAL_WRITE, &err), CVG_OK);
  append(j, CVG_J_OUTCOME, "{\"forged\":6}", 6);
  cvg_journal_close(j);
  cvg_error_clear(&err);
  assert_int_equal(cvg_journal_open_opts(&j, path, &o, &err), CVG_ETAMPER);
  assert_non_null(strstr(err.msg, "saved head"));
  unlink(head);
}

/* Below the saved head, each writer re-verifies one slice of the chain from a cursor beside the
 * head: an edit no scan reads is refused by the writer whose slice holds it, and by every writer
 * after, and nothing before then is mistaken for it. */
static void test_scrub(void **state) {
  (void)state;
  char head[200];
  snprintf(head, sizeof head, "%s/state.db", dir);
  unlink(head);
  build(9);
  cvg_journal_opts o;
  memset(&o, 0, sizeof o);
  o.mode = CVG_JOURNAL_WRITE;
  o.head_path = head;
  o.scrub_records = 3;
  cvg_journal *j = NULL;
  cvg_error err;
  cvg_error_clear(&err);
  assert_int_equal(cvg_journal_open_opts(&j, path, &o, &err), CVG_OK); /* whole chain */
  append(j, CVG_J_OUTCOME, "{\"n\":10}", 10);
  cvg_journal_close(j); /* saves head 10 */
  sql("UPDATE converge_journal SET body = '{\"i\":66}' WHERE seq = 6");
  /* slices 1-3 and 3-6: the first opens, the second refuses naming record 6 */
  assert_int_equal(cvg_journal_open_opts(&j, path, &o, &err), CVG_OK);
  cvg_journal_close(j);
  cvg_error_clear(&err);
  assert_int_equal(cvg_journal_open_opts(&j, path, &o, &err), CVG_ETAMPER);
  assert_null(j);
  assert_non_null(strstr(err.msg, "record 6"));
  /* a refusal does not move the cursor: the next writer refuses too */
  cvg_error_clear(&err);
  assert_int_equal(cvg_journal_open_opts(&j, path, &o, &err), CVG_ETAMPER);
  assert_non_null(strstr(err.msg, "record 6"));
  /* a record removed in the middle: the slice that holds it refuses */
  build(9);
  unlink(head);
  assert_int_equal(cvg_journal_open_opts(&j, path, &o, &err), CVG_OK);
  append(j, CVG_J_OUTCOME, "{\"n\":10}", 10);
  cvg_journal_close(j);
  sql("DELETE FROM converge_journal WHERE seq = 2");
  cvg_error_clear(&err);
  assert_int_equal(cvg_journal_open_opts(&j, path, &o, &err), CVG_ETAMPER);
  assert_non_null(strstr(err.msg, "record 2 is missing"));
  /* an intact chain: the cursor goes round (1-3, 3-6, 6-9, 9-10, then 1-3 again), and every
   * writer opens */
  build(9);
  unlink(head);
  assert_int_equal(cvg_journal_open_opts(&j, path, &o, &err), CVG_OK);
  append(j, CVG_J_OUTCOME, "{\"n\":10}", 10);
  cvg_journal_close(j);
  for (int i = 0; i < 6; i++) {
    cvg_error_clear(&err);
    assert_int_equal(cvg_journal_open_opts(&j, path, &o, &err), CVG_OK);
    cvg_journal_close(j);
  }
  unlink(head);
}

/* A keyed chain verifies only with its key, and a key never verifies a plain chain. */
static void test_keyed(void **state) {
  (void)state;
  static const unsigned char key[] = "0123456789abcdef0123456789abcdef";
  unlink(path);
  cvg_journal_opts o;
  memset(&o, 0, sizeof o);
  o.mode = CVG_JOURNAL_CREATE;
  o.key = key;
  o.key_len = 32;
  cvg_journal *j = NULL;
  cvg_error err;
  assert_int_equal(cvg_journal_open_opts(&j, path, &o, &err), CVG_OK);
  append(j, CVG_J_DECISION, "{\"k\":1}", 1);
  append(j, CVG_J_OUTCOME, "{\"k\":2}", 2);
  cvg_journal_close(j);
  int64_t n = 0;
  o.mode = CVG_JOURNAL_READ;
  assert_int_equal(cvg_journal_open_opts(&j, path, &o, &err), CVG_OK);
  assert_int_equal(cvg_journal_keyed(j), 1);
  assert_int_equal(cvg_journal_verify(j, &n, &err), CVG_OK);
  assert_int_equal(n, 2);
  cvg_journal_close(j);
  /* without the key: refused as such, not called tampered */
  assert_int_equal(cvg_journal_open(&j, path, CVG_JOURNAL_READ, &err), CVG_OK);
  assert_int_equal(cvg_journal_verify(j, &n, &err), CVG_EINVAL);
  cvg_journal_close(j);
  /* another key: every record fails */
  static const unsigned char other[] = "fedcba9876543210fedcba9876543210";
  o.key = other;
  assert_int_equal(cvg_journal_open_opts(&j, path, &o, &err), CVG_OK);
  assert_int_equal(cvg_journal_verify(j, &n, &err), CVG_ETAMPER);
  assert_int_equal(n, 0);
  cvg_journal_close(j);
  /* a plain chain with a key given: refused */
  build(2);
  o.key = key;
  o.mode = CVG_JOURNAL_WRITE;
  assert_int_equal(cvg_journal_open_opts(&j, path, &o, &err), CVG_ETAMPER);
  assert_null(j);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_chain),
      cmocka_unit_test(test_group_is_atomic),
      cmocka_unit_test(test_changed),
      cmocka_unit_test(test_deleted),
      cmocka_unit_test(test_reordered_and_inserted),
      cmocka_unit_test(test_empty_and_garbage),
      cmocka_unit_test(test_not_a_journal),
      cmocka_unit_test(test_trust),
      cmocka_unit_test(test_scrub),
      cmocka_unit_test(test_keyed),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
