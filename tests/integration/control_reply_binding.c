/* control_reply_binding: PROTOCOL §8.2 steps 1-3 against a real broker and
 * daemon, as an attacker would probe them. A request whose reply subject is
 * not under "<request subject>.reply." is answered nowhere and changes
 * nothing (a wildcard listener on the whole broker sees no reply on any
 * subject, the members bucket does not move, and the op is not executed);
 * a request whose from.id is not the subject's sender gets exactly
 * {"ok":false,"error":"sender mismatch — request rejected"} and changes
 * nothing; JSON that is not an object is refused with ok:false. Each
 * refusal leaves its §8.2 log line. */
#include "cotal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S "crb"
#define MEMBERS_BUCKET "cotal_members_" S
#define MEMBERS_STREAM "KV_cotal_members_" S
#define MALLORY "UMALLORYMALLORYMALLORYMALLORYMALLORYMALLORYMALLORYMALLOR"
#define CTL "cotal." S ".ctl.delivery."
#define MAL_SUBJECT CTL MALLORY
#define BOB_SUBJECT CTL BOB
#define REQ_MS 10000
#define QUIET_MS 1000 /* how long "nothing arrives" is watched for */

static co_daemon dm;

static void setup(void)
{
        tu_broker_setup();
        co_provision(S);
        co_acl(S, MALLORY, "[\"general\",\"mal.>\"]");
        co_acl(S, BOB, "[\"general\",\"bob.>\"]");
        ck_assert_msg(co_daemon_start(&dm, S, NULL), "daemon did not become ready");
}

static void teardown(void)
{
        co_daemon_finish(&dm);
        tu_broker_teardown();
}

/* §5.4: exactly {"ok":false,"error":text} (text NULL: any string). Steals r. */
static void expect_error(json_t *r, const char *text, const char *what)
{
        char *have = co_json_text(r);
        const char *e = json_string_value(json_object_get(r, "error"));
        ck_assert_msg(r && json_object_size(r) == 2 && json_is_false(json_object_get(r, "ok")) && e && *e &&
                              (!text || strcmp(e, text) == 0),
                      "%s: got %s, want {\"error\":\"%s\",\"ok\":false}", what, have, text ? text : "<any>");
        free(have);
        json_decref(r);
}

static uint64_t members_seq(void)
{
        return co_last_seq(MEMBERS_STREAM);
}

static bool member_exists(const char *key)
{
        char subj[512];
        snprintf(subj, sizeof subj, "$KV." MEMBERS_BUCKET ".%s", key);
        json_t *r = tu_api("$JS.API.STREAM.MSG.GET.%s%s", MEMBERS_STREAM, "", json_pack("{s:s}", "last_by_subj", subj));
        bool found = json_object_get(r, "message") != NULL;
        json_decref(r);
        return found;
}

static int count_occurrences(const char *hay, const char *needle)
{
        int n = 0;
        for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
                n++;
        return n;
}

/* A listener on every subject of the broker: what the daemon publishes
 * anywhere other than JetStream/KV internals and its own inbox shows up. */
typedef struct watch {
        natsSubscription *sub;
        const char *const *allowed; /* subjects that may appear, with counts */
        int *counts;
        size_t n_allowed;
} watch;

static void watch_start(watch *w, const char *const *allowed, int *counts, size_t n)
{
        memset(w, 0, sizeof *w);
        w->allowed = allowed;
        w->counts = counts;
        w->n_allowed = n;
        memset(counts, 0, n * sizeof *counts);
        ck_assert(natsConnection_SubscribeSync(&w->sub, tu_nc, ">") == NATS_OK);
        ck_assert(natsSubscription_SetPendingLimits(w->sub, -1, -1) == NATS_OK);
        ck_assert(natsConnection_Flush(tu_nc) == NATS_OK);
}

/* Drains until subject allowed[wait_idx] has been seen (at most
 * timeout_ms), then quiet_ms more; fails on any subject that is not
 * allowed. */
static void watch_finish(watch *w, size_t wait_idx, int64_t timeout_ms, int64_t quiet_ms)
{
        int64_t deadline = test_now_ms() + timeout_ms;
        bool quiet = false;
        for (int guard = 0; guard < 1000000; guard++) {
                if (!quiet && w->counts[wait_idx] > 0) {
                        quiet = true;
                        deadline = test_now_ms() + quiet_ms;
                }
                int64_t left = deadline - test_now_ms();
                if (left <= 0)
                        break;
                natsMsg *m = NULL;
                if (natsSubscription_NextMsg(&m, w->sub, left) != NATS_OK)
                        continue;
                const char *subj = natsMsg_GetSubject(m);
                bool known = strncmp(subj, "$JS.", 4) == 0 || strncmp(subj, "$KV.", 4) == 0 ||
                             strncmp(subj, "_INBOX", 6) == 0;
                for (size_t i = 0; !known && i < w->n_allowed; i++)
                        if (strcmp(subj, w->allowed[i]) == 0) {
                                w->counts[i]++;
                                known = true;
                        }
                if (!known) {
                        co_daemon_dump(&dm);
                        ck_abort_msg("unexpected publish on %s: %.*s", subj, natsMsg_GetDataLength(m),
                                     natsMsg_GetData(m));
                }
                natsMsg_Destroy(m);
        }
        natsSubscription_Destroy(w->sub);
        w->sub = NULL;
}

static void publish(const char *subject, const char *reply, const char *body)
{
        natsStatus s = reply ? natsConnection_PublishRequestString(tu_nc, subject, reply, body)
                             : natsConnection_PublishString(tu_nc, subject, body);
        ck_assert_msg(s == NATS_OK, "publish on %s: %s", subject, natsStatus_GetText(s));
}

#define JOIN_MAL "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"mal.x\"},\"from\":{\"id\":\"" MALLORY "\"}}"
#define JOIN_BOB "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"bob.x\"},\"from\":{\"id\":\"" BOB "\"}}"
#define LIST_MAL "{\"op\":\"listMemberships\",\"from\":{\"id\":\"" MALLORY "\"}}"

START_TEST(unbound_reply_targets_get_nothing_anywhere)
{
        static const struct {
                const char *reply; /* NULL: no reply subject */
                const char *body;
        } attacks[] = {
                {BOB_SUBJECT ".reply.x", JOIN_MAL}, /* into the victim's lane */
                {BOB_SUBJECT ".reply.x", JOIN_BOB}, /* ... acting as the victim */
                {BOB_SUBJECT ".reply." MALLORY, JOIN_MAL},
                {"unrelated.subject", JOIN_MAL},
                {NULL, JOIN_MAL},
                {MAL_SUBJECT ".replyX", JOIN_MAL},
                {MAL_SUBJECT ".replyX.y", JOIN_MAL},
                {MAL_SUBJECT ".reply", JOIN_MAL},
                {MAL_SUBJECT ".REPLY.x", JOIN_MAL},
                {MAL_SUBJECT, JOIN_MAL}, /* would loop onto the request subject */
                {MAL_SUBJECT "X.reply.x", JOIN_MAL},
                {"x." MAL_SUBJECT ".reply.y", JOIN_MAL},
                {"cotal.other.ctl.delivery." MALLORY ".reply.x", JOIN_MAL},
                {CTL "reply.x", JOIN_MAL},
                {BOB_SUBJECT ".reply.x", "not json at all"}, /* no parse error reply either */
                {BOB_SUBJECT ".reply.x", "{\"op\":\"durableJoin\",\"from\":{\"id\":\"" BOB "\"}}"},
        };
        enum { N = sizeof attacks / sizeof *attacks };
        const char *legit_reply = MAL_SUBJECT ".reply.legit";
        const char *allowed[] = {MAL_SUBJECT, legit_reply, CTL MALLORY ".extra", "cotal." S ".ctl.delivery"};
        int counts[4];
        watch w;
        uint64_t before = members_seq();
        watch_start(&w, allowed, counts, 4);
        for (int i = 0; i < N; i++)
                publish(MAL_SUBJECT, attacks[i].reply, attacks[i].body);
        /* Subjects outside the served pattern are nobody's requests. */
        publish(CTL MALLORY ".extra", CTL MALLORY ".extra.reply.x", JOIN_MAL);
        publish("cotal." S ".ctl.delivery", "cotal." S ".ctl.delivery.reply.x", JOIN_MAL);
        /* Requests are handled in order (§8.1): a reply to this one proves
         * every attack above was processed. */
        publish(MAL_SUBJECT, legit_reply, LIST_MAL);
        ck_assert(natsConnection_Flush(tu_nc) == NATS_OK);
        watch_finish(&w, 1, REQ_MS, QUIET_MS);
        ck_assert_msg(counts[1] == 1, "the legitimate request got %d replies", counts[1]);
        ck_assert_int_eq(counts[0], N + 1); /* our own requests, nothing more */
        ck_assert_int_eq(counts[2], 1);
        ck_assert_int_eq(counts[3], 1);

        /* Nothing executed: no KV write, no record. */
        ck_assert_uint_eq(members_seq(), before);
        ck_assert(!member_exists("mal.x/" MALLORY));
        ck_assert(!member_exists("bob.x/" BOB));

        /* Each one was logged with its target (§8.2 step 1). */
        char *err = proc_stderr(&dm.p);
        for (int i = 0; i < N; i++) {
                char line[600];
                snprintf(line, sizeof line,
                         "rejected delivery request on " MAL_SUBJECT ": reply target \"%s\" is not under the "
                         "sender's own reply subtree",
                         attacks[i].reply ? attacks[i].reply : "(none)");
                ck_assert_msg(strstr(err, line), "no log line: %s", line);
        }
        ck_assert_int_eq(count_occurrences(err, "rejected delivery request on " MAL_SUBJECT ": reply target"), N);
        free(err);

        /* The same join, answered on Mallory's own subtree, does execute:
         * the attacks above were refused for their reply target alone. */
        json_t *r = co_request(S, MALLORY, JOIN_MAL, NULL, NULL, REQ_MS);
        char *have = co_json_text(r);
        ck_assert_msg(json_is_true(json_object_get(r, "ok")), "legit join: %s", have);
        free(have);
        json_decref(r);
        ck_assert(member_exists("mal.x/" MALLORY));
}
END_TEST

START_TEST(the_victims_lane_stays_silent)
{
        /* Smoke 33/34: the victim listens on its reply subtree while the
         * attacker aims replies there; the attacker's own lane is answered. */
        natsSubscription *victim = NULL;
        ck_assert(natsConnection_SubscribeSync(&victim, tu_nc, BOB_SUBJECT ".reply.>") == NATS_OK);
        ck_assert(natsConnection_Flush(tu_nc) == NATS_OK);
        for (int i = 0; i < 20; i++) {
                char reply[256];
                snprintf(reply, sizeof reply, BOB_SUBJECT ".reply.%d", i);
                publish(MAL_SUBJECT, reply, i % 2 ? LIST_MAL : JOIN_MAL);
        }
        /* No ACL row for this one: answered ok:false, but answered. */
        json_t *r = co_request(S, "UNOACL",
                               "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"general\"},"
                               "\"from\":{\"id\":\"UNOACL\"}}",
                               NULL, NULL, REQ_MS);
        expect_error(r, "durableJoin: no read ACL on record for UNOACL (not provisioned for durable delivery)",
                     "own lane");
        r = co_request(S, MALLORY, LIST_MAL, NULL, NULL, REQ_MS);
        ck_assert_msg(r && json_is_true(json_object_get(r, "ok")), "mallory's own lane is not answered");
        json_decref(r);
        natsMsg *m = NULL;
        natsStatus s = natsSubscription_NextMsg(&m, victim, QUIET_MS);
        ck_assert_msg(s == NATS_TIMEOUT, "the victim's lane got %s", m ? natsMsg_GetSubject(m) : "an error");
        natsSubscription_Destroy(victim);
}
END_TEST

START_TEST(spoofed_senders_are_rejected_with_the_exact_text)
{
        /* Steps 2-3 on Mallory's own subject with a bound reply. */
        static const char *const bodies[] = {
                JOIN_BOB,
                "{\"op\":\"durableLeave\",\"args\":{\"channel\":\"bob.x\",\"generation\":1},\"from\":{\"id\":\"" BOB
                "\"}}",
                "{\"op\":\"listMemberships\",\"from\":{\"id\":\"" BOB "\",\"name\":\"bob\"}}",
                "{\"op\":\"noSuchOp\",\"from\":{\"id\":\"" BOB "\"}}", /* step 3 comes before step 4 */
                "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"mal.y\"}}",
                "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"mal.y\"},\"from\":null}",
                "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"mal.y\"},\"from\":\"" MALLORY "\"}",
                "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"mal.y\"},\"from\":[\"" MALLORY "\"]}",
                "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"mal.y\"},\"from\":{\"name\":\"mallory\"}}",
                "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"mal.y\"},\"from\":{\"id\":5}}",
                "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"mal.y\"},\"from\":{\"id\":null}}",
                "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"mal.y\"},\"from\":{\"id\":[\"" MALLORY "\"]}}",
                "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"mal.y\"},"
                "\"from\":{\"id\":\"umallorymallorymallorymallorymallorymallorymallorymallor\"}}",
                "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"mal.y\"},\"from\":{\"id\":\" " MALLORY "\"}}",
                "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"mal.y\"},\"from\":{\"id\":\"" MALLORY " \"}}",
                "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"mal.y\"},\"from\":{\"id\":\"" MALLORY "X\"}}",
                "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"mal.y\"},\"from\":{\"id\":\"*\"}}",
                "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"mal.y\"},\"from\":{\"id\":\"\"}}",
                "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"mal.y\"},\"from\":{\"id\":\"X\\n<0>forged "
                "critical line\"}}",
                /* Duplicate keys: the last one counts (as in JavaScript). */
                "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"mal.y\"},"
                "\"from\":{\"id\":\"" MALLORY "\",\"id\":\"" BOB "\"}}",
        };
        enum { N = sizeof bodies / sizeof *bodies };
        uint64_t before = members_seq();
        for (int i = 0; i < N; i++)
                expect_error(co_request(S, MALLORY, bodies[i], NULL, NULL, REQ_MS),
                             "sender mismatch — request rejected", bodies[i]);
        ck_assert_uint_eq(members_seq(), before);
        ck_assert(!member_exists("bob.x/" BOB));
        ck_assert(!member_exists("mal.y/" MALLORY));

        char *err = proc_stderr(&dm.p);
        ck_assert_msg(strstr(err, "rejected control request on " MAL_SUBJECT ": from " BOB
                                  " does not match subject sender " MALLORY),
                      "no sender-mismatch log line");
        ck_assert_msg(strstr(err, "rejected control request on " MAL_SUBJECT
                                  ": from (none) does not match subject sender " MALLORY),
                      "no (none) log line");
        /* One event, one line: a newline in from.id cannot forge a line. */
        ck_assert_msg(!strstr(err, "\n<0>forged"), "a forged log line got through");
        ck_assert_int_ge(count_occurrences(err, "rejected control request on " MAL_SUBJECT ": from "), N);
        free(err);

        /* The victim acting for itself is fine (duplicate key, last wins). */
        json_t *r = co_request(S, BOB,
                               "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"bob.x\"},\"from\":{\"id\":\"" MALLORY
                               "\",\"id\":\"" BOB "\"}}",
                               NULL, NULL, 30000);
        char *have = co_json_text(r);
        ck_assert_msg(r && json_object_size(r) == 2 && json_is_true(json_object_get(r, "ok")), "bob's own join: %s",
                      have);
        free(have);
        json_decref(r);
        ck_assert(member_exists("bob.x/" BOB));
}
END_TEST

START_TEST(bodies_that_are_not_requests_are_refused)
{
        static const char *const bodies[] = {
                "",
                "null",
                "[]",
                "[{\"op\":\"listMemberships\",\"from\":{\"id\":\"" MALLORY "\"}}]",
                "5",
                "-1.5e3",
                "\"listMemberships\"",
                "true",
                "false",
                "{",
                "{\"op\":",
                "{\"op\":\"listMemberships\",\"from\":{\"id\":\"" MALLORY "\"}", /* one brace short */
                "\xff\xfe{}",
                "{\"op\":\"\xc3\x28\"}", /* invalid UTF-8 */
                "{} {}",
                /* A NUL inside a string: jansson refuses it (upstream would
                 * reach the sender check); a refusal either way. */
                "{\"op\":\"listMemberships\",\"from\":{\"id\":\"" MALLORY "\\u0000\"}}",
        };
        uint64_t before = members_seq();
        for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++)
                expect_error(co_request(S, MALLORY, bodies[i], NULL, NULL, REQ_MS), NULL, bodies[i]);
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
        Suite *s = suite_create("control_reply_binding");
        TCase *tc = tcase_create("control");
        tcase_add_unchecked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, unbound_reply_targets_get_nothing_anywhere);
        tcase_add_test(tc, the_victims_lane_stays_silent);
        tcase_add_test(tc, spoofed_senders_are_rejected_with_the_exact_text);
        tcase_add_test(tc, bodies_that_are_not_requests_are_refused);
        tcase_add_test(tc, the_daemon_stayed_up_and_its_log_is_clean);
        suite_add_tcase(s, tc);
        return co_run(s);
}
