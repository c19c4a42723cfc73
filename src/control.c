/* control: PROTOCOL §8 durableJoin / durableLeave / listMemberships. */
#include "control.h"

#include "broker.h"
#include "contract_channel.h"
#include "contract_config.h"
#include "contract_record.h"
#include "contract_token.h"
#include "ctlqueue.h"
#include "jsack.h"
#include "jspub.h"
#include "kv.h"
#include "kv_cache.h"
#include "kvstate.h"
#include "ledger.h"
#include "ledger_sync.h"
#include "log.h"
#include "members.h"
#include "pull.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONTROL_POLL_MS 500
/* How long a catch-up whose consumer reports nothing pending waits for one
 * more delivery before it calls the window done (see catch_up). */
#define CATCHUP_TAIL_WAIT_MS 500
#define CATCHUP_PUBACK_TIMEOUT_MS 10000
/* E1 waits: how often the reader's position is read while waiting for
 * room, and how long a join waits without the owner's count shrinking. */
#define CATCHUP_ROOM_POLL_MS 100
#define CATCHUP_STALL_MS 20000
/* nats-server closes a connection whose protocol line ("HPUB <subject>
 * <reply> <sizes>") exceeds its max_control_line, 4096 bytes by default:
 * one over-long subject would cost the daemon its connection and with it
 * the lease. Every subject a join derives from the agent's channel must
 * leave room for the verb, a reply inbox and the sizes. */
#define CONTROL_MAX_SUBJECT_BYTES 3072
/* Fairness (issue 14 item 2): requests wait per agent, served in turn;
 * past CONTROL_PER_AGENT waiting, an agent's request is answered busy at
 * once. At most CONTROL_TAKE_MAX arrivals are queued between two served
 * requests. The subscription's own buffer is bounded explicitly; what it
 * drops is counted. Shedding is logged at most every CONTROL_SHED_LOG_MS. */
#define CONTROL_PER_AGENT 32
#define CONTROL_TAKE_MAX 4096
#define CONTROL_PENDING_MSGS 65536
#define CONTROL_PENDING_BYTES (16 * 1024 * 1024)
/* A §8.3 request is a small JSON object (its channel is bounded by
 * CONTROL_MAX_SUBJECT_BYTES); a larger one is answered at once and never
 * waits, so what the lines hold stays small: at most CONTROL_PER_AGENT x
 * this per agent. */
#define CONTROL_MAX_REQUEST_BYTES 65536
#define CONTROL_TOO_LARGE_TEXT "request too large: a control request is at most 65536 bytes"
#define CONTROL_SHED_LOG_MS 10000
/* §8.2 step 1's own line, per rejected request, this many per interval;
 * past it they are summed (a flood of 300,000 a second once). */
#define CONTROL_REJECT_LINES 20
#define CONTROL_BUSY_TEXT "busy: too many control requests from this agent are waiting; retry later"

/* One kind of shed request, logged summed. */
typedef struct shed_log {
        const char *what;   /* the kind, as the log line says it */
        uint64_t unlogged;
        int64_t logged_ms;
        char last[256];     /* the latest one's subject or agent */
        int lines;          /* own lines given in this interval (unbound only) */
        int64_t lines_ms;   /* when the interval began */
} shed_log;

struct control {
        pthread_t thread;
        natsSubscription *sub;
        kv_bucket members;
        kv_cache *cache; /* the members bucket, watched: listMemberships */
        kvstate st;
        jspub pub;
        ctlqueue *waiting;
        shed_log unbound, busy, too_large, dropped;
        int64_t dropped_seen;   /* the subscription's dropped count, as last read */
};

/* ---- JetStream helpers ------------------------------------------------- */

/* CHAT_<S> state.last_seq (the "frontier" of §8.6). */
static int chat_frontier(daemon_ctx *d, uint64_t *seq)
{
        json_t *reply = NULL;
        jsapi_error jerr;
        int r = jsapi_stream_info(d->nc, d->names.chat_stream, NULL, 0, &reply, &jerr);
        if (r < 0)
                return r;
        *seq = 0;
        (void)json_path_u64(reply, "state.last_seq", seq);
        json_decref(reply);
        return 0;
}

/* CONSUMER.INFO(CHAT_<S>, fanout).delivered.stream_seq, 0 if the
 * consumer is missing (§8.6). Any other failure is an error: reading it
 * as 0 would shrink the catch-up window and skip messages the fan-out
 * handled before the join's commit. */
static int fanout_delivered(daemon_ctx *d, uint64_t *seq)
{
        json_t *reply = NULL;
        jsapi_error jerr;
        *seq = 0;
        int r = jsapi_consumer_info(d->nc, d->names.chat_stream, CONTRACT_FANOUT_DURABLE, 0, &reply, &jerr);
        if (r == -EREMOTEIO && jerr.err_code == JS_ERR_CONSUMER_NOT_FOUND)
                return 0;
        if (r == 0)
                (void)json_path_u64(reply, "delivered.stream_seq", seq);
        json_decref(reply);
        return r;
}

static void delete_consumer(daemon_ctx *d, const char *name)
{
        char *api = NULL;
        json_t *reply = NULL;
        if (asprintf(&api, "$JS.API.CONSUMER.DELETE.%s.%s", d->names.chat_stream, name) < 0)
                return;
        (void)jsapi_request(d->nc, api, NULL, 2000, &reply, NULL);
        json_decref(reply);
        free(api);
}

/* The named ephemeral pull consumer of §3 (cu_… / chathist_…): deleted
 * first (ignoring errors), then created on the extended subject the
 * delivery credential holds. *pending gets num_pending. */
static int create_probe_consumer(daemon_ctx *d, const char *name, const char *filter, uint64_t start_seq,
                                 uint64_t *pending, char *err, size_t err_size)
{
        delete_consumer(d, name);
        /* The whole filter is part of the subject (join_subjects_fit
         * bounds it): a truncated subject would not match the body. */
        char *api = NULL;
        if (asprintf(&api, "$JS.API.CONSUMER.CREATE.%s.%s.%s", d->names.chat_stream, name, filter) < 0)
                api = NULL;
        json_t *body = json_pack("{s:s, s:{s:s, s:s, s:s, s:b, s:I, s:s, s:I}}", "stream_name", d->names.chat_stream,
                                 "config", "name", name, "filter_subject", filter, "ack_policy", "none",
                                 "mem_storage", 1, "inactive_threshold", (json_int_t)CONTRACT_CATCHUP_INACTIVE_NS,
                                 "deliver_policy", "by_start_sequence", "opt_start_seq", (json_int_t)start_seq);
        json_t *reply = NULL;
        jsapi_error jerr;
        int r = body && api ? jsapi_request(d->nc, api, body, 0, &reply, &jerr) : -ENOMEM;
        json_decref(body);
        free(api);
        if (r < 0) {
                snprintf(err, err_size, "create consumer %s on %s: %s", name, d->names.chat_stream,
                         r == -ENOMEM ? "out of memory" : jerr.description);
                return r;
        }
        *pending = 0;
        (void)json_path_u64(reply, "num_pending", pending);
        json_decref(reply);
        return 0;
}

/* ---- eviction probe (§8.6) --------------------------------------------- */

static bool evicted_since(daemon_ctx *d, const char *channel, uint64_t join_cursor)
{
        char *filter = contract_channel_filter(&d->names, channel);
        char err[512];
        json_t *reply = NULL;
        jsapi_error jerr;
        bool evicted = false;
        if (!filter)
                return false;
        json_t *body = json_pack("{s:s}", "subjects_filter", filter);
        int r = jsapi_stream_info(d->nc, d->names.chat_stream, body, 0, &reply, &jerr);
        json_decref(body);
        if (r < 0) {
                if (!(r == -EREMOTEIO && jerr.code == 404))
                        log_warning("Eviction probe of %s on %s failed: %s; assuming nothing evicted", channel,
                                    d->names.chat_stream, jerr.description);
                free(filter);
                return false;
        }
        json_int_t max_per_sender = 0;
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(json_object_get(reply, "state"), "subjects"), k, v)
                if (json_integer_value(v) > max_per_sender)
                        max_per_sender = json_integer_value(v);
        json_decref(reply);
        if (max_per_sender < CONTRACT_MAX_MSGS_PER_SUBJECT) {
                free(filter);
                return false;
        }
        /* The oldest retained message of the channel, through chathist_<D>. */
        char *name = contract_chathist_consumer(d->id);
        uint64_t pending = 0;
        if (name && create_probe_consumer(d, name, filter, 1, &pending, err, sizeof err) == 0) {
                pull_sub p;
                natsMsg *m = NULL;
                if (pull_start(&p, d->nc, d->inbox_prefix, d->names.chat_stream, name) == 0) {
                        int n = pull_fetch(&p, &m, 1, CONTRACT_CATCHUP_EXPIRES_MS, CONTRACT_CATCHUP_EXPIRES_MS);
                        jsack_meta meta;
                        if (n == 1 && jsack_parse(natsMsg_GetReply(m), &meta))
                                evicted = meta.stream_seq > join_cursor + 1;
                        if (n == 1)
                                natsMsg_Destroy(m);
                        pull_stop(&p);
                }
                delete_consumer(d, name);
        } else if (name) {
                log_warning("Eviction probe of %s failed: %s; assuming nothing evicted", channel, err);
        }
        free(name);
        free(filter);
        return evicted;
}

/* ---- catch-up (§8.6) --------------------------------------------------- */

/* Waits what a round of copies still has in flight and settles each in
 * the ledger (E1, ledger_sync_publish). Starts the next round. */
static void settle_copies(daemon_ctx *d, struct control *c, const char *subject, const char *key, size_t *copied,
                          size_t *unconfirmed)
{
        (void)jspub_wait(&c->pub, CATCHUP_PUBACK_TIMEOUT_MS);
        /* Refused by the broker's permissions: not stored. */
        bool denied = denials_publish_denied_since(&d->denied, subject, c->pub.round_ms);
        for (size_t k = 0; k < c->pub.n; k++) {
                const jspub_result *res = jspub_result_at(&c->pub, k);
                if (denied && res->state == JSPUB_TIMEOUT)
                        ledger_release(d->ledger, key);
                else
                        ledger_sync_publish(d->ledger, key, res);
                if (res->state == JSPUB_OK)
                        (*copied)++;
                else
                        *unconfirmed += res->state != JSPUB_TOO_LARGE;
        }
        jspub_reset(&c->pub);
}

/* E1: a catch-up obeys the same per-owner lead limit as the fan-out, so a
 * join over a long window cannot flood its owner's inbox past the cap; it
 * writes as fast as the reader makes room. Reserves one entry of key on
 * success (0). -ETIMEDOUT when the owner's count did not shrink for
 * CATCHUP_STALL_MS, -ECANCELED when the daemon stops. */
static int wait_for_room(daemon_ctx *d, const char *key)
{
        uint64_t seen = ledger_changes(d->ledger);
        int64_t now = daemon_mono_ms(), progress_ms = now, refreshed_ms = 0;
        size_t lowest = ledger_count(d->ledger, key);
        for (;;) {
                if (ledger_reserve(d->ledger, key))
                        return 0;
                if (atomic_load(&d->stopping))
                        return -ECANCELED;
                now = daemon_mono_ms();
                atomic_store(&d->beat_control, now); /* waiting on the reader is not wedged */
                size_t count = ledger_count(d->ledger, key);
                if (count < lowest) {
                        lowest = count;
                        progress_ms = now;
                }
                if (now - progress_ms >= CATCHUP_STALL_MS)
                        return -ETIMEDOUT;
                if (now - refreshed_ms >= CATCHUP_ROOM_POLL_MS) {
                        refreshed_ms = now;
                        (void)ledger_sync_refresh(d->ledger, d->nc, &d->names);
                }
                (void)ledger_wait(d->ledger, &seen, CATCHUP_ROOM_POLL_MS);
        }
}

/* Copies channel history (from, to] into owner's dinbox. 0 or -errno with
 * err filled. */
static int catch_up(daemon_ctx *d, struct control *c, const char *owner, const char *channel, uint64_t from,
                    uint64_t to, uint64_t gen, char *err, size_t err_size)
{
        if (to <= from)
                return 0;
        char *name = contract_catchup_consumer(owner, gen);
        char *filter = contract_channel_filter(&d->names, channel);
        char *dinbox = contract_dinbox_subject(&d->names, owner);
        const char *key = dinbox ? dinbox + strlen(d->names.dinbox_filter) - 1 : NULL; /* the ledger's key */
        uint64_t pending = 0, pending_at_start = 0, seen = 0;
        int r = name && filter && dinbox ? 0 : -ENOMEM;
        if (r == 0)
                r = create_probe_consumer(d, name, filter, from + 1, &pending, err, err_size);
        pending_at_start = pending;
        pull_sub p = {0};
        natsMsg **msgs = NULL;
        if (r == 0 && (r = pull_start(&p, d->nc, d->inbox_prefix, d->names.chat_stream, name)) < 0)
                snprintf(err, err_size, "%s", p.last_error);
        if (r == 0 && !(msgs = calloc(CONTRACT_CATCHUP_BATCH, sizeof *msgs)))
                r = -ENOMEM;
        /* inflight-mib bounds a catch-up as it bounds the workers. */
        p.max_bytes = (size_t)atomic_load(&d->inflight_bytes) / PULL_MAX_REQUESTS;
        c->pub.max_bytes = (size_t)atomic_load(&d->inflight_bytes);
        jspub_reset(&c->pub);
        size_t copied = 0, unconfirmed = 0;
        bool done = false;
        /* §8.6 stops at the first batch shorter than num_pending said. On
         * nats-server 2.9 a filtered num_pending can run short of what the
         * consumer then delivers (CHAT evicts per subject), and stopping on
         * it left the window's last entries uncopied while the join said
         * durable:true (the soak, seed 1). So the window ends at a message
         * past the fence, or when the consumer has nothing more: pending
         * (num_pending, then each delivery's own count) only says how long
         * to wait for the next one. */
        while (r == 0 && !done) {
                atomic_store(&d->beat_control, daemon_mono_ms());
                int want = CONTRACT_CATCHUP_BATCH;
                int64_t wait = pending > 0 ? CONTRACT_CATCHUP_EXPIRES_MS : CATCHUP_TAIL_WAIT_MS;
                int n = 0;
                /* Collect one batch (the fetch returns what is buffered). */
                while (n < want) {
                        int got = pull_fetch(&p, msgs + n, want - n, CONTRACT_CATCHUP_EXPIRES_MS, wait);
                        if (got < 0) {
                                /* Not the end of the window: a failure (the
                                 * consumer vanished, the link broke). Copying
                                 * less and activating would lose messages. */
                                snprintf(err, err_size, "catch-up fetch failed: %s", p.last_error);
                                r = got;
                                done = true;
                                break;
                        }
                        if (got == 0)
                                break;
                        n += got;
                }
                for (int i = 0; i < n; i++) {
                        natsMsg *m = msgs[i];
                        jsack_meta meta;
                        contract_span sender, ch;
                        contract_chat chat;
                        if (!done && jsack_parse(natsMsg_GetReply(m), &meta)) {
                                pending = meta.pending;
                                seen++;
                                if (meta.stream_seq > to) {
                                        done = true; /* past the fence: stop the whole catch-up */
                                } else if (contract_chat_subject_parse(natsMsg_GetSubject(m), &sender, &ch) &&
                                           contract_chat_decode(natsMsg_GetData(m) ? natsMsg_GetData(m) : "",
                                                                (size_t)natsMsg_GetDataLength(m), &chat,
                                                                NULL) == REC_OK) {
                                        bool wanted = strlen(chat.from_id) == sender.len &&
                                                      memcmp(chat.from_id, sender.p, sender.len) == 0 &&
                                                      strcmp(chat.from_id, owner) != 0;
                                        if (wanted && !ledger_reserve(d->ledger, key)) {
                                                /* No room: what is in flight is
                                                 * counted first, then the reader
                                                 * must make room. */
                                                settle_copies(d, c, dinbox, key, &copied, &unconfirmed);
                                                int w = wait_for_room(d, key);
                                                if (w < 0) {
                                                        snprintf(err, err_size,
                                                                 "catch-up stopped at %s seq %" PRIu64
                                                                 ": %.64s has %zu unread entries in %s (lead limit "
                                                                 "%zu)%s",
                                                                 d->names.chat_stream, meta.stream_seq, owner,
                                                                 ledger_count(d->ledger, key), d->names.inbox_stream,
                                                                 ledger_limit(d->ledger),
                                                                 w == -ETIMEDOUT ? " and the reader made no room "
                                                                                   "for 20 s; retry the join"
                                                                                 : "");
                                                        r = w;
                                                        done = true;
                                                        wanted = false;
                                                }
                                        }
                                        if (wanted) {
                                                /* One entry of key is reserved. */
                                                char *id = contract_dedup_id(chat.id, owner, gen);
                                                char *body = NULL;
                                                size_t len = 0;
                                                int enc = id ? contract_entry_encode(
                                                                       natsMsg_GetData(m),
                                                                       (size_t)natsMsg_GetDataLength(m), channel,
                                                                       meta.stream_seq, REASON_DURABLE_CHANNEL, gen,
                                                                       &body, &len)
                                                             : -ENOMEM;
                                                long idx = enc < 0 ? enc
                                                                   : jspub_publish(&c->pub, dinbox, id, body, len);
                                                if (idx < 0)
                                                        ledger_release(d->ledger, key);
                                                if (idx < 0) {
                                                        /* Not even sent: the join fails and is retried. */
                                                        snprintf(err, err_size, "cannot copy %s seq %" PRIu64 ": %s",
                                                                 d->names.chat_stream, meta.stream_seq,
                                                                 strerror((int)-idx));
                                                        r = (int)idx;
                                                        done = true;
                                                } else if (jspub_result_at(&c->pub, (size_t)idx)->state ==
                                                           JSPUB_TOO_LARGE) {
                                                        /* Poison, as in the fan-out: the entry can never
                                                         * be written, so it must not block the join. */
                                                        atomic_fetch_add(&d->counters.entries_too_large, 1);
                                                        log_warning("Dropped catch-up entry of %s seq %" PRIu64
                                                                    " for %.64s: %s",
                                                                    d->names.chat_stream, meta.stream_seq, owner,
                                                                    c->pub.last_error);
                                                }
                                                free(id);
                                                free(body);
                                        }
                                        contract_chat_fini(&chat);
                                } else {
                                        log_notice("Catch-up for %.64s on %s skipped malformed %s seq %" PRIu64, owner,
                                                   channel, d->names.chat_stream, meta.stream_seq);
                                }
                        }
                        natsMsg_Destroy(m);
                        msgs[i] = NULL;
                }
                if (n == 0)
                        break; /* nothing more in the window */
        }
        /* Settled whatever happened: every reservation gets its end. */
        if (key)
                settle_copies(d, c, dinbox, key, &copied, &unconfirmed);
        if (r == 0 && unconfirmed > 0) {
                snprintf(err, err_size, "catch-up copies not confirmed (%zu): %s", unconfirmed, c->pub.last_error);
                r = -EIO;
        }
        if (r == 0)
                log_info("Catch-up for %.64s on %s generation %" PRIu64 ": %zu entries copied from (%" PRIu64
                         ", %" PRIu64 "] (%" PRIu64 " messages read; the consumer counted %" PRIu64 " at its start)",
                         owner, channel, gen, copied, from, to, seen, pending_at_start);
        free(msgs);
        pull_stop(&p);
        if (name)
                delete_consumer(d, name);
        free(name);
        free(filter);
        free(dinbox);
        return r;
}

/* ---- operations -------------------------------------------------------- */

/* {"ok":true,"data":<data>} (§5.4). Steals data; NULL when data is NULL
 * (a failed json_pack) so the caller answers with an error instead of a
 * reply without its data. */
static char *reply_ok(json_t *data)
{
        char *s = data ? contract_ctl_reply_ok(data) : NULL;
        json_decref(data);
        return s;
}

/* 1 if every subject a join of channel by owner derives fits
 * CONTROL_MAX_SUBJECT_BYTES: the KV subject of the member key and the
 * extended create subjects of the catch-up and probe consumers, which
 * carry the channel filter. 0 if not (*longest says how long), -ENOMEM. */
static int join_subjects_fit(daemon_ctx *d, struct control *c, const char *owner, const char *channel,
                             const char *key, size_t *longest)
{
        char *filter = contract_channel_filter(&d->names, channel);
        char *cu = contract_catchup_consumer(owner, UINT64_MAX); /* the longest generation */
        char *hist = contract_chathist_consumer(d->id);
        int r = -ENOMEM;
        if (filter && cu && hist) {
                size_t kv = strlen("$KV.") + strlen(c->members.bucket) + 1 + strlen(key);
                size_t name = strlen(cu) > strlen(hist) ? strlen(cu) : strlen(hist);
                size_t create = strlen("$JS.API.CONSUMER.CREATE.") + strlen(d->names.chat_stream) + 1 + name + 1 +
                                strlen(filter);
                *longest = kv > create ? kv : create;
                r = *longest <= CONTROL_MAX_SUBJECT_BYTES;
        }
        free(filter);
        free(cu);
        free(hist);
        return r;
}

static char *member_key_for(const char *channel, const char *owner)
{
        char *tok = NULL, *key = NULL;
        if (contract_token(owner, strlen(owner), &tok) < 0)
                return NULL;
        (void)contract_member_key(channel, tok, &key);
        free(tok);
        return key;
}

static char *stale_text(const char *channel, const char *owner, double attempted, uint64_t stored)
{
        char num[40];
        contract_js_number(attempted, num, sizeof num);
        return contract_err_stale(channel, owner, num, stored);
}

typedef enum {
        ACTIVATED,
        ACTIVATION_SUPERSEDED,  /* the record moved on: a leave or a rejoin won */
        ACTIVATION_NOT_WRITTEN, /* still our pending record: five CAS rounds lost */
        ACTIVATION_READ_FAILED, /* KV error: members.last_error says why */
} activation;

/* members_activate() said no. That covers a record that moved on (§8.6
 * "superseded") but also a KV read error or five lost CAS rounds, which
 * must not be reported as a concurrent leave: the record is read again
 * to tell them apart. */
static activation activation_after_refusal(struct control *c, const char *key, uint64_t gen, uint64_t join_cursor)
{
        contract_member now;
        int r = members_read(&c->members, key, &now, NULL);
        if (r == -ENOENT)
                return ACTIVATION_SUPERSEDED;
        if (r < 0)
                return ACTIVATION_READ_FAILED;
        activation a = ACTIVATION_SUPERSEDED;
        if (now.generation == gen && now.join_cursor == join_cursor && !now.has_leave_cursor)
                a = now.activated == MEMBER_ACTIVATED_TRUE ? ACTIVATED : ACTIVATION_NOT_WRITTEN;
        contract_member_fini(&now);
        return a;
}

/* §8.6 durableJoinFor. Returns the reply JSON (owned). */
static char *join(daemon_ctx *d, struct control *c, const char *caller, const json_t *args)
{
        char *channel = NULL, *error = NULL, *reply = NULL;
        if (contract_channel_arg("durableJoin", args, &channel, &error) < 0)
                goto out;
        contract_acl acl;
        char why[200];
        int a = kvstate_acl(&c->st, caller, &acl, why, sizeof why);
        if (a == -ENOENT) {
                error = contract_err_no_acl(caller);
                goto out;
        }
        if (a < 0) {
                error = strdup(c->st.last_error);
                goto out;
        }
        if (!contract_channel_in_allow((const char *const *)acl.allow, acl.n_allow, channel)) {
                error = contract_err_outside_acl(channel, &acl);
                contract_acl_fini(&acl);
                goto out;
        }
        contract_acl_fini(&acl);

        char *key = member_key_for(channel, caller);
        /* Where upstream would only fail at its first write (and lose its
         * connection), refuse before touching anything. */
        size_t longest = 0;
        int fit = key ? join_subjects_fit(d, c, caller, channel, key, &longest) : -ENOMEM;
        if (fit == 0 && asprintf(&error,
                                 "durableJoin: channel of %zu bytes is too long (a subject derived from it would "
                                 "take %zu bytes, at most %d fit the broker's protocol line)",
                                 strlen(channel), longest, CONTROL_MAX_SUBJECT_BYTES) < 0)
                error = NULL;
        if (fit <= 0) {
                if (!error)
                        error = strdup("out of memory");
                free(key);
                goto out;
        }
        contract_member e;
        uint64_t join_cursor = 0, gen = 0;
        members_result mr;
        int rr = members_read(&c->members, key, &e, NULL);
        if (rr < 0 && rr != -ENOENT) {
                error = strdup(rr == -ENOMEM ? "out of memory" : c->members.last_error);
                free(key);
                goto out;
        }
        bool exists = rr == 0;
        bool open = exists && e.state == MEMBER_STATE_DURABLE_ACTIVE && !e.has_leave_cursor;
        if (open && e.activated == MEMBER_ACTIVATED_TRUE) {
                /* Idempotent re-join. */
                reply = reply_ok(json_pack("{s:b, s:I}", "durable", 1, "generation",
                                                        (json_int_t)e.generation));
                contract_member_fini(&e);
                free(key);
                goto out;
        }
        if (open) {
                /* Retry of an unfinished activation: same window. */
                join_cursor = e.join_cursor;
                gen = e.generation;
        } else {
                if (chat_frontier(d, &join_cursor) < 0) {
                        error = strdup("cannot read the chat stream's last sequence");
                        if (exists)
                                contract_member_fini(&e);
                        free(key);
                        goto out;
                }
                gen = (exists ? e.generation : 0) + 1;
                contract_member next = {
                        .channel = channel,
                        .owner = (char *)caller,
                        .state = MEMBER_STATE_DURABLE_ACTIVE,
                        .join_cursor = join_cursor,
                        .generation = gen,
                        .activated = MEMBER_ACTIVATED_FALSE,
                        .writer_identity = d->id,
                        .updated_at = daemon_wall_ms(),
                };
                members_status st = members_commit(&c->members, key, &next, &mr);
                if (st != MEMBERS_OK) {
                        error = st == MEMBERS_STALE ? stale_text(channel, caller, (double)gen, mr.stored_generation)
                                : st == MEMBERS_EXHAUSTED ? contract_err_cas_exhausted(channel, caller)
                                                          : strdup(mr.error);
                        if (exists)
                                contract_member_fini(&e);
                        free(key);
                        goto out;
                }
        }
        if (exists)
                contract_member_fini(&e);

        /* §8.6 fence. Neither read may fail quietly: a window read too
         * short would activate a member that misses what the fan-out
         * handled just before the commit. The record stays open, so the
         * agent's retry runs the same window. */
        uint64_t frontier = 0, delivered = 0;
        if (chat_frontier(d, &frontier) < 0) {
                error = strdup("cannot read the chat stream's last sequence");
                free(key);
                goto out;
        }
        if (fanout_delivered(d, &delivered) < 0) {
                error = strdup("cannot read the fan-out consumer's position");
                free(key);
                goto out;
        }
        uint64_t fence = frontier > delivered ? frontier : delivered;
        bool evicted = fence > join_cursor && evicted_since(d, channel, join_cursor);
        char cerr[512] = "";
        if (catch_up(d, c, caller, channel, join_cursor, fence, gen, cerr, sizeof cerr) < 0) {
                error = strdup(cerr);
                free(key);
                goto out;
        }
        if (evicted) {
                double expected = (double)gen;
                members_status st = members_tombstone(&c->members, key, fence, d->id, &expected, daemon_wall_ms(), &mr);
                if (st != MEMBERS_OK && st != MEMBERS_STALE) { /* a stale write means a newer rejoin won */
                        error = st == MEMBERS_EXHAUSTED ? contract_err_cas_exhausted(channel, caller) : strdup(mr.error);
                        free(key);
                        goto out;
                }
                reply = reply_ok(json_pack(
                        "{s:b, s:s, s:I}", "durable", 0, "reason",
                        "activation catch-up window partially evicted by retention", "generation", (json_int_t)gen));
        } else {
                activation act = members_activate(&c->members, key, gen, join_cursor, daemon_wall_ms())
                                         ? ACTIVATED
                                         : activation_after_refusal(c, key, gen, join_cursor);
                /* §8.6: activate() false is "superseded", also when it
                 * only ran out of CAS rounds on our own pending record
                 * (which stays open and routes; a retry activates it). */
                if (act == ACTIVATION_SUPERSEDED || act == ACTIVATION_NOT_WRITTEN)
                        reply = reply_ok(json_pack("{s:b, s:s, s:I}", "durable", 0, "reason",
                                                   "activation superseded by a concurrent leave or rejoin",
                                                   "generation", (json_int_t)gen));
                else if (act == ACTIVATED)
                        reply = reply_ok(
                                json_pack("{s:b, s:I}", "durable", 1, "generation", (json_int_t)gen));
                else
                        error = strdup(c->members.last_error);
        }
        log_info("durableJoin %s by %.64s: generation %" PRIu64 ", joinCursor %" PRIu64 ", fence %" PRIu64 "%s",
                 channel, caller, gen, join_cursor, fence, evicted ? " (window partially evicted)" : "");
        free(key);
out:
        if (!reply)
                reply = contract_ctl_reply_error(error ? error : "internal error");
        free(channel);
        free(error);
        return reply;
}

/* §8.3 durableLeave: no ACL check; a finite generation is required. */
static char *leave(daemon_ctx *d, struct control *c, const char *caller, const json_t *args)
{
        char *channel = NULL, *error = NULL, *reply = NULL, *key = NULL;
        if (contract_channel_arg("durableLeave", args, &channel, &error) < 0)
                goto out;
        const json_t *g = json_object_get(args, "generation");
        if (!json_is_number(g)) {
                error = strdup(CONTRACT_ERR_LEAVE_GENERATION);
                goto out;
        }
        double generation = json_number_value(g);
        key = member_key_for(channel, caller);
        contract_member cur;
        int rr = key ? members_read(&c->members, key, &cur, NULL) : -ENOMEM;
        if (rr == -ENOENT) {
                reply = reply_ok(json_pack("{s:s, s:b}", "channel", channel, "alreadyLeft", 1));
                goto out;
        }
        if (rr < 0) {
                error = strdup(rr == -ENOMEM ? "out of memory" : c->members.last_error);
                goto out;
        }
        contract_member_fini(&cur);
        uint64_t frontier = 0;
        if (chat_frontier(d, &frontier) < 0) {
                error = strdup("cannot read the chat stream's last sequence");
                goto out;
        }
        members_result mr;
        members_status st = members_tombstone(&c->members, key, frontier, d->id, &generation, daemon_wall_ms(), &mr);
        if (st == MEMBERS_STALE)
                error = stale_text(channel, caller, generation, mr.stored_generation);
        else if (st == MEMBERS_EXHAUSTED)
                error = contract_err_cas_exhausted(channel, caller);
        else if (st != MEMBERS_OK)
                error = strdup(mr.error);
        else {
                reply = reply_ok(json_pack("{s:s}", "channel", channel));
                log_info("durableLeave %s by %.64s: leaveCursor %" PRIu64, channel, caller, frontier);
        }
out:
        if (!reply)
                reply = contract_ctl_reply_error(error ? error : "internal error");
        free(channel);
        free(error);
        free(key);
        return reply;
}

static int list_one(const contract_member *m, const char *channel, void *arg)
{
        if (m->has_leave_cursor)
                return 0;
        json_t *e = json_pack("{s:s, s:I, s:b}", "channel", channel, "generation", (json_int_t)m->generation,
                              "activated", m->activated == MEMBER_ACTIVATED_TRUE);
        return e && json_array_append_new(arg, e) == 0 ? 0 : -ENOMEM;
}

/* §8.3 listMemberships: the caller's readable open records, from the
 * watched members cache (issue 14: no scan of the bucket per call),
 * fenced first so the caller's own writes before the request are seen
 * (§6.4's rule, applied to the control service). */
static char *list(daemon_ctx *d, struct control *c, const char *caller)
{
        (void)d;
        if (kv_cache_fence(c->cache, KV_CACHE_FENCE_TIMEOUT_MS) < 0) {
                log_warning("listMemberships for %.64s: members cache not current: %s", caller,
                            kv_cache_error(c->cache));
                return contract_ctl_reply_error("cannot list: the membership records could not be read");
        }
        json_t *arr = json_array();
        if (!arr || kv_cache_members_of(c->cache, caller, list_one, arr) < 0) {
                json_decref(arr);
                return contract_ctl_reply_error("out of memory");
        }
        char *reply = reply_ok(json_pack("{s:o}", "memberships", arr));
        return reply ? reply : contract_ctl_reply_error("out of memory");
}

/* ---- the §8.2 pipeline ------------------------------------------------- */

static void handle(daemon_ctx *d, struct control *c, natsMsg *m)
{
        const char *subject = natsMsg_GetSubject(m);
        const char *reply_to = natsMsg_GetReply(m);
        /* Step 1, reply binding, was admit's: only bound requests wait. */
        contract_span service, sender;
        if (!contract_ctl_subject_parse(subject, &service, &sender))
                return;
        char *caller = strndup(sender.p, sender.len);
        if (!caller)
                return;
        contract_ctl_request req;
        const char *data = natsMsg_GetData(m);
        ctl_req_status st = contract_ctl_request_decode(data ? data : "", (size_t)natsMsg_GetDataLength(m), caller,
                                                        &req);
        char *reply = NULL;
        switch (st) {
        case CTL_REQ_OK: {
                const char *op = json_string_value(req.op);
                if (op && strcmp(op, "durableJoin") == 0)
                        reply = join(d, c, caller, req.args);
                else if (op && strcmp(op, "durableLeave") == 0)
                        reply = leave(d, c, caller, req.args);
                else if (op && strcmp(op, "listMemberships") == 0)
                        reply = list(d, c, caller);
                else {
                        char *e = contract_err_unknown_op(req.op);
                        reply = contract_ctl_reply_error(e ? e : "unsupported op");
                        free(e);
                }
                break;
        }
        case CTL_REQ_SENDER_MISMATCH:
                /* Step 3: nobody acts for another agent. */
                log_warning("! delivery endpoint: rejected control request on %s: from %.64s does not match subject "
                            "sender %.64s",
                            subject, req.from_id ? req.from_id : "(none)", caller);
                reply = contract_ctl_reply_error(CONTRACT_ERR_SENDER_MISMATCH);
                break;
        case CTL_REQ_NOMEM:
                break;
        default:
                log_notice("Rejected malformed control request on %s: %s", subject, req.error);
                reply = contract_ctl_reply_error(req.error[0] ? req.error : "malformed request");
                break;
        }
        contract_ctl_request_fini(&req);
        int64_t max = natsConnection_GetMaxPayload(d->nc);
        if (reply && max > 0 && (int64_t)strlen(reply) > max) {
                /* A reply the broker would refuse (a listing of tens of
                 * thousands of records) is an answer, not a timeout. */
                log_warning("Reply to %.64s on %.200s is %zu bytes, over the broker's max payload %" PRId64
                            ": answered with an error instead",
                            caller, reply_to, strlen(reply), max);
                free(reply);
                char text[200];
                snprintf(text, sizeof text, "reply too large: over the broker's max payload of %" PRId64 " bytes",
                         max);
                reply = contract_ctl_reply_error(text);
        }
        if (reply) {
                natsStatus s = natsConnection_PublishString(d->nc, reply_to, reply);
                if (s != NATS_OK)
                        log_warning("Failed to reply on %.200s: %s", reply_to, natsStatus_GetText(s));
        }
        free(reply);
        free(caller);
}

/* Counts n shed requests of l's kind and says so, summed, at most every
 * CONTROL_SHED_LOG_MS (the first at once). */
static void shed(daemon_ctx *d, shed_log *l, uint64_t n, const char *last)
{
        atomic_fetch_add(&d->counters.control_shed, n);
        l->unlogged += n;
        if (last)
                snprintf(l->last, sizeof l->last, "%s", last);
        int64_t now = daemon_mono_ms();
        if (l->logged_ms && now - l->logged_ms < CONTROL_SHED_LOG_MS)
                return;
        log_warning("! delivery endpoint: shed %" PRIu64 " control request%s: %s (latest: %.200s)", l->unlogged,
                    l->unlogged == 1 ? "" : "s", l->what, l->last[0] ? l->last : "-");
        l->unlogged = 0;
        l->logged_ms = now;
}

/* Flushes summed shed counts once their interval has passed. */
static void shed_flush(daemon_ctx *d, struct control *c)
{
        int64_t dropped = 0;
        if (natsSubscription_GetDropped(c->sub, &dropped) == NATS_OK && dropped > c->dropped_seen) {
                shed(d, &c->dropped, (uint64_t)(dropped - c->dropped_seen), NULL);
                c->dropped_seen = dropped;
        }
        shed_log *all[] = {&c->unbound, &c->busy, &c->too_large, &c->dropped};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++)
                if (all[i]->unlogged && daemon_mono_ms() - all[i]->logged_ms >= CONTROL_SHED_LOG_MS)
                        shed(d, all[i], 0, NULL);
}

/* §8.2 step 1 and the fairness queue: a request with no reply of the
 * sender's own is dropped (counted); the rest waits in its agent's line,
 * or is answered busy when that line is full. Takes m. */
static void admit(daemon_ctx *d, struct control *c, natsMsg *m)
{
        const char *subject = natsMsg_GetSubject(m);
        const char *reply_to = natsMsg_GetReply(m);
        contract_span service, sender;
        if (!contract_reply_is_bound(subject, reply_to)) {
                int64_t now = daemon_mono_ms();
                if (now - c->unbound.lines_ms >= CONTROL_SHED_LOG_MS) {
                        c->unbound.lines_ms = now;
                        c->unbound.lines = 0;
                }
                if (c->unbound.lines < CONTROL_REJECT_LINES) {
                        c->unbound.lines++;
                        atomic_fetch_add(&d->counters.control_shed, 1);
                        log_warning("! delivery endpoint: rejected delivery request on %s: reply target \"%.200s\" is "
                                    "not under the sender's own reply subtree",
                                    subject, reply_to && *reply_to ? reply_to : "(none)");
                } else {
                        shed(d, &c->unbound, 1, subject);
                }
                natsMsg_Destroy(m);
                return;
        }
        if (!contract_ctl_subject_parse(subject, &service, &sender)) {
                natsMsg_Destroy(m); /* outside ctl.delivery.<agent>: nobody's request */
                return;
        }
        char agent[256];
        snprintf(agent, sizeof agent, "%.*s", (int)(sender.len < 255 ? sender.len : 255), sender.p);
        int r = natsMsg_GetDataLength(m) > CONTROL_MAX_REQUEST_BYTES ? -E2BIG : ctlqueue_push(c->waiting, agent, m);
        if (r == 0)
                return;
        char *reply = contract_ctl_reply_error(r == -EBUSY  ? CONTROL_BUSY_TEXT
                                               : r == -E2BIG ? CONTROL_TOO_LARGE_TEXT
                                                             : "out of memory");
        if (reply && natsConnection_PublishString(d->nc, reply_to, reply) != NATS_OK)
                log_debug("Failed to answer %.200s", reply_to);
        free(reply);
        shed(d, r == -E2BIG ? &c->too_large : &c->busy, 1, agent);
        natsMsg_Destroy(m);
}

/* Queues what has arrived (up to CONTROL_TAKE_MAX), waiting up to wait_ms
 * for the first. False on a subscription error. */
static bool take_arrivals(daemon_ctx *d, struct control *c, int64_t wait_ms)
{
        for (int i = 0; i < CONTROL_TAKE_MAX; i++) {
                natsMsg *m = NULL;
                natsStatus s = natsSubscription_NextMsg(&m, c->sub, i == 0 ? wait_ms : 0);
                if (s == NATS_TIMEOUT)
                        return true;
                if (s != NATS_OK) {
                        log_warning("ctl.delivery subscription: %s", natsStatus_GetText(s));
                        return false;
                }
                admit(d, c, m);
        }
        return true;
}

static void *control_thread(void *arg)
{
        daemon_ctx *d = arg;
        struct control *c = d->control;
        while (!atomic_load(&d->stopping)) {
                atomic_store(&d->beat_control, daemon_mono_ms());
                /* PROTOCOL §9: no request is taken without a live lease. */
                if (!daemon_may_act(d)) {
                        daemon_backoff(d, DAEMON_PAUSE_MS);
                        continue;
                }
                if (!take_arrivals(d, c, ctlqueue_len(c->waiting) ? 0 : CONTROL_POLL_MS)) {
                        daemon_backoff(d, 500);
                        continue;
                }
                shed_flush(d, c);
                natsMsg *m = ctlqueue_pop(c->waiting);
                if (m) {
                        handle(d, c, m);
                        natsMsg_Destroy(m);
                }
        }
        return NULL;
}

static void destroy_msg(void *m)
{
        natsMsg_Destroy(m);
}

int control_start(daemon_ctx *d)
{
        struct control *c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        d->control = c;
        c->unbound.what = "reply subject not under the sender's own reply subtree";
        c->busy.what = "too many waiting from one agent (answered busy)";
        c->too_large.what = "over 65536 bytes (answered with an error)";
        c->dropped.what = "the subscription's pending limit was reached (no reply: the senders time out)";
        c->waiting = ctlqueue_new(CONTROL_PER_AGENT, destroy_msg);
        int r = c->waiting ? kv_bucket_init(&c->members, d->nc, d->names.members_bucket) : -ENOMEM;
        if (r == 0)
                r = kvstate_init(&c->st, d->nc, &d->names);
        if (r == 0) {
                char name[128], err[600];
                snprintf(name, sizeof name, "dctl_%.100s", d->id);
                if ((r = kv_cache_open(&c->cache, d->kv_nc, &d->names, d->inbox_prefix, name, KV_CACHE_MEMBERS, err,
                                       sizeof err)) < 0)
                        log_error("Failed to watch the members bucket for the control service: %s", err);
        }
        if (r == 0 && (r = jspub_init(&c->pub, d->nc, d->inbox_prefix)) < 0)
                log_error("Failed to set up catch-up publishing: %s", c->pub.last_error);
        if (r == 0) {
                natsStatus s = natsConnection_QueueSubscribeSync(&c->sub, d->nc, d->names.ctl_delivery_sub,
                                                                 CONTRACT_CTL_QUEUE);
                if (s == NATS_OK)
                        s = natsSubscription_SetPendingLimits(c->sub, CONTROL_PENDING_MSGS, CONTROL_PENDING_BYTES);
                if (s != NATS_OK) {
                        log_error("Failed to subscribe %s: %s", d->names.ctl_delivery_sub, natsStatus_GetText(s));
                        r = broker_errno(s);
                }
        }
        if (r == 0)
                r = -pthread_create(&c->thread, NULL, control_thread, d);
        if (r < 0) {
                control_stop(d);
                return r;
        }
        log_info("Serving %s (queue group %s)", d->names.ctl_delivery_sub, CONTRACT_CTL_QUEUE);
        return 0;
}

void control_stop(daemon_ctx *d)
{
        struct control *c = d->control;
        if (!c)
                return;
        if (c->thread)
                daemon_join(d, c->thread);
        broker_sub_close(d->nc, &c->sub);
        ctlqueue_free(c->waiting);
        jspub_fini(&c->pub);
        kv_cache_close(c->cache);
        kvstate_fini(&c->st);
        kv_bucket_fini(&c->members);
        free(c);
        d->control = NULL;
}
