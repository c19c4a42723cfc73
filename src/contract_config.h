/* contract_config: the JetStream configurations of PROTOCOL §2 (streams),
 * §3 (consumers) and §4.1 (KV buckets) as JSON, exactly as the upstream
 * provisioner and daemon send them. Pure: building JSON only. Every
 * returned json_t is a new reference owned by the caller (json_decref). */
#pragma once

#include "contract_constants.h"
#include "contract_subject.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum {
        STREAM_CHAT = 0,
        STREAM_DM,
        STREAM_TASK,
        STREAM_INBOX,
        STREAM_DLV,
        STREAM_COUNT_,
} contract_stream;

typedef enum {
        BUCKET_PRESENCE = 0,
        BUCKET_CHANNELS,
        BUCKET_MEMBERS,
        BUCKET_ACL,
        BUCKET_DELIVERY,
        BUCKET_COUNT_,
} contract_bucket;

/* Borrowed names from n. */
const char *contract_stream_name(const contract_names *n, contract_stream s);
const char *contract_bucket_name(const contract_names *n, contract_bucket b);

/* Body of $JS.API.STREAM.CREATE.<name> (§2). replicas > 1 adds
 * num_replicas (a cluster extension; upstream never sends it). */
json_t *contract_stream_config(const contract_names *n, contract_stream s, int replicas);
/* Body of $JS.API.STREAM.CREATE.KV_<bucket> (§4.1). */
json_t *contract_bucket_config(const contract_names *n, contract_bucket b, int replicas);

/* What a stream or bucket must read back as: the sent fields plus the
 * server defaults the contract relies on (allow_direct false, discard old,
 * the 2-minute duplicate window, replicas). Compared field by field
 * against STREAM.INFO's config. */
json_t *contract_stream_expected(const contract_names *n, contract_stream s, int replicas);
json_t *contract_bucket_expected(const contract_names *n, contract_bucket b, int replicas);

/* Consumer configs of §3 (the "config" object only). */
json_t *contract_fanout_config(const contract_names *n);
json_t *contract_reader_config(const contract_names *n);
/* owner is the raw agent id; its durable is dlv_<token(owner)>. */
json_t *contract_dlv_config(const contract_names *n, const char *owner);

/* Compares every field of expected with actual (json_equal). Appends one
 * line per difference, "field: want X, have Y", to diff (an array of
 * strings, borrowed). Returns the number of differences. */
size_t contract_config_diff(const json_t *expected, const json_t *actual, json_t *diff);
