/*
 * test_hostile -- hostile input end to end (issue 3 "Hostile input", reliability
 * plan R10): a real crmd, and for every case a connection that sends
 * something malformed, oversized, too deep or of the wrong type.  Each must
 * be answered with an error reply or a close (the exact code where the spec
 * or the brief fixes it), and after each case two other connections opened
 * and authenticated at the start (one JSON, one msgpack) must still get a
 * ping and a get answered: the server keeps serving everybody else.
 *
 * Malformed frames are written raw (ws_send_frame / ws_send_raw), so the
 * bytes are exactly the ones named here.
 *
 * R10 adds generated_frames (over a thousand deterministic cases: every
 * truncation of six requests in JSON and msgpack, bad UTF-8, reserved
 * opcodes and RSV bits, long and fragmented control frames, msgpack giant
 * counts, nesting up to 10^5), endless continuation frames (1009 at the
 * limit), empty-frame floods, 10^5 pings, bad Upgrade after a keep-alive
 * request, and a bound on the server's memory after all of it.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "codec.h"
#include "testutil.h"
#include "wsclient.h"

#define MIB (1u << 20)
/* a byte string literal and its length (it may hold NULs) */
#define B(s) s, sizeof(s) - 1

typedef struct hfix {
    crmd_proc p;
    char *admin;
    ws_client obs[2]; /* JSON and msgpack, authenticated, kept open throughout */
    long long ref;
    int cases;
    long rss0, hwm0; /* the server's RssAnon and VmHWM (KiB) before any case */
} hfix;

static hfix *F;

/* ---- helpers ---- */

static char *show(const crm_value *v)
{
    char *j = v ? crm_json_encode(v, NULL) : NULL;
    return j ? j : strdup("(none)");
}

static crm_value *call(ws_client *c, const char *fmt, ...) CRM_PRINTF(2, 3);
/* Sends {"ref": N, <fmt>} and returns the reply to N. */
static crm_value *call(ws_client *c, const char *fmt, ...)
{
    char buf[4096];
    va_list ap;
    long long ref = ++F->ref;
    int n = snprintf(buf, sizeof buf, "{\"ref\": %lld, ", ref);
    va_start(ap, fmt);
    vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    va_end(ap);
    assert_int_equal(ws_send_json(c, buf), 0);
    crm_value *r = ws_reply(c, ref, 10000, NULL);
    if (!r)
        fprintf(stderr, "no reply to %s\n", buf);
    assert_non_null(r);
    return r;
}

static int is_ok(const crm_value *r)
{
    const crm_value *ok = crm_map_get(r, "ok");
    return ok && ok->type == CRM_T_BOOL && ok->u.b;
}

static const crm_value *ok_result(const crm_value *r)
{
    if (!is_ok(r)) {
        char *j = show(r);
        fprintf(stderr, "expected ok, got %s\n", j);
        free(j);
    }
    assert_true(is_ok(r));
    return crm_map_get(r, "result");
}

static const char *err_code(const crm_value *r)
{
    return crm_map_str(crm_map_get(r, "error"), "code", "");
}

static void open_conn(ws_client *c, const char *proto, int authed)
{
    assert_int_equal(ws_connect(c, F->p.port, proto, NULL, NULL), 0);
    if (authed) {
        crm_value *r = call(c, "\"op\": \"auth\", \"token\": \"%s\"}", F->admin);
        assert_string_equal(crm_map_str(ok_result(r), "role", ""), "admin");
        crm_value_free(r);
    }
}

/* The server still serves the connections opened at the start, and the
 * process is alive. */
static void check_alive(void)
{
    int st;
    assert_int_equal(waitpid(F->p.pid, &st, WNOHANG), 0);
    for (int i = 0; i < 2; i++) {
        crm_value *r = call(&F->obs[i], "\"op\": \"ping\"}");
        assert_string_equal(ok_result(r)->u.str.s, "pong");
        crm_value_free(r);
        r = call(&F->obs[i], "\"op\": \"get\", \"collection\": \"companies\", \"id\": \"co_alive\"}");
        assert_string_equal(crm_map_str(ok_result(r), "name", ""), "Still Here");
        crm_value_free(r);
    }
}

/* n more cases are over: the bystanders must still be served. */
static void cases_done(int n)
{
    check_alive();
    F->cases += n;
}

/* What came back on c after a hostile message: an error reply (returns its
 * code, the reply in *reply when wanted) or a close (returns NULL, its code
 * in *close_code). */
static const char *answer(ws_client *c, int *close_code, crm_value **reply)
{
    static char code[64];
    crm_value *v = ws_recv(c, 10000, close_code);
    if (reply)
        *reply = NULL;
    if (!v)
        return NULL;
    snprintf(code, sizeof code, "%s", is_ok(v) ? "OK" : err_code(v));
    if (reply)
        *reply = v;
    else
        crm_value_free(v);
    return code;
}

/* A hostile message must be refused: an error reply (any code but OK) or a
 * close with 1007 or 1009 (spec: "an error reply (when a ref can be read) or
 * a close").  want_close, when non-zero, requires exactly that close: where
 * the brief fixes it (1 MiB + 1: 1009; a JSON array: 1007). */
static void expect_refused(ws_client *c, const char *what, int want_close)
{
    int code = 0;
    crm_value *reply;
    const char *got = answer(c, &code, &reply);
    if (got) {
        char *j = show(reply);
        fprintf(stderr, "# %s: error reply %s\n", what, j);
        free(j);
        crm_value_free(reply);
        if (want_close)
            fprintf(stderr, "%s: expected close %d, got reply %s\n", what, want_close, got);
        assert_int_equal(want_close, 0);
        assert_string_not_equal(got, "OK");
        return;
    }
    fprintf(stderr, "# %s: closed with %d\n", what, code);
    if (want_close)
        assert_int_equal(code, want_close);
    else
        assert_true(code == 1007 || code == 1009);
}

/* Sends one frame of raw bytes on a fresh connection and expects a refusal. */
static void frame_case(const char *proto, int authed, int opcode, const void *buf, size_t len,
                       const char *what, int want_close)
{
    ws_client c;
    open_conn(&c, proto, authed);
    ws_send_frame(&c, opcode, buf, len); /* the server may close before it has read it all */
    expect_refused(&c, what, want_close);
    ws_close(&c);
    cases_done(1);
}

/* ---- fixture ---- */

static int setup(void **state)
{
    const char *bin = getenv("CRMD_BIN"), *schemas = getenv("CRM_SCHEMAS");
    crm_value *r;
    assert_non_null(bin);
    assert_non_null(schemas);
    signal(SIGPIPE, SIG_IGN); /* the server may close while we still write */
    F = calloc(1, sizeof *F);
    assert_int_equal(crmd_start(&F->p, bin, schemas, NULL), 0);
    F->admin = crmd_token(&F->p, "admin");
    assert_non_null(F->admin);
    open_conn(&F->obs[0], "crm.v1.json", 1);
    open_conn(&F->obs[1], "crm.v1.msgpack", 1);
    r = call(&F->obs[0], "\"op\": \"create\", \"collection\": \"companies\", \"id\": \"co_alive\", "
                         "\"record\": {\"name\": \"Still Here\"}}");
    ok_result(r);
    crm_value_free(r);
    F->rss0 = crm_test_proc_kb(F->p.pid, "RssAnon");
    F->hwm0 = crm_test_proc_kb(F->p.pid, "VmHWM");
    *state = F;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    long rss = crm_test_proc_kb(F->p.pid, "RssAnon"), hwm = crm_test_proc_kb(F->p.pid, "VmHWM");
    fprintf(stderr, "# hostile: %d cases, the server answered the bystanders after each\n", F->cases);
    fprintf(stderr, "# server memory: RssAnon %ld -> %ld KiB (delta %ld), VmHWM %ld -> %ld KiB (delta %ld)\n",
            F->rss0, rss, rss - F->rss0, F->hwm0, hwm, hwm - F->hwm0);
    /* R10: bounded (the plan allows 16 MiB per connection; one hostile
     * connection is open at a time here, besides the two bystanders) */
    assert_true(rss > 0);
#ifndef CRM_TEST_SANITIZED
    assert_true(rss - F->rss0 < 16 * 1024);
#endif
    ws_close(&F->obs[0]);
    ws_close(&F->obs[1]);
    assert_int_equal(crmd_stop(&F->p), 0); /* a clean exit after all of it (and no leak under ASan) */
    free(F->admin);
    free(F);
    return 0;
}

/* ---- malformed JSON ---- */

static void json_truncated(void **state)
{
    (void)state;
    static const char m[] = "{\"ref\": 1, \"op\": \"pi";
    frame_case("crm.v1.json", 1, 1, m, sizeof m - 1, "truncated JSON", 0);
    frame_case("crm.v1.json", 0, 1, m, sizeof m - 1, "truncated JSON before auth", 0);
    frame_case(NULL, 1, 1, "{", 1, "a lone brace (no subprotocol)", 0);
}

static void json_trailing_garbage(void **state)
{
    (void)state;
    static const char m1[] = "{\"ref\": 1, \"op\": \"ping\"} garbage";
    static const char m2[] = "{\"ref\": 1, \"op\": \"ping\"}{\"ref\": 2, \"op\": \"ping\"}";
    frame_case("crm.v1.json", 1, 1, m1, sizeof m1 - 1, "trailing garbage", 0);
    frame_case("crm.v1.json", 1, 1, m2, sizeof m2 - 1, "two objects in one frame", 0);
}

static void json_bad_utf8(void **state)
{
    (void)state;
    static const char bad[] = "{\"ref\": 1, \"op\": \"ping\", \"x\": \"\xff\xfe\"}";
    static const char surrogate[] = "{\"ref\": 1, \"op\": \"ping\", \"x\": \"\xed\xa0\x80\"}";
    static const char overlong[] = "{\"ref\": 1, \"op\": \"ping\", \"x\": \"\xc0\xaf\"}";
    static const char cut[] = "{\"ref\": 1, \"op\": \"ping\", \"x\": \"\xe2\x82\"}";
    frame_case("crm.v1.json", 1, 1, bad, sizeof bad - 1, "bad UTF-8 in a text frame", 0);
    frame_case("crm.v1.json", 1, 1, surrogate, sizeof surrogate - 1, "UTF-8 surrogate in a text frame", 0);
    frame_case("crm.v1.json", 1, 1, overlong, sizeof overlong - 1, "overlong UTF-8 in a text frame", 0);
    frame_case("crm.v1.json", 1, 1, cut, sizeof cut - 1, "cut UTF-8 sequence in a text frame", 0);
    /* crm.v1.json speaks text frames only: a binary frame closes with 1003,
     * valid JSON in it or not (spec; it was decoded as JSON before) */
    frame_case("crm.v1.json", 1, 2, bad, sizeof bad - 1, "bad UTF-8 in a binary frame on JSON", 1003);
    static const char ping[] = "{\"ref\": 1, \"op\": \"ping\"}";
    frame_case("crm.v1.json", 1, 2, ping, sizeof ping - 1, "a JSON ping in a binary frame", 1003);
    frame_case("crm.v1.json", 0, 2, ping, sizeof ping - 1, "a JSON ping in a binary frame before auth",
               1003);
}

static void json_non_finite_numbers(void **state)
{
    (void)state;
    static const char *const m[] = {
        "{\"ref\": 1, \"op\": \"ping\", \"x\": NaN}",
        "{\"ref\": 1, \"op\": \"ping\", \"x\": Infinity}",
        "{\"ref\": 1, \"op\": \"ping\", \"x\": -Infinity}",
        "{\"ref\": 1, \"op\": \"ping\", \"x\": 1e400}",
        "{\"ref\": 1, \"op\": \"ping\", \"x\": 99999999999999999999999}",
    };
    for (size_t i = 0; i < sizeof m / sizeof *m; i++)
        frame_case("crm.v1.json", 1, 1, m[i], strlen(m[i]), m[i], 0);
}

static void json_not_an_object(void **state)
{
    (void)state;
    static const char *const m[] = {"[{\"ref\": 1, \"op\": \"ping\"}]", "42", "\"ping\"", "null", ""};
    for (size_t i = 0; i < sizeof m / sizeof *m; i++)
        /* an array: close 1007 (brief); the others any refusal */
        frame_case("crm.v1.json", 1, 1, m[i], strlen(m[i]), m[i][0] ? m[i] : "an empty frame",
                   i == 0 ? 1007 : 0);
}

/* A NUL inside a name the kernel takes as a C string: refused, never cut
 * short ("X\u0000evil" was stored as X; "ping\u0000junk" answered as ping). */
static void nul_in_names(void **state)
{
    ws_client c;
    crm_value *r;
    (void)state;
    open_conn(&c, "crm.v1.json", 1);
    r = call(&c, "\"op\": \"ping\\u0000junk\"}");
    assert_string_equal(err_code(r), "BAD_REQUEST");
    assert_non_null(strstr(crm_map_str(crm_map_get(r, "error"), "message", ""), "NUL"));
    crm_value_free(r);
    r = call(&c, "\"op\": \"create\", \"collection\": \"contacts\", \"record\": {\"id\": "
                 "\"Xnul\\u0000evil\", \"name\": \"N\"}}");
    assert_string_equal(err_code(r), "BAD_REQUEST");
    crm_value_free(r);
    r = call(&c, "\"op\": \"get\", \"collection\": \"contacts\", \"id\": \"Xnul\"}");
    assert_string_equal(err_code(r), "NOT_FOUND"); /* nothing was stored under the cut name */
    crm_value_free(r);
    r = call(&c, "\"op\": \"tx\", \"ops\": [{\"op\": \"create\\u0000x\", \"collection\": "
                 "\"contacts\", \"record\": {\"name\": \"T\"}}]}");
    assert_string_equal(err_code(r), "BAD_REQUEST");
    crm_value_free(r);
    r = call(&c, "\"op\": \"get\", \"collection\": \"contacts\\u0000x\", \"id\": \"a\"}");
    assert_string_equal(err_code(r), "BAD_REQUEST");
    crm_value_free(r);
    ws_close(&c);
    check_alive();
}

/* Guessing tokens: five refused auths on one connection, each answered,
 * then the connection is closed with 1008 (1,000 tries took 90 ms before). */
static void failed_auths_close_the_connection(void **state)
{
    ws_client c;
    int code = 0;
    (void)state;
    open_conn(&c, "crm.v1.json", 0);
    for (int i = 0; i < 5; i++) {
        crm_value *r;
        const char *got;
        char buf[128];
        snprintf(buf, sizeof buf, "{\"ref\": %d, \"op\": \"auth\", \"token\": \"crm_guess%d\"}", i + 1, i);
        assert_int_equal(ws_send_json(&c, buf), 0);
        got = answer(&c, &code, &r);
        assert_non_null(got);
        assert_string_equal(got, "UNAUTHENTICATED");
        crm_value_free(r);
    }
    assert_null(answer(&c, &code, NULL)); /* then the close */
    assert_int_equal(code, 1008);
    ws_close(&c);
    /* a new connection with the right token still works */
    open_conn(&c, "crm.v1.json", 1);
    ws_close(&c);
    check_alive();
}

/* ---- malformed msgpack ---- */

static void msgpack_malformed(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        const char *bytes;
        size_t len;
    } m[] = {
        /* {"ref": 1, "op": <missing>} */
        {"truncated", B("\x82\xa3ref\x01\xa2op")},
        {"truncated inside a string", B("\x82\xa3ref\x01\xa2op\xa4pi")},
        {"array32 claiming 100 million items", B("\xdd\x05\xf5\xe1\x00")},
        {"map32 claiming 4 billion pairs", B("\xdf\xff\xff\xff\xff")},
        {"map32 huge count after a valid pair", B("\xdf\x7f\xff\xff\xff\xa3ref\x01")},
        {"str32 claiming 4 GiB", B("\x81\xa3ref\xdb\xff\xff\xff\xff")},
        {"str32 key claiming 4 GiB", B("\x81\xdb\xff\xff\xff\xff")},
        {"ext type (fixext1)", B("\x82\xa3ref\x01\xa2op\xd4\x01\x00")},
        {"ext32 claiming 4 GiB", B("\x82\xa3ref\x01\xa2op\xc9\xff\xff\xff\xff\x01")},
        {"bin8", B("\x82\xa3ref\x01\xa2op\xc4\x04ping")},
        {"non-string map key", B("\x82\x01\x02\xa2op\xa4ping")},
        {"nil map key", B("\x82\xc0\x02\xa2op\xa4ping")},
        {"bad UTF-8 in a string", B("\x82\xa3ref\x01\xa2op\xa2\xff\xfe")},
        {"NaN float64", B("\x83\xa3ref\x01\xa2op\xa4ping\xa1x\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00")},
        {"uint64 above int64", B("\x82\xa3ref\xcf\xff\xff\xff\xff\xff\xff\xff\xff\xa2op\xa4ping")},
        {"duplicate keys", B("\x83\xa3ref\x01\xa2op\xa4ping\xa2op\xa4ping")},
        {"trailing bytes after the map", B("\x82\xa3ref\x01\xa2op\xa4ping\xc0")},
        {"never-used byte 0xc1", B("\xc1")},
        {"a top-level array", B("\x91\x82\xa3ref\x01\xa2op\xa4ping")},
        {"a top-level integer", B("\x2a")},
    };
    for (size_t i = 0; i < sizeof m / sizeof *m; i++) {
        char what[128];
        snprintf(what, sizeof what, "msgpack: %s", m[i].what);
        frame_case("crm.v1.msgpack", 1, 2, m[i].bytes, m[i].len, what, 0);
    }
    /* before auth too: the pre-pass runs before anything else */
    frame_case("crm.v1.msgpack", 0, 2, "\xdd\x05\xf5\xe1\x00", 5, "msgpack: array32 before auth", 0);
}

/* ---- frames and sizes ---- */

/* A header declaring 2^40 bytes, then nothing: the server must not reserve
 * them, and closing the socket mid-frame must be harmless. */
static void huge_declared_length(void **state)
{
    (void)state;
    for (int authed = 0; authed < 2; authed++) {
        ws_client c;
        int code = 0;
        uint8_t hdr[14] = {0x81, 0x80 | 127, 0, 0, 0x01, 0, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78};
        open_conn(&c, "crm.v1.json", authed);
        assert_int_equal(ws_send_raw(&c, hdr, sizeof hdr), 0); /* and not one byte of payload */
        /* the server may close at once (declared length over the limit) or wait */
        crm_value *v = ws_recv(&c, 500, &code);
        fprintf(stderr, "# 2^40-byte frame header%s: %s %d\n", authed ? " after auth" : "",
                v ? "reply" : code ? "closed with" : "no answer within 0.5 s, closing;", code);
        assert_null(v);
        ws_close(&c);
        cases_done(1);
    }
    /* and a 64-bit length with the top bit set (RFC 6455 forbids it) */
    {
        ws_client c;
        int code = 0;
        uint8_t hdr[14] = {0x81, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0x10, 0x12, 0x34, 0x56, 0x78};
        open_conn(&c, "crm.v1.json", 1);
        assert_int_equal(ws_send_raw(&c, hdr, sizeof hdr), 0);
        crm_value *v = ws_recv(&c, 2000, &code);
        fprintf(stderr, "# 64-bit frame length with the top bit set: %s %d\n",
                v ? "reply" : code ? "closed with" : "no close frame (TCP closed or silent)", code);
        assert_null(v);
        ws_close(&c);
        cases_done(1);
    }
}

/* {"ref":N,"op":"ping","pad":"aaa..."} of exactly len bytes. */
static char *ping_of_size(long long ref, size_t len)
{
    char head[64];
    int hn = snprintf(head, sizeof head, "{\"ref\":%lld,\"op\":\"ping\",\"pad\":\"", ref);
    char *m = malloc(len + 1);
    assert_true(len > (size_t)hn + 2);
    memcpy(m, head, (size_t)hn);
    memset(m + hn, 'a', len - (size_t)hn - 2);
    memcpy(m + len - 2, "\"}", 2);
    m[len] = 0;
    return m;
}

/* The same in msgpack: a map of ref, op and a str32 pad. */
static uint8_t *mp_ping_of_size(long long ref, size_t len)
{
    uint8_t *m = malloc(len);
    size_t h = 0, pad;
    assert_true(ref >= 0 && ref < 128);
    m[h++] = 0x83;
    memcpy(m + h, "\xa3ref", 4), h += 4;
    m[h++] = (uint8_t)ref;
    memcpy(m + h, "\xa2op\xa4ping", 8), h += 8;
    memcpy(m + h, "\xa3pad\xdb", 5), h += 5;
    pad = len - h - 4;
    m[h++] = (uint8_t)(pad >> 24);
    m[h++] = (uint8_t)(pad >> 16);
    m[h++] = (uint8_t)(pad >> 8);
    m[h++] = (uint8_t)pad;
    memset(m + h, 'a', pad);
    return m;
}

static void expect_pong(ws_client *c, long long ref, const char *what)
{
    int code = 0;
    crm_value *r = ws_recv(c, 20000, &code);
    if (!r)
        fprintf(stderr, "%s: no answer (close %d)\n", what, code);
    assert_non_null(r);
    assert_int_equal(crm_map_int(r, "ref", -1), ref);
    assert_string_equal(ok_result(r)->u.str.s, "pong");
    crm_value_free(r);
}

static void message_size_limit(void **state)
{
    (void)state;
    ws_client c;
    char *m;
    /* exactly the limit, and one byte under it: answered */
    open_conn(&c, "crm.v1.json", 1);
    m = ping_of_size(101, MIB);
    assert_int_equal(ws_send_frame(&c, 1, m, MIB), 0);
    free(m);
    expect_pong(&c, 101, "a message of exactly 1 MiB");
    m = ping_of_size(102, MIB - 1);
    assert_int_equal(ws_send_frame(&c, 1, m, MIB - 1), 0);
    free(m);
    expect_pong(&c, 102, "a message of 1 MiB - 1");
    /* one byte over: 1009 */
    m = ping_of_size(103, MIB + 1);
    ws_send_frame(&c, 1, m, MIB + 1);
    free(m);
    expect_refused(&c, "a message of 1 MiB + 1", 1009);
    ws_close(&c);
    cases_done(3);

    /* the same in msgpack */
    open_conn(&c, "crm.v1.msgpack", 1);
    uint8_t *b = mp_ping_of_size(104, MIB);
    assert_int_equal(ws_send_frame(&c, 2, b, MIB), 0);
    free(b);
    expect_pong(&c, 104, "a msgpack message of exactly 1 MiB");
    b = mp_ping_of_size(105, MIB + 1);
    ws_send_frame(&c, 2, b, MIB + 1);
    free(b);
    expect_refused(&c, "a msgpack message of 1 MiB + 1", 1009);
    ws_close(&c);
    cases_done(2);

    /* over the limit in fragments (each one small): 1009 all the same */
    open_conn(&c, "crm.v1.json", 1);
    {
        size_t chunk = 256u << 10, sent = 0, total = MIB + 1;
        uint8_t *buf = malloc(chunk), mask[4] = {1, 2, 3, 4};
        memset(buf, ' ', chunk);
        buf[0] = '{';
        while (sent < total) {
            size_t n = total - sent < chunk ? total - sent : chunk;
            uint8_t hdr[14];
            size_t h = 0;
            hdr[h++] = (uint8_t)((sent + n == total ? 0x80 : 0) | (sent == 0 ? 1 : 0));
            hdr[h++] = 0x80 | 127;
            for (int i = 7; i >= 0; i--)
                hdr[h++] = (uint8_t)((uint64_t)n >> (8 * i));
            memcpy(hdr + h, mask, 4), h += 4;
            uint8_t *x = malloc(n);
            for (size_t i = 0; i < n; i++)
                x[i] = (uint8_t)((sent == 0 ? buf[i] : ' ') ^ mask[i & 3]);
            if (ws_send_raw(&c, hdr, h) != 0 || ws_send_raw(&c, x, n) != 0) {
                free(x);
                break;
            }
            free(x);
            sent += n;
        }
        free(buf);
    }
    expect_refused(&c, "1 MiB + 1 in four fragments", 1009);
    ws_close(&c);
    cases_done(1);
}

/* ---- nesting ---- */

/* {"ref":N,"op":"ping","x":[[...]]}: depth counts the outer object. */
static char *json_nested(long long ref, int depth)
{
    size_t n = 0;
    char *m = malloc(64 + 2 * (size_t)depth);
    n += (size_t)sprintf(m, "{\"ref\":%lld,\"op\":\"ping\",\"x\":", ref);
    for (int i = 1; i < depth; i++)
        m[n++] = '[';
    for (int i = 1; i < depth; i++)
        m[n++] = ']';
    m[n++] = '}';
    m[n] = 0;
    return m;
}

static uint8_t *mp_nested(long long ref, int depth, size_t *len)
{
    uint8_t *m = malloc(32 + (size_t)depth);
    size_t n = 0;
    m[n++] = 0x83;
    memcpy(m + n, "\xa3ref", 4), n += 4;
    m[n++] = (uint8_t)ref;
    memcpy(m + n, "\xa2op\xa4ping\xa1x", 10), n += 10;
    for (int i = 2; i < depth; i++)
        m[n++] = 0x91; /* an array of one */
    m[n++] = 0x90;     /* the innermost, empty */
    *len = n;
    return m;
}

static void nesting(void **state)
{
    (void)state;
    ws_client c;
    static const int depths[] = {200, 33, 32};
    for (size_t i = 0; i < 3; i++) {
        int d = depths[i];
        char what[64];
        /* JSON */
        open_conn(&c, "crm.v1.json", 1);
        char *m = json_nested(7, d);
        ws_send_frame(&c, 1, m, strlen(m));
        free(m);
        snprintf(what, sizeof what, "JSON nested %d deep", d);
        if (d <= 32)
            expect_pong(&c, 7, what);
        else
            expect_refused(&c, what, 0);
        ws_close(&c);
        cases_done(1);
        /* msgpack */
        size_t len;
        uint8_t *b = mp_nested(7, d, &len);
        open_conn(&c, "crm.v1.msgpack", 1);
        ws_send_frame(&c, 2, b, len);
        free(b);
        snprintf(what, sizeof what, "msgpack nested %d deep", d);
        if (d <= 32)
            expect_pong(&c, 7, what);
        else
            expect_refused(&c, what, 0);
        ws_close(&c);
        cases_done(1);
    }
    /* deep but inside a string: not nesting at all */
    open_conn(&c, "crm.v1.json", 1);
    {
        char m[600];
        int n = snprintf(m, sizeof m, "{\"ref\":8,\"op\":\"ping\",\"x\":\"");
        memset(m + n, '[', 400);
        memcpy(m + n + 400, "\"}", 3);
        assert_int_equal(ws_send_frame(&c, 1, m, strlen(m)), 0);
        expect_pong(&c, 8, "400 brackets inside a string");
    }
    ws_close(&c);
    cases_done(1);
}

/* ---- envelopes and arguments ---- */

static void unknown_op_and_bad_envelope(void **state)
{
    (void)state;
    ws_client c;
    crm_value *r;
    open_conn(&c, "crm.v1.json", 1);
    r = call(&c, "\"op\": \"frobnicate\"}");
    assert_string_equal(err_code(r), "BAD_REQUEST");
    crm_value_free(r);
    r = call(&c, "\"op\": \"\"}");
    assert_string_equal(err_code(r), "BAD_REQUEST");
    crm_value_free(r);
    r = call(&c, "\"op\": 5}");
    assert_string_equal(err_code(r), "BAD_REQUEST");
    crm_value_free(r);
    r = call(&c, "\"nothing\": true}");
    assert_string_equal(err_code(r), "BAD_REQUEST");
    crm_value_free(r);
    /* a ref of the wrong type: BAD_REQUEST, and no ref to echo */
    static const char *const refs[] = {"{\"a\": 1}", "[1]", "1.5", "true", "null"};
    for (size_t i = 0; i < sizeof refs / sizeof *refs; i++) {
        char m[128];
        int code = 0;
        snprintf(m, sizeof m, "{\"ref\": %s, \"op\": \"ping\"}", refs[i]);
        assert_int_equal(ws_send_json(&c, m), 0);
        r = ws_recv(&c, 10000, &code);
        assert_non_null(r);
        /* "an integer or a string": null is neither */
        if (strcmp(err_code(r), "BAD_REQUEST") != 0) {
            char *j = show(r);
            fprintf(stderr, "ref %s: expected BAD_REQUEST, got %s\n", refs[i], j);
            free(j);
        }
        assert_string_equal(err_code(r), "BAD_REQUEST");
        assert_non_null(crm_map_get(r, "ref"));
        assert_int_equal(crm_map_get(r, "ref")->type, CRM_T_NIL);
        crm_value_free(r);
    }
    /* still usable */
    r = call(&c, "\"op\": \"ping\"}");
    ok_result(r);
    crm_value_free(r);
    ws_close(&c);
    cases_done(9);
}

/* Every argument of every op given a value of the wrong type: BAD_REQUEST,
 * exactly, with the ref echoed, and nothing written. */
static const char *const wrong_types[] = {
    "\"op\": \"get\", \"collection\": 5, \"id\": \"co_alive\"",
    "\"op\": \"get\", \"collection\": [\"companies\"], \"id\": \"co_alive\"",
    "\"op\": \"get\", \"collection\": \"companies\", \"id\": {}",
    "\"op\": \"get\", \"collection\": \"companies\", \"id\": 5",
    "\"op\": \"get\", \"collection\": \"companies\", \"id\": \"\"",
    "\"op\": \"get\", \"collection\": \"companies\"",
    "\"op\": \"get\", \"collection\": \"companies\", \"id\": \"co_\\u0000alive\"",
    "\"op\": \"get\", \"collection\": \"comp\\u0000anies\", \"id\": \"co_alive\"",
    "\"op\": \"create\", \"collection\": \"companies\", \"record\": {\"name\": \"x\"}, \"id\": \"a b\"",
    "\"op\": \"create\", \"collection\": 5, \"record\": {\"name\": \"x\"}",
    "\"op\": \"create\", \"collection\": \"companies\", \"record\": \"x\"",
    "\"op\": \"create\", \"collection\": \"companies\", \"record\": [{\"name\": \"x\"}]",
    "\"op\": \"create\", \"collection\": \"companies\", \"record\": {\"name\": \"x\"}, \"id\": {}",
    "\"op\": \"create\", \"collection\": \"companies\", \"record\": {\"name\": \"x\"}, \"id\": 7",
    "\"op\": \"update\", \"collection\": 5, \"id\": \"co_alive\", \"patch\": {\"name\": \"x\"}",
    "\"op\": \"update\", \"collection\": \"companies\", \"id\": {}, \"patch\": {\"name\": \"x\"}",
    "\"op\": \"update\", \"collection\": \"companies\", \"id\": \"co_alive\", \"patch\": []",
    "\"op\": \"update\", \"collection\": \"companies\", \"id\": \"co_alive\", \"patch\": \"x\"",
    "\"op\": \"update\", \"collection\": \"companies\", \"id\": \"co_alive\", \"patch\": {\"name\": \"x\"}, \"if_rev\": \"1\"",
    "\"op\": \"update\", \"collection\": \"companies\", \"id\": \"co_alive\", \"patch\": {\"name\": \"x\"}, \"if_rev\": 1.5",
    "\"op\": \"update\", \"collection\": \"companies\", \"id\": \"co_alive\", \"patch\": {\"name\": \"x\"}, \"if_rev\": 0",
    "\"op\": \"update\", \"collection\": \"companies\", \"id\": \"co_alive\", \"patch\": {\"name\": \"x\"}, \"if_rev\": -1",
    "\"op\": \"delete\", \"collection\": 5, \"id\": \"co_alive\"",
    "\"op\": \"delete\", \"collection\": \"companies\", \"id\": {}",
    "\"op\": \"delete\", \"collection\": \"companies\", \"id\": \"co_alive\", \"if_rev\": \"1\"",
    "\"op\": \"delete\", \"collection\": \"companies\", \"id\": \"co_alive\", \"if_rev\": [1]",
    "\"op\": \"query\", \"collection\": 5",
    "\"op\": \"query\", \"collection\": \"companies\", \"where\": 3",
    "\"op\": \"query\", \"collection\": \"companies\", \"where\": [\"name\"]",
    "\"op\": \"query\", \"collection\": \"companies\", \"where\": \"name\"",
    "\"op\": \"query\", \"collection\": \"companies\", \"order_by\": 1",
    "\"op\": \"query\", \"collection\": \"companies\", \"order_by\": [\"name\"]",
    "\"op\": \"query\", \"collection\": \"companies\", \"limit\": -1",
    "\"op\": \"query\", \"collection\": \"companies\", \"limit\": 0",
    "\"op\": \"query\", \"collection\": \"companies\", \"limit\": 1001",
    "\"op\": \"query\", \"collection\": \"companies\", \"limit\": \"10\"",
    "\"op\": \"query\", \"collection\": \"companies\", \"limit\": 2.5",
    "\"op\": \"query\", \"collection\": \"companies\", \"where\": {\"name\": {\"in\": 5}}",
    "\"op\": \"query\", \"collection\": \"companies\", \"where\": {\"name\": {\"gt\": [1]}}",
    "\"op\": \"query\", \"collection\": \"companies\", \"where\": {\"name\": {\"prefix\": 5}}",
    "\"op\": \"query\", \"collection\": \"companies\", \"where\": {\"name\": {}}",
    "\"op\": \"query\", \"collection\": \"companies\", \"where\": {\"name\": 5}",
    "\"op\": \"query\", \"collection\": \"companies\", \"order_by\": \"\"",
    "\"op\": \"query\", \"collection\": \"companies\", \"after\": 7",
    "\"op\": \"query\", \"collection\": \"companies\", \"after\": \"garbage\"",
    "\"op\": \"query\", \"collection\": \"companies\", \"after\": {}",
    "\"op\": \"aggregate\", \"collection\": 5",
    "\"op\": \"aggregate\", \"collection\": \"companies\", \"where\": 3",
    "\"op\": \"aggregate\", \"collection\": \"companies\", \"group_by\": []",
    "\"op\": \"aggregate\", \"collection\": \"companies\", \"group_by\": 5",
    "\"op\": \"aggregate\", \"collection\": \"companies\", \"group_by\": \"\"",
    "\"op\": \"aggregate\", \"collection\": \"companies\", \"metrics\": \"count\"",
    "\"op\": \"aggregate\", \"collection\": \"companies\", \"metrics\": [5]",
    "\"op\": \"aggregate\", \"collection\": \"companies\", \"metrics\": {}",
    "\"op\": \"subscribe\", \"collection\": 5",
    "\"op\": \"subscribe\", \"collection\": \"companies\", \"where\": 3",
    "\"op\": \"subscribe\", \"collection\": \"companies\", \"since\": -1",
    "\"op\": \"subscribe\", \"collection\": \"companies\", \"since\": \"1\"",
    "\"op\": \"subscribe\", \"collection\": \"companies\", \"since\": 1.5",
    "\"op\": \"subscribe\", \"collection\": \"companies\", \"snapshot\": \"yes\"",
    "\"op\": \"subscribe\", \"collection\": \"companies\", \"snapshot\": 1",
    "\"op\": \"subscribe\", \"collection\": \"companies\", \"aggregate\": \"x\"",
    "\"op\": \"subscribe\", \"collection\": \"companies\", \"aggregate\": {\"metrics\": \"count\"}",
    "\"op\": \"subscribe\", \"collection\": \"companies\", \"aggregate\": {\"group_by\": []}",
    "\"op\": \"unsubscribe\", \"sub\": \"x\"",
    "\"op\": \"unsubscribe\", \"sub\": {}",
    "\"op\": \"unsubscribe\"",
    "\"op\": \"tx\", \"ops\": {}",
    "\"op\": \"tx\", \"ops\": \"x\"",
    "\"op\": \"tx\", \"ops\": []",
    "\"op\": \"tx\", \"ops\": [5]",
    "\"op\": \"tx\"",
    "\"op\": \"tx\", \"ops\": [{\"op\": \"get\", \"collection\": \"companies\", \"id\": \"co_alive\"}]",
    "\"op\": \"tx\", \"ops\": [{\"op\": 5, \"collection\": \"companies\", \"id\": \"co_alive\"}]",
    "\"op\": \"tx\", \"ops\": [{\"op\": \"create\", \"collection\": 5, \"record\": {\"name\": \"x\"}}]",
    "\"op\": \"tx\", \"ops\": [{\"op\": \"create\", \"collection\": \"companies\", \"record\": \"x\"}]",
    "\"op\": \"tx\", \"ops\": [{\"op\": \"create\", \"collection\": \"companies\", \"record\": {\"name\": \"x\"}, \"id\": {}}]",
    "\"op\": \"tx\", \"ops\": [{\"op\": \"update\", \"collection\": \"companies\", \"id\": {}, \"patch\": {}}]",
    "\"op\": \"tx\", \"ops\": [{\"op\": \"update\", \"collection\": \"companies\", \"id\": \"co_alive\", \"patch\": []}]",
    "\"op\": \"tx\", \"ops\": [{\"op\": \"update\", \"collection\": \"companies\", \"id\": \"co_alive\", \"patch\": {\"name\": \"x\"}, \"if_rev\": \"1\"}]",
    "\"op\": \"tx\", \"ops\": [{\"op\": \"delete\", \"collection\": \"companies\", \"id\": \"co_alive\", \"if_rev\": \"1\"}]",
    /* a good first op, then a bad one: nothing of it is applied */
    "\"op\": \"tx\", \"ops\": [{\"op\": \"delete\", \"collection\": \"companies\", \"id\": \"co_alive\"}, "
    "{\"op\": \"update\", \"collection\": \"companies\", \"id\": \"co_alive\", \"patch\": 1}]",
    "\"op\": \"call\", \"method\": 5, \"params\": {}",
    "\"op\": \"call\", \"method\": {}, \"params\": {}",
    "\"op\": \"call\", \"params\": {}",
    "\"op\": \"call\", \"method\": \"\", \"params\": {}",
    "\"op\": \"schema\", \"collection\": 5",
};

static void wrong_argument_types(void **state)
{
    (void)state;
    static const char *const protos[] = {"crm.v1.json", "crm.v1.msgpack"};
    int failures = 0, checked = 0;
    for (size_t p = 0; p < 2; p++) {
        ws_client c;
        open_conn(&c, protos[p], 1);
        for (size_t i = 0; i < sizeof wrong_types / sizeof *wrong_types; i++) {
            crm_value *r = call(&c, "%s}", wrong_types[i]);
            checked++;
            if (strcmp(err_code(r), "BAD_REQUEST") != 0) {
                char *j = show(r);
                fprintf(stderr, "MISMATCH %s {%s}: expected BAD_REQUEST, got %s\n", protos[p],
                        wrong_types[i], j);
                free(j);
                failures++;
            }
            crm_value_free(r);
            cases_done(1);
        }
        ws_close(&c);
    }
    /* auth's token, on connections that are not authenticated yet */
    static const char *const tokens[] = {"5", "{}", "[\"crm_x\"]", "true", "\"\""};
    for (size_t i = 0; i < sizeof tokens / sizeof *tokens; i++) {
        ws_client c;
        open_conn(&c, "crm.v1.json", 0);
        crm_value *r = call(&c, "\"op\": \"auth\", \"token\": %s}", tokens[i]);
        checked++;
        if (strcmp(err_code(r), "BAD_REQUEST") != 0) {
            char *j = show(r);
            fprintf(stderr, "MISMATCH auth token %s: expected BAD_REQUEST, got %s\n", tokens[i], j);
            free(j);
            failures++;
        }
        crm_value_free(r);
        ws_close(&c);
        cases_done(1);
    }
    /* co_alive is unchanged: no wrong-typed write went through */
    crm_value *r = call(&F->obs[0], "\"op\": \"get\", \"collection\": \"companies\", \"id\": \"co_alive\"}");
    assert_int_equal(crm_map_int(ok_result(r), "_rev", 0), 1);
    crm_value_free(r);
    fprintf(stderr, "# wrong argument types: %d requests, %d not BAD_REQUEST\n", checked, failures);
    assert_int_equal(failures, 0);
}

/* ---- pipelining ---- */

static void thousand_pipelined_pings(void **state)
{
    (void)state;
    static const char *const protos[] = {"crm.v1.json", "crm.v1.msgpack"};
    enum { N = 1000 };
    for (size_t p = 0; p < 2; p++) {
        ws_client c;
        uint8_t seen[N] = {0};
        long long base = F->ref + 1;
        open_conn(&c, protos[p], 1);
        for (int i = 0; i < N; i++) {
            char m[64];
            snprintf(m, sizeof m, "{\"ref\": %lld, \"op\": \"ping\"}", base + i);
            assert_int_equal(ws_send_json(&c, m), 0);
        }
        F->ref += N;
        for (int i = 0; i < N; i++) {
            crm_value *r = ws_recv(&c, 10000, NULL);
            if (!r)
                fprintf(stderr, "%s: only %d of %d pings answered\n", protos[p], i, N);
            assert_non_null(r);
            long long ref = crm_map_int(r, "ref", -1) - base;
            assert_true(ref >= 0 && ref < N);
            assert_int_equal(seen[ref], 0); /* each ref once */
            seen[ref] = 1;
            assert_string_equal(ok_result(r)->u.str.s, "pong");
            crm_value_free(r);
        }
        /* and nothing more */
        assert_null(ws_recv(&c, 200, NULL));
        ws_close(&c);
        cases_done(1);
    }
}

/* ---- WebSocket framing the RFC forbids ---- */

static void bad_websocket_frames(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        const char *bytes;
        size_t len;
    } m[] = {
        /* reserved opcode 3 */
        {"reserved opcode", B("\x83\x80\x01\x02\x03\x04")},
        /* RSV1 set without an extension that defines it */
        {"RSV1 bit set", B("\xc1\x80\x01\x02\x03\x04")},
        /* a continuation frame with no message to continue */
        {"continuation without a start", B("\x80\x80\x01\x02\x03\x04")},
        /* a ping (control frame) longer than 125 bytes */
        {"control frame of 126 bytes", B("\x89\xfe\x00\x7e\x01\x02\x03\x04")},
        /* a fragmented control frame */
        {"fragmented ping", B("\x09\x80\x01\x02\x03\x04")},
        /* a close frame with a 1-byte body */
        {"close frame with a 1-byte body", B("\x88\x81\x01\x02\x03\x04\x00")},
    };
    int answered = 0;
    for (size_t i = 0; i < sizeof m / sizeof *m; i++) {
        ws_client c;
        int code = 0;
        crm_value *v;
        open_conn(&c, "crm.v1.json", 1);
        assert_int_equal(ws_send_raw(&c, m[i].bytes, m[i].len), 0);
        if (strcmp(m[i].what, "control frame of 126 bytes") == 0) {
            uint8_t pad[126] = {0};
            ws_send_raw(&c, pad, sizeof pad);
        }
        v = ws_recv(&c, 5000, &code);
        if (v) {
            char *j = show(v);
            fprintf(stderr, "MISMATCH %s: expected the connection to be closed (RFC 6455), got %s\n",
                    m[i].what, j);
            free(j);
            answered++;
        } else {
            fprintf(stderr, "# %s: closed with %d\n", m[i].what, code);
        }
        crm_value_free(v);
        ws_close(&c);
        cases_done(1);
    }
    assert_int_equal(answered, 0);
}

/* RFC 6455 5.1: "The server MUST close the connection upon receiving a
 * frame that is not masked."  A frame without the mask bit must not be
 * taken as a request. */
/* An unmasked client frame.  RFC 6455 5.1 says the server MUST close; the
 * libwebsockets 4.1.6 that Debian 12 ships records the mask bit but never
 * rejects such frames, and its callbacks do not expose the bit, so crmd
 * cannot enforce it without patching lws (a known deviation, README).  What
 * crmd does guarantee is asserted: the frame is handled as the payload it
 * carries (no misparse, no crash) and everyone else is served as before
 * (cases_done checks the sentinels). */
static void unmasked_client_frame(void **state)
{
    (void)state;
    ws_client c;
    int code = 0;
    crm_value *v;
    static const char frame[] = "\x81\x15{\"ref\":1,\"op\":\"ping\"}";
    open_conn(&c, "crm.v1.json", 1);
    assert_int_equal(ws_send_raw(&c, frame, sizeof frame - 1), 0);
    v = ws_recv(&c, 5000, &code);
    if (v) { /* lws 4.1.6: accepted; then it must be exactly the ping's answer */
        fprintf(stderr, "# unmasked frame: accepted by lws 4.1.6 (RFC 6455 asks for a close)\n");
        assert_int_equal(crm_map_int(v, "ref", 0), 1);
        assert_string_equal(crm_map_str(v, "result", ""), "pong");
        crm_value_free(v);
    } else {
        fprintf(stderr, "# unmasked frame: closed with %d\n", code);
    }
    ws_close(&c);
    cases_done(1);
}

/* Within the size limit but many small values: 1 MiB of msgpack nils (one
 * byte each, a million values).  Answered or refused, and the server lives. */
static void many_small_values(void **state)
{
    (void)state;
    ws_client c;
    size_t n = MIB - 64, h = 0;
    uint8_t *m = malloc(MIB);
    int code = 0;
    m[h++] = 0x83;
    memcpy(m + h, "\xa3ref\x09\xa2op\xa4ping\xa1x\xdd", 16), h += 16;
    m[h++] = (uint8_t)(n >> 24);
    m[h++] = (uint8_t)(n >> 16);
    m[h++] = (uint8_t)(n >> 8);
    m[h++] = (uint8_t)n;
    memset(m + h, 0xc0, n);
    open_conn(&c, "crm.v1.msgpack", 1);
    assert_int_equal(ws_send_frame(&c, 2, m, h + n), 0);
    free(m);
    crm_value *v = ws_recv(&c, 30000, &code);
    fprintf(stderr, "# a million nils in one message: %s %d\n",
            v ? (is_ok(v) ? "answered" : "refused") : "closed with", code);
    if (v)
        assert_int_equal(crm_map_int(v, "ref", -1), 9);
    else
        assert_true(code == 1007 || code == 1009);
    crm_value_free(v);
    ws_close(&c);
    cases_done(1);
}


/* ---- R10: a thousand generated hostile frames ---- */

enum { WANT_ANY_CLOSE = -3 };

/* Waits for the server to close c: its close code, 0 when the TCP
 * connection closed without a close frame, -1 when still open after
 * timeout_ms, -2 when a message came instead. */
static int wait_closed(ws_client *c, int timeout_ms)
{
    int code = 0;
    char b;
    crm_value *v = ws_recv(c, timeout_ms, &code);
    if (v) {
        crm_value_free(v);
        return -2;
    }
    if (code)
        return code;
    ssize_t r = recv(c->fd, &b, 1, MSG_DONTWAIT);
    return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) ? 0 : -1;
}

/* One masked frame with the given first byte (FIN, RSV bits, opcode)
 * appended to *out (grown; caller frees). */
static void put_frame(uint8_t **out, size_t *olen, uint8_t b0, const void *payload, size_t len)
{
    static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    uint8_t *o = realloc(*out, *olen + 14 + len);
    size_t h = *olen;
    assert_non_null(o);
    o[h++] = b0;
    if (len < 126) {
        o[h++] = (uint8_t)(0x80 | len);
    } else if (len < 65536) {
        o[h++] = 0x80 | 126;
        o[h++] = (uint8_t)(len >> 8);
        o[h++] = (uint8_t)len;
    } else {
        o[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            o[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    memcpy(o + h, mask, 4);
    h += 4;
    for (size_t i = 0; i < len; i++)
        o[h + i] = ((const uint8_t *)payload)[i] ^ mask[i & 3];
    *out = o;
    *olen = h + len;
}

typedef struct gen {
    int cases, mismatches;
    int by_code[4]; /* 1002, 1007, 1009, closed without a code */
} gen;

/* Sends raw bytes on a new connection and checks the close. want: a close
 * code, or WANT_ANY_CLOSE (a close frame of 1002, or none). */
static void gen_case(gen *g, const char *proto, int authed, const uint8_t *bytes, size_t len,
                     int want, const char *what)
{
    ws_client c;
    int got;
    open_conn(&c, proto, authed);
    ws_send_raw(&c, bytes, len); /* the server may close before it read it all */
    got = wait_closed(&c, 10000);
    g->cases++;
    g->by_code[got == 1002 ? 0 : got == 1007 ? 1 : got == 1009 ? 2 : 3]++;
    if (want == WANT_ANY_CLOSE ? !(got == 1002 || got == 0) : got != want) {
        fprintf(stderr, "MISMATCH %s (%s, %s): expected close %d, got %d%s\n", what,
                proto ? proto : "no subprotocol", authed ? "authenticated" : "before auth", want, got,
                got == -1 ? " (still open)" : got == -2 ? " (a message)" : "");
        g->mismatches++;
    }
    ws_close(&c);
    /* the bystanders after every tenth case (and at the end of each group) */
    if (g->cases % 10 == 0)
        cases_done(0);
}

/* Requests every truncation of which must be refused (1007). */
static const char *const gen_bases[] = {
    "{\"ref\":1,\"op\":\"ping\"}",
    "{\"ref\":2,\"op\":\"get\",\"collection\":\"companies\",\"id\":\"co_alive\"}",
    "{\"ref\":3,\"op\":\"query\",\"collection\":\"companies\",\"where\":{\"name\":{\"prefix\":\"St\"}},\"limit\":5}",
    "{\"ref\":4,\"op\":\"create\",\"collection\":\"companies\",\"record\":{\"name\":\"Never\"}}",
    "{\"ref\":\"s\",\"op\":\"subscribe\",\"collection\":\"companies\",\"since\":0,\"snapshot\":true}",
    "{\"ref\":5,\"op\":\"tx\",\"ops\":[{\"op\":\"delete\",\"collection\":\"companies\",\"id\":\"co_alive\"}]}",
};

static void gen_truncations(gen *g)
{
    char what[96];
    for (size_t b = 0; b < sizeof gen_bases / sizeof *gen_bases; b++) {
        crm_value *v = crm_test_json(gen_bases[b]);
        size_t mlen;
        uint8_t *mp = crm_mp_encode(v, &mlen);
        size_t jlen = strlen(gen_bases[b]);
        for (size_t cut = 0; cut < jlen; cut++) {
            uint8_t *f = NULL;
            size_t fl = 0;
            put_frame(&f, &fl, 0x81, gen_bases[b], cut);
            snprintf(what, sizeof what, "JSON request %zu cut to %zu bytes", b, cut);
            gen_case(g, "crm.v1.json", (int)(cut & 1), f, fl, 1007, what);
            free(f);
        }
        for (size_t cut = 0; cut < mlen; cut++) {
            uint8_t *f = NULL;
            size_t fl = 0;
            put_frame(&f, &fl, 0x82, mp, cut);
            snprintf(what, sizeof what, "msgpack request %zu cut to %zu bytes", b, cut);
            gen_case(g, "crm.v1.msgpack", (int)(cut & 1), f, fl, 1007, what);
            free(f);
        }
        free(mp);
        crm_value_free(v);
    }
}

static void gen_bad_utf8(gen *g)
{
    static const struct {
        const char *b;
        size_t n;
    } bad[] = {{B("\xff")},         {B("\xfe\xff")},     {B("\x80")},          {B("\xc0\xaf")},
               {B("\xe0\x80\xaf")}, {B("\xed\xa0\x80")}, {B("\xf4\x90\x80\x80")}, {B("\xe2\x82")},
               {B("\xf8\x88\x80\x80\x80")}};
    static const char head[] = "{\"ref\":2,\"op\":\"get\",\"collection\":\"companies\",\"id\":\"";
    char what[96], m[128];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        for (int pos = 0; pos < 3; pos++) { /* at the start, inside, at the end of the string */
            size_t n = 0;
            memcpy(m, head, sizeof head - 1), n = sizeof head - 1;
            memcpy(m + n, "co_alive", (size_t)pos * 4), n += (size_t)pos * 4;
            memcpy(m + n, bad[i].b, bad[i].n), n += bad[i].n;
            memcpy(m + n, "co_alive" + pos * 4, 8 - (size_t)pos * 4), n += 8 - (size_t)pos * 4;
            memcpy(m + n, "\"}", 2), n += 2;
            for (int op = 1; op <= 2; op++) { /* lws checks text frames; a binary one is 1003 */
                uint8_t *f = NULL;
                size_t fl = 0;
                put_frame(&f, &fl, (uint8_t)(0x80 | op), m, n);
                snprintf(what, sizeof what, "bad UTF-8 #%zu at %d in a %s frame", i, pos,
                         op == 1 ? "text" : "binary");
                gen_case(g, "crm.v1.json", pos & 1, f, fl, op == 1 ? 1007 : 1003, what);
                free(f);
            }
            /* the same bytes as a msgpack str */
            {
                crm_value *v = crm_test_json(gen_bases[1]);
                size_t ml;
                uint8_t *mp = crm_mp_encode(v, &ml), *f = NULL, *at;
                size_t fl = 0;
                crm_value_free(v);
                /* the id's str header and bytes are the last 9 of the encoding */
                at = mp + ml - 8;
                assert_int_equal(memcmp(at, "co_alive", 8), 0);
                uint8_t *x = malloc(ml + 8);
                size_t xl = (size_t)(at - mp);
                memcpy(x, mp, xl);
                x[xl - 1] = (uint8_t)(0xa0 | (8 + bad[i].n));
                memcpy(x + xl, "co_alive", (size_t)pos * 4), xl += (size_t)pos * 4;
                memcpy(x + xl, bad[i].b, bad[i].n), xl += bad[i].n;
                memcpy(x + xl, "co_alive" + pos * 4, 8 - (size_t)pos * 4), xl += 8 - (size_t)pos * 4;
                put_frame(&f, &fl, 0x82, x, xl);
                snprintf(what, sizeof what, "bad UTF-8 #%zu at %d in a msgpack str", i, pos);
                gen_case(g, "crm.v1.msgpack", pos & 1, f, fl, 1007, what);
                free(f);
                free(x);
                free(mp);
            }
        }
}

static void gen_framing(gen *g)
{
    static const int reserved[] = {3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf};
    static const char ping[] = "{\"ref\":1,\"op\":\"ping\"}";
    char what[96];
    uint8_t pad[70000];
    memset(pad, 'p', sizeof pad);
    /* reserved opcodes, final or not, empty or not: 1002 (RFC 6455 5.2) */
    for (size_t i = 0; i < sizeof reserved / sizeof *reserved; i++)
        for (int fin = 0; fin < 2; fin++)
            for (int plen = 0; plen < 2; plen++) {
                uint8_t *f = NULL;
                size_t fl = 0;
                put_frame(&f, &fl, (uint8_t)((fin ? 0x80 : 0) | reserved[i]), ping, plen ? sizeof ping - 1 : 0);
                snprintf(what, sizeof what, "reserved opcode %#x fin %d payload %d", reserved[i], fin, plen);
                gen_case(g, "crm.v1.json", plen, f, fl, 1002, what);
                free(f);
            }
    /* RSV1-3 without an extension, on data, control and continuation frames */
    static const int ops[] = {1, 2, 9, 0};
    for (int rsv = 1; rsv < 8; rsv++)
        for (size_t o = 0; o < 4; o++) {
            uint8_t *f = NULL;
            size_t fl = 0;
            if (ops[o] == 0) /* a continuation of a started message */
                put_frame(&f, &fl, 0x01, ping, 5);
            put_frame(&f, &fl, (uint8_t)(0x80 | rsv << 4 | ops[o]), ops[o] == 0 ? ping + 5 : ping,
                      ops[o] == 0 ? sizeof ping - 6 : sizeof ping - 1);
            snprintf(what, sizeof what, "RSV bits %d on opcode %d", rsv, ops[o]);
            gen_case(g, "crm.v1.json", (int)(o & 1), f, fl, 1002, what);
            free(f);
        }
    /* control frames longer than 125 bytes: lws 4.1.6 drops the
     * connection (with or without 1002) */
    static const size_t clen[] = {126, 127, 200, 1000, 65535, 65536};
    static const int ctl[] = {8, 9, 10};
    for (size_t i = 0; i < sizeof clen / sizeof *clen; i++)
        for (size_t k = 0; k < 3; k++) {
            uint8_t *f = NULL;
            size_t fl = 0;
            put_frame(&f, &fl, (uint8_t)(0x80 | ctl[k]), pad, clen[i]);
            snprintf(what, sizeof what, "control frame %d of %zu bytes", ctl[k], clen[i]);
            gen_case(g, "crm.v1.json", (int)(i & 1), f, fl, WANT_ANY_CLOSE, what);
            free(f);
        }
    /* fragmented control frames, and a new data frame inside a fragmented message */
    for (size_t k = 0; k < 3; k++) {
        uint8_t *f = NULL;
        size_t fl = 0;
        put_frame(&f, &fl, (uint8_t)ctl[k], ping, 4);
        snprintf(what, sizeof what, "fragmented control frame %d", ctl[k]);
        gen_case(g, "crm.v1.json", 1, f, fl, 1002, what);
        free(f);
    }
    for (int op = 1; op <= 2; op++) {
        uint8_t *f = NULL;
        size_t fl = 0;
        put_frame(&f, &fl, 0x01, ping, 5);
        put_frame(&f, &fl, (uint8_t)(0x80 | op), ping, sizeof ping - 1);
        snprintf(what, sizeof what, "data frame %d inside a fragmented message", op);
        gen_case(g, "crm.v1.json", 1, f, fl, 1002, what);
        free(f);
    }
}

/* msgpack headers declaring far more than follows (5-byte giant counts and
 * their neighbours), at the top, as a field of a valid-looking request, and
 * inside an array: all refused before anything is reserved (1007). */
static void gen_msgpack_counts(gen *g)
{
    static const struct {
        uint8_t tag;
        int width; /* bytes of the count */
        int ext;   /* ext types carry a type byte after the count */
    } hdr[] = {{0xdc, 2, 0}, {0xdd, 4, 0}, {0xde, 2, 0}, {0xdf, 4, 0}, {0xd9, 1, 0},
               {0xda, 2, 0}, {0xdb, 4, 0}, {0xc4, 1, 0}, {0xc5, 2, 0}, {0xc6, 4, 0},
               {0xc7, 1, 1}, {0xc8, 2, 1}, {0xc9, 4, 1}};
    static const uint32_t counts[] = {0xffffffffu, 0x7fffffffu, 100000000u, 65535u, 255u, 100u};
    char what[96];
    for (size_t h = 0; h < sizeof hdr / sizeof *hdr; h++)
        for (size_t k = 0; k < sizeof counts / sizeof *counts; k++) {
            uint32_t n = counts[k];
            if (hdr[h].width == 1 && n > 255)
                continue;
            if (hdr[h].width == 2 && n > 65535)
                continue;
            for (int place = 0; place < 3; place++) {
                uint8_t m[64], *f = NULL;
                size_t ml = 0, fl = 0;
                if (place == 1) { /* {"ref": 1, "op": "ping", "x": <here>} */
                    memcpy(m, "\x83\xa3ref\x01\xa2op\xa4ping\xa1x", 16), ml = 16;
                } else if (place == 2) { /* {"ref": 1, "op": "ping", "x": [[<here>]]} */
                    memcpy(m, "\x83\xa3ref\x01\xa2op\xa4ping\xa1x\x91\x91", 18), ml = 18;
                }
                m[ml++] = hdr[h].tag;
                for (int i = hdr[h].width - 1; i >= 0; i--)
                    m[ml++] = (uint8_t)(n >> (8 * i));
                if (hdr[h].ext)
                    m[ml++] = 0x01;
                m[ml++] = 0xc0; /* one byte of what was promised */
                put_frame(&f, &fl, 0x82, m, ml);
                snprintf(what, sizeof what, "msgpack %#x declaring %u, place %d", hdr[h].tag, n, place);
                gen_case(g, "crm.v1.msgpack", place & 1, f, fl, 1007, what);
                free(f);
            }
        }
}

/* Nesting past 32, up to 10^5 levels: 1007. */
static void gen_depth(gen *g)
{
    static const int depths[] = {33, 34, 40, 64, 100, 200, 1000, 10000, 100000};
    char what[96];
    for (size_t i = 0; i < sizeof depths / sizeof *depths; i++) {
        int d = depths[i];
        for (int shape = 0; shape < 4; shape++) {
            size_t cap = 64 + 8 * (size_t)d, n = 0;
            uint8_t *m = malloc(cap), *f = NULL;
            size_t fl = 0;
            const char *proto = shape < 2 ? "crm.v1.json" : "crm.v1.msgpack";
            if (shape == 0) { /* {"ref":1,"op":"ping","x":[[[...]]]} */
                n = (size_t)sprintf((char *)m, "{\"ref\":1,\"op\":\"ping\",\"x\":");
                for (int k = 1; k < d; k++)
                    m[n++] = '[';
                for (int k = 1; k < d; k++)
                    m[n++] = ']';
                m[n++] = '}';
            } else if (shape == 1) { /* {"a":{"a":...}} */
                for (int k = 0; k < d; k++)
                    memcpy(m + n, "{\"a\":", 5), n += 5;
                m[n++] = '1';
                for (int k = 0; k < d; k++)
                    m[n++] = '}';
            } else if (shape == 2) { /* msgpack arrays of one */
                memcpy(m, "\x83\xa3ref\x01\xa2op\xa4ping\xa1x", 16), n = 16;
                for (int k = 1; k < d; k++)
                    m[n++] = 0x91;
                m[n++] = 0x90;
            } else { /* msgpack maps {"a": ...} */
                for (int k = 0; k < d; k++)
                    memcpy(m + n, "\x81\xa1" "a", 3), n += 3;
                m[n++] = 0x01;
            }
            put_frame(&f, &fl, shape < 2 ? 0x81 : 0x82, m, n);
            snprintf(what, sizeof what, "nesting %d deep, shape %d", d, shape);
            /* authenticated: a message past 16 KiB before auth is 1009 instead */
            gen_case(g, proto, 1, f, fl, 1007, what);
            free(f);
            free(m);
        }
    }
}

static void generated_frames(void **state)
{
    (void)state;
    gen g = {0};
    gen_truncations(&g);
    gen_bad_utf8(&g);
    gen_framing(&g);
    gen_msgpack_counts(&g);
    gen_depth(&g);
    cases_done(g.cases % 10);
    F->cases += g.cases - g.cases % 10;
    fprintf(stderr, "# generated hostile frames: %d cases, %d mismatches; closes: %d x 1002, %d x 1007, "
                    "%d x 1009, %d without a close frame\n",
            g.cases, g.mismatches, g.by_code[0], g.by_code[1], g.by_code[2], g.by_code[3]);
    assert_true(g.cases >= 1000);
    assert_int_equal(g.mismatches, 0);
}


/* A message that never ends: one text frame, then 64 KiB continuation
 * frames for as long as the server takes them.  It must close with 1009 once
 * the 1 MiB limit is passed (before the fix it read and dropped them for
 * ever: 28 GB in 20 s). */
static void endless_continuations(void **state)
{
    (void)state;
    for (int authed = 0; authed < 2; authed++) {
        ws_client c;
        uint8_t *chunk = NULL, *start = NULL;
        size_t clen = 0, slen = 0, sent = 0, limit = authed ? MIB : 16u << 10;
        static uint8_t pad[65536];
        int got = -1;
        memset(pad, 'a', sizeof pad);
        open_conn(&c, "crm.v1.json", authed);
        put_frame(&start, &slen, 0x01, "{\"ref\":1,\"op\":\"ping\",\"pad\":\"", 28);
        put_frame(&chunk, &clen, 0x00, pad, sizeof pad);
        assert_int_equal(ws_send_raw(&c, start, slen), 0);
        /* send while watching for the close; give up at 64 MiB (the
         * loopback socket buffers alone take a few MiB) */
        while (sent < 64 * MIB) {
            struct pollfd pf = {c.fd, POLLIN | POLLOUT, 0};
            if (poll(&pf, 1, 5000) <= 0)
                break;
            if (pf.revents & (POLLIN | POLLHUP | POLLERR)) {
                got = wait_closed(&c, 5000);
                break;
            }
            ssize_t w = send(c.fd, chunk, clen, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                got = wait_closed(&c, 5000); /* reset: the close may still be readable */
                break;
            }
            if (w > 0 && (size_t)w < clen) { /* finish this frame before the next */
                if (ws_send_raw(&c, chunk + w, clen - (size_t)w) != 0) {
                    got = wait_closed(&c, 5000);
                    break;
                }
            }
            if (w > 0)
                sent += clen;
        }
        if (got == -1)
            got = wait_closed(&c, 5000);
        fprintf(stderr, "# endless continuation frames%s: close %d after %zu KiB sent (limit %zu KiB)\n",
                authed ? " after auth" : " before auth", got, sent >> 10, limit >> 10);
        /* 1009, or a reset that lost it (the close came while we still sent) */
        assert_true(got == 1009 || got == 0);
        assert_true(sent < 64 * MIB);
        free(chunk);
        free(start);
        ws_close(&c);
        cases_done(1);
    }
}

/* Ten thousand empty continuation frames between the halves of a ping:
 * reassembled, answered once. */
static void empty_frame_flood(void **state)
{
    (void)state;
    static const char ping[] = "{\"ref\":77,\"op\":\"ping\"}";
    ws_client c;
    uint8_t *f = NULL, *one = NULL;
    size_t fl = 0, ol = 0;
    put_frame(&one, &ol, 0x00, "", 0);
    put_frame(&f, &fl, 0x01, ping, 10);
    for (int i = 0; i < 10000; i++) {
        uint8_t *nf = realloc(f, fl + ol);
        assert_non_null(nf);
        f = nf;
        memcpy(f + fl, one, ol);
        fl += ol;
    }
    put_frame(&f, &fl, 0x80, ping + 10, sizeof ping - 11);
    open_conn(&c, "crm.v1.json", 1);
    assert_int_equal(ws_send_raw(&c, f, fl), 0);
    expect_pong(&c, 77, "a ping in 10,002 fragments");
    assert_null(ws_recv(&c, 200, NULL));
    ws_close(&c);
    free(f);
    free(one);
    /* and 10,000 empty text frames: each is an empty message, refused (1007)
     * at the first; the server reads no further */
    fl = 0;
    f = NULL;
    for (int i = 0; i < 10000; i++)
        put_frame(&f, &fl, 0x81, "", 0);
    open_conn(&c, "crm.v1.json", 1);
    ws_send_raw(&c, f, fl);
    assert_int_equal(wait_closed(&c, 10000), 1007);
    ws_close(&c);
    free(f);
    cases_done(2);
}

typedef struct pinger {
    ws_client *c;
    int n, answered, limited, bad;
} pinger;

static void *read_pongs(void *arg)
{
    pinger *p = arg;
    while (p->answered < p->n) {
        crm_value *r = ws_recv(p->c, 20000, NULL);
        if (!r)
            break;
        p->answered++;
        if (is_ok(r))
            p->bad += strcmp(crm_map_str(r, "result", ""), "pong") != 0;
        else if (strcmp(err_code(r), "RATE_LIMITED") == 0)
            p->limited++;
        else
            p->bad++;
        crm_value_free(r);
    }
    return NULL;
}

/* 10^5 ping requests pipelined on one connection (read as they come), and
 * 10^5 WebSocket ping frames: every request answered (pong or RATE_LIMITED,
 * the default 10,000 a second), every ping frame left to lws, the connection
 * still usable. */
static void hundred_thousand_pings(void **state)
{
    (void)state;
    enum { N = 100000 };
    ws_client c;
    pinger p = {&c, N, 0, 0, 0};
    pthread_t th;
    uint8_t *f = NULL;
    size_t fl = 0;
    static const char m[] = "{\"ref\":5,\"op\":\"ping\"}";
    open_conn(&c, "crm.v1.json", 1);
    assert_int_equal(pthread_create(&th, NULL, read_pongs, &p), 0);
    for (int i = 0; i < 1000; i++)
        put_frame(&f, &fl, 0x81, m, sizeof m - 1);
    for (int i = 0; i < N / 1000; i++)
        assert_int_equal(ws_send_raw(&c, f, fl), 0);
    pthread_join(th, NULL);
    free(f);
    fprintf(stderr, "# 10^5 pipelined pings: %d answered, %d pong, %d RATE_LIMITED, %d other\n", p.answered,
            p.answered - p.limited - p.bad, p.limited, p.bad);
    assert_int_equal(p.answered, N);
    assert_int_equal(p.bad, 0);
    /* WebSocket ping frames */
    f = NULL;
    fl = 0;
    for (int i = 0; i < 1000; i++)
        put_frame(&f, &fl, 0x89, "hi", 2);
    for (int i = 0; i < N / 1000; i++)
        assert_int_equal(ws_send_raw(&c, f, fl), 0); /* ws_recv skips the pongs */
    free(f);
    sleep(1); /* the rate bucket refills */
    assert_int_equal(ws_send_json(&c, "{\"ref\": 6, \"op\": \"ping\"}"), 0);
    crm_value *r = ws_reply(&c, 6, 20000, NULL);
    assert_non_null(r);
    assert_string_equal(ok_result(r)->u.str.s, "pong");
    crm_value_free(r);
    ws_close(&c);
    cases_done(2);
}

/* A bad Upgrade on a keep-alive connection and its neighbours, each after a
 * good request on the same connection.  Under ASan this found libwebsockets
 * 4.1.6's use after free (strcasecmp on freed header memory, the upstream
 * bug the plan names); crmd now closes every HTTP connection after its one
 * response, so the second request is never parsed.  Asserted: the close,
 * and the server alive (build-asan: no use after free). */
static void bad_upgrade_on_keep_alive(void **state)
{
    (void)state;
    static const char *const second[] = {
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: bogus\r\nConnection: Upgrade\r\n\r\n",
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: \r\nConnection: Upgrade\r\n\r\n",
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket, websocket\r\nConnection: Upgrade\r\n\r\n",
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Version: 99\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n",
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        "POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -1\r\nUpgrade: websocket\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof second / sizeof *second; i++) {
        char buf[8192];
        static const char first[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa;
        memset(&sa, 0, sizeof sa);
        sa.sin_family = AF_INET;
        sa.sin_port = htons((uint16_t)F->p.port);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        assert_int_equal(write(fd, first, sizeof first - 1), (ssize_t)(sizeof first - 1));
        struct pollfd pf = {fd, POLLIN, 0};
        size_t got = 0;
        ssize_t n;
        /* the response, then the end of the connection: crmd keeps no HTTP
         * connection alive (net.c), so the second request is never read */
        while (got + 1 < sizeof buf && poll(&pf, 1, 5000) == 1 && (n = read(fd, buf + got, sizeof buf - 1 - got)) > 0)
            got += (size_t)n;
        buf[got] = 0;
        assert_true(got > 12 && memcmp(buf, "HTTP/1.1 200", 12) == 0);
        assert_true(got + 1 < sizeof buf); /* stopped by the close, not by a full buffer */
        n = send(fd, second[i], strlen(second[i]), MSG_NOSIGNAL);
        fprintf(stderr, "# keep-alive then bad upgrade #%zu: the first response ended the connection; "
                        "the second request %s\n", i, n < 0 ? "could not be sent" : "went nowhere");
        close(fd);
        cases_done(1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(json_truncated),
        cmocka_unit_test(json_trailing_garbage),
        cmocka_unit_test(json_bad_utf8),
        cmocka_unit_test(json_non_finite_numbers),
        cmocka_unit_test(json_not_an_object),
        cmocka_unit_test(nul_in_names),
        cmocka_unit_test(failed_auths_close_the_connection),
        cmocka_unit_test(msgpack_malformed),
        cmocka_unit_test(huge_declared_length),
        cmocka_unit_test(message_size_limit),
        cmocka_unit_test(nesting),
        cmocka_unit_test(unknown_op_and_bad_envelope),
        cmocka_unit_test(wrong_argument_types),
        cmocka_unit_test(thousand_pipelined_pings),
        cmocka_unit_test(bad_websocket_frames),
        cmocka_unit_test(unmasked_client_frame),
        cmocka_unit_test(many_small_values),
        cmocka_unit_test(generated_frames),
        cmocka_unit_test(endless_continuations),
        cmocka_unit_test(empty_frame_flood),
        cmocka_unit_test(hundred_thousand_pings),
        cmocka_unit_test(bad_upgrade_on_keep_alive),
    };
    return cmocka_run_group_tests_name("hostile", tests, setup, teardown);
}
