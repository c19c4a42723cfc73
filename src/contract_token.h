/* contract_token: the routing-token sanitiser of PROTOCOL §1.1 and the
 * UTF-8 / JavaScript string helpers it needs. Pure code: no I/O, no globals.
 * It must reproduce upstream's UTF-16 behaviour byte for byte; it never
 * guesses on invalid UTF-8 (that is an error, -EILSEQ). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Longest input any token function accepts, in bytes (-E2BIG above it). */
#define CONTRACT_TOKEN_MAX_BYTES 4096

/* True if [s, s+len) is well-formed UTF-8 (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF). */
bool contract_utf8_valid(const char *s, size_t len);

/* ECMAScript String.prototype.trim over UTF-8 (PROTOCOL §1.1 step 1 lists
 * the code points). On success *start and *tlen give the trimmed span inside
 * s. Returns 0, or -EILSEQ if s is not valid UTF-8. */
int contract_js_trim(const char *s, size_t len, size_t *start, size_t *tlen);

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

/* JavaScript Number(s) (PROTOCOL §10.1/§10.2: the shard flags and
 * COTAL_DELIVERY_BROKER_GONE_MS are read with it): JS-trimmed; "" -> 0;
 * decimal with optional sign, fraction and exponent; "Infinity"; 0x/0o/0b
 * integers without sign; anything else (including invalid UTF-8) -> NaN. */
double contract_js_to_number(const char *s);
