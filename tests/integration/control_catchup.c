/* control_catchup: the join catch-up and eviction probe of PROTOCOL §8.6
 * against a real broker and daemon. A join that finds an unfinished
 * activation (a pending record left by a daemon that died mid-join) copies
 * the window (joinCursor, fence] into the owner's inbox — including chat the
 * fan-out never saw because it was published before the daemon first
 * started — with dedup ids "<msg.id>:<owner>:<generation>", in CHAT order,
 * skipping the owner's own posts, spoofed and malformed messages and other
 * channels; every message reaches DLV exactly once, also when the join is
 * retried and when the fan-out copied the same messages first. A fresh join
 * does not deliver what was posted before it. A window whose oldest
 * messages were evicted by retention tombstones the record and answers
 * durable:false; a retry is a fresh join. An entry too large to write is
 * dropped as poison instead of failing the join forever. A leave that lands
 * while the catch-up runs makes the activation refuse ("superseded") and
 * the tombstone stands. Catch-up and probe consumers are gone afterwards. */
#include "cotal.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S "ccu"
#define DLV "DLV_" S
#define INBOX "INBOX_" S
#define CHAT "CHAT_" S
#define MEMBERS_BUCKET "cotal_members_" S
#define MEMBERS_STREAM "KV_cotal_members_" S
#define EVE "UEVEEVEEVEEVEEVEEVEEVEEVEEVEEVEEVEEVEEVEEVEEVEEVEEVEEVEE"
#define DINBOX(o) "cotal." S ".dinbox." o
#define DLVSUBJ(o) "cotal." S ".dlv." o
#define WAIT_MS 20000
#define JOIN_MS 30000
#define HISTORY 5
#define EVICT_POSTS 1005 /* CHAT keeps 1000 per sender-and-channel subject */

static co_daemon dm;
static uint64_t hist_first;         /* CHAT seq of the first pre-start post */
static uint64_t hist_seqs[HISTORY]; /* ... and of the ones Bob must get */

static void pending_record(const char *channel, const char *owner, uint64_t join_cursor, uint64_t gen)
{
        char key[256], value[1024];
        snprintf(key, sizeof key, "%s/%s", channel, owner);
        snprintf(value, sizeof value,
                 "{\"channel\":\"%s\",\"owner\":\"%s\",\"state\":\"durable-active\",\"joinCursor\":%llu,"
                 "\"generation\":%llu,\"activated\":false,\"writerIdentity\":\"UDEADDAEMON\",\"updatedAt\":1}",
                 channel, owner, (unsigned long long)join_cursor, (unsigned long long)gen);
        tu_kv_put(MEMBERS_BUCKET, key, value);
}

/* A raw post on "hist" under sender's subject. */
static void raw(const char *sender, const char *msg_id, const char *body)
{
        char subject[256];
        snprintf(subject, sizeof subject, "cotal." S ".chat.%s.hist", sender);
        co_publish_raw(subject, msg_id, body, strlen(body));
}

static void setup(void)
{
        tu_broker_setup();
        co_provision(S);
        co_acl(S, BOB, "[\"hist\",\"pend\",\"fresh\",\"quiet\",\"big\"]");
        co_acl(S, CAROL, "[\"ev\",\"quiet\"]");
        co_acl(S, DAVE, "[\"hist\"]");
        co_acl(S, EVE, "[\"sup\"]");
        /* History posted while no daemon ran: the fan-out durable, created
         * later with deliver_policy "new", never sees any of it. */
        uint64_t base = co_last_seq(CHAT);
        co_chat(S, ALICE, "hist", "h-1", NULL);
        co_chat(S, BOB, "hist", "h-own", NULL); /* the owner's own post */
        raw(ALICE, NULL, "not json");
        raw(ALICE, NULL, "null");
        raw(ALICE, NULL, "{\"id\":7,\"from\":{\"id\":\"" ALICE "\"}}");
        co_chat(S, ALICE, "hist.sub", "h-sub", NULL); /* another channel */
        co_chat(S, ALICE, "histx", "h-x", NULL);      /* a prefix-alike */
        hist_seqs[0] = base + 1;
        hist_seqs[1] = co_chat(S, CAROL, "hist", "h-2", NULL);
        /* spoofed: Carol's subject, Alice's from.id */
        raw(CAROL, "h-spoof", "{\"id\":\"h-spoof\",\"from\":{\"id\":\"" ALICE "\",\"name\":\"a\"}}");
        hist_seqs[2] = co_chat(S, ALICE, "hist", "h-3", NULL);
        hist_seqs[3] = co_chat(S, DAVE, "hist", "h-4", NULL);
        /* 2^53 + 1: the message must be carried through, not re-encoded
         * through a double (§5.1). */
        hist_seqs[4] = co_chat(S, ALICE, "hist", "h-5", "\"mentions\":[\"bob\"],\"big\":9007199254740993");
        hist_first = base + 1;
        /* A daemon died between its commit and its activation. */
        pending_record("hist", BOB, base, 1);
        ck_assert_msg(co_daemon_start(&dm, S, NULL), "daemon did not become ready");
}

static void teardown(void)
{
        co_daemon_finish(&dm);
        tu_broker_teardown();
}

/* ---- helpers ------------------------------------------------------------ */

static json_t *join(const char *agent, const char *channel)
{
        char body[512];
        snprintf(body, sizeof body, "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"%s\"},\"from\":{\"id\":\"%s\"}}",
                 channel, agent);
        return co_request(S, agent, body, NULL, NULL, JOIN_MS);
}

/* §5.4 / §8.3: exactly {"ok":true,"data":<data_json>}. Steals r. */
static void expect_ok(json_t *r, const char *data_json, const char *what)
{
        json_t *want = json_loads(data_json, 0, NULL);
        ck_assert_msg(want, "bad expectation %s", data_json);
        char *have = co_json_text(r);
        if (!(r && json_object_size(r) == 2 && json_is_true(json_object_get(r, "ok")) &&
              json_equal(json_object_get(r, "data"), want))) {
                co_daemon_dump(&dm);
                ck_abort_msg("%s: got %s, want {\"data\":%s,\"ok\":true}", what, have, data_json);
        }
        free(have);
        json_decref(want);
        json_decref(r);
}

/* Every message on subject in stream, in stream order, fetched with
 * next_by_subj. Owned array: co_msgs_free. */
static size_t list_on(const char *stream, const char *subject, co_msg **out)
{
        co_msg *v = NULL;
        size_t n = 0;
        uint64_t seq = 1;
        for (int guard = 0; guard < 5000; guard++) {
                json_t *r = tu_api("$JS.API.STREAM.MSG.GET.%s%s", stream, "",
                                   json_pack("{s:I, s:s}", "seq", (json_int_t)seq, "next_by_subj", subject));
                uint64_t got = (uint64_t)json_integer_value(json_object_get(json_object_get(r, "message"), "seq"));
                json_decref(r);
                if (got == 0)
                        break;
                co_msg m;
                if (co_msg_get(stream, got, &m)) {
                        ck_assert_str_eq(m.subject, subject);
                        v = realloc(v, (n + 1) * sizeof *v);
                        v[n++] = m;
                }
                seq = got + 1;
        }
        *out = v;
        return n;
}

static int count_id(const char *stream, const char *subject, const char *id)
{
        co_msg *m = NULL;
        size_t n = list_on(stream, subject, &m);
        int c = 0;
        for (size_t i = 0; i < n; i++)
                c += m[i].msg_id && strcmp(m[i].msg_id, id) == 0;
        co_msgs_free(m, n);
        return c;
}

/* Names of the consumers on CHAT other than the fan-out durable. */
static char *extra_consumers(void)
{
        json_t *r = tu_api("$JS.API.CONSUMER.NAMES.%s%s", CHAT, "", NULL);
        json_t *names = json_object_get(r, "consumers");
        char *out = strdup("");
        size_t i;
        json_t *v;
        json_array_foreach (names, i, v) {
                if (strcmp(json_string_value(v), "fanout") == 0)
                        continue;
                char *grown = NULL;
                ck_assert(asprintf(&grown, "%s %s", out, json_string_value(v)) >= 0);
                free(out);
                out = grown;
        }
        json_decref(r);
        return out;
}

static void expect_no_extra_consumers(void)
{
        char *extra = extra_consumers();
        ck_assert_msg(extra[0] == '\0', "consumers left on %s:%s", CHAT, extra);
        free(extra);
}

/* ---- tests -------------------------------------------------------------- */

START_TEST(pending_join_catches_up_history_the_fanout_never_saw)
{
        /* The fan-out routed nothing of it (it did not exist yet). */
        ck_assert_uint_eq(co_messages(INBOX, DINBOX(BOB)), 0);
        expect_ok(join(BOB, "hist"), "{\"durable\":true,\"generation\":1}", "join over the pending record");

        /* §5.2 entries in CHAT order, each once, nothing else. */
        static const char *const ids[HISTORY] = {"h-1", "h-2", "h-3", "h-4", "h-5"};
        co_msg *m = NULL;
        size_t n = list_on(INBOX, DINBOX(BOB), &m);
        if (n != HISTORY)
                co_daemon_dump(&dm);
        ck_assert_uint_eq(n, HISTORY);
        for (size_t i = 0; i < n; i++) {
                char want_id[128];
                snprintf(want_id, sizeof want_id, "%s:" BOB ":1", ids[i]);
                ck_assert_str_eq(m[i].msg_id, want_id);
                json_t *e = m[i].body;
                ck_assert_msg(e && json_object_size(e) == 5, "entry %zu is not a §5.2 envelope", i);
                ck_assert_str_eq(json_string_value(json_object_get(e, "channel")), "hist");
                ck_assert_str_eq(json_string_value(json_object_get(e, "reason")), "durable-channel");
                ck_assert_int_eq(json_integer_value(json_object_get(e, "generation")), 1);
                ck_assert_int_eq(json_integer_value(json_object_get(e, "seq")), (json_int_t)hist_seqs[i]);
                ck_assert_str_eq(json_string_value(json_object_get(json_object_get(e, "msg"), "id")), ids[i]);
                /* The message itself, unchanged. */
                co_msg chat;
                ck_assert(co_msg_get(CHAT, hist_seqs[i], &chat));
                ck_assert_msg(json_equal(chat.body, json_object_get(e, "msg")), "entry %zu changed the message", i);
                co_msg_fini(&chat);
        }
        co_msgs_free(m, n);

        /* The reader hands each one on exactly once. */
        ck_assert_uint_eq(co_wait_count(DLV, DLVSUBJ(BOB), HISTORY, WAIT_MS), HISTORY);
        n = list_on(DLV, DLVSUBJ(BOB), &m);
        ck_assert_uint_eq(n, HISTORY);
        for (size_t i = 0; i < n; i++) {
                char want_id[128];
                snprintf(want_id, sizeof want_id, "%s:" BOB ":1", ids[i]);
                ck_assert_str_eq(m[i].msg_id, want_id);
                ck_assert_str_eq(json_string_value(json_object_get(m[i].body, "id")), ids[i]);
        }
        co_msgs_free(m, n);

        /* Same window, same generation, now activated. */
        json_t *rec = co_member_record(S, "hist", BOB);
        ck_assert(json_is_true(json_object_get(rec, "activated")));
        ck_assert_int_eq(json_integer_value(json_object_get(rec, "joinCursor")), (json_int_t)(hist_first - 1));
        ck_assert_int_eq(json_integer_value(json_object_get(rec, "generation")), 1);
        ck_assert_ptr_null(json_object_get(rec, "leaveCursor"));
        json_decref(rec);

        /* A retry is idempotent: same reply, nothing copied again. */
        uint64_t inbox_last = co_last_seq(INBOX);
        expect_ok(join(BOB, "hist"), "{\"durable\":true,\"generation\":1}", "retried join");
        ck_assert_uint_eq(co_last_seq(INBOX), inbox_last);
        ck_assert_uint_eq(co_messages(DLV, DLVSUBJ(BOB)), HISTORY);
        expect_no_extra_consumers();

        /* Malformed history was skipped and said so. */
        char *err = proc_stderr(&dm.p);
        ck_assert_msg(strstr(err, "Catch-up for " BOB " on hist skipped malformed"), "no skip log line");
        free(err);

        /* Dave's join of the same history: his own post h-4 is left out,
         * Bob's h-own is not (h-1, h-own, h-2, h-3, h-5). */
        pending_record("hist", DAVE, hist_first - 1, 4);
        expect_ok(join(DAVE, "hist"), "{\"durable\":true,\"generation\":4}", "dave's pending join");
        ck_assert_uint_eq(co_wait_count(DLV, DLVSUBJ(DAVE), 5, WAIT_MS), 5);
        ck_assert_int_eq(count_id(DLV, DLVSUBJ(DAVE), "h-4:" DAVE ":4"), 0);
        ck_assert_int_eq(count_id(DLV, DLVSUBJ(DAVE), "h-own:" DAVE ":4"), 1);
}
END_TEST

START_TEST(catch_up_and_fanout_copies_collapse)
{
        /* A pending record routes at once (the fan-out ignores
         * "activated"); the join's catch-up then copies the same window. */
        uint64_t base = co_last_seq(CHAT);
        pending_record("pend", BOB, base, 3);
        uint64_t last = 0;
        char id[32];
        for (int i = 1; i <= 3; i++) {
                snprintf(id, sizeof id, "p-%d", i);
                last = co_chat(S, ALICE, "pend", id, NULL);
        }
        ck_assert(co_wait_acked(CHAT, "fanout", last, WAIT_MS));
        ck_assert(co_wait_id(DLV, DLVSUBJ(BOB), "p-3:" BOB ":3", WAIT_MS));
        expect_ok(join(BOB, "pend"), "{\"durable\":true,\"generation\":3}", "join over routed pending record");
        for (int i = 1; i <= 3; i++) {
                char want[128];
                snprintf(want, sizeof want, "p-%d:" BOB ":3", i);
                ck_assert_msg(count_id(INBOX, DINBOX(BOB), want) == 1, "inbox holds %s not once", want);
                ck_assert_msg(count_id(DLV, DLVSUBJ(BOB), want) == 1, "dlv holds %s not once", want);
        }
        char *err = proc_stderr(&dm.p);
        ck_assert_msg(strstr(err, "Catch-up for " BOB " on pend generation 3: 3 entries copied"),
                      "the catch-up did not copy the window");
        free(err);
        expect_no_extra_consumers();
}
END_TEST

START_TEST(fresh_join_does_not_deliver_what_came_before_it)
{
        co_chat(S, ALICE, "fresh", "f-0", NULL);
        uint64_t frontier = co_last_seq(CHAT);
        expect_ok(join(BOB, "fresh"), "{\"durable\":true,\"generation\":1}", "fresh join");
        json_t *rec = co_member_record(S, "fresh", BOB);
        ck_assert_int_eq(json_integer_value(json_object_get(rec, "joinCursor")), (json_int_t)frontier);
        json_decref(rec);
        co_chat(S, ALICE, "fresh", "f-1", NULL);
        ck_assert(co_wait_id(DLV, DLVSUBJ(BOB), "f-1:" BOB ":1", WAIT_MS));
        ck_assert_int_eq(count_id(INBOX, DINBOX(BOB), "f-0:" BOB ":1"), 0);
        ck_assert_int_eq(count_id(DLV, DLVSUBJ(BOB), "f-1:" BOB ":1"), 1);
}
END_TEST

static uint64_t burst_padded(const char *sender, const char *channel, const char *prefix, int n, size_t pad)
{
        return co_chat_burst(S, sender, channel, prefix, n, pad);
}

static uint64_t burst(const char *sender, const char *channel, const char *prefix, int n)
{
        return burst_padded(sender, channel, prefix, n, 0);
}

START_TEST(evicted_window_tombstones_and_answers_durable_false)
{
        /* A quiet channel is not judged by the global sequence (smoke 55). */
        uint64_t base = co_last_seq(CHAT);
        uint64_t last = burst(ALICE, "ev", "e", EVICT_POSTS);
        ck_assert_uint_eq(last, base + EVICT_POSTS);
        ck_assert(co_wait_acked(CHAT, "fanout", last, WAIT_MS)); /* routed to nobody */
        pending_record("quiet", CAROL, base, 1);
        expect_ok(join(CAROL, "quiet"), "{\"durable\":true,\"generation\":1}", "quiet channel");

        /* Carol's unfinished join of "ev" started before all of it: the
         * oldest retained post (base + 6) is past joinCursor + 1. */
        pending_record("ev", CAROL, base, 2);
        uint64_t fence = co_last_seq(CHAT);
        expect_ok(join(CAROL, "ev"),
                  "{\"durable\":false,\"reason\":\"activation catch-up window partially evicted by retention\","
                  "\"generation\":2}",
                  "evicted window");
        json_t *rec = co_member_record(S, "ev", CAROL);
        char *have = co_json_text(rec);
        ck_assert_msg(strcmp(json_string_value(json_object_get(rec, "state")), "live-confirmed") == 0 &&
                              json_integer_value(json_object_get(rec, "leaveCursor")) == (json_int_t)fence &&
                              json_integer_value(json_object_get(rec, "generation")) == 2 &&
                              json_integer_value(json_object_get(rec, "joinCursor")) == (json_int_t)base &&
                              json_is_false(json_object_get(rec, "activated")),
                      "evicted record: %s (fence %llu)", have, (unsigned long long)fence);
        free(have);
        json_decref(rec);
        /* The copies were made anyway and stay deliverable (§14.3). */
        ck_assert_uint_eq(co_messages(INBOX, DINBOX(CAROL)), 1000);
        ck_assert_uint_eq(co_wait_count(DLV, DLVSUBJ(CAROL), 1000, WAIT_MS), 1000);
        expect_no_extra_consumers();

        /* The tombstone stops the fan-out; a retry is a fresh join. */
        uint64_t after = burst(ALICE, "ev", "late", 1);
        ck_assert(co_wait_acked(CHAT, "fanout", after, WAIT_MS));
        ck_assert_int_eq(count_id(INBOX, DINBOX(CAROL), "late-0:" CAROL ":2"), 0);
        expect_ok(join(CAROL, "ev"), "{\"durable\":true,\"generation\":3}", "retry after eviction");
        rec = co_member_record(S, "ev", CAROL);
        ck_assert_int_eq(json_integer_value(json_object_get(rec, "joinCursor")), (json_int_t)after);
        ck_assert(json_is_true(json_object_get(rec, "activated")));
        ck_assert_ptr_null(json_object_get(rec, "leaveCursor"));
        json_decref(rec);
        uint64_t next = burst(ALICE, "ev", "next", 1);
        (void)next;
        ck_assert(co_wait_id(DLV, DLVSUBJ(CAROL), "next-0:" CAROL ":3", WAIT_MS));
}
END_TEST

START_TEST(an_entry_too_large_to_write_does_not_block_the_join)
{
        /* A post that fits the broker's max_payload but whose inbox entry
         * (envelope + dedup header) does not: poison, dropped as the
         * fan-out drops it, while the rest of the window is copied. */
        int64_t max = natsConnection_GetMaxPayload(tu_nc);
        ck_assert_int_gt(max, 4096);
        size_t len = (size_t)max - 64;
        char *body = malloc(len + 1);
        ck_assert(body);
        int head = snprintf(body, len + 1,
                            "{\"id\":\"big-1\",\"ts\":1,\"from\":{\"id\":\"" ALICE
                            "\",\"name\":\"a\"},\"parts\":[{\"kind\":\"text\",\"text\":\"");
        memset(body + head, 'x', len - (size_t)head - 4);
        memcpy(body + len - 4, "\"}]}", 4);
        body[len] = '\0';
        uint64_t base = co_last_seq(CHAT);
        uint64_t big = co_publish_raw("cotal." S ".chat." ALICE ".big", "big-1", body, len);
        free(body);
        uint64_t small = co_chat(S, ALICE, "big", "big-2", NULL);
        ck_assert(co_wait_acked(CHAT, "fanout", small, WAIT_MS));
        pending_record("big", BOB, base, 1);
        expect_ok(join(BOB, "big"), "{\"durable\":true,\"generation\":1}", "join over a poison window");
        ck_assert(co_wait_id(DLV, DLVSUBJ(BOB), "big-2:" BOB ":1", WAIT_MS));
        ck_assert_int_eq(count_id(INBOX, DINBOX(BOB), "big-1:" BOB ":1"), 0);
        char line[256];
        snprintf(line, sizeof line, "Dropped catch-up entry of " CHAT " seq %llu for " BOB, (unsigned long long)big);
        char *err = proc_stderr(&dm.p);
        ck_assert_msg(strstr(err, line), "no log line: %s", line);
        free(err);
        json_t *rec = co_member_record(S, "big", BOB);
        ck_assert(json_is_true(json_object_get(rec, "activated")));
        json_decref(rec);
}
END_TEST

START_TEST(a_leave_during_catch_up_supersedes_the_activation)
{
        /* §8.7 activate refuses to resurrect a record that was tombstoned
         * while its catch-up ran. The daemon is stopped (SIGSTOP) as soon
         * as the first copies land, the tombstone is written as a
         * concurrent leave would, and the daemon resumes. */
        enum { PER_SENDER = 300, LEFT_AT = 100 };
        uint64_t base = co_last_seq(CHAT);
        burst_padded(ALICE, "sup", "sa", PER_SENDER, 4096);
        uint64_t last = burst_padded(CAROL, "sup", "sc", PER_SENDER, 4096);
        ck_assert(co_wait_acked(CHAT, "fanout", last, WAIT_MS));
        pending_record("sup", EVE, base, 5);
        const char *subject = "cotal." S ".ctl.delivery." EVE;
        const char *reply = "cotal." S ".ctl.delivery." EVE ".reply.sup";
        natsSubscription *sub = NULL;
        co_freezer fz;
        co_freeze_at_first(&fz, dm.p.pid, DINBOX(EVE));
        ck_assert(natsConnection_SubscribeSync(&sub, tu_nc, reply) == NATS_OK);
        ck_assert(natsConnection_PublishRequestString(
                          tu_nc, subject, reply,
                          "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"sup\"},\"from\":{\"id\":\"" EVE
                          "\"}}") == NATS_OK);
        ck_assert(natsConnection_Flush(tu_nc) == NATS_OK);
        ck_assert_msg(co_frozen_within(&fz, JOIN_MS), "the catch-up never started");
        uint64_t copied = co_messages(INBOX, DINBOX(EVE));
        json_t *rec = co_member_record(S, "sup", EVE);
        bool pending = json_is_false(json_object_get(rec, "activated"));
        json_decref(rec);
        if (!(pending && copied < 2 * PER_SENDER)) {
                proc_signal(&dm.p, SIGCONT);
                ck_abort_msg("stopped too late: %llu copies, record pending %d", (unsigned long long)copied, pending);
        }
        char value[1024];
        snprintf(value, sizeof value,
                 "{\"channel\":\"sup\",\"owner\":\"" EVE "\",\"state\":\"live-confirmed\",\"joinCursor\":%llu,"
                 "\"generation\":5,\"activated\":false,\"writerIdentity\":\"UOTHER\",\"updatedAt\":2,"
                 "\"leaveCursor\":%llu}",
                 (unsigned long long)base, (unsigned long long)(base + LEFT_AT));
        uint64_t tomb_rev = tu_kv_put(MEMBERS_BUCKET, "sup/" EVE, value);
        ck_assert_int_eq(proc_signal(&dm.p, SIGCONT), 0);

        natsMsg *m = NULL;
        ck_assert_msg(natsSubscription_NextMsg(&m, sub, JOIN_MS) == NATS_OK, "no reply to the join");
        json_t *r = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
        natsMsg_Destroy(m);
        natsSubscription_Destroy(sub);
        expect_ok(r,
                  "{\"durable\":false,\"reason\":\"activation superseded by a concurrent leave or rejoin\","
                  "\"generation\":5}",
                  "join superseded by a leave");
        /* The tombstone stands, untouched. */
        ck_assert_uint_eq(co_last_seq(MEMBERS_STREAM), tomb_rev);
        /* The copies made are judged against it: only the pre-leave part
         * of the window reaches DLV. Entries copied before the freeze may
         * have been read under a fence older than the tombstone (§6.4: the
         * KV view as of the fetch), so past LEFT_AT only those may come:
         * exactly LEFT_AT when the freeze came early (the usual case), at
         * most what was copied by then on a loaded machine. */
        ck_assert_uint_eq(co_messages(INBOX, DINBOX(EVE)), 2 * PER_SENDER);
        ck_assert(co_wait_acked(INBOX, "reader", co_last_seq(INBOX), WAIT_MS));
        uint64_t delivered = co_messages(DLV, DLVSUBJ(EVE));
        ck_assert_msg(delivered >= LEFT_AT && delivered <= (copied > LEFT_AT ? copied : LEFT_AT),
                      "%llu copies in DLV; %d in the interval, %llu copied before the leave",
                      (unsigned long long)delivered, LEFT_AT, (unsigned long long)copied);
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
        Suite *s = suite_create("control_catchup");
        TCase *tc = tcase_create("control");
        tcase_add_unchecked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 150);
        tcase_add_test(tc, pending_join_catches_up_history_the_fanout_never_saw);
        tcase_add_test(tc, catch_up_and_fanout_copies_collapse);
        tcase_add_test(tc, fresh_join_does_not_deliver_what_came_before_it);
        tcase_add_test(tc, evicted_window_tombstones_and_answers_durable_false);
        tcase_add_test(tc, an_entry_too_large_to_write_does_not_block_the_join);
        tcase_add_test(tc, a_leave_during_catch_up_supersedes_the_activation);
        tcase_add_test(tc, the_daemon_stayed_up_and_its_log_is_clean);
        suite_add_tcase(s, tc);
        return co_run(s);
}
