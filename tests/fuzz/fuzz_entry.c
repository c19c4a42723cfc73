/* fuzz_entry: the dinbox entry decoder (PROTOCOL §5.2, reader validation
 * §7) and the trusted reader's use of an accepted entry: its deliver body
 * (§5.3) is the msg object, and re-encoding the entry from that body
 * decodes to the same fields. */
#include "fuzz.h"

#include "contract_record.h"

#include <jansson.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        contract_entry e;
        rec_error err;
        char text[256];
        rec_status st = contract_entry_decode((const char *)data, size, &e, &err);
        FUZZ_CHECK(rec_error_str(&err, text, sizeof text) == text);
        if (st != REC_OK) {
                FUZZ_CHECK(st == err.status && e.root == NULL);
                return 0;
        }
        FUZZ_CHECK(json_is_object(e.msg) && e.msg_id && e.channel);
        FUZZ_CHECK(strpbrk(e.msg_id, "\r\n") == NULL);
        FUZZ_CHECK(e.seq <= (uint64_t)CONTRACT_MAX_SAFE_INTEGER && e.generation <= (uint64_t)CONTRACT_MAX_SAFE_INTEGER);

        char *body = NULL;
        size_t body_len = 0;
        FUZZ_CHECK(contract_deliver_body(&e, &body, &body_len) == 0);
        FUZZ_CHECK(body_len == strlen(body) && body[0] == '{');

        contract_reason reason = e.reason == REASON_OTHER ? REASON_LIVE_MENTION : e.reason;
        char *entry = NULL;
        size_t entry_len = 0;
        FUZZ_CHECK(contract_entry_encode(body, body_len, e.channel, e.seq, reason, e.generation, &entry, &entry_len) ==
                   0);
        contract_entry back;
        st = contract_entry_decode(entry, entry_len, &back, &err);
        if (st != REC_OK)
                fprintf(stderr, "re-encoded entry: %s\n", rec_error_str(&err, text, sizeof text));
        FUZZ_CHECK(st == REC_OK);
        FUZZ_CHECK(strcmp(back.msg_id, e.msg_id) == 0 && strcmp(back.channel, e.channel) == 0);
        FUZZ_CHECK(back.seq == e.seq && back.generation == e.generation && back.reason == reason);
        FUZZ_CHECK(json_equal(back.msg, e.msg));
        contract_entry_fini(&back);
        free(entry);
        free(body);
        contract_entry_fini(&e);
        return 0;
}
