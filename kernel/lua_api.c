/*
 * lua_api -- the `crm` module: each function a thin wrapper over one
 * crm_api member (include/crm/plugin.h), with the ctx of the call in
 * progress.  docs/lua.md documents every function with examples.
 *
 * Rules every lcrm_ function keeps:
 *  - read and check all Lua arguments first (that may raise), then convert
 *    values to crm_value (never raises), then call the api, free what was
 *    converted, and only then push results or raise: a raise never
 *    longjmps past malloc'd memory;
 *  - a refused record operation raises a string that starts with its code
 *    name ("VALIDATION: name is required"), catchable with pcall; the
 *    message handler adds file:line when nothing catches it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>

#include "lua_host_int.h"
#include "lua_value.h"

static lua_script *script(lua_State *L) { return crm_lua_script_of(L); }

/* The ctx of the call in progress; raises at the top level of a script. */
static crm_ctx *need_ctx(lua_State *L, const char *fn)
{
    lua_script *sc = script(L);
    if (!sc->frame || !sc->frame->ctx)
        luaL_error(L, "%s: records and timers are only reachable inside a hook, timer or "
                      "method, not at the top level of a script", fn);
    return sc->frame->ctx;
}

static int raise_code(lua_State *L, int code, const char *msg)
{
    lua_pushfstring(L, "%s: %s", crm_code_name(code), msg && *msg ? msg : "refused");
    return lua_error(L);
}

static int push_body(lua_State *L)
{
    crm_lua_push_value(L, lua_touserdata(L, 1));
    return 1;
}

/* Pushes v and frees it, also when pushing runs out of memory (the error
 * is raised after the free). */
static void push_owned(lua_State *L, crm_value *v)
{
    int st;
    if (!lua_checkstack(L, 3)) {
        crm_value_free(v);
        luaL_error(L, "stack overflow");
    }
    lua_pushcfunction(L, push_body);
    lua_pushlightuserdata(L, v);
    st = lua_pcall(L, 1, 1, 0);
    crm_value_free(v);
    if (st != LUA_OK)
        lua_error(L);
}

/* Converts argument idx (nil allowed when opt); raises BAD_REQUEST with the
 * path on failure.  Nothing is held yet when it raises. */
static crm_value *arg_value(lua_State *L, int idx, const char *what, int opt)
{
    crm_value *v = NULL;
    char err[200];
    if (opt && lua_isnoneornil(L, idx))
        return NULL;
    if (crm_lua_to_value(L, idx, what, &v, err, sizeof err) != 0)
        raise_code(L, CRM_BAD_REQUEST, err);
    return v;
}

/* opts.name as an integer / string, or the fallback; raises on a wrong type. */
static lua_Integer opt_int(lua_State *L, int idx, const char *name, lua_Integer dflt)
{
    lua_Integer v = dflt;
    if (lua_type(L, idx) != LUA_TTABLE)
        return dflt;
    lua_getfield(L, idx, name);
    if (!lua_isnil(L, -1)) {
        int ok;
        v = lua_tointegerx(L, -1, &ok);
        if (!ok)
            luaL_error(L, "option %s must be an integer", name);
    }
    lua_pop(L, 1);
    return v;
}

/* Leaves the string on the stack (so the pointer stays valid); NULL when absent. */
static const char *opt_str(lua_State *L, int idx, const char *name)
{
    if (lua_type(L, idx) != LUA_TTABLE) {
        if (!lua_isnoneornil(L, idx))
            luaL_error(L, "options must be a table");
        lua_pushnil(L);
        return NULL;
    }
    lua_getfield(L, idx, name);
    if (lua_isnil(L, -1))
        return NULL;
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "option %s must be a string", name);
    return lua_tostring(L, -1);
}

/* A collection, id, timer, event or method name: the kernel takes it as a
 * C string, so a NUL inside would cut it short ("X\0evil" would name X). */
static const char *check_name(lua_State *L, int idx)
{
    size_t len;
    const char *s = luaL_checklstring(L, idx, &len);
    if (memchr(s, 0, len))
        luaL_argerror(L, idx, "must not contain NUL bytes");
    return s;
}

static const char *opt_name(lua_State *L, int idx)
{
    return lua_isnoneornil(L, idx) ? NULL : check_name(L, idx);
}

/* ---- records ---- */

/* crm.get(coll, id) -> record or nil */
static int lcrm_get(lua_State *L)
{
    const char *coll = check_name(L, 1), *id = check_name(L, 2);
    crm_ctx *ctx = need_ctx(L, "crm.get");
    const crm_api *api = script(L)->api;
    crm_value *out = NULL;
    int rc = api->get(ctx, coll, id, &out);
    if (rc == CRM_NOT_FOUND) {
        lua_pushnil(L);
        return 1;
    }
    if (rc != CRM_OK)
        return raise_code(L, rc, api->errmsg(ctx));
    push_owned(L, out);
    return 1;
}

/* Writes run before-hooks, possibly of this same script: they run on this
 * thread (sc->active) and share this call's budget. */
#define WRITE_BEGIN(sc, L) lua_State *saved_ = (sc)->active; (sc)->active = (L)
#define WRITE_END(sc) (sc)->active = saved_

/* crm.create(coll, record) -> stored record */
static int lcrm_create(lua_State *L)
{
    lua_script *sc = script(L);
    const char *coll = check_name(L, 1);
    crm_ctx *ctx = need_ctx(L, "crm.create");
    crm_value *rec, *out = NULL;
    int rc;
    luaL_checktype(L, 2, LUA_TTABLE);
    rec = arg_value(L, 2, "record", 0);
    {
        WRITE_BEGIN(sc, L);
        rc = sc->api->create(ctx, coll, rec, &out);
        WRITE_END(sc);
    }
    crm_value_free(rec);
    if (rc != CRM_OK)
        return raise_code(L, rc, sc->api->errmsg(ctx));
    push_owned(L, out);
    return 1;
}

/* crm.update(coll, id, patch [, {if_rev = n}]) -> stored record */
static int lcrm_update(lua_State *L)
{
    lua_script *sc = script(L);
    const char *coll = check_name(L, 1), *id = check_name(L, 2);
    crm_ctx *ctx = need_ctx(L, "crm.update");
    lua_Integer if_rev = opt_int(L, 4, "if_rev", 0);
    crm_value *patch, *out = NULL;
    int rc;
    luaL_checktype(L, 3, LUA_TTABLE);
    patch = arg_value(L, 3, "patch", 0);
    {
        WRITE_BEGIN(sc, L);
        rc = sc->api->update(ctx, coll, id, patch, (int64_t)if_rev, &out);
        WRITE_END(sc);
    }
    crm_value_free(patch);
    if (rc != CRM_OK)
        return raise_code(L, rc, sc->api->errmsg(ctx));
    push_owned(L, out);
    return 1;
}

/* crm.delete(coll, id [, {if_rev = n}]) -> true */
static int lcrm_delete(lua_State *L)
{
    lua_script *sc = script(L);
    const char *coll = check_name(L, 1), *id = check_name(L, 2);
    crm_ctx *ctx = need_ctx(L, "crm.delete");
    lua_Integer if_rev = opt_int(L, 3, "if_rev", 0);
    int rc;
    {
        WRITE_BEGIN(sc, L);
        rc = sc->api->remove(ctx, coll, id, (int64_t)if_rev);
        WRITE_END(sc);
    }
    if (rc != CRM_OK)
        return raise_code(L, rc, sc->api->errmsg(ctx));
    lua_pushboolean(L, 1);
    return 1;
}

/* crm.query(coll [, where [, {order_by=, limit=, after=}]]) -> {records=, next=} */
static int lcrm_query(lua_State *L)
{
    lua_script *sc = script(L);
    const char *coll = check_name(L, 1);
    crm_ctx *ctx = need_ctx(L, "crm.query");
    lua_Integer limit;
    const char *order_by, *after;
    crm_value *where, *out = NULL;
    int rc;
    if (!lua_isnoneornil(L, 2))
        luaL_checktype(L, 2, LUA_TTABLE);
    limit = opt_int(L, 3, "limit", 0);
    if (limit < 0)
        return luaL_error(L, "crm.query: limit must not be negative");
    order_by = opt_str(L, 3, "order_by"); /* both strings stay on the stack */
    after = opt_str(L, 3, "after");
    where = arg_value(L, 2, "where", 1);
    rc = sc->api->query(ctx, coll, where, order_by, (size_t)limit, after, &out);
    crm_value_free(where);
    if (rc != CRM_OK)
        return raise_code(L, rc, sc->api->errmsg(ctx));
    push_owned(L, out);
    return 1;
}

/* crm.match(coll, where, record) -> boolean: does record match where, with
 * the query op's semantics (api->where_compile / where_match)?  A bad
 * where raises BAD_REQUEST like crm.query.  Works at the top level too. */
static int lcrm_match(lua_State *L)
{
    lua_script *sc = script(L);
    const char *coll = check_name(L, 1);
    crm_value *where, *rec = NULL;
    crm_where *w = NULL;
    crm_err e;
    char err[200];
    int rc, m;
    if (!lua_isnoneornil(L, 2))
        luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    where = arg_value(L, 2, "where", 1);
    if (crm_lua_to_value(L, 3, "record", &rec, err, sizeof err) != 0) {
        crm_value_free(where);
        return raise_code(L, CRM_BAD_REQUEST, err);
    }
    rc = sc->api->where_compile(sc->owner, coll, where, &w, &e);
    crm_value_free(where);
    m = rc == CRM_OK && sc->api->where_match(w, rec);
    sc->api->where_free(w);
    crm_value_free(rec);
    if (rc != CRM_OK)
        return raise_code(L, rc, e.msg);
    lua_pushboolean(L, m);
    return 1;
}

/* ---- timers ---- */

/* crm.schedule(seconds, name [, payload [, {key=}]]) -> true */
static int lcrm_schedule(lua_State *L)
{
    lua_script *sc = script(L);
    lua_Number secs = luaL_checknumber(L, 1);
    const char *name = check_name(L, 2);
    crm_ctx *ctx = need_ctx(L, "crm.schedule");
    const char *key = opt_str(L, 4, "key");
    crm_value *payload;
    int rc;
    if (!(secs >= 0 && secs < 1e12))
        return luaL_error(L, "crm.schedule: seconds must be between 0 and 1e12");
    payload = arg_value(L, 3, "payload", 1);
    rc = sc->api->schedule(ctx, (double)secs, name, payload, key);
    crm_value_free(payload);
    if (rc != CRM_OK)
        return raise_code(L, rc, sc->api->errmsg(ctx));
    lua_pushboolean(L, 1);
    return 1;
}

/* crm.cancel(name [, key]) -> true, or false when no such timer */
static int lcrm_cancel(lua_State *L)
{
    lua_script *sc = script(L);
    const char *name = check_name(L, 1), *key = opt_name(L, 2);
    crm_ctx *ctx = need_ctx(L, "crm.cancel");
    int rc = sc->api->cancel(ctx, name, key);
    if (rc != CRM_OK && rc != CRM_NOT_FOUND)
        return raise_code(L, rc, sc->api->errmsg(ctx));
    lua_pushboolean(L, rc == CRM_OK);
    return 1;
}

/* ---- registration (top level only) ---- */

static lua_reg *new_reg(lua_State *L, const char *fn, int kind, int fidx)
{
    lua_script *sc = script(L);
    lua_reg *r;
    luaL_checktype(L, fidx, LUA_TFUNCTION);
    if (!sc->frame || sc->frame->kind != LFRAME_LOAD)
        luaL_error(L, "%s: registrations are made at the top level of a script, while it loads",
                   fn);
    lua_pushvalue(L, fidx);
    {
        int ref = luaL_ref(L, LUA_REGISTRYINDEX); /* may raise: before the malloc */
        if (!(r = calloc(1, sizeof *r))) {
            luaL_unref(L, LUA_REGISTRYINDEX, ref);
            luaL_error(L, "%s: out of memory", fn);
        }
        r->fnref = ref;
    }
    r->sc = sc;
    r->kind = kind;
    r->next = sc->regs;
    sc->regs = r;
    return r;
}

static int reg_refused(lua_State *L, const char *fn, int rc)
{
    lua_script *sc = script(L);
    const char *why = crm_bus_owner_errmsg(sc->owner);
    return luaL_error(L, "%s: %s: %s", fn, crm_code_name(rc), why && *why ? why : "refused");
}

/* crm.on(event, fn [, {phase = "before"|"after", name = ...}]) */
static int lcrm_on(lua_State *L)
{
    lua_script *sc = script(L);
    const char *event = check_name(L, 1);
    const char *phase_s, *name;
    int phase = CRM_AFTER, rc;
    lua_reg *r;
    if (!lua_isnoneornil(L, 3))
        luaL_checktype(L, 3, LUA_TTABLE);
    phase_s = opt_str(L, 3, "phase");
    name = opt_str(L, 3, "name");
    if (phase_s && strcmp(phase_s, "before") == 0)
        phase = CRM_BEFORE;
    else if (phase_s && strcmp(phase_s, "after") != 0)
        return luaL_error(L, "crm.on: phase must be \"before\" or \"after\"");
    r = new_reg(L, "crm.on", LREG_HOOK, 2);
    if ((rc = sc->api->on(sc->owner, event, phase, name, crm_lua_tramp_hook, r)) != CRM_OK)
        return reg_refused(L, "crm.on", rc);
    return 0;
}

/* crm.on_timer(name, fn) -- fn(payload, name) */
static int lcrm_on_timer(lua_State *L)
{
    lua_script *sc = script(L);
    const char *name = check_name(L, 1);
    lua_reg *r = new_reg(L, "crm.on_timer", LREG_TIMER, 2);
    int rc = sc->api->on_timer(sc->owner, name, crm_lua_tramp_timer, r);
    if (rc != CRM_OK)
        return reg_refused(L, "crm.on_timer", rc);
    return 0;
}

/* crm.method(name, fn) -- fn(params, {user=, role=}) -> result */
static int lcrm_method(lua_State *L)
{
    lua_script *sc = script(L);
    const char *name = check_name(L, 1);
    lua_reg *r = new_reg(L, "crm.method", LREG_METHOD, 2);
    int rc = sc->api->method(sc->owner, name, crm_lua_tramp_method, r);
    if (rc != CRM_OK)
        return reg_refused(L, "crm.method", rc);
    return 0;
}

/* ---- the rest ---- */

/* crm.reject(msg): refuse the write (before-hooks) or the call (methods). */
static int lcrm_reject(lua_State *L)
{
    lua_script *sc = script(L);
    const char *msg = luaL_optstring(L, 1, "rejected by a script");
    lua_frame *fr = sc->frame;
    if (!fr || (fr->kind != LFRAME_BEFORE && fr->kind != LFRAME_METHOD))
        return luaL_error(L, "crm.reject: only a before-hook or a method can reject");
    fr->rejected = 1;
    snprintf(fr->reject_msg, sizeof fr->reject_msg, "%s", msg);
    return raise_code(L, CRM_REJECTED, msg);
}

/* crm.now() -> ms since the epoch on the server clock */
static int lcrm_now(lua_State *L)
{
    lua_script *sc = script(L);
    lua_pushinteger(L, (lua_Integer)sc->api->now(sc->frame ? sc->frame->ctx : NULL));
    return 1;
}

/* crm.clock() -> seconds (a float) on a monotonic wall clock: for measuring
 * how long work takes (os.clock is the process's CPU time, blind to time
 * spent waiting for the disk, and counts other threads).  Real time even
 * under --time-scale; its zero is arbitrary. */
static int lcrm_clock(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

static int log_level(const char *s)
{
    if (strcmp(s, "debug") == 0)
        return CRM_LOG_DEBUG;
    if (strcmp(s, "info") == 0)
        return CRM_LOG_INFO;
    if (strcmp(s, "warn") == 0)
        return CRM_LOG_WARN;
    if (strcmp(s, "error") == 0)
        return CRM_LOG_ERROR;
    return -1;
}

#define LOG_MAX 2048

/* Joins arguments from..top with spaces, as tostring shows them, cut at
 * LOG_MAX bytes. */
static void log_args(lua_State *L, int level, int from)
{
    lua_script *sc = script(L);
    int top = lua_gettop(L);
    char buf[LOG_MAX + 1];
    size_t n = 0;
    for (int i = from; i <= top && n < LOG_MAX; i++) {
        size_t l;
        const char *s = luaL_tolstring(L, i, &l);
        if (i > from)
            buf[n++] = ' ';
        if (l > LOG_MAX - n)
            l = LOG_MAX - n;
        memcpy(buf + n, s, l);
        n += l;
        lua_pop(L, 1);
    }
    buf[n] = '\0';
    sc->api->log(sc->owner, level, "%s", buf);
}

/* crm.log(level, ...) -- level: "debug", "info", "warn", "error" */
static int lcrm_log(lua_State *L)
{
    int level = log_level(luaL_checkstring(L, 1));
    if (level < 0)
        return luaL_error(L, "crm.log: level must be debug, info, warn or error");
    log_args(L, level, 2);
    return 0;
}

static int lcrm_print(lua_State *L)
{
    log_args(L, CRM_LOG_INFO, 1);
    return 0;
}

/* crm.array([t]) -> t (or a new table) marked as an array */
static int lcrm_array(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    } else {
        luaL_checktype(L, 1, LUA_TTABLE);
        lua_settop(L, 1);
    }
    lua_rawgetp(L, LUA_REGISTRYINDEX, &crm_lua_array_key);
    lua_setmetatable(L, 1);
    return 1;
}

/* crm.is_array(t) -> boolean */
static int lcrm_is_array(lua_State *L)
{
    lua_pushboolean(L, crm_lua_is_array(L, 1));
    return 1;
}

int crm_lua_open_crm(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"on", lcrm_on},         {"on_timer", lcrm_on_timer}, {"method", lcrm_method},
        {"get", lcrm_get},       {"create", lcrm_create},     {"update", lcrm_update},
        {"delete", lcrm_delete}, {"query", lcrm_query},       {"match", lcrm_match},
        {"schedule", lcrm_schedule},
        {"cancel", lcrm_cancel}, {"reject", lcrm_reject},     {"now", lcrm_now},
        {"clock", lcrm_clock},
        {"log", lcrm_log},       {"array", lcrm_array},       {"is_array", lcrm_is_array},
        {NULL, NULL}};
    lua_script *sc = script(L);
    luaL_newlib(L, funcs);
    lua_pushlightuserdata(L, (void *)&crm_lua_null_key);
    lua_setfield(L, -2, "null");
    lua_pushstring(L, sc->name);
    lua_setfield(L, -2, "script");
    lua_setglobal(L, "crm");
    lua_pushcfunction(L, lcrm_print);
    lua_setglobal(L, "print");
    return 0;
}
