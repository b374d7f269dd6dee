/*
 * lua_host -- the Lua 5.4 script host: loads every .lua file of the
 * scripts folder, one sandboxed lua_State per file, each an owner of bus
 * registrations; hot reload.
 *
 * The `crm` module the scripts see (lua_api.c) is a thin layer over the
 * crm_api table (include/crm/plugin.h): crm.get calls api->get, crm.on
 * calls api->on, and so on, so a C plugin and a script can always do the
 * same things.  docs/lua.md is the consultant's guide.
 *
 * Budgets (lua_sandbox.h): every call into a script (its top level, a
 * hook, a timer, a method) gets max_instructions and max_ms; a nested call
 * (a before-hook run by a write the same script makes) shares the outer
 * call's budget.  Each state is capped at max_memory.  A break ends the
 * call with SCRIPT_ERROR "lifecycle.lua:12: instruction budget exhausted".
 *
 * Threads: the bus's thread (the writer while serving; SIGHUP reloads
 * run there too, between two batches).
 */
#ifndef CRM_LUA_HOST_H
#define CRM_LUA_HOST_H

#include <stddef.h>
#include <stdint.h>

#include "bus.h"

typedef struct crm_lua crm_lua;

typedef struct crm_lua_opts {
    uint64_t max_instructions; /* per call; default 50,000,000 */
    size_t max_memory;         /* per script state; default 64 MiB */
    int max_ms;                /* wall clock per call; default 1000 */
} crm_lua_opts;

void crm_lua_opts_default(crm_lua_opts *o);

/* Loads every *.lua in dir (copied), sorted by name; a missing or empty
 * dir means no scripts.  Each file's top level runs once (it registers
 * hooks, timers and methods; record access is refused there), then its
 * owner is sealed.  On failure nothing stays registered and err names the
 * file and line: SCRIPT_ERROR "lifecycle.lua:3: ...", or UNAVAILABLE when
 * dir cannot be read.  b is borrowed and must outlive the host.  opts may
 * be NULL (defaults).  On success *out is the caller's (crm_lua_close). */
int crm_lua_open(crm_bus *b, const char *dir, const crm_lua_opts *opts, crm_lua **out,
                 crm_err *err);

/* SIGHUP: loads the folder again into NEW states.  If any script fails,
 * the new ones are freed, the running set stays and err names file:line;
 * else the old scripts are freed and the new set runs.  Durable cursors
 * and pending timers carry over by name (the bus keys them by script file
 * name and hook/timer name).  BAD_REQUEST when called from inside a script
 * call. */
int crm_lua_reload(crm_lua *l, crm_err *err);

/* Frees every script (their registrations first); NULL is fine. */
void crm_lua_close(crm_lua *l);

/* Scripts loaded. */
size_t crm_lua_count(const crm_lua *l);
/* Name of script i ("lifecycle.lua"; borrowed), or NULL past the end. */
const char *crm_lua_name(const crm_lua *l, size_t i);
/* Bytes held by the state of the script called name, or by all scripts
 * when name is NULL (metrics, tests). */
size_t crm_lua_memory(const crm_lua *l, const char *name);

#endif
