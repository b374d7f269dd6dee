/*
 * test_limits -- the per-connection limits of `crmd serve`, each set low by
 * its command-line option on a real server: requests per second
 * (RATE_LIMITED), subscriptions per connection (TOO_LARGE), message size
 * after auth (close 1009), the authentication deadline (close 1008), and the
 * idle policy (a peer that never answers pings is hung up on; one that does
 * stays).  Each limit answers clearly and the server goes on serving.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "codec.h"
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(rate_and_subscription_limits, setup_tight, teardown),
        cmocka_unit_test_setup_teardown(auth_deadline_closes_silent_connections, setup_tight, teardown),
        cmocka_unit_test_setup_teardown(quiet_peers_are_pinged_and_dead_ones_hung_up, setup_tight, teardown),
        cmocka_unit_test_setup_teardown(slow_subscriber_overflows_alone, setup_small_queue, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
