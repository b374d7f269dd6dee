/*
 * lua_sandbox -- one sandboxed lua_State per script, and the budgets of
 * every call into it (issue 4, reliability plan R14/R15).
 *
 * Owns: the allow list of libraries (base, string, table, math, utf8,
 * coroutine and a three-function os; never luaL_openlibs), the counting
 * allocator (memory cap per state), the count hook (instructions and wall
 * time per call), and the wrappers that bound the C functions the hook
 * cannot see (string.rep/format/find/match/gmatch/gsub, table.concat/move/
 * insert/remove/sort, load).
 * Never: knows about crm_api, records or the bus (lua_host does).
 *
 * A budget break is sticky: once a call has spent its budget, the hook
 * fires on every instruction of every coroutine of the state and raises
 * again, so pcall cannot swallow it.  It stays broken until the outermost
 * call has returned; Lua code that runs outside any call (finalizers in
 * lua_close) is stopped within CRM_LUA_HOOK_EVERY instructions.
 */
#ifndef CRM_LUA_SANDBOX_H
#define CRM_LUA_SANDBOX_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

/* The count hook fires every this many VM instructions. */
#define CRM_LUA_HOOK_EVERY 1000
/* Results that C functions build (rep, format, concat) are refused past
 * this size, or past the memory the state has left, whichever is smaller. */
#define CRM_LUA_MAX_RESULT ((size_t)16 << 20)
/* A pattern function is refused ("pattern too complex") when Lua's matcher
 * would take more steps than this in one call (see lua_pattern.h). */
#define CRM_LUA_PATTERN_MAX_STEPS 10000000u

enum crm_lua_broke {
    CRM_LUA_OK = 0,
    CRM_LUA_BROKE_INSTR, /* "instruction budget exhausted" */
    CRM_LUA_BROKE_TIME,  /* "time budget exhausted" */
    CRM_LUA_BROKE_MEM,   /* "memory budget exhausted" */
    CRM_LUA_BROKE_IDLE   /* Lua ran outside any call (a finalizer in lua_close) */
};

/* Per-state guard: the allocator's ud, reachable from every thread of the
 * state through lua_getallocf.  Embedded in the host's script struct. */
typedef struct crm_lua_guard {
    /* limits: set before crm_lua_sandbox_new, constant afterwards */
    uint64_t max_instructions;
    size_t max_memory;
    int max_ms;
    /* memory the state holds now, in bytes */
    size_t mem;
    /* the current call, shared by nested calls and every coroutine */
    int depth;            /* calls in progress (a before-hook that writes nests) */
    uint64_t used;        /* instructions (and charged C work) so far */
    int64_t deadline_ns;  /* CLOCK_MONOTONIC */
    int broken;           /* enum crm_lua_broke; sticks until the outermost call ends */
    char why[200];        /* the first break: "lifecycle.lua:12: instruction budget exhausted" */
    /* where Lua last was when the hook fired: names memory breaks */
    char last_src[64];
    int last_line;
    /* allocator bookkeeping: a refusal repeated after Lua's emergency GC
     * is a real out-of-memory, which breaks the budget */
    const void *refused_ptr;
    size_t refused_osize, refused_nsize;
    lua_State *call_L;    /* the thread of the outermost call in progress (alive
                           * for its duration), or NULL */
    void *host;           /* the host's script (borrowed) */
} crm_lua_guard;

/* A new sandboxed state whose allocator counts into g (which must outlive
 * it) and refuses past g->max_memory.  Globals: the allow list above; no
 * print (the host adds one).  NULL when memory runs out. */
lua_State *crm_lua_sandbox_new(crm_lua_guard *g);

/* The guard of any thread of a sandboxed state. */
crm_lua_guard *crm_lua_guard_of(lua_State *L);

/* Starts a call on thread L (the outermost call resets the budget; nested
 * calls share it).  Never raises. */
void crm_lua_guard_enter(crm_lua_guard *g, lua_State *L);
/* Ends it (status: what lua_pcall returned).  When the outermost call
 * failed (a break, a memory error, any error), a full collection runs
 * with the budget broken, so the memory comes back at once and no Lua
 * code can run during it. */
void crm_lua_guard_leave(crm_lua_guard *g, lua_State *L, int status);
/* Closes the state with finalizers stopped at their first instructions. */
void crm_lua_guard_close(crm_lua_guard *g, lua_State *L);

/* Charges n units of work done in C to the current call; raises the budget
 * error (sticky) when that spends it.  For wrappers of C functions. */
void crm_lua_guard_charge(lua_State *L, uint64_t n);
/* Instructions left in the current call (0 once broken). */
uint64_t crm_lua_guard_left(lua_State *L);
/* Bytes the state may still allocate. */
size_t crm_lua_guard_mem_left(lua_State *L);

/* "file:line:" of the nearest Lua function at stack level >= level, or ""
 * when there is none.  Writes into buf (cap bytes). */
const char *crm_lua_where(lua_State *L, int level, char *buf, size_t cap);

#endif
