/* ledger: PROTOCOL §14.4 E1, per owner. INBOX_<S> keeps 1000 entries per
 * owner subject and silently evicts the oldest stored one, read or not
 * (§2). An entry still unread is therefore lost once 1000 newer entries of
 * its owner are stored, however many of those were read: what must stay
 * under the lead limit is each owner's span, the entries stored from its
 * oldest unread one on. The ledger counts, per owner (the dinbox
 * subject's owner token), an upper bound of it:
 *   - the entries this process wrote from the owner's oldest unread one
 *     on (read ones behind it included), by INBOX sequence;
 *   - publishes in flight (reserved before they are sent);
 *   - after a start, a takeover, a reconnect or a re-created reader
 *     durable: every entry a seed found stored on the owner's subject,
 *     until the reader's ack floor passes what the seed saw (any of them
 *     may be an unread entry older than the rest).
 * The count never falls below the truth, so a writer that reserves before
 * it publishes never makes INBOX evict an unread entry; each owner is
 * judged alone, so a stuck owner holds back nobody else.
 *
 * Pure bookkeeping behind one mutex (the fan-out and control threads
 * reserve and commit, the reader disposes); no I/O: ledger_sync.h feeds
 * it what the broker says. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ledger ledger;

/* limit: the most entries one owner may have unread (--inbox-lead-limit).
 * NULL on allocation failure. */
ledger *ledger_new(size_t limit);
void ledger_free(ledger *l); /* accepts NULL */

/* Reloads (SIGHUP) change the limit; waiters are woken. */
void ledger_set_limit(ledger *l, size_t limit);
size_t ledger_limit(ledger *l);

/* Room for one more entry of owner: true (and the entry is counted from
 * now on) when owner's count is below the limit. Every true must be
 * followed by exactly one ledger_commit or ledger_release. */
bool ledger_reserve(ledger *l, const char *owner);
/* The reserved entry is stored at INBOX sequence seq (a duplicate PubAck
 * names the sequence of the entry already stored: the same rule holds). */
void ledger_commit(ledger *l, const char *owner, uint64_t seq);
/* The reserved entry was not stored (refused, or never sent). */
void ledger_release(ledger *l, const char *owner);
/* The reserved entry got no answer: it may be stored and unread. It keeps
 * counting for two ack_waits (a retry's duplicate PubAck commits it
 * meanwhile, or the reader has read it). */
void ledger_orphan(ledger *l, const char *owner);

/* The reader disposed of owner's entry at seq (ack or term): it will not
 * be read again. Naks are not disposals. */
void ledger_dispose(ledger *l, const char *owner, uint64_t seq);
/* The reader's connection was lost and is back: acks it sent shortly
 * before may never have reached the broker, which then redelivers those
 * entries an ack_wait later. Disposals made at or after since_ms
 * (monotonic) count as unread again, until the reader disposes of them
 * again or its floor passes them. Returns how many. */
size_t ledger_replay(ledger *l, int64_t since_ms);

/* The reader durable's state as the broker reported it
 * (CONSUMER.INFO): every entry at or below floor is disposed of;
 * delivered is the highest sequence delivered at least once; pending and
 * ack_pending are num_pending and num_ack_pending (reported in the
 * stats). epoch is ledger_epoch() read before the request was sent: a
 * report older than the latest seed is ignored. */
typedef struct ledger_reader_state {
        uint64_t floor, delivered, pending, ack_pending;
        uint64_t delivered_cseq; /* delivered.consumer_seq (losswatch) */
} ledger_reader_state;
uint64_t ledger_epoch(ledger *l);
void ledger_note_reader(ledger *l, uint64_t epoch, const ledger_reader_state *rs);

/* Replaces what the ledger assumes about entries it did not write: INBOX
 * held stored[i] entries on owners[i]'s subject up to last_seq, and the
 * reader, read after that, stood at rs. They count until the floor passes
 * last_seq. Entries this process wrote and reservations in flight are
 * kept. Starts a new epoch. */
void ledger_seed(ledger *l, uint64_t last_seq, const ledger_reader_state *rs, size_t n, const char *const *owners,
                 const uint64_t *stored);

/* owner's span as the ledger bounds it (in flight included). */
size_t ledger_count(ledger *l, const char *owner);

/* A counter that moves whenever room may have appeared (a disposal, a
 * reader report, a seed, a new limit). ledger_wait blocks until it
 * differs from *seen or timeout_ms passed, stores the new value in *seen,
 * and returns whether it moved. */
uint64_t ledger_changes(ledger *l);
bool ledger_wait(ledger *l, uint64_t *seen, int64_t timeout_ms);

/* For logs and diagnostics. */
typedef struct ledger_stats {
        size_t owners;          /* owners with anything counted */
        uint64_t unread;        /* entries written by us, not yet disposed of */
        uint64_t span;          /* the same plus read ones behind an unread one */
        uint64_t in_flight;     /* reservations not yet committed or released */
        uint64_t orphans;       /* publishes never answered, still counted */
        uint64_t seeded;        /* entries counted from the seed */
        uint64_t seed_last;     /* the seed's INBOX last_seq (0: no seed in force) */
        uint64_t broker_unread; /* the reader's num_pending + num_ack_pending, last report */
        uint64_t floor;         /* the reader's ack floor, last report */
        uint64_t epoch;
        size_t max;          /* the largest count */
        char max_owner[128]; /* whose (truncated) */
} ledger_stats;
void ledger_get_stats(ledger *l, ledger_stats *st);
