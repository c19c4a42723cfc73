/* reader: the trusted reader of PROTOCOL §7 on its own thread. It binds
 * the "reader" durable on INBOX_<S>, re-authorizes every entry against the
 * owner's current ACL and membership interval (from its watch-fed KV
 * cache, fenced before every batch so each record written before the
 * fetch is seen, PROTOCOL §6.4: the inbox is not trusted), and transfers
 * what passes to dlv.<owner> with the entry's dedup id, acking only after
 * the publish is confirmed. */
#pragma once

#include "daemon.h"

int reader_start(daemon_ctx *d);
void reader_stop(daemon_ctx *d);
