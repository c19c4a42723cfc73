/* kvstate: the control service's fresh ACL read (§4.3), from the broker
 * on every call: its requests are rare and a join must see the current
 * record (the fan-out and the reader use kv_cache, fenced per batch). One
 * handle per thread. Absence and unreadability are not errors (-ENOENT);
 * transport failures are. */
#pragma once

#include "contract_record.h"
#include "contract_subject.h"
#include "kv.h"

#include <nats/nats.h>

typedef struct kvstate {
        kv_bucket acl;
        char last_error[600];
} kvstate;

int kvstate_init(kvstate *s, natsConnection *nc, const contract_names *n);
void kvstate_fini(kvstate *s);

/* aclFor(owner), key token(owner). 0 = known ACL in *out (fini it),
 * -ENOENT = unknown owner (absent, DEL/PURGE, unreadable: why says which),
 * other < 0 = transport error. */
int kvstate_acl(kvstate *s, const char *owner, contract_acl *out, char *why, size_t why_size);
