/* contract_strbuf: see contract_strbuf.h. */
#include "contract_strbuf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *contract_printf(const char *fmt, ...)
{
        va_list ap;
        char *buf;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0)
                return NULL;
        buf = malloc((size_t)n + 1);
        if (buf == NULL)
                return NULL;
        va_start(ap, fmt);
        vsnprintf(buf, (size_t)n + 1, fmt, ap);
        va_end(ap);
        return buf;
}

void contract_sb_add(contract_strbuf *b, const char *s, size_t n)
{
        if (b->failed)
                return;
        if (b->len + n + 1 > b->cap) {
                size_t cap = b->cap ? b->cap : 64;
                char *p;

                while (cap < b->len + n + 1)
                        cap *= 2;
                p = realloc(b->p, cap);
                if (p == NULL) {
                        b->failed = true;
                        return;
                }
                b->p = p;
                b->cap = cap;
        }
        if (n > 0)
                memcpy(b->p + b->len, s, n);
        b->len += n;
        b->p[b->len] = '\0';
}

void contract_sb_str(contract_strbuf *b, const char *s)
{
        contract_sb_add(b, s, strlen(s));
}

int contract_sb_finish(contract_strbuf *b, char **out)
{
        if (!b->failed && b->p == NULL)
                contract_sb_add(b, "", 0);
        if (b->failed) {
                free(b->p);
                *out = NULL;
                return -ENOMEM;
        }
        *out = b->p;
        return 0;
}
