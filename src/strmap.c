/* strmap: linear-probing hash map with backward-shift deletion. */
#include "strmap.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash(const char *s)
{
        uint64_t h = 1469598103934665603ULL; /* FNV-1a */
        for (; *s; s++) {
                h ^= (unsigned char)*s;
                h *= 1099511628211ULL;
        }
        return h;
}

void strmap_init(strmap *m)
{
        memset(m, 0, sizeof *m);
}

void strmap_fini(strmap *m)
{
        for (size_t i = 0; m->slots && i < m->cap; i++)
                free(m->slots[i].key);
        free(m->slots);
        memset(m, 0, sizeof *m);
}

static size_t find(const strmap *m, const char *key)
{
        size_t i = hash(key) & (m->cap - 1);
        while (m->slots[i].key && strcmp(m->slots[i].key, key) != 0)
                i = (i + 1) & (m->cap - 1);
        return i;
}

void *strmap_get(const strmap *m, const char *key)
{
        if (!m->cap)
                return NULL;
        size_t i = find(m, key);
        return m->slots[i].key ? m->slots[i].value : NULL;
}

static int grow(strmap *m)
{
        size_t ncap = m->cap ? m->cap * 2 : 16;
        strmap_slot *ns = calloc(ncap, sizeof *ns);
        if (!ns)
                return -ENOMEM;
        strmap old = *m;
        m->slots = ns;
        m->cap = ncap;
        for (size_t i = 0; i < old.cap; i++)
                if (old.slots[i].key)
                        m->slots[find(m, old.slots[i].key)] = old.slots[i];
        free(old.slots);
        return 0;
}

int strmap_put(strmap *m, const char *key, void *value)
{
        if ((m->count + 1) * 4 > m->cap * 3 && grow(m) < 0)
                return -ENOMEM;
        size_t i = find(m, key);
        if (!m->slots[i].key) {
                char *k = strdup(key);
                if (!k)
                        return -ENOMEM;
                m->slots[i].key = k;
                m->count++;
        }
        m->slots[i].value = value;
        return 0;
}

void *strmap_remove(strmap *m, const char *key)
{
        if (!m->cap)
                return NULL;
        size_t i = find(m, key);
        if (!m->slots[i].key)
                return NULL;
        void *v = m->slots[i].value;
        free(m->slots[i].key);
        m->slots[i].key = NULL;
        m->count--;
        /* Backward-shift the cluster behind the hole. */
        for (size_t j = (i + 1) & (m->cap - 1); m->slots[j].key; j = (j + 1) & (m->cap - 1)) {
                size_t home = hash(m->slots[j].key) & (m->cap - 1);
                bool movable = (j > i) ? (home <= i || home > j) : (home <= i && home > j);
                if (movable) {
                        m->slots[i] = m->slots[j];
                        m->slots[j].key = NULL;
                        i = j;
                }
        }
        return v;
}

void strmap_foreach(const strmap *m, void (*fn)(const char *key, void *value, void *arg), void *arg)
{
        for (size_t i = 0; i < m->cap; i++)
                if (m->slots[i].key)
                        fn(m->slots[i].key, m->slots[i].value, arg);
}
