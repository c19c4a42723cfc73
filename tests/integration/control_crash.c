/* control_crash: a daemon SIGKILLed in the middle of a join's catch-up
 * (PROTOCOL §8.6) loses nothing and duplicates nothing. The killed daemon's
 * lease stays held until its 30 s TTL expires (§9), so a restart is refused
 * (exit 1) until then; once a successor is up, the agent's retried join
 * finds the same pending record, copies the same window with the same
 * generation, and every history message reaches DLV exactly once (the
 * inbox and DLV duplicate windows collapse the copies made before the
 * kill). The successor also cleans up the dead daemon's catch-up consumer
 * and keeps delivering new posts. */
#include "cotal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S "ccr"
#define DLV "DLV_" S
#define INBOX "INBOX_" S
#define CHAT "CHAT_" S
#define MEMBERS_BUCKET "cotal_members_" S
#define DINBOX_BOB "cotal." S ".dinbox." BOB
#define DLV_BOB "cotal." S ".dlv." BOB
#define CHANNEL "crash.h"
/* Two senders, 450 posts each: below the 1000-per-subject retention of
 * CHAT (no eviction) and of Bob's inbox and DLV subjects. */
#define PER_SENDER 450
#define POSTS (2 * PER_SENDER)
#define BODY_PAD 4096 /* bytes of text per post: a catch-up worth killing */
#define WAIT_MS 20000
#define JOIN_MS 30000
#define RESTART_WITHIN_MS 45000 /* lease TTL 30 s + slack */
/* Entries the dead daemon's reader had fetched but not acked come back
 * only when their ack_wait (60 s, §3) expires. CI twice saw the first
 * entry still missing 75 s and 100 s after the kill (cause not found yet;
 * see the README's limits): allow a second ack_wait round, so the test
 * tells "late" from "lost". */
#define REDELIVERY_WITHIN_MS (2 * 60000 + 40000)

static co_daemon dm;

static void setup(void)
{
        tu_broker_setup();
        co_provision(S);
        co_acl(S, BOB, "[\"crash.>\"]");
        ck_assert_msg(co_daemon_start(&dm, S, NULL), "daemon did not become ready");
}

static void teardown(void)
{
        co_daemon_finish(&dm);
        tu_broker_teardown();
}

/* Publishes PER_SENDER padded posts from sender; returns the last seq. */
static uint64_t burst(const char *sender, const char *prefix)
{
        return co_chat_burst(S, sender, CHANNEL, prefix, PER_SENDER, BODY_PAD);
}

/* Message ids (Nats-Msg-Id) on subject, in stream order (next_by_subj). */
static size_t ids_on(const char *stream, const char *subject, char ***out)
{
        char **v = NULL;
        size_t n = 0;
        uint64_t seq = 1;
        for (int guard = 0; guard < 5000; guard++) {
                json_t *r = tu_api("$JS.API.STREAM.MSG.GET.%s%s", stream, "",
                                   json_pack("{s:I, s:s}", "seq", (json_int_t)seq, "next_by_subj", subject));
                uint64_t got = (uint64_t)json_integer_value(json_object_get(json_object_get(r, "message"), "seq"));
                json_decref(r);
                if (got == 0)
                        break;
                co_msg m;
                if (co_msg_get(stream, got, &m)) {
                        ck_assert_str_eq(m.subject, subject);
                        v = realloc(v, (n + 1) * sizeof *v);
                        v[n++] = strdup(m.msg_id ? m.msg_id : "(none)");
                        co_msg_fini(&m);
                }
                seq = got + 1;
        }
        *out = v;
        return n;
}

static void ids_free(char **v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(v[i]);
        free(v);
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every expected "<prefix>-<i>:<BOB>:1" exactly once, nothing else. */
static void expect_each_once(const char *stream, const char *subject)
{
        char **have = NULL;
        size_t n = ids_on(stream, subject, &have);
        char **want = calloc(POSTS, sizeof *want);
        for (int i = 0; i < POSTS; i++)
                ck_assert(asprintf(&want[i], "%s-%d:" BOB ":1", i < PER_SENDER ? "a" : "c", i % PER_SENDER) > 0);
        qsort(have, n, sizeof *have, cmp_str);
        qsort(want, POSTS, sizeof *want, cmp_str);
        for (size_t i = 1; i < n; i++)
                ck_assert_msg(strcmp(have[i - 1], have[i]) != 0, "%s holds %s twice", subject, have[i]);
        ck_assert_msg(n == POSTS, "%s holds %zu messages, want %d", subject, n, POSTS);
        for (size_t i = 0; i < n; i++)
                ck_assert_msg(strcmp(have[i], want[i]) == 0, "%s: unexpected %s (want %s)", subject, have[i], want[i]);
        ids_free(have, n);
        ids_free(want, POSTS);
}

/* The held lease lapsed (TTL) or was released. */
static bool lease_gone(void *arg)
{
        (void)arg;
        json_t *v = co_kv_value("cotal_delivery_" S, "lease.0", NULL);
        json_decref(v);
        return v == NULL;
}

START_TEST(sigkill_during_catch_up_then_retry_delivers_each_message_once)
{
        /* History the fan-out routes to nobody (no member yet). */
        uint64_t base = co_last_seq(CHAT);
        burst(ALICE, "a");
        uint64_t last = burst(CAROL, "c");
        ck_assert_uint_eq(last, base + POSTS);
        ck_assert(co_wait_acked(CHAT, "fanout", last, WAIT_MS));
        ck_assert_uint_eq(co_messages(INBOX, DINBOX_BOB), 0);

        /* An unfinished activation over all of it (a previous attempt died
         * after its commit), then the agent's join. */
        char value[1024];
        snprintf(value, sizeof value,
                 "{\"channel\":\"" CHANNEL "\",\"owner\":\"" BOB "\",\"state\":\"durable-active\",\"joinCursor\":%llu,"
                 "\"generation\":1,\"activated\":false,\"writerIdentity\":\"UDEADDAEMON\",\"updatedAt\":1}",
                 (unsigned long long)base);
        tu_kv_put(MEMBERS_BUCKET, CHANNEL "/" BOB, value);
        const char *subject = "cotal." S ".ctl.delivery." BOB;
        const char *reply = "cotal." S ".ctl.delivery." BOB ".reply.first";
        const char *body =
                "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"" CHANNEL "\"},\"from\":{\"id\":\"" BOB "\"}}";
        natsSubscription *sub = NULL;
        co_freezer fz;
        co_freeze_at_first(&fz, dm.p.pid, DINBOX_BOB);
        ck_assert(natsConnection_SubscribeSync(&sub, tu_nc, reply) == NATS_OK);
        ck_assert(natsConnection_PublishRequestString(tu_nc, subject, reply, body) == NATS_OK);
        ck_assert(natsConnection_Flush(tu_nc) == NATS_OK);

        /* Frozen at its first copy, then killed: mid-catch-up whatever the
         * machine's load. */
        ck_assert_msg(co_frozen_within(&fz, JOIN_MS), "the catch-up never started");
        ck_assert_int_eq(proc_signal(&dm.p, SIGKILL), 0);
        ck_assert_int_eq(proc_wait(&dm.p, 10000), 0);
        int64_t killed_at = test_now_ms();
        uint64_t at_kill = co_messages(INBOX, DINBOX_BOB);
        natsMsg *m = NULL;
        bool answered = natsSubscription_NextMsg(&m, sub, 200) == NATS_OK;
        if (m)
                natsMsg_Destroy(m);
        natsSubscription_Destroy(sub);
        json_t *rec = co_member_record(S, CHANNEL, BOB);
        bool activated = json_is_true(json_object_get(rec, "activated"));
        json_decref(rec);
        fprintf(stderr, "killed with %llu of %d entries copied (%s, record %s)\n", (unsigned long long)at_kill, POSTS,
                answered ? "already answered" : "unanswered", activated ? "activated" : "pending");
        /* The window this test is about: the kill landed mid-catch-up. */
        ck_assert_msg(at_kill < POSTS && !answered && !activated,
                      "the kill came too late (%llu of %d copied, answered %d, activated %d)",
                      (unsigned long long)at_kill, POSTS, answered, activated);

        /* §9: the dead daemon's lease stays until its TTL; a successor is
         * refused (exit 1) until then. Restart in a bounded loop. */
        proc_destroy(&dm.p);
        int64_t deadline = test_now_ms() + RESTART_WITHIN_MS;
        int attempts = 0, refused = 0;
        bool up = false;
        while (!up && test_now_ms() < deadline && attempts < 20) {
                attempts++;
                co_daemon_spawn(&dm, S, NULL, NULL);
                up = co_daemon_wait_ready(&dm, deadline - test_now_ms());
                if (up && dm.p.status < 0)
                        break;
                up = false;
                ck_assert_msg(dm.p.status == 1, "a refused successor exited %d, want 1", dm.p.status);
                refused++;
                proc_destroy(&dm.p);
                /* Back off until the held lease is gone (bounded). */
                (void)test_wait_until(lease_gone, NULL, deadline - test_now_ms());
        }
        ck_assert_msg(up, "no successor came up within %d ms (%d attempts)", RESTART_WITHIN_MS, attempts);
        ck_assert_msg(refused >= 1, "a successor started while the dead daemon's lease was live");

        /* The agent retries as §12 says (anything but durable:true is
         * retried): same generation, same window. The dead daemon left
         * entries it had fetched unacked; until their ack_wait runs out the
         * successor cannot tell them read, so the catch-up may have to wait
         * for them (E1) and an attempt may end "catch-up stopped". */
        int64_t t0 = test_now_ms();
        json_t *want = json_loads("{\"ok\":true,\"data\":{\"durable\":true,\"generation\":1}}", 0, NULL);
        json_t *r = NULL;
        int tries = 0;
        while (tries < 10 && test_now_ms() < killed_at + REDELIVERY_WITHIN_MS) {
                tries++;
                r = co_request(S, BOB, body, NULL, NULL, JOIN_MS);
                if (json_equal(r, want))
                        break;
                const char *err = json_string_value(json_object_get(r, "error"));
                ck_assert_msg(!r || (err && strstr(err, "catch-up stopped")), "retried join: %s", co_json_text(r));
                json_decref(r);
                r = NULL;
        }
        fprintf(stderr, "retried join: durable after %d attempt%s, %lld ms\n", tries, tries == 1 ? "" : "s",
                (long long)(test_now_ms() - t0));
        char *have = co_json_text(r);
        if (!json_equal(r, want))
                co_daemon_dump(&dm);
        ck_assert_msg(json_equal(r, want), "retried join: %s", have);
        free(have);
        json_decref(want);
        json_decref(r);
        rec = co_member_record(S, CHANNEL, BOB);
        ck_assert(json_is_true(json_object_get(rec, "activated")));
        ck_assert_int_eq(json_integer_value(json_object_get(rec, "generation")), 1);
        ck_assert_int_eq(json_integer_value(json_object_get(rec, "joinCursor")), (json_int_t)base);
        json_decref(rec);

        /* Exactly once in the inbox and in DLV. */
        ck_assert_uint_eq(co_messages(INBOX, DINBOX_BOB), POSTS);
        expect_each_once(INBOX, DINBOX_BOB);
        int64_t left = killed_at + REDELIVERY_WITHIN_MS - test_now_ms();
        uint64_t in_dlv = co_wait_count(DLV, DLV_BOB, POSTS, left > WAIT_MS ? left : WAIT_MS);
        /* The dead reader's entries: one ack_wait after their fetch,
         * unless nats-server 2.9.10 holds one back another (README,
         * "Pull requests, and a broker bug the daemon dodges"). */
        fprintf(stderr, "%llu of %d in DLV %lld ms after the kill\n", (unsigned long long)in_dlv, POSTS,
                (long long)(test_now_ms() - killed_at));
        if (in_dlv != POSTS)
                co_daemon_dump(&dm);
        ck_assert_msg(in_dlv == POSTS, "%llu of %d in DLV %lld ms after the kill", (unsigned long long)in_dlv, POSTS,
                      (long long)(test_now_ms() - killed_at));
        expect_each_once(DLV, DLV_BOB);

        /* The dead daemon's catch-up consumer is gone. */
        json_t *names = tu_api("$JS.API.CONSUMER.NAMES.%s%s", CHAT, "", NULL);
        size_t i;
        json_t *v;
        json_array_foreach (json_object_get(names, "consumers"), i, v)
                ck_assert_msg(strcmp(json_string_value(v), "fanout") == 0, "consumer %s left on %s",
                              json_string_value(v), CHAT);
        json_decref(names);

        /* And the successor keeps delivering. */
        co_chat(S, ALICE, CHANNEL, "after-1", NULL);
        ck_assert(co_wait_id(DLV, DLV_BOB, "after-1:" BOB ":1", WAIT_MS));
}
END_TEST

/* Last: the daemon is still up, and its log has no error-priority line
 * and no sanitizer report (under -Db_sanitize UBSan only prints). */
START_TEST(the_daemon_stayed_up_and_its_log_is_clean)
{
        co_daemon_assert_healthy(&dm);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("control_crash");
        TCase *tc = tcase_create("control");
        tcase_add_unchecked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 260);
        tcase_add_test(tc, sigkill_during_catch_up_then_retry_delivers_each_message_once);
        tcase_add_test(tc, the_daemon_stayed_up_and_its_log_is_clean);
        suite_add_tcase(s, tc);
        return co_run(s);
}
