/* acl_members_cli: `acl show|set|grant|revoke` write ACL records as the
 * provisioner does (PROTOCOL §4.3: key token(owner), revision 1 then +1,
 * patterns checked by assertValidChannel), and `members list` lists the
 * readable membership records of §4.4 with exact channel / owner matching
 * (no dotted-prefix bleed, delete markers skipped). */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALICE "UAQGWOEVJKMIO4WXSYOTLARXYOZTCXFK67JASEH6AFFFYK6FOPSKQCAD"
#define BOB "UDI36ZKVNUM5WMO4QQ6HDQU7F4OH2RCXOJRX6GAIOS5SKVNNSKCDNLJA"
#define MEMBERS "cotal_members_acl"

static void setup(void)
{
        tu_broker_setup();
        const char *args[] = {"--space", "acl", "provision", NULL};
        ck_assert_int_eq(tu_ctl(NULL, NULL, args), 0);
}

static void teardown(void)
{
        tu_broker_teardown();
}

/* The stored ACL value of key, decoded (NULL if absent). */
static json_t *stored_acl(const char *key)
{
        char subj[200];
        snprintf(subj, sizeof subj, "$KV.cotal_acl_acl.%s", key);
        json_t *r =
                tu_api("$JS.API.STREAM.MSG.GET.%s%s", "KV_cotal_acl_acl", "", json_pack("{s:s}", "last_by_subj", subj));
        const char *b64 = json_string_value(json_object_get(json_object_get(r, "message"), "data"));
        json_t *v = NULL;
        if (b64) {
                /* Decode base64 with a small table (test-only). */
                static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
                size_t n = strlen(b64), o = 0;
                char *buf = calloc(1, n);
                unsigned acc = 0;
                int bits = 0;
                for (size_t i = 0; i < n && b64[i] != '='; i++) {
                        const char *p = strchr(tbl, b64[i]);
                        ck_assert_ptr_nonnull(p);
                        acc = (acc << 6) | (unsigned)(p - tbl);
                        bits += 6;
                        if (bits >= 8) {
                                bits -= 8;
                                buf[o++] = (char)((acc >> bits) & 0xff);
                        }
                }
                v = json_loadb(buf, o, 0, NULL);
                free(buf);
        }
        json_decref(r);
        return v;
}

static int acl(char **out, char **err, const char *verb, const char *owner, const char *p1, const char *p2)
{
        const char *args[] = {"--space", "acl", "--json", "acl", verb, owner, p1, p2, NULL};
        return tu_ctl(out, err, args);
}

START_TEST(acl_set_grant_revoke_show)
{
        char *out = NULL, *err = NULL;
        ck_assert_int_eq(acl(&out, &err, "show", BOB, NULL, NULL), 4);
        free(out);
        free(err);

        ck_assert_int_eq(acl(&out, &err, "set", BOB, "general", "team.>"), 0);
        free(out);
        free(err);
        json_t *v = stored_acl(BOB);
        ck_assert_ptr_nonnull(v);
        ck_assert_int_eq(json_array_size(json_object_get(v, "allowSubscribe")), 2);
        ck_assert_str_eq(json_string_value(json_array_get(json_object_get(v, "allowSubscribe"), 1)), "team.>");
        ck_assert_int_eq(json_integer_value(json_object_get(v, "revision")), 1);
        ck_assert(json_is_integer(json_object_get(v, "updatedAt")));
        ck_assert_int_eq(json_object_size(v), 3); /* nothing else, no nulls */
        json_decref(v);

        ck_assert_int_eq(acl(&out, &err, "grant", BOB, "review", "general"), 0);
        free(out);
        free(err);
        v = stored_acl(BOB);
        ck_assert_int_eq(json_array_size(json_object_get(v, "allowSubscribe")), 3); /* no duplicate */
        ck_assert_int_eq(json_integer_value(json_object_get(v, "revision")), 2);
        json_decref(v);

        ck_assert_int_eq(acl(&out, &err, "revoke", BOB, "team.>", NULL), 0);
        json_t *j = tu_parse_line(out);
        free(out);
        free(err);
        json_t *allow = json_object_get(j, "allowSubscribe");
        ck_assert_int_eq(json_array_size(allow), 2);
        ck_assert_str_eq(json_string_value(json_array_get(allow, 0)), "general");
        ck_assert_str_eq(json_string_value(json_array_get(allow, 1)), "review");
        ck_assert_int_eq(json_integer_value(json_object_get(j, "revision")), 3);
        json_decref(j);

        /* An empty ACL is a known ACL that reads nothing (§4.3). */
        const char *args[] = {"--space", "acl", "--json", "acl", "set", BOB, NULL};
        ck_assert_int_eq(tu_ctl(&out, &err, args), 0);
        free(out);
        free(err);
        v = stored_acl(BOB);
        ck_assert(json_is_array(json_object_get(v, "allowSubscribe")));
        ck_assert_int_eq(json_array_size(json_object_get(v, "allowSubscribe")), 0);
        json_decref(v);
        ck_assert_int_eq(acl(&out, &err, "show", BOB, NULL, NULL), 0);
        free(out);
        free(err);
}
END_TEST

START_TEST(acl_rejects_bad_input)
{
        char *out = NULL, *err = NULL;
        /* §1.3: bad segments, '>' not last, empty segments. */
        ck_assert_int_eq(acl(&out, &err, "set", ALICE, "a..b", NULL), 2);
        ck_assert_msg(strstr(err, "invalid channel pattern"), "%s", err);
        free(out);
        free(err);
        ck_assert_int_eq(acl(&out, &err, "set", ALICE, "a.>.b", NULL), 2);
        free(out);
        free(err);
        ck_assert_int_eq(acl(&out, &err, "set", ALICE, "caf\xc3\xa9", NULL), 2);
        free(out);
        free(err);
        ck_assert_ptr_null(stored_acl(ALICE));
        /* Revoke from nothing: not found. */
        ck_assert_int_eq(acl(&out, &err, "revoke", ALICE, "general", NULL), 4);
        free(out);
        free(err);
        ck_assert_ptr_null(stored_acl(ALICE));
        /* Usage errors. */
        ck_assert_int_eq(acl(&out, &err, "grant", ALICE, NULL, NULL), 2);
        free(out);
        free(err);
}
END_TEST

static void member(const char *channel, const char *owner, const char *extra)
{
        char key[256], value[1024];
        snprintf(key, sizeof key, "%s/%s", channel, owner);
        snprintf(value, sizeof value,
                 "{\"channel\":\"%s\",\"owner\":\"%s\",\"state\":\"durable-active\",\"joinCursor\":10,"
                 "\"generation\":2,\"activated\":true,\"writerIdentity\":\"UTEST\",\"updatedAt\":1%s}",
                 channel, owner, extra ? extra : "");
        tu_kv_put(MEMBERS, key, value);
}

static size_t list(const char *channel, const char *owner, json_t **first)
{
        const char *args[8];
        int n = 0;
        args[n++] = "--space";
        args[n++] = "acl";
        args[n++] = "--json";
        if (channel) {
                args[n++] = "--channel";
                args[n++] = channel;
        }
        if (owner) {
                args[n++] = "--owner";
                args[n++] = owner;
        }
        const char *full[12];
        int k = 0;
        for (int i = 0; i < n; i++)
                full[k++] = args[i];
        full[k++] = "members";
        full[k++] = "list";
        full[k] = NULL;
        char *out = NULL, *err = NULL;
        ck_assert_int_eq(tu_ctl(&out, &err, full), 0);
        char **lines;
        size_t nl = tu_lines(out, &lines);
        if (first)
                *first = nl ? tu_parse_line(lines[0]) : NULL;
        tu_lines_free(lines, nl);
        free(out);
        free(err);
        return nl;
}

START_TEST(members_list_is_exact)
{
        member("review", BOB, NULL);
        member("review.x", BOB, NULL);
        member("review", ALICE, ",\"leaveCursor\":40");
        member("general", ALICE, NULL);
        member("gone", BOB, NULL);
        /* A deleted record is skipped; an unreadable one is shown as such. */
        natsMsg *m = NULL;
        natsMsg_Create(&m, "$KV." MEMBERS ".gone/" BOB, NULL, NULL, 0);
        natsMsgHeader_Set(m, "KV-Operation", "DEL");
        jsCtx *js = NULL;
        natsConnection_JetStream(&js, tu_nc, NULL);
        ck_assert(js_PublishMsg(NULL, js, m, NULL, NULL) == NATS_OK);
        natsMsg_Destroy(m);
        jsCtx_Destroy(js);
        tu_kv_put(MEMBERS, "broken/" BOB, "{\"channel\":\"broken\"}");
        tu_kv_put(MEMBERS, "notamemberkey", "{}");

        ck_assert_int_eq(list(NULL, NULL, NULL), 5);
        json_t *first = NULL;
        ck_assert_int_eq(list("review", NULL, &first), 2); /* not review.x */
        /* Keys are listed in order: Alice's tombstone first. */
        ck_assert_str_eq(json_string_value(json_object_get(first, "key")), "review/" ALICE);
        json_t *rec = json_object_get(first, "record");
        ck_assert_int_eq(json_integer_value(json_object_get(rec, "leaveCursor")), 40);
        json_decref(first);
        ck_assert_int_eq(list("review.x", NULL, NULL), 1);
        ck_assert_int_eq(list(NULL, ALICE, NULL), 2);
        ck_assert_int_eq(list("review", BOB, &first), 1);
        rec = json_object_get(first, "record");
        ck_assert_str_eq(json_string_value(json_object_get(rec, "owner")), BOB);
        ck_assert_int_eq(json_integer_value(json_object_get(rec, "generation")), 2);
        ck_assert_int_eq(json_integer_value(json_object_get(rec, "joinCursor")), 10);
        ck_assert_ptr_null(json_object_get(rec, "leaveCursor"));
        ck_assert(json_is_true(json_object_get(rec, "activated")));
        json_decref(first);
        ck_assert_int_eq(list("broken", NULL, &first), 1);
        ck_assert_msg(json_string_value(json_object_get(first, "error")), "unreadable record not flagged");
        json_decref(first);
        ck_assert_int_eq(list("gone", NULL, NULL), 0);
        ck_assert_int_eq(list("nosuch", NULL, NULL), 0);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("acl_members_cli");
        TCase *tc = tcase_create("acl_members");
        tcase_add_unchecked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, acl_set_grant_revoke_show);
        tcase_add_test(tc, acl_rejects_bad_input);
        tcase_add_test(tc, members_list_is_exact);
        suite_add_tcase(s, tc);
        return tu_run(s);
}
