/* SPDX-License-Identifier: MIT */
/* libFuzzer target: replica URL parsing must never crash, leak or read out of bounds, and a URL
 * it accepts must have a scheme and a path; redaction must cope with any text. */
#include "converge/store.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1);
  if (!s)
    return 0;
  memcpy(s, data, size);
  s[size] = '\0';
  cvg_url u;
  cvg_error err;
  if (cvg_url_parse(&u, s, &err) == CVG_OK) {
    if (!u.scheme || !u.path || !u.host)
      abort();
    cvg_url_release(&u);
  }
  char *shown = cvg_url_redact(s); /* the redacted form is never longer than twice the input */
  if (shown && strlen(shown) > 2 * size + 16)
    abort();
  free(shown);
  free(s);
  return 0;
}
