/* broker: connections to nats-server and raw JetStream API requests.
 * Raw JSON requests ($JS.API.…) give exact control over what goes on the
 * wire (PROTOCOL §2-§4 configs, §11.3 permitted subjects); cnats' own
 * helpers are used only where their wire form is the contract's. */
#pragma once

#include <jansson.h>
#include <nats/nats.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BROKER_DEFAULT_URL "nats://127.0.0.1:4222"
#define BROKER_REQUEST_TIMEOUT_MS 5000
#define BROKER_AUTH_ATTEMPTS 3 /* connects refused for authentication, see broker_connect */

typedef struct broker_config {
        const char *servers;    /* one URL or a comma-separated list     */
        const char *creds_file; /* JWT + seed; NULL = no authentication  */
        /* Or callbacks giving the JWT and signing the nonce at every
         * (re)connect, with their closure (creds_source does rotation). */
        natsUserJWTHandler jwt_cb;
        natsSignatureHandler sign_cb;
        void *creds_arg;
        const char *inbox_prefix; /* NULL = cnats default "_INBOX"         */
        const char *name;         /* connection name (advisory)            */
        int64_t connect_timeout_ms;
        bool reconnect; /* reconnect forever (with jitter) once connected */
        /* Optional link callbacks (run on a cnats thread), with their
         * closure. */
        natsConnectionHandler on_disconnected, on_reconnected, on_closed;
        natsErrHandler on_error;
        void *cb_arg;
} broker_config;

/* Connects. On failure returns a negative errno and writes a one-line
 * reason into err (which never contains secrets). *nc owned by the caller:
 * natsConnection_Destroy. */
int broker_connect(const broker_config *cfg, natsConnection **nc, char *err, size_t err_size);

/* A JetStream API error: the reply's {"error":{code,err_code,description}},
 * or a transport failure described in description (code/err_code 0). */
typedef struct jsapi_error {
        int code;     /* HTTP-like: 404, 400, 503 …                  */
        int err_code; /* JetStream code: 10014, 10037, 10058, 10071 … */
        char description[256];
} jsapi_error;

/* JetStream error codes the project relies on. */
#define JS_ERR_CONSUMER_NOT_FOUND 10014
#define JS_ERR_MSG_NOT_FOUND 10037
#define JS_ERR_STREAM_NOT_FOUND 10059
#define JS_ERR_STREAM_NAME_IN_USE 10058
#define JS_ERR_WRONG_LAST_SEQUENCE 10071
#define JS_ERR_WRONG_LAST_SEQUENCE_R 10164

/* Sends body (compact JSON; NULL sends an empty payload) to subject and
 * waits for the reply. Returns 0 with *reply owned by the caller
 * (json_decref), or:
 *   -EREMOTEIO  the API answered with an error (err filled),
 *   -ETIMEDOUT  no reply in time,
 *   -ENXIO      no responders (JetStream off, or no such API subject),
 *   -EPROTO     the reply is not a JSON object,
 *   -EIO/-ENOMEM other failures.
 * err may be NULL. */
int jsapi_request(natsConnection *nc, const char *subject, const json_t *body, int64_t timeout_ms, json_t **reply,
                  jsapi_error *err);

/* $JS.API.STREAM.INFO.<stream> (body: e.g. a subjects_filter, or NULL)
 * and $JS.API.CONSUMER.INFO.<stream>.<consumer>, as jsapi_request. */
int jsapi_stream_info(natsConnection *nc, const char *stream, const json_t *body, int64_t timeout_ms, json_t **reply,
                      jsapi_error *err);
int jsapi_consumer_info(natsConnection *nc, const char *stream, const char *consumer, int64_t timeout_ms,
                        json_t **reply, jsapi_error *err);

/* Several JetStream API requests sent at once (one flush: natsConnection_
 * Request waits ~1 ms for cnats' flusher per call, research/cnats.md) and
 * answered on one reply subscription under our inbox prefix. One thread
 * owns a jsapi_batch. */
typedef struct jsapi_batch {
        natsConnection *nc;    /* borrowed */
        natsSubscription *sub; /* <prefix>.> */
        char *prefix;
        uint64_t round; /* replies of earlier rounds are ignored */
} jsapi_batch;

int jsapi_batch_init(jsapi_batch *b, natsConnection *nc, const char *inbox_prefix);
void jsapi_batch_fini(jsapi_batch *b); /* accepts a zeroed struct */
/* Sends an empty-bodied request to each of subjects[0..n) and waits (up to
 * timeout_ms, 0 = default) for every reply: replies[i] owned (json_decref,
 * whatever the result) or NULL with errs[i] set. Returns 0 if all succeeded, else the first error (as
 * jsapi_request). */
int jsapi_batch_request(jsapi_batch *b, const char *const *subjects, size_t n, int64_t timeout_ms, json_t **replies,
                        jsapi_error *errs);

/* "<prefix>.<tag>.<unique>": a fresh subject under our own inbox prefix
 * (§1.4: every reply and delivery lands under _INBOX_<D>.). Owned; NULL on
 * allocation failure. */
char *broker_unique_subject(const char *prefix, const char *tag);

/* Unsubscribes, then destroys *sub (set to NULL) once the server's
 * answer to a flush (bounded by BROKER_SUB_CLOSE_FLUSH_MS) shows that
 * every message sent before the UNSUB was handled. cnats 3.4.1's reader
 * thread looks a subscription up and uses it after dropping the lock
 * (natsConn_processMsg), so destroying one that still receives messages
 * is a use-after-free. NULL *sub is fine. */
void broker_sub_close(natsConnection *nc, natsSubscription **sub);
#define BROKER_SUB_CLOSE_FLUSH_MS 500

/* Maps a cnats status to a negative errno (NATS_TIMEOUT -> -ETIMEDOUT,
 * NATS_NO_RESPONDERS -> -ENXIO, NATS_NOT_FOUND -> -ENOENT, …). */
int broker_errno(natsStatus s);

/* Reads an integer (uint64 range) at a dotted path such as "state.last_seq"
 * from a JSON reply. Returns 0 or -ENOENT. */
int json_path_u64(const json_t *root, const char *path, uint64_t *out);
