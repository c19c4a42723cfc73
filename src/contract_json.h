/* contract_json: jansson helpers the contract's codecs share (private to
 * the contract library). */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Parses any JSON value (no NUL, valid UTF-8, nothing trailing). With
 * int_fallback, an integer too big for jansson is retried as a real and
 * *as_real says so (PROTOCOL §5.1). NULL with *jerr filled on failure. */
json_t *contract_json_load(const char *data, size_t len, bool int_fallback, bool *as_real, json_error_t *jerr);
/* "object", "array", "string", ... for error texts. */
const char *contract_json_type_name(const json_t *v);
/* obj[key] = v (stolen); -ENOMEM if v is NULL or the set fails. */
int contract_json_set_new(json_t *obj, const char *key, json_t *v);
/* obj[key] = s, which must be valid UTF-8 (-EINVAL otherwise). */
int contract_json_set_str(json_t *obj, const char *key, const char *s);
/* Compact text of obj into *out (owned) when r is 0; frees obj. Returns r
 * or the dump's error. */
int contract_json_finish(json_t *obj, int r, char **out);
/* v serialised compactly into a malloc'd NUL-terminated buffer (owned);
 * *out_len (may be NULL) its length. 0, -EINVAL (jansson refused, e.g.
 * invalid UTF-8) or -ENOMEM. */
int contract_json_dump(const json_t *v, char **out, size_t *out_len);
