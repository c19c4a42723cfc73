/* ledger_sync: what the broker says about INBOX_<S>, fed to the ledger
 * (E1). A seed reads STREAM.INFO with a subjects filter (entries stored
 * per owner subject, paged) and then CONSUMER.INFO of the reader durable;
 * a refresh reads CONSUMER.INFO alone. Both stay within the delivery
 * credential's grants (PROTOCOL §11.3: STREAM.INFO on INBOX, CONSUMER.INFO
 * on INBOX/reader). Blocking requests: call from the thread that owns nc. */
#pragma once

#include "broker.h"
#include "contract_subject.h"
#include "jspub.h"
#include "ledger.h"

#include <nats/nats.h>
#include <stddef.h>

/* The reader durable's state (CONSUMER.INFO). A missing durable is about
 * to be created with deliver_policy "all" (§3): everything INBOX holds is
 * unread (pending is then huge, the rest 0). 0 or a negative errno. */
int ledger_sync_reader_state(natsConnection *nc, const contract_names *names, ledger_reader_state *rs,
                             jsapi_error *jerr);

/* Re-seeds l from the broker. 0, or a negative errno with err filled. */
int ledger_sync_seed(ledger *l, natsConnection *nc, const contract_names *names, char *err, size_t err_size);

/* Tells l where the reader durable stands. 0 or a negative errno. */
int ledger_sync_refresh(ledger *l, natsConnection *nc, const contract_names *names);

/* Ends a reservation of owner by the outcome of its publish: a new entry
 * stored -> committed at its sequence; a duplicate -> released (the entry
 * it names was stored before and is counted already, by a commit, an
 * orphan or the seed, and adds nothing to the subject); no answer -> an
 * orphan (maybe stored); anything else -> released. */
void ledger_sync_publish(ledger *l, const char *owner, const jspub_result *res);
