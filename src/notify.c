/* notify: thin wrapper over libsystemd's sd_notify. */
#include "notify.h"

#include <stdio.h>
#include <systemd/sd-daemon.h>

void notify_ready(const char *status)
{
        (void)sd_notifyf(0, "READY=1\nSTATUS=%s", status);
}

void notify_status(const char *status)
{
        (void)sd_notifyf(0, "STATUS=%s", status);
}

void notify_reloading(const char *status)
{
        (void)sd_notifyf(0, "RELOADING=1\nSTATUS=%s", status);
}

void notify_stopping(const char *status)
{
        (void)sd_notifyf(0, "STOPPING=1\nSTATUS=%s", status);
}

int64_t notify_watchdog_ms(void)
{
        uint64_t usec = 0;
        return sd_watchdog_enabled(0, &usec) > 0 ? (int64_t)(usec / 1000) : 0;
}

void notify_watchdog(void)
{
        (void)sd_notify(0, "WATCHDOG=1");
}
