/* jsack: JetStream ack-subject parsing and ack payloads (PROTOCOL §5.5). */
#include "jsack.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define JSACK_PREFIX "$JS.ACK."
#define JSACK_MAX_TOKENS 16

/* Parses an unsigned decimal token [p, p+n); false unless all digits. */
static bool parse_u64(const char *p, size_t n, uint64_t *out)
{
        uint64_t v = 0;
        if (n == 0 || n > 20)
                return false;
        for (size_t i = 0; i < n; i++) {
                if (p[i] < '0' || p[i] > '9')
                        return false;
                uint64_t d = (uint64_t)(p[i] - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return false;
                v = v * 10 + d;
        }
        *out = v;
        return true;
}

bool jsack_parse(const char *reply, jsack_meta *out)
{
        const char *tok[JSACK_MAX_TOKENS];
        size_t len[JSACK_MAX_TOKENS];
        size_t n = 0;

        if (!reply || strncmp(reply, JSACK_PREFIX, sizeof JSACK_PREFIX - 1) != 0)
                return false;
        const char *p = reply + sizeof JSACK_PREFIX - 1;
        for (;;) {
                if (n == JSACK_MAX_TOKENS)
                        return false;
                const char *dot = strchr(p, '.');
                tok[n] = p;
                len[n] = dot ? (size_t)(dot - p) : strlen(p);
                n++;
                if (!dot)
                        break;
                p = dot + 1;
        }
        /* v1: stream consumer delivered sseq cseq ts pending (7 after the
         * prefix); v2: domain acchash stream consumer delivered sseq cseq
         * ts pending [random…] (9 or more). */
        size_t base;
        if (n == 7)
                base = 2;
        else if (n >= 9)
                base = 4;
        else
                return false;
        uint64_t ts;
        if (!parse_u64(tok[base], len[base], &out->delivered) ||
            !parse_u64(tok[base + 1], len[base + 1], &out->stream_seq) ||
            !parse_u64(tok[base + 2], len[base + 2], &out->consumer_seq) ||
            !parse_u64(tok[base + 3], len[base + 3], &ts) || !parse_u64(tok[base + 4], len[base + 4], &out->pending) ||
            ts > (uint64_t)INT64_MAX)
                return false;
        out->timestamp_ns = (int64_t)ts;
        return true;
}

int jsack_nak_delay(char *buf, size_t size, int64_t delay_ms)
{
        /* Clamped so the nanosecond product cannot overflow. */
        if (delay_ms < 0)
                delay_ms = 0;
        if (delay_ms > INT64_MAX / 1000000)
                delay_ms = INT64_MAX / 1000000;
        int n = snprintf(buf, size, "-NAK {\"delay\":%" PRId64 "}", delay_ms * 1000000);
        return n < 0 || (size_t)n >= size ? -1 : n;
}
