/* SPDX-License-Identifier: MIT */
/*
 * Direct reader of SQLite table b-trees, for the scan's fast path.
 *
 * Why: going through SQLite's VDBE and column API costs about 250 ns a row on the benchmark
 * table; reading the pages ourselves costs a fraction of that, and a diff is mostly reading.
 * The file format is SQLite's published, stable one ("Database File Format", sqlite.org):
 *
 *   page 1: 100-byte database header, then a b-tree page. Every b-tree page header:
 *     +0  flag: 0x05 interior table page, 0x0D leaf table page
 *     +3  u16 number of cells
 *     +8  (interior only) u32 right-most child page
 *     then the cell pointer array: u16 offsets, 8 (leaf) or 12 (interior) bytes after the header
 *   interior cell: u32 left child page, varint rowid (upper bound of the child)
 *   leaf cell:     varint payload size P, varint rowid, payload (the record), and when P is too
 *                  big for the page, the first local bytes then a u32 first overflow page;
 *                  overflow pages hold a u32 next page then usable-4 bytes of payload.
 *
 * A depth-first walk visits the leaves left to right, which is rowid order. The caller
 * (sqlite.c) uses this only when it is safe: a rowid table keyed by its INTEGER PRIMARY KEY, a
 * UTF-8 database, no WAL content, and a read transaction held on a real SQLite connection for
 * the whole walk so no writer can change the file underneath. Every offset read from the file is
 * bounds-checked: a corrupt file gives CVG_ECORRUPT, never a wild read.
 */
#include "sqlite_btree.h"
#include "converge/status.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

/* Leaves between drops of the mapping from our resident set (bounded memory, see below). */
#define LEAVES_PER_PURGE 2048

static uint32_t be16(const unsigned char *p) {
  return (uint32_t)p[0] << 8 | p[1];
}
static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

size_t cvgi_varint(const unsigned char *p, const unsigned char *end, uint64_t *v) {
  uint64_t x = 0;
  for (size_t i = 0; i < 9; i++) {
    if (p + i >= end)
      return 0;
    if (i == 8) {
      *v = (x << 8) | p[i];
      return 9;
    }
    x = (x << 7) | (p[i] & 0x7F);
    if (!(p[i] & 0x80)) {
      *v = x;
      return i + 1;
    }
  }
  return 0;
}

static const unsigned char *page_at(const cvgi_btree *bt, uint32_t pgno) {
  if (pgno == 0 || (uint64_t)pgno * bt->page_size > bt->map_len)
    return NULL;
  return bt->map + (size_t)(pgno - 1) * bt->page_size;
}

int cvgi_btree_init(cvgi_btree *bt, const unsigned char *map, size_t map_len, uint32_t root) {
  memset(bt, 0, sizeof *bt);
  bt->fd = -1;
  cvg_buf_init(&bt->payload, (size_t)1 << 31);
  if (map_len < 100 || memcmp(map, "SQLite format 3", 16) != 0)
    return CVG_ECORRUPT;
  uint32_t ps = be16(map + 16);
  bt->page_size = ps == 1 ? 65536 : ps;
  if (bt->page_size < 512 || (bt->page_size & (bt->page_size - 1)))
    return CVG_ECORRUPT;
  if (map[20] >= bt->page_size - 480)
    return CVG_ECORRUPT;
  bt->usable = bt->page_size - map[20];
  bt->map = map;
  bt->map_len = map_len;
  bt->root = root;
  const unsigned char *pg = page_at(bt, root);
  if (!pg)
    return CVG_ECORRUPT;
  uint32_t hdr = root == 1 ? 100 : 0;
  if (pg[hdr] == 0x0D) {
    bt->leaf = pg;
    bt->leaf_hdr = hdr;
    bt->leaf_cells = be16(pg + hdr + 3);
    bt->leaf_idx = 0;
  } else if (pg[hdr] == 0x05) {
    bt->stack[0].pgno = root;
    bt->stack[0].cell = 0;
    bt->depth = 1;
  } else {
    return CVG_ECORRUPT;
  }
  return CVG_OK;
}

void cvgi_btree_release(cvgi_btree *bt) {
  cvg_buf_release(&bt->payload);
  bt->fd = -1; /* BORROWED from the process-wide cache of sqlite.c: never closed */
  for (int d = 0; d < CVGI_BTREE_DEPTH; d++) {
    free(bt->dbuf[d]);
    bt->dbuf[d] = NULL;
    bt->dpg[d] = 0;
  }
}

/* Moves to the next leaf; CVG_DONE when there is none. */
static int next_leaf(cvgi_btree *bt) {
  while (bt->depth > 0) {
    uint32_t pgno = bt->stack[bt->depth - 1].pgno;
    const unsigned char *pg = page_at(bt, pgno);
    uint32_t hdr = pgno == 1 ? 100 : 0;
    if (!pg)
      return CVG_ECORRUPT;
    uint32_t n = be16(pg + hdr + 3);
    uint32_t i = bt->stack[bt->depth - 1].cell++;
    uint32_t child;
    if (i < n) {
      uint32_t off = be16(pg + hdr + 12 + 2 * i);
      if (hdr + 12 + 2 * n > bt->page_size || off + 4 > bt->usable)
        return CVG_ECORRUPT;
      child = be32(pg + off);
    } else if (i == n) {
      child = be32(pg + hdr + 8);
    } else {
      bt->depth--;
      continue;
    }
    if (++bt->pages_seen > bt->map_len / bt->page_size + 1)
      return CVG_ECORRUPT; /* a cycle */
    const unsigned char *cp = page_at(bt, child);
    uint32_t chdr = child == 1 ? 100 : 0;
    if (!cp)
      return CVG_ECORRUPT;
    if (cp[chdr] == 0x0D) {
      /* Pages of a file mapping count in the resident set as they are touched, so a walk of a
       * 10 GB table would look like 10 GB of memory. Every few thousand leaves the whole
       * mapping is dropped from the resident set (the kernel's page cache keeps the pages; the
       * few the walk still holds — its stack — fault back in), which keeps memory bounded. No
       * pointer into the mapping is held by a caller at this point. */
      if (++bt->leaves % LEAVES_PER_PURGE == 0 && !bt->keep_resident)
        madvise((void *)bt->map, bt->map_len, MADV_DONTNEED);
      bt->leaf = cp;
      bt->leaf_hdr = chdr;
      bt->leaf_cells = be16(cp + chdr + 3);
      bt->leaf_idx = 0;
      if (chdr + 8 + 2 * bt->leaf_cells > bt->page_size)
        return CVG_ECORRUPT;
      return CVG_OK;
    }
    if (cp[chdr] != 0x05 || bt->depth == CVGI_BTREE_DEPTH)
      return CVG_ECORRUPT;
    bt->stack[bt->depth].pgno = child;
    bt->stack[bt->depth].cell = 0;
    bt->depth++;
  }
  return CVG_DONE;
}

/* The rowid and record of cell idx of a leaf table page (hdr: offset of its header). */
static int leaf_cell(cvgi_btree *bt, const unsigned char *pg, uint32_t hdr, uint32_t idx,
                     int64_t *rowid, const unsigned char **rec, size_t *rec_len) {
  const unsigned char *end = pg + bt->usable;
  uint32_t off = be16(pg + hdr + 8 + 2 * idx);
  if (off >= bt->usable)
    return CVG_ECORRUPT;
  const unsigned char *p = pg + off;
  uint64_t size, rid;
  size_t k = cvgi_varint(p, end, &size);
  if (!k)
    return CVG_ECORRUPT;
  p += k;
  k = cvgi_varint(p, end, &rid);
  if (!k)
    return CVG_ECORRUPT;
  p += k;
  *rowid = (int64_t)rid;
  if (!rec)
    return CVG_OK;
  uint64_t U = bt->usable, X = U - 35;
  if (size <= X) {
    if (p + size > end)
      return CVG_ECORRUPT;
    *rec = p;
    *rec_len = (size_t)size;
    return CVG_OK;
  }
  /* Spilled: the local part, then the overflow chain. */
  uint64_t M = ((U - 12) * 32 / 255) - 23;
  uint64_t K = M + ((size - M) % (U - 4));
  uint64_t local = K <= X ? K : M;
  if (p + local + 4 > end || size > bt->payload.max)
    return CVG_ECORRUPT;
  cvg_buf_reset(&bt->payload);
  if (cvg_buf_append(&bt->payload, p, (size_t)local))
    return CVG_ENOMEM;
  uint32_t next = be32(p + local);
  uint64_t left = size - local;
  uint64_t hops = 0;
  while (left > 0) {
    const unsigned char *op = page_at(bt, next);
    if (!op || ++hops > bt->map_len / bt->page_size + 1)
      return CVG_ECORRUPT;
    uint64_t chunk = left < U - 4 ? left : U - 4;
    if (cvg_buf_append(&bt->payload, op + 4, (size_t)chunk))
      return CVG_ENOMEM;
    left -= chunk;
    next = be32(op);
  }
  *rec = bt->payload.data;
  *rec_len = bt->payload.len;
  return CVG_OK;
}

int cvgi_btree_next(cvgi_btree *bt, int64_t *rowid, const unsigned char **rec, size_t *rec_len) {
  while (!bt->leaf || bt->leaf_idx >= bt->leaf_cells) {
    bt->leaf = NULL;
    if (bt->done)
      return CVG_DONE;
    int rc = next_leaf(bt);
    if (rc == CVG_DONE)
      bt->done = 1;
    if (rc)
      return rc;
  }
  return leaf_cell(bt, bt->leaf, bt->leaf_hdr, bt->leaf_idx++, rowid, rec, rec_len);
}

/* The key of cell i: the rowid of a leaf cell, the upper bound of an interior cell's child. */
static int cell_key(cvgi_btree *bt, const unsigned char *pg, uint32_t hdr, int leaf, uint32_t i,
                    int64_t *key) {
  if (leaf)
    return leaf_cell(bt, pg, hdr, i, key, NULL, NULL);
  uint32_t off = be16(pg + hdr + 12 + 2 * i);
  uint64_t k;
  if (off + 4 >= bt->usable || !cvgi_varint(pg + off + 4, pg + bt->usable, &k))
    return CVG_ECORRUPT;
  *key = (int64_t)k;
  return CVG_OK;
}

/*
 * The first cell of the page (n >= 1 cells) whose key >= rowid, or n. Keys of a rowid table are
 * usually spread evenly over a page, so the search guesses the position by interpolation and
 * checks the guess against its neighbour; only a wrong guess falls back to bisection. Each probe
 * decodes a cell, so fewer probes is what makes a seek fast. The interpolation runs between the
 * bounds the parent page gives (lo, hi] when it has them - no probe - or else between the first
 * and the last keys of the page.
 */
static int lower_bound(cvgi_btree *bt, const unsigned char *pg, uint32_t hdr, int leaf, uint32_t n,
                       int64_t rowid, int64_t lo_bound, int64_t hi_bound, uint32_t *out) {
  int64_t first, last, k;
  int rc;
  if (lo_bound == INT64_MIN || hi_bound == INT64_MAX || lo_bound >= hi_bound) {
    if ((rc = cell_key(bt, pg, hdr, leaf, 0, &first)))
      return rc;
    if (rowid <= first)
      return *out = 0, CVG_OK;
    if ((rc = cell_key(bt, pg, hdr, leaf, n - 1, &last)))
      return rc;
    if (rowid > last)
      return *out = n, CVG_OK;
  } else {
    first = lo_bound + 1; /* estimates: the page's keys lie in (lo, hi] */
    last = hi_bound;
  }
  uint32_t g = 0;
  if (n > 1 && rowid > first) {
    double frac = ((double)rowid - (double)first) / ((double)last - (double)first + 1e-9);
    double pos = frac * (double)(n - 1) + 0.5;
    g = pos >= (double)(n - 1) ? n - 1 : (uint32_t)pos;
  }
  uint32_t lo, hi; /* the answer lies in [lo, hi] */
  if ((rc = cell_key(bt, pg, hdr, leaf, g, &k)))
    return rc;
  if (k >= rowid) {
    if (g == 0)
      return *out = 0, CVG_OK;
    if ((rc = cell_key(bt, pg, hdr, leaf, g - 1, &k)))
      return rc;
    if (k < rowid)
      return *out = g, CVG_OK;
    lo = 0;
    hi = g - 1;
  } else {
    if (g + 1 == n)
      return *out = n, CVG_OK;
    if ((rc = cell_key(bt, pg, hdr, leaf, g + 1, &k)))
      return rc;
    if (k >= rowid)
      return *out = g + 1, CVG_OK;
    lo = g + 2;
    hi = n;
  }
  while (lo < hi) { /* invariant: key(lo-1) < rowid (or lo = 0), key(hi) >= rowid (or hi = n) */
    uint32_t mid = lo + (hi - lo) / 2;
    if ((rc = cell_key(bt, pg, hdr, leaf, mid, &k)))
      return rc;
    if (k < rowid)
      lo = mid + 1;
    else
      hi = mid;
  }
  *out = lo;
  return CVG_OK;
}

/*
 * Interior table cells are (u32 left child, varint key): the child holds rowids <= key, the
 * right-most pointer everything greater. The path of the last seek is remembered with the rowid
 * range each page on it covers, and a seek starts from the deepest page whose range holds the
 * rowid: for ascending rowids (the incremental scan sorts them) most seeks skip the upper levels.
 */
int cvgi_btree_seek(cvgi_btree *bt, int64_t rowid, const unsigned char **rec, size_t *rec_len,
                    int *found) {
  *found = 0;
  /* Like the walk, keep the resident set bounded: every few thousand seeks, drop the mapping's
   * pages (the page cache keeps them). No pointer into the mapping is held by the caller now.
   * When pages are read with pread() (bt->fd), only overflow pages enter the mapping. */
  if (++bt->seeks % LEAVES_PER_PURGE == 0 && !bt->keep_resident && bt->fd < 0)
    madvise((void *)bt->map, bt->map_len, MADV_DONTNEED);
  int d = bt->path_len - 1;
  while (d > 0 && !(bt->path[d].lo < rowid && rowid <= bt->path[d].hi))
    d--;
  if (d < 0) {
    bt->path[0].pgno = bt->root;
    bt->path[0].lo = INT64_MIN;
    bt->path[0].hi = INT64_MAX;
    d = 0;
  }
  for (; d < CVGI_BTREE_DEPTH; d++) {
    bt->path_len = d + 1;
    uint32_t pgno = bt->path[d].pgno;
    const unsigned char *pg = page_at(bt, pgno);
    uint32_t hdr = pgno == 1 ? 100 : 0;
    if (!pg)
      return CVG_ECORRUPT;
    /* With a descriptor, every page on the path is read with pread() into that depth's
     * buffer, and kept there while later seeks (ascending rowids) pass through it: on this
     * kind of machine bringing a page into a mapping, and tearing the mapping down, costs more
     * than copying it, and a page on the path is read once however many seeks use it. */
    if (bt->fd >= 0 && pgno != 1) {
      if (bt->dpg[d] != pgno) {
        if (!bt->dbuf[d] && !(bt->dbuf[d] = malloc(bt->page_size)))
          return CVG_ENOMEM;
        bt->dpg[d] = 0;
        if (pread(bt->fd, bt->dbuf[d], bt->page_size, (off_t)(pgno - 1) * bt->page_size) ==
            (ssize_t)bt->page_size)
          bt->dpg[d] = pgno;
      }
      if (bt->dpg[d] == pgno)
        pg = bt->dbuf[d];
    }
    uint32_t n = be16(pg + hdr + 3), i;
    int rc;
    if (pg[hdr] == 0x05) {
      if (n == 0 || hdr + 12 + 2 * n > bt->page_size || d + 1 == CVGI_BTREE_DEPTH)
        return CVG_ECORRUPT;
      if ((rc = lower_bound(bt, pg, hdr, 0, n, rowid, bt->path[d].lo, bt->path[d].hi, &i)))
        return rc;
      int64_t lo_key = bt->path[d].lo, hi_key = bt->path[d].hi;
      if (i > 0 && (rc = cell_key(bt, pg, hdr, 0, i - 1, &lo_key)))
        return rc;
      if (i < n && (rc = cell_key(bt, pg, hdr, 0, i, &hi_key)))
        return rc;
      bt->path[d + 1].pgno = i < n ? be32(pg + be16(pg + hdr + 12 + 2 * i)) : be32(pg + hdr + 8);
      bt->path[d + 1].lo = lo_key;
      bt->path[d + 1].hi = hi_key;
      continue;
    }
    if (pg[hdr] != 0x0D || hdr + 8 + 2 * n > bt->page_size)
      return CVG_ECORRUPT;
    if (n == 0)
      return CVG_OK;
    if ((rc = lower_bound(bt, pg, hdr, 1, n, rowid, bt->path[d].lo, bt->path[d].hi, &i)))
      return rc;
    int64_t r;
    if (i < n && (rc = leaf_cell(bt, pg, hdr, i, &r, rec, rec_len)) == CVG_OK && r == rowid)
      *found = 1;
    return rc;
  }
  return CVG_ECORRUPT; /* deeper than any real b-tree: a cycle */
}

/* ---- index ranges: the incremental scan's changed rowids, read from the version index ---- */

/*
 * Index b-tree pages (flag 0x02 interior, 0x0A leaf) hold records, not rowids: an index of a
 * rowid table stores (indexed columns..., rowid). Unlike a table b-tree, an interior cell's
 * record is an entry of its own (u32 left child, varint payload size, payload), so an in-order
 * walk visits a child, then the cell that follows it. The entries >= the key are found by
 * descending to the first of them and walking on to the end of the tree.
 */
typedef struct ixwalk {
  int fd;
  uint64_t file_pages;
  uint32_t ps, usable, max_local;
  const cvgi_ikey *key;
  cvgi_rowids *out;
  unsigned char *buf[CVGI_BTREE_DEPTH]; /* OWNED; one page per depth */
  uint64_t pages;                       /* read so far: a cycle guard */
} ixwalk;

static int ix_read(ixwalk *w, int depth, uint32_t pgno, const unsigned char **pg) {
  if (pgno == 0 || pgno > w->file_pages || ++w->pages > w->file_pages)
    return CVG_ECORRUPT;
  if (!w->buf[depth] && !(w->buf[depth] = malloc(w->ps)))
    return CVG_ENOMEM;
  if (pread(w->fd, w->buf[depth], w->ps, (off_t)(pgno - 1) * w->ps) != (ssize_t)w->ps)
    return CVG_EIO;
  *pg = w->buf[depth];
  return CVG_OK;
}

static uint64_t serial_len(uint64_t st) {
  static const unsigned char n[10] = {0, 1, 2, 3, 4, 6, 8, 8, 0, 0};
  return st >= 12 ? (st - 12) / 2 : n[st];
}

/* A big-endian two's-complement integer of len (1-8) bytes. */
static int64_t be_int(const unsigned char *p, uint64_t len) {
  uint64_t v = (p[0] & 0x80) ? ~(uint64_t)0 : 0;
  for (uint64_t i = 0; i < len; i++)
    v = (v << 8) | p[i];
  return (int64_t)v;
}

/* The payload (record) of cell i of an index page. */
static int ix_cell(const ixwalk *w, const unsigned char *pg, uint32_t ptrs, int leaf, uint32_t i,
                   const unsigned char **rec, uint64_t *len) {
  uint32_t off = be16(pg + ptrs + 2 * i) + (leaf ? 0 : 4);
  if (off >= w->usable)
    return CVG_ECORRUPT;
  const unsigned char *end = pg + w->usable;
  size_t k = cvgi_varint(pg + off, end, len);
  if (!k)
    return CVG_ECORRUPT;
  if (*len > w->max_local)
    return CVG_EINVAL; /* spills onto overflow pages: not read here */
  if (pg + off + k + *len > end)
    return CVG_ECORRUPT;
  *rec = pg + off + k;
  return CVG_OK;
}

/* The first and last fields of a record: serial types and the bytes of their values. */
static int ix_fields(const unsigned char *rec, uint64_t len, uint64_t *st0,
                     const unsigned char **v0, uint64_t *stn, const unsigned char **vn) {
  const unsigned char *end = rec + len;
  uint64_t hlen, st;
  size_t k = cvgi_varint(rec, end, &hlen);
  if (!k || hlen > len || hlen <= k)
    return CVG_ECORRUPT;
  uint64_t body = hlen;
  int first = 1;
  for (const unsigned char *p = rec + k; p < rec + hlen; first = 0) {
    size_t m = cvgi_varint(p, rec + hlen, &st);
    if (!m || st == 10 || st == 11)
      return CVG_ECORRUPT;
    p += m;
    uint64_t n = serial_len(st);
    if (n > len - body)
      return CVG_ECORRUPT;
    if (first) {
      *st0 = st;
      *v0 = rec + body;
    }
    *stn = st;
    *vn = rec + body;
    body += n;
  }
  return CVG_OK;
}

/* The sign of i - r, as SQLite compares an integer with a real. */
static int int_real_cmp(int64_t i, double r) {
  if (r != r)
    return 1; /* SQLite stores NaN as NULL: never here, but ordered anyway */
  if (r < -9223372036854775808.0)
    return 1;
  if (r >= 9223372036854775808.0)
    return -1;
  int64_t y = (int64_t)r;
  if (i != y)
    return i < y ? -1 : 1;
  double s = (double)i;
  return s < r ? -1 : s > r;
}

static int bytes_cmp(const unsigned char *a, size_t an, const unsigned char *b, size_t bn) {
  int c = memcmp(a, b, an < bn ? an : bn);
  return c ? c : (an > bn) - (an < bn);
}

/* The sign of field - key, for a field of serial type st whose value is at v. */
static int field_cmp(uint64_t st, const unsigned char *v, const cvgi_ikey *key) {
  if (st == 0)
    return -1; /* NULL sorts first; the key is never NULL */
  int cls = st < 12 ? 1 : (st & 1) ? 2 : 3;
  if (cls != key->cls)
    return cls < key->cls ? -1 : 1;
  if (cls != 1)
    return bytes_cmp(v, (size_t)serial_len(st), key->p, key->n);
  if (st == 7) {
    uint64_t bits = (uint64_t)be_int(v, 8);
    double r;
    memcpy(&r, &bits, sizeof r);
    if (key->is_real)
      return r < key->r ? -1 : r > key->r;
    return -int_real_cmp(key->i, r);
  }
  int64_t i = st == 8 ? 0 : st == 9 ? 1 : be_int(v, serial_len(st));
  if (key->is_real)
    return int_real_cmp(i, key->r);
  return i < key->i ? -1 : i > key->i;
}

static int ix_emit(ixwalk *w, const unsigned char *rec, uint64_t len) {
  uint64_t st0, stn;
  const unsigned char *v0, *vn;
  int rc = ix_fields(rec, len, &st0, &v0, &stn, &vn);
  if (rc)
    return rc;
  if (stn == 0 || stn > 9 || stn == 7)
    return CVG_ECORRUPT; /* the rowid is an integer */
  cvgi_rowids *o = w->out;
  if (o->n == o->cap) {
    if (o->n >= o->max)
      return CVG_ETOOBIG;
    size_t cap = o->cap ? o->cap * 2 : 1024;
    int64_t *g = realloc(o->v, cap * sizeof *g);
    if (!g)
      return CVG_ENOMEM;
    o->v = g;
    o->cap = cap;
  }
  o->v[o->n++] = stn == 8 ? 0 : stn == 9 ? 1 : be_int(vn, serial_len(stn));
  return CVG_OK;
}

/* Visits, in order, the entries of the subtree at pgno; with bounded, only those >= the key. */
static int ix_walk(ixwalk *w, uint32_t pgno, int depth, int bounded) {
  if (depth >= CVGI_BTREE_DEPTH)
    return CVG_ECORRUPT;
  const unsigned char *pg;
  int rc = ix_read(w, depth, pgno, &pg);
  if (rc)
    return rc;
  uint32_t hdr = pgno == 1 ? 100 : 0;
  int leaf = pg[hdr] == 0x0A;
  if (!leaf && pg[hdr] != 0x02)
    return CVG_ECORRUPT;
  uint32_t n = be16(pg + hdr + 3), ptrs = hdr + (leaf ? 8 : 12);
  if (ptrs + 2 * n > w->usable)
    return CVG_ECORRUPT;
  const unsigned char *rec;
  uint64_t len, st0, stn;
  const unsigned char *v0, *vn;
  uint32_t start = 0;
  if (bounded) { /* the first cell >= key */
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
      uint32_t mid = lo + (hi - lo) / 2;
      if ((rc = ix_cell(w, pg, ptrs, leaf, mid, &rec, &len)) ||
          (rc = ix_fields(rec, len, &st0, &v0, &stn, &vn)))
        return rc;
      if (field_cmp(st0, v0, w->key) < 0)
        lo = mid + 1;
      else
        hi = mid;
    }
    start = lo;
  }
  for (uint32_t i = start; i <= n; i++) {
    if (!leaf) {
      uint32_t child;
      if (i < n) {
        uint32_t off = be16(pg + ptrs + 2 * i);
        if (off + 4 > w->usable)
          return CVG_ECORRUPT;
        child = be32(pg + off);
      } else {
        child = be32(pg + hdr + 8);
      }
      /* the child before the first cell >= key may hold entries >= key; later ones all do */
      if ((rc = ix_walk(w, child, depth + 1, bounded && i == start)))
        return rc;
    }
    if (i < n && ((rc = ix_cell(w, pg, ptrs, leaf, i, &rec, &len)) || (rc = ix_emit(w, rec, len))))
      return rc;
  }
  return CVG_OK;
}

int cvgi_index_range(int fd, uint64_t file_pages, uint32_t page_size, uint32_t usable,
                     uint32_t root, const cvgi_ikey *key, cvgi_rowids *out) {
  if (page_size < 512 || usable < 480 || usable > page_size)
    return CVG_ECORRUPT;
  ixwalk w;
  memset(&w, 0, sizeof w);
  w.fd = fd;
  w.file_pages = file_pages;
  w.ps = page_size;
  w.usable = usable;
  w.max_local = (usable - 12) * 64 / 255 - 23; /* larger index payloads spill */
  w.key = key;
  w.out = out;
  int rc = ix_walk(&w, root, 0, 1);
  for (int d = 0; d < CVGI_BTREE_DEPTH; d++)
    free(w.buf[d]);
  return rc;
}
