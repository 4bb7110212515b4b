/* SPDX-License-Identifier: MIT */
/*
 * JSON forms of values and keys; see json.h for the mapping. Text that is not valid UTF-8 is
 * shown in hex rather than mangled, so a key printed here can always be told apart from another.
 */
#include "converge/json.h"
#include "converge/status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* Plain ASCII with nothing to escape: written as is by jansson too. */
static int plain_ascii(const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i] < 0x20 || p[i] > 0x7e || p[i] == '"' || p[i] == '\\')
      return 0;
  return 1;
}

/* Appends one JSON value as jansson writes it (compact). */
static int append_dumped(cvg_buf *out, json_t *j) {
  char *s = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
  json_decref(j);
  int rc = s ? cvg_buf_append(out, s, strlen(s)) : CVG_ENOMEM;
  free(s);
  return rc;
}

int cvg_key_json_append(cvg_buf *out, const unsigned char *key, size_t key_len,
                        const char *const *cols, size_t n_cols) {
  cvg_value vals[KEY_MAX_COLS];
  size_t n = 0;
  cvg_buf scratch;
  cvg_buf_init(&scratch, key_len + 1);
  int rc = CVG_OK;
  if (cvg_decode_tuple(key, key_len, vals, KEY_MAX_COLS, &n, &scratch) != CVG_OK || n != n_cols) {
    rc = cvg_buf_append(out, "null", 4);
    goto done;
  }
  rc = cvg_buf_append(out, "{", 1);
  for (size_t i = 0; !rc && i < n; i++) {
    const cvg_value *v = &vals[i];
    const unsigned char *name = (const unsigned char *)cols[i];
    size_t nl = strlen(cols[i]);
    if (i)
      rc = cvg_buf_append(out, ",", 1);
    if (!rc && plain_ascii(name, nl))
      rc = cvg_buf_append(out, "\"", 1) || cvg_buf_append(out, name, nl) ||
           cvg_buf_append(out, "\":", 2);
    else if (!rc)
      rc = append_dumped(out, json_string(cols[i])) || cvg_buf_append(out, ":", 1);
    if (rc)
      break;
    if (v->type == CVG_INTEGER) {
      char num[24];
      int k = snprintf(num, sizeof num, "%lld", (long long)v->u.i);
      rc = cvg_buf_append(out, num, (size_t)k);
    } else if (v->type == CVG_TEXT && plain_ascii(v->u.s.p, v->u.s.n)) {
      rc = cvg_buf_append(out, "\"", 1) || cvg_buf_append(out, v->u.s.p, v->u.s.n) ||
           cvg_buf_append(out, "\"", 1);
    } else {
      rc = append_dumped(out, cvg_value_to_json(v));
    }
  }
  rc = rc || cvg_buf_append(out, "}", 1);
done:
  cvg_buf_release(&scratch);
  return rc ? CVG_ENOMEM : CVG_OK;
}

char *cvg_fmt_time(char *buf, size_t size, double t) {
  time_t secs = (time_t)floor(t);
  int ms = (int)((t - (double)secs) * 1000);
  if (ms > 999)
    ms = 999;
  struct tm tm;
  gmtime_r(&secs, &tm);
  snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms < 0 ? 0 : ms);
  return buf;
}

json_t *cvg_json_time(double t) {
  char buf[40];
  return json_string(cvg_fmt_time(buf, sizeof buf, t));
}

int cvg_parse_time(const char *s, double *out) {
  int y, mo, d, h, mi, n = 0;
  double sec;
  if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%lf%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || n < 19)
    return -1;
  if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 || mi > 59 ||
      sec < 0 || sec >= 61)
    return -1;
  static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (d > mdays[mo - 1] + (mo == 2 && leap)) /* 2026-02-30 is no day, not March 2 */
    return -1;
  const char *z = s + n;
  double off = 0;
  if (strcmp(z, "Z") == 0 || strcmp(z, "z") == 0) {
    off = 0;
  } else if ((z[0] == '+' || z[0] == '-') && strlen(z) == 6 && z[3] == ':') {
    int oh, om;
    if (sscanf(z + 1, "%2d:%2d", &oh, &om) != 2 || oh > 23 || om > 59)
      return -1;
    off = (z[0] == '+' ? 1 : -1) * (oh * 3600.0 + om * 60.0);
  } else {
    return -1;
  }
  /* days from civil (Howard Hinnant's algorithm): no timegm, no time zone */
  int yy = y - (mo <= 2);
  int era = yy / 400;
  int yoe = yy - era * 400;
  int doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  double days = (double)era * 146097 + doe - 719468;
  *out = days * 86400 + h * 3600.0 + mi * 60.0 + sec - off;
  return 0;
}
