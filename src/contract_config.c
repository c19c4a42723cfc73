/* contract_config: JetStream configurations of PROTOCOL §2, §3 and §4.1.
 * These tables are the contract; change them only with PROTOCOL.md. */
#include "contract_config.h"

#include <stdlib.h>
#include <string.h>

const char *contract_stream_name(const contract_names *n, contract_stream s)
{
        switch (s) {
        case STREAM_CHAT: return n->chat_stream;
        case STREAM_DM: return n->dm_stream;
        case STREAM_TASK: return n->task_stream;
        case STREAM_INBOX: return n->inbox_stream;
        case STREAM_DLV: return n->dlv_stream;
        default: return NULL;
        }
}

const char *contract_bucket_name(const contract_names *n, contract_bucket b)
{
        switch (b) {
        case BUCKET_PRESENCE: return n->presence_bucket;
        case BUCKET_CHANNELS: return n->channels_bucket;
        case BUCKET_MEMBERS: return n->members_bucket;
        case BUCKET_ACL: return n->acl_bucket;
        case BUCKET_DELIVERY: return n->delivery_bucket;
        default: return NULL;
        }
}

static const char *stream_filter(const contract_names *n, contract_stream s)
{
        switch (s) {
        case STREAM_CHAT: return n->chat_filter;
        case STREAM_DM: return n->dm_filter;
        case STREAM_TASK: return n->task_filter;
        case STREAM_INBOX: return n->dinbox_filter;
        case STREAM_DLV: return n->dlv_filter;
        default: return NULL;
        }
}

/* PROTOCOL §2 table, column by column. */
json_t *contract_stream_config(const contract_names *n, contract_stream s, int replicas)
{
        const char *name = contract_stream_name(n, s);
        if (!name)
                return NULL;
        json_t *c = json_pack("{s:s, s:[s], s:s, s:s}", "name", name, "subjects", stream_filter(n, s), "retention",
                              s == STREAM_TASK ? "workqueue" : "limits", "storage", "file");
        if (!c)
                return NULL;
        int r = 0;
        if (s == STREAM_CHAT || s == STREAM_INBOX || s == STREAM_DLV) {
                r |= json_object_set_new(c, "max_msgs_per_subject", json_integer(CONTRACT_MAX_MSGS_PER_SUBJECT));
                r |= json_object_set_new(c, "discard", json_string("old"));
        }
        if (s == STREAM_INBOX || s == STREAM_DLV)
                r |= json_object_set_new(c, "duplicate_window", json_integer(CONTRACT_PLANE3_DUP_WINDOW_NS));
        if (s == STREAM_CHAT)
                r |= json_object_set_new(c, "allow_direct", json_true());
        if (replicas > 1)
                r |= json_object_set_new(c, "num_replicas", json_integer(replicas));
        if (r) {
                json_decref(c);
                return NULL;
        }
        return c;
}

json_t *contract_stream_expected(const contract_names *n, contract_stream s, int replicas)
{
        json_t *c = contract_stream_config(n, s, replicas);
        if (!c)
                return NULL;
        int r = 0;
        /* Server defaults for what upstream leaves unset (§2 "—"). */
        if (!json_object_get(c, "discard"))
                r |= json_object_set_new(c, "discard", json_string("old"));
        if (!json_object_get(c, "max_msgs_per_subject"))
                r |= json_object_set_new(c, "max_msgs_per_subject", json_integer(-1));
        if (!json_object_get(c, "duplicate_window"))
                r |= json_object_set_new(c, "duplicate_window", json_integer(CONTRACT_SERVER_DUP_WINDOW_NS));
        if (!json_object_get(c, "allow_direct"))
                r |= json_object_set_new(c, "allow_direct", json_false());
        if (!json_object_get(c, "num_replicas"))
                r |= json_object_set_new(c, "num_replicas", json_integer(replicas > 1 ? replicas : 1));
        if (r) {
                json_decref(c);
                return NULL;
        }
        return c;
}

/* PROTOCOL §4.1: nats.js KV defaults, history 1; TTL only where listed. */
json_t *contract_bucket_config(const contract_names *n, contract_bucket b, int replicas)
{
        const char *bucket = contract_bucket_name(n, b);
        if (!bucket)
                return NULL;
        char *stream = contract_bucket_stream(bucket);
        char *subject = contract_kv_subject(bucket, ">");
        json_t *c = NULL;
        if (stream && subject)
                c = json_pack("{s:s, s:[s], s:s, s:i, s:i, s:i, s:s, s:s, s:b, s:i, s:b}", "name", stream, "subjects",
                              subject, "retention", "limits", "max_msgs_per_subject", 1, "max_bytes", -1,
                              "max_msg_size", -1, "storage", "file", "discard", "new", "allow_direct", 1,
                              "num_replicas", replicas > 1 ? replicas : 1, "allow_rollup_hdrs", 1);
        free(stream);
        free(subject);
        if (!c)
                return NULL;
        json_int_t ttl = b == BUCKET_PRESENCE   ? CONTRACT_PRESENCE_TTL_NS
                         : b == BUCKET_DELIVERY ? CONTRACT_LEASE_TTL_NS
                                                : 0;
        if (ttl && json_object_set_new(c, "max_age", json_integer(ttl))) {
                json_decref(c);
                return NULL;
        }
        return c;
}

json_t *contract_bucket_expected(const contract_names *n, contract_bucket b, int replicas)
{
        json_t *c = contract_bucket_config(n, b, replicas);
        if (c && !json_object_get(c, "max_age") && json_object_set_new(c, "max_age", json_integer(0))) {
                json_decref(c);
                return NULL;
        }
        return c;
}

/* PROTOCOL §3 rows "fanout" and "reader". */
json_t *contract_fanout_config(const contract_names *n)
{
        return json_pack("{s:s, s:s, s:s, s:I, s:s}", "durable_name", CONTRACT_FANOUT_DURABLE, "filter_subject",
                         n->chat_filter, "ack_policy", "explicit", "ack_wait", (json_int_t)CONTRACT_ACK_WAIT_NS,
                         "deliver_policy", "new");
}

json_t *contract_reader_config(const contract_names *n)
{
        return json_pack("{s:s, s:s, s:s, s:I, s:s, s:i}", "durable_name", CONTRACT_READER_DURABLE, "filter_subject",
                         n->dinbox_filter, "ack_policy", "explicit", "ack_wait", (json_int_t)CONTRACT_ACK_WAIT_NS,
                         "deliver_policy", "all", "max_ack_pending", CONTRACT_READER_MAX_ACK_PENDING);
}

/* PROTOCOL §3 row "dlv_<id>" (no inactive_threshold). */
json_t *contract_dlv_config(const contract_names *n, const char *owner)
{
        char *durable = contract_dlv_durable(owner);
        char *filter = contract_dlv_filter(n, owner);
        json_t *c = NULL;
        if (durable && filter)
                c = json_pack("{s:s, s:s, s:s, s:I, s:s}", "durable_name", durable, "filter_subject", filter,
                              "ack_policy", "explicit", "ack_wait", (json_int_t)CONTRACT_ACK_WAIT_NS, "deliver_policy",
                              "all");
        free(durable);
        free(filter);
        return c;
}

size_t contract_config_diff(const json_t *expected, const json_t *actual, json_t *diff)
{
        size_t count = 0;
        const char *key;
        json_t *want;
        json_object_foreach ((json_t *)expected, key, want) {
                json_t *have = json_object_get(actual, key);
                if (have && json_equal(want, have))
                        continue;
                count++;
                char *w = json_dumps(want, JSON_COMPACT | JSON_ENCODE_ANY);
                char *h = have ? json_dumps(have, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
                char *line = NULL;
                if (w && asprintf(&line, "%s: want %s, have %s", key, w, h ? h : "(unset)") >= 0)
                        json_array_append_new(diff, json_string(line));
                free(line);
                free(w);
                free(h);
        }
        return count;
}
