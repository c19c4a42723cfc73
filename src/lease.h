/* lease: the single-flight delivery lease of PROTOCOL §9 (bucket
 * cotal_delivery_<S>, key lease.0, TTL 30 s). Every write is
 * revision-checked, so a daemon that lost the lease can never overwrite or
 * delete its successor's (§14.1 F1). Used by the main thread only. */
#pragma once

#include "contract_config.h"
#include "kv.h"

#include <nats/nats.h>
#include <stdbool.h>
#include <stdint.h>

/* How close to the record's expiry the holder may act. The record lives
 * CONTRACT_LEASE_TTL_MS from its store time on the server, which is no
 * earlier than the moment the holder sent the write; the holder fetches and
 * handles only until LEASE_ACT_MARGIN_MS before that, counted from the send
 * time. The margin covers what follows a worker's last check (the message
 * it let start still sends its publishes) and the rate difference of the
 * daemon's and the broker's clocks over 30 s. */
#define LEASE_ACT_MARGIN_MS 3000
#define LEASE_ACT_MS (CONTRACT_LEASE_TTL_MS - LEASE_ACT_MARGIN_MS)

typedef struct lease {
        kv_bucket kv;      /* owned */
        char *holder;      /* owned copy of <D> */
        uint64_t revision; /* last revision we wrote; 0 = not held */
        bool ready;
        /* Monotonic ms read before the last confirmed write was sent (for
         * a write retried, before its first try): no later than the
         * server's store time, which the record's TTL runs from. */
        int64_t last_write_ms;
        /* A write whose outcome is not known yet (it timed out, or the
         * bucket had no leader): the exact value every retry rewrites, so
         * a retry, a check or the release that finds the key moved can
         * tell whether the move was an earlier try of its own. Mark ready
         * and renew leave it open for the next renew; a failed acquire
         * leaves it for the release. Owned; NULL when no write is open. */
        char *renew_value;
        bool renew_ready;         /* the ready field of renew_value */
        int64_t renew_started_ms; /* monotonic, before its first try */
        bool renew_tried;         /* a try was sent and may have landed */
        char last_error[512];
} lease;

int lease_init(lease *l, natsConnection *nc, const char *bucket, const char *holder);
void lease_fini(lease *l);

/* create(lease.0, {holder, since, ready:false}). 0, -EEXIST (a live lease
 * exists: last_error names its holder when readable), or another error
 * (then the create may still have landed: lease_release finds it). */
int lease_acquire(lease *l);
/* §9 mark ready: the same revision-checked write as a renew, with
 * ready:true. 0 or -errno as lease_renew. */
int lease_mark_ready(lease *l);
/* CAS update rewriting since (and ready). -ESTALE when someone else wrote
 * the key: the lease is lost (§9). Another error (timeout, no responders
 * while a cluster elects the bucket's leader, disconnected) leaves the
 * write open: the next call retries the same value, and if an earlier try
 * did land it is recognised and adopted instead of being taken for a
 * rival's write. Whether to retry or give up is the caller's call. */
int lease_renew(lease *l);
/* Reads lease.0 (STREAM.MSG.GET, within the delivery credential's grants,
 * §11.3) and tells whether it is still ours: 0 when its latest entry is
 * our revision; 1 when it is an open write of ours that landed without a
 * confirmation, now adopted (revision and last_write_ms moved); -ESTALE
 * when it is anything else (another holder's write, a DEL/PURGE marker,
 * no entry at all): the lease is lost and last_error says how. Another
 * error means the read failed (timeout, disconnected) and tells nothing. */
int lease_check(lease *l);
/* Monotonic ms until which the holder may act: last_write_ms +
 * LEASE_ACT_MS; 0 when the lease is not held. */
int64_t lease_act_until_ms(const lease *l);
/* Conditional delete guarded by our last revision (§9 release [FIX]), or
 * by the revision of an open write of ours found landed. Returns 0,
 * -ESTALE (not ours any more), or an error; never retries. */
int lease_release(lease *l);
