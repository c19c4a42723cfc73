/* watchdog: the §10.3 verdict with stall crediting (see watchdog.h). */
#include "watchdog.h"

void watchdog_note_wait(watchdog_stalls *s, int64_t asked_ms, int64_t t0, int64_t t1)
{
        if (t1 - t0 <= asked_ms + WATCHDOG_STALL_SLACK_MS)
                return;
        s->ring[s->next] = (struct watchdog_stall){t0 + asked_ms, t1};
        s->next = (s->next + 1) % WATCHDOG_STALLS_KEPT;
        if (s->n < WATCHDOG_STALLS_KEPT)
                s->n++;
}

int64_t watchdog_stalled_within(const watchdog_stalls *s, int64_t from, int64_t to)
{
        int64_t sum = 0;
        for (size_t i = 0; i < s->n; i++) {
                int64_t a = s->ring[i].from > from ? s->ring[i].from : from;
                int64_t b = s->ring[i].to < to ? s->ring[i].to : to;
                if (b > a)
                        sum += b - a;
        }
        return sum;
}

watchdog_verdict watchdog_judge(const watchdog_stalls *s, int64_t down_since, int64_t now, int64_t window_ms)
{
        watchdog_verdict v = {0};
        if (!down_since)
                return v;
        v.down_ms = now - down_since;
        v.stalled_ms = watchdog_stalled_within(s, down_since, now);
        v.backstop = v.down_ms > window_ms * WATCHDOG_BACKSTOP_FACTOR;
        v.gone = v.down_ms - v.stalled_ms > window_ms || v.backstop;
        return v;
}
