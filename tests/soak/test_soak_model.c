/* Unit tests for the soak's model (tests/soak/soak_model.c): the expected
 * set it derives from a hand-made history follows PROTOCOL §1.3 (ACL
 * patterns), §4.4 (the interval, boundaries as §13 item 62 states them),
 * §6.2/§6.3 (sender excluded, mentions resolved by lowercased name) and §7
 * row 5 (the ACL of the epoch the reader judged in). A soak whose model is
 * wrong would report the daemon's bugs as passes, or its passes as bugs. */
#include "soak.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ACL_ALL = 0, ACL_STAR = 4, ACL_NONE = 7, ACL_DUR_C = 8 };

typedef struct seen {
        uint64_t keys[64];
        bool required[64];
        int n;
} seen;

static void collect(void *arg, uint64_t key, bool required)
{
        seen *s = arg;
        ck_assert_int_lt(s->n, 64);
        s->keys[s->n] = key;
        s->required[s->n++] = required;
}

/* 1 required, 0 optional, -1 not expected. */
static int expected(const seen *s, uint64_t key)
{
        for (int i = 0; i < s->n; i++)
                if (s->keys[i] == key)
                        return s->required[i] ? 1 : 0;
        return -1;
}

static soak_model m;

static void setup(void)
{
        soak_model_init(&m, 4);
        for (int o = 0; o < 4; o++) {
                snprintf(m.ids[o], sizeof m.ids[o], "UOWNER%d", o);
                snprintf(m.names[o], sizeof m.names[o], "agent%d", o);
                m.acl[0][o] = ACL_ALL;
        }
}

static void teardown(void)
{
        soak_model_fini(&m);
}

static size_t post(int ch, uint64_t seq, int sender, uint16_t mentions, uint8_t flags)
{
        soak_post p = {.seq = seq,
                       .epoch = m.epoch,
                       .sender_owner = (int16_t)sender,
                       .ch = (uint8_t)ch,
                       .flags = flags,
                       .mentions = mentions};
        return soak_model_add_post(&m, &p);
}

static void member(int ch, int o, uint64_t gen, uint64_t jc, uint64_t lc)
{
        soak_version v = {.gen = gen, .jc = jc, .lc = lc, .epoch = m.epoch};
        soak_model_add_version(&m, ch, o, &v);
}

START_TEST(acl_patterns_follow_subject_matches)
{
        for (int ch = 0; ch < SOAK_N_CH; ch++)
                ck_assert(soak_acl_covers(ACL_ALL, ch));
        ck_assert(soak_acl_covers(ACL_STAR, CH_DUR_A));
        ck_assert(soak_acl_covers(ACL_STAR, CH_LIVE_X));
        ck_assert(!soak_acl_covers(ACL_STAR, CH_DUR_B));
        ck_assert(!soak_acl_covers(ACL_STAR, CH_LIVE_Y));
        for (int ch = 0; ch < SOAK_N_CH; ch++)
                ck_assert(!soak_acl_covers(ACL_NONE, ch));
        /* "dur" has one token, "dur.c" two: only the exact entry covers. */
        ck_assert(soak_acl_covers(ACL_DUR_C, CH_DUR_C));
        ck_assert(!soak_acl_covers(ACL_DUR_C, CH_DUR_A));
        ck_assert(soak_acl_covers(5, CH_DUR_B)); /* dur.> */
        ck_assert(!soak_acl_covers(5, CH_LIVE_X));
        ck_assert(soak_acl_covers(6, CH_LIVE_Y)); /* live.> */
}
END_TEST

START_TEST(interval_boundaries_and_sender)
{
        member(CH_DUR_A, 1, 3, 10, 20);
        member(CH_DUR_A, 2, 1, 0, SOAK_OPEN);
        size_t at10 = post(CH_DUR_A, 10, -1, 0, 0), at11 = post(CH_DUR_A, 11, -1, 0, 0);
        size_t at20 = post(CH_DUR_A, 20, -1, 0, 0), at21 = post(CH_DUR_A, 21, 2, 0, 0);
        size_t other = post(CH_DUR_B, 15, -1, 0, 0);
        seen s = {0};
        soak_model_expected(&m, collect, &s);
        ck_assert_int_eq(expected(&s, soak_key(at10, 1, 3)), -1); /* seq == joinCursor */
        ck_assert_int_eq(expected(&s, soak_key(at11, 1, 3)), 1);
        ck_assert_int_eq(expected(&s, soak_key(at20, 1, 3)), 1);  /* seq == leaveCursor */
        ck_assert_int_eq(expected(&s, soak_key(at21, 1, 3)), -1); /* past it */
        ck_assert_int_eq(expected(&s, soak_key(at21, 2, 1)), -1); /* the sender's own post */
        ck_assert_int_eq(expected(&s, soak_key(at10, 2, 1)), 1);
        ck_assert_int_eq(expected(&s, soak_key(other, 2, 1)), -1); /* another channel */
        ck_assert_int_eq(s.n, 5);                                  /* owner 1: 11, 20; owner 2: 10, 11, 20 */
}
END_TEST

START_TEST(generations_are_separate_intervals)
{
        member(CH_DUR_C, 0, 1, 0, 5);
        member(CH_DUR_C, 0, 2, 8, SOAK_OPEN);
        size_t a = post(CH_DUR_C, 5, -1, 0, 0), b = post(CH_DUR_C, 7, -1, 0, 0), c = post(CH_DUR_C, 9, -1, 0, 0);
        seen s = {0};
        soak_model_expected(&m, collect, &s);
        ck_assert_int_eq(expected(&s, soak_key(a, 0, 1)), 1);
        ck_assert_int_eq(expected(&s, soak_key(b, 0, 1)), -1); /* between leave and rejoin */
        ck_assert_int_eq(expected(&s, soak_key(b, 0, 2)), -1);
        ck_assert_int_eq(expected(&s, soak_key(c, 0, 2)), 1);
        ck_assert_int_eq(s.n, 2);
}
END_TEST

START_TEST(acl_of_the_judging_epoch)
{
        /* Epoch 0: owner 1 may read dur.a, owner 3 may not. */
        m.acl[0][3] = ACL_NONE;
        member(CH_DUR_A, 1, 1, 0, SOAK_OPEN);
        size_t early = post(CH_DUR_A, 1, -1, 0, 0);
        soak_model_next_epoch(&m);
        m.acl[1][1] = ACL_NONE; /* revoked at a quiescent point */
        m.acl[1][3] = ACL_ALL;  /* granted */
        size_t late = post(CH_DUR_A, 2, -1, 0, 0);
        /* Owner 3 joins in epoch 1 with a catch-up window from seq 0: the
         * early post is copied and judged now, under the epoch-1 ACL. */
        member(CH_DUR_A, 3, 1, 0, SOAK_OPEN);
        seen s = {0};
        soak_model_expected(&m, collect, &s);
        ck_assert_int_eq(expected(&s, soak_key(early, 1, 1)), 1);
        ck_assert_int_eq(expected(&s, soak_key(late, 1, 1)), -1);
        ck_assert_int_eq(expected(&s, soak_key(early, 3, 1)), 1);
        ck_assert_int_eq(expected(&s, soak_key(late, 3, 1)), 1);
        ck_assert_int_eq(s.n, 3);
}
END_TEST

START_TEST(mentions_on_live_channels_only)
{
        ck_assert_int_eq(soak_model_resolve(&m, "AGENT1"), 1);
        ck_assert_int_eq(soak_model_resolve(&m, "agent2"), 2);
        ck_assert_int_eq(soak_model_resolve(&m, "nobody"), -1);
        m.acl[0][2] = ACL_STAR; /* covers live.x, not live.y */
        member(CH_DUR_B, 1, 1, 0, SOAK_OPEN);
        size_t live = post(CH_LIVE_X, 1, 3, (1u << 1) | (1u << 2) | (1u << 3), 0);
        size_t other = post(CH_LIVE_Y, 2, -1, (1u << 2), 0);
        size_t unsure = post(CH_LIVE_X, 3, -1, (1u << 0), POST_ROSTER_UNSURE);
        size_t durable = post(CH_DUR_B, 4, 0, (1u << 3), 0); /* mentions ignored (§6.2) */
        seen s = {0};
        soak_model_expected(&m, collect, &s);
        ck_assert_int_eq(expected(&s, soak_key(live, 1, 0)), 1);
        ck_assert_int_eq(expected(&s, soak_key(live, 2, 0)), 1);
        ck_assert_int_eq(expected(&s, soak_key(live, 3, 0)), -1);  /* the sender */
        ck_assert_int_eq(expected(&s, soak_key(other, 2, 0)), -1); /* outside the ACL */
        ck_assert_int_eq(expected(&s, soak_key(unsure, 0, 0)), 0);
        ck_assert_int_eq(expected(&s, soak_key(durable, 1, 1)), 1);
        ck_assert_int_eq(expected(&s, soak_key(durable, 3, 0)), -1);
        ck_assert_int_eq(s.n, 4);
}
END_TEST

START_TEST(poison_yields_nothing_unknown_seq_is_optional)
{
        member(CH_DUR_A, 1, 2, 0, SOAK_OPEN);
        post(CH_DUR_A, 1, -1, 0, POST_POISON);
        post(CH_LIVE_X, 2, -1, 0xf, POST_POISON);
        size_t lost = post(CH_DUR_A, 0, -1, 0, POST_SEQ_UNKNOWN);
        seen s = {0};
        soak_model_expected(&m, collect, &s);
        ck_assert_int_eq(s.n, 1);
        ck_assert_int_eq(expected(&s, soak_key(lost, 1, 2)), 0);
}
END_TEST

START_TEST(map_counts_by_key)
{
        soak_map map;
        soak_map_init(&map);
        for (uint64_t i = 0; i < 20000; i++)
                soak_map_put(&map, soak_key(i, (int)(i % 12), i % 5))->copies++;
        soak_map_put(&map, soak_key(7, 7, 2))->copies++;
        ck_assert_uint_eq(map.n, 20000);
        ck_assert_uint_eq(soak_map_get(&map, soak_key(7, 7, 2))->copies, 2);
        ck_assert_uint_eq(soak_map_get(&map, soak_key(19999, 19999 % 12, 19999 % 5))->copies, 1);
        ck_assert_ptr_null(soak_map_get(&map, soak_key(7, 8, 2)));
        ck_assert_ptr_null(soak_map_get(&map, soak_key(20001, 1, 1)));
        soak_map_fini(&map);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("soak_model");
        TCase *tc = tcase_create("model");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, acl_patterns_follow_subject_matches);
        tcase_add_test(tc, interval_boundaries_and_sender);
        tcase_add_test(tc, generations_are_separate_intervals);
        tcase_add_test(tc, acl_of_the_judging_epoch);
        tcase_add_test(tc, mentions_on_live_channels_only);
        tcase_add_test(tc, poison_yields_nothing_unknown_seq_is_optional);
        tcase_add_test(tc, map_counts_by_key);
        suite_add_tcase(s, tc);
        SRunner *sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? 1 : 0;
}
