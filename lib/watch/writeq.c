/* SPDX-License-Identifier: MIT */
/*
 * The state-file worker (writeq.h). A state file locked by another process made POST
 * /api/v1/events wait up to SQLite's busy timeout on the HTTP thread, and /metrics with it. Now
 * the request is suspended, its job waits here, one thread does the reads and writes in order,
 * and the request resumes when its job is done. The HTTP thread never touches the database.
 */
#include "converge/writeq.h"
#include "watch_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct cvg_writeq {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  cvg_write_job *head, *tail;
  size_t n;
  int stop;
  pthread_t thread;
};

static void run(cvg_write_job *j) {
  cvg_error_clear(&j->err);
  if (j->kind == CVG_WRITE_EVENT_ADD) {
    j->rc = cvg_event_add(j->path, &j->ev, &j->err);
    return;
  }
  if (j->kind == CVG_WRITE_REPAIR_PAUSE) {
    j->rc = cvgi_pause_save(j->path, j->dataset[0] ? j->dataset : NULL, j->pause, j->at, &j->err);
    return;
  }
  j->evs = calloc(CVG_EVENTS_LIST_MAX, sizeof *j->evs);
  if (!j->evs) {
    j->rc = cvg_error_set(&j->err, CVG_ENOMEM, "", "out of memory");
    return;
  }
  j->rc = cvg_event_list(j->path, j->since, 1e18, j->dataset[0] ? j->dataset : NULL, j->evs,
                         CVG_EVENTS_LIST_MAX, &j->n, &j->err);
}

static void *worker(void *arg) {
  cvg_writeq *q = arg;
  pthread_mutex_lock(&q->mu);
  for (;;) {
    while (!q->head && !q->stop)
      pthread_cond_wait(&q->cv, &q->mu);
    if (q->stop)
      break;
    cvg_write_job *j = q->head;
    q->head = j->next;
    if (!q->head)
      q->tail = NULL;
    q->n--;
    pthread_mutex_unlock(&q->mu);
    run(j);
    if (j->after)
      j->after(j, j->after_arg);
    __atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
    j->wake(j->wake_arg);
    pthread_mutex_lock(&q->mu);
  }
  pthread_mutex_unlock(&q->mu);
  return NULL;
}

int cvg_writeq_start(cvg_writeq **out, cvg_error *err) {
  cvg_writeq *q = calloc(1, sizeof *q);
  if (!q)
    return cvg_error_set(err, CVG_ENOMEM, "writeq", "out of memory");
  pthread_mutex_init(&q->mu, NULL);
  pthread_cond_init(&q->cv, NULL);
  if (pthread_create(&q->thread, NULL, worker, q) != 0) {
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    free(q);
    return cvg_error_set(err, CVG_ETHREAD, "writeq", "cannot start the state-file worker");
  }
  *out = q;
  return CVG_OK;
}

int cvg_writeq_submit(cvg_writeq *q, cvg_write_job *wj) {
  pthread_mutex_lock(&q->mu);
  if (q->n >= CVG_WRITEQ_MAX || q->stop) {
    pthread_mutex_unlock(&q->mu);
    return CVG_EBUSY;
  }
  wj->next = NULL;
  if (q->tail)
    q->tail->next = wj;
  else
    q->head = wj;
  q->tail = wj;
  q->n++;
  pthread_cond_signal(&q->cv);
  pthread_mutex_unlock(&q->mu);
  return CVG_OK;
}

void cvg_writeq_stop(cvg_writeq *q) {
  if (!q)
    return;
  pthread_mutex_lock(&q->mu);
  q->stop = 1;
  q->head = q->tail = NULL; /* their requests are closed with the daemon */
  q->n = 0;
  pthread_cond_signal(&q->cv);
  pthread_mutex_unlock(&q->mu);
  pthread_join(q->thread, NULL);
  pthread_cond_destroy(&q->cv);
  pthread_mutex_destroy(&q->mu);
  free(q);
}

void cvg_write_job_release(cvg_write_job *wj) {
  if (!wj)
    return;
  free(wj->path);
  free(wj->evs);
  wj->path = NULL;
  wj->evs = NULL;
}
