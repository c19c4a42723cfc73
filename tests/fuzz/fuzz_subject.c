/* fuzz_subject: the subject parsers of PROTOCOL §1.4 (chat, ctl, dinbox),
 * the reply guard of §8.2 step 1, and the builders of §1.2/§1.4 against
 * them. Input lines: subject, reply, space, id, channel. The parsers are
 * checked against a reference split; every built subject must parse back
 * to routeToken(id) and channelPath(channel). */
#include "fuzz.h"
#include "split.h"

#include "contract_channel.h"
#include "contract_subject.h"
#include "contract_token.h"

#include <stdbool.h>

static bool span_eq(contract_span s, part p)
{
        return s.p == p.p && s.len == p.len;
}

static void check_parsers(const char *subject)
{
        size_t n;
        part *t = split_dots(subject, &n);
        contract_span a = {0}, b = {0};

        /* §1.4 chat: "cotal", any space, "chat", >= 5 tokens; the channel
         * is the rest of the subject after token 3. */
        bool chat = n >= 5 && part_is(t[0], "cotal") && part_is(t[2], "chat");
        FUZZ_CHECK(contract_chat_subject_parse(subject, &a, &b) == chat);
        if (chat) {
                FUZZ_CHECK(span_eq(a, t[3]));
                FUZZ_CHECK(b.p == t[4].p && b.p + b.len == subject + strlen(subject));
        }
        bool ctl = n == 5 && part_is(t[0], "cotal") && part_is(t[2], "ctl");
        FUZZ_CHECK(contract_ctl_subject_parse(subject, &a, &b) == ctl);
        if (ctl)
                FUZZ_CHECK(span_eq(a, t[3]) && span_eq(b, t[4]));
        bool dinbox = n == 4 && part_is(t[0], "cotal") && part_is(t[2], "dinbox");
        FUZZ_CHECK(contract_dinbox_subject_parse(subject, &a) == dinbox);
        if (dinbox)
                FUZZ_CHECK(span_eq(a, t[3]));
        free(t);
}

static bool span_is_str(contract_span s, const char *str)
{
        return str && s.len == strlen(str) && memcmp(s.p, str, s.len) == 0;
}

static char *route(const char *id)
{
        char *t = NULL;
        return contract_route_token(id, strlen(id), &t) == 0 ? t : NULL;
}

static void check_builders(const char *space, const char *id, const char *channel)
{
        contract_names n;
        if (contract_names_init(&n, space, strlen(space)) < 0)
                return;
        char *tok = NULL;
        FUZZ_CHECK(contract_token(space, strlen(space), &tok) == 0 && strcmp(tok, n.token) == 0);
        free(tok);
        FUZZ_CHECK(strncmp(n.prefix, "cotal.", 6) == 0 && strcmp(n.prefix + 6, n.token) == 0);

        char *rt = route(id);
        char *path = NULL;
        bool path_ok = contract_channel_path(channel, &path) == 0;
        contract_span a, b;

        char *s = contract_chat_subject(&n, id, channel);
        FUZZ_CHECK((s != NULL) == (rt != NULL && path_ok));
        if (s) {
                FUZZ_CHECK(contract_chat_subject_parse(s, &a, &b));
                FUZZ_CHECK(span_is_str(a, rt) && span_is_str(b, path));
                FUZZ_CHECK(!contract_ctl_subject_parse(s, NULL, NULL) && !contract_dinbox_subject_parse(s, NULL));
        }
        free(s);

        s = contract_dinbox_subject(&n, id);
        FUZZ_CHECK((s != NULL) == (rt != NULL));
        if (s) {
                FUZZ_CHECK(contract_dinbox_subject_parse(s, &a) && span_is_str(a, rt));
                FUZZ_CHECK(!contract_chat_subject_parse(s, NULL, NULL));
        }
        free(s);

        s = contract_ctl_delivery_subject(&n, id);
        FUZZ_CHECK((s != NULL) == (rt != NULL));
        if (s) {
                FUZZ_CHECK(contract_ctl_subject_parse(s, &a, &b));
                FUZZ_CHECK(span_is_str(a, "delivery") && span_is_str(b, rt));
                /* §8.2 step 1: the sender's own reply subtree is bound, a
                 * sibling's is not. */
                size_t len = strlen(s);
                char *reply = malloc(len + 16);
                FUZZ_CHECK(reply != NULL);
                snprintf(reply, len + 16, "%s.reply.x", s);
                FUZZ_CHECK(contract_reply_is_bound(s, reply));
                snprintf(reply, len + 16, "%sX.reply.x", s);
                FUZZ_CHECK(!contract_reply_is_bound(s, reply));
                free(reply);
        }
        free(s);

        /* Consumer names carry token(id): a valid NATS name, no '.'. */
        char *names[] = {contract_dlv_durable(id), contract_dm_durable(id), contract_svc_durable(id),
                         contract_catchup_consumer(id, UINT64_MAX), contract_chathist_consumer(id)};
        for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
                FUZZ_CHECK((names[i] != NULL) == (rt != NULL));
                FUZZ_CHECK(!names[i] || contract_is_token(names[i]));
                free(names[i]);
        }
        free(path);
        free(rt);
        contract_names_fini(&n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *line[5];
        const uint8_t *rest = data;
        size_t rest_size = size;
        for (size_t i = 0; i < 5; i++)
                line[i] = fuzz_split_line(rest, rest_size, &rest, &rest_size);

        check_parsers(line[0]);
        size_t slen = strlen(line[0]);
        bool bound = strncmp(line[1], line[0], slen) == 0 && strncmp(line[1] + slen, ".reply.", 7) == 0;
        FUZZ_CHECK(contract_reply_is_bound(line[0], line[1]) == bound);
        FUZZ_CHECK(!contract_reply_is_bound(line[0], NULL) && !contract_chat_subject_parse(NULL, NULL, NULL));
        check_builders(line[2], line[3], line[4]);

        for (size_t i = 0; i < 5; i++)
                free(line[i]);
        return 0;
}
