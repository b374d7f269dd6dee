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
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
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

#include "machine.h"

#ifndef CRM_SOURCE_DIR
#define CRM_SOURCE_DIR "."
#endif

#define TMPFS_MAGIC_ 0x01021994
#define RAMFS_MAGIC_ 0x858458f6
#define MAX_EVENTS 512
#define REQ_CAP 4096
#define RX_INIT 8192
#define QUERY_CITIES 1000 /* preloaded: 10 records in each of these cities */
#define PER_CITY 10
#define IDLE_CONNS 1000

/* ---- small helpers ---- */

static pid_t crmd_pid = -1, echo_pid = -1, perf_pid = -1;

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "bench_ws: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static void kill_children(void)
{
    pid_t *ps[] = {&perf_pid, &echo_pid, &crmd_pid};
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++)
        if (*ps[i] > 0) {
            kill(*ps[i], SIGKILL);
            waitpid(*ps[i], NULL, 0);
            *ps[i] = -1;
        }
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static double env_num(const char *name, double fallback, int whole)
{
    const char *v = getenv(name);
    char *end;
    double x;
    if (!v || !*v)
        return fallback;
    x = strtod(v, &end);
    if (*end || !(x > 0) || (whole && x != floor(x)))
        die("%s=\"%s\" is not a positive %s", name, v, whole ? "whole number" : "number");
    return x;
}

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static uint64_t rng_next(void)
{
    uint64_t x = rng_state += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die("out of memory");
    return p;
}

static void *xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p)
        die("out of memory");
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        die("out of memory");
    return p;
}

/* A /proc/PID/status field in kB ("VmRSS:"), or -1. */
static long proc_status_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    long v = -1;
    size_t fl = strlen(field);
    FILE *f;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    if (!(f = fopen(path, "r")))
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, fl) == 0) {
            v = strtol(line + fl, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* utime + stime of a process, in seconds. */
static double proc_cpu_s(pid_t pid)
{
    char path[64], buf[2048], *p;
    unsigned long long ut = 0, st = 0;
    size_t n;
    FILE *f;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (!(f = fopen(path, "r")))
        return 0;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    if (!(p = strrchr(buf, ')')))
        return 0;
    /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Busy time of the whole machine (every CPU: user, nice, system, irq, softirq,
 * steal), in seconds. */
static double machine_busy_s(void)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return 0;
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
               &v[5], &v[6], &v[7]) != 8)
        memset(v, 0, sizeof v);
    fclose(f);
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* ---- request writer: the same requests as JSON or msgpack ---- */

typedef struct wb {
    uint8_t *p;
    size_t n, cap;
    int mp, depth;
    int cnt[8], arr[8];
} wb;

static void wb_raw(wb *w, const void *s, size_t n)
{
    if (w->n + n > w->cap)
        die("request larger than %zu bytes", w->cap);
    memcpy(w->p + w->n, s, n);
    w->n += n;
}

static void wb_byte(wb *w, uint8_t b)
{
    wb_raw(w, &b, 1);
}

/* An element of an array: JSON needs the comma. */
static void wb_elem(wb *w)
{
    if (w->depth && w->arr[w->depth - 1]) {
        if (!w->mp && w->cnt[w->depth - 1])
            wb_byte(w, ',');
        w->cnt[w->depth - 1]++;
    }
}

static void wb_open(wb *w, unsigned n, int arr)
{
    wb_elem(w);
    if (w->mp) {
        if (n >= 16)
            die("wb: containers of at most 15");
        wb_byte(w, (uint8_t)((arr ? 0x90 : 0x80) | n));
    } else {
        wb_byte(w, arr ? '[' : '{');
    }
    w->arr[w->depth] = arr;
    w->cnt[w->depth] = 0;
    w->depth++;
}

static void wb_close(wb *w)
{
    w->depth--;
    if (!w->mp)
        wb_byte(w, w->arr[w->depth] ? ']' : '}');
}

static void wb_strraw(wb *w, const char *s)
{
    size_t l = strlen(s);
    if (w->mp) {
        if (l < 32) {
            wb_byte(w, (uint8_t)(0xa0 | l));
        } else if (l < 256) {
            wb_byte(w, 0xd9);
            wb_byte(w, (uint8_t)l);
        } else {
            wb_byte(w, 0xda);
            wb_byte(w, (uint8_t)(l >> 8));
            wb_byte(w, (uint8_t)l);
        }
        wb_raw(w, s, l);
    } else { /* our strings need no escaping */
        wb_byte(w, '"');
        wb_raw(w, s, l);
        wb_byte(w, '"');
    }
}

static void wb_key(wb *w, const char *k)
{
    if (!w->mp && w->cnt[w->depth - 1])
        wb_byte(w, ',');
    w->cnt[w->depth - 1]++;
    wb_strraw(w, k);
    if (!w->mp)
        wb_byte(w, ':');
}

static void wb_str(wb *w, const char *s)
{
    wb_elem(w);
    wb_strraw(w, s);
}

static void wb_uint(wb *w, uint64_t u)
{
    wb_elem(w);
    if (!w->mp) {
        char b[24];
        int l = snprintf(b, sizeof b, "%" PRIu64, u);
        wb_raw(w, b, (size_t)l);
    } else if (u < 128) {
        wb_byte(w, (uint8_t)u);
    } else if (u < 256) {
        wb_byte(w, 0xcc);
        wb_byte(w, (uint8_t)u);
    } else if (u < 65536) {
        wb_byte(w, 0xcd);
        wb_byte(w, (uint8_t)(u >> 8));
        wb_byte(w, (uint8_t)u);
    } else if (u < 4294967296ull) {
        wb_byte(w, 0xce);
        for (int i = 3; i >= 0; i--)
            wb_byte(w, (uint8_t)(u >> (8 * i)));
    } else {
        wb_byte(w, 0xcf);
        for (int i = 7; i >= 0; i--)
            wb_byte(w, (uint8_t)(u >> (8 * i)));
    }
}

static void wb_kstr(wb *w, const char *k, const char *v)
{
    wb_key(w, k);
    wb_str(w, v);
}

static const char *const CITIES[] = {"Berlin", "Hamburg", "Munich", "Cologne", "Frankfurt",
                                     "Stuttgart", "Leipzig", "Dresden", "Hanover", "Nuremberg",
                                     "Bremen", "Essen", "Dortmund", "Bonn", "Mannheim",
                                     "Karlsruhe", "Freiburg", "Kiel", "Rostock", "Potsdam"};
static const char *const SOURCES[] = {"web", "referral", "event", "campaign", "partner", "store"};
static const char *const TITLES[] = {"Purchasing Manager", "Head of Operations", "Office Manager",
                                     "Procurement Lead", "Managing Director"};

/* {"ref":R,"op":"create","collection":"contacts","record":{11 fields}}: the
 * record is about 250 bytes of JSON (11 fields).  k makes email and name unique. */
static void req_create(wb *w, uint64_t ref, const char *tag, uint64_t k, const char *city)
{
    char name[48], email[80], phone[32], street[48], postcode[8], owner[16];
    snprintf(name, sizeof name, "Contact %s%08" PRIu64, tag, k);
    snprintf(email, sizeof email, "%s%08" PRIu64 "@mail.example.com", tag, k);
    snprintf(phone, sizeof phone, "+49 30 %08" PRIu64, (k * 7919) % 100000000);
    snprintf(street, sizeof street, "Hauptstrasse %" PRIu64, k % 250 + 1);
    snprintf(postcode, sizeof postcode, "%05" PRIu64, 10000 + k % 89999);
    snprintf(owner, sizeof owner, "rep-%02" PRIu64, k % 30);
    wb_open(w, 4, 0);
    wb_key(w, "ref");
    wb_uint(w, ref);
    wb_kstr(w, "op", "create");
    wb_kstr(w, "collection", "contacts");
    wb_key(w, "record");
    wb_open(w, 11, 0);
    wb_kstr(w, "name", name);
    wb_kstr(w, "email", email);
    wb_kstr(w, "phone", phone);
    wb_kstr(w, "job_title", TITLES[k % 5]);
    wb_kstr(w, "street", street);
    wb_kstr(w, "city", city);
    wb_kstr(w, "postcode", postcode);
    wb_kstr(w, "country", "DE");
    wb_kstr(w, "owner", owner);
    wb_kstr(w, "source", SOURCES[k % 6]);
    wb_kstr(w, "language", "de");
    wb_close(w);
    wb_close(w);
}

static void req_get(wb *w, uint64_t ref, const char *id)
{
    wb_open(w, 4, 0);
    wb_key(w, "ref");
    wb_uint(w, ref);
    wb_kstr(w, "op", "get");
    wb_kstr(w, "collection", "contacts");
    wb_kstr(w, "id", id);
    wb_close(w);
}

static void query_city(char *out, size_t n, unsigned i)
{
    snprintf(out, n, "QC-%04u", i);
}

static void req_query(wb *w, uint64_t ref, unsigned city)
{
    char c[16];
    query_city(c, sizeof c, city);
    wb_open(w, 5, 0);
    wb_key(w, "ref");
    wb_uint(w, ref);
    wb_kstr(w, "op", "query");
    wb_kstr(w, "collection", "contacts");
    wb_key(w, "where");
    wb_open(w, 1, 0);
    wb_kstr(w, "city", c);
    wb_close(w);
    wb_key(w, "limit");
    wb_uint(w, PER_CITY);
    wb_close(w);
}

/* ---- replies: ref and ok without decoding the whole message ---- */

/* 0 (ref and ok filled in) when m is a reply {"ref": int, "ok": bool, ...} as crmd
 * writes it (ref first, then ok), -1 otherwise (a push, an echo without ok
 * gets *ok = -1). */
static int reply_ref(int mp, const uint8_t *m, size_t n, uint64_t *ref, int *ok)
{
    size_t i;
    uint64_t r = 0;
    *ok = -1;
    if (!mp) {
        if (n < 8 || memcmp(m, "{\"ref\":", 7) != 0 || m[7] < '0' || m[7] > '9')
            return -1;
        for (i = 7; i < n && m[i] >= '0' && m[i] <= '9'; i++)
            r = r * 10 + (uint64_t)(m[i] - '0');
        *ref = r;
        if (n - i >= 10 && memcmp(m + i, ",\"ok\":true", 10) == 0)
            *ok = 1;
        else if (n - i >= 11 && memcmp(m + i, ",\"ok\":false", 11) == 0)
            *ok = 0;
        return 0;
    }
    if (n < 6 || (m[0] & 0xf0) != 0x80 || memcmp(m + 1, "\xa3ref", 4) != 0)
        return -1;
    i = 5;
    if (m[i] < 0x80) {
        r = m[i++];
    } else {
        int bytes = m[i] == 0xcc || m[i] == 0xd0 ? 1 : m[i] == 0xcd || m[i] == 0xd1 ? 2
                  : m[i] == 0xce || m[i] == 0xd2 ? 4 : m[i] == 0xcf || m[i] == 0xd3 ? 8 : 0;
        if (!bytes || n < i + 1 + (size_t)bytes)
            return -1;
        i++;
        for (int b = 0; b < bytes; b++)
            r = r << 8 | m[i++];
    }
    *ref = r;
    if (n >= i + 4 && memcmp(m + i, "\xa2ok", 3) == 0)
        *ok = m[i + 3] == 0xc3 ? 1 : m[i + 3] == 0xc2 ? 0 : -1;
    return 0;
}

/* The error message of a failed JSON or msgpack reply, roughly (for the log). */
static void error_text(const uint8_t *m, size_t n, char *out, size_t cap)
{
    size_t j = 0;
    for (size_t i = 0; i < n && j + 1 < cap; i++)
        out[j++] = m[i] >= 0x20 && m[i] < 0x7f ? (char)m[i] : '.';
    out[j] = 0;
}

/* ---- connections ---- */

enum { ROLE_LOAD, ROLE_SUB, ROLE_WRITER };

typedef struct run run;

typedef struct conn {
    int fd, mp, role, closed, close_code, epout;
    uint8_t *rx, *tx, *msg;
    size_t rxlen, rxcap, txlen, txoff, txcap, msglen, msgcap;
    /* the window: slots of requests in flight */
    int outstanding, nfree;
    int *free_slots;
    int64_t *slot_sent;
    uint64_t gen;
    /* blocking set-up: the reply waited for */
    uint64_t want_ref;
    int got, got_ok;
    char got_err[200];
    /* fan-out subscriber: receipt time per write (0 = not yet) */
    int64_t *got_at;
    uint64_t npush, dups, overflows, others;
} conn;

static void tx_reserve(conn *c, size_t more)
{
    if (c->txoff == c->txlen)
        c->txoff = c->txlen = 0;
    if (c->txlen + more > c->txcap) {
        c->txcap = (c->txlen + more) * 2;
        c->tx = xrealloc(c->tx, c->txcap);
    }
}

/* Appends one masked client frame (RFC 6455 5.3) to the send buffer. */
static void ws_frame(conn *c, int opcode, const uint8_t *p, size_t len)
{
    uint8_t *h;
    size_t hl = 0;
    uint32_t key = (uint32_t)rng_next();
    uint8_t mk[4];
    tx_reserve(c, len + 14);
    h = c->tx + c->txlen;
    h[hl++] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        h[hl++] = (uint8_t)(0x80 | len);
    } else if (len < 65536) {
        h[hl++] = 0x80 | 126;
        h[hl++] = (uint8_t)(len >> 8);
        h[hl++] = (uint8_t)len;
    } else {
        h[hl++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            h[hl++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    memcpy(mk, &key, 4);
    memcpy(h + hl, mk, 4);
    hl += 4;
    for (size_t i = 0; i < len; i++)
        h[hl + i] = p[i] ^ mk[i & 3];
    c->txlen += hl + len;
}

static void ws_send_wb(conn *c, const wb *w)
{
    ws_frame(c, c->mp ? 2 : 1, w->p, w->n);
}

static void ep_mod(int ep, conn *c, int out)
{
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
    if (ep >= 0 && epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) != 0)
        die("epoll_ctl: %s", strerror(errno));
    c->epout = out;
}

/* Writes what the send buffer holds; ep < 0: blocking (set-up). */
static void conn_flush(conn *c, int ep)
{
    while (c->txoff < c->txlen && !c->closed) {
        ssize_t w = write(c->fd, c->tx + c->txoff, c->txlen - c->txoff);
        if (w > 0) {
            c->txoff += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (ep < 0) {
                struct pollfd pf = {c->fd, POLLOUT, 0};
                poll(&pf, 1, 1000);
                continue;
            }
            if (!c->epout)
                ep_mod(ep, c, 1);
            return;
        }
        c->closed = 1;
        return;
    }
    if (c->txoff == c->txlen) {
        c->txoff = c->txlen = 0;
        if (c->epout)
            ep_mod(ep, c, 0);
    }
}

static void conn_free(conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->rx);
    free(c->tx);
    free(c->msg);
    free(c->free_slots);
    free(c->slot_sent);
    free(c->got_at);
    memset(c, 0, sizeof *c);
    c->fd = -1;
}

typedef void deliver_fn(run *r, conn *c, const uint8_t *m, size_t n, int64_t now);

/* Handles every complete frame in the receive buffer. */
static void conn_frames(run *r, conn *c, deliver_fn *deliver, int64_t now)
{
    size_t off = 0;
    for (;;) {
        const uint8_t *b = c->rx + off;
        size_t n = c->rxlen - off, h = 2;
        uint64_t len;
        int op, fin;
        if (n < 2)
            break;
        if (b[1] & 0x80)
            die("server sent a masked frame");
        len = b[1] & 0x7f;
        if (len == 126) {
            if (n < 4)
                break;
            len = (uint64_t)b[2] << 8 | b[3];
            h = 4;
        } else if (len == 127) {
            if (n < 10)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | b[2 + i];
            h = 10;
        }
        if (len > (256u << 20))
            die("frame of %" PRIu64 " bytes", len);
        if (n - h < len) {
            if (h + len > c->rxcap) { /* a big frame: make room for all of it */
                memmove(c->rx, b, n);
                c->rxlen = n;
                off = 0;
                c->rxcap = h + (size_t)len;
                c->rx = xrealloc(c->rx, c->rxcap);
            }
            break;
        }
        op = b[0] & 0x0f;
        fin = b[0] & 0x80;
        const uint8_t *pl = b + h;
        off += h + (size_t)len;
        if (op == 8) {
            c->closed = 1;
            c->close_code = len >= 2 ? pl[0] << 8 | pl[1] : 1005;
            break;
        }
        if (op == 9) {
            ws_frame(c, 10, pl, (size_t)len);
            continue;
        }
        if (op == 10)
            continue;
        if ((op == 1 || op == 2) && fin && c->msglen == 0) {
            deliver(r, c, pl, (size_t)len, now);
            continue;
        }
        if (c->msglen + len > c->msgcap) {
            c->msgcap = (c->msglen + (size_t)len) * 2;
            c->msg = xrealloc(c->msg, c->msgcap);
        }
        memcpy(c->msg + c->msglen, pl, (size_t)len);
        c->msglen += (size_t)len;
        if (fin) {
            deliver(r, c, c->msg, c->msglen, now);
            c->msglen = 0;
        }
    }
    if (off) {
        memmove(c->rx, c->rx + off, c->rxlen - off);
        c->rxlen -= off;
    }
}

/* Reads what is there (non-blocking) and handles it.  0, or -1 on EOF/error. */
static int conn_read(run *r, conn *c, deliver_fn *deliver)
{
    for (;;) {
        ssize_t got;
        if (c->rxlen == c->rxcap) {
            c->rxcap *= 2;
            c->rx = xrealloc(c->rx, c->rxcap);
        }
        got = read(c->fd, c->rx + c->rxlen, c->rxcap - c->rxlen);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (got <= 0) {
            c->closed = 1;
            return -1;
        }
        int full = c->rxlen + (size_t)got == c->rxcap;
        c->rxlen += (size_t)got;
        conn_frames(r, c, deliver, now_ns());
        if (!full || c->closed)
            return c->closed ? -1 : 0;
    }
}

/* Set-up replies: the one waited for. */
static void setup_deliver(run *r, conn *c, const uint8_t *m, size_t n, int64_t now)
{
    uint64_t ref;
    int ok;
    (void)r;
    (void)now;
    if (reply_ref(c->mp, m, n, &ref, &ok) == 0 && ref == c->want_ref) {
        c->got = 1;
        c->got_ok = ok == 1;
        if (ok != 1)
            error_text(m, n, c->got_err, sizeof c->got_err);
    }
}

/* Blocking: sends the request in w and waits for its reply (ref). */
static int conn_call(conn *c, const wb *w, uint64_t ref, int timeout_ms)
{
    int64_t until = now_ns() + (int64_t)timeout_ms * 1000000;
    c->want_ref = ref;
    c->got = c->got_ok = 0;
    c->got_err[0] = 0;
    ws_send_wb(c, w);
    conn_flush(c, -1);
    for (;;) {
        struct pollfd pf = {c->fd, POLLIN, 0};
        ssize_t got;
        conn_frames(NULL, c, setup_deliver, now_ns());
        if (c->got || c->closed)
            break;
        if (now_ns() > until || poll(&pf, 1, 100) < 0)
            break;
        if (!(pf.revents & (POLLIN | POLLERR | POLLHUP)))
            continue;
        if (c->rxlen == c->rxcap) {
            c->rxcap *= 2;
            c->rx = xrealloc(c->rx, c->rxcap);
        }
        got = read(c->fd, c->rx + c->rxlen, c->rxcap - c->rxlen);
        if (got <= 0) {
            c->closed = 1;
            break;
        }
        c->rxlen += (size_t)got;
    }
    return c->got && c->got_ok ? 0 : -1;
}

/* Opens a WebSocket to 127.0.0.1:port/ws (blocking), offering proto
 * (NULL: none), and authenticates with token (NULL: not). */
static void conn_open(conn *c, int port, const char *proto, const char *token, int window)
{
    struct sockaddr_in sa = {0};
    char req[512];
    int one = 1, len;
    memset(c, 0, sizeof *c);
    c->mp = proto && strcmp(proto, "crm.v1.msgpack") == 0;
    c->rxcap = RX_INIT;
    c->rx = xmalloc(c->rxcap);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        die("socket: %s (open-file limit?)", strerror(errno));
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        die("connect 127.0.0.1:%d: %s", port, strerror(errno));
    len = snprintf(req, sizeof req,
                   "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                   port, proto ? "Sec-WebSocket-Protocol: " : "", proto ? proto : "",
                   proto ? "\r\n" : "");
    tx_reserve(c, (size_t)len);
    memcpy(c->tx, req, (size_t)len);
    c->txlen = (size_t)len;
    conn_flush(c, -1);
    for (;;) { /* the response head; anything after it is frames */
        struct pollfd pf = {c->fd, POLLIN, 0};
        ssize_t got;
        uint8_t *end;
        if (poll(&pf, 1, 5000) <= 0)
            die("no handshake response from 127.0.0.1:%d", port);
        got = read(c->fd, c->rx + c->rxlen, c->rxcap - c->rxlen - 1);
        if (got <= 0)
            die("handshake: connection closed by 127.0.0.1:%d", port);
        c->rxlen += (size_t)got;
        c->rx[c->rxlen] = 0;
        if ((end = memmem(c->rx, c->rxlen, "\r\n\r\n", 4))) {
            size_t head = (size_t)(end - c->rx) + 4;
            if (strncmp((char *)c->rx, "HTTP/1.1 101", 12) != 0)
                die("handshake refused: %.60s", (char *)c->rx);
            memmove(c->rx, c->rx + head, c->rxlen - head);
            c->rxlen -= head;
            break;
        }
        if (c->rxlen + 1 >= c->rxcap)
            die("handshake response too long");
    }
    if (token) {
        uint8_t buf[REQ_CAP];
        wb w = {buf, 0, sizeof buf, c->mp, 0, {0}, {0}};
        wb_open(&w, 3, 0);
        wb_key(&w, "ref");
        wb_uint(&w, 0);
        wb_kstr(&w, "op", "auth");
        wb_kstr(&w, "token", token);
        wb_close(&w);
        if (conn_call(c, &w, 0, 5000) != 0)
            die("auth failed: %s", c->got_err[0] ? c->got_err : "no reply");
    }
    if (window > 0) {
        c->free_slots = xmalloc((size_t)window * sizeof *c->free_slots);
        c->slot_sent = xcalloc((size_t)window, sizeof *c->slot_sent);
        for (int i = 0; i < window; i++)
            c->free_slots[c->nfree++] = window - 1 - i;
    }
}

static void conn_nonblock(conn *c, int ep)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    int fl = fcntl(c->fd, F_GETFL);
    if (fl < 0 || fcntl(c->fd, F_SETFL, fl | O_NONBLOCK) != 0)
        die("fcntl: %s", strerror(errno));
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0)
        die("epoll_ctl add: %s", strerror(errno));
}

/* ---- a run of one workload ---- */

enum { K_CREATE, K_GET, K_QUERY, K_ECHO, K_PRELOAD };

typedef struct fanout {
    int nsubs, nwrites;
    int64_t t0, interval;
    /* written by the writer thread, read once it is done */
    int64_t *t_send, *t_ack;
    int *ack_ok;
    int acked, errors;
    char first_err[200];
    atomic_int done;
    conn *writer;
} fanout;

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
    fanout *fan;
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
    int64_t now = now_ns();
    while (c->nfree && !r->stop && (!r->limit || r->issued < r->limit)) {
        uint8_t buf[REQ_CAP];
        wb w = {buf, 0, sizeof buf, c->mp, 0, {0}, {0}};
        int slot = c->free_slots[--c->nfree];
        uint64_t ref = c->gen++ * (uint64_t)r->window + (uint64_t)slot;
        switch (r->kind) {
        case K_CREATE:
        case K_ECHO: {
            uint64_t k = g_seq++;
            req_create(&w, ref, "c", k, CITIES[k % (sizeof CITIES / sizeof *CITIES)]);
            break;
        }
        case K_PRELOAD: {
            char city[16];
            query_city(city, sizeof city, (unsigned)(r->issued / PER_CITY));
            req_create(&w, ref, "q", r->issued, city);
            break;
        }
        case K_GET:
            req_get(&w, ref, r->ids[rng_next() % r->nids]);
            break;
        case K_QUERY:
            req_query(&w, ref, (unsigned)(rng_next() % QUERY_CITIES));
            break;
        }
        ws_send_wb(c, &w);
        c->slot_sent[slot] = now;
        c->outstanding++;
        r->in_flight++;
        r->issued++;
    }
}

static size_t count_sub(const uint8_t *m, size_t n, const char *needle)
{
    size_t k = 0, nl = strlen(needle);
    const uint8_t *p = m, *end = m + n;
    while ((p = memmem(p, (size_t)(end - p), needle, nl))) {
        k++;
        p += nl;
    }
    return k;
}

static void load_deliver(run *r, conn *c, const uint8_t *m, size_t n, int64_t now)
{
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
            die("preload: no id in the reply");
        if (r->nids == r->capids) {
            r->capids = r->capids ? r->capids * 2 : 1024;
            r->ids = xrealloc(r->ids, r->capids * sizeof *r->ids);
        }
        memcpy(r->ids[r->nids], p + 6, (size_t)(q - p - 6));
        r->ids[r->nids][q - p - 6] = 0;
        r->nids++;
    }
    if (r->measuring && now <= r->t_end && ok == 1) {
        if (r->nlat == r->caplat) {
            r->caplat = r->caplat ? r->caplat * 2 : 65536;
            r->lat = xrealloc(r->lat, r->caplat * sizeof *r->lat);
        }
        r->lat[r->nlat++] = now - c->slot_sent[slot];
        r->done++;
    }
    conn_issue(r, c);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile (nearest rank) of sorted v, in ms. */
static double pct_ms(const int64_t *v, size_t n, double q)
{
    size_t i;
    if (!n)
        return NAN;
    i = (size_t)ceil(q * (double)n);
    if (i < 1)
        i = 1;
    if (i > n)
        i = n;
    return (double)v[i - 1] / 1e6;
}

/* ---- crmd ---- */

typedef struct env {
    char crmd[4096], schemas[4096], base[4096], data[4200], log[4200];
    char token[512];
    int port;
    double warm, secs;
    int window;
} env;

static void crmd_token_create(env *e)
{
    char cmd[16384], line[512];
    FILE *f;
    e->token[0] = 0;
    snprintf(cmd, sizeof cmd, "'%s' token create --data '%s' --schemas '%s' --role admin", e->crmd,
             e->data, e->schemas);
    if (!(f = popen(cmd, "r")))
        die("popen: %s", strerror(errno));
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (line[0])
            snprintf(e->token, sizeof e->token, "%s", line);
    }
    if (pclose(f) != 0 || !e->token[0])
        die("`crmd token create` failed");
}

static const char *CRMD_FLAGS = "--rate 10000000 --scripts /nonexistent/no-scripts --plugins /nonexistent/no-plugins";

static void crmd_start(env *e)
{
    int64_t until = now_ns() + 20 * (int64_t)1000000000;
    crmd_pid = fork();
    if (crmd_pid < 0)
        die("fork: %s", strerror(errno));
    if (crmd_pid == 0) {
        int fd = open(e->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        /* the bare kernel: no scripts or plugins (bench_features measures
         * the CRM features' hooks; the defaults would load ./scripts) */
        execl(e->crmd, e->crmd, "serve", "--data", e->data, "--schemas", e->schemas, "--listen",
              "127.0.0.1:0", "--rate", "10000000", "--scripts", "/nonexistent/no-scripts",
              "--plugins", "/nonexistent/no-plugins", (char *)NULL);
        _exit(127);
    }
    while (now_ns() < until) {
        char line[2048];
        FILE *f = fopen(e->log, "r");
        int st;
        while (f && fgets(line, sizeof line, f)) {
            char *at = strstr(line, "listening on 127.0.0.1:");
            if (at) {
                e->port = atoi(at + strlen("listening on 127.0.0.1:"));
                fclose(f);
                return;
            }
        }
        if (f)
            fclose(f);
        if (waitpid(crmd_pid, &st, WNOHANG) == crmd_pid) {
            crmd_pid = -1;
            die("crmd exited at start (log: %s)", e->log);
        }
        usleep(20000);
    }
    die("crmd did not report ready within 20 s (log: %s)", e->log);
}

/* Lines crmd logged besides its ready and stopped lines (copied to stderr). */
static int crmd_log_other(const env *e)
{
    char line[4096];
    int n = 0;
    FILE *f = fopen(e->log, "r");
    while (f && fgets(line, sizeof line, f)) {
        if (strstr(line, "\"event\":\"ready\"") || strstr(line, "\"event\":\"stopped\""))
            continue;
        if (n++ < 20)
            fprintf(stderr, "crmd: %s", line);
    }
    if (f)
        fclose(f);
    return n;
}

static int crmd_stop(void)
{
    int st = -1;
    if (crmd_pid <= 0)
        return -1;
    kill(crmd_pid, SIGTERM);
    if (waitpid(crmd_pid, &st, 0) != crmd_pid)
        st = -1;
    crmd_pid = -1;
    return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* crmd's /metrics: group commits, writes in them, seconds spent in them. */
typedef struct commits {
    double batches, writes, secs;
} commits;

static double metric(const char *body, const char *name)
{
    char key[128];
    const char *p;
    snprintf(key, sizeof key, "\n%s ", name);
    p = strstr(body, key);
    return p ? strtod(p + strlen(key), NULL) : 0;
}

static commits crmd_commits(int port)
{
    commits cm = {0, 0, 0};
    struct sockaddr_in sa = {0};
    char req[256], *buf = xmalloc(1 << 20);
    size_t n = 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), len;
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = snprintf(req, sizeof req,
                   "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n", port);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        write(fd, req, (size_t)len) == len) {
        for (;;) {
            struct pollfd pf = {fd, POLLIN, 0};
            ssize_t got;
            if (n + 1 >= (1 << 20) || poll(&pf, 1, 3000) <= 0)
                break;
            if ((got = read(fd, buf + n, (1 << 20) - 1 - n)) <= 0)
                break;
            n += (size_t)got;
        }
    }
    if (fd >= 0)
        close(fd);
    buf[n] = 0;
    cm.batches = metric(buf, "crmd_commit_batch_size_count");
    cm.writes = metric(buf, "crmd_commit_batch_size_sum");
    cm.secs = metric(buf, "crmd_commit_seconds_sum");
    free(buf);
    return cm;
}

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
        die("pipe: %s", strerror(errno));
    echo_pid = fork();
    if (echo_pid < 0)
        die("fork: %s", strerror(errno));
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
        die("the lws echo server did not start");
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
    conn *cs = xcalloc((size_t)nconns, sizeof *cs);
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
        die("epoll_create1: %s", strerror(errno));
    fprintf(stderr, "bench_ws: %s, %s, %d connections, window %d ...\n", what, rw.proto, nconns,
            window);
    for (int i = 0; i < nconns; i++) {
        conn_open(&cs[i], port, proto, kind == K_ECHO ? NULL : e->token, window);
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
    r.t_warm = now_ns() + (int64_t)(e->warm * 1e9);
    r.t_end = r.t_warm + (int64_t)(e->secs * 1e9);
    for (int i = 0; i < nconns; i++) {
        conn_issue(&r, &cs[i]);
        conn_flush(&cs[i], ep);
    }
    for (;;) {
        struct epoll_event ev[MAX_EVENTS];
        int64_t now = now_ns(), wait_ns;
        int nev;
        if (!r.measuring && now >= r.t_warm) {
            r.measuring = 1;
            r.srv0 = proc_cpu_s(srv_pid);
            r.cli0 = self_cpu_s();
            r.all0 = machine_busy_s();
        }
        if (!r.stop && now >= r.t_end) {
            r.stop = 1;
            r.srv1 = proc_cpu_s(srv_pid);
            r.cli1 = self_cpu_s();
            r.all1 = machine_busy_s();
            drain_until = now + 10 * (int64_t)1000000000;
        }
        if (r.stop && (r.in_flight == 0 || now > drain_until))
            break;
        wait_ns = r.stop ? 100000000 : (r.measuring ? r.t_end : r.t_warm) - now;
        nev = epoll_wait(ep, ev, MAX_EVENTS, (int)(wait_ns / 1000000) + 1);
        if (nev < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
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
    qsort(r.lat, r.nlat, sizeof *r.lat, cmp_i64);
    rw.n = r.nlat;
    rw.ops = (double)r.done / e->secs;
    rw.p50 = pct_ms(r.lat, r.nlat, 0.50);
    rw.p99 = pct_ms(r.lat, r.nlat, 0.99);
    rw.p999 = pct_ms(r.lat, r.nlat, 0.999);
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
    int64_t t0 = now_ns();
    memset(&r, 0, sizeof r);
    r.kind = K_PRELOAD;
    r.window = W;
    r.limit = QUERY_CITIES * PER_CITY;
    r.t_warm = r.t_end = INT64_MAX;
    fprintf(stderr, "bench_ws: preloading %d contacts in %d cities ...\n", QUERY_CITIES * PER_CITY,
            QUERY_CITIES);
    for (int i = 0; i < NC; i++) {
        conn_open(&cs[i], e->port, "crm.v1.json", e->token, W);
        conn_nonblock(&cs[i], ep);
        conn_issue(&r, &cs[i]);
        conn_flush(&cs[i], ep);
    }
    while (r.in_flight || r.issued < r.limit) {
        struct epoll_event ev[MAX_EVENTS];
        int nev = epoll_wait(ep, ev, MAX_EVENTS, 1000);
        if (nev < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        if (now_ns() - t0 > 300 * (int64_t)1000000000)
            die("preload took over 5 minutes");
        for (int i = 0; i < nev; i++) {
            conn *c = ev[i].data.ptr;
            if (ev[i].events & EPOLLOUT)
                conn_flush(c, ep);
            if (conn_read(&r, c, load_deliver) != 0)
                die("preload: connection closed (code %d)", c->close_code);
            conn_flush(c, ep);
        }
    }
    if (r.errors || r.nids != (size_t)(QUERY_CITIES * PER_CITY))
        die("preload: %" PRIu64 " errors (%s), %zu ids", r.errors, r.first_err, r.nids);
    for (int i = 0; i < NC; i++)
        conn_free(&cs[i]);
    close(ep);
    *ids = r.ids;
    return r.nids;
}

/* ---- fan-out and idle memory ---- */

typedef struct fanres {
    int subs, writes, acked;
    uint64_t expected, received, missing, dups, overflows, others, negative, write_errors;
    double rate, p50, p99, p999, max, s50, s99, s999, ack50, ack99;
    long rss0, rss1, anon0, anon1;
    double kib_per_conn;
    double srv_cpu, cli_cpu;
} fanres;

/* Subscribers' messages (the writer has its own thread). */
static void fan_deliver(run *r, conn *c, const uint8_t *m, size_t n, int64_t now)
{
    fanout *f = r->fan;
    if (n > 17 && memcmp(m, "{\"event\":\"change\"", 17) == 0) {
        static const char key[] = "\"email\":\"f";
        const uint8_t *p = memmem(m, n, key, sizeof key - 1);
        uint64_t k = 0;
        if (!p) {
            c->others++;
            return;
        }
        for (p += sizeof key - 1; p < m + n && *p >= '0' && *p <= '9'; p++)
            k = k * 10 + (uint64_t)(*p - '0');
        if (k >= (uint64_t)f->nwrites) {
            c->others++;
        } else if (c->got_at[k]) {
            c->dups++;
        } else {
            c->got_at[k] = now;
            c->npush++;
        }
    } else if (n > 19 && memcmp(m, "{\"event\":\"overflow\"", 19) == 0) {
        c->overflows++;
    } else {
        c->others++;
    }
}

/* The writer: its own thread and blocking socket, so that reading its ack is
 * never queued behind the subscribers' pushes in the load generator's loop.
 * Create k leaves at t0 + k * interval (later when the previous ack was
 * late: one write in flight at a time). */
static void *fan_writer(void *arg)
{
    fanout *f = arg;
    for (int k = 0; k < f->nwrites; k++) {
        int64_t due = f->t0 + (int64_t)k * f->interval;
        struct timespec ts = {(time_t)(due / 1000000000), (long)(due % 1000000000)};
        uint8_t buf[REQ_CAP];
        wb w = {buf, 0, sizeof buf, 0, 0, {0}, {0}};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
        req_create(&w, (uint64_t)k + 1, "f", (uint64_t)k, "Fanout City");
        f->t_send[k] = now_ns();
        if (conn_call(f->writer, &w, (uint64_t)k + 1, 10000) == 0) {
            f->t_ack[k] = now_ns();
            f->ack_ok[k] = 1;
            f->acked++;
        } else {
            f->errors++;
            if (!f->first_err[0])
                snprintf(f->first_err, sizeof f->first_err, "%s",
                         f->writer->got_err[0] ? f->writer->got_err : "no ack within 10 s");
            if (f->writer->closed)
                break;
        }
    }
    atomic_store(&f->done, 1);
    return NULL;
}

static fanres run_fanout(env *e, int nsubs, double rate, double secs)
{
    fanres fr;
    run r;
    fanout f;
    conn *subs = xcalloc((size_t)nsubs, sizeof *subs), writer;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int64_t *lat, *slat, *alat, done_at = 0;
    size_t nl = 0, ns = 0, na = 0;
    pthread_t th;
    memset(&fr, 0, sizeof fr);
    memset(&r, 0, sizeof r);
    memset(&f, 0, sizeof f);
    f.nsubs = nsubs;
    f.nwrites = (int)(rate * secs + 0.5);
    f.interval = (int64_t)(1e9 / rate);
    f.t_send = xcalloc((size_t)f.nwrites, sizeof *f.t_send);
    f.t_ack = xcalloc((size_t)f.nwrites, sizeof *f.t_ack);
    f.ack_ok = xcalloc((size_t)f.nwrites, sizeof *f.ack_ok);
    atomic_init(&f.done, 0);
    r.fan = &f;
    fr.subs = nsubs;
    fr.writes = f.nwrites;

    /* The writer connects first: crmd then writes its ack ahead of the pushes
     * of the same commit (connected last, 99% of the pushes were read before
     * the ack in a trial run, and ack->push said nothing). */
    conn_open(&writer, e->port, "crm.v1.json", e->token, 0);
    writer.role = ROLE_WRITER;
    /* memory: a fresh crmd, before and after the idle authenticated connections */
    usleep(500000);
    fr.rss0 = proc_status_kb(crmd_pid, "VmRSS:");
    fr.anon0 = proc_status_kb(crmd_pid, "RssAnon:");
    fprintf(stderr, "bench_ws: opening %d authenticated connections ...\n", nsubs);
    for (int i = 0; i < nsubs; i++) {
        conn_open(&subs[i], e->port, "crm.v1.json", e->token, 0);
        subs[i].role = ROLE_SUB;
    }
    usleep(500000);
    fr.rss1 = proc_status_kb(crmd_pid, "VmRSS:");
    fr.anon1 = proc_status_kb(crmd_pid, "RssAnon:");
    fr.kib_per_conn = (double)(fr.rss1 - fr.rss0) / nsubs;

    fprintf(stderr, "bench_ws: fan-out: %d subscribers, %d creates at %g/s ...\n", nsubs,
            f.nwrites, rate);
    for (int i = 0; i < nsubs; i++) {
        uint8_t buf[REQ_CAP];
        wb w = {buf, 0, sizeof buf, 0, 0, {0}, {0}};
        wb_open(&w, 3, 0);
        wb_key(&w, "ref");
        wb_uint(&w, 1);
        wb_kstr(&w, "op", "subscribe");
        wb_kstr(&w, "collection", "contacts");
        wb_close(&w);
        if (conn_call(&subs[i], &w, 1, 5000) != 0)
            die("subscribe failed: %s", subs[i].got_err);
        subs[i].got_at = xcalloc((size_t)f.nwrites, sizeof *subs[i].got_at);
        conn_nonblock(&subs[i], ep);
    }
    f.writer = &writer;

    f.t0 = now_ns() + 100000000;
    r.srv0 = proc_cpu_s(crmd_pid);
    r.cli0 = self_cpu_s();
    if (pthread_create(&th, NULL, fan_writer, &f) != 0)
        die("pthread_create failed");
    for (;;) {
        struct epoll_event ev[MAX_EVENTS];
        int64_t now = now_ns();
        int nev;
        if (atomic_load(&f.done)) {
            int all = 1;
            if (!done_at)
                done_at = now;
            for (int i = 0; i < nsubs && all; i++)
                if (!subs[i].closed && subs[i].npush < (uint64_t)f.acked)
                    all = 0;
            if (all || now - done_at > 5 * (int64_t)1000000000)
                break;
        }
        nev = epoll_wait(ep, ev, MAX_EVENTS, 10);
        if (nev < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < nev; i++) {
            conn *c = ev[i].data.ptr;
            if (c->closed)
                continue;
            if (ev[i].events & EPOLLOUT)
                conn_flush(c, ep);
            if (ev[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                conn_read(&r, c, fan_deliver);
            if (c->closed) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                fprintf(stderr, "bench_ws: fan-out: a subscriber was closed (code %d)\n",
                        c->close_code);
                continue;
            }
            conn_flush(c, ep);
        }
    }
    pthread_join(th, NULL);
    r.srv1 = proc_cpu_s(crmd_pid);
    r.cli1 = self_cpu_s();
    {
        double span = (double)(now_ns() - f.t0) / 1e9;
        fr.srv_cpu = (r.srv1 - r.srv0) / span * 100;
        fr.cli_cpu = (r.cli1 - r.cli0) / span * 100;
        if (f.nwrites > 1)
            fr.rate = (f.nwrites - 1) / ((double)(f.t_send[f.nwrites - 1] - f.t_send[0]) / 1e9);
    }
    fr.acked = f.acked;
    fr.write_errors = (uint64_t)f.errors;
    lat = xmalloc((size_t)nsubs * (size_t)f.nwrites * sizeof *lat);
    slat = xmalloc((size_t)nsubs * (size_t)f.nwrites * sizeof *slat);
    alat = xmalloc((size_t)f.nwrites * sizeof *alat);
    for (int k = 0; k < f.nwrites; k++)
        if (f.ack_ok[k])
            alat[na++] = f.t_ack[k] - f.t_send[k];
    for (int i = 0; i < nsubs; i++) {
        fr.dups += subs[i].dups;
        fr.overflows += subs[i].overflows;
        fr.others += subs[i].others;
        for (int k = 0; k < f.nwrites; k++) {
            if (!f.ack_ok[k])
                continue;
            fr.expected++;
            if (!subs[i].got_at[k]) {
                fr.missing++;
                continue;
            }
            fr.received++;
            int64_t d = subs[i].got_at[k] - f.t_ack[k];
            if (d < 0) {
                fr.negative++;
                d = 0;
            }
            lat[nl++] = d;
            slat[ns++] = subs[i].got_at[k] - f.t_send[k];
        }
    }
    qsort(lat, nl, sizeof *lat, cmp_i64);
    qsort(slat, ns, sizeof *slat, cmp_i64);
    qsort(alat, na, sizeof *alat, cmp_i64);
    fr.p50 = pct_ms(lat, nl, 0.5);
    fr.p99 = pct_ms(lat, nl, 0.99);
    fr.p999 = pct_ms(lat, nl, 0.999);
    fr.max = nl ? (double)lat[nl - 1] / 1e6 : NAN;
    fr.s50 = pct_ms(slat, ns, 0.5);
    fr.s99 = pct_ms(slat, ns, 0.99);
    fr.s999 = pct_ms(slat, ns, 0.999);
    fr.ack50 = pct_ms(alat, na, 0.5);
    fr.ack99 = pct_ms(alat, na, 0.99);
    if (f.errors)
        fprintf(stderr, "bench_ws: fan-out: %d writer errors; the first: %s\n", f.errors,
                f.first_err);
    free(lat);
    free(slat);
    free(alat);
    for (int i = 0; i < nsubs; i++)
        conn_free(&subs[i]);
    conn_free(&writer);
    free(subs);
    free(f.t_send);
    free(f.t_ack);
    free(f.ack_ok);
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

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void raise_nofile(rlim_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        die("getrlimit: %s", strerror(errno));
    if (rl.rlim_cur >= want)
        return;
    if (rl.rlim_max < want && rl.rlim_max != RLIM_INFINITY)
        rl.rlim_max = want; /* needs privilege; tried anyway */
    rl.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        getrlimit(RLIMIT_NOFILE, &rl);
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < want)
            die("open-file limit %llu < %llu needed (raise the hard limit)",
                (unsigned long long)rl.rlim_cur, (unsigned long long)want);
    }
}

int main(void)
{
    static const int CONNS[] = {1, 16, 64, 256};
    enum { NCONC = sizeof CONNS / sizeof *CONNS };
    env e;
    char exe[4096], perf_file[4200], model[256], fstype[64], date[64], load0[64], load1[64];
    const char *where = getenv("CRM_BENCH_DIR"), *perf_out = getenv("CRM_BENCH_PERF");
    int fan_subs = (int)env_num("CRM_BENCH_FANOUT_SUBS", IDLE_CONNS, 1);
    double fan_rate = env_num("CRM_BENCH_FANOUT_RATE", 100, 0);
    double fan_secs = env_num("CRM_BENCH_FANOUT_SECONDS", 5, 0);
    int pwin = (int)env_num("CRM_BENCH_PIPELINE_WINDOW", 8, 1);
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
    e.secs = env_num("CRM_BENCH_SECONDS", 3, 0);
    e.warm = getenv("CRM_BENCH_WARMUP") && !strcmp(getenv("CRM_BENCH_WARMUP"), "0")
                 ? 0
                 : env_num("CRM_BENCH_WARMUP", 0.5, 0);
    e.window = (int)env_num("CRM_BENCH_WINDOW", 1, 1);
    signal(SIGPIPE, SIG_IGN);
    atexit(kill_children);
    raise_nofile((rlim_t)(2 * fan_subs + 2 * 256 + 256));
    bench_loadavg(load0, sizeof load0);

    /* where things are: the build folder is the one holding bench/bench_ws */
    if ((xl = readlink("/proc/self/exe", exe, sizeof exe - 1)) <= 0)
        die("readlink /proc/self/exe: %s", strerror(errno));
    exe[xl] = 0;
    char build[4096];
    snprintf(build, sizeof build, "%s", dirname(dirname(exe)));
    if (getenv("CRM_CRMD") && *getenv("CRM_CRMD"))
        snprintf(e.crmd, sizeof e.crmd, "%s", getenv("CRM_CRMD"));
    else
#ifdef CRM_CRMD_PATH
        snprintf(e.crmd, sizeof e.crmd, "%s", CRM_CRMD_PATH);
#else
        snprintf(e.crmd, sizeof e.crmd, "%s/crmd", build);
#endif
    if (getenv("CRM_SCHEMAS") && *getenv("CRM_SCHEMAS"))
        snprintf(e.schemas, sizeof e.schemas, "%s", getenv("CRM_SCHEMAS"));
    else
        snprintf(e.schemas, sizeof e.schemas, "%s/schemas", CRM_SOURCE_DIR);
    if (access(e.crmd, X_OK) != 0)
        die("%s is not an executable crmd (set CRM_CRMD)", e.crmd);
    if (!where || !*where)
        where = build;
    if ((size_t)snprintf(e.base, sizeof e.base, "%s/crmd-bench-ws-XXXXXX", where) >= sizeof e.base ||
        !mkdtemp(e.base))
        die("mkdtemp %s: %s", e.base, strerror(errno));
    if (statfs(e.base, &sf) != 0)
        die("statfs %s: %s", e.base, strerror(errno));
    tmpfs = sf.f_type == TMPFS_MAGIC_ || sf.f_type == RAMFS_MAGIC_;
    if (tmpfs)
        fprintf(stderr, "bench_ws: WARNING: %s is on tmpfs/ramfs: fsync costs nothing there, "
                        "the durable figures are not disk figures (set CRM_BENCH_DIR)\n", e.base);
    bench_fs_type(e.base, fstype, sizeof fstype);
    bench_cpu_model(model, sizeof model);
    uname(&un);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    snprintf(e.data, sizeof e.data, "%s/data", e.base);
    snprintf(e.log, sizeof e.log, "%s/crmd.log", e.base);
    if (mkdir(e.data, 0700) != 0)
        die("mkdir %s: %s", e.data, strerror(errno));
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

    crmd_token_create(&e);
    crmd_start(&e);
    fprintf(stderr, "bench_ws: crmd pid %d on port %d, data in %s\n", (int)crmd_pid, e.port, e.data);

    /* fresh server: idle-connection memory, then the fan-out on them */
    fr = run_fanout(&e, fan_subs, fan_rate, fan_secs);

    for (int i = 0; i < NCONC; i++) {
        row w = run_row(&e, "create", K_CREATE, "crm.v1.json", CONNS[i], e.window, e.port, crmd_pid,
                        NULL, 0, NULL);
        creates[i] = w;
    }
    create_mp = run_row(&e, "create", K_CREATE, "crm.v1.msgpack", 64, e.window, e.port, crmd_pid,
                        NULL, 0, NULL);
    create_pipe = run_row(&e, "create (pipelined)", K_CREATE, "crm.v1.json", 64, pwin, e.port,
                          crmd_pid, NULL, 0, NULL);
    if (perf_out && *perf_out) {
        snprintf(perf_file, sizeof perf_file, "%s-create.data", perf_out);
        fprintf(stderr, "bench_ws: perf record on crmd during one more create row (not "
                        "reported) -> %s\n", perf_file);
        run_row(&e, "create (under perf)", K_CREATE, "crm.v1.json", 64, e.window, e.port, crmd_pid,
                NULL, 0, perf_file);
    }
    nids = preload(&e, &ids);
    for (int i = 0; i < NCONC; i++)
        gets[i] = run_row(&e, "get", K_GET, "crm.v1.json", CONNS[i], e.window, e.port, crmd_pid, ids,
                          nids, NULL);
    for (int i = 0; i < NCONC; i++)
        queries[i] = run_row(&e, "query (10 of 10 by city)", K_QUERY, "crm.v1.json", CONNS[i],
                             e.window, e.port, crmd_pid, NULL, 0, NULL);
    if (perf_out && *perf_out) {
        snprintf(perf_file, sizeof perf_file, "%s-get.data", perf_out);
        fprintf(stderr, "bench_ws: perf record on crmd during one more get row -> %s\n", perf_file);
        run_row(&e, "get (under perf)", K_GET, "crm.v1.json", 64, e.window, e.port, crmd_pid, ids,
                nids, perf_file);
        snprintf(perf_file, sizeof perf_file, "%s-query.data", perf_out);
        fprintf(stderr, "bench_ws: perf record on crmd during one more query row -> %s\n",
                perf_file);
        run_row(&e, "query (under perf)", K_QUERY, "crm.v1.json", 64, e.window, e.port, crmd_pid,
                NULL, 0, perf_file);
    }
    long rss_end = proc_status_kb(crmd_pid, "VmRSS:");
    uint64_t records = g_seq;
    stop_rc = crmd_stop();
    int log_other = crmd_log_other(&e);

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
           fr.subs, fan_rate, fr.p99, fr.s99, fr.missing,
           verdict(fr.p99 <= 50 && fr.s99 <= 50 && fr.missing == 0 && fr.subs >= 1000 &&
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
           fr.subs, fr.writes, fr.rate, fr.acked, fr.write_errors, fr.negative,
           fr.received ? (double)fr.negative / (double)fr.received * 100 : 0.0, fr.others);
    printf("| pushes expected | received | missing | duplicates | overflows | ack→push p50 ms | p99 ms "
           "| p999 ms | max ms | send→push p50 ms | p99 ms | p999 ms | writer ack p50 / p99 ms | crmd "
           "CPU | loadgen CPU |\n");
    printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|\n");
    printf("| %" PRIu64 " | %" PRIu64 " | %" PRIu64 " | %" PRIu64 " | %" PRIu64
           " | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f / %.3f | %.0f%% | %.0f%% |\n\n",
           fr.expected, fr.received, fr.missing, fr.dups, fr.overflows, fr.p50, fr.p99, fr.p999,
           fr.max, fr.s50, fr.s99, fr.s999, fr.ack50, fr.ack99, fr.srv_cpu, fr.cli_cpu);
    printf("The writer's own acks (p50 %.3f ms) compare with a create on one connection and no "
           "subscribers (p50 %.3f ms, above): with crmd's one loop thread busy %.0f%% of the time "
           "encoding and sending pushes (one encode and one send() per subscriber and change), "
           "a create waits behind the previous create's pushes.\n\n",
           fr.ack50, c1->p50, fr.srv_cpu);

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
        nftw(e.base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    else
        fprintf(stderr, "bench_ws: kept %s\n", e.base);
    free(ids);
    return 0;
}
