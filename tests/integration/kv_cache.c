/* kv_cache: the daemon's watch-fed KV view on a real broker. After a fence
 * it answers exactly what a fresh read would (PROTOCOL §6.4): a record
 * written just before the fence is seen, a DEL/PURGE marker or an
 * unreadable value means absent/unknown, the member scan matches the
 * channel part exactly, the class falls back to =defaults. It survives an
 * operator deleting its watch consumer (the replay forgets keys deleted
 * meanwhile) and a purge of the bucket stream, and its watches are the
 * named consumers §4.2 asks for. */
#include "cotal.h"

#include "contract_subject.h"
#include "kv_cache.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S "kvc"
#define ACL_BUCKET "cotal_acl_" S
#define MEMBERS_BUCKET "cotal_members_" S
#define CHANNELS_BUCKET "cotal_channels_" S
#define NAME "dtest"
#define FENCE_MS 5000

static contract_names names;
static kv_cache *cache;

static void setup(void)
{
        char err[600] = "";
        tu_broker_setup();
        co_provision(S);
        ck_assert_int_eq(contract_names_init(&names, S, strlen(S)), 0);
        ck_assert_msg(kv_cache_open(&cache, tu_nc, &names, "_INBOX", NAME,
                                    KV_CACHE_ACL | KV_CACHE_MEMBERS | KV_CACHE_CHANNELS, err, sizeof err) == 0,
                      "open: %s", err);
}

static void teardown(void)
{
        kv_cache_close(cache);
        cache = NULL;
        contract_names_fini(&names);
        tu_broker_teardown();
}

static void fence(void)
{
        int r = kv_cache_fence(cache, FENCE_MS);
        ck_assert_msg(r == 0, "fence: %d %s", r, kv_cache_error(cache));
}

/* 1 if owner may read channel, 0 if the ACL is known and refuses, -1 if
 * unknown; *why gets the unknown reason. */
static int acl_allows(const char *owner, const char *channel, const char **why)
{
        const contract_acl *acl;
        *why = NULL;
        if (kv_cache_acl(cache, owner, &acl, why) < 0)
                return -1;
        for (size_t i = 0; i < acl->n_allow; i++)
                if (strcmp(acl->allow[i], channel) == 0)
                        return 1;
        return 0;
}

START_TEST(acl_written_before_the_fence_is_seen)
{
        const char *why;
        fence();
        ck_assert_int_eq(acl_allows(BOB, "general", &why), -1);
        ck_assert_str_eq(why, "no ACL record");
        /* Each write is followed at once by a fence and a lookup: no wait. */
        for (int i = 0; i < 200; i++) {
                co_acl(S, BOB, i % 2 ? "[\"general\"]" : "[]");
                fence();
                ck_assert_int_eq(acl_allows(BOB, "general", &why), i % 2);
        }
        co_acl_delete(S, BOB);
        fence();
        ck_assert_int_eq(acl_allows(BOB, "general", &why), -1);
        tu_kv_put(ACL_BUCKET, BOB, "{\"allowSubscribe\":\"general\"}");
        fence();
        ck_assert_int_eq(acl_allows(BOB, "general", &why), -1);
        ck_assert_msg(strstr(why, "unreadable ACL record"), "why: %s", why);
}
END_TEST

typedef struct seen {
        char owners[8][64];
        char channels[8][64];
        int n;
} seen;

static int collect(const contract_member *m, const char *channel, void *arg)
{
        seen *s = arg;
        if (s->n < 8) {
                snprintf(s->channels[s->n], sizeof s->channels[0], "%s", channel);
                snprintf(s->owners[s->n++], sizeof s->owners[0], "%s", m->owner);
        }
        return 0;
}

static bool seen_channel(const seen *s, const char *channel)
{
        for (int i = 0; i < s->n; i++)
                if (strcmp(s->channels[i], channel) == 0)
                        return true;
        return false;
}

/* The owner index (listMemberships, §8.3): the key's owner part, exactly;
 * records follow puts, tombstones, deletes and unreadable values. */
START_TEST(member_scan_by_owner_follows_the_key)
{
        co_member(S, "alpha", BOB, 0, 1, -1);
        co_member(S, "beta", BOB, 3, 2, -1);
        co_member(S, "alpha", ALICE, 0, 1, -1);
        co_member(S, "gamma", BOB, 0, 1, 7); /* tombstone: still a record */
        fence();
        seen s = {0};
        ck_assert_int_eq(kv_cache_members_of(cache, BOB, collect, &s), 0);
        ck_assert_int_eq(s.n, 3);
        ck_assert(seen_channel(&s, "alpha") && seen_channel(&s, "beta") && seen_channel(&s, "gamma"));
        s.n = 0;
        ck_assert_int_eq(kv_cache_members_of(cache, ALICE, collect, &s), 0);
        ck_assert_int_eq(s.n, 1);
        ck_assert_str_eq(s.channels[0], "alpha");

        /* Delete one, make one unreadable, add one: the index follows. */
        char subject[256];
        snprintf(subject, sizeof subject, "$KV." MEMBERS_BUCKET ".alpha/%s", BOB);
        co_publish_raw(subject, NULL, "", 0);
        tu_kv_put(MEMBERS_BUCKET, "beta/" BOB, "{\"channel\":\"beta\"}");
        co_member(S, "delta", BOB, 0, 1, -1);
        fence();
        s.n = 0;
        ck_assert_int_eq(kv_cache_members_of(cache, BOB, collect, &s), 0);
        ck_assert_int_eq(s.n, 2);
        ck_assert(seen_channel(&s, "gamma") && seen_channel(&s, "delta"));
        s.n = 0;
        ck_assert_int_eq(kv_cache_members_of(cache, CAROL, collect, &s), 0);
        ck_assert_int_eq(s.n, 0);
}
END_TEST

START_TEST(member_scan_matches_the_channel_part_exactly)
{
        co_member(S, "review", BOB, 5, 1, -1);
        co_member(S, "review.x", ALICE, 0, 1, -1);
        co_member(S, "reviews", CAROL, 0, 1, -1);
        tu_kv_put(MEMBERS_BUCKET, "review/" CAROL, "{\"channel\":\"review\"}"); /* unreadable: absent */
        tu_kv_put(MEMBERS_BUCKET, "notamemberkey", "{}");
        fence();
        seen s = {0};
        ck_assert_int_eq(kv_cache_members_each(cache, "review", collect, &s), 0);
        ck_assert_int_eq(s.n, 1);
        ck_assert_str_eq(s.owners[0], BOB);
        const contract_member *m = kv_cache_member(cache, "review", BOB);
        ck_assert_ptr_nonnull(m);
        ck_assert_uint_eq(m->join_cursor, 5);
        ck_assert_ptr_null(kv_cache_member(cache, "review", CAROL));
        ck_assert_ptr_null(kv_cache_member(cache, "review", ALICE));

        /* A leave (tombstone) replaces the record; a DEL removes it. */
        co_member(S, "review", BOB, 5, 1, 9);
        fence();
        m = kv_cache_member(cache, "review", BOB);
        ck_assert_ptr_nonnull(m);
        ck_assert(m->has_leave_cursor && m->leave_cursor == 9);
        char subject[256];
        snprintf(subject, sizeof subject, "$KV." MEMBERS_BUCKET ".review/%s", BOB);
        co_publish_raw(subject, NULL, "", 0); /* empty PUT: unreadable */
        fence();
        ck_assert_ptr_null(kv_cache_member(cache, "review", BOB));
        s.n = 0;
        ck_assert_int_eq(kv_cache_members_each(cache, "review", collect, &s), 0);
        ck_assert_int_eq(s.n, 0);
}
END_TEST

START_TEST(class_falls_back_to_defaults)
{
        fence();
        ck_assert(kv_cache_channel_is_durable(cache, "general")); /* =defaults: durable (provisioned) */
        tu_kv_put(CHANNELS_BUCKET, "lobby", "{\"deliveryClass\":\"live\"}");
        fence();
        ck_assert(!kv_cache_channel_is_durable(cache, "lobby"));
        ck_assert(kv_cache_channel_is_durable(cache, "general"));
        tu_kv_put(CHANNELS_BUCKET, "=defaults", "{\"deliveryClass\":\"live\"}");
        fence();
        ck_assert(!kv_cache_channel_is_durable(cache, "general"));
        ck_assert(!kv_cache_channel_is_durable(cache, "team.*")); /* not concrete: defaults */
        tu_kv_put(CHANNELS_BUCKET, "lobby", "{\"deliveryClass\":\"durable\"}");
        fence();
        ck_assert(kv_cache_channel_is_durable(cache, "lobby"));
}
END_TEST

START_TEST(watches_are_named_consumers_that_recover)
{
        co_acl(S, BOB, "[\"general\"]");
        co_acl(S, ALICE, "[\"general\"]");
        fence();
        const char *why;
        ck_assert_int_eq(acl_allows(ALICE, "general", &why), 1);
        /* §4.2: named consumers on the bucket streams. */
        json_t *info = tu_api("$JS.API.CONSUMER.INFO.%s.%s", "KV_" ACL_BUCKET, NAME "_acl", NULL);
        ck_assert_msg(json_object_get(info, "error") == NULL, "no named watch consumer on the ACL bucket");
        json_decref(info);

        /* An operator deletes the watch consumer; Alice is deleted while no
         * watch exists. The re-created watch replays, and the cache must
         * forget Alice rather than keep her stale ACL. */
        json_decref(tu_api("$JS.API.CONSUMER.DELETE.%s.%s", "KV_" ACL_BUCKET, NAME "_acl", NULL));
        co_acl_delete(S, ALICE);
        co_acl(S, CAROL, "[\"general\"]");
        int r = kv_cache_fence(cache, FENCE_MS);
        ck_assert_msg(r == 0, "fence after the consumer vanished: %s", kv_cache_error(cache));
        ck_assert_int_eq(acl_allows(CAROL, "general", &why), 1);
        ck_assert_int_eq(acl_allows(ALICE, "general", &why), -1);
        ck_assert_int_eq(acl_allows(BOB, "general", &why), 1);
        kv_cache_stats st;
        kv_cache_get_stats(cache, &st);
        ck_assert_uint_ge(st.restarts, 1);
}
END_TEST

START_TEST(stream_purge_is_noticed)
{
        co_acl(S, BOB, "[\"general\"]");
        fence();
        const char *why;
        ck_assert_int_eq(acl_allows(BOB, "general", &why), 1);
        /* Not a KV operation: no marker is written, the watch sees nothing. */
        json_decref(tu_api("$JS.API.STREAM.PURGE.%s", "KV_" ACL_BUCKET, NULL, NULL));
        fence();
        ck_assert_int_eq(acl_allows(BOB, "general", &why), -1);
        co_acl(S, ALICE, "[\"general\"]");
        fence();
        ck_assert_int_eq(acl_allows(ALICE, "general", &why), 1);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("kv_cache");
        TCase *tc = tcase_create("cache");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, acl_written_before_the_fence_is_seen);
        tcase_add_test(tc, member_scan_matches_the_channel_part_exactly);
        tcase_add_test(tc, member_scan_by_owner_follows_the_key);
        tcase_add_test(tc, class_falls_back_to_defaults);
        tcase_add_test(tc, stream_purge_is_noticed);
        tcase_add_test(tc, watches_are_named_consumers_that_recover);
        suite_add_tcase(s, tc);
        return tu_run(s);
}
