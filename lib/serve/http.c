/* SPDX-License-Identifier: MIT */
/*
 * The HTTP server (serve.h) on libmicrohttpd's internal polling thread, with a reaper thread of
 * ours that cuts connections past their deadline (conns.c). Each request is answered in full
 * from one rendered buffer (bounded by RESPONSE_MAX). The polling thread never waits on a
 * database: event reads and writes are suspended requests whose jobs run on the state-file
 * worker (lib/watch/writeq.c). A read-write lock lets a reload swap the monitor while requests
 * are in flight.
 *
 * Limits, so that no client can make /metrics and /healthz wait: CONN_MAX connections, at most
 * half of them from one address, REQUEST_DEADLINE seconds per request whatever the client sends,
 * IDLE_TIMEOUT seconds of silence, 64 KiB of memory per connection. Served on a loopback address,
 * only Host names that mean this machine are answered (a browser led to a DNS-rebinding name is
 * refused), plus the host of alerting.external_url.
 */
#include "converge/serve.h"
#include "converge/catalog.h"
#include "converge/alert.h"
#include "converge/encode.h"
#include "converge/json.h"
#include "converge/mclock.h"
#include "converge/watch.h"
#include "conns.h"
#include "converge/writeq.h"

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
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#define RESPONSE_MAX (64u << 20) /* largest response rendered */
#define BODY_MAX (16u << 10)     /* largest request body accepted (POST /api/v1/events) */
#define CONN_MAX 512             /* connections at once (fewer when the descriptor limit is low) */
#define REQUEST_DEADLINE 10.0    /* seconds a request may take, activity or not */
#define IDLE_TIMEOUT 10          /* seconds of silence before a connection is closed */
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

/* A request with a body, collected over several calls of the handler, or one whose answer
 * comes from the state-file worker (job). */
typedef struct req {
  size_t len;
  int too_big;
  int submitted; /* job queued; the request is suspended until it is done */
  int held_now;  /* a repair pause: the datasets it held at once, before it was recorded */
  cvg_write_job job;
  char body[BODY_MAX + 1];
} req;

static int get_marker;      /* con_cls of requests without a body */
static int get_body_marker; /* ... of a GET that came with one: refused once it is read */

struct cvg_http {
  struct MHD_Daemon *d;  /* OWNED */
  pthread_rwlock_t lock; /* guards m */
  cvg_monitor *m;        /* BORROWED */
  unsigned port;         /* bound port */
  int loopback;          /* listening on a loopback address: Host names are checked */
  cvgi_conns *conns;     /* OWNED */
  cvg_writeq *q;         /* OWNED */
  pthread_t reaper;      /* cuts connections past their deadline */
  pthread_mutex_t stop_mu;
  pthread_cond_t stop_cv; /* monotonic */
  int stop;               /* guarded by stop_mu */
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
    "  /api/v1/confirmations keys confirmed recently, each as it was then: "
    "?dataset=&after=SEQ&limit=\n"
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

static enum MHD_Result confirmations(struct MHD_Connection *c, cvg_monitor *m, cvg_buf *b) {
  const char *dataset = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "dataset");
  const char *after_s = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "after");
  const char *limit_s = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit");
  unsigned long after = 0, limit = DIVERGENCES_DEFAULT;
  if (after_s && parse_ulong(after_s, 9007199254740991ul, &after) != 0)
    return reply_error(c, MHD_HTTP_BAD_REQUEST,
                       "after must be a sequence number (0, or the last seq you saw)");
  if (limit_s && parse_ulong(limit_s, DIVERGENCES_MAX, &limit) != 0)
    return reply_error(c, MHD_HTTP_BAD_REQUEST, "limit must be a whole number from 0 to 10000");
  if (dataset && !*dataset)
    dataset = NULL;
  int rc = cvg_monitor_confirmations_json(m, dataset, (uint64_t)after, (size_t)limit, b);
  if (rc == CVG_ENOENT)
    return reply_error(c, MHD_HTTP_NOT_FOUND, "no dataset of that name in the catalog");
  if (rc)
    return reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, cvg_strerror(rc));
  return reply(c, MHD_HTTP_OK, "application/json", b->data, b->len);
}

/* Constant-time comparison of the presented bearer token with the catalog's. The scheme's name
 * is case-insensitive (RFC 9110), the spaces after it any number. */
static int token_ok(const char *header, const char *token) {
  if (!header || strncasecmp(header, "Bearer ", 7) != 0)
    return 0;
  const char *got = header + 7;
  while (*got == ' ')
    got++;
  size_t gl = strlen(got), tl = strlen(token);
  unsigned char diff = (unsigned char)(gl != tl);
  for (size_t i = 0; i < tl; i++)
    diff |= (unsigned char)(token[i] ^ (i < gl ? got[i] : 0));
  return diff == 0;
}

static void wake(void *c) {
  MHD_resume_connection(c);
}

static cvgi_conn *conn_of(struct MHD_Connection *c) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  return ci ? ci->socket_context : NULL;
}

/* Hands r's job to the state-file worker and suspends the request until it is done: CVG_OK,
 * CVG_ENOMEM, or CVG_EBUSY when too many jobs wait. */
static int submit_job(struct MHD_Connection *c, cvg_http *h, req *r, const char *path) {
  if (!(r->job.path = strdup(path)))
    return CVG_ENOMEM;
  r->job.wake = wake;
  r->job.wake_arg = c;
  MHD_suspend_connection(c); /* before the worker can resume it */
  if (cvg_writeq_submit(h->q, &r->job) != CVG_OK) {
    MHD_resume_connection(c);
    return CVG_EBUSY;
  }
  r->submitted = 1;
  cvgi_conn_suspend(h->conns, conn_of(c), 1);
  return CVG_OK;
}

static enum MHD_Result submit(struct MHD_Connection *c, cvg_http *h, req *r, const char *path) {
  int rc = submit_job(c, h, r, path);
  if (rc == CVG_ENOMEM)
    return reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
  if (rc != CVG_OK)
    return reply_error(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                       "too many requests are waiting for the state file; retry shortly");
  return MHD_YES;
}

/* The answer of a request whose job is done. */
static enum MHD_Result job_reply(struct MHD_Connection *c, req *r) {
  cvg_write_job *j = &r->job;
  if (j->rc != CVG_OK)
    return reply_error(
        c, j->rc == CVG_EBUSY ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_INTERNAL_SERVER_ERROR,
        j->err.msg[0] ? j->err.msg : cvg_strerror(j->rc));
  json_t *root;
  if (j->kind == CVG_WRITE_EVENT_ADD) {
    root = json_pack("{s:I, s:o}", "id", (json_int_t)j->ev.id, "time", cvg_json_time(j->ev.at));
  } else {
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < j->n; i++)
      json_array_append_new(
          arr, json_pack("{s:I, s:o, s:s, s:s, s:s, s:s}", "id", (json_int_t)j->evs[i].id, "time",
                         cvg_json_time(j->evs[i].at), "kind", j->evs[i].kind, "dataset",
                         j->evs[i].dataset, "text", j->evs[i].text, "source", j->evs[i].source));
    root = json_pack("{s:o}", "events", arr ? arr : json_array());
  }
  char *txt = root
                  ? json_dumps(root, j->kind == CVG_WRITE_EVENT_ADD ? JSON_COMPACT : JSON_INDENT(2))
                  : NULL;
  json_decref(root);
  enum MHD_Result ret = reply(c, j->kind == CVG_WRITE_EVENT_ADD ? MHD_HTTP_CREATED : MHD_HTTP_OK,
                              "application/json", txt ? txt : "{}", txt ? strlen(txt) : 2);
  free(txt);
  return ret;
}

static enum MHD_Result post_event(struct MHD_Connection *c, cvg_http *h, cvg_monitor *m, req *r) {
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
  if (!tv)
    ev.at = cvg_wall_now();
  snprintf(ev.kind, sizeof ev.kind, "%s", kind);
  snprintf(ev.text, sizeof ev.text, "%s", text);
  snprintf(ev.dataset, sizeof ev.dataset, "%s", json_is_string(dsv) ? json_string_value(dsv) : "");
  snprintf(ev.source, sizeof ev.source, "api");
  json_decref(o);
  r->job.kind = CVG_WRITE_EVENT_ADD;
  r->job.ev = ev;
  return submit(c, h, r, cat->alerting.state_file);
}

/* The answer to a repair pause or resume: {"paused", "datasets", "recorded"}, and a warning when
 * the hold could not be recorded. */
static enum MHD_Result pause_reply(struct MHD_Connection *c, int pause, int n, const char *why) {
  json_t *o = json_pack("{s:b, s:i, s:b}", "paused", pause, "datasets", n, "recorded", !why);
  if (o && why) {
    char w[1200];
    snprintf(w, sizeof w,
             "held in memory only, so a reload or restart releases it: the state file did not "
             "record it (%s)",
             why);
    json_object_set_new(o, "warning", json_string(w));
  }
  char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  if (!body)
    return reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
  enum MHD_Result ret = reply(c, MHD_HTTP_OK, "application/json", body, strlen(body));
  free(body);
  return ret;
}

/* Run by the state-file worker once a pause or resume is recorded: applies it to the monitor
 * served now, in the order of the records, so that memory ends as the file says. A resume that
 * was not recorded is not applied (the hold stays, as the file says). */
static void pause_after(cvg_write_job *j, void *arg) {
  cvg_http *h = arg;
  if (j->rc != CVG_OK && !j->pause) {
    j->applied = -3;
    return;
  }
  pthread_rwlock_rdlock(&h->lock);
  j->applied =
      h->m ? cvg_monitor_repair_pause(h->m, j->dataset[0] ? j->dataset : NULL, j->pause) : -2;
  pthread_rwlock_unlock(&h->lock);
}

/* POST /api/v1/repair/pause|resume?dataset=NAME (bearer token): holds or releases the automatic
 * repair of a dataset (or of every dataset without ?dataset=). The hold is recorded in the state
 * file by the watch's worker, which then applies it (pause_after), so that a reload or restart
 * keeps it (the reload re-reads the holds once the new monitor is served). A pause takes hold at
 * once as well, the safe side, even when the state file is slow or cannot record it; a resume
 * waits for its record. */
static enum MHD_Result repair_control(struct MHD_Connection *c, cvg_http *h, cvg_monitor *m, req *r,
                                      int pause) {
  const cvg_catalog *cat = cvg_monitor_catalog(m);
  if (!cat->api_token)
    return reply_error(c, MHD_HTTP_FORBIDDEN,
                       "repair control is off: set api.token or api.token_file in the catalog");
  const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
  if (!token_ok(auth, cat->api_token))
    return reply_error(c, MHD_HTTP_UNAUTHORIZED,
                       "missing or wrong bearer token (Authorization: Bearer TOKEN)");
  const char *ds = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "dataset");
  if (ds && !*ds)
    ds = NULL;
  if (ds && strlen(ds) >= sizeof r->job.dataset)
    return reply_error(c, MHD_HTTP_NOT_FOUND, "no dataset of that name");
  if (pause && (r->held_now = cvg_monitor_repair_pause(m, ds, 1)) < 0)
    return reply_error(c, MHD_HTTP_NOT_FOUND, "no dataset of that name");
  if (!pause) { /* nothing changes before the record: only check the name */
    size_t i = 0;
    while (ds && i < cat->n_datasets && strcmp(cat->datasets[i].name, ds) != 0)
      i++;
    if (ds && i == cat->n_datasets)
      return reply_error(c, MHD_HTTP_NOT_FOUND, "no dataset of that name");
  }
  r->job.kind = CVG_WRITE_REPAIR_PAUSE;
  r->job.pause = pause;
  r->job.at = cvg_wall_now();
  r->job.after = pause_after;
  r->job.after_arg = h;
  snprintf(r->job.dataset, sizeof r->job.dataset, "%s", ds ? ds : "");
  int rc = submit_job(c, h, r, cat->alerting.state_file);
  if (rc == CVG_OK)
    return MHD_YES;
  const char *why =
      rc == CVG_EBUSY ? "too many requests are waiting for the state file" : "out of memory";
  if (pause)
    return pause_reply(c, 1, r->held_now, why);
  return reply_error(
      c, MHD_HTTP_SERVICE_UNAVAILABLE,
      rc == CVG_EBUSY ? "too many requests are waiting for the state file; retry shortly" : why);
}

/* The answer of a repair pause or resume once the worker recorded and applied it. */
static enum MHD_Result repair_applied(struct MHD_Connection *c, req *r) {
  const cvg_write_job *j = &r->job;
  if (j->applied == -3) /* a resume not recorded: not applied */
    return reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, j->err.msg);
  if (j->applied == -2 && !j->pause) /* recorded; the reload's new monitor reads it */
    return reply_error(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                       "recorded, and applied by the monitor that is (re)starting; check "
                       "/api/v1/status");
  if (j->applied == -1) /* the dataset left the catalog in a reload meanwhile */
    return reply_error(c, MHD_HTTP_NOT_FOUND, "no dataset of that name");
  int n = j->applied >= 0 ? j->applied : r->held_now;
  return pause_reply(c, j->pause, n, j->rc == CVG_OK ? NULL : j->err.msg);
}

static enum MHD_Result get_events(struct MHD_Connection *c, cvg_http *h, cvg_monitor *m, req *r) {
  const cvg_catalog *cat = cvg_monitor_catalog(m);
  const char *since_s = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "since");
  const char *dataset = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "dataset");
  double since = 0;
  if (since_s && cvg_parse_time(since_s, &since) != 0)
    return reply_error(c, MHD_HTTP_BAD_REQUEST,
                       "since must be RFC 3339, e.g. 2026-11-26T00:00:00Z");
  if (dataset && strlen(dataset) >= sizeof r->job.dataset)
    return reply_error(c, MHD_HTTP_BAD_REQUEST, "no dataset of that name");
  r->job.kind = CVG_WRITE_EVENT_LIST;
  r->job.since = since;
  snprintf(r->job.dataset, sizeof r->job.dataset, "%s", dataset ? dataset : "");
  return submit(c, h, r, cat->alerting.state_file);
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
  (void)toe;
  if (*con_cls && *con_cls != &get_marker && *con_cls != &get_body_marker) {
    cvg_write_job_release(&((req *)*con_cls)->job);
    free(*con_cls);
  }
  *con_cls = NULL;
  cvgi_conn_request_done(((cvg_http *)cls)->conns, conn_of(c));
}

static void connection_event(void *cls, struct MHD_Connection *c, void **socket_context,
                             enum MHD_ConnectionNotificationCode code) {
  cvg_http *h = cls;
  if (code == MHD_CONNECTION_NOTIFY_STARTED) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    *socket_context = ci ? cvgi_conn_open(h->conns, ci->connect_fd) : NULL;
  } else {
    cvgi_conn_close(h->conns, *socket_context);
    *socket_context = NULL;
  }
}

/* Served on loopback, is the Host header a name of this machine (or of external_url)? A page on
 * attacker.example whose name was rebound to 127.0.0.1 sends its own name and is refused. */
static int host_ok(const cvg_http *h, struct MHD_Connection *c, const cvg_monitor *m) {
  if (!h->loopback)
    return 1;
  const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
  if (!host)
    return 1; /* HTTP/1.0 without Host: no browser */
  size_t n = host[0] == '[' ? strcspn(host, "]") + 1 : strcspn(host, ":");
  if (host[n] && (host[n] != ':' || strspn(host + n + 1, "0123456789") != strlen(host + n + 1)))
    return 0;
  if ((n == 9 && strncasecmp(host, "localhost", 9) == 0) ||
      (n == 5 && memcmp(host, "[::1]", 5) == 0))
    return 1;
  char name[64];
  struct in_addr a;
  if (n < sizeof name) {
    memcpy(name, host, n);
    name[n] = '\0';
    if (inet_pton(AF_INET, name, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127)
      return 1;
  }
  const char *ext = m ? cvg_monitor_catalog(m)->alerting.external_url : NULL;
  const char *eh = ext ? strstr(ext, "://") : NULL;
  if (eh) {
    eh += 3;
    size_t en = eh[0] == '[' ? strcspn(eh, "]") + 1 : strcspn(eh, ":/");
    if (en == n && strncasecmp(eh, host, n) == 0)
      return 1;
  }
  return 0;
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
  int events_get = (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) &&
                   strcmp(url, "/api/v1/events") == 0;
  if (!*con_cls) { /* first call of a request: wait for the whole header */
    if (post || events_get) {
      req *r = calloc(1, sizeof *r);
      if (!r)
        return MHD_NO;
      *con_cls = r;
    } else {
      *con_cls = &get_marker;
    }
    return MHD_YES;
  }
  if (*con_cls != &get_marker && *con_cls != &get_body_marker && ((req *)*con_cls)->submitted) {
    cvgi_conn_suspend(h->conns, conn_of(c), 0); /* resumed: the worker is done with the job */
    req *r = *con_cls;
    return r->job.kind == CVG_WRITE_REPAIR_PAUSE ? repair_applied(c, r) : job_reply(c, r);
  }
  if (*upload_size) {
    if (*con_cls == &get_marker || *con_cls == &get_body_marker || events_get) {
      if (events_get) { /* the req is not needed to refuse it */
        free(*con_cls);
      }
      *con_cls = &get_body_marker; /* read and dropped, then refused */
      *upload_size = 0;
      return MHD_YES;
    }
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
  if (*con_cls == &get_body_marker)
    return reply_error(c, MHD_HTTP_BAD_REQUEST,
                       "this endpoint takes no request body (only POST /api/v1/events does)");
  pthread_rwlock_rdlock(&h->lock);
  int host_good = host_ok(h, c, h->m);
  pthread_rwlock_unlock(&h->lock);
  if (!host_good)
    return reply_error(c, 421,
                       "the Host header names another server: on a loopback address converge "
                       "answers to localhost, 127.0.0.1 and [::1] only (a DNS-rebinding guard); "
                       "for another name set alerting.external_url");
  if (post) {
    pthread_rwlock_rdlock(&h->lock);
    enum MHD_Result ret =
        !h->m ? reply_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "the monitor is (re)starting")
        : repair_ctl
            ? repair_control(c, h, h->m, *con_cls, strcmp(url, "/api/v1/repair/pause") == 0)
            : post_event(c, h, h->m, *con_cls);
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
             strcmp(url, "/api/v1/events") != 0 && strcmp(url, "/api/v1/hotspots") != 0 &&
             strcmp(url, "/api/v1/confirmations") != 0) {
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
    ret = get_events(c, h, m, *con_cls);
  } else if (strcmp(url, "/api/v1/hotspots") == 0) {
    const char *ds = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "dataset");
    int rc = cvg_monitor_hotspots_json(m, ds && *ds ? ds : NULL, &b);
    ret = rc == CVG_ENOENT ? reply_error(c, MHD_HTTP_NOT_FOUND, "no dataset of that name")
          : rc             ? reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, cvg_strerror(rc))
                           : reply(c, MHD_HTTP_OK, "application/json", b.data, b.len);
  } else if (strcmp(url, "/api/v1/confirmations") == 0) {
    ret = confirmations(c, m, &b);
  } else {
    ret = divergences(c, m, &b);
  }
  cvg_buf_release(&b);
  pthread_rwlock_unlock(&h->lock);
  return ret;
}

static void *reaper(void *arg);

static int is_loopback(const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET)
    return (ntohl(((const struct sockaddr_in *)(const void *)sa)->sin_addr.s_addr) >> 24) == 127;
  if (sa->sa_family == AF_INET6)
    return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr);
  return 0;
}

/* CONN_MAX, or fewer when the process may not open that many descriptors besides its own. */
static unsigned conn_limit(void) {
  struct rlimit rl;
  unsigned limit = CONN_MAX;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
      rl.rlim_cur < (rlim_t)CONN_MAX + 256)
    limit = rl.rlim_cur > 320 ? (unsigned)rl.rlim_cur - 256 : 64;
  return limit;
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
  h->loopback = is_loopback(ai->ai_addr);
  pthread_mutex_init(&h->stop_mu, NULL);
  cvg_cond_init_monotonic(&h->stop_cv);
  if (!(h->conns = cvgi_conns_new(REQUEST_DEADLINE)) || cvg_writeq_start(&h->q, err) != CVG_OK) {
    freeaddrinfo(ai);
    cvgi_conns_free(h->conns);
    pthread_rwlock_destroy(&h->lock);
    free(h);
    return err && err->status ? err->status
                              : cvg_error_set(err, CVG_ENOMEM, listen, "out of memory");
  }
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_ALLOW_SUSPEND_RESUME;
  if (ai->ai_family == AF_INET6)
    flags |= MHD_USE_IPv6;
  unsigned limit = conn_limit();
  h->d = MHD_start_daemon(
      flags, (uint16_t)port, NULL, NULL, handle, h, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
      MHD_OPTION_CONNECTION_LIMIT, limit, MHD_OPTION_PER_IP_CONNECTION_LIMIT, limit / 2,
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)IDLE_TIMEOUT, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
      (size_t)(64 * 1024), MHD_OPTION_NOTIFY_COMPLETED, completed, h, MHD_OPTION_NOTIFY_CONNECTION,
      connection_event, h, MHD_OPTION_END);
  freeaddrinfo(ai);
  int e = errno;
  if (h->d && pthread_create(&h->reaper, NULL, reaper, h) != 0) {
    MHD_stop_daemon(h->d);
    h->d = NULL;
    e = EAGAIN;
  }
  if (!h->d) {
    cvg_writeq_stop(h->q);
    cvgi_conns_free(h->conns);
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

/* The reaper thread: every 100 ms, the connections past their deadline are cut. */
static void *reaper(void *arg) {
  cvg_http *h = arg;
  pthread_mutex_lock(&h->stop_mu);
  while (!h->stop) {
    struct timespec ts;
    cvg_deadline_after(&ts, 0.1);
    pthread_cond_timedwait(&h->stop_cv, &h->stop_mu, &ts);
    if (!h->stop) {
      pthread_mutex_unlock(&h->stop_mu);
      cvgi_conns_reap(h->conns);
      pthread_mutex_lock(&h->stop_mu);
    }
  }
  pthread_mutex_unlock(&h->stop_mu);
  return NULL;
}

void cvg_http_stop(cvg_http *h) {
  if (!h)
    return;
  pthread_mutex_lock(&h->stop_mu);
  h->stop = 1;
  pthread_cond_signal(&h->stop_cv);
  pthread_mutex_unlock(&h->stop_mu);
  pthread_join(h->reaper, NULL);
  cvg_writeq_stop(h->q); /* before the daemon: no resume of a closed connection */
  MHD_stop_daemon(h->d);
  cvgi_conns_free(h->conns);
  pthread_cond_destroy(&h->stop_cv);
  pthread_mutex_destroy(&h->stop_mu);
  pthread_rwlock_destroy(&h->lock);
  free(h);
}
