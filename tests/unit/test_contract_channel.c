/* Unit tests for contract_channel: assertValidChannel, isConcreteChannel,
 * subjectMatches and channelInAllow (PROTOCOL §1.3), channelPath (§1.1),
 * KV key validity (§4.2) and member keys (§4.4). */
#include "contract_channel.h"

#include "unit.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ---- assertValidChannel ------------------------------------------------- */

static const char *const valid_channels[] = {
        "review", "team.backend", "a-b_c.D9", "general", "a.b.c.d.e", "*", ">",
        "team.>", "team.*",       "*.x",      "*.*.>",   "-",         "_",
};

START_TEST(test_valid_channels)
{
        const char *bad = (const char *)"untouched";

        ck_assert_int_eq(contract_channel_check(valid_channels[_i], &bad, NULL), CHANNEL_VALID);
        ck_assert_str_eq(bad, "untouched");
}
END_TEST

typedef struct check_case {
        const char *ch;
        channel_check want;
        const char *bad; /* offending segment for CHANNEL_BAD_SEGMENT */
} check_case;

static const check_case invalid_channels[] = {
        {"", CHANNEL_EMPTY, NULL},
        {".", CHANNEL_EMPTY_SEGMENT, NULL},
        {".a", CHANNEL_EMPTY_SEGMENT, NULL},
        {"a.", CHANNEL_EMPTY_SEGMENT, NULL},
        {"a..b", CHANNEL_EMPTY_SEGMENT, NULL},
        {">.a", CHANNEL_GT_NOT_LAST, NULL},
        {"a.>.b", CHANNEL_GT_NOT_LAST, NULL},
        {">.>", CHANNEL_GT_NOT_LAST, NULL},
        {"a b", CHANNEL_BAD_SEGMENT, "a b"},
        {" a", CHANNEL_BAD_SEGMENT, " a"}, /* segments are not trimmed */
        {"a.b ", CHANNEL_BAD_SEGMENT, "b "},
        {"a.b c.d", CHANNEL_BAD_SEGMENT, "b c"},
        {"caf\xc3\xa9", CHANNEL_BAD_SEGMENT, "caf\xc3\xa9"},
        {"a*", CHANNEL_BAD_SEGMENT, "a*"},
        {"a.>>", CHANNEL_BAD_SEGMENT, ">>"},
        {"a.**", CHANNEL_BAD_SEGMENT, "**"},
        {"a/b", CHANNEL_BAD_SEGMENT, "a/b"},
        {"x.\t", CHANNEL_BAD_SEGMENT, "\t"},
        /* left to right, first failure wins */
        {"a b..c", CHANNEL_BAD_SEGMENT, "a b"},
        {"a..b c", CHANNEL_EMPTY_SEGMENT, NULL},
        {"x.>.a b", CHANNEL_GT_NOT_LAST, NULL},
        {"a b.>.c", CHANNEL_BAD_SEGMENT, "a b"},
        {">..", CHANNEL_GT_NOT_LAST, NULL},
        {"a..>", CHANNEL_EMPTY_SEGMENT, NULL},
};

START_TEST(test_invalid_channels)
{
        const check_case *c = &invalid_channels[_i];
        const char *bad = NULL;
        size_t bad_len = 0;

        ck_assert_int_eq(contract_channel_check(c->ch, &bad, &bad_len), c->want);
        if (c->bad) {
                ck_assert_ptr_nonnull(bad);
                /* the span points into the input */
                ck_assert(bad >= c->ch && bad + bad_len <= c->ch + strlen(c->ch));
                ck_assert_uint_eq(bad_len, strlen(c->bad));
                ck_assert_mem_eq(bad, c->bad, bad_len);
        }
        /* NULL out-pointers are allowed */
        ck_assert_int_eq(contract_channel_check(c->ch, NULL, NULL), c->want);
}
END_TEST

/* ---- isConcreteChannel -------------------------------------------------- */

START_TEST(test_is_concrete)
{
        ck_assert(contract_channel_is_concrete("review"));
        ck_assert(contract_channel_is_concrete("team.backend"));
        ck_assert(contract_channel_is_concrete("a.**"));
        ck_assert(contract_channel_is_concrete("a.b>"));
        ck_assert(contract_channel_is_concrete("a.*b"));
        ck_assert(contract_channel_is_concrete(""));
        ck_assert(!contract_channel_is_concrete("*"));
        ck_assert(!contract_channel_is_concrete(">"));
        ck_assert(!contract_channel_is_concrete("team.*"));
        ck_assert(!contract_channel_is_concrete("team.>"));
        ck_assert(!contract_channel_is_concrete("*.x"));
        /* segments ARE trimmed here (unlike assertValidChannel) */
        ck_assert(!contract_channel_is_concrete("a. * .b"));
        ck_assert(!contract_channel_is_concrete("a.\t>"));
        ck_assert(!contract_channel_is_concrete("a.\xc2\xa0>\xe3\x80\x80"));
        /* ZWSP is not whitespace, so "\u200b*" is not a wildcard */
        ck_assert(contract_channel_is_concrete("a.\xe2\x80\x8b*"));
        /* invalid UTF-8 upstream is U+FFFD, never trimmed: not a wildcard */
        ck_assert(contract_channel_is_concrete("a.\xff*"));
}
END_TEST

/* ---- subjectMatches ----------------------------------------------------- */

typedef struct match_case {
        const char *pattern;
        const char *name;
        bool want;
} match_case;

static const match_case match_cases[] = {
        /* PROTOCOL §1.3 examples */
        {"team.>", "team.backend", true},
        {"team.>", "team.a.b", true},
        {"team.>", "team", false},
        {"*", "general", true},
        {"*", "a.b", false},
        {">", "a", true},
        {">", "a.b.c", true},
        {">", "team.backend", true},
        /* exact tokens, byte-equal and case-sensitive */
        {"a.b", "a.b", true},
        {"a.b", "a.c", false},
        {"a.b", "a", false},
        {"a", "a.b", false},
        {"A", "a", false},
        {" a", "a", false},
        {"general", "general", true},
        /* '*' is one token */
        {"*.b", "a.b", true},
        {"a.*.c", "a.x.c", true},
        {"a.*.c", "a.x", false},
        {"a.*", "a.x.y", false},
        {"*.*", "a.b", true},
        /* '>' decides as soon as it is reached */
        {"a.>", "a", false},
        {"a.>", "b.c", false},
        {"a.>.c", "a.b", true},
        /* split(".") semantics: "" is one empty token */
        {">", "", true},
        {"*", "", true},
        {"", "", true},
        {"", "a", false},
        {"a..b", "a..b", true},
        {"a.*.b", "a..b", true},
};

START_TEST(test_subject_matches)
{
        const match_case *c = &match_cases[_i];

        ck_assert_msg(contract_subject_matches(c->pattern, c->name) == c->want, "subjectMatches(\"%s\", \"%s\") != %d",
                      c->pattern, c->name, c->want);
}
END_TEST

START_TEST(test_subject_matches_null)
{
        ck_assert(!contract_subject_matches(NULL, "a"));
        ck_assert(!contract_subject_matches("a", NULL));
}
END_TEST

START_TEST(test_channel_in_allow)
{
        const char *const acl[] = {"general", "team.>"};
        const char *const with_null[] = {NULL, "review", NULL};
        const char *const everything[] = {">"};

        ck_assert(contract_channel_in_allow(acl, 2, "general"));
        ck_assert(contract_channel_in_allow(acl, 2, "team.backend"));
        ck_assert(contract_channel_in_allow(acl, 2, "team.a.b"));
        ck_assert(!contract_channel_in_allow(acl, 2, "team"));
        ck_assert(!contract_channel_in_allow(acl, 2, "random"));
        ck_assert(!contract_channel_in_allow(acl, 1, "team.backend")); /* n is honoured */
        ck_assert(!contract_channel_in_allow(acl, 0, "general"));      /* [] reads nothing */
        ck_assert(!contract_channel_in_allow(NULL, 0, "general"));
        ck_assert(contract_channel_in_allow(with_null, 3, "review"));
        ck_assert(!contract_channel_in_allow(with_null, 3, "general"));
        ck_assert(contract_channel_in_allow(everything, 1, "anything.at.all"));
}
END_TEST

/* ---- channelPath -------------------------------------------------------- */

typedef struct path_case {
        const char *ch;
        int rc;
        const char *want;
} path_case;

static const path_case path_cases[] = {
        {"review", 0, "review"},
        {"team.backend", 0, "team.backend"},
        {" team . backend ", 0, "team.backend"},
        {"a..b", 0, "a.b"},
        {".a.", 0, "a"},
        {"", 0, "_"},
        {"...", 0, "_"},
        {" . \t", 0, "_"},
        {"a.*", 0, "a.*"},
        {"*", 0, "*"},
        {"a.>", 0, "a.>"},
        {">", 0, ">"},
        {"a. > ", 0, "a.>"},
        {"a.>.", 0, "a.>"}, /* empty segments are dropped first */
        {"a.>.b", -EINVAL, NULL},
        {">.a", -EINVAL, NULL},
        {"My Space.x/y", 0, "My_Space.x_y"},
        {"caf\xc3\xa9.\xf0\x9f\x98\x80", 0, "caf_.__"},
        {"x*>", 0, "x__"}, /* not a wildcard segment: token() */
        {"**.>>", 0, "__.__"},
        {"\xc2\xa0"
         "a\xe3\x80\x80.b",
         0, "a.b"},
        {"a.\xff", -EILSEQ, NULL},
        {"\xed\xa0\x80", -EILSEQ, NULL},
};

START_TEST(test_channel_path)
{
        const path_case *c = &path_cases[_i];
        char *out = (char *)"sentinel";

        ck_assert_int_eq(contract_channel_path(c->ch, &out), c->rc);
        if (c->rc == 0) {
                ck_assert_str_eq(out, c->want);
                free(out);
        } else {
                ck_assert_ptr_null(out);
        }
}
END_TEST

START_TEST(test_channel_path_is_identity_on_valid_channels)
{
        /* §1.1: channelPath(ch) == ch for every channel assertValidChannel
         * accepts. */
        char *out = NULL;

        ck_assert_int_eq(contract_channel_path(valid_channels[_i], &out), 0);
        ck_assert_str_eq(out, valid_channels[_i]);
        free(out);
}
END_TEST

START_TEST(test_channel_path_long_segment)
{
        size_t n = 5000;
        char *ch = malloc(n + 1);
        char *out = (char *)"sentinel";

        ck_assert_ptr_nonnull(ch);
        memset(ch, 'a', n);
        ch[n] = '\0';
        ck_assert_int_eq(contract_channel_path(ch, &out), -E2BIG);
        ck_assert_ptr_null(out);
        free(ch);
}
END_TEST

/* ---- KV keys ------------------------------------------------------------ */

START_TEST(test_kv_key_valid)
{
        ck_assert(contract_kv_key_valid("lease.0"));
        ck_assert(contract_kv_key_valid("=defaults"));
        ck_assert(contract_kv_key_valid("team.backend/UDI36ZKVNUM5WMO4QQ6HDQU7F4OH2RCXOJRX6GAIOS5SKVNNSKCDNLJA"));
        ck_assert(contract_kv_key_valid("a-b_c"));
        ck_assert(contract_kv_key_valid("a..b")); /* the regex allows inner double dots */
        ck_assert(contract_kv_key_valid("/"));
        ck_assert(contract_kv_key_valid("="));
        ck_assert(!contract_kv_key_valid(""));
        ck_assert(!contract_kv_key_valid(NULL));
        ck_assert(!contract_kv_key_valid(".a"));
        ck_assert(!contract_kv_key_valid("a."));
        ck_assert(!contract_kv_key_valid("."));
        ck_assert(!contract_kv_key_valid("a b"));
        ck_assert(!contract_kv_key_valid("a*"));
        ck_assert(!contract_kv_key_valid("team.>"));
        ck_assert(!contract_kv_key_valid("caf\xc3\xa9"));
        ck_assert(!contract_kv_key_valid("a\tb"));
        ck_assert(!contract_kv_key_valid("a:b"));
}
END_TEST

START_TEST(test_member_key_parse)
{
        const char *ch = NULL, *owner = NULL;
        size_t clen = 0, olen = 0;

        ck_assert(contract_member_key_parse("team.backend/UABC", &ch, &clen, &owner, &olen));
        ck_assert_uint_eq(clen, 12);
        ck_assert_mem_eq(ch, "team.backend", 12);
        ck_assert_uint_eq(olen, 4);
        ck_assert_str_eq(owner, "UABC");

        /* split at the FIRST '/' */
        ck_assert(contract_member_key_parse("a/b/c", &ch, &clen, &owner, &olen));
        ck_assert_uint_eq(clen, 1);
        ck_assert_mem_eq(ch, "a", 1);
        ck_assert_str_eq(owner, "b/c");
        ck_assert_uint_eq(olen, 3);
        ck_assert(contract_member_key_parse("a//b", &ch, &clen, &owner, &olen));
        ck_assert_uint_eq(clen, 1);
        ck_assert_str_eq(owner, "/b");

        ck_assert(!contract_member_key_parse("noslash", &ch, &clen, &owner, &olen));
        ck_assert(!contract_member_key_parse("/abc", &ch, &clen, &owner, &olen));
        ck_assert(!contract_member_key_parse("abc/", &ch, &clen, &owner, &olen));
        ck_assert(!contract_member_key_parse("a/b/", &ch, &clen, &owner, &olen));
        ck_assert(!contract_member_key_parse("/", &ch, &clen, &owner, &olen));
        ck_assert(!contract_member_key_parse("", &ch, &clen, &owner, &olen));
        ck_assert(!contract_member_key_parse(NULL, &ch, &clen, &owner, &olen));
        ck_assert(!contract_member_key_parse("lease.0", &ch, &clen, &owner, &olen));
        ck_assert(contract_member_key_parse("x/y", NULL, NULL, NULL, NULL));
}
END_TEST

START_TEST(test_member_key_round_trip)
{
        char *key = NULL;
        const char *ch, *owner;
        size_t clen, olen;

        ck_assert_int_eq(contract_member_key("team.backend", "UDI36ZKV", &key), 0);
        ck_assert_str_eq(key, "team.backend/UDI36ZKV");
        ck_assert(contract_kv_key_valid(key));
        ck_assert(contract_member_key_parse(key, &ch, &clen, &owner, &olen));
        ck_assert_uint_eq(clen, strlen("team.backend"));
        ck_assert_str_eq(owner, "UDI36ZKV");
        free(key);
        key = (char *)"sentinel";
        ck_assert_int_eq(contract_member_key(NULL, "x", &key), -EINVAL);
        ck_assert_ptr_null(key);
}
END_TEST

static Suite *channel_suite(void)
{
        Suite *s = suite_create("contract_channel");
        TCase *check = tcase_create("assertValidChannel");
        TCase *match = tcase_create("subjectMatches");
        TCase *path = tcase_create("channelPath");
        TCase *keys = tcase_create("keys");

        tcase_add_loop_test(check, test_valid_channels, 0, N(valid_channels));
        tcase_add_loop_test(check, test_invalid_channels, 0, N(invalid_channels));
        tcase_add_test(check, test_is_concrete);
        tcase_add_loop_test(match, test_subject_matches, 0, N(match_cases));
        tcase_add_test(match, test_subject_matches_null);
        tcase_add_test(match, test_channel_in_allow);
        tcase_add_loop_test(path, test_channel_path, 0, N(path_cases));
        tcase_add_loop_test(path, test_channel_path_is_identity_on_valid_channels, 0, N(valid_channels));
        tcase_add_test(path, test_channel_path_long_segment);
        tcase_add_test(keys, test_kv_key_valid);
        tcase_add_test(keys, test_member_key_parse);
        tcase_add_test(keys, test_member_key_round_trip);
        suite_add_tcase(s, check);
        suite_add_tcase(s, match);
        suite_add_tcase(s, path);
        suite_add_tcase(s, keys);
        return s;
}

int main(void)
{
        return unit_run(channel_suite());
}
