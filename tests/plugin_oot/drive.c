/*
 * drive -- the WebSocket half of the plugin_oot test (run.sh builds the
 * plugin): starts $CRMD_BIN with $CRMD_ARGS (--plugins DIR holding the
 * out-of-tree hello.so) and checks, over a real connection, that the
 * plugin's method answers with its configured greeting and that its
 * before-hook refuses a write with REJECTED and its own message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "codec.h"
#include "wsclient.h"

static crm_value *request(ws_client *c, long long *ref, const char *fmt, ...)
{
    char buf[4096];
    va_list ap;
    int n = snprintf(buf, sizeof buf, "{\"ref\": %lld, ", ++*ref);
    va_start(ap, fmt);
    vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    va_end(ap);
    assert_int_equal(ws_send_json(c, buf), 0);
    crm_value *r = ws_reply(c, *ref, 10000, NULL);
    assert_non_null(r);
    char *j = crm_json_encode(r, NULL);
    fprintf(stderr, "%s\n  -> %s\n", buf, j);
    free(j);
    return r;
}

static void hello_plugin_over_websocket(void **state)
{
    const char *bin = getenv("CRMD_BIN"), *schemas = getenv("CRM_SCHEMAS");
    crmd_proc p;
    ws_client c;
    long long ref = 0;
    crm_value *r;
    assert_non_null(bin);
    assert_non_null(schemas);
    assert_non_null(getenv("CRMD_ARGS")); /* --plugins DIR */
    assert_int_equal(crmd_start(&p, bin, schemas, NULL), 0);
    char *admin = crmd_token(&p, "admin");
    assert_non_null(admin);
    assert_int_equal(ws_connect(&c, p.port, "crm.v1.json", NULL, NULL), 0);
    r = request(&c, &ref, "\"op\": \"auth\", \"token\": \"%s\"}", admin);
    assert_true(crm_map_get(r, "ok")->u.b);
    crm_value_free(r);

    /* the method, with the greeting of hello.json */
    r = request(&c, &ref, "\"op\": \"call\", \"method\": \"hello.greet\", \"params\": {\"name\": \"Ann\"}}");
    assert_true(crm_map_get(r, "ok")->u.b);
    assert_string_equal(crm_map_str(r, "result", ""), "Hi, Ann!");
    crm_value_free(r);

    /* the before-hook refuses; the message is the plugin's */
    r = request(&c, &ref, "\"op\": \"create\", \"collection\": \"contacts\", \"record\": {\"name\": \"Nobody\"}}");
    assert_false(crm_map_get(r, "ok")->u.b);
    assert_string_equal(crm_map_str(crm_map_get(r, "error"), "code", ""), "REJECTED");
    assert_string_equal(crm_map_str(crm_map_get(r, "error"), "message", ""),
                        "a contact needs an email or a phone");
    crm_value_free(r);
    r = request(&c, &ref, "\"op\": \"query\", \"collection\": \"contacts\", \"where\": {\"name\": \"Nobody\"}}");
    assert_int_equal(crm_map_get(crm_map_get(r, "result"), "records")->u.arr.n, 0);
    crm_value_free(r);

    /* and lets a good write through */
    r = request(&c, &ref, "\"op\": \"create\", \"collection\": \"contacts\", \"record\": {\"name\": \"Ann\", \"email\": \"ann@example.org\"}}");
    assert_true(crm_map_get(r, "ok")->u.b);
    assert_string_equal(crm_map_str(crm_map_get(r, "result"), "name", ""), "Ann");
    crm_value_free(r);

    ws_close(&c);
    free(admin);
    assert_int_equal(crmd_stop(&p), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(hello_plugin_over_websocket)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
