/* contract_js: JavaScript's own semantics where the contract follows
 * them (see contract_js.h): String.prototype.trim, Number(string), and
 * Number / String() to text. Pure. */
#include "contract_js.h"

#include "contract_strbuf.h"
#include "contract_token.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Nesting bound for JS string conversion of hand-built values (parsed ones
 * are already bounded by jansson's JSON_PARSER_MAX_DEPTH). */
#define JS_STRING_MAX_DEPTH 2048

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

                if (contract_utf8_next(u, len, &i, &cp) < 0)
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

static bool reads_back(unsigned long long mantissa, int exp10, double d)
{
        char tmp[48];

        snprintf(tmp, sizeof(tmp), "%llue%d", mantissa, exp10);
        return strtod(tmp, NULL) == d;
}

/* Shortest decimal digits that read back as d (d finite, > 0): digits in
 * buf (no trailing zeros), *k their count, *n the decimal exponent such
 * that d = 0.digits x 10^n, as in ECMAScript Number::toString. */
static void shortest_digits(double d, char *buf, size_t size, int *k, int *n)
{
        unsigned long long m = 0;
        int exp10 = 0, len;

        for (int prec = 1; prec <= 17; prec++) {
                char tmp[48];
                const char *p;

                snprintf(tmp, sizeof(tmp), "%.*e", prec - 1, d);
                m = 0;
                for (p = tmp; *p && *p != 'e'; p++)
                        if (*p >= '0' && *p <= '9')
                                m = m * 10 + (unsigned long long)(*p - '0');
                exp10 = (*p == 'e' ? atoi(p + 1) : 0) - (prec - 1);
                if (prec == 17 || strtod(tmp, NULL) == d)
                        break;
                /* Just above a power of two the gap below d is half the gap
                 * above, so the nearest candidate can miss while the next
                 * one up still reads back as d. */
                if (reads_back(m + 1, exp10, d)) {
                        m++;
                        break;
                }
        }
        len = snprintf(buf, size, "%llu", m);
        *n = len + exp10;
        while (len > 1 && buf[len - 1] == '0')
                len--;
        buf[len] = '\0';
        *k = len;
}

/* ECMAScript Number::toString(10). */
static void js_number(contract_strbuf *b, double d)
{
        char digits[32], num[16];
        int k, n;

        if (d != d) {
                contract_sb_str(b, "NaN");
                return;
        }
        if (d == 0) {
                contract_sb_str(b, "0"); /* also -0 */
                return;
        }
        if (d < 0) {
                contract_sb_str(b, "-");
                d = -d;
        }
        if (d > DBL_MAX) {
                contract_sb_str(b, "Infinity");
                return;
        }
        shortest_digits(d, digits, sizeof(digits), &k, &n);
        if (k <= n && n <= 21) {
                contract_sb_add(b, digits, (size_t)k);
                for (int i = 0; i < n - k; i++)
                        contract_sb_str(b, "0");
        } else if (0 < n && n <= 21) {
                contract_sb_add(b, digits, (size_t)n);
                contract_sb_str(b, ".");
                contract_sb_str(b, digits + n);
        } else if (-6 < n && n <= 0) {
                contract_sb_str(b, "0.");
                for (int i = 0; i < -n; i++)
                        contract_sb_str(b, "0");
                contract_sb_str(b, digits);
        } else {
                contract_sb_add(b, digits, 1);
                if (k > 1) {
                        contract_sb_str(b, ".");
                        contract_sb_str(b, digits + 1);
                }
                snprintf(num, sizeof(num), "e%c%d", n - 1 < 0 ? '-' : '+', n - 1 < 0 ? 1 - n : n - 1);
                contract_sb_str(b, num);
        }
}

int contract_js_number(double d, char *buf, size_t size)
{
        contract_strbuf b = {0};
        char *out = NULL;

        js_number(&b, d);
        if (contract_sb_finish(&b, &out) < 0)
                return -ENOMEM;
        int n = snprintf(buf, size, "%s", out);
        free(out);
        return n < 0 || (size_t)n >= size ? -ENOSPC : 0;
}

static void js_value(contract_strbuf *b, const json_t *v, int depth);

/* Array.prototype.join(","): null elements render as "". */
static void js_join(contract_strbuf *b, const json_t *arr, int depth)
{
        size_t i;
        json_t *el;

        if (depth > JS_STRING_MAX_DEPTH)
                return;
        json_array_foreach (arr, i, el) {
                if (i > 0)
                        contract_sb_str(b, ",");
                if (!json_is_null(el))
                        js_value(b, el, depth + 1);
        }
}

static void js_value(contract_strbuf *b, const json_t *v, int depth)
{
        switch (json_typeof(v)) {
        case JSON_OBJECT: contract_sb_str(b, "[object Object]"); break;
        case JSON_ARRAY: js_join(b, v, depth); break;
        case JSON_STRING:
                contract_sb_add(b, json_string_value(v), strnlen(json_string_value(v), json_string_length(v)));
                break;
        case JSON_INTEGER: {
                json_int_t i = json_integer_value(v);

                /* Beyond 2^53 JavaScript holds the nearest double. */
                if (i > (json_int_t)1 << 53 || i < -((json_int_t)1 << 53)) {
                        js_number(b, (double)i);
                } else {
                        char num[32];

                        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, i);
                        contract_sb_str(b, num);
                }
                break;
        }
        case JSON_REAL: js_number(b, json_real_value(v)); break;
        case JSON_TRUE: contract_sb_str(b, "true"); break;
        case JSON_FALSE: contract_sb_str(b, "false"); break;
        case JSON_NULL: contract_sb_str(b, "null"); break;
        }
}

int contract_js_string(const json_t *v, char **out)
{
        contract_strbuf b = {0};

        if (v == NULL)
                contract_sb_str(&b, "undefined");
        else
                js_value(&b, v, 0);
        return contract_sb_finish(&b, out);
}
