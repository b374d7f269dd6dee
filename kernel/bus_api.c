/*
 * bus_api -- the crm_api function table (include/crm/plugin.h): each member
 * a thin, checked wrapper over the store and the bus.  The Lua host calls
 * the same table, so a C plugin and a script can always do the same things.
 *
 * Every pointer a plugin hands in is checked before use (NULL, types):
 * plugin code is trusted not to be malicious, but not to be right.
 */
#include "auth.h"
#include "bus_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

#define NO_CTX CRM_BAD_REQUEST /* record members outside a call */

static crm_value *api_num(double n) { return isfinite(n) ? crm_value_num(n) : NULL; }

static crm_value *api_str(const char *s, size_t len)
{
    if (!s || !crm_utf8_valid(s, len))
        return NULL;
    return crm_value_str(s, len);
}

static int api_map_set(crm_value *map, const char *key, crm_value *val)
{
    if (!map || map->type != CRM_T_MAP || !key || !val) {
        crm_value_free(val);
        return -1;
    }
    return crm_map_set(map, key, val);
}

static crm_value *api_map_get(const crm_value *map, const char *key)
{
    if (!map || map->type != CRM_T_MAP || !key)
        return NULL;
    return crm_map_get(map, key);
}

static int api_map_del(crm_value *map, const char *key)
{
    if (!map || map->type != CRM_T_MAP || !key)
        return 0;
    return crm_map_del(map, key);
}

static int api_arr_push(crm_value *arr, crm_value *item)
{
    if (!arr || arr->type != CRM_T_ARR || !item) {
        crm_value_free(item);
        return -1;
    }
    return crm_arr_push(arr, item);
}

static char *api_to_json(const crm_value *v, size_t *len)
{
    return v ? crm_json_encode(v, len) : NULL;
}

static int api_from_json(const char *text, size_t len, crm_value **out, crm_err *err)
{
    crm_err e;
    *out = NULL;
    if (!text)
        return crm_err_set(err ? err : &e, CRM_BAD_REQUEST, "no text");
    *out = crm_json_decode(text, len, NULL, err ? err : &e);
    return *out ? CRM_OK : (err ? err->code : e.code);
}

/* ---- records ---- */

static int need_ctx(crm_ctx *c, const char *what)
{
    if (!c)
        return NO_CTX;
    crm_err_clear(&c->err);
    if (!c->t)
        return crm_err_set(&c->err, CRM_BAD_REQUEST,
                           "%s is only possible inside a hook, timer or method", what);
    return CRM_OK;
}

static int api_get(crm_ctx *c, const char *coll, const char *id, crm_value **out)
{
    int rc;
    if (out)
        *out = NULL;
    if ((rc = need_ctx(c, "get")) != CRM_OK)
        return rc;
    if (!coll || !id || !out)
        return crm_err_set(&c->err, CRM_BAD_REQUEST, "get needs a collection, an id and out");
    return crm_txn_get(c->t, coll, id, out, &c->err);
}

static int do_write(crm_ctx *c, crm_write *w, crm_value **out)
{
    int rc = crm_txn_write(c->t, w);
    if (rc == CRM_OK) {
        if (out) {
            *out = w->result;
            w->result = NULL;
        }
    } else {
        c->err = w->err;
        c->err.code = rc;
    }
    crm_write_clear(w);
    return rc;
}

static int api_create(crm_ctx *c, const char *coll, const crm_value *rec, crm_value **out)
{
    crm_write w;
    int rc;
    if (out)
        *out = NULL;
    if ((rc = need_ctx(c, "create")) != CRM_OK)
        return rc;
    if (!coll || !rec)
        return crm_err_set(&c->err, CRM_BAD_REQUEST, "create needs a collection and a record");
    memset(&w, 0, sizeof w);
    w.op = CRM_OP_CREATE;
    w.coll = coll;
    w.data = rec;
    return do_write(c, &w, out);
}

static int api_update(crm_ctx *c, const char *coll, const char *id, const crm_value *patch,
                      int64_t if_rev, crm_value **out)
{
    crm_write w;
    int rc;
    if (out)
        *out = NULL;
    if ((rc = need_ctx(c, "update")) != CRM_OK)
        return rc;
    if (!coll || !id || !patch)
        return crm_err_set(&c->err, CRM_BAD_REQUEST, "update needs a collection, an id and a patch");
    if (if_rev < 0)
        return crm_err_set(&c->err, CRM_BAD_REQUEST, "if_rev must not be negative");
    memset(&w, 0, sizeof w);
    w.op = CRM_OP_UPDATE;
    w.coll = coll;
    w.id = id;
    w.data = patch;
    w.if_rev = if_rev;
    return do_write(c, &w, out);
}

static int api_remove(crm_ctx *c, const char *coll, const char *id, int64_t if_rev)
{
    crm_write w;
    int rc;
    if ((rc = need_ctx(c, "delete")) != CRM_OK)
        return rc;
    if (!coll || !id)
        return crm_err_set(&c->err, CRM_BAD_REQUEST, "delete needs a collection and an id");
    if (if_rev < 0)
        return crm_err_set(&c->err, CRM_BAD_REQUEST, "if_rev must not be negative");
    memset(&w, 0, sizeof w);
    w.op = CRM_OP_DELETE;
    w.coll = coll;
    w.id = id;
    w.if_rev = if_rev;
    return do_write(c, &w, NULL);
}

static int api_query(crm_ctx *c, const char *coll, const crm_value *where, const char *order_by,
                     size_t limit, const char *after, crm_value **out)
{
    crm_query q;
    crm_value *records = NULL, *m;
    char *next = NULL;
    int rc;
    if (out)
        *out = NULL;
    if ((rc = need_ctx(c, "query")) != CRM_OK)
        return rc;
    if (!coll || !out)
        return crm_err_set(&c->err, CRM_BAD_REQUEST, "query needs a collection and out");
    memset(&q, 0, sizeof q);
    q.coll = coll;
    q.where = where;
    q.order_by = order_by;
    q.limit = limit;
    q.after = after;
    if ((rc = crm_txn_query(c->t, &q, &records, &next, &c->err)) != CRM_OK)
        return rc;
    m = crm_value_map();
    if (!m || crm_map_set(m, "records", records) ||
        crm_map_set(m, "next", next ? crm_value_cstr(next) : crm_value_nil())) {
        crm_value_free(m);
        free(next);
        return crm_err_set(&c->err, CRM_INTERNAL, "out of memory");
    }
    free(next);
    *out = m;
    return CRM_OK;
}

/* ---- errors ---- */

static int api_error(crm_ctx *c, int code, const char *fmt, ...)
{
    va_list ap;
    if (code <= CRM_OK || code >= CRM_CODE_LAST)
        code = CRM_INTERNAL;
    if (!c)
        return code;
    c->err.code = code;
    if (fmt) {
        va_start(ap, fmt);
        vsnprintf(c->err.msg, sizeof c->err.msg, fmt, ap);
        va_end(ap);
    } else {
        c->err.msg[0] = '\0';
    }
    return code;
}

static const char *api_errmsg(crm_ctx *c) { return c ? c->err.msg : ""; }

/* ---- registration ---- */

static int api_on(crm_plugin *p, const char *event, int phase, const char *name, crm_hook_fn fn,
                  void *ud)
{
    return p ? crm_bus_on(p, event, phase, name, fn, ud) : CRM_BAD_REQUEST;
}

static int api_on_timer(crm_plugin *p, const char *timer, crm_timer_fn fn, void *ud)
{
    return p ? crm_bus_on_timer(p, timer, fn, ud) : CRM_BAD_REQUEST;
}

static int api_method(crm_plugin *p, const char *method, crm_method_fn fn, void *ud)
{
    return p ? crm_bus_method(p, method, fn, ud) : CRM_BAD_REQUEST;
}

/* ---- timers, clock, caller ---- */

static const char *api_caller_user(crm_ctx *c) { return c ? c->user : NULL; }
static const char *api_caller_role(crm_ctx *c) { return c ? c->role : NULL; }

static int api_field_hidden(crm_ctx *c, const char *role, const char *coll, const char *field)
{
    const crm_value *h;
    if (!c || !role || !coll || !field)
        return 0;
    h = crm_role_hidden(crm_store_schema(c->b->s), role, coll);
    for (size_t i = 0; h && h->type == CRM_T_ARR && i < h->u.arr.n; i++)
        if (h->u.arr.items[i]->type == CRM_T_STR && strcmp(h->u.arr.items[i]->u.str.s, field) == 0)
            return 1;
    return 0;
}

/* ---- logging, configuration ---- */

static void api_log(crm_plugin *p, int level, const char *fmt, ...)
{
    va_list ap;
    if (!p || !fmt)
        return;
    va_start(ap, fmt);
    crm_bus_vlog(p->b, level, p->who, fmt, ap);
    va_end(ap);
}

static const crm_value *api_config(crm_plugin *p, const char *key)
{
    if (!p || !p->config)
        return NULL;
    if (!key)
        return p->config;
    return p->config->type == CRM_T_MAP ? crm_map_get(p->config, key) : NULL;
}

static const char *api_plugin_name(crm_plugin *p) { return p ? p->name : NULL; }

/* ---- per-call memory ---- */

#define ARENA_MAX ((size_t)256 << 20)

static void *api_alloc(crm_ctx *c, size_t n)
{
    struct crm_arena_block *blk;
    if (!c || n > ARENA_MAX)
        return NULL;
    if (!(blk = malloc(sizeof *blk + (n ? n : 1))))
        return NULL;
    blk->next = c->arena;
    c->arena = blk;
    return blk->data;
}

static crm_plugin *api_ctx_plugin(crm_ctx *c) { return c ? c->p : NULL; }

static const char *api_registration_error(crm_plugin *p) { return p ? p->err.msg : ""; }

static crm_plugin *api_write_origin(crm_ctx *c) { return c ? c->origin : NULL; }

/* ---- where-filters ---- */

/* The kernel's crm_filter borrows its where: the copy lives beside it. */
struct crm_where {
    crm_value *where; /* owned */
    crm_filter *f;    /* owned; borrows where and the schema (lives as long as the bus) */
};

static void api_where_free(crm_where *w)
{
    if (!w)
        return;
    crm_filter_free(w->f);
    crm_value_free(w->where);
    free(w);
}

static int api_where_compile(crm_plugin *p, const char *coll, const crm_value *where,
                             crm_where **out, crm_err *err)
{
    crm_err e;
    const crm_collection *c;
    crm_where *w;
    int rc;
    if (!err)
        err = &e;
    if (!out)
        return crm_err_set(err, CRM_BAD_REQUEST, "where_compile needs out");
    *out = NULL;
    if (!p || !coll)
        return crm_err_set(err, CRM_BAD_REQUEST, "where_compile needs a plugin and a collection");
    if (!(c = crm_schema_find(crm_store_schema(p->b->s), coll)))
        return crm_err_set(err, CRM_BAD_REQUEST, "no collection \"%.64s\"", coll);
    if (!(w = calloc(1, sizeof *w)) || (where && !(w->where = crm_value_dup(where)))) {
        free(w);
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    }
    if ((rc = crm_filter_compile(c, w->where, &w->f, err)) != CRM_OK) {
        api_where_free(w);
        return rc;
    }
    *out = w;
    return CRM_OK;
}

static int api_where_match(const crm_where *w, const crm_value *rec)
{
    if (!w || !rec || rec->type != CRM_T_MAP)
        return 0;
    return crm_filter_match(w->f, rec) ? 1 : 0;
}

/* api->now needs the bus but its signature has only a ctx; the clock is
 * the store's, so one bus per process is assumed for ctx-less calls. */
static crm_bus *clock_bus;

static int64_t api_now_real(crm_ctx *c)
{
    crm_bus *b = c ? c->b : clock_bus;
    if (c && c->t)
        return crm_txn_now(c->t);
    return b ? crm_store_now(b->s) : 0;
}

void crm_bus_api_init(crm_bus *b)
{
    crm_api *a = &b->api;
    memset(a, 0, sizeof *a);
    a->abi = CRM_PLUGIN_ABI;
    a->size = (uint32_t)sizeof *a;
    a->value_nil = crm_value_nil;
    a->value_bool = crm_value_bool;
    a->value_int = crm_value_int;
    a->value_num = api_num;
    a->value_str = api_str;
    a->value_arr = crm_value_arr;
    a->value_map = crm_value_map;
    a->value_dup = crm_value_dup;
    a->value_free = crm_value_free;
    a->map_set = api_map_set;
    a->map_get = api_map_get;
    a->map_del = api_map_del;
    a->arr_push = api_arr_push;
    a->to_json = api_to_json;
    a->from_json = api_from_json;
    a->mem_free = free;
    a->get = api_get;
    a->create = api_create;
    a->update = api_update;
    a->remove = api_remove;
    a->query = api_query;
    a->error = api_error;
    a->errmsg = api_errmsg;
    a->on = api_on;
    a->on_timer = api_on_timer;
    a->method = api_method;
    a->schedule = crm_bus_schedule;
    a->cancel = crm_bus_cancel;
    a->now = api_now_real;
    a->caller_user = api_caller_user;
    a->caller_role = api_caller_role;
    a->field_hidden = api_field_hidden;
    a->log = api_log;
    a->config = api_config;
    a->plugin_name = api_plugin_name;
    a->alloc = api_alloc;
    a->ctx_plugin = api_ctx_plugin;
    a->registration_error = api_registration_error;
    a->write_origin = api_write_origin;
    a->where_compile = api_where_compile;
    a->where_match = api_where_match;
    a->where_free = api_where_free;
    clock_bus = b;
}

const crm_api *crm_bus_api(crm_bus *b) { return &b->api; }

void crm_bus_api_forget(crm_bus *b)
{
    if (clock_bus == b)
        clock_bus = NULL;
}
