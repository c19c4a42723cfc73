/* split: JavaScript's s.split(".") for the fuzz targets' reference
 * implementations: "" is one empty part, "a..b" three. Parts point into s
 * (borrowed); the array is owned (free()). */
#pragma once

#include "fuzz.h"

typedef struct part {
        const char *p;
        size_t len;
} part;

static inline part *split_dots(const char *s, size_t *n)
{
        size_t count = 1;
        for (const char *q = s; *q; q++)
                count += *q == '.';
        part *parts = malloc(count * sizeof *parts);
        FUZZ_CHECK(parts != NULL);
        size_t i = 0;
        const char *start = s;
        for (const char *q = s;; q++) {
                if (*q == '.' || *q == '\0') {
                        parts[i].p = start;
                        parts[i].len = (size_t)(q - start);
                        i++;
                        if (*q == '\0')
                                break;
                        start = q + 1;
                }
        }
        *n = count;
        return parts;
}

static inline int part_is(part p, const char *lit)
{
        return p.len == strlen(lit) && memcmp(p.p, lit, p.len) == 0;
}

static inline int part_eq(part a, part b)
{
        return a.len == b.len && memcmp(a.p, b.p, a.len) == 0;
}
