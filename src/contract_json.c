/* contract_json: the jansson helpers the contract's codecs share (see
 * contract_json.h). Pure. */
#include "contract_json.h"

#include "contract_token.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *contract_json_type_name(const json_t *v)
{
        switch (json_typeof(v)) {
        case JSON_OBJECT: return "object";
        case JSON_ARRAY: return "array";
        case JSON_STRING: return "string";
        case JSON_INTEGER: return "integer";
        case JSON_REAL: return "real";
        case JSON_TRUE: return "true";
        case JSON_FALSE: return "false";
        case JSON_NULL: return "null";
        }
        return "unknown";
}

/* Serialises v compactly into a malloc'd NUL-terminated buffer (owned by
 * the caller). 0, -EINVAL (jansson refused, e.g. invalid UTF-8) or -ENOMEM. */
int contract_json_dump(const json_t *v, char **out, size_t *out_len)
{
        size_t flags = JSON_COMPACT | JSON_ENCODE_ANY;
        size_t n = json_dumpb(v, NULL, 0, flags);
        char *buf;

        *out = NULL;
        if (n == 0)
                return -EINVAL;
        buf = malloc(n + 1);
        if (buf == NULL)
                return -ENOMEM;
        if (json_dumpb(v, buf, n, flags) != n) {
                free(buf);
                return -EINVAL;
        }
        buf[n] = '\0';
        *out = buf;
        if (out_len)
                *out_len = n;
        return 0;
}

/* Parses any JSON value (flags never include JSON_ALLOW_NUL, so \u0000 and
 * invalid UTF-8 are "not JSON"; trailing bytes are rejected). With
 * int_fallback, an integer too big for jansson is retried with
 * JSON_DECODE_INT_AS_REAL (PROTOCOL §5.1) and *as_real says so. */
json_t *contract_json_load(const char *data, size_t len, bool int_fallback, bool *as_real, json_error_t *jerr)
{
        json_t *v;

        if (as_real)
                *as_real = false;
        if (data == NULL) {
                data = "";
                len = 0;
        }
        /* A raw NUL is never JSON (not white space, and not allowed unescaped
         * in a string), but jansson 2.14 drops one that directly follows a
         * number or a literal ({"n":1<NUL>} loads as {"n":1}), and a body
         * embedded verbatim (§5.2) would carry it on. Found by fuzz_chat. */
        {
                const char *nul = memchr(data, '\0', len);

                if (nul != NULL) {
                        memset(jerr, 0, sizeof(*jerr));
                        snprintf(jerr->text, sizeof(jerr->text), "NUL byte at position %zu", (size_t)(nul - data));
                        jerr->position = (int)(nul - data);
                        return NULL;
                }
        }
        v = json_loadb(data, len, JSON_DECODE_ANY, jerr);
        if (v == NULL && int_fallback && json_error_code(jerr) == json_error_numeric_overflow) {
                v = json_loadb(data, len, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, jerr);
                if (v && as_real)
                        *as_real = true;
        }
        return v;
}

int contract_json_set_new(json_t *obj, const char *key, json_t *v)
{
        if (v == NULL)
                return -ENOMEM;
        return json_object_set_new(obj, key, v) == 0 ? 0 : -ENOMEM;
}

int contract_json_set_str(json_t *obj, const char *key, const char *s)
{
        if (s == NULL || !contract_utf8_valid(s, strlen(s)))
                return -EINVAL;
        return contract_json_set_new(obj, key, json_string(s));
}

int contract_json_finish(json_t *obj, int r, char **out)
{
        if (r == 0)
                r = contract_json_dump(obj, out, NULL);
        json_decref(obj);
        return r;
}
