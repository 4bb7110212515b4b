/* SPDX-License-Identifier: MIT */
/*
 * JSON forms of values and keys; see json.h for the mapping. Text that is not valid UTF-8 is
 * shown in hex rather than mangled, so a key printed here can always be told apart from another.
 */
#include "converge/json.h"
#include "converge/status.h"

#include <stdlib.h>

#define KEY_MAX_COLS 64

static json_t *hex_object(const char *field, const unsigned char *p, size_t n) {
  static const char digits[] = "0123456789abcdef";
  char *hex = malloc(2 * n + 1);
  if (!hex)
    return NULL;
  for (size_t i = 0; i < n; i++) {
    hex[2 * i] = digits[p[i] >> 4];
    hex[2 * i + 1] = digits[p[i] & 0xF];
  }
  hex[2 * n] = '\0';
  json_t *o = json_pack("{s:s}", field, hex);
  free(hex);
  return o;
}

json_t *cvg_value_to_json(const cvg_value *v) {
  switch (v->type) {
  case CVG_NULL:
    return json_null();
  case CVG_INTEGER:
    return json_integer((json_int_t)v->u.i);
  case CVG_REAL:
    if (v->u.r != v->u.r || v->u.r - v->u.r != 0.0) /* NaN and infinities are not JSON */
      return json_string(v->u.r != v->u.r ? "NaN" : v->u.r > 0 ? "Infinity" : "-Infinity");
    return json_real(v->u.r);
  case CVG_TEXT: {
    json_t *s = json_stringn((const char *)v->u.s.p, v->u.s.n);
    return s ? s : hex_object("text_hex", v->u.s.p, v->u.s.n);
  }
  case CVG_BLOB:
    return hex_object("blob_hex", v->u.s.p, v->u.s.n);
  }
  return NULL;
}

json_t *cvg_key_to_json(const unsigned char *key, size_t key_len, const char *const *cols,
                        size_t n_cols) {
  cvg_value vals[KEY_MAX_COLS];
  size_t n = 0;
  cvg_buf scratch;
  cvg_buf_init(&scratch, key_len + 1);
  json_t *obj = NULL;
  if (cvg_decode_tuple(key, key_len, vals, KEY_MAX_COLS, &n, &scratch) != CVG_OK || n != n_cols)
    goto done;
  obj = json_object();
  for (size_t i = 0; obj && i < n; i++) {
    json_t *j = cvg_value_to_json(&vals[i]);
    if (!j || json_object_set_new(obj, cols[i], j) != 0) {
      json_decref(obj);
      obj = NULL;
    }
  }
done:
  cvg_buf_release(&scratch);
  return obj;
}
