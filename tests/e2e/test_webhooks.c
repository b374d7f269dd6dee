/*
 * test_webhooks -- the webhooks plugin (plugins/webhooks) in a real crmd
 * over WebSocket, only that plugin loaded (a copy of build/plugins/
 * webhooks.so linked into a temp plugins folder, with a webhooks.json per
 * test), delivering to a real HTTP receiver written here: a loopback
 * listener with a thread per connection that records every request and
 * answers by path:
 *   /ok, /a, /b   200
 *   /flaky        500 while flaky_left > 0, then 200
 *   /slow         200 after 30 ms
 *   /hang         reads the request and never answers
 * and a port nobody listens on (connection refused).
 *
 *  - signed_filtered: the signature verifies with the secret, X-Crmd-Seq
 *    equals the body's seq and rises per webhook, the where-filter is kept
 *    (a change leaving or deleting a matching record included), a webhook
 *    on two collections gets both; bad webhooks are refused, other roles
 *    cannot read webhooks, clients cannot write the outbox;
 *  - retries_and_dead_letters: 500, 500, then 200 on the first delivery:
 *    three attempts of the same seq, then the rest in order; a refused
 *    endpoint ends in webhook_dead_letters (reason attempts, with the body);
 *    the outbox empties;
 *  - dead_endpoints_do_not_delay: a webhook whose receiver never answers
 *    and one whose port refuses connections beside a healthy one: the
 *    healthy one gets every change (while the hanging one is still waiting
 *    on its first), and crmd still stops cleanly;
 *  - restart_no_gap: crmd is SIGKILLed while deliveries to a slow receiver
 *    are queued, restarted on the same data, and more changes are written:
 *    every change arrives, the first arrivals of distinct seqs rise, and a
 *    repeated seq carries the same change;
 *  - erase_drops_deliveries: privacy.erase of a contact whose deliveries
 *    wait on a down receiver: none is sent, nothing sent after carries the
 *    erased values, data.mdb holds none of them.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "testutil.h"
#include "tmpdir.h"
#include "wsclient.h"

#define SECRET_A "a-secret-of-sixteen-or-more"
#define SECRET_B "another-secret-0123456789"

/* ---- the receiver ---- */

typedef struct delivery {
    char path[64], hook[160], sig[128], ts[32], seqh[32], attempt[16];
    char *body;
    int answered; /* the status we answered (0: none) */
} delivery;

#define MAX_DELIVERIES 4096

static struct {
    pthread_mutex_t lock;
    delivery d[MAX_DELIVERIES];
    int n;
    int flaky_left;
    volatile int stopping;
    int fd, port;
    pthread_t acceptor;
} rx = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void copy_header(const char *hdrs, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    out[0] = '\0';
    for (const char *p = hdrs; p && *p; p = strstr(p, "\r\n") ? strstr(p, "\r\n") + 2 : NULL) {
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1, *e;
            while (*v == ' ')
                v++;
            e = strstr(v, "\r\n");
            size_t l = e ? (size_t)(e - v) : strlen(v);
            if (l >= cap)
                l = cap - 1;
            memcpy(out, v, l);
            out[l] = '\0';
            return;
        }
    }
}

static void *serve_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char *buf = malloc(1 << 20);
    size_t n = 0, need = 0;
    char *hend = NULL;
    delivery d;
    memset(&d, 0, sizeof d);
    while (buf && n < (1 << 20) - 1) {
        ssize_t r = read(fd, buf + n, (1 << 20) - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        buf[n] = '\0';
        if (!hend && (hend = strstr(buf, "\r\n\r\n"))) {
            char cl[32];
            copy_header(buf, "Content-Length", cl, sizeof cl);
            need = (size_t)(hend - buf) + 4 + (size_t)atol(cl);
        }
        if (hend && n >= need)
            break;
    }
    if (!buf || !hend || n < need) {
        free(buf);
        close(fd);
        return NULL;
    }
    *hend = '\0';
    sscanf(buf, "POST %63s", d.path);
    copy_header(buf, "X-Crmd-Webhook", d.hook, sizeof d.hook);
    copy_header(buf, "X-Crmd-Signature", d.sig, sizeof d.sig);
    copy_header(buf, "X-Crmd-Timestamp", d.ts, sizeof d.ts);
    copy_header(buf, "X-Crmd-Seq", d.seqh, sizeof d.seqh);
    copy_header(buf, "X-Crmd-Attempt", d.attempt, sizeof d.attempt);
    d.body = strndup(hend + 4, need - (size_t)(hend + 4 - buf));
    free(buf);
    if (strcmp(d.path, "/hang") == 0) {
        pthread_mutex_lock(&rx.lock);
        if (rx.n < MAX_DELIVERIES)
            rx.d[rx.n++] = d;
        else
            free(d.body);
        pthread_mutex_unlock(&rx.lock);
        while (!rx.stopping)
            usleep(50000);
        close(fd);
        return NULL;
    }
    if (strcmp(d.path, "/slow") == 0)
        usleep(30000);
    pthread_mutex_lock(&rx.lock);
    d.answered = 200;
    if (strcmp(d.path, "/flaky") == 0 && rx.flaky_left > 0) {
        rx.flaky_left--;
        d.answered = 500;
    }
    if (rx.n < MAX_DELIVERIES)
        rx.d[rx.n++] = d;
    else
        free(d.body);
    pthread_mutex_unlock(&rx.lock);
    const char *resp = d.answered == 200
                           ? "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                           : "HTTP/1.1 500 Oops\r\nContent-Length: 4\r\nConnection: close\r\n\r\noops";
    (void)!write(fd, resp, strlen(resp));
    close(fd);
    return NULL;
}

static void *accept_loop(void *arg)
{
    (void)arg;
    while (!rx.stopping) {
        int c = accept(rx.fd, NULL, NULL);
        pthread_t t;
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            break;
        }
        if (pthread_create(&t, NULL, serve_conn, (void *)(intptr_t)c) == 0)
            pthread_detach(t);
        else
            close(c);
    }
    return NULL;
}

static int listen_loopback(int *port)
{
    struct sockaddr_in sa = {0};
    socklen_t sl = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 128) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0)
        return -1;
    *port = ntohs(sa.sin_port);
    return fd;
}

static void rx_reset(void)
{
    pthread_mutex_lock(&rx.lock);
    for (int i = 0; i < rx.n; i++)
        free(rx.d[i].body);
    rx.n = 0;
    rx.flaky_left = 0;
    pthread_mutex_unlock(&rx.lock);
}

/* A port that refuses connections: bound, then closed. */
static int refused_port(void)
{
    int port, fd = listen_loopback(&port);
    assert_true(fd >= 0);
    close(fd);
    return port;
}

static int count_path(const char *path, int answered)
{
    int n = 0;
    pthread_mutex_lock(&rx.lock);
    for (int i = 0; i < rx.n; i++)
        if (strcmp(rx.d[i].path, path) == 0 && (!answered || rx.d[i].answered == answered))
            n++;
    pthread_mutex_unlock(&rx.lock);
    return n;
}

/* Waits until path has at least n requests answered `answered` (0: any). */
static int wait_path(const char *path, int answered, int n, double seconds)
{
    double end = crm_test_now_s() + seconds;
    while (crm_test_now_s() < end) {
        if (count_path(path, answered) >= n)
            return 1;
        usleep(20000);
    }
    fprintf(stderr, "waited %.0f s for %d requests to %s, got %d\n", seconds, n, path,
            count_path(path, answered));
    return 0;
}

/* ---- crmd with only this plugin ---- */

typedef struct fixture {
    crmd_proc p;
    char *plugins, *token;
    ws_client c;
} fixture;

static void start_crmd(fixture *f, const char *data)
{
    assert_int_equal(crmd_start_with(&f->p, data, "--plugins %s", f->plugins), 0);
    if (!f->token)
        assert_non_null(f->token = crmd_token(&f->p, "admin"));
    assert_int_equal(ws_connect(&f->c, f->p.port, "crm.v1.json", NULL, NULL), 0);
    assert_int_equal(ws_auth(&f->c, f->token, 5000), 0);
}

static fixture *start(const char *config_json)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->plugins = crm_test_plugin_dir("webhooks-plugins", "webhooks", config_json);
    rx_reset();
    start_crmd(f, NULL);
    return f;
}

static void stop(fixture *f)
{
    ws_close(&f->c);
    assert_int_equal(crmd_stop(&f->p), 0);
    crm_tmpdir_remove(f->plugins);
    free(f->token);
    free(f);
}

static crm_value *req(fixture *f, const char *fmt, ...)
{
    va_list ap;
    crm_value *r;
    va_start(ap, fmt);
    r = ws_vrequest(&f->c, 10000, NULL, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    return r;
}

static void ok(crm_value *r)
{
    if (strcmp(ws_code(r), "OK") != 0)
        fprintf(stderr, "unexpected error: %s %s\n", ws_code(r), ws_message(r));
    assert_string_equal(ws_code(r), "OK");
    crm_value_free(r);
}

static void expect(crm_value *r, const char *code)
{
    if (strcmp(ws_code(r), code) != 0)
        fprintf(stderr, "expected %s, got %s %s\n", code, ws_code(r), ws_message(r));
    assert_string_equal(ws_code(r), code);
    crm_value_free(r);
}

static void webhook(fixture *f, const char *id, const char *path, int port, const char *colls,
                    const char *where, const char *secret)
{
    ok(req(f,
           "{\"op\": \"create\", \"collection\": \"webhooks\", \"record\": {\"id\": \"%s\","
           " \"url\": \"http://127.0.0.1:%d%s\", \"collections\": %s, \"secret\": \"%s\"%s%s}}",
           id, port, path, colls, secret, where ? ", \"where\": " : "", where ? where : ""));
}

static void contact(fixture *f, const char *id, const char *city)
{
    ok(req(f, "{\"op\": \"create\", \"collection\": \"contacts\", \"record\": {\"id\": \"%s\", \"name\": \"%s\","
              " \"city\": \"%s\"}}",
           id, id, city));
}

/* Records in coll matching where (JSON), up to 1000. */
static size_t count_records(fixture *f, const char *coll, const char *where)
{
    crm_value *r = req(f, "{\"op\": \"query\", \"collection\": \"%s\", \"where\": %s, \"limit\": 1000}", coll,
                       where);
    const crm_value *res = crm_map_get(r, "result"), *recs = res ? crm_map_get(res, "records") : NULL;
    size_t n;
    assert_string_equal(ws_code(r), "OK");
    assert_non_null(recs);
    n = recs->u.arr.n;
    crm_value_free(r);
    return n;
}

static int wait_records(fixture *f, const char *coll, const char *where, size_t n, double seconds)
{
    double end = crm_test_now_s() + seconds;
    size_t got = 0;
    while (crm_test_now_s() < end) {
        if ((got = count_records(f, coll, where)) == n)
            return 1;
        usleep(50000);
    }
    fprintf(stderr, "waited %.0f s for %zu records in %s %s, have %zu\n", seconds, n, coll, where, got);
    return 0;
}

/* ---- checks on what arrived ---- */

static void hmac_hex(const char *secret, const char *ts, const char *body, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    size_t tl = strlen(ts), bl = strlen(body);
    char *msg = malloc(tl + 1 + bl + 1);
    assert_non_null(msg);
    memcpy(msg, ts, tl);
    msg[tl] = '.';
    memcpy(msg + tl + 1, body, bl + 1);
    assert_non_null(HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)msg, tl + 1 + bl, md, &mdlen));
    free(msg);
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* Every request to path: signed with secret, header seq == body seq,
 * webhook header == hook; the body's "id" of each into ids (in order),
 * each seq into seqs.  Returns how many. */
static int check_path(const char *path, const char *secret, const char *hook, char ids[][64],
                      long long *seqs, int cap)
{
    int n = 0;
    pthread_mutex_lock(&rx.lock);
    for (int i = 0; i < rx.n && n < cap; i++) {
        delivery *d = &rx.d[i];
        char want[65], sig[80];
        crm_value *b;
        if (strcmp(d->path, path) != 0)
            continue;
        hmac_hex(secret, d->ts, d->body, want);
        snprintf(sig, sizeof sig, "sha256=%s", want);
        assert_string_equal(d->sig, sig);
        assert_true(labs((long)(atoll(d->ts) - (long long)time(NULL))) < 600);
        assert_string_equal(d->hook, hook);
        assert_non_null(b = crm_test_json(d->body));
        assert_int_equal(crm_map_get(b, "seq")->u.i, atoll(d->seqh));
        seqs[n] = atoll(d->seqh);
        snprintf(ids[n], 64, "%s", crm_map_get(b, "id")->u.str.s);
        crm_value_free(b);
        n++;
    }
    pthread_mutex_unlock(&rx.lock);
    return n;
}

/* ---- tests ---- */

static const char FAST[] = "{\"max_attempts\": 4, \"retry_base_ms\": 100, \"retry_max_ms\": 400,"
                           " \"timeout_ms\": 5000, \"connect_timeout_ms\": 2000}";

static void signed_filtered(void **state)
{
    (void)state;
    fixture *f = start(FAST);
    char ids[64][64];
    long long seqs[64];
    int n;
    webhook(f, "wh_a", "/a", rx.port, "[\"contacts\"]", "{\"city\": \"Oslo\"}", SECRET_A);
    webhook(f, "wh_b", "/b", rx.port, "[\"contacts\", \"orders\"]", NULL, SECRET_B);
    contact(f, "c1", "Oslo");
    contact(f, "c2", "Bergen");
    contact(f, "c3", "Oslo");
    ok(req(f, "{\"op\": \"update\", \"collection\": \"contacts\", \"id\": \"c1\", \"patch\": {\"city\": \"Bergen\"}}"));
    ok(req(f, "{\"op\": \"update\", \"collection\": \"contacts\", \"id\": \"c2\", \"patch\": {\"name\": \"Bo\"}}"));
    ok(req(f, "{\"op\": \"delete\", \"collection\": \"contacts\", \"id\": \"c3\"}"));
    ok(req(f, "{\"op\": \"create\", \"collection\": \"orders\", \"record\": {\"id\": \"o1\", \"contact\": \"c1\","
              " \"amount\": 1000, \"currency\": \"EUR\", \"ordered_at\": 1700000000000}}"));
    /* a: c1 create, c3 create, c1 leaves Oslo, c3 deleted; b: all 7 */
    assert_true(wait_path("/a", 200, 4, 20));
    assert_true(wait_path("/b", 200, 7, 20));
    usleep(300000);
    assert_int_equal(count_path("/a", 0), 4);
    assert_int_equal(count_path("/b", 0), 7);
    n = check_path("/a", SECRET_A, "wh_a", ids, seqs, 64);
    assert_int_equal(n, 4);
    for (int i = 0; i < n; i++) {
        assert_true(strcmp(ids[i], "c1") == 0 || strcmp(ids[i], "c3") == 0);
        if (i)
            assert_true(seqs[i] > seqs[i - 1]);
    }
    assert_string_equal(ids[0], "c1");
    assert_string_equal(ids[1], "c3");
    assert_string_equal(ids[2], "c1");
    assert_string_equal(ids[3], "c3");
    n = check_path("/b", SECRET_B, "wh_b", ids, seqs, 64);
    assert_int_equal(n, 7);
    for (int i = 1; i < n; i++)
        assert_true(seqs[i] > seqs[i - 1]);
    assert_string_equal(ids[6], "o1");
    {   /* the body: the change, with the record before and after */
        pthread_mutex_lock(&rx.lock);
        crm_value *b = NULL;
        for (int i = 0; i < rx.n && !b; i++)
            if (strcmp(rx.d[i].path, "/a") == 0 && strstr(rx.d[i].body, "\"update\""))
                b = crm_test_json(rx.d[i].body);
        pthread_mutex_unlock(&rx.lock);
        assert_non_null(b);
        assert_string_equal(crm_map_get(b, "collection")->u.str.s, "contacts");
        assert_string_equal(crm_map_get(crm_map_get(b, "record"), "city")->u.str.s, "Bergen");
        assert_string_equal(crm_map_get(crm_map_get(b, "prev"), "city")->u.str.s, "Oslo");
        crm_value_free(b);
    }
    assert_true(wait_records(f, "webhook_outbox", "{}", 0, 10));

    /* refusals */
    expect(req(f, "{\"op\": \"create\", \"collection\": \"webhooks\", \"record\": {\"url\": \"ftp://x.example/\","
                  " \"collections\": [\"contacts\"], \"secret\": \"%s\"}}", SECRET_A), "VALIDATION");
    expect(req(f, "{\"op\": \"create\", \"collection\": \"webhooks\", \"record\": {\"url\": \"http://x.example/\","
                  " \"collections\": [\"contacts\"], \"where\": {\"no_such_field\": 1}, \"secret\": \"%s\"}}",
               SECRET_A), "VALIDATION");
    expect(req(f, "{\"op\": \"create\", \"collection\": \"webhooks\", \"record\": {\"url\": \"http://x.example/\","
                  " \"collections\": [\"webhook_outbox\"], \"secret\": \"%s\"}}", SECRET_A), "VALIDATION");
    expect(req(f, "{\"op\": \"create\", \"collection\": \"webhooks\", \"record\": {\"url\": \"http://x.example/\","
                  " \"collections\": [\"nope\"], \"secret\": \"%s\"}}", SECRET_A), "VALIDATION");
    expect(req(f, "{\"op\": \"create\", \"collection\": \"webhook_outbox\", \"record\": {\"webhook\": \"wh_a\","
                  " \"key\": \"k\", \"seq\": 1, \"collection\": \"contacts\", \"op\": \"create\","
                  " \"record_id\": \"c1\", \"body\": \"{}\"}}"), "REJECTED");
    {   /* the secret is admin's only: roles reading "*" get nothing of webhooks */
        ws_client d;
        char *tok = crmd_token(&f->p, "dashboard");
        assert_non_null(tok);
        assert_int_equal(ws_connect(&d, f->p.port, "crm.v1.json", NULL, NULL), 0);
        assert_int_equal(ws_auth(&d, tok, 5000), 0);
        crm_value *r = ws_request(&d, 5000, NULL, "{\"op\": \"get\", \"collection\": \"webhooks\", \"id\": \"wh_a\"}");
        assert_non_null(r);
        assert_string_equal(ws_code(r), "FORBIDDEN");
        crm_value_free(r);
        r = ws_request(&d, 5000, NULL, "{\"op\": \"query\", \"collection\": \"webhook_dead_letters\"}");
        assert_string_equal(ws_code(r), "FORBIDDEN");
        crm_value_free(r);
        ws_close(&d);
        free(tok);
    }
    stop(f);
}

static void retries_and_dead_letters(void **state)
{
    (void)state;
    fixture *f = start(FAST);
    int dead_port = refused_port(), n, answered[64];
    long long seqs[64];
    char ids[64][64];
    rx.flaky_left = 2;
    webhook(f, "wh_f", "/flaky", rx.port, "[\"contacts\"]", NULL, SECRET_A);
    webhook(f, "wh_d", "/", dead_port, "[\"contacts\"]", NULL, SECRET_B);
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "c%d", i);
        contact(f, id, "Oslo");
    }
    assert_true(wait_path("/flaky", 200, 5, 20));
    n = check_path("/flaky", SECRET_A, "wh_f", ids, seqs, 64);
    assert_int_equal(n, 7); /* 2 refused + 5 accepted */
    pthread_mutex_lock(&rx.lock);
    for (int i = 0, k = 0; i < rx.n; i++)
        if (strcmp(rx.d[i].path, "/flaky") == 0)
            answered[k++] = rx.d[i].answered;
    pthread_mutex_unlock(&rx.lock);
    /* the first change three times (attempts 1, 2, 3), then each once, in order */
    assert_int_equal(answered[0], 500);
    assert_int_equal(answered[1], 500);
    assert_int_equal(answered[2], 200);
    assert_true(seqs[0] == seqs[1] && seqs[1] == seqs[2]);
    for (int i = 3; i < n; i++)
        assert_true(seqs[i] > seqs[i - 1]);
    for (int i = 0; i < 5; i++) {
        char want[16];
        snprintf(want, sizeof want, "c%d", i);
        assert_string_equal(ids[i < 1 ? 0 : i + 2], want);
    }
    /* the refused endpoint: 4 attempts each, then a dead letter with the body */
    assert_true(wait_records(f, "webhook_dead_letters", "{\"webhook\": \"wh_d\", \"reason\": \"attempts\"}", 5, 30));
    {
        crm_value *r = req(f, "{\"op\": \"query\", \"collection\": \"webhook_dead_letters\", \"where\": {\"webhook\": \"wh_d\"},"
                              " \"order_by\": \"seq\"}");
        const crm_value *recs = crm_map_get(crm_map_get(r, "result"), "records");
        assert_int_equal(recs->u.arr.n, 5);
        for (size_t i = 0; i < 5; i++) {
            const crm_value *d = recs->u.arr.items[i];
            assert_int_equal(crm_map_get(d, "attempts")->u.i, 4);
            assert_int_equal(crm_map_get(d, "seq")->u.i, seqs[i < 1 ? 0 : i + 2]);
            assert_non_null(strstr(crm_map_get(d, "body")->u.str.s, "\"contacts\""));
            assert_non_null(crm_map_get(d, "last_error"));
        }
        crm_value_free(r);
    }
    assert_true(wait_records(f, "webhook_outbox", "{}", 0, 10));
    /* the admin clears the dead letters; nobody else may write them */
    ok(req(f, "{\"op\": \"update\", \"collection\": \"webhooks\", \"id\": \"wh_d\", \"patch\": {\"active\": false}}"));
    expect(req(f, "{\"op\": \"create\", \"collection\": \"webhook_dead_letters\", \"record\": {\"webhook\": \"x\","
                  " \"seq\": 1, \"collection\": \"c\", \"op\": \"create\", \"record_id\": \"r\", \"reason\": \"attempts\","
                  " \"failed_at\": 1}}"), "REJECTED");
    stop(f);
}

static void dead_endpoints_do_not_delay(void **state)
{
    (void)state;
    /* timeouts far beyond the wait below: were the healthy webhook held up
     * behind the hanging one, it would get nothing in time */
    fixture *f = start("{\"timeout_ms\": 120000, \"connect_timeout_ms\": 120000, \"retry_base_ms\": 60000,"
                       " \"retry_max_ms\": 60000}");
    int dead_port = refused_port();
    webhook(f, "wh_hang", "/hang", rx.port, "[\"contacts\"]", NULL, SECRET_A);
    webhook(f, "wh_refused", "/", dead_port, "[\"contacts\"]", NULL, SECRET_A);
    webhook(f, "wh_ok", "/ok", rx.port, "[\"contacts\"]", NULL, SECRET_B);
    for (int i = 0; i < 20; i++) {
        char id[16];
        snprintf(id, sizeof id, "c%d", i);
        contact(f, id, "Oslo");
    }
    assert_true(wait_path("/ok", 200, 20, 30));
    assert_true(wait_path("/hang", 0, 1, 10));
    /* the hanging one is still on its first change; the healthy one goes on */
    assert_int_equal(count_path("/hang", 0), 1);
    contact(f, "late", "Oslo");
    assert_true(wait_path("/ok", 200, 21, 30));
    {
        crm_value *r = req(f, "{\"op\": \"call\", \"method\": \"webhooks.status\"}");
        assert_string_equal(ws_code(r), "OK");
        crm_value_free(r);
    }
    stop(f); /* a transfer still waiting does not hold up the shutdown */
}

static void restart_no_gap(void **state)
{
    (void)state;
    fixture *f = start(FAST);
    char *data, ids[512][64];
    long long seqs[512];
    int n = 0, st;
    webhook(f, "wh_s", "/slow", rx.port, "[\"contacts\"]", NULL, SECRET_A);
    for (int i = 0; i < 40; i++) {
        char id[16];
        snprintf(id, sizeof id, "c%d", i);
        contact(f, id, "Oslo");
    }
    assert_true(wait_path("/slow", 0, 3, 20));
    n = count_path("/slow", 0);
    assert_true(n < 40); /* mid-stream */
    fprintf(stderr, "restart_no_gap: killed after %d of 40 deliveries\n", n);
    /* SIGKILL: no shutdown at all */
    data = strdup(f->p.data);
    ws_close(&f->c);
    kill(f->p.pid, SIGKILL);
    assert_int_equal(waitpid(f->p.pid, &st, 0), f->p.pid);
    f->p.pid = 0;
    crmd_stop_keep(&f->p);
    start_crmd(f, data);
    free(data);
    for (int i = 40; i < 50; i++) {
        char id[16];
        snprintf(id, sizeof id, "c%d", i);
        contact(f, id, "Oslo");
    }
    /* every change arrives: wait for the last one, then check all */
    double end = crm_test_now_s() + 60;
    int have_all = 0;
    while (!have_all && crm_test_now_s() < end) {
        int seen[50] = {0}, k = 0;
        n = check_path("/slow", SECRET_A, "wh_s", ids, seqs, 512);
        for (int i = 0; i < n; i++)
            if (ids[i][0] == 'c' && atoi(ids[i] + 1) < 50)
                seen[atoi(ids[i] + 1)] = 1;
        for (int i = 0; i < 50; i++)
            k += seen[i];
        have_all = k == 50;
        if (!have_all)
            usleep(50000);
    }
    assert_true(have_all);
    fprintf(stderr, "restart_no_gap: %d requests for 50 changes (a repeat is a delivery sent again after the kill)\n", n);
    /* first arrivals of distinct seqs rise; a seq seen again is the same change */
    long long top = 0;
    for (int i = 0; i < n; i++) {
        int first = 1;
        for (int j = 0; j < i; j++)
            if (seqs[j] == seqs[i]) {
                first = 0;
                assert_string_equal(ids[j], ids[i]);
            }
        if (first) {
            assert_true(seqs[i] > top);
            top = seqs[i];
        }
    }
    assert_true(wait_records(f, "webhook_outbox", "{}", 0, 20));
    stop(f);
}


/* Deliveries that keep the receiver's attempts going for as long as the
 * test needs (the erasure test's receiver is down, then back). */
static const char PATIENT[] = "{\"max_attempts\": 100000, \"retry_base_ms\": 50, \"retry_max_ms\": 200,"
                              " \"timeout_ms\": 5000, \"connect_timeout_ms\": 2000}";
#define MARKER "zq7erasemarker"

/* The erased person's data leaves with no delivery made after the erasure
 * and stays nowhere in the store: 8 deliveries of a contact queued while
 * the receiver is down (answers 500), privacy.erase of the contact, the
 * receiver back: none of the 8 is sent (each dropped, counted by
 * webhooks.status), what arrives after the erasure carries no marker (the
 * erasure's own update and a later contact do arrive), no dead letter
 * holds it, and data.mdb holds it 0 times. */
static void erase_drops_deliveries(void **state)
{
    (void)state;
    fixture *f = start(PATIENT);
    char path[1200];
    int before, erased_update = 0, other = 0;
    long long dropped = -1;
    pthread_mutex_lock(&rx.lock);
    rx.flaky_left = 1 << 30; /* down */
    pthread_mutex_unlock(&rx.lock);
    webhook(f, "wh_e", "/flaky", rx.port, "[\"contacts\"]", NULL, SECRET_A);
    ok(req(f, "{\"op\": \"create\", \"collection\": \"contacts\", \"record\": {\"id\": \"ce\", "
              "\"name\": \"Ann " MARKER "\", \"email\": \"" MARKER "@example.com\", \"city\": \"Oslo\"}}"));
    for (int i = 0; i < 7; i++)
        ok(req(f, "{\"op\": \"update\", \"collection\": \"contacts\", \"id\": \"ce\", \"patch\": "
                  "{\"notes\": \"note %d of " MARKER "\"}}", i));
    assert_true(wait_records(f, "webhook_outbox", "{\"record_id\": \"ce\"}", 8, 30));
    assert_true(wait_path("/flaky", 500, 2, 30)); /* the worker is retrying the first */

    ok(req(f, "{\"op\": \"privacy.erase\", \"collection\": \"contacts\", \"id\": \"ce\"}"));
    pthread_mutex_lock(&rx.lock);
    before = rx.n;
    rx.flaky_left = 0; /* back */
    pthread_mutex_unlock(&rx.lock);
    contact(f, "c_after", "Bergen");
    /* the erasure's update of ce and c_after's create are delivered; the
     * 8 queued deliveries are dropped, never sent */
    assert_true(wait_records(f, "webhook_outbox", "{}", 0, 30));
    assert_true(wait_path("/flaky", 200, 2, 30));
    pthread_mutex_lock(&rx.lock);
    for (int i = before; i < rx.n; i++) {
        crm_value *b = crm_test_json(rx.d[i].body);
        const crm_value *rec = b ? crm_map_get(b, "record") : NULL;
        if (strstr(rx.d[i].body, MARKER))
            fprintf(stderr, "sent after the erasure: %s\n", rx.d[i].body);
        assert_null(strstr(rx.d[i].body, MARKER));
        assert_non_null(rec);
        if (rx.d[i].answered == 200 && strcmp(crm_map_str(rec, "id", ""), "ce") == 0) {
            assert_string_equal(crm_map_str(b, "op", ""), "update");
            assert_string_equal(crm_map_str(rec, "name", ""), "[erased]");
            erased_update++;
        }
        if (rx.d[i].answered == 200 && strcmp(crm_map_str(rec, "id", ""), "c_after") == 0)
            other++;
        crm_value_free(b);
    }
    pthread_mutex_unlock(&rx.lock);
    assert_int_equal(erased_update, 1);
    assert_int_equal(other, 1);
    {
        crm_value *r = req(f, "{\"op\": \"call\", \"method\": \"webhooks.status\"}");
        const crm_value *list = crm_map_get(crm_map_get(r, "result"), "webhooks");
        assert_non_null(list);
        for (size_t i = 0; i < list->u.arr.n; i++)
            if (strcmp(crm_map_str(list->u.arr.items[i], "id", ""), "wh_e") == 0)
                dropped = crm_map_int(list->u.arr.items[i], "dropped", -1);
        crm_value_free(r);
    }
    assert_int_equal(dropped, 8);
    assert_int_equal(count_records(f, "webhook_dead_letters", "{}"), 0);
    snprintf(path, sizeof path, "%s/data.mdb", f->p.data);
    assert_int_equal(crm_test_file_hits(path, MARKER), 0);
    stop(f);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    rx.fd = listen_loopback(&rx.port);
    if (rx.fd < 0 || pthread_create(&rx.acceptor, NULL, accept_loop, NULL) != 0) {
        fprintf(stderr, "cannot start the receiver\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(signed_filtered),
        cmocka_unit_test(retries_and_dead_letters),
        cmocka_unit_test(dead_endpoints_do_not_delay),
        cmocka_unit_test(restart_no_gap),
        cmocka_unit_test(erase_drops_deliveries),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    rx.stopping = 1;
    shutdown(rx.fd, SHUT_RDWR);
    close(rx.fd);
    pthread_join(rx.acceptor, NULL);
    rx_reset();
    return rc;
}
