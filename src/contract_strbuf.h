/* contract_strbuf: string building for the contract modules (private to
 * the contract library): printf into a fresh allocation, and a growing
 * buffer that turns the first allocation failure into one error at the
 * end. No I/O. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* printf into a fresh allocation (owned); NULL on failure. */
__attribute__((format(printf, 1, 2))) char *contract_printf(const char *fmt, ...);

/* A growing string; after the first allocation failure every append is a
 * no-op and contract_sb_finish() reports it, so callers check once.
 * Zero-initialise. */
typedef struct contract_strbuf {
        char *p;
        size_t len;
        size_t cap;
        bool failed;
} contract_strbuf;

void contract_sb_add(contract_strbuf *b, const char *s, size_t n);
void contract_sb_str(contract_strbuf *b, const char *s);
/* Hands the string to *out (owned by the caller). 0 or -ENOMEM. */
int contract_sb_finish(contract_strbuf *b, char **out);
