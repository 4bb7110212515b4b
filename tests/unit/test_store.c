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
#include "../../lib/store/sqlite_btree.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
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
  snprintf(dir, sizeof dir, "/tmp/cvg-test-store-XXXXXX"); /* mkdtemp template */
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

/* Is path mapped into this process (the scan's fast path reads the file through a mapping)? */
static int mapped(const char *name) {
  char path[512], line[1024];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen("/proc/self/maps", "r");
  int hit = 0;
  while (f && !hit && fgets(line, sizeof line, f))
    hit = strstr(line, path) != NULL;
  if (f)
    fclose(f);
  return hit;
}

/* The fast path is chosen by what SQLite says of the table (pragma table_list, index_list), not
 * by words in its SQL: a column named "description" keeps it; INTEGER PRIMARY KEY DESC (not the
 * rowid) and WITHOUT ROWID turn it off - and every table is read right either way. */
static void test_fast_path_choice(void **state) {
  (void)state;
  static const struct {
    const char *name, *sql, *col;
    int fast;
  } cases[] = {
      {"fp1.db", "CREATE TABLE t (id INTEGER PRIMARY KEY, description TEXT, v INTEGER)",
       "description", 1},
      {"fp2.db", "CREATE TABLE t (id INTEGER PRIMARY KEY, \"WITHOUT_note\" TEXT, v INTEGER)",
       "WITHOUT_note", 1},
      {"fp3.db", "CREATE TABLE t (id INTEGER PRIMARY KEY DESC, description TEXT, v INTEGER)",
       "description", 0},
      {"fp4.db",
       "CREATE TABLE t (id INTEGER PRIMARY KEY, description TEXT, v INTEGER) WITHOUT ROWID",
       "description", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char sql[512];
    snprintf(sql, sizeof sql,
             "%s; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500) "
             "INSERT INTO t SELECT i, 'row ' || i, i * 3 FROM n;",
             cases[i].sql);
    make_db(cases[i].name, sql);
    cvg_store *st;
    cvg_error err;
    assert_int_equal(cvg_store_open(&st, url(cases[i].name, "t"), CVG_STORE_READONLY, &err),
                     CVG_OK);
    const char *keys[] = {"id"}, *cols[] = {cases[i].col, "v"};
    cvg_scan_spec spec = {.key_cols = keys, .n_key = 1, .cmp_cols = cols, .n_cmp = 2};
    cvg_scan *sc = NULL;
    assert_int_equal(cvg_scan_open(st, &spec, &sc, &err), CVG_OK);
    cvg_scan_row row;
    size_t n = 0;
    int rc;
    while ((rc = cvg_scan_next(sc, &row, &err)) == CVG_OK) {
      if (n == 0 && mapped(cases[i].name) != cases[i].fast)
        fail_msg("%s: fast path %s, want %s", cases[i].sql, cases[i].fast ? "off" : "on",
                 cases[i].fast ? "on" : "off");
      n++;
    }
    assert_int_equal(rc, CVG_DONE);
    assert_int_equal(n, 500);
    cvg_scan_close(sc);
    cvg_store_close(st);
  }
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

/* Rows with version >= the encoded watermark w, as (key int, fp lo) pairs sorted by key, into
 * out; returns count. */
static size_t since_rows_w(cvg_store *st, const cvg_scan_spec *base, cvg_buf *w, int64_t *keys,
                           uint64_t *fps, int *tombs, size_t max) {
  cvg_buf scratch;
  cvg_buf_init(&scratch, 64);
  cvg_scan_spec spec = *base;
  spec.since = w->data;
  spec.since_len = w->len;
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
    while (at > 0 && keys[at - 1] > v.u.i) {
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
  cvg_buf_release(&scratch);
  return n;
}

/* Rows with version >= since, as (key int, fp lo) pairs sorted by key, into out; returns count. */
static size_t since_rows(cvg_store *st, const cvg_scan_spec *base, int64_t since, int64_t *keys,
                         uint64_t *fps, int *tombs, size_t max) {
  cvg_buf w;
  cvg_buf_init(&w, 64);
  cvg_encode_int(&w, since);
  size_t n = since_rows_w(st, base, &w, keys, fps, tombs, max);
  cvg_buf_release(&w);
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

static int cmp_i64(const void *x, const void *y) {
  int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
  return (a > b) - (a < b);
}

/* cvgi_index_range over index idx of ix.db against SQLite's own "col >= ?1" (?1 bound as the key
 * says): the same rowids, or, for want = CVG_EINVAL, a refusal. */
static void check_range(sqlite3 *db, int fd, const char *idx, const char *col, const cvgi_ikey *k,
                        int want) {
  char sql[256];
  sqlite3_stmt *s;
  snprintf(sql, sizeof sql, "SELECT rootpage FROM sqlite_schema WHERE name = '%s'", idx);
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(s), SQLITE_ROW);
  uint32_t root = (uint32_t)sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  snprintf(sql, sizeof sql, "SELECT rowid FROM t NOT INDEXED WHERE %s >= ?1 ORDER BY rowid", col);
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
  if (k->cls == 1 && k->is_real)
    sqlite3_bind_double(s, 1, k->r);
  else if (k->cls == 1)
    sqlite3_bind_int64(s, 1, k->i);
  else if (k->cls == 2)
    sqlite3_bind_text(s, 1, (const char *)k->p, (int)k->n, SQLITE_STATIC);
  else
    sqlite3_bind_blob(s, 1, k->p, (int)k->n, SQLITE_STATIC);
  static int64_t want_ids[40000];
  size_t n_want = 0;
  while (sqlite3_step(s) == SQLITE_ROW) {
    assert_true(n_want < 40000);
    want_ids[n_want++] = sqlite3_column_int64(s, 0);
  }
  sqlite3_finalize(s);
  struct stat sb;
  assert_int_equal(fstat(fd, &sb), 0);
  cvgi_rowids r = {NULL, 0, 0, 1u << 20};
  int rc = cvgi_index_range(fd, (uint64_t)sb.st_size / 512, 512, 512, root, k, &r);
  assert_int_equal(rc, want);
  if (want == CVG_OK) {
    if (r.n != n_want)
      fail_msg("index %s: %zu rowids, SQLite says %zu", idx, r.n, n_want);
    if (r.n)
      qsort(r.v, r.n, sizeof *r.v, cmp_i64);
    for (size_t i = 0; i < r.n; i++)
      assert_true(r.v[i] == want_ids[i]);
  }
  free(r.v);
}

static void test_index_range_matches_sqlite(void **state) {
  (void)state;
  /* 512-byte pages: 20,000 entries make index b-trees several levels deep. Negative rowids;
   * versions with repeats and negatives; integers and reals mixed in a REAL column (SQLite
   * stores whole reals as integers); numbers, text and NULLs in a NUMERIC column; one long text
   * version per 500 rows, which spills onto overflow pages. */
  make_db("ix.db",
          "PRAGMA page_size = 512;"
          "CREATE TABLE t (id INTEGER PRIMARY KEY, vi INTEGER, vr REAL, vt TEXT, vb BLOB,"
          " vn NUMERIC, vl TEXT);"
          "CREATE INDEX t_vi ON t(vi); CREATE INDEX t_vr ON t(vr); CREATE INDEX t_vt ON t(vt);"
          "CREATE INDEX t_vb ON t(vb); CREATE INDEX t_vn ON t(vn); CREATE INDEX t_vl ON t(vl);"
          "CREATE INDEX t_vi2 ON t(vi, vt);"
          "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<20000)"
          " INSERT INTO t SELECT i * 3 - 30000, (i * 7919) % 5000 - 2500,"
          " CASE WHEN i % 3 = 0 THEN i % 1000 ELSE i % 1000 + 0.5 END,"
          " printf('2026-11-%02d %05d', i % 28 + 1, i), CAST(printf('%06d', i % 777) AS BLOB),"
          " CASE i % 4 WHEN 0 THEN i % 100 WHEN 1 THEN i % 100 + 0.25 WHEN 2 THEN 'x' || i"
          " ELSE NULL END,"
          " CASE WHEN i % 500 = 0 THEN printf('%.*c', 300, 'z') ELSE printf('v%05d', i) END"
          " FROM n;");
  char path[512];
  snprintf(path, sizeof path, "%s/ix.db", dir);
  sqlite3 *db;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  int fd = open(path, O_RDONLY);
  assert_true(fd >= 0);
  cvgi_ikey k;
  const int64_t ints[] = {INT64_MIN, -2501, -2500, 0, 17, 2499, 2500, INT64_MAX};
  for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
    k = (cvgi_ikey){.cls = 1, .i = ints[i]};
    check_range(db, fd, "t_vi", "vi", &k, CVG_OK);
    check_range(db, fd, "t_vi2", "vi", &k, CVG_OK); /* a two-column index: its first column */
    check_range(db, fd, "t_vr", "vr", &k, CVG_OK);
    check_range(db, fd, "t_vn", "vn", &k, CVG_OK);
  }
  const double reals[] = {-1e300, -2500.5, 16.5, 499.5, 500.0, 999.5, 1e300};
  for (size_t i = 0; i < sizeof reals / sizeof *reals; i++) {
    k = (cvgi_ikey){.cls = 1, .is_real = 1, .r = reals[i]};
    check_range(db, fd, "t_vi", "vi", &k, CVG_OK);
    check_range(db, fd, "t_vr", "vr", &k, CVG_OK);
    check_range(db, fd, "t_vn", "vn", &k, CVG_OK);
  }
  const char *texts[] = {"", "2026-11-15", "2026-11-15 00420", "2026-11-28 99999", "2027", "x5"};
  for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
    k = (cvgi_ikey){.cls = 2, .p = (const unsigned char *)texts[i], .n = strlen(texts[i])};
    check_range(db, fd, "t_vt", "vt", &k, CVG_OK);
    check_range(db, fd, "t_vn", "vn", &k, CVG_OK); /* 'x5' is no number: compared as text */
    k.cls = 3;                                     /* the same bytes as a blob */
    check_range(db, fd, "t_vb", "vb", &k, CVG_OK);
    check_range(db, fd, "t_vt", "vt", &k, CVG_OK);
  }
  /* a version long enough to spill is not read here: the caller asks SQLite instead */
  k = (cvgi_ikey){.cls = 2, .p = (const unsigned char *)"v", .n = 1};
  check_range(db, fd, "t_vl", "vl", &k, CVG_EINVAL);
  /* past the caller's limit */
  cvgi_rowids r = {NULL, 0, 0, 100};
  k = (cvgi_ikey){.cls = 1, .i = INT64_MIN};
  struct stat sb;
  assert_int_equal(fstat(fd, &sb), 0);
  sqlite3_stmt *s;
  assert_int_equal(sqlite3_prepare_v2(db, "SELECT rootpage FROM sqlite_schema WHERE name = 't_vi'",
                                      -1, &s, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_step(s), SQLITE_ROW);
  uint32_t root = (uint32_t)sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  assert_int_equal(cvgi_index_range(fd, (uint64_t)sb.st_size / 512, 512, 512, root, &k, &r),
                   CVG_ETOOBIG);
  free(r.v);
  /* a root that is not an index page, and one past the end of the file */
  r = (cvgi_rowids){NULL, 0, 0, 100};
  assert_int_equal(cvgi_index_range(fd, (uint64_t)sb.st_size / 512, 512, 512, 1, &k, &r),
                   CVG_ECORRUPT);
  assert_int_equal(cvgi_index_range(fd, (uint64_t)sb.st_size / 512, 512, 512,
                                    (uint32_t)(sb.st_size / 512) + 1, &k, &r),
                   CVG_ECORRUPT);
  free(r.v);
  close(fd);
  sqlite3_close(db);
}

/* Incremental scans whose version index can be walked directly, and those that must go through
 * SQLite (no usable index, a collation or affinity the walk does not follow): either way, the
 * rows are those SQLite's "version >= watermark" selects. */
static void test_incremental_scan_versions(void **state) {
  (void)state;
  static const struct {
    const char *name, *schema, *ver;
    int text;    /* the versions are text, not integers */
    int text_wm; /* so is the watermark */
  } cases[] = {
      {"vt.db",
       "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, ver TEXT, del INTEGER);"
       "CREATE INDEX t_ver ON t(ver);",
       "2026-11-20", 1, 1},
      {"vdesc.db",
       "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, ver INTEGER, del INTEGER);"
       "CREATE INDEX t_ver ON t(ver DESC);",
       "600", 0, 0},
      {"vnocase.db",
       "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, ver TEXT COLLATE NOCASE,"
       " del INTEGER); CREATE INDEX t_ver ON t(ver COLLATE BINARY);",
       "2026-11-20U", 1, 1}, /* 't' > 'U' bytewise; not so without case */
      {"vpartial.db",
       "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, ver INTEGER, del INTEGER);"
       "CREATE INDEX t_ver ON t(ver) WHERE del = 0;",
       "600", 0, 0},
      {"vreal.db",
       "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, ver REAL, del INTEGER);"
       "CREATE INDEX t_ver ON t(ver);",
       "600", 0, 0},
      {"vnumtext.db",
       "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, ver NUMERIC, del INTEGER);"
       "CREATE INDEX t_ver ON t(ver);",
       "600", 0, 1}, /* '600' becomes 600 */
  };
  const char *keys[] = {"id"}, *cols[] = {"v", "ver"};
  cvg_scan_spec spec = {.key_cols = keys,
                        .n_key = 1,
                        .cmp_cols = cols,
                        .n_cmp = 2,
                        .version_col = "ver",
                        .tombstone_col = "del"};
  static int64_t k1[3000], k2[3000];
  static uint64_t f1[3000], f2[3000];
  static int t1[3000], t2[3000];
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    char sql[2000];
    /* text versions: ISO dates, some lower-case (NOCASE sorts them elsewhere); numbers 0..999 */
    snprintf(sql, sizeof sql,
             "%s WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<3000)"
             " INSERT INTO t SELECT i, printf('row %%d', i), %s, i %% 7 = 0 FROM n;",
             cases[c].schema,
             cases[c].text ? "printf(CASE WHEN i % 7 = 0 THEN '2026-11-%02dt' ELSE '2026-11-%02dT'"
                             " END, i % 30 + 1)"
                           : "i % 1000");
    make_db(cases[c].name, sql);
    cvg_store *st;
    cvg_error err;
    assert_int_equal(cvg_store_open(&st, url(cases[c].name, "t"), CVG_STORE_READONLY, &err),
                     CVG_OK);
    cvg_buf w;
    cvg_buf_init(&w, 64);
    if (cases[c].text_wm)
      cvg_encode_text(&w, cases[c].ver, strlen(cases[c].ver));
    else
      cvg_encode_int(&w, atoi(cases[c].ver));
    size_t n1 = since_rows_w(st, &spec, &w, k1, f1, t1, 3000);
    setenv("CONVERGE_SQLITE_FASTPATH", "0", 1);
    size_t n2 = since_rows_w(st, &spec, &w, k2, f2, t2, 3000);
    unsetenv("CONVERGE_SQLITE_FASTPATH");
    if (n1 != n2 || n1 == 0 || n1 == 3000)
      fail_msg("%s: %zu rows direct, %zu through SQLite", cases[c].name, n1, n2);
    for (size_t i = 0; i < n1; i++) {
      assert_int_equal(k1[i], k2[i]);
      assert_true(f1[i] == f2[i]);
    }
    cvg_buf_release(&w);
    cvg_store_close(st);
  }
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
      cmocka_unit_test(test_fast_path_choice),
      cmocka_unit_test(test_incremental_scan_and_own_tables),
      cmocka_unit_test(test_index_range_matches_sqlite),
      cmocka_unit_test(test_incremental_scan_versions),
  };
  return cmocka_run_group_tests_name("store", tests, setup, teardown);
}
