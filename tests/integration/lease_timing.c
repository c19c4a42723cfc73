/* lease_timing: the lease module (src/lease.c) against a real broker,
 * reached through a relay (tests/lib/tcpproxy) that can hold the broker's
 * replies back. PROTOCOL §9: lease.0 lives 30 s from its store time, so the
 * holder may count only from a moment no later than that: the time it sent
 * the write, never the time its PubAck came back (issue 13 item 7). A
 * PubAck held back 400 ms must not move the holder's clock. A renew whose
 * PubAck never came may still have landed: the lease check must take it
 * for ours (not for a rival's write), and the release must delete it. */
#include "cotal.h"
#include "tcpproxy.h"

#include "clock.h"
#include "contract_config.h"
#include "lease.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S "lt"
#define LEASE_BUCKET "cotal_delivery_" S
#define HOLDER "UTIMINGTIMINGTIMINGTIMINGTIMINGTIMINGTIMINGTIMINGTIMINGT"
#define HOLD_MS 400
/* Millisecond truncation of three clocks (monotonic, wall, the server's
 * store time) leaves a few ms of noise in the comparison; the defect it
 * catches is HOLD_MS large. */
#define CLOCK_NOISE_MS 5

static tcpproxy proxy;
static natsConnection *nc;

static void setup(void)
{
        tu_broker_setup();
        co_provision(S);
        ck_assert_int_eq(tcpproxy_start(&proxy, tu_broker.port), 0);
        natsOptions *o = NULL;
        ck_assert(natsOptions_Create(&o) == NATS_OK);
        ck_assert(natsOptions_SetURL(o, proxy.url) == NATS_OK);
        ck_assert(natsOptions_SetMaxReconnect(o, 0) == NATS_OK);
        ck_assert(natsConnection_Connect(&nc, o) == NATS_OK);
        natsOptions_Destroy(o);
}

static void teardown(void)
{
        natsConnection_Close(nc);
        natsConnection_Destroy(nc);
        nc = NULL;
        tcpproxy_stop(&proxy);
        tu_broker_teardown();
}

/* The wall-clock ms of a monotonic ms reading of this process. */
static int64_t wall_of(int64_t mono_ms)
{
        return mono_ms + (clock_wall_ms() - clock_mono_ms());
}

/* The server's store time of lease.0's latest entry, read directly. */
static int64_t stored_ms(lease *l, uint64_t *rev)
{
        kv_entry e;
        ck_assert_int_eq(kv_get(&l->kv, CONTRACT_LEASE_KEY, &e), 0);
        int64_t t = e.time_ms;
        *rev = e.revision;
        kv_entry_fini(&e);
        return t;
}

/* One write with its PubAck held back: the holder's clock must read no
 * later than the record's store time. */
static void assert_counts_from_send(lease *l, const char *what, int (*write)(lease *))
{
        tcpproxy_hold_for(&proxy, HOLD_MS);
        int64_t t0 = clock_mono_ms();
        ck_assert_msg(write(l) == 0, "%s: %s", what, l->last_error);
        int64_t took = clock_mono_ms() - t0;
        ck_assert_msg(took >= HOLD_MS - CLOCK_NOISE_MS, "%s returned in %lld ms: the PubAck was not held", what,
                      (long long)took);
        uint64_t rev = 0;
        int64_t stored = stored_ms(l, &rev);
        ck_assert_uint_eq(rev, l->revision);
        int64_t counted = wall_of(l->last_write_ms);
        fprintf(stderr, "lease_timing: %s: PubAck after %lld ms; counted from %+lld ms relative to the store time\n",
                what, (long long)took, (long long)(counted - stored));
        ck_assert_msg(counted <= stored + CLOCK_NOISE_MS,
                      "%s: the lease is counted from %lld ms after its store time (PubAck held %d ms)", what,
                      (long long)(counted - stored), HOLD_MS);
}

START_TEST(every_lease_write_counts_from_before_it_was_sent)
{
        lease l;
        ck_assert_int_eq(lease_init(&l, nc, LEASE_BUCKET, HOLDER), 0);
        assert_counts_from_send(&l, "acquire", lease_acquire);
        assert_counts_from_send(&l, "mark ready", lease_mark_ready);
        assert_counts_from_send(&l, "renew", lease_renew);
        ck_assert_int_eq(lease_release(&l), 0);
        lease_fini(&l);
}
END_TEST

/* A renew sent while the relay holds replies past the renew's timeout:
 * stored, but unconfirmed. */
static void renew_unconfirmed(lease *l)
{
        uint64_t before = l->revision;
        l->kv.timeout_ms = 300;
        tcpproxy_hold_for(&proxy, 1000);
        ck_assert_int_lt(lease_renew(l), 0);
        ck_assert_uint_eq(l->revision, before);
        ck_assert_ptr_nonnull(l->renew_value);
        /* The reads below are answered once the hold ends. */
        l->kv.timeout_ms = 3000;
        uint64_t rev = 0;
        (void)stored_ms(l, &rev);
        ck_assert_uint_gt(rev, before);
}

START_TEST(a_check_takes_an_unconfirmed_renew_of_ours_for_ours)
{
        lease l;
        ck_assert_int_eq(lease_init(&l, nc, LEASE_BUCKET, HOLDER), 0);
        ck_assert_int_eq(lease_acquire(&l), 0);
        ck_assert_int_eq(lease_check(&l), 0);
        int64_t sent = clock_mono_ms();
        renew_unconfirmed(&l);
        uint64_t rev = 0;
        int64_t stored = stored_ms(&l, &rev);
        ck_assert_int_eq(lease_check(&l), 1); /* adopted */
        ck_assert_uint_eq(l.revision, rev);
        ck_assert_ptr_null(l.renew_value);
        ck_assert(l.ready);
        /* Counted from its send, not from when it was read back. */
        ck_assert_int_ge(l.last_write_ms, sent);
        ck_assert_int_le(wall_of(l.last_write_ms), stored + CLOCK_NOISE_MS);
        ck_assert_int_eq(lease_check(&l), 0);
        ck_assert_int_eq(lease_renew(&l), 0);
        ck_assert_int_eq(lease_release(&l), 0);
        ck_assert_ptr_null(co_kv_value(LEASE_BUCKET, CONTRACT_LEASE_KEY, NULL));
        lease_fini(&l);
}
END_TEST

START_TEST(a_release_after_an_unconfirmed_renew_deletes_what_landed)
{
        lease l;
        ck_assert_int_eq(lease_init(&l, nc, LEASE_BUCKET, HOLDER), 0);
        ck_assert_int_eq(lease_acquire(&l), 0);
        renew_unconfirmed(&l);
        /* Guarded by the acquire's revision alone, the delete would be
         * refused and leave the record to the 30 s TTL. */
        ck_assert_int_eq(lease_release(&l), 0);
        uint64_t rev = 0;
        ck_assert_ptr_null(co_kv_value(LEASE_BUCKET, CONTRACT_LEASE_KEY, &rev));
        ck_assert_uint_gt(rev, 0); /* a DEL marker */
        lease_fini(&l);
}
END_TEST

static void rival_write(void)
{
        tu_kv_put(LEASE_BUCKET, CONTRACT_LEASE_KEY, "{\"holder\":\"URIVAL\",\"since\":1,\"ready\":true}");
}

/* An unconditional delete marker, as `nats kv del` writes it. */
static void outside_delete(void)
{
        natsMsg *m = NULL;
        ck_assert(natsMsg_Create(&m, "$KV." LEASE_BUCKET "." CONTRACT_LEASE_KEY, NULL, NULL, 0) == NATS_OK);
        ck_assert(natsMsgHeader_Set(m, "KV-Operation", "DEL") == NATS_OK);
        jsCtx *js = NULL;
        ck_assert(natsConnection_JetStream(&js, tu_nc, NULL) == NATS_OK);
        jsPubAck *pa = NULL;
        ck_assert(js_PublishMsg(&pa, js, m, NULL, NULL) == NATS_OK);
        jsPubAck_Destroy(pa);
        jsCtx_Destroy(js);
        natsMsg_Destroy(m);
}

static void purge(void)
{
        json_decref(tu_api("$JS.API.STREAM.PURGE.%s%s", "KV_" LEASE_BUCKET, "", NULL));
}

START_TEST(a_check_reports_a_rival_write_a_delete_and_a_purge_as_lost)
{
        const struct {
                void (*outside)(void);
                const char *says;
        } cases[] = {
                {rival_write, "written by URIVAL"},
                {outside_delete, "deleted at revision"},
                {purge, "has no entry"},
        };
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
                lease l;
                ck_assert_int_eq(lease_init(&l, nc, LEASE_BUCKET, HOLDER), 0);
                ck_assert_int_eq(lease_acquire(&l), 0);
                ck_assert_int_eq(lease_check(&l), 0);
                cases[i].outside();
                ck_assert_int_eq(lease_check(&l), -ESTALE);
                ck_assert_msg(strstr(l.last_error, cases[i].says), "%s", l.last_error);
                lease_fini(&l);
                purge();
        }
}
END_TEST

int main(void)
{
        Suite *s = suite_create("lease_timing");
        TCase *tc = tcase_create("timing");
        tcase_add_unchecked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, every_lease_write_counts_from_before_it_was_sent);
        tcase_add_test(tc, a_check_takes_an_unconfirmed_renew_of_ours_for_ours);
        tcase_add_test(tc, a_release_after_an_unconfirmed_renew_deletes_what_landed);
        tcase_add_test(tc, a_check_reports_a_rival_write_a_delete_and_a_purge_as_lost);
        suite_add_tcase(s, tc);
        return tu_run(s);
}
