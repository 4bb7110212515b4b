/* SPDX-License-Identifier: MIT */
/*
 * The canonical encoding of SQL values, row fingerprints and shards.
 *
 * Every engine turns the values it reads into the same bytes, so that keys from different
 * replicas (and engines) can be merged by memcmp() and rows compared by a 128-bit fingerprint.
 * The byte layout is documented at the top of lib/core/encode.c; docs/encoding.md repeats it.
 *
 * Threading: every function here is pure and may be called from any thread.
 */
#ifndef CONVERGE_ENCODE_H
#define CONVERGE_ENCODE_H

#include <stddef.h>
#include <string.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Type tags. They are the first byte of every encoded value: their order is the sort order. */
typedef enum cvg_type {
  CVG_NULL = 0x01,
  CVG_INTEGER = 0x02,
  CVG_REAL = 0x03,
  CVG_TEXT = 0x04,
  CVG_BLOB = 0x05
} cvg_type;

/* A value borrowed from somewhere else (a statement, a decoded key). */
typedef struct cvg_value {
  cvg_type type; /* which member of u is valid */
  union {
    int64_t i; /* CVG_INTEGER */
    double r;  /* CVG_REAL */
    struct {
      const unsigned char *p; /* CVG_TEXT / CVG_BLOB bytes, BORROWED; not NUL-terminated */
      size_t n;               /* number of bytes */
    } s;
  } u;
} cvg_value;

/*
 * A growable byte buffer with a maximum size fixed at birth (curl's dynbuf): appending past the
 * maximum fails with CVG_ETOOBIG instead of eating memory. Embedded by the caller.
 */
typedef struct cvg_buf {
  unsigned char *data; /* OWNED; NULL until the first append */
  size_t len;          /* bytes used */
  size_t cap;          /* bytes allocated */
  size_t max;          /* the most it may ever hold */
} cvg_buf;

void cvg_buf_init(cvg_buf *b, size_t max);
void cvg_buf_release(cvg_buf *b); /* frees data; the buffer may be reused after init */
int cvg_buf_reserve(cvg_buf *b, size_t extra);
int cvg_buf_append_slow(cvg_buf *b, const void *p, size_t n);
/* Appends n bytes; inline when they fit, as most appends do (journal bodies, SQL, keys). */
static inline int cvg_buf_append(cvg_buf *b, const void *p, size_t n) {
  if (n <= b->cap - b->len && b->len + n <= b->max) {
    if (n)
      memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
  }
  return cvg_buf_append_slow(b, p, n);
}
static inline void cvg_buf_reset(cvg_buf *b) {
  b->len = 0;
}

/* Appends the canonical encoding of one value. Returns CVG_OK, CVG_ENOMEM or CVG_ETOOBIG. */
int cvg_encode_value(cvg_buf *out, const cvg_value *v);
int cvg_encode_null(cvg_buf *out);
int cvg_encode_int(cvg_buf *out, int64_t i);
int cvg_encode_real(cvg_buf *out, double r);
/* r rounded to digits (1-17) significant decimal digits, as printf's %.*g rounds it; NaN and the
 * infinities unchanged. Makes reals from engines with different float precision comparable. */
double cvg_round_real(double r, int digits);
/* If s (n bytes) is an ISO timestamp in UTC - YYYY-MM-DD, then 'T' or ' ', HH:MM:SS, an optional
 * fraction, an optional Z, +00, +00:00 or +0000 - writes it to out as YYYY-MM-DD HH:MM:SS with
 * the fraction cut to digits (0-6; zeros added) and returns its length; else returns 0. The
 * same instant written with another precision or zone notation then compares equal. */
size_t cvg_norm_timestamp(const char *s, size_t n, int digits, char *out, size_t size);
int cvg_encode_text(cvg_buf *out, const void *p, size_t n);
int cvg_encode_blob(cvg_buf *out, const void *p, size_t n);

/*
 * Decodes a whole tuple (a sequence of encoded values) into vals[0..*n_vals). Text and blob
 * values point into scratch, which is reset and must outlive vals. Returns CVG_ECORRUPT if the
 * bytes are not a well-formed encoding, CVG_ETOOBIG if there are more than max_vals values.
 */
int cvg_decode_tuple(const unsigned char *p, size_t n, cvg_value *vals, size_t max_vals,
                     size_t *n_vals /* OUT */, cvg_buf *scratch);

/* Byte order of two encoded keys: <0, 0, >0 (memcmp, then the shorter first). */
int cvg_key_compare(const unsigned char *a, size_t na, const unsigned char *b, size_t nb);

/* A 128-bit row fingerprint: XXH3-128 of the encoded compared columns. */
typedef struct cvg_fp {
  uint64_t hi; /* high 64 bits of the XXH128 hash */
  uint64_t lo; /* low 64 bits */
} cvg_fp;

cvg_fp cvg_fingerprint(const void *encoded, size_t n);
static inline int cvg_fp_equal(cvg_fp a, cvg_fp b) {
  return a.hi == b.hi && a.lo == b.lo;
}
/* Writes 32 lower-case hex digits and a NUL into hex[33] (big-endian, as XXH128 canonical). */
void cvg_fp_hex(cvg_fp fp, char hex[33]);

/* The shard of an encoded key: XXH3-64 of the key bytes modulo n_shards (n_shards >= 1). */
uint32_t cvg_shard_of(const void *key, size_t n, uint32_t n_shards);

/*
 * Shard digests. A shard's digest on a replica is the sum, modulo 2^128, of one contribution per
 * live row: XXH3-128 of (XXH3-64 of the key, 8 bytes big-endian) + (the row fingerprint, 16
 * bytes) + (the encoded version). A sum is independent of row order and can be updated one row
 * at a time: add the new contribution, subtract the old. Absent and tombstoned rows contribute
 * nothing, as the classifier treats "deleted everywhere" as agreement.
 */
cvg_fp cvg_digest_contribution(const unsigned char *key, size_t key_len, cvg_fp fp,
                               const unsigned char *version, size_t version_len);
static inline void cvg_digest_add(cvg_fp *d, cvg_fp c) {
  uint64_t lo = d->lo + c.lo;
  d->hi += c.hi + (lo < d->lo);
  d->lo = lo;
}
static inline void cvg_digest_sub(cvg_fp *d, cvg_fp c) {
  uint64_t lo = d->lo - c.lo;
  d->hi -= c.hi + (lo > d->lo);
  d->lo = lo;
}

#ifdef __cplusplus
}
#endif
#endif
