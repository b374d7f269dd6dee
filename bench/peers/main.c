/*
 * bench_peers -- crmd against the systems its users would pick instead
 * (Redis 7, PostgreSQL 15, Tarantool), on the same machine, in the same run,
 * on the same workloads, driven by this one load generator (issue 9).
 *
 * Each system in turn: start its server (Debian's package, installed by
 * bench/run.sh; a folder of its own under CRM_BENCH_DIR, loopback port),
 * load its schema, run the rows, stop it; nothing is left running (children
 * are stopped at exit and on SIGINT/SIGTERM too).  Only one server runs at a
 * time, so none steals CPU from another.
 *
 * Load generator: one thread, epoll over non-blocking sockets, one
 * connection per simulated client, one request in flight per connection
 * (the next leaves when the reply came), latency from writing a request to
 * reading its reply.  Each row opens fresh connections, warms up
 * (CRM_BENCH_WARMUP s, not counted), then measures CRM_BENCH_SECONDS s.
 *
 * Workloads, at 1, 16, 64 and 256 connections (peer.h says what each system
 * does for each):
 *  (1) create a ~250-byte contact, durable, a hook crediting 10 loyalty
 *      points in the same transaction, one subscriber connected and notified
 *      (it reads every push; the report says how many arrived); crmd alone
 *      also runs an after-hook writing one activity record per create, whose
 *      lag this program reads from crmd's /metrics every 100 ms of the row
 *      (a table of its own: crmd's derived-data path, not a comparison);
 *  (2) get by id, random among 10,000 contacts created beforehand;
 *  (3) an indexed query returning 10 records (city = X, exactly 10 match);
 *  (4) fan-out: CRM_BENCH_FANOUT_SUBS subscribers (1,000) while one writer
 *      (its own thread and connection) creates CRM_BENCH_FANOUT_RATE (100)
 *      contacts/s for CRM_BENCH_FANOUT_SECONDS (5): time from the writer
 *      reading its ack (the commit) to each subscriber reading the change.
 *
 * Env: CRM_BENCH_QUICK=1 (a smoke run of a minute or two: 0.5 s rows, 100
 * subscribers for 1 s; its figures mean nothing), CRM_BENCH_SECONDS (3),
 * CRM_BENCH_WARMUP (0.5), CRM_BENCH_FANOUT_SUBS / _RATE / _SECONDS,
 * CRM_BENCH_PEERS (which systems, "crmd,redis,postgres,tarantool"),
 * CRM_BENCH_DIR (where the data goes; default the build folder, on the
 * checkout's disk: /tmp may be tmpfs, where fsync is free), CRM_CRMD,
 * CRM_PG_BINDIR, CRM_BENCH_KEEP (keep the data folders).
 *
 * Output: the Markdown report on stdout; with an argument, the chart's data
 * (gnuplot blocks: create, get, query ops/s and create p99, one column per
 * system) written to that file.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>

#include "benchutil.h"
#include "fanout.h"
#include "machine.h"
#include "peer.h"

#ifndef CRM_SOURCE_DIR
#define CRM_SOURCE_DIR "."
#endif

#define TMPFS_MAGIC_ 0x01021994
#define RAMFS_MAGIC_ 0x858458f6
#define MAX_EVENTS 512
#define NSYS 4
#define NCONC 4
#define PRELOAD (QUERY_CITIES * PER_CITY)

static const int CONNS[NCONC] = {1, 16, 64, 256};
static const char *const WORKLOADS[3] = {"create", "get", "query"};

typedef struct row {
    int conns;
    double ops, p50, p99, p999, srv_cpu, cli_cpu;
    uint64_t n, errors, acked, pushes;
    double per_commit, commit_ms; /* crmd: writes per group commit, ms per commit */
    /* crmd's create rows: its after-hook (activity.lua), from /metrics */
    int hooked;                   /* 1: sampled */
    int hook_fails;               /* readings /metrics did not answer */
    double lag_start, lag_max, lag_end; /* feed changes behind */
    double lag_trend;             /* least-squares slope over the measured window, per s */
    double caught_ms;             /* end of the window -> lag 0; < 0: not within HOOK_CATCHUP_S */
    double hook_runs, feed_changes; /* from the row's start until caught up (or given up) */
    char err[200];
} row;

typedef struct fanres {
    fan_stats st;
    int subs;
    char err[200];
} fanres;

typedef struct sysres {
    peer p;
    const char *key; /* "crmd", "redis", "postgres", "tarantool" */
    int ran, stop_rc;
    row rows[3][NCONC];
    fanres fan;
} sysres;

typedef struct cfg {
    double secs, warm, fan_rate, fan_secs;
    int fan_subs, quick;
} cfg;

/* ---- one row: the load loop ---- */

typedef struct load {
    int op, preload, stop, measuring;
    int64_t t_warm, t_end;
    uint64_t issued, limit, in_flight, done, errors, acked, pushes;
    int64_t *lat;
    size_t nlat, caplat;
    char first_err[200];
    char (*ids)[32]; /* get: the ids asked for; preload: the ids captured */
    size_t nids, capids;
} load;

static uint64_t g_seq; /* the creates of one system: every contact unique */

/* ---- crmd's after-hook: its lag, read from /metrics during a create row ---- */

#define HOOK_EVERY_NS 100000000LL  /* a reading every 100 ms of the row */
#define HOOK_DRAIN_NS 10000000LL   /* after the window: every 10 ms until the lag is 0 */
#define HOOK_CATCHUP_S 10          /* ... for 10 s at most */

typedef struct hooksamp {
    peer *p;
    int on, fails, n, nw; /* n readings, nw of them in the measured window */
    int64_t next;         /* the next reading */
    int64_t caught;       /* after the window: when the lag first read 0 (0: not yet) */
    double lag, max, runs0, seq0, runs, seq;
    double sx, sy, sxx, sxy; /* least squares over the measured window */
} hooksamp;

/* One reading of the after-hooks' lag at now; which part of the row it falls
 * in comes from l (warm-up, measured window, after the window). */
static void hook_take(hooksamp *h, const load *l, int64_t now)
{
    double out[3];
    h->next = now + (l->stop ? HOOK_DRAIN_NS : HOOK_EVERY_NS);
    if (h->p->hooks(h->p, out) != 0) {
        h->fails++;
        return;
    }
    if (!h->n++) {
        h->runs0 = out[1];
        h->seq0 = out[2];
    }
    h->lag = out[0];
    h->runs = out[1];
    h->seq = out[2];
    if (!l->stop && h->lag > h->max)
        h->max = h->lag;
    if (l->measuring && !l->stop) {
        double x = (double)(now - l->t_warm) / 1e9;
        h->sx += x;
        h->sy += h->lag;
        h->sxx += x * x;
        h->sxy += x * h->lag;
        h->nw++;
    }
    if (l->stop && h->lag == 0 && !h->caught)
        h->caught = now;
}

static void issue(load *l, pconn *c)
{
    contact ct;
    char arg[40];
    if (c->busy || l->stop || (l->limit && l->issued >= l->limit))
        return;
    if (l->preload) {
        char city[16];
        query_city(city, sizeof city, (unsigned)(l->issued / PER_CITY));
        contact_make(&ct, "q", l->issued, city);
        c->p->send(c, PEER_CREATE, &ct, NULL);
    } else if (l->op == PEER_CREATE) {
        uint64_t k = g_seq++;
        contact_make(&ct, "c", k, bench_cities[k % BENCH_NCITIES]);
        c->p->send(c, PEER_CREATE, &ct, NULL);
    } else if (l->op == PEER_GET) {
        c->p->send(c, PEER_GET, NULL, l->ids[bench_rng() % l->nids]);
    } else {
        query_city(arg, sizeof arg, (unsigned)(bench_rng() % QUERY_CITIES));
        c->p->send(c, PEER_QUERY, NULL, arg);
    }
    c->busy = 1;
    c->sent_at = bench_now_ns();
    l->in_flight++;
    l->issued++;
}

static void note_error(load *l, const char *what)
{
    l->errors++;
    if (!l->first_err[0])
        snprintf(l->first_err, sizeof l->first_err, "%s", what);
}

static void load_reply(void *ud, pconn *c, const peer_reply *r)
{
    load *l = ud;
    int64_t now = bench_now_ns();
    int ok;
    if (r->push) { /* count changes, not messages: a Tarantool poll carries several */
        size_t from = 0, next;
        uint64_t k;
        while (r->body && contact_key(r->body, r->len, "c", from, &k, &next) == 0) {
            from = next;
            l->pushes++;
        }
        return;
    }
    if (!c->busy) {
        note_error(l, "a reply nobody asked for");
        return;
    }
    c->busy = 0;
    l->in_flight--;
    ok = r->ok;
    if (!ok) {
        note_error(l, r->err[0] ? r->err : "failed");
    } else if (l->op == PEER_QUERY && r->nrec != PER_CITY) {
        char m[80];
        snprintf(m, sizeof m, "query returned %ld records, not %d", r->nrec, PER_CITY);
        note_error(l, m);
        ok = 0;
    } else if (l->op == PEER_GET && r->nrec != 1) {
        note_error(l, "get found no record");
        ok = 0;
    } else if (l->op == PEER_CREATE) {
        if (!r->id[0]) {
            note_error(l, "create returned no id");
            ok = 0;
        } else {
            l->acked++;
            if (l->preload) {
                if (l->nids == l->capids) {
                    l->capids = l->capids ? l->capids * 2 : 1024;
                    l->ids = bench_xrealloc(l->ids, l->capids * sizeof *l->ids);
                }
                snprintf(l->ids[l->nids++], sizeof *l->ids, "%s", r->id);
            }
        }
    }
    if (ok && l->measuring && now <= l->t_end) {
        if (l->nlat == l->caplat) {
            l->caplat = l->caplat ? l->caplat * 2 : 65536;
            l->lat = bench_xrealloc(l->lat, l->caplat * sizeof *l->lat);
        }
        l->lat[l->nlat++] = now - c->sent_at;
        l->done++;
    }
    issue(l, c);
}

static void ep_watch(int ep, pconn *c, int out)
{
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) != 0)
        bench_die("epoll_ctl: %s", strerror(errno));
    c->epout = out;
}

static void pc_flush(int ep, pconn *c)
{
    int rc = c->p->flush(c);
    if (rc == 1 && !c->epout)
        ep_watch(ep, c, 1);
    else if (rc == 0 && c->epout)
        ep_watch(ep, c, 0);
}

/* Opens a connection (a subscriber when sub), non-blocking, under ep. */
static void pc_open(peer *p, pconn *c, int ep, int sub)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    int fl;
    memset(c, 0, sizeof *c);
    p->open(p, c);
    fl = fcntl(c->fd, F_GETFL);
    if (fl < 0 || fcntl(c->fd, F_SETFL, fl | O_NONBLOCK) != 0)
        bench_die("fcntl: %s", strerror(errno));
    if (sub) {
        p->subscribe(c);
        c->sub = 1;
    }
    if (ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0)
        bench_die("epoll_ctl add: %s", strerror(errno));
    if (ep >= 0) /* a subscription may have queued its first long poll (Tarantool) */
        pc_flush(ep, c);
}

static void pc_close(pconn *c)
{
    if (c->p)
        c->p->close(c);
    fan_rx_free(&c->fan);
}

/* Handles the events of one epoll_wait: replies and pushes to fn(ud, ...);
 * l (if any) learns of requests lost with a closed connection. */
static void pump(int ep, void *ud, load *l, int timeout_ms, uint64_t *closed, peer_reply_fn *fn)
{
    struct epoll_event ev[MAX_EVENTS];
    int nev = epoll_wait(ep, ev, MAX_EVENTS, timeout_ms);
    if (nev < 0 && errno != EINTR)
        bench_die("epoll_wait: %s", strerror(errno));
    for (int i = 0; i < nev; i++) {
        pconn *c = ev[i].data.ptr;
        if (c->closed)
            continue;
        if (ev[i].events & EPOLLOUT)
            pc_flush(ep, c);
        if (ev[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
            c->p->read(c, fn, ud);
        if (c->closed) {
            (*closed)++;
            if (c->busy && l) {
                c->busy = 0;
                l->in_flight--;
            }
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            continue;
        }
        pc_flush(ep, c);
    }
}

static row run_row(sysres *s, const cfg *cf, int op, int nconns, char (*ids)[32], size_t nids)
{
    peer *p = &s->p;
    row rw;
    load l;
    pconn *cs = bench_xcalloc((size_t)nconns + 1, sizeof *cs), *sub = NULL;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    uint64_t closed = 0;
    int64_t drain_until = 0;
    double srv0 = 0, srv1 = 0, cli0 = 0, cli1 = 0, cm0[3] = {0}, cm1[3] = {0};
    hooksamp hs;
    memset(&rw, 0, sizeof rw);
    memset(&l, 0, sizeof l);
    memset(&hs, 0, sizeof hs);
    hs.p = p;
    hs.on = op == PEER_CREATE && p->hooks;
    rw.conns = nconns;
    l.op = op;
    l.ids = ids;
    l.nids = nids;
    if (ep < 0)
        bench_die("epoll_create1: %s", strerror(errno));
    fprintf(stderr, "bench_peers: %s: %s, %d connections ...\n", p->name, WORKLOADS[op], nconns);
    if (op == PEER_CREATE) { /* the one subscriber notified of every create */
        sub = &cs[nconns];
        pc_open(p, sub, ep, 1);
    }
    for (int i = 0; i < nconns; i++)
        pc_open(p, &cs[i], ep, 0);
    if (p->commits)
        p->commits(p, cm0);
    if (hs.on) /* the row's first reading: the previous row's lag, if any is left */
        hook_take(&hs, &l, bench_now_ns());
    l.t_warm = bench_now_ns() + (int64_t)(cf->warm * 1e9);
    l.t_end = l.t_warm + (int64_t)(cf->secs * 1e9);
    for (int i = 0; i < nconns; i++) {
        issue(&l, &cs[i]);
        pc_flush(ep, &cs[i]);
    }
    for (;;) {
        int64_t now = bench_now_ns(), wait_ns;
        if (!l.measuring && now >= l.t_warm) {
            l.measuring = 1;
            srv0 = peer_tree_cpu_s(p->pid);
            cli0 = bench_self_cpu_s();
            if (hs.on) { /* the lag at the start of the measured window */
                hook_take(&hs, &l, now);
                rw.lag_start = hs.lag;
            }
        }
        if (!l.stop && now >= l.t_end) {
            if (hs.on) { /* ... and at its end (in the window: before stop is set) */
                hook_take(&hs, &l, now);
                rw.lag_end = hs.lag;
                hs.next = now + HOOK_DRAIN_NS; /* from now on, every 10 ms */
            }
            l.stop = 1;
            srv1 = peer_tree_cpu_s(p->pid);
            cli1 = bench_self_cpu_s();
            drain_until = now + 10 * (int64_t)1000000000;
        }
        if (l.stop) { /* the end: every reply in (10 s at most), then the
                       * subscriber's pushes (2 s at most after the stop) */
            int replies_in = l.in_flight == 0, pushes_in = !sub || l.pushes >= l.acked;
            int push_wait_over = now > drain_until - 8 * (int64_t)1000000000;
            if ((replies_in && (pushes_in || push_wait_over)) || now > drain_until)
                break;
        }
        if (hs.on && !hs.caught && now >= hs.next)
            hook_take(&hs, &l, now);
        wait_ns = l.stop ? 50000000 : (l.measuring ? l.t_end : l.t_warm) - now;
        if (hs.on && !hs.caught && hs.next - now < wait_ns)
            wait_ns = hs.next - now > 0 ? hs.next - now : 0;
        pump(ep, &l, &l, (int)(wait_ns / 1000000) + 1, &closed, load_reply);
    }
    if (l.in_flight)
        fprintf(stderr, "bench_peers: %" PRIu64 " requests unanswered 10 s after the end\n",
                l.in_flight);
    if (closed)
        fprintf(stderr, "bench_peers: %" PRIu64 " connections closed by the server\n", closed);
    if (l.errors)
        fprintf(stderr, "bench_peers: %" PRIu64 " errors; the first: %s\n", l.errors,
                l.first_err);
    if (p->commits) {
        p->commits(p, cm1);
        if (cm1[0] > cm0[0]) {
            rw.per_commit = (cm1[1] - cm0[1]) / (cm1[0] - cm0[0]);
            rw.commit_ms = (cm1[2] - cm0[2]) / (cm1[0] - cm0[0]) * 1e3;
        }
    }
    if (hs.on) { /* the row is over (its commits read first): how long until the
                  * after-hook caught up */
        int64_t give_up = l.t_end + HOOK_CATCHUP_S * (int64_t)1000000000;
        for (int64_t now = bench_now_ns(); !hs.caught && now < give_up; now = bench_now_ns()) {
            if (now < hs.next)
                usleep((useconds_t)((hs.next - now) / 1000));
            hook_take(&hs, &l, bench_now_ns());
        }
        rw.hooked = 1;
        rw.hook_fails = hs.fails;
        rw.lag_max = hs.max;
        rw.caught_ms = hs.caught ? (double)(hs.caught - l.t_end) / 1e6 : -1;
        rw.hook_runs = hs.runs - hs.runs0;
        rw.feed_changes = hs.seq - hs.seq0;
        if (hs.nw >= 2 && hs.nw * hs.sxx - hs.sx * hs.sx > 0)
            rw.lag_trend = (hs.nw * hs.sxy - hs.sx * hs.sy) / (hs.nw * hs.sxx - hs.sx * hs.sx);
        fprintf(stderr,
                "bench_peers: crmd's after-hook: lag %.0f at the start, at most %.0f, %.0f at the "
                "end; caught up after %.0f ms; %.0f runs, %.0f feed changes for %" PRIu64
                " creates acked (%d readings, %d unanswered)\n",
                rw.lag_start, rw.lag_max, rw.lag_end, rw.caught_ms, rw.hook_runs, rw.feed_changes,
                l.acked, hs.n, hs.fails);
    }
    qsort(l.lat, l.nlat, sizeof *l.lat, bench_cmp_i64);
    rw.n = l.nlat;
    rw.ops = (double)l.done / cf->secs;
    rw.p50 = bench_pct_ms(l.lat, l.nlat, 0.50);
    rw.p99 = bench_pct_ms(l.lat, l.nlat, 0.99);
    rw.p999 = bench_pct_ms(l.lat, l.nlat, 0.999);
    rw.errors = l.errors + closed;
    rw.acked = l.acked;
    rw.pushes = l.pushes;
    rw.srv_cpu = (srv1 - srv0) / cf->secs * 100;
    rw.cli_cpu = (cli1 - cli0) / cf->secs * 100;
    snprintf(rw.err, sizeof rw.err, "%s", l.first_err);
    for (int i = 0; i <= nconns; i++)
        pc_close(&cs[i]);
    free(cs);
    free(l.lat);
    close(ep);
    usleep(100000); /* let the server see the closes before the next row */
    return rw;
}

/* Creates QUERY_CITIES x PER_CITY contacts (city QC-nnnn); returns their ids. */
static size_t preload(peer *p, char (**ids)[32])
{
    enum { NC = 16 };
    load l;
    pconn cs[NC];
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int64_t t0 = bench_now_ns();
    uint64_t closed = 0;
    memset(&l, 0, sizeof l);
    l.op = PEER_CREATE;
    l.preload = 1;
    l.limit = PRELOAD;
    l.t_warm = l.t_end = INT64_MAX;
    fprintf(stderr, "bench_peers: %s: preloading %d contacts in %d cities ...\n", p->name,
            PRELOAD, QUERY_CITIES);
    for (int i = 0; i < NC; i++) {
        pc_open(p, &cs[i], ep, 0);
        issue(&l, &cs[i]);
        pc_flush(ep, &cs[i]);
    }
    while (l.in_flight || l.issued < l.limit) {
        if (bench_now_ns() - t0 > 300 * (int64_t)1000000000)
            bench_die("%s: preload took over 5 minutes", p->name);
        pump(ep, &l, &l, 1000, &closed, load_reply);
        if (closed)
            bench_die("%s: preload: a connection was closed", p->name);
    }
    if (l.errors || l.nids != (size_t)PRELOAD)
        bench_die("%s: preload: %" PRIu64 " errors (%s), %zu ids", p->name, l.errors, l.first_err,
                  l.nids);
    for (int i = 0; i < NC; i++)
        pc_close(&cs[i]);
    close(ep);
    *ids = l.ids;
    return l.nids;
}

/* Waits (up to secs) until the peer's after-hooks (crmd's) have run every
 * change so far, so that the rows after the preload do not share the server
 * with a hook still catching up. */
static void hooks_settle(peer *p, double secs)
{
    int64_t t0 = bench_now_ns(), until = t0 + (int64_t)(secs * 1e9);
    double out[3] = {0};
    while (bench_now_ns() < until) {
        if (p->hooks(p, out) == 0 && out[0] == 0) {
            fprintf(stderr, "bench_peers: %s: its after-hook caught up %.0f ms after the preload\n",
                    p->name, (double)(bench_now_ns() - t0) / 1e6);
            return;
        }
        usleep(10000);
    }
    fprintf(stderr, "bench_peers: %s: its after-hook still lags %.0f changes %g s after the preload\n",
            p->name, out[0], secs);
}

/* ---- fan-out ---- */

/* The writer's create k on its blocking connection (fan_create_fn). */
static int fan_create(void *ud, int k, char *err, size_t cap, int *gone)
{
    pconn *w = ud;
    peer_reply r;
    contact ct;
    contact_make(&ct, "f", (uint64_t)k, "Fanout City");
    if (peer_call(w, PEER_CREATE, &ct, NULL, &r, 10000) == 0)
        return 0;
    snprintf(err, cap, "%s", r.err);
    *gone = w->closed;
    return -1;
}

static void fan_reply(void *ud, pconn *c, const peer_reply *r)
{
    int nwrites = *(const int *)ud;
    int64_t now = bench_now_ns();
    size_t from = 0, next;
    uint64_t k;
    if (!r->push || !r->body) {
        if (!r->push)
            c->fan.others++;
        return;
    }
    while (contact_key(r->body, r->len, "f", from, &k, &next) == 0) {
        from = next;
        fan_rx_note(&c->fan, nwrites, k, now);
    }
}

static fan_rx *fan_sub(void *subs, int i, int *closed)
{
    pconn *c = (pconn *)subs + i;
    *closed = c->closed;
    return &c->fan;
}

static fanres run_fanout(peer *p, const cfg *cf)
{
    fanres fr;
    fan_writer f;
    int nsubs = cf->fan_subs;
    pconn *subs = bench_xcalloc((size_t)nsubs, sizeof *subs), writer;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int64_t done_at = 0;
    uint64_t closed = 0;
    memset(&fr, 0, sizeof fr);
    fan_writer_init(&f, cf->fan_rate, cf->fan_secs, fan_create, &writer);
    fr.subs = nsubs;
    fprintf(stderr, "bench_peers: %s: fan-out: %d subscribers, %d creates at %g/s ...\n", p->name,
            nsubs, f.nwrites, cf->fan_rate);
    pc_open(p, &writer, -1, 0); /* first: crmd then writes its ack before the pushes */
    for (int i = 0; i < nsubs; i++) {
        pc_open(p, &subs[i], ep, 1);
        fan_rx_init(&subs[i].fan, f.nwrites);
    }
    fan_writer_start(&f, 200000000);
    while (!fan_settled(&f, fan_sub, subs, nsubs, bench_now_ns(), &done_at))
        pump(ep, &f.nwrites, NULL, 10, &closed, fan_reply);
    fan_writer_join(&f);
    fan_stats_compute(&f, fan_sub, subs, nsubs, &fr.st);
    snprintf(fr.err, sizeof fr.err, "%s", f.first_err);
    if (f.errors)
        fprintf(stderr, "bench_peers: fan-out: %d writer errors; the first: %s\n", f.errors,
                f.first_err);
    if (closed)
        fprintf(stderr, "bench_peers: fan-out: %" PRIu64 " subscribers closed\n", closed);
    for (int i = 0; i < nsubs; i++)
        pc_close(&subs[i]);
    pc_close(&writer);
    free(subs);
    fan_writer_free(&f);
    close(ep);
    usleep(300000);
    return fr;
}

/* ---- one system ---- */

static void run_system(sysres *s, const cfg *cf, const char *base, const char *crmd)
{
    char dir[4400];
    peer_cfg pc;
    char (*ids)[32] = NULL;
    size_t nids;
    if ((size_t)snprintf(dir, sizeof dir, "%s/%s", base, s->key) >= sizeof dir)
        bench_die("path too long: %s", base);
    if (mkdir(dir, 0700) != 0)
        bench_die("mkdir %s: %s", dir, strerror(errno));
    pc.dir = dir;
    pc.src = CRM_SOURCE_DIR;
    pc.crmd = crmd;
    pc.max_conns = (cf->fan_subs > 256 ? cf->fan_subs : 256) + 32;
    fprintf(stderr, "bench_peers: starting %s in %s ...\n", s->p.name, dir);
    s->p.start(&s->p, &pc);
    fprintf(stderr, "bench_peers: %s (pid %d)\n", s->p.version, (int)s->p.pid);
    g_seq = 0;
    for (int i = 0; i < NCONC; i++)
        s->rows[PEER_CREATE][i] = run_row(s, cf, PEER_CREATE, CONNS[i], NULL, 0);
    nids = preload(&s->p, &ids);
    if (s->p.hooks)
        hooks_settle(&s->p, 60);
    for (int i = 0; i < NCONC; i++)
        s->rows[PEER_GET][i] = run_row(s, cf, PEER_GET, CONNS[i], ids, nids);
    for (int i = 0; i < NCONC; i++)
        s->rows[PEER_QUERY][i] = run_row(s, cf, PEER_QUERY, CONNS[i], NULL, 0);
    s->fan = run_fanout(&s->p, cf);
    s->stop_rc = s->p.stop(&s->p);
    s->ran = 1;
    free(ids);
}

/* ---- the report ---- */

static const char *verdict(int met)
{
    return met ? "met" : "**not met**";
}

static double ratio(double a, double b)
{
    return b > 0 ? a / b : NAN;
}

static void fmt_ratio(char *out, size_t n, double r)
{
    if (isnan(r))
        snprintf(out, n, "–");
    else
        snprintf(out, n, "%.2f×", r);
}

/* ---- the floor under a durable create at 1 connection ----
 * The same disk, the same folder: what one durable append costs (a 4 KiB
 * pwrite + fdatasync: Redis's AOF, Tarantool's WAL), and what one LMDB
 * commit of one record costs (its data pages flushed, then its meta page:
 * two flushes), so that crmd's 1-connection latency can be read against
 * what its store alone needs. */
typedef struct floor_fig {
    double p50, p99;
    int ok;
} floor_fig;

static floor_fig fig_of(int64_t *ns, size_t n)
{
    floor_fig f = {NAN, NAN, n > 0};
    qsort(ns, n, sizeof *ns, bench_cmp_i64);
    f.p50 = bench_pct_ms(ns, n, 0.5);
    f.p99 = bench_pct_ms(ns, n, 0.99);
    return f;
}

#define FLOOR_N 2000
static floor_fig floor_append(const char *base)
{
    char path[4400], page[4096];
    int64_t *ns = calloc(FLOOR_N, sizeof *ns);
    size_t n = 0;
    int fd;
    floor_fig bad = {NAN, NAN, 0};
    snprintf(path, sizeof path, "%s/floor-append", base);
    memset(page, 'x', sizeof page);
    if (!ns || (fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0) {
        free(ns);
        return bad;
    }
    for (size_t i = 0; i < FLOOR_N; i++) {
        int64_t t0 = bench_now_ns();
        if (pwrite(fd, page, sizeof page, (off_t)(i * sizeof page)) != (ssize_t)sizeof page ||
            fdatasync(fd) != 0)
            break;
        ns[n++] = bench_now_ns() - t0;
    }
    close(fd);
    unlink(path);
    bad = fig_of(ns, n);
    free(ns);
    return bad;
}

static floor_fig floor_lmdb(const char *base)
{
    char dir[4400], rec[250];
    int64_t *ns = calloc(FLOOR_N, sizeof *ns);
    size_t n = 0;
    MDB_env *env = NULL;
    MDB_dbi dbi;
    MDB_txn *txn;
    floor_fig f = {NAN, NAN, 0};
    snprintf(dir, sizeof dir, "%s/floor-lmdb", base);
    memset(rec, 'r', sizeof rec);
    if (!ns || mkdir(dir, 0700) != 0 || mdb_env_create(&env) || mdb_env_set_mapsize(env, 1u << 28) ||
        mdb_env_open(env, dir, 0, 0600) || mdb_txn_begin(env, NULL, 0, &txn) ||
        mdb_dbi_open(txn, NULL, 0, &dbi) || mdb_txn_commit(txn))
        goto out;
    for (uint64_t i = 0; i < FLOOR_N; i++) {
        uint64_t key = __builtin_bswap64(i + 1); /* sequential, as crmd's ids */
        MDB_val k = {sizeof key, &key}, v = {sizeof rec, rec};
        int64_t t0 = bench_now_ns();
        if (mdb_txn_begin(env, NULL, 0, &txn))
            break;
        if (mdb_put(txn, dbi, &k, &v, 0) || mdb_txn_commit(txn))
            break;
        ns[n++] = bench_now_ns() - t0;
    }
    f = fig_of(ns, n);
out:
    if (env)
        mdb_env_close(env);
    {
        char p[4500];
        snprintf(p, sizeof p, "%s/data.mdb", dir);
        unlink(p);
        snprintf(p, sizeof p, "%s/lock.mdb", dir);
        unlink(p);
        rmdir(dir);
    }
    free(ns);
    return f;
}

static floor_fig floor_app, floor_mdb;

static void print_targets(const sysres *sys)
{
    const sysres *c = &sys[0], *r = &sys[1], *pg = &sys[2], *t = &sys[3];
    const row *c64 = &c->rows[PEER_CREATE][2], *c1 = &c->rows[PEER_CREATE][0];
    char a[32];
    printf("## Targets (issue 9)\n\n| target | measured | |\n|---|---|---|\n");
    if (!c->ran) {
        printf("| (crmd did not run) | | |\n\n");
        return;
    }
    const struct {
        const sysres *s;
        double want;
    } vs[3] = {{r, 1.5}, {t, 2.5}, {pg, 8}};
    for (int i = 0; i < 3; i++) {
        if (!vs[i].s->ran)
            continue;
        double x = ratio(c64->ops, vs[i].s->rows[PEER_CREATE][2].ops);
        fmt_ratio(a, sizeof a, x);
        printf("| create at 64 connections: crmd ≥ %g× %s | %s (%.0f vs %.0f/s) | %s |\n",
               vs[i].want, vs[i].s->p.name, a, c64->ops, vs[i].s->rows[PEER_CREATE][2].ops,
               verdict(!isnan(x) && x >= vs[i].want && !c64->errors));
    }
    printf("| create at 64 connections: crmd p99 ≤ 5 ms | %.3f ms | %s |\n", c64->p99,
           verdict(c64->p99 <= 5 && !c64->errors));
    if (r->ran) {
        const row *r1 = &r->rows[PEER_CREATE][0];
        printf("| create at 1 connection: crmd's latency within 10%% of Redis's | p50 %.3f vs %.3f "
               "ms | %s |\n",
               c1->p50, r1->p50, verdict(c1->p50 <= r1->p50 * 1.1 && !c1->errors));
    }
    printf("| gets at 64 connections ≥ 100,000/s | %.0f/s | %s |\n", c->rows[PEER_GET][2].ops,
           verdict(c->rows[PEER_GET][2].ops >= 100000 && !c->rows[PEER_GET][2].errors));
    printf("| fan-out to 1,000 subscribers at 100 writes/s: p99 ≤ 50 ms, none missing | %d "
           "subscribers at %.1f writes/s: commit→receipt p99 %.3f ms, %" PRIu64 " missing | %s |\n",
           c->fan.subs, c->fan.st.rate, c->fan.st.p99, c->fan.st.missing,
           verdict(c->fan.st.p99 <= 50 && c->fan.st.missing == 0 && c->fan.subs >= 1000 &&
                   c->fan.st.rate >= 95));
    printf("| RSS per idle connection ≤ 20 KiB | measured by bench_ws (`bench/results/ws.md`) | |\n\n");
}

/* The targets of issue 14 (the write pipeline), against Redis in the same run. */
static void print_targets14(const sysres *sys)
{
    const sysres *c = &sys[0], *r = &sys[1];
    const row *c64 = &c->rows[PEER_CREATE][2], *c256 = &c->rows[PEER_CREATE][3],
              *c1 = &c->rows[PEER_CREATE][0];
    char a[32];
    int all_got = 1;
    if (!c->ran)
        return;
    printf("## Targets (issue 14: the write pipeline)\n\n| target | measured | |\n|---|---|---|\n");
    if (r->ran) {
        double x = ratio(c64->ops, r->rows[PEER_CREATE][2].ops);
        fmt_ratio(a, sizeof a, x);
        printf("| creates at 64 connections ≥ 1.5× Redis, p99 ≤ 5 ms | %s (%.0f vs %.0f/s), p99 %.3f "
               "ms | %s |\n",
               a, c64->ops, r->rows[PEER_CREATE][2].ops, c64->p99,
               verdict(!isnan(x) && x >= 1.5 && c64->p99 <= 5 && !c64->errors));
    }
    printf("| creates at 256 connections no lower than at 64 | %.0f vs %.0f/s | %s |\n", c256->ops,
           c64->ops, verdict(c256->ops >= c64->ops && !c256->errors));
    if (r->ran) {
        const row *r1 = &r->rows[PEER_CREATE][0];
        printf("| create at 1 connection: p50 ≤ 1.25× Redis's | p50 %.3f vs %.3f ms (%.2f×) | %s |\n",
               c1->p50, r1->p50, c1->p50 / r1->p50,
               verdict(c1->p50 <= r1->p50 * 1.25 && !c1->errors));
    }
    if (floor_app.ok && floor_mdb.ok)
        printf("| the floor on this disk, same run: one 4 KiB append + fdatasync / one LMDB commit "
               "of one record (two flushes) | p50 %.3f / %.3f ms, p99 %.3f / %.3f ms | (reference) |\n",
               floor_app.p50, floor_mdb.p50, floor_app.p99, floor_mdb.p99);
    if (r->ran) {
        double x = ratio(c->rows[PEER_GET][2].ops, r->rows[PEER_GET][2].ops);
        fmt_ratio(a, sizeof a, x);
        printf("| gets at 64 connections ≥ 1.0× Redis | %s (%.0f vs %.0f/s) | %s |\n", a,
               c->rows[PEER_GET][2].ops, r->rows[PEER_GET][2].ops,
               verdict(!isnan(x) && x >= 1.0 && !c->rows[PEER_GET][2].errors));
    }
    for (int i = 0; i < NCONC; i++) {
        const row *w = &c->rows[PEER_CREATE][i];
        if (w->pushes < w->acked)
            all_got = 0;
    }
    printf("| every create row: the subscriber receives 100 %% of the acknowledged changes | %s | "
           "%s |\n",
           all_got ? "every row" : "not every row (create table)", verdict(all_got));
    printf("| commit→receipt p99 ≤ 20 ms at 64 connections | not measured in the create rows (the "
           "fan-out row above measures it at 100 writes/s) | |\n\n");
}

/* crmd's after-hook in its create rows: its own derived-data path, no peer's. */
static void print_hooks(const sysres *sys)
{
    const sysres *c = &sys[0];
    if (!c->ran || !c->rows[PEER_CREATE][0].hooked)
        return;
    printf("### crmd's after-hook (`activity.lua`, one write per change)\n\n"
           "crmd's create rows above also ran this after-hook: after each create is durable, it "
           "writes one `activity` record from the change feed, on crmd's writer thread (more "
           "work per create than the peers do).  This measures crmd's own derived-data path; "
           "the peers have no after-hook equivalent, so it is not a comparison.  Lag: "
           "`crmd_after_hook_lag` from crmd's /metrics, in feed changes (a create adds three: "
           "the contact, its loyalty account, its activity record), read by the load generator "
           "every 100 ms of the row.  At start / at end: at the start and the end of the "
           "measured window; max: the highest reading from the row's start to the end of the "
           "measured window; grew: the end against the start; trend: the least-squares slope of "
           "the window's readings; caught up after: from the end of the window until the lag "
           "read 0 (every 10 ms, %d s at most); runs: after-hook runs from the row's start "
           "until then, of the creates acknowledged in the row.\n\n",
           HOOK_CATCHUP_S);
    printf("| conns | creates/s | lag at start | max lag | lag at end | grew (end − start) | "
           "trend (changes/s) | caught up after | runs of creates |\n"
           "|---:|---:|---:|---:|---:|---|---:|---:|---:|\n");
    for (int i = 0; i < NCONC; i++) {
        const row *x = &c->rows[PEER_CREATE][i];
        char caught[48];
        if (x->caught_ms >= 0)
            snprintf(caught, sizeof caught, "%.0f ms", x->caught_ms);
        else
            snprintf(caught, sizeof caught, "**not in %d s**", HOOK_CATCHUP_S);
        printf("| %d | %.0f | %.0f | %.0f | %.0f | %s (%+.0f) | %+.0f | %s | %.0f of %" PRIu64
               " |\n",
               x->conns, x->ops, x->lag_start, x->lag_max, x->lag_end,
               x->lag_end > x->lag_start ? "yes" : "no", x->lag_end - x->lag_start, x->lag_trend,
               caught, x->hook_runs, x->acked);
    }
    int any = 0;
    for (int i = 0; i < NCONC; i++)
        if (c->rows[PEER_CREATE][i].hook_fails)
            printf("%sAt %d connections, %d readings of /metrics went unanswered.",
                   any++ ? " " : "\n", CONNS[i], c->rows[PEER_CREATE][i].hook_fails);
    printf(any ? "\n\n" : "\n");
}

static void print_workload(const sysres *sys, int w, const char *title, const char *what)
{
    printf("## %s\n\n%s\n\n", title, what);
    printf("| conns | system | ops/s | p50 ms | p99 ms | p999 ms | errors | server CPU | loadgen "
           "CPU | crmd ÷ system (ops/s) |%s\n",
           w == PEER_CREATE ? " subscriber got |" : "");
    printf("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|%s\n",
           w == PEER_CREATE ? "---:|" : "");
    for (int i = 0; i < NCONC; i++)
        for (int k = 0; k < NSYS; k++) {
            const row *x = &sys[k].rows[w][i];
            char rt[32];
            if (!sys[k].ran)
                continue;
            fmt_ratio(rt, sizeof rt,
                      k == 0 || !sys[0].ran ? NAN : ratio(sys[0].rows[w][i].ops, x->ops));
            printf("| %d | %s | %.0f | %.3f | %.3f | %.3f | %" PRIu64 " | %.0f%% | %.0f%% | %s |",
                   x->conns, sys[k].p.name, x->ops, x->p50, x->p99, x->p999, x->errors,
                   x->srv_cpu, x->cli_cpu, rt);
            if (w == PEER_CREATE)
                printf(" %" PRIu64 " of %" PRIu64 " |", x->pushes, x->acked);
            printf("\n");
        }
    if (w == PEER_CREATE && sys[0].ran) {
        printf("\ncrmd's group commits in these rows (its /metrics, warm-up included): writes "
               "per commit");
        for (int i = 0; i < NCONC; i++)
            printf("%s %d: %.1f (%.3f ms per commit)", i ? ";" : "", CONNS[i],
                   sys[0].rows[w][i].per_commit, sys[0].rows[w][i].commit_ms);
        printf(".\n");
    }
    for (int k = 0; k < NSYS; k++)
        for (int i = 0; i < NCONC; i++)
            if (sys[k].ran && sys[k].rows[w][i].errors)
                printf("\n%s at %d connections, the first error: `%s`", sys[k].p.name, CONNS[i],
                       sys[k].rows[w][i].err);
    printf("\n\n");
    if (w == PEER_CREATE)
        print_hooks(sys);
}

static void write_chart_data(const char *path, const sysres *sys)
{
    FILE *f = fopen(path, "w");
    static const char *const blocks[4] = {"create ops/s", "get ops/s", "query ops/s",
                                          "create p99 ms"};
    if (!f)
        bench_die("cannot write %s", path);
    for (int b = 0; b < 4; b++) {
        fprintf(f, "# %s\nconns", blocks[b]);
        for (int k = 0; k < NSYS; k++)
            fprintf(f, " \"%s\"", sys[k].p.name);
        fprintf(f, "\n");
        for (int i = 0; i < NCONC; i++) {
            fprintf(f, "%d", CONNS[i]);
            for (int k = 0; k < NSYS; k++) {
                const row *x = &sys[k].rows[b == 3 ? PEER_CREATE : b][i];
                if (!sys[k].ran)
                    fprintf(f, " NaN");
                else
                    fprintf(f, " %.3f", b == 3 ? x->p99 : x->ops);
            }
            fprintf(f, "\n");
        }
        fprintf(f, "\n\n");
    }
    if (fclose(f) != 0)
        bench_die("cannot write %s", path);
}

static void on_signal(int sig)
{
    (void)sig;
    exit(130); /* atexit stops the servers */
}

int main(int argc, char **argv)
{
    static sysres sys[NSYS];
    cfg cf;
    char exe[4096], build[4096], crmd[4096], base[4200], model[256], fstype[64], date[64],
        load0[64], load1[64];
    const char *where = getenv("CRM_BENCH_DIR"), *only = getenv("CRM_BENCH_PEERS");
    struct statfs sf;
    struct utsname un;
    time_t now = time(NULL);
    ssize_t xl;
    int tmpfs;

    memset(&cf, 0, sizeof cf);
    cf.quick = getenv("CRM_BENCH_QUICK") && strcmp(getenv("CRM_BENCH_QUICK"), "0") != 0;
    cf.secs = bench_env_num("CRM_BENCH_SECONDS", cf.quick ? 0.5 : 3, 0);
    cf.warm = getenv("CRM_BENCH_WARMUP") && !strcmp(getenv("CRM_BENCH_WARMUP"), "0")
                  ? 0
                  : bench_env_num("CRM_BENCH_WARMUP", cf.quick ? 0.2 : 0.5, 0);
    cf.fan_subs = (int)bench_env_num("CRM_BENCH_FANOUT_SUBS", cf.quick ? 100 : 1000, 1);
    cf.fan_rate = bench_env_num("CRM_BENCH_FANOUT_RATE", 100, 0);
    cf.fan_secs = bench_env_num("CRM_BENCH_FANOUT_SECONDS", cf.quick ? 1 : 5, 0);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    atexit(peer_kill_all);
    bench_raise_nofile((rlim_t)(2 * cf.fan_subs + 2 * 256 + 512));
    bench_loadavg(load0, sizeof load0);

    peer_crmd_init(&sys[0].p);
    peer_redis_init(&sys[1].p);
    peer_pg_init(&sys[2].p);
    peer_tarantool_init(&sys[3].p);
    sys[0].key = "crmd";
    sys[1].key = "redis";
    sys[2].key = "postgres";
    sys[3].key = "tarantool";

    if ((xl = readlink("/proc/self/exe", exe, sizeof exe - 1)) <= 0)
        bench_die("readlink /proc/self/exe: %s", strerror(errno));
    exe[xl] = 0;
    snprintf(build, sizeof build, "%s", dirname(dirname(exe))); /* build/bench/bench_peers */
    if (getenv("CRM_CRMD") && *getenv("CRM_CRMD"))
        snprintf(crmd, sizeof crmd, "%s", getenv("CRM_CRMD"));
    else
#ifdef CRM_CRMD_PATH
        snprintf(crmd, sizeof crmd, "%s", CRM_CRMD_PATH);
#else
        snprintf(crmd, sizeof crmd, "%s/crmd", build);
#endif
    if (access(crmd, X_OK) != 0)
        bench_die("%s is not an executable crmd (set CRM_CRMD)", crmd);
    if (!where || !*where)
        where = build;
    if ((size_t)snprintf(base, sizeof base, "%s/crmd-bench-peers-XXXXXX", where) >= sizeof base ||
        !mkdtemp(base))
        bench_die("mkdtemp %s: %s", base, strerror(errno));
    { /* absolute: the servers chdir to their folders (Redis opens its log after) */
        char abs[4096];
        if (!realpath(base, abs))
            bench_die("realpath %s: %s", base, strerror(errno));
        snprintf(base, sizeof base, "%s", abs);
    }
    chmod(base, 0711); /* PostgreSQL runs as postgres and must reach its folder */
    if (statfs(base, &sf) != 0)
        bench_die("statfs %s: %s", base, strerror(errno));
    tmpfs = sf.f_type == TMPFS_MAGIC_ || sf.f_type == RAMFS_MAGIC_;
    if (tmpfs)
        fprintf(stderr, "bench_peers: WARNING: %s is on tmpfs/ramfs: fsync costs nothing there "
                        "(set CRM_BENCH_DIR)\n", base);
    bench_fs_type(base, fstype, sizeof fstype);
    bench_cpu_model(model, sizeof model);
    uname(&un);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));

    /* the disk's own floor, before any server runs (print_targets14) */
    floor_app = floor_append(base);
    floor_mdb = floor_lmdb(base);
    for (int k = 0; k < NSYS; k++)
        if (!only || !*only || strstr(only, sys[k].key))
            run_system(&sys[k], &cf, base, crmd);
    bench_loadavg(load1, sizeof load1);

    printf("# bench_peers: crmd against Redis, PostgreSQL and Tarantool\n\n");
    if (cf.quick)
        printf("> **Smoke run (`CRM_BENCH_QUICK=1`) on a shared, busy machine: %g s rows, %d "
               "subscribers for %g s.  It shows that the benchmark works end to end; its figures "
               "are noise, not a measurement.**\n\n",
               cf.secs, cf.fan_subs, cf.fan_secs);
    printf("Run %s.  Machine: %s, nproc %ld, %ld GiB RAM, Linux %s; data on %s (`%s`)%s.  Load "
           "average (1/5/15 min) at start %s, at end %s.\n\n",
           date, model, sysconf(_SC_NPROCESSORS_ONLN), bench_mem_gib(), un.release, fstype, where,
           tmpfs ? " — **tmpfs: durable figures are not disk figures**" : "", load0, load1);
    printf("One load generator for all (this program, C, one thread, epoll, on the same 2 cores "
           "as the server): one request in flight per connection, latency from writing a "
           "request to reading its reply; each row %g s warm-up, then %g s measured on fresh "
           "connections.  One server at a time, each started fresh in its own folder on the "
           "same disk and stopped after its rows.  Every system is durable per request (the "
           "reply follows the fsync): crmd's group commit, Redis `appendfsync always`, "
           "PostgreSQL `synchronous_commit on`, Tarantool `wal_mode fsync`.  Server CPU: the "
           "server's processes (PostgreSQL: the postmaster and its backends) as a share of one "
           "core over the measured window.\n\n",
           cf.warm, cf.secs);
    printf("| system | version | set-up | stopped cleanly |\n|---|---|---|---|\n");
    for (int k = 0; k < NSYS; k++)
        if (sys[k].ran)
            printf("| %s | %s | %s | %s |\n", sys[k].p.name, sys[k].p.version, sys[k].p.setup,
                   sys[k].stop_rc == 0 ? "yes" : "**no**");
    printf("\n");
    print_targets14(sys);
    print_targets(sys);
    if (argc > 1)
        printf("![ops/s and p99 by connections](peers.png)\n\n");
    print_workload(sys, PEER_CREATE, "(1) Create",
                   "A ~250-byte contact (11 fields), durable; the hook credits 10 loyalty points "
                   "to the new contact's account in the same transaction; one subscriber "
                   "connected and notified (\"subscriber got\": pushes it read of the creates "
                   "acknowledged in the row, warm-up included).  crmd alone also runs an "
                   "after-hook that writes one activity record per create after the commit, so "
                   "its rows do more work than the peers' (its lag: the table under this one).");
    print_workload(sys, PEER_GET, "(2) Get by id",
                   "Random ids among the 10,000 contacts preloaded after the create rows.");
    print_workload(sys, PEER_QUERY, "(3) Indexed query returning 10 records",
                   "city = X through the city index, limit 10, with exactly 10 matches (1,000 "
                   "preloaded cities).");
    printf("## (4) Fan-out\n\n%d subscribers on the contacts' changes; one writer on its own "
           "connection (opened first) and thread creates contacts at %g/s for %g s, one in "
           "flight.  commit→receipt: from the writer reading its ack to a subscriber reading "
           "the change (read before the ack: 0); send→receipt: from the writer sending the "
           "create.\n\n",
           cf.fan_subs, cf.fan_rate, cf.fan_secs);
    printf("| system | writes acked | pushes expected | received | missing | duplicates | "
           "commit→receipt p50 ms | p99 ms | p999 ms | max ms | send→receipt p50 ms | p99 ms | "
           "writer ack p50 / p99 ms |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for (int k = 0; k < NSYS; k++) {
        const fanres *f = &sys[k].fan;
        if (!sys[k].ran)
            continue;
        printf("| %s | %d of %d | %" PRIu64 " | %" PRIu64 " | %" PRIu64 " | %" PRIu64
               " | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f / %.3f |\n",
               sys[k].p.name, f->st.acked, f->st.writes, f->st.expected, f->st.received,
               f->st.missing, f->st.dups, f->st.p50, f->st.p99, f->st.p999, f->st.max, f->st.s50,
               f->st.s99, f->st.ack50, f->st.ack99);
    }
    printf("\nOne run; runs on shared machines spread ±10–40%% (perf-anchors.md), so compare "
           "ratios taken in one run.\n");
    fflush(stdout);
    if (argc > 1)
        write_chart_data(argv[1], sys);
    if (!getenv("CRM_BENCH_KEEP"))
        bench_rm_tree(base);
    else
        fprintf(stderr, "bench_peers: kept %s\n", base);
    return 0;
}
