/* Unit tests for ctlqueue: per-agent FIFOs served in turn, the per-agent
 * bound, and everything left freed at the end. */
#include "ctlqueue.h"

#include "unit.h"

#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int freed;
static void count_free(void *p)
{
        (void)p;
        freed++;
}

#define ITEM(n) ((void *)(uintptr_t)(n))

START_TEST(one_agent_is_served_in_order)
{
        ctlqueue *q = ctlqueue_new(8, NULL);
        ck_assert_ptr_nonnull(q);
        for (int i = 1; i <= 5; i++)
                ck_assert_int_eq(ctlqueue_push(q, "a", ITEM(i)), 0);
        ck_assert_uint_eq(ctlqueue_len(q), 5);
        for (int i = 1; i <= 5; i++)
                ck_assert_ptr_eq(ctlqueue_pop(q), ITEM(i));
        ck_assert_ptr_null(ctlqueue_pop(q));
        ck_assert_uint_eq(ctlqueue_agents(q), 0);
        ctlqueue_free(q);
}
END_TEST

START_TEST(a_flood_waits_its_turn)
{
        /* Agent a queues 8 requests, then b one: b is served second. */
        ctlqueue *q = ctlqueue_new(8, NULL);
        for (int i = 1; i <= 8; i++)
                ck_assert_int_eq(ctlqueue_push(q, "a", ITEM(i)), 0);
        ck_assert_int_eq(ctlqueue_push(q, "b", ITEM(100)), 0);
        ck_assert_int_eq(ctlqueue_push(q, "c", ITEM(200)), 0);
        ck_assert_ptr_eq(ctlqueue_pop(q), ITEM(1));
        ck_assert_ptr_eq(ctlqueue_pop(q), ITEM(100));
        ck_assert_ptr_eq(ctlqueue_pop(q), ITEM(200));
        ck_assert_ptr_eq(ctlqueue_pop(q), ITEM(2));
        /* b comes back: after a's next, in turn again. */
        ck_assert_int_eq(ctlqueue_push(q, "b", ITEM(101)), 0);
        ck_assert_ptr_eq(ctlqueue_pop(q), ITEM(3));
        ck_assert_ptr_eq(ctlqueue_pop(q), ITEM(101));
        for (int i = 4; i <= 8; i++)
                ck_assert_ptr_eq(ctlqueue_pop(q), ITEM(i));
        ck_assert_ptr_null(ctlqueue_pop(q));
        ctlqueue_free(q);
}
END_TEST

START_TEST(an_agent_past_its_bound_is_refused_and_others_are_not)
{
        ctlqueue *q = ctlqueue_new(3, NULL);
        for (int i = 0; i < 3; i++)
                ck_assert_int_eq(ctlqueue_push(q, "a", ITEM(i + 1)), 0);
        ck_assert_int_eq(ctlqueue_push(q, "a", ITEM(9)), -EBUSY);
        ck_assert_int_eq(ctlqueue_push(q, "b", ITEM(10)), 0);
        ck_assert_ptr_eq(ctlqueue_pop(q), ITEM(1));
        ck_assert_int_eq(ctlqueue_push(q, "a", ITEM(4)), 0); /* room again */
        ck_assert_uint_eq(ctlqueue_len(q), 4);
        ctlqueue_free(q);
}
END_TEST

START_TEST(what_is_left_is_freed)
{
        freed = 0;
        ctlqueue *q = ctlqueue_new(4, count_free);
        for (int i = 0; i < 4; i++) {
                ck_assert_int_eq(ctlqueue_push(q, "a", ITEM(i + 1)), 0);
                ck_assert_int_eq(ctlqueue_push(q, "b", ITEM(i + 11)), 0);
        }
        (void)ctlqueue_pop(q); /* taken: the caller's */
        ctlqueue_free(q);
        ck_assert_int_eq(freed, 7);
}
END_TEST

START_TEST(a_thousand_agents_each_get_one_turn_per_round)
{
        ctlqueue *q = ctlqueue_new(2, NULL);
        char name[16];
        for (int round = 0; round < 2; round++)
                for (int a = 0; a < 1000; a++) {
                        snprintf(name, sizeof name, "agent%d", a);
                        ck_assert_int_eq(ctlqueue_push(q, name, ITEM(round * 1000 + a + 1)), 0);
                }
        for (int i = 1; i <= 2000; i++)
                ck_assert_ptr_eq(ctlqueue_pop(q), ITEM(i));
        ck_assert_ptr_null(ctlqueue_pop(q));
        ctlqueue_free(q);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("ctlqueue");
        TCase *tc = tcase_create("core");
        tcase_add_test(tc, one_agent_is_served_in_order);
        tcase_add_test(tc, a_flood_waits_its_turn);
        tcase_add_test(tc, an_agent_past_its_bound_is_refused_and_others_are_not);
        tcase_add_test(tc, what_is_left_is_freed);
        tcase_add_test(tc, a_thousand_agents_each_get_one_turn_per_round);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
