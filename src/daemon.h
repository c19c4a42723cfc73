/* daemon: the one context of cotal-deliveryd. It owns the configuration,
 * the connection, the lease, the workers and the counters; every module
 * gets it passed explicitly. Threads: see README.md "Threading". The only
 * state written from cnats' threads are the atomics under "link" and the
 * permission-violation table "denied" (behind its own mutex). */
#pragma once

#include "broker.h"
#include "config.h"
#include "connlog.h"
#include "creds.h"
#include "denials.h"
#include "contract_constants.h"
#include "contract_subject.h"
#include "lease.h"

#include <jansson.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct fanout;
struct reader;
struct control;
struct roster;
struct daemon;

/* One of the daemon's broker connections as its cnats callbacks see it
 * (links.h): the main one, the fan-out's and the reader's. Written from
 * cnats' callback thread (atomics; wake behind lock), read by the main
 * thread, the link watcher and the worker owning the connection. */
typedef enum {
        DAEMON_LINK_MAIN,
        DAEMON_LINK_FANOUT,
        DAEMON_LINK_READER,
        DAEMON_LINK_KV,
        DAEMON_LINKS
} daemon_link_role;

typedef struct daemon_link {
        struct daemon *d; /* for the callbacks */
        daemon_link_role role;
        const char *name; /* "main", "fanout", "reader": log lines, diagnostics */
        /* The durable the connection pulls from (workers), swept after a
         * disconnect (links.h); NULL for the main connection. */
        const char *stream, *durable;
        atomic_llong down_since_ms; /* monotonic ms; 0 while connected */
        atomic_bool closed;
        atomic_ullong reconnects;
        atomic_uint generation; /* +1 per reconnect: pull_follow_link */
        atomic_bool sweep;      /* a disconnect the watcher has not swept yet */
        pthread_mutex_t lock;   /* guards wake */
        char *wake;             /* owned; poked after a reconnect (pull_wake_subject) */
} daemon_link;

/* What the daemon has done, for logs, sd_notify STATUS and diagnostics. */
typedef struct daemon_counters {
        atomic_ullong chat_handled;      /* chat messages acked by the fan-out */
        atomic_ullong chat_malformed;    /* of those, dropped as malformed */
        atomic_ullong entries_written;   /* inbox entries confirmed (incl. duplicates) */
        atomic_ullong delivered;         /* dlv copies confirmed */
        atomic_ullong dropped;           /* entries dropped by the reader (ACL, interval, malformed) */
        atomic_ullong deferred;          /* entries nak'ed for later */
        atomic_ullong terminated;        /* entries given up on */
        atomic_ullong control_shed;      /* control requests dropped or answered busy (ctlqueue) */
        atomic_ullong mentions_ignored;  /* mentions past FANOUT_MENTIONS_MAX in one message */
        atomic_ullong entries_too_large; /* entries never written: their envelope exceeds max_payload */
        atomic_ullong inbox_lost;        /* INBOX entries removed before the reader first read them (losswatch) */
        atomic_ullong fanout_pauses;     /* E1: times the fan-out began holding entries for owners at the limit */
        /* Gauges: the consumer's num_pending as of its latest delivery
         * (§5.5 metadata), i.e. messages not yet handed to the worker. */
        atomic_ullong fanout_lag, reader_lag;
        atomic_ullong fanout_held; /* E1: chat messages held for owners at the lead limit */
} daemon_counters;

typedef struct daemon {
        config cfg;           /* owned; read by the main thread only once running */
        int argc;             /* for reloads */
        char **argv;          /* borrowed from main() */
        contract_names names; /* owned */
        char *id;             /* <D>, owned */
        char *inbox_prefix;   /* "_INBOX_<D>", owned */
        creds_source creds;   /* valid when creds_loaded; cnats threads read it */
        bool creds_loaded;
        natsConnection *nc; /* main connection, owned */
        /* The fan-out's and the reader's own connections (owned by those
         * modules; daemon_shut_link closes them too). One connection per
         * hot loop: on a shared one, cnats' connection lock and its
         * per-message wake-ups were most of the daemon's CPU time. */
        natsConnection *fanout_nc, *reader_nc;
        /* The KV watches and their fences (kv_cache, every thread's): on a
         * connection of their own, so a fence's STREAM.INFO reply never
         * waits behind megabytes of pulled messages or catch-up copies
         * (issue 14). Opened and closed by main. */
        natsConnection *kv_nc;

        /* link: written by cnats connection callbacks */
        atomic_llong disconnected_since_ms; /* monotonic ms; 0 while connected */
        atomic_bool link_closed;            /* the connection is closed for good */
        atomic_ullong reconnects;
        connlog links; /* the last 64 connection events */
        /* Every connection's state, the main one's included (its
         * disconnected_since_ms / link_closed / reconnects above stay the
         * broker watchdog's, §10.3). */
        daemon_link link[DAEMON_LINKS];
        struct links_watch *watch; /* links.h; NULL until started */
        /* The broker's permission violations on any of our connections,
         * noted by daemon_on_error (its own lock). */
        denials denied;
        int64_t started_wall_ms, started_mono_ms;

        /* lifecycle */
        atomic_bool stopping; /* workers finish their batch and return */
        /* The lease as the workers see it (PROTOCOL §9), set by the main
         * thread: see daemon_may_act. */
        atomic_llong lease_valid_until_ms; /* monotonic; lease_act_until_ms, 0 before the acquire */
        atomic_bool lease_lost;            /* another write took lease.0, or the renew ran out of time */
        int64_t join_deadline_ms;          /* monotonic; see daemon_join */
        atomic_bool link_shut;             /* the connection was closed to unblock workers */

        /* Last loop iteration of each worker (monotonic ms), for the
         * sd_notify watchdog: a wedged loop stops the pings. */
        atomic_llong beat_fanout, beat_reader, beat_control;

        /* Tunables the workers read; the main thread sets them at start
         * and on reload (SIGHUP; the lead limit lives in the ledger). cfg
         * itself is main-thread only. */
        atomic_int fanout_batch, reader_batch;
        /* inflight-mib in bytes: what one worker may hold of message data
         * (pulled, published and not yet answered, held back). */
        atomic_ullong inflight_bytes;

        /* E1: per-owner unread INBOX entries (its own lock). Writers (the
         * fan-out, a join's catch-up) reserve in it, the reader disposes. */
        struct ledger *ledger;

        lease lease; /* main thread only */
        struct roster *roster;
        struct control *control;
        struct fanout *fanout;
        struct reader *reader;
        daemon_counters counters;
        struct diag *diag; /* main thread only; NULL when disabled */
} daemon_ctx;

/* Monotonic / wall-clock milliseconds. */
int64_t daemon_mono_ms(void);
int64_t daemon_wall_ms(void);

/* Sleeps up to ms, returning early once the daemon is stopping. Used only
 * for bounded back-off after errors. */
void daemon_backoff(daemon_ctx *d, int64_t ms);

/* True while a worker may fetch and handle: not stopping, the lease not
 * lost, and its record certainly alive (before lease_valid_until_ms, the
 * send time of the last confirmed lease write plus LEASE_ACT_MS). When
 * false the workers fetch nothing and hand back what they hold unhandled,
 * as when stopping, and wait DAEMON_PAUSE_MS at a time: the main thread
 * either renews (the bound moves) or ends the process. */
bool daemon_may_act(daemon_ctx *d);
#define DAEMON_PAUSE_MS 50

/* Joins a worker thread by d->join_deadline_ms. Past it, the connection
 * is closed so every blocking cnats call returns, then the join completes:
 * shutdown is bounded even when the broker does not answer. */
void daemon_join(daemon_ctx *d, pthread_t thread);

/* Closes the connections (once) so blocked calls return. */
void daemon_shut_link(daemon_ctx *d);

/* Connect timeout of the daemon's connections. cnats 3.4.1 holds a
 * connection's lock through each reconnect attempt (TCP connect and the
 * INFO wait, bounded by this), so any call on that connection may wait up
 * to this long on top of its own timeout while the broker does not answer. */
#define DAEMON_CONNECT_TIMEOUT_MS 2000

/* The daemon's connection settings (§10.2 step 5): servers, creds
 * callbacks (the file is re-read at every reconnect: rotation), the inbox
 * prefix _INBOX_<D> (every reply, pull delivery and watch lands under it),
 * reconnects, and the link callbacks of links.h with link (borrowed) as
 * their argument. name is borrowed. */
broker_config daemon_broker_config(daemon_ctx *d, daemon_link *link, const char *name);

/* §10.2 step 5: the main connection ("cotal:delivery"), whose link state
 * the broker watchdog and the diagnostics read. 0 or -errno (logged). */
int daemon_connect_main(daemon_ctx *d);

/* A connection for one worker ("fanout", "reader", or "kv": the KV watches
 * of every thread), made like the main one (same servers, creds callbacks,
 * inbox prefix _INBOX_<D>, reconnecting forever, the same link callbacks,
 * logs and connection events, under the role's own name) and named
 * "cotal:delivery-<role>". 0 or -errno (logged). */
int daemon_connect_worker(daemon_ctx *d, const char *role, natsConnection **nc);

/* Flushes (bounded), closes and destroys a worker connection; NULLs it. */
void daemon_close_worker(natsConnection **nc);

/* The connections' asynchronous-error callback (arg: the daemon_link). A
 * permission violation is noted in d->denied and logged once per subject
 * at error priority (PROTOCOL §10.3 wording); other errors are logged as
 * warnings. */
void daemon_on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *arg);

/* Ensures a durable consumer of PROTOCOL §3 exists: CONSUMER.INFO, create
 * with exactly config when missing, never modify one that exists (a
 * difference is logged). 0 or -errno; the caller logs failures. */
int daemon_ensure_consumer(daemon_ctx *d, const char *stream, const json_t *consumer_config);
