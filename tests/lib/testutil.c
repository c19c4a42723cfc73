/* testutil: broker fixture and helpers for the integration tests. */
#include "testutil.h"

#include "broker.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

natsd tu_broker;
natsConnection *tu_nc;
const char *tu_ctl_creds;
const char *tu_servers;

void tu_broker_setup(void)
{
        if (!natsd_available()) {
                fprintf(stderr, "%s not found: skipping\n", natsd_binary());
                exit(NATSD_SKIP);
        }
        int r = natsd_start(&tu_broker, NULL);
        if (r < 0) {
                fprintf(stderr, "cannot start nats-server: %s (log: %s)\n", strerror(-r), tu_broker.log);
                exit(1);
        }
        if (natsConnection_ConnectTo(&tu_nc, tu_broker.url) != NATS_OK) {
                fprintf(stderr, "cannot connect to %s\n", tu_broker.url);
                natsd_destroy(&tu_broker);
                exit(1);
        }
}

void tu_broker_teardown(void)
{
        if (tu_nc) {
                natsConnection_Close(tu_nc);
                natsConnection_Destroy(tu_nc);
                tu_nc = NULL;
        }
        natsd_destroy(&tu_broker);
}

void tu_broker_setup_conf(const char *conf)
{
        if (!natsd_available()) {
                fprintf(stderr, "%s not found: skipping\n", natsd_binary());
                exit(NATSD_SKIP);
        }
        int r = natsd_start(&tu_broker, conf);
        if (r < 0) {
                fprintf(stderr, "cannot start nats-server: %s (log: %s)\n", strerror(-r), tu_broker.log);
                exit(1);
        }
}

natsStatus tu_connect_creds(natsConnection **nc, const char *creds, natsErrHandler err_cb, void *closure)
{
        /* The daemon's own connection setup, so the tests get its retry
         * of a connect refused for authentication (see broker_connect). */
        broker_config bc = {
                .servers = tu_broker.url,
                .creds_file = creds,
                .name = "cotal-test",
                .reconnect = true,
                .on_error = err_cb,
                .cb_arg = closure,
        };
        char err[512];
        int r = broker_connect(&bc, nc, err, sizeof err);
        if (r < 0)
                fprintf(stderr, "connect with creds %s: %s\n", creds, err);
        return r == 0 ? NATS_OK : r == -EACCES ? NATS_CONNECTION_AUTH_FAILED : NATS_ERR;
}

int tu_ctl(char **out, char **err, const char *const *args)
{
        const char *ctl = getenv("COTAL_DELIVERYCTL");
        ck_assert_msg(ctl, "COTAL_DELIVERYCTL is not set");
        char *argv[64];
        int n = 0;
        argv[n++] = (char *)ctl;
        argv[n++] = (char *)"--server";
        argv[n++] = tu_servers ? (char *)tu_servers : tu_broker.url;
        if (tu_ctl_creds) {
                argv[n++] = (char *)"--creds";
                argv[n++] = (char *)tu_ctl_creds;
        }
        for (int i = 0; args[i] && n < 63; i++)
                argv[n++] = (char *)args[i];
        argv[n] = NULL;
        proc p;
        int st = proc_run(&p, argv, NULL, CTL_TIMEOUT_MS);
        if (out)
                *out = proc_stdout(&p);
        if (err)
                *err = proc_stderr(&p);
        proc_destroy(&p);
        ck_assert_msg(st >= 0, "cotal-deliveryctl did not finish in time");
        return st;
}

json_t *tu_api(const char *fmt, const char *a, const char *b, json_t *body)
{
        char subject[512];
        /* fmt is always a literal with two %s at the call sites. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        snprintf(subject, sizeof subject, fmt, a, b);
#pragma GCC diagnostic pop
        char *payload = body ? json_dumps(body, JSON_COMPACT) : NULL;
        json_decref(body);
        natsMsg *reply = NULL;
        natsStatus s =
                natsConnection_Request(&reply, tu_nc, subject, payload, payload ? (int)strlen(payload) : 0, 5000);
        free(payload);
        ck_assert_msg(s == NATS_OK, "request %s failed: %s", subject, natsStatus_GetText(s));
        json_t *j = json_loadb(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply), 0, NULL);
        natsMsg_Destroy(reply);
        ck_assert_msg(j != NULL, "reply to %s is not JSON", subject);
        return j;
}

json_t *tu_stream_config(const char *name)
{
        json_t *info = tu_api("$JS.API.STREAM.INFO.%s%s", name, "", NULL);
        json_t *cfg = json_incref(json_object_get(info, "config"));
        json_decref(info);
        return cfg;
}

void tu_assert_fields(const json_t *want, const json_t *have, const char *what)
{
        ck_assert_msg(have != NULL, "%s: missing", what);
        const char *key;
        json_t *w;
        json_object_foreach ((json_t *)want, key, w) {
                json_t *h = json_object_get(have, key);
                char *ws = json_dumps(w, JSON_ENCODE_ANY | JSON_COMPACT);
                char *hs = h ? json_dumps(h, JSON_ENCODE_ANY | JSON_COMPACT) : strdup("(absent)");
                bool eq = h && json_equal(w, h);
                if (!eq)
                        ck_abort_msg("%s: field %s: want %s, have %s", what, key, ws, hs);
                free(ws);
                free(hs);
        }
}

size_t tu_lines(const char *s, char ***lines)
{
        size_t n = 0, cap = 8;
        char **v = malloc(cap * sizeof *v);
        while (s && *s) {
                const char *e = strchr(s, '\n');
                size_t len = e ? (size_t)(e - s) : strlen(s);
                if (n == cap)
                        v = realloc(v, (cap *= 2) * sizeof *v);
                v[n++] = strndup(s, len);
                s = e ? e + 1 : s + len;
        }
        *lines = v;
        return n;
}

void tu_lines_free(char **lines, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(lines[i]);
        free(lines);
}

json_t *tu_parse_line(const char *line)
{
        json_error_t e;
        json_t *j = json_loads(line, 0, &e);
        ck_assert_msg(j != NULL, "not JSON: \"%s\": %s", line, e.text);
        return j;
}

uint64_t tu_kv_put(const char *bucket, const char *key, const char *value)
{
        char subject[512];
        int n = snprintf(subject, sizeof subject, "$KV.%s.%s", bucket, key);
        ck_assert_msg(n > 0 && (size_t)n < sizeof subject, "tu_kv_put: key too long for the fixture");
        jsCtx *js = NULL;
        ck_assert(natsConnection_JetStream(&js, tu_nc, NULL) == NATS_OK);
        jsPubAck *pa = NULL;
        jsErrCode jerr = 0;
        natsStatus s = js_Publish(&pa, js, subject, value, (int)strlen(value), NULL, &jerr);
        ck_assert_msg(s == NATS_OK, "put %s failed: %s (%d)", subject, natsStatus_GetText(s), (int)jerr);
        uint64_t seq = pa->Sequence;
        jsPubAck_Destroy(pa);
        jsCtx_Destroy(js);
        return seq;
}

static void (*guard_fn)(void *arg);
static void *guard_arg;

START_TEST(guard_step)
{
        guard_fn(guard_arg);
}
END_TEST

int tu_guard(void (*fn)(void *arg), void *arg, char *why, size_t why_size)
{
        guard_fn = fn;
        guard_arg = arg;
        Suite *suite = suite_create("guard");
        TCase *tc = tcase_create("step");
        tcase_add_test(tc, guard_step);
        suite_add_tcase(suite, tc);
        SRunner *sr = srunner_create(suite);
        srunner_set_fork_status(sr, CK_NOFORK);
        srunner_run_all(sr, CK_SILENT);
        int failed = srunner_ntests_failed(sr);
        if (failed && why && why_size) {
                TestResult **tr = srunner_failures(sr);
                snprintf(why, why_size, "%s:%d: %s", tr_lfile(tr[0]), tr_lno(tr[0]), tr_msg(tr[0]));
                free(tr);
        }
        srunner_free(sr);
        return failed ? -EIO : 0;
}

int tu_run(Suite *s)
{
        SRunner *sr = srunner_create(s);
        srunner_set_fork_status(sr, CK_NOFORK);
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        nats_CloseAndWait(2000);
        return failed ? 1 : 0;
}
