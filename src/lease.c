/* lease: PROTOCOL §9 acquire / mark ready / renew / release. */
#include "lease.h"

#include "clock.h"
#include "contract_record.h"
#include "contract_subject.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int lease_init(lease *l, natsConnection *nc, const char *bucket, const char *holder)
{
        memset(l, 0, sizeof *l);
        l->holder = strdup(holder);
        if (!l->holder)
                return -ENOMEM;
        int r = kv_bucket_init(&l->kv, nc, bucket);
        if (r < 0) {
                free(l->holder);
                l->holder = NULL;
        }
        return r;
}

static void renew_close(lease *l)
{
        free(l->renew_value);
        l->renew_value = NULL;
        l->renew_tried = false;
}

void lease_fini(lease *l)
{
        if (!l)
                return;
        renew_close(l);
        kv_bucket_fini(&l->kv);
        free(l->holder);
        memset(l, 0, sizeof *l);
}

/* Writes {holder, since:now, ready}; expect 0 = create, else CAS. */
static int write_record(lease *l, bool ready, bool create)
{
        char *value = NULL;
        if (contract_lease_encode(l->holder, clock_wall_ms(), ready, &value) < 0)
                return -ENOMEM;
        uint64_t rev = 0;
        int r = create ? kv_create(&l->kv, CONTRACT_LEASE_KEY, value, strlen(value), &rev)
                       : kv_update(&l->kv, CONTRACT_LEASE_KEY, value, strlen(value), l->revision, &rev);
        free(value);
        if (r < 0) {
                snprintf(l->last_error, sizeof l->last_error, "%s", l->kv.last_error);
                return r;
        }
        l->revision = rev;
        l->ready = ready;
        l->last_write_ms = clock_mono_ms();
        return 0;
}

int lease_acquire(lease *l)
{
        int r = write_record(l, false, true);
        if (r != -EEXIST)
                return r;
        /* B7: say who holds it, when the record is readable. */
        kv_entry e;
        if (kv_get(&l->kv, CONTRACT_LEASE_KEY, &e) == 0 && e.op == KV_OP_PUT) {
                contract_lease cur;
                if (contract_lease_decode(e.value ? e.value : "", e.len, &cur, NULL) == REC_OK) {
                        snprintf(l->last_error, sizeof l->last_error,
                                 "held by %.64s (revision %" PRIu64 ", ready=%s, last written %" PRId64 " ms ago)",
                                 cur.holder, e.revision, cur.ready ? "true" : "false", clock_wall_ms() - cur.since);
                        contract_lease_fini(&cur);
                } else {
                        snprintf(l->last_error, sizeof l->last_error, "an unreadable record at revision %" PRIu64,
                                 e.revision);
                }
        }
        kv_entry_fini(&e);
        return -EEXIST;
}

int lease_mark_ready(lease *l)
{
        return write_record(l, true, false);
}

/* The key moved since our revision. If its latest entry is, byte for
 * byte, the value an earlier try of this renew sent (holder and since in
 * ms make it unique), that try landed and its PubAck was lost: adopt its
 * revision. 0 when adopted, -ESTALE otherwise (or if it cannot be read). */
static int adopt_own_try(lease *l, uint64_t *rev)
{
        kv_entry e;
        if (kv_get(&l->kv, CONTRACT_LEASE_KEY, &e) < 0)
                return -ESTALE;
        bool ours = e.op == KV_OP_PUT && e.value && e.len == strlen(l->renew_value) &&
                    memcmp(e.value, l->renew_value, e.len) == 0 && e.revision > l->revision;
        *rev = e.revision;
        kv_entry_fini(&e);
        return ours ? 0 : -ESTALE;
}

int lease_renew(lease *l)
{
        if (!l->renew_value) {
                if (contract_lease_encode(l->holder, clock_wall_ms(), true, &l->renew_value) < 0)
                        return -ENOMEM;
                l->renew_started_ms = clock_mono_ms();
                l->renew_tried = false;
        }
        uint64_t rev = 0;
        int r = kv_update(&l->kv, CONTRACT_LEASE_KEY, l->renew_value, strlen(l->renew_value), l->revision, &rev);
        if (r == -ESTALE && l->renew_tried && adopt_own_try(l, &rev) == 0)
                r = 0;
        l->renew_tried = true;
        if (r < 0) {
                snprintf(l->last_error, sizeof l->last_error, "%s", l->kv.last_error);
                if (r == -ESTALE)
                        renew_close(l);
                return r;
        }
        l->revision = rev;
        l->ready = true;
        /* The record's TTL runs from when the server stored it, which is
         * no earlier than our first try: count from there (conservative). */
        l->last_write_ms = l->renew_started_ms;
        renew_close(l);
        return 0;
}

int lease_release(lease *l)
{
        if (l->revision == 0)
                return 0;
        int r = kv_delete(&l->kv, CONTRACT_LEASE_KEY, l->revision);
        if (r < 0)
                snprintf(l->last_error, sizeof l->last_error, "%s", l->kv.last_error);
        l->revision = 0;
        l->ready = false;
        return r;
}
