/* SPDX-License-Identifier: MIT */
/*
 * Direct reader of a SQLite table b-tree from a memory-mapped database file: the fast path of
 * the SQLite replica's scan (see sqlite_btree.c for when it is safe and how it is used).
 */
#ifndef CONVERGE_SQLITE_BTREE_H
#define CONVERGE_SQLITE_BTREE_H

#include "converge/encode.h"

#include <stddef.h>
#include <stdint.h>

#define CVGI_BTREE_DEPTH 40 /* deeper than any real table b-tree */

typedef struct cvgi_btree {
  const unsigned char *map; /* BORROWED mapping of the whole file */
  size_t map_len;           /* its length */
  uint32_t page_size;       /* bytes per page */
  uint32_t usable;          /* page size less reserved bytes */
  struct {
    uint32_t pgno; /* interior page */
    uint32_t cell; /* next child to visit (cells, then the right-most pointer) */
  } stack[CVGI_BTREE_DEPTH];
  int depth;                 /* entries on stack */
  const unsigned char *leaf; /* current leaf page, or NULL */
  uint32_t leaf_hdr;         /* offset of its b-tree header (100 on page 1) */
  uint32_t leaf_cells;       /* cells on it */
  uint32_t leaf_idx;         /* next cell */
  int done;                  /* the walk has finished */
  cvg_buf payload;           /* a record that spills onto overflow pages, reassembled */
  uint64_t pages_seen;       /* guard against cycles in a corrupt file */
  uint64_t leaves;           /* leaves visited */
  uint32_t root;             /* root page of the table */
  uint64_t seeks;            /* cvgi_btree_seek calls */
  int keep_resident;         /* never drop the mapping's pages (a kept mapping) */
  struct {
    uint32_t pgno;  /* page at this depth of the last seek's path */
    int64_t lo, hi; /* it holds the rowids in (lo, hi] */
  } path[CVGI_BTREE_DEPTH];
  int path_len; /* entries in path; 0 before the first seek */
  int fd;       /* when >= 0, seeks read pages with pread() into dbuf; BORROWED, never closed */
  unsigned char *dbuf[CVGI_BTREE_DEPTH]; /* OWNED; with fd, the page read at each depth */
  uint32_t dpg[CVGI_BTREE_DEPTH];        /* its page number, 0 for none */
} cvgi_btree;

/* Prepares a walk of the table b-tree rooted at root. CVG_ECORRUPT if the header is unusable. */
int cvgi_btree_init(cvgi_btree *bt, const unsigned char *map, size_t map_len, uint32_t root);
void cvgi_btree_release(cvgi_btree *bt);
/* Next row in rowid order: CVG_OK with rowid and the record (BORROWED until the next call),
 * CVG_DONE at the end, CVG_ECORRUPT on a malformed page. */
int cvgi_btree_next(cvgi_btree *bt, int64_t *rowid, const unsigned char **rec, size_t *rec_len);

/* Finds the row with this rowid by descending from the root: *found 0 when there is none, else
 * the record (BORROWED until the next call). CVG_ECORRUPT on a malformed page. */
int cvgi_btree_seek(cvgi_btree *bt, int64_t rowid, const unsigned char **rec, size_t *rec_len,
                    int *found);

/* Where an index range starts: one value, in SQLite's order of values (numbers by value, then
 * text, then blobs, each bytewise: the BINARY collation). */
typedef struct cvgi_ikey {
  int cls;     /* 1 number, 2 text, 3 blob */
  int is_real; /* a number: r, else i */
  int64_t i;
  double r;
  const unsigned char *p; /* text or blob bytes, BORROWED */
  size_t n;
} cvgi_ikey;

/* The rowids of an index range, read straight from the file. */
typedef struct cvgi_rowids {
  int64_t *v; /* OWNED, grown as needed */
  size_t n, cap;
  size_t max; /* no more than this many: CVG_ETOOBIG past it */
} cvgi_rowids;

/*
 * Appends to out the rowid of every entry of the index b-tree rooted at root (an index of a
 * rowid table: each record ends with the rowid) whose first column is >= key, in index order,
 * reading pages of page_size bytes (usable of them in use) with pread() on fd, which holds
 * file_pages pages. CVG_ECORRUPT on a malformed page, CVG_EINVAL for a cell that spills onto
 * overflow pages (the caller then asks SQLite), CVG_ETOOBIG past out->max, CVG_ENOMEM.
 */
int cvgi_index_range(int fd, uint64_t file_pages, uint32_t page_size, uint32_t usable,
                     uint32_t root, const cvgi_ikey *key, cvgi_rowids *out);

/* Reads a SQLite varint at p (at most end - p bytes); returns its length, 0 if truncated. */
size_t cvgi_varint(const unsigned char *p, const unsigned char *end, uint64_t *v);

#endif
