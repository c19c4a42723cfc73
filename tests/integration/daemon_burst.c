/* daemon_burst: a burst of 5,000 chat messages (10 senders x 500,
 * interleaved) to a channel with 20 durable members. Every member's dlv subject must receive all 5,000 (counted by
 * the DLV stream's sequence: DLV also keeps only 1,000 per subject) and
 * nothing may be evicted from INBOX_<S> unread on the way: the fan-out
 * bounds its lead over the reader (E1). Exactly N x K entries are written
 * and N x K copies delivered: no loss, no duplicate. (CHAT_<S> keeps 1,000
 * messages per sender-and-channel subject, §2: one sender bursting more
 * than that faster than any fan-out drains them loses the oldest at the
 * chat stream itself, before a daemon could see them; hence 10 senders.) */
#include "cotal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S "bu"
#define N 5000
#define K 20
#define SENDERS 10
#define DRAIN_MS 240000

static co_daemon dm;
static char ids[K][57];

static void setup(void)
{
        tu_broker_setup();
        co_provision(S);
        for (int k = 0; k < K; k++) {
                /* Member ids in nkey shape: U + 55 base32 characters. */
                snprintf(ids[k], sizeof ids[k], "UMEMBER%02d%.47s", k,
                         "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
                co_acl(S, ids[k], "[\"general\"]");
                co_member(S, "general", ids[k], 0, 1, -1);
        }
        ck_assert(co_daemon_start(&dm, S, NULL));
}

static void teardown(void)
{
        co_daemon_stop(&dm);
        proc_destroy(&dm.p);
        tu_broker_teardown();
}

START_TEST(burst_reaches_every_member_without_eviction)
{
        char subject[256], body[512], id[32], sender[57];
        jsCtx *js = NULL;
        ck_assert(natsConnection_JetStream(&js, tu_nc, NULL) == NATS_OK);
        int64_t t0 = test_now_ms();
        for (int i = 0; i < N; i++) {
                snprintf(id, sizeof id, "b-%d", i);
                snprintf(sender, sizeof sender, "USENDER%02d%.46s", i % SENDERS,
                         "SSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSS");
                snprintf(subject, sizeof subject, "cotal." S ".chat.%s.general", sender);
                int len = snprintf(body, sizeof body,
                                   "{\"id\":\"%s\",\"from\":{\"id\":\"%s\",\"name\":\"s\"},\"parts\":[]}", id, sender);
                jsPubOptions po;
                jsPubOptions_Init(&po);
                po.MsgId = id;
                ck_assert(js_PublishAsync(js, subject, body, len, &po) == NATS_OK);
        }
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = 60000;
        ck_assert(js_PublishAsyncComplete(js, &po) == NATS_OK);
        jsCtx_Destroy(js);
        int64_t t_pub = test_now_ms() - t0;
        ck_assert_uint_eq(co_last_seq("CHAT_" S), N);

        uint64_t delivered = co_wait_count("DLV_" S, NULL, (uint64_t)N * K, DRAIN_MS);
        int64_t t_all = test_now_ms() - t0;
        uint64_t written = co_last_seq("INBOX_" S);
        fprintf(stderr,
                "burst: %d messages x %d members: published in %lld ms, %llu entries written, %llu delivered "
                "in %lld ms (%.0f deliveries/s)\n",
                N, K, (long long)t_pub, (unsigned long long)written, (unsigned long long)delivered, (long long)t_all,
                (double)delivered * 1000.0 / (double)(t_all ? t_all : 1));
        ck_assert_uint_eq(delivered, (uint64_t)N * K);
        ck_assert_uint_eq(written, (uint64_t)N * K);
        /* Every member's subject holds its last 1000 and nothing twice:
         * the stream's sequence already proves N x K unique copies. */
        for (int k = 0; k < K; k += 7) {
                char dsubj[256];
                snprintf(dsubj, sizeof dsubj, "cotal." S ".dlv.%.56s", ids[k]);
                ck_assert_uint_eq(co_messages("DLV_" S, dsubj), 1000);
        }
        /* Both consumers are drained. */
        json_t *r = tu_api("$JS.API.CONSUMER.INFO.%s.%s", "INBOX_" S, "reader", NULL);
        ck_assert_int_eq(json_integer_value(json_object_get(r, "num_pending")), 0);
        json_decref(r);
        char *err = proc_stderr(&dm.p);
        int pauses = 0;
        for (const char *p = strstr(err, "Fan-out paused"); p; p = strstr(p + 1, "Fan-out paused"))
                pauses++;
        fprintf(stderr, "burst: the fan-out paused %d times for the reader\n", pauses);
        free(err);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("daemon_burst");
        TCase *tc = tcase_create("burst");
        tcase_add_unchecked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 300);
        tcase_add_test(tc, burst_reaches_every_member_without_eviction);
        suite_add_tcase(s, tc);
        return tu_run(s);
}
