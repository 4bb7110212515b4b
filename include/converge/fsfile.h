/* SPDX-License-Identifier: MIT */
/* The files converge opens by name - replicas, the journal, the state file - are regular files. */
#ifndef CONVERGE_FSFILE_H
#define CONVERGE_FSFILE_H

#include "converge/status.h"

/*
 * CVG_OK when path does not exist or is a regular file (after symbolic links); otherwise
 * CVG_ENOTDB with "cannot open the WHAT: it is a FIFO" (a directory, a socket, a device) and a
 * hint, about `input` (the name the user gave: a URL, a catalog key). Opening a FIFO would block until something writes to it; a device is no database.
 */
int cvg_regular_file(const char *path, const char *input, const char *what, cvg_error *err);

#endif
