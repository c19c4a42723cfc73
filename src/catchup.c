/* catchup: the broker side of a durableJoin's §8.6 window, on the control
 * thread's connection: the fence's two reads, the eviction probe
 * (chathist_<D>) and the copy of channel history into the joiner's inbox
 * through a named ephemeral consumer (cu_...), under the same per-owner
 * lead limit as the fan-out (E1). */
#include "catchup.h"

#include "broker.h"
#include "contract_channel.h"
#include "contract_config.h"
#include "contract_record.h"
#include "jsack.h"
#include "ledger.h"
#include "ledger_sync.h"
#include "log.h"
#include "pull.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long a catch-up whose consumer reports nothing pending waits for one
 * more delivery before it calls the window done, when that count may run
 * short (see catchup_copy). */
#define CATCHUP_TAIL_WAIT_MS 500
#define CATCHUP_PUBACK_TIMEOUT_MS 10000
/* E1 waits: how often the reader's position is read while waiting for
 * room, and how long a join waits without the owner's count shrinking. */
#define CATCHUP_ROOM_POLL_MS 100
#define CATCHUP_STALL_MS 20000

/* CHAT_<S> state.last_seq (the "frontier" of §8.6). */
int catchup_chat_frontier(daemon_ctx *d, uint64_t *seq)
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
int catchup_fanout_delivered(daemon_ctx *d, uint64_t *seq)
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
                                 "config", "name", name, "filter_subject", filter, "ack_policy", "none", "mem_storage",
                                 1, "inactive_threshold", (json_int_t)CONTRACT_CATCHUP_INACTIVE_NS, "deliver_policy",
                                 "by_start_sequence", "opt_start_seq", (json_int_t)start_seq);
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

bool catchup_evicted_since(daemon_ctx *d, const char *channel, uint64_t join_cursor, bool *at_cap)
{
        *at_cap = true; /* until the probe says otherwise */
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
        json_object_foreach (json_object_get(json_object_get(reply, "state"), "subjects"), k, v)
                if (json_integer_value(v) > max_per_sender)
                        max_per_sender = json_integer_value(v);
        json_decref(reply);
        *at_cap = max_per_sender >= CONTRACT_MAX_MSGS_PER_SUBJECT;
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
static void settle_copies(daemon_ctx *d, jspub *pub, const char *subject, const char *key, size_t *copied,
                          size_t *unconfirmed)
{
        (void)jspub_wait(pub, CATCHUP_PUBACK_TIMEOUT_MS);
        /* Refused by the broker's permissions: not stored. */
        bool denied = denials_publish_denied_since(&d->denied, subject, pub->round_ms);
        for (size_t k = 0; k < pub->n; k++) {
                const jspub_result *res = jspub_result_at(pub, k);
                if (denied && res->state == JSPUB_TIMEOUT)
                        ledger_release(d->ledger, key);
                else
                        ledger_sync_publish(d->ledger, key, res);
                if (res->state == JSPUB_OK)
                        (*copied)++;
                else
                        *unconfirmed += res->state != JSPUB_TOO_LARGE;
        }
        jspub_reset(pub);
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

int catchup_copy(daemon_ctx *d, jspub *pub, const char *owner, const char *channel, uint64_t from, uint64_t to,
                 uint64_t gen, bool trust_pending, char *err, size_t err_size)
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
        pub->max_bytes = (size_t)atomic_load(&d->inflight_bytes);
        jspub_reset(pub);
        size_t copied = 0, unconfirmed = 0;
        bool done = false;
        /* §8.6 stops at the first batch shorter than num_pending said. On
         * nats-server 2.9 a filtered num_pending can run short of what the
         * consumer then delivers (CHAT evicts per subject), and stopping on
         * it left the window's last entries uncopied while the join said
         * durable:true (the soak, seed 1). So the window ends at a message
         * past the fence, or when the consumer has nothing more: pending
         * (num_pending, then each delivery's own count) only says how long
         * to wait for the next one. That shortfall came with per-subject
         * eviction (a sender's subject of the channel at its cap); on a
         * channel where none is (trust_pending), a count of 0 is believed at
         * once, so a join over a window with nothing of its channel does not
         * wait CATCHUP_TAIL_WAIT_MS for a message that cannot come
         * (scripts/abuse: one join in 40 took 0.5 s for it). */
        while (r == 0 && !done) {
                atomic_store(&d->beat_control, daemon_mono_ms());
                int want = CONTRACT_CATCHUP_BATCH;
                int64_t wait = pending > 0 ? CONTRACT_CATCHUP_EXPIRES_MS : trust_pending ? 0 : CATCHUP_TAIL_WAIT_MS;
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
                                                settle_copies(d, pub, dinbox, key, &copied, &unconfirmed);
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
                                                int enc = id ? contract_entry_encode(natsMsg_GetData(m),
                                                                                     (size_t)natsMsg_GetDataLength(m),
                                                                                     channel, meta.stream_seq,
                                                                                     REASON_DURABLE_CHANNEL, gen, &body,
                                                                                     &len)
                                                             : -ENOMEM;
                                                long idx = enc < 0 ? enc : jspub_publish(pub, dinbox, id, body, len);
                                                if (idx < 0)
                                                        ledger_release(d->ledger, key);
                                                if (idx < 0) {
                                                        /* Not even sent: the join fails and is retried. */
                                                        snprintf(err, err_size, "cannot copy %s seq %" PRIu64 ": %s",
                                                                 d->names.chat_stream, meta.stream_seq,
                                                                 strerror((int)-idx));
                                                        r = (int)idx;
                                                        done = true;
                                                } else if (jspub_result_at(pub, (size_t)idx)->state ==
                                                           JSPUB_TOO_LARGE) {
                                                        /* Poison, as in the fan-out: the entry can never
                                                         * be written, so it must not block the join. */
                                                        atomic_fetch_add(&d->counters.entries_too_large, 1);
                                                        log_warning("Dropped catch-up entry of %s seq %" PRIu64
                                                                    " for %.64s: %s",
                                                                    d->names.chat_stream, meta.stream_seq, owner,
                                                                    pub->last_error);
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
                settle_copies(d, pub, dinbox, key, &copied, &unconfirmed);
        if (r == 0 && unconfirmed > 0) {
                snprintf(err, err_size, "catch-up copies not confirmed (%zu): %s", unconfirmed, pub->last_error);
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
