/* jspub: JetStream publishes with per-message PubAcks (see jspub.h). */
#include "jspub.h"

#include "broker.h"
#include "clock.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HDR_MSG_ID "Nats-Msg-Id"
#define HDR_STATUS "Status"
#define HDR_DESCRIPTION "Description"
/* How long a publish may wait for room in the in-flight window. */
#define JSPUB_WINDOW_WAIT_MS 10000
#define JSPUB_SPENT_MAX 1024

int jspub_init(jspub *j, natsConnection *nc, const char *inbox_prefix, const jspub_hooks *hooks)
{
        memset(j, 0, sizeof *j);
        j->nc = nc;
        if (hooks) {
                j->stop = hooks->stop;
                j->denied_ms = hooks->denied_ms;
        }
        j->round = 1;
        j->round_ms = clock_mono_ms();
        j->reply_prefix = broker_unique_subject(inbox_prefix, "pub");
        if (!j->reply_prefix)
                return -ENOMEM;
        char sub[300];
        snprintf(sub, sizeof sub, "%s.>", j->reply_prefix);
        /* At most JSPUB_MAX_INFLIGHT replies are ever pending, far below
         * cnats' default per-subscription limit of 65536 messages. */
        natsStatus s = natsConnection_SubscribeSync(&j->sub, nc, sub);
        if (s != NATS_OK) {
                snprintf(j->last_error, sizeof j->last_error, "subscribe %.200s: %s", sub, natsStatus_GetText(s));
                jspub_fini(j);
                return broker_errno(s);
        }
        return 0;
}

static void bury(jspub *j);

void jspub_fini(jspub *j)
{
        if (!j)
                return;
        broker_sub_close(j->nc, &j->sub);
        bury(j);
        free(j->spent);
        free(j->reply_prefix);
        free(j->results);
        memset(j, 0, sizeof *j);
}

void jspub_reset(jspub *j)
{
        j->round_ms = clock_mono_ms();
        j->gave_up_denied = false;
        j->round++;
        j->n = 0;
        j->outstanding = 0;
        j->no_responders = 0;
}

const jspub_result *jspub_result_at(const jspub *j, size_t index)
{
        return index < j->n ? &j->results[index] : NULL;
}

/* The PubAck nats-server 2.9 writes for a stored message, exactly
 * {"stream":"<name>","seq":<n>} or the same with ,"duplicate":true before
 * the closing brace (stream names hold no '"'), is read without a JSON
 * parser: one per publish, it was a visible share of the daemon's CPU.
 * Anything else (errors, other servers' shapes) returns false and goes
 * through jansson. */
static bool parse_puback_fast(const char *d, size_t len, jspub_result *r)
{
        static const char head[] = "{\"stream\":\"";
        static const char seq_key[] = "\",\"seq\":";
        static const char dup[] = ",\"duplicate\":true}";
        if (!d || len < sizeof head || memcmp(d, head, sizeof head - 1) != 0 || d[len - 1] != '}')
                return false;
        const char *end = d + len, *name = d + sizeof head - 1, *q = name;
        /* Only a name jansson would read as is (printable ASCII, nothing
         * escaped): "a\\" or a control byte is not JSON, and must not pass
         * here when jansson would refuse it. */
        while (q < end && *q != '"') {
                if (*q < 0x20 || *q > 0x7e || *q == '\\')
                        return false;
                q++;
        }
        if (q == end || end - q < (long)sizeof seq_key || memcmp(q, seq_key, sizeof seq_key - 1) != 0)
                return false;
        const char *p = q + sizeof seq_key - 1;
        uint64_t seq = 0;
        int digits = 0;
        /* JSON: no leading zero; jansson: at most INT64_MAX (18 digits are
         * always below it, and a sequence never reaches 10^18). */
        for (; p < end && *p >= '0' && *p <= '9' && digits < 18; p++, digits++)
                seq = seq * 10 + (uint64_t)(*p - '0');
        if (digits == 0 || (digits > 1 && p[-digits] == '0'))
                return false;
        bool duplicate = false;
        if (end - p == (long)sizeof dup - 1 && memcmp(p, dup, sizeof dup - 1) == 0)
                duplicate = true;
        else if (!(end - p == 1 && *p == '}'))
                return false;
        r->state = JSPUB_OK;
        r->seq = seq;
        r->duplicate = duplicate;
        return true;
}

jspub_state jspub_parse_puback(const char *data, size_t len, jspub_result *r, char *err, size_t err_size)
{
        if (parse_puback_fast(data, len, r))
                return r->state;
        json_t *ack = data ? json_loadb(data, len, 0, NULL) : NULL;
        json_t *e = json_object_get(ack, "error");
        json_t *seq = json_object_get(ack, "seq");
        if (e || !json_is_integer(seq) || json_integer_value(seq) < 0) {
                r->state = JSPUB_ERROR;
                r->err_code = (int)json_integer_value(json_object_get(e, "err_code"));
                const char *d = json_string_value(json_object_get(e, "description"));
                snprintf(err, err_size, "publish refused: %s (err_code %d)", d ? d : "malformed PubAck", r->err_code);
        } else {
                r->state = JSPUB_OK;
                r->seq = (uint64_t)json_integer_value(seq);
                r->duplicate = json_is_true(json_object_get(ack, "duplicate"));
        }
        json_decref(ack);
        return r->state;
}

static size_t jspub_max_bytes(const jspub *j)
{
        return j->max_bytes ? j->max_bytes : JSPUB_MAX_INFLIGHT_BYTES;
}

/* Keeps m to be destroyed with others: at the end of the round or once
 * JSPUB_SPENT_MAX are kept (bounded memory); at once if that fails. */
static void retire(jspub *j, natsMsg *m)
{
        if (j->n_spent >= JSPUB_SPENT_MAX || j->spent_bytes > jspub_max_bytes(j))
                bury(j);
        j->spent_bytes += (size_t)natsMsg_GetDataLength(m);
        if (j->n_spent == j->cap_spent) {
                size_t ncap = j->cap_spent ? j->cap_spent * 2 : 512;
                natsMsg **ns = realloc(j->spent, ncap * sizeof *ns);
                if (!ns) {
                        natsMsg_Destroy(m);
                        return;
                }
                j->spent = ns;
                j->cap_spent = ncap;
        }
        j->spent[j->n_spent++] = m;
}

static void bury(jspub *j)
{
        for (size_t i = 0; i < j->n_spent; i++)
                natsMsg_Destroy(j->spent[i]);
        j->n_spent = 0;
        j->spent_bytes = 0;
}

/* Applies one PubAck (or status) to its result slot. */
static void take_reply(jspub *j, natsMsg *m)
{
        const char *subject = natsMsg_GetSubject(m);
        size_t plen = strlen(j->reply_prefix);
        uint64_t round, index;
        char tail;
        if (strncmp(subject, j->reply_prefix, plen) != 0 ||
            sscanf(subject + plen, ".%" SCNu64 ".%" SCNu64 "%c", &round, &index, &tail) != 2 || round != j->round ||
            index >= j->n)
                return; /* a late reply of an earlier round */
        jspub_result *r = &j->results[index];
        if (r->state != JSPUB_PENDING)
                return;
        j->outstanding--;

        const char *status = NULL;
        if (natsMsgHeader_Get(m, HDR_STATUS, &status) == NATS_OK && status) {
                /* 503: no stream takes the subject, or (in a cluster) the
                 * stream has no leader while it elects one. */
                const char *desc = NULL;
                (void)natsMsgHeader_Get(m, HDR_DESCRIPTION, &desc);
                r->state = strcmp(status, "503") == 0 ? JSPUB_NO_STREAM : JSPUB_ERROR;
                snprintf(j->last_error, sizeof j->last_error, "publish answered with status %.16s%s%.200s", status,
                         desc && *desc ? " " : "", desc ? desc : "");
                return;
        }
        (void)jspub_parse_puback(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), r, j->last_error,
                                 sizeof j->last_error);
}

/* The deadline drain must not wait past: the caller's, or the graces of
 * the hooks (stop, denied_ms) once they apply (*denied set then). */
static int64_t effective_deadline(jspub *j, int64_t deadline, int64_t *stop_seen_ms, bool *denied)
{
        int64_t now = clock_mono_ms();
        if (j->stop && atomic_load(j->stop)) {
                if (!*stop_seen_ms)
                        *stop_seen_ms = now;
                if (*stop_seen_ms + JSPUB_STOP_GRACE_MS < deadline)
                        deadline = *stop_seen_ms + JSPUB_STOP_GRACE_MS;
        }
        int64_t denial = j->denied_ms ? atomic_load(j->denied_ms) : 0;
        if (denial && denial >= j->round_ms && denial + JSPUB_DENIED_GRACE_MS < deadline) {
                deadline = denial + JSPUB_DENIED_GRACE_MS;
                *denied = true;
        }
        return deadline;
}

/* Takes replies until none is left pending or the deadline passes.
 * Returns 0, -ETIMEDOUT, or another -errno when the PubAck subscription
 * failed (last_error says how). While stop or denied_ms is watched, waits
 * in slices of JSPUB_WATCH_SLICE_MS so either is noticed. */
#define JSPUB_WATCH_SLICE_MS 100
static int drain(jspub *j, size_t until_outstanding, int64_t deadline)
{
        int64_t stop_seen_ms = 0;
        while (j->outstanding > until_outstanding) {
                bool denied = false;
                int64_t until = effective_deadline(j, deadline, &stop_seen_ms, &denied);
                int64_t left = until - clock_mono_ms();
                if (left <= 0) {
                        j->gave_up_denied = denied;
                        return -ETIMEDOUT;
                }
                int64_t wait = left;
                if ((j->stop || j->denied_ms) && wait > JSPUB_WATCH_SLICE_MS)
                        wait = JSPUB_WATCH_SLICE_MS;
                natsMsg *m = NULL;
                natsStatus s = natsSubscription_NextMsg(&m, j->sub, wait);
                if (s == NATS_TIMEOUT && wait < left)
                        continue;
                if (s == NATS_TIMEOUT) {
                        j->gave_up_denied = denied;
                        return -ETIMEDOUT;
                }
                if (s == NATS_NO_RESPONDERS) {
                        /* One publish was refused (no stream takes the
                         * subject, or in a cluster its stream is electing
                         * a leader); cnats dropped the 503 itself, so keep
                         * taking the others' replies. */
                        j->outstanding--;
                        j->no_responders++;
                        snprintf(j->last_error, sizeof j->last_error,
                                 "no responders: the stream has no leader (cluster election) or does not exist");
                        continue;
                }
                if (s != NATS_OK) {
                        snprintf(j->last_error, sizeof j->last_error, "PubAck subscription: %s", natsStatus_GetText(s));
                        return broker_errno(s) < 0 ? broker_errno(s) : -EIO;
                }
                take_reply(j, m);
                retire(j, m);
        }
        return 0;
}

static long new_slot(jspub *j)
{
        if (j->n == j->cap) {
                size_t ncap = j->cap ? j->cap * 2 : 256;
                jspub_result *nr = realloc(j->results, ncap * sizeof *nr);
                if (!nr)
                        return -ENOMEM;
                j->results = nr;
                j->cap = ncap;
        }
        memset(&j->results[j->n], 0, sizeof *j->results);
        return (long)j->n++;
}

long jspub_publish(jspub *j, const char *subject, const char *msg_id, const char *data, size_t len)
{
        if (j->outstanding >= JSPUB_MAX_INFLIGHT)
                (void)drain(j, JSPUB_MAX_INFLIGHT / 2, clock_mono_ms() + JSPUB_WINDOW_WAIT_MS);
        if (j->outstanding == 0)
                j->unsettled_bytes = 0;
        else if (j->unsettled_bytes + len > jspub_max_bytes(j)) {
                /* Unanswered after the wait: they end as timeouts in
                 * jspub_wait; the next wait comes another budget later. */
                (void)natsConnection_FlushTimeout(j->nc, 1000);
                (void)drain(j, 0, clock_mono_ms() + JSPUB_WINDOW_WAIT_MS);
                j->unsettled_bytes = 0;
        }
        long idx = new_slot(j);
        if (idx < 0)
                return idx;
        char reply[320];
        snprintf(reply, sizeof reply, "%s.%" PRIu64 ".%ld", j->reply_prefix, j->round, idx);

        natsMsg *m = NULL;
        natsStatus s = natsMsg_Create(&m, subject, reply, data, (int)len);
        if (s == NATS_OK && msg_id)
                s = natsMsgHeader_Set(m, HDR_MSG_ID, msg_id);
        if (s == NATS_OK)
                s = natsConnection_PublishMsg(j->nc, m);
        if (m)
                retire(j, m);
        if (s == NATS_MAX_PAYLOAD) {
                j->results[idx].state = JSPUB_TOO_LARGE;
                snprintf(j->last_error, sizeof j->last_error, "%zu-byte message to %s exceeds max payload", len,
                         subject);
                return idx;
        }
        if (s != NATS_OK) {
                /* Not sent (e.g. connection closed): report it as a
                 * timeout so the caller retries the source message. */
                j->results[idx].state = JSPUB_TIMEOUT;
                snprintf(j->last_error, sizeof j->last_error, "publish to %s: %s", subject, natsStatus_GetText(s));
                return idx;
        }
        j->outstanding++;
        j->unsettled_bytes += len;
        return idx;
}

size_t jspub_wait(jspub *j, int64_t timeout_ms)
{
        /* Send the round now rather than when cnats' flusher wakes up
         * (~1 ms later, research/cnats.md pitfall 1). */
        if (j->outstanding > 0)
                (void)natsConnection_FlushTimeout(j->nc, timeout_ms < 1000 ? timeout_ms : 1000);
        int r = drain(j, 0, clock_mono_ms() + timeout_ms);
        size_t bad = 0;
        for (size_t i = 0; i < j->n; i++) {
                if (j->results[i].state == JSPUB_PENDING) {
                        /* Every reply came in: the unanswered ones got
                         * the 503s (see no_responders). */
                        j->results[i].state = r == 0 && j->no_responders ? JSPUB_NO_STREAM : JSPUB_TIMEOUT;
                        if (j->gave_up_denied)
                                snprintf(j->last_error, sizeof j->last_error,
                                         "no PubAck, and the broker refused a publish of this round (permission "
                                         "denied)");
                        else if (r == -ETIMEDOUT)
                                snprintf(j->last_error, sizeof j->last_error, "no PubAck within %lld ms",
                                         (long long)timeout_ms);
                }
                bad += j->results[i].state != JSPUB_OK;
        }
        j->outstanding = 0;
        j->unsettled_bytes = 0;
        bury(j);
        return bad;
}
