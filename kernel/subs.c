/*
 * subs -- record subscriptions: registering them (where, snapshot, since
 * replay) and pushing committed changes from the feed to them.
 *
 * Subscriptions are registered between commits on the one loop thread, so a
 * snapshot or a since-replay and the live pushes that follow meet exactly at
 * the returned seq: nothing missed, nothing sent twice.  A change that makes
 * a record stop matching a where is pushed as "leave" (the feed keeps prev).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net_int.h"

#define SNAPSHOT_MAX 100000

/* One feed entry's change event, encoded once for every subscriber that
 * sees it the same way (format, hidden fields, op, record or not): all but
 * its first two keys, {"event": "change", "sub": N}, which differ per
 * subscription.  Encoding per subscriber made the fan-out to 1,000
 * subscribers cost the loop 1,000 record copies and encodings a change. */
typedef struct enc_cache {
    int msgpack, with_record;
    const crm_value *hidden;
    const char *op;
    unsigned char *body; /* owned: the encoded map of the other keys */
    size_t len;
} enc_cache;

typedef struct fanctx {
    crm_net *n;
    crm_sess *only;   /* replay for one subscription */
    crm_sub *only_sub;
    uint64_t upto;    /* fanout: push no entry past this seq (not yet durable) */
    enc_cache cache[8]; /* for the entry being pushed (fan_entry) */
    size_t ncache;
} fanctx;

static void sub_free(crm_sub *sub)
{
    crm_value_free(sub->agg);
    crm_value_free(sub->groups);
    crm_filter_free(sub->filter);
    crm_value_free(sub->where);
    free(sub);
}

void crm_sub_remove(crm_sess *s, crm_sub *sub)
{
    for (crm_sub **pp = &s->subs; *pp; pp = &(*pp)->next)
        if (*pp == sub) {
            *pp = sub->next;
            break;
        }
    sub_free(sub);
    s->nsubs--;
    s->net->subs_now--;
}

/* Pushes entry e to sub if it concerns it.  Returns -1 when the
 * subscription overflowed and was ended. */
/* The keys of e's change event after {"event", "sub"}, in their order,
 * set on m: the record (without the hidden fields) when with_record. */
static void change_fields(crm_value *m, const crm_feed_entry *e, const char *op, int with_record,
                          const crm_value *hidden)
{
    crm_map_set(m, "seq", crm_value_int((int64_t)e->seq));
    crm_map_set(m, "collection", crm_value_cstr(e->coll));
    crm_map_set(m, "op", crm_value_cstr(op));
    crm_map_set(m, "id", crm_value_cstr(e->id));
    if (with_record)
        crm_map_set(m, "record", crm_strip_copy(hidden, e->record));
    crm_map_set(m, "prev_rev", crm_value_int(e->prev_rev));
}

/* The other keys of e's change event as seen by (msgpack, hidden, op,
 * with_record), encoded once per entry; NULL when it cannot be (OOM, cache
 * full): the caller then encodes the event itself. */
static const enc_cache *cached_body(fanctx *fc, int msgpack, int with_record,
                                    const crm_value *hidden, const char *op,
                                    const crm_feed_entry *e)
{
    enc_cache *c;
    crm_value *m;
    for (size_t i = 0; i < fc->ncache; i++) {
        c = &fc->cache[i];
        if (c->msgpack == msgpack && c->with_record == with_record && c->hidden == hidden &&
            c->op == op)
            return c->body ? c : NULL;
    }
    if (fc->ncache == sizeof fc->cache / sizeof *fc->cache)
        return NULL;
    c = &fc->cache[fc->ncache++];
    memset(c, 0, sizeof *c);
    c->msgpack = msgpack;
    c->with_record = with_record;
    c->hidden = hidden;
    c->op = op;
    m = crm_value_map();
    change_fields(m, e, op, with_record, hidden);
    c->body = msgpack ? (unsigned char *)crm_mp_encode(m, &c->len)
                      : (unsigned char *)crm_json_encode(m, &c->len);
    crm_value_free(m);
    /* a fixmap header (msgpack) or "{" and "}" (JSON) around the keys */
    if (c->body && (msgpack ? (c->len < 1 || (c->body[0] & 0xf0) != 0x80)
                            : (c->len < 2 || c->body[0] != '{'))) {
        free(c->body);
        c->body = NULL;
    }
    return c->body ? c : NULL;
}

static void cache_clear(fanctx *fc)
{
    for (size_t i = 0; i < fc->ncache; i++)
        free(fc->cache[i].body);
    fc->ncache = 0;
}

/* {"event": "change", "sub": id, <the cached keys>} to s; -1 on overflow. */
static int send_change(crm_sess *s, int id, const enc_cache *c)
{
    char head[64];
    size_t hl, len;
    unsigned char *buf;
    int rc;
    if (c->msgpack) {
        /* fixmap of 2 + n entries; "event": "change", "sub": int32 */
        unsigned n = (unsigned)(c->body[0] & 0x0f);
        unsigned char *h = (unsigned char *)head;
        if (n + 2 > 15)
            return -1; /* cannot happen: at most 6 keys */
        h[0] = (unsigned char)(0x80 | (n + 2));
        memcpy(h + 1, "\xa5" "event" "\xa6" "change" "\xa3" "sub", 17);
        h[18] = 0xd2;
        h[19] = (unsigned char)((uint32_t)id >> 24);
        h[20] = (unsigned char)((uint32_t)id >> 16);
        h[21] = (unsigned char)((uint32_t)id >> 8);
        h[22] = (unsigned char)id;
        hl = 23;
    } else {
        hl = (size_t)snprintf(head, sizeof head, "{\"event\":\"change\",\"sub\":%d,", id);
    }
    len = hl + c->len - 1; /* the body without its "{" or map header */
    if (!(buf = malloc(len)))
        return -1;
    memcpy(buf, head, hl);
    memcpy(buf + hl, c->body + 1, c->len - 1);
    rc = crm_sess_send(s, buf, len, 1);
    free(buf);
    return rc;
}

static int push_entry(crm_sess *s, crm_sub *sub, const crm_feed_entry *e, fanctx *fc)
{
    int now = e->record && crm_filter_match(sub->filter, e->record);
    int before = e->prev && crm_filter_match(sub->filter, e->prev);
    const char *op;
    crm_value *m = NULL;
    int rc = 0;
    if (e->seq <= sub->from_seq || strcmp(sub->coll, e->coll) != 0)
        return 0;
    if (sub->agg) { /* figures are recomputed, coalesced, by crm_subs_agg_tick */
        sub->from_seq = e->seq;
        if (now || before) {
            sub->dirty = 1;
            crm_net_schedule_agg(s->net, CRM_AGG_COALESCE_MS);
        }
        return 0;
    }
    switch (e->op) {
    case CRM_OP_CREATE:
        if (!now)
            return 0;
        op = "create";
        break;
    case CRM_OP_UPDATE:
        if (now)
            op = "update";
        else if (before)
            op = "leave";
        else
            return 0;
        break;
    default:
        if (!before)
            return 0;
        op = "delete";
        break;
    }
    {
        const crm_value *hidden = now ? crm_role_hidden(s->net->schema, s->role, e->coll) : NULL;
        const enc_cache *ec = fc ? cached_body(fc, s->msgpack, now, hidden, op, e) : NULL;
        if (ec) {
            sub->from_seq = e->seq;
            if (send_change(s, sub->id, ec) == 0)
                return 0;
            goto overflow;
        }
    }
    m = crm_value_map();
    crm_map_set(m, "event", crm_value_cstr("change"));
    crm_map_set(m, "sub", crm_value_int(sub->id));
    change_fields(m, e, op, now, crm_role_hidden(s->net->schema, s->role, e->coll));
    sub->from_seq = e->seq;
    if (crm_sess_send_value(s, m, 1) != 0) {
        crm_value *o;
    overflow:
        /* past its send-queue limit: tell it (always queued) and end the subscription */
        o = crm_value_map();
        crm_map_set(o, "event", crm_value_cstr("overflow"));
        crm_map_set(o, "sub", crm_value_int(sub->id));
        crm_map_set(o, "seq", crm_value_int((int64_t)e->seq - 1));
        crm_sess_send_value(s, o, 0);
        crm_value_free(o);
        s->net->overflows++;
        crm_sub_remove(s, sub);
        rc = -1;
    }
    crm_value_free(m);
    return rc;
}

static int fan_entry(void *ud, const crm_feed_entry *e)
{
    fanctx *fc = ud;
    if (fc->only) {
        /* A replay for one subscription: when it overflows push_entry ends
         * (frees) it, so stop reading the feed for it (found by
         * fuzz/fuzz_request.c: a use after free on the next entry). */
        if (fc->only_sub && push_entry(fc->only, fc->only_sub, e, NULL) != 0) {
            fc->only_sub = NULL;
            return 1;
        }
        return 0;
    }
    if (e->seq > fc->upto)
        return 1;
    for (crm_sess *s = fc->n->sessions; s; s = s->next) {
        crm_sub *sub = s->subs;
        while (sub) {
            crm_sub *next = sub->next;
            push_entry(s, sub, e, fc);
            sub = next;
        }
    }
    cache_clear(fc);
    return 0;
}

void crm_subs_fanout(crm_net *n)
{
    /* durable changes only: a push is as final as an acknowledgement */
    uint64_t last = crm_writer_durable_seq(n->writer);
    crm_txn *t;
    crm_err err;
    fanctx fc = {.n = n, .upto = last};
    if (last <= n->pushed_seq)
        return;
    if (n->subs_now == 0 || crm_store_begin_read(n->store, &t, &err) != CRM_OK) {
        n->pushed_seq = last;
        return;
    }
    crm_feed_read(t, n->pushed_seq, 0, fan_entry, &fc, NULL, &err);
    crm_txn_end(t);
    n->pushed_seq = last;
}

static void sub_add(crm_sess *s, crm_sub *sub)
{
    sub->next = s->subs;
    s->subs = sub;
    s->nsubs++;
    s->net->subs_now++;
}

/* Sends {"event": "aggregate", ...} for sub; ends the sub on overflow. */
static void push_groups(crm_sess *s, crm_sub *sub, uint64_t seq)
{
    crm_value *m = crm_value_map();
    crm_map_set(m, "event", crm_value_cstr("aggregate"));
    crm_map_set(m, "sub", crm_value_int(sub->id));
    crm_map_set(m, "seq", crm_value_int((int64_t)seq));
    crm_map_set(m, "groups", crm_value_dup(sub->groups));
    if (crm_sess_send_value(s, m, 1) != 0) {
        crm_value *o = crm_value_map();
        crm_map_set(o, "event", crm_value_cstr("overflow"));
        crm_map_set(o, "sub", crm_value_int(sub->id));
        crm_map_set(o, "seq", crm_value_int((int64_t)seq));
        crm_sess_send_value(s, o, 0);
        crm_value_free(o);
        s->net->overflows++;
        crm_sub_remove(s, sub);
    }
    crm_value_free(m);
}

/* aggregate: {where?, group_by?, metrics?}; a top-level where applies when
 * the aggregate has none.  The figures are computed now (which checks the
 * arguments), pushed after the reply, then again whenever they change. */
static void subscribe_aggregate(crm_sess *s, const crm_value *req, int opi, const char *coll,
                                const crm_value *where)
{
    const crm_value *a = crm_map_get(req, "aggregate");
    crm_value *res;
    crm_sub *sub;
    crm_err err;
    uint64_t from_seq;
    if (a->type != CRM_T_MAP) {
        crm_reply_err(s, req, opi, CRM_BAD_REQUEST, "aggregate must be a map", NULL);
        return;
    }
    if (!(sub = calloc(1, sizeof *sub)) || !(sub->agg = crm_value_dup(a))) {
        free(sub);
        crm_reply_err(s, req, opi, CRM_INTERNAL, "out of memory", NULL);
        return;
    }
    if (where && !crm_map_get(sub->agg, "where") && crm_map_set(sub->agg, "where", crm_value_dup(where))) {
        sub_free(sub);
        crm_reply_err(s, req, opi, CRM_INTERNAL, "out of memory", NULL);
        return;
    }
    where = crm_map_get(sub->agg, "where");
    /* read before the figures are: a change the writer commits meanwhile
     * marks them dirty (one extra recomputation) instead of being missed */
    from_seq = crm_store_last_seq(s->net->store);
    if (!(res = crm_run_aggregate(s, coll, sub->agg, &err)) ||
        crm_filter_compile(crm_schema_find(s->net->schema, coll),
                           where && where->type == CRM_T_MAP ? where : NULL, &sub->filter, &err) != CRM_OK) {
        crm_value_free(res);
        sub_free(sub);
        crm_reply_crm_err(s, req, opi, &err);
        return;
    }
    sub->groups = crm_map_take(res, "groups");
    crm_value_free(res);
    snprintf(sub->coll, sizeof sub->coll, "%s", coll);
    sub->id = ++s->next_sub;
    sub->from_seq = from_seq;
    sub->pushed_ms = crm_net_now_ms();
    sub_add(s, sub);
    res = crm_value_map();
    crm_map_set(res, "sub", crm_value_int(sub->id));
    crm_map_set(res, "seq", crm_value_int((int64_t)sub->from_seq));
    crm_reply_ok(s, req, opi, res);
    push_groups(s, sub, sub->from_seq);
}

void crm_subs_agg_tick(crm_net *n)
{
    int64_t now = crm_net_now_ms(), wait = -1;
    for (crm_sess *s = n->sessions; s; s = s->next) {
        crm_sub *sub = s->subs;
        while (sub) {
            crm_sub *next = sub->next;
            if (sub->agg && sub->dirty) {
                int64_t due = sub->pushed_ms + CRM_AGG_COALESCE_MS - now;
                if (due > 0) {
                    if (wait < 0 || due < wait)
                        wait = due;
                } else {
                    crm_err err;
                    crm_value *res = crm_run_aggregate(s, sub->coll, sub->agg, &err);
                    crm_value *groups = res ? crm_map_take(res, "groups") : NULL;
                    crm_value_free(res);
                    sub->dirty = 0;
                    sub->pushed_ms = now;
                    if (groups && !crm_value_equal(groups, sub->groups)) {
                        crm_value_free(sub->groups);
                        sub->groups = groups;
                        push_groups(s, sub, sub->from_seq);
                    } else {
                        crm_value_free(groups);
                    }
                }
            }
            sub = next;
        }
    }
    if (wait >= 0)
        crm_net_schedule_agg(n, (int)wait);
}

void crm_subs_subscribe(crm_sess *s, const crm_value *req, int opi)
{
    const char *coll;
    const crm_value *where, *hidden;
    int64_t since = 0;
    int has_since, rc;
    crm_err err;
    crm_txn *t = NULL;
    crm_value *res, *snap = NULL;
    const crm_value *snapshot = crm_map_get(req, "snapshot");
    crm_sub *sub;
    if (crm_arg_coll(s, req, CRM_PERM_SUBSCRIBE | CRM_PERM_READ, &coll, &err) != CRM_OK ||
        crm_arg_map(req, "where", 0, &where, &err) != CRM_OK ||
        crm_arg_int(req, "since", 0, INT64_MAX, &since, &has_since, &err) != CRM_OK) {
        crm_reply_crm_err(s, req, opi, &err);
        return;
    }
    if (snapshot && snapshot->type != CRM_T_BOOL && snapshot->type != CRM_T_NIL) {
        crm_reply_err(s, req, opi, CRM_BAD_REQUEST, "snapshot must be true or false", NULL);
        return;
    }
    /* a snapshot is the state now; since replays changes after an older
     * seq: together the replay would land on top of newer records (spec) */
    if (has_since && snapshot && snapshot->type == CRM_T_BOOL && snapshot->u.b &&
        !crm_map_get(req, "aggregate")) {
        crm_reply_err(s, req, opi, CRM_BAD_REQUEST,
                      "since and snapshot do not combine: start from a snapshot, or resume from a seq",
                      NULL);
        return;
    }
    hidden = crm_role_hidden(s->net->schema, s->role, coll);
    if (crm_hidden_keys(hidden, where, "where", &err) != CRM_OK) {
        crm_reply_crm_err(s, req, opi, &err);
        return;
    }
    if (s->nsubs >= s->net->o.max_subs) {
        crm_reply_err(s, req, opi, CRM_TOO_LARGE, "too many subscriptions on this connection", NULL);
        return;
    }
    if (crm_map_get(req, "aggregate")) {
        if (has_since || (snapshot && snapshot->type == CRM_T_BOOL))
            crm_reply_err(s, req, opi, CRM_BAD_REQUEST,
                          "since and snapshot do not apply to aggregate subscriptions", NULL);
        else
            subscribe_aggregate(s, req, opi, coll, where);
        return;
    }
    if (!(sub = calloc(1, sizeof *sub)) || (where && !(sub->where = crm_value_dup(where)))) {
        free(sub);
        crm_reply_err(s, req, opi, CRM_INTERNAL, "out of memory", NULL);
        return;
    }
    if (crm_filter_compile(crm_schema_find(s->net->schema, coll), sub->where, &sub->filter, &err) !=
        CRM_OK) {
        sub_free(sub);
        crm_reply_crm_err(s, req, opi, &err);
        return;
    }
    snprintf(sub->coll, sizeof sub->coll, "%s", coll);
    sub->id = ++s->next_sub;
    if ((rc = crm_store_begin_read(s->net->store, &t, &err)) != CRM_OK)
        goto fail;
    /* the snapshot's own seq: the writer commits beside us, so the store's
     * last seq read before or after could disagree with the snapshot */
    sub->from_seq = crm_txn_snapshot_seq(t);
    if (has_since) {
        uint64_t first, last;
        if ((rc = crm_feed_bounds(t, &first, &last, &err)) != CRM_OK)
            goto fail;
        if ((uint64_t)since > sub->from_seq || (since > 0 && first > 0 && (uint64_t)since + 1 < first)) {
            crm_value *d = crm_value_map();
            crm_map_set(d, "resync", crm_value_bool(1));
            crm_txn_end(t);
            crm_reply_err(s, req, opi, CRM_CONFLICT, "since is outside what the feed retains: resync", d);
            sub_free(sub);
            return;
        }
    }
    if (snapshot && snapshot->type == CRM_T_BOOL && snapshot->u.b) {
        char *next = NULL;
        snap = crm_value_arr();
        do {
            crm_value *page;
            char *nx = NULL;
            crm_query q = {coll, where, NULL, CRM_QUERY_MAX_LIMIT, next};
            rc = crm_txn_query(t, &q, &page, &nx, &err);
            free(next);
            next = nx;
            if (rc != CRM_OK)
                goto fail;
            for (size_t i = 0; i < page->u.arr.n; i++) {
                crm_value *r = page->u.arr.items[i];
                page->u.arr.items[i] = NULL;
                crm_role_strip(hidden, r);
                crm_arr_push(snap, r);
            }
            page->u.arr.n = 0;
            crm_value_free(page);
            if (snap->u.arr.n > SNAPSHOT_MAX) {
                free(next);
                rc = crm_err_set(&err, CRM_TOO_LARGE, "snapshot larger than %d records: narrow the where",
                                 SNAPSHOT_MAX);
                goto fail;
            }
        } while (next);
    }
    sub_add(s, sub);
    res = crm_value_map();
    crm_map_set(res, "sub", crm_value_int(sub->id));
    crm_map_set(res, "seq", crm_value_int(has_since ? since : (int64_t)sub->from_seq));
    if (snap)
        crm_map_set(res, "records", snap);
    crm_reply_ok(s, req, opi, res);
    if (has_since) { /* replay, then live: no gap, no repeat (one thread) */
        fanctx fc = {.n = s->net, .only = s, .only_sub = sub, .upto = UINT64_MAX};
        uint64_t upto = sub->from_seq;
        sub->from_seq = (uint64_t)since;
        crm_feed_read(t, (uint64_t)since, 0, fan_entry, &fc, NULL, &err);
        /* the sub may have overflowed and gone; if not it is live from upto */
        if (fc.only_sub && sub->from_seq < upto)
            sub->from_seq = upto;
    }
    crm_txn_end(t);
    return;
fail:
    if (t)
        crm_txn_end(t);
    crm_value_free(snap);
    sub_free(sub);
    crm_reply_crm_err(s, req, opi, &err);
}

void crm_subs_unsubscribe(crm_sess *s, const crm_value *req, int opi)
{
    const crm_value *id = crm_map_get(req, "sub");
    if (!id || id->type != CRM_T_INT) {
        crm_reply_err(s, req, opi, CRM_BAD_REQUEST, "sub must be an integer", NULL);
        return;
    }
    for (crm_sub *sub = s->subs; sub; sub = sub->next)
        if (sub->id == id->u.i) {
            crm_sub_remove(s, sub);
            crm_reply_ok(s, req, opi, crm_value_bool(1));
            return;
        }
    crm_reply_err(s, req, opi, CRM_NOT_FOUND, "no such subscription", NULL);
}

