/*
 * bench_hostile -- other clients' latency while hostile clients attack
 * (reliability plan R10-R13, the measuring half; the CI half with counts,
 * codes and memory bounds is tests/e2e/test_hostile.c and test_limits.c).
 *
 * One crmd (default limits, no scripts or plugins) that this program starts
 * itself.  BYSTANDERS authenticated connections (default 4), each a thread
 * in a closed loop (send, wait for the reply, record the round trip),
 * alternating ping and a get of one record, run through every phase; each
 * phase lasts CRM_BENCH_SECONDS (default 5):
 *
 *   idle      the bystanders alone: the baseline, measured in the same run
 *   R10       two threads opening connection after connection, each sending
 *             one hostile case (truncated JSON and msgpack, bad UTF-8,
 *             nesting 10^5 deep, msgpack giant counts, reserved opcodes,
 *             control frames over 125 bytes, 1 MiB + 1, endless
 *             continuation frames) and waiting for the close
 *   R11       500 connections trickling their HTTP head and 500 upgraded
 *             ones that never authenticate (the default 10 s deadlines are
 *             longer than the phase; a slowloris connection closed by its
 *             timeout is replaced)
 *   R12 base  a writer creating companies with ~2 KiB notes, pipelined, and
 *             two subscribers that read: the load R12 adds on its own
 *   R12       the same with one of the subscribers no longer reading
 *             (it overflows; the server's extra memory is reported)
 *   R13 quiet one connection pipelining pings as fast as it can write and
 *             reading nothing (the server pauses it at its send-queue limit)
 *   R13 read  the same but reading every answer (mostly RATE_LIMITED): the
 *             server answers it at full speed
 *
 * For each phase: bystander requests, p50 / p99 / max in ms, p99 against
 * the idle p99, and the server's peak RssAnon.  The figures are from a
 * shared, noisy machine unless the report says otherwise; the plan's target
 * is p99 <= 2 x the idle p99.
 *
 * Env: CRM_BENCH_SECONDS (5), CRM_BENCH_BYSTANDERS (4),
 * CRM_BENCH_BYSTANDER_RATE (200), CRM_CRMD,
 * CRM_SCHEMAS, CRM_BENCH_DIR (where the data folder goes).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "benchutil.h"
#include "codec.h"
#include "machine.h"
#include "testutil.h"
#include "tmpdir.h"
#include "wsclient.h"

#ifndef CRM_SOURCE_DIR
#define CRM_SOURCE_DIR "."
#endif
#ifndef CRM_CRMD_PATH
#define CRM_CRMD_PATH "crmd"
#endif

static crmd_proc P;
static char *ADMIN;
static volatile int stop_attack, stop_all, stop_readers;

/* ---- bystanders ---- */

#define MAX_BY 32
#define MAX_LAT 2000000

typedef struct bystander {
    pthread_t th;
    ws_client c;
    int id;
    /* latencies of the current phase (µs), filled by the thread */
    uint32_t *lat;
    volatile size_t n;
    volatile int phase_gen;
    size_t errors;
} bystander;

static bystander BY[MAX_BY];
static int NBY = 4;
static pthread_mutex_t lat_mu = PTHREAD_MUTEX_INITIALIZER;

static double BY_RATE = 200; /* requests per second per bystander */

static void *bystander_run(void *arg)
{
    bystander *b = arg;
    long long ref = 1000;
    double next = bench_now_s();
    while (!stop_all) {
        /* paced: a client at BY_RATE, not a load generator (the next request
         * leaves at its slot, or at once when the last reply came late) */
        double wait = next - bench_now_s();
        if (wait > 0)
            usleep((useconds_t)(wait * 1e6));
        next += 1.0 / BY_RATE;
        if (next < bench_now_s())
            next = bench_now_s();
        char m[160];
        ref++;
        if (ref & 1)
            snprintf(m, sizeof m, "{\"ref\": %lld, \"op\": \"ping\"}", ref);
        else
            snprintf(m, sizeof m, "{\"ref\": %lld, \"op\": \"get\", \"collection\": \"companies\", \"id\": \"co_by\"}",
                     ref);
        double t0 = bench_now_s();
        if (ws_send_json(&b->c, m) != 0)
            bench_die("bystander %d: send failed", b->id);
        crm_value *r = ws_reply(&b->c, ref, 30000, NULL);
        double us = (bench_now_s() - t0) * 1e6;
        if (!r)
            bench_die("bystander %d: no reply in 30 s", b->id);
        if (strcmp(ws_code(r), "OK") != 0)
            b->errors++;
        crm_value_free(r);
        pthread_mutex_lock(&lat_mu);
        if (b->n < MAX_LAT)
            b->lat[b->n++] = us > 4e9 ? 4000000000u : (uint32_t)us;
        pthread_mutex_unlock(&lat_mu);
    }
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

typedef struct result {
    const char *name, *what;
    size_t n, errors;
    double p50, p99, max; /* ms */
    long rss_peak, rss_base; /* KiB of RssAnon */
    char note[256];
} result;

static volatile long rss_peak;

static void *rss_watch(void *arg)
{
    (void)arg;
    while (!stop_all) {
        long kb = crm_test_proc_kb(P.pid, "RssAnon");
        if (kb > rss_peak)
            rss_peak = kb;
        usleep(10000);
    }
    return NULL;
}

/* Runs the bystanders for secs and collects their latencies. */
static void measure(result *r, double secs)
{
    pthread_mutex_lock(&lat_mu);
    for (int i = 0; i < NBY; i++)
        BY[i].n = BY[i].errors = 0;
    r->rss_base = crm_test_proc_kb(P.pid, "RssAnon");
    rss_peak = r->rss_base;
    pthread_mutex_unlock(&lat_mu);
    usleep((useconds_t)(secs * 1e6));
    pthread_mutex_lock(&lat_mu);
    size_t n = 0;
    for (int i = 0; i < NBY; i++)
        n += BY[i].n;
    uint32_t *all = malloc((n ? n : 1) * sizeof *all);
    n = 0;
    r->errors = 0;
    for (int i = 0; i < NBY; i++) {
        memcpy(all + n, BY[i].lat, BY[i].n * sizeof *all);
        n += BY[i].n;
        r->errors += BY[i].errors;
    }
    r->rss_peak = rss_peak;
    pthread_mutex_unlock(&lat_mu);
    qsort(all, n, sizeof *all, cmp_u32);
    r->n = n;
    r->p50 = n ? all[n / 2] / 1000.0 : 0;
    r->p99 = n ? all[(size_t)((double)(n - 1) * 0.99)] / 1000.0 : 0;
    r->max = n ? all[n - 1] / 1000.0 : 0;
    free(all);
}

/* ---- raw sockets ---- */

static int tcp_open(void)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)P.port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void frame(uint8_t **out, size_t *olen, uint8_t b0, const void *p, size_t len)
{
    uint8_t *o = realloc(*out, *olen + 14 + len);
    size_t h = *olen;
    if (!o)
        bench_die("out of memory");
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
    memset(o + h, 0, 4); /* a zero mask: the payload as it is */
    memcpy(o + h + 4, p, len);
    *out = o;
    *olen = h + 4 + len;
}

/* ---- R10 ---- */

static size_t r10_cases;

static void *r10_attacker(void *arg)
{
    unsigned k = (unsigned)(uintptr_t)arg;
    static const char req[] = "{\"ref\":3,\"op\":\"query\",\"collection\":\"companies\",\"limit\":5}";
    uint8_t *big = malloc((1u << 20) + 1);
    memset(big, ' ', (1u << 20) + 1);
    big[0] = '{';
    while (!stop_attack) {
        ws_client c;
        uint8_t *f = NULL;
        size_t fl = 0;
        const char *proto = "crm.v1.json";
        unsigned kind = k++ % 8;
        switch (kind) {
        case 0: /* a truncation */
            frame(&f, &fl, 0x81, req, k % (sizeof req - 1));
            break;
        case 1: /* bad UTF-8 */
            frame(&f, &fl, 0x81, "{\"ref\":1,\"op\":\"\xff\xfe\"}", 20);
            break;
        case 2: { /* nesting 10^5 */
            size_t d = 100000;
            uint8_t *m = malloc(2 * d);
            memset(m, '[', d);
            memset(m + d, ']', d);
            frame(&f, &fl, 0x81, m, 2 * d);
            free(m);
            break;
        }
        case 3: /* msgpack array32 of 10^8 */
            proto = "crm.v1.msgpack";
            frame(&f, &fl, 0x82, "\xdd\x05\xf5\xe1\x00", 5);
            break;
        case 4: /* a reserved opcode */
            frame(&f, &fl, 0x83, "x", 1);
            break;
        case 5: /* a ping of 200 bytes */
            frame(&f, &fl, 0x89, big, 200);
            break;
        case 6: /* 1 MiB + 1 */
            frame(&f, &fl, 0x81, big, (1u << 20) + 1);
            break;
        default: /* continuation frames past the limit */
            frame(&f, &fl, 0x01, "{\"p\":\"", 6);
            for (int i = 0; i < 20; i++)
                frame(&f, &fl, 0x00, big, 65536);
            break;
        }
        if (ws_connect(&c, P.port, proto, NULL, NULL) == 0) {
            if (kind >= 6 && ws_auth(&c, ADMIN, 5000) != 0)
                bench_die("R10: auth failed");
            ws_send_raw(&c, f, fl);
            int code = 0;
            crm_value *v;
            while ((v = ws_recv(&c, 5000, &code)))
                crm_value_free(v);
            ws_close(&c);
            __atomic_fetch_add(&r10_cases, 1, __ATOMIC_RELAXED);
        }
        free(f);
    }
    free(big);
    return NULL;
}

/* ---- R11 ---- */

#define R11_N 500

typedef struct r11 {
    int loris[R11_N];
    ws_client silent[R11_N];
    int n;
} r11;

static void *r11_trickle(void *arg)
{
    r11 *x = arg;
    static const char hdr[] = "X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    size_t i = 0;
    while (!stop_attack) {
        for (int k = 0; k < x->n; k++)
            if (x->loris[k] >= 0 && write(x->loris[k], hdr + i % (sizeof hdr - 1), 1) < 0 && errno != EAGAIN) {
                close(x->loris[k]);
                x->loris[k] = tcp_open(); /* closed by the timeout: another one */
                if (x->loris[k] >= 0) {
                    (void)!write(x->loris[k], "GET /ws HTTP/1.1\r\n", 18);
                    fcntl(x->loris[k], F_SETFL, O_NONBLOCK);
                }
            }
        i++;
        usleep(200000);
    }
    return NULL;
}

/* ---- R12 ---- */

typedef struct r12 {
    ws_client writer, reader, slow;
    int slow_reads;
    size_t writes, reader_changes, slow_changes, overflows;
} r12;

static void *r12_write(void *arg)
{
    r12 *x = arg;
    static char blob[2049];
    char *m = malloc(2400);
    long long ref = 1;
    memset(blob, 'n', 2048);
    while (!stop_attack) {
        for (int k = 0; k < 50; k++) {
            snprintf(m, 2400,
                     "{\"ref\": %lld, \"op\": \"create\", \"collection\": \"companies\", "
                     "\"record\": {\"name\": \"W %lld\", \"notes\": \"%s\"}}", ref + k, ref + k, blob);
            if (ws_send_json(&x->writer, m) != 0)
                bench_die("R12 writer: send");
        }
        for (int k = 0; k < 50; k++) {
            crm_value *r = ws_reply(&x->writer, ref + k, 30000, NULL);
            if (!r)
                bench_die("R12 writer: no ack");
            crm_value_free(r);
        }
        ref += 50;
        x->writes += 50;
    }
    free(m);
    return NULL;
}

static void *r12_read(void *arg)
{
    ws_client *c = arg;
    while (!stop_readers) {
        crm_value *e = ws_recv(c, 200, NULL);
        crm_value_free(e);
    }
    return NULL;
}

/* ---- R13 ---- */

typedef struct r13 {
    ws_client c;
    int reads;
    size_t sent, answered;
} r13;

static void *r13_flood(void *arg)
{
    r13 *x = arg;
    uint8_t *burst = NULL;
    size_t bl = 0, off = 0;
    static const char m[] = "{\"ref\":1,\"op\":\"ping\"}";
    for (int i = 0; i < 1000; i++)
        frame(&burst, &bl, 0x81, m, sizeof m - 1);
    fcntl(x->c.fd, F_SETFL, O_NONBLOCK);
    while (!stop_attack) {
        ssize_t w = write(x->c.fd, burst + off, bl - off);
        if (w > 0) {
            off = (off + (size_t)w) % bl;
            x->sent += (size_t)w;
        } else {
            struct pollfd pf = {x->c.fd, POLLOUT, 0};
            poll(&pf, 1, 20);
        }
    }
    free(burst);
    return NULL;
}

static void *r13_drain(void *arg)
{
    r13 *x = arg;
    char buf[1 << 16];
    while (!stop_readers) {
        struct pollfd pf = {x->c.fd, POLLIN, 0};
        if (poll(&pf, 1, 100) == 1) {
            ssize_t r = read(x->c.fd, buf, sizeof buf);
            if (r <= 0)
                break;
            x->answered += (size_t)r;
        }
    }
    return NULL;
}

/* ---- main ---- */

static void authed(ws_client *c)
{
    if (ws_connect(c, P.port, "crm.v1.json", NULL, NULL) != 0 || ws_auth(c, ADMIN, 5000) != 0)
        bench_die("cannot connect and authenticate");
}

static void print_row(const result *r, const result *idle)
{
    printf("| %s | %s | %zu | %zu | %.3f | %.3f | %.2f | %.2f | %ld | %s |\n", r->name, r->what, r->n, r->errors,
           r->p50, r->p99, r->max, idle->p99 > 0 ? r->p99 / idle->p99 : 0, r->rss_peak - r->rss_base, r->note);
}

int main(void)
{
    const char *bin = getenv("CRM_CRMD") ? getenv("CRM_CRMD") : CRM_CRMD_PATH;
    const char *schemas = getenv("CRM_SCHEMAS") ? getenv("CRM_SCHEMAS") : CRM_SOURCE_DIR "/schemas";
    const char *dir = getenv("CRM_BENCH_DIR");
    double secs = getenv("CRM_BENCH_SECONDS") ? atof(getenv("CRM_BENCH_SECONDS")) : 5;
    char model[256], load0[64], load1[64], *data;
    result res[8];
    int nres = 0;
    struct rlimit rl;
    pthread_t rw;
    signal(SIGPIPE, SIG_IGN);
    if (getenv("CRM_BENCH_BYSTANDERS"))
        NBY = atoi(getenv("CRM_BENCH_BYSTANDERS"));
    if (getenv("CRM_BENCH_BYSTANDER_RATE"))
        BY_RATE = atof(getenv("CRM_BENCH_BYSTANDER_RATE"));
    if (!(BY_RATE >= 1 && BY_RATE <= 10000))
        bench_die("CRM_BENCH_BYSTANDER_RATE must be 1 to 10000");
    if (NBY < 1 || NBY > MAX_BY)
        bench_die("CRM_BENCH_BYSTANDERS must be 1 to %d", MAX_BY);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (dir)
        setenv("TMPDIR", dir, 1);
    data = crm_tmpdir_make("bench-hostile");
    bench_cpu_model(model, sizeof model);
    bench_loadavg(load0, sizeof load0);
    setenv("CRMD_ARGS", "", 1);
    if (crmd_start(&P, bin, schemas, data) != 0)
        bench_die("crmd did not start (%s)", bin);
    if (!(ADMIN = crmd_token(&P, "admin")))
        bench_die("no admin token");
    {
        ws_client a;
        authed(&a);
        crm_value *r = ws_request(&a, 5000, NULL,
                                  "{\"op\": \"create\", \"collection\": \"companies\", \"id\": \"co_by\", "
                                  "\"record\": {\"name\": \"Bystander\"}}");
        if (!r || strcmp(ws_code(r), "OK") != 0)
            bench_die("seed create failed");
        crm_value_free(r);
        ws_close(&a);
    }
    for (int i = 0; i < NBY; i++) {
        BY[i].id = i;
        BY[i].lat = malloc(MAX_LAT * sizeof *BY[i].lat);
        authed(&BY[i].c);
        pthread_create(&BY[i].th, NULL, bystander_run, &BY[i]);
    }
    pthread_create(&rw, NULL, rss_watch, NULL);
    usleep(500000); /* warm-up, not counted */

    /* idle */
    result *idle = &res[nres++];
    memset(idle, 0, sizeof *idle);
    idle->name = "idle";
    idle->what = "bystanders alone (the baseline)";
    measure(idle, secs);

    /* R10 */
    {
        result *r = &res[nres++];
        pthread_t a[2];
        memset(r, 0, sizeof *r);
        r->name = "R10";
        r->what = "hostile frames, 2 attackers, a new connection per case";
        stop_attack = 0;
        for (int i = 0; i < 2; i++)
            pthread_create(&a[i], NULL, r10_attacker, (void *)(uintptr_t)(i * 4));
        measure(r, secs);
        stop_attack = 1;
        for (int i = 0; i < 2; i++)
            pthread_join(a[i], NULL);
        snprintf(r->note, sizeof r->note, "%zu hostile cases", r10_cases);
    }

    /* R11 */
    {
        result *r = &res[nres++];
        static r11 x;
        pthread_t t;
        memset(r, 0, sizeof *r);
        r->name = "R11";
        r->what = "500 slowloris + 500 upgraded, never authenticated";
        x.n = R11_N;
        for (int i = 0; i < R11_N; i++) {
            if ((x.loris[i] = tcp_open()) < 0)
                bench_die("R11: connect");
            (void)!write(x.loris[i], "GET /ws HTTP/1.1\r\n", 18);
            fcntl(x.loris[i], F_SETFL, O_NONBLOCK);
            if (ws_connect(&x.silent[i], P.port, "crm.v1.json", NULL, NULL) != 0)
                bench_die("R11: upgrade");
        }
        int fds = crm_test_proc_fds(P.pid);
        stop_attack = 0;
        pthread_create(&t, NULL, r11_trickle, &x);
        measure(r, secs);
        stop_attack = 1;
        pthread_join(t, NULL);
        for (int i = 0; i < R11_N; i++) {
            if (x.loris[i] >= 0)
                close(x.loris[i]);
            ws_close(&x.silent[i]);
        }
        snprintf(r->note, sizeof r->note, "server fds during: %d", fds);
    }

    /* R12: the write load with readers, then with a slow subscriber */
    for (int slow = 0; slow < 2; slow++) {
        result *r = &res[nres++];
        static r12 x;
        pthread_t w, rd;
        memset(r, 0, sizeof *r);
        memset(&x, 0, sizeof x);
        r->name = slow ? "R12" : "R12 base";
        r->what = slow ? "writer + a reading and a non-reading subscriber"
                       : "writer (~2 KiB creates, 50 pipelined) + 2 reading subscribers";
        authed(&x.writer);
        authed(&x.reader);
        authed(&x.slow);
        for (int k = 0; k < 2; k++) {
            crm_value *s = ws_request(k ? &x.slow : &x.reader, 5000, NULL,
                                      "{\"op\": \"subscribe\", \"collection\": \"companies\"}");
            if (!s || strcmp(ws_code(s), "OK") != 0)
                bench_die("R12: subscribe");
            crm_value_free(s);
        }
        pthread_t rs;
        stop_attack = 0;
        pthread_create(&rd, NULL, r12_read, &x.reader);
        if (!slow)
            pthread_create(&rs, NULL, r12_read, &x.slow);
        pthread_create(&w, NULL, r12_write, &x);
        measure(r, secs);
        stop_attack = 1;
        pthread_join(w, NULL);
        char *body;
        int status;
        unsigned long long ovf = 0;
        if (http_get(P.port, "/metrics", &status, &body) == 0) {
            char *at = strstr(body, "\ncrmd_overflows_total ");
            if (at)
                ovf = strtoull(at + 22, NULL, 10);
            free(body);
        }
        snprintf(r->note, sizeof r->note, "%zu creates acked; overflows so far: %llu", x.writes, ovf);
        stop_readers = 1;
        pthread_join(rd, NULL);
        if (!slow)
            pthread_join(rs, NULL);
        stop_readers = 0;
        ws_close(&x.writer);
        ws_close(&x.reader);
        ws_close(&x.slow);
    }
    /* R13 */
    for (int reads = 0; reads < 2; reads++) {
        result *r = &res[nres++];
        static r13 x;
        pthread_t f, d;
        memset(r, 0, sizeof *r);
        memset(&x, 0, sizeof x);
        r->name = reads ? "R13 read" : "R13 quiet";
        r->what = reads ? "one connection floods pings and reads the answers"
                        : "one connection floods pings and reads nothing";
        authed(&x.c);
        stop_attack = 0;
        pthread_create(&f, NULL, r13_flood, &x);
        if (reads)
            pthread_create(&d, NULL, r13_drain, &x);
        measure(r, secs);
        stop_attack = 1;
        pthread_join(f, NULL);
        snprintf(r->note, sizeof r->note, "flooder wrote %zu requests (%.0f/s)", x.sent / 27,
                 (double)x.sent / 27 / secs);
        if (reads) {
            stop_readers = 1;
            pthread_join(d, NULL);
            stop_readers = 0;
        }
        ws_close(&x.c);
    }
    stop_all = 1;
    for (int i = 0; i < NBY; i++)
        pthread_join(BY[i].th, NULL);
    pthread_join(rw, NULL);
    bench_loadavg(load1, sizeof load1);
    int rc = crmd_stop(&P);

    printf("# bench_hostile: bystanders' latency under attack (R10-R13)\n\n");
    printf("%d bystander connections, each %.0f requests/s (ping / get, one at a time), %.0f s per phase, "
           "one crmd with default limits; %s, %ld GiB; load average %s before, %s after.\n\n",
           NBY, BY_RATE, secs, model, bench_mem_gib(), load0, load1);
    printf("| phase | attack | bystander requests | failed | p50 ms | p99 ms | max ms | p99 / idle p99 | server "
           "RssAnon growth KiB | notes |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for (int i = 0; i < nres; i++)
        print_row(&res[i], idle);
    size_t errors = 0;
    for (int i = 0; i < nres; i++)
        errors += res[i].errors;
    printf("\nBystander requests that failed: %zu.  crmd exit status: %d.  Target (plan): p99 <= 2 x the idle "
           "p99 in every phase.\n",
           errors, rc);
    return rc == 0 && errors == 0 ? 0 : 1;
}
