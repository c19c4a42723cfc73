/* contract_record: jansson codecs for every JSON body of the wire contract
 * (PROTOCOL §4.3-§4.6, §5.1-§5.4, §8.2-§8.5) and the exact §8.4 texts.
 * Decoders are strict and never default silently; encoders omit absent
 * optional fields and never write null (§4.2). No I/O. */
#include "contract_record.h"

#include "contract_channel.h"
#include "contract_js.h"
#include "contract_json.h"
#include "contract_strbuf.h"
#include "contract_token.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A dinbox entry is a chat body (at most CONTRACT_MAX_MSG_BYTES) plus the
 * envelope of §5.2; the channel comes from a subject, so this is ample. */
#define ENTRY_ENVELOPE_MAX_BYTES (64 * 1024)
#define ENTRY_MAX_BYTES (CONTRACT_MAX_MSG_BYTES + ENTRY_ENVELOPE_MAX_BYTES)

/* ---- small helpers ------------------------------------------------------ */

/* Strings that end up in NATS headers (dedup ids) must not be able to
 * break the header block. */
static bool header_safe(const json_t *s)
{
        const char *p = json_string_value(s);
        size_t n = json_string_length(s);

        return !memchr(p, '\r', n) && !memchr(p, '\n', n) && !memchr(p, '\0', n);
}

static bool c_header_safe(const char *s)
{
        return strpbrk(s, "\r\n") == NULL;
}

/* True if s can be written between quotes as is: printable ASCII without
 * '"' or '\\' (what jansson would escape, it would also change). */
static bool plain_json_string(const char *s)
{
        for (; *s; s++)
                if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e || *s == '"' || *s == '\\')
                        return false;
        return true;
}

/* ---- errors ------------------------------------------------------------- */

const char *rec_status_name(rec_status s)
{
        switch (s) {
        case REC_OK: return "ok";
        case REC_E_TOO_LARGE: return "too large";
        case REC_E_NOT_JSON: return "not JSON";
        case REC_E_NOT_OBJECT: return "not an object";
        case REC_E_MISSING: return "missing field";
        case REC_E_TYPE: return "wrong type";
        case REC_E_RANGE: return "out of range";
        case REC_E_VALUE: return "invalid value";
        case REC_E_NOMEM: return "out of memory";
        }
        return "unknown status";
}

const char *rec_error_str(const rec_error *err, char *buf, size_t size)
{
        const char *name;

        if (buf == NULL || size == 0)
                return buf;
        if (err == NULL) {
                snprintf(buf, size, "%s", rec_status_name(REC_OK));
                return buf;
        }
        name = rec_status_name(err->status);
        if (err->field[0] && err->detail[0])
                snprintf(buf, size, "%s %s: %s", name, err->field, err->detail);
        else if (err->field[0])
                snprintf(buf, size, "%s %s", name, err->field);
        else if (err->detail[0])
                snprintf(buf, size, "%s: %s", name, err->detail);
        else
                snprintf(buf, size, "%s", name);
        return buf;
}

static void err_reset(rec_error *err)
{
        if (err)
                memset(err, 0, sizeof(*err));
}

__attribute__((format(printf, 4, 5))) static rec_status set_err(rec_error *err, rec_status st, const char *field,
                                                                const char *fmt, ...)
{
        va_list ap;

        if (err == NULL)
                return st;
        err->status = st;
        snprintf(err->field, sizeof(err->field), "%s", field);
        va_start(ap, fmt);
        vsnprintf(err->detail, sizeof(err->detail), fmt, ap);
        va_end(ap);
        return st;
}

/* ---- decoding helpers --------------------------------------------------- */

/* Size check, parse, top-level object check: the common first steps of
 * every record decoder. *root is owned by the caller on success. */
static rec_status parse_object(const char *data, size_t len, size_t max, bool int_fallback, json_t **root,
                               bool *as_real, rec_error *err)
{
        json_error_t jerr;
        json_t *v;

        *root = NULL;
        if (len > max)
                return set_err(err, REC_E_TOO_LARGE, "", "%zu bytes, limit %zu", len, max);
        v = contract_json_load(data, len, int_fallback, as_real, &jerr);
        if (v == NULL) {
                if (json_error_code(&jerr) == json_error_out_of_memory)
                        return set_err(err, REC_E_NOMEM, "", "%s", jerr.text);
                return set_err(err, REC_E_NOT_JSON, "", "%s", jerr.text);
        }
        if (!json_is_object(v)) {
                rec_status st = set_err(err, REC_E_NOT_OBJECT, "", "top level is %s", contract_json_type_name(v));

                json_decref(v);
                return st;
        }
        *root = v;
        return REC_OK;
}

/* obj[name]; JSON null counts as absent (writers never store null, §4.2). */
static json_t *field_get(const json_t *obj, const char *name)
{
        json_t *v = json_object_get(obj, name);

        return json_is_null(v) ? NULL : v;
}

static rec_status need_object(const json_t *obj, const char *name, const char *path, json_t **out, rec_error *err)
{
        json_t *v = field_get(obj, name);

        if (v == NULL)
                return set_err(err, REC_E_MISSING, path, "required object");
        if (!json_is_object(v))
                return set_err(err, REC_E_TYPE, path, "expected an object, got %s", contract_json_type_name(v));
        *out = v;
        return REC_OK;
}

static rec_status need_string(const json_t *obj, const char *name, const char *path, bool for_header, json_t **out,
                              rec_error *err)
{
        json_t *v = field_get(obj, name);

        if (v == NULL)
                return set_err(err, REC_E_MISSING, path, "required string");
        if (!json_is_string(v))
                return set_err(err, REC_E_TYPE, path, "expected a string, got %s", contract_json_type_name(v));
        if (for_header && !header_safe(v))
                return set_err(err, REC_E_VALUE, path, "contains CR, LF or NUL");
        *out = v;
        return REC_OK;
}

/* An integer in [min, 2^53-1] (JavaScript-safe, §4.2). reals_ok is set only
 * after the INT_AS_REAL fallback, when 5 and 5.0 can no longer be told
 * apart: integral reals are then accepted. */
static rec_status get_uint(const json_t *obj, const char *name, const char *path, bool required, bool reals_ok,
                           uint64_t min, bool *present, uint64_t *out, rec_error *err)
{
        json_t *v = field_get(obj, name);

        if (present)
                *present = false;
        if (v == NULL)
                return required ? set_err(err, REC_E_MISSING, path, "required integer") : REC_OK;
        if (json_is_integer(v)) {
                json_int_t i = json_integer_value(v);

                if (i < (json_int_t)min || i > CONTRACT_MAX_SAFE_INTEGER)
                        return set_err(err, REC_E_RANGE, path, "%" JSON_INTEGER_FORMAT " not in %" PRIu64 "..2^53-1", i,
                                       min);
                *out = (uint64_t)i;
        } else if (reals_ok && json_is_real(v)) {
                double d = json_real_value(v);

                if (!(d >= (double)min && d <= (double)CONTRACT_MAX_SAFE_INTEGER))
                        return set_err(err, REC_E_RANGE, path, "%g not in %" PRIu64 "..2^53-1", d, min);
                if ((double)(uint64_t)d != d)
                        return set_err(err, REC_E_TYPE, path, "expected an integer, got %g", d);
                *out = (uint64_t)d;
        } else {
                return set_err(err, REC_E_TYPE, path, "expected an integer, got %s", contract_json_type_name(v));
        }
        if (present)
                *present = true;
        return REC_OK;
}

static rec_status get_bool(const json_t *obj, const char *name, const char *path, bool required, bool *present,
                           bool *out, rec_error *err)
{
        json_t *v = field_get(obj, name);

        if (present)
                *present = false;
        if (v == NULL)
                return required ? set_err(err, REC_E_MISSING, path, "required boolean") : REC_OK;
        if (!json_is_boolean(v))
                return set_err(err, REC_E_TYPE, path, "expected a boolean, got %s", contract_json_type_name(v));
        *out = json_is_true(v);
        if (present)
                *present = true;
        return REC_OK;
}

/* strdup of a string field into *out; REC_E_NOMEM on failure. */
static rec_status copy_string(const json_t *s, char **out, rec_error *err)
{
        *out = strndup(json_string_value(s), json_string_length(s));
        if (*out == NULL)
                return set_err(err, REC_E_NOMEM, "", "strdup");
        return REC_OK;
}

static bool json_str_is(const json_t *v, const char *lit)
{
        return json_is_string(v) && json_string_length(v) == strlen(lit) &&
               memcmp(json_string_value(v), lit, json_string_length(v)) == 0;
}

/* ---- encoding helpers --------------------------------------------------- */

/* Integers are written as JSON integers in 0..2^53-1 (§4.2): anything else
 * would not survive a JavaScript reader, nor our own decoder. */
static int set_uint(json_t *obj, const char *key, int64_t v)
{
        if (v < 0 || v > CONTRACT_MAX_SAFE_INTEGER)
                return -EINVAL;
        return contract_json_set_new(obj, key, json_integer((json_int_t)v));
}

/* ---- chat message (§5.1, §6.1) ----------------------------------------- */

rec_status contract_chat_decode(const char *data, size_t len, contract_chat *out, rec_error *err)
{
        json_t *root, *id, *from, *from_id;
        rec_status st;

        memset(out, 0, sizeof(*out));
        err_reset(err);
        st = parse_object(data, len, CONTRACT_MAX_MSG_BYTES, true, &root, NULL, err);
        if (st != REC_OK)
                return st;
        /* §6.1 step 3 [hardening] then step 4: id, then from.id. */
        if ((st = need_string(root, "id", "id", true, &id, err)) != REC_OK ||
            (st = need_object(root, "from", "from", &from, err)) != REC_OK ||
            (st = need_string(from, "id", "from.id", false, &from_id, err)) != REC_OK) {
                json_decref(root);
                return st;
        }
        out->root = root;
        out->id = json_string_value(id);
        out->from_id = json_string_value(from_id);
        /* §6.3: any type is passed on; the fan-out treats a non-array as []. */
        out->mentions = json_object_get(root, "mentions");
        return REC_OK;
}

void contract_chat_fini(contract_chat *c)
{
        if (c == NULL)
                return;
        json_decref(c->root);
        memset(c, 0, sizeof(*c));
}

/* ---- dinbox entry (§5.2, §7) ------------------------------------------- */

rec_status contract_entry_decode(const char *data, size_t len, contract_entry *out, rec_error *err)
{
        json_t *root, *msg, *msg_id, *channel;
        uint64_t seq = 0, generation = 0;
        bool as_real;
        rec_status st;

        memset(out, 0, sizeof(*out));
        err_reset(err);
        /* The embedded msg may carry integers beyond int64 (§5.1). */
        st = parse_object(data, len, ENTRY_MAX_BYTES, true, &root, &as_real, err);
        if (st != REC_OK)
                return st;
        /* §7 row 2a: msg object with a string id, channel string, seq
         * integer; generation is needed for the dedup id (§5.3). */
        if ((st = need_object(root, "msg", "msg", &msg, err)) != REC_OK ||
            (st = need_string(msg, "id", "msg.id", true, &msg_id, err)) != REC_OK ||
            (st = need_string(root, "channel", "channel", false, &channel, err)) != REC_OK ||
            (st = get_uint(root, "seq", "seq", true, as_real, 0, NULL, &seq, err)) != REC_OK ||
            (st = get_uint(root, "generation", "generation", true, as_real, 0, NULL, &generation, err)) != REC_OK) {
                json_decref(root);
                return st;
        }
        out->root = root;
        out->msg = msg;
        out->msg_id = json_string_value(msg_id);
        out->channel = json_string_value(channel);
        out->seq = seq;
        out->generation = generation;
        /* §7: only the exact strings count; anything else (absent, other
         * types) is not "durable-channel". */
        {
                json_t *reason = json_object_get(root, "reason");

                if (json_str_is(reason, "durable-channel"))
                        out->reason = REASON_DURABLE_CHANNEL;
                else if (json_str_is(reason, "live-mention"))
                        out->reason = REASON_LIVE_MENTION;
                else
                        out->reason = REASON_OTHER;
        }
        return REC_OK;
}

void contract_entry_fini(contract_entry *e)
{
        if (e == NULL)
                return;
        json_decref(e->root);
        memset(e, 0, sizeof(*e));
}

int contract_entry_encode(const char *msg_json, size_t msg_len, const char *channel, uint64_t seq,
                          contract_reason reason, uint64_t generation, char **out, size_t *out_len)
{
        const char *reason_str;
        json_t *jch;
        char *ch_json = NULL;
        size_t ch_len;
        contract_strbuf b = {0};
        char num[64];
        int r;

        *out = NULL;
        if (out_len)
                *out_len = 0;
        if (msg_json == NULL || msg_len == 0 || channel == NULL || seq > (uint64_t)CONTRACT_MAX_SAFE_INTEGER ||
            generation > (uint64_t)CONTRACT_MAX_SAFE_INTEGER)
                return -EINVAL;
        if (reason == REASON_DURABLE_CHANNEL)
                reason_str = "durable-channel";
        else if (reason == REASON_LIVE_MENTION)
                reason_str = "live-mention";
        else
                return -EINVAL;
        if (!contract_utf8_valid(channel, strlen(channel)))
                return -EINVAL;
        if (plain_json_string(channel)) {
                /* The common case, once per recipient: nothing to escape. */
                ch_len = strlen(channel);
        } else {
                /* jansson escapes the channel, so any byte sequence stays JSON. */
                jch = json_string(channel);
                if (jch == NULL)
                        return -ENOMEM;
                r = contract_json_dump(jch, &ch_json, &ch_len);
                json_decref(jch);
                if (r < 0)
                        return r;
        }
        /* §5.2: msg is embedded verbatim (semantic preservation for free). */
        contract_sb_str(&b, "{\"msg\":");
        contract_sb_add(&b, msg_json, msg_len);
        contract_sb_str(&b, ",\"channel\":");
        if (ch_json) {
                contract_sb_add(&b, ch_json, ch_len);
        } else {
                contract_sb_add(&b, "\"", 1);
                contract_sb_add(&b, channel, ch_len);
                contract_sb_add(&b, "\"", 1);
        }
        snprintf(num, sizeof(num), ",\"seq\":%" PRIu64 ",\"reason\":\"", seq);
        contract_sb_str(&b, num);
        contract_sb_str(&b, reason_str);
        snprintf(num, sizeof(num), "\",\"generation\":%" PRIu64 "}", generation);
        contract_sb_str(&b, num);
        free(ch_json);
        r = contract_sb_finish(&b, out);
        if (r == 0 && out_len)
                *out_len = b.len;
        return r;
}

int contract_deliver_body(const contract_entry *e, char **out, size_t *out_len)
{
        *out = NULL;
        if (out_len)
                *out_len = 0;
        if (e == NULL || !json_is_object(e->msg))
                return -EINVAL;
        /* §5.3: the msg object alone, no envelope. */
        return contract_json_dump(e->msg, out, out_len);
}

/* ---- ACL record (§4.3) -------------------------------------------------- */

bool contract_acl_read(const char *data, size_t len, contract_acl *out, char *why, size_t why_size)
{
        rec_error err;
        char buf[160];
        if (contract_acl_decode(data ? data : "", len, out, &err) == REC_OK)
                return true;
        memset(out, 0, sizeof *out);
        snprintf(why, why_size, "unreadable ACL record: %s", rec_error_str(&err, buf, sizeof buf));
        return false;
}

rec_status contract_acl_decode(const char *data, size_t len, contract_acl *out, rec_error *err)
{
        json_t *root, *allow, *el;
        uint64_t v = 0;
        size_t i;
        rec_status st;

        memset(out, 0, sizeof(*out));
        err_reset(err);
        st = parse_object(data, len, CONTRACT_MAX_RECORD_BYTES, false, &root, NULL, err);
        if (st != REC_OK)
                return st;
        allow = field_get(root, "allowSubscribe");
        if (allow == NULL) {
                st = set_err(err, REC_E_MISSING, "allowSubscribe", "required array");
                goto fail;
        }
        if (!json_is_array(allow)) {
                st = set_err(err, REC_E_TYPE, "allowSubscribe", "expected an array, got %s",
                             contract_json_type_name(allow));
                goto fail;
        }
        if ((st = get_uint(root, "revision", "revision", false, false, 0, &out->has_revision, &v, err)) != REC_OK)
                goto fail;
        out->revision = (int64_t)v;
        if ((st = get_uint(root, "updatedAt", "updatedAt", false, false, 0, &out->has_updated_at, &v, err)) != REC_OK)
                goto fail;
        out->updated_at = (int64_t)v;
        if (json_array_size(allow) > 0) {
                out->allow = calloc(json_array_size(allow), sizeof(*out->allow));
                if (out->allow == NULL) {
                        st = set_err(err, REC_E_NOMEM, "allowSubscribe", "calloc");
                        goto fail;
                }
        }
        json_array_foreach (allow, i, el) {
                /* §4.3: non-string elements are ignored (upstream crashes). */
                if (!json_is_string(el)) {
                        out->ignored++;
                        continue;
                }
                if ((st = copy_string(el, &out->allow[out->n_allow], err)) != REC_OK)
                        goto fail;
                out->n_allow++;
        }
        json_decref(root);
        return REC_OK;
fail:
        json_decref(root);
        contract_acl_fini(out);
        return st;
}

void contract_acl_fini(contract_acl *a)
{
        if (a == NULL)
                return;
        for (size_t i = 0; i < a->n_allow; i++)
                free(a->allow[i]);
        free(a->allow);
        memset(a, 0, sizeof(*a));
}

int contract_acl_encode(const contract_acl *a, char **out)
{
        json_t *obj, *arr;
        int r = 0;

        *out = NULL;
        if (a == NULL || (a->n_allow > 0 && a->allow == NULL))
                return -EINVAL;
        obj = json_object();
        if (obj == NULL)
                return -ENOMEM;
        arr = json_array();
        r = contract_json_set_new(obj, "allowSubscribe", arr);
        for (size_t i = 0; r == 0 && i < a->n_allow; i++) {
                if (a->allow[i] == NULL)
                        continue;
                if (!contract_utf8_valid(a->allow[i], strlen(a->allow[i])))
                        r = -EINVAL;
                else if (json_array_append_new(arr, json_string(a->allow[i])) != 0)
                        r = -ENOMEM;
        }
        if (r == 0 && a->has_revision)
                r = set_uint(obj, "revision", a->revision);
        if (r == 0 && a->has_updated_at)
                r = set_uint(obj, "updatedAt", a->updated_at);
        return contract_json_finish(obj, r, out);
}

/* ---- membership record (§4.4) ------------------------------------------ */

/* An optional string: absent/null is fine (*out NULL), a wrong type is
 * not. */
static rec_status opt_string(const json_t *obj, const char *name, json_t **out, rec_error *err)
{
        *out = NULL;
        if (field_get(obj, name) == NULL)
                return REC_OK;
        return need_string(obj, name, name, false, out, err);
}

rec_status contract_member_decode(const char *data, size_t len, contract_member *out, rec_error *err)
{
        json_t *root, *channel, *owner, *state, *writer;
        uint64_t v = 0;
        bool present = false, activated = false;
        rec_status st;

        memset(out, 0, sizeof(*out));
        err_reset(err);
        st = parse_object(data, len, CONTRACT_MAX_RECORD_BYTES, false, &root, NULL, err);
        if (st != REC_OK)
                return st;
        /* §4.4 [hardening]: a record is unreadable when it is not an object
         * or lacks an integer joinCursor or generation; owner is needed too,
         * as it becomes a subject token and part of a header. The other
         * fields are optional for reading (records written by other tools
         * may lack the diagnostic ones), but must have the right type when
         * present. */
        if ((st = need_string(root, "owner", "owner", true, &owner, err)) != REC_OK ||
            (st = opt_string(root, "channel", &channel, err)) != REC_OK ||
            (st = opt_string(root, "state", &state, err)) != REC_OK)
                goto fail;
        if ((st = get_uint(root, "joinCursor", "joinCursor", true, false, 0, NULL, &out->join_cursor, err)) != REC_OK ||
            (st = get_uint(root, "leaveCursor", "leaveCursor", false, false, 0, &out->has_leave_cursor,
                           &out->leave_cursor, err)) != REC_OK ||
            /* §4.4: generation >= 1 */
            (st = get_uint(root, "generation", "generation", true, false, 1, NULL, &out->generation, err)) != REC_OK ||
            (st = get_bool(root, "activated", "activated", false, &present, &activated, err)) != REC_OK ||
            (st = opt_string(root, "writerIdentity", &writer, err)) != REC_OK ||
            (st = get_uint(root, "updatedAt", "updatedAt", false, false, 0, NULL, &v, err)) != REC_OK)
                goto fail;
        out->updated_at = (int64_t)v;
        out->activated = !present    ? MEMBER_ACTIVATED_ABSENT
                         : activated ? MEMBER_ACTIVATED_TRUE
                                     : MEMBER_ACTIVATED_FALSE;
        /* A missing state is an "odd state" (§8.6), as upstream reads it. */
        if (json_str_is(state, "durable-active"))
                out->state = MEMBER_STATE_DURABLE_ACTIVE;
        else if (json_str_is(state, "live-confirmed"))
                out->state = MEMBER_STATE_LIVE_CONFIRMED;
        else
                out->state = MEMBER_STATE_OTHER;
        if ((channel && (st = copy_string(channel, &out->channel, err)) != REC_OK) ||
            (st = copy_string(owner, &out->owner, err)) != REC_OK ||
            (state && (st = copy_string(state, &out->state_raw, err)) != REC_OK) ||
            (writer && (st = copy_string(writer, &out->writer_identity, err)) != REC_OK))
                goto fail;
        json_decref(root);
        return REC_OK;
fail:
        json_decref(root);
        contract_member_fini(out);
        return st;
}

void contract_member_fini(contract_member *m)
{
        if (m == NULL)
                return;
        free(m->channel);
        free(m->owner);
        free(m->state_raw);
        free(m->writer_identity);
        memset(m, 0, sizeof(*m));
}

int contract_member_encode(const contract_member *m, char **out)
{
        const char *state;
        json_t *obj;
        int r = 0;

        *out = NULL;
        if (m == NULL || m->owner == NULL || !c_header_safe(m->owner) || m->generation < 1 ||
            m->join_cursor > (uint64_t)CONTRACT_MAX_SAFE_INTEGER ||
            m->generation > (uint64_t)CONTRACT_MAX_SAFE_INTEGER ||
            (m->has_leave_cursor && m->leave_cursor > (uint64_t)CONTRACT_MAX_SAFE_INTEGER))
                return -EINVAL;
        /* The daemon only ever writes the two states of §4.4. */
        if (m->state == MEMBER_STATE_DURABLE_ACTIVE)
                state = "durable-active";
        else if (m->state == MEMBER_STATE_LIVE_CONFIRMED)
                state = "live-confirmed";
        else
                return -EINVAL;
        obj = json_object();
        if (obj == NULL)
                return -ENOMEM;
        /* Field order of the §4.4 examples. The daemon always sets channel
         * and writerIdentity; a record read without them keeps them absent
         * (§4.2: omit, never null). */
        if (m->channel)
                r = contract_json_set_str(obj, "channel", m->channel);
        if (r == 0)
                r = contract_json_set_str(obj, "owner", m->owner);
        if (r == 0)
                r = contract_json_set_str(obj, "state", state);
        if (r == 0)
                r = set_uint(obj, "joinCursor", (int64_t)m->join_cursor);
        if (r == 0)
                r = set_uint(obj, "generation", (int64_t)m->generation);
        if (r == 0 && m->activated != MEMBER_ACTIVATED_ABSENT)
                r = contract_json_set_new(obj, "activated", json_boolean(m->activated == MEMBER_ACTIVATED_TRUE));
        if (r == 0 && m->writer_identity)
                r = contract_json_set_str(obj, "writerIdentity", m->writer_identity);
        if (r == 0)
                r = set_uint(obj, "updatedAt", m->updated_at);
        if (r == 0 && m->has_leave_cursor)
                r = set_uint(obj, "leaveCursor", (int64_t)m->leave_cursor);
        return contract_json_finish(obj, r, out);
}

bool contract_member_eligible(const contract_member *m, uint64_t seq)
{
        if (m == NULL)
                return false;
        /* §4.4 durableEligible; state and activated are ignored. */
        return seq > m->join_cursor && (!m->has_leave_cursor || seq <= m->leave_cursor);
}

/* ---- lease record (§4.5) ------------------------------------------------ */

rec_status contract_lease_decode(const char *data, size_t len, contract_lease *out, rec_error *err)
{
        json_t *root, *holder;
        uint64_t since = 0;
        rec_status st;

        memset(out, 0, sizeof(*out));
        err_reset(err);
        st = parse_object(data, len, CONTRACT_MAX_RECORD_BYTES, false, &root, NULL, err);
        if (st != REC_OK)
                return st;
        if ((st = need_string(root, "holder", "holder", false, &holder, err)) != REC_OK ||
            (st = get_uint(root, "since", "since", true, false, 0, NULL, &since, err)) != REC_OK ||
            (st = get_bool(root, "ready", "ready", true, NULL, &out->ready, err)) != REC_OK ||
            (st = copy_string(holder, &out->holder, err)) != REC_OK) {
                json_decref(root);
                contract_lease_fini(out);
                return st;
        }
        out->since = (int64_t)since;
        json_decref(root);
        return REC_OK;
}

void contract_lease_fini(contract_lease *l)
{
        if (l == NULL)
                return;
        free(l->holder);
        memset(l, 0, sizeof(*l));
}

int contract_lease_encode(const char *holder, int64_t since_ms, bool ready, char **out)
{
        json_t *obj;
        int r;

        *out = NULL;
        obj = json_object();
        if (obj == NULL)
                return -ENOMEM;
        r = contract_json_set_str(obj, "holder", holder);
        if (r == 0)
                r = set_uint(obj, "since", since_ms);
        if (r == 0)
                r = contract_json_set_new(obj, "ready", json_boolean(ready));
        return contract_json_finish(obj, r, out);
}

/* ---- channel registry (§4.6) -------------------------------------------- */

contract_class contract_class_of(const char *value, size_t len)
{
        json_error_t jerr;
        json_t *root, *cls;
        contract_class c = CLASS_UNSET;

        if (value == NULL || len > CONTRACT_MAX_RECORD_BYTES)
                return CLASS_UNSET;
        /* Only deliveryClass is read, so a huge integer elsewhere must not
         * make the config unreadable. */
        root = contract_json_load(value, len, true, NULL, &jerr);
        if (root == NULL)
                return CLASS_UNSET;
        cls = json_is_object(root) ? field_get(root, "deliveryClass") : NULL;
        if (cls != NULL)
                c = json_str_is(cls, "durable") ? CLASS_DURABLE : CLASS_OTHER;
        json_decref(root);
        return c;
}

bool contract_class_is_durable(contract_class cfg, contract_class dflt)
{
        /* §4.6: first set of cfg, =defaults, else "durable". */
        contract_class eff = cfg != CLASS_UNSET ? cfg : dflt != CLASS_UNSET ? dflt : CLASS_DURABLE;

        return eff == CLASS_DURABLE;
}

/* ---- control request / reply (§5.4, §8.2) ------------------------------- */
