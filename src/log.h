/* log: one line per event on stderr, with sd-daemon "<N>" priority prefixes
 * so journald keeps the level (sd-daemon(3)). Never logs secrets: callers
 * pass ids and subjects, never creds or seeds. */
#pragma once

#include <stdbool.h>
#include <syslog.h>

/* Priorities are syslog's: LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO,
 * LOG_DEBUG. */

/* prefixes: write "<N>" before each line (journald); the daemon enables it
 * unless stderr is a terminal, command-line tools disable it.
 * ident: printed after the prefix when prefixes are off ("cotal-deliveryctl: "),
 * borrowed, must outlive logging. */
void log_setup(const char *ident, bool prefixes);
void log_set_max_level(int priority);
/* "err", "warning", "notice", "info", "debug" (also numeric 3-7). Returns the
 * priority or -1. */
int log_level_from_string(const char *s);
const char *log_level_to_string(int priority);

void log_msg(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
