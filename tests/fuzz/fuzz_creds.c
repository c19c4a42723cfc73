/* fuzz_creds: the creds file parser (creds_parse: the JWT and nkey seed
 * sections, the JWT's "sub", the seed's prefix and CRC) and the nkey
 * base32 codec under it. An accepted file yields a user public key
 * ("U" + 55 base32 characters) that encodes back to itself; base32
 * round-trips. */
#include "fuzz.h"

#include "creds.h"

#include <errno.h>
#include <stdbool.h>

static bool is_b32(const char *s)
{
        for (; *s; s++)
                if (!((*s >= 'A' && *s <= 'Z') || (*s >= '2' && *s <= '7')))
                        return false;
        return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *text = fuzz_strndup(data, size);
        char *jwt = NULL, *id = NULL, err[512] = "";
        unsigned char raw[32];
        int r = creds_parse(text, "fuzz.creds", &jwt, raw, &id, err, sizeof err);
        if (r == 0) {
                FUZZ_CHECK(jwt && id && strlen(id) == 56 && id[0] == 'U' && is_b32(id));
                FUZZ_CHECK(strchr(jwt, '.') != NULL);
                /* The key is the encoding of 32 bytes: decodable, CRC-checked. */
                unsigned char dec[64];
                size_t n = 0;
                FUZZ_CHECK(creds_base32_decode(id, strlen(id), dec, sizeof dec, &n) == 0 && n == 35);
                FUZZ_CHECK(creds_crc16(dec, 33) == (unsigned)(dec[33] | dec[34] << 8));
                char again[57];
                FUZZ_CHECK(creds_encode_user_key(dec + 1, again) == 0 && strcmp(again, id) == 0);
        } else {
                FUZZ_CHECK(r == -EINVAL && !jwt && !id);
                FUZZ_CHECK(strncmp(err, "creds fuzz.creds: ", 18) == 0);
        }
        free(jwt);
        free(id);

        /* base32: decode whatever the input is, re-encode what decoded. */
        unsigned char bytes[4096];
        size_t n = 0;
        if (size <= 4096 && creds_base32_decode(text, size, bytes, sizeof bytes, &n) == 0) {
                char *enc = malloc(size + 8);
                FUZZ_CHECK(enc && creds_base32_encode(bytes, n, enc, size + 8) == 0);
                /* Canonical inputs come back unchanged; others (non-zero
                 * trailing bits) at least decode to the same bytes. */
                unsigned char again[4096];
                size_t m = 0;
                FUZZ_CHECK(creds_base32_decode(enc, strlen(enc), again, sizeof again, &m) == 0);
                FUZZ_CHECK(m == n && memcmp(again, bytes, n) == 0);
                free(enc);
        }
        (void)creds_decode_user_seed(text, raw);
        free(text);
        return 0;
}
