/* fuzz_redact: diag_redact_url, which parses the --server URL list to
 * hide credentials in the diagnostics document ("no secrets", STYLE.md).
 * The reference is how cnats 3.4.1 reads a URL (natsUrl_Create): after an
 * optional "<scheme>://", the user info runs up to the LAST '@'. Every
 * comma-separated URL must come out as the text before the user info,
 * "***", then the '@' and everything after it, so no byte of a user name
 * or password survives. */
#include "fuzz.h"

#include "diag.h"

static void reference(const char *url, char *out)
{
        size_t o = 0;
        for (const char *p = url;;) {
                size_t len = strcspn(p, ",");
                const char *host = p;
                for (const char *q = p; q + 3 <= p + len; q++)
                        if (memcmp(q, "://", 3) == 0) {
                                host = q + 3;
                                break;
                        }
                const char *at = NULL;
                for (const char *q = host; q < p + len; q++)
                        if (*q == '@')
                                at = q;
                if (at) {
                        memcpy(out + o, p, (size_t)(host - p));
                        o += (size_t)(host - p);
                        memcpy(out + o, "***", 3);
                        o += 3;
                        memcpy(out + o, at, (size_t)(p + len - at));
                        o += (size_t)(p + len - at);
                } else {
                        memcpy(out + o, p, len);
                        o += len;
                }
                p += len;
                if (*p != ',')
                        break;
                out[o++] = *p++;
        }
        out[o] = '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *url = fuzz_strndup(data, size);
        char *got = diag_redact_url(url);
        FUZZ_CHECK(got != NULL);
        char *want = malloc(4 * strlen(url) + 8);
        FUZZ_CHECK(want != NULL);
        reference(url, want);
        if (strcmp(got, want) != 0)
                fprintf(stderr, "redact(\"%s\") = \"%s\", want \"%s\"\n", url, got, want);
        FUZZ_CHECK(strcmp(got, want) == 0);
        free(want);
        free(got);
        free(url);
        return 0;
}
