/* contract_record: JSON codecs (jansson) for every body of the wire contract:
 * chat envelope (§5.1), dinbox entry (§5.2), deliver body (§5.3), ACL record
 * (§4.3), membership record (§4.4), lease record (§4.5), channel config
 * (§4.6), control request/reply (§5.4) and the exact error texts of §8.4.
 * Pure code: no I/O. Decoders are strict: each failure has its own status
 * and names the field; nothing is silently defaulted. Encoders omit absent
 * optional fields and write integers as JSON integers (§4.2). */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Size limits, bytes. A chat body may be as large as the broker's default
 * max_payload; KV records and control requests are small by design. */
#define CONTRACT_MAX_MSG_BYTES (1024 * 1024)
#define CONTRACT_MAX_RECORD_BYTES (64 * 1024)
#define CONTRACT_MAX_REQUEST_BYTES (64 * 1024)
/* Integers in Cotal JSON are JavaScript numbers: 0 ... 2^53-1. */
#define CONTRACT_MAX_SAFE_INTEGER 9007199254740991LL

typedef enum {
        REC_OK = 0,
        REC_E_TOO_LARGE,  /* input longer than the limit for its kind        */
        REC_E_NOT_JSON,   /* not parseable JSON (incl. invalid UTF-8)        */
        REC_E_NOT_OBJECT, /* JSON, but the top level is not an object        */
        REC_E_MISSING,    /* a required field is absent (or JSON null)       */
        REC_E_TYPE,       /* a field has the wrong JSON type                 */
        REC_E_RANGE,      /* an integer outside its allowed range            */
        REC_E_VALUE,      /* right type, value not allowed (e.g. CR in an id)*/
        REC_E_NOMEM,
} rec_status;

/* What went wrong, for log lines: "<status>: <field>: <detail>". */
typedef struct rec_error {
        rec_status status;
        char field[48];   /* dotted path of the offending field, "" for top */
        char detail[160]; /* parser message or a short reason               */
} rec_error;

const char *rec_status_name(rec_status s); /* "not JSON", "missing field", ... */
/* Formats err into buf ("missing field from.id", "not JSON: <detail>").
 * Returns buf. */
const char *rec_error_str(const rec_error *err, char *buf, size_t size);

/* ---- chat message (§5.1, validation of §6.1) ---------------------------- */

/* A decoded chat body. root is owned (freed by contract_chat_fini); the
 * string pointers are borrowed from root. mentions is borrowed from root and
 * is NULL when absent; it may be any JSON type (§6.3: a non-array is treated
 * as empty by the fan-out, non-string elements skipped). */
typedef struct contract_chat {
        json_t *root;
        const char *id;      /* required string without CR, LF or NUL      */
        const char *from_id; /* required: from must be an object with a
                              * string id                                 */
        json_t *mentions;
} contract_chat;

/* Accepts integers beyond int64 (§5.1: they must not make a message
 * malformed; they are decoded as reals). Errors: TOO_LARGE, NOT_JSON,
 * NOT_OBJECT, MISSING/TYPE/VALUE for "id", "from", "from.id". */
rec_status contract_chat_decode(const char *data, size_t len, contract_chat *out, rec_error *err);
void contract_chat_fini(contract_chat *c);

/* ---- dinbox entry (§5.2, reader validation §7 row 2/2a) ------------------ */

typedef enum {
        REASON_OTHER = 0, /* anything but the two known strings */
        REASON_DURABLE_CHANNEL,
        REASON_LIVE_MENTION,
} contract_reason;

/* root owned; pointers borrowed from root. */
typedef struct contract_entry {
        json_t *root;
        json_t *msg;        /* the chat message object                    */
        const char *msg_id; /* msg.id, string without CR/LF/NUL           */
        const char *channel;
        uint64_t seq;           /* integer 0..2^53-1                          */
        contract_reason reason; /* "reason" may be absent or any type:
                                   §7 only tests for "durable-channel"     */
        uint64_t generation;    /* required integer 0..2^53-1 (stricter than
                                 upstream: the dedup id needs it)          */
} contract_entry;

rec_status contract_entry_decode(const char *data, size_t len, contract_entry *out, rec_error *err);
void contract_entry_fini(contract_entry *e);

/* Encodes {"msg":<msg_json>,"channel":…,"seq":…,"reason":…,"generation":…}.
 * msg_json/msg_len are the chat body bytes, embedded verbatim (they must be
 * a JSON object the caller has already decoded). reason must be
 * REASON_DURABLE_CHANNEL or REASON_LIVE_MENTION. *out owned by the caller
 * (free()), *out_len its length. 0 or -EINVAL/-ENOMEM. */
int contract_entry_encode(const char *msg_json, size_t msg_len, const char *channel, uint64_t seq,
                          contract_reason reason, uint64_t generation, char **out, size_t *out_len);

/* §5.3: the deliver body is the entry's msg object alone, compact JSON.
 * *out owned by the caller (free()). 0 or -ENOMEM. */
int contract_deliver_body(const contract_entry *e, char **out, size_t *out_len);

/* ---- ACL record (§4.3) -------------------------------------------------- */

/* allow[] holds copies of the string elements of allowSubscribe, in order;
 * non-string elements are ignored (counted in ignored). All owned, freed by
 * contract_acl_fini. */
typedef struct contract_acl {
        char **allow;
        size_t n_allow;
        size_t ignored;
        bool has_revision;
        int64_t revision;
        bool has_updated_at;
        int64_t updated_at;
} contract_acl;

/* allowSubscribe required (array); revision and updatedAt optional integers
 * (present with a wrong type: TYPE). Any error means "unknown owner" to the
 * reader and the control service (§4.3). */
rec_status contract_acl_decode(const char *data, size_t len, contract_acl *out, rec_error *err);
void contract_acl_fini(contract_acl *a);
/* §4.3 on the read side, the one way every reader takes an ACL value: true
 * with *out filled (fini it), or false with why = "unreadable ACL record:
 * <what>" (the owner counts as unknown, as if absent; *out zeroed). */
bool contract_acl_read(const char *data, size_t len, contract_acl *out, char *why, size_t why_size);
/* {"allowSubscribe":[…],"revision":…,"updatedAt":…}; optional fields are
 * written only when has_… is set. *out owned by the caller. */
int contract_acl_encode(const contract_acl *a, char **out);

/* ---- membership record (§4.4) ------------------------------------------- */

typedef enum {
        MEMBER_STATE_OTHER = 0, /* any other string: an "odd state" (§8.6) */
        MEMBER_STATE_DURABLE_ACTIVE,
        MEMBER_STATE_LIVE_CONFIRMED,
} contract_member_state;

typedef enum {
        MEMBER_ACTIVATED_ABSENT = 0,
        MEMBER_ACTIVATED_FALSE,
        MEMBER_ACTIVATED_TRUE,
} contract_activated;

/* All strings owned, freed by contract_member_fini. */
typedef struct contract_member {
        char *channel; /* NULL if the record has none */
        char *owner;   /* no CR/LF/NUL (it goes into a header) */
        contract_member_state state;
        char *state_raw; /* the stored state string, or NULL     */
        uint64_t join_cursor;
        bool has_leave_cursor;
        uint64_t leave_cursor;
        uint64_t generation;          /* >= 1 */
        contract_activated activated; /* optional boolean                  */
        char *writer_identity;        /* NULL if the record has none */
        int64_t updated_at;           /* 0 if the record has none */
} contract_member;

/* Required: owner (string without CR/LF/NUL), joinCursor and generation
 * (integers) — the §4.4 [hardening] readability rule. Optional, but
 * type-checked when present: channel, state, writerIdentity (strings),
 * updatedAt, leaveCursor (integers), activated (boolean). A missing state
 * is MEMBER_STATE_OTHER with state_raw NULL; missing strings are NULL. A
 * record that fails is unreadable and treated as absent everywhere. */
rec_status contract_member_decode(const char *data, size_t len, contract_member *out, rec_error *err);
void contract_member_fini(contract_member *m);
/* Writes every set field (state from state, not state_raw; channel and
 * writerIdentity only if non-NULL; activated only if not ABSENT;
 * leaveCursor only if has_leave_cursor). */
int contract_member_encode(const contract_member *m, char **out);

/* §4.4 durableEligible: seq > joinCursor AND (no leaveCursor OR
 * seq <= leaveCursor). Ignores state and activated. */
bool contract_member_eligible(const contract_member *m, uint64_t seq);

/* ---- lease record (§4.5) ------------------------------------------------ */

typedef struct contract_lease {
        char *holder;  /* owned */
        int64_t since; /* ms */
        bool ready;
} contract_lease;

/* holder (string), since (integer), ready (boolean) all required. */
rec_status contract_lease_decode(const char *data, size_t len, contract_lease *out, rec_error *err);
void contract_lease_fini(contract_lease *l);
int contract_lease_encode(const char *holder, int64_t since_ms, bool ready, char **out);

/* ---- channel registry (§4.6) -------------------------------------------- */

typedef enum {
        CLASS_UNSET = 0, /* key absent, not JSON, field missing or null */
        CLASS_DURABLE,   /* exactly "durable"                           */
        CLASS_OTHER,     /* any other non-null value: the live path     */
} contract_class;

/* deliveryClass of a channel config or of =defaults. value may be NULL
 * (absent key). Never fails: anything unreadable is CLASS_UNSET (§4.6). */
contract_class contract_class_of(const char *value, size_t len);
/* Effective class: first set of cfg, dflt, else durable (§4.6). True if the
 * effective class is "durable". */
bool contract_class_is_durable(contract_class cfg, contract_class dflt);
