/* daemon_creds: the daemon on an operator-mode (JWT) broker, and credential
 * rotation (issue 6). The daemon starts with a user JWT that expires a few
 * seconds later; the operator replaces the creds file with a new JWT for
 * the same nkey and sends SIGHUP. When the server cuts the expired
 * connection, the reconnect presents the new JWT and delivery goes on, with
 * no restart. A file with another identity is rejected and the last good
 * creds stay. Neither the seed nor a JWT appears in the log or in the
 * diagnostics. Without the rotation the expiry ends the daemon (exit 1):
 * the control that shows the first test depends on the new file. */
#include "cotal.h"
#include "jwt.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define S "cr"
#define DLV_BOB "cotal." S ".dlv." BOB
#define WAIT_MS 20000
/* Long enough for a sanitizer build on a loaded machine to start and
 * deliver before the rotation: the file must be replaced before the
 * expiry, or cnats gives up after two identical auth errors on the
 * reconnect (it has no option to ignore them) and the daemon exits 1. */
#define FIRST_JWT_LIFETIME_S 15
/* The server cuts the connection at expiry; the reconnect follows at once. */
#define EXPIRY_WITHIN_MS ((FIRST_JWT_LIFETIME_S + 15) * 1000)

static jwt_chain chain;
static jwt_key daemon_key;
static char admin_creds[320], daemon_creds[320], sock[320];
static char *jwt_second;
static int64_t first_expires; /* unix seconds */
static co_daemon dm;

static void write_creds(const char *path, const char *token, const jwt_key *user)
{
        /* Replace atomically, as an operator's install(1) or mv would. */
        char tmp[340];
        snprintf(tmp, sizeof tmp, "%s.new", path);
        ck_assert_int_eq(jwt_write_creds(tmp, token, user), 0);
        ck_assert_int_eq(rename(tmp, path), 0);
}

static char *daemon_jwt(int64_t expires)
{
        jwt_user_perms perms = {.expires = expires};
        char *token = jwt_user(&chain.app, &daemon_key, "delivery", expires ? &perms : NULL);
        ck_assert_ptr_nonnull(token);
        return token;
}

static void spawn_daemon(void)
{
        const char *bin = getenv("COTAL_DELIVERYD");
        char *argv[] = {(char *)bin,  "--space",     S,       "--server",      tu_broker.url, "--creds",
                        daemon_creds, "--log-level", "debug", "--diag-socket", sock,          "--broker-gone-ms",
                        "4000",       NULL};
        memset(&dm, 0, sizeof dm);
        ck_assert_int_eq(proc_spawn(&dm.p, argv, NULL), 0);
}

static void setup(void)
{
        ck_assert(jwt_key_new(&daemon_key, 'U'));
        char *conf = jwt_chain_conf(&chain);
        ck_assert_ptr_nonnull(conf);
        tu_broker_setup_conf(conf);
        free(conf);

        /* The test's own (and cotal-deliveryctl's) unrestricted user. */
        jwt_key admin;
        ck_assert(jwt_key_new(&admin, 'U'));
        char *admin_jwt = jwt_user(&chain.app, &admin, "admin", NULL);
        snprintf(admin_creds, sizeof admin_creds, "%.200s/admin.creds", tu_broker.dir);
        ck_assert_int_eq(jwt_write_creds(admin_creds, admin_jwt, &admin), 0);
        free(admin_jwt);
        ck_assert_int_eq(tu_connect_creds(&tu_nc, admin_creds, NULL, NULL), NATS_OK);
        tu_ctl_creds = admin_creds;
        co_provision(S);
        co_acl(S, BOB, "[\"general\"]");
        co_member(S, "general", BOB, 0, 1, -1);

        snprintf(daemon_creds, sizeof daemon_creds, "%.200s/delivery.creds", tu_broker.dir);
        snprintf(sock, sizeof sock, "%.200s/diag.sock", tu_broker.dir);
        first_expires = (int64_t)time(NULL) + FIRST_JWT_LIFETIME_S;
        char *first = daemon_jwt(first_expires);
        write_creds(daemon_creds, first, &daemon_key);
        free(first);
        jwt_second = daemon_jwt(0);
        spawn_daemon();
        ck_assert(co_daemon_wait_ready(&dm, DAEMON_READY_TIMEOUT_MS) && dm.p.pid > 0);
}

static void teardown(void)
{
        co_daemon_finish(&dm);
        free(jwt_second);
        tu_ctl_creds = NULL;
        tu_broker_teardown();
}

/* No secret anywhere in text: the seed, its base32 body, a JWT. */
static void no_secrets(const char *what, const char *text)
{
        ck_assert_msg(!strstr(text, daemon_key.seed), "%s shows the seed", what);
        ck_assert_msg(!strstr(text, daemon_key.seed + 2), "%s shows the seed's body", what);
        ck_assert_msg(!strstr(text, "eyJ0eXAiOiJKV1Qi") && !strstr(text, "eyJ"), "%s shows a JWT", what);
}

START_TEST(a_rotated_file_is_used_when_the_old_jwt_expires)
{
        co_chat(S, ALICE, "general", "before", NULL);
        ck_assert(co_wait_id("DLV_" S, DLV_BOB, "before:" BOB ":1", WAIT_MS));

        /* Rotate: same nkey, a JWT without expiry; SIGHUP checks it now. */
        int64_t left = first_expires - (int64_t)time(NULL);
        ck_assert_msg(left >= 2, "the machine is too slow for this test: %lld s left of the first JWT at rotation",
                      (long long)left);
        write_creds(daemon_creds, jwt_second, &daemon_key);
        ck_assert_int_eq(proc_signal(&dm.p, SIGHUP), 0);
        ck_assert_msg(co_daemon_logged_within(&dm, "Reloaded creds ", WAIT_MS), "no reload line");
        char *err = proc_stderr(&dm.p);
        ck_assert_msg(strstr(err, "new JWT for "), "%s", err);
        free(err);

        /* The server cuts the expired connection; the reconnect uses the
         * new JWT and the daemon stays up. */
        ck_assert_msg(co_daemon_logged_within(&dm, "(main connection)", EXPIRY_WITHIN_MS),
                      "no reconnect after the first JWT expired");
        ck_assert_msg(proc_wait(&dm.p, 0) == -ETIMEDOUT, "the daemon exited at the expiry");
        co_chat(S, ALICE, "general", "after", NULL);
        ck_assert(co_wait_id("DLV_" S, DLV_BOB, "after:" BOB ":1", WAIT_MS));

        char *raw = NULL;
        json_t *doc = co_diag(sock, &raw);
        json_t *creds = json_object_get(doc, "creds");
        ck_assert_str_eq(json_string_value(json_object_get(creds, "path")), daemon_creds);
        ck_assert_int_eq(json_integer_value(json_object_get(creds, "rotations")), 1);
        ck_assert_int_ge(json_integer_value(json_object_get(json_object_get(doc, "link"), "reconnects")), 1);
        no_secrets("diag", raw);
        free(raw);
        json_decref(doc);
}
END_TEST

START_TEST(a_file_with_another_identity_is_rejected)
{
        jwt_key other;
        ck_assert(jwt_key_new(&other, 'U'));
        char *token = jwt_user(&chain.app, &other, "intruder", NULL);
        write_creds(daemon_creds, token, &other);
        free(token);
        ck_assert_int_eq(proc_signal(&dm.p, SIGHUP), 0);
        ck_assert_msg(co_daemon_logged_within(&dm, "Rejected the creds file on reload", WAIT_MS),
                      "the other identity was not rejected");
        char *err = proc_stderr(&dm.p);
        ck_assert_msg(strstr(err, "the identity changed from"), "%s", err);
        free(err);
        json_t *doc = co_diag(sock, NULL);
        json_t *creds = json_object_get(doc, "creds");
        ck_assert_int_eq(json_integer_value(json_object_get(creds, "rotations")), 1);
        ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(creds, "last_rejection")), "identity"));
        json_decref(doc);
        /* Still delivering, with the last good creds. */
        co_chat(S, ALICE, "general", "rejected", NULL);
        ck_assert(co_wait_id("DLV_" S, DLV_BOB, "rejected:" BOB ":1", WAIT_MS));
        write_creds(daemon_creds, jwt_second, &daemon_key);
}
END_TEST

START_TEST(the_log_never_shows_a_secret_and_is_clean)
{
        char *err = proc_stderr(&dm.p);
        no_secrets("the log", err);
        free(err);
        /* Warnings are expected (the disconnect, the rejection); errors not. */
        co_daemon_assert_healthy(&dm);
        ck_assert_int_eq(co_daemon_stop(&dm), 0);
}
END_TEST

START_TEST(without_rotation_the_expiry_ends_the_daemon)
{
        proc_destroy(&dm.p);
        char *first = daemon_jwt((int64_t)time(NULL) + FIRST_JWT_LIFETIME_S);
        write_creds(daemon_creds, first, &daemon_key);
        free(first);
        spawn_daemon();
        ck_assert(co_daemon_wait_ready(&dm, DAEMON_READY_TIMEOUT_MS) && dm.p.pid > 0);
        /* Expiry, then reconnects refused for --broker-gone-ms 4000. */
        ck_assert_int_eq(proc_wait(&dm.p, EXPIRY_WITHIN_MS + 10000), 0);
        ck_assert_int_eq(dm.p.status, 1);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("daemon_creds");
        TCase *tc = tcase_create("creds");
        tcase_add_unchecked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 150);
        tcase_add_test(tc, a_rotated_file_is_used_when_the_old_jwt_expires);
        tcase_add_test(tc, a_file_with_another_identity_is_rejected);
        tcase_add_test(tc, the_log_never_shows_a_secret_and_is_clean);
        tcase_add_test(tc, without_rotation_the_expiry_ends_the_daemon);
        suite_add_tcase(s, tc);
        return co_run(s);
}
