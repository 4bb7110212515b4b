/* SPDX-License-Identifier: MIT */
/*
 * The HTTP server (serve.h) on libmicrohttpd with its internal polling thread. Each request is
 * answered in full from one rendered buffer (bounded by RESPONSE_MAX); requests never have a
 * body we read, so upload data is refused. A read-write lock lets a reload swap the monitor
 * while requests are in flight.
 */
#include "converge/serve.h"
#include "converge/catalog.h"
#include "converge/encode.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define RESPONSE_MAX (64u << 20) /* largest response rendered */
#define DIVERGENCES_DEFAULT 100
#define DIVERGENCES_MAX 10000

struct cvg_http {
  struct MHD_Daemon *d;  /* OWNED */
  pthread_rwlock_t lock; /* guards m */
  cvg_monitor *m;        /* BORROWED */
  unsigned port;         /* bound port */
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, const char *type,
                             const void *body, size_t len) {
  struct MHD_Response *r =
      MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
  if (!r)
    return MHD_NO;
  MHD_add_response_header(r, "Content-Type", type);
  MHD_add_response_header(r, "Cache-Control", "no-store");
  MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
  if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
    MHD_add_response_header(r, "Allow", "GET, HEAD");
  enum MHD_Result ret = MHD_queue_response(c, code, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result reply_error(struct MHD_Connection *c, unsigned code, const char *msg) {
  json_t *o = json_pack("{s:s}", "error", msg);
  char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  enum MHD_Result ret = reply(c, code, "application/json", s ? s : "{}", s ? strlen(s) : 2);
  free(s);
  return ret;
}

static const char index_text[] = "converge watch\n"
                                 "  /metrics              Prometheus metrics\n"
                                 "  /api/v1/status        state of every dataset (JSON)\n"
                                 "  /api/v1/divergences   divergent keys: "
                                 "?dataset=&shard=&class=&state=&limit=\n"
                                 "  /healthz              liveness\n";

static int parse_ulong(const char *s, unsigned long max, unsigned long *out) {
  if (!s || !*s)
    return -1;
  for (const char *p = s; *p; p++)
    if (*p < '0' || *p > '9')
      return -1;
  errno = 0;
  char *end;
  unsigned long v = strtoul(s, &end, 10);
  if (errno || *end || v > max)
    return -1;
  *out = v;
  return 0;
}

static enum MHD_Result divergences(struct MHD_Connection *c, cvg_monitor *m, cvg_buf *b) {
  const char *dataset = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "dataset");
  const char *shard_s = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "shard");
  const char *cls = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "class");
  const char *state = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "state");
  const char *limit_s = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit");
  unsigned long shard = 0, limit = DIVERGENCES_DEFAULT;
  if (shard_s && parse_ulong(shard_s, 65535, &shard) != 0)
    return reply_error(c, MHD_HTTP_BAD_REQUEST, "shard must be a shard number (0, 1, ...)");
  if (limit_s && parse_ulong(limit_s, DIVERGENCES_MAX, &limit) != 0)
    return reply_error(c, MHD_HTTP_BAD_REQUEST, "limit must be a whole number from 0 to 10000");
  if (cls && strcmp(cls, "missing") && strcmp(cls, "stale") && strcmp(cls, "conflict") &&
      strcmp(cls, "tombstone"))
    return reply_error(c, MHD_HTTP_BAD_REQUEST,
                       "class must be one of missing, stale, conflict, tombstone");
  if (state && strcmp(state, "suspected") && strcmp(state, "confirmed"))
    return reply_error(c, MHD_HTTP_BAD_REQUEST, "state must be suspected or confirmed");
  if (dataset && !*dataset)
    dataset = NULL;
  int rc = cvg_monitor_divergences_json(m, dataset, shard_s ? (long)shard : -1, cls, state,
                                        (size_t)limit, b);
  if (rc == CVG_ENOENT)
    return reply_error(c, MHD_HTTP_NOT_FOUND, "no dataset of that name in the catalog");
  if (rc)
    return reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, cvg_strerror(rc));
  return reply(c, MHD_HTTP_OK, "application/json", b->data, b->len);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls) {
  (void)version;
  (void)upload;
  cvg_http *h = cls;
  if (*upload_size) /* no endpoint takes a body */
    return MHD_NO;
  if (!*con_cls) { /* first call of a request: wait for the whole header */
    static int marker;
    *con_cls = &marker;
    return MHD_YES;
  }
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
    return reply_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD are served");
  if (strcmp(url, "/") == 0)
    return reply(c, MHD_HTTP_OK, "text/plain; charset=utf-8", index_text, sizeof index_text - 1);
  pthread_rwlock_rdlock(&h->lock);
  cvg_monitor *m = h->m;
  enum MHD_Result ret;
  cvg_buf b;
  cvg_buf_init(&b, RESPONSE_MAX);
  if (strcmp(url, "/healthz") == 0) {
    int ok = m && cvg_monitor_healthy(m);
    ret = reply(c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain; charset=utf-8",
                ok ? "ok\n" : "unavailable\n", ok ? 3 : 12);
  } else if (strcmp(url, "/metrics") != 0 && strcmp(url, "/api/v1/status") != 0 &&
             strcmp(url, "/api/v1/divergences") != 0) {
    ret = reply_error(c, MHD_HTTP_NOT_FOUND, "no such endpoint; see /");
  } else if (!m) {
    ret = reply_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "the monitor is (re)starting");
  } else if (strcmp(url, "/metrics") == 0) {
    int rc = cvg_monitor_metrics(m, &b);
    ret = rc ? reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, cvg_strerror(rc))
             : reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
  } else if (strcmp(url, "/api/v1/status") == 0) {
    int rc = cvg_monitor_status_json(m, &b);
    ret = rc ? reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, cvg_strerror(rc))
             : reply(c, MHD_HTTP_OK, "application/json", b.data, b.len);
  } else {
    ret = divergences(c, m, &b);
  }
  cvg_buf_release(&b);
  pthread_rwlock_unlock(&h->lock);
  return ret;
}

int cvg_http_start(cvg_http **out, const char *listen, cvg_monitor *m, cvg_error *err) {
  *out = NULL;
  char *host = NULL;
  unsigned port = 0;
  if (cvg_parse_listen(listen, &host, &port) != 0)
    return cvg_error_set(err, CVG_EINVAL, listen, "bad listen address; write host:port");
  struct addrinfo hints, *ai = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  char ps[16];
  snprintf(ps, sizeof ps, "%u", port);
  int gai = getaddrinfo(host, ps, &hints, &ai);
  free(host);
  if (gai != 0 || !ai)
    return cvg_error_set(err, CVG_EINVAL, listen, "cannot resolve the listen address: %s",
                         gai_strerror(gai));
  cvg_http *h = calloc(1, sizeof *h);
  if (!h) {
    freeaddrinfo(ai);
    return cvg_error_set(err, CVG_ENOMEM, listen, "out of memory");
  }
  pthread_rwlock_init(&h->lock, NULL);
  h->m = m;
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
  if (ai->ai_family == AF_INET6)
    flags |= MHD_USE_IPv6;
  h->d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, handle, h, MHD_OPTION_SOCK_ADDR,
                          ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
                          MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                          MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024), MHD_OPTION_END);
  freeaddrinfo(ai);
  if (!h->d) {
    int e = errno;
    pthread_rwlock_destroy(&h->lock);
    free(h);
    cvg_error_set(err, CVG_EIO, listen, "cannot listen for HTTP: %s",
                  e ? strerror(e) : "libmicrohttpd refused");
    cvg_error_hint(err, "is another process (another converge watch?) using that port? change "
                        "'listen' in the catalog or stop the other process");
    return CVG_EIO;
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
  h->port = info ? info->port : port;
  *out = h;
  return CVG_OK;
}

unsigned cvg_http_port(const cvg_http *h) {
  return h->port;
}

void cvg_http_set_monitor(cvg_http *h, cvg_monitor *m) {
  pthread_rwlock_wrlock(&h->lock);
  h->m = m;
  pthread_rwlock_unlock(&h->lock);
}

void cvg_http_stop(cvg_http *h) {
  if (!h)
    return;
  MHD_stop_daemon(h->d);
  pthread_rwlock_destroy(&h->lock);
  free(h);
}
