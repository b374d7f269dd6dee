/*
 * webhooks -- outbound webhooks driven from the change feed (issue 7;
 * docs/features/webhooks.md).
 *
 * Records (schemas/webhooks.json, webhook_outbox.json,
 * webhook_dead_letters.json; admin only):
 *  - webhooks: one subscription each: url, collections watched, optional
 *    where, secret, active.
 *  - webhook_outbox: one record per delivery not yet acknowledged, key
 *    "WEBHOOK/SEQ20" (unique; the order of delivery).  The outbox IS each
 *    subscription's durable position: a record is written in the same unit
 *    as the after-hook's cursor step, and deleted once the receiver answered
 *    2xx (or the delivery was dead-lettered), so after a crash or restart
 *    delivery resumes from what is left, with no gap; a delivery whose
 *    acknowledgement was not yet recorded is sent again with the same seq
 *    (at least once).
 *  - webhook_dead_letters: deliveries given up on.
 *
 * Flow (all on the writer thread but the HTTP, which is webhooks_http.c's):
 *  1. after-hook "*.*" (one feed consumer for every collection): for each
 *     active subscription watching the collection whose where matches the
 *     record after or before the change, a webhook_outbox record (or, when
 *     the subscription's queue is full, a queue_full dead letter); then the
 *     timer webhooks.poll is set to fire now (key "poll": one at most).
 *  2. timer webhooks.poll: records the worker's results (delete the
 *     delivered, note failed attempts, dead-letter the dead), hands each
 *     subscription's next outbox records to the worker (at most `window` in
 *     memory per subscription), purges the outbox of deleted subscriptions,
 *     and sets itself again while anything is outstanding.
 *  3. before-hooks: webhooks records are checked (URL, collections, where,
 *     how many); webhook_outbox and webhook_dead_letters are written by
 *     this plugin only (clients may delete).
 * In-memory state is a cache of the records, rebuilt on the first call
 * after start.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <crm/plugin.h>

#include "webhooks_http.h"

#define OUTBOX "webhook_outbox"
#define DEAD "webhook_dead_letters"
#define SUBS "webhooks"
#define POLL_TIMER "webhooks.poll"
#define MAX_COLLS 32
#define ERASED "[erased]" /* what privacy.erase leaves in a required string */

static const crm_api *api;
static crm_plugin *self;

/* configuration (webhooks.json beside webhooks.so), read once in init */
static struct {
    int max_subs, max_queue, window;
    size_t max_url, max_body;
    double poll_s, idle_poll_s;
    wh_http_cfg http;
} cfg;

/* ---- subscriptions in memory (writer thread only) ---- */

typedef struct sub {
    char id[WH_ID_MAX + 1];
    char *url, *secret;
    char *colls[MAX_COLLS];
    crm_where *wheres[MAX_COLLS];
    size_t ncolls;
    int active, deleted;
    unsigned gen;       /* bumped when url, secret or active change: the worker drops older jobs */
    uint64_t handed;    /* highest seq handed to the worker in this gen */
    int inflight;       /* handed in this gen and not finished */
    long pending;       /* outbox records (exact once counted) */
    int counted;        /* pending counted from the outbox since start */
    uint64_t count_from, count_upto; /* counting: keys (count_from, count_upto] */
    int full_logged;
    int64_t delivered, failed, dead; /* since start */
    int64_t dropped;    /* since start: deliveries privacy.erase erased, never sent */
} sub;

static sub **subs;
static size_t nsubs;
static int loaded;
static double poll_every; /* adapts: poll_s while busy, up to idle_poll_s while waiting */

static void sub_free(sub *s)
{
    if (!s)
        return;
    free(s->url);
    free(s->secret);
    for (size_t i = 0; i < s->ncolls; i++) {
        free(s->colls[i]);
        api->where_free(s->wheres[i]);
    }
    free(s);
}

static sub *find_sub(const char *id)
{
    for (size_t i = 0; i < nsubs; i++)
        if (strcmp(subs[i]->id, id) == 0)
            return subs[i];
    return NULL;
}

static void remove_sub(sub *s)
{
    for (size_t i = 0; i < nsubs; i++)
        if (subs[i] == s) {
            subs[i] = subs[--nsubs];
            break;
        }
    sub_free(s);
}

static const char *str_of(const crm_value *m, const char *k)
{
    const crm_value *v = m ? api->map_get(m, k) : NULL;
    return v && v->type == CRM_T_STR ? v->u.str.s : NULL;
}

static int64_t int_of(const crm_value *m, const char *k, int64_t def)
{
    const crm_value *v = m ? api->map_get(m, k) : NULL;
    return v && v->type == CRM_T_INT ? v->u.i : def;
}

static int is_own_collection(const char *c)
{
    return strcmp(c, SUBS) == 0 || strcmp(c, OUTBOX) == 0 || strcmp(c, DEAD) == 0;
}

/* Checks a webhooks record and, when out is not NULL, builds its in-memory
 * form.  0, or -1 with why filled. */
static int parse_sub(const crm_value *rec, sub **out, char *why, size_t cap)
{
    const char *id = str_of(rec, "id"), *url = str_of(rec, "url"), *secret = str_of(rec, "secret");
    const crm_value *colls = api->map_get(rec, "collections"), *where = api->map_get(rec, "where");
    const crm_value *active = api->map_get(rec, "active");
    sub *s = NULL;
    crm_err e;
    if (out)
        *out = NULL;
    if (!url || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)) {
        snprintf(why, cap, "url must start with http:// or https://");
        return -1;
    }
    if (strlen(url) > cfg.max_url) {
        snprintf(why, cap, "url is longer than %zu bytes", cfg.max_url);
        return -1;
    }
    for (const char *c = url; *c; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f) {
            snprintf(why, cap, "url must not hold spaces or control characters");
            return -1;
        }
    if (!secret || strlen(secret) < 16) {
        snprintf(why, cap, "secret must be at least 16 characters");
        return -1;
    }
    if (!colls || colls->type != CRM_T_ARR || colls->u.arr.n == 0 || colls->u.arr.n > MAX_COLLS) {
        snprintf(why, cap, "collections must list 1 to %d collections", MAX_COLLS);
        return -1;
    }
    if (where && where->type != CRM_T_NIL && where->type != CRM_T_MAP) {
        snprintf(why, cap, "where must be a map");
        return -1;
    }
    if (out) {
        if (!id || strlen(id) > WH_ID_MAX || !(s = calloc(1, sizeof *s)) || !(s->url = strdup(url)) ||
            !(s->secret = strdup(secret))) {
            sub_free(s);
            snprintf(why, cap, "out of memory");
            return -1;
        }
        snprintf(s->id, sizeof s->id, "%s", id);
        s->active = !active || active->type != CRM_T_BOOL || active->u.b;
    }
    for (size_t i = 0; i < colls->u.arr.n; i++) {
        const crm_value *c = colls->u.arr.items[i];
        crm_where *w = NULL;
        if (c->type != CRM_T_STR || is_own_collection(c->u.str.s)) {
            snprintf(why, cap, "collections[%zu]: a webhook cannot watch %s", i,
                     c->type == CRM_T_STR ? c->u.str.s : "a non-string");
            sub_free(s);
            return -1;
        }
        for (size_t k = 0; k < i; k++)
            if (strcmp(colls->u.arr.items[k]->u.str.s, c->u.str.s) == 0) {
                snprintf(why, cap, "collections: %s is listed twice", c->u.str.s);
                sub_free(s);
                return -1;
            }
        if (api->where_compile(self, c->u.str.s, where, &w, &e) != CRM_OK) {
            snprintf(why, cap, "%s: %s", c->u.str.s, e.msg);
            sub_free(s);
            return -1;
        }
        if (!s) {
            api->where_free(w);
            continue;
        }
        s->wheres[s->ncolls] = w;
        if (!(s->colls[s->ncolls++] = strdup(c->u.str.s))) {
            snprintf(why, cap, "out of memory");
            sub_free(s);
            return -1;
        }
    }
    if (out)
        *out = s;
    return 0;
}

static int add_sub(sub *s)
{
    sub **g = realloc(subs, (nsubs + 1) * sizeof *g);
    if (!g)
        return -1;
    subs = g;
    subs[nsubs++] = s;
    return 0;
}

/* The outbox key of (webhook, seq): '/' cannot occur in an id, so the keys
 * of one webhook are exactly those in (ID/, ID0). */
static void outbox_key(char *buf, size_t cap, const char *id, uint64_t seq)
{
    snprintf(buf, cap, "%s/%020" PRIu64, id, seq);
}

static int oom(crm_ctx *ctx) { return api->error(ctx, CRM_INTERNAL, "out of memory"); }

/* The seq of s's last outbox record (0: none), an indexed walk of one. */
static int last_queued(crm_ctx *ctx, const sub *s, uint64_t *seq)
{
    char lo[WH_ID_MAX + 4], hi[WH_ID_MAX + 4], where_json[2 * sizeof lo + 64];
    crm_value *where = NULL, *page = NULL;
    const crm_value *recs;
    int rc;
    *seq = 0;
    snprintf(lo, sizeof lo, "%s/", s->id);
    snprintf(hi, sizeof hi, "%s0", s->id);
    snprintf(where_json, sizeof where_json, "{\"key\": {\"gt\": \"%s\", \"lt\": \"%s\"}}", lo, hi);
    if (api->from_json(where_json, strlen(where_json), &where, NULL) != CRM_OK)
        return api->error(ctx, CRM_INTERNAL, "outbox query");
    rc = api->query(ctx, OUTBOX, where, "-key", 1, NULL, &page);
    api->value_free(where);
    if (rc != CRM_OK)
        return rc;
    recs = api->map_get(page, "records");
    if (recs && recs->type == CRM_T_ARR && recs->u.arr.n > 0)
        *seq = (uint64_t)int_of(recs->u.arr.items[0], "seq", 0);
    api->value_free(page);
    return CRM_OK;
}

/* Loads every subscription, once per process, on the first hook or timer
 * call (init has no transaction).  Their outbox is counted later, by the
 * poll, in pages. */
static int ensure_loaded(crm_ctx *ctx)
{
    char *after = NULL;
    int rc = CRM_OK;
    if (loaded)
        return CRM_OK;
    for (;;) {
        crm_value *page = NULL;
        const crm_value *recs, *next;
        rc = api->query(ctx, SUBS, NULL, NULL, 1000, after, &page);
        free(after);
        after = NULL;
        if (rc != CRM_OK)
            break;
        recs = api->map_get(page, "records");
        next = api->map_get(page, "next");
        for (size_t i = 0; recs && recs->type == CRM_T_ARR && i < recs->u.arr.n; i++) {
            sub *s;
            char why[300];
            const char *id = str_of(recs->u.arr.items[i], "id");
            if (id && find_sub(id))
                continue;
            if ((int)nsubs >= cfg.max_subs) {
                api->log(self, CRM_LOG_WARN, "webhook %s ignored: more than max_subscriptions (%d)",
                         id ? id : "?", cfg.max_subs);
                continue;
            }
            if (parse_sub(recs->u.arr.items[i], &s, why, sizeof why) != 0) {
                api->log(self, CRM_LOG_WARN, "webhook %s ignored: %s", id ? id : "?", why);
                continue;
            }
            if (add_sub(s) != 0) {
                sub_free(s);
                api->value_free(page);
                return oom(ctx);
            }
            if ((rc = last_queued(ctx, s, &s->count_upto)) != CRM_OK)
                break;
            s->counted = s->count_upto == 0;
        }
        if (rc != CRM_OK) {
            api->value_free(page);
            break;
        }
        if (next && next->type == CRM_T_STR && !(after = strdup(next->u.str.s))) {
            api->value_free(page);
            return oom(ctx);
        }
        api->value_free(page);
        if (!after)
            break;
    }
    if (rc != CRM_OK) {
        /* forget the partial load: the next call starts again */
        while (nsubs)
            remove_sub(subs[0]);
        return rc;
    }
    loaded = 1;
    api->log(self, CRM_LOG_INFO, "%zu webhook subscriptions loaded", nsubs);
    return nsubs ? api->schedule(ctx, 0, POLL_TIMER, NULL, "poll") : CRM_OK;
}

/* ---- the after-hook ---- */

static int set_str(crm_value *m, const char *k, const char *s)
{
    return api->map_set(m, k, api->value_str(s, strlen(s)));
}

/* The JSON body of a change: record and prev in full when it fits
 * max_body, else without prev, else without either ("truncated": true;
 * the receiver reads the record by id).  Caller frees with mem_free. */
static char *make_body(crm_ctx *ctx, const crm_event *ev, size_t *len)
{
    for (int level = 0; level < 3; level++) {
        crm_value *m = api->value_map();
        char *json;
        if (!m || api->map_set(m, "seq", api->value_int((int64_t)ev->seq)) ||
            set_str(m, "collection", ev->collection) || set_str(m, "op", ev->op) ||
            set_str(m, "id", ev->id) || api->map_set(m, "at", api->value_int(api->now(ctx))) ||
            (level < 2 && ev->record && api->map_set(m, "record", api->value_dup(ev->record))) ||
            (level < 1 && ev->prev && api->map_set(m, "prev", api->value_dup(ev->prev))) ||
            (level == 2 && api->map_set(m, "truncated", api->value_bool(1)))) {
            api->value_free(m);
            return NULL;
        }
        json = api->to_json(m, len);
        api->value_free(m);
        if (!json || *len <= cfg.max_body || level == 2)
            return json;
        api->mem_free(json);
    }
    return NULL;
}

static int dead_letter(crm_ctx *ctx, const char *webhook, uint64_t seq, const char *coll,
                       const char *op, const char *record_id, const char *reason, int attempts,
                       long status, const char *error, const char *body)
{
    crm_value *r = api->value_map();
    int rc;
    if (!r || set_str(r, "webhook", webhook) || api->map_set(r, "seq", api->value_int((int64_t)seq)) ||
        set_str(r, "collection", coll) || set_str(r, "op", op) || set_str(r, "record_id", record_id) ||
        set_str(r, "reason", reason) || api->map_set(r, "attempts", api->value_int(attempts)) ||
        api->map_set(r, "last_status", api->value_int(status)) ||
        (error && *error && set_str(r, "last_error", error)) || (body && set_str(r, "body", body)) ||
        api->map_set(r, "failed_at", api->value_int(api->now(ctx)))) {
        api->value_free(r);
        return oom(ctx);
    }
    rc = api->create(ctx, DEAD, r, NULL);
    api->value_free(r);
    return rc;
}

static int matches(const sub *s, const crm_event *ev)
{
    for (size_t i = 0; i < s->ncolls; i++)
        if (strcmp(s->colls[i], ev->collection) == 0)
            return (ev->record && api->where_match(s->wheres[i], ev->record)) ||
                   (ev->prev && api->where_match(s->wheres[i], ev->prev));
    return 0;
}

/* A change to a webhooks record, in feed order with the changes it governs. */
static int on_sub_change(crm_ctx *ctx, const crm_event *ev)
{
    sub *old = find_sub(ev->id), *s = NULL;
    char why[300];
    if (strcmp(ev->op, "delete") == 0 || !ev->record) {
        if (old && !old->deleted) {
            old->deleted = 1;
            old->active = 0;
            wh_http_drop(old->id, ++old->gen);
        }
        return api->schedule(ctx, 0, POLL_TIMER, NULL, "poll");
    }
    if (parse_sub(ev->record, &s, why, sizeof why) != 0) {
        api->log(self, CRM_LOG_WARN, "webhook %s: %s; it is inactive", ev->id, why);
        if (old) {
            old->active = 0;
            wh_http_drop(old->id, ++old->gen);
        }
        return CRM_OK;
    }
    if (!old) {
        if ((int)nsubs >= cfg.max_subs) {
            api->log(self, CRM_LOG_WARN, "webhook %s ignored: more than max_subscriptions (%d)",
                     ev->id, cfg.max_subs);
            sub_free(s);
            return CRM_OK;
        }
        if (add_sub(s) != 0) {
            sub_free(s);
            return oom(ctx);
        }
        s->counted = 1; /* new: nothing in its outbox */
        return CRM_OK;
    }
    /* same subscription, new definition: keep its counters and position */
    int reset = strcmp(old->url, s->url) != 0 || strcmp(old->secret, s->secret) != 0 ||
                old->active != s->active || old->deleted;
    s->gen = old->gen;
    s->handed = old->handed;
    s->inflight = old->inflight;
    s->pending = old->pending;
    s->counted = old->counted;
    s->count_from = old->count_from;
    s->count_upto = old->count_upto;
    s->delivered = old->delivered;
    s->failed = old->failed;
    s->dead = old->dead;
    for (size_t i = 0; i < nsubs; i++)
        if (subs[i] == old)
            subs[i] = s;
    sub_free(old);
    if (reset) {
        /* jobs handed with the old URL or secret are dropped and handed
         * again from the outbox */
        wh_http_drop(s->id, ++s->gen);
        s->handed = 0;
        s->inflight = 0;
    }
    return api->schedule(ctx, 0, POLL_TIMER, NULL, "poll");
}

/* privacy.erase replaced a delivery's body (docs/privacy.md): the worker
 * may hold the old body in memory, queued or waiting for a retry.  Every
 * job of that webhook is forgotten and handed again from the outbox, where
 * feed() drops the erased ones. */
static int on_outbox_change(crm_ctx *ctx, crm_event *ev)
{
    const char *body = str_of(ev->record, "body");
    sub *s;
    int rc;
    /* the erasure scrubs its own change's prev too: the body alone tells */
    if (strcmp(ev->op, "update") != 0 || !body || strcmp(body, ERASED) != 0)
        return CRM_OK;
    if ((rc = ensure_loaded(ctx)) != CRM_OK)
        return rc;
    if (!(s = find_sub(str_of(ev->record, "webhook"))) || s->deleted)
        return CRM_OK;
    wh_http_drop(s->id, ++s->gen);
    s->handed = 0;
    s->inflight = 0;
    return api->schedule(ctx, 0, POLL_TIMER, NULL, "poll");
}

static int on_change(crm_ctx *ctx, crm_event *ev, void *ud)
{
    char *body = NULL;
    size_t blen = 0;
    int rc, queued = 0;
    (void)ud;
    if (strcmp(ev->collection, OUTBOX) == 0)
        return on_outbox_change(ctx, ev);
    if (strcmp(ev->collection, DEAD) == 0)
        return CRM_OK;
    if ((rc = ensure_loaded(ctx)) != CRM_OK)
        return rc;
    if (strcmp(ev->collection, SUBS) == 0)
        return on_sub_change(ctx, ev);
    for (size_t i = 0; i < nsubs; i++) {
        sub *s = subs[i];
        char key[WH_ID_MAX + 32];
        if (!s->active || s->deleted || !matches(s, ev))
            continue;
        if (!body && !(body = make_body(ctx, ev, &blen)))
            return oom(ctx);
        if (s->pending >= cfg.max_queue) {
            if (!s->full_logged)
                api->log(self, CRM_LOG_WARN,
                         "webhook %s: %ld deliveries queued (max_queue); new changes go to %s",
                         s->id, s->pending, DEAD);
            s->full_logged = 1;
            rc = dead_letter(ctx, s->id, ev->seq, ev->collection, ev->op, ev->id, "queue_full", 0,
                             0, "queue full", NULL);
            if (rc == CRM_OK)
                s->dead++;
        } else {
            crm_value *r = api->value_map();
            outbox_key(key, sizeof key, s->id, ev->seq);
            if (!r || set_str(r, "webhook", s->id) || set_str(r, "key", key) ||
                api->map_set(r, "seq", api->value_int((int64_t)ev->seq)) ||
                set_str(r, "collection", ev->collection) || set_str(r, "op", ev->op) ||
                set_str(r, "record_id", ev->id) || api->map_set(r, "body", api->value_str(body, blen))) {
                api->value_free(r);
                api->mem_free(body);
                return oom(ctx);
            }
            rc = api->create(ctx, OUTBOX, r, NULL);
            api->value_free(r);
            if (rc == CRM_OK) {
                s->pending++;
                queued = 1;
            } else if (rc == CRM_CONFLICT) {
                rc = CRM_OK; /* this (webhook, seq) is queued already */
            }
        }
        if (rc == CRM_VALIDATION || rc == CRM_NOT_FOUND) {
            /* the webhooks record is gone under us (its delete is further
             * down the feed): this change is not for it */
            api->log(self, CRM_LOG_WARN, "webhook %s: seq %" PRIu64 " not queued: %s", s->id,
                     ev->seq, api->errmsg(ctx));
            rc = CRM_OK;
        }
        if (rc != CRM_OK) {
            api->mem_free(body);
            return rc; /* the kernel retries the change */
        }
    }
    api->mem_free(body);
    return queued ? api->schedule(ctx, 0, POLL_TIMER, NULL, "poll") : CRM_OK;
}

/* ---- the poll timer ---- */

/* Records one result in ctx's transaction; counters change only in
 * apply_counts, once the whole poll succeeded. */
static int record_result(crm_ctx *ctx, wh_result *r)
{
    crm_value *rec = NULL, *patch;
    int rc;
    r->removed = 0;
    if (r->kind == WH_DELIVERED) {
        rc = api->remove(ctx, OUTBOX, r->outbox_id, 0);
        r->removed = rc == CRM_OK;
        return rc == CRM_NOT_FOUND ? CRM_OK : rc;
    }
    rc = api->get(ctx, OUTBOX, r->outbox_id, &rec);
    if (rc == CRM_NOT_FOUND)
        return CRM_OK; /* deleted by an admin meanwhile */
    if (rc != CRM_OK)
        return rc;
    if (r->kind == WH_DEAD) {
        rc = dead_letter(ctx, r->sub, r->seq, str_of(rec, "collection"), str_of(rec, "op"),
                         str_of(rec, "record_id"), "attempts", r->attempts, r->status, r->error,
                         str_of(rec, "body"));
        if (rc == CRM_OK)
            rc = api->remove(ctx, OUTBOX, r->outbox_id, 0);
        r->removed = rc == CRM_OK;
        api->log(self, CRM_LOG_WARN, "webhook %s: seq %" PRIu64 " dead after %d attempts: %s",
                 r->sub, r->seq, r->attempts, r->error);
        api->value_free(rec);
        return rc;
    }
    api->value_free(rec);
    if (!(patch = api->value_map()) || api->map_set(patch, "attempts", api->value_int(r->attempts)) ||
        api->map_set(patch, "last_status", api->value_int(r->status)) ||
        set_str(patch, "last_error", r->error) ||
        api->map_set(patch, "last_attempt_at", api->value_int(api->now(ctx)))) {
        api->value_free(patch);
        return oom(ctx);
    }
    rc = api->update(ctx, OUTBOX, r->outbox_id, patch, 0, NULL);
    api->value_free(patch);
    return rc == CRM_NOT_FOUND ? CRM_OK : rc;
}

static void apply_counts(const wh_result *r)
{
    sub *s = find_sub(r->sub);
    if (!s)
        return;
    if (r->kind == WH_FAILED) {
        s->failed++;
        return;
    }
    if (r->kind == WH_DELIVERED)
        s->delivered++;
    else
        s->dead++;
    if (r->removed && s->pending > 0) /* not twice for a delivery made twice */
        s->pending--;
    if (s->pending < cfg.max_queue)
        s->full_logged = 0;
    if (r->gen == s->gen && s->inflight > 0)
        s->inflight--;
}

/* Hands s's next outbox records to the worker. */
static int feed(crm_ctx *ctx, sub *s, int *progress)
{
    char lo[WH_ID_MAX + 32], hi[WH_ID_MAX + 2];
    char where_json[2 * sizeof lo + 64];
    crm_value *where = NULL, *page = NULL;
    const crm_value *recs;
    size_t room = (size_t)(cfg.window - s->inflight), n = 0;
    int rc;
    outbox_key(lo, sizeof lo, s->id, s->handed);
    snprintf(hi, sizeof hi, "%s0", s->id); /* '0' follows '/' */
    snprintf(where_json, sizeof where_json, "{\"key\": {\"gt\": \"%s\", \"lt\": \"%s\"}}", lo, hi);
    if ((rc = api->from_json(where_json, strlen(where_json), &where, NULL)) != CRM_OK)
        return api->error(ctx, CRM_INTERNAL, "outbox query");
    rc = api->query(ctx, OUTBOX, where, "key", room, NULL, &page);
    api->value_free(where);
    if (rc != CRM_OK)
        return rc;
    recs = api->map_get(page, "records");
    for (size_t i = 0; recs && recs->type == CRM_T_ARR && i < recs->u.arr.n; i++) {
        const crm_value *r = recs->u.arr.items[i];
        const char *body = str_of(r, "body"), *id = str_of(r, "id");
        int64_t seq = int_of(r, "seq", 0);
        wh_job *j;
        if (body && id && seq > 0 && strcmp(body, ERASED) == 0) {
            /* erased by privacy.erase: never sent; the erasure's own
             * update of the record is delivered in its place */
            if ((rc = api->remove(ctx, OUTBOX, id, 0)) != CRM_OK && rc != CRM_NOT_FOUND) {
                api->value_free(page);
                return rc;
            }
            api->log(self, CRM_LOG_INFO,
                     "webhook %s: delivery seq %lld (%s %s/%s) dropped: privacy.erase erased it",
                     s->id, (long long)seq, str_of(r, "op") ? str_of(r, "op") : "?",
                     str_of(r, "collection") ? str_of(r, "collection") : "?",
                     str_of(r, "record_id") ? str_of(r, "record_id") : "?");
            if (rc == CRM_OK && s->pending > 0)
                s->pending--;
            s->handed = (uint64_t)seq;
            s->dropped++;
            n++;
            continue;
        }
        j = calloc(1, sizeof *j);
        if (!j || !body || !id || seq <= 0 || !(j->url = strdup(s->url)) ||
            !(j->secret = strdup(s->secret)) || !(j->outbox_id = strdup(id)) ||
            !(j->body = strdup(body))) {
            wh_job_free(j);
            if (!body || !id || seq <= 0)
                continue;
            api->value_free(page);
            return oom(ctx);
        }
        snprintf(j->sub, sizeof j->sub, "%s", s->id);
        j->gen = s->gen;
        j->seq = (uint64_t)seq;
        j->blen = strlen(body);
        j->attempts = (int)int_of(r, "attempts", 0);
        s->handed = (uint64_t)seq;
        s->inflight++;
        n++;
        wh_http_submit(j);
    }
    api->value_free(page);
    if (n)
        *progress = 1;
    else if (s->inflight == 0 && s->counted)
        s->pending = 0; /* nothing left: the count was off (a rolled-back unit) */
    return CRM_OK;
}

/* Counts one page of s's outbox (keys up to count_upto, the largest one
 * at load; the after-hook counts the later ones as it writes them). */
static int count_page(crm_ctx *ctx, sub *s)
{
    char lo[WH_ID_MAX + 32], hi[WH_ID_MAX + 32], where_json[2 * sizeof lo + 64];
    crm_value *where = NULL, *page = NULL;
    const crm_value *recs;
    int rc;
    outbox_key(lo, sizeof lo, s->id, s->count_from);
    outbox_key(hi, sizeof hi, s->id, s->count_upto);
    snprintf(where_json, sizeof where_json, "{\"key\": {\"gt\": \"%s\", \"lte\": \"%s\"}}", lo, hi);
    if (api->from_json(where_json, strlen(where_json), &where, NULL) != CRM_OK)
        return api->error(ctx, CRM_INTERNAL, "outbox query");
    rc = api->query(ctx, OUTBOX, where, "key", 1000, NULL, &page);
    api->value_free(where);
    if (rc != CRM_OK)
        return rc;
    recs = api->map_get(page, "records");
    size_t n = recs && recs->type == CRM_T_ARR ? recs->u.arr.n : 0;
    s->pending += (long)n;
    if (n == 0 || n < 1000)
        s->counted = 1;
    else
        s->count_from = (uint64_t)int_of(recs->u.arr.items[n - 1], "seq", 0);
    api->value_free(page);
    return CRM_OK;
}

/* Deletes up to 200 outbox records of a deleted subscription; frees it
 * once none are left. */
static int purge(crm_ctx *ctx, sub *s, int *gone)
{
    crm_value *where = NULL, *page = NULL;
    const crm_value *recs;
    char where_json[WH_ID_MAX + 64];
    int rc;
    *gone = 0;
    snprintf(where_json, sizeof where_json, "{\"webhook\": \"%s\"}", s->id);
    if (api->from_json(where_json, strlen(where_json), &where, NULL) != CRM_OK)
        return api->error(ctx, CRM_INTERNAL, "outbox query");
    rc = api->query(ctx, OUTBOX, where, NULL, 200, NULL, &page);
    api->value_free(where);
    if (rc != CRM_OK)
        return rc;
    recs = api->map_get(page, "records");
    for (size_t i = 0; rc == CRM_OK && recs && recs->type == CRM_T_ARR && i < recs->u.arr.n; i++) {
        const char *id = str_of(recs->u.arr.items[i], "id");
        if (id && (rc = api->remove(ctx, OUTBOX, id, 0)) == CRM_NOT_FOUND)
            rc = CRM_OK;
    }
    *gone = rc == CRM_OK && (!recs || recs->type != CRM_T_ARR || recs->u.arr.n == 0);
    api->value_free(page);
    return rc;
}

static int on_poll(crm_ctx *ctx, const char *name, const crm_value *payload, void *ud)
{
    wh_result *results, *r;
    int rc, progress = 0, busy = 0;
    (void)name;
    (void)payload;
    (void)ud;
    if ((rc = ensure_loaded(ctx)) != CRM_OK)
        return rc;
    /* 1. results, all or none: a failed write undoes this transaction, so
     *    the list goes back for the retry */
    results = wh_http_results();
    for (r = results; r; r = r->next)
        if ((rc = record_result(ctx, r)) != CRM_OK) {
            wh_http_requeue(results);
            return rc;
        }
    /* counters move now; if the commit still fails, the outbox records
     * stay and are delivered again after a restart (at least once) */
    for (r = results; r; r = r->next) {
        apply_counts(r);
        progress = 1;
    }
    while (results) {
        r = results;
        results = r->next;
        wh_result_free(r);
    }
    /* 2. per subscription: purge, count, hand over */
    for (size_t i = 0; i < nsubs;) {
        sub *s = subs[i];
        if (s->deleted) {
            int gone;
            if ((rc = purge(ctx, s, &gone)) != CRM_OK)
                return rc;
            if (gone) {
                remove_sub(s); /* subs[i] is another one now */
                continue;
            }
            busy = 1;
            i++;
            continue;
        }
        if (!s->counted && (rc = count_page(ctx, s)) != CRM_OK)
            return rc;
        if (s->active && s->inflight < cfg.window && (s->pending > s->inflight || !s->counted))
            if ((rc = feed(ctx, s, &progress)) != CRM_OK)
                return rc;
        if (!s->counted || s->inflight > 0 || (s->active && s->pending > 0))
            busy = 1;
        i++;
    }
    if (!busy)
        return CRM_OK; /* nothing outstanding: the after-hook sets the next poll */
    /* 3. again soon while things move; slower while only retries wait */
    poll_every = progress ? cfg.poll_s : poll_every * 2;
    if (poll_every < cfg.poll_s)
        poll_every = cfg.poll_s;
    if (poll_every > cfg.idle_poll_s)
        poll_every = cfg.idle_poll_s;
    return api->schedule(ctx, poll_every, POLL_TIMER, NULL, "poll");
}

/* ---- before-hooks ---- */

static int check_sub(crm_ctx *ctx, crm_event *ev, void *ud)
{
    char why[300];
    (void)ud;
    if (!ev->record)
        return CRM_OK;
    if (parse_sub(ev->record, NULL, why, sizeof why) != 0)
        return api->error(ctx, CRM_VALIDATION, "webhooks/%s: %s", ev->id ? ev->id : "(new)", why);
    if (strcmp(ev->op, "create") == 0) {
        crm_value *page = NULL;
        const crm_value *recs;
        /* counted from the records, not the cache: this transaction may
         * hold creates that are not committed yet */
        int rc = api->query(ctx, SUBS, NULL, NULL, (size_t)cfg.max_subs, NULL, &page);
        if (rc != CRM_OK)
            return rc;
        recs = api->map_get(page, "records");
        size_t n = recs && recs->type == CRM_T_ARR ? recs->u.arr.n : 0;
        api->value_free(page);
        if ((int)n >= cfg.max_subs)
            return api->error(ctx, CRM_VALIDATION, "at most %d webhooks (max_subscriptions)",
                              cfg.max_subs);
    }
    return CRM_OK;
}

static int own_only(crm_ctx *ctx, crm_event *ev, void *ud)
{
    (void)ud;
    if (api->write_origin(ctx) == self || strcmp(ev->op, "delete") == 0)
        return CRM_OK;
    return api->error(ctx, CRM_REJECTED, "%s is written by the webhooks plugin only (delete is allowed)",
                      ev->collection);
}

/* ---- method: webhooks.status ---- */

static int m_status(crm_ctx *ctx, const crm_value *params, crm_value **result, void *ud)
{
    crm_value *arr, *res;
    int rc;
    (void)params;
    (void)ud;
    if ((rc = ensure_loaded(ctx)) != CRM_OK)
        return rc;
    if (!(res = api->value_map()) || !(arr = api->value_arr()) || api->map_set(res, "webhooks", arr)) {
        api->value_free(res);
        return oom(ctx);
    }
    for (size_t i = 0; i < nsubs; i++) {
        const sub *s = subs[i];
        crm_value *m = api->value_map();
        if (!m || set_str(m, "id", s->id) || api->map_set(m, "active", api->value_bool(s->active)) ||
            api->map_set(m, "deleted", api->value_bool(s->deleted)) ||
            api->map_set(m, "pending", api->value_int(s->pending)) ||
            api->map_set(m, "counted", api->value_bool(s->counted)) ||
            api->map_set(m, "in_flight", api->value_int(s->inflight)) ||
            api->map_set(m, "handed_seq", api->value_int((int64_t)s->handed)) ||
            api->map_set(m, "delivered", api->value_int(s->delivered)) ||
            api->map_set(m, "failed_attempts", api->value_int(s->failed)) ||
            api->map_set(m, "dead", api->value_int(s->dead)) ||
            api->map_set(m, "dropped", api->value_int(s->dropped)) || api->arr_push(arr, m)) {
            api->value_free(res);
            return oom(ctx);
        }
    }
    if (api->map_set(res, "worker_backlog", api->value_int((int64_t)wh_http_backlog()))) {
        api->value_free(res);
        return oom(ctx);
    }
    *result = res;
    return CRM_OK;
}

/* ---- init, fini ---- */

static double cfg_num(crm_plugin *p, const char *key, double def)
{
    const crm_value *v = api->config(p, key);
    if (v && v->type == CRM_T_INT)
        return (double)v->u.i;
    if (v && v->type == CRM_T_NUM)
        return v->u.n;
    return def;
}

static int wh_init(crm_plugin *p, const crm_api *a, char *errbuf, size_t cap)
{
    int rc;
    api = a;
    self = p;
    if (!CRM_API_HAS(api, where_free)) {
        snprintf(errbuf, cap, "this crmd has no where_compile (crmd 0.2 needed)");
        return CRM_INTERNAL;
    }
    cfg.max_subs = (int)cfg_num(p, "max_subscriptions", 100);
    cfg.max_queue = (int)cfg_num(p, "max_queue", 10000);
    cfg.window = (int)cfg_num(p, "window", 32);
    cfg.max_url = (size_t)cfg_num(p, "max_url_bytes", 2048);
    cfg.max_body = (size_t)cfg_num(p, "max_body_bytes", 262144);
    cfg.poll_s = cfg_num(p, "poll_seconds", 0.05);
    cfg.idle_poll_s = cfg_num(p, "idle_poll_seconds", 2);
    cfg.http.connect_timeout_ms = (long)cfg_num(p, "connect_timeout_ms", 5000);
    cfg.http.timeout_ms = (long)cfg_num(p, "timeout_ms", 15000);
    cfg.http.max_attempts = (int)cfg_num(p, "max_attempts", 12);
    cfg.http.retry_base_ms = (long)cfg_num(p, "retry_base_ms", 2000);
    cfg.http.retry_max_ms = (long)cfg_num(p, "retry_max_ms", 900000);
    if (cfg.max_subs < 1 || cfg.max_subs > 1000 || cfg.max_queue < 1 || cfg.window < 1 ||
        cfg.window > 1000 || cfg.max_url < 16 || cfg.max_url > 2048 || cfg.max_body < 1024 ||
        cfg.max_body > 16 << 20 || cfg.poll_s <= 0 || cfg.idle_poll_s < cfg.poll_s ||
        cfg.http.connect_timeout_ms < 1 || cfg.http.timeout_ms < 1 || cfg.http.max_attempts < 1 ||
        cfg.http.retry_base_ms < 1 || cfg.http.retry_max_ms < cfg.http.retry_base_ms) {
        snprintf(errbuf, cap,
                 "webhooks.json: need max_subscriptions 1..1000, max_queue >= 1, window 1..1000,"
                 " max_url_bytes 16..2048, max_body_bytes 1 KiB..16 MiB, poll_seconds > 0,"
                 " idle_poll_seconds >= poll_seconds, timeouts >= 1, max_attempts >= 1,"
                 " retry_max_ms >= retry_base_ms >= 1");
        return CRM_BAD_REQUEST;
    }
    poll_every = cfg.poll_s;
    if ((rc = api->on(p, "*.*", CRM_AFTER, "webhooks.feed", on_change, NULL)) ||
        (rc = api->on(p, SUBS ".create", CRM_BEFORE, "webhooks.check_create", check_sub, NULL)) ||
        (rc = api->on(p, SUBS ".update", CRM_BEFORE, "webhooks.check_update", check_sub, NULL)) ||
        (rc = api->on(p, OUTBOX ".*", CRM_BEFORE, "webhooks.outbox_own", own_only, NULL)) ||
        (rc = api->on(p, DEAD ".*", CRM_BEFORE, "webhooks.dead_own", own_only, NULL)) ||
        (rc = api->on_timer(p, POLL_TIMER, on_poll, NULL)) ||
        (rc = api->method(p, "webhooks.status", m_status, NULL)))
        return rc;
    if (wh_http_start(&cfg.http, errbuf, cap) != 0)
        return CRM_INTERNAL;
    return CRM_OK;
}

static void wh_fini(crm_plugin *p, const crm_api *a)
{
    (void)p;
    (void)a;
    wh_http_stop();
    while (nsubs)
        remove_sub(subs[0]);
    free(subs);
    subs = NULL;
    loaded = 0;
}

CRM_PLUGIN_DECLARE("webhooks", "1.0", wh_init, wh_fini)
