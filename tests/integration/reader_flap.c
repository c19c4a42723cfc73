/* reader_flap: research/cnats.md pitfall 12 from the daemon's side. On
 * nats-server 2.9.10 a redelivery that comes due while the consumer's only
 * waiting pull requests have lost their reply interest (the reader's
 * connection just dropped) is lost until the next ack_wait. Case 1 puts one
 * inbox entry in the "delivered, not acked, ack_wait running" state (the
 * test itself fetches it from the reader durable and never acks, like a
 * reader that died), starts a daemon whose reader then delivers one later
 * entry and is otherwise idle,
 * resets the reader's connection (only that one, through a name-aware
 * proxy) 150 ms before the entry's ack_wait (60 s, §3) runs out and keeps
 * it away for a second, and measures when the entry's dlv copy appears:
 * within one ack_wait plus the outage and a little slack of its first
 * delivery, not one ack_wait later. Case 2: entries naked at SIGTERM
 * (§10.4) reach the standby successor at once instead of after ack_wait.
 * Both print their figures. Runs over a minute by nature. */
#include "contract_config.h"
#include "contract_record.h"
#include "contract_subject.h"
#include "cotal.h"
#include "connproxy.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S "rfl"
#define INBOX "INBOX_" S
#define DLV "DLV_" S
#define DINBOX_BOB "cotal." S ".dinbox." BOB
#define DLV_BOB "cotal." S ".dlv." BOB
#define READER_NAME "cotal:delivery-reader"
#define ACK_WAIT_MS 60000 /* §3, Appendix A */
#define CUT_BEFORE_MS 150 /* the reset lands this long before the redelivery */
#define HOLD_MS 1000      /* the reader stays away this long */
/* The copy may come once the reader is back: the outage, a reconnect
 * (cnats waits 250 ms + jitter between attempts) and a fetch. */
#define SLACK_MS (HOLD_MS + 4000)
#define LATE_LIMIT_MS (2 * ACK_WAIT_MS + 20000) /* how long a late copy is waited for, to report it */
#define WAIT_MS 20000
#define NAKED 40 /* entries in case 2, fewer than a reader batch */

static co_daemon dm, standby_dm;
static connproxy *proxy;
static char diag_dir[128];

static void setup(void)
{
        tu_broker_setup();
        co_provision(S);
        co_acl(S, BOB, "[\"general\"]");
        snprintf(diag_dir, sizeof diag_dir, "/tmp/cotal-rfl-XXXXXX");
        ck_assert(mkdtemp(diag_dir));
}

static void teardown(void)
{
        co_daemon_finish(&dm);
        co_daemon_finish(&standby_dm);
        tu_servers = NULL;
        connproxy_stop(proxy);
        proxy = NULL;
        char sock[200];
        snprintf(sock, sizeof sock, "%s/diag.sock", diag_dir);
        unlink(sock);
        rmdir(diag_dir);
        tu_broker_teardown();
}

/* The reader durable exactly as the daemon creates it (§3), so the test
 * can take an entry from it before any daemon runs. */
static void create_reader(void)
{
        contract_names names;
        ck_assert_int_eq(contract_names_init(&names, S, strlen(S)), 0);
        json_t *cfg = contract_reader_config(&names);
        json_t *r = tu_api("$JS.API.CONSUMER.DURABLE.CREATE.%s.%s", INBOX, "reader",
                           json_pack("{s:s, s:o}", "stream_name", INBOX, "config", cfg));
        ck_assert_msg(!json_object_get(r, "error"), "reader durable not created");
        json_decref(r);
        contract_names_fini(&names);
}

/* A live-mention entry for Bob (§5.2), as the fan-out writes it; returns
 * its dedup id (owned). */
static char *put_entry(const char *id)
{
        char chat[512], *entry = NULL;
        size_t len = 0;
        snprintf(chat, sizeof chat,
                 "{\"id\":\"%s\",\"ts\":1,\"from\":{\"id\":\"" ALICE "\",\"name\":\"alice\"},\"channel\":\"general\","
                 "\"parts\":[{\"kind\":\"text\",\"text\":\"hello\"}]}",
                 id);
        ck_assert_int_eq(contract_entry_encode(chat, strlen(chat), "general", 1, REASON_LIVE_MENTION, 1, &entry, &len),
                         0);
        char *dedup = contract_dedup_id(id, BOB, 1);
        co_publish_raw(DINBOX_BOB, dedup, entry, len);
        free(entry);
        return dedup;
}

/* Takes one delivery from the reader durable and never acks it: the
 * entry's ack_wait starts now. Returns the monotonic time of the fetch. */
static int64_t fetch_and_drop(void)
{
        natsMsg *m = NULL;
        const char *req = "{\"batch\":1,\"expires\":5000000000}";
        natsStatus s = natsConnection_Request(&m, tu_nc, "$JS.API.CONSUMER.MSG.NEXT." INBOX ".reader", req,
                                              (int)strlen(req), 5000);
        int64_t at = test_now_ms();
        ck_assert_msg(s == NATS_OK, "no delivery from the reader durable: %s", natsStatus_GetText(s));
        ck_assert_str_eq(natsMsg_GetSubject(m), DINBOX_BOB);
        natsMsg_Destroy(m);
        return at;
}

static bool reached(void *arg)
{
        return test_now_ms() >= *(const int64_t *)arg;
}

static bool has_event(const json_t *doc, const char *event, const char *conn)
{
        size_t i;
        json_t *e;
        json_array_foreach (json_object_get(doc, "connection_events"), i, e)
                if (strcmp(json_string_value(json_object_get(e, "event")), event) == 0 &&
                    json_is_string(json_object_get(e, "connection")) &&
                    strcmp(json_string_value(json_object_get(e, "connection")), conn) == 0)
                        return true;
        return false;
}

START_TEST(reader_reset_just_before_a_redelivery_delays_it_by_the_outage_only)
{
        create_reader();
        char *dedup = put_entry("flap-0");
        int64_t first = fetch_and_drop();

        /* A daemon whose every connection goes through the proxy. */
        proxy = connproxy_start(tu_broker.port);
        ck_assert(proxy);
        tu_servers = connproxy_url(proxy);
        char sock[200];
        snprintf(sock, sizeof sock, "%s/diag.sock", diag_dir);
        const char *extra[] = {"--diag-socket", sock, NULL};
        ck_assert_msg(co_daemon_start(&dm, S, extra), "daemon did not become ready");
        ck_assert_int_eq(connproxy_count(proxy, READER_NAME), 1);
        ck_assert_int_eq(co_count_id(DLV, DLV_BOB, dedup), 0); /* still owed */
        /* A later entry the daemon delivers at once: the one the consumer
         * delivered last is then not the owed one. (When it is, 2.9.10's
         * cursor rewind happens to resend the very entry it lost.) */
        char *later = put_entry("flap-1");
        ck_assert(co_wait_id(DLV, DLV_BOB, later, WAIT_MS));
        free(later);

        int64_t cut_at = first + ACK_WAIT_MS - CUT_BEFORE_MS;
        ck_assert(test_wait_until(reached, &cut_at, ACK_WAIT_MS + 1000));
        ck_assert_int_eq(co_count_id(DLV, DLV_BOB, dedup), 0);
        int64_t cut = test_now_ms();
        ck_assert_int_eq(connproxy_cut(proxy, READER_NAME, HOLD_MS), 1);

        bool came = co_wait_id(DLV, DLV_BOB, dedup, first + LATE_LIMIT_MS - test_now_ms());
        int64_t got = test_now_ms();
        int64_t back = connproxy_admitted_ms(proxy, READER_NAME);
        fprintf(stderr,
                "reader_flap: reader reset %lld ms before ack_wait ran out, back %lld ms after the reset; the "
                "entry's dlv copy came %lld ms after its first delivery (ack_wait %d ms)%s\n",
                (long long)(first + ACK_WAIT_MS - cut), (long long)(back - cut), (long long)(got - first), ACK_WAIT_MS,
                came ? "" : ": never");
        char *log = proc_stderr(&dm.p);
        const char *swept = strstr(log, "Cleared the reader connection's pull requests");
        fprintf(stderr, "reader_flap: daemon: %.*s\n", swept ? (int)strcspn(swept, "\n") : 9,
                swept ? swept : "no sweep");
        free(log);
        ck_assert_msg(came, "the entry never reached dlv");
        ck_assert_msg(got - first <= ACK_WAIT_MS + SLACK_MS,
                      "the entry came %lld ms after its first delivery: more than one ack_wait (%d ms) + %d ms",
                      (long long)(got - first), ACK_WAIT_MS, SLACK_MS);
        ck_assert_int_eq(co_count_id(DLV, DLV_BOB, dedup), 1);

        /* The flap is visible: a log line and diagnostics naming the
         * reader's connection; the main one never dropped. */
        ck_assert(co_daemon_logged_within(&dm, "reader connection disconnected from the broker", WAIT_MS));
        ck_assert(co_daemon_logged_within(&dm, "(reader connection)", WAIT_MS));
        json_t *doc = co_diag(sock, NULL);
        ck_assert(has_event(doc, "disconnect", "reader"));
        ck_assert(has_event(doc, "reconnect", "reader"));
        ck_assert(!has_event(doc, "disconnect", "main"));
        json_t *links = json_object_get(doc, "links");
        ck_assert_int_ge(json_integer_value(json_object_get(json_object_get(links, "reader"), "reconnects")), 1);
        ck_assert(json_is_true(json_object_get(json_object_get(links, "reader"), "connected")));
        ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(links, "main"), "reconnects")), 0);
        ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(doc, "link"), "reconnects")), 0);
        json_decref(doc);
        co_daemon_assert_healthy(&dm);
        free(dedup);
}
END_TEST

typedef struct all_ctx {
        char **ids;
        int n, have;
} all_ctx;

static bool all_delivered(void *arg)
{
        all_ctx *c = arg;
        co_msg *m = NULL;
        size_t got = co_msgs_on(DLV, DLV_BOB, &m);
        c->have = 0;
        for (int i = 0; i < c->n; i++)
                for (size_t k = 0; k < got; k++)
                        if (m[k].msg_id && strcmp(m[k].msg_id, c->ids[i]) == 0) {
                                c->have++;
                                break;
                        }
        co_msgs_free(m, got);
        return c->have == c->n;
}

START_TEST(entries_naked_at_sigterm_reach_the_successor_at_once)
{
        ck_assert_msg(co_daemon_start(&dm, S, NULL), "holder did not become ready");
        const char *standby[] = {"--standby", NULL};
        co_daemon_spawn(&standby_dm, S, standby, NULL);
        ck_assert(co_daemon_logged_within(&standby_dm, "Standing by", WAIT_MS));

        /* The holder's reader gets a whole batch at once (stopped while it
         * is written), handles the first entry, and is told to stop right
         * then: the rest of the batch is naked (§10.4) while its pull
         * request, asked for a full batch, is still open. */
        ck_assert_int_eq(kill(dm.p.pid, SIGSTOP), 0);
        char *ids[NAKED];
        for (int i = 0; i < NAKED; i++) {
                char id[32];
                snprintf(id, sizeof id, "term-%d", i);
                ids[i] = put_entry(id);
        }
        co_freezer f;
        co_signal_at_first(&f, dm.p.pid, SIGTERM, DLV_BOB);
        ck_assert_int_eq(kill(dm.p.pid, SIGCONT), 0);
        ck_assert(co_frozen_within(&f, WAIT_MS));
        int64_t term = test_now_ms();
        ck_assert_int_eq(proc_wait(&dm.p, 15000), 0);
        ck_assert_int_eq(dm.p.status, 0);

        all_ctx c = {.ids = ids, .n = NAKED};
        bool done = test_wait_until(all_delivered, &c, 2 * ACK_WAIT_MS + 20000);
        int64_t took = test_now_ms() - term;
        fprintf(stderr, "reader_flap: %d entries, SIGTERM after the first transfer; all %d in dlv %lld ms later%s\n",
                NAKED, c.have, (long long)took, done ? "" : " (not all)");
        ck_assert_msg(done, "%d of %d entries reached dlv", c.have, NAKED);
        ck_assert_msg(took < ACK_WAIT_MS / 2, "the successor got the naked entries only after %lld ms",
                      (long long)took);
        for (int i = 0; i < NAKED; i++) {
                ck_assert_int_eq(co_count_id(DLV, DLV_BOB, ids[i]), 1);
                free(ids[i]);
        }
        co_daemon_assert_healthy(&standby_dm);
}
END_TEST

int main(void)
{
        /* Two cases (CK_RUN_CASE=flap or sigterm runs one). */
        Suite *s = suite_create("reader_flap");
        TCase *flap = tcase_create("flap");
        tcase_add_checked_fixture(flap, setup, teardown);
        tcase_set_timeout(flap, 300);
        tcase_add_test(flap, reader_reset_just_before_a_redelivery_delays_it_by_the_outage_only);
        suite_add_tcase(s, flap);
        TCase *term = tcase_create("sigterm");
        tcase_add_checked_fixture(term, setup, teardown);
        tcase_set_timeout(term, 300);
        tcase_add_test(term, entries_naked_at_sigterm_reach_the_successor_at_once);
        suite_add_tcase(s, term);
        return co_run(s);
}
