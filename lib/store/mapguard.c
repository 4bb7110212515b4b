/* SPDX-License-Identifier: MIT */
/* A SIGBUS in a guarded read of a mapped file returns to the reader (see mapguard.h). */
#include "mapguard.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>

static _Thread_local sigjmp_buf *volatile guard;
static struct sigaction previous;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int installed = -1;

static void on_sigbus(int sig, siginfo_t *si, void *uc) {
  sigjmp_buf *jb = guard;
  if (jb) {
    guard = NULL;
    siglongjmp(*jb, 1); /* SA_NODEFER: SIGBUS is not left blocked after the jump */
  }
  /* not a guarded read: whatever was there before us */
  if (previous.sa_flags & SA_SIGINFO) {
    previous.sa_sigaction(sig, si, uc);
    return;
  }
  if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
    previous.sa_handler(sig);
    return;
  }
  /* the default action: returning re-executes the faulting access, which now kills us */
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(SIGBUS, &dfl, NULL);
}

static void install(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  installed = sigaction(SIGBUS, &sa, &previous) == 0 ? 0 : -1;
}

int cvgi_mapguard_install(void) {
  pthread_once(&once, install);
  return installed;
}

void cvgi_mapguard_enter(sigjmp_buf *jb) {
  guard = jb;
}

void cvgi_mapguard_leave(void) {
  guard = NULL;
}

void cvgi_mapguard_recover(void) {
  guard = NULL;
  /* SA_NODEFER left SIGBUS deliverable; this makes sure of it, should a sanitizer's handler
   * have run ours with it blocked */
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGBUS);
  pthread_sigmask(SIG_UNBLOCK, &s, NULL);
}
