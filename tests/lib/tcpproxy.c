/* tcpproxy: see tcpproxy.h. */
#include "tcpproxy.h"

#include "natsd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TCPPROXY_TICK_MS 5
#define TCPPROXY_CHUNK 65536

/* One direction's bytes not yet written on. */
typedef struct tcpproxy_buf {
        char *data;
        size_t len, cap;
} tcpproxy_buf;

typedef struct tcpproxy_pair {
        int client, server; /* -1: unused */
        tcpproxy_buf to_server, to_client;
} tcpproxy_pair;

static int buf_add(tcpproxy_buf *b, const char *data, size_t n)
{
        if (b->len + n > b->cap) {
                size_t cap = b->cap ? b->cap : TCPPROXY_CHUNK;
                while (cap < b->len + n)
                        cap *= 2;
                char *d = realloc(b->data, cap);
                if (!d)
                        return -ENOMEM;
                b->data = d;
                b->cap = cap;
        }
        memcpy(b->data + b->len, data, n);
        b->len += n;
        return 0;
}

/* Writes what fd takes now; false when the peer is gone. */
static bool buf_flush(tcpproxy_buf *b, int fd)
{
        while (b->len > 0) {
                ssize_t w = send(fd, b->data, b->len, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (w < 0)
                        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
                memmove(b->data, b->data + w, b->len - (size_t)w);
                b->len -= (size_t)w;
        }
        return true;
}

static void pair_close(tcpproxy_pair *q)
{
        if (q->client >= 0)
                close(q->client);
        if (q->server >= 0)
                close(q->server);
        free(q->to_server.data);
        free(q->to_client.data);
        memset(q, 0, sizeof *q);
        q->client = q->server = -1;
}

static int connect_upstream(int port)
{
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
                int e = -errno;
                close(fd);
                return e;
        }
        return fd;
}

/* Counts the trigger's needle in bytes a client sent; at the last one
 * expected, the hold starts. */
static void watch(tcpproxy *p, const char *data, size_t n)
{
        if (atomic_load(&p->needle_left) <= 0)
                return; /* the needle is written before needle_left is armed */
        size_t nl = strlen(p->needle);
        if (nl == 0)
                return;
        for (size_t i = 0; i + nl <= n; i++) {
                if (memcmp(data + i, p->needle, nl) != 0)
                        continue;
                if (atomic_fetch_sub(&p->needle_left, 1) == 1) {
                        atomic_store(&p->hold_until_ms, INT64_MAX);
                        atomic_store(&p->triggered, true);
                        return;
                }
        }
}

/* Reads what from has into b; false on EOF or error. from_client: the
 * bytes are a client's, watched for the trigger. */
static bool pump(tcpproxy *p, int from, bool from_client, tcpproxy_buf *b)
{
        char chunk[TCPPROXY_CHUNK];
        ssize_t n = recv(from, chunk, sizeof chunk, MSG_DONTWAIT);
        if (n == 0)
                return false;
        if (n < 0)
                return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
        if (from_client)
                watch(p, chunk, (size_t)n);
        return buf_add(b, chunk, (size_t)n) == 0;
}

static void *relay(void *arg)
{
        tcpproxy *p = arg;
        tcpproxy_pair *pairs = p->pairs;
        while (!atomic_load(&p->stop)) {
                struct pollfd fds[1 + 2 * TCPPROXY_MAX_PAIRS];
                int map[1 + 2 * TCPPROXY_MAX_PAIRS];
                nfds_t n = 0;
                fds[n] = (struct pollfd){.fd = p->listen_fd, .events = POLLIN};
                map[n++] = -1;
                for (int i = 0; i < TCPPROXY_MAX_PAIRS; i++) {
                        if (pairs[i].client < 0)
                                continue;
                        fds[n] = (struct pollfd){.fd = pairs[i].client, .events = POLLIN};
                        map[n++] = i;
                        fds[n] = (struct pollfd){.fd = pairs[i].server, .events = POLLIN};
                        map[n++] = i;
                }
                (void)poll(fds, n, TCPPROXY_TICK_MS);
                if (fds[0].revents & POLLIN) {
                        int c = accept4(p->listen_fd, NULL, NULL, SOCK_CLOEXEC);
                        int slot = -1;
                        for (int i = 0; c >= 0 && i < TCPPROXY_MAX_PAIRS && slot < 0; i++)
                                if (pairs[i].client < 0)
                                        slot = i;
                        int s = slot >= 0 ? connect_upstream(p->upstream_port) : -1;
                        if (s >= 0) {
                                pairs[slot].client = c;
                                pairs[slot].server = s;
                        } else if (c >= 0) {
                                close(c);
                        }
                }
                for (nfds_t k = 1; k < n; k++) {
                        tcpproxy_pair *q = &pairs[map[k]];
                        if (q->client < 0 || !(fds[k].revents & (POLLIN | POLLHUP | POLLERR)))
                                continue;
                        bool from_client = fds[k].fd == q->client;
                        if (!pump(p, fds[k].fd, from_client, from_client ? &q->to_server : &q->to_client))
                                pair_close(q);
                }
                bool hold = test_now_ms() < atomic_load(&p->hold_until_ms);
                for (int i = 0; i < TCPPROXY_MAX_PAIRS; i++) {
                        tcpproxy_pair *q = &pairs[i];
                        if (q->client < 0)
                                continue;
                        if (!buf_flush(&q->to_server, q->server) || (!hold && !buf_flush(&q->to_client, q->client)))
                                pair_close(q);
                }
        }
        return NULL;
}

int tcpproxy_start(tcpproxy *p, int upstream_port)
{
        memset(p, 0, sizeof *p);
        p->listen_fd = -1;
        p->upstream_port = upstream_port;
        p->pairs = calloc(TCPPROXY_MAX_PAIRS, sizeof *p->pairs);
        if (!p->pairs)
                return -ENOMEM;
        for (int i = 0; i < TCPPROXY_MAX_PAIRS; i++)
                p->pairs[i].client = p->pairs[i].server = -1;
        p->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        if (p->listen_fd < 0 || bind(p->listen_fd, (struct sockaddr *)&a, sizeof a) < 0 ||
            listen(p->listen_fd, 16) < 0 || getsockname(p->listen_fd, (struct sockaddr *)&a, &len) < 0) {
                int e = -errno;
                tcpproxy_stop(p);
                return e;
        }
        snprintf(p->url, sizeof p->url, "nats://127.0.0.1:%d", ntohs(a.sin_port));
        int r = pthread_create(&p->thread, NULL, relay, p);
        if (r != 0) {
                p->thread = 0;
                tcpproxy_stop(p);
                return -r;
        }
        return 0;
}

void tcpproxy_hold_for(tcpproxy *p, int64_t ms)
{
        atomic_store(&p->hold_until_ms, test_now_ms() + ms);
}

void tcpproxy_hold_at(tcpproxy *p, const char *needle, int nth)
{
        snprintf(p->needle, sizeof p->needle, "%s", needle);
        atomic_store(&p->triggered, false);
        atomic_store(&p->needle_left, nth);
}

bool tcpproxy_triggered(tcpproxy *p)
{
        return atomic_load(&p->triggered);
}

void tcpproxy_release(tcpproxy *p)
{
        atomic_store(&p->needle_left, 0);
        atomic_store(&p->hold_until_ms, 0);
}

void tcpproxy_stop(tcpproxy *p)
{
        if (!p)
                return;
        atomic_store(&p->stop, true);
        if (p->thread)
                pthread_join(p->thread, NULL);
        p->thread = 0;
        for (int i = 0; p->pairs && i < TCPPROXY_MAX_PAIRS; i++)
                pair_close(&p->pairs[i]);
        free(p->pairs);
        p->pairs = NULL;
        if (p->listen_fd >= 0)
                close(p->listen_fd);
        p->listen_fd = -1;
}
