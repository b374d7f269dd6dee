/* sys_redis -- Redis 7 as a peer: Debian's redis-server on a loopback port
 * in a folder of its own, appendonly yes + appendfsync always (the AOF is
 * fsynced before the replies of each event-loop pass go out), the function
 * library bench/peers/redis/crm.lua.  The wire: RESP written by hiredis's
 * redisFormatCommandArgv and parsed by its redisReader over a socket of our
 * own, so the load generator's epoll drives it like the others. */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "benchutil.h"
#include "peer.h"

typedef struct redis_conn {
    redisReader *rd;
    char *tx;
    size_t txlen, txoff, txcap;
} redis_conn;

typedef struct redis_state {
    int port;
    char log[4200];
} redis_state;

static redis_state rs;

static void redis_cmd(redisContext *ctx, redisReply **out, int argc, const char **argv,
                      const size_t *lens)
{
    redisReply *r = redisCommandArgv(ctx, argc, argv, lens);
    if (!r)
        bench_die("redis: %s: %s", argv[0], ctx->errstr);
    if (r->type == REDIS_REPLY_ERROR)
        bench_die("redis: %s: %s", argv[0], r->str);
    if (out)
        *out = r;
    else
        freeReplyObject(r);
}

static void redis_start(peer *p, const peer_cfg *cfg)
{
    char port[16], maxc[16], lib[4096], path[4200], *code = bench_xmalloc(1 << 16);
    redisContext *ctx;
    redisReply *info;
    long n;
    rs.port = peer_free_port();
    snprintf(port, sizeof port, "%d", rs.port);
    snprintf(maxc, sizeof maxc, "%d", cfg->max_conns + 64);
    snprintf(rs.log, sizeof rs.log, "%s/redis.log", cfg->dir);
    char *argv[] = {"redis-server", "--port", port, "--bind", "127.0.0.1", "--dir",
                    (char *)cfg->dir, "--appendonly", "yes", "--appendfsync", "always",
                    "--save", "", "--daemonize", "no", "--maxclients", maxc,
                    "--logfile", rs.log, NULL};
    p->pid = peer_spawn(argv, rs.log, NULL);
    peer_wait_port(rs.port, p->pid, 30, rs.log);

    snprintf(lib, sizeof lib, "%s/bench/peers/redis/crm.lua", cfg->src);
    if ((n = peer_read_file(lib, code, 1 << 16)) <= 0)
        bench_die("cannot read %s", lib);
    if (!(ctx = redisConnect("127.0.0.1", rs.port)) || ctx->err)
        bench_die("redis: connect: %s", ctx ? ctx->errstr : "out of memory");
    {
        const char *a[] = {"FUNCTION", "LOAD", "REPLACE", code};
        size_t l[] = {8, 4, 7, (size_t)n};
        redis_cmd(ctx, NULL, 4, a, l);
    }
    {
        const char *a[] = {"INFO", "server"};
        size_t l[] = {4, 6};
        const char *v;
        redis_cmd(ctx, &info, 2, a, l);
        v = info->type == REDIS_REPLY_STRING ? strstr(info->str, "redis_version:") : NULL;
        snprintf(p->version, sizeof p->version, "Redis %.*s", v ? (int)strcspn(v + 14, "\r\n") : 1,
                 v ? v + 14 : "?");
        freeReplyObject(info);
    }
    redisFree(ctx);
    free(code);
    snprintf(path, sizeof path, "%s", lib);
    snprintf(p->setup, sizeof p->setup,
             "`redis-server --appendonly yes --appendfsync always --save \"\"` (every write "
             "fsynced to the AOF before the replies go out), one function library "
             "(`bench/peers/redis/crm.lua`): create = `FCALL crm_create` (INCR for the id, HSET "
             "the contact, SADD to the city's set, HINCRBY the loyalty account, PUBLISH the "
             "record as JSON); get = `HGETALL`; query = `FCALL_RO crm_by_city` (10 ids from the "
             "city's set, HGETALL each); the subscriber: `SUBSCRIBE contacts`");
}

static int redis_stop(peer *p)
{
    int rc = peer_stop_pid(p->pid, SIGTERM, 30);
    p->pid = -1;
    return rc;
}

static void redis_open(peer *p, pconn *c)
{
    redis_conn *rc = bench_xcalloc(1, sizeof *rc);
    c->fd = bench_connect(rs.port);
    if (c->fd < 0)
        bench_die("redis: connect: %s", strerror(errno));
    if (!(rc->rd = redisReaderCreate()))
        bench_die("out of memory");
    c->impl = rc;
    c->p = p;
}

static void redis_close(pconn *c)
{
    redis_conn *rc = c->impl;
    if (!rc)
        return;
    redisReaderFree(rc->rd);
    free(rc->tx);
    free(rc);
    c->impl = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

static void redis_queue(redis_conn *rc, int argc, const char **argv, const size_t *lens)
{
    char *cmd;
    int len = redisFormatCommandArgv(&cmd, argc, argv, lens);
    if (len < 0)
        bench_die("out of memory");
    if (rc->txoff == rc->txlen)
        rc->txoff = rc->txlen = 0;
    if (rc->txlen + (size_t)len > rc->txcap) {
        rc->txcap = (rc->txlen + (size_t)len) * 2;
        rc->tx = bench_xrealloc(rc->tx, rc->txcap);
    }
    memcpy(rc->tx + rc->txlen, cmd, (size_t)len);
    rc->txlen += (size_t)len;
    redisFreeCommand(cmd);
}

static void redis_send(pconn *c, int op, const contact *ct, const char *arg)
{
    redis_conn *rc = c->impl;
    const char *argv[3 + CONTACT_FIELDS];
    size_t lens[3 + CONTACT_FIELDS];
    char key[64];
    int n = 0;
    if (op == PEER_CREATE) {
        argv[n++] = "FCALL";
        argv[n++] = "crm_create";
        argv[n++] = "0";
        for (int i = 0; i < CONTACT_FIELDS; i++)
            argv[n++] = contact_field(ct, i);
    } else if (op == PEER_GET) {
        snprintf(key, sizeof key, "contact:%s", arg);
        argv[n++] = "HGETALL";
        argv[n++] = key;
    } else {
        argv[n++] = "FCALL_RO";
        argv[n++] = "crm_by_city";
        argv[n++] = "0";
        argv[n++] = arg;
        argv[n++] = "10";
    }
    for (int i = 0; i < n; i++)
        lens[i] = strlen(argv[i]);
    redis_queue(rc, n, argv, lens);
}

static int redis_flush(pconn *c)
{
    redis_conn *rc = c->impl;
    return peer_flush_buf(c, rc->tx, &rc->txoff, &rc->txlen);
}

static void redis_reply(pconn *c, redisReply *x, peer_reply_fn *fn, void *ud)
{
    peer_reply r;
    memset(&r, 0, sizeof r);
    if (c->sub) { /* ["message", "contacts", payload] (or the subscribe ack) */
        r.push = 1;
        if (x->type == REDIS_REPLY_ARRAY && x->elements == 3 &&
            x->element[0]->type == REDIS_REPLY_STRING && !strcmp(x->element[0]->str, "message") &&
            x->element[2]->type == REDIS_REPLY_STRING) {
            r.body = (const uint8_t *)x->element[2]->str;
            r.len = x->element[2]->len;
        }
        fn(ud, c, &r);
        return;
    }
    switch (x->type) {
    case REDIS_REPLY_INTEGER: /* crm_create: the id */
        r.ok = 1;
        snprintf(r.id, sizeof r.id, "%lld", x->integer);
        break;
    case REDIS_REPLY_ARRAY: /* HGETALL: field, value, ...; crm_by_city: one per record */
        r.ok = 1;
        if (x->elements && x->element[0]->type == REDIS_REPLY_ARRAY)
            r.nrec = (long)x->elements;
        else
            r.nrec = x->elements >= 2 * CONTACT_FIELDS ? 1 : 0;
        break;
    case REDIS_REPLY_ERROR:
        snprintf(r.err, sizeof r.err, "%s", x->str);
        break;
    default:
        r.ok = 1;
        break;
    }
    fn(ud, c, &r);
}

static int redis_read(pconn *c, peer_reply_fn *fn, void *ud)
{
    redis_conn *rc = c->impl;
    char buf[65536];
    for (;;) {
        ssize_t got = bench_read_nb(c->fd, buf, sizeof buf);
        void *x;
        if (got == 0)
            return 0;
        if (got < 0) {
            c->closed = 1;
            return -1;
        }
        if (redisReaderFeed(rc->rd, buf, (size_t)got) != REDIS_OK)
            bench_die("redis: reader: %s", rc->rd->errstr);
        for (;;) {
            if (redisReaderGetReply(rc->rd, &x) != REDIS_OK)
                bench_die("redis: protocol error: %s", rc->rd->errstr);
            if (!x)
                break;
            redis_reply(c, x, fn, ud);
            freeReplyObject(x);
        }
        if ((size_t)got < sizeof buf)
            return 0;
    }
}

static void redis_subscribe(pconn *c)
{
    redis_conn *rc = c->impl;
    const char *argv[] = {"SUBSCRIBE", "contacts"};
    size_t lens[] = {9, 8};
    char buf[4096];
    void *x = NULL;
    redis_queue(rc, 2, argv, lens);
    while (redis_flush(c) == 1)
        usleep(1000);
    while (!x) { /* the ack: ["subscribe", "contacts", 1] */
        struct pollfd pf = {c->fd, POLLIN, 0};
        ssize_t got;
        if (poll(&pf, 1, 5000) <= 0)
            bench_die("redis: SUBSCRIBE: no reply");
        got = read(c->fd, buf, sizeof buf);
        if (got < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (got <= 0)
            bench_die("redis: SUBSCRIBE: connection closed");
        redisReaderFeed(rc->rd, buf, (size_t)got);
        if (redisReaderGetReply(rc->rd, &x) != REDIS_OK)
            bench_die("redis: SUBSCRIBE: protocol error");
    }
    freeReplyObject(x);
    c->sub = 1;
}

void peer_redis_init(peer *p)
{
    memset(p, 0, sizeof *p);
    p->name = "Redis";
    p->pid = -1;
    p->start = redis_start;
    p->stop = redis_stop;
    p->open = redis_open;
    p->close = redis_close;
    p->send = redis_send;
    p->flush = redis_flush;
    p->read = redis_read;
    p->subscribe = redis_subscribe;
}
