/* daemon_lease: the lease lifecycle of PROTOCOL §9 and §10 with real
 * daemon processes: the first write is ready:false and becomes ready:true
 * only after binding; a second daemon against a live lease exits 1 and
 * writes nothing; SIGTERM releases with a conditional delete and exits 0,
 * after which a new daemon becomes ready at once; a lease rewritten,
 * deleted or purged by someone else is noticed within about a second (the
 * daemon reads lease.0 every second between renews), ending the daemon with
 * exit 1 without touching what the outsider left. */
#include "cotal.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S "ls"
#define LEASE_SUBJ "$KV.cotal_delivery_" S ".lease.0"
/* The daemon reads lease.0 every 1000 ms (main.c LEASE_CHECK_MS); allow
 * for its tick, the read and a loaded machine. */
#define LOST_WITHIN_MS 2500
#define EXIT_WITHIN_MS (LOST_WITHIN_MS + 5000)
#define LOST_LINE "✗ delivery: lost the lease ("

static void setup(void)
{
        tu_broker_setup();
        co_provision(S);
}

static void teardown(void)
{
        tu_broker_teardown();
}

/* The lease's latest entry: revision and decoded value (NULL for a
 * DEL/PURGE marker or when there is none). */
typedef struct lease_state {
        uint64_t rev;
        json_t *value;
} lease_state;

static lease_state read_lease(void)
{
        lease_state st = {0};
        st.value = co_kv_value("cotal_delivery_" S, "lease.0", &st.rev);
        return st;
}

START_TEST(ready_only_after_binding_and_released_on_sigterm)
{
        natsSubscription *spy = NULL;
        ck_assert(natsConnection_SubscribeSync(&spy, tu_nc, LEASE_SUBJ) == NATS_OK);
        natsConnection_Flush(tu_nc);
        co_daemon a;
        ck_assert(co_daemon_start(&a, S, NULL));

        /* §9: acquire writes ready:false, mark-ready rewrites ready:true. */
        natsMsg *m1 = NULL, *m2 = NULL;
        ck_assert(natsSubscription_NextMsg(&m1, spy, 5000) == NATS_OK);
        ck_assert(natsSubscription_NextMsg(&m2, spy, 5000) == NATS_OK);
        json_t *v1 = json_loadb(natsMsg_GetData(m1), (size_t)natsMsg_GetDataLength(m1), 0, NULL);
        json_t *v2 = json_loadb(natsMsg_GetData(m2), (size_t)natsMsg_GetDataLength(m2), 0, NULL);
        const char *h = NULL;
        ck_assert(natsMsgHeader_Get(m1, "Nats-Expected-Last-Subject-Sequence", &h) == NATS_OK);
        ck_assert_str_eq(h, "0"); /* create-if-absent */
        ck_assert(json_is_false(json_object_get(v1, "ready")));
        ck_assert(json_is_true(json_object_get(v2, "ready")));
        ck_assert_str_eq(json_string_value(json_object_get(v1, "holder")), a.id);
        ck_assert_str_eq(json_string_value(json_object_get(v2, "holder")), a.id);
        ck_assert_int_eq(json_object_size(v2), 3); /* holder, since, ready */
        json_decref(v1);
        json_decref(v2);
        natsMsg_Destroy(m1);
        natsMsg_Destroy(m2);

        /* A second daemon: exit 1, nothing written. */
        lease_state before = read_lease();
        co_daemon b;
        co_daemon_spawn(&b, S, NULL, NULL);
        ck_assert_int_eq(proc_wait(&b.p, 20000), 0);
        ck_assert_int_eq(b.p.status, 1);
        char *err = proc_stderr(&b.p);
        ck_assert_msg(strstr(err, "✗ delivery: a live lease already exists for shard 0"), "%s", err);
        ck_assert_msg(strstr(err, a.id), "the refusal should name the holder: %s", err);
        free(err);
        lease_state after = read_lease();
        ck_assert_uint_eq(after.rev, before.rev);
        json_decref(before.value);
        json_decref(after.value);
        proc_destroy(&b.p);

        /* SIGTERM: exit 0, conditional delete of our own revision. */
        lease_state held = read_lease();
        ck_assert_int_eq(co_daemon_stop(&a), 0);
        natsMsg *del = NULL;
        while (natsSubscription_NextMsg(&del, spy, 5000) == NATS_OK) {
                const char *op = NULL;
                if (natsMsgHeader_Get(del, "KV-Operation", &op) == NATS_OK && strcmp(op, "DEL") == 0)
                        break;
                natsMsg_Destroy(del);
                del = NULL;
        }
        ck_assert_msg(del, "no delete marker on release");
        char rev[24];
        snprintf(rev, sizeof rev, "%llu", (unsigned long long)read_lease().rev - 1);
        ck_assert(natsMsgHeader_Get(del, "Nats-Expected-Last-Subject-Sequence", &h) == NATS_OK);
        ck_assert_uint_ge(strtoull(h, NULL, 10), held.rev); /* its own last revision (a renew may follow) */
        natsMsg_Destroy(del);
        json_decref(held.value);
        natsSubscription_Destroy(spy);
        proc_destroy(&a.p);

        /* A new daemon is ready at once (no TTL wait). */
        int64_t t0 = test_now_ms();
        co_daemon c;
        ck_assert(co_daemon_start(&c, S, NULL));
        ck_assert_msg(test_now_ms() - t0 < 10000, "takeover waited for the TTL");
        ck_assert_int_eq(co_daemon_stop(&c), 0);
        proc_destroy(&c.p);
}
END_TEST

/* Starts a daemon, lets outside() touch lease.0, and checks that the
 * daemon logs the loss within LOST_WITHIN_MS, exits 1, and leaves lease.0
 * as the outsider made it (revision *rev). Returns the daemon's log. */
static char *outside_write_ends_the_daemon(uint64_t (*outside)(void), const char *reason)
{
        co_daemon a;
        ck_assert(co_daemon_start(&a, S, NULL));
        uint64_t rev = outside();
        int64_t t0 = test_now_ms();
        bool logged = co_daemon_logged_within(&a, LOST_LINE, LOST_WITHIN_MS);
        int64_t lost_ms = test_now_ms() - t0;
        ck_assert_int_eq(proc_wait(&a.p, EXIT_WITHIN_MS), 0);
        int64_t exit_ms = test_now_ms() - t0;
        char *err = proc_stderr(&a.p);
        ck_assert_msg(logged, "no loss within %d ms: %s", LOST_WITHIN_MS, err);
        ck_assert_int_eq(a.p.status, 1);
        ck_assert_msg(strstr(err, "exiting so the holder is single") && strstr(err, reason), "%s", err);
        fprintf(stderr, "daemon_lease: %s: loss logged %lld ms, exit %lld ms after the outside change\n", reason,
                (long long)lost_ms, (long long)exit_ms);
        /* It did not delete, overwrite or re-create anything. */
        lease_state st = read_lease();
        ck_assert_uint_eq(st.rev, rev);
        json_decref(st.value);
        proc_destroy(&a.p);
        return err;
}

static uint64_t usurp(void)
{
        const char *usurper = "{\"holder\":\"UUSURPER\",\"since\":1,\"ready\":true}";
        return tu_kv_put("cotal_delivery_" S, "lease.0", usurper);
}

/* An unconditional delete, as an operator's `nats kv del` writes it. */
static uint64_t delete_marker(void)
{
        natsMsg *m = NULL;
        ck_assert(natsMsg_Create(&m, LEASE_SUBJ, NULL, NULL, 0) == NATS_OK);
        ck_assert(natsMsgHeader_Set(m, "KV-Operation", "DEL") == NATS_OK);
        jsCtx *js = NULL;
        ck_assert(natsConnection_JetStream(&js, tu_nc, NULL) == NATS_OK);
        jsPubAck *pa = NULL;
        ck_assert(js_PublishMsg(&pa, js, m, NULL, NULL) == NATS_OK);
        uint64_t seq = pa->Sequence;
        jsPubAck_Destroy(pa);
        jsCtx_Destroy(js);
        natsMsg_Destroy(m);
        return seq;
}

/* A purge of the bucket's stream: the key has no entry at all. */
static uint64_t purge(void)
{
        json_decref(tu_api("$JS.API.STREAM.PURGE.%s%s", "KV_cotal_delivery_", S, NULL));
        return 0;
}

START_TEST(lease_rewritten_by_someone_else_ends_the_daemon)
{
        char *err = outside_write_ends_the_daemon(usurp, "written by UUSURPER");
        free(err);
        lease_state st = read_lease();
        ck_assert_str_eq(json_string_value(json_object_get(st.value, "holder")), "UUSURPER");
        json_decref(st.value);
        json_decref(tu_api("$JS.API.STREAM.PURGE.%s%s", "KV_cotal_delivery_", S, NULL));
}
END_TEST

START_TEST(lease_deleted_or_purged_by_someone_else_ends_the_daemon)
{
        free(outside_write_ends_the_daemon(delete_marker, "lease.0 deleted at revision"));
        free(outside_write_ends_the_daemon(purge, "lease.0 has no entry"));
}
END_TEST

int main(void)
{
        Suite *s = suite_create("daemon_lease");
        TCase *tc = tcase_create("lease");
        tcase_add_unchecked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, ready_only_after_binding_and_released_on_sigterm);
        tcase_add_test(tc, lease_rewritten_by_someone_else_ends_the_daemon);
        tcase_add_test(tc, lease_deleted_or_purged_by_someone_else_ends_the_daemon);
        suite_add_tcase(s, tc);
        return tu_run(s);
}
