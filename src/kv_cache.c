/* kv_cache: watch-fed KV state with a per-batch fence (PROTOCOL §6.4). */
#include "kv_cache.h"

#include "broker.h"
#include "clock.h"
#include "contract_channel.h"
#include "contract_token.h"
#include "kv.h"
#include "kv_watch.h"
#include "strmap.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* While a fence waits, how long one watch read blocks, and how often the
 * watch consumer is asked whether it has anything left to send (the
 * stream's last message may be gone: a purge or a TTL expiry leaves
 * last_seq pointing at nothing the watch could deliver). */
#define FENCE_STEP_MS 20
#define FENCE_PROBE_EVERY_MS 200
/* Most buffered updates taken after the target is reached (bounded, so a
 * storm of writes cannot hold a batch back). */
#define KV_CACHE_DRAIN_MAX 4096

typedef enum { B_ACL, B_MEM, B_CHAN, B_COUNT } bucket_kind;

static const char *const kind_tag[B_COUNT] = {"acl", "mem", "chan"};

/* One watched bucket. */
typedef struct watched {
        bool on;
        kv_watch w;
        unsigned restarts; /* w.restarts as of the last applied entry */
        uint64_t applied;  /* highest stream sequence applied */
        /* Every key's latest applied revision (markers included) and the
         * stream's first sequence when they were last checked: a key whose
         * revision falls below it lost its latest message without a KV
         * operation (a stream purge), i.e. it is absent now. */
        strmap revs;
        uint64_t first_seq;
} watched;

/* ACL bucket value: known (decoded) or unknown with the reason. */
typedef struct acl_rec {
        bool known;
        contract_acl acl;
        char why[200];
} acl_rec;

/* The two indexes of member records: by the key's channel part (the
 * fan-out's routing, §6.2) and by its owner part (listMemberships, §8.3). */
typedef enum { BY_CHAN, BY_OWNER, BY_COUNT } member_index;

/* A readable member record and where it sits in each index's list. */
typedef struct mem_rec {
        contract_member m;
        char *part[BY_COUNT]; /* the key's channel part, its owner part */
        size_t pos[BY_COUNT]; /* index in that part's list */
} mem_rec;

typedef struct rec_list {
        mem_rec **v;
        size_t n, cap;
} rec_list;

struct kv_cache {
        watched b[B_COUNT];
        jsapi_batch api;     /* the fence's STREAM.INFO requests, sent together */
        strmap acls;         /* token(owner) -> acl_rec */
        strmap members;      /* full key -> mem_rec (owning) */
        strmap by[BY_COUNT]; /* key's channel / owner part -> rec_list */
        strmap classes;      /* channel key -> contract_class + 1 (as a pointer) */
        kv_cache_stats stats;
        char error[600];
};

/* ---- applying watch entries --------------------------------------------- */

static void acl_free(acl_rec *a)
{
        if (!a)
                return;
        contract_acl_fini(&a->acl);
        free(a);
}

static void acl_free_cb(const char *key, void *value, void *arg)
{
        (void)key;
        (void)arg;
        acl_free(value);
}

static void apply_acl(kv_cache *c, const kv_watch_entry *e)
{
        acl_free(strmap_remove(&c->acls, e->key));
        if (e->op != KV_OP_PUT)
                return; /* DEL/PURGE: absent (§4.2) */
        acl_rec *a = calloc(1, sizeof *a);
        if (!a)
                return;
        /* §4.3: unreadable means unknown owner, like absent, but says so. */
        a->known = contract_acl_read(e->value, e->len, &a->acl, a->why, sizeof a->why);
        if (strmap_put(&c->acls, e->key, a) < 0)
                acl_free(a);
}

static void index_unlink(kv_cache *c, member_index x, mem_rec *r)
{
        rec_list *l = r->part[x] ? strmap_get(&c->by[x], r->part[x]) : NULL;
        if (!l || r->pos[x] >= l->n || l->v[r->pos[x]] != r)
                return;
        l->v[r->pos[x]] = l->v[--l->n];
        l->v[r->pos[x]]->pos[x] = r->pos[x];
        if (l->n == 0) {
                strmap_remove(&c->by[x], r->part[x]);
                free(l->v);
                free(l);
        }
}

static void member_unlink(kv_cache *c, mem_rec *r)
{
        for (int x = 0; x < BY_COUNT; x++) {
                index_unlink(c, (member_index)x, r);
                free(r->part[x]);
        }
        contract_member_fini(&r->m);
        free(r);
}

static int index_link(kv_cache *c, member_index x, mem_rec *r)
{
        rec_list *l = strmap_get(&c->by[x], r->part[x]);
        if (!l) {
                l = calloc(1, sizeof *l);
                if (!l || strmap_put(&c->by[x], r->part[x], l) < 0) {
                        free(l);
                        return -ENOMEM;
                }
        }
        if (l->n == l->cap) {
                size_t ncap = l->cap ? l->cap * 2 : 8;
                mem_rec **nv = realloc(l->v, ncap * sizeof *nv);
                if (!nv)
                        return -ENOMEM;
                l->v = nv;
                l->cap = ncap;
        }
        r->pos[x] = l->n;
        l->v[l->n++] = r;
        return 0;
}

static void apply_member(kv_cache *c, const kv_watch_entry *e)
{
        mem_rec *old = strmap_remove(&c->members, e->key);
        if (old)
                member_unlink(c, old);
        const char *ch, *ow;
        size_t cl, ol;
        if (e->op != KV_OP_PUT || !contract_member_key_parse(e->key, &ch, &cl, &ow, &ol))
                return;
        mem_rec *r = calloc(1, sizeof *r);
        if (!r)
                return;
        /* §4.4 [hardening]: an unreadable record is absent. */
        if (contract_member_decode(e->value ? e->value : "", e->len, &r->m, NULL) != REC_OK) {
                free(r);
                return;
        }
        r->part[BY_CHAN] = strndup(ch, cl);
        r->part[BY_OWNER] = strndup(ow, ol);
        r->pos[BY_CHAN] = r->pos[BY_OWNER] = SIZE_MAX;
        if (!r->part[BY_CHAN] || !r->part[BY_OWNER] || index_link(c, BY_CHAN, r) < 0 ||
            index_link(c, BY_OWNER, r) < 0 || strmap_put(&c->members, e->key, r) < 0)
                member_unlink(c, r);
}

static void apply_class(kv_cache *c, const kv_watch_entry *e)
{
        strmap_remove(&c->classes, e->key);
        if (e->op != KV_OP_PUT)
                return;
        contract_class k = contract_class_of(e->value, e->len);
        (void)strmap_put(&c->classes, e->key, (void *)(uintptr_t)(k + 1));
}

/* Drops everything the cache holds for one bucket. */
static void forget(kv_cache *c, bucket_kind k)
{
        switch (k) {
        case B_ACL:
                strmap_foreach(&c->acls, acl_free_cb, NULL);
                strmap_fini(&c->acls);
                break;
        case B_MEM: {
                /* Unlinking edits the maps being walked: collect first. */
                size_t n = c->members.count, i = 0;
                mem_rec **all = calloc(n ? n : 1, sizeof *all);
                for (size_t s = 0; all && s < c->members.cap; s++)
                        if (c->members.slots[s].key)
                                all[i++] = c->members.slots[s].value;
                strmap_fini(&c->members);
                for (size_t j = 0; j < i; j++)
                        member_unlink(c, all[j]);
                free(all);
                break;
        }
        case B_CHAN: strmap_fini(&c->classes); break;
        default: break;
        }
        strmap_fini(&c->b[k].revs);
        c->b[k].applied = 0;
        c->b[k].first_seq = 0;
}

static void apply_entry(kv_cache *c, bucket_kind k, const kv_watch_entry *e)
{
        if (k == B_ACL)
                apply_acl(c, e);
        else if (k == B_MEM)
                apply_member(c, e);
        else
                apply_class(c, e);
}

/* Reads one watch entry (waiting up to timeout_ms) and applies it. A watch
 * that re-created its consumer replays every key's latest entry, so what
 * the cache held for that bucket is forgotten first (a key deleted
 * meanwhile would otherwise survive). Returns kv_watch_next's result. */
static int read_one(kv_cache *c, bucket_kind k, int64_t timeout_ms)
{
        watched *b = &c->b[k];
        kv_watch_entry e;
        int r = kv_watch_next(&b->w, timeout_ms, &e);
        if (b->w.restarts != b->restarts) {
                forget(c, k);
                b->restarts = b->w.restarts;
                c->stats.restarts++;
        }
        if (r != 0)
                return r;
        apply_entry(c, k, &e);
        if (e.revision > b->applied)
                b->applied = e.revision;
        if (strmap_put(&b->revs, e.key, (void *)(uintptr_t)e.revision) < 0)
                b->first_seq = UINT64_MAX; /* cannot track: re-check later */
        c->stats.applied++;
        kv_watch_entry_fini(&e);
        return 0;
}

/* ---- the fence ---------------------------------------------------------- */

typedef enum { WATCH_BEHIND, WATCH_DRAINED, WATCH_GONE } watch_state;

/* Asks the server about the watch consumer: DRAINED if it has delivered
 * everything the stream holds for it and this side has read all of it,
 * GONE if it no longer exists (an operator deleted it: re-create it now
 * rather than after three missed heartbeats). */
static watch_state probe_watch(kv_cache *c, watched *b)
{
        json_t *reply = NULL;
        jsapi_error jerr;
        c->stats.probes++;
        int r = jsapi_consumer_info(b->w.nc, b->w.stream, b->w.name, 0, &reply, &jerr);
        if (r < 0)
                return r == -EREMOTEIO && jerr.err_code == JS_ERR_CONSUMER_NOT_FOUND ? WATCH_GONE : WATCH_BEHIND;
        uint64_t pending = 1, delivered = 0;
        (void)json_path_u64(reply, "num_pending", &pending);
        (void)json_path_u64(reply, "delivered.consumer_seq", &delivered);
        json_decref(reply);
        return pending == 0 && delivered + 1 == b->w.next_cseq ? WATCH_DRAINED : WATCH_BEHIND;
}

static int restart_watch(kv_cache *c, watched *b)
{
        int r = kv_watch_restart(&b->w);
        if (r < 0)
                snprintf(c->error, sizeof c->error, "%s", b->w.last_error);
        return r;
}

typedef struct stale {
        uint64_t first_seq;
        char **keys;
        size_t n, cap;
        bool incomplete; /* out of memory: check again next time */
} stale;

static void find_stale(const char *key, void *value, void *arg)
{
        stale *st = arg;
        if ((uint64_t)(uintptr_t)value >= st->first_seq)
                return;
        if (st->n == st->cap) {
                size_t ncap = st->cap ? st->cap * 2 : 16;
                char **nk = realloc(st->keys, ncap * sizeof *nk);
                if (!nk) {
                        st->incomplete = true;
                        return;
                }
                st->keys = nk;
                st->cap = ncap;
        }
        st->keys[st->n++] = (char *)key;
}

/* Keys whose latest message the stream no longer holds are absent. */
static void drop_vanished(kv_cache *c, bucket_kind k, uint64_t first_seq)
{
        watched *b = &c->b[k];
        if (first_seq == b->first_seq)
                return;
        stale st = {.first_seq = first_seq};
        strmap_foreach(&b->revs, find_stale, &st);
        for (size_t i = 0; i < st.n; i++) {
                kv_watch_entry gone = {.key = st.keys[i], .op = KV_OP_PURGE};
                apply_entry(c, k, &gone);
        }
        for (size_t i = 0; i < st.n; i++)
                strmap_remove(&b->revs, st.keys[i]); /* frees the key */
        free(st.keys);
        if (!st.incomplete)
                b->first_seq = first_seq;
}

/* Applies watch updates until bucket k's cache has seen the stream's last
 * sequence target (first: its first sequence). */
static int fence_one(kv_cache *c, bucket_kind k, uint64_t first, uint64_t target, int64_t deadline)
{
        watched *b = &c->b[k];
        int r;
        int64_t probe_at = clock_mono_ms() + FENCE_PROBE_EVERY_MS;
        bool resynced = false, settled = false;
        for (;;) {
                while (!settled && b->applied < target) {
                        int64_t now = clock_mono_ms();
                        if (now >= deadline) {
                                snprintf(c->error, sizeof c->error,
                                         "watch %s applied through seq %" PRIu64 ", stream %s is at %" PRIu64,
                                         b->w.name, b->applied, b->w.stream, target);
                                return -ETIMEDOUT;
                        }
                        if (now >= probe_at) {
                                watch_state ws = probe_watch(c, b);
                                if (ws == WATCH_DRAINED && resynced) {
                                        settled = true;
                                        break;
                                }
                                if (ws == WATCH_DRAINED) {
                                        /* The stream's newest message is gone,
                                         * which no KV operation does (a stream
                                         * purge or a message delete): what else
                                         * vanished sent no event either, so
                                         * start over from a replay. */
                                        resynced = true;
                                        c->stats.resyncs++;
                                }
                                if (ws != WATCH_BEHIND && (r = restart_watch(c, b)) < 0)
                                        return r;
                                probe_at = now + FENCE_PROBE_EVERY_MS;
                        }
                        int64_t step = deadline - now < FENCE_STEP_MS ? deadline - now : FENCE_STEP_MS;
                        r = read_one(c, k, step);
                        if (r < 0 && r != -ETIMEDOUT && r != -EAGAIN) {
                                snprintf(c->error, sizeof c->error, "%s", b->w.last_error);
                                return r;
                        }
                }
                /* Take what else is already buffered, without waiting. */
                unsigned restarts = b->restarts;
                for (int i = 0; i < KV_CACHE_DRAIN_MAX; i++) {
                        r = read_one(c, k, 0);
                        if (r < 0 && r != -EAGAIN)
                                break;
                }
                if (b->restarts == restarts)
                        break;
                /* The watch was re-created meanwhile (a gap, a broker
                 * restart): the cache was emptied for its replay, which
                 * must reach the target before anything is looked up. */
                settled = false;
        }
        drop_vanished(c, k, first);
        return 0;
}

int kv_cache_fence(kv_cache *c, int64_t timeout_ms)
{
        int64_t deadline = clock_mono_ms() + timeout_ms;
        const char *subjects[B_COUNT];
        bucket_kind kinds[B_COUNT];
        char bufs[B_COUNT][300];
        json_t *replies[B_COUNT];
        jsapi_error errs[B_COUNT];
        size_t n = 0;
        c->stats.fences++;
        c->error[0] = '\0';
        for (int k = 0; k < B_COUNT; k++) {
                if (!c->b[k].on)
                        continue;
                snprintf(bufs[n], sizeof bufs[n], "$JS.API.STREAM.INFO.%s", c->b[k].w.stream);
                subjects[n] = bufs[n];
                kinds[n++] = (bucket_kind)k;
        }
        /* Every bucket's bounds in one round trip, read after the fetch. */
        int r = jsapi_batch_request(&c->api, subjects, n, timeout_ms, replies, errs);
        for (size_t i = 0; i < n; i++) {
                uint64_t first = 0, last = 0;
                if (r == 0) {
                        (void)json_path_u64(replies[i], "state.first_seq", &first);
                        (void)json_path_u64(replies[i], "state.last_seq", &last);
                        r = fence_one(c, kinds[i], first, last, deadline);
                } else if (!c->error[0] && !replies[i]) {
                        snprintf(c->error, sizeof c->error, "stream info %s: %s", c->b[kinds[i]].w.stream,
                                 errs[i].description);
                }
                json_decref(replies[i]);
        }
        return r;
}

const char *kv_cache_error(const kv_cache *c)
{
        return c->error;
}

/* ---- lookups ------------------------------------------------------------ */

int kv_cache_acl(kv_cache *c, const char *owner, const contract_acl **acl, const char **why)
{
        char *key = NULL;
        *acl = NULL;
        if (contract_token(owner, strlen(owner), &key) < 0) {
                *why = "owner is not valid UTF-8";
                return -ENOENT;
        }
        acl_rec *a = strmap_get(&c->acls, key);
        free(key);
        if (!a) {
                *why = "no ACL record";
                return -ENOENT;
        }
        if (!a->known) {
                *why = a->why;
                return -ENOENT;
        }
        *acl = &a->acl;
        *why = NULL;
        return 0;
}

const contract_member *kv_cache_member(kv_cache *c, const char *channel, const char *owner)
{
        char *tok = NULL, *key = NULL;
        if (contract_token(owner, strlen(owner), &tok) < 0)
                return NULL;
        int r = contract_member_key(channel, tok, &key);
        free(tok);
        mem_rec *m = r == 0 ? strmap_get(&c->members, key) : NULL;
        free(key);
        return m ? &m->m : NULL;
}

static int each_in(kv_cache *c, member_index x, const char *part, kv_cache_member_fn fn, void *arg)
{
        rec_list *l = strmap_get(&c->by[x], part);
        for (size_t i = 0; l && i < l->n; i++) {
                int r = fn(&l->v[i]->m, l->v[i]->part[BY_CHAN], arg);
                if (r < 0)
                        return r;
        }
        return 0;
}

int kv_cache_members_each(kv_cache *c, const char *channel, kv_cache_member_fn fn, void *arg)
{
        return each_in(c, BY_CHAN, channel, fn, arg);
}

int kv_cache_members_of(kv_cache *c, const char *owner, kv_cache_member_fn fn, void *arg)
{
        char *tok = NULL;
        if (contract_token(owner, strlen(owner), &tok) < 0)
                return 0; /* no key can name it */
        int r = each_in(c, BY_OWNER, tok, fn, arg);
        free(tok);
        return r;
}

static contract_class class_at(kv_cache *c, const char *key)
{
        uintptr_t v = (uintptr_t)strmap_get(&c->classes, key);
        return v ? (contract_class)(v - 1) : CLASS_UNSET;
}

bool kv_cache_channel_is_durable(kv_cache *c, const char *channel)
{
        /* §4.6 [hardening]: a non-concrete channel has no config of its
         * own (an invalid key is never stored, so it reads as absent). */
        contract_class cfg = contract_channel_is_concrete(channel) ? class_at(c, channel) : CLASS_UNSET;
        return contract_class_is_durable(cfg, class_at(c, CONTRACT_DEFAULTS_KEY));
}

void kv_cache_get_stats(const kv_cache *c, kv_cache_stats *out)
{
        *out = c->stats;
}

/* ---- lifecycle ---------------------------------------------------------- */

static int watch_bucket(kv_cache *c, bucket_kind k, natsConnection *nc, const char *bucket, const char *inbox_prefix,
                        const char *name)
{
        watched *b = &c->b[k];
        char cname[256];
        snprintf(cname, sizeof cname, "%s_%s", name, kind_tag[k]);
        b->on = true;
        int r = kv_watch_start(&b->w, nc, bucket, ">", cname, inbox_prefix);
        if (r < 0)
                snprintf(c->error, sizeof c->error, "%s", b->w.last_error);
        b->restarts = b->w.restarts;
        return r;
}

int kv_cache_open(kv_cache **out, natsConnection *nc, const contract_names *n, const char *inbox_prefix,
                  const char *name, unsigned which, char *err, size_t err_size)
{
        kv_cache *c = calloc(1, sizeof *c);
        *out = NULL;
        if (!c)
                return -ENOMEM;
        strmap_init(&c->acls);
        strmap_init(&c->members);
        strmap_init(&c->by[BY_CHAN]);
        strmap_init(&c->by[BY_OWNER]);
        strmap_init(&c->classes);
        int r = jsapi_batch_init(&c->api, nc, inbox_prefix);
        if (r < 0)
                snprintf(c->error, sizeof c->error, "reply subscription: %s", strerror(-r));
        if (r == 0 && (which & KV_CACHE_ACL))
                r = watch_bucket(c, B_ACL, nc, n->acl_bucket, inbox_prefix, name);
        if (r == 0 && (which & KV_CACHE_MEMBERS))
                r = watch_bucket(c, B_MEM, nc, n->members_bucket, inbox_prefix, name);
        if (r == 0 && (which & KV_CACHE_CHANNELS))
                r = watch_bucket(c, B_CHAN, nc, n->channels_bucket, inbox_prefix, name);
        if (r < 0) {
                snprintf(err, err_size, "%s", c->error);
                kv_cache_close(c);
                return r;
        }
        *out = c;
        return 0;
}

void kv_cache_close(kv_cache *c)
{
        if (!c)
                return;
        for (int k = 0; k < B_COUNT; k++) {
                if (!c->b[k].on)
                        continue;
                forget(c, (bucket_kind)k);
                kv_watch_stop(&c->b[k].w);
        }
        jsapi_batch_fini(&c->api);
        strmap_fini(&c->acls);
        strmap_fini(&c->members);
        strmap_fini(&c->by[BY_CHAN]);
        strmap_fini(&c->by[BY_OWNER]);
        strmap_fini(&c->classes);
        free(c);
}
