/* watchdog: PROTOCOL §10.3's broker watchdog verdict, judged on evidence
 * about the broker rather than on the wall clock alone (issue 14 item 8:
 * upstream's daemon, at load 311 on 12 cores, exited twice as "broker
 * unreachable" with nats-server up). The main loop notes every signal wait
 * that returned later than asked: that time the process was not scheduled
 * (stopped, or starved of CPU), and it is not held against the broker. A
 * hard backstop by the plain clock ends the process anyway. Pure: the
 * caller supplies the times. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A wait later than asked by more than this counts as a stall. */
#define WATCHDOG_STALL_SLACK_MS 200
/* Disconnected this many times the window by the plain clock: gone. */
#define WATCHDOG_BACKSTOP_FACTOR 4
#define WATCHDOG_STALLS_KEPT 64

/* The latest stalls, as monotonic intervals. Zero-initialise. */
typedef struct watchdog_stalls {
        struct watchdog_stall {
                int64_t from, to;
        } ring[WATCHDOG_STALLS_KEPT];
        size_t next, n;
} watchdog_stalls;

/* One wait of asked_ms that began at t0 and returned at t1 (monotonic). */
void watchdog_note_wait(watchdog_stalls *s, int64_t asked_ms, int64_t t0, int64_t t1);
/* How much of [from, to] the process spent not scheduled. */
int64_t watchdog_stalled_within(const watchdog_stalls *s, int64_t from, int64_t to);

typedef struct watchdog_verdict {
        bool gone;          /* exit: the broker is unreachable */
        bool backstop;      /* decided by the plain clock's hard limit */
        int64_t down_ms;    /* disconnected for, by the plain clock */
        int64_t stalled_ms; /* of which the process was not scheduled */
} watchdog_verdict;

/* The verdict at now for a connection down since down_since (0: up) with
 * the window window_ms (broker-gone-ms). */
watchdog_verdict watchdog_judge(const watchdog_stalls *s, int64_t down_since, int64_t now, int64_t window_ms);
