/* proc -- server processes, ports and blocking calls for the peers (peer.h). */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "benchutil.h"
#include "peer.h"

#define MAX_CHILDREN 16

static pid_t children[MAX_CHILDREN];
static int nchildren;

int peer_free_port(void)
{
    struct sockaddr_in sa = {0};
    socklen_t sl = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port;
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0)
        bench_die("no free port: %s", strerror(errno));
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

pid_t peer_spawn(char *const argv[], const char *log, const char *as_user)
{
    struct passwd *pw = NULL;
    pid_t pid;
    if (as_user && geteuid() == 0 && !(pw = getpwnam(as_user)))
        bench_die("no user %s to run %s as", as_user, argv[0]);
    if (nchildren == MAX_CHILDREN)
        bench_die("too many child processes");
    pid = fork();
    if (pid < 0)
        bench_die("fork: %s", strerror(errno));
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            if (fd > 2)
                close(fd);
        }
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        if (pw && (setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0)) {
            fprintf(stderr, "cannot become %s: %s\n", as_user, strerror(errno));
            _exit(126);
        }
        execvp(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    children[nchildren++] = pid;
    return pid;
}

void peer_adopt(pid_t pid)
{
    if (nchildren == MAX_CHILDREN)
        bench_die("too many child processes");
    children[nchildren++] = pid;
}

static void forget(pid_t pid)
{
    for (int i = 0; i < nchildren; i++)
        if (children[i] == pid) {
            children[i] = children[--nchildren];
            return;
        }
}

void peer_wait_port(int port, pid_t pid, double secs, const char *log)
{
    int64_t until = bench_now_ns() + (int64_t)(secs * 1e9);
    while (bench_now_ns() < until) {
        int st, fd = bench_connect(port);
        if (fd >= 0) {
            close(fd);
            return;
        }
        if (waitpid(pid, &st, WNOHANG) == pid) {
            forget(pid);
            bench_die("the server exited at start (log: %s)", log);
        }
        usleep(20000);
    }
    bench_die("the server did not listen on port %d within %g s (log: %s)", port, secs, log);
}

/* Waits up to secs for pid to exit, then SIGKILLs it (saying so when why is
 * not NULL): 0 when it exited with 0. */
static int wait_or_kill(pid_t pid, double secs, const char *why)
{
    int64_t until = bench_now_ns() + (int64_t)(secs * 1e9);
    int st = -1;
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid || (w < 0 && errno != EINTR))
            break;
        if (bench_now_ns() > until) {
            if (why)
                fprintf(stderr, "bench_peers: pid %d did not %s within %g s: SIGKILL\n",
                        (int)pid, why, secs);
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            st = -1;
            break;
        }
        usleep(20000);
    }
    forget(pid);
    return st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

int peer_flush_buf(pconn *c, const void *tx, size_t *off, size_t *len)
{
    int rc = bench_write_nb(c->fd, tx, off, *len);
    if (rc < 0)
        c->closed = 1;
    else if (rc == 0)
        *off = *len = 0;
    return rc;
}

int peer_stop_pid(pid_t pid, int sig, double secs)
{
    if (pid <= 0)
        return -1;
    kill(pid, sig);
    return wait_or_kill(pid, secs, "stop");
}

int peer_run(char *const argv[], const char *log, const char *as_user, double secs)
{
    return wait_or_kill(peer_spawn(argv, log, as_user), secs, NULL);
}

void peer_kill_all(void)
{
    while (nchildren > 0)
        peer_stop_pid(children[nchildren - 1], SIGTERM, 10);
}

/* On-CPU time of every thread of pid, in seconds, from schedstat (in ns).
 * utime and stime count whole clock ticks per process, which loses most of
 * the time of 256 PostgreSQL backends that each run a few ms in a row. */
static double threads_cpu_s(pid_t pid)
{
    char path[64];
    double s = 0;
    struct dirent *de;
    DIR *d;
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    if (!(d = opendir(path)))
        return 0;
    while ((de = readdir(d))) {
        char sp[320];
        unsigned long long ns = 0;
        FILE *f;
        if (de->d_name[0] < '1' || de->d_name[0] > '9')
            continue;
        snprintf(sp, sizeof sp, "/proc/%d/task/%s/schedstat", (int)pid, de->d_name);
        if ((f = fopen(sp, "r"))) {
            if (fscanf(f, "%llu", &ns) == 1)
                s += (double)ns / 1e9;
            fclose(f);
        }
    }
    closedir(d);
    return s;
}

/* Children that exit (PostgreSQL's backends of the previous row) move from
 * the live sum into the parent's reaped sum, so the total only grows. */
double peer_tree_cpu_s(pid_t pid)
{
    double s = threads_cpu_s(pid) + bench_proc_stat_s(pid, 16);
    DIR *d = opendir("/proc");
    struct dirent *de;
    while (d && (de = readdir(d))) {
        char path[300], buf[512], *p;
        int ppid = 0;
        FILE *f;
        if (de->d_name[0] < '1' || de->d_name[0] > '9')
            continue;
        snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
        if (!(f = fopen(path, "r")))
            continue;
        buf[fread(buf, 1, sizeof buf - 1, f)] = 0;
        fclose(f);
        if ((p = strrchr(buf, ')')) && sscanf(p + 2, "%*c %d", &ppid) == 1 && ppid == pid)
            s += threads_cpu_s((pid_t)atoi(de->d_name));
    }
    if (d)
        closedir(d);
    return s;
}

long peer_read_file(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    size_t n;
    if (!f)
        return -1;
    n = fread(buf, 1, cap - 1, f);
    buf[n] = 0;
    fclose(f);
    return (long)n;
}

typedef struct call_wait {
    int got;
    peer_reply *r;
} call_wait;

static void call_reply(void *ud, pconn *c, const peer_reply *r)
{
    call_wait *w = ud;
    (void)c;
    if (r->push || w->got)
        return;
    w->got = 1;
    *w->r = *r;
    w->r->body = NULL;
    w->r->len = 0;
}

int peer_call(pconn *c, int op, const contact *ct, const char *arg, peer_reply *r, int timeout_ms)
{
    int64_t until = bench_now_ns() + (int64_t)timeout_ms * 1000000;
    call_wait w = {0, r};
    memset(r, 0, sizeof *r);
    c->p->send(c, op, ct, arg);
    for (;;) {
        int fl = c->p->flush(c);
        struct pollfd pf = {c->fd, (short)(POLLIN | (fl == 1 ? POLLOUT : 0)), 0};
        if (fl < 0 || c->closed)
            break;
        if (bench_now_ns() > until) {
            snprintf(r->err, sizeof r->err, "no reply within %d ms", timeout_ms);
            return -1;
        }
        if (poll(&pf, 1, 50) < 0 && errno != EINTR)
            break;
        if ((pf.revents & (POLLIN | POLLERR | POLLHUP)) && c->p->read(c, call_reply, &w) != 0)
            break;
        if (w.got)
            return r->ok ? 0 : -1;
    }
    if (!r->err[0])
        snprintf(r->err, sizeof r->err, "connection closed");
    return -1;
}
