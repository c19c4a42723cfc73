/* jwt: nkeys and NATS v2 JWTs for operator-mode tests (see jwt.h). The
 * formats follow nats-io/nkeys (strkey.go) and nats-io/jwt v2 (claims.go),
 * the versions nats-server 2.9 is built with. Base32 and CRC-16 come from
 * the daemon's creds module, which reads the same nkey encoding. */
#include "jwt.h"

#include "creds.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* nkeys prefix bytes: the top five bits of the first byte pick the letter
 * the base32 text starts with. */
#define NKEY_PREFIX_SEED (18 << 3)     /* 'S' */
#define NKEY_PREFIX_OPERATOR (14 << 3) /* 'O' */
#define NKEY_PREFIX_ACCOUNT 0          /* 'A' */
#define NKEY_PREFIX_USER (20 << 3)     /* 'U' */
#define NKEY_RAW_BYTES 32
#define NKEY_SIG_BYTES 64
#define NKEY_TEXT_MAX 64

/* jwt v2 accepts only this header for version 2 claims. */
#define JWT_HEADER "{\"typ\":\"JWT\",\"alg\":\"ed25519-nkey\"}"
#define JWT_VERSION 2

static int prefix_byte(char type)
{
        switch (type) {
        case 'O': return NKEY_PREFIX_OPERATOR;
        case 'A': return NKEY_PREFIX_ACCOUNT;
        case 'U': return NKEY_PREFIX_USER;
        default: return -1;
        }
}

/* base32(raw[0..n) + CRC-16 little endian), as every nkey text is. */
static int nkey_text(unsigned char *raw, size_t n, char out[NKEY_TEXT_MAX])
{
        unsigned crc = creds_crc16(raw, n);
        raw[n] = (unsigned char)(crc & 0xFF);
        raw[n + 1] = (unsigned char)(crc >> 8);
        return creds_base32_encode(raw, n + 2, out, NKEY_TEXT_MAX);
}

static int encode_public(int prefix, const unsigned char pub[NKEY_RAW_BYTES], char out[NKEY_TEXT_MAX])
{
        unsigned char raw[1 + NKEY_RAW_BYTES + 2];
        raw[0] = (unsigned char)prefix;
        memcpy(raw + 1, pub, NKEY_RAW_BYTES);
        return nkey_text(raw, 1 + NKEY_RAW_BYTES, out);
}

/* A seed carries the seed prefix and the key type in its first 10 bits,
 * so "SU…" is a user seed and "SA…" an account seed. */
static int encode_seed(int prefix, const unsigned char seed[NKEY_RAW_BYTES], char out[NKEY_TEXT_MAX])
{
        unsigned char raw[2 + NKEY_RAW_BYTES + 2];
        raw[0] = (unsigned char)(NKEY_PREFIX_SEED | (prefix >> 5));
        raw[1] = (unsigned char)((prefix & 31) << 3);
        memcpy(raw + 2, seed, NKEY_RAW_BYTES);
        int r = nkey_text(raw, 2 + NKEY_RAW_BYTES, out);
        OPENSSL_cleanse(raw, sizeof raw);
        return r;
}

/* The 32 raw seed bytes of k, after checking the text's CRC. */
static int decode_seed(const jwt_key *k, unsigned char seed[NKEY_RAW_BYTES])
{
        unsigned char raw[NKEY_TEXT_MAX];
        size_t n = 0;
        int r = -EINVAL;
        if (creds_base32_decode(k->seed, strlen(k->seed), raw, sizeof raw, &n) == 0 && n == 2 + NKEY_RAW_BYTES + 2) {
                unsigned crc = creds_crc16(raw, n - 2);
                if (raw[n - 2] == (crc & 0xFF) && raw[n - 1] == (crc >> 8) && (raw[0] & 0xF8) == NKEY_PREFIX_SEED) {
                        memcpy(seed, raw + 2, NKEY_RAW_BYTES);
                        r = 0;
                }
        }
        OPENSSL_cleanse(raw, sizeof raw);
        return r;
}

bool jwt_key_new(jwt_key *k, char type)
{
        int prefix = prefix_byte(type);
        unsigned char seed[NKEY_RAW_BYTES], pub[NKEY_RAW_BYTES];
        size_t pub_len = sizeof pub;
        memset(k, 0, sizeof *k);
        if (prefix < 0 || RAND_bytes(seed, sizeof seed) != 1)
                return false;
        EVP_PKEY *pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, sizeof seed);
        bool ok = pk && EVP_PKEY_get_raw_public_key(pk, pub, &pub_len) == 1 && pub_len == sizeof pub &&
                  encode_seed(prefix, seed, k->seed) == 0 && encode_public(prefix, pub, k->pub) == 0;
        EVP_PKEY_free(pk);
        OPENSSL_cleanse(seed, sizeof seed);
        return ok;
}

/* Ed25519 signature of msg by k's seed. */
static int sign(const jwt_key *k, const char *msg, size_t len, unsigned char sig[NKEY_SIG_BYTES])
{
        unsigned char seed[NKEY_RAW_BYTES];
        if (decode_seed(k, seed) < 0)
                return -EINVAL;
        EVP_PKEY *pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, sizeof seed);
        OPENSSL_cleanse(seed, sizeof seed);
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        size_t sig_len = NKEY_SIG_BYTES;
        /* Ed25519 is one-shot: no digest, the whole message at once. */
        bool ok = pk && ctx && EVP_DigestSignInit(ctx, NULL, NULL, NULL, pk) == 1 &&
                  EVP_DigestSign(ctx, sig, &sig_len, (const unsigned char *)msg, len) == 1 && sig_len == NKEY_SIG_BYTES;
        EVP_MD_CTX_free(ctx);
        EVP_PKEY_free(pk);
        return ok ? 0 : -EINVAL;
}

/* RFC 4648 §5 base64url without padding, as JWTs use. Owned. */
static char *base64url(const unsigned char *in, size_t len)
{
        static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        char *out = malloc((len + 2) / 3 * 4 + 1);
        if (!out)
                return NULL;
        size_t o = 0;
        unsigned acc = 0;
        int bits = 0;
        for (size_t i = 0; i < len; i++) {
                acc = (acc << 8) | in[i];
                bits += 8;
                while (bits >= 6) {
                        out[o++] = alphabet[(acc >> (bits - 6)) & 63];
                        bits -= 6;
                }
        }
        if (bits > 0)
                out[o++] = alphabet[(acc << (6 - bits)) & 63];
        out[o] = '\0';
        return out;
}

/* jwt v2 sets "jti" to base32(SHA-512/256(standard claims as JSON)),
 * hashed before jti itself is set. nats-server 2.9 never checks it; we
 * compute it anyway so a token reads like one nsc wrote. Go escapes
 * <, > and & in JSON and jansson does not, so names with those characters
 * get a different (still unique) id. Owned. */
static char *claims_id(const json_t *standard)
{
        char *json = json_dumps(standard, JSON_COMPACT | JSON_PRESERVE_ORDER);
        unsigned char digest[EVP_MAX_MD_SIZE];
        unsigned digest_len = 0;
        char text[NKEY_TEXT_MAX * 2];
        bool ok = json && EVP_Digest(json, strlen(json), digest, &digest_len, EVP_sha512_256(), NULL) == 1 &&
                  creds_base32_encode(digest, digest_len, text, sizeof text) == 0;
        free(json);
        return ok ? strdup(text) : NULL;
}

/* "<header>.<claims>.<signature>", claims being the standard claims plus
 * nats (stolen), signed by issuer. Owned. */
static char *issue(const jwt_key *issuer, const char *subject, const char *name, int64_t expires, json_t *nats)
{
        /* Field order of jwt's ClaimsData, so the jti hash input matches. */
        json_t *claims = json_object();
        if (expires > 0)
                json_object_set_new(claims, "exp", json_integer(expires));
        json_object_set_new(claims, "iat", json_integer((json_int_t)time(NULL)));
        json_object_set_new(claims, "iss", json_string(issuer->pub));
        if (name && *name)
                json_object_set_new(claims, "name", json_string(name));
        json_object_set_new(claims, "sub", json_string(subject));
        char *id = claims_id(claims);
        char *payload = NULL, *header = NULL, *body = NULL, *signed_part = NULL, *sig_text = NULL, *token = NULL;
        unsigned char sig[NKEY_SIG_BYTES];
        if (!id || !nats)
                goto out;
        json_object_set_new(claims, "jti", json_string(id));
        json_object_set(claims, "nats", nats);
        payload = json_dumps(claims, JSON_COMPACT | JSON_PRESERVE_ORDER);
        header = base64url((const unsigned char *)JWT_HEADER, strlen(JWT_HEADER));
        body = payload ? base64url((const unsigned char *)payload, strlen(payload)) : NULL;
        if (!header || !body || asprintf(&signed_part, "%s.%s", header, body) < 0) {
                signed_part = NULL;
                goto out;
        }
        /* v2 signs "<header>.<claims>" (v1 signed the claims alone). */
        if (sign(issuer, signed_part, strlen(signed_part), sig) == 0)
                sig_text = base64url(sig, sizeof sig);
        if (sig_text && asprintf(&token, "%s.%s", signed_part, sig_text) < 0)
                token = NULL;
out:
        json_decref(nats);
        json_decref(claims);
        free(id);
        free(payload);
        free(header);
        free(body);
        free(signed_part);
        free(sig_text);
        return token;
}

char *jwt_operator(const jwt_key *op, const char *name)
{
        if (op->pub[0] != 'O')
                return NULL;
        return issue(op, op->pub, name, 0, json_pack("{s:s, s:i}", "type", "operator", "version", JWT_VERSION));
}

/* jwt's OperatorLimits flattens NATS, account and JetStream limits into one
 * object; -1 is "unlimited" and an absent (zero) JetStream storage limit
 * leaves JetStream disabled for the account. */
static json_t *account_limits(bool jetstream)
{
        json_t *l = json_pack("{s:i, s:i, s:i, s:i, s:i, s:b, s:i, s:i}", "subs", -1, "data", -1, "payload", -1,
                              "imports", -1, "exports", -1, "wildcards", 1, "conn", -1, "leaf", -1);
        json_t *js = jetstream ? json_pack("{s:i, s:i, s:i, s:i}", "mem_storage", -1, "disk_storage", -1, "streams", -1,
                                           "consumer", -1)
                               : NULL;
        if (l && js)
                json_object_update(l, js);
        json_decref(js);
        return l;
}

char *jwt_account(const jwt_key *op, const jwt_key *acct, const char *name, bool jetstream)
{
        if (op->pub[0] != 'O' || acct->pub[0] != 'A')
                return NULL;
        json_t *nats = json_pack("{s:o, s:{s:{}, s:{}}, s:s, s:i}", "limits", account_limits(jetstream),
                                 "default_permissions", "pub", "sub", "type", "account", "version", JWT_VERSION);
        return issue(op, acct->pub, name, 0, nats);
}

/* A JSON array of the NULL-terminated subjects. */
static json_t *subject_list(const char *const *subjects)
{
        json_t *a = json_array();
        for (size_t i = 0; subjects[i]; i++)
                json_array_append_new(a, json_string(subjects[i]));
        return a;
}

/* jwt's Permission: allow/deny are left out when absent, as omitempty does. */
static json_t *permission(const char *const *allow, const char *const *deny)
{
        json_t *p = json_object();
        if (allow && allow[0])
                json_object_set_new(p, "allow", subject_list(allow));
        if (deny && deny[0])
                json_object_set_new(p, "deny", subject_list(deny));
        return p;
}

char *jwt_user(const jwt_key *acct, const jwt_key *user, const char *name, const jwt_user_perms *perms)
{
        static const jwt_user_perms unrestricted;
        if (acct->pub[0] != 'A' || user->pub[0] != 'U')
                return NULL;
        if (!perms)
                perms = &unrestricted;
        /* Limits as jwt.NewUserClaims sets them: unlimited. */
        json_t *nats =
                json_pack("{s:o, s:o, s:i, s:i, s:i, s:s, s:i}", "pub", permission(perms->pub_allow, perms->pub_deny),
                          "sub", permission(perms->sub_allow, perms->sub_deny), "subs", -1, "data", -1, "payload", -1,
                          "type", "user", "version", JWT_VERSION);
        if (nats && perms->resp)
                json_object_set_new(nats, "resp", json_pack("{s:i, s:i}", "max", 1, "ttl", 0));
        return issue(acct, user->pub, name, perms->expires, nats);
}

int jwt_write_creds(const char *path, const char *user_jwt, const jwt_key *user)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        /* An existing file keeps its mode through O_CREAT: force 0600. */
        if (fchmod(fd, 0600) < 0) {
                int e = -errno;
                close(fd);
                return e;
        }
        FILE *f = fdopen(fd, "w");
        if (!f) {
                int e = -errno;
                close(fd);
                return e;
        }
        /* The layout of jwt.FormatUserConfig, which cnats and the daemon parse. */
        fprintf(f,
                "-----BEGIN NATS USER JWT-----\n%s\n------END NATS USER JWT------\n\n"
                "************************* IMPORTANT *************************\n"
                "NKEY Seed printed below can be used to sign and prove identity.\n"
                "NKEYs are sensitive and should be treated as secrets.\n\n"
                "-----BEGIN USER NKEY SEED-----\n%s\n------END USER NKEY SEED------\n\n"
                "*************************************************************\n",
                user_jwt, user->seed);
        bool failed = ferror(f) != 0;
        if (fclose(f) != 0 || failed)
                return -EIO;
        return 0;
}

static bool contains(const char *const *list, size_t n, const char *s)
{
        for (size_t i = 0; i < n; i++)
                if (strcmp(list[i], s) == 0)
                        return true;
        return false;
}

char *jwt_server_conf(const char *operator_jwt, const char *system_account_pub, const char *const *account_pubs,
                      const char *const *account_jwts, size_t n)
{
        /* nats-server looks the system account up through the resolver at
         * start and exits if it cannot be found. */
        if (!contains(account_pubs, n, system_account_pub))
                return NULL;
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        if (!f)
                return NULL;
        /* An inline operator JWT is accepted where a file name is expected
         * (it starts with "eyJ"); keys and JWTs need no escaping inside
         * quotes (base32 and base64url characters only). */
        fprintf(f, "operator: \"%s\"\nsystem_account: \"%s\"\nresolver: MEMORY\nresolver_preload: {\n", operator_jwt,
                system_account_pub);
        for (size_t i = 0; i < n; i++)
                fprintf(f, "  \"%s\": \"%s\"\n", account_pubs[i], account_jwts[i]);
        fputs("}\n", f);
        if (fclose(f) != 0) {
                free(text);
                return NULL;
        }
        return text;
}

char *jwt_chain_conf(jwt_chain *c)
{
        if (!jwt_key_new(&c->op, 'O') || !jwt_key_new(&c->sys, 'A') || !jwt_key_new(&c->app, 'A'))
                return NULL;
        char *op_jwt = jwt_operator(&c->op, "test-operator");
        char *sys_jwt = jwt_account(&c->op, &c->sys, "SYS", false);
        char *app_jwt = jwt_account(&c->op, &c->app, "APP", true);
        char *conf = NULL;
        if (op_jwt && sys_jwt && app_jwt) {
                const char *pubs[] = {c->sys.pub, c->app.pub};
                const char *jwts[] = {sys_jwt, app_jwt};
                conf = jwt_server_conf(op_jwt, c->sys.pub, pubs, jwts, 2);
        }
        free(op_jwt);
        free(sys_jwt);
        free(app_jwt);
        return conf;
}
