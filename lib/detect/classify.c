/* SPDX-License-Identifier: MIT */
/*
 * Classification of one key from the copies the replicas hold. The rules, and their order of
 * precedence, are in diff.h; they are deterministic and depend only on the copies. A key where
 * every copy agrees is CVG_CLASS_NONE, and that case is checked first because it is nearly every
 * key: one pass of fingerprint and version comparisons.
 */
#include "converge/diff.h"

#include <string.h>

static const char *const class_names[CVG_CLASS__COUNT] = {"none", "missing", "stale", "conflict",
                                                          "tombstone"};

const char *cvg_class_name(cvg_class c) {
  return (unsigned)c < CVG_CLASS__COUNT ? class_names[c] : "unknown";
}

static int bytes_equal(const unsigned char *a, size_t na, const unsigned char *b, size_t nb) {
  return na == nb && (na == 0 || memcmp(a, b, na) == 0);
}

/* Marks newest the present copies holding the greatest version (by encoded bytes). */
static void mark_newest_by_version(cvg_copy *c, size_t n) {
  const cvg_copy *best = NULL;
  for (size_t i = 0; i < n; i++) {
    if (c[i].state == CVG_ABSENT)
      continue;
    if (!best ||
        cvg_key_compare(c[i].version, c[i].version_len, best->version, best->version_len) > 0)
      best = &c[i];
  }
  for (size_t i = 0; i < n; i++)
    c[i].newest = c[i].state != CVG_ABSENT && best &&
                  bytes_equal(c[i].version, c[i].version_len, best->version, best->version_len);
}

static int vv_order(const cvg_copy *a, const cvg_copy *b, cvg_vv_order *o, cvg_error *err) {
  static const char empty[] = "{}";
  const char *pa = a->vvec_len ? (const char *)a->vvec : empty;
  const char *pb = b->vvec_len ? (const char *)b->vvec : empty;
  size_t na = a->vvec_len ? a->vvec_len : 2, nb = b->vvec_len ? b->vvec_len : 2;
  return cvg_vv_compare(pa, na, pb, nb, o, err);
}

int cvg_classify(cvg_copy *c, size_t n, int use_version, int use_vvec, cvg_error *err) {
  size_t n_live = 0, n_tomb = 0, n_absent = 0;
  int all_same = 1;
  for (size_t i = 0; i < n; i++) {
    c[i].newest = 0;
    n_live += c[i].state == CVG_LIVE;
    n_tomb += c[i].state == CVG_TOMBSTONED;
    n_absent += c[i].state == CVG_ABSENT;
    if (i > 0 && all_same)
      all_same = c[i].state == c[0].state && cvg_fp_equal(c[i].fp, c[0].fp) &&
                 (!use_version ||
                  bytes_equal(c[i].version, c[i].version_len, c[0].version, c[0].version_len)) &&
                 (!use_vvec || bytes_equal(c[i].vvec, c[i].vvec_len, c[0].vvec, c[0].vvec_len));
  }
  if (n_live == 0)
    return CVG_CLASS_NONE; /* deleted (or never written) everywhere */
  if (n_live == n && all_same) {
    for (size_t i = 0; i < n; i++)
      c[i].newest = 1;
    return CVG_CLASS_NONE;
  }
  if (n_tomb || n_absent) {
    if (use_version)
      mark_newest_by_version(c, n);
    return n_tomb ? CVG_CLASS_TOMBSTONE : CVG_CLASS_MISSING;
  }

  int conflict = 0, ordered = 0;
  if (use_vvec) {
    for (size_t i = 0; i < n; i++)
      c[i].newest = 1;
    for (size_t i = 0; i < n; i++) {
      for (size_t j = i + 1; j < n; j++) {
        cvg_vv_order o;
        int rc = vv_order(&c[i], &c[j], &o, err);
        if (rc)
          return -rc;
        if (o == CVG_VV_EQUAL)
          conflict |= !cvg_fp_equal(c[i].fp, c[j].fp);
        else if (o == CVG_VV_CONCURRENT)
          conflict = 1;
        else {
          ordered = 1;
          c[o == CVG_VV_BEFORE ? i : j].newest = 0;
        }
      }
    }
  } else if (use_version) {
    mark_newest_by_version(c, n);
    for (size_t i = 0; i < n; i++) {
      for (size_t j = i + 1; j < n; j++) {
        if (bytes_equal(c[i].version, c[i].version_len, c[j].version, c[j].version_len))
          conflict |= !cvg_fp_equal(c[i].fp, c[j].fp);
        else
          ordered = 1;
      }
    }
  } else {
    for (size_t i = 0; i < n; i++)
      c[i].newest = 1;
    for (size_t i = 1; i < n; i++)
      conflict |= !cvg_fp_equal(c[i].fp, c[0].fp);
  }
  if (conflict)
    return CVG_CLASS_CONFLICT;
  return ordered ? CVG_CLASS_STALE : CVG_CLASS_NONE;
}
