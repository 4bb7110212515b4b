/* SPDX-License-Identifier: MIT */
/*
 * The SQLite replica and the diff engine on small tables made here: key discovery, scan order,
 * NULLs, WITHOUT ROWID, non-binary collations, fetch, read-only opening, and the errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "converge/diff.h"
#include "converge/store.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

static void make_db(const char *name, const char *sql) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  unlink(path);
  sqlite3 *db;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  char *msg = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
    fail_msg("setup SQL failed: %s", msg);
  sqlite3_close(db);
}

static char *url(const char *name, const char *table) {
  static char buf[4][600];
  static int k;
  char *b = buf[k++ % 4];
  snprintf(b, 600, "sqlite://%s/%s?table=%s", dir, name, table);
  return b;
}

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof dir, "/tmp/cvg-test-store-XXXXXX");
  return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd) == 0 ? 0 : -1;
}

static void test_describe_discovers_key(void **state) {
  (void)state;
  make_db("d.db", "CREATE TABLE t (b TEXT, a INTEGER, c REAL, PRIMARY KEY (a, b)) WITHOUT ROWID;"
                  "CREATE TABLE u (id INTEGER PRIMARY KEY, name TEXT COLLATE NOCASE);");
  cvg_store *st;
  cvg_error err;
  assert_int_equal(cvg_store_open(&st, url("d.db", "t"), CVG_STORE_READONLY, &err), CVG_OK);
  cvg_table_desc d;
  assert_int_equal(cvg_store_describe(st, &d, &err), CVG_OK);
  assert_int_equal(d.n_cols, 3);
  assert_int_equal(d.n_pk, 2);
  assert_int_equal(d.cols[cvg_table_desc_find(&d, "A")].pk, 1);
  assert_int_equal(d.cols[cvg_table_desc_find(&d, "b")].pk, 2);
  assert_int_equal(d.cols[2].affinity, CVG_AFF_REAL);
  assert_true(d.without_rowid);
  cvg_table_desc_release(&d);
  cvg_store_close(st);
  assert_int_equal(cvg_store_open(&st, url("d.db", "U"), CVG_STORE_READONLY, &err), CVG_OK);
  assert_int_equal(cvg_store_describe(st, &d, &err), CVG_OK);
  assert_false(d.cols[1].binary_collation);
  assert_false(d.without_rowid);
  cvg_table_desc_release(&d);
  cvg_store_close(st);
}

static void test_open_errors(void **state) {
  (void)state;
  cvg_store *st = NULL;
  cvg_error err;
  char u[600];
  snprintf(u, sizeof u, "sqlite://%s/nope.db?table=t", dir);
  assert_int_equal(cvg_store_open(&st, u, CVG_STORE_READONLY, &err), CVG_ENOENT);
  assert_null(st);
  assert_non_null(strstr(err.msg, "No such file"));
  char path[512];
  snprintf(path, sizeof path, "%s/junk.db", dir);
  FILE *f = fopen(path, "w");
  fputs("this is not a database, it is a text file that is long enough to have a header.....\n"
        "more text more text more text more text more text more text more text more text\n",
        f);
  fclose(f);
  assert_int_equal(cvg_store_open(&st, url("junk.db", "t"), CVG_STORE_READONLY, &err), CVG_ENOTDB);
  make_db("e.db",
          "CREATE TABLE a (id INTEGER PRIMARY KEY); CREATE TABLE b (id INTEGER PRIMARY KEY);");
  assert_int_equal(cvg_store_open(&st, url("e.db", "zzz"), CVG_STORE_READONLY, &err), CVG_ENOTABLE);
  assert_non_null(strstr(err.hint, "a, b"));
  /* no ?table= and two tables: ask */
  snprintf(u, sizeof u, "sqlite://%s/e.db", dir);
  assert_int_equal(cvg_store_open(&st, u, CVG_STORE_READONLY, &err), CVG_ENOTABLE);
  assert_int_equal(cvg_store_open(&st, "sqlite://otherhost/x.db?table=t", CVG_STORE_READONLY, &err),
                   CVG_EURL);
  snprintf(u, sizeof u, "sqlite://%s?table=t", dir);
  assert_int_equal(cvg_store_open(&st, u, CVG_STORE_READONLY, &err), CVG_ENOTDB);
  assert_non_null(strstr(err.msg, "directory"));
}

typedef struct collected {
  int n;
  char keys[64][64];
  int cls[64];
} collected;

static int collect(void *ctx, const cvg_divergence *dv) {
  collected *c = ctx;
  if (c->n < 64) {
    size_t n = dv->key_len < 63 ? dv->key_len : 63;
    memcpy(c->keys[c->n], dv->key, n);
    c->keys[c->n][n] = 0;
    c->cls[c->n] = dv->cls;
    c->n++;
  }
  return 0;
}

static int run_diff(const char *a, const char *b, const char *key, const char *version,
                    collected *out, cvg_diff_summary *sum, cvg_error *err) {
  const char *urls[2] = {a, b};
  const char *keys[1] = {key};
  cvg_diff_options o;
  memset(&o, 0, sizeof o);
  o.urls = urls;
  o.n_urls = 2;
  if (key) {
    o.key_cols = keys;
    o.n_key = 1;
  }
  o.version_col = version;
  o.n_shards = 4;
  cvg_diff *d;
  int rc = cvg_diff_prepare(&d, &o, err);
  if (rc)
    return rc;
  memset(out, 0, sizeof *out);
  rc = cvg_diff_run(d, collect, out, sum, err);
  cvg_diff_free(d);
  return rc;
}

static void test_nulls_and_without_rowid(void **state) {
  (void)state;
  const char *schema = "CREATE TABLE t (r TEXT, id INTEGER, v TEXT, n REAL, PRIMARY KEY (r, id)) "
                       "WITHOUT ROWID;";
  char sql[1024];
  snprintf(sql, sizeof sql,
           "%s INSERT INTO t VALUES ('eu',1,NULL,1.5),('eu',2,'x',NULL),('us',1,'y',2.0),"
           "('\xc3\xa9',1,'z',0)",
           schema);
  make_db("n1.db", sql);
  snprintf(sql, sizeof sql,
           "%s INSERT INTO t VALUES ('eu',1,NULL,1.5),('eu',2,NULL,NULL),('us',1,'y',2.0),"
           "('\xc3\xa9',1,'z',0)",
           schema);
  make_db("n2.db", sql);
  collected c;
  cvg_diff_summary s;
  cvg_error err;
  assert_int_equal(run_diff(url("n1.db", "t"), url("n2.db", "t"), NULL, NULL, &c, &s, &err),
                   CVG_OK);
  assert_int_equal(s.keys, 4);
  assert_int_equal(s.divergent, 1); /* NULL vs 'x' differs; NULL vs NULL does not */
  assert_int_equal(c.cls[0], CVG_CLASS_CONFLICT);
  assert_int_equal(s.rows[0], 4);
}

static void test_nocase_key_is_merged_in_byte_order(void **state) {
  (void)state;
  make_db("c1.db", "CREATE TABLE t (k TEXT PRIMARY KEY COLLATE NOCASE, v INT);"
                   "INSERT INTO t VALUES ('b',1),('A',1),('c',1),('D',1);");
  make_db("c2.db", "CREATE TABLE t (k TEXT PRIMARY KEY COLLATE NOCASE, v INT);"
                   "INSERT INTO t VALUES ('b',1),('A',1),('c',2),('D',1);");
  collected c;
  cvg_diff_summary s;
  cvg_error err;
  assert_int_equal(run_diff(url("c1.db", "t"), url("c2.db", "t"), NULL, NULL, &c, &s, &err),
                   CVG_OK);
  assert_int_equal(s.keys, 4);
  assert_int_equal(s.divergent, 1);
}

static void test_mixed_numeric_key_is_refused(void **state) {
  (void)state;
  make_db("m1.db", "CREATE TABLE t (k NUMERIC PRIMARY KEY, v INT);"
                   "INSERT INTO t VALUES (1,1),(1.5,1),(2,1);");
  make_db("m2.db", "CREATE TABLE t (k NUMERIC PRIMARY KEY, v INT);"
                   "INSERT INTO t VALUES (1,1),(1.5,1),(2,1);");
  collected c;
  cvg_diff_summary s;
  cvg_error err;
  assert_int_equal(run_diff(url("m1.db", "t"), url("m2.db", "t"), NULL, NULL, &c, &s, &err),
                   CVG_EORDER);
  assert_non_null(strstr(err.hint, "integer and real"));
}

static void test_non_unique_key_is_refused(void **state) {
  (void)state;
  make_db("u1.db", "CREATE TABLE t (id INTEGER PRIMARY KEY, g INT);"
                   "INSERT INTO t VALUES (1,7),(2,7),(3,8);");
  make_db("u2.db", "CREATE TABLE t (id INTEGER PRIMARY KEY, g INT);"
                   "INSERT INTO t VALUES (1,7),(2,7),(3,8);");
  collected c;
  cvg_diff_summary s;
  cvg_error err;
  assert_int_equal(run_diff(url("u1.db", "t"), url("u2.db", "t"), "g", NULL, &c, &s, &err),
                   CVG_EDUPKEY);
}

static void test_fetch_and_readonly(void **state) {
  (void)state;
  make_db("f.db", "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, b BLOB);"
                  "INSERT INTO t VALUES (5,'five',x'00ff'),(6,NULL,NULL);");
  cvg_store *st;
  cvg_error err;
  assert_int_equal(cvg_store_open(&st, url("f.db", "t"), CVG_STORE_READONLY, &err), CVG_OK);
  const char *keys[] = {"id"}, *cols[] = {"v", "b"};
  cvg_scan_spec spec = {.key_cols = keys, .n_key = 1, .cmp_cols = cols, .n_cmp = 2};
  cvg_buf k, out, scratch;
  cvg_buf_init(&k, 64);
  cvg_buf_init(&out, 1024);
  cvg_buf_init(&scratch, 1024);
  cvg_encode_int(&k, 5);
  int found = 0;
  assert_int_equal(cvg_store_fetch(st, &spec, k.data, k.len, cols, 2, &out, &found, &err), CVG_OK);
  assert_true(found);
  cvg_value v[2];
  size_t n;
  assert_int_equal(cvg_decode_tuple(out.data, out.len, v, 2, &n, &scratch), CVG_OK);
  assert_int_equal(v[0].type, CVG_TEXT);
  assert_memory_equal(v[0].u.s.p, "five", 4);
  assert_int_equal(v[1].type, CVG_BLOB);
  assert_int_equal(v[1].u.s.n, 2);
  cvg_buf_reset(&k);
  cvg_encode_int(&k, 7);
  assert_int_equal(cvg_store_fetch(st, &spec, k.data, k.len, cols, 2, &out, &found, &err), CVG_OK);
  assert_false(found);
  /* a --where that tries to add a statement is refused */
  spec.where = "1; DROP TABLE t";
  cvg_scan *sc = NULL;
  assert_int_equal(cvg_scan_open(st, &spec, &sc, &err), CVG_ESQL);
  spec.where = "id >";
  assert_int_equal(cvg_scan_open(st, &spec, &sc, &err), CVG_ESQL);
  spec.where = "v = 'five'";
  assert_int_equal(cvg_scan_open(st, &spec, &sc, &err), CVG_OK);
  cvg_scan_row row;
  assert_int_equal(cvg_scan_next(sc, &row, &err), CVG_OK);
  assert_int_equal(cvg_scan_next(sc, &row, &err), CVG_DONE);
  cvg_scan_close(sc);
  cvg_store_close(st);
  cvg_buf_release(&k);
  cvg_buf_release(&out);
  cvg_buf_release(&scratch);
  cvg_store_close(NULL); /* safe on NULL */
}

/* Rows with version >= since, as (key int, fp lo) pairs sorted by key, into out; returns count. */
static size_t since_rows(cvg_store *st, const cvg_scan_spec *base, int64_t since, int64_t *keys,
                         uint64_t *fps, int *tombs, size_t max) {
  cvg_buf w, scratch;
  cvg_buf_init(&w, 64);
  cvg_buf_init(&scratch, 64);
  cvg_encode_int(&w, since);
  cvg_scan_spec spec = *base;
  spec.since = w.data;
  spec.since_len = w.len;
  cvg_scan *sc = NULL;
  cvg_error err;
  assert_int_equal(cvg_scan_open(st, &spec, &sc, &err), CVG_OK);
  cvg_scan_row row;
  size_t n = 0;
  int rc;
  while ((rc = cvg_scan_next(sc, &row, &err)) == CVG_OK) {
    assert_true(n < max);
    cvg_value v;
    size_t nv;
    assert_int_equal(cvg_decode_tuple(row.key, row.key_len, &v, 1, &nv, &scratch), CVG_OK);
    size_t at = n++;
    while (at > 0 && keys[at - 1] > v.u.i) { /* insertion sort: the order is the engine's */
      keys[at] = keys[at - 1];
      fps[at] = fps[at - 1];
      tombs[at] = tombs[at - 1];
      at--;
    }
    keys[at] = v.u.i;
    fps[at] = row.fp.lo;
    tombs[at] = row.tombstone;
  }
  assert_int_equal(rc, CVG_DONE);
  cvg_scan_close(sc);
  cvg_buf_release(&w);
  cvg_buf_release(&scratch);
  return n;
}

static void test_incremental_scan_and_own_tables(void **state) {
  (void)state;
  /* no defaults and an INTEGER PRIMARY KEY: eligible for the direct b-tree path; 3000 rows so
   * the table b-tree has interior pages; one row large enough to spill onto overflow pages */
  make_db("inc.db", "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, ver INTEGER, del INTEGER);"
                    "CREATE INDEX t_ver ON t(ver);"
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<3000)"
                    " INSERT INTO t SELECT i, printf('row %d', i), i % 1000, i % 7 = 0 FROM n;"
                    "UPDATE t SET v = printf('%.*c', 9000, 'x'), ver = 995 WHERE id = 1234;");
  const char *keys[] = {"id"}, *cols[] = {"v", "ver"};
  cvg_scan_spec spec = {.key_cols = keys,
                        .n_key = 1,
                        .cmp_cols = cols,
                        .n_cmp = 2,
                        .version_col = "ver",
                        .tombstone_col = "del"};
  int64_t k1[400], k2[400];
  uint64_t f1[400], f2[400];
  int t1[400], t2[400];
  cvg_store *st;
  cvg_error err;
  assert_int_equal(cvg_store_open(&st, url("inc.db", "t"), CVG_STORE_READONLY, &err), CVG_OK);
  size_t n1 = since_rows(st, &spec, 990, k1, f1, t1, 400);
  setenv("CONVERGE_SQLITE_FASTPATH", "0", 1);
  size_t n2 = since_rows(st, &spec, 990, k2, f2, t2, 400);
  unsetenv("CONVERGE_SQLITE_FASTPATH");
  assert_int_equal(n1, 31); /* ver 990..999: 3 rows each, plus id 1234 */
  assert_int_equal(n1, n2);
  for (size_t i = 0; i < n1; i++) {
    assert_int_equal(k1[i], k2[i]);
    assert_true(f1[i] == f2[i]);
    assert_int_equal(t1[i], t2[i]);
    assert_int_equal(t1[i], k1[i] % 7 == 0);
  }
  assert_int_equal(since_rows(st, &spec, 5000, k1, f1, t1, 400), 0);
  /* lookups give the same fingerprint as the scans */
  cvg_buf key;
  cvg_buf_init(&key, 64);
  cvg_encode_int(&key, k2[3]);
  cvg_scan_row row;
  int found = 0;
  assert_int_equal(cvg_store_lookup(st, &spec, key.data, key.len, &row, &found, &err), CVG_OK);
  assert_true(found);
  assert_true(row.fp.lo == f2[3]);
  cvg_buf_reset(&key);
  cvg_encode_int(&key, 99999);
  assert_int_equal(cvg_store_lookup(st, &spec, key.data, key.len, &row, &found, &err), CVG_OK);
  assert_false(found);
  cvg_buf_release(&key);
  /* converge's own tables: absent, then written on a writable store and read back */
  int64_t seq = 0;
  double ts = 0;
  assert_int_equal(cvg_store_heartbeat_read(st, "converge_heartbeat", "d", &seq, &ts, &found, &err),
                   CVG_ENOTABLE);
  assert_int_equal(cvg_store_heartbeat_write(st, "converge_heartbeat", "d", 1, 2.5, 1, &err),
                   CVG_EACCES); /* opened read-only */
  cvg_store *rw;
  assert_int_equal(cvg_store_open(&rw, url("inc.db", "t"), 0, &err), CVG_OK);
  assert_int_equal(cvg_store_heartbeat_write(rw, "converge_heartbeat", "d", 7, 123.5, 1, &err),
                   CVG_OK);
  assert_int_equal(cvg_store_heartbeat_write(rw, "converge_heartbeat", "d", 8, 124.5, 1, &err),
                   CVG_OK);
  assert_int_equal(cvg_store_heartbeat_read(st, "converge_heartbeat", "d", &seq, &ts, &found, &err),
                   CVG_OK);
  assert_true(found && seq == 8 && ts == 124.5);
  assert_int_equal(cvg_store_canary_write(rw, "converge_canary", "d", "tok1", 10.0, 1, &err),
                   CVG_OK);
  assert_int_equal(cvg_store_canary_seen(st, "converge_canary", "tok1", &found, &err), CVG_OK);
  assert_true(found);
  assert_int_equal(cvg_store_canary_purge(rw, "converge_canary", "d", 11.0, &err), CVG_OK);
  assert_int_equal(cvg_store_canary_seen(st, "converge_canary", "tok1", &found, &err), CVG_OK);
  assert_false(found);
  int has = 0;
  assert_int_equal(cvg_store_has_index(st, "ver", &has, &err), CVG_OK);
  assert_true(has);
  assert_int_equal(cvg_store_has_index(st, "v", &has, &err), CVG_OK);
  assert_false(has);
  double agg;
  int is_null;
  assert_int_equal(cvg_store_scalar(st, "count(*)", &agg, &is_null, &err), CVG_OK);
  assert_true(agg == 3000 && !is_null);
  assert_int_equal(cvg_store_scalar(st, "count(*)) FROM t; SELECT (1", &agg, &is_null, &err),
                   CVG_ESQL);
  cvg_store_close(rw);
  cvg_store_close(st);
  /* rowids spread unevenly (squares, then a dense run, and negative ones): the seek's
   * interpolation guesses wrong and must fall back to bisection, the rowid sort must order
   * across the sign; both paths still agree, row for row */
  make_db("sparse.db", "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, ver INTEGER, del INTEGER);"
                       "CREATE INDEX t_ver ON t(ver);"
                       "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<4000)"
                       " INSERT INTO t SELECT i * i * 7, printf('r%d', i), i % 50, 0 FROM n;"
                       "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<500)"
                       " INSERT INTO t SELECT 200000000 + i, 'd', 49, 0 FROM n;"
                       "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<100)"
                       " INSERT INTO t SELECT -i * 1000003, 'neg', 49, 0 FROM n;");
  assert_int_equal(cvg_store_open(&st, url("sparse.db", "t"), CVG_STORE_READONLY, &err), CVG_OK);
  static int64_t sk1[1000], sk2[1000];
  static uint64_t sf1[1000], sf2[1000];
  static int st1[1000], st2[1000];
  n1 = since_rows(st, &spec, 48, sk1, sf1, st1, 1000);
  setenv("CONVERGE_SQLITE_FASTPATH", "0", 1);
  n2 = since_rows(st, &spec, 48, sk2, sf2, st2, 1000);
  unsetenv("CONVERGE_SQLITE_FASTPATH");
  assert_int_equal(n1, 760); /* 80 squares with ver 48, 80 with 49, 500 dense, 100 negative */
  assert_int_equal(n2, 760);
  assert_true(sk1[0] == -100 * 1000003 && sk1[99] == -1000003); /* in order across the sign */
  for (size_t i = 0; i < n1; i++) {
    assert_int_equal(sk1[i], sk2[i]);
    assert_true(sf1[i] == sf2[i]);
  }
  cvg_store_close(st);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_describe_discovers_key),
      cmocka_unit_test(test_open_errors),
      cmocka_unit_test(test_nulls_and_without_rowid),
      cmocka_unit_test(test_nocase_key_is_merged_in_byte_order),
      cmocka_unit_test(test_mixed_numeric_key_is_refused),
      cmocka_unit_test(test_non_unique_key_is_refused),
      cmocka_unit_test(test_fetch_and_readonly),
      cmocka_unit_test(test_incremental_scan_and_own_tables),
  };
  return cmocka_run_group_tests_name("store", tests, setup, teardown);
}
