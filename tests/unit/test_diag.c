/* Unit tests for diag's pure helpers: server URLs shown in diagnostics
 * lose their user:password, and the connection-event ring keeps the last
 * CONNLOG_SIZE events in order. */
#include "connlog.h"
#include "diag.h"

#include "unit.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void redacts(const char *in, const char *want)
{
        char *got = diag_redact_url(in);
        ck_assert_msg(got && strcmp(got, want) == 0, "%s -> %s, want %s", in, got ? got : "(null)", want);
        free(got);
}

START_TEST(userinfo_never_reaches_diagnostics)
{
        redacts("nats://127.0.0.1:4222", "nats://127.0.0.1:4222");
        redacts("nats://alice:s3cret@127.0.0.1:4222", "nats://***@127.0.0.1:4222");
        redacts("nats://t@localhost", "nats://***@localhost");
        redacts("tls://a:b@h1:1,nats://h2:2,c:d@h3", "tls://***@h1:1,nats://h2:2,***@h3");
        /* cnats takes the user info up to the last '@': nothing of it stays. */
        redacts("nats://u:p@ss@h:4222", "nats://***@h:4222");
        redacts("", "");
}
END_TEST

START_TEST(ring_keeps_the_last_events_in_order)
{
        connlog l;
        connlog_init(&l);
        char reason[32];
        for (int i = 0; i < CONNLOG_SIZE + 10; i++) {
                snprintf(reason, sizeof reason, "r%d", i);
                connlog_add(&l, i % 2 ? CONNLOG_RECONNECT : CONNLOG_DISCONNECT, i % 3 ? "main" : NULL, reason);
        }
        connlog_add(&l, CONNLOG_ERROR, "reader", "bad \xff byte\n");
        uint64_t total = 0;
        json_t *arr = connlog_json(&l, &total);
        ck_assert_uint_eq(total, CONNLOG_SIZE + 11);
        ck_assert_uint_eq(json_array_size(arr), CONNLOG_SIZE);
        /* Oldest retained first: r11 … r73, then the error. */
        ck_assert_str_eq(json_string_value(json_object_get(json_array_get(arr, 0), "reason")), "r11");
        ck_assert_str_eq(json_string_value(json_object_get(json_array_get(arr, 0), "event")), "reconnect");
        json_t *last = json_array_get(arr, CONNLOG_SIZE - 1);
        ck_assert_str_eq(json_string_value(json_object_get(last, "event")), "error");
        ck_assert_str_eq(json_string_value(json_object_get(last, "reason")), "bad ? byte?");
        ck_assert_str_eq(json_string_value(json_object_get(last, "connection")), "reader");
        /* r11: 11 % 3 != 0 names "main"; r12 names none, so has no field. */
        ck_assert_str_eq(json_string_value(json_object_get(json_array_get(arr, 0), "connection")), "main");
        ck_assert_ptr_null(json_object_get(json_array_get(arr, 1), "connection"));
        const char *when = json_string_value(json_object_get(last, "time"));
        ck_assert_uint_eq(strlen(when), strlen("2026-11-23T10:00:00.000Z"));
        ck_assert_int_eq(when[strlen(when) - 1], 'Z');
        json_decref(arr);
        connlog_fini(&l);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("diag");
        TCase *tc = tcase_create("diag");
        tcase_add_test(tc, userinfo_never_reaches_diagnostics);
        tcase_add_test(tc, ring_keeps_the_last_events_in_order);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
