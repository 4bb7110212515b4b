/* SPDX-License-Identifier: MIT */
/* Structured logs: one parseable line per event, in JSON and in logfmt, whatever the values hold,
 * and the level filter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "converge/log.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char tricky[] = "a \"quoted\" value=1\nsecond line\\ and\ttab é";

static char *capture(const char *format, const char *level) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  cvg_logger *lg = cvg_logger_new(f, format, level);
  assert_non_null(lg);
  cvg_log(lg, CVG_LOG_DEBUG, "debug_event", "k", "v", (const char *)NULL);
  cvg_log(lg, CVG_LOG_WARN, "replica_down", "dataset", "accounts", "error", tricky, "empty", "",
          (const char *)NULL);
  cvg_logger_free(lg);
  fclose(f);
  return buf;
}

static void test_json_lines(void **state) {
  (void)state;
  char *out = capture("json", "info");
  /* the debug event is filtered out: exactly one line */
  char *nl = strchr(out, '\n');
  assert_non_null(nl);
  assert_int_equal(nl[1], '\0');
  json_error_t je;
  json_t *j = json_loads(out, 0, &je);
  if (!j)
    fail_msg("not JSON: %s (%s)", out, je.text);
  assert_string_equal(json_string_value(json_object_get(j, "level")), "warn");
  assert_string_equal(json_string_value(json_object_get(j, "event")), "replica_down");
  assert_string_equal(json_string_value(json_object_get(j, "error")), tricky);
  assert_string_equal(json_string_value(json_object_get(j, "empty")), "");
  const char *ts = json_string_value(json_object_get(j, "ts"));
  assert_non_null(ts);
  assert_int_equal(strlen(ts), 24); /* 2026-11-26T10:00:00.123Z */
  assert_int_equal(ts[23], 'Z');
  json_decref(j);
  free(out);
}

static void test_logfmt(void **state) {
  (void)state;
  char *out = capture("logfmt", "debug");
  char *second = strchr(out, '\n');
  assert_non_null(second);
  second++;
  assert_non_null(strstr(out, " level=debug event=debug_event k=v\n"));
  /* one line per event: the newline inside the value is escaped */
  assert_non_null(strchr(second, '\n'));
  assert_int_equal(strchr(second, '\n')[1], '\0');
  assert_non_null(strstr(second, " level=warn event=replica_down dataset=accounts error=\"a "
                                 "\\\"quoted\\\" value=1\\nsecond line\\\\ and\\x09tab é\" "
                                 "empty=\"\"\n"));
  free(out);
}

static void test_bad_settings(void **state) {
  (void)state;
  assert_null(cvg_logger_new(stderr, "xml", "info"));
  assert_null(cvg_logger_new(stderr, "json", "loud"));
  cvg_logger *lg = cvg_logger_new(stderr, "json", "info");
  assert_int_equal(cvg_logger_set(lg, "logfmt", "nope"), -1);
  assert_int_equal(cvg_logger_set(lg, "logfmt", "error"), 0);
  cvg_logger_free(lg);
  cvg_log(NULL, CVG_LOG_ERROR, "ignored", (const char *)NULL); /* a NULL logger is silent */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_json_lines),
      cmocka_unit_test(test_logfmt),
      cmocka_unit_test(test_bad_settings),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
