/* SPDX-License-Identifier: MIT */
/*
 * The state-file worker (stateq.h). A state file locked by another process made POST
 * /api/v1/events wait up to SQLite's busy timeout on the HTTP thread, and /metrics with it. Now
 * the request is suspended, its job waits here, one thread does the reads and writes in order,
 * and the request resumes when its job is done. The HTTP thread never touches the database.
 */
#include "stateq.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct cvgi_stateq {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  cvgi_job *head, *tail;
  size_t n;
  int stop;
  pthread_t thread;
};

static void run(cvgi_job *j) {
  cvg_error_clear(&j->err);
  if (j->kind == CVGI_JOB_ADD) {
    j->rc = cvg_event_add(j->path, &j->ev, &j->err);
    return;
  }
  j->evs = calloc(CVGI_EVENTS_LIST_MAX, sizeof *j->evs);
  if (!j->evs) {
    j->rc = cvg_error_set(&j->err, CVG_ENOMEM, "", "out of memory");
    return;
  }
  j->rc = cvg_event_list(j->path, j->since, 1e18, j->dataset[0] ? j->dataset : NULL, j->evs,
                         CVGI_EVENTS_LIST_MAX, &j->n, &j->err);
}

static void *worker(void *arg) {
  cvgi_stateq *q = arg;
  pthread_mutex_lock(&q->mu);
  for (;;) {
    while (!q->head && !q->stop)
      pthread_cond_wait(&q->cv, &q->mu);
    if (q->stop)
      break;
    cvgi_job *j = q->head;
    q->head = j->next;
    if (!q->head)
      q->tail = NULL;
    q->n--;
    pthread_mutex_unlock(&q->mu);
    run(j);
    __atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
    j->wake(j->wake_arg);
    pthread_mutex_lock(&q->mu);
  }
  pthread_mutex_unlock(&q->mu);
  return NULL;
}

int cvgi_stateq_start(cvgi_stateq **out, cvg_error *err) {
  cvgi_stateq *q = calloc(1, sizeof *q);
  if (!q)
    return cvg_error_set(err, CVG_ENOMEM, "http", "out of memory");
  pthread_mutex_init(&q->mu, NULL);
  pthread_cond_init(&q->cv, NULL);
  if (pthread_create(&q->thread, NULL, worker, q) != 0) {
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    free(q);
    return cvg_error_set(err, CVG_ETHREAD, "http", "cannot start the state-file worker");
  }
  *out = q;
  return CVG_OK;
}

int cvgi_stateq_submit(cvgi_stateq *q, cvgi_job *job) {
  pthread_mutex_lock(&q->mu);
  if (q->n >= CVGI_STATEQ_MAX || q->stop) {
    pthread_mutex_unlock(&q->mu);
    return CVG_EBUSY;
  }
  job->next = NULL;
  if (q->tail)
    q->tail->next = job;
  else
    q->head = job;
  q->tail = job;
  q->n++;
  pthread_cond_signal(&q->cv);
  pthread_mutex_unlock(&q->mu);
  return CVG_OK;
}

void cvgi_stateq_stop(cvgi_stateq *q) {
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

void cvgi_job_release(cvgi_job *job) {
  if (!job)
    return;
  free(job->path);
  free(job->evs);
  job->path = NULL;
  job->evs = NULL;
}
