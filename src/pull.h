/* pull: a JetStream pull consumer spoken directly over core NATS: pull
 * requests on $JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer> with replies
 * to a subscription under our own inbox prefix (§1.4, §11.3). It replaces
 * cnats' Fetch, whose 3.4.1 version can overflow its message array when
 * late deliveries are buffered (research/anchors.md, nats.c PR #749) and
 * can spin after a timeout (#631). One thread owns a pull_sub.
 *
 * Up to PULL_MAX_REQUESTS requests are open at once, so one is always
 * waiting at the server when another expires: nats-server 2.9 loses a
 * redelivery that comes due while the consumer's only waiting request has
 * expired or lost its reply interest (research/cnats.md pitfall 12). */
#pragma once

#include <nats/nats.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define PULL_MAX_BATCH 1024
#define PULL_MAX_REQUESTS 2
/* Bytes one pull request may bring (max_bytes; at least twice the
 * broker's max payload): with PULL_MAX_REQUESTS open, what the inbox
 * holds stays far below cnats' pending limit (64 MiB), which a batch of
 * 256 posts of 900 KB overran (slow consumer: the batch dropped, back
 * after ack_wait; issue 14 item 3). */
#define PULL_MAX_BYTES (8u * 1024 * 1024)

/* One request the server may still be serving. Each has its own reply
 * subject <inbox>.<id>, so a status reply (408, 409…) names the request it
 * ends; deliveries carry the stream subject instead, and are counted
 * against the oldest open request, the one the server fills first. */
typedef struct pull_request {
        unsigned id;
        int requested, received;
        int64_t expires_ms; /* monotonic: when the server expires it */
        bool heartbeat;     /* asked for idle heartbeats (see pull.c) */
} pull_request;

typedef struct pull_sub {
        natsConnection *nc;    /* borrowed */
        natsSubscription *sub; /* owned; <inbox>.* */
        char *stream, *consumer;
        char *next_subject;                   /* $JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer> */
        char *inbox;                          /* deliveries and status replies land under it */
        char *wake;                           /* <inbox>.wake: see pull_wake_subject */
        pull_request open[PULL_MAX_REQUESTS]; /* oldest first */
        int n_open;
        unsigned next_id;
        const atomic_uint *link_gen; /* borrowed, may be NULL: pull_follow_link */
        unsigned seen_gen;
        bool gone;         /* a "Consumer Deleted" came with deliveries: the next call says -ENOENT */
        int64_t heard_ms;  /* monotonic: the server's last word on the inbox (or our last request) */
        uint64_t silences; /* times every open request was given up for silence */
        bool silent;       /* given up, and nothing heard since */
        size_t max_bytes;  /* per request (0: PULL_MAX_BYTES); set by the owner */
        char last_error[256];
} pull_sub;

/* nc is borrowed. inbox_prefix e.g. "_INBOX_<D>". 0 or -errno. */
int pull_start(pull_sub *p, natsConnection *nc, const char *inbox_prefix, const char *stream, const char *consumer);
void pull_stop(pull_sub *p); /* accepts a zeroed struct */

/* Collects up to max deliveries, waiting at most wait_ms for the first one
 * and then taking only what is already buffered. Keeps up to
 * PULL_MAX_REQUESTS requests (expiring after expires_ms) open at the
 * server: a second one is sent once the newest has less than half its
 * expiry left, sized so that the open requests ask for about max in all.
 * msgs[] gets owned messages (natsMsg_Destroy). Returns the count (>= 1),
 * 0 if nothing arrived in time, -ENOENT if the consumer (or its stream) does
 * not exist, -EAGAIN if the server refused the request (a 409 other than
 * "Consumer Deleted": back off and retry), or another negative errno
 * (last_error says why). Deliveries left over from a lost request, or
 * beyond max, are simply returned by a later call: none is dropped. */
int pull_fetch(pull_sub *p, natsMsg **msgs, int max, int64_t expires_ms, int64_t wait_ms);

/* Follows the connection's reconnect count (bumped by its reconnected
 * callback; gen borrowed, outliving p): when it moves, every open request
 * is presumed gone (a reconnect drops the reply interest the server's
 * waiting requests need) and the next fetch, or the one waiting, sends a
 * new request at once. */
void pull_follow_link(pull_sub *p, const atomic_uint *gen);

/* A subject under the pull inbox whose messages (whatever they hold) only
 * wake a waiting pull_fetch, so it re-reads the link count at once rather
 * than at the end of its wait. Borrowed from p. */
const char *pull_wake_subject(const pull_sub *p);

/* Stops pulling, for a clean stop (§10.4): takes the deliveries already
 * buffered (up to max, into msgs[], owned: the caller naks them), then
 * unsubscribes the inbox (flushed: nothing more is sent to us) and asks
 * CONSUMER.INFO, which makes nats-server 2.9 drop our requests now that
 * their reply subjects have no interest; a nak sent after that waits for
 * the successor instead of being delivered to a request nobody reads (or
 * lost until the next ack_wait, pitfall 12). Returns the count taken;
 * p can only be pull_stop()ed afterwards. */
int pull_cancel(pull_sub *p, natsMsg **msgs, int max);

/* Publishes payload (an ack of §5.5) to the delivery's reply subject.
 * m is borrowed. 0 or -errno. */
int pull_ack(pull_sub *p, natsMsg *m, const char *payload);
