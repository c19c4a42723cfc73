/* test_strmap: the string map under the KV caches, the roster index and
 * the control queue, checked against a plain array model through a long
 * seeded run of puts, replaces and removes (open addressing with removal
 * is where such maps go wrong: a removed slot must not cut a probe chain). */
#include "strmap.h"

#include "unit.h"

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEYS 600
#define STEPS 200000

static uint64_t rng = 42;

static uint32_t next_rand(void)
{
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return (uint32_t)rng;
}

static void count_cb(const char *key, void *value, void *arg)
{
        (void)key;
        (void)value;
        (*(size_t *)arg)++;
}

START_TEST(matches_a_model_through_random_operations)
{
        strmap m;
        strmap_init(&m);
        uintptr_t model[KEYS] = {0}; /* 0: absent, else the value */
        char key[32];
        size_t present = 0;
        for (int step = 0; step < STEPS; step++) {
                int k = (int)(next_rand() % KEYS);
                snprintf(key, sizeof key, "key-%d", k);
                uint32_t op = next_rand() % 3;
                if (op < 2) {
                        uintptr_t v = (uintptr_t)step + 1;
                        ck_assert_int_eq(strmap_put(&m, key, (void *)v), 0);
                        present += model[k] == 0;
                        model[k] = v;
                } else {
                        void *was = strmap_remove(&m, key);
                        ck_assert_ptr_eq(was, (void *)model[k]);
                        present -= model[k] != 0;
                        model[k] = 0;
                }
                ck_assert_uint_eq(m.count, present);
                if (step % 997 == 0) {
                        for (int i = 0; i < KEYS; i++) {
                                snprintf(key, sizeof key, "key-%d", i);
                                ck_assert_ptr_eq(strmap_get(&m, key), (void *)model[i]);
                        }
                        size_t walked = 0;
                        strmap_foreach(&m, count_cb, &walked);
                        ck_assert_uint_eq(walked, present);
                }
        }
        strmap_fini(&m);
}
END_TEST

START_TEST(keys_are_copied_and_empty_maps_answer)
{
        strmap m;
        strmap_init(&m);
        ck_assert_ptr_null(strmap_get(&m, "x"));
        ck_assert_ptr_null(strmap_remove(&m, "x"));
        char key[8] = "abc";
        int v = 1;
        ck_assert_int_eq(strmap_put(&m, key, &v), 0);
        strcpy(key, "xyz"); /* the map holds its own copy */
        ck_assert_ptr_eq(strmap_get(&m, "abc"), &v);
        ck_assert_ptr_null(strmap_get(&m, "xyz"));
        ck_assert_int_eq(strmap_put(&m, "", &v), 0); /* the empty key is a key */
        ck_assert_ptr_eq(strmap_get(&m, ""), &v);
        strmap_fini(&m);
        strmap_fini(&m); /* twice is harmless */
}
END_TEST

int main(void)
{
        Suite *s = suite_create("strmap");
        TCase *tc = tcase_create("map");
        tcase_add_test(tc, matches_a_model_through_random_operations);
        tcase_add_test(tc, keys_are_copied_and_empty_maps_answer);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
