/* cluster: start / kill / restart a loopback nats-server cluster for the
 * cluster fault tests. */
#include "cluster.h"

#include "broker.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CLUSTER_NAME "cotal-test"
#define CLUSTER_READY_TIMEOUT_MS 60000 /* meta leader election on a loaded machine */
#define CLUSTER_POLL_MS 100
#define CLUSTER_REQUEST_TIMEOUT_MS 2000
#define CLUSTER_PROBE_STREAM "CLUSTER_PROBE"

static void nap_ms(int ms)
{
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
}

/* A JetStream API request; the reply (owned) when one came, else NULL. */
static json_t *api(natsConnection *nc, const char *subject, const char *body)
{
        natsMsg *reply = NULL;
        if (natsConnection_RequestString(&reply, nc, subject, body ? body : "", CLUSTER_REQUEST_TIMEOUT_MS) != NATS_OK)
                return NULL;
        json_t *j = json_loadb(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply), 0, NULL);
        natsMsg_Destroy(reply);
        return j;
}

static bool api_ok(natsConnection *nc, const char *subject, const char *body)
{
        json_t *j = api(nc, subject, body);
        bool ok = j && !json_object_get(j, "error");
        json_decref(j);
        return ok;
}

/* The configuration node i runs with (client port, address and store come
 * from the command line, see natsd_start). */
static int write_conf(const natsd_cluster *c, int i, char *buf, size_t size)
{
        size_t len = 0;
        int w = snprintf(buf, size,
                         "server_name: %s\n"
                         "cluster {\n  name: " CLUSTER_NAME "\n  listen: 127.0.0.1:%d\n  routes: [\n",
                         c->name[i], c->route_port[i]);
        if (w < 0 || (size_t)w >= size)
                return -E2BIG;
        len = (size_t)w;
        for (int k = 0; k < c->n; k++) {
                if (k == i)
                        continue;
                w = snprintf(buf + len, size - len, "    nats-route://127.0.0.1:%d\n", c->route_port[k]);
                if (w < 0 || (size_t)w >= size - len)
                        return -E2BIG;
                len += (size_t)w;
        }
        w = snprintf(buf + len, size - len, "  ]\n}\n");
        return w < 0 || (size_t)w >= size - len ? -E2BIG : 0;
}

/* Ready once the meta group has a leader that can place an R<n> stream:
 * create a probe stream, then delete it. */
static bool jetstream_placeable(const natsd_cluster *c, natsConnection *nc)
{
        if (!api_ok(nc, "$JS.API.INFO", NULL))
                return false;
        char body[256];
        snprintf(body, sizeof body,
                 "{\"name\":\"" CLUSTER_PROBE_STREAM "\",\"subjects\":[\"cluster.probe\"],\"storage\":\"memory\","
                 "\"num_replicas\":%d}",
                 c->n);
        if (!api_ok(nc, "$JS.API.STREAM.CREATE." CLUSTER_PROBE_STREAM, body))
                return false;
        return api_ok(nc, "$JS.API.STREAM.DELETE." CLUSTER_PROBE_STREAM, NULL);
}

int cluster_start(natsd_cluster *c, int n)
{
        memset(c, 0, sizeof *c);
        if (n < 1 || n > CLUSTER_MAX_NODES)
                return -EINVAL;
        c->n = n;
        for (int i = 0; i < n; i++) {
                snprintf(c->name[i], sizeof c->name[i], "n%d", i + 1);
                int port = natsd_free_port();
                for (int k = 0; port > 0 && k < i; k++)
                        if (port == c->route_port[k])
                                port = natsd_free_port(); /* bounded: one more try, a clash fails below */
                if (port < 0)
                        return port;
                c->route_port[i] = port;
        }
        int r = 0;
        char conf[2048];
        for (int i = 0; i < n && r == 0; i++) {
                r = write_conf(c, i, conf, sizeof conf);
                if (r == 0)
                        r = natsd_start(&c->nodes[i], conf);
                if (r < 0)
                        fprintf(stderr, "cluster: cannot start node %s: %s (log: %s)\n", c->name[i], strerror(-r),
                                c->nodes[i].log);
        }
        size_t len = 0;
        for (int i = 0; i < n && r == 0; i++)
                len += (size_t)snprintf(c->urls + len, sizeof c->urls - len, "%s%s", i ? "," : "", c->nodes[i].url);
        natsConnection *nc = NULL;
        if (r == 0 && cluster_connect(c, &nc) != NATS_OK)
                r = -ECONNREFUSED;
        if (r == 0) {
                int64_t deadline = test_now_ms() + CLUSTER_READY_TIMEOUT_MS;
                while (!jetstream_placeable(c, nc)) {
                        if (test_now_ms() >= deadline) {
                                fprintf(stderr, "cluster: JetStream did not become ready in %d ms\n",
                                        CLUSTER_READY_TIMEOUT_MS);
                                r = -ETIMEDOUT;
                                break;
                        }
                        nap_ms(CLUSTER_POLL_MS);
                }
        }
        if (nc) {
                natsConnection_Close(nc);
                natsConnection_Destroy(nc);
        }
        if (r < 0)
                cluster_destroy(c);
        return r;
}

int cluster_kill(natsd_cluster *c, int i)
{
        if (i < 0 || i >= c->n)
                return -EINVAL;
        return natsd_signal(&c->nodes[i], SIGKILL);
}

int cluster_restart(natsd_cluster *c, int i)
{
        if (i < 0 || i >= c->n)
                return -EINVAL;
        return natsd_restart(&c->nodes[i]);
}

void cluster_destroy(natsd_cluster *c)
{
        if (!c)
                return;
        for (int i = 0; i < c->n; i++)
                natsd_destroy(&c->nodes[i]);
        memset(c, 0, sizeof *c);
}

natsStatus cluster_connect(const natsd_cluster *c, natsConnection **nc)
{
        /* The daemon's own connection setup: reconnect forever, 1 s pings. */
        broker_config bc = {.servers = c->urls, .name = "cotal-test-cluster", .reconnect = true};
        char err[512];
        int r = broker_connect(&bc, nc, err, sizeof err);
        if (r < 0)
                fprintf(stderr, "cluster: cannot connect to %s: %s\n", c->urls, err);
        return r == 0 ? NATS_OK : NATS_ERR;
}

int cluster_node_index(const natsd_cluster *c, const char *name)
{
        for (int i = 0; name && i < c->n; i++)
                if (strcmp(c->name[i], name) == 0)
                        return i;
        return -1;
}

/* STREAM.INFO's "cluster" object (owned), or NULL. */
static json_t *stream_cluster(natsConnection *nc, const char *stream)
{
        char subject[256];
        snprintf(subject, sizeof subject, "$JS.API.STREAM.INFO.%s", stream);
        json_t *info = api(nc, subject, NULL);
        json_t *cl = json_incref(json_object_get(info, "cluster"));
        json_decref(info);
        return cl;
}

int cluster_stream_leader(const natsd_cluster *c, natsConnection *nc, const char *stream)
{
        json_t *cl = stream_cluster(nc, stream);
        int i = cluster_node_index(c, json_string_value(json_object_get(cl, "leader")));
        json_decref(cl);
        return i;
}

static bool stream_healthy(const natsd_cluster *c, natsConnection *nc, const char *stream)
{
        json_t *cl = stream_cluster(nc, stream);
        bool ok = cluster_node_index(c, json_string_value(json_object_get(cl, "leader"))) >= 0;
        size_t i, current = 0;
        json_t *rep;
        json_array_foreach (json_object_get(cl, "replicas"), i, rep)
                current +=
                        json_is_true(json_object_get(rep, "current")) && !json_is_true(json_object_get(rep, "offline"));
        json_decref(cl);
        return ok && current == (size_t)c->n - 1;
}

bool cluster_wait_stream_healthy(const natsd_cluster *c, natsConnection *nc, const char *stream, int64_t timeout_ms)
{
        int64_t deadline = test_now_ms() + timeout_ms;
        for (;;) {
                if (stream_healthy(c, nc, stream))
                        return true;
                if (test_now_ms() >= deadline)
                        return false;
                nap_ms(CLUSTER_POLL_MS);
        }
}
