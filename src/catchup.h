/* catchup: PROTOCOL §8.6 for durableJoin, the broker reads and the copy.
 * Control-thread only (d->nc); every call is bounded. */
#pragma once

#include "daemon.h"
#include "jspub.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* CHAT_<S> state.last_seq (the "frontier" of §8.6). 0 or -errno. */
int catchup_chat_frontier(daemon_ctx *d, uint64_t *seq);

/* CONSUMER.INFO(CHAT_<S>, fanout).delivered.stream_seq, 0 if the consumer
 * is missing (§8.6). Any other failure is an error: reading it as 0 would
 * shrink the window and skip what the fan-out handled before the commit. */
int catchup_fanout_delivered(daemon_ctx *d, uint64_t *seq);

/* True if retention removed messages of channel after join_cursor (the
 * window is partially evicted, §8.6); false when unsure (logged).
 * *at_cap: some sender's subject of the channel is at CHAT's per-subject
 * cap (or the probe could not tell): the consumer's pending count may run
 * short on nats-server 2.9 there. */
bool catchup_evicted_since(daemon_ctx *d, const char *channel, uint64_t join_cursor, bool *at_cap);

/* Copies channel history (from, to] into owner's dinbox with generation
 * gen, publishing through pub (reset here; bounded by inflight-mib) and
 * reserving each entry in the ledger first (E1: waits for room, gives up
 * after 20 s without progress). trust_pending: a pending count of 0 ends
 * the window at once (else a short wait for one more delivery). 0, or
 * -errno with err filled. */
int catchup_copy(daemon_ctx *d, jspub *pub, const char *owner, const char *channel, uint64_t from, uint64_t to,
                 uint64_t gen, bool trust_pending, char *err, size_t err_size);
