/* cotal-deliveryctl: operator tool for a Cotal space's delivery plane:
 * provisioning (PROTOCOL §11.2), lease / ACL / membership inspection and
 * edits an operator needs. It never runs delivery itself. */
#include "build_config.h"
#include "broker.h"
#include "clock.h"
#include "ctl.h"
#include "log.h"
#include "provision.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char usage_text[] =
        "Usage: cotal-deliveryctl [OPTIONS] COMMAND [ARGS]\n"
        "\n"
        "Commands:\n"
        "  provision                      create the space's streams, KV buckets and\n"
        "                                 =defaults (PROTOCOL §11.2); idempotent\n"
        "  lease show                     the delivery lease: holder, ready, since,\n"
        "                                 revision, age, time left before the TTL\n"
        "  lease watch                    one line per lease change, until interrupted\n"
        "  acl show OWNER                 an agent's read ACL\n"
        "  acl set OWNER [PATTERN...]     replace it\n"
        "  acl grant OWNER PATTERN...     add patterns\n"
        "  acl revoke OWNER PATTERN...    remove patterns\n"
        "  members list [--channel C] [--owner O]\n"
        "                                 durable memberships\n"
        "  dlv create OWNER               the agent's deliver durable dlv_<OWNER>\n"
        "  status                         lease, fanout/reader and dlv_ consumers' pending counts\n"
        "  diag                           the running daemon's counters, lease, link, effective\n"
        "                                 configuration and last 64 connection events, read\n"
        "                                 from its socket (no broker needed; see --socket)\n"
        "\n"
        "Options:\n"
        "  --server URL[,URL...]  broker (default " BROKER_DEFAULT_URL ")\n"
        "  --space NAME           the space (required)\n"
        "  --creds FILE           NATS user credentials (JWT + seed)\n"
        "  --json                 machine-readable output, one JSON document per line\n"
        "  --timeout MS           request timeout (default 5000)\n"
        "  --replicas N           provision: stream and bucket replicas (default 1)\n"
        "  --channel C, --owner O members list filters (exact match)\n"
        "  --count N              lease watch: exit after N lines\n"
        "  --socket PATH          diag: the daemon's socket (default\n"
        "                         " CTL_DIAG_DIR "/SPACE/diag.sock)\n"
        "  -h, --help             this text\n"
        "  --version              print the version\n"
        "\n"
        "Exit codes: 0 success, 1 broker or JetStream failure, 2 usage error,\n"
        "3 conflict (existing configuration differs, or a concurrent write won),\n"
        "4 not found (no lease, no ACL record).\n";

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "cotal-deliveryctl: ");
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, " (see --help)\n");
        va_end(ap);
        return CTL_EXIT_USAGE;
}

static void print_report(const ctl_ctx *c, const prov_report *rep)
{
        if (c->json) {
                json_t *j = prov_report_json(rep);
                json_object_set_new(j, "space", json_string(c->space));
                json_object_set_new(j, "created", json_integer((json_int_t)prov_report_count(rep, PROV_CREATED)));
                json_object_set_new(j, "found", json_integer((json_int_t)prov_report_count(rep, PROV_FOUND)));
                json_object_set_new(j, "conflicts", json_integer((json_int_t)prov_report_count(rep, PROV_CONFLICT)));
                ctl_print_json(j);
                return;
        }
        for (size_t i = 0; i < rep->n; i++) {
                const prov_item *it = &rep->items[i];
                printf("%-8s %-9s %s\n", prov_action_name(it->action), it->kind, it->name);
                size_t k;
                json_t *d;
                json_array_foreach (it->details, k, d)
                        printf("         - %s\n", json_string_value(d));
        }
        printf("%zu created, %zu found, %zu updated, %zu conflicting\n", prov_report_count(rep, PROV_CREATED),
               prov_report_count(rep, PROV_FOUND), prov_report_count(rep, PROV_UPDATED),
               prov_report_count(rep, PROV_CONFLICT));
}

static int report_exit(const ctl_ctx *c, const prov_report *rep, int r)
{
        print_report(c, rep);
        if (r == -EEXIST) {
                fprintf(stderr, "cotal-deliveryctl: refusing to change existing objects whose configuration "
                                "differs from PROTOCOL.md; fix or delete them by hand\n");
                return CTL_EXIT_CONFLICT;
        }
        if (r < 0) {
                fprintf(stderr, "cotal-deliveryctl: provisioning stopped: %s\n", strerror(-r));
                return CTL_EXIT_FAILURE;
        }
        return CTL_EXIT_OK;
}

static int cmd_provision(ctl_ctx *c)
{
        prov_report rep = {0};
        int r = provision_space(c->nc, &c->names, c->replicas, &rep);
        int code = report_exit(c, &rep, r);
        prov_report_fini(&rep);
        return code;
}

static int cmd_dlv_create(ctl_ctx *c)
{
        prov_report rep = {0};
        int r = provision_dlv(c->nc, &c->names, c->args[0], &rep);
        int code = report_exit(c, &rep, r);
        prov_report_fini(&rep);
        return code;
}

static void on_signal(int sig)
{
        (void)sig;
        ctl_interrupted = 1;
}

/* Commands: words, positional-argument bounds, handler. */
typedef struct command {
        const char *w1, *w2;
        int min_args, max_args; /* -1: unbounded */
        int (*run)(ctl_ctx *c);
        bool offline; /* runs without a broker connection */
} command;

static int cmd_acl_show(ctl_ctx *c)
{
        return ctl_acl(c, "show");
}
static int cmd_acl_set(ctl_ctx *c)
{
        return ctl_acl(c, "set");
}
static int cmd_acl_grant(ctl_ctx *c)
{
        return ctl_acl(c, "grant");
}
static int cmd_acl_revoke(ctl_ctx *c)
{
        return ctl_acl(c, "revoke");
}

static const command commands[] = {
        {"provision", NULL, 0, 0, cmd_provision, false},
        {"lease", "show", 0, 0, ctl_lease_show, false},
        {"lease", "watch", 0, 0, ctl_lease_watch, false},
        {"acl", "show", 1, 1, cmd_acl_show, false},
        {"acl", "set", 1, -1, cmd_acl_set, false},
        {"acl", "grant", 2, -1, cmd_acl_grant, false},
        {"acl", "revoke", 2, -1, cmd_acl_revoke, false},
        {"members", "list", 0, 0, ctl_members_list, false},
        {"dlv", "create", 1, 1, cmd_dlv_create, false},
        {"status", NULL, 0, 0, ctl_status, false},
        {"diag", NULL, 0, 0, ctl_diag, true},
};

static int parse_long(const char *s, long min, long max, long *out)
{
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || end == s || *end || v < min || v > max)
                return -EINVAL;
        *out = v;
        return 0;
}

int main(int argc, char **argv)
{
        enum {
                OPT_SERVER = 256,
                OPT_SPACE,
                OPT_CREDS,
                OPT_JSON,
                OPT_TIMEOUT,
                OPT_REPLICAS,
                OPT_CHANNEL,
                OPT_OWNER,
                OPT_COUNT,
                OPT_SOCKET,
                OPT_VERSION
        };
        static const struct option options[] = {
                {"server", required_argument, NULL, OPT_SERVER},
                {"space", required_argument, NULL, OPT_SPACE},
                {"creds", required_argument, NULL, OPT_CREDS},
                {"json", no_argument, NULL, OPT_JSON},
                {"timeout", required_argument, NULL, OPT_TIMEOUT},
                {"replicas", required_argument, NULL, OPT_REPLICAS},
                {"channel", required_argument, NULL, OPT_CHANNEL},
                {"owner", required_argument, NULL, OPT_OWNER},
                {"count", required_argument, NULL, OPT_COUNT},
                {"socket", required_argument, NULL, OPT_SOCKET},
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, OPT_VERSION},
                {0},
        };
        ctl_ctx c = {.timeout_ms = 5000, .replicas = 1};
        long v;

        log_setup("cotal-deliveryctl: ", false);
        opterr = 0;
        int opt;
        while ((opt = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
                switch (opt) {
                case OPT_SERVER: c.server = optarg; break;
                case OPT_SPACE: c.space = optarg; break;
                case OPT_CREDS: c.creds = optarg; break;
                case OPT_JSON: c.json = true; break;
                case OPT_CHANNEL: c.channel = optarg; break;
                case OPT_OWNER: c.owner = optarg; break;
                case OPT_SOCKET: c.socket = optarg; break;
                case OPT_TIMEOUT:
                        if (parse_long(optarg, 1, 600000, &v) < 0)
                                return usage_error("--timeout needs milliseconds in 1..600000, got \"%s\"", optarg);
                        c.timeout_ms = v;
                        break;
                case OPT_REPLICAS:
                        if (parse_long(optarg, 1, 5, &v) < 0)
                                return usage_error("--replicas needs 1..5, got \"%s\"", optarg);
                        c.replicas = (int)v;
                        break;
                case OPT_COUNT:
                        if (parse_long(optarg, 1, 1000000000, &v) < 0)
                                return usage_error("--count needs a positive number, got \"%s\"", optarg);
                        c.count = v;
                        break;
                case 'h': fputs(usage_text, stdout); return CTL_EXIT_OK;
                case OPT_VERSION: printf("cotal-deliveryctl %s\n", PACKAGE_VERSION); return CTL_EXIT_OK;
                case ':': return usage_error("option %s needs a value", argv[optind - 1]);
                default: return usage_error("unknown option %s", argv[optind - 1]);
                }
        }

        char **pos = argv + optind;
        int npos = argc - optind;
        if (npos == 0)
                return usage_error("%s", "no command given");
        const command *cmd = NULL;
        for (size_t i = 0; i < sizeof commands / sizeof *commands; i++) {
                if (strcmp(pos[0], commands[i].w1) != 0)
                        continue;
                if (!commands[i].w2 || (npos > 1 && strcmp(pos[1], commands[i].w2) == 0)) {
                        cmd = &commands[i];
                        break;
                }
        }
        if (!cmd)
                return usage_error("unknown command \"%s%s%s\"", pos[0], npos > 1 ? " " : "", npos > 1 ? pos[1] : "");
        int words = cmd->w2 ? 2 : 1;
        c.args = pos + words;
        c.n_args = npos - words;
        if (c.n_args < cmd->min_args || (cmd->max_args >= 0 && c.n_args > cmd->max_args))
                return usage_error("wrong number of arguments for \"%s\"", cmd->w1);
        if ((c.channel || c.owner) && cmd->run != ctl_members_list)
                return usage_error("%s", "--channel and --owner only apply to \"members list\"");
        if (c.socket && !cmd->offline)
                return usage_error("%s", "--socket only applies to \"diag\"");
        if (!c.space && !(cmd->offline && c.socket))
                return usage_error("%s", "--space is required");
        if (cmd->offline)
                return cmd->run(&c);

        struct sigaction sa = {.sa_handler = on_signal};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);

        int code = ctl_connect(&c);
        if (code == CTL_EXIT_OK)
                code = cmd->run(&c);
        ctl_disconnect(&c);
        nats_CloseAndWait(2000);
        return code;
}
