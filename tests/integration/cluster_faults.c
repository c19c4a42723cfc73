/* cluster_faults: the daemon on a distributed broker (issue 8 item 2): a
 * 3-node nats-server cluster on 127.0.0.1, the space provisioned with
 * --replicas 3, the daemon given all three URLs. Mid-load, one node is
 * SIGKILLed: the one leading INBOX_<S>, then (after the first rejoined)
 * one that does not lead it, preferably CHAT_<S>'s leader. Delivery must
 * continue after the re-election, and afterwards every member's dlv
 * subject holds exactly the expected dedup ids. Prints one line per case
 * with the counts and the recovery time (kill to the first delivery of a
 * message published after the kill). */
#include "cluster.h"
#include "cotal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S "cl"
#define CHAT "CHAT_" S
#define INBOX "INBOX_" S
#define DLV "DLV_" S
#define LEASE_STREAM "KV_cotal_delivery_" S
#define DAVE "UDAVEDAVEDAVEDAVEDAVEDAVEDAVEDAVEDAVEDAVEDAVEDAVEDAVEDAV"
#define NODES 3
#define ROUND 200               /* chat messages per case */
#define KILL_AT (ROUND / 4)     /* the kill comes before this message */
#define PACE_MS 20              /* steady load: one chat message per ~PACE_MS */
#define RECOVERY_MS 60000       /* bound on the wait for the first post-kill delivery */
#define SETTLE_MS 90000         /* bound: a lost ack is redelivered after ack_wait (60 s) */
#define REJOIN_MS 60000         /* a restarted node catching up on every stream */
#define READ_TIMEOUT_MS 2000    /* one read-back request */
#define READ_ATTEMPTS 10        /* per message, across a late election */
#define POLL_MS 50              /* between polls that cost broker requests */
#define CONTRACT_RENEW_MS 15000 /* §9: the daemon renews the lease this often */
/* The lease case kills the bucket's leader this long after a renew, so the
 * next renew meets the election (which takes several seconds). */
#define LEASE_KILL_AFTER_RENEW_MS 13500
#define RENEW_RETRY_LOG "Failed to renew the lease"

static const char *const members[] = {BOB, CAROL, DAVE};
#define K (sizeof members / sizeof *members)
static natsd_cluster cl;
static co_daemon dm;
static uint64_t dlv_expected; /* deliveries in DLV over the cases run so far */
static json_t *space_streams; /* the space's stream names (owned), read in setup */

static void nap_ms(int ms)
{
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
}

/* A JetStream API reply without an error (owned), or NULL when the request
 * failed or was refused: reads made around an election are retried by the
 * caller instead of failing the test (tu_api asserts). */
static json_t *api_try(const char *subject)
{
        natsMsg *reply = NULL;
        if (natsConnection_RequestString(&reply, tu_nc, subject, "", READ_TIMEOUT_MS) != NATS_OK)
                return NULL;
        json_t *j = json_loadb(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply), 0, NULL);
        natsMsg_Destroy(reply);
        if (j && json_object_get(j, "error")) {
                json_decref(j);
                j = NULL;
        }
        return j;
}

/* A stream's state.<field>, or -1 if it cannot be read right now. */
static int64_t stream_state(const char *stream, const char *field)
{
        char subject[256];
        snprintf(subject, sizeof subject, "$JS.API.STREAM.INFO.%s", stream);
        json_t *j = api_try(subject);
        json_t *v = json_object_get(json_object_get(j, "state"), field);
        int64_t n = json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
        json_decref(j);
        return n;
}

/* dlv_state, retried (bounded) for a read that must succeed. */
static uint64_t dlv_state_now(const char *field)
{
        int64_t n = -1;
        for (int a = 0; a < READ_ATTEMPTS && n < 0; a++)
                n = stream_state(DLV, field);
        ck_assert_msg(n >= 0, "cannot read %s state.%s", DLV, field);
        return (uint64_t)n;
}

/* Every stream of the space (5 streams, 5 KV buckets) is R3 with two
 * more replicas placed. */
static void assert_replicated(void)
{
        json_t *names = tu_api("$JS.API.STREAM.NAMES%s%s", "", "", NULL);
        json_t *list = json_object_get(names, "streams");
        space_streams = json_incref(list);
        ck_assert_int_eq(json_array_size(list), 10);
        size_t i;
        json_t *name;
        json_array_foreach (list, i, name) {
                json_t *info = tu_api("$JS.API.STREAM.INFO.%s%s", json_string_value(name), "", NULL);
                json_t *replicas = json_object_get(json_object_get(info, "cluster"), "replicas");
                ck_assert_msg(json_integer_value(json_object_get(json_object_get(info, "config"), "num_replicas")) ==
                                      NODES,
                              "%s is not R%d", json_string_value(name), NODES);
                ck_assert_msg(json_array_size(replicas) == NODES - 1, "%s has %zu replicas besides its leader",
                              json_string_value(name), json_array_size(replicas));
                json_decref(info);
        }
        json_decref(names);
}

static void setup(void)
{
        if (!natsd_available()) {
                fprintf(stderr, "%s not found: skipping\n", natsd_binary());
                exit(NATSD_SKIP);
        }
        int r = cluster_start(&cl, NODES);
        if (r < 0) {
                fprintf(stderr, "cannot start a %d-node cluster: %s\n", NODES, strerror(-r));
                exit(1);
        }
        tu_servers = cl.urls;
        ck_assert(cluster_connect(&cl, &tu_nc) == NATS_OK);
        char *out = NULL, *err = NULL;
        int st = tu_ctl(&out, &err, (const char *[]){"--space", S, "provision", "--replicas", "3", NULL});
        ck_assert_msg(st == 0, "provision --replicas 3: %s", err);
        free(out);
        free(err);
        assert_replicated();
        for (size_t i = 0; i < K; i++) {
                co_acl(S, members[i], "[\"general\"]");
                co_member(S, "general", members[i], 0, 1, -1);
        }
        ck_assert(co_daemon_start(&dm, S, NULL));
}

static void teardown(void)
{
        co_daemon_finish(&dm);
        if (tu_nc) {
                natsConnection_Close(tu_nc);
                natsConnection_Destroy(tu_nc);
                tu_nc = NULL;
        }
        tu_servers = NULL;
        json_decref(space_streams);
        space_streams = NULL;
        cluster_destroy(&cl);
}

/* The index i of a dedup id "<prefix>-<i>:<member>:1", or -1 if id is not
 * one of this case's deliveries to member. */
static int delivery_index(const char *id, const char *prefix, const char *member)
{
        size_t pl = strlen(prefix);
        if (!id || strncmp(id, prefix, pl) != 0 || id[pl] != '-')
                return -1;
        char *end = NULL;
        long i = strtol(id + pl + 1, &end, 10);
        char want[128];
        snprintf(want, sizeof want, ":%s:1", member);
        if (end == id + pl + 1 || strcmp(end, want) != 0 || i < 0 || i >= ROUND)
                return -1;
        return (int)i;
}

static const char *msg_id(natsMsg *m)
{
        const char *id = NULL;
        return natsMsgHeader_Get(m, "Nats-Msg-Id", &id) == NATS_OK ? id : NULL;
}

/* True once some member's latest delivery is of message from_index or
 * later (a read that fails during an election counts as "not yet"). */
static bool delivered_since(jsCtx *js, const char *prefix, int from_index)
{
        for (size_t k = 0; k < K; k++) {
                char subject[256];
                snprintf(subject, sizeof subject, "cotal." S ".dlv.%s", members[k]);
                natsMsg *m = NULL;
                if (js_GetLastMsg(&m, js, DLV, subject, NULL, NULL) != NATS_OK)
                        continue;
                int i = delivery_index(msg_id(m), prefix, members[k]);
                natsMsg_Destroy(m);
                if (i >= from_index)
                        return true;
        }
        return false;
}

typedef struct tally {
        int lost, dup, foreign;
        uint64_t read;
} tally;

/* Reads DLV once, seq by seq, and counts this case's deliveries: for each
 * member and message, missing or more than once; deliveries of the case
 * that are not a member's expected id are foreign. */
static tally count_set(jsCtx *js, const char *prefix)
{
        tally t = {0};
        int(*seen)[ROUND] = calloc(K, sizeof *seen);
        ck_assert_ptr_nonnull(seen);
        uint64_t last = dlv_state_now("last_seq");
        size_t pl = strlen(prefix);
        for (uint64_t seq = 1; seq <= last; seq++) {
                natsMsg *m = NULL;
                natsStatus s = NATS_ERR;
                for (int a = 0; a < READ_ATTEMPTS && s != NATS_OK && s != NATS_NOT_FOUND; a++)
                        s = js_GetMsg(&m, js, DLV, seq, NULL, NULL);
                ck_assert_msg(s == NATS_OK || s == NATS_NOT_FOUND, "cannot read %s seq %llu: %s", DLV,
                              (unsigned long long)seq, natsStatus_GetText(s));
                if (s != NATS_OK)
                        continue;
                t.read++;
                const char *id = msg_id(m), *subject = natsMsg_GetSubject(m);
                if (id && strncmp(id, prefix, pl) == 0 && id[pl] == '-') {
                        int i = -1;
                        size_t k = 0;
                        for (; k < K && i < 0; k++) {
                                char want[256];
                                snprintf(want, sizeof want, "cotal." S ".dlv.%s", members[k]);
                                if (strcmp(subject, want) == 0)
                                        i = delivery_index(id, prefix, members[k]);
                        }
                        if (i < 0)
                                t.foreign++;
                        else if (seen[k - 1][i]++)
                                t.dup++;
                }
                natsMsg_Destroy(m);
        }
        for (size_t k = 0; k < K; k++)
                for (int i = 0; i < ROUND; i++)
                        t.lost += seen[k][i] == 0;
        free(seen);
        return t;
}

/* Both durables have handed everything on: nothing pending, nothing
 * awaiting an ack. */
static bool consumer_idle(const char *stream, const char *durable)
{
        char subject[256];
        snprintf(subject, sizeof subject, "$JS.API.CONSUMER.INFO.%s.%s", stream, durable);
        json_t *j = api_try(subject);
        bool idle = j && json_integer_value(json_object_get(j, "num_pending")) == 0 &&
                    json_integer_value(json_object_get(j, "num_ack_pending")) == 0;
        json_decref(j);
        return idle;
}

static bool settled(void *arg)
{
        (void)arg;
        nap_ms(POLL_MS); /* three API requests per poll: spare the loaded broker */
        return consumer_idle(CHAT, "fanout") && consumer_idle(INBOX, "reader") &&
               stream_state(DLV, "messages") >= (int64_t)dlv_expected;
}

static bool streams_healthy(void)
{
        size_t i;
        json_t *name;
        bool ok = true;
        json_array_foreach (space_streams, i, name) {
                if (!ok)
                        break;
                ok = cluster_wait_stream_healthy(&cl, tu_nc, json_string_value(name), REJOIN_MS);
                if (!ok)
                        fprintf(stderr, "%s: not all replicas current after the restart\n", json_string_value(name));
        }
        return ok;
}

/* Appends name to led if node leads stream. */
static void note_lead(char *led, size_t size, int node, const char *stream)
{
        if (cluster_stream_leader(&cl, tu_nc, stream) == node) {
                size_t len = strlen(led);
                snprintf(led + len, size - len, "%s%s", len ? "," : "", stream);
        }
}

typedef enum { VICTIM_INBOX_LEADER, VICTIM_NOT_INBOX_LEADER, VICTIM_LEASE_LEADER } victim_kind;

static int pick_victim(victim_kind kind)
{
        int inbox = -1, chat = -1;
        int64_t deadline = test_now_ms() + 10000;
        while ((inbox < 0 || chat < 0) && test_now_ms() < deadline) {
                inbox = cluster_stream_leader(&cl, tu_nc, INBOX);
                chat = cluster_stream_leader(&cl, tu_nc, CHAT);
                if (inbox < 0 || chat < 0)
                        nap_ms(100);
        }
        ck_assert_msg(inbox >= 0 && chat >= 0, "no leader for %s or %s", INBOX, CHAT);
        if (kind == VICTIM_INBOX_LEADER)
                return inbox;
        if (kind == VICTIM_LEASE_LEADER) {
                int lease = cluster_stream_leader(&cl, tu_nc, LEASE_STREAM);
                ck_assert_msg(lease >= 0, "no leader for %s", LEASE_STREAM);
                return lease;
        }
        if (chat != inbox)
                return chat;
        return (inbox + 1) % NODES;
}

/* The lease bucket holds only the lease key, so its last sequence is the
 * lease's revision (-1 if it cannot be read right now). */
static int64_t lease_revision(void)
{
        return stream_state(LEASE_STREAM, "last_seq");
}

static bool lease_renewed(void *arg)
{
        nap_ms(POLL_MS); /* a read per POLL_MS is plenty against a 15 s period */
        int64_t rev = *(int64_t *)arg;
        if (rev < 0) {
                *(int64_t *)arg = lease_revision(); /* no base yet */
                return false;
        }
        return lease_revision() > rev;
}

static bool time_reached(void *arg)
{
        return test_now_ms() >= *(int64_t *)arg;
}

static int count_in_log(const char *text)
{
        char *err = proc_stderr(&dm.p);
        int n = 0;
        for (const char *p = strstr(err, text); p; p = strstr(p + 1, text))
                n++;
        free(err);
        return n;
}

static void kill_mid_load(const char *label, const char *prefix, victim_kind kind)
{
        jsCtx *js = NULL;
        jsOptions jo;
        jsOptions_Init(&jo);
        jo.Wait = READ_TIMEOUT_MS;
        ck_assert(natsConnection_JetStream(&js, tu_nc, &jo) == NATS_OK);
        int64_t kill_due = 0;
        int retries_before = count_in_log(RENEW_RETRY_LOG);
        if (kind == VICTIM_LEASE_LEADER) {
                /* Time the kill so the next renew (every 15 s, §9) falls
                 * into the lease bucket's leader election. */
                int64_t rev = lease_revision();
                ck_assert_msg(test_wait_until(lease_renewed, &rev, CONTRACT_RENEW_MS + 10000), "no lease renew seen");
                int64_t start = test_now_ms() + LEASE_KILL_AFTER_RENEW_MS - 1500;
                kill_due = start + 1500;
                (void)test_wait_until(time_reached, &start, LEASE_KILL_AFTER_RENEW_MS);
        }
        int64_t t0 = test_now_ms(), t_kill = 0, t_recovered = 0;
        int victim = -1, kill_at = -1;
        char led[256] = "";
        char id[64];
        for (int i = 0; i < ROUND; i++) {
                if (kill_at < 0 && (kind == VICTIM_LEASE_LEADER ? test_now_ms() >= kill_due : i == KILL_AT)) {
                        kill_at = i;
                        victim = pick_victim(kind);
                        const char *streams[] = {CHAT, INBOX, DLV, LEASE_STREAM};
                        for (size_t s = 0; s < sizeof streams / sizeof *streams; s++)
                                note_lead(led, sizeof led, victim, streams[s]);
                        t_kill = test_now_ms();
                        ck_assert_int_eq(cluster_kill(&cl, victim), 0);
                }
                snprintf(id, sizeof id, "%s-%d", prefix, i);
                co_chat_retrying(S, ALICE, "general", id);
                if (t_kill && !t_recovered && delivered_since(js, prefix, kill_at))
                        t_recovered = test_now_ms();
                nap_ms(PACE_MS);
        }
        ck_assert_msg(kill_at >= 0, "%s: the load ended before the kill was due", label);
        int64_t deadline = test_now_ms() + RECOVERY_MS;
        while (!t_recovered && test_now_ms() < deadline) {
                if (delivered_since(js, prefix, kill_at))
                        t_recovered = test_now_ms();
                else
                        nap_ms(PACE_MS);
        }
        if (proc_wait(&dm.p, 0) != -ETIMEDOUT)
                co_daemon_dump(&dm);
        ck_assert_msg(dm.p.pid > 0, "the daemon exited (status %d) after %s was killed", dm.p.status, cl.name[victim]);
        ck_assert_msg(t_recovered, "no delivery within %d ms of killing %s", RECOVERY_MS, cl.name[victim]);

        dlv_expected += (uint64_t)ROUND * K;
        int64_t t_settle = test_now_ms();
        bool ok = test_wait_until(settled, NULL, SETTLE_MS);
        int64_t settle_ms = test_now_ms() - t_settle;
        tally t = count_set(js, prefix);
        uint64_t total = dlv_state_now("messages");
        printf("cluster_faults: %s: %d messages, %d lost, %d duplicated, recovery %.1f s\n", label, ROUND * (int)K,
               t.lost, t.dup, (double)(t_recovered - t_kill) / 1000.0);
        printf("cluster_faults: %s: killed %s (leading %s) after %.1f s of load; settled %.1f s later; "
               "%d foreign, DLV holds %llu of %llu expected; %d lease renew retries\n",
               label, cl.name[victim], led[0] ? led : "none of CHAT/INBOX/DLV/lease", (double)(t_kill - t0) / 1000.0,
               (double)settle_ms / 1000.0, t.foreign, (unsigned long long)total, (unsigned long long)dlv_expected,
               count_in_log(RENEW_RETRY_LOG) - retries_before);
        fflush(stdout);
        if (!ok || t.lost || t.dup || t.foreign)
                co_daemon_dump(&dm);
        ck_assert_msg(ok, "%s: not settled within %d ms", label, SETTLE_MS);
        ck_assert_msg(t.lost == 0 && t.dup == 0 && t.foreign == 0, "%s: %d lost, %d duplicated, %d foreign", label,
                      t.lost, t.dup, t.foreign);
        ck_assert_msg(total == dlv_expected, "%s: DLV holds %llu messages, want %llu", label, (unsigned long long)total,
                      (unsigned long long)dlv_expected);

        /* The killed node comes back with its store and catches up. */
        int64_t t_restart = test_now_ms();
        ck_assert_int_eq(cluster_restart(&cl, victim), 0);
        ck_assert_msg(streams_healthy(), "%s did not rejoin", cl.name[victim]);
        printf("cluster_faults: %s: %s rejoined, every stream current on all %d nodes %.1f s after its restart\n",
               label, cl.name[victim], NODES, (double)(test_now_ms() - t_restart) / 1000.0);
        fflush(stdout);
        co_daemon_assert_healthy(&dm);
        jsCtx_Destroy(js);
}

START_TEST(inbox_leader_killed_mid_load_loses_nothing)
{
        kill_mid_load("kill-inbox-leader", "ki", VICTIM_INBOX_LEADER);
}
END_TEST

START_TEST(lease_leader_killed_before_a_renew_loses_nothing)
{
        kill_mid_load("kill-lease-leader", "kl", VICTIM_LEASE_LEADER);
}
END_TEST

START_TEST(other_node_killed_mid_load_loses_nothing)
{
        kill_mid_load("kill-other-node", "ko", VICTIM_NOT_INBOX_LEADER);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("cluster_faults");
        TCase *tc = tcase_create("cluster");
        tcase_add_unchecked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 300);
        tcase_add_test(tc, inbox_leader_killed_mid_load_loses_nothing);
        tcase_add_test(tc, other_node_killed_mid_load_loses_nothing);
        tcase_add_test(tc, lease_leader_killed_before_a_renew_loses_nothing);
        suite_add_tcase(s, tc);
        return co_run(s);
}
