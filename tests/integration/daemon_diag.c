/* daemon_diag: the diagnostics socket (issue 6). Under systemd's
 * RuntimeDirectory the daemon serves $RUNTIME_DIRECTORY/diag.sock, mode
 * 0600; `cotal-deliveryctl diag` reads it without the broker and shows the
 * daemon's identity, lease, link, counters, effective configuration (no
 * secrets) and its connection events, including a broker outage that has
 * already healed. A second daemon never takes a live daemon's socket; a
 * clean stop removes it. */
#include "cotal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S "dg"
#define DLV_BOB "cotal." S ".dlv." BOB
#define WAIT_MS 20000

static co_daemon dm;
static char rundir[300], sock[320];

static void setup(void)
{
        tu_broker_setup();
        co_provision(S);
        co_acl(S, BOB, "[\"general\"]");
        co_member(S, "general", BOB, 0, 1, -1);
        snprintf(rundir, sizeof rundir, "%.200s/run", tu_broker.dir);
        ck_assert_int_eq(mkdir(rundir, 0700), 0);
        snprintf(sock, sizeof sock, "%s/diag.sock", rundir);
        char env[340];
        snprintf(env, sizeof env, "RUNTIME_DIRECTORY=%s", rundir);
        co_daemon_spawn(&dm, S, NULL, (char *[]){env, NULL});
        ck_assert(co_daemon_wait_ready(&dm, DAEMON_READY_TIMEOUT_MS) && dm.p.pid > 0);
}

static void teardown(void)
{
        co_daemon_finish(&dm);
        tu_broker_teardown();
}

static json_t *path(json_t *doc, const char *a, const char *b)
{
        json_t *v = json_object_get(doc, a);
        return b ? json_object_get(v, b) : v;
}

static bool has_event(json_t *doc, const char *event)
{
        size_t i;
        json_t *e;
        json_array_foreach (json_object_get(doc, "connection_events"), i, e)
                if (strcmp(json_string_value(json_object_get(e, "event")), event) == 0)
                        return true;
        return false;
}

START_TEST(socket_is_private_and_answers_with_the_daemons_state)
{
        struct stat st;
        ck_assert_int_eq(lstat(sock, &st), 0);
        ck_assert(S_ISSOCK(st.st_mode));
        ck_assert_int_eq(st.st_mode & 0777, 0600);

        co_chat(S, ALICE, "general", "dg-1", NULL);
        ck_assert(co_wait_id("DLV_" S, DLV_BOB, "dg-1:" BOB ":1", WAIT_MS));
        json_t *doc = co_diag(sock, NULL);
        ck_assert_ptr_nonnull(doc);
        ck_assert_int_eq(json_integer_value(path(doc, "pid", NULL)), dm.p.pid);
        ck_assert_str_eq(json_string_value(path(doc, "space", NULL)), S);
        ck_assert_str_eq(json_string_value(path(doc, "id", NULL)), dm.id);
        ck_assert(json_is_true(path(doc, "lease", "held")));
        ck_assert(json_is_true(path(doc, "lease", "ready")));
        ck_assert_str_eq(json_string_value(path(doc, "lease", "holder")), dm.id);
        ck_assert_str_eq(json_string_value(path(doc, "lease", "bucket")), "cotal_delivery_" S);
        ck_assert_int_gt(json_integer_value(path(doc, "lease", "ttl_left_ms")), 0);
        ck_assert(json_is_true(path(doc, "link", "connected")));
        ck_assert_int_ge(json_integer_value(path(doc, "counters", "delivered")), 1);
        ck_assert_int_ge(json_integer_value(path(doc, "counters", "entries_written")), 1);
        /* The effective configuration, as the daemon runs with it. */
        ck_assert_str_eq(json_string_value(path(doc, "config", "server")), tu_broker.url);
        ck_assert_str_eq(json_string_value(path(doc, "config", "diag-socket")), sock);
        ck_assert_str_eq(json_string_value(path(doc, "config", "log-level")), "debug");
        ck_assert(json_is_true(path(doc, "config", "no-auth")));
        json_t *first = json_array_get(path(doc, "connection_events", NULL), 0);
        ck_assert_str_eq(json_string_value(json_object_get(first, "event")), "connect");
        ck_assert_str_eq(json_string_value(json_object_get(first, "reason")), tu_broker.url);
        json_decref(doc);

        /* The table says the same for a person. */
        char *out = NULL;
        ck_assert_int_eq(tu_ctl(&out, NULL, (const char *[]){"diag", "--socket", sock, NULL}), 0);
        ck_assert_msg(strstr(out, "lease    cotal_delivery_" S "/lease.0 held, ready"), "%s", out);
        ck_assert_msg(strstr(out, "link     connected"), "%s", out);
        ck_assert_msg(strstr(out, "connect    main   nats://127.0.0.1:"), "%s", out);
        free(out);
}
END_TEST

typedef struct link_ctx {
        bool want_connected;
        int reconnects;
} link_ctx;

static bool link_is(void *arg)
{
        link_ctx *c = arg;
        json_t *doc = co_diag(sock, NULL);
        bool ok = doc && json_is_true(path(doc, "link", "connected")) == c->want_connected &&
                  json_integer_value(path(doc, "link", "reconnects")) >= c->reconnects;
        json_decref(doc);
        return ok;
}

START_TEST(a_healed_broker_outage_stays_visible)
{
        /* With the broker gone the socket still answers, link down. */
        ck_assert_int_eq(natsd_stop(&tu_broker), 0);
        ck_assert_msg(test_wait_until(link_is, &(link_ctx){false, 0}, WAIT_MS), "diag never showed the link down");
        ck_assert_int_eq(natsd_restart(&tu_broker), 0);
        ck_assert_msg(test_wait_until(link_is, &(link_ctx){true, 1}, WAIT_MS), "diag never showed the reconnect");
        json_t *doc = co_diag(sock, NULL);
        ck_assert(has_event(doc, "disconnect"));
        ck_assert(has_event(doc, "reconnect"));
        ck_assert_int_ge(json_integer_value(path(doc, "connection_events_total", NULL)), 3);
        json_decref(doc);
        /* And it still delivers. */
        co_chat(S, ALICE, "general", "dg-2", NULL);
        ck_assert(co_wait_id("DLV_" S, DLV_BOB, "dg-2:" BOB ":1", WAIT_MS));
}
END_TEST

START_TEST(a_second_daemon_never_takes_a_live_socket)
{
        co_daemon second;
        char env[340];
        snprintf(env, sizeof env, "RUNTIME_DIRECTORY=%s", rundir);
        co_daemon_spawn(&second, S, NULL, (char *[]){env, NULL});
        ck_assert_int_eq(proc_wait(&second.p, WAIT_MS), 0);
        ck_assert_int_eq(second.p.status, 1); /* the lease is held */
        char *err = proc_stderr(&second.p);
        ck_assert_msg(strstr(err, "another daemon is serving it"), "%s", err);
        free(err);
        proc_destroy(&second.p);
        json_t *doc = co_diag(sock, NULL);
        ck_assert_ptr_nonnull(doc);
        ck_assert_int_eq(json_integer_value(path(doc, "pid", NULL)), dm.p.pid);
        json_decref(doc);
}
END_TEST

START_TEST(without_a_daemon_diag_says_so)
{
        char missing[340];
        snprintf(missing, sizeof missing, "%s/none.sock", rundir);
        char *err = NULL;
        ck_assert_int_eq(tu_ctl(NULL, &err, (const char *[]){"diag", "--socket", missing, NULL}), 4);
        ck_assert_msg(strstr(err, "no diagnostics from"), "%s", err);
        free(err);
}
END_TEST

/* Last: healthy, then a clean stop removes the socket. */
START_TEST(a_clean_stop_removes_the_socket)
{
        co_daemon_assert_healthy(&dm);
        ck_assert_int_eq(co_daemon_stop(&dm), 0);
        ck_assert_int_eq(access(sock, F_OK), -1);
        ck_assert_int_eq(errno, ENOENT);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("daemon_diag");
        TCase *tc = tcase_create("diag");
        tcase_add_unchecked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, socket_is_private_and_answers_with_the_daemons_state);
        tcase_add_test(tc, a_healed_broker_outage_stays_visible);
        tcase_add_test(tc, a_second_daemon_never_takes_a_live_socket);
        tcase_add_test(tc, without_a_daemon_diag_says_so);
        tcase_add_test(tc, a_clean_stop_removes_the_socket);
        suite_add_tcase(s, tc);
        return co_run(s);
}
