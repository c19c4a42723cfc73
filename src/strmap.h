/* strmap: a small open-addressing hash map from strings to pointers. Keys
 * are copied; values are borrowed (the caller frees them, e.g. in a
 * strmap_foreach before strmap_fini). Not thread-safe. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

typedef struct strmap_slot {
        char *key; /* owned; NULL = empty */
        void *value;
} strmap_slot;

typedef struct strmap {
        strmap_slot *slots;
        size_t cap, count;
} strmap;

void strmap_init(strmap *m);
void strmap_fini(strmap *m); /* frees keys and slots, not values */

void *strmap_get(const strmap *m, const char *key);
/* Inserts or replaces; returns 0 or -ENOMEM. */
int strmap_put(strmap *m, const char *key, void *value);
/* Removes key; returns its value or NULL. */
void *strmap_remove(strmap *m, const char *key);
/* Calls fn for each entry (no insertions or removals during the walk). */
void strmap_foreach(const strmap *m, void (*fn)(const char *key, void *value, void *arg), void *arg);
