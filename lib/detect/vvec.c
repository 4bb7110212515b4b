/* SPDX-License-Identifier: MIT */
/*
 * Version vectors, as multi-writer stores (Dynamo, Riak, Voldemort) keep them: a JSON object
 * mapping each writer to the number of writes it has made, e.g. {"eu":3,"us":1}. A writer that
 * is absent counts as 0. a is BEFORE b when every counter of a is <= b's and one is smaller;
 * neither before nor after (nor equal) is CONCURRENT: two writers changed the row without seeing
 * each other's write, which last-write-wins would silently resolve by discarding one.
 */
#include "converge/diff.h"

#include <jansson.h>
#include <string.h>

#define VV_MAX_TEXT (1u << 20) /* a vector longer than 1 MiB is refused */

static int vv_load(const char *s, size_t n, json_t **out, cvg_error *err) {
  *out = NULL;
  if (n > VV_MAX_TEXT)
    return cvg_error_set(err, CVG_ETOOBIG, "", "version vector longer than %u bytes", VV_MAX_TEXT);
  json_error_t jerr;
  json_t *j = json_loadb(s, n, JSON_REJECT_DUPLICATES, &jerr);
  if (!j)
    return cvg_error_set(err, CVG_EJSON, "", "version vector '%.*s' is not JSON: %s",
                         (int)(n > 80 ? 80 : n), s, jerr.text);
  if (!json_is_object(j)) {
    json_decref(j);
    return cvg_error_set(err, CVG_EJSON, "", "version vector '%.*s' is not a JSON object",
                         (int)(n > 80 ? 80 : n), s);
  }
  const char *k;
  json_t *v;
  json_object_foreach(j, k, v) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
      /* k belongs to j: report before releasing it */
      cvg_error_set(err, CVG_EJSON, "",
                    "version vector '%.*s': the counter of writer '%s' is not a "
                    "non-negative integer",
                    (int)(n > 80 ? 80 : n), s, k);
      json_decref(j);
      return CVG_EJSON;
    }
  }
  *out = j;
  return CVG_OK;
}

static json_int_t counter(json_t *obj, const char *k) {
  json_t *v = json_object_get(obj, k);
  return v ? json_integer_value(v) : 0;
}

int cvg_vv_compare(const char *a, size_t na, const char *b, size_t nb, cvg_vv_order *order,
                   cvg_error *err) {
  json_t *ja = NULL, *jb = NULL;
  int rc = vv_load(a, na, &ja, err);
  if (!rc)
    rc = vv_load(b, nb, &jb, err);
  if (rc) {
    json_decref(ja);
    return rc;
  }
  int less = 0, greater = 0;
  const char *k;
  json_t *v;
  json_object_foreach(ja, k, v) {
    json_int_t x = json_integer_value(v), y = counter(jb, k);
    less |= x < y;
    greater |= x > y;
  }
  json_object_foreach(jb, k, v) {
    json_int_t x = counter(ja, k), y = json_integer_value(v);
    less |= x < y;
    greater |= x > y;
  }
  *order = less && greater ? CVG_VV_CONCURRENT
           : less          ? CVG_VV_BEFORE
           : greater       ? CVG_VV_AFTER
                           : CVG_VV_EQUAL;
  json_decref(ja);
  json_decref(jb);
  return CVG_OK;
}
