/*
 * test_crm -- every bundled feature at once, as `make run` serves them: the
 * bundled schemas, every script in scripts/ (lifecycle, customer value,
 * complaints) and every plugin in build/plugins (loyalty, segments).  One
 * customer's story over WebSocket: a segment of new customers, a first paid
 * order (lifecycle stage, loyalty points, segment membership, a recorded
 * transition), a complaint (assigned to the only agent, SLA deadline set),
 * a redemption; and no feature's hook failing on another's writes (no dead
 * letters, no hook or timer failures in /metrics).
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
#include "testutil.h"
#include "wsclient.h"

typedef struct fixture {
    crmd_proc p;
    char *token;
    ws_client c;
} fixture;

static long long next_ref = 10;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    char buf[512];
    crm_value *r;
    assert_int_equal(crmd_start_with(&f->p, NULL, "--scripts %s --plugins %s",
                                     getenv("CRM_SCRIPTS"), getenv("CRM_PLUGINS")),
                     0);
    assert_non_null(f->token = crmd_token(&f->p, "admin"));
    assert_int_equal(ws_connect(&f->c, f->p.port, "crm.v1.json", NULL, NULL), 0);
    snprintf(buf, sizeof buf, "{\"ref\": 1, \"op\": \"auth\", \"token\": \"%s\"}", f->token);
    assert_int_equal(ws_send_json(&f->c, buf), 0);
    r = ws_reply(&f->c, 1, 3000, NULL);
    assert_non_null(r);
    assert_true(crm_map_get(r, "ok")->u.b);
    crm_value_free(r);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    ws_close(&f->c);
    assert_int_equal(crmd_stop(&f->p), 0);
    free(f->token);
    free(f);
    return 0;
}

/* Sends a request (JSON without ref) and returns the reply's result; fails
 * the test on an error reply. */
static crm_value *ok(fixture *f, const char *fmt, ...)
{
    char body[4096], buf[4200];
    va_list ap;
    long long ref = next_ref++;
    crm_value *r, *res;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    snprintf(buf, sizeof buf, "{\"ref\": %lld, %s", ref, body + 1);
    assert_int_equal(ws_send_json(&f->c, buf), 0);
    r = ws_reply(&f->c, ref, 5000, NULL);
    assert_non_null(r);
    if (!crm_map_get(r, "ok")->u.b) {
        char *j = crm_json_encode(r, NULL);
        fail_msg("%s -> %s", body, j);
    }
    res = crm_map_take(r, "result");
    crm_value_free(r);
    return res;
}

static size_t count(fixture *f, const char *coll, const char *where)
{
    crm_value *res = ok(f, "{\"op\": \"query\", \"collection\": \"%s\", \"where\": %s, \"limit\": 1000}",
                        coll, where);
    size_t n = crm_map_get(res, "records")->u.arr.n;
    crm_value_free(res);
    return n;
}

static const char *field_of(crm_value *rec, const char *name, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s", crm_map_str(rec, name, ""));
    return buf;
}

static void test_one_customer_through_every_feature(void **state)
{
    fixture *f = *state;
    crm_value *r;
    char contact[64], segment[64], agent[64], stage[64], tmp[64];
    long long now_ms = (long long)time(NULL) * 1000;
    double t0;

    r = ok(f, "{\"op\": \"create\", \"collection\": \"agents\", \"record\": {\"name\": \"Alice\"}}");
    field_of(r, "id", agent, sizeof agent);
    crm_value_free(r);
    r = ok(f, "{\"op\": \"create\", \"collection\": \"segments\", \"record\": {\"name\": \"new customers\","
              " \"rules\": {\"all\": [{\"stage\": \"new_customer\"}]}}}");
    field_of(r, "id", segment, sizeof segment);
    crm_value_free(r);
    r = ok(f, "{\"op\": \"create\", \"collection\": \"contacts\", \"record\": {\"name\": \"Ann\", \"city\": \"Berlin\"}}");
    field_of(r, "id", contact, sizeof contact);
    assert_string_equal(crm_map_str(r, "lifecycle_stage", ""), "prospect");
    crm_value_free(r);

    /* the first paid order */
    r = ok(f, "{\"op\": \"create\", \"collection\": \"orders\", \"record\": {\"contact\": \"%s\","
              " \"amount\": 12000, \"currency\": \"EUR\", \"ordered_at\": %lld, \"status\": \"paid\"}}",
           contact, now_ms);
    crm_value_free(r);

    /* lifecycle, loyalty and segmentation follow from after-hooks */
    t0 = crm_test_now_s();
    for (;;) {
        char where[256];
        int64_t points = 0;
        size_t members;
        r = ok(f, "{\"op\": \"get\", \"collection\": \"contacts\", \"id\": \"%s\"}", contact);
        field_of(r, "lifecycle_stage", stage, sizeof stage);
        crm_value_free(r);
        r = ok(f, "{\"op\": \"call\", \"method\": \"loyalty.balance\", \"params\": {\"contact\": \"%s\"}}",
               contact);
        points = crm_map_int(r, "points", 0);
        crm_value_free(r);
        snprintf(where, sizeof where, "{\"segment\": \"%s\", \"contact\": \"%s\"}", segment, contact);
        members = count(f, "segment_members", where);
        if (strcmp(stage, "new_customer") == 0 && points > 0 && members == 1)
            break;
        if (crm_test_now_s() - t0 > 10)
            fail_msg("after 10 s: stage %s, points %lld, segment members %zu", stage,
                     (long long)points, members);
        usleep(50000);
    }
    {
        char where[256];
        snprintf(where, sizeof where, "{\"contact\": \"%s\"}", contact);
        assert_true(count(f, "lifecycle_transitions", where) >= 1);
        assert_int_equal(count(f, "loyalty_ledger", where), 1);
    }

    /* a complaint: assigned to the only agent, with a deadline */
    r = ok(f, "{\"op\": \"create\", \"collection\": \"tickets\", \"record\": {\"contact\": \"%s\","
              " \"subject\": \"parcel late\", \"category\": \"complaint\", \"priority\": \"high\"}}",
           contact);
    assert_string_equal(crm_map_str(r, "state", ""), "assigned");
    assert_string_equal(field_of(r, "assignee", tmp, sizeof tmp), agent);
    assert_true(crm_map_int(r, "sla_due_at", 0) > now_ms);
    crm_value_free(r);

    /* a redemption through the loyalty method */
    r = ok(f, "{\"op\": \"call\", \"method\": \"loyalty.redeem\", \"params\": {\"contact\": \"%s\","
              " \"points\": 1, \"reason\": \"test\"}}",
           contact);
    crm_value_free(r);

    /* nobody's hook failed on anybody else's writes */
    usleep(500000);
    assert_int_equal(count(f, "dead_letters", "{}"), 0);
    {
        char *body = NULL;
        int status = 0;
        assert_int_equal(http_get(f->p.port, "/metrics", &status, &body), 0);
        assert_non_null(strstr(body, "\ncrmd_hook_failures_total 0\n"));
        assert_non_null(strstr(body, "\ncrmd_timer_failures_total 0\n"));
        assert_non_null(strstr(body, "\ncrmd_after_hook_lag 0\n"));
        free(body);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_customer_through_every_feature, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
