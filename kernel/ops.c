/*
 * ops -- the wire contract's operations (spec/protocol.md): envelope and
 * argument checks, permissions and hidden fields, the write batch and its
 * acknowledgements, reads, auth.  Subscriptions live in subs.c.
 *
 * Ordering: a session's reads wait behind its own uncommitted writes, so a
 * pipelined create-then-get sees the create.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "net_int.h"

const char *const crm_op_names[OPI_LAST] = {
    "auth", "ping", "schema", "get", "create", "update", "delete", "tx",
    "query", "aggregate", "subscribe", "unsubscribe", "call", "audit", "privacy.export",
    "privacy.erase", "other"};

#define MAX_TX_OPS 100

/* ---- replies ---- */

static crm_value *ref_copy(const crm_value *req)
{
    const crm_value *r = req ? crm_map_get(req, "ref") : NULL;
    if (r && (r->type == CRM_T_INT || r->type == CRM_T_STR))
        return crm_value_dup(r);
    return crm_value_nil();
}

/* Takes result. */
void crm_reply_ok(crm_sess *s, const crm_value *req, int opi, crm_value *result)
{
    crm_value *m = crm_value_map();
    s->net->requests[opi][CRM_OK]++;
    if (m && crm_map_set(m, "ref", ref_copy(req)) == 0 && crm_map_set(m, "ok", crm_value_bool(1)) == 0 &&
        crm_map_set(m, "result", result ? result : crm_value_nil()) == 0)
        crm_sess_send_value(s, m, 0);
    crm_value_free(m);
}

/* {ref, ok: true, result: <raw>} in msgpack, raw being an encoded value
 * (a record's stored bytes): the reply without decoding the record. */
static void reply_ok_raw(crm_sess *s, const crm_value *req, int opi, const void *raw, size_t rawlen)
{
    static const uint8_t ref_key[] = {0x83, 0xa3, 'r', 'e', 'f'};
    static const uint8_t ok_result[] = {0xa2, 'o', 'k', 0xc3, 0xa6, 'r', 'e', 's', 'u', 'l', 't'};
    crm_value *ref = ref_copy(req);
    size_t reflen = 0;
    uint8_t *refb = ref ? crm_mp_encode(ref, &reflen) : NULL, *m;
    size_t len = sizeof ref_key + reflen + sizeof ok_result + rawlen;
    crm_value_free(ref);
    if (!refb || !(m = malloc(len))) {
        free(refb);
        crm_reply_err(s, req, opi, CRM_INTERNAL, "out of memory", NULL);
        return;
    }
    memcpy(m, ref_key, sizeof ref_key);
    memcpy(m + sizeof ref_key, refb, reflen);
    memcpy(m + sizeof ref_key + reflen, ok_result, sizeof ok_result);
    memcpy(m + sizeof ref_key + reflen + sizeof ok_result, raw, rawlen);
    free(refb);
    s->net->requests[opi][CRM_OK]++;
    crm_sess_send(s, m, len, 0);
    free(m);
}

/* Takes details. */
void crm_reply_err(crm_sess *s, const crm_value *req, int opi, int code, const char *msg,
                      crm_value *details)
{
    crm_value *m = crm_value_map(), *e = crm_value_map();
    if (code <= CRM_OK || code >= CRM_CODE_LAST)
        code = CRM_INTERNAL;
    s->net->requests[opi][code]++;
    if (m && e && crm_map_set(e, "code", crm_value_cstr(crm_code_name(code))) == 0 &&
        crm_map_set(e, "message", crm_value_cstr(msg)) == 0 &&
        (!details || crm_map_set(e, "details", details) == 0)) {
        details = NULL;
        if (crm_map_set(m, "ref", ref_copy(req)) == 0 && crm_map_set(m, "ok", crm_value_bool(0)) == 0 &&
            crm_map_set(m, "error", e) == 0) {
            e = NULL;
            crm_sess_send_value(s, m, 0);
        }
    }
    crm_value_free(details);
    crm_value_free(e);
    crm_value_free(m);
}

void crm_reply_crm_err(crm_sess *s, const crm_value *req, int opi, const crm_err *err)
{
    crm_reply_err(s, req, opi, err->code, err->msg, NULL);
}

/* ---- arguments ---- */

/* The string argument key: required or optional (*out NULL when absent). */
/* Whether m's key holds a string with a NUL inside: names are C strings
 * here, so "ping\0junk" would be taken for ping. */
static int nul_inside(const crm_value *m, const char *key)
{
    const crm_value *v = m && m->type == CRM_T_MAP ? crm_map_get(m, key) : NULL;
    return v && v->type == CRM_T_STR && memchr(v->u.str.s, 0, v->u.str.len) != NULL;
}

int crm_arg_str(const crm_value *req, const char *key, int required, const char **out,
                   crm_err *err)
{
    const crm_value *v = crm_map_get(req, key);
    *out = NULL;
    if (!v || v->type == CRM_T_NIL) {
        if (required)
            return crm_err_set(err, CRM_BAD_REQUEST, "%s is required", key);
        return CRM_OK;
    }
    if (v->type != CRM_T_STR || v->u.str.len == 0 || v->u.str.len > 1024 ||
        memchr(v->u.str.s, 0, v->u.str.len))
        return crm_err_set(err, CRM_BAD_REQUEST, "%s must be a non-empty string", key);
    *out = v->u.str.s;
    return CRM_OK;
}

int crm_arg_int(const crm_value *req, const char *key, int64_t min, int64_t max, int64_t *out,
                   int *present, crm_err *err)
{
    const crm_value *v = crm_map_get(req, key);
    *present = 0;
    if (!v || v->type == CRM_T_NIL)
        return CRM_OK;
    /* 5.0 is 5, as in records (JSON clients often cannot tell them apart) */
    int whole = v->type == CRM_T_INT ||
                (v->type == CRM_T_NUM && v->u.n > -9.2e18 && v->u.n < 9.2e18 && v->u.n == (int64_t)v->u.n);
    int64_t x = !whole ? 0 : v->type == CRM_T_INT ? v->u.i : (int64_t)v->u.n;
    if (!whole || x < min || x > max)
        return crm_err_set(err, CRM_BAD_REQUEST, "%s must be an integer from %lld to %lld", key,
                           (long long)min, (long long)max);
    *out = x;
    *present = 1;
    return CRM_OK;
}

int crm_arg_map(const crm_value *req, const char *key, int required, const crm_value **out,
                   crm_err *err)
{
    const crm_value *v = crm_map_get(req, key);
    *out = NULL;
    if (!v || v->type == CRM_T_NIL) {
        if (required)
            return crm_err_set(err, CRM_BAD_REQUEST, "%s is required", key);
        return CRM_OK;
    }
    if (v->type != CRM_T_MAP)
        return crm_err_set(err, CRM_BAD_REQUEST, "%s must be a map", key);
    *out = v;
    return CRM_OK;
}

/* The collection argument, known and permitted. */
int crm_arg_coll(crm_sess *s, const crm_value *req, int perm, const char **coll, crm_err *err)
{
    int rc = crm_arg_str(req, "collection", 1, coll, err);
    if (rc != CRM_OK)
        return rc;
    if (!crm_schema_find(s->net->schema, *coll))
        return crm_err_set(err, CRM_NOT_FOUND, "no collection \"%.64s\"", *coll);
    if ((crm_role_perms(s->net->schema, s->role, *coll) & perm) != perm)
        return crm_err_set(err, CRM_FORBIDDEN, "role %s may not %s %s", s->role,
                           perm & CRM_PERM_WRITE ? "write" : perm & CRM_PERM_SUBSCRIBE ? "subscribe to" : "read",
                           *coll);
    return CRM_OK;
}

/* FORBIDDEN when a map (where, record, patch) names a hidden field. */
int crm_hidden_keys(const crm_value *hidden, const crm_value *m, const char *what, crm_err *err)
{
    for (size_t i = 0; hidden && m && m->type == CRM_T_MAP && i < m->u.map.n; i++)
        if (crm_role_hides(hidden, m->u.map.kv[i].key))
            return crm_err_set(err, CRM_FORBIDDEN, "%s may not name field %s", what,
                               m->u.map.kv[i].key);
    return CRM_OK;
}

crm_value *crm_strip_copy(const crm_value *hidden, const crm_value *rec)
{
    crm_value *c = crm_value_dup(rec);
    crm_role_strip(hidden, c);
    return c;
}

/* ---- the write batch ---- */

static int batch_add(crm_net *n, crm_sess *s, crm_value *req, crm_write *writes, size_t nw,
                     int is_tx, int opi)
{
    if (!n->batch && n->spare) { /* the array of a landed batch: no new large allocation */
        n->batch = n->spare;
        n->capbatch = n->spare_cap;
        n->spare = NULL;
        n->spare_cap = 0;
    }
    if (n->nbatch == n->capbatch) {
        size_t nc = n->capbatch ? n->capbatch * 2 : 64;
        crm_item *nb = realloc(n->batch, nc * sizeof *nb);
        if (!nb)
            return -1;
        n->batch = nb;
        n->capbatch = nc;
    }
    memset(&n->batch[n->nbatch], 0, sizeof n->batch[n->nbatch]);
    n->batch[n->nbatch].s = s;
    n->batch[n->nbatch].req = req;
    n->batch[n->nbatch].writes = writes;
    n->batch[n->nbatch].nw = nw;
    n->batch[n->nbatch].is_tx = is_tx;
    n->batch[n->nbatch].op = opi;
    snprintf(n->batch[n->nbatch].user, sizeof n->batch[n->nbatch].user, "%s", s->user);
    snprintf(n->batch[n->nbatch].role, sizeof n->batch[n->nbatch].role, "%s", s->role);
    n->nbatch++;
    s->pending++;
    crm_net_schedule_flush(n);
    return 0;
}

/* Fills w from one create/update/delete request map r (req's own or a tx
 * element).  Checks permissions and hidden fields. */
static int prepare_write(crm_sess *s, const crm_value *r, const char *op, crm_write *w,
                         crm_err *err)
{
    const char *coll, *id;
    const crm_value *data = NULL;
    int64_t if_rev = 0;
    int has, rc;
    memset(w, 0, sizeof *w);
    if ((rc = crm_arg_coll(s, r, CRM_PERM_WRITE, &coll, err)) != CRM_OK)
        return rc;
    const crm_value *hidden = crm_role_hidden(s->net->schema, s->role, coll);
    if (strcmp(op, "create") == 0) {
        w->op = CRM_OP_CREATE;
        if ((rc = crm_arg_map(r, "record", 1, &data, err)) != CRM_OK)
            return rc;
        if ((rc = crm_arg_str(r, "id", 0, &id, err)) != CRM_OK)
            return rc;
    } else {
        w->op = strcmp(op, "update") == 0 ? CRM_OP_UPDATE : CRM_OP_DELETE;
        if ((rc = crm_arg_str(r, "id", 1, &id, err)) != CRM_OK)
            return rc;
        if (w->op == CRM_OP_UPDATE && (rc = crm_arg_map(r, "patch", 1, &data, err)) != CRM_OK)
            return rc;
        if ((rc = crm_arg_int(r, "if_rev", 1, INT64_MAX, &if_rev, &has, err)) != CRM_OK)
            return rc;
    }
    if ((rc = crm_hidden_keys(hidden, data, "a write", err)) != CRM_OK)
        return rc;
    w->coll = coll;
    w->id = id;
    w->data = data;
    w->if_rev = if_rev;
    return CRM_OK;
}

static void op_write(crm_sess *s, crm_value *req, const char *op, int opi)
{
    crm_err err;
    crm_write *w;
    size_t nw = 1;
    int is_tx = strcmp(op, "tx") == 0;

    if (is_tx) {
        const crm_value *ops = crm_map_get(req, "ops");
        if (!ops || ops->type != CRM_T_ARR || ops->u.arr.n == 0 || ops->u.arr.n > MAX_TX_OPS) {
            crm_reply_err(s, req, opi, CRM_BAD_REQUEST, "ops must be a list of 1 to 100 writes", NULL);
            crm_value_free(req);
            return;
        }
        nw = ops->u.arr.n;
    }
    if (!(w = calloc(nw, sizeof *w))) {
        crm_reply_err(s, req, opi, CRM_INTERNAL, "out of memory", NULL);
        crm_value_free(req);
        return;
    }
    for (size_t i = 0; i < nw; i++) {
        const crm_value *r = req;
        const char *sub_op = op;
        int rc;
        if (is_tx) {
            r = crm_map_get(req, "ops")->u.arr.items[i];
            sub_op = r->type == CRM_T_MAP ? crm_map_str(r, "op", "") : "";
            if (nul_inside(r, "op") ||
                (strcmp(sub_op, "create") && strcmp(sub_op, "update") && strcmp(sub_op, "delete"))) {
                char m[96];
                snprintf(m, sizeof m, "op %zu: must be a create, update or delete", i);
                crm_reply_err(s, req, opi, CRM_BAD_REQUEST, m, NULL);
                free(w);
                crm_value_free(req);
                return;
            }
        }
        if ((rc = prepare_write(s, r, sub_op, &w[i], &err)) != CRM_OK) {
            if (is_tx) {
                char m[sizeof err.msg];
                snprintf(m, sizeof m, "op %zu: %.200s", i, err.msg);
                snprintf(err.msg, sizeof err.msg, "%s", m);
            }
            crm_reply_crm_err(s, req, opi, &err);
            free(w);
            crm_value_free(req);
            return;
        }
    }
    if (batch_add(s->net, s, req, w, nw, is_tx, opi) != 0) {
        crm_reply_err(s, req, opi, CRM_INTERNAL, "out of memory", NULL);
        free(w);
        crm_value_free(req);
    }
}

int crm_batch_add_fn(crm_sess *s, crm_value *req, int opi,
                     int (*fn)(void *ud, crm_txn *t, crm_err *err), int compact)
{
    crm_net *n = s->net;
    if (batch_add(n, s, req, NULL, 0, 0, opi) != 0)
        return -1;
    n->batch[n->nbatch - 1].unit_fn = fn;
    n->batch[n->nbatch - 1].compact = compact;
    return 0;
}

/* ---- reads ---- */

static void op_get(crm_sess *s, const crm_value *req, int opi)
{
    const char *coll, *id;
    crm_err err;
    crm_txn *t;
    crm_value *rec;
    if (crm_arg_coll(s, req, CRM_PERM_READ, &coll, &err) != CRM_OK ||
        crm_arg_str(req, "id", 1, &id, &err) != CRM_OK) {
        crm_reply_crm_err(s, req, opi, &err);
        return;
    }
    if (crm_store_begin_read(s->net->store, &t, &err) != CRM_OK) {
        crm_reply_crm_err(s, req, opi, &err);
        return;
    }
    if (s->msgpack && !crm_role_hidden(s->net->schema, s->role, coll)) {
        /* the stored bytes are the reply's record: no decode, no re-encode */
        const void *raw;
        size_t rawlen;
        if (crm_txn_get_raw(t, coll, id, &raw, &rawlen, &err) != CRM_OK) {
            crm_txn_end(t);
            crm_reply_crm_err(s, req, opi, &err);
            return;
        }
        reply_ok_raw(s, req, opi, raw, rawlen);
        crm_txn_end(t);
        return;
    }
    if (crm_txn_get(t, coll, id, &rec, &err) != CRM_OK) {
        crm_txn_end(t);
        crm_reply_crm_err(s, req, opi, &err);
        return;
    }
    crm_txn_end(t);
    crm_role_strip(crm_role_hidden(s->net->schema, s->role, coll), rec);
    crm_reply_ok(s, req, opi, rec);
}

static void op_query(crm_sess *s, const crm_value *req, int opi)
{
    const char *coll, *order_by, *after;
    const crm_value *where, *hidden;
    int64_t limit = 0;
    int has;
    crm_err err;
    crm_txn *t;
    crm_value *recs = NULL, *res;
    char *next = NULL;
    if (crm_arg_coll(s, req, CRM_PERM_READ, &coll, &err) != CRM_OK ||
        crm_arg_map(req, "where", 0, &where, &err) != CRM_OK ||
        crm_arg_str(req, "order_by", 0, &order_by, &err) != CRM_OK ||
        crm_arg_str(req, "after", 0, &after, &err) != CRM_OK ||
        crm_arg_int(req, "limit", 1, CRM_QUERY_MAX_LIMIT, &limit, &has, &err) != CRM_OK) {
        crm_reply_crm_err(s, req, opi, &err);
        return;
    }
    hidden = crm_role_hidden(s->net->schema, s->role, coll);
    if (crm_hidden_keys(hidden, where, "where", &err) != CRM_OK ||
        (order_by && crm_role_hides(hidden, order_by[0] == '-' ? order_by + 1 : order_by) &&
         crm_err_set(&err, CRM_FORBIDDEN, "order_by may not name field %s", order_by))) {
        crm_reply_crm_err(s, req, opi, &err);
        return;
    }
    crm_query q = {coll, where, order_by, (size_t)limit, after};
    if (crm_store_begin_read(s->net->store, &t, &err) != CRM_OK ||
        crm_txn_query(t, &q, &recs, &next, &err) != CRM_OK) {
        crm_txn_end(t); /* NULL when the read txn never began */
        crm_reply_crm_err(s, req, opi, &err);
        return;
    }
    crm_txn_end(t);
    for (size_t i = 0; i < recs->u.arr.n; i++)
        crm_role_strip(hidden, recs->u.arr.items[i]);
    res = crm_value_map();
    crm_map_set(res, "records", recs);
    crm_map_set(res, "next", next ? crm_value_cstr(next) : crm_value_nil());
    free(next);
    crm_reply_ok(s, req, opi, res);
}

static int metrics_args(const crm_value *req, const crm_value *hidden, const char **names,
                        size_t *n, crm_err *err)
{
    const crm_value *m = crm_map_get(req, "metrics");
    *n = 0;
    if (!m || m->type == CRM_T_NIL) {
        names[(*n)++] = "count";
        return CRM_OK;
    }
    if (m->type != CRM_T_ARR || m->u.arr.n == 0 || m->u.arr.n > 64)
        return crm_err_set(err, CRM_BAD_REQUEST, "metrics must be a list of 1 to 64 names");
    for (size_t i = 0; i < m->u.arr.n; i++) {
        const crm_value *x = m->u.arr.items[i];
        const char *colon;
        if (x->type != CRM_T_STR)
            return crm_err_set(err, CRM_BAD_REQUEST, "metrics must be strings");
        colon = strchr(x->u.str.s, ':');
        if (colon && crm_role_hides(hidden, colon + 1))
            return crm_err_set(err, CRM_FORBIDDEN, "metrics may not name field %s", colon + 1);
        names[(*n)++] = x->u.str.s;
    }
    return CRM_OK;
}

crm_value *crm_run_aggregate(crm_sess *s, const char *coll, const crm_value *agg, crm_err *err)
{
    const crm_value *where;
    const char *group_by, *names[64];
    size_t nm;
    crm_txn *t;
    crm_value *groups = NULL, *res;
    const crm_value *hidden = crm_role_hidden(s->net->schema, s->role, coll);
    if (crm_arg_map(agg, "where", 0, &where, err) != CRM_OK ||
        crm_arg_str(agg, "group_by", 0, &group_by, err) != CRM_OK ||
        metrics_args(agg, hidden, names, &nm, err) != CRM_OK)
        return NULL;
    if (crm_hidden_keys(hidden, where, "where", err) != CRM_OK)
        return NULL;
    if (group_by && crm_role_hides(hidden, group_by)) {
        crm_err_set(err, CRM_FORBIDDEN, "group_by may not name field %s", group_by);
        return NULL;
    }
    if (crm_store_begin_read(s->net->store, &t, err) != CRM_OK)
        return NULL;
    if (crm_txn_aggregate(t, coll, where, group_by, names, nm, &groups, err) != CRM_OK) {
        crm_txn_end(t);
        return NULL;
    }
    crm_txn_end(t);
    res = crm_value_map();
    crm_map_set(res, "groups", groups);
    return res;
}

static void op_aggregate(crm_sess *s, const crm_value *req, int opi)
{
    const char *coll;
    crm_err err;
    crm_value *res;
    if (crm_arg_coll(s, req, CRM_PERM_READ, &coll, &err) != CRM_OK ||
        !(res = crm_run_aggregate(s, coll, req, &err))) {
        crm_reply_crm_err(s, req, opi, &err);
        return;
    }
    crm_reply_ok(s, req, opi, res);
}

static void op_schema(crm_sess *s, const crm_value *req, int opi)
{
    const char *coll;
    crm_err err;
    const crm_schema *sc = s->net->schema;
    if (crm_arg_str(req, "collection", 0, &coll, &err) != CRM_OK) {
        crm_reply_crm_err(s, req, opi, &err);
        return;
    }
    if (coll) {
        const crm_collection *c = crm_schema_find(sc, coll);
        if (!c || !crm_role_perms(sc, s->role, coll)) {
            crm_reply_err(s, req, opi, CRM_NOT_FOUND, "no such collection", NULL);
            return;
        }
        crm_reply_ok(s, req, opi, crm_value_dup(c->source));
        return;
    }
    crm_value *all = crm_value_map();
    for (size_t i = 0; i < sc->ncolls; i++)
        if (crm_role_perms(sc, s->role, sc->colls[i].name))
            crm_map_set(all, sc->colls[i].name, crm_value_dup(sc->colls[i].source));
    crm_reply_ok(s, req, opi, all);
}

/* ---- auth ---- */

#define AUTH_MAX_FAILURES 5

static void op_auth(crm_sess *s, const crm_value *req, int opi)
{
    const char *token;
    crm_err err;
    crm_txn *t;
    char role[72];
    crm_value *res;
    if (crm_arg_str(req, "token", 1, &token, &err) != CRM_OK) {
        crm_reply_crm_err(s, req, opi, &err);
        return;
    }
    crm_token_hash(token, strlen(token), s->token_hash);
    if (crm_store_begin_read(s->net->store, &t, &err) != CRM_OK) {
        crm_reply_crm_err(s, req, opi, &err);
        return;
    }
    if (crm_token_lookup(t, s->token_hash, role, sizeof role, &err) != CRM_OK) {
        crm_txn_end(t);
        s->authed = 0;
        crm_reply_crm_err(s, req, opi, &err);
        /* guessing tokens: a few tries per connection, then it is closed
         * (after the refusal is sent); a new connection costs a handshake */
        if (++s->auth_failures >= AUTH_MAX_FAILURES)
            crm_sess_close(s, LWS_CLOSE_STATUS_POLICY_VIOLATION, "too many failed authentications", 1);
        return;
    }
    crm_txn_end(t);
    s->authed = 1;
    s->token_checked_ms = crm_net_now_ms();
    snprintf(s->role, sizeof s->role, "%s", role);
    snprintf(s->user, sizeof s->user, "token:");
    crm_token_id(s->token_hash, s->user + 6);
    res = crm_value_map();
    crm_map_set(res, "user", crm_value_cstr(s->user));
    crm_map_set(res, "role", crm_value_cstr(s->role));
    crm_reply_ok(s, req, opi, res);
}

/* ---- dispatch ---- */

static int op_index(const char *op)
{
    for (int i = 0; i < OPI_OTHER; i++)
        if (strcmp(op, crm_op_names[i]) == 0)
            return i;
    return OPI_OTHER;
}

/* A method runs inside the group commit (its writes are atomic and acked
 * after the fsync), so a call joins the batch like a write; takes req. */
static void op_call(crm_sess *s, crm_value *req, int opi)
{
    crm_net *n = s->net;
    const char *method;
    const crm_value *params = crm_map_get(req, "params");
    crm_err err;
    crm_item *it;
    if (crm_arg_str(req, "method", 1, &method, &err) != CRM_OK) {
        crm_reply_crm_err(s, req, opi, &err);
    } else if (!crm_role_may_call(n->schema, s->role, method)) {
        crm_reply_err(s, req, opi, CRM_FORBIDDEN, "this role may not call that method", NULL);
    } else if (!n->o.bus) {
        /* whether a method exists is asked on the writer (call_unit): a
         * reload there changes the registry */
        crm_reply_err(s, req, opi, CRM_NOT_FOUND, "no such method", NULL);
    } else if (batch_add(n, s, req, NULL, 0, 0, opi) != 0) {
        crm_reply_err(s, req, opi, CRM_INTERNAL, "out of memory", NULL);
    } else {
        it = &n->batch[n->nbatch - 1];
        it->method = method;
        it->params = params;
        it->bus = n->o.bus;
        return; /* req now belongs to the batch */
    }
    crm_value_free(req);
}

static int call_unit(void *ud, crm_txn *t, crm_err *err)
{
    crm_item *it = ud;
    crm_value *params = NULL;
    int rc;
    if (!crm_bus_has_method(it->bus, it->method))
        return crm_err_set(err, CRM_NOT_FOUND, "no such method");
    if (!it->params) /* absent params: an empty map, so methods need not check */
        params = crm_value_map();
    rc = crm_bus_call(it->bus, t, it->method, it->params ? it->params : params, it->user,
                      it->role, &it->result, err);
    crm_value_free(params);
    return rc;
}

/* The ops that answer at once (writes go to the batch instead). */
static void (*const handlers[OPI_LAST])(crm_sess *, const crm_value *, int) = {
    [OPI_GET] = op_get,
    [OPI_QUERY] = op_query,
    [OPI_AGGREGATE] = op_aggregate,
    [OPI_SCHEMA] = op_schema,
    [OPI_SUBSCRIBE] = crm_subs_subscribe,
    [OPI_UNSUBSCRIBE] = crm_subs_unsubscribe,
    [OPI_AUDIT] = crm_admin_audit,
};

static int is_write_op(int opi)
{
    return opi == OPI_CREATE || opi == OPI_UPDATE || opi == OPI_DELETE || opi == OPI_TX ||
           opi == OPI_CALL || opi == OPI_PRIVACY_EXPORT || opi == OPI_PRIVACY_ERASE;
}

/* Runs one decoded request; takes req. */
static void dispatch(crm_sess *s, crm_value *req)
{
    const char *op = crm_map_str(req, "op", NULL);
    int opi = op ? op_index(op) : OPI_OTHER;
    const crm_value *ref = crm_map_get(req, "ref");

    if (nul_inside(req, "op")) {
        crm_reply_err(s, req, OPI_OTHER, CRM_BAD_REQUEST, "op must not contain NUL bytes", NULL);
        crm_value_free(req);
        return;
    }

    if (ref && ref->type != CRM_T_INT && ref->type != CRM_T_STR) {
        crm_reply_err(s, req, opi, CRM_BAD_REQUEST, "ref must be an integer or a string", NULL);
        goto done;
    }
    if (!op) {
        crm_reply_err(s, req, opi, CRM_BAD_REQUEST, "op is required", NULL);
        goto done;
    }
    if (opi == OPI_PING) {
        crm_reply_ok(s, req, opi, crm_value_cstr("pong"));
        goto done;
    }
    if (opi == OPI_AUTH) {
        op_auth(s, req, opi);
        goto done;
    }
    if (!s->authed) {
        crm_reply_err(s, req, opi, CRM_UNAUTHENTICATED, "authenticate first (op auth)", NULL);
        goto done;
    }
    if (opi == OPI_CALL) {
        op_call(s, req, opi);
        return; /* req now belongs to the batch (or was freed) */
    }
    if (opi == OPI_PRIVACY_EXPORT || opi == OPI_PRIVACY_ERASE) {
        crm_admin_privacy(s, req, opi);
        return; /* req now belongs to the batch (or was freed) */
    }
    if (is_write_op(opi)) {
        op_write(s, req, op, opi);
        return; /* req now belongs to the batch */
    }
    if (opi == OPI_OTHER || !handlers[opi])
        crm_reply_err(s, req, opi, CRM_BAD_REQUEST, "unknown op", NULL);
    else
        handlers[opi](s, req, opi);
done:
    crm_value_free(req);
}

static int rate_ok(crm_sess *s)
{
    int64_t now = crm_net_now_ms();
    double rate = s->net->o.rate_per_sec;
    s->bucket += (double)(now - s->bucket_ms) * rate / 1000.0;
    if (s->bucket > rate)
        s->bucket = rate;
    s->bucket_ms = now;
    if (s->bucket < 1)
        return 0;
    s->bucket -= 1;
    return 1;
}

void crm_ops_message(crm_sess *s, const unsigned char *buf, size_t len)
{
    crm_net *n = s->net;
    crm_limits lim = {s->authed ? n->o.max_message : n->o.max_message_preauth, n->o.max_depth};
    crm_err err;
    crm_value *req = s->msgpack ? crm_mp_decode(buf, len, &lim, &err)
                                : crm_json_decode((const char *)buf, len, &lim, &err);
    if (!req || req->type != CRM_T_MAP) {
        /* no ref can be read: close as the spec says (1009 too big, 1007 bad) */
        crm_value_free(req);
        n->requests[OPI_OTHER][CRM_BAD_REQUEST]++;
        crm_sess_close(s, req || err.code != CRM_TOO_LARGE ? LWS_CLOSE_STATUS_INVALID_PAYLOAD
                                                           : LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
                       req ? "a message must be a map" : "message does not decode", 0);
        return;
    }
    if (!rate_ok(s)) {
        crm_reply_err(s, req, OPI_OTHER, CRM_RATE_LIMITED, "too many requests per second", NULL);
        crm_value_free(req);
        return;
    }
    if (s->pending || (s->deferred && s->deferred->u.arr.n)) {
        /* writes of this session are waiting for their commit: keep order */
        if ((size_t)s->pending + (s->deferred ? s->deferred->u.arr.n : 0) >= (size_t)n->o.max_inflight) {
            crm_reply_err(s, req, OPI_OTHER, CRM_RATE_LIMITED, "too many requests in flight", NULL);
            crm_value_free(req);
            return;
        }
        const char *op = crm_map_str(req, "op", "");
        int opi = op_index(op);
        if (!is_write_op(opi) || (s->deferred && s->deferred->u.arr.n)) {
            if (!s->deferred)
                s->deferred = crm_value_arr();
            if (crm_arr_push(s->deferred, req) != 0)
                crm_reply_err(s, NULL, OPI_OTHER, CRM_INTERNAL, "out of memory", NULL);
            return;
        }
    }
    dispatch(s, req);
}

/* ---- flush: commit, acknowledge, run held requests, push ---- */

static void run_deferred(crm_sess *s)
{
    while (s->deferred && s->deferred->u.arr.n && !s->pending) {
        crm_value *req = s->deferred->u.arr.items[0];
        memmove(s->deferred->u.arr.items, s->deferred->u.arr.items + 1,
                (s->deferred->u.arr.n - 1) * sizeof *s->deferred->u.arr.items);
        s->deferred->u.arr.n--;
        dispatch(s, req);
    }
}

/* One batch in the writer's hands: the items it came from and their units. */
typedef struct crm_flight flight;
struct crm_flight {
    crm_wsub sub;       /* first: the writer hands back &sub */
    crm_net *n;
    flight *next, *prev; /* crm_net.flights: handed over, not yet landed */
    crm_item *items;
    size_t ni, cap;     /* cap: the items array's size (reused, crm_net.spare) */
    crm_unit *units;
    int compacted;      /* an erasure in it committed and the store was compacted */
};

/* Writer thread, once the batch committed: an erasure's values leave the
 * data file before its reply (docs/privacy.md). */
static void flight_after_commit(crm_wsub *sub)
{
    flight *f = (flight *)sub;
    for (size_t i = 0; i < f->ni; i++)
        if (f->items[i].compact && f->units[i].rc == CRM_OK) {
            f->compacted = crm_admin_compact_now(f->n);
            return;
        }
}

static void fail_items(crm_item *items, size_t ni, const char *why)
{
    for (size_t i = 0; i < ni; i++) {
        if (items[i].s) {
            crm_reply_err(items[i].s, items[i].req, items[i].op, CRM_UNAVAILABLE, why, NULL);
            items[i].s->pending--;
        }
        free(items[i].writes);
        crm_value_free(items[i].req);
    }
    free(items);
}

void crm_ops_flush(crm_net *n)
{
    crm_item *items = n->batch;
    size_t ni = n->nbatch, cap = n->capbatch;
    flight *f;

    if (ni == 0)
        return;
    n->batch = NULL;
    n->nbatch = n->capbatch = 0;
    if (!(f = calloc(1, sizeof *f)) || !(f->units = calloc(ni, sizeof *f->units))) {
        free(f);
        fail_items(items, ni, "out of memory");
        return;
    }
    f->n = n;
    f->items = items;
    f->ni = ni;
    f->cap = cap;
    for (size_t i = 0; i < ni; i++) {
        crm_unit *u = &f->units[i];
        u->writes = items[i].writes;
        u->n = items[i].nw;
        u->user = items[i].user;
        u->role = items[i].role;
        if (items[i].method) {
            u->fn = call_unit;
            u->fn_ud = &items[i];
        } else if (items[i].unit_fn) {
            u->fn = items[i].unit_fn;
            u->fn_ud = &items[i];
        }
        f->sub.nwrites += items[i].nw;
        if (items[i].compact)
            f->sub.after_commit = flight_after_commit;
    }
    f->sub.units = f->units;
    f->sub.n = ni;
    f->sub.ud = f;
    f->next = n->flights;
    if (n->flights)
        n->flights->prev = f;
    n->flights = f;
    crm_writer_submit(n->writer, &f->sub);
}

/* Replies to every item of a batch the writer has committed (or failed:
 * then each unit's rc says why), and frees it. */
static void land(crm_net *n, flight *f)
{
    crm_item *items = f->items;
    crm_unit *units = f->units;
    if (f->prev)
        f->prev->next = f->next;
    else
        n->flights = f->next;
    if (f->next)
        f->next->prev = f->prev;
    for (size_t i = 0; i < f->ni; i++) {
        crm_item *it = &items[i];
        crm_sess *s = it->s;
        if (s && f->sub.outcome_unknown) {
            s->pending--; /* no reply: committed, durability unknown (writer.h) */
        } else if (s) {
            s->pending--;
            if (units[i].rc == CRM_OK) {
                crm_value *res;
                if (it->method || it->unit_fn) {
                    res = it->result;
                    it->result = NULL;
                    if (it->compact && f->compacted && res)
                        crm_map_set(res, "compacted", crm_value_bool(1));
                } else if (it->is_tx) {
                    res = crm_value_arr();
                    for (size_t j = 0; j < it->nw; j++) {
                        crm_value *r = it->writes[j].result;
                        it->writes[j].result = NULL;
                        crm_role_strip(crm_role_hidden(n->schema, s->role, it->writes[j].coll), r);
                        crm_arr_push(res, r ? r : crm_value_nil());
                    }
                } else {
                    res = it->writes[0].result;
                    it->writes[0].result = NULL;
                    crm_role_strip(crm_role_hidden(n->schema, s->role, it->writes[0].coll), res);
                }
                crm_reply_ok(s, it->req, it->op, res);
            } else {
                crm_value *details = NULL;
                for (size_t j = 0; j < it->nw; j++)
                    if (it->writes[j].details) {
                        details = it->writes[j].details;
                        it->writes[j].details = NULL;
                        break;
                    }
                crm_reply_err(s, it->req, it->op, units[i].rc, units[i].err.msg, details);
            }
        }
        for (size_t j = 0; j < it->nw; j++)
            crm_write_clear(&it->writes[j]);
        free(it->writes);
        crm_value_free(it->result);
        crm_value_free(it->req);
    }
    free(units);
    if (!n->spare || n->spare_cap < f->cap) { /* keep the larger array for the next batch */
        free(n->spare);
        n->spare = items;
        n->spare_cap = f->cap;
    } else {
        free(items);
    }
    free(f);
}

void crm_ops_collect(crm_net *n)
{
    crm_wsub *done = crm_writer_take_done(n->writer);
    while (done) {
        crm_wsub *next = done->next;
        land(n, (flight *)done->ud);
        done = next;
    }
    crm_subs_fanout(n);
    for (crm_sess *s = n->sessions; s; s = s->next)
        run_deferred(s);
}

void crm_ops_settle(crm_net *n)
{
    if (!n->writer)
        return;
    crm_ops_flush(n);
    crm_writer_drain(n->writer);
    crm_ops_collect(n);
}

void crm_ops_forget(crm_sess *s)
{
    crm_net *n = s->net;
    for (size_t i = 0; i < n->nbatch; i++)
        if (n->batch[i].s == s)
            n->batch[i].s = NULL; /* its writes still commit; nobody to tell */
    /* batches in the writer's hands: their items' s is read again only
     * by land() on this thread, once the writer handed them back */
    for (flight *f = n->flights; f; f = f->next)
        for (size_t i = 0; i < f->ni; i++)
            if (f->items[i].s == s)
                f->items[i].s = NULL;
    while (s->subs)
        crm_sub_remove(s, s->subs);
    crm_value_free(s->deferred);
    s->deferred = NULL;
    s->pending = 0;
}

void crm_ops_tick(crm_net *n)
{
    int64_t now = crm_net_now_ms();
    crm_txn *t = NULL;
    crm_err err;
    for (crm_sess *s = n->sessions; s; s = s->next) {
        if (s->close_code)
            continue;
        if (!s->authed) {
            if (now - s->connected_ms > n->o.auth_deadline_ms)
                crm_sess_close(s, LWS_CLOSE_STATUS_POLICY_VIOLATION, "authentication deadline", 0);
            continue;
        }
        /* a revoked token stops working within a second */
        if (now - s->token_checked_ms >= 500) {
            char role[72];
            if (!t && crm_store_begin_read(n->store, &t, &err) != CRM_OK)
                return;
            s->token_checked_ms = now;
            if (crm_token_lookup(t, s->token_hash, role, sizeof role, &err) != CRM_OK) {
                s->authed = 0;
                crm_sess_close(s, LWS_CLOSE_STATUS_POLICY_VIOLATION, "token revoked", 0);
            }
        }
    }
    if (t)
        crm_txn_end(t);
}
