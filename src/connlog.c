/* connlog: a fixed ring of connection events (see connlog.h). */
#include "connlog.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

void connlog_init(connlog *l)
{
        memset(l, 0, sizeof *l);
        pthread_mutex_init(&l->lock, NULL);
}

void connlog_fini(connlog *l)
{
        pthread_mutex_destroy(&l->lock);
}

/* ASCII only: names and reasons come from cnats and URLs, and the ring is
 * served as JSON strings. */
static void copy_ascii(char *dst, size_t size, const char *src)
{
        size_t n = 0;
        for (const char *p = src ? src : ""; *p && n + 1 < size; p++)
                dst[n++] = (*p >= 0x20 && *p < 0x7f) ? *p : '?';
        dst[n] = '\0';
}

void connlog_add(connlog *l, connlog_kind kind, const char *conn, const char *reason)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        pthread_mutex_lock(&l->lock);
        connlog_event *e = &l->ring[l->total % CONNLOG_SIZE];
        e->wall_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        e->kind = kind;
        copy_ascii(e->conn, sizeof e->conn, conn);
        copy_ascii(e->reason, sizeof e->reason, reason);
        l->total++;
        pthread_mutex_unlock(&l->lock);
}

const char *connlog_kind_name(connlog_kind kind)
{
        static const char *const names[] = {"connect", "disconnect", "reconnect", "closed", "error"};
        return (unsigned)kind < sizeof names / sizeof *names ? names[kind] : "unknown";
}

static void rfc3339_ms(int64_t wall_ms, char *buf, size_t size)
{
        time_t secs = (time_t)(wall_ms / 1000);
        struct tm tm;
        gmtime_r(&secs, &tm);
        char base[32];
        strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(buf, size, "%s.%03dZ", base, (int)(wall_ms % 1000));
}

json_t *connlog_json(connlog *l, uint64_t *total_out)
{
        json_t *arr = json_array();
        if (!arr)
                return NULL;
        pthread_mutex_lock(&l->lock);
        uint64_t n = l->total < CONNLOG_SIZE ? l->total : CONNLOG_SIZE;
        for (uint64_t i = l->total - n; i < l->total; i++) {
                const connlog_event *e = &l->ring[i % CONNLOG_SIZE];
                char when[40];
                rfc3339_ms(e->wall_ms, when, sizeof when);
                json_t *o = json_pack("{s:s, s:s, s:s}", "time", when, "event", connlog_kind_name(e->kind), "reason",
                                      e->reason);
                if (o && e->conn[0])
                        json_object_set_new(o, "connection", json_string(e->conn));
                if (!o || json_array_append_new(arr, o) < 0) {
                        json_decref(arr);
                        arr = NULL;
                        break;
                }
        }
        if (total_out)
                *total_out = l->total;
        pthread_mutex_unlock(&l->lock);
        return arr;
}
