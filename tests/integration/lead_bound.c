/* lead_bound: PROTOCOL §14.4 E1 per owner (issue 13 items 1, 2 and 5).
 * INBOX_<S> keeps 1000 entries per owner and evicts the oldest silently,
 * so no writer may let an owner's unread entries reach the lead limit.
 *
 * The reader is made to fall behind on purpose: DLV_<S> is pointed at
 * other subjects, so every transfer finds no stream and the reader naks
 * (§7 row 8) while INBOX fills; it is pointed back before any entry could
 * reach the 10-delivery ceiling (about 18 s). Counts are read from the
 * streams (entries stored per owner subject, copies stored in DLV). */
#include "cotal.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S "lb"
#define CHAT "CHAT_" S
#define INBOX "INBOX_" S
#define DLV "DLV_" S
#define WAIT_MS 60000

static co_daemon dm;
static char sock[320];

static uint64_t inbox_of(const char *owner)
{
        char subject[200];
        snprintf(subject, sizeof subject, "cotal." S ".dinbox.%s", owner);
        return co_messages(INBOX, subject);
}

static json_t *diag(void)
{
        return co_diag(sock, NULL);
}

static uint64_t diag_num(const char *section, const char *name)
{
        json_t *doc = diag();
        uint64_t v = (uint64_t)json_integer_value(json_object_get(json_object_get(doc, section), name));
        json_decref(doc);
        return v;
}

static void start(const char *limit, const char *batch)
{
        snprintf(sock, sizeof sock, "%.200s/diag.sock", tu_broker.dir);
        ck_assert(co_daemon_start(&dm, S,
                                  (const char *const[]){"--inbox-lead-limit", limit, "--fanout-batch", batch,
                                                        "--diag-socket", sock, NULL}));
}

static void setup(void)
{
        tu_broker_setup();
        co_provision(S);
        memset(&dm, 0, sizeof dm);
}

static void teardown(void)
{
        co_daemon_finish(&dm);
        tu_broker_teardown();
}

typedef struct owners_at {
        const char *const *owners;
        size_t k;
        uint64_t want;
} owners_at;

static bool all_at(void *arg)
{
        owners_at *a = arg;
        for (size_t i = 0; i < a->k; i++)
                if (inbox_of(a->owners[i]) < a->want)
                        return false;
        return true;
}

typedef struct counter_at {
        const char *section, *name;
        uint64_t want;
} counter_at;

static bool counter_reached(void *arg)
{
        counter_at *c = arg;
        return diag_num(c->section, c->name) >= c->want;
}

static void wait_counter(const char *section, const char *name, uint64_t want)
{
        counter_at c = {section, name, want};
        if (!test_wait_until(counter_reached, &c, WAIT_MS)) {
                co_daemon_dump(&dm);
                ck_abort_msg("diag %s.%s stayed at %llu (want %llu)", section, name,
                             (unsigned long long)diag_num(section, name), (unsigned long long)want);
        }
}

/* BOB, CAROL and DAVE durable members of "general", the reader stuck
 * (DLV pointed elsewhere), a daemon with lead limit 20 and batch 19, and n
 * posts "<prefix><i>" from ALICE: returns once each owner holds 20. */
static const char *const three[] = {BOB, CAROL, DAVE};

static void fill_three_to_the_limit(const char *prefix, int n)
{
        for (size_t i = 0; i < 3; i++) {
                co_acl(S, three[i], "[\"general\"]");
                co_member(S, "general", three[i], 0, 1, -1);
        }
        co_dlv_stall(S, true);
        start("20", "19");
        co_chat_burst(S, ALICE, "general", prefix, n, 0);
        owners_at at = {three, 3, 20};
        ck_assert_msg(test_wait_until(all_at, &at, WAIT_MS), "owners did not reach the limit: %llu %llu %llu",
                      (unsigned long long)inbox_of(BOB), (unsigned long long)inbox_of(CAROL),
                      (unsigned long long)inbox_of(DAVE));
}

/* A lead limit just above the batch (item 1: any accepted combination
 * makes progress) with the reader stuck: each owner gets exactly the limit
 * and no more, the rest of the chat is held, not dropped, the loop keeps
 * turning (watchdog); once the reader moves, every copy arrives once. */
START_TEST(each_owner_stops_at_the_limit_while_the_reader_is_stuck)
{
        const char *const *owners = three;
        const size_t k = 3;
        fill_three_to_the_limit("t", 120);
        /* Everything is in hand: 100 chat messages held for the three, and
         * the reader has seen and nak'ed every entry that was written. */
        wait_counter("lead", "held_messages", 100);
        /* Each entry nak'ed twice: the hold has lasted a few seconds, and
         * the fan-out's loop still turns (item 1: a paused fan-out once
         * stopped beating, and systemd's watchdog killed the daemon). */
        wait_counter("counters", "deferred", 120);
        uint64_t last_turn = diag_num("workers_last_turn_ms_ago", "fanout");
        ck_assert_msg(last_turn < 2000, "the fan-out's loop last turned %llu ms ago while holding",
                      (unsigned long long)last_turn);
        for (size_t i = 0; i < k; i++)
                ck_assert_msg(inbox_of(owners[i]) == 20, "owner %zu has %llu entries with the reader stuck (limit 20)",
                              i, (unsigned long long)inbox_of(owners[i]));
        ck_assert_uint_eq(diag_num("lead", "max"), 20);
        co_dlv_stall(S, false);
        co_tally t = co_dlv_settle(S, owners, k, 1, "t", 120, WAIT_MS, NULL);
        ck_assert_msg(t.missing == 0 && t.dup == 0 && t.foreign == 0, "%d missing, %d duplicated, %d foreign",
                      t.missing, t.dup, t.foreign);
        ck_assert_uint_eq(co_last_seq(INBOX), 360);
        ck_assert_uint_eq(co_last_seq(DLV), 360);
        ck_assert_uint_eq(diag_num("counters", "terminated"), 0);
        co_daemon_assert_healthy(&dm);
}
END_TEST

/* Item 5: an owner whose entries the reader cannot dispose of (a member
 * with no ACL record: each entry is deferred about 18 s, then
 * terminated, §7 rows 3-4) holds back only its own entries. The other
 * members get all 200 copies while that owner's first entry is still
 * waiting for its 10th delivery: nothing was terminated yet. */
START_TEST(a_stuck_owner_holds_back_only_its_own_entries)
{
        const char *const served[] = {BOB, CAROL};
        co_acl(S, BOB, "[\"general\"]");
        co_acl(S, CAROL, "[\"general\"]");
        co_member(S, "general", BOB, 0, 1, -1);
        co_member(S, "general", CAROL, 0, 1, -1);
        co_member(S, "general", DAVE, 0, 1, -1); /* deprovisioned: no ACL */
        start("20", "10");
        co_chat_burst(S, ALICE, "general", "s", 200, 0);
        int64_t took = 0;
        co_tally t = co_dlv_settle(S, served, 2, 1, "s", 200, WAIT_MS, &took);
        ck_assert_msg(t.missing == 0 && t.dup == 0 && t.foreign == 0, "%d missing, %d duplicated, %d foreign",
                      t.missing, t.dup, t.foreign);
        uint64_t terminated = diag_num("counters", "terminated");
        ck_assert_msg(terminated == 0,
                      "the served members waited for the stuck owner: %llu of its entries were already terminated "
                      "when they had all their copies (%lld ms)",
                      (unsigned long long)terminated, (long long)took);
        ck_assert_msg(inbox_of(DAVE) <= 20, "the stuck owner has %llu entries (limit 20)",
                      (unsigned long long)inbox_of(DAVE));
        fprintf(stderr, "stuck owner: 200 copies to each of 2 members in %lld ms, %llu entries for the stuck one\n",
                (long long)took, (unsigned long long)inbox_of(DAVE));
}
END_TEST

/* Item 2: a join's catch-up over a window of 1,500 messages for one owner
 * (an open, not yet activated record from a join that crashed, §8.6) with
 * the reader stuck. The catch-up writes up to the lead limit (500), waits
 * for the reader instead of writing past INBOX's 1,000, and finishes once
 * the reader moves: every message arrives once, none evicted unread. */
START_TEST(a_long_catch_up_waits_for_the_reader)
{
        co_acl(S, BOB, "[\"general\"]");
        start("500", "256");
        const char *senders[] = {ALICE, CAROL, DAVE};
        uint64_t last = 0;
        for (int i = 0; i < 3; i++) {
                char prefix[8];
                snprintf(prefix, sizeof prefix, "c%d", i);
                last = co_chat_burst(S, senders[i], "general", prefix, 500, 0);
        }
        ck_assert_uint_eq(last, 1500);
        ck_assert(co_wait_acked(CHAT, "fanout", last, WAIT_MS)); /* no member yet: nothing written */
        ck_assert_uint_eq(co_last_seq(INBOX), 0);
        co_member_pending(S, "general", BOB, 0, 1);
        co_dlv_stall(S, true);
        natsSubscription *sub = co_request_send(
                S, BOB,
                "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"general\"},\"from\":{\"id\":\"" BOB "\","
                "\"name\":\"bob\"}}");
        owners_at at = {(const char *const[]){BOB}, 1, 500};
        ck_assert_msg(test_wait_until(all_at, &at, WAIT_MS), "the catch-up wrote %llu entries",
                      (unsigned long long)inbox_of(BOB));
        /* The reader has nak'ed all 500: the catch-up is waiting on it. */
        wait_counter("counters", "deferred", 500);
        ck_assert_msg(inbox_of(BOB) == 500, "the catch-up wrote %llu entries with the reader stuck (limit 500)",
                      (unsigned long long)inbox_of(BOB));
        co_dlv_stall(S, false);
        json_t *reply = co_request_wait(sub, WAIT_MS);
        char *text = co_json_text(reply);
        ck_assert_msg(reply && json_is_true(json_object_get(reply, "ok")) &&
                              json_is_true(json_object_get(json_object_get(reply, "data"), "durable")),
                      "join reply %s", text);
        free(text);
        json_decref(reply);
        /* DLV keeps the last 1,000 per owner subject: its stored count
         * (one per dedup id) says whether all 1,500 arrived. */
        uint64_t copies = co_wait_count(DLV, NULL, 1500, WAIT_MS);
        ck_assert_msg(copies == 1500, "%llu of 1500 copies (evicted unread?)", (unsigned long long)copies);
        ck_assert_uint_eq(co_last_seq(INBOX), 1500);
        ck_assert_uint_eq(diag_num("counters", "terminated"), 0);
        co_daemon_assert_healthy(&dm);
}
END_TEST

/* A broker SIGKILL and restart under a full owner: the reader's cursor,
 * the fan-out's held messages and the counts come back from the broker,
 * and the bound still holds for the posts that follow (written while the
 * soak's losses after broker SIGKILLs were suspected to be the daemon's;
 * they were the broker's, see README "Soak"). */
START_TEST(the_bound_survives_a_broker_kill)
{
        const char *const *owners = three;
        const size_t k = 3;
        fill_three_to_the_limit("t", 60);
        wait_counter("lead", "held_messages", 40);
        ck_assert_int_eq(natsd_signal(&tu_broker, SIGKILL), 0);
        ck_assert_int_eq(natsd_restart(&tu_broker), 0);
        co_chat_burst(S, ALICE, "general", "u", 60, 0);
        wait_counter("lead", "held_messages", 100);
        wait_counter("counters", "deferred", 80);
        for (size_t i = 0; i < k; i++)
                ck_assert_msg(inbox_of(owners[i]) <= 20, "owner %zu has %llu entries after a broker kill (limit 20)", i,
                              (unsigned long long)inbox_of(owners[i]));
        co_dlv_stall(S, false);
        co_tally t = co_dlv_settle(S, owners, k, 1, "t", 60, WAIT_MS, NULL);
        ck_assert_msg(t.missing == 0 && t.dup == 0 && t.foreign == 0, "%d missing, %d duplicated, %d foreign",
                      t.missing, t.dup, t.foreign);
        t = co_dlv_settle(S, owners, k, 1, "u", 60, WAIT_MS, NULL);
        ck_assert_msg(t.missing == 0 && t.dup == 0 && t.foreign == 0, "%d missing, %d duplicated, %d foreign",
                      t.missing, t.dup, t.foreign);
        co_daemon_assert_healthy(&dm);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("lead_bound");
        TCase *tc = tcase_create("lead");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 180);
        tcase_add_test(tc, each_owner_stops_at_the_limit_while_the_reader_is_stuck);
        tcase_add_test(tc, a_stuck_owner_holds_back_only_its_own_entries);
        tcase_add_test(tc, a_long_catch_up_waits_for_the_reader);
        tcase_add_test(tc, the_bound_survives_a_broker_kill);
        suite_add_tcase(s, tc);
        return co_run(s);
}
