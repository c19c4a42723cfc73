/* natsd: a real nats-server for tests. Starts "nats-server -js" on
 * 127.0.0.1 with a free port and a fresh temporary store directory, waits
 * until JetStream answers, and stops it by pid. The server dies with the
 * test process (PR_SET_PDEATHSIG), so a crashed test leaves nothing behind. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define NATSD_SKIP 77 /* meson's "skipped" exit status */

typedef struct natsd {
        pid_t pid;
        int port;
        char url[64];  /* nats://127.0.0.1:<port> */
        char dir[256]; /* temp dir: store/, server.log, server.conf */
        char store[300];
        char log[300];
        char conf[300]; /* extra config, if any */
} natsd;

/* The server binary tests run: $COTAL_TEST_NATS_SERVER when set (a path,
 * e.g. a fixed release unpacked by scripts/nats-server-fixed), else
 * "nats-server" from PATH. Borrowed. */
const char *natsd_binary(void);
/* True if that binary is there (tests exit NATSD_SKIP if not). */
bool natsd_available(void);

/* A loopback TCP port that was free a moment ago (> 0), or -errno. */
int natsd_free_port(void);

/* Starts a server. extra_conf: text appended to a config file (NULL for
 * none), e.g. accounts for permission tests. 0 or -errno. */
int natsd_start(natsd *s, const char *extra_conf);

/* Stops the server (SIGTERM, SIGKILL after 10 s), keeps the store. */
int natsd_stop(natsd *s);
/* Starts it again on the same port and store (a broker restart). */
int natsd_restart(natsd *s);
/* Sends a signal (SIGSTOP, SIGCONT, SIGKILL…). SIGKILL also reaps it. */
int natsd_signal(natsd *s, int sig);
/* Stops it if running and removes the temporary directory. */
void natsd_destroy(natsd *s);

/* Monotonic milliseconds, for deadlines. */
int64_t test_now_ms(void);
/* Polls cond(arg) every few ms until it returns true or timeout_ms passes.
 * Returns true if cond became true. Bounded: never waits longer. */
bool test_wait_until(bool (*cond)(void *arg), void *arg, int64_t timeout_ms);
