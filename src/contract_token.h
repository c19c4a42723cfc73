/* contract_token: the routing-token sanitiser of PROTOCOL §1.1 and the
 * UTF-8 helpers it needs (JavaScript's semantics are contract_js). Pure code: no I/O, no globals.
 * It must reproduce upstream's UTF-16 behaviour byte for byte; it never
 * guesses on invalid UTF-8 (that is an error, -EILSEQ). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest input any token function accepts, in bytes (-E2BIG above it). */
#define CONTRACT_TOKEN_MAX_BYTES 4096

/* True if [s, s+len) is well-formed UTF-8 (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF). */
bool contract_utf8_valid(const char *s, size_t len);

/* Decodes one code point at s[*i] (RFC 3629: shortest form only, no
 * surrogates, nothing above U+10FFFF, no truncated sequence). Advances *i.
 * Returns 0 or -EILSEQ. */
int contract_utf8_next(const unsigned char *s, size_t len, size_t *i, uint32_t *cp);

/* PROTOCOL §1.1 token(): trim, replace every UTF-16 code unit outside
 * [A-Za-z0-9_-] with '_' (so a code point >= U+10000 gives "__"), empty -> "_".
 * *out is owned by the caller (free()). Returns 0, -EILSEQ (invalid UTF-8),
 * -E2BIG (over CONTRACT_TOKEN_MAX_BYTES) or -ENOMEM. */
int contract_token(const char *s, size_t len, char **out);

/* routeToken(): "*" stays "*", anything else is token(). Same contract. */
int contract_route_token(const char *s, size_t len, char **out);

/* True if s (NUL-terminated) is already a fixed point of token(): non-empty
 * and only [A-Za-z0-9_-]. Real nkey ids always are. */
bool contract_is_token(const char *s);
