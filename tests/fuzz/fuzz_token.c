/* fuzz_token: the token function of PROTOCOL §1.1 and its UTF-8 helpers,
 * checked against a second, deliberately naive implementation written from
 * the PROTOCOL text (decode to code points, trim, one '_' per UTF-16 code
 * unit). Also: the output is a NATS-safe token, token() is idempotent,
 * routeToken differs only for "*". */
#include "fuzz.h"

#include "contract_js.h"
#include "contract_token.h"

#include <errno.h>
#include <stdbool.h>

/* RFC 3629 decoding, table style: lead byte ranges and the allowed range
 * of the second byte. Returns the sequence length or 0 if invalid. */
static size_t ref_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
        unsigned char c = s[0];
        size_t len;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c < 0x80) {
                *cp = c;
                return 1;
        } else if (c >= 0xC2 && c <= 0xDF) {
                len = 2;
                *cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
                len = 3;
                *cp = c & 0x0F;
                if (c == 0xE0)
                        lo = 0xA0;
                if (c == 0xED)
                        hi = 0x9F; /* no surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
                len = 4;
                *cp = c & 0x07;
                if (c == 0xF0)
                        lo = 0x90;
                if (c == 0xF4)
                        hi = 0x8F;
        } else {
                return 0;
        }
        if (n < len)
                return 0;
        for (size_t i = 1; i < len; i++) {
                unsigned char b = s[i];
                if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF))
                        return 0;
                *cp = (*cp << 6) | (b & 0x3F);
        }
        return len;
}

/* The list of §1.1 step 1, as written there. */
static bool ref_space(uint32_t cp)
{
        static const uint32_t list[] = {0x09,   0x0A,   0x0B,   0x0C,   0x0D,   0x20,   0xA0,
                                        0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000, 0xFEFF};
        for (size_t i = 0; i < sizeof list / sizeof *list; i++)
                if (cp == list[i])
                        return true;
        return cp >= 0x2000 && cp <= 0x200A;
}

static bool ref_token_char(uint32_t cp)
{
        return (cp >= 'A' && cp <= 'Z') || (cp >= 'a' && cp <= 'z') || (cp >= '0' && cp <= '9') || cp == '_' ||
               cp == '-';
}

/* token() of §1.1 into out (at least 2 * size + 2 bytes); false if s is not
 * valid UTF-8. */
static bool ref_token(const unsigned char *s, size_t size, char *out, size_t *first_out, size_t *tlen_out)
{
        uint32_t *cps = malloc((size + 1) * sizeof *cps);
        size_t *offs = malloc((size + 2) * sizeof *offs);
        FUZZ_CHECK(cps && offs);
        size_t n = 0, i = 0;
        while (i < size) {
                size_t l = ref_decode(s + i, size - i, &cps[n]);
                if (l == 0) {
                        free(cps);
                        free(offs);
                        return false;
                }
                offs[n++] = i;
                i += l;
        }
        offs[n] = size;
        size_t a = 0, b = n;
        while (a < b && ref_space(cps[a]))
                a++;
        while (b > a && ref_space(cps[b - 1]))
                b--;
        size_t o = 0;
        for (size_t k = a; k < b; k++) {
                if (ref_token_char(cps[k])) {
                        out[o++] = (char)cps[k];
                } else {
                        out[o++] = '_';
                        if (cps[k] > 0xFFFF) /* a surrogate pair: two code units */
                                out[o++] = '_';
                }
        }
        if (o == 0)
                out[o++] = '_';
        out[o] = '\0';
        *first_out = a < b ? offs[a] : size;
        *tlen_out = a < b ? offs[b] - offs[a] : 0;
        free(cps);
        free(offs);
        return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const char *s = (const char *)data;
        char *ref = malloc(2 * size + 2);
        FUZZ_CHECK(ref != NULL);
        size_t ref_start = 0, ref_tlen = 0;
        bool valid = ref_token(data, size, ref, &ref_start, &ref_tlen);

        FUZZ_CHECK(contract_utf8_valid(s, size) == valid);

        size_t start = 99, tlen = 99;
        int r = contract_js_trim(s, size, &start, &tlen);
        FUZZ_CHECK(valid ? r == 0 : r == -EILSEQ);
        if (valid && ref_tlen > 0)
                FUZZ_CHECK(start == ref_start && tlen == ref_tlen);
        if (valid && ref_tlen == 0)
                FUZZ_CHECK(tlen == 0);

        char *tok = NULL;
        r = contract_token(s, size, &tok);
        if (size > CONTRACT_TOKEN_MAX_BYTES) {
                FUZZ_CHECK(r == -E2BIG && tok == NULL);
        } else if (!valid) {
                FUZZ_CHECK(r == -EILSEQ && tok == NULL);
        } else {
                FUZZ_CHECK(r == 0 && tok != NULL);
                FUZZ_CHECK(strcmp(tok, ref) == 0);
                /* A NATS subject token: non-empty, no '.', '*', '>', space. */
                FUZZ_CHECK(contract_is_token(tok));
                /* Idempotent: token(token(x)) == token(x). */
                char *again = NULL;
                FUZZ_CHECK(contract_token(tok, strlen(tok), &again) == 0);
                FUZZ_CHECK(strcmp(again, tok) == 0);
                free(again);
                /* Deterministic. */
                char *twice = NULL;
                FUZZ_CHECK(contract_token(s, size, &twice) == 0 && strcmp(twice, tok) == 0);
                free(twice);
        }

        char *route = NULL;
        int rr = contract_route_token(s, size, &route);
        if (size == 1 && s[0] == '*') {
                FUZZ_CHECK(rr == 0 && strcmp(route, "*") == 0);
        } else {
                FUZZ_CHECK(rr == r);
                FUZZ_CHECK(r < 0 || strcmp(route, tok) == 0);
        }
        free(route);

        /* contract_is_token on the raw input: true iff it is already a
         * fixed point of token(). */
        if (size <= CONTRACT_TOKEN_MAX_BYTES && !memchr(data, '\0', size)) {
                char *z = fuzz_strndup(data, size);
                FUZZ_CHECK(contract_is_token(z) == (tok != NULL && strcmp(tok, z) == 0));
                free(z);
        }
        free(tok);
        free(ref);
        return 0;
}
