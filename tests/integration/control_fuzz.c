/* control_fuzz: a few hundred malformed, random and hostile ctl.delivery
 * requests (PROTOCOL §8.2) from a fixed-seed generator: random bytes,
 * truncated JSON, wrong types for op/args/channel/generation, huge strings,
 * bodies over the 64 KiB request limit, deep nesting, unknown ops, JSON
 * that is not an object, channels with wildcards, dots, unicode and '>'
 * in the middle, spoofed senders. Every request with a bound reply subject
 * gets exactly {"ok":false,"error":"<non-empty string>"}; every request with
 * an unbound one gets nothing (neither its target nor the agent's own lane
 * hears anything; control_reply_binding watches the whole broker for
 * that); nothing is written to the members
 * bucket; the daemon stays up and delivers normally afterwards. Channel
 * names too long for a NATS subject are refused without harming the
 * daemon's connection. */
#include "cotal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S "cfz"
#define DLV "DLV_" S
#define CHAT "CHAT_" S
#define MEMBERS_STREAM "KV_cotal_members_" S
#define FUZZ "UFUZZFUZZFUZZFUZZFUZZFUZZFUZZFUZZFUZZFUZZFUZZFUZZFUZZFUZ"
#define SUBJECT "cotal." S ".ctl.delivery." FUZZ
#define BOUND SUBJECT ".reply.f"
#define UNBOUND_A "fuzz.unbound"
#define UNBOUND_B SUBJECT ".replyX"
#define SEED 0xC07A1F022ULL
#define REQUESTS 400
#define WAVE 50       /* requests in flight at once */
#define WAVE_MS 30000 /* a wave must be answered within this */
#define QUIET_MS 1000
#define WAIT_MS 15000
#define REQUEST_LIMIT (64 * 1024)

static co_daemon dm;

static void setup(void)
{
        tu_broker_setup();
        co_provision(S);
        co_acl(S, FUZZ, "[\"fz.>\"]");
        co_acl(S, ALICE, "[\"fz.>\"]");
        ck_assert_msg(co_daemon_start(&dm, S, NULL), "daemon did not become ready");
}

static void teardown(void)
{
        co_daemon_finish(&dm);
        tu_broker_teardown();
}

/* ---- a tiny reproducible generator ---------------------------------------- */

static uint64_t rng_state = SEED;

static uint64_t rnd(void)
{
        /* xorshift64* */
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return rng_state * 0x2545F4914F6CDD1DULL;
}

static size_t below(size_t n)
{
        return n ? (size_t)(rnd() % n) : 0;
}

typedef struct buf {
        char *p;
        size_t len, cap;
} buf;

static void put(buf *b, const char *s, size_t n)
{
        if (b->len + n + 1 > b->cap) {
                size_t ncap = b->cap ? b->cap : 256;
                while (b->len + n + 1 > ncap)
                        ncap *= 2;
                b->p = realloc(b->p, ncap);
                ck_assert(b->p);
                b->cap = ncap;
        }
        memcpy(b->p + b->len, s, n);
        b->len += n;
        b->p[b->len] = '\0';
}

__attribute__((format(printf, 2, 3))) static void putf(buf *b, const char *f, ...)
{
        va_list ap;
        char *s = NULL;
        va_start(ap, f);
        int n = vasprintf(&s, f, ap);
        va_end(ap);
        ck_assert(n >= 0);
        put(b, s, (size_t)n);
        free(s);
}

static void add(buf *b, const char *s)
{
        put(b, s, strlen(s));
}

static void repeat(buf *b, const char *s, size_t times)
{
        for (size_t i = 0; i < times; i++)
                put(b, s, strlen(s));
}

/* A JSON value that is never a valid op, channel or generation. */
static const char *wrong_value(void)
{
        static const char *const v[] = {
                "null", "true",   "false", "0",     "-1", "1.5e300", "[]", "[\"durableJoin\"]", "{}", "{\"channel\":5}",
                "\"\"", "[[[]]]", "-0",    "1e-300"};
        return v[below(sizeof v / sizeof *v)];
}

/* Channels that fail §8.5 (blank, invalid or wildcard) or lie outside
 * the ACL ["fz.>"]. JSON-escaped. */
static const char *weird_channel(void)
{
        static const char *const v[] = {
                "",         " ",         "\\t\\n",     "fz.*",         "fz.>",
                ">",        "*",         "fz..a",      ".fz.a",        "fz.a.",
                "fz.>.a",   "fz.a b",    "fz.\\u00fc", "fz.日本",      "fz.\\ud83d\\ude00",
                "fz/a",     "fz.a$",     "fz.a\\tb",   "fz.\\u200b",   "fz.*.a",
                "fz.a>",    "fz.a*",     "fz",         "zz.a",         "FZ.a",
                "fz.a.>.b", "..",        ".",          "fz.\\u0085",   "fz.a/b",
                "fz.%",     "fz.a\\\\b", "fz.\\\"a",   "fz.\\u00a0.a", "fz.a\\u3000.b",
                "*.>",
        };
        return v[below(sizeof v / sizeof *v)];
}

static const char *op_name(void)
{
        static const char *const v[] = {"durableJoin", "durableLeave", "listMemberships"};
        return v[below(3)];
}

static void from_ok(buf *b)
{
        add(b, ",\"from\":{\"id\":\"" FUZZ "\",\"name\":\"fuzz\"}");
}

/* One hostile body into b. Each kind is built so that it cannot be a
 * valid request. */
static void generate(buf *b, int *kind_out)
{
        int kind = (int)below(14);
        *kind_out = kind;
        switch (kind) {
        case 0: { /* random bytes */
                size_t n = below(300);
                for (size_t i = 0; i < n; i++) {
                        char c = (char)(rnd() & 0xff);
                        put(b, &c, 1);
                }
                break;
        }
        case 1: { /* a valid request, truncated */
                buf full = {0};
                putf(&full, "{\"op\":\"durableLeave\",\"args\":{\"channel\":\"fz.t\",\"generation\":3}");
                from_ok(&full);
                put(&full, "}", 1);
                put(b, full.p, below(full.len));
                free(full.p);
                break;
        }
        case 2: /* op of the wrong type */
                putf(b, "{\"op\":%s,\"args\":{\"channel\":\"fz.a\",\"generation\":1}", wrong_value());
                from_ok(b);
                add(b, "}");
                break;
        case 3: /* args of the wrong type */
                putf(b, "{\"op\":\"%s\",\"args\":%s", below(2) ? "durableJoin" : "durableLeave",
                     below(2) ? wrong_value() : "\"fz.a\"");
                from_ok(b);
                add(b, "}");
                break;
        case 4: /* channel of the wrong type */
                putf(b, "{\"op\":\"%s\",\"args\":{\"channel\":%s,\"generation\":1}",
                     below(2) ? "durableJoin" : "durableLeave", wrong_value());
                from_ok(b);
                add(b, "}");
                break;
        case 5: { /* leave with a generation that is not a number */
                static const char *const g[] = {NULL, "\"1\"", "null", "true", "[1]", "{\"n\":1}", "\"NaN\""};
                const char *gen = g[below(sizeof g / sizeof *g)];
                if (gen)
                        putf(b, "{\"op\":\"durableLeave\",\"args\":{\"channel\":\"fz.a\",\"generation\":%s}", gen);
                else
                        add(b, "{\"op\":\"durableLeave\",\"args\":{\"channel\":\"fz.a\"}");
                from_ok(b);
                add(b, "}");
                break;
        }
        case 6: { /* huge strings, under the request limit */
                size_t n = 1000 + below(50000);
                int where = (int)below(3);
                if (where == 0) {
                        add(b, "{\"op\":\"");
                        repeat(b, "x", n);
                        add(b, "\"");
                } else {
                        add(b, "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"");
                        if (where == 1)
                                repeat(b, "zz", n / 2); /* valid, outside the ACL */
                        else
                                repeat(b, "fz. ", n / 4); /* invalid segments */
                        add(b, "\"}");
                }
                from_ok(b);
                add(b, "}");
                break;
        }
        case 7: { /* over the request limit */
                size_t n = REQUEST_LIMIT + 1 + below(40000);
                add(b, "{\"op\":\"listMemberships\",\"pad\":\"");
                repeat(b, "p", n);
                add(b, "\"");
                from_ok(b);
                add(b, "}");
                break;
        }
        case 8: { /* deep nesting, in the body or in args */
                size_t depth = 100 + below(5000);
                if (below(2)) {
                        repeat(b, "[", depth);
                        repeat(b, "]", depth);
                } else {
                        add(b, "{\"op\":\"durableJoin\",\"args\":{\"channel\":");
                        repeat(b, "{\"a\":", depth);
                        add(b, "1");
                        repeat(b, "}", depth);
                        add(b, "}");
                        from_ok(b);
                        add(b, "}");
                }
                break;
        }
        case 9: { /* unknown ops */
                static const char *const v[] = {"DurableJoin",
                                                "durablejoin",
                                                "durableJoin ",
                                                " durableLeave",
                                                "listmemberships",
                                                "join",
                                                "leave",
                                                "list",
                                                "",
                                                "durableJoin\\u0000",
                                                "delete",
                                                "purge",
                                                "__proto__",
                                                "constructor",
                                                "toString"};
                putf(b, "{\"op\":\"%s\",\"args\":{\"channel\":\"fz.a\",\"generation\":1}", v[below(15)]);
                from_ok(b);
                add(b, "}");
                break;
        }
        case 10: { /* JSON that is not an object */
                static const char *const v[] = {"[]",
                                                "null",
                                                "42",
                                                "-1.5",
                                                "\"durableJoin\"",
                                                "true",
                                                "[{\"op\":\"listMemberships\",\"from\":{\"id\":\"" FUZZ "\"}}]",
                                                " ",
                                                "",
                                                "\"\\ud800\""};
                const char *s = v[below(10)];
                put(b, s, strlen(s));
                break;
        }
        case 11: /* channel names that fail §8.5 or the ACL */
                putf(b, "{\"op\":\"%s\",\"args\":{\"channel\":\"%s\"}", below(2) ? "durableJoin" : "durableLeave",
                     weird_channel());
                from_ok(b);
                add(b, "}");
                break;
        case 12: { /* somebody else's id, or none */
                static const char *const v[] = {",\"from\":{\"id\":\"" BOB "\"}", "", ",\"from\":null",
                                                ",\"from\":{\"id\":\"" FUZZ " \"}", ",\"from\":{\"id\":[]}"};
                putf(b, "{\"op\":\"%s\",\"args\":{\"channel\":\"fz.a\",\"generation\":1}%s}", op_name(), v[below(5)]);
                break;
        }
        default: { /* a valid request with one of its quotes broken */
                putf(b, "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"fz.ok\"}");
                from_ok(b);
                add(b, "}");
                /* Every quote here is structural (no string contains one),
                 * so replacing any of them is a syntax error. */
                static const char garbage[] = {'\0', '\x01', '\xff', '{', '}', '\\', ','};
                size_t at = 1 + below(b->len - 2);
                while (b->p[at] != '"' && at > 1)
                        at--;
                b->p[at] = garbage[below(sizeof garbage)];
                break;
        }
        }
        if (!b->p)
                add(b, "");
}

/* ---- checks ----------------------------------------------------------------- */

static bool daemon_running(void)
{
        return proc_wait(&dm.p, 0) == -ETIMEDOUT;
}

/* §5.4: exactly {"ok":false,"error":"<non-empty>"}. */
static void expect_refusal(const natsMsg *m, int idx, int kind, const char *body)
{
        json_t *r = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
        const char *e = json_string_value(json_object_get(r, "error"));
        if (!(r && json_object_size(r) == 2 && json_is_false(json_object_get(r, "ok")) && e && *e &&
              strcmp(e, "internal error") != 0)) {
                char *have = co_json_text(r);
                ck_abort_msg("request %d (kind %d, body %.200s) got %.300s", idx, kind, body, have);
        }
        json_decref(r);
}

START_TEST(hundreds_of_hostile_requests_get_refusals_or_nothing)
{
        natsSubscription *bound = NULL, *unbound_a = NULL, *unbound_b = NULL;
        ck_assert(natsConnection_SubscribeSync(&bound, tu_nc, BOUND ".>") == NATS_OK);
        ck_assert(natsConnection_SubscribeSync(&unbound_a, tu_nc, UNBOUND_A ".>") == NATS_OK);
        ck_assert(natsConnection_SubscribeSync(&unbound_b, tu_nc, UNBOUND_B ".>") == NATS_OK);
        ck_assert(natsSubscription_SetPendingLimits(bound, -1, -1) == NATS_OK);
        ck_assert(natsConnection_Flush(tu_nc) == NATS_OK);
        uint64_t members_before = co_last_seq(MEMBERS_STREAM);

        int kinds[REQUESTS];
        char *bodies[REQUESTS] = {0};
        bool expect_reply[REQUESTS];
        int answered_total = 0, silent = 0;
        for (int start = 0; start < REQUESTS; start += WAVE) {
                int end = start + WAVE < REQUESTS ? start + WAVE : REQUESTS;
                int want = 0;
                for (int i = start; i < end; i++) {
                        buf b = {0};
                        generate(&b, &kinds[i]);
                        bodies[i] = b.p;
                        char reply[256];
                        int mode = (int)below(10); /* 0: none, 1: elsewhere, 2: look-alike, else bound */
                        expect_reply[i] = mode >= 3;
                        natsStatus s;
                        if (mode == 0) {
                                s = natsConnection_Publish(tu_nc, SUBJECT, b.p, (int)b.len);
                        } else {
                                snprintf(reply, sizeof reply, "%s.%d",
                                         mode == 1   ? UNBOUND_A
                                         : mode == 2 ? UNBOUND_B
                                                     : BOUND,
                                         i);
                                s = natsConnection_PublishRequest(tu_nc, SUBJECT, reply, b.p, (int)b.len);
                        }
                        ck_assert_msg(s == NATS_OK, "publish %d: %s", i, natsStatus_GetText(s));
                        want += expect_reply[i];
                        silent += !expect_reply[i];
                }
                ck_assert(natsConnection_Flush(tu_nc) == NATS_OK);
                /* Collect this wave's replies. */
                int got = 0;
                int64_t deadline = test_now_ms() + WAVE_MS;
                while (got < want) {
                        int64_t left = deadline - test_now_ms();
                        natsMsg *m = NULL;
                        if (left <= 0 || natsSubscription_NextMsg(&m, bound, left) != NATS_OK)
                                break;
                        const char *dot = strrchr(natsMsg_GetSubject(m), '.');
                        int idx = atoi(dot + 1);
                        ck_assert_msg(idx >= start && idx < end && expect_reply[idx], "stray reply on %s",
                                      natsMsg_GetSubject(m));
                        expect_refusal(m, idx, kinds[idx], bodies[idx]);
                        expect_reply[idx] = false; /* a second reply would be stray */
                        natsMsg_Destroy(m);
                        got++;
                }
                if (got < want) {
                        co_daemon_dump(&dm);
                        for (int i = start; i < end; i++)
                                if (expect_reply[i])
                                        fprintf(stderr, "unanswered %d (kind %d): %.200s\n", i, kinds[i], bodies[i]);
                }
                ck_assert_msg(got == want, "wave %d: %d of %d replies", start / WAVE, got, want);
                ck_assert_msg(daemon_running(), "the daemon exited during wave %d (status %d)", start / WAVE,
                              dm.p.status);
                answered_total += got;
        }
        /* The unbound ones: nothing, here or on the bound lane. */
        natsMsg *m = NULL;
        ck_assert_msg(natsSubscription_NextMsg(&m, unbound_a, QUIET_MS) == NATS_TIMEOUT, "a reply went to %s",
                      m ? natsMsg_GetSubject(m) : "?");
        ck_assert_msg(natsSubscription_NextMsg(&m, unbound_b, 1) == NATS_TIMEOUT, "a reply went to %s",
                      m ? natsMsg_GetSubject(m) : "?");
        ck_assert_msg(natsSubscription_NextMsg(&m, bound, 1) == NATS_TIMEOUT, "an extra reply on %s",
                      m ? natsMsg_GetSubject(m) : "?");
        natsSubscription_Destroy(bound);
        natsSubscription_Destroy(unbound_a);
        natsSubscription_Destroy(unbound_b);
        for (int i = 0; i < REQUESTS; i++)
                free(bodies[i]);
        fprintf(stderr, "%d refusals, %d unbound requests ignored\n", answered_total, silent);
        ck_assert_int_gt(answered_total, REQUESTS / 2);
        ck_assert_int_gt(silent, 0);

        ck_assert_msg(daemon_running(), "the daemon exited (status %d)", dm.p.status);
        ck_assert_uint_eq(co_last_seq(MEMBERS_STREAM), members_before);

        /* And it still works: a real join, a real post, a real delivery. */
        json_t *r = co_request(S, FUZZ,
                               "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"fz.ok\"},"
                               "\"from\":{\"id\":\"" FUZZ "\"}}",
                               NULL, NULL, 30000);
        json_t *want = json_loads("{\"ok\":true,\"data\":{\"durable\":true,\"generation\":1}}", 0, NULL);
        char *have = co_json_text(r);
        ck_assert_msg(json_equal(r, want), "join after the fuzz: %s", have);
        free(have);
        json_decref(want);
        json_decref(r);
        co_chat(S, ALICE, "fz.ok", "after-fuzz", NULL);
        ck_assert_msg(co_wait_id(DLV, "cotal." S ".dlv." FUZZ, "after-fuzz:" FUZZ ":1", WAIT_MS),
                      "no delivery after the fuzz");
}
END_TEST

/* "fz." followed by n-3 'a's: a valid channel inside the ACL. Owned. */
static char *long_channel(size_t n)
{
        char *ch = malloc(n + 1);
        ck_assert(ch);
        memset(ch, 'a', n);
        memcpy(ch, "fz.", 3);
        ch[n] = '\0';
        return ch;
}

/* co_chat's buffers are too small for these channels. */
static uint64_t post(const char *channel, const char *id)
{
        buf subject = {0}, body = {0};
        putf(&subject, "cotal." S ".chat." ALICE ".%s", channel);
        putf(&body, "{\"id\":\"%s\",\"ts\":1,\"from\":{\"id\":\"" ALICE "\",\"name\":\"alice\"},\"parts\":[]}", id);
        uint64_t seq = co_publish_raw(subject.p, id, body.p, body.len);
        free(subject.p);
        free(body.p);
        return seq;
}

static json_t *join_json(const char *channel)
{
        buf b = {0};
        putf(&b, "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"%s\"}", channel);
        from_ok(&b);
        add(&b, "}");
        json_t *r = co_request(S, FUZZ, b.p, NULL, NULL, 30000);
        free(b.p);
        return r;
}

START_TEST(channels_too_long_for_a_subject_are_refused_harmlessly)
{
        /* Long but fitting: the whole path works, catch-up included (its
         * consumer-create subject carries the channel). The post is made
         * before the record exists, so only the catch-up can deliver it. */
        char *ch = long_channel(2900);
        uint64_t base = co_last_seq(CHAT);
        uint64_t seq = post(ch, "long-1");
        ck_assert(co_wait_acked(CHAT, "fanout", seq, WAIT_MS));
        buf key = {0}, value = {0}; /* tu_kv_put's buffers are too small too */
        putf(&key, "$KV.cotal_members_" S ".%s/" FUZZ, ch);
        putf(&value,
             "{\"channel\":\"%s\",\"owner\":\"" FUZZ "\",\"state\":\"durable-active\",\"joinCursor\":%llu,"
             "\"generation\":1,\"activated\":false,\"writerIdentity\":\"UDEAD\",\"updatedAt\":1}",
             ch, (unsigned long long)base);
        co_publish_raw(key.p, NULL, value.p, value.len);
        json_t *r = join_json(ch);
        json_t *want = json_loads("{\"ok\":true,\"data\":{\"durable\":true,\"generation\":1}}", 0, NULL);
        char *have = co_json_text(r);
        ck_assert_msg(json_equal(r, want), "2900-byte channel: %s", have);
        free(have);
        json_decref(want);
        json_decref(r);
        if (!co_wait_id(DLV, "cotal." S ".dlv." FUZZ, "long-1:" FUZZ ":1", WAIT_MS)) {
                co_daemon_dump(&dm);
                ck_abort_msg("long-1 not caught up");
        }
        free(key.p);
        free(value.p);
        free(ch);

        /* Too long: refused before anything is written, and the daemon
         * keeps its connection (nats-server would close it for a protocol
         * line over 4096 bytes, and the lease would go with it). */
        uint64_t members_before = co_last_seq(MEMBERS_STREAM);
        size_t lens[] = {4100, 20000, 60000};
        for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
                ch = long_channel(lens[i]);
                r = join_json(ch);
                const char *e = json_string_value(json_object_get(r, "error"));
                have = co_json_text(r);
                ck_assert_msg(r && json_object_size(r) == 2 && json_is_false(json_object_get(r, "ok")) && e &&
                                      strstr(e, "too long"),
                              "%zu-byte channel: %.300s", lens[i], have);
                free(have);
                json_decref(r);
                free(ch);
                ck_assert_msg(daemon_running(), "the daemon exited after a %zu-byte channel", lens[i]);
        }
        ck_assert_uint_eq(co_last_seq(MEMBERS_STREAM), members_before);
        char *err = proc_stderr(&dm.p);
        ck_assert_msg(!strstr(err, "disconnected from the broker"), "the daemon lost its connection");
        free(err);
        /* ... and still delivers on the long channel. */
        ch = long_channel(2900);
        post(ch, "long-2");
        free(ch);
        ck_assert_msg(co_wait_id(DLV, "cotal." S ".dlv." FUZZ, "long-2:" FUZZ ":1", WAIT_MS), "long-2 not delivered");
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
        Suite *s = suite_create("control_fuzz");
        TCase *tc = tcase_create("control");
        tcase_add_unchecked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 150);
        tcase_add_test(tc, channels_too_long_for_a_subject_are_refused_harmlessly);
        tcase_add_test(tc, hundreds_of_hostile_requests_get_refusals_or_nothing);
        tcase_add_test(tc, the_daemon_stayed_up_and_its_log_is_clean);
        suite_add_tcase(s, tc);
        return co_run(s);
}
