/* SPDX-License-Identifier: MIT */
/*
 * Incremental re-check vs a full `converge diff`, on one replica pair (bench/watch drives it).
 *
 *   recheck CONVERGE A.db B.db CHANGES RUNS
 *
 * Loads a catalog for the pair (version updated_at, tombstone deleted, 1000 shards), runs one
 * full sweep to set the watermarks, then RUNS times, alternating:
 *   1. writes CHANGES row updates to both files (new versions, as replication would) plus 10
 *      to A only (in flight: the check must find exactly those 10), then lets the system settle
 *      (sync, 0.3 s);
 *   2. times cvg_monitor_recheck() — the incremental check `converge watch` runs;
 *   3. times the raw-read floor (before step 2 every other run): the table b-tree leaf pages
 *      that hold the rows changed in the run, each page once and in file order, on each file,
 *      read with pread() (O_NOATIME), one thread per file as the re-check reads them (the pages
 *      are found beforehand through the interior pages, untimed, without reading the leaves) -
 *      no check that reads the changed rows of both replicas through the page cache can take
 *      less;
 *   4. times the CONVERGE diff program on the same pair, as a child process, both files read
 *      beforehand (untimed) so that it too reads from the page cache;
 *   5. copies the 10 in-flight rows to B, so the pair is identical again.
 * Prints each run, the medians and the ratios.
 */
#define _GNU_SOURCE /* O_NOATIME, as the SQLite engine opens replica files */
#include "converge/catalog.h"
#include "converge/watch.h"

#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *detail) {
  fprintf(stderr, "recheck: %s: %s\n", what, detail);
  exit(2);
}

static sqlite3 *open_db(const char *path) {
  sqlite3 *db;
  if (sqlite3_open(path, &db) != SQLITE_OK)
    die(path, sqlite3_errmsg(db));
  sqlite3_busy_timeout(db, 10000);
  return db;
}

static void exec(sqlite3 *db, const char *sql) {
  char *msg = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
    die(sql, msg ? msg : "?");
}

static long long scalar(sqlite3 *db, const char *sql) {
  sqlite3_stmt *s;
  if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK || sqlite3_step(s) != SQLITE_ROW)
    die(sql, sqlite3_errmsg(db));
  long long v = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  return v;
}

/* Updates the rows ids[0..n) on db with version ver + i. */
static void update(sqlite3 *db, const long long *ids, size_t n, long long ver) {
  sqlite3_stmt *s;
  exec(db, "BEGIN");
  if (sqlite3_prepare_v2(db,
                         "UPDATE accounts SET balance = coalesce(balance, 0) + 1, updated_at = ?2 "
                         "WHERE id = ?1",
                         -1, &s, NULL) != SQLITE_OK)
    die("prepare update", sqlite3_errmsg(db));
  for (size_t i = 0; i < n; i++) {
    sqlite3_bind_int64(s, 1, ids[i]);
    sqlite3_bind_int64(s, 2, ver + (long long)i);
    if (sqlite3_step(s) != SQLITE_DONE)
      die("update", sqlite3_errmsg(db));
    sqlite3_reset(s);
  }
  sqlite3_finalize(s);
  exec(db, "COMMIT");
}

/* Reads a whole file (untimed): the page cache of this machine is trimmed in the background, so
 * without it the diff would read some of the file from disk and look slower than it is. */
static void warm(const char *path) {
  int fd = open(path, O_RDONLY);
  if (fd < 0)
    die("open", path);
  static unsigned char buf[1 << 20];
  while (read(fd, buf, sizeof buf) > 0)
    ;
  close(fd);
}

static double run_diff(const char *converge, const char *a, const char *b) {
  char ua[4200], ub[4200];
  snprintf(ua, sizeof ua, "sqlite:%s?table=accounts", a);
  snprintf(ub, sizeof ub, "sqlite:%s?table=accounts", b);
  /* the whole pair, every divergence written out (to /dev/null), as a user would run it */
  char *argv[] = {(char *)converge, "diff",    "--format", "json", "--version", "updated_at",
                  "--tombstone",    "deleted", ua,         ub,     NULL};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", 1, 0);
  warm(a);
  warm(b);
  double t0 = now();
  pid_t pid;
  if (posix_spawn(&pid, converge, &fa, NULL, argv, environ) != 0)
    die("spawn", converge);
  int status;
  waitpid(pid, &status, 0);
  double t = now() - t0;
  posix_spawn_file_actions_destroy(&fa);
  if (!WIFEXITED(status) || WEXITSTATUS(status) > 1)
    die("converge diff failed", converge);
  return t;
}

/* The raw-read floor: given leaf pages of one file, read one by one with pread(). */
typedef struct floor_job {
  int fd;
  size_t ps;             /* page size */
  const unsigned *pages; /* leaf page numbers */
  size_t n;
} floor_job;

static int open_noatime(const char *path) {
  int fd = open(path, O_RDONLY | O_NOATIME);
  if (fd < 0) /* O_NOATIME is for the file's owner only */
    fd = open(path, O_RDONLY);
  if (fd < 0)
    die("open", path);
  return fd;
}

static void *floor_main(void *arg) {
  floor_job *j = arg;
  static _Thread_local unsigned char page[65536];
  for (size_t i = 0; i < j->n; i++)
    if (pread(j->fd, page, j->ps, (off_t)(j->pages[i] - 1) * (off_t)j->ps) != (ssize_t)j->ps)
      die("read", "a leaf page");
  return NULL;
}

static uint64_t varint(const unsigned char *p) {
  uint64_t x = 0;
  for (int i = 0; i < 8; i++, p++) {
    x = (x << 7) | (*p & 0x7F);
    if (!(*p & 0x80))
      return x;
  }
  return (x << 8) | *p;
}

/* Levels of interior pages above the leaves of the table b-tree at root (the same on every
 * path): the left-most path, read down to its leaf. */
static int tree_depth(int fd, size_t ps, unsigned root) {
  unsigned char pg[65536];
  unsigned pgno = root;
  for (int depth = 0; depth < 20; depth++) {
    if (pread(fd, pg, ps, (off_t)(pgno - 1) * (off_t)ps) != (ssize_t)ps)
      die("read", "a b-tree page");
    size_t h = pgno == 1 ? 100 : 0;
    if (pg[h] == 0x0D)
      return depth;
    if (pg[h] != 0x05)
      die("b-tree", "not a table page");
    size_t off = (size_t)pg[h + 12] << 8 | pg[h + 13];
    pgno = (unsigned)pg[off] << 24 | (unsigned)pg[off + 1] << 16 | (unsigned)pg[off + 2] << 8 |
           pg[off + 3];
  }
  die("b-tree", "too deep");
  return 0;
}

/* The leaf page of the table b-tree (root page root, depth interior levels) that holds rowid,
 * found through the interior pages alone: the leaf itself is not read here, or the timed read
 * would be the second reader of a page the run just wrote, which costs less than the first
 * read the re-check makes every other run. */
static unsigned leaf_of(int fd, size_t ps, unsigned root, int levels, long long rowid) {
  unsigned char pg[65536];
  unsigned pgno = root;
  for (int depth = 0; depth < levels; depth++) {
    if (pread(fd, pg, ps, (off_t)(pgno - 1) * (off_t)ps) != (ssize_t)ps)
      die("read", "an interior page");
    size_t h = pgno == 1 ? 100 : 0;
    if (pg[h] != 0x05)
      die("b-tree", "not an interior table page");
    unsigned n = (unsigned)pg[h + 3] << 8 | pg[h + 4], lo = 0, hi = n;
    while (lo < hi) { /* the first cell whose key >= rowid */
      unsigned mid = (lo + hi) / 2;
      size_t off = (size_t)pg[h + 12 + 2 * mid] << 8 | pg[h + 13 + 2 * mid];
      if ((long long)varint(pg + off + 4) < rowid)
        lo = mid + 1;
      else
        hi = mid;
    }
    const unsigned char *c;
    if (lo < n) {
      size_t off = (size_t)pg[h + 12 + 2 * lo] << 8 | pg[h + 13 + 2 * lo];
      c = pg + off;
    } else {
      c = pg + h + 8;
    }
    pgno = (unsigned)c[0] << 24 | (unsigned)c[1] << 16 | (unsigned)c[2] << 8 | c[3];
  }
  return pgno;
}

static int cmp_unsigned(const void *x, const void *y) {
  unsigned a = *(const unsigned *)x, b = *(const unsigned *)y;
  return (a > b) - (a < b);
}

/* Sorts v[0..n) and drops repeats; returns how many are left. */
static size_t distinct(unsigned *v, size_t n) {
  qsort(v, n, sizeof *v, cmp_unsigned);
  size_t m = 0;
  for (size_t i = 0; i < n; i++)
    if (!m || v[m - 1] != v[i])
      v[m++] = v[i];
  return m;
}

/* Times reading, on both files at once, the leaf page of each of the n rowids. */
static double floor_read(sqlite3 *da, const char *a, const char *b, const long long *ids,
                         size_t n) {
  unsigned root =
      (unsigned)scalar(da, "SELECT rootpage FROM sqlite_schema WHERE name = 'accounts'");
  size_t ps = (size_t)scalar(da, "PRAGMA page_size");
  floor_job ja = {open_noatime(a), ps, NULL, n}, jb = {open_noatime(b), ps, NULL, n};
  unsigned *pa = malloc(n * sizeof *pa), *pb = malloc(n * sizeof *pb);
  if (!pa || !pb)
    die("malloc", "out of memory");
  int la = tree_depth(ja.fd, ps, root), lb = tree_depth(jb.fd, ps, root);
  for (size_t i = 0; i < n; i++) {
    pa[i] = leaf_of(ja.fd, ps, root, la, ids[i]);
    pb[i] = leaf_of(jb.fd, ps, root, lb, ids[i]);
  }
  ja.pages = pa;
  jb.pages = pb;
  ja.n = distinct(pa, n); /* each page once, in file order: the least any reader must do */
  jb.n = distinct(pb, n);
  pthread_t ta, tb;
  double t0 = now();
  if (pthread_create(&ta, NULL, floor_main, &ja) || pthread_create(&tb, NULL, floor_main, &jb))
    die("pthread_create", "floor");
  pthread_join(ta, NULL);
  pthread_join(tb, NULL);
  double t = now() - t0;
  close(ja.fd);
  close(jb.fd);
  free(pa);
  free(pb);
  return t;
}

/* Divergent keys the monitor tracks, from its status JSON. */
static long long divergent(cvg_monitor *m) {
  cvg_buf b;
  cvg_buf_init(&b, 1u << 26);
  if (cvg_monitor_status_json(m, &b) != CVG_OK)
    die("status", "cannot render");
  json_error_t je;
  json_t *j = json_loadb((const char *)b.data, b.len, 0, &je);
  cvg_buf_release(&b);
  json_t *dv = json_object_get(json_array_get(json_object_get(j, "datasets"), 0), "divergences");
  long long n = (long long)(json_integer_value(json_object_get(dv, "suspected")) +
                            json_integer_value(json_object_get(dv, "confirmed")));
  json_decref(j);
  return n;
}

/* Lets the kernel finish what the run's writes left it (the rollback journals' deletion, the
 * file system's journal): on two cores, that work would otherwise land inside whichever
 * timing comes next. */
static void settle(void) {
  sync();
  struct timespec ts = {0, 300 * 1000 * 1000};
  nanosleep(&ts, NULL);
}

static int cmp_double(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return (a > b) - (a < b);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv) {
  if (argc != 6 && argc != 7) {
    fprintf(stderr, "usage: recheck CONVERGE A.db B.db CHANGES RUNS [keep_mapped]\n");
    return 2;
  }
  const char *converge = argv[1], *a = argv[2], *b = argv[3];
  size_t changes = (size_t)atol(argv[4]);
  int runs = atoi(argv[5]);
  if (runs < 1 || runs > 99 || changes < 1)
    die("arguments", "CHANGES >= 1, RUNS 1..99");
  char yaml[10000];
  snprintf(yaml, sizeof yaml,
           "datasets:\n  - name: accounts\n    key: [id]\n    version: updated_at\n"
           "    tombstone: deleted\n    shards: 1000\n"
           "    probes: {sweep: {keep_mapped: %s}}\n    replicas:\n"
           "      - {name: a, url: \"sqlite://%s?table=accounts\", authority: true}\n"
           "      - {name: b, url: \"sqlite://%s?table=accounts\"}\n",
           argc == 7 ? "true" : "false", a, b);
  cvg_catalog *cat;
  cvg_monitor *m;
  cvg_error err;
  /* the catalog is named beside the replica files, so the monitor's alert state
   * (converge.state.db beside the catalog) lands there too, not in the working directory */
  char cat_path[4200];
  const char *slash = strrchr(a, '/');
  snprintf(cat_path, sizeof cat_path, "%.*sbench.yaml", slash ? (int)(slash - a + 1) : 0, a);
  if (cvg_catalog_parse(&cat, cat_path, yaml, strlen(yaml), &err) != CVG_OK ||
      cvg_monitor_new(&m, cat, NULL, &err) != CVG_OK)
    die(err.input, err.msg);
  sqlite3 *da = open_db(a), *db = open_db(b);
  long long n_rows = scalar(da, "SELECT max(id) FROM accounts");
  long long ver = scalar(da, "SELECT max(updated_at) FROM accounts") + 1;
  double t0 = now();
  if (cvg_monitor_full_sweep(m, 0, &err) != CVG_OK)
    die(err.input, err.msg);
  printf("initial full sweep (sets the watermarks): %.2f s\n", now() - t0);
  if (divergent(m) != 0)
    die("the pair", "is not identical at the start");
  uint64_t compared = 0;
  if (cvg_monitor_recheck(m, 0, &compared, &err) != CVG_OK) /* settle: nothing changed yet */
    die(err.input, err.msg);
  long long *ids = malloc((changes + 10) * sizeof *ids);
  if (!ids)
    die("malloc", "out of memory");
  srand(42);
  double tr[99], td[99], tf[99];
  for (int r = 0; r < runs; r++) {
    for (size_t i = 0; i < changes + 10; i++) {
      int dup;
      do { /* the 10 in-flight ids differ from every other id of the run */
        ids[i] = 1 + (long long)(((unsigned long long)rand() << 16 ^ (unsigned long long)rand()) %
                                 (unsigned long long)n_rows);
        dup = 0;
        for (size_t k = changes; i >= changes && k < i; k++)
          dup |= ids[k] == ids[i];
        for (size_t k = 0; i >= changes && k < changes && !dup; k++)
          dup |= ids[k] == ids[i];
      } while (dup);
    }
    update(da, ids, changes, ver);
    update(db, ids, changes, ver);
    update(da, ids + changes, 10, ver + (long long)changes); /* in flight to B */
    ver += (long long)changes + 10;
    settle();
    if (r % 2) /* alternating: every other run reads the floor first */
      tf[r] = floor_read(da, a, b, ids, changes + 10);
    t0 = now();
    if (cvg_monitor_recheck(m, 0, &compared, &err) != CVG_OK)
      die(err.input, err.msg);
    tr[r] = now() - t0;
    long long found = divergent(m);
    if (found != 10) {
      fprintf(stderr, "recheck: the check tracks %lld divergent keys, want the 10 in flight\n",
              found);
      cvg_buf b;
      cvg_buf_init(&b, 1u << 26);
      cvg_monitor_divergences_json(m, NULL, -1, NULL, NULL, 3, &b);
      fprintf(stderr, "%.*s\n", (int)b.len, (const char *)b.data);
      return 1;
    }
    if (r % 2 == 0)
      tf[r] = floor_read(da, a, b, ids, changes + 10);
    td[r] = getenv("SKIP_DIFF") ? 1 : run_diff(converge, a, b);
    printf("run %d: incremental re-check %.4f s (%llu keys compared)   raw-read floor %.4f s   "
           "full converge diff %.2f s\n",
           r + 1, tr[r], (unsigned long long)compared, tf[r], td[r]);
    update(db, ids + changes, 10, ver - 10); /* replication catches up */
  }
  double mr = median(tr, runs), md = median(td, runs), mf = median(tf, runs);
  printf("rows: %lld per replica; changed per run: %zu on both + 10 on one\n", n_rows, changes);
  printf("median: incremental re-check %.4f s, full diff %.2f s -> re-check is %.0fx faster\n", mr,
         md, md / mr);
  printf("median: raw-read floor (the leaf pages of the changed rows, both files, 2 threads) "
         "%.4f s -> the "
         "re-check is %.2fx the floor; the floor itself is %.0fx faster than the full diff "
         "(100x needs %.4f s)\n",
         mf, mr / mf, md / mf, md / 100);
  sqlite3_close(da);
  sqlite3_close(db);
  cvg_monitor_free(m);
  cvg_catalog_free(cat);
  free(ids);
  return 0;
}
