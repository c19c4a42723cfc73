/* fuzz_channel: channel names and patterns (PROTOCOL §1.3), channelPath
 * (§1.1), KV key validity (§4.2) and member keys (§4.4). Input: lines; line
 * 1 is the channel or pattern, line 2 a name to match it against, lines 2..
 * an allow list. Checked against reference implementations written from
 * the PROTOCOL text, plus §1.1's promise that channelPath(ch) == ch for
 * every channel assertValidChannel accepts. */
#include "fuzz.h"
#include "split.h"

#include "contract_channel.h"
#include "contract_token.h"

#include <errno.h>
#include <stdbool.h>

static bool word_char(unsigned char c)
{
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* §1.3 assertValidChannel, as a yes/no. */
static bool ref_valid(const char *ch)
{
        if (!*ch)
                return false;
        size_t n;
        part *s = split_dots(ch, &n);
        bool ok = true;
        for (size_t i = 0; ok && i < n; i++) {
                if (s[i].len == 0 || (part_is(s[i], ">") && i + 1 != n)) {
                        ok = false;
                } else if (!part_is(s[i], "*") && !part_is(s[i], ">")) {
                        for (size_t k = 0; k < s[i].len; k++)
                                ok = ok && word_char((unsigned char)s[i].p[k]);
                }
        }
        free(s);
        return ok;
}

/* §1.3 subjectMatches. */
static bool ref_matches(const char *pattern, const char *name)
{
        size_t np, nn;
        part *p = split_dots(pattern, &np);
        part *q = split_dots(name, &nn);
        bool result = true;
        size_t i;
        for (i = 0; i < np; i++) {
                if (part_is(p[i], ">")) {
                        result = i < nn;
                        goto out;
                }
                if (i >= nn || (!part_is(p[i], "*") && !part_eq(p[i], q[i]))) {
                        result = false;
                        goto out;
                }
        }
        result = np == nn;
out:
        free(p);
        free(q);
        return result;
}

/* §4.2 ^[-/=.A-Za-z0-9_]+$ without a leading or trailing '.'. */
static bool ref_kv_key(const char *k)
{
        size_t n = strlen(k);
        if (n == 0 || k[0] == '.' || k[n - 1] == '.')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!word_char((unsigned char)k[i]) && !strchr("/=.", k[i]))
                        return false;
        return true;
}

static void check_path(const char *ch)
{
        char *path = NULL;
        int r = contract_channel_path(ch, &path);
        FUZZ_CHECK(r == 0 || r == -EINVAL || r == -EILSEQ || r == -E2BIG);
        if (r < 0) {
                FUZZ_CHECK(path == NULL);
                if (r == -EILSEQ)
                        FUZZ_CHECK(!contract_utf8_valid(ch, strlen(ch)));
                return;
        }
        /* Every segment is '*', a last '>', or a token; never empty. */
        size_t n;
        part *s = split_dots(path, &n);
        for (size_t i = 0; i < n; i++) {
                FUZZ_CHECK(s[i].len > 0);
                if (part_is(s[i], "*") || (part_is(s[i], ">") && i + 1 == n))
                        continue;
                for (size_t k = 0; k < s[i].len; k++)
                        FUZZ_CHECK(word_char((unsigned char)s[i].p[k]));
        }
        free(s);
        /* Never longer than its input (the builder's allocation relies on
         * it), and a fixed point. */
        FUZZ_CHECK(strlen(path) <= (strlen(ch) ? strlen(ch) : 1));
        char *again = NULL;
        FUZZ_CHECK(contract_channel_path(path, &again) == 0 && strcmp(again, path) == 0);
        free(again);
        /* §1.1: for a channel that passed assertValidChannel, the identity. */
        if (ref_valid(ch))
                FUZZ_CHECK(strcmp(path, ch) == 0);
        free(path);
}

static void check_channel(const char *ch)
{
        const char *bad = NULL;
        size_t bad_len = 0;
        channel_check c = contract_channel_check(ch, &bad, &bad_len);
        FUZZ_CHECK((c == CHANNEL_VALID) == ref_valid(ch));
        FUZZ_CHECK((c == CHANNEL_EMPTY) == (*ch == '\0'));
        if (c == CHANNEL_BAD_SEGMENT) {
                /* The offending segment lies inside ch, whole. */
                FUZZ_CHECK(bad >= ch && bad + bad_len <= ch + strlen(ch) && bad_len > 0);
                FUZZ_CHECK(bad == ch || bad[-1] == '.');
                FUZZ_CHECK(bad[bad_len] == '.' || bad[bad_len] == '\0');
        }
        if (c == CHANNEL_VALID) {
                /* No spaces can occur in a valid channel, so concreteness is
                 * just "no '*' or '>' segment". */
                size_t n;
                part *s = split_dots(ch, &n);
                bool concrete = true;
                for (size_t i = 0; i < n; i++)
                        concrete = concrete && !part_is(s[i], "*") && !part_is(s[i], ">");
                free(s);
                FUZZ_CHECK(contract_channel_is_concrete(ch) == concrete);
                if (concrete) {
                        FUZZ_CHECK(contract_subject_matches(ch, ch));
                        FUZZ_CHECK(contract_subject_matches(">", ch));
                        FUZZ_CHECK(contract_subject_matches("*", ch) == (strchr(ch, '.') == NULL));
                }
        }
}

static void check_member_key(const char *channel, const char *owner)
{
        const char *c = NULL, *o = NULL;
        size_t cl = 0, ol = 0;
        bool ok = contract_member_key_parse(channel, &c, &cl, &o, &ol);
        const char *slash = strchr(channel, '/');
        size_t n = strlen(channel);
        FUZZ_CHECK(ok == (slash != NULL && channel[0] != '/' && channel[n - 1] != '/'));
        if (ok)
                FUZZ_CHECK(c == channel && cl == (size_t)(slash - channel) && o == slash + 1 && cl + 1 + ol == n);

        char *key = NULL;
        FUZZ_CHECK(contract_member_key(channel, owner, &key) == 0);
        FUZZ_CHECK(strlen(key) == strlen(channel) + 1 + strlen(owner));
        if (*channel && !strchr(channel, '/') && *owner && owner[strlen(owner) - 1] != '/') {
                FUZZ_CHECK(contract_member_key_parse(key, &c, &cl, &o, &ol));
                FUZZ_CHECK(cl == strlen(channel) && memcmp(c, channel, cl) == 0 && strcmp(o, owner) == 0);
        }
        free(key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const uint8_t *rest;
        size_t rest_size;
        char *ch = fuzz_split_line(data, size, &rest, &rest_size);
        /* Lines 2.. (an allow list; the first is also the name). */
        char *text = fuzz_strndup(rest, rest_size);
        size_t n_allow = 0;
        const char *allow[64];
        for (char *p = text, *save = NULL, *l; n_allow < 64 && (l = strtok_r(p, "\n", &save)); p = NULL)
                allow[n_allow++] = l;
        const char *name = n_allow ? allow[0] : "";

        check_channel(ch);
        check_path(ch);
        FUZZ_CHECK(contract_kv_key_valid(ch) == ref_kv_key(ch));
        FUZZ_CHECK(contract_subject_matches(ch, name) == ref_matches(ch, name));
        bool any = false;
        for (size_t i = 0; i < n_allow; i++)
                any = any || ref_matches(allow[i], ch);
        FUZZ_CHECK(contract_channel_in_allow(allow, n_allow, ch) == any);
        check_member_key(ch, name);

        free(text);
        free(ch);
        return 0;
}
