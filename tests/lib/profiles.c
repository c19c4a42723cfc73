/* profiles: PROTOCOL §11.3 / §11.4 grants as jwt_user_perms (see
 * profiles.h). The lists are written out in the contract's order so a
 * reader can hold them side by side. */
#include "profiles.h"

#include "broker.h"
#include "testutil.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((format(printf, 3, 4))) static void add(char **list, size_t *n, const char *fmt, ...)
{
        ck_assert_msg(*n < PROFILE_MAX_SUBJECTS, "profile: more than %d subjects", PROFILE_MAX_SUBJECTS);
        va_list ap;
        va_start(ap, fmt);
        char *s = NULL;
        int r = vasprintf(&s, fmt, ap);
        va_end(ap);
        ck_assert_msg(r > 0, "profile: out of memory");
        list[(*n)++] = s;
        list[*n] = NULL;
}

static void bind_perms(profile *p)
{
        p->perms.pub_allow = (const char *const *)p->pub_allow;
        p->perms.pub_deny = p->n_pub_deny ? (const char *const *)p->pub_deny : NULL;
        p->perms.sub_allow = (const char *const *)p->sub_allow;
        p->perms.sub_deny = NULL;
}

void profile_delivery(profile *p, const char *s, const char *d)
{
        memset(p, 0, sizeof *p);
        char **a = p->pub_allow;
        size_t *n = &p->n_pub_allow;
        add(a, n, "$JS.API.INFO");
        add(a, n, "$JS.API.STREAM.INFO.CHAT_%s", s);
        add(a, n, "$JS.API.STREAM.INFO.INBOX_%s", s);
        add(a, n, "$JS.API.STREAM.INFO.DLV_%s", s);
        add(a, n, "$JS.API.CONSUMER.CREATE.CHAT_%s.>", s);
        add(a, n, "$JS.API.CONSUMER.DURABLE.CREATE.CHAT_%s.>", s);
        add(a, n, "$JS.API.CONSUMER.INFO.CHAT_%s.>", s);
        add(a, n, "$JS.API.CONSUMER.MSG.NEXT.CHAT_%s.>", s);
        add(a, n, "$JS.API.CONSUMER.DELETE.CHAT_%s.>", s);
        add(a, n, "$JS.ACK.CHAT_%s.>", s);
        add(a, n, "$JS.API.CONSUMER.CREATE.INBOX_%s.reader.>", s);
        add(a, n, "$JS.API.CONSUMER.DURABLE.CREATE.INBOX_%s.reader", s);
        add(a, n, "$JS.API.CONSUMER.INFO.INBOX_%s.reader", s);
        add(a, n, "$JS.API.CONSUMER.MSG.NEXT.INBOX_%s.reader", s);
        add(a, n, "$JS.API.CONSUMER.DELETE.INBOX_%s.reader", s);
        add(a, n, "$JS.ACK.INBOX_%s.reader.>", s);
        add(a, n, "$JS.FC.>");
        static const char *const buckets[] = {"presence", "channels", "members", "acl"};
        for (size_t i = 0; i < sizeof buckets / sizeof *buckets; i++) {
                add(a, n, "$JS.API.STREAM.INFO.KV_cotal_%s_%s", buckets[i], s);
                add(a, n, "$JS.API.STREAM.MSG.GET.KV_cotal_%s_%s", buckets[i], s);
                add(a, n, "$JS.API.CONSUMER.CREATE.KV_cotal_%s_%s.>", buckets[i], s);
                add(a, n, "$JS.API.CONSUMER.INFO.KV_cotal_%s_%s.>", buckets[i], s);
                add(a, n, "$JS.API.CONSUMER.DELETE.KV_cotal_%s_%s.>", buckets[i], s);
        }
        add(a, n, "$KV.cotal_members_%s.>", s);
        add(a, n, "$JS.API.STREAM.INFO.KV_cotal_delivery_%s", s);
        add(a, n, "$JS.API.STREAM.MSG.GET.KV_cotal_delivery_%s", s);
        add(a, n, "$KV.cotal_delivery_%s.lease.*", s);
        add(a, n, "cotal.%s.dinbox.*", s);
        add(a, n, "cotal.%s.dlv.*", s);
        add(a, n, "cotal.%s.ctl.delivery.*.reply.>", s);
        add(p->sub_allow, &p->n_sub_allow, "_INBOX_%s.>", d);
        add(p->sub_allow, &p->n_sub_allow, "cotal.%s.ctl.delivery.*", s);
        bind_perms(p);
}

void profile_agent(profile *p, const char *s, const char *id, const char *const *allow_subscribe,
                   const char *const *allow_publish, const char *role, bool spawn)
{
        memset(p, 0, sizeof *p);
        add(p->sub_allow, &p->n_sub_allow, "_INBOX_%s.>", id);
        add(p->sub_allow, &p->n_sub_allow, "cotal.%s.ctl.delivery.%s.>", s, id);
        for (size_t i = 0; allow_subscribe && allow_subscribe[i]; i++)
                add(p->sub_allow, &p->n_sub_allow, "cotal.%s.chat.*.%s", s, allow_subscribe[i]);

        char **a = p->pub_allow;
        size_t *n = &p->n_pub_allow;
        for (size_t i = 0; allow_publish && allow_publish[i]; i++)
                add(a, n, "cotal.%s.chat.%s.%s", s, id, allow_publish[i]);
        add(a, n, "cotal.%s.inst.*.%s", s, id);
        add(a, n, "cotal.%s.svc.*.%s", s, id);
        add(a, n, "cotal.%s.ctl.self.%s", s, id);
        add(a, n, "cotal.%s.ctl.delivery.%s", s, id);
        if (spawn)
                add(a, n, "cotal.%s.ctl.manager.%s", s, id);
        add(a, n, "$JS.API.INFO");
        add(a, n, "$JS.API.STREAM.INFO.CHAT_%s", s);
        add(a, n, "$JS.API.STREAM.INFO.KV_cotal_presence_%s", s);
        add(a, n, "$JS.API.STREAM.INFO.KV_cotal_channels_%s", s);
        for (size_t i = 0; allow_subscribe && allow_subscribe[i]; i++)
                add(a, n, "$JS.API.CONSUMER.CREATE.CHAT_%s.chathist_%s.cotal.%s.chat.*.%s", s, id, s,
                    allow_subscribe[i]);
        add(a, n, "$JS.API.CONSUMER.INFO.CHAT_%s.chathist_%s", s, id);
        add(a, n, "$JS.API.CONSUMER.MSG.NEXT.CHAT_%s.chathist_%s", s, id);
        add(a, n, "$JS.API.CONSUMER.DELETE.CHAT_%s.chathist_%s", s, id);
        add(a, n, "$JS.API.CONSUMER.INFO.DM_%s.dm_%s", s, id);
        add(a, n, "$JS.API.CONSUMER.MSG.NEXT.DM_%s.dm_%s", s, id);
        add(a, n, "$JS.ACK.DM_%s.dm_%s.>", s, id);
        add(a, n, "$JS.API.CONSUMER.INFO.DLV_%s.dlv_%s", s, id);
        add(a, n, "$JS.API.CONSUMER.MSG.NEXT.DLV_%s.dlv_%s", s, id);
        add(a, n, "$JS.ACK.DLV_%s.dlv_%s.>", s, id);
        add(a, n, "$JS.API.CONSUMER.CREATE.KV_cotal_presence_%s.>", s);
        add(a, n, "$JS.API.CONSUMER.INFO.KV_cotal_presence_%s.>", s);
        add(a, n, "$JS.FC.>");
        add(a, n, "$KV.cotal_presence_%s.%s", s, id);
        add(a, n, "$JS.API.STREAM.MSG.GET.KV_cotal_channels_%s", s);
        add(a, n, "$JS.API.CONSUMER.CREATE.KV_cotal_channels_%s.>", s);
        add(a, n, "$JS.API.CONSUMER.INFO.KV_cotal_channels_%s.>", s);
        add(a, n, "$JS.API.STREAM.INFO.KV_cotal_delivery_%s", s);
        add(a, n, "$JS.API.STREAM.MSG.GET.KV_cotal_delivery_%s", s);
        if (role) {
                add(a, n, "$JS.API.CONSUMER.INFO.TASK_%s.svc_%s", s, role);
                add(a, n, "$JS.API.CONSUMER.MSG.NEXT.TASK_%s.svc_%s", s, role);
                add(a, n, "$JS.ACK.TASK_%s.svc_%s.>", s, role);
        }
        static const char *const denied[] = {"DM", "TASK", "DLV"};
        for (size_t i = 0; i < sizeof denied / sizeof *denied; i++) {
                add(p->pub_deny, &p->n_pub_deny, "$JS.API.CONSUMER.CREATE.%s_%s", denied[i], s);
                add(p->pub_deny, &p->n_pub_deny, "$JS.API.CONSUMER.CREATE.%s_%s.>", denied[i], s);
                add(p->pub_deny, &p->n_pub_deny, "$JS.API.CONSUMER.DURABLE.CREATE.%s_%s.>", denied[i], s);
        }
        bind_perms(p);
}

bool profile_drop_pub(profile *p, const char *subject)
{
        for (size_t i = 0; i < p->n_pub_allow; i++)
                if (strcmp(p->pub_allow[i], subject) == 0) {
                        free(p->pub_allow[i]);
                        memmove(&p->pub_allow[i], &p->pub_allow[i + 1], (p->n_pub_allow - i) * sizeof(char *));
                        p->n_pub_allow--;
                        return true;
                }
        return false;
}

bool profile_narrow_pub(profile *p, const char *subject, const char *narrower)
{
        if (!profile_drop_pub(p, subject))
                return false;
        add(p->pub_allow, &p->n_pub_allow, "%s", narrower);
        bind_perms(p);
        return true;
}

void profile_fini(profile *p)
{
        for (size_t i = 0; i < p->n_pub_allow; i++)
                free(p->pub_allow[i]);
        for (size_t i = 0; i < p->n_pub_deny; i++)
                free(p->pub_deny[i]);
        for (size_t i = 0; i < p->n_sub_allow; i++)
                free(p->sub_allow[i]);
        memset(p, 0, sizeof *p);
}

bool profile_write_creds(const char *path, const jwt_key *acct, const jwt_key *key, const char *name, const profile *p)
{
        char *token = jwt_user(acct, key, name, &p->perms);
        bool ok = token && jwt_write_creds(path, token, key) == 0;
        free(token);
        return ok;
}

natsStatus profile_connect(natsConnection **nc, const char *creds, const char *id, natsErrHandler err_cb, void *closure)
{
        char prefix[128];
        snprintf(prefix, sizeof prefix, "_INBOX_%s", id);
        broker_config bc = {
                .servers = tu_broker.url,
                .creds_file = creds,
                .inbox_prefix = prefix,
                .name = "cotal-test-scoped",
                .reconnect = true,
                .on_error = err_cb,
                .cb_arg = closure,
        };
        char err[512];
        int r = broker_connect(&bc, nc, err, sizeof err);
        if (r < 0)
                fprintf(stderr, "connect with creds %s: %s\n", creds, err);
        return r == 0 ? NATS_OK : r == -EACCES ? NATS_CONNECTION_AUTH_FAILED : NATS_ERR;
}
