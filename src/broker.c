/* broker: connection setup and raw JetStream API requests. Holds no state
 * of its own; every handle is owned by the caller. */
#include "broker.h"

#include "clock.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BROKER_MAX_SERVERS 16
#define BROKER_PING_INTERVAL_MS 1000
#define BROKER_MAX_PINGS_OUT 2
#define BROKER_RECONNECT_WAIT_MS 250
#define BROKER_RECONNECT_JITTER_MS 100
#define BROKER_RECONNECT_JITTER_TLS_MS 1000

int broker_errno(natsStatus s)
{
        switch (s) {
        case NATS_OK: return 0;
        case NATS_TIMEOUT: return -ETIMEDOUT;
        case NATS_NO_RESPONDERS: return -ENXIO;
        case NATS_NOT_FOUND: return -ENOENT;
        case NATS_NO_MEMORY: return -ENOMEM;
        case NATS_INVALID_ARG: return -EINVAL;
        case NATS_CONNECTION_CLOSED:
        case NATS_CONNECTION_DISCONNECTED:
        case NATS_NO_SERVER: return -ENOTCONN;
        case NATS_NOT_PERMITTED:
        case NATS_CONNECTION_AUTH_FAILED: return -EACCES;
        default: return -EIO;
        }
}

/* Splits "a,b,c" into at most BROKER_MAX_SERVERS URLs (copies in buf). */
static int split_servers(const char *servers, char *buf, size_t size, const char **urls)
{
        if (strlen(servers) >= size)
                return -E2BIG;
        strcpy(buf, servers);
        int n = 0;
        for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                while (*tok == ' ')
                        tok++;
                if (*tok == '\0')
                        continue;
                if (n == BROKER_MAX_SERVERS)
                        return -E2BIG;
                urls[n++] = tok;
        }
        return n > 0 ? n : -EINVAL;
}

int broker_connect(const broker_config *cfg, natsConnection **nc, char *err, size_t err_size)
{
        natsOptions *opts = NULL;
        char buf[2048];
        const char *urls[BROKER_MAX_SERVERS];
        int n = split_servers(cfg->servers ? cfg->servers : BROKER_DEFAULT_URL, buf, sizeof buf, urls);
        if (n < 0) {
                snprintf(err, err_size, "invalid server list \"%s\"", cfg->servers);
                return -EINVAL;
        }

        natsStatus s = natsOptions_Create(&opts);
        if (s == NATS_OK)
                s = natsOptions_SetServers(opts, urls, n);
        if (s == NATS_OK && cfg->name)
                s = natsOptions_SetName(opts, cfg->name);
        if (s == NATS_OK && cfg->connect_timeout_ms > 0)
                s = natsOptions_SetTimeout(opts, cfg->connect_timeout_ms);
        if (s == NATS_OK && cfg->inbox_prefix)
                s = natsOptions_SetCustomInboxPrefix(opts, cfg->inbox_prefix);
        /* research/cnats.md pitfall 11: the default ping is 2 min x 2, far
         * too slow to notice a frozen broker. */
        if (s == NATS_OK)
                s = natsOptions_SetPingInterval(opts, BROKER_PING_INTERVAL_MS);
        if (s == NATS_OK)
                s = natsOptions_SetMaxPingsOut(opts, BROKER_MAX_PINGS_OUT);
        if (s == NATS_OK && cfg->reconnect) {
                s = natsOptions_SetMaxReconnect(opts, -1);
                if (s == NATS_OK)
                        s = natsOptions_SetReconnectWait(opts, BROKER_RECONNECT_WAIT_MS);
                if (s == NATS_OK)
                        s = natsOptions_SetReconnectJitter(opts, BROKER_RECONNECT_JITTER_MS,
                                                           BROKER_RECONNECT_JITTER_TLS_MS);
        } else if (s == NATS_OK) {
                s = natsOptions_SetAllowReconnect(opts, false);
        }
        if (s == NATS_OK && cfg->on_disconnected)
                s = natsOptions_SetDisconnectedCB(opts, cfg->on_disconnected, cfg->cb_arg);
        if (s == NATS_OK && cfg->on_reconnected)
                s = natsOptions_SetReconnectedCB(opts, cfg->on_reconnected, cfg->cb_arg);
        if (s == NATS_OK && cfg->on_closed)
                s = natsOptions_SetClosedCB(opts, cfg->on_closed, cfg->cb_arg);
        if (s == NATS_OK && cfg->on_error)
                s = natsOptions_SetErrorHandler(opts, cfg->on_error, cfg->cb_arg);
        if (s == NATS_OK && cfg->jwt_cb)
                s = natsOptions_SetUserCredentialsCallbacks(opts, cfg->jwt_cb, cfg->creds_arg, cfg->sign_cb,
                                                            cfg->creds_arg);
        else if (s == NATS_OK && cfg->creds_file)
                s = natsOptions_SetUserCredentialsFromFiles(opts, cfg->creds_file, NULL);
        if (s != NATS_OK) {
                snprintf(err, err_size, "invalid connection options: %s", natsStatus_GetText(s));
                natsOptions_Destroy(opts);
                return broker_errno(s);
        }

        /* nats-server 2.9.10 refuses about 1 in 300-600 connections that
         * present valid creds (it logs only "authentication error"; seen
         * with cnats' file signer and with ours alike): a refusal is
         * retried a few times before it counts. A user the server never
         * accepts still fails, just later. */
        for (int attempt = 1;; attempt++) {
                s = natsConnection_Connect(nc, opts);
                if (s != NATS_CONNECTION_AUTH_FAILED || attempt == BROKER_AUTH_ATTEMPTS)
                        break;
                log_debug("The broker refused authentication (attempt %d of %d); retrying", attempt,
                          BROKER_AUTH_ATTEMPTS);
        }
        natsOptions_Destroy(opts);
        if (s != NATS_OK) {
                const char *text = nats_GetLastError(NULL);
                snprintf(err, err_size, "%s%s%s", natsStatus_GetText(s), text && *text ? ": " : "", text ? text : "");
                *nc = NULL;
                return broker_errno(s);
        }
        return 0;
}

void broker_sub_close(natsConnection *nc, natsSubscription **sub)
{
        if (!*sub)
                return;
        (void)natsSubscription_Unsubscribe(*sub);
        /* A closed or reconnecting connection reads nothing: the flush
         * fails at once and destroying is safe. */
        if (nc)
                (void)natsConnection_FlushTimeout(nc, BROKER_SUB_CLOSE_FLUSH_MS);
        natsSubscription_Destroy(*sub);
        *sub = NULL;
}

static void set_error(jsapi_error *err, int code, int err_code, const char *what, const char *detail)
{
        if (!err)
                return;
        err->code = code;
        err->err_code = err_code;
        snprintf(err->description, sizeof err->description, "%s%s", what, detail ? detail : "");
}

/* Decodes a JetStream API reply (borrowed msg): 0 with *reply owned, or
 * -EPROTO / -EREMOTEIO as jsapi_request. */
static int parse_api_reply(natsMsg *msg, json_t **reply, jsapi_error *err)
{
        json_error_t jerr;
        json_t *root = json_loadb(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), 0, &jerr);
        if (!root || !json_is_object(root)) {
                json_decref(root);
                set_error(err, 0, 0, "malformed JetStream API reply: ", root ? "not an object" : jerr.text);
                return -EPROTO;
        }
        json_t *e = json_object_get(root, "error");
        if (e) {
                json_t *d = json_object_get(e, "description");
                set_error(err, (int)json_integer_value(json_object_get(e, "code")),
                          (int)json_integer_value(json_object_get(e, "err_code")),
                          json_is_string(d) ? json_string_value(d) : "unknown JetStream error", NULL);
                json_decref(root);
                return -EREMOTEIO;
        }
        *reply = root;
        return 0;
}

int jsapi_request(natsConnection *nc, const char *subject, const json_t *body, int64_t timeout_ms, json_t **reply,
                  jsapi_error *err)
{
        char *payload = NULL;
        size_t len = 0;
        natsMsg *msg = NULL;

        *reply = NULL;
        if (err)
                memset(err, 0, sizeof *err);
        if (body) {
                payload = json_dumps(body, JSON_COMPACT);
                if (!payload)
                        return -ENOMEM;
                len = strlen(payload);
        }
        natsStatus s = natsConnection_Request(&msg, nc, subject, payload, (int)len,
                                              timeout_ms > 0 ? timeout_ms : BROKER_REQUEST_TIMEOUT_MS);
        free(payload);
        if (s != NATS_OK) {
                set_error(err, 0, 0, natsStatus_GetText(s), NULL);
                return broker_errno(s);
        }
        int r = parse_api_reply(msg, reply, err);
        natsMsg_Destroy(msg);
        return r;
}

int jsapi_batch_init(jsapi_batch *b, natsConnection *nc, const char *inbox_prefix)
{
        memset(b, 0, sizeof *b);
        b->nc = nc;
        b->prefix = broker_unique_subject(inbox_prefix ? inbox_prefix : "_INBOX", "api");
        char *wild = NULL;
        if (!b->prefix || asprintf(&wild, "%s.>", b->prefix) < 0) {
                jsapi_batch_fini(b);
                return -ENOMEM;
        }
        natsStatus s = natsConnection_SubscribeSync(&b->sub, nc, wild);
        free(wild);
        if (s != NATS_OK) {
                jsapi_batch_fini(b);
                return broker_errno(s);
        }
        return 0;
}

void jsapi_batch_fini(jsapi_batch *b)
{
        if (b->nc)
                broker_sub_close(b->nc, &b->sub);
        free(b->prefix);
        memset(b, 0, sizeof *b);
}

/* Which request of the current round a reply answers, or -1 (a late
 * reply of an earlier round). */
static long batch_index(const jsapi_batch *b, const char *subject, size_t n)
{
        size_t plen = strlen(b->prefix);
        uint64_t round, index;
        char tail;
        if (strncmp(subject, b->prefix, plen) != 0 ||
            sscanf(subject + plen, ".%" SCNu64 ".%" SCNu64 "%c", &round, &index, &tail) != 2 || round != b->round ||
            index >= n)
                return -1;
        return (long)index;
}

int jsapi_batch_request(jsapi_batch *b, const char *const *subjects, size_t n, int64_t timeout_ms, json_t **replies,
                        jsapi_error *errs)
{
        int64_t deadline = clock_mono_ms() + (timeout_ms > 0 ? timeout_ms : BROKER_REQUEST_TIMEOUT_MS);
        size_t left = 0;
        b->round++;
        for (size_t i = 0; i < n; i++) {
                char reply[320];
                replies[i] = NULL;
                memset(&errs[i], 0, sizeof errs[i]);
                snprintf(reply, sizeof reply, "%s.%" PRIu64 ".%zu", b->prefix, b->round, i);
                natsStatus s = natsConnection_PublishRequest(b->nc, subjects[i], reply, NULL, 0);
                if (s != NATS_OK) {
                        set_error(&errs[i], 0, 0, natsStatus_GetText(s), NULL);
                        return broker_errno(s);
                }
                left++;
        }
        /* All at once, without waiting for cnats' flusher. */
        (void)natsConnection_FlushTimeout(b->nc, deadline - clock_mono_ms());
        int r = 0;
        while (left > 0) {
                int64_t wait = deadline - clock_mono_ms();
                natsMsg *m = NULL;
                natsStatus s = wait > 0 ? natsSubscription_NextMsg(&m, b->sub, wait) : NATS_TIMEOUT;
                if (s != NATS_OK) {
                        for (size_t i = 0; i < n; i++)
                                if (!replies[i] && !errs[i].description[0])
                                        set_error(&errs[i], 0, 0, natsStatus_GetText(s), NULL);
                        return broker_errno(s);
                }
                long i = batch_index(b, natsMsg_GetSubject(m), n);
                const char *status = NULL;
                if (i >= 0 && !replies[i] && !errs[i].description[0]) {
                        left--;
                        int ri = natsMsgHeader_Get(m, "Status", &status) == NATS_OK && status
                                         ? (set_error(&errs[i], 0, 0, "no responders", NULL), -ENXIO)
                                         : parse_api_reply(m, &replies[i], &errs[i]);
                        if (ri < 0 && r == 0)
                                r = ri;
                }
                natsMsg_Destroy(m);
        }
        return r;
}

char *broker_unique_subject(const char *prefix, const char *tag)
{
        natsInbox *inbox = NULL;
        char *out = NULL;
        if (natsInbox_Create(&inbox) != NATS_OK)
                return NULL;
        /* natsInbox gives "_INBOX.<nuid>": keep its unique part only. */
        const char *uniq = strchr(inbox, '.');
        if (asprintf(&out, "%s.%s.%s", prefix, tag, uniq ? uniq + 1 : inbox) < 0)
                out = NULL;
        natsInbox_Destroy(inbox);
        return out;
}

/* Runs one API request on a subject built at full length. */
static int request_on(natsConnection *nc, char *subject, const json_t *body, int64_t timeout_ms, json_t **reply,
                      jsapi_error *err)
{
        *reply = NULL;
        if (!subject)
                return -ENOMEM;
        int r = jsapi_request(nc, subject, body, timeout_ms, reply, err);
        free(subject);
        return r;
}

int jsapi_stream_info(natsConnection *nc, const char *stream, const json_t *body, int64_t timeout_ms, json_t **reply,
                      jsapi_error *err)
{
        char *subject = NULL;
        if (asprintf(&subject, "$JS.API.STREAM.INFO.%s", stream) < 0)
                subject = NULL;
        return request_on(nc, subject, body, timeout_ms, reply, err);
}

int jsapi_consumer_info(natsConnection *nc, const char *stream, const char *consumer, int64_t timeout_ms,
                        json_t **reply, jsapi_error *err)
{
        char *subject = NULL;
        if (asprintf(&subject, "$JS.API.CONSUMER.INFO.%s.%s", stream, consumer) < 0)
                subject = NULL;
        return request_on(nc, subject, NULL, timeout_ms, reply, err);
}

int json_path_u64(const json_t *root, const char *path, uint64_t *out)
{
        char buf[128];
        if (strlen(path) >= sizeof buf)
                return -ENOENT;
        strcpy(buf, path);
        const json_t *cur = root;
        for (char *save = NULL, *tok = strtok_r(buf, ".", &save); tok; tok = strtok_r(NULL, ".", &save)) {
                cur = json_object_get(cur, tok);
                if (!cur)
                        return -ENOENT;
        }
        if (!json_is_integer(cur) || json_integer_value(cur) < 0)
                return -ENOENT;
        *out = (uint64_t)json_integer_value(cur);
        return 0;
}
