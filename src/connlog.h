/* connlog: the last CONNLOG_SIZE connection events (connect, disconnect,
 * reconnect, closed, error) with wall-clock time and reason, so a link
 * that flapped and healed minutes ago is still visible in diagnostics.
 * Written from cnats' callback threads and read by the main thread: every
 * call takes the ring's mutex. */
#pragma once

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>

#define CONNLOG_SIZE 64
#define CONNLOG_REASON_MAX 160

typedef enum {
        CONNLOG_CONNECT,
        CONNLOG_DISCONNECT,
        CONNLOG_RECONNECT,
        CONNLOG_CLOSED,
        CONNLOG_ERROR,
} connlog_kind;

#define CONNLOG_CONN_MAX 16

typedef struct connlog_event {
        int64_t wall_ms;
        connlog_kind kind;
        char conn[CONNLOG_CONN_MAX]; /* which connection: "main", "fanout", "reader"; "" if none */
        char reason[CONNLOG_REASON_MAX];
} connlog_event;

typedef struct connlog {
        pthread_mutex_t lock;
        connlog_event ring[CONNLOG_SIZE];
        uint64_t total; /* events ever recorded; ring[(total - 1) % SIZE] is the newest */
} connlog;

void connlog_init(connlog *l);
void connlog_fini(connlog *l);
/* Records an event on connection conn (NULL: none named); conn and reason
 * are truncated to fit (NULL: empty). */
void connlog_add(connlog *l, connlog_kind kind, const char *conn, const char *reason);
/* "connect", "disconnect", … */
const char *connlog_kind_name(connlog_kind kind);
/* The retained events, oldest first, as a JSON array of {"time" (RFC 3339
 * UTC, ms), "event", "connection" (when named), "reason"}; *total_out (may be NULL) gets the count
 * ever recorded. NULL on allocation failure. */
json_t *connlog_json(connlog *l, uint64_t *total_out);
