/* proc: spawn, wait, signal and read the output of child processes. */
#include "proc.h"

#include "natsd.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

int proc_spawn(proc *p, char *const argv[], char *const env[])
{
        memset(p, 0, sizeof *p);
        p->status = -1;
        const char *tmp = getenv("TMPDIR");
        snprintf(p->dir, sizeof p->dir, "%s/cotal-proc-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(p->dir))
                return -errno;
        snprintf(p->out_path, sizeof p->out_path, "%s/stdout", p->dir);
        snprintf(p->err_path, sizeof p->err_path, "%s/stderr", p->dir);
        int ofd = open(p->out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        int efd = open(p->err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (ofd < 0 || efd < 0) {
                int e = -errno;
                if (ofd >= 0)
                        close(ofd);
                if (efd >= 0)
                        close(efd);
                return e;
        }
        pid_t parent = getpid();
        pid_t pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != parent)
                        _exit(127);
                int nfd = open("/dev/null", O_RDONLY);
                if (nfd >= 0)
                        dup2(nfd, STDIN_FILENO);
                dup2(ofd, STDOUT_FILENO);
                dup2(efd, STDERR_FILENO);
                for (int i = 0; env && env[i]; i++)
                        putenv(env[i]);
                execve(argv[0], argv, environ);
                _exit(127);
        }
        close(ofd);
        close(efd);
        p->pid = pid;
        return 0;
}

static void nap_ms(int ms)
{
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)ms * 1000000L};
        nanosleep(&ts, NULL);
}

int proc_wait(proc *p, int64_t timeout_ms)
{
        if (p->pid <= 0)
                return 0;
        int64_t deadline = test_now_ms() + timeout_ms;
        for (;;) {
                int st;
                pid_t r = waitpid(p->pid, &st, WNOHANG);
                if (r == p->pid) {
                        p->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
                        p->pid = 0;
                        return 0;
                }
                if (test_now_ms() >= deadline)
                        return -ETIMEDOUT;
                nap_ms(5);
        }
}

int proc_signal(proc *p, int sig)
{
        if (p->pid <= 0)
                return -ESRCH;
        return kill(p->pid, sig) < 0 ? -errno : 0;
}

static char *slurp(const char *path)
{
        FILE *f = fopen(path, "r");
        char *buf = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&buf, &len);
        if (f && m) {
                char chunk[4096];
                size_t n;
                while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
                        fwrite(chunk, 1, n, m);
        }
        if (f)
                fclose(f);
        if (m)
                fclose(m);
        return buf ? buf : strdup("");
}

char *proc_stdout(const proc *p)
{
        return slurp(p->out_path);
}

char *proc_stderr(const proc *p)
{
        return slurp(p->err_path);
}

void proc_destroy(proc *p)
{
        if (p->pid > 0) {
                kill(p->pid, SIGKILL);
                waitpid(p->pid, NULL, 0);
                p->pid = 0;
        }
        if (p->dir[0] && !getenv("COTAL_KEEP_TEST_DIRS")) {
                unlink(p->out_path);
                unlink(p->err_path);
                rmdir(p->dir);
        }
        p->dir[0] = '\0';
}

int proc_run(proc *p, char *const argv[], char *const env[], int64_t timeout_ms)
{
        int r = proc_spawn(p, argv, env);
        if (r < 0)
                return r;
        if (proc_wait(p, timeout_ms) < 0) {
                proc_signal(p, SIGKILL);
                proc_wait(p, 5000);
                return -ETIMEDOUT;
        }
        return p->status;
}

int count_lines(const char *s)
{
        int n = 0;
        for (; s && *s; s++)
                n += *s == '\n';
        return n;
}
