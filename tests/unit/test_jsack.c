/* Unit tests for jsack: the "$JS.ACK.…" reply subject of a JetStream
 * delivery (v1 and v2 forms) and the acknowledgement payloads of
 * PROTOCOL §5.5. */
#include "jsack.h"

#include "unit.h"

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

typedef struct ack_case {
        const char *reply;
        uint64_t delivered;
        uint64_t stream_seq;
        uint64_t consumer_seq;
        int64_t timestamp_ns;
        uint64_t pending;
} ack_case;

/* Subjects a consumer delivery really carries. Every field has its own
 * value so a swapped token shows. */
static const ack_case good_cases[] = {
        /* v1: $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending> */
        {"$JS.ACK.CHAT_main.fanout.3.4711.12.1710000000000000000.5", 3, 4711, 12, 1710000000000000000LL, 5},
        {"$JS.ACK.INBOX_main.reader.1.1.1.1710000000123456789.0", 1, 1, 1, 1710000000123456789LL, 0},
        {"$JS.ACK.DLV_My_Space.reader.2.98765.4321.1712345678901234567.17", 2, 98765, 4321, 1712345678901234567LL, 17},
        /* v2: $JS.ACK.<domain>.<acchash>.<stream>.<consumer>.<delivered>.
         * <sseq>.<cseq>.<ts>.<pending>.<random> (12 tokens) */
        {"$JS.ACK._.ABDUCDOAJ4ZM5GVW6GWZIGRWIDQ2E4IJ6NEONZYBRQQ4OTBVZWDGMQSX."
         "CHAT_main.fanout.3.4711.12.1710000000000000000.5.Xk3F9qLm",
         3, 4711, 12, 1710000000000000000LL, 5},
        {"$JS.ACK.hub.AA5IH7F5TBPQEQWNHPDS5UWOWNKT3OOM6LTNZNRQJ6Q4A3OOWRTSHGK3."
         "INBOX_main.reader.1.2.3.1710000000000000004.6.0h6pQYy2R7eYu8",
         1, 2, 3, 1710000000000000004LL, 6},
        /* v2 without the random token (11 tokens): accepted as well */
        {"$JS.ACK.hub.ACCHASH.CHAT_main.fanout.7.8.9.1710000000000000010.11", 7, 8, 9, 1710000000000000010LL, 11},
        /* v2 with further trailing tokens, up to 16 after "$JS.ACK." */
        {"$JS.ACK.hub.ACCHASH.CHAT_main.fanout.7.8.9.10.11.r1.r2.r3.r4.r5.r6.r7", 7, 8, 9, 10, 11},
        /* limits: 0 and UINT64_MAX; the timestamp up to INT64_MAX */
        {"$JS.ACK.S.C.0.0.0.0.0", 0, 0, 0, 0, 0},
        {"$JS.ACK.S.C.18446744073709551615.18446744073709551615.18446744073709551615."
         "9223372036854775807.18446744073709551615",
         UINT64_MAX, UINT64_MAX, UINT64_MAX, INT64_MAX, UINT64_MAX},
};

START_TEST(test_parse_fields)
{
        const ack_case *c = &good_cases[_i];
        jsack_meta m;

        memset(&m, 0xa5, sizeof(m));
        ck_assert_msg(jsack_parse(c->reply, &m), "rejected %s", c->reply);
        ck_assert_uint_eq(m.delivered, c->delivered);
        ck_assert_uint_eq(m.stream_seq, c->stream_seq);
        ck_assert_uint_eq(m.consumer_seq, c->consumer_seq);
        ck_assert_int_eq(m.timestamp_ns, c->timestamp_ns);
        ck_assert_uint_eq(m.pending, c->pending);
}
END_TEST

/* Not a delivery subject of either form. */
static const char *const bad_subjects[] = {
        /* a timestamp beyond INT64_MAX cannot be a time */
        "$JS.ACK.S.C.1.1.1.18446744073709551615.0",
        /* wrong prefix */
        "$JS.ACKX.CHAT_main.fanout.3.4711.12.1710000000000000000.5",
        "$JS.API.CHAT_main.fanout.3.4711.12.1710000000000000000.5",
        "$js.ack.CHAT_main.fanout.3.4711.12.1710000000000000000.5",
        "JS.ACK.CHAT_main.fanout.3.4711.12.1710000000000000000.5",
        "_INBOX_UD.CHAT_main.fanout.3.4711.12.1710000000000000000.5",
        " $JS.ACK.CHAT_main.fanout.3.4711.12.1710000000000000000.5",
        "",
        "$JS",
        "$JS.ACK",
        /* too few tokens after the prefix */
        "$JS.ACK.",
        "$JS.ACK.CHAT_main",
        "$JS.ACK.CHAT_main.fanout.3.4711.12.1710000000000000000",
        "$JS.ACK.fanout.3.4711.12.1710000000000000000.5",
        /* 8 after the prefix: neither v1 (7) nor v2 (9+) */
        "$JS.ACK.hub.CHAT_main.fanout.3.4711.12.1710000000000000000.5",
        "$JS.ACK.CHAT_main.fanout.3.4711.12.1710000000000000000.5.extra",
        "$JS.ACK.CHAT_main.fanout.3.4711.12.1710000000000000000.5.",
        /* 17 after the prefix */
        "$JS.ACK.hub.ACCHASH.CHAT_main.fanout.7.8.9.10.11.r1.r2.r3.r4.r5.r6.r7.r8",
        "$JS.ACK.a.b.c.d.1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20",
        /* v1 numbers read at v2 positions, and the other way round */
        "$JS.ACK.CHAT_main.fanout.3.4711.12.1710000000000000000.5.x.y",
        "$JS.ACK.hub.ACCHASH.CHAT_main.fanout.3.4711.12.x.5.rnd",
};

START_TEST(test_reject_subject)
{
        jsack_meta m;

        ck_assert_msg(!jsack_parse(bad_subjects[_i], &m), "accepted \"%s\"", bad_subjects[_i]);
}
END_TEST

START_TEST(test_reject_null)
{
        jsack_meta m;

        ck_assert(!jsack_parse(NULL, &m));
}
END_TEST

/* Tokens that are not an unsigned decimal fitting uint64. */
static const char *const bad_numbers[] = {
        "",
        "x",
        "abc",
        "1x",
        "x1",
        "+1",
        "-1",
        "-0",
        " 1",
        "1 ",
        "1e3",
        "0x1F",
        "1_000",
        "\xef\xbc\x91",         /* U+FF11 FULLWIDTH DIGIT ONE */
        "18446744073709551616", /* UINT64_MAX + 1 */
        "18446744073709551619",
        "99999999999999999999",  /* 20 digits, > UINT64_MAX */
        "100000000000000000000", /* 21 digits */
        "000000000000000000001", /* 21 digits, small value */
        "340282366920938463463374607431768211456",
};

/* Puts bad at number position pos (0 delivered … 4 pending) of a v1 or v2
 * subject. */
static void subject_with(char *buf, size_t size, bool v2, int pos, const char *bad)
{
        const char *num[5] = {"3", "4711", "12", "1710000000000000000", "5"};

        num[pos] = bad;
        snprintf(buf, size, "$JS.ACK.%sCHAT_main.fanout.%s.%s.%s.%s.%s%s", v2 ? "hub.ACCHASH." : "", num[0], num[1],
                 num[2], num[3], num[4], v2 ? ".Xk3F9qLm" : "");
}

START_TEST(test_reject_number)
{
        const char *bad = bad_numbers[_i];
        char subject[256];
        jsack_meta m;

        for (int v2 = 0; v2 <= 1; v2++) {
                for (int pos = 0; pos < 5; pos++) {
                        subject_with(subject, sizeof(subject), v2, pos, bad);
                        ck_assert_msg(!jsack_parse(subject, &m), "accepted \"%s\"", subject);
                }
                /* the same template with good numbers parses */
                subject_with(subject, sizeof(subject), v2, 0, "3");
                ck_assert_msg(jsack_parse(subject, &m), "rejected \"%s\"", subject);
        }
}
END_TEST

START_TEST(test_stream_and_consumer_are_not_numbers)
{
        jsack_meta m;

        /* only the five numeric tokens are parsed as numbers */
        ck_assert(jsack_parse("$JS.ACK.12.34.3.4711.12.1710000000000000000.5", &m));
        ck_assert_uint_eq(m.delivered, 3);
        ck_assert(jsack_parse("$JS.ACK.-.+.3.4711.12.1710000000000000000.5", &m));
        ck_assert_uint_eq(m.pending, 5);
        ck_assert(jsack_parse("$JS.ACK.hub.ACCHASH.CHAT_main.fanout.3.4711.12.17.5.not-a-number", &m));
        ck_assert_int_eq(m.timestamp_ns, 17);
}
END_TEST

START_TEST(test_nak_delay)
{
        static const char want[] = "-NAK {\"delay\":2000000000}";
        char buf[64];

        /* PROTOCOL §5.5: nak with delay 2000 ms */
        memset(buf, 'x', sizeof(buf));
        ck_assert_int_eq(jsack_nak_delay(buf, sizeof(buf), 2000), (int)strlen(want));
        ck_assert_str_eq(buf, want);
        /* exactly large enough, and one byte short */
        ck_assert_int_eq(jsack_nak_delay(buf, sizeof(want), 2000), (int)strlen(want));
        ck_assert_str_eq(buf, want);
        ck_assert_int_eq(jsack_nak_delay(buf, sizeof(want) - 1, 2000), -1);
        ck_assert_int_eq(jsack_nak_delay(buf, 1, 2000), -1);
        ck_assert_int_eq(jsack_nak_delay(NULL, 0, 2000), -1);
        /* other delays: ms scaled to ns */
        ck_assert_int_eq(jsack_nak_delay(buf, sizeof(buf), 0), 16);
        ck_assert_str_eq(buf, "-NAK {\"delay\":0}");
        ck_assert_int_gt(jsack_nak_delay(buf, sizeof(buf), 1), 0);
        ck_assert_str_eq(buf, "-NAK {\"delay\":1000000}");
        ck_assert_int_gt(jsack_nak_delay(buf, sizeof(buf), 15000), 0);
        ck_assert_str_eq(buf, "-NAK {\"delay\":15000000000}");
}
END_TEST

START_TEST(test_payload_literals)
{
        /* PROTOCOL §5.5 */
        ck_assert_str_eq(JSACK_ACK, "+ACK");
        ck_assert_str_eq(JSACK_NAK, "-NAK");
        ck_assert_str_eq(JSACK_TERM, "+TERM");
        ck_assert_uint_eq(sizeof(JSACK_ACK), 5);
        ck_assert_uint_eq(sizeof(JSACK_TERM), 6);
}
END_TEST

static Suite *jsack_suite(void)
{
        Suite *s = suite_create("jsack");
        TCase *parse = tcase_create("parse");
        TCase *payload = tcase_create("payload");

        tcase_add_loop_test(parse, test_parse_fields, 0, N(good_cases));
        tcase_add_loop_test(parse, test_reject_subject, 0, N(bad_subjects));
        tcase_add_test(parse, test_reject_null);
        tcase_add_loop_test(parse, test_reject_number, 0, N(bad_numbers));
        tcase_add_test(parse, test_stream_and_consumer_are_not_numbers);

        tcase_add_test(payload, test_nak_delay);
        tcase_add_test(payload, test_payload_literals);

        suite_add_tcase(s, parse);
        suite_add_tcase(s, payload);
        return s;
}

int main(void)
{
        return unit_run(jsack_suite());
}
