/* fuzz_jsack: the "$JS.ACK." reply-subject parser of PROTOCOL §5.5 (v1,
 * 9 tokens; v2, 12 or more), against a reference split, and the round
 * trip: a subject formatted from the parsed numbers parses back to them. */
#include "fuzz.h"
#include "split.h"

#include "jsack.h"

#include <inttypes.h>
#include <stdbool.h>

static bool ref_u64(part p, uint64_t *out)
{
        if (p.len == 0 || p.len > 20)
                return false;
        uint64_t v = 0;
        for (size_t i = 0; i < p.len; i++) {
                if (p.p[i] < '0' || p.p[i] > '9')
                        return false;
                unsigned d = (unsigned)(p.p[i] - '0');
                if (v > UINT64_MAX / 10 || v * 10 > UINT64_MAX - d)
                        return false;
                v = v * 10 + d;
        }
        *out = v;
        return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *s = fuzz_strndup(data, size);
        jsack_meta m, r = {0};
        bool ok = jsack_parse(s, &m);

        /* Reference: after "$JS.ACK.", 7 tokens (v1) or 9..14 (v2; the
         * parser bounds a subject at 16 tokens in all). */
        bool want = false;
        if (strncmp(s, "$JS.ACK.", 8) == 0) {
                size_t n;
                part *t = split_dots(s + 8, &n);
                size_t base = n == 7 ? 2 : n >= 9 && n <= 16 ? 4 : 0;
                uint64_t ts = 0;
                want = base && ref_u64(t[base], &r.delivered) && ref_u64(t[base + 1], &r.stream_seq) &&
                       ref_u64(t[base + 2], &r.consumer_seq) && ref_u64(t[base + 3], &ts) &&
                       ref_u64(t[base + 4], &r.pending) && ts <= (uint64_t)INT64_MAX;
                r.timestamp_ns = (int64_t)ts;
                free(t);
        }
        FUZZ_CHECK(ok == want);
        if (ok) {
                FUZZ_CHECK(m.delivered == r.delivered && m.stream_seq == r.stream_seq &&
                           m.consumer_seq == r.consumer_seq && m.timestamp_ns == r.timestamp_ns &&
                           m.pending == r.pending);
                char buf[256];
                snprintf(buf, sizeof buf, "$JS.ACK.S.C.%" PRIu64 ".%" PRIu64 ".%" PRIu64 ".%" PRId64 ".%" PRIu64,
                         m.delivered, m.stream_seq, m.consumer_seq, m.timestamp_ns, m.pending);
                jsack_meta back;
                FUZZ_CHECK(jsack_parse(buf, &back) && memcmp(&back, &m, sizeof m) == 0);
        }

        /* The NAK payload: any delay (the input's first bytes) fits and is
         * clamped, never negative. */
        int64_t delay = 0;
        if (size)
                memcpy(&delay, data, size < sizeof delay ? size : sizeof delay);
        char nak[64];
        int len = jsack_nak_delay(nak, sizeof nak, delay);
        FUZZ_CHECK(len > 0 && (size_t)len == strlen(nak) && strncmp(nak, "-NAK {\"delay\":", 14) == 0);
        FUZZ_CHECK(nak[14] != '-');
        free(s);
        return 0;
}
