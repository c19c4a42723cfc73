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

/* Environment variables: COTAL_DELIVERYD_<KEY> for every key (e.g.
 * COTAL_DELIVERYD_LOG_LEVEL), COTAL_DELIVERYD_CONFIG for the file; the
 * upstream COTAL_DELIVERY_BROKER_GONE_MS (§10.1) sits below them. */
#define CONFIG_ENV_PREFIX "COTAL_DELIVERYD_"

typedef struct config {
        char *space;          /* raw space name */
        char *server;         /* URL list */
        char *creds;          /* creds file path, NULL with no_auth */
        bool no_auth;         /* E3: open broker, generated id */
        bool standby;         /* wait for a held lease instead of exit 1 */
        bool creds_defaulted; /* creds is the §10.1 default path */
        char *config_file;
        int log_level;          /* syslog priority */
        int64_t broker_gone_ms; /* §10.3 */
        int fanout_batch;       /* chat messages per fetch */
        int reader_batch;       /* inbox entries per fetch */
        int inbox_lead_limit;   /* E1: unread entries per owner before fan-out pauses */
        int inflight_mib;       /* message data each worker holds in flight (issue 14) */
        int64_t shutdown_timeout_ms;
        char *diag_socket; /* unix socket path; NULL: none (see diag.h) */
} config;

/* One setting: everything about it lives in this row (src/config.c's
 * table), from which the flags, --help, the environment names, the file
 * keys, the diagnostics document and the SIGHUP reload are all made. */
typedef enum { CONFIG_STRING, CONFIG_INT, CONFIG_MS, CONFIG_LEVEL, CONFIG_BOOL } config_type;

typedef enum {
        CONFIG_AT_START,  /* a change on SIGHUP is reported, applied at the next start */
        CONFIG_AT_RELOAD, /* SIGHUP applies a change at once (main.c publishes it) */
} config_when;

typedef struct config_key {
        const char *name; /* --name, the file key, COTAL_DELIVERYD_<NAME> */
        config_type type;
        long long min, max; /* CONFIG_INT, CONFIG_MS */
        const char *def;    /* the default, as a value would be written (NULL: unset) */
        config_when applies;
        bool redact;      /* a URL list: shown with passwords masked */
        const char *arg;  /* the value's name in --help ("N"); NULL: a switch */
        const char *help; /* --help text; the range and default are appended */
        size_t offset;    /* of the field in struct config */
} config_key;

extern const config_key config_keys[];
extern const size_t config_n_keys;

/* True if a and b hold the same value for k. */
bool config_same(const config *a, const config *b, const config_key *k);
/* k's value in c as text ("(unset)" for a NULL string). */
void config_format(const config *c, const config_key *k, char *buf, size_t size);
/* Copies k's value from src into dst. 0 or -ENOMEM. */
int config_copy(config *dst, const config *src, const config_key *k);
/* Field access by row (the diagnostics document). */
const char *config_string(const config *c, const config_key *k);
long long config_number(const config *c, const config_key *k); /* INT, MS, LEVEL, BOOL */

/* Writes --help (generated from the table). */
void config_help(FILE *f);

typedef enum {
        CONFIG_OK = 0,
        CONFIG_EXIT_OK, /* --help / --version printed, --check-config passed: exit 0 */
        CONFIG_USAGE,   /* bad or missing arguments: exit 2 (E4) */
        CONFIG_FAILURE, /* e.g. unreadable config file: exit 1 */
} config_result;

/* Parses argv, the environment and the --config file. On
 * CONFIG_USAGE/CONFIG_FAILURE err holds the message (every error of the
 * file, one per line, "path:line: ..."). The shard flags are checked
 * first (§10.2 step 1). Long options match only when spelled in full; an
 * empty value ("--shards=", "key =") means the default. --check-config
 * validates everything and returns CONFIG_EXIT_OK (printing one line) or
 * CONFIG_USAGE, whatever kind the error (nginx -t, sshd -t). */
config_result config_load(config *c, int argc, char **argv, char *err, size_t err_size);
void config_fini(config *c);

/* The --config file format read from f (borrowed; path names it in
 * messages): one "key = value" per line, '#' comments, blank lines. Sets
 * the keys it names in c, leaves the others. CONFIG_OK or CONFIG_USAGE with
 * every bad line's "path:line: ..." in err (as many as fit). Used by
 * config_load; exposed for the fuzzer. */
config_result config_load_stream(config *c, FILE *f, const char *path, char *err, size_t err_size);
