/* SPDX-License-Identifier: MIT */
/*
 * The raw-read floor of bench/diff_vs_sqldiff: reads every column of every row of each given
 * SQLite table once, one thread per file, in parallel, doing nothing else (each value is fetched
 * with the accessor of its storage class and folded into a checksum so the reads cannot be
 * optimised away). A diff cannot be faster than this.
 *
 * usage: rawread FILE TABLE [FILE TABLE ...]
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct job {
  const char *path;  /* database file */
  const char *table; /* table name (trusted: benchmark input) */
  uint64_t rows;     /* rows read */
  uint64_t sum;      /* checksum of what was read */
  int failed;        /* nonzero on error */
} job;

static void *read_all(void *arg) {
  job *j = arg;
  sqlite3 *db = NULL;
  sqlite3_stmt *s = NULL;
  char sql[512];
  snprintf(sql, sizeof sql, "SELECT * FROM \"%s\"", j->table);
  if (sqlite3_open_v2(j->path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
          SQLITE_OK ||
      sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
    fprintf(stderr, "rawread: %s: %s\n", j->path, sqlite3_errmsg(db));
    j->failed = 1;
    sqlite3_close(db);
    return NULL;
  }
  int n = sqlite3_column_count(s), rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    for (int i = 0; i < n; i++) {
      switch (sqlite3_column_type(s, i)) {
      case SQLITE_INTEGER:
        j->sum += (uint64_t)sqlite3_column_int64(s, i);
        break;
      case SQLITE_FLOAT:
        j->sum += (uint64_t)sqlite3_column_double(s, i);
        break;
      case SQLITE_TEXT:
        j->sum += (uint64_t)sqlite3_column_bytes(s, i) + *sqlite3_column_text(s, i);
        break;
      case SQLITE_BLOB:
        j->sum += (uint64_t)sqlite3_column_bytes(s, i);
        break;
      default:
        break;
      }
    }
    j->rows++;
  }
  j->failed = rc != SQLITE_DONE;
  sqlite3_finalize(s);
  sqlite3_close(db);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 3 || (argc - 1) % 2) {
    fprintf(stderr, "usage: rawread FILE TABLE [FILE TABLE ...]\n");
    return 2;
  }
  int n = (argc - 1) / 2;
  job *jobs = calloc((size_t)n, sizeof *jobs);
  pthread_t *th = calloc((size_t)n, sizeof *th);
  if (!jobs || !th)
    return 2;
  for (int i = 0; i < n; i++) {
    jobs[i].path = argv[1 + 2 * i];
    jobs[i].table = argv[2 + 2 * i];
    if (pthread_create(&th[i], NULL, read_all, &jobs[i]) != 0)
      return 2;
  }
  int failed = 0;
  for (int i = 0; i < n; i++) {
    pthread_join(th[i], NULL);
    failed |= jobs[i].failed;
    printf("%s: %llu rows (checksum %llx)\n", jobs[i].path, (unsigned long long)jobs[i].rows,
           (unsigned long long)jobs[i].sum);
  }
  free(jobs);
  free(th);
  return failed ? 2 : 0;
}
