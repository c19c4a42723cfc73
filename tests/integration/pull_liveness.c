/* pull_liveness: the pull client's count of open requests against what
 * the server holds (src/pull.c). Deliveries name no request, so the count
 * can drift: a request the server has finished may still look open with
 * credit left. Before idle heartbeats that drift moved from request to
 * request and the caller got one short batch per half expiry (the soak
 * against nats-server 2.10.27: 7 chat messages per 2.5 s for minutes).
 * Here the drift is planted by hand (a request the server never saw) and
 * the fetches must run at the server's pace anyway. */
#include "cotal.h"
#include "pull.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STREAM "PL"
#define DURABLE "pl"
#define EXPIRES_MS 10000 /* half expiry (5 s) is past every wait below */

static natsConnection *nc;

static void setup(void)
{
        tu_broker_setup();
        ck_assert(natsConnection_ConnectTo(&nc, tu_broker.url) == NATS_OK);
        json_t *r = tu_api("$JS.API.STREAM.CREATE.%s%s", STREAM, "",
                           json_pack("{s:s, s:[s], s:s}", "name", STREAM, "subjects", "pl.>", "storage", "file"));
        ck_assert_msg(!json_object_get(r, "error"), "stream create");
        json_decref(r);
        r = tu_api("$JS.API.CONSUMER.DURABLE.CREATE.%s.%s", STREAM, DURABLE,
                   json_pack("{s:s, s:{s:s, s:s, s:I}}", "stream_name", STREAM, "config", "durable_name", DURABLE,
                             "ack_policy", "explicit", "ack_wait", (json_int_t)60000000000LL));
        ck_assert_msg(!json_object_get(r, "error"), "consumer create");
        json_decref(r);
}

static void teardown(void)
{
        natsConnection_Destroy(nc);
        nc = NULL;
        tu_broker_teardown();
}

static void publish(int n)
{
        for (int i = 0; i < n; i++) {
                char body[32];
                snprintf(body, sizeof body, "m%d", i);
                natsMsg *reply = NULL;
                ck_assert(natsConnection_RequestString(&reply, nc, "pl.x", body, 5000) == NATS_OK);
                natsMsg_Destroy(reply);
        }
}

/* Takes what one fetch returns, acking it; the count taken. */
static int fetch_ack(pull_sub *p, int max, int64_t wait_ms)
{
        natsMsg *msgs[64];
        int n = pull_fetch(p, msgs, max, EXPIRES_MS, wait_ms);
        ck_assert_msg(n >= 0, "pull_fetch: %d (%s)", n, p->last_error);
        for (int i = 0; i < n; i++) {
                ck_assert_int_eq(pull_ack(p, msgs[i], "+ACK"), 0);
                natsMsg_Destroy(msgs[i]);
        }
        return n;
}

/* A request the client counts as open with credit left but the server
 * does not hold: the next fetch must not wait for it until its half
 * expiry. The idle heartbeats the real requests ask for end the wait
 * after 1.5 s of silence, and from then on the count is right: the rest
 * arrives at the server's pace. */
START_TEST(a_request_the_server_forgot_does_not_throttle_the_fetches)
{
        const int total = 200, batch = 8;
        publish(total);
        pull_sub p;
        ck_assert_int_eq(pull_start(&p, nc, "_INBOX_PL", STREAM, DURABLE), 0);
        p.open[p.n_open++] = (pull_request){
                .id = 999999, .requested = 1, .expires_ms = test_now_ms() + EXPIRES_MS, .heartbeat = true};
        p.heard_ms = test_now_ms();
        /* Within 4 s (half expiry is 5 s): something arrives. */
        int got = fetch_ack(&p, batch, 4000);
        ck_assert_msg(got > 0, "nothing fetched in 4 s behind a request the server never saw");
        ck_assert_uint_eq(p.silences, 1);
        /* The rest at the server's pace: each fetch waits at most 500 ms
         * for its first message, so 100 turns allow 50 s; a drifted count
         * sends each request only at its predecessor's half expiry (5 s)
         * and would fetch about 70 of the 192 in that time. (A turn may
         * return a part of a batch whose rest is still on the wire: the
         * number of turns is not the measure.) */
        int turns = 0;
        while (got < total && turns++ < 100)
                got += fetch_ack(&p, batch, 500);
        ck_assert_msg(got == total, "fetched %d of %d in %d turns of at most 0.5 s", got, total, turns);
        ck_assert_uint_eq(p.silences, 1);
        pull_stop(&p);
}
END_TEST

/* Idle heartbeats keep a live request open: a caught-up consumer waits
 * with the same request for longer than the silence bound, and a message
 * published then is delivered to it. */
START_TEST(a_live_idle_request_is_kept)
{
        pull_sub p;
        ck_assert_int_eq(pull_start(&p, nc, "_INBOX_PL", STREAM, DURABLE), 0);
        ck_assert_int_eq(fetch_ack(&p, 4, 3000), 0); /* nothing there: 3 s of heartbeats */
        ck_assert_int_eq(p.n_open, 1);
        unsigned id = p.open[0].id;
        ck_assert_uint_eq(p.silences, 0);
        publish(1);
        ck_assert_int_eq(fetch_ack(&p, 4, 3000), 1);
        ck_assert_uint_eq(p.silences, 0);
        ck_assert_uint_eq(p.next_id, id); /* served by that request: no other was sent */
        pull_stop(&p);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("pull_liveness");
        TCase *tc = tcase_create("pull");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, a_request_the_server_forgot_does_not_throttle_the_fetches);
        tcase_add_test(tc, a_live_idle_request_is_kept);
        suite_add_tcase(s, tc);
        return co_run(s);
}
