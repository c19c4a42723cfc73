/* roster: the presence roster used only for @mention resolution (PROTOCOL
 * §4.7, §6.3), fed by a permission-safe watch of cotal_presence_<S> on its
 * own thread. Readers (the fan-out) take the mutex briefly. Upstream
 * quirks are kept on purpose (§14.3): offline peers stay, a re-established
 * watch empties and refills it. */
#pragma once

#include "daemon.h"

/* Starts the watch thread; the initial replay is applied before this
 * returns (or after timeout_ms, logged). 0 or -errno. */
int roster_start(daemon_ctx *d, int64_t timeout_ms);
void roster_stop(daemon_ctx *d);

/* resolveByName(name): the card.id of the only entry whose lowercased
 * card.name equals lowercase(name); NULL if none or ambiguous. Owned. */
char *roster_resolve(daemon_ctx *d, const char *name);
