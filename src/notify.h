/* notify: sd_notify(3) for the daemon: READY, STATUS, WATCHDOG, STOPPING.
 * Silent when not run under systemd (no NOTIFY_SOCKET). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

void notify_ready(const char *status);
void notify_status(const char *status);
void notify_stopping(const char *status);
/* RELOADING=1 (followed by notify_ready once the reload is done). */
void notify_reloading(const char *status);
/* The watchdog interval in ms (0 if systemd asked for none). */
int64_t notify_watchdog_ms(void);
void notify_watchdog(void);
