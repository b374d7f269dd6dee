/*
 * ops_admin -- the admin-only ops: `audit` (query the audit trail),
 * `privacy.export` and `privacy.erase` (everything held about one record,
 * usually a contact: the record and every record whose ref field points at
 * it).  docs/audit.md and docs/privacy.md are the contract.
 *
 * Export and erase run as function units of the group commit, so their
 * audit entry commits with them (an export is acknowledged only once its
 * audit entry is durable) and an erasure is all or nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "net_int.h"

#define MAX_RELATED 100000 /* records one export or erasure may touch */

static int is_admin(const crm_sess *s)
{
    return strcmp(s->role, "admin") == 0;
}

/* ---- audit ---- */

void crm_admin_audit(crm_sess *s, const crm_value *req, int opi)
{
    crm_audit_filter f;
    crm_err err;
    crm_txn *t = NULL;
    crm_value *entries = NULL, *res;
    uint64_t next = 0;
    int64_t x;
    int has;
    const crm_value *desc = crm_map_get(req, "desc");

    memset(&f, 0, sizeof f);
    if (!is_admin(s)) {
        crm_reply_err(s, req, opi, CRM_FORBIDDEN, "only the admin role may read the audit trail", NULL);
        return;
    }
    if (crm_arg_str(req, "collection", 0, &f.coll, &err) != CRM_OK ||
        crm_arg_str(req, "id", 0, &f.id, &err) != CRM_OK ||
        crm_arg_str(req, "user", 0, &f.user, &err) != CRM_OK ||
        crm_arg_str(req, "action", 0, &f.action, &err) != CRM_OK ||
        crm_arg_int(req, "from", 0, INT64_MAX, &f.from_ms, &has, &err) != CRM_OK ||
        crm_arg_int(req, "to", 0, INT64_MAX, &f.to_ms, &has, &err) != CRM_OK ||
        crm_arg_int(req, "after", 0, INT64_MAX, &x, &has, &err) != CRM_OK ||
        ((f.after = has ? (uint64_t)x : 0), 0) ||
        crm_arg_int(req, "before", 0, INT64_MAX, &x, &has, &err) != CRM_OK ||
        ((f.before = has ? (uint64_t)x : 0), 0) ||
        crm_arg_int(req, "limit", 1, CRM_AUDIT_MAX_LIMIT, &x, &has, &err) != CRM_OK ||
        ((f.limit = has ? (size_t)x : 0), 0)) {
        crm_reply_crm_err(s, req, opi, &err);
        return;
    }
    if (desc && desc->type != CRM_T_NIL && desc->type != CRM_T_BOOL) {
        crm_reply_err(s, req, opi, CRM_BAD_REQUEST, "desc must be true or false", NULL);
        return;
    }
    f.desc = desc && desc->type == CRM_T_BOOL && desc->u.b;
    /* "token:<id>" is how sessions name themselves; a bare id works too */
    char user[40];
    if (f.user && strncmp(f.user, "token:", 6) != 0 && strcmp(f.user, "system") != 0 &&
        strcmp(f.user, "cli") != 0) {
        snprintf(user, sizeof user, "token:%.32s", f.user);
        f.user = user;
    }
    if (crm_store_begin_read(s->net->store, &t, &err) != CRM_OK ||
        crm_audit_query(t, &f, &entries, &next, &err) != CRM_OK) {
        crm_txn_end(t);
        crm_reply_crm_err(s, req, opi, &err);
        return;
    }
    crm_txn_end(t);
    res = crm_value_map();
    if (!res || crm_map_set(res, "entries", entries) != 0 ||
        crm_map_set(res, "next", next ? crm_value_int((int64_t)next) : crm_value_nil()) != 0) {
        crm_value_free(res);
        crm_reply_err(s, req, opi, CRM_INTERNAL, "out of memory", NULL);
        return;
    }
    crm_reply_ok(s, req, opi, res);
}

/* ---- privacy ---- */

typedef struct named {
    const char *coll, *id;
} named;

static int named_cmp(const void *a, const void *b)
{
    const named *x = a, *y = b;
    int c = strcmp(x->coll, y->coll);
    return c ? c : strcmp(x->id, y->id);
}

/* Adds to related (collection -> records) the records of every
 * about-collection (schema "about") that are about coll/id or about one of
 * the records already in related: copies of their data kept elsewhere,
 * such as a webhook delivery's body.  Each about-collection is read whole
 * (it holds deliveries and the like, not the bulk of the data). */
static int add_about_records(crm_txn *t, const crm_schema *sc, const char *coll, const char *id,
                             crm_value *related, size_t *total, crm_err *err)
{
    size_t n = 1, at = 0;
    named *set;
    int rc = CRM_OK;
    for (size_t i = 0; i < related->u.map.n; i++)
        n += related->u.map.kv[i].val->u.arr.n;
    if (!(set = calloc(n, sizeof *set)))
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    set[at++] = (named){coll, id};
    for (size_t i = 0; i < related->u.map.n; i++) {
        const crm_value *list = related->u.map.kv[i].val;
        for (size_t j = 0; j < list->u.arr.n; j++)
            set[at++] = (named){related->u.map.kv[i].key, crm_map_str(list->u.arr.items[j], "id", "")};
    }
    qsort(set, n, sizeof *set, named_cmp);
    for (size_t i = 0; rc == CRM_OK && i < sc->ncolls; i++) {
        const crm_collection *c = &sc->colls[i];
        char *after = NULL;
        crm_value *list = (crm_value *)crm_map_get(related, c->name); /* refs found some */
        if (!c->about_coll)
            continue;
        do {
            crm_query q = {c->name, NULL, NULL, CRM_QUERY_MAX_LIMIT, after};
            crm_value *recs = NULL;
            char *next = NULL;
            rc = crm_txn_query(t, &q, &recs, &next, err);
            free(after);
            after = next;
            for (size_t k = 0; rc == CRM_OK && k < recs->u.arr.n; k++) {
                crm_value *r = recs->u.arr.items[k];
                named key = {crm_map_str(r, c->about_coll, NULL), crm_map_str(r, c->about_id, NULL)};
                named self = {c->name, crm_map_str(r, "id", "")};
                if (!key.coll || !key.id || !bsearch(&key, set, n, sizeof *set, named_cmp) ||
                    bsearch(&self, set, n, sizeof *set, named_cmp))
                    continue; /* not about them, or related already (a ref) */
                if (!list && (!(list = crm_value_arr()) || crm_map_set(related, c->name, list) != 0)) {
                    list = NULL;
                    rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
                } else if (++*total > MAX_RELATED) {
                    rc = crm_err_set(err, CRM_TOO_LARGE, "more than %d records refer to %s/%s",
                                     MAX_RELATED, coll, id);
                } else if (crm_arr_push(list, crm_value_dup(r)) != 0) {
                    rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
                }
            }
            crm_value_free(recs);
        } while (rc == CRM_OK && after);
        free(after);
    }
    free(set);
    return rc;
}

/* Every record of every collection with a ref field pointing at coll/id,
 * and the records of about-collections about any of them: a new map
 * collection -> array of records, caller owns.  *total counts them.
 * TOO_LARGE past MAX_RELATED. */
static crm_value *related_records(crm_txn *t, const crm_schema *sc, const char *coll,
                                  const char *id, size_t *total, crm_err *err)
{
    crm_value *out = crm_value_map();
    *total = 0;
    if (!out) {
        crm_err_set(err, CRM_INTERNAL, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < sc->ncolls; i++) {
        const crm_collection *c = &sc->colls[i];
        crm_value *list = NULL;
        size_t nrefs = 0;
        for (size_t j = 0; j < c->nfields; j++)
            nrefs += c->fields[j].type == CRM_F_REF && strcmp(c->fields[j].ref_to, coll) == 0;
        for (size_t j = 0; j < c->nfields; j++) {
            const crm_field *fd = &c->fields[j];
            char *after = NULL;
            if (fd->type != CRM_F_REF || strcmp(fd->ref_to, coll) != 0)
                continue;
            crm_value *where = crm_value_map();
            if (!where || crm_map_set(where, fd->name, crm_value_cstr(id)) != 0) {
                crm_value_free(where);
                crm_value_free(list);
                crm_value_free(out);
                crm_err_set(err, CRM_INTERNAL, "out of memory");
                return NULL;
            }
            do { /* page through: the query's limit is 1000 */
                crm_query q = {c->name, where, NULL, CRM_QUERY_MAX_LIMIT, after};
                crm_value *recs = NULL;
                char *next = NULL;
                int rc = crm_txn_query(t, &q, &recs, &next, err);
                free(after);
                after = next;
                if (rc == CRM_OK && !list && !(list = crm_value_arr()))
                    rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
                for (size_t k = 0; rc == CRM_OK && k < recs->u.arr.n; k++) {
                    crm_value *r = recs->u.arr.items[k];
                    int dup = 0;
                    /* a record with two refs to the subject is listed once */
                    for (size_t m = 0; nrefs > 1 && m < list->u.arr.n && !dup; m++)
                        dup = strcmp(crm_map_str(list->u.arr.items[m], "id", ""),
                                     crm_map_str(r, "id", "?")) == 0;
                    if (c == crm_schema_find(sc, coll) && strcmp(crm_map_str(r, "id", ""), id) == 0)
                        dup = 1; /* the subject itself (a self-reference) */
                    if (dup)
                        continue;
                    if (++*total > MAX_RELATED)
                        rc = crm_err_set(err, CRM_TOO_LARGE,
                                         "more than %d records refer to %s/%s", MAX_RELATED, coll, id);
                    else if (crm_arr_push(list, crm_value_dup(r)) != 0)
                        rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
                }
                crm_value_free(recs);
                if (rc != CRM_OK) {
                    free(after);
                    crm_value_free(where);
                    crm_value_free(list);
                    crm_value_free(out);
                    return NULL;
                }
            } while (after);
            crm_value_free(where);
        }
        if (list && crm_map_set(out, c->name, list) != 0) {
            crm_value_free(out);
            crm_err_set(err, CRM_INTERNAL, "out of memory");
            return NULL;
        }
    }
    if (add_about_records(t, sc, coll, id, out, total, err) != CRM_OK) {
        crm_value_free(out);
        return NULL;
    }
    return out;
}

static int export_unit(void *ud, crm_txn *t, crm_err *err)
{
    crm_item *it = ud;
    const char *coll = crm_map_str(it->req, "collection", "contacts");
    const char *id = crm_map_str(it->req, "id", "");
    crm_value *rec = NULL, *related, *res, *detail;
    size_t total = 0;
    int rc;

    crm_txn_set_actor(t, it->user, it->role);
    if ((rc = crm_txn_get(t, coll, id, &rec, err)) != CRM_OK)
        return rc;
    if (!(related = related_records(t, crm_store_schema(crm_txn_store(t)), coll, id, &total, err))) {
        crm_value_free(rec);
        return err->code;
    }
    res = crm_value_map();
    detail = crm_value_map();
    if (!res || !detail || crm_map_set(res, "collection", crm_value_cstr(coll)) ||
        crm_map_set(res, "id", crm_value_cstr(id)) || crm_map_set(res, "record", rec) ||
        crm_map_set(res, "related", related) ||
        crm_map_set(res, "count", crm_value_int((int64_t)total + 1)) ||
        crm_map_set(detail, "records", crm_value_int((int64_t)total + 1))) {
        crm_value_free(res);
        crm_value_free(detail);
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    }
    {
        crm_audit_rec a = {"privacy.export", coll, id, 0, 0, NULL, detail};
        rc = crm_txn_audit(t, &a, err);
    }
    crm_value_free(detail);
    if (rc != CRM_OK) {
        crm_value_free(res);
        return rc;
    }
    it->result = res;
    return CRM_OK;
}

static int erase_unit(void *ud, crm_txn *t, crm_err *err)
{
    crm_item *it = ud;
    const char *coll = crm_map_str(it->req, "collection", "contacts");
    const char *id = crm_map_str(it->req, "id", "");
    crm_value *rec = NULL, *related, *res = NULL, *detail = NULL;
    const char **colls = NULL, **ids = NULL;
    size_t total = 0, n = 0, nrec = 0, nfields = 0;
    uint64_t rewritten = 0;
    int rc;

    crm_txn_set_actor(t, it->user, it->role);
    if ((rc = crm_txn_get(t, coll, id, &rec, err)) != CRM_OK)
        return rc;
    crm_value_free(rec);
    if (!(related = related_records(t, crm_store_schema(crm_txn_store(t)), coll, id, &total, err)))
        return err->code;
    colls = calloc(total + 1, sizeof *colls);
    ids = calloc(total + 1, sizeof *ids);
    if (!colls || !ids) {
        rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < related->u.map.n; i++) {
        const crm_kv *kv = &related->u.map.kv[i];
        for (size_t j = 0; j < kv->val->u.arr.n; j++) {
            colls[n] = kv->key;
            ids[n++] = crm_map_str(kv->val->u.arr.items[j], "id", "");
        }
    }
    colls[n] = coll;
    ids[n++] = id;
    for (size_t i = 0; i < n; i++) {
        size_t nf = 0;
        if ((rc = crm_txn_erase(t, colls[i], ids[i], &nf, err)) != CRM_OK)
            goto done;
        nrec += nf > 0;
        nfields += nf;
    }
    /* earlier feed entries of every one of them, erased or not now: a field
     * removed before still sits in the entries from before */
    if ((rc = crm_feed_scrub(t, colls, ids, n, &rewritten, err)) != CRM_OK)
        goto done;
    res = crm_value_map();
    detail = crm_value_map();
    if (!res || !detail || crm_map_set(res, "collection", crm_value_cstr(coll)) ||
        crm_map_set(res, "id", crm_value_cstr(id)) ||
        crm_map_set(res, "records", crm_value_int((int64_t)n)) ||
        crm_map_set(res, "erased_records", crm_value_int((int64_t)nrec)) ||
        crm_map_set(res, "erased_fields", crm_value_int((int64_t)nfields)) ||
        crm_map_set(res, "feed_entries", crm_value_int((int64_t)rewritten)) ||
        crm_map_set(res, "compacted", crm_value_bool(0)) ||
        crm_map_set(detail, "records", crm_value_int((int64_t)n)) ||
        crm_map_set(detail, "erased_records", crm_value_int((int64_t)nrec)) ||
        crm_map_set(detail, "erased_fields", crm_value_int((int64_t)nfields)) ||
        crm_map_set(detail, "feed_entries", crm_value_int((int64_t)rewritten))) {
        rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
        goto done;
    }
    {
        crm_audit_rec a = {"privacy.erase", coll, id, 0, 0, NULL, detail};
        if ((rc = crm_txn_audit(t, &a, err)) != CRM_OK)
            goto done;
    }
    it->result = res;
    res = NULL;
done:
    crm_value_free(res);
    crm_value_free(detail);
    free(colls);
    free(ids);
    crm_value_free(related);
    return rc;
}

void crm_admin_privacy(crm_sess *s, crm_value *req, int opi)
{
    const char *coll, *id;
    crm_err err;
    int erase = opi == OPI_PRIVACY_ERASE;
    const crm_value *compact = crm_map_get(req, "compact");
    if (!is_admin(s)) {
        crm_reply_err(s, req, opi, CRM_FORBIDDEN, "only the admin role may export or erase personal data",
                      NULL);
    } else if (crm_arg_str(req, "collection", 0, &coll, &err) != CRM_OK ||
               crm_arg_str(req, "id", 1, &id, &err) != CRM_OK) {
        crm_reply_crm_err(s, req, opi, &err);
    } else if (coll && !crm_schema_find(s->net->schema, coll)) {
        crm_reply_err(s, req, opi, CRM_NOT_FOUND, "no such collection", NULL);
    } else if (compact && compact->type != CRM_T_NIL && compact->type != CRM_T_BOOL) {
        crm_reply_err(s, req, opi, CRM_BAD_REQUEST, "compact must be true or false", NULL);
    } else if (crm_batch_add_fn(s, req, opi, erase ? erase_unit : export_unit,
                                erase && !(compact && compact->type == CRM_T_BOOL && !compact->u.b)) !=
               0) {
        crm_reply_err(s, req, opi, CRM_INTERNAL, "out of memory", NULL);
    } else {
        return; /* req now belongs to the batch */
    }
    crm_value_free(req);
}

int crm_admin_compact_now(crm_net *n)
{
    crm_err err;
    if (crm_store_compact(n->store, &err) != CRM_OK) {
        {
            crm_value *m = crm_value_map();
            char *line = NULL;
            if (m && !crm_map_set(m, "level", crm_value_cstr("error")) &&
                !crm_map_set(m, "msg", crm_value_cstr("compaction after an erasure failed")) &&
                !crm_map_set(m, "detail", crm_value_cstr(err.msg)))
                line = crm_json_encode(m, NULL);
            if (line)
                fprintf(stderr, "%s\n", line);
            free(line);
            crm_value_free(m);
        }
        return 0;
    }
    atomic_fetch_add(&n->compactions, 1);
    return 1;
}
