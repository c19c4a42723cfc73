/* cotal: daemon-test fixtures on the real broker. */
#include "cotal.h"

#include "broker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t wall_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void co_provision(const char *space)
{
        const char *args[] = {"--space", space, "provision", NULL};
        char *out = NULL, *err = NULL;
        int st = tu_ctl(&out, &err, args);
        ck_assert_msg(st == 0, "provision %s: %s", space, err);
        free(out);
        free(err);
}

void co_provision_general(const char *space, const char *const *owners, size_t k)
{
        co_provision(space);
        for (size_t i = 0; i < k; i++) {
                co_acl(space, owners[i], "[\"general\"]");
                co_member(space, "general", owners[i], 0, 1, -1);
        }
}

uint64_t co_publish_raw(const char *subject, const char *msg_id, const char *data, size_t len)
{
        natsMsg *m = NULL;
        ck_assert(natsMsg_Create(&m, subject, NULL, data, (int)len) == NATS_OK);
        if (msg_id)
                natsMsgHeader_Set(m, "Nats-Msg-Id", msg_id);
        jsCtx *js = NULL;
        ck_assert(natsConnection_JetStream(&js, tu_nc, NULL) == NATS_OK);
        jsPubAck *pa = NULL;
        jsErrCode jerr = 0;
        natsStatus s = js_PublishMsg(&pa, js, m, NULL, &jerr);
        ck_assert_msg(s == NATS_OK, "publish on %s failed: %s (%d)", subject, natsStatus_GetText(s), (int)jerr);
        uint64_t seq = pa->Sequence;
        jsPubAck_Destroy(pa);
        jsCtx_Destroy(js);
        natsMsg_Destroy(m);
        return seq;
}

uint64_t co_chat(const char *space, const char *sender, const char *channel, const char *id, const char *extra)
{
        char subject[512], *body = NULL;
        int n = snprintf(subject, sizeof subject, "cotal.%s.chat.%s.%s", space, sender, channel);
        ck_assert_msg(n > 0 && (size_t)n < sizeof subject, "co_chat: subject too long for the fixture");
        n = asprintf(&body,
                     "{\"id\":\"%s\",\"ts\":%lld,\"space\":\"%s\",\"from\":{\"id\":\"%s\",\"name\":\"agent\"},"
                     "\"channel\":\"%s\",\"parts\":[{\"kind\":\"text\",\"text\":\"hello %s\"}]%s%s}",
                     id, (long long)wall_ms(), space, sender, channel, id, extra ? "," : "", extra ? extra : "");
        ck_assert_msg(n > 0, "co_chat: out of memory");
        uint64_t seq = co_publish_raw(subject, id, body, strlen(body));
        free(body);
        return seq;
}

void co_chat_retrying(const char *space, const char *sender, const char *channel, const char *id)
{
        char *subject = NULL, *body = NULL;
        ck_assert(asprintf(&subject, "cotal.%s.chat.%s.%s", space, sender, channel) > 0);
        ck_assert(asprintf(&body,
                           "{\"id\":\"%s\",\"ts\":%lld,\"from\":{\"id\":\"%s\",\"name\":\"agent\"},\"parts\":[]}", id,
                           (long long)wall_ms(), sender) > 0);
        jsCtx *js = NULL;
        ck_assert(natsConnection_JetStream(&js, tu_nc, NULL) == NATS_OK);
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = id;
        po.MaxWait = 2000;
        natsStatus s = NATS_ERR;
        for (int attempt = 0; attempt < 60 && s != NATS_OK; attempt++) {
                jsPubAck *pa = NULL;
                s = js_Publish(&pa, js, subject, body, (int)strlen(body), &po, NULL);
                jsPubAck_Destroy(pa);
                if (s != NATS_OK) {
                        struct timespec ts = {0, 250000000}; /* bounded retry back-off */
                        nanosleep(&ts, NULL);
                }
        }
        jsCtx_Destroy(js);
        free(body);
        free(subject);
        ck_assert_msg(s == NATS_OK, "could not publish %s: %s", id, natsStatus_GetText(s));
}

uint64_t co_chat_burst(const char *space, const char *sender, const char *channel, const char *prefix, int n,
                       size_t pad)
{
        jsCtx *js = NULL;
        ck_assert(natsConnection_JetStream(&js, tu_nc, NULL) == NATS_OK);
        char *subject = NULL, *text = malloc(pad + 1);
        ck_assert(asprintf(&subject, "cotal.%s.chat.%s.%s", space, sender, channel) > 0 && text);
        memset(text, 'x', pad);
        text[pad] = '\0';
        uint64_t last = 0;
        for (int i = 0; i < n; i++) {
                char id[64], *body = NULL;
                snprintf(id, sizeof id, "%s-%d", prefix, i);
                ck_assert(asprintf(&body,
                                   "{\"id\":\"%s\",\"ts\":1,\"from\":{\"id\":\"%s\",\"name\":\"x\"},"
                                   "\"parts\":[{\"kind\":\"text\",\"text\":\"%s\"}]}",
                                   id, sender, text) > 0);
                natsMsg *m = NULL;
                ck_assert(natsMsg_Create(&m, subject, NULL, body, (int)strlen(body)) == NATS_OK);
                natsMsgHeader_Set(m, "Nats-Msg-Id", id);
                jsPubAck *pa = NULL;
                ck_assert(js_PublishMsg(&pa, js, m, NULL, NULL) == NATS_OK);
                last = pa->Sequence;
                jsPubAck_Destroy(pa);
                natsMsg_Destroy(m);
                free(body);
        }
        free(text);
        free(subject);
        jsCtx_Destroy(js);
        return last;
}

static void kv_write(const char *bucket, const char *key, const char *value, const char *op)
{
        char subject[512];
        int n = snprintf(subject, sizeof subject, "$KV.%s.%s", bucket, key);
        ck_assert_msg(n > 0 && (size_t)n < sizeof subject, "kv_write: key too long for the fixture");
        natsMsg *m = NULL;
        ck_assert(natsMsg_Create(&m, subject, NULL, value, value ? (int)strlen(value) : 0) == NATS_OK);
        if (op)
                natsMsgHeader_Set(m, "KV-Operation", op);
        jsCtx *js = NULL;
        natsConnection_JetStream(&js, tu_nc, NULL);
        natsStatus s = js_PublishMsg(NULL, js, m, NULL, NULL);
        ck_assert_msg(s == NATS_OK, "KV write %s: %s", subject, natsStatus_GetText(s));
        jsCtx_Destroy(js);
        natsMsg_Destroy(m);
}

void co_acl(const char *space, const char *owner, const char *allow)
{
        char bucket[256], value[4096];
        snprintf(bucket, sizeof bucket, "cotal_acl_%s", space);
        snprintf(value, sizeof value, "{\"allowSubscribe\":%s,\"revision\":1,\"updatedAt\":%lld}", allow,
                 (long long)wall_ms());
        kv_write(bucket, owner, value, NULL);
}

void co_acl_delete(const char *space, const char *owner)
{
        char bucket[256];
        snprintf(bucket, sizeof bucket, "cotal_acl_%s", space);
        kv_write(bucket, owner, NULL, "DEL");
}

void co_member(const char *space, const char *channel, const char *owner, uint64_t join_cursor, uint64_t gen,
               int64_t leave_cursor)
{
        char bucket[256], key[512], value[2048], leave[64] = "";
        snprintf(bucket, sizeof bucket, "cotal_members_%s", space);
        int n = snprintf(key, sizeof key, "%s/%s", channel, owner);
        ck_assert_msg(n > 0 && (size_t)n < sizeof key, "co_member: key too long for the fixture");
        if (leave_cursor >= 0)
                snprintf(leave, sizeof leave, ",\"leaveCursor\":%lld", (long long)leave_cursor);
        snprintf(value, sizeof value,
                 "{\"channel\":\"%s\",\"owner\":\"%s\",\"state\":\"%s\",\"joinCursor\":%llu,\"generation\":%llu,"
                 "\"activated\":true,\"writerIdentity\":\"UFIXTURE\",\"updatedAt\":%lld%s}",
                 channel, owner, leave_cursor >= 0 ? "live-confirmed" : "durable-active",
                 (unsigned long long)join_cursor, (unsigned long long)gen, (long long)wall_ms(), leave);
        kv_write(bucket, key, value, NULL);
}

void co_member_pending(const char *space, const char *channel, const char *owner, uint64_t join_cursor, uint64_t gen)
{
        char bucket[256], key[512], value[2048];
        snprintf(bucket, sizeof bucket, "cotal_members_%s", space);
        int n = snprintf(key, sizeof key, "%s/%s", channel, owner);
        ck_assert_msg(n > 0 && (size_t)n < sizeof key, "co_member_pending: key too long for the fixture");
        snprintf(value, sizeof value,
                 "{\"channel\":\"%s\",\"owner\":\"%s\",\"state\":\"durable-active\",\"joinCursor\":%llu,"
                 "\"generation\":%llu,\"activated\":false,\"writerIdentity\":\"UFIXTURE\",\"updatedAt\":%lld}",
                 channel, owner, (unsigned long long)join_cursor, (unsigned long long)gen, (long long)wall_ms());
        kv_write(bucket, key, value, NULL);
}

void co_dlv_stall(const char *space, bool stalled)
{
        char name[256], subject[300];
        snprintf(name, sizeof name, "DLV_%s", space);
        snprintf(subject, sizeof subject, stalled ? "cotal.%s.dlv-stalled.>" : "cotal.%s.dlv.>", space);
        json_t *cfg = tu_stream_config(name);
        ck_assert_ptr_nonnull(cfg);
        json_object_set_new(cfg, "subjects", json_pack("[s]", subject));
        json_t *r = tu_api("$JS.API.STREAM.UPDATE.%s%s", name, "", cfg);
        ck_assert_msg(json_object_get(r, "error") == NULL, "stream update %s: %s", name, co_json_text(r));
        json_decref(r);
}

void co_presence(const char *space, const char *id, const char *name)
{
        char bucket[256], value[1024];
        snprintf(bucket, sizeof bucket, "cotal_presence_%s", space);
        snprintf(value, sizeof value,
                 "{\"card\":{\"id\":\"%s\",\"name\":\"%s\",\"kind\":\"agent\"},\"status\":\"idle\",\"ts\":%lld}", id,
                 name, (long long)wall_ms());
        kv_write(bucket, id, value, NULL);
}

void co_msg_fini(co_msg *m)
{
        free(m->subject);
        free(m->msg_id);
        json_decref(m->body);
        memset(m, 0, sizeof *m);
}

static size_t b64_decode(const char *in, unsigned char *out)
{
        static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        unsigned acc = 0;
        int bits = 0;
        size_t o = 0;
        for (; *in && *in != '='; in++) {
                const char *p = strchr(tbl, *in);
                if (!p)
                        continue;
                acc = (acc << 6) | (unsigned)(p - tbl);
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        out[o++] = (unsigned char)((acc >> bits) & 0xff);
                }
        }
        return o;
}

bool co_msg_get(const char *stream, uint64_t seq, co_msg *out)
{
        memset(out, 0, sizeof *out);
        json_t *r = tu_api("$JS.API.STREAM.MSG.GET.%s%s", stream, "", json_pack("{s:I}", "seq", (json_int_t)seq));
        json_t *msg = json_object_get(r, "message");
        if (!msg) {
                json_decref(r);
                return false;
        }
        out->seq = seq;
        out->subject = strdup(json_string_value(json_object_get(msg, "subject")));
        const char *data = json_string_value(json_object_get(msg, "data"));
        const char *hdrs = json_string_value(json_object_get(msg, "hdrs"));
        if (data) {
                unsigned char *buf = malloc(strlen(data) + 1);
                size_t n = b64_decode(data, buf);
                out->body = json_loadb((const char *)buf, n, 0, NULL);
                free(buf);
        }
        if (hdrs) {
                unsigned char *buf = calloc(1, strlen(hdrs) + 1);
                b64_decode(hdrs, buf);
                const char *h = strstr((const char *)buf, "Nats-Msg-Id:");
                if (h) {
                        h += 12;
                        while (*h == ' ')
                                h++;
                        out->msg_id = strndup(h, strcspn(h, "\r\n"));
                }
                free(buf);
        }
        json_decref(r);
        return true;
}

json_t *co_kv_value(const char *bucket, const char *key, uint64_t *rev)
{
        char *stream = NULL, *subj = NULL;
        ck_assert(asprintf(&stream, "KV_%s", bucket) > 0 && asprintf(&subj, "$KV.%s.%s", bucket, key) > 0);
        json_t *r = tu_api("$JS.API.STREAM.MSG.GET.%s%s", stream, "", json_pack("{s:s}", "last_by_subj", subj));
        uint64_t seq = (uint64_t)json_integer_value(json_object_get(json_object_get(r, "message"), "seq"));
        json_decref(r);
        if (rev)
                *rev = seq;
        json_t *body = NULL;
        co_msg m;
        if (seq && co_msg_get(stream, seq, &m)) {
                body = json_incref(m.body);
                co_msg_fini(&m);
        }
        free(stream);
        free(subj);
        return body;
}

static uint64_t state_field(const char *stream, const char *field, const char *filter)
{
        json_t *body = filter ? json_pack("{s:s}", "subjects_filter", filter) : NULL;
        json_t *r = tu_api("$JS.API.STREAM.INFO.%s%s", stream, "", body);
        json_t *state = json_object_get(r, "state");
        uint64_t v = 0;
        if (filter) {
                const char *k;
                json_t *c;
                json_object_foreach (json_object_get(state, "subjects"), k, c)
                        v += (uint64_t)json_integer_value(c);
        } else {
                v = (uint64_t)json_integer_value(json_object_get(state, field));
        }
        json_decref(r);
        return v;
}

uint64_t co_last_seq(const char *stream)
{
        return state_field(stream, "last_seq", NULL);
}

uint64_t co_messages(const char *stream, const char *filter)
{
        return filter ? state_field(stream, NULL, filter) : state_field(stream, "messages", NULL);
}

size_t co_msgs_on(const char *stream, const char *subject, co_msg **out)
{
        uint64_t last = co_last_seq(stream);
        size_t n = 0;
        co_msg *v = NULL;
        for (uint64_t seq = 1; seq <= last; seq++) {
                co_msg m;
                if (!co_msg_get(stream, seq, &m))
                        continue;
                if (subject && strcmp(m.subject, subject) != 0) {
                        co_msg_fini(&m);
                        continue;
                }
                v = realloc(v, (n + 1) * sizeof *v);
                v[n++] = m;
        }
        *out = v;
        return n;
}

void co_msgs_free(co_msg *m, size_t n)
{
        for (size_t i = 0; i < n; i++)
                co_msg_fini(&m[i]);
        free(m);
}

natsSubscription *co_request_send(const char *space, const char *agent, const char *body)
{
        char subject[512], reply[700];
        snprintf(subject, sizeof subject, "cotal.%s.ctl.delivery.%s", space, agent);
        natsInbox *uniq = NULL;
        natsInbox_Create(&uniq);
        snprintf(reply, sizeof reply, "%s.reply.%s", subject, strchr(uniq, '.') + 1);
        natsInbox_Destroy(uniq);
        natsSubscription *sub = NULL;
        ck_assert(natsConnection_SubscribeSync(&sub, tu_nc, reply) == NATS_OK);
        ck_assert(natsConnection_PublishRequest(tu_nc, subject, reply, body, (int)strlen(body)) == NATS_OK);
        natsConnection_Flush(tu_nc);
        return sub;
}

json_t *co_request_wait(natsSubscription *sub, int64_t timeout_ms)
{
        natsMsg *m = NULL;
        json_t *j = NULL;
        if (natsSubscription_NextMsg(&m, sub, timeout_ms) == NATS_OK) {
                j = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
                ck_assert_msg(j != NULL, "reply is not JSON");
                natsMsg_Destroy(m);
        }
        natsSubscription_Unsubscribe(sub);
        natsSubscription_Destroy(sub);
        return j;
}

json_t *co_request(const char *space, const char *agent, const char *body, const char *reply, const char *listen,
                   int64_t timeout_ms)
{
        char subject[512], own_reply[700];
        snprintf(subject, sizeof subject, "cotal.%s.ctl.delivery.%s", space, agent);
        if (!reply) {
                natsInbox *uniq = NULL;
                natsInbox_Create(&uniq);
                snprintf(own_reply, sizeof own_reply, "%s.reply.%s", subject, strchr(uniq, '.') + 1);
                natsInbox_Destroy(uniq);
                reply = own_reply;
        }
        natsSubscription *sub = NULL;
        ck_assert(natsConnection_SubscribeSync(&sub, tu_nc, listen ? listen : reply) == NATS_OK);
        ck_assert(natsConnection_PublishRequest(tu_nc, subject, reply, body, (int)strlen(body)) == NATS_OK);
        natsConnection_Flush(tu_nc);
        natsMsg *m = NULL;
        json_t *j = NULL;
        if (natsSubscription_NextMsg(&m, sub, timeout_ms) == NATS_OK) {
                j = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
                ck_assert_msg(j != NULL, "reply is not JSON");
                natsMsg_Destroy(m);
        }
        natsSubscription_Destroy(sub);
        return j;
}

/* auth: "--no-auth", or "--creds" followed by creds. */
static void spawn(co_daemon *dm, const char *space, const char *creds, const char *const *extra, char *const *env)
{
        const char *bin = getenv("COTAL_DELIVERYD");
        ck_assert_msg(bin, "COTAL_DELIVERYD is not set");
        char *argv[48];
        int n = 0;
        if (getenv("COTAL_TEST_VALGRIND")) {
                /* Memcheck: any error or a definite/indirect leak makes the
                 * exit status 99 instead of the daemon's own. */
                static char *const vg[] = {"/usr/bin/valgrind",
                                           "--quiet",
                                           "--error-exitcode=99",
                                           "--leak-check=full",
                                           "--show-leak-kinds=definite,indirect",
                                           "--errors-for-leak-kinds=definite,indirect",
                                           "--num-callers=30"};
                for (size_t i = 0; i < sizeof vg / sizeof vg[0]; i++)
                        argv[n++] = vg[i];
        }
        argv[n++] = (char *)bin;
        argv[n++] = "--space";
        argv[n++] = (char *)space;
        argv[n++] = "--server";
        argv[n++] = tu_servers ? (char *)tu_servers : tu_broker.url;
        if (creds) {
                argv[n++] = "--creds";
                argv[n++] = (char *)creds;
        } else {
                argv[n++] = "--no-auth";
        }
        argv[n++] = "--log-level";
        argv[n++] = "debug";
        for (int i = 0; extra && extra[i] && n < 47; i++)
                argv[n++] = (char *)extra[i];
        argv[n] = NULL;
        memset(dm, 0, sizeof *dm);
        ck_assert_int_eq(proc_spawn(&dm->p, argv, env), 0);
}

void co_daemon_spawn(co_daemon *dm, const char *space, const char *const *extra, char *const *env)
{
        spawn(dm, space, NULL, extra, env);
}

void co_daemon_spawn_creds(co_daemon *dm, const char *space, const char *creds, const char *const *extra,
                           char *const *env)
{
        spawn(dm, space, creds, extra, env);
}

static bool ready_or_exited(void *arg)
{
        co_daemon *dm = arg;
        if (proc_wait(&dm->p, 0) == 0)
                return true; /* exited */
        char *out = proc_stdout(&dm->p);
        bool ready = strstr(out, "delivery daemon up") != NULL;
        free(out);
        return ready;
}

bool co_daemon_wait_ready(co_daemon *dm, int64_t timeout_ms)
{
        if (!test_wait_until(ready_or_exited, dm, timeout_ms) || dm->p.pid == 0)
                return false;
        char *err = proc_stderr(&dm->p);
        const char *at = strstr(err, " as U");
        if (at)
                snprintf(dm->id, sizeof dm->id, "%.56s", at + 4);
        free(err);
        return true;
}

bool co_daemon_start(co_daemon *dm, const char *space, const char *const *extra)
{
        co_daemon_spawn(dm, space, extra, NULL);
        bool ok = co_daemon_wait_ready(dm, DAEMON_READY_TIMEOUT_MS);
        if (!ok)
                co_daemon_dump(dm);
        return ok;
}

int co_daemon_stop(co_daemon *dm)
{
        if (dm->p.pid > 0) {
                proc_signal(&dm->p, SIGTERM);
                if (proc_wait(&dm->p, 15000) < 0) {
                        co_daemon_dump(dm);
                        proc_signal(&dm->p, SIGKILL);
                        proc_wait(&dm->p, 5000);
                }
        }
        return dm->p.status;
}

void co_daemon_assert_healthy(co_daemon *dm)
{
        ck_assert_msg(proc_wait(&dm->p, 0) == -ETIMEDOUT, "the daemon exited with status %d", dm->p.status);
        char *err = proc_stderr(&dm->p);
        /* Under -Db_sanitize UBSan only prints: look for its report too. */
        const char *bad[] = {"\n<3>", "\n<2>", "runtime error:", "Sanitizer"};
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
                if (strstr(err, bad[i])) {
                        co_daemon_dump(dm);
                        free(err);
                        ck_abort_msg("daemon log contains \"%s\"", bad[i] + (bad[i][0] == '\n'));
                }
        free(err);
}

static int finished_status;

void co_daemon_finish(co_daemon *dm)
{
        if (dm->p.pid > 0) {
                int st = co_daemon_stop(dm);
                if (st != 0) {
                        fprintf(stderr, "the daemon exited %d on SIGTERM\n", st);
                        co_daemon_dump(dm);
                        finished_status = st;
                }
        }
        proc_destroy(&dm->p);
}

int co_run(Suite *s)
{
        int rc = tu_run(s);
        return rc ? rc : finished_status != 0;
}

void co_daemon_dump(const co_daemon *dm)
{
        char *err = proc_stderr(&dm->p), *out = proc_stdout(&dm->p);
        fprintf(stderr, "---- daemon stdout ----\n%s---- daemon stderr ----\n%s----\n", out, err);
        free(err);
        free(out);
}

typedef struct count_ctx {
        const char *stream, *subject;
        uint64_t want, seen;
} count_ctx;

static bool enough(void *arg)
{
        count_ctx *c = arg;
        c->seen = c->subject ? co_messages(c->stream, c->subject) : co_last_seq(c->stream);
        return c->seen >= c->want;
}

uint64_t co_wait_count(const char *stream, const char *subject, uint64_t want, int64_t timeout_ms)
{
        count_ctx c = {stream, subject, want, 0};
        (void)test_wait_until(enough, &c, timeout_ms);
        return c.seen;
}

int co_count_id(const char *stream, const char *subject, const char *id)
{
        co_msg *m = NULL;
        size_t n = co_msgs_on(stream, subject, &m);
        int c = 0;
        for (size_t i = 0; i < n; i++)
                c += m[i].msg_id && strcmp(m[i].msg_id, id) == 0;
        co_msgs_free(m, n);
        return c;
}

static co_tally tally(const char *space, const char *const *owners, size_t k, uint64_t gen, const char *prefix, int n,
                      bool report)
{
        co_tally t = {0};
        char stream[256];
        snprintf(stream, sizeof stream, "DLV_%s", space);
        size_t pl = strlen(prefix);
        int *seen = calloc((size_t)n + 1, sizeof *seen);
        ck_assert(seen);
        for (size_t o = 0; o < k; o++) {
                char subject[256], suffix[128];
                snprintf(subject, sizeof subject, "cotal.%s.dlv.%s", space, owners[o]);
                snprintf(suffix, sizeof suffix, ":%s:%llu", owners[o], (unsigned long long)gen);
                memset(seen, 0, ((size_t)n + 1) * sizeof *seen);
                co_msg *m = NULL;
                size_t got = co_msgs_on(stream, subject, &m);
                for (size_t i = 0; i < got; i++) {
                        const char *id = m[i].msg_id;
                        if (!id || strncmp(id, prefix, pl) != 0 || id[pl] != '-')
                                continue;
                        char *end = NULL;
                        long idx = strtol(id + pl + 1, &end, 10);
                        if (end == id + pl + 1 || idx < 0 || idx >= n || strcmp(end, suffix) != 0) {
                                t.foreign++;
                                continue;
                        }
                        if (seen[idx]++)
                                t.dup++;
                }
                for (int i = 0; i < n; i++) {
                        if (seen[i])
                                continue;
                        if (t.missing++ < 5 && report)
                                fprintf(stderr, "missing: %s-%d%s\n", prefix, i, suffix);
                }
                co_msgs_free(m, got);
        }
        free(seen);
        return t;
}

co_tally co_dlv_tally(const char *space, const char *const *owners, size_t k, uint64_t gen, const char *prefix, int n)
{
        return tally(space, owners, k, gen, prefix, n, false);
}

typedef struct settle_ctx {
        const char *space, *prefix;
        const char *const *owners;
        size_t k;
        uint64_t gen;
        int n;
        co_tally t;
} settle_ctx;

static bool settled(void *arg)
{
        settle_ctx *c = arg;
        c->t = co_dlv_tally(c->space, c->owners, c->k, c->gen, c->prefix, c->n);
        return c->t.missing == 0;
}

co_tally co_dlv_settle(const char *space, const char *const *owners, size_t k, uint64_t gen, const char *prefix, int n,
                       int64_t timeout_ms, int64_t *took_ms)
{
        settle_ctx c = {.space = space, .prefix = prefix, .owners = owners, .k = k, .gen = gen, .n = n};
        int64_t t0 = test_now_ms();
        if (!test_wait_until(settled, &c, timeout_ms))
                c.t = tally(space, owners, k, gen, prefix, n, true); /* names a few */
        int64_t took = test_now_ms() - t0;
        fprintf(stderr, "%s: %d messages x %zu owners settled in %lld ms: %d missing, %d duplicated, %d foreign\n",
                prefix, n, k, (long long)took, c.t.missing, c.t.dup, c.t.foreign);
        if (took_ms)
                *took_ms = took;
        return c.t;
}

typedef struct id_ctx {
        const char *stream, *subject, *id;
} id_ctx;

static bool has_id(void *arg)
{
        id_ctx *c = arg;
        return co_count_id(c->stream, c->subject, c->id) > 0;
}

bool co_wait_id(const char *stream, const char *subject, const char *id, int64_t timeout_ms)
{
        id_ctx c = {stream, subject, id};
        return test_wait_until(has_id, &c, timeout_ms);
}

typedef struct ack_ctx {
        const char *stream, *consumer;
        uint64_t seq;
} ack_ctx;

static bool acked(void *arg)
{
        ack_ctx *c = arg;
        json_t *r = tu_api("$JS.API.CONSUMER.INFO.%s.%s", c->stream, c->consumer, NULL);
        uint64_t floor = (uint64_t)json_integer_value(json_object_get(json_object_get(r, "ack_floor"), "stream_seq"));
        json_decref(r);
        return floor >= c->seq;
}

bool co_wait_acked(const char *stream, const char *consumer, uint64_t seq, int64_t timeout_ms)
{
        ack_ctx c = {stream, consumer, seq};
        return test_wait_until(acked, &c, timeout_ms);
}

static void freeze_cb(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *arg)
{
        (void)nc;
        (void)sub;
        co_freezer *f = arg;
        if (!atomic_exchange(&f->frozen, true))
                (void)kill(f->pid, f->sig);
        natsMsg_Destroy(msg);
}

void co_freeze_at_first(co_freezer *f, pid_t pid, const char *subject)
{
        co_signal_at_first(f, pid, SIGSTOP, subject);
}

void co_signal_at_first(co_freezer *f, pid_t pid, int sig, const char *subject)
{
        f->pid = pid;
        f->sig = sig;
        atomic_init(&f->frozen, false);
        ck_assert(natsConnection_Subscribe(&f->sub, tu_nc, subject, freeze_cb, f) == NATS_OK);
        ck_assert(natsConnection_Flush(tu_nc) == NATS_OK);
}

static bool is_frozen(void *arg)
{
        return atomic_load(&((co_freezer *)arg)->frozen);
}

bool co_frozen_within(co_freezer *f, int64_t timeout_ms)
{
        bool ok = test_wait_until(is_frozen, f, timeout_ms);
        /* Messages are still streaming in: see broker_sub_close. */
        broker_sub_close(tu_nc, &f->sub);
        return ok || atomic_load(&f->frozen);
}

typedef struct log_wait {
        co_daemon *dm;
        const char *text;
} log_wait;

static bool has_logged(void *arg)
{
        log_wait *w = arg;
        char *err = proc_stderr(&w->dm->p);
        bool found = strstr(err, w->text) != NULL;
        free(err);
        return found;
}

bool co_daemon_logged_within(co_daemon *dm, const char *text, int64_t timeout_ms)
{
        return test_wait_until(has_logged, &(log_wait){dm, text}, timeout_ms);
}

json_t *co_diag(const char *sock, char **raw)
{
        char *out = NULL;
        ck_assert_int_eq(tu_ctl(&out, NULL, (const char *[]){"diag", "--socket", sock, "--json", NULL}), 0);
        json_t *doc = json_loads(out, 0, NULL);
        ck_assert_msg(doc, "diag printed no JSON: %s", out);
        if (raw)
                *raw = out;
        else
                free(out);
        return doc;
}

char *co_json_text(const json_t *j)
{
        return j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : strdup("(no reply)");
}

json_t *co_member_record(const char *space, const char *channel, const char *owner)
{
        char bucket[256], key[512];
        snprintf(bucket, sizeof bucket, "cotal_members_%s", space);
        snprintf(key, sizeof key, "%s/%s", channel, owner);
        return co_kv_value(bucket, key, NULL);
}
