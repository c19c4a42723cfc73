/* provision: creates what PROTOCOL §11.2 says must exist before the daemon
 * starts (the five streams, the five buckets, =defaults) and per-agent
 * deliver durables, the way the upstream provisioner does. Idempotent;
 * never modifies an existing object: a differing one is a conflict. */
#pragma once

#include "contract_subject.h"

#include <jansson.h>
#include <nats/nats.h>

typedef enum {
        PROV_CREATED = 0,
        PROV_FOUND,    /* present and matching */
        PROV_UPDATED,  /* =defaults: deliveryClass merged in (§11.2 [FIX] F3) */
        PROV_CONFLICT, /* present, differs: left alone */
        PROV_FAILED,
} prov_action;

const char *prov_action_name(prov_action a);

/* One line of the report. kind: "stream", "bucket", "consumer", "key". */
typedef struct prov_item {
        const char *kind;
        char *name;
        prov_action action;
        json_t *details; /* array of strings: differences or the error */
} prov_item;

typedef struct prov_report {
        prov_item *items;
        size_t n, cap;
} prov_report;

void prov_report_fini(prov_report *r);
/* {"objects":[{"kind","name","action","details":[…]}…]} (new reference). */
json_t *prov_report_json(const prov_report *r);
/* Counts of items with action a. */
size_t prov_report_count(const prov_report *r, prov_action a);

/* Streams, buckets, =defaults. Returns 0 if every object was created or
 * found, -EEXIST if some conflict was found (the rest is still done), or a
 * negative errno on a broker failure (the report says where). */
int provision_space(natsConnection *nc, const contract_names *n, int replicas, prov_report *rep);

/* The per-agent deliver durable dlv_<token(owner)> on DLV_<S> (§3). */
int provision_dlv(natsConnection *nc, const contract_names *n, const char *owner, prov_report *rep);

/* Ensures a durable consumer: CONSUMER.INFO; if missing (10014) create it
 * on create_subject with exactly config; if present, compare field by field
 * and report a conflict without touching it. Shared with the daemon for
 * fanout/reader (§3: never modify an existing one). */
int provision_consumer(natsConnection *nc, const char *stream, const json_t *config, const char *create_subject,
                       prov_report *rep);
