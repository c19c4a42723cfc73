/* daemon: helpers shared by the daemon's modules (clocks, back-off, the
 * consumer ensure of §3). */
#include "daemon.h"

#include "broker.h"
#include "clock.h"
#include "links.h"
#include "log.h"
#include "provision.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t daemon_mono_ms(void)
{
        return clock_mono_ms();
}

int64_t daemon_wall_ms(void)
{
        return clock_wall_ms();
}

void daemon_backoff(daemon_ctx *d, int64_t ms)
{
        /* Bounded back-off in 50 ms steps so shutdown is never delayed. */
        int64_t until = daemon_mono_ms() + ms;
        while (!atomic_load(&d->stopping)) {
                int64_t left = until - daemon_mono_ms();
                if (left <= 0)
                        return;
                int64_t step = left < 50 ? left : 50;
                struct timespec ts = {.tv_sec = 0, .tv_nsec = step * 1000000};
                nanosleep(&ts, NULL);
        }
}

bool daemon_may_act(daemon_ctx *d)
{
        return !atomic_load(&d->stopping) && !atomic_load(&d->lease_lost) &&
               daemon_mono_ms() < atomic_load(&d->lease_valid_until_ms);
}

void daemon_shut_link(daemon_ctx *d)
{
        bool expected = false;
        if (!atomic_compare_exchange_strong(&d->link_shut, &expected, true))
                return;
        natsConnection *all[] = {d->nc, d->fanout_nc, d->reader_nc, d->kv_nc};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
                if (all[i])
                        natsConnection_Close(all[i]);
}

/* §10.3's line (denials_report) and a connection event the first time. */
static void note_denial(daemon_ctx *d, const daemon_link *l, const char *text)
{
        denial_op op;
        char subject[DENIALS_SUBJECT_MAX];
        if (denials_report(&d->denied, text, daemon_mono_ms(), &op, subject, sizeof subject) == DENIAL_FIRST) {
                char reason[CONNLOG_REASON_MAX];
                snprintf(reason, sizeof reason, "permission denied: %s \"%.100s\"", denial_op_verb(op), subject);
                connlog_add(&d->links, CONNLOG_ERROR, l->name, reason);
        }
}

void daemon_on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *arg)
{
        const daemon_link *l = arg;
        daemon_ctx *d = l->d;
        /* While this callback runs, cnats has set this thread's last error
         * to the text of the very error reported; the connection's own
         * last error may already be a later one. */
        const char *text = nats_GetLastError(NULL);
        if (!text || !*text)
                natsConnection_GetLastError(nc, &text);
        if (err == NATS_NOT_PERMITTED) {
                note_denial(d, l, text);
                return;
        }
        char reason[CONNLOG_REASON_MAX];
        snprintf(reason, sizeof reason, "%s%s%s (subscription %.64s)", natsStatus_GetText(err), text ? ": " : "",
                 text ? text : "", sub ? natsSubscription_GetSubject(sub) : "-");
        connlog_add(&d->links, CONNLOG_ERROR, l->name, reason);
        log_warning("! delivery endpoint: %s%s%s (subscription %s, %s connection)", natsStatus_GetText(err),
                    text ? ": " : "", text ? text : "", sub ? natsSubscription_GetSubject(sub) : "-", l->name);
}

void daemon_close_worker(natsConnection **nc)
{
        if (!*nc)
                return;
        (void)natsConnection_FlushTimeout(*nc, 1000); /* the last acks */
        natsConnection_Close(*nc);
        natsConnection_Destroy(*nc);
        *nc = NULL;
}

broker_config daemon_broker_config(daemon_ctx *d, daemon_link *link, const char *name)
{
        return (broker_config){
                .servers = d->cfg.server,
                .jwt_cb = d->cfg.no_auth ? NULL : creds_source_jwt_cb,
                .sign_cb = creds_source_sign_cb,
                .creds_arg = &d->creds,
                .inbox_prefix = d->inbox_prefix,
                .name = name,
                .connect_timeout_ms = DAEMON_CONNECT_TIMEOUT_MS,
                .reconnect = true,
                .on_disconnected = links_on_disconnected,
                .on_reconnected = links_on_reconnected,
                .on_closed = links_on_closed,
                .on_error = daemon_on_error,
                .cb_arg = link,
        };
}

int daemon_connect_main(daemon_ctx *d)
{
        char err[512];
        daemon_link *l = &d->link[DAEMON_LINK_MAIN];
        broker_config bc = daemon_broker_config(d, l, "cotal:delivery");
        int r = broker_connect(&bc, &d->nc, err, sizeof err);
        if (r < 0) {
                connlog_add(&d->links, CONNLOG_ERROR, l->name, err);
                log_error("Failed to connect to %s: %s", d->cfg.server, err);
        } else {
                char url[256] = "";
                natsConnection_GetConnectedUrl(d->nc, url, sizeof url);
                connlog_add(&d->links, CONNLOG_CONNECT, l->name, url);
        }
        return r;
}

int daemon_connect_worker(daemon_ctx *d, const char *role, natsConnection **nc)
{
        char err[512], name[64];
        daemon_link_role which = strcmp(role, "reader") == 0 ? DAEMON_LINK_READER
                                 : strcmp(role, "kv") == 0   ? DAEMON_LINK_KV
                                                             : DAEMON_LINK_FANOUT;
        daemon_link *l = &d->link[which];
        snprintf(name, sizeof name, "cotal:delivery-%s", role);
        broker_config bc = daemon_broker_config(d, l, name);
        int r = broker_connect(&bc, nc, err, sizeof err);
        if (r < 0) {
                connlog_add(&d->links, CONNLOG_ERROR, l->name, err);
                log_error("Failed to connect the %s to %s: %s", role, d->cfg.server, err);
        } else {
                char url[256] = "";
                natsConnection_GetConnectedUrl(*nc, url, sizeof url);
                connlog_add(&d->links, CONNLOG_CONNECT, l->name, url);
        }
        return r;
}

void daemon_join(daemon_ctx *d, pthread_t thread)
{
        struct timespec until;
        int64_t left = d->join_deadline_ms - daemon_mono_ms();
        clock_gettime(CLOCK_REALTIME, &until);
        if (left > 0) {
                until.tv_sec += left / 1000;
                until.tv_nsec += (left % 1000) * 1000000;
                if (until.tv_nsec >= 1000000000) {
                        until.tv_sec++;
                        until.tv_nsec -= 1000000000;
                }
        }
        if (left > 0 && pthread_timedjoin_np(thread, NULL, &until) == 0)
                return;
        log_warning("Shutdown deadline passed with work in flight; closing the connection (unacked work is "
                    "redelivered)");
        daemon_shut_link(d);
        pthread_join(thread, NULL);
}

int daemon_ensure_consumer(daemon_ctx *d, const char *stream, const json_t *consumer_config)
{
        const char *durable = json_string_value(json_object_get(consumer_config, "durable_name"));
        char api[512];
        /* §3: "Durable" alone gives the DURABLE.CREATE form, which the
         * delivery credential holds for both CHAT and INBOX. */
        snprintf(api, sizeof api, "$JS.API.CONSUMER.DURABLE.CREATE.%s.%s", stream, durable);
        prov_report rep = {0};
        int r = provision_consumer(d->nc, stream, consumer_config, api, &rep);
        for (size_t i = 0; i < rep.n; i++) {
                const prov_item *it = &rep.items[i];
                char *details = json_dumps(it->details, JSON_COMPACT);
                if (it->action == PROV_CREATED)
                        log_notice("Created durable %s as PROTOCOL §3 specifies", it->name);
                else if (it->action == PROV_CONFLICT)
                        /* §3: never modify an existing one; bind it as it is. */
                        log_warning("Durable %s differs from PROTOCOL §3 (%s); using it unchanged", it->name,
                                    details ? details : "");
                else if (it->action == PROV_FAILED)
                        log_error("Failed to ensure durable %s: %s", it->name, details ? details : "");
                free(details);
        }
        prov_report_fini(&rep);
        return r == -EEXIST ? 0 : r;
}
