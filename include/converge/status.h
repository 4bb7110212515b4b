/* SPDX-License-Identifier: MIT */
/*
 * Status codes and error detail for libconverge.
 *
 * Every fallible function returns an int that is one of the cvg_status values below; CVG_OK is
 * zero. The codes come from one X-macro table so that the enum, the names and the messages can
 * never drift apart. A code says what kind of thing failed; the detail — the underlying SQLite
 * message or errno, and the input it concerns (a URL, a file:line:column, a column name) — travels
 * in an optional cvg_error that the caller owns and passes in. There is no global "last error".
 */
#ifndef CONVERGE_STATUS_H
#define CONVERGE_STATUS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, short message). Append only: the numeric values are part of the ABI. */
#define CVG_STATUS_TABLE(X)                                                                        \
  X(CVG_OK, "success")                                                                             \
  X(CVG_DONE, "no more rows")                                                                      \
  X(CVG_ENOMEM, "out of memory")                                                                   \
  X(CVG_EINVAL, "invalid argument")                                                                \
  X(CVG_EURL, "malformed replica URL")                                                             \
  X(CVG_ESCHEME, "unsupported replica URL scheme")                                                 \
  X(CVG_ENOENT, "no such file")                                                                    \
  X(CVG_EACCES, "permission denied")                                                               \
  X(CVG_EIO, "input/output error")                                                                 \
  X(CVG_ENOTDB, "not a database")                                                                  \
  X(CVG_ENOTABLE, "no such table")                                                                 \
  X(CVG_ENOCOLUMN, "no such column")                                                               \
  X(CVG_ENOKEY, "table has no primary key")                                                        \
  X(CVG_ESCHEMA, "schemas of the replicas disagree")                                               \
  X(CVG_EORDER, "replica returned keys out of canonical order")                                    \
  X(CVG_EDUPKEY, "duplicate key")                                                                  \
  X(CVG_ESTORE, "replica store error")                                                             \
  X(CVG_ESQL, "invalid SQL expression")                                                            \
  X(CVG_ECORRUPT, "malformed encoded value")                                                       \
  X(CVG_ETOOBIG, "value exceeds its size limit")                                                   \
  X(CVG_EJSON, "malformed JSON")                                                                   \
  X(CVG_ETHREAD, "thread error")                                                                   \
  X(CVG_EBUSY, "replica is busy or locked")                                                        \
  X(CVG_ECONFIG, "invalid catalog")                                                                \
  X(CVG_EDOWN, "replica unreachable")                                                              \
  X(CVG_ETAMPER, "journal chain broken")                                                           \
  X(CVG_ELIMIT, "refused by a repair safety limit")

#define CVG_STATUS_ENUM(name, msg) name,
typedef enum cvg_status { CVG_STATUS_TABLE(CVG_STATUS_ENUM) CVG_STATUS__COUNT } cvg_status;
#undef CVG_STATUS_ENUM

/* The short message of a status; never NULL (unknown codes give "unknown status"). */
const char *cvg_strerror(int status);
/* The enum's own name ("CVG_ENOENT"), for logs and tests; never NULL. */
const char *cvg_status_name(int status);

#define CVG_ERROR_MSG_MAX 1024
#define CVG_ERROR_INPUT_MAX 512

/*
 * Detail of a failure. Embedded by the caller (no allocation, so reporting never fails).
 *   msg    what failed, in words, including the underlying message (SQLite's, strerror(errno))
 *   input  the input it concerns: a replica URL, a column name, a file:line:column
 *   hint   what to do about it; may be empty
 */
typedef struct cvg_error {
  int status;                      /* the cvg_status of the failure, CVG_OK when none */
  int sys_errno;                   /* errno at the failure, 0 if it does not apply */
  int engine_code;                 /* the engine's own code (SQLite extended code), 0 if none */
  char msg[CVG_ERROR_MSG_MAX];     /* what failed, NUL-terminated */
  char input[CVG_ERROR_INPUT_MAX]; /* which input it concerns, NUL-terminated, may be "" */
  char hint[CVG_ERROR_MSG_MAX];    /* what to do, NUL-terminated, may be "" */
} cvg_error;

void cvg_error_clear(cvg_error *err);

/*
 * Records a failure in err (which may be NULL) and returns status, so callers can write
 * `return cvg_error_set(err, CVG_ENOENT, url, "...", ...)`. The message is printf-formatted and
 * truncated to fit.
 */
int cvg_error_set(cvg_error *err, int status, const char *input, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* Sets the hint of an error already recorded (no-op when err is NULL). */
void cvg_error_hint(cvg_error *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/*
 * Formats err for a person: "converge: <input>: <msg>\n  hint: <hint>" into buf (always
 * NUL-terminated). Returns buf.
 */
const char *cvg_error_format(const cvg_error *err, char *buf, size_t size);

#ifdef __cplusplus
}
#endif
#endif
