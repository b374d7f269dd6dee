/*
 * test_ws -- the wire contract end to end: a real crmd on a free loopback
 * port with the bundled schemas, real WebSocket connections, every test run
 * once per subprotocol (crm.v1.json, crm.v1.msgpack, and none = JSON).
 * Covers auth, every op, error codes, group-commit acks, pipelining,
 * subscriptions (snapshot, live pushes, leave, since replay), roles with
 * hidden fields, token revocation, malformed and oversized messages,
 * handshake refusals and an orderly SIGTERM.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "codec.h"
#include "wsclient.h"

typedef struct fixture {
    crmd_proc p;
    char *admin;
    const char *proto;
    ws_client c;
    long long ref;
} fixture;

static const char *proto_under_test;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    const char *bin = getenv("CRMD_BIN"), *schemas = getenv("CRM_SCHEMAS");
    assert_non_null(bin);
    assert_non_null(schemas);
    assert_int_equal(crmd_start(&f->p, bin, schemas, NULL), 0);
    f->admin = crmd_token(&f->p, "admin");
    assert_non_null(f->admin);
    f->proto = proto_under_test;
    assert_int_equal(ws_connect(&f->c, f->p.port, f->proto, NULL, NULL), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    ws_close(&f->c);
    assert_int_equal(crmd_stop(&f->p), 0); /* SIGTERM: clean exit 0 */
    free(f->admin);
    free(f);
    return 0;
}

/* Sends a request (JSON text with a %lld for the ref first) and returns its reply. */
static crm_value *call(fixture *f, ws_client *c, crm_value *pushes, const char *fmt, ...)
{
    char buf[8192];
    va_list ap;
    long long ref = ++f->ref;
    int n = snprintf(buf, sizeof buf, "{\"ref\": %lld, ", ref);
    va_start(ap, fmt);
    vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    va_end(ap);
    assert_int_equal(ws_send_json(c, buf), 0);
    crm_value *r = ws_reply(c, ref, 5000, pushes);
    if (!r)
        fprintf(stderr, "no reply to %s\n", buf);
    assert_non_null(r);
    return r;
}

static const crm_value *ok_result(crm_value *r)
{
    const crm_value *ok = crm_map_get(r, "ok");
    if (!ok || ok->type != CRM_T_BOOL || !ok->u.b) {
        char *j = crm_json_encode(r, NULL);
        fprintf(stderr, "expected ok, got %s\n", j);
        free(j);
    }
    assert_true(ok && ok->type == CRM_T_BOOL && ok->u.b);
    return crm_map_get(r, "result");
}

static void expect_code(crm_value *r, const char *code)
{
    const crm_value *e = crm_map_get(r, "error");
    if (!e || strcmp(crm_map_str(e, "code", ""), code) != 0) {
        char *j = crm_json_encode(r, NULL);
        fprintf(stderr, "expected %s, got %s\n", code, j);
        free(j);
    }
    assert_non_null(e);
    assert_string_equal(crm_map_str(e, "code", ""), code);
    assert_true(crm_map_get(r, "ok")->type == CRM_T_BOOL && !crm_map_get(r, "ok")->u.b);
    assert_non_null(crm_map_str(e, "message", NULL));
}

static void auth(fixture *f, ws_client *c, const char *token, const char *role)
{
    crm_value *r = call(f, c, NULL, "\"op\": \"auth\", \"token\": \"%s\"}", token);
    assert_string_equal(crm_map_str(ok_result(r), "role", ""), role);
    crm_value_free(r);
}

/* ---- tests ---- */

static void auth_gates_everything_but_ping(void **state)
{
    fixture *f = *state;
    crm_value *r = call(f, &f->c, NULL, "\"op\": \"ping\"}");
    assert_string_equal(ok_result(r)->u.str.s, "pong");
    assert_int_equal(crm_map_int(r, "ref", 0), f->ref);
    crm_value_free(r);
    r = call(f, &f->c, NULL, "\"op\": \"get\", \"collection\": \"contacts\", \"id\": \"c_1\"}");
    expect_code(r, "UNAUTHENTICATED");
    crm_value_free(r);
    r = call(f, &f->c, NULL, "\"op\": \"auth\", \"token\": \"crm_wrong\"}");
    expect_code(r, "UNAUTHENTICATED");
    crm_value_free(r);
    auth(f, &f->c, f->admin, "admin");
    /* a string ref is echoed too */
    assert_int_equal(ws_send_json(&f->c, "{\"ref\": \"abc\", \"op\": \"ping\"}"), 0);
    r = ws_recv(&f->c, 5000, NULL);
    assert_string_equal(crm_map_str(r, "ref", ""), "abc");
    crm_value_free(r);
}

static void crud_and_error_codes(void **state)
{
    fixture *f = *state;
    crm_value *r;
    auth(f, &f->c, f->admin, "admin");
    r = call(f, &f->c, NULL, "\"op\": \"create\", \"collection\": \"contacts\", \"record\": "
                             "{\"name\": \"Ann Lee\", \"email\": \"ann@example.org\", \"city\": \"Oslo\"}}");
    const crm_value *rec = ok_result(r);
    char id[64];
    snprintf(id, sizeof id, "%s", crm_map_str(rec, "id", ""));
    assert_int_equal(strncmp(id, "c_", 2), 0);
    assert_int_equal(crm_map_int(rec, "_rev", 0), 1);
    assert_string_equal(crm_map_str(rec, "lifecycle_stage", ""), "prospect"); /* default */
    crm_value_free(r);

    r = call(f, &f->c, NULL, "\"op\": \"get\", \"collection\": \"contacts\", \"id\": \"%s\"}", id);
    assert_string_equal(crm_map_str(ok_result(r), "email", ""), "ann@example.org");
    crm_value_free(r);
    r = call(f, &f->c, NULL, "\"op\": \"update\", \"collection\": \"contacts\", \"id\": \"%s\", "
                             "\"patch\": {\"city\": null, \"owner\": \"rep1\"}, \"if_rev\": 1}", id);
    assert_null(crm_map_get(ok_result(r), "city"));
    assert_int_equal(crm_map_int(ok_result(r), "_rev", 0), 2);
    crm_value_free(r);
    r = call(f, &f->c, NULL, "\"op\": \"update\", \"collection\": \"contacts\", \"id\": \"%s\", "
                             "\"patch\": {\"owner\": \"rep2\"}, \"if_rev\": 1}", id);
    expect_code(r, "CONFLICT");
    crm_value_free(r);
    r = call(f, &f->c, NULL, "\"op\": \"create\", \"collection\": \"contacts\", \"record\": "
                             "{\"name\": \"Dup\", \"email\": \"ann@example.org\"}}");
    expect_code(r, "CONFLICT");
    crm_value_free(r);
    r = call(f, &f->c, NULL, "\"op\": \"create\", \"collection\": \"contacts\", \"record\": "
                             "{\"name\": 5, \"bogus\": true}}");
    expect_code(r, "VALIDATION");
    const crm_value *fields = crm_map_get(crm_map_get(crm_map_get(r, "error"), "details"), "fields");
    assert_non_null(fields);
    assert_string_equal(crm_map_str(fields, "name", ""), "must be a string");
    assert_non_null(crm_map_get(fields, "bogus"));
    crm_value_free(r);
    r = call(f, &f->c, NULL, "\"op\": \"get\", \"collection\": \"contacts\", \"id\": \"c_nope\"}");
    expect_code(r, "NOT_FOUND");
    assert_string_equal(crm_map_str(crm_map_get(r, "error"), "message", ""),
                        "contacts/c_nope does not exist");
    crm_value_free(r);
    r = call(f, &f->c, NULL, "\"op\": \"get\", \"collection\": \"nowhere\", \"id\": \"x\"}");
    expect_code(r, "NOT_FOUND");
    crm_value_free(r);
    r = call(f, &f->c, NULL, "\"op\": \"get\", \"collection\": 7, \"id\": \"x\"}");
    expect_code(r, "BAD_REQUEST");
    crm_value_free(r);
    r = call(f, &f->c, NULL, "\"op\": \"frobnicate\"}");
    expect_code(r, "BAD_REQUEST");
    crm_value_free(r);
    r = call(f, &f->c, NULL, "\"op\": \"call\", \"method\": \"nope.nothing\", \"params\": {}}");
    expect_code(r, "NOT_FOUND");
    crm_value_free(r);
    r = call(f, &f->c, NULL, "\"op\": \"delete\", \"collection\": \"contacts\", \"id\": \"%s\"}", id);
    assert_int_equal(crm_map_int(ok_result(r), "_rev", 0), 3);
    crm_value_free(r);
    r = call(f, &f->c, NULL, "\"op\": \"delete\", \"collection\": \"contacts\", \"id\": \"%s\"}", id);
    expect_code(r, "NOT_FOUND");
    crm_value_free(r);
    r = call(f, &f->c, NULL, "\"op\": \"schema\", \"collection\": \"tickets\"}");
    assert_string_equal(crm_map_str(ok_result(r), "collection", ""), "tickets");
    crm_value_free(r);
}

static void tx_query_aggregate_and_pipelining(void **state)
{
    fixture *f = *state;
    crm_value *r;
    auth(f, &f->c, f->admin, "admin");
    r = call(f, &f->c, NULL, "\"op\": \"tx\", \"ops\": ["
             "{\"op\": \"create\", \"collection\": \"companies\", \"id\": \"co_a\", \"record\": {\"name\": \"Acme\", \"city\": \"Lima\"}},"
             "{\"op\": \"create\", \"collection\": \"contacts\", \"id\": \"c_a\", \"record\": {\"name\": \"A\", \"company\": \"co_a\", \"city\": \"Lima\"}}]}");
    assert_int_equal(ok_result(r)->u.arr.n, 2);
    crm_value_free(r);
    /* all or nothing: the second op fails, so the first is not kept */
    r = call(f, &f->c, NULL, "\"op\": \"tx\", \"ops\": ["
             "{\"op\": \"create\", \"collection\": \"contacts\", \"id\": \"c_b\", \"record\": {\"name\": \"B\"}},"
             "{\"op\": \"create\", \"collection\": \"contacts\", \"id\": \"c_a\", \"record\": {\"name\": \"again\"}}]}");
    expect_code(r, "CONFLICT");
    crm_value_free(r);
    r = call(f, &f->c, NULL, "\"op\": \"get\", \"collection\": \"contacts\", \"id\": \"c_b\"}");
    expect_code(r, "NOT_FOUND");
    crm_value_free(r);

    /* pipelined: 20 creates then a query, all sent before reading; the query
     * sees every create (reads wait for the session's writes) */
    long long first = f->ref + 1;
    for (int i = 0; i < 20; i++) {
        char buf[256];
        snprintf(buf, sizeof buf, "{\"ref\": %lld, \"op\": \"create\", \"collection\": \"contacts\", "
                                  "\"record\": {\"name\": \"P%02d\", \"city\": \"Paris\", \"churn_risk\": %d}}",
                 ++f->ref, i, i % 2);
        assert_int_equal(ws_send_json(&f->c, buf), 0);
    }
    char qbuf[256];
    snprintf(qbuf, sizeof qbuf, "{\"ref\": %lld, \"op\": \"query\", \"collection\": \"contacts\", "
             "\"where\": {\"city\": \"Paris\"}, \"order_by\": \"-name\", \"limit\": 15}", ++f->ref);
    assert_int_equal(ws_send_json(&f->c, qbuf), 0);
    for (long long ref = first; ref < f->ref; ref++) {
        r = ws_reply(&f->c, ref, 5000, NULL);
        assert_non_null(r);
        ok_result(r);
        crm_value_free(r);
    }
    r = ws_reply(&f->c, f->ref, 5000, NULL);
    const crm_value *res = ok_result(r);
    assert_int_equal(crm_map_get(res, "records")->u.arr.n, 15);
    assert_string_equal(crm_map_str(crm_map_get(res, "records")->u.arr.items[0], "name", ""), "P19");
    char next[512];
    snprintf(next, sizeof next, "%s", crm_map_str(res, "next", ""));
    assert_true(strlen(next) > 0);
    crm_value_free(r);
    r = call(f, &f->c, NULL, "\"op\": \"query\", \"collection\": \"contacts\", \"where\": {\"city\": \"Paris\"}, "
             "\"order_by\": \"-name\", \"limit\": 15, \"after\": \"%s\"}", next);
    res = ok_result(r);
    assert_int_equal(crm_map_get(res, "records")->u.arr.n, 5);
    assert_int_equal(crm_map_get(res, "next")->type, CRM_T_NIL);
    crm_value_free(r);
    r = call(f, &f->c, NULL, "\"op\": \"aggregate\", \"collection\": \"contacts\", \"group_by\": \"city\", "
             "\"metrics\": [\"count\", \"sum:churn_risk\"]}");
    res = crm_map_get(ok_result(r), "groups");
    int seen_paris = 0;
    for (size_t i = 0; i < res->u.arr.n; i++)
        if (strcmp(crm_map_str(res->u.arr.items[i], "key", ""), "Paris") == 0) {
            assert_int_equal(crm_map_int(res->u.arr.items[i], "count", 0), 20);
            assert_int_equal(crm_map_int(res->u.arr.items[i], "sum:churn_risk", 0), 10);
            seen_paris = 1;
        }
    assert_true(seen_paris);
    crm_value_free(r);
    /* a whole number written as 2.0 is 2; 2.5 is not a limit */
    r = call(f, &f->c, NULL, "\"op\": \"query\", \"collection\": \"contacts\", \"limit\": 2.0}");
    assert_int_equal(crm_map_get(ok_result(r), "records")->u.arr.n, 2);
    crm_value_free(r);
    r = call(f, &f->c, NULL, "\"op\": \"query\", \"collection\": \"contacts\", \"limit\": 2.5}");
    expect_code(r, "BAD_REQUEST");
    crm_value_free(r);
    r = call(f, &f->c, NULL, "\"op\": \"query\", \"collection\": \"contacts\", \"where\": {\"city\": {\"near\": 1}}}");
    expect_code(r, "BAD_REQUEST");
    crm_value_free(r);
}

static void subscriptions_snapshot_live_leave_since(void **state)
{
    fixture *f = *state;
    ws_client w;
    crm_value *r, *pushes = crm_value_arr();
    auth(f, &f->c, f->admin, "admin");
    assert_int_equal(ws_connect(&w, f->p.port, f->proto, NULL, NULL), 0);
    auth(f, &w, f->admin, "admin");
    r = call(f, &w, NULL, "\"op\": \"create\", \"collection\": \"contacts\", \"id\": \"c_t\", "
             "\"record\": {\"name\": \"Ticket Owner\"}}");
    ok_result(r);
    crm_value_free(r);
    r = call(f, &w, NULL, "\"op\": \"create\", \"collection\": \"tickets\", \"id\": \"t_1\", "
             "\"record\": {\"subject\": \"broken\", \"priority\": \"high\", \"contact\": \"c_t\"}}");
    ok_result(r);
    crm_value_free(r);
    /* since and snapshot do not combine (spec): refused, nothing subscribed */
    r = call(f, &f->c, NULL, "\"op\": \"subscribe\", \"collection\": \"tickets\", "
             "\"since\": 0, \"snapshot\": true}");
    assert_string_equal(crm_map_str(crm_map_get(r, "error"), "code", ""), "BAD_REQUEST");
    assert_non_null(strstr(crm_map_str(crm_map_get(r, "error"), "message", ""), "do not combine"));
    crm_value_free(r);
    r = call(f, &f->c, NULL, "\"op\": \"subscribe\", \"collection\": \"tickets\", "
             "\"where\": {\"priority\": \"high\"}, \"snapshot\": true}");
    const crm_value *res = ok_result(r);
    int64_t sub = crm_map_int(res, "sub", 0), seq0 = crm_map_int(res, "seq", -1);
    assert_true(sub > 0);
    assert_int_equal(crm_map_get(res, "records")->u.arr.n, 1);
    crm_value_free(r);
    /* live: another connection writes */
    r = call(f, &w, NULL, "\"op\": \"create\", \"collection\": \"tickets\", \"id\": \"t_2\", "
             "\"record\": {\"subject\": \"urgent\", \"priority\": \"high\", \"contact\": \"c_t\"}}");
    ok_result(r);
    crm_value_free(r);
    r = call(f, &w, NULL, "\"op\": \"create\", \"collection\": \"tickets\", \"id\": \"t_3\", "
             "\"record\": {\"subject\": \"meh\", \"priority\": \"low\", \"contact\": \"c_t\"}}");
    ok_result(r);
    crm_value_free(r);
    r = call(f, &w, NULL, "\"op\": \"update\", \"collection\": \"tickets\", \"id\": \"t_1\", "
             "\"patch\": {\"priority\": \"normal\"}}");
    ok_result(r);
    crm_value_free(r);
    crm_value *e1 = ws_recv(&f->c, 5000, NULL), *e2 = ws_recv(&f->c, 5000, NULL);
    assert_non_null(e1);
    assert_non_null(e2);
    assert_string_equal(crm_map_str(e1, "event", ""), "change");
    assert_int_equal(crm_map_int(e1, "sub", 0), sub);
    assert_int_equal(crm_map_int(e1, "seq", 0), seq0 + 1);
    assert_string_equal(crm_map_str(e1, "op", ""), "create");
    assert_string_equal(crm_map_str(e1, "id", ""), "t_2");
    assert_non_null(crm_map_get(e1, "record"));
    /* t_3 (low) is not pushed; t_1 leaving the filter is */
    assert_string_equal(crm_map_str(e2, "op", ""), "leave");
    assert_string_equal(crm_map_str(e2, "id", ""), "t_1");
    assert_null(crm_map_get(e2, "record"));
    assert_int_equal(crm_map_int(e2, "seq", 0), seq0 + 3);
    crm_value_free(e1);
    crm_value_free(e2);
    /* since: a reconnecting client replays what it missed, then goes live */
    ws_client z;
    assert_int_equal(ws_connect(&z, f->p.port, f->proto, NULL, NULL), 0);
    auth(f, &z, f->admin, "admin");
    r = call(f, &z, pushes, "\"op\": \"subscribe\", \"collection\": \"tickets\", \"since\": %lld}",
             (long long)seq0);
    assert_int_equal(crm_map_int(ok_result(r), "seq", -1), seq0);
    crm_value_free(r);
    for (int i = 0; i < 3; i++) {
        crm_value *e = ws_recv(&z, 5000, NULL);
        assert_non_null(e);
        assert_int_equal(crm_map_int(e, "seq", 0), seq0 + 1 + i);
        crm_value_free(e);
    }
    r = call(f, &z, NULL, "\"op\": \"subscribe\", \"collection\": \"tickets\", \"since\": 999999}");
    expect_code(r, "CONFLICT");
    assert_true(crm_map_get(crm_map_get(crm_map_get(r, "error"), "details"), "resync")->u.b);
    crm_value_free(r);
    r = call(f, &f->c, NULL, "\"op\": \"subscribe\", \"collection\": \"tickets\", "
             "\"where\": {\"priority\": {\"near\": 1}}}");
    expect_code(r, "BAD_REQUEST");
    crm_value_free(r);
    r = call(f, &f->c, NULL, "\"op\": \"unsubscribe\", \"sub\": %lld}", (long long)sub);
    assert_true(ok_result(r)->u.b);
    crm_value_free(r);
    ws_close(&z);
    ws_close(&w);
    crm_value_free(pushes);
}

static void roles_hide_fields_and_forbid(void **state)
{
    fixture *f = *state;
    ws_client m;
    crm_value *r;
    char *mk = crmd_token(&f->p, "marketing"), *dash = crmd_token(&f->p, "dashboard");
    assert_non_null(mk);
    assert_non_null(dash);
    auth(f, &f->c, f->admin, "admin");
    r = call(f, &f->c, NULL, "\"op\": \"create\", \"collection\": \"contacts\", \"id\": \"c_h\", "
             "\"record\": {\"name\": \"Hidden\", \"email\": \"h@x.org\", \"phone\": \"+1 555\"}}");
    ok_result(r);
    crm_value_free(r);
    assert_int_equal(ws_connect(&m, f->p.port, f->proto, NULL, NULL), 0);
    auth(f, &m, mk, "marketing");
    r = call(f, &m, NULL, "\"op\": \"get\", \"collection\": \"contacts\", \"id\": \"c_h\"}");
    assert_string_equal(crm_map_str(ok_result(r), "name", ""), "Hidden");
    assert_null(crm_map_get(ok_result(r), "email"));
    assert_null(crm_map_get(ok_result(r), "phone"));
    crm_value_free(r);
    r = call(f, &m, NULL, "\"op\": \"query\", \"collection\": \"contacts\", \"where\": {\"email\": \"h@x.org\"}}");
    expect_code(r, "FORBIDDEN");
    crm_value_free(r);
    r = call(f, &m, NULL, "\"op\": \"query\", \"collection\": \"contacts\", \"order_by\": \"-phone\"}");
    expect_code(r, "FORBIDDEN");
    crm_value_free(r);
    r = call(f, &m, NULL, "\"op\": \"create\", \"collection\": \"contacts\", \"record\": {\"name\": \"x\"}}");
    expect_code(r, "FORBIDDEN");
    crm_value_free(r);
    r = call(f, &m, NULL, "\"op\": \"get\", \"collection\": \"tickets\", \"id\": \"t_1\"}");
    expect_code(r, "FORBIDDEN");
    crm_value_free(r);
    r = call(f, &m, NULL, "\"op\": \"subscribe\", \"collection\": \"contacts\", \"snapshot\": true}");
    const crm_value *recs = crm_map_get(ok_result(r), "records");
    assert_true(recs->u.arr.n >= 1);
    for (size_t i = 0; i < recs->u.arr.n; i++)
        assert_null(crm_map_get(recs->u.arr.items[i], "email"));
    crm_value_free(r);
    /* pushes hide them too */
    r = call(f, &f->c, NULL, "\"op\": \"update\", \"collection\": \"contacts\", \"id\": \"c_h\", "
             "\"patch\": {\"email\": \"new@x.org\"}}");
    ok_result(r);
    crm_value_free(r);
    crm_value *e = ws_recv(&m, 5000, NULL);
    assert_non_null(e);
    assert_string_equal(crm_map_str(e, "op", ""), "update");
    assert_null(crm_map_get(crm_map_get(e, "record"), "email"));
    assert_string_equal(crm_map_str(crm_map_get(e, "record"), "name", ""), "Hidden");
    crm_value_free(e);
    ws_close(&m);
    /* the dashboard reads but never writes */
    assert_int_equal(ws_connect(&m, f->p.port, f->proto, NULL, NULL), 0);
    auth(f, &m, dash, "dashboard");
    r = call(f, &m, NULL, "\"op\": \"get\", \"collection\": \"contacts\", \"id\": \"c_h\"}");
    assert_string_equal(crm_map_str(ok_result(r), "email", ""), "new@x.org");
    crm_value_free(r);
    r = call(f, &m, NULL, "\"op\": \"delete\", \"collection\": \"contacts\", \"id\": \"c_h\"}");
    expect_code(r, "FORBIDDEN");
    crm_value_free(r);
    ws_close(&m);
    free(mk);
    free(dash);
}

static void revoked_token_is_cut_off(void **state)
{
    fixture *f = *state;
    char *tok = crmd_token(&f->p, "sales"), cmd[4096];
    int code = 0;
    struct timespec t0, t1;
    assert_non_null(tok);
    auth(f, &f->c, tok, "sales");
    snprintf(cmd, sizeof cmd, "'%s' token revoke --data '%s' --schemas '%s' '%s' >/dev/null", f->p.bin,
             f->p.data, f->p.schemas, tok);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(system(cmd), 0);
    crm_value *v = ws_recv(&f->c, 3000, &code);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_null(v);
    assert_int_equal(code, 1008);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(secs < 1.5);
    free(tok);
}

static void malformed_and_oversized_messages_close(void **state)
{
    fixture *f = *state;
    ws_client b;
    int code;
    /* does not decode: 1007, and the server keeps serving others */
    assert_int_equal(ws_send_frame(&f->c, f->c.msgpack ? 2 : 1, "{\"ref\": 1, \"op\"", 16), 0);
    assert_null(ws_recv(&f->c, 3000, &code));
    assert_int_equal(code, 1007);
    /* before auth a message over 16 KiB is too large: 1009 */
    assert_int_equal(ws_connect(&b, f->p.port, f->proto, NULL, NULL), 0);
    char *big = malloc(20000);
    memset(big, ' ', 20000);
    big[0] = '{';
    big[19999] = '}';
    assert_int_equal(ws_send_frame(&b, b.msgpack ? 2 : 1, big, 20000), 0);
    assert_null(ws_recv(&b, 3000, &code));
    assert_int_equal(code, 1009);
    free(big);
    ws_close(&b);
    /* 200-deep nesting */
    assert_int_equal(ws_connect(&b, f->p.port, NULL, NULL, NULL), 0);
    char deep[512];
    memset(deep, '[', 200);
    memset(deep + 200, ']', 200);
    assert_int_equal(ws_send_frame(&b, 1, deep, 400), 0);
    assert_null(ws_recv(&b, 3000, &code));
    assert_int_equal(code, 1007);
    ws_close(&b);
    /* still serving */
    assert_int_equal(ws_connect(&b, f->p.port, f->proto, NULL, NULL), 0);
    crm_value *r = call(f, &b, NULL, "\"op\": \"ping\"}");
    ok_result(r);
    crm_value_free(r);
    ws_close(&b);
}

static void handshake_refusals(void **state)
{
    fixture *f = *state;
    ws_client b;
    int status = 0;
    assert_int_equal(ws_connect(&b, f->p.port, "crm.v9.unknown", NULL, &status), -1);
    assert_int_equal(ws_connect(&b, f->p.port, f->proto, "http://evil.example", &status), -1);
    if (!ws_client_use_lws) /* the lws client does not report the status */
        assert_int_equal(status, 403); /* R17: an HTTP answer before the upgrade, not a hang-up */
    char origin[64];
    snprintf(origin, sizeof origin, "http://127.0.0.1:%d", f->p.port);
    assert_int_equal(ws_connect(&b, f->p.port, f->proto, origin, &status), 0); /* same origin */
    ws_close(&b);
}

static void aggregate_subscription_pushes_coalesced_figures(void **state)
{
    fixture *f = *state;
    ws_client w;
    crm_value *r;
    auth(f, &f->c, f->admin, "admin");
    assert_int_equal(ws_connect(&w, f->p.port, f->proto, NULL, NULL), 0);
    auth(f, &w, f->admin, "admin");
    r = call(f, &w, NULL, "\"op\": \"create\", \"collection\": \"contacts\", \"record\": "
             "{\"name\": \"A\", \"city\": \"Oslo\"}}");
    ok_result(r);
    crm_value_free(r);
    r = call(f, &f->c, NULL, "\"op\": \"subscribe\", \"collection\": \"contacts\", "
             "\"aggregate\": {\"group_by\": \"city\", \"metrics\": [\"count\"]}}");
    int64_t sub = crm_map_int(ok_result(r), "sub", 0);
    crm_value_free(r);
    crm_value *e = ws_recv(&f->c, 5000, NULL); /* the current figures first */
    assert_non_null(e);
    assert_string_equal(crm_map_str(e, "event", ""), "aggregate");
    assert_int_equal(crm_map_int(e, "sub", 0), sub);
    const crm_value *g = crm_map_get(e, "groups");
    assert_int_equal(g->u.arr.n, 1);
    assert_int_equal(crm_map_int(g->u.arr.items[0], "count", 0), 1);
    crm_value_free(e);
    /* a burst of 30 creates: figures arrive coalesced, and the last push is exact */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 30; i++) {
        r = call(f, &w, NULL, "\"op\": \"create\", \"collection\": \"contacts\", \"record\": "
                 "{\"name\": \"B%d\", \"city\": \"%s\"}}", i, i % 2 ? "Oslo" : "Lima");
        ok_result(r);
        crm_value_free(r);
    }
    int pushes = 0;
    int64_t oslo = 0, lima = 0;
    while (oslo != 16 || lima != 15) {
        e = ws_recv(&f->c, 3000, NULL);
        assert_non_null(e);
        assert_string_equal(crm_map_str(e, "event", ""), "aggregate");
        pushes++;
        g = crm_map_get(e, "groups");
        for (size_t i = 0; i < g->u.arr.n; i++) {
            const char *k = crm_map_str(g->u.arr.items[i], "key", "");
            if (strcmp(k, "Oslo") == 0)
                oslo = crm_map_int(g->u.arr.items[i], "count", 0);
            if (strcmp(k, "Lima") == 0)
                lima = crm_map_int(g->u.arr.items[i], "count", 0);
        }
        crm_value_free(e);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    /* at most one push per 100 ms (+1 for the first after a quiet spell) */
    assert_true(pushes <= (int)(ms / 100.0) + 2);
    /* a change outside the where brings no push */
    r = call(f, &f->c, NULL, "\"op\": \"subscribe\", \"collection\": \"contacts\", "
             "\"where\": {\"city\": \"Paris\"}, \"aggregate\": {\"metrics\": [\"count\"]}}");
    ok_result(r);
    crm_value_free(r);
    e = ws_recv(&f->c, 3000, NULL);
    assert_int_equal(crm_map_int(crm_map_get(e, "groups")->u.arr.items[0], "count", -1), 0);
    crm_value_free(e);
    r = call(f, &w, NULL, "\"op\": \"create\", \"collection\": \"contacts\", \"record\": "
             "{\"name\": \"C\", \"city\": \"Rome\"}}");
    ok_result(r);
    crm_value_free(r);
    /* only the city-grouped sub changes (Rome appears) */
    e = ws_recv(&f->c, 3000, NULL);
    assert_non_null(e);
    assert_int_equal(crm_map_int(e, "sub", 0), sub);
    crm_value_free(e);
    assert_null(ws_recv(&f->c, 400, NULL));
    r = call(f, &f->c, NULL, "\"op\": \"subscribe\", \"collection\": \"contacts\", \"since\": 0, "
             "\"aggregate\": {\"metrics\": [\"count\"]}}");
    expect_code(r, "BAD_REQUEST");
    crm_value_free(r);
    r = call(f, &f->c, NULL, "\"op\": \"subscribe\", \"collection\": \"contacts\", "
             "\"aggregate\": {\"metrics\": [\"median:x\"]}}");
    expect_code(r, "BAD_REQUEST");
    crm_value_free(r);
    ws_close(&w);
}

static void http_endpoints(void **state)
{
    fixture *f = *state;
    int status;
    char *body;
    crm_value *r;
    auth(f, &f->c, f->admin, "admin");
    r = call(f, &f->c, NULL, "\"op\": \"create\", \"collection\": \"companies\", \"record\": {\"name\": \"X\"}}");
    ok_result(r);
    crm_value_free(r);
    assert_int_equal(http_get(f->p.port, "/healthz", &status, &body), 0);
    assert_int_equal(status, 200);
    assert_non_null(strstr(body, "\"ok\":true"));
    free(body);
    assert_int_equal(http_get(f->p.port, "/metrics", &status, &body), 0);
    assert_int_equal(status, 200);
    assert_non_null(strstr(body, "crmd_requests_total{op=\"create\",code=\"OK\"} 1"));
    assert_non_null(strstr(body, "crmd_connections 1"));
    assert_non_null(strstr(body, "crmd_commit_batch_size_count 1"));
    assert_non_null(strstr(body, "crmd_feed_seq 1"));
    free(body);
    assert_int_equal(http_get(f->p.port, "/", &status, &body), 0);
    assert_int_equal(status, 200);
    assert_non_null(strstr(body, "<html"));
    free(body);
    /* the dashboard folder is the limit: traversal never reaches other files */
    static const char *const escapes[] = {"/../README.md", "/..%2fREADME.md", "/%2e%2e/README.md",
                                          "/../../etc/passwd", "/..", "/a/../../CMakeLists.txt"};
    for (size_t i = 0; i < sizeof escapes / sizeof *escapes; i++) {
        assert_int_equal(http_get(f->p.port, escapes[i], &status, &body), 0);
        /* refused, or normalised by lws into the folder (\"/..\" is \"/\") */
        assert_true(status == 403 || status == 404 || status == 400 ||
                    (status == 200 && strstr(body, "<html")));
        assert_null(strstr(body, "# crmd"));
        assert_null(strstr(body, "cmake_minimum_required"));
        assert_null(strstr(body, "root:"));
        free(body);
    }
    assert_int_equal(http_get(f->p.port, "/nothing-here.js", &status, &body), 0);
    assert_int_equal(status, 404);
    free(body);
}

static int run_group(const char *proto, int over_lws)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(auth_gates_everything_but_ping, setup, teardown),
        cmocka_unit_test_setup_teardown(crud_and_error_codes, setup, teardown),
        cmocka_unit_test_setup_teardown(tx_query_aggregate_and_pipelining, setup, teardown),
        cmocka_unit_test_setup_teardown(subscriptions_snapshot_live_leave_since, setup, teardown),
        cmocka_unit_test_setup_teardown(roles_hide_fields_and_forbid, setup, teardown),
        cmocka_unit_test_setup_teardown(revoked_token_is_cut_off, setup, teardown),
        cmocka_unit_test_setup_teardown(malformed_and_oversized_messages_close, setup, teardown),
        cmocka_unit_test_setup_teardown(handshake_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(aggregate_subscription_pushes_coalesced_figures, setup, teardown),
        cmocka_unit_test_setup_teardown(http_endpoints, setup, teardown),
    };
    char name[96];
    proto_under_test = proto;
    ws_client_use_lws = over_lws;
    snprintf(name, sizeof name, "%s over %s", proto ? proto : "no subprotocol",
             over_lws ? "the libwebsockets client" : "raw frames");
    fprintf(stderr, "# %s\n", name);
    return cmocka_run_group_tests_name(name, tests, NULL, NULL);
}

int main(void)
{
    int failed = 0;
    for (int over_lws = 0; over_lws <= 1; over_lws++) {
        failed += run_group("crm.v1.json", over_lws);
        failed += run_group("crm.v1.msgpack", over_lws);
        failed += run_group(NULL, over_lws);
    }
    return failed;
}
