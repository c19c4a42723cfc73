/* lead_denied: issue 13 item 4. When one recipient's entry of a chat
 * message fails, the message is nak'ed and redelivered (§6.5), but the
 * entries that did land for its other recipients are stored and unread:
 * they must stay counted against their owners' lead (E1). Before the fix
 * the whole message's counts were dropped, so an owner sharing a channel
 * with a failing recipient was written past its limit.
 *
 * Operator mode: the delivery credential may write only BOB's dinbox
 * (PROTOCOL §11.3's "P.dinbox.*" narrowed), so every entry for DAVE is
 * refused by the broker and every message of the channel is retried
 * forever, with the daemon's permission back-off. The reader is kept from
 * disposing of anything (DLV pointed elsewhere). BOB must stay at exactly
 * the lead limit while every message is handled again and again. */
#include "cotal.h"
#include "profiles.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S "ld"
#define INBOX "INBOX_" S
#define WAIT_MS 60000
#define POSTS 60
#define LIMIT 20

static jwt_chain chain;
static jwt_key admin_key, daemon_key, bob_key, dave_key;
static char admin_creds[320], daemon_creds[320];
static co_daemon dm;

static uint64_t inbox_of(const char *owner)
{
        char subject[200];
        snprintf(subject, sizeof subject, "cotal." S ".dinbox.%s", owner);
        return co_messages(INBOX, subject);
}

static void setup(void)
{
        char *conf = jwt_chain_conf(&chain);
        ck_assert_ptr_nonnull(conf);
        tu_broker_setup_conf(conf);
        free(conf);
        ck_assert(jwt_key_new(&admin_key, 'U') && jwt_key_new(&daemon_key, 'U') && jwt_key_new(&bob_key, 'U') &&
                  jwt_key_new(&dave_key, 'U'));
        char *admin_jwt = jwt_user(&chain.app, &admin_key, "admin", NULL);
        snprintf(admin_creds, sizeof admin_creds, "%.200s/admin.creds", tu_broker.dir);
        ck_assert_int_eq(jwt_write_creds(admin_creds, admin_jwt, &admin_key), 0);
        free(admin_jwt);
        ck_assert_int_eq(tu_connect_creds(&tu_nc, admin_creds, NULL, NULL), NATS_OK);
        tu_ctl_creds = admin_creds;
        co_provision(S);
        co_acl(S, bob_key.pub, "[\"general\"]");
        co_acl(S, dave_key.pub, "[\"general\"]");
        co_member(S, "general", bob_key.pub, 0, 1, -1);
        co_member(S, "general", dave_key.pub, 0, 1, -1);
        co_dlv_stall(S, true);

        profile p;
        profile_delivery(&p, S, daemon_key.pub);
        char bob_dinbox[128];
        snprintf(bob_dinbox, sizeof bob_dinbox, "cotal." S ".dinbox.%s", bob_key.pub);
        ck_assert(profile_narrow_pub(&p, "cotal." S ".dinbox.*", bob_dinbox));
        snprintf(daemon_creds, sizeof daemon_creds, "%.200s/delivery.creds", tu_broker.dir);
        ck_assert(profile_write_creds(daemon_creds, &chain.app, &daemon_key, "delivery", &p));
        profile_fini(&p);
        co_daemon_spawn_creds(&dm, S, daemon_creds,
                              (const char *const[]){"--inbox-lead-limit", "20", "--fanout-batch", "10", NULL}, NULL);
        ck_assert_msg(co_daemon_wait_ready(&dm, DAEMON_READY_TIMEOUT_MS) && dm.p.pid > 0, "daemon not ready");
}

static void teardown(void)
{
        co_daemon_finish(&dm);
        tu_ctl_creds = NULL;
        tu_broker_teardown();
}

static bool all_retried(void *arg)
{
        (void)arg;
        json_t *r = tu_api("$JS.API.CONSUMER.INFO.%s.%s", "CHAT_" S, "fanout", NULL);
        json_int_t redelivered = json_integer_value(json_object_get(r, "num_redelivered"));
        json_decref(r);
        return redelivered >= POSTS;
}

START_TEST(a_failed_entry_keeps_the_other_recipients_counted)
{
        co_chat_burst(S, ALICE, "general", "d", POSTS, 0);
        /* Every message handled at least twice (each one refused for DAVE). */
        ck_assert_msg(test_wait_until(all_retried, NULL, WAIT_MS), "the fan-out did not retry every message");
        uint64_t bob = inbox_of(bob_key.pub);
        ck_assert_msg(bob == LIMIT, "BOB has %llu unread entries after every message was retried (lead limit %d)",
                      (unsigned long long)bob, LIMIT);
        ck_assert_uint_eq(inbox_of(dave_key.pub), 0);
        fprintf(stderr, "denied: %d messages retried for the refused recipient; the other one holds %llu entries\n",
                POSTS, (unsigned long long)bob);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("lead_denied");
        TCase *tc = tcase_create("denied");
        tcase_add_unchecked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, a_failed_entry_keeps_the_other_recipients_counted);
        suite_add_tcase(s, tc);
        return co_run(s);
}
