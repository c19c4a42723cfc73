/* faults_renew_window: how close to the lease's expiry a holder may act
 * (PROTOCOL §9; issue 13 item 7). The broker is frozen (SIGSTOP) right
 * after a renew, with a broker-gone window far beyond the TTL so that only
 * the lease decides. lease.0 lives 30 s from its store time, which is no
 * earlier than the moment the daemon sent the write; the record's "since"
 * is the daemon's wall clock just before that. The daemon holds on through
 * the silence while a renew could still be confirmed in time, but must give
 * up, and stop every worker, no later than 27 s after that send time (3 s
 * of margin): past it, a standby could already hold the lease. The time is
 * taken when its §9 "lost the lease" line appears. */
#include "cotal.h"

#include "contract_config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S "rw"
#define LEASE_BUCKET "cotal_delivery_" S
#define LOST_LINE "✗ delivery: lost the lease ("
/* The daemon's promise (README "What the daemon guarantees"): nothing is
 * acted on later than TTL - 3 s after the send time of the last confirmed
 * write. The slack covers reading its log every 5 ms. */
#define ACT_LIMIT_MS (CONTRACT_LEASE_TTL_MS - 3000)
#define OBSERVE_SLACK_MS 500
/* ...and it keeps the lease through the silence as long as a renew try
 * (2 s, plus 2 s of cnats' reconnect lock) could still end inside that. */
#define HOLD_AT_LEAST_MS 20000
/* Exit after the decision: the workers are joined (shutdown-timeout-ms,
 * 5 s) and the release tried once (1 s) against a frozen broker. */
#define EXIT_SLACK_MS 10000

static co_daemon dm;

static void setup(void)
{
        tu_broker_setup();
        co_provision(S);
        /* Only the lease may end it: the broker-gone window is 120 s. */
        const char *const args[] = {"--broker-gone-ms", "120000", NULL};
        ck_assert(co_daemon_start(&dm, S, args));
}

static void teardown(void)
{
        natsd_signal(&tu_broker, SIGCONT);
        co_daemon_stop(&dm);
        proc_destroy(&dm.p);
        tu_broker_teardown();
}

static int64_t wall_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct renew_wait {
        uint64_t after_rev, rev;
        int64_t since;
} renew_wait;

/* lease.0 moved past after_rev to a ready record of ours. */
static bool renewed(void *arg)
{
        renew_wait *w = arg;
        json_t *v = co_kv_value(LEASE_BUCKET, CONTRACT_LEASE_KEY, &w->rev);
        bool ok = v && w->rev > w->after_rev && json_is_true(json_object_get(v, "ready"));
        if (ok)
                w->since = (int64_t)json_integer_value(json_object_get(v, "since"));
        json_decref(v);
        return ok;
}

static int count(const char *text, const char *what)
{
        int n = 0;
        for (const char *p = text; (p = strstr(p, what)); p += strlen(what))
                n++;
        return n;
}

START_TEST(a_renew_that_gets_no_answer_stops_the_holder_before_its_record_can_expire)
{
        renew_wait w = {0};
        json_decref(co_kv_value(LEASE_BUCKET, CONTRACT_LEASE_KEY, &w.after_rev));
        ck_assert_msg(test_wait_until(renewed, &w, CONTRACT_LEASE_RENEW_MS + 10000), "no renew within %d ms",
                      CONTRACT_LEASE_RENEW_MS + 10000);
        /* At once after the renew: the next one is due 15 s from its send. */
        ck_assert_int_eq(natsd_signal(&tu_broker, SIGSTOP), 0);
        int64_t frozen_at = wall_ms();
        ck_assert_msg(co_daemon_logged_within(&dm, LOST_LINE, CONTRACT_LEASE_TTL_MS + 15000),
                      "the daemon never gave the lease up");
        int64_t lost_at = wall_ms();
        char *err = proc_stderr(&dm.p);
        int tries = count(err, "Failed to renew the lease");
        bool waited = strstr(err, "Lease renew due while the broker link is down") != NULL;
        int64_t lost_after = lost_at - w.since;
        bool exited = proc_wait(&dm.p, EXIT_SLACK_MS) == 0;
        int64_t exit_at = wall_ms();
        fprintf(stderr,
                "renew_window: renew sent at since=%lld, broker frozen %lld ms later; %d unanswered tries%s; gave the "
                "lease up %lld ms and exited %lld ms after the send time of the last confirmed write (limit %d ms, "
                "TTL %d ms)\n",
                (long long)w.since, (long long)(frozen_at - w.since), tries, waited ? ", then waited for the link" : "",
                (long long)lost_after, exited ? (long long)(exit_at - w.since) : -1LL, ACT_LIMIT_MS,
                CONTRACT_LEASE_TTL_MS);
        if (lost_after > ACT_LIMIT_MS + OBSERVE_SLACK_MS)
                fprintf(stderr, "%s", err);
        ck_assert_msg(lost_after <= ACT_LIMIT_MS + OBSERVE_SLACK_MS,
                      "the daemon acted until %lld ms after its last confirmed lease write (limit %d ms)",
                      (long long)lost_after, ACT_LIMIT_MS);
        /* It did ride the silence out while its record certainly lived,
         * as a cluster election needs: not given up at the first renew. */
        ck_assert_msg(lost_after >= HOLD_AT_LEAST_MS, "gave up %lld ms after the last confirmed write: %s",
                      (long long)lost_after, err);
        free(err);
        if (!exited)
                co_daemon_dump(&dm);
        ck_assert_msg(exited, "the daemon outlived its decision by %d ms", EXIT_SLACK_MS);
        ck_assert_int_eq(dm.p.status, 1);
        proc_destroy(&dm.p);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("faults_renew_window");
        TCase *tc = tcase_create("window");
        tcase_add_unchecked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 200);
        tcase_add_test(tc, a_renew_that_gets_no_answer_stops_the_holder_before_its_record_can_expire);
        suite_add_tcase(s, tc);
        return tu_run(s);
}
