/* Unit tests for contract_token: token()/routeToken() of PROTOCOL §1.1,
 * the JS trim it relies on, and strict UTF-8 validation. Every worked
 * example of the §1.1 table is a case here. */
#include "contract_js.h"
#include "contract_token.h"

#include "unit.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct token_case {
        const char *in;
        size_t len; /* 0: use strlen(in) */
        const char *want;
} token_case;

/* PROTOCOL §1.1 worked examples, input as UTF-8 bytes. String literals are
 * split where a hex escape would swallow the next character. */
static const token_case worked_examples[] = {
        {"main", 0, "main"},
        {"My Space", 0, "My_Space"},
        {"  dev  ", 0, "dev"},
        {"team.backend", 0, "team_backend"},
        {"a/b", 0, "a_b"},
        {"x*>", 0, "x__"},
        {"caf\xc3\xa9", 0, "caf_"},   /* precomposed U+00E9 */
        {"cafe\xcc\x81", 0, "cafe_"}, /* e + U+0301 */
        {"\xc3\xbc"
         "ber-team",
         0, "_ber-team"},
        {"\xce\xa9"
         "mega_1",
         0, "_mega_1"},
        {"\xe6\x97\xa5\xe6\x9c\xac", 0, "__"}, /* two BMP code points */
        {"\xf0\x9f\x98\x80", 0, "__"},         /* U+1F600 */
        {"a\xf0\x9f\x98\x80"
         "b",
         0, "a__b"},
        {"\xc2\xa0"
         "x\xe3\x80\x80",
         0, "x"}, /* NBSP, U+3000 */
        {"\xef\xbb\xbf"
         "x\xef\xbb\xbf",
         0, "x"}, /* BOM */
        {"\xe2\x80\x8b"
         "x",
         0, "_x"}, /* ZWSP not trimmed */
        {"\xc2\x85"
         "x",
         0, "_x"}, /* NEL not trimmed */
        {"tab\there", 0, "tab_here"},
        {"-_-", 0, "-_-"},
        {"", 0, "_"},
        {"   ", 0, "_"},
};

START_TEST(test_worked_examples)
{
        const token_case *c = &worked_examples[_i];
        size_t len = c->len ? c->len : strlen(c->in);
        char *out = NULL;

        ck_assert_int_eq(contract_token(c->in, len, &out), 0);
        ck_assert_str_eq(out, c->want);
        free(out);
}
END_TEST

/* Every code point ECMAScript trim() removes, as UTF-8, around "x". */
static const char *const js_spaces[] = {
        "\t",           "\n",           "\v",           "\f",           "\r",           " ",
        "\xc2\xa0",     /* U+00A0 */
        "\xe1\x9a\x80", /* U+1680 */
        "\xe2\x80\x80", "\xe2\x80\x81", "\xe2\x80\x82", "\xe2\x80\x83", "\xe2\x80\x84", "\xe2\x80\x85",
        "\xe2\x80\x86", "\xe2\x80\x87", "\xe2\x80\x88", "\xe2\x80\x89", "\xe2\x80\x8a", /* U+2000..U+200A */
        "\xe2\x80\xa8",                                                                 /* U+2028 */
        "\xe2\x80\xa9",                                                                 /* U+2029 */
        "\xe2\x80\xaf",                                                                 /* U+202F */
        "\xe2\x81\x9f",                                                                 /* U+205F */
        "\xe3\x80\x80",                                                                 /* U+3000 */
        "\xef\xbb\xbf",                                                                 /* U+FEFF */
};

START_TEST(test_every_js_space_is_trimmed)
{
        const char *sp = js_spaces[_i];
        char in[32];
        char *out = NULL;
        size_t start = 99, tlen = 99;

        /* both ends, doubled */
        snprintf(in, sizeof(in), "%s%sx%s%s", sp, sp, sp, sp);
        ck_assert_int_eq(contract_token(in, strlen(in), &out), 0);
        ck_assert_str_eq(out, "x");
        free(out);
        ck_assert_int_eq(contract_js_trim(in, strlen(in), &start, &tlen), 0);
        ck_assert_uint_eq(start, 2 * strlen(sp));
        ck_assert_uint_eq(tlen, 1);
        /* inside the token the same code point is one '_' (all are BMP) */
        snprintf(in, sizeof(in), "a%sb", sp);
        ck_assert_int_eq(contract_token(in, strlen(in), &out), 0);
        ck_assert_str_eq(out, "a_b");
        free(out);
}
END_TEST

/* Look-alikes that trim() must NOT remove. */
static const char *const not_spaces[] = {
        "\xc2\x85",     /* U+0085 NEL */
        "\xe2\x80\x8b", /* U+200B ZWSP */
        "\xe1\xa0\x8e", /* U+180E */
        "\xe2\x80\x8c", /* U+200C */
        "\xe2\x81\xa0", /* U+2060 */
        "\x1f",         /* unit separator */
        "\x7f",
};

START_TEST(test_non_spaces_are_kept_and_replaced)
{
        const char *sp = not_spaces[_i];
        char in[32];
        char *out = NULL;
        size_t start, tlen;

        snprintf(in, sizeof(in), "%sx%s", sp, sp);
        ck_assert_int_eq(contract_js_trim(in, strlen(in), &start, &tlen), 0);
        ck_assert_uint_eq(start, 0);
        ck_assert_uint_eq(tlen, strlen(in));
        ck_assert_int_eq(contract_token(in, strlen(in), &out), 0);
        ck_assert_str_eq(out, "_x_");
        free(out);
}
END_TEST

static const token_case code_unit_cases[] = {
        {"\xc2\x80", 0, "_"},            /* U+0080, first 2-byte */
        {"\xdf\xbf", 0, "_"},            /* U+07FF */
        {"\xe0\xa0\x80", 0, "_"},        /* U+0800, first 3-byte */
        {"\xed\x9f\xbf", 0, "_"},        /* U+D7FF, below surrogates */
        {"\xee\x80\x80", 0, "_"},        /* U+E000, above surrogates */
        {"\xef\xbf\xbf", 0, "_"},        /* U+FFFF, last BMP */
        {"\xf0\x90\x80\x80", 0, "__"},   /* U+10000, first astral */
        {"\xf4\x8f\xbf\xbf", 0, "__"},   /* U+10FFFF, last code point */
        {"a\0b", 3, "a_b"},              /* NUL is a code unit too */
        {"x\xf0\x9f\x98\x80", 0, "x__"}, /* astral at the end survives trim */
        {"A-Z_a-z_0-9", 0, "A-Z_a-z_0-9"},
        {"!\"#$%&'()*+,./:;<=>?@[\\]^`{|}~", 0, "______________________________"},
        {"  a b  ", 0, "a_b"},
        {"\xe2\x80\x83"
         "\xe2\x80\x8b",
         0, "_"}, /* trimmed space then ZWSP */
};

START_TEST(test_code_units)
{
        const token_case *c = &code_unit_cases[_i];
        size_t len = c->len ? c->len : strlen(c->in);
        char *out = NULL;

        ck_assert_int_eq(contract_token(c->in, len, &out), 0);
        ck_assert_str_eq(out, c->want);
        free(out);
}
END_TEST

typedef struct bad_utf8 {
        const char *in;
        size_t len;
} bad_utf8;

static const bad_utf8 invalid_utf8[] = {
        {"\x80", 1},                     /* lone continuation byte */
        {"ab\xbf", 3},                   /* continuation after ASCII */
        {"\xc0\x80", 2},                 /* overlong NUL */
        {"\xc1\xbf", 2},                 /* overlong 2-byte */
        {"\xe0\x80\x80", 3},             /* overlong 3-byte */
        {"\xe0\x9f\xbf", 3},             /* overlong U+07FF */
        {"\xf0\x80\x80\x80", 4},         /* overlong 4-byte */
        {"\xf0\x8f\xbf\xbf", 4},         /* overlong U+FFFF */
        {"\xed\xa0\x80", 3},             /* U+D800 high surrogate */
        {"\xed\xbf\xbf", 3},             /* U+DFFF low surrogate */
        {"\xed\xa0\xbd\xed\xb8\x80", 6}, /* CESU-8 surrogate pair */
        {"\xf4\x90\x80\x80", 4},         /* U+110000 */
        {"\xf5\x80\x80\x80", 4},         /* F5 lead byte */
        {"\xf8\x88\x80\x80\x80", 5},     /* 5-byte form */
        {"\xff", 1},
        {"\xfe", 1},
        {"\xe6\x97", 2},       /* truncated 3-byte */
        {"x\xc3", 2},          /* truncated at the end */
        {"\xf0\x9f\x98", 3},   /* truncated 4-byte */
        {"\xc3\x28", 2},       /* bad continuation */
        {"\xe6\x28\xa5", 3},   /* bad second byte */
        {" \xc3\xa9\x80 ", 5}, /* stray continuation inside */
};

START_TEST(test_invalid_utf8_is_eilseq)
{
        const bad_utf8 *c = &invalid_utf8[_i];
        char *out = (char *)"sentinel";
        size_t start, tlen;

        ck_assert(!contract_utf8_valid(c->in, c->len));
        ck_assert_int_eq(contract_token(c->in, c->len, &out), -EILSEQ);
        ck_assert_ptr_null(out);
        out = (char *)"sentinel";
        ck_assert_int_eq(contract_route_token(c->in, c->len, &out), -EILSEQ);
        ck_assert_ptr_null(out);
        ck_assert_int_eq(contract_js_trim(c->in, c->len, &start, &tlen), -EILSEQ);
}
END_TEST

START_TEST(test_utf8_valid)
{
        ck_assert(contract_utf8_valid("", 0));
        ck_assert(contract_utf8_valid(NULL, 0));
        ck_assert(contract_utf8_valid("plain ascii", 11));
        ck_assert(contract_utf8_valid("caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80", 14));
        ck_assert(contract_utf8_valid("a\0b", 3));
        /* the length bounds the check: a truncated tail is outside it */
        ck_assert(contract_utf8_valid("ab\xe6\x97", 2));
        ck_assert(!contract_utf8_valid("ab\xe6\x97", 4));
}
END_TEST

START_TEST(test_js_trim_spans)
{
        size_t start = 99, tlen = 99;

        ck_assert_int_eq(contract_js_trim("  ab  ", 6, &start, &tlen), 0);
        ck_assert_uint_eq(start, 2);
        ck_assert_uint_eq(tlen, 2);
        ck_assert_int_eq(contract_js_trim("a b", 3, &start, &tlen), 0);
        ck_assert_uint_eq(start, 0);
        ck_assert_uint_eq(tlen, 3);
        ck_assert_int_eq(contract_js_trim(" \t\r\n ", 5, &start, &tlen), 0);
        ck_assert_uint_eq(tlen, 0);
        ck_assert_int_eq(contract_js_trim("", 0, &start, &tlen), 0);
        ck_assert_uint_eq(tlen, 0);
        /* multi-byte content and multi-byte spaces */
        ck_assert_int_eq(contract_js_trim("\xe3\x80\x80\xc3\xa9\xe3\x80\x80", 8, &start, &tlen), 0);
        ck_assert_uint_eq(start, 3);
        ck_assert_uint_eq(tlen, 2);
}
END_TEST

START_TEST(test_length_limit)
{
        char *buf = malloc(CONTRACT_TOKEN_MAX_BYTES + 1);
        char *out = (char *)"sentinel";

        ck_assert_ptr_nonnull(buf);
        memset(buf, 'a', CONTRACT_TOKEN_MAX_BYTES + 1);
        ck_assert_int_eq(contract_token(buf, CONTRACT_TOKEN_MAX_BYTES + 1, &out), -E2BIG);
        ck_assert_ptr_null(out);
        ck_assert_int_eq(contract_route_token(buf, CONTRACT_TOKEN_MAX_BYTES + 1, &out), -E2BIG);
        ck_assert_int_eq(contract_token(buf, CONTRACT_TOKEN_MAX_BYTES, &out), 0);
        ck_assert_uint_eq(strlen(out), CONTRACT_TOKEN_MAX_BYTES);
        free(out);
        free(buf);
}
END_TEST

START_TEST(test_input_need_not_be_terminated)
{
        char *out = NULL;

        ck_assert_int_eq(contract_token("main.rest", 4, &out), 0);
        ck_assert_str_eq(out, "main");
        free(out);
}
END_TEST

START_TEST(test_route_token)
{
        static const token_case cases[] = {
                {"*", 0, "*"},
                {" * ", 0, "_"}, /* only the exact string "*" */
                {"**", 0, "__"},
                {"x*", 0, "x_"},
                {">", 0, "_"},
                {"UAQGWOEVJKMIO4WXSYOTLARXYOZTCXFK67JASEH6AFFFYK6FOPSKQCAD", 0,
                 "UAQGWOEVJKMIO4WXSYOTLARXYOZTCXFK67JASEH6AFFFYK6FOPSKQCAD"},
                {"My Space", 0, "My_Space"},
                {"", 0, "_"},
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char *out = NULL;

                ck_assert_int_eq(contract_route_token(cases[i].in, strlen(cases[i].in), &out), 0);
                ck_assert_str_eq(out, cases[i].want);
                free(out);
        }
}
END_TEST

START_TEST(test_is_token)
{
        ck_assert(contract_is_token("main"));
        ck_assert(contract_is_token("-_-"));
        ck_assert(contract_is_token("UDI36ZKVNUM5WMO4QQ6HDQU7F4OH2RCXOJRX6GAIOS5SKVNNSKCDNLJA"));
        ck_assert(!contract_is_token(""));
        ck_assert(!contract_is_token(NULL));
        ck_assert(!contract_is_token("a b"));
        ck_assert(!contract_is_token("a.b"));
        ck_assert(!contract_is_token("*"));
        ck_assert(!contract_is_token("caf\xc3\xa9"));
        ck_assert(!contract_is_token(" main"));
}
END_TEST

START_TEST(test_token_is_idempotent)
{
        /* token(token(x)) == token(x), and the result is always a token */
        for (size_t i = 0; i < sizeof(worked_examples) / sizeof(worked_examples[0]); i++) {
                char *once = NULL, *twice = NULL;

                ck_assert_int_eq(contract_token(worked_examples[i].in, strlen(worked_examples[i].in), &once), 0);
                ck_assert(contract_is_token(once));
                ck_assert_int_eq(contract_token(once, strlen(once), &twice), 0);
                ck_assert_str_eq(once, twice);
                free(once);
                free(twice);
        }
}
END_TEST

/* ---- contract_js_to_number: JavaScript Number(s) (PROTOCOL §10.1/§10.2) -- */

typedef struct number_case {
        const char *in;
        double want; /* the sign of a zero counts */
} number_case;

static const number_case number_cases[] = {
        {"0x200000000000011", 144115188075855904.0},
        /* 2^60 + 17: rounds once to 2^60 (not twice) */
        {"0b1000000000000000000000000000000000000000000000000000000010001", 1152921504606846976.0},
        {"0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
         "00000000000000000000000",
         0.0},

        /* empty or blank: 0 */
        {"", 0.0},
        {"   ", 0.0},
        {"\t\n\r", 0.0},
        {" 0 ", 0.0},
        /* decimal */
        {"0", 0.0},
        {"-0", -0.0},
        {" -0 ", -0.0},
        {"+0", 0.0},
        {"00", 0.0},
        {"0.0", 0.0},
        {"1", 1.0},
        {"2", 2.0},
        {"007", 7.0},
        {"1.5", 1.5},
        {"-1.5", -1.5},
        {"0.1", 0.1},
        {"1e0", 1.0},
        {"1E+2", 100.0},
        {"1e-3", 0.001},
        {"-1.5e2", -150.0},
        {".5", 0.5},
        {"-.5", -0.5},
        {"5.", 5.0},
        {"5.e1", 50.0},
        {"+3", 3.0},
        {"15000", 15000.0},
        {"9007199254740993", 9007199254740992.0}, /* nearest double */
        {"1e400", INFINITY},
        {"-1e400", -INFINITY},
        {"1e-400", 0.0},
        {"-1e-400", -0.0},
        /* 0x / 0o / 0b integers, either letter case */
        {"0x0", 0.0},
        {"0x1F", 31.0},
        {"0X1f", 31.0},
        {"0xffffffff", 4294967295.0},
        {"0o17", 15.0},
        {"0O17", 15.0},
        {"0b101", 5.0},
        {"0B11", 3.0},
        {" 0x10 ", 16.0},
        /* Infinity, signed or not */
        {"Infinity", INFINITY},
        {"-Infinity", -INFINITY},
        {"+Infinity", INFINITY},
        {" Infinity\n", INFINITY},
        /* JS trim: NBSP and U+3000, BOM, U+2028 */
        {"\xc2\xa0 7 \xe3\x80\x80", 7.0},
        {"\xef\xbb\xbf"
         "3",
         3.0},
        {"\xe2\x80\xa8"
         "-2\xe2\x80\xa9",
         -2.0},
};

START_TEST(test_js_to_number)
{
        const number_case *c = &number_cases[_i];
        double v = contract_js_to_number(c->in);

        ck_assert_msg(v == c->want, "Number(\"%s\") = %.17g, want %.17g", c->in, v, c->want);
        ck_assert_msg(!signbit(v) == !signbit(c->want), "Number(\"%s\"): sign of %.17g", c->in, v);
}
END_TEST

/* Number(s) is NaN. */
static const char *const nan_cases[] = {
        "abc",
        "1a",
        "a1",
        "0x",
        "0o",
        "0b",
        "0xG",
        "0b102",
        "0o8",
        "-0x1", /* no sign with a radix prefix */
        "+0x1",
        "0x-1",
        "0x 1",
        "00x1",
        "0x1p3", /* no hex floats */
        "0x1.8",
        "1e",
        "1e+",
        "1e-",
        "e5",
        ".e5",
        ".",
        "+",
        "-",
        "+-1",
        "--1",
        "..5",
        "1.2.3",
        "1,5",
        "1_000",
        "1 2",
        "inf",
        "-inf",
        "infinity",
        "INFINITY",
        "Infinityx",
        "nan",
        "NaN",
        "null",
        "true",
        "1\xc2\x85",        /* NEL is not trimmed */
        "\xe2\x80\x8b\x31", /* nor is ZWSP ("1" after it) */
        "\xef\xbc\x91",     /* U+FF11 FULLWIDTH DIGIT ONE */
        "\xff",             /* invalid UTF-8 */
        " 1\xff",
        "\xc3",     /* truncated UTF-8 */
        "\xc0\xb1", /* overlong '1' */
};

START_TEST(test_js_to_number_nan)
{
        double v = contract_js_to_number(nan_cases[_i]);

        ck_assert_msg(isnan(v), "Number(\"%s\") = %.17g, want NaN", nan_cases[_i], v);
}
END_TEST

START_TEST(test_js_to_number_null)
{
        ck_assert(isnan(contract_js_to_number(NULL)));
}
END_TEST

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

static Suite *token_suite(void)
{
        Suite *s = suite_create("contract_token");
        TCase *tc = tcase_create("token");
        TCase *num = tcase_create("js_to_number");

        tcase_add_loop_test(tc, test_worked_examples, 0, N(worked_examples));
        tcase_add_loop_test(tc, test_every_js_space_is_trimmed, 0, N(js_spaces));
        tcase_add_loop_test(tc, test_non_spaces_are_kept_and_replaced, 0, N(not_spaces));
        tcase_add_loop_test(tc, test_code_units, 0, N(code_unit_cases));
        tcase_add_loop_test(tc, test_invalid_utf8_is_eilseq, 0, N(invalid_utf8));
        tcase_add_test(tc, test_utf8_valid);
        tcase_add_test(tc, test_js_trim_spans);
        tcase_add_test(tc, test_length_limit);
        tcase_add_test(tc, test_input_need_not_be_terminated);
        tcase_add_test(tc, test_route_token);
        tcase_add_test(tc, test_is_token);
        tcase_add_test(tc, test_token_is_idempotent);
        suite_add_tcase(s, tc);

        tcase_add_loop_test(num, test_js_to_number, 0, N(number_cases));
        tcase_add_loop_test(num, test_js_to_number_nan, 0, N(nan_cases));
        tcase_add_test(num, test_js_to_number_null);
        suite_add_tcase(s, num);
        return s;
}

int main(void)
{
        return unit_run(token_suite());
}
