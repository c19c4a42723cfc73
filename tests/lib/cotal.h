/* cotal: fixtures for daemon tests, acting as agents, the provisioner and
 * operators would on the real broker (tu_broker): chat publishes, ACL,
 * membership and presence records, control requests, stream read-back,
 * and the daemon process itself. */
#pragma once

#include "testutil.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define ALICE "UAQGWOEVJKMIO4WXSYOTLARXYOZTCXFK67JASEH6AFFFYK6FOPSKQCAD"
#define BOB "UDI36ZKVNUM5WMO4QQ6HDQU7F4OH2RCXOJRX6GAIOS5SKVNNSKCDNLJA"
#define CAROL "UCAROLCAROLCAROLCAROLCAROLCAROLCAROLCAROLCAROLCAROLCAROL"
#define DAVE "UDAVEDAVEDAVEDAVEDAVEDAVEDAVEDAVEDAVEDAVEDAVEDAVEDAVEDAV"
#define DAEMON_READY_TIMEOUT_MS 20000

/* Provisions space (must succeed). */
void co_provision(const char *space);
/* Provisions space and makes each of owners[0..k) a reader of "general"
 * (ACL ["general"]) and its member from the start (generation 1). */
void co_provision_general(const char *space, const char *const *owners, size_t k);

/* Publishes a chat message from sender on channel, as an agent does
 * (JetStream, Nats-Msg-Id = id). extra: more JSON members to merge into
 * the body (e.g. "\"mentions\":[\"bob\"]"), or NULL. Returns the CHAT seq. */
uint64_t co_chat(const char *space, const char *sender, const char *channel, const char *id, const char *extra);
/* Publishes n chat messages "<prefix>-<i>" from sender on channel, each
 * with pad bytes of text; returns the last CHAT seq. */
uint64_t co_chat_burst(const char *space, const char *sender, const char *channel, const char *prefix, int n,
                       size_t pad);
/* co_chat with bounded retries across a broker outage or an election
 * (about 15 s in all); the Nats-Msg-Id makes a retry of a stored message
 * harmless. Fails the test if it never lands. */
void co_chat_retrying(const char *space, const char *sender, const char *channel, const char *id);
/* Publishes raw bytes on a subject through JetStream (poison tests). */
uint64_t co_publish_raw(const char *subject, const char *msg_id, const char *data, size_t len);

/* Fixture records. */
void co_acl(const char *space, const char *owner, const char *allow_json_array);
void co_acl_delete(const char *space, const char *owner);
void co_member(const char *space, const char *channel, const char *owner, uint64_t join_cursor, uint64_t gen,
               int64_t leave_cursor /* < 0: none */);
void co_presence(const char *space, const char *id, const char *name);
/* An open membership whose join is not activated yet (activated:false), as
 * a join that crashed before its catch-up finished leaves it (§8.6, §13
 * items 51-53): a durableJoin then copies the whole window from
 * join_cursor. */
void co_member_pending(const char *space, const char *channel, const char *owner, uint64_t join_cursor, uint64_t gen);
/* Points DLV_<space> at other subjects (stalled) or back: while stalled,
 * every dlv publish finds no stream, so the reader naks each entry with
 * its 2 s delay (§7 row 8) and nothing leaves INBOX; the stream still
 * exists, so a daemon can start. */
void co_dlv_stall(const char *space, bool stalled);

/* A stored message read back by STREAM.MSG.GET. */
typedef struct co_msg {
        char *subject;
        char *msg_id; /* Nats-Msg-Id header, or NULL */
        json_t *body; /* parsed data, or NULL if not JSON */
        uint64_t seq;
} co_msg;
void co_msg_fini(co_msg *m);
/* Reads seq of stream; false if there is no such message. */
bool co_msg_get(const char *stream, uint64_t seq, co_msg *out);
/* The latest value of key in bucket, decoded (owned), or NULL when there
 * is no message or it is a DEL/PURGE marker (an empty body). *rev (may be
 * NULL) gets the latest entry's revision, 0 if none. */
json_t *co_kv_value(const char *bucket, const char *key, uint64_t *rev);
/* state.last_seq / state.messages of a stream. */
uint64_t co_last_seq(const char *stream);
uint64_t co_messages(const char *stream, const char *subject_filter);

/* Every message of stream whose subject equals subject (read by seq). Owned
 * array; co_msgs_free. */
size_t co_msgs_on(const char *stream, const char *subject, co_msg **out);
void co_msgs_free(co_msg *m, size_t n);

/* Sends a control request on cotal.<space>.ctl.delivery.<agent> with reply
 * subject reply (NULL: "<subject>.reply.<random>"), listening on listen
 * (NULL: the reply subject) for timeout_ms. Returns the reply JSON (owned)
 * or NULL when nothing came. */
json_t *co_request(const char *space, const char *agent, const char *body, const char *reply, const char *listen,
                   int64_t timeout_ms);
/* The same in two halves, so a test can act while a request is served:
 * send (own reply subject, subscribed first), then wait for the reply
 * (NULL if none within timeout_ms; the subscription is freed). */
natsSubscription *co_request_send(const char *space, const char *agent, const char *body);
json_t *co_request_wait(natsSubscription *sub, int64_t timeout_ms);

/* The daemon under test. */
typedef struct co_daemon {
        proc p;
        char id[64];
} co_daemon;

/* Starts cotal-deliveryd --no-auth for space with extra args (NULL-ended,
 * may be NULL) and waits until it prints its ready line. Returns true when
 * ready; false if it exited or timed out (p.status tells). */
bool co_daemon_start(co_daemon *dm, const char *space, const char *const *extra);
/* Spawns without waiting. With COTAL_TEST_VALGRIND set, the daemon runs
 * under valgrind memcheck (exit status 99 on any error or leak). */
void co_daemon_spawn(co_daemon *dm, const char *space, const char *const *extra, char *const *env);
/* The same with --creds creds instead of --no-auth (operator-mode brokers). */
void co_daemon_spawn_creds(co_daemon *dm, const char *space, const char *creds, const char *const *extra,
                           char *const *env);
bool co_daemon_wait_ready(co_daemon *dm, int64_t timeout_ms);
/* SIGTERM and wait; returns the exit status. */
int co_daemon_stop(co_daemon *dm);
/* Asserts the daemon is still running and its log has no error-priority
 * line and no sanitizer report. */
void co_daemon_assert_healthy(co_daemon *dm);
/* Suite teardown: stops dm with SIGTERM unless it already exited, dumps
 * its log if it did not exit 0 (a sanitizer report changes the status
 * too), remembers that for co_run, and frees its proc. */
void co_daemon_finish(co_daemon *dm);
/* tu_run that also fails when a daemon stopped by co_daemon_finish did
 * not exit 0 (§10.4: SIGTERM is a clean stop). */
int co_run(Suite *s);
/* Dumps the daemon's stderr to ours (for failures). */
void co_daemon_dump(const co_daemon *dm);
/* Waits until the daemon's stderr contains text; true if it came. */
bool co_daemon_logged_within(co_daemon *dm, const char *text, int64_t timeout_ms);
/* `cotal-deliveryctl diag --socket sock --json`, which must succeed,
 * parsed (owned). raw (may be NULL) gets the document's text (owned). */
json_t *co_diag(const char *sock, char **raw);

/* Compact, key-sorted text of j for failure messages ("(no reply)" for
 * NULL). Owned. */
char *co_json_text(const json_t *j);
/* The latest membership record <channel>/<owner> of space (NULL: none,
 * or a DEL/PURGE marker). Owned. */
json_t *co_member_record(const char *space, const char *channel, const char *owner);

/* Stops a daemon (SIGSTOP) from the subscriber thread the moment the first
 * message is published on subject, so a test can catch it mid-work on a
 * loaded machine (polling a stream from the test thread could notice the
 * first message only after the work was done). */
typedef struct co_freezer {
        natsSubscription *sub;
        pid_t pid;
        int sig;
        atomic_bool frozen;
} co_freezer;
/* Subscribes (core NATS, flushed) before the work is triggered. */
void co_freeze_at_first(co_freezer *f, pid_t pid, const char *subject);
/* The same with another signal (SIGKILL: a crash mid-batch); "frozen"
 * then means "signalled". */
void co_signal_at_first(co_freezer *f, pid_t pid, int sig, const char *subject);
/* Waits until the daemon was stopped; unsubscribes either way. */
bool co_frozen_within(co_freezer *f, int64_t timeout_ms);

/* Waits until stream has at least want messages (state.messages filtered by
 * subject, or last_seq when subject is NULL) or timeout. Returns the last
 * value seen. */
uint64_t co_wait_count(const char *stream, const char *subject, uint64_t want, int64_t timeout_ms);

/* The exact-set check of the fault tests: over owners[0..k), the dedup ids
 * "<prefix>-<i>:<owner>:<gen>" (0 <= i < n) on each owner's dlv subject of
 * DLV_<space>. missing: expected ids absent; dup: ids present twice or
 * more; foreign: ids of that prefix that should not be there. */
typedef struct co_tally {
        int missing, dup, foreign;
} co_tally;
co_tally co_dlv_tally(const char *space, const char *const *owners, size_t k, uint64_t gen, const char *prefix, int n);
/* Waits (bounded by timeout_ms) until nothing is missing, prints the
 * figures on stderr ("<prefix>: N messages x K owners settled in T ms: …")
 * and returns the last tally; *took_ms (may be NULL) gets T. */
co_tally co_dlv_settle(const char *space, const char *const *owners, size_t k, uint64_t gen, const char *prefix, int n,
                       int64_t timeout_ms, int64_t *took_ms);

/* How many messages on subject in stream carry Nats-Msg-Id id. */
int co_count_id(const char *stream, const char *subject, const char *id);
/* Waits until a message with that id is on subject; true if it came. */
bool co_wait_id(const char *stream, const char *subject, const char *id, int64_t timeout_ms);
/* Waits until consumer's ack floor (stream seq) reaches seq. */
bool co_wait_acked(const char *stream, const char *consumer, uint64_t seq, int64_t timeout_ms);
