/* SPDX-License-Identifier: MIT */
/*
 * JSON forms of values and keys, shared by every output that shows a key (diff, gen's ground
 * truth, later the API), so that the same key always prints the same way:
 *   NULL -> null, INTEGER -> number, REAL -> number, TEXT -> string when it is valid UTF-8,
 *   else {"text_hex": "..."}, BLOB -> {"blob_hex": "..."}.
 * A key is an object mapping each key column to its value, in key order.
 */
#ifndef CONVERGE_JSON_H
#define CONVERGE_JSON_H

#include "converge/encode.h"

#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

/* New reference (OWNED: json_decref), or NULL when out of memory. */
json_t *cvg_value_to_json(const cvg_value *v);

/* Decodes an encoded key and maps it onto its column names. NULL if malformed or out of memory. */
json_t *cvg_key_to_json(const unsigned char *key, size_t key_len, const char *const *cols,
                        size_t n_cols);
/* Appends cvg_key_to_json's compact text (what json_dumps gives with JSON_COMPACT) to out, or
 * "null" for a malformed key, without building the object: integer and plain ASCII text columns,
 * the usual keys, are written directly. CVG_OK or CVG_ENOMEM. */
int cvg_key_json_append(cvg_buf *out, const unsigned char *key, size_t key_len,
                        const char *const *cols, size_t n_cols);

/* Writes t (seconds since the epoch) as RFC 3339 UTC with milliseconds,
 * "2026-11-26T17:40:00.123Z", into buf (at least 32 bytes). Returns buf. */
char *cvg_fmt_time(char *buf, size_t size, double t);
/* The same as a JSON string (OWNED), or NULL when out of memory. */
json_t *cvg_json_time(double t);
/* Parses RFC 3339 ("2026-11-26T17:40:00Z", fraction and +hh:mm offset allowed) into seconds
 * since the epoch. 0 on success. */
int cvg_parse_time(const char *s, double *out);

#ifdef __cplusplus
}
#endif
#endif
