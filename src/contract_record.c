/* contract_record: jansson codecs for every JSON body of the wire contract
 * (PROTOCOL §4.3-§4.6, §5.1-§5.4, §8.2-§8.5) and the exact §8.4 texts.
 * Decoders are strict and never default silently; encoders omit absent
 * optional fields and never write null (§4.2). No I/O. */
#include "contract_record.h"

#include "contract_channel.h"
#include "contract_token.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* PROTOCOL §8.4 (U+2014 EM DASH is spelled out in UTF-8). */
const char CONTRACT_ERR_SENDER_MISMATCH[] = "sender mismatch \xe2\x80\x94 request rejected";
const char CONTRACT_ERR_LEAVE_GENERATION[] =
        "durableLeave: a finite generation is required (fail-closed stale-leave guard)";

/* A dinbox entry is a chat body (at most CONTRACT_MAX_MSG_BYTES) plus the
 * envelope of §5.2; the channel comes from a subject, so this is ample. */
#define ENTRY_ENVELOPE_MAX_BYTES (64 * 1024)
#define ENTRY_MAX_BYTES (CONTRACT_MAX_MSG_BYTES + ENTRY_ENVELOPE_MAX_BYTES)

/* Nesting bound for JS string conversion of hand-built values (parsed ones
 * are already bounded by jansson's JSON_PARSER_MAX_DEPTH). */
#define JS_STRING_MAX_DEPTH 2048

/* ---- small helpers ------------------------------------------------------ */

__attribute__((format(printf, 1, 2))) static char *str_printf(const char *fmt, ...)
{
        va_list ap;
        char *buf;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0)
                return NULL;
        buf = malloc((size_t)n + 1);
        if (buf == NULL)
                return NULL;
        va_start(ap, fmt);
        vsnprintf(buf, (size_t)n + 1, fmt, ap);
        va_end(ap);
        return buf;
}

/* A growing string; after the first allocation failure every append is a
 * no-op and sb_finish() reports it, so callers check once. */
typedef struct strbuf {
        char *p;
        size_t len;
        size_t cap;
        bool failed;
} strbuf;

static void sb_add(strbuf *b, const char *s, size_t n)
{
        if (b->failed)
                return;
        if (b->len + n + 1 > b->cap) {
                size_t cap = b->cap ? b->cap : 64;
                char *p;

                while (cap < b->len + n + 1)
                        cap *= 2;
                p = realloc(b->p, cap);
                if (p == NULL) {
                        b->failed = true;
                        return;
                }
                b->p = p;
                b->cap = cap;
        }
        if (n > 0)
                memcpy(b->p + b->len, s, n);
        b->len += n;
        b->p[b->len] = '\0';
}

static void sb_str(strbuf *b, const char *s)
{
        sb_add(b, s, strlen(s));
}

/* Hands the string to *out (owned by the caller). 0 or -ENOMEM. */
static int sb_finish(strbuf *b, char **out)
{
        if (!b->failed && b->p == NULL)
                sb_add(b, "", 0);
        if (b->failed) {
                free(b->p);
                *out = NULL;
                return -ENOMEM;
        }
        *out = b->p;
        return 0;
}

static const char *type_name(const json_t *v)
{
        switch (json_typeof(v)) {
        case JSON_OBJECT: return "object";
        case JSON_ARRAY: return "array";
        case JSON_STRING: return "string";
        case JSON_INTEGER: return "integer";
        case JSON_REAL: return "real";
        case JSON_TRUE: return "true";
        case JSON_FALSE: return "false";
        case JSON_NULL: return "null";
        }
        return "unknown";
}

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

/* Serialises v compactly into a malloc'd NUL-terminated buffer (owned by
 * the caller). 0, -EINVAL (jansson refused, e.g. invalid UTF-8) or -ENOMEM. */
static int dump_compact(const json_t *v, char **out, size_t *out_len)
{
        size_t flags = JSON_COMPACT | JSON_ENCODE_ANY;
        size_t n = json_dumpb(v, NULL, 0, flags);
        char *buf;

        *out = NULL;
        if (n == 0)
                return -EINVAL;
        buf = malloc(n + 1);
        if (buf == NULL)
                return -ENOMEM;
        if (json_dumpb(v, buf, n, flags) != n) {
                free(buf);
                return -EINVAL;
        }
        buf[n] = '\0';
        *out = buf;
        if (out_len)
                *out_len = n;
        return 0;
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

/* Parses any JSON value (flags never include JSON_ALLOW_NUL, so \u0000 and
 * invalid UTF-8 are "not JSON"; trailing bytes are rejected). With
 * int_fallback, an integer too big for jansson is retried with
 * JSON_DECODE_INT_AS_REAL (PROTOCOL §5.1) and *as_real says so. */
static json_t *load_json(const char *data, size_t len, bool int_fallback, bool *as_real, json_error_t *jerr)
{
        json_t *v;

        if (as_real)
                *as_real = false;
        if (data == NULL) {
                data = "";
                len = 0;
        }
        /* A raw NUL is never JSON (not white space, and not allowed unescaped
         * in a string), but jansson 2.14 drops one that directly follows a
         * number or a literal ({"n":1<NUL>} loads as {"n":1}), and a body
         * embedded verbatim (§5.2) would carry it on. Found by fuzz_chat. */
        {
                const char *nul = memchr(data, '\0', len);

                if (nul != NULL) {
                        memset(jerr, 0, sizeof(*jerr));
                        snprintf(jerr->text, sizeof(jerr->text), "NUL byte at position %zu", (size_t)(nul - data));
                        jerr->position = (int)(nul - data);
                        return NULL;
                }
        }
        v = json_loadb(data, len, JSON_DECODE_ANY, jerr);
        if (v == NULL && int_fallback && json_error_code(jerr) == json_error_numeric_overflow) {
                v = json_loadb(data, len, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, jerr);
                if (v && as_real)
                        *as_real = true;
        }
        return v;
}

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
        v = load_json(data, len, int_fallback, as_real, &jerr);
        if (v == NULL) {
                if (json_error_code(&jerr) == json_error_out_of_memory)
                        return set_err(err, REC_E_NOMEM, "", "%s", jerr.text);
                return set_err(err, REC_E_NOT_JSON, "", "%s", jerr.text);
        }
        if (!json_is_object(v)) {
                rec_status st = set_err(err, REC_E_NOT_OBJECT, "", "top level is %s", type_name(v));

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
                return set_err(err, REC_E_TYPE, path, "expected an object, got %s", type_name(v));
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
                return set_err(err, REC_E_TYPE, path, "expected a string, got %s", type_name(v));
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
                return set_err(err, REC_E_TYPE, path, "expected an integer, got %s", type_name(v));
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
                return set_err(err, REC_E_TYPE, path, "expected a boolean, got %s", type_name(v));
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

static int set_new(json_t *obj, const char *key, json_t *v)
{
        if (v == NULL)
                return -ENOMEM;
        return json_object_set_new(obj, key, v) == 0 ? 0 : -ENOMEM;
}

static int set_str(json_t *obj, const char *key, const char *s)
{
        if (s == NULL || !contract_utf8_valid(s, strlen(s)))
                return -EINVAL;
        return set_new(obj, key, json_string(s));
}

/* Integers are written as JSON integers in 0..2^53-1 (§4.2): anything else
 * would not survive a JavaScript reader, nor our own decoder. */
static int set_uint(json_t *obj, const char *key, int64_t v)
{
        if (v < 0 || v > CONTRACT_MAX_SAFE_INTEGER)
                return -EINVAL;
        return set_new(obj, key, json_integer((json_int_t)v));
}

static int finish_object(json_t *obj, int r, char **out)
{
        if (r == 0)
                r = dump_compact(obj, out, NULL);
        json_decref(obj);
        return r;
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
        strbuf b = {0};
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
                r = dump_compact(jch, &ch_json, &ch_len);
                json_decref(jch);
                if (r < 0)
                        return r;
        }
        /* §5.2: msg is embedded verbatim (semantic preservation for free). */
        sb_str(&b, "{\"msg\":");
        sb_add(&b, msg_json, msg_len);
        sb_str(&b, ",\"channel\":");
        if (ch_json) {
                sb_add(&b, ch_json, ch_len);
        } else {
                sb_add(&b, "\"", 1);
                sb_add(&b, channel, ch_len);
                sb_add(&b, "\"", 1);
        }
        snprintf(num, sizeof(num), ",\"seq\":%" PRIu64 ",\"reason\":\"", seq);
        sb_str(&b, num);
        sb_str(&b, reason_str);
        snprintf(num, sizeof(num), "\",\"generation\":%" PRIu64 "}", generation);
        sb_str(&b, num);
        free(ch_json);
        r = sb_finish(&b, out);
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
        return dump_compact(e->msg, out, out_len);
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
                st = set_err(err, REC_E_TYPE, "allowSubscribe", "expected an array, got %s", type_name(allow));
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
        r = set_new(obj, "allowSubscribe", arr);
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
        return finish_object(obj, r, out);
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
                r = set_str(obj, "channel", m->channel);
        if (r == 0)
                r = set_str(obj, "owner", m->owner);
        if (r == 0)
                r = set_str(obj, "state", state);
        if (r == 0)
                r = set_uint(obj, "joinCursor", (int64_t)m->join_cursor);
        if (r == 0)
                r = set_uint(obj, "generation", (int64_t)m->generation);
        if (r == 0 && m->activated != MEMBER_ACTIVATED_ABSENT)
                r = set_new(obj, "activated", json_boolean(m->activated == MEMBER_ACTIVATED_TRUE));
        if (r == 0 && m->writer_identity)
                r = set_str(obj, "writerIdentity", m->writer_identity);
        if (r == 0)
                r = set_uint(obj, "updatedAt", m->updated_at);
        if (r == 0 && m->has_leave_cursor)
                r = set_uint(obj, "leaveCursor", (int64_t)m->leave_cursor);
        return finish_object(obj, r, out);
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
        r = set_str(obj, "holder", holder);
        if (r == 0)
                r = set_uint(obj, "since", since_ms);
        if (r == 0)
                r = set_new(obj, "ready", json_boolean(ready));
        return finish_object(obj, r, out);
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
        root = load_json(value, len, true, NULL, &jerr);
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
        root = load_json(data, len, true, NULL, &jerr);
        if (root == NULL) {
                /* The text goes into the reply (§8.2 step 2), which must be
                 * valid UTF-8, but jansson quotes raw input bytes ("invalid
                 * escape near '\"\\u1<lead byte>'"). */
                utf8_sanitize(out->error, sizeof(out->error), jerr.text);
                return json_error_code(&jerr) == json_error_out_of_memory ? CTL_REQ_NOMEM : CTL_REQ_NOT_JSON;
        }
        if (!json_is_object(root)) {
                snprintf(out->error, sizeof(out->error), "control request must be a JSON object, got %s",
                         type_name(root));
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
static void js_number(strbuf *b, double d)
{
        char digits[32], num[16];
        int k, n;

        if (d != d) {
                sb_str(b, "NaN");
                return;
        }
        if (d == 0) {
                sb_str(b, "0"); /* also -0 */
                return;
        }
        if (d < 0) {
                sb_str(b, "-");
                d = -d;
        }
        if (d > DBL_MAX) {
                sb_str(b, "Infinity");
                return;
        }
        shortest_digits(d, digits, sizeof(digits), &k, &n);
        if (k <= n && n <= 21) {
                sb_add(b, digits, (size_t)k);
                for (int i = 0; i < n - k; i++)
                        sb_str(b, "0");
        } else if (0 < n && n <= 21) {
                sb_add(b, digits, (size_t)n);
                sb_str(b, ".");
                sb_str(b, digits + n);
        } else if (-6 < n && n <= 0) {
                sb_str(b, "0.");
                for (int i = 0; i < -n; i++)
                        sb_str(b, "0");
                sb_str(b, digits);
        } else {
                sb_add(b, digits, 1);
                if (k > 1) {
                        sb_str(b, ".");
                        sb_str(b, digits + 1);
                }
                snprintf(num, sizeof(num), "e%c%d", n - 1 < 0 ? '-' : '+', n - 1 < 0 ? 1 - n : n - 1);
                sb_str(b, num);
        }
}

int contract_js_number(double d, char *buf, size_t size)
{
        strbuf b = {0};
        char *out = NULL;

        js_number(&b, d);
        if (sb_finish(&b, &out) < 0)
                return -ENOMEM;
        int n = snprintf(buf, size, "%s", out);
        free(out);
        return n < 0 || (size_t)n >= size ? -ENOSPC : 0;
}

static void js_value(strbuf *b, const json_t *v, int depth);

/* Array.prototype.join(","): null elements render as "". */
static void js_join(strbuf *b, const json_t *arr, int depth)
{
        size_t i;
        json_t *el;

        if (depth > JS_STRING_MAX_DEPTH)
                return;
        json_array_foreach (arr, i, el) {
                if (i > 0)
                        sb_str(b, ",");
                if (!json_is_null(el))
                        js_value(b, el, depth + 1);
        }
}

static void js_value(strbuf *b, const json_t *v, int depth)
{
        switch (json_typeof(v)) {
        case JSON_OBJECT: sb_str(b, "[object Object]"); break;
        case JSON_ARRAY: js_join(b, v, depth); break;
        case JSON_STRING: sb_add(b, json_string_value(v), strnlen(json_string_value(v), json_string_length(v))); break;
        case JSON_INTEGER: {
                json_int_t i = json_integer_value(v);

                /* Beyond 2^53 JavaScript holds the nearest double. */
                if (i > (json_int_t)1 << 53 || i < -((json_int_t)1 << 53)) {
                        js_number(b, (double)i);
                } else {
                        char num[32];

                        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, i);
                        sb_str(b, num);
                }
                break;
        }
        case JSON_REAL: js_number(b, json_real_value(v)); break;
        case JSON_TRUE: sb_str(b, "true"); break;
        case JSON_FALSE: sb_str(b, "false"); break;
        case JSON_NULL: sb_str(b, "null"); break;
        }
}

int contract_js_string(const json_t *v, char **out)
{
        strbuf b = {0};

        if (v == NULL)
                sb_str(&b, "undefined");
        else
                js_value(&b, v, 0);
        return sb_finish(&b, out);
}

char *contract_ctl_reply_ok(json_t *data)
{
        json_t *obj = json_object();
        char *s = NULL;
        int r;

        if (obj == NULL)
                return NULL;
        /* §5.4: data only with ok:true, omitted rather than null. */
        r = set_new(obj, "ok", json_true());
        if (r == 0 && data != NULL && json_object_set(obj, "data", data) != 0)
                r = -ENOMEM;
        if (finish_object(obj, r, &s) < 0)
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
        r = set_new(obj, "ok", json_false());
        if (r == 0)
                r = set_str(obj, "error", text);
        if (finish_object(obj, r, &s) < 0)
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
        s = str_printf("op \"%s\" not supported on the delivery control service", text);
        free(text);
        return s;
}

char *contract_err_blank_channel(const char *op)
{
        return op ? str_printf("%s: channel must be a non-blank string", op) : NULL;
}

char *contract_err_empty_segment(const char *channel)
{
        return channel ? str_printf("invalid channel \"%s\": empty segment (no "
                                    "leading/trailing/double dots)",
                                    channel)
                       : NULL;
}

char *contract_err_gt_not_last(const char *channel)
{
        return channel ? str_printf("invalid channel \"%s\": '>' is only valid as the last "
                                    "segment",
                                    channel)
                       : NULL;
}

char *contract_err_bad_segment(const char *channel, const char *segment, size_t segment_len)
{
        if (channel == NULL || segment == NULL || segment_len > 0x7fffffff)
                return NULL;
        return str_printf("invalid channel \"%s\": segment \"%.*s\" must be a NATS-safe token "
                          "([A-Za-z0-9_-]), '*', or '>' \xe2\x80\x94 policy channel names "
                          "can't contain characters the wire layer would rewrite",
                          channel, (int)segment_len, segment);
}

char *contract_err_wildcard(const char *op, const char *channel)
{
        if (op == NULL || channel == NULL)
                return NULL;
        return str_printf("%s: \"%s\" must be a concrete channel (durable membership is "
                          "per-concrete-channel, not wildcard)",
                          op, channel);
}

char *contract_err_no_acl(const char *caller)
{
        return caller ? str_printf("durableJoin: no read ACL on record for %s (not provisioned "
                                   "for durable delivery)",
                                   caller)
                      : NULL;
}

char *contract_err_outside_acl(const char *channel, const contract_acl *acl)
{
        strbuf b = {0};
        bool first = true;
        char *s;

        if (channel == NULL || acl == NULL)
                return NULL;
        sb_str(&b, "channel \"");
        sb_str(&b, channel);
        sb_str(&b, "\" is not within your read ACL [");
        for (size_t i = 0; i < acl->n_allow; i++) {
                if (acl->allow[i] == NULL)
                        continue;
                if (!first)
                        sb_str(&b, ", ");
                sb_str(&b, acl->allow[i]);
                first = false;
        }
        sb_str(&b, "]");
        return sb_finish(&b, &s) == 0 ? s : NULL;
}

char *contract_err_stale(const char *channel, const char *owner, const char *attempted, uint64_t stored)
{
        if (channel == NULL || owner == NULL || attempted == NULL)
                return NULL;
        /* §8.3: the '<' is literal whatever the comparison. */
        return str_printf("stale membership write for %s/%s: generation %s < current %" PRIu64, channel, owner,
                          attempted, stored);
}

char *contract_err_cas_exhausted(const char *channel, const char *owner)
{
        if (channel == NULL || owner == NULL)
                return NULL;
        return str_printf("members CAS exhausted retries for %s/%s", channel, owner);
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
