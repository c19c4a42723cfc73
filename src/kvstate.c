/* kvstate: per-message KV reads of PROTOCOL §4.3/§4.4/§4.6. */
#include "kvstate.h"

#include "contract_channel.h"
#include "contract_token.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kvstate_init(kvstate *s, natsConnection *nc, const contract_names *n)
{
        memset(s, 0, sizeof *s);
        int r = kv_bucket_init(&s->acl, nc, n->acl_bucket);
        if (r == 0)
                r = kv_bucket_init(&s->members, nc, n->members_bucket);
        if (r == 0)
                r = kv_bucket_init(&s->channels, nc, n->channels_bucket);
        if (r < 0)
                kvstate_fini(s);
        return r;
}

void kvstate_fini(kvstate *s)
{
        if (!s)
                return;
        kv_bucket_fini(&s->acl);
        kv_bucket_fini(&s->members);
        kv_bucket_fini(&s->channels);
}

/* Reads key; 0 with a PUT value in *e, -ENOENT for absent/DEL/PURGE, or a
 * transport error (copied to last_error). */
static int read_put(kvstate *s, kv_bucket *kv, const char *key, kv_entry *e)
{
        int r = kv_get(kv, key, e);
        if (r == 0 && e->op != KV_OP_PUT) {
                kv_entry_fini(e);
                return -ENOENT;
        }
        if (r < 0 && r != -ENOENT)
                snprintf(s->last_error, sizeof s->last_error, "%s", kv->last_error);
        return r;
}

int kvstate_acl(kvstate *s, const char *owner, contract_acl *out, char *why, size_t why_size)
{
        char *key = NULL;
        kv_entry e;
        memset(out, 0, sizeof *out);
        if (contract_token(owner, strlen(owner), &key) < 0) {
                snprintf(why, why_size, "owner is not valid UTF-8");
                return -ENOENT;
        }
        int r = read_put(s, &s->acl, key, &e);
        free(key);
        if (r == -ENOENT)
                snprintf(why, why_size, "no ACL record");
        if (r < 0)
                return r;
        rec_error err;
        char buf[200];
        if (contract_acl_decode(e.value ? e.value : "", e.len, out, &err) != REC_OK) {
                /* §4.3: unreadable -> unknown owner. */
                snprintf(why, why_size, "unreadable ACL record: %s", rec_error_str(&err, buf, sizeof buf));
                kv_entry_fini(&e);
                return -ENOENT;
        }
        kv_entry_fini(&e);
        return 0;
}

int kvstate_member(kvstate *s, const char *channel, const char *owner, contract_member *out, uint64_t *rev)
{
        char *tok = NULL, *key = NULL;
        kv_entry e;
        memset(out, 0, sizeof *out);
        if (contract_token(owner, strlen(owner), &tok) < 0)
                return -ENOENT;
        int r = contract_member_key(channel, tok, &key);
        free(tok);
        if (r < 0)
                return r;
        r = read_put(s, &s->members, key, &e);
        free(key);
        if (r < 0)
                return r;
        if (contract_member_decode(e.value ? e.value : "", e.len, out, NULL) != REC_OK)
                r = -ENOENT; /* §4.4 [hardening]: unreadable = absent */
        else if (rev)
                *rev = e.revision;
        kv_entry_fini(&e);
        return r;
}

void kvstate_members_free(contract_member *m, size_t n)
{
        for (size_t i = 0; m && i < n; i++)
                contract_member_fini(&m[i]);
        free(m);
}

/* The subject pattern that covers every member key of channel: its dotted
 * segments but the last, then '*' for the "<last>/<owner>" token. */
static char *member_pattern(const char *channel)
{
        const char *last_dot = strrchr(channel, '.');
        char *p = NULL;
        if (!last_dot)
                return strdup("*");
        return asprintf(&p, "%.*s.*", (int)(last_dot - channel), channel) < 0 ? NULL : p;
}

int kvstate_members_of(kvstate *s, const char *channel, contract_member **out, size_t *n_out)
{
        char **keys = NULL;
        size_t nkeys = 0, n = 0;
        contract_member *list = NULL;
        *out = NULL;
        *n_out = 0;
        /* An invalid KV key can never be a stored key (§4.2): no members. */
        if (!contract_kv_key_valid(channel))
                return 0;
        char *pattern = member_pattern(channel);
        if (!pattern)
                return -ENOMEM;
        int r = kv_keys_matching(&s->members, pattern, &keys, &nkeys);
        free(pattern);
        if (r < 0) {
                snprintf(s->last_error, sizeof s->last_error, "%s", s->members.last_error);
                return r;
        }
        size_t chlen = strlen(channel);
        for (size_t i = 0; i < nkeys; i++) {
                const char *ch, *ow;
                size_t cl, ol;
                if (!contract_member_key_parse(keys[i], &ch, &cl, &ow, &ol) || cl != chlen ||
                    memcmp(ch, channel, cl) != 0)
                        continue;
                kv_entry e;
                r = read_put(s, &s->members, keys[i], &e);
                if (r == -ENOENT)
                        continue;
                if (r < 0)
                        goto fail;
                contract_member *grown = realloc(list, (n + 1) * sizeof *list);
                if (!grown) {
                        kv_entry_fini(&e);
                        r = -ENOMEM;
                        goto fail;
                }
                list = grown;
                if (contract_member_decode(e.value ? e.value : "", e.len, &list[n], NULL) == REC_OK)
                        n++;
                kv_entry_fini(&e);
        }
        kv_keys_free(keys, nkeys);
        *out = list;
        *n_out = n;
        return 0;
fail:
        kv_keys_free(keys, nkeys);
        kvstate_members_free(list, n);
        return r;
}

/* Class recorded at key, CLASS_UNSET when absent or unreadable. */
static int class_at(kvstate *s, const char *key, contract_class *out)
{
        kv_entry e;
        *out = CLASS_UNSET;
        /* §4.6 [hardening]: a non-concrete or invalid key is "no config". */
        int r = read_put(s, &s->channels, key, &e);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        *out = contract_class_of(e.value, e.len);
        kv_entry_fini(&e);
        return 0;
}

int kvstate_channel_is_durable(kvstate *s, const char *channel)
{
        contract_class cfg = CLASS_UNSET, dflt = CLASS_UNSET;
        int r = 0;
        if (contract_channel_is_concrete(channel))
                r = class_at(s, channel, &cfg);
        if (r == 0)
                r = class_at(s, CONTRACT_DEFAULTS_KEY, &dflt);
        if (r < 0)
                return r;
        return contract_class_is_durable(cfg, dflt) ? 1 : 0;
}
