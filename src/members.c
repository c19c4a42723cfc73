/* members: PROTOCOL §8.7 commit / tombstone / activate. */
#include "members.h"

#include "contract_constants.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int members_read(kv_bucket *kv, const char *key, contract_member *out, uint64_t *rev)
{
        kv_entry e;
        memset(out, 0, sizeof *out);
        int r = kv_get(kv, key, &e);
        if (r < 0)
                return r;
        if (e.op != KV_OP_PUT || contract_member_decode(e.value ? e.value : "", e.len, out, NULL) != REC_OK) {
                kv_entry_fini(&e);
                return -ENOENT; /* §4.4: unreadable = absent */
        }
        if (rev)
                *rev = e.revision;
        kv_entry_fini(&e);
        return 0;
}

static members_status fail(members_result *res, members_status st, const char *what)
{
        res->status = st;
        snprintf(res->error, sizeof res->error, "%s", what);
        return st;
}

members_status members_commit(kv_bucket *kv, const char *key, const contract_member *next, members_result *res)
{
        char *value = NULL;
        memset(res, 0, sizeof *res);
        /* §8.7: the value is serialised once, before the loop. */
        if (contract_member_encode(next, &value) < 0)
                return fail(res, MEMBERS_ERROR, "cannot encode the membership record");
        for (int attempt = 0; attempt < CONTRACT_CAS_ATTEMPTS; attempt++) {
                contract_member cur;
                uint64_t rev = 0;
                int r = members_read(kv, key, &cur, &rev);
                if (r < 0 && r != -ENOENT) {
                        free(value);
                        return fail(res, MEMBERS_ERROR, kv->last_error);
                }
                if (r == -ENOENT) {
                        if (kv_create(kv, key, value, strlen(value), NULL) == 0) {
                                free(value);
                                return MEMBERS_OK;
                        }
                        continue;
                }
                uint64_t stored = cur.generation;
                contract_member_fini(&cur);
                if (next->generation < stored) {
                        free(value);
                        res->status = MEMBERS_STALE;
                        res->stored_generation = stored;
                        return MEMBERS_STALE;
                }
                if (kv_update(kv, key, value, strlen(value), rev, NULL) == 0) {
                        free(value);
                        return MEMBERS_OK;
                }
        }
        free(value);
        res->status = MEMBERS_EXHAUSTED;
        return MEMBERS_EXHAUSTED;
}

members_status members_tombstone(kv_bucket *kv, const char *key, uint64_t leave_cursor, const char *writer,
                                 const double *expected_generation, int64_t now_ms, members_result *res)
{
        contract_member cur;
        memset(res, 0, sizeof *res);
        int r = members_read(kv, key, &cur, NULL);
        if (r == -ENOENT)
                return MEMBERS_OK;
        if (r < 0)
                return fail(res, MEMBERS_ERROR, kv->last_error);
        if (expected_generation && (double)cur.generation != *expected_generation) {
                res->status = MEMBERS_STALE;
                res->stored_generation = cur.generation;
                contract_member_fini(&cur);
                return MEMBERS_STALE;
        }
        if (cur.has_leave_cursor && cur.leave_cursor <= leave_cursor) {
                contract_member_fini(&cur);
                return MEMBERS_OK; /* already left at or before this cursor */
        }
        /* All other fields (joinCursor, generation, activated) are kept. */
        cur.state = MEMBER_STATE_LIVE_CONFIRMED;
        cur.has_leave_cursor = true;
        cur.leave_cursor = leave_cursor;
        cur.updated_at = now_ms;
        char *w = strdup(writer);
        if (!w) {
                contract_member_fini(&cur);
                return fail(res, MEMBERS_ERROR, "out of memory");
        }
        free(cur.writer_identity);
        cur.writer_identity = w;
        members_status st = members_commit(kv, key, &cur, res);
        contract_member_fini(&cur);
        return st;
}

bool members_activate(kv_bucket *kv, const char *key, uint64_t generation, uint64_t join_cursor, int64_t now_ms)
{
        for (int attempt = 0; attempt < CONTRACT_CAS_ATTEMPTS; attempt++) {
                contract_member cur;
                uint64_t rev = 0;
                if (members_read(kv, key, &cur, &rev) < 0)
                        return false;
                if (cur.generation != generation || cur.join_cursor != join_cursor || cur.has_leave_cursor) {
                        contract_member_fini(&cur);
                        return false; /* a concurrent leave or rejoin won */
                }
                if (cur.activated == MEMBER_ACTIVATED_TRUE) {
                        contract_member_fini(&cur);
                        return true;
                }
                cur.activated = MEMBER_ACTIVATED_TRUE;
                cur.updated_at = now_ms;
                char *value = NULL;
                int r = contract_member_encode(&cur, &value);
                contract_member_fini(&cur);
                if (r < 0)
                        return false;
                r = kv_update(kv, key, value, strlen(value), rev, NULL);
                free(value);
                if (r == 0)
                        return true;
        }
        return false;
}
