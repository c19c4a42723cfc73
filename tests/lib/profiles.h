/* profiles: the permission profiles of PROTOCOL §11.3 (`delivery`) and
 * §11.4 (`agent`), subject for subject as the contract lists them, for
 * operator-mode tests that confine the daemon and the agents as production
 * does. Test-only; nothing here is looser than the contract (a test that
 * needs a narrower grant removes entries with profile_drop_pub). */
#pragma once

#include "jwt.h"

#include <nats/nats.h>
#include <stdbool.h>
#include <stddef.h>

#define PROFILE_MAX_SUBJECTS 96

/* A profile: perms points into the lists, which this struct owns. */
typedef struct profile {
        jwt_user_perms perms;
        char *pub_allow[PROFILE_MAX_SUBJECTS + 1]; /* NULL-terminated */
        char *pub_deny[PROFILE_MAX_SUBJECTS + 1];
        char *sub_allow[PROFILE_MAX_SUBJECTS + 1];
        size_t n_pub_allow, n_pub_deny, n_sub_allow;
} profile;

/* §11.3 for space token s (<S>) and daemon id d (<D>, the user's public
 * key): the pub.allow list, sub.allow "_INBOX_<D>.>" and "P.ctl.delivery.*",
 * no deny list. */
void profile_delivery(profile *p, const char *s, const char *d);

/* §11.4 for agent id on space token s: allow_subscribe / allow_publish are
 * NULL-terminated channel lists (NULL: none); role NULL for none; spawn
 * adds P.ctl.manager.<id>. pub.deny holds the consumer-create denials on
 * DM_<S>, TASK_<S> and DLV_<S>. */
void profile_agent(profile *p, const char *s, const char *id, const char *const *allow_subscribe,
                   const char *const *allow_publish, const char *role, bool spawn);

/* Removes pub.allow entry subject (exact text); false if it was not there. */
bool profile_drop_pub(profile *p, const char *subject);

/* Replaces pub.allow entry subject by narrower, a subject it covers (e.g.
 * "P.dinbox.*" by one owner's); false if subject was not there. */
bool profile_narrow_pub(profile *p, const char *subject, const char *narrower);

void profile_fini(profile *p);

/* Mints a user JWT for key (issued by acct) with p's grants, named name
 * (the profile name, §11.1), and writes its creds file (mode 0600) at path.
 * False on any failure. */
bool profile_write_creds(const char *path, const jwt_key *acct, const jwt_key *key, const char *name, const profile *p);

/* Connects to the test broker with creds, pinning the inbox prefix to
 * "_INBOX_<id>" as every scoped client must (§14.1 F4), so replies land
 * where the profile lets it subscribe. err_cb (may be NULL) gets the
 * asynchronous errors (permission violations) on cnats' thread. */
natsStatus profile_connect(natsConnection **nc, const char *creds, const char *id, natsErrHandler err_cb,
                           void *closure);
