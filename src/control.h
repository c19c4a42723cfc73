/* control: the ctl.delivery request/reply service of PROTOCOL §8 on its
 * own thread: requests are handled one at a time in arrival order (§8.1),
 * replies go only to the sender's own reply subtree (§8.2 step 1), and
 * nobody can act for another agent (step 3). */
#pragma once

#include "daemon.h"

/* Subscribes cotal.<S>.ctl.delivery.* (queue group "delivery") and starts
 * the thread. 0 or -errno (logged). */
int control_start(daemon_ctx *d);
void control_stop(daemon_ctx *d);
