/* daemon_freshness: PROTOCOL §6.4 and §7 under load. Whatever the daemon
 * caches, a membership or ACL record written to the KV before a chat
 * message is published is what that message is routed and authorised by:
 * a record written just before a publish is never missed (a member gets
 * its copy), a revocation written just before a publish is never ignored
 * (no copy), and a mixed run yields exactly the set of dedup ids the
 * contract predicts. Each test gets its own broker and daemon. */
#include "cotal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define S "fr"
#define CHAT "CHAT_" S
#define INBOX "INBOX_" S
#define DLV "DLV_" S
#define ID_LEN 56
/* §2: INBOX and DLV keep 1,000 messages per owner subject and discard the
 * oldest; every owner here stays below that, so counts are exact. */
#define OWNER_SUBJECT_CAP 1000
/* Generous for the slow daemon on a loaded 2-core machine; a broken one
 * fails at the first deadline instead of hanging. */
#define DRAIN_MS 45000
#define SETTLE_MS 20000
#define STEP_MS 20000

static co_daemon dm;
static int64_t t_setup;

/* Per-delivery debug lines would throttle the daemon; the later
 * --log-level wins over the "--log-level debug" co_daemon_spawn passes
 * (flags are collected in order and the last value of a key is applied). */
static void setup(void)
{
        t_setup = test_now_ms();
        tu_broker_setup();
        co_provision(S);
        ck_assert_msg(co_daemon_start(&dm, S, (const char *const[]){"--log-level", "notice", NULL}),
                      "daemon did not become ready");
}

static void teardown(void)
{
        co_daemon_finish(&dm);
        tu_broker_teardown();
        fprintf(stderr, "freshness: test took %lld ms with broker and daemon start and stop\n",
                (long long)(test_now_ms() - t_setup));
}

/* Owner ids in nkey shape ("U" + 55 characters of [A-Z2-7]) so that
 * token(owner) == owner and the dlv subject ends with the id itself. */
static void make_id(char out[ID_LEN + 1], const char *tag, int i)
{
        static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        snprintf(out, ID_LEN + 1, "U%.4s%c%c%.49s", tag, b32[(i / 32) % 32], b32[i % 32],
                 "QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ");
        ck_assert_uint_eq(strlen(out), ID_LEN);
}

/* The daemon is still up, logged no error, and honoured --log-level
 * notice (no debug line: otherwise the override did not take). */
static void assert_healthy_and_quiet(void)
{
        co_daemon_assert_healthy(&dm);
        char *err = proc_stderr(&dm.p);
        bool debug = strncmp(err, "<7>", 3) == 0 || strstr(err, "\n<7>") != NULL;
        free(err);
        ck_assert_msg(!debug, "the daemon logged debug lines despite --log-level notice");
}

typedef struct floor_wait {
        const char *stream, *consumer;
        uint64_t want, seen;
} floor_wait;

static bool floor_reached(void *arg)
{
        floor_wait *w = arg;
        json_t *r = tu_api("$JS.API.CONSUMER.INFO.%s.%s", w->stream, w->consumer, NULL);
        w->seen = (uint64_t)json_integer_value(json_object_get(json_object_get(r, "ack_floor"), "stream_seq"));
        json_decref(r);
        return w->seen >= w->want;
}

/* Waits until consumer's ack floor reaches want; *seen (may be NULL) gets
 * the floor last read. */
static bool wait_floor(const char *stream, const char *consumer, uint64_t want, int64_t timeout_ms, uint64_t *seen)
{
        floor_wait w = {stream, consumer, want, 0};
        bool ok = test_wait_until(floor_reached, &w, timeout_ms);
        if (seen)
                *seen = w.seen;
        return ok;
}

/* The daemon has nothing left to do: the fan-out acked every chat message
 * and, after that, the reader every entry then written. Nothing more can
 * reach DLV, so what is there is the final outcome. */
static bool settled(int64_t timeout_ms)
{
        int64_t deadline = test_now_ms() + timeout_ms;
        if (!wait_floor(CHAT, "fanout", co_last_seq(CHAT), timeout_ms, NULL))
                return false;
        return wait_floor(INBOX, "reader", co_last_seq(INBOX), deadline - test_now_ms(), NULL);
}

/* A list of dedup ids. */
typedef struct idset {
        char **v;
        size_t n, cap;
} idset;

__attribute__((format(printf, 2, 3))) static void idset_add(idset *s, const char *fmt, ...)
{
        if (s->n == s->cap) {
                s->cap = s->cap ? s->cap * 2 : 64;
                s->v = realloc(s->v, s->cap * sizeof *s->v);
                ck_assert_ptr_nonnull(s->v);
        }
        va_list ap;
        va_start(ap, fmt);
        ck_assert_int_ge(vasprintf(&s->v[s->n++], fmt, ap), 0);
        va_end(ap);
}

static void idset_free(idset *s, size_t n)
{
        for (size_t k = 0; k < n; k++) {
                for (size_t i = 0; i < s[k].n; i++)
                        free(s[k].v[i]);
                free(s[k].v);
        }
        free(s);
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

#define DIFF_SHOWN 10

static void report(size_t *shown, const char *what, const char *owner, const char *id)
{
        if ((*shown)++ < DIFF_SHOWN)
                fprintf(stderr, "freshness: %s %s for %s\n", what, id, owner);
}

/* Reads DLV once (co_msgs_on over the whole stream, grouped by subject:
 * reading it once per owner would read every message n_owners times) and
 * compares each owner's subject with want[o] exactly: every wanted id
 * present once, nothing else. ids starting with ignore_prefix (may be
 * NULL) are skipped. Prints the first differences; returns their number.
 * *got (may be NULL) gets each owner's delivered ids (owned, idset_free). */
static size_t dlv_diff(char (*owners)[ID_LEN + 1], size_t n_owners, idset *want, const char *ignore_prefix, idset **got)
{
        idset *have = calloc(n_owners, sizeof *have);
        ck_assert_ptr_nonnull(have);
        co_msg *m = NULL;
        size_t n = co_msgs_on(DLV, NULL, &m), bad = 0, shown = 0;
        const size_t prefix_len = strlen("cotal." S ".dlv.");
        for (size_t i = 0; i < n; i++) {
                const char *id = m[i].msg_id ? m[i].msg_id : "(no Nats-Msg-Id)";
                if (ignore_prefix && strncmp(id, ignore_prefix, strlen(ignore_prefix)) == 0)
                        continue;
                size_t o = 0;
                while (o < n_owners && strcmp(m[i].subject + prefix_len, owners[o]) != 0)
                        o++;
                if (strncmp(m[i].subject, "cotal." S ".dlv.", prefix_len) != 0 || o == n_owners) {
                        bad++;
                        report(&shown, "copy for an unexpected recipient:", m[i].subject, id);
                        continue;
                }
                /* §5.3: the body is the chat message whose id starts the dedup id. */
                const char *body_id = json_string_value(json_object_get(m[i].body, "id"));
                size_t idl = strcspn(id, ":");
                if (!body_id || strlen(body_id) != idl || strncmp(body_id, id, idl) != 0) {
                        bad++;
                        report(&shown, "body id does not match", owners[o], id);
                }
                idset_add(&have[o], "%s", id);
        }
        co_msgs_free(m, n);
        for (size_t o = 0; o < n_owners; o++) {
                idset *w = &want[o], *h = &have[o];
                qsort(w->v, w->n, sizeof *w->v, cmp_str);
                qsort(h->v, h->n, sizeof *h->v, cmp_str);
                size_t i = 0, j = 0;
                while (i < w->n || j < h->n) {
                        int c = i == w->n ? 1 : j == h->n ? -1 : strcmp(w->v[i], h->v[j]);
                        if (c < 0) {
                                bad++;
                                report(&shown, "missing", owners[o], w->v[i++]);
                        } else if (c > 0) {
                                bool twice = j > 0 && strcmp(h->v[j - 1], h->v[j]) == 0;
                                bad++;
                                report(&shown, twice ? "twice" : "extra", owners[o], h->v[j]);
                                j++;
                        } else {
                                i++;
                                j++;
                        }
                }
        }
        if (shown > DIFF_SHOWN)
                fprintf(stderr, "freshness: … %zu differences in all\n", shown);
        if (got)
                *got = have;
        else
                idset_free(have, n_owners);
        return bad;
}

static void assert_under_cap(const idset *want, size_t n_owners)
{
        for (size_t o = 0; o < n_owners; o++)
                ck_assert_msg(want[o].n < OWNER_SUBJECT_CAP, "test design: owner %zu would get %zu copies", o,
                              want[o].n);
}

/* Test 1. Each round writes a fresh membership record and publishes on
 * its channel right after the PubAck, with no pause: a cache that has not
 * yet seen the record when the fan-out handles the message routes it to
 * no one (§6.4), and the copy is missing. The sender is no member. */
#define FR_ROUNDS 1000
#define FR_OWNERS 20

START_TEST(member_written_then_published_is_fanned_out)
{
        char owners[FR_OWNERS][ID_LEN + 1], sender[ID_LEN + 1], ch[32], id[32];
        make_id(sender, "SNDR", 0);
        for (int k = 0; k < FR_OWNERS; k++) {
                make_id(owners[k], "FRSH", k);
                co_acl(S, owners[k], "[\"fr.>\"]");
        }
        idset *want = calloc(FR_OWNERS, sizeof *want);
        ck_assert_ptr_nonnull(want);
        int64_t t0 = test_now_ms();
        for (int i = 0; i < FR_ROUNDS; i++) {
                snprintf(ch, sizeof ch, "fr.%d", i);
                snprintf(id, sizeof id, "m-%d", i);
                co_member(S, ch, owners[i % FR_OWNERS], 0, 1, -1);
                co_chat(S, sender, ch, id, NULL);
                idset_add(&want[i % FR_OWNERS], "m-%d:%s:1", i, owners[i % FR_OWNERS]);
        }
        int64_t t_pub = test_now_ms() - t0;
        assert_under_cap(want, FR_OWNERS);

        /* On a miss the count stops short: fall through to the diff, which
         * names what is missing. */
        uint64_t delivered = co_wait_count(DLV, NULL, FR_ROUNDS, DRAIN_MS);
        int64_t t_all = test_now_ms() - t0;
        ck_assert_msg(settled(SETTLE_MS), "the daemon did not drain CHAT and INBOX");
        size_t bad = dlv_diff(owners, FR_OWNERS, want, NULL, NULL);
        fprintf(stderr,
                "freshness: %d member-then-publish rounds published in %lld ms, %llu copies in %lld ms, "
                "%zu differences\n",
                FR_ROUNDS, (long long)t_pub, (unsigned long long)delivered, (long long)t_all, bad);
        idset_free(want, FR_OWNERS);
        ck_assert_msg(bad == 0, "%zu copies missing, extra or twice", bad);
        /* One entry and one copy per round, nothing else written. */
        ck_assert_uint_eq(co_last_seq(INBOX), FR_ROUNDS);
        ck_assert_uint_eq(co_last_seq(DLV), FR_ROUNDS);
        assert_healthy_and_quiet();
}
END_TEST

/* Test 2. The reader authorises at read time (§7 row 5), so a grant
 * written later legitimately revives an entry revoked earlier if the
 * reader only gets to it after the grant. And grant, pre, revoke, post on
 * one owner back to back cannot show that grants are seen: the revocation
 * lands microseconds after "pre" is published, long before the reader
 * judges it, so hardly any pre copy would be delivered. Instead each owner
 * R_k alternates, one flip per message: granted in rounds i ≡ k (mod 20)
 * right before "pre-<i>" is published on its channel rv.<k>, revoked (ACL
 * [], known and reading nothing: the reader drops) in rounds i ≡ k + 10
 * right before "post-<i>" is published there. Before each flip the test
 * waits until the reader has judged that owner's previous entry, published
 * ten rounds earlier (usually long done, so the rounds still run back to
 * back). So every entry is judged under the ACL written just before its
 * publish, and the outcome is exact: all 1,000 pre copies reach R (a
 * cache that misses the grant drops some) and no post copy does (a cache
 * that misses the revocation delivers some). Control owners, P_(k mod 5)
 * a member of rv.<k> with "rv.>" throughout, get all 2,000 messages: the
 * pipeline ran. */
#define RV_ROUNDS 1000
#define RV_OWNERS 20
#define RV_FLIP_LAG 10
#define RV_CONTROLS 5
#define RV_R_GEN 1
#define RV_P_GEN 2

/* Chat seqs up to here were fanned out and every entry written for them
 * was judged by the reader. */
static uint64_t judged_through;

static bool wait_judged(uint64_t chat_seq, int64_t timeout_ms)
{
        if (chat_seq <= judged_through)
                return true;
        int64_t deadline = test_now_ms() + timeout_ms;
        uint64_t fanned = 0;
        if (!wait_floor(CHAT, "fanout", chat_seq, timeout_ms, &fanned))
                return false;
        /* The fan-out acks a chat message only once its entries' PubAcks
         * came, so they are at or below INBOX's last seq now. */
        if (!wait_floor(INBOX, "reader", co_last_seq(INBOX), deadline - test_now_ms(), NULL))
                return false;
        judged_through = fanned;
        return true;
}

START_TEST(acl_revoked_then_published_is_not_delivered)
{
        /* owners[0..19] = R_k, owners[20..24] = P_c. */
        char owners[RV_OWNERS + RV_CONTROLS][ID_LEN + 1], sender[ID_LEN + 1], ch[32], id[32];
        static uint64_t post_seq[RV_ROUNDS];
        make_id(sender, "SNDR", 0);
        judged_through = 0;
        for (int c = 0; c < RV_CONTROLS; c++) {
                make_id(owners[RV_OWNERS + c], "CTRL", c);
                co_acl(S, owners[RV_OWNERS + c], "[\"rv.>\"]");
        }
        for (int k = 0; k < RV_OWNERS; k++) {
                make_id(owners[k], "RVKE", k);
                snprintf(ch, sizeof ch, "rv.%d", k);
                /* Round k grants R_k and round k (k < 10) revokes R_(k+10):
                 * start each in the opposite state so every flip is real. */
                co_acl(S, owners[k], k < RV_FLIP_LAG ? "[]" : "[\"rv.>\"]");
                co_member(S, ch, owners[k], 0, RV_R_GEN, -1);
                co_member(S, ch, owners[RV_OWNERS + k % RV_CONTROLS], 0, RV_P_GEN, -1);
        }
        idset *want = calloc(RV_OWNERS + RV_CONTROLS, sizeof *want);
        ck_assert_ptr_nonnull(want);
        int64_t t0 = test_now_ms();
        for (int i = 0; i < RV_ROUNDS; i++) {
                int k = i % RV_OWNERS, j = (k + RV_FLIP_LAG) % RV_OWNERS;
                /* Round i - 10 published post on rv.<k> after pre on rv.<j>:
                 * once post is judged, both owners' last entries are. */
                if (i >= RV_FLIP_LAG)
                        ck_assert_msg(wait_judged(post_seq[i - RV_FLIP_LAG], STEP_MS),
                                      "round %d: the daemon did not judge post-%d", i, i - RV_FLIP_LAG);
                co_acl(S, owners[k], "[\"rv.>\"]");
                snprintf(ch, sizeof ch, "rv.%d", k);
                snprintf(id, sizeof id, "pre-%d", i);
                co_chat(S, sender, ch, id, NULL);
                idset_add(&want[k], "%s:%s:%d", id, owners[k], RV_R_GEN);
                idset_add(&want[RV_OWNERS + k % RV_CONTROLS], "%s:%s:%d", id, owners[RV_OWNERS + k % RV_CONTROLS],
                          RV_P_GEN);

                co_acl(S, owners[j], "[]");
                snprintf(ch, sizeof ch, "rv.%d", j);
                snprintf(id, sizeof id, "post-%d", i);
                post_seq[i] = co_chat(S, sender, ch, id, NULL);
                idset_add(&want[RV_OWNERS + j % RV_CONTROLS], "%s:%s:%d", id, owners[RV_OWNERS + j % RV_CONTROLS],
                          RV_P_GEN);
        }
        int64_t t_pub = test_now_ms() - t0;
        assert_under_cap(want, RV_OWNERS + RV_CONTROLS);

        /* 1,000 pre copies to R plus 2,000 to the controls. */
        uint64_t delivered = co_wait_count(DLV, NULL, 3 * RV_ROUNDS, DRAIN_MS);
        int64_t t_all = test_now_ms() - t0;
        ck_assert_msg(settled(SETTLE_MS), "the daemon did not drain CHAT and INBOX");
        idset *got = NULL;
        size_t bad = dlv_diff(owners, RV_OWNERS + RV_CONTROLS, want, NULL, &got);
        size_t pre_to_r = 0, post_to_r = 0, to_p = 0;
        for (int o = 0; o < RV_OWNERS + RV_CONTROLS; o++)
                for (size_t i = 0; i < got[o].n; i++) {
                        if (o >= RV_OWNERS)
                                to_p++;
                        else if (strncmp(got[o].v[i], "pre-", 4) == 0)
                                pre_to_r++;
                        else
                                post_to_r++;
                }
        fprintf(stderr,
                "freshness: %d grant/revoke rounds published in %lld ms, %llu copies in %lld ms: "
                "pre to R %zu of %d, post to R %zu, controls %zu of %d, %zu differences\n",
                RV_ROUNDS, (long long)t_pub, (unsigned long long)delivered, (long long)t_all, pre_to_r, RV_ROUNDS,
                post_to_r, to_p, 2 * RV_ROUNDS, bad);
        idset_free(got, RV_OWNERS + RV_CONTROLS);
        idset_free(want, RV_OWNERS + RV_CONTROLS);
        ck_assert_msg(to_p == 2 * RV_ROUNDS, "controls got %zu of %d copies", to_p, 2 * RV_ROUNDS);
        ck_assert_msg(post_to_r == 0, "%zu copies delivered after their owner's revocation", post_to_r);
        ck_assert_msg(pre_to_r == RV_ROUNDS, "%zu of %d copies dropped despite the grant", RV_ROUNDS - pre_to_r,
                      RV_ROUNDS);
        ck_assert_msg(bad == 0, "%zu copies missing, extra or twice", bad);
        /* Every message had an entry for R and one for its control. */
        ck_assert_uint_eq(co_last_seq(INBOX), 4 * RV_ROUNDS);
        ck_assert_uint_eq(co_last_seq(DLV), 3 * RV_ROUNDS);
        assert_healthy_and_quiet();
}
END_TEST

/* Test 3. A burst from ten senders over three durable channels (ten
 * members each, some on two) and one live channel with @mentions; one
 * membership ends mid-run (leaveCursor), one starts mid-run (joinCursor),
 * one owner's ACL leaves out a channel he is a member of, one member of
 * the live channel is ignored there, one sender is a member and one is
 * mentioned. The exact set of dedup ids follows from §4.4, §6.2, §6.3 and
 * §7 and the CHAT seq of each message (from its PubAck). */
#define MX_N 3000
#define MX_SENDERS 10
#define MX_MEMBERS 20
#define MX_ANN MX_MEMBERS       /* mentionable, on no durable channel */
#define MX_SAM (MX_MEMBERS + 1) /* sender 0, mentionable */
#define MX_OWNERS (MX_MEMBERS + 2)
#define MX_CID 0     /* member of mx.a, mentionable */
#define MX_BEN 14    /* on mx.b and mx.c, ACL only mx.b */
#define MX_POSTER 1  /* member of mx.a and sender 1 */
#define MX_LEAVER 3  /* leaves mx.a at base + MX_N / 2 */
#define MX_JOINER 17 /* joins mx.c at base + MX_N / 3 */
#define MX_IDLE 2    /* member of the live channel: ignored */
#define MX_HEARTBEAT_MS 1000
#define MX_PROBE_MS 250

static const char *const acl_all[] = {"mx.>", NULL};
static const char *const acl_b[] = {"mx.b", NULL};
static const char *const acl_live[] = {"mx.live", NULL};

typedef struct mx_member {
        const char *channel;
        int owner;
        uint64_t join, gen;
        int64_t leave; /* < 0: none */
} mx_member;

typedef struct mx_run {
        char ids[MX_OWNERS][ID_LEN + 1];
        char senders[MX_SENDERS][ID_LEN + 1];
        const char *const *acl[MX_OWNERS];
        mx_member members[40];
        int n_members;
        uint64_t seq[MX_N];
        atomic_int acked, failed;
        int64_t last_beat;
        int64_t last_probe;
        int probes;
} mx_run;

static const char *const mx_names[] = {"ann", "cid", "ben", "sam"};

static int mx_name_owner(const char *name)
{
        static const int owner[] = {MX_ANN, MX_CID, MX_BEN, MX_SAM};
        for (size_t i = 0; i < sizeof mx_names / sizeof *mx_names; i++)
                if (strcasecmp(name, mx_names[i]) == 0)
                        return owner[i];
        return -1;
}

/* Enough of subjectMatches (§1.3) for the patterns above: exact channels
 * and one trailing ">". */
static bool mx_covers(const char *const *acl, const char *channel)
{
        for (; acl && *acl; acl++) {
                size_t n = strlen(*acl);
                if (n >= 2 && strcmp(*acl + n - 2, ".>") == 0 ? strncmp(*acl, channel, n - 1) == 0 && channel[n - 1]
                                                              : strcmp(*acl, channel) == 0)
                        return true;
        }
        return false;
}

static const char *mx_channel(int i)
{
        /* Blocks of ten messages, one from each sender: 1 in 12 blocks per
         * durable channel (250 messages each), the rest live. */
        switch ((i / MX_SENDERS) % 12) {
        case 0: return "mx.a";
        case 1: return "mx.b";
        case 2: return "mx.c";
        default: return "mx.live";
        }
}

/* Durable messages carry mentions too: §6.2 ignores them. "ANN" repeats
 * ann (one copy); "ben" is not allowed mx.live; "nobody" resolves to no
 * one; sender 0 is sam and sometimes mentions himself. */
static const char *mx_mentions(int i)
{
        static const char *const m[] = {"[\"ann\"]",    "[\"ann\",\"ANN\"]", "[\"ben\"]",
                                        "[\"nobody\"]", "[\"Sam\"]",         "[\"cid\"]"};
        return m[i % 6];
}

static const char *mx_sender(const mx_run *r, int i)
{
        return r->senders[i % MX_SENDERS];
}

static void mx_on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
        (void)js;
        (void)pae;
        mx_run *r = closure;
        const char *id = NULL;
        int i = -1;
        if (pa && !pa->Duplicate && natsMsgHeader_Get(msg, "Nats-Msg-Id", &id) == NATS_OK && id &&
            sscanf(id, "x-%d", &i) == 1 && i >= 0 && i < MX_N)
                r->seq[i] = pa->Sequence;
        else
                atomic_fetch_add(&r->failed, 1);
        atomic_fetch_add(&r->acked, 1);
        natsMsg_Destroy(msg);
}

static bool mx_all_acked(void *arg)
{
        return atomic_load(&((mx_run *)arg)->acked) == MX_N;
}

/* Agents heartbeat their presence (TTL 6 s, §4.7); so does the test while
 * it waits, in case the daemon rebuilds its roster from the bucket. */
static void mx_heartbeat(mx_run *r)
{
        int64_t now = test_now_ms();
        if (now - r->last_beat < MX_HEARTBEAT_MS)
                return;
        r->last_beat = now;
        for (size_t i = 0; i < sizeof mx_names / sizeof *mx_names; i++)
                co_presence(S, r->ids[mx_name_owner(mx_names[i])], mx_names[i]);
}

static bool mx_dlv_has(const char *owner)
{
        char subject[128];
        snprintf(subject, sizeof subject, "cotal." S ".dlv.%s", owner);
        return co_messages(DLV, subject) > 0;
}

/* The roster is fed by a watch, outside §6.4's guarantee: mention probes
 * are repeated until ann, cid and sam each got one. */
static bool mx_roster_ready(void *arg)
{
        mx_run *r = arg;
        if (mx_dlv_has(r->ids[MX_ANN]) && mx_dlv_has(r->ids[MX_CID]) && mx_dlv_has(r->ids[MX_SAM]))
                return true;
        int64_t now = test_now_ms();
        if (now - r->last_probe >= MX_PROBE_MS) {
                char id[32];
                r->last_probe = now;
                snprintf(id, sizeof id, "probe-%d", r->probes++);
                co_chat(S, r->senders[2], "mx.live", id, "\"mentions\":[\"ann\",\"cid\",\"sam\"]");
        }
        mx_heartbeat(r);
        return false;
}

typedef struct mx_drain {
        mx_run *r;
        uint64_t want, seen;
} mx_drain;

static bool mx_drained(void *arg)
{
        mx_drain *d = arg;
        mx_heartbeat(d->r);
        d->seen = co_last_seq(DLV);
        return d->seen >= d->want;
}

static void mx_member_add(mx_run *r, const char *channel, int owner, uint64_t join, int64_t leave)
{
        ck_assert_int_lt(r->n_members, (int)(sizeof r->members / sizeof *r->members));
        /* Distinct generations per record, so the dedup id proves which. */
        mx_member m = {channel, owner, join, 1 + (uint64_t)r->n_members % 5, leave};
        r->members[r->n_members++] = m;
        co_member(S, channel, r->ids[owner], m.join, m.gen, m.leave);
}

/* What §6 and §7 make of message i: appended to want. */
static void mx_expect(const mx_run *r, int i, idset *want)
{
        const char *ch = mx_channel(i), *from = mx_sender(r, i);
        uint64_t seq = r->seq[i];
        if (strcmp(ch, "mx.live") != 0) {
                for (int k = 0; k < r->n_members; k++) {
                        const mx_member *m = &r->members[k];
                        if (strcmp(m->channel, ch) != 0 || strcmp(r->ids[m->owner], from) == 0)
                                continue;
                        if (!(seq > m->join && (m->leave < 0 || seq <= (uint64_t)m->leave)))
                                continue; /* §4.4 */
                        if (!mx_covers(r->acl[m->owner], ch))
                                continue; /* §7 row 5 */
                        idset_add(&want[m->owner], "x-%d:%s:%llu", i, r->ids[m->owner], (unsigned long long)m->gen);
                }
                return;
        }
        bool done[MX_OWNERS] = {false};
        json_t *names = json_loads(mx_mentions(i), 0, NULL);
        size_t k;
        json_t *v;
        json_array_foreach (names, k, v) {
                int o = mx_name_owner(json_string_value(v));
                if (o < 0 || done[o] || strcmp(r->ids[o], from) == 0 || !mx_covers(r->acl[o], ch))
                        continue;
                done[o] = true; /* the same id collapses at the stream */
                idset_add(&want[o], "x-%d:%s:0", i, r->ids[o]);
        }
        json_decref(names);
}

START_TEST(mixed_load_yields_exactly_the_expected_set)
{
        mx_run *r = calloc(1, sizeof *r);
        ck_assert_ptr_nonnull(r);
        for (int o = 0; o < MX_MEMBERS; o++) {
                make_id(r->ids[o], "MEMB", o);
                r->acl[o] = o == MX_BEN ? acl_b : acl_all;
        }
        make_id(r->ids[MX_ANN], "ANNE", 0);
        r->acl[MX_ANN] = acl_live;
        make_id(r->ids[MX_SAM], "SEND", 0);
        r->acl[MX_SAM] = acl_all;
        for (int s = 0; s < MX_SENDERS; s++)
                make_id(r->senders[s], "SEND", s); /* senders[0] is sam */
        memcpy(r->senders[1], r->ids[MX_POSTER], sizeof r->senders[1]);
        for (int o = 0; o < MX_OWNERS; o++) {
                char json[128];
                size_t len = 0;
                len += (size_t)snprintf(json + len, sizeof json - len, "[");
                for (const char *const *p = r->acl[o]; *p; p++)
                        len += (size_t)snprintf(json + len, sizeof json - len, "%s\"%s\"", p == r->acl[o] ? "" : ",",
                                                *p);
                snprintf(json + len, sizeof json - len, "]");
                co_acl(S, r->ids[o], json);
        }
        tu_kv_put("cotal_channels_" S, "mx.live", "{\"deliveryClass\":\"live\"}");
        r->last_beat = r->last_probe = -MX_PROBE_MS - MX_HEARTBEAT_MS;
        ck_assert_msg(test_wait_until(mx_roster_ready, r, STEP_MS), "mention probes never reached ann, cid and sam");
        /* Late probe copies must not count towards the run. */
        ck_assert_msg(settled(SETTLE_MS), "the daemon did not drain the probes");
        uint64_t probes = co_last_seq(DLV);

        /* Member records, with cursors relative to the CHAT seq before the
         * run: written up front, read for each message (§6.4). */
        uint64_t base = co_last_seq(CHAT);
        for (int o = 0; o < MX_MEMBERS; o++) {
                if (o < 10)
                        mx_member_add(r, "mx.a", o, base, o == MX_LEAVER ? (int64_t)(base + MX_N / 2) : -1);
                if (o >= 5 && o < 15)
                        mx_member_add(r, "mx.b", o, base, -1);
                if (o >= 10)
                        mx_member_add(r, "mx.c", o, o == MX_JOINER ? base + MX_N / 3 : base, -1);
        }
        mx_member_add(r, "mx.live", MX_IDLE, 0, -1);

        jsOptions jo;
        jsOptions_Init(&jo);
        jo.PublishAsync.AckHandler = mx_on_ack;
        jo.PublishAsync.AckHandlerClosure = r;
        jsCtx *js = NULL;
        ck_assert(natsConnection_JetStream(&js, tu_nc, &jo) == NATS_OK);
        int64_t t0 = test_now_ms();
        for (int i = 0; i < MX_N; i++) {
                char subject[256], body[512], id[32];
                snprintf(id, sizeof id, "x-%d", i);
                snprintf(subject, sizeof subject, "cotal." S ".chat.%s.%s", mx_sender(r, i), mx_channel(i));
                int len =
                        snprintf(body, sizeof body,
                                 "{\"id\":\"%s\",\"ts\":1,\"space\":\"" S "\",\"from\":{\"id\":\"%s\",\"name\":\"s\"},"
                                 "\"channel\":\"%s\",\"parts\":[{\"kind\":\"text\",\"text\":\"%s\"}],"
                                 "\"mentions\":%s}",
                                 id, mx_sender(r, i), mx_channel(i), id, mx_mentions(i));
                jsPubOptions po;
                jsPubOptions_Init(&po);
                po.MsgId = id;
                ck_assert(js_PublishAsync(js, subject, body, len, &po) == NATS_OK);
        }
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = STEP_MS; /* a lost ack would block forever otherwise */
        ck_assert(js_PublishAsyncComplete(js, &po) == NATS_OK);
        ck_assert_msg(test_wait_until(mx_all_acked, r, STEP_MS), "PubAcks missing");
        jsCtx_Destroy(js);
        int64_t t_pub = test_now_ms() - t0;
        ck_assert_int_eq(atomic_load(&r->failed), 0);
        ck_assert_uint_eq(co_last_seq(CHAT), base + MX_N);

        idset *want = calloc(MX_OWNERS, sizeof *want);
        ck_assert_ptr_nonnull(want);
        for (int i = 0; i < MX_N; i++) {
                ck_assert(r->seq[i] > base && r->seq[i] <= base + MX_N);
                mx_expect(r, i, want);
        }
        assert_under_cap(want, MX_OWNERS);
        size_t expected = 0;
        for (int o = 0; o < MX_OWNERS; o++)
                expected += want[o].n;
        /* Each rule must have had something to act on. */
        ck_assert_uint_gt(want[MX_LEAVER].n, 0);
        ck_assert_uint_lt(want[MX_LEAVER].n, want[4].n);
        ck_assert_uint_lt(want[MX_JOINER].n, want[16].n);
        ck_assert_uint_lt(want[MX_BEN].n, want[13].n);
        ck_assert_uint_gt(want[MX_ANN].n, 0);
        ck_assert_uint_gt(want[MX_SAM].n, 0);

        mx_drain d = {r, probes + expected, 0};
        (void)test_wait_until(mx_drained, &d, DRAIN_MS);
        int64_t t_all = test_now_ms() - t0;
        ck_assert_msg(settled(SETTLE_MS), "the daemon did not drain CHAT and INBOX");
        size_t bad = dlv_diff(r->ids, MX_OWNERS, want, "probe-", NULL);
        fprintf(stderr,
                "freshness: mixed run of %d messages published in %lld ms, %zu copies expected, %llu in "
                "%lld ms, %zu differences\n",
                MX_N, (long long)t_pub, expected, (unsigned long long)(d.seen - probes), (long long)t_all, bad);
        idset_free(want, MX_OWNERS);
        free(r);
        ck_assert_msg(bad == 0, "%zu copies missing, extra or twice", bad);
        ck_assert_uint_eq(co_last_seq(DLV), probes + expected);
        assert_healthy_and_quiet();
}
END_TEST

int main(void)
{
        Suite *s = suite_create("daemon_freshness");
        TCase *tc = tcase_create("freshness");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 300);
        tcase_add_test(tc, member_written_then_published_is_fanned_out);
        tcase_add_test(tc, acl_revoked_then_published_is_not_delivered);
        tcase_add_test(tc, mixed_load_yields_exactly_the_expected_set);
        suite_add_tcase(s, tc);
        return co_run(s);
}
