/* connproxy: a loopback TCP proxy between the daemon and the test's
 * nats-server. It knows each client connection by the "name" of its NATS
 * CONNECT line (the daemon names its connections "cotal:delivery",
 * "cotal:delivery-fanout", "cotal:delivery-reader", "cotal:delivery-kv"), so
 * a test can reset one of them and keep it from coming back for a while,
 * leaving the others alone (tcpproxy.h delays bytes instead; this one cuts). One
 * thread forwards every connection; only 127.0.0.1 is used; every wait is
 * bounded. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

typedef struct connproxy connproxy;

/* Listens on a free loopback port, forwarding to 127.0.0.1:upstream_port.
 * NULL on failure. */
connproxy *connproxy_start(int upstream_port);
/* Closes every connection and stops the thread; accepts NULL. */
void connproxy_stop(connproxy *p);
/* "nats://127.0.0.1:<port>" of the proxy (borrowed). */
const char *connproxy_url(const connproxy *p);

/* Resets (RST to both ends) every connection whose CONNECT named name,
 * and resets a new one of that name right after its CONNECT until hold_ms
 * have passed. Returns how many were reset; waits (bounded) until done. */
int connproxy_cut(connproxy *p, const char *name, int64_t hold_ms);
/* Open connections named name (CONNECT seen, not reset). */
int connproxy_count(connproxy *p, const char *name);
/* Monotonic ms (test_now_ms) at which the latest connection named name was
 * let through after its CONNECT, 0 if none yet. */
int64_t connproxy_admitted_ms(connproxy *p, const char *name);
