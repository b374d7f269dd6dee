/*
 * test_scripts -- Lua scripts in a real server, over WebSocket (issue 4):
 * a before-hook changes a record and crm.reject refuses one (REJECTED with
 * the script's message); an after-hook's write appears; `call` reaches a
 * crm.method with the caller's role in ctx; hostile methods (endless loop,
 * loop inside pcall, string.rep bomb, catastrophic pattern) each end with
 * SCRIPT_ERROR within about a second while a second client keeps getting
 * answers; SIGHUP reloads the scripts without dropping connections and
 * refuses a broken script, keeping the running set; a timer scheduled an
 * hour ahead fires under --time-scale 3600 in about a second.
 */
#include <setjmp.h>
#include <signal.h>
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
#include "tmpdir.h"
#include "testutil.h"
#include "wsclient.h"

static const char CONTACTS[] =
    "{\"collection\": \"contacts\", \"id_prefix\": \"c_\", \"fields\": {"
    " \"name\": {\"type\": \"string\", \"required\": true},"
    " \"tier\": {\"type\": \"string\"}}}";
static const char NOTES[] =
    "{\"collection\": \"notes\", \"id_prefix\": \"n_\", \"fields\": {"
    " \"contact\": {\"type\": \"string\", \"index\": true},"
    " \"text\":    {\"type\": \"string\"}}}";
static const char ROLES[] =
    "{\"roles\": {\"agent\": {\"contacts\": [\"read\", \"write\"], \"notes\": [\"read\"],"
    " \"methods\": [\"demo.*\", \"hostile.*\"]}}}";

static const char GUARD_LUA[] =
    "-- before: refuse Mallory, give everyone else a tier; after: a note\n"
    "crm.on(\"contacts.create\", function(ev)\n"
    "  if ev.record.name == \"Mallory\" then crm.reject(\"no Mallory here\") end\n"
    "  ev.record.tier = \"bronze\"\n"
    "end, {phase = \"before\"})\n"
    "crm.on(\"contacts.create\", function(ev)\n"
    "  crm.create(\"notes\", {contact = ev.id, text = \"welcome \" .. ev.record.name})\n"
    "end, {phase = \"after\"})\n"
    "-- ev.origin: the script or plugin whose code made the write; nil for a client\n"
    "crm.on(\"notes.create\", function(ev)\n"
    "  ev.record.text = ev.record.text .. \" by \" .. (ev.origin or \"a client\")\n"
    "end, {phase = \"before\"})\n"
    "crm.on_timer(\"later\", function(payload)\n"
    "  crm.create(\"notes\", {contact = payload.contact, text = \"an hour later\"})\n"
    "end)\n"
    "crm.method(\"demo.later\", function(params, ctx)\n"
    "  crm.schedule(3600, \"later\", {contact = params.contact})\n"
    "  return true\n"
    "end)\n";

static const char METHODS_V1[] =
    "crm.method(\"demo.whoami\", function(params, ctx)\n"
    "  return {role = ctx.role, echo = params.x, version = 1}\n"
    "end)\n";
static const char METHODS_V2[] =
    "crm.method(\"demo.whoami\", function(params, ctx)\n"
    "  return {role = ctx.role, echo = params.x, version = 2}\n"
    "end)\n";
static const char METHODS_BROKEN[] =
    "crm.method(\"demo.whoami\", function(params, ctx)\n"
    "  return {version = 3\n" /* unclosed: a syntax error on line 3 */
    "end)\n";

static const char HOSTILE_LUA[] =
    "crm.method(\"hostile.loop\", function() while true do end end)\n"
    "crm.method(\"hostile.pcall\", function()\n"
    "  while true do pcall(function() while true do end end) end\n"
    "end)\n"
    "crm.method(\"hostile.rep\", function() return #string.rep(\"x\", 1 << 30) end)\n"
    "crm.method(\"hostile.pattern\", function()\n"
    "  return string.find(string.rep(\"a\", 40), string.rep(\"a*\", 12) .. \"b\")\n"
    "end)\n";

typedef struct fixture {
    crmd_proc p;
    char *sdir, *scripts, *token;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    char args[2048];
    f->sdir = crm_tmpdir_make("scripts-schemas");
    f->scripts = crm_tmpdir_make("scripts");
    crm_tmpdir_write(f->sdir, "contacts.json", CONTACTS);
    crm_tmpdir_write(f->sdir, "notes.json", NOTES);
    crm_tmpdir_write(f->sdir, "roles.json", ROLES);
    crm_tmpdir_write(f->scripts, "guard.lua", GUARD_LUA);
    crm_tmpdir_write(f->scripts, "methods.lua", METHODS_V1);
    crm_tmpdir_write(f->scripts, "hostile.lua", HOSTILE_LUA);
    snprintf(args, sizeof args, "--scripts %s --time-scale 3600", f->scripts);
    setenv("CRMD_ARGS", args, 1);
    assert_int_equal(crmd_start(&f->p, getenv("CRMD_BIN"), f->sdir, NULL), 0);
    unsetenv("CRMD_ARGS");
    assert_non_null(f->token = crmd_token(&f->p, "agent"));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    assert_int_equal(crmd_stop(&f->p), 0); /* removes its data folder */
    crm_tmpdir_remove(f->sdir);
    crm_tmpdir_remove(f->scripts);
    free(f->token);
    free(f);
    return 0;
}

static void connect_authed(fixture *f, ws_client *c)
{
    assert_int_equal(ws_connect(c, f->p.port, "crm.v1.json", NULL, NULL), 0);
    assert_int_equal(ws_auth(c, f->token, 5000), 0);
}

static long long next_ref = 100;

/* Sends a request (printf-style JSON without ref) and returns its reply. */
static crm_value *req(ws_client *c, int timeout_ms, const char *fmt, ...)
{
    va_list ap;
    crm_value *r;
    va_start(ap, fmt);
    r = ws_vrequest(c, timeout_ms, NULL, fmt, ap);
    va_end(ap);
    return r;
}

static int64_t count_notes(ws_client *c, const char *where_json)
{
    crm_value *r = req(c, 3000, "{\"op\": \"query\", \"collection\": \"notes\", \"where\": %s}",
                       where_json);
    int64_t n;
    assert_non_null(r);
    assert_string_equal(ws_code(r), "OK");
    n = (int64_t)crm_map_get(crm_map_get(r, "result"), "records")->u.arr.n;
    crm_value_free(r);
    return n;
}

static void test_hooks_and_methods_over_the_wire(void **state)
{
    fixture *f = *state;
    ws_client c;
    crm_value *r;
    const crm_value *res;
    connect_authed(f, &c);

    r = req(&c, 3000, "{\"op\": \"create\", \"collection\": \"contacts\", \"record\": {\"name\": \"Mallory\"}}");
    assert_string_equal(ws_code(r), "REJECTED");
    assert_string_equal(ws_message(r), "no Mallory here");
    crm_value_free(r);

    r = req(&c, 3000, "{\"op\": \"create\", \"collection\": \"contacts\", \"record\": {\"id\": \"c_ann\", \"name\": \"Ann\"}}");
    assert_string_equal(ws_code(r), "OK");
    assert_string_equal(crm_map_str(crm_map_get(r, "result"), "tier", ""), "bronze");
    crm_value_free(r);

    /* the after-hook's note comes once the change is durable */
    {
        double t0 = crm_test_now_s();
        while (count_notes(&c, "{\"contact\": \"c_ann\"}") == 0 && crm_test_now_s() - t0 < 3)
            usleep(20000);
        assert_int_equal(count_notes(&c, "{\"contact\": \"c_ann\"}"), 1);
        assert_int_equal(count_notes(&c, "{\"text\": \"welcome Ann by guard.lua\"}"), 1);
    }

    r = req(&c, 3000, "{\"op\": \"call\", \"method\": \"demo.whoami\", \"params\": {\"x\": 42}}");
    assert_string_equal(ws_code(r), "OK");
    res = crm_map_get(r, "result");
    assert_string_equal(crm_map_str(res, "role", ""), "agent");
    assert_int_equal(crm_map_int(res, "echo", 0), 42);
    crm_value_free(r);

    r = req(&c, 3000, "{\"op\": \"call\", \"method\": \"demo.nothing\", \"params\": {}}");
    assert_string_equal(ws_code(r), "NOT_FOUND");
    crm_value_free(r);

    /* a timer an hour ahead, on a clock running 3600 times faster */
    r = req(&c, 3000, "{\"op\": \"call\", \"method\": \"demo.later\", \"params\": {\"contact\": \"c_ann\"}}");
    assert_string_equal(ws_code(r), "OK");
    crm_value_free(r);
    {
        double t0 = crm_test_now_s();
        while (count_notes(&c, "{\"text\": \"an hour later by guard.lua\"}") == 0 && crm_test_now_s() - t0 < 5)
            usleep(50000);
        assert_int_equal(count_notes(&c, "{\"text\": \"an hour later by guard.lua\"}"), 1);
        assert_true(crm_test_now_s() - t0 < 4);
    }
    ws_close(&c);
}

static void test_hostile_methods_stopped_others_served(void **state)
{
    fixture *f = *state;
    static const char *const methods[] = {"hostile.loop", "hostile.pcall", "hostile.rep",
                                          "hostile.pattern"};
    ws_client a, b;
    connect_authed(f, &a);
    connect_authed(f, &b);
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++) {
        char buf[256];
        long long ref = next_ref++;
        double t0 = crm_test_now_s(), took, ping_wait;
        crm_value *r, *p;
        snprintf(buf, sizeof buf, "{\"ref\": %lld, \"op\": \"call\", \"method\": \"%s\", \"params\": {}}",
                 ref, methods[i]);
        assert_int_equal(ws_send_json(&a, buf), 0);
        usleep(50000); /* the attack is running */
        {
            double p0 = crm_test_now_s();
            p = req(&b, 5000, "{\"op\": \"ping\"}");
            ping_wait = crm_test_now_s() - p0;
        }
        assert_non_null(p); /* the other client is answered */
        crm_value_free(p);
        r = ws_reply(&a, ref, 5000, NULL);
        took = crm_test_now_s() - t0;
        assert_non_null(r);
        print_message("%s: %s after %.3f s (%s); a ping from another client waited %.3f s\n",
                      methods[i], ws_code(r), took, ws_message(r), ping_wait);
        assert_string_equal(ws_code(r), "SCRIPT_ERROR");
        assert_non_null(strstr(ws_message(r), "hostile.lua"));
        assert_true(took < 1.5);
        crm_value_free(r);
    }
    /* and the server goes on serving scripts */
    {
        crm_value *r = req(&a, 3000, "{\"op\": \"call\", \"method\": \"demo.whoami\", \"params\": {}}");
        assert_string_equal(ws_code(r), "OK");
        crm_value_free(r);
    }
    ws_close(&a);
    ws_close(&b);
}

static int64_t whoami_version(ws_client *c)
{
    crm_value *r = req(c, 3000, "{\"op\": \"call\", \"method\": \"demo.whoami\", \"params\": {}}");
    int64_t v;
    assert_non_null(r);
    assert_string_equal(ws_code(r), "OK");
    v = crm_map_int(crm_map_get(r, "result"), "version", 0);
    crm_value_free(r);
    return v;
}

static void test_sighup_reloads_without_dropping_connections(void **state)
{
    fixture *f = *state;
    ws_client c;
    double t0;
    connect_authed(f, &c);
    assert_int_equal(whoami_version(&c), 1);

    crm_tmpdir_write(f->scripts, "methods.lua", METHODS_V2);
    kill(f->p.pid, SIGHUP);
    t0 = crm_test_now_s();
    while (whoami_version(&c) != 2 && crm_test_now_s() - t0 < 3)
        usleep(20000);
    assert_int_equal(whoami_version(&c), 2); /* same connection, new script */

    /* a broken script is refused and the running set stays */
    crm_tmpdir_write(f->scripts, "methods.lua", METHODS_BROKEN);
    kill(f->p.pid, SIGHUP);
    usleep(300000);
    assert_int_equal(whoami_version(&c), 2);
    /* hooks of the running set still work too */
    {
        crm_value *r = req(&c, 3000, "{\"op\": \"create\", \"collection\": \"contacts\", \"record\": {\"name\": \"Mallory\"}}");
        assert_string_equal(ws_code(r), "REJECTED");
        crm_value_free(r);
    }
    ws_close(&c);
}


static const char ERRS_LUA[] =
    "crm.method(\"errs.table_message\", function(p)\n"
    "  error({message = \"credit check failed\", code = 7})\n"
    "end)\n"
    "crm.method(\"errs.table_plain\", function(p)\n"
    "  error({code = 7, reason = \"limit\"})\n"
    "end)\n"
    "crm.method(\"errs.nil_index\", function(p)\n"
    "  local t = nil\n"
    "  return t.x\n"
    "end)\n"
    "crm.on(\"contacts.create\", function(ev)\n"
    "  if ev.record.city == \"Errtown\" then\n"
    "    local t = nil\n"
    "    return t.y\n"
    "  end\n"
    "end, {phase = \"before\"})\n";

/* Lines of text holding every one of the needles. */
static int lines_with(const char *text, const char *a, const char *b)
{
    int n = 0;
    for (const char *l = text; l && *l;) {
        const char *e = strchr(l, '\n');
        size_t len = e ? (size_t)(e - l) : strlen(l);
        char *line = strndup(l, len);
        if (line && strstr(line, a) && (!b || strstr(line, b)))
            n++;
        free(line);
        l = e ? e + 1 : NULL;
    }
    return n;
}

/* Script errors on the method and before-hook paths: a table given to
 * error() reaches the client as its message field, or as JSON; each
 * error is logged with the script's file:line, at most 10 a minute per
 * script (15 failing calls: 10 lines). */
static void test_script_errors_logged(void **state)
{
    char *scripts = crm_tmpdir_make("errs-scripts"), *data = crm_tmpdir_make("errs-data"),
         *logdir = crm_tmpdir_make("errs-log"), log[4096], *text;
    const char *argv[] = {getenv("CRMD_BIN"), "serve", "--data", data, "--schemas",
                          getenv("CRM_SCHEMAS"), "--listen", "127.0.0.1:0", "--scripts",
                          scripts, "--plugins", "/nonexistent", NULL};
    crmd_proc p;
    ws_client c;
    char *token;
    crm_value *r;
    (void)state;
    crm_tmpdir_write(scripts, "errs.lua", ERRS_LUA);
    snprintf(log, sizeof log, "%s/crmd.log", logdir);
    assert_int_equal(crmd_spawn(&p, data, getenv("CRM_SCHEMAS"), argv, log), 0);
    assert_non_null(token = crmd_token(&p, "admin"));
    assert_int_equal(ws_connect(&c, p.port, "crm.v1.json", NULL, NULL), 0);
    assert_int_equal(ws_auth(&c, token, 5000), 0);

    r = req(&c, 5000, "{\"op\": \"call\", \"method\": \"errs.table_message\", \"params\": {}}");
    assert_string_equal(ws_code(r), "SCRIPT_ERROR");
    assert_non_null(strstr(ws_message(r), "credit check failed"));
    assert_non_null(strstr(ws_message(r), "errs.lua:2"));
    assert_null(strstr(ws_message(r), "error object is a table"));
    crm_value_free(r);
    r = req(&c, 5000, "{\"op\": \"call\", \"method\": \"errs.table_plain\", \"params\": {}}");
    assert_string_equal(ws_code(r), "SCRIPT_ERROR");
    assert_non_null(strstr(ws_message(r), "\"reason\":\"limit\""));
    crm_value_free(r);
    r = req(&c, 5000, "{\"op\": \"create\", \"collection\": \"contacts\", \"record\": "
                      "{\"name\": \"E\", \"city\": \"Errtown\"}}");
    assert_string_equal(ws_code(r), "SCRIPT_ERROR");
    crm_value_free(r);
    for (int i = 0; i < 15; i++) {
        r = req(&c, 5000, "{\"op\": \"call\", \"method\": \"errs.nil_index\", \"params\": {}}");
        assert_string_equal(ws_code(r), "SCRIPT_ERROR");
        crm_value_free(r);
    }
    ws_close(&c);
    assert_int_equal(crmd_stop(&p), 0);
    assert_non_null(text = crm_test_read_file(log));
    /* one line each, with the script's file and line */
    assert_int_equal(lines_with(text, "script error in a method", "errs.lua:2: credit check failed"), 1);
    assert_int_equal(lines_with(text, "script error in a before-hook", "errs.lua:14:"), 1);
    /* 3 methods' errors before the loop, 15 in it: 10 lines in the minute */
    assert_int_equal(lines_with(text, "script error in a", NULL), 10);
    free(text);
    free(token);
    free(data); /* crmd_stop removed the folder; the name is ours */
    crm_tmpdir_remove(scripts);
    crm_tmpdir_remove(logdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hooks_and_methods_over_the_wire, setup, teardown),
        cmocka_unit_test(test_script_errors_logged),
        cmocka_unit_test_setup_teardown(test_hostile_methods_stopped_others_served, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sighup_reloads_without_dropping_connections, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
