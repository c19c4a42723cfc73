/* kv_cache: the KV state the fan-out and the reader consult for every
 * message — ACLs (§4.3), membership records (§4.4), channel classes (§4.6)
 * — held in memory and kept current by watches (§4.2: named push
 * consumers the delivery credential may create), instead of one KV read
 * per lookup.
 *
 * Freshness (§6.4): before a fetched batch is handled the owner calls
 * kv_cache_fence, which reads each watched bucket stream's last sequence
 * and applies watch updates until the cache has seen at least that far.
 * So every record written to the KV before the fence started — in
 * particular before the batch was fetched — is observed while the batch is
 * handled. Lookups never touch the broker.
 *
 * One cache per thread; nothing runs on cnats threads. Everything a lookup
 * returns is borrowed and valid until the next kv_cache_fence. */
#pragma once

#include "contract_record.h"
#include "contract_subject.h"

#include <nats/nats.h>
#include <stddef.h>
#include <stdint.h>

enum {
        KV_CACHE_ACL = 1 << 0,
        KV_CACHE_MEMBERS = 1 << 1,
        KV_CACHE_CHANNELS = 1 << 2,
};

/* How long a fence waits for the watches before it gives up (the caller
 * then retries the batch later). */
#define KV_CACHE_FENCE_TIMEOUT_MS 5000

typedef struct kv_cache kv_cache;

/* Watches the buckets in which (KV_CACHE_* bits). Consumer names are
 * "<name>_<acl|mem|chan>"; they must be unique per daemon and thread.
 * Deliver subjects go under inbox_prefix. The initial replay is applied by
 * the first fence. 0 or -errno (*out NULL; error text logged by caller via
 * the returned errno only). */
int kv_cache_open(kv_cache **out, natsConnection *nc, const contract_names *n, const char *inbox_prefix,
                  const char *name, unsigned which, char *err, size_t err_size);
void kv_cache_close(kv_cache *c); /* deletes the watch consumers; accepts NULL */

/* Brings every watched bucket up to its stream's current last sequence.
 * 0, or a negative errno (broker unreachable, watch not catching up within
 * timeout_ms) with kv_cache_error saying why; the cache stays usable and
 * the next fence tries again. */
int kv_cache_fence(kv_cache *c, int64_t timeout_ms);
const char *kv_cache_error(const kv_cache *c);

/* aclFor(owner), key token(owner) (§4.3). 0 with *acl set = known ACL;
 * -ENOENT = unknown owner, *why says which case (absent, unreadable, owner
 * not encodable). */
int kv_cache_acl(kv_cache *c, const char *owner, const contract_acl **acl, const char **why);

/* The readable record at "<channel>/<token(owner)>", or NULL (§4.4). */
const contract_member *kv_cache_member(kv_cache *c, const char *channel, const char *owner);

/* Called per record with the key's channel part; < 0 stops the walk. */
typedef int (*kv_cache_member_fn)(const contract_member *m, const char *channel, void *arg);

/* Calls fn for every readable record whose key's channel part is exactly
 * channel (§6.2, §6.4: no prefix match), until fn returns < 0, which is
 * then returned; else 0. */
int kv_cache_members_each(kv_cache *c, const char *channel, kv_cache_member_fn fn, void *arg);
/* The same for every readable record whose key's owner part is
 * token(owner) (§8.3 listMemberships), in no particular order. */
int kv_cache_members_of(kv_cache *c, const char *owner, kv_cache_member_fn fn, void *arg);

/* §4.6 effective class: true if durable. */
bool kv_cache_channel_is_durable(kv_cache *c, const char *channel);

/* Counters for diagnostics. */
typedef struct kv_cache_stats {
        uint64_t fences, applied, restarts, probes, resyncs;
} kv_cache_stats;
void kv_cache_get_stats(const kv_cache *c, kv_cache_stats *out);
