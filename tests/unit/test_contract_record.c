/* Unit tests for contract_record: every JSON codec of the wire contract
 * (PROTOCOL §4.3-§4.6, §5.1-§5.4, §8.2), JS string conversion, the exact
 * §8.4 error texts and the §8.5 channel argument check. */
#include "contract_control.h"
#include "contract_js.h"
#include "contract_record.h"

#include "unit.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALICE "UAQGWOEVJKMIO4WXSYOTLARXYOZTCXFK67JASEH6AFFFYK6FOPSKQCAD"
#define BOB "UDI36ZKVNUM5WMO4QQ6HDQU7F4OH2RCXOJRX6GAIOS5SKVNNSKCDNLJA"
#define DAEMON "UDAEMONXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
#define EM_DASH "\xe2\x80\x94"

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* PROTOCOL §5.1 example. */
#define CHAT_JSON                                                                                                      \
        "{\"id\":\"018f1d0a-0000-7000-9000-000000000001\",\"ts\":1710000000000,"                                       \
        "\"space\":\"main\",\"from\":{\"id\":\"" ALICE "\",\"name\":\"alice\","                                        \
        "\"role\":\"planner\"},\"channel\":\"team.backend\",\"mentions\":[\"bob\"],"                                   \
        "\"parts\":[{\"kind\":\"text\",\"text\":\"Can you review this?\"}],"                                           \
        "\"contextId\":\"ctx-1\"}"
/* PROTOCOL §5.2 example: Bob's copy at seq 4711, generation 3. */
#define ENTRY_JSON                                                                                                     \
        "{\"msg\":" CHAT_JSON ",\"channel\":\"team.backend\",\"seq\":4711,"                                            \
        "\"reason\":\"durable-channel\",\"generation\":3}"
/* PROTOCOL §4.3 example. */
#define ACL_JSON "{\"allowSubscribe\":[\"general\",\"team.>\"],\"revision\":1,\"updatedAt\":1710000000000}"
/* PROTOCOL §4.4 examples (<D> = DAEMON), in the encoder's field order. */
#define MEMBER1_JSON                                                                                                   \
        "{\"channel\":\"team.backend\",\"owner\":\"" BOB "\",\"state\":\"durable-active\","                            \
        "\"joinCursor\":4700,\"generation\":3,\"activated\":true,"                                                     \
        "\"writerIdentity\":\"" DAEMON "\",\"updatedAt\":1710000000123}"
#define MEMBER2_JSON                                                                                                   \
        "{\"channel\":\"team.backend\",\"owner\":\"" BOB "\",\"state\":\"live-confirmed\","                            \
        "\"joinCursor\":4700,\"generation\":3,\"activated\":true,"                                                     \
        "\"writerIdentity\":\"" DAEMON "\",\"updatedAt\":1710000099000,\"leaveCursor\":4812}"
/* PROTOCOL §4.5 example. */
#define LEASE_JSON "{\"holder\":\"" DAEMON "\",\"since\":1710000000000,\"ready\":true}"

#define HUGE_INT "123456789012345678901234567890"

/* Takes ownership of got. */
static void expect_str(char *got, const char *want)
{
        ck_assert_ptr_nonnull(got);
        ck_assert_str_eq(got, want);
        free(got);
}

/* ---- decoder wrappers: decode, check the error contract, fini ----------- */

typedef rec_status (*decode_fn)(const char *data, size_t len, rec_error *err);

static rec_status dec_chat(const char *d, size_t l, rec_error *e)
{
        contract_chat c;
        rec_status s = contract_chat_decode(d, l, &c, e);

        if (s != REC_OK)
                ck_assert(c.root == NULL && c.id == NULL && c.from_id == NULL && c.mentions == NULL);
        contract_chat_fini(&c);
        return s;
}

static rec_status dec_entry(const char *d, size_t l, rec_error *e)
{
        contract_entry x;
        rec_status s = contract_entry_decode(d, l, &x, e);

        if (s != REC_OK)
                ck_assert(x.root == NULL && x.msg == NULL && x.msg_id == NULL && x.channel == NULL);
        contract_entry_fini(&x);
        return s;
}

static rec_status dec_acl(const char *d, size_t l, rec_error *e)
{
        contract_acl a;
        rec_status s = contract_acl_decode(d, l, &a, e);

        if (s != REC_OK)
                ck_assert(a.allow == NULL && a.n_allow == 0);
        contract_acl_fini(&a);
        return s;
}

static rec_status dec_member(const char *d, size_t l, rec_error *e)
{
        contract_member m;
        rec_status s = contract_member_decode(d, l, &m, e);

        if (s != REC_OK)
                ck_assert(m.channel == NULL && m.owner == NULL && m.state_raw == NULL && m.writer_identity == NULL);
        contract_member_fini(&m);
        return s;
}

static rec_status dec_lease(const char *d, size_t l, rec_error *e)
{
        contract_lease x;
        rec_status s = contract_lease_decode(d, l, &x, e);

        if (s != REC_OK)
                ck_assert(x.holder == NULL);
        contract_lease_fini(&x);
        return s;
}

/* base with the field at a dotted path replaced by the JSON text value (or
 * deleted when value is NULL). Returns compact JSON, owned by the caller. */
static char *variant_of(const char *base, const char *path, const char *value)
{
        json_t *root = json_loads(base, 0, NULL), *obj;
        const char *p = path, *dot;
        char key[64], *s;

        ck_assert_ptr_nonnull(root);
        obj = root;
        while ((dot = strchr(p, '.')) != NULL) {
                snprintf(key, sizeof(key), "%.*s", (int)(dot - p), p);
                obj = json_object_get(obj, key);
                ck_assert(json_is_object(obj));
                p = dot + 1;
        }
        if (value) {
                json_t *v = json_loads(value, JSON_DECODE_ANY, NULL);

                ck_assert_ptr_nonnull(v);
                ck_assert_int_eq(json_object_set_new(obj, p, v), 0);
        } else {
                json_object_del(obj, p);
        }
        s = json_dumps(root, JSON_COMPACT);
        ck_assert_ptr_nonnull(s);
        json_decref(root);
        return s;
}

typedef struct variant {
        decode_fn fn;
        const char *base; /* a valid document, or the whole input when path is NULL */
        const char *path;
        const char *value; /* JSON text; NULL deletes the field */
        rec_status want;
        const char *field; /* expected err.field */
} variant;

#define V(fn, base, path, value, want, field)                                                                          \
        {                                                                                                              \
                fn, base, path, value, want, field                                                                     \
        }
#define RAW(fn, doc, want)                                                                                             \
        {                                                                                                              \
                fn, doc, NULL, NULL, want, ""                                                                          \
        }

static const variant variants[] = {
        /* ---- chat (§5.1, §6.1) ---- */
        RAW(dec_chat, CHAT_JSON, REC_OK),
        V(dec_chat, CHAT_JSON, "id", NULL, REC_E_MISSING, "id"),
        V(dec_chat, CHAT_JSON, "id", "null", REC_E_MISSING, "id"),
        V(dec_chat, CHAT_JSON, "id", "5", REC_E_TYPE, "id"),
        V(dec_chat, CHAT_JSON, "id", "[\"x\"]", REC_E_TYPE, "id"),
        V(dec_chat, CHAT_JSON, "id", "\"a\\rb\"", REC_E_VALUE, "id"),
        V(dec_chat, CHAT_JSON, "id", "\"a\\nb\"", REC_E_VALUE, "id"),
        V(dec_chat, CHAT_JSON, "id", "\"\"", REC_OK, ""),
        V(dec_chat, CHAT_JSON, "from", NULL, REC_E_MISSING, "from"),
        V(dec_chat, CHAT_JSON, "from", "null", REC_E_MISSING, "from"),
        V(dec_chat, CHAT_JSON, "from", "\"" ALICE "\"", REC_E_TYPE, "from"),
        V(dec_chat, CHAT_JSON, "from", "[]", REC_E_TYPE, "from"),
        V(dec_chat, CHAT_JSON, "from.id", NULL, REC_E_MISSING, "from.id"),
        V(dec_chat, CHAT_JSON, "from.id", "null", REC_E_MISSING, "from.id"),
        V(dec_chat, CHAT_JSON, "from.id", "7", REC_E_TYPE, "from.id"),
        V(dec_chat, CHAT_JSON, "from.id", "{}", REC_E_TYPE, "from.id"),
        V(dec_chat, CHAT_JSON, "mentions", NULL, REC_OK, ""),
        V(dec_chat, CHAT_JSON, "mentions", "5", REC_OK, ""),
        V(dec_chat, CHAT_JSON, "channel", NULL, REC_OK, ""), /* ignored */
        V(dec_chat, CHAT_JSON, "ts", "1.5", REC_OK, ""),     /* passed through */
        RAW(dec_chat, "", REC_E_NOT_JSON),
        RAW(dec_chat, "{", REC_E_NOT_JSON),
        RAW(dec_chat, "{\"id\":\"a\",\"from\":{\"id\":\"U\"}} x", REC_E_NOT_JSON),
        RAW(dec_chat, "{\"id\":\"a\",\"from\":{\"id\":\"U\"}}{}", REC_E_NOT_JSON),
        RAW(dec_chat, "{'id':'a'}", REC_E_NOT_JSON),
        RAW(dec_chat, "{\"id\":\"\xff\",\"from\":{\"id\":\"U\"}}", REC_E_NOT_JSON),
        RAW(dec_chat, "{\"id\":\"\xed\xa0\x80\",\"from\":{\"id\":\"U\"}}", REC_E_NOT_JSON),
        RAW(dec_chat, "{\"id\":\"a\\u0000b\",\"from\":{\"id\":\"U\"}}", REC_E_NOT_JSON),
        RAW(dec_chat, "[]", REC_E_NOT_OBJECT),
        RAW(dec_chat, "null", REC_E_NOT_OBJECT),
        RAW(dec_chat, "5", REC_E_NOT_OBJECT),
        RAW(dec_chat, "\"x\"", REC_E_NOT_OBJECT),
        RAW(dec_chat, "true", REC_E_NOT_OBJECT),
        /* §5.1: integers beyond int64 do not make a message malformed */
        RAW(dec_chat, "{\"id\":\"a\",\"from\":{\"id\":\"U\"},\"n\":" HUGE_INT "}", REC_OK),
        RAW(dec_chat, "{\"id\":\"a\",\"from\":{\"id\":\"U\"},\"n\":-" HUGE_INT "}", REC_OK),
        RAW(dec_chat, "{\"id\":\"a\",\"from\":{\"id\":\"U\"},\"n\":" HUGE_INT "} x", REC_E_NOT_JSON),
        /* a real beyond double range is still not JSON for jansson */
        RAW(dec_chat, "{\"id\":\"a\",\"from\":{\"id\":\"U\"},\"n\":1e999}", REC_E_NOT_JSON),

        /* ---- dinbox entry (§5.2, §7 row 2/2a) ---- */
        RAW(dec_entry, ENTRY_JSON, REC_OK),
        V(dec_entry, ENTRY_JSON, "msg", NULL, REC_E_MISSING, "msg"),
        V(dec_entry, ENTRY_JSON, "msg", "null", REC_E_MISSING, "msg"),
        V(dec_entry, ENTRY_JSON, "msg", "\"x\"", REC_E_TYPE, "msg"),
        V(dec_entry, ENTRY_JSON, "msg", "[]", REC_E_TYPE, "msg"),
        V(dec_entry, ENTRY_JSON, "msg.id", NULL, REC_E_MISSING, "msg.id"),
        V(dec_entry, ENTRY_JSON, "msg.id", "1", REC_E_TYPE, "msg.id"),
        V(dec_entry, ENTRY_JSON, "msg.id", "\"a\\nb\"", REC_E_VALUE, "msg.id"),
        V(dec_entry, ENTRY_JSON, "msg.id", "\"a\\r\"", REC_E_VALUE, "msg.id"),
        V(dec_entry, ENTRY_JSON, "msg.from", NULL, REC_OK, ""),
        V(dec_entry, ENTRY_JSON, "channel", NULL, REC_E_MISSING, "channel"),
        V(dec_entry, ENTRY_JSON, "channel", "null", REC_E_MISSING, "channel"),
        V(dec_entry, ENTRY_JSON, "channel", "1", REC_E_TYPE, "channel"),
        V(dec_entry, ENTRY_JSON, "seq", NULL, REC_E_MISSING, "seq"),
        V(dec_entry, ENTRY_JSON, "seq", "\"4711\"", REC_E_TYPE, "seq"),
        V(dec_entry, ENTRY_JSON, "seq", "4711.0", REC_E_TYPE, "seq"),
        V(dec_entry, ENTRY_JSON, "seq", "1e3", REC_E_TYPE, "seq"),
        V(dec_entry, ENTRY_JSON, "seq", "true", REC_E_TYPE, "seq"),
        V(dec_entry, ENTRY_JSON, "seq", "-1", REC_E_RANGE, "seq"),
        V(dec_entry, ENTRY_JSON, "seq", "9007199254740992", REC_E_RANGE, "seq"),
        V(dec_entry, ENTRY_JSON, "seq", "9007199254740991", REC_OK, ""),
        V(dec_entry, ENTRY_JSON, "seq", "0", REC_OK, ""),
        V(dec_entry, ENTRY_JSON, "generation", NULL, REC_E_MISSING, "generation"),
        V(dec_entry, ENTRY_JSON, "generation", "\"3\"", REC_E_TYPE, "generation"),
        V(dec_entry, ENTRY_JSON, "generation", "3.5", REC_E_TYPE, "generation"),
        V(dec_entry, ENTRY_JSON, "generation", "-1", REC_E_RANGE, "generation"),
        V(dec_entry, ENTRY_JSON, "generation", "0", REC_OK, ""),
        V(dec_entry, ENTRY_JSON, "reason", NULL, REC_OK, ""),
        V(dec_entry, ENTRY_JSON, "reason", "5", REC_OK, ""),
        RAW(dec_entry, "", REC_E_NOT_JSON),
        RAW(dec_entry, "{\"msg\":{\"id\":\"a\"},", REC_E_NOT_JSON),
        RAW(dec_entry, "[" ENTRY_JSON "]", REC_E_NOT_OBJECT),
        RAW(dec_entry, "null", REC_E_NOT_OBJECT),
        /* seq itself too big: the INT_AS_REAL retry turns it into a range error */
        {dec_entry, "{\"msg\":{\"id\":\"a\"},\"channel\":\"c\",\"seq\":" HUGE_INT ",\"generation\":1}", NULL, NULL,
         REC_E_RANGE, "seq"},

        /* ---- ACL record (§4.3) ---- */
        RAW(dec_acl, ACL_JSON, REC_OK),
        V(dec_acl, ACL_JSON, "allowSubscribe", NULL, REC_E_MISSING, "allowSubscribe"),
        V(dec_acl, ACL_JSON, "allowSubscribe", "null", REC_E_MISSING, "allowSubscribe"),
        V(dec_acl, ACL_JSON, "allowSubscribe", "\"general\"", REC_E_TYPE, "allowSubscribe"),
        V(dec_acl, ACL_JSON, "allowSubscribe", "{}", REC_E_TYPE, "allowSubscribe"),
        V(dec_acl, ACL_JSON, "allowSubscribe", "[]", REC_OK, ""),
        V(dec_acl, ACL_JSON, "allowSubscribe", "[1,null,{}]", REC_OK, ""),
        V(dec_acl, ACL_JSON, "revision", NULL, REC_OK, ""),
        V(dec_acl, ACL_JSON, "revision", "null", REC_OK, ""),
        V(dec_acl, ACL_JSON, "revision", "\"1\"", REC_E_TYPE, "revision"),
        V(dec_acl, ACL_JSON, "revision", "1.0", REC_E_TYPE, "revision"),
        V(dec_acl, ACL_JSON, "revision", "-1", REC_E_RANGE, "revision"),
        V(dec_acl, ACL_JSON, "revision", "9007199254740992", REC_E_RANGE, "revision"),
        V(dec_acl, ACL_JSON, "updatedAt", NULL, REC_OK, ""),
        V(dec_acl, ACL_JSON, "updatedAt", "true", REC_E_TYPE, "updatedAt"),
        V(dec_acl, ACL_JSON, "updatedAt", "-5", REC_E_RANGE, "updatedAt"),
        RAW(dec_acl, "not json", REC_E_NOT_JSON),
        RAW(dec_acl, "[\"general\"]", REC_E_NOT_OBJECT),
        RAW(dec_acl, "{\"allowSubscribe\":[],\"revision\":" HUGE_INT "}", REC_E_NOT_JSON),

        /* ---- membership record (§4.4) ---- */
        RAW(dec_member, MEMBER1_JSON, REC_OK),
        RAW(dec_member, MEMBER2_JSON, REC_OK),
        V(dec_member, MEMBER2_JSON, "channel", NULL, REC_OK, ""), /* optional when reading */
        V(dec_member, MEMBER2_JSON, "owner", NULL, REC_E_MISSING, "owner"),
        V(dec_member, MEMBER2_JSON, "state", NULL, REC_OK, ""), /* optional when reading */
        V(dec_member, MEMBER2_JSON, "joinCursor", NULL, REC_E_MISSING, "joinCursor"),
        V(dec_member, MEMBER2_JSON, "generation", NULL, REC_E_MISSING, "generation"),
        V(dec_member, MEMBER2_JSON, "writerIdentity", NULL, REC_OK, ""), /* optional when reading */
        V(dec_member, MEMBER2_JSON, "updatedAt", NULL, REC_OK, ""),      /* optional when reading */
        V(dec_member, MEMBER2_JSON, "owner", "null", REC_E_MISSING, "owner"),
        V(dec_member, MEMBER2_JSON, "joinCursor", "null", REC_E_MISSING, "joinCursor"),
        V(dec_member, MEMBER2_JSON, "leaveCursor", NULL, REC_OK, ""),
        V(dec_member, MEMBER2_JSON, "leaveCursor", "null", REC_OK, ""),
        V(dec_member, MEMBER2_JSON, "activated", NULL, REC_OK, ""),
        V(dec_member, MEMBER2_JSON, "activated", "null", REC_OK, ""),
        V(dec_member, MEMBER2_JSON, "channel", "1", REC_E_TYPE, "channel"),
        V(dec_member, MEMBER2_JSON, "owner", "[]", REC_E_TYPE, "owner"),
        V(dec_member, MEMBER2_JSON, "state", "true", REC_E_TYPE, "state"),
        V(dec_member, MEMBER2_JSON, "joinCursor", "\"4700\"", REC_E_TYPE, "joinCursor"),
        V(dec_member, MEMBER2_JSON, "joinCursor", "4700.0", REC_E_TYPE, "joinCursor"),
        V(dec_member, MEMBER2_JSON, "generation", "\"3\"", REC_E_TYPE, "generation"),
        V(dec_member, MEMBER2_JSON, "generation", "3e0", REC_E_TYPE, "generation"),
        V(dec_member, MEMBER2_JSON, "writerIdentity", "5", REC_E_TYPE, "writerIdentity"),
        V(dec_member, MEMBER2_JSON, "updatedAt", "\"x\"", REC_E_TYPE, "updatedAt"),
        V(dec_member, MEMBER2_JSON, "leaveCursor", "\"4812\"", REC_E_TYPE, "leaveCursor"),
        V(dec_member, MEMBER2_JSON, "activated", "\"true\"", REC_E_TYPE, "activated"),
        V(dec_member, MEMBER2_JSON, "activated", "1", REC_E_TYPE, "activated"),
        V(dec_member, MEMBER2_JSON, "generation", "0", REC_E_RANGE, "generation"),
        V(dec_member, MEMBER2_JSON, "generation", "-1", REC_E_RANGE, "generation"),
        V(dec_member, MEMBER2_JSON, "generation", "9007199254740992", REC_E_RANGE, "generation"),
        V(dec_member, MEMBER2_JSON, "joinCursor", "-1", REC_E_RANGE, "joinCursor"),
        V(dec_member, MEMBER2_JSON, "joinCursor", "0", REC_OK, ""),
        V(dec_member, MEMBER2_JSON, "leaveCursor", "9007199254740992", REC_E_RANGE, "leaveCursor"),
        V(dec_member, MEMBER2_JSON, "updatedAt", "-1", REC_E_RANGE, "updatedAt"),
        V(dec_member, MEMBER2_JSON, "owner", "\"U\\r\"", REC_E_VALUE, "owner"),
        V(dec_member, MEMBER2_JSON, "owner", "\"U\\nX\"", REC_E_VALUE, "owner"),
        V(dec_member, MEMBER2_JSON, "state", "\"weird\"", REC_OK, ""),
        RAW(dec_member, "{\"channel\":", REC_E_NOT_JSON),
        RAW(dec_member, "\"" MEMBER1_JSON "\"", REC_E_NOT_JSON),
        RAW(dec_member, "42", REC_E_NOT_OBJECT),

        /* ---- lease record (§4.5) ---- */
        RAW(dec_lease, LEASE_JSON, REC_OK),
        V(dec_lease, LEASE_JSON, "holder", NULL, REC_E_MISSING, "holder"),
        V(dec_lease, LEASE_JSON, "holder", "5", REC_E_TYPE, "holder"),
        V(dec_lease, LEASE_JSON, "since", NULL, REC_E_MISSING, "since"),
        V(dec_lease, LEASE_JSON, "since", "\"1\"", REC_E_TYPE, "since"),
        V(dec_lease, LEASE_JSON, "since", "1.5", REC_E_TYPE, "since"),
        V(dec_lease, LEASE_JSON, "since", "-1", REC_E_RANGE, "since"),
        V(dec_lease, LEASE_JSON, "ready", NULL, REC_E_MISSING, "ready"),
        V(dec_lease, LEASE_JSON, "ready", "null", REC_E_MISSING, "ready"),
        V(dec_lease, LEASE_JSON, "ready", "\"true\"", REC_E_TYPE, "ready"),
        V(dec_lease, LEASE_JSON, "ready", "1", REC_E_TYPE, "ready"),
        V(dec_lease, LEASE_JSON, "ready", "false", REC_OK, ""),
        RAW(dec_lease, "", REC_E_NOT_JSON),
        RAW(dec_lease, "[]", REC_E_NOT_OBJECT),
};

START_TEST(test_decoder_variants)
{
        const variant *v = &variants[_i];
        char *doc = v->path ? variant_of(v->base, v->path, v->value) : strdup(v->base);
        rec_error err;
        rec_status st;
        char msg[256];

        ck_assert_ptr_nonnull(doc);
        memset(&err, 0x55, sizeof(err));
        st = v->fn(doc, strlen(doc), &err);
        ck_assert_msg(st == v->want, "variant %d (%s): got %s (%s), want %s", _i, doc, rec_status_name(st),
                      rec_error_str(&err, msg, sizeof(msg)), rec_status_name(v->want));
        ck_assert_int_eq(err.status, v->want);
        ck_assert_str_eq(err.field, v->field);
        if (st == REC_E_NOT_JSON)
                ck_assert(err.detail[0] != '\0'); /* jansson's message */
        /* err may be NULL and the status is the same */
        ck_assert_int_eq(v->fn(doc, strlen(doc), NULL), v->want);
        free(doc);
}
END_TEST

/* ---- size limits -------------------------------------------------------- */

/* A valid document of exactly len bytes: {"id":"x","from":{"id":"U"},
 * "allowSubscribe":[],"pad":"aaa…"}. */
static char *padded_doc(size_t len)
{
        static const char head[] = "{\"id\":\"x\",\"from\":{\"id\":\"U\"},\"allowSubscribe\":[],\"pad\":\"";
        char *d = malloc(len + 1);

        ck_assert_ptr_nonnull(d);
        ck_assert_uint_gt(len, sizeof(head) + 2);
        memcpy(d, head, sizeof(head) - 1);
        memset(d + sizeof(head) - 1, 'a', len - (sizeof(head) - 1) - 2);
        memcpy(d + len - 2, "\"}", 2);
        d[len] = '\0';
        return d;
}

START_TEST(test_size_limits)
{
        char *at = padded_doc(CONTRACT_MAX_MSG_BYTES);
        char *over = padded_doc(CONTRACT_MAX_MSG_BYTES + 1);
        char *rec_at = padded_doc(CONTRACT_MAX_RECORD_BYTES);
        char *rec_over = padded_doc(CONTRACT_MAX_RECORD_BYTES + 1);
        rec_error err;

        ck_assert_int_eq(dec_chat(at, strlen(at), &err), REC_OK);
        ck_assert_int_eq(dec_chat(over, strlen(over), &err), REC_E_TOO_LARGE);
        ck_assert_str_eq(err.field, "");
        ck_assert_int_eq(dec_acl(rec_at, strlen(rec_at), &err), REC_OK);
        ck_assert_int_eq(dec_acl(rec_over, strlen(rec_over), &err), REC_E_TOO_LARGE);
        ck_assert_int_eq(dec_member(rec_over, strlen(rec_over), &err), REC_E_TOO_LARGE);
        ck_assert_int_eq(dec_lease(rec_over, strlen(rec_over), &err), REC_E_TOO_LARGE);
        /* the size check comes before parsing: garbage that is too long */
        ck_assert_int_eq(dec_lease("xxxx", CONTRACT_MAX_RECORD_BYTES + 1, &err) == REC_E_TOO_LARGE, 1);
        /* an entry may carry a maximal chat body plus its envelope */
        {
                size_t n = strlen(at) + 200;
                char *entry = malloc(n);

                ck_assert_ptr_nonnull(entry);
                snprintf(entry, n, "{\"msg\":%s,\"channel\":\"c\",\"seq\":1,\"generation\":1}", at);
                ck_assert_int_eq(dec_entry(entry, strlen(entry), &err), REC_OK);
                free(entry);
                ck_assert_int_eq(dec_entry(over, 2 * (size_t)CONTRACT_MAX_MSG_BYTES, &err), REC_E_TOO_LARGE);
        }
        free(at);
        free(over);
        free(rec_at);
        free(rec_over);
}
END_TEST

START_TEST(test_error_strings)
{
        static const char no_from_id[] = "{\"id\":\"a\",\"from\":{}}";
        static const char neg_seq[] = "{\"msg\":{\"id\":\"a\"},\"channel\":\"c\",\"seq\":-1}";
        rec_error err;
        char buf[256];

        ck_assert_str_eq(rec_status_name(REC_OK), "ok");
        ck_assert_str_eq(rec_status_name(REC_E_NOT_JSON), "not JSON");
        ck_assert_str_eq(rec_status_name(REC_E_MISSING), "missing field");
        ck_assert_int_eq(dec_chat(no_from_id, strlen(no_from_id), &err), REC_E_MISSING);
        ck_assert_str_eq(err.field, "from.id");
        ck_assert_str_eq(rec_error_str(&err, buf, sizeof(buf)), "missing field from.id: required string");
        ck_assert_int_eq(dec_chat("{", 1, &err), REC_E_NOT_JSON);
        ck_assert_str_eq(rec_error_str(&err, buf, sizeof(buf)), buf);
        ck_assert(strncmp(buf, "not JSON: ", 10) == 0);
        ck_assert_int_eq(dec_entry(neg_seq, strlen(neg_seq), &err), REC_E_RANGE);
        ck_assert_str_eq(rec_error_str(&err, buf, sizeof(buf)), "out of range seq: -1 not in 0..2^53-1");
        ck_assert_str_eq(rec_error_str(NULL, buf, sizeof(buf)), "ok");
        /* truncation never overflows */
        ck_assert_str_eq(rec_error_str(&err, buf, 4), "out");
}
END_TEST

/* ---- chat (§5.1) --------------------------------------------------------- */

START_TEST(test_chat_example)
{
        contract_chat c;
        rec_error err;

        ck_assert_int_eq(contract_chat_decode(CHAT_JSON, strlen(CHAT_JSON), &c, &err), REC_OK);
        ck_assert_int_eq(err.status, REC_OK);
        ck_assert_str_eq(c.id, "018f1d0a-0000-7000-9000-000000000001");
        ck_assert_str_eq(c.from_id, ALICE);
        ck_assert(json_is_array(c.mentions));
        ck_assert_uint_eq(json_array_size(c.mentions), 1);
        ck_assert_str_eq(json_string_value(json_array_get(c.mentions, 0)), "bob");
        contract_chat_fini(&c);
        ck_assert_ptr_null(c.root);
        contract_chat_fini(&c);
        contract_chat_fini(NULL);
}
END_TEST

START_TEST(test_chat_details)
{
        static const char dup[] = "{\"id\":\"first\",\"from\":{\"id\":\"U\"},\"id\":\"last\"}";
        static const char big[] = "{\"id\":\"a\",\"from\":{\"id\":\"U\"},\"n\":" HUGE_INT "}";
        contract_chat c;

        /* duplicate keys: the last value wins, as in JavaScript */
        ck_assert_int_eq(contract_chat_decode(dup, strlen(dup), &c, NULL), REC_OK);
        ck_assert_str_eq(c.id, "last");
        ck_assert_ptr_null(c.mentions);
        contract_chat_fini(&c);
        /* the huge integer is kept as a real */
        ck_assert_int_eq(contract_chat_decode(big, strlen(big), &c, NULL), REC_OK);
        ck_assert(json_is_real(json_object_get(c.root, "n")));
        ck_assert(json_real_value(json_object_get(c.root, "n")) > 1e29);
        contract_chat_fini(&c);
        /* len bounds the input */
        ck_assert_int_eq(contract_chat_decode(CHAT_JSON "garbage", strlen(CHAT_JSON), &c, NULL), REC_OK);
        contract_chat_fini(&c);
        ck_assert_int_eq(contract_chat_decode(NULL, 0, &c, NULL), REC_E_NOT_JSON);
        contract_chat_fini(&c);
}
END_TEST

/* ---- entry (§5.2, §5.3) -------------------------------------------------- */

START_TEST(test_entry_example)
{
        contract_entry e;
        json_t *expect;
        char *body = NULL;
        size_t len = 0;

        ck_assert_int_eq(contract_entry_decode(ENTRY_JSON, strlen(ENTRY_JSON), &e, NULL), REC_OK);
        ck_assert_str_eq(e.msg_id, "018f1d0a-0000-7000-9000-000000000001");
        ck_assert_str_eq(e.channel, "team.backend");
        ck_assert_uint_eq(e.seq, 4711);
        ck_assert_int_eq(e.reason, REASON_DURABLE_CHANNEL);
        ck_assert_uint_eq(e.generation, 3);
        ck_assert(json_is_object(e.msg));
        /* §5.3: the deliver body is the msg alone, semantically unchanged */
        ck_assert_int_eq(contract_deliver_body(&e, &body, &len), 0);
        ck_assert_uint_eq(len, strlen(body));
        ck_assert_str_eq(body, CHAT_JSON); /* compact, key order preserved */
        expect = json_loads(CHAT_JSON, 0, NULL);
        {
                json_t *got = json_loads(body, 0, NULL);

                ck_assert(json_equal(got, expect));
                json_decref(got);
        }
        json_decref(expect);
        free(body);
        contract_entry_fini(&e);
        contract_entry_fini(&e);
        contract_entry_fini(NULL);
}
END_TEST

START_TEST(test_entry_reasons)
{
        static const struct {
                const char *reason;
                contract_reason want;
        } cases[] = {
                {"\"durable-channel\"", REASON_DURABLE_CHANNEL},
                {"\"live-mention\"", REASON_LIVE_MENTION},
                {"\"Durable-channel\"", REASON_OTHER},
                {"\"durable-channel \"", REASON_OTHER},
                {"\"\"", REASON_OTHER},
                {"5", REASON_OTHER},
                {"null", REASON_OTHER},
                {NULL, REASON_OTHER},
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char *doc = variant_of(ENTRY_JSON, "reason", cases[i].reason);
                contract_entry e;

                ck_assert_int_eq(contract_entry_decode(doc, strlen(doc), &e, NULL), REC_OK);
                ck_assert_int_eq(e.reason, cases[i].want);
                contract_entry_fini(&e);
                free(doc);
        }
}
END_TEST

START_TEST(test_entry_with_huge_integer_in_msg)
{
        static const char doc[] = "{\"msg\":{\"id\":\"m\",\"n\":" HUGE_INT "},\"channel\":\"c\","
                                  "\"seq\":4711,\"reason\":\"durable-channel\",\"generation\":3}";
        static const char frac[] = "{\"msg\":{\"id\":\"m\",\"n\":" HUGE_INT "},\"channel\":\"c\","
                                   "\"seq\":4711.5,\"generation\":3}";
        contract_entry e;
        rec_error err;
        char *body;

        /* §5.1: must not be rejected; seq/generation still read exactly */
        ck_assert_int_eq(contract_entry_decode(doc, strlen(doc), &e, &err), REC_OK);
        ck_assert_uint_eq(e.seq, 4711);
        ck_assert_uint_eq(e.generation, 3);
        ck_assert_int_eq(contract_deliver_body(&e, &body, NULL), 0);
        ck_assert(strncmp(body, "{\"id\":\"m\",\"n\":1.2345678901234568e", 33) == 0);
        free(body);
        contract_entry_fini(&e);
        ck_assert_int_eq(contract_entry_decode(frac, strlen(frac), &e, &err), REC_E_TYPE);
        ck_assert_str_eq(err.field, "seq");
        contract_entry_fini(&e);
}
END_TEST

START_TEST(test_entry_encode_bytes)
{
        char *out = NULL;
        size_t len = 0;

        ck_assert_int_eq(contract_entry_encode("{\"id\":\"m1\"}", 11, "team.backend", 4711, REASON_DURABLE_CHANNEL, 3,
                                               &out, &len),
                         0);
        ck_assert_str_eq(out, "{\"msg\":{\"id\":\"m1\"},\"channel\":\"team.backend\",\"seq\":4711,"
                              "\"reason\":\"durable-channel\",\"generation\":3}");
        ck_assert_uint_eq(len, strlen(out));
        free(out);
        /* live-mention copies carry generation 0 (§5.2) */
        ck_assert_int_eq(contract_entry_encode("{\"id\":\"m1\"}", 11, "general", 1, REASON_LIVE_MENTION, 0, &out, NULL),
                         0);
        ck_assert_str_eq(out, "{\"msg\":{\"id\":\"m1\"},\"channel\":\"general\",\"seq\":1,"
                              "\"reason\":\"live-mention\",\"generation\":0}");
        free(out);
        /* msg bytes are verbatim (whitespace kept); channel is JSON-escaped */
        ck_assert_int_eq(contract_entry_encode("{ \"id\" : \"m\" }xyz", 14, "a\"b\\c\n\x01/\xc3\xa9",
                                               9007199254740991ULL, REASON_DURABLE_CHANNEL, 9007199254740991ULL, &out,
                                               &len),
                         0);
        ck_assert_str_eq(out, "{\"msg\":{ \"id\" : \"m\" },"
                              "\"channel\":\"a\\\"b\\\\c\\n\\u0001/\xc3\xa9\","
                              "\"seq\":9007199254740991,\"reason\":\"durable-channel\","
                              "\"generation\":9007199254740991}");
        free(out);
}
END_TEST

START_TEST(test_entry_encode_errors)
{
        char *out = (char *)"sentinel";

        ck_assert_int_eq(contract_entry_encode("{}", 2, "c", 1, REASON_OTHER, 1, &out, NULL), -EINVAL);
        ck_assert_ptr_null(out);
        ck_assert_int_eq(contract_entry_encode(NULL, 0, "c", 1, REASON_LIVE_MENTION, 0, &out, NULL), -EINVAL);
        ck_assert_int_eq(contract_entry_encode("{}", 2, NULL, 1, REASON_LIVE_MENTION, 0, &out, NULL), -EINVAL);
        ck_assert_int_eq(contract_entry_encode("{}", 2, "bad\xff", 1, REASON_LIVE_MENTION, 0, &out, NULL), -EINVAL);
        ck_assert_int_eq(contract_entry_encode("{}", 2, "c", 9007199254740992ULL, REASON_LIVE_MENTION, 0, &out, NULL),
                         -EINVAL);
        ck_assert_int_eq(
                contract_entry_encode("{}", 2, "c", 1, REASON_DURABLE_CHANNEL, 9007199254740992ULL, &out, NULL),
                -EINVAL);
        ck_assert_ptr_null(out);
}
END_TEST

START_TEST(test_entry_round_trip)
{
        contract_chat c;
        contract_entry e;
        char *wire = NULL, *body = NULL;
        size_t len = 0;
        json_t *a, *b;

        ck_assert_int_eq(contract_chat_decode(CHAT_JSON, strlen(CHAT_JSON), &c, NULL), REC_OK);
        ck_assert_int_eq(contract_entry_encode(CHAT_JSON, strlen(CHAT_JSON), "team.backend", 4711,
                                               REASON_DURABLE_CHANNEL, 3, &wire, &len),
                         0);
        /* the §5.2 example, byte for byte */
        ck_assert_str_eq(wire, ENTRY_JSON);
        ck_assert_int_eq(contract_entry_decode(wire, len, &e, NULL), REC_OK);
        ck_assert_str_eq(e.msg_id, c.id);
        ck_assert_str_eq(e.channel, "team.backend");
        ck_assert_uint_eq(e.seq, 4711);
        ck_assert_uint_eq(e.generation, 3);
        ck_assert_int_eq(e.reason, REASON_DURABLE_CHANNEL);
        ck_assert_int_eq(contract_deliver_body(&e, &body, &len), 0);
        a = json_loadb(body, len, 0, NULL);
        b = c.root;
        ck_assert(json_equal(a, b));
        json_decref(a);
        free(body);
        free(wire);
        contract_entry_fini(&e);
        contract_chat_fini(&c);

        /* deliver body of an empty entry is refused */
        memset(&e, 0, sizeof(e));
        body = (char *)"sentinel";
        ck_assert_int_eq(contract_deliver_body(&e, &body, NULL), -EINVAL);
        ck_assert_ptr_null(body);
}
END_TEST

/* ---- ACL (§4.3) ---------------------------------------------------------- */

START_TEST(test_acl_example)
{
        contract_acl a;

        ck_assert_int_eq(contract_acl_decode(ACL_JSON, strlen(ACL_JSON), &a, NULL), REC_OK);
        ck_assert_uint_eq(a.n_allow, 2);
        ck_assert_str_eq(a.allow[0], "general");
        ck_assert_str_eq(a.allow[1], "team.>");
        ck_assert_uint_eq(a.ignored, 0);
        ck_assert(a.has_revision);
        ck_assert_int_eq(a.revision, 1);
        ck_assert(a.has_updated_at);
        ck_assert_int_eq(a.updated_at, 1710000000000LL);
        contract_acl_fini(&a);
        ck_assert_ptr_null(a.allow);
        contract_acl_fini(&a);
        contract_acl_fini(NULL);
}
END_TEST

START_TEST(test_acl_elements)
{
        static const char mixed[] = "{\"allowSubscribe\":[\"a\",1,null,{},[\"x\"],true,\"b\"]}";
        static const char empty[] = "{\"allowSubscribe\":[]}";
        contract_acl a;

        ck_assert_int_eq(contract_acl_decode(mixed, strlen(mixed), &a, NULL), REC_OK);
        ck_assert_uint_eq(a.n_allow, 2);
        ck_assert_str_eq(a.allow[0], "a");
        ck_assert_str_eq(a.allow[1], "b");
        ck_assert_uint_eq(a.ignored, 5);
        ck_assert(!a.has_revision);
        ck_assert(!a.has_updated_at);
        contract_acl_fini(&a);
        /* [] is a known ACL that reads nothing */
        ck_assert_int_eq(contract_acl_decode(empty, strlen(empty), &a, NULL), REC_OK);
        ck_assert_uint_eq(a.n_allow, 0);
        contract_acl_fini(&a);
}
END_TEST

START_TEST(test_acl_encode)
{
        char *allow[] = {(char *)"general", NULL, (char *)"team.>"};
        contract_acl a = {.allow = allow,
                          .n_allow = 3,
                          .has_revision = true,
                          .revision = 1,
                          .has_updated_at = true,
                          .updated_at = 1710000000000LL};
        contract_acl none = {0}, back;
        char *out = NULL;

        ck_assert_int_eq(contract_acl_encode(&a, &out), 0);
        ck_assert_str_eq(out, ACL_JSON); /* NULL entries are skipped */
        ck_assert_int_eq(contract_acl_decode(out, strlen(out), &back, NULL), REC_OK);
        ck_assert_uint_eq(back.n_allow, 2);
        ck_assert_str_eq(back.allow[1], "team.>");
        ck_assert_int_eq(back.revision, 1);
        ck_assert_int_eq(back.updated_at, 1710000000000LL);
        contract_acl_fini(&back);
        free(out);
        /* optional fields omitted, never null */
        ck_assert_int_eq(contract_acl_encode(&none, &out), 0);
        ck_assert_str_eq(out, "{\"allowSubscribe\":[]}");
        free(out);
        a.revision = -1;
        out = (char *)"sentinel";
        ck_assert_int_eq(contract_acl_encode(&a, &out), -EINVAL);
        ck_assert_ptr_null(out);
        ck_assert_int_eq(contract_acl_encode(NULL, &out), -EINVAL);
}
END_TEST

/* ---- membership (§4.4) --------------------------------------------------- */

START_TEST(test_member_examples)
{
        contract_member m;

        ck_assert_int_eq(contract_member_decode(MEMBER1_JSON, strlen(MEMBER1_JSON), &m, NULL), REC_OK);
        ck_assert_str_eq(m.channel, "team.backend");
        ck_assert_str_eq(m.owner, BOB);
        ck_assert_int_eq(m.state, MEMBER_STATE_DURABLE_ACTIVE);
        ck_assert_str_eq(m.state_raw, "durable-active");
        ck_assert_uint_eq(m.join_cursor, 4700);
        ck_assert(!m.has_leave_cursor);
        ck_assert_uint_eq(m.generation, 3);
        ck_assert_int_eq(m.activated, MEMBER_ACTIVATED_TRUE);
        ck_assert_str_eq(m.writer_identity, DAEMON);
        ck_assert_int_eq(m.updated_at, 1710000000123LL);
        contract_member_fini(&m);

        ck_assert_int_eq(contract_member_decode(MEMBER2_JSON, strlen(MEMBER2_JSON), &m, NULL), REC_OK);
        ck_assert_int_eq(m.state, MEMBER_STATE_LIVE_CONFIRMED);
        ck_assert(m.has_leave_cursor);
        ck_assert_uint_eq(m.leave_cursor, 4812);
        ck_assert_int_eq(m.updated_at, 1710000099000LL);
        contract_member_fini(&m);
        contract_member_fini(&m);
        contract_member_fini(NULL);
}
END_TEST

START_TEST(test_member_optional_and_states)
{
        char *doc;
        contract_member m;

        doc = variant_of(MEMBER1_JSON, "activated", "false");
        ck_assert_int_eq(contract_member_decode(doc, strlen(doc), &m, NULL), REC_OK);
        ck_assert_int_eq(m.activated, MEMBER_ACTIVATED_FALSE);
        contract_member_fini(&m);
        free(doc);
        doc = variant_of(MEMBER1_JSON, "activated", NULL);
        ck_assert_int_eq(contract_member_decode(doc, strlen(doc), &m, NULL), REC_OK);
        ck_assert_int_eq(m.activated, MEMBER_ACTIVATED_ABSENT);
        contract_member_fini(&m);
        free(doc);
        doc = variant_of(MEMBER1_JSON, "state", "\"weird\"");
        ck_assert_int_eq(contract_member_decode(doc, strlen(doc), &m, NULL), REC_OK);
        ck_assert_int_eq(m.state, MEMBER_STATE_OTHER);
        ck_assert_str_eq(m.state_raw, "weird");
        contract_member_fini(&m);
        free(doc);
}
END_TEST

START_TEST(test_member_encode)
{
        contract_member m = {
                .channel = (char *)"team.backend",
                .owner = (char *)BOB,
                .state = MEMBER_STATE_DURABLE_ACTIVE,
                .state_raw = (char *)"ignored",
                .join_cursor = 4700,
                .generation = 3,
                .activated = MEMBER_ACTIVATED_TRUE,
                .writer_identity = (char *)DAEMON,
                .updated_at = 1710000000123LL,
        };
        char *out = NULL;

        ck_assert_int_eq(contract_member_encode(&m, &out), 0);
        ck_assert_str_eq(out, MEMBER1_JSON);
        free(out);
        m.state = MEMBER_STATE_LIVE_CONFIRMED;
        m.has_leave_cursor = true;
        m.leave_cursor = 4812;
        m.updated_at = 1710000099000LL;
        ck_assert_int_eq(contract_member_encode(&m, &out), 0);
        ck_assert_str_eq(out, MEMBER2_JSON);
        free(out);
        /* activated absent: omitted */
        m.activated = MEMBER_ACTIVATED_ABSENT;
        m.has_leave_cursor = false;
        ck_assert_int_eq(contract_member_encode(&m, &out), 0);
        ck_assert_str_eq(out, "{\"channel\":\"team.backend\",\"owner\":\"" BOB "\","
                              "\"state\":\"live-confirmed\",\"joinCursor\":4700,\"generation\":3,"
                              "\"writerIdentity\":\"" DAEMON "\",\"updatedAt\":1710000099000}");
        free(out);
        m.activated = MEMBER_ACTIVATED_FALSE;
        ck_assert_int_eq(contract_member_encode(&m, &out), 0);
        ck_assert(strstr(out, ",\"activated\":false,") != NULL);
        free(out);
}
END_TEST

START_TEST(test_member_encode_errors)
{
        contract_member good = {
                .channel = (char *)"c",
                .owner = (char *)"U",
                .state = MEMBER_STATE_DURABLE_ACTIVE,
                .join_cursor = 1,
                .generation = 1,
                .writer_identity = (char *)"D",
        };
        contract_member m;
        char *out = NULL;

        ck_assert_int_eq(contract_member_encode(&good, &out), 0);
        free(out);
        m = good;
        m.state = MEMBER_STATE_OTHER;
        out = (char *)"sentinel";
        ck_assert_int_eq(contract_member_encode(&m, &out), -EINVAL);
        ck_assert_ptr_null(out);
        m = good;
        m.generation = 0;
        ck_assert_int_eq(contract_member_encode(&m, &out), -EINVAL);
        m = good;
        m.owner = (char *)"U\r\n";
        ck_assert_int_eq(contract_member_encode(&m, &out), -EINVAL);
        /* A record read without channel / writerIdentity is written back
         * without them: omitted, never null (§4.2). */
        m = good;
        m.writer_identity = NULL;
        m.channel = NULL;
        ck_assert_int_eq(contract_member_encode(&m, &out), 0);
        ck_assert_ptr_null(strstr(out, "writerIdentity"));
        ck_assert_ptr_null(strstr(out, "channel"));
        ck_assert_ptr_null(strstr(out, "null"));
        free(out);
        m = good;
        m.updated_at = -1;
        ck_assert_int_eq(contract_member_encode(&m, &out), -EINVAL);
        m = good;
        m.has_leave_cursor = true;
        m.leave_cursor = 9007199254740992ULL;
        ck_assert_int_eq(contract_member_encode(&m, &out), -EINVAL);
        ck_assert_int_eq(contract_member_encode(NULL, &out), -EINVAL);
}
END_TEST

START_TEST(test_member_round_trip)
{
        contract_member m, back;
        char *out = NULL;

        ck_assert_int_eq(contract_member_decode(MEMBER2_JSON, strlen(MEMBER2_JSON), &m, NULL), REC_OK);
        ck_assert_int_eq(contract_member_encode(&m, &out), 0);
        ck_assert_str_eq(out, MEMBER2_JSON);
        ck_assert_int_eq(contract_member_decode(out, strlen(out), &back, NULL), REC_OK);
        ck_assert_str_eq(back.owner, m.owner);
        ck_assert_uint_eq(back.leave_cursor, m.leave_cursor);
        ck_assert_int_eq(back.activated, m.activated);
        contract_member_fini(&back);
        contract_member_fini(&m);
        free(out);
}
END_TEST

START_TEST(test_member_eligible)
{
        contract_member m = {.join_cursor = 10, .generation = 1};

        /* §4.4: seq > joinCursor AND (no leaveCursor OR seq <= leaveCursor) */
        ck_assert(!contract_member_eligible(&m, 9));
        ck_assert(!contract_member_eligible(&m, 10));
        ck_assert(contract_member_eligible(&m, 11));
        ck_assert(contract_member_eligible(&m, 1000000));
        m.has_leave_cursor = true;
        m.leave_cursor = 20;
        ck_assert(!contract_member_eligible(&m, 10));
        ck_assert(contract_member_eligible(&m, 11));
        ck_assert(contract_member_eligible(&m, 20));
        ck_assert(!contract_member_eligible(&m, 21));
        m.leave_cursor = 10; /* empty window */
        ck_assert(!contract_member_eligible(&m, 10));
        ck_assert(!contract_member_eligible(&m, 11));
        /* state and activated are ignored */
        m.leave_cursor = 20;
        m.state = MEMBER_STATE_OTHER;
        m.activated = MEMBER_ACTIVATED_FALSE;
        ck_assert(contract_member_eligible(&m, 15));
        ck_assert(!contract_member_eligible(NULL, 15));
}
END_TEST

/* ---- lease (§4.5) -------------------------------------------------------- */

START_TEST(test_lease)
{
        contract_lease l;
        char *out = NULL;

        ck_assert_int_eq(contract_lease_decode(LEASE_JSON, strlen(LEASE_JSON), &l, NULL), REC_OK);
        ck_assert_str_eq(l.holder, DAEMON);
        ck_assert_int_eq(l.since, 1710000000000LL);
        ck_assert(l.ready);
        contract_lease_fini(&l);
        contract_lease_fini(&l);
        contract_lease_fini(NULL);

        ck_assert_int_eq(contract_lease_encode(DAEMON, 1710000000000LL, true, &out), 0);
        ck_assert_str_eq(out, LEASE_JSON);
        free(out);
        ck_assert_int_eq(contract_lease_encode(DAEMON, 5, false, &out), 0);
        ck_assert_str_eq(out, "{\"holder\":\"" DAEMON "\",\"since\":5,\"ready\":false}");
        ck_assert_int_eq(contract_lease_decode(out, strlen(out), &l, NULL), REC_OK);
        ck_assert(!l.ready);
        ck_assert_int_eq(l.since, 5);
        contract_lease_fini(&l);
        free(out);
        out = (char *)"sentinel";
        ck_assert_int_eq(contract_lease_encode(NULL, 5, false, &out), -EINVAL);
        ck_assert_ptr_null(out);
        ck_assert_int_eq(contract_lease_encode(DAEMON, -1, false, &out), -EINVAL);
}
END_TEST

/* ---- channel class (§4.6) ------------------------------------------------ */

START_TEST(test_class_of)
{
        static const struct {
                const char *value;
                contract_class want;
        } cases[] = {
                {"{\"deliveryClass\":\"durable\"}", CLASS_DURABLE},
                {"{\"deliveryClass\":\"live\"}", CLASS_OTHER},
                {"{\"deliveryClass\":\"Durable\"}", CLASS_OTHER},
                {"{\"deliveryClass\":\"durable \"}", CLASS_OTHER},
                {"{\"deliveryClass\":\"\"}", CLASS_OTHER},
                {"{\"deliveryClass\":5}", CLASS_OTHER},
                {"{\"deliveryClass\":false}", CLASS_OTHER},
                {"{\"deliveryClass\":{}}", CLASS_OTHER},
                {"{\"deliveryClass\":null}", CLASS_UNSET},
                {"{\"replay\":true}", CLASS_UNSET},
                {"{}", CLASS_UNSET},
                {"[\"durable\"]", CLASS_UNSET},
                {"\"durable\"", CLASS_UNSET},
                {"null", CLASS_UNSET},
                {"not json", CLASS_UNSET},
                {"{\"deliveryClass\":\"durable\"", CLASS_UNSET},
                {"", CLASS_UNSET},
                {"{\"deliveryClass\":\"durable\",\"x\":" HUGE_INT "}", CLASS_DURABLE},
                {"{\"replay\":true,\"replayWindow\":\"2h\",\"deliveryClass\":\"durable\","
                 "\"description\":\"d\"}",
                 CLASS_DURABLE},
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
                ck_assert_msg(contract_class_of(cases[i].value, strlen(cases[i].value)) == cases[i].want,
                              "class_of(%s)", cases[i].value);
        ck_assert_int_eq(contract_class_of(NULL, 0), CLASS_UNSET);
}
END_TEST

START_TEST(test_class_is_durable)
{
        /* first set of cfg, =defaults, else durable; only "durable" is durable */
        ck_assert(contract_class_is_durable(CLASS_UNSET, CLASS_UNSET));
        ck_assert(contract_class_is_durable(CLASS_UNSET, CLASS_DURABLE));
        ck_assert(!contract_class_is_durable(CLASS_UNSET, CLASS_OTHER));
        ck_assert(contract_class_is_durable(CLASS_DURABLE, CLASS_UNSET));
        ck_assert(contract_class_is_durable(CLASS_DURABLE, CLASS_OTHER));
        ck_assert(!contract_class_is_durable(CLASS_OTHER, CLASS_UNSET));
        ck_assert(!contract_class_is_durable(CLASS_OTHER, CLASS_DURABLE));
        ck_assert(contract_class_is_durable(CLASS_DURABLE, CLASS_DURABLE));
}
END_TEST

/* ---- control request (§8.2) ---------------------------------------------- */

#define JOIN_REQ                                                                                                       \
        "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"team.backend\"},"                                             \
        "\"from\":{\"id\":\"" ALICE "\",\"name\":\"alice\"}}"

static ctl_req_status ctl(const char *body, const char *caller, contract_ctl_request *r)
{
        return contract_ctl_request_decode(body, strlen(body), caller, r);
}

START_TEST(test_ctl_request_ok)
{
        contract_ctl_request r;

        ck_assert_int_eq(ctl(JOIN_REQ, ALICE, &r), CTL_REQ_OK);
        ck_assert_str_eq(json_string_value(r.op), "durableJoin");
        ck_assert_str_eq(r.from_id, ALICE);
        ck_assert(json_is_object(r.args));
        ck_assert_str_eq(json_string_value(json_object_get(r.args, "channel")), "team.backend");
        contract_ctl_request_fini(&r);
        ck_assert_ptr_null(r.root);
        contract_ctl_request_fini(&r);
        contract_ctl_request_fini(NULL);
}
END_TEST

START_TEST(test_ctl_request_args)
{
        contract_ctl_request r;

        /* absent and null args read as {} */
        ck_assert_int_eq(ctl("{\"op\":\"listMemberships\",\"from\":{\"id\":\"UA\"}}", "UA", &r), CTL_REQ_OK);
        ck_assert(json_is_object(r.args));
        ck_assert_uint_eq(json_object_size(r.args), 0);
        contract_ctl_request_fini(&r);
        ck_assert_int_eq(ctl("{\"op\":\"x\",\"args\":null,\"from\":{\"id\":\"UA\"}}", "UA", &r), CTL_REQ_OK);
        ck_assert(json_is_object(r.args));
        ck_assert_uint_eq(json_object_size(r.args), 0);
        contract_ctl_request_fini(&r);
        /* non-object args are passed on and have no fields */
        ck_assert_int_eq(ctl("{\"op\":\"x\",\"args\":\"team\",\"from\":{\"id\":\"UA\"}}", "UA", &r), CTL_REQ_OK);
        ck_assert(json_is_string(r.args));
        ck_assert_ptr_null(json_object_get(r.args, "channel"));
        contract_ctl_request_fini(&r);
        /* missing op is NULL (the dispatcher renders it "undefined") */
        ck_assert_int_eq(ctl("{\"from\":{\"id\":\"UA\"}}", "UA", &r), CTL_REQ_OK);
        ck_assert_ptr_null(r.op);
        contract_ctl_request_fini(&r);
        /* a generation beyond int64 is still a (finite) number */
        ck_assert_int_eq(ctl("{\"op\":\"durableLeave\",\"args\":{\"channel\":\"c\","
                             "\"generation\":" HUGE_INT "},\"from\":{\"id\":\"UA\"}}",
                             "UA", &r),
                         CTL_REQ_OK);
        ck_assert(json_is_number(json_object_get(r.args, "generation")));
        contract_ctl_request_fini(&r);
}
END_TEST

START_TEST(test_ctl_request_not_json)
{
        static const char *const bodies[] = {
                "",
                "{",
                "{\"op\":",
                "{} x",
                "{\"op\":\"a\\u0000\"}",
                "{\"op\":\"\xff\"}",
                "op",
                /* jansson quotes a partial UTF-8 character in this error */
                "{\"op\":\"ab\\u1\xc4\x80\"}",
        };
        contract_ctl_request r;

        for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
                ck_assert_int_eq(ctl(bodies[i], "UA", &r), CTL_REQ_NOT_JSON);
                ck_assert(r.error[0] != '\0');
                /* It becomes the reply's error text (§8.2 step 2). */
                char *reply = contract_ctl_reply_error(r.error);
                ck_assert_ptr_nonnull(reply);
                free(reply);
                ck_assert_ptr_null(r.root);
                contract_ctl_request_fini(&r);
        }
}
END_TEST

START_TEST(test_ctl_request_not_object)
{
        static const char *const bodies[] = {
                "null", "[]", "5", "\"x\"", "true", "[{\"from\":{\"id\":\"UA\"}}]",
        };
        contract_ctl_request r;

        for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
                ck_assert_int_eq(ctl(bodies[i], "UA", &r), CTL_REQ_NOT_OBJECT);
                ck_assert(strstr(r.error, "JSON object") != NULL);
                ck_assert_ptr_null(r.root);
                contract_ctl_request_fini(&r);
        }
}
END_TEST

START_TEST(test_ctl_request_sender_mismatch)
{
        static const struct {
                const char *body;
                const char *from_id; /* expected borrowed from_id */
        } cases[] = {
                {"{\"op\":\"durableJoin\"}", NULL},
                {"{\"op\":\"durableJoin\",\"from\":null}", NULL},
                {"{\"op\":\"durableJoin\",\"from\":\"UA\"}", NULL},
                {"{\"op\":\"durableJoin\",\"from\":{}}", NULL},
                {"{\"op\":\"durableJoin\",\"from\":{\"id\":5}}", NULL},
                {"{\"op\":\"durableJoin\",\"from\":{\"id\":[\"UA\"]}}", NULL},
                {"{\"op\":\"durableJoin\",\"from\":{\"id\":\"UB\"}}", "UB"},
                {"{\"op\":\"durableJoin\",\"from\":{\"id\":\"ua\"}}", "ua"},
                {"{\"op\":\"durableJoin\",\"from\":{\"id\":\"UA \"}}", "UA "},
                {"{\"op\":\"durableJoin\",\"from\":{\"id\":\"U\"}}", "U"},
        };
        contract_ctl_request r;

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                ck_assert_int_eq(ctl(cases[i].body, "UA", &r), CTL_REQ_SENDER_MISMATCH);
                ck_assert_str_eq(r.error, CONTRACT_ERR_SENDER_MISMATCH);
                if (cases[i].from_id)
                        ck_assert_str_eq(r.from_id, cases[i].from_id);
                else
                        ck_assert_ptr_null(r.from_id);
                contract_ctl_request_fini(&r);
        }
        ck_assert_int_eq(ctl(JOIN_REQ, NULL, &r), CTL_REQ_SENDER_MISMATCH);
        contract_ctl_request_fini(&r);
        ck_assert_int_eq(ctl(JOIN_REQ, BOB, &r), CTL_REQ_SENDER_MISMATCH);
        ck_assert_str_eq(r.from_id, ALICE);
        contract_ctl_request_fini(&r);
}
END_TEST

START_TEST(test_ctl_request_too_large)
{
        char *body = malloc(CONTRACT_MAX_REQUEST_BYTES + 2);
        contract_ctl_request r;

        ck_assert_ptr_nonnull(body);
        memset(body, ' ', CONTRACT_MAX_REQUEST_BYTES + 1);
        memcpy(body, JOIN_REQ, strlen(JOIN_REQ));
        body[CONTRACT_MAX_REQUEST_BYTES + 1] = '\0';
        ck_assert_int_eq(contract_ctl_request_decode(body, CONTRACT_MAX_REQUEST_BYTES + 1, ALICE, &r),
                         CTL_REQ_TOO_LARGE);
        ck_assert_ptr_null(r.root);
        contract_ctl_request_fini(&r);
        /* trailing whitespace is fine at exactly the limit */
        ck_assert_int_eq(contract_ctl_request_decode(body, CONTRACT_MAX_REQUEST_BYTES, ALICE, &r), CTL_REQ_OK);
        contract_ctl_request_fini(&r);
        free(body);
}
END_TEST

/* ---- JS string conversion ------------------------------------------------ */

static void expect_js(json_t *v, const char *want)
{
        char *out = NULL;

        ck_assert_int_eq(contract_js_string(v, &out), 0);
        ck_assert_str_eq(out, want);
        free(out);
        json_decref(v);
}

START_TEST(test_js_string_scalars)
{
        char *out = NULL;

        ck_assert_int_eq(contract_js_string(NULL, &out), 0);
        ck_assert_str_eq(out, "undefined");
        free(out);
        expect_js(json_null(), "null");
        expect_js(json_true(), "true");
        expect_js(json_false(), "false");
        expect_js(json_string("durable Join \xc3\xa9"), "durable Join \xc3\xa9");
        expect_js(json_string(""), "");
        expect_js(json_object(), "[object Object]");
        expect_js(json_integer(5), "5");
        expect_js(json_integer(-7), "-7");
        expect_js(json_integer(0), "0");
        expect_js(json_integer(9007199254740991LL), "9007199254740991");
        /* beyond 2^53 JavaScript holds the nearest double */
        expect_js(json_integer(9007199254740993LL), "9007199254740992");
        expect_js(json_integer(9223372036854775807LL), "9223372036854776000");
}
END_TEST

typedef struct real_case {
        double v;
        const char *want;
} real_case;

static const real_case real_cases[] = {
        {1.5, "1.5"},
        {2.0, "2"},
        {100.0, "100"},
        {1e21, "1e+21"},
        {1e20, "100000000000000000000"},
        {123456789012345680000.0, "123456789012345680000"},
        {1e-7, "1e-7"},
        {1.5e-7, "1.5e-7"},
        {1e-6, "0.000001"},
        {1.25e-6, "0.00000125"},
        {0.1, "0.1"},
        {0.1 + 0.2, "0.30000000000000004"},
        {1.0 / 3.0, "0.3333333333333333"},
        {123.456, "123.456"},
        {4.35, "4.35"},
        {-0.0, "0"},
        {-1.5e-10, "-1.5e-10"},
        {-2.5, "-2.5"},
        {5e-324, "5e-324"},
        {1.7976931348623157e308, "1.7976931348623157e+308"},
        {1e300, "1e+300"},
        {1.2345e25, "1.2345e+25"},
        {9007199254740992.0, "9007199254740992"},
        {3.0, "3"},
        /* powers of two, where the nearest 16-digit candidate misses */
        {0x1p-1017, "7.120236347223045e-307"},
        {0x1p-957, "8.209073602596753e-289"},
};

START_TEST(test_js_string_reals)
{
        expect_js(json_real(real_cases[_i].v), real_cases[_i].want);
}
END_TEST

START_TEST(test_js_string_arrays)
{
        expect_js(json_loads("[]", 0, NULL), "");
        expect_js(json_loads("[1,\"a\",null,true]", 0, NULL), "1,a,,true");
        expect_js(json_loads("[[1,2],[3]]", 0, NULL), "1,2,3");
        expect_js(json_loads("[null]", 0, NULL), "");
        expect_js(json_loads("[null,null]", 0, NULL), ",");
        expect_js(json_loads("[{}]", 0, NULL), "[object Object]");
        expect_js(json_loads("[[null,[]],1]", 0, NULL), ",,1");
        expect_js(json_loads("[1.5,2.0,false]", 0, NULL), "1.5,2,false");
        expect_js(json_loads("[\"durableJoin\"]", 0, NULL), "durableJoin");
}
END_TEST

/* ---- replies (§5.4) ----------------------------------------------------- */

START_TEST(test_replies)
{
        json_t *data = json_pack("{s:b,s:i}", "durable", 1, "generation", 3);
        json_t *left = json_pack("{s:s,s:b}", "channel", "team.backend", "alreadyLeft", 1);

        ck_assert_ptr_nonnull(data);
        expect_str(contract_ctl_reply_ok(data), "{\"ok\":true,\"data\":{\"durable\":true,\"generation\":3}}");
        /* data is borrowed: still ours */
        ck_assert_int_eq(data->refcount, 1);
        json_decref(data);
        expect_str(contract_ctl_reply_ok(left),
                   "{\"ok\":true,\"data\":{\"channel\":\"team.backend\",\"alreadyLeft\":true}}");
        json_decref(left);
        expect_str(contract_ctl_reply_ok(NULL), "{\"ok\":true}");
        expect_str(contract_ctl_reply_error(CONTRACT_ERR_SENDER_MISMATCH),
                   "{\"ok\":false,\"error\":\"sender mismatch " EM_DASH " request rejected\"}");
        expect_str(contract_ctl_reply_error("op \"x\" not supported"),
                   "{\"ok\":false,\"error\":\"op \\\"x\\\" not supported\"}");
        ck_assert_ptr_null(contract_ctl_reply_error(NULL));
}
END_TEST

/* ---- §8.4 exact error strings -------------------------------------------- */

START_TEST(test_error_texts)
{
        char *allow[] = {(char *)"general", (char *)"team.>"};
        char *with_null[] = {NULL, (char *)"general", NULL, (char *)"x.*"};
        contract_acl acl = {.allow = allow, .n_allow = 2};
        contract_acl holes = {.allow = with_null, .n_allow = 4};
        contract_acl empty = {0};
        json_t *v;

        ck_assert_str_eq(CONTRACT_ERR_SENDER_MISMATCH, "sender mismatch " EM_DASH " request rejected");
        ck_assert_uint_eq(strlen(CONTRACT_ERR_SENDER_MISMATCH), 36);
        ck_assert_mem_eq(CONTRACT_ERR_SENDER_MISMATCH, "sender mismatch \xe2\x80\x94 request rejected", 37);
        ck_assert_str_eq(CONTRACT_ERR_LEAVE_GENERATION, "durableLeave: a finite generation is required "
                                                        "(fail-closed stale-leave guard)");

        v = json_string("subscribe");
        expect_str(contract_err_unknown_op(v), "op \"subscribe\" not supported on the delivery control service");
        json_decref(v);
        expect_str(contract_err_unknown_op(NULL), "op \"undefined\" not supported on the delivery control service");
        v = json_null();
        expect_str(contract_err_unknown_op(v), "op \"null\" not supported on the delivery control service");
        v = json_integer(5);
        expect_str(contract_err_unknown_op(v), "op \"5\" not supported on the delivery control service");
        json_decref(v);
        v = json_loads("[\"a\",null,2.50]", 0, NULL);
        expect_str(contract_err_unknown_op(v), "op \"a,,2.5\" not supported on the delivery control service");
        json_decref(v);

        expect_str(contract_err_blank_channel("durableJoin"), "durableJoin: channel must be a non-blank string");
        expect_str(contract_err_blank_channel("durableLeave"), "durableLeave: channel must be a non-blank string");
        expect_str(contract_err_empty_segment("a..b"),
                   "invalid channel \"a..b\": empty segment (no leading/trailing/double dots)");
        expect_str(contract_err_gt_not_last("a.>.b"),
                   "invalid channel \"a.>.b\": '>' is only valid as the last segment");
        expect_str(contract_err_bad_segment("a.b c.d", "b c.d", 3),
                   "invalid channel \"a.b c.d\": segment \"b c\" must be a NATS-safe token "
                   "([A-Za-z0-9_-]), '*', or '>' " EM_DASH " policy channel names can't contain "
                   "characters the wire layer would rewrite");
        expect_str(contract_err_wildcard("durableJoin", "team.*"),
                   "durableJoin: \"team.*\" must be a concrete channel (durable membership is "
                   "per-concrete-channel, not wildcard)");
        expect_str(contract_err_no_acl(ALICE),
                   "durableJoin: no read ACL on record for " ALICE " (not provisioned for durable delivery)");
        expect_str(contract_err_outside_acl("random", &acl),
                   "channel \"random\" is not within your read ACL [general, team.>]");
        expect_str(contract_err_outside_acl("random", &holes),
                   "channel \"random\" is not within your read ACL [general, x.*]");
        expect_str(contract_err_outside_acl("random", &empty), "channel \"random\" is not within your read ACL []");
        expect_str(contract_err_stale("team.backend", ALICE, "2", 3),
                   "stale membership write for team.backend/" ALICE ": generation 2 < current 3");
        expect_str(contract_err_stale("c", "U", "7.5", 3),
                   "stale membership write for c/U: generation 7.5 < current 3");
        expect_str(contract_err_cas_exhausted("team.backend", ALICE),
                   "members CAS exhausted retries for team.backend/" ALICE);
}
END_TEST

/* ---- §8.5 channel argument ----------------------------------------------- */

typedef struct arg_case {
        const char *op;
        const char *args; /* JSON text, NULL = no args object */
        int rc;
        const char *want; /* channel on success, error text on failure */
} arg_case;

#define BAD_SEG(ch, seg)                                                                                               \
        "invalid channel \"" ch "\": segment \"" seg "\" must be a NATS-safe token "                                   \
        "([A-Za-z0-9_-]), '*', or '>' " EM_DASH " policy channel names can't contain "                                 \
        "characters the wire layer would rewrite"

static const arg_case arg_cases[] = {
        {"durableJoin", "{\"channel\":\"team.backend\"}", 0, "team.backend"},
        {"durableJoin", "{\"channel\":\"  team.backend\\t\"}", 0, "team.backend"},
        {"durableJoin", "{\"channel\":\"\\u3000review\\u00a0\\ufeff\"}", 0, "review"},
        {"durableLeave", "{\"channel\":\"general\",\"generation\":1}", 0, "general"},
        /* blank */
        {"durableJoin", "{}", -EINVAL, "durableJoin: channel must be a non-blank string"},
        {"durableJoin", "{\"channel\":null}", -EINVAL, "durableJoin: channel must be a non-blank string"},
        {"durableJoin", "{\"channel\":5}", -EINVAL, "durableJoin: channel must be a non-blank string"},
        {"durableJoin", "{\"channel\":[\"a\"]}", -EINVAL, "durableJoin: channel must be a non-blank string"},
        {"durableLeave", "{\"channel\":\"\"}", -EINVAL, "durableLeave: channel must be a non-blank string"},
        {"durableLeave", "{\"channel\":\" \\t\\n\\u2003 \"}", -EINVAL,
         "durableLeave: channel must be a non-blank string"},
        {"durableJoin", "\"team\"", -EINVAL, "durableJoin: channel must be a non-blank string"},
        {"durableJoin", NULL, -EINVAL, "durableJoin: channel must be a non-blank string"},
        /* assertValidChannel on the trimmed value */
        {"durableJoin", "{\"channel\":\"a..b\"}", -EINVAL,
         "invalid channel \"a..b\": empty segment (no leading/trailing/double dots)"},
        {"durableJoin", "{\"channel\":\" .a \"}", -EINVAL,
         "invalid channel \".a\": empty segment (no leading/trailing/double dots)"},
        {"durableJoin", "{\"channel\":\"a.\"}", -EINVAL,
         "invalid channel \"a.\": empty segment (no leading/trailing/double dots)"},
        {"durableJoin", "{\"channel\":\"a.>.b\"}", -EINVAL,
         "invalid channel \"a.>.b\": '>' is only valid as the last segment"},
        {"durableJoin", "{\"channel\":\"a.b c\"}", -EINVAL, BAD_SEG("a.b c", "b c")},
        {"durableJoin", "{\"channel\":\"a. b\"}", -EINVAL, BAD_SEG("a. b", " b")},
        {"durableJoin", "{\"channel\":\"caf\\u00e9\"}", -EINVAL, BAD_SEG("caf\xc3\xa9", "caf\xc3\xa9")},
        {"durableJoin", "{\"channel\":\"team/x\"}", -EINVAL, BAD_SEG("team/x", "team/x")},
        /* valid pattern, but not concrete */
        {"durableJoin", "{\"channel\":\"team.*\"}", -EINVAL,
         "durableJoin: \"team.*\" must be a concrete channel (durable membership is "
         "per-concrete-channel, not wildcard)"},
        {"durableJoin", "{\"channel\":\"a.>\"}", -EINVAL,
         "durableJoin: \"a.>\" must be a concrete channel (durable membership is "
         "per-concrete-channel, not wildcard)"},
        {"durableLeave", "{\"channel\":\" > \"}", -EINVAL,
         "durableLeave: \">\" must be a concrete channel (durable membership is "
         "per-concrete-channel, not wildcard)"},
        {"durableLeave", "{\"channel\":\"*\"}", -EINVAL,
         "durableLeave: \"*\" must be a concrete channel (durable membership is "
         "per-concrete-channel, not wildcard)"},
};

START_TEST(test_channel_arg)
{
        const arg_case *c = &arg_cases[_i];
        json_t *args = c->args ? json_loads(c->args, JSON_DECODE_ANY, NULL) : NULL;
        char *channel = (char *)"sentinel", *error = (char *)"sentinel";

        if (c->args)
                ck_assert_ptr_nonnull(args);
        ck_assert_int_eq(contract_channel_arg(c->op, args, &channel, &error), c->rc);
        if (c->rc == 0) {
                ck_assert_ptr_null(error);
                expect_str(channel, c->want);
        } else {
                ck_assert_ptr_null(channel);
                expect_str(error, c->want);
        }
        json_decref(args);
}
END_TEST

/* ---- contract_js_number: String(n) (PROTOCOL §10.2, §10.3) ------------- */

static const real_case number_cases[] = {
        {NAN, "NaN"},
        {-NAN, "NaN"},
        {0.0, "0"},
        {-0.0, "0"},
        {2.0, "2"},
        {1.0, "1"},
        {15.0, "15"},
        {15000.0, "15000"},
        {1.5, "1.5"},
        {-2.5, "-2.5"},
        {2500 / 1000.0, "2.5"}, /* broker-gone ms / 1000 */
        {1e21, "1e+21"},
        {-1e21, "-1e+21"},
        {1e20, "100000000000000000000"},
        {123456789012345680000.0, "123456789012345680000"},
        {1e-7, "1e-7"},
        {0.000001, "0.000001"},
        {0.1, "0.1"},
        {1.0 / 3.0, "0.3333333333333333"},
        {9007199254740991.0, "9007199254740991"},
        {4294967295.0, "4294967295"},
        {INFINITY, "Infinity"},
        {-INFINITY, "-Infinity"},
};

START_TEST(test_js_number)
{
        const real_case *c = &number_cases[_i];
        char buf[64];

        memset(buf, 'x', sizeof(buf));
        ck_assert_int_eq(contract_js_number(c->v, buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, c->want);
}
END_TEST

/* String(n) and the rendering of a JSON real agree. */
START_TEST(test_js_number_matches_js_string)
{
        char buf[64];

        ck_assert_int_eq(contract_js_number(real_cases[_i].v, buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, real_cases[_i].want);
}
END_TEST

START_TEST(test_js_number_buffer)
{
        char buf[32];

        /* "-Infinity" is 9 bytes: 10 fit with the NUL, 9 do not */
        ck_assert_int_eq(contract_js_number(-INFINITY, buf, 10), 0);
        ck_assert_str_eq(buf, "-Infinity");
        ck_assert_int_lt(contract_js_number(-INFINITY, buf, 9), 0);
        ck_assert_int_eq(contract_js_number(-INFINITY, buf, 9), -ENOSPC);
        ck_assert_int_eq(contract_js_number(NAN, buf, 3), -ENOSPC);
        ck_assert_int_eq(contract_js_number(NAN, buf, 4), 0);
        ck_assert_str_eq(buf, "NaN");
        ck_assert_int_eq(contract_js_number(1e20, buf, 21), -ENOSPC);
        ck_assert_int_eq(contract_js_number(1e20, buf, 22), 0);
        ck_assert_str_eq(buf, "100000000000000000000");
        ck_assert_int_eq(contract_js_number(0.0, buf, 1), -ENOSPC);
        ck_assert_int_eq(contract_js_number(2.0, NULL, 0), -ENOSPC);
}
END_TEST

static Suite *record_suite(void)
{
        Suite *s = suite_create("contract_record");
        TCase *dec = tcase_create("decoders");
        TCase *codec = tcase_create("codecs");
        TCase *ctl_tc = tcase_create("control");

        tcase_add_loop_test(dec, test_decoder_variants, 0, N(variants));
        tcase_add_test(dec, test_size_limits);
        tcase_add_test(dec, test_error_strings);

        tcase_add_test(codec, test_chat_example);
        tcase_add_test(codec, test_chat_details);
        tcase_add_test(codec, test_entry_example);
        tcase_add_test(codec, test_entry_reasons);
        tcase_add_test(codec, test_entry_with_huge_integer_in_msg);
        tcase_add_test(codec, test_entry_encode_bytes);
        tcase_add_test(codec, test_entry_encode_errors);
        tcase_add_test(codec, test_entry_round_trip);
        tcase_add_test(codec, test_acl_example);
        tcase_add_test(codec, test_acl_elements);
        tcase_add_test(codec, test_acl_encode);
        tcase_add_test(codec, test_member_examples);
        tcase_add_test(codec, test_member_optional_and_states);
        tcase_add_test(codec, test_member_encode);
        tcase_add_test(codec, test_member_encode_errors);
        tcase_add_test(codec, test_member_round_trip);
        tcase_add_test(codec, test_member_eligible);
        tcase_add_test(codec, test_lease);
        tcase_add_test(codec, test_class_of);
        tcase_add_test(codec, test_class_is_durable);

        tcase_add_test(ctl_tc, test_ctl_request_ok);
        tcase_add_test(ctl_tc, test_ctl_request_args);
        tcase_add_test(ctl_tc, test_ctl_request_not_json);
        tcase_add_test(ctl_tc, test_ctl_request_not_object);
        tcase_add_test(ctl_tc, test_ctl_request_sender_mismatch);
        tcase_add_test(ctl_tc, test_ctl_request_too_large);
        tcase_add_test(ctl_tc, test_js_string_scalars);
        tcase_add_loop_test(ctl_tc, test_js_string_reals, 0, N(real_cases));
        tcase_add_test(ctl_tc, test_js_string_arrays);
        tcase_add_test(ctl_tc, test_replies);
        tcase_add_test(ctl_tc, test_error_texts);
        tcase_add_loop_test(ctl_tc, test_channel_arg, 0, N(arg_cases));
        tcase_add_loop_test(ctl_tc, test_js_number, 0, N(number_cases));
        tcase_add_loop_test(ctl_tc, test_js_number_matches_js_string, 0, N(real_cases));
        tcase_add_test(ctl_tc, test_js_number_buffer);

        suite_add_tcase(s, dec);
        suite_add_tcase(s, codec);
        suite_add_tcase(s, ctl_tc);
        return s;
}

int main(void)
{
        return unit_run(record_suite());
}
