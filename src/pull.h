/* pull: a JetStream pull consumer spoken directly over core NATS: pull
 * requests on $JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer> with replies
 * to a subscription under our own inbox prefix (§1.4, §11.3). It replaces
 * cnats' Fetch, whose 3.4.1 version can overflow its message array when
 * late deliveries are buffered (research/anchors.md, nats.c PR #749) and
 * can spin after a timeout (#631). One thread owns a pull_sub. */
#pragma once

#include <nats/nats.h>
#include <stdbool.h>
#include <stdint.h>

#define PULL_MAX_BATCH 1024

typedef struct pull_sub {
        natsConnection *nc;     /* borrowed */
        natsSubscription *sub;  /* owned */
        char *stream, *consumer;
        char *next_subject;     /* $JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer> */
        char *inbox;            /* deliveries and status replies land here */
        bool open;              /* a pull request is outstanding */
        int requested, received;
        int64_t deadline_ms;    /* monotonic; past it the request is presumed lost */
        char last_error[256];
} pull_sub;

/* nc is borrowed. inbox_prefix e.g. "_INBOX_<D>". 0 or -errno. */
int pull_start(pull_sub *p, natsConnection *nc, const char *inbox_prefix, const char *stream,
               const char *consumer);
void pull_stop(pull_sub *p); /* accepts a zeroed struct */

/* Collects up to max deliveries, waiting at most wait_ms for the first one
 * and then taking only what is already buffered. Keeps at most one pull
 * request (batch max, expiring after expires_ms) open at the server.
 * msgs[] gets owned messages (natsMsg_Destroy). Returns the count (>= 1),
 * 0 if nothing arrived in time, -ENOENT if the consumer (or its stream) does
 * not exist, -EAGAIN if the server refused the request (a 409 other than
 * "Consumer Deleted": back off and retry), or another negative errno
 * (last_error says why). Deliveries
 * left over from a lost request are simply returned by a later call: none
 * is dropped. */
int pull_fetch(pull_sub *p, natsMsg **msgs, int max, int64_t expires_ms, int64_t wait_ms);

/* Publishes payload (an ack of §5.5) to the delivery's reply subject.
 * m is borrowed. 0 or -errno. */
int pull_ack(pull_sub *p, natsMsg *m, const char *payload);
