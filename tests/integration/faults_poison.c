/* faults_poison: poison input mixed into good traffic (issue 8). Every good
 * chat message is followed by one bad input: chat bodies that are not JSON,
 * not objects, too deep, not UTF-8, with wrong types or a spoofed sender,
 * posts whose inbox entry would exceed max_payload, a chat subject of the
 * wrong shape, malformed inbox entries and an entry for a channel its
 * owner may not read. Each is dropped with a log line naming its stream
 * and sequence (§6.1, §7 rows 1, 2, 2a, 5); nothing of it reaches a dlv
 * stream; every good message reaches every member exactly once; no
 * good message waits behind a bad one: each (published once the previous
 * one arrived, right behind a bad input) is copied to every member within
 * GOOD_BOUND_MS of its publish; and no bad input made the daemon retry a
 * batch (the 2 s nak delay of §6.5 and §7) or lose its connection (the
 * log shows neither). A 1 MB post costs the fan-out ~150 ms of JSON work
 * in the plain build; the bound leaves room for a loaded CI machine. */
#include "cotal.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"

#define S "fp"
#define CHAT "CHAT_" S
#define INBOX "INBOX_" S
#define DLV "DLV_" S
#define GOOD 200
/* Under AddressSanitizer the 1 MB posts cost the daemon several times more. */
#if defined(__SANITIZE_ADDRESS__)
#define GOOD_BOUND_MS 6000
#else
#define GOOD_BOUND_MS 3000
#endif
#define SETTLE_MS 60000

static const char *const members[] = {BOB, CAROL, DAVE};
#define K (sizeof members / sizeof *members)
static co_daemon dm;
static char sock[320];

/* Arrival times of the good copies, by message and member. */
static struct {
        pthread_mutex_t lock;
        int64_t sent[GOOD];
        int64_t arrived[GOOD][K];
} clock_of = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void on_dlv(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
        (void)nc, (void)sub, (void)arg;
        int64_t now = test_now_ms();
        const char *id = NULL;
        int i;
        char owner[64];
        if (natsMsgHeader_Get(m, "Nats-Msg-Id", &id) == NATS_OK && sscanf(id, "pz-%d:%63[^:]:1", &i, owner) == 2 &&
            i >= 0 && i < GOOD) {
                pthread_mutex_lock(&clock_of.lock);
                for (size_t k = 0; k < K; k++)
                        if (strcmp(owner, members[k]) == 0 && !clock_of.arrived[i][k])
                                clock_of.arrived[i][k] = now;
                pthread_mutex_unlock(&clock_of.lock);
        }
        natsMsg_Destroy(m);
}

typedef struct arrived_ctx {
        int i;
} arrived_ctx;

static bool arrived_everywhere(void *arg)
{
        int i = ((arrived_ctx *)arg)->i;
        bool all = true;
        pthread_mutex_lock(&clock_of.lock);
        for (size_t k = 0; k < K; k++)
                all = all && clock_of.arrived[i][k] != 0;
        pthread_mutex_unlock(&clock_of.lock);
        return all;
}

static void setup(void)
{
        tu_broker_setup();
        co_provision_general(S, members, K);
        snprintf(sock, sizeof sock, "%.200s/diag.sock", tu_broker.dir);
        ck_assert(co_daemon_start(&dm, S, (const char *const[]){"--diag-socket", sock, NULL}));
}

static void teardown(void)
{
        co_daemon_finish(&dm);
        tu_broker_teardown();
}

/* A bad input and the log line its drop must leave. */
typedef struct poison {
        uint64_t seq;
        char expect[200];
        bool too_large; /* its K inbox entries can never be written */
} poison;

static char *big_post(size_t len)
{
        char *body = malloc(len + 1);
        ck_assert(body);
        int head = snprintf(body, len + 1,
                            "{\"id\":\"big\",\"ts\":1,\"from\":{\"id\":\"" ALICE
                            "\",\"name\":\"a\"},\"parts\":[{\"kind\":\"text\",\"text\":\"");
        memset(body + head, 'x', len - (size_t)head - 4);
        memcpy(body + len - 4, "\"}]}", 4);
        body[len] = '\0';
        return body;
}

/* Publishes bad input number i (kinds in turn) and fills p. */
static void publish_poison(int i, poison *p)
{
        static const char *const chat_bodies[] = {
                "not json",
                "[1,2]",
                "null",
                "{\"id\":5,\"from\":{\"id\":\"" ALICE "\"}}",
                "{\"id\":\"x\"}",
                "{\"id\":\"x\",\"from\":\"" ALICE "\"}",
                "{\"id\":\"spoof\",\"from\":{\"id\":\"" BOB "\"},\"parts\":[]}",
                "{\"id\":\"\xff\xfe\",\"from\":{\"id\":\"" ALICE "\"}}",
        };
        static const char *const entries[] = {
                "nope",
                "{\"msg\":{},\"channel\":\"general\",\"seq\":1,\"generation\":1}",
                "{\"msg\":{\"id\":\"q\"},\"channel\":7,\"seq\":1,\"generation\":1}",
                "{\"msg\":{\"id\":\"q\"},\"channel\":\"general\",\"seq\":\"1\",\"generation\":1}",
                /* Well formed, but CAROL may not read "secret" (§7 row 5). */
                "{\"msg\":{\"id\":\"unauth\",\"from\":{\"id\":\"" ALICE "\"}},\"channel\":\"secret\",\"seq\":1,"
                "\"reason\":\"live-mention\",\"generation\":0}",
        };
        const size_t nchat = sizeof chat_bodies / sizeof *chat_bodies, nent = sizeof entries / sizeof *entries;
        const size_t kinds = nchat + nent + 3;
        size_t kind = (size_t)i % kinds;
        const char *chat_subj = "cotal." S ".chat." ALICE ".general";
        if (kind < nchat) {
                p->seq = co_publish_raw(chat_subj, NULL, chat_bodies[kind], strlen(chat_bodies[kind]));
                snprintf(p->expect, sizeof p->expect, "Dropped chat message " CHAT " seq %llu ",
                         (unsigned long long)p->seq);
        } else if (kind < nchat + nent) {
                const char *e = entries[kind - nchat];
                p->seq = co_publish_raw("cotal." S ".dinbox." CAROL, NULL, e, strlen(e));
                snprintf(p->expect, sizeof p->expect, "Dropped " INBOX " entry seq %llu for owner " CAROL,
                         (unsigned long long)p->seq);
        } else if (kind == nchat + nent) {
                /* 5 000 unclosed arrays: deeper than any parser should go. */
                char deep[5001];
                memset(deep, '[', 5000);
                deep[5000] = '\0';
                p->seq = co_publish_raw(chat_subj, NULL, deep, 5000);
                snprintf(p->expect, sizeof p->expect, "Dropped chat message " CHAT " seq %llu ",
                         (unsigned long long)p->seq);
        } else if (kind == nchat + nent + 1) {
                /* A chat subject with no channel token (§6.1 step 1). */
                const char *b = "{\"id\":\"short\",\"from\":{\"id\":\"" ALICE "\"}}";
                p->seq = co_publish_raw("cotal." S ".chat." ALICE, NULL, b, strlen(b));
                snprintf(p->expect, sizeof p->expect,
                         "Dropped chat message " CHAT " seq %llu on cotal." S ".chat." ALICE ": not a chat subject",
                         (unsigned long long)p->seq);
        } else {
                /* Fits max_payload; its inbox entry cannot. */
                size_t len = (size_t)natsConnection_GetMaxPayload(tu_nc) - 64;
                char *body = big_post(len);
                p->seq = co_publish_raw(chat_subj, NULL, body, len);
                free(body);
                /* Said once for the message, naming it (issue 14 item 5). */
                snprintf(p->expect, sizeof p->expect,
                         "Dropped %zu inbox entries of " CHAT " seq %llu (message big, a %zu-byte body): larger than "
                         "the broker's max payload",
                         K, (unsigned long long)p->seq, len);
                p->too_large = true;
        }
}

static int cmp_i64(const void *a, const void *b)
{
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
        return (x > y) - (x < y);
}

START_TEST(poison_is_dropped_and_good_traffic_is_not_delayed)
{
        natsSubscription *sub = NULL;
        ck_assert(natsConnection_Subscribe(&sub, tu_nc, "cotal." S ".dlv.>", on_dlv, NULL) == NATS_OK);
        ck_assert(natsConnection_Flush(tu_nc) == NATS_OK);
        static poison bad[GOOD];
        char id[64];
        for (int i = 0; i < GOOD; i++) {
                snprintf(id, sizeof id, "pz-%d", i);
                pthread_mutex_lock(&clock_of.lock);
                clock_of.sent[i] = test_now_ms();
                pthread_mutex_unlock(&clock_of.lock);
                co_chat(S, ALICE, "general", id, NULL);
                /* Paced by the pipeline itself: the next pair goes out once
                 * this message reached everyone, so a delay is what a bad
                 * input in front of it caused, not a queue the test built. */
                arrived_ctx a = {i};
                (void)test_wait_until(arrived_everywhere, &a, 10 * GOOD_BOUND_MS);
                publish_poison(i, &bad[i]);
        }
        co_tally t = co_dlv_settle(S, members, K, 1, "pz", GOOD, SETTLE_MS, NULL);
        ck_assert_msg(t.missing == 0 && t.dup == 0 && t.foreign == 0, "%d missing, %d duplicated, %d foreign",
                      t.missing, t.dup, t.foreign);
        /* Nothing bad was copied: each member's dlv holds the good set only. */
        for (size_t k = 0; k < K; k++) {
                char subject[128];
                snprintf(subject, sizeof subject, "cotal." S ".dlv.%s", members[k]);
                ck_assert_uint_eq(co_messages(DLV, subject), GOOD);
        }
        /* Every bad input left its drop line. */
        char *err = proc_stderr(&dm.p);
        uint64_t too_large = 0;
        for (int i = 0; i < GOOD; i++) {
                ck_assert_msg(strstr(err, bad[i].expect), "no drop line \"%s\"", bad[i].expect);
                too_large += bad[i].too_large ? K : 0;
        }
        /* ... and counted, entry by entry. */
        ck_assert_uint_gt(too_large, 0);
        json_t *doc = co_diag(sock, NULL);
        ck_assert_uint_eq(
                (uint64_t)json_integer_value(json_object_get(json_object_get(doc, "counters"), "entries_too_large")),
                too_large);
        json_decref(doc);
        ck_assert_msg(!strstr(err, "retrying in") && !strstr(err, "retried in"), "a bad input went through a retry");
        ck_assert_msg(!strstr(err, "disconnected from the broker"), "a bad input cost the daemon its connection");
        free(err);
        co_daemon_assert_healthy(&dm);

        /* Every good copy arrived within the bound (the core subscription
         * sees a copy when DLV stores it). */
        broker_sub_close(tu_nc, &sub);
        static int64_t delay[GOOD * K];
        size_t n = 0;
        pthread_mutex_lock(&clock_of.lock);
        for (int i = 0; i < GOOD; i++)
                for (size_t k = 0; k < K; k++)
                        if (clock_of.arrived[i][k]) {
                                delay[n++] = clock_of.arrived[i][k] - clock_of.sent[i];
                                if (delay[n - 1] > GOOD_BOUND_MS / 4)
                                        fprintf(stderr, "slow: pz-%d for %.8s took %lld ms (behind bad input %d)\n", i,
                                                members[k], (long long)delay[n - 1], i - 1);
                        }
        pthread_mutex_unlock(&clock_of.lock);
        ck_assert_uint_eq(n, (size_t)GOOD * K);
        qsort(delay, n, sizeof *delay, cmp_i64);
        fprintf(stderr,
                "poison: %d good messages x %zu members behind %d bad inputs: 0 lost, 0 duplicated, 0 bad copied; "
                "good delay median %lld ms, p99 %lld ms, max %lld ms (bound %d ms)\n",
                GOOD, K, GOOD, (long long)delay[n / 2], (long long)delay[n * 99 / 100], (long long)delay[n - 1],
                GOOD_BOUND_MS);
        ck_assert_msg(delay[n - 1] <= GOOD_BOUND_MS, "a good copy waited %lld ms", (long long)delay[n - 1]);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("faults_poison");
        TCase *tc = tcase_create("poison");
        tcase_add_unchecked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 240);
        tcase_add_test(tc, poison_is_dropped_and_good_traffic_is_not_delayed);
        suite_add_tcase(s, tc);
        return tu_run(s);
}
