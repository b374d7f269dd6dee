/*
 * test_limits -- the per-connection limits of `crmd serve`, each set low by
 * its command-line option on a real server: requests per second
 * (RATE_LIMITED), subscriptions per connection (TOO_LARGE), message size
 * after auth (close 1009), the authentication deadline (close 1008), and the
 * idle policy (a peer that never answers pings is hung up on; one that does
 * stays).  Each limit answers clearly and the server goes on serving.
 *
 * Hostile clients (reliability plan R11-R13, the CI half: counts, codes and
 * memory bounds; the latency half is bench/bench_hostile.c): 500
 * slowloris connections with 500 upgraded ones that never authenticate,
 * a subscriber that stops reading while thousands of changes flow (memory,
 * overflow, resubscribe with since), and a client that floods requests and
 * reads no answers.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "codec.h"
#include "testutil.h"
#include "wsclient.h"

typedef struct fixture {
    crmd_proc p;
    char *admin;
} fixture;

static int start(void **state, const char *args)
{
    fixture *f = calloc(1, sizeof *f);
    assert_int_equal(crmd_start_with(&f->p, NULL, "%s", args), 0);
    assert_non_null(f->admin = crmd_token(&f->p, "admin"));
    *state = f;
    return 0;
}

static int setup_tight(void **state)
{
    return start(state, "--rate 20 --max-subs 2 --max-message 4096 --auth-deadline-ms 700 "
                        "--ping-secs 1 --idle-secs 3");
}

static int teardown(void **state)
{
    fixture *f = *state;
    assert_int_equal(crmd_stop(&f->p), 0);
    free(f->admin);
    free(f);
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void authed(fixture *f, ws_client *c)
{
    char buf[256];
    crm_value *r;
    assert_int_equal(ws_connect(c, f->p.port, "crm.v1.json", NULL, NULL), 0);
    snprintf(buf, sizeof buf, "{\"ref\": 1, \"op\": \"auth\", \"token\": \"%s\"}", f->admin);
    assert_int_equal(ws_send_json(c, buf), 0);
    r = ws_reply(c, 1, 3000, NULL);
    assert_non_null(r);
    assert_true(crm_map_get(r, "ok")->u.b);
    crm_value_free(r);
}

static const char *code_of(const crm_value *r)
{
    const crm_value *e = crm_map_get(r, "error");
    return e ? crm_map_str(e, "code", "") : "OK";
}

static void rate_and_subscription_limits(void **state)
{
    fixture *f = *state;
    ws_client c, other;
    int limited = 0, ok = 0;
    authed(f, &c);
    /* 60 pipelined pings against 20 per second: some are RATE_LIMITED, and
     * every one is answered */
    for (int i = 0; i < 60; i++) {
        char buf[64];
        snprintf(buf, sizeof buf, "{\"ref\": %d, \"op\": \"ping\"}", 100 + i);
        assert_int_equal(ws_send_json(&c, buf), 0);
    }
    for (int i = 0; i < 60; i++) {
        crm_value *r = ws_recv(&c, 3000, NULL);
        assert_non_null(r);
        if (strcmp(code_of(r), "RATE_LIMITED") == 0)
            limited++;
        else if (strcmp(code_of(r), "OK") == 0)
            ok++;
        crm_value_free(r);
    }
    assert_int_equal(limited + ok, 60);
    assert_true(limited >= 30);
    assert_true(ok >= 15);
    /* another connection has its own budget */
    authed(f, &other);
    assert_int_equal(ws_send_json(&other, "{\"ref\": 7, \"op\": \"ping\"}"), 0);
    crm_value *r = ws_reply(&other, 7, 3000, NULL);
    assert_string_equal(code_of(r), "OK");
    crm_value_free(r);
    sleep(1); /* the bucket refills */
    /* subscriptions per connection */
    for (int i = 0; i < 3; i++) {
        char buf[128];
        snprintf(buf, sizeof buf, "{\"ref\": %d, \"op\": \"subscribe\", \"collection\": \"tickets\"}",
                 200 + i);
        assert_int_equal(ws_send_json(&other, buf), 0);
        r = ws_reply(&other, 200 + i, 3000, NULL);
        assert_non_null(r);
        assert_string_equal(code_of(r), i < 2 ? "OK" : "TOO_LARGE");
        crm_value_free(r);
    }
    /* messages past --max-message after auth close with 1009 */
    char big[6000];
    int code = 0;
    memset(big, ' ', sizeof big);
    memcpy(big, "{\"ref\": 9, \"op\": \"ping\"", 22);
    big[sizeof big - 1] = '}';
    assert_int_equal(ws_send_frame(&other, 1, big, sizeof big), 0);
    assert_null(ws_recv(&other, 3000, &code));
    assert_int_equal(code, 1009);
    ws_close(&other);
    ws_close(&c);
}

static void auth_deadline_closes_silent_connections(void **state)
{
    fixture *f = *state;
    ws_client c;
    int code = 0;
    double t0 = now_s();
    assert_int_equal(ws_connect(&c, f->p.port, NULL, NULL, NULL), 0);
    assert_null(ws_recv(&c, 3000, &code)); /* never authenticates */
    assert_int_equal(code, 1008);
    assert_true(now_s() - t0 < 0.7 + 1.0); /* the deadline plus the 250 ms tick, with room */
    ws_close(&c);
}

static void quiet_peers_are_pinged_and_dead_ones_hung_up(void **state)
{
    fixture *f = *state;
    ws_client raw, lws;
    int code = 0;
    crm_value *r;
    authed(f, &raw); /* our raw client never answers pings: a dead peer */
    ws_client_use_lws = 1;
    authed(f, &lws); /* lws answers pings by itself: alive */
    ws_client_use_lws = 0;
    double t0 = now_s(), waited;
    /* wait for the dead peer's hang-up in slices, servicing the lws client
     * in between: it answers pings only while it is serviced */
    for (;;) {
        char byte;
        assert_null(ws_recv(&raw, 100, &code));
        if (code || recv(raw.fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0)
            break; /* a close frame, or the connection closed */
        assert_true(now_s() - t0 < 6.0);
        assert_null(ws_recv(&lws, 1, NULL));
    }
    waited = now_s() - t0;
    assert_true(waited >= 2.0 && waited < 5.5); /* --idle-secs 3 */
    assert_null(ws_recv(&lws, 500, NULL)); /* still open, nothing queued */
    assert_int_equal(ws_send_json(&lws, "{\"ref\": 3, \"op\": \"ping\"}"), 0);
    r = ws_reply(&lws, 3, 3000, NULL);
    assert_non_null(r);
    assert_string_equal(code_of(r), "OK");
    crm_value_free(r);
    ws_close(&lws);
    ws_close(&raw);
}

static int setup_small_queue(void **state)
{
    return start(state, "--send-queue 65536 --rate 100000");
}

#define OVF_CHANGES 1500

typedef struct reader {
    ws_client *c;
    int changes;
} reader;

static void *read_changes(void *arg)
{
    reader *rd = arg;
    crm_value *e;
    while (rd->changes < OVF_CHANGES && (e = ws_recv(rd->c, 5000, NULL))) {
        rd->changes += strcmp(crm_map_str(e, "event", ""), "change") == 0;
        crm_value_free(e);
    }
    return NULL;
}

/* A subscriber that stops reading: past its send-queue limit (64 KiB here,
 * beyond what the kernel's socket buffers absorb) it gets an overflow event
 * and its subscription ends, while a reading subscriber receives every
 * change and the writer's acks keep coming. */
static void slow_subscriber_overflows_alone(void **state)
{
    fixture *f = *state;
    ws_client slow, fast, writer;
    char *blob = malloc(9001), *req = malloc(9400);
    crm_value *r;
    reader rd = {&fast, 0};
    pthread_t th;
    memset(blob, 'x', 9000);
    blob[9000] = 0;
    authed(f, &slow);
    authed(f, &fast);
    authed(f, &writer);
    assert_int_equal(ws_send_json(&slow, "{\"ref\": 2, \"op\": \"subscribe\", \"collection\": \"companies\"}"), 0);
    r = ws_reply(&slow, 2, 3000, NULL);
    assert_string_equal(code_of(r), "OK");
    crm_value_free(r);
    assert_int_equal(ws_send_json(&fast, "{\"ref\": 2, \"op\": \"subscribe\", \"collection\": \"companies\"}"), 0);
    r = ws_reply(&fast, 2, 3000, NULL);
    assert_string_equal(code_of(r), "OK");
    crm_value_free(r);
    assert_int_equal(pthread_create(&th, NULL, read_changes, &rd), 0);
    /* ~13 MB of changes while the slow one reads nothing */
    for (int i = 0; i < OVF_CHANGES; i++) {
        snprintf(req, 9400,
                 "{\"ref\": %d, \"op\": \"create\", \"collection\": \"companies\", "
                 "\"record\": {\"name\": \"Co %d\", \"notes\": \"%s\"}}", 1000 + i, i, blob);
        assert_int_equal(ws_send_json(&writer, req), 0);
        r = ws_reply(&writer, 1000 + i, 5000, NULL);
        assert_non_null(r);
        assert_string_equal(code_of(r), "OK");
        crm_value_free(r);
    }
    pthread_join(th, NULL);
    assert_int_equal(rd.changes, OVF_CHANGES);
    /* now the slow one reads: some changes, then the overflow, then nothing */
    int changes = 0, overflow = 0, after = 0;
    crm_value *e;
    while ((e = ws_recv(&slow, 1500, NULL))) {
        const char *ev = crm_map_str(e, "event", "");
        if (strcmp(ev, "overflow") == 0) {
            overflow++;
            assert_int_equal(crm_map_int(e, "sub", 0), 1);
        } else if (strcmp(ev, "change") == 0) {
            if (overflow)
                after++;
            else
                changes++;
        }
        crm_value_free(e);
    }
    fprintf(stderr, "# slow subscriber: %d changes, %d overflow; fast one: %d\n", changes, overflow,
            rd.changes);
    assert_int_equal(overflow, 1);
    assert_int_equal(after, 0);
    assert_true(changes < OVF_CHANGES);
    int status;
    char *body;
    assert_int_equal(http_get(f->p.port, "/metrics", &status, &body), 0);
    assert_non_null(strstr(body, "crmd_overflows_total 1"));
    free(body);
    free(blob);
    free(req);
    ws_close(&slow);
    ws_close(&fast);
    ws_close(&writer);
}


/* ---- R11: slowloris and never-authenticated connections ---- */

/* Raises the soft fd limit to the hard one; returns what is allowed. */
static long fd_room(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1024;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    return (long)rl.rlim_cur;
}

static int tcp_open(int port)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static int setup_default(void **state)
{
    return start(state, "");
}

static int setup_preauth(void **state)
{
    return start(state, "--auth-deadline-ms 2000");
}

#define HTTP_TIMEOUT_S 10.0 /* lws timeout_secs in net.c */

/* 500 connections that send their HTTP head one byte every 0.2 s and 500
 * upgraded ones that never authenticate; meanwhile a pre-auth message of
 * 16 KiB + 1 is closed with 1009, one of exactly 16 KiB is answered, and a
 * new client connects, authenticates and is served.  Every slowloris
 * connection is closed by the HTTP timeout + 1 s, every silent one with 1008
 * by the auth deadline + 1 s (each from its own connect), and the server's
 * fd count comes back to where it was. */
static void slowloris_and_never_authenticated(void **state)
{
    fixture *f = *state;
    long room = fd_room();
    int n = room >= 1200 ? 500 : (int)(room - 100) / 2;
    int fds0 = crm_test_proc_fds(f->p.pid), loris_late = 0, silent_late = 0, silent_not_1008 = 0;
    int *fd = calloc((size_t)n, sizeof *fd);
    ws_client *ws = calloc((size_t)n, sizeof *ws);
    double *t_open = calloc((size_t)n * 2, sizeof *t_open), *t_closed = calloc((size_t)n * 2, sizeof *t_closed);
    double worst_loris = 0, worst_silent = 0, t_new;
    size_t sent_hdr = 0;
    static const char head[] = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                               "Connection: Upgrade\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    assert_true(fds0 > 0);
    if (n < 500)
        fprintf(stderr, "# fd limit %ld: %d connections of each kind instead of 500\n", room, n);
    for (int i = 0; i < n; i++) {
        assert_true((fd[i] = tcp_open(f->p.port)) >= 0);
        t_open[i] = crm_test_now_s();
        assert_int_equal(write(fd[i], head, 18), 18); /* "GET /ws HTTP/1.1\r\n" */
        fcntl(fd[i], F_SETFL, O_NONBLOCK);
    }
    for (int i = 0; i < n; i++) {
        assert_int_equal(ws_connect(&ws[i], f->p.port, "crm.v1.json", NULL, NULL), 0);
        t_open[n + i] = crm_test_now_s();
    }
    /* pre-auth size limit: 16 KiB answered, 16 KiB + 1 closed with 1009 */
    {
        ws_client c;
        int code = 0;
        size_t len = 16u << 10;
        char *m = malloc(len + 2);
        int hn = snprintf(m, len, "{\"ref\":9,\"op\":\"ping\",\"pad\":\"");
        memset(m + hn, 'a', len - (size_t)hn - 2);
        memcpy(m + len - 2, "\"}", 2);
        assert_int_equal(ws_connect(&c, f->p.port, "crm.v1.json", NULL, NULL), 0);
        assert_int_equal(ws_send_frame(&c, 1, m, len), 0);
        crm_value *r = ws_reply(&c, 9, 5000, NULL);
        assert_non_null(r);
        assert_string_equal(code_of(r), "OK");
        crm_value_free(r);
        memmove(m + hn + 1, m + hn, len - (size_t)hn); /* one more byte of pad */
        assert_int_equal(ws_send_frame(&c, 1, m, len + 1), 0);
        assert_null(ws_recv(&c, 5000, &code));
        assert_int_equal(code, 1009);
        ws_close(&c);
        free(m);
    }
    /* a new client is served while all of them are open (with 256 header
     * buffers it waited for the slowloris timeout, 10 s) */
    {
        ws_client c;
        double t0 = crm_test_now_s();
        authed(f, &c);
        assert_int_equal(ws_send_json(&c, "{\"ref\": 3, \"op\": \"ping\"}"), 0);
        crm_value *r = ws_reply(&c, 3, 5000, NULL);
        assert_non_null(r);
        crm_value_free(r);
        t_new = crm_test_now_s() - t0;
        ws_close(&c);
    }
    /* trickle and watch until every one is closed (or 2 x the timeout) */
    int open_left = 2 * n;
    double until = crm_test_now_s() + 2 * HTTP_TIMEOUT_S + 2;
    struct pollfd *pf = calloc((size_t)n * 2, sizeof *pf);
    while (open_left > 0 && crm_test_now_s() < until) {
        for (int i = 0; i < 2 * n; i++) {
            pf[i].fd = t_closed[i] ? -1 : i < n ? fd[i] : ws[i - n].fd;
            pf[i].events = POLLIN;
            pf[i].revents = 0;
        }
        poll(pf, (nfds_t)(2 * n), 200);
        double now = crm_test_now_s();
        for (int i = 0; i < 2 * n; i++) {
            if (t_closed[i])
                continue;
            if (i < n) {
                char b[256];
                ssize_t r = pf[i].revents ? read(fd[i], b, sizeof b) : -1;
                if (pf[i].revents && (r == 0 || (r < 0 && errno != EAGAIN))) {
                    t_closed[i] = now;
                    open_left--;
                } else if (sent_hdr / (size_t)n < 2000 &&
                           write(fd[i], head + 18 + (sent_hdr / (size_t)n) % (sizeof head - 19), 1) < 0 &&
                           errno != EAGAIN) {
                    t_closed[i] = now;
                    open_left--;
                }
            } else if (pf[i].revents) {
                int code = 0;
                crm_value *v = ws_recv(&ws[i - n], 1000, &code);
                if (!v) {
                    silent_not_1008 += code != 1008;
                    t_closed[i] = now;
                    open_left--;
                }
                crm_value_free(v);
            }
        }
        sent_hdr += (size_t)n;
        usleep(200000);
    }
    for (int i = 0; i < 2 * n; i++) {
        double life = (t_closed[i] ? t_closed[i] : crm_test_now_s()) - t_open[i];
        if (i < n) {
            worst_loris = life > worst_loris ? life : worst_loris;
            loris_late += !t_closed[i] || life > HTTP_TIMEOUT_S + 1.0;
        } else {
            worst_silent = life > worst_silent ? life : worst_silent;
            silent_late += !t_closed[i] || life > 2.0 + 1.0;
        }
    }
    for (int i = 0; i < n; i++) {
        close(fd[i]);
        ws_close(&ws[i]);
    }
    /* the server's side of them is gone too */
    int fds = -1;
    for (int tries = 0; tries < 50 && (fds = crm_test_proc_fds(f->p.pid)) > fds0; tries++)
        usleep(100000);
    fprintf(stderr, "# R11: %d slowloris closed after at most %.2f s (timeout %.0f s), %d late; %d silent "
                    "closed after at most %.2f s (deadline 2 s), %d late, %d not 1008; a new client "
                    "served in %.3f s; server fds %d -> %d\n",
            n, worst_loris, HTTP_TIMEOUT_S, loris_late, n, worst_silent, silent_late, silent_not_1008,
            t_new, fds0, fds);
    assert_int_equal(loris_late, 0);
    assert_int_equal(silent_late, 0);
    assert_int_equal(silent_not_1008, 0);
    assert_true(t_new < 5.0); /* not a latency figure: the 10 s wait this fixed */
    assert_int_equal(fds, fds0);
    free(pf);
    free(fd);
    free(ws);
    free(t_open);
    free(t_closed);
}

/* ---- R12: a slow subscriber ---- */

typedef struct sampler {
    pid_t pid;
    volatile int stop;
    long peak; /* KiB of RssAnon */
} sampler;

static void *sample_rss(void *arg)
{
    sampler *sm = arg;
    while (!sm->stop) {
        long kb = crm_test_proc_kb(sm->pid, "RssAnon");
        if (kb > sm->peak)
            sm->peak = kb;
        usleep(5000);
    }
    return NULL;
}

#define R12_CHANGES 4000
#define R12_QUEUE (8 << 20) /* the default --send-queue */

/* Creates R12_CHANGES companies with ~6 KiB notes (pipelined, 100 at a
 * time); returns the feed seq of the last.  bystander reads every change. */
static int64_t r12_write(fixture *f, ws_client *writer, int round)
{
    static char blob[6145];
    char *req = malloc(6600);
    int64_t last = 0;
    memset(blob, 'n', 6144);
    (void)f;
    for (int i = 0; i < R12_CHANGES; i += 100) {
        for (int k = i; k < i + 100; k++) {
            snprintf(req, 6600,
                     "{\"ref\": %d, \"op\": \"create\", \"collection\": \"companies\", \"id\": \"co_r%d_%d\", "
                     "\"record\": {\"name\": \"R%d %d\", \"notes\": \"%s\"}}", 10000 + k, round, k, round, k, blob);
            assert_int_equal(ws_send_json(writer, req), 0);
        }
        for (int k = i; k < i + 100; k++) {
            crm_value *r = ws_reply(writer, 10000 + k, 10000, NULL);
            assert_non_null(r);
            assert_string_equal(code_of(r), "OK");
            crm_value_free(r);
        }
    }
    free(req);
    {
        int status;
        char *body, *at;
        assert_int_equal(http_get(f->p.port, "/metrics", &status, &body), 0);
        assert_non_null(at = strstr(body, "\ncrmd_feed_seq "));
        last = strtoll(at + 15, NULL, 10);
        free(body);
    }
    return last;
}

typedef struct sub_reader {
    ws_client *c;
    int64_t upto; /* read until this seq */
    int changes;
} sub_reader;

static void *read_until_seq(void *arg)
{
    sub_reader *rd = arg;
    crm_value *e;
    int64_t seen = 0;
    while (seen < rd->upto || rd->upto == 0) {
        if (!(e = ws_recv(rd->c, 20000, NULL)))
            break;
        if (strcmp(crm_map_str(e, "event", ""), "change") == 0) {
            rd->changes++;
            seen = crm_map_int(e, "seq", 0);
        }
        crm_value_free(e);
    }
    return NULL;
}

static void subscribe_ok(ws_client *c, int ref, const char *extra)
{
    char buf[256];
    snprintf(buf, sizeof buf, "{\"ref\": %d, \"op\": \"subscribe\", \"collection\": \"companies\"%s}", ref, extra);
    assert_int_equal(ws_send_json(c, buf), 0);
    crm_value *r = ws_reply(c, ref, 5000, NULL);
    assert_non_null(r);
    assert_string_equal(code_of(r), "OK");
    crm_value_free(r);
}

/* R12: the same write load twice: first with two subscribers that read
 * (the memory it needs anyway), then with one of them no longer reading and
 * the kernel's socket buffers full.  The server's extra memory stays within the
 * send-queue limit + 10%, the slow one gets every change up to an overflow
 * event, and resubscribing with since = the overflow's seq misses nothing. */
static void slow_subscriber_memory_and_resubscribe(void **state)
{
    fixture *f = *state;
    ws_client slow, fast, writer;
    sampler sm = {f->p.pid, 0, 0};
    pthread_t th_s, th_r;
    int64_t seq0, last;
    long base0, peak_reading, peak_slow;
    authed(f, &writer);
    authed(f, &fast);
    /* round 1: everybody reads */
    {
        ws_client s2;
        authed(f, &s2);
        subscribe_ok(&s2, 2, "");
        subscribe_ok(&fast, 2, "");
        base0 = crm_test_proc_kb(f->p.pid, "RssAnon");
        sm.peak = base0;
        pthread_create(&th_s, NULL, sample_rss, &sm);
        sub_reader r1 = {&fast, 0, 0}, r2 = {&s2, 0, 0};
        pthread_t a, b;
        int status;
        char *body, *at;
        assert_int_equal(http_get(f->p.port, "/metrics", &status, &body), 0);
        at = strstr(body, "\ncrmd_feed_seq ");
        r1.upto = r2.upto = strtoll(at + 15, NULL, 10) + R12_CHANGES;
        free(body);
        pthread_create(&a, NULL, read_until_seq, &r1);
        pthread_create(&b, NULL, read_until_seq, &r2);
        double tw = crm_test_now_s();
        r12_write(f, &writer, 1);
        fprintf(stderr, "# R12: round 1 writes took %.1f s\n", crm_test_now_s() - tw);
        pthread_join(a, NULL);
        pthread_join(b, NULL);
        sm.stop = 1;
        pthread_join(th_s, NULL);
        peak_reading = sm.peak;
        assert_int_equal(r1.changes, R12_CHANGES);
        assert_int_equal(r2.changes, R12_CHANGES);
        ws_close(&s2);
    }
    /* round 2: the slow one subscribes and reads nothing */
    memset(&slow, 0, sizeof slow);
    assert_int_equal(ws_connect(&slow, f->p.port, "crm.v1.json", NULL, NULL), 0);
    {
        char buf[256];
        snprintf(buf, sizeof buf, "{\"ref\": 1, \"op\": \"auth\", \"token\": \"%s\"}", f->admin);
        assert_int_equal(ws_send_json(&slow, buf), 0);
        crm_value *r = ws_reply(&slow, 1, 3000, NULL);
        assert_non_null(r);
        crm_value_free(r);
    }
    {
        int status;
        char *body, *at;
        assert_int_equal(http_get(f->p.port, "/metrics", &status, &body), 0);
        at = strstr(body, "\ncrmd_feed_seq ");
        seq0 = strtoll(at + 15, NULL, 10);
        free(body);
    }
    subscribe_ok(&slow, 2, "");
    sm.stop = 0;
    sm.peak = crm_test_proc_kb(f->p.pid, "RssAnon");
    pthread_create(&th_s, NULL, sample_rss, &sm);
    sub_reader rf = {&fast, seq0 + R12_CHANGES, 0};
    pthread_create(&th_r, NULL, read_until_seq, &rf);
    double tw = crm_test_now_s();
    last = r12_write(f, &writer, 2);
    fprintf(stderr, "# R12: round 2 writes took %.1f s\n", crm_test_now_s() - tw);
    pthread_join(th_r, NULL);
    sm.stop = 1;
    pthread_join(th_s, NULL);
    peak_slow = sm.peak;
    assert_int_equal(last, seq0 + R12_CHANGES);
    assert_int_equal(rf.changes, R12_CHANGES); /* the reading one missed nothing */
    /* now the slow one reads: changes seq0+1.. in order, then overflow */
    uint8_t *got = calloc(R12_CHANGES + 1, 1);
    int64_t next = seq0 + 1, ovf_seq = -1;
    int before = 0, after_ovf = 0, out_of_order = 0;
    crm_value *e;
    while ((e = ws_recv(&slow, 2000, NULL))) {
        const char *ev = crm_map_str(e, "event", "");
        if (strcmp(ev, "overflow") == 0) {
            ovf_seq = crm_map_int(e, "seq", -1);
        } else if (strcmp(ev, "change") == 0) {
            int64_t q = crm_map_int(e, "seq", 0);
            if (ovf_seq >= 0)
                after_ovf++;
            out_of_order += q != next;
            next = q + 1;
            if (q > seq0 && q <= last)
                got[q - seq0] = 1;
            before++;
        }
        crm_value_free(e);
    }
    if (!(ovf_seq >= seq0 && ovf_seq < last))
        fprintf(stderr, "R12: the slow subscriber got %d changes (to seq %lld), overflow at %lld, seq0 %lld, "
                        "last %lld\n", before, (long long)next - 1, (long long)ovf_seq, (long long)seq0,
                (long long)last);
    assert_true(ovf_seq >= seq0 && ovf_seq < last);
    assert_int_equal(after_ovf, 0);
    assert_int_equal(out_of_order, 0);
    assert_int_equal(next - 1, ovf_seq); /* every change up to the overflow's seq came */
    /* resubscribe with since = the last seq seen, again after each overflow
     * (a replay larger than the send queue overflows too), until caught up:
     * nothing missed, nothing twice */
    int replayed = 0, rounds = 0, sub = 1;
    while (next <= last && rounds < 50) {
        char extra[64];
        int64_t o = -1;
        rounds++;
        snprintf(extra, sizeof extra, ", \"since\": %lld", (long long)(next - 1));
        subscribe_ok(&slow, 100 + rounds, extra);
        sub++;
        while (next <= last && (e = ws_recv(&slow, 5000, NULL))) {
            const char *ev = crm_map_str(e, "event", "");
            if (strcmp(ev, "overflow") == 0 && crm_map_int(e, "sub", 0) == sub) {
                o = crm_map_int(e, "seq", -1);
                out_of_order += o != next - 1; /* every change up to its seq came */
                crm_value_free(e);
                break;
            }
            if (strcmp(ev, "change") == 0 && crm_map_int(e, "sub", 0) == sub) {
                int64_t q = crm_map_int(e, "seq", 0);
                out_of_order += q != next;
                next = q + 1;
                if (q > seq0 && q <= last)
                    got[q - seq0] = 1;
                replayed++;
            }
            crm_value_free(e);
        }
        if (o < 0 && next <= last)
            break; /* neither caught up nor overflowed: a stall */
    }
    int missing = 0;
    for (int i = 1; i <= R12_CHANGES; i++)
        missing += !got[i];
    long extra_kb = peak_slow - peak_reading;
    fprintf(stderr, "# R12: %d changes of ~6 KiB; server RssAnon peak %ld KiB with every subscriber "
                    "reading, %ld KiB with one not reading: +%ld KiB (send queue %d KiB); the slow one got "
                    "%d changes then overflow at seq %lld, %d more by since in %d resubscriptions; missing %d\n",
            R12_CHANGES, peak_reading, peak_slow, extra_kb, R12_QUEUE >> 10, before, (long long)ovf_seq,
            replayed, rounds, missing);
    free(got);
    assert_int_equal(out_of_order, 0);
    assert_int_equal(missing, 0);
#ifndef CRM_TEST_SANITIZED /* see tests/CMakeLists.txt */
    assert_true(extra_kb <= (long)(R12_QUEUE / 1024) * 11 / 10);
#endif
    ws_close(&slow);
    ws_close(&fast);
    ws_close(&writer);
}

/* ---- R13: one connection floods ---- */

static int setup_flood(void **state)
{
    return start(state, "--rate 1000");
}

typedef struct flood_reader {
    ws_client *c;
    size_t want, answered, limited;
} flood_reader;

static void *read_answers(void *arg)
{
    flood_reader *fr = arg;
    crm_value *r;
    while (fr->answered < fr->want && (r = ws_recv(fr->c, 10000, NULL))) {
        fr->answered++;
        fr->limited += strcmp(code_of(r), "RATE_LIMITED") == 0;
        crm_value_free(r);
    }
    return NULL;
}

/* A client pipelines pings as fast as it can write and reads nothing for
 * 3 s: the server stops reading it once its replies pass the send-queue
 * limit (before: 1 GB of queued replies in 10 s), its memory stays within
 * the limit + 10%, another connection is served meanwhile (its own rate
 * budget: no RATE_LIMITED), and once the flooder reads it gets an answer to
 * every request it sent, RATE_LIMITED for those past 1,000 a second. */
static void flood_is_bounded_and_rate_limited(void **state)
{
    fixture *f = *state;
    ws_client flood, other;
    static uint8_t burst[1000 * 27];
    size_t bl = 0, sent = 0, off = 0;
    long base, peak = 0;
    int served = 0;
    static const char m[] = "{\"ref\":1,\"op\":\"ping\"}";
    authed(f, &flood);
    authed(f, &other);
    for (int i = 0; i < 1000; i++) { /* masked with a zero key: the bytes as they are */
        burst[bl++] = 0x81;
        burst[bl++] = 0x80 | (sizeof m - 1);
        memset(burst + bl, 0, 4), bl += 4;
        memcpy(burst + bl, m, sizeof m - 1), bl += sizeof m - 1;
    }
    base = crm_test_proc_kb(f->p.pid, "RssAnon");
    fcntl(flood.fd, F_SETFL, O_NONBLOCK);
    double t0 = crm_test_now_s();
    while (crm_test_now_s() - t0 < 3.0) {
        ssize_t w = write(flood.fd, burst + off, bl - off);
        if (w > 0) {
            off = (off + (size_t)w) % bl;
            sent += (size_t)w;
        } else {
            /* blocked: the server is not reading us; serve the other one */
            char buf[64];
            snprintf(buf, sizeof buf, "{\"ref\": %d, \"op\": \"ping\"}", 500 + served);
            assert_int_equal(ws_send_json(&other, buf), 0);
            crm_value *r = ws_reply(&other, 500 + served, 5000, NULL);
            assert_non_null(r);
            assert_string_equal(code_of(r), "OK");
            crm_value_free(r);
            served++;
            long kb = crm_test_proc_kb(f->p.pid, "RssAnon");
            peak = kb > peak ? kb : peak;
            usleep(10000);
        }
    }
    /* finish the frame we were in, so the stream stays well formed */
    fcntl(flood.fd, F_SETFL, 0);
    size_t whole = sent / (bl / 1000), partial = sent % (bl / 1000);
    long kb = crm_test_proc_kb(f->p.pid, "RssAnon");
    peak = kb > peak ? kb : peak;
    /* read every answer (a thread: the server reads nothing more from us
     * until we do), and complete the frame we were in */
    flood_reader fr = {&flood, whole + (partial != 0), 0, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, read_answers, &fr), 0);
    if (partial) {
        assert_int_equal(ws_send_raw(&flood, burst + (sent % bl), bl / 1000 - partial), 0);
        whole++;
    }
    pthread_join(th, NULL);
    size_t answered = fr.answered, limited = fr.limited;
    fprintf(stderr, "# R13: flooder sent %zu requests in 3 s, all answered: %zu (%zu RATE_LIMITED); "
                    "server RssAnon %ld -> peak %ld KiB (+%ld; send queue 8192 KiB); the other "
                    "connection was served %d times meanwhile\n",
            whole, answered, limited, base, peak, peak - base, served);
    assert_int_equal(answered, whole);
    assert_true(limited > 0);
    assert_true(served > 0);
#ifndef CRM_TEST_SANITIZED
    assert_true(peak - base <= 8192L * 11 / 10);
#endif
    ws_close(&flood);
    ws_close(&other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(rate_and_subscription_limits, setup_tight, teardown),
        cmocka_unit_test_setup_teardown(auth_deadline_closes_silent_connections, setup_tight, teardown),
        cmocka_unit_test_setup_teardown(quiet_peers_are_pinged_and_dead_ones_hung_up, setup_tight, teardown),
        cmocka_unit_test_setup_teardown(slow_subscriber_overflows_alone, setup_small_queue, teardown),
        cmocka_unit_test_setup_teardown(slowloris_and_never_authenticated, setup_preauth, teardown),
        cmocka_unit_test_setup_teardown(slow_subscriber_memory_and_resubscribe, setup_default, teardown),
        cmocka_unit_test_setup_teardown(flood_is_bounded_and_rate_limited, setup_flood, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
