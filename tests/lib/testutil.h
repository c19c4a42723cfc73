/* testutil: shared pieces of the integration tests: the broker fixture,
 * running cotal-deliveryctl, and reading JetStream state back raw. */
#pragma once

#include "natsd.h"
#include "proc.h"

#include <check.h>
#include <jansson.h>
#include <nats/nats.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CTL_TIMEOUT_MS 20000

/* The broker of the current test suite (started by tu_broker_setup). */
extern natsd tu_broker;
/* A plain (no auth) connection to it, made by tu_broker_setup. */
extern natsConnection *tu_nc;

/* Unchecked fixture: start nats-server, connect. Exits NATSD_SKIP if no
 * nats-server is installed; fails hard if it cannot start. */
void tu_broker_setup(void);
void tu_broker_teardown(void);
/* Like tu_broker_setup, with conf appended to the server's configuration
 * (e.g. operator mode from jwt_server_conf), but tu_nc is left NULL: an
 * operator-mode server accepts no connection without creds, so the test
 * connects with tu_connect_creds. tu_broker_teardown stops it. */
void tu_broker_setup_conf(const char *conf);
/* Connects to tu_broker with a .creds file (user JWT + seed). err_cb (may
 * be NULL) receives asynchronous errors such as permission violations, on
 * cnats' callback thread. *nc is owned by the caller when NATS_OK and NULL
 * otherwise. */
natsStatus tu_connect_creds(natsConnection **nc, const char *creds, natsErrHandler err_cb, void *closure);

/* The --server value tu_ctl and co_daemon_spawn pass (NULL: tu_broker.url),
 * e.g. a cluster's comma-separated URL list (cluster.h). Borrowed. */
extern const char *tu_servers;

/* Creds file tu_ctl passes to cotal-deliveryctl (NULL: none), for
 * operator-mode brokers. */
extern const char *tu_ctl_creds;
/* Runs cotal-deliveryctl (path from $COTAL_DELIVERYCTL) against tu_broker
 * with --server (and --creds, see tu_ctl_creds) added. args is NULL-terminated. Returns the exit status;
 * *out / *err (may be NULL) get the output (owned). */
int tu_ctl(char **out, char **err, const char *const *args);

/* A JetStream API request that must get a JSON reply: returns it (owned).
 * body (may be NULL) is stolen. */
json_t *tu_api(const char *subject_fmt, const char *a, const char *b, json_t *body);
/* STREAM.INFO config of name, or NULL if the stream does not exist. */
json_t *tu_stream_config(const char *name);

/* Asserts that every field of want (a JSON object literal) equals the
 * same field of have; names the first differing field in the failure. */
void tu_assert_fields(const json_t *want, const json_t *have, const char *what);

/* Parses the single JSON document of a --json output line. */
json_t *tu_parse_line(const char *line);
/* Splits output into lines (owned array of owned strings). */
size_t tu_lines(const char *s, char ***lines);
void tu_lines_free(char **lines, size_t n);

/* Publish to a KV key as a fixture would (no conditions). Returns the rev. */
uint64_t tu_kv_put(const char *bucket, const char *key, const char *value);

/* Runs fn(arg) as the single test of a silent no-fork suite, so fixtures
 * that assert (ck_assert) can be used outside a test program (the bench
 * tools): a failing assertion ends fn and is reported here instead of
 * ending the process. Call from the main thread only. Returns 0, or -EIO
 * with why (may be NULL) set to "file:line: message". */
int tu_guard(void (*fn)(void *arg), void *arg, char *why, size_t why_size);

/* Runs the suite with CK_NOFORK (cnats threads do not survive fork) and
 * returns the process exit status. */
int tu_run(Suite *s);
