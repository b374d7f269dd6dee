/*
 * ack_fsync -- every acknowledgement leaves after the fsync that covers it
 * (reliability plan R2).
 *
 * A SIGKILL test keeps the OS page cache, so it cannot show that an acked
 * write reached the disk.  This test runs a real crmd under strace and
 * sends 1,000 pipelined creates (16 in flight) in frames with a zero mask
 * key, so each request's ref shows in the server's read().  From the trace:
 * for every request, the read that brought it, the send of its answer, and
 * in between, in this order, an fdatasync of data.mdb that started after
 * the read (the commit's data pages), a write of a meta page (a pwrite into
 * the first two pages of data.mdb) that started after that fdatasync
 * returned, and then that meta page made durable before the send began:
 * either written through LMDB's O_DSYNC descriptor (commit-flushes = 2,
 * LMDB's own commit) and returned, or followed by another fdatasync that
 * started after it and returned (commit-flushes = 1, MDB_NOMETASYNC: the
 * next commit's flush, or the writer's own when nothing follows).
 * Both are run, one after the other.
 * Pass: acks before their sync = 0, and every request answered OK.
 *
 * Env: CRMD_BIN, CRM_SCHEMAS, CRM_ACK_WRITES (default 1000), CRM_KEEP_TRACE
 * (keep the trace file).  Exits 77 (skip) when strace cannot trace here.
 */
#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "faultutil.h"
#include "testutil.h"
#include "tmpdir.h"

#define NAME "ack_fsync"
#define MAXFD 4096

typedef struct call {
    long start, end; /* line numbers of its first and last trace line */
    int dsync;       /* a meta write through the O_DSYNC descriptor */
} call;

typedef struct calls {
    call *v;
    size_t n, cap;
} calls;

static void calls_add(calls *c, long start, long end)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 1024;
        if (!(c->v = realloc(c->v, c->cap * sizeof *c->v)))
            abort();
    }
    c->v[c->n].dsync = 0;
    c->v[c->n].start = start;
    c->v[c->n++].end = end;
}

/* per ref: the line where its read returned and where its answer's send began */
static long *recv_at, *send_at;
static int nrefs;
static calls syncs, metas;
static int fd_role[MAXFD]; /* 1 data.mdb, 2 data.mdb with O_DSYNC (meta) */

/* An unfinished call, waiting for its "<... resumed>" line. */
typedef struct pending {
    int pid;
    long start;
    char *text;
} pending;
static pending pend[256];

/* Calls fn(ref) for each `ref\": N` in text (strace escapes the quotes). */
static void each_ref(const char *text, long line, long *at, int first)
{
    for (const char *p = text; (p = strstr(p, "ref\\\":")); ) {
        p += 6;
        while (*p == ' ')
            p++;
        if (!isdigit((unsigned char)*p))
            continue;
        long r = strtol(p, NULL, 10) - 1; /* refs are write index + 1 */
        if (r >= 0 && r < nrefs && (!first || at[r] < 0))
            at[r] = line;
    }
}

static void complete(const char *text, long start, long end)
{
    char name[32];
    size_t n = strcspn(text, "(");
    const char *args = text + n + 1, *ret = NULL;
    int fd = atoi(args);
    long rv;
    /* the result: the last " = " after a ')' and strace's padding */
    for (const char *q = strstr(args, " = "); q; q = strstr(q + 1, " = ")) {
        const char *b = q;
        while (b > args && *b == ' ')
            b--;
        if (*b == ')')
            ret = q;
    }
    if (n == 0 || n >= sizeof name || !text[n] || !ret)
        return;
    memcpy(name, text, n);
    name[n] = 0;
    rv = strtol(ret + 3, NULL, 10);
    if (strcmp(name, "openat") == 0) {
        const char *path = strstr(args, "\"");
        if (rv >= 0 && rv < MAXFD && path && strstr(path, "/data.mdb\""))
            fd_role[rv] = strstr(args, "O_DSYNC") ? 2 : 1;
        return;
    }
    if (fd < 0 || fd >= MAXFD || rv < 0)
        return;
    if (strcmp(name, "close") == 0) {
        fd_role[fd] = 0;
    } else if (strcmp(name, "fdatasync") == 0 || strcmp(name, "fsync") == 0) {
        if (fd_role[fd] == 1)
            calls_add(&syncs, start, end);
    } else if (strcmp(name, "pwrite64") == 0) {
        /* the offset: the last argument, after the buffer's text */
        const char *close = ret, *comma;
        long off;
        while (close > args && *close != ')')
            close--;
        for (comma = close; comma > args && *comma != ','; comma--)
            ;
        off = strtol(comma + 1, NULL, 10);
        if (fd_role[fd] && off < 2 * 4096) { /* pages 0 and 1: LMDB's two meta pages */
            calls_add(&metas, start, end);
            metas.v[metas.n - 1].dsync = fd_role[fd] == 2;
        }
    } else if (strcmp(name, "read") == 0 || strcmp(name, "recvfrom") == 0 ||
               strcmp(name, "recvmsg") == 0) {
        each_ref(args, end, recv_at, 1);
    } else if (strcmp(name, "sendto") == 0 || strcmp(name, "sendmsg") == 0 ||
               strcmp(name, "write") == 0 || strcmp(name, "writev") == 0) {
        each_ref(args, start, send_at, 1);
    }
}

static int parse(const char *path)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    long no = 0;
    if (!f)
        return -1;
    while (getline(&line, &cap, f) > 0) {
        char *p = line, *end;
        int pid = (int)strtol(p, &end, 10);
        no++;
        line[strcspn(line, "\n")] = 0;
        p = end;
        while (*p == ' ')
            p++;
        if (strncmp(p, "<... ", 5) == 0) { /* "<... name resumed>rest" */
            char *rest = strstr(p, "resumed>");
            for (size_t i = 0; rest && i < sizeof pend / sizeof *pend; i++)
                if (pend[i].text && pend[i].pid == pid) {
                    size_t a = strlen(pend[i].text), b = strlen(rest + 8);
                    char *all = malloc(a + b + 1);
                    memcpy(all, pend[i].text, a);
                    memcpy(all + a, rest + 8, b + 1);
                    complete(all, pend[i].start, no);
                    free(all);
                    free(pend[i].text);
                    pend[i].text = NULL;
                    break;
                }
            continue;
        }
        char *unf = strstr(p, " <unfinished ...>");
        if (unf && unf[17] == 0) {
            *unf = 0;
            for (size_t i = 0; i < sizeof pend / sizeof *pend; i++)
                if (!pend[i].text) {
                    pend[i].pid = pid;
                    pend[i].start = no;
                    pend[i].text = strdup(p);
                    break;
                }
            continue;
        }
        complete(p, no, no);
    }
    free(line);
    fclose(f);
    return 0;
}

/* strace ignores SIGTERM while it runs a program (its -I3): stop crmd, its
 * child, and strace ends with it.  Returns crmd's exit status. */
static int stop(crmd_proc *p)
{
    char path[64], buf[64] = "";
    FILE *f;
    if (p->pid <= 0)
        return -1;
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)p->pid, (int)p->pid);
    if ((f = fopen(path, "r"))) {
        if (fgets(buf, sizeof buf, f) && atoi(buf) > 0)
            kill(atoi(buf), SIGTERM);
        fclose(f);
    }
    return crmd_stop_keep(p);
}

static int run_mode(int flushes)
{
    const char *nenv = getenv("CRM_ACK_WRITES");
    char *dir = crm_tmpdir_make("ackfsync"), wrapper[4096], trace[4096], data[4096], script[8192];
    crmd_proc p;
    ws_client c;
    fault_ledger l = {0};
    int early = 0, unmatched = 0, rc;
    double t0;

    nrefs = nenv ? atoi(nenv) : 1000;
    syncs.n = metas.n = 0;
    memset(fd_role, 0, sizeof fd_role);
    snprintf(wrapper, sizeof wrapper, "%s/crmd-strace", dir);
    snprintf(trace, sizeof trace, "%s/trace", dir);
    snprintf(data, sizeof data, "%s/data", dir);
    /* one trace file per process ($$: the shell execs strace, which runs
     * crmd under the same pid), so `crmd token create` has its own */
    snprintf(script, sizeof script,
             "#!/bin/sh\n"
             "# LeakSanitizer cannot run under ptrace (an ASan build)\n"
             "export ASAN_OPTIONS=\"${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0\"\n"
             "if [ \"$1\" = serve ]; then set -- \"$@\" --commit-flushes %d; fi\n"
             "exec strace -f -qq -s 65536 -o '%s.'$$ -e trace=openat,close,read,recvfrom,"
             "recvmsg,write,writev,pwrite64,pwritev,sendto,sendmsg,fdatasync,fsync '%s' \"$@\"\n",
             flushes, trace, fault_crmd());
    crm_tmpdir_write(dir, "crmd-strace", script);
    chmod(wrapper, 0755);
    if (crmd_start(&p, wrapper, fault_schemas(), data) != 0)
        return fault_fail(NAME, "crmd did not start under strace");
    if (fault_connect(&c, &p) != 0) {
        stop(&p);
        return fault_fail(NAME, "cannot connect");
    }
    t0 = crm_test_now_s();
    fault_storm(&c, "a", &l, nrefs, 16, 64, 1, 0, 30000);
    ws_close(&c);
    snprintf(trace + strlen(trace), sizeof trace - strlen(trace), ".%d", (int)p.pid);
    rc = stop(&p);
    printf(NAME ": commit-flushes %d: %d writes, %d acknowledged in %.1f s under strace; crmd exit %d\n",
           flushes, l.n, l.ok, crm_test_now_s() - t0, rc);
    if (l.ok != nrefs)
        return fault_fail(NAME, "%d of %d writes acknowledged", l.ok, nrefs);

    recv_at = malloc(sizeof *recv_at * (size_t)nrefs);
    send_at = malloc(sizeof *send_at * (size_t)nrefs);
    for (int i = 0; i < nrefs; i++)
        recv_at[i] = send_at[i] = -1;
    if (parse(trace) != 0)
        return fault_fail(NAME, "no trace at %s", trace);
    for (int i = 0; i < nrefs; i++) {
        size_t s = 0, m = 0;
        if (recv_at[i] < 0 || send_at[i] < 0) {
            if (unmatched++ < 5)
                fprintf(stderr, "write %d: read at line %ld, answer sent at line %ld\n", i,
                        recv_at[i], send_at[i]);
            continue;
        }
        while (s < syncs.n && syncs.v[s].start < recv_at[i])
            s++;
        while (s < syncs.n && m < metas.n && metas.v[m].start < syncs.v[s].end)
            m++;
        int durable = 0;
        if (s < syncs.n && m < metas.n) {
            if (metas.v[m].dsync) {
                durable = metas.v[m].end < send_at[i];
            } else {
                size_t s2 = s;
                while (s2 < syncs.n && syncs.v[s2].start < metas.v[m].end)
                    s2++;
                durable = s2 < syncs.n && syncs.v[s2].end < send_at[i];
            }
        }
        if (!durable) {
            if (early++ < 5)
                fprintf(stderr, "write %d: answered at line %ld before its sync (read at %ld)\n",
                        i, send_at[i], recv_at[i]);
        }
    }
    printf(NAME ": trace: %zu fdatasync of data.mdb, %zu meta-page writes, %d requests "
           "found in reads and answers; acks before their sync = %d; not found in the trace = %d\n",
           syncs.n, metas.n, nrefs - unmatched, early, unmatched);
    free(recv_at);
    free(send_at);
    free(syncs.v);
    free(metas.v);
    syncs.v = metas.v = NULL;
    syncs.cap = metas.cap = 0;
    for (size_t i = 0; i < sizeof pend / sizeof *pend; i++)
        free(pend[i].text);
    fault_ledger_free(&l);
    if (!getenv("CRM_KEEP_TRACE"))
        crm_tmpdir_remove(dir);
    else
        printf(NAME ": trace kept in %s\n", trace);
    if (syncs.n == 0 || metas.n == 0)
        return fault_fail(NAME, "no fdatasync or meta write seen: is the trace right?");
    if (unmatched)
        return fault_fail(NAME, "%d requests not found in the trace", unmatched);
    if (early)
        return fault_fail(NAME, "%d acknowledgements before their sync", early);
    return 0;
}

int main(void)
{
    int rc;
    signal(SIGPIPE, SIG_IGN);
    if (system("strace -qq -o /dev/null true") != 0) {
        printf(NAME ": SKIP: strace cannot trace here (install strace; ptrace allowed?)\n");
        return 77;
    }
    if ((rc = run_mode(1)) != 0 || (rc = run_mode(2)) != 0)
        return rc;
    printf(NAME ": PASS\n");
    return 0;
}
