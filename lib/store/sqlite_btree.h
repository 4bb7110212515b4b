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
  int fd; /* when >= 0, seeks read leaf pages with pread() into pagebuf; BORROWED, never closed */
  int leaf_depth;         /* depth at which the last seek found a leaf, -1 before */
  unsigned char *pagebuf; /* OWNED; one page */
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

/* Reads a SQLite varint at p (at most end - p bytes); returns its length, 0 if truncated. */
size_t cvgi_varint(const unsigned char *p, const unsigned char *end, uint64_t *v);

#endif
