/* fuzz_number: JavaScript Number(s) (contract_js_to_number, PROTOCOL
 * §10.1/§10.2: shard flags and COTAL_DELIVERY_BROKER_GONE_MS) and
 * String(n) (contract_js_number, the "JS rendering" of §8.3/§10.2). Both
 * must round-trip: Number(String(n)) == n for every double, the parsed one
 * and the input's first 8 bytes taken as a double. */
#include "fuzz.h"

#include "contract_js.h"
#include "contract_record.h"
#include "contract_token.h"

#include <math.h>
#include <stdbool.h>

static void round_trip(double d)
{
        char buf[64];
        FUZZ_CHECK(contract_js_number(d, buf, sizeof buf) == 0);
        double back = contract_js_to_number(buf);
        if (isnan(d)) {
                FUZZ_CHECK(isnan(back) && strcmp(buf, "NaN") == 0);
                return;
        }
        FUZZ_CHECK(back == d);
        /* And the shortest digits: as short as "%.17g" at most, and no
         * exponent below 1e21 (ECMAScript Number::toString). */
        if (isfinite(d) && fabs(d) >= 1 && fabs(d) < 1e21)
                FUZZ_CHECK(strchr(buf, 'e') == NULL);
        char g[64];
        snprintf(g, sizeof g, "%.17g", d);
        FUZZ_CHECK(!isfinite(d) || strlen(buf) <= strlen(g) + 22);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *s = fuzz_strndup(data, size);
        double v = contract_js_to_number(s);
        double again = contract_js_to_number(s);
        FUZZ_CHECK((isnan(v) && isnan(again)) || v == again);
        round_trip(v);

        /* Number() trims JavaScript white space. */
        size_t n = strlen(s);
        char *padded = malloc(n + 8);
        FUZZ_CHECK(padded != NULL);
        snprintf(padded, n + 8, "\t %s\xc2\xa0", s);
        double p = contract_js_to_number(padded);
        FUZZ_CHECK((isnan(v) && isnan(p)) || v == p);
        free(padded);

        /* A plain run of ASCII digits reads as strtod reads it. */
        if (n > 0 && strspn(s, "0123456789") == n)
                FUZZ_CHECK(v == strtod(s, NULL));

        if (size >= sizeof(double)) {
                double d;
                memcpy(&d, data, sizeof d);
                round_trip(d);
        }
        free(s);
        return 0;
}
