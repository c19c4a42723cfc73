/* links: the daemon's broker connections (main, fan-out, reader) as their
 * cnats callbacks report them: per-connection state, log lines and
 * connection events naming the connection, and the link watcher, a thread
 * that acts on a worker connection's disconnect (below). Callbacks only
 * store state and signal: nothing blocks a cnats callback thread. The
 * broker watchdog (§10.3) keeps judging the main connection alone. */
#pragma once

#include "daemon.h"

#include <jansson.h>
#include <nats/nats.h>

/* Before any connection is made / after every one is destroyed (and
 * cnats' threads are gone: nats_CloseAndWait). */
int links_init(daemon_ctx *d);
void links_fini(daemon_ctx *d);

/* Connection callbacks; arg: the daemon_link (broker_config.cb_arg). */
void links_on_disconnected(natsConnection *nc, void *arg);
void links_on_reconnected(natsConnection *nc, void *arg);
void links_on_closed(natsConnection *nc, void *arg);

/* The link of one of the daemon's connections, or NULL. */
daemon_link *links_of(daemon_ctx *d, natsConnection *nc);

/* A subject that gets a message right after the link reconnects
 * (pull_wake_subject), NULL for none; copied. The message is the answer
 * to a CONSUMER.INFO of the link's durable sent with that reply subject:
 * the delivery credential may not publish to its own inbox (§11.3).
 * 0 or -ENOMEM. */
int links_set_wake(daemon_link *l, const char *subject);

/* The link watcher. After a worker connection drops, nats-server 2.9
 * keeps that worker's pull requests waiting without reply interest, and a
 * redelivery coming due then is lost until the next ack_wait
 * (research/cnats.md pitfall 12). The watcher asks CONSUMER.INFO for the
 * worker's durable over the main connection, which makes the server drop
 * those requests at once (it prunes uninterested ones when it reports
 * num_waiting), and repeats until none is left or the link is back. The
 * redelivery then waits for the reconnected worker's next request, which
 * the pull client sends at once (pull_follow_link). Started once the main
 * connection is up, stopped before it closes. 0 or -errno. */
int links_watch_start(daemon_ctx *d);
void links_watch_stop(daemon_ctx *d);

/* {"main": {...}, "fanout": {...}, "reader": {...}} for the diagnostics:
 * connected, closed, down_ms, reconnects per connection made. Owned. */
json_t *links_json(daemon_ctx *d);
