/* provision_matches_protocol: `cotal-deliveryctl provision` against a real
 * nats-server creates exactly the streams and buckets of PROTOCOL §2 and
 * §4.1 (read back with STREAM.INFO, field by field), writes =defaults
 * (§11.2 [FIX] F3), is a no-op the second time, refuses a conflicting
 * existing stream without touching it, and creates dlv_<id> as §3 says.
 * The expected configurations below are transcribed from PROTOCOL.md on
 * purpose, independently of src/contract_config.c. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BOB "UDI36ZKVNUM5WMO4QQ6HDQU7F4OH2RCXOJRX6GAIOS5SKVNNSKCDNLJA"

/* PROTOCOL §2 table (+ the server defaults it names: "—" = default). */
static const char *const streams_main[][2] = {
        {"CHAT_main", "{\"subjects\":[\"cotal.main.chat.>\"],\"retention\":\"limits\",\"storage\":\"file\","
                      "\"max_msgs_per_subject\":1000,\"discard\":\"old\",\"duplicate_window\":120000000000,"
                      "\"allow_direct\":true,\"num_replicas\":1}"},
        {"DM_main", "{\"subjects\":[\"cotal.main.inst.>\"],\"retention\":\"limits\",\"storage\":\"file\","
                    "\"max_msgs_per_subject\":-1,\"duplicate_window\":120000000000,\"allow_direct\":false}"},
        {"TASK_main", "{\"subjects\":[\"cotal.main.svc.>\"],\"retention\":\"workqueue\",\"storage\":\"file\","
                      "\"max_msgs_per_subject\":-1,\"duplicate_window\":120000000000,\"allow_direct\":false}"},
        {"INBOX_main", "{\"subjects\":[\"cotal.main.dinbox.>\"],\"retention\":\"limits\",\"storage\":\"file\","
                       "\"max_msgs_per_subject\":1000,\"discard\":\"old\",\"duplicate_window\":7200000000000,"
                       "\"allow_direct\":false}"},
        {"DLV_main", "{\"subjects\":[\"cotal.main.dlv.>\"],\"retention\":\"limits\",\"storage\":\"file\","
                     "\"max_msgs_per_subject\":1000,\"discard\":\"old\",\"duplicate_window\":7200000000000,"
                     "\"allow_direct\":false}"},
};

/* PROTOCOL §4.1: bucket name, TTL in ns (0 = none). */
static const struct {
        const char *bucket;
        long long ttl_ns;
} buckets_main[] = {
        {"cotal_presence_main", 6000000000LL},
        {"cotal_channels_main", 0},
        {"cotal_members_main", 0},
        {"cotal_acl_main", 0},
        {"cotal_delivery_main", 30000000000LL},
};

static void setup(void)
{
        tu_broker_setup();
}

static void teardown(void)
{
        tu_broker_teardown();
}

static json_t *provision(const char *space, int want_status)
{
        char *out = NULL, *err = NULL;
        const char *args[] = {"--space", space, "--json", "provision", NULL};
        int st = tu_ctl(&out, &err, args);
        ck_assert_msg(st == want_status, "provision exit %d (want %d): %s", st, want_status, err);
        json_t *j = tu_parse_line(out);
        free(out);
        free(err);
        return j;
}

static json_int_t count_of(const json_t *report, const char *field)
{
        return json_integer_value(json_object_get(report, field));
}

START_TEST(creates_protocol_configs)
{
        json_t *rep = provision("main", 0);
        ck_assert_int_eq(count_of(rep, "created"), 11); /* 5 streams, 5 buckets, =defaults */
        ck_assert_int_eq(count_of(rep, "conflicts"), 0);
        json_decref(rep);

        for (size_t i = 0; i < sizeof streams_main / sizeof *streams_main; i++) {
                json_t *want = json_loads(streams_main[i][1], 0, NULL);
                json_t *have = tu_stream_config(streams_main[i][0]);
                tu_assert_fields(want, have, streams_main[i][0]);
                json_decref(want);
                json_decref(have);
        }
        for (size_t i = 0; i < sizeof buckets_main / sizeof *buckets_main; i++) {
                char stream[128], subj[128];
                snprintf(stream, sizeof stream, "KV_%s", buckets_main[i].bucket);
                snprintf(subj, sizeof subj, "$KV.%s.>", buckets_main[i].bucket);
                json_t *want =
                        json_pack("{s:[s], s:s, s:i, s:i, s:i, s:s, s:s, s:b, s:i, s:b, s:I}", "subjects", subj,
                                  "retention", "limits", "max_msgs_per_subject", 1, "max_bytes", -1, "max_msg_size", -1,
                                  "storage", "file", "discard", "new", "allow_direct", 1, "num_replicas", 1,
                                  "allow_rollup_hdrs", 1, "max_age", (json_int_t)buckets_main[i].ttl_ns);
                json_t *have = tu_stream_config(stream);
                tu_assert_fields(want, have, stream);
                json_decref(want);
                json_decref(have);
        }

        /* §11.2 item 2 [FIX] F3: =defaults carries deliveryClass durable. */
        json_t *msg = tu_api("$JS.API.STREAM.MSG.GET.%s%s", "KV_cotal_channels_main", "",
                             json_pack("{s:s}", "last_by_subj", "$KV.cotal_channels_main.=defaults"));
        const char *b64 = json_string_value(json_object_get(json_object_get(msg, "message"), "data"));
        ck_assert_ptr_nonnull(b64);
        /* base64 of {"deliveryClass":"durable"} */
        ck_assert_str_eq(b64, "eyJkZWxpdmVyeUNsYXNzIjoiZHVyYWJsZSJ9");
        json_decref(msg);
}
END_TEST

START_TEST(second_run_is_a_noop)
{
        json_decref(provision("again", 0));
        json_t *before = tu_api("$JS.API.STREAM.INFO.%s%s", "KV_cotal_channels_again", "", NULL);
        json_t *chat_before = tu_api("$JS.API.STREAM.INFO.%s%s", "CHAT_again", "", NULL);

        json_t *rep = provision("again", 0);
        ck_assert_int_eq(count_of(rep, "created"), 0);
        ck_assert_int_eq(count_of(rep, "found"), 11);
        ck_assert_int_eq(count_of(rep, "conflicts"), 0);
        json_decref(rep);

        json_t *after = tu_api("$JS.API.STREAM.INFO.%s%s", "KV_cotal_channels_again", "", NULL);
        json_t *chat_after = tu_api("$JS.API.STREAM.INFO.%s%s", "CHAT_again", "", NULL);
        /* Nothing was written (=defaults not rewritten) or re-created. */
        ck_assert(json_equal(json_object_get(json_object_get(before, "state"), "last_seq"),
                             json_object_get(json_object_get(after, "state"), "last_seq")));
        ck_assert_str_eq(json_string_value(json_object_get(chat_before, "created")),
                         json_string_value(json_object_get(chat_after, "created")));
        json_decref(before);
        json_decref(after);
        json_decref(chat_before);
        json_decref(chat_after);
}
END_TEST

START_TEST(conflicting_stream_is_refused_and_untouched)
{
        /* An operator-made DLV_conf with a different per-subject cap. */
        json_t *cfg = json_pack("{s:s, s:[s], s:s, s:s, s:i}", "name", "DLV_conf", "subjects", "cotal.conf.dlv.>",
                                "retention", "limits", "storage", "file", "max_msgs_per_subject", 5);
        json_decref(tu_api("$JS.API.STREAM.CREATE.%s%s", "DLV_conf", "", cfg));

        char *out = NULL, *err = NULL;
        const char *args[] = {"--space", "conf", "provision", NULL};
        int st = tu_ctl(&out, &err, args);
        ck_assert_int_eq(st, 3);
        ck_assert_msg(strstr(out, "conflict") && strstr(out, "DLV_conf"), "output: %s", out);
        ck_assert_msg(strstr(out, "max_msgs_per_subject: want 1000, have 5"), "output: %s", out);
        ck_assert_msg(strstr(err, "refusing"), "stderr: %s", err);
        free(out);
        free(err);

        json_t *have = tu_stream_config("DLV_conf");
        ck_assert_int_eq(json_integer_value(json_object_get(have, "max_msgs_per_subject")), 5);
        json_decref(have);
        /* The rest was still provisioned. */
        have = tu_stream_config("CHAT_conf");
        ck_assert_ptr_nonnull(have);
        json_decref(have);
}
END_TEST

START_TEST(defaults_are_merged_not_overwritten)
{
        /* A space whose channel bucket already has =defaults. */
        json_decref(provision("dflt", 0));
        tu_kv_put("cotal_channels_dflt", "=defaults", "{\"replay\":true}");
        json_t *rep = provision("dflt", 0);
        json_decref(rep);
        json_t *msg = tu_api("$JS.API.STREAM.MSG.GET.%s%s", "KV_cotal_channels_dflt", "",
                             json_pack("{s:s}", "last_by_subj", "$KV.cotal_channels_dflt.=defaults"));
        /* base64 of {"replay":true,"deliveryClass":"durable"} */
        ck_assert_str_eq(json_string_value(json_object_get(json_object_get(msg, "message"), "data")),
                         "eyJyZXBsYXkiOnRydWUsImRlbGl2ZXJ5Q2xhc3MiOiJkdXJhYmxlIn0=");
        json_decref(msg);

        /* An explicit class is left alone. */
        uint64_t rev = tu_kv_put("cotal_channels_dflt", "=defaults", "{\"deliveryClass\":\"live\"}");
        json_decref(provision("dflt", 0));
        json_t *info = tu_api("$JS.API.STREAM.INFO.%s%s", "KV_cotal_channels_dflt", "", NULL);
        ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(info, "state"), "last_seq")),
                         (json_int_t)rev);
        json_decref(info);
}
END_TEST

START_TEST(space_names_are_tokenised)
{
        json_decref(provision("My Space", 0));
        json_t *have = tu_stream_config("CHAT_My_Space");
        ck_assert_ptr_nonnull(have);
        ck_assert_str_eq(json_string_value(json_array_get(json_object_get(have, "subjects"), 0)),
                         "cotal.My_Space.chat.>");
        json_decref(have);
        have = tu_stream_config("KV_cotal_delivery_My_Space");
        ck_assert_ptr_nonnull(have);
        json_decref(have);
}
END_TEST

START_TEST(dlv_durable_matches_protocol)
{
        json_decref(provision("agents", 0));
        char *out = NULL, *err = NULL;
        const char *args[] = {"--space", "agents", "--json", "dlv", "create", BOB, NULL};
        int st = tu_ctl(&out, &err, args);
        ck_assert_msg(st == 0, "dlv create: %s", err);
        json_t *rep = tu_parse_line(out);
        ck_assert_int_eq(count_of(rep, "created"), 1);
        json_decref(rep);
        free(out);
        free(err);

        /* PROTOCOL §3 row dlv_<id>. */
        json_t *info = tu_api("$JS.API.CONSUMER.INFO.%s.%s", "DLV_agents", "dlv_" BOB, NULL);
        json_t *want = json_pack("{s:s, s:s, s:s, s:I, s:s}", "durable_name", "dlv_" BOB, "filter_subject",
                                 "cotal.agents.dlv." BOB, "ack_policy", "explicit", "ack_wait",
                                 (json_int_t)60000000000LL, "deliver_policy", "all");
        json_t *cfg = json_object_get(info, "config");
        tu_assert_fields(want, cfg, "dlv_" BOB);
        ck_assert_ptr_null(json_object_get(cfg, "inactive_threshold"));
        json_decref(want);
        json_decref(info);

        /* Again: found, no change. */
        st = tu_ctl(&out, &err, args);
        ck_assert_int_eq(st, 0);
        rep = tu_parse_line(out);
        ck_assert_int_eq(count_of(rep, "found"), 1);
        json_decref(rep);
        free(out);
        free(err);
}
END_TEST

START_TEST(conflicting_dlv_durable_is_untouched)
{
        json_decref(provision("agents2", 0));
        /* An existing dlv_ durable with another ack_wait. */
        json_t *body = json_pack("{s:s, s:{s:s, s:s, s:s, s:I, s:s}}", "stream_name", "DLV_agents2", "config",
                                 "durable_name", "dlv_" BOB, "filter_subject", "cotal.agents2.dlv." BOB, "ack_policy",
                                 "explicit", "ack_wait", (json_int_t)5000000000LL, "deliver_policy", "all");
        json_decref(tu_api("$JS.API.CONSUMER.DURABLE.CREATE.%s.%s", "DLV_agents2", "dlv_" BOB, body));

        char *out = NULL, *err = NULL;
        const char *args[] = {"--space", "agents2", "dlv", "create", BOB, NULL};
        ck_assert_int_eq(tu_ctl(&out, &err, args), 3);
        ck_assert_msg(strstr(out, "ack_wait: want 60000000000, have 5000000000"), "output: %s", out);
        free(out);
        free(err);
        json_t *info = tu_api("$JS.API.CONSUMER.INFO.%s.%s", "DLV_agents2", "dlv_" BOB, NULL);
        ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(info, "config"), "ack_wait")),
                         5000000000LL);
        json_decref(info);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("provision_matches_protocol");
        TCase *tc = tcase_create("provision");
        tcase_add_unchecked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, creates_protocol_configs);
        tcase_add_test(tc, second_run_is_a_noop);
        tcase_add_test(tc, conflicting_stream_is_refused_and_untouched);
        tcase_add_test(tc, defaults_are_merged_not_overwritten);
        tcase_add_test(tc, space_names_are_tokenised);
        tcase_add_test(tc, dlv_durable_matches_protocol);
        tcase_add_test(tc, conflicting_dlv_durable_is_untouched);
        suite_add_tcase(s, tc);
        return tu_run(s);
}
