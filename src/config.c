/* config: command line, environment and key=value file (see config.h).
 * The file format: one "key = value" per line, '#' comments, blank lines;
 * keys are the long flag names. Unknown keys and bad values are errors
 * with file:line. */
#include "config.h"
#include "build_config.h"

#include "contract_record.h"
#include "contract_token.h"
#include "log.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char config_usage[] =
        "Usage: cotal-deliveryd --space NAME [--server URL] (--creds FILE | --no-auth) [OPTIONS]\n"
        "\n"
        "The Plane-3 durable-delivery daemon of one Cotal space (PROTOCOL.md).\n"
        "\n"
        "  --space NAME         the space (required)\n"
        "  --server URL[,URL]   broker (default nats://127.0.0.1:4222)\n"
        "  --creds FILE         delivery-profile creds (JWT + seed); default\n"
        "                       <root>/.cotal/delivery.creds as upstream\n"
        "  --no-auth            open broker, no creds: a generated daemon id\n"
        "  --config FILE        key = value settings (env COTAL_DELIVERYD_CONFIG)\n"
        "  --log-level LEVEL    err, warning, notice, info (default), debug\n"
        "  --broker-gone-ms MS  exit when the broker is unreachable this long\n"
        "                       (default 15000; env COTAL_DELIVERY_BROKER_GONE_MS)\n"
        "  --fanout-batch N     chat messages per fetch (1-1024, default 256)\n"
        "  --reader-batch N     inbox entries per fetch (1-1000, default 256)\n"
        "  --inbox-lead-limit N most unread inbox entries per owner; more wait for\n"
        "                       the reader (10-900, default 500; > fanout-batch)\n"
        "  --inflight-mib N     MiB of message data each worker (fan-out, reader,\n"
        "                       catch-up) holds in flight: pulled, being published,\n"
        "                       held; bounds the RSS (2-1024, default 8)\n"
        "  --shutdown-timeout-ms MS  bound on a clean stop (default 5000)\n"
        "  --diag-socket PATH   diagnostics socket for `cotal-deliveryctl diag`\n"
        "                       (default $RUNTIME_DIRECTORY/diag.sock under\n"
        "                       systemd, else none; \"none\" turns it off)\n"
        "  --standby            if the lease is held, wait and take it over once\n"
        "                       it is released or expires (instead of exit 1)\n"
        "  --shard N, --shards N  only shard 0 of 1 is supported\n"
        "  --version, -h/--help\n"
        "\n"
        "Every setting is also read from COTAL_DELIVERYD_<NAME> (e.g.\n"
        "COTAL_DELIVERYD_LOG_LEVEL=debug); flags win over the environment, the\n"
        "environment over the --config file.\n"
        "\n"
        "SIGHUP re-reads the configuration (log level and tunables change at\n"
        "once; space, server and creds at the next start).\n"
        "\n"
        "Exit codes: 0 stopped by SIGTERM/SIGINT, 1 runtime failure (broker\n"
        "unreachable, lease held or lost, bind failure), 2 usage error.\n";

/* One settable value: flag name (also the file key), parser. */
typedef enum { K_STRING, K_INT, K_MS, K_LEVEL, K_BOOL } key_type;

typedef struct key_def {
        const char *name;
        key_type type;
        long long min, max;
        size_t offset; /* into config */
        bool in_file;  /* may appear in the config file */
} key_def;

#define OFF(f) offsetof(config, f)
static const key_def keys[] = {
        {"space", K_STRING, 0, 0, OFF(space), true},
        {"server", K_STRING, 0, 0, OFF(server), true},
        {"creds", K_STRING, 0, 0, OFF(creds), true},
        {"no-auth", K_BOOL, 0, 1, OFF(no_auth), true},
        {"log-level", K_LEVEL, 0, 0, OFF(log_level), true},
        {"broker-gone-ms", K_MS, 1, 86400000, OFF(broker_gone_ms), true},
        {"fanout-batch", K_INT, 1, 1024, OFF(fanout_batch), true},
        {"reader-batch", K_INT, 1, 1000, OFF(reader_batch), true},
        {"inbox-lead-limit", K_INT, 10, 900, OFF(inbox_lead_limit), true},
        {"inflight-mib", K_INT, 2, 1024, OFF(inflight_mib), true},
        {"shutdown-timeout-ms", K_MS, 100, 60000, OFF(shutdown_timeout_ms), true},
        {"diag-socket", K_STRING, 0, 0, OFF(diag_socket), true},
        {"standby", K_BOOL, 0, 1, OFF(standby), true},
};

static const key_def *find_key(const char *name)
{
        for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
                if (strcmp(keys[i].name, name) == 0)
                        return &keys[i];
        return NULL;
}

/* Stores value into c per k. Returns 0 or -EINVAL with why filled. */
static int set_value(config *c, const key_def *k, const char *value, char *why, size_t why_size)
{
        void *field = (char *)c + k->offset;
        char *end;
        switch (k->type) {
        case K_STRING: {
                if (!*value) {
                        snprintf(why, why_size, "%s needs a non-empty value", k->name);
                        return -EINVAL;
                }
                char *copy = strdup(value);
                if (!copy)
                        return -ENOMEM;
                free(*(char **)field);
                *(char **)field = copy;
                return 0;
        }
        case K_BOOL:
                if (strcmp(value, "true") == 0 || strcmp(value, "yes") == 0 || strcmp(value, "1") == 0)
                        *(bool *)field = true;
                else if (strcmp(value, "false") == 0 || strcmp(value, "no") == 0 || strcmp(value, "0") == 0)
                        *(bool *)field = false;
                else {
                        snprintf(why, why_size, "%s must be true or false, got \"%.64s\"", k->name, value);
                        return -EINVAL;
                }
                return 0;
        case K_LEVEL: {
                int lvl = log_level_from_string(value);
                if (lvl < 0) {
                        snprintf(why, why_size, "%s must be err, warning, notice, info or debug, got \"%.64s\"",
                                 k->name, value);
                        return -EINVAL;
                }
                *(int *)field = lvl;
                return 0;
        }
        case K_INT:
        case K_MS: {
                errno = 0;
                long long v = strtoll(value, &end, 10);
                if (errno || end == value || *end || v < k->min || v > k->max) {
                        snprintf(why, why_size, "%s must be an integer in %lld..%lld, got \"%.64s\"", k->name,
                                 k->min, k->max, value);
                        return -EINVAL;
                }
                if (k->type == K_INT)
                        *(int *)field = (int)v;
                else
                        *(int64_t *)field = v;
                return 0;
        }
        }
        return -EINVAL;
}

/* Strips the same white space at both ends (a lone CR before a value
 * stayed in it; found by fuzz_config). */
static char *trim(char *s)
{
        while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
                s++;
        size_t n = strlen(s);
        while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
                s[--n] = '\0';
        return s;
}

config_result config_load_stream(config *c, FILE *f, const char *path, char *err, size_t err_size)
{
        char line[4096], why[256];
        unsigned lineno = 0;
        config_result res = CONFIG_OK;
        while (fgets(line, sizeof line, f)) {
                lineno++;
                if (!strchr(line, '\n') && !feof(f)) {
                        snprintf(err, err_size, "%s:%u: line too long", path, lineno);
                        res = CONFIG_USAGE;
                        break;
                }
                char *s = trim(line);
                if (*s == '\0' || *s == '#')
                        continue;
                char *eq = strchr(s, '=');
                if (!eq) {
                        snprintf(err, err_size, "%s:%u: expected \"key = value\"", path, lineno);
                        res = CONFIG_USAGE;
                        break;
                }
                *eq = '\0';
                char *key = trim(s), *value = trim(eq + 1);
                const key_def *k = find_key(key);
                if (!k || !k->in_file) {
                        snprintf(err, err_size, "%s:%u: unknown key \"%.64s\"", path, lineno, key);
                        res = CONFIG_USAGE;
                        break;
                }
                if (set_value(c, k, value, why, sizeof why) < 0) {
                        snprintf(err, err_size, "%s:%u: %s", path, lineno, why);
                        res = CONFIG_USAGE;
                        break;
                }
        }
        return res;
}

static config_result load_file(config *c, const char *path, char *err, size_t err_size)
{
        FILE *f = fopen(path, "r");
        if (!f) {
                snprintf(err, err_size, "cannot read config file %s: %s", path, strerror(errno));
                return CONFIG_FAILURE;
        }
        /* A directory opens, then reads as nothing: the defaults would
         * silently replace every tuned setting (issue 14 item 7). */
        struct stat st;
        if (fstat(fileno(f), &st) == 0 && !S_ISREG(st.st_mode)) {
                snprintf(err, err_size, "config file %s is not a regular file", path);
                fclose(f);
                return CONFIG_FAILURE;
        }
        config_result res = config_load_stream(c, f, path, err, err_size);
        if (res == CONFIG_OK && ferror(f)) {
                snprintf(err, err_size, "cannot read config file %s: %s", path, strerror(errno ? errno : EIO));
                res = CONFIG_FAILURE;
        }
        fclose(f);
        return res;
}

/* COTAL_DELIVERYD_<KEY>: the key upper-cased with '-' as '_'. */
static void env_name(const key_def *k, char *out, size_t size)
{
        size_t n = (size_t)snprintf(out, size, "%s", CONFIG_ENV_PREFIX);
        for (const char *p = k->name; *p && n + 1 < size; p++)
                out[n++] = *p == '-' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
        out[n < size ? n : size - 1] = '\0';
}

/* The environment sits between the file and the flags. An empty variable
 * counts as unset (systemd's Environment=KEY= idiom); a bad value is a
 * usage error naming the variable, like a bad flag. */
static config_result load_env(config *c, char *err, size_t err_size)
{
        char name[64], why[256];
        for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
                env_name(&keys[i], name, sizeof name);
                const char *v = getenv(name);
                if (!v || !*v)
                        continue;
                if (set_value(c, &keys[i], v, why, sizeof why) < 0) {
                        snprintf(err, err_size, "environment %s: %s", name, why);
                        return CONFIG_USAGE;
                }
        }
        return CONFIG_OK;
}

/* §10.2 step 1: shard = 0 / shards = 1 as JS Number() reads them. */
static config_result check_shards(const char *shard, const char *shards, char *err, size_t err_size)
{
        double n = shard ? contract_js_to_number(shard) : 0;
        double total = shards ? contract_js_to_number(shards) : 1;
        if (n == 0 && total == 1)
                return CONFIG_OK;
        char a[40], b[40];
        contract_js_number(n, a, sizeof a);
        contract_js_number(total, b, sizeof b);
        snprintf(err, err_size,
                 "delivery: sharded operation is not supported (N=1 only; got shard=%s shards=%s). The partition() "
                 "seam ships but operating shards>1 needs the channel-prefix grammar — see core-sub-fabric.md.",
                 a, b);
        return CONFIG_USAGE;
}

/* §10.1 default creds: <root>/.cotal/delivery.creds, root = the nearest
 * directory at or above the CWD holding .cotal/ (the CWD if none). */
static char *default_creds_path(void)
{
        char cwd[PATH_MAX], probe[PATH_MAX + 16];
        if (!getcwd(cwd, sizeof cwd))
                return NULL;
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", cwd);
        for (;;) {
                snprintf(probe, sizeof probe, "%s/.cotal", dir);
                if (access(probe, F_OK) == 0)
                        break;
                char *slash = strrchr(dir, '/');
                if (!slash || slash == dir) {
                        snprintf(dir, sizeof dir, "%s", cwd);
                        break;
                }
                *slash = '\0';
        }
        char *path = NULL;
        return asprintf(&path, "%s/.cotal/delivery.creds", dir) < 0 ? NULL : path;
}

/* The diagnostics socket: under systemd's RuntimeDirectory= (the first
 * of a colon-separated list) unless set; "none" turns it off. */
static int default_diag_socket(config *c)
{
        if (c->diag_socket && strcmp(c->diag_socket, "none") == 0) {
                free(c->diag_socket);
                c->diag_socket = NULL;
                return 0;
        }
        const char *rt = getenv("RUNTIME_DIRECTORY");
        if (c->diag_socket || !rt || !*rt)
                return 0;
        if (asprintf(&c->diag_socket, "%.*s/diag.sock", (int)strcspn(rt, ":"), rt) < 0) {
                c->diag_socket = NULL;
                return -ENOMEM;
        }
        return 0;
}

void config_fini(config *c)
{
        if (!c)
                return;
        free(c->space);
        free(c->server);
        free(c->creds);
        free(c->config_file);
        free(c->diag_socket);
        memset(c, 0, sizeof *c);
}

config_result config_load(config *c, int argc, char **argv, char *err, size_t err_size)
{
        enum { OPT_SHARD = 256, OPT_SHARDS, OPT_DEV_MINT, OPT_CONFIG, OPT_VERSION, OPT_KEY };
        static const struct option options[] = {
                {"space", required_argument, NULL, OPT_KEY},
                {"server", required_argument, NULL, OPT_KEY},
                {"creds", required_argument, NULL, OPT_KEY},
                {"no-auth", no_argument, NULL, OPT_KEY},
                {"log-level", required_argument, NULL, OPT_KEY},
                {"broker-gone-ms", required_argument, NULL, OPT_KEY},
                {"fanout-batch", required_argument, NULL, OPT_KEY},
                {"reader-batch", required_argument, NULL, OPT_KEY},
                {"inbox-lead-limit", required_argument, NULL, OPT_KEY},
                {"inflight-mib", required_argument, NULL, OPT_KEY},
                {"shutdown-timeout-ms", required_argument, NULL, OPT_KEY},
                {"diag-socket", required_argument, NULL, OPT_KEY},
                {"standby", no_argument, NULL, OPT_KEY},
                {"shard", required_argument, NULL, OPT_SHARD},
                {"shards", required_argument, NULL, OPT_SHARDS},
                {"dev-mint", no_argument, NULL, OPT_DEV_MINT},
                {"config", required_argument, NULL, OPT_CONFIG},
                {"version", no_argument, NULL, OPT_VERSION},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        /* Flags are collected first and applied last (they win). */
        const char *flag_val[sizeof keys / sizeof *keys] = {0};
        const char *shard = NULL, *shards = NULL;
        bool dev_mint = false;
        char why[256];

        memset(c, 0, sizeof *c);
        c->log_level = LOG_INFO;
        c->broker_gone_ms = CONFIG_DEFAULT_BROKER_GONE_MS;
        c->fanout_batch = 256;
        c->reader_batch = 256;
        c->inbox_lead_limit = 500;
        c->inflight_mib = CONFIG_DEFAULT_INFLIGHT_MIB;
        c->shutdown_timeout_ms = 5000;

        optind = 1;
        opterr = 0;
        int opt, idx = 0;
        while ((opt = getopt_long(argc, argv, ":h", options, &idx)) != -1) {
                switch (opt) {
                case OPT_KEY: {
                        const key_def *k = find_key(options[idx].name);
                        flag_val[k - keys] = optarg ? optarg : "true";
                        break;
                }
                case OPT_SHARD: shard = optarg; break;
                case OPT_SHARDS: shards = optarg; break;
                case OPT_DEV_MINT: dev_mint = true; break;
                case OPT_CONFIG:
                        free(c->config_file);
                        c->config_file = strdup(optarg);
                        break;
                case OPT_VERSION:
                        printf("cotal-deliveryd %s\n", PACKAGE_VERSION);
                        return CONFIG_EXIT_OK;
                case 'h': fputs(config_usage, stdout); return CONFIG_EXIT_OK;
                case ':':
                        snprintf(err, err_size, "option %.64s needs a value", argv[optind - 1]);
                        return CONFIG_USAGE;
                default:
                        snprintf(err, err_size, "unknown option %.64s", argv[optind - 1]);
                        return CONFIG_USAGE;
                }
        }
        if (optind < argc) {
                snprintf(err, err_size, "unexpected argument \"%.64s\"", argv[optind]);
                return CONFIG_USAGE;
        }
        /* §10.2 step 1: before anything else. */
        config_result r = check_shards(shard, shards, err, err_size);
        if (r != CONFIG_OK)
                return r;
        if (dev_mint) {
                snprintf(err, err_size, "--dev-mint is not supported (this daemon never holds the account signer): "
                                        "pass --creds FILE, or --no-auth for an open development broker");
                return CONFIG_USAGE;
        }

        const char *env_file = getenv(CONFIG_ENV_PREFIX "CONFIG");
        if (!c->config_file && env_file && *env_file && !(c->config_file = strdup(env_file)))
                return CONFIG_FAILURE;
        if (c->config_file && (r = load_file(c, c->config_file, err, err_size)) != CONFIG_OK)
                return r;
        /* §10.1: COTAL_DELIVERY_BROKER_GONE_MS, parsed like JS Number();
         * missing, empty, 0 or non-numeric -> 15000. */
        const char *env = getenv("COTAL_DELIVERY_BROKER_GONE_MS");
        if (env) {
                double v = contract_js_to_number(env);
                if (isfinite(v) && v > 0)
                        c->broker_gone_ms = (int64_t)ceil(v);
                else
                        c->broker_gone_ms = CONFIG_DEFAULT_BROKER_GONE_MS;
        }
        if ((r = load_env(c, err, err_size)) != CONFIG_OK)
                return r;
        for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
                if (!flag_val[i])
                        continue;
                if (set_value(c, &keys[i], flag_val[i], why, sizeof why) < 0) {
                        snprintf(err, err_size, "--%s", why);
                        return CONFIG_USAGE;
                }
        }

        if (!c->space) {
                snprintf(err, err_size, "delivery: --space is required (the scoped creds file does not encode it)");
                return CONFIG_USAGE;
        }
        if (!contract_utf8_valid(c->space, strlen(c->space))) {
                snprintf(err, err_size, "--space is not valid UTF-8");
                return CONFIG_USAGE;
        }
        char *tok = NULL;
        if (contract_token(c->space, strlen(c->space), &tok) < 0 || strlen(tok) > 200) {
                free(tok);
                snprintf(err, err_size, "--space is too long (its token must fit in 200 bytes)");
                return CONFIG_USAGE;
        }
        free(tok);
        /* E1 (PROTOCOL §14.4): every message of one fetched batch may go to
         * the same owner, whose unread entries must stay under the lead
         * limit; a batch that cannot fit under it is a setting that can
         * only ever hold messages back. */
        if (c->fanout_batch >= c->inbox_lead_limit) {
                snprintf(err, err_size,
                         "fanout-batch (%d) must be smaller than inbox-lead-limit (%d): one batch of chat messages "
                         "may all go to one owner, and no owner's unread inbox entries may reach the lead limit",
                         c->fanout_batch, c->inbox_lead_limit);
                return CONFIG_USAGE;
        }
        if (c->no_auth && c->creds) {
                snprintf(err, err_size, "--no-auth and --creds exclude each other");
                return CONFIG_USAGE;
        }
        if (!c->no_auth && !c->creds) {
                c->creds = default_creds_path();
                c->creds_defaulted = true;
                if (!c->creds) {
                        snprintf(err, err_size, "cannot determine the default creds path");
                        return CONFIG_FAILURE;
                }
        }
        if (!c->server && !(c->server = strdup("nats://127.0.0.1:4222")))
                return CONFIG_FAILURE;
        return default_diag_socket(c) < 0 ? CONFIG_FAILURE : CONFIG_OK;
}
