/* kv_watch: a KV watch the delivery credential may run (PROTOCOL §4.2
 * "Watches"): a *named* push consumer with a deliver subject under our own
 * inbox prefix, last_per_subject, ack none, flow control and idle
 * heartbeats, answered here. A gap in the consumer sequence or missed
 * heartbeats re-creates the consumer (and replays the latest values).
 * Owned by one thread; nothing runs on cnats threads. */
#pragma once

#include "kv.h"

#include <nats/nats.h>
#include <stdbool.h>
#include <stdint.h>

#define KV_WATCH_HEARTBEAT_MS 5000
#define KV_WATCH_INACTIVE_MS 30000

typedef struct kv_watch {
        natsConnection *nc;    /* borrowed */
        natsSubscription *sub; /* owned */
        char *bucket, *stream; /* owned */
        char *filter;          /* "$KV.<bucket>.<key or >>" */
        char *name;            /* consumer name */
        char *inbox_prefix;    /* deliver subjects go under it */
        uint64_t next_cseq;    /* expected next consumer sequence */
        int64_t last_seen_ms;  /* last data or heartbeat (monotonic) */
        bool initial_done;     /* the replay of latest values is complete */
        bool replay_announced; /* -EAGAIN was returned for this replay    */
        unsigned restarts;     /* consumers re-created after gaps/silence */
        char last_error[512];
} kv_watch;

typedef struct kv_watch_entry {
        char *key; /* owned */
        kv_op op;
        uint64_t revision;
        char *value; /* owned, NUL-terminated, NULL if empty */
        size_t len;
        int64_t time_ms;
        bool initial; /* delivered as part of a (re)play of latest values */
} kv_watch_entry;

void kv_watch_entry_fini(kv_watch_entry *e);

/* key: one key or ">" for the whole bucket. name: the consumer name (must
 * be unique per watcher; §4.2 forbids unnamed creates). inbox_prefix: e.g.
 * "_INBOX_<D>" or "_INBOX". */
int kv_watch_start(kv_watch *w, natsConnection *nc, const char *bucket, const char *key, const char *name,
                   const char *inbox_prefix);

/* Waits up to timeout_ms (0: takes only what is already buffered) for the
 * next entry. Returns 0 with *e filled,
 * -ETIMEDOUT when nothing arrived, -EAGAIN once right after the initial
 * replay completed (or after a restart replay), or another negative errno
 * when the consumer could not be re-created (last_error says why; the next
 * call tries again). */
int kv_watch_next(kv_watch *w, int64_t timeout_ms, kv_watch_entry *e);

/* Re-creates the consumer now: the latest value of every key is replayed
 * (restarts counts it). 0 or -errno. */
int kv_watch_restart(kv_watch *w);

/* Deletes the consumer (best effort) and frees everything. Accepts a zeroed
 * struct. */
void kv_watch_stop(kv_watch *w);
