/* SPDX-License-Identifier: MIT */
/*
 * Status messages and the cvg_error detail object. The table in status.h is the only place a
 * status is defined; this file expands it into the two lookup arrays.
 */
#include "converge/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define CVG_STATUS_MSG(name, msg) msg,
#define CVG_STATUS_NAME(name, msg) #name,
static const char *const status_msgs[] = {CVG_STATUS_TABLE(CVG_STATUS_MSG)};
static const char *const status_names[] = {CVG_STATUS_TABLE(CVG_STATUS_NAME)};
#undef CVG_STATUS_MSG
#undef CVG_STATUS_NAME

const char *cvg_strerror(int status) {
  if (status < 0 || status >= CVG_STATUS__COUNT)
    return "unknown status";
  return status_msgs[status];
}

const char *cvg_status_name(int status) {
  if (status < 0 || status >= CVG_STATUS__COUNT)
    return "CVG_UNKNOWN";
  return status_names[status];
}

void cvg_error_clear(cvg_error *err) {
  if (!err)
    return;
  memset(err, 0, sizeof *err);
}

int cvg_error_set(cvg_error *err, int status, const char *input, const char *fmt, ...) {
  if (!err)
    return status;
  err->status = status;
  err->hint[0] = '\0';
  snprintf(err->input, sizeof err->input, "%s", input ? input : "");
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
  } else {
    snprintf(err->msg, sizeof err->msg, "%s", cvg_strerror(status));
  }
  return status;
}

void cvg_error_hint(cvg_error *err, const char *fmt, ...) {
  if (!err)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->hint, sizeof err->hint, fmt, ap);
  va_end(ap);
}

const char *cvg_error_format(const cvg_error *err, char *buf, size_t size) {
  if (!buf || size == 0)
    return buf;
  if (!err || err->status == CVG_OK) {
    snprintf(buf, size, "converge: no error");
    return buf;
  }
  const char *msg = err->msg[0] ? err->msg : cvg_strerror(err->status);
  int n;
  if (err->input[0])
    n = snprintf(buf, size, "converge: %s: %s", err->input, msg);
  else
    n = snprintf(buf, size, "converge: %s", msg);
  if (err->hint[0] && n >= 0 && (size_t)n < size)
    snprintf(buf + n, size - (size_t)n, "\n  hint: %s", err->hint);
  return buf;
}
