/* broker_eviction_order: what the broker under test does with
 * max_msgs_per_subject (INBOX_<S> keeps 1000 per owner, §2) after a
 * restart, when the stream has ten message blocks or more. The daemon's
 * lead bound (§14.4 E1) rests on the broker evicting the OLDEST entry of a
 * subject. nats-server 2.9.10 (Debian 12) does not always: on recovery it
 * reads the block files in name order ("10.blk" before "2.blk") and takes
 * the first block it meets with a subject as that subject's first block,
 * so the subject's entries in blocks 2-9 are skipped by every later
 * eviction and stay for good, while newer entries, unread ones included,
 * are evicted in their place (found in the soak: README, "The broker's
 * own losses"). 2.10 evicts the oldest. This test pins both: on < 2.10 it
 * asserts the defect is there (what README says about it stays true), on
 * 2.10 and later that the oldest go first. */
#include "testutil.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STREAM "EO"
#define PAYLOAD 4000 /* about a thousand messages per 4 MB block */
#define CAP 1000

static natsConnection *nc;
static char payload[PAYLOAD];

static void connect_broker(void)
{
        natsOptions *o = NULL;
        ck_assert(natsOptions_Create(&o) == NATS_OK);
        ck_assert(natsOptions_SetURL(o, tu_broker.url) == NATS_OK);
        ck_assert(natsConnection_Connect(&nc, o) == NATS_OK);
        natsOptions_Destroy(o);
}

/* n messages on subject, each stored (PubAck); the seqs in out (may be NULL). */
static void put(const char *subject, int n, uint64_t *out)
{
        for (int i = 0; i < n; i++) {
                natsMsg *reply = NULL;
                ck_assert(natsConnection_Request(&reply, nc, subject, payload, PAYLOAD, 10000) == NATS_OK);
                json_t *ack = json_loadb(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply), 0, NULL);
                ck_assert_msg(ack && json_integer_value(json_object_get(ack, "seq")) > 0, "no PubAck on %s", subject);
                if (out)
                        out[i] = (uint64_t)json_integer_value(json_object_get(ack, "seq"));
                json_decref(ack);
                natsMsg_Destroy(reply);
        }
}

/* Whether the stream still holds seq. */
static bool holds(uint64_t seq)
{
        char subject[128];
        snprintf(subject, sizeof subject, "$JS.API.STREAM.MSG.GET.%s", STREAM);
        char body[64];
        snprintf(body, sizeof body, "{\"seq\":%llu}", (unsigned long long)seq);
        natsMsg *reply = NULL;
        ck_assert(natsConnection_RequestString(&reply, nc, subject, body, 10000) == NATS_OK);
        bool found = strstr(natsMsg_GetData(reply), "\"message\"") != NULL;
        natsMsg_Destroy(reply);
        return found;
}

static bool at_least_2_10(void)
{
        char cmd[600], line[200] = "";
        unsigned major = 0, minor = 0;
        snprintf(cmd, sizeof cmd, "'%s' --version 2>&1", natsd_binary());
        FILE *f = popen(cmd, "r");
        ck_assert_ptr_nonnull(f);
        if (!fgets(line, sizeof line, f))
                line[0] = '\0';
        pclose(f);
        const char *v = strstr(line, " v");
        ck_assert_msg(v && sscanf(v + 2, "%u.%u", &major, &minor) == 2, "version of %s: %s", natsd_binary(), line);
        return major > 2 || (major == 2 && minor >= 10);
}

/* Subject a's first 500 messages sit alone in block 2 (block 1 is full of
 * b's); fourteen blocks of other subjects follow, then 100 more of a;
 * restart; then 900 more of a: 1,500 in all, so the 500 oldest must go. */
START_TEST(after_a_restart_the_oldest_message_of_a_subject_is_evicted_first)
{
        memset(payload, 'x', sizeof payload);
        tu_broker_setup();
        json_t *r = tu_api("$JS.API.STREAM.CREATE.%s%s", STREAM, "",
                           json_pack("{s:s, s:[s], s:s, s:s, s:I, s:s}", "name", STREAM, "subjects", "eo.>",
                                     "retention", "limits", "storage", "file", "max_msgs_per_subject", (json_int_t)CAP,
                                     "discard", "old"));
        ck_assert_msg(!json_object_get(r, "error"), "stream create");
        json_decref(r);
        connect_broker();
        static uint64_t old[500], newer[1000];
        put("eo.b", 1500, NULL);
        put("eo.a", 500, old);
        const char *others[] = {"eo.c", "eo.d", "eo.e", "eo.f", "eo.g", "eo.h", "eo.i", "eo.j"};
        for (size_t i = 0; i < sizeof others / sizeof *others; i++)
                put(others[i], 1500, NULL);
        put("eo.a", 100, newer);
        natsConnection_Destroy(nc);
        ck_assert_int_eq(natsd_stop(&tu_broker), 0);
        ck_assert_int_eq(natsd_restart(&tu_broker), 0);
        connect_broker();
        put("eo.a", 900, newer + 100);
        int old_kept = 0, newer_gone = 0;
        for (int i = 0; i < 500; i++)
                old_kept += holds(old[i]);
        for (int i = 0; i < 1000; i++)
                newer_gone += !holds(newer[i]);
        natsConnection_Destroy(nc);
        nc = NULL;
        tu_broker_teardown();
        if (at_least_2_10())
                ck_assert_msg(old_kept == 0 && newer_gone == 0,
                              "%s evicted out of order: %d of the 500 oldest kept, %d of the 1000 newest gone",
                              natsd_binary(), old_kept, newer_gone);
        else
                ck_assert_msg(old_kept == 500 && newer_gone == 500,
                              "%s (before 2.10) no longer shows the defect README describes: %d of the 500 oldest "
                              "kept, %d of the 1000 newest gone; update README and the soak's attribution",
                              natsd_binary(), old_kept, newer_gone);
}
END_TEST

int main(void)
{
        if (!natsd_available())
                return NATSD_SKIP;
        Suite *s = suite_create("broker_eviction_order");
        TCase *tc = tcase_create("core");
        tcase_set_timeout(tc, 300);
        tcase_add_test(tc, after_a_restart_the_oldest_message_of_a_subject_is_evicted_first);
        suite_add_tcase(s, tc);
        return tu_run(s);
}
