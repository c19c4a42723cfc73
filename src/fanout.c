/* fanout: PROTOCOL §6 fan-out writer. One thread; handling is sequential
 * in delivery order (§3), publishes are pipelined per batch and every
 * chat message is acked only after all of its entries are confirmed.
 *
 * E1 (§14.4), per owner: every entry is reserved in the ledger before it
 * is published, so no owner's unread inbox can reach INBOX's cap. An entry
 * whose owner has no room is not dropped and does not stop the others: its
 * chat message is held (unacked, kept alive with +WPI) until the reader
 * makes room, while later messages for other owners go on. Entries for an
 * owner are written in chat order: once an owner has held entries, its
 * entries of later messages wait behind them. */
#include "fanout.h"

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

/* Mentions resolved per chat message at most (§6.3 sets no bound; a post
 * with 160,000 of them once held the fan-out for 14.9 s). The rest are
 * counted and logged, never delivered. */
#define FANOUT_MENTIONS_MAX 10000
#define FANOUT_EXPIRES_MS 5000
#define FANOUT_WAIT_MS 500
#define FANOUT_PUBACK_TIMEOUT_MS 10000
/* Inbox entries one round aims at: with K recipients per message a batch
 * of B chat messages is B x K publishes held in memory until their
 * PubAcks (200 x 256 would be 51,200), so big channels fetch fewer
 * messages per round. */
#define FANOUT_ROUND_ENTRIES 8192
/* Held chat messages (E1). They count against the durable's
 * max_ack_pending (the server's default, 1000, §3) together with a fetched
 * batch (at most 1024), so past FANOUT_MAX_HELD (or inflight-mib of their
 * data) the fan-out fetches nothing new until the reader makes room. */
#define FANOUT_MAX_HELD 512
/* +WPI well inside ack_wait (60 s, Appendix A). */
#define FANOUT_HELD_WPI_MS 20000
/* While something is held: the fetch wait (so room is used soon), and how
 * long a full hold waits for the reader before looking again. */
#define FANOUT_HELD_WAIT_MS 50
#define FANOUT_FULL_WAIT_MS 100
/* How often the reader's position is read (CONSUMER.INFO): it prunes what
 * the floor covers and tightens a seed's bound; faster while something is
 * held (a seed's bound may be what holds it). */
#define FANOUT_FLOOR_REFRESH_MS 1000
#define FANOUT_HELD_REFRESH_MS 100
/* Held entries that see no progress this long are logged (again every
 * period): the reader is not disposing of that owner's entries. */
#define FANOUT_STALL_LOG_MS 30000
#define FANOUT_HOLD_LOG_MS 10000

/* One owner's entry a chat message still owes. */
typedef struct owed {
        char *owner; /* as the record or the roster names it (subject, dedup id) */
        char *key;   /* its dinbox subject's owner token: the ledger's key */
        uint64_t generation;
        contract_reason reason;
} owed;

/* A chat message held until its owed entries fit (E1). */
typedef struct held_msg {
        natsMsg *m; /* owned; its reply subject acks it */
        uint64_t seq;
        char *msg_id; /* the chat id, for dedup ids */
        char *channel;
        owed *owe;
        size_t n_owe;
        size_t bytes;
        int64_t wpi_ms; /* monotonic: last +WPI (or the hold) */
} held_msg;

/* What to do with one fetched chat message after the publish round. */
typedef enum { PLAN_ACK, PLAN_NAK, PLAN_PUBLISHED, PLAN_HELD_ALREADY } plan_kind;

typedef struct plan {
        plan_kind kind;
        size_t first, count; /* jspub result indices */
        uint64_t seq;
        char *msg_id, *channel; /* owned, kept when the message is held */
        owed *owe;              /* entries deferred: no room, or queued behind held ones */
        size_t n_owe, cap_owe;
} plan;

/* One line per kind of event at most every FANOUT_HOLD_LOG_MS: a burst
 * toward many owners can start and end a hold several times a second. */
struct ratelog {
        int64_t logged_ms;
        uint64_t unlogged; /* events since the last line */
};

/* One publish of a round: whose ledger entry, and (when draining) which
 * held entry it pays. */
typedef struct sent {
        char *key;      /* owned */
        held_msg *held; /* NULL for a fresh message's entry */
        size_t owe_idx;
} sent;

struct fanout {
        pthread_t thread;
        pull_sub pull;
        jspub pub;
        kv_cache *cache; /* ACLs, members, channel classes (§6.4 fenced) */
        worker *w;       /* the loop's settings, owned by the thread */
        natsMsg **msgs;
        plan *plans;
        sent *sent; /* parallel to jspub results */
        size_t sent_cap;
        size_t prefix_len; /* of "cotal.<S>.dinbox." */
        /* Held messages in chat order, and per owner key how many entries
         * they owe it (a count cast to a pointer). */
        held_msg **held;
        size_t n_held, held_bytes;
        strmap owing;
        bool holding, full; /* something held; held_full() */
        struct ratelog log_held, log_full, log_released;
        int64_t last_paid_ms, stall_logged_ms;
        int64_t refreshed_ms;

        /* Where a re-created durable must resume: the lowest CHAT seq not
         * yet acked (nak'ed and held ones included), else the last acked + 1. */
        uint64_t acked_through;
        size_t widest;   /* most entries one message produced, last round */
        uint64_t *naked; /* seqs nak'ed and not acked since */
        size_t n_naked, cap_naked;
};

static uint64_t resume_seq(const struct fanout *f)
{
        uint64_t from = f->acked_through + 1;
        for (size_t i = 0; i < f->n_naked; i++)
                if (f->naked[i] < from)
                        from = f->naked[i];
        for (size_t i = 0; i < f->n_held; i++)
                if (f->held[i]->seq < from)
                        from = f->held[i]->seq;
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
        if (cfg && rearm && f->acked_through + f->n_naked + f->n_held > 0) {
                json_object_set_new(cfg, "deliver_policy", json_string("by_start_sequence"));
                json_object_set_new(cfg, "opt_start_seq", json_integer((json_int_t)resume_seq(f)));
        }
        int r = cfg ? daemon_ensure_consumer(d, d->names.chat_stream, cfg) : -ENOMEM;
        json_decref(cfg);
        return r;
}

/* ---- owed entries and held messages ------------------------------------ */

static void owed_fini(owed *o)
{
        free(o->owner);
        free(o->key);
}

static int owed_add(owed **v, size_t *n, size_t *cap, const char *owner, const char *key, uint64_t generation,
                    contract_reason reason)
{
        if (*n == *cap) {
                size_t ncap = *cap ? *cap * 2 : 4;
                owed *nv = realloc(*v, ncap * sizeof *nv);
                if (!nv)
                        return -ENOMEM;
                *v = nv;
                *cap = ncap;
        }
        owed o = {.owner = strdup(owner), .key = strdup(key), .generation = generation, .reason = reason};
        if (!o.owner || !o.key) {
                owed_fini(&o);
                return -ENOMEM;
        }
        (*v)[(*n)++] = o;
        return 0;
}

static size_t owing_of(const struct fanout *f, const char *key)
{
        return (size_t)(uintptr_t)strmap_get(&f->owing, key);
}

static int owing_add(struct fanout *f, const char *key, long delta)
{
        size_t now = owing_of(f, key) + (size_t)delta;
        if (now == 0) {
                (void)strmap_remove(&f->owing, key);
                return 0;
        }
        return strmap_put(&f->owing, key, (void *)(uintptr_t)now);
}

static void held_free(held_msg *h)
{
        if (!h)
                return;
        for (size_t i = 0; i < h->n_owe; i++)
                owed_fini(&h->owe[i]);
        free(h->owe);
        free(h->msg_id);
        free(h->channel);
        natsMsg_Destroy(h->m);
        free(h);
}

static held_msg *held_find(const struct fanout *f, uint64_t seq)
{
        for (size_t i = 0; i < f->n_held; i++)
                if (f->held[i]->seq == seq)
                        return f->held[i];
        return NULL;
}

/* Takes m and the plan's owed entries. -ENOMEM leaves both with the
 * caller. */
static int hold(struct fanout *f, natsMsg *m, plan *p)
{
        if (!f->held && !(f->held = calloc(FANOUT_MAX_HELD + PULL_MAX_BATCH, sizeof *f->held)))
                return -ENOMEM;
        held_msg *h = calloc(1, sizeof *h);
        if (!h)
                return -ENOMEM;
        for (size_t i = 0; i < p->n_owe; i++)
                if (owing_add(f, p->owe[i].key, 1) < 0) {
                        for (size_t k = 0; k < i; k++)
                                (void)owing_add(f, p->owe[k].key, -1);
                        free(h);
                        return -ENOMEM;
                }
        h->m = m;
        h->seq = p->seq;
        h->msg_id = p->msg_id;
        h->channel = p->channel;
        h->owe = p->owe;
        h->n_owe = p->n_owe;
        h->bytes = (size_t)natsMsg_GetDataLength(m) + 256 * p->n_owe;
        h->wpi_ms = daemon_mono_ms();
        p->msg_id = p->channel = NULL;
        p->owe = NULL;
        p->n_owe = p->cap_owe = 0;
        /* Chat order: redeliveries can come back below what is held. */
        size_t at = f->n_held;
        while (at > 0 && f->held[at - 1]->seq > h->seq)
                at--;
        memmove(f->held + at + 1, f->held + at, (f->n_held - at) * sizeof *f->held);
        f->held[at] = h;
        f->n_held++;
        f->held_bytes += h->bytes;
        return 0;
}

static void plan_fini(plan *p)
{
        for (size_t i = 0; i < p->n_owe; i++)
                owed_fini(&p->owe[i]);
        free(p->owe);
        free(p->msg_id);
        free(p->channel);
        memset(p, 0, sizeof *p);
}

static int remember(struct fanout *f, long idx, const char *key, held_msg *h, size_t owe_idx)
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
        free(f->sent[idx].key);
        f->sent[idx] = (sent){.key = strdup(key), .held = h, .owe_idx = owe_idx};
        return f->sent[idx].key ? 0 : -ENOMEM;
}

/* Publishes one dinbox entry (§5.2) whose ledger room is reserved.
 * Returns 0 or -errno; on -errno the reservation is released. */
static int publish_entry(daemon_ctx *d, struct fanout *f, const char *msg_id, const char *raw, size_t raw_len,
                         const char *channel, uint64_t seq, const char *subject, const char *key, const char *owner,
                         contract_reason reason, uint64_t generation, held_msg *h, size_t owe_idx)
{
        char *id = contract_dedup_id(msg_id, owner, generation);
        char *body = NULL;
        size_t len = 0;
        int r = id ? contract_entry_encode(raw, raw_len, channel, seq, reason, generation, &body, &len) : -ENOMEM;
        long idx = r == 0 ? jspub_publish(&f->pub, subject, id, body, len) : r;
        if (idx >= 0 && (r = remember(f, idx, key, h, owe_idx)) == 0) {
                /* The ledger entry now follows the PubAck. */
        } else if (idx >= 0) {
                /* Sent, but its bookkeeping failed: keep the room
                 * reserved for good (too high is safe) and nak the
                 * message through the error. */
        } else {
                r = (int)idx;
                ledger_release(d->ledger, key);
        }
        free(id);
        free(body);
        return r;
}

/* One chat message being routed: what publish_entry needs. */
typedef struct route {
        daemon_ctx *d;
        struct fanout *f;
        plan *p;
        const contract_chat *chat;
        const char *raw;
        size_t raw_len;
        const char *channel;
        uint64_t seq;
} route;

/* One recipient: publish now if the owner has room and nothing held ahead
 * of it, else owe it (E1). */
static int route_to(route *rt, const char *owner, contract_reason reason, uint64_t generation)
{
        struct fanout *f = rt->f;
        char *subject = contract_dinbox_subject(&rt->d->names, owner);
        if (!subject)
                return -ENOMEM;
        const char *key = subject + f->prefix_len;
        int r;
        if (owing_of(f, key) > 0 || !ledger_reserve(rt->d->ledger, key))
                r = owed_add(&rt->p->owe, &rt->p->n_owe, &rt->p->cap_owe, owner, key, generation, reason);
        else
                r = publish_entry(rt->d, f, rt->chat->id, rt->raw, rt->raw_len, rt->channel, rt->seq, subject, key,
                                  owner, reason, generation, NULL, 0);
        free(subject);
        return r;
}

static int route_member(const contract_member *m, const char *channel, void *arg)
{
        (void)channel;
        route *rt = arg;
        if (strcmp(m->owner, rt->chat->from_id) == 0)
                return 0; /* never backstop the sender's own post */
        if (!contract_member_eligible(m, rt->seq))
                return 0;
        return route_to(rt, m->owner, REASON_DURABLE_CHANNEL, m->generation);
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
        strmap done, names;
        strmap_init(&done);
        strmap_init(&names);
        int r = 0;
        size_t i;
        json_t *v;
        size_t n = json_array_size(chat->mentions);
        if (n > FANOUT_MENTIONS_MAX) {
                /* A bound on the work one post may cost (issue 14 item 4). */
                atomic_fetch_add(&rt->d->counters.mentions_ignored, n - FANOUT_MENTIONS_MAX);
                log_warning("Ignored %zu of the %zu mentions of %s seq %" PRIu64 " (message %.64s): at most %d are "
                            "resolved per message",
                            n - FANOUT_MENTIONS_MAX, n, rt->d->names.chat_stream, rt->seq, chat->id,
                            FANOUT_MENTIONS_MAX);
        }
        json_array_foreach (chat->mentions, i, v) {
                if (r < 0 || i >= FANOUT_MENTIONS_MAX)
                        break;
                /* Each distinct name once: repeats cost nothing more. */
                if (!json_is_string(v) || strmap_get(&names, json_string_value(v)))
                        continue;
                if (strmap_put(&names, json_string_value(v), (void *)1) < 0) {
                        r = -ENOMEM;
                        break;
                }
                char *owner = roster_resolve(rt->d, json_string_value(v));
                if (!owner || strcmp(owner, chat->from_id) == 0 || strmap_get(&done, owner)) {
                        free(owner);
                        continue;
                }
                const contract_acl *acl;
                const char *why;
                if (kv_cache_acl(rt->f->cache, owner, &acl, &why) == 0 &&
                    contract_channel_in_allow((const char *const *)acl->allow, acl->n_allow, rt->channel)) {
                        r = route_to(rt, owner, REASON_LIVE_MENTION, 0);
                        if (r == 0)
                                r = strmap_put(&done, owner, (void *)1);
                }
                free(owner);
        }
        strmap_fini(&names);
        strmap_fini(&done);
        return r;
}

/* Decides about one chat message; publishes the entries that have room. */
static void handle(daemon_ctx *d, struct fanout *f, natsMsg *m, plan *p)
{
        memset(p, 0, sizeof *p);
        p->kind = PLAN_ACK;
        const char *subject = natsMsg_GetSubject(m);
        jsack_meta meta;
        contract_span sender, chspan;
        if (!jsack_parse(natsMsg_GetReply(m), &meta)) {
                log_warning("Dropped chat delivery on %s: no JetStream metadata in reply subject", subject);
                atomic_fetch_add(&d->counters.chat_malformed, 1);
                return;
        }
        p->seq = meta.stream_seq;
        atomic_store(&d->counters.fanout_lag, meta.pending);
        held_msg *h = held_find(f, p->seq);
        if (h) {
                /* Redelivered while held (a +WPI did not arrive in time):
                 * the newest delivery is the one to ack. */
                natsMsg_Destroy(h->m);
                h->m = m;
                p->kind = PLAN_HELD_ALREADY;
                return;
        }
        /* §6.1 step 1: unparseable subject -> ack. */
        if (!contract_chat_subject_parse(subject, &sender, &chspan)) {
                log_notice("Dropped chat message %s seq %" PRIu64 " on %s: not a chat subject", d->names.chat_stream,
                           p->seq, subject);
                atomic_fetch_add(&d->counters.chat_malformed, 1);
                return;
        }
        const char *raw = natsMsg_GetData(m);
        size_t raw_len = (size_t)natsMsg_GetDataLength(m);
        contract_chat chat;
        rec_error err;
        char why[256];
        if (contract_chat_decode(raw ? raw : "", raw_len, &chat, &err) != REC_OK) {
                log_warning("Dropped chat message %s seq %" PRIu64 " on %s: %s", d->names.chat_stream, p->seq, subject,
                            rec_error_str(&err, why, sizeof why));
                atomic_fetch_add(&d->counters.chat_malformed, 1);
                return;
        }
        /* §6.1 step 4: from.id must be the subject's sender. */
        if (strlen(chat.from_id) != sender.len || memcmp(chat.from_id, sender.p, sender.len) != 0) {
                log_warning("Dropped chat message %s seq %" PRIu64 " on %s: from.id %.64s is not the subject sender",
                            d->names.chat_stream, p->seq, subject, chat.from_id);
                atomic_fetch_add(&d->counters.chat_malformed, 1);
                contract_chat_fini(&chat);
                return;
        }
        p->channel = strndup(chspan.p, chspan.len);
        p->msg_id = strdup(chat.id);
        route rt = {.d = d,
                    .f = f,
                    .p = p,
                    .chat = &chat,
                    .raw = raw,
                    .raw_len = raw_len,
                    .channel = p->channel,
                    .seq = p->seq};
        int r = -ENOMEM;
        p->first = f->pub.n;
        if (p->channel && p->msg_id)
                r = kv_cache_channel_is_durable(f->cache, p->channel) ? route_durable(&rt) : route_live(&rt);
        p->count = f->pub.n - p->first;
        if (r < 0) {
                /* §6.5: transient failure -> nak with delay, never terminate. */
                log_warning("Failed to fan out %s seq %" PRIu64 " (channel %s): %s; retrying in %d ms",
                            d->names.chat_stream, p->seq, p->channel ? p->channel : "?",
                            f->pub.last_error[0] ? f->pub.last_error : strerror(-r), CONTRACT_NAK_DELAY_MS);
                p->kind = PLAN_NAK;
        } else {
                p->kind = PLAN_PUBLISHED;
                log_debug("Fanned out %s seq %" PRIu64 " on %s to %zu recipients (%zu waiting for room)",
                          d->names.chat_stream, p->seq, p->channel, p->count, p->n_owe);
        }
        contract_chat_fini(&chat);
}

/* Whether the broker refused this round's publish to owner's dinbox
 * subject for permissions (dropped by the server, never answered). */
static bool dinbox_denied(daemon_ctx *d, struct fanout *f, const char *key)
{
        char *subject = NULL;
        bool denied = asprintf(&subject, "%s.dinbox.%s", d->names.prefix, key) >= 0 &&
                      denials_publish_denied_since(&d->denied, subject, f->pub.round_ms);
        free(subject);
        return denied;
}

/* The ledger follows every publish of the round on its own, whatever the
 * message's other entries did (ledger_sync_publish). */
static void settle_ledger(daemon_ctx *d, struct fanout *f)
{
        for (size_t k = 0; k < f->pub.n; k++) {
                const jspub_result *res = jspub_result_at(&f->pub, k);
                if (k >= f->sent_cap || !f->sent[k].key)
                        continue;
                if (res->state == JSPUB_TIMEOUT && dinbox_denied(d, f, f->sent[k].key))
                        ledger_release(d->ledger, f->sent[k].key); /* refused, not stored */
                else
                        ledger_sync_publish(d->ledger, f->sent[k].key, res);
                free(f->sent[k].key);
                f->sent[k].key = NULL;
        }
}

static void ack_chat(daemon_ctx *d, struct fanout *f, natsMsg *m, uint64_t seq, const char *ack)
{
        if (pull_ack(&f->pull, m, ack) < 0)
                log_warning("Failed to ack %s seq %" PRIu64 "; it will be redelivered", d->names.chat_stream, seq);
}

/* Entries whose envelope (the chat body, §5.2, plus the entry's fields
 * and its Nats-Msg-Id header) exceeds the broker's max payload can never
 * be written: counted, and said once per chat message (issue 14 item 5). */
static void drop_too_large(daemon_ctx *d, struct fanout *f, const plan *p, natsMsg *m, size_t n, const char *first)
{
        atomic_fetch_add(&d->counters.entries_too_large, n);
        log_warning("Dropped %zu inbox entr%s of %s seq %" PRIu64 " (message %.64s, a %d-byte body): larger than the "
                    "broker's max payload (%" PRId64 " bytes) once wrapped for the inbox; first owner %.64s",
                    n, n == 1 ? "y" : "ies", d->names.chat_stream, p->seq, p->msg_id ? p->msg_id : "?",
                    natsMsg_GetDataLength(m), natsConnection_GetMaxPayload(f->pub.nc), first ? first : "?");
}

static void finish_batch(daemon_ctx *d, struct fanout *f, int n)
{
        (void)jspub_wait(&f->pub, FANOUT_PUBACK_TIMEOUT_MS);
        char nak[64], nak_denied[64];
        jsack_nak_delay(nak, sizeof nak, CONTRACT_NAK_DELAY_MS);
        for (int i = 0; i < n; i++) {
                plan *p = &f->plans[i];
                const char *ack = JSACK_ACK;
                if (p->kind == PLAN_HELD_ALREADY) {
                        f->msgs[i] = NULL; /* the held copy owns it now */
                        continue;
                }
                if (p->kind == PLAN_PUBLISHED) {
                        bool denied = false;
                        size_t too_large = 0;
                        const char *too_large_for = NULL;
                        for (size_t k = p->first; k < p->first + p->count; k++) {
                                const jspub_result *res = jspub_result_at(&f->pub, k);
                                const char *key = k < f->sent_cap ? f->sent[k].key : NULL;
                                if (res->state == JSPUB_TOO_LARGE) {
                                        /* Poison: the entry can never be written. */
                                        if (!too_large++)
                                                too_large_for = key;
                                } else if (res->state != JSPUB_OK) {
                                        ack = nak;
                                        denied = denied || (key && dinbox_denied(d, f, key));
                                } else {
                                        atomic_fetch_add(&d->counters.entries_written, 1);
                                }
                        }
                        jsack_meta meta;
                        if (denied && jsack_parse(natsMsg_GetReply(f->msgs[i]), &meta)) {
                                /* The credential lacks PROTOCOL §11.3's
                                 * "P.dinbox.*" (logged once by
                                 * daemon_on_error): back off (§6.5 still:
                                 * nak, never terminate). */
                                int64_t delay = denials_retry_delay_ms(meta.delivered, p->seq);
                                jsack_nak_delay(nak_denied, sizeof nak_denied, delay);
                                log_debug("Deferred %s seq %" PRIu64 ": an inbox write was refused (permissions), "
                                          "delivery %" PRIu64 "; retrying in %lld ms",
                                          d->names.chat_stream, p->seq, meta.delivered, (long long)delay);
                                note_outcome(f, p->seq, false);
                                ack_chat(d, f, f->msgs[i], p->seq, nak_denied);
                                continue;
                        }
                        if (too_large && ack != nak)
                                drop_too_large(d, f, p, f->msgs[i], too_large, too_large_for);
                        if (ack == nak) {
                                /* Redelivered whole; what was stored
                                 * collapses on its dedup id then. */
                                log_warning("Failed to write entries of %s seq %" PRIu64 ": %s; retrying in %d ms",
                                            d->names.chat_stream, p->seq, f->pub.last_error, CONTRACT_NAK_DELAY_MS);
                        } else if (p->n_owe > 0) {
                                if (hold(f, f->msgs[i], p) == 0) {
                                        f->msgs[i] = NULL;
                                        note_outcome(f, p->seq, false);
                                        continue;
                                }
                                ack = nak; /* cannot hold it: back to the server */
                        } else {
                                atomic_fetch_add(&d->counters.chat_handled, 1);
                        }
                } else if (p->kind == PLAN_NAK) {
                        ack = nak;
                } else {
                        atomic_fetch_add(&d->counters.chat_handled, 1);
                }
                if (p->seq)
                        note_outcome(f, p->seq, ack != nak);
                ack_chat(d, f, f->msgs[i], p->seq, ack);
        }
        settle_ledger(d, f);
        for (int i = 0; i < n; i++)
                plan_fini(&f->plans[i]);
}

/* ---- paying held entries ----------------------------------------------- */

static void unhold(struct fanout *f, size_t i)
{
        held_msg *h = f->held[i];
        f->held_bytes -= h->bytes;
        memmove(f->held + i, f->held + i + 1, (f->n_held - i - 1) * sizeof *f->held);
        f->n_held--;
        held_free(h);
}

/* One pass over the held messages in chat order: each owed entry whose
 * owner has room now is written; an owner without room is skipped for the
 * rest of the pass (its later entries stay behind). Messages that owe
 * nothing more are acked. */
static void pay_held(daemon_ctx *d, struct fanout *f)
{
        strmap blocked;
        strmap_init(&blocked);
        jspub_reset(&f->pub);
        for (size_t i = 0; i < f->n_held && !atomic_load(&d->stopping); i++) {
                held_msg *h = f->held[i];
                for (size_t k = 0; k < h->n_owe; k++) {
                        owed *o = &h->owe[k];
                        if (strmap_get(&blocked, o->key))
                                continue;
                        if (!ledger_reserve(d->ledger, o->key)) {
                                (void)strmap_put(&blocked, o->key, (void *)1);
                                continue;
                        }
                        char *subject = contract_dinbox_subject(&d->names, o->owner);
                        int r = subject ? publish_entry(d, f, h->msg_id, natsMsg_GetData(h->m),
                                                        (size_t)natsMsg_GetDataLength(h->m), h->channel, h->seq,
                                                        subject, o->key, o->owner, o->reason, o->generation, h, k)
                                        : -ENOMEM;
                        if (!subject)
                                ledger_release(d->ledger, o->key);
                        free(subject);
                        if (r < 0)
                                (void)strmap_put(&blocked, o->key, (void *)1);
                }
        }
        strmap_fini(&blocked);
        if (f->pub.n == 0)
                return;
        (void)jspub_wait(&f->pub, FANOUT_PUBACK_TIMEOUT_MS);
        size_t paid = 0;
        for (size_t k = 0; k < f->pub.n && k < f->sent_cap; k++) {
                const jspub_result *res = jspub_result_at(&f->pub, k);
                sent *s = &f->sent[k];
                if (!s->held || !s->key)
                        continue;
                owed *o = &s->held->owe[s->owe_idx];
                if (res->state == JSPUB_OK || res->state == JSPUB_TOO_LARGE) {
                        if (res->state == JSPUB_TOO_LARGE) {
                                atomic_fetch_add(&d->counters.entries_too_large, 1);
                                log_warning("Dropped 1 inbox entry of %s seq %" PRIu64 " (message %.64s, a %d-byte "
                                            "body): larger than the broker's max payload (%" PRId64 " bytes) once "
                                            "wrapped for the inbox; first owner %.64s",
                                            d->names.chat_stream, s->held->seq, s->held->msg_id,
                                            natsMsg_GetDataLength(s->held->m), natsConnection_GetMaxPayload(f->pub.nc),
                                            o->key);
                        } else
                                atomic_fetch_add(&d->counters.entries_written, 1);
                        (void)owing_add(f, o->key, -1);
                        owed_fini(o);
                        o->key = NULL; /* paid: compacted below */
                        paid++;
                } else {
                        log_warning("Failed to write a held entry of %s seq %" PRIu64 " for %.64s: %s; retrying",
                                    d->names.chat_stream, s->held->seq, o->key, f->pub.last_error);
                }
        }
        settle_ledger(d, f);
        for (size_t k = 0; k < f->pub.n && k < f->sent_cap; k++)
                f->sent[k].held = NULL;
        if (paid)
                f->last_paid_ms = daemon_mono_ms();
        for (size_t i = 0; i < f->n_held;) {
                held_msg *h = f->held[i];
                size_t o = 0;
                for (size_t k = 0; k < h->n_owe; k++)
                        if (h->owe[k].key)
                                h->owe[o++] = h->owe[k];
                h->n_owe = o;
                if (o > 0) {
                        i++;
                        continue;
                }
                note_outcome(f, h->seq, true);
                ack_chat(d, f, h->m, h->seq, JSACK_ACK);
                atomic_fetch_add(&d->counters.chat_handled, 1);
                unhold(f, i);
        }
}

/* +WPI keeps a held message from being redelivered at ack_wait. */
static void keep_alive(daemon_ctx *d, struct fanout *f, int64_t now)
{
        for (size_t i = 0; i < f->n_held; i++)
                if (now - f->held[i]->wpi_ms >= FANOUT_HELD_WPI_MS) {
                        f->held[i]->wpi_ms = now;
                        (void)pull_ack(&f->pull, f->held[i]->m, JSACK_IN_PROGRESS);
                }
}

/* Stopping or re-binding: held messages go back to the server at once
 * (§10.4), to be handled again by whoever holds the lease next. */
static void give_back_held(daemon_ctx *d, struct fanout *f)
{
        while (f->n_held > 0) {
                held_msg *h = f->held[f->n_held - 1];
                for (size_t k = 0; k < h->n_owe; k++)
                        (void)owing_add(f, h->owe[k].key, -1);
                ack_chat(d, f, h->m, h->seq, JSACK_NAK);
                note_outcome(f, h->seq, false);
                unhold(f, f->n_held - 1);
        }
}

static bool held_full(const struct fanout *f)
{
        size_t max_bytes = f->pub.max_bytes ? f->pub.max_bytes : JSPUB_MAX_INFLIGHT_BYTES;
        return f->n_held >= FANOUT_MAX_HELD || f->held_bytes >= max_bytes;
}

/* The owner that most of the holding is for, for the log lines. */
typedef struct worst {
        const char *key;
        size_t owed;
} worst;

static void worst_one(const char *key, void *value, void *arg)
{
        worst *w = arg;
        if ((size_t)(uintptr_t)value > w->owed) {
                w->owed = (size_t)(uintptr_t)value;
                w->key = key;
        }
}

static bool ratelog_due(struct ratelog *r, int64_t now)
{
        r->unlogged++;
        if (r->logged_ms && now - r->logged_ms < FANOUT_HOLD_LOG_MS)
                return false;
        r->logged_ms = now;
        return true;
}

static void log_holding(daemon_ctx *d, struct fanout *f, int64_t now)
{
        if (f->n_held == 0) {
                if (f->holding && ratelog_due(&f->log_released, now)) {
                        log_info("Fan-out: no chat message held any more (%llu time%s since the last such line)",
                                 (unsigned long long)f->log_released.unlogged,
                                 f->log_released.unlogged == 1 ? "" : "s");
                        f->log_released.unlogged = 0;
                }
                f->holding = f->full = false;
                return;
        }
        worst w = {0};
        strmap_foreach(&f->owing, worst_one, &w);
        size_t limit = ledger_limit(d->ledger);
        size_t unread = w.key ? ledger_count(d->ledger, w.key) : 0;
        if (!f->holding) {
                f->holding = true;
                f->last_paid_ms = f->stall_logged_ms = now;
                atomic_fetch_add(&d->counters.fanout_pauses, 1);
                if (ratelog_due(&f->log_held, now)) {
                        log_info("Fan-out holding %zu chat message%s for %zu owner%s at the lead limit (worst: %.64s, "
                                 "%zu unread in %s, limit %zu); other owners' entries go on (%llu hold%s since the "
                                 "last such line)",
                                 f->n_held, f->n_held == 1 ? "" : "s", f->owing.count, f->owing.count == 1 ? "" : "s",
                                 w.key ? w.key : "?", unread, d->names.inbox_stream, limit,
                                 (unsigned long long)f->log_held.unlogged, f->log_held.unlogged == 1 ? "" : "s");
                        f->log_held.unlogged = 0;
                }
        }
        if (held_full(f) && !f->full) {
                f->full = true;
                if (ratelog_due(&f->log_full, now)) {
                        log_notice("Fan-out paused: %zu chat messages (%zu bytes) are held for owners at the lead "
                                   "limit (worst: %.64s owed %zu entries, %zu unread in %s, limit %zu); fetching "
                                   "nothing new until the reader makes room (%llu pause%s since the last such line)",
                                   f->n_held, f->held_bytes, w.key ? w.key : "?", w.owed, unread, d->names.inbox_stream,
                                   limit, (unsigned long long)f->log_full.unlogged,
                                   f->log_full.unlogged == 1 ? "" : "s");
                        f->log_full.unlogged = 0;
                }
        } else if (!held_full(f)) {
                f->full = false;
        }
        if (now - f->last_paid_ms >= FANOUT_STALL_LOG_MS && now - f->stall_logged_ms >= FANOUT_STALL_LOG_MS) {
                f->stall_logged_ms = now;
                ledger_stats st;
                ledger_get_stats(d->ledger, &st);
                log_warning("Fan-out: no held entry written for %lld s: %zu chat messages held for %zu owners (worst: "
                            "%.64s owed %zu entries, %zu unread in %s, limit %zu); the reader is not disposing of "
                            "their entries (reader ack floor %" PRIu64 ")",
                            (long long)((now - f->last_paid_ms) / 1000), f->n_held, f->owing.count, w.key ? w.key : "?",
                            w.owed, unread, d->names.inbox_stream, limit, st.floor);
        }
}

/* The reader's floor now and then: it prunes what the floor covers and
 * ends a seed. (The reader replays its own acks lost with a reconnect; a
 * lost PubAck of ours is an orphan, counted by settle_ledger.) */
static void sync_ledger(daemon_ctx *d, struct fanout *f, int64_t now)
{
        int64_t period = f->n_held > 0 ? FANOUT_HELD_REFRESH_MS : FANOUT_FLOOR_REFRESH_MS;
        if (now - f->refreshed_ms >= period) {
                f->refreshed_ms = now;
                (void)ledger_sync_refresh(d->ledger, d->fanout_nc, &d->names);
        }
}

/* ---- the worker's hooks ------------------------------------------------ */

static int rebind(daemon_ctx *d, void *self)
{
        struct fanout *f = self;
        /* Held messages belong to the vanished durable: acks on their
         * reply subjects go nowhere. The new one delivers them again. */
        give_back_held(d, f);
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
        if (held_full(f))
                return 0;
        size_t fit = FANOUT_ROUND_ENTRIES / (f->widest ? f->widest : 1);
        size_t room = FANOUT_MAX_HELD - f->n_held;
        if (fit > room)
                fit = room;
        return fit < (size_t)configured ? (fit ? (int)fit : 1) : configured;
}

static bool before_fetch(daemon_ctx *d, void *self)
{
        struct fanout *f = self;
        int64_t now = daemon_mono_ms();
        sync_ledger(d, f, now);
        if (f->n_held > 0) {
                uint64_t seen = ledger_changes(d->ledger);
                pay_held(d, f);
                keep_alive(d, f, now);
                if (held_full(f))
                        (void)ledger_wait(d->ledger, &seen, FANOUT_FULL_WAIT_MS);
        }
        log_holding(d, f, now);
        atomic_store(&d->counters.fanout_held, f->n_held);
        f->w->wait_ms = f->n_held > 0 ? FANOUT_HELD_WAIT_MS : FANOUT_WAIT_MS;
        return !atomic_load(&d->stopping);
}

/* §6.4: the batch is handled against KV state at least as new as the
 * moment it was fetched. */
static int prepare(daemon_ctx *d, void *self)
{
        struct fanout *f = self;
        int r = kv_cache_fence(f->cache, KV_CACHE_FENCE_TIMEOUT_MS);
        if (r < 0)
                log_warning("Failed to bring the fan-out's KV view up to date (%s); %s batch retried in %d ms",
                            kv_cache_error(f->cache), d->names.chat_stream, CONTRACT_NAK_DELAY_MS);
        return r;
}

static void handle_at(daemon_ctx *d, void *self, int i)
{
        struct fanout *f = self;
        handle(d, f, f->msgs[i], &f->plans[i]);
}

static void finish(daemon_ctx *d, void *self, int n)
{
        struct fanout *f = self;
        size_t widest = 0;
        for (int i = 0; i < n; i++) {
                size_t k = f->plans[i].count + f->plans[i].n_owe;
                if (f->plans[i].kind == PLAN_PUBLISHED && k > widest)
                        widest = k;
        }
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
                .inflight = &d->inflight_bytes,
                .nak_delay_ms = CONTRACT_NAK_DELAY_MS,
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
        f->w = &w;
        void *ret = worker_run(d, &w);
        give_back_held(d, f);
        f->w = NULL;
        return ret;
}

int fanout_start(daemon_ctx *d)
{
        struct fanout *f = calloc(1, sizeof *f);
        if (!f)
                return -ENOMEM;
        strmap_init(&f->owing);
        f->prefix_len = strlen(d->names.dinbox_filter) - 1; /* "cotal.<S>.dinbox." */
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
        const jspub_hooks hooks = {.stop = &d->stopping, .denied_ms = &d->denied.last_ms};
        if (r == 0 && (r = jspub_init(&f->pub, d->fanout_nc, d->inbox_prefix, &hooks)) < 0)
                log_error("Failed to set up inbox publishing: %s", f->pub.last_error);
        if (r == 0) {
                char name[128], err[600];
                snprintf(name, sizeof name, "dfan_%.100s", d->id);
                r = kv_cache_open(&f->cache, d->kv_nc, &d->names, d->inbox_prefix, name,
                                  KV_CACHE_ACL | KV_CACHE_MEMBERS | KV_CACHE_CHANNELS, err, sizeof err);
                if (r < 0)
                        log_error("Failed to watch the KV buckets for the fan-out: %s", err);
        }
        f->refreshed_ms = daemon_mono_ms();
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
        /* Normally given back by the thread; not if it never ran. */
        for (size_t i = 0; i < f->n_held; i++)
                held_free(f->held[i]);
        free(f->held);
        strmap_fini(&f->owing);
        pull_stop(&f->pull);
        jspub_fini(&f->pub);
        kv_cache_close(f->cache);
        daemon_close_worker(&d->fanout_nc);
        for (size_t i = 0; i < f->sent_cap; i++)
                free(f->sent[i].key);
        free(f->sent);
        for (int i = 0; i < PULL_MAX_BATCH && f->plans; i++)
                plan_fini(&f->plans[i]);
        free(f->naked);
        free(f->msgs);
        free(f->plans);
        free(f);
        d->fanout = NULL;
}
