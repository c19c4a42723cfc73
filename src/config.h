/* config: cotal-deliveryd's settings from the command line (PROTOCOL
 * §10.1 plus our extensions), the environment and an optional key=value
 * file. Precedence: flags > environment > file > defaults. Everything is
 * validated here, before any network activity; a bad value is an error
 * naming the flag, or file:line. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CONFIG_DEFAULT_BROKER_GONE_MS 15000 /* §10.1, Appendix A */
#define CONFIG_DEFAULT_INFLIGHT_MIB 8
/* Environment variables: COTAL_DELIVERYD_<KEY> for every key (e.g.
 * COTAL_DELIVERYD_LOG_LEVEL), COTAL_DELIVERYD_CONFIG for the file; the
 * upstream COTAL_DELIVERY_BROKER_GONE_MS (§10.1) sits below them. */
#define CONFIG_ENV_PREFIX "COTAL_DELIVERYD_"

typedef struct config {
        char *space;            /* raw space name */
        char *server;           /* URL list */
        char *creds;            /* creds file path, NULL with no_auth */
        bool no_auth;           /* E3: open broker, generated id */
        bool standby;           /* wait for a held lease instead of exit 1 */
        bool creds_defaulted;   /* creds is the §10.1 default path */
        char *config_file;
        int log_level;          /* syslog priority */
        int64_t broker_gone_ms; /* §10.3 */
        int fanout_batch;       /* chat messages per fetch */
        int reader_batch;       /* inbox entries per fetch */
        int inbox_lead_limit;   /* E1: unread entries per owner before fan-out pauses */
        int inflight_mib;       /* message data each worker holds in flight (issue 14) */
        int64_t shutdown_timeout_ms;
        char *diag_socket;      /* unix socket path; NULL: none (see diag.h) */
} config;

typedef enum {
        CONFIG_OK = 0,
        CONFIG_EXIT_OK,   /* --help / --version printed: exit 0 */
        CONFIG_USAGE,     /* bad or missing arguments: exit 2 (E4) */
        CONFIG_FAILURE,   /* e.g. unreadable config file: exit 1 */
} config_result;

/* Parses argv, the environment (env may be NULL: use getenv) and the
 * --config file. On CONFIG_USAGE/CONFIG_FAILURE err holds a one-line
 * message. The shard flags are checked first (§10.2 step 1). */
config_result config_load(config *c, int argc, char **argv, char *err, size_t err_size);
void config_fini(config *c);

/* The --config file format read from f (borrowed; path names it in
 * messages): one "key = value" per line, '#' comments, blank lines. Sets
 * the keys it names in c, leaves the others. CONFIG_OK or CONFIG_USAGE with
 * "path:line: ..." in err. Used by config_load; exposed for the fuzzer. */
config_result config_load_stream(config *c, FILE *f, const char *path, char *err, size_t err_size);

/* Help text for --help. */
extern const char config_usage[];
