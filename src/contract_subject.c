/* contract_subject: every name and subject derived from the space (PROTOCOL
 * §1.2, §1.4, §3, §5) and the parsers for the subjects the daemon receives.
 * Builders sanitise through token()/routeToken()/channelPath(); parsers only
 * borrow spans and never allocate. */
#include "contract_subject.h"

#include "contract_channel.h"
#include "contract_strbuf.h"
#include "contract_token.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* token() of a NUL-terminated string; NULL on any error. */
static char *token_of(const char *s)
{
        char *t;

        if (s == NULL || contract_token(s, strlen(s), &t) < 0)
                return NULL;
        return t;
}

static char *route_token_of(const char *s)
{
        char *t;

        if (s == NULL || contract_route_token(s, strlen(s), &t) < 0)
                return NULL;
        return t;
}

int contract_names_init(contract_names *n, const char *space, size_t len)
{
        char *s;
        int r;

        memset(n, 0, sizeof(*n));
        r = contract_token(space, len, &s);
        if (r < 0)
                return r;
        n->token = s;
        n->space = malloc(len + 1);
        if (n->space == NULL)
                goto nomem;
        if (len > 0)
                memcpy(n->space, space, len);
        n->space[len] = '\0';
        /* PROTOCOL §1.2: every name is a fixed decoration of <S>. */
        if (!(n->prefix = contract_printf("cotal.%s", s)) || !(n->chat_stream = contract_printf("CHAT_%s", s)) ||
            !(n->dm_stream = contract_printf("DM_%s", s)) || !(n->task_stream = contract_printf("TASK_%s", s)) ||
            !(n->inbox_stream = contract_printf("INBOX_%s", s)) || !(n->dlv_stream = contract_printf("DLV_%s", s)) ||
            !(n->chat_filter = contract_printf("cotal.%s.chat.>", s)) ||
            !(n->dm_filter = contract_printf("cotal.%s.inst.>", s)) ||
            !(n->task_filter = contract_printf("cotal.%s.svc.>", s)) ||
            !(n->dinbox_filter = contract_printf("cotal.%s.dinbox.>", s)) ||
            !(n->dlv_filter = contract_printf("cotal.%s.dlv.>", s)) ||
            !(n->ctl_delivery_sub = contract_printf("cotal.%s.ctl.delivery.*", s)) ||
            !(n->presence_bucket = contract_printf("cotal_presence_%s", s)) ||
            !(n->channels_bucket = contract_printf("cotal_channels_%s", s)) ||
            !(n->members_bucket = contract_printf("cotal_members_%s", s)) ||
            !(n->acl_bucket = contract_printf("cotal_acl_%s", s)) ||
            !(n->delivery_bucket = contract_printf("cotal_delivery_%s", s)))
                goto nomem;
        return 0;
nomem:
        contract_names_fini(n);
        return -ENOMEM;
}

void contract_names_fini(contract_names *n)
{
        if (n == NULL)
                return;
        free(n->space);
        free(n->token);
        free(n->prefix);
        free(n->chat_stream);
        free(n->dm_stream);
        free(n->task_stream);
        free(n->inbox_stream);
        free(n->dlv_stream);
        free(n->chat_filter);
        free(n->dm_filter);
        free(n->task_filter);
        free(n->dinbox_filter);
        free(n->dlv_filter);
        free(n->ctl_delivery_sub);
        free(n->presence_bucket);
        free(n->channels_bucket);
        free(n->members_bucket);
        free(n->acl_bucket);
        free(n->delivery_bucket);
        memset(n, 0, sizeof(*n));
}

char *contract_bucket_stream(const char *bucket)
{
        return bucket ? contract_printf("KV_%s", bucket) : NULL;
}

char *contract_kv_subject(const char *bucket, const char *key)
{
        return bucket && key ? contract_printf("$KV.%s.%s", bucket, key) : NULL;
}

/* "<prefix>.<kind>.<routeToken(id)><suffix>" */
static char *prefixed_route(const contract_names *n, const char *kind, const char *id, const char *suffix, bool route)
{
        char *t, *s;

        if (n == NULL || n->prefix == NULL)
                return NULL;
        t = route ? route_token_of(id) : token_of(id);
        if (t == NULL)
                return NULL;
        s = contract_printf("%s.%s.%s%s", n->prefix, kind, t, suffix);
        free(t);
        return s;
}

char *contract_chat_subject(const contract_names *n, const char *sender, const char *channel)
{
        char *t, *path = NULL, *s = NULL;

        if (n == NULL || n->prefix == NULL || channel == NULL)
                return NULL;
        t = route_token_of(sender);
        if (t == NULL)
                return NULL;
        if (contract_channel_path(channel, &path) == 0)
                s = contract_printf("%s.chat.%s.%s", n->prefix, t, path);
        free(path);
        free(t);
        return s;
}

char *contract_dinbox_subject(const contract_names *n, const char *owner)
{
        return prefixed_route(n, "dinbox", owner, "", true);
}

char *contract_dlv_subject(const contract_names *n, const char *owner)
{
        return prefixed_route(n, "dlv", owner, "", true);
}

char *contract_ctl_delivery_subject(const contract_names *n, const char *agent)
{
        return prefixed_route(n, "ctl.delivery", agent, "", true);
}

char *contract_channel_filter(const contract_names *n, const char *channel)
{
        if (n == NULL || n->prefix == NULL || channel == NULL)
                return NULL;
        return contract_printf("%s.chat.*.%s", n->prefix, channel);
}

char *contract_dlv_filter(const contract_names *n, const char *owner)
{
        return prefixed_route(n, "dlv", owner, "", false);
}

char *contract_dm_filter(const contract_names *n, const char *owner)
{
        return prefixed_route(n, "inst", owner, ".*", false);
}

char *contract_svc_filter(const contract_names *n, const char *role)
{
        return prefixed_route(n, "svc", role, ".*", false);
}

/* "<head><token(id)>" */
static char *token_name(const char *head, const char *id)
{
        char *t = token_of(id), *s;

        if (t == NULL)
                return NULL;
        s = contract_printf("%s%s", head, t);
        free(t);
        return s;
}

char *contract_dlv_durable(const char *owner)
{
        return token_name("dlv_", owner);
}

char *contract_dm_durable(const char *owner)
{
        return token_name("dm_", owner);
}

char *contract_svc_durable(const char *role)
{
        return token_name("svc_", role);
}

char *contract_catchup_consumer(const char *owner, uint64_t generation)
{
        char *t = token_of(owner), *s;

        if (t == NULL)
                return NULL;
        s = contract_printf("cu_%s_%" PRIu64, t, generation);
        free(t);
        return s;
}

char *contract_chathist_consumer(const char *daemon_id)
{
        return token_name("chathist_", daemon_id);
}

char *contract_dedup_id(const char *msg_id, const char *owner, uint64_t generation)
{
        if (msg_id == NULL || owner == NULL)
                return NULL;
        /* PROTOCOL §5.2: the raw owner, not its token. */
        return contract_printf("%s:%s:%" PRIu64, msg_id, owner, generation);
}

/* Splits subject on '.' into at most max spans (JavaScript split semantics:
 * empty tokens count). Returns the total number of tokens, which may exceed
 * max; only the first max are stored. */
static size_t split_tokens(const char *subject, contract_span *tok, size_t max)
{
        const char *p = subject;
        size_t count = 0;

        for (;;) {
                const char *dot = strchr(p, '.');
                size_t len = dot ? (size_t)(dot - p) : strlen(p);

                if (count < max) {
                        tok[count].p = p;
                        tok[count].len = len;
                }
                count++;
                if (dot == NULL)
                        return count;
                p = dot + 1;
        }
}

static bool span_eq(contract_span s, const char *lit)
{
        return s.len == strlen(lit) && memcmp(s.p, lit, s.len) == 0;
}

bool contract_chat_subject_parse(const char *subject, contract_span *sender, contract_span *channel)
{
        contract_span tok[5];
        size_t count;

        if (subject == NULL)
                return false;
        count = split_tokens(subject, tok, 5);
        /* PROTOCOL §1.4 parseSubject: the space token is not compared. */
        if (count < 5 || !span_eq(tok[0], "cotal") || !span_eq(tok[2], "chat"))
                return false;
        if (sender)
                *sender = tok[3];
        if (channel) {
                /* tokens 4.. joined with '.' is the rest of the subject */
                channel->p = tok[4].p;
                channel->len = strlen(tok[4].p);
        }
        return true;
}

bool contract_ctl_subject_parse(const char *subject, contract_span *service, contract_span *sender)
{
        contract_span tok[5];

        if (subject == NULL)
                return false;
        if (split_tokens(subject, tok, 5) != 5 || !span_eq(tok[0], "cotal") || !span_eq(tok[2], "ctl"))
                return false;
        if (service)
                *service = tok[3];
        if (sender)
                *sender = tok[4];
        return true;
}

bool contract_dinbox_subject_parse(const char *subject, contract_span *owner)
{
        contract_span tok[4];

        if (subject == NULL)
                return false;
        if (split_tokens(subject, tok, 4) != 4 || !span_eq(tok[0], "cotal") || !span_eq(tok[2], "dinbox"))
                return false;
        if (owner)
                *owner = tok[3];
        return true;
}

bool contract_reply_is_bound(const char *subject, const char *reply)
{
        size_t slen;

        if (subject == NULL || reply == NULL)
                return false;
        slen = strlen(subject);
        /* PROTOCOL §8.2 step 1: a plain startsWith("<subject>.reply."). */
        return strncmp(reply, subject, slen) == 0 && strncmp(reply + slen, ".reply.", strlen(".reply.")) == 0;
}
