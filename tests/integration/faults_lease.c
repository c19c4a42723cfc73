/* faults_lease: the single-flight lease under contention and under an
 * outside write (issue 8, PROTOCOL §9), with the exact-set check of the
 * fault suite.
 *
 * Race: ten rounds of twenty daemons started at once. Each round exactly
 * one becomes ready and holds lease.0; the nineteen others exit 1 without
 * binding anything; the winner delivers the round's messages and releases
 * on SIGTERM. At the end every member's dlv holds each message once, and
 * the inbox holds each entry once: no loser wrote anything.
 *
 * Takeover: an outside writer replaces lease.0 mid-load; the holder, which
 * reads the key every second, logs the loss within about a second, fans out
 * nothing published after that, and exits 1 (§9: the holder is single);
 * when the outsider deletes its record a new daemon takes over and the
 * exact set is complete. */
#include "cotal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract_config.h"

#define S "fl"
#define DLV "DLV_" S
#define INBOX "INBOX_" S
#define RACERS 20
#define ROUNDS 10
#define PER_ROUND 20
#define SETTLE_MS 90000
/* The holder reads lease.0 every LEASE_CHECK_MS (main.c); the bound allows
 * for its 100 ms tick, the read and a loaded machine. */
#define LEASE_CHECK_MS 1000
#define LOST_WITHIN_MS (LEASE_CHECK_MS + 1500)
#define LOST_LINE "✗ delivery: lost the lease ("
/* Exit after the loss: stopping the workers and the links. */
#define EXIT_SLACK_MS 3000
/* Chat published after the outside write: one message per WRITE_PACE_MS
 * (a bounded wait for the holder's exit) for at most WRITE_WATCH_MS. */
#define WRITE_PACE_MS 20
#define WRITE_WATCH_MS 20000

static const char *const members[] = {BOB, CAROL, DAVE};
#define K (sizeof members / sizeof *members)

static void setup(void)
{
        tu_broker_setup();
        co_provision_general(S, members, K);
        /* A first daemon creates the durables: `fanout` starts at "new"
         * (§3), so chat from before it existed is never fanned out. */
        co_daemon first;
        ck_assert(co_daemon_start(&first, S, NULL));
        ck_assert_int_eq(co_daemon_stop(&first), 0);
        proc_destroy(&first.p);
}

static void teardown(void)
{
        tu_broker_teardown();
}

static void assert_exact(const char *prefix, int n)
{
        co_tally t = co_dlv_settle(S, members, K, 1, prefix, n, SETTLE_MS, NULL);
        ck_assert_msg(t.missing == 0 && t.dup == 0 && t.foreign == 0, "%s: %d missing, %d duplicated, %d foreign",
                      prefix, t.missing, t.dup, t.foreign);
}

typedef struct race {
        co_daemon d[RACERS];
        int ready, exited, winner;
} race;

/* Every racer has either exited or printed its ready line. */
static bool decided(void *arg)
{
        race *r = arg;
        r->ready = r->exited = 0;
        r->winner = -1;
        for (int i = 0; i < RACERS; i++) {
                if (proc_wait(&r->d[i].p, 0) == 0) {
                        r->exited++;
                        continue;
                }
                char *out = proc_stdout(&r->d[i].p);
                if (strstr(out, "delivery daemon up")) {
                        r->ready++;
                        r->winner = i;
                }
                free(out);
        }
        return r->ready + r->exited == RACERS;
}

static char *lease_holder(void)
{
        json_t *v = co_kv_value("cotal_delivery_" S, CONTRACT_LEASE_KEY, NULL);
        const char *h = json_string_value(json_object_get(v, "holder"));
        char *copy = h ? strdup(h) : NULL;
        json_decref(v);
        return copy;
}

START_TEST(twenty_daemons_race_ten_rounds_and_one_wins_each)
{
        static race r;
        int64_t worst_ms = 0;
        int no_connect = 0;
        for (int round = 0; round < ROUNDS; round++) {
                /* The round's traffic waits in CHAT before anyone holds the lease. */
                for (int j = 0; j < PER_ROUND; j++) {
                        char id[64];
                        snprintf(id, sizeof id, "lr-%d", round * PER_ROUND + j);
                        co_chat(S, ALICE, "general", id, NULL);
                }
                int64_t t0 = test_now_ms();
                for (int i = 0; i < RACERS; i++)
                        co_daemon_spawn(&r.d[i], S, NULL, NULL);
                ck_assert_msg(test_wait_until(decided, &r, 60000), "round %d: %d ready, %d exited after 60 s", round,
                              r.ready, r.exited);
                int64_t took = test_now_ms() - t0;
                if (took > worst_ms)
                        worst_ms = took;
                ck_assert_msg(r.ready == 1, "round %d: %d daemons became ready", round, r.ready);
                co_daemon *w = &r.d[r.winner];
                ck_assert(co_daemon_wait_ready(w, 1000));
                char *holder = lease_holder();
                ck_assert_msg(holder && strcmp(holder, w->id) == 0, "round %d: lease holder %s, winner %s", round,
                              holder ? holder : "(none)", w->id);
                free(holder);
                for (int i = 0; i < RACERS; i++) {
                        if (i == r.winner)
                                continue;
                        char *err = proc_stderr(&r.d[i].p);
                        ck_assert_msg(r.d[i].p.status == 1, "round %d racer %d exited %d", round, i, r.d[i].p.status);
                        /* Refused the lease, or (twenty processes starting on
                         * two loaded cores) could not even connect in time:
                         * both exit 1 for systemd to retry (§10.2). */
                        bool refused = strstr(err, "a live lease already exists") != NULL;
                        no_connect += !refused;
                        ck_assert_msg(refused || strstr(err, "can't reach NATS"), "round %d racer %d: %s", round, i,
                                      err);
                        /* Nothing durable without the lease (§9). */
                        ck_assert_msg(!strstr(err, "bound to") && !strstr(err, "Bound"), "round %d racer %d bound: %s",
                                      round, i, err);
                        free(err);
                        proc_destroy(&r.d[i].p);
                }
                assert_exact("lr", (round + 1) * PER_ROUND);
                ck_assert_int_eq(co_daemon_stop(w), 0);
                proc_destroy(&w->p);
                ck_assert_ptr_null(lease_holder()); /* released */
        }
        /* Each inbox entry was written once: the stream holds exactly one
         * message per (message, member), with nothing collapsed. */
        ck_assert_uint_eq(co_messages(INBOX, NULL), (uint64_t)ROUNDS * PER_ROUND * K);
        ck_assert_uint_eq(co_messages(DLV, NULL), (uint64_t)ROUNDS * PER_ROUND * K);
        fprintf(stderr,
                "lease_race: %d rounds x %d daemons: one winner each, %d messages x %zu members, 0 lost, 0 "
                "duplicated; slowest round decided in %lld ms; %d racers could not connect in time\n",
                ROUNDS, RACERS, ROUNDS * PER_ROUND, K, (long long)worst_ms, no_connect);
}
END_TEST

/* The highest index i of "<prefix>-i" with an entry in INBOX or a copy in
 * DLV, or -1: what a daemon fanned out or delivered. */
static int highest_written(const char *prefix)
{
        int top = -1;
        const char *streams[] = {INBOX, DLV};
        size_t pl = strlen(prefix);
        for (size_t s = 0; s < 2; s++) {
                co_msg *m = NULL;
                size_t n = co_msgs_on(streams[s], NULL, &m);
                for (size_t i = 0; i < n; i++) {
                        const char *id = m[i].msg_id;
                        if (id && strncmp(id, prefix, pl) == 0 && id[pl] == '-') {
                                int idx = atoi(id + pl + 1);
                                top = idx > top ? idx : top;
                        }
                }
                co_msgs_free(m, n);
        }
        return top;
}

START_TEST(an_outside_lease_write_stops_the_holder_within_a_lease_check)
{
        co_daemon a, b;
        ck_assert(co_daemon_start(&a, S, NULL));
        char id[64];
        for (int i = 0; i < 60; i++) {
                snprintf(id, sizeof id, "lt-%d", i);
                co_chat(S, ALICE, "general", id, NULL);
        }
        /* An outside writer takes the key unconditionally, mid-load. */
        const char *usurper = "{\"holder\":\"UUSURPER\",\"since\":1,\"ready\":true}";
        uint64_t rev = tu_kv_put("cotal_delivery_" S, CONTRACT_LEASE_KEY, usurper);
        int64_t t0 = test_now_ms();
        /* Chat keeps coming, one message per WRITE_PACE_MS, until the holder
         * is gone: the ones published after it logged the loss must never
         * be fanned out by it. */
        int n = 60, first_after_loss = -1;
        int64_t lost_ms = -1, exit_ms = -1;
        while (test_now_ms() - t0 < WRITE_WATCH_MS) {
                snprintf(id, sizeof id, "lt-%d", n++);
                co_chat(S, ALICE, "general", id, NULL);
                if (lost_ms < 0 && co_daemon_logged_within(&a, LOST_LINE, 0)) {
                        lost_ms = test_now_ms() - t0;
                        first_after_loss = n;
                }
                if (proc_wait(&a.p, WRITE_PACE_MS) == 0) {
                        exit_ms = test_now_ms() - t0;
                        break;
                }
        }
        if (lost_ms < 0 && co_daemon_logged_within(&a, LOST_LINE, 0)) {
                lost_ms = test_now_ms() - t0;
                first_after_loss = n;
        }
        ck_assert_msg(lost_ms >= 0 && lost_ms <= LOST_WITHIN_MS,
                      "the holder logged the loss %lld ms after the outside write (bound %d ms; -1: not in %d ms)",
                      (long long)lost_ms, LOST_WITHIN_MS, WRITE_WATCH_MS);
        ck_assert_msg(exit_ms >= 0 && exit_ms <= LOST_WITHIN_MS + EXIT_SLACK_MS,
                      "the holder exited %lld ms after the outside write (bound %d ms)", (long long)exit_ms,
                      LOST_WITHIN_MS + EXIT_SLACK_MS);
        ck_assert_int_eq(a.p.status, 1);
        char *err = proc_stderr(&a.p);
        ck_assert_msg(strstr(err, LOST_LINE), "%s", err);
        free(err);
        proc_destroy(&a.p);
        /* Nothing published after the holder said it lost the lease was
         * fanned out or delivered (no daemon runs now). */
        int top = highest_written("lt");
        ck_assert_msg(top < first_after_loss, "lt-%d was written after the holder logged the loss (at lt-%d)", top,
                      first_after_loss);
        /* It left the outsider's record alone. */
        uint64_t now_rev = 0;
        json_t *v = co_kv_value("cotal_delivery_" S, CONTRACT_LEASE_KEY, &now_rev);
        ck_assert_uint_eq(now_rev, rev);
        ck_assert_str_eq(json_string_value(json_object_get(v, "holder")), "UUSURPER");
        json_decref(v);

        /* The outsider lets go; a standby takes over and catches up. */
        const char *const standby[] = {"--standby", NULL};
        co_daemon_spawn(&b, S, standby, NULL);
        ck_assert(co_daemon_logged_within(&b, "Standing by", DAEMON_READY_TIMEOUT_MS));
        json_decref(tu_api("$JS.API.STREAM.PURGE.%s%s", "KV_cotal_delivery_", S, NULL));
        int64_t t1 = test_now_ms();
        ck_assert(co_daemon_wait_ready(&b, DAEMON_READY_TIMEOUT_MS) && b.p.pid > 0);
        int64_t settled_ms = 0;
        co_tally t = co_dlv_settle(S, members, K, 1, "lt", n, SETTLE_MS, &settled_ms);
        ck_assert_msg(t.missing == 0 && t.dup == 0 && t.foreign == 0, "%d missing, %d duplicated, %d foreign",
                      t.missing, t.dup, t.foreign);
        fprintf(stderr,
                "lease_takeover: holder logged the loss %lld ms and exited %lld ms after the outside write (lease "
                "check every %d ms); it wrote up to lt-%d of the %d messages published after the write, none of the "
                "%d published after its loss line; %d messages x %zu members, 0 lost, 0 duplicated; complete %lld ms "
                "after the lease was freed\n",
                (long long)lost_ms, (long long)exit_ms, LEASE_CHECK_MS, top, n - 60, n - first_after_loss, n, K,
                (long long)(test_now_ms() - t1));
        ck_assert_int_eq(co_daemon_stop(&b), 0);
        proc_destroy(&b.p);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("faults_lease");
        TCase *tc = tcase_create("lease");
        tcase_add_unchecked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 300);
        tcase_add_test(tc, twenty_daemons_race_ten_rounds_and_one_wins_each);
        tcase_add_test(tc, an_outside_lease_write_stops_the_holder_within_a_lease_check);
        suite_add_tcase(s, tc);
        return tu_run(s);
}
