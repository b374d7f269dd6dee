/*
 * bus -- registrations, before-hook dispatch, after-hook consumers, timers,
 * methods (bus.h is the contract).  The crm_api table is in bus_api.c.
 *
 * Why after-hooks run inside the group commit: a consumer's cursor step and
 * the writes its hook made must be one atomic change, or a crash between
 * them would run the hook twice (or lose it).  So each round is a unit of
 * the batch: per consumer, the feed entries past its cursor are read in the
 * batch's own transaction, each matching entry runs its hook in a nested
 * transaction, and the cursor is written last; all of it commits with the
 * client writes of the same loop turn, in the same fsync.
 */
#include "bus_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "crashguard.h"
#include "keys.h"
#include "log.h"

void crm_bus_opts_default(crm_bus_opts *o)
{
    memset(o, 0, sizeof *o);
    o->max_attempts = 5;
    o->backoff_ms = 50;
    o->max_per_round = 512;
    o->round_budget_ms = 10;
    o->time_scale = 1.0;
}

/* ---- logging ---- */

/* kernel/log.c's line, its event the kind of owner: "plugin", "script",
 * "bus", "plugins" (the loader); who names it ("plugin loyalty"). */
static void default_log(void *ud, int level, const char *who, const char *msg)
{
    crm_value *f = crm_value_map();
    size_t kind = strcspn(who ? who : "", " ");
    char event[32];
    (void)ud;
    snprintf(event, sizeof event, "%.*s", (int)(kind ? kind : 3), kind ? who : "bus");
    if (f && (crm_map_set(f, "who", crm_value_cstr(who ? who : "")) != 0 ||
              crm_map_set(f, "msg", crm_value_cstr(msg)) != 0)) {
        crm_value_free(f);
        f = NULL;
    }
    if (f)
        crm_log_fields(level, event, f);
    else
        crm_log(level, event, "%s", msg);
}

void crm_bus_vlog(crm_bus *b, int level, const char *who, const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (b && b->o.log)
        b->o.log(b->o.log_ud, level, who, msg);
    else
        default_log(NULL, level, who, msg);
}

void crm_bus_log(crm_bus *b, int level, const char *who, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    crm_bus_vlog(b, level, who, fmt, ap);
    va_end(ap);
}

/* ---- ctx ---- */

void crm_ctx_init(crm_ctx *c, crm_bus *b, crm_plugin *p, crm_txn *t, const char *user,
                  const char *role)
{
    memset(c, 0, sizeof *c);
    c->b = b;
    c->p = p;
    c->t = t;
    c->user = user;
    c->role = role;
    /* whose write this is, when c is a before-hook's: the innermost owner
     * already running (none: a client's write) */
    c->origin = b->nrunning ? b->running[b->nrunning - 1] : NULL;
    /* a crash from here on is p's (R19) */
    c->crash_prev = crm_crashguard_enter(p ? p->guard : NULL);
    if (b->nrunning < (int)(sizeof b->running / sizeof *b->running))
        b->running[b->nrunning] = p;
    b->nrunning++;
}

void crm_ctx_done(crm_ctx *c)
{
    if (c->b && c->b->nrunning > 0)
        c->b->nrunning--;
    if (c->b)
        crm_crashguard_leave(c->crash_prev);
    while (c->arena) {
        struct crm_arena_block *next = c->arena->next;
        free(c->arena);
        c->arena = next;
    }
}

/* A hook's failure as the bus reports it: the hook's own message, or a
 * generic one naming the owner when it gave none. */
static int ctx_fail(crm_ctx *c, int rc, crm_err *err)
{
    if (c->err.code != CRM_OK && c->err.msg[0])
        *err = c->err;
    else
        crm_err_set(err, rc, "%s %s failed with %s", c->p->kind, c->p->name, crm_code_name(rc));
    err->code = rc;
    return rc;
}

/* ---- owners ---- */

crm_plugin *crm_bus_owner_new(crm_bus *b, const char *kind, const char *name, crm_value *config)
{
    crm_plugin *p = calloc(1, sizeof *p);
    if (!p || !(p->name = strdup(name))) {
        free(p);
        crm_value_free(config);
        return NULL;
    }
    p->b = b;
    snprintf(p->kind, sizeof p->kind, "%s", kind);
    snprintf(p->who, sizeof p->who, "%s %s", kind, name);
    p->config = config;
    p->next = b->owners;
    b->owners = p;
    return p;
}

static void update_before_fn(crm_bus *b);
static void update_floor(crm_bus *b);

/* Removes p's entries from a list of timer handlers or methods. */
static void drop_named(crm_named **list, const crm_plugin *p)
{
    while (*list) {
        if ((*list)->owner == p) {
            crm_named *dead = *list;
            *list = dead->next;
            free(dead->name);
            free(dead);
        } else {
            list = &(*list)->next;
        }
    }
}

void crm_bus_owner_free(crm_plugin *p)
{
    crm_bus *b;
    if (!p)
        return;
    b = p->b;
    for (crm_hook **h = &b->hooks; *h;) {
        if ((*h)->owner == p) {
            crm_hook *dead = *h;
            *h = dead->next;
            free(dead->name);
            free(dead);
        } else {
            h = &(*h)->next;
        }
    }
    drop_named(&b->timers, p);
    drop_named(&b->methods, p);
    for (crm_plugin **o = &b->owners; *o; o = &(*o)->next)
        if (*o == p) {
            *o = p->next;
            break;
        }
    update_before_fn(b);
    update_floor(b);
    crm_value_free(p->config);
    free(p->name);
    free(p);
}

void crm_bus_owner_set_host(crm_plugin *p, void *host) { p->host = host; }
void crm_bus_owner_set_guard(crm_plugin *p, const char *name) { p->guard = name; }
void *crm_bus_owner_host(crm_plugin *p) { return p->host; }
crm_bus *crm_bus_owner_bus(crm_plugin *p) { return p->b; }
void crm_bus_owner_seal(crm_plugin *p) { p->sealed = 1; }
const char *crm_bus_owner_errmsg(crm_plugin *p) { return p->err.msg; }

/* ---- registration ---- */

static int reg_fail(crm_plugin *p, int code, const char *fmt, ...) CRM_PRINTF(3, 4);
static int reg_fail(crm_plugin *p, int code, const char *fmt, ...)
{
    va_list ap;
    p->err.code = code;
    va_start(ap, fmt);
    vsnprintf(p->err.msg, sizeof p->err.msg, fmt, ap);
    va_end(ap);
    return code;
}

/* Another owner holds name: a clash unless that owner is the same plugin or
 * script in its previous life (a reload registers the new set before the
 * old one goes). */
static int clash(const crm_plugin *p, const crm_plugin *other)
{
    return other != p && strcmp(other->name, p->name) != 0;
}

int crm_bus_on(crm_plugin *p, const char *event, int phase, const char *name, crm_hook_fn fn,
               void *ud)
{
    crm_bus *b = p->b;
    const char *dot = event ? strrchr(event, '.') : NULL;
    crm_hook *h, **tail;
    char coll[CRM_BUS_NAME_MAX];
    int n = 1;

    if (p->sealed)
        return reg_fail(p, CRM_BAD_REQUEST, "hooks are registered while loading, not later");
    if (!fn)
        return reg_fail(p, CRM_BAD_REQUEST, "a hook needs a function");
    if (!dot || dot == event || (size_t)(dot - event) >= sizeof coll)
        return reg_fail(p, CRM_BAD_REQUEST, "event \"%s\" must be \"collection.op\"",
                        event ? event : "(null)");
    memcpy(coll, event, (size_t)(dot - event));
    coll[dot - event] = '\0';
    /* "*" stands for every collection: one consumer of the feed, read once,
     * instead of one per collection (each reading the whole feed) */
    if (strcmp(coll, "*") != 0 && !crm_schema_find(crm_store_schema(b->s), coll))
        return reg_fail(p, CRM_BAD_REQUEST, "event \"%s\": no collection \"%s\"", event, coll);
    if (strcmp(dot + 1, "create") && strcmp(dot + 1, "update") && strcmp(dot + 1, "delete") &&
        strcmp(dot + 1, "*"))
        return reg_fail(p, CRM_BAD_REQUEST,
                        "event \"%s\": op must be create, update, delete or *", event);
    if (phase != CRM_BEFORE && phase != CRM_AFTER)
        return reg_fail(p, CRM_BAD_REQUEST, "phase must be before or after");
    if (!(h = calloc(1, sizeof *h)))
        return reg_fail(p, CRM_INTERNAL, "out of memory");
    h->owner = p;
    snprintf(h->coll, sizeof h->coll, "%s", coll);
    snprintf(h->op, sizeof h->op, "%s", dot + 1);
    h->phase = phase;
    h->fn = fn;
    h->ud = ud;
    if (phase == CRM_AFTER) {
        /* The durable name is scoped by the owner, so two scripts never
         * share a cursor, and a reload of the same file finds its own. */
        char full[CRM_BUS_NAME_MAX * 2];
        for (;;) {
            int dup = 0;
            if (name)
                snprintf(full, sizeof full, "%s/%s", p->name, name);
            else if (n == 1)
                snprintf(full, sizeof full, "%s/%s", p->name, event);
            else
                snprintf(full, sizeof full, "%s/%s#%d", p->name, event, n);
            for (crm_hook *o = b->hooks; o && !dup; o = o->next)
                dup = o->owner == p && o->name && strcmp(o->name, full) == 0;
            if (!dup)
                break;
            if (name) {
                free(h);
                return reg_fail(p, CRM_CONFLICT, "after-hook name \"%s\" is used twice", name);
            }
            n++;
        }
        if (!(h->name = strdup(full))) {
            free(h);
            return reg_fail(p, CRM_INTERNAL, "out of memory");
        }
        if (crm_bus_cursor_load(b, h) != CRM_OK) {
            free(h->name);
            free(h);
            return reg_fail(p, CRM_UNAVAILABLE, "cannot read the cursor of %s", full);
        }
    }
    for (tail = &b->hooks; *tail; tail = &(*tail)->next)
        ;
    *tail = h; /* registration order is dispatch order */
    update_before_fn(b);
    update_floor(b);
    return CRM_OK;
}

static int add_named(crm_plugin *p, crm_named **list, const char *what, const char *name,
                     void *fn, void *ud)
{
    crm_named *x, **tail;
    if (p->sealed)
        return reg_fail(p, CRM_BAD_REQUEST, "%ss are registered while loading, not later", what);
    if (!fn || !name || !*name || strlen(name) >= CRM_BUS_NAME_MAX)
        return reg_fail(p, CRM_BAD_REQUEST, "a %s needs a name (1-%d bytes) and a function", what,
                        CRM_BUS_NAME_MAX - 1);
    for (x = *list; x; x = x->next)
        if (strcmp(x->name, name) == 0 && (x->owner == p || clash(p, x->owner)))
            return reg_fail(p, CRM_CONFLICT, "%s \"%s\" is already registered by %s", what, name,
                            x->owner->who);
    if (!(x = calloc(1, sizeof *x)) || !(x->name = strdup(name))) {
        free(x);
        return reg_fail(p, CRM_INTERNAL, "out of memory");
    }
    x->owner = p;
    x->fn = fn;
    x->ud = ud;
    for (tail = list; *tail; tail = &(*tail)->next)
        ;
    *tail = x;
    return CRM_OK;
}

int crm_bus_on_timer(crm_plugin *p, const char *timer, crm_timer_fn fn, void *ud)
{
    return add_named(p, &p->b->timers, "timer", timer, (void *)fn, ud);
}

int crm_bus_method(crm_plugin *p, const char *method, crm_method_fn fn, void *ud)
{
    return add_named(p, &p->b->methods, "method", method, (void *)fn, ud);
}

/* The newest registration wins: during a reload that is the new set. */
static crm_named *find_named(crm_named *list, const char *name)
{
    crm_named *found = NULL;
    for (; list; list = list->next)
        if (strcmp(list->name, name) == 0)
            found = list;
    return found;
}

/* ---- before-hooks ---- */

static int hook_matches(const crm_hook *h, const char *coll, const char *op)
{
    return (strcmp(h->coll, "*") == 0 || strcmp(h->coll, coll) == 0) &&
           (h->op[0] == '*' || strcmp(h->op, op) == 0);
}

static int before_dispatch(void *ud, crm_txn *t, crm_change *ch, crm_err *err)
{
    crm_bus *b = ud;
    const char *op = crm_op_name(ch->op);
    for (crm_hook *h = b->hooks; h; h = h->next) {
        crm_ctx c;
        crm_event ev;
        int rc;
        if (h->phase != CRM_BEFORE || !hook_matches(h, ch->coll, op))
            continue;
        ev.collection = ch->coll;
        ev.op = op;
        ev.id = ch->id;
        ev.record = ch->record;
        ev.prev = ch->prev;
        ev.seq = 0;
        ev.phase = CRM_BEFORE;
        crm_ctx_init(&c, b, h->owner, t, NULL, NULL);
        if (!c.origin) /* a client's write: the hook may ask who (caller_role) */
            crm_txn_actor(t, &c.user, &c.role);
        rc = h->fn(&c, &ev, h->ud);
        if (rc != CRM_OK)
            ctx_fail(&c, rc, err);
        crm_ctx_done(&c);
        if (rc != CRM_OK)
            return rc;
    }
    return CRM_OK;
}

/* Writes without before-hooks take the store's faster path (no nested
 * transaction per write), so the dispatcher is installed only when needed. */
static void update_before_fn(crm_bus *b)
{
    int any = 0;
    for (crm_hook *h = b->hooks; h && !any; h = h->next)
        any = h->phase == CRM_BEFORE;
    crm_store_set_before(b->s, any ? before_dispatch : NULL, any ? b : NULL);
}

/* ---- bus ---- */

int crm_bus_new(crm_store *s, const crm_bus_opts *opts, crm_bus **out, crm_err *err)
{
    crm_bus *b;
    *out = NULL;
    if (!crm_schema_find(crm_store_schema(s), CRM_DEAD_LETTERS))
        return crm_err_set(err, CRM_INTERNAL, "the schema has no %s collection", CRM_DEAD_LETTERS);
    if (!(b = calloc(1, sizeof *b)))
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    b->s = s;
    if (opts)
        b->o = *opts;
    else
        crm_bus_opts_default(&b->o);
    if (b->o.max_attempts < 1)
        b->o.max_attempts = 1;
    if (b->o.backoff_ms < 1)
        b->o.backoff_ms = 1;
    if (!b->o.max_per_round)
        b->o.max_per_round = 512;
    if (!(b->o.time_scale > 0))
        b->o.time_scale = 1.0;
    b->unit.fn = crm_bus_round;
    b->unit.fn_ud = b;
    b->timer_ctr = (uint64_t)crm_store_now(s) << 16;
    b->next_due = crm_bus_timers_first_due(b);
    b->sched_min = INT64_MAX;
    crm_bus_api_init(b);
    *out = b;
    return CRM_OK;
}

void crm_bus_free(crm_bus *b)
{
    if (!b)
        return;
    while (b->owners)
        crm_bus_owner_free(b->owners);
    crm_store_set_before(b->s, NULL, NULL);
    crm_store_set_feed_floor(b->s, UINT64_MAX);
    crm_bus_timers_forget(b);
    crm_bus_api_forget(b);
    free(b);
}

/* ---- after-hook cursors ---- */

int crm_bus_cursor_load(crm_bus *b, crm_hook *h)
{
    crm_txn *t;
    crm_err e;
    const void *v;
    size_t vl;
    int rc;
    /* the same consumer in its previous life (a reload) knows it best */
    for (crm_hook *o = b->hooks; o; o = o->next)
        if (o->name && strcmp(o->name, h->name) == 0) {
            h->cursor = o->cursor;
            return CRM_OK;
        }
    if ((rc = crm_store_begin_read(b->s, &t, &e)) != CRM_OK)
        return rc;
    rc = crm_txn_aux_get(t, CRM_AUX_CURSORS, h->name, strlen(h->name), &v, &vl, &e);
    if (rc == CRM_OK && vl == 8) {
        h->cursor = crm_be64_get(v);
        crm_txn_end(t);
        return CRM_OK;
    }
    crm_txn_end(t);
    if (rc != CRM_OK && rc != CRM_NOT_FOUND)
        return rc;
    /* A new consumer starts at the end of the feed, durably, so a crash
     * before its first round cannot make it skip what came in between. */
    {
        uint8_t be[8];
        h->cursor = crm_store_last_seq(b->s);
        crm_be64_put(be, h->cursor);
        return crm_store_aux_put(b->s, CRM_AUX_CURSORS, h->name, strlen(h->name), be, 8, &e);
    }
}

/* The slowest after-hook consumer's cursor (UINT64_MAX with none). */
static uint64_t slowest_cursor(const crm_bus *b)
{
    uint64_t min = UINT64_MAX;
    for (const crm_hook *h = b->hooks; h; h = h->next)
        if (h->phase == CRM_AFTER && h->cursor < min)
            min = h->cursor;
    return min;
}

static void update_floor(crm_bus *b)
{
    crm_store_set_feed_floor(b->s, slowest_cursor(b));
}

/* ---- the round: after-hooks and timers in one unit of the batch ---- */

typedef struct pending_ev {
    uint64_t seq;
    int depth;
    crm_value *entry;             /* the decoded feed entry, owned; the rest point into it */
    const char *coll, *id;
    const char *user, *role;      /* who caused the change (NULL: the system); in entry */
    crm_op op;
    crm_value *record;            /* in entry, which this owns: a hook may change it */
    const crm_value *prev;
} pending_ev;

typedef struct collect {
    crm_hook *h;
    pending_ev *evs;
    size_t n, cap;
    int oom;
} collect;

static int collect_want(void *ud, const char *coll, crm_op op)
{
    const collect *c = ud;
    return hook_matches(c->h, coll, crm_op_name(op));
}

static int collect_cb(void *ud, const crm_feed_entry *e)
{
    collect *c = ud;
    pending_ev *pe;
    if (!hook_matches(c->h, e->coll, crm_op_name(e->op)))
        return 0;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        pending_ev *g = realloc(c->evs, cap * sizeof *g);
        if (!g) {
            c->oom = 1;
            return 1;
        }
        c->evs = g;
        c->cap = cap;
    }
    pe = &c->evs[c->n];
    memset(pe, 0, sizeof *pe);
    pe->seq = e->seq;
    pe->depth = e->depth;
    pe->op = e->op;
    /* keep the decoded entry rather than copy its parts */
    pe->entry = *e->owner;
    *e->owner = NULL;
    pe->coll = e->coll;
    pe->id = e->id;
    pe->record = (crm_value *)e->record; /* ours now, with the entry */
    pe->prev = e->prev;
    pe->user = e->user;
    pe->role = e->role;
    c->n++;
    return 0;
}

static void collect_free(collect *c)
{
    for (size_t i = 0; i < c->n; i++)
        crm_value_free(c->evs[i].entry);
    free(c->evs);
}

typedef struct hook_call {
    crm_bus *b;
    crm_hook *h;
    pending_ev *pe;
} hook_call;

static int run_after(void *ud, crm_txn *t, crm_err *err)
{
    hook_call *hc = ud;
    crm_ctx c;
    crm_event ev;
    int rc;
    ev.collection = hc->pe->coll;
    ev.op = crm_op_name(hc->pe->op);
    ev.id = hc->pe->id;
    ev.record = hc->pe->record;
    ev.prev = hc->pe->prev;
    ev.seq = hc->pe->seq;
    ev.phase = CRM_AFTER;
    /* the hook's writes are attributed to whoever caused the change */
    crm_txn_set_actor(t, hc->pe->user, hc->pe->role);
    crm_ctx_init(&c, hc->b, hc->h->owner, t, NULL, NULL);
    rc = hc->h->fn(&c, &ev, hc->h->ud);
    if (rc != CRM_OK)
        ctx_fail(&c, rc, err);
    crm_ctx_done(&c);
    return rc;
}


int crm_bus_dead_letter(crm_bus *b, crm_txn *t, const dead_letter *d, crm_err *err)
{
    crm_value *rec = crm_value_map();
    crm_write w;
    int rc;
    if (!rec || crm_map_set(rec, "kind", crm_value_cstr(d->kind)) ||
        crm_map_set(rec, "handler", crm_value_cstr(d->handler)) ||
        crm_map_set(rec, "owner", crm_value_cstr(d->owner ? d->owner : "")) ||
        crm_map_set(rec, "error", crm_value_cstr(d->error[0] ? d->error : "failed")) ||
        crm_map_set(rec, "attempts", crm_value_int(d->attempts)) ||
        crm_map_set(rec, "failed_at", crm_value_int(crm_txn_now(t))) ||
        (d->seq && crm_map_set(rec, "seq", crm_value_int((int64_t)d->seq))) ||
        (d->coll && crm_map_set(rec, "collection", crm_value_cstr(d->coll))) ||
        (d->op && crm_map_set(rec, "op", crm_value_cstr(d->op))) ||
        (d->record_id && crm_map_set(rec, "record_id", crm_value_cstr(d->record_id))) ||
        (d->payload && d->payload->type == CRM_T_MAP &&
         crm_map_set(rec, "payload", crm_value_dup(d->payload)))) {
        crm_value_free(rec);
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    }
    memset(&w, 0, sizeof w);
    w.op = CRM_OP_CREATE;
    w.coll = CRM_DEAD_LETTERS;
    w.data = rec;
    rc = crm_txn_write(t, &w);
    if (rc != CRM_OK)
        *err = w.err;
    crm_write_clear(&w);
    crm_value_free(rec);
    if (rc == CRM_OK) {
        b->stats.dead_letters++;
        crm_bus_log(b, CRM_LOG_ERROR, d->owner ? d->owner : "bus",
                    "%s %s parked in dead_letters after %d attempts: %s", d->kind, d->handler,
                    d->attempts, d->error);
    }
    return rc;
}

static int64_t backoff(const crm_bus *b, int attempts)
{
    int64_t ms = b->o.backoff_ms;
    for (int i = 1; i < attempts && ms < 60000; i++)
        ms *= 2;
    return ms;
}

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The round's time budget is spent (real time: the loop's stall, whatever
 * the store clock's scale). */
static int round_over(const crm_bus *b)
{
    if (b->o.round_budget_ms <= 0 || mono_ms() < b->round_deadline)
        return 0;
    return !b->o.clients_waiting || b->o.clients_waiting(b->o.clients_waiting_ud);
}

static void run_consumer(crm_bus *b, crm_hook *h, crm_txn *t)
{
    collect c;
    uint64_t work = h->cursor, last = 0;
    crm_err e;
    int rc;
    size_t take = h->take ? h->take : 16, ran;

    if (take > b->o.max_per_round)
        take = b->o.max_per_round;
    memset(&c, 0, sizeof c);
    c.h = h;
    rc = crm_feed_read_where(t, h->cursor, take, collect_want, collect_cb, &c, &last, &e);
    if (rc == CRM_CONFLICT) {
        /* retention dropped entries this consumer never saw (it was not
         * registered while they aged out): say so and go on from the oldest */
        uint64_t first = 0, newest = 0;
        crm_feed_bounds(t, &first, &newest, &e);
        crm_bus_log(b, CRM_LOG_ERROR, h->owner->who,
                    "after-hook %s missed changes %llu..%llu (no longer retained)", h->name,
                    (unsigned long long)h->cursor + 1, (unsigned long long)(first ? first - 1 : newest));
        work = first ? first - 1 : newest;
        goto save;
    }
    if (rc != CRM_OK || c.oom)
        goto out; /* try again next round */
    work = last;
    ran = c.n;
    for (size_t i = 0; i < c.n; i++) {
        pending_ev *pe = &c.evs[i];
        hook_call hc = {b, h, pe};
        crm_err he;
        int final = 0;
        if (i > 0 && round_over(b)) { /* the rest next round */
            work = c.evs[i - 1].seq;
            ran = i;
            break;
        }
        if (pe->depth >= CRM_MAX_HOOK_DEPTH) { /* not run at all: retrying cannot help */
            snprintf(h->lasterr, sizeof h->lasterr,
                     "SCRIPT_ERROR: hooks that trigger hooks are cut off at depth %d",
                     CRM_MAX_HOOK_DEPTH);
            h->attempts = 0;
            final = 1;
            rc = CRM_SCRIPT_ERROR;
        } else {
            rc = crm_txn_nest(t, pe->depth + 1, run_after, &hc, &he);
            b->stats.hook_runs++;
            if (rc != CRM_OK) {
                b->stats.hook_failures++;
                h->attempts++;
                snprintf(h->lasterr, sizeof h->lasterr, "%s: %.200s", crm_code_name(rc), he.msg);
            }
        }
        if (rc == CRM_OK) {
            h->attempts = 0;
            continue;
        }
        if (!final && h->attempts < b->o.max_attempts) {
            crm_bus_log(b, CRM_LOG_WARN, h->owner->who,
                        "after-hook %s failed on seq %llu (attempt %d of %d): %s", h->name,
                        (unsigned long long)pe->seq, h->attempts, b->o.max_attempts, h->lasterr);
            h->retry_at = crm_txn_now(t) + backoff(b, h->attempts);
            work = pe->seq - 1;
            break;
        }
        {
            dead_letter d = {"after_hook", h->name, h->owner->who, h->lasterr, pe->coll,
                             crm_op_name(pe->op), pe->id, h->attempts, pe->seq, NULL};
            if (crm_bus_dead_letter(b, t, &d, &e) != CRM_OK) {
                work = pe->seq - 1; /* the store refused even that: try again later */
                h->retry_at = crm_txn_now(t) + backoff(b, h->attempts);
                break;
            }
            h->attempts = 0;
            h->lasterr[0] = '\0';
        }
    }
    if (ran < c.n)
        h->take = ran > 4 ? ran : 4;
    else if (c.n == take)
        h->take = take * 2;
save:
    if (work != h->cursor) {
        uint8_t be[8];
        crm_be64_put(be, work);
        if (crm_txn_aux_put(t, CRM_AUX_CURSORS, h->name, strlen(h->name), be, 8, &e) != CRM_OK)
            work = h->cursor;
    }
out:
    h->next_cursor = work;
    collect_free(&c);
}

int crm_bus_round(void *ud, crm_txn *t, crm_err *err)
{
    crm_bus *b = ud;
    int64_t now = crm_txn_now(t);
    size_t nafter = 0, first, k;
    b->sched_min = INT64_MAX;
    {
        /* at least as long as the client writes of this batch took: under
         * a steady stream of writes the hooks get half of the writer; and
         * when the slowest consumer is more than 4 rounds' worth behind
         * (hooks that cost more than the writes they follow), no time
         * limit: each consumer runs all it takes (up to max_per_round)
         * before the next client batch, so the lag stays bounded and the
         * clients' writes slow down instead */
        double now_mono = mono_ms(), spent = b->batch_start > 0 ? now_mono - b->batch_start : 0;
        uint64_t last = crm_txn_last_seq(t), slowest = slowest_cursor(b);
        uint64_t lag = slowest < last ? last - slowest : 0;
        b->round_deadline = now_mono + (spent > b->o.round_budget_ms ? spent : b->o.round_budget_ms);
        if (lag > 4 * (uint64_t)b->o.max_per_round)
            b->round_deadline = now_mono + 3600e3;
    }
    for (crm_hook *h = b->hooks; h; h = h->next)
        if (h->phase == CRM_AFTER) {
            h->next_cursor = h->cursor;
            nafter++;
        }
    /* turns rotate, so that a consumer with much to do cannot keep the
     * others waiting round after round */
    first = nafter ? b->round_turn++ % nafter : 0;
    for (size_t pass = 0; pass < 2; pass++) {
        k = 0;
        for (crm_hook *h = b->hooks; h; h = h->next) {
            if (h->phase != CRM_AFTER)
                continue;
            if ((pass == 0) != (k++ >= first))
                continue;
            if (h->cursor >= crm_txn_last_seq(t) || h->retry_at > now)
                continue;
            if (round_over(b))
                break;
            run_consumer(b, h, t);
        }
    }
    crm_bus_timers_round(b, t);
    (void)err;
    return CRM_OK;
}

crm_unit *crm_bus_unit(crm_bus *b)
{
    if (crm_bus_next_work_ms(b) != 0)
        return NULL;
    memset(&b->unit, 0, sizeof b->unit);
    b->unit.fn = crm_bus_round;
    b->unit.fn_ud = b;
    b->in_round = 1;
    return &b->unit;
}

void crm_bus_unit_done(crm_bus *b, crm_unit *u, int batch_rc)
{
    int ok = u && batch_rc == CRM_OK && u->rc == CRM_OK;
    if (!u)
        return;
    b->in_round = 0;
    for (crm_hook *h = b->hooks; h; h = h->next)
        if (h->phase == CRM_AFTER && ok)
            h->cursor = h->next_cursor;
    crm_bus_timers_done(b, ok);
    if (!ok) {
        /* the batch failed (disk full, I/O): do not spin on it */
        int64_t later = crm_store_now(b->s) + 1000;
        for (crm_hook *h = b->hooks; h; h = h->next)
            if (h->phase == CRM_AFTER && h->retry_at < later)
                h->retry_at = later;
        b->next_due = later;
    }
    update_floor(b);
}

int crm_bus_apply(crm_bus *b, crm_unit *units, size_t n, int *ran_bus, crm_err *err)
{
    crm_unit *bu = crm_bus_unit(b);
    int rc;
    b->batch_start = mono_ms();
    if (ran_bus)
        *ran_bus = bu != NULL;
    crm_err_clear(err);
    if (!n && !bu)
        return CRM_OK;
    if (bu)
        units[n] = *bu;
    rc = crm_store_apply(b->s, units, n + (bu != NULL), err);
    if (bu) {
        *bu = units[n]; /* its rc and err, for unit_done */
        crm_bus_unit_done(b, bu, rc);
    }
    return rc;
}

int crm_bus_drain(crm_bus *b, size_t max_rounds, crm_err *err)
{
    crm_unit u[1];
    for (size_t i = 0; !max_rounds || i < max_rounds; i++) {
        int ran, rc = crm_bus_apply(b, u, 0, &ran, err);
        if (rc != CRM_OK)
            return rc;
        if (!ran)
            return CRM_OK;
    }
    return crm_err_set(err, CRM_UNAVAILABLE, "the bus did not settle in %zu rounds", max_rounds);
}

void crm_bus_set_clients_waiting(crm_bus *b, int (*fn)(void *ud), void *ud)
{
    b->o.clients_waiting = fn;
    b->o.clients_waiting_ud = ud;
}

int64_t crm_bus_next_work_ms(crm_bus *b)
{
    int64_t now = crm_store_now(b->s), at = INT64_MAX;
    uint64_t last = crm_store_last_seq(b->s);
    for (crm_hook *h = b->hooks; h; h = h->next) {
        if (h->phase != CRM_AFTER || h->cursor >= last)
            continue;
        if (h->retry_at < at)
            at = h->retry_at;
    }
    if (b->next_due < at)
        at = b->next_due;
    if (at == INT64_MAX)
        return -1;
    if (at <= now)
        return 0;
    {
        double real = (double)(at - now) / b->o.time_scale;
        return real < 1 ? 1 : real > 3600000 ? 3600000 : (int64_t)ceil(real);
    }
}

/* ---- methods ---- */

int crm_bus_has_method(crm_bus *b, const char *method)
{
    return method && find_named(b->methods, method) != NULL;
}

int crm_bus_call(crm_bus *b, crm_txn *t, const char *method, const crm_value *params,
                 const char *user, const char *role, crm_value **result, crm_err *err)
{
    crm_named *m = method ? find_named(b->methods, method) : NULL;
    crm_ctx c;
    int rc;
    *result = NULL;
    if (!m)
        return crm_err_set(err, CRM_NOT_FOUND, "no method \"%s\"", method ? method : "");
    crm_ctx_init(&c, b, m->owner, t, user, role);
    rc = ((crm_method_fn)m->fn)(&c, params, result, m->ud);
    if (rc != CRM_OK) {
        ctx_fail(&c, rc, err);
        crm_value_free(*result);
        *result = NULL;
    }
    crm_ctx_done(&c);
    return rc;
}

typedef struct call_now {
    crm_bus *b;
    const char *method, *user, *role;
    const crm_value *params;
    crm_value **result;
} call_now;

static int call_now_fn(void *ud, crm_txn *t, crm_err *err)
{
    call_now *c = ud;
    return crm_bus_call(c->b, t, c->method, c->params, c->user, c->role, c->result, err);
}

int crm_bus_call_now(crm_bus *b, const char *method, const crm_value *params, const char *user,
                     const char *role, crm_value **result, crm_err *err)
{
    crm_value *empty = params ? NULL : crm_value_map();
    call_now c = {b, method, user, role, params ? params : empty, result};
    crm_unit u;
    int rc;
    *result = NULL;
    crm_err_clear(err);
    if (!params && !empty)
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    memset(&u, 0, sizeof u);
    u.fn = call_now_fn;
    u.fn_ud = &c;
    rc = crm_store_apply(b->s, &u, 1, err);
    crm_value_free(empty);
    if (rc == CRM_OK && u.rc != CRM_OK) {
        *err = u.err;
        rc = u.rc;
    }
    if (rc != CRM_OK) { /* a failed batch undid what the method did */
        crm_value_free(*result);
        *result = NULL;
    }
    return rc;
}

/* ---- stats ---- */

void crm_bus_stats_get(crm_bus *b, crm_bus_stats *st)
{
    uint64_t last = crm_store_last_seq(b->s), slowest = slowest_cursor(b);
    *st = b->stats;
    st->min_cursor = slowest < last ? slowest : last;
    st->consumers = 0;
    for (crm_hook *h = b->hooks; h; h = h->next)
        st->consumers += h->phase == CRM_AFTER;
    st->timers_pending = crm_bus_timers_pending(b);
}

crm_named *crm_bus_find_timer(crm_bus *b, const char *name) { return find_named(b->timers, name); }
