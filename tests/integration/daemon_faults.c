/* daemon_faults: nothing lost, nothing duplicated across faults (issue 4):
 * a broker restart (SIGTERM and SIGKILL, same store) while the daemon
 * runs, a daemon SIGKILLed mid-stream and restarted once the lease lapses,
 * durables deleted by an operator (§14.2 B6), and a broker gone for longer
 * than COTAL_DELIVERY_BROKER_GONE_MS (the daemon exits 1 in time). After
 * each, every member's dlv subject holds exactly the expected dedup ids. */
#include "cotal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S "ft"
#define DLV "DLV_" S
#define ROUND 150
#define SETTLE_MS 100000

static const char *const members[] = {BOB, CAROL, DAVE};
#define K (sizeof members / sizeof *members)
static co_daemon dm;

static void setup(void)
{
        tu_broker_setup();
        co_provision_general(S, members, K);
        ck_assert(co_daemon_start(&dm, S, NULL));
}

static void teardown(void)
{
        co_daemon_stop(&dm);
        proc_destroy(&dm.p);
        tu_broker_teardown();
}

/* Waits until every member has every message of prefix (bounded: a nak or
 * ack lost in a broker restart is redelivered after ack_wait, 60 s), then
 * asserts the exact set: none missing, none twice, nothing foreign. */
static void settle(const char *prefix, int n)
{
        co_tally t = co_dlv_settle(S, members, K, 1, prefix, n, SETTLE_MS, NULL);
        if (t.missing)
                co_daemon_dump(&dm);
        ck_assert_msg(t.missing == 0 && t.dup == 0 && t.foreign == 0, "%s: %d missing, %d duplicated, %d foreign",
                      prefix, t.missing, t.dup, t.foreign);
}

static void broker_restart_mid_load(const char *prefix, int sig)
{
        char id[64];
        for (int i = 0; i < ROUND; i++) {
                if (i == ROUND / 3) {
                        if (sig == SIGKILL)
                                natsd_signal(&tu_broker, SIGKILL);
                        ck_assert_int_eq(natsd_restart(&tu_broker), 0);
                }
                snprintf(id, sizeof id, "%s-%d", prefix, i);
                co_chat_retrying(S, ALICE, "general", id);
        }
        settle(prefix, ROUND);
        ck_assert_msg(proc_wait(&dm.p, 0) == -ETIMEDOUT, "the daemon exited during a short outage");
}

START_TEST(broker_sigterm_restart_loses_nothing)
{
        broker_restart_mid_load("bt", SIGTERM);
}
END_TEST

START_TEST(broker_sigkill_restart_loses_nothing)
{
        broker_restart_mid_load("bk", SIGKILL);
}
END_TEST

START_TEST(daemon_sigkill_then_restart_loses_nothing)
{
        /* Mid-batch: the burst waits while the daemon is paused, and it is
         * killed the moment its first copy reaches dlv. */
        uint64_t before = co_messages(DLV, NULL);
        ck_assert_int_eq(proc_signal(&dm.p, SIGSTOP), 0);
        co_chat_burst(S, ALICE, "general", "dk", ROUND, 64);
        co_freezer killer;
        co_signal_at_first(&killer, dm.p.pid, SIGKILL, "cotal." S ".dlv.>");
        ck_assert_int_eq(proc_signal(&dm.p, SIGCONT), 0);
        ck_assert_msg(co_frozen_within(&killer, 30000), "the daemon was not killed");
        ck_assert_int_eq(proc_wait(&dm.p, 5000), 0);
        ck_assert_int_eq(dm.p.status, 128 + SIGKILL);
        proc_destroy(&dm.p);
        fprintf(stderr, "daemon_sigkill: %llu of %d copies were in dlv at the kill\n",
                (unsigned long long)(co_messages(DLV, NULL) - before), ROUND * (int)K);
        /* The dead holder's lease lapses by TTL (<= 30 s, §9); a standby
         * takes it then. */
        const char *const standby[] = {"--standby", NULL};
        co_daemon_spawn(&dm, S, standby, NULL);
        ck_assert_msg(co_daemon_wait_ready(&dm, 30000 + DAEMON_READY_TIMEOUT_MS) && dm.p.pid > 0,
                      "no daemon became ready after the lease lapsed");
        settle("dk", ROUND);
}
END_TEST

START_TEST(deleted_durables_are_recreated_and_nothing_is_lost)
{
        char id[64];
        for (int i = 0; i < ROUND; i++) {
                if (i == ROUND / 3)
                        json_decref(tu_api("$JS.API.CONSUMER.DELETE.%s.%s", "CHAT_" S, "fanout", NULL));
                if (i == 2 * ROUND / 3)
                        json_decref(tu_api("$JS.API.CONSUMER.DELETE.%s.%s", "INBOX_" S, "reader", NULL));
                snprintf(id, sizeof id, "dd-%d", i);
                co_chat_retrying(S, ALICE, "general", id);
        }
        settle("dd", ROUND);
        /* Both durables exist again. */
        json_t *r = tu_api("$JS.API.CONSUMER.INFO.%s.%s", "CHAT_" S, "fanout", NULL);
        ck_assert_ptr_null(json_object_get(r, "error"));
        json_decref(r);
        r = tu_api("$JS.API.CONSUMER.INFO.%s.%s", "INBOX_" S, "reader", NULL);
        ck_assert_ptr_null(json_object_get(r, "error"));
        json_decref(r);
        char *err = proc_stderr(&dm.p);
        ck_assert_msg(strstr(err, "Re-bound durable CHAT_" S "/fanout"), "fan-out not re-bound");
        ck_assert_msg(strstr(err, "Re-bound durable INBOX_" S "/reader"), "reader not re-bound");
        free(err);
}
END_TEST

START_TEST(broker_gone_too_long_ends_the_daemon)
{
        /* A daemon with a 2 s window (§10.1 env), then the broker dies. */
        co_daemon_stop(&dm);
        proc_destroy(&dm.p);
        char *env[] = {"COTAL_DELIVERY_BROKER_GONE_MS=2000", NULL};
        co_daemon_spawn(&dm, S, NULL, env);
        ck_assert(co_daemon_wait_ready(&dm, DAEMON_READY_TIMEOUT_MS) && dm.p.pid > 0);
        int64_t t0 = test_now_ms();
        natsd_signal(&tu_broker, SIGKILL);
        ck_assert_msg(proc_wait(&dm.p, 2000 + 10000) == 0, "the daemon outlived the broker-gone window");
        int64_t took = test_now_ms() - t0;
        ck_assert_int_eq(dm.p.status, 1);
        char *err = proc_stderr(&dm.p);
        ck_assert_msg(strstr(err, "✗ delivery: broker unreachable for >2s — exiting (coupled to the broker)"), "%s",
                      err);
        free(err);
        fprintf(stderr, "broker_gone: exited %lld ms after the broker died (window 2000 ms)\n", (long long)took);
        ck_assert_int_eq(natsd_restart(&tu_broker), 0);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("daemon_faults");
        TCase *tc = tcase_create("faults");
        tcase_add_unchecked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 240);
        tcase_add_test(tc, broker_sigterm_restart_loses_nothing);
        tcase_add_test(tc, broker_sigkill_restart_loses_nothing);
        tcase_add_test(tc, deleted_durables_are_recreated_and_nothing_is_lost);
        tcase_add_test(tc, daemon_sigkill_then_restart_loses_nothing);
        tcase_add_test(tc, broker_gone_too_long_ends_the_daemon);
        suite_add_tcase(s, tc);
        return tu_run(s);
}
