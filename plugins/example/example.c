/*
 * example -- the bundled example plugin: every member of crm_api, each used
 * for something a CRM would want, over the bundled schemas/.
 *
 * What it does (configuration: example.json beside example.so):
 *  - before interactions.create ("example.screen"): refuses an interaction
 *    whose subject or notes mention one of forbidden_words (REJECTED, the
 *    client gets the message; case-insensitive), and stamps every other one
 *    with extra.screened_by = the plugin's name (a before-hook may change
 *    the record in place).
 *  - after orders.* ("example.orders"):
 *      create: writes a confirmation interaction (email, outbound) for the
 *              order's contact, adds the order to the contact's order_count,
 *              total_spent and last_order_at, and schedules the follow-up
 *              timer, keyed by the order id, followup_seconds later;
 *      update: an order that turns cancelled has its follow-up cancelled;
 *      delete: its confirmation interactions are removed, its follow-up
 *              cancelled.
 *    After-hooks run exactly once per change, also across a crash: their
 *    writes and the cursor's step commit together.
 *  - timer example.followup: writes a follow-up call interaction (outcome
 *    follow_up) unless the order is gone or cancelled by then.
 *  - method example.echo: the params back (also as JSON text), with the
 *    caller's user and role, the plugin's name and the server time.
 *  - method example.stats: the caller's role and what the plugin counted
 *    since it started (counts of runs, not of committed effects: a failed
 *    hook that is retried counts twice), among them big_orders: created
 *    orders matching big_order_where (a where-filter compiled once in init
 *    with api->where_compile, matched with api->where_match).
 *
 * Built like an out-of-tree plugin: only <crm/plugin.h> on its include path,
 * no link to anything of crmd's (plugins/CMakeLists.txt checks that with
 * -Wl,--no-undefined).
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <crm/plugin.h>

/* The table, kept from init (SQLite's SQLITE_EXTENSION_INIT2, in spirit).
 * Every member is called on the writer thread during a call into us. */
static const crm_api *api;

/* Used for a key example.json does not set (or when there is no file). */
static const char DEFAULTS[] = "{\"forbidden_words\": [\"lottery\", \"crypto giveaway\"],"
                               " \"followup_seconds\": 86400,"
                               " \"subject_prefix\": \"Order\","
                               " \"big_order_where\": {\"amount\": {\"gte\": 100000}}}";
static crm_value *defaults; /* ours: freed in fini */
static crm_where *big_order; /* ours: where_free in fini */

/* Counters for example.stats (the writer thread is the only one touching them). */
static struct {
    long long screened, rejected, orders, amount, followups, cancelled, echoes, own_writes, big_orders;
} stats;

/* ---- small helpers ---- */

static const crm_value *conf(crm_plugin *p, const char *key)
{
    const crm_value *v = api->config(p, key); /* borrowed until fini */
    return v ? v : api->map_get(defaults, key);
}

static const char *str_of(const crm_value *map, const char *key)
{
    const crm_value *v = map ? api->map_get(map, key) : NULL;
    return v && v->type == CRM_T_STR ? v->u.str.s : NULL;
}

static long long int_of(const crm_value *map, const char *key, long long fallback)
{
    const crm_value *v = map ? api->map_get(map, key) : NULL;
    if (v && v->type == CRM_T_INT)
        return (long long)v->u.i;
    if (v && v->type == CRM_T_NUM)
        return (long long)v->u.n;
    return fallback;
}

/* A lower-case copy in per-call memory: nothing to free, on any path. */
static char *lower(crm_ctx *ctx, const char *s, size_t n)
{
    char *d = api->alloc(ctx, n + 1);
    if (!d)
        return NULL;
    for (size_t i = 0; i < n; i++)
        d[i] = (char)tolower((unsigned char)s[i]);
    d[n] = 0;
    return d;
}

/* Sets key of map to v, which the map takes (also on failure).  v NULL
 * means a constructor ran out of memory. */
static int put(crm_value *map, const char *key, crm_value *v)
{
    if (!v)
        return -1;
    return api->map_set(map, key, v);
}

static int put_str(crm_value *map, const char *key, const char *s)
{
    return put(map, key, s ? api->value_str(s, strlen(s)) : api->value_nil());
}

static int oom(crm_ctx *ctx)
{
    return api->error(ctx, CRM_INTERNAL, "example: out of memory");
}

/* ---- before interactions.create: screen the text ---- */

static int screen_interaction(crm_ctx *ctx, crm_event *ev, void *ud)
{
    static const char *const fields[] = {"subject", "notes"};
    crm_plugin *p = api->ctx_plugin(ctx);
    const crm_value *words = conf(p, "forbidden_words");
    crm_value *extra;
    const char *me = api->plugin_name(p);

    /* whose code made this write: our own orders after-hook (its
     * confirmations), another plugin or script, or (NULL) a client */
    if (api->write_origin(ctx) == p)
        stats.own_writes++;

    for (size_t f = 0; f < sizeof fields / sizeof *fields; f++) {
        const crm_value *v = api->map_get(ev->record, fields[f]);
        char *text;
        if (!v || v->type != CRM_T_STR || !words || words->type != CRM_T_ARR)
            continue;
        if (!(text = lower(ctx, v->u.str.s, v->u.str.len)))
            return oom(ctx);
        for (size_t i = 0; i < words->u.arr.n; i++) {
            const crm_value *w = words->u.arr.items[i];
            char *word;
            if (w->type != CRM_T_STR || w->u.str.len == 0)
                continue;
            if (!(word = lower(ctx, w->u.str.s, w->u.str.len)))
                return oom(ctx);
            if (strstr(text, word)) {
                stats.rejected++;
                return api->error(ctx, CRM_REJECTED, "interactions may not mention \"%s\" (in %s)",
                                  w->u.str.s, fields[f]);
            }
        }
    }
    /* Accepted: leave a mark in extra (a free-form map the schema does not
     * check), creating it when the client sent none. */
    if (!(extra = api->map_get(ev->record, "extra"))) {
        if (put(ev->record, "extra", api->value_map()) != 0)
            return oom(ctx);
        extra = api->map_get(ev->record, "extra");
    }
    if (extra->type == CRM_T_MAP && put_str(extra, "screened_by", me) != 0)
        return oom(ctx);
    stats.screened++;
    return CRM_OK;
}

/* ---- after orders.*: confirmation, contact figures, follow-up ---- */

static int order_created(crm_ctx *ctx, crm_plugin *p, crm_event *ev)
{
    const crm_value *order = ev->record;
    const char *contact = str_of(order, "contact"), *number = str_of(order, "number");
    const crm_value *pv = conf(p, "subject_prefix");
    const char *prefix = pv && pv->type == CRM_T_STR ? pv->u.str.s : "Order";
    long long amount = int_of(order, "amount", 0);
    const crm_value *secs = conf(p, "followup_seconds");
    crm_value *person = NULL, *rec = NULL, *extra, *summary, *patch = NULL, *payload = NULL;
    char *subject;
    int rc;

    stats.orders++;
    stats.amount += amount;
    stats.big_orders += api->where_match(big_order, order); /* 1 or 0 */
    /* 1. the contact, for the greeting and its running figures.  *person is
     * ours (value_free). */
    if ((rc = api->get(ctx, "contacts", contact ? contact : "", &person)) != CRM_OK)
        return rc; /* the message is already on ctx */

    /* 2. the confirmation interaction; the subject is built in per-call
     * memory (200 bytes: the schema's maximum for subject). */
    if (!(subject = api->alloc(ctx, 201)))
        return oom(ctx);
    snprintf(subject, 201, "%s %s confirmed for %.80s", prefix, number ? number : ev->id,
             str_of(person, "name") ? str_of(person, "name") : "?");
    /* the order as it was stored, less the bulky parts */
    if (!(summary = api->value_dup(order)))
        goto nomem;
    api->map_del(summary, "items");
    api->map_del(summary, "notes");
    api->map_del(summary, "extra");
    if (!(rec = api->value_map()) || put_str(rec, "contact", contact) ||
        put_str(rec, "kind", "email") || put_str(rec, "direction", "outbound") ||
        put(rec, "at", api->value_int(api->now(ctx))) || put_str(rec, "subject", subject) ||
        put(rec, "extra", api->value_map())) {
        api->value_free(summary);
        goto nomem;
    }
    extra = api->map_get(rec, "extra");
    if (put_str(extra, "order", ev->id) || put(extra, "order_summary", summary) ||
        put(extra, "seq", api->value_int((int64_t)ev->seq)))
        goto nomem;
    if ((rc = api->create(ctx, "interactions", rec, NULL)) != CRM_OK)
        goto done;

    /* 3. the contact's figures, guarded by the revision we read */
    if (!(patch = api->value_map()) ||
        put(patch, "order_count", api->value_int(int_of(person, "order_count", 0) + 1)) ||
        put(patch, "total_spent", api->value_int(int_of(person, "total_spent", 0) + amount)) ||
        put(patch, "last_order_at",
            api->value_int(int_of(order, "ordered_at", api->now(ctx)))))
        goto nomem;
    if ((rc = api->update(ctx, "contacts", contact, patch, int_of(person, "_rev", 0), NULL)) !=
        CRM_OK)
        goto done;

    /* 4. the follow-up, keyed by the order so a cancel can find it */
    if (!(payload = api->value_map()) || put_str(payload, "order", ev->id) ||
        put_str(payload, "contact", contact))
        goto nomem;
    rc = api->schedule(ctx,
                       secs && secs->type == CRM_T_INT   ? (double)secs->u.i
                       : secs && secs->type == CRM_T_NUM ? secs->u.n
                                                         : 86400.0,
                       "example.followup", payload, ev->id);
    goto done;
nomem:
    rc = oom(ctx);
done:
    api->value_free(person);
    api->value_free(rec);
    api->value_free(patch);
    api->value_free(payload);
    return rc;
}

/* No follow-up for an order that is cancelled or gone; none pending is fine. */
static int cancel_followup(crm_ctx *ctx, crm_plugin *p, const char *order_id)
{
    int rc = api->cancel(ctx, "example.followup", order_id);
    if (rc == CRM_NOT_FOUND) {
        api->log(p, CRM_LOG_DEBUG, "order %s had no pending follow-up: %s", order_id,
                 api->errmsg(ctx));
        return CRM_OK;
    }
    if (rc == CRM_OK)
        stats.cancelled++;
    return rc;
}

/* Removes the confirmation interactions order_created wrote for the order,
 * walking the contact's e-mails page by page. */
static int order_deleted(crm_ctx *ctx, crm_plugin *p, crm_event *ev)
{
    const char *contact = str_of(ev->prev, "contact");
    crm_value *where = api->value_map(), *page = NULL;
    char *after = NULL;
    int rc = CRM_OK;

    if (!where || put_str(where, "contact", contact) || put_str(where, "kind", "email")) {
        api->value_free(where);
        return oom(ctx);
    }
    for (;;) {
        const crm_value *recs, *next;
        if ((rc = api->query(ctx, "interactions", where, "at", 100, after, &page)) != CRM_OK)
            break;
        recs = api->map_get(page, "records");
        for (size_t i = 0; recs && recs->type == CRM_T_ARR && i < recs->u.arr.n; i++) {
            const crm_value *r = recs->u.arr.items[i];
            const char *o = str_of(api->map_get(r, "extra"), "order");
            if (o && strcmp(o, ev->id) == 0 &&
                (rc = api->remove(ctx, "interactions", str_of(r, "id"), int_of(r, "_rev", 0))) !=
                    CRM_OK)
                goto out;
        }
        next = api->map_get(page, "next");
        if (!next || next->type != CRM_T_STR)
            break;
        /* the cursor must outlive this page: copy it to per-call memory */
        if (!(after = api->alloc(ctx, next->u.str.len + 1))) {
            rc = oom(ctx);
            break;
        }
        memcpy(after, next->u.str.s, next->u.str.len + 1);
        api->value_free(page);
        page = NULL;
    }
out:
    api->value_free(page);
    api->value_free(where);
    return rc == CRM_OK ? cancel_followup(ctx, p, ev->id) : rc;
}

static int on_orders(crm_ctx *ctx, crm_event *ev, void *ud)
{
    crm_plugin *p = api->ctx_plugin(ctx);
    if (strcmp(ev->op, "create") == 0)
        return order_created(ctx, p, ev);
    if (strcmp(ev->op, "delete") == 0)
        return order_deleted(ctx, p, ev);
    /* update: turning cancelled drops the follow-up */
    const char *now = str_of(ev->record, "status"), *was = str_of(ev->prev, "status");
    if (now && strcmp(now, "cancelled") == 0 && !(was && strcmp(was, "cancelled") == 0))
        return cancel_followup(ctx, p, ev->id);
    return CRM_OK;
}

/* ---- timer example.followup ---- */

static int followup(crm_ctx *ctx, const char *name, const crm_value *payload, void *ud)
{
    crm_plugin *p = api->ctx_plugin(ctx);
    const char *order_id = str_of(payload, "order");
    crm_value *order = NULL, *rec = NULL;
    char subject[120];
    int rc = api->get(ctx, "orders", order_id ? order_id : "", &order);
    if (rc == CRM_NOT_FOUND) {
        api->log(p, CRM_LOG_INFO, "%s: no follow-up, %s", name, api->errmsg(ctx));
        return CRM_OK;
    }
    if (rc != CRM_OK)
        return rc;
    if (str_of(order, "status") && strcmp(str_of(order, "status"), "cancelled") == 0) {
        api->value_free(order);
        return CRM_OK;
    }
    snprintf(subject, sizeof subject, "Follow-up call on order %.60s",
             str_of(order, "number") ? str_of(order, "number") : order_id);
    if (!(rec = api->value_map()) || put_str(rec, "contact", str_of(order, "contact")) ||
        put_str(rec, "kind", "call") || put_str(rec, "direction", "outbound") ||
        put(rec, "at", api->value_int(api->now(ctx))) || put_str(rec, "subject", subject) ||
        put_str(rec, "outcome", "follow_up") || put(rec, "extra", api->value_map()) ||
        put_str(api->map_get(rec, "extra"), "order", order_id))
        rc = oom(ctx);
    else if ((rc = api->create(ctx, "interactions", rec, NULL)) == CRM_OK)
        stats.followups++;
    api->value_free(order);
    api->value_free(rec);
    return rc;
}

/* ---- methods ---- */

/* example.echo: {"params": <params, through JSON and back>, "json": "<text>",
 * "user", "role", "admin", "plugin", "now"} */
static int echo(crm_ctx *ctx, const crm_value *params, crm_value **result, void *ud)
{
    crm_value *r = api->value_map(), *back = NULL;
    const char *role = api->caller_role(ctx);
    size_t len;
    char *json = params ? api->to_json(params, &len) : NULL; /* ours: mem_free */
    crm_err e;
    int rc = CRM_OK;

    if (!r || (params && !json))
        goto nomem;
    if (json && (rc = api->from_json(json, len, &back, &e)) != CRM_OK) {
        rc = api->error(ctx, rc, "example.echo: %s", e.msg);
        goto fail;
    }
    if (put(r, "params", back ? back : api->value_nil()) ||
        put(r, "json", json ? api->value_str(json, len) : api->value_nil()) ||
        put_str(r, "user", api->caller_user(ctx)) || put_str(r, "role", role) ||
        put(r, "admin", api->value_bool(role && strcmp(role, "admin") == 0)) ||
        put_str(r, "plugin", api->plugin_name(api->ctx_plugin(ctx))) ||
        put(r, "now", api->value_int(api->now(ctx))))
        goto nomem;
    api->mem_free(json);
    stats.echoes++;
    *result = r; /* the kernel's now */
    return CRM_OK;
nomem:
    rc = oom(ctx);
fail:
    api->mem_free(json);
    api->value_free(r);
    return rc;
}

/* example.stats: {"role", "screened", "rejected", "orders", "avg_amount"
 * (num, or null before the first order), "followups", "cancelled", "echoes",
 * "own_writes" (interactions this plugin's own hooks wrote), "big_orders",
 * "forbidden_words": [...]} */
static int get_stats(crm_ctx *ctx, const crm_value *params, crm_value **result, void *ud)
{
    const crm_value *words = conf(api->ctx_plugin(ctx), "forbidden_words");
    crm_value *r = api->value_map(), *list = api->value_arr();
    if (!r || !list)
        goto nomem;
    for (size_t i = 0; words && words->type == CRM_T_ARR && i < words->u.arr.n; i++)
        if (api->arr_push(list, api->value_dup(words->u.arr.items[i])) != 0)
            goto nomem; /* the item is gone; list is still ours */
    int bad = put(r, "forbidden_words", list); /* takes list, also on failure */
    list = NULL;
    if (bad || put_str(r, "role", api->caller_role(ctx)) ||
        put(r, "screened", api->value_int(stats.screened)) ||
        put(r, "rejected", api->value_int(stats.rejected)) ||
        put(r, "orders", api->value_int(stats.orders)) ||
        put(r, "avg_amount", stats.orders ? api->value_num((double)stats.amount / (double)stats.orders)
                                          : api->value_nil()) ||
        put(r, "followups", api->value_int(stats.followups)) ||
        put(r, "cancelled", api->value_int(stats.cancelled)) ||
        put(r, "echoes", api->value_int(stats.echoes)) ||
        put(r, "own_writes", api->value_int(stats.own_writes)) ||
        put(r, "big_orders", api->value_int(stats.big_orders)))
        goto nomem;
    *result = r; /* the kernel's now */
    return CRM_OK;
nomem:
    api->value_free(list);
    api->value_free(r);
    return oom(ctx);
}

/* ---- entry point ---- */

static int example_init(crm_plugin *p, const crm_api *a, char *errbuf, size_t cap)
{
    const crm_value *words, *secs;
    crm_err e;
    char *json;

    api = a;
    /* Built against this header, we use its last member: a kernel whose
     * table is shorter would have refused us, but say so if not. */
    if (!CRM_API_HAS(api, where_free)) {
        snprintf(errbuf, cap, "needs crm_api members up to where_free");
        return CRM_INTERNAL;
    }
    if (api->from_json(DEFAULTS, sizeof DEFAULTS - 1, &defaults, &e) != CRM_OK) {
        snprintf(errbuf, cap, "built-in defaults: %s", e.msg);
        return CRM_INTERNAL;
    }
    words = conf(p, "forbidden_words");
    secs = conf(p, "followup_seconds");
    if (!words || words->type != CRM_T_ARR) {
        snprintf(errbuf, cap, "forbidden_words must be an array of strings");
        goto fail;
    }
    for (size_t i = 0; i < words->u.arr.n; i++)
        if (words->u.arr.items[i]->type != CRM_T_STR) {
            snprintf(errbuf, cap, "forbidden_words[%zu] is not a string", i);
            goto fail;
        }
    if (!secs || (secs->type != CRM_T_INT && secs->type != CRM_T_NUM) ||
        (secs->type == CRM_T_INT ? secs->u.i < 0 : secs->u.n < 0)) {
        snprintf(errbuf, cap, "followup_seconds must be a number of seconds, 0 or more");
        goto fail;
    }
    /* checked against the orders schema now, so a typo stops start-up */
    if (api->where_compile(p, "orders", conf(p, "big_order_where"), &big_order, &e) != CRM_OK) {
        snprintf(errbuf, cap, "big_order_where: %s", e.msg);
        goto fail;
    }
    if (api->on(p, "interactions.create", CRM_BEFORE, "example.screen", screen_interaction, NULL) ||
        api->on(p, "orders.*", CRM_AFTER, "example.orders", on_orders, NULL) ||
        api->on_timer(p, "example.followup", followup, NULL) ||
        api->method(p, "example.echo", echo, NULL) ||
        api->method(p, "example.stats", get_stats, NULL)) {
        snprintf(errbuf, cap, "could not register its hooks, timer and methods: %s",
                 api->registration_error(p));
        goto fail;
    }
    json = api->to_json(api->config(p, NULL) ? api->config(p, NULL) : defaults, NULL);
    api->log(p, CRM_LOG_INFO, "%s ready, configuration %s", api->plugin_name(p),
             json ? json : "(out of memory)");
    api->mem_free(json);
    return CRM_OK;
fail:
    /* the kernel removes what we registered; our own memory is ours */
    api->value_free(defaults);
    defaults = NULL;
    api->where_free(big_order);
    big_order = NULL;
    return CRM_BAD_REQUEST;
}

static void example_fini(crm_plugin *p, const crm_api *a)
{
    a->log(p, CRM_LOG_INFO, "stopping: %lld orders, %lld rejected, %lld follow-ups",
           stats.orders, stats.rejected, stats.followups);
    a->value_free(defaults);
    defaults = NULL;
    a->where_free(big_order);
    big_order = NULL;
}

CRM_PLUGIN_DECLARE("example", "1.0.0", example_init, example_fini)
