/* contract_subject: every name the daemon derives from the space (PROTOCOL
 * §1.2), the subject builders of §1.4 and §5, and the subject parsers of
 * §1.4 (chat, ctl, dinbox) plus the reply-subject guard of §8.2.
 * Pure code: no I/O. Builders return strings owned by the caller (free());
 * parsers return spans borrowed from their input. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Names derived from one space. Every member is owned by the struct and
 * freed by contract_names_fini(). */
typedef struct contract_names {
        char *space;            /* raw space name as given (for messages) */
        char *token;            /* <S> = token(space)                      */
        char *prefix;           /* cotal.<S>                               */
        char *chat_stream;      /* CHAT_<S>   */
        char *dm_stream;        /* DM_<S>     */
        char *task_stream;      /* TASK_<S>   */
        char *inbox_stream;     /* INBOX_<S>  */
        char *dlv_stream;       /* DLV_<S>    */
        char *chat_filter;      /* cotal.<S>.chat.>   */
        char *dm_filter;        /* cotal.<S>.inst.>   */
        char *task_filter;      /* cotal.<S>.svc.>    */
        char *dinbox_filter;    /* cotal.<S>.dinbox.> */
        char *dlv_filter;       /* cotal.<S>.dlv.>    */
        char *ctl_delivery_sub; /* cotal.<S>.ctl.delivery.* */
        char *presence_bucket;  /* cotal_presence_<S> */
        char *channels_bucket;  /* cotal_channels_<S> */
        char *members_bucket;   /* cotal_members_<S>  */
        char *acl_bucket;       /* cotal_acl_<S>      */
        char *delivery_bucket;  /* cotal_delivery_<S> */
} contract_names;

/* Fixed names of §1.2. */
#define CONTRACT_FANOUT_DURABLE "fanout"
#define CONTRACT_READER_DURABLE "reader"
#define CONTRACT_LEASE_KEY "lease.0"
#define CONTRACT_DEFAULTS_KEY "=defaults"
#define CONTRACT_CTL_QUEUE "delivery"

/* Fill n from the raw space name (len bytes, need not be NUL-terminated).
 * Returns 0, -EILSEQ (space not valid UTF-8), -E2BIG or -ENOMEM; on error n
 * is left zeroed and needs no fini. */
int contract_names_init(contract_names *n, const char *space, size_t len);
/* Accepts NULL and a zeroed struct. */
void contract_names_fini(contract_names *n);

/* "KV_<bucket>" */
char *contract_bucket_stream(const char *bucket);
/* "$KV.<bucket>.<key>" (key inserted as given) */
char *contract_kv_subject(const char *bucket, const char *key);

/* Subjects. Owner/sender slots go through routeToken (§1.1), channels
 * through channelPath; for real nkey ids and valid channels both are the
 * identity. NULL on invalid UTF-8, on a channel rejected by channelPath, or
 * on allocation failure. */
char *contract_chat_subject(const contract_names *n, const char *sender, const char *channel);
char *contract_dinbox_subject(const contract_names *n, const char *owner);
char *contract_dlv_subject(const contract_names *n, const char *owner);
char *contract_ctl_delivery_subject(const contract_names *n, const char *agent);
/* "cotal.<S>.chat.*.<channel>" — filter of the catch-up and history probes
 * (§3, §8.6). channel is inserted raw: callers pass a validated concrete
 * channel. */
char *contract_channel_filter(const contract_names *n, const char *channel);
/* "cotal.<S>.dlv.<token(owner)>" is what the dlv_ durable filters on (§3). */
char *contract_dlv_filter(const contract_names *n, const char *owner);
/* "cotal.<S>.inst.<token(owner)>.*" */
char *contract_dm_filter(const contract_names *n, const char *owner);
/* "cotal.<S>.svc.<token(role)>.*" */
char *contract_svc_filter(const contract_names *n, const char *role);

/* Consumer names (§1.2): "dlv_<token(id)>", "dm_<token(id)>",
 * "svc_<token(role)>", "cu_<token(owner)>_<generation>",
 * "chathist_<token(daemon_id)>". */
char *contract_dlv_durable(const char *owner);
char *contract_dm_durable(const char *owner);
char *contract_svc_durable(const char *role);
char *contract_catchup_consumer(const char *owner, uint64_t generation);
char *contract_chathist_consumer(const char *daemon_id);

/* Dedup id of §5.2/§5.3: "<msg_id>:<owner>:<generation>" (owner raw,
 * generation in decimal). */
char *contract_dedup_id(const char *msg_id, const char *owner, uint64_t generation);

/* A span borrowed from a parsed subject. */
typedef struct contract_span {
        const char *p;
        size_t len;
} contract_span;

/* §1.4 chat parse: token 0 "cotal", token 2 "chat", >= 5 tokens; sender =
 * token 3, channel = tokens 4.. joined with '.' (the rest of the subject).
 * The space token is not compared. False = "unparseable". */
bool contract_chat_subject_parse(const char *subject, contract_span *sender, contract_span *channel);
/* §1.4 ctl parse: token 0 "cotal", token 2 "ctl", exactly 5 tokens. */
bool contract_ctl_subject_parse(const char *subject, contract_span *service, contract_span *sender);
/* §1.4 dinbox parse: exactly 4 tokens, token 0 "cotal", token 2 "dinbox". */
bool contract_dinbox_subject_parse(const char *subject, contract_span *owner);

/* §8.2 step 1: true iff reply is non-NULL and starts with the exact string
 * "<subject>.reply.". (Nothing more is required after the prefix: upstream
 * checks startsWith only.) */
bool contract_reply_is_bound(const char *subject, const char *reply);
