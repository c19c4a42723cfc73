/* contract_control: the ctl.delivery codec of PROTOCOL §5.4 / §8.2, the
 * exact texts of §8.4 and the channel argument of §8.5 (see
 * contract_control.h). Pure. */
#include "contract_control.h"

#include "contract_channel.h"
#include "contract_js.h"
#include "contract_json.h"
#include "contract_strbuf.h"
#include "contract_token.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* PROTOCOL §8.4 (U+2014 EM DASH is spelled out in UTF-8). */
const char CONTRACT_ERR_SENDER_MISMATCH[] = "sender mismatch \xe2\x80\x94 request rejected";
const char CONTRACT_ERR_LEAVE_GENERATION[] =
        "durableLeave: a finite generation is required (fail-closed stale-leave guard)";

/* Copies src into dst (size > 0), each byte that does not begin a valid
 * UTF-8 sequence replaced by '?', cut at a character boundary. */
static void utf8_sanitize(char *dst, size_t size, const char *src)
{
        size_t n = strlen(src), o = 0;

        for (size_t i = 0; i < n;) {
                unsigned char c = (unsigned char)src[i];
                size_t len = c < 0x80             ? 1
                             : (c & 0xE0) == 0xC0 ? 2
                             : (c & 0xF0) == 0xE0 ? 3
                             : (c & 0xF8) == 0xF0 ? 4
                                                  : 0;

                if (len == 0 || i + len > n || !contract_utf8_valid(src + i, len)) {
                        len = 1;
                        if (o + 1 >= size)
                                break;
                        dst[o++] = '?';
                } else {
                        if (o + len >= size)
                                break;
                        memcpy(dst + o, src + i, len);
                        o += len;
                }
                i += len;
        }
        dst[o] = '\0';
}

ctl_req_status contract_ctl_request_decode(const char *data, size_t len, const char *caller, contract_ctl_request *out)
{
        json_error_t jerr;
        json_t *root, *from, *id, *args;

        memset(out, 0, sizeof(*out));
        if (len > CONTRACT_MAX_REQUEST_BYTES) {
                snprintf(out->error, sizeof(out->error), "control request too large (%zu bytes, limit %d)", len,
                         CONTRACT_MAX_REQUEST_BYTES);
                return CTL_REQ_TOO_LARGE;
        }
        /* §8.2 step 2. Numbers are JavaScript numbers upstream, so a huge
         * integer is not a parse error (callers test "is a number"). */
        root = contract_json_load(data, len, true, NULL, &jerr);
        if (root == NULL) {
                /* The text goes into the reply (§8.2 step 2), which must be
                 * valid UTF-8, but jansson quotes raw input bytes ("invalid
                 * escape near '\"\\u1<lead byte>'"). */
                utf8_sanitize(out->error, sizeof(out->error), jerr.text);
                return json_error_code(&jerr) == json_error_out_of_memory ? CTL_REQ_NOMEM : CTL_REQ_NOT_JSON;
        }
        if (!json_is_object(root)) {
                snprintf(out->error, sizeof(out->error), "control request must be a JSON object, got %s",
                         contract_json_type_name(root));
                json_decref(root);
                return CTL_REQ_NOT_OBJECT;
        }
        out->root = root;
        out->op = json_object_get(root, "op");
        /* §8.2 step 3: from.id must be a string exactly equal to caller. */
        from = json_object_get(root, "from");
        id = json_is_object(from) ? json_object_get(from, "id") : NULL;
        if (json_is_string(id))
                out->from_id = json_string_value(id);
        if (out->from_id == NULL || caller == NULL || json_string_length(id) != strlen(caller) ||
            strcmp(out->from_id, caller) != 0) {
                snprintf(out->error, sizeof(out->error), "%s", CONTRACT_ERR_SENDER_MISMATCH);
                return CTL_REQ_SENDER_MISMATCH;
        }
        /* §8.2 step 5: absent or null args read as {}. The empty object is
         * stored in root so contract_ctl_request_fini frees it. */
        args = json_object_get(root, "args");
        if (args == NULL || json_is_null(args)) {
                args = json_object();
                if (args == NULL || json_object_set_new(root, "args", args) != 0) {
                        snprintf(out->error, sizeof(out->error), "out of memory");
                        return CTL_REQ_NOMEM;
                }
        }
        out->args = args;
        return CTL_REQ_OK;
}

void contract_ctl_request_fini(contract_ctl_request *r)
{
        if (r == NULL)
                return;
        json_decref(r->root);
        memset(r, 0, sizeof(*r));
}

char *contract_ctl_reply_ok(json_t *data)
{
        json_t *obj = json_object();
        char *s = NULL;
        int r;

        if (obj == NULL)
                return NULL;
        /* §5.4: data only with ok:true, omitted rather than null. */
        r = contract_json_set_new(obj, "ok", json_true());
        if (r == 0 && data != NULL && json_object_set(obj, "data", data) != 0)
                r = -ENOMEM;
        if (contract_json_finish(obj, r, &s) < 0)
                return NULL;
        return s;
}

char *contract_ctl_reply_error(const char *text)
{
        json_t *obj = json_object();
        char *s = NULL;
        int r;

        if (obj == NULL)
                return NULL;
        r = contract_json_set_new(obj, "ok", json_false());
        if (r == 0)
                r = contract_json_set_str(obj, "error", text);
        if (contract_json_finish(obj, r, &s) < 0)
                return NULL;
        return s;
}

/* ---- §8.4 error texts ---------------------------------------------------- */

char *contract_err_unknown_op(const json_t *op)
{
        char *text, *s;

        /* <op> in JS string conversion: a missing op reads "undefined". */
        if (contract_js_string(op, &text) < 0)
                return NULL;
        s = contract_printf("op \"%s\" not supported on the delivery control service", text);
        free(text);
        return s;
}

char *contract_err_blank_channel(const char *op)
{
        return op ? contract_printf("%s: channel must be a non-blank string", op) : NULL;
}

char *contract_err_empty_segment(const char *channel)
{
        return channel ? contract_printf("invalid channel \"%s\": empty segment (no "
                                         "leading/trailing/double dots)",
                                         channel)
                       : NULL;
}

char *contract_err_gt_not_last(const char *channel)
{
        return channel ? contract_printf("invalid channel \"%s\": '>' is only valid as the last "
                                         "segment",
                                         channel)
                       : NULL;
}

char *contract_err_bad_segment(const char *channel, const char *segment, size_t segment_len)
{
        if (channel == NULL || segment == NULL || segment_len > 0x7fffffff)
                return NULL;
        return contract_printf("invalid channel \"%s\": segment \"%.*s\" must be a NATS-safe token "
                               "([A-Za-z0-9_-]), '*', or '>' \xe2\x80\x94 policy channel names "
                               "can't contain characters the wire layer would rewrite",
                               channel, (int)segment_len, segment);
}

char *contract_err_wildcard(const char *op, const char *channel)
{
        if (op == NULL || channel == NULL)
                return NULL;
        return contract_printf("%s: \"%s\" must be a concrete channel (durable membership is "
                               "per-concrete-channel, not wildcard)",
                               op, channel);
}

char *contract_err_no_acl(const char *caller)
{
        return caller ? contract_printf("durableJoin: no read ACL on record for %s (not provisioned "
                                        "for durable delivery)",
                                        caller)
                      : NULL;
}

char *contract_err_outside_acl(const char *channel, const contract_acl *acl)
{
        contract_strbuf b = {0};
        bool first = true;
        char *s;

        if (channel == NULL || acl == NULL)
                return NULL;
        contract_sb_str(&b, "channel \"");
        contract_sb_str(&b, channel);
        contract_sb_str(&b, "\" is not within your read ACL [");
        for (size_t i = 0; i < acl->n_allow; i++) {
                if (acl->allow[i] == NULL)
                        continue;
                if (!first)
                        contract_sb_str(&b, ", ");
                contract_sb_str(&b, acl->allow[i]);
                first = false;
        }
        contract_sb_str(&b, "]");
        return contract_sb_finish(&b, &s) == 0 ? s : NULL;
}

char *contract_err_stale(const char *channel, const char *owner, const char *attempted, uint64_t stored)
{
        if (channel == NULL || owner == NULL || attempted == NULL)
                return NULL;
        /* §8.3: the '<' is literal whatever the comparison. */
        return contract_printf("stale membership write for %s/%s: generation %s < current %" PRIu64, channel, owner,
                               attempted, stored);
}

char *contract_err_cas_exhausted(const char *channel, const char *owner)
{
        if (channel == NULL || owner == NULL)
                return NULL;
        return contract_printf("members CAS exhausted retries for %s/%s", channel, owner);
}

/* ---- §8.5 channel argument ----------------------------------------------- */

int contract_channel_arg(const char *op, const json_t *args, char **channel, char **error)
{
        const json_t *v = json_is_object(args) ? json_object_get(args, "channel") : NULL;
        const char *s, *bad = NULL;
        size_t len, start, tlen, bad_len = 0;
        char *ch;

        *channel = NULL;
        *error = NULL;
        if (op == NULL)
                return -EINVAL;
        if (!json_is_string(v))
                goto blank;
        s = json_string_value(v);
        len = json_string_length(v);
        if (contract_js_trim(s, len, &start, &tlen) < 0) {
                /* Unreachable for parsed JSON (jansson checks UTF-8); keep
                 * the bytes and let assertValidChannel reject them. */
                start = 0;
                tlen = len;
        }
        if (tlen == 0)
                goto blank;
        ch = strndup(s + start, tlen);
        if (ch == NULL)
                return -ENOMEM;
        if (strlen(ch) != tlen) {
                /* An embedded NUL (only possible in hand-built values) is a
                 * character outside [A-Za-z0-9_-]. */
                *error = contract_err_bad_segment(ch, ch, strlen(ch));
                goto invalid;
        }
        switch (contract_channel_check(ch, &bad, &bad_len)) {
        case CHANNEL_VALID: break;
        case CHANNEL_EMPTY: free(ch); goto blank;
        case CHANNEL_EMPTY_SEGMENT: *error = contract_err_empty_segment(ch); goto invalid;
        case CHANNEL_GT_NOT_LAST: *error = contract_err_gt_not_last(ch); goto invalid;
        case CHANNEL_BAD_SEGMENT: *error = contract_err_bad_segment(ch, bad, bad_len); goto invalid;
        }
        if (!contract_channel_is_concrete(ch)) {
                *error = contract_err_wildcard(op, ch);
                goto invalid;
        }
        *channel = ch;
        return 0;
blank:
        *error = contract_err_blank_channel(op);
        return *error ? -EINVAL : -ENOMEM;
invalid:
        free(ch);
        return *error ? -EINVAL : -ENOMEM;
}
