/* creds: creds-file parsing, nkey identity and the rotating creds source
 * (see creds.h). Seeds are wiped from memory as soon as they are not
 * needed: at once for creds_identity, at creds_source_fini for a source. */
#include "creds.h"

#include "log.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

#define CREDS_MAX_BYTES 65536
#define NKEY_PREFIX_SEED (18 << 3)
#define NKEY_PREFIX_USER (20 << 3)

static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

int creds_base32_encode(const unsigned char *in, size_t len, char *out, size_t out_size)
{
        size_t need = (len * 8 + 4) / 5;
        if (out_size < need + 1)
                return -ENOSPC;
        unsigned acc = 0;
        int bits = 0;
        size_t o = 0;
        for (size_t i = 0; i < len; i++) {
                acc = (acc << 8) | in[i];
                bits += 8;
                while (bits >= 5) {
                        out[o++] = b32[(acc >> (bits - 5)) & 31];
                        bits -= 5;
                }
        }
        if (bits > 0)
                out[o++] = b32[(acc << (5 - bits)) & 31];
        out[o] = '\0';
        return 0;
}

int creds_base32_decode(const char *in, size_t len, unsigned char *out, size_t out_size, size_t *out_len)
{
        unsigned acc = 0;
        int bits = 0;
        size_t o = 0;
        for (size_t i = 0; i < len; i++) {
                const char *p = strchr(b32, in[i]);
                if (!in[i] || !p)
                        return -EINVAL;
                acc = (acc << 5) | (unsigned)(p - b32);
                bits += 5;
                if (bits >= 8) {
                        if (o == out_size)
                                return -EINVAL;
                        out[o++] = (unsigned char)((acc >> (bits - 8)) & 0xFF);
                        bits -= 8;
                }
        }
        *out_len = o;
        return 0;
}

unsigned creds_crc16(const unsigned char *p, size_t n)
{
        unsigned crc = 0;
        for (size_t i = 0; i < n; i++) {
                crc ^= (unsigned)p[i] << 8;
                for (int b = 0; b < 8; b++)
                        crc = (crc & 0x8000) ? ((crc << 1) ^ 0x1021) & 0xFFFF : (crc << 1) & 0xFFFF;
        }
        return crc;
}

int creds_encode_user_key(const unsigned char pub[32], char out[57])
{
        unsigned char raw[35];
        raw[0] = NKEY_PREFIX_USER;
        memcpy(raw + 1, pub, 32);
        unsigned crc = creds_crc16(raw, 33);
        raw[33] = (unsigned char)(crc & 0xFF); /* little endian */
        raw[34] = (unsigned char)(crc >> 8);
        return creds_base32_encode(raw, sizeof raw, out, 57);
}

int creds_decode_user_seed(const char *seed, unsigned char raw_seed[32])
{
        unsigned char raw[64];
        size_t n = 0;
        if (creds_base32_decode(seed, strlen(seed), raw, sizeof raw, &n) < 0 || n != 36)
                return -EINVAL;
        unsigned crc = creds_crc16(raw, 34);
        bool ok = raw[34] == (crc & 0xFF) && raw[35] == (crc >> 8) && (raw[0] & 0xF8) == NKEY_PREFIX_SEED &&
                  (((raw[0] & 7) << 5) | (raw[1] >> 3)) == NKEY_PREFIX_USER;
        if (ok)
                memcpy(raw_seed, raw + 2, 32);
        explicit_bzero(raw, sizeof raw);
        return ok ? 0 : -EINVAL;
}

/* The text between the first "-----BEGIN <what>" line and the next
 * "------END" marker, trimmed. Owned. */
static char *section(const char *text, const char *what)
{
        const char *b = strstr(text, what);
        if (!b)
                return NULL;
        b = strchr(b, '\n');
        if (!b)
                return NULL;
        while (*b == '\n' || *b == '\r' || *b == ' ')
                b++;
        const char *e = strstr(b, "---");
        if (!e)
                return NULL;
        while (e > b && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' '))
                e--;
        return strndup(b, (size_t)(e - b));
}

/* The "sub" claim of a JWT (payload = 2nd dot-separated base64url part). */
static char *jwt_subject(const char *jwt)
{
        const char *p = strchr(jwt, '.');
        const char *q = p ? strchr(p + 1, '.') : NULL;
        if (!p || !q)
                return NULL;
        size_t n = (size_t)(q - p - 1);
        unsigned char *json = malloc(n + 3);
        if (!json)
                return NULL;
        unsigned acc = 0;
        int bits = 0;
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
                char c = p[1 + i];
                int v = c >= 'A' && c <= 'Z'   ? c - 'A'
                        : c >= 'a' && c <= 'z' ? c - 'a' + 26
                        : c >= '0' && c <= '9' ? c - '0' + 52
                        : c == '-' || c == '+' ? 62
                        : c == '_' || c == '/' ? 63
                                               : -1;
                if (v < 0) {
                        free(json);
                        return NULL;
                }
                acc = (acc << 6) | (unsigned)v;
                bits += 6;
                if (bits >= 8) {
                        json[o++] = (unsigned char)((acc >> (bits - 8)) & 0xFF);
                        bits -= 8;
                }
        }
        json_t *claims = json_loadb((const char *)json, o, 0, NULL);
        free(json);
        const char *sub = json_string_value(json_object_get(claims, "sub"));
        char *out = sub ? strdup(sub) : NULL;
        json_decref(claims);
        return out;
}

static int derive_public(const unsigned char seed[32], char out[57])
{
        EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
        unsigned char pub[32];
        size_t len = sizeof pub;
        int ok = k && EVP_PKEY_get_raw_public_key(k, pub, &len) == 1 && len == 32;
        EVP_PKEY_free(k);
        return ok ? creds_encode_user_key(pub, out) : -EINVAL;
}

int creds_parse(const char *text, const char *name, char **jwt_out, unsigned char raw[32], char **id, char *err,
                size_t err_size)
{
        *id = NULL;
        *jwt_out = NULL;
        char *jwt = section(text, "BEGIN NATS USER JWT");
        char *seed = section(text, "BEGIN USER NKEY SEED");
        int r = -EINVAL;
        char *sub = jwt ? jwt_subject(jwt) : NULL;
        char pub[57];
        if (!jwt || !seed) {
                snprintf(err, err_size, "creds %s: missing the user JWT or the nkey seed", name);
        } else if (!sub) {
                snprintf(err, err_size, "creds %s: the JWT has no readable \"sub\"", name);
        } else if (creds_decode_user_seed(seed, raw) < 0) {
                snprintf(err, err_size, "creds %s: the nkey seed is not a valid user seed", name);
        } else if (derive_public(raw, pub) < 0) {
                snprintf(err, err_size, "creds %s: cannot derive the public key", name);
        } else if (strcmp(pub, sub) != 0) {
                snprintf(err, err_size, "creds %s: the seed's public key %s does not match the JWT sub %.64s", name,
                         pub, sub);
        } else {
                *id = strdup(pub);
                r = *id ? 0 : -ENOMEM;
        }
        if (seed) {
                explicit_bzero(seed, strlen(seed));
                free(seed);
        }
        free(sub);
        if (r == 0)
                *jwt_out = jwt;
        else
                free(jwt);
        return r;
}

/* Reads and checks a creds file: private mode, then creds_parse. On
 * success *jwt and *id are owned and raw holds the seed (the caller wipes
 * it). */
static int load(const char *path, char **jwt_out, unsigned char raw[32], char **id, char *err, size_t err_size)
{
        struct stat st;
        *id = NULL;
        *jwt_out = NULL;
        if (stat(path, &st) < 0) {
                snprintf(err, err_size, "cannot read creds %s: %s", path, strerror(errno));
                return errno == ENOENT ? -ENOENT : -EINVAL;
        }
        if (st.st_mode & 077) {
                snprintf(err, err_size,
                         "refusing creds %s: it is readable by group or others (mode %04o); "
                         "chmod 600 it",
                         path, (unsigned)(st.st_mode & 07777));
                return -EPERM;
        }
        FILE *f = fopen(path, "r");
        if (!f) {
                snprintf(err, err_size, "cannot read creds %s: %s", path, strerror(errno));
                return -EINVAL;
        }
        char *text = calloc(1, CREDS_MAX_BYTES + 1);
        size_t n = text ? fread(text, 1, CREDS_MAX_BYTES, f) : 0;
        fclose(f);
        if (!text)
                return -ENOMEM;
        int r = creds_parse(text, path, jwt_out, raw, id, err, err_size);
        explicit_bzero(text, n);
        free(text);
        return r;
}

int creds_identity(const char *path, char **id, char *err, size_t err_size)
{
        unsigned char raw[32];
        char *jwt = NULL;
        int r = load(path, &jwt, raw, id, err, err_size);
        explicit_bzero(raw, sizeof raw);
        free(jwt);
        return r;
}

int creds_source_init(creds_source *s, const char *path, char *err, size_t err_size)
{
        memset(s, 0, sizeof *s);
        pthread_mutex_init(&s->lock, NULL);
        int r = load(path, &s->jwt, s->seed, &s->id, err, err_size);
        if (r == 0 && !(s->path = strdup(path)))
                r = -ENOMEM;
        if (r < 0)
                creds_source_fini(s);
        return r;
}

void creds_source_fini(creds_source *s)
{
        explicit_bzero(s->seed, sizeof s->seed);
        free(s->jwt);
        free(s->id);
        free(s->path);
        pthread_mutex_destroy(&s->lock);
        memset(s, 0, sizeof *s);
}

/* Under s->lock. */
static int reload_locked(creds_source *s, char *err, size_t err_size)
{
        unsigned char raw[32];
        char *jwt = NULL, *id = NULL;
        int r = load(s->path, &jwt, raw, &id, err, err_size);
        if (r == 0 && strcmp(id, s->id) != 0) {
                snprintf(err, err_size, "creds %s: the identity changed from %s to %s, which takes a restart", s->path,
                         s->id, id);
                r = -EINVAL;
        }
        if (r == 0 && strcmp(jwt, s->jwt) != 0) {
                free(s->jwt);
                s->jwt = jwt;
                jwt = NULL;
                memcpy(s->seed, raw, sizeof raw);
                s->rotations++;
                r = 1;
        }
        explicit_bzero(raw, sizeof raw);
        free(jwt);
        free(id);
        return r;
}

int creds_source_reload(creds_source *s, char *err, size_t err_size)
{
        pthread_mutex_lock(&s->lock);
        int r = reload_locked(s, err, err_size);
        /* The caller logs a rejection; reconnects then stay quiet on it. */
        snprintf(s->last_error, sizeof s->last_error, "%s", r >= 0 ? "" : err);
        pthread_mutex_unlock(&s->lock);
        return r;
}

natsStatus creds_source_jwt_cb(char **jwt, char **err_text, void *closure)
{
        creds_source *s = closure;
        char err[512];
        pthread_mutex_lock(&s->lock);
        int r = reload_locked(s, err, sizeof err);
        if (r == 1)
                log_notice("Connecting with rotated creds from %s (JWT changed, identity %s)", s->path, s->id);
        else if (r < 0 && strcmp(err, s->last_error) != 0) {
                /* Once per distinct problem: reconnects retry every few
                 * hundred ms. */
                log_warning("Rejected the creds file on reconnect: %s; using the last good creds", err);
                snprintf(s->last_error, sizeof s->last_error, "%s", err);
        }
        if (r >= 0)
                s->last_error[0] = '\0';
        *jwt = strdup(s->jwt);
        pthread_mutex_unlock(&s->lock);
        if (!*jwt) {
                *err_text = strdup("out of memory copying the user JWT");
                return NATS_NO_MEMORY;
        }
        return NATS_OK;
}

natsStatus creds_source_sign_cb(char **err_text, unsigned char **sig, int *sig_len, const char *nonce, void *closure)
{
        creds_source *s = closure;
        pthread_mutex_lock(&s->lock);
        EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, s->seed, 32);
        pthread_mutex_unlock(&s->lock);
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        unsigned char *out = malloc(64);
        size_t len = 64;
        bool ok = k && ctx && out && EVP_DigestSignInit(ctx, NULL, NULL, NULL, k) == 1 &&
                  EVP_DigestSign(ctx, out, &len, (const unsigned char *)nonce, strlen(nonce)) == 1 && len == 64;
        EVP_MD_CTX_free(ctx);
        EVP_PKEY_free(k);
        if (!ok) {
                free(out);
                *err_text = strdup("cannot sign the server nonce with the creds seed");
                return NATS_ERR;
        }
        *sig = out;
        *sig_len = (int)len;
        return NATS_OK;
}

char *creds_generate_id(void)
{
        unsigned char pub[32];
        char out[57];
        if (getrandom(pub, sizeof pub, 0) != (ssize_t)sizeof pub)
                return NULL;
        return creds_encode_user_key(pub, out) == 0 ? strdup(out) : NULL;
}
