/* jspub: pipelined JetStream publishes with a PubAck per message, spoken
 * over core NATS: each publish carries Nats-Msg-Id and a reply subject
 * under our own inbox prefix; the PubAcks are collected here, on the
 * owning thread. Replaces js_PublishAsync, whose completion wait can block
 * forever on a lost ack and whose handlers run on library threads
 * (research/cnats.md pitfalls 5 and 8). One thread owns a jspub. */
#pragma once

#include <nats/nats.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSPUB_MAX_INFLIGHT 4096
/* Bytes sent since nothing was last outstanding: past this (or the
 * owner's max_bytes, the inflight-mib setting), a publish first waits for
 * every PubAck, so what cnats buffers and the broker has in hand stays
 * bounded whatever size agents post (issue 14 item 3: 40 posts of 500 KB
 * to 50 members once took the daemon to 521 MB RSS). */
#define JSPUB_MAX_INFLIGHT_BYTES (32u * 1024 * 1024)
/* How long PubAcks are still taken after the owner starts stopping, or
 * after a permission violation in the round (see stop, denied_ms). */
#define JSPUB_STOP_GRACE_MS 1000
#define JSPUB_DENIED_GRACE_MS 500

typedef enum {
        JSPUB_PENDING = 0,
        JSPUB_OK,        /* stored (or a duplicate of a stored message) */
        JSPUB_ERROR,     /* the stream refused it: err_code/description */
        JSPUB_NO_STREAM, /* no responders: no stream for the subject */
        JSPUB_TIMEOUT,   /* no PubAck in time: maybe stored, maybe not */
        JSPUB_TOO_LARGE, /* over the connection's max payload: never sent */
} jspub_state;

typedef struct jspub_result {
        jspub_state state;
        bool duplicate;
        uint64_t seq;
        int err_code;
} jspub_result;

typedef struct jspub {
        natsConnection *nc;    /* borrowed */
        natsSubscription *sub; /* owned: <prefix>.pub.<nuid>.> */
        char *reply_prefix;    /* <prefix>.pub.<nuid> */
        uint64_t round;        /* replies of older rounds are ignored */
        jspub_result *results; /* one per publish of this round */
        size_t n, cap, outstanding;
        size_t unsettled_bytes; /* sent since outstanding was last 0 */
        size_t max_bytes;       /* bound on those and on spent_bytes (0: JSPUB_MAX_INFLIGHT_BYTES); the owner's */
        /* 503 replies this round. cnats 3.4.1 turns an empty 503 into
         * NATS_NO_RESPONDERS and drops the message, reply subject and all,
         * so which publish it answered is unknown: the publishes still
         * unanswered once every reply is in are the refused ones. */
        size_t no_responders;
        /* Messages done with, destroyed together at the end of a round:
         * cnats 3.4.1 hands every destroyed natsMsg to its collector
         * thread and wakes it each time it sleeps, so one destroy per
         * publish and per PubAck cost a thread wake-up each. */
        natsMsg **spent;
        size_t n_spent, cap_spent;
        size_t spent_bytes; /* their data: buried past max_bytes */
        char last_error[256];
        const atomic_bool *stop; /* jspub_hooks */
        const atomic_llong *denied_ms;
        int64_t round_ms;    /* monotonic ms at jspub_reset */
        bool gave_up_denied; /* this round's wait ended on a violation */
} jspub;

/* What the owner lets the publisher see (either may be NULL: ignored).
 * The PubAck wait ends early JSPUB_STOP_GRACE_MS after *stop is set, and
 * JSPUB_DENIED_GRACE_MS after a permission violation (*denied_ms,
 * monotonic ms, 0: none) at or after the round began: the server drops a
 * refused publish without an answer, so waiting the full timeout would
 * only hold the batch. What is unanswered then ends JSPUB_TIMEOUT, as it
 * would anyway. */
typedef struct jspub_hooks {
        const atomic_bool *stop;
        const atomic_llong *denied_ms;
} jspub_hooks;

/* hooks may be NULL (none). 0 or -errno (last_error says why). */
int jspub_init(jspub *j, natsConnection *nc, const char *inbox_prefix, const jspub_hooks *hooks);
void jspub_fini(jspub *j);

/* Starts a new round: forgets all results (late PubAcks of the previous
 * round are ignored from now on). */
void jspub_reset(jspub *j);

/* Publishes data to subject with Nats-Msg-Id msg_id (NULL: none). Returns
 * the result index (>= 0) within this round, or a negative errno when it
 * could not be sent at all (-EMSGSIZE: the result is JSPUB_TOO_LARGE and
 * still gets an index — see jspub_result_at). Waits for PubAcks first when
 * JSPUB_MAX_INFLIGHT are outstanding. */
long jspub_publish(jspub *j, const char *subject, const char *msg_id, const char *data, size_t len);

/* Waits until every publish of this round is answered or timeout_ms has
 * passed (the rest become JSPUB_TIMEOUT). Returns the number that did not
 * end JSPUB_OK. */
size_t jspub_wait(jspub *j, int64_t timeout_ms);

const jspub_result *jspub_result_at(const jspub *j, size_t index);

/* Reads a PubAck body (borrowed; pure, exposed for the fuzzer): JSPUB_OK
 * with r->seq and r->duplicate, or JSPUB_ERROR with r->err_code and a
 * line in err. The exact shape nats-server writes is read without a JSON
 * parser; anything else goes through jansson, with the same result. */
jspub_state jspub_parse_puback(const char *data, size_t len, jspub_result *r, char *err, size_t err_size);
