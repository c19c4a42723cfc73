/* creds: the daemon's identity (PROTOCOL §10.2 step 3). From a creds file
 * (JWT + nkey seed): the public key derived from the seed, which must equal
 * the JWT's "sub". For --no-auth (E3): a fresh random id in the same nkey
 * format. Never logs or returns secret material. */
#pragma once

#include <stddef.h>

/* *id: owned "U…" (56 chars). Returns 0, -ENOENT (no such file), -EPERM
 * (group/other can read it), -EINVAL (malformed, or sub mismatch) with a
 * one-line reason in err. */
int creds_identity(const char *path, char **id, char *err, size_t err_size);

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
