/* losswatch: INBOX entries the stream removed before the reader first
 * read them. INBOX_<S> keeps 1000 entries per owner and evicts the oldest
 * silently (§2); the fan-out's lead bound (§14.4 E1) keeps unread entries
 * out of reach, but a previous writer, an operator's purge, or a broker
 * that evicts out of order (nats-server 2.9.10 after a restart, README)
 * can still remove entries nobody read. Nothing reports it: the consumer
 * simply never delivers them. This watch makes it visible from what every
 * delivery says (§5.5 ack metadata): the server hands out first
 * deliveries in stream order and numbers every delivery (consumer
 * sequence), so a first delivery past the next stream sequence, with no
 * delivery missed in between, means the server skipped stored entries
 * that are gone. A missed delivery (a reconnect, a client-side drop) makes
 * the watch start again instead of guessing. Pure bookkeeping, one owner
 * thread. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

typedef struct losswatch {
        uint64_t next_sseq; /* the stream sequence the next first delivery should have; 0: not known */
        uint64_t last_cseq; /* the consumer sequence of the last delivery seen */
        bool known;         /* last_cseq is meaningful */
} losswatch;

/* Starts from the durable's state (CONSUMER.INFO delivered.stream_seq and
 * delivered.consumer_seq; zeros: nothing known, the next delivery starts
 * the watch). */
void losswatch_reset(losswatch *w, uint64_t delivered_sseq, uint64_t delivered_cseq);

/* One delivery: delivered is its "num delivered" (1 on the first),
 * sseq its stream sequence, cseq its consumer sequence. Returns how many
 * stream sequences the server skipped just before it (entries removed
 * unread), 0 normally. */
uint64_t losswatch_note(losswatch *w, uint64_t delivered, uint64_t sseq, uint64_t cseq);
