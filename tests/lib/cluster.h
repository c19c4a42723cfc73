/* cluster: a real nats-server cluster for tests. Starts n nats-server
 * processes on 127.0.0.1 (each with its own client port, cluster port,
 * server_name and store directory, JetStream on, full-mesh routes), waits
 * until JetStream can place an R<n> stream, and kills / restarts single
 * nodes by pid. Only 127.0.0.1 is ever used. */
#pragma once

#include "natsd.h"

#include <nats/nats.h>
#include <stdbool.h>
#include <stdint.h>

#define CLUSTER_MAX_NODES 5

typedef struct natsd_cluster {
        int n;
        natsd nodes[CLUSTER_MAX_NODES];    /* nodes[i].url: its client URL */
        int route_port[CLUSTER_MAX_NODES]; /* its cluster listen port */
        char name[CLUSTER_MAX_NODES][16];  /* its server_name, "n<i>" */
        char urls[CLUSTER_MAX_NODES * 64]; /* every client URL, comma-separated */
} natsd_cluster;

/* Starts n (1..CLUSTER_MAX_NODES) nodes and waits (bounded) until the
 * JetStream meta group has a leader and an R<n> stream can be created.
 * 0 or -errno; on failure everything started is stopped and removed. */
int cluster_start(natsd_cluster *c, int n);
/* SIGKILLs node i (and reaps it); its store stays. */
int cluster_kill(natsd_cluster *c, int i);
/* Starts node i again on the same ports, store and configuration. */
int cluster_restart(natsd_cluster *c, int i);
/* Stops every node and removes their directories. */
void cluster_destroy(natsd_cluster *c);

/* Connects to every node's URL, reconnecting forever (250 ms apart), so the
 * connection survives the loss of the node it is on. *nc owned by the
 * caller when NATS_OK. */
natsStatus cluster_connect(const natsd_cluster *c, natsConnection **nc);

/* The index of the node whose server_name is name, or -1. */
int cluster_node_index(const natsd_cluster *c, const char *name);
/* The index of the node leading stream (STREAM.INFO cluster.leader), or
 * -1 when there is no leader right now or the request failed. */
int cluster_stream_leader(const natsd_cluster *c, natsConnection *nc, const char *stream);
/* True once stream has a leader and every other node is a current
 * replica of it; waits (bounded) up to timeout_ms. */
bool cluster_wait_stream_healthy(const natsd_cluster *c, natsConnection *nc, const char *stream, int64_t timeout_ms);
