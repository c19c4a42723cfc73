/* cotal-bench: deliveries per second, latency, memory and CPU of
 * cotal-deliveryd against cotal-bench-yardstick, the least program that
 * moves the same messages through the same two hops. It runs its own
 * nats-server on 127.0.0.1 and is not part of the test suite (scripts/bench
 * runs it). It reports; it fails (exit 1) only when a run lost, evicted or
 * duplicated a delivery.
 *
 *   cotal-bench [--quick] [--soak] [--repeat N] [--deliveries N]
 *               [--cases k1,k20,k200,live] [--yardstick PATH] [--latency-load PERCENT]
 *
 * Each case (K recipients per chat message) runs --repeat times (3; 1 with
 * --quick), the yardstick then the daemon, each on a fresh space preloaded
 * with --deliveries / K chat messages (400,000 deliveries; 20,000 with
 * --quick). --soak runs the daemon alone on k20 for 1,000,000 deliveries
 * (100,000 with --quick) and reports whether its RSS stays flat.
 *
 * Needs COTAL_DELIVERYD, COTAL_DELIVERYCTL and the yardstick (--yardstick
 * or COTAL_BENCH_YARDSTICK). */
#include "broker.h"
#include "contract_config.h"
#include "contract_subject.h"
#include "cotal.h"
#include "provision.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_REPEAT 3
#define MAX_REPEAT 20
#define DEFAULT_DELIVERIES 400000
#define QUICK_DELIVERIES 20000
#define SOAK_DELIVERIES 1000000
#define QUICK_SOAK_DELIVERIES 100000
#define SOAK_CHUNK_DELIVERIES 50000
#define LATENCY_MS 5000
#define QUICK_LATENCY_MS 2000
/* CHAT_<S> keeps 1000 messages per sender-and-channel subject (PROTOCOL
 * §2): a preload puts at most this many on one sender so none is
 * discarded before the program under test reads it. */
#define CHAT_PER_SENDER 900
#define TEXT_BYTES 200
#define BODY_MAX 1024
#define SUBJECT_MAX 256
#define ID_LEN 56 /* nkey-shaped ids: "U" + 55 of [A-Z2-7] */
#define LIVE_AGENTS 20
#define LIVE_MENTIONS 5
#define LIVE_MENTIONS_JSON ",\"mentions\":[\"agent0\",\"agent1\",\"agent2\",\"agent3\",\"agent4\"]"

#define API_TIMEOUT_MS 5000
#define READY_TIMEOUT_MS 20000
#define STOP_TIMEOUT_MS 15000
#define KILL_TIMEOUT_MS 5000
#define POLL_MS 100
#define PROGRESS_MS 1000
#define RSS_SAMPLE_MS 2000
#define PACE_NAP_MS 1
/* Waiting for deliveries fails after STALL_MS without one, and in any
 * case after 30 s + 1 s per DELIVER_MIN_PER_S awaited: a slow program is
 * measured, a stuck one fails. */
#define STALL_MS 30000
#define DELIVER_BASE_MS 30000
#define DELIVER_MIN_PER_S 250
#define LATENCY_DRAIN_MS 30000
#define FIRST_STAMP_WAIT_MS 2000
/* Nothing redelivers the held first inbox entry while a run lasts. */
#define FIRST_HOLD_ACK_WAIT_NS (3600LL * 1000000000LL)
#define PUB_MAX_PENDING 4096
#define PUB_STALL_WAIT_MS 5000
#define PUB_COMPLETE_WAIT_MS 60000

/* Targets the report checks (not the exit status). */
#define TARGET_RATIO 0.7
#define TARGET_P99_MS 10.0
#define TARGET_RSS_MIB 16.0
#define SOAK_FLAT_TOLERANCE 0.10

enum prog_kind { PROG_YARDSTICK, PROG_DAEMON, PROG_KINDS };
static const char *const prog_names[PROG_KINDS] = {"yardstick", "daemon"};

struct bench_case {
        const char *name;
        int owners; /* K: deliveries per chat message */
        const char *channel;
        bool live;         /* mention routing instead of durable members */
        bool ratio_target; /* the ratio target applies */
};

static const struct bench_case cases[] = {
        {"k1", 1, "general", false, false},
        {"k20", 20, "general", false, true},
        {"k200", 200, "general", false, true},
        {"live", LIVE_MENTIONS, "lobby", true, false},
};
#define N_CASES (sizeof cases / sizeof *cases)

/* One run of one program; every figure is a double so the report can
 * take min/median/max of any of them by offset. */
struct result {
        bool done;     /* the run happened */
        bool failed;   /* lost, evicted or duplicated deliveries */
        bool measured; /* rate (and what follows) is known */
        bool latency_measured;
        double rate; /* deliveries/s, from stored times */
        double p50_ms;
        double p99_ms;
        double rss_mib; /* peak (VmHWM) */
        double cpu_s;
        double lead_per_owner;
        double ratio; /* daemon only: its rate / the yardstick's; 0: unknown */
};

struct options {
        bool quick;
        bool soak;
        int repeat;
        uint64_t deliveries; /* 0: the mode's default */
        bool selected[N_CASES];
        const char *yardstick;
        const char *deliveryd;
        int latency_ms;
        uint64_t latency_load; /* percent of the measured rate paced in the latency phase */
};

struct bench {
        struct options opt;
        jsCtx *js; /* chat publishes and the bench's consumers, on tu_nc */
        atomic_uint_fast64_t pub_errors;
        char text[TEXT_BYTES + 1];
        struct result results[N_CASES][MAX_REPEAT][PROG_KINDS];
        int failures;
};

/* A space under test and the recipients of its messages. */
struct space {
        char name[32];
        const struct bench_case *c;
        contract_names names;    /* streams, filters, buckets (owned) */
        char (*ids)[ID_LEN + 1]; /* owned: members, or the live agents */
        int n_ids;
};

/* What is watched while a program under test works. */
struct sampler {
        uint64_t lead_max; /* reader's pending + ack pending entries */
        uint64_t rss_max_kb;
        int rss_samples;
        int64_t next_rss_ms;
};

struct run {
        struct bench *b;
        struct space sp;
        enum prog_kind kind;
        char label[64]; /* "k20 run 1 daemon" */
        proc p;
        uint64_t expected; /* deliveries so far */
        struct sampler smp;
        struct result *res;
};

/* Stored times of the latency phase, filled on cnats' subscription
 * threads (one writer per array) and read once the counters say so. */
struct latency {
        uint64_t chat_base; /* CHAT last_seq before the phase */
        uint64_t cap;       /* chat messages the phase may publish */
        uint64_t dlv_cap;
        int64_t *chat_ns;   /* by CHAT seq - chat_base - 1; 0: not seen */
        uint64_t *chat_off; /* CHAT seq offset + 1 by chat index; 0: not seen */
        int64_t *dlv_ns;
        uint64_t *dlv_ref; /* chat index << 1, or CHAT seq << 1 | 1 */
        atomic_uint_fast64_t chats_seen;
        atomic_uint_fast64_t dlvs_seen;
        natsSubscription *chat_sub;
        natsSubscription *dlv_sub;
};

static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
        interrupted = 1;
}

static void nap_ms(int ms)
{
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
}

static int64_t wall_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "U" + tag + n in base32 + 'A' padding: nkey-shaped, so token(id) == id. */
static void make_id(char out[ID_LEN + 1], const char *tag, uint64_t n)
{
        static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        int len = snprintf(out, ID_LEN + 1, "U%s", tag);
        for (int i = 0; i < 8; i++, n >>= 5)
                out[len++] = b32[n & 31];
        while (len < ID_LEN)
                out[len++] = 'A';
        out[len] = '\0';
}

static uint64_t div_up(uint64_t a, uint64_t b)
{
        return (a + b - 1) / b;
}

/* ---- broker reads (own error handling: a poll may fail and be retried) ---- */

static int stream_last_seq(const char *stream, uint64_t *seq)
{
        json_t *reply = NULL;
        int r = jsapi_stream_info(tu_nc, stream, NULL, API_TIMEOUT_MS, &reply, NULL);
        if (r == 0)
                r = json_path_u64(reply, "state.last_seq", seq);
        json_decref(reply);
        return r;
}

/* Entries the reader has not acked yet: the fan-out's lead over it. */
static int reader_lead(const char *inbox, uint64_t *lead)
{
        json_t *reply = NULL;
        uint64_t pending = 0, ack_pending = 0;
        int r = jsapi_consumer_info(tu_nc, inbox, CONTRACT_READER_DURABLE, API_TIMEOUT_MS, &reply, NULL);
        if (r == 0)
                r = json_path_u64(reply, "num_pending", &pending);
        if (r == 0)
                r = json_path_u64(reply, "num_ack_pending", &ack_pending);
        json_decref(reply);
        *lead = pending + ack_pending;
        return r;
}

/* "2024-05-01T10:00:00.123456789Z" (RFC 3339 in UTC; Go drops trailing
 * zeros of the fraction) to ns since the epoch. */
static int parse_stored_ns(const char *s, int64_t *ns)
{
        struct tm tm = {0};
        const char *p = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
        if (!p)
                return -EINVAL;
        int64_t frac = 0;
        int digits = 0;
        if (*p == '.')
                for (p++; isdigit((unsigned char)*p); p++)
                        if (digits < 9) {
                                frac = frac * 10 + (*p - '0');
                                digits++;
                        }
        for (; digits < 9; digits++)
                frac *= 10;
        if (*p != 'Z')
                return -EINVAL;
        *ns = (int64_t)timegm(&tm) * 1000000000LL + frac;
        return 0;
}

/* The time the stream stored message seq. */
static int stored_ns(const char *stream, uint64_t seq, int64_t *ns)
{
        char subject[SUBJECT_MAX];
        snprintf(subject, sizeof subject, "$JS.API.STREAM.MSG.GET.%s", stream);
        json_t *body = json_pack("{s:I}", "seq", (json_int_t)seq);
        json_t *reply = NULL;
        int r = jsapi_request(tu_nc, subject, body, API_TIMEOUT_MS, &reply, NULL);
        if (r == 0)
                r = parse_stored_ns(json_string_value(json_object_get(json_object_get(reply, "message"), "time")), ns);
        json_decref(body);
        json_decref(reply);
        return r;
}

/* ---- the process under test, through /proc ---- */

static uint64_t proc_status_kb(pid_t pid, const char *field)
{
        char path[64], line[256];
        snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
        FILE *f = fopen(path, "r");
        uint64_t kb = 0;
        size_t len = strlen(field);
        while (f && fgets(line, sizeof line, f))
                if (strncmp(line, field, len) == 0) {
                        kb = strtoull(line + len, NULL, 10);
                        break;
                }
        if (f)
                fclose(f);
        return kb;
}

static double proc_cpu_s(pid_t pid)
{
        char path[64], buf[1024];
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
        FILE *f = fopen(path, "r");
        size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f)
                fclose(f);
        buf[n] = '\0';
        /* The command name may hold spaces: fields count from its ')'. */
        const char *p = strrchr(buf, ')');
        unsigned long utime = 0, stime = 0;
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
                return 0;
        return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* ---- spaces ---- */

static int space_init(struct space *sp, const struct bench_case *c, const char *name)
{
        memset(sp, 0, sizeof *sp);
        sp->c = c;
        snprintf(sp->name, sizeof sp->name, "%s", name);
        int r = contract_names_init(&sp->names, name, strlen(name));
        if (r < 0)
                return r;
        sp->n_ids = c->live ? LIVE_AGENTS : c->owners;
        sp->ids = calloc((size_t)sp->n_ids, sizeof *sp->ids);
        if (!sp->ids)
                return -ENOMEM;
        for (int i = 0; i < sp->n_ids; i++)
                make_id(sp->ids[i], c->live ? "AGENT" : "MEMBER", (uint64_t)i);
        return 0;
}

static void space_fini(struct space *sp)
{
        contract_names_fini(&sp->names);
        free(sp->ids);
        sp->ids = NULL;
}

/* Provisions the space and writes its fixture records: K durable members
 * of "general" (PROTOCOL §4.3, §4.4), or a live "lobby" (§4.6) whose
 * agents may read it. The recipients are the first K ids either way. */
static void space_fixtures(const struct space *sp)
{
        co_provision(sp->name);
        char allow[64];
        if (sp->c->live)
                tu_kv_put(sp->names.channels_bucket, sp->c->channel, "{\"deliveryClass\":\"live\"}");
        snprintf(allow, sizeof allow, "[\"%s\"]", sp->c->channel);
        for (int i = 0; i < sp->n_ids; i++) {
                co_acl(sp->name, sp->ids[i], allow);
                if (!sp->c->live)
                        co_member(sp->name, sp->c->channel, sp->ids[i], 0, 1, -1);
        }
}

/* Presence expires after 6 s (§4.1): written just before the program
 * starts, so the daemon's roster holds the agents (it keeps entries that
 * age out, §4.7). */
static void space_announce(const struct space *sp)
{
        for (int i = 0; sp->c->live && i < sp->n_ids; i++) {
                char name[24];
                snprintf(name, sizeof name, "agent%d", i);
                co_presence(sp->name, sp->ids[i], name);
        }
}

/* tests/lib's fixtures report through check: every ck_assert, passing or
 * not, talks to a test runner, and a failing one jumps back to it. So a
 * fixture step runs as the single test of a silent no-fork suite, and its
 * failure fails only the run that needed it. */
static void (*fixture_fn)(const struct space *sp);
static const struct space *fixture_space;

START_TEST(fixture_step)
{
        fixture_fn(fixture_space);
}
END_TEST

static int fixture(void (*fn)(const struct space *sp), const struct space *sp)
{
        fixture_fn = fn;
        fixture_space = sp;
        Suite *suite = suite_create("bench");
        TCase *tc = tcase_create("fixture");
        tcase_add_test(tc, fixture_step);
        suite_add_tcase(suite, tc);
        SRunner *sr = srunner_create(suite);
        srunner_set_fork_status(sr, CK_NOFORK);
        srunner_run_all(sr, CK_SILENT);
        int failed = srunner_ntests_failed(sr);
        if (failed) {
                TestResult **tr = srunner_failures(sr);
                fprintf(stderr, "Failed to set up space %s: %s:%d: %s\n", sp->name, tr_lfile(tr[0]), tr_lno(tr[0]),
                        tr_msg(tr[0]));
                free(tr);
        }
        srunner_free(sr);
        return failed ? -EIO : 0;
}

/* The daemon creates fanout (deliver_policy "new", PROTOCOL §3) and
 * reader when it first starts, and provisioning does not: made only then,
 * fanout would skip the preload. So the bench creates both first, exactly
 * as §3 says (with the daemon's own code); the program binds them. */
static int space_durables(const struct space *sp)
{
        const char *streams[] = {sp->names.chat_stream, sp->names.inbox_stream};
        json_t *configs[] = {contract_fanout_config(&sp->names), contract_reader_config(&sp->names)};
        int r = 0;
        for (size_t i = 0; i < 2; i++) {
                const char *durable = json_string_value(json_object_get(configs[i], "durable_name"));
                char api[SUBJECT_MAX];
                prov_report rep = {0};
                snprintf(api, sizeof api, "$JS.API.CONSUMER.DURABLE.CREATE.%s.%s", streams[i], durable);
                if (r == 0 && (r = provision_consumer(tu_nc, streams[i], configs[i], api, &rep)) < 0)
                        fprintf(stderr, "Failed to create durable %s on %s: %s\n", durable, streams[i], strerror(-r));
                prov_report_fini(&rep);
                json_decref(configs[i]);
        }
        return r;
}

/* Deletes every stream of the space so the store stays small. */
static void space_delete(const struct space *sp)
{
        char *names[STREAM_COUNT_ + BUCKET_COUNT_] = {NULL};
        size_t n = 0;
        if (!sp->names.token)
                return; /* space_init failed: nothing was made */
        for (int i = 0; i < STREAM_COUNT_; i++)
                names[n++] = strdup(contract_stream_name(&sp->names, (contract_stream)i));
        for (int i = 0; i < BUCKET_COUNT_; i++)
                names[n++] = contract_bucket_stream(contract_bucket_name(&sp->names, (contract_bucket)i));
        for (size_t i = 0; i < n; i++) {
                char subject[SUBJECT_MAX];
                json_t *reply = NULL;
                snprintf(subject, sizeof subject, "$JS.API.STREAM.DELETE.%s", names[i] ? names[i] : "");
                if (!names[i] || jsapi_request(tu_nc, subject, NULL, API_TIMEOUT_MS, &reply, NULL) < 0)
                        fprintf(stderr, "warning: could not delete stream %s of %s\n", subject, sp->name);
                json_decref(reply);
                free(names[i]);
        }
}

/* ---- chat messages ---- */

static void count_pub_error(jsCtx *js, jsPubAckErr *pae, void *closure)
{
        struct bench *b = closure;
        atomic_fetch_add(&b->pub_errors, 1);
}

/* Publishes chat message "<prefix>-<i>" from sender i % n_senders, as an
 * agent does (§5.1: from.id is the subject's sender, Nats-Msg-Id the id).
 * Pipelined: chat_settle waits for the PubAcks. */
static natsStatus chat_publish(struct bench *b, const struct space *sp, const char *prefix, uint64_t i,
                               uint64_t n_senders)
{
        char sender[ID_LEN + 1], id[32], subject[SUBJECT_MAX], body[BODY_MAX];
        make_id(sender, "SENDER", i % n_senders);
        snprintf(id, sizeof id, "%s-%" PRIu64, prefix, i);
        snprintf(subject, sizeof subject, "cotal.%s.chat.%s.%s", sp->name, sender, sp->c->channel);
        int len = snprintf(body, sizeof body,
                           "{\"id\":\"%s\",\"ts\":%lld,\"from\":{\"id\":\"%s\",\"name\":\"s\"},\"channel\":\"%s\","
                           "\"parts\":[{\"kind\":\"text\",\"text\":\"%s\"}]%s}",
                           id, (long long)wall_ms(), sender, sp->c->channel, b->text,
                           sp->c->live ? LIVE_MENTIONS_JSON : "");
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = id;
        return js_PublishAsync(b->js, subject, body, len, &po);
}

/* Waits for the PubAcks of everything published since errors_before was
 * read; -EIO if any publish failed. */
static int chat_settle(struct bench *b, uint64_t errors_before, natsStatus published)
{
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = PUB_COMPLETE_WAIT_MS;
        natsStatus s = js_PublishAsyncComplete(b->js, &po);
        if (published != NATS_OK || s != NATS_OK || atomic_load(&b->pub_errors) != errors_before) {
                fprintf(stderr, "Failed to publish chat messages: %s / %s\n", natsStatus_GetText(published),
                        natsStatus_GetText(s));
                return -EIO;
        }
        return 0;
}

/* Publishes chat messages [first, first + n), spread over enough senders
 * that CHAT_<S> discards none. */
static int chat_preload(struct bench *b, const struct space *sp, uint64_t first, uint64_t n)
{
        uint64_t errors = atomic_load(&b->pub_errors);
        uint64_t senders = div_up(n, CHAT_PER_SENDER);
        natsStatus s = NATS_OK;
        for (uint64_t i = first; i < first + n && s == NATS_OK; i++)
                s = chat_publish(b, sp, "b", i, senders);
        return chat_settle(b, errors, s);
}

/* ---- the program under test ---- */

static char *join_owners(const struct space *sp)
{
        size_t k = (size_t)sp->c->owners;
        char *list = malloc(k * (ID_LEN + 1) + 1);
        if (!list)
                return NULL;
        list[0] = '\0';
        for (size_t i = 0; i < k; i++) {
                if (i)
                        strcat(list, ",");
                strcat(list, sp->ids[i]);
        }
        return list;
}

static int prog_spawn(struct run *r)
{
        const struct options *o = &r->b->opt;
        if (r->kind == PROG_DAEMON) {
                char *argv[] = {(char *)o->deliveryd, "--space",     r->sp.name, "--server", tu_broker.url,
                                "--no-auth",          "--log-level", "notice",   NULL};
                return proc_spawn(&r->p, argv, NULL);
        }
        char *owners = join_owners(&r->sp);
        if (!owners)
                return -ENOMEM;
        char *argv[] = {(char *)o->yardstick, "--server", tu_broker.url, "--space",
                        r->sp.name,           "--owners", owners,        NULL};
        int rc = proc_spawn(&r->p, argv, NULL);
        free(owners);
        return rc;
}

/* Tail of the program's stderr, to say why it failed. */
static void prog_dump(const struct run *r)
{
        char *err = proc_stderr(&r->p);
        size_t len = strlen(err);
        if (len)
                fprintf(stderr, "--- %s stderr (tail) ---\n%s\n---\n", r->label, err + (len > 2000 ? len - 2000 : 0));
        free(err);
}

static int prog_start(struct run *r)
{
        const char *ready = r->kind == PROG_DAEMON ? "delivery daemon up" : "yardstick ready";
        int rc = prog_spawn(r);
        int64_t deadline = test_now_ms() + READY_TIMEOUT_MS;
        while (rc == 0) {
                char *out = proc_stdout(&r->p);
                bool up = strstr(out, ready) != NULL;
                free(out);
                if (up)
                        return 0;
                if (proc_wait(&r->p, 0) == 0)
                        rc = -ECHILD;
                else if (test_now_ms() >= deadline || interrupted)
                        rc = -ETIMEDOUT;
                else
                        nap_ms(10);
        }
        fprintf(stderr, "%s: Failed to start: %s\n", r->label, strerror(-rc));
        prog_dump(r);
        return rc;
}

/* SIGTERM is a clean stop for both programs (exit 0). */
static void prog_stop(struct run *r)
{
        if (proc_wait(&r->p, 0) == 0)
                return;
        proc_signal(&r->p, SIGTERM);
        if (proc_wait(&r->p, STOP_TIMEOUT_MS) < 0) {
                proc_signal(&r->p, SIGKILL);
                proc_wait(&r->p, KILL_TIMEOUT_MS);
        }
        if (r->p.status != 0) {
                fprintf(stderr, "warning: %s exited %d on SIGTERM\n", r->label, r->p.status);
                prog_dump(r);
        }
}

/* Peak RSS and CPU time, read just before the program is stopped. */
static void prog_usage(struct run *r)
{
        r->res->rss_mib = (double)proc_status_kb(r->p.pid, "VmHWM:") / 1024.0;
        r->res->cpu_s = proc_cpu_s(r->p.pid);
}

/* ---- the first inbox entry's stored time ---- */

/* INBOX_<S> keeps 1000 entries per owner: its first entry may be gone
 * long before the run ends. A push consumer allowed one unacked message
 * gets that entry the moment it is stored and holds it in our client. */
static natsSubscription *first_hold(struct bench *b, const struct space *sp)
{
        jsSubOptions so;
        jsSubOptions_Init(&so);
        so.Stream = sp->names.inbox_stream;
        so.Config.DeliverPolicy = js_DeliverAll;
        so.Config.AckPolicy = js_AckExplicit;
        so.Config.MaxAckPending = 1;
        so.Config.AckWait = FIRST_HOLD_ACK_WAIT_NS;
        natsSubscription *sub = NULL;
        jsErrCode jerr = 0;
        natsStatus s = js_SubscribeSync(&sub, b->js, sp->names.dinbox_filter, NULL, &so, &jerr);
        if (s != NATS_OK)
                fprintf(stderr, "Failed to watch %s: %s (%d)\n", sp->names.inbox_stream, natsStatus_GetText(s),
                        (int)jerr);
        return sub;
}

static int first_stamp(natsSubscription *sub, int64_t *ns)
{
        natsMsg *m = NULL;
        jsMsgMetaData *md = NULL;
        natsStatus s = natsSubscription_NextMsg(&m, sub, FIRST_STAMP_WAIT_MS);
        if (s == NATS_OK)
                s = natsMsg_GetMetaData(&md, m);
        if (s == NATS_OK)
                *ns = md->Timestamp;
        jsMsgMetaData_Destroy(md);
        natsMsg_Destroy(m);
        return s == NATS_OK ? 0 : -EIO;
}

/* ---- waiting for deliveries ---- */

/* A FAIL line on stdout, before whatever goes to stderr after it. */
__attribute__((format(printf, 2, 3))) static void print_fail(const struct run *r, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        printf("%s: FAIL: ", r->label);
        vprintf(fmt, ap);
        printf("\n");
        fflush(stdout);
        va_end(ap);
}

static void sample(struct run *r)
{
        uint64_t lead = 0;
        if (reader_lead(r->sp.names.inbox_stream, &lead) == 0 && lead > r->smp.lead_max)
                r->smp.lead_max = lead;
        int64_t now = test_now_ms();
        if (now < r->smp.next_rss_ms)
                return;
        r->smp.next_rss_ms = now + RSS_SAMPLE_MS;
        uint64_t kb = proc_status_kb(r->p.pid, "VmRSS:");
        if (kb > r->smp.rss_max_kb)
                r->smp.rss_max_kb = kb;
        r->smp.rss_samples++;
}

static void progress(const struct run *r, uint64_t got, uint64_t *last_got, int64_t *last_ms)
{
        int64_t now = test_now_ms();
        if (now - *last_ms < PROGRESS_MS)
                return;
        double per_s = (double)(got - *last_got) * 1000.0 / (double)(now - *last_ms);
        fprintf(stderr, "  %s: %" PRIu64 "/%" PRIu64 " delivered, %.0f/s\n", r->label, got, r->expected, per_s);
        *last_got = got;
        *last_ms = now;
}

/* Polls DLV_<S>'s last_seq (on a fresh stream: deliveries ever stored,
 * dedup-rejected copies not counted) until it reaches r->expected, the
 * last `awaited` of them still to come, sampling the reader's lead and the
 * program's RSS. Bounded (see STALL_MS). */
static bool wait_delivered(struct run *r, uint64_t awaited)
{
        int64_t now = test_now_ms(), moved_ms = now, last_ms = now;
        int64_t deadline = now + DELIVER_BASE_MS + (int64_t)(awaited * 1000 / DELIVER_MIN_PER_S);
        uint64_t got = 0;
        stream_last_seq(r->sp.names.dlv_stream, &got);
        uint64_t moved = got, last_got = got;
        bool exited = false;
        while (!interrupted && !exited && now < deadline && now - moved_ms < STALL_MS) {
                if (stream_last_seq(r->sp.names.dlv_stream, &got) == 0 && got >= r->expected)
                        return true;
                if (got > moved) {
                        moved = got;
                        moved_ms = now;
                }
                sample(r);
                progress(r, got, &last_got, &last_ms);
                exited = proc_wait(&r->p, 0) == 0;
                nap_ms(POLL_MS);
                now = test_now_ms();
        }
        const char *why = interrupted ? "interrupted" : exited ? "it exited" : now >= deadline ? "too slow" : "stalled";
        print_fail(r, "%" PRIu64 " of %" PRIu64 " delivered (%s)", got, r->expected, why);
        prog_dump(r);
        return false;
}

/* Exactly r->expected entries written and delivered: fewer delivered than
 * written is an inbox entry evicted unread; more is a duplicate. */
static bool counts_exact(const struct run *r)
{
        uint64_t written = 0, delivered = 0;
        if (stream_last_seq(r->sp.names.inbox_stream, &written) == 0 &&
            stream_last_seq(r->sp.names.dlv_stream, &delivered) == 0 && written == r->expected &&
            delivered == r->expected)
                return true;
        print_fail(r, "%" PRIu64 " inbox entries written, %" PRIu64 " delivered, %" PRIu64 " expected", written,
                   delivered, r->expected);
        return false;
}

/* Deliveries per second between the first inbox entry's and the last
 * delivery's stored times: the broker's clock, not our polling. */
static int measure_rate(struct run *r, natsSubscription *first)
{
        int64_t t0 = 0, t1 = 0;
        if (first_stamp(first, &t0) < 0 || stored_ns(r->sp.names.dlv_stream, r->expected, &t1) < 0 || t1 <= t0) {
                fprintf(stderr, "warning: %s: no stored times: rate not measured\n", r->label);
                return -EIO;
        }
        r->res->rate = (double)r->expected * 1e9 / (double)(t1 - t0);
        r->res->lead_per_owner = (double)r->smp.lead_max / (double)r->sp.c->owners;
        r->res->measured = true;
        return 0;
}

/* ---- latency phase ---- */

static void on_chat(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
        struct latency *lat = arg;
        jsMsgMetaData *md = NULL;
        const char *id = NULL;
        if (natsMsg_GetMetaData(&md, m) == NATS_OK) {
                uint64_t off = md->Sequence.Stream - lat->chat_base - 1;
                if (off < lat->cap) {
                        lat->chat_ns[off] = md->Timestamp;
                        uint64_t i = UINT64_MAX;
                        if (natsMsgHeader_Get(m, "Nats-Msg-Id", &id) == NATS_OK && strncmp(id, "l-", 2) == 0)
                                i = strtoull(id + 2, NULL, 10);
                        if (i < lat->cap)
                                lat->chat_off[i] = off + 1;
                }
                jsMsgMetaData_Destroy(md);
        }
        atomic_fetch_add_explicit(&lat->chats_seen, 1, memory_order_release);
        natsMsg_Destroy(m);
}

/* A delivery's id names its chat message: "<chat id>:<owner>:<gen>" from
 * the daemon, "<CHAT seq>:<owner>:1" from the yardstick. Its time is when
 * a core subscription on dlv.> saw the publish, which the broker routes
 * as it stores it (within a fraction of a millisecond): reading every dlv
 * copy back through a JetStream consumer instead doubled the broker's
 * work during the phase and measured the bench more than the program. */
static void on_dlv(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
        struct latency *lat = arg;
        uint64_t k = atomic_load_explicit(&lat->dlvs_seen, memory_order_relaxed);
        const char *id = NULL;
        if (k < lat->dlv_cap && natsMsgHeader_Get(m, "Nats-Msg-Id", &id) == NATS_OK) {
                struct timespec now;
                clock_gettime(CLOCK_REALTIME, &now);
                lat->dlv_ns[k] = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
                if (strncmp(id, "l-", 2) == 0)
                        lat->dlv_ref[k] = strtoull(id + 2, NULL, 10) << 1;
                else
                        lat->dlv_ref[k] = strtoull(id, NULL, 10) << 1 | 1;
        }
        atomic_store_explicit(&lat->dlvs_seen, k + 1, memory_order_release);
        natsMsg_Destroy(m);
}

static natsSubscription *ordered_from(struct bench *b, const char *stream, const char *filter, uint64_t start_seq,
                                      natsMsgHandler cb, void *arg)
{
        jsSubOptions so;
        jsSubOptions_Init(&so);
        so.Stream = stream;
        so.Ordered = true;
        so.Config.DeliverPolicy = js_DeliverByStartSequence;
        so.Config.OptStartSeq = start_seq;
        natsSubscription *sub = NULL;
        jsErrCode jerr = 0;
        natsStatus s = js_Subscribe(&sub, b->js, filter, cb, arg, NULL, &so, &jerr);
        if (s != NATS_OK)
                fprintf(stderr, "Failed to subscribe to %s: %s (%d)\n", stream, natsStatus_GetText(s), (int)jerr);
        return sub;
}

static void latency_fini(struct latency *lat)
{
        broker_sub_close(tu_nc, &lat->chat_sub);
        broker_sub_close(tu_nc, &lat->dlv_sub);
        free(lat->chat_ns);
        free(lat->chat_off);
        free(lat->dlv_ns);
        free(lat->dlv_ref);
}

/* Arrays for up to cap chat messages and their deliveries, and the two
 * consumers that fill them, both starting after what is stored now. */
static int latency_init(struct latency *lat, struct run *r, uint64_t cap)
{
        memset(lat, 0, sizeof *lat);
        const contract_names *n = &r->sp.names;
        if (stream_last_seq(n->chat_stream, &lat->chat_base) < 0)
                return -EIO;
        lat->cap = cap;
        lat->dlv_cap = cap * (uint64_t)r->sp.c->owners;
        lat->chat_ns = calloc(cap, sizeof *lat->chat_ns);
        lat->chat_off = calloc(cap, sizeof *lat->chat_off);
        lat->dlv_ns = calloc(lat->dlv_cap, sizeof *lat->dlv_ns);
        lat->dlv_ref = calloc(lat->dlv_cap, sizeof *lat->dlv_ref);
        if (!lat->chat_ns || !lat->chat_off || !lat->dlv_ns || !lat->dlv_ref)
                return -ENOMEM;
        lat->chat_sub = ordered_from(r->b, n->chat_stream, n->chat_filter, lat->chat_base + 1, on_chat, lat);
        if (natsConnection_Subscribe(&lat->dlv_sub, tu_nc, n->dlv_filter, on_dlv, lat) != NATS_OK ||
            natsConnection_Flush(tu_nc) != NATS_OK)
                fprintf(stderr, "Failed to subscribe to %s\n", n->dlv_filter);
        return lat->chat_sub && lat->dlv_sub ? 0 : -EIO;
}

/* Publishes chat messages at per_s for duration_ms; returns how many. */
static uint64_t latency_pace(struct run *r, double per_s, uint64_t cap, int duration_ms, int *err)
{
        struct bench *b = r->b;
        uint64_t errors = atomic_load(&b->pub_errors), senders = div_up(cap, CHAT_PER_SENDER), sent = 0;
        natsStatus s = NATS_OK;
        int64_t start = test_now_ms();
        for (int64_t t = 0; t < duration_ms && s == NATS_OK && !interrupted; t = test_now_ms() - start) {
                uint64_t due = (uint64_t)((double)t * per_s / 1000.0) + 1;
                for (; sent < due && sent < cap && s == NATS_OK; sent++)
                        s = chat_publish(b, &r->sp, "l", sent, senders);
                nap_ms(PACE_NAP_MS);
        }
        *err = chat_settle(b, errors, s);
        return sent;
}

static bool latency_drained(const struct latency *lat, uint64_t chats, uint64_t dlvs)
{
        return atomic_load_explicit(&lat->chats_seen, memory_order_acquire) >= chats &&
               atomic_load_explicit(&lat->dlvs_seen, memory_order_acquire) >= dlvs;
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return (x > y) - (x < y);
}

/* q-quantile of sorted v[0..n) (nearest rank). */
static double quantile(const double *v, size_t n, double q)
{
        size_t rank = (size_t)ceil(q * (double)n);
        return v[rank ? rank - 1 : 0];
}

static size_t latency_ms(const struct latency *lat, double *out)
{
        uint64_t seen = atomic_load_explicit(&lat->dlvs_seen, memory_order_acquire);
        size_t n = 0;
        for (uint64_t k = 0; k < seen && k < lat->dlv_cap; k++) {
                if (!lat->dlv_ns[k])
                        continue; /* its id or metadata was unreadable */
                uint64_t ref = lat->dlv_ref[k], v = ref >> 1, off = UINT64_MAX;
                if (ref & 1)
                        off = v - lat->chat_base - 1;
                else if (v < lat->cap && lat->chat_off[v])
                        off = lat->chat_off[v] - 1;
                if (off < lat->cap && lat->chat_ns[off])
                        out[n++] = (double)(lat->dlv_ns[k] - lat->chat_ns[off]) / 1e6;
        }
        return n;
}

static void latency_report(struct run *r, const struct latency *lat)
{
        double *v = malloc(lat->dlv_cap * sizeof *v);
        size_t n = v ? latency_ms(lat, v) : 0;
        if (n) {
                qsort(v, n, sizeof *v, cmp_double);
                r->res->p50_ms = quantile(v, n, 0.50);
                r->res->p99_ms = quantile(v, n, 0.99);
                r->res->latency_measured = true;
        }
        free(v);
}

/* Chat messages paced at --latency-load percent (default half) of the measured rate: every delivery's stored
 * time minus its chat message's. Counts the deliveries it caused. */
static bool latency_phase(struct run *r)
{
        const struct options *o = &r->b->opt;
        double per_s = r->res->rate * (double)o->latency_load / 100.0 / (double)r->sp.c->owners;
        uint64_t cap = (uint64_t)ceil(per_s * o->latency_ms / 1000.0) + 1;
        struct latency lat;
        int err = latency_init(&lat, r, cap);
        uint64_t sent = err ? 0 : latency_pace(r, per_s, cap, o->latency_ms, &err);
        uint64_t want = sent * (uint64_t)r->sp.c->owners;
        r->expected += want;
        int64_t deadline = test_now_ms() + LATENCY_DRAIN_MS;
        while (!err && !latency_drained(&lat, sent, want) && test_now_ms() < deadline && !interrupted)
                nap_ms(POLL_MS);
        if (!err)
                latency_report(r, &lat);
        latency_fini(&lat);
        return err == 0;
}

/* ---- one run ---- */

static void print_result(const struct run *r)
{
        const struct result *res = r->res;
        printf("%s:", r->label);
        if (res->measured)
                printf(" %.0f deliv/s", res->rate);
        if (res->latency_measured)
                printf(" p50 %.2f ms p99 %.2f ms", res->p50_ms, res->p99_ms);
        if (res->rss_mib > 0)
                printf(" rss %.1f MiB cpu %.1f s", res->rss_mib, res->cpu_s);
        if (res->measured)
                printf(" lead/owner %.0f", res->lead_per_owner);
        if (res->ratio > 0)
                printf(" ratio=%.2f", res->ratio);
        printf("%s\n", res->failed ? " FAIL" : "");
        fflush(stdout);
}

/* Runs the program on a preloaded space: throughput, then latency. */
static bool run_program(struct run *r, natsSubscription *first)
{
        if (prog_start(r) < 0)
                return false;
        bool ok = wait_delivered(r, r->expected) && counts_exact(r);
        if (ok && measure_rate(r, first) == 0) {
                if (!latency_phase(r))
                        fprintf(stderr, "warning: %s: latency not measured\n", r->label);
                /* The phase's deliveries must be exact too. */
                ok = counts_exact(r);
        }
        prog_usage(r);
        prog_stop(r);
        return ok;
}

/* yard: the yardstick's result of the same run, for the daemon's ratio
 * (NULL when the yardstick itself runs). */
static void run_case(struct bench *b, const struct bench_case *c, enum prog_kind kind, int index, struct result *res,
                     const struct result *yard)
{
        char name[32];
        snprintf(name, sizeof name, "%c%s%d", kind == PROG_DAEMON ? 'd' : 'y', c->name, index);
        struct run r = {.b = b, .kind = kind, .res = res};
        snprintf(r.label, sizeof r.label, "%s run %d %s", c->name, index, prog_names[kind]);
        uint64_t chats = b->opt.deliveries / (uint64_t)c->owners;
        chats = chats ? chats : 1;
        r.expected = chats * (uint64_t)c->owners;
        res->done = true;
        bool ok = false;
        natsSubscription *first = NULL;
        if (space_init(&r.sp, c, name) == 0 && fixture(space_fixtures, &r.sp) == 0 && space_durables(&r.sp) == 0 &&
            chat_preload(b, &r.sp, 0, chats) == 0 && (first = first_hold(b, &r.sp)) &&
            fixture(space_announce, &r.sp) == 0)
                ok = run_program(&r, first);
        broker_sub_close(tu_nc, &first);
        proc_destroy(&r.p);
        space_delete(&r.sp);
        space_fini(&r.sp);
        res->failed = !ok;
        if (yard && res->measured && yard->measured)
                res->ratio = res->rate / yard->rate;
        print_result(&r);
        b->failures += !ok;
}

/* ---- report ---- */

struct metric {
        const char *label;
        enum prog_kind kind;
        size_t offset;
        int decimals;
        bool latency; /* needs latency_measured */
};

enum {
        M_DAEMON_RATE,
        M_YARD_RATE,
        M_RATIO,
        M_DAEMON_P50,
        M_DAEMON_P99,
        M_YARD_P50,
        M_YARD_P99,
        M_DAEMON_RSS,
        M_DAEMON_CPU,
        M_DAEMON_LEAD,
        N_METRICS
};

#define RESULT_FIELD(f) offsetof(struct result, f)
static const struct metric metrics[N_METRICS] = {
        [M_DAEMON_RATE] = {"daemon deliv/s", PROG_DAEMON, RESULT_FIELD(rate), 0, false},
        [M_YARD_RATE] = {"yardstick deliv/s", PROG_YARDSTICK, RESULT_FIELD(rate), 0, false},
        [M_RATIO] = {"ratio daemon/yardstick", PROG_DAEMON, RESULT_FIELD(ratio), 2, false},
        [M_DAEMON_P50] = {"daemon p50 ms", PROG_DAEMON, RESULT_FIELD(p50_ms), 2, true},
        [M_DAEMON_P99] = {"daemon p99 ms", PROG_DAEMON, RESULT_FIELD(p99_ms), 2, true},
        [M_YARD_P50] = {"yardstick p50 ms", PROG_YARDSTICK, RESULT_FIELD(p50_ms), 2, true},
        [M_YARD_P99] = {"yardstick p99 ms", PROG_YARDSTICK, RESULT_FIELD(p99_ms), 2, true},
        [M_DAEMON_RSS] = {"daemon peak RSS MiB", PROG_DAEMON, RESULT_FIELD(rss_mib), 1, false},
        [M_DAEMON_CPU] = {"daemon CPU s", PROG_DAEMON, RESULT_FIELD(cpu_s), 1, false},
        [M_DAEMON_LEAD] = {"daemon lead/owner max", PROG_DAEMON, RESULT_FIELD(lead_per_owner), 0, false},
};

struct spread {
        size_t n;
        double min, median, max;
};

/* min/median/max of one metric over the runs that measured it. */
static struct spread spread_of(const struct bench *b, size_t ci, const struct metric *m)
{
        double v[MAX_REPEAT];
        struct spread s = {0};
        for (int i = 0; i < b->opt.repeat; i++) {
                const struct result *res = &b->results[ci][i][m->kind];
                bool no_ratio = m->offset == RESULT_FIELD(ratio) && res->ratio <= 0;
                if (!res->measured || (m->latency && !res->latency_measured) || no_ratio)
                        continue;
                v[s.n++] = *(const double *)((const char *)res + m->offset);
        }
        if (!s.n)
                return s;
        qsort(v, s.n, sizeof *v, cmp_double);
        s.min = v[0];
        s.max = v[s.n - 1];
        s.median = s.n % 2 ? v[s.n / 2] : (v[s.n / 2 - 1] + v[s.n / 2]) / 2;
        return s;
}

/* "p99 < 10 ms met (3.20)"; the median decides. */
static void print_target(const char *what, const struct spread *s, bool met, int decimals)
{
        if (!s->n)
                printf("%s unknown", what);
        else
                printf("%s %s (%.*f)", what, met ? "met" : "NOT met", decimals, s->median);
}

static void report_targets(const struct bench *b, size_t ci)
{
        struct spread ratio = spread_of(b, ci, &metrics[M_RATIO]);
        struct spread p99 = spread_of(b, ci, &metrics[M_DAEMON_P99]);
        struct spread rss = spread_of(b, ci, &metrics[M_DAEMON_RSS]);
        char what[64];
        printf("\ntargets (medians): ");
        snprintf(what, sizeof what, "ratio >= %.1f", TARGET_RATIO);
        if (cases[ci].ratio_target)
                print_target(what, &ratio, ratio.median >= TARGET_RATIO, 2);
        else
                printf("ratio n/a (k20/k200 only)");
        snprintf(what, sizeof what, "; p99 < %.0f ms", TARGET_P99_MS);
        print_target(what, &p99, p99.median < TARGET_P99_MS, 2);
        snprintf(what, sizeof what, "; RSS < %.0f MiB", TARGET_RSS_MIB);
        print_target(what, &rss, rss.median < TARGET_RSS_MIB, 1);
        printf("\n");
}

static void report_case(const struct bench *b, size_t ci)
{
        int failed = 0;
        for (int i = 0; i < b->opt.repeat; i++)
                for (int k = 0; k < PROG_KINDS; k++)
                        failed += b->results[ci][i][k].failed;
        printf("\n### %s: %d recipient%s per message, %" PRIu64 " deliveries, %d run%s%s\n\n", cases[ci].name,
               cases[ci].owners, cases[ci].owners == 1 ? "" : "s", b->opt.deliveries, b->opt.repeat,
               b->opt.repeat == 1 ? "" : "s", failed ? " (some FAILED)" : "");
        printf("| metric | min | median | max |\n|---|---|---|---|\n");
        for (size_t m = 0; m < N_METRICS; m++) {
                struct spread s = spread_of(b, ci, &metrics[m]);
                printf("| %s |", metrics[m].label);
                if (!s.n) {
                        printf(" - | - | - |\n");
                        continue;
                }
                int d = metrics[m].decimals;
                printf(" %.*f | %.*f | %.*f |\n", d, s.min, d, s.median, d, s.max);
        }
        report_targets(b, ci);
}

static void run_all(struct bench *b)
{
        for (size_t ci = 0; ci < N_CASES && !interrupted; ci++) {
                if (!b->opt.selected[ci])
                        continue;
                /* Alternate yardstick then daemon within each run, so both
                 * see the same machine load. */
                for (int i = 0; i < b->opt.repeat && !interrupted; i++) {
                        struct result *res = b->results[ci][i];
                        run_case(b, &cases[ci], PROG_YARDSTICK, i + 1, &res[PROG_YARDSTICK], NULL);
                        if (!interrupted)
                                run_case(b, &cases[ci], PROG_DAEMON, i + 1, &res[PROG_DAEMON], &res[PROG_YARDSTICK]);
                }
        }
        for (size_t ci = 0; ci < N_CASES; ci++)
                if (b->opt.selected[ci] && b->results[ci][0][PROG_YARDSTICK].done)
                        report_case(b, ci);
}

/* ---- soak ---- */

static void soak_report(const struct run *r, bool ok, double secs, uint64_t rss_10_kb, uint64_t rss_end_kb)
{
        uint64_t max_kb = r->smp.rss_max_kb;
        max_kb = rss_10_kb > max_kb ? rss_10_kb : max_kb;
        max_kb = rss_end_kb > max_kb ? rss_end_kb : max_kb;
        bool flat = rss_10_kb && fabs((double)rss_end_kb - (double)rss_10_kb) <= SOAK_FLAT_TOLERANCE * rss_10_kb;
        printf("%s: %" PRIu64 " deliveries in %.1f s (%.0f/s, fed in chunks of %d)%s\n", r->label, r->expected, secs,
               secs > 0 ? (double)r->expected / secs : 0, SOAK_CHUNK_DELIVERIES, ok ? "" : " FAIL");
        printf("%s: RSS after 10%% %.1f MiB, at the end %.1f MiB, max %.1f MiB (sampled every %d s, %d samples); "
               "peak (VmHWM) %.1f MiB, cpu %.1f s: %s\n",
               r->label, rss_10_kb / 1024.0, rss_end_kb / 1024.0, max_kb / 1024.0, RSS_SAMPLE_MS / 1000,
               r->smp.rss_samples, r->res->rss_mib, r->res->cpu_s,
               flat ? "flat (end within 10% of the 10% mark)" : "NOT flat");
}

/* Feeds the running daemon chunk by chunk, each delivered before the next
 * (so CHAT_<S> never holds more than a chunk unread). *rss_10_kb: VmRSS
 * once 10% of total is delivered; *secs: how long the feeding took. */
static bool soak_feed(struct run *r, uint64_t total, uint64_t *rss_10_kb, double *secs)
{
        uint64_t k = (uint64_t)r->sp.c->owners, chunk = SOAK_CHUNK_DELIVERIES / k, sent = 0;
        int64_t start = test_now_ms();
        bool ok = true;
        while (ok && r->expected + k <= total) {
                uint64_t n = (total - r->expected) / k;
                n = n < chunk ? n : chunk;
                r->expected += n * k;
                ok = chat_preload(r->b, &r->sp, sent, n) == 0 && wait_delivered(r, n * k);
                sent += n;
                if (ok && !*rss_10_kb && r->expected >= total / 10)
                        *rss_10_kb = proc_status_kb(r->p.pid, "VmRSS:");
        }
        *secs = (double)(test_now_ms() - start) / 1000.0;
        return ok && counts_exact(r);
}

/* The daemon alone on k20 for many deliveries: is its RSS flat? */
static void soak(struct bench *b)
{
        const struct bench_case *c = &cases[1];
        struct result res = {0};
        struct run r = {.b = b, .kind = PROG_DAEMON, .res = &res};
        snprintf(r.label, sizeof r.label, "soak %s daemon", c->name);
        uint64_t rss_10_kb = 0;
        double secs = 0;
        bool ok = space_init(&r.sp, c, "soak") == 0 && fixture(space_fixtures, &r.sp) == 0 &&
                  space_durables(&r.sp) == 0 && prog_start(&r) == 0 &&
                  soak_feed(&r, b->opt.deliveries, &rss_10_kb, &secs);
        uint64_t rss_end_kb = proc_status_kb(r.p.pid, "VmRSS:");
        prog_usage(&r);
        prog_stop(&r);
        proc_destroy(&r.p);
        space_delete(&r.sp);
        space_fini(&r.sp);
        b->failures += !ok;
        soak_report(&r, ok, secs, rss_10_kb, rss_end_kb);
}

/* ---- setup ---- */

static void usage(FILE *f)
{
        fprintf(f, "usage: cotal-bench [--quick] [--soak] [--repeat N] [--deliveries N]\n"
                   "                   [--cases k1,k20,k200,live] [--yardstick PATH]\n"
                   "                   [--latency-load PERCENT]\n");
}

static int select_cases(struct options *o, const char *list)
{
        char *copy = strdup(list), *save = NULL;
        int r = copy ? 0 : -ENOMEM;
        memset(o->selected, 0, sizeof o->selected);
        for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t && r == 0; t = strtok_r(NULL, ",", &save)) {
                size_t ci = 0;
                while (ci < N_CASES && strcmp(cases[ci].name, t) != 0)
                        ci++;
                if (ci == N_CASES) {
                        fprintf(stderr, "cotal-bench: unknown case %s\n", t);
                        r = -EINVAL;
                } else {
                        o->selected[ci] = true;
                }
        }
        free(copy);
        return r;
}

static int parse_count(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || end == s || *end || *s == '-' || v < lo || v > hi)
                return -EINVAL;
        *out = v;
        return 0;
}

static int parse_options(struct options *o, int argc, char **argv)
{
        static const struct option opts[] = {
                {"quick", no_argument, NULL, 'q'},
                {"soak", no_argument, NULL, 's'},
                {"repeat", required_argument, NULL, 'r'},
                {"deliveries", required_argument, NULL, 'd'},
                {"cases", required_argument, NULL, 'c'},
                {"yardstick", required_argument, NULL, 'y'},
                {"latency-load", required_argument, NULL, 'l'},
                {"help", no_argument, NULL, 'h'},
                {NULL, 0, NULL, 0},
        };
        uint64_t repeat = 0;
        int c, r = select_cases(o, "k1,k20,k200,live");
        while (r == 0 && (c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                switch (c) {
                case 'q': o->quick = true; break;
                case 's': o->soak = true; break;
                case 'r': r = parse_count(optarg, 1, MAX_REPEAT, &repeat); break;
                case 'd': r = parse_count(optarg, 1, 100000000, &o->deliveries); break;
                case 'c': r = select_cases(o, optarg); break;
                case 'y': o->yardstick = optarg; break;
                case 'l': r = parse_count(optarg, 1, 100, &o->latency_load); break;
                case 'h': usage(stdout); exit(0);
                default: r = -EINVAL;
                }
        }
        if (r < 0 || optind != argc)
                return -EINVAL;
        o->repeat = repeat ? (int)repeat : o->quick ? 1 : DEFAULT_REPEAT;
        o->latency_ms = o->quick ? QUICK_LATENCY_MS : LATENCY_MS;
        if (!o->latency_load)
                o->latency_load = 50; /* the "half the maximum rate" */
        if (!o->deliveries)
                o->deliveries = o->soak ? (o->quick ? QUICK_SOAK_DELIVERIES : SOAK_DELIVERIES)
                                        : (o->quick ? QUICK_DELIVERIES : DEFAULT_DELIVERIES);
        if (!o->yardstick)
                o->yardstick = getenv("COTAL_BENCH_YARDSTICK");
        o->deliveryd = getenv("COTAL_DELIVERYD");
        if (!o->deliveryd || !getenv("COTAL_DELIVERYCTL") || (!o->soak && !o->yardstick)) {
                fprintf(stderr, "cotal-bench: set COTAL_DELIVERYD, COTAL_DELIVERYCTL and COTAL_BENCH_YARDSTICK "
                                "(or --yardstick); scripts/bench does\n");
                return -EINVAL;
        }
        return 0;
}

static int bench_open(struct bench *b)
{
        if (natsd_start(&tu_broker, NULL) < 0) {
                fprintf(stderr, "Failed to start nats-server (log: %s)\n", tu_broker.log);
                return -EIO;
        }
        jsOptions jo;
        jsOptions_Init(&jo);
        jo.PublishAsync.MaxPending = PUB_MAX_PENDING;
        jo.PublishAsync.StallWait = PUB_STALL_WAIT_MS;
        jo.PublishAsync.ErrHandler = count_pub_error;
        jo.PublishAsync.ErrHandlerClosure = b;
        natsStatus s = natsConnection_ConnectTo(&tu_nc, tu_broker.url);
        if (s == NATS_OK)
                s = natsConnection_JetStream(&b->js, tu_nc, &jo);
        if (s != NATS_OK) {
                fprintf(stderr, "Failed to connect to %s: %s\n", tu_broker.url, natsStatus_GetText(s));
                return -EIO;
        }
        memset(b->text, 'x', TEXT_BYTES);
        return 0;
}

/* Reverse of bench_open; safe on a partial open. */
static void bench_close(struct bench *b)
{
        jsCtx_Destroy(b->js);
        b->js = NULL;
        if (tu_nc)
                natsConnection_Close(tu_nc);
        natsConnection_Destroy(tu_nc);
        tu_nc = NULL;
        natsd_destroy(&tu_broker);
        nats_CloseAndWait(2000);
}

int main(int argc, char **argv)
{
        static struct bench b;
        if (parse_options(&b.opt, argc, argv) < 0) {
                usage(stderr);
                return 2;
        }
        if (!natsd_available()) {
                fprintf(stderr, "cotal-bench: nats-server is not on PATH\n");
                return 1;
        }
        struct sigaction sa = {.sa_handler = on_interrupt};
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        int status = 1;
        if (bench_open(&b) == 0) {
                if (b.opt.soak)
                        soak(&b);
                else
                        run_all(&b);
                status = b.failures || interrupted ? 1 : 0;
        }
        bench_close(&b);
        if (b.failures)
                printf("\n%d run%s FAILED\n", b.failures, b.failures == 1 ? "" : "s");
        return status;
}
