/* kv_link: the KV watches and their fences have a connection of their own
 * ("cotal:delivery-kv", issue 14), apart from the bulk pulls. Through a
 * name-aware proxy the test resets only that connection and keeps it away
 * for two seconds while posts go on: no post is lost or doubled (the
 * workers' fences fail and their batches wait, §6.4), the main, fan-out
 * and reader connections never drop, and an ACL narrowed while the kv
 * connection was away is honoured once it is back (the watch catches up
 * before any later batch is handled). */
#include "cotal.h"
#include "connproxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S "kvl"
#define DLV "DLV_" S
#define KV_NAME "cotal:delivery-kv"
#define HOLD_MS 2000
#define WAIT_MS 30000
#define BEFORE 50 /* posts before the cut */
#define DURING 50 /* posts while the kv connection is away */

static co_daemon dm;
static connproxy *proxy;
static char sock[320];

static void setup(void)
{
        tu_broker_setup();
        const char *owners[] = {BOB, CAROL};
        co_provision_general(S, owners, 2);
        co_acl(S, ALICE, "[\"general\"]");
        memset(&dm, 0, sizeof dm);
        proxy = connproxy_start(tu_broker.port);
        ck_assert(proxy);
        tu_servers = connproxy_url(proxy);
        snprintf(sock, sizeof sock, "%.200s/diag.sock", tu_broker.dir);
        ck_assert(co_daemon_start(&dm, S, (const char *const[]){"--diag-socket", sock, NULL}));
}

static void teardown(void)
{
        co_daemon_finish(&dm);
        connproxy_stop(proxy);
        proxy = NULL;
        tu_servers = NULL;
        tu_broker_teardown();
}

static json_int_t link_field(json_t *doc, const char *link, const char *field)
{
        return json_integer_value(json_object_get(json_object_get(json_object_get(doc, "links"), link), field));
}

START_TEST(a_kv_link_reset_loses_nothing_and_misses_no_acl_change)
{
        const char *owners[] = {BOB, CAROL};
        ck_assert_int_eq(connproxy_count(proxy, KV_NAME), 1);
        co_chat_burst(S, ALICE, "general", "kv", BEFORE, 100);
        co_tally t = co_dlv_settle(S, owners, 2, 1, "kv", BEFORE, WAIT_MS, NULL);
        ck_assert_msg(t.missing == 0 && t.dup == 0 && t.foreign == 0, "before: %d missing, %d dup, %d foreign",
                      t.missing, t.dup, t.foreign);

        /* Away: posts go on, and Carol loses general while no watch runs. */
        ck_assert_int_eq(connproxy_cut(proxy, KV_NAME, HOLD_MS), 1);
        co_chat_burst(S, ALICE, "general", "kw", DURING, 100);
        co_acl(S, CAROL, "[]");
        ck_assert(co_daemon_logged_within(&dm, "kv connection disconnected from the broker", WAIT_MS));
        ck_assert(co_daemon_logged_within(&dm, "(kv connection)", WAIT_MS));

        /* Back: every post reached Bob once; Carol got none of them (her
         * ACL was narrowed before the reader could read any: the reader's
         * fence failed until the watch was back and caught up). */
        const char *bob[] = {BOB}, *carol[] = {CAROL};
        t = co_dlv_settle(S, bob, 1, 1, "kw", DURING, WAIT_MS, NULL);
        ck_assert_msg(t.missing == 0 && t.dup == 0 && t.foreign == 0, "bob: %d missing, %d dup, %d foreign", t.missing,
                      t.dup, t.foreign);
        /* A marker posted after the change: once Bob has it, everything
         * Carol would get has been decided. */
        co_chat(S, ALICE, "general", "marker", NULL);
        ck_assert(co_wait_id(DLV, "cotal." S ".dlv." BOB, "marker:" BOB ":1", WAIT_MS));
        ck_assert(co_wait_acked("INBOX_" S, "reader", co_last_seq("INBOX_" S), WAIT_MS));
        t = co_dlv_tally(S, carol, 1, 1, "kw", DURING);
        ck_assert_msg(t.dup == 0 && t.foreign == 0, "carol: %d dup, %d foreign", t.dup, t.foreign);
        int carol_got = DURING - t.missing;
        fprintf(stderr, "kv_link: %d of %d posts made during the cut reached carol, whose ACL was narrowed then\n",
                carol_got, DURING);
        ck_assert_int_eq(co_count_id(DLV, "cotal." S ".dlv." CAROL, "marker:" CAROL ":1"), 0);

        json_t *doc = co_diag(sock, NULL);
        ck_assert_int_ge(link_field(doc, "kv", "reconnects"), 1);
        ck_assert_int_eq(link_field(doc, "main", "reconnects"), 0);
        ck_assert_int_eq(link_field(doc, "fanout", "reconnects"), 0);
        ck_assert_int_eq(link_field(doc, "reader", "reconnects"), 0);
        json_decref(doc);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("kv_link");
        TCase *tc = tcase_create("core");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, a_kv_link_reset_loses_nothing_and_misses_no_acl_change);
        suite_add_tcase(s, tc);
        return co_run(s);
}
