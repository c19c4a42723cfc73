/* config: command line, environment and key=value file (see config.h).
 * The file format: one "key = value" per line, '#' comments, blank lines;
 * keys are the long flag names. Unknown keys and bad values are errors
 * with file:line. */
#include "config.h"
#include "build_config.h"

#include "contract_constants.h"
#include "contract_js.h"
#include "contract_record.h"
#include "contract_token.h"
#include "log.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The flags that are not settings: they act, or say where settings are. */
static const char usage_head[] =
        "Usage: cotal-deliveryd --space NAME [--server URL] (--creds FILE | --no-auth) [OPTIONS]\n"
        "\n"
        "The Plane-3 durable-delivery daemon of one Cotal space (PROTOCOL.md).\n"
        "\n";
static const char usage_tail[] = "  --config FILE        key = value settings, keys as the long flags\n"
                                 "                       (env COTAL_DELIVERYD_CONFIG)\n"
                                 "  --check-config       validate flags, environment and file, then exit:\n"
                                 "                       0 if valid, 2 with the errors\n"
                                 "  --shard N, --shards N  only shard 0 of 1 is supported\n"
                                 "  --version, -h/--help\n"
                                 "\n"
                                 "Every setting is also read from COTAL_DELIVERYD_<NAME> (e.g.\n"
                                 "COTAL_DELIVERYD_LOG_LEVEL=debug); flags win over the environment, the\n"
                                 "environment over the --config file. An empty value means the default.\n"
                                 "broker-gone-ms also honours upstream's COTAL_DELIVERY_BROKER_GONE_MS.\n"
                                 "\n"
                                 "SIGHUP re-reads the configuration: settings marked [reload] change at\n"
                                 "once, the others at the next start.\n"
                                 "\n"
                                 "Exit codes: 0 stopped by SIGTERM/SIGINT, 1 runtime failure (broker\n"
                                 "unreachable, lease held or lost, bind failure), 2 usage error.\n";

#define OFF(f) offsetof(config, f)
#define DEFAULT_TEXT_(x) #x
#define DEFAULT_TEXT(x) DEFAULT_TEXT_(x)
/* Every setting. A new one is one row here plus its field in struct
 * config (README, "Adding a setting", lists the rest). */
const config_key config_keys[] = {
        {"space", CONFIG_STRING, 0, 0, NULL, CONFIG_AT_START, false, "NAME", "the space (required)", OFF(space)},
        {"server", CONFIG_STRING, 0, 0, "nats://127.0.0.1:4222", CONFIG_AT_START, true, "URL[,URL]",
         "broker, up to 16 URLs of one cluster", OFF(server)},
        {"creds", CONFIG_STRING, 0, 0, NULL, CONFIG_AT_START, false, "FILE",
         "delivery-profile creds (JWT + seed); default <root>/.cotal/delivery.creds as upstream", OFF(creds)},
        {"no-auth", CONFIG_BOOL, 0, 1, "false", CONFIG_AT_START, false, NULL,
         "open broker, no creds: a generated daemon id", OFF(no_auth)},
        {"log-level", CONFIG_LEVEL, 0, 0, "info", CONFIG_AT_RELOAD, false, "LEVEL",
         "err, warning, notice, info or debug", OFF(log_level)},
        {"broker-gone-ms", CONFIG_MS, 1, 86400000, DEFAULT_TEXT(CONTRACT_BROKER_GONE_MS), CONFIG_AT_RELOAD, false, "MS",
         "exit when the broker is unreachable this long", OFF(broker_gone_ms)},
        {"fanout-batch", CONFIG_INT, 1, 1024, "256", CONFIG_AT_RELOAD, false, "N",
         "chat messages per fetch; smaller than inbox-lead-limit", OFF(fanout_batch)},
        {"reader-batch", CONFIG_INT, 1, 1000, "256", CONFIG_AT_RELOAD, false, "N", "inbox entries per fetch",
         OFF(reader_batch)},
        {"inbox-lead-limit", CONFIG_INT, 10, 900, "500", CONFIG_AT_RELOAD, false, "N",
         "most unread inbox entries per owner; more wait for the reader", OFF(inbox_lead_limit)},
        {"inflight-mib", CONFIG_INT, 2, 1024, "8", CONFIG_AT_RELOAD, false, "N",
         "MiB of message data each worker (fan-out, reader, catch-up) holds in flight: pulled, being published, "
         "held; bounds the RSS",
         OFF(inflight_mib)},
        {"shutdown-timeout-ms", CONFIG_MS, 100, 60000, "5000", CONFIG_AT_RELOAD, false, "MS", "bound on a clean stop",
         OFF(shutdown_timeout_ms)},
        {"diag-socket", CONFIG_STRING, 0, 0, NULL, CONFIG_AT_START, false, "PATH",
         "diagnostics socket for `cotal-deliveryctl diag` (default $RUNTIME_DIRECTORY/diag.sock under systemd, "
         "else none; \"none\" turns it off)",
         OFF(diag_socket)},
        {"standby", CONFIG_BOOL, 0, 1, "false", CONFIG_AT_START, false, NULL,
         "if the lease is held, wait and take it over once it is released or expires (instead of exit 1)",
         OFF(standby)},
};
const size_t config_n_keys = sizeof config_keys / sizeof *config_keys;

static const config_key *find_key(const char *name)
{
        for (size_t i = 0; i < config_n_keys; i++)
                if (strcmp(config_keys[i].name, name) == 0)
                        return &config_keys[i];
        return NULL;
}

static void *field_of(const config *c, const config_key *k)
{
        return (char *)c + k->offset;
}

/* Stores value into c per k; an empty value stores the default (for a
 * string without one: unset). Returns 0 or -EINVAL with why filled. */
static int set_value(config *c, const config_key *k, const char *value, char *why, size_t why_size)
{
        void *field = field_of(c, k);
        char *end;
        if (!*value && k->type != CONFIG_STRING)
                value = k->def ? k->def : "";
        switch (k->type) {
        case CONFIG_STRING: {
                const char *v = *value ? value : k->def;
                char *copy = v ? strdup(v) : NULL;
                if (v && !copy)
                        return -ENOMEM;
                free(*(char **)field);
                *(char **)field = copy;
                return 0;
        }
        case CONFIG_BOOL:
                if (strcmp(value, "true") == 0 || strcmp(value, "yes") == 0 || strcmp(value, "1") == 0)
                        *(bool *)field = true;
                else if (strcmp(value, "false") == 0 || strcmp(value, "no") == 0 || strcmp(value, "0") == 0)
                        *(bool *)field = false;
                else {
                        snprintf(why, why_size, "%s must be true or false, got \"%.64s\"", k->name, value);
                        return -EINVAL;
                }
                return 0;
        case CONFIG_LEVEL: {
                int lvl = log_level_from_string(value);
                if (lvl < 0) {
                        snprintf(why, why_size, "%s must be err, warning, notice, info or debug, got \"%.64s\"",
                                 k->name, value);
                        return -EINVAL;
                }
                *(int *)field = lvl;
                return 0;
        }
        case CONFIG_INT:
        case CONFIG_MS: {
                errno = 0;
                long long v = strtoll(value, &end, 10);
                if (errno || end == value || *end || v < k->min || v > k->max) {
                        snprintf(why, why_size, "%s must be an integer in %lld..%lld, got \"%.64s\"", k->name, k->min,
                                 k->max, value);
                        return -EINVAL;
                }
                if (k->type == CONFIG_INT)
                        *(int *)field = (int)v;
                else
                        *(int64_t *)field = v;
                return 0;
        }
        }
        return -EINVAL;
}

const char *config_string(const config *c, const config_key *k)
{
        return k->type == CONFIG_STRING ? *(char *const *)field_of(c, k) : NULL;
}

long long config_number(const config *c, const config_key *k)
{
        const void *f = field_of(c, k);
        switch (k->type) {
        case CONFIG_INT:
        case CONFIG_LEVEL: return *(const int *)f;
        case CONFIG_MS: return *(const int64_t *)f;
        case CONFIG_BOOL: return *(const bool *)f;
        case CONFIG_STRING: break;
        }
        return 0;
}

bool config_same(const config *a, const config *b, const config_key *k)
{
        if (k->type != CONFIG_STRING)
                return config_number(a, k) == config_number(b, k);
        const char *x = config_string(a, k), *y = config_string(b, k);
        return x == y || (x && y && strcmp(x, y) == 0);
}

void config_format(const config *c, const config_key *k, char *buf, size_t size)
{
        switch (k->type) {
        case CONFIG_STRING: {
                const char *v = config_string(c, k);
                snprintf(buf, size, "%s", v ? v : "(unset)");
                return;
        }
        case CONFIG_LEVEL: snprintf(buf, size, "%s", log_level_to_string((int)config_number(c, k))); return;
        case CONFIG_BOOL: snprintf(buf, size, "%s", config_number(c, k) ? "true" : "false"); return;
        default: snprintf(buf, size, "%lld", config_number(c, k)); return;
        }
}

int config_copy(config *dst, const config *src, const config_key *k)
{
        void *to = field_of(dst, k);
        const void *from = field_of(src, k);
        switch (k->type) {
        case CONFIG_STRING: {
                const char *v = *(char *const *)from;
                char *copy = v ? strdup(v) : NULL;
                if (v && !copy)
                        return -ENOMEM;
                free(*(char **)to);
                *(char **)to = copy;
                return 0;
        }
        case CONFIG_INT:
        case CONFIG_LEVEL: *(int *)to = *(const int *)from; return 0;
        case CONFIG_MS: *(int64_t *)to = *(const int64_t *)from; return 0;
        case CONFIG_BOOL: *(bool *)to = *(const bool *)from; return 0;
        }
        return 0;
}

/* Words of text, wrapped at 79 columns from column 23. */
static void help_wrapped(FILE *f, const char *text, size_t col)
{
        const size_t indent = 23, width = 79;
        for (const char *p = text; *p;) {
                size_t word = strcspn(p, " ");
                if (col > indent && col + 1 + word > width) {
                        fprintf(f, "\n%*s", (int)indent, "");
                        col = indent;
                } else if (col > indent) {
                        fputc(' ', f);
                        col++;
                }
                fprintf(f, "%.*s", (int)word, p);
                col += word;
                p += word;
                p += strspn(p, " ");
        }
        fputc('\n', f);
}

void config_help(FILE *f)
{
        fputs(usage_head, f);
        for (size_t i = 0; i < config_n_keys; i++) {
                const config_key *k = &config_keys[i];
                char head[64], text[512];
                int n = snprintf(head, sizeof head, "  --%s%s%s", k->name, k->arg ? " " : "", k->arg ? k->arg : "");
                size_t off = (size_t)snprintf(text, sizeof text, "%s", k->help);
                if ((k->type == CONFIG_INT || k->type == CONFIG_MS) && off < sizeof text)
                        off += (size_t)snprintf(text + off, sizeof text - off, " (%lld-%lld, default %s)", k->min,
                                                k->max, k->def);
                else if (k->type == CONFIG_LEVEL && off < sizeof text)
                        off += (size_t)snprintf(text + off, sizeof text - off, " (default %s)", k->def);
                if (k->applies == CONFIG_AT_RELOAD && off < sizeof text)
                        snprintf(text + off, sizeof text - off, " [reload]");
                fputs(head, f);
                if (n < 23)
                        fprintf(f, "%*s", 23 - n, "");
                else
                        fprintf(f, "\n%*s", 23, "");
                help_wrapped(f, text, 23);
        }
        fputs(usage_tail, f);
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

/* Appends one line to err (bounded; what does not fit is left out). */
static void add_error(char *err, size_t err_size, const char *fmt, ...)
{
        size_t used = strlen(err);
        if (used + 2 >= err_size)
                return;
        if (used)
                err[used++] = '\n';
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err + used, err_size - used, fmt, ap);
        va_end(ap);
}

config_result config_load_stream(config *c, FILE *f, const char *path, char *err, size_t err_size)
{
        char line[4096], why[256];
        unsigned lineno = 0;
        config_result res = CONFIG_OK;
        if (err_size)
                err[0] = '\0';
        while (fgets(line, sizeof line, f)) {
                lineno++;
                if (!strchr(line, '\n') && !feof(f)) {
                        add_error(err, err_size, "%s:%u: line too long", path, lineno);
                        res = CONFIG_USAGE;
                        break; /* the rest of the line would read as lines */
                }
                char *s = trim(line);
                if (*s == '\0' || *s == '#')
                        continue;
                char *eq = strchr(s, '=');
                if (!eq) {
                        add_error(err, err_size, "%s:%u: expected \"key = value\"", path, lineno);
                        res = CONFIG_USAGE;
                        continue;
                }
                *eq = '\0';
                char *key = trim(s), *value = trim(eq + 1);
                const config_key *k = find_key(key);
                if (!k) {
                        add_error(err, err_size, "%s:%u: unknown key \"%.64s\"", path, lineno, key);
                        res = CONFIG_USAGE;
                        continue;
                }
                int r = set_value(c, k, value, why, sizeof why);
                if (r == -ENOMEM)
                        return CONFIG_FAILURE;
                if (r < 0) {
                        add_error(err, err_size, "%s:%u: %s", path, lineno, why);
                        res = CONFIG_USAGE;
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
static void env_name(const config_key *k, char *out, size_t size)
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
        for (size_t i = 0; i < config_n_keys; i++) {
                env_name(&config_keys[i], name, sizeof name);
                const char *v = getenv(name);
                if (!v || !*v)
                        continue;
                if (set_value(c, &config_keys[i], v, why, sizeof why) < 0) {
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

enum { OPT_SHARD = 256, OPT_SHARDS, OPT_DEV_MINT, OPT_CONFIG, OPT_CHECK, OPT_VERSION, OPT_KEY };

/* The flags that are not settings. */
static const struct option other_options[] = {
        {"shard", required_argument, NULL, OPT_SHARD},
        {"shards", required_argument, NULL, OPT_SHARDS},
        {"dev-mint", no_argument, NULL, OPT_DEV_MINT},
        {"config", required_argument, NULL, OPT_CONFIG},
        {"check-config", no_argument, NULL, OPT_CHECK},
        {"version", no_argument, NULL, OPT_VERSION},
        {"help", no_argument, NULL, 'h'},
};
#define N_OTHER (sizeof other_options / sizeof *other_options)

/* getopt_long's table: one entry per setting (flag index = row index),
 * then the others, then the terminator. */
static void build_options(struct option *o)
{
        for (size_t i = 0; i < config_n_keys; i++)
                o[i] = (struct option){config_keys[i].name, config_keys[i].arg ? required_argument : optional_argument,
                                       NULL, OPT_KEY};
        memcpy(o + config_n_keys, other_options, sizeof other_options);
        memset(o + config_n_keys + N_OTHER, 0, sizeof *o);
}

/* getopt_long takes any unambiguous prefix ("--spac" for --space) and
 * would read the next word as a switch's value; the daemon wants names
 * spelled out. Returns the first long option not named exactly, or NULL. */
static const char *inexact_option(int argc, char **argv, const struct option *o)
{
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];
                if (strcmp(a, "--") == 0)
                        return NULL;
                if (strncmp(a, "--", 2) != 0)
                        continue;
                size_t len = strcspn(a + 2, "=");
                const struct option *hit = NULL;
                for (const struct option *p = o; p->name; p++)
                        if (strlen(p->name) == len && strncmp(p->name, a + 2, len) == 0)
                                hit = p;
                if (!hit)
                        return a;
                if (hit->has_arg == required_argument && !a[2 + len])
                        i++; /* its value is the next word */
        }
        return NULL;
}

static config_result config_settle(config *c, const char *shard, const char *shards, bool dev_mint,
                                   const char *const *flag_val, char *err, size_t err_size);

config_result config_load(config *c, int argc, char **argv, char *err, size_t err_size)
{
        struct option options[sizeof config_keys / sizeof *config_keys + N_OTHER + 1];
        build_options(options);
        /* Flags are collected first and applied last (they win). */
        const char *flag_val[sizeof config_keys / sizeof *config_keys] = {0};
        const char *shard = NULL, *shards = NULL;
        bool dev_mint = false, check = false;
        char why[256];
        config_result r;

        memset(c, 0, sizeof *c);
        err[0] = '\0';
        for (size_t i = 0; i < config_n_keys; i++)
                if (config_keys[i].def && set_value(c, &config_keys[i], config_keys[i].def, why, sizeof why) < 0)
                        return CONFIG_FAILURE; /* a row whose default is not a value: out of memory */

        const char *bad = inexact_option(argc, argv, options);
        if (bad) {
                snprintf(err, err_size, "unknown option %.64s", bad);
                return CONFIG_USAGE;
        }
        optind = 1;
        opterr = 0;
        int opt, idx = 0;
        while ((opt = getopt_long(argc, argv, ":h", options, &idx)) != -1) {
                switch (opt) {
                case OPT_KEY:
                        /* A switch: "--standby" is true, "--standby=no" says. */
                        flag_val[idx] = optarg ? optarg : config_keys[idx].arg ? "" : "true";
                        break;
                case OPT_SHARD: shard = optarg; break;
                case OPT_SHARDS: shards = optarg; break;
                case OPT_DEV_MINT: dev_mint = true; break;
                case OPT_CHECK: check = true; break;
                case OPT_CONFIG:
                        free(c->config_file);
                        c->config_file = strdup(optarg);
                        break;
                case OPT_VERSION: printf("cotal-deliveryd %s\n", PACKAGE_VERSION); return CONFIG_EXIT_OK;
                case 'h': config_help(stdout); return CONFIG_EXIT_OK;
                case ':': snprintf(err, err_size, "option %.64s needs a value", argv[optind - 1]); return CONFIG_USAGE;
                default: snprintf(err, err_size, "unknown option %.64s", argv[optind - 1]); return CONFIG_USAGE;
                }
        }
        if (optind < argc) {
                snprintf(err, err_size, "unexpected argument \"%.64s\"", argv[optind]);
                return CONFIG_USAGE;
        }
        r = config_settle(c, shard, shards, dev_mint, flag_val, err, err_size);
        if (check && r != CONFIG_OK)
                return CONFIG_USAGE;
        if (check) {
                printf("cotal-deliveryd: configuration OK (space %s%s%s)\n", c->space, c->config_file ? ", file " : "",
                       c->config_file ? c->config_file : "");
                return CONFIG_EXIT_OK;
        }
        return r;
}

/* Everything after the command line: shards, file, environment, flags,
 * and the checks across settings. */
static config_result config_settle(config *c, const char *shard, const char *shards, bool dev_mint,
                                   const char *const *flag_val, char *err, size_t err_size)
{
        char why[256];
        /* §10.2 step 1: before anything else. An empty value is unset. */
        config_result r =
                check_shards(shard && *shard ? shard : NULL, shards && *shards ? shards : NULL, err, err_size);
        if (r != CONFIG_OK)
                return r;
        if (dev_mint) {
                snprintf(err, err_size,
                         "--dev-mint is not supported (this daemon never holds the account signer): "
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
                        c->broker_gone_ms = CONTRACT_BROKER_GONE_MS;
        }
        if ((r = load_env(c, err, err_size)) != CONFIG_OK)
                return r;
        for (size_t i = 0; i < config_n_keys; i++) {
                if (!flag_val[i])
                        continue;
                if (set_value(c, &config_keys[i], flag_val[i], why, sizeof why) < 0) {
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
        return default_diag_socket(c) < 0 ? CONFIG_FAILURE : CONFIG_OK;
}
