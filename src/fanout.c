/* fanout: PROTOCOL §6 fan-out writer. One thread; handling is sequential
 * in delivery order (§3), publishes are pipelined per batch and every
 * chat message is acked only after all of its entries are confirmed. */
#include "fanout.h"

#include "broker.h"
#include "contract_channel.h"
#include "contract_config.h"
#include "contract_record.h"
#include "jsack.h"
#include "jspub.h"
#include "kv_cache.h"
#include "log.h"
#include "pull.h"
#include "roster.h"
#include "strmap.h"
#include "worker.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FANOUT_EXPIRES_MS 5000
#define FANOUT_WAIT_MS 500
#define FANOUT_PUBACK_TIMEOUT_MS 10000
#define FANOUT_NAK_DELAY_MS 2000  /* §6.5 */
/* While paused for the reader: how often its progress is looked at, and
 * the longest gap between two reads of its ack floor. */
#define FANOUT_LEAD_STEP_MS 2
#define FANOUT_LEAD_POLL_MS 10
/* Inbox entries one round aims at: with K recipients per message a batch
 * of B chat messages is B x K publishes held in memory until their
 * PubAcks (200 x 256 would be 51,200), so big channels fetch fewer
 * messages per round. */
#define FANOUT_ROUND_ENTRIES 8192

/* E1: entries written per owner that the reader has not acked yet. */
typedef struct owner_backlog {
        uint64_t *seqs; /* INBOX sequences, ascending */
        size_t n, cap;
} owner_backlog;

/* What to do with one fetched chat message after the publish round. */
typedef enum { PLAN_ACK, PLAN_NAK, PLAN_PUBLISHED } plan_kind;

typedef struct plan {
        plan_kind kind;
        size_t first, count; /* jspub result indices */
        uint64_t seq;
} plan;

/* One recipient's publish, remembered for the backlog bookkeeping. */
typedef struct sent {
        char *owner;
} sent;

struct fanout {
        pthread_t thread;
        pull_sub pull;
        jspub pub;
        kv_cache *cache;     /* ACLs, members, channel classes (§6.4 fenced) */
        natsMsg **msgs;
        plan *plans;
        sent *sent;          /* parallel to jspub results */
        size_t sent_cap;
        strmap backlog;      /* owner -> owner_backlog */
        uint64_t reader_floor;
        bool paused;
        /* Where a re-created durable must resume: the lowest CHAT seq not
         * yet acked (nak'ed ones included), else the last acked + 1. */
        uint64_t acked_through;
        size_t widest;       /* most entries one message produced, last round */
        uint64_t *naked;     /* seqs nak'ed and not acked since */
        size_t n_naked, cap_naked;
};

static uint64_t resume_seq(const struct fanout *f)
{
        uint64_t from = f->acked_through + 1;
        for (size_t i = 0; i < f->n_naked; i++)
                if (f->naked[i] < from)
                        from = f->naked[i];
        return from;
}

static void note_outcome(struct fanout *f, uint64_t seq, bool acked)
{
        for (size_t i = 0; i < f->n_naked; i++)
                if (f->naked[i] == seq) {
                        f->naked[i] = f->naked[--f->n_naked];
                        break;
                }
        if (acked) {
                if (seq > f->acked_through)
                        f->acked_through = seq;
                return;
        }
        if (f->n_naked == f->cap_naked) {
                size_t ncap = f->cap_naked ? f->cap_naked * 2 : 64;
                uint64_t *nn = realloc(f->naked, ncap * sizeof *nn);
                if (!nn)
                        return;
                f->naked = nn;
                f->cap_naked = ncap;
        }
        f->naked[f->n_naked++] = seq;
}

/* §3: the exact config on first creation. When the durable disappears
 * while we run (§14.2 B6), "deliver new" would silently skip what was
 * published in between, so the re-created durable starts at the first
 * message not yet acked instead; anything handled twice collapses on its
 * dedup id. */
static int ensure(daemon_ctx *d, struct fanout *f, bool rearm)
{
        json_t *cfg = contract_fanout_config(&d->names);
        if (cfg && rearm && f->acked_through + f->n_naked > 0) {
                json_object_set_new(cfg, "deliver_policy", json_string("by_start_sequence"));
                json_object_set_new(cfg, "opt_start_seq", json_integer((json_int_t)resume_seq(f)));
        }
        int r = cfg ? daemon_ensure_consumer(d, d->names.chat_stream, cfg) : -ENOMEM;
        json_decref(cfg);
        return r;
}

static int remember(struct fanout *f, long idx, const char *owner)
{
        if ((size_t)idx >= f->sent_cap) {
                size_t ncap = f->sent_cap ? f->sent_cap * 2 : 1024;
                while (ncap <= (size_t)idx)
                        ncap *= 2;
                sent *ns = realloc(f->sent, ncap * sizeof *ns);
                if (!ns)
                        return -ENOMEM;
                memset(ns + f->sent_cap, 0, (ncap - f->sent_cap) * sizeof *ns);
                f->sent = ns;
                f->sent_cap = ncap;
        }
        free(f->sent[idx].owner);
        f->sent[idx].owner = strdup(owner);
        return f->sent[idx].owner ? 0 : -ENOMEM;
}

/* Publishes one dinbox entry (§5.2). Returns 0 or -errno. */
static int publish_entry(daemon_ctx *d, struct fanout *f, const contract_chat *chat, const char *raw, size_t raw_len,
                         const char *channel, uint64_t seq, const char *owner, contract_reason reason,
                         uint64_t generation)
{
        char *subject = contract_dinbox_subject(&d->names, owner);
        char *id = contract_dedup_id(chat->id, owner, generation);
        char *body = NULL;
        size_t len = 0;
        int r = subject && id ? contract_entry_encode(raw, raw_len, channel, seq, reason, generation, &body, &len)
                              : -ENOMEM;
        if (r == 0) {
                long idx = jspub_publish(&f->pub, subject, id, body, len);
                r = idx < 0 ? (int)idx : remember(f, idx, owner);
        }
        free(subject);
        free(id);
        free(body);
        return r;
}

/* One chat message being routed: what publish_entry needs. */
typedef struct route {
        daemon_ctx *d;
        struct fanout *f;
        const contract_chat *chat;
        const char *raw;
        size_t raw_len;
        const char *channel;
        uint64_t seq;
} route;

static int route_member(const contract_member *m, void *arg)
{
        route *rt = arg;
        if (strcmp(m->owner, rt->chat->from_id) == 0)
                return 0; /* never backstop the sender's own post */
        if (!contract_member_eligible(m, rt->seq))
                return 0;
        return publish_entry(rt->d, rt->f, rt->chat, rt->raw, rt->raw_len, rt->channel, rt->seq, m->owner,
                             REASON_DURABLE_CHANNEL, m->generation);
}

/* §6.2: durable-class channel; the member scan comes from the fenced
 * cache (§6.4: exact channel part, never a prefix). */
static int route_durable(route *rt)
{
        return kv_cache_members_each(rt->f->cache, rt->channel, route_member, rt);
}

/* §6.3: any other class — live @mentions. */
static int route_live(route *rt)
{
        const contract_chat *chat = rt->chat;
        if (!json_is_array(chat->mentions))
                return 0; /* [hardening] not an array: no mentions */
        strmap done;
        strmap_init(&done);
        int r = 0;
        size_t i;
        json_t *v;
        json_array_foreach(chat->mentions, i, v) {
                if (r < 0)
                        break;
                if (!json_is_string(v))
                        continue;
                char *owner = roster_resolve(rt->d, json_string_value(v));
                if (!owner || strcmp(owner, chat->from_id) == 0 || strmap_get(&done, owner)) {
                        free(owner);
                        continue;
                }
                const contract_acl *acl;
                const char *why;
                if (kv_cache_acl(rt->f->cache, owner, &acl, &why) == 0 &&
                    contract_channel_in_allow((const char *const *)acl->allow, acl->n_allow, rt->channel)) {
                        r = publish_entry(rt->d, rt->f, chat, rt->raw, rt->raw_len, rt->channel, rt->seq, owner,
                                          REASON_LIVE_MENTION, 0);
                        if (r == 0)
                                r = strmap_put(&done, owner, (void *)1);
                }
                free(owner);
        }
        strmap_fini(&done);
        return r;
}

/* Decides about one chat message; publishes its entries. */
static plan handle(daemon_ctx *d, struct fanout *f, natsMsg *m)
{
        plan p = {.kind = PLAN_ACK};
        const char *subject = natsMsg_GetSubject(m);
        jsack_meta meta;
        contract_span sender, chspan;
        if (!jsack_parse(natsMsg_GetReply(m), &meta)) {
                log_warning("Dropped chat delivery on %s: no JetStream metadata in reply subject", subject);
                atomic_fetch_add(&d->counters.chat_malformed, 1);
                return p;
        }
        p.seq = meta.stream_seq;
        atomic_store(&d->counters.fanout_lag, meta.pending);
        /* §6.1 step 1: unparseable subject -> ack. */
        if (!contract_chat_subject_parse(subject, &sender, &chspan)) {
                log_notice("Dropped chat message %s seq %" PRIu64 " on %s: not a chat subject", d->names.chat_stream,
                           p.seq, subject);
                atomic_fetch_add(&d->counters.chat_malformed, 1);
                return p;
        }
        const char *raw = natsMsg_GetData(m);
        size_t raw_len = (size_t)natsMsg_GetDataLength(m);
        contract_chat chat;
        rec_error err;
        char why[256];
        if (contract_chat_decode(raw ? raw : "", raw_len, &chat, &err) != REC_OK) {
                log_warning("Dropped chat message %s seq %" PRIu64 " on %s: %s", d->names.chat_stream, p.seq,
                            subject, rec_error_str(&err, why, sizeof why));
                atomic_fetch_add(&d->counters.chat_malformed, 1);
                return p;
        }
        /* §6.1 step 4: from.id must be the subject's sender. */
        if (strlen(chat.from_id) != sender.len || memcmp(chat.from_id, sender.p, sender.len) != 0) {
                log_warning("Dropped chat message %s seq %" PRIu64 " on %s: from.id %.64s is not the subject sender",
                            d->names.chat_stream, p.seq, subject, chat.from_id);
                atomic_fetch_add(&d->counters.chat_malformed, 1);
                contract_chat_fini(&chat);
                return p;
        }
        char *channel = strndup(chspan.p, chspan.len);
        route rt = {.d = d, .f = f, .chat = &chat, .raw = raw, .raw_len = raw_len, .channel = channel, .seq = p.seq};
        int r = -ENOMEM;
        p.first = f->pub.n;
        if (channel)
                r = kv_cache_channel_is_durable(f->cache, channel) ? route_durable(&rt) : route_live(&rt);
        p.count = f->pub.n - p.first;
        if (r < 0) {
                /* §6.5: transient failure -> nak with delay, never terminate. */
                log_warning("Failed to fan out %s seq %" PRIu64 " (channel %s): %s; retrying in %d ms",
                            d->names.chat_stream, p.seq, channel ? channel : "?",
                            f->pub.last_error[0] ? f->pub.last_error : strerror(-r), FANOUT_NAK_DELAY_MS);
                p.kind = PLAN_NAK;
        } else {
                p.kind = PLAN_PUBLISHED;
                log_debug("Fanned out %s seq %" PRIu64 " on %s to %zu recipients", d->names.chat_stream, p.seq,
                          channel, p.count);
        }
        free(channel);
        contract_chat_fini(&chat);
        return p;
}

static void backlog_free(const char *key, void *value, void *arg)
{
        (void)key;
        (void)arg;
        owner_backlog *b = value;
        if (b) {
                free(b->seqs);
                free(b);
        }
}

static void backlog_add(struct fanout *f, const char *owner, uint64_t seq)
{
        owner_backlog *b = strmap_get(&f->backlog, owner);
        if (!b) {
                b = calloc(1, sizeof *b);
                if (!b || strmap_put(&f->backlog, owner, b) < 0) {
                        free(b);
                        return;
                }
        }
        if (b->n == b->cap) {
                size_t ncap = b->cap ? b->cap * 2 : 64;
                uint64_t *ns = realloc(b->seqs, ncap * sizeof *ns);
                if (!ns)
                        return;
                b->seqs = ns;
                b->cap = ncap;
        }
        b->seqs[b->n++] = seq;
}

typedef struct prune_ctx {
        uint64_t floor;
        size_t max;
        const char *max_owner;
} prune_ctx;

static void prune_one(const char *key, void *value, void *arg)
{
        prune_ctx *c = arg;
        owner_backlog *b = value;
        size_t k = 0;
        while (k < b->n && b->seqs[k] <= c->floor)
                k++;
        if (k) {
                memmove(b->seqs, b->seqs + k, (b->n - k) * sizeof *b->seqs);
                b->n -= k;
        }
        if (b->n > c->max) {
                c->max = b->n;
                c->max_owner = key;
        }
}

/* Largest per-owner backlog after pruning at the reader's ack floor. */
static size_t backlog_max(struct fanout *f, const char **owner)
{
        prune_ctx c = {.floor = f->reader_floor};
        strmap_foreach(&f->backlog, prune_one, &c);
        if (owner)
                *owner = c.max_owner;
        return c.max;
}

/* Reads the reader's ack floor (CONSUMER.INFO on INBOX_<S>/reader). */
static int refresh_floor(daemon_ctx *d, struct fanout *f)
{
        json_t *reply = NULL;
        jsapi_error jerr;
        int r = jsapi_consumer_info(d->fanout_nc, d->names.inbox_stream, CONTRACT_READER_DURABLE, 0, &reply, &jerr);
        if (r < 0)
                return r;
        uint64_t floor = 0;
        (void)json_path_u64(reply, "ack_floor.stream_seq", &floor);
        json_decref(reply);
        if (floor > f->reader_floor)
                f->reader_floor = floor;
        return 0;
}

/* E1: waits while some owner's unread backlog plus one more batch could
 * pass the limit. Returns false if the daemon is stopping. */
static bool wait_for_reader(daemon_ctx *d, struct fanout *f)
{
        size_t limit = (size_t)atomic_load(&d->inbox_lead_limit);
        size_t batch = (size_t)atomic_load(&d->fanout_batch);
        const char *owner = NULL;
        size_t max = backlog_max(f, &owner);
        uint64_t rounds = atomic_load(&d->reader_rounds);
        int64_t next_read = 0;
        while (max + batch > limit) {
                if (atomic_load(&d->stopping))
                        return false;
                /* Re-read the floor when a reader batch finished, else
                 * every FANOUT_LEAD_POLL_MS (its acks may reach the server
                 * a little after the batch ends). */
                uint64_t now_rounds = atomic_load(&d->reader_rounds);
                int64_t now = daemon_mono_ms();
                if (now_rounds != rounds || now >= next_read) {
                        rounds = now_rounds;
                        next_read = now + FANOUT_LEAD_POLL_MS;
                        if (refresh_floor(d, f) == 0) {
                                max = backlog_max(f, &owner);
                                if (max + batch <= limit)
                                        break;
                        }
                }
                if (!f->paused) {
                        f->paused = true;
                        atomic_fetch_add(&d->counters.fanout_pauses, 1);
                        log_info("Fan-out paused: owner %.64s has %zu unread entries in %s (limit %zu, batch %zu); "
                                 "waiting for the reader",
                                 owner ? owner : "?", max, d->names.inbox_stream, limit, batch);
                }
                daemon_backoff(d, FANOUT_LEAD_STEP_MS);
        }
        if (f->paused) {
                f->paused = false;
                log_info("Fan-out resumed: largest unread backlog in %s is %zu", d->names.inbox_stream, max);
        }
        return true;
}

/* Whether the broker refused this round's publish to owner's dinbox
 * subject for permissions (dropped by the server, never answered). */
static bool dinbox_denied(daemon_ctx *d, struct fanout *f, const char *owner)
{
        char *subject = owner ? contract_dinbox_subject(&d->names, owner) : NULL;
        bool denied = subject && denials_publish_denied_since(&d->denied, subject, f->pub.round_ms);
        free(subject);
        return denied;
}

static void finish_batch(daemon_ctx *d, struct fanout *f, int n)
{
        (void)jspub_wait(&f->pub, FANOUT_PUBACK_TIMEOUT_MS);
        char nak[64], nak_denied[64];
        jsack_nak_delay(nak, sizeof nak, FANOUT_NAK_DELAY_MS);
        for (int i = 0; i < n; i++) {
                plan *p = &f->plans[i];
                const char *ack = JSACK_ACK;
                if (p->kind == PLAN_PUBLISHED) {
                        bool denied = false;
                        for (size_t k = p->first; k < p->first + p->count; k++) {
                                const jspub_result *res = jspub_result_at(&f->pub, k);
                                if (res->state == JSPUB_TOO_LARGE) {
                                        /* Poison: the entry can never be written. */
                                        log_warning("Dropped entry of %s seq %" PRIu64 " for %.64s: larger "
                                                    "than the broker's max payload (%" PRId64 " bytes)",
                                                    d->names.chat_stream, p->seq, f->sent[k].owner,
                                                    natsConnection_GetMaxPayload(f->pub.nc));
                                } else if (res->state != JSPUB_OK) {
                                        ack = nak;
                                        denied = denied || dinbox_denied(d, f, f->sent[k].owner);
                                }
                        }
                        jsack_meta meta;
                        if (denied && jsack_parse(natsMsg_GetReply(f->msgs[i]), &meta)) {
                                /* The credential lacks PROTOCOL §11.3's
                                 * "P.dinbox.*" (logged once by
                                 * daemon_on_error): back off (§6.5 still:
                                 * nak, never terminate). */
                                int64_t delay = daemon_denied_delay_ms(meta.delivered, p->seq);
                                jsack_nak_delay(nak_denied, sizeof nak_denied, delay);
                                log_debug("Deferred %s seq %" PRIu64 ": an inbox write was refused (permissions), "
                                          "delivery %" PRIu64 "; retrying in %lld ms",
                                          d->names.chat_stream, p->seq, meta.delivered, (long long)delay);
                                note_outcome(f, p->seq, false);
                                if (pull_ack(&f->pull, f->msgs[i], nak_denied) < 0)
                                        log_warning("Failed to ack %s seq %" PRIu64 "; it will be redelivered",
                                                    d->names.chat_stream, p->seq);
                                continue;
                        }
                        if (ack != nak) {
                                for (size_t k = p->first; k < p->first + p->count; k++) {
                                        const jspub_result *res = jspub_result_at(&f->pub, k);
                                        if (res->state == JSPUB_OK && !res->duplicate)
                                                backlog_add(f, f->sent[k].owner, res->seq);
                                }
                                atomic_fetch_add(&d->counters.entries_written, p->count);
                                atomic_fetch_add(&d->counters.chat_handled, 1);
                        } else {
                                log_warning("Failed to write entries of %s seq %" PRIu64 ": %s; retrying in %d ms",
                                            d->names.chat_stream, p->seq, f->pub.last_error, FANOUT_NAK_DELAY_MS);
                        }
                } else if (p->kind == PLAN_NAK) {
                        ack = nak;
                } else {
                        atomic_fetch_add(&d->counters.chat_handled, 1);
                }
                if (p->seq)
                        note_outcome(f, p->seq, ack != nak);
                if (pull_ack(&f->pull, f->msgs[i], ack) < 0)
                        log_warning("Failed to ack %s seq %" PRIu64 "; it will be redelivered",
                                    d->names.chat_stream, p->seq);
        }
}

static int rebind(daemon_ctx *d, void *self)
{
        struct fanout *f = self;
        int r = ensure(d, f, true);
        if (r == 0)
                log_notice("Re-bound durable %s/%s (resuming at seq %" PRIu64 ")", d->names.chat_stream,
                           CONTRACT_FANOUT_DURABLE, resume_seq(f));
        return r;
}

static int batch_size(daemon_ctx *d, void *self, int configured)
{
        (void)d;
        struct fanout *f = self;
        size_t fit = FANOUT_ROUND_ENTRIES / (f->widest ? f->widest : 1);
        return fit < (size_t)configured ? (fit ? (int)fit : 1) : configured;
}

static bool before_fetch(daemon_ctx *d, void *self)
{
        return wait_for_reader(d, self);
}

/* §6.4: the batch is handled against KV state at least as new as the
 * moment it was fetched. */
static int prepare(daemon_ctx *d, void *self)
{
        struct fanout *f = self;
        int r = kv_cache_fence(f->cache, KV_CACHE_FENCE_TIMEOUT_MS);
        if (r < 0)
                log_warning("Failed to bring the fan-out's KV view up to date (%s); %s batch retried in %d ms",
                            kv_cache_error(f->cache), d->names.chat_stream, FANOUT_NAK_DELAY_MS);
        return r;
}

static void handle_at(daemon_ctx *d, void *self, int i)
{
        struct fanout *f = self;
        f->plans[i] = handle(d, f, f->msgs[i]);
}

static void finish(daemon_ctx *d, void *self, int n)
{
        struct fanout *f = self;
        size_t widest = 0;
        for (int i = 0; i < n; i++)
                if (f->plans[i].kind == PLAN_PUBLISHED && f->plans[i].count > widest)
                        widest = f->plans[i].count;
        if (n > 0)
                f->widest = widest;
        finish_batch(d, self, n);
}

static void *fanout_thread(void *arg)
{
        daemon_ctx *d = arg;
        struct fanout *f = d->fanout;
        worker w = {
                .stream = d->names.chat_stream,
                .durable = CONTRACT_FANOUT_DURABLE,
                .pull = &f->pull,
                .pub = &f->pub,
                .msgs = f->msgs,
                .batch = &d->fanout_batch,
                .expires_ms = FANOUT_EXPIRES_MS,
                .wait_ms = FANOUT_WAIT_MS,
                .self = f,
                .beat = &d->beat_fanout,
                .rebind = rebind,
                .batch_size = batch_size,
                .before_fetch = before_fetch,
                .prepare = prepare,
                .handle = handle_at,
                .finish = finish,
        };
        return worker_run(d, &w);
}

int fanout_start(daemon_ctx *d)
{
        struct fanout *f = calloc(1, sizeof *f);
        if (!f)
                return -ENOMEM;
        strmap_init(&f->backlog);
        /* Sized for the largest batch, so a reload can change the batch. */
        f->msgs = calloc(PULL_MAX_BATCH, sizeof *f->msgs);
        f->plans = calloc(PULL_MAX_BATCH, sizeof *f->plans);
        d->fanout = f;
        int r = !f->msgs || !f->plans ? -ENOMEM : 0;
        if (r == 0)
                r = daemon_connect_worker(d, "fanout", &d->fanout_nc);
        if (r == 0 && (r = ensure(d, f, false)) < 0)
                log_error("Failed to bind durable %s/%s", d->names.chat_stream, CONTRACT_FANOUT_DURABLE);
        if (r == 0 && (r = pull_start(&f->pull, d->fanout_nc, d->inbox_prefix, d->names.chat_stream,
                                      CONTRACT_FANOUT_DURABLE)) < 0)
                log_error("Failed to subscribe for %s/%s: %s", d->names.chat_stream, CONTRACT_FANOUT_DURABLE,
                          f->pull.last_error);
        if (r == 0 && (r = jspub_init(&f->pub, d->fanout_nc, d->inbox_prefix)) < 0)
                log_error("Failed to set up inbox publishing: %s", f->pub.last_error);
        f->pub.stop = &d->stopping;
        f->pub.denied_ms = &d->denied.last_ms;
        if (r == 0) {
                char name[128], err[600];
                snprintf(name, sizeof name, "dfan_%.100s", d->id);
                r = kv_cache_open(&f->cache, d->fanout_nc, &d->names, d->inbox_prefix, name,
                                  KV_CACHE_ACL | KV_CACHE_MEMBERS | KV_CACHE_CHANNELS, err, sizeof err);
                if (r < 0)
                        log_error("Failed to watch the KV buckets for the fan-out: %s", err);
        }
        if (r == 0)
                r = -pthread_create(&f->thread, NULL, fanout_thread, d);
        if (r < 0) {
                fanout_stop(d);
                return r;
        }
        log_info("Fan-out bound to %s/%s", d->names.chat_stream, CONTRACT_FANOUT_DURABLE);
        return 0;
}

void fanout_stop(daemon_ctx *d)
{
        struct fanout *f = d->fanout;
        if (!f)
                return;
        if (f->thread)
                daemon_join(d, f->thread);
        pull_stop(&f->pull);
        jspub_fini(&f->pub);
        kv_cache_close(f->cache);
        daemon_close_worker(&d->fanout_nc);
        for (size_t i = 0; i < f->sent_cap; i++)
                free(f->sent[i].owner);
        free(f->sent);
        strmap_foreach(&f->backlog, backlog_free, NULL);
        strmap_fini(&f->backlog);
        free(f->naked);
        free(f->msgs);
        free(f->plans);
        free(f);
        d->fanout = NULL;
}
