/* SPDX-License-Identifier: MIT */
/*
 * The HTTP server's connections and their deadlines (conns.c), shared by libmicrohttpd's thread
 * and the reaper thread.
 */
#ifndef CONVERGE_SERVE_CONNS_H
#define CONVERGE_SERVE_CONNS_H

typedef struct cvgi_conns cvgi_conns;
typedef struct cvgi_conn cvgi_conn;

/* OWNED result, NULL when out of memory. deadline: seconds a request may take from its
 * connection's opening (or the end of the previous request) to the last byte of its response. */
cvgi_conns *cvgi_conns_new(double deadline);
void cvgi_conns_free(cvgi_conns *cs); /* after every connection closed */

/* A new connection on fd: its entry, to keep as libmicrohttpd's socket context (NULL when out of
 * memory: the connection then has no deadline of its own but the idle timeout). */
cvgi_conn *cvgi_conn_open(cvgi_conns *cs, int fd);
void cvgi_conn_close(cvgi_conns *cs, cvgi_conn *c);
/* The request ended: the next one's deadline starts now. */
void cvgi_conn_request_done(cvgi_conns *cs, cvgi_conn *c);
/* A request waiting on converge itself (a state-file write) is exempt while suspended. */
void cvgi_conn_suspend(cvgi_conns *cs, cvgi_conn *c, int suspended);

/* Shuts down (SHUT_RDWR) every connection past its deadline, so that the next turn of the loop
 * closes it: a client that sends one header byte a second cannot hold a slot. Returns how many. */
unsigned cvgi_conns_reap(cvgi_conns *cs);

#endif
