/* contract_control: the ctl.delivery request and reply bodies (PROTOCOL
 * §5.4, §8.2), the exact error texts of §8.4 and the channel argument of
 * §8.5. Pure: JSON in, JSON and text out. */
#pragma once

#include "contract_record.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- control request / reply (§5.4, §8.2) -------------------------------- */

/* A parsed request. root owned; pointers borrowed. Decoding follows the
 * pipeline of §8.2 and stops at the first failing step, which status says. */
typedef enum {
        CTL_REQ_OK = 0,
        CTL_REQ_TOO_LARGE,       /* over CONTRACT_MAX_REQUEST_BYTES         */
        CTL_REQ_NOT_JSON,        /* §8.2 step 2                             */
        CTL_REQ_NOT_OBJECT,      /* §8.2 step 2, JSON but not an object     */
        CTL_REQ_SENDER_MISMATCH, /* §8.2 step 3                             */
        CTL_REQ_NOMEM,           /* allocation failure (no reply possible)  */
} ctl_req_status;

typedef struct contract_ctl_request {
        json_t *root;
        json_t *op;          /* borrowed, may be NULL (missing)                  */
        json_t *args;        /* borrowed; an empty object when absent/null       */
        const char *from_id; /* borrowed; NULL when from/from.id is missing  */
        char error[256];     /* for NOT_JSON/NOT_OBJECT: the text to reply with  */
} contract_ctl_request;

/* caller = the sender token of the request subject (§8.2 step 3). */
ctl_req_status contract_ctl_request_decode(const char *data, size_t len, const char *caller, contract_ctl_request *out);
void contract_ctl_request_fini(contract_ctl_request *r);

/* {"ok":true,"data":<data>} — data borrowed (a reference is taken). */
char *contract_ctl_reply_ok(json_t *data);
/* {"ok":false,"error":"<text>"} */
char *contract_ctl_reply_error(const char *text);

/* §8.4 exact error texts; each returns a string owned by the caller. */
extern const char CONTRACT_ERR_SENDER_MISMATCH[];  /* "sender mismatch — request rejected" */
extern const char CONTRACT_ERR_LEAVE_GENERATION[]; /* "durableLeave: a finite generation …" */
char *contract_err_unknown_op(const json_t *op);
char *contract_err_blank_channel(const char *op);
char *contract_err_empty_segment(const char *channel);
char *contract_err_gt_not_last(const char *channel);
char *contract_err_bad_segment(const char *channel, const char *segment, size_t segment_len);
char *contract_err_wildcard(const char *op, const char *channel);
char *contract_err_no_acl(const char *caller);
char *contract_err_outside_acl(const char *channel, const contract_acl *acl);
char *contract_err_stale(const char *channel, const char *owner, const char *attempted, uint64_t stored);
char *contract_err_cas_exhausted(const char *channel, const char *owner);

/* §8.5 channel argument check for op ("durableJoin"/"durableLeave"):
 * args.channel must be a string, non-blank after JS trim; the trimmed value
 * must pass assertValidChannel and be concrete. On success returns 0 and
 * *channel (owned, trimmed). On failure returns -EINVAL and *error (owned):
 * the exact §8.4 text. -ENOMEM on allocation failure. */
int contract_channel_arg(const char *op, const json_t *args, char **channel, char **error);
