/* kv: the JetStream KV operations of PROTOCOL §4.2, done the way the
 * delivery credential allows: reads by STREAM.MSG.GET (never DIRECT.GET),
 * writes as JetStream publishes to $KV.<bucket>.<key> with CAS headers,
 * key listing by STREAM.INFO subjects_filter (no unnamed consumers).
 * A handle is used by one thread at a time. */
#pragma once

#include <nats/nats.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KV_TIMEOUT_MS 5000
/* Most keys one listing returns (members bucket scans, operator tools). */
#define KV_LIST_MAX_KEYS 1000000

typedef enum {
        KV_OP_PUT = 0,
        KV_OP_DEL,
        KV_OP_PURGE,
} kv_op;

typedef struct kv_bucket {
        natsConnection *nc; /* borrowed */
        jsCtx *js;          /* owned, freed by kv_bucket_fini */
        char *bucket;       /* "cotal_members_<S>" */
        char *stream;       /* "KV_cotal_members_<S>" */
        int64_t timeout_ms;
        char last_error[512]; /* reason of the last failing call */
} kv_bucket;

/* nc is borrowed and must outlive the handle. 0 or -ENOMEM/-EIO. */
int kv_bucket_init(kv_bucket *kv, natsConnection *nc, const char *bucket);
void kv_bucket_fini(kv_bucket *kv); /* accepts a zeroed struct */

typedef struct kv_entry {
        uint64_t revision; /* the stream sequence of the latest entry */
        kv_op op;
        char *value; /* owned, NUL-terminated copy; NULL when empty */
        size_t len;
        int64_t time_ms; /* stored time of the entry */
} kv_entry;

void kv_entry_fini(kv_entry *e);

/* Latest entry of key. Returns 0 (the entry may be a DEL/PURGE marker: see
 * kv_entry.op), -ENOENT (no entry, or the key is not a valid KV key: §4.2
 * says such a lookup is "absent"), or a transport error (-ETIMEDOUT, -EIO,
 * -ENXIO, -EACCES …) with last_error set. */
int kv_get(kv_bucket *kv, const char *key, kv_entry *out);

/* Unconditional put. *rev (may be NULL) gets the new revision. */
int kv_put(kv_bucket *kv, const char *key, const char *data, size_t len, uint64_t *rev);

/* §4.2 create: expected last subject sequence 0; if that fails because the
 * key's latest entry is a DEL/PURGE marker, retry once expecting that
 * marker's sequence. -EEXIST if a live value exists (or the race was lost). */
int kv_create(kv_bucket *kv, const char *key, const char *data, size_t len, uint64_t *rev);

/* CAS update: succeeds only if the key's latest revision is last.
 * -ESTALE if it is not (err 10071/10164). */
int kv_update(kv_bucket *kv, const char *key, const char *data, size_t len, uint64_t last, uint64_t *rev);

/* Delete marker (KV-Operation: DEL). last > 0 makes it conditional
 * (PROTOCOL §9 lease release); -ESTALE when the revision moved. */
int kv_delete(kv_bucket *kv, const char *key, uint64_t last);

/* Every key that has a message in the bucket stream, in no order (the
 * caller reads each to skip DEL/PURGE markers, §4.2 strategy b). *keys is
 * an owned array of owned strings: kv_keys_free. */
int kv_keys(kv_bucket *kv, char ***keys, size_t *n);
/* Only keys whose subject matches "$KV.<bucket>.<pattern>" (NATS
 * wildcards, e.g. "team.*"). */
int kv_keys_matching(kv_bucket *kv, const char *pattern, char ***keys, size_t *n);
void kv_keys_free(char **keys, size_t n);
