/* SPDX-License-Identifier: MIT */
/* Refusing what is not a regular file before SQLite opens it (see converge/fsfile.h). */
#include "converge/fsfile.h"

#include <sys/stat.h>

static const char *kind_of(mode_t m) {
  return S_ISDIR(m)    ? "a directory"
         : S_ISFIFO(m) ? "a FIFO (named pipe)"
         : S_ISSOCK(m) ? "a socket"
         : S_ISCHR(m)  ? "a character device"
         : S_ISBLK(m)  ? "a block device"
                       : "not a regular file";
}

int cvg_regular_file(const char *path, const char *input, const char *what, cvg_error *err) {
  struct stat sb;
  if (!path || stat(path, &sb) != 0 || S_ISREG(sb.st_mode))
    return CVG_OK;
  cvg_error_set(err, CVG_ENOTDB, input ? input : path, "cannot open the %s: it is %s", what,
                kind_of(sb.st_mode));
  cvg_error_hint(err, S_ISDIR(sb.st_mode) ? "name the database file inside it"
                                          : "name a SQLite database file (a regular file)");
  return CVG_ENOTDB;
}
