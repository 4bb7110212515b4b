/* SPDX-License-Identifier: MIT */
/*
 * Internal contract between store.c and the engines. Every engine's scan handle begins with
 * cvgi_scan_base so that store.c can dispatch on it.
 */
#ifndef CONVERGE_STORE_INT_H
#define CONVERGE_STORE_INT_H

#include "converge/store.h"

typedef struct cvgi_scan_base {
  const cvg_store_ops *ops; /* the engine that opened the scan */
} cvgi_scan_base;

extern const cvg_store_ops cvgi_sqlite_ops;

#endif
