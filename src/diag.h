/* diag: diagnostics an operator can reach without the broker. A unix
 * stream socket (mode 0600, normally $RUNTIME_DIRECTORY/diag.sock) answers
 * every connection with one JSON document and closes it: identity, lease,
 * link, counters, worker heartbeats, the effective configuration (no
 * secrets) and the connection-event ring. `cotal-deliveryctl diag` reads
 * it. Main thread only: served from the main loop's tick, never blocking
 * on a client. */
#pragma once

#include "daemon.h"

#include <jansson.h>
#include <stddef.h>

/* Binds path, replacing a stale socket left by a dead daemon but never a
 * live one (-EADDRINUSE) or a non-socket file (-EEXIST). 0 or -errno with
 * err filled; d->diag is set on success. */
int diag_open(daemon_ctx *d, const char *path, char *err, size_t err_size);
/* Answers the clients waiting to be accepted (a few per call). */
void diag_serve(daemon_ctx *d);
/* Closes and unlinks the socket; frees d->diag. */
void diag_close(daemon_ctx *d);
/* The document itself (owned), for tests and the socket. */
json_t *diag_snapshot(daemon_ctx *d);
/* Copies url with any "user:password@" replaced by "***@" (owned). */
char *diag_redact_url(const char *url);
