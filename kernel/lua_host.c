/*
 * lua_host -- scripts: loading, calls into them with their budgets, the
 * trampolines the bus calls, reload (see lua_host.h).
 *
 * Every call into Lua goes through script_call: it pushes a frame (the
 * ctx that crm.* functions use), enters the budget, runs a C body under
 * lua_pcall with a message handler that adds file:line, and leaves the
 * budget (a full collection after a break).  Bodies may raise freely;
 * they never hold malloc'd memory across a raise (lua_api.c's rule too).
 */
#include "lua_host_int.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <lauxlib.h>

#include "codec.h"
#include "lua_value.h"

struct crm_lua {
    crm_bus *b;
    const crm_api *api;
    char *dir;
    crm_lua_opts o;
    lua_script **scripts;
    size_t n;
};

#define MAX_SCRIPT_BYTES ((size_t)4 << 20)

void crm_lua_opts_default(crm_lua_opts *o)
{
    o->max_instructions = 50000000;
    o->max_memory = (size_t)64 << 20;
    o->max_ms = 1000;
}

lua_script *crm_lua_script_of(lua_State *L) { return crm_lua_guard_of(L)->host; }

/* ---- calls ---- */

/* "name.lua:12: ..." already says where; messages raised without a
 * position (error("x", 0), crm.* codes) get the nearest Lua line. */
static int has_position(const char *m)
{
    const char *c = strchr(m, ':');
    if (!c || c == m)
        return 0;
    for (const char *p = m; p < c; p++)
        if (*p == ' ' || *p == '\n')
            return 0;
    if (c[1] < '0' || c[1] > '9')
        return 0;
    for (c++; *c >= '0' && *c <= '9'; c++)
        ;
    return *c == ':';
}

static int msgh(lua_State *L)
{
    lua_script *sc = crm_lua_script_of(L);
    const char *m;
    char where[96];
    if (sc->g.broken) {
        lua_pushstring(L, sc->g.why);
        return 1;
    }
    if (lua_type(L, 1) == LUA_TSTRING) {
        m = lua_tostring(L, 1);
    } else if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) {
        m = lua_tostring(L, -1);
    } else if (lua_type(L, 1) == LUA_TTABLE &&
               lua_getfield(L, 1, "message") == LUA_TSTRING) { /* error({message = ...}) */
        m = lua_tostring(L, -1);
    } else if (lua_type(L, 1) == LUA_TTABLE) { /* any other table: its JSON */
        crm_value *v = NULL;
        char why[120], shown[200], *json = NULL;
        if (crm_lua_to_value(L, 1, "error", &v, why, sizeof why) == 0)
            json = crm_json_encode(v, NULL);
        crm_value_free(v);
        if (json) /* lua_pushfstring has no precision: cut it here */
            snprintf(shown, sizeof shown, "%.180s%s", json, strlen(json) > 180 ? "..." : "");
        m = lua_pushstring(L, json ? shown : "(error object is a table value)");
        free(json);
    } else {
        m = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    if (has_position(m)) {
        lua_pushstring(L, m);
        return 1;
    }
    crm_lua_where(L, 1, where, sizeof where);
    lua_pushfstring(L, "%s%s%s", where, where[0] ? " " : "", m);
    return 1;
}

/* Runs body(arg) as one call of sc in frame fr.  Returns the Lua status;
 * on failure msg gets "file:line: what happened". */
static int script_call(lua_script *sc, lua_frame *fr, lua_CFunction body, void *arg, char *msg,
                       size_t cap)
{
    lua_State *L = sc->frame && sc->active ? sc->active : sc->L;
    lua_State *saved_active = sc->active;
    int status, base;

    fr->prev = sc->frame;
    sc->frame = fr;
    sc->active = NULL;
    crm_lua_guard_enter(&sc->g, L);
    base = lua_gettop(L);
    if (!lua_checkstack(L, 4)) {
        status = LUA_ERRMEM;
    } else {
        lua_pushcfunction(L, msgh);
        lua_pushcfunction(L, body);
        lua_pushlightuserdata(L, arg);
        status = lua_pcall(L, 1, 0, base + 1);
    }
    if (status != LUA_OK) {
        const char *m = status == LUA_ERRMEM ? NULL : lua_tostring(L, -1);
        if (sc->g.broken && sc->g.why[0]) {
            snprintf(msg, cap, "%s", sc->g.why);
        } else if (status == LUA_ERRMEM) {
            if (sc->g.last_line > 0)
                snprintf(sc->g.why, sizeof sc->g.why, "%s:%d: memory budget exhausted (%zu KiB)",
                         sc->g.last_src, sc->g.last_line, sc->g.max_memory >> 10);
            else
                snprintf(sc->g.why, sizeof sc->g.why, "%s: memory budget exhausted (%zu KiB)",
                         sc->name, sc->g.max_memory >> 10);
            snprintf(msg, cap, "%s", sc->g.why);
        } else {
            snprintf(msg, cap, "%s", m ? m : "error");
        }
        /* every message names the script */
        if (strncmp(msg, sc->name, strlen(sc->name)) != 0) {
            size_t nl = strlen(sc->name) + 2, ml = strlen(msg);
            if (nl + ml >= cap)
                ml = cap > nl + 1 ? cap - nl - 1 : 0;
            memmove(msg + nl, msg, ml);
            memcpy(msg, sc->name, nl - 2);
            memcpy(msg + nl - 2, ": ", 2);
            msg[nl + ml] = '\0';
        }
    }
    lua_settop(L, base);
    crm_lua_guard_leave(&sc->g, L, status);
    sc->frame = fr->prev;
    sc->active = saved_active;
    return status;
}

/* ---- trampolines ---- */

typedef struct hook_call {
    lua_reg *r;
    crm_event *ev;
    crm_ctx *ctx;
} hook_call;

static int hook_body(lua_State *L)
{
    hook_call *hc = lua_touserdata(L, 1);
    crm_event *ev = hc->ev;
    crm_value *nv = NULL;
    char err[200];
    int evi;

    lua_createtable(L, 0, 7);
    evi = lua_gettop(L);
    lua_pushstring(L, ev->collection);
    lua_setfield(L, evi, "collection");
    lua_pushstring(L, ev->op);
    lua_setfield(L, evi, "op");
    lua_pushstring(L, ev->id);
    lua_setfield(L, evi, "id");
    if (ev->record) {
        crm_lua_push_value(L, ev->record);
        lua_setfield(L, evi, "record");
    }
    if (ev->prev) {
        crm_lua_push_value(L, ev->prev);
        lua_setfield(L, evi, "prev");
    }
    lua_pushinteger(L, (lua_Integer)ev->seq);
    lua_setfield(L, evi, "seq");
    lua_pushstring(L, ev->phase == CRM_BEFORE ? "before" : "after");
    lua_setfield(L, evi, "phase");
    if (ev->phase == CRM_BEFORE) { /* whose write: a plugin or script name; nil = a client */
        const crm_api *api = hc->r->sc->api;
        crm_plugin *origin = api->write_origin(hc->ctx);
        if (origin) {
            lua_pushstring(L, api->plugin_name(origin));
            lua_setfield(L, evi, "origin");
        }
    }

    lua_rawgeti(L, LUA_REGISTRYINDEX, hc->r->fnref);
    lua_pushvalue(L, evi);
    lua_call(L, 1, 0);

    if (ev->phase != CRM_BEFORE || !ev->record)
        return 0;
    /* copy ev.record back into the write's record (replaced whole, so
     * in-place edits, new fields and removed fields all count) */
    lua_getfield(L, evi, "record");
    if (lua_type(L, -1) != LUA_TTABLE)
        return luaL_error(L, "ev.record must stay a table (got %s)", luaL_typename(L, -1));
    if (crm_lua_to_value(L, -1, "ev.record", &nv, err, sizeof err) != 0)
        return luaL_error(L, "%s", err);
    if (nv->type != CRM_T_MAP) {
        crm_value_free(nv);
        return luaL_error(L, "ev.record must stay a map");
    }
    {
        crm_value old = *ev->record;
        *ev->record = *nv;
        *nv = old;
        crm_value_free(nv); /* the old contents */
    }
    return 0;
}

/* A script error on a path where only the client would see it (a
 * before-hook's or a method's: after-hooks and timers are retried and
 * dead-lettered, and say so there) goes to the log too, at most
 * ERR_LOG_MAX lines per script a minute; the next line after a full
 * minute says how many were left out. */
#define ERR_LOG_MAX 10
#define ERR_LOG_WINDOW_MS 60000

static void log_script_error(lua_script *sc, const char *what, const char *msg)
{
    struct timespec ts;
    int64_t now;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* not the server clock: a test may run that faster */
    now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (now - sc->err_window_start >= ERR_LOG_WINDOW_MS) {
        if (sc->err_suppressed)
            sc->api->log(sc->owner, CRM_LOG_ERROR,
                         "%ld more script errors of %s were not logged (at most %d a minute)",
                         sc->err_suppressed, sc->name, ERR_LOG_MAX);
        sc->err_window_start = now;
        sc->err_logged = 0;
        sc->err_suppressed = 0;
    }
    if (sc->err_logged >= ERR_LOG_MAX) {
        sc->err_suppressed++;
        return;
    }
    sc->err_logged++;
    sc->api->log(sc->owner, CRM_LOG_ERROR, "script error in a %s: %s", what, msg);
}

static int fail_call(lua_script *sc, crm_ctx *ctx, lua_frame *fr, const char *msg)
{
    if (fr->rejected && !sc->g.broken)
        return sc->api->error(ctx, CRM_REJECTED, "%s", fr->reject_msg);
    if (fr->kind == LFRAME_BEFORE || fr->kind == LFRAME_METHOD)
        log_script_error(sc, fr->kind == LFRAME_BEFORE ? "before-hook" : "method", msg);
    return sc->api->error(ctx, CRM_SCRIPT_ERROR, "%s", msg);
}

int crm_lua_tramp_hook(crm_ctx *ctx, crm_event *ev, void *ud)
{
    lua_reg *r = ud;
    lua_script *sc = r->sc;
    lua_frame fr;
    hook_call hc = {r, ev, ctx};
    char msg[256];
    memset(&fr, 0, sizeof fr);
    fr.ctx = ctx;
    fr.kind = ev->phase == CRM_BEFORE ? LFRAME_BEFORE : LFRAME_AFTER;
    if (script_call(sc, &fr, hook_body, &hc, msg, sizeof msg) == LUA_OK && !fr.rejected)
        return CRM_OK;
    return fail_call(sc, ctx, &fr, msg);
}

typedef struct timer_call {
    lua_reg *r;
    const char *name;
    const crm_value *payload;
} timer_call;

static int timer_body(lua_State *L)
{
    timer_call *tc = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, tc->r->fnref);
    crm_lua_push_value(L, tc->payload);
    lua_pushstring(L, tc->name);
    lua_call(L, 2, 0);
    return 0;
}

int crm_lua_tramp_timer(crm_ctx *ctx, const char *name, const crm_value *payload, void *ud)
{
    lua_reg *r = ud;
    lua_frame fr;
    timer_call tc = {r, name, payload};
    char msg[256];
    memset(&fr, 0, sizeof fr);
    fr.ctx = ctx;
    fr.kind = LFRAME_TIMER;
    if (script_call(r->sc, &fr, timer_body, &tc, msg, sizeof msg) == LUA_OK)
        return CRM_OK;
    return fail_call(r->sc, ctx, &fr, msg);
}

typedef struct method_call {
    lua_reg *r;
    crm_ctx *ctx;
    const crm_value *params;
    crm_value *result;
} method_call;

static int method_body(lua_State *L)
{
    method_call *mc = lua_touserdata(L, 1);
    const crm_api *api = mc->r->sc->api;
    const char *user = api->caller_user(mc->ctx), *role = api->caller_role(mc->ctx);
    char err[200];
    lua_rawgeti(L, LUA_REGISTRYINDEX, mc->r->fnref);
    crm_lua_push_value(L, mc->params);
    lua_createtable(L, 0, 2);
    if (user) {
        lua_pushstring(L, user);
        lua_setfield(L, -2, "user");
    }
    if (role) {
        lua_pushstring(L, role);
        lua_setfield(L, -2, "role");
    }
    lua_call(L, 2, 1);
    if (crm_lua_to_value(L, -1, "result", &mc->result, err, sizeof err) != 0)
        return luaL_error(L, "%s", err);
    return 0; /* nothing raises after the result is held */
}

int crm_lua_tramp_method(crm_ctx *ctx, const crm_value *params, crm_value **result, void *ud)
{
    lua_reg *r = ud;
    lua_frame fr;
    method_call mc = {r, ctx, params, NULL};
    char msg[256];
    memset(&fr, 0, sizeof fr);
    fr.ctx = ctx;
    fr.kind = LFRAME_METHOD;
    *result = NULL;
    if (script_call(r->sc, &fr, method_body, &mc, msg, sizeof msg) == LUA_OK && !fr.rejected) {
        if (mc.result && mc.result->type == CRM_T_NIL) {
            crm_value_free(mc.result);
            mc.result = NULL;
        }
        *result = mc.result;
        return CRM_OK;
    }
    crm_value_free(mc.result);
    return fail_call(r->sc, ctx, &fr, msg);
}

/* ---- scripts ---- */

static void script_free(lua_script *sc)
{
    if (!sc)
        return;
    crm_bus_owner_free(sc->owner); /* no trampoline can run after this */
    crm_lua_guard_close(&sc->g, sc->L);
    for (lua_reg *r = sc->regs, *next; r; r = next) {
        next = r->next;
        free(r);
    }
    free(sc);
}

typedef struct load_call {
    const char *buf;
    size_t len;
    const char *chunkname;
} load_call;

static int load_body(lua_State *L)
{
    load_call *lc = lua_touserdata(L, 1);
    if (luaL_loadbufferx(L, lc->buf, lc->len, lc->chunkname, "t") != LUA_OK)
        return lua_error(L); /* "lifecycle.lua:3: syntax error near ..." */
    lua_call(L, 0, 0);
    return 0;
}

static int open_crm_body(lua_State *L)
{
    crm_lua_value_init(L);
    crm_lua_open_crm(L);
    return 0;
}

static char *read_file(const char *path, size_t *len, crm_err *err, const char *name)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0) {
        crm_err_set(err, CRM_UNAVAILABLE, "%s: %s", name, strerror(errno));
        if (f)
            fclose(f);
        return NULL;
    }
    if ((size_t)st.st_size > MAX_SCRIPT_BYTES) {
        fclose(f);
        crm_err_set(err, CRM_SCRIPT_ERROR, "%s: larger than %zu bytes", name, MAX_SCRIPT_BYTES);
        return NULL;
    }
    if (!(buf = malloc((size_t)st.st_size + 1))) {
        fclose(f);
        crm_err_set(err, CRM_INTERNAL, "out of memory");
        return NULL;
    }
    *len = fread(buf, 1, (size_t)st.st_size, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

static int script_load(crm_lua *l, const char *name, lua_script **out, crm_err *err)
{
    lua_script *sc = calloc(1, sizeof *sc);
    char path[4096], chunkname[140], msg[256];
    size_t len = 0;
    char *buf;
    lua_frame fr;
    load_call lc;
    int rc = CRM_OK;

    *out = NULL;
    if (!sc)
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    snprintf(sc->name, sizeof sc->name, "%s", name);
    snprintf(path, sizeof path, "%s/%s", l->dir, name);
    snprintf(chunkname, sizeof chunkname, "=%s", name);
    sc->host = l;
    sc->api = l->api;
    sc->g.max_instructions = l->o.max_instructions;
    sc->g.max_memory = l->o.max_memory;
    sc->g.max_ms = l->o.max_ms;
    sc->g.host = sc;
    if (!(buf = read_file(path, &len, err, name))) {
        free(sc);
        return err ? err->code : CRM_UNAVAILABLE;
    }
    if (!(sc->L = crm_lua_sandbox_new(&sc->g)) ||
        !(sc->owner = crm_bus_owner_new(l->b, "script", name, NULL))) {
        rc = crm_err_set(err, CRM_INTERNAL, "%s: out of memory", name);
        goto fail;
    }
    crm_bus_owner_set_host(sc->owner, sc);

    memset(&fr, 0, sizeof fr);
    fr.kind = LFRAME_LOAD;
    if (script_call(sc, &fr, open_crm_body, NULL, msg, sizeof msg) != LUA_OK) {
        rc = crm_err_set(err, CRM_INTERNAL, "%s", msg);
        goto fail;
    }
    lc.buf = buf;
    lc.len = len;
    lc.chunkname = chunkname;
    memset(&fr, 0, sizeof fr);
    fr.kind = LFRAME_LOAD;
    if (script_call(sc, &fr, load_body, &lc, msg, sizeof msg) != LUA_OK) {
        rc = crm_err_set(err, CRM_SCRIPT_ERROR, "%s", msg);
        goto fail;
    }
    crm_bus_owner_seal(sc->owner);
    free(buf);
    *out = sc;
    return CRM_OK;
fail:
    free(buf);
    script_free(sc);
    return rc;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_set(lua_script **set, size_t n)
{
    /* reverse order: the last loaded goes first */
    while (n > 0)
        script_free(set[--n]);
    free(set);
}

/* Loads the folder into a new set; on failure nothing of it stays. */
static int load_set(crm_lua *l, lua_script ***out, size_t *nout, crm_err *err)
{
    DIR *d = opendir(l->dir);
    struct dirent *de;
    char **names = NULL;
    size_t n = 0, cap = 0, loaded = 0;
    lua_script **set = NULL;
    int rc = CRM_OK;

    *out = NULL;
    *nout = 0;
    if (!d) {
        if (errno == ENOENT)
            return CRM_OK;
        return crm_err_set(err, CRM_UNAVAILABLE, "%s: %s", l->dir, strerror(errno));
    }
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (de->d_name[0] == '.' || len < 5 || strcmp(de->d_name + len - 4, ".lua") != 0)
            continue;
        if (n == cap) {
            char **nn = realloc(names, (cap = cap ? cap * 2 : 16) * sizeof *names);
            if (!nn) {
                rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
                goto out;
            }
            names = nn;
        }
        if (!(names[n] = strdup(de->d_name))) {
            rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
            goto out;
        }
        n++;
    }
    if (n == 0)
        goto out;
    qsort(names, n, sizeof *names, by_name);
    if (!(set = calloc(n, sizeof *set))) {
        rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
        goto out;
    }
    for (loaded = 0; loaded < n; loaded++)
        if ((rc = script_load(l, names[loaded], &set[loaded], err)) != CRM_OK)
            break;
    if (rc != CRM_OK) {
        free_set(set, loaded);
        set = NULL;
    } else {
        *out = set;
        *nout = n;
    }
out:
    closedir(d);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

int crm_lua_open(crm_bus *b, const char *dir, const crm_lua_opts *opts, crm_lua **out,
                 crm_err *err)
{
    crm_lua *l = calloc(1, sizeof *l);
    int rc;
    *out = NULL;
    if (!l || !(l->dir = strdup(dir))) {
        free(l);
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    }
    l->b = b;
    l->api = crm_bus_api(b);
    if (opts)
        l->o = *opts;
    else
        crm_lua_opts_default(&l->o);
    if ((rc = load_set(l, &l->scripts, &l->n, err)) != CRM_OK) {
        free(l->dir);
        free(l);
        return rc;
    }
    *out = l;
    return CRM_OK;
}

int crm_lua_reload(crm_lua *l, crm_err *err)
{
    lua_script **set;
    size_t n;
    int rc;
    for (size_t i = 0; i < l->n; i++)
        if (l->scripts[i]->g.depth > 0)
            return crm_err_set(err, CRM_BAD_REQUEST, "a reload cannot run inside a script call");
    /* the new set registers while the old one still runs (the bus lets a
     * file's new life take over its old names); only then does the old go */
    if ((rc = load_set(l, &set, &n, err)) != CRM_OK)
        return rc;
    free_set(l->scripts, l->n);
    l->scripts = set;
    l->n = n;
    return CRM_OK;
}

void crm_lua_close(crm_lua *l)
{
    if (!l)
        return;
    free_set(l->scripts, l->n);
    free(l->dir);
    free(l);
}

size_t crm_lua_count(const crm_lua *l) { return l ? l->n : 0; }

const char *crm_lua_name(const crm_lua *l, size_t i)
{
    return l && i < l->n ? l->scripts[i]->name : NULL;
}

size_t crm_lua_memory(const crm_lua *l, const char *name)
{
    size_t total = 0;
    for (size_t i = 0; l && i < l->n; i++)
        if (!name || strcmp(name, l->scripts[i]->name) == 0)
            total += l->scripts[i]->g.mem;
    return total;
}
