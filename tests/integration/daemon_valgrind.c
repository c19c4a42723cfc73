/* daemon_valgrind: the daemon's whole lifecycle under valgrind memcheck —
 * start, lease, fan-out and delivery to a durable member, a live mention,
 * a control join and list, a SIGHUP reload, SIGTERM — with zero memcheck
 * errors and no definite or indirect leak (valgrind's exit status 99 would
 * replace the daemon's 0). Plain build only (valgrind and ASan exclude
 * each other). */
#include "cotal.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S "vg"
#define DLV "DLV_" S
#define N 20
#define WAIT_MS 60000 /* everything is ~20x slower under memcheck */

static co_daemon dm;

static void setup(void)
{
        tu_broker_setup();
        co_provision(S);
        co_acl(S, BOB, "[\"general\",\"lobby\"]");
        co_acl(S, CAROL, "[\"general\",\"lobby\"]");
        co_member(S, "general", BOB, 0, 1, -1);
        co_presence(S, CAROL, "carol");
        tu_kv_put("cotal_channels_" S, "lobby", "{\"deliveryClass\":\"live\"}");
}

static void teardown(void)
{
        proc_destroy(&dm.p);
        tu_broker_teardown();
}

START_TEST(lifecycle_is_memcheck_clean)
{
        setenv("COTAL_TEST_VALGRIND", "1", 1);
        co_daemon_spawn(&dm, S, (const char *const[]){"--log-level", "info", NULL}, NULL);
        ck_assert_msg(co_daemon_wait_ready(&dm, WAIT_MS), "the daemon under valgrind did not become ready");

        char id[32];
        for (int i = 0; i < N; i++) {
                snprintf(id, sizeof id, "vg-%d", i);
                co_chat(S, ALICE, "general", id, NULL);
        }
        co_chat(S, ALICE, "lobby", "vg-live", "\"mentions\":[\"Carol\"]");
        ck_assert_uint_eq(co_wait_count(DLV, "cotal." S ".dlv." BOB, N, WAIT_MS), N);
        ck_assert(co_wait_id(DLV, "cotal." S ".dlv." CAROL, "vg-live:" CAROL ":0", WAIT_MS));

        json_t *r = co_request(S, CAROL,
                               "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"general\"},\"from\":{\"id\":\"" CAROL
                               "\",\"name\":\"carol\"}}",
                               NULL, NULL, WAIT_MS);
        ck_assert_msg(r && json_is_true(json_object_get(r, "ok")), "join: %s", co_json_text(r));
        json_decref(r);
        r = co_request(S, CAROL, "{\"op\":\"listMemberships\",\"from\":{\"id\":\"" CAROL "\",\"name\":\"carol\"}}",
                       NULL, NULL, WAIT_MS);
        ck_assert_msg(r && json_is_true(json_object_get(r, "ok")), "list: %s", co_json_text(r));
        json_decref(r);

        proc_signal(&dm.p, SIGHUP);
        ck_assert(co_daemon_logged_within(&dm, "Reloaded the configuration", WAIT_MS));

        proc_signal(&dm.p, SIGTERM);
        ck_assert_int_eq(proc_wait(&dm.p, WAIT_MS), 0);
        if (dm.p.status != 0)
                co_daemon_dump(&dm);
        ck_assert_msg(dm.p.status == 0, "exit status %d under valgrind (99: memcheck errors or leaks)", dm.p.status);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("daemon_valgrind");
        TCase *tc = tcase_create("valgrind");
        tcase_add_unchecked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 300);
        tcase_add_test(tc, lifecycle_is_memcheck_clean);
        suite_add_tcase(s, tc);
        return tu_run(s);
}
