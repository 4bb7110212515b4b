/* SPDX-License-Identifier: MIT */
/*
 * Structured logs: one event per line, as a JSON object or in logfmt, with a level, a time, an
 * event name and key/value fields. Values are strings (callers format numbers); they are escaped
 * as the format needs, so a value can never break a line or forge a field.
 *
 *   {"ts":"2026-11-26T10:00:00.123Z","level":"warn","event":"replica_down","dataset":"a",...}
 *   ts=2026-11-26T10:00:00.123Z level=warn event=replica_down dataset=a replica=b error="..."
 *
 * Threading: a cvg_logger may be used from any thread; each line is written whole.
 */
#ifndef CONVERGE_LOG_H
#define CONVERGE_LOG_H

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cvg_log_level {
  CVG_LOG_DEBUG = 0,
  CVG_LOG_INFO,
  CVG_LOG_WARN,
  CVG_LOG_ERROR
} cvg_log_level;

typedef struct cvg_logger cvg_logger;

/* format "json" or "logfmt"; level "debug".."error". OWNED result (cvg_logger_free); NULL on bad
 * arguments or no memory. out is BORROWED for the logger's life. */
cvg_logger *cvg_logger_new(FILE *out, const char *format, const char *level);
void cvg_logger_free(cvg_logger *lg);
/* Changes format and level (on reload). Returns 0, or -1 if either is unknown. */
int cvg_logger_set(cvg_logger *lg, const char *format, const char *level);

/* Logs event with fields given as name, value pairs ending with NULL. A NULL logger is silent. */
void cvg_log(cvg_logger *lg, cvg_log_level level, const char *event, ...);

#ifdef __cplusplus
}
#endif
#endif
