/* ctl_status: "status" — what an operator checks first: the lease, the
 * daemon's fanout and reader consumers (pending, ack pending, redelivered)
 * and every agent's deliver durable on DLV_<S>. Read only. */
#include "broker.h"
#include "contract_subject.h"
#include "ctl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATUS_LIST_PAGES 64 /* CONSUMER.LIST pages (256 each) at most */

/* Row of the consumer table from a consumer info object (borrowed). */
static json_t *row(const char *stream, const json_t *info)
{
        uint64_t pending = 0, ack_pending = 0, redelivered = 0, waiting = 0, delivered = 0;
        (void)json_path_u64(info, "num_pending", &pending);
        (void)json_path_u64(info, "num_ack_pending", &ack_pending);
        (void)json_path_u64(info, "num_redelivered", &redelivered);
        (void)json_path_u64(info, "num_waiting", &waiting);
        (void)json_path_u64(info, "delivered.stream_seq", &delivered);
        return json_pack("{s:s, s:s, s:b, s:I, s:I, s:I, s:I, s:I}", "name",
                         json_string_value(json_object_get(info, "name")), "stream", stream, "present", 1, "pending",
                         (json_int_t)pending, "ack_pending", (json_int_t)ack_pending, "redelivered",
                         (json_int_t)redelivered, "waiting", (json_int_t)waiting, "delivered_stream_seq",
                         (json_int_t)delivered);
}

/* One named consumer; a missing one is a row with present:false. */
static int add_one(ctl_ctx *c, json_t *rows, const char *stream, const char *name)
{
        json_t *reply = NULL;
        jsapi_error jerr;
        int r = jsapi_consumer_info(c->nc, stream, name, c->timeout_ms, &reply, &jerr);
        if (r == -EREMOTEIO &&
            (jerr.err_code == JS_ERR_CONSUMER_NOT_FOUND || jerr.err_code == JS_ERR_STREAM_NOT_FOUND)) {
                json_array_append_new(rows, json_pack("{s:s, s:s, s:b}", "name", name, "stream", stream, "present", 0));
                return 0;
        }
        if (r < 0) {
                fprintf(stderr, "cotal-deliveryctl: Failed to read consumer %s/%s: %s\n", stream, name,
                        jerr.description);
                return r;
        }
        json_array_append_new(rows, row(stream, reply));
        json_decref(reply);
        return 0;
}

/* Every dlv_ durable on DLV_<S>, through CONSUMER.LIST pages. */
static int add_dlv(ctl_ctx *c, json_t *rows)
{
        char api[300];
        snprintf(api, sizeof api, "$JS.API.CONSUMER.LIST.%s", c->names.dlv_stream);
        size_t offset = 0;
        for (int page = 0; page < STATUS_LIST_PAGES; page++) {
                json_t *body = json_pack("{s:I}", "offset", (json_int_t)offset), *reply = NULL;
                jsapi_error jerr;
                int r = jsapi_request(c->nc, api, body, c->timeout_ms, &reply, &jerr);
                json_decref(body);
                if (r < 0) {
                        fprintf(stderr, "cotal-deliveryctl: Failed to list consumers of %s: %s\n", c->names.dlv_stream,
                                jerr.description);
                        return r;
                }
                json_t *list = json_object_get(reply, "consumers");
                size_t i;
                json_t *info;
                json_array_foreach (list, i, info) {
                        const char *name = json_string_value(json_object_get(info, "name"));
                        if (name && strncmp(name, "dlv_", 4) == 0)
                                json_array_append_new(rows, row(c->names.dlv_stream, info));
                }
                size_t got = json_array_size(list);
                uint64_t total = 0;
                (void)json_path_u64(reply, "total", &total);
                json_decref(reply);
                offset += got;
                if (got == 0 || offset >= total)
                        break;
        }
        return 0;
}

int ctl_status(ctl_ctx *c)
{
        json_t *lease = NULL, *rows = json_array();
        char line[512];
        int code = ctl_lease_current(c, &lease, line, sizeof line);
        if (code == CTL_EXIT_FAILURE) {
                json_decref(rows);
                return code;
        }
        int r = add_one(c, rows, c->names.chat_stream, CONTRACT_FANOUT_DURABLE);
        if (r == 0)
                r = add_one(c, rows, c->names.inbox_stream, CONTRACT_READER_DURABLE);
        if (r == 0)
                r = add_dlv(c, rows);
        if (r < 0) {
                json_decref(lease);
                json_decref(rows);
                return CTL_EXIT_FAILURE;
        }
        if (c->json) {
                ctl_print_json(json_pack("{s:s, s:s, s:o, s:o}", "space", c->space, "token", c->names.token, "lease",
                                         lease, "consumers", rows));
                return CTL_EXIT_OK;
        }
        printf("space %s (token %s)\n%s\n\n", c->space, c->names.token, line);
        printf("%-62s %-16s %9s %11s %11s\n", "CONSUMER", "STREAM", "PENDING", "ACK_PENDING", "REDELIVERED");
        size_t i;
        json_t *v;
        json_array_foreach (rows, i, v) {
                const char *name = json_string_value(json_object_get(v, "name"));
                const char *stream = json_string_value(json_object_get(v, "stream"));
                if (!json_is_true(json_object_get(v, "present"))) {
                        printf("%-62s %-16s %9s %11s %11s\n", name, stream, "missing", "-", "-");
                        continue;
                }
                printf("%-62s %-16s %9" JSON_INTEGER_FORMAT " %11" JSON_INTEGER_FORMAT " %11" JSON_INTEGER_FORMAT "\n",
                       name, stream, json_integer_value(json_object_get(v, "pending")),
                       json_integer_value(json_object_get(v, "ack_pending")),
                       json_integer_value(json_object_get(v, "redelivered")));
        }
        json_decref(lease);
        json_decref(rows);
        return CTL_EXIT_OK;
}
