/* SPDX-License-Identifier: MIT */
/*
 * bench/pg's driver: one full scan of a replica through converge's store interface - every row
 * in key order, the key encoded, the other columns encoded and fingerprinted, as `converge diff`
 * reads it - and nothing else. Prints rows and seconds.
 *
 * usage: pgscan URL
 */
#include "converge/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: pgscan URL\n");
    return 2;
  }
  cvg_error err;
  cvg_error_clear(&err);
  cvg_store *st = NULL;
  cvg_table_desc d;
  if (cvg_store_open(&st, argv[1], CVG_STORE_READONLY, &err) || cvg_store_describe(st, &d, &err)) {
    fprintf(stderr, "pgscan: %s: %s\n", err.input, err.msg);
    return 2;
  }
  const char **key = calloc(d.n_cols, sizeof *key), **cmp = calloc(d.n_cols, sizeof *cmp);
  size_t nk = 0, nc = 0;
  for (size_t p = 1; p <= d.n_pk; p++)
    for (size_t i = 0; i < d.n_cols; i++)
      if ((size_t)d.cols[i].pk == p)
        key[nk++] = d.cols[i].name;
  for (size_t i = 0; i < d.n_cols; i++)
    if (!d.cols[i].pk)
      cmp[nc++] = d.cols[i].name;
  cvg_scan_spec spec = {.key_cols = key, .n_key = nk, .cmp_cols = cmp, .n_cmp = nc};
  double t0 = now();
  cvg_scan *sc = NULL;
  cvg_scan_row row;
  unsigned long long rows = 0, sum = 0;
  int rc = cvg_scan_open(st, &spec, &sc, &err);
  while (!rc && (rc = cvg_scan_next(sc, &row, &err)) == CVG_OK) {
    rows++;
    sum += row.fp.lo ^ row.key_len;
  }
  cvg_scan_close(sc);
  if (rc != CVG_DONE) {
    fprintf(stderr, "pgscan: %s\n", err.msg);
    return 2;
  }
  printf("%llu rows %.3f s (checksum %llx)\n", rows, now() - t0, sum);
  cvg_table_desc_release(&d);
  free(key);
  free(cmp);
  cvg_store_close(st);
  return 0;
}
