/* fanout: the fan-out writer of PROTOCOL §6 on its own thread. It binds
 * the "fanout" durable on CHAT_<S>, writes one dinbox entry per eligible
 * recipient with the contract's dedup id, and acks each chat message only
 * after JetStream confirmed every entry it produced. It never lets an
 * owner's unread inbox backlog approach the 1000-entry cap (E1). */
#pragma once

#include "daemon.h"

/* Ensures and binds the durable, then starts the thread. 0 or -errno
 * (logged). */
int fanout_start(daemon_ctx *d);
/* Joins the thread (d->stopping must be set) and frees everything. */
void fanout_stop(daemon_ctx *d);
