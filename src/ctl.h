/* ctl: the shared context of cotal-deliveryctl's subcommands (one per
 * ctl_*.c file). Output: results on stdout (text or one JSON document per
 * line with --json), diagnostics on stderr. Exit codes are CTL_EXIT_*. */
#pragma once

#include "contract_subject.h"

#include <jansson.h>
#include <nats/nats.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

enum {
        CTL_EXIT_OK = 0,
        CTL_EXIT_FAILURE = 1,  /* broker unreachable, JetStream error */
        CTL_EXIT_USAGE = 2,    /* bad command line */
        CTL_EXIT_CONFLICT = 3, /* existing config differs / CAS lost */
        CTL_EXIT_ABSENT = 4,   /* the record asked for does not exist */
};

typedef struct ctl_ctx {
        /* options (borrowed from argv) */
        const char *server;
        const char *space;
        const char *creds;
        const char *channel;
        const char *owner;
        bool json;
        int replicas;
        int64_t timeout_ms;
        long count;         /* lease watch: stop after this many lines */
        const char *socket; /* diag: the daemon's socket */
        char **args;        /* positional arguments after the command words */
        int n_args;

        /* state, owned: freed by ctl_disconnect */
        natsConnection *nc;
        contract_names names;
} ctl_ctx;

/* Set by SIGINT/SIGTERM during long-running commands (lease watch). */
extern volatile sig_atomic_t ctl_interrupted;

/* Connects and derives names; prints the reason and returns non-zero exit
 * code on failure. */
int ctl_connect(ctl_ctx *c);
void ctl_disconnect(ctl_ctx *c);

/* Prints one JSON document on its own line to stdout. Steals v. */
void ctl_print_json(json_t *v);
/* ISO 8601 UTC with milliseconds into buf. */
const char *ctl_format_time(int64_t ms, char *buf, size_t size);
int64_t ctl_now_ms(void);

int ctl_lease_show(ctl_ctx *c);
/* The current lease as JSON (*json, owned) and as one text line. Returns
 * CTL_EXIT_OK, CTL_EXIT_ABSENT or CTL_EXIT_FAILURE (printed). */
int ctl_lease_current(ctl_ctx *c, json_t **json, char *line, size_t size);
int ctl_status(ctl_ctx *c);
int ctl_lease_watch(ctl_ctx *c);
int ctl_acl(ctl_ctx *c, const char *verb);
int ctl_members_list(ctl_ctx *c);
/* Where the systemd unit's RuntimeDirectory= puts a space's socket. */
#define CTL_DIAG_DIR "/run/cotal-deliveryd"
/* Offline: reads the daemon's diagnostics socket, no broker needed. */
int ctl_diag(ctl_ctx *c);
