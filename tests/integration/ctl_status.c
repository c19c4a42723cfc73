/* ctl_status: `cotal-deliveryctl status` reports the lease, the daemon's
 * fanout and reader consumers and every agent's dlv_ durable with their
 * pending counts, as a table or JSON: before any daemon ran (no lease,
 * consumers missing) and with a daemon that delivered three messages an
 * agent has not consumed yet. */
#include "cotal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S "st"

static co_daemon dm;

static void setup(void)
{
        tu_broker_setup();
        co_provision(S);
        co_acl(S, BOB, "[\"general\"]");
        co_member(S, "general", BOB, 0, 1, -1);
        const char *args[] = {"--space", S, "dlv", "create", BOB, NULL};
        ck_assert_int_eq(tu_ctl(NULL, NULL, args), 0);
}

static void teardown(void)
{
        co_daemon_finish(&dm);
        tu_broker_teardown();
}

static json_t *status_json(void)
{
        char *out = NULL, *err = NULL;
        const char *args[] = {"--space", S, "--json", "status", NULL};
        int st = tu_ctl(&out, &err, args);
        ck_assert_msg(st == 0, "status exit %d: %s", st, err);
        json_t *j = tu_parse_line(out);
        free(out);
        free(err);
        return j;
}

static json_t *consumer(const json_t *j, const char *name)
{
        size_t i;
        json_t *v;
        json_array_foreach (json_object_get(j, "consumers"), i, v)
                if (strcmp(json_string_value(json_object_get(v, "name")), name) == 0)
                        return v;
        return NULL;
}

START_TEST(status_before_and_with_a_daemon)
{
        json_t *j = status_json();
        ck_assert(json_is_false(json_object_get(json_object_get(j, "lease"), "present")));
        ck_assert(json_is_false(json_object_get(consumer(j, "fanout"), "present")));
        ck_assert(json_is_false(json_object_get(consumer(j, "reader"), "present")));
        json_t *dlv = consumer(j, "dlv_" BOB);
        ck_assert_ptr_nonnull(dlv);
        ck_assert_int_eq(json_integer_value(json_object_get(dlv, "pending")), 0);
        json_decref(j);

        ck_assert(co_daemon_start(&dm, S, NULL));
        for (int i = 0; i < 3; i++) {
                char id[16];
                snprintf(id, sizeof id, "s-%d", i);
                co_chat(S, ALICE, "general", id, NULL);
        }
        ck_assert(co_wait_id("DLV_" S, "cotal." S ".dlv." BOB, "s-2:" BOB ":1", 15000));
        ck_assert(co_wait_acked("INBOX_" S, "reader", co_last_seq("INBOX_" S), 15000));

        j = status_json();
        json_t *lease = json_object_get(j, "lease");
        ck_assert(json_is_true(json_object_get(lease, "ready")));
        ck_assert_str_eq(json_string_value(json_object_get(lease, "holder")), dm.id);
        ck_assert_int_gt(json_integer_value(json_object_get(lease, "ttl_left_ms")), 0);
        ck_assert(json_is_true(json_object_get(consumer(j, "fanout"), "present")));
        ck_assert_int_eq(json_integer_value(json_object_get(consumer(j, "reader"), "pending")), 0);
        ck_assert_int_eq(json_integer_value(json_object_get(consumer(j, "reader"), "ack_pending")), 0);
        /* Nobody consumed Bob's deliveries: three are pending for him. */
        ck_assert_int_eq(json_integer_value(json_object_get(consumer(j, "dlv_" BOB), "pending")), 3);
        json_decref(j);

        char *out = NULL;
        const char *args[] = {"--space", S, "status", NULL};
        ck_assert_int_eq(tu_ctl(&out, NULL, args), 0);
        ck_assert_msg(strstr(out, "holder=") && strstr(out, "ready=true"), "%s", out);
        ck_assert_msg(strstr(out, "dlv_" BOB) && strstr(out, "DLV_" S), "%s", out);
        free(out);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("ctl_status");
        TCase *tc = tcase_create("status");
        tcase_add_unchecked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, status_before_and_with_a_daemon);
        suite_add_tcase(s, tc);
        return co_run(s);
}
