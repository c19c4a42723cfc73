/* denials: the broker's permission violations (PROTOCOL §10.3, §11.3), as
 * cnats reports them on its callback thread. Each distinct (operation,
 * subject) is remembered in a small bounded table so the daemon logs it
 * once and counts the repeats, and so a worker whose publish got no PubAck
 * can tell "refused by the broker's permissions" from a plain timeout.
 * Thread-safe; the parser is pure. It never retries or acts by itself. */
#pragma once

#include "contract_constants.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DENIALS_MAX_SUBJECTS 64
#define DENIALS_SUBJECT_MAX 256

typedef enum {
        DENIAL_PUBLISH,   /* "Publish to" */
        DENIAL_SUBSCRIBE, /* "Subscription to" */
        DENIAL_REPLY,     /* "Publish with Reply of" */
        DENIAL_OTHER,     /* a text denials_parse does not know: kept whole */
} denial_op;

typedef struct denial {
        denial_op op;
        char subject[DENIALS_SUBJECT_MAX];
        uint64_t count;
        int64_t first_ms, last_ms; /* monotonic */
} denial;

typedef struct denials {
        pthread_mutex_t lock;
        denial table[DENIALS_MAX_SUBJECTS];
        size_t n;
        uint64_t total;       /* every violation, tracked or not */
        uint64_t untracked;   /* violations on subjects past the table */
        atomic_llong last_ms; /* monotonic ms of the latest one; 0: none */
} denials;

void denials_init(denials *d);
void denials_fini(denials *d);

/* Reads nats-server's text ("Permissions Violation for Publish to
 * \"<subject>\"", "... for Subscription to \"<subject>\"[ using queue …]",
 * "... for Publish with Reply of \"<subject>\"", quotes optional). False
 * if text is not a permissions violation it knows. */
bool denials_parse(const char *text, denial_op *op, char *subject, size_t size);

/* "publish", "subscribe", "publish with reply", "use" (PROTOCOL §10.3
 * wording: "cannot <verb> \"<subject>\""). */
const char *denial_op_verb(denial_op op);

typedef enum {
        DENIAL_FIRST,      /* first time for this subject: log it */
        DENIAL_REPEAT,     /* counted */
        DENIAL_TABLE_FULL, /* a new subject with the table full: log that once */
        DENIAL_UNTRACKED,  /* counted in untracked */
} denial_seen;

/* Records one violation at now_ms. *count (may be NULL) gets the subject's
 * count so far (including this one), or the untracked count. */
denial_seen denials_note(denials *d, denial_op op, const char *subject, int64_t now_ms, uint64_t *count);

/* One violation as cnats reported it (text may be NULL), recorded and
 * logged the way PROTOCOL §10.3 names the line: once per distinct
 * subject (a refused publish gets no answer, so its sender retries on its
 * own schedule and would repeat the line), once when the table fills; the
 * repeats are counted. *op and subject get what was recorded. */
denial_seen denials_report(denials *d, const char *text, int64_t now_ms, denial_op *op, char *subject, size_t size);

/* The retry delay of work whose publish was refused for permissions: only
 * an operator fixes the credential, so retries back off from
 * DENIALS_RETRY_MIN_MS doubling per delivery to DENIALS_RETRY_MAX_MS,
 * spread by up to 20 % jitter derived from key (e.g. the stream seq). */
#define DENIALS_RETRY_MIN_MS CONTRACT_NAK_DELAY_MS
#define DENIALS_RETRY_MAX_MS 30000
int64_t denials_retry_delay_ms(uint64_t delivered, uint64_t key);

/* True if a publish to subject was refused at or after since_ms. */
bool denials_publish_denied_since(denials *d, const char *subject, int64_t since_ms);

/* {"total":N,"untracked":N,"subjects":[{"op":…,"subject":…,"count":N}]}
 * (owned). */
json_t *denials_json(denials *d);
