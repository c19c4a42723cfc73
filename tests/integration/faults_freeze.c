/* faults_freeze: the broker frozen (SIGSTOP) past the broker-gone window
 * while the daemon is mid-work (issue 8). A frozen server keeps its TCP
 * connections open, so only the daemon's own pings can tell; the daemon
 * must then exit 1 by itself (§10.3, coupled to the broker). After SIGCONT
 * a new daemon (a standby, which waits for the dead holder's lease to
 * lapse) catches up, and every member's dlv holds each message exactly
 * once. */
#include "cotal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract_config.h"

#define S "fz"
#define FIRST 300
#define SECOND 100
#define WINDOW_MS "3000"
/* Pings (1 s, 2 out) notice the freeze, then the window runs out. */
#define EXIT_WITHIN_MS 30000
/* After the takeover: a batch the dead daemon held comes back after ack_wait
 * (60 s, §3); allow for a second round of it. */
#define SETTLE_MS 150000

static const char *const members[] = {BOB, CAROL, DAVE};
#define K (sizeof members / sizeof *members)
static co_daemon dm;

static void setup(void)
{
        tu_broker_setup();
        co_provision_general(S, members, K);
        const char *const args[] = {"--broker-gone-ms", WINDOW_MS, NULL};
        ck_assert(co_daemon_start(&dm, S, args));
}

static void teardown(void)
{
        natsd_signal(&tu_broker, SIGCONT);
        co_daemon_stop(&dm);
        proc_destroy(&dm.p);
        tu_broker_teardown();
}

START_TEST(a_frozen_broker_ends_the_daemon_and_a_new_one_catches_up)
{
        /* The burst waits in CHAT while the daemon is paused; then the
         * broker freezes the moment the first copy reaches dlv, with the
         * daemon mid-batch and most of the burst still to do. */
        ck_assert_int_eq(proc_signal(&dm.p, SIGSTOP), 0);
        co_chat_burst(S, ALICE, "general", "fz", FIRST, 64);
        co_freezer fr;
        co_freeze_at_first(&fr, tu_broker.pid, "cotal." S ".dlv.>");
        ck_assert_int_eq(proc_signal(&dm.p, SIGCONT), 0);
        ck_assert_msg(co_frozen_within(&fr, 30000), "the broker was not frozen");
        int64_t t0 = test_now_ms();
        ck_assert_msg(proc_wait(&dm.p, EXIT_WITHIN_MS) == 0, "the daemon outlived a frozen broker");
        int64_t exit_ms = test_now_ms() - t0;
        ck_assert_int_eq(dm.p.status, 1);
        char *err = proc_stderr(&dm.p);
        ck_assert_msg(strstr(err, "broker unreachable for >3s"), "%s", err);
        char *first_log = err; /* shown if the check fails */
        proc_destroy(&dm.p);

        ck_assert_int_eq(natsd_signal(&tu_broker, SIGCONT), 0);
        int64_t t1 = test_now_ms();
        char id[64];
        for (int i = FIRST; i < FIRST + SECOND; i++) {
                snprintf(id, sizeof id, "fz-%d", i);
                co_chat_retrying(S, ALICE, "general", id);
        }
        uint64_t copied = co_messages("DLV_" S, NULL);
        const char *const standby[] = {"--standby", NULL};
        co_daemon_spawn(&dm, S, standby, NULL);
        ck_assert_msg(co_daemon_wait_ready(&dm, CONTRACT_LEASE_TTL_MS + 30000) && dm.p.pid > 0,
                      "the standby did not take over the lapsed lease");
        int64_t ready_ms = test_now_ms() - t1;
        int64_t settled_ms = 0;
        co_tally t = co_dlv_settle(S, members, K, 1, "fz", FIRST + SECOND, SETTLE_MS, &settled_ms);
        if (t.missing) {
                fprintf(stderr, "--- the first daemon's log ---\n%s--- the second daemon's log ---\n", first_log);
                co_daemon_dump(&dm);
        }
        free(first_log);
        ck_assert_msg(t.missing == 0 && t.dup == 0 && t.foreign == 0, "%d missing, %d duplicated, %d foreign",
                      t.missing, t.dup, t.foreign);
        fprintf(stderr,
                "broker_freeze: daemon exited %lld ms after the freeze (window " WINDOW_MS
                " ms); %llu of %zu copies were in dlv at the thaw; %d messages x %zu members, 0 lost, 0 "
                "duplicated; new daemon ready %lld ms after SIGCONT (lease TTL %d ms), complete %lld ms later\n",
                (long long)exit_ms, (unsigned long long)copied, (size_t)(FIRST + SECOND) * K, FIRST + SECOND, K,
                (long long)ready_ms, CONTRACT_LEASE_TTL_MS, (long long)settled_ms);
        co_daemon_assert_healthy(&dm);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("faults_freeze");
        TCase *tc = tcase_create("freeze");
        tcase_add_unchecked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 380);
        tcase_add_test(tc, a_frozen_broker_ends_the_daemon_and_a_new_one_catches_up);
        suite_add_tcase(s, tc);
        return tu_run(s);
}
