/* cotal-deliveryctl diag: reads the daemon's diagnostics socket (diag.h)
 * without the broker: a table for people, the document with --json. */
#include "ctl.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define DIAG_MAX_BYTES (1 << 20)

/* Reads the whole document (the daemon closes after writing it). */
static int read_socket(const char *path, int64_t timeout_ms, char **out, size_t *len)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(path) >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
                int e = -errno;
                close(fd);
                return e;
        }
        size_t cap = 64 * 1024, n = 0;
        char *buf = malloc(cap + 1);
        int r = buf ? 0 : -ENOMEM;
        int64_t deadline = ctl_now_ms() + timeout_ms;
        while (r == 0) {
                int64_t left = deadline - ctl_now_ms();
                struct pollfd p = {.fd = fd, .events = POLLIN};
                if (left <= 0 || poll(&p, 1, (int)left) == 0) {
                        r = -ETIMEDOUT;
                        break;
                }
                if (n == cap) {
                        char *bigger = cap >= DIAG_MAX_BYTES ? NULL : realloc(buf, cap * 2 + 1);
                        if (!bigger) {
                                r = -EFBIG;
                                break;
                        }
                        buf = bigger;
                        cap *= 2;
                }
                ssize_t got = read(fd, buf + n, cap - n);
                if (got < 0 && errno == EINTR)
                        continue;
                if (got < 0)
                        r = -errno;
                else if (got == 0)
                        break;
                else
                        n += (size_t)got;
        }
        close(fd);
        if (r < 0) {
                free(buf);
                return r;
        }
        buf[n] = '\0';
        *out = buf;
        *len = n;
        return 0;
}

static long long num(const json_t *o, const char *key)
{
        return (long long)json_integer_value(json_object_get(o, key));
}

static const char *str(const json_t *o, const char *key)
{
        const char *s = json_string_value(json_object_get(o, key));
        return s ? s : "-";
}

static void print_table(const json_t *doc)
{
        const json_t *l = json_object_get(doc, "lease"), *k = json_object_get(doc, "link"),
                     *n = json_object_get(doc, "counters"), *w = json_object_get(doc, "workers_last_turn_ms_ago"),
                     *cfg = json_object_get(doc, "config"), *ev = json_object_get(doc, "connection_events");
        printf("daemon   cotal-deliveryd %s, pid %lld, id %s, up %llds\n", str(doc, "version"), num(doc, "pid"),
               str(doc, "id"), num(doc, "uptime_ms") / 1000);
        printf("space    %s\n", str(doc, "space"));
        if (json_is_true(json_object_get(l, "held")))
                printf("lease    %s/%s held, %s, revision %lld, renewed %.1fs ago, %.1fs left\n", str(l, "bucket"),
                       str(l, "key"), json_is_true(json_object_get(l, "ready")) ? "ready" : "not ready",
                       num(l, "revision"), (double)num(l, "renewed_ms_ago") / 1000.0,
                       (double)num(l, "ttl_left_ms") / 1000.0);
        else
                printf("lease    %s/%s not held\n", str(l, "bucket"), str(l, "key"));
        if (json_is_true(json_object_get(k, "connected")))
                printf("link     connected, %lld reconnects\n", num(k, "reconnects"));
        else
                printf("link     DOWN for %.1fs%s, %lld reconnects\n", (double)num(k, "down_ms") / 1000.0,
                       json_is_true(json_object_get(k, "closed")) ? " (closed)" : "", num(k, "reconnects"));
        const json_t *links = json_object_get(doc, "links");
        if (json_object_size(links) > 0) {
                /* Each connection: the workers' own too (older daemons
                 * report only "link"). */
                printf("links   ");
                const char *name;
                json_t *c;
                json_object_foreach ((json_t *)links, name, c) {
                        if (json_is_true(json_object_get(c, "connected")))
                                printf(" %s up (%lld reconnects)", name, num(c, "reconnects"));
                        else
                                printf(" %s DOWN %.1fs%s (%lld reconnects)", name, (double)num(c, "down_ms") / 1000.0,
                                       json_is_true(json_object_get(c, "closed")) ? " closed" : "",
                                       num(c, "reconnects"));
                }
                printf("\n");
        }
        printf("lag      fanout %lld, reader %lld\n", num(n, "fanout_lag"), num(n, "reader_lag"));
        printf("counts   %lld chat messages -> %lld inbox entries (%lld malformed, %lld pauses); delivered %lld, "
               "dropped %lld, deferred %lld, terminated %lld, removed unread by the stream %lld, too large for "
               "the inbox %lld, mentions ignored %lld, control requests shed %lld\n",
               num(n, "chat_handled"), num(n, "entries_written"), num(n, "chat_malformed"), num(n, "fanout_pauses"),
               num(n, "delivered"), num(n, "dropped"), num(n, "deferred"), num(n, "terminated"), num(n, "inbox_lost"),
               num(n, "entries_too_large"), num(n, "mentions_ignored"), num(n, "control_shed"));
        const json_t *lead = json_object_get(doc, "lead");
        if (json_is_object(lead))
                printf("lead     limit %lld entries per owner from its oldest unread one; largest %lld (%s); "
                       "%lld owners, %lld written unread (span %lld), %lld in flight, %lld seeded until seq %lld; "
                       "%lld chat messages held\n",
                       num(lead, "limit"), num(lead, "max"), str(lead, "max_owner"), num(lead, "owners"),
                       num(lead, "unread_written"), num(lead, "span_written"), num(lead, "in_flight"),
                       num(lead, "seeded"), num(lead, "seed_last_seq"), num(lead, "held_messages"));
        printf("workers  last turn: fanout %lldms, reader %lldms, control %lldms ago\n", num(w, "fanout"),
               num(w, "reader"), num(w, "control"));
        const json_t *den = json_object_get(doc, "denials");
        if (num(den, "total") > 0) {
                printf("denied   %lld permission violations (PROTOCOL §11.3 grants missing?):\n", num(den, "total"));
                size_t di;
                json_t *dv;
                json_array_foreach (json_object_get(den, "subjects"), di, dv)
                        printf("  cannot %s \"%s\" x%lld\n", str(dv, "op"), str(dv, "subject"), num(dv, "count"));
                if (num(den, "untracked") > 0)
                        printf("  %lld more on subjects not tracked\n", num(den, "untracked"));
        }
        printf("config  ");
        const char *key;
        json_t *v;
        json_object_foreach ((json_t *)cfg, key, v) {
                char *text = json_is_string(v) ? strdup(json_string_value(v))
                                               : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
                printf(" %s=%s", key, text ? text : "?");
                free(text);
        }
        printf("\n");
        printf("events   last %zu of %lld connection events:\n", json_array_size(ev),
               num(doc, "connection_events_total"));
        size_t i;
        json_array_foreach (ev, i, v)
                printf("  %s  %-10s %-6s %s\n", str(v, "time"), str(v, "event"), str(v, "connection"),
                       str(v, "reason"));
}

int ctl_diag(ctl_ctx *c)
{
        char *fallback = NULL;
        const char *path = c->socket;
        if (!path) {
                if (!c->space || asprintf(&fallback, CTL_DIAG_DIR "/%s/diag.sock", c->space) < 0)
                        return CTL_EXIT_FAILURE;
                path = fallback;
        }
        if (!path) /* for the compiler: asprintf succeeded */
                return CTL_EXIT_FAILURE;
        char *text = NULL;
        size_t len = 0;
        int r = read_socket(path, c->timeout_ms, &text, &len);
        if (r < 0) {
                fprintf(stderr, "cotal-deliveryctl: no diagnostics from %s: %s%s\n", path, strerror(-r),
                        r == -ENOENT || r == -ECONNREFUSED ? " (is the daemon running? pass --socket PATH)" : "");
                free(fallback);
                return r == -ENOENT ? CTL_EXIT_ABSENT : CTL_EXIT_FAILURE;
        }
        json_error_t jerr;
        json_t *doc = json_loadb(text, len, 0, &jerr);
        free(text);
        if (!json_is_object(doc)) {
                fprintf(stderr, "cotal-deliveryctl: %s answered something that is not a JSON object: %s\n", path,
                        jerr.text);
                json_decref(doc);
                free(fallback);
                return CTL_EXIT_FAILURE;
        }
        free(fallback);
        if (c->json)
                ctl_print_json(doc);
        else {
                print_table(doc);
                json_decref(doc);
        }
        return CTL_EXIT_OK;
}
