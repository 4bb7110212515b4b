/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: raw bytes sent to converge watch's HTTP server (a real libmicrohttpd daemon
 * on a loopback port, serving a monitor built from a small catalog) must never crash it, and
 * every answer must be a well-formed HTTP status line. This covers our handler's parsing of
 * paths, methods and query values (dataset, shard, class, state, limit) and the renderers.
 */
#include "converge/catalog.h"
#include "converge/watch.h"
#include "converge/serve.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static cvg_catalog *cat;
static cvg_monitor *mon;
static cvg_http *http;

static void setup(void) {
  static const char yaml[] = "api: {token: fuzz-token-0123456789abcdef}\n"
                             "alerting: {state: /tmp/converge-fuzz-http.state.db}\n"
                             "datasets:\n  - name: accounts\n    shards: 4\n"
                             "    invariants: {max_lag_seconds: 1, equal_aggregate: sum(b)}\n"
                             "    replicas:\n"
                             "      - {name: a, url: \"sqlite:///nonexistent/a.db?table=t\", "
                             "authority: true}\n"
                             "      - {name: b, url: \"sqlite:///nonexistent/b.db?table=t\"}\n";
  cvg_error err;
  if (cvg_catalog_parse(&cat, "fuzz.yaml", yaml, sizeof yaml - 1, &err) != CVG_OK ||
      cvg_monitor_new(&mon, cat, NULL, &err) != CVG_OK ||
      cvg_http_start(&http, "127.0.0.1:0", mon, &err) != CVG_OK) {
    fprintf(stderr, "fuzz_http setup: %s: %s\n", err.input, err.msg);
    abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!http)
    setup();
  if (size > 16384)
    return 0;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return 0;
  struct timeval tv = {2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)cvg_http_port(http));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    close(fd);
    return 0;
  }
  size_t off = 0;
  while (off < size) {
    ssize_t n = send(fd, data + off, size - off, MSG_NOSIGNAL);
    if (n <= 0)
      break;
    off += (size_t)n;
  }
  shutdown(fd, SHUT_WR);
  char buf[4096];
  size_t got = 0;
  for (;;) {
    ssize_t n = recv(fd, buf + got, sizeof buf - 1 - got, 0);
    if (n <= 0)
      break;
    got += (size_t)n;
    if (got == sizeof buf - 1)
      got = 16; /* keep the status line, drop the rest */
  }
  close(fd);
  buf[got] = '\0';
  if (got && strncmp(buf, "HTTP/1.", 7) != 0)
    abort(); /* an answer that is not HTTP */
  return 0;
}
