/*
 * lua_host_int -- shared by lua_host.c (scripts, calls, trampolines) and
 * lua_api.c (the `crm` module).  Nothing else includes it.
 */
#ifndef CRM_LUA_HOST_INT_H
#define CRM_LUA_HOST_INT_H

#include <lua.h>

#include "lua_host.h"
#include "lua_sandbox.h"

typedef struct lua_script lua_script;

enum lua_reg_kind { LREG_HOOK = 1, LREG_TIMER, LREG_METHOD };

/* One registration: the bus calls its trampoline with this as ud. */
typedef struct lua_reg {
    struct lua_reg *next;
    lua_script *sc;
    int kind;
    int fnref; /* the Lua function, in sc's registry */
} lua_reg;

enum lua_frame_kind { LFRAME_LOAD = 1, LFRAME_BEFORE, LFRAME_AFTER, LFRAME_TIMER, LFRAME_METHOD };

/* One call into a script, on the C stack; nested calls chain. */
typedef struct lua_frame {
    struct lua_frame *prev;
    crm_ctx *ctx; /* NULL at the top level */
    int kind;
    int rejected; /* crm.reject was called in this call */
    char reject_msg[200];
} lua_frame;

struct lua_script {
    crm_lua_guard g; /* the allocator's ud; g.host points back here */
    crm_lua *host;
    lua_State *L;
    crm_plugin *owner;
    const crm_api *api;
    char name[128];
    lua_frame *frame;   /* innermost call in progress, or NULL */
    lua_State *active;  /* the thread inside a crm.* write: a nested call runs on it */
    lua_reg *regs;
    /* the error log's rate limit (lua_host.c, log_script_error) */
    int64_t err_window_start; /* monotonic clock, ms; 0 = no window yet */
    int err_logged;
    long err_suppressed;
};

/* The script owning any thread L of its state. */
lua_script *crm_lua_script_of(lua_State *L);

/* Opens the `crm` module as a global and routes print to crm.log.  Runs
 * inside a protected call (may raise). */
int crm_lua_open_crm(lua_State *L);

/* Trampolines (lua_host.c) that lua_api.c registers with the bus. */
int crm_lua_tramp_hook(crm_ctx *ctx, crm_event *ev, void *ud);
int crm_lua_tramp_timer(crm_ctx *ctx, const char *name, const crm_value *payload, void *ud);
int crm_lua_tramp_method(crm_ctx *ctx, const crm_value *params, crm_value **result, void *ud);

#endif
