/* pull: JetStream pull-consumer protocol over core NATS (see pull.h). */
#include "pull.h"

#include "broker.h"
#include "clock.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HDR_STATUS "Status"
#define HDR_DESCRIPTION "Description"
/* A request whose expiry passed this long ago without a 408 was lost
 * (server restart, reconnect): issue a new one. */
#define PULL_LOST_GRACE_MS 1000
#define PULL_FLUSH_TIMEOUT_MS 1000 /* a pull request is flushed at once */

int pull_start(pull_sub *p, natsConnection *nc, const char *inbox_prefix, const char *stream,
               const char *consumer)
{
        memset(p, 0, sizeof *p);
        p->nc = nc;
        p->inbox = broker_unique_subject(inbox_prefix, "pull");
        int r2 = asprintf(&p->next_subject, "$JS.API.CONSUMER.MSG.NEXT.%s.%s", stream, consumer);
        p->stream = strdup(stream);
        p->consumer = strdup(consumer);
        if (!p->inbox || r2 < 0 || !p->stream || !p->consumer) {
                if (r2 < 0)
                        p->next_subject = NULL;
                pull_stop(p);
                return -ENOMEM;
        }
        natsStatus s = natsConnection_SubscribeSync(&p->sub, nc, p->inbox);
        if (s != NATS_OK) {
                snprintf(p->last_error, sizeof p->last_error, "subscribe %s: %s", p->inbox, natsStatus_GetText(s));
                pull_stop(p);
                return broker_errno(s);
        }
        return 0;
}

void pull_stop(pull_sub *p)
{
        if (!p)
                return;
        broker_sub_close(p->nc, &p->sub);
        free(p->stream);
        free(p->consumer);
        free(p->next_subject);
        free(p->inbox);
        memset(p, 0, sizeof *p);
}

static int send_request(pull_sub *p, int batch, int64_t expires_ms)
{
        char body[96];
        int n = snprintf(body, sizeof body, "{\"batch\":%d,\"expires\":%lld}", batch,
                         (long long)expires_ms * 1000000LL);
        natsStatus s = natsConnection_PublishRequest(p->nc, p->next_subject, p->inbox, body, n);
        if (s != NATS_OK) {
                snprintf(p->last_error, sizeof p->last_error, "pull request on %s: %s", p->next_subject,
                         natsStatus_GetText(s));
                return broker_errno(s);
        }
        /* cnats writes a plain publish up to ~1 ms late (its flusher
         * thread naps first, research/cnats.md pitfall 1); every hop of a
         * delivery pays that twice. One PING round trip is cheaper. */
        (void)natsConnection_FlushTimeout(p->nc, PULL_FLUSH_TIMEOUT_MS);
        p->open = true;
        p->requested = batch;
        p->received = 0;
        p->deadline_ms = clock_mono_ms() + expires_ms + PULL_LOST_GRACE_MS;
        return 0;
}

typedef enum {
        PULL_DELIVERY,
        PULL_HEARTBEAT,
        PULL_DONE,  /* 404 no messages, 408 request expired */
        PULL_ERROR, /* other 409s: the request is over; back off */
        PULL_GONE,  /* consumer or stream missing */
} pull_reply;

static pull_reply classify(pull_sub *p, natsMsg *m)
{
        const char *status = NULL, *desc = NULL;
        if (natsMsgHeader_Get(m, HDR_STATUS, &status) != NATS_OK || !status)
                return PULL_DELIVERY;
        (void)natsMsgHeader_Get(m, HDR_DESCRIPTION, &desc);
        if (strcmp(status, "100") == 0)
                return PULL_HEARTBEAT;
        if (strcmp(status, "404") == 0 || strcmp(status, "408") == 0)
                return PULL_DONE;
        if (strcmp(status, "503") == 0) {
                snprintf(p->last_error, sizeof p->last_error, "no responders for %s", p->next_subject);
                return PULL_GONE;
        }
        if (strcmp(status, "409") == 0 && desc && strstr(desc, "Consumer Deleted")) {
                snprintf(p->last_error, sizeof p->last_error, "consumer %s/%s deleted", p->stream, p->consumer);
                return PULL_GONE;
        }
        snprintf(p->last_error, sizeof p->last_error, "pull %s/%s: status %s %s", p->stream, p->consumer, status,
                 desc ? desc : "");
        return PULL_ERROR;
}

/* A request went unanswered past its expiry. On nats-server 2.9 a pull
 * request for a consumer that no longer exists gets no reply at all (no
 * 503: JetStream's API import swallows it), so ask: -ENOENT when the
 * consumer or its stream is gone, 0 otherwise. */
static int check_exists(pull_sub *p)
{
        json_t *reply = NULL;
        jsapi_error jerr;
        int r = jsapi_consumer_info(p->nc, p->stream, p->consumer, 0, &reply, &jerr);
        json_decref(reply);
        if (r == -EREMOTEIO && (jerr.err_code == JS_ERR_CONSUMER_NOT_FOUND || jerr.err_code == JS_ERR_STREAM_NOT_FOUND)) {
                snprintf(p->last_error, sizeof p->last_error, "consumer %s/%s not found", p->stream, p->consumer);
                return -ENOENT;
        }
        return 0; /* exists, or unknown (e.g. disconnected): just ask again */
}

int pull_fetch(pull_sub *p, natsMsg **msgs, int max, int64_t expires_ms, int64_t wait_ms)
{
        int count = 0;
        if (max <= 0 || max > PULL_MAX_BATCH)
                return -EINVAL;
        int64_t deadline = clock_mono_ms() + wait_ms;

        while (count < max) {
                int64_t now = clock_mono_ms();
                if (p->open && now > p->deadline_ms) {
                        p->open = false; /* lost: never answered */
                        if (count == 0 && check_exists(p) < 0)
                                return -ENOENT;
                }
                if (!p->open && count == 0) {
                        int r = send_request(p, max, expires_ms);
                        if (r < 0)
                                return r;
                }
                /* Wait for the first delivery; after it, only drain. */
                int64_t wait = count == 0 ? deadline - now : 0;
                if (count == 0 && wait <= 0)
                        break;
                if (count == 0 && p->open && p->deadline_ms - now < wait)
                        wait = p->deadline_ms - now > 0 ? p->deadline_ms - now : 1;
                natsMsg *m = NULL;
                natsStatus s = natsSubscription_NextMsg(&m, p->sub, wait);
                if (s == NATS_TIMEOUT)
                        break;
                if (s == NATS_NO_RESPONDERS) {
                        /* cnats 3.4.1 answers an empty 503 this way and
                         * drops it (classify never sees it): the request is
                         * over. Keep what was delivered: destroying it
                         * would leave it to ack_wait (60 s). */
                        snprintf(p->last_error, sizeof p->last_error, "no responders for %s", p->next_subject);
                        p->open = false;
                        return count > 0 ? count : -EAGAIN;
                }
                if (s != NATS_OK) {
                        snprintf(p->last_error, sizeof p->last_error, "pull %s/%s: %s", p->stream, p->consumer,
                                 natsStatus_GetText(s));
                        for (int i = 0; i < count; i++)
                                natsMsg_Destroy(msgs[i]);
                        return broker_errno(s);
                }
                pull_reply c = classify(p, m);
                if (c == PULL_DELIVERY) {
                        msgs[count++] = m;
                        if (p->open && ++p->received >= p->requested)
                                p->open = false;
                        continue;
                }
                natsMsg_Destroy(m);
                if (c == PULL_HEARTBEAT)
                        continue;
                p->open = false;
                if (c == PULL_GONE)
                        return count > 0 ? count : -ENOENT; /* hand over what we have first */
                if (c == PULL_ERROR)
                        return count > 0 ? count : -EAGAIN;
        }
        return count;
}

int pull_ack(pull_sub *p, natsMsg *m, const char *payload)
{
        const char *reply = natsMsg_GetReply(m);
        if (!reply || !*reply)
                return -EINVAL;
        natsStatus s = natsConnection_Publish(p->nc, reply, payload, (int)strlen(payload));
        return broker_errno(s);
}
