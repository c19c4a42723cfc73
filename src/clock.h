/* clock: milliseconds for deadlines (monotonic) and for Cotal's epoch-ms
 * fields (wall clock). Header-only. */
#pragma once

#include <stdint.h>
#include <time.h>

static inline int64_t clock_mono_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t clock_wall_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
