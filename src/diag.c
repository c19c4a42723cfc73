/* diag: the diagnostics socket (see diag.h). */
#include "diag.h"
#include "build_config.h"

#include "contract_config.h"
#include "ledger.h"
#include "links.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define DIAG_CLIENTS_PER_TICK 8

struct diag {
        int fd;
        char *path;
};

static int fill_addr(struct sockaddr_un *sa, const char *path)
{
        memset(sa, 0, sizeof *sa);
        sa->sun_family = AF_UNIX;
        if (strlen(path) >= sizeof sa->sun_path)
                return -ENAMETOOLONG;
        memcpy(sa->sun_path, path, strlen(path) + 1);
        return 0;
}

/* A socket file at path: live (someone accepts) or stale (a dead
 * daemon's)? Only a stale one may be replaced. */
static int clear_stale(const char *path, const struct sockaddr_un *sa)
{
        struct stat st;
        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISSOCK(st.st_mode))
                return -EEXIST;
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe < 0)
                return -errno;
        int r = connect(probe, (const struct sockaddr *)sa, sizeof *sa);
        close(probe);
        if (r == 0)
                return -EADDRINUSE;
        return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
}

int diag_open(daemon_ctx *d, const char *path, char *err, size_t err_size)
{
        struct sockaddr_un sa;
        int r = fill_addr(&sa, path);
        if (r == 0)
                r = clear_stale(path, &sa);
        if (r < 0) {
                snprintf(err, err_size, "%s",
                         r == -EADDRINUSE ? "another daemon is serving it"
                         : r == -EEXIST   ? "a file that is not a socket is in the way"
                                          : strerror(-r));
                return r;
        }
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
                r = -errno;
                snprintf(err, err_size, "socket: %s", strerror(errno));
                return r;
        }
        /* 0600 from the start: bind creates the file under the umask, and
         * no other thread creates files this early. */
        mode_t old = umask(0177);
        r = bind(fd, (const struct sockaddr *)&sa, sizeof sa) < 0 ? -errno : 0;
        umask(old);
        if (r == 0 && chmod(path, 0600) < 0)
                r = -errno;
        if (r == 0 && listen(fd, 16) < 0)
                r = -errno;
        struct diag *g = r == 0 ? calloc(1, sizeof *g) : NULL;
        if (r == 0 && (!g || !(g->path = strdup(path)))) {
                free(g);
                g = NULL;
                r = -ENOMEM;
        }
        if (r < 0) {
                snprintf(err, err_size, "%s", strerror(-r));
                close(fd);
                return r;
        }
        g->fd = fd;
        d->diag = g;
        return 0;
}

void diag_close(daemon_ctx *d)
{
        struct diag *g = d->diag;
        if (!g)
                return;
        close(g->fd);
        (void)unlink(g->path);
        free(g->path);
        free(g);
        d->diag = NULL;
}

char *diag_redact_url(const char *url)
{
        /* Per comma-separated URL, the userinfo before "@" becomes three stars.
         * "***" is at most 3 bytes longer than the userinfo it replaces. */
        size_t n = strlen(url);
        char *out = malloc(n + 4 * (n + 1) + 1);
        if (!out)
                return NULL;
        size_t o = 0;
        for (const char *p = url; *p;) {
                size_t len = strcspn(p, ",");
                const char *scheme = strstr(p, "://");
                const char *host = scheme && scheme < p + len ? scheme + 3 : p;
                /* cnats (natsUrl_Create) ends the user info at the LAST
                 * '@', so a password may hold '@'; the first one would leave
                 * the rest of it in the document. */
                const char *at = memrchr(host, '@', len - (size_t)(host - p));
                if (at) {
                        memcpy(out + o, p, (size_t)(host - p));
                        o += (size_t)(host - p);
                        memcpy(out + o, "***", 3);
                        o += 3;
                        memcpy(out + o, at, len - (size_t)(at - p));
                        o += len - (size_t)(at - p);
                } else {
                        memcpy(out + o, p, len);
                        o += len;
                }
                p += len;
                if (*p == ',')
                        out[o++] = *p++;
        }
        out[o] = '\0';
        return out;
}

/* Every setting (config.h's table), with the config file's path; URL
 * passwords masked; the creds path is not a secret and its contents are
 * never read here. */
static json_t *config_json(const config *c)
{
        json_t *o = json_object();
        for (size_t i = 0; o && i < config_n_keys; i++) {
                const config_key *k = &config_keys[i];
                json_t *v;
                if (k->type == CONFIG_STRING) {
                        const char *text = config_string(c, k);
                        char *masked = k->redact && text ? diag_redact_url(text) : NULL;
                        v = text ? json_string(masked ? masked : text) : json_null();
                        free(masked);
                } else if (k->type == CONFIG_BOOL) {
                        v = json_boolean(config_number(c, k));
                } else if (k->type == CONFIG_LEVEL) {
                        v = json_string(log_level_to_string((int)config_number(c, k)));
                } else {
                        v = json_integer((json_int_t)config_number(c, k));
                }
                json_object_set_new(o, k->name, v);
        }
        if (o)
                json_object_set_new(o, "config", c->config_file ? json_string(c->config_file) : json_null());
        return o;
}

static json_t *counters_json(daemon_counters *c)
{
        return json_pack(
                "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "chat_handled",
                (json_int_t)atomic_load(&c->chat_handled), "chat_malformed",
                (json_int_t)atomic_load(&c->chat_malformed), "entries_written",
                (json_int_t)atomic_load(&c->entries_written), "delivered", (json_int_t)atomic_load(&c->delivered),
                "dropped", (json_int_t)atomic_load(&c->dropped), "deferred", (json_int_t)atomic_load(&c->deferred),
                "terminated", (json_int_t)atomic_load(&c->terminated), "control_shed",
                (json_int_t)atomic_load(&c->control_shed), "mentions_ignored",
                (json_int_t)atomic_load(&c->mentions_ignored), "entries_too_large",
                (json_int_t)atomic_load(&c->entries_too_large), "inbox_lost", (json_int_t)atomic_load(&c->inbox_lost),
                "fanout_pauses", (json_int_t)atomic_load(&c->fanout_pauses), "fanout_lag",
                (json_int_t)atomic_load(&c->fanout_lag), "reader_lag", (json_int_t)atomic_load(&c->reader_lag));
}

/* Where the creds come from and how rotation went; never their contents. */
static json_t *creds_json(daemon_ctx *d)
{
        if (!d->creds_loaded)
                return json_null();
        creds_source *c = &d->creds;
        pthread_mutex_lock(&c->lock);
        json_t *o = json_pack("{s:s, s:I, s:s?}", "path", c->path, "rotations", (json_int_t)c->rotations,
                              "last_rejection", c->last_error[0] ? c->last_error : NULL);
        pthread_mutex_unlock(&c->lock);
        return o;
}

/* E1: the per-owner accounting of unread inbox entries and what the
 * fan-out holds for owners at the limit. */
static json_t *lead_json(daemon_ctx *d)
{
        if (!d->ledger)
                return json_null();
        ledger_stats st;
        ledger_get_stats(d->ledger, &st);
        return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s, s:I, s:I}", "limit",
                         (json_int_t)ledger_limit(d->ledger), "owners", (json_int_t)st.owners, "unread_written",
                         (json_int_t)st.unread, "span_written", (json_int_t)st.span, "in_flight",
                         (json_int_t)st.in_flight, "seeded", (json_int_t)st.seeded, "seed_last_seq",
                         (json_int_t)st.seed_last, "reader_unread", (json_int_t)st.broker_unread, "reader_floor",
                         (json_int_t)st.floor, "max", (json_int_t)st.max, "max_owner", st.max_owner, "held_messages",
                         (json_int_t)atomic_load(&d->counters.fanout_held), "seeds", (json_int_t)st.epoch);
}

static json_int_t age_ms(int64_t now, int64_t then)
{
        return then ? (json_int_t)(now - then) : -1;
}

json_t *diag_snapshot(daemon_ctx *d)
{
        int64_t now = daemon_mono_ms();
        int64_t down_since = atomic_load(&d->disconnected_since_ms);
        const lease *l = &d->lease;
        bool held = l->revision != 0;
        uint64_t events_total = 0;
        json_t *events = connlog_json(&d->links, &events_total);
        json_t *doc = json_pack(
                "{s:s, s:s?, s:s?, s:i, s:I, s:I,"
                " s:{s:s?, s:s, s:s?, s:b, s:b, s:I, s:I, s:I},"
                " s:{s:b, s:b, s:I, s:I},"
                " s:o?, s:{s:I, s:I, s:I}, s:o?, s:o?, s:I, s:o?}",
                "version", PACKAGE_VERSION, "space", d->cfg.space, "id", d->id, "pid", (int)getpid(), "started_at_ms",
                (json_int_t)d->started_wall_ms, "uptime_ms", (json_int_t)(now - d->started_mono_ms), "lease", "bucket",
                d->names.delivery_bucket, "key", "lease.0", "holder", l->holder, "held", held, "ready",
                held && l->ready, "revision", (json_int_t)l->revision, "renewed_ms_ago",
                held ? (json_int_t)(now - l->last_write_ms) : (json_int_t)-1, "ttl_left_ms",
                held ? (json_int_t)(CONTRACT_LEASE_TTL_MS - (now - l->last_write_ms)) : (json_int_t)-1, "link",
                "connected", d->nc && !down_since, "closed", atomic_load(&d->link_closed), "down_ms",
                down_since ? (json_int_t)(now - down_since) : (json_int_t)0, "reconnects",
                (json_int_t)atomic_load(&d->reconnects), "counters", counters_json(&d->counters),
                "workers_last_turn_ms_ago", "fanout", age_ms(now, atomic_load(&d->beat_fanout)), "reader",
                age_ms(now, atomic_load(&d->beat_reader)), "control", age_ms(now, atomic_load(&d->beat_control)),
                "config", config_json(&d->cfg), "creds", creds_json(d), "connection_events_total",
                (json_int_t)events_total, "connection_events", events);
        if (doc) {
                json_object_set_new(doc, "denials", denials_json(&d->denied));
                json_object_set_new(doc, "lead", lead_json(d));
                /* Per connection: "link" above is the main one's. */
                json_object_set_new(doc, "links", links_json(d));
        }
        return doc;
}

/* One client: the document, then EOF. Never blocks: the socket buffer
 * holds a document this size, and a client that is not reading loses it. */
static void answer(daemon_ctx *d, int client)
{
        json_t *doc = diag_snapshot(d);
        char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
        json_decref(doc);
        if (!text) {
                log_warning("Diagnostics: could not build the document for a client on %s", d->diag->path);
                return;
        }
        size_t len = strlen(text), off = 0;
        while (off < len) {
                ssize_t w = send(client, text + off, len - off, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (w <= 0) {
                        log_debug("Diagnostics: client on %s went away after %zu of %zu bytes", d->diag->path, off,
                                  len);
                        break;
                }
                off += (size_t)w;
        }
        if (off == len)
                (void)send(client, "\n", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
        free(text);
}

void diag_serve(daemon_ctx *d)
{
        struct diag *g = d->diag;
        if (!g)
                return;
        for (int i = 0; i < DIAG_CLIENTS_PER_TICK; i++) {
                int c = accept4(g->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (c < 0) {
                        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
                                log_warning("Diagnostics: accept on %s failed: %s", g->path, strerror(errno));
                        return;
                }
                /* Room for the whole document in the kernel buffer. */
                int sndbuf = 256 * 1024;
                (void)setsockopt(c, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
                answer(d, c);
                close(c);
        }
}
