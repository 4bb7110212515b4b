/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: replica URL parsing must never crash, leak or read out of bounds, and a URL
 * it accepts must have a scheme and a path; redaction must cope with any text. The userinfo
 * rules: a server URL it accepts holds no unencoded '/', '?', '#', '@', '[' or ']' before its
 * last '@', and its redacted form never shows the password (the bytes between the first ':'
 * after "//" and the last '@'), whether the parser accepted the URL or not.
 */
#include "converge/store.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The password of a "scheme://user:password@..." text, as [*p, *p + *n), or 0. */
static int password_of(const char *s, const char **p, size_t *n) {
  const char *sep = strstr(s, "://");
  if (!sep || (sep - s == 6 && strncasecmp(s, "sqlite", 6) == 0))
    return 0;
  const char *start = sep + 3, *at = strrchr(start, '@');
  const char *colon = at ? memchr(start, ':', (size_t)(at - start)) : NULL;
  if (!colon)
    return 0;
  *p = colon + 1;
  *n = (size_t)(at - *p);
  return 1;
}

static int occurs_once(const char *hay, const char *needle, size_t n) {
  int count = 0;
  for (const char *h = hay; *h; h++)
    if (strncmp(h, needle, n) == 0)
      count++;
  return count == 1;
}

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
    const char *at = strrchr(u.host, '@');
    if (strcmp(u.scheme, "sqlite") != 0 && at && strcspn(u.host, "/?#@[]") < (size_t)(at - u.host))
      abort(); /* accepted a reserved byte in the userinfo */
    cvg_url_release(&u);
  }
  char *shown = cvg_url_redact(s); /* the redacted form is never longer than twice the input */
  if (shown && strlen(shown) > 2 * size + 16)
    abort();
  const char *pw;
  size_t n;
  if (shown && password_of(s, &pw, &n) && n >= 4 && occurs_once(s, pw, n)) {
    char *secret = strndup(pw, n);
    if (secret && strstr(shown, secret))
      abort(); /* the password shows through */
    free(secret);
  }
  free(shown);
  free(s);
  return 0;
}
