/* cotal-bench-yardstick: the least a program can do to move a space's chat
 * messages through the daemon's two hops (CHAT -> INBOX -> DLV) with cnats'
 * public JetStream API, so the daemon's throughput has something to be
 * measured against. It reads no KV, parses no JSON and authorises nothing:
 * it must never serve a real space.
 *
 *   cotal-bench-yardstick --server URL --space S --owners ID[,ID...]
 *                         [--batch 256] [--lead-limit 500]
 *
 * Prints "yardstick ready" once both durables are bound; SIGTERM or SIGINT
 * stop it (exit 0). Exit 1 on a runtime failure, 2 on a usage error. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <nats/nats.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FETCH_WAIT_MS 500
/* Never wait on PubAcks without a bound: a lost ack would block forever
 * (research/cnats.md). */
#define COMPLETE_WAIT_MS 10000
#define PUB_MAX_PENDING 4096
/* A batch of 256 messages to 200 owners is 51,200 publishes, far past
 * PUB_MAX_PENDING: publishing stalls until acks come back, which takes
 * longer than cnats' 200 ms default under load. */
#define PUB_STALL_WAIT_MS 5000
#define FETCH_ERROR_NAP_MS 100
#define LEAD_NAP_MS 1
#define SIGNAL_POLL_MS 100
/* The bench stops it long before; this only bounds an orphan's life. */
#define MAX_LIFETIME_MS (3600 * 1000)
#define CLOSE_FLUSH_MS 500
#define SUBJECT_MAX 512
#define MSGID_MAX 256

struct yardstick;

/* One hop: a durable it drains and a stream it writes, on a connection of
 * its own. Owned by its thread once started. */
struct hop {
        const char *name; /* "fanout" or "reader": the durable */
        struct yardstick *y;
        natsConnection *nc;
        jsCtx *js;
        natsSubscription *sub;
        pthread_t thread;
        bool started;
        atomic_uint_fast64_t pub_errors; /* counted on cnats' PubAck thread */
        /* Publishes the copies of one fetched message. */
        natsStatus (*forward)(struct hop *h, natsMsg *m);
        /* What a confirmed batch of n messages adds to *done. */
        atomic_uint_fast64_t *done;
        uint64_t done_per_msg;
};

struct yardstick {
        const char *server;
        const char *space;
        char *owner_list; /* owned copy of --owners, cut at ',' */
        char **owners;    /* owned array of pointers into owner_list */
        size_t n_owners;
        int batch;
        int lead_limit;
        atomic_bool stop;
        /* Inbox entries confirmed by hop 1, and acked by hop 2. */
        atomic_uint_fast64_t published;
        atomic_uint_fast64_t acked;
        struct hop fanout;
        struct hop reader;
};

static void nap_ms(int ms)
{
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
}

static void usage(FILE *f)
{
        fprintf(f, "usage: cotal-bench-yardstick --server URL --space S --owners ID[,ID...]\n"
                   "                             [--batch N] [--lead-limit N]\n");
}

static int split_owners(struct yardstick *y, const char *list)
{
        y->owner_list = strdup(list);
        y->owners = calloc(strlen(list) / 2 + 1, sizeof *y->owners);
        if (!y->owner_list || !y->owners)
                return -ENOMEM;
        char *save = NULL;
        for (char *o = strtok_r(y->owner_list, ",", &save); o; o = strtok_r(NULL, ",", &save))
                y->owners[y->n_owners++] = o;
        return y->n_owners ? 0 : -EINVAL;
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
        char *end = NULL;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || end == s || *end || v < lo || v > hi)
                return -EINVAL;
        *out = (int)v;
        return 0;
}

static int parse_args(struct yardstick *y, int argc, char **argv)
{
        static const struct option opts[] = {
                {"server", required_argument, NULL, 's'},
                {"space", required_argument, NULL, 'S'},
                {"owners", required_argument, NULL, 'o'},
                {"batch", required_argument, NULL, 'b'},
                {"lead-limit", required_argument, NULL, 'l'},
                {"help", no_argument, NULL, 'h'},
                {NULL, 0, NULL, 0},
        };
        const char *owners = NULL;
        int c, idx = 0;
        while ((c = getopt_long(argc, argv, "", opts, &idx)) != -1) {
                int r = 0;
                switch (c) {
                case 's': y->server = optarg; break;
                case 'S': y->space = optarg; break;
                case 'o': owners = optarg; break;
                case 'b': r = parse_int(optarg, 1, 1000, &y->batch); break;
                case 'l': r = parse_int(optarg, 1, 1000, &y->lead_limit); break;
                case 'h': usage(stdout); exit(0);
                default: return -EINVAL;
                }
                if (r < 0) {
                        fprintf(stderr, "cotal-bench-yardstick: bad value for --%s: %s\n", opts[idx].name, optarg);
                        return r;
                }
        }
        if (optind != argc || !y->server || !y->space || !owners)
                return -EINVAL;
        return split_owners(y, owners);
}

static void count_pub_error(jsCtx *js, jsPubAckErr *pae, void *closure)
{
        struct hop *h = closure;
        atomic_fetch_add(&h->pub_errors, 1);
}

/* Connects and binds the existing durable (never creates it). */
static int hop_open(struct hop *h, const char *stream)
{
        natsStatus s = natsConnection_ConnectTo(&h->nc, h->y->server);
        jsOptions jo;
        jsOptions_Init(&jo);
        jo.PublishAsync.MaxPending = PUB_MAX_PENDING;
        jo.PublishAsync.StallWait = PUB_STALL_WAIT_MS;
        jo.PublishAsync.ErrHandler = count_pub_error;
        jo.PublishAsync.ErrHandlerClosure = h;
        if (s == NATS_OK)
                s = natsConnection_JetStream(&h->js, h->nc, &jo);
        jsSubOptions so;
        jsSubOptions_Init(&so);
        so.Stream = stream;
        so.Consumer = h->name;
        jsErrCode jerr = 0;
        if (s == NATS_OK)
                s = js_PullSubscribe(&h->sub, h->js, NULL, NULL, NULL, &so, &jerr);
        if (s != NATS_OK) {
                fprintf(stderr, "cotal-bench-yardstick: Failed to bind %s on %s: %s (%d)\n", h->name, stream,
                        natsStatus_GetText(s), (int)jerr);
                return -EIO;
        }
        return 0;
}

/* Destroy order: subscription, JetStream context, connection (STYLE). The
 * flush after the unsubscribe lets cnats' reader thread let go of the
 * subscription first (cnats 3.4.1 uses it after dropping its lock). */
static void hop_close(struct hop *h)
{
        if (h->sub) {
                natsSubscription_Unsubscribe(h->sub);
                natsConnection_FlushTimeout(h->nc, CLOSE_FLUSH_MS);
        }
        natsSubscription_Destroy(h->sub);
        jsCtx_Destroy(h->js);
        if (h->nc)
                natsConnection_Close(h->nc);
        natsConnection_Destroy(h->nc);
        h->sub = NULL;
        h->js = NULL;
        h->nc = NULL;
}

static natsStatus publish(struct hop *h, const char *subject, natsMsg *src, const char *msg_id)
{
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = msg_id;
        return js_PublishAsync(h->js, subject, natsMsg_GetData(src), natsMsg_GetDataLength(src), &po);
}

/* Hop 1: one inbox copy per owner, id "<chat seq>:<owner>:1". */
static natsStatus fanout_forward(struct hop *h, natsMsg *m)
{
        jsMsgMetaData *md = NULL;
        natsStatus s = natsMsg_GetMetaData(&md, m);
        if (s != NATS_OK)
                return s;
        uint64_t seq = md->Sequence.Stream;
        jsMsgMetaData_Destroy(md);
        const struct yardstick *y = h->y;
        for (size_t i = 0; i < y->n_owners && s == NATS_OK; i++) {
                char subject[SUBJECT_MAX], msg_id[MSGID_MAX];
                snprintf(subject, sizeof subject, "cotal.%s.dinbox.%s", y->space, y->owners[i]);
                snprintf(msg_id, sizeof msg_id, "%" PRIu64 ":%s:1", seq, y->owners[i]);
                s = publish(h, subject, m, msg_id);
        }
        return s;
}

/* Hop 2: the entry, unchanged, to the owner's deliver subject under the
 * entry's own dedup id. */
static natsStatus reader_forward(struct hop *h, natsMsg *m)
{
        const char *msg_id = NULL;
        natsStatus s = natsMsgHeader_Get(m, "Nats-Msg-Id", &msg_id);
        if (s != NATS_OK)
                return s;
        const char *owner = strrchr(natsMsg_GetSubject(m), '.');
        if (!owner)
                return NATS_INVALID_ARG;
        char subject[SUBJECT_MAX];
        snprintf(subject, sizeof subject, "cotal.%s.dlv.%s", h->y->space, owner + 1);
        return publish(h, subject, m, msg_id);
}

/* Publishes the whole batch, waits for every PubAck, then acks each source
 * message (after the confirm, as the daemon does), or naks them all. */
static void hop_batch(struct hop *h, natsMsgList *l)
{
        uint64_t errors_before = atomic_load(&h->pub_errors);
        natsStatus s = NATS_OK;
        for (int i = 0; i < l->Count && s == NATS_OK; i++)
                s = h->forward(h, l->Msgs[i]);
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = COMPLETE_WAIT_MS;
        /* Always drain what is in flight, even after a failed publish. */
        natsStatus done = js_PublishAsyncComplete(h->js, &po);
        bool ok = s == NATS_OK && done == NATS_OK && atomic_load(&h->pub_errors) == errors_before;
        for (int i = 0; i < l->Count; i++) {
                if (ok)
                        natsMsg_Ack(l->Msgs[i], NULL);
                else
                        natsMsg_Nak(l->Msgs[i], NULL);
        }
        if (ok)
                atomic_fetch_add(h->done, (uint64_t)l->Count * h->done_per_msg);
        else
                fprintf(stderr, "cotal-bench-yardstick: %s: batch of %d handed back (-NAK): publish %s, confirm %s\n",
                        h->name, l->Count, natsStatus_GetText(s), natsStatus_GetText(done));
}

/* The inbox keeps 1000 entries per owner, oldest discarded: fanning out
 * further ahead of the reader than the lead limit would evict unread
 * entries. Waits, a millisecond at a time, until the next batch fits. */
static void wait_for_reader(struct yardstick *y)
{
        int64_t k = (int64_t)y->n_owners;
        while (!atomic_load(&y->stop)) {
                int64_t lead = (int64_t)(atomic_load(&y->published) - atomic_load(&y->acked));
                if (lead + (int64_t)y->batch * k <= (int64_t)y->lead_limit * k)
                        return;
                nap_ms(LEAD_NAP_MS);
        }
}

/* Waits up to FETCH_WAIT_MS for the first message, then takes only what
 * is already there, as the daemon does. A plain Fetch(batch, wait) that
 * finds nothing waits until the whole batch has arrived, holding the first
 * message back for up to FETCH_WAIT_MS under a light load; no_wait with an
 * expiry returns as soon as there is anything (cnats 3.4.1 with
 * nats-server 2.9.10, measured). */
static natsStatus fetch(struct hop *h, natsMsgList *l)
{
        jsFetchRequest req;
        jsFetchRequest_Init(&req);
        req.Batch = h->y->batch;
        req.NoWait = true;
        req.Expires = (int64_t)FETCH_WAIT_MS * 1000000;
        return natsSubscription_FetchRequest(l, h->sub, &req);
}

static void *hop_run(void *arg)
{
        struct hop *h = arg;
        struct yardstick *y = h->y;
        while (!atomic_load(&y->stop)) {
                if (h == &y->fanout)
                        wait_for_reader(y);
                natsMsgList l = {0};
                natsStatus s = fetch(h, &l);
                if (s == NATS_OK)
                        hop_batch(h, &l);
                natsMsgList_Destroy(&l);
                if (s != NATS_OK && s != NATS_TIMEOUT) {
                        fprintf(stderr, "cotal-bench-yardstick: %s: fetch: %s\n", h->name, natsStatus_GetText(s));
                        nap_ms(FETCH_ERROR_NAP_MS);
                }
        }
        return NULL;
}

static int start_hops(struct yardstick *y)
{
        struct hop *hops[] = {&y->fanout, &y->reader};
        for (size_t i = 0; i < 2; i++) {
                int r = pthread_create(&hops[i]->thread, NULL, hop_run, hops[i]);
                if (r != 0) {
                        fprintf(stderr, "cotal-bench-yardstick: Failed to start %s: %s\n", hops[i]->name, strerror(r));
                        return -r;
                }
                hops[i]->started = true;
        }
        return 0;
}

static void stop_hops(struct yardstick *y)
{
        atomic_store(&y->stop, true);
        struct hop *hops[] = {&y->fanout, &y->reader};
        for (size_t i = 0; i < 2; i++)
                if (hops[i]->started)
                        pthread_join(hops[i]->thread, NULL);
}

/* SIGTERM/SIGINT are blocked in every thread and taken here. */
static void wait_for_signal(const sigset_t *set)
{
        struct timespec tick = {.tv_sec = 0, .tv_nsec = SIGNAL_POLL_MS * 1000000L};
        for (int waited = 0; waited < MAX_LIFETIME_MS; waited += SIGNAL_POLL_MS)
                if (sigtimedwait(set, NULL, &tick) >= 0)
                        return;
        fprintf(stderr, "cotal-bench-yardstick: no stop signal after %d s: stopping\n", MAX_LIFETIME_MS / 1000);
}

int main(int argc, char **argv)
{
        struct yardstick y = {.batch = 256, .lead_limit = 500};
        y.fanout = (struct hop){.name = "fanout", .y = &y, .forward = fanout_forward, .done = &y.published};
        y.reader =
                (struct hop){.name = "reader", .y = &y, .forward = reader_forward, .done = &y.acked, .done_per_msg = 1};
        int status = 2;
        if (parse_args(&y, argc, argv) < 0) {
                usage(stderr);
                goto out;
        }
        y.fanout.done_per_msg = y.n_owners;

        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        pthread_sigmask(SIG_BLOCK, &set, NULL);

        char chat[SUBJECT_MAX], inbox[SUBJECT_MAX];
        snprintf(chat, sizeof chat, "CHAT_%s", y.space);
        snprintf(inbox, sizeof inbox, "INBOX_%s", y.space);
        status = 1;
        if (hop_open(&y.fanout, chat) < 0 || hop_open(&y.reader, inbox) < 0)
                goto out;
        printf("yardstick ready\n");
        fflush(stdout);
        if (start_hops(&y) == 0) {
                wait_for_signal(&set);
                status = 0;
        }
        stop_hops(&y);
out:
        hop_close(&y.fanout);
        hop_close(&y.reader);
        free(y.owners);
        free(y.owner_list);
        nats_CloseAndWait(2000);
        return status;
}
