/* SPDX-License-Identifier: MIT */
/*
 * The direct readers of SQLite files (lib/store/sqlite_btree.c) on arbitrary file images: the
 * table walk, rowid seeks (through the image and with pread), and index ranges must answer or
 * report CVG_ECORRUPT / CVG_EINVAL, never read outside the image or loop for ever.
 *
 * Input: 8 bytes of parameters, then the file image.
 *   [0..1] table root page, [2..3] index root page (little-endian), [4] the index key's kind
 *   (numbers, reals, text, blobs), [5..7] the key and the first rowid sought.
 */
#define _GNU_SOURCE /* memfd_create */
#include "../lib/store/sqlite_btree.h"
#include "converge/status.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static volatile unsigned sink;

static void walk(const unsigned char *img, size_t n, uint32_t root) {
  cvgi_btree bt;
  if (cvgi_btree_init(&bt, img, n, root) == CVG_OK) {
    bt.keep_resident = 1; /* the image is not a file mapping: never drop its pages */
    int64_t rowid;
    const unsigned char *rec;
    size_t len;
    for (int steps = 0; steps < 20000 && cvgi_btree_next(&bt, &rowid, &rec, &len) == CVG_OK;
         steps++)
      sink += len ? rec[0] ^ rec[len - 1] : 0;
  }
  cvgi_btree_release(&bt);
}

static void seek(const unsigned char *img, size_t n, uint32_t root, int fd, int64_t from) {
  cvgi_btree bt;
  if (cvgi_btree_init(&bt, img, n, root) == CVG_OK) {
    bt.keep_resident = 1;
    bt.fd = fd;
    for (int64_t r = from; r < from + 64; r += 3) {
      const unsigned char *rec;
      size_t len;
      int found;
      if (cvgi_btree_seek(&bt, r, &rec, &len, &found) != CVG_OK)
        break;
      if (found)
        sink += len ? rec[0] ^ rec[len - 1] : 0;
    }
  }
  cvgi_btree_release(&bt);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 8 + 100)
    return 0;
  uint32_t troot = (uint32_t)data[0] | (uint32_t)data[1] << 8;
  uint32_t iroot = (uint32_t)data[2] | (uint32_t)data[3] << 8;
  int kind = data[4] & 3;
  int64_t k = (int8_t)data[5] * 256 + data[6];
  const unsigned char *img = data + 8;
  size_t n = size - 8;
  walk(img, n, troot);
  seek(img, n, troot, -1, k);
  int fd = memfd_create("fuzz-btree", MFD_CLOEXEC);
  if (fd < 0)
    return 0;
  if (write(fd, img, n) == (ssize_t)n) {
    seek(img, n, troot, fd, k);
    cvgi_btree bt;                   /* for the page size and usable bytes the header gives */
    cvgi_btree_init(&bt, img, n, 1); /* sets the page size even when page 1 is unusable */
    if (bt.page_size >= 512) {
      cvgi_ikey key;
      memset(&key, 0, sizeof key);
      key.cls = kind == 0 || kind == 1 ? 1 : kind;
      key.is_real = kind == 1;
      key.i = k;
      key.r = (double)k + 0.5;
      key.p = data + 5;
      key.n = 3;
      cvgi_rowids r = {NULL, 0, 0, 4096};
      cvgi_index_range(fd, n / bt.page_size, bt.page_size, bt.usable, iroot, &key, &r);
      free(r.v);
    }
    cvgi_btree_release(&bt);
  }
  close(fd);
  return 0;
}
