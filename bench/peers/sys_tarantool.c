/* sys_tarantool -- Tarantool as a peer: Debian 12's tarantool (2.6), one
 * instance on a loopback port in a folder of its own, wal_mode fsync, the
 * spaces, procedures and trigger of bench/peers/tarantool/init.lua.  Debian
 * packages no C connector, so the wire is Tarantool's binary protocol
 * (iproto: a msgpack length, a header map and a body map) written and read
 * here with msgpack-c: IPROTO_CALL of the Lua procedures, as the guest user
 * (granted execute by init.lua; loopback only). */
#include <errno.h>
#include <inttypes.h>
#include <msgpack.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "benchutil.h"
#include "peer.h"

/* iproto keys and codes (Tarantool's src/box/iproto_constants.h) */
#define IPROTO_REQUEST_TYPE 0x00
#define IPROTO_SYNC 0x01
#define IPROTO_CALL 0x0a
#define IPROTO_TUPLE 0x21
#define IPROTO_FUNCTION_NAME 0x22
#define IPROTO_DATA 0x30
#define IPROTO_ERROR 0x31
#define GREETING 128
#define POLL_WAIT 1.0 /* seconds a subscriber's long poll waits on the server */

typedef struct tnt_conn {
    uint8_t *rx, *tx;
    size_t rxlen, rxcap, txlen, txoff, txcap;
    uint64_t sync, since; /* since: the last change a subscriber has seen */
} tnt_conn;

static struct {
    int port;
    char log[4200];
} ts;

static void tnt_start(peer *p, const peer_cfg *cfg)
{
    char script[4200], port_file[4200], buf[64], greet[GREETING + 1];
    int64_t until;
    int fd;
    snprintf(script, sizeof script, "%s/bench/peers/tarantool/init.lua", cfg->src);
    snprintf(port_file, sizeof port_file, "%s/port", cfg->dir);
    snprintf(ts.log, sizeof ts.log, "%s/tarantool.out", cfg->dir);
    {
        char *argv[] = {"tarantool", script, (char *)cfg->dir, NULL};
        p->pid = peer_spawn(argv, ts.log, NULL);
    }
    until = bench_now_ns() + 60 * (int64_t)1000000000;
    while (peer_read_file(port_file, buf, sizeof buf) <= 0) {
        if (bench_now_ns() > until || kill(p->pid, 0) != 0)
            bench_die("tarantool did not start (logs in %s)", cfg->dir);
        usleep(20000);
    }
    ts.port = atoi(buf);
    peer_wait_port(ts.port, p->pid, 30, ts.log);
    if ((fd = bench_connect(ts.port)) < 0)
        bench_die("tarantool: connect: %s", strerror(errno));
    {
        size_t got = 0;
        while (got < GREETING) {
            ssize_t n = read(fd, greet + got, GREETING - got);
            if (n <= 0)
                bench_die("tarantool: no greeting");
            got += (size_t)n;
        }
        greet[strcspn(greet, " \n")] = 0; /* "Tarantool 2.6.0 (Binary) ..." */
        snprintf(p->version, sizeof p->version, "%.40s %.*s", greet,
                 (int)strcspn(greet + strlen(greet) + 1, " ") % 40, greet + strlen(greet) + 1);
    }
    close(fd);
    snprintf(p->setup, sizeof p->setup,
             "`tarantool bench/peers/tarantool/init.lua` (memtx, `wal_mode = 'fsync'`, "
             "`checkpoint_interval = 0`, `net_msg_max = 16384` for the long polls); create = "
             "`IPROTO_CALL crm_create` (insert with a sequence id; the space's on_replace trigger "
             "upserts the loyalty account in the same transaction and publishes the tuple on "
             "commit), get = `crm_get` (primary key), query = `crm_by_city` (the city index, "
             "limit 10); the subscriber long-polls `crm_changes(since)` (a fiber.cond; each "
             "reply carries every change since the last); iproto over msgpack-c, as guest");
}

static int tnt_stop(peer *p)
{
    int rc = peer_stop_pid(p->pid, SIGTERM, 30);
    p->pid = -1;
    return rc;
}

static void tnt_open(peer *p, pconn *c)
{
    tnt_conn *tc = bench_xcalloc(1, sizeof *tc);
    size_t got = 0;
    c->fd = bench_connect(ts.port);
    if (c->fd < 0)
        bench_die("tarantool: connect: %s", strerror(errno));
    tc->rxcap = 65536;
    tc->rx = bench_xmalloc(tc->rxcap);
    while (got < GREETING) { /* blocking still: the load generator makes it non-blocking */
        ssize_t n = read(c->fd, tc->rx + got, GREETING - got);
        if (n <= 0)
            bench_die("tarantool: no greeting");
        got += (size_t)n;
    }
    c->impl = tc;
    c->p = p;
}

static void tnt_close(pconn *c)
{
    tnt_conn *tc = c->impl;
    if (!tc)
        return;
    free(tc->rx);
    free(tc->tx);
    free(tc);
    c->impl = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    size_t l = strlen(s);
    msgpack_pack_str(pk, l);
    msgpack_pack_str_body(pk, s, l);
}

/* Queues IPROTO_CALL fn(args): the body's args array is written by the caller
 * between call_begin and call_end. */
static void call_begin(msgpack_sbuffer *sb, msgpack_packer *pk, tnt_conn *tc, const char *fn,
                       unsigned nargs)
{
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(pk, 2);
    msgpack_pack_uint8(pk, IPROTO_REQUEST_TYPE);
    msgpack_pack_uint8(pk, IPROTO_CALL);
    msgpack_pack_uint8(pk, IPROTO_SYNC);
    msgpack_pack_uint64(pk, ++tc->sync);
    msgpack_pack_map(pk, 2);
    msgpack_pack_uint8(pk, IPROTO_FUNCTION_NAME);
    pack_str(pk, fn);
    msgpack_pack_uint8(pk, IPROTO_TUPLE);
    msgpack_pack_array(pk, nargs);
}

static void call_end(msgpack_sbuffer *sb, tnt_conn *tc)
{
    size_t need = 5 + sb->size;
    if (tc->txoff == tc->txlen)
        tc->txoff = tc->txlen = 0;
    if (tc->txlen + need > tc->txcap) {
        tc->txcap = (tc->txlen + need) * 2;
        tc->tx = bench_xrealloc(tc->tx, tc->txcap);
    }
    tc->tx[tc->txlen] = 0xce; /* the length: msgpack uint32 */
    tc->tx[tc->txlen + 1] = (uint8_t)(sb->size >> 24);
    tc->tx[tc->txlen + 2] = (uint8_t)(sb->size >> 16);
    tc->tx[tc->txlen + 3] = (uint8_t)(sb->size >> 8);
    tc->tx[tc->txlen + 4] = (uint8_t)sb->size;
    memcpy(tc->tx + tc->txlen + 5, sb->data, sb->size);
    tc->txlen += need;
    msgpack_sbuffer_destroy(sb);
}

static void poll_changes(tnt_conn *tc)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    call_begin(&sb, &pk, tc, "crm_changes", 2);
    msgpack_pack_uint64(&pk, tc->since);
    msgpack_pack_double(&pk, POLL_WAIT);
    call_end(&sb, tc);
}

static void tnt_send(pconn *c, int op, const contact *ct, const char *arg)
{
    tnt_conn *tc = c->impl;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    if (op == PEER_CREATE) {
        call_begin(&sb, &pk, tc, "crm_create", CONTACT_FIELDS);
        for (int i = 0; i < CONTACT_FIELDS; i++)
            pack_str(&pk, contact_field(ct, i));
    } else if (op == PEER_GET) {
        call_begin(&sb, &pk, tc, "crm_get", 1);
        msgpack_pack_uint64(&pk, strtoull(arg, NULL, 10));
    } else {
        call_begin(&sb, &pk, tc, "crm_by_city", 1);
        pack_str(&pk, arg);
    }
    call_end(&sb, tc);
}

static int tnt_flush(pconn *c)
{
    tnt_conn *tc = c->impl;
    return peer_flush_buf(c, tc->tx, &tc->txoff, &tc->txlen);
}

static const msgpack_object *map_get(const msgpack_object *m, uint64_t key)
{
    if (m->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < m->via.map.size; i++)
        if (m->via.map.ptr[i].key.type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
            m->via.map.ptr[i].key.via.u64 == key)
            return &m->via.map.ptr[i].val;
    return NULL;
}

/* One response: header and body in f[0..n). */
static void tnt_response(pconn *c, const uint8_t *f, size_t n, peer_reply_fn *fn, void *ud)
{
    tnt_conn *tc = c->impl;
    msgpack_unpacked hu, bu;
    size_t off = 0, body_at;
    const msgpack_object *code, *data, *err;
    peer_reply r;
    memset(&r, 0, sizeof r);
    msgpack_unpacked_init(&hu);
    msgpack_unpacked_init(&bu);
    if (msgpack_unpack_next(&hu, (const char *)f, n, &off) != MSGPACK_UNPACK_SUCCESS)
        bench_die("tarantool: a response without a header");
    body_at = off;
    if (off < n && msgpack_unpack_next(&bu, (const char *)f, n, &off) != MSGPACK_UNPACK_SUCCESS)
        bench_die("tarantool: a response with a broken body");
    code = map_get(&hu.data, IPROTO_REQUEST_TYPE);
    data = map_get(&bu.data, IPROTO_DATA);
    if (!code || code->type != MSGPACK_OBJECT_POSITIVE_INTEGER || code->via.u64 != 0 || !data ||
        data->type != MSGPACK_OBJECT_ARRAY) {
        err = map_get(&bu.data, IPROTO_ERROR);
        if (err && err->type == MSGPACK_OBJECT_STR)
            snprintf(r.err, sizeof r.err, "%.*s", (int)err->via.str.size, err->via.str.ptr);
        else
            snprintf(r.err, sizeof r.err, "error code 0x%" PRIx64, code ? code->via.u64 : 0);
        r.push = c->sub;
        fn(ud, c, &r);
        if (c->sub)
            bench_die("tarantool: crm_changes failed: %s", r.err);
    } else if (c->sub) { /* [seq, [tuples]] */
        const msgpack_object *d = data->via.array.ptr;
        if (data->via.array.size != 2 || d[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            bench_die("tarantool: crm_changes: unexpected reply");
        tc->since = d[0].via.u64;
        poll_changes(tc);
        r.push = 1;
        if (d[1].type == MSGPACK_OBJECT_ARRAY && d[1].via.array.size) {
            r.body = f + body_at;
            r.len = n - body_at;
        }
        fn(ud, c, &r);
    } else {
        const msgpack_object *d = data->via.array.size ? data->via.array.ptr : NULL;
        r.ok = 1;
        if (d && d->type == MSGPACK_OBJECT_POSITIVE_INTEGER) { /* crm_create: the id */
            snprintf(r.id, sizeof r.id, "%" PRIu64, d->via.u64);
        } else if (d && d->type == MSGPACK_OBJECT_ARRAY) {
            /* crm_get: the tuple (its first field the id); crm_by_city: the tuples */
            if (d->via.array.size && d->via.array.ptr[0].type == MSGPACK_OBJECT_ARRAY)
                r.nrec = d->via.array.size;
            else
                r.nrec = d->via.array.size ? 1 : 0;
        }
        fn(ud, c, &r);
    }
    msgpack_unpacked_destroy(&hu);
    msgpack_unpacked_destroy(&bu);
}

static int tnt_read(pconn *c, peer_reply_fn *fn, void *ud)
{
    tnt_conn *tc = c->impl;
    for (;;) {
        size_t off = 0;
        ssize_t got;
        if (tc->rxlen == tc->rxcap) {
            tc->rxcap *= 2;
            tc->rx = bench_xrealloc(tc->rx, tc->rxcap);
        }
        got = bench_read_nb(c->fd, tc->rx + tc->rxlen, tc->rxcap - tc->rxlen);
        if (got == 0)
            return 0;
        if (got < 0) {
            c->closed = 1;
            return -1;
        }
        tc->rxlen += (size_t)got;
        while (tc->rxlen - off >= 5) {
            const uint8_t *b = tc->rx + off;
            size_t len;
            if (b[0] != 0xce)
                bench_die("tarantool: unexpected length prefix 0x%02x", b[0]);
            len = (size_t)b[1] << 24 | (size_t)b[2] << 16 | (size_t)b[3] << 8 | b[4];
            if (len > (64u << 20))
                bench_die("tarantool: a response of %zu bytes", len);
            if (tc->rxlen - off - 5 < len) {
                if (5 + len > tc->rxcap) {
                    tc->rxcap = 5 + len;
                    memmove(tc->rx, b, tc->rxlen - off);
                    tc->rxlen -= off;
                    off = 0;
                    tc->rx = bench_xrealloc(tc->rx, tc->rxcap);
                }
                break;
            }
            off += 5 + len;
            tnt_response(c, b + 5, len, fn, ud);
        }
        if (off) {
            memmove(tc->rx, tc->rx + off, tc->rxlen - off);
            tc->rxlen -= off;
        }
    }
}

static void tnt_seq_reply(void *ud, pconn *c, const peer_reply *r)
{
    (void)ud;
    (void)c;
    (void)r;
}

static void tnt_subscribe(pconn *c)
{
    tnt_conn *tc = c->impl;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    /* start from the current end: crm_changes(-1) returns at once with seq */
    c->sub = 1;
    tc->since = UINT32_MAX;
    call_begin(&sb, &pk, tc, "crm_changes", 2);
    msgpack_pack_int64(&pk, -1);
    msgpack_pack_double(&pk, 0);
    call_end(&sb, tc);
    while (tnt_flush(c) == 1)
        usleep(1000);
    while (tc->since == UINT32_MAX) {
        struct pollfd pf = {c->fd, POLLIN, 0};
        if (poll(&pf, 1, 5000) <= 0 || tnt_read(c, tnt_seq_reply, NULL) != 0)
            bench_die("tarantool: subscribe: no reply");
    }
}

void peer_tarantool_init(peer *p)
{
    memset(p, 0, sizeof *p);
    p->name = "Tarantool";
    p->pid = -1;
    p->start = tnt_start;
    p->stop = tnt_stop;
    p->open = tnt_open;
    p->close = tnt_close;
    p->send = tnt_send;
    p->flush = tnt_flush;
    p->read = tnt_read;
    p->subscribe = tnt_subscribe;
}
