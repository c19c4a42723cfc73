/* members: the membership primitives of PROTOCOL §8.7 on the
 * cotal_members_<S> bucket — commit (generation guard + revision CAS),
 * tombstone, activate — each retried at most 5 times. Keys are
 * "<channel>/<token(owner)>". Used by the control thread. */
#pragma once

#include "contract_record.h"
#include "kv.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum {
        MEMBERS_OK = 0,
        MEMBERS_STALE,     /* StaleMembershipWrite: see the stale fields */
        MEMBERS_EXHAUSTED, /* "members CAS exhausted retries for <K>" */
        MEMBERS_ERROR,     /* transport / allocation: error says why */
} members_status;

typedef struct members_result {
        members_status status;
        uint64_t stored_generation; /* for MEMBERS_STALE */
        char error[512];
} members_result;

/* Readable record at key (+ its revision). 0, -ENOENT, or an error. */
int members_read(kv_bucket *kv, const char *key, contract_member *out, uint64_t *rev);

/* commit(K, next): next->generation < stored -> STALE. */
members_status members_commit(kv_bucket *kv, const char *key, const contract_member *next, members_result *res);

/* tombstone(K, leaveCursor, writer, expectedGeneration); expected_generation
 * NULL = no check; a double because a leave's generation may be any finite
 * JSON number (§8.3). Returns OK also when there is nothing to do. */
members_status members_tombstone(kv_bucket *kv, const char *key, uint64_t leave_cursor, const char *writer,
                                 const double *expected_generation, int64_t now_ms, members_result *res);

/* activate(K, generation, joinCursor): true when activated (or already). */
bool members_activate(kv_bucket *kv, const char *key, uint64_t generation, uint64_t join_cursor, int64_t now_ms);
