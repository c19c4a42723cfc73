/* soak_model: the soak's history and the expected set it implies (PROTOCOL
 * §4.4 eligibility, §6.2/§6.3 fan-out, §7 rows 5-6). Pure: no I/O, no
 * daemon code; the contract's rules are written again here from the text,
 * so a shared misreading cannot hide. */
#include "soak.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const soak_channel_names[SOAK_N_CH] = {"dur.a", "dur.b", "dur.c", "live.x", "live.y"};
const bool soak_channel_durable[SOAK_N_CH] = {true, true, true, false, false};

/* Each menu entry as JSON (what the harness writes, §4.3) and as the
 * space-separated patterns the model matches. "dur" covers no channel
 * (§1.3: token counts must be equal); "*.a" covers dur.a only. */
const char *const soak_acl_json[SOAK_N_ACLS] = {
        "[\">\"]",
        "[\"dur.>\",\"live.>\"]",
        "[\"dur.a\",\"live.x\"]",
        "[\"dur.b\",\"dur.c\",\"live.y\"]",
        "[\"*.a\",\"*.x\"]",
        "[\"dur.>\"]",
        "[\"live.>\"]",
        "[]",
        "[\"dur.c\",\"dur\"]",
};
static const char *const acl_patterns[SOAK_N_ACLS] = {
        ">", "dur.> live.>", "dur.a live.x", "dur.b dur.c live.y", "*.a *.x", "dur.>", "live.>", "", "dur.c dur",
};

#define MAX_TOKENS 8

static int split_dots(const char *s, size_t len, char tok[MAX_TOKENS][32])
{
        int n = 0;
        size_t start = 0;
        for (size_t i = 0; i <= len; i++) {
                if (i < len && s[i] != '.')
                        continue;
                if (n == MAX_TOKENS || i - start >= 32)
                        return -1;
                memcpy(tok[n], s + start, i - start);
                tok[n][i - start] = '\0';
                n++;
                start = i + 1;
        }
        return n;
}

/* §1.3 subjectMatches(pattern, name). */
static bool subject_matches(const char *pattern, size_t plen, const char *name)
{
        char pt[MAX_TOKENS][32], nt[MAX_TOKENS][32];
        int np = split_dots(pattern, plen, pt), nn = split_dots(name, strlen(name), nt);
        if (np < 0 || nn < 0)
                return false;
        int i = 0;
        for (; i < np; i++) {
                if (strcmp(pt[i], ">") == 0)
                        return i < nn;
                if (i >= nn)
                        return false;
                if (strcmp(pt[i], "*") != 0 && strcmp(pt[i], nt[i]) != 0)
                        return false;
        }
        return np == nn;
}

bool soak_acl_covers(int acl, int ch)
{
        const char *p = acl_patterns[acl];
        while (*p) {
                size_t len = strcspn(p, " ");
                if (subject_matches(p, len, soak_channel_names[ch]))
                        return true;
                p += len;
                while (*p == ' ')
                        p++;
        }
        return false;
}

void soak_model_init(soak_model *m, int n_owners)
{
        memset(m, 0, sizeof *m);
        m->n_owners = n_owners;
        m->cap_epochs = 64;
        m->acl = calloc(m->cap_epochs, sizeof *m->acl);
        if (!m->acl)
                abort();
}

void soak_model_fini(soak_model *m)
{
        free(m->posts);
        for (int c = 0; c < SOAK_N_CH; c++)
                for (int o = 0; o < SOAK_MAX_OWNERS; o++)
                        free(m->versions[c][o].v);
        free(m->acl);
        memset(m, 0, sizeof *m);
}

void soak_model_next_epoch(soak_model *m)
{
        if (m->epoch + 1 == m->cap_epochs) {
                m->cap_epochs *= 2;
                m->acl = realloc(m->acl, m->cap_epochs * sizeof *m->acl);
                if (!m->acl)
                        abort();
        }
        memcpy(m->acl[m->epoch + 1], m->acl[m->epoch], sizeof m->acl[0]);
        m->epoch++;
}

size_t soak_model_add_post(soak_model *m, const soak_post *p)
{
        if (m->n_posts == m->cap_posts) {
                m->cap_posts = m->cap_posts ? m->cap_posts * 2 : 4096;
                m->posts = realloc(m->posts, m->cap_posts * sizeof *m->posts);
                if (!m->posts)
                        abort();
        }
        m->posts[m->n_posts] = *p;
        return m->n_posts++;
}

void soak_model_add_version(soak_model *m, int ch, int owner, const soak_version *v)
{
        soak_versions *vs = &m->versions[ch][owner];
        if (vs->n == vs->cap) {
                vs->cap = vs->cap ? vs->cap * 2 : 4;
                vs->v = realloc(vs->v, vs->cap * sizeof *vs->v);
                if (!vs->v)
                        abort();
        }
        vs->v[vs->n++] = *v;
}

soak_version *soak_model_latest(soak_model *m, int ch, int owner)
{
        soak_versions *vs = &m->versions[ch][owner];
        return vs->n ? &vs->v[vs->n - 1] : NULL;
}

int soak_model_owner(const soak_model *m, const char *id)
{
        for (int o = 0; o < m->n_owners; o++)
                if (strcmp(m->ids[o], id) == 0)
                        return o;
        return -1;
}

/* §6.3 resolveByName: lowercase, then exactly one roster entry of that
 * name. Names are unique and ASCII here, so ASCII folding is the rule. */
int soak_model_resolve(const soak_model *m, const char *name)
{
        char low[64];
        size_t i = 0;
        for (; name[i] && i + 1 < sizeof low; i++)
                low[i] = (char)tolower((unsigned char)name[i]);
        low[i] = '\0';
        int found = -1;
        for (int o = 0; o < m->n_owners; o++)
                if (strcmp(m->names[o], low) == 0) {
                        if (found >= 0)
                                return -1; /* ambiguous: no copy */
                        found = o;
                }
        return found;
}

void soak_model_expected(const soak_model *m, soak_expect_fn fn, void *arg)
{
        for (size_t i = 0; i < m->n_posts; i++) {
                const soak_post *p = &m->posts[i];
                if (p->flags & POST_POISON)
                        continue;
                bool unknown = p->flags & POST_SEQ_UNKNOWN;
                if (soak_channel_durable[p->ch]) {
                        /* §6.2 + §7 row 6: a record whose interval holds the
                         * seq, under the ACL in force when the reader judged
                         * the entry: the post's epoch, or, for a window copied
                         * by a join's catch-up, the join's epoch (everything
                         * in flight drains before an epoch ends). */
                        for (int o = 0; o < m->n_owners; o++) {
                                if (o == p->sender_owner)
                                        continue;
                                const soak_versions *vs = &m->versions[p->ch][o];
                                for (size_t k = 0; k < vs->n; k++) {
                                        const soak_version *v = &vs->v[k];
                                        if (!unknown && !(p->seq > v->jc && p->seq <= v->lc))
                                                continue;
                                        uint32_t e = p->epoch > v->epoch ? p->epoch : v->epoch;
                                        if (!soak_acl_covers(m->acl[e][o], p->ch))
                                                continue;
                                        fn(arg, soak_key(i, o, v->gen), !unknown && !v->uncertain);
                                }
                        }
                } else {
                        /* §6.3: each resolved mention but the sender, if its
                         * ACL covers the channel (fan-out and reader read the
                         * same ACL within an epoch). */
                        for (int o = 0; o < m->n_owners; o++) {
                                if (!(p->mentions & (1u << o)) || o == p->sender_owner)
                                        continue;
                                if (!soak_acl_covers(m->acl[p->epoch][o], p->ch))
                                        continue;
                                fn(arg, soak_key(i, o, 0), !unknown && !(p->flags & POST_ROSTER_UNSURE));
                        }
                }
        }
}

/* ---- map ---- */

void soak_map_init(soak_map *m)
{
        m->cap = 1024;
        m->n = 0;
        m->cells = calloc(m->cap, sizeof *m->cells);
        if (!m->cells)
                abort();
}

void soak_map_fini(soak_map *m)
{
        free(m->cells);
        memset(m, 0, sizeof *m);
}

static size_t slot_of(const soak_map *m, uint64_t key)
{
        uint64_t h = (key + 1) * 0x9E3779B97F4A7C15ull;
        size_t i = (size_t)(h ^ (h >> 29)) & (m->cap - 1);
        while (m->cells[i].key && m->cells[i].key != key + 1)
                i = (i + 1) & (m->cap - 1);
        return i;
}

soak_cell *soak_map_get(const soak_map *m, uint64_t key)
{
        soak_cell *c = &m->cells[slot_of(m, key)];
        return c->key ? c : NULL;
}

soak_cell *soak_map_put(soak_map *m, uint64_t key)
{
        if ((m->n + 1) * 2 > m->cap) {
                soak_map old = *m;
                m->cap *= 2;
                m->n = 0;
                m->cells = calloc(m->cap, sizeof *m->cells);
                if (!m->cells)
                        abort();
                for (size_t i = 0; i < old.cap; i++)
                        if (old.cells[i].key) {
                                soak_cell *c = &m->cells[slot_of(m, old.cells[i].key - 1)];
                                *c = old.cells[i];
                                m->n++;
                        }
                free(old.cells);
        }
        soak_cell *c = &m->cells[slot_of(m, key)];
        if (!c->key) {
                c->key = key + 1;
                m->n++;
        }
        return c;
}
