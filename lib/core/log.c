/* SPDX-License-Identifier: MIT */
/*
 * Structured logging (log.h). A line is built in memory and written with one fwrite under the
 * logger's lock, so lines from several threads never interleave. JSON escaping is jansson's;
 * logfmt values are quoted when they hold a space, '=', '"' or a control character, with '"',
 * '\' and controls escaped.
 */
#include "converge/log.h"

#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LINE_MAX_BYTES 16384 /* longer lines are cut, never split */

struct cvg_logger {
  FILE *out;          /* BORROWED */
  int json;           /* 1 JSON, 0 logfmt */
  cvg_log_level min;  /* lowest level written */
  pthread_mutex_t mu; /* one line at a time */
};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static int parse(const char *format, const char *level, int *json, cvg_log_level *min) {
  if (strcmp(format, "json") == 0)
    *json = 1;
  else if (strcmp(format, "logfmt") == 0)
    *json = 0;
  else
    return -1;
  for (int i = 0; i < 4; i++)
    if (strcmp(level, level_names[i]) == 0) {
      *min = (cvg_log_level)i;
      return 0;
    }
  return -1;
}

cvg_logger *cvg_logger_new(FILE *out, const char *format, const char *level) {
  cvg_logger *lg = calloc(1, sizeof *lg);
  if (!lg)
    return NULL;
  if (parse(format, level, &lg->json, &lg->min) != 0) {
    free(lg);
    return NULL;
  }
  lg->out = out;
  pthread_mutex_init(&lg->mu, NULL);
  return lg;
}

void cvg_logger_free(cvg_logger *lg) {
  if (!lg)
    return;
  pthread_mutex_destroy(&lg->mu);
  free(lg);
}

int cvg_logger_set(cvg_logger *lg, const char *format, const char *level) {
  int json;
  cvg_log_level min;
  if (parse(format, level, &json, &min) != 0)
    return -1;
  pthread_mutex_lock(&lg->mu);
  lg->json = json;
  lg->min = min;
  pthread_mutex_unlock(&lg->mu);
  return 0;
}

typedef struct line {
  char buf[LINE_MAX_BYTES];
  size_t len;
} line;

static void put(line *l, const char *s, size_t n) {
  if (l->len + n > sizeof l->buf - 2)
    n = sizeof l->buf - 2 - l->len;
  memcpy(l->buf + l->len, s, n);
  l->len += n;
}

static void put_logfmt_value(line *l, const char *v) {
  int quote = *v == '\0';
  for (const char *c = v; *c && !quote; c++)
    if (*c == ' ' || *c == '=' || *c == '"' || (unsigned char)*c < 0x20 || *c == 0x7f)
      quote = 1;
  if (!quote) {
    put(l, v, strlen(v));
    return;
  }
  put(l, "\"", 1);
  for (const char *c = v; *c; c++) {
    unsigned char ch = (unsigned char)*c;
    if (ch == '"' || ch == '\\') {
      char e[2] = {'\\', (char)ch};
      put(l, e, 2);
    } else if (ch == '\n') {
      put(l, "\\n", 2);
    } else if (ch < 0x20 || ch == 0x7f) {
      char e[8];
      int n = snprintf(e, sizeof e, "\\x%02x", ch);
      put(l, e, (size_t)n);
    } else {
      put(l, c, 1);
    }
  }
  put(l, "\"", 1);
}

void cvg_log(cvg_logger *lg, cvg_log_level level, const char *event, ...) {
  if (!lg)
    return;
  pthread_mutex_lock(&lg->mu);
  int json = lg->json, skip = level < lg->min;
  pthread_mutex_unlock(&lg->mu);
  if (skip)
    return;
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  struct tm tm;
  gmtime_r(&now.tv_sec, &tm);
  char ts[96];
  snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)(now.tv_nsec / 1000000) % 1000);
  line *l = malloc(sizeof *l);
  if (!l)
    return;
  l->len = 0;
  va_list ap;
  va_start(ap, event);
  if (json) {
    json_t *o = json_object();
    if (o) {
      json_object_set_new(o, "ts", json_string(ts));
      json_object_set_new(o, "level", json_string(level_names[level]));
      json_object_set_new(o, "event", json_string(event));
      const char *k;
      while ((k = va_arg(ap, const char *))) {
        const char *v = va_arg(ap, const char *);
        json_object_set_new(o, k, v ? json_string(v) : json_null());
      }
      char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
      if (s) {
        put(l, s, strlen(s));
        free(s);
      }
      json_decref(o);
    }
  } else {
    put(l, "ts=", 3);
    put(l, ts, strlen(ts));
    put(l, " level=", 7);
    put(l, level_names[level], strlen(level_names[level]));
    put(l, " event=", 7);
    put_logfmt_value(l, event);
    const char *k;
    while ((k = va_arg(ap, const char *))) {
      const char *v = va_arg(ap, const char *);
      put(l, " ", 1);
      put(l, k, strlen(k));
      put(l, "=", 1);
      put_logfmt_value(l, v ? v : "");
    }
  }
  va_end(ap);
  l->buf[l->len++] = '\n';
  pthread_mutex_lock(&lg->mu);
  fwrite(l->buf, 1, l->len, lg->out);
  fflush(lg->out);
  pthread_mutex_unlock(&lg->mu);
  free(l);
}
