/* contract_js: JavaScript's semantics, as upstream's TypeScript gets them
 * for free and the contract depends on them: String.prototype.trim over
 * UTF-8 (PROTOCOL §1.1), Number(string) (§10.1, §10.2), a Number as JS
 * prints it and String(value) of JSON values (§8.4 texts). Pure. */
#pragma once

#include <jansson.h>
#include <stddef.h>

/* ECMAScript String.prototype.trim over UTF-8 (PROTOCOL §1.1 step 1 lists
 * the code points). On success *start and *tlen give the trimmed span inside
 * s. Returns 0, or -EILSEQ if s is not valid UTF-8. */
int contract_js_trim(const char *s, size_t len, size_t *start, size_t *tlen);

/* JavaScript Number(s) (PROTOCOL §10.1/§10.2: the shard flags and
 * COTAL_DELIVERY_BROKER_GONE_MS are read with it): JS-trimmed; "" -> 0;
 * decimal with optional sign, fraction and exponent; "Infinity"; 0x/0o/0b
 * integers without sign; anything else (including invalid UTF-8) -> NaN. */
double contract_js_to_number(const char *s);

/* JavaScript string conversion of a JSON value (PROTOCOL conventions):
 * NULL (missing) -> "undefined", null -> "null", numbers shortest
 * round-trip, true/false, strings raw, arrays joined by "," (null elements
 * empty), objects "[object Object]". *out owned by the caller. */
int contract_js_string(const json_t *v, char **out);

/* A number as JavaScript's String(n) renders it ("NaN", "2", "1.5",
 * "1e+21", "-Infinity"): used where PROTOCOL quotes numbers "in JS
 * rendering" (§10.2 shard error, §10.3 broker-gone message). 0 or
 * -ENOSPC/-ENOMEM. */
int contract_js_number(double d, char *buf, size_t size);
