/* Unit tests for denials: nats-server 2.9's violation texts (as cnats
 * hands them over: outer quotes removed, Go's %q kept) are read into
 * operation + subject; each subject is "first" once and counted after;
 * the table is bounded and says so once; a denied publish is found by
 * subject and time. */
#include "denials.h"

#include "unit.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void parses(const char *text, denial_op want_op, const char *want_subject)
{
        denial_op op;
        char subject[DENIALS_SUBJECT_MAX];
        ck_assert_msg(denials_parse(text, &op, subject, sizeof subject), "not parsed: %s", text);
        ck_assert_int_eq(op, want_op);
        ck_assert_str_eq(subject, want_subject);
}

static void refuses(const char *text)
{
        denial_op op;
        char subject[DENIALS_SUBJECT_MAX];
        ck_assert_msg(!denials_parse(text, &op, subject, sizeof subject), "parsed: %s", text);
}

START_TEST(server_texts_name_operation_and_subject)
{
        parses("Permissions Violation for Publish to \"cotal.s.dlv.UABC\"", DENIAL_PUBLISH, "cotal.s.dlv.UABC");
        parses("Permissions Violation for Subscription to \"cotal.s.dinbox.>\"", DENIAL_SUBSCRIBE, "cotal.s.dinbox.>");
        parses("Permissions Violation for Subscription to \"cotal.s.ctl.delivery.*\" using queue \"delivery\"",
               DENIAL_SUBSCRIBE, "cotal.s.ctl.delivery.*");
        parses("Permissions Violation for Publish with Reply of \"$GNR.x\"", DENIAL_REPLY, "$GNR.x");
        parses("Permissions Violation for Subscription to \"a.b\", too many tokens", DENIAL_SUBSCRIBE, "a.b");
        /* Unquoted (other servers) and inside cnats' wording. */
        parses("nats: Permissions Violation for Publish to $KV.b.k", DENIAL_PUBLISH, "$KV.b.k");
        refuses("Authorization Violation");
        refuses("Permissions Violation for Publish to \"\"");
        refuses("Permissions Violation for Publish to \"unterminated");
        refuses("Permissions Violation for Teleport to \"x\"");
        refuses(NULL);
        /* Longer than the buffer: refused, never truncated. */
        char longtext[600];
        snprintf(longtext, sizeof longtext, "Permissions Violation for Publish to \"%0*d\"", 400, 7);
        refuses(longtext);
}
END_TEST

START_TEST(each_subject_is_first_once_then_counted)
{
        denials d;
        denials_init(&d);
        uint64_t c = 0;
        ck_assert_int_eq(denials_note(&d, DENIAL_PUBLISH, "a", 10, &c), DENIAL_FIRST);
        ck_assert_uint_eq(c, 1);
        ck_assert_int_eq(denials_note(&d, DENIAL_PUBLISH, "a", 20, &c), DENIAL_REPEAT);
        ck_assert_int_eq(denials_note(&d, DENIAL_PUBLISH, "a", 30, &c), DENIAL_REPEAT);
        ck_assert_uint_eq(c, 3);
        /* Same subject, another operation: its own entry. */
        ck_assert_int_eq(denials_note(&d, DENIAL_SUBSCRIBE, "a", 40, &c), DENIAL_FIRST);
        json_t *j = denials_json(&d);
        ck_assert_int_eq(json_integer_value(json_object_get(j, "total")), 4);
        json_t *subjects = json_object_get(j, "subjects");
        ck_assert_uint_eq(json_array_size(subjects), 2);
        ck_assert_str_eq(json_string_value(json_object_get(json_array_get(subjects, 0), "op")), "publish");
        ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(subjects, 0), "count")), 3);
        json_decref(j);
        denials_fini(&d);
}
END_TEST

START_TEST(the_table_is_bounded_and_says_so_once)
{
        denials d;
        denials_init(&d);
        char subject[32];
        for (int i = 0; i < DENIALS_MAX_SUBJECTS; i++) {
                snprintf(subject, sizeof subject, "s.%d", i);
                ck_assert_int_eq(denials_note(&d, DENIAL_PUBLISH, subject, 1, NULL), DENIAL_FIRST);
        }
        ck_assert_int_eq(denials_note(&d, DENIAL_PUBLISH, "over.1", 2, NULL), DENIAL_TABLE_FULL);
        ck_assert_int_eq(denials_note(&d, DENIAL_PUBLISH, "over.2", 3, NULL), DENIAL_UNTRACKED);
        ck_assert_int_eq(denials_note(&d, DENIAL_PUBLISH, "s.0", 4, NULL), DENIAL_REPEAT);
        json_t *j = denials_json(&d);
        ck_assert_int_eq(json_integer_value(json_object_get(j, "untracked")), 2);
        ck_assert_int_eq(json_integer_value(json_object_get(j, "total")), DENIALS_MAX_SUBJECTS + 3);
        ck_assert_uint_eq(json_array_size(json_object_get(j, "subjects")), DENIALS_MAX_SUBJECTS);
        json_decref(j);
        denials_fini(&d);
}
END_TEST

START_TEST(a_denied_publish_is_found_by_subject_and_time)
{
        denials d;
        denials_init(&d);
        ck_assert(!denials_publish_denied_since(&d, "x", 0));
        denials_note(&d, DENIAL_PUBLISH, "x", 100, NULL);
        denials_note(&d, DENIAL_SUBSCRIBE, "y", 150, NULL);
        ck_assert(denials_publish_denied_since(&d, "x", 100));
        ck_assert(!denials_publish_denied_since(&d, "x", 101)); /* older than the round */
        ck_assert(!denials_publish_denied_since(&d, "y", 0));   /* a subscription, not a publish */
        ck_assert(!denials_publish_denied_since(&d, "z", 0));
        denials_note(&d, DENIAL_PUBLISH, "x", 200, NULL);
        ck_assert(denials_publish_denied_since(&d, "x", 101));
        denials_fini(&d);
}
END_TEST

/* The retry back-off doubles per delivery between its bounds, with at
 * most 20 % taken off as jitter; the report records unknown texts whole. */
START_TEST(retry_delay_doubles_within_bounds_and_reports_keep_the_text)
{
        for (uint64_t key = 1; key < 200; key++) {
                int64_t want = DENIALS_RETRY_MIN_MS;
                for (uint64_t delivered = 1; delivered < 12; delivered++) {
                        int64_t got = denials_retry_delay_ms(delivered, key);
                        ck_assert_int_le(got, want);
                        ck_assert_int_ge(got, want - want / 5);
                        want = want * 2 > DENIALS_RETRY_MAX_MS ? DENIALS_RETRY_MAX_MS : want * 2;
                }
        }
        denials d;
        denials_init(&d);
        denial_op op;
        char subject[DENIALS_SUBJECT_MAX];
        ck_assert_int_eq(denials_report(&d, "something else", 1, &op, subject, sizeof subject), DENIAL_FIRST);
        ck_assert_int_eq(op, DENIAL_OTHER);
        ck_assert_str_eq(subject, "something else");
        ck_assert_int_eq(denials_report(&d, NULL, 2, &op, subject, sizeof subject), DENIAL_FIRST);
        ck_assert_str_eq(subject, "(no text)");
        ck_assert_int_eq(
                denials_report(&d, "Permissions Violation for Publish to \"a.b\"", 3, &op, subject, sizeof subject),
                DENIAL_FIRST);
        ck_assert_int_eq(op, DENIAL_PUBLISH);
        ck_assert_int_eq(
                denials_report(&d, "Permissions Violation for Publish to \"a.b\"", 4, &op, subject, sizeof subject),
                DENIAL_REPEAT);
        denials_fini(&d);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("denials");
        TCase *tc = tcase_create("denials");
        tcase_add_test(tc, server_texts_name_operation_and_subject);
        tcase_add_test(tc, each_subject_is_first_once_then_counted);
        tcase_add_test(tc, the_table_is_bounded_and_says_so_once);
        tcase_add_test(tc, a_denied_publish_is_found_by_subject_and_time);
        tcase_add_test(tc, retry_delay_doubles_within_bounds_and_reports_keep_the_text);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
