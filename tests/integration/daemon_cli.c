/* daemon_cli: cotal-deliveryd's command line (PROTOCOL §10.1/§10.2, E3,
 * E4): usage errors exit 2 with one line, runtime failures exit 1, the
 * shard flags are refused before any network activity (a listening socket
 * proves no connection was made), creds are required unless --no-auth,
 * a group-readable creds file is refused, config files are validated with
 * file:line. */
#include "cotal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct run_result {
        int status;
        char *out, *err;
} run_result;

static run_result run(const char *const *args, char *const *env)
{
        char *argv[32];
        int n = 0;
        argv[n++] = getenv("COTAL_DELIVERYD");
        for (int i = 0; args[i] && n < 31; i++)
                argv[n++] = (char *)args[i];
        argv[n] = NULL;
        proc p;
        run_result r;
        r.status = proc_run(&p, argv, env, 20000);
        r.out = proc_stdout(&p);
        r.err = proc_stderr(&p);
        proc_destroy(&p);
        return r;
}

static void done(run_result *r)
{
        free(r->out);
        free(r->err);
}

/* A TCP listener on 127.0.0.1 that never accepts: a connection attempt
 * would sit in its backlog. */
static int listener(int *port)
{
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof a;
        ck_assert(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
        ck_assert(listen(fd, 8) == 0);
        ck_assert(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
        *port = ntohs(a.sin_port);
        return fd;
}

static bool nobody_connected(int fd)
{
        int c = accept(fd, NULL, NULL);
        if (c >= 0) {
                close(c);
                return false;
        }
        return errno == EAGAIN || errno == EWOULDBLOCK;
}

START_TEST(help_and_version_exit_zero)
{
        run_result r = run((const char *[]){"--help", NULL}, NULL);
        ck_assert_int_eq(r.status, 0);
        ck_assert_msg(strstr(r.out, "Usage: cotal-deliveryd"), "%s", r.out);
        done(&r);
        r = run((const char *[]){"--version", NULL}, NULL);
        ck_assert_int_eq(r.status, 0);
        ck_assert_msg(strncmp(r.out, "cotal-deliveryd ", 16) == 0, "%s", r.out);
        done(&r);
}
END_TEST

START_TEST(usage_errors_exit_two_with_one_line)
{
        const char *const cases[][6] = {
                {NULL},
                {"--space", NULL},
                {"--space", "s", "--bogus", NULL},
                {"--space", "s", "extra", NULL},
                {"--space", "s", "--no-auth", "--fanout-batch", "0", NULL},
                {"--space", "s", "--no-auth", "--log-level", "loud", NULL},
                {"--space", "s", "--dev-mint", NULL},
                {"--space", "s", "--no-auth", "--creds", "/x", NULL},
                {"--space", "\xff", "--no-auth", NULL},
        };
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
                run_result r = run(cases[i], NULL);
                ck_assert_msg(r.status == 2, "case %zu: exit %d (%s)", i, r.status, r.err);
                ck_assert_msg(count_lines(r.err) == 1, "case %zu: not one line: %s", i, r.err);
                ck_assert_str_eq(r.out, "");
                done(&r);
        }
        run_result r = run((const char *[]){"--no-auth", NULL}, NULL);
        ck_assert_msg(strstr(r.err, "delivery: --space is required (the scoped creds file does not encode it)"), "%s",
                      r.err);
        done(&r);
}
END_TEST

/* Issue 13 item 1: a fan-out batch that does not fit under the lead limit
 * (E1) once made a fan-out that never fetched again ("--inbox-lead-limit
 * 100" with the default batch of 256). It is refused before anything
 * touches the network, with the rule in the text; batch < limit is fine. */
START_TEST(a_fanout_batch_that_cannot_fit_the_lead_limit_is_refused)
{
        const char *const refused[][8] = {
                {"--space", "s", "--no-auth", "--inbox-lead-limit", "100", NULL},
                {"--space", "s", "--no-auth", "--inbox-lead-limit", "64", "--fanout-batch", "64", NULL},
        };
        for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
                run_result r = run(refused[i], NULL);
                ck_assert_msg(r.status == 2, "case %zu: exit %d (%s)", i, r.status, r.err);
                ck_assert_msg(count_lines(r.err) == 1, "case %zu: not one line: %s", i, r.err);
                ck_assert_msg(strstr(r.err, "must be smaller than inbox-lead-limit") &&
                                      strstr(r.err, "no owner's unread inbox entries may reach the lead limit"),
                              "case %zu: %s", i, r.err);
                done(&r);
        }
        /* The same rule for values from the environment. */
        run_result r = run((const char *[]){"--space", "s", "--no-auth", NULL},
                           (char *const[]){"COTAL_DELIVERYD_INBOX_LEAD_LIMIT=200", NULL});
        ck_assert_msg(r.status == 2 && strstr(r.err, "fanout-batch (256) must be smaller than inbox-lead-limit (200)"),
                      "exit %d: %s", r.status, r.err);
        done(&r);
}
END_TEST

START_TEST(shards_are_refused_before_any_network_activity)
{
        int port;
        int fd = listener(&port);
        char url[64];
        snprintf(url, sizeof url, "nats://127.0.0.1:%d", port);
        const struct {
                const char *shard, *shards, *rendered;
        } cases[] = {
                {"0", "2", "shard=0 shards=2"},
                {"1", NULL, "shard=1 shards=1"},
                {"abc", NULL, "shard=NaN shards=1"},
                {"1.5", "1", "shard=1.5 shards=1"},
        };
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
                const char *args[12] = {"--space", "s", "--server", url, "--no-auth", "--shard", cases[i].shard};
                int n = 7;
                if (cases[i].shards) {
                        args[n++] = "--shards";
                        args[n++] = cases[i].shards;
                }
                args[n] = NULL;
                run_result r = run(args, NULL);
                ck_assert_int_eq(r.status, 2);
                char want[160];
                snprintf(want, sizeof want, "delivery: sharded operation is not supported (N=1 only; got %s)",
                         cases[i].rendered);
                ck_assert_msg(strstr(r.err, want), "case %zu: %s", i, r.err);
                done(&r);
        }
        ck_assert_msg(nobody_connected(fd), "the daemon connected before refusing the shard flags");
        /* JS Number() accepts these as shard 0 of 1: they get as far as
         * the network (and our silent listener times the probe out). */
        run_result r = run((const char *[]){"--space", "s", "--server", url, "--no-auth", "--shard", " 0 ", "--shards",
                                            "1e0", NULL},
                           NULL);
        ck_assert_int_eq(r.status, 1);
        ck_assert_msg(strstr(r.err, "can't reach NATS at"), "%s", r.err);
        done(&r);
        close(fd);
}
END_TEST

START_TEST(creds_are_required_and_must_be_private)
{
        char dir[] = "/tmp/cotal-cli-XXXXXX";
        ck_assert_ptr_nonnull(mkdtemp(dir));
        char cwd[4096];
        ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
        ck_assert_int_eq(chdir(dir), 0);
        /* No --creds, no --no-auth, no .cotal/delivery.creds: refused. */
        run_result r = run((const char *[]){"--space", "s", "--server", "nats://127.0.0.1:1", NULL}, NULL);
        ck_assert_int_eq(r.status, 1);
        ck_assert_msg(strstr(r.err, "delivery: no scoped creds at ") && strstr(r.err, "/.cotal/delivery.creds"), "%s",
                      r.err);
        done(&r);
        /* A creds file others can read: refused with a clear message. */
        char path[300];
        snprintf(path, sizeof path, "%s/open.creds", dir);
        FILE *f = fopen(path, "w");
        fputs("-----BEGIN NATS USER JWT-----\nx.y.z\n------END NATS USER JWT------\n", f);
        fclose(f);
        chmod(path, 0644);
        r = run((const char *[]){"--space", "s", "--server", "nats://127.0.0.1:1", "--creds", path, NULL}, NULL);
        ck_assert_int_eq(r.status, 1);
        ck_assert_msg(strstr(r.err, "readable by group or others"), "%s", r.err);
        done(&r);
        /* Private but malformed: refused. */
        chmod(path, 0600);
        r = run((const char *[]){"--space", "s", "--server", "nats://127.0.0.1:1", "--creds", path, NULL}, NULL);
        ck_assert_int_eq(r.status, 1);
        ck_assert_msg(strstr(r.err, "missing the user JWT or the nkey seed"), "%s", r.err);
        done(&r);
        unlink(path);
        ck_assert_int_eq(chdir(cwd), 0);
        rmdir(dir);
}
END_TEST

START_TEST(config_file_is_validated_with_file_and_line)
{
        char path[] = "/tmp/cotal-conf-XXXXXX";
        int fd = mkstemp(path);
        const char *text = "# comment\nspace = s\n\nbogus-key = 1\n";
        ck_assert(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
        close(fd);
        run_result r = run((const char *[]){"--config", path, "--no-auth", NULL}, NULL);
        ck_assert_int_eq(r.status, 2);
        char want[128];
        snprintf(want, sizeof want, "%s:4: unknown key \"bogus-key\"", path);
        ck_assert_msg(strstr(r.err, want), "%s", r.err);
        done(&r);
        fd = open(path, O_WRONLY | O_TRUNC);
        text = "space = s\nreader-batch = 5000\n";
        ck_assert(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
        close(fd);
        r = run((const char *[]){"--config", path, "--no-auth", NULL}, NULL);
        ck_assert_int_eq(r.status, 2);
        ck_assert_msg(strstr(r.err, ":2: reader-batch must be an integer in 1..1000"), "%s", r.err);
        done(&r);
        /* Flags win over the file: the space comes from the file, the
         * server from the flag, and we get as far as the network. */
        fd = open(path, O_WRONLY | O_TRUNC);
        text = "space = s\nserver = nats://127.0.0.1:1\n";
        ck_assert(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
        close(fd);
        r = run((const char *[]){"--config", path, "--no-auth", "--server", "nats://127.0.0.1:2", NULL}, NULL);
        ck_assert_int_eq(r.status, 1);
        ck_assert_msg(strstr(r.err, "can't reach NATS at nats://127.0.0.1:2"), "%s", r.err);
        done(&r);
        unlink(path);
        r = run((const char *[]){"--config", "/nonexistent/x.conf", "--no-auth", NULL}, NULL);
        ck_assert_int_eq(r.status, 1);
        done(&r);
        /* Issue 14 item 7: a directory opens and reads as an empty file;
         * taken as one, it reset every tuned setting to its default. */
        r = run((const char *[]){"--config", "/tmp", "--space", "s", "--no-auth", NULL}, NULL);
        ck_assert_int_eq(r.status, 1);
        ck_assert_msg(strstr(r.err, "config file /tmp is not a regular file"), "%s", r.err);
        done(&r);
}
END_TEST

/* Issue 15: --check-config validates without touching the network (the
 * server here would refuse a connection): exit 0 with one line, or 2 with
 * every bad line of the file. */
START_TEST(check_config_validates_and_exits)
{
        char path[] = "/tmp/cotal-conf-XXXXXX";
        int fd = mkstemp(path);
        const char *text = "space = s\nserver = nats://127.0.0.1:1\ninflight-mib = 16\n";
        ck_assert(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
        close(fd);
        run_result r = run((const char *[]){"--config", path, "--no-auth", "--check-config", NULL}, NULL);
        ck_assert_int_eq(r.status, 0);
        ck_assert_msg(strstr(r.out, "configuration OK (space s, file "), "%s", r.out);
        done(&r);
        fd = open(path, O_WRONLY | O_TRUNC);
        text = "space = s\nfanout-batch = x\nbogus = 1\n";
        ck_assert(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
        close(fd);
        r = run((const char *[]){"--config", path, "--no-auth", "--check-config", NULL}, NULL);
        ck_assert_int_eq(r.status, 2);
        ck_assert_msg(strstr(r.err, ":2: fanout-batch must be an integer") && strstr(r.err, ":3: unknown key"), "%s",
                      r.err);
        done(&r);
        unlink(path);
        r = run((const char *[]){"--config", path, "--no-auth", "--check-config", NULL}, NULL);
        ck_assert_int_eq(r.status, 2); /* unreadable: a failed check, not exit 1 */
        done(&r);
        r = run((const char *[]){"--spac", "s", "--no-auth", "--check-config", NULL}, NULL);
        ck_assert_int_eq(r.status, 2);
        ck_assert_msg(strstr(r.err, "unknown option --spac"), "%s", r.err);
        done(&r);
}
END_TEST

/* Issue 6: flags > environment (COTAL_DELIVERYD_<KEY>) > file. Which
 * server the daemon tried shows which layer won. */
START_TEST(environment_sits_between_flags_and_file)
{
        char path[] = "/tmp/cotal-conf-XXXXXX";
        int fd = mkstemp(path);
        const char *text = "space = s\nserver = nats://127.0.0.1:1\nbroker-gone-ms = 200\n";
        ck_assert(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
        close(fd);
        char conf_env[64];
        snprintf(conf_env, sizeof conf_env, "COTAL_DELIVERYD_CONFIG=%s", path);

        /* The file named by the environment, its server. */
        run_result r = run((const char *[]){"--no-auth", NULL}, (char *[]){conf_env, NULL});
        ck_assert_int_eq(r.status, 1);
        ck_assert_msg(strstr(r.err, "can't reach NATS at nats://127.0.0.1:1"), "%s", r.err);
        done(&r);
        /* The environment over the file. */
        r = run((const char *[]){"--no-auth", NULL},
                (char *[]){conf_env, "COTAL_DELIVERYD_SERVER=nats://127.0.0.1:2", NULL});
        ck_assert_int_eq(r.status, 1);
        ck_assert_msg(strstr(r.err, "can't reach NATS at nats://127.0.0.1:2"), "%s", r.err);
        done(&r);
        /* The flag over the environment; an empty variable is unset. */
        r = run((const char *[]){"--no-auth", "--server", "nats://127.0.0.1:3", NULL},
                (char *[]){conf_env, "COTAL_DELIVERYD_SERVER=nats://127.0.0.1:2", "COTAL_DELIVERYD_LOG_LEVEL=", NULL});
        ck_assert_int_eq(r.status, 1);
        ck_assert_msg(strstr(r.err, "can't reach NATS at nats://127.0.0.1:3"), "%s", r.err);
        done(&r);
        /* A bad value names the variable; exit 2 before any network use. */
        r = run((const char *[]){"--no-auth", NULL}, (char *[]){conf_env, "COTAL_DELIVERYD_READER_BATCH=0", NULL});
        ck_assert_int_eq(r.status, 2);
        ck_assert_msg(strstr(r.err, "environment COTAL_DELIVERYD_READER_BATCH: reader-batch must be an integer"), "%s",
                      r.err);
        done(&r);
        r = run((const char *[]){"--no-auth", NULL}, (char *[]){conf_env, "COTAL_DELIVERYD_NO_AUTH=maybe", NULL});
        ck_assert_int_eq(r.status, 2);
        ck_assert_msg(strstr(r.err, "COTAL_DELIVERYD_NO_AUTH: no-auth must be true or false"), "%s", r.err);
        done(&r);
        unlink(path);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("daemon_cli");
        TCase *tc = tcase_create("cli");
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, help_and_version_exit_zero);
        tcase_add_test(tc, usage_errors_exit_two_with_one_line);
        tcase_add_test(tc, a_fanout_batch_that_cannot_fit_the_lead_limit_is_refused);
        tcase_add_test(tc, shards_are_refused_before_any_network_activity);
        tcase_add_test(tc, creds_are_required_and_must_be_private);
        tcase_add_test(tc, config_file_is_validated_with_file_and_line);
        tcase_add_test(tc, environment_sits_between_flags_and_file);
        tcase_add_test(tc, check_config_validates_and_exits);
        suite_add_tcase(s, tc);
        return tu_run(s);
}
