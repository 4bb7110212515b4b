/* SPDX-License-Identifier: MIT */
/*
 * The watch's scheduler and its two pools.
 *
 * Jobs. Each probe of each dataset (and, for per-replica probes, of each replica) is one job
 * with an interval. The scheduler thread hands due jobs to one of two pools — quick probes
 * (heartbeat, canary, invariants) and sweeps — and never runs a job twice at once. A job owns
 * its replica connections (opened on first use, closed after any error so that the next run
 * reconnects), so no connection is ever shared between threads.
 *
 * Time: due times are on the monotonic clock (mclock.h); a wall-clock step moves nothing.
 * Locks: m->mu guards the job table (running, next_due), the pools' queues and stopping.
 */
#include "converge/diff.h"
#include "converge/json.h"
#include "converge/mclock.h"
#include "converge/store.h"
#include "converge/tracker.h"
#include "watch_int.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

static void (*const job_run[])(cvg_monitor *m, job *j) = {
    [J_HB_WRITE] = cvgi_job_hb_write,
    [J_HB_READ] = cvgi_job_hb_read,
    [J_CANARY_WRITE] = cvgi_job_canary_write,
    [J_CANARY_POLL] = cvgi_job_canary_poll,
    [J_INCR] = cvgi_job_incr,
    [J_FULL] = cvgi_job_full,
    [J_INV] = cvgi_job_inv,
    [J_ALERT] = cvgi_job_alert,
    [J_REPAIR] = cvgi_job_repair,
};

static void *worker_main(void *arg) {
  cvg_monitor *m = ((void **)arg)[0];
  int which = (int)(intptr_t)((void **)arg)[1];
  free(arg);
  pool *p = &m->pools[which];
  pthread_mutex_lock(&m->mu);
  for (;;) {
    while (!p->head && !m->stopping)
      pthread_cond_wait(&p->cv, &m->mu);
    if (m->stopping)
      break;
    job *j = p->head;
    p->head = j->next;
    if (!p->head)
      p->tail = NULL;
    pthread_mutex_unlock(&m->mu);
    job_run[j->kind](m, j);
    pthread_mutex_lock(&m->mu);
    double now = cvg_mono_now();
    j->running = 0;
    j->next_due += j->interval;
    if (j->next_due < now)
      j->next_due = now; /* fell behind: run again soon, never in a burst */
    pthread_cond_signal(&m->sched_cv);
  }
  pthread_mutex_unlock(&m->mu);
  return NULL;
}

static void *sched_main(void *arg) {
  cvg_monitor *m = arg;
  pthread_mutex_lock(&m->mu);
  while (!m->stopping) {
    double now = cvg_mono_now();
    m->sched_beat = now;
    double next = now + 0.5;
    for (size_t i = 0; i < m->n_jobs; i++) {
      job *j = &m->jobs[i];
      if (j->running)
        continue;
      if (j->kind == J_FULL && j->next_due > now) {
        pthread_mutex_lock(&j->ds->mu); /* lock order: m->mu, then a dataset's mu */
        if (j->ds->full_requested)
          j->next_due = now; /* an incremental check overflowed */
        pthread_mutex_unlock(&j->ds->mu);
      }
      if (j->next_due <= now) {
        j->running = 1;
        j->next = NULL;
        pool *p = &m->pools[j->pool];
        if (p->tail)
          p->tail->next = j;
        else
          p->head = j;
        p->tail = j;
        pthread_cond_signal(&p->cv);
      } else if (j->next_due < next) {
        next = j->next_due;
      }
    }
    double wait = next - cvg_mono_now();
    if (wait < 0.001)
      wait = 0.001;
    struct timespec ts;
    cvg_deadline_after(&ts, wait); /* due times are monotonic, and so is this wait */
    pthread_cond_timedwait(&m->sched_cv, &m->mu, &ts);
  }
  pthread_mutex_unlock(&m->mu);
  return NULL;
}

int cvgi_add_job(cvg_monitor *m, jkind kind, dset *ds, size_t r, double interval, int pool_,
                 double first) {
  job *j = &m->jobs[m->n_jobs++];
  memset(j, 0, sizeof *j);
  j->kind = kind;
  j->ds = ds;
  j->rep = r;
  j->interval = interval;
  j->pool = pool_;
  j->next_due = first;
  if (kind == J_INCR || kind == J_FULL) {
    j->sts = calloc(ds->n, sizeof *j->sts);
    if (!j->sts)
      return CVG_ENOMEM;
  }
  return CVG_OK;
}

int cvg_monitor_start(cvg_monitor *m, cvg_error *err) {
  for (int p = 0; p < 2; p++) {
    pool *pl = &m->pools[p];
    pl->threads = calloc(pl->n_threads, sizeof *pl->threads);
    if (!pl->threads)
      goto fail;
    for (size_t i = 0; i < pl->n_threads; i++) {
      void **arg = malloc(2 * sizeof *arg);
      if (!arg)
        goto fail;
      arg[0] = m;
      arg[1] = (void *)(intptr_t)p;
      if (pthread_create(&pl->threads[i], NULL, worker_main, arg) != 0) {
        free(arg);
        goto fail;
      }
      pl->started++;
    }
  }
  m->sched_beat = cvg_mono_now();
  if (pthread_create(&m->sched, NULL, sched_main, m) != 0)
    goto fail;
  m->sched_started = 1;
  return CVG_OK;
fail:
  cvg_monitor_stop(m);
  return cvg_error_set(err, CVG_ETHREAD, m->cat->path, "cannot start the probe threads");
}

void cvg_monitor_stop(cvg_monitor *m) {
  if (!m)
    return;
  pthread_mutex_lock(&m->mu);
  m->stopping = 1;
  __atomic_store_n(&m->cancel, 1, __ATOMIC_RELAXED);
  pthread_cond_broadcast(&m->sched_cv);
  pthread_cond_broadcast(&m->pools[0].cv);
  pthread_cond_broadcast(&m->pools[1].cv);
  pthread_mutex_unlock(&m->mu);
  if (m->sched_started)
    pthread_join(m->sched, NULL);
  m->sched_started = 0;
  for (int p = 0; p < 2; p++) {
    for (size_t i = 0; i < m->pools[p].started; i++)
      pthread_join(m->pools[p].threads[i], NULL);
    m->pools[p].started = 0;
    free(m->pools[p].threads);
    m->pools[p].threads = NULL;
  }
}
