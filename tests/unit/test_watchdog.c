/* test_watchdog: the §10.3 verdict with stall crediting (issue 14 item 8).
 * Time the process was not scheduled inside a disconnect is not held
 * against the broker; a late wait outside the disconnect is; the plain
 * clock's backstop ends it anyway. */
#include "watchdog.h"

#include "unit.h"

#include <check.h>

#define WINDOW 15000

START_TEST(connected_is_never_gone)
{
        watchdog_stalls s = {0};
        ck_assert(!watchdog_judge(&s, 0, 1000000, WINDOW).gone);
}
END_TEST

START_TEST(plain_disconnect_ends_after_the_window)
{
        watchdog_stalls s = {0};
        /* Waits that returned on time are no stalls. */
        for (int64_t t = 1000; t < 20000; t += 100)
                watchdog_note_wait(&s, 100, t, t + 100 + WATCHDOG_STALL_SLACK_MS);
        ck_assert_uint_eq(s.n, 0);
        ck_assert(!watchdog_judge(&s, 1000, 1000 + WINDOW, WINDOW).gone);
        watchdog_verdict v = watchdog_judge(&s, 1000, 1000 + WINDOW + 1, WINDOW);
        ck_assert(v.gone && !v.backstop);
        ck_assert_int_eq(v.stalled_ms, 0);
}
END_TEST

START_TEST(stalls_inside_the_disconnect_are_credited)
{
        watchdog_stalls s = {0};
        /* Stopped 10 s, asked for 100 ms, inside a 20 s disconnect. */
        watchdog_note_wait(&s, 100, 5000, 15100);
        watchdog_verdict v = watchdog_judge(&s, 1000, 21000, WINDOW);
        ck_assert_int_eq(v.stalled_ms, 10000);
        ck_assert(!v.gone); /* 10 s of the 20 s could run */
        ck_assert(watchdog_judge(&s, 1000, 26001, WINDOW).gone);
        /* A stall before the disconnect counts for nothing. */
        ck_assert_int_eq(watchdog_stalled_within(&s, 16000, 30000), 0);
        /* Partly inside: only the overlap. */
        ck_assert_int_eq(watchdog_stalled_within(&s, 10100, 30000), 5000);
}
END_TEST

START_TEST(the_backstop_ends_it_whatever_the_credit)
{
        watchdog_stalls s = {0};
        watchdog_note_wait(&s, 100, 0, 1000000); /* stopped the whole time */
        ck_assert(!watchdog_judge(&s, 1000, 1000 + WINDOW * WATCHDOG_BACKSTOP_FACTOR, WINDOW).gone);
        watchdog_verdict v = watchdog_judge(&s, 1000, 1001 + WINDOW * WATCHDOG_BACKSTOP_FACTOR, WINDOW);
        ck_assert(v.gone && v.backstop);
}
END_TEST

START_TEST(the_ring_keeps_the_latest_stalls)
{
        watchdog_stalls s = {0};
        for (int i = 0; i < WATCHDOG_STALLS_KEPT + 10; i++)
                watchdog_note_wait(&s, 0, i * 10000, i * 10000 + 1000);
        ck_assert_uint_eq(s.n, WATCHDOG_STALLS_KEPT);
        /* The oldest ten are gone; the newest are there. */
        ck_assert_int_eq(watchdog_stalled_within(&s, 0, 10 * 10000), 0);
        int64_t last = (WATCHDOG_STALLS_KEPT + 9) * 10000;
        ck_assert_int_eq(watchdog_stalled_within(&s, last, last + 1000), 1000);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("watchdog");
        TCase *tc = tcase_create("verdict");
        tcase_add_test(tc, connected_is_never_gone);
        tcase_add_test(tc, plain_disconnect_ends_after_the_window);
        tcase_add_test(tc, stalls_inside_the_disconnect_are_credited);
        tcase_add_test(tc, the_backstop_ends_it_whatever_the_credit);
        tcase_add_test(tc, the_ring_keeps_the_latest_stalls);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
