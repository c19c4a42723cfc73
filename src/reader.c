/* reader: PROTOCOL §7 trusted reader, table rows 1-9. */
#include "reader.h"

#include "broker.h"
#include "contract_channel.h"
#include "contract_config.h"
#include "contract_record.h"
#include "jsack.h"
#include "jspub.h"
#include "kv_cache.h"
#include "ledger.h"
#include "ledger_sync.h"
#include "log.h"
#include "losswatch.h"
#include "pull.h"
#include "worker.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READER_EXPIRES_MS 5000
#define READER_WAIT_MS 500
#define READER_PUBACK_TIMEOUT_MS 10000
/* An ack dies with its connection only if it was sent shortly before the
 * link was noticed dead (pings every second, two missed, §10.3). */
#define READER_ACK_LOSS_MS 5000
/* Entries removed unread are logged at most this often (summed). */
#define READER_LOSS_LOG_MS 10000

typedef enum {
        DECIDE_ACK, /* dropped or not a real entry */
        DECIDE_NAK, /* retry after the delay */
        DECIDE_TERM,
        DECIDE_TRANSFER, /* published: ack or retry after the round */
} decision;

typedef struct verdict {
        decision what;
        long pub; /* jspub index when TRANSFER */
        uint64_t delivered;
        uint64_t seq; /* INBOX stream sequence */
        char *owner;  /* owned, for the give-up log line */
        char *msg_id; /* owned */
} verdict;

struct reader {
        pthread_t thread;
        pull_sub pull;
        jspub pub;
        kv_cache *cache; /* ACLs and members (§6.4 fenced per batch) */
        natsMsg **msgs;
        verdict *v;
        natsStatistics *stats;
        uint64_t reconnects; /* of reader_nc, as last seen */
        int64_t seen_up_ms;  /* when it was last seen connected */
        /* Entries INBOX removed before their first delivery, not yet
         * logged: how many, in how many runs, the sequences they span. */
        losswatch lost;
        uint64_t lost_unlogged, lost_runs, lost_lo, lost_hi;
        int64_t lost_logged_ms;
};

static int ensure(daemon_ctx *d)
{
        json_t *cfg = contract_reader_config(&d->names);
        int r = cfg ? daemon_ensure_consumer(d, d->names.inbox_stream, cfg) : -ENOMEM;
        json_decref(cfg);
        return r;
}

static verdict drop(daemon_ctx *d, verdict v, const char *fmt_reason, const char *owner, const char *channel)
{
        log_notice("Dropped %s entry seq %" PRIu64 " for owner %.64s on channel %.128s: %s", d->names.inbox_stream,
                   v.seq, owner, channel ? channel : "?", fmt_reason);
        atomic_fetch_add(&d->counters.dropped, 1);
        v.what = DECIDE_ACK;
        return v;
}

/* Says (summed, at most every READER_LOSS_LOG_MS unless forced) what
 * the watch found: entries no recipient will ever get, and nothing else
 * would say so. */
static void log_lost(daemon_ctx *d, struct reader *r, bool force)
{
        int64_t now = daemon_mono_ms();
        if (!r->lost_unlogged || (!force && r->lost_logged_ms && now - r->lost_logged_ms < READER_LOSS_LOG_MS))
                return;
        log_error("%s removed %" PRIu64 " entries (%" PRIu64 " runs, seqs %" PRIu64 "-%" PRIu64 ") before the reader "
                  "first read them: evicted past the 1000-per-owner cap or purged, their recipients never get them "
                  "(nats-server 2.9 can evict out of order after a restart; see README)",
                  d->names.inbox_stream, r->lost_unlogged, r->lost_runs, r->lost_lo, r->lost_hi);
        r->lost_unlogged = r->lost_runs = 0;
        r->lost_logged_ms = now;
}

static void watch_delivery(daemon_ctx *d, struct reader *r, const jsack_meta *meta)
{
        uint64_t gone = losswatch_note(&r->lost, meta->delivered, meta->stream_seq, meta->consumer_seq);
        if (!gone)
                return;
        atomic_fetch_add(&d->counters.inbox_lost, gone);
        if (!r->lost_unlogged)
                r->lost_lo = meta->stream_seq - gone;
        r->lost_hi = meta->stream_seq - 1;
        r->lost_unlogged += gone;
        r->lost_runs++;
        log_lost(d, r, false);
}

/* Where the durable stands now: the watch starts from it. */
static void watch_from_durable(daemon_ctx *d, struct reader *r)
{
        ledger_reader_state rs;
        jsapi_error jerr;
        if (ledger_sync_reader_state(d->reader_nc, &d->names, &rs, &jerr) == 0)
                losswatch_reset(&r->lost, rs.delivered, rs.delivered_cseq);
        else
                losswatch_reset(&r->lost, 0, 0);
}

static verdict decide(daemon_ctx *d, struct reader *r, natsMsg *m)
{
        verdict v = {.what = DECIDE_ACK, .pub = -1};
        const char *subject = natsMsg_GetSubject(m);
        jsack_meta meta;
        if (!jsack_parse(natsMsg_GetReply(m), &meta)) {
                log_warning("Dropped inbox delivery on %s: no JetStream metadata in reply subject", subject);
                return v;
        }
        v.delivered = meta.delivered;
        v.seq = meta.stream_seq;
        atomic_store(&d->counters.reader_lag, meta.pending);
        watch_delivery(d, r, &meta);

        /* Row 1: not cotal.<x>.dinbox.<owner>. */
        contract_span ospan;
        if (!contract_dinbox_subject_parse(subject, &ospan))
                return drop(d, v, "not a dinbox subject", "?", NULL);
        char *owner = strndup(ospan.p, ospan.len);
        if (!owner) {
                v.what = DECIDE_NAK;
                return v;
        }
        /* Rows 2 and 2a: malformed entries are dropped. */
        contract_entry e;
        rec_error err;
        char why[256];
        const char *data = natsMsg_GetData(m);
        if (contract_entry_decode(data ? data : "", (size_t)natsMsg_GetDataLength(m), &e, &err) != REC_OK) {
                v = drop(d, v, rec_error_str(&err, why, sizeof why), owner, NULL);
                v.owner = owner;
                return v;
        }
        /* Rows 3-4: the owner's current ACL, as of this batch's fence. */
        const contract_acl *acl;
        const char *unknown_why;
        int a = kv_cache_acl(r->cache, owner, &acl, &unknown_why);
        if (a < 0) {
                if (v.delivered >= CONTRACT_READER_MAX_REDELIVERIES) {
                        log_warning("! delivery endpoint: plane-3 reader: gave up on entry for unknown owner %s after "
                                    "%" PRIu64 " redeliveries",
                                    owner, v.delivered);
                        v.what = DECIDE_TERM;
                } else {
                        /* Said once per entry at info; its retries at
                         * debug (a flood of entries for a deprovisioned
                         * owner logged ten lines each: scripts/abuse). */
                        log_msg(v.delivered <= 1 ? LOG_INFO : LOG_DEBUG,
                                "Deferred %s entry seq %" PRIu64 " for unknown owner %.64s (%s), delivery %" PRIu64,
                                d->names.inbox_stream, v.seq, owner, unknown_why, v.delivered);
                        v.what = DECIDE_NAK;
                }
        } else if (!contract_channel_in_allow((const char *const *)acl->allow, acl->n_allow, e.channel)) {
                /* Row 5: revoked or narrowed. */
                v = drop(d, v, "channel not in the owner's read ACL", owner, e.channel);
        } else {
                bool eligible = true;
                if (e.reason == REASON_DURABLE_CHANNEL) {
                        /* Row 6: membership interval, as of this batch's fence. */
                        const contract_member *mem = kv_cache_member(r->cache, e.channel, owner);
                        if (!mem || !contract_member_eligible(mem, e.seq)) {
                                v = drop(d, v,
                                         !mem ? "no membership record" : "chat seq outside the membership interval",
                                         owner, e.channel);
                                eligible = false;
                        }
                }
                if (eligible) {
                        /* Rows 7-9: transfer; ack after the PubAck. */
                        char *subject_dlv = contract_dlv_subject(&d->names, owner);
                        char *id = contract_dedup_id(e.msg_id, owner, e.generation);
                        char *body = NULL;
                        size_t len = 0;
                        if (subject_dlv && id && contract_deliver_body(&e, &body, &len) == 0) {
                                v.pub = jspub_publish(&r->pub, subject_dlv, id, body, len);
                                v.what = v.pub >= 0 ? DECIDE_TRANSFER : DECIDE_NAK;
                                v.msg_id = strdup(e.msg_id);
                        } else {
                                v.what = DECIDE_NAK;
                        }
                        free(subject_dlv);
                        free(id);
                        free(body);
                }
        }
        contract_entry_fini(&e);
        v.owner = owner;
        return v;
}

/* Whether the broker refused this round's publish to owner's dlv subject
 * for permissions (the server drops it; no PubAck ever comes). */
static bool dlv_denied(daemon_ctx *d, struct reader *r, const char *owner)
{
        char *subject = contract_dlv_subject(&d->names, owner);
        bool denied = subject && denials_publish_denied_since(&d->denied, subject, r->pub.round_ms);
        free(subject);
        return denied;
}

static void finish_batch(daemon_ctx *d, struct reader *r, int n)
{
        (void)jspub_wait(&r->pub, READER_PUBACK_TIMEOUT_MS);
        char nak[64], nak_denied[64];
        jsack_nak_delay(nak, sizeof nak, CONTRACT_NAK_DELAY_MS);
        for (int i = 0; i < n; i++) {
                verdict *v = &r->v[i];
                decision final = v->what;
                const char *nak_this = nak;
                if (v->what == DECIDE_TRANSFER) {
                        const jspub_result *res = jspub_result_at(&r->pub, (size_t)v->pub);
                        if (res && res->state != JSPUB_OK && dlv_denied(d, r, v->owner)) {
                                /* The credential lacks PROTOCOL §11.3's
                                 * "P.dlv.*": daemon_on_error logged the
                                 * subject once. Not the entry's fault, and
                                 * only an operator fixes it, so no row 7
                                 * ceiling (as §7 exempts KV read failures:
                                 * nothing is terminated for an outage) and a
                                 * growing back-off instead of a hot retry. */
                                int64_t delay = denials_retry_delay_ms(v->delivered, v->seq);
                                jsack_nak_delay(nak_denied, sizeof nak_denied, delay);
                                log_debug("Deferred %s seq %" PRIu64 " for %.64s: its dlv publish was refused "
                                          "(permissions), delivery %" PRIu64 "; retrying in %lld ms",
                                          d->names.inbox_stream, v->seq, v->owner, v->delivered, (long long)delay);
                                final = DECIDE_NAK;
                                nak_this = nak_denied;
                        } else if (res && res->state == JSPUB_OK) {
                                final = DECIDE_ACK;
                                atomic_fetch_add(&d->counters.delivered, 1);
                                log_debug("Delivered %s seq %" PRIu64 " to %s.dlv.%.64s (%s seq %" PRIu64 "%s)",
                                          d->names.inbox_stream, v->seq, d->names.prefix, v->owner, d->names.dlv_stream,
                                          res->seq, res->duplicate ? ", a duplicate" : "");
                        } else if (v->delivered >= CONTRACT_READER_MAX_REDELIVERIES) {
                                /* Row 7. */
                                log_warning("! delivery endpoint: plane-3 reader: gave up transferring %s for %s after "
                                            "%" PRIu64 " redeliveries",
                                            v->msg_id ? v->msg_id : "?", v->owner, v->delivered);
                                final = DECIDE_TERM;
                        } else {
                                /* Row 8. */
                                log_warning("Failed to transfer %s seq %" PRIu64 " to dlv.%.64s: %s; retrying in %d ms",
                                            d->names.inbox_stream, v->seq, v->owner, r->pub.last_error,
                                            CONTRACT_NAK_DELAY_MS);
                                final = DECIDE_NAK;
                        }
                }
                const char *ack = JSACK_ACK;
                if (final == DECIDE_NAK) {
                        ack = nak_this;
                        atomic_fetch_add(&d->counters.deferred, 1);
                } else if (final == DECIDE_TERM) {
                        ack = JSACK_TERM;
                        atomic_fetch_add(&d->counters.terminated, 1);
                }
                if (pull_ack(&r->pull, r->msgs[i], ack) < 0)
                        log_warning("Failed to ack %s seq %" PRIu64 "; it will be redelivered", d->names.inbox_stream,
                                    v->seq);
                else if (final != DECIDE_NAK && v->owner && v->seq)
                        /* E1: read for good; its owner's lead shrinks. A
                         * nak'ed entry is still unread. */
                        ledger_dispose(d->ledger, v->owner, v->seq);
                free(v->owner);
                free(v->msg_id);
                memset(v, 0, sizeof *v);
        }
}

static int rebind(daemon_ctx *d, void *self)
{
        (void)self;
        int r = ensure(d);
        if (r < 0)
                return r;
        log_notice("Re-bound durable %s/%s", d->names.inbox_stream, CONTRACT_READER_DURABLE);
        watch_from_durable(d, self);
        /* E1: a re-created durable (deliver_policy "all", §3) reads
         * everything INBOX holds once more: it is all unread again. */
        char err[300];
        if ((r = ledger_sync_seed(d->ledger, d->reader_nc, &d->names, err, sizeof err)) < 0)
                log_warning("Failed to re-read what %s holds per owner: %s; binding again", d->names.inbox_stream, err);
        return r;
}

/* §6.4 / §7: entries are authorized against KV state at least as new as
 * the moment they were fetched. */
static int prepare(daemon_ctx *d, void *self)
{
        struct reader *r = self;
        int rc = kv_cache_fence(r->cache, KV_CACHE_FENCE_TIMEOUT_MS);
        if (rc < 0)
                log_warning("Failed to bring the reader's KV view up to date (%s); %s batch retried in %d ms",
                            kv_cache_error(r->cache), d->names.inbox_stream, CONTRACT_NAK_DELAY_MS);
        return rc;
}

/* After a broker restart: a durable whose delivered cursor is past the
 * stream's last sequence (the broker lost a tail it had acknowledged, but
 * not the consumer's state) skips the entries that reuse those
 * sequences. Said loudly; nothing the daemon may do fixes the durable
 * (§3: never modified). */
static void check_cursor(daemon_ctx *d)
{
        ledger_reader_state rs;
        json_t *si = NULL;
        uint64_t last = 0;
        if (ledger_sync_reader_state(d->reader_nc, &d->names, &rs, NULL) == 0 &&
            jsapi_stream_info(d->reader_nc, d->names.inbox_stream, NULL, 0, &si, NULL) == 0) {
                (void)json_path_u64(si, "state.last_seq", &last);
                if (rs.delivered > last)
                        log_error("Durable %s/%s has delivered up to seq %" PRIu64 " but the stream ends at %" PRIu64
                                  " (the broker lost entries it had acknowledged): the next %" PRIu64
                                  " entries written will never be read",
                                  d->names.inbox_stream, CONTRACT_READER_DURABLE, rs.delivered, last,
                                  rs.delivered - last);
                else
                        log_info("Durable %s/%s after the reconnect: delivered %" PRIu64 ", ack floor %" PRIu64
                                 ", %" PRIu64 " unacked; stream last seq %" PRIu64,
                                 d->names.inbox_stream, CONTRACT_READER_DURABLE, rs.delivered, rs.floor, rs.ack_pending,
                                 last);
        }
        json_decref(si);
}

/* E1: acks sent just before the connection was lost may never have
 * reached the broker, which redelivers those entries an ack_wait later:
 * until then they are unread and hold room in their owner's span. */
static bool before_fetch(daemon_ctx *d, void *self)
{
        struct reader *r = self;
        uint64_t in_msgs, in_bytes, out_msgs, out_bytes, rc = 0;
        if (r->stats && natsConnection_GetStats(d->reader_nc, r->stats) == NATS_OK &&
            natsStatistics_GetCounts(r->stats, &in_msgs, &in_bytes, &out_msgs, &out_bytes, &rc) == NATS_OK &&
            rc != r->reconnects) {
                size_t back = ledger_replay(d->ledger, r->seen_up_ms - READER_ACK_LOSS_MS);
                log_info("Reader connection back (reconnect %" PRIu64 "): %zu entries acked just before may not be "
                         "acked at %s; they count as unread until read again",
                         rc, back, d->names.inbox_stream);
                r->reconnects = rc;
                check_cursor(d);
        } else if (natsConnection_Status(d->reader_nc) == NATS_CONN_STATUS_CONNECTED) {
                r->seen_up_ms = daemon_mono_ms();
        }
        log_lost(d, r, false);
        return !atomic_load(&d->stopping);
}

static void decide_at(daemon_ctx *d, void *self, int i)
{
        struct reader *r = self;
        r->v[i] = decide(d, r, r->msgs[i]);
}

static void finish(daemon_ctx *d, void *self, int n)
{
        finish_batch(d, self, n);
}

static void *reader_thread(void *arg)
{
        daemon_ctx *d = arg;
        struct reader *r = d->reader;
        worker w = {
                .stream = d->names.inbox_stream,
                .durable = CONTRACT_READER_DURABLE,
                .pull = &r->pull,
                .pub = &r->pub,
                .msgs = r->msgs,
                .batch = &d->reader_batch,
                .inflight = &d->inflight_bytes,
                .nak_delay_ms = CONTRACT_NAK_DELAY_MS,
                .expires_ms = READER_EXPIRES_MS,
                .wait_ms = READER_WAIT_MS,
                .self = r,
                .beat = &d->beat_reader,
                .rebind = rebind,
                .before_fetch = before_fetch,
                .prepare = prepare,
                .handle = decide_at,
                .finish = finish,
        };
        return worker_run(d, &w);
}

int reader_start(daemon_ctx *d)
{
        struct reader *r = calloc(1, sizeof *r);
        if (!r)
                return -ENOMEM;
        /* Sized for the largest batch, so a reload can change the batch. */
        r->msgs = calloc(PULL_MAX_BATCH, sizeof *r->msgs);
        r->v = calloc(PULL_MAX_BATCH, sizeof *r->v);
        d->reader = r;
        int rc = !r->msgs || !r->v ? -ENOMEM : 0;
        if (rc == 0)
                rc = daemon_connect_worker(d, "reader", &d->reader_nc);
        if (rc == 0 && (rc = ensure(d)) < 0)
                log_error("Failed to bind durable %s/%s", d->names.inbox_stream, CONTRACT_READER_DURABLE);
        if (rc == 0 && (rc = pull_start(&r->pull, d->reader_nc, d->inbox_prefix, d->names.inbox_stream,
                                        CONTRACT_READER_DURABLE)) < 0)
                log_error("Failed to subscribe for %s/%s: %s", d->names.inbox_stream, CONTRACT_READER_DURABLE,
                          r->pull.last_error);
        const jspub_hooks hooks = {.stop = &d->stopping, .denied_ms = &d->denied.last_ms};
        if (rc == 0 && (rc = jspub_init(&r->pub, d->reader_nc, d->inbox_prefix, &hooks)) < 0)
                log_error("Failed to set up deliver publishing: %s", r->pub.last_error);
        if (rc == 0) {
                char name[128], err[600];
                snprintf(name, sizeof name, "drdr_%.100s", d->id);
                rc = kv_cache_open(&r->cache, d->kv_nc, &d->names, d->inbox_prefix, name,
                                   KV_CACHE_ACL | KV_CACHE_MEMBERS, err, sizeof err);
                if (rc < 0)
                        log_error("Failed to watch the KV buckets for the reader: %s", err);
        }
        if (rc == 0)
                watch_from_durable(d, r);
        if (rc == 0 && natsStatistics_Create(&r->stats) != NATS_OK)
                r->stats = NULL; /* reconnects go unnoticed: the floor and the seed still bound */
        r->seen_up_ms = daemon_mono_ms();
        if (rc == 0)
                rc = -pthread_create(&r->thread, NULL, reader_thread, d);
        if (rc < 0) {
                reader_stop(d);
                return rc;
        }
        log_info("Reader bound to %s/%s", d->names.inbox_stream, CONTRACT_READER_DURABLE);
        return 0;
}

void reader_stop(daemon_ctx *d)
{
        struct reader *r = d->reader;
        if (!r)
                return;
        if (r->thread)
                daemon_join(d, r->thread);
        log_lost(d, r, true);
        pull_stop(&r->pull);
        jspub_fini(&r->pub);
        kv_cache_close(r->cache);
        daemon_close_worker(&d->reader_nc);
        natsStatistics_Destroy(r->stats);
        free(r->msgs);
        free(r->v);
        free(r);
        d->reader = NULL;
}
