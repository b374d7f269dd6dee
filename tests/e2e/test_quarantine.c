/*
 * test_quarantine -- R19: a plugin that crashes the server (tests/plugins/
 * crasher.c: a null write in a before-hook, in init, or at load).  Each
 * crash kills crmd with SIGSEGV and is recorded in DATA/plugin-crashes with
 * the plugin's name; the test restarts crmd on the same data (as a
 * supervisor would) and checks that every acknowledged write is there;
 * after plugin-crashes (3) crashes crmd starts without the plugin and says
 * so, and the write that crashed it goes through.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "codec.h"
#include "testutil.h"
#include "tmpdir.h"
#include "wsclient.h"

#define CRASHES 3

static crmd_proc p;

static void add_crasher(const char *dir, const char *config)
{
    char src[4096], *so;
    snprintf(src, sizeof src, "%s/crasher.so", CRM_TEST_PLUGIN_DIR);
    so = crm_test_read_file(src);
    assert_non_null(so);
    free(so);
    {
        char cmd[8192];
        snprintf(cmd, sizeof cmd, "cp '%s' '%s/crasher.so'", src, dir);
        assert_int_equal(system(cmd), 0);
    }
    if (config)
        crm_tmpdir_write(dir, "crasher.json", config);
}

/* Starts crmd on data with plugins; 0 when it is ready, else the signal
 * that killed it (or -1). */
static int start(const char *data, const char *plugins, const char *log)
{
    const char *argv[] = {getenv("CRMD_BIN"), "serve", "--data", data, "--schemas",
                          getenv("CRM_SCHEMAS"), "--listen", "127.0.0.1:0", "--scripts",
                          "/nonexistent", "--plugins", plugins, NULL};
    int st;
    if (crmd_spawn(&p, data, getenv("CRM_SCHEMAS"), argv, log) == 0)
        return 0;
    assert_int_equal(waitpid(p.pid, &st, 0), p.pid);
    p.pid = 0;
    free(p.bin);
    free(p.schemas);
    free(p.data);
    memset(&p, 0, sizeof p);
    return WIFSIGNALED(st) ? WTERMSIG(st) : -1;
}

static int crash_lines(const char *data)
{
    char path[4096], *text, *at;
    int n = 0;
    snprintf(path, sizeof path, "%s/plugin-crashes", data);
    if (!(text = crm_test_read_file(path)))
        return 0;
    for (at = text; (at = strstr(at, "crasher 11\n")); at++)
        n++;
    free(text);
    return n;
}

static long long contacts(ws_client *c)
{
    crm_value *r = ws_request(c, 5000, NULL, "{\"op\": \"aggregate\", \"collection\": \"contacts\", "
                                             "\"metrics\": [\"count\"]}");
    const crm_value *g;
    long long n;
    assert_non_null(r);
    g = crm_map_get(crm_map_get(r, "result"), "groups")->u.arr.items[0];
    n = crm_map_int(g, "count", -1);
    crm_value_free(r);
    return n;
}

/* GET path from the running crmd: 200, its body (caller frees). */
static char *get_200(const char *path)
{
    int code = 0;
    char *body = NULL;
    assert_int_equal(http_get(p.port, path, &code, &body), 0);
    assert_int_equal(code, 200);
    assert_non_null(body);
    return body;
}

static void hook_crashes_are_survived_then_quarantined(void **state)
{
    char *data = crm_tmpdir_make("quarantine-data"), *plugins = crm_tmpdir_make("quarantine-plugins");
    char *logdir = crm_tmpdir_make("quarantine-log"), log[4096];
    long long acked = 0;
    (void)state;
    snprintf(log, sizeof log, "%s/crmd.log", logdir);
    add_crasher(plugins, NULL);
    for (int round = 1; round <= CRASHES + 1; round++) {
        ws_client c;
        char *tok;
        crm_value *r;
        int st;
        assert_int_equal(start(data, plugins, log), 0);
        assert_non_null(tok = crmd_token(&p, "admin"));
        assert_int_equal(ws_connect(&c, p.port, "crm.v1.json", NULL, NULL), 0);
        assert_int_equal(ws_auth(&c, tok, 5000), 0);
        free(tok);
        if (round == 1) { /* healthy: ok, nothing quarantined */
            char *body = get_200("/healthz");
            assert_non_null(strstr(body, "\"ok\":true,\"status\":\"ok\""));
            assert_null(strstr(body, "quarantined"));
            free(body);
            body = get_200("/metrics");
            assert_non_null(strstr(body, "\ncrmd_plugins_quarantined 0\n"));
            free(body);
        }
        /* every write acknowledged before a crash is there after it */
        assert_int_equal(contacts(&c), acked);
        for (int i = 0; i < 20; i++) {
            r = ws_request(&c, 5000, NULL, "{\"op\": \"create\", \"collection\": \"contacts\", "
                                           "\"record\": {\"name\": \"n%d-%d\"}}", round, i);
            assert_non_null(r);
            assert_string_equal(ws_code(r), "OK");
            crm_value_free(r);
            acked++;
        }
        r = ws_request(&c, 5000, NULL, "{\"op\": \"create\", \"collection\": \"contacts\", "
                                       "\"record\": {\"name\": \"crash\"}}");
        if (round <= CRASHES) {
            /* the plugin's before-hook crashed the server: no answer */
            assert_null(r);
            ws_close(&c);
            assert_int_equal(waitpid(p.pid, &st, 0), p.pid);
            assert_true(WIFSIGNALED(st));
            assert_int_equal(WTERMSIG(st), SIGSEGV);
            p.pid = 0;
            free(p.bin);
            free(p.schemas);
            free(p.data);
            memset(&p, 0, sizeof p);
            assert_int_equal(crash_lines(data), round);
        } else {
            /* quarantined: not loaded, so the same write goes through */
            char *body;
            assert_non_null(r);
            assert_string_equal(ws_code(r), "OK");
            crm_value_free(r);
            /* and it shows: /healthz degraded, naming it; /metrics counts it */
            body = get_200("/healthz");
            assert_non_null(strstr(body, "\"status\":\"degraded\""));
            assert_non_null(strstr(body, "\"quarantined\":[{\"plugin\":\"crasher\",\"crashes\":3}]"));
            free(body);
            body = get_200("/metrics");
            assert_non_null(strstr(body, "\ncrmd_plugins_quarantined 1\n"));
            assert_non_null(strstr(body, "\ncrmd_plugin_crashes{plugin=\"crasher\"} 3\n"));
            free(body);
            acked++;
            assert_int_equal(contacts(&c), acked);
            ws_close(&c);
            assert_int_equal(crmd_stop_keep(&p), 0);
        }
    }
    {
        char *text = crm_test_read_file(log);
        assert_non_null(text);
        assert_non_null(strstr(text, "quarantined after crashing the server 3 times"));
        assert_non_null(strstr(text, "signal 11 in plugin crasher"));
        free(text);
    }
    print_message("R19: %d crashes in a before-hook, %lld acknowledged writes, all present after "
                  "each restart; quarantined on start %d\n", CRASHES, acked, CRASHES + 1);
    crm_tmpdir_remove(data);
    crm_tmpdir_remove(plugins);
    crm_tmpdir_remove(logdir);
}

/* A crash in init, or at load (a constructor), stops start-up each time,
 * until the plugin is quarantined and the server comes up without it. */
static void crash_at_start(const char *config, int at_load)
{
    char *data = crm_tmpdir_make("quarantine-data"), *plugins = crm_tmpdir_make("quarantine-plugins");
    char *logdir = crm_tmpdir_make("quarantine-log"), log[4096];
    snprintf(log, sizeof log, "%s/crmd.log", logdir);
    add_crasher(plugins, config);
    if (at_load)
        setenv("CRM_TEST_CRASH_AT_LOAD", "1", 1);
    for (int i = 1; i <= CRASHES; i++) {
        assert_int_equal(start(data, plugins, log), SIGSEGV);
        assert_int_equal(crash_lines(data), i);
    }
    assert_int_equal(start(data, plugins, log), 0);
    unsetenv("CRM_TEST_CRASH_AT_LOAD");
    assert_int_equal(crmd_stop_keep(&p), 0);
    crm_tmpdir_remove(data);
    crm_tmpdir_remove(plugins);
    crm_tmpdir_remove(logdir);
}

static void init_crashes_are_quarantined(void **state)
{
    (void)state;
    crash_at_start("{\"crash_in\": \"init\"}", 0);
}

static void load_crashes_are_quarantined(void **state)
{
    (void)state;
    crash_at_start(NULL, 1);
}

static int teardown(void **state)
{
    (void)state;
    unsetenv("CRM_TEST_CRASH_AT_LOAD");
    if (p.pid > 0)
        crmd_stop(&p);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(hook_crashes_are_survived_then_quarantined, teardown),
        cmocka_unit_test_teardown(init_crashes_are_quarantined, teardown),
        cmocka_unit_test_teardown(load_crashes_are_quarantined, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
