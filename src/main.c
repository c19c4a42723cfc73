/* cotal-deliveryd: the Plane-3 durable-delivery daemon of one Cotal space.
 * main() reads like PROTOCOL §10.2: arguments, creds, reachability,
 * connect, lease, bind (control, fan-out, reader), ready, loop; teardown
 * runs the same steps backwards. Signals are taken synchronously with
 * sigtimedwait on this thread: no handler runs anywhere. SIGTERM/SIGINT
 * stop, SIGHUP reloads the configuration (E5). */
#include "build_config.h"
#include "broker.h"
#include "config.h"
#include "contract_config.h"
#include "contract_constants.h"
#include "contract_js.h"
#include "contract_record.h"
#include "control.h"
#include "creds.h"
#include "daemon.h"
#include "diag.h"
#include "fanout.h"
#include "ledger.h"
#include "ledger_sync.h"
#include "links.h"
#include "log.h"
#include "notify.h"
#include "reader.h"
#include "roster.h"
#include "watchdog.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAIN_TICK_MS 100
#define ROSTER_LOAD_TIMEOUT_MS 5000
#define STATUS_PERIOD_MS 5000
#define MALLOC_ARENAS 2     /* see main() */
#define STANDBY_POLL_MS 100 /* --standby: lease key reads */
/* PROTOCOL §9 renew and the lease check. The record lives 30 s from its
 * store time; the holder acts only LEASE_ACT_MS (27 s) past the send time
 * of its last confirmed write (lease.h). A renew that could not complete
 * (no answer, or the bucket's stream electing a leader in a cluster) is
 * retried LEASE_RETRY_MS after the failed try ended, but a try starts only
 * if it ends by then even when it takes LEASE_TRY_BOUND_MS: its KV timeout,
 * plus the connection lock cnats holds through a reconnect attempt (see
 * DAEMON_CONNECT_TIMEOUT_MS). While the link is down no try is sent (it
 * would only wait for the reconnect). Between renews lease.0 is read every
 * LEASE_CHECK_MS (§11.3 grants no consumer on that bucket, so no watch):
 * another holder's write stops the workers within about a second instead
 * of at the next renew. A read costs ~150 µs and is bounded by
 * LEASE_CHECK_TIMEOUT_MS, so it never holds a renew back by more. */
#define LEASE_RETRY_MS 1000
#define LEASE_TRY_TIMEOUT_MS 2000
#define LEASE_TRY_BOUND_MS (LEASE_TRY_TIMEOUT_MS + DAEMON_CONNECT_TIMEOUT_MS)
#define LEASE_CHECK_MS 1000
#define LEASE_CHECK_TIMEOUT_MS 500

/* A worker whose loop has not turned for this long is wedged: a batch
 * waits at most ~10 s for PubAcks and a join's catch-up is bounded by its
 * fetch expiries, so 45 s leaves room for both. */
#define WORKER_STALE_MS 45000

enum { EXIT_USAGE = 2 };

/* §10.2 step 4: a fresh connection, 1000 ms, no reconnects. An
 * authorization rejection still proves the broker is there. */
static bool reachable(daemon_ctx *d)
{
        natsConnection *probe = NULL;
        char err[512];
        broker_config bc = {
                .servers = d->cfg.server,
                .jwt_cb = d->cfg.no_auth ? NULL : creds_source_jwt_cb,
                .sign_cb = creds_source_sign_cb,
                .creds_arg = &d->creds,
                .connect_timeout_ms = CONTRACT_PROBE_TIMEOUT_MS,
                .name = "cotal:delivery-probe",
        };
        int r = broker_connect(&bc, &probe, err, sizeof err);
        if (probe) {
                natsConnection_Close(probe);
                natsConnection_Destroy(probe);
        }
        return r == 0 || r == -EACCES;
}

/* §10.2 step 5: the streams and buckets the daemon relies on must exist. */
static int check_streams(daemon_ctx *d)
{
        const char *streams[8] = {d->names.chat_stream, d->names.inbox_stream, d->names.dlv_stream};
        char *kv[BUCKET_COUNT_] = {0};
        int n = 3, r = 0;
        for (int b = 0; b < BUCKET_COUNT_; b++)
                streams[n++] = kv[b] = contract_bucket_stream(contract_bucket_name(&d->names, (contract_bucket)b));
        for (int i = 0; i < n && r == 0; i++) {
                json_t *reply = NULL;
                jsapi_error jerr;
                if (!streams[i]) {
                        r = -ENOMEM;
                        break;
                }
                r = jsapi_stream_info(d->nc, streams[i], NULL, 0, &reply, &jerr);
                json_decref(reply);
                if (r < 0)
                        log_error("Stream %s is not usable: %s (provision the space first: cotal up, or "
                                  "cotal-deliveryctl provision)",
                                  streams[i], jerr.description);
        }
        for (int b = 0; b < BUCKET_COUNT_; b++)
                free(kv[b]);
        return r;
}

/* STATUS= for `systemctl status`: lease, link, lag, what was done. */
static void status_line(daemon_ctx *d, char *buf, size_t size)
{
        daemon_counters *c = &d->counters;
        int64_t down = atomic_load(&d->disconnected_since_ms);
        char link[64] = "link up";
        if (down)
                snprintf(link, sizeof link, "link DOWN for %llds", (long long)((daemon_mono_ms() - down) / 1000));
        snprintf(buf, size,
                 "lease held (ready, rev %llu); %s; lag fanout %llu, reader %llu; fanned out %llu messages into %llu "
                 "entries; delivered %llu, dropped %llu, deferred %llu",
                 (unsigned long long)d->lease.revision, link, (unsigned long long)atomic_load(&c->fanout_lag),
                 (unsigned long long)atomic_load(&c->reader_lag), (unsigned long long)atomic_load(&c->chat_handled),
                 (unsigned long long)atomic_load(&c->entries_written), (unsigned long long)atomic_load(&c->delivered),
                 (unsigned long long)atomic_load(&c->dropped), (unsigned long long)atomic_load(&c->deferred));
}

#define RELEASE_TIMEOUT_MS 1000

/* The connection every thread's KV watches share (daemon.h kv_nc). */
static int connect_kv(daemon_ctx *d)
{
        return daemon_connect_worker(d, "kv", &d->kv_nc);
}

/* Stops the workers (bounded by the shutdown timeout; with the broker gone
 * the link is closed first), releases the lease if still ours, closes. */
static void teardown(daemon_ctx *d, bool release, bool broker_gone)
{
        atomic_store(&d->stopping, true);
        d->join_deadline_ms = daemon_mono_ms() + d->cfg.shutdown_timeout_ms;
        if (broker_gone)
                daemon_shut_link(d);
        reader_stop(d);
        fanout_stop(d);
        control_stop(d);
        daemon_close_worker(&d->kv_nc);
        roster_stop(d);
        if (release && d->lease.revision && !atomic_load(&d->link_shut)) {
                d->lease.kv.timeout_ms = RELEASE_TIMEOUT_MS;
                int r = lease_release(&d->lease);
                if (r == 0)
                        log_info("Released the lease %s/%s", d->names.delivery_bucket, CONTRACT_LEASE_KEY);
                else
                        log_notice("Did not release the lease: %s", d->lease.last_error);
        }
        lease_fini(&d->lease);
        links_watch_stop(d);
        if (d->nc) {
                if (!atomic_load(&d->link_shut))
                        (void)natsConnection_FlushTimeout(d->nc, RELEASE_TIMEOUT_MS); /* pending acks */
                natsConnection_Close(d->nc);
                natsConnection_Destroy(d->nc);
                d->nc = NULL;
        }
}

static void publish_tunables(daemon_ctx *d)
{
        log_set_max_level(d->cfg.log_level);
        atomic_store(&d->fanout_batch, d->cfg.fanout_batch);
        atomic_store(&d->reader_batch, d->cfg.reader_batch);
        atomic_store(&d->inflight_bytes, (unsigned long long)d->cfg.inflight_mib << 20);
        if (d->ledger)
                ledger_set_limit(d->ledger, (size_t)d->cfg.inbox_lead_limit);
}

/* SIGHUP re-reads the creds file too, so an operator learns at once
 * whether a rotated file will be taken at the next reconnect. */
static void reload_creds(daemon_ctx *d)
{
        if (!d->creds_loaded)
                return;
        char err[512];
        int r = creds_source_reload(&d->creds, err, sizeof err);
        if (r == 1)
                log_notice("Reloaded creds %s: new JWT for %s, used from the next reconnect", d->creds.path, d->id);
        else if (r == 0)
                log_info("Reloaded creds %s: unchanged", d->creds.path);
        else
                log_warning("Rejected the creds file on reload: %s; keeping the last good creds", err);
}

/* SIGHUP: re-reads flags, environment and --config file. What can change
 * at run time is applied and logged; what cannot is reported and kept; a
 * bad configuration is rejected as a whole and the running one stays. */
static void reload(daemon_ctx *d)
{
        config next;
        char err[1024];
        notify_reloading("reloading the configuration");
        config_result r = config_load(&next, d->argc, d->argv, err, sizeof err);
        if (r != CONFIG_OK) {
                log_error("Failed to reload the configuration: %s; keeping the running one", err);
                config_fini(&next);
                notify_ready("reload rejected; running configuration kept");
                return;
        }
        reload_creds(d);
        /* Row by row (config.h): what SIGHUP may change is applied and
         * logged, the rest reported and kept for the next start. */
        int changed = 0;
        for (size_t i = 0; i < config_n_keys; i++) {
                const config_key *k = &config_keys[i];
                if (config_same(&d->cfg, &next, k))
                        continue;
                if (k->applies == CONFIG_AT_START) {
                        log_warning("Configuration: %s changed; it takes effect at the next start", k->name);
                        continue;
                }
                char was[128], now[128];
                config_format(&d->cfg, k, was, sizeof was);
                config_format(&next, k, now, sizeof now);
                if (config_copy(&d->cfg, &next, k) < 0) {
                        log_error("Failed to apply %s: out of memory; keeping %s", k->name, was);
                        continue;
                }
                log_notice("Reloaded %s: %s -> %s", k->name, was, now);
                changed++;
        }
        config_fini(&next);
        publish_tunables(d);
        log_notice("Reloaded the configuration: %d setting%s changed", changed, changed == 1 ? "" : "s");
        notify_ready("configuration reloaded");
}

/* SIGHUPs are coalesced: at most one reload every RELOAD_MIN_MS, the
 * signals in between applied together once it is due. The loops never
 * skip their lease and watchdog work for a reload (issue 14 item 6: a
 * SIGHUP every 50 ms once kept the renew from ever running). */
#define RELOAD_MIN_MS 1000

typedef struct reload_gate {
        uint64_t pending; /* SIGHUPs taken since the last reload */
        int64_t last_ms;  /* monotonic: the last reload (0: none) */
} reload_gate;

/* What both loops keep across standby and run. */
typedef struct main_loop {
        reload_gate reload;
        watchdog_stalls stall;
} main_loop;

/* Waits for one of signals at most tick_ms, crediting any lateness. */
static int wait_signal(main_loop *ml, const sigset_t *signals, int64_t tick_ms)
{
        struct timespec tick = {.tv_sec = tick_ms / 1000, .tv_nsec = (tick_ms % 1000) * 1000000L};
        siginfo_t si;
        int64_t t0 = daemon_mono_ms();
        int sig = sigtimedwait(signals, &si, &tick);
        watchdog_note_wait(&ml->stall, tick_ms, t0, daemon_mono_ms());
        if (sig == SIGHUP)
                ml->reload.pending++;
        return sig;
}

static void reload_when_due(daemon_ctx *d, reload_gate *g, int64_t now)
{
        if (!g->pending || (g->last_ms && now - g->last_ms < RELOAD_MIN_MS))
                return;
        if (g->pending > 1)
                log_info("Reloading once for %llu SIGHUPs (at most one reload every %d ms)",
                         (unsigned long long)g->pending, RELOAD_MIN_MS);
        g->pending = 0;
        g->last_ms = now;
        reload(d);
}

enum { RUN_STOPPED = 0, RUN_FAILED = 1, RUN_BROKER_GONE = 2 };

/* True once the broker has been unreachable past broker-gone-ms (§10.3),
 * by the time this process could run (watchdog.h). */
static bool broker_gone(daemon_ctx *d, const watchdog_stalls *s, int64_t now)
{
        watchdog_verdict v = watchdog_judge(s, atomic_load(&d->disconnected_since_ms), now, d->cfg.broker_gone_ms);
        if (!v.gone)
                return false;
        char n[40];
        contract_js_number((double)d->cfg.broker_gone_ms / 1000.0, n, sizeof n);
        log_error("✗ delivery: broker unreachable for >%ss — exiting (coupled to the broker)", n);
        if (v.stalled_ms > 0)
                log_notice("Disconnected for %.1f s, %.1f s of which this process was not scheduled%s",
                           (double)v.down_ms / 1000.0, (double)v.stalled_ms / 1000.0,
                           v.backstop ? " (past the hard limit of the plain clock)" : "");
        return true;
}

/* §10.4 during start-up: a SIGTERM or SIGINT already pending ends the
 * start between two steps of §10.2 (each step is bounded: a signal that
 * comes during one is taken when it returns). Taken without waiting; a
 * SIGHUP stays pending for run(). after names the step just done. */
static bool stop_requested(const sigset_t *stops, const char *after)
{
        struct timespec now = {0, 0};
        siginfo_t si;
        int sig = sigtimedwait(stops, &si, &now);
        if (sig != SIGTERM && sig != SIGINT)
                return false;
        log_notice("Received %s during start-up, after %s; stopping", strsignal(sig), after);
        return true;
}

/* --standby (beyond upstream, §14.4 style: nothing changes on the wire):
 * the lease is held, so wait instead of exiting, and take it over as soon
 * as the key is free — deleted by its holder's release (§9) or aged out by
 * the bucket TTL after a crash. §11.3 grants no consumer on the delivery
 * bucket, so the key is read with STREAM.MSG.GET every STANDBY_POLL_MS;
 * nothing is written until the create-if-absent of §9 succeeds. Returns
 * RUN_STOPPED (signal), RUN_FAILED / RUN_BROKER_GONE, or -1 once the lease
 * is ours. */
static int standby(daemon_ctx *d, const sigset_t *signals, main_loop *ml)
{
        char status[600];
        snprintf(status, sizeof status, "standby: lease %.500s", d->lease.last_error);
        log_notice("Standing by: lease %s/%s is %s; taking over once it is released or expires",
                   d->names.delivery_bucket, CONTRACT_LEASE_KEY, d->lease.last_error);
        /* Running as intended: systemd must not time the start out. */
        notify_ready(status);
        int64_t wd_ms = notify_watchdog_ms(), last_wd = 0, last_status = daemon_mono_ms(), last_poll = 0;
        for (;;) {
                int sig = wait_signal(ml, signals, STANDBY_POLL_MS);
                if (sig == SIGTERM || sig == SIGINT) {
                        log_notice("Received %s while standing by; exiting", strsignal(sig));
                        return RUN_STOPPED;
                }
                int64_t now = daemon_mono_ms();
                reload_when_due(d, &ml->reload, now);
                if (broker_gone(d, &ml->stall, now))
                        return RUN_BROKER_GONE;
                /* A storm of signals is no reason to poll the broker faster. */
                bool free_now = false;
                if (sig != SIGHUP || now - last_poll >= STANDBY_POLL_MS) {
                        last_poll = now;
                        kv_entry e;
                        int r = kv_get(&d->lease.kv, CONTRACT_LEASE_KEY, &e);
                        free_now = r == -ENOENT || (r == 0 && e.op != KV_OP_PUT);
                        if (r == 0)
                                kv_entry_fini(&e);
                }
                if (free_now) {
                        int r = lease_acquire(&d->lease);
                        if (r == 0) {
                                log_notice("Took over lease %s/%s at revision %llu", d->names.delivery_bucket,
                                           CONTRACT_LEASE_KEY, (unsigned long long)d->lease.revision);
                                return -1;
                        }
                        if (r != -EEXIST)
                                log_warning("Failed to take over the lease: %s", d->lease.kv.last_error);
                }
                if (wd_ms && now - last_wd >= wd_ms / 2 && !atomic_load(&d->disconnected_since_ms)) {
                        last_wd = now;
                        notify_watchdog();
                }
                if (now - last_status >= STATUS_PERIOD_MS) {
                        last_status = now;
                        notify_status(status);
                }
                diag_serve(d);
        }
}

/* The workers' view of the lease follows the main thread's (§9). */
static void lease_publish(daemon_ctx *d)
{
        atomic_store(&d->lease_valid_until_ms, lease_act_until_ms(&d->lease));
}

/* §9: the lease is not ours any more, or may lapse before a renew could be
 * confirmed. The workers stop at once (daemon_may_act), the record is left
 * alone (it may be a successor's), and the caller exits 1. */
static void lease_lost(daemon_ctx *d, const char *why)
{
        atomic_store(&d->lease_lost, true);
        log_error("✗ delivery: lost the lease (%s) — exiting so the holder is single", why);
        d->lease.revision = 0;
}

/* One renew try, if one still fits before the holder must stop acting
 * and the link is up. *next_try: when to try again (0 once renewed). 0, or
 * -1 when the lease is lost. */
static int renew(daemon_ctx *d, int64_t *next_try)
{
        lease *l = &d->lease;
        int64_t until = lease_act_until_ms(l), now = daemon_mono_ms();
        char why[700];
        if (now + LEASE_TRY_BOUND_MS > until) {
                snprintf(why, sizeof why, "no renew confirmed within %d ms of the last confirmed write; %s%s",
                         LEASE_ACT_MS, l->renew_tried ? "last try: " : "the broker link was down",
                         l->renew_tried ? l->last_error : "");
                lease_lost(d, why);
                return -1;
        }
        if (atomic_load(&d->disconnected_since_ms)) {
                if (*next_try == 0)
                        log_warning("Lease renew due while the broker link is down; trying once it is back "
                                    "(gives up in %lld ms)",
                                    (long long)(until - LEASE_TRY_BOUND_MS - now));
                *next_try = now + MAIN_TICK_MS;
                return 0;
        }
        l->kv.timeout_ms = LEASE_TRY_TIMEOUT_MS;
        int r = lease_renew(l);
        if (r == 0) {
                lease_publish(d);
                *next_try = 0;
                log_debug("Renewed the lease, revision %llu", (unsigned long long)l->revision);
                return 0;
        }
        if (r == -ESTALE) {
                lease_lost(d, l->last_error);
                return -1;
        }
        now = daemon_mono_ms();
        *next_try = now + LEASE_RETRY_MS;
        if (*next_try + LEASE_TRY_BOUND_MS > until) {
                snprintf(why, sizeof why, "no renew confirmed within %d ms of the last confirmed write; last try: %s",
                         LEASE_ACT_MS, l->last_error);
                lease_lost(d, why);
                return -1;
        }
        log_warning("Failed to renew the lease (%s); retrying in %d ms (gives up in %lld ms, before the record could "
                    "lapse)",
                    l->last_error, LEASE_RETRY_MS, (long long)(until - LEASE_TRY_BOUND_MS - now));
        return 0;
}

/* Reads lease.0 between renews. 0, or -1 when the lease is lost. A read
 * that fails tells nothing: the next one, or the renew, decides. */
static int check(daemon_ctx *d)
{
        lease *l = &d->lease;
        l->kv.timeout_ms = LEASE_CHECK_TIMEOUT_MS;
        int r = lease_check(l);
        if (r == -ESTALE) {
                lease_lost(d, l->last_error);
                return -1;
        }
        if (r == 1) {
                lease_publish(d);
                log_notice("Lease write confirmed by reading it back: revision %llu (its PubAck was lost)",
                           (unsigned long long)l->revision);
        } else if (r < 0) {
                log_debug("Failed to check the lease: %s", l->last_error);
        }
        return 0;
}

static int run(daemon_ctx *d, const sigset_t *signals, main_loop *ml)
{
        char line[512];
        int64_t last_probe = daemon_mono_ms(), last_status = 0;
        int64_t wd_ms = notify_watchdog_ms(), last_wd = 0;
        int64_t next_renew = 0, next_check = 0;

        for (;;) {
                int sig = wait_signal(ml, signals, MAIN_TICK_MS);
                if (sig == SIGTERM || sig == SIGINT) {
                        log_notice("Received %s; shutting down", strsignal(sig));
                        return RUN_STOPPED;
                }
                int64_t now = daemon_mono_ms();

                /* §9 renew every 15 s; a rival's write (the revision moved)
                 * ends the process at once, a try without an answer is
                 * retried while one still fits (see LEASE_RETRY_MS). While
                 * no renew is due, the lease check; neither while the link
                 * is down (the renew's own tries decide then). */
                bool renew_due = now - d->lease.last_write_ms >= CONTRACT_LEASE_RENEW_MS;
                if (renew_due && now >= next_renew) {
                        /* Given up with the link down: nothing to release,
                         * and workers blocked on it need the link shut. */
                        if (renew(d, &next_renew) < 0)
                                return atomic_load(&d->disconnected_since_ms) ? RUN_BROKER_GONE : RUN_FAILED;
                } else if (!renew_due && now >= next_check && !atomic_load(&d->disconnected_since_ms)) {
                        next_check = now + LEASE_CHECK_MS;
                        if (check(d) < 0)
                                return RUN_FAILED;
                }
                /* §10.3 broker watchdog, from the connection's state. */
                if (now - last_probe >= CONTRACT_WATCHDOG_PERIOD_MS) {
                        last_probe = now;
                        if (broker_gone(d, &ml->stall, now))
                                return RUN_BROKER_GONE;
                }
                /* WATCHDOG=1 only while the lease renews, the link is up and
                 * every worker's loop turns: a wedged loop gets restarted. */
                if (wd_ms && now - last_wd >= wd_ms / 2 && !atomic_load(&d->disconnected_since_ms) &&
                    now < lease_act_until_ms(&d->lease) && now - atomic_load(&d->beat_fanout) < WORKER_STALE_MS &&
                    now - atomic_load(&d->beat_reader) < WORKER_STALE_MS &&
                    now - atomic_load(&d->beat_control) < WORKER_STALE_MS) {
                        last_wd = now;
                        notify_watchdog();
                }
                reload_when_due(d, &ml->reload, now);
                diag_serve(d);
                if (now - last_status >= STATUS_PERIOD_MS) {
                        last_status = now;
                        status_line(d, line, sizeof line);
                        notify_status(line);
                }
        }
}

int main(int argc, char **argv)
{
        daemon_ctx d;
        char err[1024];
        memset(&d, 0, sizeof d);
        /* Signals are blocked first, in every thread (cnats' included,
         * which inherit the mask): a SIGTERM at any point of start-up then
         * waits to be taken between two steps (stop_requested) or by run()
         * and standby(), and never kills a daemon holding the lease. */
        sigset_t signals, stops;
        main_loop ml = {0};
        sigemptyset(&stops);
        sigaddset(&stops, SIGTERM);
        sigaddset(&stops, SIGINT);
        signals = stops;
        sigaddset(&signals, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &signals, NULL);
        signal(SIGPIPE, SIG_IGN);
        /* Messages are allocated on cnats' reader threads and freed on the
         * workers' (or its collector thread): with glibc's default of one
         * arena per thread that spread left the peak RSS at k=200 near
         * 20 MiB; two arenas keep it under 15 (scripts/bench). */
        (void)mallopt(M_ARENA_MAX, MALLOC_ARENAS);
        log_setup("cotal-deliveryd: ", !isatty(STDERR_FILENO));

        config_result cr = config_load(&d.cfg, argc, argv, err, sizeof err);
        if (cr != CONFIG_OK) {
                if (cr != CONFIG_EXIT_OK)
                        fprintf(stderr, "%s\n", err);
                config_fini(&d.cfg);
                return cr == CONFIG_EXIT_OK ? 0 : cr == CONFIG_USAGE ? EXIT_USAGE : 1;
        }
        d.argc = argc;
        d.argv = argv;
        d.started_wall_ms = daemon_wall_ms();
        d.started_mono_ms = daemon_mono_ms();
        connlog_init(&d.links);
        denials_init(&d.denied);
        publish_tunables(&d);
        if (d.cfg.diag_socket && diag_open(&d, d.cfg.diag_socket, err, sizeof err) < 0)
                log_warning("Diagnostics socket %s not opened: %s; running without it", d.cfg.diag_socket, err);
        else if (d.diag)
                log_info("Diagnostics on %s", d.cfg.diag_socket);

        int code = 1;
        /* §10.2 step 3: identity from the creds, or E3's generated id. */
        if (d.cfg.no_auth) {
                d.id = creds_generate_id();
        } else {
                int r = creds_source_init(&d.creds, d.cfg.creds, err, sizeof err);
                d.creds_loaded = r == 0;
                if (r == 0 && !(d.id = strdup(d.creds.id)))
                        r = -ENOMEM;
                if (r < 0) {
                        if (r == -ENOENT && d.cfg.creds_defaulted)
                                fprintf(stderr,
                                        "delivery: no scoped creds at %s. Launch via `cotal setup`/`cotal go` (the "
                                        "setup "
                                        "helper mints + writes it), or pass --creds <file>; for a standalone dev run "
                                        "against an open broker use --no-auth.\n",
                                        d.cfg.creds);
                        else
                                fprintf(stderr, "delivery: %s\n", err);
                        goto out;
                }
        }
        if (!d.id || asprintf(&d.inbox_prefix, "_INBOX_%s", d.id) < 0) {
                d.inbox_prefix = NULL;
                goto out;
        }
        if (contract_names_init(&d.names, d.cfg.space, strlen(d.cfg.space)) < 0 || links_init(&d) < 0)
                goto out;
        if (nats_Open(-1) != NATS_OK)
                goto out;

        /* Step 4: reachability. */
        if (!reachable(&d)) {
                fprintf(stderr, "✗ delivery: can't reach NATS at %s. Run: cotal up\n", d.cfg.server);
                goto out_nats;
        }
        if (stop_requested(&stops, "the reachability probe")) {
                code = 0;
                goto out_nats;
        }
        /* Step 5: connect, check the space, open the presence watch. */
        if (daemon_connect_main(&d) < 0 || links_watch_start(&d) < 0 || check_streams(&d) < 0)
                goto out_conn;
        log_info("Connected to %s as %s (space %s, token %s)", d.cfg.server, d.id, d.cfg.space, d.names.token);
        if (stop_requested(&stops, "connecting")) {
                code = 0;
                goto out_conn;
        }
        if (roster_start(&d, ROSTER_LOAD_TIMEOUT_MS) < 0)
                goto out_conn;
        if (stop_requested(&stops, "loading the presence roster")) {
                code = 0;
                goto out_conn;
        }

        /* Step 6: the lease, create-if-absent, never retried in-process. */
        if (lease_init(&d.lease, d.nc, d.names.delivery_bucket, d.id) < 0)
                goto out_conn;
        int r = lease_acquire(&d.lease);
        if (r == -EEXIST && d.cfg.standby) {
                int outcome = standby(&d, &signals, &ml);
                if (outcome >= 0) {
                        code = outcome == RUN_STOPPED ? 0 : 1;
                        goto out_conn;
                }
                r = 0;
        }
        if (r < 0) {
                fprintf(stderr, "✗ delivery: a live lease already exists for shard 0 — another delivery daemon is "
                                "running. Not binding.\n");
                log_error("Failed to acquire lease %s/%s: %s", d.names.delivery_bucket, CONTRACT_LEASE_KEY,
                          d.lease.last_error);
                /* A create that got no answer may have landed: release it
                 * if so (§9; errors ignored). */
                d.lease.kv.timeout_ms = RELEASE_TIMEOUT_MS;
                (void)lease_release(&d.lease);
                goto out_conn;
        }
        lease_publish(&d);
        log_info("Acquired lease %s/%s at revision %llu", d.names.delivery_bucket, CONTRACT_LEASE_KEY,
                 (unsigned long long)d.lease.revision);
        if (stop_requested(&stops, "acquiring the lease"))
                goto stop_in_startup;

        /* E1 (§14.4): before anything writes to INBOX, what it already
         * holds per owner — a crashed or replaced holder leaves unread
         * entries behind, and they count against each owner's lead. */
        if (!(d.ledger = ledger_new((size_t)d.cfg.inbox_lead_limit)) ||
            ledger_sync_seed(d.ledger, d.nc, &d.names, err, sizeof err) < 0) {
                log_error("Failed to read what %s holds per owner: %s", d.names.inbox_stream,
                          d.ledger ? err : "out of memory");
                teardown(&d, true, false);
                goto out_nats;
        }
        log_info("Read %s: per-owner counts seeded (lead limit %d)", d.names.inbox_stream, d.cfg.inbox_lead_limit);

        /* Step 7: ctl.delivery, then the fan-out, then the reader. A bind
         * failure releases the lease before exiting. */
        static const struct {
                int (*start)(daemon_ctx *d);
                const char *step;
        } binds[] = {
                {connect_kv, "connecting for the KV watches"},
                {control_start, "serving ctl.delivery"},
                {fanout_start, "binding the fan-out"},
                {reader_start, "binding the reader"},
        };
        for (size_t i = 0; i < sizeof binds / sizeof *binds; i++) {
                if (binds[i].start(&d) < 0) {
                        teardown(&d, true, false);
                        goto out_nats;
                }
                if (stop_requested(&stops, binds[i].step))
                        goto stop_in_startup;
        }
        /* Step 8: flush, then mark ready. A failure other than a rival's
         * write is left to the next renew (§9), which retries the same
         * write and recognises it if it did land. */
        (void)natsConnection_FlushTimeout(d.nc, 2000);
        if (stop_requested(&stops, "binding"))
                goto stop_in_startup;
        r = lease_mark_ready(&d.lease);
        if (r == -ESTALE) {
                lease_lost(&d, d.lease.last_error);
                teardown(&d, true, false);
                goto out_nats;
        }
        if (r < 0)
                log_warning("Failed to mark the lease ready: %s; the next renew will", d.lease.last_error);
        else
                lease_publish(&d);
        if (stop_requested(&stops, "marking the lease ready"))
                goto stop_in_startup;
        /* Step 9. */
        printf("✓ delivery daemon up (space %s) — stop with: cotal down\n", d.cfg.space);
        fflush(stdout);
        notify_ready("lease held (ready); fan-out and reader bound");
        log_info("Ready: lease %s/%s revision %llu", d.names.delivery_bucket, CONTRACT_LEASE_KEY,
                 (unsigned long long)d.lease.revision);

        int outcome = run(&d, &signals, &ml);
        code = outcome == RUN_STOPPED ? 0 : 1;
        notify_stopping(code == 0 ? "stopping" : "stopping after a failure");
        teardown(&d, true, outcome == RUN_BROKER_GONE);
        goto out_nats;

stop_in_startup:
        /* §10.4 before ready: stop what was started, release the lease. */
        code = 0;
        notify_stopping("stopping during start-up");
        teardown(&d, true, false);
        goto out_nats;

out_conn:
        atomic_store(&d.stopping, true); /* the roster thread may be running */
        d.join_deadline_ms = daemon_mono_ms() + d.cfg.shutdown_timeout_ms;
        roster_stop(&d);
        lease_fini(&d.lease);
        links_watch_stop(&d);
        if (d.nc) {
                natsConnection_Close(d.nc);
                natsConnection_Destroy(d.nc);
                d.nc = NULL;
        }
out_nats:
        nats_CloseAndWait(2000);
out:
        ledger_free(d.ledger);
        diag_close(&d);
        links_fini(&d);
        connlog_fini(&d.links);
        denials_fini(&d.denied);
        if (d.creds_loaded)
                creds_source_fini(&d.creds);
        contract_names_fini(&d.names);
        free(d.id);
        free(d.inbox_prefix);
        config_fini(&d.cfg);
        return code;
}
