/* soak_observe: what the broker holds, read as it happens. DLV_<S> and
 * INBOX_<S> keep only the last 1000 messages per owner subject, so a
 * final read-back would miss most of a long run: a harness thread drains
 * each stream through its own durable and counts stored copies by
 * Nats-Msg-Id and stream seq (two seqs = two stored copies; the same seq
 * again = this consumer's own redelivery, never counted). It also sends
 * the agents' presence heartbeats. Never asserts: the main thread judges. */
#include "soak.h"

#include "broker.h"
#include "jsack.h"
#include "kv.h"
#include "pull.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define OBS_BATCH PULL_MAX_BATCH
#define OBS_EXPIRES_MS 1000 /* a request lost in a broker restart is replaced within ~2 s */
#define OBS_WAIT_MS 200
#define OBS_BACKOFF_MS 200
#define OBS_ACK_WAIT_NS 30000000000LL
#define OBS_MAX_ACK_PENDING 50000
#define PRESENCE_PERIOD_MS 1000 /* agents beat every 2 s; TTL 6 s (§4.1, §4.7) */
#define PRESENCE_TIMEOUT_MS 1000

int64_t soak_mono_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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

static int connect_url(const char *url, const char *name, natsConnection **nc)
{
        broker_config bc = {.servers = url, .name = name, .reconnect = true, .connect_timeout_ms = 5000};
        char err[256];
        int r = broker_connect(&bc, nc, err, sizeof err);
        if (r < 0)
                fprintf(stderr, "soak: cannot connect %s to %s: %s\n", name, url, err);
        return r;
}

/* ---- observer ---- */

static int create_consumer(soak_observer *o, natsConnection *nc)
{
        char subject[256];
        snprintf(subject, sizeof subject, "$JS.API.CONSUMER.DURABLE.CREATE.%s.%s", o->stream, o->consumer);
        json_t *body =
                json_pack("{s:s,s:{s:s,s:s,s:s,s:I,s:s,s:i}}", "stream_name", o->stream, "config", "durable_name",
                          o->consumer, "filter_subject", o->filter, "ack_policy", "explicit", "ack_wait",
                          (json_int_t)OBS_ACK_WAIT_NS, "deliver_policy", "all", "max_ack_pending", OBS_MAX_ACK_PENDING);
        json_t *reply = NULL;
        jsapi_error err = {0};
        int r = jsapi_request(nc, subject, body, 5000, &reply, &err);
        json_decref(body);
        json_decref(reply);
        if (r < 0)
                snprintf(o->last_error, sizeof o->last_error, "create %.40s/%.40s: %.150s", o->stream, o->consumer,
                         err.description[0] ? err.description : strerror(-r));
        return r;
}

static void mark_seen(soak_observer *o, uint64_t seq, bool *already)
{
        if (seq >= o->seen_cap) {
                uint64_t cap = o->seen_cap ? o->seen_cap : 1 << 16;
                while (cap <= seq)
                        cap *= 2;
                o->seen = realloc(o->seen, cap / 8);
                o->seq_key = realloc(o->seq_key, cap * sizeof *o->seq_key);
                if (!o->seen || !o->seq_key)
                        abort();
                memset(o->seen + o->seen_cap / 8, 0, (cap - o->seen_cap) / 8);
                memset(o->seq_key + o->seen_cap, 0, (cap - o->seen_cap) * sizeof *o->seq_key);
                o->seen_cap = cap;
        }
        *already = o->seen[seq / 8] & (1u << (seq % 8));
        o->seen[seq / 8] |= (uint8_t)(1u << (seq % 8));
}

static void keep_foreign(soak_observer *o, const char *id, const char *subject)
{
        if (o->foreign < SOAK_FOREIGN_KEEP) {
                char *s = NULL;
                if (asprintf(&s, "%s on %s", id ? id : "(no Nats-Msg-Id)", subject) > 0)
                        o->foreign_ids[o->foreign] = s;
        }
        o->foreign++;
}

/* The key of "p<post>:<owner id>:<gen>" on "<prefix><owner id>", +1;
 * 0 for anything else (*poison set for the harness's own "y"/"z" ids). */
static uint64_t parse_key(const soak_observer *o, const char *id, const char *subject, bool *poison)
{
        *poison = false;
        size_t pl = strlen(o->subject_prefix);
        const char *subj_owner = strncmp(subject, o->subject_prefix, pl) == 0 ? subject + pl : "";
        if (id && (id[0] == 'y' || id[0] == 'z')) {
                *poison = true;
                return 0;
        }
        const char *c1 = id ? strchr(id, ':') : NULL, *c2 = id ? strrchr(id, ':') : NULL;
        if (!id || id[0] != 'p' || !c1 || c1 == c2)
                return 0;
        char *end = NULL;
        unsigned long long post = strtoull(id + 1, &end, 10);
        unsigned long long gen = strtoull(c2 + 1, NULL, 10);
        char owner_id[SOAK_ID_LEN + 1];
        size_t olen = (size_t)(c2 - c1 - 1);
        int owner = -1;
        if (end == c1 && olen == SOAK_ID_LEN) {
                memcpy(owner_id, c1 + 1, olen);
                owner_id[olen] = '\0';
                owner = soak_model_owner(o->model, owner_id);
        }
        if (owner < 0 || strcmp(owner_id, subj_owner) != 0 || gen > 0xffffff)
                return 0;
        return soak_key(post, owner, gen) + 1;
}

/* Called locked. A seq seen before with the same id is this consumer's
 * own redelivery (not counted); with another id, the broker reused it. */
static void record(soak_observer *o, natsMsg *m)
{
        jsack_meta meta;
        if (!jsack_parse(natsMsg_GetReply(m), &meta)) {
                o->errors++;
                return;
        }
        const char *subject = natsMsg_GetSubject(m);
        const char *id = NULL;
        if (natsMsgHeader_Get(m, "Nats-Msg-Id", &id) != NATS_OK)
                id = NULL;
        bool poison;
        uint64_t key = parse_key(o, id, subject, &poison);
        bool already;
        mark_seen(o, meta.stream_seq, &already);
        if (already) {
                if (o->seq_key[meta.stream_seq] == key) {
                        o->redelivered++;
                        return;
                }
                o->seq_reused++;
        }
        o->seq_key[meta.stream_seq] = key;
        o->distinct++;
        if (meta.stream_seq > o->max_seq)
                o->max_seq = meta.stream_seq;
        if (poison) {
                o->poison++;
                return;
        }
        if (!key) {
                keep_foreign(o, id, subject);
                return;
        }
        soak_cell *c = soak_map_put(&o->ids, key - 1);
        if (c->copies++ == 0)
                c->first_seq = meta.stream_seq;
}

static void *observer_thread(void *arg)
{
        soak_observer *o = arg;
        natsConnection *nc = NULL;
        pull_sub ps = {0};
        natsMsg *msgs[OBS_BATCH];
        bool bound = false;
        while (!atomic_load(&o->stop)) {
                if (!nc && connect_url(o->url, o->consumer, &nc) < 0) {
                        nc = NULL;
                        nap_ms(OBS_BACKOFF_MS);
                        continue;
                }
                if (!bound) {
                        if (create_consumer(o, nc) < 0 || pull_start(&ps, nc, "_INBOX", o->stream, o->consumer) < 0) {
                                pthread_mutex_lock(&o->mu);
                                o->errors++;
                                pthread_mutex_unlock(&o->mu);
                                pull_stop(&ps);
                                nap_ms(OBS_BACKOFF_MS);
                                continue;
                        }
                        bound = true;
                }
                int n = pull_fetch(&ps, msgs, OBS_BATCH, OBS_EXPIRES_MS, OBS_WAIT_MS);
                if (n == -ENOENT) {
                        pull_stop(&ps); /* lost with a broker restart: make it again */
                        bound = false;
                        continue;
                }
                if (n < 0) {
                        pthread_mutex_lock(&o->mu);
                        o->errors++;
                        snprintf(o->last_error, sizeof o->last_error, "%s", ps.last_error);
                        pthread_mutex_unlock(&o->mu);
                        nap_ms(OBS_BACKOFF_MS);
                        continue;
                }
                if (n == 0)
                        continue;
                pthread_mutex_lock(&o->mu);
                for (int i = 0; i < n; i++)
                        record(o, msgs[i]);
                pthread_mutex_unlock(&o->mu);
                /* Each one acked on its own. With ack_policy all (as
                 * before) a batch lost on its way here (a subscription
                 * made again after a broker restart) was acked by the next
                 * batch's last message and never came back: 1,022 DLV
                 * copies the harness never saw in a 30-minute run on
                 * 2.10.27, all of them in the stream. A lost delivery now
                 * comes back after ack_wait; a lost ack means a
                 * redelivery, recognised by its stream seq. */
                for (int i = 0; i < n; i++) {
                        (void)pull_ack(&ps, msgs[i], JSACK_ACK);
                        natsMsg_Destroy(msgs[i]);
                }
        }
        pull_stop(&ps);
        if (nc) {
                natsConnection_Close(nc);
                natsConnection_Destroy(nc);
        }
        return NULL;
}

int soak_observer_start(soak_observer *o, const soak_model *m, const char *url, const char *stream,
                        const char *consumer, const char *filter, const char *subject_prefix)
{
        memset(o, 0, sizeof *o);
        o->model = m;
        o->url = strdup(url);
        o->stream = strdup(stream);
        o->consumer = strdup(consumer);
        o->filter = strdup(filter);
        o->subject_prefix = strdup(subject_prefix);
        if (!o->url || !o->stream || !o->consumer || !o->filter || !o->subject_prefix)
                return -ENOMEM;
        pthread_mutex_init(&o->mu, NULL);
        soak_map_init(&o->ids);
        atomic_init(&o->stop, false);
        int r = pthread_create(&o->thread, NULL, observer_thread, o);
        if (r != 0)
                return -r;
        atomic_store(&o->running, true);
        return 0;
}

void soak_observer_stop(soak_observer *o)
{
        if (atomic_load(&o->running)) {
                atomic_store(&o->stop, true);
                pthread_join(o->thread, NULL);
                atomic_store(&o->running, false);
        }
}

void soak_observer_fini(soak_observer *o)
{
        if (!o->url)
                return;
        soak_observer_stop(o);
        soak_map_fini(&o->ids);
        free(o->seen);
        free(o->seq_key);
        for (int i = 0; i < SOAK_FOREIGN_KEEP; i++)
                free(o->foreign_ids[i]);
        free(o->url);
        free(o->stream);
        free(o->consumer);
        free(o->filter);
        free(o->subject_prefix);
        pthread_mutex_destroy(&o->mu);
        memset(o, 0, sizeof *o);
}

uint64_t soak_observer_unseen(soak_observer *o, uint64_t first, uint64_t last)
{
        uint64_t n = 0;
        pthread_mutex_lock(&o->mu);
        for (uint64_t s = first ? first : 1; s <= last; s++)
                if (s >= o->seen_cap || !(o->seen[s / 8] & (1u << (s % 8))))
                        n++;
        pthread_mutex_unlock(&o->mu);
        return n;
}

bool soak_observer_saw_seq(soak_observer *o, uint64_t seq)
{
        pthread_mutex_lock(&o->mu);
        bool saw = seq < o->seen_cap && (o->seen[seq / 8] & (1u << (seq % 8)));
        pthread_mutex_unlock(&o->mu);
        return saw;
}

/* ---- presence ---- */

static void *presence_thread(void *arg)
{
        soak_presence *p = arg;
        natsConnection *nc = NULL;
        kv_bucket kv = {0};
        bool have_kv = false;
        while (!atomic_load(&p->stop)) {
                int64_t start = soak_mono_ms();
                if (!nc && connect_url(p->url, "soak-presence", &nc) < 0)
                        nc = NULL;
                if (nc && !have_kv && kv_bucket_init(&kv, nc, p->bucket) == 0) {
                        kv.timeout_ms = PRESENCE_TIMEOUT_MS;
                        have_kv = true;
                }
                int ok = 0;
                for (int o = 0; have_kv && o < p->model->n_owners && !atomic_load(&p->stop); o++) {
                        char value[512];
                        int len = snprintf(value, sizeof value,
                                           "{\"card\":{\"id\":\"%s\",\"name\":\"%s\",\"kind\":\"agent\"},"
                                           "\"status\":\"idle\",\"ts\":%lld}",
                                           p->model->ids[o], p->model->names[o], (long long)wall_ms());
                        ok += kv_put(&kv, p->model->ids[o], value, (size_t)len, NULL) == 0;
                }
                atomic_fetch_add(&p->rounds, 1);
                if (have_kv && ok == p->model->n_owners)
                        atomic_store(&p->last_full_ms, soak_mono_ms());
                else
                        atomic_fetch_add(&p->failures, 1);
                while (!atomic_load(&p->stop) && soak_mono_ms() - start < PRESENCE_PERIOD_MS)
                        nap_ms(20);
        }
        if (have_kv)
                kv_bucket_fini(&kv);
        if (nc) {
                natsConnection_Close(nc);
                natsConnection_Destroy(nc);
        }
        return NULL;
}

int soak_presence_start(soak_presence *p, const soak_model *m, const char *url, const char *bucket)
{
        memset(p, 0, sizeof *p);
        p->model = m;
        p->url = strdup(url);
        p->bucket = strdup(bucket);
        if (!p->url || !p->bucket)
                return -ENOMEM;
        atomic_init(&p->stop, false);
        atomic_init(&p->last_full_ms, 0);
        int r = pthread_create(&p->thread, NULL, presence_thread, p);
        return -r;
}

void soak_presence_stop(soak_presence *p)
{
        if (p->url) {
                atomic_store(&p->stop, true);
                pthread_join(p->thread, NULL);
                free(p->url);
                free(p->bucket);
                p->url = NULL;
        }
}
