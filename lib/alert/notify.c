/* SPDX-License-Identifier: MIT */
/*
 * Alert delivery (libcurl). One thread drains a bounded queue; each queued delivery goes to every
 * receiver: each Alertmanager gets POST {url}/api/v2/alerts with the postable alerts (every
 * member of an HA pair is sent to, as Prometheus does), each webhook gets an Alertmanager-webhook
 * shaped document, and the JSON-lines log gets one line per state change. A failed post is
 * retried with backoff (0.5 s, 1 s, 2 s) and then counted as failed; the next resend carries the
 * alert again anyway. Each receiver has its own queue and thread, so a dead member of an HA pair
 * delays nobody but itself; when more than queue_size alerts wait for a receiver, its oldest
 * deliveries are dropped and counted. The monitor never waits for a receiver.
 */
#include "notify.h"

#include "converge/mclock.h"
#include "converge/json.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct item {
  char *body; /* OWNED; what this receiver gets */
  size_t len, n_alerts;
  struct item *next;
} item;

/* One receiver, with its own queue and thread: a dead or slow receiver delays only itself. */
typedef struct receiver {
  struct cvg_notifier *n;
  int kind;         /* 0 alertmanager, 1 webhook, 2 log */
  char url[600];    /* where to post (log: the file) */
  uint64_t sent;    /* deliveries that succeeded */
  uint64_t failed;  /* deliveries that failed after every retry */
  uint64_t dropped; /* alerts dropped from a full queue */
  char last_error[256];
  double last_ok;
  CURL *curl; /* OWNED; used by the receiver's thread only */
  item *head, *tail;
  size_t queued_alerts;
  int busy, started;
  pthread_t th;
} receiver;

struct cvg_notifier {
  const cvg_catalog *cat;
  cvg_logger *lg;
  receiver *rv; /* OWNED */
  size_t n_rv;
  pthread_mutex_t mu; /* guards every receiver's queue and counters, and stopping */
  pthread_cond_t cv, idle_cv;
  int stopping;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init(void) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t discard(char *p, size_t size, size_t n, void *ud) {
  (void)p;
  (void)ud;
  return size * n;
}

static void item_free(item *it) {
  if (!it)
    return;
  free(it->body);
  free(it);
}

/* One POST; 0 on a 2xx answer. */
static int post(cvg_notifier *n, receiver *r, const char *body) {
  if (!r->curl && !(r->curl = curl_easy_init())) {
    snprintf(r->last_error, sizeof r->last_error, "out of memory");
    return -1;
  }
  CURL *c = r->curl;
  struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
  curl_easy_setopt(c, CURLOPT_URL, r->url);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(n->cat->alerting.timeout * 1000));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)(n->cat->alerting.timeout * 1000));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "converge");
  CURLcode cc = curl_easy_perform(c);
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  curl_slist_free_all(hdr);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
  if (cc != CURLE_OK) {
    snprintf(r->last_error, sizeof r->last_error, "%s", curl_easy_strerror(cc));
    return -1;
  }
  if (code < 200 || code > 299) {
    snprintf(r->last_error, sizeof r->last_error, "HTTP status %ld", code);
    return -1;
  }
  return 0;
}

static int append_log(receiver *r, const char *data, size_t len) {
  int fd = open(r->url, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    snprintf(r->last_error, sizeof r->last_error, "%s", strerror(errno));
    return -1;
  }
  size_t off = 0;
  while (off < len) {
    ssize_t w = write(fd, data + off, len - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      snprintf(r->last_error, sizeof r->last_error, "%s", strerror(errno));
      close(fd);
      return -1;
    }
    off += (size_t)w;
  }
  close(fd);
  return 0;
}

/* Sleeps up to s seconds unless the notifier stops; 1 when stopping. */
static int nap(cvg_notifier *n, double s) {
  struct timespec ts;
  cvg_deadline_after(&ts, s);
  pthread_mutex_lock(&n->mu);
  while (!n->stopping && pthread_cond_timedwait(&n->cv, &n->mu, &ts) != ETIMEDOUT)
    ;
  int st = n->stopping;
  pthread_mutex_unlock(&n->mu);
  return st;
}

static void deliver(cvg_notifier *n, receiver *r, item *it) {
  static const double backoff[] = {0.5, 1, 2};
  int ok = -1;
  for (size_t attempt = 0; attempt <= 3; attempt++) {
    ok = r->kind == 2 ? append_log(r, it->body, it->len) : post(n, r, it->body);
    if (ok == 0 || attempt == 3)
      break;
    if (nap(n, backoff[attempt]))
      break; /* stopping: no more retries */
  }
  double now = cvg_wall_now();
  pthread_mutex_lock(&n->mu);
  if (ok == 0) {
    r->sent++;
    r->last_ok = now;
  } else {
    r->failed++;
  }
  pthread_mutex_unlock(&n->mu);
  if (ok != 0)
    cvg_log(n->lg, CVG_LOG_WARN, "alert_delivery_failed", "receiver",
            r->kind == 0   ? "alertmanager"
            : r->kind == 1 ? "webhook"
                           : "log",
            "url", r->url, "error", r->last_error, (const char *)NULL);
}

static void *receiver_main(void *arg) {
  receiver *r = arg;
  cvg_notifier *n = r->n;
  pthread_mutex_lock(&n->mu);
  for (;;) {
    while (!r->head && !n->stopping)
      pthread_cond_wait(&n->cv, &n->mu);
    if (n->stopping)
      break; /* what is queued is re-sent by the next start: the state file keeps the alerts */
    item *it = r->head;
    r->head = it->next;
    if (!r->head)
      r->tail = NULL;
    r->queued_alerts -= it->n_alerts;
    r->busy = 1;
    pthread_mutex_unlock(&n->mu);
    deliver(n, r, it);
    item_free(it);
    pthread_mutex_lock(&n->mu);
    r->busy = 0;
    pthread_cond_broadcast(&n->idle_cv);
  }
  pthread_mutex_unlock(&n->mu);
  return NULL;
}

int cvg_notifier_new(cvg_notifier **out, const cvg_catalog *cat, cvg_logger *lg, cvg_error *err) {
  *out = NULL;
  const cvg_cat_alerting *al = &cat->alerting;
  cvg_notifier *n = calloc(1, sizeof *n);
  size_t nr = al->n_alertmanagers + al->n_webhooks + (al->log_file ? 1 : 0);
  if (!n || !(n->rv = calloc(nr ? nr : 1, sizeof *n->rv))) {
    free(n);
    return cvg_error_set(err, CVG_ENOMEM, "alerting", "out of memory");
  }
  n->cat = cat;
  n->lg = lg;
  pthread_mutex_init(&n->mu, NULL);
  cvg_cond_init_monotonic(&n->cv);
  cvg_cond_init_monotonic(&n->idle_cv);
  pthread_once(&curl_once, curl_init);
  for (size_t i = 0; i < al->n_alertmanagers; i++) {
    const char *u = al->alertmanagers[i];
    size_t l = strlen(u);
    while (l && u[l - 1] == '/')
      l--;
    n->rv[n->n_rv].kind = 0;
    snprintf(n->rv[n->n_rv++].url, sizeof n->rv[0].url, "%.*s/api/v2/alerts", (int)l, u);
  }
  for (size_t i = 0; i < al->n_webhooks; i++) {
    n->rv[n->n_rv].kind = 1;
    snprintf(n->rv[n->n_rv++].url, sizeof n->rv[0].url, "%s", al->webhooks[i]);
  }
  if (al->log_file) {
    n->rv[n->n_rv].kind = 2;
    snprintf(n->rv[n->n_rv++].url, sizeof n->rv[0].url, "%s", al->log_file);
  }
  for (size_t i = 0; i < n->n_rv; i++) {
    n->rv[i].n = n;
    if (pthread_create(&n->rv[i].th, NULL, receiver_main, &n->rv[i]) != 0) {
      cvg_notifier_free(n);
      return cvg_error_set(err, CVG_EIO, "alerting", "cannot start a delivery thread");
    }
    n->rv[i].started = 1;
  }
  *out = n;
  return CVG_OK;
}

void cvg_notifier_free(cvg_notifier *n) {
  if (!n)
    return;
  pthread_mutex_lock(&n->mu);
  n->stopping = 1;
  pthread_cond_broadcast(&n->cv);
  pthread_mutex_unlock(&n->mu);
  for (size_t i = 0; i < n->n_rv; i++) {
    receiver *r = &n->rv[i];
    if (r->started)
      pthread_join(r->th, NULL);
    while (r->head) {
      item *it = r->head;
      r->head = it->next;
      item_free(it);
    }
    if (r->curl)
      curl_easy_cleanup(r->curl);
  }
  free(n->rv);
  pthread_mutex_destroy(&n->mu);
  pthread_cond_destroy(&n->cv);
  pthread_cond_destroy(&n->idle_cv);
  free(n);
}

/* Queues body for receiver r (n->mu held), dropping the oldest when too many alerts wait. */
static void enqueue(cvg_notifier *n, receiver *r, const char *body, size_t len, size_t n_alerts) {
  item *it = calloc(1, sizeof *it);
  if (!it || !(it->body = malloc(len + 1))) {
    free(it);
    r->dropped += n_alerts;
    return;
  }
  memcpy(it->body, body, len);
  it->body[len] = '\0';
  it->len = len;
  it->n_alerts = n_alerts;
  if (r->tail)
    r->tail->next = it;
  else
    r->head = it;
  r->tail = it;
  r->queued_alerts += n_alerts;
  while (r->queued_alerts > n->cat->alerting.queue_size && r->head != it) {
    item *old = r->head;
    r->head = old->next;
    r->queued_alerts -= old->n_alerts;
    r->dropped += old->n_alerts;
    item_free(old);
  }
}

void cvg_notifier_push(cvg_notifier *n, json_t *am, json_t *hook, const char *log, size_t log_len,
                       double now) {
  if (!n->n_rv)
    return;
  const cvg_cat_alerting *al = &n->cat->alerting;
  size_t n_alerts = json_array_size(am);
  char *am_body = json_dumps(am, JSON_COMPACT);
  int firing = 0;
  size_t i;
  json_t *v;
  json_array_foreach(hook, i, v) {
    const char *s = json_string_value(json_object_get(v, "status"));
    firing |= s && strcmp(s, "firing") == 0;
  }
  json_t *doc = json_pack("{s:s, s:s, s:s, s:O, s:s, s:o}", "version", "4", "receiver", "converge",
                          "status", firing ? "firing" : "resolved", "alerts", hook, "externalURL",
                          al->external_url, "sentAt", cvg_json_time(now));
  char *hook_body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
  json_decref(doc);
  pthread_mutex_lock(&n->mu);
  for (size_t k = 0; k < n->n_rv; k++) {
    receiver *r = &n->rv[k];
    if (r->kind == 0 && am_body)
      enqueue(n, r, am_body, strlen(am_body), n_alerts);
    else if (r->kind == 1 && hook_body)
      enqueue(n, r, hook_body, strlen(hook_body), n_alerts);
    else if (r->kind == 2 && log && log_len)
      enqueue(n, r, log, log_len, 1);
    else if (r->kind != 2)
      r->dropped += n_alerts; /* out of memory */
  }
  pthread_cond_broadcast(&n->cv);
  pthread_mutex_unlock(&n->mu);
  free(am_body);
  free(hook_body);
}

void cvg_notifier_flush(cvg_notifier *n, double timeout) {
  struct timespec ts;
  cvg_deadline_after(&ts, timeout);
  pthread_mutex_lock(&n->mu);
  for (;;) {
    int pending = 0;
    for (size_t i = 0; i < n->n_rv; i++)
      pending |= n->rv[i].head != NULL || n->rv[i].busy;
    if (!pending || pthread_cond_timedwait(&n->idle_cv, &n->mu, &ts) == ETIMEDOUT)
      break;
  }
  pthread_mutex_unlock(&n->mu);
}

static const char *kind_name(int k) {
  return k == 0 ? "alertmanager" : k == 1 ? "webhook" : "log";
}

json_t *cvg_notifier_json(cvg_notifier *n) {
  json_t *arr = json_array();
  pthread_mutex_lock(&n->mu);
  for (size_t i = 0; arr && i < n->n_rv; i++) {
    const receiver *r = &n->rv[i];
    json_t *o =
        json_pack("{s:s, s:s, s:I, s:I, s:I, s:I}", "receiver", kind_name(r->kind), "url", r->url,
                  "sent", (json_int_t)r->sent, "failed", (json_int_t)r->failed, "queued",
                  (json_int_t)r->queued_alerts, "dropped", (json_int_t)r->dropped);
    if (o && r->failed && r->last_error[0])
      json_object_set_new(o, "last_error", json_string(r->last_error));
    if (o && r->last_ok > 0)
      json_object_set_new(o, "last_ok", cvg_json_time(r->last_ok));
    json_array_append_new(arr, o);
  }
  json_t *root = json_pack("{s:o}", "receivers", arr ? arr : json_array());
  pthread_mutex_unlock(&n->mu);
  return root ? root : json_object();
}

int cvg_notifier_metrics(cvg_notifier *n, cvg_buf *b) {
  char line[1024];
  int rc = CVG_OK;
  static const char head[] =
      "# HELP converge_alert_notifications_total Alert deliveries that succeeded, by receiver.\n"
      "# TYPE converge_alert_notifications_total counter\n";
  static const char head2[] = "# HELP converge_alert_notifications_failed_total Alert "
                              "deliveries that failed after every retry, by receiver.\n"
                              "# TYPE converge_alert_notifications_failed_total counter\n";
  pthread_mutex_lock(&n->mu);
  rc |= cvg_buf_append(b, head, sizeof head - 1);
  for (size_t i = 0; i < n->n_rv; i++) {
    int l = snprintf(line, sizeof line,
                     "converge_alert_notifications_total{receiver=\"%s\",url=\"%s\"} %llu\n",
                     kind_name(n->rv[i].kind), n->rv[i].url, (unsigned long long)n->rv[i].sent);
    rc |= cvg_buf_append(b, line, (size_t)l < sizeof line ? (size_t)l : sizeof line - 1);
  }
  rc |= cvg_buf_append(b, head2, sizeof head2 - 1);
  for (size_t i = 0; i < n->n_rv; i++) {
    int l = snprintf(line, sizeof line,
                     "converge_alert_notifications_failed_total{receiver=\"%s\",url=\"%s\"} %llu\n",
                     kind_name(n->rv[i].kind), n->rv[i].url, (unsigned long long)n->rv[i].failed);
    rc |= cvg_buf_append(b, line, (size_t)l < sizeof line ? (size_t)l : sizeof line - 1);
  }
  static const char head3[] =
      "# HELP converge_alert_queue_length Alerts waiting for delivery, by receiver.\n"
      "# TYPE converge_alert_queue_length gauge\n";
  static const char head4[] = "# HELP converge_alert_queue_dropped_total Alerts dropped because "
                              "a receiver's delivery queue was full (oldest first).\n"
                              "# TYPE converge_alert_queue_dropped_total counter\n";
  rc |= cvg_buf_append(b, head3, sizeof head3 - 1);
  for (size_t i = 0; i < n->n_rv; i++) {
    int l =
        snprintf(line, sizeof line, "converge_alert_queue_length{receiver=\"%s\",url=\"%s\"} %zu\n",
                 kind_name(n->rv[i].kind), n->rv[i].url, n->rv[i].queued_alerts);
    rc |= cvg_buf_append(b, line, (size_t)l < sizeof line ? (size_t)l : sizeof line - 1);
  }
  rc |= cvg_buf_append(b, head4, sizeof head4 - 1);
  for (size_t i = 0; i < n->n_rv; i++) {
    int l = snprintf(line, sizeof line,
                     "converge_alert_queue_dropped_total{receiver=\"%s\",url=\"%s\"} %llu\n",
                     kind_name(n->rv[i].kind), n->rv[i].url, (unsigned long long)n->rv[i].dropped);
    rc |= cvg_buf_append(b, line, (size_t)l < sizeof line ? (size_t)l : sizeof line - 1);
  }
  pthread_mutex_unlock(&n->mu);
  return rc ? CVG_ETOOBIG : CVG_OK;
}
