/*
 * oom -- allocation failure at every call site in turn (reliability plan
 * R8, SQLite style).
 *
 * How allocations are made to fail: this program is linked with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free,--wrap=strdup,
 * --wrap=strndup, so every call the kernel (libcrmkernel.a, linked in
 * statically) and this file make goes through the __wrap_ functions below;
 * jansson's own allocations come there too (codec_json.c gives jansson an
 * allocator that calls malloc), and the Lua states of the scenarios use an allocator that calls realloc
 * (the kernel's sandbox allocator does the same).  Why not a crm_malloc
 * wrapper: the kernel has none, and adding one means touching every module
 * (about 100 call sites); why not an LD_PRELOAD malloc: it would also fail
 * allocations of libc, cmocka and the sanitizer runtimes, which are not ours
 * to test, and it fights ASan's own malloc.  --wrap fails exactly the calls
 * our code makes, deterministically, and ASan still checks every byte
 * (__real_malloc is ASan's malloc).  Not covered: allocations inside
 * shared libraries other than jansson and Lua (LMDB, msgpack-c's unpacker,
 * libwebsockets, OpenSSL).
 *
 * Each scenario runs once clean (its allocation count K and its reference
 * result), then with call N = 1..K failing, in two modes: only call N fails
 * ("once", every N), and every call from N on fails ("persistent", so the
 * error paths themselves run without memory; every 5th N, or every N with
 * CRM_OOM_FULL=1).  Every run must: not crash;
 * free everything it allocated (the wrappers keep the set of live blocks:
 * 0 left is the pass, in every build, and LeakSanitizer checks again under
 * ASan); and either finish with exactly the reference result or return a
 * clean error (an error code and a message).  An error without an injected
 * failure, or a success with a different result, is a failure.
 *
 * Env: CRM_OOM_ONLY=name runs one scenario; CRM_OOM_VERBOSE=1 prints each N;
 * CRM_OOM_FULL=1 runs the persistent mode at every N (by default every 5th;
 * the once mode always runs at every N).
 */
#include <dirent.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"
#include "bus.h"
#include "lua_host.h"
#include "lua_value.h"
#include "testutil.h"
#include "schema.h"
#include "store.h"
#include "tmpdir.h"

/* ---- the failing allocator ---- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t sz);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);

static long alloc_calls;  /* allocation calls since the scenario began */
static long fail_at;      /* 0: never fail */
static int persistent;    /* fail every call from fail_at on */
static long injected;     /* failures injected in this run */
static int tracking;      /* live-block tracking on (off while setting up) */

/* Live blocks: open addressing, linear probing, deletion by backward shift. */
#define LIVE_SLOTS (1u << 18)
static void *live[LIVE_SLOTS];
static long nlive;

static size_t slot_of(const void *p)
{
    uintptr_t x = (uintptr_t)p;
    x ^= x >> 17;
    x *= 0x9E3779B97F4A7C15ull;
    return (size_t)(x >> 40) & (LIVE_SLOTS - 1);
}

static void live_add(void *p)
{
    size_t i = slot_of(p);
    if (nlive + 1 >= (long)(LIVE_SLOTS * 3 / 4)) {
        fprintf(stderr, "oom: more than %u live blocks\n", LIVE_SLOTS * 3 / 4);
        abort();
    }
    while (live[i])
        i = (i + 1) & (LIVE_SLOTS - 1);
    live[i] = p;
    nlive++;
}

static int live_del(void *p)
{
    size_t i = slot_of(p), j;
    while (live[i] && live[i] != p)
        i = (i + 1) & (LIVE_SLOTS - 1);
    if (!live[i])
        return 0;
    live[i] = NULL;
    nlive--;
    for (j = (i + 1) & (LIVE_SLOTS - 1); live[j]; j = (j + 1) & (LIVE_SLOTS - 1)) {
        size_t h = slot_of(live[j]);
        /* move live[j] back into the hole at i when its home is not in (i, j] */
        if ((j > i && (h <= i || h > j)) || (j < i && (h <= i && h > j))) {
            live[i] = live[j];
            live[j] = NULL;
            i = j;
        }
    }
    return 1;
}

/* A place for a debugger: break here to see the call site of a failure
 * (gdb -ex 'break oom_injected' with CRM_OOM_ONLY and CRM_OOM_AT). */
__attribute__((noinline)) void oom_injected(long n);
__attribute__((noinline)) void oom_injected(long n)
{
    __asm__ volatile("" ::"r"(n));
}

static int must_fail(void)
{
    alloc_calls++;
    if (fail_at && (alloc_calls == fail_at || (persistent && alloc_calls > fail_at))) {
        injected++;
        oom_injected(alloc_calls);
        return 1;
    }
    return 0;
}

void *__wrap_malloc(size_t n)
{
    void *p;
    if (must_fail())
        return NULL;
    if ((p = __real_malloc(n)) && tracking)
        live_add(p);
    return p;
}

void *__wrap_calloc(size_t n, size_t sz)
{
    void *p;
    if (must_fail())
        return NULL;
    if ((p = __real_calloc(n, sz)) && tracking)
        live_add(p);
    return p;
}

void __wrap_free(void *p)
{
    if (p)
        live_del(p);
    __real_free(p);
}

void *__wrap_realloc(void *p, size_t n)
{
    void *q;
    if (n == 0 || must_fail())
        return n == 0 ? (__wrap_free(p), NULL) : NULL;
    q = __real_realloc(p, n);
    if (q) {
        int was = p ? live_del(p) : 0;
        if (tracking || was)
            live_add(q);
    }
    return q;
}

char *__wrap_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = __wrap_malloc(n);
    return p ? memcpy(p, s, n) : NULL;
}

char *__wrap_strndup(const char *s, size_t max)
{
    size_t n = strnlen(s, max);
    char *p = __wrap_malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}


static void *lua_test_alloc(void *ud, void *p, size_t osize, size_t nsize)
{
    (void)ud;
    (void)osize;
    if (nsize == 0) {
        free(p);
        return NULL;
    }
    return realloc(p, nsize);
}

/* ---- scenarios ---- */

enum { S_OK, S_ERR, S_BAD };

static char why[512];

static int bad(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return S_BAD;
}

/* A clean error: a code and a message. */
static int clean(const crm_err *e, const char *what)
{
    if (e->code == CRM_OK || !e->msg[0])
        return bad("%s failed without an error code and message (code %d)", what, e->code);
    return S_ERR;
}

static const char DOC[] =
    "{\"id\": \"p_1\", \"name\": \"Zo\\u00eb \\\"Q\\\" M\\u00fcller\", \"age\": 42, \"score\": 3.25,"
    " \"vip\": true, \"note\": null, \"tags\": [\"a\", \"b\", \"\\ud83d\\ude00\", 1, 2.5, false, null,"
    " [1, [2, [3]]], {\"k\": \"v\"}], \"addr\": {\"street\": \"Hauptstra\\u00dfe 1\", \"city\": \"Berlin\","
    " \"geo\": {\"lat\": 52.52, \"lon\": 13.405}}, \"big\": 9007199254740993, \"neg\": -1e-7}";

static crm_value *ref_doc;     /* DOC decoded */
static char *ref_json;         /* its encoding */
static size_t ref_json_len;
static char *schema_dir, *store_dir, *query_dir;
static crm_schema *schema;     /* from schema_dir */
static crm_store *qstore;      /* a store with records, for the query scenario */
static crm_value *ref_query, *ref_agg, *ref_valid, *ref_edit;

static crm_value *dec(const char *json, crm_err *e)
{
    return crm_json_decode(json, strlen(json), NULL, e);
}

static int sc_json_decode(void)
{
    crm_err e = {0};
    crm_value *v = crm_json_decode(DOC, sizeof DOC - 1, NULL, &e);
    int rc;
    if (!v)
        return clean(&e, "crm_json_decode");
    rc = crm_value_equal(v, ref_doc) ? S_OK : bad("decoded tree differs");
    if (rc == S_BAD && getenv("CRM_OOM_VERBOSE")) {
        long save = fail_at;
        char *got;
        fail_at = 0;
        got = crm_json_encode(v, NULL);
        fprintf(stderr, "got:  %s\nwant: %s\n", got, ref_json);
        free(got);
        fail_at = save;
    }
    crm_value_free(v);
    return rc;
}

static int sc_json_encode(void)
{
    size_t len;
    char *s = crm_json_encode(ref_doc, &len);
    int rc;
    if (!s)
        return S_ERR; /* documented: NULL on OOM */
    rc = len == ref_json_len && memcmp(s, ref_json, len) == 0 ? S_OK : bad("encoding differs");
    free(s);
    return rc;
}

static int sc_msgpack(void)
{
    size_t len;
    uint8_t *b = crm_mp_encode(ref_doc, &len);
    crm_err e = {0};
    crm_value *v, *t;
    int rc = S_OK;
    if (!b)
        return S_ERR;
    if (!(v = crm_mp_decode(b, len, NULL, &e))) {
        free(b);
        return clean(&e, "crm_mp_decode");
    }
    if (!crm_value_equal(v, ref_doc))
        rc = bad("msgpack round trip differs");
    t = crm_mp_decode_trusted(b, len);
    if (t && !crm_value_equal(t, ref_doc))
        rc = bad("trusted decode differs");
    else if (!t && rc == S_OK)
        rc = S_ERR;
    crm_value_free(t);
    crm_value_free(v);
    free(b);
    return rc;
}

static int sc_value_edit(void)
{
    crm_value *v = crm_value_dup(ref_doc), *want;
    int rc;
    if (!v)
        return S_ERR;
    if (crm_map_set(v, "extra", crm_value_cstr("x")) != 0 ||
        crm_arr_push(crm_map_get(v, "tags"), crm_value_int(7)) != 0 ||
        crm_map_setn(v, "name", 4, crm_value_str("N", 1)) != 0) {
        crm_value_free(v);
        return S_ERR;
    }
    crm_map_del(v, "addr");
    crm_value_free(crm_map_take(v, "extra"));
    want = ref_edit;
    rc = crm_value_equal(v, want) ? S_OK : bad("edited tree differs");
    crm_value_free(v);
    return rc;
}

static int sc_schema_load(void)
{
    crm_schema *s;
    crm_err e = {0};
    int rc;
    if (crm_schema_load_dir(schema_dir, &s, &e) != CRM_OK)
        return clean(&e, "crm_schema_load_dir");
    rc = s->ncolls == schema->ncolls && crm_schema_find(s, "people") &&
                 crm_collection_field(crm_schema_find(s, "people"), "email")
             ? S_OK
             : bad("loaded schema differs");
    crm_schema_free(s);
    return rc;
}

static int sc_schema_validate(void)
{
    crm_value *rec = crm_value_dup(ref_doc), *details = NULL;
    crm_err e = {0};
    int rc;
    if (!rec)
        return S_ERR;
    crm_map_del(rec, "id");
    rc = crm_schema_validate(crm_schema_find(schema, "loose"), rec, 1, &details, &e);
    if (rc == CRM_OK)
        rc = crm_value_equal(rec, ref_valid) ? S_OK : bad("validated record differs");
    else if (rc == CRM_VALIDATION && !details)
        rc = bad("VALIDATION without details");
    else
        rc = clean(&e, "crm_schema_validate");
    crm_value_free(details);
    crm_value_free(rec);
    return rc;
}

static int sc_filter(void)
{
    crm_value *where = NULL;
    crm_filter *f;
    crm_err e = {0};
    int rc;
    where = dec("{\"age\": {\"gte\": 40, \"lt\": 50}, \"name\": {\"prefix\": \"Zo\"},"
                            " \"city\": {\"in\": [\"Berlin\", \"Rome\"]}}", &e);
    if (!where)
        return clean(&e, "decode where");
    if (crm_filter_compile(crm_schema_find(schema, "people"), where, &f, &e) != CRM_OK) {
        crm_value_free(where);
        return clean(&e, "crm_filter_compile");
    }
    {
        crm_value *r = dec("{\"age\": 42, \"name\": \"Zoe\", \"city\": \"Rome\"}", &e);
        rc = !r ? clean(&e, "decode record") : crm_filter_match(f, r) ? S_OK : bad("no match");
        crm_value_free(r);
    }
    crm_filter_free(f);
    crm_value_free(where);
    return rc;
}

static int write_json(crm_store *s, crm_op op, const char *id, const char *json, crm_err *e)
{
    crm_value *d = json ? crm_json_decode(json, strlen(json), NULL, e) : NULL;
    crm_write w = {.op = op, .coll = "people", .id = id, .data = d};
    int rc;
    if (json && !d)
        return e->code ? e->code : CRM_INTERNAL;
    rc = crm_store_write1(s, &w);
    if (rc != CRM_OK)
        *e = w.err;
    crm_write_clear(&w);
    crm_value_free(d);
    return rc;
}

/* Open a new store, write (create, update, a two-write unit, delete), read
 * back, close.  The store is checked afterwards by store_check. */
static int sc_store(void)
{
    crm_store_opts o;
    crm_store *s;
    crm_err e = {0};
    int rc;
    crm_store_opts_default(&o);
    o.no_sync = 1;
    if (crm_store_open(store_dir, schema, &o, &s, &e) != CRM_OK)
        return clean(&e, "crm_store_open");
    if ((rc = write_json(s, CRM_OP_CREATE, "p_a", "{\"name\": \"Ann\", \"email\": \"a@x\", \"age\": 30}", &e)) ||
        (rc = write_json(s, CRM_OP_UPDATE, "p_a", "{\"age\": 31, \"city\": \"Rome\"}", &e)) ||
        (rc = write_json(s, CRM_OP_CREATE, "p_b", "{\"name\": \"Bob\", \"email\": \"b@x\"}", &e)) ||
        (rc = write_json(s, CRM_OP_DELETE, "p_b", NULL, &e))) {
        crm_store_close(s);
        return clean(&e, "write");
    }
    {
        crm_value *d1 = dec("{\"name\": \"Cy\", \"email\": \"c@x\"}", &e);
        crm_value *d2 = dec("{\"name\": \"Di\", \"email\": \"d@x\"}", &e);
        crm_write ws[2] = {{.op = CRM_OP_CREATE, .coll = "people", .id = "p_c", .data = d1},
                           {.op = CRM_OP_CREATE, .coll = "people", .id = "p_d", .data = d2}};
        crm_unit u = {.writes = ws, .n = 2};
        if (!d1 || !d2) {
            rc = CRM_INTERNAL;
        } else {
            crm_store_apply(s, &u, 1, &e);
            rc = u.rc;
            if (rc)
                e = u.err;
        }
        crm_write_clear(&ws[0]);
        crm_write_clear(&ws[1]);
        crm_value_free(d1);
        crm_value_free(d2);
        if (rc) {
            crm_store_close(s);
            return clean(&e, "unit");
        }
    }
    {
        crm_txn *t;
        crm_value *v = NULL;
        if ((rc = crm_store_begin_read(s, &t, &e)) == CRM_OK) {
            rc = crm_txn_get(t, "people", "p_a", &v, &e);
            crm_txn_end(t);
        }
        if (rc == CRM_OK && crm_map_int(v, "age", 0) != 31)
            rc = -1;
        crm_value_free(v);
        crm_store_close(s);
        if (rc == -1)
            return bad("p_a does not read back");
        return rc == CRM_OK ? S_OK : clean(&e, "read back");
    }
}

/* After sc_store (failures off): the store opens, verifies, and holds what
 * was acknowledged -- a prefix of the scenario's writes, each whole. */
static int store_check(int scenario_rc)
{
    crm_store_opts o;
    crm_store *s;
    crm_err e = {0};
    crm_txn *t;
    crm_value *a = NULL;
    int rc = S_OK;
    crm_store_opts_default(&o);
    o.no_sync = 1;
    if (crm_store_open(store_dir, schema, &o, &s, &e) != CRM_OK)
        return bad("store does not reopen: %s", e.msg);
    if (crm_store_verify(s, &e) != CRM_OK)
        rc = bad("verify: %s", e.msg);
    if (rc == S_OK && crm_store_begin_read(s, &t, &e) == CRM_OK) {
        int has_a = crm_txn_get(t, "people", "p_a", &a, &e) == CRM_OK;
        crm_value *c = NULL, *d = NULL;
        int has_c = crm_txn_get(t, "people", "p_c", &c, &e) == CRM_OK;
        int has_d = crm_txn_get(t, "people", "p_d", &d, &e) == CRM_OK;
        if (has_c != has_d)
            rc = bad("half of a unit is stored");
        if (scenario_rc == S_OK && (!has_a || !has_c || crm_map_int(a, "age", 0) != 31))
            rc = bad("a success lost writes");
        crm_value_free(c);
        crm_value_free(d);
        crm_txn_end(t);
    }
    crm_value_free(a);
    crm_store_close(s);
    return rc;
}

static int sc_query(void)
{
    crm_txn *t;
    crm_err e = {0};
    crm_value *where, *recs = NULL, *groups = NULL;
    char *next = NULL;
    int rc;
    static const char *const metrics[] = {"count", "sum:age", "avg:age", "max:age"};
    crm_query q = {.coll = "people", .order_by = "-age", .limit = 5};
    if (!(where = dec("{\"age\": {\"gte\": 20}}", &e)))
        return clean(&e, "decode where");
    q.where = where;
    if ((rc = crm_store_begin_read(qstore, &t, &e)) != CRM_OK) {
        crm_value_free(where);
        return clean(&e, "begin_read");
    }
    rc = crm_txn_query(t, &q, &recs, &next, &e);
    if (rc == CRM_OK)
        rc = crm_txn_aggregate(t, "people", where, "city", metrics, 4, &groups, &e);
    crm_txn_end(t);
    if (rc == CRM_OK)
        rc = crm_value_equal(recs, ref_query) && crm_value_equal(groups, ref_agg) ? S_OK
                                                                                   : bad("query results differ");
    else
        rc = clean(&e, "query");
    crm_value_free(recs);
    crm_value_free(groups);
    free(next);
    crm_value_free(where);
    return rc;
}

static int push_doc(lua_State *L)
{
    crm_lua_value_init(L);
    crm_lua_push_value(L, lua_touserdata(L, 1));
    return 1;
}

static int sc_lua_value(void)
{
    lua_State *L = lua_newstate(lua_test_alloc, NULL);
    crm_value *v = NULL, *want;
    char msg[256];
    int rc;
    if (!L)
        return S_ERR;
    lua_pushcfunction(L, push_doc);
    lua_pushlightuserdata(L, (void *)crm_map_get(ref_doc, "addr"));
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        rc = lua_type(L, -1) == LUA_TSTRING ? S_ERR : bad("pcall failed without a message");
        lua_close(L);
        return rc;
    }
    if (crm_lua_to_value(L, -1, "record", &v, msg, sizeof msg) != 0) {
        lua_close(L);
        return msg[0] ? S_ERR : bad("crm_lua_to_value failed without a message");
    }
    lua_close(L);
    want = crm_map_get(ref_doc, "addr");
    rc = crm_value_equal(v, want) ? S_OK : bad("Lua round trip differs");
    crm_value_free(v);
    return rc;
}

/* The Lua host over the bus: a fresh store, the bus, one script (a method
 * and an after-hook), one call of the method in its own batch, the
 * after-hook run by bus rounds, all closed again.  The check afterwards:
 * no write twice; after a success the person is there; and the hook's
 * record is there or still owed (the hook's cursor behind the feed: a hook
 * that failed is retried later, not lost). */
static const char SCRIPT[] =
    "crm.method(\"people.add\", function(params, ctx)\n"
    "  local p = crm.create(\"people\", {name = params.name, email = params.email, age = #params.tags})\n"
    "  return {id = p.id, age = p.age, tags = params.tags, by = ctx.role}\n"
    "end)\n"
    "crm.on(\"people.create\", function(ev)\n"
    "  crm.create(\"loose\", {name = ev.record.name .. \"!\", tags = {1, 2}})\n"
    "end, {phase = \"after\", name = \"shadow\"})\n";
static char *script_dir;
static crm_value *ref_call;

static int sc_lua_host(void)
{
    crm_store_opts o;
    crm_store *s = NULL;
    crm_bus_opts bo;
    crm_bus *b = NULL;
    crm_lua *l = NULL;
    crm_value *params = NULL, *res = NULL;
    crm_err e = {0};
    int rc;
    crm_store_opts_default(&o);
    o.no_sync = 1;
    crm_bus_opts_default(&bo);
    if ((rc = crm_store_open(store_dir, schema, &o, &s, &e)) != CRM_OK ||
        (rc = crm_bus_new(s, &bo, &b, &e)) != CRM_OK ||
        (rc = crm_lua_open(b, script_dir, NULL, &l, &e)) != CRM_OK)
        goto out;
    if (!(params = dec("{\"name\": \"Eve\", \"email\": \"e@x\", \"tags\": [\"a\", \"b\", \"c\"]}", &e))) {
        rc = e.code ? e.code : CRM_INTERNAL;
        goto out;
    }
    if ((rc = crm_bus_call_now(b, "people.add", params, "u1", "admin", &res, &e)) != CRM_OK)
        goto out;
    crm_map_del(res, "id"); /* made by the store: differs run to run */
    if (!crm_value_equal(res, ref_call)) {
        rc = -1;
        goto out;
    }
    if (crm_test_pump(s, b) != 0)
        rc = crm_err_set(&e, CRM_UNAVAILABLE, "the bus did not settle");
out:
    crm_value_free(res);
    crm_value_free(params);
    crm_lua_close(l);
    crm_bus_free(b);
    crm_store_close(s);
    if (rc == -1)
        return bad("method result differs");
    return rc == CRM_OK ? S_OK : clean(&e, "lua host");
}

static int min_cursor_cb(void *ud, const void *k, size_t kl, const void *v, size_t vl)
{
    uint64_t *min = ud, c = 0;
    (void)k;
    (void)kl;
    for (size_t i = 0; i < vl && i < 8; i++)
        c = c << 8 | ((const uint8_t *)v)[i];
    if (vl == 8 && c < *min)
        *min = c;
    return 0;
}

/* After sc_lua_host (failures off): the store verifies; after a success
 * Eve and the hook's record are there, exactly once each. */
static int lua_host_check(int scenario_rc)
{
    crm_store_opts o;
    crm_store *s;
    crm_err e = {0};
    uint64_t np = 0, nl = 0;
    crm_txn *t;
    int rc = S_OK;
    crm_store_opts_default(&o);
    o.no_sync = 1;
    if (crm_store_open(store_dir, schema, &o, &s, &e) != CRM_OK)
        return bad("store does not reopen: %s", e.msg);
    if (crm_store_verify(s, &e) != CRM_OK)
        rc = bad("verify: %s", e.msg);
    if (rc == S_OK && crm_store_begin_read(s, &t, &e) == CRM_OK) {
        uint64_t min_cursor = UINT64_MAX;
        crm_txn_count(t, "people", &np, &e);
        crm_txn_count(t, "loose", &nl, &e);
        crm_txn_aux_scan(t, CRM_AUX_CURSORS, NULL, 0, 0, min_cursor_cb, &min_cursor, &e);
        crm_txn_end(t);
        if (np > 1 || nl > 1)
            rc = bad("%llu people, %llu shadows: written twice", (unsigned long long)np,
                     (unsigned long long)nl);
        else if (scenario_rc == S_OK && np != 1)
            rc = bad("a success lost its write");
        /* a hook that failed is owed, not lost: its cursor stays behind */
        else if (np == 1 && nl == 0 && !(min_cursor < crm_store_last_seq(s)))
            rc = bad("the after-hook neither ran nor is owed (cursor %llu, last seq %llu)",
                     (unsigned long long)min_cursor, (unsigned long long)crm_store_last_seq(s));
    }
    crm_store_close(s);
    return rc;
}

typedef struct scenario {
    const char *name;
    int (*run)(void);
    int (*check)(int rc); /* after each run, failures off; may be NULL */
    int fresh_store;      /* remove store_dir before each run */
} scenario;

static const scenario SCENARIOS[] = {
    {"json_decode", sc_json_decode, NULL, 0},
    {"json_encode", sc_json_encode, NULL, 0},
    {"msgpack_round_trip", sc_msgpack, NULL, 0},
    {"value_edit", sc_value_edit, NULL, 0},
    {"schema_load", sc_schema_load, NULL, 0},
    {"schema_validate", sc_schema_validate, NULL, 0},
    {"filter", sc_filter, NULL, 0},
    {"store_write", sc_store, store_check, 1},
    {"query_aggregate", sc_query, NULL, 0},
    {"lua_value", sc_lua_value, NULL, 0},
    {"lua_host_call", sc_lua_host, lua_host_check, 1},
};

/* Empties store_dir (LMDB's two files). */
static void rm_store(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/data.mdb", store_dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/lock.mdb", store_dir);
    unlink(path);
}

/* One run with call N failing (0: none).  Returns 0 on a pass. */
static int run_one(const scenario *s, long n, int pers, int *result, long *calls)
{
    int rc, crc;
    if (s->fresh_store)
        rm_store();
    tracking = 1;
    nlive = 0;
    memset(live, 0, sizeof live);
    alloc_calls = injected = 0;
    fail_at = n;
    persistent = pers;
    why[0] = 0;
    rc = s->run();
    fail_at = 0;
    tracking = 0;
    *calls = alloc_calls;
    *result = rc;
    if (nlive) {
        fprintf(stderr, "oom: %s, call %ld failing (%s): %ld blocks leaked\n", s->name, n,
                pers ? "persistent" : "once", nlive);
        return 1;
    }
    if (rc == S_BAD || (rc == S_ERR && !injected)) {
        fprintf(stderr, "oom: %s, call %ld failing (%s): %s\n", s->name, n,
                pers ? "persistent" : "once", rc == S_BAD ? why : "an error without a failure");
        return 1;
    }
    if (s->check && (crc = s->check(rc)) != S_OK) {
        fprintf(stderr, "oom: %s, call %ld failing (%s): after: %s\n", s->name, n,
                pers ? "persistent" : "once", why);
        return 1;
    }
    return 0;
}

static void setup(void)
{
    crm_err e;
    schema_dir = crm_tmpdir_make("oom-schemas");
    crm_tmpdir_write(schema_dir, "people.json",
                     "{\"collection\": \"people\", \"id_prefix\": \"p_\", \"strict\": true, \"fields\": {"
                     " \"name\": {\"type\": \"string\", \"required\": true, \"max\": 100, \"index\": true},"
                     " \"email\": {\"type\": \"string\", \"index\": \"unique\"},"
                     " \"age\": {\"type\": \"int\", \"min\": 0, \"index\": true},"
                     " \"city\": {\"type\": \"string\", \"index\": true},"
                     " \"kind\": {\"type\": \"enum\", \"values\": [\"a\", \"b\"], \"default\": \"a\"},"
                     " \"tags\": {\"type\": \"array\", \"items\": \"string\"}}}");
    crm_tmpdir_write(schema_dir, "loose.json",
                     "{\"collection\": \"loose\", \"id_prefix\": \"l_\", \"strict\": false, \"fields\": {"
                     " \"name\": {\"type\": \"string\", \"required\": true},"
                     " \"age\": {\"type\": \"int\"}, \"score\": {\"type\": \"number\"},"
                     " \"vip\": {\"type\": \"bool\"}, \"tags\": {\"type\": \"array\"},"
                     " \"addr\": {\"type\": \"map\"}, \"level\": {\"type\": \"string\", \"default\": \"new\"}}}");
    crm_tmpdir_write(schema_dir, "roles.json",
                     "{\"roles\": {\"agent\": {\"people\": [\"read\", \"write\"]}}}");
    if (crm_schema_load_dir(schema_dir, &schema, &e) != CRM_OK) {
        fprintf(stderr, "oom: setup schema: %s\n", e.msg);
        exit(2);
    }
    store_dir = crm_tmpdir_make("oom-store");
    script_dir = crm_tmpdir_make("oom-scripts");
    crm_tmpdir_write(script_dir, "people.lua", SCRIPT);
    ref_call = dec("{\"age\": 3, \"tags\": [\"a\", \"b\", \"c\"], \"by\": \"admin\"}", &e);
    ref_doc = crm_json_decode(DOC, sizeof DOC - 1, NULL, &e);
    if (!ref_doc) {
        fprintf(stderr, "oom: setup DOC: %s\n", e.msg);
        exit(2);
    }
    ref_json = crm_json_encode(ref_doc, &ref_json_len);
    ref_edit = crm_value_dup(ref_doc);
    crm_arr_push(crm_map_get(ref_edit, "tags"), crm_value_int(7));
    crm_map_set(ref_edit, "name", crm_value_cstr("N"));
    crm_map_del(ref_edit, "addr");
    {
        crm_value *details = NULL;
        ref_valid = crm_value_dup(ref_doc);
        crm_map_del(ref_valid, "id");
        if (crm_schema_validate(crm_schema_find(schema, "loose"), ref_valid, 1, &details, &e) != CRM_OK) {
            fprintf(stderr, "oom: setup validate: %s\n", e.msg);
            exit(2);
        }
    }
    {   /* the query store and its reference results */
        char *qdir = query_dir = crm_tmpdir_make("oom-query");
        crm_store_opts o;
        crm_txn *t;
        char *next = NULL;
        static const char *const metrics[] = {"count", "sum:age", "avg:age", "max:age"};
        crm_query q = {.coll = "people", .order_by = "-age", .limit = 5};
        crm_store_opts_default(&o);
        o.no_sync = 1;
        if (crm_store_open(qdir, schema, &o, &qstore, &e) != CRM_OK)
            exit(2);
        for (int i = 0; i < 40; i++) {
            char id[16], js[160];
            snprintf(id, sizeof id, "p_%02d", i);
            snprintf(js, sizeof js, "{\"name\": \"N%d\", \"email\": \"%d@x\", \"age\": %d, \"city\": \"%s\"}",
                     i, i, 10 + i, i % 3 ? "Rome" : "Oslo");
            if (write_json(qstore, CRM_OP_CREATE, id, js, &e) != CRM_OK)
                exit(2);
        }
        q.where = dec("{\"age\": {\"gte\": 20}}", &e);
        crm_store_begin_read(qstore, &t, &e);
        if (crm_txn_query(t, &q, &ref_query, &next, &e) != CRM_OK ||
            crm_txn_aggregate(t, "people", q.where, "city", metrics, 4, &ref_agg, &e) != CRM_OK) {
            fprintf(stderr, "oom: setup query: %s\n", e.msg);
            exit(2);
        }
        crm_txn_end(t);
        free(next);
        crm_value_free((crm_value *)q.where);
    }
}

int main(void)
{
    const char *only = getenv("CRM_OOM_ONLY");
    int verbose = getenv("CRM_OOM_VERBOSE") != NULL, failures = 0, scenarios = 0;
    long total_k = 0, total_runs = 0;
    /* persistent mode at every stride-th call in make test (its error paths
     * are mostly the once mode's); CRM_OOM_FULL=1 (make soak): every call */
    long stride = getenv("CRM_OOM_FULL") ? 1 : 5;

    setup();
    for (size_t i = 0; i < sizeof SCENARIOS / sizeof *SCENARIOS; i++) {
        const scenario *s = &SCENARIOS[i];
        long k, calls;
        int result, errs = 0, recovered = 0;
        if (only && strcmp(only, s->name) != 0)
            continue;
        scenarios++;
        if (run_one(s, 0, 0, &result, &k) != 0 || result != S_OK) {
            fprintf(stderr, "oom: %s fails without any failure: %s\n", s->name, why);
            failures++;
            continue;
        }
        for (int pers = 0; pers < 2; pers++)
            for (long n = 1; n <= k; n += pers ? stride : 1) {
                if (run_one(s, n, pers, &result, &calls) != 0) {
                    failures++;
                    continue;
                }
                total_runs++;
                if (result == S_ERR)
                    errs++;
                else
                    recovered++;
                if (verbose)
                    printf("  %s n=%ld %s: %s\n", s->name, n, pers ? "persistent" : "once",
                           result == S_OK ? "ok" : "error");
            }
        total_k += k;
        printf("oom: %-20s K = %4ld allocation calls; %d runs: %d clean errors, %d same result "
               "(the failure was absorbed)\n",
               s->name, k, errs + recovered, errs, recovered);
    }
    printf("oom: %d scenarios, K = %ld allocation calls in all, %ld failing runs, %d problems\n", scenarios,
           total_k, total_runs, failures);
    crm_store_close(qstore);
    crm_schema_free(schema);
    crm_value_free(ref_doc);
    crm_value_free(ref_valid);
    crm_value_free(ref_edit);
    crm_value_free(ref_query);
    crm_value_free(ref_agg);
    free(ref_json);
    rm_store();
    crm_tmpdir_remove(store_dir);
    crm_tmpdir_remove(schema_dir);
    crm_tmpdir_remove(query_dir);
    crm_tmpdir_remove(script_dir);
    crm_value_free(ref_call);
    return failures ? 1 : 0;
}
