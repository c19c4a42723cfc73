/* operator_mode: nats-server in operator (JWT) mode, trusting an operator,
 * a system account and a JetStream account that tests/lib/jwt.c made on
 * the fly. A user's creds file connects and stores a message in a stream;
 * a user whose JWT does not allow a subject is told so and the stream
 * never gets the message; a user issued by an account the server does not
 * know is refused, as are an expired user and a connection without creds. */
#include "jwt.h"
#include "testutil.h"

#include "creds.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STREAM "ORDERS"
#define ASYNC_ERROR_TIMEOUT_MS 5000

static jwt_chain chain;

static void setup(void)
{
        char *conf = jwt_chain_conf(&chain);
        ck_assert_ptr_nonnull(conf);
        tu_broker_setup_conf(conf);
        free(conf);
}

static void teardown(void)
{
        tu_broker_teardown();
}

/* Makes a user issued by acct and writes its creds file into the broker's
 * temporary directory (removed with it); path gets the file name. */
static void make_user(char *path, size_t size, jwt_key *user, const jwt_key *acct, const char *name,
                      const jwt_user_perms *perms)
{
        ck_assert(jwt_key_new(user, 'U'));
        char *token = jwt_user(acct, user, name, perms);
        ck_assert(token);
        int n = snprintf(path, size, "%s/%s.creds", tu_broker.dir, name);
        ck_assert(n > 0 && (size_t)n < size);
        ck_assert_int_eq(jwt_write_creds(path, token, user), 0);
        free(token);
}

static void add_stream(jsCtx *js)
{
        const char *subjects[] = {"orders.>"};
        jsStreamConfig cfg;
        jsStreamConfig_Init(&cfg);
        cfg.Name = STREAM;
        cfg.Subjects = subjects;
        cfg.SubjectsLen = 1;
        cfg.Storage = js_MemoryStorage;
        jsStreamInfo *si = NULL;
        jsErrCode jerr = 0;
        natsStatus s = js_AddStream(&si, js, &cfg, NULL, &jerr);
        ck_assert_msg(s == NATS_OK, "add stream: %s (%d)", natsStatus_GetText(s), (int)jerr);
        jsStreamInfo_Destroy(si);
}

static uint64_t stream_msgs(jsCtx *js)
{
        jsStreamInfo *si = NULL;
        jsErrCode jerr = 0;
        natsStatus s = js_GetStreamInfo(&si, js, STREAM, NULL, &jerr);
        ck_assert_msg(s == NATS_OK, "stream info: %s (%d)", natsStatus_GetText(s), (int)jerr);
        uint64_t n = si->State.Msgs;
        jsStreamInfo_Destroy(si);
        return n;
}

static uint64_t js_publish(jsCtx *js, const char *subject, const char *data)
{
        jsPubAck *pa = NULL;
        jsErrCode jerr = 0;
        natsStatus s = js_Publish(&pa, js, subject, data, (int)strlen(data), NULL, &jerr);
        ck_assert_msg(s == NATS_OK, "publish %s: %s (%d)", subject, natsStatus_GetText(s), (int)jerr);
        ck_assert_str_eq(pa->Stream, STREAM);
        uint64_t seq = pa->Sequence;
        jsPubAck_Destroy(pa);
        return seq;
}

static void close_conn(natsConnection *nc, jsCtx *js)
{
        jsCtx_Destroy(js);
        natsConnection_Close(nc);
        natsConnection_Destroy(nc);
}

START_TEST(creds_file_connects_and_uses_jetstream)
{
        char path[512];
        jwt_key worker;
        make_user(path, sizeof path, &worker, &chain.app, "worker", NULL);

        /* The daemon's own creds reader accepts the file (it also insists
         * on mode 0600) and finds the user's public key in it. */
        char *id = NULL, err[256] = "";
        ck_assert_msg(creds_identity(path, &id, err, sizeof err) == 0, "creds_identity: %s", err);
        ck_assert_str_eq(id, worker.pub);
        free(id);

        natsConnection *nc = NULL;
        natsStatus s = tu_connect_creds(&nc, path, NULL, NULL);
        ck_assert_msg(s == NATS_OK, "connect with creds: %s (log: %s)", natsStatus_GetText(s), tu_broker.log);
        jsCtx *js = NULL;
        ck_assert(natsConnection_JetStream(&js, nc, NULL) == NATS_OK);
        add_stream(js);
        ck_assert_uint_eq(js_publish(js, "orders.created", "first"), 1);

        ck_assert_uint_eq(stream_msgs(js), 1);
        natsMsg *m = NULL;
        jsErrCode jerr = 0;
        ck_assert(js_GetMsg(&m, js, STREAM, 1, NULL, &jerr) == NATS_OK);
        ck_assert_str_eq(natsMsg_GetSubject(m), "orders.created");
        ck_assert_int_eq(natsMsg_GetDataLength(m), 5);
        ck_assert(memcmp(natsMsg_GetData(m), "first", 5) == 0);
        natsMsg_Destroy(m);
        close_conn(nc, js);
}
END_TEST

/* Set on cnats' callback thread, read by the test thread. */
static _Atomic natsStatus async_error;

static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
        atomic_store(&async_error, err);
}

static bool permission_denied(void *arg)
{
        return atomic_load(&async_error) == NATS_NOT_PERMITTED;
}

START_TEST(pub_outside_the_allow_list_is_refused)
{
        char path[512];
        jwt_key clerk;
        /* JetStream API for the stream and the acks; one order subject. */
        const char *const pub_allow[] = {"$JS.API.>", "orders.created", NULL};
        jwt_user_perms perms = {.pub_allow = pub_allow};
        make_user(path, sizeof path, &clerk, &chain.app, "clerk", &perms);

        atomic_store(&async_error, NATS_OK);
        natsConnection *nc = NULL;
        natsStatus s = tu_connect_creds(&nc, path, on_error, NULL);
        ck_assert_msg(s == NATS_OK, "connect with creds: %s", natsStatus_GetText(s));
        jsCtx *js = NULL;
        ck_assert(natsConnection_JetStream(&js, nc, NULL) == NATS_OK);
        add_stream(js);

        ck_assert(natsConnection_PublishString(nc, "orders.refund", "forbidden") == NATS_OK);
        ck_assert(natsConnection_Flush(nc) == NATS_OK);
        ck_assert_msg(test_wait_until(permission_denied, NULL, ASYNC_ERROR_TIMEOUT_MS),
                      "no permissions violation reported (last async error: %s)",
                      natsStatus_GetText(atomic_load(&async_error)));
        const char *text = NULL;
        ck_assert_int_eq(natsConnection_GetLastError(nc, &text), NATS_NOT_PERMITTED);
        ck_assert_msg(strstr(text, "orders.refund") != NULL, "last error: %s", text);

        /* The server handles one client's messages in order, so the refused
         * message would have taken sequence 1 had it been stored. */
        ck_assert_uint_eq(js_publish(js, "orders.created", "allowed"), 1);
        ck_assert_uint_eq(stream_msgs(js), 1);
        natsMsg *m = NULL;
        jsErrCode jerr = 0;
        ck_assert_int_eq(js_GetLastMsg(&m, js, STREAM, "orders.refund", NULL, &jerr), NATS_NOT_FOUND);
        ck_assert_ptr_null(m);
        close_conn(nc, js);
}
END_TEST

START_TEST(unknown_account_expired_user_and_no_creds_are_refused)
{
        char path[512], rogue_path[512], expired_path[512];
        jwt_key user, rogue_acct, rogue_user, expired_user;
        make_user(path, sizeof path, &user, &chain.app, "known", NULL);
        /* A well-formed account the operator never signed for the server. */
        ck_assert(jwt_key_new(&rogue_acct, 'A'));
        make_user(rogue_path, sizeof rogue_path, &rogue_user, &rogue_acct, "rogue", NULL);
        jwt_user_perms lapsed = {.expires = (int64_t)time(NULL) - 60};
        make_user(expired_path, sizeof expired_path, &expired_user, &chain.app, "expired", &lapsed);

        natsConnection *nc = NULL;
        natsStatus s = tu_connect_creds(&nc, rogue_path, NULL, NULL);
        ck_assert_msg(s == NATS_CONNECTION_AUTH_FAILED, "rogue user: want an authorization violation, got %s",
                      natsStatus_GetText(s));
        ck_assert_ptr_null(nc);

        s = tu_connect_creds(&nc, expired_path, NULL, NULL);
        ck_assert_msg(s == NATS_CONNECTION_AUTH_FAILED, "expired user: want an authorization violation, got %s",
                      natsStatus_GetText(s));
        ck_assert_ptr_null(nc);

        s = natsConnection_ConnectTo(&nc, tu_broker.url);
        ck_assert_msg(s == NATS_CONNECTION_AUTH_FAILED, "no creds: want an authorization violation, got %s",
                      natsStatus_GetText(s));
        ck_assert_ptr_null(nc);

        /* The same server takes a current user of a known account: the
         * refusals above are about the account, the expiry and the
         * missing creds. */
        s = tu_connect_creds(&nc, path, NULL, NULL);
        ck_assert_msg(s == NATS_OK, "known user: %s", natsStatus_GetText(s));
        close_conn(nc, NULL);
}
END_TEST

static Suite *suite(void)
{
        Suite *s = suite_create("operator_mode");
        TCase *tc = tcase_create("operator_mode");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, creds_file_connects_and_uses_jetstream);
        tcase_add_test(tc, pub_outside_the_allow_list_is_refused);
        tcase_add_test(tc, unknown_account_expired_user_and_no_creds_are_refused);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        return tu_run(suite());
}
