/* creds: the daemon's identity (PROTOCOL §10.2 step 3). From a creds file
 * (JWT + nkey seed): the public key derived from the seed, which must equal
 * the JWT's "sub". For --no-auth (E3): a fresh random id in the same nkey
 * format. Never logs or returns secret material. */
#pragma once

#include <nats/nats.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* *id: owned "U…" (56 chars). Returns 0, -ENOENT (no such file), -EPERM
 * (group/other can read it), -EINVAL (malformed, or sub mismatch) with a
 * one-line reason in err. */
int creds_identity(const char *path, char **id, char *err, size_t err_size);

/* Credential rotation (issue 6): the creds the connection presents. The
 * file is re-read at every connect and reconnect (cnats calls the JWT
 * callback each time) and on SIGHUP; a new version is taken when it is
 * valid and has the same identity (the id names the lease holder and the
 * inbox prefix, so it cannot change while running); otherwise the last
 * good creds stay and the problem is logged once. Thread-safe. */
typedef struct creds_source {
        pthread_mutex_t lock;
        char *path;
        char *id;               /* fixed at init */
        char *jwt;              /* last good */
        unsigned char seed[32]; /* last good, raw; wiped at fini */
        uint64_t rotations;     /* times a changed JWT was taken */
        char last_error[512];   /* last rejection logged, to log it once */
} creds_source;

/* Loads path (as creds_identity). 0 or -errno with err filled; after a
 * failure there is nothing to fini. */
int creds_source_init(creds_source *s, const char *path, char *err, size_t err_size);
void creds_source_fini(creds_source *s);
/* Re-reads the file now: 1 taken (the JWT changed), 0 unchanged, or
 * -errno (rejected, err says why; the last good creds stay). */
int creds_source_reload(creds_source *s, char *err, size_t err_size);
/* cnats natsUserJWTHandler / natsSignatureHandler; closure = source. */
natsStatus creds_source_jwt_cb(char **jwt, char **err_text, void *closure);
natsStatus creds_source_sign_cb(char **err_text, unsigned char **sig, int *sig_len, const char *nonce, void *closure);

/* A random user nkey public key ("U" + 55 base32 chars); NULL on failure. */
char *creds_generate_id(void);

/* Pure helpers, exposed for unit tests. */
/* RFC 4648 base32 without padding. 0 or -EINVAL; *out_len set. */
int creds_base32_decode(const char *in, size_t len, unsigned char *out, size_t out_size, size_t *out_len);
int creds_base32_encode(const unsigned char *in, size_t len, char *out, size_t out_size);
/* CRC-16/XMODEM as nkeys uses it. */
unsigned creds_crc16(const unsigned char *p, size_t n);
/* Encodes a 32-byte Ed25519 public key as a user nkey ("U…"). */
int creds_encode_user_key(const unsigned char pub[32], char out[57]);
/* Decodes a user seed ("SU…") to its 32 raw bytes after checking the
 * prefix and CRC. 0 or -EINVAL. */
int creds_decode_user_seed(const char *seed, unsigned char raw[32]);
/* The checks of creds_identity on a file's text (NUL-terminated, borrowed;
 * name is for messages): a user JWT and a user seed whose public key is
 * the JWT's "sub". On success *jwt and *id are owned by the caller and raw
 * holds the seed (the caller wipes it). 0, -EINVAL (err says why) or
 * -ENOMEM. */
int creds_parse(const char *text, const char *name, char **jwt, unsigned char raw[32], char **id, char *err,
                size_t err_size);
