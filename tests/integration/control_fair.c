/* control_fair: one agent must not make the control service unavailable
 * to the others (issue 14 item 2). Requests wait in a line per agent and
 * the lines are served in turn (src/ctlqueue.h); an agent with 32 waiting
 * is answered busy at once; requests whose reply is not the sender's own
 * are dropped as §8.2 step 1 says, their log lines bounded. Checked by
 * order and count, not by time: the victim's join is answered before the
 * flood's, whatever the machine's speed. */
#include "broker.h"
#include "cotal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S "cf"
#define MALLORY "UMALLORYMALLORYMALLORYMALLORYMALLORYMALLORYMALLORYMALLOR"
#define CTL "cotal." S ".ctl.delivery."
#define FLOOD 2000
#define PER_AGENT 32 /* CONTROL_PER_AGENT */
#define BUSY_TEXT "busy: too many control requests from this agent are waiting; retry later"
#define REQ_MS 20000

static co_daemon dm;
static char sock[320];

/* Replies, in the order they arrive. */
static struct {
        pthread_mutex_t lock;
        int mallory_served, mallory_busy;
        int mallory_served_before_bob;
        bool bob_answered;
        char bob_reply[512];
} seen = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
        (void)nc;
        (void)sub;
        (void)arg;
        const char *subject = natsMsg_GetSubject(m);
        json_t *r = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
        const char *err = json_string_value(json_object_get(r, "error"));
        pthread_mutex_lock(&seen.lock);
        if (strncmp(subject, CTL MALLORY ".reply.", strlen(CTL MALLORY ".reply.")) == 0) {
                if (err && strcmp(err, BUSY_TEXT) == 0)
                        seen.mallory_busy++;
                else
                        seen.mallory_served++;
        } else if (strncmp(subject, CTL BOB ".reply.", strlen(CTL BOB ".reply.")) == 0 && !seen.bob_answered) {
                seen.bob_answered = true;
                seen.mallory_served_before_bob = seen.mallory_served;
                snprintf(seen.bob_reply, sizeof seen.bob_reply, "%.*s", natsMsg_GetDataLength(m), natsMsg_GetData(m));
        }
        pthread_mutex_unlock(&seen.lock);
        json_decref(r);
        natsMsg_Destroy(m);
}

static void setup(void)
{
        tu_broker_setup();
        co_provision(S);
        co_acl(S, MALLORY, "[\"general\"]");
        co_acl(S, BOB, "[\"general\"]");
        co_acl(S, CAROL, "[\"general\"]");
        memset(&dm, 0, sizeof dm);
        snprintf(sock, sizeof sock, "%.200s/diag.sock", tu_broker.dir);
        ck_assert(co_daemon_start(&dm, S, (const char *const[]){"--diag-socket", sock, NULL}));
}

static void teardown(void)
{
        co_daemon_finish(&dm);
        tu_broker_teardown();
}

static bool all_in(void *arg)
{
        (void)arg;
        pthread_mutex_lock(&seen.lock);
        bool done = seen.bob_answered && seen.mallory_served + seen.mallory_busy == FLOOD;
        pthread_mutex_unlock(&seen.lock);
        return done;
}

static uint64_t shed_count(void)
{
        json_t *doc = co_diag(sock, NULL);
        uint64_t v = (uint64_t)json_integer_value(json_object_get(json_object_get(doc, "counters"), "control_shed"));
        json_decref(doc);
        return v;
}

/* Mallory sends 2,000 listMemberships at once, then Bob one join: Bob is
 * answered after at most a few of Mallory's, the rest of her flood is
 * answered busy (counted), and every request gets exactly one answer. */
START_TEST(a_flood_from_one_agent_does_not_hold_up_another)
{
        natsSubscription *sub = NULL;
        ck_assert(natsConnection_Subscribe(&sub, tu_nc, CTL "*.reply.>", on_reply, NULL) == NATS_OK);
        ck_assert(natsConnection_Flush(tu_nc) == NATS_OK);
        char reply[256];
        const char *list = "{\"op\":\"listMemberships\",\"from\":{\"id\":\"" MALLORY "\"}}";
        for (int i = 0; i < FLOOD; i++) {
                snprintf(reply, sizeof reply, CTL MALLORY ".reply.%d", i);
                ck_assert(natsConnection_PublishRequestString(tu_nc, CTL MALLORY, reply, list) == NATS_OK);
        }
        ck_assert(natsConnection_PublishRequestString(
                          tu_nc, CTL BOB, CTL BOB ".reply.join",
                          "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"general\"},\"from\":{\"id\":\"" BOB
                          "\"}}") == NATS_OK);
        ck_assert(natsConnection_Flush(tu_nc) == NATS_OK);
        ck_assert_msg(test_wait_until(all_in, NULL, REQ_MS), "served %d, busy %d of %d; bob answered: %d",
                      seen.mallory_served, seen.mallory_busy, FLOOD, seen.bob_answered);
        broker_sub_close(tu_nc, &sub);
        ck_assert_msg(strstr(seen.bob_reply, "\"ok\":true") && strstr(seen.bob_reply, "\"durable\":true"),
                      "bob's join: %s", seen.bob_reply);
        fprintf(stderr, "fair: %d of mallory's %d served (%d before bob's join), %d answered busy\n",
                seen.mallory_served, FLOOD, seen.mallory_served_before_bob, seen.mallory_busy);
        /* In arrival order Bob would have waited for all 2,000. */
        ck_assert_msg(seen.mallory_served_before_bob <= PER_AGENT + 2, "bob waited for %d of mallory's requests",
                      seen.mallory_served_before_bob);
        ck_assert_int_gt(seen.mallory_busy, 0);
        ck_assert_uint_ge(shed_count(), (uint64_t)seen.mallory_busy);
        ck_assert(co_daemon_logged_within(&dm, "too many waiting from one agent (answered busy) (latest: " MALLORY ")",
                                          REQ_MS));
}
END_TEST

static int count_occurrences(const char *hay, const char *needle)
{
        int n = 0;
        for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
                n++;
        return n;
}

/* 5,000 requests whose reply is another agent's lane: none answered, none
 * executed, §8.2's own line for the first 20 only, the rest summed; a
 * legitimate join right after them is served. */
START_TEST(unbound_requests_are_dropped_with_bounded_log_lines)
{
        const char *join =
                "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"general\"},\"from\":{\"id\":\"" MALLORY "\"}}";
        for (int i = 0; i < 5000; i++)
                ck_assert(natsConnection_PublishRequestString(tu_nc, CTL MALLORY, CTL BOB ".reply.stolen", join) ==
                          NATS_OK);
        ck_assert(natsConnection_Flush(tu_nc) == NATS_OK);
        json_t *r = co_request(
                S, CAROL, "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"general\"},\"from\":{\"id\":\"" CAROL "\"}}",
                NULL, NULL, REQ_MS);
        char *text = co_json_text(r);
        ck_assert_msg(json_is_true(json_object_get(r, "ok")), "carol's join: %s", text);
        free(text);
        json_decref(r);
        ck_assert(co_daemon_logged_within(
                &dm, "reply subject not under the sender's own reply subtree (latest: " CTL MALLORY ")", REQ_MS));
        char *err = proc_stderr(&dm.p);
        ck_assert_int_eq(count_occurrences(err, "rejected delivery request on " CTL MALLORY ": reply target"), 20);
        free(err);
        ck_assert_uint_eq(shed_count(), 5000);
        /* Nothing was executed for Mallory. */
        ck_assert_ptr_null(co_member_record(S, "general", MALLORY));
}
END_TEST

/* listMemberships is answered from the watched members cache: 4,500
 * records of ~260-byte keys (a listing of about 1.1 MB, over the broker's
 * 1 MiB max payload) get a clear error instead of no reply, and a listing
 * written just before the request is complete (the cache is fenced). */
START_TEST(a_listing_over_the_max_payload_is_answered_with_an_error)
{
        char channel[300];
        char pad[201];
        memset(pad, 'x', 200);
        pad[200] = '\0';
        for (int i = 0; i < 4500; i++) {
                snprintf(channel, sizeof channel, "c%d-%s", i, pad);
                co_member(S, channel, MALLORY, 0, 1, -1);
        }
        json_t *r = co_request(S, MALLORY, "{\"op\":\"listMemberships\",\"from\":{\"id\":\"" MALLORY "\"}}", NULL, NULL,
                               REQ_MS);
        char *text = co_json_text(r);
        const char *err = json_string_value(json_object_get(r, "error"));
        ck_assert_msg(json_is_false(json_object_get(r, "ok")) && err &&
                              strstr(err, "reply too large: over the broker's max payload of 1048576 bytes"),
                      "mallory's list: %.300s", text);
        free(text);
        json_decref(r);
        ck_assert(co_daemon_logged_within(&dm, "over the broker's max payload 1048576: answered with an error instead",
                                          REQ_MS));
        /* Records written right before a listing are in it. */
        co_member(S, "general", BOB, 0, 3, -1);
        co_member(S, "side", BOB, 0, 1, 5);
        r = co_request(S, BOB, "{\"op\":\"listMemberships\",\"from\":{\"id\":\"" BOB "\"}}", NULL, NULL, REQ_MS);
        text = co_json_text(r);
        json_t *list = json_object_get(json_object_get(r, "data"), "memberships");
        ck_assert_msg(json_array_size(list) == 1 &&
                              json_integer_value(json_object_get(json_array_get(list, 0), "generation")) == 3,
                      "bob's list: %s", text);
        free(text);
        json_decref(r);
}
END_TEST

/* A request over 64 KiB never waits in a line: answered with an error at
 * once, counted and logged as shed; the agent's next small one is served. */
START_TEST(an_oversized_request_is_answered_at_once)
{
        size_t big = 100000;
        char *body = malloc(big + 200);
        ck_assert_ptr_nonnull(body);
        int n = snprintf(body, 200, "{\"op\":\"listMemberships\",\"from\":{\"id\":\"" MALLORY "\"},\"pad\":\"");
        memset(body + n, 'p', big);
        strcpy(body + n + big, "\"}");
        json_t *r = co_request(S, MALLORY, body, NULL, NULL, REQ_MS);
        free(body);
        char *text = co_json_text(r);
        ck_assert_msg(json_is_false(json_object_get(r, "ok")) &&
                              strcmp(json_string_value(json_object_get(r, "error")),
                                     "request too large: a control request is at most 65536 bytes") == 0,
                      "reply: %s", text);
        free(text);
        json_decref(r);
        ck_assert_uint_eq(shed_count(), 1);
        ck_assert(co_daemon_logged_within(&dm,
                                          "shed 1 control request: over 65536 bytes (answered with an error) "
                                          "(latest: " MALLORY ")",
                                          REQ_MS));
        r = co_request(S, MALLORY, "{\"op\":\"listMemberships\",\"from\":{\"id\":\"" MALLORY "\"}}", NULL, NULL,
                       REQ_MS);
        ck_assert(json_is_true(json_object_get(r, "ok")));
        json_decref(r);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("control_fair");
        TCase *tc = tcase_create("core");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, a_flood_from_one_agent_does_not_hold_up_another);
        tcase_add_test(tc, unbound_requests_are_dropped_with_bounded_log_lines);
        tcase_add_test(tc, a_listing_over_the_max_payload_is_answered_with_an_error);
        tcase_add_test(tc, an_oversized_request_is_answered_at_once);
        suite_add_tcase(s, tc);
        return co_run(s);
}
