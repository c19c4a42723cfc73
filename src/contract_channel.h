/* contract_channel: channel names, patterns, ACL coverage and KV key rules
 * (PROTOCOL §1.1 channelPath, §1.3, §4.2 key validity, §4.4 member keys).
 * Pure code: no I/O. Functions never read past the given NUL terminator. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Result of assertValidChannel (PROTOCOL §1.3). */
typedef enum {
        CHANNEL_VALID = 0,
        CHANNEL_EMPTY,         /* "" (reported by §8.5 as the blank error)  */
        CHANNEL_EMPTY_SEGMENT, /* leading/trailing/double dot               */
        CHANNEL_GT_NOT_LAST,   /* '>' segment that is not the last one      */
        CHANNEL_BAD_SEGMENT,   /* a segment outside [A-Za-z0-9_-]+, '*', '>' */
} channel_check;

/* assertValidChannel(ch): segments are NOT trimmed. For CHANNEL_BAD_SEGMENT
 * *bad and *bad_len (may be NULL) point at the offending segment inside ch
 * (borrowed). Segments are checked left to right; the first failure wins,
 * and within one segment "empty" is checked before "'>' not last" before
 * "bad characters", as upstream does. */
channel_check contract_channel_check(const char *ch, const char **bad, size_t *bad_len);

/* isConcreteChannel(ch): false if some segment, after JS trim, is "*" or ">". */
bool contract_channel_is_concrete(const char *ch);

/* subjectMatches(pattern, name) of §1.3 (byte-equal tokens, '*' one token,
 * '>' one or more trailing tokens). */
bool contract_subject_matches(const char *pattern, const char *name);

/* channelInAllow(allow[], ch): some allow[i] covers ch. NULL entries are
 * skipped (they stand for the non-string ACL elements §4.3 says to ignore). */
bool contract_channel_in_allow(const char *const *allow, size_t n, const char *ch);

/* channelPath(ch) of §1.1: split on '.', JS-trim each segment, drop empty
 * ones, "_" if nothing is left, keep '*', keep '>' only as the last segment,
 * token() everything else, join with '.'. *out owned by the caller (free()).
 * Returns 0, -EINVAL ('>' not last), -EILSEQ (invalid UTF-8), -E2BIG (a
 * segment over CONTRACT_TOKEN_MAX_BYTES) or -ENOMEM. */
int contract_channel_path(const char *ch, char **out);

/* §4.2: a valid KV key matches ^[-/=.A-Za-z0-9_]+$ and neither starts nor
 * ends with '.'. A lookup of an invalid key is "absent", never an error. */
bool contract_kv_key_valid(const char *key);

/* §4.4 member key "<channel>/<owner>". Split at the FIRST '/'. A key with no
 * '/', or with '/' as its first or last character, is not a member key
 * (returns false). On success the spans point into key (borrowed). */
bool contract_member_key_parse(const char *key, const char **channel, size_t *channel_len, const char **owner,
                               size_t *owner_len);

/* "<channel>/<owner>"; *out owned by the caller. 0 or -ENOMEM. */
int contract_member_key(const char *channel, const char *owner, char **out);
