/* soak: the randomized, model-checked soak (issue 13). The model half is
 * pure (no I/O): it records what the harness did and what the broker
 * answered (chat seqs from PubAcks, membership records read back, ACLs as
 * written) and computes from that history, by PROTOCOL §6-§8, the exact
 * set of dedup ids every member must hold. The observer half reads DLV and
 * INBOX continuously on its own consumers and counts stored copies by
 * Nats-Msg-Id. It never decides what is expected. */
#pragma once

#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SOAK_ID_LEN 56 /* nkey-shaped ids: token(id) == id (§1.1) */
#define SOAK_MAX_OWNERS 16
#define SOAK_OPEN UINT64_MAX /* a version without leaveCursor */
/* CHAT_<S> keeps 1000 messages per sender-and-channel subject (§2): the
 * soak never puts more than this many on one, so CHAT itself never evicts
 * what the daemon has not read (a documented limit, not a daemon bug). */
#define SOAK_PER_SUBJECT_MAX 900

enum soak_channel { CH_DUR_A, CH_DUR_B, CH_DUR_C, CH_LIVE_X, CH_LIVE_Y, SOAK_N_CH };
extern const char *const soak_channel_names[SOAK_N_CH];
extern const bool soak_channel_durable[SOAK_N_CH];

/* The ACL menu (§4.3 allowSubscribe arrays) an owner's ACL is drawn from. */
#define SOAK_N_ACLS 9
extern const char *const soak_acl_json[SOAK_N_ACLS];
/* channelInAllow(acl, ch) by §1.3 subjectMatches, written here from the
 * contract text (not the daemon's code). */
bool soak_acl_covers(int acl, int ch);

enum {
        POST_POISON = 1,       /* must produce no pair */
        POST_SEQ_UNKNOWN = 2,  /* publish never confirmed: its pairs are optional */
        POST_ROSTER_UNSURE = 4 /* posted while a roster could be rebuilt empty: mentions optional */
};

typedef struct soak_post {
        uint64_t seq;         /* CHAT stream sequence from the PubAck */
        int64_t t_ms;         /* since the run started */
        uint32_t epoch;       /* quiescent epoch it was posted in */
        int16_t sender_owner; /* owner index of the sender, -1: a pool sender */
        uint8_t ch;
        uint8_t flags;
        uint16_t mentions; /* owners resolved from msg.mentions (bit per owner) */
} soak_post;

/* One membership record version of (channel, owner) as read back. */
typedef struct soak_version {
        uint64_t gen, jc, lc; /* lc: SOAK_OPEN while open */
        uint32_t epoch;       /* epoch it was written in */
        int64_t t_ms;
        bool uncertain; /* its join was never answered: pairs optional */
} soak_version;

typedef struct soak_versions {
        soak_version *v;
        size_t n, cap;
} soak_versions;

typedef struct soak_model {
        int n_owners;
        char ids[SOAK_MAX_OWNERS][SOAK_ID_LEN + 1];
        char names[SOAK_MAX_OWNERS][16]; /* presence card.name, unique */
        soak_post *posts;
        size_t n_posts, cap_posts;
        soak_versions versions[SOAK_N_CH][SOAK_MAX_OWNERS];
        uint8_t (*acl)[SOAK_MAX_OWNERS]; /* acl[epoch][owner]: menu index */
        uint32_t epoch, cap_epochs;
} soak_model;

void soak_model_init(soak_model *m, int n_owners);
void soak_model_fini(soak_model *m);
/* Starts the next epoch (a quiescent point): ACLs carry over. */
void soak_model_next_epoch(soak_model *m);
size_t soak_model_add_post(soak_model *m, const soak_post *p);
void soak_model_add_version(soak_model *m, int ch, int owner, const soak_version *v);
soak_version *soak_model_latest(soak_model *m, int ch, int owner); /* NULL: never a record */
int soak_model_owner(const soak_model *m, const char *id);         /* -1: not an owner */
int soak_model_resolve(const soak_model *m, const char *name);     /* §6.3 by lowercased name */

/* A dedup id "p<post>:<owner>:<gen>" as a number. */
static inline uint64_t soak_key(uint64_t post, int owner, uint64_t gen)
{
        return (post << 32) | ((uint64_t)owner << 24) | (gen & 0xffffff);
}
static inline uint64_t soak_key_post(uint64_t k)
{
        return k >> 32;
}
static inline int soak_key_owner(uint64_t k)
{
        return (int)((k >> 24) & 0xff);
}
static inline uint64_t soak_key_gen(uint64_t k)
{
        return k & 0xffffff;
}

/* Calls fn for every pair the model expects: required (must be there
 * exactly once) or optional (at most once). */
typedef void (*soak_expect_fn)(void *arg, uint64_t key, bool required);
void soak_model_expected(const soak_model *m, soak_expect_fn fn, void *arg);

/* ---- a uint64 -> counts map (open addressing) ---- */
typedef struct soak_cell {
        uint64_t key;    /* stored key + 1; 0 = empty */
        uint32_t copies; /* distinct stream seqs holding it */
        uint32_t flags;
        uint64_t first_seq;
} soak_cell;

typedef struct soak_map {
        soak_cell *cells;
        size_t cap, n;
} soak_map;

void soak_map_init(soak_map *m);
void soak_map_fini(soak_map *m);
soak_cell *soak_map_get(const soak_map *m, uint64_t key);
soak_cell *soak_map_put(soak_map *m, uint64_t key); /* found or inserted (zeroed) */

/* ---- the observer: a harness consumer on DLV_<S> or INBOX_<S> ---- */
#define SOAK_FOREIGN_KEEP 32

typedef struct soak_observer {
        const soak_model *model;                                 /* owners only (fixed before start) */
        char *url, *stream, *consumer, *filter, *subject_prefix; /* owned */
        pthread_t thread;
        atomic_bool stop, running;
        pthread_mutex_t mu; /* guards everything below */
        soak_map ids;       /* key -> distinct stored copies */
        uint8_t *seen;      /* bitmap of stream seqs seen */
        uint64_t *seq_key;  /* per seen seq: its dedup key + 1 (0: not a "p" id) */
        uint64_t seen_cap;  /* bits */
        uint64_t distinct, redelivered, max_seq;
        /* A seq seen again with another id: the broker reused it (a
         * SIGKILLed nats-server can lose the tail of a stream it had
         * acknowledged, and then gives its seqs to new messages). */
        uint64_t seq_reused;
        uint64_t poison;  /* ids of the harness's own poison ("y…"/"z…") */
        uint64_t foreign; /* ids not of the "p<post>:<owner>:<gen>" shape or on another owner's subject */
        char *foreign_ids[SOAK_FOREIGN_KEEP];
        uint64_t errors;
        char last_error[256];
} soak_observer;

/* Creates its durable (ack all, so a redelivery is seen as such by its
 * stream seq) and starts the thread. 0 or -errno. */
int soak_observer_start(soak_observer *o, const soak_model *m, const char *url, const char *stream,
                        const char *consumer, const char *filter, const char *subject_prefix);
void soak_observer_stop(soak_observer *o);
/* Frees what the observer recorded (after stop). */
void soak_observer_fini(soak_observer *o);
/* Stream seqs in [first, last] never seen (gone before the harness read them). */
uint64_t soak_observer_unseen(soak_observer *o, uint64_t first, uint64_t last);
bool soak_observer_saw_seq(soak_observer *o, uint64_t seq);

/* ---- presence heartbeats, as agents send them every 2 s (§4.7) ---- */
typedef struct soak_presence {
        const soak_model *model;
        char *url, *bucket;
        pthread_t thread;
        atomic_bool stop;
        atomic_llong last_full_ms; /* monotonic ms of the last round that wrote every key */
        atomic_ullong rounds, failures;
} soak_presence;

int soak_presence_start(soak_presence *p, const soak_model *m, const char *url, const char *bucket);
void soak_presence_stop(soak_presence *p);

int64_t soak_mono_ms(void);
