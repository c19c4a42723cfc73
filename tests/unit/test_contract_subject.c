/* Unit tests for contract_subject: the names of PROTOCOL §1.2, the subject
 * builders of §1.4/§3/§5, the chat/ctl/dinbox parsers of §1.4 and the reply
 * guard of §8.2 step 1. */
#include "contract_subject.h"

#include "unit.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ALICE "UAQGWOEVJKMIO4WXSYOTLARXYOZTCXFK67JASEH6AFFFYK6FOPSKQCAD"
#define BOB "UDI36ZKVNUM5WMO4QQ6HDQU7F4OH2RCXOJRX6GAIOS5SKVNNSKCDNLJA"

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Takes ownership of got. */
static void expect_str(char *got, const char *want)
{
        ck_assert_ptr_nonnull(got);
        ck_assert_str_eq(got, want);
        free(got);
}

static void span_eq(contract_span s, const char *want)
{
        ck_assert_uint_eq(s.len, strlen(want));
        ck_assert_mem_eq(s.p, want, s.len);
}

/* ---- names (§1.2) -------------------------------------------------------- */

START_TEST(test_names_my_space)
{
        contract_names n;

        ck_assert_int_eq(contract_names_init(&n, "My Space", 8), 0);
        ck_assert_str_eq(n.space, "My Space");
        ck_assert_str_eq(n.token, "My_Space");
        ck_assert_str_eq(n.prefix, "cotal.My_Space");
        ck_assert_str_eq(n.chat_stream, "CHAT_My_Space");
        ck_assert_str_eq(n.dm_stream, "DM_My_Space");
        ck_assert_str_eq(n.task_stream, "TASK_My_Space");
        ck_assert_str_eq(n.inbox_stream, "INBOX_My_Space");
        ck_assert_str_eq(n.dlv_stream, "DLV_My_Space");
        ck_assert_str_eq(n.chat_filter, "cotal.My_Space.chat.>");
        ck_assert_str_eq(n.dm_filter, "cotal.My_Space.inst.>");
        ck_assert_str_eq(n.task_filter, "cotal.My_Space.svc.>");
        ck_assert_str_eq(n.dinbox_filter, "cotal.My_Space.dinbox.>");
        ck_assert_str_eq(n.dlv_filter, "cotal.My_Space.dlv.>");
        ck_assert_str_eq(n.ctl_delivery_sub, "cotal.My_Space.ctl.delivery.*");
        ck_assert_str_eq(n.presence_bucket, "cotal_presence_My_Space");
        ck_assert_str_eq(n.channels_bucket, "cotal_channels_My_Space");
        ck_assert_str_eq(n.members_bucket, "cotal_members_My_Space");
        ck_assert_str_eq(n.acl_bucket, "cotal_acl_My_Space");
        ck_assert_str_eq(n.delivery_bucket, "cotal_delivery_My_Space");

        /* bucket streams KV_<bucket> */
        expect_str(contract_bucket_stream(n.presence_bucket), "KV_cotal_presence_My_Space");
        expect_str(contract_bucket_stream(n.channels_bucket), "KV_cotal_channels_My_Space");
        expect_str(contract_bucket_stream(n.members_bucket), "KV_cotal_members_My_Space");
        expect_str(contract_bucket_stream(n.acl_bucket), "KV_cotal_acl_My_Space");
        expect_str(contract_bucket_stream(n.delivery_bucket), "KV_cotal_delivery_My_Space");
        expect_str(contract_kv_subject(n.delivery_bucket, CONTRACT_LEASE_KEY), "$KV.cotal_delivery_My_Space.lease.0");
        expect_str(contract_kv_subject(n.channels_bucket, CONTRACT_DEFAULTS_KEY),
                   "$KV.cotal_channels_My_Space.=defaults");
        expect_str(contract_kv_subject(n.members_bucket, "team.backend/" BOB),
                   "$KV.cotal_members_My_Space.team.backend/" BOB);
        contract_names_fini(&n);
        /* fini zeroes, so a second fini is harmless */
        ck_assert_ptr_null(n.prefix);
        contract_names_fini(&n);
}
END_TEST

START_TEST(test_names_trim_and_unicode)
{
        contract_names n;

        ck_assert_int_eq(contract_names_init(&n, "  caf\xc3\xa9 \xf0\x9f\x98\x80 ", 13), 0);
        ck_assert_str_eq(n.space, "  caf\xc3\xa9 \xf0\x9f\x98\x80 ");
        ck_assert_str_eq(n.token, "caf____");
        ck_assert_str_eq(n.chat_stream, "CHAT_caf____");
        contract_names_fini(&n);

        /* len bounds the input: no terminator needed */
        ck_assert_int_eq(contract_names_init(&n, "mainXYZ", 4), 0);
        ck_assert_str_eq(n.space, "main");
        ck_assert_str_eq(n.prefix, "cotal.main");
        contract_names_fini(&n);

        ck_assert_int_eq(contract_names_init(&n, "", 0), 0);
        ck_assert_str_eq(n.token, "_");
        ck_assert_str_eq(n.prefix, "cotal._");
        contract_names_fini(&n);
}
END_TEST

START_TEST(test_names_errors)
{
        contract_names n;
        char *big;

        memset(&n, 0xff, sizeof(n));
        ck_assert_int_eq(contract_names_init(&n, "bad\xc3", 4), -EILSEQ);
        ck_assert_ptr_null(n.space);
        ck_assert_ptr_null(n.token);
        ck_assert_ptr_null(n.prefix);
        ck_assert_ptr_null(n.delivery_bucket);
        contract_names_fini(&n);
        contract_names_fini(NULL);

        big = malloc(5000);
        ck_assert_ptr_nonnull(big);
        memset(big, 'a', 5000);
        ck_assert_int_eq(contract_names_init(&n, big, 5000), -E2BIG);
        ck_assert_ptr_null(n.prefix);
        free(big);
}
END_TEST

START_TEST(test_fixed_names)
{
        ck_assert_str_eq(CONTRACT_FANOUT_DURABLE, "fanout");
        ck_assert_str_eq(CONTRACT_READER_DURABLE, "reader");
        ck_assert_str_eq(CONTRACT_LEASE_KEY, "lease.0");
        ck_assert_str_eq(CONTRACT_DEFAULTS_KEY, "=defaults");
        ck_assert_str_eq(CONTRACT_CTL_QUEUE, "delivery");
}
END_TEST

/* ---- builders ------------------------------------------------------------ */

START_TEST(test_subject_builders)
{
        contract_names n;

        ck_assert_int_eq(contract_names_init(&n, "main", 4), 0);
        /* §5.1 example subject */
        expect_str(contract_chat_subject(&n, ALICE, "team.backend"), "cotal.main.chat." ALICE ".team.backend");
        expect_str(contract_chat_subject(&n, "*", "general"), "cotal.main.chat.*.general");
        expect_str(contract_chat_subject(&n, "a b", " team . x "), "cotal.main.chat.a_b.team.x");
        expect_str(contract_chat_subject(&n, ALICE, ""), "cotal.main.chat." ALICE "._");
        ck_assert_ptr_null(contract_chat_subject(&n, ALICE, "a.>.b"));
        ck_assert_ptr_null(contract_chat_subject(&n, "bad\xff", "general"));
        ck_assert_ptr_null(contract_chat_subject(&n, ALICE, NULL));
        ck_assert_ptr_null(contract_chat_subject(NULL, ALICE, "general"));

        /* §5.2 example subject */
        expect_str(contract_dinbox_subject(&n, BOB), "cotal.main.dinbox." BOB);
        expect_str(contract_dinbox_subject(&n, "*"), "cotal.main.dinbox.*");
        expect_str(contract_dinbox_subject(&n, "x.y"), "cotal.main.dinbox.x_y");
        expect_str(contract_dlv_subject(&n, BOB), "cotal.main.dlv." BOB);
        expect_str(contract_dlv_subject(&n, " Bob "), "cotal.main.dlv.Bob");
        expect_str(contract_ctl_delivery_subject(&n, ALICE), "cotal.main.ctl.delivery." ALICE);
        ck_assert_ptr_null(contract_dinbox_subject(&n, NULL));
        ck_assert_ptr_null(contract_dlv_subject(&n, "\xc0\x80"));

        /* §3 filters */
        expect_str(contract_channel_filter(&n, "team.backend"), "cotal.main.chat.*.team.backend");
        expect_str(contract_dlv_filter(&n, BOB), "cotal.main.dlv." BOB);
        expect_str(contract_dlv_filter(&n, "*"), "cotal.main.dlv._"); /* token, not routeToken */
        expect_str(contract_dm_filter(&n, BOB), "cotal.main.inst." BOB ".*");
        expect_str(contract_svc_filter(&n, "reviewer"), "cotal.main.svc.reviewer.*");
        expect_str(contract_svc_filter(&n, "code review"), "cotal.main.svc.code_review.*");
        contract_names_fini(&n);
}
END_TEST

START_TEST(test_consumer_names)
{
        expect_str(contract_dlv_durable(BOB), "dlv_" BOB);
        expect_str(contract_dlv_durable("a.b"), "dlv_a_b");
        expect_str(contract_dm_durable(BOB), "dm_" BOB);
        expect_str(contract_dm_durable("*"), "dm__");
        expect_str(contract_svc_durable("reviewer"), "svc_reviewer");
        expect_str(contract_svc_durable("\xc3\xbc"
                                        "ber"),
                   "svc__ber");
        expect_str(contract_catchup_consumer(BOB, 3), "cu_" BOB "_3");
        expect_str(contract_catchup_consumer("a b", UINT64_MAX), "cu_a_b_18446744073709551615");
        expect_str(contract_catchup_consumer(BOB, 0), "cu_" BOB "_0");
        expect_str(contract_chathist_consumer("UDAEMON"), "chathist_UDAEMON");
        expect_str(contract_chathist_consumer(""), "chathist__");
        ck_assert_ptr_null(contract_dlv_durable(NULL));
        ck_assert_ptr_null(contract_catchup_consumer("\xff", 1));
}
END_TEST

START_TEST(test_dedup_id)
{
        /* §5.2 example header */
        expect_str(contract_dedup_id("018f1d0a-0000-7000-9000-000000000001", BOB, 3),
                   "018f1d0a-0000-7000-9000-000000000001:" BOB ":3");
        expect_str(contract_dedup_id("m", BOB, 0), "m:" BOB ":0");
        /* owner is raw, not token()ed */
        expect_str(contract_dedup_id("m", "a b", 7), "m:a b:7");
        ck_assert_ptr_null(contract_dedup_id(NULL, BOB, 1));
        ck_assert_ptr_null(contract_dedup_id("m", NULL, 1));
}
END_TEST

/* ---- parsers (§1.4) ------------------------------------------------------ */

typedef struct chat_case {
        const char *subject;
        bool ok;
        const char *sender;
        const char *channel;
} chat_case;

static const chat_case chat_cases[] = {
        {"cotal.main.chat." ALICE ".team.backend", true, ALICE, "team.backend"},
        {"cotal.x.chat.S.c", true, "S", "c"},
        {"cotal.x.chat.S.a.b.c", true, "S", "a.b.c"},
        {"cotal.x.chat.S.", true, "S", ""}, /* empty channel remainder */
        {"cotal.x.chat.S..", true, "S", "."},
        {"cotal.x.chat..c", true, "", "c"},
        {"cotal..chat.S.c", true, "S", "c"}, /* space token not compared */
        {"cotal.other.chat.S.c", true, "S", "c"},
        {"cotal.x.chat.S", false, NULL, NULL}, /* 4 tokens */
        {"cotal.x.chat", false, NULL, NULL},
        {"cotal", false, NULL, NULL},
        {"", false, NULL, NULL},
        {"cotl.x.chat.S.c", false, NULL, NULL},
        {"Cotal.x.chat.S.c", false, NULL, NULL},
        {"cotal.x.chats.S.c", false, NULL, NULL},
        {"cotal.x.inst.S.c", false, NULL, NULL},
        {"x.cotal.chat.S.c", false, NULL, NULL},
};

START_TEST(test_chat_parse)
{
        const chat_case *c = &chat_cases[_i];
        contract_span sender = {0}, channel = {0};

        ck_assert_msg(contract_chat_subject_parse(c->subject, &sender, &channel) == c->ok, "parse(\"%s\")", c->subject);
        if (c->ok) {
                span_eq(sender, c->sender);
                span_eq(channel, c->channel);
        }
}
END_TEST

START_TEST(test_chat_parse_misc)
{
        ck_assert(!contract_chat_subject_parse(NULL, NULL, NULL));
        ck_assert(contract_chat_subject_parse("cotal.x.chat.S.c", NULL, NULL));
}
END_TEST

START_TEST(test_chat_subject_round_trip)
{
        contract_names n;
        contract_span sender, channel;
        char *subject;

        ck_assert_int_eq(contract_names_init(&n, "My Space", 8), 0);
        subject = contract_chat_subject(&n, BOB, "team.backend");
        ck_assert_ptr_nonnull(subject);
        ck_assert(contract_chat_subject_parse(subject, &sender, &channel));
        span_eq(sender, BOB);
        span_eq(channel, "team.backend");
        free(subject);
        contract_names_fini(&n);
}
END_TEST

START_TEST(test_ctl_parse)
{
        contract_span service = {0}, sender = {0};

        ck_assert(contract_ctl_subject_parse("cotal.main.ctl.delivery." ALICE, &service, &sender));
        span_eq(service, "delivery");
        span_eq(sender, ALICE);
        ck_assert(contract_ctl_subject_parse("cotal.x.ctl.manager.U", &service, &sender));
        span_eq(service, "manager");
        span_eq(sender, "U");
        ck_assert(contract_ctl_subject_parse("cotal.x.ctl.delivery.", &service, &sender));
        span_eq(sender, "");
        ck_assert(contract_ctl_subject_parse("cotal.x.ctl.delivery.U", NULL, NULL));
        /* exactly 5 tokens */
        ck_assert(!contract_ctl_subject_parse("cotal.main.ctl.delivery", &service, &sender));
        ck_assert(!contract_ctl_subject_parse("cotal.main.ctl.delivery.U.reply", &service, &sender));
        ck_assert(!contract_ctl_subject_parse("cotal.main.ctl.delivery.U.reply.x", &service, &sender));
        /* literal tokens */
        ck_assert(!contract_ctl_subject_parse("cotal.main.ctrl.delivery.U", &service, &sender));
        ck_assert(!contract_ctl_subject_parse("xotal.main.ctl.delivery.U", &service, &sender));
        ck_assert(!contract_ctl_subject_parse("cotal.main.chat.delivery.U", &service, &sender));
        ck_assert(!contract_ctl_subject_parse("", &service, &sender));
        ck_assert(!contract_ctl_subject_parse(NULL, &service, &sender));
}
END_TEST

START_TEST(test_ctl_subject_round_trip)
{
        contract_names n;
        contract_span service, sender;
        char *subject;

        ck_assert_int_eq(contract_names_init(&n, "main", 4), 0);
        subject = contract_ctl_delivery_subject(&n, ALICE);
        ck_assert(contract_ctl_subject_parse(subject, &service, &sender));
        span_eq(service, CONTRACT_CTL_QUEUE);
        span_eq(sender, ALICE);
        free(subject);
        contract_names_fini(&n);
}
END_TEST

START_TEST(test_dinbox_parse)
{
        contract_span owner = {0};

        ck_assert(contract_dinbox_subject_parse("cotal.main.dinbox." BOB, &owner));
        span_eq(owner, BOB);
        ck_assert(contract_dinbox_subject_parse("cotal.other.dinbox.U", &owner));
        span_eq(owner, "U");
        ck_assert(contract_dinbox_subject_parse("cotal.main.dinbox.", &owner));
        span_eq(owner, "");
        ck_assert(contract_dinbox_subject_parse("cotal.main.dinbox.U", NULL));
        /* exactly 4 tokens */
        ck_assert(!contract_dinbox_subject_parse("cotal.main.dinbox", &owner));
        ck_assert(!contract_dinbox_subject_parse("cotal.main.dinbox.U.x", &owner));
        /* literal tokens */
        ck_assert(!contract_dinbox_subject_parse("cotal.main.dlv.U", &owner));
        ck_assert(!contract_dinbox_subject_parse("x.main.dinbox.U", &owner));
        ck_assert(!contract_dinbox_subject_parse("cotal.main.DINBOX.U", &owner));
        ck_assert(!contract_dinbox_subject_parse("", &owner));
        ck_assert(!contract_dinbox_subject_parse(NULL, &owner));
}
END_TEST

START_TEST(test_dinbox_subject_round_trip)
{
        contract_names n;
        contract_span owner;
        char *subject;

        ck_assert_int_eq(contract_names_init(&n, "main", 4), 0);
        subject = contract_dinbox_subject(&n, BOB);
        ck_assert(contract_dinbox_subject_parse(subject, &owner));
        span_eq(owner, BOB);
        free(subject);
        contract_names_fini(&n);
}
END_TEST

/* ---- reply guard (§8.2 step 1) ------------------------------------------- */

START_TEST(test_reply_guard)
{
        const char *subject = "cotal.main.ctl.delivery." ALICE;

        ck_assert(contract_reply_is_bound(subject, "cotal.main.ctl.delivery." ALICE ".reply.abc"));
        ck_assert(contract_reply_is_bound(subject, "cotal.main.ctl.delivery." ALICE ".reply.a.b"));
        /* startsWith only: nothing is required after the prefix */
        ck_assert(contract_reply_is_bound(subject, "cotal.main.ctl.delivery." ALICE ".reply."));
        /* another agent's reply subtree */
        ck_assert(!contract_reply_is_bound(subject, "cotal.main.ctl.delivery." BOB ".reply.abc"));
        /* the subject itself, and prefixes without ".reply." */
        ck_assert(!contract_reply_is_bound(subject, subject));
        ck_assert(!contract_reply_is_bound(subject, "cotal.main.ctl.delivery." ALICE ".reply"));
        ck_assert(!contract_reply_is_bound(subject, "cotal.main.ctl.delivery." ALICE ".replyx.a"));
        ck_assert(!contract_reply_is_bound(subject, "cotal.main.ctl.delivery." ALICE ".x.reply.a"));
        /* a sender id that merely starts with the caller's */
        ck_assert(!contract_reply_is_bound("cotal.main.ctl.delivery.UA", "cotal.main.ctl.delivery.UAB.reply.x"));
        /* classic inbox, empty, none */
        ck_assert(!contract_reply_is_bound(subject, "_INBOX.abc.def"));
        ck_assert(!contract_reply_is_bound(subject, ""));
        ck_assert(!contract_reply_is_bound(subject, NULL));
        ck_assert(!contract_reply_is_bound(NULL, "x.reply.y"));
        /* case-sensitive */
        ck_assert(!contract_reply_is_bound(subject, "cotal.main.ctl.delivery." ALICE ".REPLY.x"));
}
END_TEST

static Suite *subject_suite(void)
{
        Suite *s = suite_create("contract_subject");
        TCase *names = tcase_create("names");
        TCase *parse = tcase_create("parse");

        tcase_add_test(names, test_names_my_space);
        tcase_add_test(names, test_names_trim_and_unicode);
        tcase_add_test(names, test_names_errors);
        tcase_add_test(names, test_fixed_names);
        tcase_add_test(names, test_subject_builders);
        tcase_add_test(names, test_consumer_names);
        tcase_add_test(names, test_dedup_id);
        tcase_add_loop_test(parse, test_chat_parse, 0, N(chat_cases));
        tcase_add_test(parse, test_chat_parse_misc);
        tcase_add_test(parse, test_chat_subject_round_trip);
        tcase_add_test(parse, test_ctl_parse);
        tcase_add_test(parse, test_ctl_subject_round_trip);
        tcase_add_test(parse, test_dinbox_parse);
        tcase_add_test(parse, test_dinbox_subject_round_trip);
        tcase_add_test(parse, test_reply_guard);
        suite_add_tcase(s, names);
        suite_add_tcase(s, parse);
        return s;
}

int main(void)
{
        return unit_run(subject_suite());
}
