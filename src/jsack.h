/* jsack: JetStream delivery metadata and acknowledgement payloads
 * (PROTOCOL §5.5). Pure: parses the "$JS.ACK.…" reply subject of a
 * consumer delivery without allocating, builds ack payloads. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* §5.5 payloads, sent to a delivery's reply subject. */
#define JSACK_ACK "+ACK"
#define JSACK_NAK "-NAK"
#define JSACK_TERM "+TERM"
#define JSACK_IN_PROGRESS "+WPI"

typedef struct jsack_meta {
        uint64_t delivered; /* "num delivered": 1 on first delivery (§5.5) */
        uint64_t stream_seq;
        uint64_t consumer_seq;
        int64_t timestamp_ns;
        uint64_t pending;
} jsack_meta;

/* Parses "$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>"
 * (v1, 9 tokens) and the v2 form with domain and account hash before the
 * stream (12 or more tokens). False if reply is not such a subject or a
 * number is malformed. */
bool jsack_parse(const char *reply, jsack_meta *out);

/* "-NAK {\"delay\":<delay_ms * 1e6>}" into buf (§5.5). Returns the length,
 * or -1 if buf is too small. */
int jsack_nak_delay(char *buf, size_t size, int64_t delay_ms);
