/* SPDX-License-Identifier: MIT */
/* The version of libconverge and the converge program. */
#ifndef CONVERGE_VERSION_H
#define CONVERGE_VERSION_H
#define CVG_VERSION "0.1.0"
#endif
