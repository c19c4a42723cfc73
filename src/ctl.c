/* ctl: what every cotal-deliveryctl subcommand shares (see ctl.h): the
 * connection, time and JSON output. The subcommands (ctl_*.c) and the
 * program's main (deliveryctl.c) depend on this file; it depends on
 * neither. */
#include "ctl.h"

#include "broker.h"
#include "clock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

volatile sig_atomic_t ctl_interrupted;

int64_t ctl_now_ms(void)
{
        return clock_wall_ms();
}

const char *ctl_format_time(int64_t ms, char *buf, size_t size)
{
        time_t secs = (time_t)(ms / 1000);
        struct tm tm;
        gmtime_r(&secs, &tm);
        size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(buf + n, size - n, ".%03dZ", (int)(ms % 1000));
        return buf;
}

void ctl_print_json(json_t *v)
{
        char *s = v ? json_dumps(v, JSON_COMPACT) : NULL;
        if (s) {
                fputs(s, stdout);
                fputc('\n', stdout);
                fflush(stdout);
        }
        free(s);
        json_decref(v);
}

int ctl_connect(ctl_ctx *c)
{
        int r = contract_names_init(&c->names, c->space, strlen(c->space));
        if (r < 0) {
                fprintf(stderr, "cotal-deliveryctl: invalid --space \"%s\": %s\n", c->space,
                        r == -EILSEQ ? "not valid UTF-8" : strerror(-r));
                return CTL_EXIT_USAGE;
        }
        char err[512];
        broker_config bc = {
                .servers = c->server,
                .creds_file = c->creds,
                .name = "cotal:deliveryctl",
                .connect_timeout_ms = c->timeout_ms,
        };
        r = broker_connect(&bc, &c->nc, err, sizeof err);
        if (r < 0) {
                fprintf(stderr, "cotal-deliveryctl: Failed to connect to %s: %s\n",
                        c->server ? c->server : BROKER_DEFAULT_URL, err);
                return CTL_EXIT_FAILURE;
        }
        return CTL_EXIT_OK;
}

void ctl_disconnect(ctl_ctx *c)
{
        if (c->nc) {
                natsConnection_Close(c->nc);
                natsConnection_Destroy(c->nc);
                c->nc = NULL;
        }
        contract_names_fini(&c->names);
}
