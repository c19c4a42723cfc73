/* denials: the broker's permission violations, bounded and counted (see
 * denials.h). */
#include "denials.h"

#include "log.h"

#include <stdio.h>
#include <string.h>

#define VIOLATION_PREFIX "Permissions Violation for "

void denials_init(denials *d)
{
        memset(d, 0, sizeof *d);
        pthread_mutex_init(&d->lock, NULL);
        atomic_init(&d->last_ms, 0);
}

void denials_fini(denials *d)
{
        pthread_mutex_destroy(&d->lock);
}

const char *denial_op_verb(denial_op op)
{
        switch (op) {
        case DENIAL_PUBLISH: return "publish";
        case DENIAL_SUBSCRIBE: return "subscribe";
        case DENIAL_REPLY: return "publish with reply";
        case DENIAL_OTHER: break;
        }
        return "use";
}

bool denials_parse(const char *text, denial_op *op, char *subject, size_t size)
{
        static const struct {
                const char *words;
                denial_op op;
        } kinds[] = {
                /* Longest first: "Publish with Reply of" before "Publish to". */
                {"Publish with Reply of ", DENIAL_REPLY},
                {"Publish to ", DENIAL_PUBLISH},
                {"Subscription to ", DENIAL_SUBSCRIBE},
        };
        if (!text || size == 0)
                return false;
        const char *p = strstr(text, VIOLATION_PREFIX);
        if (!p)
                return false;
        p += strlen(VIOLATION_PREFIX);
        size_t k = 0;
        for (; k < sizeof kinds / sizeof *kinds; k++)
                if (strncmp(p, kinds[k].words, strlen(kinds[k].words)) == 0)
                        break;
        if (k == sizeof kinds / sizeof *kinds)
                return false;
        p += strlen(kinds[k].words);
        /* Go's %q quotes the subject; subjects hold no '"' or spaces. */
        size_t len;
        if (*p == '"') {
                p++;
                const char *end = strchr(p, '"');
                if (!end)
                        return false;
                len = (size_t)(end - p);
        } else {
                len = strcspn(p, " \t\r\n,'");
        }
        if (len == 0 || len >= size)
                return false;
        memcpy(subject, p, len);
        subject[len] = '\0';
        *op = kinds[k].op;
        return true;
}

denial_seen denials_note(denials *d, denial_op op, const char *subject, int64_t now_ms, uint64_t *count)
{
        denial_seen seen;
        uint64_t c;
        pthread_mutex_lock(&d->lock);
        d->total++;
        size_t i = 0;
        for (; i < d->n; i++)
                if (d->table[i].op == op && strcmp(d->table[i].subject, subject) == 0)
                        break;
        if (i < d->n) {
                c = ++d->table[i].count;
                d->table[i].last_ms = now_ms;
                seen = DENIAL_REPEAT;
        } else if (d->n < DENIALS_MAX_SUBJECTS) {
                denial *e = &d->table[d->n++];
                e->op = op;
                snprintf(e->subject, sizeof e->subject, "%s", subject);
                e->count = c = 1;
                e->first_ms = e->last_ms = now_ms;
                seen = DENIAL_FIRST;
        } else {
                c = ++d->untracked;
                seen = c == 1 ? DENIAL_TABLE_FULL : DENIAL_UNTRACKED;
        }
        pthread_mutex_unlock(&d->lock);
        atomic_store(&d->last_ms, now_ms);
        if (count)
                *count = c;
        return seen;
}

bool denials_publish_denied_since(denials *d, const char *subject, int64_t since_ms)
{
        /* The common case, no denial at all, takes no lock. */
        if (atomic_load(&d->last_ms) < since_ms || atomic_load(&d->last_ms) == 0)
                return false;
        bool denied = false;
        pthread_mutex_lock(&d->lock);
        for (size_t i = 0; i < d->n && !denied; i++)
                denied = d->table[i].op == DENIAL_PUBLISH && d->table[i].last_ms >= since_ms &&
                         strcmp(d->table[i].subject, subject) == 0;
        /* Past the table nothing is known per subject: assume it was. */
        if (!denied && d->untracked > 0)
                denied = true;
        pthread_mutex_unlock(&d->lock);
        return denied;
}

json_t *denials_json(denials *d)
{
        json_t *subjects = json_array();
        pthread_mutex_lock(&d->lock);
        json_t *doc = json_pack("{s:I, s:I}", "total", (json_int_t)d->total, "untracked", (json_int_t)d->untracked);
        for (size_t i = 0; i < d->n; i++)
                json_array_append_new(subjects,
                                      json_pack("{s:s, s:s, s:I}", "op", denial_op_verb(d->table[i].op), "subject",
                                                d->table[i].subject, "count", (json_int_t)d->table[i].count));
        pthread_mutex_unlock(&d->lock);
        if (doc)
                json_object_set_new(doc, "subjects", subjects);
        else
                json_decref(subjects);
        return doc;
}

denial_seen denials_report(denials *d, const char *text, int64_t now_ms, denial_op *op, char *subject, size_t size)
{
        if (!denials_parse(text, op, subject, size)) {
                *op = DENIAL_OTHER;
                snprintf(subject, size, "%s", text && *text ? text : "(no text)");
        }
        denial_seen seen = denials_note(d, *op, subject, now_ms, NULL);
        if (seen == DENIAL_FIRST)
                log_error("! delivery endpoint: NATS permission denied: cannot %s \"%s\" — check this endpoint's "
                          "ACLs (a denied peer looks \"absent\" rather than blocked); the delivery credential needs "
                          "PROTOCOL §11.3's grants. Repeats on this subject are counted, not logged",
                          denial_op_verb(*op), subject);
        else if (seen == DENIAL_TABLE_FULL)
                log_error("! delivery endpoint: NATS permission denied on more than %d distinct subjects (the latest: "
                          "cannot %s \"%s\"); further subjects are counted, not logged",
                          DENIALS_MAX_SUBJECTS, denial_op_verb(*op), subject);
        return seen;
}

int64_t denials_retry_delay_ms(uint64_t delivered, uint64_t key)
{
        int64_t delay = DENIALS_RETRY_MIN_MS;
        for (uint64_t i = 1; i < delivered && delay < DENIALS_RETRY_MAX_MS; i++)
                delay *= 2;
        if (delay > DENIALS_RETRY_MAX_MS)
                delay = DENIALS_RETRY_MAX_MS;
        /* Jitter without shared random state: a multiplicative hash of the
         * key, so entries refused together do not come back together. */
        uint64_t h = (key + delivered) * 0x9E3779B97F4A7C15ULL;
        return delay - (int64_t)((h >> 33) % (uint64_t)(delay / 5 + 1));
}
