/* contract_channel: channel names and patterns (PROTOCOL §1.3), channelPath
 * (§1.1), KV key validity (§4.2) and member keys (§4.4). Pure code: every
 * split is done on byte spans of the caller's string, never on a copy. */
#include "contract_channel.h"

#include "contract_js.h"
#include "contract_token.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* One '.'-separated segment of a NUL-terminated string, as JavaScript's
 * split(".") yields it: "" gives one empty segment, "a..b" three. */
typedef struct segment {
        const char *p;
        size_t len;
        bool last;
} segment;

/* Advances to the segment after seg (or the first one when seg->p is NULL).
 * Returns false when there are no more segments. */
static bool next_segment(const char *s, segment *seg)
{
        const char *start, *dot;

        if (seg->p == NULL)
                start = s;
        else if (seg->last)
                return false;
        else
                start = seg->p + seg->len + 1;
        dot = strchr(start, '.');
        seg->p = start;
        seg->len = dot ? (size_t)(dot - start) : strlen(start);
        seg->last = dot == NULL;
        return true;
}

static bool span_is(const char *p, size_t len, const char *lit)
{
        return len == strlen(lit) && memcmp(p, lit, len) == 0;
}

static bool is_token_char(unsigned char c)
{
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

channel_check contract_channel_check(const char *ch, const char **bad, size_t *bad_len)
{
        segment seg = {0};

        if (ch == NULL || *ch == '\0')
                return CHANNEL_EMPTY;
        /* PROTOCOL §1.3 assertValidChannel: segments are not trimmed; the
         * first failing segment decides, in upstream's order of checks. */
        while (next_segment(ch, &seg)) {
                if (seg.len == 0)
                        return CHANNEL_EMPTY_SEGMENT;
                if (span_is(seg.p, seg.len, ">")) {
                        if (!seg.last)
                                return CHANNEL_GT_NOT_LAST;
                        continue;
                }
                if (span_is(seg.p, seg.len, "*"))
                        continue;
                for (size_t i = 0; i < seg.len; i++) {
                        if (!is_token_char((unsigned char)seg.p[i])) {
                                if (bad)
                                        *bad = seg.p;
                                if (bad_len)
                                        *bad_len = seg.len;
                                return CHANNEL_BAD_SEGMENT;
                        }
                }
        }
        return CHANNEL_VALID;
}

/* JS trim of one segment. A segment that is not valid UTF-8 keeps its
 * bytes: upstream would see U+FFFD there, which trim() never removes. */
static void trim_segment(const segment *seg, const char **p, size_t *len)
{
        size_t start, tlen;

        if (contract_js_trim(seg->p, seg->len, &start, &tlen) < 0) {
                *p = seg->p;
                *len = seg->len;
                return;
        }
        *p = seg->p + start;
        *len = tlen;
}

bool contract_channel_is_concrete(const char *ch)
{
        segment seg = {0};

        if (ch == NULL)
                return true;
        /* PROTOCOL §1.3 isConcreteChannel: unlike assertValidChannel, the
         * segments are trimmed before the comparison. */
        while (next_segment(ch, &seg)) {
                const char *p;
                size_t len;

                trim_segment(&seg, &p, &len);
                if (span_is(p, len, "*") || span_is(p, len, ">"))
                        return false;
        }
        return true;
}

bool contract_subject_matches(const char *pattern, const char *name)
{
        segment p = {0}, n = {0};
        bool have_name = true;

        if (pattern == NULL || name == NULL)
                return false;
        /* PROTOCOL §1.3 subjectMatches, step for step. */
        while (next_segment(pattern, &p)) {
                if (have_name)
                        have_name = next_segment(name, &n);
                if (span_is(p.p, p.len, ">"))
                        return have_name; /* at least one name token left */
                if (!have_name)
                        return false;
                if (!span_is(p.p, p.len, "*") && !(p.len == n.len && memcmp(p.p, n.p, p.len) == 0))
                        return false;
        }
        /* Equal token counts: the name must have no token left either. */
        return have_name && n.last;
}

bool contract_channel_in_allow(const char *const *allow, size_t n, const char *ch)
{
        if (allow == NULL)
                return false;
        for (size_t i = 0; i < n; i++)
                if (allow[i] != NULL && contract_subject_matches(allow[i], ch))
                        return true;
        return false;
}

int contract_channel_path(const char *ch, char **out)
{
        segment seg = {0};
        size_t cap, len = 0, kept = 0, n_segments = 0, idx = 0;
        char *buf;
        int r = 0;

        *out = NULL;
        if (ch == NULL)
                return -EINVAL;
        /* Count the non-empty trimmed segments first: '>' is allowed only as
         * the last of those (empty ones are dropped before the check). */
        while (next_segment(ch, &seg)) {
                const char *p;
                size_t plen;

                trim_segment(&seg, &p, &plen);
                if (plen > 0)
                        n_segments++;
        }
        if (n_segments == 0) {
                *out = strdup("_");
                return *out ? 0 : -ENOMEM;
        }
        /* token() never grows a segment, plus '.' separators and NUL. */
        cap = strlen(ch) + 1;
        buf = malloc(cap);
        if (buf == NULL)
                return -ENOMEM;
        seg = (segment){0};
        while (next_segment(ch, &seg)) {
                const char *p;
                size_t plen;
                char *tok = NULL;

                trim_segment(&seg, &p, &plen);
                if (plen == 0)
                        continue;
                idx++;
                if (span_is(p, plen, ">")) {
                        if (idx != n_segments) {
                                r = -EINVAL;
                                goto out;
                        }
                } else if (!span_is(p, plen, "*")) {
                        r = contract_token(p, plen, &tok);
                        if (r < 0)
                                goto out;
                        p = tok;
                        plen = strlen(tok);
                }
                if (kept++ > 0)
                        buf[len++] = '.';
                memcpy(buf + len, p, plen);
                len += plen;
                free(tok);
        }
        buf[len] = '\0';
        *out = buf;
        return 0;
out:
        free(buf);
        return r;
}

bool contract_kv_key_valid(const char *key)
{
        size_t len;

        if (key == NULL || *key == '\0')
                return false;
        len = strlen(key);
        /* PROTOCOL §4.2: ^[-/=.A-Za-z0-9_]+$, no leading or trailing '.'. */
        if (key[0] == '.' || key[len - 1] == '.')
                return false;
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)key[i];

                if (!is_token_char(c) && c != '/' && c != '=' && c != '.')
                        return false;
        }
        return true;
}

bool contract_member_key_parse(const char *key, const char **channel, size_t *channel_len, const char **owner,
                               size_t *owner_len)
{
        const char *slash;
        size_t len;

        if (key == NULL)
                return false;
        len = strlen(key);
        slash = strchr(key, '/');
        /* PROTOCOL §4.4 parseMemberKey: split at the first '/'; no '/', or
         * '/' as the key's first or last character, is not a member key. */
        if (slash == NULL || key[0] == '/' || key[len - 1] == '/')
                return false;
        if (channel)
                *channel = key;
        if (channel_len)
                *channel_len = (size_t)(slash - key);
        if (owner)
                *owner = slash + 1;
        if (owner_len)
                *owner_len = len - (size_t)(slash - key) - 1;
        return true;
}

int contract_member_key(const char *channel, const char *owner, char **out)
{
        size_t clen, olen;
        char *buf;

        *out = NULL;
        if (channel == NULL || owner == NULL)
                return -EINVAL;
        clen = strlen(channel);
        olen = strlen(owner);
        buf = malloc(clen + olen + 2);
        if (buf == NULL)
                return -ENOMEM;
        memcpy(buf, channel, clen);
        buf[clen] = '/';
        memcpy(buf + clen + 1, owner, olen + 1);
        *out = buf;
        return 0;
}
