/* ledger: per-owner E1 accounting (see ledger.h). Must never count an
 * owner lower than its real span; counting higher only costs a pause. */
#include "ledger.h"

#include "clock.h"
#include "strmap.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Disposals that matched nothing yet (the reader can ack an entry before
 * its writer has read the PubAck) are kept for the writer's commit; past
 * this many the oldest are forgotten, which can only make a later commit
 * count an entry that is already gone (too high, never too low) until the
 * floor passes it. */
#define LEDGER_EARLY_MAX 65536
/* A publish whose PubAck never came may still be stored, unread: it counts
 * this long (two ack_waits: by then the reader has long read it, or a
 * retry has committed it) before it is forgotten. */
#define LEDGER_ORPHAN_MS 120000
/* Recent disposals remembered for ledger_replay. */
#define LEDGER_RECENT_MAX 16384

/* ---- a set of INBOX sequences ------------------------------------------
 * Sorted; a removal from the front moves lo, one elsewhere marks the slot
 * dead (top bit), and the array is compacted when half of it is dead. The
 * common patterns (commits ascending, disposals roughly ascending) cost
 * O(log n). */

#define SEQ_DEAD (1ULL << 63)

typedef struct seqset {
        uint64_t *v;
        size_t lo, hi, cap, live;
        /* Dead members behind the first live one stay (they still take
         * room in the span, see account.written); compaction only moves. */
        bool keep_dead;
        /* While holding, dead members above hold_above stay at the front
         * too (see account_sync). */
        bool holding;
        uint64_t hold_above;
} seqset;

static uint64_t seq_key(uint64_t x)
{
        return x & ~SEQ_DEAD;
}

/* The first index in [lo, hi) whose key is >= s. */
static size_t seqset_find(const seqset *q, uint64_t s)
{
        size_t a = q->lo, b = q->hi;
        while (a < b) {
                size_t m = a + (b - a) / 2;
                if (seq_key(q->v[m]) < s)
                        a = m + 1;
                else
                        b = m;
        }
        return a;
}

static void seqset_compact(seqset *q)
{
        size_t o = 0;
        for (size_t i = q->lo; i < q->hi; i++)
                if (q->keep_dead || !(q->v[i] & SEQ_DEAD))
                        q->v[o++] = q->v[i];
        q->lo = 0;
        q->hi = o;
}

static void seqset_skip_dead(seqset *q)
{
        while (q->lo < q->hi && (q->v[q->lo] & SEQ_DEAD) && !(q->holding && seq_key(q->v[q->lo]) > q->hold_above))
                q->lo++;
        if (q->lo == q->hi)
                q->lo = q->hi = 0;
}

/* 1 if s was added, 0 if it was there, -ENOMEM (the set unchanged). */
static int seqset_add(seqset *q, uint64_t s)
{
        size_t i = seqset_find(q, s);
        if (i < q->hi && seq_key(q->v[i]) == s) {
                if (!(q->v[i] & SEQ_DEAD))
                        return 0;
                q->v[i] = s;
                q->live++;
                return 1;
        }
        if (q->hi == q->cap) {
                if (q->lo > 0 || (!q->keep_dead && q->live < q->hi - q->lo))
                        seqset_compact(q);
                if (q->hi == q->cap) {
                        size_t ncap = q->cap ? q->cap * 2 : 16;
                        uint64_t *nv = realloc(q->v, ncap * sizeof *nv);
                        if (!nv)
                                return -ENOMEM;
                        q->v = nv;
                        q->cap = ncap;
                }
                i = seqset_find(q, s);
        }
        memmove(q->v + i + 1, q->v + i, (q->hi - i) * sizeof *q->v);
        q->v[i] = s;
        q->hi++;
        q->live++;
        return 1;
}

static bool seqset_remove(seqset *q, uint64_t s)
{
        size_t i = seqset_find(q, s);
        if (i >= q->hi || q->v[i] != s)
                return false;
        q->v[i] |= SEQ_DEAD;
        q->live--;
        if (i == q->lo)
                seqset_skip_dead(q);
        else if (!q->keep_dead && q->hi - q->lo > 2 * q->live + 64)
                seqset_compact(q);
        return true;
}

/* Whether s is a member, live or dead. */
static bool seqset_contains_any(const seqset *q, uint64_t s)
{
        size_t i = seqset_find(q, s);
        return i < q->hi && seq_key(q->v[i]) == s;
}

/* Members from the first live one to the last, dead ones included. */
static size_t seqset_span(const seqset *q)
{
        return q->hi - q->lo;
}

/* Removes every member <= floor; returns how many were live. */
static size_t seqset_prune(seqset *q, uint64_t floor)
{
        size_t gone = 0;
        while (q->lo < q->hi && seq_key(q->v[q->lo]) <= floor) {
                if (!(q->v[q->lo] & SEQ_DEAD))
                        gone++;
                q->lo++;
        }
        q->live -= gone;
        seqset_skip_dead(q);
        return gone;
}

/* Forgets the oldest live members until at most keep remain. */
static void seqset_trim(seqset *q, size_t keep)
{
        while (q->live > keep && q->lo < q->hi) {
                if (!(q->v[q->lo] & SEQ_DEAD))
                        q->live--;
                q->lo++;
        }
        seqset_skip_dead(q);
}

static void seqset_fini(seqset *q)
{
        free(q->v);
        memset(q, 0, sizeof *q);
}

/* ---- the ledger --------------------------------------------------------
 * What INBOX evicts is the oldest STORED entry of a subject, read or not,
 * once it holds 1000. So the quantity to bound is not an owner's unread
 * entries but its span: the entries stored from its oldest unread one on,
 * read ones included (an entry nak'ed or waiting for its redelivery is
 * pushed out by the newer ones the reader goes on reading). */

typedef struct account {
        /* Committed by us from the oldest unread one on: live = unread,
         * dead = read but newer than an unread one (they count). */
        seqset written;
        uint64_t last_commit; /* the highest sequence committed */
        size_t reserved;      /* publishes in flight */
        size_t orphans;       /* publishes never answered, counted for a while */
        uint64_t seed;        /* entries stored on the subject at the seed */
} account;

struct ledger {
        pthread_mutex_t lock;
        pthread_cond_t moved;
        strmap owners; /* owner token -> account */
        size_t limit;
        uint64_t floor; /* the reader's ack floor */
        uint64_t epoch; /* seeds so far */
        uint64_t changes;
        /* A seed is in force until the floor passes seed_last: until then
         * any entry stored before it may be unread and the oldest of its
         * subject, so all of them count. */
        bool seeded;
        uint64_t seed_last;   /* INBOX last_seq at the seed */
        uint64_t unread_hint; /* the broker's num_pending + num_ack_pending (diagnostics) */
        seqset early;         /* disposals not matched yet */
        uint64_t written_total, reserved_total, orphans_total;
        /* Orphans in the order they expire (a ring). */
        struct orphan {
                account *a;
                int64_t expires_ms;
        } * orph;
        size_t orph_head, orph_n, orph_cap;
        /* The latest disposals (a ring), for ledger_replay. Accounts are
         * never freed before the ledger, so the pointers stay good. */
        struct disposal {
                account *a;
                uint64_t seq;
                int64_t ms;
        } recent[LEDGER_RECENT_MAX];
        size_t recent_next, recent_n;
};

static void account_free(account *a)
{
        if (!a)
                return;
        seqset_fini(&a->written);
        free(a);
}

static void free_one(const char *key, void *value, void *arg)
{
        (void)key;
        (void)arg;
        account_free(value);
}

ledger *ledger_new(size_t limit)
{
        ledger *l = calloc(1, sizeof *l);
        if (!l)
                return NULL;
        pthread_mutex_init(&l->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&l->moved, &ca);
        pthread_condattr_destroy(&ca);
        strmap_init(&l->owners);
        l->limit = limit;
        return l;
}

void ledger_free(ledger *l)
{
        if (!l)
                return;
        strmap_foreach(&l->owners, free_one, NULL);
        strmap_fini(&l->owners);
        seqset_fini(&l->early);
        free(l->orph);
        pthread_cond_destroy(&l->moved);
        pthread_mutex_destroy(&l->lock);
        free(l);
}

/* Lock held by the caller from here on. */

static void moved(ledger *l)
{
        l->changes++;
        pthread_cond_broadcast(&l->moved);
}

static account *account_of(ledger *l, const char *owner, bool create)
{
        account *a = strmap_get(&l->owners, owner);
        if (a || !create)
                return a;
        a = calloc(1, sizeof *a);
        if (a && strmap_put(&l->owners, owner, a) < 0) {
                free(a);
                a = NULL;
        }
        if (a)
                a->written.keep_dead = true;
        return a;
}

/* A publish in flight may be stored already, unread, and older than
 * entries the reader has read since. It is newer than everything
 * committed when the first of the publishes now in flight was reserved
 * (with nothing in flight, everything stored was committed), so read
 * entries at the front keep their room only above that. */
static void account_sync(account *a)
{
        if (a->reserved > 0 && !a->written.holding) {
                a->written.holding = true;
                a->written.hold_above = a->last_commit;
        } else if (a->reserved == 0 && a->written.holding) {
                a->written.holding = false;
                seqset_skip_dead(&a->written);
        }
}

static size_t count_of(const ledger *l, const account *a)
{
        return seqset_span(&a->written) + a->reserved + a->orphans + (l->seeded ? (size_t)a->seed : 0);
}

typedef struct prune_walk {
        ledger *l;
        bool end_seed;
} prune_walk;

static void prune_one(const char *key, void *value, void *arg)
{
        (void)key;
        prune_walk *w = arg;
        account *a = value;
        w->l->written_total -= seqset_prune(&a->written, w->l->floor);
        if (w->end_seed)
                a->seed = 0;
}

/* Drops what the floor covers (read, and older than anything unread);
 * ends the seed once the floor passed it. Accounts left empty stay in
 * the map (an owner written to once is likely to be again). */
static void prune(ledger *l, bool end_seed)
{
        prune_walk w = {.l = l, .end_seed = end_seed};
        strmap_foreach(&l->owners, prune_one, &w);
        (void)seqset_prune(&l->early, l->floor);
        if (end_seed)
                l->seeded = false;
}

void ledger_set_limit(ledger *l, size_t limit)
{
        pthread_mutex_lock(&l->lock);
        l->limit = limit;
        moved(l);
        pthread_mutex_unlock(&l->lock);
}

size_t ledger_limit(ledger *l)
{
        pthread_mutex_lock(&l->lock);
        size_t limit = l->limit;
        pthread_mutex_unlock(&l->lock);
        return limit;
}

static void expire_orphans(ledger *l, int64_t now)
{
        while (l->orph_n > 0 && l->orph[l->orph_head].expires_ms <= now) {
                account *a = l->orph[l->orph_head].a;
                a->orphans--;
                l->orphans_total--;
                l->orph_head = (l->orph_head + 1) % l->orph_cap;
                l->orph_n--;
        }
}

bool ledger_reserve(ledger *l, const char *owner)
{
        bool ok = false;
        pthread_mutex_lock(&l->lock);
        expire_orphans(l, clock_mono_ms());
        account *a = account_of(l, owner, true);
        if (a && count_of(l, a) < l->limit) {
                a->reserved++;
                l->reserved_total++;
                account_sync(a);
                ok = true;
        }
        pthread_mutex_unlock(&l->lock);
        return ok;
}

static void unreserve(ledger *l, account *a)
{
        if (a && a->reserved > 0) {
                a->reserved--;
                l->reserved_total--;
                account_sync(a);
        }
}

void ledger_commit(ledger *l, const char *owner, uint64_t seq)
{
        pthread_mutex_lock(&l->lock);
        account *a = account_of(l, owner, true);
        int added = 0;
        if (a && seq > l->floor) {
                /* Read already (the reader can ack before the writer reads
                 * the PubAck): it still takes room behind an older unread
                 * entry, and none in front of all of them. */
                bool read = seqset_remove(&l->early, seq);
                if (seq > a->last_commit)
                        a->last_commit = seq;
                added = seqset_add(&a->written, seq);
                if (added > 0 && read)
                        (void)seqset_remove(&a->written, seq);
                else if (added > 0)
                        l->written_total++;
        }
        /* Out of memory: the reservation stays, so the entry is still
         * counted (for good: too high is safe, too low is not). */
        if (added >= 0)
                unreserve(l, a);
        moved(l);
        pthread_mutex_unlock(&l->lock);
}

void ledger_orphan(ledger *l, const char *owner)
{
        pthread_mutex_lock(&l->lock);
        account *a = account_of(l, owner, false);
        if (a && a->reserved > 0) {
                if (l->orph_n == l->orph_cap) {
                        size_t ncap = l->orph_cap ? l->orph_cap * 2 : 64;
                        struct orphan *no = malloc(ncap * sizeof *no);
                        if (no) {
                                for (size_t i = 0; i < l->orph_n; i++)
                                        no[i] = l->orph[(l->orph_head + i) % l->orph_cap];
                                free(l->orph);
                                l->orph = no;
                                l->orph_cap = ncap;
                                l->orph_head = 0;
                        }
                }
                /* Without room in the ring it stays reserved for good
                 * (too high is safe). */
                if (l->orph_n < l->orph_cap) {
                        l->orph[(l->orph_head + l->orph_n) % l->orph_cap] =
                                (struct orphan){.a = a, .expires_ms = clock_mono_ms() + LEDGER_ORPHAN_MS};
                        l->orph_n++;
                        a->orphans++;
                        l->orphans_total++;
                        unreserve(l, a);
                }
        }
        moved(l);
        pthread_mutex_unlock(&l->lock);
}

void ledger_release(ledger *l, const char *owner)
{
        pthread_mutex_lock(&l->lock);
        unreserve(l, account_of(l, owner, false));
        moved(l);
        pthread_mutex_unlock(&l->lock);
}

void ledger_dispose(ledger *l, const char *owner, uint64_t seq)
{
        pthread_mutex_lock(&l->lock);
        if (seq > l->floor) {
                account *a = account_of(l, owner, true);
                if (a && seqset_remove(&a->written, seq)) {
                        l->written_total--;
                } else if (!(a && seqset_contains_any(&a->written, seq))) {
                        /* Not committed yet, a seeded entry, or read twice:
                         * kept for a commit; lost past the bound, a later
                         * commit then counts it unread (too high). */
                        (void)seqset_add(&l->early, seq);
                        seqset_trim(&l->early, LEDGER_EARLY_MAX);
                }
                if (a) {
                        l->recent[l->recent_next] = (struct disposal){.a = a, .seq = seq, .ms = clock_mono_ms()};
                        l->recent_next = (l->recent_next + 1) % LEDGER_RECENT_MAX;
                        if (l->recent_n < LEDGER_RECENT_MAX)
                                l->recent_n++;
                }
                moved(l);
        }
        pthread_mutex_unlock(&l->lock);
}

size_t ledger_replay(ledger *l, int64_t since_ms)
{
        size_t back = 0;
        pthread_mutex_lock(&l->lock);
        for (size_t k = 0; k < l->recent_n; k++) {
                size_t i = (l->recent_next + LEDGER_RECENT_MAX - 1 - k) % LEDGER_RECENT_MAX;
                struct disposal *dp = &l->recent[i];
                if (dp->ms < since_ms)
                        break;
                if (dp->seq > l->floor && seqset_add(&dp->a->written, dp->seq) == 1) {
                        l->written_total++;
                        back++;
                } else if (dp->seq > l->floor) {
                        /* Present as read behind an unread one: make it unread. */
                        size_t at = seqset_find(&dp->a->written, dp->seq);
                        if (at < dp->a->written.hi && dp->a->written.v[at] == (dp->seq | SEQ_DEAD)) {
                                dp->a->written.v[at] = dp->seq;
                                dp->a->written.live++;
                                l->written_total++;
                                back++;
                        }
                }
        }
        l->recent_n = 0; /* replayed once */
        moved(l);
        pthread_mutex_unlock(&l->lock);
        return back;
}

uint64_t ledger_epoch(ledger *l)
{
        pthread_mutex_lock(&l->lock);
        uint64_t e = l->epoch;
        pthread_mutex_unlock(&l->lock);
        return e;
}

void ledger_note_reader(ledger *l, uint64_t epoch, const ledger_reader_state *rs)
{
        pthread_mutex_lock(&l->lock);
        if (epoch == l->epoch) {
                if (rs->floor > l->floor)
                        l->floor = rs->floor;
                l->unread_hint = rs->pending + rs->ack_pending;
                prune(l, l->seeded && l->floor >= l->seed_last);
                moved(l);
        }
        pthread_mutex_unlock(&l->lock);
}

void ledger_seed(ledger *l, uint64_t last_seq, const ledger_reader_state *rs, size_t n, const char *const *owners,
                 const uint64_t *stored)
{
        pthread_mutex_lock(&l->lock);
        l->epoch++;
        /* Not a max: a re-created reader durable starts again at 0 and
         * reads everything INBOX holds once more. */
        l->floor = rs->floor;
        l->unread_hint = rs->pending + rs->ack_pending;
        prune(l, true);
        l->seed_last = last_seq;
        l->seeded = last_seq > rs->floor;
        for (size_t i = 0; l->seeded && i < n; i++) {
                account *a = account_of(l, owners[i], true);
                if (a)
                        a->seed = stored[i];
        }
        moved(l);
        pthread_mutex_unlock(&l->lock);
}

size_t ledger_count(ledger *l, const char *owner)
{
        pthread_mutex_lock(&l->lock);
        account *a = account_of(l, owner, false);
        size_t c = a ? count_of(l, a) : 0;
        pthread_mutex_unlock(&l->lock);
        return c;
}

uint64_t ledger_changes(ledger *l)
{
        pthread_mutex_lock(&l->lock);
        uint64_t c = l->changes;
        pthread_mutex_unlock(&l->lock);
        return c;
}

bool ledger_wait(ledger *l, uint64_t *seen, int64_t timeout_ms)
{
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&l->lock);
        while (l->changes == *seen)
                if (pthread_cond_timedwait(&l->moved, &l->lock, &until) == ETIMEDOUT)
                        break;
        bool changed = l->changes != *seen;
        *seen = l->changes;
        pthread_mutex_unlock(&l->lock);
        return changed;
}

typedef struct stats_walk {
        const ledger *l;
        ledger_stats *st;
} stats_walk;

static void stats_one(const char *key, void *value, void *arg)
{
        stats_walk *w = arg;
        const account *a = value;
        size_t c = count_of(w->l, a);
        if (c == 0)
                return;
        w->st->owners++;
        w->st->seeded += w->l->seeded ? a->seed : 0;
        w->st->span += seqset_span(&a->written);
        if (c > w->st->max) {
                w->st->max = c;
                size_t n = strlen(key);
                if (n >= sizeof w->st->max_owner)
                        n = sizeof w->st->max_owner - 1;
                memcpy(w->st->max_owner, key, n);
                w->st->max_owner[n] = '\0';
        }
}

void ledger_get_stats(ledger *l, ledger_stats *st)
{
        memset(st, 0, sizeof *st);
        pthread_mutex_lock(&l->lock);
        stats_walk w = {.l = l, .st = st};
        strmap_foreach(&l->owners, stats_one, &w);
        st->unread = l->written_total;
        st->in_flight = l->reserved_total;
        st->orphans = l->orphans_total;
        st->seed_last = l->seeded ? l->seed_last : 0;
        st->broker_unread = l->unread_hint;
        st->floor = l->floor;
        st->epoch = l->epoch;
        pthread_mutex_unlock(&l->lock);
}
