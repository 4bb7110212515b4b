/* SPDX-License-Identifier: MIT */
/*
 * The HTTP server (serve.h) on libmicrohttpd with its internal polling thread. Each request is
 * answered in full from one rendered buffer (bounded by RESPONSE_MAX); requests never have a
 * body we read, so upload data is refused. A read-write lock lets a reload swap the monitor
 * while requests are in flight.
 */
#include "converge/serve.h"
#include "converge/catalog.h"
#include "converge/alert.h"
#include "converge/encode.h"
#include "converge/json.h"
#include "converge/monitor.h"

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
#include <time.h>

#define RESPONSE_MAX (64u << 20) /* largest response rendered */
#define BODY_MAX (16u << 10)     /* largest request body accepted (POST /api/v1/events) */
#define EVENTS_LIST_MAX 200
#define DIVERGENCES_DEFAULT 100
#define DIVERGENCES_MAX 10000

struct help_page {
  const char *name;
  const char *text;
};
extern const struct help_page cvg_runbook_pages[]; /* docs/runbooks/, embedded by the Makefile */
extern const size_t cvg_runbook_n_pages;

/* The dashboard's static files (web/), embedded by the Makefile (scripts/embed-files). */
struct cvg_asset {
  const char *path, *type, *etag;
  const unsigned char *data;
  size_t len;
};
extern const struct cvg_asset cvg_dashboard_assets[];
extern const size_t cvg_dashboard_n_assets;

/* The dashboard only talks to this server, runs no inline script or style, and is not framed. */
#define DASHBOARD_CSP                                                                              \
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "                \
  "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

/* A request with a body, collected over several calls of the handler. */
typedef struct req {
  size_t len;
  int too_big;
  char body[BODY_MAX + 1];
} req;

static int get_marker; /* con_cls of requests without a body */

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
  if (code == MHD_HTTP_UNAUTHORIZED)
    MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"converge\"");
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

static const char index_text[] =
    "converge watch\n"
    "  /metrics              Prometheus metrics\n"
    "  /api/v1/status        state of every dataset (JSON)\n"
    "  /api/v1/divergences   divergent keys: "
    "?dataset=&shard=&class=&state=&limit=\n"
    "  /api/v1/alerts        current alerts: ?fingerprint=\n"
    "  /api/v1/events        change events: GET ?since=&dataset=, "
    "POST {kind, text, dataset, time} (bearer token)\n"
    "  /api/v1/hotspots      conflicts per shard, most conflicting keys: "
    "?dataset=\n"
    "  /api/v1/repair/pause  POST ?dataset= (bearer token): hold automatic repair;\n"
    "  /api/v1/repair/resume POST ?dataset= (bearer token): release it\n"
    "  /dashboard/           the dashboard (a browser opening / is sent there)\n"
    "  /runbooks/NAME        the runbook of a built-in alert\n"
    "  /healthz              liveness\n";

static enum MHD_Result redirect(struct MHD_Connection *c, unsigned code, const char *to) {
  struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
  if (!r)
    return MHD_NO;
  MHD_add_response_header(r, "Location", to);
  MHD_add_response_header(r, "Cache-Control", "no-store");
  enum MHD_Result ret = MHD_queue_response(c, code, r);
  MHD_destroy_response(r);
  return ret;
}

/* GET /dashboard/...: an embedded file, revalidated by its ETag (304 when unchanged). */
static enum MHD_Result dashboard_file(struct MHD_Connection *c, const char *url) {
  if (strcmp(url, "/dashboard") == 0)
    return redirect(c, MHD_HTTP_MOVED_PERMANENTLY, "/dashboard/");
  const struct cvg_asset *a = NULL;
  for (size_t i = 0; i < cvg_dashboard_n_assets && !a; i++)
    if (strcmp(cvg_dashboard_assets[i].path, url) == 0)
      a = &cvg_dashboard_assets[i];
  if (!a)
    return reply_error(c, MHD_HTTP_NOT_FOUND,
                       "no such dashboard file; the dashboard is /dashboard/");
  const char *inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "If-None-Match");
  int fresh = inm && strstr(inm, a->etag) != NULL;
  struct MHD_Response *r = MHD_create_response_from_buffer(
      fresh ? 0 : a->len, fresh ? (void *)"" : (void *)a->data, MHD_RESPMEM_PERSISTENT);
  if (!r)
    return MHD_NO;
  MHD_add_response_header(r, "Content-Type", a->type);
  MHD_add_response_header(r, "ETag", a->etag);
  MHD_add_response_header(r, "Cache-Control", "no-cache");
  MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
  MHD_add_response_header(r, "Content-Security-Policy", DASHBOARD_CSP);
  MHD_add_response_header(r, "X-Frame-Options", "DENY");
  MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
  enum MHD_Result ret = MHD_queue_response(c, fresh ? MHD_HTTP_NOT_MODIFIED : MHD_HTTP_OK, r);
  MHD_destroy_response(r);
  return ret;
}

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

/* Constant-time comparison of the presented bearer token with the catalog's. */
static int token_ok(const char *header, const char *token) {
  if (!header || strncmp(header, "Bearer ", 7) != 0)
    return 0;
  const char *got = header + 7;
  size_t gl = strlen(got), tl = strlen(token);
  unsigned char diff = (unsigned char)(gl != tl);
  for (size_t i = 0; i < tl; i++)
    diff |= (unsigned char)(token[i] ^ (i < gl ? got[i] : 0));
  return diff == 0;
}

static enum MHD_Result post_event(struct MHD_Connection *c, cvg_monitor *m, req *r) {
  const cvg_catalog *cat = cvg_monitor_catalog(m);
  if (!cat->api_token)
    return reply_error(c, MHD_HTTP_FORBIDDEN,
                       "posting events is off: set api.token or api.token_file in the catalog");
  const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
  if (!token_ok(auth, cat->api_token))
    return reply_error(c, MHD_HTTP_UNAUTHORIZED,
                       "missing or wrong bearer token (Authorization: Bearer TOKEN)");
  if (r->too_big)
    return reply_error(c, 413, "the body is larger than 16 KiB");
  json_error_t jerr;
  json_t *o = json_loadb(r->body, r->len, JSON_REJECT_DUPLICATES, &jerr);
  if (!json_is_object(o)) {
    json_decref(o);
    char msg[300];
    snprintf(msg, sizeof msg, "the body must be a JSON object: %s (line %d, column %d)", jerr.text,
             jerr.line, jerr.column);
    return reply_error(c, MHD_HTTP_BAD_REQUEST, msg);
  }
  cvg_event ev;
  memset(&ev, 0, sizeof ev);
  const char *key;
  json_t *v;
  const char *err = NULL;
  json_object_foreach(o, key, v) {
    if (strcmp(key, "kind") && strcmp(key, "text") && strcmp(key, "dataset") && strcmp(key, "time"))
      err = "unknown field; the fields are kind, text, dataset and time";
  }
  const char *kind = json_string_value(json_object_get(o, "kind"));
  const char *text = json_string_value(json_object_get(o, "text"));
  json_t *dsv = json_object_get(o, "dataset"), *tv = json_object_get(o, "time");
  if (!err && (!kind || !cvg_event_kind_ok(kind)))
    err = "'kind' must be one of deploy, migration, config, incident, other";
  else if (!err && (!text || !*text || strlen(text) >= CVG_EVENT_TEXT_MAX))
    err = "'text' must be a non-empty string of at most 1023 bytes";
  else if (!err && dsv && !json_is_null(dsv) && !json_is_string(dsv))
    err = "'dataset' must be a dataset name";
  else if (!err && tv && (!json_is_string(tv) || cvg_parse_time(json_string_value(tv), &ev.at)))
    err = "'time' must be RFC 3339, e.g. 2026-11-26T17:40:00Z";
  if (!err && json_is_string(dsv)) {
    size_t i = 0;
    while (i < cat->n_datasets && strcmp(cat->datasets[i].name, json_string_value(dsv)) != 0)
      i++;
    if (i == cat->n_datasets)
      err = "'dataset' names no dataset of the catalog";
  }
  if (err) {
    json_decref(o);
    return reply_error(c, MHD_HTTP_BAD_REQUEST, err);
  }
  if (!tv) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ev.at = (double)ts.tv_sec + ts.tv_nsec / 1e9;
  }
  snprintf(ev.kind, sizeof ev.kind, "%s", kind);
  snprintf(ev.text, sizeof ev.text, "%s", text);
  snprintf(ev.dataset, sizeof ev.dataset, "%s", json_is_string(dsv) ? json_string_value(dsv) : "");
  snprintf(ev.source, sizeof ev.source, "api");
  json_decref(o);
  cvg_error e;
  cvg_error_clear(&e);
  if (cvg_event_add(cat->alerting.state_file, &ev, &e) != CVG_OK)
    return reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, e.msg);
  json_t *res = json_pack("{s:I, s:o}", "id", (json_int_t)ev.id, "time", cvg_json_time(ev.at));
  char *txt = res ? json_dumps(res, JSON_COMPACT) : NULL;
  json_decref(res);
  enum MHD_Result ret =
      reply(c, MHD_HTTP_CREATED, "application/json", txt ? txt : "{}", txt ? strlen(txt) : 2);
  free(txt);
  return ret;
}

/* POST /api/v1/repair/pause|resume?dataset=NAME (bearer token): holds or releases the automatic
 * repair of a dataset (or of every dataset without ?dataset=). */
static enum MHD_Result repair_control(struct MHD_Connection *c, cvg_monitor *m, int pause) {
  const cvg_catalog *cat = cvg_monitor_catalog(m);
  if (!cat->api_token)
    return reply_error(c, MHD_HTTP_FORBIDDEN,
                       "repair control is off: set api.token or api.token_file in the catalog");
  const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
  if (!token_ok(auth, cat->api_token))
    return reply_error(c, MHD_HTTP_UNAUTHORIZED,
                       "missing or wrong bearer token (Authorization: Bearer TOKEN)");
  const char *ds = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "dataset");
  int n = cvg_monitor_repair_pause(m, ds && *ds ? ds : NULL, pause);
  if (n < 0)
    return reply_error(c, MHD_HTTP_NOT_FOUND, "no dataset of that name");
  char body[160];
  snprintf(body, sizeof body, "{\"paused\": %s, \"datasets\": %d}", pause ? "true" : "false", n);
  return reply(c, MHD_HTTP_OK, "application/json", body, strlen(body));
}

static enum MHD_Result get_events(struct MHD_Connection *c, cvg_monitor *m) {
  const cvg_catalog *cat = cvg_monitor_catalog(m);
  const char *since_s = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "since");
  const char *dataset = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "dataset");
  double since = 0;
  if (since_s && cvg_parse_time(since_s, &since) != 0)
    return reply_error(c, MHD_HTTP_BAD_REQUEST,
                       "since must be RFC 3339, e.g. 2026-11-26T00:00:00Z");
  cvg_event *evs = calloc(EVENTS_LIST_MAX, sizeof *evs);
  if (!evs)
    return reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
  size_t n = 0;
  cvg_error e;
  cvg_error_clear(&e);
  if (cvg_event_list(cat->alerting.state_file, since, 1e18, dataset && *dataset ? dataset : NULL,
                     evs, EVENTS_LIST_MAX, &n, &e) != CVG_OK) {
    free(evs);
    return reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, e.msg);
  }
  json_t *arr = json_array();
  for (size_t i = 0; arr && i < n; i++)
    json_array_append_new(arr, json_pack("{s:I, s:o, s:s, s:s, s:s, s:s}", "id",
                                         (json_int_t)evs[i].id, "time", cvg_json_time(evs[i].at),
                                         "kind", evs[i].kind, "dataset", evs[i].dataset, "text",
                                         evs[i].text, "source", evs[i].source));
  free(evs);
  json_t *root = json_pack("{s:o}", "events", arr ? arr : json_array());
  char *txt = root ? json_dumps(root, JSON_INDENT(2)) : NULL;
  json_decref(root);
  enum MHD_Result ret =
      reply(c, MHD_HTTP_OK, "application/json", txt ? txt : "{}", txt ? strlen(txt) : 2);
  free(txt);
  return ret;
}

static enum MHD_Result runbook(struct MHD_Connection *c, const char *name) {
  for (size_t i = 0; i < cvg_runbook_n_pages; i++)
    if (strcmp(cvg_runbook_pages[i].name, name) == 0)
      return reply(c, MHD_HTTP_OK, "text/markdown; charset=utf-8", cvg_runbook_pages[i].text,
                   strlen(cvg_runbook_pages[i].text));
  return reply_error(c, MHD_HTTP_NOT_FOUND, "no runbook of that name; see /runbooks/");
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe) {
  (void)cls;
  (void)c;
  (void)toe;
  if (*con_cls && *con_cls != &get_marker)
    free(*con_cls);
  *con_cls = NULL;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls) {
  (void)version;
  (void)upload;
  cvg_http *h = cls;
  int repair_ctl =
      strcmp(url, "/api/v1/repair/pause") == 0 || strcmp(url, "/api/v1/repair/resume") == 0;
  int post = strcmp(method, "POST") == 0 && (strcmp(url, "/api/v1/events") == 0 || repair_ctl);
  if (!*con_cls) { /* first call of a request: wait for the whole header */
    if (post) {
      req *r = calloc(1, sizeof *r);
      if (!r)
        return MHD_NO;
      *con_cls = r;
    } else {
      *con_cls = &get_marker;
    }
    return MHD_YES;
  }
  if (*upload_size) {
    if (*con_cls == &get_marker) /* only POST /api/v1/events takes a body */
      return MHD_NO;
    req *r = *con_cls;
    if (r->len + *upload_size > BODY_MAX)
      r->too_big = 1;
    else {
      memcpy(r->body + r->len, upload, *upload_size);
      r->len += *upload_size;
    }
    *upload_size = 0;
    return MHD_YES;
  }
  if (post) {
    pthread_rwlock_rdlock(&h->lock);
    enum MHD_Result ret =
        !h->m        ? reply_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "the monitor is (re)starting")
        : repair_ctl ? repair_control(c, h->m, strcmp(url, "/api/v1/repair/pause") == 0)
                     : post_event(c, h->m, *con_cls);
    pthread_rwlock_unlock(&h->lock);
    return ret;
  }
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
    return reply_error(c, MHD_HTTP_METHOD_NOT_ALLOWED,
                       "only GET and HEAD are served (and POST on /api/v1/events)");
  if (strcmp(url, "/") == 0) { /* a browser goes to the dashboard, anything else gets the list */
    const char *accept = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Accept");
    if (accept && strstr(accept, "text/html"))
      return redirect(c, MHD_HTTP_FOUND, "/dashboard/");
    return reply(c, MHD_HTTP_OK, "text/plain; charset=utf-8", index_text, sizeof index_text - 1);
  }
  if (strncmp(url, "/dashboard", 10) == 0 && (url[10] == '\0' || url[10] == '/'))
    return dashboard_file(c, url);
  if (strncmp(url, "/runbooks/", 10) == 0)
    return runbook(c, url + 10);
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
             strcmp(url, "/api/v1/divergences") != 0 && strcmp(url, "/api/v1/alerts") != 0 &&
             strcmp(url, "/api/v1/events") != 0 && strcmp(url, "/api/v1/hotspots") != 0) {
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
  } else if (strcmp(url, "/api/v1/alerts") == 0) {
    const char *fp = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "fingerprint");
    int rc = cvg_monitor_alerts_json(m, fp && *fp ? fp : NULL, &b);
    ret = rc ? reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, cvg_strerror(rc))
             : reply(c, MHD_HTTP_OK, "application/json", b.data, b.len);
  } else if (strcmp(url, "/api/v1/events") == 0) {
    ret = get_events(c, m);
  } else if (strcmp(url, "/api/v1/hotspots") == 0) {
    const char *ds = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "dataset");
    int rc = cvg_monitor_hotspots_json(m, ds && *ds ? ds : NULL, &b);
    ret = rc == CVG_ENOENT ? reply_error(c, MHD_HTTP_NOT_FOUND, "no dataset of that name")
          : rc             ? reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, cvg_strerror(rc))
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
                          MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
                          MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_END);
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
