/* daemon_delivery: cotal-deliveryd against a real broker delivers what
 * PROTOCOL §6 and §7 say and nothing else: durable members inside their
 * interval and live @mentions get one dlv copy with the entry's dedup id
 * and the message as body; senders, non-members, out-of-interval and
 * ACL-less recipients get nothing; the reader re-checks ACL and interval
 * at read time (entries are written straight into the inbox here, as the
 * inbox is not trusted); unknown owners are retried then terminated at the
 * 10th delivery while the reader keeps going; malformed input is dropped. */
#include "cotal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S "dd"
#define DLV "DLV_" S
#define DLV_BOB "cotal." S ".dlv." BOB
#define DLV_CAROL "cotal." S ".dlv." CAROL
#define DLV_ALICE "cotal." S ".dlv." ALICE
#define WAIT_MS 15000

static co_daemon dm;

static void setup(void)
{
        tu_broker_setup();
        co_provision(S);
        co_acl(S, ALICE, "[\"general\"]");
        co_acl(S, BOB, "[\"general\",\"team.>\",\"random\"]");
        co_acl(S, CAROL, "[\"general\"]");
        co_presence(S, BOB, "Bob");
        co_presence(S, CAROL, "carol");
        tu_kv_put("cotal_channels_" S, "random", "{\"deliveryClass\":\"live\"}");
        ck_assert_msg(co_daemon_start(&dm, S, NULL), "daemon did not become ready");
}

static void teardown(void)
{
        co_daemon_finish(&dm);
        tu_broker_teardown();
}

/* The n-th (0-based) message on subject in DLV, asserting there are
 * exactly want of them. */
static void expect_dlv(const char *subject, size_t want, const char *const *ids)
{
        co_msg *m = NULL;
        size_t n = co_msgs_on(DLV, subject, &m);
        if (n != want) {
                co_daemon_dump(&dm);
                ck_abort_msg("%s: %zu messages, want %zu", subject, n, want);
        }
        for (size_t i = 0; ids && i < n; i++)
                ck_assert_str_eq(m[i].msg_id, ids[i]);
        co_msgs_free(m, n);
}

START_TEST(durable_members_get_one_copy_in_interval)
{
        uint64_t base = co_last_seq("CHAT_" S);
        co_member(S, "general", BOB, base, 3, -1);
        co_member(S, "general", ALICE, base, 1, -1);      /* the sender */
        co_member(S, "general", CAROL, base + 5, 2, -1);  /* joins later */
        co_member(S, "team.backend", CAROL, base, 1, -1); /* other channel */

        uint64_t seq = co_chat(S, ALICE, "general", "m-1", NULL);
        ck_assert_uint_eq(co_wait_count(DLV, DLV_BOB, 1, WAIT_MS), 1);

        co_msg *m = NULL;
        size_t n = co_msgs_on(DLV, DLV_BOB, &m);
        ck_assert_uint_eq(n, 1);
        ck_assert_str_eq(m[0].msg_id, "m-1:" BOB ":3"); /* §5.3 */
        ck_assert_ptr_nonnull(m[0].body);
        /* §5.3: the body is the chat message itself, unchanged. */
        ck_assert_str_eq(json_string_value(json_object_get(m[0].body, "id")), "m-1");
        ck_assert_str_eq(json_string_value(json_object_get(json_object_get(m[0].body, "from"), "id")), ALICE);
        ck_assert_ptr_null(json_object_get(m[0].body, "msg"));
        co_msgs_free(m, n);

        /* The inbox entry carried §5.2's envelope and dedup id. */
        n = co_msgs_on("INBOX_" S, "cotal." S ".dinbox." BOB, &m);
        ck_assert_uint_eq(n, 1);
        ck_assert_str_eq(m[0].msg_id, "m-1:" BOB ":3");
        ck_assert_str_eq(json_string_value(json_object_get(m[0].body, "reason")), "durable-channel");
        ck_assert_str_eq(json_string_value(json_object_get(m[0].body, "channel")), "general");
        ck_assert_int_eq(json_integer_value(json_object_get(m[0].body, "seq")), (json_int_t)seq);
        ck_assert_int_eq(json_integer_value(json_object_get(m[0].body, "generation")), 3);
        co_msgs_free(m, n);

        /* Nobody else: not the sender, not a later joiner. Checked after a
         * later message to Bob shows the pipeline has moved past m-1. */
        co_chat(S, CAROL, "team.backend", "m-2", NULL); /* Bob is no member there */
        co_chat(S, CAROL, "general", "m-3", NULL);
        ck_assert_uint_eq(co_wait_count(DLV, DLV_BOB, 2, WAIT_MS), 2);
        expect_dlv(DLV_ALICE, 1, (const char *const[]){"m-3:" ALICE ":1"});
        expect_dlv(DLV_CAROL, 0, NULL);
        expect_dlv(DLV_BOB, 2, (const char *const[]){"m-1:" BOB ":3", "m-3:" BOB ":3"});
}
END_TEST

START_TEST(leave_cursor_bounds_the_interval)
{
        uint64_t base = co_last_seq("CHAT_" S);
        /* Bob left team.a at base + 1: the message at base + 1 is his, the
         * one after it is not (§4.4 eligibility). */
        co_member(S, "team.a", BOB, base, 4, (int64_t)base + 1);
        co_chat(S, ALICE, "team.a", "l-1", NULL);
        co_chat(S, ALICE, "team.a", "l-2", NULL);
        co_member(S, "general", CAROL, 0, 7, -1);
        co_chat(S, ALICE, "general", "l-3", NULL);
        ck_assert(co_wait_id(DLV, DLV_CAROL, "l-3:" CAROL ":7", WAIT_MS));
        co_msg *m = NULL;
        size_t n = co_msgs_on(DLV, DLV_BOB, &m);
        int l1 = 0, l2 = 0;
        for (size_t i = 0; i < n; i++) {
                l1 += strcmp(m[i].msg_id, "l-1:" BOB ":4") == 0;
                l2 += strncmp(m[i].msg_id, "l-2:", 4) == 0;
        }
        co_msgs_free(m, n);
        ck_assert_int_eq(l1, 1);
        ck_assert_int_eq(l2, 0);
}
END_TEST

START_TEST(live_mentions_need_resolution_and_acl)
{
        /* "random" is live: only mentions route; Bob's ACL covers it,
         * Carol's does not; "nobody" resolves to no one. */
        co_member(S, "random", CAROL, 0, 1, -1); /* membership is ignored on live channels */
        co_chat(S, ALICE, "random", "r-1", "\"mentions\":[\"BOB\",\"carol\",\"nobody\",42,\"bob\"]");
        co_chat(S, ALICE, "random", "r-2", "\"mentions\":\"bob\""); /* not an array: none */
        co_chat(S, BOB, "random", "r-3", "\"mentions\":[\"bob\"]"); /* self-mention: none */
        co_member(S, "general", BOB, 0, 9, -1);
        co_chat(S, ALICE, "general", "r-4", NULL);
        /* r-4 comes after r-1..r-3 in the fan-out's order. */
        ck_assert(co_wait_id(DLV, DLV_BOB, "r-4:" BOB ":9", WAIT_MS));
        co_msg *m = NULL;
        size_t n = co_msgs_on(DLV, DLV_BOB, &m);
        int r1 = 0, other = 0, r4 = 0;
        for (size_t i = 0; i < n; i++) {
                r1 += strcmp(m[i].msg_id, "r-1:" BOB ":0") == 0;
                other += strncmp(m[i].msg_id, "r-2:", 4) == 0 || strncmp(m[i].msg_id, "r-3:", 4) == 0;
                r4 += strcmp(m[i].msg_id, "r-4:" BOB ":9") == 0;
        }
        co_msgs_free(m, n);
        ck_assert_int_eq(r1, 1); /* two mentions of bob: one copy */
        ck_assert_int_eq(other, 0);
        ck_assert_int_eq(r4, 1);
        n = co_msgs_on(DLV, DLV_CAROL, &m);
        /* Carol is mentioned on random, but her ACL does not cover it. */
        for (size_t i = 0; i < n; i++)
                ck_assert_msg(strncmp(m[i].msg_id, "r-1:", 4) != 0 && strncmp(m[i].msg_id, "r-2:", 4) != 0 &&
                                      strncmp(m[i].msg_id, "r-3:", 4) != 0,
                              "carol got %s", m[i].msg_id);
        co_msgs_free(m, n);
}
END_TEST

/* Writes an entry straight into the inbox, as a rogue or stale fan-out
 * would: the reader must judge it on the current KV state. */
static uint64_t inbox_entry(const char *owner, const char *channel, uint64_t chat_seq, const char *reason, uint64_t gen,
                            const char *msg_id)
{
        char subject[256], body[2048], id[256];
        snprintf(subject, sizeof subject, "cotal." S ".dinbox.%s", owner);
        snprintf(body, sizeof body,
                 "{\"msg\":{\"id\":\"%s\",\"from\":{\"id\":\"" ALICE "\",\"name\":\"alice\"},\"parts\":[]},"
                 "\"channel\":\"%s\",\"seq\":%llu,\"reason\":\"%s\",\"generation\":%llu}",
                 msg_id, channel, (unsigned long long)chat_seq, reason, (unsigned long long)gen);
        snprintf(id, sizeof id, "%s:%s:%llu", msg_id, owner, (unsigned long long)gen);
        return co_publish_raw(subject, id, body, strlen(body));
}

START_TEST(reader_rechecks_acl_and_interval_at_read_time)
{
        co_member(S, "team.x", BOB, 10, 2, -1);
        /* ACL narrowed after the (simulated) fan-out: dropped. */
        co_acl(S, BOB, "[\"general\"]");
        uint64_t a1_seq = inbox_entry(BOB, "team.x", 11, "durable-channel", 2, "a-1");
        ck_assert_msg(co_wait_acked("INBOX_" S, "reader", a1_seq, WAIT_MS), "the reader did not judge a-1");
        /* Out of interval, never a member, wrong generation window. */
        co_acl(S, BOB, "[\"general\",\"team.>\",\"random\"]");
        inbox_entry(BOB, "team.x", 10, "durable-channel", 2, "a-2"); /* seq == joinCursor */
        inbox_entry(BOB, "team.y", 50, "durable-channel", 1, "a-3"); /* no record */
        inbox_entry(BOB, "team.x", 12, "live-mention", 0, "a-4");    /* mention: ACL only */
        inbox_entry(BOB, "team.x", 13, "durable-channel", 2, "a-5"); /* fine, and last */
        ck_assert(co_wait_id(DLV, DLV_BOB, "a-5:" BOB ":2", WAIT_MS));
        co_msg *m = NULL;
        size_t n = co_msgs_on(DLV, DLV_BOB, &m);
        int a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0;
        for (size_t i = 0; i < n; i++) {
                a1 += strncmp(m[i].msg_id, "a-1:", 4) == 0;
                a2 += strncmp(m[i].msg_id, "a-2:", 4) == 0;
                a3 += strncmp(m[i].msg_id, "a-3:", 4) == 0;
                a4 += strcmp(m[i].msg_id, "a-4:" BOB ":0") == 0;
                a5 += strcmp(m[i].msg_id, "a-5:" BOB ":2") == 0;
        }
        co_msgs_free(m, n);
        ck_assert_int_eq(a1 + a2 + a3, 0);
        ck_assert_int_eq(a4, 1);
        ck_assert_int_eq(a5, 1);

        /* Restored ACL: a later real chat message is delivered again. */
        co_member(S, "general", BOB, 0, 5, -1);
        co_chat(S, ALICE, "general", "a-6", NULL);
        ck_assert(co_wait_id(DLV, DLV_BOB, "a-6:" BOB ":5", WAIT_MS));
        char *err = proc_stderr(&dm.p);
        ck_assert_msg(strstr(err, "for owner " BOB " on channel team.x: channel not in the owner's read ACL"),
                      "no drop log line");
        free(err);
}
END_TEST

static int count_occurrences(const char *hay, const char *needle)
{
        int n = 0;
        for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
                n++;
        return n;
}

START_TEST(unknown_owner_is_terminated_at_the_tenth_delivery)
{
        natsSubscription *adv = NULL;
        ck_assert(natsConnection_SubscribeSync(
                          &adv, tu_nc, "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.INBOX_" S ".reader") == NATS_OK);
        natsConnection_Flush(tu_nc);
        inbox_entry("UNKNOWNOWNER", "general", 1, "live-mention", 0, "u-1");
        /* The reader keeps going meanwhile. */
        co_member(S, "general", CAROL, 0, 3, -1);
        co_chat(S, ALICE, "general", "u-2", NULL);
        ck_assert(co_wait_id(DLV, DLV_CAROL, "u-2:" CAROL ":3", WAIT_MS));

        natsMsg *m = NULL;
        ck_assert_msg(natsSubscription_NextMsg(&m, adv, 40000) == NATS_OK, "no terminated advisory");
        json_t *j = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
        ck_assert_int_eq(json_integer_value(json_object_get(j, "deliveries")), 10);
        json_decref(j);
        natsMsg_Destroy(m);
        natsSubscription_Destroy(adv);
        char *err = proc_stderr(&dm.p);
        ck_assert_int_eq(count_occurrences(err, "Deferred INBOX_" S " entry"), 9);
        ck_assert_msg(strstr(err, "plane-3 reader: gave up on entry for unknown owner UNKNOWNOWNER after 10 "
                                  "redeliveries"),
                      "no give-up line");
        free(err);
        ck_assert_uint_eq(co_messages(DLV, "cotal." S ".dlv.UNKNOWNOWNER"), 0);
}
END_TEST

START_TEST(malformed_input_is_dropped_and_good_traffic_flows)
{
        co_member(S, "general", CAROL, 0, 4, -1);
        const char *bad[] = {"not json",
                             "null",
                             "[1,2]",
                             "{\"id\":5,\"from\":{\"id\":\"" ALICE "\"}}",
                             "{\"id\":\"x\"}",
                             "{\"id\":\"x\",\"from\":{\"id\":\"" BOB "\"}}",
                             ""};
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
                co_publish_raw("cotal." S ".chat." ALICE ".general", NULL, bad[i], strlen(bad[i]));
        /* Malformed inbox entries too. */
        const char *bad_entries[] = {"nope", "{\"msg\":{},\"channel\":\"general\",\"seq\":1}",
                                     "{\"msg\":{\"id\":\"q\"},\"channel\":\"general\",\"generation\":0}"};
        for (size_t i = 0; i < sizeof bad_entries / sizeof *bad_entries; i++)
                co_publish_raw("cotal." S ".dinbox." CAROL, NULL, bad_entries[i], strlen(bad_entries[i]));
        co_chat(S, ALICE, "general", "g-1", NULL);
        ck_assert(co_wait_id(DLV, DLV_CAROL, "g-1:" CAROL ":4", WAIT_MS));
        char *err = proc_stderr(&dm.p);
        ck_assert_msg(strstr(err, "Dropped chat message CHAT_" S " seq"), "no drop line for bad chat");
        ck_assert_msg(strstr(err, "is not the subject sender"), "no spoof line");
        free(err);
}
END_TEST

START_TEST(minimal_member_records_route)
{
        /* §4.4: only a non-object or a missing integer joinCursor /
         * generation make a record unreadable; a record without the
         * diagnostic fields (as other writers may leave it) still routes. */
        char value[512];
        snprintf(value, sizeof value, "{\"owner\":\"%s\",\"joinCursor\":0,\"generation\":6}", BOB);
        tu_kv_put("cotal_members_" S, "team.min/" BOB, value);
        co_chat(S, ALICE, "team.min", "n-1", NULL);
        ck_assert(co_wait_id(DLV, DLV_BOB, "n-1:" BOB ":6", WAIT_MS));
}
END_TEST

START_TEST(the_daemon_stayed_up_and_its_log_is_clean)
{
        co_daemon_assert_healthy(&dm);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("daemon_delivery");
        TCase *tc = tcase_create("delivery");
        tcase_add_unchecked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, durable_members_get_one_copy_in_interval);
        tcase_add_test(tc, leave_cursor_bounds_the_interval);
        tcase_add_test(tc, live_mentions_need_resolution_and_acl);
        tcase_add_test(tc, reader_rechecks_acl_and_interval_at_read_time);
        tcase_add_test(tc, unknown_owner_is_terminated_at_the_tenth_delivery);
        tcase_add_test(tc, malformed_input_is_dropped_and_good_traffic_flows);
        tcase_add_test(tc, minimal_member_records_route);
        tcase_add_test(tc, the_daemon_stayed_up_and_its_log_is_clean);
        suite_add_tcase(s, tc);
        return co_run(s);
}
