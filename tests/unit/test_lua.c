/*
 * test_lua -- the Lua host on a real LMDB in a temp folder, with the
 * repository's schemas (CRM_SCHEMAS) and scripts the tests write into a
 * temp folder: the sandbox escape checklist (R15), the hostile scripts of
 * R14 (each stopped with SCRIPT_ERROR within 1 s, the state usable after,
 * memory back), ordinary patterns allowed, before-hooks changing and
 * refusing writes (their own writes undone), after-hooks and timers through
 * the bus's group commit, methods through crm_bus_call with the caller,
 * nested calls into a script mid-call, reload refusing a broken script,
 * the converter's round trips and limits, and every docs/examples script.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <lauxlib.h>

#include "bus.h"
#include "codec.h"
#include "lua_host.h"
#include "lua_sandbox.h"
#include "lua_value.h"
#include "schema.h"
#include "store.h"
#include "testutil.h"
#include "tmpdir.h"

typedef struct fixture {
    char *dir, *scripts;
    crm_schema *schema;
    crm_store *store;
    crm_bus *bus;
    crm_lua *lua;
    int64_t now;
    char lastlog[512];
    int logs;
} fixture;

static int64_t fake_clock(void *ud) { return ((fixture *)ud)->now; }

static void log_sink(void *ud, int level, const char *who, const char *msg)
{
    fixture *f = ud;
    snprintf(f->lastlog, sizeof f->lastlog, "%d %s: %s", level, who, msg);
    f->logs++;
}

static double ms_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    const char *sdir = getenv("CRM_SCHEMAS");
    crm_store_opts o;
    crm_bus_opts bo;
    crm_err err;
    assert_non_null(sdir);
    assert_int_equal(crm_schema_load_dir(sdir, &f->schema, &err), CRM_OK);
    f->dir = crm_tmpdir_make("lua");
    f->scripts = crm_tmpdir_make("scripts");
    f->now = 1700000000000;
    crm_store_opts_default(&o);
    o.no_sync = 1;
    o.clock_ms = fake_clock;
    o.clock_ud = f;
    assert_int_equal(crm_store_open(f->dir, f->schema, &o, &f->store, &err), CRM_OK);
    crm_bus_opts_default(&bo);
    bo.max_attempts = 2;
    bo.backoff_ms = 10;
    bo.log = log_sink;
    bo.log_ud = f;
    assert_int_equal(crm_bus_new(f->store, &bo, &f->bus, &err), CRM_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    crm_lua_close(f->lua);
    crm_bus_free(f->bus);
    crm_store_close(f->store);
    crm_schema_free(f->schema);
    crm_tmpdir_remove(f->dir);
    crm_tmpdir_remove(f->scripts);
    free(f);
    return 0;
}

static int open_lua(fixture *f, const crm_lua_opts *o, crm_err *err)
{
    crm_err e;
    int rc = crm_lua_open(f->bus, f->scripts, o, &f->lua, err ? err : &e);
    if (rc != CRM_OK && !err)
        fprintf(stderr, "crm_lua_open: %s\n", e.msg);
    return rc;
}

static void open_ok(fixture *f) { assert_int_equal(open_lua(f, NULL, NULL), CRM_OK); }

/* ---- driving the store and the bus ---- */

static int write1(fixture *f, crm_op op, const char *coll, const char *id, const char *json,
                  crm_value **result, crm_err *err_out)
{
    return crm_test_write(f->store, op, coll, id, json, result, err_out);
}

/* A contact id made by a create that must work. */
static void create_contact(fixture *f, const char *json, char *id, size_t cap)
{
    crm_value *res = NULL;
    crm_err e;
    int rc = write1(f, CRM_OP_CREATE, "contacts", NULL, json, &res, &e);
    if (rc != CRM_OK)
        fprintf(stderr, "create contact: %s\n", e.msg);
    assert_int_equal(rc, CRM_OK);
    snprintf(id, cap, "%s", crm_map_str(res, "id", ""));
    crm_value_free(res);
}

static void pump(fixture *f)
{
    if (crm_test_pump(f->store, f->bus) != 0)
        fail_msg("the bus did not settle");
}

static crm_value *get(fixture *f, const char *coll, const char *id)
{
    crm_txn *t;
    crm_err e;
    crm_value *v = NULL;
    assert_int_equal(crm_store_begin_read(f->store, &t, &e), CRM_OK);
    if (crm_txn_get(t, coll, id, &v, &e) != CRM_OK)
        v = NULL;
    crm_txn_end(t);
    return v;
}

static uint64_t count(fixture *f, const char *coll)
{
    uint64_t n = crm_test_count(f->store, coll);
    assert_true(n != UINT64_MAX);
    return n;
}

/* Calls a method in its own batch; *result (may be NULL) gets the result,
 * err (may be NULL) the failure. */
static int call_as(fixture *f, const char *role, const char *method, const char *params_json,
                   crm_value **result, crm_err *err)
{
    crm_value *params = crm_test_json(params_json ? params_json : "{}"), *res = NULL;
    crm_err e;
    int rc = crm_bus_call_now(f->bus, method, params, "tok_1", role, &res, &e);
    crm_value_free(params);
    if (result)
        *result = res;
    else
        crm_value_free(res);
    if (err)
        *err = e;
    return rc;
}

static int call(fixture *f, const char *method, const char *params_json, crm_value **result,
                crm_err *err)
{
    return call_as(f, "sales", method, params_json, result, err);
}

/* The method's result as JSON text (caller frees). */
static char *call_json(fixture *f, const char *method, const char *params_json)
{
    crm_value *r = NULL;
    crm_err e;
    char *js;
    int rc = call(f, method, params_json, &r, &e);
    if (rc != CRM_OK)
        fail_msg("%s failed: %s %s", method, crm_code_name(rc), e.msg);
    js = r ? crm_json_encode(r, NULL) : strdup("null");
    crm_value_free(r);
    return js;
}

/* Compares as values: maps built in Lua have no key order. */
static void assert_call_json(fixture *f, const char *method, const char *params,
                             const char *expect)
{
    char *js = call_json(f, method, params);
    crm_value *got = crm_test_json(js), *want = crm_test_json(expect);
    if (!crm_value_equal(got, want))
        fail_msg("%s returned %s, expected %s", method, js, expect);
    crm_value_free(got);
    crm_value_free(want);
    free(js);
}

/* ---- R15: sandbox escape checklist ---- */

static const char *const ESCAPE_A =
    "crm.method('probes', function()\n"
    "  local r = {}\n"
    "  r.io = type(io); r.package = type(package); r.require = type(require)\n"
    "  r.debug = type(debug); r.loadfile = type(loadfile); r.dofile = type(dofile)\n"
    "  r.dump = type(string.dump); r.execute = type(os.execute); r.exit = type(os.exit)\n"
    "  r.getenv = type(os.getenv); r.remove = type(os.remove)\n"
    "  r.time = type(os.time); r.clock = type(os.clock); r.date = type(os.date)\n"
    "  r.strmeta = tostring(getmetatable(''))\n"
    "  r.binary = tostring(load('\\27Lua\\84\\0', 'x'))\n"
    "  r.modeb = tostring(load('return 1', 'x', 'b'))\n"
    "  r.text = load('return 40 + 2')()\n"
    "  r.gcstop = tostring(pcall(collectgarbage, 'stop'))\n"
    "  r.gccount = type(collectgarbage('count'))\n"
    "  r.tamper = tostring(pcall(function() getmetatable('').__index = {} end))\n"
    "  r.setmeta = tostring(pcall(setmetatable, '', {}))\n"
    "  r.reader = tostring(pcall(load, function() return nil end))\n"
    "  r.loaded = type(_LOADED)\n"
    "  return r\n"
    "end)\n"
    /* tamper with everything this state can reach */
    "string.upper = function() return 'pwned' end\n"
    "string.evil = true\n"
    "shared_global = 'from a'\n"
    "_G.pairs = nil\n";

static const char *const ESCAPE_B =
    "crm.method('seen', function()\n"
    "  return {upper = ('x'):upper(), evil = tostring(('x').evil),\n"
    "          shared = tostring(shared_global), ts = type(pairs)}\n"
    "end)\n";

static void test_sandbox_escape_checklist(void **state)
{
    fixture *f = *state;
    crm_tmpdir_write(f->scripts, "a.lua", ESCAPE_A);
    crm_tmpdir_write(f->scripts, "b.lua", ESCAPE_B);
    open_ok(f);
    assert_int_equal(crm_lua_count(f->lua), 2);
    char *js = call_json(f, "probes", "{}");
    crm_value *r = crm_test_json(js);
    static const char *const nil_probes[] = {"io", "package", "require", "debug", "loadfile",
                                             "dofile", "dump", "execute", "exit", "getenv",
                                             "remove", "loaded", NULL};
    for (int i = 0; nil_probes[i]; i++) {
        if (strcmp(crm_map_str(r, nil_probes[i], "?"), "nil") != 0)
            fail_msg("probe %s is %s, not nil", nil_probes[i], crm_map_str(r, nil_probes[i], "?"));
    }
    assert_string_equal(crm_map_str(r, "time", ""), "function");
    assert_string_equal(crm_map_str(r, "clock", ""), "function");
    assert_string_equal(crm_map_str(r, "date", ""), "function");
    assert_string_equal(crm_map_str(r, "strmeta", ""), "false");
    assert_string_equal(crm_map_str(r, "binary", ""), "nil");
    assert_string_equal(crm_map_str(r, "modeb", ""), "nil");
    assert_int_equal(crm_map_int(r, "text", 0), 42);
    assert_string_equal(crm_map_str(r, "gcstop", ""), "false");
    assert_string_equal(crm_map_str(r, "gccount", ""), "number");
    assert_string_equal(crm_map_str(r, "tamper", ""), "false");
    assert_string_equal(crm_map_str(r, "setmeta", ""), "false");
    assert_string_equal(crm_map_str(r, "reader", ""), "false");
    crm_value_free(r);
    free(js);
    /* nothing a.lua did is visible to b.lua */
    assert_call_json(f, "seen", "{}",
                     "{\"upper\":\"X\",\"evil\":\"nil\",\"shared\":\"nil\",\"ts\":\"function\"}");
}

/* ---- R14: hostile scripts ---- */

static const char *const HOSTILE =
    "crm.method('ok', function() return 'fine' end)\n"
    "crm.method('loop', function() while true do end end)\n"
    "crm.method('pcall_loop', function()\n"
    "  while true do pcall(function() while true do end end) end\n"
    "end)\n"
    "crm.method('xpcall_loop', function()\n"
    "  while true do xpcall(function() while true do end end, function(e) return e end) end\n"
    "end)\n"
    "crm.method('coroutine_loop', function()\n"
    "  local co = coroutine.wrap(function() while true do coroutine.yield() end end)\n"
    "  local co2 = coroutine.create(function() while true do end end)\n"
    "  while true do co(); pcall(coroutine.resume, co2) end\n"
    "end)\n"
    "crm.method('table_bomb', function()\n"
    "  local t = {} local i = 0\n"
    "  while true do i = i + 1; t[i] = {i, i, i} end\n"
    "end)\n"
    "crm.method('pcall_table_bomb', function()\n"
    "  local keep = {}\n"
    "  while true do\n"
    "    pcall(function() local t = {} for i = 1, 1e9 do t[i] = i end end)\n"
    "    keep[#keep + 1] = 'x'\n"
    "  end\n"
    "end)\n"
    "crm.method('rep_bomb', function() return #string.rep('x', 2^40) end)\n"
    "crm.method('rep_empty', function() return #string.rep('', 2^62) end)\n"
    "crm.method('concat_bomb', function()\n"
    "  local s = 'xxxxxxxxxxxxxxxx' while true do s = s .. s end\n"
    "end)\n"
    "crm.method('pattern', function()\n"
    "  return string.find(string.rep('a', 24), string.rep('a*', 12) .. 'b')\n"
    "end)\n"
    "crm.method('pattern_pcall', function()\n"
    "  local s = string.rep('a', 30)\n"
    "  while true do pcall(string.match, s, string.rep('a*', 15) .. 'b') end\n"
    "end)\n"
    "crm.method('gc_loop', function()\n"
    "  setmetatable({}, {__gc = function() while true do end end})\n"
    "  for i = 1, 1e8 do local x = {i} end\n"
    "end)\n"
    "crm.method('close_loop', function()\n"
    "  do local x <close> = setmetatable({}, {__close = function() while true do end end}) end\n"
    "  return 'not reached'\n"
    "end)\n"
    "crm.method('close_in_error', function()\n"
    "  local x <close> = setmetatable({}, {__close = function() while true do end end})\n"
    "  error('boom')\n"
    "end)\n"
    "crm.method('move', function() return table.move({}, 1, 2^53, 2) end)\n"
    "crm.method('len_insert', function()\n"
    "  local t = setmetatable({}, {__len = function() return 2^60 end})\n"
    "  table.insert(t, 1, 'x')\n"
    "end)\n"
    "crm.method('sort_concat', function()\n"
    "  local t = {} for i = 1, 1e5 do t[i] = tostring(i) end\n"
    "  table.sort(t) return #table.concat(t, ',')\n"
    "end)\n"
    "crm.method('format_bomb', function()\n"
    "  local s = string.rep('x', 1e6)\n"
    "  return #string.format(string.rep('%s', 100), table.unpack(setmetatable({}, {__index = function() return s end}), 1, 100))\n"
    "end)\n"
    "crm.method('date_bomb', function() return #os.date(string.rep('%c', 1e6)) end)\n"
    "crm.method('recursion', function() local function f() return 1 + f() end return f() end)\n";

typedef struct hostile_case {
    const char *method;
    const char *expect; /* in the error message */
} hostile_case;

static void test_hostile_scripts_are_stopped(void **state)
{
    fixture *f = *state;
    static const hostile_case cases[] = {
        {"loop", "hostile.lua:2: instruction budget exhausted"},
        {"pcall_loop", "budget exhausted"},
        {"xpcall_loop", "budget exhausted"},
        {"coroutine_loop", "budget exhausted"},
        /* the memory budget, or on a slow shared machine (ASan under load)
         * the 1 s clock first; test_budget_options_and_latency checks the
         * memory budget with the clock out of the way */
        {"table_bomb", "budget exhausted"},
        {"pcall_table_bomb", "budget exhausted"},
        {"rep_bomb", "hostile.lua:25: string.rep: the result would be"},
        {"rep_empty", NULL}, /* allowed: "" at once */
        {"concat_bomb", "hostile.lua:28: memory budget exhausted"},
        {"pattern", "pattern too complex"},
        {"pattern_pcall", "budget exhausted"},
        {"gc_loop", "hostile.lua:38: setmetatable: __gc metamethods are not allowed"},
        {"close_loop", "budget exhausted"},
        {"close_in_error", "budget exhausted"},
        {"move", "budget exhausted"},
        {"len_insert", "budget exhausted"},
        {"sort_concat", NULL}, /* ordinary work: allowed */
        {"format_bomb", "string.format: the result would be"},
        {"date_bomb", "os.date: format longer"},
        {"recursion", "hostile.lua:63:"},
    };
    crm_tmpdir_write(f->scripts, "hostile.lua", HOSTILE);
    open_ok(f);
    size_t base = crm_lua_memory(f->lua, "hostile.lua");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct timespec t0;
        crm_err e;
        double ms;
        int rc;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        rc = call(f, cases[i].method, "{}", NULL, &e);
        ms = ms_since(&t0);
        fprintf(stderr, "# %-16s %-12s %7.1f ms  %s\n", cases[i].method, crm_code_name(rc), ms,
                rc ? e.msg : "");
        if (cases[i].expect) {
            assert_int_equal(rc, CRM_SCRIPT_ERROR);
            if (!strstr(e.msg, cases[i].expect))
                fail_msg("%s: \"%s\" lacks \"%s\"", cases[i].method, e.msg, cases[i].expect);
            assert_true(strncmp(e.msg, "hostile.lua", 11) == 0);
        } else {
            assert_int_equal(rc, CRM_OK);
        }
        /* within the 1 s budget, or at most 50 ms past it (R14) */
        if (ms >= 1050.0)
            fail_msg("%s took %.1f ms", cases[i].method, ms);
        /* the state keeps working, and after a failure the memory came
         * back (a call that succeeds leaves its garbage to the collector) */
        assert_call_json(f, "ok", "{}", "\"fine\"");
        size_t now = crm_lua_memory(f->lua, "hostile.lua");
        if (cases[i].expect && now > base + (2u << 20))
            fail_msg("%s: memory %zu after, %zu before", cases[i].method, now, base);
    }
}

/* Tighter budgets stop the same loops sooner: the stop comes within a few
 * ms of the budget. */
static void test_budget_options_and_latency(void **state)
{
    fixture *f = *state;
    crm_lua_opts o;
    struct timespec t0;
    crm_err e;
    double ms;
    crm_tmpdir_write(f->scripts, "hostile.lua", HOSTILE);
    crm_lua_opts_default(&o);
    o.max_instructions = UINT64_MAX / 4; /* only the clock stops it */
    o.max_ms = 100;
    o.max_memory = 8u << 20;
    assert_int_equal(open_lua(f, &o, NULL), CRM_OK);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(call(f, "pcall_loop", "{}", NULL, &e), CRM_SCRIPT_ERROR);
    ms = ms_since(&t0);
    fprintf(stderr, "# time budget 100 ms: stopped after %.1f ms: %s\n", ms, e.msg);
    assert_non_null(strstr(e.msg, "time budget exhausted"));
    /* not before the budget; how soon after it is a figure of R14 (printed
     * above, docs/reliability.md), not asserted: the machine is shared */
    assert_true(ms >= 100.0);
    /* the memory budget alone: a clock of 100 ms could run out first on a
     * slow shared machine */
    crm_lua_close(f->lua);
    f->lua = NULL;
    o.max_ms = 600000;
    assert_int_equal(open_lua(f, &o, NULL), CRM_OK);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(call(f, "table_bomb", "{}", NULL, &e), CRM_SCRIPT_ERROR);
    fprintf(stderr, "# memory budget 8 MiB: stopped after %.1f ms: %s\n", ms_since(&t0), e.msg);
    assert_non_null(strstr(e.msg, "memory budget exhausted"));
    assert_true(crm_lua_memory(f->lua, NULL) < (4u << 20));
    assert_call_json(f, "ok", "{}", "\"fine\"");
}

/* ---- patterns: ordinary ones pass ---- */

static const char *const PATTERNS =
    "local s = string.rep(' ', 100) .. string.rep('word ', 2000) .. string.rep(' ', 100)\n"
    "crm.method('ordinary', function()\n"
    "  local r = {}\n"
    "  r.trim = #s:match('^%s*(.-)%s*$')\n"
    "  r.words = select(2, s:gsub('%w+', ''))\n"
    "  local n = 0 for w in s:gmatch('%a+') do n = n + 1 end r.gmatch = n\n"
    "  r.find = s:find('word%s+word', 1000)\n"
    "  r.plain = s:find('word word', 1, true)\n"
    "  r.balanced = ('f(a(b)c)d'):match('%b()')\n"
    "  r.frontier = select(2, ('THE (quick) fox'):gsub('%f[%a]%a+', 'w'))\n"
    "  r.backref = ('say \"hi\" now'):match('([\"\\'])(.-)%1')\n"
    "  r.email = ('a.b@example.com'):find('^[^@%s]+@[^@%s]+%.[^@%s]+$') ~= nil\n"
    /* unanchored and lazy with no match is quadratic: fine on 2 KB, too
     * much on 10 KB (5e7 steps) */
    "  r.lazy_small = s:sub(1, 2000):find('(.-)x') == nil\n"
    "  local ok, e = pcall(string.find, s, '(.-)x')\n"
    "  r.lazy_big = e:match('pattern too complex') ~= nil\n"
    "  return r\n"
    "end)\n";

static void test_ordinary_patterns_allowed(void **state)
{
    fixture *f = *state;
    crm_lua_opts o;
    crm_tmpdir_write(f->scripts, "patterns.lua", PATTERNS);
    /* what is checked is that ordinary patterns are not refused; the time
     * budget (1 s) is for hostile ones, and a slow sanitizer build on a
     * loaded machine can use it up on these */
    crm_lua_opts_default(&o);
    o.max_ms = 60000;
    assert_int_equal(open_lua(f, &o, NULL), CRM_OK);
    assert_call_json(f, "ordinary", "{}",
                     "{\"trim\":9999,\"words\":2000,\"gmatch\":2000,\"find\":1001,\"plain\":101,"
                     "\"balanced\":\"(a(b)c)\",\"frontier\":3,\"backref\":\"\\\"\","
                     "\"email\":true,\"lazy_small\":true,\"lazy_big\":true}");
}

/* ---- hooks ---- */

static const char *const BEFORE =
    "crm.on('contacts.create', function(ev)\n"
    "  assert(ev.phase == 'before' and ev.op == 'create' and ev.collection == 'contacts')\n"
    "  crm.create('companies', {name = 'made by hook for ' .. ev.record.name})\n"
    "  ev.record.city = 'Berlin'\n"
    "  ev.record.notes = nil\n"
    "  if ev.record.name == 'bad' then crm.reject('no bad names') end\n"
    "  if ev.record.name == 'boom' then local x = nil; return x.y end\n"
    "  if ev.record.name == 'caught' then\n"
    "    local ok, e = pcall(crm.create, 'contacts', {city = 'x'})\n"
    "    ev.record.job_title = e:sub(1, 11)\n"
    "  end\n"
    "  if ev.record.name == 'nul' then\n"
    "    local ok, e = pcall(crm.get, 'companies', 'a\\0b')\n"
    "    local ok2 = pcall(crm.get, 'companies\\0x', 'a')\n"
    "    ev.record.job_title = (not ok and not ok2 and e:find('must not contain NUL')) and 'refused' or 'cut'\n"
    "  end\n"
    "end, {phase = 'before'})\n";

static void test_before_hook_changes_and_rejects(void **state)
{
    fixture *f = *state;
    crm_value *res = NULL;
    crm_err e;
    crm_tmpdir_write(f->scripts, "before.lua", BEFORE);
    open_ok(f);
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", NULL,
                            "{\"name\": \"Ann\", \"notes\": \"drop me\"}", &res, &e),
                     CRM_OK);
    assert_string_equal(crm_map_str(res, "city", ""), "Berlin");
    assert_null(crm_map_get(res, "notes"));
    crm_value_free(res);
    assert_int_equal(count(f, "companies"), 1);

    /* a refusal undoes the hook's own write */
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", NULL, "{\"name\": \"bad\"}", NULL, &e),
                     CRM_REJECTED);
    assert_string_equal(e.msg, "no bad names");
    assert_int_equal(count(f, "companies"), 1);
    assert_int_equal(count(f, "contacts"), 1);

    /* a runtime error names file and line, and is undone the same way */
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", NULL, "{\"name\": \"boom\"}", NULL, &e),
                     CRM_SCRIPT_ERROR);
    assert_non_null(strstr(e.msg, "before.lua:7:"));
    assert_int_equal(count(f, "companies"), 1);

    /* a refused write inside the hook is a catchable error with its code */
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", NULL, "{\"name\": \"caught\"}", &res,
                            &e),
                     CRM_OK);
    assert_string_equal(crm_map_str(res, "job_title", ""), "VALIDATION:");
    crm_value_free(res);

    /* a name with a NUL inside is refused, never cut short at it */
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", NULL, "{\"name\": \"nul\"}", &res, &e),
                     CRM_OK);
    assert_string_equal(crm_map_str(res, "job_title", ""), "refused");
    crm_value_free(res);
}

static const char *const AFTER =
    "crm.on('contacts.create', function(ev)\n"
    "  assert(ev.phase == 'after' and ev.seq > 0 and ev.prev == nil)\n"
    "  crm.create('companies', {name = 'after ' .. ev.record.name})\n"
    "  crm.schedule(30, 'tick', {id = ev.id}, {key = ev.id})\n"
    "end, {name = 'mirror'})\n"
    "crm.on_timer('tick', function(p, name)\n"
    "  crm.update('contacts', p.id, {city = name .. ' fired'})\n"
    "end)\n"
    "crm.on('contacts.update', function(ev)\n"
    "  if ev.record.city == 'poison' then error('always fails') end\n"
    "end)\n";

static void test_after_hooks_and_timers(void **state)
{
    fixture *f = *state;
    char id[64];
    crm_value *c;
    crm_err e;
    crm_tmpdir_write(f->scripts, "after.lua", AFTER);
    open_ok(f);
    create_contact(f, "{\"name\": \"Bo\"}", id, sizeof id);
    pump(f);
    assert_int_equal(count(f, "companies"), 1);
    c = get(f, "contacts", id);
    assert_string_equal(crm_map_str(c, "city", "-"), "-"); /* not due yet */
    crm_value_free(c);
    f->now += 31000;
    pump(f);
    c = get(f, "contacts", id);
    assert_string_equal(crm_map_str(c, "city", ""), "tick fired");
    crm_value_free(c);
    assert_int_equal(count(f, "companies"), 1); /* exactly once */

    /* a poison after-hook is dead-lettered with file and line, and the feed goes on */
    assert_int_equal(write1(f, CRM_OP_UPDATE, "contacts", id, "{\"city\": \"poison\"}", NULL, &e),
                     CRM_OK);
    for (int i = 0; i < 5; i++) {
        pump(f);
        f->now += 1000;
    }
    assert_int_equal(count(f, "dead_letters"), 1);
    assert_non_null(strstr(f->lastlog, "after.lua:10: always fails"));
}

/* ---- methods, nesting, re-entrancy ---- */

static const char *const METHODS =
    "crm.method('whoami', function(params, ctx)\n"
    "  return {user = ctx.user, role = ctx.role, now = crm.now(), echo = params}\n"
    "end)\n"
    "crm.method('mk', function(params)\n"
    "  local c = crm.create('companies', {name = params.name})\n"
    "  local again = crm.get('companies', c.id)\n"
    "  local q = crm.query('companies', {name = c.name})\n"
    "  return {name = c.name, same = again.id == c.id, found = #q.records,\n"
    "          missing = crm.get('companies', 'co_nope') == nil}\n"
    "end)\n"
    "crm.on('companies.create', function(ev)\n"
    "  ev.record.name = ev.record.name .. '!'\n"
    "  if ev.record.name == 'spin!' then while true do end end\n"
    "end, {phase = 'before'})\n"
    "crm.method('refuse', function() crm.reject('not today') end)\n"
    "crm.method('bad_result', function() return {f = function() end} end)\n"
    "crm.method('nulls', function()\n"
    "  local c = crm.create('companies', {name = 'n', website = 'w'})\n"
    "  local u = crm.update('companies', c.id, {website = crm.null})\n"
    "  crm.delete('companies', c.id, {if_rev = u._rev})\n"
    "  return {website = tostring(u.website), gone = crm.get('companies', c.id) == nil,\n"
    "          arr = crm.array(), map = {}}\n"
    "end)\n"
    "crm.method('matches', function()\n"
    "  local ok, err = pcall(crm.match, 'companies', {name = {nah = 1}}, {name = 'x'})\n"
    "  return {yes = crm.match('companies', {name = {prefix = 'ac'}}, {name = 'acme'}),\n"
    "          no = crm.match('companies', {name = 'b'}, {name = 'acme'}),\n"
    "          all = crm.match('companies', nil, {name = 'z'}), bad = tostring(err):sub(1, 12)}\n"
    "end)\n";

static void test_methods_and_nested_calls(void **state)
{
    fixture *f = *state;
    crm_value *r = NULL;
    crm_err e;
    crm_tmpdir_write(f->scripts, "methods.lua", METHODS);
    open_ok(f);
    assert_int_equal(call_as(f, "analyst", "whoami", "{\"a\": [1, 2.5, \"x\"]}", &r, &e), CRM_OK);
    assert_string_equal(crm_map_str(r, "user", ""), "tok_1");
    assert_string_equal(crm_map_str(r, "role", ""), "analyst");
    assert_int_equal(crm_map_int(r, "now", 0), f->now);
    crm_value_free(r);
    /* the write runs the same script's before-hook while 'mk' is mid-call */
    assert_call_json(f, "mk", "{\"name\": \"acme\"}",
                     "{\"name\":\"acme!\",\"same\":true,\"found\":1,\"missing\":true}");
    /* a nested call shares the outer budget: the hook's loop ends both */
    assert_int_equal(call(f, "mk", "{\"name\": \"spin\"}", NULL, &e), CRM_SCRIPT_ERROR);
    assert_non_null(strstr(e.msg, "methods.lua:13: instruction budget exhausted"));
    assert_int_equal(count(f, "companies"), 1);
    assert_int_equal(call(f, "refuse", "{}", NULL, &e), CRM_REJECTED);
    assert_string_equal(e.msg, "not today");
    assert_int_equal(call(f, "bad_result", "{}", NULL, &e), CRM_SCRIPT_ERROR);
    assert_non_null(strstr(e.msg, "result.f: a function cannot be stored"));
    assert_call_json(f, "nulls", "{}",
                     "{\"website\":\"nil\",\"gone\":true,\"arr\":[],\"map\":{}}");
    assert_int_equal(call(f, "nope", "{}", NULL, &e), CRM_NOT_FOUND);
    assert_call_json(f, "matches", "{}",
                     "{\"yes\":true,\"no\":false,\"all\":true,\"bad\":\"BAD_REQUEST:\"}");
}

/* ---- loading and reload ---- */

static void test_load_errors_name_file_and_line(void **state)
{
    fixture *f = *state;
    crm_err e;
    crm_tmpdir_write(f->scripts, "a.lua", "crm.method('v', function() return 1 end)\n");
    crm_tmpdir_write(f->scripts, "b.lua", "local x = 1\n\nx = = 2\n");
    assert_int_equal(open_lua(f, NULL, &e), CRM_SCRIPT_ERROR);
    assert_non_null(strstr(e.msg, "b.lua:3:"));
    assert_null(f->lua);
    assert_int_equal(crm_bus_has_method(f->bus, "v"), 0); /* a.lua's registration is gone */

    crm_tmpdir_write(f->scripts, "b.lua", "local r = crm.get('contacts', 'c_1')\n");
    assert_int_equal(open_lua(f, NULL, &e), CRM_SCRIPT_ERROR);
    assert_non_null(strstr(e.msg, "b.lua:1: crm.get: records and timers are only reachable"));

    crm_tmpdir_write(f->scripts, "b.lua", "crm.on('nosuch.create', function() end)\n");
    assert_int_equal(open_lua(f, NULL, &e), CRM_SCRIPT_ERROR);
    assert_non_null(strstr(e.msg, "b.lua:1: crm.on: BAD_REQUEST"));

    crm_tmpdir_write(f->scripts, "b.lua", "while true do end\n");
    assert_int_equal(open_lua(f, NULL, &e), CRM_SCRIPT_ERROR);
    assert_non_null(strstr(e.msg, "b.lua:1: instruction budget exhausted"));
}

static void test_reload_keeps_old_set_on_error(void **state)
{
    fixture *f = *state;
    crm_err e;
    crm_tmpdir_write(f->scripts, "a.lua", "crm.method('v', function() return 1 end)\n");
    open_ok(f);
    assert_call_json(f, "v", "{}", "1");
    crm_tmpdir_write(f->scripts, "a.lua", "crm.method('v', function() return 2 end)\n"
                                          "crm.method('w', function()\n"
                                          "  return 3 +\n"
                                          "end)\n");
    assert_int_equal(crm_lua_reload(f->lua, &e), CRM_SCRIPT_ERROR);
    assert_non_null(strstr(e.msg, "a.lua:4:"));
    assert_call_json(f, "v", "{}", "1");
    assert_int_equal(crm_bus_has_method(f->bus, "w"), 0);
    crm_tmpdir_write(f->scripts, "a.lua", "crm.method('v', function() return 2 end)\n");
    crm_tmpdir_write(f->scripts, "z.lua", "crm.method('z', function() return crm.script end)\n");
    assert_int_equal(crm_lua_reload(f->lua, &e), CRM_OK);
    assert_int_equal(crm_lua_count(f->lua), 2);
    assert_call_json(f, "v", "{}", "2");
    assert_call_json(f, "z", "{}", "\"z.lua\"");
}

/* crm.clock: a float of seconds that moves forward with real time; crm.now
 * is the server clock (a test clock here, which does not move by itself). */
static void test_clock_is_wall_time(void **state)
{
    fixture *f = *state;
    crm_tmpdir_write(f->scripts, "clock.lua",
                     "crm.method('t.clock', function()\n"
                     "  local a = crm.clock()\n"
                     "  local x = 0\n"
                     "  for i = 1, 200000 do x = x + i end\n"
                     "  local b = crm.clock()\n"
                     "  return {float = math.type(a) == 'float', forward = b > a,\n"
                     "          sane = b - a < 60}\n"
                     "end)\n");
    open_ok(f);
    assert_call_json(f, "t.clock", "{}", "{\"float\": true, \"forward\": true, \"sane\": true}");
}

static void test_missing_or_empty_dir(void **state)
{
    fixture *f = *state;
    crm_err e;
    crm_tmpdir_write(f->scripts, "notes.txt", "not a script");
    open_ok(f);
    assert_int_equal(crm_lua_count(f->lua), 0);
    crm_lua_close(f->lua);
    f->lua = NULL;
    assert_int_equal(crm_lua_open(f->bus, "/nonexistent/scripts", NULL, &f->lua, &e), CRM_OK);
    assert_int_equal(crm_lua_count(f->lua), 0);
}

/* ---- the converter ---- */

typedef struct conv_env {
    crm_lua_guard g;
    lua_State *L;
} conv_env;

static int init_body(lua_State *L)
{
    crm_lua_value_init(L);
    lua_pushlightuserdata(L, (void *)&crm_lua_null_key);
    lua_setglobal(L, "null");
    return 0;
}

static void conv_open(conv_env *c)
{
    memset(c, 0, sizeof *c);
    c->g.max_instructions = 50000000;
    c->g.max_memory = 64u << 20;
    c->g.max_ms = 1000;
    assert_non_null(c->L = crm_lua_sandbox_new(&c->g));
    lua_pushcfunction(c->L, init_body);
    assert_int_equal(lua_pcall(c->L, 0, 0, 0), LUA_OK);
}

/* Evaluates a Lua expression and converts it; returns 0 or -1 with err. */
static int conv_eval(conv_env *c, const char *expr, crm_value **out, char *err, size_t cap)
{
    char code[4096];
    int rc;
    snprintf(code, sizeof code, "return %s", expr);
    crm_lua_guard_enter(&c->g, c->L);
    assert_int_equal(luaL_loadstring(c->L, code), LUA_OK);
    if (lua_pcall(c->L, 0, 1, 0) != LUA_OK)
        fail_msg("%s: %s", expr, lua_tostring(c->L, -1));
    rc = crm_lua_to_value(c->L, -1, "v", out, err, cap);
    lua_pop(c->L, 1);
    crm_lua_guard_leave(&c->g, c->L, LUA_OK);
    return rc;
}

static int push_body(lua_State *L)
{
    crm_lua_push_value(L, lua_touserdata(L, 1));
    return 1;
}

static void test_converter_round_trips_and_limits(void **state)
{
    conv_env c;
    crm_value *v;
    char err[200];
    static const char *const round[] = {
        "{\"a\":1,\"b\":[1,2.5,\"x\",true,null],\"c\":{\"d\":[]},\"e\":{}}",
        "[9223372036854775807,-9223372036854775808,0.5,-0.0,1e300]",
        "\"h\\u00e9llo\"",
        "[[[[[]]]]]",
    };
    (void)state;
    conv_open(&c);
    for (size_t i = 0; i < sizeof round / sizeof round[0]; i++) {
        crm_value *in = crm_test_json(round[i]), *back = NULL;
        lua_pushcfunction(c.L, push_body);
        lua_pushlightuserdata(c.L, in);
        assert_int_equal(lua_pcall(c.L, 1, 1, 0), LUA_OK);
        assert_int_equal(crm_lua_to_value(c.L, -1, "v", &back, err, sizeof err), 0);
        lua_pop(c.L, 1);
        if (!crm_value_equal(in, back))
            fail_msg("round trip of %s differs", round[i]);
        crm_value_free(in);
        crm_value_free(back);
    }
    assert_int_equal(conv_eval(&c, "{}", &v, err, sizeof err), 0);
    assert_int_equal(v->type, CRM_T_MAP);
    crm_value_free(v);
    assert_int_equal(conv_eval(&c, "{1, 2, null, 4}", &v, err, sizeof err), 0);
    assert_int_equal(v->type, CRM_T_ARR);
    assert_int_equal(v->u.arr.items[2]->type, CRM_T_NIL);
    crm_value_free(v);
    assert_int_equal(conv_eval(&c, "{x = 1.0, y = 3}", &v, err, sizeof err), 0);
    assert_int_equal(crm_map_get(v, "x")->type, CRM_T_NUM);
    assert_int_equal(crm_map_get(v, "y")->type, CRM_T_INT);
    crm_value_free(v);

    static const struct {
        const char *expr, *msg;
    } bad[] = {
        {"{1, 2, x = 3}", "v: a table mixes string keys and array positions"},
        {"{[1] = 1, [3] = 3}", "v: an array with holes"},
        {"{a = {b = 0/0}}", "v.a.b: NaN and infinities cannot be stored"},
        {"{a = 1/0}", "v.a: NaN and infinities"},
        {"{f = type}", "v.f: a function cannot be stored"},
        {"{[true] = 1}", "v: keys must be strings"},
        {"{[1.5] = 1}", "v: keys must be strings"},
        {"{s = '\\255'}", "v.s: a string must be valid UTF-8"},
        {"{t = {{{}, coroutine.create(type)}}}", "v.t[1][2]: a thread cannot be stored"},
        {"(function() local t = {} t.self = t return t end)()", "nested deeper than 32"},
        {"(function() local t = {} for i = 1, 40 do t = {t} end return t end)()",
         "nested deeper than 32"},
        {"string.rep('x', 6e6) .. string.rep('y', 6e6) .. string.rep('z', 6e6)",
         "value larger than"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = NULL;
        if (conv_eval(&c, bad[i].expr, &v, err, sizeof err) != -1)
            fail_msg("%s was converted", bad[i].expr);
        assert_null(v);
        if (!strstr(err, bad[i].msg))
            fail_msg("%s: \"%s\" lacks \"%s\"", bad[i].expr, err, bad[i].msg);
    }
    /* 32 levels are fine */
    assert_int_equal(
        conv_eval(&c, "(function() local t = {} for i = 1, 31 do t = {t} end return t end)()", &v,
                  err, sizeof err),
        0);
    crm_value_free(v);
    crm_lua_guard_close(&c.g, c.L);
}

/* ---- docs/examples ---- */

static char *repo_path(const char *rel)
{
    const char *schemas = getenv("CRM_SCHEMAS");
    char *p = malloc(strlen(schemas) + strlen(rel) + 8);
    strcpy(p, schemas);
    char *slash = strrchr(p, '/');
    assert_non_null(slash);
    strcpy(slash + 1, rel);
    return p;
}

static char *slurp(const char *path)
{
    char *text = crm_test_read_file(path);
    assert_non_null(text);
    return text;
}

static void copy_example(fixture *f, const char *name)
{
    char rel[128];
    snprintf(rel, sizeof rel, "docs/examples/%s", name);
    char *path = repo_path(rel);
    char *text = slurp(path);
    crm_tmpdir_write(f->scripts, name, text);
    free(text);
    free(path);
}

static void test_docs_examples(void **state)
{
    fixture *f = *state;
    static const char *const examples[] = {"chunked_job.lua", "contact_methods.lua",
                                           "contact_rules.lua", "ticket_sla.lua", NULL};
    char ids[5][64], tid[64];
    crm_value *r = NULL;
    crm_err e;
    for (int i = 0; examples[i]; i++)
        copy_example(f, examples[i]);
    open_ok(f);
    assert_int_equal(crm_lua_count(f->lua), 4);

    /* contact_rules.lua */
    create_contact(f, "{\"name\": \"  Dee  \", \"email\": \" DEE@Example.COM \"}", ids[0],
                   sizeof ids[0]);
    r = get(f, "contacts", ids[0]);
    assert_string_equal(crm_map_str(r, "name", ""), "Dee");
    assert_string_equal(crm_map_str(r, "email", ""), "dee@example.com");
    crm_value_free(r);
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", NULL,
                            "{\"name\": \"x\", \"email\": \"nope\"}", NULL, &e),
                     CRM_REJECTED);
    assert_string_equal(e.msg, "email nope does not look like an address");

    /* contact_methods.lua */
    assert_int_equal(call_as(f, "analyst", "contacts.touch", "{}", NULL, &e), CRM_REJECTED);
    char params[256];
    snprintf(params, sizeof params, "{\"id\": \"%s\"}", ids[0]);
    assert_int_equal(call_as(f, "sales", "contacts.touch", params, &r, &e), CRM_OK);
    assert_int_equal(crm_map_int(r, "last_interaction_at", 0), f->now);
    assert_string_equal(crm_map_str(r, "by", ""), "tok_1");
    crm_value_free(r);
    snprintf(params, sizeof params, "{\"id\": \"%s\", \"text\": \"hi\", \"rev\": 1}", ids[0]);
    assert_call_json(f, "contacts.note", params,
                     "{\"saved\":false,\"reason\":\"changed meanwhile\"}");
    snprintf(params, sizeof params, "{\"id\": \"%s\", \"text\": \"hi\", \"rev\": 2}", ids[0]);
    assert_call_json(f, "contacts.note", params, "{\"saved\":true}");

    /* chunked_job.lua: 5 contacts in pages of 2, one timer call per page */
    for (int i = 1; i < 5; i++) {
        char js[96];
        snprintf(js, sizeof js, "{\"name\": \"c%d\"}", i);
        create_contact(f, js, ids[i], sizeof ids[i]);
    }
    assert_call_json(f, "jobs.tag_all", "{\"tag\": \"vip\"}", "{\"started\":true}");
    pump(f);
    for (int i = 0; i < 5; i++) {
        r = get(f, "contacts", ids[i]);
        const crm_value *tags = crm_map_get(r, "tags");
        assert_non_null(tags);
        assert_int_equal(tags->u.arr.n, 1);
        assert_string_equal(tags->u.arr.items[0]->u.str.s, "vip");
        crm_value_free(r);
    }
    assert_non_null(strstr(f->lastlog, "jobs.tag_all done: vip"));

    /* ticket_sla.lua */
    char js[160];
    snprintf(js, sizeof js, "{\"contact\": \"%s\", \"subject\": \"broken\", \"priority\": \"urgent\"}",
             ids[0]);
    assert_int_equal(write1(f, CRM_OP_CREATE, "tickets", NULL, js, &r, &e), CRM_OK);
    snprintf(tid, sizeof tid, "%s", crm_map_str(r, "id", ""));
    crm_value_free(r);
    pump(f);
    r = get(f, "tickets", tid);
    assert_int_equal(crm_map_int(r, "sla_due_at", 0), f->now + 3600 * 1000);
    crm_value_free(r);
    f->now += 3601 * 1000;
    pump(f);
    r = get(f, "tickets", tid);
    assert_int_equal(crm_map_int(r, "escalation_level", 0), 1);
    crm_value_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sandbox_escape_checklist, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_scripts_are_stopped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget_options_and_latency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ordinary_patterns_allowed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_before_hook_changes_and_rejects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_after_hooks_and_timers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_methods_and_nested_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_errors_name_file_and_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_keeps_old_set_on_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clock_is_wall_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_or_empty_dir, setup, teardown),
        cmocka_unit_test(test_converter_round_trips_and_limits),
        cmocka_unit_test_setup_teardown(test_docs_examples, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
