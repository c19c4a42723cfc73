/* ctl_acl: "acl show|set|grant|revoke" (the read-ACL records of PROTOCOL
 * §4.3, written as the provisioner writes them) and "members list" (§4.4
 * records, listed the permission-safe way of §4.2). */
#include "contract_channel.h"
#include "contract_constants.h"
#include "contract_record.h"
#include "contract_token.h"
#include "ctl.h"
#include "kv.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Concurrent writers are rare (the provisioner); retry the CAS a few times. */

typedef struct acl_state {
        bool present;
        uint64_t kv_revision;
        contract_acl acl;
} acl_state;

/* Reads the ACL of key. Returns 0 (present or not), or a negative errno. */
static int acl_read(kv_bucket *kv, const char *key, acl_state *st, char *why, size_t why_len)
{
        kv_entry e;
        memset(st, 0, sizeof *st);
        int r = kv_get(kv, key, &e);
        if (r == -ENOENT)
                return 0;
        if (r < 0) {
                snprintf(why, why_len, "%s", kv->last_error);
                return r;
        }
        st->kv_revision = e.revision;
        if (e.op == KV_OP_PUT) {
                /* §4.3: an unreadable record is an unknown owner. */
                if (!contract_acl_read(e.value, e.len, &st->acl, why, why_len)) {
                        kv_entry_fini(&e);
                        return -EBADMSG;
                }
                st->present = true;
        }
        kv_entry_fini(&e);
        return 0;
}

static void print_acl(const ctl_ctx *c, const char *owner, const char *key, const acl_state *st)
{
        if (c->json) {
                json_t *allow = json_array();
                for (size_t i = 0; i < st->acl.n_allow; i++)
                        json_array_append_new(allow, json_string(st->acl.allow[i]));
                json_t *j = json_pack("{s:s, s:s, s:s, s:b, s:o}", "space", c->space, "owner", owner, "key", key,
                                      "present", st->present, "allowSubscribe", allow);
                if (st->present) {
                        json_object_set_new(j, "kv_revision", json_integer((json_int_t)st->kv_revision));
                        if (st->acl.has_revision)
                                json_object_set_new(j, "revision", json_integer(st->acl.revision));
                        if (st->acl.has_updated_at)
                                json_object_set_new(j, "updatedAt", json_integer(st->acl.updated_at));
                }
                ctl_print_json(j);
                return;
        }
        if (!st->present) {
                printf("%s: no ACL record (unknown owner: readers defer its entries, joins are refused)\n", owner);
                return;
        }
        printf("%s: [", owner);
        for (size_t i = 0; i < st->acl.n_allow; i++)
                printf("%s%s", i ? ", " : "", st->acl.allow[i]);
        printf("]");
        if (st->acl.has_revision)
                printf(" revision=%" PRId64, st->acl.revision);
        if (st->acl.ignored)
                printf(" (%zu non-string elements ignored)", st->acl.ignored);
        printf("\n");
}

/* Builds the next allow list for verb from cur and the command's patterns.
 * *out is an owned array of borrowed strings (free only the array). */
static int next_allow(const char *verb, const contract_acl *cur, char **patterns, int n, const char ***out,
                      size_t *n_out)
{
        size_t cap = cur->n_allow + (size_t)n + 1, k = 0;
        const char **next = calloc(cap, sizeof *next);
        if (!next)
                return -ENOMEM;
        if (strcmp(verb, "set") != 0)
                for (size_t i = 0; i < cur->n_allow; i++) {
                        bool drop = false;
                        for (int j = 0; strcmp(verb, "revoke") == 0 && j < n; j++)
                                drop |= strcmp(cur->allow[i], patterns[j]) == 0;
                        if (!drop)
                                next[k++] = cur->allow[i];
                }
        if (strcmp(verb, "revoke") != 0)
                for (int j = 0; j < n; j++) {
                        bool dup = false;
                        for (size_t i = 0; i < k; i++)
                                dup |= strcmp(next[i], patterns[j]) == 0;
                        if (!dup)
                                next[k++] = patterns[j];
                }
        *out = next;
        *n_out = k;
        return 0;
}

static int acl_write(ctl_ctx *c, kv_bucket *kv, const char *verb, const char *owner, const char *key)
{
        char why[600] = "";
        for (int attempt = 0; attempt < CONTRACT_CAS_ATTEMPTS; attempt++) {
                acl_state st;
                int r = acl_read(kv, key, &st, why, sizeof why);
                if (r < 0 && r != -EBADMSG) {
                        fprintf(stderr, "cotal-deliveryctl: Failed to read ACL of %s: %s\n", owner, why);
                        return CTL_EXIT_FAILURE;
                }
                if (!st.present && strcmp(verb, "revoke") == 0) {
                        fprintf(stderr, "cotal-deliveryctl: %s has no ACL record to revoke from\n", owner);
                        contract_acl_fini(&st.acl);
                        return CTL_EXIT_ABSENT;
                }
                const char **allow = NULL;
                size_t n = 0;
                if (next_allow(verb, &st.acl, c->args + 1, c->n_args - 1, &allow, &n) < 0) {
                        contract_acl_fini(&st.acl);
                        return CTL_EXIT_FAILURE;
                }
                /* §4.3: revision is 1 on first write, +1 per rewrite. */
                contract_acl next = {
                        .allow = (char **)allow,
                        .n_allow = n,
                        .has_revision = true,
                        .revision = st.present && st.acl.has_revision ? st.acl.revision + 1 : 1,
                        .has_updated_at = true,
                        .updated_at = ctl_now_ms(),
                };
                char *value = NULL;
                r = contract_acl_encode(&next, &value);
                free(allow);
                contract_acl_fini(&st.acl);
                if (r < 0)
                        return CTL_EXIT_FAILURE;
                uint64_t rev = 0;
                if (st.kv_revision == 0)
                        r = kv_create(kv, key, value, strlen(value), &rev);
                else
                        r = kv_update(kv, key, value, strlen(value), st.kv_revision, &rev);
                free(value);
                if (r == 0) {
                        acl_state now;
                        if (acl_read(kv, key, &now, why, sizeof why) == 0)
                                print_acl(c, owner, key, &now);
                        contract_acl_fini(&now.acl);
                        return CTL_EXIT_OK;
                }
                if (r != -ESTALE && r != -EEXIST) {
                        fprintf(stderr, "cotal-deliveryctl: Failed to write ACL of %s: %s\n", owner, kv->last_error);
                        return CTL_EXIT_FAILURE;
                }
        }
        fprintf(stderr, "cotal-deliveryctl: ACL of %s changed concurrently %d times; giving up\n", owner,
                CONTRACT_CAS_ATTEMPTS);
        return CTL_EXIT_CONFLICT;
}

int ctl_acl(ctl_ctx *c, const char *verb)
{
        const char *owner = c->args[0];
        char *key = NULL;
        kv_bucket kv;

        /* §11.2 item 3: every ACL entry must pass assertValidChannel. */
        for (int i = 1; i < c->n_args; i++)
                if (contract_channel_check(c->args[i], NULL, NULL) != CHANNEL_VALID) {
                        fprintf(stderr,
                                "cotal-deliveryctl: invalid channel pattern \"%s\" (segments are "
                                "[A-Za-z0-9_-]+, '*', or a final '>')\n",
                                c->args[i]);
                        return CTL_EXIT_USAGE;
                }
        /* §4.3: the key is token(owner). */
        if (contract_token(owner, strlen(owner), &key) < 0) {
                fprintf(stderr, "cotal-deliveryctl: owner \"%s\" is not valid UTF-8\n", owner);
                return CTL_EXIT_USAGE;
        }
        int code = CTL_EXIT_OK;
        int r = kv_bucket_init(&kv, c->nc, c->names.acl_bucket);
        if (r < 0) {
                free(key);
                return CTL_EXIT_FAILURE;
        }
        kv.timeout_ms = c->timeout_ms;
        if (strcmp(verb, "show") == 0) {
                acl_state st;
                char why[600];
                r = acl_read(&kv, key, &st, why, sizeof why);
                if (r < 0) {
                        fprintf(stderr, "cotal-deliveryctl: Failed to read ACL of %s: %s\n", owner, why);
                        code = CTL_EXIT_FAILURE;
                } else {
                        print_acl(c, owner, key, &st);
                        code = st.present ? CTL_EXIT_OK : CTL_EXIT_ABSENT;
                }
                contract_acl_fini(&st.acl);
        } else {
                code = acl_write(c, &kv, verb, owner, key);
        }
        kv_bucket_fini(&kv);
        free(key);
        return code;
}

static void print_member(const ctl_ctx *c, const char *key, uint64_t rev, const contract_member *m, const char *error)
{
        if (c->json) {
                json_t *j = json_pack("{s:s, s:I}", "key", key, "kv_revision", (json_int_t)rev);
                if (error) {
                        json_object_set_new(j, "error", json_string(error));
                } else {
                        char *value = NULL;
                        if (contract_member_encode(m, &value) == 0)
                                json_object_set_new(j, "record", json_loads(value, 0, NULL));
                        free(value);
                }
                ctl_print_json(j);
                return;
        }
        if (error) {
                printf("%-24s unreadable: %s\n", key, error);
                return;
        }
        char leave[24] = "-";
        if (m->has_leave_cursor)
                snprintf(leave, sizeof leave, "%" PRIu64, m->leave_cursor);
        printf("%-20s %-56s %-15s gen=%-4" PRIu64 " join=%-8" PRIu64 " leave=%-8s activated=%s\n",
               m->channel ? m->channel : "-", m->owner, m->state_raw ? m->state_raw : "-", m->generation,
               m->join_cursor, leave,
               m->activated == MEMBER_ACTIVATED_TRUE    ? "true"
               : m->activated == MEMBER_ACTIVATED_FALSE ? "false"
                                                        : "-");
}

static int key_cmp(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

int ctl_members_list(ctl_ctx *c)
{
        kv_bucket kv;
        char **keys = NULL;
        size_t n = 0, shown = 0;
        int code = CTL_EXIT_OK;

        int r = kv_bucket_init(&kv, c->nc, c->names.members_bucket);
        if (r < 0)
                return CTL_EXIT_FAILURE;
        kv.timeout_ms = c->timeout_ms;
        r = kv_keys(&kv, &keys, &n);
        if (r < 0) {
                fprintf(stderr, "cotal-deliveryctl: Failed to list %s: %s\n", c->names.members_bucket, kv.last_error);
                kv_bucket_fini(&kv);
                return CTL_EXIT_FAILURE;
        }
        qsort(keys, n, sizeof *keys, key_cmp);
        for (size_t i = 0; i < n; i++) {
                const char *ch, *ow;
                size_t chl, owl;
                /* §4.4 / §6.4: compare the key's parts exactly, never by prefix. */
                if (!contract_member_key_parse(keys[i], &ch, &chl, &ow, &owl))
                        continue;
                if (c->channel && (strlen(c->channel) != chl || memcmp(c->channel, ch, chl) != 0))
                        continue;
                if (c->owner && (strlen(c->owner) != owl || memcmp(c->owner, ow, owl) != 0))
                        continue;
                kv_entry e;
                r = kv_get(&kv, keys[i], &e);
                if (r == -ENOENT)
                        continue;
                if (r < 0) {
                        fprintf(stderr, "cotal-deliveryctl: Failed to read %s: %s\n", keys[i], kv.last_error);
                        code = CTL_EXIT_FAILURE;
                        break;
                }
                if (e.op == KV_OP_PUT) {
                        contract_member m;
                        rec_error err;
                        char buf[200];
                        if (contract_member_decode(e.value ? e.value : "", e.len, &m, &err) == REC_OK)
                                print_member(c, keys[i], e.revision, &m, NULL);
                        else
                                print_member(c, keys[i], e.revision, NULL, rec_error_str(&err, buf, sizeof buf));
                        contract_member_fini(&m);
                        shown++;
                }
                kv_entry_fini(&e);
        }
        if (!c->json && code == CTL_EXIT_OK)
                printf("%zu membership record%s\n", shown, shown == 1 ? "" : "s");
        kv_keys_free(keys, n);
        kv_bucket_fini(&kv);
        return code;
}
