/* lease: the single-flight delivery lease of PROTOCOL §9 (bucket
 * cotal_delivery_<S>, key lease.0, TTL 30 s). Every write is
 * revision-checked, so a daemon that lost the lease can never overwrite or
 * delete its successor's (§14.1 F1). Used by the main thread only. */
#pragma once

#include "kv.h"

#include <nats/nats.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct lease {
        kv_bucket kv;           /* owned */
        char *holder;           /* owned copy of <D> */
        uint64_t revision;      /* last revision we wrote; 0 = not held */
        bool ready;
        int64_t last_write_ms;  /* monotonic; for a renew, when it was first sent */
        /* A renew whose outcome is not known yet (it timed out, or the
         * bucket had no leader): the exact value every retry rewrites, so
         * a retry that finds the key moved can tell whether the move was
         * an earlier try of its own. Owned; NULL when no renew is open. */
        char *renew_value;
        int64_t renew_started_ms; /* monotonic, its first try */
        bool renew_tried;         /* a try was sent and may have landed */
        char last_error[512];
} lease;

int lease_init(lease *l, natsConnection *nc, const char *bucket, const char *holder);
void lease_fini(lease *l);

/* create(lease.0, {holder, since, ready:false}). 0, -EEXIST (a live lease
 * exists: last_error names its holder when readable), or another error. */
int lease_acquire(lease *l);
/* CAS update to ready:true (§9 mark ready). 0 or -errno. */
int lease_mark_ready(lease *l);
/* CAS update rewriting since (and ready). -ESTALE when someone else wrote
 * the key: the lease is lost (§9). Another error (timeout, no responders
 * while a cluster elects the bucket's leader, disconnected) leaves the
 * renew open: the next call retries the same value, and if an earlier try
 * did land it is recognised and adopted instead of being taken for a
 * rival's write. Whether to retry or give up is the caller's call. */
int lease_renew(lease *l);
/* Conditional delete guarded by our last revision (§9 release [FIX]).
 * Returns 0, -ESTALE (not ours any more), or an error; never retries. */
int lease_release(lease *l);
