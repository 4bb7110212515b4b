/* SPDX-License-Identifier: MIT */
/*
 * converge alerts -c converge.yaml: the current alerts, as the running `converge watch` holds
 * them (GET /api/v1/alerts on the catalog's listen address), or, when no daemon answers, as it
 * last saved them in the state file.
 *
 * converge annotate -c converge.yaml --kind deploy --text "...": registers a change event
 * (deploy, migration, config, incident, other) in the state file; alerts whose onset follows it
 * within alerting.cause_window name it as their likely cause.
 */
#include "cli.h"
#include "converge/mclock.h"
#include "converge/alert.h"
#include "converge/catalog.h"
#include "converge/json.h"

#include <curl/curl.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static size_t collect_body(char *p, size_t size, size_t n, void *ud) {
  cvg_buf *b = ud;
  return cvg_buf_append(b, p, size * n) == CVG_OK ? size * n : 0;
}

/* GET url into b; 0 on a 200 answer. */
static int http_get(const char *url, cvg_buf *b, char *why, size_t why_size) {
  CURL *c = curl_easy_init();
  if (!c) {
    snprintf(why, why_size, "out of memory");
    return -1;
  }
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  CURLcode cc = curl_easy_perform(c);
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_cleanup(c);
  if (cc != CURLE_OK) {
    snprintf(why, why_size, "%s", curl_easy_strerror(cc));
    return -1;
  }
  if (code != 200) {
    snprintf(why, why_size, "HTTP status %ld", code);
    return -1;
  }
  return 0;
}

static const char *label(json_t *a, const char *k) {
  const char *s = json_string_value(json_object_get(json_object_get(a, "labels"), k));
  return s ? s : "-";
}

static void print_table(json_t *root) {
  json_t *alerts = json_object_get(root, "alerts");
  size_t i;
  json_t *a;
  if (!json_array_size(alerts)) {
    printf("no alerts\n");
    return;
  }
  printf("%-10s %-5s %-8s %-30s %-14s %-12s %-24s %s\n", "STATE", "STAGE", "SEVERITY", "ALERT",
         "DATASET", "REPLICA", "SINCE", "SUMMARY");
  json_array_foreach(alerts, i, a) {
    const char *state = json_string_value(json_object_get(a, "state"));
    const char *since = json_string_value(json_object_get(a, "startsAt"));
    if (!since)
      since = json_string_value(json_object_get(a, "activeAt"));
    const char *summary =
        json_string_value(json_object_get(json_object_get(a, "annotations"), "summary"));
    char st[32];
    snprintf(st, sizeof st, "%s%s", state ? state : "?",
             json_is_true(json_object_get(a, "inhibited")) ? "*" : "");
    printf("%-10s %-5s %-8s %-30s %-14s %-12s %-24s %s\n", st, label(a, "stage"),
           label(a, "severity"), label(a, "alertname"), label(a, "dataset"), label(a, "replica"),
           since ? since : "-", summary ? summary : "");
  }
  printf("(* inhibited by a later stage of the same dataset and shard)\n");
}

int cmd_alerts(int argc, char **argv) {
  static const struct option opts[] = {
      {"config", required_argument, NULL, 'c'}, {"format", required_argument, NULL, 'f'},
      {"url", required_argument, NULL, 'u'},    {"offline", no_argument, NULL, 'o'},
      {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
  const char *config = NULL, *format = "table", *url = NULL;
  int offline = 0, c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "c:f:u:oh", opts, NULL)) != -1) {
    switch (c) {
    case 'c':
      config = optarg;
      break;
    case 'f':
      format = optarg;
      break;
    case 'u':
      url = optarg;
      break;
    case 'o':
      offline = 1;
      break;
    case 'h':
      return print_help(stdout, "alerts"), 0;
    default:
      return usage_error("alerts", "unknown option");
    }
  }
  if (optind != argc)
    return usage_error("alerts", "unexpected argument '%s'", argv[optind]);
  if (strcmp(format, "table") && strcmp(format, "json"))
    return usage_error("alerts", "--format must be table or json");
  if (!config)
    return usage_error("alerts", "give the catalog with -c converge.yaml");
  cvg_catalog *cat = load_catalog(config);
  if (!cat)
    return EXIT_TROUBLE;
  cvg_error err;
  cvg_error_clear(&err);
  cvg_buf b;
  cvg_buf_init(&b, 256u << 20);
  int rc = -1;
  char full[600], why[256] = "";
  if (!offline) {
    if (url)
      snprintf(full, sizeof full, "%s/api/v1/alerts", url);
    else
      snprintf(full, sizeof full, "http://%s/api/v1/alerts", cat->listen);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = http_get(full, &b, why, sizeof why);
    curl_global_cleanup();
    if (rc != 0) {
      fprintf(stderr,
              "converge: %s: converge watch did not answer (%s); showing the alerts it last "
              "saved in %s\n",
              full, why, cat->alerting.state_file);
      cvg_buf_reset(&b);
    }
  }
  if (rc != 0 && cvg_alerts_state_json(cat->alerting.state_file, &b, &err) != CVG_OK) {
    print_error(&err);
    cvg_buf_release(&b);
    cvg_catalog_free(cat);
    return EXIT_TROUBLE;
  }
  json_t *root = json_loadb((const char *)b.data, b.len, 0, NULL);
  int status = 0;
  if (!root) {
    fprintf(stderr, "converge: the alerts are not valid JSON\n");
    status = EXIT_TROUBLE;
  } else if (strcmp(format, "json") == 0) {
    fwrite(b.data, 1, b.len, stdout);
    putchar('\n');
  } else {
    print_table(root);
  }
  json_decref(root);
  cvg_buf_release(&b);
  cvg_catalog_free(cat);
  return status;
}

int cmd_annotate(int argc, char **argv) {
  static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                       {"kind", required_argument, NULL, 'k'},
                                       {"text", required_argument, NULL, 't'},
                                       {"dataset", required_argument, NULL, 'd'},
                                       {"at", required_argument, NULL, 'a'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *config = NULL, *kind = NULL, *text = NULL, *dataset = NULL, *at = NULL;
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "c:k:t:d:a:h", opts, NULL)) != -1) {
    switch (c) {
    case 'c':
      config = optarg;
      break;
    case 'k':
      kind = optarg;
      break;
    case 't':
      text = optarg;
      break;
    case 'd':
      dataset = optarg;
      break;
    case 'a':
      at = optarg;
      break;
    case 'h':
      return print_help(stdout, "annotate"), 0;
    default:
      return usage_error("annotate", "unknown option");
    }
  }
  if (optind != argc)
    return usage_error("annotate", "unexpected argument '%s'", argv[optind]);
  if (!config)
    return usage_error("annotate", "give the catalog with -c converge.yaml");
  if (!kind || !cvg_event_kind_ok(kind))
    return usage_error("annotate", "--kind must be deploy, migration, config, incident or other");
  if (!text || !*text || strlen(text) >= CVG_EVENT_TEXT_MAX)
    return usage_error("annotate", "--text must say what changed (at most 1023 bytes)");
  cvg_event ev;
  memset(&ev, 0, sizeof ev);
  if (at) {
    if (cvg_parse_time(at, &ev.at) != 0)
      return usage_error("annotate", "--at must be RFC 3339 time, e.g. 2026-11-26T17:40:00Z");
  } else {
    ev.at = cvg_wall_now();
  }
  cvg_catalog *cat = load_catalog(config);
  if (!cat)
    return EXIT_TROUBLE;
  cvg_error err;
  cvg_error_clear(&err);
  if (dataset) {
    size_t i = 0;
    while (i < cat->n_datasets && strcmp(cat->datasets[i].name, dataset) != 0)
      i++;
    if (i == cat->n_datasets) {
      cvg_catalog_free(cat);
      return usage_error("annotate", "--dataset '%s' is not a dataset of %s", dataset, config);
    }
  }
  snprintf(ev.kind, sizeof ev.kind, "%s", kind);
  snprintf(ev.text, sizeof ev.text, "%s", text);
  snprintf(ev.dataset, sizeof ev.dataset, "%s", dataset ? dataset : "");
  snprintf(ev.source, sizeof ev.source, "cli");
  int rc = cvg_event_add(cat->alerting.state_file, &ev, &err);
  if (rc == CVG_OK) {
    char t[40];
    printf("event %lld recorded: %s \"%s\" at %s%s%s\n", (long long)ev.id, ev.kind, ev.text,
           cvg_fmt_time(t, sizeof t, ev.at), dataset ? " for dataset " : " for every dataset",
           dataset ? dataset : "");
  } else {
    print_error(&err);
  }
  cvg_catalog_free(cat);
  return rc == CVG_OK ? 0 : EXIT_TROUBLE;
}
