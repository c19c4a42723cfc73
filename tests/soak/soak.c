/* cotal-soak: the randomized, model-checked soak (issue 13). One run
 * drives a real nats-server on 127.0.0.1 and two cotal-deliveryd (both
 * `standby = true`, so one holds the lease and the other waits) with a
 * schedule drawn from a seeded RNG: posts on durable and live channels with
 * @mentions, joins (fresh, idempotent, and catch-ups of more than 1,000
 * entries), leaves and rejoins, ACL changes, bursts toward the INBOX cap,
 * daemon SIGKILL/SIGTERM (restarted as systemd would), standby takeovers,
 * broker SIGSTOP/SIGCONT and restarts, SIGHUP with changed tunables, and
 * poison chat and inbox input. Operations whose outcome would race the
 * pipeline (ACL changes, leaves, rejoins over a tombstone, catch-up
 * fixtures) run only at quiescent points, when fanout and reader have
 * nothing pending. At the end: every expected dedup id exactly once in DLV,
 * nothing else, nothing pending. It never decides from the daemon's code,
 * only from PROTOCOL §4-§8 and what the broker answered.
 *
 *   cotal-soak [--minutes N] [--seed S] [--keep] [--broker-sigkill] [--strict-broker]
 *
 * Needs COTAL_DELIVERYD and COTAL_DELIVERYCTL. Exit 0 pass, 1 fail. */
#include "broker.h"
#include "contract_subject.h"
#include "jspub.h"
#include "kv.h"
#include "natsd.h"
#include "proc.h"
#include "soak.h"

#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SPACE "soak"
#define N_OWNERS 12
#define N_SLOTS 2
#define BROKER_GONE_MS 4000
#define RESTART_SEC_MS 2000 /* the unit's RestartSec= (systemd/cotal-deliveryd@.service) */
#define API_TIMEOUT_MS 5000
#define PUBLISH_RETRY_MS 90000 /* a broker restart or freeze, then the store's recovery */
#define KV_RETRY_MS 60000
#define CTL_ATTEMPT_MS 20000 /* a 2,500-entry catch-up takes seconds on a busy machine */
#define CTL_RETRY_MS 150000  /* lease TTL 30 s + start, twice */
#define READY_WAIT_MS 90000
/* Two ack_wait rounds (the nats-server 2.9.10 redelivery straggler comes
 * after the second) plus a takeover and a drain. */
#define QUIESCE_MS 200000
#define FINAL_DRAIN_MS 300000
#define OBSERVER_CATCHUP_MS 120000
#define ROSTER_UNSURE_MS 30000 /* after a broker fault, a rebuilt roster may lack expired presence */
#define BROKER_FAULT_GRACE_MS 60000
#define POLL_MS 100
#define QUIESCE_REPORT_MS 10000
#define STEP_PAUSE_MAX_MS 200
#define BURST_MIN 400
#define BURST_MAX 2500
#define BIG_JOIN_MIN 1100 /* a catch-up window beyond INBOX's 1,000 per owner */
#define BIG_JOIN_MAX 2500
#define DIFFS_SHOWN 20
#define PUB_CHUNK 1000

enum fault {
        F_DAEMON_KILL_HOLDER,
        F_DAEMON_TERM_HOLDER,
        F_DAEMON_KILL_STANDBY,
        F_DAEMON_TERM_STANDBY,
        F_BURST,
        F_BURST_RESTARTS,
        F_BROKER_FREEZE_SHORT,
        F_BROKER_FREEZE_LONG,
        F_BROKER_RESTART_TERM,
        F_BROKER_RESTART_KILL,
        F_SIGHUP,
        F_POISON_CHAT,
        F_POISON_INBOX,
        F_ACL_CHANGE,
        F_LEAVE,
        F_REJOIN,
        F_FRESH_JOIN,
        F_BIG_JOIN,
        F_IDEMPOTENT_JOIN,
        F_BAD_CONTROL,
        F_QUIESCE,
        N_FAULTS
};
static const char *const fault_names[N_FAULTS] = {
        "daemon SIGKILL (holder)",
        "daemon SIGTERM (holder)",
        "daemon SIGKILL (standby)",
        "daemon SIGTERM (standby)",
        "burst",
        "holder restarts during a burst",
        "broker SIGSTOP shorter than broker-gone-ms",
        "broker SIGSTOP longer than broker-gone-ms",
        "broker SIGTERM + restart",
        "broker SIGKILL + restart",
        "SIGHUP with changed tunables",
        "poison chat",
        "poison inbox entry",
        "ACL change (quiescent)",
        "leave (quiescent)",
        "rejoin over a tombstone (quiescent)",
        "fresh join (under traffic)",
        "join with catch-up > 1,000 (quiescent)",
        "idempotent join",
        "refused control request",
        "quiescent points reached",
};

typedef struct slot {
        proc p;
        bool running;
        int incarnation;
        int sent_sig;
        int64_t restart_at;
        char id[SOAK_ID_LEN + 1];
} slot;

struct soak {
        uint64_t seed;
        double minutes;
        bool keep;
        /* Whether "broker SIGKILL + restart" really SIGKILLs: nats-server
         * 2.9 can lose messages it stored and acknowledged, whole owner
         * subjects of them, in a SIGKILL (see broker_kill_safe). */
        bool broker_sigkill;
        bool strict_broker; /* losses the broker is proven to cause fail too */
        char broker_version[64];
        char workdir[256];
        char conf[300];
        FILE *sched;
        const char *deliveryd, *deliveryctl;
        int64_t t0;
        uint64_t rng;

        natsd broker;
        natsConnection *nc;
        jsCtx *js;
        jspub pub;
        contract_names names;
        kv_bucket kv_members, kv_acl, kv_lease, kv_channels;

        soak_model model;
        soak_observer dlv, inbox;
        soak_presence presence;
        slot slots[N_SLOTS];

        int fanout_batch, reader_batch, lead_limit;
        int64_t broker_fault_until, roster_unsure_until;
        /* Senders: owners post as themselves; a pool of other agents keeps
         * every (sender, channel) subject under SOAK_PER_SUBJECT_MAX. */
        int owner_posts[SOAK_N_CH][N_OWNERS];
        int pool_sender[SOAK_N_CH], pool_posts[SOAK_N_CH];
        uint64_t poison_n;

        uint64_t faults[N_FAULTS];
        uint64_t posts_durable, posts_live, posts_poison, inbox_poison, mentions;
        uint64_t exits_expected, exits_one, exits_zero_unasked;
        int failures;
        char failure_text[8][512];
        bool stop_requested;
};

static struct soak g;
static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
        (void)sig;
        interrupted = 1;
}

static int64_t now_ms(void)
{
        return soak_mono_ms() - g.t0;
}

static int64_t wall_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nap_ms(int ms)
{
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
}

/* ---- the seeded schedule ---- */

static uint64_t rnd(void)
{
        uint64_t z = (g.rng += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
}

static int rnd_below(int n)
{
        return n > 0 ? (int)(rnd() % (uint64_t)n) : 0;
}

static int rnd_between(int lo, int hi)
{
        return lo + rnd_below(hi - lo + 1);
}

static bool chance(int percent)
{
        return rnd_below(100) < percent;
}

/* Every operation goes to the schedule file; notable ones to stdout too. */
__attribute__((format(printf, 2, 3))) static void note(bool loud, const char *fmt, ...)
{
        char line[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(line, sizeof line, fmt, ap);
        va_end(ap);
        double t = (double)now_ms() / 1000.0;
        if (g.sched)
                fprintf(g.sched, "%9.3f %s\n", t, line);
        if (loud) {
                printf("soak: %8.1f s  %s\n", t, line);
                fflush(stdout);
        }
}

__attribute__((format(printf, 1, 2))) static void fail(const char *fmt, ...)
{
        char line[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(line, sizeof line, fmt, ap);
        va_end(ap);
        if (g.failures < 8)
                snprintf(g.failure_text[g.failures], sizeof g.failure_text[0], "%s", line);
        g.failures++;
        note(true, "FAILURE: %s", line);
}

/* "U" + tag + n in base32 + 'A' padding: nkey-shaped, so token(id) == id. */
static void make_id(char out[SOAK_ID_LEN + 1], const char *tag, uint64_t n)
{
        static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        int len = snprintf(out, SOAK_ID_LEN + 1, "U%s", tag);
        for (int i = 0; i < 8; i++, n >>= 5)
                out[len++] = b32[n & 31];
        while (len < SOAK_ID_LEN)
                out[len++] = 'A';
        out[len] = '\0';
}

/* ---- daemons, supervised as systemd would (Restart=, RestartSec=2s) ---- */

static void slot_spawn(int i)
{
        slot *s = &g.slots[i];
        if (s->running)
                return;
        char *argv[] = {(char *)g.deliveryd, "--space",  SPACE,  "--server", g.broker.url,
                        "--no-auth",         "--config", g.conf, NULL};
        int inc = s->incarnation + 1;
        memset(s, 0, sizeof *s);
        s->incarnation = inc;
        if (proc_spawn(&s->p, argv, NULL) < 0) {
                fail("cannot spawn cotal-deliveryd: %s", strerror(errno));
                s->restart_at = now_ms() + RESTART_SEC_MS;
                return;
        }
        s->running = true;
        note(false, "daemon %d: started (incarnation %d, pid %d)", i, s->incarnation, (int)s->p.pid);
}

/* The daemon's id, once it has logged it (after its signal mask is set:
 * a signal before that would kill it with the default action). */
static const char *slot_id(int i)
{
        slot *s = &g.slots[i];
        if (!s->running)
                return NULL;
        if (!s->id[0]) {
                FILE *f = fopen(s->p.err_path, "r");
                char buf[8192];
                size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
                if (f)
                        fclose(f);
                buf[n] = '\0';
                const char *at = strstr(buf, "Connected to ");
                at = at ? strstr(at, " as U") : NULL;
                if (at && strlen(at + 4) >= SOAK_ID_LEN)
                        snprintf(s->id, sizeof s->id, "%.56s", at + 4);
        }
        return s->id[0] ? s->id : NULL;
}

static char *slurp(const char *path)
{
        FILE *f = fopen(path, "r");
        if (!f)
                return strdup("");
        fseek(f, 0, SEEK_END);
        long len = ftell(f);
        fseek(f, 0, SEEK_SET);
        char *b = malloc((size_t)(len > 0 ? len : 0) + 1);
        size_t n = b ? fread(b, 1, (size_t)(len > 0 ? len : 0), f) : 0;
        fclose(f);
        if (b)
                b[n] = '\0';
        return b ? b : strdup("");
}

static void slot_reap(int i)
{
        slot *s = &g.slots[i];
        if (!s->running || proc_wait(&s->p, 0) != 0)
                return;
        int st = s->p.status;
        char *err = slurp(s->p.err_path), *out = slurp(s->p.out_path);
        const char *why = "?";
        if (s->sent_sig == SIGKILL && st == 128 + SIGKILL) {
                why = "killed by the soak";
                g.exits_expected++;
        } else if (s->sent_sig == SIGTERM && st == 0) {
                why = "stopped by the soak";
                g.exits_expected++;
        } else if (st == 1) {
                /* §10.4: broker gone, lease lost: systemd restarts it. */
                why = now_ms() < g.broker_fault_until ? "exit 1 during a broker fault" : "exit 1 (no broker fault)";
                g.exits_one++;
        } else if (st == 0) {
                why = "exit 0 unasked";
                g.exits_zero_unasked++;
        } else {
                why = "CRASH";
                fail("daemon %d (incarnation %d) ended with status %d; log in %s/daemon-%d.log", i, s->incarnation, st,
                     g.workdir, i);
        }
        if (strstr(err, "runtime error:") || strstr(err, "Sanitizer"))
                fail("daemon %d (incarnation %d) printed a sanitizer report; log in %s/daemon-%d.log", i,
                     s->incarnation, g.workdir, i);
        char path[400];
        snprintf(path, sizeof path, "%s/daemon-%d.log", g.workdir, i);
        FILE *f = fopen(path, "a");
        if (f) {
                fprintf(f,
                        "==== daemon %d incarnation %d id %s: status %d (%s) at %.3f s\n---- stdout\n%s---- stderr\n%s",
                        i, s->incarnation, s->id[0] ? s->id : "?", st, why, (double)now_ms() / 1000.0, out, err);
                fclose(f);
        }
        free(err);
        free(out);
        note(strcmp(why, "killed by the soak") != 0 && strcmp(why, "stopped by the soak") != 0,
             "daemon %d: exited with status %d (%s)", i, st, why);
        proc_destroy(&s->p);
        s->running = false;
        s->restart_at = now_ms() + RESTART_SEC_MS;
}

static void supervise(void)
{
        for (int i = 0; i < N_SLOTS; i++) {
                slot_reap(i);
                if (!g.slots[i].running && !g.stop_requested && now_ms() >= g.slots[i].restart_at)
                        slot_spawn(i);
        }
}

/* Waits ms while keeping the daemons supervised (the schedule's pause). */
static void pause_ms(int ms)
{
        int64_t end = now_ms() + ms;
        while (now_ms() < end) {
                supervise();
                int64_t left = end - now_ms();
                nap_ms(left < POLL_MS ? (int)(left > 0 ? left : 0) : POLL_MS);
        }
}

/* The slot holding a ready lease (§4.5), or -1. */
static int holder_slot(void)
{
        kv_entry e;
        if (kv_get(&g.kv_lease, "lease.0", &e) != 0)
                return -1;
        int found = -1;
        json_t *v = e.op == KV_OP_PUT && e.value ? json_loads(e.value, 0, NULL) : NULL;
        const char *holder = json_string_value(json_object_get(v, "holder"));
        if (holder && json_is_true(json_object_get(v, "ready")))
                for (int i = 0; i < N_SLOTS; i++) {
                        const char *id = slot_id(i);
                        if (id && strcmp(id, holder) == 0)
                                found = i;
                }
        json_decref(v);
        kv_entry_fini(&e);
        return found;
}

static bool wait_holder(int64_t timeout_ms)
{
        int64_t end = now_ms() + timeout_ms;
        while (now_ms() < end) {
                supervise();
                if (holder_slot() >= 0)
                        return true;
                nap_ms(POLL_MS);
        }
        return false;
}

static void signal_slot(int i, int sig, const char *role)
{
        slot *s = &g.slots[i];
        s->sent_sig = sig;
        proc_signal(&s->p, sig);
        note(true, "daemon %d (%s): %s (incarnation %d)", i, role,
             sig == SIGKILL   ? "SIGKILL"
             : sig == SIGTERM ? "SIGTERM"
                              : "SIGHUP",
             s->incarnation);
}

/* The holder, or (holder = false) another running daemon that has set
 * its signal mask; -1 if none. */
static int pick_slot(bool holder)
{
        int h = holder_slot();
        if (holder)
                return h;
        for (int i = 0; i < N_SLOTS; i++)
                if (i != h && slot_id(i))
                        return i;
        return -1;
}

static void write_config(void)
{
        FILE *f = fopen(g.conf, "w");
        if (!f) {
                fail("cannot write %s", g.conf);
                return;
        }
        fprintf(f,
                "# written by cotal-soak\nlog-level = info\nstandby = true\ndiag-socket = none\n"
                "broker-gone-ms = %d\nfanout-batch = %d\nreader-batch = %d\ninbox-lead-limit = %d\n",
                BROKER_GONE_MS, g.fanout_batch, g.reader_batch, g.lead_limit);
        fclose(f);
}

/* ---- broker access, retried across the faults the soak injects ---- */

static int consumer_state(const char *stream, const char *consumer, uint64_t *pending, uint64_t *ack_pending)
{
        json_t *r = NULL;
        int rc = jsapi_consumer_info(g.nc, stream, consumer, API_TIMEOUT_MS, &r, NULL);
        if (rc == 0)
                rc = json_path_u64(r, "num_pending", pending);
        if (rc == 0)
                rc = json_path_u64(r, "num_ack_pending", ack_pending);
        json_decref(r);
        return rc;
}

static int stream_state(const char *stream, uint64_t *first, uint64_t *last)
{
        json_t *r = NULL;
        int rc = jsapi_stream_info(g.nc, stream, NULL, API_TIMEOUT_MS, &r, NULL);
        if (rc == 0 && first)
                rc = json_path_u64(r, "state.first_seq", first);
        if (rc == 0 && last)
                rc = json_path_u64(r, "state.last_seq", last);
        json_decref(r);
        return rc;
}

/* Publishes one chat message until a PubAck says where it is (the
 * Nats-Msg-Id makes a retry of a stored message a duplicate with the same
 * seq). false if it never landed. */
static bool publish(const char *subject, const char *id, const char *data, size_t len, uint64_t *seq)
{
        int64_t end = now_ms() + PUBLISH_RETRY_MS;
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = id;
        po.MaxWait = 3000;
        while (now_ms() < end) {
                jsPubAck *pa = NULL;
                natsStatus s = js_Publish(&pa, g.js, subject, data, (int)len, &po, NULL);
                if (s == NATS_OK) {
                        *seq = pa->Sequence;
                        jsPubAck_Destroy(pa);
                        return true;
                }
                jsPubAck_Destroy(pa);
                pause_ms(250);
        }
        return false;
}

static bool kv_put_retrying(kv_bucket *kv, const char *key, const char *value)
{
        int64_t end = now_ms() + KV_RETRY_MS;
        while (now_ms() < end) {
                if (kv_put(kv, key, value, strlen(value), NULL) == 0)
                        return true;
                pause_ms(250);
        }
        fail("could not write %s/%s: %s", kv->bucket, key, kv->last_error);
        return false;
}

typedef struct record {
        bool present;
        uint64_t gen, jc, lc; /* lc SOAK_OPEN when absent */
        bool activated;
} record;

/* Reads <channel>/<owner> back (§4.4 readable record). false: not read. */
static bool read_record(int ch, int o, record *r)
{
        char key[256];
        snprintf(key, sizeof key, "%s/%s", soak_channel_names[ch], g.model.ids[o]);
        int64_t end = now_ms() + KV_RETRY_MS;
        memset(r, 0, sizeof *r);
        r->lc = SOAK_OPEN;
        while (now_ms() < end) {
                kv_entry e;
                int rc = kv_get(&g.kv_members, key, &e);
                if (rc == -ENOENT)
                        return true;
                if (rc == 0) {
                        json_t *v = e.op == KV_OP_PUT && e.value ? json_loads(e.value, 0, NULL) : NULL;
                        if (json_is_integer(json_object_get(v, "generation")) &&
                            json_is_integer(json_object_get(v, "joinCursor"))) {
                                r->present = true;
                                r->gen = (uint64_t)json_integer_value(json_object_get(v, "generation"));
                                r->jc = (uint64_t)json_integer_value(json_object_get(v, "joinCursor"));
                                if (json_is_integer(json_object_get(v, "leaveCursor")))
                                        r->lc = (uint64_t)json_integer_value(json_object_get(v, "leaveCursor"));
                                r->activated = json_is_true(json_object_get(v, "activated"));
                        }
                        json_decref(v);
                        kv_entry_fini(&e);
                        return true;
                }
                pause_ms(250);
        }
        fail("could not read member record %s", key);
        return false;
}

/* One control request (§8) from owner o; the reply (owned) or NULL. */
static json_t *ctl_once(int o, const char *body, int64_t timeout_ms)
{
        char subject[256], reply[400];
        snprintf(subject, sizeof subject, "cotal.%s.ctl.delivery.%s", SPACE, g.model.ids[o]);
        natsInbox *uniq = NULL;
        if (natsInbox_Create(&uniq) != NATS_OK)
                return NULL;
        snprintf(reply, sizeof reply, "%s.reply.%s", subject, strchr(uniq, '.') + 1);
        natsInbox_Destroy(uniq);
        natsSubscription *sub = NULL;
        if (natsConnection_SubscribeSync(&sub, g.nc, reply) != NATS_OK)
                return NULL;
        json_t *j = NULL;
        if (natsConnection_PublishRequest(g.nc, subject, reply, body, (int)strlen(body)) == NATS_OK &&
            natsConnection_FlushTimeout(g.nc, API_TIMEOUT_MS) == NATS_OK) {
                natsMsg *m = NULL;
                if (natsSubscription_NextMsg(&m, sub, timeout_ms) == NATS_OK) {
                        j = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
                        natsMsg_Destroy(m);
                }
        }
        broker_sub_close(g.nc, &sub);
        return j;
}

/* A request retried until some daemon answers it (joins and leaves are
 * idempotent: a retry over an unfinished activation copies the same
 * window again, §8.6). NULL if none did within CTL_RETRY_MS. */
static json_t *ctl(int o, const char *body)
{
        int64_t end = now_ms() + CTL_RETRY_MS;
        while (now_ms() < end && !interrupted) {
                if (holder_slot() < 0) {
                        pause_ms(POLL_MS * 5);
                        continue;
                }
                json_t *j = ctl_once(o, body, CTL_ATTEMPT_MS);
                if (j)
                        return j;
                supervise();
        }
        return NULL;
}

/* ---- the pipeline and quiescent points ---- */

/* Nothing pending anywhere: fanout and reader have no message waiting and
 * none delivered unacked (§3), with a holder ready. */
static bool quiet_now(uint64_t st[4])
{
        bool holder = holder_slot() >= 0;
        if (consumer_state(g.names.chat_stream, CONTRACT_FANOUT_DURABLE, &st[0], &st[1]) < 0 ||
            consumer_state(g.names.inbox_stream, CONTRACT_READER_DURABLE, &st[2], &st[3]) < 0)
                return false;
        if (!holder || st[0] || st[1] || st[2] || st[3])
                return false;
        /* The fan-out acks a message only after its entries are stored, so
         * read the reader again: nothing was written in between. */
        return consumer_state(g.names.inbox_stream, CONTRACT_READER_DURABLE, &st[2], &st[3]) == 0 && !st[2] && !st[3];
}

static bool quiesce(const char *why, int64_t timeout_ms)
{
        int64_t t = now_ms(), end = t + timeout_ms, next_report = t + QUIESCE_REPORT_MS;
        uint64_t st[4] = {0};
        while (now_ms() < end && !interrupted) {
                supervise();
                if (now_ms() >= next_report) {
                        /* What a slow drain waits for: an ack_wait redelivery
                         * shows as unacked entries that do not move. */
                        next_report += QUIESCE_REPORT_MS;
                        note(false,
                             "draining for %s: %.0f s, fanout pending %" PRIu64 " unacked %" PRIu64
                             ", reader pending %" PRIu64 " unacked %" PRIu64 ", holder %d",
                             why, (double)(now_ms() - t) / 1000.0, st[0], st[1], st[2], st[3], holder_slot());
                }
                if (quiet_now(st)) {
                        g.faults[F_QUIESCE]++;
                        soak_model_next_epoch(&g.model);
                        note(false, "quiescent for %s after %.1f s: epoch %u", why, (double)(now_ms() - t) / 1000.0,
                             g.model.epoch);
                        return true;
                }
                nap_ms(POLL_MS);
        }
        if (!interrupted)
                fail("pipeline not drained %.0f s before %s: fanout pending %" PRIu64 " unacked %" PRIu64
                     ", reader pending %" PRIu64 " unacked %" PRIu64 "%s",
                     (double)timeout_ms / 1000.0, why, st[0], st[1], st[2], st[3],
                     holder_slot() < 0 ? " (no ready holder)" : "");
        return false;
}

/* ---- posts ---- */

/* The current pool sender of ch: a fresh agent id every
 * SOAK_PER_SUBJECT_MAX posts. */
static const char *pool_sender(int ch)
{
        static char id[SOAK_ID_LEN + 1];
        if (g.pool_posts[ch] >= SOAK_PER_SUBJECT_MAX) {
                g.pool_sender[ch]++;
                g.pool_posts[ch] = 0;
        }
        g.pool_posts[ch]++;
        make_id(id, "SND", (uint64_t)ch * 100000 + (uint64_t)g.pool_sender[ch]);
        return id;
}

static const char *sender_for(int ch, int *owner)
{
        if (chance(30)) {
                int o = rnd_below(N_OWNERS);
                if (g.owner_posts[ch][o] < SOAK_PER_SUBJECT_MAX) {
                        g.owner_posts[ch][o]++;
                        *owner = o;
                        return g.model.ids[o];
                }
        }
        *owner = -1;
        return pool_sender(ch);
}

/* mentions: names (some unknown, some upper case, some the sender's own);
 * fills *mask with the owners they resolve to (§6.3). */
static void draw_mentions(bool live, int sender_owner, char *json, size_t size, uint16_t *mask)
{
        *mask = 0;
        int n = live ? rnd_between(1, 3) : (chance(20) ? 1 : 0);
        size_t len = (size_t)snprintf(json, size, "[");
        for (int k = 0; k < n; k++) {
                char name[32];
                int r = rnd_below(100);
                if (r < 10)
                        snprintf(name, sizeof name, "nobody");
                else if (r < 20 && sender_owner >= 0)
                        snprintf(name, sizeof name, "%s", g.model.names[sender_owner]);
                else
                        snprintf(name, sizeof name, "%s", g.model.names[rnd_below(N_OWNERS)]);
                if (chance(20))
                        for (char *c = name; *c; c++)
                                *c = (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
                int o = soak_model_resolve(&g.model, name);
                if (o >= 0)
                        *mask |= (uint16_t)(1u << o);
                len += (size_t)snprintf(json + len, size - len, "%s\"%s\"", k ? "," : "", name);
        }
        snprintf(json + len, size - len, "]");
}

static void chat_body(char *body, size_t size, const char *id, const char *from, int ch, const char *mentions)
{
        snprintf(body, size,
                 "{\"id\":\"%.23s\",\"ts\":%lld,\"space\":\"" SPACE "\",\"from\":{\"id\":\"%.56s\",\"name\":\"agent\"},"
                 "\"channel\":\"%s\",\"mentions\":%.200s,\"parts\":[{\"kind\":\"text\",\"text\":\"soak %.23s\"}]}",
                 id, (long long)wall_ms(), from, soak_channel_names[ch], mentions, id);
}

static uint8_t post_flags(bool live)
{
        return live && now_ms() < g.roster_unsure_until ? POST_ROSTER_UNSURE : 0;
}

static void post_one(int ch)
{
        int so;
        const char *from = sender_for(ch, &so);
        bool live = !soak_channel_durable[ch];
        char mentions[256], body[1024], id[32], subject[256];
        soak_post p = {.t_ms = now_ms(), .epoch = g.model.epoch, .sender_owner = (int16_t)so, .ch = (uint8_t)ch};
        draw_mentions(live, so, mentions, sizeof mentions, &p.mentions);
        p.flags = post_flags(live);
        size_t idx = g.model.n_posts;
        snprintf(id, sizeof id, "p%zu", idx);
        snprintf(subject, sizeof subject, "cotal.%s.chat.%s.%s", SPACE, from, soak_channel_names[ch]);
        chat_body(body, sizeof body, id, from, ch, mentions);
        if (!publish(subject, id, body, strlen(body), &p.seq)) {
                p.flags |= POST_SEQ_UNKNOWN;
                fail("post %s on %s never confirmed", id, soak_channel_names[ch]);
        }
        soak_model_add_post(&g.model, &p);
        if (live) {
                g.posts_live++;
                g.mentions += (uint64_t)__builtin_popcount(p.mentions);
        } else {
                g.posts_durable++;
        }
        note(false, "post %s seq %" PRIu64 " on %s from %s mentions %s", id, p.seq, soak_channel_names[ch],
             so >= 0 ? g.model.names[so] : "pool", mentions);
}

static int draw_channel(void)
{
        static const int weights[SOAK_N_CH] = {30, 20, 20, 20, 10};
        int r = rnd_below(100);
        for (int c = 0; c < SOAK_N_CH; c++) {
                if (r < weights[c])
                        return c;
                r -= weights[c];
        }
        return CH_DUR_A;
}

/* n durable posts on ch from pool senders, pipelined; returns the count. */
static int burst(int ch, int n)
{
        int64_t t = now_ms();
        int done = 0;
        while (done < n && !interrupted) {
                int chunk = n - done < PUB_CHUNK ? n - done : PUB_CHUNK;
                size_t first = g.model.n_posts;
                jspub_reset(&g.pub);
                char ids[PUB_CHUNK][24], subjects[PUB_CHUNK][160];
                static char bodies[PUB_CHUNK][640];
                long idx[PUB_CHUNK];
                for (int k = 0; k < chunk; k++) {
                        /* Pool senders only: the owners' own subjects stay small. */
                        const char *from = pool_sender(ch);
                        soak_post p = {.t_ms = now_ms(), .epoch = g.model.epoch, .sender_owner = -1, .ch = (uint8_t)ch};
                        size_t pi = soak_model_add_post(&g.model, &p);
                        snprintf(ids[k], sizeof ids[k], "p%zu", pi);
                        snprintf(subjects[k], sizeof subjects[k], "cotal.%s.chat.%s.%s", SPACE, from,
                                 soak_channel_names[ch]);
                        chat_body(bodies[k], sizeof bodies[k], ids[k], from, ch, "[]");
                        idx[k] = jspub_publish(&g.pub, subjects[k], ids[k], bodies[k], strlen(bodies[k]));
                }
                jspub_wait(&g.pub, 20000);
                for (int k = 0; k < chunk; k++) {
                        soak_post *p = &g.model.posts[first + (size_t)k];
                        const jspub_result *r = idx[k] >= 0 ? jspub_result_at(&g.pub, (size_t)idx[k]) : NULL;
                        if (r && r->state == JSPUB_OK)
                                p->seq = r->seq;
                        else if (!publish(subjects[k], ids[k], bodies[k], strlen(bodies[k]), &p->seq)) {
                                p->flags |= POST_SEQ_UNKNOWN;
                                fail("burst post %s never confirmed", ids[k]);
                        }
                }
                done += chunk;
                supervise();
        }
        g.posts_durable += (uint64_t)done;
        note(true, "burst: %d posts on %s in %.1f s", done, soak_channel_names[ch], (double)(now_ms() - t) / 1000.0);
        return done;
}

/* ---- membership operations ---- */

static int open_members(int ch)
{
        int n = 0;
        for (int o = 0; o < N_OWNERS; o++) {
                soak_version *v = soak_model_latest(&g.model, ch, o);
                n += v && v->lc == SOAK_OPEN;
        }
        return n;
}

/* Sends durableJoin for (ch, o), then reads the record back and adds the
 * version it shows. want_gen: the generation the reply must carry (0:
 * any). Returns true when joined durably. */
static bool join(int ch, int o, uint64_t want_gen, bool new_version, const char *what)
{
        char body[512];
        snprintf(body, sizeof body, "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"%s\"},\"from\":{\"id\":\"%s\"}}",
                 soak_channel_names[ch], g.model.ids[o]);
        int64_t t = now_ms();
        json_t *r = ctl(o, body);
        json_t *data = json_object_get(r, "data");
        bool ok = json_is_true(json_object_get(r, "ok")) && json_is_true(json_object_get(data, "durable"));
        uint64_t gen = (uint64_t)json_integer_value(json_object_get(data, "generation"));
        record rec;
        bool read = read_record(ch, o, &rec);
        if (!r)
                fail("%s of %s by %s: no daemon answered in %d s", what, soak_channel_names[ch], g.model.names[o],
                     CTL_RETRY_MS / 1000);
        else if (!ok)
                fail("%s of %s by %s: %s", what, soak_channel_names[ch], g.model.names[o],
                     json_string_value(json_object_get(r, "error")) ? json_string_value(json_object_get(r, "error"))
                                                                    : "durable:false");
        else if (want_gen && gen != want_gen)
                fail("%s of %s by %s: generation %" PRIu64 ", expected %" PRIu64, what, soak_channel_names[ch],
                     g.model.names[o], gen, want_gen);
        if (read && rec.present && ok && (!rec.activated || rec.gen != gen || rec.lc != SOAK_OPEN))
                fail("%s of %s by %s: record after the join: generation %" PRIu64 " activated %d leaveCursor %s", what,
                     soak_channel_names[ch], g.model.names[o], rec.gen, rec.activated,
                     rec.lc == SOAK_OPEN ? "none" : "set");
        if (new_version && read && rec.present) {
                soak_version v = {.gen = rec.gen,
                                  .jc = rec.jc,
                                  .lc = rec.lc,
                                  .epoch = g.model.epoch,
                                  .t_ms = now_ms(),
                                  .uncertain = !r};
                soak_model_add_version(&g.model, ch, o, &v);
        }
        note(true, "%s: %s joins %s: %s generation %" PRIu64 " joinCursor %" PRIu64 " (%.1f s)", what, g.model.names[o],
             soak_channel_names[ch], ok ? "durable" : "NOT durable", rec.gen, rec.jc, (double)(now_ms() - t) / 1000.0);
        json_decref(r);
        return ok;
}

static void op_fresh_join(void)
{
        /* A pair that never had a record: its interval starts at the
         * joinCursor the daemon commits, whatever is in flight (§8.6). */
        int cands[SOAK_N_CH * N_OWNERS][2], n = 0;
        for (int ch = 0; ch < SOAK_N_CH; ch++)
                for (int o = 0; o < N_OWNERS; o++)
                        if (soak_channel_durable[ch] && !soak_model_latest(&g.model, ch, o) &&
                            soak_acl_covers(g.model.acl[g.model.epoch][o], ch)) {
                                cands[n][0] = ch;
                                cands[n++][1] = o;
                        }
        if (!n)
                return;
        int k = rnd_below(n);
        g.faults[F_FRESH_JOIN]++;
        join(cands[k][0], cands[k][1], 0, true, "fresh join");
}

static void op_idempotent_join(void)
{
        int cands[SOAK_N_CH * N_OWNERS][2], n = 0;
        for (int ch = 0; ch < SOAK_N_CH; ch++)
                for (int o = 0; o < N_OWNERS; o++) {
                        soak_version *v = soak_model_latest(&g.model, ch, o);
                        if (v && v->lc == SOAK_OPEN && !v->uncertain &&
                            soak_acl_covers(g.model.acl[g.model.epoch][o], ch)) {
                                cands[n][0] = ch;
                                cands[n++][1] = o;
                        }
                }
        if (!n)
                return;
        int k = rnd_below(n);
        soak_version *v = soak_model_latest(&g.model, cands[k][0], cands[k][1]);
        g.faults[F_IDEMPOTENT_JOIN]++;
        join(cands[k][0], cands[k][1], v->gen, false, "idempotent join");
}

/* Requests the contract refuses: they must change nothing (§8.3, §8.4). */
static void op_bad_control(void)
{
        int o = rnd_below(N_OWNERS), kind = rnd_below(3);
        char body[512];
        int ch = rnd_below(3);
        soak_version *v = soak_model_latest(&g.model, ch, o);
        if (kind == 0) {
                /* a durable channel outside the owner's ACL */
                int c2 = -1;
                for (int c = 0; c < SOAK_N_CH; c++)
                        if (soak_channel_durable[c] && !soak_acl_covers(g.model.acl[g.model.epoch][o], c))
                                c2 = c;
                if (c2 < 0)
                        return;
                ch = c2;
                v = soak_model_latest(&g.model, ch, o);
                snprintf(body, sizeof body,
                         "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"%s\"},\"from\":{\"id\":\"%s\"}}",
                         soak_channel_names[ch], g.model.ids[o]);
        } else if (kind == 1) {
                if (!v)
                        return;
                snprintf(body, sizeof body,
                         "{\"op\":\"durableLeave\",\"args\":{\"channel\":\"%s\",\"generation\":%" PRIu64
                         "},\"from\":{\"id\":\"%s\"}}",
                         soak_channel_names[ch], v->gen + 7, g.model.ids[o]);
        } else {
                snprintf(body, sizeof body,
                         "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"dur.*\"},\"from\":{\"id\":\"%s\"}}",
                         g.model.ids[o]);
        }
        if (holder_slot() < 0)
                return;
        g.faults[F_BAD_CONTROL]++;
        json_t *r = ctl(o, body);
        if (r && !json_is_false(json_object_get(r, "ok")))
                fail("refused request %s was answered ok", body);
        record rec;
        if (read_record(ch, o, &rec)) {
                bool same = v ? rec.present && rec.gen == v->gen && rec.jc == v->jc && rec.lc == v->lc : !rec.present;
                if (!same)
                        fail("refused request %s changed %s/%s", body, soak_channel_names[ch], g.model.names[o]);
        }
        note(false, "refused control request: %s -> %s", body, r ? "ok:false" : "no answer");
        json_decref(r);
}

/* ---- quiescent operations ---- */

static void op_acl_change(void)
{
        int o = rnd_below(N_OWNERS);
        int acl = rnd_below(SOAK_N_ACLS);
        if (acl == g.model.acl[g.model.epoch][o])
                acl = (acl + 1) % SOAK_N_ACLS;
        if (!quiesce("an ACL change", QUIESCE_MS))
                return;
        g.faults[F_ACL_CHANGE]++;
        int old = g.model.acl[g.model.epoch][o];
        g.model.acl[g.model.epoch][o] = (uint8_t)acl;
        char value[512];
        snprintf(value, sizeof value, "{\"allowSubscribe\":%s,\"revision\":%u,\"updatedAt\":%lld}", soak_acl_json[acl],
                 g.model.epoch, (long long)wall_ms());
        kv_put_retrying(&g.kv_acl, g.model.ids[o], value);
        note(true, "ACL of %s: %s -> %s (epoch %u)", g.model.names[o], soak_acl_json[old], soak_acl_json[acl],
             g.model.epoch);
}

static void op_leave(void)
{
        int cands[SOAK_N_CH * N_OWNERS][2], n = 0;
        for (int ch = 0; ch < SOAK_N_CH; ch++)
                for (int o = 0; o < N_OWNERS; o++) {
                        soak_version *v = soak_model_latest(&g.model, ch, o);
                        if (v && v->lc == SOAK_OPEN && !v->uncertain) {
                                cands[n][0] = ch;
                                cands[n++][1] = o;
                        }
                }
        if (!n)
                return;
        int k = rnd_below(n), ch = cands[k][0], o = cands[k][1];
        if (!quiesce("a leave", QUIESCE_MS))
                return;
        g.faults[F_LEAVE]++;
        soak_version *v = soak_model_latest(&g.model, ch, o);
        char body[512];
        snprintf(body, sizeof body,
                 "{\"op\":\"durableLeave\",\"args\":{\"channel\":\"%s\",\"generation\":%" PRIu64
                 "},\"from\":{\"id\":\"%s\"}}",
                 soak_channel_names[ch], v->gen, g.model.ids[o]);
        json_t *r = ctl(o, body);
        record rec;
        bool read = read_record(ch, o, &rec);
        if (!json_is_true(json_object_get(r, "ok")))
                fail("leave of %s by %s: %s", soak_channel_names[ch], g.model.names[o], r ? "refused" : "no answer");
        if (read && rec.present && rec.gen == v->gen && rec.lc != SOAK_OPEN)
                v->lc = rec.lc;
        else if (read)
                fail("leave of %s by %s: record generation %" PRIu64 " leaveCursor %s", soak_channel_names[ch],
                     g.model.names[o], rec.gen, rec.lc == SOAK_OPEN ? "none" : "set");
        note(true, "leave: %s leaves %s generation %" PRIu64 " at leaveCursor %" PRIu64, g.model.names[o],
             soak_channel_names[ch], v->gen, v->lc);
        json_decref(r);
}

static void op_rejoin(void)
{
        int cands[SOAK_N_CH * N_OWNERS][2], n = 0;
        for (int ch = 0; ch < SOAK_N_CH; ch++)
                for (int o = 0; o < N_OWNERS; o++) {
                        soak_version *v = soak_model_latest(&g.model, ch, o);
                        if (v && v->lc != SOAK_OPEN && soak_acl_covers(g.model.acl[g.model.epoch][o], ch)) {
                                cands[n][0] = ch;
                                cands[n++][1] = o;
                        }
                }
        if (!n)
                return;
        int k = rnd_below(n);
        /* Over a tombstone: the reader drops old-generation entries once the
         * new record exists, so nothing of the old one may be in flight. */
        if (!quiesce("a rejoin", QUIESCE_MS))
                return;
        g.faults[F_REJOIN]++;
        soak_version *v = soak_model_latest(&g.model, cands[k][0], cands[k][1]);
        join(cands[k][0], cands[k][1], v->gen + 1, true, "rejoin");
}

/* Eligible catch-up copies for o in (jc, now] on ch (§8.6: from others,
 * valid messages only). */
static int window_from(int ch, int o, uint64_t floor_jc, int want, uint64_t *jc)
{
        int n = 0;
        *jc = floor_jc;
        for (size_t i = g.model.n_posts; i-- > 0 && n < want;) {
                const soak_post *p = &g.model.posts[i];
                if (p->seq <= floor_jc)
                        break;
                if (p->ch != ch || p->sender_owner == o || (p->flags & (POST_POISON | POST_SEQ_UNKNOWN)))
                        continue;
                n++;
                *jc = p->seq - 1;
        }
        return n;
}

/* An open, not yet activated record with an old joinCursor, written as a
 * fixture (as PROTOCOL §13 items 51-53 do), then durableJoin: the daemon
 * retries the unfinished activation and copies the whole window (§8.6). */
static void op_big_join(void)
{
        int cands[SOAK_N_CH * N_OWNERS][2], n = 0;
        for (int ch = 0; ch < SOAK_N_CH; ch++)
                for (int o = 0; o < N_OWNERS; o++) {
                        soak_version *v = soak_model_latest(&g.model, ch, o);
                        if (soak_channel_durable[ch] && (!v || v->lc != SOAK_OPEN) &&
                            soak_acl_covers(g.model.acl[g.model.epoch][o], ch)) {
                                cands[n][0] = ch;
                                cands[n++][1] = o;
                        }
                }
        if (!n)
                return;
        int k = rnd_below(n), ch = cands[k][0], o = cands[k][1];
        int want = rnd_between(BIG_JOIN_MIN, BIG_JOIN_MAX);
        soak_version *prev = soak_model_latest(&g.model, ch, o);
        uint64_t floor_jc = prev ? prev->lc : 0, jc;
        int have = window_from(ch, o, floor_jc, want, &jc);
        if (have < want)
                burst(ch, want - have + 50);
        if (!quiesce("a catch-up fixture", QUIESCE_MS))
                return;
        have = window_from(ch, o, floor_jc, want, &jc);
        prev = soak_model_latest(&g.model, ch, o);
        uint64_t gen = prev ? prev->gen + 1 : 1;
        char key[256], value[1024], writer[SOAK_ID_LEN + 1];
        make_id(writer, "FIXTURE", 0);
        snprintf(key, sizeof key, "%s/%s", soak_channel_names[ch], g.model.ids[o]);
        snprintf(value, sizeof value,
                 "{\"channel\":\"%s\",\"owner\":\"%s\",\"state\":\"durable-active\",\"joinCursor\":%" PRIu64
                 ",\"generation\":%" PRIu64 ",\"activated\":false,\"writerIdentity\":\"%s\",\"updatedAt\":%lld}",
                 soak_channel_names[ch], g.model.ids[o], jc, gen, writer, (long long)wall_ms());
        if (!kv_put_retrying(&g.kv_members, key, value))
                return;
        g.faults[F_BIG_JOIN]++;
        note(true, "catch-up fixture: %s/%s generation %" PRIu64 " joinCursor %" PRIu64 ": %d entries to copy",
             soak_channel_names[ch], g.model.names[o], gen, jc, have);
        join(ch, o, gen, true, "catch-up join");
}

/* ---- faults ---- */

static void broker_fault_start(void)
{
        g.broker_fault_until = now_ms() + BROKER_FAULT_GRACE_MS;
}

static void broker_fault_end(void)
{
        g.broker_fault_until = now_ms() + BROKER_FAULT_GRACE_MS;
        g.roster_unsure_until = now_ms() + ROSTER_UNSURE_MS;
}

static void op_broker_freeze(bool longer)
{
        int ms =
                longer ? rnd_between(BROKER_GONE_MS * 3 / 2, BROKER_GONE_MS * 3) : rnd_between(300, BROKER_GONE_MS / 2);
        g.faults[longer ? F_BROKER_FREEZE_LONG : F_BROKER_FREEZE_SHORT]++;
        note(true, "broker: SIGSTOP for %d ms", ms);
        broker_fault_start();
        natsd_signal(&g.broker, SIGSTOP);
        pause_ms(ms);
        natsd_signal(&g.broker, SIGCONT);
        broker_fault_end();
        note(false, "broker: SIGCONT");
}

static void op_broker_restart(bool kill)
{
        bool downgraded = kill && !g.broker_sigkill;
        if (downgraded)
                kill = false;
        g.faults[kill ? F_BROKER_RESTART_KILL : F_BROKER_RESTART_TERM]++;
        note(true, "broker: %s and restart on the same store%s", kill ? "SIGKILL" : "SIGTERM",
             downgraded ? " (drawn as a SIGKILL; see --broker-sigkill)" : "");
        broker_fault_start();
        if (kill)
                natsd_signal(&g.broker, SIGKILL);
        int r = natsd_restart(&g.broker);
        broker_fault_end();
        if (r < 0) {
                fail("broker did not restart: %s (log %s)", strerror(-r), g.broker.log);
                g.stop_requested = true;
        }
}

static void op_daemon(bool holder, int sig)
{
        int i = pick_slot(holder);
        if (i < 0 || !slot_id(i))
                return;
        g.faults[holder ? (sig == SIGKILL ? F_DAEMON_KILL_HOLDER : F_DAEMON_TERM_HOLDER)
                        : (sig == SIGKILL ? F_DAEMON_KILL_STANDBY : F_DAEMON_TERM_STANDBY)]++;
        signal_slot(i, sig, holder ? "holder" : "standby");
}

static void op_sighup(void)
{
        static const int fb[] = {8, 32, 64, 128, 256, 512};
        static const int rb[] = {16, 64, 256, 1000};
        static const int ll[] = {50, 100, 300, 500, 900};
        g.reader_batch = rb[rnd_below(4)];
        g.lead_limit = ll[rnd_below(5)];
        do
                g.fanout_batch = fb[rnd_below(6)];
        while (g.fanout_batch >= g.lead_limit);
        write_config();
        g.faults[F_SIGHUP]++;
        note(true, "SIGHUP: fanout-batch %d, reader-batch %d, inbox-lead-limit %d", g.fanout_batch, g.reader_batch,
             g.lead_limit);
        for (int i = 0; i < N_SLOTS; i++)
                if (slot_id(i))
                        proc_signal(&g.slots[i].p, SIGHUP);
}

static void op_burst(void)
{
        /* The durable channel with the most open members: its owners get
         * the most entries each (one INBOX subject per owner, cap 1000). */
        int best = CH_DUR_A;
        for (int c = 0; c < SOAK_N_CH; c++)
                if (soak_channel_durable[c] && open_members(c) > open_members(best))
                        best = c;
        int n = rnd_between(BURST_MIN, BURST_MAX);
        g.faults[F_BURST]++;
        burst(best, n);
        if (chance(50)) {
                /* Restarts while the owners' backlogs are high (E1). */
                int restarts = rnd_between(1, 4);
                g.faults[F_BURST_RESTARTS]++;
                for (int k = 0; k < restarts && !interrupted; k++) {
                        pause_ms(rnd_between(300, 2500));
                        op_daemon(true, chance(70) ? SIGTERM : SIGKILL);
                }
        }
}

static void op_poison_chat(void)
{
        static const char *const kinds[] = {"not JSON",   "JSON array",      "null",    "no id",
                                            "numeric id", "spoofed from.id", "no from", "from.id not a string"};
        int kind = rnd_below(8), ch = draw_channel(), so;
        const char *from = sender_for(ch, &so);
        char id[32], subject[256], body[1024];
        snprintf(id, sizeof id, "z%" PRIu64, g.poison_n++);
        snprintf(subject, sizeof subject, "cotal.%s.chat.%s.%s", SPACE, from, soak_channel_names[ch]);
        const char *spoof = g.model.ids[(so + 1 + rnd_below(N_OWNERS - 1)) % N_OWNERS];
        switch (kind) {
        case 0: snprintf(body, sizeof body, "{\"id\":\"%s\", not json", id); break;
        case 1: snprintf(body, sizeof body, "[\"%s\",1,2]", id); break;
        case 2: snprintf(body, sizeof body, "null"); break;
        case 3:
                snprintf(body, sizeof body, "{\"from\":{\"id\":\"%s\",\"name\":\"x\"},\"mentions\":[\"%s\"]}", from,
                         g.model.names[0]);
                break;
        case 4:
                snprintf(body, sizeof body, "{\"id\":42,\"from\":{\"id\":\"%s\",\"name\":\"x\"},\"mentions\":[\"%s\"]}",
                         from, g.model.names[1]);
                break;
        case 5:
                snprintf(body, sizeof body,
                         "{\"id\":\"%s\",\"from\":{\"id\":\"%s\",\"name\":\"x\"},\"mentions\":[\"%s\"]}", id,
                         strcmp(spoof, from) ? spoof : g.model.ids[0], g.model.names[2]);
                break;
        case 6: snprintf(body, sizeof body, "{\"id\":\"%s\",\"mentions\":[\"%s\"]}", id, g.model.names[3]); break;
        default:
                snprintf(body, sizeof body, "{\"id\":\"%s\",\"from\":{\"id\":7,\"name\":\"x\"},\"mentions\":[\"%s\"]}",
                         id, g.model.names[4]);
                break;
        }
        soak_post p = {.t_ms = now_ms(),
                       .epoch = g.model.epoch,
                       .sender_owner = (int16_t)so,
                       .ch = (uint8_t)ch,
                       .flags = POST_POISON};
        if (!publish(subject, id, body, strlen(body), &p.seq))
                p.flags |= POST_SEQ_UNKNOWN;
        soak_model_add_post(&g.model, &p);
        g.posts_poison++;
        g.faults[F_POISON_CHAT]++;
        note(false, "poison chat %s (%s) seq %" PRIu64 " on %s", id, kinds[kind], p.seq, soak_channel_names[ch]);
}

/* Entries the reader must drop (§7 rows 1, 2, 2a, 5, 6); rarely one for
 * an owner with no ACL at all (rows 3-4: ten deliveries, then terminated). */
static void op_poison_inbox(void)
{
        static const char *const kinds[] = {"not JSON",
                                            "no seq",
                                            "live mention outside the ACL",
                                            "durable entry outside every interval",
                                            "five-token subject",
                                            "unknown owner"};
        int kind = rnd_below(100) < 4 ? 5 : rnd_below(5);
        int o = rnd_below(N_OWNERS);
        char owner[SOAK_ID_LEN + 1];
        snprintf(owner, sizeof owner, "%s", g.model.ids[o]);
        char id[40], msgid[160], subject[256], body[1024], msg[400];
        snprintf(id, sizeof id, "y%" PRIu64, g.poison_n++);
        snprintf(msg, sizeof msg, "{\"id\":\"%s\",\"ts\":1,\"from\":{\"id\":\"%s\",\"name\":\"x\"},\"parts\":[]}", id,
                 g.model.ids[(o + 1) % N_OWNERS]);
        uint64_t gen = 0;
        int ch = CH_DUR_A;
        switch (kind) {
        case 0: snprintf(body, sizeof body, "{\"msg\":%s,\"channel\":", msg); break;
        case 1:
                snprintf(body, sizeof body,
                         "{\"msg\":%s,\"channel\":\"dur.a\",\"reason\":\"durable-channel\",\"generation\":1}", msg);
                break;
        case 2: {
                int c = -1;
                for (int k = 0; k < SOAK_N_CH; k++)
                        if (!soak_channel_durable[k] && !soak_acl_covers(g.model.acl[g.model.epoch][o], k))
                                c = k;
                if (c < 0)
                        return;
                snprintf(body, sizeof body,
                         "{\"msg\":%s,\"channel\":\"%s\",\"seq\":1,\"reason\":\"live-mention\",\"generation\":0}", msg,
                         soak_channel_names[c]);
                break;
        }
        case 3: {
                /* At the current record's joinCursor (never eligible: §4.4
                 * wants seq > joinCursor), or anywhere if there is none. */
                ch = rnd_below(3);
                soak_version *v = soak_model_latest(&g.model, ch, o);
                gen = v ? v->gen : 1;
                snprintf(body, sizeof body,
                         "{\"msg\":%s,\"channel\":\"%s\",\"seq\":%" PRIu64
                         ",\"reason\":\"durable-channel\",\"generation\":%" PRIu64 "}",
                         msg, soak_channel_names[ch], v ? v->jc : 1, gen);
                break;
        }
        case 4:
                snprintf(body, sizeof body,
                         "{\"msg\":%s,\"channel\":\"dur.a\",\"seq\":1,\"reason\":\"live-mention\",\"generation\":0}",
                         msg);
                break;
        default:
                make_id(owner, "GHOST", g.poison_n);
                snprintf(body, sizeof body,
                         "{\"msg\":%s,\"channel\":\"dur.a\",\"seq\":1,\"reason\":\"live-mention\",\"generation\":0}",
                         msg);
                break;
        }
        snprintf(msgid, sizeof msgid, "%s:%s:%" PRIu64, id, owner, gen);
        snprintf(subject, sizeof subject, "cotal.%s.dinbox.%s%s", SPACE, owner, kind == 4 ? ".extra" : "");
        uint64_t seq = 0;
        if (!publish(subject, msgid, body, strlen(body), &seq))
                fail("poison inbox entry %s never confirmed", msgid);
        g.inbox_poison++;
        g.faults[F_POISON_INBOX]++;
        note(kind == 5, "poison inbox %s (%s) at INBOX seq %" PRIu64, msgid, kinds[kind], seq);
}

/* ---- the schedule ---- */

static void step(void)
{
        int r = rnd_below(1000);
        bool have_holder = true;
        /* Weights per 1000 steps (a step takes ~0.1-0.2 s): a fault every
         * ~20-30 s, a quiescent operation as often, a burst a minute. */
        if (r < 560) {
                post_one(draw_channel());
        } else if (r < 700) {
                int n = rnd_between(5, 40);
                for (int k = 0; k < n; k++)
                        post_one(draw_channel());
        } else if (r < 740) {
                op_poison_chat();
        } else if (r < 760) {
                op_poison_inbox();
        } else if (r < 790) {
                if ((have_holder = holder_slot() >= 0))
                        op_fresh_join();
        } else if (r < 800) {
                if ((have_holder = holder_slot() >= 0))
                        op_idempotent_join();
        } else if (r < 810) {
                op_bad_control();
        } else if (r < 820) {
                op_acl_change();
        } else if (r < 826) {
                op_leave();
        } else if (r < 830) {
                op_rejoin();
        } else if (r < 833) {
                op_big_join();
        } else if (r < 837) {
                op_burst();
        } else if (r < 840) {
                op_daemon(true, SIGKILL);
        } else if (r < 843) {
                op_daemon(true, SIGTERM);
        } else if (r < 845) {
                op_daemon(false, chance(50) ? SIGKILL : SIGTERM);
        } else if (r < 848) {
                op_broker_freeze(false);
        } else if (r < 850) {
                op_broker_freeze(true);
        } else if (r < 853) {
                op_broker_restart(chance(50));
        } else if (r < 856) {
                op_sighup();
        } else {
                post_one(draw_channel());
        }
        if (!have_holder)
                post_one(draw_channel());
        pause_ms(rnd_below(STEP_PAUSE_MAX_MS + 1));
}

/* ---- setup ---- */

#define SOAK_DLV_MIRROR "SOAK_DLV_MIRROR"
#define SOAK_INBOX_MIRROR "SOAK_INBOX_MIRROR"

static int mirror(const char *name, const char *origin)
{
        char subject[256];
        snprintf(subject, sizeof subject, "$JS.API.STREAM.CREATE.%s", name);
        json_t *body = json_pack("{s:s,s:s,s:{s:s}}", "name", name, "storage", "file", "mirror", "name", origin);
        json_t *reply = NULL;
        jsapi_error err = {0};
        int r = jsapi_request(g.nc, subject, body, API_TIMEOUT_MS, &reply, &err);
        json_decref(body);
        json_decref(reply);
        if (r < 0)
                fprintf(stderr, "soak: cannot mirror %s: %s\n", origin,
                        err.description[0] ? err.description : strerror(-r));
        return r;
}

/* DLV_<S>'s 1,000 per owner subject is the agents' retention, not a bound
 * the daemon keeps (E1 is INBOX's): with it, copies the reader moved in a
 * burst were evicted before the mirror, lagging after broker restarts and
 * freezes, copied them, and the count came out incomplete (seed 21, 30
 * min: 1,418 copies gone unseen, exactly the 1,418 pairs reported
 * missing). Lifted here so the mirror may lag without loss; INBOX keeps its
 * cap, which is what is under test. */
static int lift_dlv_cap(void)
{
        char subject[256];
        snprintf(subject, sizeof subject, "$JS.API.STREAM.INFO.%s", g.names.dlv_stream);
        json_t *info = NULL;
        jsapi_error err = {0};
        int r = jsapi_request(g.nc, subject, NULL, API_TIMEOUT_MS, &info, &err);
        json_t *cfg = r == 0 ? json_deep_copy(json_object_get(info, "config")) : NULL;
        json_decref(info);
        if (cfg) {
                json_object_set_new(cfg, "max_msgs_per_subject", json_integer(-1));
                json_t *reply = NULL;
                snprintf(subject, sizeof subject, "$JS.API.STREAM.UPDATE.%s", g.names.dlv_stream);
                r = jsapi_request(g.nc, subject, cfg, API_TIMEOUT_MS, &reply, &err);
                json_decref(reply);
                json_decref(cfg);
        } else if (r == 0) {
                r = -EPROTO;
        }
        if (r < 0)
                fprintf(stderr, "soak: cannot lift %s's per-subject cap: %s\n", g.names.dlv_stream,
                        err.description[0] ? err.description : strerror(-r));
        return r;
}

static int provision(void)
{
        char *argv[] = {(char *)g.deliveryctl, "--server", g.broker.url, "--space", SPACE, "provision", NULL};
        proc p;
        int st = proc_run(&p, argv, NULL, 60000);
        if (st != 0) {
                char *err = proc_stderr(&p);
                fprintf(stderr, "soak: provision failed (%d): %s\n", st, err);
                free(err);
        }
        proc_destroy(&p);
        return st == 0 ? 0 : -EIO;
}

static int setup(void)
{
        int r = natsd_start(&g.broker, NULL);
        if (r < 0) {
                fprintf(stderr, "soak: cannot start nats-server: %s\n", strerror(-r));
                return r;
        }
        note(false, "broker on %s, store %s", g.broker.url, g.broker.store);
        broker_config bc = {.servers = g.broker.url, .name = "soak", .reconnect = true, .connect_timeout_ms = 5000};
        char err[256];
        if ((r = broker_connect(&bc, &g.nc, err, sizeof err)) < 0) {
                fprintf(stderr, "soak: connect: %s\n", err);
                return r;
        }
        if (natsConnection_JetStream(&g.js, g.nc, NULL) != NATS_OK || jspub_init(&g.pub, g.nc, "_INBOX", NULL) < 0 ||
            contract_names_init(&g.names, SPACE, strlen(SPACE)) < 0 || provision() < 0)
                return -EIO;
        if (kv_bucket_init(&g.kv_members, g.nc, g.names.members_bucket) < 0 ||
            kv_bucket_init(&g.kv_acl, g.nc, g.names.acl_bucket) < 0 ||
            kv_bucket_init(&g.kv_lease, g.nc, g.names.delivery_bucket) < 0 ||
            kv_bucket_init(&g.kv_channels, g.nc, g.names.channels_bucket) < 0)
                return -EIO;
        /* §4.6: two live channels, dur.a/dur.b durable by their key, dur.c by
         * default (no key). */
        kv_put_retrying(&g.kv_channels, "live.x", "{\"deliveryClass\":\"live\"}");
        kv_put_retrying(&g.kv_channels, "live.y", "{\"deliveryClass\":\"live\",\"description\":\"soak\"}");
        kv_put_retrying(&g.kv_channels, "dur.a", "{\"deliveryClass\":\"durable\"}");
        kv_put_retrying(&g.kv_channels, "dur.b", "{\"deliveryClass\":\"durable\",\"replay\":true}");

        soak_model_init(&g.model, N_OWNERS);
        for (int o = 0; o < N_OWNERS; o++) {
                make_id(g.model.ids[o], "OWN", (uint64_t)o);
                snprintf(g.model.names[o], sizeof g.model.names[o], "agent%d", o);
                /* Mostly broad ACLs at first, so joins have somewhere to go. */
                static const int initial[] = {0, 1, 1, 5, 0, 2, 3, 4};
                g.model.acl[0][o] = (uint8_t)(chance(80) ? initial[rnd_below(8)] : rnd_below(SOAK_N_ACLS));
                char value[512];
                snprintf(value, sizeof value, "{\"allowSubscribe\":%s,\"revision\":1,\"updatedAt\":%lld}",
                         soak_acl_json[g.model.acl[0][o]], (long long)wall_ms());
                kv_put_retrying(&g.kv_acl, g.model.ids[o], value);
        }
        char prefix[128];
        snprintf(prefix, sizeof prefix, "cotal.%s.dlv.", SPACE);
        /* INBOX keeps 1,000 per owner: a daemon catching up after a restart
         * can outrun any client reading it. The broker mirrors DLV and INBOX
         * into unlimited streams (same seqs, server-side), which the harness
         * reads at its own pace; DLV's own cap is lifted (lift_dlv_cap). */
        if (lift_dlv_cap() < 0 || mirror(SOAK_DLV_MIRROR, g.names.dlv_stream) < 0 ||
            mirror(SOAK_INBOX_MIRROR, g.names.inbox_stream) < 0)
                return -EIO;
        if (soak_observer_start(&g.dlv, &g.model, g.broker.url, SOAK_DLV_MIRROR, "soakdlv", g.names.dlv_filter,
                                prefix) < 0)
                return -EIO;
        snprintf(prefix, sizeof prefix, "cotal.%s.dinbox.", SPACE);
        if (soak_observer_start(&g.inbox, &g.model, g.broker.url, SOAK_INBOX_MIRROR, "soakinbox", g.names.dinbox_filter,
                                prefix) < 0)
                return -EIO;
        if (soak_presence_start(&g.presence, &g.model, g.broker.url, g.names.presence_bucket) < 0)
                return -EIO;
        /* The roster is filled at the daemon's start (§4.7): presence first. */
        int64_t end = now_ms() + 20000;
        while (atomic_load(&g.presence.last_full_ms) == 0 && now_ms() < end)
                nap_ms(POLL_MS);

        g.fanout_batch = 256;
        g.reader_batch = 256;
        g.lead_limit = 500;
        write_config();
        /* The first daemon creates fanout (deliver_policy new, §3) before any
         * post; the second stands by. */
        g.slots[1].restart_at = INT64_MAX; /* not before the first is ready */
        slot_spawn(0);
        if (!wait_holder(READY_WAIT_MS)) {
                fail("the first daemon did not become ready");
                return -ETIMEDOUT;
        }
        slot_spawn(1);
        for (int o = 0; o < N_OWNERS; o++)
                for (int ch = 0; ch < SOAK_N_CH; ch++)
                        if (soak_channel_durable[ch] && soak_acl_covers(g.model.acl[0][o], ch) && chance(60))
                                join(ch, o, 0, true, "initial join");
        return 0;
}

/* nats-server 2.10 and later. Before (Debian 12's 2.9.10) the broker
 * can lose, in a SIGKILL, messages it had stored and acknowledged: in the
 * soak, every INBOX entry of one owner written in the 0.6 s before the
 * kill, every entry written for that owner after the restart
 * (acknowledged, never stored), and a reader ack pending for a message the
 * stream no longer has; so on 2.9 the soak restarts the broker with
 * SIGTERM unless asked (--broker-sigkill). And after a restart, even a
 * clean one, 2.9.10 can evict a newer message than the oldest of a subject
 * at max_msgs_per_subject: the entries it skips stay for good, shrinking
 * the owner's room, and unread ones get evicted (attribute_to_broker).
 * 2.10.27 runs the same schedules exactly. README, "The broker's own
 * losses". */
static bool broker_fixed(const char *version)
{
        unsigned major = 0, minor = 0;
        return sscanf(version, "%u.%u", &major, &minor) == 2 && (major > 2 || (major == 2 && minor >= 10));
}

/* ---- the verdict ---- */

typedef struct diff {
        uint64_t key;
        const char *what; /* missing, duplicated, foreign */
        uint32_t copies;
        bool broker; /* missing, lost by the broker (see verdict) */
} diff;

typedef struct verdict {
        soak_map expected; /* key -> flags 1 required, 2 optional */
        uint64_t required, optional, optional_seen, delivered_pairs, stored_copies;
        uint64_t missing, dup, foreign;
        uint64_t missing_not_written, missing_inbox_gone, missing_inbox_there;
        /* Lost by the broker, proven: INBOX evicted the entry while it
         * still holds an older one of the same owner, which a per-subject
         * limit that drops the oldest never does (nats-server 2.9.10
         * after a restart, see README). Of an owner proven so, entries
         * never seen in INBOX are counted here too (evicted as soon as
         * written, before the harness's mirror copied them). */
        uint64_t broker_evicted, broker_unseen;
        uint64_t inbox_first[N_OWNERS];
        bool out_of_order[N_OWNERS];
        diff *diffs;
        size_t n_diffs, cap_diffs;
} verdict;

static void expect_cb(void *arg, uint64_t key, bool required)
{
        verdict *v = arg;
        soak_cell *c = soak_map_put(&v->expected, key);
        c->flags |= required ? 1u : 2u;
}

static void add_diff(verdict *v, uint64_t key, const char *what, uint32_t copies)
{
        if (v->n_diffs == v->cap_diffs) {
                v->cap_diffs = v->cap_diffs ? v->cap_diffs * 2 : 64;
                v->diffs = realloc(v->diffs, v->cap_diffs * sizeof *v->diffs);
                if (!v->diffs)
                        abort();
        }
        v->diffs[v->n_diffs++] = (diff){key, what, copies, false};
}

static int diff_order(const void *a, const void *b)
{
        uint64_t x = ((const diff *)a)->key, y = ((const diff *)b)->key;
        return x < y ? -1 : x > y;
}

/* The oldest entry INBOX still holds on owner o's subject (0: none or
 * unknown), by STREAM.MSG.GET next_by_subj from seq 1. */
static uint64_t inbox_first_of(int o)
{
        char api[256];
        snprintf(api, sizeof api, "$JS.API.STREAM.MSG.GET.%s", g.names.inbox_stream);
        char *subject = contract_dinbox_subject(&g.names, g.model.ids[o]);
        json_t *body = subject ? json_pack("{s:I,s:s}", "seq", (json_int_t)1, "next_by_subj", subject) : NULL;
        json_t *reply = NULL;
        jsapi_error err = {0};
        uint64_t seq = 0;
        if (body && jsapi_request(g.nc, api, body, API_TIMEOUT_MS, &reply, &err) == 0)
                (void)json_path_u64(reply, "message.seq", &seq);
        json_decref(body);
        json_decref(reply);
        free(subject);
        return seq;
}

/* Whether INBOX still holds seq (STREAM.MSG.GET): gone = evicted. */
static int inbox_holds(uint64_t seq)
{
        char subject[256];
        snprintf(subject, sizeof subject, "$JS.API.STREAM.MSG.GET.%s", g.names.inbox_stream);
        json_t *body = json_pack("{s:I}", "seq", (json_int_t)seq), *reply = NULL;
        jsapi_error err = {0};
        int r = jsapi_request(g.nc, subject, body, API_TIMEOUT_MS, &reply, &err);
        json_decref(body);
        json_decref(reply);
        return r == 0 ? 1 : err.err_code == JS_ERR_MSG_NOT_FOUND ? 0 : -1;
}

static void describe(const verdict *v, const diff *d, char *out, size_t size)
{
        uint64_t pi = soak_key_post(d->key);
        int o = soak_key_owner(d->key);
        const soak_post *p = pi < g.model.n_posts ? &g.model.posts[pi] : NULL;
        int len = snprintf(out, size, "%-10s p%" PRIu64 ":%s:%" PRIu64, d->what, pi,
                           o < N_OWNERS ? g.model.names[o] : "?", soak_key_gen(d->key));
        if (p)
                len += snprintf(out + len, size - (size_t)len,
                                "  channel %s seq %" PRIu64 " sender %s epoch %u posted at %.1f s",
                                soak_channel_names[p->ch], p->seq,
                                p->sender_owner >= 0 ? g.model.names[p->sender_owner] : "pool", p->epoch,
                                (double)p->t_ms / 1000.0);
        if (strcmp(d->what, "missing") == 0) {
                soak_cell *ic = soak_map_get(&g.inbox.ids, d->key);
                int o_first = o < N_OWNERS ? o : 0;
                if (!ic)
                        len += snprintf(out + len, size - (size_t)len, "; never written to INBOX");
                else
                        len += snprintf(out + len, size - (size_t)len,
                                        "; in INBOX at seq %" PRIu64 " (%s), never in DLV", ic->first_seq,
                                        inbox_holds(ic->first_seq) == 0 ? "gone: evicted unread" : "still there");
                if (d->broker)
                        snprintf(out + len, size - (size_t)len,
                                 "; LOST BY THE BROKER: INBOX still holds an older entry of this owner (seq %" PRIu64
                                 ")",
                                 v->inbox_first[o_first]);
        } else if (strcmp(d->what, "duplicated") == 0) {
                snprintf(out + len, size - (size_t)len, "; %u stored copies in DLV", d->copies);
        } else {
                snprintf(out + len, size - (size_t)len, "; not in the expected set");
        }
}

static void print_counts(void)
{
        printf("soak: seed %" PRIu64 ", %.1f min: %zu posts (%" PRIu64 " durable, %" PRIu64 " live with %" PRIu64
               " resolved mentions, %" PRIu64 " poison), %" PRIu64 " poison inbox entries, %u quiescent epochs\n",
               g.seed, (double)now_ms() / 60000.0, g.model.n_posts, g.posts_durable, g.posts_live, g.mentions,
               g.posts_poison, g.inbox_poison, g.model.epoch);
        printf("soak: injected:");
        for (int f = 0; f < N_FAULTS; f++)
                printf("%s %s %" PRIu64, f ? "," : "", fault_names[f], g.faults[f]);
        printf("\nsoak: daemon exits: %" PRIu64 " by the soak's signals, %" PRIu64 " exit 1, %" PRIu64
               " exit 0 unasked; incarnations %d + %d\n",
               g.exits_expected, g.exits_one, g.exits_zero_unasked, g.slots[0].incarnation, g.slots[1].incarnation);
}

/* Marks the missing pairs the broker lost, by proof (see verdict):
 * first the evicted ones with an older entry of their owner still
 * stored, then the never-seen ones of owners proven so. */
static void attribute_to_broker(verdict *v)
{
        if (!v->missing_inbox_gone)
                return;
        for (int o = 0; o < N_OWNERS; o++)
                v->inbox_first[o] = inbox_first_of(o);
        for (size_t i = 0; i < v->n_diffs; i++) {
                diff *d = &v->diffs[i];
                int o = soak_key_owner(d->key);
                soak_cell *ic = soak_map_get(&g.inbox.ids, d->key);
                if (strcmp(d->what, "missing") != 0 || o >= N_OWNERS || !ic || !v->inbox_first[o] ||
                    v->inbox_first[o] >= ic->first_seq || inbox_holds(ic->first_seq) != 0)
                        continue;
                d->broker = true;
                v->out_of_order[o] = true;
                v->broker_evicted++;
        }
        for (size_t i = 0; i < v->n_diffs; i++) {
                diff *d = &v->diffs[i];
                int o = soak_key_owner(d->key);
                if (strcmp(d->what, "missing") == 0 && o < N_OWNERS && v->out_of_order[o] && !d->broker &&
                    !soak_map_get(&g.inbox.ids, d->key)) {
                        d->broker = true;
                        v->broker_unseen++;
                }
        }
}

static void verify(void)
{
        note(true, "final drain (up to %d s)", FINAL_DRAIN_MS / 1000);
        g.stop_requested = false;
        int64_t t = now_ms();
        bool drained = quiesce("the final check", FINAL_DRAIN_MS);
        int64_t drain_ms = now_ms() - t;
        /* The harness consumers have read everything stored. */
        uint64_t d_first = 0, d_last = 0, i_first = 0, i_last = 0, pend, ack;
        int64_t end = now_ms() + OBSERVER_CATCHUP_MS;
        bool caught = false;
        while (!caught && now_ms() < end) {
                uint64_t dl = 0, ml = 0, il = 0, nl = 0;
                caught = stream_state(g.names.dlv_stream, NULL, &dl) == 0 &&
                         stream_state(SOAK_DLV_MIRROR, NULL, &ml) == 0 &&
                         stream_state(g.names.inbox_stream, NULL, &il) == 0 &&
                         stream_state(SOAK_INBOX_MIRROR, NULL, &nl) == 0 && ml >= dl && nl >= il &&
                         consumer_state(SOAK_DLV_MIRROR, "soakdlv", &pend, &ack) == 0 && !pend && !ack &&
                         consumer_state(SOAK_INBOX_MIRROR, "soakinbox", &pend, &ack) == 0 && !pend && !ack;
                if (!caught)
                        nap_ms(POLL_MS);
        }
        if (!caught)
                fail("the harness consumers did not catch up in %d s", OBSERVER_CATCHUP_MS / 1000);
        soak_observer_stop(&g.dlv);
        soak_observer_stop(&g.inbox);
        stream_state(g.names.dlv_stream, &d_first, &d_last);
        stream_state(g.names.inbox_stream, &i_first, &i_last);
        uint64_t dlv_unseen = soak_observer_unseen(&g.dlv, 1, d_last);
        uint64_t inbox_unseen = soak_observer_unseen(&g.inbox, 1, i_last);
        if (dlv_unseen)
                fail("%" PRIu64 " DLV copies were gone before the harness read them (evicted, or lost by a broker "
                     "SIGKILL): the count is incomplete, missing pairs may be among them",
                     dlv_unseen);
        if (g.dlv.seq_reused || g.inbox.seq_reused)
                note(true,
                     "the broker reused %" PRIu64 " DLV and %" PRIu64 " INBOX seqs for other messages (it lost "
                     "a stream's acknowledged tail in a SIGKILL)",
                     g.dlv.seq_reused, g.inbox.seq_reused);

        /* Pending work, read once more. */
        uint64_t st[4] = {0};
        consumer_state(g.names.chat_stream, CONTRACT_FANOUT_DURABLE, &st[0], &st[1]);
        consumer_state(g.names.inbox_stream, CONTRACT_READER_DURABLE, &st[2], &st[3]);
        if (st[0] || st[1] || st[2] || st[3])
                fail("left pending: fanout %" PRIu64 "/%" PRIu64 ", reader %" PRIu64 "/%" PRIu64, st[0], st[1], st[2],
                     st[3]);

        /* Every record is what the model last read. */
        int record_diffs = 0;
        for (int ch = 0; ch < SOAK_N_CH; ch++)
                for (int o = 0; o < N_OWNERS; o++) {
                        soak_version *v = soak_model_latest(&g.model, ch, o);
                        record rec;
                        if (!read_record(ch, o, &rec))
                                continue;
                        bool same = v ? rec.present && rec.gen == v->gen && rec.jc == v->jc && rec.lc == v->lc
                                      : !rec.present;
                        if (!same && record_diffs++ < 5)
                                fail("record %s/%s is generation %" PRIu64 " joinCursor %" PRIu64
                                     ", the model has %" PRIu64 "/%" PRIu64,
                                     soak_channel_names[ch], g.model.names[o], rec.gen, rec.jc, v ? v->gen : 0,
                                     v ? v->jc : 0);
                }

        verdict v = {0};
        soak_map_init(&v.expected);
        soak_model_expected(&g.model, expect_cb, &v);
        for (size_t i = 0; i < v.expected.cap; i++) {
                soak_cell *e = &v.expected.cells[i];
                if (!e->key)
                        continue;
                bool required = e->flags & 1u;
                required ? v.required++ : v.optional++;
                soak_cell *c = soak_map_get(&g.dlv.ids, e->key - 1);
                uint32_t copies = c ? c->copies : 0;
                if (copies && !required)
                        v.optional_seen++;
                if (required && !copies) {
                        v.missing++;
                        add_diff(&v, e->key - 1, "missing", 0);
                        soak_cell *ic = soak_map_get(&g.inbox.ids, e->key - 1);
                        if (!ic)
                                v.missing_not_written++;
                        else if (inbox_holds(ic->first_seq) == 0)
                                v.missing_inbox_gone++;
                        else
                                v.missing_inbox_there++;
                }
                if (copies > 1) {
                        v.dup++;
                        add_diff(&v, e->key - 1, "duplicated", copies);
                }
        }
        attribute_to_broker(&v);
        for (size_t i = 0; i < g.dlv.ids.cap; i++) {
                soak_cell *c = &g.dlv.ids.cells[i];
                if (!c->key)
                        continue;
                v.delivered_pairs++;
                v.stored_copies += c->copies;
                if (!soak_map_get(&v.expected, c->key - 1)) {
                        v.foreign++;
                        add_diff(&v, c->key - 1, "foreign", c->copies);
                }
        }
        uint64_t by_broker = v.broker_evicted + v.broker_unseen;
        if (by_broker)
                note(true,
                     "%" PRIu64 " missing pairs were lost by the broker: %" PRIu64 " evicted from INBOX while an "
                     "older entry of the same owner is still stored (a per-subject limit drops the oldest first), "
                     "%" PRIu64 " of such owners never seen in INBOX; nats-server %s%s",
                     by_broker, v.broker_evicted, v.broker_unseen, g.broker_version[0] ? g.broker_version : "?",
                     broker_fixed(g.broker_version) ? "" : " (a known defect of 2.9 after a restart)");
        if (by_broker && (g.strict_broker || broker_fixed(g.broker_version)))
                fail("%" PRIu64 " pairs lost by the broker's out-of-order INBOX eviction%s", by_broker,
                     g.strict_broker ? " (--strict-broker)" : " on a broker that should not do that");
        if (v.missing > by_broker || v.dup || v.foreign)
                fail("%" PRIu64 " missing (%" PRIu64 " never written to INBOX, %" PRIu64
                     " evicted from INBOX unread, %" PRIu64 " still in INBOX; not counting %" PRIu64
                     " lost by the broker), %" PRIu64 " duplicated, %" PRIu64 " foreign",
                     v.missing - by_broker, v.missing_not_written - v.broker_unseen,
                     v.missing_inbox_gone - v.broker_evicted, v.missing_inbox_there, by_broker, v.dup, v.foreign);
        if (g.dlv.poison || g.dlv.foreign)
                fail("DLV holds %" PRIu64 " copies of poison and %" PRIu64 " of unknown shape (first: %s)",
                     g.dlv.poison, g.dlv.foreign, g.dlv.foreign_ids[0] ? g.dlv.foreign_ids[0] : "-");

        print_counts();
        printf("soak: expected %" PRIu64 " pairs (+%" PRIu64 " optional, %" PRIu64
               " of them delivered); DLV holds %" PRIu64 " distinct ids in %" PRIu64 " copies (%" PRIu64
               " harness redeliveries ignored); INBOX %" PRIu64 " entries seen, %" PRIu64
               " evicted before the harness read them\n",
               v.required, v.optional, v.optional_seen, v.delivered_pairs, v.stored_copies, g.dlv.redelivered,
               g.inbox.distinct, inbox_unseen);
        printf("soak: missing %" PRIu64 ", duplicated %" PRIu64 ", foreign %" PRIu64
               "; final drain %.1f s%s; fanout %" PRIu64 "/%" PRIu64 " reader %" PRIu64 "/%" PRIu64
               " pending/unacked\n",
               v.missing, v.dup, v.foreign, (double)drain_ms / 1000.0, drained ? "" : " (NOT drained)", st[0], st[1],
               st[2], st[3]);
        if (v.n_diffs) {
                qsort(v.diffs, v.n_diffs, sizeof *v.diffs, diff_order);
                char path[400];
                snprintf(path, sizeof path, "%s/differences.txt", g.workdir);
                FILE *f = fopen(path, "w");
                printf("soak: first %d differences (of %zu, all in %s), by post:\n", DIFFS_SHOWN, v.n_diffs, path);
                for (size_t i = 0; i < v.n_diffs; i++) {
                        char line[600];
                        describe(&v, &v.diffs[i], line, sizeof line);
                        if (i < DIFFS_SHOWN)
                                printf("  %s\n", line);
                        if (f)
                                fprintf(f, "%s\n", line);
                }
                if (f)
                        fclose(f);
        }
        free(v.diffs);
        soak_map_fini(&v.expected);
}

/* ---- the broker's version ---- */

/* "2.9.10" from "nats-server: v2.9.10" (empty if unknown). */
static void probe_broker_version(char *out, size_t size)
{
        out[0] = '\0';
        char cmd[600];
        snprintf(cmd, sizeof cmd, "'%s' --version 2>&1", natsd_binary());
        FILE *f = popen(cmd, "r");
        if (!f)
                return;
        char line[200] = "";
        if (fgets(line, sizeof line, f)) {
                const char *v = strstr(line, " v");
                if (v)
                        snprintf(out, size, "%.*s", (int)strcspn(v + 2, " \r\n"), v + 2);
        }
        pclose(f);
}

/* ---- main ---- */

static void usage(FILE *f)
{
        fprintf(f, "usage: cotal-soak [--minutes N] [--seed S] [--keep] [--broker-sigkill] [--strict-broker]\n"
                   "  --minutes N       how long the schedule runs (default 2; then a final drain)\n"
                   "  --seed S          the schedule's seed (default: from the clock; printed first)\n"
                   "  --keep            keep the work directory (schedule, daemon logs) even on success\n"
                   "  --broker-sigkill  SIGKILL the broker when drawn even on nats-server < 2.10, which\n"
                   "                    can lose acknowledged messages in a SIGKILL (default: SIGTERM there)\n"
                   "  --strict-broker   fail on pairs nats-server < 2.10 is proven to have lost (INBOX\n"
                   "                    evicted out of order after a restart; default: reported only)\n");
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st;
        (void)flag;
        (void)ftw;
        return remove(path);
}

int main(int argc, char **argv)
{
        g.minutes = 2;
        g.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
        static const struct option opts[] = {{"minutes", required_argument, NULL, 'm'},
                                             {"seed", required_argument, NULL, 's'},
                                             {"keep", no_argument, NULL, 'k'},
                                             {"strict-broker", no_argument, NULL, 'S'},
                                             {"broker-sigkill", no_argument, NULL, 'K'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
        int c;
        while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                char *end = NULL;
                switch (c) {
                case 'm':
                        g.minutes = strtod(optarg, &end);
                        if (!end || *end || !(g.minutes > 0 && g.minutes <= 24 * 60)) {
                                usage(stderr);
                                return 2;
                        }
                        break;
                case 's':
                        g.seed = strtoull(optarg, &end, 10);
                        if (!end || *end) {
                                usage(stderr);
                                return 2;
                        }
                        break;
                case 'k': g.keep = true; break;
                case 'K': g.broker_sigkill = true; break;
                case 'S': g.strict_broker = true; break;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        }
        if (optind != argc) {
                usage(stderr);
                return 2;
        }
        g.deliveryd = getenv("COTAL_DELIVERYD");
        g.deliveryctl = getenv("COTAL_DELIVERYCTL");
        if (!g.deliveryd || !g.deliveryctl) {
                fprintf(stderr, "soak: COTAL_DELIVERYD and COTAL_DELIVERYCTL must be set\n");
                return 2;
        }
        if (!natsd_available()) {
                fprintf(stderr, "soak: nats-server is not on PATH: skipping\n");
                return NATSD_SKIP;
        }
        printf("soak: seed %" PRIu64 " (replay: scripts/soak --minutes %g --seed %" PRIu64 ")\n", g.seed, g.minutes,
               g.seed);
        probe_broker_version(g.broker_version, sizeof g.broker_version);
        if (broker_fixed(g.broker_version))
                g.broker_sigkill = true;
        printf("soak: broker %s, nats-server %s: broker restarts drawn as SIGKILL %s\n", natsd_binary(),
               g.broker_version[0] ? g.broker_version : "(version unknown)",
               g.broker_sigkill ? "are SIGKILLs" : "are done with SIGTERM (--broker-sigkill to keep them)");
        fflush(stdout);
        g.rng = g.seed;
        g.t0 = soak_mono_ms();
        const char *tmp = getenv("TMPDIR");
        snprintf(g.workdir, sizeof g.workdir, "%s/cotal-soak-%" PRIu64 "-XXXXXX", tmp && *tmp ? tmp : "/tmp", g.seed);
        if (!mkdtemp(g.workdir)) {
                perror("soak: mkdtemp");
                return 1;
        }
        char path[400];
        snprintf(path, sizeof path, "%s/schedule.txt", g.workdir);
        g.sched = fopen(path, "w");
        snprintf(g.conf, sizeof g.conf, "%s/deliveryd.conf", g.workdir);
        printf("soak: work directory %s (schedule.txt, daemon-N.log)\n", g.workdir);
        struct sigaction sa = {.sa_handler = on_interrupt};
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);

        if (setup() == 0) {
                int64_t end = (int64_t)(g.minutes * 60000.0);
                uint64_t steps = 0;
                while (now_ms() < end && !interrupted && !g.stop_requested) {
                        step();
                        steps++;
                }
                note(true, "schedule done: %" PRIu64 " steps", steps);
                if (!g.stop_requested)
                        verify();
        }
        /* Stop: daemons (SIGTERM is a clean stop, §10.4), then the rest. */
        g.stop_requested = true;
        for (int i = 0; i < N_SLOTS; i++) {
                slot *s = &g.slots[i];
                if (!s->running)
                        continue;
                signal_slot(i, SIGTERM, "end of run");
                if (proc_wait(&s->p, 15000) < 0)
                        signal_slot(i, SIGKILL, "end of run, stuck");
                proc_wait(&s->p, 5000);
                slot_reap(i);
        }
        soak_presence_stop(&g.presence);
        soak_observer_stop(&g.dlv);
        soak_observer_stop(&g.inbox);
        if (g.failures) {
                char *log = slurp(g.broker.log);
                snprintf(path, sizeof path, "%s/server.log", g.workdir);
                FILE *f = fopen(path, "w");
                if (f) {
                        fputs(log, f);
                        fclose(f);
                }
                free(log);
        }
        kv_bucket_fini(&g.kv_members);
        kv_bucket_fini(&g.kv_acl);
        kv_bucket_fini(&g.kv_lease);
        kv_bucket_fini(&g.kv_channels);
        jspub_fini(&g.pub);
        jsCtx_Destroy(g.js);
        if (g.nc) {
                natsConnection_Close(g.nc);
                natsConnection_Destroy(g.nc);
        }
        if (g.failures) {
                /* The streams and consumer states behind the differences,
                 * for a server started on them later. */
                (void)natsd_stop(&g.broker);
                snprintf(path, sizeof path, "%s/store", g.workdir);
                if (rename(g.broker.store, path) == 0)
                        printf("soak: the broker's store is kept in %s\n", path);
        }
        natsd_destroy(&g.broker);
        if (g.sched)
                fclose(g.sched);
        int status = g.failures || interrupted ? 1 : 0;
        if (status) {
                printf("soak: FAIL (%d failure%s), seed %" PRIu64 "; schedule %s/schedule.txt; replay: scripts/soak "
                       "--minutes %g --seed %" PRIu64 "\n",
                       g.failures, g.failures == 1 ? "" : "s", g.seed, g.workdir, g.minutes, g.seed);
                for (int i = 0; i < g.failures && i < 8; i++)
                        printf("  %s\n", g.failure_text[i]);
        } else {
                printf("soak: PASS, seed %" PRIu64 "\n", g.seed);
                if (!g.keep)
                        nftw(g.workdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        }
        soak_observer_fini(&g.dlv);
        soak_observer_fini(&g.inbox);
        soak_model_fini(&g.model);
        contract_names_fini(&g.names);
        nats_CloseAndWait(2000);
        return status;
}
