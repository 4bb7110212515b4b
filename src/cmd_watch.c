/* SPDX-License-Identifier: MIT */
/*
 * converge watch -c converge.yaml: the daemon. Loads the catalog, starts the monitor (probes on
 * worker threads) and the HTTP server, then waits for signals on the main thread:
 *   SIGTERM, SIGINT  stop cleanly (running sweeps are cancelled, threads joined) and exit 0
 *   SIGHUP           reload the catalog; an invalid one is logged and the old one stays
 * Every signal is blocked in all threads and taken with sigwait(), so no work happens in a
 * signal handler.
 */
#include "cli.h"
#include "converge/catalog.h"
#include "converge/log.h"
#include "converge/watch.h"
#include "converge/serve.h"
#include "converge/version.h"

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_t main_thread; /* the thread that sigwait()s */

/* Runs only in a thread that does not block the signal: hand it to the main thread, where it is
 * blocked and so stays pending for sigwait(). pthread_kill is async-signal-safe. */
static void forward_signal(int sig) {
  pthread_kill(main_thread, sig);
}

typedef struct opts {
  const char *config;     /* -c */
  const char *listen;     /* --listen, overrides the catalog */
  const char *log_format; /* --log-format */
  const char *log_level;  /* --log-level */
} opts;

static void log_error(cvg_logger *lg, const char *event, const cvg_error *err) {
  cvg_log(lg, CVG_LOG_ERROR, event, "input", err->input, "error", err->msg, "hint", err->hint,
          (const char *)NULL);
}

static const char *listen_of(const opts *o, const cvg_catalog *cat) {
  return o->listen ? o->listen : cat->listen;
}

/* Loads the catalog and applies command-line overrides. */
static int load(const opts *o, cvg_catalog **cat, cvg_error *err) {
  int rc = cvg_catalog_load(cat, o->config, err);
  if (rc)
    return rc;
  if (o->log_format) {
    free((*cat)->log_format);
    (*cat)->log_format = strdup(o->log_format);
  }
  if (o->log_level) {
    free((*cat)->log_level);
    (*cat)->log_level = strdup(o->log_level);
  }
  if (!(*cat)->log_format || !(*cat)->log_level) {
    cvg_catalog_free(*cat);
    *cat = NULL;
    return cvg_error_set(err, CVG_ENOMEM, o->config, "out of memory");
  }
  return CVG_OK;
}

static void log_started(cvg_logger *lg, const cvg_catalog *cat, unsigned port, const char *event) {
  char n[32], p[16];
  snprintf(n, sizeof n, "%zu", cat->n_datasets);
  snprintf(p, sizeof p, "%u", port);
  cvg_log(lg, CVG_LOG_INFO, event, "version", CVG_VERSION, "catalog", cat->path, "datasets", n,
          "listen", cat->listen, "port", p, (const char *)NULL);
  if (cat->warnings[0]) {
    char *w = strdup(cat->warnings), *save = NULL;
    for (char *line = w ? strtok_r(w, "\n", &save) : NULL; line; line = strtok_r(NULL, "\n", &save))
      cvg_log(lg, CVG_LOG_WARN, "catalog_warning", "detail", line, (const char *)NULL);
    free(w);
  }
}

/* SIGHUP: a new catalog, monitor and (if the address changed) server, or nothing at all. */
static void reload(const opts *o, cvg_logger *lg, cvg_catalog **cat, cvg_monitor **mon,
                   cvg_http **http) {
  cvg_error err;
  cvg_error_clear(&err);
  cvg_catalog *ncat = NULL;
  cvg_monitor *nmon = NULL;
  cvg_http *nhttp = NULL;
  cvg_log(lg, CVG_LOG_INFO, "reload", "catalog", o->config, (const char *)NULL);
  if (load(o, &ncat, &err) != CVG_OK) {
    log_error(lg, "reload_failed", &err);
    cvg_log(lg, CVG_LOG_WARN, "reload_kept_old_catalog", "catalog", (*cat)->path,
            (const char *)NULL);
    return;
  }
  if (strcmp(listen_of(o, ncat), listen_of(o, *cat)) != 0 &&
      cvg_http_start(&nhttp, listen_of(o, ncat), NULL, &err) != CVG_OK) {
    log_error(lg, "reload_failed", &err);
    cvg_catalog_free(ncat);
    return;
  }
  if (cvg_monitor_new(&nmon, ncat, lg, &err) != CVG_OK) {
    log_error(lg, "reload_failed", &err);
    cvg_http_stop(nhttp);
    cvg_catalog_free(ncat);
    return;
  }
  /* Stop the old probes before the new ones start: both would write heartbeats. */
  cvg_http_set_monitor(*http, NULL);
  cvg_monitor_free(*mon);
  *mon = NULL;
  if (cvg_monitor_start(nmon, &err) != CVG_OK) {
    log_error(lg, "reload_failed", &err);
    cvg_monitor_free(nmon);
    cvg_http_stop(nhttp);
    cvg_catalog_free(ncat);
    cvg_log(lg, CVG_LOG_ERROR, "monitor_stopped", "hint", "send SIGHUP again or restart",
            (const char *)NULL);
    return;
  }
  if (nhttp) {
    cvg_http_stop(*http);
    *http = nhttp;
  }
  cvg_http_set_monitor(*http, nmon);
  cvg_monitor_restore_pauses(nmon); /* a hold recorded while nmon was being built */
  cvg_logger_set(lg, ncat->log_format, ncat->log_level);
  cvg_catalog_free(*cat);
  *cat = ncat;
  *mon = nmon;
  log_started(lg, ncat, cvg_http_port(*http), "reloaded");
}

int cmd_watch(int argc, char **argv) {
  static const struct option long_opts[] = {{"config", required_argument, NULL, 'c'},
                                            {"listen", required_argument, NULL, 'l'},
                                            {"log-format", required_argument, NULL, 'F'},
                                            {"log-level", required_argument, NULL, 'L'},
                                            {"help", no_argument, NULL, 'h'},
                                            {NULL, 0, NULL, 0}};
  opts o = {0};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "c:h", long_opts, NULL)) != -1) {
    switch (c) {
    case 'c':
      o.config = optarg;
      break;
    case 'l':
      o.listen = optarg;
      break;
    case 'F':
      if (strcmp(optarg, "json") && strcmp(optarg, "logfmt"))
        return usage_error("watch", "--log-format must be json or logfmt");
      o.log_format = optarg;
      break;
    case 'L':
      if (strcmp(optarg, "debug") && strcmp(optarg, "info") && strcmp(optarg, "warn") &&
          strcmp(optarg, "error"))
        return usage_error("watch", "--log-level must be debug, info, warn or error");
      o.log_level = optarg;
      break;
    case 'h':
      print_help(stdout, "watch");
      return 0;
    default:
      return usage_error("watch", "unknown option");
    }
  }
  if (!o.config)
    return usage_error("watch", "give the catalog with -c converge.yaml");
  if (optind != argc)
    return usage_error("watch", "unexpected argument '%s'", argv[optind]);
  if (o.listen) {
    char *host;
    unsigned port;
    if (cvg_parse_listen(o.listen, &host, &port) != 0)
      return usage_error("watch", "--listen must be host:port, e.g. 127.0.0.1:9464");
    free(host);
  }

  cvg_error err;
  cvg_error_clear(&err);
  cvg_catalog *cat = NULL;
  if (load(&o, &cat, &err) != CVG_OK) {
    print_error(&err);
    return EXIT_TROUBLE;
  }
  cvg_logger *lg = cvg_logger_new(stderr, cat->log_format, cat->log_level);
  if (!lg) {
    cvg_catalog_free(cat);
    fprintf(stderr, "converge watch: out of memory\n");
    return EXIT_TROUBLE;
  }
  /* Block the signals before any thread of ours exists, so that every one inherits the mask and
   * the main thread takes them with sigwait(). A thread we did not create (a sanitizer's, a
   * library's started earlier) may not block them: there a handler passes the signal on to the
   * main thread instead of letting the default action end the process. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  main_thread = pthread_self();
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = forward_signal;
  sigfillset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);

  int status = EXIT_TROUBLE;
  cvg_monitor *mon = NULL;
  cvg_http *http = NULL;
  if (cvg_http_start(&http, listen_of(&o, cat), NULL, &err) != CVG_OK ||
      cvg_monitor_new(&mon, cat, lg, &err) != CVG_OK || cvg_monitor_start(mon, &err) != CVG_OK) {
    print_error(&err);
    goto out;
  }
  cvg_http_set_monitor(http, mon);
  log_started(lg, cat, cvg_http_port(http), "started");
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0)
      continue;
    if (sig == SIGHUP) {
      reload(&o, lg, &cat, &mon, &http);
      continue;
    }
    cvg_log(lg, CVG_LOG_INFO, "stopping", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM",
            (const char *)NULL);
    break;
  }
  status = 0;
out:
  cvg_http_stop(http);
  cvg_monitor_free(mon);
  if (status == 0)
    cvg_log(lg, CVG_LOG_INFO, "stopped", (const char *)NULL);
  cvg_logger_free(lg);
  cvg_catalog_free(cat);
  return status;
}
