/* natsd: start/stop a loopback nats-server for integration tests. Only
 * 127.0.0.1 is ever used. */
#include "natsd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NATSD_READY_TIMEOUT_MS 15000
#define NATSD_STOP_TIMEOUT_MS 10000
#define NATSD_PORT_ATTEMPTS 5

int64_t test_now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nap_ms(int ms)
{
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
}

bool test_wait_until(bool (*cond)(void *arg), void *arg, int64_t timeout_ms)
{
        int64_t deadline = test_now_ms() + timeout_ms;
        for (;;) {
                if (cond(arg))
                        return true;
                if (test_now_ms() >= deadline)
                        return false;
                nap_ms(5);
        }
}

const char *natsd_binary(void)
{
        const char *env = getenv("COTAL_TEST_NATS_SERVER");
        return env && *env ? env : "nats-server";
}

bool natsd_available(void)
{
        const char *bin = natsd_binary();
        if (strchr(bin, '/'))
                return access(bin, X_OK) == 0;
        const char *path = getenv("PATH");
        if (!path)
                return false;
        char *copy = strdup(path), *save = NULL;
        bool found = false;
        for (char *d = strtok_r(copy, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
                char p[512];
                snprintf(p, sizeof p, "%s/%s", d, bin);
                found = access(p, X_OK) == 0;
        }
        free(copy);
        return found;
}

int natsd_free_port(void)
{
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
                return -errno;
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof a;
        if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
                int e = -errno;
                close(fd);
                return e;
        }
        close(fd);
        return ntohs(a.sin_port);
}

/* True once the server answers with its INFO line on the port. */
static bool accepts(int port)
{
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
                return false;
        struct sockaddr_in a = {
                .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        bool ok = false;
        struct timeval tv = {.tv_sec = 1};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
                char buf[5] = {0};
                ok = recv(fd, buf, 4, MSG_WAITALL) == 4 && memcmp(buf, "INFO", 4) == 0;
        }
        close(fd);
        return ok;
}

/* JetStream is up once the store directory has been initialised and the
 * log says so; the port alone can accept before JetStream is ready. */
static bool jetstream_ready(const natsd *s)
{
        FILE *f = fopen(s->log, "r");
        if (!f)
                return false;
        char line[1024];
        bool ready = false;
        while (!ready && fgets(line, sizeof line, f))
                ready = strstr(line, "Server is ready") != NULL;
        fclose(f);
        return ready;
}

static int spawn(natsd *s)
{
        char port[16];
        snprintf(port, sizeof port, "%d", s->port);
        /* Truncate the log so readiness is read from this run only. */
        int lfd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (lfd < 0)
                return -errno;
        pid_t parent = getpid();
        pid_t pid = fork();
        if (pid < 0) {
                int e = -errno;
                close(lfd);
                return e;
        }
        if (pid == 0) {
                /* Die with the test, even if it crashes. */
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != parent)
                        _exit(127);
                dup2(lfd, STDOUT_FILENO);
                dup2(lfd, STDERR_FILENO);
                setpgid(0, 0);
                /* execlp takes a path as it is and searches PATH otherwise. */
                const char *bin = natsd_binary();
                if (s->conf[0])
                        execlp(bin, "nats-server", "-js", "-a", "127.0.0.1", "-p", port, "-sd", s->store, "-c", s->conf,
                               (char *)NULL);
                else
                        execlp(bin, "nats-server", "-js", "-a", "127.0.0.1", "-p", port, "-sd", s->store, (char *)NULL);
                _exit(127);
        }
        close(lfd);
        s->pid = pid;

        int64_t deadline = test_now_ms() + NATSD_READY_TIMEOUT_MS;
        while (test_now_ms() < deadline) {
                int status;
                if (waitpid(pid, &status, WNOHANG) == pid) {
                        s->pid = 0;
                        return -EADDRINUSE; /* exited: most likely the port was taken */
                }
                if (jetstream_ready(s) && accepts(s->port))
                        return 0;
                nap_ms(10);
        }
        natsd_signal(s, SIGKILL);
        return -ETIMEDOUT;
}

int natsd_start(natsd *s, const char *extra_conf)
{
        memset(s, 0, sizeof *s);
        const char *tmp = getenv("TMPDIR");
        snprintf(s->dir, sizeof s->dir, "%s/cotal-natsd-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(s->dir))
                return -errno;
        snprintf(s->store, sizeof s->store, "%s/store", s->dir);
        snprintf(s->log, sizeof s->log, "%s/server.log", s->dir);
        if (mkdir(s->store, 0700) < 0)
                return -errno;
        if (extra_conf) {
                snprintf(s->conf, sizeof s->conf, "%s/server.conf", s->dir);
                FILE *f = fopen(s->conf, "w");
                if (!f)
                        return -errno;
                fputs(extra_conf, f);
                fclose(f);
        }
        int r = -EADDRINUSE;
        for (int i = 0; i < NATSD_PORT_ATTEMPTS && r == -EADDRINUSE; i++) {
                int port = natsd_free_port();
                if (port < 0)
                        return port;
                s->port = port;
                snprintf(s->url, sizeof s->url, "nats://127.0.0.1:%d", port);
                r = spawn(s);
        }
        return r;
}

int natsd_signal(natsd *s, int sig)
{
        if (s->pid <= 0)
                return -ESRCH;
        if (kill(s->pid, sig) < 0)
                return -errno;
        if (sig == SIGKILL) {
                waitpid(s->pid, NULL, 0);
                s->pid = 0;
        }
        return 0;
}

int natsd_stop(natsd *s)
{
        if (s->pid <= 0)
                return 0;
        kill(s->pid, SIGCONT); /* a stopped server cannot handle SIGTERM */
        kill(s->pid, SIGTERM);
        int64_t deadline = test_now_ms() + NATSD_STOP_TIMEOUT_MS;
        while (test_now_ms() < deadline) {
                if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
                        s->pid = 0;
                        return 0;
                }
                nap_ms(10);
        }
        return natsd_signal(s, SIGKILL);
}

int natsd_restart(natsd *s)
{
        natsd_stop(s);
        /* Same port: clients reconnect to the URL they know. If the port
         * was taken meanwhile this fails, which the test reports. */
        return spawn(s);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st;
        (void)flag;
        (void)ftw;
        return remove(path);
}

void natsd_destroy(natsd *s)
{
        if (!s)
                return;
        natsd_stop(s);
        if (s->dir[0] && !getenv("COTAL_KEEP_TEST_DIRS"))
                nftw(s->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        memset(s, 0, sizeof *s);
}
