/*
 * bench_ws -- crmd over the wire: a load generator in C against a real crmd
 * that this program starts (and stops) itself, so every figure comes from
 * one run on one machine.
 *
 * The load generator is one thread (plus the fan-out's writer, below): epoll
 * over non-blocking sockets, RFC 6455 client frames (masked) written here, one WebSocket connection per simulated
 * client.  Connections are opened (handshake and auth) before the clock
 * starts.  Each connection keeps a window of W pipelined requests in flight
 * (CRM_BENCH_WINDOW, default 1: the next request leaves when the previous
 * reply came, so the latency figures are honest round trips); latency is
 * per request, from the moment it is written to the socket to the moment its
 * reply (matched by ref) is read.  Every row runs a warm-up that is not
 * counted, then the measured seconds; ops/s counts replies read inside the
 * measured window.
 *
 * Workloads (JSON subprotocol, crm.v1.json), each at 1, 16, 64 and 256
 * connections:
 *  (1) durable creates of a ~250-byte contact (unique email and name, city,
 *      owner, phone ...) in the bundled contacts collection (its indexes and
 *      defaults as shipped); the ack is sent only after the group commit;
 *      also msgpack (crm.v1.msgpack) at 64, and a pipelined row at 64;
 *  (2) get by id, over ids created beforehand (random order);
 *  (3) an indexed query returning 10 records: where city = X (exactly 10
 *      matches), limit 10;
 *  (4) fan-out: M subscriber connections (CRM_BENCH_FANOUT_SUBS, 1000)
 *      subscribed to contacts while one writer (its own thread and
 *      blocking socket) creates at a fixed rate (CRM_BENCH_FANOUT_RATE,
 *      100/s) for CRM_BENCH_FANOUT_SECONDS (5): time from the write's ack at
 *      the writer to each subscriber's receipt of its push, also from the
 *      write's send, and pushes missing (must be 0);
 *  (5) the ceiling: a raw libwebsockets echo server (below, forked as its
 *      own process, same lws options and send-queue pattern as crmd) driven
 *      by the same load generator at 64 connections with messages of the
 *      create request's size;
 *  (6) memory: crmd's VmRSS before and after 1000 idle authenticated
 *      connections (the fan-out's, before they subscribe), on a fresh crmd.
 *
 * crmd runs as `crmd serve --rate 10000000` with no scripts or plugins (the bare
 * kernel; bench_features measures the CRM features): its default per-connection limit
 * (10,000 requests/s) would otherwise cap the one-connection rows.  Its data
 * folder goes under CRM_BENCH_DIR, else under the build folder (the one
 * holding bench/bench_ws): on the checkout's disk, not a tmpfs /tmp where
 * fsync is free.
 *
 * Env: CRM_BENCH_SECONDS (measured seconds per row, default 3, fractions
 * allowed), CRM_BENCH_WARMUP (0.5), CRM_BENCH_WINDOW (1),
 * CRM_BENCH_PIPELINE_WINDOW (8, the extra pipelined create row),
 * CRM_BENCH_FANOUT_SUBS / _RATE / _SECONDS, CRM_BENCH_DIR, CRM_CRMD (the
 * crmd binary), CRM_SCHEMAS (the schemas folder), CRM_BENCH_PERF (a path
 * prefix: one more create, get and query row at 64 connections each runs
 * under `perf record --call-graph dwarf -p CRMD`, into PREFIX-create.data,
 * PREFIX-get.data and PREFIX-query.data; those rows are not reported).
 *
 * Output: a Markdown report on stdout (bench/run.sh keeps it in
 * bench/results/ws.md) with the machine, its load average, and the issue's
 * targets beside the measured figures.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <libgen.h>
#include <libwebsockets.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "benchutil.h"
#include "benchws.h"
#include "fanout.h"
#include "machine.h"

#ifndef CRM_SOURCE_DIR
#define CRM_SOURCE_DIR "."
#endif

#define TMPFS_MAGIC_ 0x01021994
#define RAMFS_MAGIC_ 0x858458f6
#define MAX_EVENTS 512
#define IDLE_CONNS 1000

/* ---- small helpers ---- */

static bench_crmd_proc crmd = {.pid = -1};
static pid_t echo_pid = -1, perf_pid = -1;

static void kill_children(void)
{
    pid_t *ps[] = {&perf_pid, &echo_pid, &crmd.pid};
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++)
        if (*ps[i] > 0) {
            kill(*ps[i], SIGKILL);
            waitpid(*ps[i], NULL, 0);
            *ps[i] = -1;
        }
}

/* ---- a run of one workload ---- */

enum { K_CREATE, K_GET, K_QUERY, K_ECHO, K_PRELOAD };

typedef struct run run;

struct run {
    int kind, window, mp;
    int64_t t_warm, t_end;
    int measuring, stop;
    uint64_t issued, limit, in_flight;
    int64_t *lat;
    size_t nlat, caplat;
    uint64_t done, errors, bad, closed;
    char first_err[200];
    /* preload: ids captured from the acks; get: the ids asked for */
    char (*ids)[32];
    size_t nids, capids;
    /* CPU seconds at the start and end of the measured window */
    double srv0, srv1, cli0, cli1, all0, all1;
};

static uint64_t g_seq; /* makes every created contact unique in the whole run */

static void note_error(run *r, const uint8_t *m, size_t n)
{
    r->errors++;
    if (!r->first_err[0])
        error_text(m, n, r->first_err, sizeof r->first_err);
}

/* Issues requests on c while its window has room. */
static void conn_issue(run *r, conn *c)
{
    int64_t now = bench_now_ns();
    while (c->nfree && !r->stop && (!r->limit || r->issued < r->limit)) {
        uint8_t buf[REQ_CAP];
        wb w = {buf, 0, sizeof buf, c->mp, 0, {0}, {0}};
        int slot = c->free_slots[--c->nfree];
        uint64_t ref = c->gen++ * (uint64_t)r->window + (uint64_t)slot;
        switch (r->kind) {
        case K_CREATE:
        case K_ECHO: {
            uint64_t k = g_seq++;
            req_create(&w, ref, "c", k, bench_cities[k % BENCH_NCITIES]);
            break;
        }
        case K_PRELOAD: {
            char city[16];
            query_city(city, sizeof city, (unsigned)(r->issued / PER_CITY));
            req_create(&w, ref, "q", r->issued, city);
            break;
        }
        case K_GET:
            req_get(&w, ref, r->ids[bench_rng() % r->nids]);
            break;
        case K_QUERY:
            req_query(&w, ref, (unsigned)(bench_rng() % QUERY_CITIES));
            break;
        }
        ws_send_wb(c, &w);
        c->slot_sent[slot] = now;
        c->outstanding++;
        r->in_flight++;
        r->issued++;
    }
}

static void load_deliver(void *ud, conn *c, const uint8_t *m, size_t n, int64_t now)
{
    run *r = ud;
    uint64_t ref;
    int ok, slot;
    if (reply_ref(c->mp, m, n, &ref, &ok) != 0) {
        note_error(r, m, n); /* no pushes expected here */
        return;
    }
    slot = (int)(ref % (uint64_t)r->window);
    if (slot < 0 || slot >= r->window || c->outstanding == 0) {
        note_error(r, m, n);
        return;
    }
    c->free_slots[c->nfree++] = slot;
    c->outstanding--;
    r->in_flight--;
    if (r->kind == K_ECHO) {
        ok = 1;
    } else if (ok != 1) {
        note_error(r, m, n);
    } else if (r->kind == K_QUERY && count_sub(m, n, "\"_rev\":") != PER_CITY) {
        r->bad++;
        note_error(r, m, n);
        ok = 0;
    } else if (r->kind == K_PRELOAD) {
        const uint8_t *p = memmem(m, n, "\"id\":\"", 6);
        const uint8_t *q = p ? memchr(p + 6, '"', (size_t)(m + n - p - 6)) : NULL;
        if (!q || q - p - 6 >= 32)
            bench_die("preload: no id in the reply");
        if (r->nids == r->capids) {
            r->capids = r->capids ? r->capids * 2 : 1024;
            r->ids = bench_xrealloc(r->ids, r->capids * sizeof *r->ids);
        }
        memcpy(r->ids[r->nids], p + 6, (size_t)(q - p - 6));
        r->ids[r->nids][q - p - 6] = 0;
        r->nids++;
    }
    if (r->measuring && now <= r->t_end && ok == 1) {
        if (r->nlat == r->caplat) {
            r->caplat = r->caplat ? r->caplat * 2 : 65536;
            r->lat = bench_xrealloc(r->lat, r->caplat * sizeof *r->lat);
        }
        r->lat[r->nlat++] = now - c->slot_sent[slot];
        r->done++;
    }
    conn_issue(r, c);
}



/* ---- crmd ---- */

typedef struct env {
    bench_crmd_proc *p; /* the crmd under test */
    char base[4096];
    double warm, secs;
    int window;
} env;

/* the bare kernel: no scripts or plugins (bench_features measures the CRM
 * features' hooks; the defaults would load ./scripts) */
static const char *CRMD_FLAGS = "--rate 10000000 --scripts /nonexistent/no-scripts --plugins /nonexistent/no-plugins";

/* ---- the lws echo server (the ceiling) ---- */

typedef struct echo_msg {
    struct echo_msg *next;
    size_t len;
    int binary;
    unsigned char buf[]; /* LWS_PRE, then len bytes */
} echo_msg;

typedef struct echo_sess {
    echo_msg *qh, *qt;
    unsigned char *rx;
    size_t rxlen;
} echo_sess;

static void echo_queue(struct lws *wsi, echo_sess *s, const void *p, size_t len, int binary)
{
    echo_msg *m = malloc(sizeof *m + LWS_PRE + len);
    if (!m)
        return;
    m->next = NULL;
    m->len = len;
    m->binary = binary;
    memcpy(m->buf + LWS_PRE, p, len);
    if (s->qt)
        s->qt->next = m;
    else
        s->qh = m;
    s->qt = m;
    lws_callback_on_writable(wsi);
}

/* Same pattern as crmd's net.c: copy the message into a per-session queue,
 * one lws_write per WRITEABLE. */
static int echo_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len)
{
    echo_sess *s = user;
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
        memset(s, 0, sizeof *s);
        break;
    case LWS_CALLBACK_RECEIVE:
        if (lws_is_first_fragment(wsi) && lws_is_final_fragment(wsi) && !s->rxlen) {
            echo_queue(wsi, s, in, len, lws_frame_is_binary(wsi));
            break;
        } else {
            unsigned char *nb = realloc(s->rx, s->rxlen + len);
            if (!nb)
                return -1;
            s->rx = nb;
            memcpy(s->rx + s->rxlen, in, len);
            s->rxlen += len;
            if (lws_is_final_fragment(wsi)) {
                echo_queue(wsi, s, s->rx, s->rxlen, lws_frame_is_binary(wsi));
                s->rxlen = 0;
            }
        }
        break;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (s->qh) {
            echo_msg *m = s->qh;
            int w = lws_write(wsi, m->buf + LWS_PRE, m->len,
                              m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
            if (w < (int)m->len)
                return -1;
            s->qh = m->next;
            if (!s->qh)
                s->qt = NULL;
            free(m);
            if (s->qh)
                lws_callback_on_writable(wsi);
        }
        break;
    case LWS_CALLBACK_CLOSED:
        while (s->qh) {
            echo_msg *m = s->qh;
            s->qh = m->next;
            free(m);
        }
        free(s->rx);
        s->rx = NULL;
        break;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols echo_protocols[] = {
    {"echo", echo_cb, sizeof(echo_sess), 0, 0, NULL, 0}, {NULL, NULL, 0, 0, 0, NULL, 0}};

/* Forks the echo server; returns its port. */
static int echo_start(void)
{
    int pfd[2], port = 0;
    if (pipe(pfd) != 0)
        bench_die("pipe: %s", strerror(errno));
    echo_pid = fork();
    if (echo_pid < 0)
        bench_die("fork: %s", strerror(errno));
    if (echo_pid == 0) {
        struct lws_context_creation_info info;
        struct lws_context *ctx;
        close(pfd[0]);
        signal(SIGTERM, SIG_DFL);
        lws_set_log_level(LLL_ERR, NULL);
        memset(&info, 0, sizeof info);
        info.port = 0;
        info.iface = "127.0.0.1";
        info.protocols = echo_protocols;
        info.options = LWS_SERVER_OPTION_VALIDATE_UTF8 | LWS_SERVER_OPTION_DISABLE_IPV6;
        info.timeout_secs = 10;
        info.max_http_header_pool = 256;
        info.pt_serv_buf_size = 64 * 1024;
        if (!(ctx = lws_create_context(&info)))
            _exit(1);
        port = lws_get_vhost_listen_port(lws_get_vhost_by_name(ctx, "default"));
        if (write(pfd[1], &port, sizeof port) != sizeof port)
            _exit(1);
        close(pfd[1]);
        for (;;)
            if (lws_service(ctx, 0) < 0)
                break;
        _exit(0);
    }
    close(pfd[1]);
    if (read(pfd[0], &port, sizeof port) != sizeof port || port <= 0)
        bench_die("the lws echo server did not start");
    close(pfd[0]);
    return port;
}

/* ---- rows ---- */

typedef struct row {
    char what[64];
    const char *proto;
    int conns, window, is_ceiling;
    double ops, p50, p99, p999, srv_cpu, cli_cpu, other_cpu;
    uint64_t n, errors;
    double per_commit, commit_ms;
    int has_commits;
    char err[200];
} row;

/* Runs one workload for warm + secs on nconns fresh connections.  port:
 * crmd or the echo server (pid: its process, for CPU). */
static row run_row(env *e, const char *what, int kind, const char *proto, int nconns, int window,
                   int port, pid_t srv_pid, char (*ids)[32], size_t nids, const char *perf_out)
{
    row rw;
    run r;
    conn *cs = bench_xcalloc((size_t)nconns, sizeof *cs);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    commits c0 = {0, 0, 0}, c1;
    int64_t drain_until = 0;
    memset(&rw, 0, sizeof rw);
    memset(&r, 0, sizeof r);
    snprintf(rw.what, sizeof rw.what, "%s", what);
    rw.proto = proto ? proto : "(none)";
    rw.conns = nconns;
    rw.window = window;
    rw.is_ceiling = kind == K_ECHO;
    r.kind = kind;
    r.window = window;
    r.mp = proto && strcmp(proto, "crm.v1.msgpack") == 0;
    r.ids = ids;
    r.nids = nids;
    if (ep < 0)
        bench_die("epoll_create1: %s", strerror(errno));
    fprintf(stderr, "bench_ws: %s, %s, %d connections, window %d ...\n", what, rw.proto, nconns,
            window);
    for (int i = 0; i < nconns; i++) {
        conn_open(&cs[i], port, proto, kind == K_ECHO ? NULL : e->p->token, window);
        conn_nonblock(&cs[i], ep);
    }
    if (kind != K_ECHO)
        c0 = crmd_commits(port);
    if (perf_out) {
        char pid[16];
        snprintf(pid, sizeof pid, "%d", (int)srv_pid);
        perf_pid = fork();
        if (perf_pid == 0) {
            execlp("perf", "perf", "record", "-F", "2000", "--call-graph", "dwarf,16384", "-q",
                   "-o", perf_out, "-p", pid, (char *)NULL);
            _exit(127);
        }
        usleep(300000);
    }
    r.t_warm = bench_now_ns() + (int64_t)(e->warm * 1e9);
    r.t_end = r.t_warm + (int64_t)(e->secs * 1e9);
    for (int i = 0; i < nconns; i++) {
        conn_issue(&r, &cs[i]);
        conn_flush(&cs[i], ep);
    }
    for (;;) {
        struct epoll_event ev[MAX_EVENTS];
        int64_t now = bench_now_ns(), wait_ns;
        int nev;
        if (!r.measuring && now >= r.t_warm) {
            r.measuring = 1;
            r.srv0 = bench_proc_cpu_s(srv_pid);
            r.cli0 = bench_self_cpu_s();
            r.all0 = bench_machine_busy_s();
        }
        if (!r.stop && now >= r.t_end) {
            r.stop = 1;
            r.srv1 = bench_proc_cpu_s(srv_pid);
            r.cli1 = bench_self_cpu_s();
            r.all1 = bench_machine_busy_s();
            drain_until = now + 10 * (int64_t)1000000000;
        }
        if (r.stop && (r.in_flight == 0 || now > drain_until))
            break;
        wait_ns = r.stop ? 100000000 : (r.measuring ? r.t_end : r.t_warm) - now;
        nev = epoll_wait(ep, ev, MAX_EVENTS, (int)(wait_ns / 1000000) + 1);
        if (nev < 0 && errno != EINTR)
            bench_die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < nev; i++) {
            conn *c = ev[i].data.ptr;
            if (c->closed)
                continue;
            if (ev[i].events & EPOLLOUT)
                conn_flush(c, ep);
            if (ev[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                conn_read(&r, c, load_deliver);
            if (c->closed) {
                r.closed++;
                r.in_flight -= (uint64_t)c->outstanding;
                c->outstanding = 0;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                continue;
            }
            conn_flush(c, ep);
        }
    }
    if (perf_pid > 0) {
        kill(perf_pid, SIGINT);
        waitpid(perf_pid, NULL, 0);
        perf_pid = -1;
    }
    if (r.in_flight)
        fprintf(stderr, "bench_ws: %" PRIu64 " requests still unanswered 10 s after the end\n",
                r.in_flight);
    if (r.closed)
        fprintf(stderr, "bench_ws: %" PRIu64 " connections closed by the server (code %d)\n",
                r.closed, cs[0].close_code);
    if (kind != K_ECHO) {
        c1 = crmd_commits(port);
        if (c1.batches > c0.batches) {
            rw.has_commits = 1;
            rw.per_commit = (c1.writes - c0.writes) / (c1.batches - c0.batches);
            rw.commit_ms = (c1.secs - c0.secs) / (c1.batches - c0.batches) * 1e3;
        }
    }
    qsort(r.lat, r.nlat, sizeof *r.lat, bench_cmp_i64);
    rw.n = r.nlat;
    rw.ops = (double)r.done / e->secs;
    rw.p50 = bench_pct_ms(r.lat, r.nlat, 0.50);
    rw.p99 = bench_pct_ms(r.lat, r.nlat, 0.99);
    rw.p999 = bench_pct_ms(r.lat, r.nlat, 0.999);
    rw.errors = r.errors + r.closed;
    rw.srv_cpu = (r.srv1 - r.srv0) / e->secs * 100;
    rw.cli_cpu = (r.cli1 - r.cli0) / e->secs * 100;
    rw.other_cpu = (r.all1 - r.all0) / e->secs * 100 - rw.srv_cpu - rw.cli_cpu;
    snprintf(rw.err, sizeof rw.err, "%s", r.first_err);
    if (r.errors)
        fprintf(stderr, "bench_ws: %" PRIu64 " error replies; the first: %s\n", r.errors,
                r.first_err);
    for (int i = 0; i < nconns; i++)
        conn_free(&cs[i]);
    free(cs);
    free(r.lat);
    close(ep);
    usleep(200000); /* let the server see the closes before the next row */
    return rw;
}

/* Creates QUERY_CITIES x PER_CITY contacts (city QC-nnnn) and returns their ids. */
static size_t preload(env *e, char (**ids)[32])
{
    enum { NC = 8, W = 32 };
    run r;
    conn cs[NC];
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int64_t t0 = bench_now_ns();
    memset(&r, 0, sizeof r);
    r.kind = K_PRELOAD;
    r.window = W;
    r.limit = QUERY_CITIES * PER_CITY;
    r.t_warm = r.t_end = INT64_MAX;
    fprintf(stderr, "bench_ws: preloading %d contacts in %d cities ...\n", QUERY_CITIES * PER_CITY,
            QUERY_CITIES);
    for (int i = 0; i < NC; i++) {
        conn_open(&cs[i], e->p->port, "crm.v1.json", e->p->token, W);
        conn_nonblock(&cs[i], ep);
        conn_issue(&r, &cs[i]);
        conn_flush(&cs[i], ep);
    }
    while (r.in_flight || r.issued < r.limit) {
        struct epoll_event ev[MAX_EVENTS];
        int nev = epoll_wait(ep, ev, MAX_EVENTS, 1000);
        if (nev < 0 && errno != EINTR)
            bench_die("epoll_wait: %s", strerror(errno));
        if (bench_now_ns() - t0 > 300 * (int64_t)1000000000)
            bench_die("preload took over 5 minutes");
        for (int i = 0; i < nev; i++) {
            conn *c = ev[i].data.ptr;
            if (ev[i].events & EPOLLOUT)
                conn_flush(c, ep);
            if (conn_read(&r, c, load_deliver) != 0)
                bench_die("preload: connection closed (code %d)", c->close_code);
            conn_flush(c, ep);
        }
    }
    if (r.errors || r.nids != (size_t)(QUERY_CITIES * PER_CITY))
        bench_die("preload: %" PRIu64 " errors (%s), %zu ids", r.errors, r.first_err, r.nids);
    for (int i = 0; i < NC; i++)
        conn_free(&cs[i]);
    close(ep);
    *ids = r.ids;
    return r.nids;
}

/* ---- fan-out and idle memory ---- */

typedef struct fanres {
    fan_stats st;
    int subs;
    uint64_t overflows;
    long rss0, rss1, anon0, anon1;
    double kib_per_conn;
    double srv_cpu, cli_cpu;
} fanres;

/* Subscribers' messages (the writer has its own thread). */
static void fan_deliver(void *ud, conn *c, const uint8_t *m, size_t n, int64_t now)
{
    const fan_writer *f = ud;
    if (n > 17 && memcmp(m, "{\"event\":\"change\"", 17) == 0) {
        static const char key[] = "\"email\":\"f";
        const uint8_t *p = memmem(m, n, key, sizeof key - 1);
        uint64_t k = 0;
        if (!p) {
            c->fan.others++;
            return;
        }
        for (p += sizeof key - 1; p < m + n && *p >= '0' && *p <= '9'; p++)
            k = k * 10 + (uint64_t)(*p - '0');
        fan_rx_note(&c->fan, f->nwrites, k, now);
    } else if (n > 19 && memcmp(m, "{\"event\":\"overflow\"", 19) == 0) {
        c->overflows++;
    } else {
        c->fan.others++;
    }
}

/* The writer's create k on its blocking connection (fan_create_fn). */
static int fan_create(void *ud, int k, char *err, size_t cap, int *gone)
{
    conn *w = ud;
    uint8_t buf[REQ_CAP];
    wb b = {buf, 0, sizeof buf, 0, 0, {0}, {0}};
    req_create(&b, (uint64_t)k + 1, "f", (uint64_t)k, "Fanout City");
    if (conn_call(w, &b, (uint64_t)k + 1, 10000) == 0)
        return 0;
    snprintf(err, cap, "%s", w->got_err[0] ? w->got_err : "no ack within 10 s");
    *gone = w->closed;
    return -1;
}

static fan_rx *fan_sub(void *subs, int i, int *closed)
{
    conn *c = (conn *)subs + i;
    *closed = c->closed;
    return &c->fan;
}

static fanres run_fanout(env *e, int nsubs, double rate, double secs)
{
    fanres fr;
    fan_writer f;
    conn *subs = bench_xcalloc((size_t)nsubs, sizeof *subs), writer;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int64_t done_at = 0, t0;
    double srv0, cli0;
    memset(&fr, 0, sizeof fr);
    fan_writer_init(&f, rate, secs, fan_create, &writer);
    fr.subs = nsubs;

    /* The writer connects first: crmd then writes its ack ahead of the pushes
     * of the same commit (connected last, 99% of the pushes were read before
     * the ack in a trial run, and ack->push said nothing). */
    conn_open(&writer, e->p->port, "crm.v1.json", e->p->token, 0);
    writer.role = ROLE_WRITER;
    /* memory: a fresh crmd, before and after the idle authenticated connections */
    usleep(500000);
    fr.rss0 = bench_proc_status_kb(crmd.pid, "VmRSS:");
    fr.anon0 = bench_proc_status_kb(crmd.pid, "RssAnon:");
    fprintf(stderr, "bench_ws: opening %d authenticated connections ...\n", nsubs);
    for (int i = 0; i < nsubs; i++) {
        conn_open(&subs[i], e->p->port, "crm.v1.json", e->p->token, 0);
        subs[i].role = ROLE_SUB;
    }
    usleep(500000);
    fr.rss1 = bench_proc_status_kb(crmd.pid, "VmRSS:");
    fr.anon1 = bench_proc_status_kb(crmd.pid, "RssAnon:");
    fr.kib_per_conn = (double)(fr.rss1 - fr.rss0) / nsubs;

    fprintf(stderr, "bench_ws: fan-out: %d subscribers, %d creates at %g/s ...\n", nsubs,
            f.nwrites, rate);
    for (int i = 0; i < nsubs; i++) {
        uint8_t buf[REQ_CAP];
        wb w = {buf, 0, sizeof buf, 0, 0, {0}, {0}};
        req_subscribe(&w, 1);
        if (conn_call(&subs[i], &w, 1, 5000) != 0)
            bench_die("subscribe failed: %s", subs[i].got_err);
        fan_rx_init(&subs[i].fan, f.nwrites);
        conn_nonblock(&subs[i], ep);
    }

    srv0 = bench_proc_cpu_s(crmd.pid);
    cli0 = bench_self_cpu_s();
    fan_writer_start(&f, 100000000);
    t0 = f.t0;
    while (!fan_settled(&f, fan_sub, subs, nsubs, bench_now_ns(), &done_at)) {
        struct epoll_event ev[MAX_EVENTS];
        int nev = epoll_wait(ep, ev, MAX_EVENTS, 10);
        if (nev < 0 && errno != EINTR)
            bench_die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < nev; i++) {
            conn *c = ev[i].data.ptr;
            if (c->closed)
                continue;
            if (ev[i].events & EPOLLOUT)
                conn_flush(c, ep);
            if (ev[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                conn_read(&f, c, fan_deliver);
            if (c->closed) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                fprintf(stderr, "bench_ws: fan-out: a subscriber was closed (code %d)\n",
                        c->close_code);
                continue;
            }
            conn_flush(c, ep);
        }
    }
    fan_writer_join(&f);
    {
        double span = (double)(bench_now_ns() - t0) / 1e9;
        fr.srv_cpu = (bench_proc_cpu_s(crmd.pid) - srv0) / span * 100;
        fr.cli_cpu = (bench_self_cpu_s() - cli0) / span * 100;
    }
    fan_stats_compute(&f, fan_sub, subs, nsubs, &fr.st);
    for (int i = 0; i < nsubs; i++)
        fr.overflows += subs[i].overflows;
    if (f.errors)
        fprintf(stderr, "bench_ws: fan-out: %d writer errors; the first: %s\n", f.errors,
                f.first_err);
    for (int i = 0; i < nsubs; i++)
        conn_free(&subs[i]);
    conn_free(&writer);
    free(subs);
    fan_writer_free(&f);
    close(ep);
    usleep(300000);
    return fr;
}

/* ---- report ---- */

static const char *verdict(int met)
{
    return met ? "met" : "**not met**";
}

static void print_row(const row *w)
{
    printf("| %s | %s | %d | %d | %.0f | %.3f | %.3f | %.3f | %" PRIu64 " | %.0f%% | %.0f%% | %.0f%% |",
           w->what, w->proto, w->conns, w->window, w->ops, w->p50, w->p99, w->p999, w->errors,
           w->srv_cpu, w->cli_cpu, w->other_cpu);
    if (w->has_commits)
        printf(" %.1f | %.3f |\n", w->per_commit, w->commit_ms);
    else
        printf(" – | – |\n");
}

int main(void)
{
    static const int CONNS[] = {1, 16, 64, 256};
    enum { NCONC = sizeof CONNS / sizeof *CONNS };
    env e;
    char exe[4096], perf_file[4200], model[256], fstype[64], date[64], load0[64], load1[64];
    const char *where = getenv("CRM_BENCH_DIR"), *perf_out = getenv("CRM_BENCH_PERF");
    int fan_subs = (int)bench_env_num("CRM_BENCH_FANOUT_SUBS", IDLE_CONNS, 1);
    double fan_rate = bench_env_num("CRM_BENCH_FANOUT_RATE", 100, 0);
    double fan_secs = bench_env_num("CRM_BENCH_FANOUT_SECONDS", 5, 0);
    int pwin = (int)bench_env_num("CRM_BENCH_PIPELINE_WINDOW", 8, 1);
    row creates[NCONC], gets[NCONC], queries[NCONC], create_mp, create_pipe, echo;
    char (*ids)[32] = NULL;
    size_t nids;
    struct statfs sf;
    struct utsname un;
    fanres fr;
    int tmpfs, stop_rc, echo_port;
    size_t req_json, req_mp, rec_json;
    time_t now = time(NULL);
    ssize_t xl;

    memset(&e, 0, sizeof e);
    e.p = &crmd;
    snprintf(crmd.scripts, sizeof crmd.scripts, "/nonexistent/no-scripts");
    snprintf(crmd.plugins, sizeof crmd.plugins, "/nonexistent/no-plugins");
    e.secs = bench_env_num("CRM_BENCH_SECONDS", 3, 0);
    e.warm = getenv("CRM_BENCH_WARMUP") && !strcmp(getenv("CRM_BENCH_WARMUP"), "0")
                 ? 0
                 : bench_env_num("CRM_BENCH_WARMUP", 0.5, 0);
    e.window = (int)bench_env_num("CRM_BENCH_WINDOW", 1, 1);
    signal(SIGPIPE, SIG_IGN);
    atexit(kill_children);
    bench_raise_nofile((rlim_t)(2 * fan_subs + 2 * 256 + 256));
    bench_loadavg(load0, sizeof load0);

    /* where things are: the build folder is the one holding bench/bench_ws */
    if ((xl = readlink("/proc/self/exe", exe, sizeof exe - 1)) <= 0)
        bench_die("readlink /proc/self/exe: %s", strerror(errno));
    exe[xl] = 0;
    char build[4096];
    snprintf(build, sizeof build, "%s", dirname(dirname(exe)));
    if (getenv("CRM_CRMD") && *getenv("CRM_CRMD"))
        snprintf(crmd.crmd, sizeof crmd.crmd, "%s", getenv("CRM_CRMD"));
    else
#ifdef CRM_CRMD_PATH
        snprintf(crmd.crmd, sizeof crmd.crmd, "%s", CRM_CRMD_PATH);
#else
        snprintf(crmd.crmd, sizeof crmd.crmd, "%s/crmd", build);
#endif
    if (getenv("CRM_SCHEMAS") && *getenv("CRM_SCHEMAS"))
        snprintf(crmd.schemas, sizeof crmd.schemas, "%s", getenv("CRM_SCHEMAS"));
    else
        snprintf(crmd.schemas, sizeof crmd.schemas, "%s/schemas", CRM_SOURCE_DIR);
    if (access(crmd.crmd, X_OK) != 0)
        bench_die("%s is not an executable crmd (set CRM_CRMD)", crmd.crmd);
    if (!where || !*where)
        where = build;
    if ((size_t)snprintf(e.base, sizeof e.base, "%s/crmd-bench-ws-XXXXXX", where) >= sizeof e.base ||
        !mkdtemp(e.base))
        bench_die("mkdtemp %s: %s", e.base, strerror(errno));
    if (statfs(e.base, &sf) != 0)
        bench_die("statfs %s: %s", e.base, strerror(errno));
    tmpfs = sf.f_type == TMPFS_MAGIC_ || sf.f_type == RAMFS_MAGIC_;
    if (tmpfs)
        fprintf(stderr, "bench_ws: WARNING: %s is on tmpfs/ramfs: fsync costs nothing there, "
                        "the durable figures are not disk figures (set CRM_BENCH_DIR)\n", e.base);
    bench_fs_type(e.base, fstype, sizeof fstype);
    bench_cpu_model(model, sizeof model);
    uname(&un);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    snprintf(crmd.data, sizeof crmd.data, "%s/data", e.base);
    snprintf(crmd.log, sizeof crmd.log, "%s/crmd.log", e.base);
    if (mkdir(crmd.data, 0700) != 0)
        bench_die("mkdir %s: %s", crmd.data, strerror(errno));
    {
        uint8_t buf[REQ_CAP];
        wb w = {buf, 0, sizeof buf, 0, 0, {0}, {0}};
        req_create(&w, 1000000, "c", 12345678, "Frankfurt");
        req_json = w.n;
        const uint8_t *rec = memmem(buf, w.n, "\"record\":", 9);
        rec_json = rec ? w.n - (size_t)(rec + 9 - buf) - 1 : 0;
        w.n = 0;
        w.mp = 1;
        req_create(&w, 1000000, "c", 12345678, "Frankfurt");
        req_mp = w.n;
    }

    bench_crmd_token_create(&crmd);
    bench_crmd_start(&crmd);
    fprintf(stderr, "bench_ws: crmd pid %d on port %d, data in %s\n", (int)crmd.pid, crmd.port, crmd.data);

    /* fresh server: idle-connection memory, then the fan-out on them */
    fr = run_fanout(&e, fan_subs, fan_rate, fan_secs);

    for (int i = 0; i < NCONC; i++) {
        row w = run_row(&e, "create", K_CREATE, "crm.v1.json", CONNS[i], e.window, crmd.port, crmd.pid,
                        NULL, 0, NULL);
        creates[i] = w;
    }
    create_mp = run_row(&e, "create", K_CREATE, "crm.v1.msgpack", 64, e.window, crmd.port, crmd.pid,
                        NULL, 0, NULL);
    create_pipe = run_row(&e, "create (pipelined)", K_CREATE, "crm.v1.json", 64, pwin, crmd.port,
                          crmd.pid, NULL, 0, NULL);
    if (perf_out && *perf_out) {
        snprintf(perf_file, sizeof perf_file, "%s-create.data", perf_out);
        fprintf(stderr, "bench_ws: perf record on crmd during one more create row (not "
                        "reported) -> %s\n", perf_file);
        run_row(&e, "create (under perf)", K_CREATE, "crm.v1.json", 64, e.window, crmd.port, crmd.pid,
                NULL, 0, perf_file);
    }
    nids = preload(&e, &ids);
    for (int i = 0; i < NCONC; i++)
        gets[i] = run_row(&e, "get", K_GET, "crm.v1.json", CONNS[i], e.window, crmd.port, crmd.pid, ids,
                          nids, NULL);
    for (int i = 0; i < NCONC; i++)
        queries[i] = run_row(&e, "query (10 of 10 by city)", K_QUERY, "crm.v1.json", CONNS[i],
                             e.window, crmd.port, crmd.pid, NULL, 0, NULL);
    if (perf_out && *perf_out) {
        snprintf(perf_file, sizeof perf_file, "%s-get.data", perf_out);
        fprintf(stderr, "bench_ws: perf record on crmd during one more get row -> %s\n", perf_file);
        run_row(&e, "get (under perf)", K_GET, "crm.v1.json", 64, e.window, crmd.port, crmd.pid, ids,
                nids, perf_file);
        snprintf(perf_file, sizeof perf_file, "%s-query.data", perf_out);
        fprintf(stderr, "bench_ws: perf record on crmd during one more query row -> %s\n",
                perf_file);
        run_row(&e, "query (under perf)", K_QUERY, "crm.v1.json", 64, e.window, crmd.port, crmd.pid,
                NULL, 0, perf_file);
    }
    long rss_end = bench_proc_status_kb(crmd.pid, "VmRSS:");
    uint64_t records = g_seq;
    stop_rc = bench_crmd_stop(&crmd);
    int log_other = bench_crmd_log_other(&crmd);

    echo_port = echo_start();
    echo = run_row(&e, "lws echo (ceiling)", K_ECHO, NULL, 64, e.window, echo_port, echo_pid, NULL, 0,
                   NULL);
    kill(echo_pid, SIGTERM);
    waitpid(echo_pid, NULL, 0);
    echo_pid = -1;
    bench_loadavg(load1, sizeof load1);

    /* ---- the report ---- */
    const row *c1 = &creates[0], *c64 = &creates[2], *g64 = &gets[2];
    printf("# bench_ws: crmd over WebSocket\n\n");
    printf("Run %s.  Machine: %s, nproc %ld, %ld GiB RAM, Linux %s; data on %s (`%s`)%s.  "
           "Load average (1/5/15 min) at start %s, at end %s.\n\n",
           date, model, sysconf(_SC_NPROCESSORS_ONLN), bench_mem_gib(), un.release, fstype, where,
           tmpfs ? " — **tmpfs: durable figures are not disk figures**" : "", load0, load1);
    printf("crmd: `crmd serve --listen 127.0.0.1:0 %s` (the default per-connection limit of "
           "10,000 requests/s would cap the one-connection rows), every other limit at its "
           "default; the bundled schemas (contacts declares 18 indexed fields and every create "
           "writes an entry in each of the 18, a field that is absent under a null key, plus "
           "the record and a feed entry: 20 B-tree puts per create).  It exited with status %d "
           "on SIGTERM and logged %d line%s besides ready and stopped.\n\n", CRMD_FLAGS, stop_rc, log_other, log_other == 1 ? "" : "s");
    printf("Load generator: this program, one thread, epoll over non-blocking sockets, masked "
           "RFC 6455 client frames, on the same 2 cores as the server.  Window: %d request%s in "
           "flight per connection (the next leaves when a reply came); latency is from writing "
           "a request to reading its reply.  Each row: %g s warm-up, then %g s measured on fresh "
           "connections.  Create request: %zu bytes of JSON (record %zu bytes), %zu bytes as "
           "msgpack; every email unique.  Gets: random ids among %zu created beforehand; query: "
           "`where city = X, limit 10` with exactly 10 matches (indexed).\n\n",
           e.window, e.window == 1 ? "" : "s", e.warm, e.secs, req_json, rec_json, req_mp, nids);

    printf("## Targets (issue 3)\n\n| target | measured | |\n|---|---|---|\n");
    printf("| ≥ 60,000 durable creates/s at 64 connections, p99 ≤ 5 ms | %.0f/s, p99 %.3f ms | %s |\n",
           c64->ops, c64->p99, verdict(c64->ops >= 60000 && c64->p99 <= 5 && !c64->errors));
    printf("| create p50 ≤ 0.35 ms at 1 connection | %.3f ms | %s |\n", c1->p50,
           verdict(c1->p50 <= 0.35 && !c1->errors));
    printf("| ≥ 100,000 gets/s at 64 connections | %.0f/s | %s |\n", g64->ops,
           verdict(g64->ops >= 100000 && !g64->errors));
    printf("| fan-out to %d subscribers at %g writes/s: p99 ≤ 50 ms, 0 missing | ack→push p99 "
           "%.3f ms, send→push p99 %.3f ms (judged on the larger), %" PRIu64 " missing | %s |\n",
           fr.subs, fan_rate, fr.st.p99, fr.st.s99, fr.st.missing,
           verdict(fr.st.p99 <= 50 && fr.st.s99 <= 50 && fr.st.missing == 0 && fr.subs >= 1000 &&
                   fan_rate >= 100));
    printf("| ≤ 20 KiB per idle connection | %.1f KiB | %s |\n\n", fr.kib_per_conn,
           verdict(fr.kib_per_conn <= 20));

    printf("## Requests\n\n");
    printf("ops/s: replies in the measured window / its length.  CPU columns, as shares of "
           "one core over the measured window: crmd (the echo server in the last row), this "
           "load generator, and the rest of the machine's busy time (other work, interrupts and "
           "softirq not charged to a process; a high figure means the row was disturbed).  "
           "writes/commit and ms/commit: crmd's own /metrics over the whole row (warm-up "
           "included).\n\n");
    printf("| workload | subprotocol | conns | window | ops/s | p50 ms | p99 ms | p999 ms | errors "
           "| crmd CPU | loadgen CPU | other CPU | writes/commit | ms/commit |\n");
    printf("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < NCONC; i++)
        print_row(&creates[i]);
    print_row(&create_mp);
    print_row(&create_pipe);
    for (int i = 0; i < NCONC; i++)
        print_row(&gets[i]);
    for (int i = 0; i < NCONC; i++)
        print_row(&queries[i]);
    print_row(&echo);
    printf("\nThe last row is the ceiling: a raw libwebsockets echo server (this program, forked; "
           "same lws options and one-write-per-WRITEABLE queue as crmd) driven the same way with "
           "messages of the create request's size.  crmd's creates at 64 reach %.0f%% of it, its "
           "gets %.0f%%.  The pipelined row (window %d) is extra, for what group commit does with "
           "more in flight; the targets use window %d.\n\n",
           echo.ops > 0 ? c64->ops / echo.ops * 100 : 0, echo.ops > 0 ? g64->ops / echo.ops * 100 : 0,
           pwin, e.window);

    printf("## Fan-out\n\n");
    printf("%d subscriber connections (JSON), each subscribed to all of contacts; one writer, "
           "on its own connection (opened before the subscribers') and thread (one create in "
           "flight, blocking socket), created %d "
           "contacts at %.1f/s (%d acknowledged, %" PRIu64 " write errors).  Latency: from the "
           "writer reading its ack (about the commit) to a subscriber reading the push; %" PRIu64
           " pushes (%.1f%%) were read before the writer read its ack and count as 0.  Also "
           "shown: from the writer sending the create to the push being read (commit included).  "
           "Other messages on subscriber connections: %" PRIu64 ".\n\n",
           fr.subs, fr.st.writes, fr.st.rate, fr.st.acked, fr.st.write_errors, fr.st.negative,
           fr.st.received ? (double)fr.st.negative / (double)fr.st.received * 100 : 0.0, fr.st.others);
    printf("| pushes expected | received | missing | duplicates | overflows | ack→push p50 ms | p99 ms "
           "| p999 ms | max ms | send→push p50 ms | p99 ms | p999 ms | writer ack p50 / p99 ms | crmd "
           "CPU | loadgen CPU |\n");
    printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|\n");
    printf("| %" PRIu64 " | %" PRIu64 " | %" PRIu64 " | %" PRIu64 " | %" PRIu64
           " | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f / %.3f | %.0f%% | %.0f%% |\n\n",
           fr.st.expected, fr.st.received, fr.st.missing, fr.st.dups, fr.overflows, fr.st.p50, fr.st.p99, fr.st.p999,
           fr.st.max, fr.st.s50, fr.st.s99, fr.st.s999, fr.st.ack50, fr.st.ack99, fr.srv_cpu, fr.cli_cpu);
    printf("The writer's own acks (p50 %.3f ms) compare with a create on one connection and no "
           "subscribers (p50 %.3f ms, above): with crmd's one loop thread busy %.0f%% of the time "
           "encoding and sending pushes (one encode and one send() per subscriber and change), "
           "a create waits behind the previous create's pushes.\n\n",
           fr.st.ack50, c1->p50, fr.srv_cpu);

    printf("## Memory\n\n");
    printf("crmd freshly started (empty store), then %d WebSocket connections opened and "
           "authenticated, idle (read 0.5 s later).\n\n", fr.subs);
    printf("| | before | after | per connection |\n|---|---:|---:|---:|\n");
    printf("| VmRSS | %ld KiB | %ld KiB | %.1f KiB |\n", fr.rss0, fr.rss1, fr.kib_per_conn);
    printf("| RssAnon (heap) | %ld KiB | %ld KiB | %.1f KiB |\n\n", fr.anon0, fr.anon1,
           (double)(fr.anon1 - fr.anon0) / fr.subs);
    printf("At the end of the run crmd held %" PRIu64 " benchmark contacts plus %zu preloaded; "
           "VmRSS %ld KiB.\n\n",
           records, nids, rss_end);
    printf("One run; runs on shared machines spread ±10–40%% (perf-anchors.md), so compare "
           "ratios taken in one run.\n");
    fflush(stdout);

    if (!getenv("CRM_BENCH_KEEP"))
        bench_rm_tree(e.base);
    else
        fprintf(stderr, "bench_ws: kept %s\n", e.base);
    free(ids);
    return 0;
}
