/* log: stderr logging with sd-daemon priority prefixes. The level and the
 * output mode are the only module state; a line is written with one
 * write(2) so lines from different threads never interleave. */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096

static atomic_int max_level = LOG_INFO;
static bool with_prefix = true;
static const char *log_ident = "";

void log_setup(const char *ident, bool prefixes)
{
        log_ident = ident ? ident : "";
        with_prefix = prefixes;
}

void log_set_max_level(int priority)
{
        atomic_store(&max_level, priority);
}

static const char *const level_names[] = {
        [LOG_ERR] = "err",   [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
        [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

int log_level_from_string(const char *s)
{
        if (!s)
                return -1;
        for (int p = LOG_ERR; p <= LOG_DEBUG; p++)
                if (strcasecmp(s, level_names[p]) == 0)
                        return p;
        if (strcasecmp(s, "error") == 0)
                return LOG_ERR;
        if (strcasecmp(s, "warn") == 0)
                return LOG_WARNING;
        if (s[0] >= '3' && s[0] <= '7' && s[1] == '\0')
                return s[0] - '0';
        return -1;
}

const char *log_level_to_string(int priority)
{
        if (priority < LOG_ERR || priority > LOG_DEBUG)
                return "?";
        return level_names[priority];
}

void log_msg(int priority, const char *fmt, ...)
{
        if (priority > atomic_load(&max_level))
                return;

        char line[LOG_LINE_MAX];
        int n;
        if (with_prefix)
                n = snprintf(line, sizeof line, "<%d>", priority);
        else
                n = snprintf(line, sizeof line, "%s", log_ident);
        if (n < 0)
                return;

        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
        va_end(ap);
        if (m < 0)
                return;
        size_t len = (size_t)n + (size_t)m;
        if (len > sizeof line - 2)
                len = sizeof line - 2; /* truncated; keep the newline */
        /* One event, one line: fold embedded newlines (they could come from
         * broker error texts) so journald does not split the event. */
        for (size_t i = (size_t)n; i < len; i++)
                if (line[i] == '\n' || line[i] == '\r')
                        line[i] = ' ';
        line[len++] = '\n';
        ssize_t w = write(STDERR_FILENO, line, len);
        (void)w;
}
