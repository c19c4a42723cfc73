/* daemon_standby: --standby (beyond upstream). A daemon that finds the
 * lease held waits instead of exiting 1, writes nothing meanwhile (no lease
 * write, no inbox or dlv entry), and takes over as soon as the lease is
 * free: at once after the holder's SIGTERM (it releases, §9), within the
 * bucket TTL after a SIGKILL (the record ages out). Deliveries across both
 * hand-overs form exactly the expected set. Takeover times are printed
 * (they are measured, not asserted tightly: timing belongs to benchmarks). */
#include "cotal.h"

#include "broker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S "sb"
#define DLV "DLV_" S
#define BOB_DLV "cotal." S ".dlv." BOB
#define LEASE_BUCKET "cotal_delivery_" S
#define STANDBY_LOG "Standing by"
#define TAKEOVER_SIGTERM_MS 10000 /* release + one 100 ms poll; generous for a loaded CI */
#define TAKEOVER_SIGKILL_MS 45000 /* 30 s TTL + the renew period slack + a poll */

static co_daemon a, b, c;
static natsSubscription *spy;

static void setup(void)
{
        tu_broker_setup();
        co_provision(S);
        co_acl(S, BOB, "[\"general\"]");
        co_member(S, "general", BOB, 0, 1, -1);
        ck_assert(natsConnection_SubscribeSync(&spy, tu_nc, "$KV." LEASE_BUCKET ".>") == NATS_OK);
        ck_assert(natsConnection_Flush(tu_nc) == NATS_OK);
}

static void teardown(void)
{
        broker_sub_close(tu_nc, &spy);
        co_daemon_finish(&a);
        co_daemon_finish(&b);
        co_daemon_finish(&c);
        tu_broker_teardown();
}

static void chat_n(const char *prefix, int from, int to)
{
        char id[32];
        for (int i = from; i < to; i++) {
                snprintf(id, sizeof id, "%s-%d", prefix, i);
                co_chat(S, ALICE, "general", id, NULL);
        }
}

/* Bob's copies are exactly ids prefix-0 .. prefix-(n-1), once each. */
static void assert_exact(const char *prefix, int n)
{
        ck_assert_uint_eq(co_wait_count(DLV, BOB_DLV, (uint64_t)n, 30000), (uint64_t)n);
        char id[96];
        for (int i = 0; i < n; i++) {
                snprintf(id, sizeof id, "%s-%d:" BOB ":1", prefix, i);
                ck_assert_msg(co_count_id(DLV, BOB_DLV, id) == 1, "%s delivered %d times", id,
                              co_count_id(DLV, BOB_DLV, id));
        }
        ck_assert_uint_eq(co_messages(DLV, BOB_DLV), (uint64_t)n);
}

typedef struct holder_ctx {
        const char *id;
} holder_ctx;

static bool holds_ready(void *arg)
{
        holder_ctx *h = arg;
        json_t *v = co_kv_value(LEASE_BUCKET, "lease.0", NULL);
        const char *holder = json_string_value(json_object_get(v, "holder"));
        bool ok = holder && strcmp(holder, h->id) == 0 && json_is_true(json_object_get(v, "ready"));
        json_decref(v);
        return ok;
}

/* Waits until the standby holds the lease, ready; returns the ms it took
 * from t0, or -1. */
static int64_t takeover_ms(co_daemon *dm, int64_t t0, int64_t timeout_ms)
{
        if (!co_daemon_wait_ready(dm, timeout_ms))
                return -1;
        holder_ctx h = {dm->id};
        if (!test_wait_until(holds_ready, &h, timeout_ms))
                return -1;
        return test_now_ms() - t0;
}

/* Nothing but holder's writes was stored in the lease bucket: every
 * publish the spy saw from anyone else was refused (a create against the
 * live record), so the stream's last sequence equals holder's count. */
static void assert_lease_writes_only_by(const char *holder)
{
        natsMsg *m = NULL;
        uint64_t mine = 0;
        while (natsSubscription_NextMsg(&m, spy, 0) == NATS_OK) {
                json_t *v = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
                const char *who = json_string_value(json_object_get(v, "holder"));
                mine += who && strcmp(who, holder) == 0;
                json_decref(v);
                natsMsg_Destroy(m);
        }
        ck_assert_uint_eq(co_last_seq("KV_" LEASE_BUCKET), mine);
}

START_TEST(standby_writes_nothing_then_takes_over_on_release_and_on_crash)
{
        ck_assert(co_daemon_start(&a, S, NULL));
        chat_n("m", 0, 10);
        assert_exact("m", 10);

        /* B stands by: no exit, no lease write, no entry of its own. */
        co_daemon_spawn(&b, S, (const char *const[]){"--standby", NULL}, NULL);
        ck_assert_msg(co_daemon_logged_within(&b, STANDBY_LOG, 20000), "B did not stand by");
        uint64_t inbox = co_last_seq("INBOX_" S);
        chat_n("m", 10, 20);
        assert_exact("m", 20);
        ck_assert_uint_eq(co_last_seq("INBOX_" S), inbox + 10); /* A's ten, none from B */
        ck_assert_int_eq(proc_wait(&b.p, 0), -ETIMEDOUT);
        assert_lease_writes_only_by(a.id);

        /* A stops cleanly (releases); B takes over. */
        proc_signal(&a.p, SIGTERM);
        ck_assert_int_eq(proc_wait(&a.p, 15000), 0);
        ck_assert_int_eq(a.p.status, 0);
        int64_t t_release = takeover_ms(&b, test_now_ms(), TAKEOVER_SIGTERM_MS);
        fprintf(stderr, "standby: takeover after the holder's SIGTERM: %lld ms\n", (long long)t_release);
        ck_assert_msg(t_release >= 0, "B did not take over after A released the lease");
        chat_n("m", 20, 30);
        assert_exact("m", 30);

        /* C stands by behind B; B crashes; C takes over once the record
         * ages out. Messages published in the gap are delivered by C. */
        co_daemon_spawn(&c, S, (const char *const[]){"--standby", NULL}, NULL);
        ck_assert(co_daemon_logged_within(&c, STANDBY_LOG, 20000));
        proc_signal(&b.p, SIGKILL);
        ck_assert_int_eq(proc_wait(&b.p, 5000), 0);
        int64_t t_kill = test_now_ms();
        chat_n("m", 30, 40);
        int64_t t_crash = takeover_ms(&c, t_kill, TAKEOVER_SIGKILL_MS);
        fprintf(stderr, "standby: takeover after the holder's SIGKILL: %lld ms (lease TTL 30000 ms)\n",
                (long long)t_crash);
        ck_assert_msg(t_crash >= 0, "C did not take over after B crashed");
        assert_exact("m", 40);
        co_daemon_assert_healthy(&c);
}
END_TEST

START_TEST(standby_exits_cleanly_on_sigterm)
{
        co_daemon holder, waiting;
        ck_assert(co_daemon_start(&holder, S, NULL));
        co_daemon_spawn(&waiting, S, (const char *const[]){"--standby", NULL}, NULL);
        ck_assert(co_daemon_logged_within(&waiting, STANDBY_LOG, 20000));
        proc_signal(&waiting.p, SIGTERM);
        ck_assert_int_eq(proc_wait(&waiting.p, 15000), 0);
        ck_assert_int_eq(waiting.p.status, 0);
        holder_ctx h = {holder.id};
        ck_assert(holds_ready(&h)); /* the holder's lease untouched */
        proc_destroy(&waiting.p);
        ck_assert_int_eq(co_daemon_stop(&holder), 0);
        proc_destroy(&holder.p);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("daemon_standby");
        TCase *tc = tcase_create("standby");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 200);
        tcase_add_test(tc, standby_exits_cleanly_on_sigterm);
        tcase_add_test(tc, standby_writes_nothing_then_takes_over_on_release_and_on_crash);
        suite_add_tcase(s, tc);
        return co_run(s);
}
