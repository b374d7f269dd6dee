/*
 * fuzz_luavalue -- the record <-> Lua converter (kernel/lua_value.c), the
 * path every record, patch, payload and method result takes between the
 * store and a script.  The input is JSON (decoded with the default limits);
 * the tree is pushed into a Lua state and converted back, and must come
 * back the same (by crm_value_cmp), except what lua_value.h documents:
 * null fields of maps are left out in Lua (a missing field reads as nil).
 * A tree the converter refuses must be one it documents refusing (deeper
 * than CRM_LUA_MAX_DEPTH, larger than CRM_LUA_MAX_VALUE_BYTES).
 */
#include "fuzz.h"

#include <lauxlib.h>
#include <lua.h>

#include "lua_value.h"

/* A copy of v without the null fields of maps (at every depth). */
static crm_value *drop_null_fields(const crm_value *v)
{
    crm_value *c;
    if (v->type == CRM_T_MAP) {
        c = crm_value_map();
        for (size_t i = 0; c && i < v->u.map.n; i++)
            if (v->u.map.kv[i].val->type != CRM_T_NIL)
                crm_map_set(c, v->u.map.kv[i].key, drop_null_fields(v->u.map.kv[i].val));
        return c;
    }
    if (v->type == CRM_T_ARR) {
        c = crm_value_arr();
        for (size_t i = 0; c && i < v->u.arr.n; i++)
            crm_arr_push(c, drop_null_fields(v->u.arr.items[i]));
        return c;
    }
    return crm_value_dup(v);
}

static int depth_of(const crm_value *v)
{
    int d = 0;
    if (v->type == CRM_T_MAP)
        for (size_t i = 0; i < v->u.map.n; i++) {
            int k = depth_of(v->u.map.kv[i].val);
            d = k > d ? k : d;
        }
    else if (v->type == CRM_T_ARR)
        for (size_t i = 0; i < v->u.arr.n; i++) {
            int k = depth_of(v->u.arr.items[i]);
            d = k > d ? k : d;
        }
    else
        return 0;
    return d + 1;
}

static int push_it(lua_State *L)
{
    crm_lua_value_init(L);
    crm_lua_push_value(L, lua_touserdata(L, 1));
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    crm_err err;
    crm_value *v = crm_json_decode((const char *)data, size, NULL, &err), *back = NULL, *want;
    lua_State *L;
    char msg[256];
    int rc;

    if (!v)
        return 0;
    L = luaL_newstate();
    FUZZ_CHECK(L, "no Lua state");
    lua_pushcfunction(L, push_it);
    lua_pushlightuserdata(L, v);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) { /* only memory may fail here */
        lua_close(L);
        crm_value_free(v);
        return 0;
    }
    rc = crm_lua_to_value(L, -1, "value", &back, msg, sizeof msg);
    want = drop_null_fields(v);
    if (rc == 0) {
        FUZZ_CHECK(crm_value_cmp(want, back) == 0,
                   "Lua round trip changed the value\n  in:  %s\n  out: %s", fuzz_show(want),
                   fuzz_show(back));
    } else {
        FUZZ_CHECK(depth_of(v) > CRM_LUA_MAX_DEPTH || size > CRM_LUA_MAX_VALUE_BYTES / 4,
                   "the converter refused a value it should take: %s\n  %s", msg, fuzz_show(v));
    }
    crm_value_free(back);
    crm_value_free(want);
    crm_value_free(v);
    lua_close(L);
    return 0;
}
