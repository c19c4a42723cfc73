/* provision: stream / bucket / consumer creation with found-or-created
 * reporting. Reads first (INFO), creates only what is missing, compares
 * what exists against contract_config, and never sends an update. */
#include "provision.h"

#include "broker.h"
#include "contract_config.h"
#include "contract_record.h"
#include "kv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *prov_action_name(prov_action a)
{
        switch (a) {
        case PROV_CREATED: return "created";
        case PROV_FOUND: return "found";
        case PROV_UPDATED: return "updated";
        case PROV_CONFLICT: return "conflict";
        default: return "failed";
        }
}

static prov_item *report_add(prov_report *r, const char *kind, const char *name, prov_action a)
{
        if (r->n == r->cap) {
                size_t ncap = r->cap ? r->cap * 2 : 16;
                prov_item *ni = realloc(r->items, ncap * sizeof *ni);
                if (!ni)
                        return NULL;
                r->items = ni;
                r->cap = ncap;
        }
        prov_item *it = &r->items[r->n];
        it->kind = kind;
        it->name = strdup(name);
        it->action = a;
        it->details = json_array();
        if (!it->name || !it->details) {
                free(it->name);
                json_decref(it->details);
                return NULL;
        }
        r->n++;
        return it;
}

static int report_failure(prov_report *r, const char *kind, const char *name, int err, const char *why)
{
        prov_item *it = report_add(r, kind, name, PROV_FAILED);
        if (it)
                json_array_append_new(it->details, json_string(why));
        return err;
}

void prov_report_fini(prov_report *r)
{
        if (!r)
                return;
        for (size_t i = 0; i < r->n; i++) {
                free(r->items[i].name);
                json_decref(r->items[i].details);
        }
        free(r->items);
        memset(r, 0, sizeof *r);
}

size_t prov_report_count(const prov_report *r, prov_action a)
{
        size_t c = 0;
        for (size_t i = 0; i < r->n; i++)
                c += r->items[i].action == a;
        return c;
}

json_t *prov_report_json(const prov_report *r)
{
        json_t *arr = json_array();
        for (size_t i = 0; arr && i < r->n; i++)
                json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:O}", "kind", r->items[i].kind, "name",
                                                     r->items[i].name, "action", prov_action_name(r->items[i].action),
                                                     "details", r->items[i].details));
        return json_pack("{s:o}", "objects", arr);
}

/* INFO, then CREATE if missing (10059), else compare with expected. */
static int ensure_stream(natsConnection *nc, const char *kind, json_t *config, json_t *expected, prov_report *rep)
{
        const char *name = json_string_value(json_object_get(config, "name"));
        char api[256];
        json_t *reply = NULL;
        jsapi_error jerr;

        int r = jsapi_stream_info(nc, name, NULL, 0, &reply, &jerr);
        if (r == -EREMOTEIO && jerr.err_code == JS_ERR_STREAM_NOT_FOUND) {
                snprintf(api, sizeof api, "$JS.API.STREAM.CREATE.%s", name);
                r = jsapi_request(nc, api, config, 0, &reply, &jerr);
                if (r == 0) {
                        json_decref(reply);
                        return report_add(rep, kind, name, PROV_CREATED) ? 0 : -ENOMEM;
                }
                if (r == -EREMOTEIO && jerr.err_code == JS_ERR_STREAM_NAME_IN_USE) {
                        /* Someone created it between our INFO and CREATE. */
                        prov_item *it = report_add(rep, kind, name, PROV_CONFLICT);
                        if (it)
                                json_array_append_new(it->details, json_string(jerr.description));
                        return -EEXIST;
                }
        }
        if (r < 0)
                return report_failure(rep, kind, name, r, jerr.description);

        json_t *diff = json_array();
        size_t ndiff = contract_config_diff(expected, json_object_get(reply, "config"), diff);
        json_decref(reply);
        prov_item *it = report_add(rep, kind, name, ndiff ? PROV_CONFLICT : PROV_FOUND);
        if (it && ndiff)
                json_array_extend(it->details, diff);
        json_decref(diff);
        if (!it)
                return -ENOMEM;
        return ndiff ? -EEXIST : 0;
}

/* Keeps the first failure: a hard error outranks a conflict. */
static int merge_result(int acc, int r)
{
        if (acc < 0 && acc != -EEXIST)
                return acc;
        return r < 0 ? r : acc;
}

/* PROTOCOL §11.2 item 2 [FIX] F3: =defaults gets deliveryClass "durable"
 * when it has none; any other value is left as it is. */
static int ensure_defaults(natsConnection *nc, const contract_names *n, prov_report *rep)
{
        kv_bucket kv;
        kv_entry e;
        int r = kv_bucket_init(&kv, nc, n->channels_bucket);
        if (r < 0)
                return report_failure(rep, "key", CONTRACT_DEFAULTS_KEY, r, "cannot open the channels bucket");

        char name[300];
        snprintf(name, sizeof name, "%s/%s", n->channels_bucket, CONTRACT_DEFAULTS_KEY);
        r = kv_get(&kv, CONTRACT_DEFAULTS_KEY, &e);
        json_t *obj = NULL;
        prov_action action = PROV_CREATED;
        uint64_t last = 0;
        if (r == 0 && e.op == KV_OP_PUT) {
                last = e.revision;
                obj = e.value ? json_loadb(e.value, e.len, 0, NULL) : NULL;
                if (!json_is_object(obj)) {
                        json_decref(obj);
                        kv_entry_fini(&e);
                        kv_bucket_fini(&kv);
                        prov_item *it = report_add(rep, "key", name, PROV_CONFLICT);
                        if (it)
                                json_array_append_new(it->details, json_string("value is not a JSON object"));
                        return -EEXIST;
                }
                action = json_object_get(obj, "deliveryClass") ? PROV_FOUND : PROV_UPDATED;
        } else if (r == 0 || r == -ENOENT) {
                obj = json_object();
        } else {
                kv_bucket_fini(&kv);
                return report_failure(rep, "key", name, r, kv.last_error);
        }
        kv_entry_fini(&e);

        if (action != PROV_FOUND) {
                json_object_set_new(obj, "deliveryClass", json_string("durable"));
                char *value = json_dumps(obj, JSON_COMPACT);
                if (!value)
                        r = -ENOMEM;
                else if (action == PROV_CREATED)
                        r = kv_create(&kv, CONTRACT_DEFAULTS_KEY, value, strlen(value), NULL);
                else
                        r = kv_update(&kv, CONTRACT_DEFAULTS_KEY, value, strlen(value), last, NULL);
                free(value);
        }
        json_decref(obj);
        if (r < 0) {
                r = report_failure(rep, "key", name, r, kv.last_error);
                kv_bucket_fini(&kv);
                return r;
        }
        kv_bucket_fini(&kv);
        return report_add(rep, "key", name, action) ? 0 : -ENOMEM;
}

int provision_space(natsConnection *nc, const contract_names *n, int replicas, prov_report *rep)
{
        int acc = 0;
        for (int s = 0; s < STREAM_COUNT_; s++) {
                json_t *config = contract_stream_config(n, (contract_stream)s, replicas);
                json_t *expected = contract_stream_expected(n, (contract_stream)s, replicas);
                int r = config && expected ? ensure_stream(nc, "stream", config, expected, rep) : -ENOMEM;
                json_decref(config);
                json_decref(expected);
                acc = merge_result(acc, r);
                if (acc < 0 && acc != -EEXIST)
                        return acc;
        }
        for (int b = 0; b < BUCKET_COUNT_; b++) {
                json_t *config = contract_bucket_config(n, (contract_bucket)b, replicas);
                json_t *expected = contract_bucket_expected(n, (contract_bucket)b, replicas);
                int r = config && expected ? ensure_stream(nc, "bucket", config, expected, rep) : -ENOMEM;
                json_decref(config);
                json_decref(expected);
                acc = merge_result(acc, r);
                if (acc < 0 && acc != -EEXIST)
                        return acc;
        }
        return merge_result(acc, ensure_defaults(nc, n, rep));
}

int provision_consumer(natsConnection *nc, const char *stream, const json_t *config, const char *create_subject,
                       prov_report *rep)
{
        const char *durable = json_string_value(json_object_get(config, "durable_name"));
        char name[300];
        json_t *reply = NULL;
        jsapi_error jerr;

        snprintf(name, sizeof name, "%s/%s", stream, durable);
        int r = jsapi_consumer_info(nc, stream, durable, 0, &reply, &jerr);
        if (r == -EREMOTEIO && jerr.err_code == JS_ERR_CONSUMER_NOT_FOUND) {
                json_t *body = json_pack("{s:s, s:O}", "stream_name", stream, "config", config);
                r = body ? jsapi_request(nc, create_subject, body, 0, &reply, &jerr) : -ENOMEM;
                json_decref(body);
                if (r == 0) {
                        json_decref(reply);
                        return report_add(rep, "consumer", name, PROV_CREATED) ? 0 : -ENOMEM;
                }
        }
        if (r < 0)
                return report_failure(rep, "consumer", name, r, jerr.description);

        json_t *diff = json_array();
        size_t ndiff = contract_config_diff(config, json_object_get(reply, "config"), diff);
        json_decref(reply);
        prov_item *it = report_add(rep, "consumer", name, ndiff ? PROV_CONFLICT : PROV_FOUND);
        if (it && ndiff)
                json_array_extend(it->details, diff);
        json_decref(diff);
        if (!it)
                return -ENOMEM;
        return ndiff ? -EEXIST : 0;
}

int provision_dlv(natsConnection *nc, const contract_names *n, const char *owner, prov_report *rep)
{
        json_t *config = contract_dlv_config(n, owner);
        if (!config)
                return -ENOMEM;
        char api[512];
        snprintf(api, sizeof api, "$JS.API.CONSUMER.DURABLE.CREATE.%s.%s", n->dlv_stream,
                 json_string_value(json_object_get(config, "durable_name")));
        int r = provision_consumer(nc, n->dlv_stream, config, api, rep);
        json_decref(config);
        return r;
}
