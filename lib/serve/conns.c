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
 * libmicrohttpd's thread opens, updates and closes the entries; the reaper thread (http.c) cuts
 * them; one mutex orders the two. A descriptor is shut down only while its entry exists, and
 * libmicrohttpd removes the entry (cvgi_conn_close, its "closed" notice) before it closes the
 * descriptor - so a number reused by a new connection is never shut down by mistake.
 */
#include "conns.h"
#include "converge/mclock.h"

#include <pthread.h>
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
  pthread_mutex_t mu;
  double deadline;
  cvgi_conn *head;
  unsigned n;
  unsigned long cut;
};

cvgi_conns *cvgi_conns_new(double deadline) {
  cvgi_conns *cs = calloc(1, sizeof *cs);
  if (cs) {
    cs->deadline = deadline;
    pthread_mutex_init(&cs->mu, NULL);
  }
  return cs;
}

void cvgi_conns_free(cvgi_conns *cs) {
  if (!cs)
    return;
  while (cs->head)
    cvgi_conn_close(cs, cs->head);
  pthread_mutex_destroy(&cs->mu);
  free(cs);
}

cvgi_conn *cvgi_conn_open(cvgi_conns *cs, int fd) {
  cvgi_conn *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->fd = fd;
  c->began = cvg_mono_now();
  pthread_mutex_lock(&cs->mu);
  c->next = cs->head;
  if (cs->head)
    cs->head->prev = c;
  cs->head = c;
  cs->n++;
  pthread_mutex_unlock(&cs->mu);
  return c;
}

void cvgi_conn_close(cvgi_conns *cs, cvgi_conn *c) {
  if (!c)
    return;
  pthread_mutex_lock(&cs->mu);
  if (c->prev)
    c->prev->next = c->next;
  else
    cs->head = c->next;
  if (c->next)
    c->next->prev = c->prev;
  cs->n--;
  pthread_mutex_unlock(&cs->mu);
  free(c);
}

void cvgi_conn_request_done(cvgi_conns *cs, cvgi_conn *c) {
  if (!c)
    return;
  pthread_mutex_lock(&cs->mu);
  c->began = cvg_mono_now();
  pthread_mutex_unlock(&cs->mu);
}

void cvgi_conn_suspend(cvgi_conns *cs, cvgi_conn *c, int suspended) {
  if (!c)
    return;
  pthread_mutex_lock(&cs->mu);
  c->suspended = suspended;
  if (!suspended) /* what converge's own wait took is not the client's */
    c->began = cvg_mono_now();
  pthread_mutex_unlock(&cs->mu);
}

unsigned cvgi_conns_reap(cvgi_conns *cs) {
  double now = cvg_mono_now();
  unsigned n = 0;
  pthread_mutex_lock(&cs->mu);
  for (cvgi_conn *c = cs->head; c; c = c->next) {
    if (c->suspended || c->cut || now - c->began <= cs->deadline)
      continue;
    shutdown(c->fd, SHUT_RDWR);
    c->cut = 1;
    cs->cut++;
    n++;
  }
  pthread_mutex_unlock(&cs->mu);
  return n;
}
