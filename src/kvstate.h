/* kvstate: ACLs (§4.3), membership records (§4.4) and channel delivery
 * classes (§4.6) read fresh from the broker on every call — what the
 * control service uses for its occasional requests (the fan-out and the
 * reader use kv_cache, fenced per batch). One handle per thread. Absence and
 * unreadability are not errors (-ENOENT); transport failures are. */
#pragma once

#include "contract_record.h"
#include "contract_subject.h"
#include "kv.h"

#include <nats/nats.h>
#include <stdint.h>

typedef struct kvstate {
        kv_bucket acl, members, channels;
        char last_error[600];
} kvstate;

int kvstate_init(kvstate *s, natsConnection *nc, const contract_names *n);
void kvstate_fini(kvstate *s);

/* aclFor(owner), key token(owner). 0 = known ACL in *out (fini it),
 * -ENOENT = unknown owner (absent, DEL/PURGE, unreadable: why says which),
 * other < 0 = transport error. */
int kvstate_acl(kvstate *s, const char *owner, contract_acl *out, char *why, size_t why_size);

/* Readable record at "<channel>/<token(owner)>". 0 (*out filled, *rev its
 * revision; rev may be NULL), -ENOENT, or a transport error. */
int kvstate_member(kvstate *s, const char *channel, const char *owner, contract_member *out, uint64_t *rev);

/* Every readable record whose key's channel part is exactly channel
 * (§6.2, §6.4: no prefix match). *out is an owned array (free each with
 * contract_member_fini, then free()). */
int kvstate_members_of(kvstate *s, const char *channel, contract_member **out, size_t *n);
void kvstate_members_free(contract_member *m, size_t n);

/* §4.6 effective class: 1 if durable, 0 if live, < 0 transport error. */
int kvstate_channel_is_durable(kvstate *s, const char *channel);
