/* contract_token: the routing-token sanitiser of PROTOCOL §1.1 over UTF-8,
 * reproducing JavaScript's UTF-16 code-unit behaviour byte for byte.
 * It never guesses on invalid UTF-8: that is -EILSEQ, never a replacement. */
#include "contract_token.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Decodes one code point at s[*i] (RFC 3629: shortest form only, no
 * surrogates, nothing above U+10FFFF, no truncated sequence). Advances *i.
 * Returns 0 or -EILSEQ. */
static int utf8_next(const unsigned char *s, size_t len, size_t *i, uint32_t *cp)
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

/* PROTOCOL §1.1 step 1: exactly the code points ECMAScript trim() removes
 * (WhiteSpace + LineTerminator). U+0085, U+180E and U+200B are not among
 * them. */
static bool is_js_space(uint32_t cp)
{
        switch (cp) {
        case 0x0009:
        case 0x000A:
        case 0x000B:
        case 0x000C:
        case 0x000D:
        case 0x0020:
        case 0x00A0:
        case 0x1680:
        case 0x2028:
        case 0x2029:
        case 0x202F:
        case 0x205F:
        case 0x3000:
        case 0xFEFF: return true;
        default: return cp >= 0x2000 && cp <= 0x200A;
        }
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
                if (utf8_next(u, len, &i, &cp) < 0)
                        return false;
        return true;
}

int contract_js_trim(const char *s, size_t len, size_t *start, size_t *tlen)
{
        const unsigned char *u = (const unsigned char *)s;
        size_t i = 0, first = len, end = 0;
        uint32_t cp;

        if (s == NULL && len > 0)
                return -EINVAL;
        /* One pass validates everything and remembers the span between the
         * first and the last non-space code point. */
        while (i < len) {
                size_t at = i;

                if (utf8_next(u, len, &i, &cp) < 0)
                        return -EILSEQ;
                if (!is_js_space(cp)) {
                        if (first == len)
                                first = at;
                        end = i;
                }
        }
        if (first == len) {
                *start = len;
                *tlen = 0;
        } else {
                *start = first;
                *tlen = end - first;
        }
        return 0;
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

                (void)utf8_next(u, start + tlen, &i, &cp); /* validated by trim */
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

/* Value of a 0x/0o/0b literal's digits, rounded once to the nearest
 * double as JavaScript does: the digits are re-packed into one hexadecimal
 * string and handed to strtod, which rounds correctly. NaN if a digit is
 * outside the radix. */
static double radix_value(const char *p, size_t n, int radix)
{
        static const char hex[] = "0123456789abcdef";
        int bits = radix == 16 ? 4 : radix == 8 ? 3 : 1;
        size_t nbits = n * (size_t)bits;
        size_t nhex = (nbits + 3) / 4;
        char *buf;
        double v;

        if (n == 0)
                return NAN;
        buf = malloc(nhex + 3);
        if (buf == NULL)
                return NAN;
        memcpy(buf, "0x", 2);
        memset(buf + 2, '0', nhex);
        buf[nhex + 2] = '\0';
        /* Fill the nibbles from the least significant end. */
        unsigned acc = 0;
        int accbits = 0;
        size_t pos = nhex;
        for (size_t i = n; i-- > 0;) {
                int c = (unsigned char)p[i], d;

                if (c >= '0' && c <= '9')
                        d = c - '0';
                else if (c >= 'a' && c <= 'f')
                        d = c - 'a' + 10;
                else if (c >= 'A' && c <= 'F')
                        d = c - 'A' + 10;
                else
                        d = radix;
                if (d >= radix) {
                        free(buf);
                        return NAN;
                }
                acc |= (unsigned)d << accbits;
                accbits += bits;
                while (accbits >= 4) {
                        buf[2 + --pos] = hex[acc & 0xF];
                        acc >>= 4;
                        accbits -= 4;
                }
        }
        if (accbits > 0)
                buf[2 + --pos] = hex[acc & 0xF];
        v = strtod(buf, NULL);
        free(buf);
        return v;
}

/* ECMAScript StrDecimalLiteral: [+-] (Infinity | digits[.digits] | .digits)
 * [e[+-]digits]. Returns true and the value if p[0..n) is exactly one. */
static bool decimal_value(const char *p, size_t n, double *out)
{
        size_t i = 0, digits = 0;

        if (i < n && (p[i] == '+' || p[i] == '-'))
                i++;
        if (n - i == 8 && memcmp(p + i, "Infinity", 8) == 0) {
                *out = p[0] == '-' ? -INFINITY : INFINITY;
                return true;
        }
        while (i < n && p[i] >= '0' && p[i] <= '9')
                i++, digits++;
        if (i < n && p[i] == '.') {
                i++;
                while (i < n && p[i] >= '0' && p[i] <= '9')
                        i++, digits++;
        }
        if (digits == 0)
                return false;
        if (i < n && (p[i] == 'e' || p[i] == 'E')) {
                size_t exp_digits = 0;

                i++;
                if (i < n && (p[i] == '+' || p[i] == '-'))
                        i++;
                while (i < n && p[i] >= '0' && p[i] <= '9')
                        i++, exp_digits++;
                if (exp_digits == 0)
                        return false;
        }
        if (i != n)
                return false;
        /* The grammar is a subset of strtod's, which rounds as JS does. */
        char *buf = strndup(p, n);
        if (buf == NULL)
                return false;
        *out = strtod(buf, NULL);
        free(buf);
        return true;
}

double contract_js_to_number(const char *s)
{
        size_t start, len;
        double v;

        if (s == NULL || contract_js_trim(s, strlen(s), &start, &len) < 0)
                return NAN;
        const char *p = s + start;
        if (len == 0)
                return 0;
        if (len > 2 && p[0] == '0') {
                int radix = p[1] == 'x' || p[1] == 'X'   ? 16
                            : p[1] == 'o' || p[1] == 'O' ? 8
                            : p[1] == 'b' || p[1] == 'B' ? 2
                                                         : 0;
                if (radix)
                        return radix_value(p + 2, len - 2, radix);
        }
        return decimal_value(p, len, &v) ? v : NAN;
}
