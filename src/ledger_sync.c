/* ledger_sync: broker reads behind the ledger (see ledger_sync.h). */
#include "ledger_sync.h"

#include "broker.h"
#include "contract_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ledger_sync_reader_state(natsConnection *nc, const contract_names *names, ledger_reader_state *rs,
                             jsapi_error *jerr)
{
        json_t *reply = NULL;
        jsapi_error own;
        if (!jerr)
                jerr = &own;
        memset(rs, 0, sizeof *rs);
        int r = jsapi_consumer_info(nc, names->inbox_stream, CONTRACT_READER_DURABLE, 0, &reply, jerr);
        if (r == -EREMOTEIO && jerr->err_code == JS_ERR_CONSUMER_NOT_FOUND) {
                rs->pending = UINT64_MAX / 2; /* "all": no bound from the broker */
                return 0;
        }
        if (r < 0)
                return r;
        (void)json_path_u64(reply, "ack_floor.stream_seq", &rs->floor);
        (void)json_path_u64(reply, "delivered.stream_seq", &rs->delivered);
        (void)json_path_u64(reply, "delivered.consumer_seq", &rs->delivered_cseq);
        (void)json_path_u64(reply, "num_pending", &rs->pending);
        (void)json_path_u64(reply, "num_ack_pending", &rs->ack_pending);
        json_decref(reply);
        return 0;
}

int ledger_sync_refresh(ledger *l, natsConnection *nc, const contract_names *names)
{
        uint64_t epoch = ledger_epoch(l);
        ledger_reader_state rs;
        jsapi_error jerr;
        int r = ledger_sync_reader_state(nc, names, &rs, &jerr);
        if (r == 0)
                ledger_note_reader(l, epoch, &rs);
        return r;
}

typedef struct owner_counts {
        char **owners;
        uint64_t *stored;
        size_t n, cap;
} owner_counts;

static void counts_fini(owner_counts *c)
{
        for (size_t i = 0; i < c->n; i++)
                free(c->owners[i]);
        free(c->owners);
        free(c->stored);
}

static int counts_add(owner_counts *c, const char *owner, uint64_t stored)
{
        if (c->n == c->cap) {
                size_t ncap = c->cap ? c->cap * 2 : 64;
                char **no = realloc(c->owners, ncap * sizeof *no);
                if (!no)
                        return -ENOMEM;
                c->owners = no;
                uint64_t *ns = realloc(c->stored, ncap * sizeof *ns);
                if (!ns)
                        return -ENOMEM;
                c->stored = ns;
                c->cap = ncap;
        }
        if (!(c->owners[c->n] = strdup(owner)))
                return -ENOMEM;
        c->stored[c->n++] = stored;
        return 0;
}

int ledger_sync_seed(ledger *l, natsConnection *nc, const contract_names *names, char *err, size_t err_size)
{
        /* "cotal.<S>.dinbox." : the owner token follows it. */
        size_t plen = strlen(names->dinbox_filter) - 1;
        owner_counts c = {0};
        uint64_t last_seq = 0, offset = 0;
        jsapi_error jerr;
        int r = 0;
        /* The server pages a long subjects map (offset / total). Bounded:
         * every page either advances the offset or ends the walk. */
        for (int page = 0; page < 1000; page++) {
                json_t *body =
                        json_pack("{s:s, s:I}", "subjects_filter", names->dinbox_filter, "offset", (json_int_t)offset);
                json_t *reply = NULL;
                r = body ? jsapi_stream_info(nc, names->inbox_stream, body, 0, &reply, &jerr) : -ENOMEM;
                json_decref(body);
                if (r < 0) {
                        snprintf(err, err_size, "stream info %s: %s", names->inbox_stream,
                                 r == -ENOMEM ? "out of memory" : jerr.description);
                        break;
                }
                if (page == 0)
                        (void)json_path_u64(reply, "state.last_seq", &last_seq);
                const char *subject;
                json_t *v;
                size_t got = 0;
                json_object_foreach (json_object_get(json_object_get(reply, "state"), "subjects"), subject, v) {
                        got++;
                        if (strlen(subject) > plen && json_integer_value(v) > 0 &&
                            (r = counts_add(&c, subject + plen, (uint64_t)json_integer_value(v))) < 0)
                                break;
                }
                uint64_t total = 0;
                (void)json_path_u64(reply, "total", &total);
                json_decref(reply);
                if (r < 0) {
                        snprintf(err, err_size, "out of memory");
                        break;
                }
                offset += got;
                if (got == 0 || offset >= total)
                        break;
        }
        ledger_reader_state rs;
        if (r == 0 && (r = ledger_sync_reader_state(nc, names, &rs, &jerr)) < 0)
                snprintf(err, err_size, "consumer info %s/%s: %s", names->inbox_stream, CONTRACT_READER_DURABLE,
                         jerr.description);
        if (r == 0)
                ledger_seed(l, last_seq, &rs, c.n, (const char *const *)c.owners, c.stored);
        counts_fini(&c);
        return r;
}

void ledger_sync_publish(ledger *l, const char *owner, const jspub_result *res)
{
        if (res->state == JSPUB_OK && !res->duplicate)
                ledger_commit(l, owner, res->seq);
        else if (res->state == JSPUB_TIMEOUT)
                ledger_orphan(l, owner);
        else
                ledger_release(l, owner);
}
