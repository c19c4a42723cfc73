/* fuzz_puback: the PubAck reader of jspub (jspub_parse_puback), whose
 * fast path reads nats-server's exact shape without a JSON parser. It must
 * agree with a plain jansson reading of the same bytes on every input: an
 * object without "error" whose "seq" is a non-negative integer is stored
 * (duplicate when "duplicate" is true), anything else is an error. */
#include "fuzz.h"

#include "jspub.h"

#include <jansson.h>
#include <stdbool.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const char *d = (const char *)data;
        jspub_result r = {0};
        char err[256] = "";
        jspub_state st = jspub_parse_puback(d, size, &r, err, sizeof err);
        FUZZ_CHECK(st == r.state && (st == JSPUB_OK || st == JSPUB_ERROR));

        json_t *v = json_loadb(d, size, 0, NULL);
        json_t *seq = json_object_get(v, "seq");
        bool ok = json_is_object(v) && !json_object_get(v, "error") && json_is_integer(seq) &&
                  json_integer_value(seq) >= 0;
        if ((st == JSPUB_OK) != ok)
                fprintf(stderr, "parse: %s, jansson: %s\n", st == JSPUB_OK ? "stored" : "error",
                        ok ? "stored" : "error");
        FUZZ_CHECK((st == JSPUB_OK) == ok);
        if (ok) {
                FUZZ_CHECK(r.seq == (uint64_t)json_integer_value(seq));
                FUZZ_CHECK(r.duplicate == json_is_true(json_object_get(v, "duplicate")));
        } else {
                FUZZ_CHECK(strncmp(err, "publish refused: ", 17) == 0);
        }
        json_decref(v);
        return 0;
}
