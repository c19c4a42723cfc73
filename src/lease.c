/* lease: PROTOCOL §9 acquire / mark ready / renew / check / release. Every
 * write is timed from before it is sent, never from its PubAck: the record's
 * TTL runs from its store time, which may come long before the PubAck does. */
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

/* Opens a write of {holder, since:now, ready}: the value every try of it
 * sends, and the monotonic time before its first try. */
static int renew_open(lease *l, bool ready)
{
        renew_close(l);
        if (contract_lease_encode(l->holder, clock_wall_ms(), ready, &l->renew_value) < 0)
                return -ENOMEM;
        l->renew_ready = ready;
        l->renew_started_ms = clock_mono_ms();
        return 0;
}

/* The write is confirmed at revision rev: the record lives from a store
 * time no earlier than the open write's first try (§9 TTL). */
static void renew_confirmed(lease *l, uint64_t rev)
{
        l->revision = rev;
        l->ready = l->renew_ready;
        l->last_write_ms = l->renew_started_ms;
        renew_close(l);
}

/* e is, byte for byte, the value a try of the open write sent (holder and
 * since in ms make it unique), at a revision after ours. */
static bool is_own_try(const lease *l, const kv_entry *e)
{
        return l->renew_value && l->renew_tried && e->op == KV_OP_PUT && e->value && e->len == strlen(l->renew_value) &&
               memcmp(e->value, l->renew_value, e->len) == 0 && e->revision > l->revision;
}

int lease_acquire(lease *l)
{
        int r = renew_open(l, false);
        if (r < 0)
                return r;
        uint64_t rev = 0;
        l->renew_tried = true;
        r = kv_create(&l->kv, CONTRACT_LEASE_KEY, l->renew_value, strlen(l->renew_value), &rev);
        if (r == 0) {
                renew_confirmed(l, rev);
                return 0;
        }
        snprintf(l->last_error, sizeof l->last_error, "%s", l->kv.last_error);
        if (r != -EEXIST)
                return r; /* it may have landed: the write stays open for lease_release */
        renew_close(l);
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
        return lease_renew(l);
}

/* The key moved since our revision. If its latest entry is an earlier try
 * of the open write, that try landed and its PubAck was lost: 0 and *rev
 * is its revision. -ESTALE otherwise (or if it cannot be read). */
static int adopt_own_try(lease *l, uint64_t *rev)
{
        kv_entry e;
        if (kv_get(&l->kv, CONTRACT_LEASE_KEY, &e) < 0)
                return -ESTALE;
        bool ours = is_own_try(l, &e);
        *rev = e.revision;
        kv_entry_fini(&e);
        return ours ? 0 : -ESTALE;
}

int lease_renew(lease *l)
{
        if (!l->renew_value && renew_open(l, true) < 0)
                return -ENOMEM;
        uint64_t rev = 0;
        int r = kv_update(&l->kv, CONTRACT_LEASE_KEY, l->renew_value, strlen(l->renew_value), l->revision, &rev);
        if (r == -ESTALE && adopt_own_try(l, &rev) == 0)
                r = 0;
        l->renew_tried = true;
        if (r < 0) {
                snprintf(l->last_error, sizeof l->last_error, "%s", l->kv.last_error);
                if (r == -ESTALE)
                        renew_close(l);
                return r;
        }
        renew_confirmed(l, rev);
        return 0;
}

int lease_check(lease *l)
{
        if (l->revision == 0)
                return 0; /* nothing held, nothing to lose */
        kv_entry e;
        int r = kv_get(&l->kv, CONTRACT_LEASE_KEY, &e);
        if (r == -ENOENT) {
                snprintf(l->last_error, sizeof l->last_error,
                         "%s has no entry: purged, or expired after revision %" PRIu64, CONTRACT_LEASE_KEY,
                         l->revision);
                return -ESTALE;
        }
        if (r < 0) {
                snprintf(l->last_error, sizeof l->last_error, "%s", l->kv.last_error);
                return r;
        }
        if (e.revision == l->revision && e.op == KV_OP_PUT) {
                r = 0;
        } else if (is_own_try(l, &e)) {
                renew_confirmed(l, e.revision);
                r = 1;
        } else if (e.op != KV_OP_PUT) {
                snprintf(l->last_error, sizeof l->last_error, "%s %s at revision %" PRIu64 " (ours was %" PRIu64 ")",
                         CONTRACT_LEASE_KEY, e.op == KV_OP_DEL ? "deleted" : "purged", e.revision, l->revision);
                r = -ESTALE;
        } else {
                contract_lease cur;
                bool readable = contract_lease_decode(e.value ? e.value : "", e.len, &cur, NULL) == REC_OK;
                snprintf(l->last_error, sizeof l->last_error,
                         "%s written by %.64s at revision %" PRIu64 " (ours was %" PRIu64 ")", CONTRACT_LEASE_KEY,
                         readable ? cur.holder : "someone (unreadable record)", e.revision, l->revision);
                if (readable)
                        contract_lease_fini(&cur);
                r = -ESTALE;
        }
        kv_entry_fini(&e);
        return r;
}

int64_t lease_act_until_ms(const lease *l)
{
        return l->revision ? l->last_write_ms + LEASE_ACT_MS : 0;
}

int lease_release(lease *l)
{
        uint64_t rev = l->revision;
        /* An open write of ours may have landed unconfirmed: the key is at
         * its revision then, and a delete guarded by the older one would
         * leave our record to the TTL. */
        if (l->renew_value && l->renew_tried) {
                kv_entry e;
                if (kv_get(&l->kv, CONTRACT_LEASE_KEY, &e) == 0 && is_own_try(l, &e))
                        rev = e.revision;
                kv_entry_fini(&e);
        }
        renew_close(l);
        l->revision = 0;
        l->ready = false;
        if (rev == 0)
                return 0;
        int r = kv_delete(&l->kv, CONTRACT_LEASE_KEY, rev);
        if (r < 0)
                snprintf(l->last_error, sizeof l->last_error, "%s", l->kv.last_error);
        return r;
}
