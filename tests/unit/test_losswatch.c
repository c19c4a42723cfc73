/* Unit tests for losswatch: a first delivery past the next stream
 * sequence with no delivery missed means entries were removed unread;
 * redeliveries, a missed delivery and a restarted durable never count. */
#include "losswatch.h"

#include "unit.h"

#include <check.h>
#include <stdlib.h>

START_TEST(in_order_first_deliveries_report_nothing)
{
        losswatch w;
        losswatch_reset(&w, 0, 0);
        for (uint64_t s = 1; s <= 100; s++)
                ck_assert_uint_eq(losswatch_note(&w, 1, s, s), 0);
}
END_TEST

START_TEST(a_skipped_stream_sequence_is_an_entry_removed_unread)
{
        losswatch w;
        losswatch_reset(&w, 40, 40); /* the durable had delivered seq 40 */
        ck_assert_uint_eq(losswatch_note(&w, 1, 41, 41), 0);
        ck_assert_uint_eq(losswatch_note(&w, 1, 47, 42), 5); /* 42-46 gone */
        ck_assert_uint_eq(losswatch_note(&w, 1, 48, 43), 0);
        /* Removed while nobody read: counted from the durable's state. */
        losswatch_reset(&w, 100, 90);
        ck_assert_uint_eq(losswatch_note(&w, 1, 110, 91), 9);
}
END_TEST

START_TEST(redeliveries_in_between_change_nothing)
{
        losswatch w;
        losswatch_reset(&w, 0, 0);
        ck_assert_uint_eq(losswatch_note(&w, 1, 10, 1), 0);
        ck_assert_uint_eq(losswatch_note(&w, 1, 11, 2), 0);
        /* 10 nak'ed and redelivered, then the next first delivery. */
        ck_assert_uint_eq(losswatch_note(&w, 2, 10, 3), 0);
        ck_assert_uint_eq(losswatch_note(&w, 3, 10, 4), 0);
        ck_assert_uint_eq(losswatch_note(&w, 1, 12, 5), 0);
        /* An evicted entry among redeliveries: still seen. */
        ck_assert_uint_eq(losswatch_note(&w, 2, 11, 6), 0);
        ck_assert_uint_eq(losswatch_note(&w, 1, 15, 7), 2);
}
END_TEST

START_TEST(a_missed_delivery_restarts_the_watch_instead_of_guessing)
{
        losswatch w;
        losswatch_reset(&w, 0, 0);
        ck_assert_uint_eq(losswatch_note(&w, 1, 1, 1), 0);
        /* cseq 2-4 never reached us (a reconnect or a client-side drop):
         * the jump in stream sequence is theirs, not a removal. */
        ck_assert_uint_eq(losswatch_note(&w, 1, 9, 5), 0);
        ck_assert_uint_eq(losswatch_note(&w, 1, 10, 6), 0);
        ck_assert_uint_eq(losswatch_note(&w, 1, 12, 7), 1);
        /* Missed deliveries and then a redelivery: the next first
         * delivery only starts the watch again. */
        ck_assert_uint_eq(losswatch_note(&w, 2, 3, 20), 0);
        ck_assert_uint_eq(losswatch_note(&w, 1, 30, 21), 0);
        ck_assert_uint_eq(losswatch_note(&w, 1, 31, 22), 0);
}
END_TEST

START_TEST(a_recreated_durable_starts_over_without_a_false_alarm)
{
        losswatch w;
        losswatch_reset(&w, 500, 500);
        ck_assert_uint_eq(losswatch_note(&w, 1, 501, 501), 0);
        /* Re-created with deliver_policy all: sequences start over. */
        ck_assert_uint_eq(losswatch_note(&w, 1, 3, 1), 0);
        ck_assert_uint_eq(losswatch_note(&w, 1, 4, 2), 0);
        /* And stream sequences that go back (a broker reusing a lost
         * tail) are no removal either. */
        ck_assert_uint_eq(losswatch_note(&w, 1, 2, 3), 0);
        ck_assert_uint_eq(losswatch_note(&w, 1, 3, 4), 0);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("losswatch");
        TCase *tc = tcase_create("core");
        tcase_add_test(tc, in_order_first_deliveries_report_nothing);
        tcase_add_test(tc, a_skipped_stream_sequence_is_an_entry_removed_unread);
        tcase_add_test(tc, redeliveries_in_between_change_nothing);
        tcase_add_test(tc, a_missed_delivery_restarts_the_watch_instead_of_guessing);
        tcase_add_test(tc, a_recreated_durable_starts_over_without_a_false_alarm);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
