/* SPDX-License-Identifier: MIT */
/* Replica URL parsing, status messages and error formatting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "converge/store.h"

#include <stdlib.h>
#include <string.h>

static void test_absolute_and_relative(void **state) {
  (void)state;
  cvg_url u;
  assert_int_equal(cvg_url_parse(&u, "sqlite:///srv/a.db?table=accounts", NULL), CVG_OK);
  assert_string_equal(u.scheme, "sqlite");
  assert_string_equal(u.host, "");
  assert_string_equal(u.path, "/srv/a.db");
  assert_string_equal(u.table, "accounts");
  cvg_url_release(&u);
  assert_int_equal(cvg_url_parse(&u, "SQLite:rel/b.db", NULL), CVG_OK);
  assert_string_equal(u.scheme, "sqlite");
  assert_string_equal(u.path, "rel/b.db");
  assert_null(u.table);
  cvg_url_release(&u);
}

static void test_percent_decoding(void **state) {
  (void)state;
  cvg_url u;
  assert_int_equal(cvg_url_parse(&u, "sqlite:///a%20b/c.db?table=my%22t", NULL), CVG_OK);
  assert_string_equal(u.path, "/a b/c.db");
  assert_string_equal(u.table, "my\"t");
  cvg_url_release(&u);
}

static void test_errors(void **state) {
  (void)state;
  cvg_url u;
  cvg_error err;
  const char *bad[] = {"",
                       "nocolon.db",
                       ":x",
                       "sqlite:",
                       "sqlite:a.db?table",
                       "sqlite:a.db?table=",
                       "sqlite:a.db?tabel=t",
                       "sqlite:a.db?table=a&table=b",
                       "sqlite:a%zz.db",
                       "sqlite:a%00.db",
                       "sqlite:a%2"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cvg_error_clear(&err);
    int rc = cvg_url_parse(&u, bad[i], &err);
    if (rc != CVG_EURL)
      fail_msg("'%s' gave %s", bad[i], cvg_status_name(rc));
    assert_true(err.msg[0] != '\0');
  }
  assert_int_equal(cvg_url_parse(&u, "sqlite:a.db?tabel=t", &err), CVG_EURL);
  assert_non_null(strstr(err.msg, "tabel"));
  assert_non_null(strstr(err.hint, "table"));
}

static void test_unknown_scheme_names_supported(void **state) {
  (void)state;
  cvg_store *st = NULL;
  cvg_error err;
  assert_int_equal(cvg_store_open(&st, "mysql://h/db?table=t", 0, &err), CVG_ESCHEME);
  assert_null(st);
  assert_non_null(strstr(err.msg, "mysql"));
  assert_non_null(strstr(err.hint, "sqlite:"));
}

static void test_status_table(void **state) {
  (void)state;
  assert_int_equal(CVG_OK, 0);
  assert_string_equal(cvg_strerror(CVG_OK), "success");
  assert_string_equal(cvg_status_name(CVG_ENOENT), "CVG_ENOENT");
  assert_string_equal(cvg_strerror(-1), "unknown status");
  assert_string_equal(cvg_strerror(CVG_STATUS__COUNT), "unknown status");
  for (int s = 0; s < CVG_STATUS__COUNT; s++) {
    assert_true(strlen(cvg_strerror(s)) > 0);
    assert_true(strncmp(cvg_status_name(s), "CVG_", 4) == 0);
  }
}

static void test_error_format(void **state) {
  (void)state;
  cvg_error err;
  cvg_error_clear(&err);
  assert_int_equal(cvg_error_set(&err, CVG_ENOENT, "sqlite:x.db", "cannot open: %s", "gone"),
                   CVG_ENOENT);
  cvg_error_hint(&err, "check the path");
  char buf[2048];
  assert_string_equal(cvg_error_format(&err, buf, sizeof buf),
                      "converge: sqlite:x.db: cannot open: gone\n  hint: check the path");
  assert_int_equal(cvg_error_set(NULL, CVG_EIO, NULL, "x"), CVG_EIO); /* NULL err is allowed */
  char tiny[8];
  cvg_error_format(&err, tiny, sizeof tiny);
  assert_int_equal(strlen(tiny), 7);
}

static void test_tombstone_truthy(void **state) {
  (void)state;
  cvg_value v = {.type = CVG_NULL};
  assert_false(cvg_tombstone_truthy(&v));
  v.type = CVG_INTEGER;
  v.u.i = 0;
  assert_false(cvg_tombstone_truthy(&v));
  v.u.i = 1700000000;
  assert_true(cvg_tombstone_truthy(&v));
  v.type = CVG_TEXT;
  const char *live[] = {"", "0", "false", "FALSE", "f", "No", "n"};
  for (size_t i = 0; i < sizeof live / sizeof live[0]; i++) {
    v.u.s.p = (const unsigned char *)live[i];
    v.u.s.n = strlen(live[i]);
    assert_false(cvg_tombstone_truthy(&v));
  }
  const char *dead[] = {"1", "true", "yes", "2024-01-01T00:00:00Z"};
  for (size_t i = 0; i < sizeof dead / sizeof dead[0]; i++) {
    v.u.s.p = (const unsigned char *)dead[i];
    v.u.s.n = strlen(dead[i]);
    assert_true(cvg_tombstone_truthy(&v));
  }
}

static void test_redact(void **state) {
  (void)state;
  static const char *const cases[][2] = {
      {"sqlite:///srv/a.db?table=t", "sqlite:///srv/a.db?table=t"},
      {"postgresql://alice:s3cr%40t@db:5432/x?table=t", "postgresql://alice:***@db:5432/x?table=t"},
      {"postgresql://alice@db/x?table=t", "postgresql://alice@db/x?table=t"},
      {"postgresql://db/x?table=t&password=hunter2&x=1",
       "postgresql://db/x?table=t&password=***&x=1"},
      {"sqlite://u:p@localhost/a@b.db?table=t", "sqlite://u:***@localhost/a@b.db?table=t"},
      {"sqlite:///srv/a@b.db?table=t", "sqlite:///srv/a@b.db?table=t"},
      /* a server URL's userinfo runs to the last '@': unencoded '/', '?', '@' in a password */
      {"postgresql://bob:Leak/Pw9@host/db?table=t", "postgresql://***@host/db?table=t"},
      {"postgresql://bob:Le?ak@host/db?table=t", "postgresql://***@host/db?table=t"},
      {"postgresql://bob:p@ss@host/db?table=t", "postgresql://***@host/db?table=t"},
      {"postgresql://bob:p#w@host/db?table=t", "postgresql://***@host/db?table=t"},
      {"mysql://bob:x/y@h/db?table=t", "mysql://***@h/db?table=t"},
      {"", ""},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *r = cvg_url_redact(cases[i][0]);
    assert_non_null(r);
    assert_string_equal(r, cases[i][1]);
    free(r);
  }
  /* a store that cannot be opened names the URL without its password */
  cvg_store *st = NULL;
  cvg_error err;
  assert_int_not_equal(cvg_store_open(&st, "sqlite://u:hunter2@localhost/nonexistent/a.db?table=t",
                                      CVG_STORE_READONLY, &err),
                       CVG_OK);
  assert_null(strstr(err.input, "hunter2"));
  assert_null(strstr(err.msg, "hunter2"));
  assert_int_not_equal(cvg_store_open(&st, "mysql://u:hunter2@h/db?table=t", 0, &err), CVG_OK);
  assert_null(strstr(err.input, "hunter2"));
}

/* A password holding an unencoded reserved byte is refused, with its position and the escape to
 * write, and no part of it is shown. */
static void test_userinfo_reserved(void **state) {
  (void)state;
  static const struct {
    const char *url, *why;
  } cases[] = {
      {"postgresql://bob:Leak/Pw9@host/db?table=t", "unencoded '/' at byte 22"},
      {"postgresql://bob:Le?ak9@host/db?table=t", "unencoded '?' at byte 20"},
      {"postgresql://bob:Le#ak9@host/db?table=t", "unencoded '#' at byte 20"},
      {"postgresql://bob:Le@ak9@host/db?table=t", "unencoded '@' at byte 20"},
      {"postgresql://bob:Le[ak9@host/db?table=t", "unencoded '[' at byte 20"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    cvg_url u;
    cvg_error err;
    cvg_error_clear(&err);
    assert_int_equal(cvg_url_parse(&u, cases[i].url, &err), CVG_EURL);
    if (!strstr(err.msg, cases[i].why))
      fail_msg("%s: '%s'", cases[i].url, err.msg);
    assert_non_null(strstr(err.hint, "percent-encode"));
    assert_null(strstr(err.msg, "ak9"));
    assert_null(strstr(err.input, "ak9"));
    assert_null(strstr(err.input, "Pw9"));
  }
  cvg_url u;
  cvg_error err;
  assert_int_equal(cvg_url_parse(&u, "postgresql://bob:Le%2Fak@host/db?table=t", &err), CVG_OK);
  assert_string_equal(u.host, "bob:Le%2Fak@host");
  cvg_url_release(&u);
  assert_int_equal(cvg_url_parse(&u, "sqlite:///srv/a@b.db?table=t", &err), CVG_OK);
  assert_string_equal(u.path, "/srv/a@b.db");
  cvg_url_release(&u);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_redact),
      cmocka_unit_test(test_userinfo_reserved),
      cmocka_unit_test(test_absolute_and_relative),
      cmocka_unit_test(test_percent_decoding),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_unknown_scheme_names_supported),
      cmocka_unit_test(test_status_table),
      cmocka_unit_test(test_error_format),
      cmocka_unit_test(test_tombstone_truthy),
  };
  return cmocka_run_group_tests_name("url_status", tests, NULL, NULL);
}
