/*
 * lua_limits -- bounds for the library functions that run in C, where the
 * count hook cannot stop them (reliability plan, facts: string.find with a
 * dozen `a*` ran 29 s, string.rep of 1 GiB ran 9 s).
 *
 * Each wrapper checks before the real function starts and then calls it
 * (kept as upvalue 1), so results and error texts stay Lua's own:
 *  - results built in C (rep, format, concat) are refused past
 *    min(CRM_LUA_MAX_RESULT, memory the state has left);
 *  - pattern functions run crm_lua_pattern_cost first: over
 *    CRM_LUA_PATTERN_MAX_STEPS is "pattern too complex", and the steps
 *    are charged to the call's instruction budget;
 *  - loops in C over a length the script chooses (table.move, insert,
 *    remove, sort, concat; the "" case of string.rep) are charged to the
 *    instruction budget before they start;
 *  - os.date formats are short (each conversion is a strftime call);
 *  - setmetatable refuses __gc (finalizers run with hooks off).
 */
#include <string.h>

#include <lauxlib.h>

#include "lua_pattern.h"
#include "lua_sandbox.h"

void crm_lua_limits_install(lua_State *L);

/* Calls the real function (upvalue 1) with every argument. */
static int call_real(lua_State *L)
{
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, n, LUA_MULTRET);
    return lua_gettop(L);
}

static size_t result_cap(lua_State *L)
{
    size_t left = crm_lua_guard_mem_left(L);
    return left < CRM_LUA_MAX_RESULT ? left : CRM_LUA_MAX_RESULT;
}

static int too_big(lua_State *L, const char *fn, uint64_t n)
{
    /* lua_pushfstring knows %I (lua_Integer), not %llu */
    lua_Integer big = n > (uint64_t)LUA_MAXINTEGER ? LUA_MAXINTEGER : (lua_Integer)n;
    return luaL_error(L, "%s: the result would be %I bytes, over the limit of %I", fn, big,
                      (lua_Integer)result_cap(L));
}

/* ---- string ---- */

static int lim_rep(lua_State *L)
{
    size_t l, lsep;
    luaL_checklstring(L, 1, &l);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_optlstring(L, 3, "", &lsep);
    uint64_t total;
    if (n <= 0 || l + lsep == 0) {
        /* Lua would loop n times copying nothing: string.rep("", 2^62) */
        lua_pushliteral(L, "");
        return 1;
    }
    if ((uint64_t)n > (UINT64_MAX / 2) / (l + lsep))
        return too_big(L, "string.rep", UINT64_MAX);
    total = (uint64_t)n * l + (uint64_t)(n - 1) * lsep;
    if (total > result_cap(L))
        return too_big(L, "string.rep", total);
    crm_lua_guard_charge(L, total / 64 + (uint64_t)n / 8);
    return call_real(L);
}

static int lim_format(lua_State *L)
{
    int top = lua_gettop(L);
    size_t fl, l;
    uint64_t est;
    luaL_checklstring(L, 1, &fl);
    est = fl;
    for (int i = 2; i <= top; i++) {
        switch (lua_type(L, i)) {
        case LUA_TSTRING:
            lua_tolstring(L, i, &l);
            est += 4 * (uint64_t)l + 102; /* %q escapes each byte in up to 4; width <= 99 */
            break;
        case LUA_TTABLE:
            if (luaL_getmetafield(L, i, "__tostring") != LUA_TNIL) {
                /* the text is what %s would print: measure it now and hand
                 * the real function the string */
                lua_pop(L, 1);
                luaL_tolstring(L, i, &l);
                lua_replace(L, i);
                est += 4 * (uint64_t)l + 102;
                break;
            }
            /* fall through */
        default:
            est += 512; /* a number in %99.99f, or "table: 0x..." */
            break;
        }
    }
    if (est > result_cap(L))
        return too_big(L, "string.format", est);
    crm_lua_guard_charge(L, est / 64);
    return call_real(L);
}

/* Lua's posrelatI: a 1-based start position from a relative one. */
static lua_Integer start_pos(lua_Integer pos, size_t len)
{
    if (pos > 0)
        return pos;
    if (pos == 0)
        return 1;
    if (pos < -(lua_Integer)len)
        return 1;
    return (lua_Integer)len + pos + 1;
}

static int has_specials(const char *p, size_t l)
{
    for (size_t i = 0; i < l; i++)
        if (p[i] && strchr("^$*+?.([%-", p[i]))
            return 1;
    return 0;
}

/* Measures the match and charges it; raises when it is too much. */
static void bound_pattern(lua_State *L, const char *fn, crm_lua_pat_kind kind, size_t init,
                          int64_t max_subs)
{
    size_t ls, lp;
    const char *s = lua_tolstring(L, 1, &ls);
    const char *p = lua_tolstring(L, 2, &lp);
    uint64_t left = crm_lua_guard_left(L), steps = 0;
    uint64_t cap = left < CRM_LUA_PATTERN_MAX_STEPS ? left + 1 : CRM_LUA_PATTERN_MAX_STEPS;
    int rc = crm_lua_pattern_cost(kind, s, ls, p, lp, init, max_subs, cap,
                                  crm_lua_guard_of(L)->deadline_ns, &steps);
    crm_lua_guard_charge(L, steps); /* raises when that spends the budget (or its time) */
    if (rc == CRM_PAT_OVER)
        luaL_error(L, "%s: pattern too complex for this subject (more than %d steps)", fn,
                   (int)CRM_LUA_PATTERN_MAX_STEPS);
}

static int find_aux(lua_State *L, int find)
{
    size_t ls, lp;
    luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    lua_Integer init = start_pos(luaL_optinteger(L, 3, 1), ls);
    if (init > (lua_Integer)ls + 1)
        return call_real(L); /* no match possible: Lua returns fail at once */
    if (find && (lua_toboolean(L, 4) || !has_specials(p, lp)))
        crm_lua_guard_charge(L, crm_lua_plain_cost(ls - (size_t)(init - 1), lp));
    else
        bound_pattern(L, find ? "string.find" : "string.match", CRM_PAT_FIND,
                      (size_t)(init - 1), 0);
    return call_real(L);
}

static int lim_find(lua_State *L) { return find_aux(L, 1); }
static int lim_match(lua_State *L) { return find_aux(L, 0); }

/* gmatch's iterator runs later, in C; the whole iteration is measured
 * (and charged) up front, also when the loop stops early. */
static int lim_gmatch(lua_State *L)
{
    size_t ls;
    luaL_checklstring(L, 1, &ls);
    luaL_checkstring(L, 2);
    lua_Integer init = start_pos(luaL_optinteger(L, 3, 1), ls);
    if (init > (lua_Integer)ls + 1)
        init = (lua_Integer)ls + 1;
    bound_pattern(L, "string.gmatch", CRM_PAT_GMATCH, (size_t)(init - 1), 0);
    return call_real(L);
}

static int lim_gsub(lua_State *L)
{
    size_t ls;
    luaL_checklstring(L, 1, &ls);
    luaL_checkstring(L, 2);
    lua_Integer max_s = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
    bound_pattern(L, "string.gsub", CRM_PAT_GSUB, 0, max_s);
    return call_real(L);
}

/* ---- table ---- */

/* Our own concat: the size is checked before each piece is added, so the
 * result never passes the cap whatever __index or __len claim. */
static int lim_concat(lua_State *L)
{
    size_t lsep, cap = result_cap(L);
    uint64_t total = 0;
    luaL_Buffer b;
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *sep = luaL_optlstring(L, 2, "", &lsep);
    lua_Integer i = luaL_optinteger(L, 3, 1);
    lua_Integer last = luaL_opt(L, luaL_checkinteger, 4, luaL_len(L, 1));
    luaL_buffinit(L, &b);
    for (; i <= last; i++) {
        size_t l;
        if ((i & 63) == 0)
            crm_lua_guard_charge(L, 64);
        lua_geti(L, 1, i);
        if (!lua_isstring(L, -1))
            return luaL_error(L, "invalid value (at index %I) in table for 'concat'",
                              (lua_Integer)i);
        lua_tolstring(L, -1, &l);
        total += l + (i < last ? lsep : 0);
        if (total > cap)
            return too_big(L, "table.concat", total);
        luaL_addvalue(&b);
        if (i < last)
            luaL_addlstring(&b, sep, lsep);
        if (i == LUA_MAXINTEGER)
            break;
    }
    luaL_pushresult(&b);
    return 1;
}

/* table.move(a1, f, e, t [, a2]): e - f + 1 element moves in C. */
static int lim_move(lua_State *L)
{
    lua_Integer f = luaL_checkinteger(L, 2), e = luaL_checkinteger(L, 3);
    if (e >= f)
        crm_lua_guard_charge(L, (uint64_t)e - (uint64_t)f + 1);
    return call_real(L);
}

/* insert at a position and remove from one shift #t - pos elements in C;
 * #t may come from a __len that claims anything. */
static int lim_insert(lua_State *L)
{
    if (lua_type(L, 1) == LUA_TTABLE && lua_gettop(L) >= 3) {
        lua_Integer n = luaL_len(L, 1), pos = luaL_checkinteger(L, 2);
        if (n >= pos)
            crm_lua_guard_charge(L, (uint64_t)n - (uint64_t)pos + 1);
    }
    return call_real(L);
}

static int lim_remove(lua_State *L)
{
    if (lua_type(L, 1) == LUA_TTABLE) {
        lua_Integer n = luaL_len(L, 1), pos = luaL_optinteger(L, 2, n);
        if (n >= pos)
            crm_lua_guard_charge(L, (uint64_t)n - (uint64_t)pos + 1);
    }
    return call_real(L);
}

static int lim_sort(lua_State *L)
{
    if (lua_type(L, 1) == LUA_TTABLE) {
        lua_Integer n = luaL_len(L, 1);
        uint64_t lg = 1;
        while (n > 0 && ((uint64_t)1 << lg) < (uint64_t)n && lg < 63)
            lg++;
        if (n > 1)
            crm_lua_guard_charge(L, (uint64_t)n * lg);
    }
    return call_real(L);
}

/* ---- os ---- */

static int lim_date(lua_State *L)
{
    size_t l;
    luaL_optlstring(L, 1, "%c", &l);
    if (l > 256)
        return luaL_error(L, "os.date: format longer than 256 bytes");
    return call_real(L);
}

/* ---- finalizers ---- */

/* Lua 5.4 runs __gc with debug hooks off (lgc.c GCTM: "stop debug hooks
 * during GC metamethod"), so no budget can stop a finalizer that loops.
 * An object is marked for finalization only when setmetatable sees a __gc
 * field (adding one later does nothing), and tables are the only values a
 * script can give a metatable, so refusing __gc here closes the door. */
static int lim_setmetatable(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "setmetatable: __gc metamethods are not allowed in scripts "
                                 "(a finalizer runs where no budget can stop it)");
        lua_pop(L, 1);
    }
    return call_real(L);
}

/* ---- install ---- */

static void wrap(lua_State *L, const char *lib, const char *name, lua_CFunction fn)
{
    lua_getglobal(L, lib);
    lua_getfield(L, -1, name);
    lua_pushcclosure(L, fn, 1);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

void crm_lua_limits_install(lua_State *L)
{
    wrap(L, "string", "rep", lim_rep);
    wrap(L, "string", "format", lim_format);
    wrap(L, "string", "find", lim_find);
    wrap(L, "string", "match", lim_match);
    wrap(L, "string", "gmatch", lim_gmatch);
    wrap(L, "string", "gsub", lim_gsub);
    wrap(L, "table", "move", lim_move);
    wrap(L, "table", "insert", lim_insert);
    wrap(L, "table", "remove", lim_remove);
    wrap(L, "table", "sort", lim_sort);
    wrap(L, "os", "date", lim_date);
    lua_getglobal(L, "setmetatable");
    lua_pushcclosure(L, lim_setmetatable, 1);
    lua_setglobal(L, "setmetatable");
    lua_getglobal(L, "table");
    lua_pushcfunction(L, lim_concat);
    lua_setfield(L, -2, "concat");
    lua_pop(L, 1);
}
