/* kv: JetStream KV over the permission-safe paths of PROTOCOL §4.2. It never
 * uses cnats' kvStore (which reads by DIRECT.GET and lists keys with unnamed
 * consumers, both denied to the delivery credential). */
#include "kv.h"

#include "broker.h"
#include "contract_channel.h"
#include "contract_subject.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HDR_KV_OPERATION "KV-Operation"
#define HDR_EXPECTED_LAST_SUBJECT_SEQ "Nats-Expected-Last-Subject-Sequence"

static void set_err(kv_bucket *kv, const char *what, natsStatus s, jsErrCode jerr)
{
        const char *text = nats_GetLastError(NULL);
        snprintf(kv->last_error, sizeof kv->last_error, "%s: %s (err_code %d)%s%s", what, natsStatus_GetText(s),
                 (int)jerr, text && *text ? ": " : "", text ? text : "");
}

int kv_bucket_init(kv_bucket *kv, natsConnection *nc, const char *bucket)
{
        memset(kv, 0, sizeof *kv);
        kv->nc = nc;
        kv->timeout_ms = KV_TIMEOUT_MS;
        kv->bucket = strdup(bucket);
        kv->stream = contract_bucket_stream(bucket);
        if (!kv->bucket || !kv->stream) {
                kv_bucket_fini(kv);
                return -ENOMEM;
        }
        jsOptions jo;
        jsOptions_Init(&jo);
        jo.Wait = kv->timeout_ms;
        natsStatus s = natsConnection_JetStream(&kv->js, nc, &jo);
        if (s != NATS_OK) {
                kv_bucket_fini(kv);
                return broker_errno(s);
        }
        return 0;
}

void kv_bucket_fini(kv_bucket *kv)
{
        if (!kv)
                return;
        jsCtx_Destroy(kv->js);
        free(kv->bucket);
        free(kv->stream);
        memset(kv, 0, sizeof *kv);
}

void kv_entry_fini(kv_entry *e)
{
        if (!e)
                return;
        free(e->value);
        memset(e, 0, sizeof *e);
}

int kv_get(kv_bucket *kv, const char *key, kv_entry *out)
{
        memset(out, 0, sizeof *out);
        /* PROTOCOL §4.2: a lookup of an invalid key is "absent". */
        if (!contract_kv_key_valid(key))
                return -ENOENT;
        char *subject = contract_kv_subject(kv->bucket, key);
        if (!subject)
                return -ENOMEM;

        natsMsg *msg = NULL;
        jsErrCode jerr = 0;
        jsOptions jo;
        jsOptions_Init(&jo);
        jo.Wait = kv->timeout_ms;
        natsStatus s = js_GetLastMsg(&msg, kv->js, kv->stream, subject, &jo, &jerr);
        free(subject);
        if (s == NATS_NOT_FOUND && (jerr == JS_ERR_MSG_NOT_FOUND || jerr == 0))
                return -ENOENT;
        if (s != NATS_OK) {
                set_err(kv, "read", s, jerr);
                return jerr == JS_ERR_STREAM_NOT_FOUND ? -ENODEV : broker_errno(s);
        }

        const char *op = NULL;
        if (natsMsgHeader_Get(msg, HDR_KV_OPERATION, &op) == NATS_OK && op) {
                if (strcmp(op, "DEL") == 0)
                        out->op = KV_OP_DEL;
                else if (strcmp(op, "PURGE") == 0)
                        out->op = KV_OP_PURGE;
        }
        out->revision = natsMsg_GetSequence(msg);
        out->time_ms = natsMsg_GetTime(msg) / 1000000;
        int len = natsMsg_GetDataLength(msg);
        if (len > 0) {
                out->value = malloc((size_t)len + 1);
                if (!out->value) {
                        natsMsg_Destroy(msg);
                        return -ENOMEM;
                }
                memcpy(out->value, natsMsg_GetData(msg), (size_t)len);
                out->value[len] = '\0';
                out->len = (size_t)len;
        }
        natsMsg_Destroy(msg);
        return 0;
}

/* Publishes one KV message and waits for the PubAck. expect_last < 0: no
 * condition; otherwise Nats-Expected-Last-Subject-Sequence (0 included,
 * which cnats' ExpectLastSubjectSeq cannot express, §4.2 cnats note). */
static int kv_publish(kv_bucket *kv, const char *key, const char *data, size_t len, const char *op, int64_t expect_last,
                      uint64_t *rev)
{
        if (!contract_kv_key_valid(key)) {
                snprintf(kv->last_error, sizeof kv->last_error, "invalid key \"%s\"", key);
                return -EINVAL;
        }
        char *subject = contract_kv_subject(kv->bucket, key);
        if (!subject)
                return -ENOMEM;
        natsMsg *msg = NULL;
        natsStatus s = natsMsg_Create(&msg, subject, NULL, data, (int)len);
        free(subject);
        if (s == NATS_OK && op)
                s = natsMsgHeader_Set(msg, HDR_KV_OPERATION, op);
        if (s == NATS_OK && expect_last >= 0) {
                char num[24];
                snprintf(num, sizeof num, "%" PRId64, expect_last);
                s = natsMsgHeader_Set(msg, HDR_EXPECTED_LAST_SUBJECT_SEQ, num);
        }
        if (s != NATS_OK) {
                natsMsg_Destroy(msg);
                return broker_errno(s);
        }

        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = kv->timeout_ms;
        jsPubAck *pa = NULL;
        jsErrCode jerr = 0;
        s = js_PublishMsg(&pa, kv->js, msg, &po, &jerr);
        natsMsg_Destroy(msg);
        if (s != NATS_OK) {
                set_err(kv, "write", s, jerr);
                if (jerr == JS_ERR_WRONG_LAST_SEQUENCE || jerr == JS_ERR_WRONG_LAST_SEQUENCE_R)
                        return -ESTALE;
                return broker_errno(s) == 0 ? -EIO : broker_errno(s);
        }
        if (rev)
                *rev = pa->Sequence;
        jsPubAck_Destroy(pa);
        return 0;
}

int kv_put(kv_bucket *kv, const char *key, const char *data, size_t len, uint64_t *rev)
{
        return kv_publish(kv, key, data, len, NULL, -1, rev);
}

int kv_create(kv_bucket *kv, const char *key, const char *data, size_t len, uint64_t *rev)
{
        int r = kv_publish(kv, key, data, len, NULL, 0, rev);
        if (r != -ESTALE)
                return r;

        /* PROTOCOL §4.2: a key whose latest entry is a DEL/PURGE marker can
         * be created again, expecting that marker's sequence. Once only. */
        kv_entry cur;
        r = kv_get(kv, key, &cur);
        if (r == -ENOENT)
                return -EEXIST; /* it was there a moment ago: we lost a race */
        if (r < 0)
                return r;
        kv_op op = cur.op;
        uint64_t marker = cur.revision;
        kv_entry_fini(&cur);
        if (op == KV_OP_PUT) {
                snprintf(kv->last_error, sizeof kv->last_error, "key \"%s\" exists (revision %" PRIu64 ")", key,
                         marker);
                return -EEXIST;
        }
        r = kv_publish(kv, key, data, len, NULL, (int64_t)marker, rev);
        return r == -ESTALE ? -EEXIST : r;
}

int kv_update(kv_bucket *kv, const char *key, const char *data, size_t len, uint64_t last, uint64_t *rev)
{
        return kv_publish(kv, key, data, len, NULL, (int64_t)last, rev);
}

int kv_delete(kv_bucket *kv, const char *key, uint64_t last)
{
        return kv_publish(kv, key, NULL, 0, "DEL", last > 0 ? (int64_t)last : -1, NULL);
}

void kv_keys_free(char **keys, size_t n)
{
        for (size_t i = 0; keys && i < n; i++)
                free(keys[i]);
        free(keys);
}

int kv_keys(kv_bucket *kv, char ***keys_out, size_t *n_out)
{
        return kv_keys_matching(kv, ">", keys_out, n_out);
}

int kv_keys_matching(kv_bucket *kv, const char *pattern, char ***keys_out, size_t *n_out)
{
        char *filter = NULL;
        char **keys = NULL;
        size_t n = 0, cap = 0;
        int r = -ENOMEM;

        *keys_out = NULL;
        *n_out = 0;
        filter = contract_kv_subject(kv->bucket, pattern);
        if (!filter)
                goto out;
        size_t prefix_len = strlen(kv->bucket) + 5; /* "$KV.<bucket>." */

        /* The server pages subject details; ask again from the offset until
         * every subject is in (bounded by KV_LIST_MAX_KEYS). */
        for (;;) {
                json_t *body = json_pack("{s:s, s:I}", "subjects_filter", filter, "offset", (json_int_t)n);
                json_t *reply = NULL;
                jsapi_error jerr;
                if (!body)
                        goto out;
                r = jsapi_stream_info(kv->nc, kv->stream, body, kv->timeout_ms, &reply, &jerr);
                json_decref(body);
                if (r < 0) {
                        snprintf(kv->last_error, sizeof kv->last_error, "list keys: %s", jerr.description);
                        goto out;
                }
                json_t *subjects = json_object_get(json_object_get(reply, "state"), "subjects");
                uint64_t total = 0;
                (void)json_path_u64(reply, "total", &total);
                size_t got = 0;
                const char *subj;
                json_t *v;
                json_object_foreach (subjects, subj, v) {
                        if (strlen(subj) <= prefix_len || strncmp(subj, filter, prefix_len) != 0)
                                continue;
                        if (n == cap) {
                                size_t ncap = cap ? cap * 2 : 64;
                                char **nk = realloc(keys, ncap * sizeof *nk);
                                if (!nk) {
                                        json_decref(reply);
                                        r = -ENOMEM;
                                        goto out;
                                }
                                keys = nk;
                                cap = ncap;
                        }
                        keys[n] = strdup(subj + prefix_len);
                        if (!keys[n]) {
                                json_decref(reply);
                                r = -ENOMEM;
                                goto out;
                        }
                        n++;
                        got++;
                }
                json_decref(reply);
                if (got == 0 || n >= total || n >= KV_LIST_MAX_KEYS)
                        break;
        }
        *keys_out = keys;
        *n_out = n;
        keys = NULL;
        r = 0;
out:
        kv_keys_free(keys, n);
        free(filter);
        return r;
}
