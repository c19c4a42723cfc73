/* proc: run the project's programs from tests. Output goes to files in a
 * temp dir so a long-running process can be read while it runs; every wait
 * is bounded; a spawned process dies with the test (PR_SET_PDEATHSIG). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct proc {
        pid_t pid;
        int status; /* exit code, 128+signal, or -1 while running */
        char dir[256];
        char out_path[300];
        char err_path[300];
} proc;

/* Starts argv[0] (a path) with argv. env: extra "K=V" entries (NULL-ended,
 * may be NULL). 0 or -errno. */
int proc_spawn(proc *p, char *const argv[], char *const env[]);
/* Waits for exit up to timeout_ms. 0 (p->status set) or -ETIMEDOUT. */
int proc_wait(proc *p, int64_t timeout_ms);
int proc_signal(proc *p, int sig);
/* Current stdout / stderr contents (owned, free()). Never NULL. */
char *proc_stdout(const proc *p);
char *proc_stderr(const proc *p);
/* Kills (SIGKILL) if still running, removes the temp files. */
void proc_destroy(proc *p);

/* Spawn + wait (timeout_ms; killed after it) + collect output. The
 * returned proc must be proc_destroy()ed. Returns the exit status or
 * -ETIMEDOUT. */
int proc_run(proc *p, char *const argv[], char *const env[], int64_t timeout_ms);

/* Number of lines in s. */
int count_lines(const char *s);
