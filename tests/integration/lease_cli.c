/* lease_cli: `cotal-deliveryctl lease show` and `lease watch` report a
 * lease record written by the test (PROTOCOL §4.5, §9): holder, since,
 * ready, revision, age, TTL left; watch prints one line per change
 * (put, ready, release) and notices the TTL expiry, which produces no
 * KV event. */
#include "testutil.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DAEMON_ID "UBUTBVSJTSOF5RB4XK2NNHIRP6B2I6Q6K7JO7XRDEVXBRYNRWQOXDRWC"
#define LEASE_BUCKET "cotal_delivery_lease"
#define LEASE_SUBJECT "$KV." LEASE_BUCKET ".lease.0"

static void setup(void)
{
        tu_broker_setup();
        const char *args[] = {"--space", "lease", "provision", NULL};
        ck_assert_int_eq(tu_ctl(NULL, NULL, args), 0);
}

static void teardown(void)
{
        tu_broker_teardown();
}

static int64_t wall_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Writes the lease record like the daemon (§9), returning the revision.
 * expect < 0: unconditional; otherwise Nats-Expected-Last-Subject-Sequence. */
static uint64_t write_lease(bool ready, int64_t expect, const char *op)
{
        char value[256] = "";
        if (!op)
                snprintf(value, sizeof value, "{\"holder\":\"%s\",\"since\":%lld,\"ready\":%s}", DAEMON_ID,
                         (long long)wall_ms(), ready ? "true" : "false");
        natsMsg *m = NULL;
        ck_assert(natsMsg_Create(&m, LEASE_SUBJECT, NULL, value, (int)strlen(value)) == NATS_OK);
        char num[24];
        if (expect >= 0) {
                snprintf(num, sizeof num, "%lld", (long long)expect);
                natsMsgHeader_Set(m, "Nats-Expected-Last-Subject-Sequence", num);
        }
        if (op)
                natsMsgHeader_Set(m, "KV-Operation", op);
        jsCtx *js = NULL;
        ck_assert(natsConnection_JetStream(&js, tu_nc, NULL) == NATS_OK);
        jsPubAck *pa = NULL;
        jsErrCode jerr = 0;
        natsStatus s = js_PublishMsg(&pa, js, m, NULL, &jerr);
        ck_assert_msg(s == NATS_OK, "lease write failed: %s %d", natsStatus_GetText(s), (int)jerr);
        uint64_t rev = pa->Sequence;
        jsPubAck_Destroy(pa);
        jsCtx_Destroy(js);
        natsMsg_Destroy(m);
        return rev;
}

static json_t *lease_show(int want_status)
{
        char *out = NULL, *err = NULL;
        const char *args[] = {"--space", "lease", "--json", "lease", "show", NULL};
        int st = tu_ctl(&out, &err, args);
        ck_assert_msg(st == want_status, "lease show exit %d, want %d: %s", st, want_status, err);
        json_t *j = tu_parse_line(out);
        free(out);
        free(err);
        return j;
}

START_TEST(show_reports_absent_then_the_record)
{
        json_t *j = lease_show(4);
        ck_assert(json_is_false(json_object_get(j, "present")));
        json_decref(j);

        int64_t before = wall_ms();
        uint64_t rev = write_lease(false, 0, NULL);
        j = lease_show(0);
        ck_assert(json_is_true(json_object_get(j, "present")));
        ck_assert_str_eq(json_string_value(json_object_get(j, "holder")), DAEMON_ID);
        ck_assert(json_is_false(json_object_get(j, "ready")));
        ck_assert_int_eq(json_integer_value(json_object_get(j, "revision")), (json_int_t)rev);
        json_int_t since = json_integer_value(json_object_get(j, "since"));
        ck_assert_int_ge(since, before);
        json_int_t left = json_integer_value(json_object_get(j, "ttl_left_ms"));
        ck_assert_int_gt(left, 0);
        ck_assert_int_le(left, 30000);
        ck_assert_int_ge(json_integer_value(json_object_get(j, "age_ms")), 0);
        json_decref(j);

        /* Text form names the holder and the revision. */
        char *out = NULL;
        const char *args[] = {"--space", "lease", "lease", "show", NULL};
        ck_assert_int_eq(tu_ctl(&out, NULL, args), 0);
        ck_assert_msg(strstr(out, "holder=" DAEMON_ID) && strstr(out, "ready=false"), "%s", out);
        free(out);

        /* A conditional delete (the daemon's release, §9) reads as absent. */
        write_lease(false, (int64_t)rev, "DEL");
        j = lease_show(4);
        ck_assert(json_is_false(json_object_get(j, "present")));
        json_decref(j);
}
END_TEST

START_TEST(show_reports_an_unreadable_record)
{
        write_lease(false, -1, NULL);
        tu_kv_put(LEASE_BUCKET, "lease.0", "{\"holder\":42}");
        json_t *j = lease_show(0);
        ck_assert(json_is_true(json_object_get(j, "present")));
        ck_assert_msg(json_string_value(json_object_get(j, "error")), "no error field");
        ck_assert_ptr_null(json_object_get(j, "holder"));
        json_decref(j);
        write_lease(false, -1, "DEL");
}
END_TEST

typedef struct watch_ctx {
        proc *p;
        size_t want;
} watch_ctx;

static bool has_lines(void *arg)
{
        watch_ctx *w = arg;
        char *out = proc_stdout(w->p);
        bool ok = (size_t)count_lines(out) >= w->want;
        free(out);
        return ok;
}

static char *ctl_path(void)
{
        return getenv("COTAL_DELIVERYCTL");
}

START_TEST(watch_prints_one_line_per_change)
{
        char *argv[] = {ctl_path(), "--server", tu_broker.url, "--space", "lease", "--json",
                        "lease",    "watch",    "--count",     "4",       NULL};
        proc p;
        ck_assert_int_eq(proc_spawn(&p, argv, NULL), 0);
        watch_ctx w = {.p = &p, .want = 1};
        /* First line: the current state (no lease). */
        ck_assert_msg(test_wait_until(has_lines, &w, 10000), "no initial line");

        uint64_t r1 = write_lease(false, -1, NULL);
        w.want = 2;
        ck_assert_msg(test_wait_until(has_lines, &w, 10000), "acquire not reported");
        uint64_t r2 = write_lease(true, (int64_t)r1, NULL);
        w.want = 3;
        ck_assert_msg(test_wait_until(has_lines, &w, 10000), "ready not reported");
        write_lease(true, (int64_t)r2, "DEL");
        ck_assert_int_eq(proc_wait(&p, 10000), 0); /* --count 4 ends it */
        ck_assert_int_eq(p.status, 0);

        char *out = proc_stdout(&p);
        char **lines;
        size_t n = tu_lines(out, &lines);
        ck_assert_int_eq(n, 4);
        json_t *l0 = tu_parse_line(lines[0]), *l1 = tu_parse_line(lines[1]), *l2 = tu_parse_line(lines[2]),
               *l3 = tu_parse_line(lines[3]);
        ck_assert_str_eq(json_string_value(json_object_get(l0, "event")), "absent");
        ck_assert(json_is_true(json_object_get(l1, "present")));
        ck_assert(json_is_false(json_object_get(l1, "ready")));
        ck_assert_int_eq(json_integer_value(json_object_get(l1, "revision")), (json_int_t)r1);
        ck_assert(json_is_true(json_object_get(l2, "ready")));
        ck_assert_int_eq(json_integer_value(json_object_get(l2, "revision")), (json_int_t)r2);
        ck_assert_str_eq(json_string_value(json_object_get(l2, "holder")), DAEMON_ID);
        ck_assert_str_eq(json_string_value(json_object_get(l3, "event")), "deleted");
        ck_assert(json_is_false(json_object_get(l3, "present")));
        json_decref(l0);
        json_decref(l1);
        json_decref(l2);
        json_decref(l3);
        tu_lines_free(lines, n);
        free(out);
        proc_destroy(&p);
}
END_TEST

START_TEST(watch_runs_until_interrupted)
{
        char *argv[] = {ctl_path(), "--server", tu_broker.url, "--space", "lease", "lease", "watch", NULL};
        proc p;
        ck_assert_int_eq(proc_spawn(&p, argv, NULL), 0);
        watch_ctx w = {.p = &p, .want = 1};
        ck_assert(test_wait_until(has_lines, &w, 10000));
        ck_assert_int_eq(proc_wait(&p, 300), -ETIMEDOUT); /* still running */
        proc_signal(&p, SIGINT);
        ck_assert_int_eq(proc_wait(&p, 5000), 0);
        ck_assert_int_eq(p.status, 0);
        proc_destroy(&p);
}
END_TEST

START_TEST(watch_reports_ttl_expiry)
{
        /* The bucket's max_age removes the record 30 s after its last
         * write, with no watch event (research/cnats.md). */
        char *argv[] = {ctl_path(), "--server", tu_broker.url, "--space", "lease", "--json",
                        "lease",    "watch",    "--count",     "2",       NULL};
        write_lease(false, -1, NULL);
        proc p;
        ck_assert_int_eq(proc_spawn(&p, argv, NULL), 0);
        ck_assert_int_eq(proc_wait(&p, 45000), 0);
        char *out = proc_stdout(&p);
        char **lines;
        size_t n = tu_lines(out, &lines);
        ck_assert_int_eq(n, 2);
        json_t *l1 = tu_parse_line(lines[1]);
        ck_assert_str_eq(json_string_value(json_object_get(l1, "event")), "expired");
        json_decref(l1);
        tu_lines_free(lines, n);
        free(out);
        proc_destroy(&p);
        /* And the broker agrees: nothing is left. */
        json_t *j = lease_show(4);
        json_decref(j);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("lease_cli");
        TCase *tc = tcase_create("lease");
        tcase_add_unchecked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 90);
        tcase_add_test(tc, show_reports_absent_then_the_record);
        tcase_add_test(tc, show_reports_an_unreadable_record);
        tcase_add_test(tc, watch_prints_one_line_per_change);
        tcase_add_test(tc, watch_runs_until_interrupted);
        tcase_add_test(tc, watch_reports_ttl_expiry);
        suite_add_tcase(s, tc);
        return tu_run(s);
}
