/* fuzz_chat: the chat envelope decoder (PROTOCOL §5.1, validation §6.1)
 * and what the fan-out does with a message it accepts: embed it verbatim in
 * a dinbox entry (§5.2), which must decode back to the same id, channel,
 * seq, reason and generation, and whose deliver body (§5.3) is the same
 * message. */
#include "fuzz.h"

#include "contract_record.h"

#include <jansson.h>
#include <stdbool.h>

static bool header_safe(const char *s)
{
        return strpbrk(s, "\r\n") == NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const char *body = (const char *)data;
        contract_chat chat;
        rec_error err;
        rec_status st = contract_chat_decode(body, size, &chat, &err);
        char text[256];
        FUZZ_CHECK(rec_error_str(&err, text, sizeof text) == text);
        if (st != REC_OK) {
                FUZZ_CHECK(st == err.status && chat.root == NULL);
                FUZZ_CHECK(st != REC_E_TOO_LARGE || size > CONTRACT_MAX_MSG_BYTES);
                return 0;
        }
        /* §6.1: an object with a header-safe string id and a string from.id. */
        FUZZ_CHECK(json_is_object(chat.root) && chat.id && chat.from_id);
        FUZZ_CHECK(header_safe(chat.id) && strlen(chat.id) == json_string_length(json_object_get(chat.root, "id")));
        FUZZ_CHECK(chat.mentions == json_object_get(chat.root, "mentions"));

        /* The fan-out's copy for one owner at one generation. */
        const char *channel = "team.backend";
        char *entry = NULL;
        size_t entry_len = 0;
        FUZZ_CHECK(contract_entry_encode(body, size, channel, 4711, REASON_DURABLE_CHANNEL, 3, &entry, &entry_len) ==
                   0);
        FUZZ_CHECK(entry_len == strlen(entry));
        contract_entry e;
        st = contract_entry_decode(entry, entry_len, &e, &err);
        if (st != REC_OK)
                fprintf(stderr, "entry: %s\n", rec_error_str(&err, text, sizeof text));
        FUZZ_CHECK(st == REC_OK);
        FUZZ_CHECK(strcmp(e.msg_id, chat.id) == 0 && strcmp(e.channel, channel) == 0);
        FUZZ_CHECK(e.seq == 4711 && e.generation == 3 && e.reason == REASON_DURABLE_CHANNEL);
        /* §5.3: the deliver body is the message again. */
        char *deliver = NULL;
        size_t deliver_len = 0;
        FUZZ_CHECK(contract_deliver_body(&e, &deliver, &deliver_len) == 0);
        contract_chat again;
        FUZZ_CHECK(contract_chat_decode(deliver, deliver_len, &again, &err) == REC_OK);
        FUZZ_CHECK(strcmp(again.id, chat.id) == 0 && strcmp(again.from_id, chat.from_id) == 0);
        FUZZ_CHECK(json_equal(again.root, e.msg));
        contract_chat_fini(&again);
        free(deliver);
        contract_entry_fini(&e);
        free(entry);
        contract_chat_fini(&chat);
        return 0;
}
