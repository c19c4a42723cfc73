/* inbox_lost: entries INBOX_<S> removed before the reader first read them
 * are said (src/losswatch.h), never silent. INBOX keeps 1000 entries per
 * owner and evicts the oldest (§2); the daemon's own writes stay under the
 * lead limit (§14.4 E1), so the entries here are written straight into
 * INBOX, as a stale writer would, and the broker evicts them by its rule:
 * past the 1000th of one owner, the oldest go before any delivery. The
 * count must be exact, in the log line and in the diagnostics, and nothing
 * else (redeliveries, nak'ed entries, restarts) may look like a loss. */
#include "cotal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S "il"
#define INBOX "INBOX_" S
#define DLV "DLV_" S
#define CAP 1000 /* INBOX max_msgs_per_subject (§2) */
#define WAIT_MS 60000

static co_daemon dm;
static char sock[320];

static void setup(void)
{
        tu_broker_setup();
        co_provision(S);
        co_acl(S, BOB, "[\"general\"]");
        co_acl(S, CAROL, "[\"general\"]");
        memset(&dm, 0, sizeof dm);
        snprintf(sock, sizeof sock, "%.200s/diag.sock", tu_broker.dir);
}

static void teardown(void)
{
        co_daemon_finish(&dm);
        tu_broker_teardown();
}

static void start(void)
{
        ck_assert(co_daemon_start(&dm, S, (const char *const[]){"--diag-socket", sock, NULL}));
}

/* n live-mention entries "<prefix>-<i>" for owner (§5.3: only the ACL is
 * checked at read time), as a stale writer would put them; the INBOX seq
 * of each in seqs (may be NULL). */
static void entries(const char *owner, const char *prefix, int n, uint64_t *seqs)
{
        char subject[256], body[1024], id[256], msg_id[64];
        snprintf(subject, sizeof subject, "cotal." S ".dinbox.%s", owner);
        for (int i = 0; i < n; i++) {
                snprintf(msg_id, sizeof msg_id, "%s-%d", prefix, i);
                snprintf(body, sizeof body,
                         "{\"msg\":{\"id\":\"%s\",\"from\":{\"id\":\"" ALICE "\",\"name\":\"alice\"},\"parts\":[]},"
                         "\"channel\":\"general\",\"seq\":%d,\"reason\":\"live-mention\",\"generation\":0}",
                         msg_id, i + 1);
                snprintf(id, sizeof id, "%s:%s:0", msg_id, owner);
                uint64_t seq = co_publish_raw(subject, id, body, strlen(body));
                if (seqs)
                        seqs[i] = seq;
        }
}

static uint64_t reader_ack_pending(void)
{
        json_t *r = tu_api("$JS.API.CONSUMER.INFO.%s.%s", INBOX, "reader", NULL);
        uint64_t n = (uint64_t)json_integer_value(json_object_get(r, "num_ack_pending"));
        json_decref(r);
        return n;
}

static bool window_full(void *arg)
{
        (void)arg;
        return reader_ack_pending() >= CAP;
}

static uint64_t inbox_lost(void)
{
        json_t *doc = co_diag(sock, NULL);
        uint64_t v = (uint64_t)json_integer_value(json_object_get(json_object_get(doc, "counters"), "inbox_lost"));
        json_decref(doc);
        return v;
}

static void expect_line(uint64_t n, uint64_t lo, uint64_t hi)
{
        char want[256];
        snprintf(want, sizeof want, INBOX " removed %llu entries (1 runs, seqs %llu-%llu) before the reader first read",
                 (unsigned long long)n, (unsigned long long)lo, (unsigned long long)hi);
        if (!co_daemon_logged_within(&dm, want, WAIT_MS)) {
                co_daemon_dump(&dm);
                ck_abort_msg("no line \"%s\"", want);
        }
}

/* The reader's window (max_ack_pending 1000) is full of BOB's entries,
 * nak'ed and redelivered while DLV is away; CAROL gets 1,010 entries
 * meanwhile, so INBOX evicts her first 10 before anything could deliver
 * them. Once DLV is back: a line naming exactly those 10 seqs, the
 * counter at 10 (the thousands of redeliveries of BOB's entries counted
 * nothing), and every other entry delivered. */
START_TEST(entries_evicted_before_any_delivery_are_said_and_counted_exactly)
{
        start();
        co_dlv_stall(S, true);
        entries(BOB, "b", CAP, NULL);
        ck_assert_msg(test_wait_until(window_full, NULL, WAIT_MS), "the reader holds %llu entries, not %d",
                      (unsigned long long)reader_ack_pending(), CAP);
        static uint64_t carol[CAP + 10];
        entries(CAROL, "c", CAP + 10, carol);
        co_dlv_stall(S, false);
        expect_line(10, carol[0], carol[9]);
        co_wait_count(DLV, "cotal." S ".dlv." CAROL, CAP, WAIT_MS);
        co_wait_count(DLV, "cotal." S ".dlv." BOB, CAP, WAIT_MS);
        ck_assert_uint_eq(co_messages(DLV, "cotal." S ".dlv." CAROL), CAP);
        ck_assert_uint_eq(co_messages(DLV, "cotal." S ".dlv." BOB), CAP);
        ck_assert_int_eq(co_count_id(DLV, "cotal." S ".dlv." CAROL, "c-9:" CAROL ":0"), 0);
        ck_assert_int_eq(co_count_id(DLV, "cotal." S ".dlv." CAROL, "c-10:" CAROL ":0"), 1);
        ck_assert_uint_eq(inbox_lost(), 10);
}
END_TEST

/* Removed while no daemon ran: the next one starts its watch from the
 * durable's state and says so on its first delivery. A plain restart in
 * between, with entries delivered across it, says nothing. */
START_TEST(entries_evicted_while_no_daemon_runs_are_said_by_the_next_one)
{
        start();
        entries(BOB, "b", 50, NULL);
        co_wait_count(DLV, "cotal." S ".dlv." BOB, 50, WAIT_MS);
        ck_assert_int_eq(co_daemon_stop(&dm), 0);
        start();
        entries(BOB, "d", 50, NULL);
        co_wait_count(DLV, "cotal." S ".dlv." BOB, 100, WAIT_MS);
        ck_assert_uint_eq(inbox_lost(), 0);
        ck_assert_int_eq(co_daemon_stop(&dm), 0);
        static uint64_t carol[CAP + 5];
        entries(CAROL, "c", CAP + 5, carol);
        start();
        expect_line(5, carol[0], carol[4]);
        co_wait_count(DLV, "cotal." S ".dlv." CAROL, CAP, WAIT_MS);
        ck_assert_uint_eq(co_messages(DLV, "cotal." S ".dlv." CAROL), CAP);
        ck_assert_uint_eq(inbox_lost(), 5);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("inbox_lost");
        TCase *tc = tcase_create("core");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 300);
        tcase_add_test(tc, entries_evicted_before_any_delivery_are_said_and_counted_exactly);
        tcase_add_test(tc, entries_evicted_while_no_daemon_runs_are_said_by_the_next_one);
        suite_add_tcase(s, tc);
        return co_run(s);
}
