/* mentions: live @mention resolution (PROTOCOL §4.7, §6.3) through the
 * roster's name index, and the bound on the work one post may cost (issue
 * 14 item 4). A name resolves when exactly one roster entry carries it
 * (lowercased); renames move it; two entries with one name resolve to no
 * one. Past FANOUT_MENTIONS_MAX (10,000) elements of `mentions`, the rest
 * is ignored, counted and logged. The roster is fed by its own watch, so
 * each step waits for a marker name written after the change to resolve:
 * the watch applies presence writes in order. */
#include "cotal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S "mn"
#define DLV "DLV_" S
#define DLV_OF(o) "cotal." S ".dlv." o
#define MENTIONS_MAX 10000
#define TRIES 100
#define WAIT_MS 15000

static co_daemon dm;
static char sock[320];

static void setup(void)
{
        tu_broker_setup();
        co_provision(S);
        co_acl(S, BOB, "[\"random\"]");
        co_acl(S, CAROL, "[\"random\"]");
        co_acl(S, DAVE, "[\"random\"]");
        tu_kv_put("cotal_channels_" S, "random", "{\"deliveryClass\":\"live\"}");
        memset(&dm, 0, sizeof dm);
        snprintf(sock, sizeof sock, "%.200s/diag.sock", tu_broker.dir);
        ck_assert(co_daemon_start(&dm, S, (const char *const[]){"--diag-socket", sock, NULL}));
}

static void teardown(void)
{
        co_daemon_finish(&dm);
        tu_broker_teardown();
}

/* Posts "<prefix>-<k>" mentioning marker and others until BOB (the
 * marker's holder) gets one; returns that k. */
static int post_until_marker(const char *prefix, const char *marker, const char *others)
{
        char id[64], extra[256], dedup[160];
        for (int k = 0; k < TRIES; k++) {
                snprintf(id, sizeof id, "%s-%d", prefix, k);
                snprintf(extra, sizeof extra, "\"mentions\":[\"%s\",%s]", marker, others);
                co_chat(S, ALICE, "random", id, extra);
                snprintf(dedup, sizeof dedup, "%s:" BOB ":0", id);
                if (co_wait_id(DLV, DLV_OF(BOB), dedup, 300))
                        return k;
        }
        ck_abort_msg("the marker %s never resolved", marker);
        return -1;
}

START_TEST(a_name_resolves_only_while_one_entry_carries_it)
{
        co_presence(S, CAROL, "Twin");
        co_presence(S, DAVE, "twin");
        co_presence(S, BOB, "m1");
        int k = post_until_marker("a", "m1", "\"TWIN\"");
        char id[64];
        snprintf(id, sizeof id, "a-%d:" CAROL ":0", k);
        ck_assert_int_eq(co_count_id(DLV, DLV_OF(CAROL), id), 0);
        ck_assert_uint_eq(co_messages(DLV, DLV_OF(CAROL)), 0);
        ck_assert_uint_eq(co_messages(DLV, DLV_OF(DAVE)), 0);
        /* Dave renames: "twin" is Carol's alone now. */
        co_presence(S, DAVE, "dave");
        co_presence(S, BOB, "m2");
        k = post_until_marker("b", "m2", "\"twin\",\"dave\"");
        snprintf(id, sizeof id, "b-%d:" CAROL ":0", k);
        ck_assert_int_eq(co_count_id(DLV, DLV_OF(CAROL), id), 1);
        snprintf(id, sizeof id, "b-%d:" DAVE ":0", k);
        ck_assert_int_eq(co_count_id(DLV, DLV_OF(DAVE), id), 1);
        /* Carol takes Dave's name: "dave" is shared, "twin" is no one's. */
        co_presence(S, CAROL, "Dave");
        co_presence(S, BOB, "m3");
        k = post_until_marker("c", "m3", "\"twin\",\"dave\"");
        snprintf(id, sizeof id, "c-%d:" CAROL ":0", k);
        ck_assert_int_eq(co_count_id(DLV, DLV_OF(CAROL), id), 0);
        snprintf(id, sizeof id, "c-%d:" DAVE ":0", k);
        ck_assert_int_eq(co_count_id(DLV, DLV_OF(DAVE), id), 0);
}
END_TEST

/* mentions: a JSON array of n names "x<i>", with name at position at
 * (-1: nowhere). Owned. */
static char *mention_list(int n, const char *name, int at)
{
        size_t cap = (size_t)n * 16 + 64;
        char *s = malloc(cap);
        ck_assert_ptr_nonnull(s);
        size_t len = (size_t)snprintf(s, cap, "\"mentions\":[");
        for (int i = 0; i < n; i++)
                len += (size_t)snprintf(s + len, cap - len, "%s\"%s%.0d\"", i ? "," : "", i == at ? name : "x",
                                        i == at ? 0 : i + 1);
        snprintf(s + len, cap - len, "]");
        return s;
}

static uint64_t diag_counter(const char *name)
{
        json_t *doc = co_diag(sock, NULL);
        uint64_t v = (uint64_t)json_integer_value(json_object_get(json_object_get(doc, "counters"), name));
        json_decref(doc);
        return v;
}

START_TEST(mentions_past_the_bound_are_ignored_counted_and_logged)
{
        co_presence(S, BOB, "bob");
        co_presence(S, CAROL, "carol");
        co_presence(S, DAVE, "m0");
        /* Wait for the roster: a post mentioning only the marker. */
        char id[64], dedup[160];
        bool seen = false;
        for (int k = 0; k < TRIES && !seen; k++) {
                snprintf(id, sizeof id, "w-%d", k);
                co_chat(S, ALICE, "random", id, "\"mentions\":[\"m0\"]");
                snprintf(dedup, sizeof dedup, "%s:" DAVE ":0", id);
                seen = co_wait_id(DLV, DLV_OF(DAVE), dedup, 300);
        }
        ck_assert(seen);
        /* bob inside the bound (the last one looked at), carol past it. */
        char *list = mention_list(MENTIONS_MAX + 50, "bob", MENTIONS_MAX - 1);
        size_t len = strlen(list);
        list = realloc(list, len + 32);
        ck_assert_ptr_nonnull(list);
        memcpy(list + len - 1, ",\"carol\"]", 10);
        co_chat(S, ALICE, "random", "big-1", list);
        free(list);
        ck_assert(co_wait_id(DLV, DLV_OF(BOB), "big-1:" BOB ":0", WAIT_MS));
        /* Then a small post to carol: once it is there, big-1 was handled. */
        co_chat(S, ALICE, "random", "after-1", "\"mentions\":[\"carol\"]");
        ck_assert(co_wait_id(DLV, DLV_OF(CAROL), "after-1:" CAROL ":0", WAIT_MS));
        ck_assert_int_eq(co_count_id(DLV, DLV_OF(CAROL), "big-1:" CAROL ":0"), 0);
        ck_assert_uint_eq(diag_counter("mentions_ignored"), 51);
        ck_assert(co_daemon_logged_within(&dm, "Ignored 51 of the 10051 mentions of CHAT_" S " seq", WAIT_MS));
        ck_assert(co_daemon_logged_within(&dm, "(message big-1): at most 10000 are resolved per message", 1000));
}
END_TEST

int main(void)
{
        Suite *s = suite_create("mentions");
        TCase *tc = tcase_create("core");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, a_name_resolves_only_while_one_entry_carries_it);
        tcase_add_test(tc, mentions_past_the_bound_are_ignored_counted_and_logged);
        suite_add_tcase(s, tc);
        return co_run(s);
}
