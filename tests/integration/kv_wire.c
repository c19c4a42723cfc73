/* kv_wire: the KV access rules of PROTOCOL §4.2 on a real broker, with a
 * spy connection watching what actually goes on the wire: reads use
 * STREAM.MSG.GET (never DIRECT.GET), invalid keys are "absent" without a
 * request, create/update/delete carry the exact CAS headers, a key whose
 * latest entry is a DEL/PURGE marker can be created again, listing uses
 * STREAM.INFO (no unnamed consumer), and watches use a named consumer on
 * the extended create subject with a deliver subject under our prefix. */
#include "testutil.h"

#include "broker.h"
#include "kv.h"
#include "kv_watch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUCKET "cotal_members_kvw"
#define STREAM "KV_" BUCKET

static natsConnection *spy_nc;
static natsSubscription *spy_api, *spy_kv;
static kv_bucket kv;

static void setup(void)
{
        tu_broker_setup();
        const char *args[] = {"--space", "kvw", "provision", NULL};
        ck_assert_int_eq(tu_ctl(NULL, NULL, args), 0);
        ck_assert(natsConnection_ConnectTo(&spy_nc, tu_broker.url) == NATS_OK);
        ck_assert(natsConnection_SubscribeSync(&spy_api, spy_nc, "$JS.API.>") == NATS_OK);
        ck_assert(natsConnection_SubscribeSync(&spy_kv, spy_nc, "$KV.>") == NATS_OK);
        ck_assert(natsConnection_Flush(spy_nc) == NATS_OK);
        ck_assert_int_eq(kv_bucket_init(&kv, tu_nc, BUCKET), 0);
}

static void teardown(void)
{
        kv_bucket_fini(&kv);
        natsSubscription_Destroy(spy_api);
        natsSubscription_Destroy(spy_kv);
        natsConnection_Destroy(spy_nc);
        tu_broker_teardown();
}

/* Drains what the spy saw so far; returns the subjects joined by '\n'. */
static char *spied(natsSubscription *sub, natsMsg **last)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        natsConnection_Flush(tu_nc);
        natsConnection_Flush(spy_nc);
        natsMsg *m = NULL;
        while (natsSubscription_NextMsg(&m, sub, 100) == NATS_OK) {
                fprintf(f, "%s\n", natsMsg_GetSubject(m));
                if (last) {
                        natsMsg_Destroy(*last);
                        *last = m;
                } else {
                        natsMsg_Destroy(m);
                }
        }
        fclose(f);
        return buf;
}

static void drain_spies(void)
{
        free(spied(spy_api, NULL));
        free(spied(spy_kv, NULL));
}

START_TEST(reads_use_msg_get_and_invalid_keys_are_absent)
{
        kv_entry e;
        drain_spies();
        ck_assert_int_eq(kv_get(&kv, "review/UNOBODY", &e), -ENOENT);
        char *s = spied(spy_api, NULL);
        ck_assert_str_eq(s, "$JS.API.STREAM.MSG.GET." STREAM "\n");
        free(s);

        /* §4.2: invalid keys read as absent, and nothing is sent. */
        const char *bad[] = {"a b", ".x", "x.", "", "a*b", "a>b", "caf\xc3\xa9"};
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
                ck_assert_int_eq(kv_get(&kv, bad[i], &e), -ENOENT);
        s = spied(spy_api, NULL);
        ck_assert_str_eq(s, "");
        free(s);

        uint64_t rev = tu_kv_put(BUCKET, "review/UA", "{\"x\":1}");
        ck_assert_int_eq(kv_get(&kv, "review/UA", &e), 0);
        ck_assert_int_eq(e.op, KV_OP_PUT);
        ck_assert_int_eq(e.revision, rev);
        ck_assert_str_eq(e.value, "{\"x\":1}");
        kv_entry_fini(&e);
        s = spied(spy_api, NULL);
        ck_assert_msg(!strstr(s, "DIRECT.GET"), "DIRECT.GET used: %s", s);
        free(s);
}
END_TEST

static const char *header(natsMsg *m, const char *key)
{
        const char *v = NULL;
        return natsMsgHeader_Get(m, key, &v) == NATS_OK ? v : NULL;
}

START_TEST(create_update_delete_carry_cas_headers)
{
        uint64_t r1 = 0, r2 = 0, r3 = 0;
        natsMsg *last = NULL;
        drain_spies();

        ck_assert_int_eq(kv_create(&kv, "k/one", "{\"v\":1}", 7, &r1), 0);
        free(spied(spy_kv, &last));
        ck_assert_str_eq(header(last, "Nats-Expected-Last-Subject-Sequence"), "0");
        ck_assert_ptr_null(header(last, "KV-Operation"));

        /* A live value: create fails and leaves it. */
        ck_assert_int_eq(kv_create(&kv, "k/one", "{\"v\":2}", 7, NULL), -EEXIST);
        kv_entry e;
        ck_assert_int_eq(kv_get(&kv, "k/one", &e), 0);
        ck_assert_str_eq(e.value, "{\"v\":1}");
        kv_entry_fini(&e);

        /* Stale update refused, current update accepted. */
        ck_assert_int_eq(kv_update(&kv, "k/one", "{\"v\":3}", 7, r1 + 100, NULL), -ESTALE);
        ck_assert_int_eq(kv_update(&kv, "k/one", "{\"v\":3}", 7, r1, &r2), 0);
        ck_assert_int_gt(r2, r1);
        free(spied(spy_kv, &last));
        char num[24];
        snprintf(num, sizeof num, "%llu", (unsigned long long)r1);
        ck_assert_str_eq(header(last, "Nats-Expected-Last-Subject-Sequence"), num);

        /* Conditional delete: stale refused (value intact), current works. */
        ck_assert_int_eq(kv_delete(&kv, "k/one", r1), -ESTALE);
        ck_assert_int_eq(kv_get(&kv, "k/one", &e), 0);
        ck_assert_int_eq(e.op, KV_OP_PUT);
        kv_entry_fini(&e);
        ck_assert_int_eq(kv_delete(&kv, "k/one", r2), 0);
        free(spied(spy_kv, &last));
        ck_assert_str_eq(header(last, "KV-Operation"), "DEL");
        snprintf(num, sizeof num, "%llu", (unsigned long long)r2);
        ck_assert_str_eq(header(last, "Nats-Expected-Last-Subject-Sequence"), num);
        ck_assert_int_eq(natsMsg_GetDataLength(last), 0);
        ck_assert_int_eq(kv_get(&kv, "k/one", &e), 0);
        ck_assert_int_eq(e.op, KV_OP_DEL);
        kv_entry_fini(&e);

        /* §4.2 create over a DEL marker: retried once against its seq. */
        ck_assert_int_eq(kv_create(&kv, "k/one", "{\"v\":4}", 7, &r3), 0);
        ck_assert_int_gt(r3, r2);
        ck_assert_int_eq(kv_get(&kv, "k/one", &e), 0);
        ck_assert_str_eq(e.value, "{\"v\":4}");
        kv_entry_fini(&e);

        /* ... and over a PURGE marker written by someone else. */
        natsMsg *m = NULL;
        natsMsg_Create(&m, "$KV." BUCKET ".k/one", NULL, NULL, 0);
        natsMsgHeader_Set(m, "KV-Operation", "PURGE");
        natsMsgHeader_Set(m, "Nats-Rollup", "sub");
        jsCtx *js = NULL;
        natsConnection_JetStream(&js, tu_nc, NULL);
        ck_assert(js_PublishMsg(NULL, js, m, NULL, NULL) == NATS_OK);
        natsMsg_Destroy(m);
        jsCtx_Destroy(js);
        ck_assert_int_eq(kv_create(&kv, "k/one", "{\"v\":5}", 7, NULL), 0);

        /* Unconditional delete has no expectation header. */
        ck_assert_int_eq(kv_delete(&kv, "k/one", 0), 0);
        free(spied(spy_kv, &last));
        ck_assert_ptr_null(header(last, "Nats-Expected-Last-Subject-Sequence"));
        natsMsg_Destroy(last);
}
END_TEST

START_TEST(listing_uses_stream_info_only)
{
        char key[64];
        for (int i = 0; i < 50; i++) {
                snprintf(key, sizeof key, "list/U%02d", i);
                tu_kv_put(BUCKET, key, "{}");
        }
        drain_spies();
        char **keys = NULL;
        size_t n = 0;
        ck_assert_int_eq(kv_keys(&kv, &keys, &n), 0);
        size_t listed = 0;
        for (size_t i = 0; i < n; i++)
                listed += strncmp(keys[i], "list/U", 6) == 0;
        ck_assert_int_eq(listed, 50);
        kv_keys_free(keys, n);
        char *s = spied(spy_api, NULL);
        ck_assert_str_eq(s, "$JS.API.STREAM.INFO." STREAM "\n");
        free(s);
}
END_TEST

START_TEST(watch_uses_a_named_consumer_and_sees_changes)
{
        tu_kv_put(BUCKET, "w/one", "{\"n\":1}");
        tu_kv_put(BUCKET, "w/one", "{\"n\":2}"); /* only the latest is replayed */
        tu_kv_put(BUCKET, "w/two", "{\"n\":3}");
        drain_spies();

        kv_watch w;
        ck_assert_int_eq(kv_watch_start(&w, tu_nc, BUCKET, "w.>", "kvw_test", "_INBOX_UDAEMON"), 0);
        natsMsg *create = NULL;
        char *s = spied(spy_api, &create);
        ck_assert_msg(strstr(s, "$JS.API.CONSUMER.CREATE." STREAM ".kvw_test.$KV." BUCKET ".w.>\n"),
                      "create subject: %s", s);
        free(s);
        json_t *body = json_loadb(natsMsg_GetData(create), (size_t)natsMsg_GetDataLength(create), 0, NULL);
        json_t *cfg = json_object_get(body, "config");
        ck_assert_str_eq(json_string_value(json_object_get(cfg, "name")), "kvw_test");
        ck_assert_ptr_null(json_object_get(cfg, "durable_name"));
        ck_assert_str_eq(json_string_value(json_object_get(cfg, "deliver_policy")), "last_per_subject");
        ck_assert_str_eq(json_string_value(json_object_get(cfg, "ack_policy")), "none");
        ck_assert(json_is_true(json_object_get(cfg, "flow_control")));
        ck_assert(json_is_true(json_object_get(cfg, "mem_storage")));
        ck_assert_int_eq(json_integer_value(json_object_get(cfg, "idle_heartbeat")), 5000000000LL);
        const char *deliver = json_string_value(json_object_get(cfg, "deliver_subject"));
        ck_assert_msg(deliver && strncmp(deliver, "_INBOX_UDAEMON.", 15) == 0, "deliver subject %s", deliver);
        json_decref(body);
        natsMsg_Destroy(create);

        /* Member keys contain '/', so a per-key filter is exercised by
         * lease_cli; the replay is checked on a whole-bucket watch. */
        kv_watch_stop(&w);
        ck_assert_int_eq(kv_watch_start(&w, tu_nc, BUCKET, ">", "kvw_all", "_INBOX_UDAEMON"), 0);
        int values = 0;
        bool saw_one = false;
        kv_watch_entry e;
        for (int i = 0; i < 1000; i++) {
                int r = kv_watch_next(&w, 5000, &e);
                if (r == -EAGAIN)
                        break;
                ck_assert_int_eq(r, 0);
                ck_assert(e.initial);
                if (strcmp(e.key, "w/one") == 0) {
                        ck_assert_str_eq(e.value, "{\"n\":2}");
                        saw_one = true;
                }
                values++;
                kv_watch_entry_fini(&e);
        }
        ck_assert(saw_one);
        ck_assert_int_gt(values, 1);

        /* Live changes: a put and a delete marker. */
        uint64_t rev = tu_kv_put(BUCKET, "w/three", "{\"n\":4}");
        ck_assert_int_eq(kv_watch_next(&w, 5000, &e), 0);
        ck_assert_str_eq(e.key, "w/three");
        ck_assert_int_eq(e.revision, rev);
        ck_assert(!e.initial);
        kv_watch_entry_fini(&e);
        ck_assert_int_eq(kv_delete(&kv, "w/three", 0), 0);
        ck_assert_int_eq(kv_watch_next(&w, 5000, &e), 0);
        ck_assert_str_eq(e.key, "w/three");
        ck_assert_int_eq(e.op, KV_OP_DEL);
        kv_watch_entry_fini(&e);

        /* An operator deletes the watch consumer: heartbeats stop, the
         * watch re-creates it and replays, then sees new changes. */
        json_decref(tu_api("$JS.API.CONSUMER.DELETE.%s.%s", STREAM, "kvw_all", NULL));
        unsigned restarts = w.restarts;
        rev = tu_kv_put(BUCKET, "w/four", "{\"n\":5}");
        bool seen = false;
        int64_t deadline = test_now_ms() + 30000;
        while (!seen && test_now_ms() < deadline) {
                int r = kv_watch_next(&w, 1000, &e);
                if (r == 0) {
                        seen = strcmp(e.key, "w/four") == 0 && e.revision == rev;
                        kv_watch_entry_fini(&e);
                }
        }
        ck_assert_msg(seen, "the watch did not recover after its consumer was deleted");
        ck_assert_uint_gt(w.restarts, restarts);
        kv_watch_stop(&w);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("kv_wire");
        TCase *tc = tcase_create("kv");
        tcase_add_unchecked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 90);
        tcase_add_test(tc, reads_use_msg_get_and_invalid_keys_are_absent);
        tcase_add_test(tc, create_update_delete_carry_cas_headers);
        tcase_add_test(tc, listing_uses_stream_info_only);
        tcase_add_test(tc, watch_uses_a_named_consumer_and_sees_changes);
        suite_add_tcase(s, tc);
        return tu_run(s);
}
