/* control: PROTOCOL §8 durableJoin / durableLeave / listMemberships. */
#include "control.h"

#include "broker.h"
#include "catchup.h"
#include "contract_channel.h"
#include "contract_config.h"
#include "contract_control.h"
#include "contract_js.h"
#include "contract_record.h"
#include "contract_token.h"
#include "ctlqueue.h"
#include "jsack.h"
#include "jspub.h"
#include "kv.h"
#include "kv_cache.h"
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
        const char *what; /* the kind, as the log line says it */
        uint64_t unlogged;
        int64_t logged_ms;
        char last[256];   /* the latest one's subject or agent */
        int lines;        /* own lines given in this interval (unbound only) */
        int64_t lines_ms; /* when the interval began */
} shed_log;

struct control {
        pthread_t thread;
        natsSubscription *sub;
        kv_bucket members;
        /* The ACL and members buckets, watched, fenced per request: a
         * join's ACL check (§8.6 step 1) and listMemberships (§8.3). */
        kv_cache *cache;
        jspub pub;
        ctlqueue *waiting;
        shed_log unbound, busy, too_large, dropped;
        int64_t dropped_seen; /* the subscription's dropped count, as last read */
};

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
static int join_subjects_fit(daemon_ctx *d, struct control *c, const char *owner, const char *channel, const char *key,
                             size_t *longest)
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

/* One durableJoin on its way through §8.6's steps. Each step returns 0 to
 * go on, or < 0 having set error or reply; join() frees everything once. */
typedef struct join_op {
        daemon_ctx *d;
        struct control *c;
        const char *caller;
        char *channel, *key; /* owned */
        char *error, *reply; /* owned: the answer */
        uint64_t join_cursor, gen, fence;
        bool evicted;
} join_op;

static int join_fail(join_op *j, char *error)
{
        j->error = error ? error : strdup("out of memory");
        return -1;
}

/* The watched buckets brought up to date: every record written before
 * this call is in them (§6.4's fence, for the control service). */
static int fence(struct control *c, const char *op, const char *caller)
{
        if (kv_cache_fence(c->cache, KV_CACHE_FENCE_TIMEOUT_MS) == 0)
                return 0;
        log_warning("%s for %.64s: KV cache not current: %s", op, caller, kv_cache_error(c->cache));
        return -1;
}

/* §8.6 step 1: the caller's ACL (§4.3: absent or unreadable = unknown
 * owner) must allow the channel. */
static int join_check_acl(join_op *j)
{
        if (fence(j->c, "durableJoin", j->caller) < 0)
                return join_fail(j, strdup("cannot read the ACL and membership records"));
        const contract_acl *acl;
        const char *why;
        if (kv_cache_acl(j->c->cache, j->caller, &acl, &why) < 0)
                return join_fail(j, contract_err_no_acl(j->caller));
        if (!contract_channel_in_allow((const char *const *)acl->allow, acl->n_allow, j->channel))
                return join_fail(j, contract_err_outside_acl(j->channel, acl));
        return 0;
}

/* Where upstream would only fail at its first write (and lose its
 * connection), refuse before touching anything. */
static int join_check_subjects(join_op *j)
{
        size_t longest = 0;
        j->key = member_key_for(j->channel, j->caller);
        int fit = j->key ? join_subjects_fit(j->d, j->c, j->caller, j->channel, j->key, &longest) : -ENOMEM;
        if (fit > 0)
                return 0;
        char *error = NULL;
        if (fit == 0 && asprintf(&error,
                                 "durableJoin: channel of %zu bytes is too long (a subject derived from it would "
                                 "take %zu bytes, at most %d fit the broker's protocol line)",
                                 strlen(j->channel), longest, CONTROL_MAX_SUBJECT_BYTES) < 0)
                error = NULL;
        return join_fail(j, error);
}

/* §8.6 steps 2-3: an activated open record answers at once (idempotent);
 * an open one not yet activated is retried with its own window; otherwise
 * a new generation is committed, not activated, at the chat frontier. */
static int join_commit(join_op *j)
{
        contract_member e;
        int rr = members_read(&j->c->members, j->key, &e, NULL);
        if (rr < 0 && rr != -ENOENT)
                return join_fail(j, strdup(rr == -ENOMEM ? "out of memory" : j->c->members.last_error));
        bool exists = rr == 0;
        bool open = exists && e.state == MEMBER_STATE_DURABLE_ACTIVE && !e.has_leave_cursor;
        uint64_t stored_gen = exists ? e.generation : 0;
        if (open) {
                j->join_cursor = e.join_cursor;
                j->gen = e.generation;
        }
        bool activated = open && e.activated == MEMBER_ACTIVATED_TRUE;
        if (exists)
                contract_member_fini(&e);
        if (activated) {
                j->reply = reply_ok(json_pack("{s:b, s:I}", "durable", 1, "generation", (json_int_t)j->gen));
                return -1;
        }
        if (open)
                return 0; /* retry of an unfinished activation: same window */
        if (catchup_chat_frontier(j->d, &j->join_cursor) < 0)
                return join_fail(j, strdup("cannot read the chat stream's last sequence"));
        j->gen = stored_gen + 1;
        contract_member next = {
                .channel = j->channel,
                .owner = (char *)j->caller,
                .state = MEMBER_STATE_DURABLE_ACTIVE,
                .join_cursor = j->join_cursor,
                .generation = j->gen,
                .activated = MEMBER_ACTIVATED_FALSE,
                .writer_identity = j->d->id,
                .updated_at = daemon_wall_ms(),
        };
        members_result mr;
        members_status st = members_commit(&j->c->members, j->key, &next, &mr);
        if (st == MEMBERS_OK)
                return 0;
        return join_fail(j, st == MEMBERS_STALE
                                    ? stale_text(j->channel, j->caller, (double)j->gen, mr.stored_generation)
                            : st == MEMBERS_EXHAUSTED ? contract_err_cas_exhausted(j->channel, j->caller)
                                                      : strdup(mr.error));
}

/* §8.6 fence and catch-up. Neither read may fail quietly: a window read
 * too short would activate a member that misses what the fan-out handled
 * just before the commit. The record stays open, so the agent's retry
 * runs the same window. */
static int join_copy_window(join_op *j)
{
        uint64_t frontier = 0, delivered = 0;
        if (catchup_chat_frontier(j->d, &frontier) < 0)
                return join_fail(j, strdup("cannot read the chat stream's last sequence"));
        if (catchup_fanout_delivered(j->d, &delivered) < 0)
                return join_fail(j, strdup("cannot read the fan-out consumer's position"));
        j->fence = frontier > delivered ? frontier : delivered;
        bool at_cap = true;
        j->evicted = j->fence > j->join_cursor && catchup_evicted_since(j->d, j->channel, j->join_cursor, &at_cap);
        char cerr[512] = "";
        if (catchup_copy(j->d, &j->c->pub, j->caller, j->channel, j->join_cursor, j->fence, j->gen, !at_cap, cerr,
                         sizeof cerr) < 0)
                return join_fail(j, strdup(cerr));
        return 0;
}

/* §8.6 last step: activate, or tombstone a partially evicted window. */
static void join_activate(join_op *j)
{
        if (j->evicted) {
                double expected = (double)j->gen;
                members_result mr;
                members_status st =
                        members_tombstone(&j->c->members, j->key, j->fence, j->d->id, &expected, daemon_wall_ms(), &mr);
                if (st != MEMBERS_OK && st != MEMBERS_STALE) { /* a stale write means a newer rejoin won */
                        join_fail(j, st == MEMBERS_EXHAUSTED ? contract_err_cas_exhausted(j->channel, j->caller)
                                                             : strdup(mr.error));
                        return;
                }
                j->reply = reply_ok(json_pack("{s:b, s:s, s:I}", "durable", 0, "reason",
                                              "activation catch-up window partially evicted by retention", "generation",
                                              (json_int_t)j->gen));
                return;
        }
        activation act = members_activate(&j->c->members, j->key, j->gen, j->join_cursor, daemon_wall_ms())
                                 ? ACTIVATED
                                 : activation_after_refusal(j->c, j->key, j->gen, j->join_cursor);
        /* §8.6: activate() false is "superseded", also when it only ran out
         * of CAS rounds on our own pending record (which stays open and
         * routes; a retry activates it). */
        if (act == ACTIVATION_SUPERSEDED || act == ACTIVATION_NOT_WRITTEN)
                j->reply = reply_ok(json_pack("{s:b, s:s, s:I}", "durable", 0, "reason",
                                              "activation superseded by a concurrent leave or rejoin", "generation",
                                              (json_int_t)j->gen));
        else if (act == ACTIVATED)
                j->reply = reply_ok(json_pack("{s:b, s:I}", "durable", 1, "generation", (json_int_t)j->gen));
        else
                join_fail(j, strdup(j->c->members.last_error));
}

/* §8.6 durableJoinFor. Returns the reply JSON (owned). */
static char *join(daemon_ctx *d, struct control *c, const char *caller, const json_t *args)
{
        join_op j = {.d = d, .c = c, .caller = caller};
        if (contract_channel_arg("durableJoin", args, &j.channel, &j.error) == 0 && join_check_acl(&j) == 0 &&
            join_check_subjects(&j) == 0 && join_commit(&j) == 0 && join_copy_window(&j) == 0) {
                join_activate(&j);
                log_info("durableJoin %s by %.64s: generation %" PRIu64 ", joinCursor %" PRIu64 ", fence %" PRIu64 "%s",
                         j.channel, caller, j.gen, j.join_cursor, j.fence,
                         j.evicted ? " (window partially evicted)" : "");
        }
        char *reply = j.reply ? j.reply : contract_ctl_reply_error(j.error ? j.error : "internal error");
        free(j.channel);
        free(j.key);
        free(j.error);
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
        if (catchup_chat_frontier(d, &frontier) < 0) {
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
static char *list(daemon_ctx *d, struct control *c, const char *caller, const json_t *args)
{
        (void)d;
        (void)args; /* §8.3: ignored */
        if (fence(c, "listMemberships", caller) < 0)
                return contract_ctl_reply_error("cannot list: the membership records could not be read");
        json_t *arr = json_array();
        if (!arr || kv_cache_members_of(c->cache, caller, list_one, arr) < 0) {
                json_decref(arr);
                return contract_ctl_reply_error("out of memory");
        }
        char *reply = reply_ok(json_pack("{s:o}", "memberships", arr));
        return reply ? reply : contract_ctl_reply_error("out of memory");
}

/* §8.2 step 4: dispatch on op, exact and case-sensitive. A new op is one
 * row and its function. */
typedef struct control_op {
        const char *name;
        char *(*run)(daemon_ctx *d, struct control *c, const char *caller, const json_t *args);
} control_op;

static const control_op ops[] = {
        {"durableJoin", join},
        {"durableLeave", leave},
        {"listMemberships", list},
};

static const control_op *find_op(const char *name)
{
        for (size_t i = 0; name && i < sizeof ops / sizeof *ops; i++)
                if (strcmp(ops[i].name, name) == 0)
                        return &ops[i];
        return NULL;
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
        ctl_req_status st =
                contract_ctl_request_decode(data ? data : "", (size_t)natsMsg_GetDataLength(m), caller, &req);
        char *reply = NULL;
        switch (st) {
        case CTL_REQ_OK: {
                const control_op *op = find_op(json_string_value(req.op));
                if (op)
                        reply = op->run(d, c, caller, req.args);
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
        case CTL_REQ_NOMEM: break;
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
                snprintf(text, sizeof text, "reply too large: over the broker's max payload of %" PRId64 " bytes", max);
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
        char *reply = contract_ctl_reply_error(r == -EBUSY   ? CONTROL_BUSY_TEXT
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
        if (r == 0) {
                char name[128], err[600];
                snprintf(name, sizeof name, "dctl_%.100s", d->id);
                if ((r = kv_cache_open(&c->cache, d->kv_nc, &d->names, d->inbox_prefix, name,
                                       KV_CACHE_ACL | KV_CACHE_MEMBERS, err, sizeof err)) < 0)
                        log_error("Failed to watch the ACL and members buckets for the control service: %s", err);
        }
        if (r == 0 && (r = jspub_init(&c->pub, d->nc, d->inbox_prefix, NULL)) < 0)
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
        kv_bucket_fini(&c->members);
        free(c);
        d->control = NULL;
}
