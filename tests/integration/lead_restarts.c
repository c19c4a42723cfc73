/* lead_restarts: issue 13 item 3. A daemon restarted (SIGTERM, started
 * again, as an operator or an upgrade would) in the middle of a burst must
 * count what INBOX_<S> already holds unread, or it writes an owner's next
 * lead on top of it and INBOX (1000 per owner, discard old) evicts unread
 * entries: measured before the fix, 133 and 3 of 100,000 deliveries lost.
 *
 * 20 offline durable members, 2,000 posts (4 senders, so CHAT's own 1000
 * per subject never evicts). The reader is slowed (reader-batch 16) so every
 * owner's backlog sits at the lead limit; the daemon is restarted four
 * times, each time once the new one has written 5,000 entries, then the
 * reader is sped up by SIGHUP. Counted by dedup id: every one of the
 * 40,000 (message, member) pairs is in DLV exactly once (its per-member
 * cap is lifted for the count), INBOX stored each entry once, and nothing
 * is left unread. */
#include "cotal.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S "lr"
#define INBOX "INBOX_" S
#define DLV "DLV_" S
#define K 20
#define N 2000
#define SENDERS 4
#define RESTARTS 4
#define STEP_ENTRIES 5000
#define WAIT_MS 240000

static co_daemon dm;
static char conf[300];
static char ids[K][57];

static void write_conf(const char *text)
{
        FILE *f = fopen(conf, "w");
        ck_assert_ptr_nonnull(f);
        fputs(text, f);
        fclose(f);
}

static void start(void)
{
        ck_assert(co_daemon_start(&dm, S, (const char *const[]){"--config", conf, NULL}));
}

static void setup(void)
{
        tu_broker_setup();
        co_provision(S);
        for (int k = 0; k < K; k++) {
                snprintf(ids[k], sizeof ids[k], "UMEMBER%02d%.47s", k,
                         "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
                co_acl(S, ids[k], "[\"general\"]");
                co_member(S, "general", ids[k], 0, 1, -1);
        }
}

static void teardown(void)
{
        co_daemon_finish(&dm);
        tu_broker_teardown();
}

typedef struct grown {
        uint64_t want;
} grown;

static bool inbox_reached(void *arg)
{
        return co_last_seq(INBOX) >= ((grown *)arg)->want;
}

START_TEST(restarts_during_a_burst_lose_nothing)
{
        snprintf(conf, sizeof conf, "%.200s/deliveryd.conf", tu_broker.dir);
        write_conf("reader-batch = 16\n");
        /* DLV keeps 1000 copies per member (§2); this test lifts that cap
         * so every copy stays readable and is counted by its dedup id. */
        json_t *cfg = tu_stream_config(DLV);
        json_object_set_new(cfg, "max_msgs_per_subject", json_integer(-1));
        json_t *up = tu_api("$JS.API.STREAM.UPDATE.%s%s", DLV, "", cfg);
        ck_assert_ptr_null(json_object_get(up, "error"));
        json_decref(up);
        start();
        /* The burst, as agents publish it (JetStream, one id each). */
        char subject[256], body[512], id[32], sender[57];
        jsCtx *js = NULL;
        ck_assert(natsConnection_JetStream(&js, tu_nc, NULL) == NATS_OK);
        for (int i = 0; i < N; i++) {
                snprintf(id, sizeof id, "r-%d", i);
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
        ck_assert_uint_eq(co_last_seq("CHAT_" S), N);

        /* Each daemon writes STEP_ENTRIES new entries, then is replaced:
         * the successor finds every owner near its lead, unread. */
        for (int r = 0; r < RESTARTS; r++) {
                grown g = {co_last_seq(INBOX) + STEP_ENTRIES};
                if (!test_wait_until(inbox_reached, &g, WAIT_MS)) {
                        co_daemon_dump(&dm);
                        ck_abort_msg("restart %d: INBOX stayed at %llu entries", r,
                                     (unsigned long long)co_last_seq(INBOX));
                }
                ck_assert_msg(co_last_seq(DLV) < (uint64_t)N * K, "the burst was over before restart %d", r);
                ck_assert_int_eq(co_daemon_stop(&dm), 0);
                proc_destroy(&dm.p);
                start();
        }
        /* Let the reader run at full speed to finish. */
        write_conf("reader-batch = 256\n");
        proc_signal(&dm.p, SIGHUP);
        uint64_t stored = co_wait_count(DLV, NULL, (uint64_t)N * K, WAIT_MS);
        /* Every (message, member) pair exactly once, by dedup id. */
        static unsigned char seen[K][N];
        memset(seen, 0, sizeof seen);
        int foreign = 0, missing = 0, dup = 0;
        for (uint64_t q = 1; q <= co_last_seq(DLV); q++) {
                co_msg m;
                if (!co_msg_get(DLV, q, &m))
                        continue;
                int i = -1, k = -1;
                if (m.msg_id && sscanf(m.msg_id, "r-%d:UMEMBER%d", &i, &k) == 2 && i >= 0 && i < N && k >= 0 && k < K)
                        seen[k][i]++;
                else
                        foreign++;
                co_msg_fini(&m);
        }
        for (int k = 0; k < K; k++)
                for (int i = 0; i < N; i++) {
                        if (seen[k][i] == 0 && missing++ < 20)
                                fprintf(stderr, "missing: r-%d for member %d\n", i, k);
                        dup += seen[k][i] > 1;
                }
        if (missing)
                co_daemon_dump(&dm);
        ck_assert_msg(missing == 0 && dup == 0 && foreign == 0,
                      "%d pairs missing (evicted unread?), %d duplicated, %d foreign; %llu copies stored", missing, dup,
                      foreign, (unsigned long long)stored);
        ck_assert_uint_eq(co_last_seq(INBOX), (uint64_t)N * K);
        ck_assert(co_wait_acked(INBOX, "reader", (uint64_t)N * K, WAIT_MS));
        json_t *r = tu_api("$JS.API.CONSUMER.INFO.%s.%s", INBOX, "reader", NULL);
        ck_assert_int_eq(json_integer_value(json_object_get(r, "num_pending")), 0);
        ck_assert_int_eq(json_integer_value(json_object_get(r, "num_ack_pending")), 0);
        json_decref(r);
        fprintf(stderr, "restarts: %d messages x %d members through %d restarts: %llu entries, %llu copies\n", N, K,
                RESTARTS, (unsigned long long)co_last_seq(INBOX), (unsigned long long)stored);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("lead_restarts");
        TCase *tc = tcase_create("restarts");
        tcase_add_unchecked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 360);
        tcase_add_test(tc, restarts_during_a_burst_lose_nothing);
        suite_add_tcase(s, tc);
        return co_run(s);
}
