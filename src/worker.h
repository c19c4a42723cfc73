/* worker: the loop both delivery workers run (PROTOCOL §3: handling is
 * sequential in delivery order, batching is allowed): bind the durable,
 * fetch a batch, handle each message in order, hand back what was not
 * handled when stopping, finish the batch (wait for PubAcks, ack). A
 * durable that disappears is re-created (§14.2 B6). */
#pragma once

#include "daemon.h"
#include "jspub.h"
#include "pull.h"

#include <stdbool.h>

typedef struct worker {
        const char *stream, *durable; /* borrowed */
        pull_sub *pull;               /* borrowed, started */
        jspub *pub;                   /* borrowed, initialised */
        natsMsg **msgs;               /* batch slots, PULL_MAX_BATCH of them */
        atomic_int *batch;            /* read before every fetch (reloadable) */
        /* inflight-mib in bytes, read before every fetch (reloadable): the
         * open pull requests bring at most this much, the publisher holds
         * at most this much unanswered. */
        const atomic_ullong *inflight;
        /* The delay of a nak when prepare fails (§6.5, §7: Appendix A's
         * CONTRACT_NAK_DELAY_MS for both workers). */
        int64_t nak_delay_ms;
        int64_t expires_ms, wait_ms;
        void *self;         /* the worker's own state */
        atomic_llong *beat; /* stamped every iteration (watchdog) */
        /* Re-creates the durable after it vanished; 0 or -errno. */
        int (*rebind)(daemon_ctx *d, void *self);
        /* The batch to fetch next, at most *batch; 0 skips this turn's
         * fetch (before_fetch must then have waited). NULL: *batch. */
        int (*batch_size)(daemon_ctx *d, void *self, int configured);
        /* Runs before each fetch; false stops the loop. May be NULL. */
        bool (*before_fetch)(daemon_ctx *d, void *self);
        /* Runs once a fetch returned messages, before any is handled
         * (the KV fence, §6.4). < 0 gives the whole batch back, to be
         * redelivered after a delay. May be NULL. */
        int (*prepare)(daemon_ctx *d, void *self);
        /* Decides about msgs[i] (publishing through pub as needed). */
        void (*handle)(daemon_ctx *d, void *self, int i);
        /* After the PubAcks: acks msgs[0..n) (the loop destroys them). */
        void (*finish)(daemon_ctx *d, void *self, int n);
} worker;

/* Runs until d->stopping. Returns NULL (a pthread start routine shape). */
void *worker_run(daemon_ctx *d, worker *w);
