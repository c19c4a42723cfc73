/* replay: the driver of the `fuzz` test suite. Feeds every regular file of
 * the corpus directories (or files) named on the command line to the
 * target's LLVMFuzzerTestOneInput, once each, in name order. An invariant
 * violation or a sanitizer report aborts; an empty corpus fails, so the
 * test cannot pass by finding nothing. */
#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>

static int run_file(const char *path)
{
        FILE *f = fopen(path, "rb");
        if (!f) {
                fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
                return -1;
        }
        size_t cap = 4096, len = 0;
        uint8_t *buf = malloc(cap);
        FUZZ_CHECK(buf != NULL);
        size_t n;
        while ((n = fread(buf + len, 1, cap - len, f)) > 0) {
                len += n;
                if (len == cap) {
                        cap *= 2;
                        buf = realloc(buf, cap);
                        FUZZ_CHECK(buf != NULL);
                }
        }
        int bad = ferror(f);
        fclose(f);
        if (bad) {
                fprintf(stderr, "replay: cannot read %s\n", path);
                free(buf);
                return -1;
        }
        /* An exact-size copy, so ASan sees reads past the input's end. */
        uint8_t *exact = malloc(len ? len : 1);
        FUZZ_CHECK(exact != NULL);
        memcpy(exact, buf, len);
        free(buf);
        LLVMFuzzerTestOneInput(exact, len);
        free(exact);
        return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
        return strcmp((*a)->d_name, (*b)->d_name);
}

int main(int argc, char **argv)
{
        size_t files = 0;
        int failed = 0;
        for (int i = 1; i < argc; i++) {
                struct stat st;
                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
                        return 1;
                }
                if (!S_ISDIR(st.st_mode)) {
                        failed |= run_file(argv[i]) < 0;
                        files++;
                        continue;
                }
                struct dirent **names;
                int n = scandir(argv[i], &names, NULL, by_name);
                if (n < 0) {
                        fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
                        return 1;
                }
                for (int j = 0; j < n; j++) {
                        char path[4096];
                        snprintf(path, sizeof path, "%s/%s", argv[i], names[j]->d_name);
                        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                                failed |= run_file(path) < 0;
                                files++;
                        }
                        free(names[j]);
                }
                free(names);
        }
        printf("replay: %zu inputs\n", files);
        if (files == 0) {
                fprintf(stderr, "replay: no inputs\n");
                return 1;
        }
        return failed;
}
