/* links: connection callbacks and the link watcher (see links.h). */
#include "links.h"

#include "broker.h"
#include "contract_subject.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LINKS_SWEEP_TIMEOUT_MS 500 /* one CONSUMER.INFO */
#define LINKS_SWEEP_RETRY_MS 20    /* the server may not have seen the drop yet */
#define LINKS_SWEEP_TRIES 50       /* about a second in all */

struct links_watch {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool pending, stop, running;
        pthread_t thread;
};

static const char *const link_names[DAEMON_LINKS] = {"main", "fanout", "reader", "kv"};

int links_init(daemon_ctx *d)
{
        struct links_watch *w = calloc(1, sizeof *w);
        if (!w)
                return -ENOMEM;
        pthread_mutex_init(&w->lock, NULL);
        pthread_cond_init(&w->cond, NULL);
        d->watch = w;
        for (int i = 0; i < DAEMON_LINKS; i++) {
                daemon_link *l = &d->link[i];
                l->d = d;
                l->role = (daemon_link_role)i;
                l->name = link_names[i];
                pthread_mutex_init(&l->lock, NULL);
        }
        /* The durables the workers pull from (§3), for the sweep. */
        d->link[DAEMON_LINK_FANOUT].stream = d->names.chat_stream;
        d->link[DAEMON_LINK_FANOUT].durable = CONTRACT_FANOUT_DURABLE;
        d->link[DAEMON_LINK_READER].stream = d->names.inbox_stream;
        d->link[DAEMON_LINK_READER].durable = CONTRACT_READER_DURABLE;
        return 0;
}

void links_fini(daemon_ctx *d)
{
        if (!d->watch)
                return;
        for (int i = 0; i < DAEMON_LINKS; i++) {
                free(d->link[i].wake);
                d->link[i].wake = NULL;
                pthread_mutex_destroy(&d->link[i].lock);
        }
        pthread_mutex_destroy(&d->watch->lock);
        pthread_cond_destroy(&d->watch->cond);
        free(d->watch);
        d->watch = NULL;
}

daemon_link *links_of(daemon_ctx *d, natsConnection *nc)
{
        if (!nc)
                return NULL;
        if (nc == d->nc)
                return &d->link[DAEMON_LINK_MAIN];
        if (nc == d->fanout_nc)
                return &d->link[DAEMON_LINK_FANOUT];
        if (nc == d->reader_nc)
                return &d->link[DAEMON_LINK_READER];
        if (nc == d->kv_nc)
                return &d->link[DAEMON_LINK_KV];
        return NULL;
}

int links_set_wake(daemon_link *l, const char *subject)
{
        char *copy = subject ? strdup(subject) : NULL;
        if (subject && !copy)
                return -ENOMEM;
        pthread_mutex_lock(&l->lock);
        free(l->wake);
        l->wake = copy;
        pthread_mutex_unlock(&l->lock);
        return 0;
}

static void signal_watch(daemon_ctx *d)
{
        struct links_watch *w = d->watch;
        pthread_mutex_lock(&w->lock);
        w->pending = true;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->lock);
}

/* cnats connection callbacks: state, one log line, one connection event,
 * and for a worker's drop a word to the watcher. */
void links_on_disconnected(natsConnection *nc, void *arg)
{
        daemon_link *l = arg;
        daemon_ctx *d = l->d;
        long long zero = 0; /* the atomic_llong's own type */
        int64_t now = daemon_mono_ms();
        atomic_compare_exchange_strong(&l->down_since_ms, &zero, now);
        if (l->role == DAEMON_LINK_MAIN) {
                zero = 0;
                atomic_compare_exchange_strong(&d->disconnected_since_ms, &zero, now);
        }
        const char *why = NULL;
        natsStatus s = natsConnection_GetLastError(nc, &why);
        char reason[CONNLOG_REASON_MAX];
        snprintf(reason, sizeof reason, "%s", why && *why ? why : s != NATS_OK ? natsStatus_GetText(s) : "");
        connlog_add(&d->links, CONNLOG_DISCONNECT, l->name, reason);
        /* Our own close at shutdown disconnects too: not worth a warning. */
        if (atomic_load(&d->stopping))
                return;
        log_warning("! delivery endpoint: %s connection disconnected from the broker%s%s; reconnecting", l->name,
                    *reason ? ": " : "", reason);
        if (l->durable) {
                atomic_store(&l->sweep, true);
                signal_watch(d);
        }
}

void links_on_reconnected(natsConnection *nc, void *arg)
{
        daemon_link *l = arg;
        daemon_ctx *d = l->d;
        char url[256] = "";
        natsConnection_GetConnectedUrl(nc, url, sizeof url);
        atomic_store(&l->down_since_ms, 0);
        atomic_fetch_add(&l->reconnects, 1);
        if (l->role == DAEMON_LINK_MAIN) {
                atomic_store(&d->disconnected_since_ms, 0);
                atomic_fetch_add(&d->reconnects, 1);
        }
        /* The generation first: a fetch woken below must see it. */
        atomic_fetch_add(&l->generation, 1);
        /* §11.3 grants no publish to our own inbox, so the wake is the
         * answer to a request the credential does hold (CONSUMER.INFO of
         * the worker's durable); its reply lands on the wake subject. */
        char info[512];
        int n = l->durable ? snprintf(info, sizeof info, "$JS.API.CONSUMER.INFO.%s.%s", l->stream, l->durable) : -1;
        pthread_mutex_lock(&l->lock);
        if (l->wake && n > 0 && (size_t)n < sizeof info)
                (void)natsConnection_PublishRequest(nc, info, l->wake, NULL, 0);
        pthread_mutex_unlock(&l->lock);
        connlog_add(&d->links, CONNLOG_RECONNECT, l->name, url);
        log_notice("Reconnected to %s (%s connection)", url, l->name);
}

void links_on_closed(natsConnection *nc, void *arg)
{
        (void)nc;
        daemon_link *l = arg;
        daemon_ctx *d = l->d;
        long long zero = 0; /* the atomic_llong's own type */
        int64_t now = daemon_mono_ms();
        atomic_compare_exchange_strong(&l->down_since_ms, &zero, now);
        atomic_store(&l->closed, true);
        if (l->role == DAEMON_LINK_MAIN) {
                zero = 0;
                atomic_compare_exchange_strong(&d->disconnected_since_ms, &zero, now);
                atomic_store(&d->link_closed, true);
        }
        bool ours = atomic_load(&d->stopping);
        connlog_add(&d->links, CONNLOG_CLOSED, l->name, ours ? "closed by the daemon" : "closed");
        if (!ours && l->role != DAEMON_LINK_MAIN)
                log_warning("! delivery endpoint: %s connection closed", l->name);
}

static void nap_ms(int64_t ms)
{
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
}

/* See links.h. Bounded: LINKS_SWEEP_TRIES requests at most. */
static void sweep(daemon_ctx *d, daemon_link *l)
{
        int64_t started = daemon_mono_ms();
        for (int i = 0; i < LINKS_SWEEP_TRIES; i++) {
                if (atomic_load(&d->stopping) || !atomic_load(&l->down_since_ms) ||
                    atomic_load(&d->disconnected_since_ms))
                        return; /* back already, or nothing to ask through */
                json_t *reply = NULL;
                jsapi_error jerr;
                uint64_t waiting = 0;
                int r = jsapi_consumer_info(d->nc, l->stream, l->durable, LINKS_SWEEP_TIMEOUT_MS, &reply, &jerr);
                if (r == 0)
                        (void)json_path_u64(reply, "num_waiting", &waiting);
                json_decref(reply);
                if (r == 0 && waiting == 0) {
                        log_info("Cleared the %s connection's pull requests from %s/%s %lld ms after it dropped",
                                 l->name, l->stream, l->durable, (long long)(daemon_mono_ms() - started));
                        return;
                }
                nap_ms(LINKS_SWEEP_RETRY_MS);
        }
        log_info("Pull requests of the %s connection still wait at %s/%s after %d tries; the server drops them at "
                 "their expiry",
                 l->name, l->stream, l->durable, LINKS_SWEEP_TRIES);
}

static void *watch_thread(void *arg)
{
        daemon_ctx *d = arg;
        struct links_watch *w = d->watch;
        for (;;) {
                pthread_mutex_lock(&w->lock);
                while (!w->pending && !w->stop)
                        pthread_cond_wait(&w->cond, &w->lock);
                bool stop = w->stop;
                w->pending = false;
                pthread_mutex_unlock(&w->lock);
                if (stop)
                        return NULL;
                for (int i = 0; i < DAEMON_LINKS; i++) {
                        daemon_link *l = &d->link[i];
                        if (l->durable && atomic_exchange(&l->sweep, false))
                                sweep(d, l);
                }
        }
}

int links_watch_start(daemon_ctx *d)
{
        struct links_watch *w = d->watch;
        int r = pthread_create(&w->thread, NULL, watch_thread, d);
        if (r != 0)
                return -r;
        w->running = true;
        return 0;
}

void links_watch_stop(daemon_ctx *d)
{
        struct links_watch *w = d->watch;
        if (!w || !w->running)
                return;
        pthread_mutex_lock(&w->lock);
        w->stop = true;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->lock);
        pthread_join(w->thread, NULL);
        w->running = false;
}

json_t *links_json(daemon_ctx *d)
{
        json_t *o = json_object();
        int64_t now = daemon_mono_ms();
        natsConnection *conns[DAEMON_LINKS] = {d->nc, d->fanout_nc, d->reader_nc, d->kv_nc};
        for (int i = 0; o && i < DAEMON_LINKS; i++) {
                daemon_link *l = &d->link[i];
                int64_t down = atomic_load(&l->down_since_ms);
                json_t *e = json_pack("{s:b, s:b, s:I, s:I}", "connected", conns[i] && !down, "closed",
                                      atomic_load(&l->closed), "down_ms", down ? (json_int_t)(now - down) : 0,
                                      "reconnects", (json_int_t)atomic_load(&l->reconnects));
                if (e)
                        json_object_set_new(o, l->name, e);
        }
        return o;
}
