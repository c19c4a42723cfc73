/* control_join: the ctl.delivery operations of PROTOCOL §8.3-§8.7 against
 * a real broker and daemon, driven the way careless and hostile agents
 * would: joins are refused with the exact §8.4 texts when there is no ACL
 * row or the channel is outside it; a narrowed ACL stops delivery at the
 * reader and a restored one resumes it; a leave bounds the interval, needs
 * a finite and current generation and works after the ACL was narrowed; a
 * rejoin starts generation + 1; concurrent joins of one key activate once;
 * listMemberships shows exactly the caller's open records. Every reply is
 * checked against the exact §5.4 / §8.3 shape, and every refusal against
 * the members bucket (nothing written). */
#include "cotal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S "cj"
#define DLV "DLV_" S
#define INBOX "INBOX_" S
#define CHAT "CHAT_" S
#define MEMBERS_BUCKET "cotal_members_" S
#define MEMBERS_STREAM "KV_cotal_members_" S
#define ACL_BUCKET "cotal_acl_" S
#define EVE "UEVEEVEEVEEVEEVEEVEEVEEVEEVEEVEEVEEVEEVEEVEEVEEVEEVEEVEE"
#define FRANK "UFRANKFRANKFRANKFRANKFRANKFRANKFRANKFRANKFRANKFRANKFRANK"
#define GRACE "UGRACEGRACEGRACEGRACEGRACEGRACEGRACEGRACEGRACEGRACEGRACE"
#define MALLORY "UMALLORYMALLORYMALLORYMALLORYMALLORYMALLORYMALLORYMALLOR"
#define HEIDI "UHEIDIHEIDIHEIDIHEIDIHEIDIHEIDIHEIDIHEIDIHEIDIHEIDIHEIDI"
#define WAIT_MS 15000
#define REQ_MS 10000
#define JOIN_MS 30000 /* Appendix A: agents wait 30 s for a join */

static co_daemon dm;

static void setup(void)
{
        tu_broker_setup();
        co_provision(S);
        co_acl(S, ALICE, "[\"general\",\"lv.>\",\"team.>\",\"cc.>\"]");
        co_acl(S, BOB, "[\"general\",\"team.>\",\"lv.>\",\"cc.>\",\"odd.>\"]");
        co_acl(S, DAVE, "[\"a\",\"b.>\"]");
        co_acl(S, FRANK, "[\"ls.>\"]");
        co_acl(S, GRACE, "[\"ls.>\"]");
        ck_assert_msg(co_daemon_start(&dm, S, NULL), "daemon did not become ready");
}

static void teardown(void)
{
        co_daemon_finish(&dm);
        tu_broker_teardown();
}

/* ---- helpers ------------------------------------------------------------ */

/* printf into an owned string. */
__attribute__((format(printf, 1, 2))) static char *fmt(const char *f, ...)
{
        va_list ap;
        char *s = NULL;
        va_start(ap, f);
        int n = vasprintf(&s, f, ap);
        va_end(ap);
        ck_assert(n >= 0);
        return s;
}

/* A request from agent (from.id = agent) with op and args (raw JSON or
 * NULL for none), answered on agent's own reply subtree. */
static json_t *ask(const char *agent, const char *op, const char *args, int64_t timeout_ms)
{
        char *body =
                args ? fmt("{\"op\":\"%s\",\"args\":%s,\"from\":{\"id\":\"%s\",\"name\":\"agent\"}}", op, args, agent)
                     : fmt("{\"op\":\"%s\",\"from\":{\"id\":\"%s\",\"name\":\"agent\"}}", op, agent);
        json_t *r = co_request(S, agent, body, NULL, NULL, timeout_ms);
        free(body);
        return r;
}

static json_t *join(const char *agent, const char *channel)
{
        char *args = fmt("{\"channel\":\"%s\"}", channel);
        json_t *r = ask(agent, "durableJoin", args, JOIN_MS);
        free(args);
        return r;
}

static json_t *leave(const char *agent, const char *channel, const char *generation)
{
        char *args = fmt("{\"channel\":\"%s\",\"generation\":%s}", channel, generation);
        json_t *r = ask(agent, "durableLeave", args, REQ_MS);
        free(args);
        return r;
}

/* §5.4: exactly {"ok":false,"error":text}. Steals r. */
static void expect_error(json_t *r, const char *text, const char *what)
{
        char *have = co_json_text(r);
        ck_assert_msg(r && json_object_size(r) == 2 && json_is_false(json_object_get(r, "ok")) &&
                              json_is_string(json_object_get(r, "error")) &&
                              strcmp(json_string_value(json_object_get(r, "error")), text) == 0,
                      "%s: got %s, want {\"error\":\"%s\",\"ok\":false}", what, have, text);
        free(have);
        json_decref(r);
}

/* §5.4 / §8.3: exactly {"ok":true,"data":<data_json>}. Steals r. */
static void expect_ok(json_t *r, const char *data_json, const char *what)
{
        json_t *want = json_loads(data_json, JSON_DECODE_ANY, NULL);
        ck_assert_msg(want, "bad expectation %s", data_json);
        char *have = co_json_text(r);
        ck_assert_msg(r && json_object_size(r) == 2 && json_is_true(json_object_get(r, "ok")) &&
                              json_equal(json_object_get(r, "data"), want),
                      "%s: got %s, want {\"data\":%s,\"ok\":true}", what, have, data_json);
        free(have);
        json_decref(want);
        json_decref(r);
}

static uint64_t members_seq(void)
{
        return co_last_seq(MEMBERS_STREAM);
}

static json_int_t int_field(const json_t *o, const char *k)
{
        const json_t *v = json_object_get(o, k);
        ck_assert_msg(json_is_integer(v), "field %s is not an integer", k);
        return json_integer_value(v);
}

/* A record the daemon wrote (§4.4): every required field with its type,
 * the daemon as writer, and the given values. */
static void expect_record(const json_t *rec, const char *channel, const char *owner, const char *state,
                          json_int_t generation, bool activated, json_int_t leave_cursor /* < 0: absent */)
{
        char *have = co_json_text(rec);
        ck_assert_msg(rec != NULL, "no record %s/%s", channel, owner);
        ck_assert_msg(json_is_string(json_object_get(rec, "channel")) &&
                              strcmp(json_string_value(json_object_get(rec, "channel")), channel) == 0 &&
                              strcmp(json_string_value(json_object_get(rec, "owner")), owner) == 0 &&
                              strcmp(json_string_value(json_object_get(rec, "state")), state) == 0 &&
                              int_field(rec, "generation") == generation &&
                              json_is_boolean(json_object_get(rec, "activated")) &&
                              json_boolean_value(json_object_get(rec, "activated")) == activated &&
                              strcmp(json_string_value(json_object_get(rec, "writerIdentity")), dm.id) == 0 &&
                              int_field(rec, "updatedAt") > 0 && int_field(rec, "joinCursor") >= 0,
                      "record %s/%s: %s (want state %s generation %lld activated %d writer %s)", channel, owner, have,
                      state, (long long)generation, activated, dm.id);
        if (leave_cursor < 0)
                ck_assert_msg(json_object_get(rec, "leaveCursor") == NULL, "record %s has a leaveCursor", have);
        else
                ck_assert_msg(int_field(rec, "leaveCursor") == leave_cursor, "record %s: leaveCursor want %lld", have,
                              (long long)leave_cursor);
        /* §4.2: absent optional fields are omitted, never null. */
        const char *k;
        json_t *v;
        json_object_foreach ((json_t *)rec, k, v)
                ck_assert_msg(!json_is_null(v), "record %s: %s is null", have, k);
        free(have);
}

/* Number of messages on subject in stream carrying Nats-Msg-Id id, read
 * with next_by_subj (only the subject's messages are fetched). */
static int count_id(const char *stream, const char *subject, const char *id)
{
        int n = 0;
        uint64_t seq = 1;
        for (int guard = 0; guard < 5000; guard++) {
                json_t *r = tu_api("$JS.API.STREAM.MSG.GET.%s%s", stream, "",
                                   json_pack("{s:I, s:s}", "seq", (json_int_t)seq, "next_by_subj", subject));
                json_t *m = json_object_get(r, "message");
                uint64_t got = (uint64_t)json_integer_value(json_object_get(m, "seq"));
                json_decref(r);
                if (!m || got == 0)
                        break;
                co_msg cm;
                if (co_msg_get(stream, got, &cm)) {
                        ck_assert_str_eq(cm.subject, subject); /* next_by_subj honoured */
                        n += cm.msg_id && strcmp(cm.msg_id, id) == 0;
                        co_msg_fini(&cm);
                }
                seq = got + 1;
        }
        return n;
}

/* Stream sequence of the message with id on subject (0 if none). */
static uint64_t seq_of_id(const char *stream, const char *subject, const char *id)
{
        uint64_t seq = 1;
        for (int guard = 0; guard < 5000; guard++) {
                json_t *r = tu_api("$JS.API.STREAM.MSG.GET.%s%s", stream, "",
                                   json_pack("{s:I, s:s}", "seq", (json_int_t)seq, "next_by_subj", subject));
                uint64_t got = (uint64_t)json_integer_value(json_object_get(json_object_get(r, "message"), "seq"));
                json_decref(r);
                if (got == 0)
                        return 0;
                co_msg cm;
                bool hit = co_msg_get(stream, got, &cm) && cm.msg_id && strcmp(cm.msg_id, id) == 0;
                co_msg_fini(&cm);
                if (hit)
                        return got;
                seq = got + 1;
        }
        return 0;
}

/* Waits until the fan-out has acked through seq: every routing decision
 * about it has been taken (and its entries, if any, are written). */
static void fanout_past(uint64_t seq)
{
        ck_assert_msg(co_wait_acked(CHAT, "fanout", seq, WAIT_MS), "the fan-out did not ack %s seq %llu", CHAT,
                      (unsigned long long)seq);
}

/* Waits until the reader has judged the inbox entry with id for owner. */
static void reader_past(const char *owner, const char *id)
{
        char subj[256];
        snprintf(subj, sizeof subj, "cotal." S ".dinbox.%s", owner);
        ck_assert_msg(co_wait_id(INBOX, subj, id, WAIT_MS), "no inbox entry %s", id);
        uint64_t seq = seq_of_id(INBOX, subj, id);
        ck_assert(seq > 0);
        ck_assert_msg(co_wait_acked(INBOX, "reader", seq, WAIT_MS), "the reader did not ack %s", id);
}

static const char *dlv_of(const char *owner, char *buf, size_t size)
{
        snprintf(buf, size, "cotal." S ".dlv.%s", owner);
        return buf;
}

/* ---- refusals ----------------------------------------------------------- */

START_TEST(join_is_refused_without_or_outside_the_acl)
{
        uint64_t before = members_seq();
        /* §8.3 step 2: no ACL row at all (a live-only agent, smoke 50). */
        expect_error(join(MALLORY, "general"),
                     "durableJoin: no read ACL on record for " MALLORY " (not provisioned for durable delivery)",
                     "no ACL row");
        /* §4.3: deleted, unparseable or non-array ACLs are "unknown". */
        co_acl(S, EVE, "[\"general\"]");
        co_acl_delete(S, EVE);
        expect_error(join(EVE, "general"),
                     "durableJoin: no read ACL on record for " EVE " (not provisioned for durable delivery)",
                     "deleted ACL");
        tu_kv_put(ACL_BUCKET, HEIDI, "{\"allowSubscribe\":\"general\"}");
        expect_error(join(HEIDI, "general"),
                     "durableJoin: no read ACL on record for " HEIDI " (not provisioned for durable delivery)",
                     "ACL not an array");
        tu_kv_put(ACL_BUCKET, HEIDI, "not json");
        expect_error(join(HEIDI, "general"),
                     "durableJoin: no read ACL on record for " HEIDI " (not provisioned for durable delivery)",
                     "ACL not JSON");
        /* Step 3: outside the ACL; the list is joined by ", ". */
        expect_error(join(DAVE, "c"), "channel \"c\" is not within your read ACL [a, b.>]", "outside");
        expect_error(join(DAVE, "b"), "channel \"b\" is not within your read ACL [a, b.>]", "b.> needs a level");
        expect_error(join(DAVE, "  ab  "), "channel \"ab\" is not within your read ACL [a, b.>]", "trimmed");
        tu_kv_put(ACL_BUCKET, HEIDI, "{\"allowSubscribe\":[]}");
        expect_error(join(HEIDI, "general"), "channel \"general\" is not within your read ACL []", "empty ACL");
        /* Non-string elements are ignored (§4.3), not fatal. */
        tu_kv_put(ACL_BUCKET, HEIDI, "{\"allowSubscribe\":[\"x\",5,null,{\"a\":1},\"y.*\"]}");
        expect_error(join(HEIDI, "general"), "channel \"general\" is not within your read ACL [x, y.*]",
                     "non-string ACL elements");
        ck_assert_uint_eq(members_seq(), before);
        /* ... and the string elements still grant. */
        expect_ok(join(HEIDI, "y.z"), "{\"durable\":true,\"generation\":1}", "join through y.*");
        json_t *rec = co_member_record(S, "y.z", HEIDI);
        expect_record(rec, "y.z", HEIDI, "durable-active", 1, true, -1);
        json_decref(rec);
}
END_TEST

START_TEST(bad_channels_ops_and_generations_get_the_exact_texts)
{
        uint64_t before = members_seq();
        static const struct {
                const char *args, *join_error; /* %s = the op */
        } cases[] = {
                {"{}", "%s: channel must be a non-blank string"},
                {"{\"channel\":\"\"}", "%s: channel must be a non-blank string"},
                {"{\"channel\":\"  \\t\\u00a0\\u3000\"}", "%s: channel must be a non-blank string"},
                {"{\"channel\":5}", "%s: channel must be a non-blank string"},
                {"{\"channel\":null}", "%s: channel must be a non-blank string"},
                {"{\"channel\":[\"a\"]}", "%s: channel must be a non-blank string"},
                {"[\"a\"]", "%s: channel must be a non-blank string"},
                {"\"a\"", "%s: channel must be a non-blank string"},
                {"{\"channel\":\"a..b\"}", "invalid channel \"a..b\": empty segment (no leading/trailing/double dots)"},
                {"{\"channel\":\".a\"}", "invalid channel \".a\": empty segment (no leading/trailing/double dots)"},
                {"{\"channel\":\"a.\"}", "invalid channel \"a.\": empty segment (no leading/trailing/double dots)"},
                {"{\"channel\":\"a.>.b\"}", "invalid channel \"a.>.b\": '>' is only valid as the last segment"},
                {"{\"channel\":\"a. b\"}",
                 "invalid channel \"a. b\": segment \" b\" must be a NATS-safe token ([A-Za-z0-9_-]), '*', or '>' — "
                 "policy channel names can't contain characters the wire layer would rewrite"},
                {"{\"channel\":\"team.caf\\u00e9\"}",
                 "invalid channel \"team.café\": segment \"café\" must be a NATS-safe token ([A-Za-z0-9_-]), '*', or "
                 "'>' — policy channel names can't contain characters the wire layer would rewrite"},
                {"{\"channel\":\"a/b\"}",
                 "invalid channel \"a/b\": segment \"a/b\" must be a NATS-safe token ([A-Za-z0-9_-]), '*', or '>' — "
                 "policy channel names can't contain characters the wire layer would rewrite"},
                {"{\"channel\":\"a.*\"}",
                 "%s: \"a.*\" must be a concrete channel (durable membership is per-concrete-channel, not wildcard)"},
                {"{\"channel\":\">\"}",
                 "%s: \">\" must be a concrete channel (durable membership is per-concrete-channel, not wildcard)"},
                {"{\"channel\":\" *.x \"}",
                 "%s: \"*.x\" must be a concrete channel (durable membership is per-concrete-channel, not wildcard)"},
        };
        const char *ops[] = {"durableJoin", "durableLeave"};
        for (size_t o = 0; o < 2; o++) {
                for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
                        char want[600], what[700];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
                        snprintf(want, sizeof want, cases[i].join_error, ops[o]);
#pragma GCC diagnostic pop
                        snprintf(what, sizeof what, "%s %s", ops[o], cases[i].args);
                        expect_error(ask(BOB, ops[o], cases[i].args, REQ_MS), want, what);
                }
        }
        /* §8.3 durableLeave step 2: a finite generation, checked after the
         * channel and before the record lookup. */
        const char *gens[] = {"{\"channel\":\"lv.none\"}",
                              "{\"channel\":\"lv.none\",\"generation\":\"1\"}",
                              "{\"channel\":\"lv.none\",\"generation\":null}",
                              "{\"channel\":\"lv.none\",\"generation\":true}",
                              "{\"channel\":\"lv.none\",\"generation\":[1]}",
                              "{\"channel\":\"lv.none\",\"generation\":{}}"};
        for (size_t i = 0; i < sizeof gens / sizeof *gens; i++)
                expect_error(ask(BOB, "durableLeave", gens[i], REQ_MS),
                             "durableLeave: a finite generation is required (fail-closed stale-leave guard)", gens[i]);
        /* §8.2 step 4: ops are exact and case-sensitive, rendered as JS
         * would. */
        static const struct {
                const char *op_json, *rendered;
        } ops_bad[] = {
                {"\"DurableJoin\"", "DurableJoin"},
                {"\"durableJoin \"", "durableJoin "},
                {"\"\"", ""},
                {"null", "null"},
                {"42", "42"},
                {"1.5", "1.5"},
                {"true", "true"},
                {"[\"a\",\"b\"]", "a,b"},
                {"{}", "[object Object]"},
                {"\"join\"", "join"},
        };
        for (size_t i = 0; i < sizeof ops_bad / sizeof *ops_bad; i++) {
                char *body = fmt("{\"op\":%s,\"args\":{\"channel\":\"general\"},\"from\":{\"id\":\"" BOB "\"}}",
                                 ops_bad[i].op_json);
                char want[300];
                snprintf(want, sizeof want, "op \"%s\" not supported on the delivery control service",
                         ops_bad[i].rendered);
                expect_error(co_request(S, BOB, body, NULL, NULL, REQ_MS), want, body);
                free(body);
        }
        expect_error(co_request(S, BOB, "{\"from\":{\"id\":\"" BOB "\"}}", NULL, NULL, REQ_MS),
                     "op \"undefined\" not supported on the delivery control service", "missing op");
        ck_assert_uint_eq(members_seq(), before);
}
END_TEST

/* ---- join, ACL narrowing, restore --------------------------------------- */

START_TEST(narrowed_acl_stops_delivery_and_restored_acl_resumes_it)
{
        char dlv[256];
        dlv_of(BOB, dlv, sizeof dlv);
        uint64_t frontier = co_last_seq(CHAT);
        expect_ok(join(BOB, "team.acl"), "{\"durable\":true,\"generation\":1}", "join");
        json_t *rec = co_member_record(S, "team.acl", BOB);
        expect_record(rec, "team.acl", BOB, "durable-active", 1, true, -1);
        ck_assert_int_eq(int_field(rec, "joinCursor"), (json_int_t)frontier); /* §8.6: CHAT last_seq */
        json_decref(rec);

        co_chat(S, ALICE, "team.acl", "n-1", NULL);
        ck_assert_msg(co_wait_id(DLV, dlv, "n-1:" BOB ":1", WAIT_MS), "n-1 not delivered");

        /* Narrowed: the fan-out still routes (it never reads ACLs for
         * durable channels), the reader drops (§7 row 5). */
        co_acl(S, BOB, "[\"general\"]");
        co_chat(S, ALICE, "team.acl", "n-2", NULL);
        reader_past(BOB, "n-2:" BOB ":1");
        ck_assert_int_eq(count_id(DLV, dlv, "n-2:" BOB ":1"), 0);
        /* A join while narrowed is refused even though the record exists. */
        expect_error(join(BOB, "team.acl"), "channel \"team.acl\" is not within your read ACL [general]",
                     "join while narrowed");

        /* Restored: later entries are delivered again, n-2 stays lost. */
        co_acl(S, BOB, "[\"general\",\"team.>\",\"lv.>\",\"cc.>\",\"odd.>\"]");
        co_chat(S, ALICE, "team.acl", "n-3", NULL);
        ck_assert_msg(co_wait_id(DLV, dlv, "n-3:" BOB ":1", WAIT_MS), "n-3 not delivered after the restore");
        ck_assert_int_eq(count_id(DLV, dlv, "n-1:" BOB ":1"), 1);
        ck_assert_int_eq(count_id(DLV, dlv, "n-2:" BOB ":1"), 0);
        ck_assert_int_eq(count_id(DLV, dlv, "n-3:" BOB ":1"), 1);
        /* The idempotent re-join writes nothing. */
        uint64_t before = members_seq();
        expect_ok(join(BOB, "team.acl"), "{\"durable\":true,\"generation\":1}", "re-join");
        ck_assert_uint_eq(members_seq(), before);
}
END_TEST

/* ---- leave ----------------------------------------------------------------- */

START_TEST(leave_bounds_the_interval_and_rejoin_starts_a_new_generation)
{
        char dlv[256];
        dlv_of(BOB, dlv, sizeof dlv);
        /* Before the join: not in the interval (seq <= joinCursor). */
        uint64_t b0 = co_chat(S, ALICE, "lv.b", "b-0", NULL);
        expect_ok(join(BOB, "lv.b"), "{\"durable\":true,\"generation\":1}", "join");
        uint64_t b1 = co_chat(S, ALICE, "lv.b", "b-1", NULL);
        ck_assert_msg(co_wait_id(DLV, dlv, "b-1:" BOB ":1", WAIT_MS), "b-1 not delivered");

        uint64_t frontier = co_last_seq(CHAT);
        uint64_t before = members_seq();
        expect_ok(leave(BOB, "lv.b", "1"), "{\"channel\":\"lv.b\"}", "leave");
        ck_assert_uint_eq(members_seq(), before + 1);
        json_t *rec = co_member_record(S, "lv.b", BOB);
        expect_record(rec, "lv.b", BOB, "live-confirmed", 1, true, (json_int_t)frontier);
        ck_assert_int_ge(int_field(rec, "leaveCursor"), (json_int_t)b1);
        ck_assert_int_eq(int_field(rec, "joinCursor"), (json_int_t)b0);
        json_decref(rec);

        /* After the leave cursor: the fan-out routes nothing. */
        uint64_t b2 = co_chat(S, ALICE, "lv.b", "b-2", NULL);
        fanout_past(b2);
        ck_assert_int_eq(count_id(INBOX, "cotal." S ".dinbox." BOB, "b-2:" BOB ":1"), 0);
        ck_assert_int_eq(count_id(DLV, dlv, "b-2:" BOB ":1"), 0);
        ck_assert_int_eq(count_id(DLV, dlv, "b-0:" BOB ":1"), 0);
        ck_assert_int_eq(count_id(DLV, dlv, "b-1:" BOB ":1"), 1);

        /* Leaving again with the same generation: success, nothing written
         * (already tombstoned at or before this cursor). */
        before = members_seq();
        expect_ok(leave(BOB, "lv.b", "1"), "{\"channel\":\"lv.b\"}", "second leave");
        ck_assert_uint_eq(members_seq(), before);
        /* A generation that is not the stored one is stale, whichever way. */
        expect_error(leave(BOB, "lv.b", "2"), "stale membership write for lv.b/" BOB ": generation 2 < current 1",
                     "future generation");
        ck_assert_uint_eq(members_seq(), before);

        /* Rejoin after leave: generation + 1, a fresh window. */
        expect_ok(join(BOB, "lv.b"), "{\"durable\":true,\"generation\":2}", "rejoin");
        rec = co_member_record(S, "lv.b", BOB);
        expect_record(rec, "lv.b", BOB, "durable-active", 2, true, -1);
        ck_assert_int_ge(int_field(rec, "joinCursor"), (json_int_t)b2);
        json_decref(rec);
        co_chat(S, ALICE, "lv.b", "b-3", NULL);
        ck_assert_msg(co_wait_id(DLV, dlv, "b-3:" BOB ":2", WAIT_MS), "b-3 not delivered with generation 2");
        ck_assert_int_eq(count_id(DLV, dlv, "b-3:" BOB ":1"), 0);
        ck_assert_int_eq(count_id(DLV, dlv, "b-2:" BOB ":2"), 0);
        ck_assert_int_eq(count_id(DLV, dlv, "b-2:" BOB ":1"), 0);

        /* Stale generations, rendered as JavaScript numbers. */
        before = members_seq();
        expect_error(leave(BOB, "lv.b", "1"), "stale membership write for lv.b/" BOB ": generation 1 < current 2",
                     "old generation");
        expect_error(leave(BOB, "lv.b", "1.5"), "stale membership write for lv.b/" BOB ": generation 1.5 < current 2",
                     "fractional");
        expect_error(leave(BOB, "lv.b", "-0"), "stale membership write for lv.b/" BOB ": generation 0 < current 2",
                     "minus zero");
        expect_error(leave(BOB, "lv.b", "1e21"),
                     "stale membership write for lv.b/" BOB ": generation 1e+21 < current 2", "huge");
        expect_error(leave(BOB, "lv.b", "2.0000000000000004"),
                     "stale membership write for lv.b/" BOB ": generation 2.0000000000000004 < current 2", "nearly 2");
        ck_assert_uint_eq(members_seq(), before);
        /* The current generation, written as 2.0 and with a padded
         * channel: the trimmed channel is what counts (§8.5). */
        expect_ok(leave(BOB, "  lv.b\\t", "2.0"), "{\"channel\":\"lv.b\"}", "leave generation 2");
        rec = co_member_record(S, "lv.b", BOB);
        expect_record(rec, "lv.b", BOB, "live-confirmed", 2, true, (json_int_t)co_last_seq(CHAT));
        json_decref(rec);

        /* §8.3 step 3: a missing record has already been left. */
        before = members_seq();
        expect_ok(leave(BOB, "lv.never", "1"), "{\"channel\":\"lv.never\",\"alreadyLeft\":true}", "missing record");
        expect_ok(leave(BOB, " lv.never ", "7"), "{\"channel\":\"lv.never\",\"alreadyLeft\":true}",
                  "missing record, trimmed");
        /* Another agent's record is not the caller's: alreadyLeft. */
        expect_ok(leave(ALICE, "lv.b", "2"), "{\"channel\":\"lv.b\",\"alreadyLeft\":true}", "someone else's record");
        ck_assert_uint_eq(members_seq(), before);
}
END_TEST

START_TEST(leave_works_after_the_acl_was_narrowed_to_nothing)
{
        expect_ok(join(BOB, "lv.c"), "{\"durable\":true,\"generation\":1}", "join");
        co_acl(S, BOB, "[]");
        expect_error(join(BOB, "lv.c"), "channel \"lv.c\" is not within your read ACL []", "join with []");
        uint64_t frontier = co_last_seq(CHAT);
        expect_ok(leave(BOB, "lv.c", "1"), "{\"channel\":\"lv.c\"}", "leave with []");
        json_t *rec = co_member_record(S, "lv.c", BOB);
        expect_record(rec, "lv.c", BOB, "live-confirmed", 1, true, (json_int_t)frontier);
        json_decref(rec);
        /* Also with no ACL row at all. */
        co_acl_delete(S, BOB);
        expect_ok(leave(BOB, "lv.c", "1"), "{\"channel\":\"lv.c\"}", "leave without an ACL row");
        co_acl(S, BOB, "[\"general\",\"team.>\",\"lv.>\",\"cc.>\",\"odd.>\"]");
}
END_TEST

START_TEST(join_over_existing_records_follows_the_life_cycle)
{
        uint64_t last = co_last_seq(CHAT);
        /* A tombstone: fresh join, generation + 1. */
        co_member(S, "odd.t", BOB, 1, 3, (int64_t)last);
        expect_ok(join(BOB, "odd.t"), "{\"durable\":true,\"generation\":4}", "over a tombstone");
        json_t *rec = co_member_record(S, "odd.t", BOB);
        expect_record(rec, "odd.t", BOB, "durable-active", 4, true, -1);
        json_decref(rec);
        /* An odd state: fresh join too. */
        tu_kv_put(MEMBERS_BUCKET, "odd.s/" BOB,
                  "{\"channel\":\"odd.s\",\"owner\":\"" BOB "\",\"state\":\"paused\",\"joinCursor\":1,"
                  "\"generation\":6,\"activated\":true,\"writerIdentity\":\"UFIXTURE\",\"updatedAt\":1}");
        expect_ok(join(BOB, "odd.s"), "{\"durable\":true,\"generation\":7}", "over an odd state");
        /* An activated open record: idempotent, nothing written. */
        co_member(S, "odd.a", BOB, 1, 5, -1);
        uint64_t before = members_seq();
        expect_ok(join(BOB, "odd.a"), "{\"durable\":true,\"generation\":5}", "over an activated record");
        ck_assert_uint_eq(members_seq(), before);
        /* A pending record: same window and generation, one activation
         * write. */
        char value[1024];
        snprintf(value, sizeof value,
                 "{\"channel\":\"odd.p\",\"owner\":\"" BOB "\",\"state\":\"durable-active\",\"joinCursor\":%llu,"
                 "\"generation\":2,\"activated\":false,\"writerIdentity\":\"UFIXTURE\",\"updatedAt\":1}",
                 (unsigned long long)co_last_seq(CHAT));
        tu_kv_put(MEMBERS_BUCKET, "odd.p/" BOB, value);
        before = members_seq();
        expect_ok(join(BOB, "odd.p"), "{\"durable\":true,\"generation\":2}", "over a pending record");
        ck_assert_uint_eq(members_seq(), before + 1);
        rec = co_member_record(S, "odd.p", BOB);
        ck_assert(json_is_true(json_object_get(rec, "activated")));
        ck_assert_int_eq(int_field(rec, "joinCursor"), (json_int_t)co_last_seq(CHAT));
        ck_assert_int_eq(int_field(rec, "generation"), 2);
        json_decref(rec);
        /* An unparseable value reads as none, the create keeps failing:
         * upstream's CAS exhaustion (§8.7 note), and the value survives. */
        tu_kv_put(MEMBERS_BUCKET, "odd.g/" BOB, "garbage");
        before = members_seq();
        expect_error(join(BOB, "odd.g"), "members CAS exhausted retries for odd.g/" BOB, "over garbage");
        ck_assert_uint_eq(members_seq(), before);
        /* ... while a leave treats it as absent. */
        expect_ok(leave(BOB, "odd.g", "1"), "{\"channel\":\"odd.g\",\"alreadyLeft\":true}", "leave over garbage");
}
END_TEST

/* ---- concurrency ------------------------------------------------------------ */

/* Collects want replies on sub (a wildcard over the reply subjects) into
 * out[] by the last token of their subject ("0".."want-1"). */
static void collect(natsSubscription *sub, json_t **out, int want, int64_t timeout_ms)
{
        int64_t deadline = test_now_ms() + timeout_ms;
        int got = 0;
        while (got < want) {
                int64_t left = deadline - test_now_ms();
                natsMsg *m = NULL;
                if (left <= 0 || natsSubscription_NextMsg(&m, sub, left) != NATS_OK)
                        break;
                const char *last = strrchr(natsMsg_GetSubject(m), '.');
                int idx = last ? atoi(last + 1) : -1;
                ck_assert_msg(idx >= 0 && idx < want && !out[idx], "unexpected reply on %s", natsMsg_GetSubject(m));
                out[idx] = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
                ck_assert_msg(out[idx], "reply on %s is not JSON", natsMsg_GetSubject(m));
                natsMsg_Destroy(m);
                got++;
        }
        ck_assert_msg(got == want, "%d of %d replies", got, want);
}

START_TEST(back_to_back_joins_activate_once)
{
        const char *subject = "cotal." S ".ctl.delivery." BOB;
        const char *body = "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"cc.one\"},\"from\":{\"id\":\"" BOB "\"}}";
        natsSubscription *sub = NULL;
        ck_assert(natsConnection_SubscribeSync(&sub, tu_nc, "cotal." S ".ctl.delivery." BOB ".reply.b2b.>") == NATS_OK);
        uint64_t before = members_seq();
        for (int i = 0; i < 2; i++) {
                char reply[256];
                snprintf(reply, sizeof reply, "%s.reply.b2b.%d", subject, i);
                ck_assert(natsConnection_PublishRequestString(tu_nc, subject, reply, body) == NATS_OK);
        }
        ck_assert(natsConnection_Flush(tu_nc) == NATS_OK);
        json_t *r[2] = {0};
        collect(sub, r, 2, JOIN_MS);
        natsSubscription_Destroy(sub);
        expect_ok(r[0], "{\"durable\":true,\"generation\":1}", "first join");
        expect_ok(r[1], "{\"durable\":true,\"generation\":1}", "second join");
        /* One commit, one activation: nothing else was written. */
        ck_assert_uint_eq(members_seq(), before + 2);
        json_t *rec = co_member_record(S, "cc.one", BOB);
        expect_record(rec, "cc.one", BOB, "durable-active", 1, true, -1);
        json_decref(rec);
}
END_TEST

START_TEST(joins_from_two_connections_activate_once)
{
        const char *subject = "cotal." S ".ctl.delivery." BOB;
        const char *body = "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"cc.two\"},\"from\":{\"id\":\"" BOB "\"}}";
        natsConnection *nc2 = NULL;
        ck_assert(natsConnection_ConnectTo(&nc2, tu_broker.url) == NATS_OK);
        natsConnection *conns[2] = {tu_nc, nc2};
        natsSubscription *subs[2] = {0};
        for (int i = 0; i < 2; i++) {
                char reply[256];
                snprintf(reply, sizeof reply, "%s.reply.two.%d.0", subject, i);
                ck_assert(natsConnection_SubscribeSync(&subs[i], conns[i], reply) == NATS_OK);
                ck_assert(natsConnection_Flush(conns[i]) == NATS_OK);
        }
        uint64_t before = members_seq();
        for (int i = 0; i < 2; i++) {
                char reply[256];
                snprintf(reply, sizeof reply, "%s.reply.two.%d.0", subject, i);
                ck_assert(natsConnection_PublishRequestString(conns[i], subject, reply, body) == NATS_OK);
        }
        for (int i = 0; i < 2; i++)
                ck_assert(natsConnection_Flush(conns[i]) == NATS_OK);
        for (int i = 0; i < 2; i++) {
                json_t *r[1] = {0};
                collect(subs[i], r, 1, JOIN_MS);
                expect_ok(r[0], "{\"durable\":true,\"generation\":1}",
                          i ? "join on connection 2" : "join on connection 1");
                natsSubscription_Destroy(subs[i]);
        }
        natsConnection_Destroy(nc2);
        ck_assert_uint_eq(members_seq(), before + 2);
        json_t *rec = co_member_record(S, "cc.two", BOB);
        expect_record(rec, "cc.two", BOB, "durable-active", 1, true, -1);
        json_decref(rec);
}
END_TEST

START_TEST(interleaved_join_leave_join_is_handled_in_order)
{
        const char *subject = "cotal." S ".ctl.delivery." BOB;
        const char *bodies[] = {
                "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"cc.seq\"},\"from\":{\"id\":\"" BOB "\"}}",
                "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"cc.seq\"},\"from\":{\"id\":\"" BOB "\"}}",
                "{\"op\":\"durableLeave\",\"args\":{\"channel\":\"cc.seq\",\"generation\":1},\"from\":{\"id\":\"" BOB
                "\"}}",
                "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"cc.seq\"},\"from\":{\"id\":\"" BOB "\"}}",
                "{\"op\":\"durableLeave\",\"args\":{\"channel\":\"cc.seq\",\"generation\":1},\"from\":{\"id\":\"" BOB
                "\"}}",
                "{\"op\":\"listMemberships\",\"from\":{\"id\":\"" BOB "\"}}",
        };
        enum { N = sizeof bodies / sizeof *bodies };
        natsSubscription *sub = NULL;
        ck_assert(natsConnection_SubscribeSync(&sub, tu_nc, "cotal." S ".ctl.delivery." BOB ".reply.seq.>") == NATS_OK);
        uint64_t before = members_seq();
        for (int i = 0; i < N; i++) {
                char reply[256];
                snprintf(reply, sizeof reply, "%s.reply.seq.%d", subject, i);
                ck_assert(natsConnection_PublishRequestString(tu_nc, subject, reply, bodies[i]) == NATS_OK);
        }
        ck_assert(natsConnection_Flush(tu_nc) == NATS_OK);
        json_t *r[N] = {0};
        collect(sub, r, N, JOIN_MS);
        natsSubscription_Destroy(sub);
        expect_ok(r[0], "{\"durable\":true,\"generation\":1}", "join");
        expect_ok(r[1], "{\"durable\":true,\"generation\":1}", "repeated join");
        expect_ok(r[2], "{\"channel\":\"cc.seq\"}", "leave");
        expect_ok(r[3], "{\"durable\":true,\"generation\":2}", "rejoin");
        expect_error(r[4], "stale membership write for cc.seq/" BOB ": generation 1 < current 2", "stale leave");
        /* The listing saw the rejoined generation. */
        json_t *list = json_object_get(json_object_get(r[5], "data"), "memberships");
        bool seen = false;
        size_t i;
        json_t *v;
        json_array_foreach (list, i, v)
                if (strcmp(json_string_value(json_object_get(v, "channel")), "cc.seq") == 0) {
                        ck_assert_int_eq(json_integer_value(json_object_get(v, "generation")), 2);
                        ck_assert(json_is_true(json_object_get(v, "activated")));
                        seen = true;
                }
        ck_assert_msg(seen, "cc.seq not listed");
        json_decref(r[5]);
        /* commit + activate, tombstone, commit + activate. */
        ck_assert_uint_eq(members_seq(), before + 5);
        json_t *rec = co_member_record(S, "cc.seq", BOB);
        expect_record(rec, "cc.seq", BOB, "durable-active", 2, true, -1);
        json_decref(rec);
}
END_TEST

/* ---- listMemberships -------------------------------------------------------- */

static int cmp_channel(const void *a, const void *b)
{
        const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
        return strcmp(json_string_value(json_object_get(x, "channel")),
                      json_string_value(json_object_get(y, "channel")));
}

/* Steals r. The memberships, sorted by channel, must equal want_json. */
static void expect_list(json_t *r, const char *want_json, const char *what)
{
        char *have = co_json_text(r);
        json_t *data = json_object_get(r, "data");
        json_t *list = json_object_get(data, "memberships");
        ck_assert_msg(r && json_object_size(r) == 2 && json_is_true(json_object_get(r, "ok")) &&
                              json_object_size(data) == 1 && json_is_array(list),
                      "%s: not a listMemberships reply: %s", what, have);
        size_t n = json_array_size(list);
        json_t **v = calloc(n + 1, sizeof *v);
        for (size_t i = 0; i < n; i++) {
                v[i] = json_array_get(list, i);
                ck_assert_msg(json_object_size(v[i]) == 3, "%s: element %zu has other fields: %s", what, i, have);
        }
        qsort(v, n, sizeof *v, cmp_channel);
        json_t *sorted = json_array();
        for (size_t i = 0; i < n; i++)
                json_array_append(sorted, v[i]);
        json_t *want = json_loads(want_json, 0, NULL);
        ck_assert_msg(want, "bad expectation %s", want_json);
        char *have_sorted = co_json_text(sorted);
        ck_assert_msg(json_equal(sorted, want), "%s: got %s, want %s", what, have_sorted, want_json);
        free(have_sorted);
        json_decref(want);
        json_decref(sorted);
        free(v);
        free(have);
        json_decref(r);
}

START_TEST(list_shows_exactly_the_callers_open_records)
{
        expect_list(ask(FRANK, "listMemberships", NULL, REQ_MS), "[]", "nothing yet");
        expect_ok(join(FRANK, "ls.a"), "{\"durable\":true,\"generation\":1}", "join ls.a");
        expect_ok(join(FRANK, "ls.b"), "{\"durable\":true,\"generation\":1}", "join ls.b");
        expect_ok(join(FRANK, "ls.a.deep"), "{\"durable\":true,\"generation\":1}", "join ls.a.deep");
        expect_ok(join(GRACE, "ls.a"), "{\"durable\":true,\"generation\":1}", "grace joins ls.a");
        expect_ok(leave(FRANK, "ls.b", "1"), "{\"channel\":\"ls.b\"}", "leave ls.b");
        /* Fixtures: a pending record and one without "activated" (both
         * listed, activated:false), a tombstone, garbage, a deleted key, an
         * odd state (listed), and keys of other owners whose ids merely
         * contain Frank's. */
        tu_kv_put(MEMBERS_BUCKET, "ls.p/" FRANK,
                  "{\"channel\":\"ls.p\",\"owner\":\"" FRANK "\",\"state\":\"durable-active\",\"joinCursor\":1,"
                  "\"generation\":3,\"activated\":false,\"writerIdentity\":\"UFIXTURE\",\"updatedAt\":1}");
        tu_kv_put(MEMBERS_BUCKET, "ls.n/" FRANK,
                  "{\"channel\":\"ls.n\",\"owner\":\"" FRANK "\",\"state\":\"durable-active\",\"joinCursor\":1,"
                  "\"generation\":2,\"writerIdentity\":\"UFIXTURE\",\"updatedAt\":1}");
        co_member(S, "ls.t", FRANK, 1, 4, 9);
        tu_kv_put(MEMBERS_BUCKET, "ls.g/" FRANK, "garbage");
        co_member(S, "ls.d", FRANK, 1, 1, -1);
        {
                natsMsg *m = NULL;
                jsCtx *js = NULL;
                ck_assert(natsMsg_Create(&m, "$KV." MEMBERS_BUCKET ".ls.d/" FRANK, NULL, NULL, 0) == NATS_OK);
                natsMsgHeader_Set(m, "KV-Operation", "DEL");
                ck_assert(natsConnection_JetStream(&js, tu_nc, NULL) == NATS_OK);
                ck_assert(js_PublishMsg(NULL, js, m, NULL, NULL) == NATS_OK);
                jsCtx_Destroy(js);
                natsMsg_Destroy(m);
        }
        tu_kv_put(MEMBERS_BUCKET, "ls.o/" FRANK,
                  "{\"channel\":\"ls.o\",\"owner\":\"" FRANK "\",\"state\":\"weird\",\"joinCursor\":1,"
                  "\"generation\":8,\"activated\":true,\"writerIdentity\":\"UFIXTURE\",\"updatedAt\":1}");
        co_member(S, "ls.x", FRANK "X", 1, 1, -1);
        co_member(S, "ls.y", "X" FRANK, 1, 1, -1);
        co_member(S, "ls.z/" FRANK, "Z", 1, 1, -1); /* key "ls.z/<FRANK>/Z": owner "<FRANK>/Z" */

        uint64_t before = members_seq();
        expect_list(ask(FRANK, "listMemberships", NULL, REQ_MS),
                    "[{\"activated\":true,\"channel\":\"ls.a\",\"generation\":1},"
                    "{\"activated\":true,\"channel\":\"ls.a.deep\",\"generation\":1},"
                    "{\"activated\":false,\"channel\":\"ls.n\",\"generation\":2},"
                    "{\"activated\":true,\"channel\":\"ls.o\",\"generation\":8},"
                    "{\"activated\":false,\"channel\":\"ls.p\",\"generation\":3}]",
                    "frank");
        expect_list(ask(GRACE, "listMemberships", "{\"channel\":\"ls.b\"}", REQ_MS),
                    "[{\"activated\":true,\"channel\":\"ls.a\",\"generation\":1}]", "grace (args ignored)");
        expect_list(ask(GRACE, "listMemberships", "7", REQ_MS),
                    "[{\"activated\":true,\"channel\":\"ls.a\",\"generation\":1}]", "grace (odd args)");
        expect_list(ask(MALLORY, "listMemberships", NULL, REQ_MS), "[]", "no records, no ACL");
        /* Only Frank himself can ask for Frank's list. */
        expect_error(co_request(S, MALLORY, "{\"op\":\"listMemberships\",\"from\":{\"id\":\"" FRANK "\"}}", NULL, NULL,
                                REQ_MS),
                     "sender mismatch — request rejected", "spoofed list");
        ck_assert_uint_eq(members_seq(), before);
}
END_TEST

/* Last: the daemon is still up, and its log has no error-priority line
 * and no sanitizer report (under -Db_sanitize UBSan only prints). */
START_TEST(the_daemon_stayed_up_and_its_log_is_clean)
{
        co_daemon_assert_healthy(&dm);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("control_join");
        TCase *tc = tcase_create("control");
        tcase_add_unchecked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, join_is_refused_without_or_outside_the_acl);
        tcase_add_test(tc, bad_channels_ops_and_generations_get_the_exact_texts);
        tcase_add_test(tc, narrowed_acl_stops_delivery_and_restored_acl_resumes_it);
        tcase_add_test(tc, leave_bounds_the_interval_and_rejoin_starts_a_new_generation);
        tcase_add_test(tc, leave_works_after_the_acl_was_narrowed_to_nothing);
        tcase_add_test(tc, join_over_existing_records_follows_the_life_cycle);
        tcase_add_test(tc, back_to_back_joins_activate_once);
        tcase_add_test(tc, joins_from_two_connections_activate_once);
        tcase_add_test(tc, interleaved_join_leave_join_is_handled_in_order);
        tcase_add_test(tc, list_shows_exactly_the_callers_open_records);
        tcase_add_test(tc, the_daemon_stayed_up_and_its_log_is_clean);
        suite_add_tcase(s, tc);
        return co_run(s);
}
