/* contract_token: the routing-token sanitiser of PROTOCOL §1.1 over UTF-8,
 * reproducing JavaScript's UTF-16 code-unit behaviour byte for byte.
 * It never guesses on invalid UTF-8: that is -EILSEQ, never a replacement. */
#include "contract_token.h"

#include "contract_js.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int contract_utf8_next(const unsigned char *s, size_t len, size_t *i, uint32_t *cp)
{
        size_t k = *i;
        uint32_t c = s[k];
        uint32_t min;
        size_t need;

        if (c < 0x80) {
                *cp = c;
                *i = k + 1;
                return 0;
        }
        if (c >= 0xC2 && c <= 0xDF) {
                need = 1;
                min = 0x80;
                c &= 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
                need = 2;
                min = 0x800;
                c &= 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
                need = 3;
                min = 0x10000;
                c &= 0x07;
        } else {
                /* 0x80-0xBF (lone continuation), 0xC0/0xC1 (always
                 * overlong), 0xF5-0xFF (beyond U+10FFFF). */
                return -EILSEQ;
        }
        if (len - k - 1 < need)
                return -EILSEQ;
        for (size_t j = 1; j <= need; j++) {
                uint32_t b = s[k + j];

                if ((b & 0xC0) != 0x80)
                        return -EILSEQ;
                c = (c << 6) | (b & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
                return -EILSEQ;
        *cp = c;
        *i = k + 1 + need;
        return 0;
}

static bool is_token_byte(unsigned char c)
{
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

bool contract_utf8_valid(const char *s, size_t len)
{
        const unsigned char *u = (const unsigned char *)s;
        size_t i = 0;
        uint32_t cp;

        if (s == NULL)
                return len == 0;
        while (i < len)
                if (contract_utf8_next(u, len, &i, &cp) < 0)
                        return false;
        return true;
}

int contract_token(const char *s, size_t len, char **out)
{
        const unsigned char *u = (const unsigned char *)s;
        size_t start, tlen, i, o = 0;
        char *buf;
        int r;

        *out = NULL;
        if (len > CONTRACT_TOKEN_MAX_BYTES)
                return -E2BIG;
        r = contract_js_trim(s, len, &start, &tlen);
        if (r < 0)
                return r;
        /* Every code point shrinks or keeps its size: 1 byte -> 1, 2 or 3
         * bytes -> one '_', 4 bytes -> "__". */
        buf = malloc(tlen + 2);
        if (buf == NULL)
                return -ENOMEM;
        i = start;
        while (i < start + tlen) {
                uint32_t cp;

                (void)contract_utf8_next(u, start + tlen, &i, &cp); /* validated by trim */
                if (cp < 0x80 && is_token_byte((unsigned char)cp)) {
                        buf[o++] = (char)cp;
                } else {
                        /* PROTOCOL §1.1 step 2: one '_' per UTF-16 code
                         * unit, so a surrogate pair gives two. */
                        buf[o++] = '_';
                        if (cp >= 0x10000)
                                buf[o++] = '_';
                }
        }
        if (o == 0)
                buf[o++] = '_'; /* PROTOCOL §1.1 step 3 */
        buf[o] = '\0';
        *out = buf;
        return 0;
}

int contract_route_token(const char *s, size_t len, char **out)
{
        /* PROTOCOL §1.1 routeToken: only the exact string "*" survives. */
        if (len == 1 && s[0] == '*') {
                *out = strdup("*");
                return *out ? 0 : -ENOMEM;
        }
        return contract_token(s, len, out);
}

bool contract_is_token(const char *s)
{
        if (s == NULL || *s == '\0')
                return false;
        for (; *s; s++)
                if (!is_token_byte((unsigned char)*s))
                        return false;
        return true;
}
