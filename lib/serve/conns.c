/* SPDX-License-Identifier: MIT */
/*
 * Per-request deadlines for the HTTP server (conns.h).
 *
 * libmicrohttpd's own timeout is an idle timeout: any byte resets it, so 64 clients that each
 * send a header line every 3 s held every slot for as long as they liked, and /metrics went
 * unanswered. Here each connection carries the time its current request began (the connection's
 * opening, then the end of the previous request); once the deadline has passed, the socket is
 * shut down and libmicrohttpd closes the connection on its next turn. Activity never extends it.
 *
 * Everything runs on the loop thread (http.c calls MHD_run_wait and then cvgi_conns_reap), so a
 * descriptor is shut down only while libmicrohttpd still holds it open: it closes descriptors in
 * the same thread, after telling us (cvgi_conn_close).
 */
#include "conns.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

struct cvgi_conn {
  int fd;
  int suspended, cut;
  double began; /* monotonic seconds */
  cvgi_conn *prev, *next;
};

struct cvgi_conns {
  double deadline;
  cvgi_conn *head;
  unsigned n;
  unsigned long cut;
};

static double mono_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

cvgi_conns *cvgi_conns_new(double deadline) {
  cvgi_conns *cs = calloc(1, sizeof *cs);
  if (cs)
    cs->deadline = deadline;
  return cs;
}

void cvgi_conns_free(cvgi_conns *cs) {
  while (cs && cs->head)
    cvgi_conn_close(cs, cs->head);
  free(cs);
}

cvgi_conn *cvgi_conn_open(cvgi_conns *cs, int fd) {
  cvgi_conn *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->fd = fd;
  c->began = mono_now();
  c->next = cs->head;
  if (cs->head)
    cs->head->prev = c;
  cs->head = c;
  cs->n++;
  return c;
}

void cvgi_conn_close(cvgi_conns *cs, cvgi_conn *c) {
  if (!c)
    return;
  if (c->prev)
    c->prev->next = c->next;
  else
    cs->head = c->next;
  if (c->next)
    c->next->prev = c->prev;
  cs->n--;
  free(c);
}

void cvgi_conn_request_done(cvgi_conn *c) {
  if (c)
    c->began = mono_now();
}

void cvgi_conn_suspend(cvgi_conn *c, int suspended) {
  if (!c)
    return;
  c->suspended = suspended;
  if (!suspended) /* what converge's own wait took is not the client's */
    c->began = mono_now();
}

unsigned cvgi_conns_reap(cvgi_conns *cs) {
  double now = mono_now();
  unsigned n = 0;
  for (cvgi_conn *c = cs->head; c; c = c->next) {
    if (c->suspended || c->cut || now - c->began <= cs->deadline)
      continue;
    shutdown(c->fd, SHUT_RDWR);
    c->cut = 1;
    cs->cut++;
    n++;
  }
  return n;
}

unsigned cvgi_conns_open(const cvgi_conns *cs) {
  return cs->n;
}

unsigned long cvgi_conns_cut(const cvgi_conns *cs) {
  return cs->cut;
}
