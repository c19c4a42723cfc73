/* fuzz_control: the ctl.delivery request pipeline of PROTOCOL §8.2 up to
 * the point where an op needs the broker — reply binding (step 1), the
 * subject's sender (§1.4), the body (steps 2-3, §5.4), dispatch (step 4)
 * and the channel argument (§8.5) — composed as control.c's handle()
 * composes them. Input: line 1 the subject, line 2 the reply subject, the
 * rest the body. Invariant: every request that passes step 1 gets exactly
 * one well-formed reply {"ok":false,"error":<string>} or reaches an op with
 * a validated channel. */
#include "fuzz.h"

#include "contract_channel.h"
#include "contract_control.h"
#include "contract_js.h"
#include "contract_record.h"
#include "contract_subject.h"
#include "contract_token.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>

/* The reply handle() would publish for an error text: it must exist and
 * read back as {"ok":false,"error":text}. */
static void check_error_reply(const char *text)
{
        FUZZ_CHECK(text != NULL);
        char *reply = contract_ctl_reply_error(text);
        if (!reply)
                fprintf(stderr, "no reply for error text \"%s\"\n", text);
        FUZZ_CHECK(reply != NULL);
        json_t *v = json_loads(reply, 0, NULL);
        FUZZ_CHECK(json_is_object(v) && json_object_size(v) == 2 && json_is_false(json_object_get(v, "ok")));
        FUZZ_CHECK(strcmp(json_string_value(json_object_get(v, "error")), text) == 0);
        json_decref(v);
        free(reply);
}

/* §8.5 for durableJoin/durableLeave. */
static void check_channel_arg(const char *op, const json_t *args)
{
        char *channel = NULL, *error = NULL;
        int r = contract_channel_arg(op, args, &channel, &error);
        if (r == 0) {
                /* Trimmed, valid (§1.3), concrete, and its own channelPath
                 * (§1.1), so the subjects built from it are what was asked. */
                FUZZ_CHECK(channel && !error);
                FUZZ_CHECK(contract_channel_check(channel, NULL, NULL) == CHANNEL_VALID);
                FUZZ_CHECK(contract_channel_is_concrete(channel));
                size_t start, tlen;
                FUZZ_CHECK(contract_js_trim(channel, strlen(channel), &start, &tlen) == 0 && start == 0 &&
                           tlen == strlen(channel));
                char *path = NULL;
                FUZZ_CHECK(contract_channel_path(channel, &path) == 0 && strcmp(path, channel) == 0);
                free(path);
                free(channel);
                return;
        }
        FUZZ_CHECK(r == -EINVAL && !channel);
        check_error_reply(error);
        free(error);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const uint8_t *rest;
        size_t rest_size;
        char *subject = fuzz_split_line(data, size, &rest, &rest_size);
        char *reply_to = fuzz_split_line(rest, rest_size, &rest, &rest_size);
        const char *body = (const char *)rest;

        /* Step 1: no bound reply, no action (and nothing to check). */
        if (!contract_reply_is_bound(subject, reply_to))
                goto out;
        FUZZ_CHECK(strncmp(reply_to, subject, strlen(subject)) == 0);
        contract_span service, sender;
        if (!contract_ctl_subject_parse(subject, &service, &sender))
                goto out;
        char *caller = strndup(sender.p, sender.len);
        FUZZ_CHECK(caller != NULL);

        contract_ctl_request req;
        ctl_req_status st = contract_ctl_request_decode(body, rest_size, caller, &req);
        switch (st) {
        case CTL_REQ_OK: {
                /* Step 3 held: from.id is exactly the subject's sender. */
                FUZZ_CHECK(req.from_id && strcmp(req.from_id, caller) == 0);
                FUZZ_CHECK(req.args != NULL);
                const char *op = json_string_value(req.op);
                if (op && strcmp(op, "durableJoin") == 0) {
                        check_channel_arg(op, req.args);
                        char *e = contract_err_no_acl(caller);
                        check_error_reply(e);
                        free(e);
                } else if (op && strcmp(op, "durableLeave") == 0) {
                        check_channel_arg(op, req.args);
                        const json_t *g = json_object_get(req.args, "generation");
                        if (json_is_number(g)) {
                                char num[64];
                                FUZZ_CHECK(contract_js_number(json_number_value(g), num, sizeof num) == 0);
                                char *e = contract_err_stale("a", caller, num, 1);
                                check_error_reply(e);
                                free(e);
                        }
                } else if (!(op && strcmp(op, "listMemberships") == 0)) {
                        char *e = contract_err_unknown_op(req.op);
                        check_error_reply(e);
                        FUZZ_CHECK(strncmp(e, "op \"", 4) == 0);
                        free(e);
                }
                break;
        }
        case CTL_REQ_SENDER_MISMATCH:
                FUZZ_CHECK(strcmp(req.error, CONTRACT_ERR_SENDER_MISMATCH) == 0);
                FUZZ_CHECK(!req.from_id || strcmp(req.from_id, caller) != 0 || strlen(req.from_id) != strlen(caller));
                check_error_reply(CONTRACT_ERR_SENDER_MISMATCH);
                break;
        case CTL_REQ_TOO_LARGE:
                FUZZ_CHECK(rest_size > CONTRACT_MAX_REQUEST_BYTES);
                /* fall through */
        case CTL_REQ_NOT_JSON:
        case CTL_REQ_NOT_OBJECT:
                /* Step 2: a reply ok:false with the parser's message. */
                FUZZ_CHECK(req.error[0] != '\0');
                check_error_reply(req.error);
                break;
        case CTL_REQ_NOMEM: break;
        }
        contract_ctl_request_fini(&req);
        free(caller);
out:
        free(reply_to);
        free(subject);
        return 0;
}
