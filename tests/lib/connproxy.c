/* connproxy: a name-aware loopback TCP proxy for fault tests. */
#include "connproxy.h"

#include "natsd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CONNPROXY_MAX_PAIRS 32
#define CONNPROXY_NAME_MAX 64
#define CONNPROXY_HELLO_MAX 8192 /* the client's bytes scanned for CONNECT */
#define CONNPROXY_BUF 65536
#define CONNPROXY_POLL_MS 50
#define CONNPROXY_CMD_TIMEOUT_MS 5000

typedef struct pair {
        int client, server; /* -1 when free */
        char name[CONNPROXY_NAME_MAX];
        bool named;
        char hello[CONNPROXY_HELLO_MAX];
        size_t hello_len;
} pair;

struct connproxy {
        int listen_fd, wake[2], upstream_port;
        char url[64];
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t done;
        bool stop;
        /* A cut asked for by a test, carried out by the thread. */
        char cut_name[CONNPROXY_NAME_MAX];
        bool cut_pending;
        int cut_count;
        char hold_name[CONNPROXY_NAME_MAX];
        int64_t hold_until_ms;
        pair pairs[CONNPROXY_MAX_PAIRS];
        struct {
                char name[CONNPROXY_NAME_MAX];
                int64_t at_ms;
        } admitted[8];
};

static int loopback_socket(int port, bool listening)
{
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -1;
        struct sockaddr_in a = {
                .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        int r = listening ? bind(fd, (struct sockaddr *)&a, sizeof a) : connect(fd, (struct sockaddr *)&a, sizeof a);
        if (r == 0 && listening)
                r = listen(fd, 16);
        if (r < 0) {
                close(fd);
                return -1;
        }
        return fd;
}

/* close() with SO_LINGER 0: the peer sees a reset, as after a network
 * fault, rather than an orderly end. */
static void reset_fd(int fd)
{
        if (fd < 0)
                return;
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(fd);
}

static void reset_pair(pair *q)
{
        reset_fd(q->client);
        reset_fd(q->server);
        memset(q, 0, sizeof *q);
        q->client = q->server = -1;
}

static bool write_all(int fd, const char *buf, size_t n)
{
        while (n > 0) {
                ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        return false;
                buf += w;
                n -= (size_t)w;
        }
        return true;
}

/* Looks for the CONNECT line in the client's first bytes; names the pair
 * ("" when it gives no name). */
static void scan_hello(pair *q, const char *buf, size_t n)
{
        size_t take = n < sizeof q->hello - 1 - q->hello_len ? n : sizeof q->hello - 1 - q->hello_len;
        memcpy(q->hello + q->hello_len, buf, take);
        q->hello_len += take;
        q->hello[q->hello_len] = '\0';
        const char *c = strstr(q->hello, "CONNECT ");
        const char *end = c ? strstr(c, "\r\n") : NULL;
        if (!end) {
                if (q->hello_len == sizeof q->hello - 1)
                        q->named = true; /* no CONNECT in sight: leave it unnamed */
                return;
        }
        const char *k = strstr(c, "\"name\":\"");
        if (k && k < end) {
                k += 8;
                size_t len = strcspn(k, "\"");
                snprintf(q->name, sizeof q->name, "%.*s",
                         (int)(len < CONNPROXY_NAME_MAX ? len : CONNPROXY_NAME_MAX - 1), k);
        }
        q->named = true;
}

static void note_admitted(connproxy *p, const char *name)
{
        int slot = -1;
        for (int i = 0; i < 8 && slot < 0; i++)
                if (strcmp(p->admitted[i].name, name) == 0 || !p->admitted[i].name[0])
                        slot = i;
        if (slot < 0)
                return;
        size_t len = strnlen(name, CONNPROXY_NAME_MAX - 1);
        memmove(p->admitted[slot].name, name, len);
        p->admitted[slot].name[len] = '\0';
        p->admitted[slot].at_ms = test_now_ms();
}

static void accept_one(connproxy *p)
{
        int c = accept4(p->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
                return;
        int s = loopback_socket(p->upstream_port, false);
        pair *q = NULL;
        for (int i = 0; i < CONNPROXY_MAX_PAIRS && !q; i++)
                if (p->pairs[i].client < 0)
                        q = &p->pairs[i];
        if (s < 0 || !q) {
                reset_fd(c);
                reset_fd(s);
                return;
        }
        memset(q, 0, sizeof *q);
        q->client = c;
        q->server = s;
}

/* Carries out a pending cut (lock held). */
static void do_cut(connproxy *p)
{
        int n = 0;
        for (int i = 0; i < CONNPROXY_MAX_PAIRS; i++) {
                pair *q = &p->pairs[i];
                if (q->client >= 0 && q->named && strcmp(q->name, p->cut_name) == 0) {
                        reset_pair(q);
                        n++;
                }
        }
        p->cut_count = n;
        p->cut_pending = false;
        pthread_cond_broadcast(&p->done);
}

static void *proxy_thread(void *arg)
{
        connproxy *p = arg;
        static char buf[CONNPROXY_BUF];
        struct pollfd fds[2 + 2 * CONNPROXY_MAX_PAIRS];
        int owner[2 + 2 * CONNPROXY_MAX_PAIRS];
        for (;;) {
                pthread_mutex_lock(&p->lock);
                if (p->cut_pending)
                        do_cut(p);
                bool stop = p->stop;
                int n = 0;
                fds[n++] = (struct pollfd){.fd = p->listen_fd, .events = POLLIN};
                fds[n++] = (struct pollfd){.fd = p->wake[0], .events = POLLIN};
                for (int i = 0; i < CONNPROXY_MAX_PAIRS; i++) {
                        if (p->pairs[i].client < 0)
                                continue;
                        owner[n] = i;
                        fds[n++] = (struct pollfd){.fd = p->pairs[i].client, .events = POLLIN};
                        owner[n] = i;
                        fds[n++] = (struct pollfd){.fd = p->pairs[i].server, .events = POLLIN};
                }
                pthread_mutex_unlock(&p->lock);
                if (stop)
                        return NULL;
                if (poll(fds, (nfds_t)n, CONNPROXY_POLL_MS) <= 0)
                        continue;
                if (fds[1].revents) {
                        char drain[64];
                        (void)read(p->wake[0], drain, sizeof drain);
                }
                if (fds[0].revents & POLLIN) {
                        pthread_mutex_lock(&p->lock);
                        accept_one(p);
                        pthread_mutex_unlock(&p->lock);
                }
                for (int k = 2; k < n; k++) {
                        if (!fds[k].revents)
                                continue;
                        pthread_mutex_lock(&p->lock);
                        pair *q = &p->pairs[owner[k]];
                        bool from_client = fds[k].fd == q->client;
                        if (q->client < 0 || (fds[k].fd != q->client && fds[k].fd != q->server)) {
                                pthread_mutex_unlock(&p->lock); /* reset earlier in this round */
                                continue;
                        }
                        ssize_t r = recv(fds[k].fd, buf, sizeof buf, 0);
                        if (r <= 0) {
                                reset_pair(q);
                                pthread_mutex_unlock(&p->lock);
                                continue;
                        }
                        if (from_client && !q->named) {
                                scan_hello(q, buf, (size_t)r);
                                if (q->named && q->name[0]) {
                                        if (strcmp(q->name, p->hold_name) == 0 && test_now_ms() < p->hold_until_ms) {
                                                reset_pair(q); /* held: turned away after its CONNECT */
                                                pthread_mutex_unlock(&p->lock);
                                                continue;
                                        }
                                        note_admitted(p, q->name);
                                }
                        }
                        if (!write_all(from_client ? q->server : q->client, buf, (size_t)r))
                                reset_pair(q);
                        pthread_mutex_unlock(&p->lock);
                }
        }
}

connproxy *connproxy_start(int upstream_port)
{
        connproxy *p = calloc(1, sizeof *p);
        if (!p)
                return NULL;
        p->upstream_port = upstream_port;
        for (int i = 0; i < CONNPROXY_MAX_PAIRS; i++)
                p->pairs[i].client = p->pairs[i].server = -1;
        pthread_mutex_init(&p->lock, NULL);
        pthread_cond_init(&p->done, NULL);
        p->listen_fd = -1;
        for (int attempt = 0; attempt < 5 && p->listen_fd < 0; attempt++) {
                int port = natsd_free_port();
                if (port > 0 && (p->listen_fd = loopback_socket(port, true)) >= 0)
                        snprintf(p->url, sizeof p->url, "nats://127.0.0.1:%d", port);
        }
        if (p->listen_fd < 0 || pipe2(p->wake, O_CLOEXEC | O_NONBLOCK) < 0 ||
            pthread_create(&p->thread, NULL, proxy_thread, p) != 0) {
                if (p->listen_fd >= 0)
                        close(p->listen_fd);
                free(p);
                return NULL;
        }
        return p;
}

void connproxy_stop(connproxy *p)
{
        if (!p)
                return;
        pthread_mutex_lock(&p->lock);
        p->stop = true;
        pthread_mutex_unlock(&p->lock);
        (void)write(p->wake[1], "x", 1);
        pthread_join(p->thread, NULL);
        for (int i = 0; i < CONNPROXY_MAX_PAIRS; i++)
                if (p->pairs[i].client >= 0)
                        reset_pair(&p->pairs[i]);
        close(p->listen_fd);
        close(p->wake[0]);
        close(p->wake[1]);
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->done);
        free(p);
}

const char *connproxy_url(const connproxy *p)
{
        return p->url;
}

int connproxy_cut(connproxy *p, const char *name, int64_t hold_ms)
{
        pthread_mutex_lock(&p->lock);
        snprintf(p->cut_name, sizeof p->cut_name, "%s", name);
        snprintf(p->hold_name, sizeof p->hold_name, "%s", name);
        p->hold_until_ms = test_now_ms() + hold_ms;
        p->cut_pending = true;
        pthread_mutex_unlock(&p->lock);
        (void)write(p->wake[1], "x", 1);
        pthread_mutex_lock(&p->lock);
        int64_t deadline = test_now_ms() + CONNPROXY_CMD_TIMEOUT_MS;
        while (p->cut_pending && test_now_ms() < deadline) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += 10 * 1000000L;
                if (ts.tv_nsec >= 1000000000L) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&p->done, &p->lock, &ts);
        }
        int n = p->cut_pending ? -1 : p->cut_count;
        pthread_mutex_unlock(&p->lock);
        return n;
}

int connproxy_count(connproxy *p, const char *name)
{
        int n = 0;
        pthread_mutex_lock(&p->lock);
        for (int i = 0; i < CONNPROXY_MAX_PAIRS; i++)
                n += p->pairs[i].client >= 0 && p->pairs[i].named && strcmp(p->pairs[i].name, name) == 0;
        pthread_mutex_unlock(&p->lock);
        return n;
}

int64_t connproxy_admitted_ms(connproxy *p, const char *name)
{
        int64_t at = 0;
        pthread_mutex_lock(&p->lock);
        for (int i = 0; i < 8; i++)
                if (strcmp(p->admitted[i].name, name) == 0)
                        at = p->admitted[i].at_ms;
        pthread_mutex_unlock(&p->lock);
        return at;
}
