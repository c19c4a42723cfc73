/* daemon_startup_stop: SIGTERM at any point of start-up (PROTOCOL §10.2,
 * §10.4; issue 13 item 7). Whatever the daemon has acquired by then is
 * released: it exits 0, lease.0 is absent or a DEL marker afterwards, and a
 * new daemon becomes ready at once instead of waiting out the 30 s TTL.
 * Signalled inside a step (held there by a relay, tests/lib/tcpproxy), the
 * daemon stops right after that step and goes no further: it never marks
 * the lease ready nor prints its ready line. Also signalled the moment each
 * step's log line appears, and at seeded random delays. */
#include "cotal.h"
#include "tcpproxy.h"

#include "broker.h"
#include "contract_config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S "su"
#define LEASE_BUCKET "cotal_delivery_" S
#define LEASE_SUBJ "$KV." LEASE_BUCKET "." CONTRACT_LEASE_KEY
/* From SIGTERM to exit: teardown, release and close on a healthy broker. */
#define STOP_WITHIN_MS 15000
/* A successor is ready at once: far below the 30 s TTL it would wait if the
 * record had been left behind. */
#define SUCCESSOR_READY_MS 10000
#define RANDOM_ROUNDS 12

static natsSubscription *spy;
static tcpproxy proxy;

static void setup(void)
{
        tu_broker_setup();
        co_provision(S);
        ck_assert(natsConnection_SubscribeSync(&spy, tu_nc, LEASE_SUBJ) == NATS_OK);
        ck_assert(natsConnection_Flush(tu_nc) == NATS_OK);
}

/* After each test, even a failed one: daemons talk to the broker again. */
static void drop_proxy(void)
{
        tu_servers = NULL;
        tcpproxy_stop(&proxy);
}

static void teardown(void)
{
        broker_sub_close(tu_nc, &spy);
        tu_broker_teardown();
}

/* Lease writes seen since the last call: how many said ready:true. */
static int ready_writes(void)
{
        int n = 0;
        natsMsg *m = NULL;
        while (natsSubscription_NextMsg(&m, spy, 0) == NATS_OK) {
                json_t *v = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
                n += json_is_true(json_object_get(v, "ready"));
                json_decref(v);
                natsMsg_Destroy(m);
        }
        return n;
}

/* The daemon exited 0 within STOP_WITHIN_MS of t0 and left lease.0 absent
 * or deleted. Returns the ms from t0 to the exit. */
static int64_t assert_stopped_clean(co_daemon *dm, int64_t t0, const char *when)
{
        if (proc_wait(&dm->p, STOP_WITHIN_MS) < 0) {
                co_daemon_dump(dm);
                ck_abort_msg("%s: still running %d ms after SIGTERM", when, STOP_WITHIN_MS);
        }
        int64_t took = test_now_ms() - t0;
        if (dm->p.status != 0)
                co_daemon_dump(dm);
        ck_assert_msg(dm->p.status == 0, "%s: exit status %d after SIGTERM", when, dm->p.status);
        uint64_t rev = 0;
        json_t *v = co_kv_value(LEASE_BUCKET, CONTRACT_LEASE_KEY, &rev);
        if (v) {
                char *text = co_json_text(v);
                co_daemon_dump(dm);
                ck_abort_msg("%s: lease.0 left behind at revision %llu: %s", when, (unsigned long long)rev, text);
        }
        return took;
}

/* A new daemon takes the lease at once, then stops cleanly. */
static void assert_successor_ready_at_once(const char *when)
{
        co_daemon next;
        int64_t t0 = test_now_ms();
        co_daemon_spawn(&next, S, NULL, NULL);
        bool ready = co_daemon_wait_ready(&next, SUCCESSOR_READY_MS) && next.p.pid > 0;
        if (!ready)
                co_daemon_dump(&next);
        ck_assert_msg(ready, "%s: a new daemon was not ready within %d ms (lease TTL %d ms)", when, SUCCESSOR_READY_MS,
                      CONTRACT_LEASE_TTL_MS);
        int64_t took = test_now_ms() - t0;
        ck_assert_int_eq(co_daemon_stop(&next), 0);
        proc_destroy(&next.p);
        (void)ready_writes();
        fprintf(stderr, "startup_stop: %s: successor ready in %lld ms\n", when, (long long)took);
}

/* Exact points of start-up, found in the daemon's own traffic through a
 * relay (tests/lib/tcpproxy): the moment it sends these bytes for the nth
 * time, the broker's answers are held back, so the daemon is stuck inside
 * that step; SIGTERM is sent, then the answers flow again. The daemon must
 * stop right after that step, and go no further. */
static const struct {
        const char *needle;
        int nth;
        const char *step; /* as the daemon names it in its log */
        bool acquired;    /* the lease is held by then */
} points[] = {
        {"\"name\":\"cotal:delivery-probe\"", 1, "after the reachability probe", false},
        {"\"name\":\"cotal:delivery\",", 1, "after connecting", false},
        {"$JS.API.CONSUMER.CREATE.KV_cotal_presence_" S ".", 1, "after loading the presence roster", false},
        {LEASE_SUBJ, 1, "after acquiring the lease", true},
        {"\"name\":\"cotal:delivery-fanout\"", 1, "after binding the fan-out", true},
        {"\"name\":\"cotal:delivery-reader\"", 1, "after binding the reader", true},
        /* Its body: the acquire may send twice (over a DEL marker). */
        {"\"ready\":true", 1, "after marking the lease ready", true},
};
#define POINTS (sizeof points / sizeof *points)

static bool triggered(void *arg)
{
        return tcpproxy_triggered(arg);
}

START_TEST(sigterm_inside_each_step_stops_right_after_it_and_releases)
{
        ck_assert_int_eq(tcpproxy_start(&proxy, tu_broker.port), 0);
        tu_servers = proxy.url;
        for (size_t i = 0; i < POINTS; i++) {
                (void)ready_writes();
                tcpproxy_hold_at(&proxy, points[i].needle, points[i].nth);
                co_daemon dm;
                co_daemon_spawn(&dm, S, NULL, NULL);
                bool hit = test_wait_until(triggered, &proxy, DAEMON_READY_TIMEOUT_MS);
                int64_t t0 = test_now_ms();
                if (hit)
                        ck_assert_int_eq(proc_signal(&dm.p, SIGTERM), 0);
                tcpproxy_release(&proxy);
                if (!hit)
                        co_daemon_dump(&dm);
                ck_assert_msg(hit, "the daemon never sent %s", points[i].needle);
                char when[128];
                snprintf(when, sizeof when, "SIGTERM inside the step, taken %s", points[i].step);
                int64_t took = assert_stopped_clean(&dm, t0, when);
                char *out = proc_stdout(&dm.p), *err = proc_stderr(&dm.p);
                bool quiet = !strstr(out, "delivery daemon up");
                char logged[128];
                snprintf(logged, sizeof logged, "during start-up, %s; stopping", points[i].step);
                bool there = strstr(err, logged) != NULL;
                bool released = strstr(err, "Released the lease") != NULL;
                int ready = ready_writes();
                bool as_expected = quiet && there && released == points[i].acquired &&
                                   ready == (strstr(points[i].needle, "ready") ? 1 : 0);
                if (!as_expected)
                        co_daemon_dump(&dm);
                free(out);
                free(err);
                ck_assert_msg(quiet, "%s: announced readiness after SIGTERM", when);
                ck_assert_msg(there, "%s: not stopped right after that step", when);
                ck_assert_msg(released == points[i].acquired, "%s: released %d, held %d", when, released,
                              points[i].acquired);
                ck_assert_msg(as_expected, "%s: %d ready:true writes", when, ready);
                proc_destroy(&dm.p);
                fprintf(stderr, "startup_stop: %s: exit 0 in %lld ms, %s, never ready\n", when, (long long)took,
                        points[i].acquired ? "lease released" : "nothing written");
                assert_successor_ready_at_once(when);
        }
}
END_TEST

/* The start-up steps in the order the daemon logs them (§10.2). */
static const char *const steps[] = {
        "Connected to ",     "Presence roster of ", "Acquired lease ", "Serving ",
        "Fan-out bound to ", "Reader bound to ",    "Ready: lease ",
};
#define STEPS (sizeof steps / sizeof *steps)

START_TEST(sigterm_at_each_logged_step_releases_and_exits_0)
{
        for (size_t i = 0; i < STEPS; i++) {
                co_daemon dm;
                co_daemon_spawn(&dm, S, NULL, NULL);
                ck_assert_msg(co_daemon_logged_within(&dm, steps[i], DAEMON_READY_TIMEOUT_MS), "never logged \"%s\"",
                              steps[i]);
                ck_assert_int_eq(proc_signal(&dm.p, SIGTERM), 0);
                int64_t t0 = test_now_ms();
                char when[96];
                snprintf(when, sizeof when, "SIGTERM at \"%s\"", steps[i]);
                int64_t took = assert_stopped_clean(&dm, t0, when);
                proc_destroy(&dm.p);
                fprintf(stderr, "startup_stop: %s: exit 0 in %lld ms, lease absent or deleted\n", when,
                        (long long)took);
                assert_successor_ready_at_once(when);
        }
}
END_TEST

/* The command name of a process ("self" or a pid), or "" when gone. */
static void comm_of(const char *pid, char *comm, size_t size)
{
        char path[64];
        snprintf(path, sizeof path, "/proc/%s/comm", pid);
        comm[0] = '\0';
        FILE *f = fopen(path, "r");
        if (f && !fgets(comm, (int)size, f))
                comm[0] = '\0';
        if (f)
                fclose(f);
}

/* The child has exec'd: its command name is no longer the test's. */
static bool execed(void *arg)
{
        co_daemon *dm = arg;
        char self[64], child[64], pid[24];
        snprintf(pid, sizeof pid, "%d", (int)dm->p.pid);
        comm_of("self", self, sizeof self);
        comm_of(pid, child, sizeof child);
        return child[0] == '\0' || strcmp(self, child) != 0;
}

START_TEST(sigterm_at_random_delays_releases_and_exits_0)
{
        /* How long a start takes here, to spread the delays over it. */
        co_daemon probe;
        int64_t t0 = test_now_ms();
        ck_assert(co_daemon_start(&probe, S, NULL));
        int64_t start_ms = test_now_ms() - t0;
        ck_assert_int_eq(co_daemon_stop(&probe), 0);
        proc_destroy(&probe.p);

        const char *env = getenv("COTAL_TEST_SEED");
        unsigned seed = env && *env ? (unsigned)strtoul(env, NULL, 10) : (unsigned)time(NULL);
        fprintf(stderr, "startup_stop: seed %u (replay with COTAL_TEST_SEED=%u); a start takes %lld ms\n", seed, seed,
                (long long)start_ms);
        srand(seed);
        int before_main = 0;
        for (int round = 0; round < RANDOM_ROUNDS; round++) {
                int64_t delay = (int64_t)(rand() % (int)(start_ms + start_ms / 4 + 1));
                co_daemon dm;
                co_daemon_spawn(&dm, S, NULL, NULL);
                /* Not before the exec: the forked child still runs check's
                 * SIGTERM handler, which signals the whole process group. */
                ck_assert_msg(test_wait_until(execed, &dm, 5000), "the daemon was not exec'd");
                int64_t spawned = test_now_ms();
                while (test_now_ms() - spawned < delay && proc_wait(&dm.p, 1) == -ETIMEDOUT)
                        ;
                ck_assert_int_eq(proc_signal(&dm.p, SIGTERM), 0);
                int64_t t1 = test_now_ms();
                ck_assert_int_eq(proc_wait(&dm.p, STOP_WITHIN_MS), 0);
                char *err = proc_stderr(&dm.p);
                /* Killed by the signal only before main() could block it:
                 * then the daemon had not written a line, nor anything else. */
                bool too_early = dm.p.status == 128 + SIGTERM && err[0] == '\0';
                free(err);
                before_main += too_early;
                char when[96];
                snprintf(when, sizeof when, "SIGTERM %lld ms after spawn (round %d)", (long long)delay, round);
                if (!too_early)
                        (void)assert_stopped_clean(&dm, t1, when);
                proc_destroy(&dm.p);
        }
        fprintf(stderr,
                "startup_stop: %d random delays: every daemon exited 0 with the lease released (%d signalled "
                "before main())\n",
                RANDOM_ROUNDS, before_main);
        assert_successor_ready_at_once("after the random delays");
}
END_TEST

int main(void)
{
        Suite *s = suite_create("daemon_startup_stop");
        TCase *tc = tcase_create("startup");
        tcase_add_unchecked_fixture(tc, setup, teardown);
        tcase_add_checked_fixture(tc, NULL, drop_proxy);
        tcase_set_timeout(tc, 300);
        tcase_add_test(tc, sigterm_inside_each_step_stops_right_after_it_and_releases);
        tcase_add_test(tc, sigterm_at_each_logged_step_releases_and_exits_0);
        tcase_add_test(tc, sigterm_at_random_delays_releases_and_exits_0);
        suite_add_tcase(s, tc);
        return tu_run(s);
}
