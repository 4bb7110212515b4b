/* SPDX-License-Identifier: MIT */
/*
 * The journal pipeline: see jpipe.h. One thread, one queue of the current group's records,
 * each with its own buffers (reused from group to group). The queue's indices are guarded by
 * mu; an entry is written by the caller before it is counted in `queued` and read by the thread
 * only after, so the entries themselves need no lock.
 */
#include "jpipe.h"
#include "converge/mclock.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct entry {
  cvg_jkind kind;
  const char *dataset; /* BORROWED: the catalog's, which outlives the run */
  cvg_buf key, body;
  double at;   /* when it was handed over (seconds since the epoch) */
  int64_t seq; /* the number the journal must give it */
} entry;

struct jpipe {
  cvg_journal *jn;
  cvg_jrecord *rec; /* OWNED: the thread's record buffer */
  entry *e;         /* OWNED: cap entries */
  size_t cap;
  pthread_t thread;
  int started;
  pthread_mutex_t mu;
  pthread_cond_t work, idle;
  size_t queued, done; /* entries [done, queued) wait for the thread */
  int stop;
  int64_t next_seq;
  int rc;        /* the first failure of the group */
  cvg_error err; /* its message */
};

/* Appends entry e as the caller would; the numbering is checked. */
static int append_entry(jpipe *p, const entry *e, cvg_error *err) {
  cvg_jrecord *r = p->rec;
  r->kind = e->kind;
  r->at = e->at;
  snprintf(r->dataset, sizeof r->dataset, "%s", e->dataset);
  memcpy(r->key, e->key.data, e->key.len);
  r->key_len = e->key.len;
  r->body = (char *)e->body.data;
  r->body_len = e->body.len;
  int rc = cvg_journal_append(p->jn, r, err);
  if (rc == CVG_OK && r->seq != e->seq)
    rc = cvg_error_set(err, CVG_EIO, "journal",
                       "the journal numbered record %lld as %lld during a group", (long long)e->seq,
                       (long long)r->seq);
  return rc;
}

static void *pipe_main(void *arg) {
  jpipe *p = arg;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->stop && p->done == p->queued)
      pthread_cond_wait(&p->work, &p->mu);
    if (p->done == p->queued)
      break; /* stopped, nothing left */
    size_t from = p->done, to = p->queued;
    int failed = p->rc != CVG_OK;
    pthread_mutex_unlock(&p->mu);
    cvg_error err;
    cvg_error_clear(&err);
    int rc = CVG_OK;
    for (size_t i = from; !failed && rc == CVG_OK && i < to; i++)
      rc = append_entry(p, &p->e[i], &err);
    pthread_mutex_lock(&p->mu);
    if (rc != CVG_OK && p->rc == CVG_OK) {
      p->rc = rc;
      p->err = err;
    }
    p->done = to;
    if (p->done == p->queued)
      pthread_cond_broadcast(&p->idle);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

int jpipe_start(jpipe **out, cvg_journal *jn, size_t cap, cvg_error *err) {
  *out = NULL;
  jpipe *p = calloc(1, sizeof *p);
  if (!p)
    return cvg_error_set(err, CVG_ENOMEM, "journal", "out of memory");
  p->jn = jn;
  p->cap = cap ? cap : 1;
  p->rec = malloc(sizeof *p->rec);
  p->e = calloc(p->cap, sizeof *p->e);
  if (!p->rec || !p->e) {
    free(p->rec);
    free(p->e);
    free(p);
    return cvg_error_set(err, CVG_ENOMEM, "journal", "out of memory");
  }
  for (size_t i = 0; i < p->cap; i++) {
    cvg_buf_init(&p->e[i].key, CVG_JOURNAL_KEY_MAX);
    cvg_buf_init(&p->e[i].body, CVG_JOURNAL_BODY_MAX);
  }
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->work, NULL);
  pthread_cond_init(&p->idle, NULL);
  p->started = pthread_create(&p->thread, NULL, pipe_main, p) == 0;
  if (!p->started) {
    jpipe_stop(p);
    return cvg_error_set(err, CVG_ENOMEM, "journal", "cannot start the journal's thread");
  }
  *out = p;
  return CVG_OK;
}

/* Waits until the thread has appended everything handed over; returns with mu held. */
static void wait_idle(jpipe *p) {
  pthread_mutex_lock(&p->mu);
  while (p->done != p->queued)
    pthread_cond_wait(&p->idle, &p->mu);
}

int jpipe_begin(jpipe *p, cvg_error *err) {
  wait_idle(p);
  p->queued = p->done = 0;
  p->rc = CVG_OK;
  pthread_mutex_unlock(&p->mu);
  int rc = cvg_journal_begin(p->jn, err);
  if (rc == CVG_OK) {
    unsigned char h[32];
    int64_t seq;
    cvg_journal_head(p->jn, &seq, h);
    p->next_seq = seq + 1;
  }
  return rc;
}

int jpipe_append(jpipe *p, cvg_jkind kind, const char *dataset, const unsigned char *key,
                 size_t key_len, const char *body, size_t body_len, int64_t *seq, cvg_error *err) {
  if (key_len > CVG_JOURNAL_KEY_MAX || body_len > CVG_JOURNAL_BODY_MAX)
    return cvg_error_set(err, CVG_ETOOBIG, "journal", "record too large for the journal");
  pthread_mutex_lock(&p->mu);
  if (p->queued == p->cap) { /* full: let it drain, then start from the first entry again */
    while (p->done != p->queued)
      pthread_cond_wait(&p->idle, &p->mu);
    p->queued = p->done = 0;
  }
  if (p->rc != CVG_OK) {
    int rc = p->rc;
    if (err)
      *err = p->err;
    pthread_mutex_unlock(&p->mu);
    return rc;
  }
  entry *e = &p->e[p->queued];
  pthread_mutex_unlock(&p->mu);
  /* entry queued is the thread's only once counted below */
  e->kind = kind;
  e->dataset = dataset;
  e->at = cvg_wall_now();
  e->seq = p->next_seq;
  cvg_buf_reset(&e->key);
  cvg_buf_reset(&e->body);
  if (cvg_buf_append(&e->key, key, key_len) || cvg_buf_append(&e->body, body, body_len))
    return cvg_error_set(err, CVG_ENOMEM, "journal", "out of memory");
  pthread_mutex_lock(&p->mu);
  p->queued++;
  pthread_cond_signal(&p->work);
  pthread_mutex_unlock(&p->mu);
  if (seq)
    *seq = p->next_seq;
  p->next_seq++;
  return CVG_OK;
}

int jpipe_commit(jpipe *p, cvg_error *err) {
  wait_idle(p);
  int rc = p->rc;
  if (rc != CVG_OK && err)
    *err = p->err;
  pthread_mutex_unlock(&p->mu);
  if (rc != CVG_OK) {
    cvg_journal_rollback(p->jn);
    return rc;
  }
  return cvg_journal_commit(p->jn, err);
}

void jpipe_rollback(jpipe *p) {
  wait_idle(p);
  pthread_mutex_unlock(&p->mu);
  cvg_journal_rollback(p->jn);
}

void jpipe_stop(jpipe *p) {
  if (!p)
    return;
  if (p->started) {
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
  }
  for (size_t i = 0; i < p->cap; i++) {
    cvg_buf_release(&p->e[i].key);
    cvg_buf_release(&p->e[i].body);
  }
  pthread_cond_destroy(&p->idle);
  pthread_cond_destroy(&p->work);
  pthread_mutex_destroy(&p->mu);
  free(p->e);
  free(p->rec);
  free(p);
}
