/* sys_crmd -- crmd as a peer: the bench schemas (bench/peers/crmd/schemas:
 * contacts with one index, on city, loyalty and activity), the Lua
 * before-hook that credits the loyalty account in the create's own
 * transaction (bench/peers/crmd/scripts/loyalty.lua) and the Lua after-hook
 * that writes one activity record per new contact from the change feed
 * (bench/peers/crmd/scripts/activity.lua; its lag is read from /metrics);
 * over WebSocket, JSON subprotocol, with benchws's client. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "benchutil.h"
#include "peer.h"

typedef struct crmd_conn {
    conn ws;
    uint64_t ref;
} crmd_conn;

static bench_crmd_proc proc = {.pid = -1};

static void crmd_peer_start(peer *p, const peer_cfg *cfg)
{
    char line[256];
    FILE *f;
    snprintf(proc.crmd, sizeof proc.crmd, "%s", cfg->crmd);
    snprintf(proc.schemas, sizeof proc.schemas, "%s/bench/peers/crmd/schemas", cfg->src);
    snprintf(proc.scripts, sizeof proc.scripts, "%s/bench/peers/crmd/scripts", cfg->src);
    snprintf(proc.plugins, sizeof proc.plugins, "/nonexistent/no-plugins");
    snprintf(proc.data, sizeof proc.data, "%s/data", cfg->dir);
    snprintf(proc.log, sizeof proc.log, "%s/crmd.log", cfg->dir);
    if (mkdir(proc.data, 0700) != 0)
        bench_die("mkdir %s failed", proc.data);
    bench_crmd_token_create(&proc);
    bench_crmd_start(&proc);
    peer_adopt(proc.pid);
    p->pid = proc.pid;
    snprintf(p->version, sizeof p->version, "crmd");
    snprintf(line, sizeof line, "'%.200s' version 2>&1", cfg->crmd);
    if ((f = popen(line, "r"))) {
        if (fgets(line, sizeof line, f)) {
            line[strcspn(line, "\n")] = 0;
            snprintf(p->version, sizeof p->version, "%.90s", line);
        }
        pclose(f);
    }
    snprintf(p->setup, sizeof p->setup,
             "`crmd serve --rate 10000000` (LMDB, durable group commit on a writer thread, "
             "commit-flushes 1: data flushed by the commit, meta page by the syncer or the next "
             "commit), schemas `bench/peers/crmd/schemas` (contacts indexed on city; loyalty; "
             "activity), the Lua before-hook `bench/peers/crmd/scripts/loyalty.lua` (get + "
             "create/update of the loyalty account in the create's transaction) and the Lua "
             "after-hook `bench/peers/crmd/scripts/activity.lua` (one activity record per new "
             "contact, from the change feed after the commit: crmd only); WebSocket, "
             "`crm.v1.json`; the subscriber: `subscribe` to contacts (the record in each push)");
}

static int crmd_peer_stop(peer *p)
{
    int rc = bench_crmd_stop(&proc), other = bench_crmd_log_other(&proc);
    p->pid = -1;
    if (other)
        fprintf(stderr, "bench_peers: crmd logged %d unexpected lines\n", other);
    return rc == 0 ? 0 : -1;
}

static void crmd_peer_open(peer *p, pconn *c)
{
    crmd_conn *cc = bench_xcalloc(1, sizeof *cc);
    conn_open(&cc->ws, proc.port, "crm.v1.json", proc.token, 0);
    c->impl = cc;
    c->fd = cc->ws.fd;
    c->p = p;
}

static void crmd_peer_close(pconn *c)
{
    crmd_conn *cc = c->impl;
    if (!cc)
        return;
    conn_free(&cc->ws);
    free(cc);
    c->impl = NULL;
    c->fd = -1;
}

static void crmd_peer_send(pconn *c, int op, const contact *ct, const char *arg)
{
    crmd_conn *cc = c->impl;
    uint8_t buf[REQ_CAP];
    wb w = {buf, 0, sizeof buf, 0, 0, {0}, {0}};
    uint64_t ref = ++cc->ref;
    if (op == PEER_CREATE)
        req_create_contact(&w, ref, ct);
    else if (op == PEER_GET)
        req_get(&w, ref, arg);
    else
        req_query_city(&w, ref, arg);
    ws_send_wb(&cc->ws, &w);
}

static int crmd_peer_flush(pconn *c)
{
    crmd_conn *cc = c->impl;
    /* conn_flush with ep -1 would block; writes here are small and the
     * socket almost never full, so write what goes and report the rest */
    return peer_flush_buf(c, cc->ws.tx, &cc->ws.txoff, &cc->ws.txlen);
}

typedef struct crmd_read {
    pconn *c;
    peer_reply_fn *fn;
    void *ud;
} crmd_read;

static void crmd_deliver(void *ud, conn *ws, const uint8_t *m, size_t n, int64_t now)
{
    crmd_read *rd = ud;
    peer_reply r;
    uint64_t ref;
    int ok;
    (void)ws;
    (void)now;
    memset(&r, 0, sizeof r);
    if (reply_ref(0, m, n, &ref, &ok) != 0) {
        r.push = 1;
        if (n > 17 && memcmp(m, "{\"event\":\"change\"", 17) == 0) {
            r.body = m;
            r.len = n;
        }
        rd->fn(rd->ud, rd->c, &r);
        return;
    }
    r.ok = ok == 1;
    if (!r.ok) {
        error_text(m, n, r.err, sizeof r.err);
    } else {
        const uint8_t *p = memmem(m, n, "\"id\":\"", 6);
        const uint8_t *q = p ? memchr(p + 6, '"', (size_t)(m + n - p - 6)) : NULL;
        if (q && q - p - 6 < (long)sizeof r.id) {
            memcpy(r.id, p + 6, (size_t)(q - p - 6));
            r.id[q - p - 6] = 0;
        }
        r.nrec = (long)count_sub(m, n, "\"_rev\":");
    }
    rd->fn(rd->ud, rd->c, &r);
}

static int crmd_peer_read(pconn *c, peer_reply_fn *fn, void *ud)
{
    crmd_conn *cc = c->impl;
    crmd_read rd = {c, fn, ud};
    int rc = conn_read(&rd, &cc->ws, crmd_deliver);
    if (cc->ws.closed)
        c->closed = 1;
    /* pongs the client owes go out with the next flush */
    return rc;
}

static void crmd_peer_subscribe(pconn *c)
{
    crmd_conn *cc = c->impl;
    uint8_t buf[REQ_CAP];
    wb w = {buf, 0, sizeof buf, 0, 0, {0}, {0}};
    uint64_t ref = ++cc->ref;
    req_subscribe(&w, ref);
    if (conn_call(&cc->ws, &w, ref, 5000) != 0)
        bench_die("crmd: subscribe failed: %s", cc->ws.got_err);
}

static void crmd_peer_commits(peer *p, double out[3])
{
    commits cm = crmd_commits(proc.port);
    (void)p;
    out[0] = cm.batches;
    out[1] = cm.writes;
    out[2] = cm.secs;
}

static int crmd_peer_hooks(peer *p, double out[3])
{
    char *body = crmd_metrics(proc.port);
    int rc = crmd_metric(body, "crmd_after_hook_lag", &out[0]) == 0 &&
                     crmd_metric(body, "crmd_hook_runs_total", &out[1]) == 0 &&
                     crmd_metric(body, "crmd_feed_seq", &out[2]) == 0
                 ? 0
                 : -1;
    (void)p;
    free(body);
    return rc;
}

void peer_crmd_init(peer *p)
{
    memset(p, 0, sizeof *p);
    p->name = "crmd";
    p->pid = -1;
    p->start = crmd_peer_start;
    p->stop = crmd_peer_stop;
    p->open = crmd_peer_open;
    p->close = crmd_peer_close;
    p->send = crmd_peer_send;
    p->flush = crmd_peer_flush;
    p->read = crmd_peer_read;
    p->subscribe = crmd_peer_subscribe;
    p->commits = crmd_peer_commits;
    p->hooks = crmd_peer_hooks;
}
