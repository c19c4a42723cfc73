/* control_fence: PROTOCOL §8.6 answers when the join's own reads or
 * writes fail (issue 13 item 6).
 *
 * - The fence: a join that cannot read the chat stream's last sequence
 *   after its commit must not activate with an empty catch-up (messages the
 *   fan-out handled just before the commit would never reach the member);
 *   it answers ok:false and leaves the record open for the agent's retry.
 * - Activation: when activate() runs out of its CAS rounds (§8.7), §8.6
 *   answers ok:true, durable:false, "activation superseded…", never the
 *   CAS-exhausted error. A retry once writes go through activates. */
#include "cotal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S "cf"

static const char *text_of(const json_t *j, const char *key)
{
        const char *s = json_string_value(json_object_get(j, key));
        return s ? s : "";
}
#define JOIN                                                                                                           \
        "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"general\"},\"from\":{\"id\":\"" BOB "\",\"name\":\"bob\"}}"

static co_daemon dm;

static void setup(void)
{
        tu_broker_setup();
        co_provision(S);
        co_acl(S, BOB, "[\"general\"]");
        ck_assert(co_daemon_start(&dm, S, NULL));
}

static void teardown(void)
{
        co_daemon_finish(&dm);
        tu_broker_teardown();
}

static bool activated(void)
{
        json_t *rec = co_member_record(S, "general", BOB);
        bool a = rec && json_is_true(json_object_get(rec, "activated"));
        json_decref(rec);
        return a;
}

START_TEST(a_join_whose_fence_cannot_be_read_fails_and_stays_open)
{
        /* A join that crashed before its catch-up finished: the retry
         * reuses the window and reads the frontier only for the fence. */
        co_member_pending(S, "general", BOB, 0, 1);
        json_t *r = tu_api("$JS.API.STREAM.DELETE.%s%s", "CHAT_" S, "", NULL);
        ck_assert(json_is_true(json_object_get(r, "success")));
        json_decref(r);
        json_t *reply = co_request(S, BOB, JOIN, NULL, NULL, 15000);
        char *text = co_json_text(reply);
        ck_assert_msg(reply && json_is_false(json_object_get(reply, "ok")) &&
                              strstr(text_of(reply, "error"), "cannot read the chat stream's last sequence"),
                      "reply %s", text);
        free(text);
        json_decref(reply);
        ck_assert_msg(!activated(), "the record was activated without its catch-up");
}
END_TEST

START_TEST(an_activation_out_of_cas_rounds_is_answered_as_superseded)
{
        co_member_pending(S, "general", BOB, 0, 1);
        /* Refuse every new write to the members bucket (records are far
         * larger than 100 bytes): each activation CAS round fails. */
        json_t *cfg = tu_stream_config("KV_cotal_members_" S);
        json_object_set_new(cfg, "max_msg_size", json_integer(100));
        json_t *r = tu_api("$JS.API.STREAM.UPDATE.%s%s", "KV_cotal_members_" S, "", json_incref(cfg));
        ck_assert_ptr_null(json_object_get(r, "error"));
        json_decref(r);
        json_t *reply = co_request(S, BOB, JOIN, NULL, NULL, 30000);
        char *text = co_json_text(reply);
        const json_t *data = json_object_get(reply, "data");
        ck_assert_msg(
                reply && json_is_true(json_object_get(reply, "ok")) &&
                        json_is_false(json_object_get(data, "durable")) &&
                        json_integer_value(json_object_get(data, "generation")) == 1 &&
                        strcmp(text_of(data, "reason"), "activation superseded by a concurrent leave or rejoin") == 0,
                "reply %s", text);
        free(text);
        json_decref(reply);
        ck_assert(!activated());
        /* Writes go through again: the agent's retry activates. */
        json_object_set_new(cfg, "max_msg_size", json_integer(-1));
        r = tu_api("$JS.API.STREAM.UPDATE.%s%s", "KV_cotal_members_" S, "", cfg);
        ck_assert_ptr_null(json_object_get(r, "error"));
        json_decref(r);
        reply = co_request(S, BOB, JOIN, NULL, NULL, 30000);
        ck_assert(json_is_true(json_object_get(json_object_get(reply, "data"), "durable")));
        json_decref(reply);
        ck_assert(activated());
        co_daemon_assert_healthy(&dm);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("control_fence");
        TCase *tc = tcase_create("fence");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, a_join_whose_fence_cannot_be_read_fails_and_stays_open);
        tcase_add_test(tc, an_activation_out_of_cas_rounds_is_answered_as_superseded);
        suite_add_tcase(s, tc);
        return co_run(s);
}
