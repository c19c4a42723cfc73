/* contract_constants: PROTOCOL.md Appendix A, in one place. Every module
 * that follows one of these rules takes the number from here; a module's
 * own tuning (timeouts of its requests, poll steps) stays in that module. */
#pragma once

/* §7, Appendix A: the reader terminates an entry on its 10th delivery
 * (row 7) and naks with this delay (rows 4, 8; §6.5 for the fan-out). */
#define CONTRACT_READER_MAX_REDELIVERIES 10
#define CONTRACT_NAK_DELAY_MS 2000

/* §3: ack_wait of fanout, reader, dlv_/dm_/svc_; reader max_ack_pending. */
#define CONTRACT_ACK_WAIT_NS 60000000000LL
#define CONTRACT_READER_MAX_ACK_PENDING 1000

/* §2: per-subject cap of CHAT, INBOX, DLV; the Plane-3 dedup window
 * (INBOX, DLV) and the server's default one (the other streams). */
#define CONTRACT_MAX_MSGS_PER_SUBJECT 1000
#define CONTRACT_PLANE3_DUP_WINDOW_NS 7200000000000LL /* 2 h */
#define CONTRACT_SERVER_DUP_WINDOW_NS 120000000000LL  /* server default */

/* §9: the lease bucket's TTL and the renew period; §4.7 presence TTL. */
#define CONTRACT_LEASE_TTL_NS 30000000000LL
#define CONTRACT_LEASE_TTL_MS 30000
#define CONTRACT_LEASE_RENEW_MS 15000
#define CONTRACT_PRESENCE_TTL_NS 6000000000LL

/* §10.3: the broker watchdog's period and default window
 * (COTAL_DELIVERY_BROKER_GONE_MS); §10.2 step 4's probe connect timeout. */
#define CONTRACT_WATCHDOG_PERIOD_MS 2000
#define CONTRACT_BROKER_GONE_MS 15000
#define CONTRACT_PROBE_TIMEOUT_MS 1000

/* §8.6 catch-up: batch, fetch expiry, consumer inactivity. */
#define CONTRACT_CATCHUP_BATCH 256
#define CONTRACT_CATCHUP_EXPIRES_MS 5000
#define CONTRACT_CATCHUP_INACTIVE_NS 30000000000LL

/* §4.4 / §8.3: membership compare-and-set attempts. */
#define CONTRACT_CAS_ATTEMPTS 5
