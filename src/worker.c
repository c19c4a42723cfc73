/* worker: the shared fetch / handle / finish loop of the fan-out and the
 * reader. */
#include "worker.h"

#include "jsack.h"
#include "links.h"
#include "log.h"

#include <errno.h>

#define WORKER_REBIND_BACKOFF_MS 1000
#define WORKER_FETCH_BACKOFF_MS 250

/* Hands msgs[from..n) back to the server and frees them. */
static void give_back(worker *w, int from, int n, const char *ack)
{
        for (int i = from; i < n; i++) {
                (void)pull_ack(w->pull, w->msgs[i], ack);
                natsMsg_Destroy(w->msgs[i]);
                w->msgs[i] = NULL;
        }
}

/* §10.4, before naking: our pull requests are closed first. A nak sent
 * while one is open is redelivered into it at once, to an inbox nobody
 * reads any more, and waits out ack_wait (60 s) all the same. Deliveries
 * already buffered are taken into msgs[from..) to be given back too;
 * returns their count. Later calls take nothing. */
static int stop_pulling(worker *w, int from)
{
        return pull_cancel(w->pull, w->msgs + from, PULL_MAX_BATCH - from);
}

void *worker_run(daemon_ctx *d, worker *w)
{
        bool bound = true;
        /* A reconnect of our connection re-requests at once (pull.h). */
        daemon_link *link = links_of(d, w->pull->nc);
        if (link) {
                pull_follow_link(w->pull, &link->generation);
                if (links_set_wake(link, pull_wake_subject(w->pull)) < 0)
                        log_warning("Out of memory; a reconnect of the %s connection is noticed at the end of a "
                                    "fetch wait",
                                    link->name);
        }
        while (!atomic_load(&d->stopping)) {
                atomic_store(w->beat, daemon_mono_ms());
                /* PROTOCOL §9: nothing is fetched without a live lease. */
                if (!daemon_may_act(d)) {
                        daemon_backoff(d, DAEMON_PAUSE_MS);
                        continue;
                }
                if (!bound) {
                        if (w->rebind(d, w->self) < 0) {
                                daemon_backoff(d, WORKER_REBIND_BACKOFF_MS);
                                continue;
                        }
                        bound = true;
                }
                if (w->before_fetch && !w->before_fetch(d, w->self))
                        break;
                size_t inflight = (size_t)atomic_load(w->inflight);
                w->pull->max_bytes = inflight / PULL_MAX_REQUESTS;
                w->pub->max_bytes = inflight;
                int batch = atomic_load(w->batch);
                if (w->batch_size)
                        batch = w->batch_size(d, w->self, batch);
                if (batch <= 0)
                        continue; /* nothing to fetch this turn (before_fetch waited) */
                int n = pull_fetch(w->pull, w->msgs, batch, w->expires_ms, w->wait_ms);
                if (n == -ENOENT) {
                        log_warning("Durable %s/%s is gone (%s); re-creating it", w->stream, w->durable,
                                    w->pull->last_error);
                        bound = false;
                        continue;
                }
                if (n < 0) {
                        log_warning("Failed to fetch from %s/%s: %s", w->stream, w->durable, w->pull->last_error);
                        daemon_backoff(d, WORKER_FETCH_BACKOFF_MS);
                        continue;
                }
                if (n > 0 && w->prepare && w->prepare(d, w->self) < 0) {
                        char nak[64];
                        jsack_nak_delay(nak, sizeof nak, w->nak_delay_ms);
                        give_back(w, 0, n, nak);
                        daemon_backoff(d, WORKER_FETCH_BACKOFF_MS);
                        continue;
                }
                jspub_reset(w->pub);
                int handled = 0;
                for (; handled < n && daemon_may_act(d); handled++)
                        w->handle(d, w->self, handled);
                /* Stopping, or the lease lost or about to lapse: give back
                 * at once what was not handled, so a successor does not
                 * wait for ack_wait (§10.4). Stopping closes our pull
                 * first (stop_pulling); otherwise a nak comes back to us. */
                if (handled < n)
                        give_back(w, handled, n + (atomic_load(&d->stopping) ? stop_pulling(w, n) : 0), JSACK_NAK);
                w->finish(d, w->self, handled);
                /* Destroyed together, after the acks: cnats wakes its
                 * collector thread per destroy when it sleeps. */
                for (int i = 0; i < handled; i++) {
                        natsMsg_Destroy(w->msgs[i]);
                        w->msgs[i] = NULL;
                }
        }
        if (link)
                (void)links_set_wake(link, NULL);
        give_back(w, 0, stop_pulling(w, 0), JSACK_NAK);
        return NULL;
}
