/* SPDX-License-Identifier: MIT */
/*
 * Reads of a mapped file that may shrink under them.
 *
 * The fast path reads a replica's pages through mmap while holding a SQLite read lock - which
 * keeps SQLite writers out, but not `cp backup.db replica.db` or a truncate, which ignore locks.
 * A page past the file's new end then raises SIGBUS on access. A section that reads the mapping
 * is entered with a sigsetjmp buffer of the caller's frame; the SIGBUS handler jumps back to it,
 * and the caller reports "the replica file changed during the scan" instead of the process
 * dying. A SIGBUS outside a guarded section goes to the handler that was there before (or the
 * default action: the process dies as it would have).
 *
 *   sigjmp_buf jb;
 *   if (sigsetjmp(jb, 0)) { cvgi_mapguard_recover(); ... the file changed ...; }
 *   cvgi_mapguard_enter(&jb);
 *   ... read the mapping ...
 *   cvgi_mapguard_leave();
 *
 * Nothing between enter and leave may own memory only through local variables: after a jump,
 * what the section allocated must be reachable from the caller's structures.
 */
#ifndef CONVERGE_MAPGUARD_H
#define CONVERGE_MAPGUARD_H

#include <setjmp.h>

/* Installs the SIGBUS handler once per process; 0, or -1 when sigaction fails (the caller then
 * does not read through a mapping). */
int cvgi_mapguard_install(void);
void cvgi_mapguard_enter(sigjmp_buf *jb);
void cvgi_mapguard_leave(void);
/* After the jump back: the section is left and SIGBUS can be delivered again. */
void cvgi_mapguard_recover(void);

#endif
