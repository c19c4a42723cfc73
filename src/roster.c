/* roster: presence watch thread and name resolution (§4.7, §6.3). */
#include "roster.h"

#include "kv_watch.h"
#include "log.h"
#include "strmap.h"

#include <errno.h>
#include <jansson.h>
#include <locale.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <wchar.h>
#include <wctype.h>

#define ROSTER_POLL_MS 500

typedef struct roster_entry {
        char *name_lower; /* NULL when card.name is not a string (skipped, §4.7) */
        bool offline;
} roster_entry;

/* How many entries carry one lowercased name, and whose key when just
 * one does: a mention resolves in one lookup instead of a scan of the
 * whole roster (issue 14 item 4: 160,000 mentions against 10,000 entries
 * took 14.9 s a post). */
typedef struct name_slot {
        size_t count;
        char *only; /* owned: the key of the one entry with this name (count == 1) */
} name_slot;

struct roster {
        pthread_mutex_t mu;
        pthread_cond_t cond;
        strmap entries; /* presence key (= card.id) -> roster_entry */
        strmap by_name; /* name_lower -> name_slot */
        bool replayed;  /* the first replay is in */
        kv_watch watch; /* watch thread only */
        pthread_t thread;
        locale_t utf8; /* for towlower beyond ASCII */
};

/* §6.3: JavaScript toLowerCase, ASCII exactly and other code points by the
 * C library's simple case mapping (the SHOULD part). Returns owned. */
static char *lowercase(const char *s, locale_t loc)
{
        size_t n = strlen(s);
        char *out = malloc(n * 2 + 1); /* a lowered code point grows by at most 1 byte */
        if (!out)
                return NULL;
        size_t o = 0;
        mbstate_t in = {0}, outst = {0};
        for (size_t i = 0; i < n;) {
                unsigned char c = (unsigned char)s[i];
                if (c < 0x80 || !loc) {
                        out[o++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
                        i++;
                        continue;
                }
                wchar_t wc;
                locale_t old = uselocale(loc);
                size_t k = mbrtowc(&wc, s + i, n - i, &in);
                if (k == (size_t)-1 || k == (size_t)-2 || k == 0) {
                        uselocale(old);
                        out[o++] = (char)c; /* cannot decode: keep the byte */
                        i++;
                        memset(&in, 0, sizeof in);
                        continue;
                }
                char buf[8];
                size_t w = wcrtomb(buf, towlower(wc), &outst);
                uselocale(old);
                if (w == (size_t)-1 || w > k + 1) {
                        memcpy(out + o, s + i, k);
                        o += k;
                } else {
                        memcpy(out + o, buf, w);
                        o += w;
                }
                i += k;
        }
        out[o] = '\0';
        return out;
}

static void free_entry(const char *key, void *value, void *arg)
{
        (void)key;
        (void)arg;
        roster_entry *e = value;
        if (e) {
                free(e->name_lower);
                free(e);
        }
}

static void free_slot(const char *key, void *value, void *arg)
{
        (void)key;
        (void)arg;
        name_slot *s = value;
        if (s) {
                free(s->only);
                free(s);
        }
}

static void clear(struct roster *r)
{
        strmap_foreach(&r->entries, free_entry, NULL);
        strmap_fini(&r->entries);
        strmap_init(&r->entries);
        strmap_foreach(&r->by_name, free_slot, NULL);
        strmap_fini(&r->by_name);
        strmap_init(&r->by_name);
}

typedef struct holder_walk {
        const char *name;
        const char *key;
} holder_walk;

static void find_holder(const char *key, void *value, void *arg)
{
        holder_walk *w = arg;
        roster_entry *e = value;
        if (e->name_lower && strcmp(e->name_lower, w->name) == 0)
                w->key = key;
}

/* key's entry now carries name (mutex held; name NULL: none). */
static void index_add(struct roster *r, const char *name, const char *key)
{
        if (!name)
                return;
        name_slot *s = strmap_get(&r->by_name, name);
        if (!s) {
                s = calloc(1, sizeof *s);
                if (!s || strmap_put(&r->by_name, name, s) < 0) {
                        free(s);
                        return; /* out of memory: the name does not resolve */
                }
        }
        s->count++;
        free(s->only);
        s->only = s->count == 1 ? strdup(key) : NULL;
}

/* key's entry no longer carries name (mutex held). When one holder is
 * left, it is found by a scan: names shared by several entries are rare. */
static void index_remove(struct roster *r, const char *name)
{
        name_slot *s = name ? strmap_get(&r->by_name, name) : NULL;
        if (!s)
                return;
        if (--s->count == 0) {
                free_slot(NULL, strmap_remove(&r->by_name, name), NULL);
                return;
        }
        free(s->only);
        s->only = NULL;
        if (s->count == 1) {
                holder_walk w = {.name = name};
                strmap_foreach(&r->entries, find_holder, &w);
                s->only = w.key ? strdup(w.key) : NULL;
        }
}

/* Applies one watch event (mutex held). */
static void apply(struct roster *r, const kv_watch_entry *e)
{
        roster_entry *cur = strmap_get(&r->entries, e->key);
        if (e->op != KV_OP_PUT) {
                if (cur) /* §4.7: DEL/PURGE marks offline, keeps the entry */
                        cur->offline = true;
                return;
        }
        json_t *v = e->value ? json_loadb(e->value, e->len, 0, NULL) : NULL;
        json_t *card = json_object_get(v, "card");
        const char *id = json_string_value(json_object_get(card, "id"));
        const char *name = json_string_value(json_object_get(card, "name"));
        /* §4.7 [FIX] F2: a card.id that is not the key is ignored. A value
         * that is not JSON is stored upstream but can never resolve (no
         * card.name), so it is not stored here either. */
        if (!id || strcmp(id, e->key) != 0) {
                json_decref(v);
                return;
        }
        roster_entry *ne = calloc(1, sizeof *ne);
        if (ne && name)
                ne->name_lower = lowercase(name, r->utf8);
        json_decref(v);
        if (!ne)
                return;
        if (strmap_put(&r->entries, e->key, ne) < 0) {
                free_entry(NULL, ne, NULL);
                return;
        }
        if (cur)
                index_remove(r, cur->name_lower); /* after the put: the scan sees the new entry */
        free_entry(NULL, cur, NULL);
        index_add(r, ne->name_lower, e->key);
}

static void *watch_thread(void *arg)
{
        daemon_ctx *d = arg;
        struct roster *r = d->roster;
        unsigned seen_restarts = r->watch.restarts;
        bool first = true;

        while (!atomic_load(&d->stopping)) {
                kv_watch_entry e;
                int rc = kv_watch_next(&r->watch, ROSTER_POLL_MS, &e);
                pthread_mutex_lock(&r->mu);
                if (r->watch.restarts != seen_restarts) {
                        /* Re-established from scratch: empty and refill (§4.7). */
                        seen_restarts = r->watch.restarts;
                        clear(r);
                }
                if (rc == 0)
                        apply(r, &e);
                if (rc == -EAGAIN && first) {
                        first = false;
                        r->replayed = true;
                        pthread_cond_broadcast(&r->cond);
                }
                pthread_mutex_unlock(&r->mu);
                if (rc == 0)
                        kv_watch_entry_fini(&e);
                else if (rc != -ETIMEDOUT && rc != -EAGAIN) {
                        log_warning("Failed to watch presence bucket %s: %s", d->names.presence_bucket,
                                    r->watch.last_error);
                        daemon_backoff(d, 1000);
                }
        }
        return NULL;
}

int roster_start(daemon_ctx *d, int64_t timeout_ms)
{
        struct roster *r = calloc(1, sizeof *r);
        if (!r)
                return -ENOMEM;
        pthread_mutex_init(&r->mu, NULL);
        pthread_cond_init(&r->cond, NULL);
        strmap_init(&r->entries);
        strmap_init(&r->by_name);
        r->utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
        char name[128];
        snprintf(name, sizeof name, "dpres_%.100s", d->id);
        int rc = kv_watch_start(&r->watch, d->nc, d->names.presence_bucket, ">", name, d->inbox_prefix);
        if (rc < 0) {
                log_error("Failed to watch presence bucket %s: %s", d->names.presence_bucket, r->watch.last_error);
                kv_watch_stop(&r->watch);
                free(r);
                return rc;
        }
        d->roster = r;
        rc = pthread_create(&r->thread, NULL, watch_thread, d);
        if (rc != 0) {
                d->roster = NULL;
                kv_watch_stop(&r->watch);
                free(r);
                return -rc;
        }
        /* Wait (bounded) for the replay so the first mentions resolve. */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (timeout_ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000;
        }
        pthread_mutex_lock(&r->mu);
        while (!r->replayed)
                if (pthread_cond_timedwait(&r->cond, &r->mu, &until) != 0)
                        break;
        bool ok = r->replayed;
        size_t n = r->entries.count;
        pthread_mutex_unlock(&r->mu);
        if (ok)
                log_info("Presence roster of %s loaded: %zu entries", d->names.presence_bucket, n);
        else
                log_warning("Presence roster of %s still loading after %lld ms; continuing", d->names.presence_bucket,
                            (long long)timeout_ms);
        return 0;
}

void roster_stop(daemon_ctx *d)
{
        struct roster *r = d->roster;
        if (!r)
                return;
        daemon_join(d, r->thread); /* d->stopping is set by the caller */
        kv_watch_stop(&r->watch);
        clear(r);
        strmap_fini(&r->entries);
        strmap_fini(&r->by_name);
        if (r->utf8)
                freelocale(r->utf8);
        pthread_mutex_destroy(&r->mu);
        pthread_cond_destroy(&r->cond);
        free(r);
        d->roster = NULL;
}

char *roster_resolve(daemon_ctx *d, const char *name)
{
        struct roster *r = d->roster;
        if (!r)
                return NULL;
        char *want = lowercase(name, r->utf8);
        if (!want)
                return NULL;
        char *id = NULL;
        pthread_mutex_lock(&r->mu);
        name_slot *s = strmap_get(&r->by_name, want);
        if (s && s->count == 1 && s->only)
                id = strdup(s->only);
        pthread_mutex_unlock(&r->mu);
        free(want);
        return id;
}
