/* fuzz: what every fuzz target shares. A target is one
 * LLVMFuzzerTestOneInput; it is linked with libFuzzer (-Dfuzz=enabled,
 * clang) or with replay.c, which feeds it a corpus (the `fuzz` suite).
 * Targets assert invariants with FUZZ_CHECK: a violation aborts, so both
 * drivers report it as a crash. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                                               \
        do {                                                                                                           \
                if (!(cond)) {                                                                                         \
                        fprintf(stderr, "%s:%d: invariant violated: %s\n", __FILE__, __LINE__, #cond);                 \
                        abort();                                                                                       \
                }                                                                                                      \
        } while (0)

/* A NUL-terminated copy of [data, data+size) (owned, free()); NULL only on
 * allocation failure, which aborts: a fuzzer has no use for it. */
static inline char *fuzz_strndup(const uint8_t *data, size_t size)
{
        char *s = malloc(size + 1);
        FUZZ_CHECK(s != NULL);
        if (size)
                memcpy(s, data, size);
        s[size] = '\0';
        return s;
}

/* Splits the input at the first '\n' into a head (NUL-terminated copy,
 * owned) and the rest (borrowed). Without a '\n' the head is everything
 * and the rest empty. */
static inline char *fuzz_split_line(const uint8_t *data, size_t size, const uint8_t **rest, size_t *rest_size)
{
        const uint8_t *nl = size ? memchr(data, '\n', size) : NULL;
        size_t head = nl ? (size_t)(nl - data) : size;
        *rest = nl ? nl + 1 : data + size;
        *rest_size = nl ? size - head - 1 : 0;
        return fuzz_strndup(data, head);
}
