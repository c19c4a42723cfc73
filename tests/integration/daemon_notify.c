/* daemon_notify: sd_notify through a NOTIFY_SOCKET the test binds itself
 * (a unix datagram socket, as systemd provides): READY=1 comes only once
 * the lease reads ready:true, never twice; WATCHDOG=1 ticks at half the
 * WATCHDOG_USEC interval and only after READY; STATUS= lines say what the
 * daemon does; SIGTERM gives STOPPING=1 and then nothing but the exit. */
#include "cotal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define S "nt"

static int sock = -1;
static char sock_path[108];
static co_daemon dm;

static void setup(void)
{
        tu_broker_setup();
        co_provision(S);
        /* sun_path is short: keep the socket name itself short. */
        int len = snprintf(sock_path, sizeof sock_path, "%.90s/notify", tu_broker.dir);
        ck_assert(len > 0 && (size_t)len < sizeof sock_path);
        sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        snprintf(a.sun_path, sizeof a.sun_path, "%s", sock_path);
        ck_assert(bind(sock, (struct sockaddr *)&a, sizeof a) == 0);
        struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
        setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

static void teardown(void)
{
        co_daemon_finish(&dm);
        close(sock);
        tu_broker_teardown();
}

/* The next datagram within timeout_ms (owned), or NULL. */
static char *next_notification(int64_t timeout_ms)
{
        int64_t deadline = test_now_ms() + timeout_ms;
        char buf[4096];
        while (test_now_ms() < deadline) {
                ssize_t n = recv(sock, buf, sizeof buf - 1, 0);
                if (n > 0) {
                        buf[n] = '\0';
                        return strdup(buf);
                }
        }
        return NULL;
}

static bool lease_ready(void)
{
        json_t *v = co_kv_value("cotal_delivery_" S, "lease.0", NULL);
        bool ready = json_is_true(json_object_get(v, "ready"));
        json_decref(v);
        return ready;
}

START_TEST(notifications_follow_the_lifecycle)
{
        char env_sock[160];
        snprintf(env_sock, sizeof env_sock, "NOTIFY_SOCKET=%s", sock_path);
        char *env[] = {env_sock, "WATCHDOG_USEC=1000000", NULL};
        co_daemon_spawn(&dm, S, NULL, env);

        /* Nothing but READY may come first, and only with the lease ready. */
        char *n = next_notification(DAEMON_READY_TIMEOUT_MS);
        ck_assert_msg(n, "no notification at all");
        ck_assert_msg(strncmp(n, "READY=1\n", 8) == 0, "first notification: %s", n);
        ck_assert_msg(strstr(n, "STATUS="), "READY without a STATUS: %s", n);
        ck_assert_msg(lease_ready(), "READY=1 before the lease read ready:true");
        free(n);

        /* Watchdog pings every half interval (0.5 s): at least 3 in 3 s. */
        int pings = 0, readies = 0, statuses = 0;
        int64_t until = test_now_ms() + 3000;
        while (test_now_ms() < until) {
                n = next_notification(until - test_now_ms());
                if (!n)
                        break;
                pings += strcmp(n, "WATCHDOG=1") == 0;
                readies += strstr(n, "READY=1") != NULL;
                /* What `systemctl status` shows: lease, link, lag, counts. */
                statuses += strncmp(n, "STATUS=lease held (ready, rev ", 30) == 0 && strstr(n, "; link up; ") &&
                            strstr(n, "; lag fanout 0, reader 0; ") && strstr(n, "; delivered 0, dropped 0");
                free(n);
        }
        ck_assert_int_ge(pings, 3);
        ck_assert_int_eq(readies, 0);
        ck_assert_int_ge(statuses, 1);

        /* SIGTERM: STOPPING=1, then nothing else but the exit. */
        proc_signal(&dm.p, SIGTERM);
        bool stopping = false;
        int after = 0;
        for (int i = 0; i < 100; i++) {
                n = next_notification(2000);
                if (!n)
                        break;
                if (stopping)
                        after++;
                stopping |= strstr(n, "STOPPING=1") != NULL;
                free(n);
        }
        ck_assert_msg(stopping, "no STOPPING=1");
        ck_assert_int_eq(after, 0);
        ck_assert_int_eq(proc_wait(&dm.p, 15000), 0);
        ck_assert_int_eq(dm.p.status, 0);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("daemon_notify");
        TCase *tc = tcase_create("notify");
        tcase_add_unchecked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 90);
        tcase_add_test(tc, notifications_follow_the_lifecycle);
        suite_add_tcase(s, tc);
        return co_run(s);
}
