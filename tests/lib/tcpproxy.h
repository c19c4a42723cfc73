/* tcpproxy: a loopback TCP relay in front of the test broker that can hold
 * back everything the broker sends to its clients, for a while or from the
 * moment a client sends given bytes, so a test can make a reply (a PubAck)
 * arrive late after its request was stored, or stop a client at an exact
 * point of its protocol, without touching the broker. Bytes are delayed,
 * never dropped or reordered, so the NATS protocol stays intact. One
 * thread; every wait is bounded. */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define TCPPROXY_MAX_PAIRS 8

typedef struct tcpproxy {
        int listen_fd;
        int upstream_port;
        char url[64]; /* nats://127.0.0.1:<port> */
        pthread_t thread;
        atomic_bool stop;
        /* Monotonic ms (test_now_ms) until which broker->client bytes are
         * kept back; 0: pass them on at once. */
        atomic_llong hold_until_ms;
        struct tcpproxy_pair *pairs; /* owned by the thread */
        /* Trigger (tcpproxy_hold_at): set before the traffic it watches. */
        char needle[256];
        atomic_int needle_left; /* occurrences still to see; 0: disarmed */
        atomic_bool triggered;
} tcpproxy;

/* Listens on a free loopback port and relays to 127.0.0.1:upstream_port.
 * 0 or -errno. */
int tcpproxy_start(tcpproxy *p, int upstream_port);
/* Keeps broker->client bytes back until test_now_ms() + ms. */
void tcpproxy_hold_for(tcpproxy *p, int64_t ms);
/* Holds broker->client bytes (on every connection) from the moment a
 * client has sent needle for the nth time (n >= 1), until tcpproxy_release.
 * The client's bytes still reach the broker. A needle split across two
 * reads is not seen: use a short one. */
void tcpproxy_hold_at(tcpproxy *p, const char *needle, int nth);
/* The trigger of tcpproxy_hold_at fired (the hold is on). */
bool tcpproxy_triggered(tcpproxy *p);
/* Ends any hold; disarms the trigger. */
void tcpproxy_release(tcpproxy *p);
/* Stops the thread and closes every connection. Accepts a zeroed struct. */
void tcpproxy_stop(tcpproxy *p);
