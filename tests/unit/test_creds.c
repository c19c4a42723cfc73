/* Unit tests for creds: the daemon id is the nkey public key derived from
 * the creds seed and must equal the JWT's sub (PROTOCOL §10.2 step 3). The
 * seed / public key pair is the example pair published with the NATS
 * documentation. */
#include "creds.h"

#include "unit.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEED "SUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3VY"
#define PUB "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4"

/* base64url without padding, enough for a claims object. */
static void b64url(const char *in, char *out)
{
        static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        size_t n = strlen(in), o = 0;
        for (size_t i = 0; i < n; i += 3) {
                unsigned v = (unsigned char)in[i] << 16;
                if (i + 1 < n)
                        v |= (unsigned char)in[i + 1] << 8;
                if (i + 2 < n)
                        v |= (unsigned char)in[i + 2];
                out[o++] = t[(v >> 18) & 63];
                out[o++] = t[(v >> 12) & 63];
                if (i + 1 < n)
                        out[o++] = t[(v >> 6) & 63];
                if (i + 2 < n)
                        out[o++] = t[v & 63];
        }
        out[o] = '\0';
}

/* Writes a creds file with a JWT whose sub is sub and the given seed. */
static char *creds_file(const char *sub, const char *seed, mode_t mode)
{
        char claims[256], payload[400];
        snprintf(claims, sizeof claims, "{\"sub\":\"%s\",\"name\":\"delivery\"}", sub);
        b64url(claims, payload);
        char *path = strdup("/tmp/cotal-creds-XXXXXX");
        int fd = mkstemp(path);
        FILE *f = fdopen(fd, "w");
        fprintf(f,
                "-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.%s.c2ln\n"
                "------END NATS USER JWT------\n\n************************* IMPORTANT *************************\n"
                "NKEY Seed printed below can be used to sign and prove identity.\n\n"
                "-----BEGIN USER NKEY SEED-----\n%s\n------END USER NKEY SEED------\n",
                payload, seed);
        fclose(f);
        chmod(path, mode);
        return path;
}

START_TEST(identity_is_the_seed_public_key)
{
        char *path = creds_file(PUB, SEED, 0600), *id = NULL, err[256];
        ck_assert_int_eq(creds_identity(path, &id, err, sizeof err), 0);
        ck_assert_str_eq(id, PUB);
        free(id);
        unlink(path);
        free(path);
}
END_TEST

START_TEST(sub_mismatch_is_refused)
{
        char *path = creds_file("UBOBBOBBOBBOBBOBBOBBOBBOBBOBBOBBOBBOBBOBBOBBOBBOBBOBBOBB", SEED, 0600), *id = NULL,
             err[256];
        ck_assert_int_eq(creds_identity(path, &id, err, sizeof err), -EINVAL);
        ck_assert_ptr_null(id);
        ck_assert_msg(strstr(err, "does not match the JWT sub") && strstr(err, PUB), "%s", err);
        ck_assert_ptr_null(strstr(err, SEED)); /* never a secret in a message */
        unlink(path);
        free(path);
}
END_TEST

START_TEST(open_or_bad_files_are_refused)
{
        char *id = NULL, err[256];
        char *path = creds_file(PUB, SEED, 0640);
        ck_assert_int_eq(creds_identity(path, &id, err, sizeof err), -EPERM);
        ck_assert_msg(strstr(err, "readable by group or others"), "%s", err);
        unlink(path);
        free(path);
        /* A seed with a broken checksum. */
        path = creds_file(PUB, "SUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3AA", 0600);
        ck_assert_int_eq(creds_identity(path, &id, err, sizeof err), -EINVAL);
        ck_assert_msg(strstr(err, "not a valid user seed"), "%s", err);
        unlink(path);
        free(path);
        ck_assert_int_eq(creds_identity("/nonexistent/delivery.creds", &id, err, sizeof err), -ENOENT);
        ck_assert_ptr_null(id);
}
END_TEST

START_TEST(seed_decoding_checks_prefix_and_crc)
{
        unsigned char raw[32];
        ck_assert_int_eq(creds_decode_user_seed(SEED, raw), 0);
        ck_assert_int_eq(creds_decode_user_seed("SUACSSL3", raw), -EINVAL); /* short */
        ck_assert_int_eq(creds_decode_user_seed(PUB, raw), -EINVAL);        /* a public key */
        ck_assert_int_eq(creds_decode_user_seed("sUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3VY", raw),
                         -EINVAL); /* not base32 */
}
END_TEST

START_TEST(crc16_and_base32)
{
        /* CRC-16/XMODEM check value. */
        ck_assert_uint_eq(creds_crc16((const unsigned char *)"123456789", 9), 0x31C3);
        /* RFC 4648 test vectors, without padding. */
        char out[64];
        unsigned char back[64];
        size_t n = 0;
        ck_assert_int_eq(creds_base32_encode((const unsigned char *)"foobar", 6, out, sizeof out), 0);
        ck_assert_str_eq(out, "MZXW6YTBOI");
        ck_assert_int_eq(creds_base32_decode(out, strlen(out), back, sizeof back, &n), 0);
        ck_assert_uint_eq(n, 6);
        ck_assert_int_eq(memcmp(back, "foobar", 6), 0);
        ck_assert_int_eq(creds_base32_decode("MZ1W", 4, back, sizeof back, &n), -EINVAL);
        ck_assert_int_eq(creds_base32_encode((const unsigned char *)"foobar", 6, out, 10), -ENOSPC);
}
END_TEST

START_TEST(generated_ids_are_well_formed_and_distinct)
{
        char *a = creds_generate_id(), *b = creds_generate_id();
        ck_assert_ptr_nonnull(a);
        ck_assert_ptr_nonnull(b);
        ck_assert_uint_eq(strlen(a), 56);
        ck_assert_int_eq(a[0], 'U');
        ck_assert_str_ne(a, b);
        unsigned char raw[40];
        size_t n = 0;
        ck_assert_int_eq(creds_base32_decode(a, strlen(a), raw, sizeof raw, &n), 0);
        ck_assert_uint_eq(n, 35);
        unsigned crc = creds_crc16(raw, 33);
        ck_assert_uint_eq(raw[33], crc & 0xFF);
        ck_assert_uint_eq(raw[34], crc >> 8);
        free(a);
        free(b);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("creds");
        TCase *tc = tcase_create("creds");
        tcase_add_test(tc, identity_is_the_seed_public_key);
        tcase_add_test(tc, sub_mismatch_is_refused);
        tcase_add_test(tc, open_or_bad_files_are_refused);
        tcase_add_test(tc, seed_decoding_checks_prefix_and_crc);
        tcase_add_test(tc, crc16_and_base32);
        tcase_add_test(tc, generated_ids_are_well_formed_and_distinct);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
