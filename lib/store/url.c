/* SPDX-License-Identifier: MIT */
/*
 * Replica URL parsing.
 *
 *   scheme ":" [ "//" authority ] path [ "?" name "=" value { "&" name "=" value } ]
 *
 * With "//" the path is whatever follows the authority and starts with "/" (so
 * sqlite:///abs/x.db has an empty authority and the path /abs/x.db); without it the path is
 * taken as written and may be relative (sqlite:data/x.db). Percent escapes are decoded in the
 * path and in query values. Only the query names an engine knows are accepted: an unknown one is
 * an error, so a typo never silently changes what is compared.
 */
#include "converge/store.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int hexval(int c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  c = tolower(c);
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

/* Percent-decodes s[0..n) into a new string. A decoded NUL is refused: paths and table names
 * are C strings. */
static int pct_decode(const char *s, size_t n, char **out, const char *url, const char *what,
                      cvg_error *err) {
  char *d = malloc(n + 1);
  if (!d)
    return cvg_error_set(err, CVG_ENOMEM, url, "out of memory parsing the URL");
  size_t j = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '%') {
      int h = i + 2 < n + 1 && i + 1 < n ? hexval((unsigned char)s[i + 1]) : -1;
      int l = i + 2 < n ? hexval((unsigned char)s[i + 2]) : -1;
      if (h < 0 || l < 0 || (h == 0 && l == 0)) {
        free(d);
        cvg_error_set(err, CVG_EURL, url, "bad percent escape in the %s at byte %zu", what, i);
        cvg_error_hint(err, "write a literal %% as %%25; %%00 is not allowed");
        return CVG_EURL;
      }
      d[j++] = (char)(h * 16 + l);
      i += 2;
    } else {
      d[j++] = s[i];
    }
  }
  d[j] = '\0';
  *out = d;
  return CVG_OK;
}

void cvg_url_release(cvg_url *url) {
  if (!url)
    return;
  free(url->scheme);
  free(url->host);
  free(url->path);
  free(url->table);
  memset(url, 0, sizeof *url);
}

static char *dup_n(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

/* Where a server URL's user and password end (start is just past "//"): the last '@' of the
 * URL, or NULL. The last, not the first, so that a password holding '@' is never half shown. */
static const char *userinfo_end(const char *start) {
  return strrchr(start, '@');
}

/* Userinfo may hold no unencoded '/', '?', '#', '@', '[' or ']': a password written
 * "bob:Leak/Pw9@host" would otherwise end the host at '/' and send the rest of the password to
 * the server as the database name, or print it. The first such byte is refused with its
 * position. Only for schemes with a network authority (sqlite paths may hold '@'). */
static int check_userinfo(const char *text, const char *start, cvg_error *err) {
  const char *at = userinfo_end(start);
  if (!at)
    return CVG_OK;
  for (const char *c = start; c < at; c++) {
    if (!strchr("/?#@[]", *c))
      continue;
    static const char *const enc[] = {"%2F", "%3F", "%23", "%40", "%5B", "%5D"};
    const char *which = enc[strchr("/?#@[]", *c) - "/?#@[]"];
    cvg_error_set(err, CVG_EURL, "",
                  "the user or password of the URL holds an unencoded '%c' at byte %zu (the "
                  "user and password run from '//' to the last '@')",
                  *c, (size_t)(c - text) + 1);
    cvg_error_hint(err,
                   "percent-encode it as %s (and '/' '?' '#' '@' '[' ']' in general), or keep "
                   "the password out of the URL: password_file, PGPASSWORD or ~/.pgpass",
                   which);
    return CVG_EURL;
  }
  return CVG_OK;
}

static int url_parse(cvg_url *out, const char *text, cvg_error *err);

int cvg_url_parse(cvg_url *out, const char *text, cvg_error *err) {
  int rc = url_parse(out, text, err);
  if (rc && err) { /* the URL in a message never shows its password */
    char *shown = text ? cvg_url_redact(text) : NULL;
    snprintf(err->input, sizeof err->input, "%s", shown ? shown : "(the replica URL)");
    free(shown);
  }
  return rc;
}

static int url_parse(cvg_url *out, const char *text, cvg_error *err) {
  memset(out, 0, sizeof *out);
  if (!text || !*text)
    return cvg_error_set(err, CVG_EURL, "", "empty replica URL");
  size_t len = strlen(text);
  if (len > CVG_URL_MAX)
    return cvg_error_set(err, CVG_EURL, "", "replica URL longer than %d bytes", CVG_URL_MAX);
  int rc = CVG_OK;
  const char *colon = strchr(text, ':');
  size_t slen = colon ? (size_t)(colon - text) : 0;
  int scheme_ok = slen > 0 && isalpha((unsigned char)text[0]);
  for (size_t i = 0; scheme_ok && i < slen; i++) {
    int c = (unsigned char)text[i];
    scheme_ok = isalnum(c) || c == '+' || c == '-' || c == '.';
  }
  if (!scheme_ok) {
    cvg_error_set(err, CVG_EURL, text, "not a replica URL: no scheme");
    cvg_error_hint(err,
                   "write sqlite:///absolute/path.db?table=T or sqlite:relative/path.db?table=T");
    return CVG_EURL;
  }
  out->scheme = dup_n(text, slen);
  if (!out->scheme) {
    rc = cvg_error_set(err, CVG_ENOMEM, text, "out of memory");
    goto fail;
  }
  for (char *p = out->scheme; *p; p++)
    *p = (char)tolower((unsigned char)*p);

  const char *p = colon + 1;
  if (strcmp(out->scheme, "sqlite") != 0 && strncmp(p, "//", 2) == 0 &&
      (rc = check_userinfo(text, p + 2, err)))
    goto fail;
  const char *q = strchr(p, '?');
  const char *end_path = q ? q : text + len;
  const char *host = p, *host_end = p;
  if (end_path - p >= 2 && p[0] == '/' && p[1] == '/') {
    host = p + 2;
    host_end = host;
    while (host_end < end_path && *host_end != '/')
      host_end++;
    p = host_end;
  }
  out->host = dup_n(host, (size_t)(host_end - host));
  if (!out->host) {
    rc = cvg_error_set(err, CVG_ENOMEM, text, "out of memory");
    goto fail;
  }
  if (p == end_path) {
    rc = cvg_error_set(err, CVG_EURL, text, "the URL names no path");
    cvg_error_hint(err,
                   "write sqlite:///absolute/path.db?table=T or sqlite:relative/path.db?table=T");
    goto fail;
  }
  rc = pct_decode(p, (size_t)(end_path - p), &out->path, text, "path", err);
  if (rc)
    goto fail;

  if (q) {
    const char *s = q + 1;
    while (*s) {
      const char *amp = strchr(s, '&');
      const char *e = amp ? amp : text + len;
      const char *eq = memchr(s, '=', (size_t)(e - s));
      if (!eq) {
        rc = cvg_error_set(err, CVG_EURL, text, "query parameter '%.*s' has no value", (int)(e - s),
                           s);
        cvg_error_hint(err, "write name=value, e.g. ?table=accounts");
        goto fail;
      }
      size_t nlen = (size_t)(eq - s);
      if (nlen == 5 && memcmp(s, "table", 5) == 0) {
        if (out->table) {
          rc = cvg_error_set(err, CVG_EURL, text, "table= is given twice");
          goto fail;
        }
        rc = pct_decode(eq + 1, (size_t)(e - eq - 1), &out->table, text, "table name", err);
        if (rc)
          goto fail;
        if (!out->table[0]) {
          rc = cvg_error_set(err, CVG_EURL, text, "table= is empty");
          goto fail;
        }
      } else {
        rc = cvg_error_set(err, CVG_EURL, text, "unknown query parameter '%.*s'", (int)nlen, s);
        cvg_error_hint(err, "the parameters understood are: table");
        goto fail;
      }
      if (!amp)
        break;
      s = amp + 1;
    }
  }
  return CVG_OK;

fail:
  cvg_url_release(out);
  return rc;
}

/*
 * The URL for people: the password of its userinfo (scheme://user:PASSWORD@host) and any
 * password= query value become "***". Everything that shows a replica URL — messages, logs,
 * metrics, the API — shows this form. For a server URL the userinfo runs to the last '@' of the
 * URL; when it holds a byte that would have to be encoded ('/', '?', '#', '@', '[', ']'), user
 * and password alike become "***" (the parser refuses such a URL, but its message shows it).
 */
char *cvg_url_redact(const char *url) {
  cvg_buf b;
  cvg_buf_init(&b, 2 * strlen(url) + 16); /* any length: a message can name a URL too long */
  const char *rest = url;
  int rc = 0;
  const char *sep = strstr(url, "://");
  if (sep) {
    const char *start = sep + 3, *end = start + strcspn(start, "/?#"), *at = NULL;
    if (sep - url == 6 && strncasecmp(url, "sqlite", 6) == 0) { /* a path may hold '@' */
      for (const char *c = start; c < end; c++)
        if (*c == '@')
          at = c;
    } else { /* everything up to the last '@' is user and password */
      at = userinfo_end(start);
    }
    size_t ulen = at ? (size_t)(at - start) : 0;
    const char *colon = at ? memchr(start, ':', ulen) : NULL;
    if (at && strcspn(start, "/?#@[]") < ulen) { /* not even the user can be told apart */
      rc = cvg_buf_append(&b, url, (size_t)(start - url)) || cvg_buf_append(&b, "***", 3);
      rest = at;
    } else if (colon) {
      rc = cvg_buf_append(&b, url, (size_t)(colon - url) + 1) || cvg_buf_append(&b, "***", 3);
      rest = at;
    }
  }
  for (const char *c = rest; !rc && *c;) {
    if ((c == rest || c[-1] == '?' || c[-1] == '&') && strncmp(c, "password=", 9) == 0) {
      rc = cvg_buf_append(&b, "password=***", 12);
      c += 9;
      c += strcspn(c, "&#");
      continue;
    }
    rc = cvg_buf_append(&b, c, 1);
    c++;
  }
  rc = rc || cvg_buf_append(&b, "", 1);
  if (rc) {
    cvg_buf_release(&b);
    return NULL;
  }
  return (char *)b.data; /* the buffer's memory becomes the caller's */
}
