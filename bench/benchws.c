/* benchws -- the WebSocket client and the crmd process that the benchmarks
 * driving a real crmd share (bench_ws, bench_peers).
 *
 * The client: RFC 6455 frames written here (masked, as a client must), one
 * connection per simulated client, blocking set-up (handshake, auth) and then
 * non-blocking reads and writes under the caller's epoll.  The requests: the
 * same ~250-byte contact as JSON or msgpack (wb_*, req_*), replies matched by
 * ref without decoding the whole message (reply_ref). */
#include "benchws.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "benchutil.h"

/* ---- request writer: the same requests as JSON or msgpack ---- */

static void wb_raw(wb *w, const void *s, size_t n)
{
    if (w->n + n > w->cap)
        bench_die("request larger than %zu bytes", w->cap);
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

void wb_open(wb *w, unsigned n, int arr)
{
    wb_elem(w);
    if (w->mp) {
        if (n >= 16)
            bench_die("wb: containers of at most 15");
        wb_byte(w, (uint8_t)((arr ? 0x90 : 0x80) | n));
    } else {
        wb_byte(w, arr ? '[' : '{');
    }
    w->arr[w->depth] = arr;
    w->cnt[w->depth] = 0;
    w->depth++;
}

void wb_close(wb *w)
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

void wb_key(wb *w, const char *k)
{
    if (!w->mp && w->cnt[w->depth - 1])
        wb_byte(w, ',');
    w->cnt[w->depth - 1]++;
    wb_strraw(w, k);
    if (!w->mp)
        wb_byte(w, ':');
}

void wb_str(wb *w, const char *s)
{
    wb_elem(w);
    wb_strraw(w, s);
}

void wb_uint(wb *w, uint64_t u)
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

void wb_kstr(wb *w, const char *k, const char *v)
{
    wb_key(w, k);
    wb_str(w, v);
}

const char *const bench_cities[BENCH_NCITIES] = {"Berlin", "Hamburg", "Munich", "Cologne", "Frankfurt",
                                     "Stuttgart", "Leipzig", "Dresden", "Hanover", "Nuremberg",
                                     "Bremen", "Essen", "Dortmund", "Bonn", "Mannheim",
                                     "Karlsruhe", "Freiburg", "Kiel", "Rostock", "Potsdam"};
static const char *const SOURCES[] = {"web", "referral", "event", "campaign", "partner", "store"};
const char *const contact_field_names[CONTACT_FIELDS] = {
    "name", "email", "phone", "job_title", "street", "city", "postcode", "country", "owner",
    "source", "language"};

const char *contact_field(const contact *c, int i)
{
    switch (i) {
    case 0: return c->name;
    case 1: return c->email;
    case 2: return c->phone;
    case 3: return c->job_title;
    case 4: return c->street;
    case 5: return c->city;
    case 6: return c->postcode;
    case 7: return c->country;
    case 8: return c->owner;
    case 9: return c->source;
    default: return c->language;
    }
}

static const char *const TITLES[] = {"Purchasing Manager", "Head of Operations", "Office Manager",
                                     "Procurement Lead", "Managing Director"};

/* {"ref":R,"op":"create","collection":"contacts","record":{11 fields}}: the
 * record is about 250 bytes of JSON (11 fields).  k makes email and name unique. */
void contact_make(contact *c, const char *tag, uint64_t k, const char *city)
{
    snprintf(c->name, sizeof c->name, "Contact %s%08" PRIu64, tag, k);
    snprintf(c->email, sizeof c->email, "%s%08" PRIu64 "@mail.example.com", tag, k);
    snprintf(c->phone, sizeof c->phone, "+49 30 %08" PRIu64, (k * 7919) % 100000000);
    c->job_title = TITLES[k % 5];
    snprintf(c->street, sizeof c->street, "Hauptstrasse %" PRIu64, k % 250 + 1);
    snprintf(c->city, sizeof c->city, "%s", city);
    snprintf(c->postcode, sizeof c->postcode, "%05" PRIu64, 10000 + k % 89999);
    c->country = "DE";
    snprintf(c->owner, sizeof c->owner, "rep-%02" PRIu64, k % 30);
    c->source = SOURCES[k % 6];
    c->language = "de";
}

int contact_key(const uint8_t *m, size_t n, const char *tag, size_t from, uint64_t *k,
                size_t *next)
{
    static const char dom[] = "@mail.example.com";
    size_t tl = strlen(tag);
    const uint8_t *p = m + from, *end = m + n;
    while (p < end && (p = memmem(p, (size_t)(end - p), dom, sizeof dom - 1))) {
        const uint8_t *d = p, *at = p;
        uint64_t v = 0, mul = 1;
        p += sizeof dom - 1;
        while (d > m && d[-1] >= '0' && d[-1] <= '9' && at - d < 19) {
            d--;
            v += (uint64_t)(*d - '0') * mul;
            mul *= 10;
        }
        if (d == at || (size_t)(d - m) < tl || memcmp(d - tl, tag, tl) != 0)
            continue;
        *k = v;
        *next = (size_t)(p - m);
        return 0;
    }
    return -1;
}

void req_begin(wb *w, unsigned n, uint64_t ref, const char *op)
{
    wb_open(w, n, 0);
    wb_key(w, "ref");
    wb_uint(w, ref);
    wb_kstr(w, "op", op);
}

void req_subscribe(wb *w, uint64_t ref)
{
    req_begin(w, 3, ref, "subscribe");
    wb_kstr(w, "collection", "contacts");
    wb_close(w);
}

void req_create(wb *w, uint64_t ref, const char *tag, uint64_t k, const char *city)
{
    contact c;
    contact_make(&c, tag, k, city);
    req_create_contact(w, ref, &c);
}

void req_create_contact(wb *w, uint64_t ref, const contact *c)
{
    req_begin(w, 4, ref, "create");
    wb_kstr(w, "collection", "contacts");
    wb_key(w, "record");
    wb_open(w, 11, 0);
    for (int i = 0; i < CONTACT_FIELDS; i++)
        wb_kstr(w, contact_field_names[i], contact_field(c, i));
    wb_close(w);
    wb_close(w);
}

void req_get(wb *w, uint64_t ref, const char *id)
{
    req_begin(w, 4, ref, "get");
    wb_kstr(w, "collection", "contacts");
    wb_kstr(w, "id", id);
    wb_close(w);
}

void query_city(char *out, size_t n, unsigned i)
{
    snprintf(out, n, "QC-%04u", i);
}

void req_query(wb *w, uint64_t ref, unsigned city)
{
    char c[16];
    query_city(c, sizeof c, city);
    req_query_city(w, ref, c);
}

void req_query_city(wb *w, uint64_t ref, const char *c)
{
    req_begin(w, 5, ref, "query");
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
int reply_ref(int mp, const uint8_t *m, size_t n, uint64_t *ref, int *ok)
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

size_t count_sub(const uint8_t *m, size_t n, const char *needle)
{
    size_t k = 0, nl = strlen(needle);
    const uint8_t *p = m, *end = m + n;
    while ((p = memmem(p, (size_t)(end - p), needle, nl))) {
        k++;
        p += nl;
    }
    return k;
}

/* The error message of a failed JSON or msgpack reply, roughly (for the log). */
void error_text(const uint8_t *m, size_t n, char *out, size_t cap)
{
    size_t j = 0;
    for (size_t i = 0; i < n && j + 1 < cap; i++)
        out[j++] = m[i] >= 0x20 && m[i] < 0x7f ? (char)m[i] : '.';
    out[j] = 0;
}

/* ---- connections ---- */

static void tx_reserve(conn *c, size_t more)
{
    if (c->txoff == c->txlen)
        c->txoff = c->txlen = 0;
    if (c->txlen + more > c->txcap) {
        c->txcap = (c->txlen + more) * 2;
        c->tx = bench_xrealloc(c->tx, c->txcap);
    }
}

/* Appends one masked client frame (RFC 6455 5.3) to the send buffer. */
void ws_frame(conn *c, int opcode, const uint8_t *p, size_t len)
{
    uint8_t *h;
    size_t hl = 0;
    uint32_t key = (uint32_t)bench_rng();
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

void ws_send_wb(conn *c, const wb *w)
{
    ws_frame(c, c->mp ? 2 : 1, w->p, w->n);
}

static void ep_mod(int ep, conn *c, int out)
{
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
    if (ep >= 0 && epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) != 0)
        bench_die("epoll_ctl: %s", strerror(errno));
    c->epout = out;
}

/* Writes what the send buffer holds; ep < 0: blocking (set-up). */
void conn_flush(conn *c, int ep)
{
    while (c->txoff < c->txlen && !c->closed) {
        int rc = bench_write_nb(c->fd, c->tx, &c->txoff, c->txlen);
        if (rc == 0)
            break;
        if (rc == 1) {
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

void conn_free(conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->rx);
    free(c->tx);
    free(c->msg);
    free(c->free_slots);
    free(c->slot_sent);
    fan_rx_free(&c->fan);
    memset(c, 0, sizeof *c);
    c->fd = -1;
}

/* Handles every complete frame in the receive buffer. */
void conn_frames(void *ud, conn *c, deliver_fn *deliver, int64_t now)
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
            bench_die("server sent a masked frame");
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
            bench_die("frame of %" PRIu64 " bytes", len);
        if (n - h < len) {
            if (h + len > c->rxcap) { /* a big frame: make room for all of it */
                memmove(c->rx, b, n);
                c->rxlen = n;
                off = 0;
                c->rxcap = h + (size_t)len;
                c->rx = bench_xrealloc(c->rx, c->rxcap);
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
            deliver(ud, c, pl, (size_t)len, now);
            continue;
        }
        if (c->msglen + len > c->msgcap) {
            c->msgcap = (c->msglen + (size_t)len) * 2;
            c->msg = bench_xrealloc(c->msg, c->msgcap);
        }
        memcpy(c->msg + c->msglen, pl, (size_t)len);
        c->msglen += (size_t)len;
        if (fin) {
            deliver(ud, c, c->msg, c->msglen, now);
            c->msglen = 0;
        }
    }
    if (off) {
        memmove(c->rx, c->rx + off, c->rxlen - off);
        c->rxlen -= off;
    }
}

/* Reads what is there (non-blocking) and handles it.  0, or -1 on EOF/error. */
int conn_read(void *ud, conn *c, deliver_fn *deliver)
{
    for (;;) {
        ssize_t got;
        if (c->rxlen == c->rxcap) {
            c->rxcap *= 2;
            c->rx = bench_xrealloc(c->rx, c->rxcap);
        }
        got = bench_read_nb(c->fd, c->rx + c->rxlen, c->rxcap - c->rxlen);
        if (got == 0)
            return 0;
        if (got < 0) {
            c->closed = 1;
            return -1;
        }
        int full = c->rxlen + (size_t)got == c->rxcap;
        c->rxlen += (size_t)got;
        conn_frames(ud, c, deliver, bench_now_ns());
        if (!full || c->closed)
            return c->closed ? -1 : 0;
    }
}

/* Set-up replies: the one waited for. */
static void setup_deliver(void *ud, conn *c, const uint8_t *m, size_t n, int64_t now)
{
    uint64_t ref;
    int ok;
    (void)ud;
    (void)now;
    if (reply_ref(c->mp, m, n, &ref, &ok) == 0 && ref == c->want_ref) {
        c->got = 1;
        c->got_ok = ok == 1;
        if (ok != 1)
            error_text(m, n, c->got_err, sizeof c->got_err);
    }
}

/* Blocking: sends the request in w and waits for its reply (ref). */
int conn_call(conn *c, const wb *w, uint64_t ref, int timeout_ms)
{
    int64_t until = bench_now_ns() + (int64_t)timeout_ms * 1000000;
    c->want_ref = ref;
    c->got = c->got_ok = 0;
    c->got_err[0] = 0;
    ws_send_wb(c, w);
    conn_flush(c, -1);
    for (;;) {
        struct pollfd pf = {c->fd, POLLIN, 0};
        ssize_t got;
        conn_frames(NULL, c, setup_deliver, bench_now_ns());
        if (c->got || c->closed)
            break;
        if (bench_now_ns() > until || poll(&pf, 1, 100) < 0)
            break;
        if (!(pf.revents & (POLLIN | POLLERR | POLLHUP)))
            continue;
        if (c->rxlen == c->rxcap) {
            c->rxcap *= 2;
            c->rx = bench_xrealloc(c->rx, c->rxcap);
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
void conn_open(conn *c, int port, const char *proto, const char *token, int window)
{
    char req[512];
    int len;
    memset(c, 0, sizeof *c);
    c->mp = proto && strcmp(proto, "crm.v1.msgpack") == 0;
    c->rxcap = RX_INIT;
    c->rx = bench_xmalloc(c->rxcap);
    if ((c->fd = bench_connect(port)) < 0)
        bench_die("connect 127.0.0.1:%d: %s", port, strerror(errno));
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
            bench_die("no handshake response from 127.0.0.1:%d", port);
        got = read(c->fd, c->rx + c->rxlen, c->rxcap - c->rxlen - 1);
        if (got <= 0)
            bench_die("handshake: connection closed by 127.0.0.1:%d", port);
        c->rxlen += (size_t)got;
        c->rx[c->rxlen] = 0;
        if ((end = memmem(c->rx, c->rxlen, "\r\n\r\n", 4))) {
            size_t head = (size_t)(end - c->rx) + 4;
            if (strncmp((char *)c->rx, "HTTP/1.1 101", 12) != 0)
                bench_die("handshake refused: %.60s", (char *)c->rx);
            memmove(c->rx, c->rx + head, c->rxlen - head);
            c->rxlen -= head;
            break;
        }
        if (c->rxlen + 1 >= c->rxcap)
            bench_die("handshake response too long");
    }
    if (token) {
        uint8_t buf[REQ_CAP];
        wb w = {buf, 0, sizeof buf, c->mp, 0, {0}, {0}};
        req_begin(&w, 3, 0, "auth");
        wb_kstr(&w, "token", token);
        wb_close(&w);
        if (conn_call(c, &w, 0, 5000) != 0)
            bench_die("auth failed: %s", c->got_err[0] ? c->got_err : "no reply");
    }
    if (window > 0) {
        c->free_slots = bench_xmalloc((size_t)window * sizeof *c->free_slots);
        c->slot_sent = bench_xcalloc((size_t)window, sizeof *c->slot_sent);
        for (int i = 0; i < window; i++)
            c->free_slots[c->nfree++] = window - 1 - i;
    }
}

void conn_nonblock(conn *c, int ep)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    int fl = fcntl(c->fd, F_GETFL);
    if (fl < 0 || fcntl(c->fd, F_SETFL, fl | O_NONBLOCK) != 0)
        bench_die("fcntl: %s", strerror(errno));
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0)
        bench_die("epoll_ctl add: %s", strerror(errno));
}
/* ---- crmd ---- */

void bench_crmd_token_create(bench_crmd_proc *e)
{
    char cmd[16384], line[512];
    FILE *f;
    e->token[0] = 0;
    snprintf(cmd, sizeof cmd, "'%s' token create --data '%s' --schemas '%s' --role admin", e->crmd,
             e->data, e->schemas);
    if (!(f = popen(cmd, "r")))
        bench_die("popen: %s", strerror(errno));
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (line[0])
            snprintf(e->token, sizeof e->token, "%s", line);
    }
    if (pclose(f) != 0 || !e->token[0])
        bench_die("`crmd token create` failed");
}

void bench_crmd_start(bench_crmd_proc *e)
{
    int64_t until = bench_now_ns() + 20 * (int64_t)1000000000;
    e->pid = fork();
    if (e->pid < 0)
        bench_die("fork: %s", strerror(errno));
    if (e->pid == 0) {
        int fd = open(e->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(e->crmd, e->crmd, "serve", "--data", e->data, "--schemas", e->schemas, "--listen",
              "127.0.0.1:0", "--rate", "10000000", "--scripts", e->scripts, "--plugins",
              e->plugins, (char *)NULL);
        _exit(127);
    }
    while (bench_now_ns() < until) {
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
        if (waitpid(e->pid, &st, WNOHANG) == e->pid) {
            e->pid = -1;
            bench_die("crmd exited at start (log: %s)", e->log);
        }
        usleep(20000);
    }
    bench_die("crmd did not report ready within 20 s (log: %s)", e->log);
}

/* Lines crmd logged besides its ready and stopped lines (copied to stderr). */
int bench_crmd_log_other(const bench_crmd_proc *e)
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

int bench_crmd_stop(bench_crmd_proc *e)
{
    int st = -1;
    if (e->pid <= 0)
        return -1;
    kill(e->pid, SIGTERM);
    if (waitpid(e->pid, &st, 0) != e->pid)
        st = -1;
    e->pid = -1;
    return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* crmd's /metrics, the whole body (malloc'd, NUL-terminated; empty when the
 * server did not answer within 3 s). */
char *crmd_metrics(int port)
{
    struct sockaddr_in sa = {0};
    char req[256], *buf = bench_xmalloc(1 << 20);
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
    return buf;
}

int crmd_metric(const char *body, const char *name, double *v)
{
    char key[128];
    const char *p;
    snprintf(key, sizeof key, "\n%s ", name);
    if (!(p = strstr(body, key)))
        return -1;
    *v = strtod(p + strlen(key), NULL);
    return 0;
}

/* crmd's /metrics: group commits, writes in them, seconds spent in them. */
static double metric(const char *body, const char *name)
{
    double v = 0;
    return crmd_metric(body, name, &v) == 0 ? v : 0;
}

commits crmd_commits(int port)
{
    commits cm = {0, 0, 0};
    char *buf = crmd_metrics(port);
    cm.batches = metric(buf, "crmd_commit_batch_size_count");
    cm.writes = metric(buf, "crmd_commit_batch_size_sum");
    cm.secs = metric(buf, "crmd_commit_seconds_sum");
    free(buf);
    return cm;
}
