/* daemon_confined: least privilege as in production (issue 8 item 4). An
 * operator-mode broker (PROTOCOL §11.1, max_control_line 65536); the
 * daemon runs on a user JWT holding exactly the §11.3 `delivery` grants,
 * the agents on §11.4 `agent` JWTs, and chat, ACL rows and fixtures come
 * from a separate unrestricted admin user, as §13 prescribes. Under that
 * confinement the daemon's whole behaviour works: the lease (items 1-4),
 * joins, lists and leaves asked on each agent's own reply subject (8-10,
 * 39-43), catch-up on join, fan-out and reader into dlv (exact sets), a
 * live @mention, reply binding (33-34), ACL revocation, a broker restart
 * (11-15, 57: every subscription and watch comes back within the same
 * grants), and a --standby
 * daemon on its own delivery identity taking over on SIGTERM — with no
 * permission violation by any daemon (neither in its log nor in the
 * server's). Then the grants themselves, items 16-32, against a second
 * space where no daemon runs: a denial is observed as the server's
 * "Permissions Violation" naming the subject plus the missing effect, an
 * allowance as the effect (message stored, record written, message
 * received). */
#include "cotal.h"
#include "profiles.h"

#include "broker.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define S "cf" /* the space the daemons serve */
#define Q "cq" /* the space of the grant checks: no daemon */
#define CHAT "CHAT_" S
#define INBOX "INBOX_" S
#define DLV "DLV_" S
#define LEASE_BUCKET "cotal_delivery_" S
#define WAIT_MS 20000
#define REQ_MS 10000
#define QUIET_MS 1000  /* how long "nothing arrives" is watched for */
#define DENIAL_MS 5000 /* a violation is reported within this */
#define MAX_DENIALS 64

/* Asynchronous permission violations one connection was told about. */
typedef struct denials {
        pthread_mutex_t lock;
        char text[MAX_DENIALS][320];
        int n;
} denials;

typedef struct agent {
        const char *name;
        jwt_key key;
        char creds[320];
        natsConnection *nc;
        denials seen;
} agent;

static jwt_chain chain;
static jwt_key admin_key, d1_key, d2_key;
static char admin_creds[320], d1_creds[320], d2_creds[320];
static co_daemon d1, d2;
static agent alice = {.name = "alice"}, bob = {.name = "bob"}, carol = {.name = "carol"}, mallory = {.name = "mallory"};

/* cnats' error callback (its thread): the text of this very error is the
 * thread's last error while the callback runs. */
static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *arg)
{
        (void)nc;
        (void)sub;
        denials *d = arg;
        if (err != NATS_NOT_PERMITTED)
                return;
        const char *text = nats_GetLastError(NULL);
        pthread_mutex_lock(&d->lock);
        if (d->n < MAX_DENIALS)
                snprintf(d->text[d->n++], sizeof d->text[0], "%s", text ? text : "");
        pthread_mutex_unlock(&d->lock);
}

typedef struct denial_wait {
        denials *d;
        char want[300];
} denial_wait;

static bool has_denial(void *arg)
{
        denial_wait *w = arg;
        bool found = false;
        pthread_mutex_lock(&w->d->lock);
        for (int i = 0; i < w->d->n && !found; i++)
                found = strstr(w->d->text[i], "Permissions Violation for ") && strstr(w->d->text[i], w->want);
        pthread_mutex_unlock(&w->d->lock);
        return found;
}

/* Waits for "Permissions Violation for <what> \"<subject>\"". */
static bool denied_within(denials *d, const char *what, const char *subject, int64_t timeout_ms)
{
        denial_wait w = {.d = d};
        snprintf(w.want, sizeof w.want, "%s \"%s\"", what, subject);
        return test_wait_until(has_denial, &w, timeout_ms);
}

static void make_creds(char *path, size_t size, const char *file, const jwt_key *key, const char *profile_name,
                       const profile *p)
{
        int n = snprintf(path, size, "%.200s/%s", tu_broker.dir, file);
        ck_assert(n > 0 && (size_t)n < size);
        ck_assert(profile_write_creds(path, &chain.app, key, profile_name, p));
}

static void delivery_creds(char *path, size_t size, const char *file, const char *space, const jwt_key *key)
{
        profile p;
        profile_delivery(&p, space, key->pub);
        make_creds(path, size, file, key, "delivery", &p);
        profile_fini(&p);
}

static void agent_connect(agent *a, const char *space, const char *const *allow_subscribe)
{
        char file[64];
        profile p;
        pthread_mutex_init(&a->seen.lock, NULL);
        ck_assert(jwt_key_new(&a->key, 'U'));
        profile_agent(&p, space, a->key.pub, allow_subscribe, NULL, NULL, false);
        snprintf(file, sizeof file, "agent-%s.creds", a->name);
        make_creds(a->creds, sizeof a->creds, file, &a->key, "agent", &p);
        profile_fini(&p);
        ck_assert_int_eq(profile_connect(&a->nc, a->creds, a->key.pub, on_async_error, &a->seen), NATS_OK);
}

static void agent_close(agent *a)
{
        if (a->nc) {
                natsConnection_Close(a->nc);
                natsConnection_Destroy(a->nc);
                a->nc = NULL;
        }
}

/* The agent's own presence record, written on its own connection. */
static void agent_presence(agent *a)
{
        char subject[256], body[512];
        snprintf(subject, sizeof subject, "$KV.cotal_presence_" S ".%s", a->key.pub);
        snprintf(body, sizeof body,
                 "{\"card\":{\"id\":\"%s\",\"name\":\"%s\",\"kind\":\"agent\"},\"status\":\"idle\",\"ts\":1}",
                 a->key.pub, a->name);
        natsMsg *reply = NULL;
        natsStatus s = natsConnection_RequestString(&reply, a->nc, subject, body, REQ_MS);
        ck_assert_msg(s == NATS_OK, "%s's presence write: %s", a->name, natsStatus_GetText(s));
        ck_assert_msg(strstr(natsMsg_GetData(reply), "\"seq\""), "%s's presence write: %s", a->name,
                      natsMsg_GetData(reply));
        natsMsg_Destroy(reply);
}

/* §12: a request on the agent's own ctl.delivery subject, answered on
 * its own reply subject (subscribed first). The reply, or NULL. */
static json_t *agent_request(agent *a, const char *op, const char *args)
{
        char subject[256], reply[320], body[1024];
        snprintf(subject, sizeof subject, "cotal." S ".ctl.delivery.%s", a->key.pub);
        char *uniq = broker_unique_subject(subject, "reply");
        snprintf(reply, sizeof reply, "%s", uniq);
        free(uniq);
        snprintf(body, sizeof body, "{\"op\":\"%s\"%s%s,\"from\":{\"id\":\"%s\",\"name\":\"%s\"}}", op,
                 args ? ",\"args\":" : "", args ? args : "", a->key.pub, a->name);
        natsSubscription *sub = NULL;
        ck_assert(natsConnection_SubscribeSync(&sub, a->nc, reply) == NATS_OK);
        ck_assert(natsConnection_PublishRequestString(a->nc, subject, reply, body) == NATS_OK);
        ck_assert(natsConnection_Flush(a->nc) == NATS_OK);
        natsMsg *m = NULL;
        json_t *j = NULL;
        if (natsSubscription_NextMsg(&m, sub, REQ_MS) == NATS_OK) {
                j = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
                natsMsg_Destroy(m);
        }
        broker_sub_close(a->nc, &sub);
        return j;
}

static int64_t join(agent *a, const char *channel)
{
        char args[256];
        snprintf(args, sizeof args, "{\"channel\":\"%s\"}", channel);
        json_t *r = agent_request(a, "durableJoin", args);
        char *text = co_json_text(r);
        json_t *data = json_object_get(r, "data");
        ck_assert_msg(json_is_true(json_object_get(r, "ok")) && json_is_true(json_object_get(data, "durable")),
                      "%s's join of %s: %s", a->name, channel, text);
        int64_t gen = json_integer_value(json_object_get(data, "generation"));
        free(text);
        json_decref(r);
        return gen;
}

static char *dlv_subject(const agent *a)
{
        char *s = NULL;
        ck_assert(asprintf(&s, "cotal." S ".dlv.%s", a->key.pub) > 0);
        return s;
}

typedef struct prefix_wait {
        const char *subject, *prefix;
        int want;
} prefix_wait;

/* How many of subject's messages carry a dedup id "<prefix>-…". */
static int count_prefix(const char *subject, const char *prefix)
{
        co_msg *m = NULL;
        size_t got = co_msgs_on(DLV, subject, &m);
        int c = 0;
        for (size_t k = 0; k < got; k++)
                c += m[k].msg_id && strncmp(m[k].msg_id, prefix, strlen(prefix)) == 0 &&
                     m[k].msg_id[strlen(prefix)] == '-';
        co_msgs_free(m, got);
        return c;
}

static bool prefix_reached(void *arg)
{
        prefix_wait *w = arg;
        return count_prefix(w->subject, w->prefix) >= w->want;
}

/* a's dlv copies with ids "<prefix>-…" are exactly "<prefix>-<i>:<owner>:<gen>"
 * for i in want[0..n), once each. */
static void assert_dlv_exact(const agent *a, const char *prefix, const int *want, int n, int64_t gen)
{
        char *subject = dlv_subject(a);
        prefix_wait w = {subject, prefix, n};
        (void)test_wait_until(prefix_reached, &w, WAIT_MS);
        co_msg *m = NULL;
        size_t got = co_msgs_on(DLV, subject, &m);
        for (int i = 0; i < n; i++) {
                char id[256];
                snprintf(id, sizeof id, "%s-%d:%s:%lld", prefix, want[i], a->key.pub, (long long)gen);
                int c = 0;
                for (size_t k = 0; k < got; k++)
                        c += m[k].msg_id && strcmp(m[k].msg_id, id) == 0;
                ck_assert_msg(c == 1, "%s: %s delivered %d times", a->name, id, c);
        }
        co_msgs_free(m, got);
        int have = count_prefix(subject, prefix);
        ck_assert_msg(have == n, "%s has %d dlv copies \"%s-…\", want %d", a->name, have, prefix, n);
        free(subject);
}

static uint64_t dlv_count(const agent *a)
{
        char *subject = dlv_subject(a);
        uint64_t n = co_messages(DLV, subject);
        free(subject);
        return n;
}

/* Everything published so far went through both loops: the fan-out acked
 * the chat, the reader acked every inbox entry. */
static void settle(void)
{
        ck_assert(co_wait_acked(CHAT, "fanout", co_last_seq(CHAT), WAIT_MS));
        ck_assert(co_wait_acked(INBOX, "reader", co_last_seq(INBOX), WAIT_MS));
}

static uint64_t chat(const agent *from, const char *channel, const char *prefix, int i, const char *extra)
{
        char id[64];
        snprintf(id, sizeof id, "%s-%d", prefix, i);
        return co_chat(S, from->key.pub, channel, id, extra);
}

static void setup(void)
{
        char *chain_conf = jwt_chain_conf(&chain), *conf = NULL;
        ck_assert_ptr_nonnull(chain_conf);
        /* §11.1: agent JWTs exceed the 4 KB default control line. */
        ck_assert(asprintf(&conf, "max_control_line: 65536\n%s", chain_conf) > 0);
        free(chain_conf);
        tu_broker_setup_conf(conf);
        free(conf);

        ck_assert(jwt_key_new(&admin_key, 'U') && jwt_key_new(&d1_key, 'U') && jwt_key_new(&d2_key, 'U'));
        char *admin_jwt = jwt_user(&chain.app, &admin_key, "admin", NULL);
        snprintf(admin_creds, sizeof admin_creds, "%.200s/admin.creds", tu_broker.dir);
        ck_assert_int_eq(jwt_write_creds(admin_creds, admin_jwt, &admin_key), 0);
        free(admin_jwt);
        ck_assert_int_eq(tu_connect_creds(&tu_nc, admin_creds, NULL, NULL), NATS_OK);
        tu_ctl_creds = admin_creds;
        co_provision(S);
        co_provision(Q);

        agent_connect(&alice, S, (const char *const[]){"general", NULL});
        agent_connect(&bob, S, (const char *const[]){"general", "review", "lounge", NULL});
        agent_connect(&carol, S, (const char *const[]){"general", "hist", NULL});
        agent_connect(&mallory, S, (const char *const[]){"general", NULL});
        /* The provisioner's ACL rows (§11.2); Mallory has none. */
        co_acl(S, alice.key.pub, "[\"general\"]");
        co_acl(S, bob.key.pub, "[\"general\",\"review\",\"lounge\"]");
        co_acl(S, carol.key.pub, "[\"general\",\"hist\"]");
        tu_kv_put("cotal_channels_" S, "lounge", "{\"deliveryClass\":\"live\"}");
        agent_presence(&bob);
        agent_presence(&carol);

        delivery_creds(d1_creds, sizeof d1_creds, "delivery-1.creds", S, &d1_key);
        delivery_creds(d2_creds, sizeof d2_creds, "delivery-2.creds", S, &d2_key);
        co_daemon_spawn_creds(&d1, S, d1_creds, NULL, NULL);
        ck_assert_msg(co_daemon_wait_ready(&d1, DAEMON_READY_TIMEOUT_MS) && d1.p.pid > 0, "daemon 1 not ready");
}

static void teardown(void)
{
        co_daemon_finish(&d1);
        co_daemon_finish(&d2);
        agent_close(&alice);
        agent_close(&bob);
        agent_close(&carol);
        agent_close(&mallory);
        tu_ctl_creds = NULL;
        tu_broker_teardown();
}

static bool lease_held_ready_by(const char *holder)
{
        json_t *v = co_kv_value(LEASE_BUCKET, "lease.0", NULL);
        const char *h = json_string_value(json_object_get(v, "holder"));
        bool ok = h && strcmp(h, holder) == 0 && json_is_true(json_object_get(v, "ready"));
        json_decref(v);
        return ok;
}

static bool d2_holds(void *arg)
{
        (void)arg;
        return lease_held_ready_by(d2_key.pub);
}

START_TEST(items_1_2_4_lease_held_and_ready_under_the_delivery_profile)
{
        /* <D> is the public key of the creds' seed (§10.2 step 3). */
        ck_assert_str_eq(d1.id, d1_key.pub);
        uint64_t rev = 0;
        json_t *v = co_kv_value(LEASE_BUCKET, "lease.0", &rev);
        char *text = co_json_text(v);
        ck_assert_msg(lease_held_ready_by(d1_key.pub) && rev > 0, "lease.0: %s", text);
        free(text);
        json_decref(v);

        /* Item 2: another delivery identity cannot acquire it (exit 1),
         * and writes nothing. */
        co_daemon other;
        co_daemon_spawn_creds(&other, S, d2_creds, NULL, NULL);
        ck_assert_int_eq(proc_wait(&other.p, WAIT_MS), 0);
        ck_assert_int_eq(other.p.status, 1);
        char *err = proc_stderr(&other.p);
        ck_assert_msg(strstr(err, "a live lease already exists"), "%.2000s", err);
        ck_assert_msg(!strstr(err, "Permission") && !strstr(err, "permission"), "%.2000s", err);
        free(err);
        proc_destroy(&other.p);
        ck_assert(lease_held_ready_by(d1_key.pub));
}
END_TEST

START_TEST(items_8_39_42_join_list_and_deliver_exactly_under_confinement)
{
        int64_t gen = join(&bob, "review");
        ck_assert_int_eq(gen, 1);
        /* The observability view (§8.7): activated, no leave cursor. */
        json_t *rec = co_member_record(S, "review", bob.key.pub);
        ck_assert_msg(rec && json_is_true(json_object_get(rec, "activated")) && !json_object_get(rec, "leaveCursor"),
                      "review/bob not activated");
        ck_assert_str_eq(json_string_value(json_object_get(rec, "writerIdentity")), d1_key.pub);
        json_decref(rec);

        json_t *r = agent_request(&bob, "listMemberships", NULL);
        char *text = co_json_text(r);
        json_t *ms = json_object_get(json_object_get(r, "data"), "memberships");
        ck_assert_msg(json_is_true(json_object_get(r, "ok")) && json_array_size(ms) == 1, "list: %s", text);
        json_t *m0 = json_array_get(ms, 0);
        ck_assert_msg(strcmp(json_string_value(json_object_get(m0, "channel")), "review") == 0 &&
                              json_integer_value(json_object_get(m0, "generation")) == 1 &&
                              json_is_true(json_object_get(m0, "activated")),
                      "list: %s", text);
        free(text);
        json_decref(r);

        /* Fan-out + reader: Alice's posts reach Bob once each; Bob's own
         * post and a post on a channel he is not a member of do not. */
        for (int i = 0; i < 3; i++)
                chat(&alice, "review", "rv", i, NULL);
        chat(&bob, "review", "rv", 3, NULL);
        chat(&alice, "general", "rv", 4, NULL);
        chat(&alice, "review", "rv", 5, NULL);
        settle();
        assert_dlv_exact(&bob, "rv", (const int[]){0, 1, 2, 5}, 4, 1);
        ck_assert_uint_eq(dlv_count(&bob), 4);
        ck_assert_uint_eq(dlv_count(&alice), 0);
}
END_TEST

START_TEST(catch_up_on_join_copies_the_window_the_fanout_never_routed)
{
        /* Posts on "hist" before any record: the fan-out acks them with no
         * copy. Then a pending record (a daemon died mid-join, §8.6) with
         * its cursor before them: Carol's join catches the window up. */
        uint64_t cursor = co_last_seq(CHAT);
        for (int i = 0; i < 3; i++)
                chat(&alice, "hist", "h", i, NULL);
        settle();
        ck_assert_uint_eq(dlv_count(&carol), 0);
        char key[256], value[1024];
        snprintf(key, sizeof key, "hist/%s", carol.key.pub);
        snprintf(value, sizeof value,
                 "{\"channel\":\"hist\",\"owner\":\"%s\",\"state\":\"durable-active\",\"joinCursor\":%llu,"
                 "\"generation\":1,\"activated\":false,\"writerIdentity\":\"UDEADDAEMON\",\"updatedAt\":1}",
                 carol.key.pub, (unsigned long long)cursor);
        tu_kv_put("cotal_members_" S, key, value);
        ck_assert_int_eq(join(&carol, "hist"), 1);
        assert_dlv_exact(&carol, "h", (const int[]){0, 1, 2}, 3, 1);
        chat(&alice, "hist", "h", 3, NULL);
        assert_dlv_exact(&carol, "h", (const int[]){0, 1, 2, 3}, 4, 1);
        ck_assert_uint_eq(dlv_count(&carol), 4);
}
END_TEST

START_TEST(a_live_mention_reaches_only_an_acl_covered_agent)
{
        /* "lounge" is live-class: only @mentions are backstopped, and only
         * for an owner whose ACL covers the channel (§6.3). */
        uint64_t carol_before = dlv_count(&carol), bob_before = dlv_count(&bob);
        chat(&alice, "lounge", "mention", 0, "\"mentions\":[\"bob\",\"carol\"]");
        chat(&alice, "lounge", "mention", 1, NULL);
        settle();
        char *subject = dlv_subject(&bob);
        char id[256];
        snprintf(id, sizeof id, "mention-0:%s:0", bob.key.pub);
        ck_assert(co_wait_id(DLV, subject, id, WAIT_MS));
        ck_assert_int_eq(co_count_id(DLV, subject, id), 1);
        free(subject);
        ck_assert_uint_eq(dlv_count(&bob), bob_before + 1);
        ck_assert_uint_eq(dlv_count(&carol), carol_before);
}
END_TEST

START_TEST(items_33_34_replies_only_on_the_senders_own_subtree)
{
        /* Mallory aims a request at Bob's reply lane: nothing anywhere. */
        natsSubscription *lanes = NULL;
        ck_assert(natsConnection_SubscribeSync(&lanes, tu_nc, "cotal." S ".ctl.delivery.*.reply.>") == NATS_OK);
        ck_assert(natsConnection_Flush(tu_nc) == NATS_OK);
        char subject[256], reply[320];
        snprintf(subject, sizeof subject, "cotal." S ".ctl.delivery.%s", mallory.key.pub);
        snprintf(reply, sizeof reply, "cotal." S ".ctl.delivery.%s.reply.stolen", bob.key.pub);
        char body[512];
        snprintf(body, sizeof body, "{\"op\":\"listMemberships\",\"from\":{\"id\":\"%s\"}}", mallory.key.pub);
        ck_assert(natsConnection_PublishRequestString(mallory.nc, subject, reply, body) == NATS_OK);
        ck_assert(natsConnection_Flush(mallory.nc) == NATS_OK);
        char logged[1024];
        snprintf(logged, sizeof logged, "rejected delivery request on %s: reply target \"%s\"", subject, reply);
        ck_assert_msg(co_daemon_logged_within(&d1, logged, WAIT_MS), "no rejection logged");

        /* Item 34: on her own subtree she is answered (ok:false, no ACL). */
        json_t *r = agent_request(&mallory, "durableJoin", "{\"channel\":\"general\"}");
        char want[300];
        snprintf(want, sizeof want, "durableJoin: no read ACL on record for %s (not provisioned for durable delivery)",
                 mallory.key.pub);
        char *text = co_json_text(r);
        ck_assert_msg(r && json_is_false(json_object_get(r, "ok")) &&
                              strcmp(json_string_value(json_object_get(r, "error")), want) == 0,
                      "mallory's own lane: %s", text);
        free(text);
        json_decref(r);
        /* The spy saw exactly that one reply (the rejected request came
         * first: requests are handled in order). */
        natsMsg *m = NULL;
        int replies = 0, to_bob = 0;
        while (natsSubscription_NextMsg(&m, lanes, QUIET_MS) == NATS_OK) {
                replies++;
                to_bob += strstr(natsMsg_GetSubject(m), bob.key.pub) != NULL;
                natsMsg_Destroy(m);
        }
        ck_assert_int_eq(to_bob, 0);
        ck_assert_int_eq(replies, 1);
        broker_sub_close(tu_nc, &lanes);
}
END_TEST

START_TEST(items_9_10_revoked_acl_stops_delivery_and_leave_still_works)
{
        /* The ACL row loses "review": the reader drops new entries, a
         * join is refused (9), the leave with the generation works (10). */
        uint64_t before = dlv_count(&bob);
        co_acl(S, bob.key.pub, "[\"general\",\"lounge\"]");
        chat(&alice, "review", "rv", 10, NULL);
        settle();
        ck_assert_uint_eq(dlv_count(&bob), before);
        json_t *r = agent_request(&bob, "durableJoin", "{\"channel\":\"review\"}");
        char *text = co_json_text(r);
        ck_assert_msg(r && json_is_false(json_object_get(r, "ok")), "join after revocation: %s", text);
        free(text);
        json_decref(r);
        r = agent_request(&bob, "durableLeave", "{\"channel\":\"review\",\"generation\":1}");
        text = co_json_text(r);
        ck_assert_msg(r && json_is_true(json_object_get(r, "ok")), "leave after revocation: %s", text);
        free(text);
        json_decref(r);
        json_t *rec = co_member_record(S, "review", bob.key.pub);
        ck_assert_msg(rec && json_object_get(rec, "leaveCursor"), "review/bob is not a tombstone");
        json_decref(rec);
        /* Restoring the ACL does not resurrect the left membership. */
        co_acl(S, bob.key.pub, "[\"general\",\"review\",\"lounge\"]");
        chat(&alice, "review", "rv", 11, NULL);
        settle();
        ck_assert_uint_eq(dlv_count(&bob), before);
}
END_TEST

static bool all_reconnected(void *arg)
{
        (void)arg;
        natsConnection *all[] = {tu_nc, alice.nc, bob.nc};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++)
                if (natsConnection_Status(all[i]) != NATS_CONN_STATUS_CONNECTED)
                        return false;
        /* JetStream answers again (the stream is back). */
        natsMsg *reply = NULL;
        bool up = natsConnection_RequestString(&reply, tu_nc, "$JS.API.STREAM.INFO." CHAT, "", 1000) == NATS_OK &&
                  strstr(natsMsg_GetData(reply), "\"error\"") == NULL;
        natsMsg_Destroy(reply);
        return up;
}

START_TEST(items_11_to_15_57_the_confined_daemon_recovers_from_a_broker_restart)
{
        /* Every subscription, watch and durable comes back on the same
         * grants: nothing needs more than §11.3 after a reconnect. */
        ck_assert_int_eq(natsd_restart(&tu_broker), 0);
        ck_assert_msg(co_daemon_logged_within(&d1, "(main connection)", WAIT_MS), "daemon 1 did not reconnect");
        ck_assert_msg(test_wait_until(all_reconnected, NULL, WAIT_MS), "the test's connections did not reconnect");
        ck_assert_int_eq(join(&bob, "general"), 1);               /* 12 */
        json_t *r = agent_request(&bob, "listMemberships", NULL); /* 13 */
        json_t *ms = json_object_get(json_object_get(r, "data"), "memberships");
        char *text = co_json_text(r);
        ck_assert_msg(json_array_size(ms) == 1 &&
                              strcmp(json_string_value(json_object_get(json_array_get(ms, 0), "channel")), "general") ==
                                      0,
                      "list after the restart: %s", text);
        free(text);
        json_decref(r);
        chat(&alice, "general", "rs", 0, NULL); /* 57 */
        assert_dlv_exact(&bob, "rs", (const int[]){0}, 1, 1);
        ck_assert(lease_held_ready_by(d1_key.pub));                                            /* 15 */
        r = agent_request(&bob, "durableLeave", "{\"channel\":\"general\",\"generation\":1}"); /* 14 */
        text = co_json_text(r);
        ck_assert_msg(r && json_is_true(json_object_get(r, "ok")), "leave after the restart: %s", text);
        free(text);
        json_decref(r);
}
END_TEST

START_TEST(item_5_standby_on_its_own_delivery_identity_takes_over_on_sigterm)
{
        co_daemon_spawn_creds(&d2, S, d2_creds, (const char *const[]){"--standby", NULL}, NULL);
        ck_assert_msg(co_daemon_logged_within(&d2, "Standing by", WAIT_MS), "daemon 2 did not stand by");
        ck_assert(lease_held_ready_by(d1_key.pub));

        ck_assert_int_eq(proc_signal(&d1.p, SIGTERM), 0);
        ck_assert_int_eq(proc_wait(&d1.p, WAIT_MS), 0);
        ck_assert_int_eq(d1.p.status, 0);
        ck_assert_msg(co_daemon_wait_ready(&d2, WAIT_MS) && test_wait_until(d2_holds, NULL, WAIT_MS),
                      "daemon 2 did not take over");
        ck_assert_str_eq(d2.id, d2_key.pub);

        /* Daemon 2 delivers to the existing member and serves joins. */
        chat(&alice, "hist", "h", 4, NULL);
        assert_dlv_exact(&carol, "h", (const int[]){0, 1, 2, 3, 4}, 5, 1);
        ck_assert_int_eq(join(&alice, "general"), 1);
        chat(&bob, "general", "g", 0, NULL);
        assert_dlv_exact(&alice, "g", (const int[]){0}, 1, 1);
}
END_TEST

START_TEST(a_group_readable_creds_file_is_refused_on_reload)
{
        /* creds.c's mode check also guards SIGHUP: the daemon says why and
         * keeps the last good creds. */
        ck_assert_int_eq(chmod(d2_creds, 0640), 0);
        ck_assert_int_eq(proc_signal(&d2.p, SIGHUP), 0);
        ck_assert_msg(co_daemon_logged_within(&d2, "readable by group or others (mode 0640)", WAIT_MS),
                      "no refusal logged");
        char *err = proc_stderr(&d2.p);
        ck_assert_msg(strstr(err, "Rejected the creds file on reload: refusing creds "), "%.2000s", err);
        free(err);
        ck_assert_int_eq(chmod(d2_creds, 0600), 0);
        chat(&alice, "hist", "h", 5, NULL);
        assert_dlv_exact(&carol, "h", (const int[]){0, 1, 2, 3, 4, 5}, 6, 1);
}
END_TEST

/* Lines of the server log naming user id with a violation. */
static int server_violations_by(const char *id)
{
        FILE *f = fopen(tu_broker.log, "r");
        ck_assert_ptr_nonnull(f);
        char line[4096];
        int n = 0;
        while (fgets(line, sizeof line, f))
                n += strstr(line, "Violation") && strstr(line, id);
        fclose(f);
        return n;
}

static bool alice_in_server_log(void *arg)
{
        (void)arg;
        return server_violations_by(alice.key.pub) > 0;
}

START_TEST(no_daemon_ever_stepped_outside_its_grants)
{
        co_daemon_assert_healthy(&d2);
        const co_daemon *both[] = {&d1, &d2};
        static const char *const denial_words[] = {"Permissions Violation", "permission denied", "not permitted"};
        for (int i = 0; i < 2; i++) {
                char *err = proc_stderr(&both[i]->p);
                for (size_t k = 0; k < sizeof denial_words / sizeof *denial_words; k++) {
                        const char *at = strstr(err, denial_words[k]);
                        ck_assert_msg(!at, "daemon %d logged: %.300s", i + 1, at);
                }
                /* Daemon 1 has exited (co_daemon_assert_healthy needs a
                 * running one): no error-priority line either. */
                const char *bad = strstr(err, "\n<3>");
                ck_assert_msg(!bad, "daemon %d logged: %.300s", i + 1, bad);
                free(err);
        }
        ck_assert_int_eq(server_violations_by(d1_key.pub), 0);
        ck_assert_int_eq(server_violations_by(d2_key.pub), 0);
        /* The check above can fail: an agent's violation is in that log. */
        ck_assert_int_eq(server_violations_by(alice.key.pub), 0);
        ck_assert(natsConnection_PublishString(alice.nc, "cotal." S ".dlv.x", "no") == NATS_OK);
        ck_assert(natsConnection_Flush(alice.nc) == NATS_OK);
        ck_assert(denied_within(&alice.seen, "Publish to", "cotal." S ".dlv.x", DENIAL_MS));
        ck_assert(test_wait_until(alice_in_server_log, NULL, DENIAL_MS));
        ck_assert_int_eq(server_violations_by(alice.key.pub), 1);
}
END_TEST

/* ---- items 16-32: the grants themselves, on space Q (no daemon) ---- */

typedef struct grants {
        jwt_key dk; /* a delivery identity for Q */
        char creds[320];
        natsConnection *nc;
        denials seen;
        agent ag;       /* an agent of Q */
        char owner[64]; /* some agent id the delivery cred writes for */
} grants;

static grants g = {.ag = {.name = "quinn"}};

static void grants_setup(void)
{
        pthread_mutex_init(&g.seen.lock, NULL);
        ck_assert(jwt_key_new(&g.dk, 'U'));
        delivery_creds(g.creds, sizeof g.creds, "delivery-q.creds", Q, &g.dk);
        ck_assert_int_eq(profile_connect(&g.nc, g.creds, g.dk.pub, on_async_error, &g.seen), NATS_OK);
        char file[64];
        profile p;
        pthread_mutex_init(&g.ag.seen.lock, NULL);
        ck_assert(jwt_key_new(&g.ag.key, 'U'));
        profile_agent(&p, Q, g.ag.key.pub, (const char *const[]){"general", NULL}, NULL, NULL, false);
        snprintf(file, sizeof file, "agent-q.creds");
        make_creds(g.ag.creds, sizeof g.ag.creds, file, &g.ag.key, "agent", &p);
        profile_fini(&p);
        ck_assert_int_eq(profile_connect(&g.ag.nc, g.ag.creds, g.ag.key.pub, on_async_error, &g.ag.seen), NATS_OK);
        snprintf(g.owner, sizeof g.owner, "%s", g.ag.key.pub);
}

/* A JetStream publish that must be stored: returns its stream seq. */
static uint64_t js_store(natsConnection *nc, const char *subject, const char *data)
{
        natsMsg *reply = NULL;
        natsStatus s = natsConnection_RequestString(&reply, nc, subject, data, REQ_MS);
        ck_assert_msg(s == NATS_OK, "publish %s: %s", subject, natsStatus_GetText(s));
        json_t *ack = json_loadb(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply), 0, NULL);
        uint64_t seq = (uint64_t)json_integer_value(json_object_get(ack, "seq"));
        ck_assert_msg(seq > 0, "publish %s: %s", subject, natsMsg_GetData(reply));
        json_decref(ack);
        natsMsg_Destroy(reply);
        return seq;
}

/* A JetStream publish that must be refused: the violation names the
 * subject, and the stream got nothing (no daemon writes on Q). */
static void js_refused(natsConnection *nc, denials *seen, const char *stream, const char *subject)
{
        uint64_t before = co_last_seq(stream);
        ck_assert(natsConnection_PublishRequestString(nc, subject, "_INBOX_unanswered", "{}") == NATS_OK);
        ck_assert(natsConnection_Flush(nc) == NATS_OK);
        ck_assert_msg(denied_within(seen, "Publish to", subject, DENIAL_MS), "no violation for %s", subject);
        /* Flushed again after the violation: anything stored would be. */
        ck_assert(natsConnection_Flush(nc) == NATS_OK);
        ck_assert_msg(co_last_seq(stream) == before, "%s was stored", subject);
}

/* A subscription whose fate is shown by an admin publish on probe. */
static bool sub_receives(natsConnection *nc, const char *pattern, const char *probe)
{
        natsSubscription *sub = NULL;
        ck_assert(natsConnection_SubscribeSync(&sub, nc, pattern) == NATS_OK);
        ck_assert(natsConnection_Flush(nc) == NATS_OK);
        ck_assert(natsConnection_PublishString(tu_nc, probe, "probe") == NATS_OK);
        ck_assert(natsConnection_Flush(tu_nc) == NATS_OK);
        natsMsg *m = NULL;
        bool got = natsSubscription_NextMsg(&m, sub, QUIET_MS) == NATS_OK;
        natsMsg_Destroy(m);
        broker_sub_close(nc, &sub);
        return got;
}

START_TEST(items_16_17_delivery_cred_subscribes_its_inbox_and_ctl_delivery)
{
        grants_setup();
        char pattern[128], probe[160];
        snprintf(pattern, sizeof pattern, "_INBOX_%s.>", g.dk.pub);
        snprintf(probe, sizeof probe, "_INBOX_%s.probe", g.dk.pub);
        ck_assert_msg(sub_receives(g.nc, pattern, probe), "item 16: own inbox not received");
        snprintf(probe, sizeof probe, "cotal." Q ".ctl.delivery.%s", g.owner);
        ck_assert_msg(sub_receives(g.nc, "cotal." Q ".ctl.delivery.*", probe), "item 17: ctl.delivery not received");
        ck_assert_int_eq(g.seen.n, 0);
}
END_TEST

START_TEST(items_18_19_delivery_cred_cannot_subscribe_dinbox_or_chat)
{
        char probe[160];
        snprintf(probe, sizeof probe, "cotal." Q ".dinbox.%s", g.owner);
        ck_assert_msg(!sub_receives(g.nc, "cotal." Q ".dinbox.>", probe), "item 18: dinbox received");
        ck_assert(denied_within(&g.seen, "Subscription to", "cotal." Q ".dinbox.>", DENIAL_MS));
        snprintf(probe, sizeof probe, "cotal." Q ".chat.%s.general", g.owner);
        ck_assert_msg(!sub_receives(g.nc, "cotal." Q ".chat.>", probe), "item 19: chat received");
        ck_assert(denied_within(&g.seen, "Subscription to", "cotal." Q ".chat.>", DENIAL_MS));
}
END_TEST

START_TEST(items_20_to_27_delivery_cred_publishes_exactly_its_grants)
{
        char subject[256];
        /* 20: no chat, not even as itself. */
        snprintf(subject, sizeof subject, "cotal." Q ".chat.%s.general", g.dk.pub);
        js_refused(g.nc, &g.seen, "CHAT_" Q, subject);
        /* 21, 22: any owner's dinbox and dlv. */
        snprintf(subject, sizeof subject, "cotal." Q ".dinbox.%s", g.owner);
        uint64_t seq = js_store(g.nc, subject, "{\"entry\":1}");
        co_msg m;
        ck_assert(co_msg_get("INBOX_" Q, seq, &m));
        ck_assert_str_eq(m.subject, subject);
        co_msg_fini(&m);
        snprintf(subject, sizeof subject, "cotal." Q ".dlv.%s", g.owner);
        seq = js_store(g.nc, subject, "{\"copy\":1}");
        ck_assert(co_msg_get("DLV_" Q, seq, &m));
        ck_assert_str_eq(m.subject, subject);
        co_msg_fini(&m);
        /* 23, 24: lease.* and nothing else in the delivery bucket. */
        js_store(g.nc, "$KV.cotal_delivery_" Q ".lease.0", "{\"holder\":\"x\",\"since\":1,\"ready\":false}");
        json_t *v = co_kv_value("cotal_delivery_" Q, "lease.0", NULL);
        ck_assert_str_eq(json_string_value(json_object_get(v, "holder")), "x");
        json_decref(v);
        js_refused(g.nc, &g.seen, "KV_cotal_delivery_" Q, "$KV.cotal_delivery_" Q ".other");
        /* 25: members records. */
        snprintf(subject, sizeof subject, "$KV.cotal_members_" Q ".review/%s", g.owner);
        js_store(g.nc, subject, "{\"channel\":\"review\"}");
        snprintf(subject, sizeof subject, "review/%s", g.owner);
        v = co_kv_value("cotal_members_" Q, subject, NULL);
        ck_assert_str_eq(json_string_value(json_object_get(v, "channel")), "review");
        json_decref(v);
        /* 26, 27: never ACL rows or presence. */
        snprintf(subject, sizeof subject, "$KV.cotal_acl_" Q ".%s", g.owner);
        js_refused(g.nc, &g.seen, "KV_cotal_acl_" Q, subject);
        snprintf(subject, sizeof subject, "$KV.cotal_presence_" Q ".%s", g.dk.pub);
        js_refused(g.nc, &g.seen, "KV_cotal_presence_" Q, subject);
}
END_TEST

START_TEST(items_28_29_delivery_cred_replies_but_never_requests)
{
        natsSubscription *spy = NULL;
        ck_assert(natsConnection_SubscribeSync(&spy, tu_nc, "cotal." Q ".ctl.delivery.>") == NATS_OK);
        ck_assert(natsConnection_Flush(tu_nc) == NATS_OK);
        char request[200], reply[220];
        snprintf(request, sizeof request, "cotal." Q ".ctl.delivery.%s", g.owner);
        snprintf(reply, sizeof reply, "%s.reply.1", request);
        /* The denied request first: one connection's messages are handled
         * in order, so the spy getting the reply and not the request
         * proves the request was dropped. */
        ck_assert(natsConnection_PublishString(g.nc, request, "{}") == NATS_OK);
        ck_assert(natsConnection_PublishString(g.nc, reply, "{\"ok\":true}") == NATS_OK);
        ck_assert(natsConnection_Flush(g.nc) == NATS_OK);
        ck_assert(denied_within(&g.seen, "Publish to", request, DENIAL_MS));
        natsMsg *m = NULL;
        ck_assert(natsSubscription_NextMsg(&m, spy, WAIT_MS) == NATS_OK);
        ck_assert_str_eq(natsMsg_GetSubject(m), reply);
        natsMsg_Destroy(m);
        ck_assert_int_eq(natsSubscription_NextMsg(&m, spy, QUIET_MS), NATS_TIMEOUT);
        broker_sub_close(tu_nc, &spy);
}
END_TEST

START_TEST(items_30_31_32_agent_cred_reads_the_lease_but_never_dinbox_or_writes_it)
{
        agent *a = &g.ag;
        char probe[160];
        snprintf(probe, sizeof probe, "cotal." Q ".dinbox.%s", a->key.pub);
        ck_assert_msg(!sub_receives(a->nc, "cotal." Q ".dinbox.>", probe), "item 30: dinbox received");
        ck_assert(denied_within(&a->seen, "Subscription to", "cotal." Q ".dinbox.>", DENIAL_MS));

        /* 31: kv.get lease.0 as agents do (§4.2 MSG.GET; DIRECT.GET is
         * not in either profile). */
        char body[128];
        snprintf(body, sizeof body, "{\"last_by_subj\":\"$KV.cotal_delivery_" Q ".lease.0\"}");
        natsMsg *reply = NULL;
        ck_assert(natsConnection_RequestString(&reply, a->nc, "$JS.API.STREAM.MSG.GET.KV_cotal_delivery_" Q, body,
                                               REQ_MS) == NATS_OK);
        json_t *r = json_loadb(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply), 0, NULL);
        uint64_t rev = (uint64_t)json_integer_value(json_object_get(json_object_get(r, "message"), "seq"));
        ck_assert_msg(rev > 0, "item 31: %s", natsMsg_GetData(reply));
        json_decref(r);
        natsMsg_Destroy(reply);

        /* 32: no write; the record keeps its revision. */
        js_refused(a->nc, &a->seen, "KV_cotal_delivery_" Q, "$KV.cotal_delivery_" Q ".lease.0");
        uint64_t after = 0;
        json_decref(co_kv_value("cotal_delivery_" Q, "lease.0", &after));
        ck_assert_uint_eq(after, rev);
        natsConnection_Close(g.nc);
        natsConnection_Destroy(g.nc);
        g.nc = NULL;
        agent_close(a);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("daemon_confined");
        TCase *tc = tcase_create("confined");
        tcase_add_unchecked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 180);
        tcase_add_test(tc, items_1_2_4_lease_held_and_ready_under_the_delivery_profile);
        tcase_add_test(tc, items_8_39_42_join_list_and_deliver_exactly_under_confinement);
        tcase_add_test(tc, catch_up_on_join_copies_the_window_the_fanout_never_routed);
        tcase_add_test(tc, a_live_mention_reaches_only_an_acl_covered_agent);
        tcase_add_test(tc, items_33_34_replies_only_on_the_senders_own_subtree);
        tcase_add_test(tc, items_9_10_revoked_acl_stops_delivery_and_leave_still_works);
        tcase_add_test(tc, items_11_to_15_57_the_confined_daemon_recovers_from_a_broker_restart);
        tcase_add_test(tc, item_5_standby_on_its_own_delivery_identity_takes_over_on_sigterm);
        tcase_add_test(tc, a_group_readable_creds_file_is_refused_on_reload);
        tcase_add_test(tc, no_daemon_ever_stepped_outside_its_grants);
        tcase_add_test(tc, items_16_17_delivery_cred_subscribes_its_inbox_and_ctl_delivery);
        tcase_add_test(tc, items_18_19_delivery_cred_cannot_subscribe_dinbox_or_chat);
        tcase_add_test(tc, items_20_to_27_delivery_cred_publishes_exactly_its_grants);
        tcase_add_test(tc, items_28_29_delivery_cred_replies_but_never_requests);
        tcase_add_test(tc, items_30_31_32_agent_cred_reads_the_lease_but_never_dinbox_or_writes_it);
        suite_add_tcase(s, tc);
        return co_run(s);
}
