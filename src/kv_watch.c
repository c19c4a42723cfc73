/* kv_watch: permission-safe KV watch (PROTOCOL §4.2 "Watches"). It talks
 * the push-consumer protocol itself: flow-control replies, heartbeat
 * checks, consumer-sequence gap detection and re-creation. */
#include "kv_watch.h"

#include "broker.h"
#include "clock.h"
#include "contract_subject.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HDR_STATUS "Status"
#define HDR_CONSUMER_STALLED "Nats-Consumer-Stalled"
#define HDR_LAST_CONSUMER "Nats-Last-Consumer"
#define HDR_KV_OPERATION "KV-Operation"
/* Heartbeats missed before the consumer is presumed gone (nats.c #988). */
#define KV_WATCH_MISSED_HEARTBEATS 3

void kv_watch_entry_fini(kv_watch_entry *e)
{
        if (!e)
                return;
        free(e->key);
        free(e->value);
        memset(e, 0, sizeof *e);
}

static void delete_consumer(kv_watch *w)
{
        char api[512];
        json_t *reply = NULL;
        snprintf(api, sizeof api, "$JS.API.CONSUMER.DELETE.%s.%s", w->stream, w->name);
        if (jsapi_request(w->nc, api, NULL, 2000, &reply, NULL) == 0)
                json_decref(reply);
}

/* (Re)creates the consumer on a fresh deliver subject. */
static int create_consumer(kv_watch *w)
{
        char api[768];
        json_t *reply = NULL;
        jsapi_error jerr;

        broker_sub_close(w->nc, &w->sub);
        delete_consumer(w);

        /* The deliver subject is inside _INBOX_<D>.> (§1.4). */
        char *deliver = broker_unique_subject(w->inbox_prefix, "kvw");
        if (!deliver)
                return -ENOMEM;
        natsStatus s = natsConnection_SubscribeSync(&w->sub, w->nc, deliver);
        if (s != NATS_OK) {
                snprintf(w->last_error, sizeof w->last_error, "subscribe %.200s: %s", deliver, natsStatus_GetText(s));
                free(deliver);
                return broker_errno(s);
        }
        json_t *body =
                json_pack("{s:s, s:{s:s, s:s, s:s, s:s, s:s, s:b, s:I, s:b, s:I, s:s}}", "stream_name", w->stream,
                          "config", "name", w->name, "deliver_subject", deliver, "filter_subject", w->filter,
                          "deliver_policy", "last_per_subject", "ack_policy", "none", "flow_control", 1,
                          "idle_heartbeat", (json_int_t)KV_WATCH_HEARTBEAT_MS * 1000000, "mem_storage", 1,
                          "inactive_threshold", (json_int_t)KV_WATCH_INACTIVE_MS * 1000000, "replay_policy", "instant");
        free(deliver);
        if (!body)
                return -ENOMEM;
        /* The extended create subject: the only consumer-create form the
         * delivery credential holds on bucket streams (§4.2, §11.3). */
        snprintf(api, sizeof api, "$JS.API.CONSUMER.CREATE.%s.%s.%s", w->stream, w->name, w->filter);
        int r = jsapi_request(w->nc, api, body, 0, &reply, &jerr);
        json_decref(body);
        if (r < 0) {
                snprintf(w->last_error, sizeof w->last_error, "create watch consumer %s on %s: %s", w->name, w->stream,
                         jerr.description);
                return r;
        }
        uint64_t pending = 0;
        (void)json_path_u64(reply, "num_pending", &pending);
        json_decref(reply);
        w->next_cseq = 1;
        w->initial_done = pending == 0;
        w->replay_announced = false;
        w->last_seen_ms = clock_mono_ms();
        return 0;
}

int kv_watch_start(kv_watch *w, natsConnection *nc, const char *bucket, const char *key, const char *name,
                   const char *inbox_prefix)
{
        memset(w, 0, sizeof *w);
        w->nc = nc;
        w->bucket = strdup(bucket);
        w->stream = contract_bucket_stream(bucket);
        w->filter = contract_kv_subject(bucket, key);
        w->name = strdup(name);
        w->inbox_prefix = strdup(inbox_prefix ? inbox_prefix : "_INBOX");
        if (!w->bucket || !w->stream || !w->filter || !w->name || !w->inbox_prefix) {
                kv_watch_stop(w);
                return -ENOMEM;
        }
        return create_consumer(w);
}

void kv_watch_stop(kv_watch *w)
{
        if (!w)
                return;
        broker_sub_close(w->nc, &w->sub);
        if (w->nc && w->stream && w->name)
                delete_consumer(w);
        free(w->bucket);
        free(w->stream);
        free(w->filter);
        free(w->name);
        free(w->inbox_prefix);
        memset(w, 0, sizeof *w);
}

static void answer(kv_watch *w, const char *subject)
{
        if (subject && *subject)
                (void)natsConnection_Publish(w->nc, subject, NULL, 0);
}

/* Returns 1 if the message is a status message (handled), 0 if data,
 * -ESTALE if it reveals a gap. */
static int handle_status(kv_watch *w, natsMsg *m)
{
        const char *status = NULL;
        if (natsMsgHeader_Get(m, HDR_STATUS, &status) != NATS_OK || !status)
                return 0;
        w->last_seen_ms = clock_mono_ms();
        if (strcmp(status, "100") != 0)
                return 1;
        /* Flow-control request: answer on its reply subject. */
        answer(w, natsMsg_GetReply(m));
        /* Heartbeat: answer a stalled flow control, check for a gap. */
        const char *v = NULL;
        if (natsMsgHeader_Get(m, HDR_CONSUMER_STALLED, &v) == NATS_OK)
                answer(w, v);
        if (natsMsgHeader_Get(m, HDR_LAST_CONSUMER, &v) == NATS_OK && v) {
                uint64_t last = strtoull(v, NULL, 10);
                if (last + 1 != w->next_cseq && last >= w->next_cseq)
                        return -ESTALE;
        }
        return 1;
}

static int restart(kv_watch *w)
{
        w->restarts++;
        return create_consumer(w);
}

int kv_watch_restart(kv_watch *w)
{
        return restart(w);
}

static int fill_entry(kv_watch *w, natsMsg *m, jsMsgMetaData *md, kv_watch_entry *e)
{
        const char *subject = natsMsg_GetSubject(m);
        size_t plen = strlen(w->filter);
        /* filter is "$KV.<bucket>.<key or >>": strip "$KV.<bucket>." */
        const char *dot = strchr(w->filter + 4, '.');
        plen = dot ? (size_t)(dot - w->filter) + 1 : plen;
        memset(e, 0, sizeof *e);
        e->key = strdup(strlen(subject) > plen ? subject + plen : subject);
        if (!e->key)
                return -ENOMEM;
        const char *op = NULL;
        if (natsMsgHeader_Get(m, HDR_KV_OPERATION, &op) == NATS_OK && op)
                e->op = strcmp(op, "PURGE") == 0 ? KV_OP_PURGE : strcmp(op, "DEL") == 0 ? KV_OP_DEL : KV_OP_PUT;
        e->revision = md->Sequence.Stream;
        e->time_ms = md->Timestamp / 1000000;
        e->initial = !w->initial_done;
        int len = natsMsg_GetDataLength(m);
        if (len > 0) {
                e->value = malloc((size_t)len + 1);
                if (!e->value) {
                        kv_watch_entry_fini(e);
                        return -ENOMEM;
                }
                memcpy(e->value, natsMsg_GetData(m), (size_t)len);
                e->value[len] = '\0';
                e->len = (size_t)len;
        }
        return 0;
}

int kv_watch_next(kv_watch *w, int64_t timeout_ms, kv_watch_entry *e)
{
        int64_t deadline = clock_mono_ms() + timeout_ms;

        for (;;) {
                int r = 0;
                if (!w->sub && (r = restart(w)) < 0)
                        return r;
                if (w->initial_done && !w->replay_announced) {
                        w->replay_announced = true;
                        return -EAGAIN;
                }
                int64_t left = deadline - clock_mono_ms();
                int64_t wait = left <= 0 ? 0 : left < KV_WATCH_HEARTBEAT_MS ? left : KV_WATCH_HEARTBEAT_MS;

                natsMsg *m = NULL;
                natsStatus s = natsSubscription_NextMsg(&m, w->sub, wait);
                if (s == NATS_TIMEOUT) {
                        /* Silence is judged only once nothing is buffered:
                         * an owner that was busy elsewhere for a while
                         * first reads the heartbeats that did arrive. */
                        if (clock_mono_ms() - w->last_seen_ms >
                                    (int64_t)KV_WATCH_HEARTBEAT_MS * KV_WATCH_MISSED_HEARTBEATS &&
                            (r = restart(w)) < 0)
                                return r; /* the consumer is presumed gone */
                        if (clock_mono_ms() >= deadline)
                                return -ETIMEDOUT;
                        continue;
                }
                if (s != NATS_OK) {
                        /* Subscription broken (connection closed): start
                         * over on the next call. */
                        snprintf(w->last_error, sizeof w->last_error, "watch %s: %s", w->name, natsStatus_GetText(s));
                        natsSubscription_Destroy(w->sub);
                        w->sub = NULL;
                        return broker_errno(s);
                }
                int st = handle_status(w, m);
                if (st != 0) {
                        natsMsg_Destroy(m);
                        if (st == -ESTALE && (r = restart(w)) < 0)
                                return r;
                        continue;
                }
                jsMsgMetaData *md = NULL;
                if (natsMsg_GetMetaData(&md, m) != NATS_OK) {
                        natsMsg_Destroy(m); /* not a consumer delivery */
                        continue;
                }
                w->last_seen_ms = clock_mono_ms();
                if (md->Sequence.Consumer != w->next_cseq) {
                        jsMsgMetaData_Destroy(md);
                        natsMsg_Destroy(m);
                        if ((r = restart(w)) < 0)
                                return r;
                        continue;
                }
                w->next_cseq++;
                r = fill_entry(w, m, md, e);
                if (!w->initial_done && md->NumPending == 0) {
                        /* The replay ends with this entry; announce it on
                         * the next call. */
                        w->initial_done = true;
                }
                jsMsgMetaData_Destroy(md);
                natsMsg_Destroy(m);
                return r;
        }
}
