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
/* A request whose expiry passed this long ago without a status reply was
 * lost: a server restart or reconnect forgot it, or nats-server 2.9 dropped
 * it silently as an expired head (consumer.go nextWaiting sends no 408 when
 * the reply subject is the requester's own). */
#define PULL_LOST_GRACE_MS 1000
/* Every request asks for an idle heartbeat (a "100" status to its own
 * reply subject whenever the server delivered nothing to it for this
 * long; nats-server 2.9.10 and 2.10 both send them). A live request is
 * thus never silent: when nothing at all (delivery, status, heartbeat)
 * has come for PULL_SILENCE_MS while requests are open, the server holds
 * none of them, whatever our count says. Deliveries name no request, so
 * a count can drift: a request the server finished still looks open with
 * credit left, absorbs the first delivery of the next one, and the drift
 * moves on from request to request, each sent only at its predecessor's
 * half expiry (seen in the soak against 2.10.27: a fan-out fetching 7
 * messages per 2.5 s for minutes). Silence clears the count at once. Naks
 * with a delay (an unknown owner's entries, §7) make that drift frequent
 * on the reader: with 500 ms heartbeats every such drift stalled it 1.5 s
 * (scripts/abuse noacl: the victim's post p99 1,220 ms); at 100 ms the
 * stall is 0.3 s (p99 96 ms), for about ten heartbeats a second per idle
 * request. */
#define PULL_HEARTBEAT_MS 100
#define PULL_SILENCE_MS (3 * PULL_HEARTBEAT_MS)
#define PULL_FLUSH_TIMEOUT_MS 1000 /* a pull request is flushed at once */
#define PULL_CANCEL_INFO_MS 1000

int pull_start(pull_sub *p, natsConnection *nc, const char *inbox_prefix, const char *stream, const char *consumer)
{
        memset(p, 0, sizeof *p);
        p->nc = nc;
        p->inbox = broker_unique_subject(inbox_prefix, "pull");
        char *all = NULL;
        int r1 = p->inbox ? asprintf(&p->wake, "%s.wake", p->inbox) : -1;
        int r2 = asprintf(&p->next_subject, "$JS.API.CONSUMER.MSG.NEXT.%s.%s", stream, consumer);
        int r3 = p->inbox ? asprintf(&all, "%s.*", p->inbox) : -1;
        p->stream = strdup(stream);
        p->consumer = strdup(consumer);
        if (r1 < 0)
                p->wake = NULL;
        if (r2 < 0)
                p->next_subject = NULL;
        if (r3 < 0)
                all = NULL;
        if (!p->inbox || !p->wake || !p->next_subject || !all || !p->stream || !p->consumer) {
                free(all);
                pull_stop(p);
                return -ENOMEM;
        }
        natsStatus s = natsConnection_SubscribeSync(&p->sub, nc, all);
        free(all);
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
        free(p->wake);
        memset(p, 0, sizeof *p);
}

void pull_follow_link(pull_sub *p, const atomic_uint *gen)
{
        p->link_gen = gen;
        p->seen_gen = gen ? atomic_load(gen) : 0;
}

const char *pull_wake_subject(const pull_sub *p)
{
        return p->wake;
}

static int credit(const pull_sub *p)
{
        int c = 0;
        for (int i = 0; i < p->n_open; i++)
                c += p->open[i].requested - p->open[i].received;
        return c;
}

static void close_request(pull_sub *p, int i)
{
        memmove(&p->open[i], &p->open[i + 1], (size_t)(p->n_open - i - 1) * sizeof p->open[0]);
        p->n_open--;
}

/* What one request may bring: the owner's max_bytes (PULL_MAX_BYTES if
 * unset), but never less than twice the broker's max payload
 * (nats-server ends a request whose next message does not fit, so a
 * smaller bound could never deliver that message). */
static size_t pull_max_bytes(const pull_sub *p)
{
        int64_t payload = natsConnection_GetMaxPayload(p->nc);
        size_t floor = payload > 0 ? 2 * (size_t)payload : 0;
        size_t want = p->max_bytes ? p->max_bytes : PULL_MAX_BYTES;
        return floor > want ? floor : want;
}

static int send_request(pull_sub *p, int batch, int64_t expires_ms)
{
        char body[128], reply[320];
        unsigned id = ++p->next_id;
        /* The server wants the heartbeat well inside the expiry. */
        bool hb = expires_ms >= 4 * PULL_HEARTBEAT_MS;
        long long max_bytes = (long long)pull_max_bytes(p);
        int n = hb ? snprintf(body, sizeof body,
                              "{\"batch\":%d,\"max_bytes\":%lld,\"expires\":%lld,\"idle_heartbeat\":%lld}", batch,
                              max_bytes, (long long)expires_ms * 1000000LL, (long long)PULL_HEARTBEAT_MS * 1000000LL)
                   : snprintf(body, sizeof body, "{\"batch\":%d,\"max_bytes\":%lld,\"expires\":%lld}", batch, max_bytes,
                              (long long)expires_ms * 1000000LL);
        snprintf(reply, sizeof reply, "%s.%u", p->inbox, id);
        natsStatus s = natsConnection_PublishRequest(p->nc, p->next_subject, reply, body, n);
        if (s != NATS_OK) {
                snprintf(p->last_error, sizeof p->last_error, "pull request on %s: %s", p->next_subject,
                         natsStatus_GetText(s));
                return broker_errno(s);
        }
        /* cnats writes a plain publish up to ~1 ms late (its flusher
         * thread naps first, research/cnats.md pitfall 1); every hop of a
         * delivery pays that twice. One PING round trip is cheaper. */
        (void)natsConnection_FlushTimeout(p->nc, PULL_FLUSH_TIMEOUT_MS);
        int64_t now = clock_mono_ms();
        p->open[p->n_open++] = (pull_request){
                .id = id,
                .requested = batch,
                .expires_ms = now + expires_ms,
                .heartbeat = hb,
        };
        p->heard_ms = now; /* a new request: give it its first heartbeat's time */
        return 0;
}

/* Keeps a request waiting at the server at all times: one when none is
 * open, and a second before the newest has used half its expiry, so that
 * when it expires (or loses its reply interest) the server finds the next
 * one behind it instead of dropping a redelivery (pitfall 12). The second
 * asks for what the open ones do not already cover, at least 1: the open
 * requests ask for about max in all, so no more than that is buffered
 * beyond what the caller takes. */
static int top_up(pull_sub *p, int max, int64_t expires_ms, int64_t now)
{
        if (p->n_open == 0)
                return send_request(p, max, expires_ms);
        const pull_request *newest = &p->open[p->n_open - 1];
        if (p->n_open < PULL_MAX_REQUESTS && newest->expires_ms - now <= expires_ms / 2) {
                int batch = max - credit(p);
                return send_request(p, batch > 0 ? batch : 1, expires_ms);
        }
        return 0;
}

/* Milliseconds (>= 1) until top_up or the lost check has work to do. */
static int64_t next_event_ms(const pull_sub *p, int64_t expires_ms, int64_t now)
{
        int64_t at = INT64_MAX;
        if (p->n_open > 0)
                at = p->open[0].expires_ms + PULL_LOST_GRACE_MS;
        if (p->n_open > 0 && p->heard_ms + PULL_SILENCE_MS + 1 < at)
                at = p->heard_ms + PULL_SILENCE_MS + 1;
        if (p->n_open > 0 && p->n_open < PULL_MAX_REQUESTS) {
                int64_t overlap = p->open[p->n_open - 1].expires_ms - expires_ms / 2;
                if (overlap < at)
                        at = overlap;
        }
        return at - now > 1 ? at - now : 1;
}

/* The link reconnected since we last looked: the server forgot our
 * requests' reply interest, so it drops them (or, 2.9, lets a redelivery
 * fall through them): start afresh. Their late status replies name ids we
 * no longer hold and are ignored; their deliveries are still returned. */
static void follow_link(pull_sub *p)
{
        if (!p->link_gen)
                return;
        unsigned gen = atomic_load(p->link_gen);
        if (gen != p->seen_gen) {
                p->seen_gen = gen;
                p->n_open = 0;
        }
}

/* After a wait that found the inbox empty: if every open request asked
 * for heartbeats and none has said anything for PULL_SILENCE_MS, the
 * server holds none of them (what was queued was read before the wait
 * timed out, so a busy caller is not mistaken for a silent server).
 * True if they were given up. */
static bool drop_silent(pull_sub *p, int64_t now)
{
        /* Once per silence: a frozen server would otherwise collect a new
         * request every 1.5 s, to be served all at once when it wakes. */
        if (p->n_open == 0 || p->silent || now - p->heard_ms <= PULL_SILENCE_MS)
                return false;
        for (int i = 0; i < p->n_open; i++)
                if (!p->open[i].heartbeat)
                        return false;
        p->n_open = 0;
        p->silences++;
        p->silent = true;
        return true;
}

/* Drops requests past their expiry plus the grace; true if one was. */
static bool drop_lost(pull_sub *p, int64_t now)
{
        bool lost = false;
        while (p->n_open > 0 && now > p->open[0].expires_ms + PULL_LOST_GRACE_MS) {
                close_request(p, 0);
                lost = true;
        }
        return lost;
}

typedef enum {
        PULL_DELIVERY,
        PULL_HEARTBEAT,
        PULL_WAKE,
        PULL_DONE,  /* 404 no messages, 408 request expired */
        PULL_ERROR, /* other 409s: the request is over; back off */
        PULL_GONE,  /* consumer or stream missing */
} pull_reply;

static pull_reply classify(pull_sub *p, natsMsg *m)
{
        const char *status = NULL, *desc = NULL;
        if (strcmp(natsMsg_GetSubject(m), p->wake) == 0)
                return PULL_WAKE;
        if (natsMsgHeader_Get(m, HDR_STATUS, &status) != NATS_OK || !status)
                return PULL_DELIVERY;
        (void)natsMsgHeader_Get(m, HDR_DESCRIPTION, &desc);
        if (strcmp(status, "100") == 0)
                return PULL_HEARTBEAT;
        if (strcmp(status, "404") == 0 || strcmp(status, "408") == 0)
                return PULL_DONE;
        /* The request ended normally: its max_bytes used up (2.9, 2.10),
         * or its batch filled with bytes to spare (2.10 says so). */
        if (strcmp(status, "409") == 0 && desc && (strstr(desc, "Exceeds MaxBytes") || strstr(desc, "Batch Completed")))
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

/* The open request a status reply names (its subject is <inbox>.<id>),
 * or -1: an id we no longer hold (a request given up as lost), or not a
 * reply to a request at all. */
static int named_request(const pull_sub *p, natsMsg *m)
{
        const char *subject = natsMsg_GetSubject(m);
        size_t n = strlen(p->inbox);
        char *end = NULL;
        if (strncmp(subject, p->inbox, n) != 0 || subject[n] != '.')
                return -1;
        unsigned long id = strtoul(subject + n + 1, &end, 10);
        if (end == subject + n + 1 || *end)
                return -1;
        for (int i = 0; i < p->n_open; i++)
                if (p->open[i].id == id)
                        return i;
        return -1;
}

/* Ends the request a status reply names; any other changes nothing. */
static void end_request(pull_sub *p, natsMsg *m)
{
        int i = named_request(p, m);
        if (i >= 0)
                close_request(p, i);
}

/* A delivery counts against the oldest open request: the server fills its
 * waiting requests in arrival order. If it skipped one (expired, or no
 * interest), the count runs ahead of the server's; the skipped request
 * then looks full early, or ends as lost, and a new one is sent: never a
 * delivery lost or counted twice, at worst a request more. */
static void count_delivery(pull_sub *p)
{
        if (p->n_open > 0 && ++p->open[0].received >= p->open[0].requested)
                close_request(p, 0);
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
        if (r == -EREMOTEIO &&
            (jerr.err_code == JS_ERR_CONSUMER_NOT_FOUND || jerr.err_code == JS_ERR_STREAM_NOT_FOUND)) {
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
        if (!p->sub)
                return -ENOTCONN; /* cancelled */
        if (p->gone) {
                p->gone = false;
                return -ENOENT; /* seen while a batch was handed over */
        }
        int64_t deadline = clock_mono_ms() + wait_ms;

        /* Bounded: every turn takes a message, or waits (>= 1 ms) within
         * the deadline, or ends the call. */
        while (count < max) {
                int64_t now = clock_mono_ms();
                follow_link(p);
                if (drop_lost(p, now) && count == 0 && check_exists(p) < 0)
                        return -ENOENT;
                if (count == 0) {
                        int r = top_up(p, max, expires_ms, now);
                        if (r < 0)
                                return r;
                }
                /* Wait for the first delivery; after it, only drain. */
                int64_t wait = 0;
                if (count == 0) {
                        wait = deadline - now;
                        if (wait <= 0)
                                break;
                        int64_t event = next_event_ms(p, expires_ms, now);
                        if (event < wait)
                                wait = event;
                }
                natsMsg *m = NULL;
                natsStatus s = natsSubscription_NextMsg(&m, p->sub, wait);
                if (s == NATS_TIMEOUT) {
                        if (count > 0)
                                break;
                        /* Silence is also what a deleted consumer sounds
                         * like on 2.9 (no 503): ask, as for a lost request. */
                        if (drop_silent(p, clock_mono_ms()) && check_exists(p) < 0)
                                return -ENOENT;
                        continue;
                }
                if (s == NATS_NO_RESPONDERS) {
                        /* cnats 3.4.1 answers an empty 503 this way and
                         * drops it (classify never sees it, nor which
                         * request it ended): treat every request as over.
                         * Keep what was delivered: destroying it would
                         * leave it to ack_wait (60 s). nats-server 2.10
                         * answers a request for a consumer that no longer
                         * exists with it (2.9 stays silent), so ask. */
                        snprintf(p->last_error, sizeof p->last_error, "no responders for %s", p->next_subject);
                        p->n_open = 0;
                        if (count > 0)
                                return count;
                        return check_exists(p) < 0 ? -ENOENT : -EAGAIN;
                }
                if (s != NATS_OK) {
                        snprintf(p->last_error, sizeof p->last_error, "pull %s/%s: %s", p->stream, p->consumer,
                                 natsStatus_GetText(s));
                        if (count > 0)
                                return count; /* the error comes back next call */
                        return broker_errno(s);
                }
                pull_reply c = classify(p, m);
                /* Heard from: a delivery (some request of ours is live),
                 * or a status naming a request we hold open. */
                if (c == PULL_DELIVERY || (c != PULL_WAKE && named_request(p, m) >= 0)) {
                        p->heard_ms = clock_mono_ms();
                        p->silent = false;
                }
                if (c == PULL_DELIVERY) {
                        msgs[count++] = m;
                        count_delivery(p);
                        continue;
                }
                if (c != PULL_HEARTBEAT && c != PULL_WAKE)
                        end_request(p, m);
                natsMsg_Destroy(m);
                if (c == PULL_GONE) {
                        /* Hand over what we have first; the next call
                         * reports the loss (a new request would only get
                         * a 503, or on 2.9 no answer at all). */
                        p->n_open = 0;
                        p->gone = count > 0;
                        return count > 0 ? count : -ENOENT;
                }
                if (c == PULL_ERROR)
                        return count > 0 ? count : -EAGAIN;
        }
        return count;
}

int pull_cancel(pull_sub *p, natsMsg **msgs, int max)
{
        int count = 0;
        if (!p->sub)
                return 0;
        /* What is already here; after the unsubscribe cnats drops it. */
        while (count < max) {
                natsMsg *m = NULL;
                if (natsSubscription_NextMsg(&m, p->sub, 0) != NATS_OK)
                        break;
                if (classify(p, m) == PULL_DELIVERY)
                        msgs[count++] = m;
                else
                        natsMsg_Destroy(m);
        }
        /* broker_sub_close flushes: once the server answers, it has
         * dropped our interest and sends nothing more to the inbox. A
         * delivery it sent in the round trip before is lost to us and
         * comes back after ack_wait. */
        broker_sub_close(p->nc, &p->sub);
        p->n_open = 0;
        json_t *reply = NULL;
        (void)jsapi_consumer_info(p->nc, p->stream, p->consumer, PULL_CANCEL_INFO_MS, &reply, NULL);
        json_decref(reply);
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
