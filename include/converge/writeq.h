/* SPDX-License-Identifier: MIT */
/*
 * The watch's one door for writes from outside (lib/watch/writeq.c): a worker thread that runs
 * the state-file requests of the HTTP API (events posted and listed, the hold on automatic
 * repair recorded) in order, so that the thread answering /metrics and /healthz never waits on
 * a database. The submitter (serve) owns
 * each job and is woken when it is done; serve itself never touches a database.
 */
#ifndef CONVERGE_WRITEQ_H
#define CONVERGE_WRITEQ_H

#include "converge/alert.h"
#include "converge/status.h"

#include <stddef.h>

#define CVG_WRITEQ_MAX 64       /* jobs waiting at most; more are refused (503) */
#define CVG_EVENTS_LIST_MAX 200 /* events one read returns at most */

typedef enum {
  CVG_WRITE_EVENT_ADD,
  CVG_WRITE_EVENT_LIST,
  CVG_WRITE_REPAIR_PAUSE /* records a pause or resume; the job's `after` then applies it in
                          * memory, in the order of the records, so that file and memory agree and
                          * a reload or restart keeps the hold */
} cvg_write_job_kind;

/* One job, owned by the request that submitted it. done is set by the worker, which then calls
 * wake(wake_arg); the submitter reads the results only after that. */
typedef struct cvg_write_job {
  cvg_write_job_kind kind;
  char *path;        /* OWNED copy: a reload may free the catalog meanwhile */
  cvg_event ev;      /* ADD: the event; its id is filled in */
  double since;      /* LIST: events since, of dataset ("" for all) */
  char dataset[128]; /* LIST, REPAIR_PAUSE: the dataset ("" for all) */
  int pause;         /* REPAIR_PAUSE: 1 pause, 0 resume */
  double at;         /* REPAIR_PAUSE: when it was asked */
  int applied;       /* REPAIR_PAUSE: what `after` found (the datasets held or released) */
  cvg_event *evs;    /* LIST: OWNED, n of them */
  size_t n;
  int rc;
  cvg_error err;
  int done; /* atomic */
  /* Called by the worker once the job ran, before done and wake (NULL: nothing): jobs are run
   * and followed up one at a time, in the order submitted. */
  void (*after)(struct cvg_write_job *j, void *arg);
  void *after_arg;
  void (*wake)(void *);
  void *wake_arg;
  struct cvg_write_job *next;
} cvg_write_job;

typedef struct cvg_writeq cvg_writeq;

int cvg_writeq_start(cvg_writeq **out, cvg_error *err);
/* Queues job; CVG_EBUSY when CVG_WRITEQ_MAX jobs already wait. */
int cvg_writeq_submit(cvg_writeq *q, cvg_write_job *job);
/* Finishes the job in hand (its wake is called), drops the queued ones without waking them, and
 * joins the worker. */
void cvg_writeq_stop(cvg_writeq *q);
void cvg_write_job_release(cvg_write_job *job);

#endif
