/* daemon_denied: a delivery credential missing one PROTOCOL §11.3 grant
 * ("cotal.<S>.dlv.*"), as an operator might mint it by mistake. The
 * reader's dlv publishes are refused by the broker (dropped, no PubAck).
 * The daemon logs the violation once, at error priority, naming the
 * subject (§10.3 wording), and counts the repeats (diagnostics); it does
 * not retry hot — each refused entry comes back after a back-off that
 * grows per delivery, measured here against the server's own violation
 * log — and never terminates an entry for it. Once the operator reissues
 * the creds with the grant and restarts the daemon, every entry is
 * delivered exactly once: nothing was lost. */
#include "cotal.h"
#include "profiles.h"

#include "daemon.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S "dn"
#define DLV "DLV_" S
#define INBOX "INBOX_" S
#define WAIT_MS 30000
#define ENTRIES 3

static jwt_chain chain;
static jwt_key admin_key, daemon_key, bob_key;
static char admin_creds[320], daemon_creds[320], sock[320], bob_dlv[128];
static co_daemon dm;

static void write_delivery_creds(bool with_dlv_grant)
{
        profile p;
        profile_delivery(&p, S, daemon_key.pub);
        if (!with_dlv_grant)
                ck_assert(profile_drop_pub(&p, "cotal." S ".dlv.*"));
        char tmp[340];
        snprintf(tmp, sizeof tmp, "%s.new", daemon_creds);
        ck_assert(profile_write_creds(tmp, &chain.app, &daemon_key, "delivery", &p));
        ck_assert_int_eq(rename(tmp, daemon_creds), 0);
        profile_fini(&p);
}

static void spawn(void)
{
        co_daemon_spawn_creds(&dm, S, daemon_creds, (const char *const[]){"--diag-socket", sock, NULL}, NULL);
        ck_assert_msg(co_daemon_wait_ready(&dm, DAEMON_READY_TIMEOUT_MS) && dm.p.pid > 0, "daemon not ready");
}

static void setup(void)
{
        char *conf = jwt_chain_conf(&chain);
        ck_assert_ptr_nonnull(conf);
        tu_broker_setup_conf(conf);
        free(conf);
        ck_assert(jwt_key_new(&admin_key, 'U') && jwt_key_new(&daemon_key, 'U') && jwt_key_new(&bob_key, 'U'));
        char *admin_jwt = jwt_user(&chain.app, &admin_key, "admin", NULL);
        snprintf(admin_creds, sizeof admin_creds, "%.200s/admin.creds", tu_broker.dir);
        ck_assert_int_eq(jwt_write_creds(admin_creds, admin_jwt, &admin_key), 0);
        free(admin_jwt);
        ck_assert_int_eq(tu_connect_creds(&tu_nc, admin_creds, NULL, NULL), NATS_OK);
        tu_ctl_creds = admin_creds;
        co_provision(S);
        co_acl(S, bob_key.pub, "[\"general\"]");
        co_member(S, "general", bob_key.pub, 0, 1, -1);
        snprintf(bob_dlv, sizeof bob_dlv, "cotal." S ".dlv.%s", bob_key.pub);
        snprintf(daemon_creds, sizeof daemon_creds, "%.200s/delivery.creds", tu_broker.dir);
        snprintf(sock, sizeof sock, "%.200s/diag.sock", tu_broker.dir);
        write_delivery_creds(false);
        spawn();
}

static void teardown(void)
{
        co_daemon_finish(&dm);
        tu_ctl_creds = NULL;
        tu_broker_teardown();
}

/* "Publish Violation" lines of the server's log for the daemon's user. */
static int server_violations(void)
{
        FILE *f = fopen(tu_broker.log, "r");
        ck_assert_ptr_nonnull(f);
        char line[4096];
        int n = 0;
        while (fgets(line, sizeof line, f))
                n += strstr(line, "Publish Violation") && strstr(line, daemon_key.pub) && strstr(line, bob_dlv);
        fclose(f);
        return n;
}

static uint64_t diag_counter(const char *name)
{
        json_t *doc = co_diag(sock, NULL);
        uint64_t v = (uint64_t)json_integer_value(json_object_get(json_object_get(doc, "counters"), name));
        json_decref(doc);
        return v;
}

typedef struct deferred_wait {
        uint64_t want;
} deferred_wait;

static bool deferred_reached(void *arg)
{
        return diag_counter("deferred") >= ((deferred_wait *)arg)->want;
}

/* Waits until the reader has nak'ed want entries; the ms it took. */
static int64_t until_deferred(uint64_t want)
{
        int64_t t0 = test_now_ms();
        deferred_wait w = {want};
        ck_assert_msg(test_wait_until(deferred_reached, &w, WAIT_MS), "the reader deferred %llu of %llu",
                      (unsigned long long)diag_counter("deferred"), (unsigned long long)want);
        return test_now_ms() - t0;
}

static int count_occurrences(const char *text, const char *needle)
{
        int n = 0;
        for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
                n++;
        return n;
}

START_TEST(a_refused_dlv_publish_is_logged_once_backed_off_and_delivered_after_the_fix)
{
        int64_t t0 = test_now_ms();
        for (int i = 0; i < ENTRIES; i++) {
                char id[32];
                snprintf(id, sizeof id, "m-%d", i);
                co_chat(S, ALICE, "general", id, NULL);
        }
        /* The fan-out's dinbox grant is intact: all three entries exist. */
        ck_assert_uint_eq(co_wait_count(INBOX, NULL, ENTRIES, WAIT_MS), ENTRIES);

        /* (1) One error line naming the subject, in §10.3's words. */
        char want[256];
        snprintf(want, sizeof want, "NATS permission denied: cannot publish \"%s\"", bob_dlv);
        ck_assert_msg(co_daemon_logged_within(&dm, want, WAIT_MS), "no violation logged");

        /* (2) Rounds 1 and 2 (2 s back-off after round 1), then round 3
         * (4 s after round 2): the gap grows, nothing is retried hot. */
        int64_t to_round2 = until_deferred(2 * ENTRIES);
        int64_t round3 = until_deferred(3 * ENTRIES);
        int violations = server_violations();
        int64_t elapsed = test_now_ms() - t0;
        fprintf(stderr,
                "daemon_denied: %d refused publishes in %lld ms (%d entries; round 2 came %lld ms after round 1 "
                "was seen, round 3 %lld ms after round 2)\n",
                violations, (long long)elapsed, ENTRIES, (long long)to_round2, (long long)round3);
        /* 4 s nominal delay, 20 % jitter. */
        ck_assert_msg(round3 >= DENIALS_RETRY_MIN_MS * 2 * 8 / 10 - 200, "round 3 after %lld ms", (long long)round3);
        /* Each round refuses each entry once: three rounds so far, maybe
         * a fourth under way. A hot loop would be hundreds. */
        ck_assert_msg(violations >= 3 * ENTRIES && violations <= 4 * ENTRIES, "%d refused publishes", violations);

        char *err = proc_stderr(&dm.p);
        ck_assert_msg(count_occurrences(err, want) == 1, "the violation was logged %d times",
                      count_occurrences(err, want));
        const char *line = strstr(err, want);
        while (line > err && line[-1] != '\n')
                line--;
        ck_assert_msg(strncmp(line, "<3>", 3) == 0, "not at error priority: %.200s", line);
        ck_assert_msg(!strstr(err, "gave up transferring"), "an entry was terminated");
        free(err);
        ck_assert_uint_eq(diag_counter("terminated"), 0);
        ck_assert_uint_eq(diag_counter("delivered"), 0);
        ck_assert_uint_eq(co_messages(DLV, bob_dlv), 0);

        /* The repeats are counted in the diagnostics. */
        json_t *doc = co_diag(sock, NULL);
        json_t *den = json_object_get(doc, "denials");
        json_t *first = json_array_get(json_object_get(den, "subjects"), 0);
        ck_assert_uint_eq(json_array_size(json_object_get(den, "subjects")), 1);
        ck_assert_str_eq(json_string_value(json_object_get(first, "subject")), bob_dlv);
        ck_assert_str_eq(json_string_value(json_object_get(first, "op")), "publish");
        ck_assert_int_ge(json_integer_value(json_object_get(first, "count")), 3 * ENTRIES);
        json_decref(doc);
        char *out = NULL;
        ck_assert_int_eq(tu_ctl(&out, NULL, (const char *const[]){"diag", "--socket", sock, NULL}), 0);
        char shown[256];
        snprintf(shown, sizeof shown, "cannot publish \"%s\" x", bob_dlv);
        ck_assert_msg(strstr(out, shown), "diag shows: %.2000s", out);
        free(out);

        /* (3) The operator reissues the creds with the grant (same nkey)
         * and restarts the daemon: every entry arrives exactly once. */
        write_delivery_creds(true);
        ck_assert_int_eq(co_daemon_stop(&dm), 0);
        int before_restart = server_violations();
        proc_destroy(&dm.p);
        spawn();
        int64_t t_fix = test_now_ms();
        ck_assert_uint_eq(co_wait_count(DLV, bob_dlv, ENTRIES, WAIT_MS), ENTRIES);
        fprintf(stderr, "daemon_denied: all %d entries delivered %lld ms after the restart\n", ENTRIES,
                (long long)(test_now_ms() - t_fix));
        for (int i = 0; i < ENTRIES; i++) {
                char id[128];
                snprintf(id, sizeof id, "m-%d:%s:1", i, bob_key.pub);
                ck_assert_int_eq(co_count_id(DLV, bob_dlv, id), 1);
        }
        ck_assert(co_wait_acked(INBOX, "reader", co_last_seq(INBOX), WAIT_MS));
        ck_assert_uint_eq(co_messages(DLV, bob_dlv), ENTRIES);
        ck_assert_int_eq(server_violations(), before_restart);
        err = proc_stderr(&dm.p);
        ck_assert_msg(!strstr(err, "permission denied"), "the fixed daemon was denied");
        free(err);
        co_daemon_assert_healthy(&dm);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("daemon_denied");
        TCase *tc = tcase_create("denied");
        tcase_add_unchecked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 150);
        tcase_add_test(tc, a_refused_dlv_publish_is_logged_once_backed_off_and_delivered_after_the_fix);
        suite_add_tcase(s, tc);
        return co_run(s);
}
