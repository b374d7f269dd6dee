/*
 * lua_sandbox -- the state, its allow list and its budgets (see
 * lua_sandbox.h).  The wrappers of long-running C functions are in
 * lua_limits.c.
 *
 * Why a hook plus caps: Lua's count hook runs between VM instructions only,
 * so it stops Lua loops (also inside pcall, coroutines, __gc and __close
 * handlers: they are Lua functions too) but not a C function that runs
 * long; those get bounds before they start (lua_limits.c).
 */
#include "lua_sandbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lualib.h>

/* ---- internal to the sandbox (lua_limits.c) ---- */
void crm_lua_limits_install(lua_State *L);

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

crm_lua_guard *crm_lua_guard_of(lua_State *L)
{
    void *ud = NULL;
    lua_getallocf(L, &ud);
    return ud;
}

/* ---- memory ---- */

static const char *broke_text(const crm_lua_guard *g, char *buf, size_t cap);

/* Counts every byte the state holds and refuses past max_memory (Lua then
 * runs an emergency collection and asks once more with the same request;
 * refusing that too is a real out-of-memory and breaks the budget, so a
 * script cannot catch it with pcall and go on). */
static void *guard_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    crm_lua_guard *g = ud;
    size_t old = ptr ? osize : 0; /* for a new object osize is its type tag */
    void *np;
    if (nsize == 0) {
        free(ptr);
        g->mem -= old;
        return NULL;
    }
    if (nsize > old && g->mem - old + nsize > g->max_memory) {
        if (ptr == g->refused_ptr && osize == g->refused_osize && nsize == g->refused_nsize &&
            !g->broken && g->depth > 0) {
            g->broken = CRM_LUA_BROKE_MEM;
            /* Name the line now: the error that follows unwinds without a
             * message handler.  Only reads the call's thread, which lives
             * as long as the call (a loop doubling a string may never
             * reach the hook before it runs out). */
            if (g->call_L && !g->why[0]) {
                char where[96], what[96];
                crm_lua_where(g->call_L, 0, where, sizeof where);
                if (where[0])
                    snprintf(g->why, sizeof g->why, "%s %s", where,
                             broke_text(g, what, sizeof what));
            }
        }
        g->refused_ptr = ptr;
        g->refused_osize = osize;
        g->refused_nsize = nsize;
        return NULL;
    }
    if (!(np = realloc(ptr, nsize)))
        return NULL;
    g->mem = g->mem - old + nsize;
    g->refused_nsize = 0;
    return np;
}

size_t crm_lua_guard_mem_left(lua_State *L)
{
    crm_lua_guard *g = crm_lua_guard_of(L);
    return g->mem >= g->max_memory ? 0 : g->max_memory - g->mem;
}

/* ---- instructions and time ---- */

static const char *broke_text(const crm_lua_guard *g, char *buf, size_t cap)
{
    switch (g->broken) {
    case CRM_LUA_BROKE_INSTR:
        snprintf(buf, cap, "instruction budget exhausted (%llu)",
                 (unsigned long long)g->max_instructions);
        break;
    case CRM_LUA_BROKE_TIME:
        snprintf(buf, cap, "time budget exhausted (%d ms)", g->max_ms);
        break;
    case CRM_LUA_BROKE_MEM:
        snprintf(buf, cap, "memory budget exhausted (%zu KiB)", g->max_memory >> 10);
        break;
    default:
        snprintf(buf, cap, "Lua code ran outside a call");
        break;
    }
    return buf;
}

const char *crm_lua_where(lua_State *L, int level, char *buf, size_t cap)
{
    lua_Debug ar;
    buf[0] = '\0';
    for (int lv = level; lv < level + 50 && lua_getstack(L, lv, &ar); lv++) {
        if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
            snprintf(buf, cap, "%s:%d:", ar.short_src, ar.currentline);
            break;
        }
    }
    return buf;
}

/* Records the first break's message (where: "file:line:" or "") and
 * raises it.  From now on the hook fires on every instruction. */
static int raise_broken(lua_State *L, crm_lua_guard *g, const char *where)
{
    char what[96];
    void (*hook)(lua_State *, lua_Debug *) = lua_gethook(L);
    if (!g->why[0]) {
        if (!where[0] && g->last_line > 0)
            snprintf(g->why, sizeof g->why, "%s:%d: %s", g->last_src, g->last_line,
                     broke_text(g, what, sizeof what));
        else
            snprintf(g->why, sizeof g->why, "%s%s%s", where, where[0] ? " " : "",
                     broke_text(g, what, sizeof what));
    }
    if (hook && lua_gethookcount(L) != 1)
        lua_sethook(L, hook, LUA_MASKCOUNT, 1);
    lua_pushstring(L, g->why);
    return lua_error(L);
}

static void guard_hook(lua_State *L, lua_Debug *ar)
{
    crm_lua_guard *g = crm_lua_guard_of(L);
    int count = lua_gethookcount(L);
    char where[96];
    if (!g->broken) {
        if (g->depth == 0) {
            g->broken = CRM_LUA_BROKE_IDLE;
        } else {
            g->used += (uint64_t)count;
            if (g->used > g->max_instructions)
                g->broken = CRM_LUA_BROKE_INSTR;
            else if (now_ns() > g->deadline_ns)
                g->broken = CRM_LUA_BROKE_TIME;
        }
        if (!g->broken) {
            /* remember where we are: a memory break (found by the
             * allocator, which has no stack) is named with it */
            if (lua_getinfo(L, "Sl", ar) && ar->currentline > 0) {
                g->last_line = ar->currentline;
                if (strcmp(g->last_src, ar->short_src) != 0)
                    snprintf(g->last_src, sizeof g->last_src, "%s", ar->short_src);
            }
            if (count != CRM_LUA_HOOK_EVERY) /* a thread armed by an earlier break */
                lua_sethook(L, guard_hook, LUA_MASKCOUNT, CRM_LUA_HOOK_EVERY);
            return;
        }
    }
    where[0] = '\0';
    if (lua_getinfo(L, "Sl", ar) && ar->currentline > 0)
        snprintf(where, sizeof where, "%s:%d:", ar->short_src, ar->currentline);
    raise_broken(L, g, where);
}

void crm_lua_guard_enter(crm_lua_guard *g, lua_State *L)
{
    if (g->depth++ == 0) {
        g->used = 0;
        g->broken = CRM_LUA_OK;
        g->why[0] = '\0';
        g->last_line = 0;
        g->refused_nsize = 0;
        g->deadline_ns = now_ns() + (int64_t)g->max_ms * 1000000;
        g->call_L = L;
    }
    /* a nested call keeps the outer call's budget and its (maybe armed) hook */
    if (!g->broken && lua_gethookcount(L) != CRM_LUA_HOOK_EVERY)
        lua_sethook(L, guard_hook, LUA_MASKCOUNT, CRM_LUA_HOOK_EVERY);
}

void crm_lua_guard_leave(crm_lua_guard *g, lua_State *L, int status)
{
    if (--g->depth > 0)
        return;
    g->call_L = NULL;
    if (status == LUA_ERRMEM && !g->broken)
        g->broken = CRM_LUA_BROKE_MEM;
    if (g->broken || status != LUA_OK) {
        /* A failed call's garbage (a bomb's tables) goes back now, not when
         * the collector next gets round to it.  Scripts cannot set __gc
         * (lua_limits.c), and with depth 0 any Lua code is stopped anyway. */
        int was = g->broken;
        if (!g->broken)
            g->broken = CRM_LUA_BROKE_IDLE;
        lua_sethook(L, guard_hook, LUA_MASKCOUNT, 1);
        /* each collection frees half of a deep recursion's unused
         * CallInfos (luaE_shrinkCI): repeat while it pays */
        for (int i = 0; i < 16; i++) {
            size_t before = g->mem;
            lua_gc(L, LUA_GCCOLLECT);
            if (g->mem + before / 8 >= before)
                break;
        }
        lua_sethook(L, guard_hook, LUA_MASKCOUNT, CRM_LUA_HOOK_EVERY);
        g->broken = was; /* the host reads it: did the budget break? */
    }
}

void crm_lua_guard_close(crm_lua_guard *g, lua_State *L)
{
    if (!L)
        return;
    g->depth = 0;
    g->broken = CRM_LUA_BROKE_IDLE;
    snprintf(g->why, sizeof g->why, "closing");
    lua_sethook(L, guard_hook, LUA_MASKCOUNT, 1);
    lua_close(L);
}

void crm_lua_guard_charge(lua_State *L, uint64_t n)
{
    crm_lua_guard *g = crm_lua_guard_of(L);
    char where[96];
    if (!g->broken) {
        if (g->depth == 0)
            g->broken = CRM_LUA_BROKE_IDLE;
        else if ((g->used += n) > g->max_instructions)
            g->broken = CRM_LUA_BROKE_INSTR;
        else if (n > 1024 && now_ns() > g->deadline_ns)
            g->broken = CRM_LUA_BROKE_TIME;
        if (!g->broken)
            return;
    }
    raise_broken(L, g, crm_lua_where(L, 1, where, sizeof where));
}

uint64_t crm_lua_guard_left(lua_State *L)
{
    crm_lua_guard *g = crm_lua_guard_of(L);
    if (g->broken || g->used >= g->max_instructions)
        return 0;
    return g->max_instructions - g->used;
}

/* ---- the allow list ---- */

/* collectgarbage("count") only: a script must not stop or tune the
 * collector (R15), and a full collection is the host's to run. */
static int sb_collectgarbage(lua_State *L)
{
    const char *opt = luaL_optstring(L, 1, "collect");
    if (strcmp(opt, "count") != 0)
        return luaL_error(L, "collectgarbage: only \"count\" is allowed in scripts");
    lua_pushnumber(L, (lua_Number)lua_gc(L, LUA_GCCOUNT, 0) +
                          (lua_Number)lua_gc(L, LUA_GCCOUNTB, 0) / 1024.0);
    return 1;
}

/* load(chunk [, chunkname [, mode [, env]]]): text only (binary chunks
 * can crash the VM), a string only (a reader function would let the
 * parser run in C for as long as it keeps returning text), and the
 * script's own globals unless env is given. */
static int sb_load(lua_State *L)
{
    size_t len;
    const char *mode = luaL_optstring(L, 3, "t");
    int has_env = !lua_isnone(L, 4);
    if (lua_type(L, 1) != LUA_TSTRING)
        return luaL_argerror(L, 1, "a string chunk expected (reader functions are not allowed)");
    lua_tolstring(L, 1, &len);
    if (strcmp(mode, "t") != 0) {
        luaL_pushfail(L);
        lua_pushliteral(L, "load: only text chunks are allowed (mode \"t\")");
        return 2;
    }
    crm_lua_guard_charge(L, (uint64_t)len * 2); /* the parser runs in C */
    lua_settop(L, 4);
    lua_pushliteral(L, "t");
    lua_replace(L, 3);
    if (!has_env) {
        lua_pushglobaltable(L);
        lua_replace(L, 4);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, 4, LUA_MULTRET);
    return lua_gettop(L);
}

static void drop_global(lua_State *L, const char *name)
{
    lua_pushnil(L);
    lua_setglobal(L, name);
}

static int open_libs(lua_State *L)
{
    static const luaL_Reg libs[] = {
        {LUA_GNAME, luaopen_base},         {LUA_STRLIBNAME, luaopen_string},
        {LUA_TABLIBNAME, luaopen_table},   {LUA_MATHLIBNAME, luaopen_math},
        {LUA_UTF8LIBNAME, luaopen_utf8},   {LUA_COLIBNAME, luaopen_coroutine},
        {NULL, NULL}};
    static const char *const os_keep[] = {"time", "clock", "date", NULL};
    for (const luaL_Reg *lib = libs; lib->func; lib++) {
        luaL_requiref(L, lib->name, lib->func, 1);
        lua_pop(L, 1);
    }
    /* os: a fresh table with three functions; the full library is never a
     * global and is dropped from the loaded table */
    luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 0);
    lua_createtable(L, 0, 3);
    for (int i = 0; os_keep[i]; i++) {
        lua_getfield(L, -2, os_keep[i]);
        lua_setfield(L, -2, os_keep[i]);
    }
    lua_setglobal(L, LUA_OSLIBNAME);
    lua_pop(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushnil(L);
    lua_setfield(L, -2, LUA_OSLIBNAME);
    lua_pop(L, 1);

    drop_global(L, "dofile");
    drop_global(L, "loadfile");
    drop_global(L, "print"); /* the host routes print to the log */
    drop_global(L, "warn");
    lua_pushcfunction(L, sb_collectgarbage);
    lua_setglobal(L, "collectgarbage");
    lua_getglobal(L, "load");
    lua_pushcclosure(L, sb_load, 1);
    lua_setglobal(L, "load");

    lua_getglobal(L, LUA_STRLIBNAME);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);

    crm_lua_limits_install(L);

    /* The string metatable is per state anyway; __metatable makes
     * getmetatable("") return false, so it cannot be reached or changed
     * (getmetatable("").__index = ... raises). */
    lua_pushliteral(L, "");
    if (lua_getmetatable(L, -1)) {
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return 0;
}

lua_State *crm_lua_sandbox_new(crm_lua_guard *g)
{
    lua_State *L = lua_newstate(guard_alloc, g);
    if (!L)
        return NULL;
    /* building the state runs no Lua code; give it room all the same */
    g->depth = 1;
    g->deadline_ns = now_ns() + 1000000000;
    g->used = 0;
    g->broken = CRM_LUA_OK;
    lua_sethook(L, guard_hook, LUA_MASKCOUNT, CRM_LUA_HOOK_EVERY);
    lua_pushcfunction(L, open_libs);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
        crm_lua_guard_close(g, L);
        return NULL;
    }
    g->depth = 0;
    return L;
}
