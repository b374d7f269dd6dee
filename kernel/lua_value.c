/*
 * lua_value -- crm_value <-> Lua (rules in lua_value.h).
 *
 * The Lua -> crm_value direction must never raise: it holds malloc'd trees
 * while it walks, and a Lua error would longjmp past their free.  So it
 * reads tables with raw access only (lua_next, lua_rawgeti, no
 * metamethods), never converts a number to a string in place, and asks
 * for stack room with lua_checkstack, which reports instead of raising.
 */
#include "lua_value.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

const char crm_lua_null_key = 0;
const char crm_lua_array_key = 0;

void crm_lua_value_init(lua_State *L)
{
    lua_createtable(L, 0, 2);
    lua_pushliteral(L, "crm.array");
    lua_setfield(L, -2, "__name");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &crm_lua_array_key);
}

/* ---- to Lua ---- */

static void push_array_mt(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &crm_lua_array_key);
}

void crm_lua_push_value(lua_State *L, const crm_value *v)
{
    luaL_checkstack(L, 4, "value nested too deep");
    if (!v) {
        lua_pushnil(L);
        return;
    }
    switch (v->type) {
    case CRM_T_NIL: lua_pushnil(L); break;
    case CRM_T_BOOL: lua_pushboolean(L, v->u.b); break;
    case CRM_T_INT: lua_pushinteger(L, (lua_Integer)v->u.i); break;
    case CRM_T_NUM: lua_pushnumber(L, (lua_Number)v->u.n); break;
    case CRM_T_STR: lua_pushlstring(L, v->u.str.s, v->u.str.len); break;
    case CRM_T_ARR:
        lua_createtable(L, v->u.arr.n > INT32_MAX ? 0 : (int)v->u.arr.n, 0);
        for (size_t i = 0; i < v->u.arr.n; i++) {
            const crm_value *it = v->u.arr.items[i];
            if (!it || it->type == CRM_T_NIL)
                lua_pushlightuserdata(L, (void *)&crm_lua_null_key);
            else
                crm_lua_push_value(L, it);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        push_array_mt(L);
        lua_setmetatable(L, -2);
        break;
    case CRM_T_MAP:
        lua_createtable(L, 0, v->u.map.n > INT32_MAX ? 0 : (int)v->u.map.n);
        for (size_t i = 0; i < v->u.map.n; i++) {
            const crm_kv *kv = &v->u.map.kv[i];
            if (!kv->val || kv->val->type == CRM_T_NIL)
                continue; /* a null field reads as nil */
            lua_pushlstring(L, kv->key, kv->klen);
            crm_lua_push_value(L, kv->val);
            lua_rawset(L, -3);
        }
        break;
    default: lua_pushnil(L); break;
    }
}

/* ---- from Lua ---- */

typedef struct conv {
    lua_State *L;
    char path[160];
    size_t plen;
    size_t bytes;
    char *err;
    size_t errcap;
} conv;

static int fail(conv *c, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(c->err, c->errcap, "%s: ", c->path);
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < c->errcap)
        vsnprintf(c->err + n, c->errcap - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static size_t path_push_key(conv *c, const char *k, size_t kl)
{
    size_t old = c->plen;
    int n = snprintf(c->path + c->plen, sizeof c->path - c->plen, ".%.*s",
                     (int)(kl > 40 ? 40 : kl), k);
    if (n > 0)
        c->plen += (size_t)n < sizeof c->path - c->plen ? (size_t)n : sizeof c->path - c->plen - 1;
    return old;
}

static size_t path_push_index(conv *c, lua_Integer i)
{
    size_t old = c->plen;
    int n = snprintf(c->path + c->plen, sizeof c->path - c->plen, "[%lld]", (long long)i);
    if (n > 0)
        c->plen += (size_t)n < sizeof c->path - c->plen ? (size_t)n : sizeof c->path - c->plen - 1;
    return old;
}

static void path_pop(conv *c, size_t old)
{
    c->plen = old;
    c->path[old] = '\0';
}

int crm_lua_is_array(lua_State *L, int idx)
{
    int is = 0;
    if (lua_type(L, idx) != LUA_TTABLE || !lua_checkstack(L, 2))
        return 0;
    if (lua_getmetatable(L, idx)) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &crm_lua_array_key);
        is = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
    }
    return is;
}

static int convert(conv *c, int idx, int depth, crm_value **out);

static int add_bytes(conv *c, size_t n)
{
    c->bytes += n;
    if (c->bytes > CRM_LUA_MAX_VALUE_BYTES)
        return fail(c, "value larger than %zu bytes", CRM_LUA_MAX_VALUE_BYTES);
    return 0;
}

static int convert_array(conv *c, int idx, lua_Integer n, int depth, crm_value **out)
{
    lua_State *L = c->L;
    crm_value *arr = crm_value_arr();
    if (!arr)
        return fail(c, "out of memory");
    for (lua_Integer i = 1; i <= n; i++) {
        crm_value *item = NULL;
        size_t old = path_push_index(c, i);
        lua_rawgeti(L, idx, i);
        if (convert(c, lua_gettop(L), depth, &item) != 0) {
            lua_pop(L, 1);
            crm_value_free(arr);
            return -1;
        }
        lua_pop(L, 1);
        path_pop(c, old);
        if (crm_arr_push(arr, item) != 0) {
            crm_value_free(arr);
            return fail(c, "out of memory");
        }
    }
    *out = arr;
    return 0;
}

static int convert_table(conv *c, int idx, int depth, crm_value **out)
{
    lua_State *L = c->L;
    lua_Integer count = 0, maxkey = 0;
    int strings = 0, ints = 0;
    crm_value *map;

    if (depth > CRM_LUA_MAX_DEPTH)
        return fail(c, "nested deeper than %d (or a table that contains itself)",
                    CRM_LUA_MAX_DEPTH);
    if (!lua_checkstack(L, 6))
        return fail(c, "nested too deep");
    if (crm_lua_is_array(L, idx))
        return convert_array(c, idx, (lua_Integer)lua_rawlen(L, idx), depth, out);

    /* classify the keys: all strings (map) or exactly 1..n (array) */
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int kt = lua_type(L, -2);
        lua_pop(L, 1);
        count++;
        if (kt == LUA_TSTRING) {
            strings++;
        } else if (kt == LUA_TNUMBER && lua_isinteger(L, -1) && lua_tointeger(L, -1) > 0) {
            ints++;
            if (lua_tointeger(L, -1) > maxkey)
                maxkey = lua_tointeger(L, -1);
        } else {
            lua_pop(L, 1);
            return fail(c, "keys must be strings (a map) or 1..n (an array), not %s",
                        kt == LUA_TNUMBER ? "this number" : lua_typename(L, kt));
        }
    }
    if (strings && ints)
        return fail(c, "a table mixes string keys and array positions");
    if (ints) {
        if (maxkey != count)
            return fail(c, "an array with holes (use crm.null for an empty position)");
        return convert_array(c, idx, count, depth, out);
    }
    if (!(map = crm_value_map()))
        return fail(c, "out of memory");
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        size_t kl;
        const char *k = lua_tolstring(L, -2, &kl); /* a string key: no conversion */
        crm_value *val = NULL;
        size_t old = path_push_key(c, k, kl);
        if (memchr(k, 0, kl) || !crm_utf8_valid(k, kl)) {
            lua_pop(L, 2);
            crm_value_free(map);
            return fail(c, "a key must be UTF-8 text without NUL bytes");
        }
        if (add_bytes(c, kl + 32) != 0 || convert(c, lua_gettop(L), depth, &val) != 0) {
            lua_pop(L, 2);
            crm_value_free(map);
            return -1;
        }
        path_pop(c, old);
        lua_pop(L, 1);
        if (crm_map_setn(map, k, kl, val) != 0) {
            lua_pop(L, 1);
            crm_value_free(map);
            return fail(c, "out of memory");
        }
    }
    *out = map;
    return 0;
}

static int convert(conv *c, int idx, int depth, crm_value **out)
{
    lua_State *L = c->L;
    *out = NULL;
    if (add_bytes(c, 32) != 0)
        return -1;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
    case LUA_TNONE:
        *out = crm_value_nil();
        break;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) != (void *)&crm_lua_null_key)
            return fail(c, "a userdata cannot be stored");
        *out = crm_value_nil();
        break;
    case LUA_TBOOLEAN:
        *out = crm_value_bool(lua_toboolean(L, idx));
        break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            *out = crm_value_int((int64_t)lua_tointeger(L, idx));
        } else {
            double d = (double)lua_tonumber(L, idx);
            if (!isfinite(d))
                return fail(c, "NaN and infinities cannot be stored");
            *out = crm_value_num(d);
        }
        break;
    case LUA_TSTRING: {
        size_t l;
        const char *s = lua_tolstring(L, idx, &l);
        if (add_bytes(c, l) != 0)
            return -1;
        if (!crm_utf8_valid(s, l))
            return fail(c, "a string must be valid UTF-8");
        *out = crm_value_str(s, l);
        break;
    }
    case LUA_TTABLE:
        return convert_table(c, lua_absindex(L, idx), depth + 1, out);
    default:
        return fail(c, "a %s cannot be stored", lua_typename(L, lua_type(L, idx)));
    }
    if (!*out)
        return fail(c, "out of memory");
    return 0;
}

int crm_lua_to_value(lua_State *L, int idx, const char *what, crm_value **out, char *errbuf,
                     size_t errcap)
{
    conv c;
    memset(&c, 0, sizeof c);
    c.L = L;
    c.err = errbuf;
    c.errcap = errcap;
    snprintf(c.path, sizeof c.path, "%s", what ? what : "value");
    c.plen = strlen(c.path);
    return convert(&c, lua_absindex(L, idx), 0, out);
}
