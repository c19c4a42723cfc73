/* cotal-abuse: isolation from the victim's side (issue 14). For each abuse
 * a well-behaved agent's figures are measured twice on the same daemon:
 * undisturbed ("baseline"), then while the abuser runs ("abuse"). It runs
 * its own nats-server on 127.0.0.1 and is not part of the test suite
 * (scripts/abuse builds and runs it). It never talks to anything else.
 *
 *   cotal-abuse [--quick] [--seconds N] [--cases noacl,ctl-list,...] [--keep]
 *
 * Per case, on a fresh space "ab<case index>" with its own daemon
 * (--diag-socket, --log-level info): BOB is a durable member of "general"
 * where ALICE posts 10 messages/s (post -> arrival on the core subject
 * cotal.<S>.dlv.<BOB>, matched by dedup id), and CAROL sends durableJoin
 * "side" / durableLeave every 250 ms (round trip; no reply within 5 s is a
 * timeout). Each phase lasts --seconds (20; 6 with --quick); after it the
 * bench waits (at most 60 s) for every post, then counts BOB's copies in
 * DLV_<S> by id: a missing or duplicated one is LOSS. The daemon's VmRSS
 * is sampled every 100 ms through the phase and its settling (and its
 * VmHWM read at the end). After the abuse phase it prints the diag
 * counters the abuse should move (their change over the phase, next to
 * what the abuser itself counted) and how many lines the daemon logged.
 *
 * Targets (issue 14), checked on the abuse phase and reported, not fatal:
 * join p99 < 100 ms, post p99 < 1 s, RSS < 64 MiB, no timeouts, every
 * shed request or dropped entry counted. Exit status: 1 if anything was
 * lost or duplicated or a daemon died, 2 on a setup failure, else 0.
 *
 * Needs COTAL_DELIVERYD and COTAL_DELIVERYCTL (scripts/abuse sets them). */
#include "broker.h"
#include "cotal.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_SECONDS 20
#define QUICK_SECONDS 6
/* The victim's copies of both phases stay under DLV_<S>'s 1000 per
 * subject (PROTOCOL §2), so the count by id sees all of them. */
#define MAX_SECONDS 45
#define POST_INTERVAL_US 100000    /* the victim posts at 10/s */
#define REQUEST_INTERVAL_US 250000 /* CAROL's join / leave rhythm */
#define REQUEST_TIMEOUT_MS 5000
#define PUBLISH_WAIT_MS 5000
#define PUBLISH_TRIES 3
#define LARGE_PUBLISH_WAIT_MS 30000
#define RSS_SAMPLE_MS 100
#define SETTLE_MS 60000 /* victim posts after a phase */
#define WARMUP_MS 20000
#define ROSTER_WAIT_MS 120000
#define DRAIN_STALL_MS 30000 /* the abuse's own deliveries: no progress */
#define DRAIN_MAX_MS 300000
#define COUNTER_WAIT_MS 30000
#define COUNTER_POLL_MS 500
#define REPLY_DRAIN_MS 5000
#define API_TIMEOUT_MS 10000
#define TALLY_NEXT_MS 5000
#define STOP_WAIT_MS 15000

#define TARGET_JOIN_P99_MS 100.0
#define TARGET_POST_P99_MS 1000.0
#define TARGET_RSS_MIB 64.0

/* The abuses (tests/integration names the test that provokes each). */
#define NOACL_PER_S 30
#define LIST_RECORDS 20000
#define QUICK_LIST_RECORDS 2000
#define LIST_WINDOW 20
#define FLOOD_PER_S 3000
#define FLOOD_TICK_US 10000
#define GARBAGE_MAX 2000000
#define GARBAGE_BYTES 96
#define LARGE_MARGIN (150 * 1024) /* large_posts: max payload - 150 KiB */
#define LARGE_POSTS 300
#define FANOUT_BYTES (500 * 1024)
#define FANOUT_MEMBERS 50
#define FANOUT_POSTS 40
#define ROSTER 10000
#define MENTIONS 100000
#define MENTIONS_RESOLVED 10000 /* the daemon's FANOUT_MENTIONS_MAX */
#define MENTION_POSTS 300
#define NEAR_LIMIT_MARGIN 100
#define NEAR_LIMIT_PER_S 20
#define RELOAD_EVERY_MS 50
#define SPIN_PER_CPU 4

#define RING 65536 /* ctl-list: requests in flight, by number */
#define ID_LEN 56
#define SUBJECT_MAX 512
#define LOG_TAIL_LINES 30

#define MALLORY "UMALLORYMALLORYMALLORYMALLORYMALLORYMALLORYMALLORYMALLOR"

enum { PH_BASELINE, PH_ABUSE, PHASES };
static const char *const phase_names[PHASES] = {"baseline", "abuse"};
static const char *const phase_prefix[PHASES] = {"vb", "va"};

struct run;
struct abuser;

struct abuse_case {
        const char *name;
        const char *what;
        void (*fixtures)(void *run);    /* before the daemon starts (tu_guard) */
        void (*after_start)(void *run); /* NULL, or once it is ready (tu_guard) */
        void *(*abuse)(void *abuser);   /* the abuser's thread */
        const char *counters[3];        /* diag counters it should move */
        const char *log_match;          /* log lines that say so, or NULL */
};

struct phase_stats {
        bool done;
        int posts; /* PubAck'd */
        int pub_failed;
        int arrived;      /* seen on the core subject */
        int missing, dup; /* counted in DLV_<S> by id */
        double post_p50, post_p99;
        double puback_p99; /* of the posts themselves: the broker's part */
        int joins, leaves, timeouts, refused;
        double join_p50, join_p99, leave_p99;
        char refused_text[200];
        double rss_mib; /* max sampled VmRSS */
        double hwm_mib; /* VmHWM at the end */
        int64_t settle_ms;
};

struct victim_phase {
        int cap;
        int64_t *sent_us;    /* 0: not sent */
        int64_t *arrived_us; /* first arrival; 0: none */
        int64_t *acked_us;   /* the PubAck; 0: none */
        int *seen;
        bool *stored; /* PubAck'd */
        int posts;
        int pub_failed;
        double *req_ms[2]; /* [0] joins, [1] leaves */
        int n_req[2];
        int req_cap;
        int timeouts, refused;
        char refused_text[200];
};

struct victim {
        char space[32];
        natsConnection *alice_nc, *bob_nc, *carol_nc; /* borrowed: the bench's */
        jsCtx *alice_js;                              /* borrowed */
        natsSubscription *dlv_sub;                    /* BOB's dlv subject (core), owned */
        natsSubscription *reply_sub;                  /* CAROL's reply lane (sync), owned */
        pthread_mutex_t lock;
        struct victim_phase ph[PHASES];
        atomic_int cur;
        atomic_int warm_seen;
        atomic_bool stop;
};

struct abuser {
        struct run *r;
        natsConnection *nc;    /* owned: the abuser's own connection */
        jsCtx *js;             /* owned */
        natsSubscription *sub; /* owned: its reply lane, if any */
        atomic_bool stop;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        /* its own account */
        uint64_t sent, failed, ok, busy, other, unanswered;
        uint64_t late; /* replies to requests already counted unanswered */
        /* ctl-list: requests in flight by number */
        int64_t *ring_us; /* owned; 0: answered or expired */
        uint64_t next, oldest;
        int outstanding;
};

struct run {
        const struct abuse_case *c;
        int index;
        char space[32];
        char sock[320];
        co_daemon dm;
        bool started;
        struct victim *v; /* borrowed */
        struct phase_stats ph[PHASES];
        json_t *counters0, *counters1;
        int log0, log1, log_matched;
        bool died, lost, setup_failed, not_counted;
        int died_status;
        char why[600];
        /* case data */
        char (*ids)[ID_LEN + 1]; /* owned: wide members or the roster */
        int n_ids;
        int list_records;
        size_t max_payload;
        /* the abuse, as the abuser counted it */
        struct abuser ab;
        uint64_t expect; /* what the case's first counter should reach, if known */
        bool expect_known;
        uint64_t expected_copies, copies;
        char abuse_note[300];
        char counters_text[300];
        char verdict[300];
};

struct options {
        bool quick, keep;
        int seconds;
        bool selected[16];
};

struct bench {
        struct options opt;
        jsCtx *js; /* on tu_nc: the tally's consumers */
        natsConnection *alice_nc, *bob_nc, *carol_nc;
        jsCtx *alice_js;
        struct victim v;
        int lost, died, setup_failed;
};

static struct bench bench;
static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
        (void)sig;
        interrupted = 1;
}

/* ---- small things ---- */

static int64_t now_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t now_ms(void)
{
        return now_us() / 1000;
}

static int64_t wall_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nap_us(int64_t us)
{
        if (us <= 0)
                return;
        struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000L};
        nanosleep(&ts, NULL);
}

/* Pacing: sleeps until due (monotonic µs) in steps, so stop is seen. */
static void pace_until(int64_t due, atomic_bool *stop)
{
        for (int64_t left = due - now_us(); left > 0 && !atomic_load(stop); left = due - now_us())
                nap_us(left < 50000 ? left : 50000);
}

/* "U" + tag, then n in base32, padded with 'A' to an nkey's 56 characters
 * (token(id) == id, PROTOCOL §1.1). */
static void make_id(char out[ID_LEN + 1], const char *tag, uint64_t n)
{
        static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        int len = snprintf(out, ID_LEN + 1, "U%.40s", tag);
        for (int i = 0; i < 8; i++, n >>= 5)
                out[len++] = b32[n & 31];
        while (len < ID_LEN)
                out[len++] = 'A';
        out[len] = '\0';
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of v[0..n) (sorted in place); NAN if n == 0. */
static double percentile(double *v, int n, double p)
{
        if (n <= 0)
                return NAN;
        qsort(v, (size_t)n, sizeof *v, cmp_double);
        int k = (int)ceil(p * n) - 1;
        return v[k < 0 ? 0 : k >= n ? n - 1 : k];
}

static void fmt_ms(char *out, size_t size, double v)
{
        if (isnan(v))
                snprintf(out, size, "-");
        else if (v < 10)
                snprintf(out, size, "%.1f", v);
        else
                snprintf(out, size, "%.0f", v);
}

static double proc_status_mib(pid_t pid, const char *field)
{
        char path[64], line[256];
        snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
        FILE *f = fopen(path, "r");
        double mib = 0;
        size_t len = strlen(field);
        while (f && fgets(line, sizeof line, f))
                if (strncmp(line, field, len) == 0) {
                        mib = (double)strtoull(line + len, NULL, 10) / 1024.0;
                        break;
                }
        if (f)
                fclose(f);
        return mib;
}

static bool daemon_alive(struct run *r)
{
        if (!r->started || r->died)
                return false;
        if (proc_wait(&r->dm.p, 0) == 0) {
                r->died = true;
                r->died_status = r->dm.p.status;
                return false;
        }
        return true;
}

static int occurrences(const char *hay, const char *needle)
{
        int n = 0;
        for (const char *p = needle ? strstr(hay, needle) : NULL; p; p = strstr(p + 1, needle))
                n++;
        return n;
}

/* Lines of the daemon's log that are not about the victim (at info level
 * the daemon logs each of CAROL's joins and leaves); *matched (may be
 * NULL) gets those containing match. */
static int log_lines(struct run *r, const char *match, int *matched)
{
        char *err = proc_stderr(&r->dm.p);
        int n = count_lines(err) - occurrences(err, " by " CAROL);
        if (matched)
                *matched = occurrences(err, match);
        free(err);
        return n;
}

static void log_tail(struct run *r)
{
        char *err = proc_stderr(&r->dm.p);
        const char *p = err + strlen(err);
        for (int n = 0; p > err && n <= LOG_TAIL_LINES; p--)
                if (p[-1] == '\n')
                        n++;
        fprintf(stderr, "---- %s: the daemon's log, last lines ----\n%s----\n", r->c->name, p);
        free(err);
}

/* A chat body of exactly total bytes (when total allows): the message of
 * §5.1 with an 8-character id at *id_off (overwritten per post), extra
 * members (e.g. mentions, or "") and a text that pads it. Owned. */
static char *post_body(const char *sender, const char *channel, const char *extra, size_t total, size_t *id_off,
                       size_t *len)
{
        char *head = NULL;
        int hl = asprintf(&head,
                          "{\"id\":\"00000000\",\"ts\":%lld,\"from\":{\"id\":\"%s\",\"name\":\"abuser\"},"
                          "\"channel\":\"%s\",%s%s\"parts\":[{\"kind\":\"text\",\"text\":\"",
                          (long long)wall_ms(), sender, channel, extra, *extra ? "," : "");
        if (hl < 0)
                return NULL;
        const char tail[] = "\"}]}";
        size_t fixed = (size_t)hl + sizeof tail - 1;
        size_t pad = total > fixed ? total - fixed : 1;
        char *body = malloc(fixed + pad + 1);
        if (body) {
                memcpy(body, head, (size_t)hl);
                memset(body + hl, 'x', pad);
                memcpy(body + hl + pad, tail, sizeof tail);
                *len = fixed + pad;
                *id_off = (size_t)(strstr(head, "00000000") - head);
        }
        free(head);
        return body;
}

/* ---- the victim ---- */

static void on_dlv(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
        (void)nc, (void)sub;
        struct victim *v = arg;
        int64_t t = now_us();
        const char *id = NULL;
        if (natsMsgHeader_Get(m, "Nats-Msg-Id", &id) == NATS_OK && id) {
                if (strncmp(id, "warm-", 5) == 0)
                        atomic_fetch_add(&v->warm_seen, 1);
                for (int p = 0; p < PHASES; p++) {
                        size_t pl = strlen(phase_prefix[p]);
                        char *end = NULL;
                        if (strncmp(id, phase_prefix[p], pl) != 0 || id[pl] != '-')
                                continue;
                        long i = strtol(id + pl + 1, &end, 10);
                        pthread_mutex_lock(&v->lock);
                        struct victim_phase *vp = &v->ph[p];
                        if (end && *end == ':' && i >= 0 && i < vp->cap && vp->seen) {
                                if (!vp->seen[i]++)
                                        vp->arrived_us[i] = t;
                        }
                        pthread_mutex_unlock(&v->lock);
                }
        }
        natsMsg_Destroy(m);
}

static int victim_phase_init(struct victim_phase *vp, int seconds)
{
        memset(vp, 0, sizeof *vp);
        vp->cap = seconds * (int)(1000000 / POST_INTERVAL_US) + 1;
        vp->req_cap = seconds * (int)(1000000 / REQUEST_INTERVAL_US) + 1;
        vp->sent_us = calloc((size_t)vp->cap, sizeof *vp->sent_us);
        vp->arrived_us = calloc((size_t)vp->cap, sizeof *vp->arrived_us);
        vp->acked_us = calloc((size_t)vp->cap, sizeof *vp->acked_us);
        vp->seen = calloc((size_t)vp->cap, sizeof *vp->seen);
        vp->stored = calloc((size_t)vp->cap, sizeof *vp->stored);
        vp->req_ms[0] = calloc((size_t)vp->req_cap, sizeof(double));
        vp->req_ms[1] = calloc((size_t)vp->req_cap, sizeof(double));
        return vp->sent_us && vp->arrived_us && vp->acked_us && vp->seen && vp->stored && vp->req_ms[0] && vp->req_ms[1]
                       ? 0
                       : -ENOMEM;
}

static void victim_phase_fini(struct victim_phase *vp)
{
        free(vp->sent_us);
        free(vp->arrived_us);
        free(vp->acked_us);
        free(vp->seen);
        free(vp->stored);
        free(vp->req_ms[0]);
        free(vp->req_ms[1]);
        memset(vp, 0, sizeof *vp);
}

/* ALICE's post, as an agent sends it (§5.1, Nats-Msg-Id = id), retried
 * with the same id (a stored retry collapses) up to PUBLISH_TRIES. */
static bool victim_publish(struct victim *v, const char *id)
{
        char subject[SUBJECT_MAX], body[512];
        snprintf(subject, sizeof subject, "cotal.%s.chat.%s.general", v->space, ALICE);
        int len = snprintf(body, sizeof body,
                           "{\"id\":\"%s\",\"ts\":%lld,\"space\":\"%s\",\"from\":{\"id\":\"%s\",\"name\":\"alice\"},"
                           "\"channel\":\"general\",\"parts\":[{\"kind\":\"text\",\"text\":\"hello %s\"}]}",
                           id, (long long)wall_ms(), v->space, ALICE, id);
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = id;
        po.MaxWait = PUBLISH_WAIT_MS;
        for (int t = 0; t < PUBLISH_TRIES; t++) {
                jsPubAck *pa = NULL;
                natsStatus s = js_Publish(&pa, v->alice_js, subject, body, len, &po, NULL);
                jsPubAck_Destroy(pa);
                if (s == NATS_OK)
                        return true;
        }
        return false;
}

static void *poster_main(void *arg)
{
        struct victim *v = arg;
        int p = atomic_load(&v->cur);
        struct victim_phase *vp = &v->ph[p];
        int64_t t0 = now_us();
        for (int i = 0; i < vp->cap && !atomic_load(&v->stop); i++) {
                pace_until(t0 + (int64_t)i * POST_INTERVAL_US, &v->stop);
                if (atomic_load(&v->stop))
                        break;
                char id[32];
                snprintf(id, sizeof id, "%s-%d", phase_prefix[p], i);
                pthread_mutex_lock(&v->lock);
                vp->sent_us[i] = now_us();
                vp->posts = i + 1;
                pthread_mutex_unlock(&v->lock);
                bool ok = victim_publish(v, id);
                pthread_mutex_lock(&v->lock);
                vp->acked_us[i] = ok ? now_us() : 0;
                vp->stored[i] = ok;
                vp->pub_failed += !ok;
                pthread_mutex_unlock(&v->lock);
        }
        return NULL;
}

/* One control request from CAROL on her own reply lane; its round trip in
 * ms, or -1 when no reply came within REQUEST_TIMEOUT_MS. *reply owned. */
static double carol_request(struct victim *v, const char *body, const char *tag, json_t **reply)
{
        char subject[SUBJECT_MAX], reply_to[SUBJECT_MAX + 64];
        snprintf(subject, sizeof subject, "cotal.%s.ctl.delivery.%s", v->space, CAROL);
        snprintf(reply_to, sizeof reply_to, "%s.reply.%s", subject, tag);
        *reply = NULL;
        int64_t t0 = now_us();
        if (natsConnection_PublishRequestString(v->carol_nc, subject, reply_to, body) != NATS_OK ||
            natsConnection_FlushTimeout(v->carol_nc, REQUEST_TIMEOUT_MS) != NATS_OK)
                return -1;
        int64_t deadline = t0 + (int64_t)REQUEST_TIMEOUT_MS * 1000;
        for (int64_t left = deadline - now_us(); left > 0; left = deadline - now_us()) {
                natsMsg *m = NULL;
                if (natsSubscription_NextMsg(&m, v->reply_sub, left / 1000 + 1) != NATS_OK)
                        break;
                bool mine = strcmp(natsMsg_GetSubject(m), reply_to) == 0; /* else a late one */
                if (mine)
                        *reply = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
                natsMsg_Destroy(m);
                if (mine)
                        return (double)(now_us() - t0) / 1000.0;
        }
        return -1;
}

static void *joiner_main(void *arg)
{
        struct victim *v = arg;
        int p = atomic_load(&v->cur);
        struct victim_phase *vp = &v->ph[p];
        int64_t t0 = now_us();
        json_int_t gen = 0; /* 0: not joined (as far as CAROL knows) */
        for (int k = 0; k < vp->req_cap && !atomic_load(&v->stop); k++) {
                pace_until(t0 + (int64_t)k * REQUEST_INTERVAL_US, &v->stop);
                if (atomic_load(&v->stop))
                        break;
                char body[512], tag[32];
                int op = gen ? 1 : 0;
                if (op == 0)
                        snprintf(body, sizeof body,
                                 "{\"op\":\"durableJoin\",\"args\":{\"channel\":\"side\"},\"from\":{\"id\":\"%s\","
                                 "\"name\":\"carol\"}}",
                                 CAROL);
                else
                        snprintf(body, sizeof body,
                                 "{\"op\":\"durableLeave\",\"args\":{\"channel\":\"side\",\"generation\":"
                                 "%" JSON_INTEGER_FORMAT "},\"from\":{\"id\":\"%s\",\"name\":\"carol\"}}",
                                 gen, CAROL);
                snprintf(tag, sizeof tag, "%s-%d", phase_prefix[p], k);
                json_t *reply = NULL;
                double ms = carol_request(v, body, tag, &reply);
                bool ok = json_is_true(json_object_get(reply, "ok"));
                pthread_mutex_lock(&v->lock);
                if (ms < 0) {
                        vp->timeouts++;
                        gen = 0; /* a join is idempotent (§8.6): ask again */
                } else {
                        vp->req_ms[op][vp->n_req[op]++] = ms;
                        if (!ok) {
                                vp->refused++;
                                char *text = co_json_text(reply);
                                snprintf(vp->refused_text, sizeof vp->refused_text, "%s", text);
                                free(text);
                                gen = 0;
                        } else if (op == 0) {
                                gen = json_integer_value(json_object_get(json_object_get(reply, "data"), "generation"));
                        } else {
                                gen = 0;
                        }
                }
                pthread_mutex_unlock(&v->lock);
                json_decref(reply);
        }
        return NULL;
}

static int victim_subscribe(struct victim *v, const char *space)
{
        char subject[SUBJECT_MAX];
        snprintf(v->space, sizeof v->space, "%s", space);
        atomic_store(&v->warm_seen, 0);
        snprintf(subject, sizeof subject, "cotal.%s.dlv.%s", space, BOB);
        natsStatus s = natsConnection_Subscribe(&v->dlv_sub, v->bob_nc, subject, on_dlv, v);
        if (s == NATS_OK)
                s = natsConnection_Flush(v->bob_nc);
        snprintf(subject, sizeof subject, "cotal.%s.ctl.delivery.%s.reply.>", space, CAROL);
        if (s == NATS_OK)
                s = natsConnection_SubscribeSync(&v->reply_sub, v->carol_nc, subject);
        if (s == NATS_OK)
                s = natsConnection_Flush(v->carol_nc);
        if (s != NATS_OK)
                fprintf(stderr, "Failed to subscribe the victim on %s: %s\n", space, natsStatus_GetText(s));
        return s == NATS_OK ? 0 : -EIO;
}

static void victim_unsubscribe(struct victim *v)
{
        broker_sub_close(v->bob_nc, &v->dlv_sub);
        broker_sub_close(v->carol_nc, &v->reply_sub);
        for (int p = 0; p < PHASES; p++) {
                pthread_mutex_lock(&v->lock);
                victim_phase_fini(&v->ph[p]);
                pthread_mutex_unlock(&v->lock);
        }
}

/* ---- the abusers ---- */

static void abuser_count(struct abuser *ab, uint64_t *field, uint64_t n)
{
        pthread_mutex_lock(&ab->lock);
        *field += n;
        pthread_cond_broadcast(&ab->cond);
        pthread_mutex_unlock(&ab->lock);
}

/* Posts from sender on channel: per_s a second (0: back to back), at most
 * cap, each body of total bytes with extra members. */
static void abuse_posts(struct abuser *ab, const char *sender, const char *channel, const char *extra, size_t total,
                        int per_s, int cap, int64_t wait_ms)
{
        struct run *r = ab->r;
        size_t id_off = 0, len = 0;
        char *body = post_body(sender, channel, extra, total, &id_off, &len);
        char subject[SUBJECT_MAX];
        snprintf(subject, sizeof subject, "cotal.%s.chat.%s.%s", r->space, sender, channel);
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = wait_ms;
        int64_t t0 = now_us();
        for (int i = 0; body && i < cap && !atomic_load(&ab->stop); i++) {
                if (per_s > 0)
                        pace_until(t0 + (int64_t)i * 1000000 / per_s, &ab->stop);
                if (atomic_load(&ab->stop))
                        break;
                char id[16];
                snprintf(id, sizeof id, "x%07d", i);
                memcpy(body + id_off, id, 8);
                po.MsgId = id;
                jsPubAck *pa = NULL;
                natsStatus s = js_Publish(&pa, ab->js, subject, body, (int)len, &po, NULL);
                jsPubAck_Destroy(pa);
                abuser_count(ab, s == NATS_OK ? &ab->sent : &ab->failed, 1);
        }
        free(body);
}

static void *abuse_noacl(void *arg)
{
        struct abuser *ab = arg;
        char noisy[ID_LEN + 1];
        make_id(noisy, "NOISY", 0);
        abuse_posts(ab, noisy, "noisy", "", 256, NOACL_PER_S, INT32_MAX, PUBLISH_WAIT_MS);
        return NULL;
}

static void *abuse_large(void *arg)
{
        struct abuser *ab = arg;
        char sender[ID_LEN + 1];
        make_id(sender, "ABUSER", 0);
        abuse_posts(ab, sender, "big", "", ab->r->max_payload - LARGE_MARGIN, 0, LARGE_POSTS, LARGE_PUBLISH_WAIT_MS);
        return NULL;
}

static void *abuse_large_fanout(void *arg)
{
        struct abuser *ab = arg;
        char sender[ID_LEN + 1];
        make_id(sender, "ABUSER", 0);
        abuse_posts(ab, sender, "wide", "", FANOUT_BYTES, 0, FANOUT_POSTS, LARGE_PUBLISH_WAIT_MS);
        return NULL;
}

/* "mentions":[...] naming the roster (r0..r9999) over and over: the first
 * MENTIONS_RESOLVED resolve, to agents with no ACL (no copy is written);
 * the rest is past the daemon's bound. Owned. */
static char *mention_list(void)
{
        size_t cap = (size_t)MENTIONS * 9 + 32, len = 0;
        char *s = malloc(cap);
        if (!s)
                return NULL;
        len += (size_t)snprintf(s, cap, "\"mentions\":[");
        for (int i = 0; i < MENTIONS; i++)
                len += (size_t)snprintf(s + len, cap - len, "%s\"r%d\"", i ? "," : "", i % ROSTER);
        snprintf(s + len, cap - len, "]");
        return s;
}

static void *abuse_mentions(void *arg)
{
        struct abuser *ab = arg;
        char sender[ID_LEN + 1];
        make_id(sender, "ABUSER", 0);
        char *list = mention_list();
        if (list)
                abuse_posts(ab, sender, "live", list, ab->r->max_payload - LARGE_MARGIN, 0, MENTION_POSTS,
                            LARGE_PUBLISH_WAIT_MS);
        free(list);
        return NULL;
}

static void *abuse_near_limit(void *arg)
{
        struct abuser *ab = arg;
        char sender[ID_LEN + 1];
        make_id(sender, "ABUSER", 0);
        abuse_posts(ab, sender, "edge", "", ab->r->max_payload - NEAR_LIMIT_MARGIN, NEAR_LIMIT_PER_S, INT32_MAX,
                    LARGE_PUBLISH_WAIT_MS);
        return NULL;
}

/* Replies on MALLORY's lane: sorted into ok / busy / other; in window mode
 * the request (numbered by the reply subject's last token) leaves the
 * window. */
static void on_mallory_reply(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
        (void)nc, (void)sub;
        struct abuser *ab = arg;
        const char *data = natsMsg_GetData(m);
        int len = natsMsg_GetDataLength(m);
        bool ok = data && memmem(data, (size_t)len, "\"ok\":true", 9);
        bool busy = data && memmem(data, (size_t)len, "busy: too many", 14);
        const char *dot = strrchr(natsMsg_GetSubject(m), '.');
        uint64_t n = dot ? strtoull(dot + 1, NULL, 10) : 0;
        pthread_mutex_lock(&ab->lock);
        if (ab->ring_us && n < ab->next && !ab->ring_us[n % RING])
                ab->late++; /* expired from the window: counted unanswered */
        else if (ok)
                ab->ok++;
        else if (busy)
                ab->busy++;
        else
                ab->other++;
        if (ab->ring_us && n < ab->next && ab->ring_us[n % RING]) {
                ab->ring_us[n % RING] = 0;
                ab->outstanding--;
        }
        pthread_cond_broadcast(&ab->cond);
        pthread_mutex_unlock(&ab->lock);
        natsMsg_Destroy(m);
}

static int mallory_listen(struct abuser *ab)
{
        char subject[SUBJECT_MAX];
        snprintf(subject, sizeof subject, "cotal.%s.ctl.delivery.%s.reply.>", ab->r->space, MALLORY);
        natsStatus s = natsConnection_Subscribe(&ab->sub, ab->nc, subject, on_mallory_reply, ab);
        if (s == NATS_OK)
                s = natsSubscription_SetPendingLimits(ab->sub, -1, -1);
        if (s == NATS_OK)
                s = natsConnection_Flush(ab->nc);
        return s == NATS_OK ? 0 : -EIO;
}

static natsStatus mallory_send(struct abuser *ab, uint64_t n, const char *body)
{
        char subject[SUBJECT_MAX], reply[SUBJECT_MAX + 64];
        snprintf(subject, sizeof subject, "cotal.%s.ctl.delivery.%s", ab->r->space, MALLORY);
        snprintf(reply, sizeof reply, "%s.reply.%" PRIu64, subject, n);
        return natsConnection_PublishRequestString(ab->nc, subject, reply, body);
}

/* Requests older than REQUEST_TIMEOUT_MS leave the window unanswered.
 * Called with ab->lock held. */
static void expire_window(struct abuser *ab)
{
        int64_t old = now_us() - (int64_t)REQUEST_TIMEOUT_MS * 1000;
        while (ab->oldest < ab->next) {
                int64_t *slot = &ab->ring_us[ab->oldest % RING];
                if (*slot && *slot > old)
                        break;
                if (*slot) {
                        *slot = 0;
                        ab->outstanding--;
                        ab->unanswered++;
                }
                ab->oldest++;
        }
}

static const char list_body[] = "{\"op\":\"listMemberships\",\"from\":{\"id\":\"" MALLORY "\",\"name\":\"mallory\"}}";

/* listMemberships as fast as replies come, LIST_WINDOW outstanding. */
static void *abuse_ctl_list(void *arg)
{
        struct abuser *ab = arg;
        ab->ring_us = calloc(RING, sizeof *ab->ring_us);
        if (!ab->ring_us || mallory_listen(ab) < 0)
                return NULL;
        while (!atomic_load(&ab->stop)) {
                pthread_mutex_lock(&ab->lock);
                expire_window(ab);
                while (ab->outstanding >= LIST_WINDOW && !atomic_load(&ab->stop)) {
                        struct timespec ts;
                        clock_gettime(CLOCK_REALTIME, &ts);
                        ts.tv_nsec += 50 * 1000000L;
                        if (ts.tv_nsec >= 1000000000L) {
                                ts.tv_sec++;
                                ts.tv_nsec -= 1000000000L;
                        }
                        pthread_cond_timedwait(&ab->cond, &ab->lock, &ts);
                        expire_window(ab);
                }
                uint64_t n = ab->next;
                bool go = !atomic_load(&ab->stop) && ab->next - ab->oldest < RING;
                if (go) {
                        ab->ring_us[n % RING] = now_us();
                        ab->next++;
                        ab->outstanding++;
                        ab->sent++;
                }
                pthread_mutex_unlock(&ab->lock);
                if (go && (mallory_send(ab, n, list_body) != NATS_OK ||
                           natsConnection_FlushTimeout(ab->nc, REQUEST_TIMEOUT_MS) != NATS_OK))
                        abuser_count(ab, &ab->failed, 1);
                else if (!go)
                        nap_us(10000);
        }
        /* What is still out gets its full timeout, then counts unanswered. */
        int64_t deadline = now_ms() + REQUEST_TIMEOUT_MS + 100;
        pthread_mutex_lock(&ab->lock);
        while (ab->outstanding > 0 && now_ms() < deadline) {
                pthread_mutex_unlock(&ab->lock);
                nap_us(50000);
                pthread_mutex_lock(&ab->lock);
                expire_window(ab);
        }
        ab->unanswered += (uint64_t)ab->outstanding;
        ab->outstanding = 0;
        pthread_mutex_unlock(&ab->lock);
        return NULL;
}

/* Small valid requests (listMemberships of nothing: MALLORY has no
 * records) on her own lane at FLOOD_PER_S, not waiting for replies. */
static void *abuse_ctl_flood(void *arg)
{
        struct abuser *ab = arg;
        if (mallory_listen(ab) < 0)
                return NULL;
        int64_t t0 = now_us();
        int per_tick = FLOOD_PER_S / (int)(1000000 / FLOOD_TICK_US);
        uint64_t n = 0;
        for (int64_t tick = 0; !atomic_load(&ab->stop); tick++) {
                pace_until(t0 + tick * FLOOD_TICK_US, &ab->stop);
                uint64_t sent = 0, failed = 0;
                for (int i = 0; i < per_tick && !atomic_load(&ab->stop); i++, n++) {
                        if (mallory_send(ab, n, list_body) == NATS_OK)
                                sent++;
                        else
                                failed++;
                }
                abuser_count(ab, &ab->sent, sent);
                abuser_count(ab, &ab->failed, failed);
        }
        natsConnection_FlushTimeout(ab->nc, REQUEST_TIMEOUT_MS);
        int64_t deadline = now_ms() + REPLY_DRAIN_MS;
        pthread_mutex_lock(&ab->lock);
        while (ab->ok + ab->busy + ab->other < ab->sent && now_ms() < deadline) {
                pthread_mutex_unlock(&ab->lock);
                nap_us(50000);
                pthread_mutex_lock(&ab->lock);
        }
        ab->unanswered = ab->sent - (ab->ok + ab->busy + ab->other);
        pthread_mutex_unlock(&ab->lock);
        return NULL;
}

/* Garbage on MALLORY's subject whose reply is not hers (§8.2 step 1: no
 * answer, no action), as fast as the client writes, GARBAGE_MAX at most. */
static void *abuse_ctl_garbage(void *arg)
{
        struct abuser *ab = arg;
        char subject[SUBJECT_MAX], body[GARBAGE_BYTES];
        snprintf(subject, sizeof subject, "cotal.%s.ctl.delivery.%s", ab->r->space, MALLORY);
        uint32_t x = 2463534242u;
        uint64_t sent = 0, failed = 0;
        for (uint64_t n = 0; n < GARBAGE_MAX && !atomic_load(&ab->stop); n++) {
                for (size_t i = 0; i < sizeof body; i++) { /* xorshift: bytes that parse as nothing */
                        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
                        body[i] = (char)(x & 0xff);
                }
                if (natsConnection_PublishRequest(ab->nc, subject, "_INBOX.x", body, (int)sizeof body) == NATS_OK)
                        sent++;
                else
                        failed++;
                if ((n & 1023) == 1023) {
                        abuser_count(ab, &ab->sent, sent);
                        abuser_count(ab, &ab->failed, failed);
                        sent = failed = 0;
                }
        }
        natsConnection_FlushTimeout(ab->nc, REQUEST_TIMEOUT_MS);
        abuser_count(ab, &ab->sent, sent);
        abuser_count(ab, &ab->failed, failed);
        return NULL;
}

static void *abuse_reload(void *arg)
{
        struct abuser *ab = arg;
        int64_t t0 = now_us();
        for (int64_t i = 0; !atomic_load(&ab->stop); i++) {
                pace_until(t0 + i * RELOAD_EVERY_MS * 1000, &ab->stop);
                if (atomic_load(&ab->stop))
                        break;
                abuser_count(ab, kill(ab->r->dm.p.pid, SIGHUP) == 0 ? &ab->sent : &ab->failed, 1);
        }
        return NULL;
}

/* SPIN_PER_CPU x nproc children that only spin; killed when the phase
 * ends (and by the kernel if this thread goes first: PDEATHSIG). */
static void *abuse_busy_host(void *arg)
{
        struct abuser *ab = arg;
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        int n = (int)(cpus > 0 ? cpus : 1) * SPIN_PER_CPU;
        pid_t *kids = calloc((size_t)n, sizeof *kids);
        pid_t parent = getpid();
        for (int i = 0; kids && i < n; i++) {
                pid_t pid = fork();
                if (pid == 0) {
                        prctl(PR_SET_PDEATHSIG, SIGKILL);
                        if (getppid() != parent)
                                _exit(0);
                        for (volatile uint64_t spin = 0;; spin++)
                                ;
                }
                kids[i] = pid;
                abuser_count(ab, pid > 0 ? &ab->sent : &ab->failed, 1);
        }
        while (!atomic_load(&ab->stop))
                nap_us(50000);
        for (int i = 0; kids && i < n; i++)
                if (kids[i] > 0) {
                        kill(kids[i], SIGKILL);
                        waitpid(kids[i], NULL, 0);
                }
        free(kids);
        return NULL;
}

/* ---- fixtures (run under tu_guard: they assert) ---- */

static void fix_common(struct run *r)
{
        co_provision(r->space);
        co_acl(r->space, ALICE, "[\"general\"]");
        co_acl(r->space, BOB, "[\"general\"]");
        co_member(r->space, "general", BOB, 0, 1, -1);
        co_acl(r->space, CAROL, "[\"general\",\"side\"]");
}

static void fix_noacl(void *arg)
{
        struct run *r = arg;
        char ghost[ID_LEN + 1], noisy[ID_LEN + 1];
        make_id(ghost, "GHOST", 0);
        make_id(noisy, "NOISY", 0);
        fix_common(r);
        co_acl(r->space, noisy, "[\"noisy\"]");
        co_member(r->space, "noisy", ghost, 0, 1, -1); /* deprovisioned: no ACL record */
}

static void fix_ctl_list(void *arg)
{
        struct run *r = arg;
        fix_common(r);
        co_acl(r->space, MALLORY, "[\"general\"]");
        for (int i = 0; i < r->list_records; i++) {
                char channel[32];
                snprintf(channel, sizeof channel, "m%d", i);
                co_member(r->space, channel, MALLORY, 0, 1, -1);
        }
}

static void fix_mallory(void *arg)
{
        struct run *r = arg;
        fix_common(r);
        co_acl(r->space, MALLORY, "[\"general\"]");
}

static void fix_large(void *arg)
{
        struct run *r = arg;
        fix_common(r);
        co_acl(r->space, DAVE, "[\"big\"]");
        co_member(r->space, "big", DAVE, 0, 1, -1);
}

static void fix_large_fanout(void *arg)
{
        struct run *r = arg;
        fix_common(r);
        for (int i = 0; i < r->n_ids; i++) {
                co_acl(r->space, r->ids[i], "[\"wide\"]");
                co_member(r->space, "wide", r->ids[i], 0, 1, -1);
        }
}

static void fix_mentions(void *arg)
{
        struct run *r = arg;
        char marker[ID_LEN + 1], bucket[64];
        make_id(marker, "MARKER", 0);
        fix_common(r);
        snprintf(bucket, sizeof bucket, "cotal_channels_%s", r->space);
        tu_kv_put(bucket, "live", "{\"deliveryClass\":\"live\"}");
        co_acl(r->space, marker, "[\"live\"]");
}

/* The roster, once the daemon watches presence (the records expire from
 * the bucket after 6 s; the daemon's roster keeps them, §4.7). The marker
 * goes last: once a mention of it is delivered, the watch (in order) has
 * applied the whole roster. */
static void roster_mentions(void *arg)
{
        struct run *r = arg;
        char marker[ID_LEN + 1];
        for (int i = 0; i < r->n_ids; i++) {
                char name[16];
                snprintf(name, sizeof name, "r%d", i);
                co_presence(r->space, r->ids[i], name);
        }
        make_id(marker, "MARKER", 0);
        co_presence(r->space, marker, "marker");
        char stream[64], subject[SUBJECT_MAX], id[32], dedup[160];
        snprintf(stream, sizeof stream, "DLV_%s", r->space);
        snprintf(subject, sizeof subject, "cotal.%s.dlv.%s", r->space, marker);
        bool seen = false;
        int64_t deadline = now_ms() + ROSTER_WAIT_MS;
        for (int k = 0; !seen && now_ms() < deadline; k++) {
                snprintf(id, sizeof id, "marker-%d", k);
                co_chat(r->space, ALICE, "live", id, "\"mentions\":[\"marker\"]");
                snprintf(dedup, sizeof dedup, "%s:%s:0", id, marker);
                seen = co_wait_id(stream, subject, dedup, 1000);
        }
        ck_assert_msg(seen, "the roster of %d was not applied within %d s", r->n_ids, ROSTER_WAIT_MS / 1000);
}

static void fix_near_limit(void *arg)
{
        struct run *r = arg;
        fix_common(r);
        co_acl(r->space, DAVE, "[\"edge\"]");
        co_member(r->space, "edge", DAVE, 0, 1, -1);
}

static void fix_plain(void *arg)
{
        fix_common(arg);
}

static void start_daemon(void *arg)
{
        struct run *r = arg;
        r->started = co_daemon_start(&r->dm, r->space,
                                     (const char *const[]){"--diag-socket", r->sock, "--log-level", "info", NULL});
        ck_assert_msg(r->started, "the daemon did not get ready (status %d)", r->dm.p.status);
}

static json_t *diag_counters;

static void read_counters(void *arg)
{
        struct run *r = arg;
        json_t *doc = co_diag(r->sock, NULL);
        diag_counters = json_incref(json_object_get(doc, "counters"));
        json_decref(doc);
}

/* The daemon's counters (owned), or NULL if diag failed. */
static json_t *counters_now(struct run *r)
{
        diag_counters = NULL;
        char why[512];
        if (tu_guard(read_counters, r, why, sizeof why) < 0) {
                fprintf(stderr, "%s: diag failed: %s\n", r->c->name, why);
                json_decref(diag_counters);
                return NULL;
        }
        return diag_counters;
}

static uint64_t counter(const json_t *counters, const char *name)
{
        return (uint64_t)json_integer_value(json_object_get(counters, name));
}

static const struct abuse_case cases[] = {
        {"noacl",
         "a member with no ACL record (deprovisioned) on a channel posted to at 30/s",
         fix_noacl,
         NULL,
         abuse_noacl,
         {"deferred", "terminated", "dropped"},
         "gave up on entry"},
        {"ctl-list",
         "listMemberships over 20,000 records of her own, 20 outstanding",
         fix_ctl_list,
         NULL,
         abuse_ctl_list,
         {"control_shed"},
         "shed"},
        {"ctl-flood",
         "3,000 small valid requests/s on her own reply lane",
         fix_mallory,
         NULL,
         abuse_ctl_flood,
         {"control_shed"},
         "shed"},
        {"ctl-garbage",
         "garbage requests with a foreign reply subject, as fast as the client writes",
         fix_mallory,
         NULL,
         abuse_ctl_garbage,
         {"control_shed"},
         "delivery endpoint:"},
        {"large",
         "900 KB posts back to back to a channel with one member",
         fix_large,
         NULL,
         abuse_large,
         {"entries_too_large", "delivered"},
         NULL},
        {"large-fanout",
         "500 KB posts back to back to a channel with 50 members",
         fix_large_fanout,
         NULL,
         abuse_large_fanout,
         {"entries_too_large", "delivered"},
         NULL},
        {"mentions",
         "900 KB live posts with 100,000 @mentions each, a roster of 10,000",
         fix_mentions,
         roster_mentions,
         abuse_mentions,
         {"mentions_ignored"},
         "Ignored "},
        {"near-limit",
         "posts 100 bytes under max payload (their inbox entry cannot fit) at 20/s",
         fix_near_limit,
         NULL,
         abuse_near_limit,
         {"entries_too_large"},
         "Dropped "},
        {"reload", "SIGHUP every 50 ms", fix_plain, NULL, abuse_reload, {"chat_handled"}, "Reload"},
        {"busy-host", "4 x nproc CPU-spinning processes", fix_plain, NULL, abuse_busy_host, {"chat_handled"}, NULL},
};
#define N_CASES (sizeof cases / sizeof *cases)

static struct run *results[N_CASES]; /* owned: the report's rows */

/* ---- one case ---- */

static int abuser_open(struct run *r)
{
        struct abuser *ab = &r->ab;
        memset(ab, 0, sizeof *ab);
        ab->r = r;
        pthread_mutex_init(&ab->lock, NULL);
        pthread_cond_init(&ab->cond, NULL);
        natsStatus s = natsConnection_ConnectTo(&ab->nc, tu_broker.url);
        if (s == NATS_OK)
                s = natsConnection_JetStream(&ab->js, ab->nc, NULL);
        if (s != NATS_OK)
                fprintf(stderr, "Failed to connect the abuser: %s\n", natsStatus_GetText(s));
        return s == NATS_OK ? 0 : -EIO;
}

static void abuser_close(struct abuser *ab)
{
        broker_sub_close(ab->nc, &ab->sub);
        jsCtx_Destroy(ab->js);
        ab->js = NULL;
        if (ab->nc)
                natsConnection_Close(ab->nc);
        natsConnection_Destroy(ab->nc);
        ab->nc = NULL;
        free(ab->ring_us);
        ab->ring_us = NULL;
        pthread_cond_destroy(&ab->cond);
        pthread_mutex_destroy(&ab->lock);
}

static void sample_rss(struct run *r, struct phase_stats *st)
{
        if (!daemon_alive(r))
                return;
        double rss = proc_status_mib(r->dm.p.pid, "VmRSS:");
        if (rss > st->rss_mib)
                st->rss_mib = rss;
}

/* Waits for cond (sampling RSS every RSS_SAMPLE_MS) until it holds, the
 * daemon dies, or timeout_ms. */
static bool wait_sampling(struct run *r, struct phase_stats *st, bool (*cond)(struct run *), int64_t timeout_ms)
{
        int64_t deadline = now_ms() + timeout_ms;
        for (;;) {
                sample_rss(r, st);
                if (cond(r))
                        return true;
                if (now_ms() >= deadline || interrupted || !daemon_alive(r))
                        return cond(r);
                nap_us(RSS_SAMPLE_MS * 1000);
        }
}

static bool all_arrived(struct run *r)
{
        struct victim *v = r->v;
        struct victim_phase *vp = &v->ph[atomic_load(&v->cur)];
        bool all = true;
        pthread_mutex_lock(&v->lock);
        for (int i = 0; i < vp->posts && all; i++)
                all = !vp->stored[i] || vp->seen[i] > 0;
        pthread_mutex_unlock(&v->lock);
        return all;
}

/* BOB's copies of this phase's posts counted in DLV_<S> by dedup id (a
 * headers-only consumer on his subject): what the agent would read. */
static int tally_stream(struct run *r, int p, int *missing, int *dup)
{
        char stream[64], subject[SUBJECT_MAX];
        snprintf(stream, sizeof stream, "DLV_%s", r->space);
        snprintf(subject, sizeof subject, "cotal.%s.dlv.%s", r->space, BOB);
        json_t *filter = json_pack("{s:s}", "subjects_filter", subject), *info = NULL;
        uint64_t stored = 0;
        int rc = jsapi_stream_info(tu_nc, stream, filter, API_TIMEOUT_MS, &info, NULL);
        json_decref(filter);
        if (rc == 0)
                stored = (uint64_t)json_integer_value(
                        json_object_get(json_object_get(json_object_get(info, "state"), "subjects"), subject));
        json_decref(info);
        if (rc < 0) {
                fprintf(stderr, "%s: Failed to read %s: %s\n", r->c->name, stream, strerror(-rc));
                return rc;
        }
        struct victim_phase *vp = &r->v->ph[p];
        int *count = calloc((size_t)vp->cap, sizeof *count);
        jsSubOptions so;
        jsSubOptions_Init(&so);
        so.Stream = stream;
        so.Config.DeliverPolicy = js_DeliverAll;
        so.Config.AckPolicy = js_AckNone;
        so.Config.HeadersOnly = true;
        so.Config.MemoryStorage = true;
        natsSubscription *sub = NULL;
        jsErrCode jerr = 0;
        natsStatus s = count ? js_SubscribeSync(&sub, bench.js, subject, NULL, &so, &jerr) : NATS_NO_MEMORY;
        uint64_t read = 0;
        size_t pl = strlen(phase_prefix[p]);
        while (s == NATS_OK && read < stored) {
                natsMsg *m = NULL;
                if ((s = natsSubscription_NextMsg(&m, sub, TALLY_NEXT_MS)) != NATS_OK)
                        break;
                read++;
                const char *id = NULL;
                char *end = NULL;
                if (natsMsgHeader_Get(m, "Nats-Msg-Id", &id) == NATS_OK && id &&
                    strncmp(id, phase_prefix[p], pl) == 0 && id[pl] == '-') {
                        long i = strtol(id + pl + 1, &end, 10);
                        if (end && *end == ':' && i >= 0 && i < vp->cap)
                                count[i]++;
                }
                natsMsg_Destroy(m);
        }
        broker_sub_close(tu_nc, &sub); /* its Unsubscribe deletes the consumer */
        if (s != NATS_OK) {
                fprintf(stderr, "%s: Failed to read %s back (%" PRIu64 " of %" PRIu64 "): %s (%d)\n", r->c->name,
                        subject, read, stored, natsStatus_GetText(s), (int)jerr);
                free(count);
                return -EIO;
        }
        *missing = *dup = 0;
        pthread_mutex_lock(&r->v->lock);
        for (int i = 0; i < vp->posts; i++) {
                if (count[i] == 0 && vp->stored[i]) {
                        if (*missing < 5)
                                fprintf(stderr, "%s: missing: %s-%d:%s:1\n", r->c->name, phase_prefix[p], i, BOB);
                        (*missing)++;
                }
                *dup += count[i] > 1;
        }
        pthread_mutex_unlock(&r->v->lock);
        free(count);
        return 0;
}

static void phase_stats(struct run *r, int p)
{
        struct victim *v = r->v;
        struct victim_phase *vp = &v->ph[p];
        struct phase_stats *st = &r->ph[p];
        pthread_mutex_lock(&v->lock);
        double *lat = calloc((size_t)vp->cap + 1, sizeof *lat);
        double *ack = calloc((size_t)vp->cap + 1, sizeof *ack);
        int n = 0, n_ack = 0;
        for (int i = 0; lat && ack && i < vp->posts; i++) {
                st->posts += vp->stored[i];
                if (vp->acked_us[i])
                        ack[n_ack++] = (double)(vp->acked_us[i] - vp->sent_us[i]) / 1000.0;
                if (vp->seen[i]) {
                        st->arrived++;
                        lat[n++] = (double)(vp->arrived_us[i] - vp->sent_us[i]) / 1000.0;
                }
        }
        st->pub_failed = vp->pub_failed;
        st->post_p50 = percentile(lat, n, 0.50);
        st->post_p99 = percentile(lat, n, 0.99);
        st->puback_p99 = percentile(ack, n_ack, 0.99);
        st->joins = vp->n_req[0];
        st->leaves = vp->n_req[1];
        st->join_p50 = percentile(vp->req_ms[0], vp->n_req[0], 0.50);
        st->join_p99 = percentile(vp->req_ms[0], vp->n_req[0], 0.99);
        st->leave_p99 = percentile(vp->req_ms[1], vp->n_req[1], 0.99);
        st->timeouts = vp->timeouts;
        st->refused = vp->refused;
        snprintf(st->refused_text, sizeof st->refused_text, "%s", vp->refused_text);
        pthread_mutex_unlock(&v->lock);
        free(lat);
        free(ack);
}

/* One phase: the victim (and in PH_ABUSE the abuser) for --seconds, then
 * the victim's posts settle and are counted. */
static void run_phase(struct run *r, int p, int seconds)
{
        struct victim *v = r->v;
        struct phase_stats *st = &r->ph[p];
        pthread_t poster, joiner, abuser;
        bool abusing = p == PH_ABUSE;
        atomic_store(&v->cur, p);
        atomic_store(&v->stop, false);
        if (pthread_create(&poster, NULL, poster_main, v) != 0 || pthread_create(&joiner, NULL, joiner_main, v) != 0) {
                fprintf(stderr, "%s: cannot start the victim's threads\n", r->c->name);
                exit(2);
        }
        if (abusing && pthread_create(&abuser, NULL, r->c->abuse, &r->ab) != 0) {
                fprintf(stderr, "%s: cannot start the abuser\n", r->c->name);
                exit(2);
        }
        int64_t end = now_ms() + (int64_t)seconds * 1000;
        while (now_ms() < end && !interrupted && daemon_alive(r)) {
                sample_rss(r, st);
                nap_us(RSS_SAMPLE_MS * 1000);
        }
        atomic_store(&v->stop, true);
        if (abusing)
                atomic_store(&r->ab.stop, true);
        pthread_join(poster, NULL);
        pthread_join(joiner, NULL);
        if (abusing)
                pthread_join(abuser, NULL);
        int64_t t0 = now_ms();
        wait_sampling(r, st, all_arrived, SETTLE_MS);
        st->settle_ms = now_ms() - t0;
        if (daemon_alive(r))
                st->hwm_mib = proc_status_mib(r->dm.p.pid, "VmHWM:");
        phase_stats(r, p);
        if (tally_stream(r, p, &st->missing, &st->dup) < 0) {
                r->setup_failed = true;
                snprintf(r->why, sizeof r->why, "could not read DLV back after the %s phase", phase_names[p]);
        }
        st->done = true;
        if (st->missing || st->dup)
                r->lost = true;
}

static bool warm(struct run *r)
{
        return atomic_load(&r->v->warm_seen) > 0;
}

/* A post that must arrive before measuring: the daemon is serving. */
static bool warm_up(struct run *r)
{
        struct phase_stats scratch = {0};
        return victim_publish(r->v, "warm-0") && wait_sampling(r, &scratch, warm, WARMUP_MS);
}

/* The abuse's own deliveries (large, large-fanout): copies in DLV_<S> on
 * the member subjects of its channel. */
static uint64_t copies_now(struct run *r)
{
        char stream[64], filter_subject[SUBJECT_MAX];
        snprintf(stream, sizeof stream, "DLV_%s", r->space);
        snprintf(filter_subject, sizeof filter_subject, "cotal.%s.dlv.>", r->space);
        json_t *filter = json_pack("{s:s}", "subjects_filter", filter_subject), *info = NULL;
        uint64_t total = 0;
        if (jsapi_stream_info(tu_nc, stream, filter, API_TIMEOUT_MS, &info, NULL) == 0) {
                const char *k;
                json_t *c;
                json_object_foreach (json_object_get(json_object_get(info, "state"), "subjects"), k, c) {
                        char bob[SUBJECT_MAX];
                        snprintf(bob, sizeof bob, "cotal.%s.dlv.%s", r->space, BOB);
                        if (strcmp(k, bob) != 0)
                                total += (uint64_t)json_integer_value(c);
                }
        }
        json_decref(filter);
        json_decref(info);
        return total;
}

static bool copies_done(struct run *r)
{
        r->copies = copies_now(r);
        return r->copies >= r->expected_copies;
}

/* Waits for the abuse's own deliveries while they progress. */
static void drain_copies(struct run *r)
{
        int64_t start = now_ms(), last_progress = start;
        uint64_t last = 0;
        while (!copies_done(r) && !interrupted && daemon_alive(r) && now_ms() - start < DRAIN_MAX_MS) {
                if (r->copies > last) {
                        last = r->copies;
                        last_progress = now_ms();
                } else if (now_ms() - last_progress > DRAIN_STALL_MS) {
                        break;
                }
                sample_rss(r, &r->ph[PH_ABUSE]);
                nap_us(RSS_SAMPLE_MS * 1000);
        }
        if (r->copies < r->expected_copies) {
                r->lost = true;
                fprintf(stderr, "%s: the abuse's own posts: %" PRIu64 " of %" PRIu64 " copies delivered\n", r->c->name,
                        r->copies, r->expected_copies);
        }
}

/* What the case's first counter should reach over the abuse phase, from
 * the abuser's own account (when it is knowable). */
static void expectation(struct run *r)
{
        struct abuser *ab = &r->ab;
        const char *name = r->c->name;
        r->expect_known = true;
        if (strcmp(name, "ctl-garbage") == 0)
                r->expect = ab->sent;
        else if (strcmp(name, "ctl-flood") == 0)
                r->expect = ab->busy + ab->unanswered;
        else if (strcmp(name, "near-limit") == 0)
                r->expect = ab->sent;
        else if (strcmp(name, "mentions") == 0)
                r->expect = ab->sent * (uint64_t)(MENTIONS - MENTIONS_RESOLVED);
        else
                r->expect_known = false;
        if (strcmp(name, "large") == 0)
                r->expected_copies = ab->sent;
        else if (strcmp(name, "large-fanout") == 0)
                r->expected_copies = ab->sent * FANOUT_MEMBERS;
}

static void wait_counted(struct run *r)
{
        if (!r->expect_known || !r->counters0)
                return;
        int64_t deadline = now_ms() + COUNTER_WAIT_MS;
        for (;;) {
                json_t *c = counters_now(r);
                uint64_t delta = c ? counter(c, r->c->counters[0]) - counter(r->counters0, r->c->counters[0]) : 0;
                json_decref(c);
                if (!c || delta >= r->expect || now_ms() >= deadline || interrupted || !daemon_alive(r))
                        return;
                sample_rss(r, &r->ph[PH_ABUSE]);
                nap_us(COUNTER_POLL_MS * 1000);
        }
}

static void delete_space(struct run *r)
{
        static const char *const streams[] = {"CHAT_%s",
                                              "DM_%s",
                                              "TASK_%s",
                                              "INBOX_%s",
                                              "DLV_%s",
                                              "KV_cotal_presence_%s",
                                              "KV_cotal_channels_%s",
                                              "KV_cotal_members_%s",
                                              "KV_cotal_acl_%s",
                                              "KV_cotal_delivery_%s"};
        for (size_t i = 0; i < sizeof streams / sizeof *streams; i++) {
                char name[128], subject[SUBJECT_MAX];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
                snprintf(name, sizeof name, streams[i], r->space);
#pragma GCC diagnostic pop
                snprintf(subject, sizeof subject, "$JS.API.STREAM.DELETE.%s", name);
                json_t *reply = NULL;
                if (jsapi_request(tu_nc, subject, NULL, API_TIMEOUT_MS, &reply, NULL) < 0)
                        fprintf(stderr, "warning: could not delete stream %s\n", name);
                json_decref(reply);
        }
}

/* --keep: the daemon's log beside the broker's (its own is removed with
 * its proc). */
static void keep_log(struct run *r)
{
        char path[400];
        snprintf(path, sizeof path, "%.200s/daemon-%s.log", tu_broker.dir, r->c->name);
        char *err = proc_stderr(&r->dm.p);
        FILE *f = fopen(path, "w");
        if (f) {
                fputs(err, f);
                fclose(f);
                printf("  daemon log kept: %s\n", path);
        }
        free(err);
}

static void print_phase(const struct run *r, int p)
{
        const struct phase_stats *st = &r->ph[p];
        char j50[16], j99[16], l99[16], p50[16], p99[16], a99[16];
        fmt_ms(j50, sizeof j50, st->join_p50);
        fmt_ms(j99, sizeof j99, st->join_p99);
        fmt_ms(l99, sizeof l99, st->leave_p99);
        fmt_ms(p50, sizeof p50, st->post_p50);
        fmt_ms(p99, sizeof p99, st->post_p99);
        fmt_ms(a99, sizeof a99, st->puback_p99);
        printf("  %-8s join p50/p99 %s/%s ms (%d; leave p99 %s ms of %d), timeouts %d, refused %d; "
               "posts p50/p99 %s/%s ms (their PubAck p99 %s ms), %d/%d arrived (settled in %.1f s), %d missing, %d "
               "duplicated, "
               "%d unpublished; RSS max %.1f MiB (VmHWM %.1f)\n",
               phase_names[p], j50, j99, st->joins, l99, st->leaves, st->timeouts, st->refused, p50, p99, a99,
               st->arrived, st->posts, (double)st->settle_ms / 1000.0, st->missing, st->dup, st->pub_failed,
               st->rss_mib, st->hwm_mib);
        if (st->refused)
                printf("           last refusal: %s\n", st->refused_text);
        fflush(stdout);
}

static void report_abuse(struct run *r)
{
        struct abuser *ab = &r->ab;
        snprintf(r->abuse_note, sizeof r->abuse_note,
                 "sent %" PRIu64 " (failed %" PRIu64 "); replies ok %" PRIu64 ", busy %" PRIu64 ", other %" PRIu64
                 ", unanswered in %d s %" PRIu64 " (of which answered later %" PRIu64 ")",
                 ab->sent, ab->failed, ab->ok, ab->busy, ab->other, REQUEST_TIMEOUT_MS / 1000, ab->unanswered,
                 ab->late);
        printf("  abuser:  %s\n", r->abuse_note);
        size_t len = 0;
        r->counters_text[0] = '\0';
        if (r->counters0 && r->counters1) {
                static const char *const always[] = {"control_shed", "entries_too_large", "mentions_ignored",
                                                     "inbox_lost", "terminated"};
                for (size_t i = 0; i < 3 + sizeof always / sizeof *always && len < sizeof r->counters_text; i++) {
                        const char *name = i < 3 ? r->c->counters[i] : always[i - 3];
                        if (!name || (i >= 3 && (counter(r->counters1, name) == counter(r->counters0, name) ||
                                                 strstr(r->counters_text, name))))
                                continue;
                        len += (size_t)snprintf(r->counters_text + len, sizeof r->counters_text - len, "%s%s +%" PRIu64,
                                                len ? ", " : "", name,
                                                counter(r->counters1, name) - counter(r->counters0, name));
                }
        } else {
                snprintf(r->counters_text, sizeof r->counters_text, "(diag failed)");
        }
        printf("  counters over the abuse phase: %s\n", r->counters_text);
        if (r->expect_known && r->counters0 && r->counters1) {
                uint64_t got = counter(r->counters1, r->c->counters[0]) - counter(r->counters0, r->c->counters[0]);
                r->not_counted = got < r->expect;
                printf("  counted: %s +%" PRIu64 " for %" PRIu64 " the abuser accounts for%s\n", r->c->counters[0], got,
                       r->expect, r->not_counted ? "  <- NOT all counted" : "");
        }
        if (r->expected_copies)
                printf("  the abuse's own copies: %" PRIu64 " of %" PRIu64 " delivered\n", r->copies,
                       r->expected_copies);
        printf("  daemon log (CAROL's joins and leaves not counted): %d lines in all, +%d during the abuse phase",
               r->log1, r->log1 - r->log0);
        if (r->c->log_match)
                printf(", %d of them containing \"%s\"", r->log_matched, r->c->log_match);
        printf("\n");
        fflush(stdout);
}

/* Appends ", <reason>" (or the first "<reason>") to buf. */
__attribute__((format(printf, 4, 5))) static void add_reason(char *buf, size_t size, size_t *len, const char *fmt, ...)
{
        if (*len >= size)
                return;
        if (*len)
                *len += (size_t)snprintf(buf + *len, size - *len, ", ");
        va_list ap;
        va_start(ap, fmt);
        if (*len < size)
                *len += (size_t)vsnprintf(buf + *len, size - *len, fmt, ap);
        va_end(ap);
}

static void verdict(struct run *r)
{
        const struct phase_stats *a = &r->ph[PH_ABUSE];
        char why[256] = "";
        size_t len = 0, size = sizeof why;
        if (r->setup_failed)
                add_reason(why, size, &len, "setup failed");
        if (r->died)
                add_reason(why, size, &len, "daemon exited (%d)", r->died_status);
        if (!a->done)
                add_reason(why, size, &len, "not measured");
        if (a->done && !(a->join_p99 < TARGET_JOIN_P99_MS))
                add_reason(why, size, &len, "join p99");
        if (a->done && !(a->post_p99 < TARGET_POST_P99_MS))
                add_reason(why, size, &len, "post p99");
        if (fmax(a->rss_mib, a->hwm_mib) >= TARGET_RSS_MIB)
                add_reason(why, size, &len, "RSS");
        if (r->lost)
                add_reason(why, size, &len, "LOSS");
        if (r->ph[PH_BASELINE].timeouts + a->timeouts)
                add_reason(why, size, &len, "timeouts");
        if (r->not_counted)
                add_reason(why, size, &len, "not all counted");
        if (len)
                snprintf(r->verdict, sizeof r->verdict, "NOT met: %s", why);
        else
                snprintf(r->verdict, sizeof r->verdict, "met");
}

static void run_case(struct bench *b, int index)
{
        struct run *r = calloc(1, sizeof *r);
        if (!r) {
                fprintf(stderr, "out of memory\n");
                exit(2);
        }
        const struct abuse_case *c = &cases[index];
        r->c = c;
        r->index = index;
        r->v = &b->v;
        r->max_payload = (size_t)natsConnection_GetMaxPayload(tu_nc);
        r->list_records = b->opt.quick ? QUICK_LIST_RECORDS : LIST_RECORDS;
        snprintf(r->space, sizeof r->space, "ab%d", index);
        snprintf(r->sock, sizeof r->sock, "%.200s/diag-%s.sock", tu_broker.dir, c->name);
        if (strcmp(c->name, "large-fanout") == 0 || strcmp(c->name, "mentions") == 0) {
                r->n_ids = strcmp(c->name, "mentions") == 0 ? ROSTER : FANOUT_MEMBERS;
                r->ids = calloc((size_t)r->n_ids, sizeof *r->ids);
                for (int i = 0; r->ids && i < r->n_ids; i++)
                        make_id(r->ids[i], r->n_ids == ROSTER ? "ROSTER" : "WIDE", (uint64_t)i);
        }
        printf("\n== %s (space %s): %s\n", c->name, r->space, c->what);
        fflush(stdout);
        int64_t t0 = now_ms();
        char why[512] = "";
        bool ok = (r->n_ids == 0 || r->ids) && tu_guard(c->fixtures, r, why, sizeof why) == 0;
        if (!ok)
                snprintf(r->why, sizeof r->why, "fixtures: %s", why);
        if (ok && !(ok = tu_guard(start_daemon, r, why, sizeof why) == 0))
                snprintf(r->why, sizeof r->why, "daemon start: %s", why);
        if (ok &&
            !(ok = victim_subscribe(r->v, r->space) == 0 && victim_phase_init(&r->v->ph[0], b->opt.seconds) == 0 &&
                   victim_phase_init(&r->v->ph[1], b->opt.seconds) == 0))
                snprintf(r->why, sizeof r->why, "victim setup failed");
        if (ok && c->after_start && !(ok = tu_guard(c->after_start, r, why, sizeof why) == 0))
                snprintf(r->why, sizeof r->why, "after start: %s", why);
        if (ok && !(ok = warm_up(r)))
                snprintf(r->why, sizeof r->why, "the warm-up post did not arrive within %d s", WARMUP_MS / 1000);
        if (ok && !(ok = abuser_open(r) == 0))
                snprintf(r->why, sizeof r->why, "abuser connection failed");
        if (ok) {
                printf("  set up in %.1f s\n", (double)(now_ms() - t0) / 1000.0);
                run_phase(r, PH_BASELINE, b->opt.seconds);
                print_phase(r, PH_BASELINE);
        }
        if (ok && daemon_alive(r) && !interrupted) {
                r->counters0 = counters_now(r);
                r->log0 = log_lines(r, NULL, NULL);
                int before_match = 0;
                (void)log_lines(r, c->log_match, &before_match);
                run_phase(r, PH_ABUSE, b->opt.seconds);
                expectation(r);
                if (r->expected_copies)
                        drain_copies(r);
                wait_counted(r);
                if (daemon_alive(r))
                        r->counters1 = counters_now(r);
                r->log1 = log_lines(r, c->log_match, &r->log_matched);
                r->log_matched -= before_match;
                print_phase(r, PH_ABUSE);
                report_abuse(r);
        }
        if (!ok) {
                r->setup_failed = true;
                fprintf(stderr, "%s: setup failed: %s\n", c->name, r->why);
        }
        if (r->started && !daemon_alive(r) && r->died) {
                printf("  daemon EXITED with status %d\n", r->died_status);
                log_tail(r);
        }
        if (r->ab.nc || r->ab.r)
                abuser_close(&r->ab);
        if (r->started && !r->died) {
                int st = co_daemon_stop(&r->dm);
                if (st != 0)
                        printf("  daemon stopped with status %d on SIGTERM\n", st);
        }
        if (b->opt.keep && r->started)
                keep_log(r);
        proc_destroy(&r->dm.p);
        victim_unsubscribe(r->v);
        if (!b->opt.keep)
                delete_space(r);
        verdict(r);
        printf("  verdict: %s\n", r->verdict);
        fflush(stdout);
        b->lost += r->lost;
        b->died += r->died;
        b->setup_failed += r->setup_failed;
        free(r->ids);
        r->ids = NULL;
        json_decref(r->counters0);
        json_decref(r->counters1);
        r->counters0 = r->counters1 = NULL;
        results[index] = r;
}

/* ---- the report ---- */

static void print_table(void)
{
        printf("\n| case | join p50/p99 ms baseline -> abuse | post p50/p99 ms baseline -> abuse | timeouts | "
               "peak RSS MiB baseline/abuse | counters (abuse phase) | verdict |\n|---|---|---|---|---|---|---|\n");
        for (size_t i = 0; i < N_CASES; i++) {
                const struct run *r = results[i];
                if (!r)
                        continue;
                const struct phase_stats *b = &r->ph[PH_BASELINE], *a = &r->ph[PH_ABUSE];
                char f[8][16];
                fmt_ms(f[0], sizeof f[0], b->join_p50);
                fmt_ms(f[1], sizeof f[1], b->join_p99);
                fmt_ms(f[2], sizeof f[2], a->join_p50);
                fmt_ms(f[3], sizeof f[3], a->join_p99);
                fmt_ms(f[4], sizeof f[4], b->post_p50);
                fmt_ms(f[5], sizeof f[5], b->post_p99);
                fmt_ms(f[6], sizeof f[6], a->post_p50);
                fmt_ms(f[7], sizeof f[7], a->post_p99);
                printf("| %s | %s/%s -> %s/%s | %s/%s -> %s/%s | %d/%d | %.1f/%.1f | %s | %s |\n", r->c->name, f[0],
                       f[1], f[2], f[3], f[4], f[5], f[6], f[7], b->timeouts, a->timeouts, fmax(b->rss_mib, b->hwm_mib),
                       fmax(a->rss_mib, a->hwm_mib), r->counters_text[0] ? r->counters_text : "-", r->verdict);
        }
        printf("\nTargets on the abuse phase: join p99 < %.0f ms, post p99 < %.0f ms, RSS < %.0f MiB, nothing lost, "
               "no timeouts (%d ms), every shed request or dropped entry counted.\n",
               TARGET_JOIN_P99_MS, TARGET_POST_P99_MS, TARGET_RSS_MIB, REQUEST_TIMEOUT_MS);
        fflush(stdout);
}

/* ---- setup ---- */

static void usage(FILE *f)
{
        fprintf(f,
                "usage: cotal-abuse [--quick] [--seconds N] [--cases LIST] [--keep]\n"
                "\n"
                "Measures a well-behaved agent's latency (durableJoin round trip, post -> delivery)\n"
                "and the daemon's RSS without and with each abuse, on its own nats-server.\n"
                "\n"
                "  --quick        %d s phases and %d membership records for ctl-list (default %d s, %d)\n"
                "  --seconds N    length of each phase, 1..%d\n"
                "  --cases LIST   comma-separated, default all:\n",
                QUICK_SECONDS, QUICK_LIST_RECORDS, DEFAULT_SECONDS, LIST_RECORDS, MAX_SECONDS);
        for (size_t i = 0; i < N_CASES; i++)
                fprintf(f, "                   %-13s %s\n", cases[i].name, cases[i].what);
        fprintf(f, "  --keep         keep the broker's directory (store, server.log), the spaces and each\n"
                   "                 daemon's log (daemon-<case>.log there)\n"
                   "\n"
                   "Needs COTAL_DELIVERYD and COTAL_DELIVERYCTL (scripts/abuse sets them). Exit status:\n"
                   "1 if a victim's post was lost or duplicated (or the abuse's own deliveries fell\n"
                   "short) or a daemon died, 2 on a setup failure, else 0.\n");
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
                        fprintf(stderr, "cotal-abuse: unknown case %s\n", t);
                        r = -EINVAL;
                } else {
                        o->selected[ci] = true;
                }
        }
        free(copy);
        return r;
}

static int parse_options(struct options *o, int argc, char **argv)
{
        static const struct option opts[] = {
                {"quick", no_argument, NULL, 'q'},       {"seconds", required_argument, NULL, 's'},
                {"cases", required_argument, NULL, 'c'}, {"keep", no_argument, NULL, 'k'},
                {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0},
        };
        int c, r = 0;
        for (size_t i = 0; i < N_CASES; i++)
                o->selected[i] = true;
        while (r == 0 && (c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                char *end = NULL;
                switch (c) {
                case 'q': o->quick = true; break;
                case 's':
                        errno = 0;
                        o->seconds = (int)strtol(optarg, &end, 10);
                        if (errno || !end || *end || o->seconds < 1 || o->seconds > MAX_SECONDS)
                                r = -EINVAL;
                        break;
                case 'c': r = select_cases(o, optarg); break;
                case 'k': o->keep = true; break;
                case 'h': usage(stdout); exit(0);
                default: r = -EINVAL;
                }
        }
        if (r < 0 || optind != argc)
                return -EINVAL;
        if (!o->seconds)
                o->seconds = o->quick ? QUICK_SECONDS : DEFAULT_SECONDS;
        if (!getenv("COTAL_DELIVERYD") || !getenv("COTAL_DELIVERYCTL")) {
                fprintf(stderr, "cotal-abuse: set COTAL_DELIVERYD and COTAL_DELIVERYCTL; scripts/abuse does\n");
                return -EINVAL;
        }
        return 0;
}

static natsStatus connect_as(natsConnection **nc, const char *name)
{
        natsOptions *o = NULL;
        natsStatus s = natsOptions_Create(&o);
        if (s == NATS_OK)
                s = natsOptions_SetURL(o, tu_broker.url);
        if (s == NATS_OK)
                s = natsOptions_SetName(o, name);
        if (s == NATS_OK)
                s = natsConnection_Connect(nc, o);
        natsOptions_Destroy(o);
        return s;
}

/* The broker and the victims' connections: one each for ALICE (posts),
 * BOB (his deliveries) and CAROL (her requests), as three agents. */
static int bench_open(struct bench *b)
{
        if (!natsd_available()) {
                fprintf(stderr, "cotal-abuse: %s is not installed\n", natsd_binary());
                return -ENOENT;
        }
        int r = natsd_start(&tu_broker, NULL);
        if (r < 0) {
                fprintf(stderr, "Failed to start nats-server: %s (log: %s)\n", strerror(-r), tu_broker.log);
                return r;
        }
        natsStatus s = natsConnection_ConnectTo(&tu_nc, tu_broker.url);
        if (s == NATS_OK)
                s = natsConnection_JetStream(&b->js, tu_nc, NULL);
        if (s == NATS_OK)
                s = connect_as(&b->alice_nc, "alice");
        if (s == NATS_OK)
                s = natsConnection_JetStream(&b->alice_js, b->alice_nc, NULL);
        if (s == NATS_OK)
                s = connect_as(&b->bob_nc, "bob");
        if (s == NATS_OK)
                s = connect_as(&b->carol_nc, "carol");
        if (s != NATS_OK) {
                fprintf(stderr, "Failed to connect to %s: %s\n", tu_broker.url, natsStatus_GetText(s));
                return -EIO;
        }
        pthread_mutex_init(&b->v.lock, NULL);
        b->v.alice_nc = b->alice_nc;
        b->v.alice_js = b->alice_js;
        b->v.bob_nc = b->bob_nc;
        b->v.carol_nc = b->carol_nc;
        printf("cotal-abuse: %s at %s, %d s phases, daemon %s\n", natsd_binary(), tu_broker.url, b->opt.seconds,
               getenv("COTAL_DELIVERYD"));
        fflush(stdout);
        return 0;
}

/* Reverse of bench_open; safe on a partial open. */
static void bench_close(struct bench *b)
{
        jsCtx_Destroy(b->alice_js);
        jsCtx_Destroy(b->js);
        natsConnection *conns[] = {b->carol_nc, b->bob_nc, b->alice_nc, tu_nc};
        for (size_t i = 0; i < sizeof conns / sizeof *conns; i++) {
                if (conns[i])
                        natsConnection_Close(conns[i]);
                natsConnection_Destroy(conns[i]);
        }
        tu_nc = NULL;
        if (b->opt.keep)
                printf("kept the broker's directory: %s\n", tu_broker.dir);
        else
                natsd_destroy(&tu_broker);
        if (b->opt.keep)
                natsd_stop(&tu_broker);
        pthread_mutex_destroy(&b->v.lock);
        nats_CloseAndWait(2000);
}

int main(int argc, char **argv)
{
        struct bench *b = &bench;
        if (parse_options(&b->opt, argc, argv) < 0) {
                usage(stderr);
                return 2;
        }
        struct sigaction sa = {.sa_handler = on_interrupt};
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
        if (bench_open(b) < 0) {
                bench_close(b);
                return 2;
        }
        for (size_t i = 0; i < N_CASES && !interrupted; i++)
                if (b->opt.selected[i])
                        run_case(b, (int)i);
        print_table();
        bench_close(b);
        for (size_t i = 0; i < N_CASES; i++)
                free(results[i]);
        if (b->lost || b->died)
                printf("\nFAILED: %d case%s lost or duplicated deliveries, %d daemon%s died\n", b->lost,
                       b->lost == 1 ? "" : "s", b->died, b->died == 1 ? "" : "s");
        if (b->lost || b->died || interrupted)
                return 1;
        return b->setup_failed ? 2 : 0;
}
