/*
 * lua_value -- crm_value <-> Lua values, for records, patches, where
 * filters, payloads, method params and results.
 *
 * To Lua:   map -> table with string keys (null fields are left out: a
 *           missing field reads as nil); arr -> table 1..n marked as an
 *           array (metatable crm.array), a null item becomes crm.null so
 *           positions stay; int -> integer; num -> float; str -> string.
 * From Lua: nil and crm.null -> null (in a patch: remove the field);
 *           boolean; integer -> int; float -> num (NaN and infinities are
 *           refused); string -> str (must be valid UTF-8); a table marked
 *           as array -> arr of t[1..#t]; any other table -> map when all
 *           keys are strings, arr when the keys are exactly 1..n, and {} is
 *           an empty MAP (crm.array() makes an empty array).  Mixed keys,
 *           holes, other key types, functions, threads and userdata are
 *           refused.  Nesting deeper than CRM_LUA_MAX_DEPTH is refused,
 *           which also stops cycles.  At most CRM_LUA_MAX_VALUE_BYTES are
 *           built (the tree lives outside the script's memory budget).
 *
 * Errors name the path: "record.tags[3]: a function cannot be stored".
 */
#ifndef CRM_LUA_VALUE_H
#define CRM_LUA_VALUE_H

#include <stddef.h>

#include <lua.h>

#include "value.h"

#define CRM_LUA_MAX_DEPTH 32
#define CRM_LUA_MAX_VALUE_BYTES ((size_t)16 << 20)

/* Registry keys (light userdata addresses) of the shared sentinel and the
 * array metatable; crm_lua_value_init creates them in a state. */
extern const char crm_lua_null_key;   /* crm.null is lightuserdata(&crm_lua_null_key) */
extern const char crm_lua_array_key;  /* registry[&crm_lua_array_key] = array metatable */

/* Creates the array metatable in L's registry.  May raise (memory). */
void crm_lua_value_init(lua_State *L);

/* Pushes v (NULL pushes nil).  May raise a memory error: call it where a
 * raise does not leak (see crm_lua_push_owned in lua_host.c). */
void crm_lua_push_value(lua_State *L, const crm_value *v);

/* Converts the value at idx.  Never raises (it uses raw access only and
 * lua_checkstack).  On success *out is a new tree the caller owns; on
 * failure returns -1 with a message in errbuf naming the path (what: the
 * root's name, e.g. "record").  A Lua nil gives a null value. */
int crm_lua_to_value(lua_State *L, int idx, const char *what, crm_value **out, char *errbuf,
                     size_t errcap);

/* True when the table at idx carries the array mark. */
int crm_lua_is_array(lua_State *L, int idx);

#endif
