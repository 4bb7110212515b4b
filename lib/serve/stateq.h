/* SPDX-License-Identifier: MIT */
/*
 * The HTTP server's one worker for the state file (stateq.c): event writes and reads run there,
 * never on the thread that answers /metrics and /healthz.
 */
#ifndef CONVERGE_SERVE_STATEQ_H
#define CONVERGE_SERVE_STATEQ_H

#include "converge/alert.h"
#include "converge/status.h"

#include <stddef.h>

#define CVGI_STATEQ_MAX 64       /* jobs waiting at most; more are refused (503) */
#define CVGI_EVENTS_LIST_MAX 200 /* events one read returns at most */

typedef enum { CVGI_JOB_ADD, CVGI_JOB_LIST } cvgi_job_kind;

/* One job, owned by the request that submitted it. done is set by the worker, which then calls
 * wake(wake_arg); the submitter reads the results only after that. */
typedef struct cvgi_job {
  cvgi_job_kind kind;
  char *path;   /* OWNED copy: a reload may free the catalog meanwhile */
  cvg_event ev; /* ADD: the event; its id is filled in */
  double since; /* LIST: events since, of dataset ("" for all) */
  char dataset[128];
  cvg_event *evs; /* LIST: OWNED, n of them */
  size_t n;
  int rc;
  cvg_error err;
  int done; /* atomic */
  void (*wake)(void *);
  void *wake_arg;
  struct cvgi_job *next;
} cvgi_job;

typedef struct cvgi_stateq cvgi_stateq;

int cvgi_stateq_start(cvgi_stateq **out, cvg_error *err);
/* Queues job; CVG_EBUSY when CVGI_STATEQ_MAX jobs already wait. */
int cvgi_stateq_submit(cvgi_stateq *q, cvgi_job *job);
/* Finishes the job in hand (its wake is called), drops the queued ones without waking them, and
 * joins the worker. */
void cvgi_stateq_stop(cvgi_stateq *q);
void cvgi_job_release(cvgi_job *job);

#endif
