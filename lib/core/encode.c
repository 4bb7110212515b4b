/* SPDX-License-Identifier: MIT */
/*
 * The canonical encoding: typed, engine-independent bytes for SQL values, whose byte order
 * (memcmp, shorter first) is the natural order of the values and of tuples of them.
 *
 * Why: replicas are merged in key order and compared by fingerprint. If every engine produces
 * the same bytes for the same value, keys from SQLite and PostgreSQL merge with memcmp() and the
 * same row hashes the same everywhere. Nothing here depends on an engine.
 *
 * A VALUE is one tag byte followed by a payload:
 *
 *   tag   type     payload                                         order within the type
 *   0x01  NULL     (none)                                          -
 *   0x02  INTEGER  8 bytes: big-endian two's complement with the   numeric
 *                  sign bit flipped (INT64_MIN -> 00..00,
 *                  -1 -> 7F FF..FF, 0 -> 80 00..00, 1 -> 80 00..01)
 *   0x03  REAL     8 bytes: the IEEE-754 binary64 bits, big-endian; numeric (-inf < ... < -0 ==
 *                  if the sign is set all bits are inverted, else  +0 < ... < +inf < NaN)
 *                  only the sign bit is. -0.0 is written as +0.0;
 *                  every NaN as the quiet NaN 0x7FF8000000000000.
 *   0x04  TEXT     the bytes (UTF-8 as stored), each 0x00 written  by bytes (memcmp), a prefix
 *                  as 00 FF, then the terminator 00                first
 *   0x05  BLOB     as TEXT                                         by bytes, a prefix first
 *
 * Types sort NULL < INTEGER < REAL < TEXT < BLOB, as SQLite sorts storage classes except that
 * SQLite interleaves INTEGER and REAL by value. A key column that mixes integers and reals
 * therefore has a different order here than in the engine; the scanner notices (keys out of
 * order) and reports it rather than giving a wrong answer.
 *
 * A TUPLE (a composite key, or the compared columns of a row) is its values concatenated. The
 * terminator 00 sorts below every tag (>= 01) and below the escape 00 FF, so "a" < "a\0" <
 * "ab", and ("a", 2) < ("ab", 1): tuple order is lexicographic by element.
 *
 * Example: the key (42, 'é') is
 *
 *   02 80 00 00 00 00 00 00 2A   04 C3 A9 00
 *   ^int  ^42 with sign flipped  ^text ^UTF-8 ^end
 *
 * The ROW FINGERPRINT is XXH3-128 (seed 0) of the encoded tuple of compared columns, in the
 * order the compared columns are listed. The SHARD of a key is XXH3-64 (seed 0) of its encoded
 * bytes modulo the shard count. tests/unit/test_encode.c pins golden values for all three:
 * changing this format must break those tests, and needs a new format version.
 */
#include "converge/encode.h"
#include "converge/status.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

void cvg_buf_init(cvg_buf *b, size_t max) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
  b->max = max;
}

void cvg_buf_release(cvg_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

int cvg_buf_reserve(cvg_buf *b, size_t extra) {
  if (extra > b->max || b->len > b->max - extra)
    return CVG_ETOOBIG;
  size_t need = b->len + extra;
  if (need <= b->cap)
    return CVG_OK;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need)
    cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  if (cap > b->max)
    cap = b->max;
  unsigned char *p = realloc(b->data, cap);
  if (!p)
    return CVG_ENOMEM;
  b->data = p;
  b->cap = cap;
  return CVG_OK;
}

int cvg_buf_append_slow(cvg_buf *b, const void *p, size_t n) {
  int rc = cvg_buf_reserve(b, n);
  if (rc)
    return rc;
  if (n)
    memcpy(b->data + b->len, p, n);
  b->len += n;
  return CVG_OK;
}

/* Written out so that compilers emit one byte swap and one store. */
static inline void put_be64(unsigned char *p, uint64_t u) {
  p[0] = (unsigned char)(u >> 56);
  p[1] = (unsigned char)(u >> 48);
  p[2] = (unsigned char)(u >> 40);
  p[3] = (unsigned char)(u >> 32);
  p[4] = (unsigned char)(u >> 24);
  p[5] = (unsigned char)(u >> 16);
  p[6] = (unsigned char)(u >> 8);
  p[7] = (unsigned char)u;
}

static uint64_t get_be64(const unsigned char *p) {
  uint64_t u = 0;
  for (int i = 0; i < 8; i++)
    u = (u << 8) | p[i];
  return u;
}

int cvg_encode_null(cvg_buf *out) {
  if (out->cap == out->len) {
    int rc = cvg_buf_reserve(out, 1);
    if (rc)
      return rc;
  }
  out->data[out->len++] = CVG_NULL;
  return CVG_OK;
}

int cvg_encode_int(cvg_buf *out, int64_t i) {
  if (out->cap - out->len < 9) { /* the common case skips the call */
    int rc = cvg_buf_reserve(out, 9);
    if (rc)
      return rc;
  }
  unsigned char *p = out->data + out->len;
  p[0] = CVG_INTEGER;
  put_be64(p + 1, (uint64_t)i ^ UINT64_C(0x8000000000000000));
  out->len += 9;
  return CVG_OK;
}

int cvg_encode_real(cvg_buf *out, double r) {
  if (out->cap - out->len < 9) {
    int rc = cvg_buf_reserve(out, 9);
    if (rc)
      return rc;
  }
  uint64_t u;
  if (r != r) {
    u = UINT64_C(0x7FF8000000000000);
  } else {
    if (r == 0.0)
      r = 0.0; /* folds -0.0 into +0.0 */
    memcpy(&u, &r, sizeof u);
  }
  if (u & UINT64_C(0x8000000000000000))
    u = ~u;
  else
    u ^= UINT64_C(0x8000000000000000);
  unsigned char *p = out->data + out->len;
  p[0] = CVG_REAL;
  put_be64(p + 1, u);
  out->len += 9;
  return CVG_OK;
}

/* Text and blob: escape each 0x00 as 00 FF, end with 00. */
static int encode_bytes(cvg_buf *out, unsigned char tag, const unsigned char *s, size_t n) {
  const unsigned char *nul = n ? memchr(s, 0, n) : NULL;
  if (!nul) { /* the common case: one copy */
    if (n > SIZE_MAX - 2)
      return CVG_ETOOBIG;
    if (out->cap - out->len < n + 2) {
      int rc = cvg_buf_reserve(out, n + 2);
      if (rc)
        return rc;
    }
    unsigned char *p = out->data + out->len;
    p[0] = tag;
    if (n)
      memcpy(p + 1, s, n);
    p[n + 1] = 0x00;
    out->len += n + 2;
    return CVG_OK;
  }
  size_t n_nul = 0;
  for (size_t i = 0; i < n; i++)
    n_nul += s[i] == 0;
  if (n > (SIZE_MAX - 2) / 2)
    return CVG_ETOOBIG;
  int rc = cvg_buf_reserve(out, n + n_nul + 2);
  if (rc)
    return rc;
  unsigned char *p = out->data + out->len;
  size_t j = 0;
  p[j++] = tag;
  for (size_t i = 0; i < n; i++) {
    p[j++] = s[i];
    if (s[i] == 0)
      p[j++] = 0xFF;
  }
  p[j++] = 0x00;
  out->len += j;
  return CVG_OK;
}

int cvg_encode_text(cvg_buf *out, const void *p, size_t n) {
  return encode_bytes(out, CVG_TEXT, p, n);
}

int cvg_encode_blob(cvg_buf *out, const void *p, size_t n) {
  return encode_bytes(out, CVG_BLOB, p, n);
}

int cvg_encode_value(cvg_buf *out, const cvg_value *v) {
  switch (v->type) {
  case CVG_NULL:
    return cvg_encode_null(out);
  case CVG_INTEGER:
    return cvg_encode_int(out, v->u.i);
  case CVG_REAL:
    return cvg_encode_real(out, v->u.r);
  case CVG_TEXT:
    return cvg_encode_text(out, v->u.s.p, v->u.s.n);
  case CVG_BLOB:
    return cvg_encode_blob(out, v->u.s.p, v->u.s.n);
  }
  return CVG_EINVAL;
}

int cvg_decode_tuple(const unsigned char *p, size_t n, cvg_value *vals, size_t max_vals,
                     size_t *n_vals, cvg_buf *scratch) {
  *n_vals = 0;
  cvg_buf_reset(scratch);
  /* Unescaped bytes never outnumber encoded ones: reserving n up front means the pointers we
   * hand out into scratch stay valid while the tuple is decoded. */
  int rc = cvg_buf_reserve(scratch, n ? n : 1);
  if (rc)
    return rc;
  size_t i = 0, k = 0;
  while (i < n) {
    if (k == max_vals)
      return CVG_ETOOBIG;
    cvg_value *v = &vals[k];
    unsigned char tag = p[i++];
    switch (tag) {
    case CVG_NULL:
      v->type = CVG_NULL;
      break;
    case CVG_INTEGER:
      if (n - i < 8)
        return CVG_ECORRUPT;
      v->type = CVG_INTEGER;
      v->u.i = (int64_t)(get_be64(p + i) ^ UINT64_C(0x8000000000000000));
      i += 8;
      break;
    case CVG_REAL: {
      if (n - i < 8)
        return CVG_ECORRUPT;
      uint64_t u = get_be64(p + i);
      if (u & UINT64_C(0x8000000000000000))
        u ^= UINT64_C(0x8000000000000000);
      else
        u = ~u;
      v->type = CVG_REAL;
      memcpy(&v->u.r, &u, sizeof u);
      i += 8;
      break;
    }
    case CVG_TEXT:
    case CVG_BLOB: {
      unsigned char *dst = scratch->data + scratch->len;
      size_t len = 0;
      for (;;) {
        if (i >= n)
          return CVG_ECORRUPT; /* no terminator */
        unsigned char c = p[i++];
        if (c != 0) {
          dst[len++] = c;
          continue;
        }
        if (i < n && p[i] == 0xFF) {
          dst[len++] = 0;
          i++;
          continue;
        }
        break; /* terminator */
      }
      v->type = (cvg_type)tag;
      v->u.s.p = dst;
      v->u.s.n = len;
      scratch->len += len;
      break;
    }
    default:
      return CVG_ECORRUPT;
    }
    k++;
  }
  *n_vals = k;
  return CVG_OK;
}

int cvg_key_compare(const unsigned char *a, size_t na, const unsigned char *b, size_t nb) {
  size_t n = na < nb ? na : nb;
  int c = n ? memcmp(a, b, n) : 0;
  if (c)
    return c;
  return na < nb ? -1 : na > nb;
}

cvg_fp cvg_fingerprint(const void *encoded, size_t n) {
  XXH128_hash_t h = XXH3_128bits(encoded, n);
  cvg_fp fp = {h.high64, h.low64};
  return fp;
}

void cvg_fp_hex(cvg_fp fp, char hex[33]) {
  static const char digits[] = "0123456789abcdef";
  for (int i = 0; i < 16; i++) {
    hex[15 - i] = digits[(fp.hi >> (4 * i)) & 0xF];
    hex[31 - i] = digits[(fp.lo >> (4 * i)) & 0xF];
  }
  hex[32] = '\0';
}

uint32_t cvg_shard_of(const void *key, size_t n, uint32_t n_shards) {
  if (n_shards <= 1)
    return 0;
  return (uint32_t)(XXH3_64bits(key, n) % n_shards);
}

cvg_fp cvg_digest_contribution(const unsigned char *key, size_t key_len, cvg_fp fp,
                               const unsigned char *version, size_t version_len) {
  unsigned char buf[24 + 64];
  uint64_t kh = XXH3_64bits(key, key_len);
  for (int i = 0; i < 8; i++) {
    buf[i] = (unsigned char)(kh >> (56 - 8 * i));
    buf[8 + i] = (unsigned char)(fp.hi >> (56 - 8 * i));
    buf[16 + i] = (unsigned char)(fp.lo >> (56 - 8 * i));
  }
  XXH128_hash_t h;
  if (version_len <= 64) {
    if (version_len)
      memcpy(buf + 24, version, version_len);
    h = XXH3_128bits(buf, 24 + version_len);
  } else { /* a long version (text): hash it into the fixed part first */
    XXH128_hash_t vh = XXH3_128bits(version, version_len);
    for (int i = 0; i < 8; i++) {
      buf[24 + i] = (unsigned char)(vh.high64 >> (56 - 8 * i));
      buf[32 + i] = (unsigned char)(vh.low64 >> (56 - 8 * i));
    }
    h = XXH3_128bits(buf, 40);
  }
  cvg_fp c = {h.high64, h.low64};
  return c;
}

double cvg_round_real(double r, int digits) {
  if (digits < 1 || digits > 17 || r != r || r - r != 0.0)
    return r;
  char buf[64];
  snprintf(buf, sizeof buf, "%.*g", digits, r);
  return strtod(buf, NULL);
}

static int all_digits(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] < '0' || s[i] > '9')
      return 0;
  return 1;
}

size_t cvg_norm_timestamp(const char *s, size_t n, int digits, char *out, size_t size) {
  if (n < 19 || digits < 0 || digits > 6 || size < 27 || !all_digits(s, 4) || s[4] != '-' ||
      !all_digits(s + 5, 2) || s[7] != '-' || !all_digits(s + 8, 2) ||
      (s[10] != 'T' && s[10] != ' ') || !all_digits(s + 11, 2) || s[13] != ':' ||
      !all_digits(s + 14, 2) || s[16] != ':' || !all_digits(s + 17, 2))
    return 0;
  size_t i = 19, f0 = 0, fl = 0;
  if (i < n && s[i] == '.') {
    f0 = ++i;
    while (i < n && s[i] >= '0' && s[i] <= '9')
      i++;
    fl = i - f0;
    if (!fl)
      return 0;
  }
  const char *z = s + i;
  size_t zl = n - i;
  int utc = zl == 0 || (zl == 1 && z[0] == 'Z') ||
            (zl == 3 && (!memcmp(z, "+00", 3) || !memcmp(z, "-00", 3))) ||
            (zl == 6 && (!memcmp(z, "+00:00", 6) || !memcmp(z, "-00:00", 6))) ||
            (zl == 5 && (!memcmp(z, "+0000", 5) || !memcmp(z, "-0000", 5)));
  if (!utc)
    return 0;
  memcpy(out, s, 19);
  out[10] = ' ';
  size_t o = 19;
  if (digits > 0) {
    out[o++] = '.';
    for (int d = 0; d < digits; d++)
      out[o++] = (size_t)d < fl ? s[f0 + (size_t)d] : '0';
  }
  return o;
}
