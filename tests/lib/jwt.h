/* jwt: nkeys and NATS v2 JWTs made on the fly, so integration tests can
 * run nats-server in operator mode (a MEMORY resolver preloaded with the
 * accounts a test invents) entirely offline, without nsc. Test-only: seeds
 * are kept in plain memory and written to disk unencrypted. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An nkey pair: seed "S<type>…" (58 chars) and public key "<type>…" (56). */
typedef struct jwt_key {
        char seed[64];
        char pub[64];
} jwt_key;

/* A fresh random Ed25519 key. type: 'O' operator, 'A' account, 'U' user.
 * False on an unknown type or if the crypto library fails. */
bool jwt_key_new(jwt_key *k, char type);

/* A self-signed operator JWT. Owned (free()), NULL on failure. */
char *jwt_operator(const jwt_key *op, const char *name);

/* An account JWT signed by op. Connection, subscription and data limits
 * are unlimited; JetStream is enabled without limits when jetstream is
 * true and disabled otherwise (the system account must not have it).
 * Owned (free()), NULL on failure. */
char *jwt_account(const jwt_key *op, const jwt_key *acct, const char *name, bool jetstream);

/* What a user may do. Subject lists are NULL-terminated arrays or NULL.
 * As in nats, a NULL or empty allow list allows every subject (deny ">"
 * to forbid all), and deny wins over allow. */
typedef struct jwt_user_perms {
        const char *const *pub_allow;
        const char *const *pub_deny;
        const char *const *sub_allow;
        const char *const *sub_deny;
        bool resp;       /* may answer requests it receives (one reply each) */
        int64_t expires; /* unix seconds; 0: never */
} jwt_user_perms;

/* A user JWT issued (and signed) by acct. perms: NULL for an unrestricted
 * user. Owned (free()), NULL on failure. */
char *jwt_user(const jwt_key *acct, const jwt_key *user, const char *name, const jwt_user_perms *perms);

/* Writes a .creds file (user JWT + seed, the layout nsc writes) with mode
 * 0600, replacing any file at path. 0 or -errno. */
int jwt_write_creds(const char *path, const char *user_jwt, const jwt_key *user);

/* nats-server configuration text for operator mode: the operator JWT, the
 * system account and a MEMORY resolver preloaded with the n accounts
 * (public keys and JWTs in parallel arrays). The system account must be
 * one of them, or the server refuses to start; this returns NULL then.
 * Pass it as natsd_start's extra_conf. Owned (free()). */
char *jwt_server_conf(const char *operator_jwt, const char *system_account_pub, const char *const *account_pubs,
                      const char *const *account_jwts, size_t n);

/* The usual trust chain of one test server: a fresh operator, a system
 * account (JetStream off, as 2.9 requires) and one JetStream account
 * "APP" whose users the test issues. */
typedef struct jwt_chain {
        jwt_key op, sys, app;
} jwt_chain;
/* Makes the keys and returns the server configuration for natsd_start
 * (owned, free()); NULL on failure. */
char *jwt_chain_conf(jwt_chain *c);
