/* ctl_lease: "lease show" and "lease watch" — the delivery lease of
 * PROTOCOL §9 (bucket cotal_delivery_<S>, key lease.0, TTL 30 s). Read
 * only: the tool never writes the lease. */
#include "contract_config.h"
#include "contract_record.h"
#include "ctl.h"
#include "kv.h"
#include "kv_watch.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CTL_WATCH_POLL_MS 250
#define CTL_WATCH_RETRY_MS 500

/* One lease state as both commands print it. */
typedef struct lease_view {
        const char *event; /* "present", "put", "deleted", "purged", "expired", "absent" */
        bool present;
        uint64_t revision;
        int64_t written_ms;   /* the entry's stored time (the TTL runs from it) */
        contract_lease lease; /* valid when present && !error */
        const char *error;    /* decode failure, if any */
} lease_view;

static json_t *view_json(const ctl_ctx *c, const lease_view *v)
{
        int64_t now = ctl_now_ms();
        int64_t age = v->present && !v->error ? now - v->lease.since : 0;
        int64_t left = v->present ? v->written_ms + CONTRACT_LEASE_TTL_MS - now : 0;
        json_t *j = json_pack("{s:s, s:s, s:s, s:b}", "space", c->space, "key", CONTRACT_LEASE_KEY, "event", v->event,
                              "present", v->present);
        if (v->revision)
                json_object_set_new(j, "revision", json_integer((json_int_t)v->revision));
        if (v->present && v->error)
                json_object_set_new(j, "error", json_string(v->error));
        if (v->present && !v->error) {
                json_object_set_new(j, "holder", json_string(v->lease.holder));
                json_object_set_new(j, "ready", json_boolean(v->lease.ready));
                json_object_set_new(j, "since", json_integer(v->lease.since));
                json_object_set_new(j, "age_ms", json_integer(age));
        }
        if (v->present)
                json_object_set_new(j, "ttl_left_ms", json_integer(left > 0 ? left : 0));
        return j;
}

/* One line describing v, without a trailing newline. */
static void view_text(const lease_view *v, char *buf, size_t size)
{
        int64_t now = ctl_now_ms();
        char t1[40], t2[40];
        int64_t left = v->present ? v->written_ms + CONTRACT_LEASE_TTL_MS - now : 0;
        if (left < 0)
                left = 0;
        if (!v->present)
                snprintf(buf, size, "%s lease %s: %s", ctl_format_time(now, t1, sizeof t1), v->event,
                         strcmp(v->event, "absent") == 0 ? "no delivery daemon holds the lease" : "lease released");
        else if (v->error)
                snprintf(buf, size, "%s lease %s rev=%" PRIu64 ": unreadable record (%s)",
                         ctl_format_time(v->written_ms, t1, sizeof t1), v->event, v->revision, v->error);
        else
                snprintf(buf, size, "%s lease %s rev=%" PRIu64 " holder=%s ready=%s since=%s age=%.1fs ttl_left=%.1fs",
                         ctl_format_time(v->written_ms, t1, sizeof t1), v->event, v->revision, v->lease.holder,
                         v->lease.ready ? "true" : "false", ctl_format_time(v->lease.since, t2, sizeof t2),
                         (double)(now - v->lease.since) / 1000.0, (double)left / 1000.0);
}

static void print_view(const ctl_ctx *c, const lease_view *v)
{
        if (c->json) {
                ctl_print_json(view_json(c, v));
                return;
        }
        char line[512];
        view_text(v, line, sizeof line);
        printf("%s\n", line);
        fflush(stdout);
}

/* Fills v from one KV entry (op + value). */
static void view_from(lease_view *v, const char *event, kv_op op, uint64_t rev, int64_t time_ms, const char *value,
                      size_t len, char *errbuf, size_t errlen)
{
        memset(v, 0, sizeof *v);
        v->event = event;
        v->revision = rev;
        v->written_ms = time_ms;
        if (op != KV_OP_PUT) {
                v->event = op == KV_OP_DEL ? "deleted" : "purged";
                return;
        }
        v->present = true;
        rec_error err;
        if (contract_lease_decode(value ? value : "", len, &v->lease, &err) != REC_OK)
                v->error = rec_error_str(&err, errbuf, errlen);
}

/* Reads the current lease into v (contract_lease_fini(&v->lease) after).
 * Returns CTL_EXIT_OK (present), CTL_EXIT_ABSENT, or CTL_EXIT_FAILURE with
 * the reason printed. */
static int read_current(ctl_ctx *c, lease_view *v, char *errbuf, size_t errlen)
{
        kv_bucket kv;
        kv_entry e;
        memset(v, 0, sizeof *v);
        int r = kv_bucket_init(&kv, c->nc, c->names.delivery_bucket);
        if (r < 0) {
                fprintf(stderr, "cotal-deliveryctl: Failed to open bucket %s: %s\n", c->names.delivery_bucket,
                        strerror(-r));
                return CTL_EXIT_FAILURE;
        }
        kv.timeout_ms = c->timeout_ms;
        int code;
        r = kv_get(&kv, CONTRACT_LEASE_KEY, &e);
        if (r == -ENOENT) {
                v->event = "absent";
                code = CTL_EXIT_ABSENT;
        } else if (r < 0) {
                fprintf(stderr, "cotal-deliveryctl: Failed to read %s/%s: %s\n", c->names.delivery_bucket,
                        CONTRACT_LEASE_KEY, kv.last_error);
                code = CTL_EXIT_FAILURE;
        } else {
                view_from(v, "present", e.op, e.revision, e.time_ms, e.value, e.len, errbuf, errlen);
                if (!v->present)
                        v->event = "absent"; /* the latest entry is a delete marker */
                code = v->present ? CTL_EXIT_OK : CTL_EXIT_ABSENT;
                kv_entry_fini(&e);
        }
        kv_bucket_fini(&kv);
        return code;
}

int ctl_lease_show(ctl_ctx *c)
{
        lease_view v;
        char errbuf[256];
        int code = read_current(c, &v, errbuf, sizeof errbuf);
        if (code != CTL_EXIT_FAILURE)
                print_view(c, &v);
        contract_lease_fini(&v.lease);
        return code;
}

int ctl_lease_current(ctl_ctx *c, json_t **json, char *line, size_t size)
{
        lease_view v;
        char errbuf[256];
        int code = read_current(c, &v, errbuf, sizeof errbuf);
        if (code != CTL_EXIT_FAILURE) {
                *json = view_json(c, &v);
                view_text(&v, line, size);
        }
        contract_lease_fini(&v.lease);
        return code;
}

static void pause_ms(int64_t ms)
{
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
        nanosleep(&ts, NULL);
}

int ctl_lease_watch(ctl_ctx *c)
{
        kv_watch w;
        char name[64], errbuf[256];
        long lines = 0;
        bool present = false, announced = false;
        int64_t last_write_ms = 0;
        uint64_t last_rev = 0;

        /* A named consumer (PROTOCOL §4.2), unique per invocation. */
        snprintf(name, sizeof name, "ctl_lease_%ld_%lx", (long)getpid(), (unsigned long)ctl_now_ms());
        int r = kv_watch_start(&w, c->nc, c->names.delivery_bucket, CONTRACT_LEASE_KEY, name, NULL);
        if (r < 0) {
                fprintf(stderr, "cotal-deliveryctl: Failed to watch %s/%s: %s\n", c->names.delivery_bucket,
                        CONTRACT_LEASE_KEY, w.last_error);
                kv_watch_stop(&w);
                return CTL_EXIT_FAILURE;
        }
        while (!ctl_interrupted && (c->count == 0 || lines < c->count)) {
                kv_watch_entry e;
                lease_view v;
                r = kv_watch_next(&w, CTL_WATCH_POLL_MS, &e);
                if (r == 0) {
                        /* A watch restart replays the current value: print
                         * it only if it is new. */
                        if (e.revision > last_rev) {
                                /* A replayed entry is the current state,
                                 * not a change. */
                                view_from(&v, e.initial ? "present" : "put", e.op, e.revision, e.time_ms, e.value,
                                          e.len, errbuf, sizeof errbuf);
                                if (e.initial && !v.present)
                                        v.event = "absent";
                                print_view(c, &v);
                                lines++;
                                present = v.present;
                                last_write_ms = e.time_ms;
                                last_rev = e.revision;
                                announced = true;
                                contract_lease_fini(&v.lease);
                        }
                        kv_watch_entry_fini(&e);
                } else if (r == -EAGAIN) {
                        if (!announced) { /* nothing replayed: say so once */
                                memset(&v, 0, sizeof v);
                                v.event = "absent";
                                print_view(c, &v);
                                lines++;
                                announced = true;
                        }
                } else if (r == -ETIMEDOUT) {
                        /* §4.2 / research: TTL expiry produces no watch event. */
                        if (present && ctl_now_ms() > last_write_ms + CONTRACT_LEASE_TTL_MS) {
                                memset(&v, 0, sizeof v);
                                v.event = "expired";
                                print_view(c, &v);
                                lines++;
                                present = false;
                        }
                } else {
                        fprintf(stderr, "cotal-deliveryctl: watch interrupted: %s; retrying\n", w.last_error);
                        pause_ms(CTL_WATCH_RETRY_MS);
                }
        }
        kv_watch_stop(&w);
        return CTL_EXIT_OK;
}
