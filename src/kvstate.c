/* kvstate: the control service's fresh ACL read (PROTOCOL §4.3). */
#include "kvstate.h"

#include "contract_token.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kvstate_init(kvstate *s, natsConnection *nc, const contract_names *n)
{
        memset(s, 0, sizeof *s);
        int r = kv_bucket_init(&s->acl, nc, n->acl_bucket);
        if (r < 0)
                kvstate_fini(s);
        return r;
}

void kvstate_fini(kvstate *s)
{
        if (!s)
                return;
        kv_bucket_fini(&s->acl);
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
