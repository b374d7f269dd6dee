/*
 * query -- where filters, query planning, keyset cursors and aggregates.
 *
 * Correctness never rests on the plan: an index only proposes candidates
 * (always a superset of the matches) and every candidate record is checked
 * against the whole where.  Ordering uses the same order-preserving keys as
 * the indexes, "value key ‖ id", so a cursor is simply the order key of the
 * last record returned and the next page starts strictly after it; records
 * written meanwhile before the cursor are not seen, nothing is repeated and
 * nothing that stays put is skipped.
 *
 * Semantics: a condition on an array field holds when it holds for any
 * element ("ne" when no element equals); nil / absent fields only match
 * eq null, ne v, and in lists holding null; lt/gt/lte/gte compare numbers
 * with numbers and strings with strings (bytewise) and never match across.
 */
#include "store_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

#define MAX_CONDS 64
#define MAX_IN 1000
#define MAX_GROUPS 100000
#define MAX_RANGES MAX_IN
#define OKEY_MAX (CRM_KEY_MAX + CRM_ID_MAX)

enum { OP_EQ, OP_NE, OP_LT, OP_LTE, OP_GT, OP_GTE, OP_IN, OP_PREFIX };
static const char *const op_names[] = {"eq", "ne", "lt", "lte", "gt", "gte", "in", "prefix"};

typedef struct cond {
    const char *field;
    const crm_field *fd; /* NULL: system or undeclared field */
    crm_keykind kk;
    int op;
    const crm_value *val;
} cond;

struct crm_filter {
    cond c[MAX_CONDS];
    size_t n;
};
typedef struct crm_filter filter;

/* ---- field typing ---- */

static crm_keykind field_kk(const crm_collection *c, const char *name, const crm_field **fd_out)
{
    const crm_field *fd = crm_collection_field(c, name);
    if (fd_out)
        *fd_out = fd;
    if (fd)
        return crm_keykind_of(fd->type);
    if (strcmp(name, "id") == 0)
        return CRM_KK_STR;
    if (crm_is_system_field(name))
        return CRM_KK_INT;
    return CRM_KK_ANY;
}

static int known_field(const crm_collection *c, const char *name)
{
    return !c->strict || crm_is_system_field(name) || crm_collection_field(c, name);
}

/* Does the kind of v suit a field of key kind kk (and array items)? */
static int value_fits(const crm_field *fd, crm_keykind kk, const crm_value *v)
{
    crm_ftype t;
    if (v->type == CRM_T_NIL)
        return 1;
    if (!fd) {
        if (kk == CRM_KK_STR)
            return v->type == CRM_T_STR;
        if (kk == CRM_KK_INT)
            return crm_value_is_number(v);
        return 1;
    }
    t = fd->type == CRM_F_ARRAY ? fd->items : fd->type;
    if (fd->type == CRM_F_ARRAY && v->type == CRM_T_ARR)
        return 1; /* whole-array equality */
    switch (t) {
    case CRM_F_STRING:
    case CRM_F_ENUM:
    case CRM_F_REF:
        return v->type == CRM_T_STR;
    case CRM_F_INT:
    case CRM_F_NUMBER:
    case CRM_F_TIMESTAMP:
        return crm_value_is_number(v);
    case CRM_F_BOOL:
        return v->type == CRM_T_BOOL;
    case CRM_F_MAP:
        return v->type == CRM_T_MAP;
    default:
        return 1;
    }
}

static int add_cond(filter *f, const crm_collection *c, const char *field, int op,
                    const crm_value *val, crm_err *err)
{
    cond *cd;
    const crm_field *fd;
    crm_keykind kk;
    if (f->n >= MAX_CONDS)
        return crm_err_set(err, CRM_BAD_REQUEST, "where: at most %d conditions", MAX_CONDS);
    kk = field_kk(c, field, &fd);
    if (op == OP_IN) {
        if (val->type != CRM_T_ARR)
            return crm_err_set(err, CRM_BAD_REQUEST, "where.%s: in needs a list", field);
        if (val->u.arr.n > MAX_IN)
            return crm_err_set(err, CRM_BAD_REQUEST, "where.%s: in takes at most %d values",
                               field, MAX_IN);
        for (size_t i = 0; i < val->u.arr.n; i++)
            if (!value_fits(fd, kk, val->u.arr.items[i]) || val->u.arr.items[i]->type == CRM_T_ARR)
                return crm_err_set(err, CRM_BAD_REQUEST, "where.%s: in value %zu has the wrong type",
                                   field, i);
    } else if (op == OP_PREFIX) {
        if (val->type != CRM_T_STR)
            return crm_err_set(err, CRM_BAD_REQUEST, "where.%s: prefix needs a string", field);
        if (fd && !value_fits(fd, kk, val))
            return crm_err_set(err, CRM_BAD_REQUEST, "where.%s: prefix applies to strings", field);
    } else if (op == OP_EQ || op == OP_NE) {
        if (!value_fits(fd, kk, val))
            return crm_err_set(err, CRM_BAD_REQUEST, "where.%s: %s value has the wrong type",
                               field, op_names[op]);
    } else {
        if (val->type != CRM_T_STR && !crm_value_is_number(val))
            return crm_err_set(err, CRM_BAD_REQUEST, "where.%s: %s needs a number or a string",
                               field, op_names[op]);
        if (!value_fits(fd, kk, val))
            return crm_err_set(err, CRM_BAD_REQUEST, "where.%s: %s value has the wrong type",
                               field, op_names[op]);
    }
    cd = &f->c[f->n++];
    cd->field = field;
    cd->fd = fd;
    cd->kk = kk;
    cd->op = op;
    cd->val = val;
    return CRM_OK;
}

static int is_operator_map(const crm_value *v)
{
    if (v->type != CRM_T_MAP || v->u.map.n == 0)
        return 0;
    for (size_t i = 0; i < v->u.map.n; i++) {
        int known = 0;
        for (size_t o = 0; o < sizeof op_names / sizeof *op_names; o++)
            known |= strcmp(v->u.map.kv[i].key, op_names[o]) == 0;
        if (!known)
            return 0;
    }
    return 1;
}

static int filter_compile(const crm_collection *c, const crm_value *where, filter *f, crm_err *err)
{
    int rc;
    f->n = 0;
    if (!where || where->type == CRM_T_NIL)
        return CRM_OK;
    if (where->type != CRM_T_MAP)
        return crm_err_set(err, CRM_BAD_REQUEST, "where must be a map of field to condition");
    for (size_t i = 0; i < where->u.map.n; i++) {
        const char *field = where->u.map.kv[i].key;
        const crm_value *v = where->u.map.kv[i].val;
        if (!known_field(c, field))
            return crm_err_set(err, CRM_BAD_REQUEST, "where: %s has no field \"%.64s\"", c->name,
                               field);
        if (v->type == CRM_T_MAP) {
            if (!is_operator_map(v))
                return crm_err_set(err, CRM_BAD_REQUEST,
                                   "where.%s: operators are eq ne lt lte gt gte in prefix", field);
            for (size_t j = 0; j < v->u.map.n; j++) {
                int op = 0;
                for (int o = 0; o < 8; o++)
                    if (strcmp(v->u.map.kv[j].key, op_names[o]) == 0)
                        op = o;
                if ((rc = add_cond(f, c, field, op, v->u.map.kv[j].val, err)) != CRM_OK)
                    return rc;
            }
        } else if ((rc = add_cond(f, c, field, OP_EQ, v, err)) != CRM_OK) {
            return rc;
        }
    }
    return CRM_OK;
}

/* ---- matching ---- */

static int same_kind(const crm_value *a, const crm_value *b)
{
    if (crm_value_is_number(a) && crm_value_is_number(b))
        return 1;
    return a->type == b->type && (a->type == CRM_T_STR || a->type == CRM_T_BOOL);
}

static int eval_scalar(const crm_value *fv, int op, const crm_value *val)
{
    int c;
    switch (op) {
    case OP_EQ:
        if (val->type == CRM_T_NIL)
            return !fv || fv->type == CRM_T_NIL;
        return fv && crm_value_cmp(fv, val) == 0;
    case OP_IN:
        for (size_t i = 0; i < val->u.arr.n; i++)
            if (eval_scalar(fv, OP_EQ, val->u.arr.items[i]))
                return 1;
        return 0;
    case OP_PREFIX:
        return fv && fv->type == CRM_T_STR && fv->u.str.len >= val->u.str.len &&
               memcmp(fv->u.str.s, val->u.str.s, val->u.str.len) == 0;
    default:
        if (!fv || !same_kind(fv, val))
            return 0;
        c = crm_value_cmp(fv, val);
        return op == OP_LT ? c < 0 : op == OP_LTE ? c <= 0 : op == OP_GT ? c > 0 : c >= 0;
    }
}

static int eval_cond(const cond *cd, const crm_value *rec)
{
    const crm_value *fv = crm_map_get(rec, cd->field);
    if (cd->op == OP_NE) {
        cond eq = *cd;
        eq.op = OP_EQ;
        return !eval_cond(&eq, rec);
    }
    if (fv && fv->type == CRM_T_ARR) {
        if (cd->op == OP_EQ && cd->val->type == CRM_T_ARR && crm_value_equal(fv, cd->val))
            return 1;
        for (size_t i = 0; i < fv->u.arr.n; i++)
            if (eval_scalar(fv->u.arr.items[i], cd->op, cd->val))
                return 1;
        return 0;
    }
    return eval_scalar(fv, cd->op, cd->val);
}

static int filter_match(const filter *f, const crm_value *rec)
{
    for (size_t i = 0; i < f->n; i++)
        if (!eval_cond(&f->c[i], rec))
            return 0;
    return 1;
}

int crm_filter_compile(const crm_collection *c, const crm_value *where, crm_filter **out,
                       crm_err *err)
{
    filter *f = malloc(sizeof *f);
    int rc;
    *out = NULL;
    if (!f)
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    if ((rc = filter_compile(c, where, f, err)) != CRM_OK) {
        free(f);
        return rc;
    }
    *out = f;
    return CRM_OK;
}

int crm_filter_match(const crm_filter *f, const crm_value *rec)
{
    return filter_match(f, rec);
}

void crm_filter_free(crm_filter *f)
{
    free(f);
}

/* ---- ranges over index keys ---- */

typedef struct range {
    uint8_t lo[CRM_KEY_MAX], hi[CRM_KEY_MAX];
    size_t lol, hil;
    int has_lo, has_hi, lo_incl, hi_incl;
    int prefix; /* lo holds a raw prefix; keys must start with it */
} range;

typedef struct plan {
    enum { P_PRIMARY, P_INDEX, P_IDS } kind;
    int slot;              /* P_INDEX */
    const crm_field *fd;   /* P_INDEX */
    range *ranges;         /* P_INDEX: sorted ascending, or NULL = whole index */
    size_t nranges;
    const cond *ids;       /* P_IDS: the id eq/in condition */
    int single_eq;         /* P_INDEX with one eq range: walk order == id order */
    uint8_t eq_key[CRM_KEY_MAX];
    size_t eq_keyl;
} plan;

/* The value key of a bound on an int-kind index, rounded outward when it is
 * not an integer so the range stays a superset. */
static size_t bound_key(const crm_value *v, crm_keykind kk, int upper, uint8_t *out)
{
    if (kk == CRM_KK_INT && v->type == CRM_T_NUM && v->u.n != floor(v->u.n)) {
        crm_value tmp = {.type = CRM_T_INT};
        double r = upper ? ceil(v->u.n) : floor(v->u.n);
        if (r > 9.2e18)
            r = 9.2e18;
        if (r < -9.2e18)
            r = -9.2e18;
        tmp.u.i = (int64_t)r;
        return crm_key_encode(&tmp, kk, out);
    }
    if (kk == CRM_KK_INT && v->type == CRM_T_NUM && fabs(v->u.n) >= 9.2e18) {
        crm_value tmp = {.type = CRM_T_INT};
        tmp.u.i = v->u.n > 0 ? INT64_MAX : INT64_MIN;
        return crm_key_encode(&tmp, kk, out);
    }
    return crm_key_encode(v, kk, out);
}

static int range_cmp(const void *a, const void *b)
{
    const range *x = a, *y = b;
    size_t n = x->lol < y->lol ? x->lol : y->lol;
    int c = memcmp(x->lo, y->lo, n);
    return c ? c : (x->lol > y->lol) - (x->lol < y->lol);
}

static void range_point(range *r, const crm_value *v, crm_keykind kk)
{
    memset(r, 0, sizeof *r);
    r->lol = bound_key(v, kk, 0, r->lo);
    r->hil = bound_key(v, kk, 1, r->hi);
    r->has_lo = r->has_hi = r->lo_incl = r->hi_incl = 1;
}

/* Can cond cd drive an index walk, and how good is it? 3 eq, 2 in/prefix,
 * 1 range, 0 no. */
static int cond_rank(const cond *cd)
{
    if (!cd->fd || cd->fd->slot < 0 || cd->fd->type == CRM_F_ARRAY)
        return 0;
    if (cd->kk == CRM_KK_STR && cd->val->type != CRM_T_STR && cd->op != OP_IN && cd->op != OP_EQ)
        return 0;
    /* indexes are sparse (no entry without a value): a condition that a
     * nil matches cannot be answered from one */
    if (cd->op == OP_EQ && cd->val->type == CRM_T_NIL)
        return 0;
    if (cd->op == OP_IN)
        for (size_t i = 0; i < cd->val->u.arr.n; i++)
            if (cd->val->u.arr.items[i]->type == CRM_T_NIL)
                return 0;
    switch (cd->op) {
    case OP_EQ:
        return 3;
    case OP_IN:
    case OP_PREFIX:
        return 2;
    case OP_LT:
    case OP_LTE:
    case OP_GT:
    case OP_GTE:
        return 1;
    default:
        return 0;
    }
}

/* Does some condition on fd keep records without a value out of the result
 * (so walking fd's sparse index misses none)? */
static int excludes_nil(const filter *f, const crm_field *fd)
{
    for (size_t i = 0; i < f->n; i++)
        if (f->c[i].fd == fd && cond_rank(&f->c[i]) > 0)
            return 1;
    return 0;
}

/* Builds the ranges of field fd from every usable condition on it (the
 * best-ranked one; range ops are merged into one interval). */
static int plan_index(plan *p, const filter *f, const crm_field *fd, crm_err *err)
{
    int best = 0;
    const cond *bc = NULL;
    p->kind = P_INDEX;
    p->fd = fd;
    p->slot = fd->slot;
    p->ranges = NULL;
    p->nranges = 0;
    p->single_eq = 0;
    for (size_t i = 0; i < f->n; i++)
        if (f->c[i].fd == fd && cond_rank(&f->c[i]) > best) {
            best = cond_rank(&f->c[i]);
            bc = &f->c[i];
        }
    if (!bc)
        return CRM_OK; /* the whole index */
    crm_keykind kk = crm_keykind_of(fd->type);
    if (bc->op == OP_EQ || bc->op == OP_PREFIX) {
        if (!(p->ranges = calloc(1, sizeof *p->ranges)))
            return crm_err_set(err, CRM_INTERNAL, "out of memory");
        p->nranges = 1;
        if (bc->op == OP_EQ) {
            range_point(&p->ranges[0], bc->val, kk);
            if (p->ranges[0].lol == p->ranges[0].hil &&
                memcmp(p->ranges[0].lo, p->ranges[0].hi, p->ranges[0].lol) == 0) {
                p->single_eq = 1;
                memcpy(p->eq_key, p->ranges[0].lo, p->ranges[0].lol);
                p->eq_keyl = p->ranges[0].lol;
            }
        } else {
            p->ranges[0].prefix = 1;
            p->ranges[0].lol = crm_key_prefix(bc->val->u.str.s, bc->val->u.str.len, p->ranges[0].lo);
        }
        return CRM_OK;
    }
    if (bc->op == OP_IN) {
        size_t n = bc->val->u.arr.n;
        if (n == 0) { /* matches nothing: an empty range */
            if (!(p->ranges = calloc(1, sizeof *p->ranges)))
                return crm_err_set(err, CRM_INTERNAL, "out of memory");
            p->nranges = 0;
            return CRM_OK;
        }
        if (!(p->ranges = calloc(n, sizeof *p->ranges)))
            return crm_err_set(err, CRM_INTERNAL, "out of memory");
        for (size_t i = 0; i < n; i++)
            range_point(&p->ranges[i], bc->val->u.arr.items[i], kk);
        qsort(p->ranges, n, sizeof *p->ranges, range_cmp);
        /* drop duplicates so no record is proposed twice */
        size_t w = 0;
        for (size_t i = 0; i < n; i++)
            if (w == 0 || range_cmp(&p->ranges[w - 1], &p->ranges[i]) != 0)
                p->ranges[w++] = p->ranges[i];
        p->nranges = w;
        return CRM_OK;
    }
    /* ranges: merge every lt/lte/gt/gte on this field of a fitting kind */
    if (!(p->ranges = calloc(1, sizeof *p->ranges)))
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    p->nranges = 1;
    range *r = &p->ranges[0];
    for (size_t i = 0; i < f->n; i++) {
        const cond *cd = &f->c[i];
        uint8_t k[CRM_KEY_MAX];
        size_t kl;
        if (cd->fd != fd || cond_rank(cd) != 1)
            continue;
        /* keep the first bound of each side; the filter applies the others */
        if (cd->op == OP_GT || cd->op == OP_GTE) {
            if (r->has_lo)
                continue;
            kl = bound_key(cd->val, kk, 0, k);
            memcpy(r->lo, k, kl);
            r->lol = kl;
            r->has_lo = 1;
            r->lo_incl = cd->op == OP_GTE || (kk == CRM_KK_INT && cd->val->type == CRM_T_NUM);
        } else if (!r->has_hi) {
            kl = bound_key(cd->val, kk, 1, k);
            memcpy(r->hi, k, kl);
            r->hil = kl;
            r->has_hi = 1;
            r->hi_incl = cd->op == OP_LTE || (kk == CRM_KK_INT && cd->val->type == CRM_T_NUM);
        }
    }
    /* A numeric bound must not wander into strings or nil and back: keep the
     * walk inside the kind's tag. */
    if (r->has_lo && !r->has_hi) {
        r->hi[0] = r->lo[0];
        r->hil = 1;
        r->has_hi = 1;
        r->hi_incl = 2; /* "tag only": every key with this first byte */
    } else if (r->has_hi && !r->has_lo) {
        r->lo[0] = r->hi[0];
        r->lol = 1;
        r->has_lo = 1;
        r->lo_incl = 1;
    }
    return CRM_OK;
}

/* ---- walking ---- */

typedef int (*emit_fn)(void *ud, const char *id, size_t idlen, const uint8_t *wkey, size_t wkl);

static int keycmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
    size_t n = al < bl ? al : bl;
    int c = memcmp(a, b, n);
    return c ? c : (al > bl) - (al < bl);
}

/* Is index key k (value key ‖ id) below the range's lower end / above its upper end? */
static int below_lo(const range *r, const uint8_t *k, size_t kl)
{
    size_t vl = crm_key_len(k, kl);
    int c;
    if (r->prefix)
        return keycmp(k, kl, r->lo, r->lol) < 0;
    if (!r->has_lo)
        return 0;
    c = keycmp(k, vl, r->lo, r->lol);
    return r->lo_incl ? c < 0 : c <= 0;
}

static int above_hi(const range *r, const uint8_t *k, size_t kl)
{
    size_t vl = crm_key_len(k, kl);
    int c;
    if (r->prefix)
        return kl < r->lol || memcmp(k, r->lo, r->lol) != 0;
    if (!r->has_hi)
        return 0;
    if (r->hi_incl == 2)
        return k[0] != r->hi[0];
    c = keycmp(k, vl, r->hi, r->hil);
    return r->hi_incl ? c > 0 : c >= 0;
}

/* Walks one range of dbi in direction desc, strictly after `after` (a walk
 * key) when given.  primary: the key is the id; else the data is. */
static int walk_range(crm_txn *t, MDB_dbi dbi, int primary, const range *r, int desc,
                      const uint8_t *after, size_t afterl, emit_fn fn, void *ud, int *stopped,
                      crm_err *err)
{
    MDB_cursor *cur;
    MDB_val k, v;
    uint8_t start[OKEY_MAX + 2];
    int mrc;

    if ((mrc = mdb_cursor_open(t->txn, dbi, &cur)))
        return crm_store_mdb_err(t, mrc, err, "cursor");
    if (!desc) {
        /* first key >= max(lower end, after+) */
        size_t sl = 0;
        if (r && (r->has_lo || r->prefix)) {
            memcpy(start, r->lo, r->lol);
            sl = r->lol;
            if (!r->prefix && !r->lo_incl)
                start[sl++] = 0xFF; /* past every id under the same value key */
        }
        if (after && (sl == 0 || keycmp(after, afterl, start, sl) >= 0)) {
            memcpy(start, after, afterl);
            sl = afterl;
            start[sl++] = 0x00; /* the smallest key strictly after `after` */
        }
        if (sl) {
            k.mv_size = sl;
            k.mv_data = start;
            mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        } else {
            mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        }
    } else {
        /* last key < min(upper end+, after) */
        size_t sl = 0;
        int have = 0;
        if (r && r->prefix) {
            memcpy(start, r->lo, r->lol);
            sl = r->lol;
            start[sl++] = 0xFF; /* every escaped byte < 0xFF...: past the prefix */
            start[sl++] = 0xFF;
            have = 1;
        } else if (r && r->has_hi) {
            if (r->hi_incl == 2) {
                start[0] = (uint8_t)(r->hi[0] + 1);
                sl = 1;
            } else {
                memcpy(start, r->hi, r->hil);
                sl = r->hil;
                if (r->hi_incl)
                    start[sl++] = 0xFF;
            }
            have = 1;
        }
        if (after && (!have || keycmp(after, afterl, start, sl) < 0)) {
            memcpy(start, after, afterl);
            sl = afterl;
            have = 1;
        }
        if (have) {
            k.mv_size = sl;
            k.mv_data = start;
            mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
            if (mrc == 0)
                mrc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
            else if (mrc == MDB_NOTFOUND)
                mrc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
        } else {
            mrc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
        }
    }
    while (mrc == 0) {
        const uint8_t *kk = k.mv_data;
        if (r && !primary && (desc ? below_lo(r, kk, k.mv_size) : above_hi(r, kk, k.mv_size)))
            break;
        if (primary) {
            if (fn(ud, (const char *)kk, k.mv_size, kk, k.mv_size)) {
                *stopped = 1;
                break;
            }
        } else if (fn(ud, v.mv_data, v.mv_size, kk, k.mv_size)) {
            *stopped = 1;
            break;
        }
        mrc = mdb_cursor_get(cur, &k, &v, desc ? MDB_PREV : MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (mrc && mrc != MDB_NOTFOUND)
        return crm_store_mdb_err(t, mrc, err, "walk");
    return CRM_OK;
}

static int walk(crm_txn *t, const crm_coll_rt *rt, const plan *p, int desc, const uint8_t *after,
                size_t afterl, emit_fn fn, void *ud, crm_err *err)
{
    int stopped = 0, rc = CRM_OK;
    if (p->kind == P_PRIMARY)
        return walk_range(t, rt->dbi, 1, NULL, desc, after, afterl, fn, ud, &stopped, err);
    if (p->kind == P_IDS) {
        const crm_value *v = p->ids->val;
        size_t n = p->ids->op == OP_IN ? v->u.arr.n : 1;
        for (size_t i = 0; i < n && !stopped; i++) {
            const crm_value *id = p->ids->op == OP_IN ? v->u.arr.items[i] : v;
            if (id->type != CRM_T_STR || !crm_id_valid(id->u.str.s, id->u.str.len))
                continue;
            /* duplicates in the list are proposed twice; the caller dedups */
            stopped = fn(ud, id->u.str.s, id->u.str.len, (const uint8_t *)id->u.str.s,
                         id->u.str.len);
        }
        return CRM_OK;
    }
    if (!p->ranges)
        return walk_range(t, rt->idx[p->slot], 0, NULL, desc, after, afterl, fn, ud, &stopped, err);
    for (size_t i = 0; i < p->nranges && !stopped && rc == CRM_OK; i++) {
        const range *r = &p->ranges[desc ? p->nranges - 1 - i : i];
        rc = walk_range(t, rt->idx[p->slot], 0, r, desc, after, afterl, fn, ud, &stopped, err);
    }
    return rc;
}

/* Picks the candidate source: id conditions, then the best-ranked indexed
 * condition, else the whole collection. */
static int plan_pick(const crm_coll_rt *rt, const filter *f, plan *p, crm_err *err)
{
    const cond *best = NULL;
    int rank = 0;
    memset(p, 0, sizeof *p);
    p->kind = P_PRIMARY;
    for (size_t i = 0; i < f->n; i++) {
        const cond *cd = &f->c[i];
        if (strcmp(cd->field, "id") == 0 && (cd->op == OP_EQ || cd->op == OP_IN)) {
            p->kind = P_IDS;
            p->ids = cd;
            return CRM_OK;
        }
        if (cond_rank(cd) > rank) {
            rank = cond_rank(cd);
            best = cd;
        }
    }
    (void)rt;
    if (best)
        return plan_index(p, f, best->fd, err);
    return CRM_OK;
}

/* ---- queries ---- */

typedef struct hit {
    uint8_t okey[OKEY_MAX];
    size_t okl;
    crm_value *rec;
} hit;

typedef struct qstate {
    crm_txn *t;
    const crm_coll_rt *rt;
    const filter *f;
    const char *ofield;   /* NULL = id */
    crm_keykind okk;
    int desc;
    int streaming;        /* walk order == wanted order: stop at limit+1 */
    const uint8_t *after; /* order key */
    size_t afterl;
    hit *hits;            /* sorted by wanted order */
    size_t n, cap;        /* cap = limit + 1 */
    int rc;
    crm_err *err;
    int id_plan;          /* P_IDS: dedupe */
} qstate;

static size_t order_key(const qstate *q, const crm_value *rec, const char *id, size_t idlen,
                        uint8_t *out)
{
    size_t kl = 0;
    if (q->ofield)
        kl = crm_key_encode(crm_map_get(rec, q->ofield), q->okk, out);
    memcpy(out + kl, id, idlen);
    return kl + idlen;
}

/* Is a before b in the wanted order? */
static int before(const qstate *q, const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
    int c = keycmp(a, al, b, bl);
    return q->desc ? c > 0 : c < 0;
}

static int emit_query(void *ud, const char *id, size_t idlen, const uint8_t *wkey, size_t wkl)
{
    qstate *q = ud;
    MDB_val k = {idlen, (void *)id}, v;
    crm_value *rec;
    hit h;
    int mrc;
    (void)wkey;
    (void)wkl;
    mrc = mdb_get(q->t->txn, q->rt->dbi, &k, &v);
    if (mrc == MDB_NOTFOUND)
        return 0;
    if (mrc) {
        q->rc = crm_store_mdb_err(q->t, mrc, q->err, "query get");
        return 1;
    }
    if (!(rec = crm_mp_decode_trusted(v.mv_data, v.mv_size))) {
        q->rc = crm_err_set(q->err, CRM_INTERNAL, "%s/%.*s does not decode", q->rt->c->name,
                            (int)idlen, id);
        return 1;
    }
    if (!filter_match(q->f, rec)) {
        crm_value_free(rec);
        return 0;
    }
    h.okl = order_key(q, rec, id, idlen, h.okey);
    if (q->after && !before(q, q->after, q->afterl, h.okey, h.okl)) {
        crm_value_free(rec);
        return 0;
    }
    h.rec = rec;
    /* insert in order, keeping at most cap */
    size_t lo = 0, hi = q->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (before(q, q->hits[mid].okey, q->hits[mid].okl, h.okey, h.okl))
            lo = mid + 1;
        else
            hi = mid;
    }
    if (q->id_plan && lo < q->n && keycmp(q->hits[lo].okey, q->hits[lo].okl, h.okey, h.okl) == 0) {
        crm_value_free(rec); /* the same id listed twice */
        return 0;
    }
    if (lo >= q->cap) {
        crm_value_free(rec);
        return 0;
    }
    if (q->n == q->cap) {
        crm_value_free(q->hits[q->n - 1].rec);
        q->n--;
    }
    memmove(&q->hits[lo + 1], &q->hits[lo], (q->n - lo) * sizeof *q->hits);
    q->hits[lo] = h;
    q->n++;
    return q->streaming && q->n == q->cap;
}

static uint32_t fnv32(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

static char *cursor_make(const char *ofield, int desc, const uint8_t *okey, size_t okl)
{
    uint8_t raw[6 + OKEY_MAX];
    char *out = malloc(4 * ((6 + okl + 2) / 3) + 2);
    uint32_t h = fnv32(ofield ? ofield : "id");
    if (!out)
        return NULL;
    raw[0] = 1;
    raw[1] = (uint8_t)desc;
    raw[2] = (uint8_t)(h >> 24);
    raw[3] = (uint8_t)(h >> 16);
    raw[4] = (uint8_t)(h >> 8);
    raw[5] = (uint8_t)h;
    memcpy(raw + 6, okey, okl);
    crm_b64url_encode(raw, 6 + okl, out);
    return out;
}

static int cursor_parse(const char *cur, const char *ofield, int desc, uint8_t *okey, size_t *okl,
                        crm_err *err)
{
    uint8_t raw[6 + OKEY_MAX];
    size_t n = strlen(cur);
    long got;
    uint32_t h = fnv32(ofield ? ofield : "id");
    if (n > 4 * (sizeof raw / 3 + 1) ||
        (got = crm_b64url_decode(cur, n, raw, sizeof raw)) < 7 || raw[0] != 1)
        return crm_err_set(err, CRM_BAD_REQUEST, "after: not a cursor from this server");
    if (raw[1] != desc || raw[2] != (uint8_t)(h >> 24) || raw[3] != (uint8_t)(h >> 16) ||
        raw[4] != (uint8_t)(h >> 8) || raw[5] != (uint8_t)h)
        return crm_err_set(err, CRM_BAD_REQUEST, "after: the cursor belongs to another order_by");
    *okl = (size_t)got - 6;
    memcpy(okey, raw + 6, *okl);
    return CRM_OK;
}

int crm_txn_query(crm_txn *t, const crm_query *qq, crm_value **records, char **next, crm_err *err)
{
    const crm_coll_rt *rt = crm_store_coll(t->s, qq->coll);
    filter *f = NULL;
    plan p;
    qstate q;
    uint8_t after[OKEY_MAX], wafter[OKEY_MAX];
    size_t afterl = 0, wafterl = 0;
    const uint8_t *wa = NULL;
    int rc;
    const char *ob = qq->order_by;
    const crm_field *ofd = NULL;

    *records = NULL;
    *next = NULL;
    memset(&p, 0, sizeof p);
    memset(&q, 0, sizeof q);
    if (!rt)
        return crm_err_set(err, CRM_BAD_REQUEST, "unknown collection \"%s\"",
                           qq->coll ? qq->coll : "");
    if (qq->limit > CRM_QUERY_MAX_LIMIT)
        return crm_err_set(err, CRM_BAD_REQUEST, "limit is at most %d", CRM_QUERY_MAX_LIMIT);
    q.desc = ob && ob[0] == '-';
    if (q.desc)
        ob++;
    if (ob && !*ob)
        return crm_err_set(err, CRM_BAD_REQUEST, "order_by names no field");
    if (ob && strcmp(ob, "id") == 0)
        ob = NULL; /* id order is the natural order */
    if (ob && !known_field(rt->c, ob))
        return crm_err_set(err, CRM_BAD_REQUEST, "order_by: %s has no field \"%.64s\"",
                           rt->c->name, ob);
    q.ofield = ob;
    q.okk = ob ? field_kk(rt->c, ob, &ofd) : CRM_KK_STR;
    if (!(f = malloc(sizeof *f)))
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    if ((rc = filter_compile(rt->c, qq->where, f, err)) != CRM_OK)
        goto done;
    if (qq->after && (rc = cursor_parse(qq->after, ob, q.desc, after, &afterl, err)) != CRM_OK)
        goto done;

    /* Plan: stream when a walk yields the wanted order, else top-k. */
    if ((rc = plan_pick(rt, f, &p, err)) != CRM_OK)
        goto done;
    if (!ob) {
        if (p.kind == P_PRIMARY) {
            q.streaming = 1;
            wa = qq->after ? after : NULL;
            wafterl = afterl;
        } else if (p.kind == P_INDEX && p.single_eq) {
            q.streaming = 1;
            if (qq->after) { /* id cursor -> index position under the eq value */
                memcpy(wafter, p.eq_key, p.eq_keyl);
                memcpy(wafter + p.eq_keyl, after, afterl);
                wa = wafter;
                wafterl = p.eq_keyl + afterl;
            }
        }
    } else if (ofd && ofd->slot >= 0 && !(p.kind == P_IDS) &&
               !(p.kind == P_INDEX && p.single_eq && p.fd != ofd) && excludes_nil(f, ofd)) {
        /* walk the order field's own index, narrowed by its conditions; only
         * when the where leaves out records without a value, which the
         * sparse index does not hold */
        free(p.ranges);
        if ((rc = plan_index(&p, f, ofd, err)) != CRM_OK)
            goto done;
        q.streaming = 1;
        wa = qq->after ? after : NULL;
        wafterl = afterl;
    }
    q.t = t;
    q.rt = rt;
    q.f = f;
    q.after = qq->after ? after : NULL;
    q.afterl = afterl;
    q.cap = (qq->limit ? qq->limit : CRM_QUERY_DEFAULT_LIMIT) + 1;
    q.err = err;
    q.id_plan = p.kind == P_IDS;
    if (!(q.hits = malloc(q.cap * sizeof *q.hits))) {
        rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
        goto done;
    }
    rc = walk(t, rt, &p, q.desc, q.streaming ? wa : NULL, wafterl, emit_query, &q, err);
    if (rc == CRM_OK)
        rc = q.rc;
    if (rc != CRM_OK)
        goto done;
    {
        size_t limit = q.cap - 1, shown = q.n > limit ? limit : q.n;
        crm_value *arr = crm_value_arr();
        if (!arr) {
            rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
            goto done;
        }
        if (q.n > limit && !(*next = cursor_make(ob, q.desc, q.hits[shown - 1].okey,
                                                  q.hits[shown - 1].okl))) {
            crm_value_free(arr);
            rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
            goto done;
        }
        for (size_t i = 0; i < shown; i++) {
            crm_value *r = q.hits[i].rec;
            q.hits[i].rec = NULL;
            if (crm_arr_push(arr, r) != 0) {
                crm_value_free(arr);
                free(*next);
                *next = NULL;
                rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
                goto done;
            }
        }
        *records = arr;
    }
done:
    for (size_t i = 0; i < q.n; i++)
        crm_value_free(q.hits[i].rec);
    free(q.hits);
    free(p.ranges);
    free(f);
    return rc;
}

/* ---- aggregates ---- */

typedef struct metric {
    enum { M_COUNT, M_SUM, M_MIN, M_MAX, M_AVG } kind;
    const char *name;  /* as asked, the output key */
    const char *field;
} metric;

typedef struct agg {
    const crm_value *key;  /* borrowed from keyv */
    crm_value *keyv;
    uint8_t k[CRM_KEY_MAX];
    size_t kl;
    int64_t count;
    struct acc {
        int64_t isum;
        double dsum;
        int int_only, overflow;
        int64_t n;
        crm_value *min, *max;
    } *acc;
} agg;

typedef struct astate {
    crm_txn *t;
    const crm_coll_rt *rt;
    const filter *f;
    const char *group_by;
    crm_keykind gkk;
    const metric *m;
    size_t nm;
    agg *groups;
    size_t n, cap;
    int rc;
    crm_err *err;
    int id_plan;
    crm_value *seen_ids; /* P_IDS: ids already counted */
} astate;

/* 0, or -1 when memory ran out (keeping the old min/max would give a wrong
 * answer, not an error). */
static int acc_add(struct acc *a, const metric *m, const crm_value *v)
{
    if (!v || v->type == CRM_T_NIL)
        return 0;
    if (m->kind == M_MIN || m->kind == M_MAX) {
        crm_value **slot = m->kind == M_MIN ? &a->min : &a->max;
        /* mixed kinds follow crm_value_cmp's type order */
        if (!*slot || (m->kind == M_MIN ? crm_value_cmp(v, *slot) < 0 : crm_value_cmp(v, *slot) > 0)) {
            crm_value *d = crm_value_dup(v);
            if (!d)
                return -1;
            crm_value_free(*slot);
            *slot = d;
        }
        return 0;
    }
    if (!crm_value_is_number(v))
        return 0;
    a->n++;
    a->dsum += crm_value_as_double(v);
    if (v->type == CRM_T_INT && a->int_only && !a->overflow) {
        if (__builtin_add_overflow(a->isum, v->u.i, &a->isum))
            a->overflow = 1;
    } else {
        a->int_only = 0;
    }
    return 0;
}

static int emit_agg(void *ud, const char *id, size_t idlen, const uint8_t *wkey, size_t wkl)
{
    astate *a = ud;
    MDB_val k = {idlen, (void *)id}, v;
    crm_value *rec;
    uint8_t gk[CRM_KEY_MAX];
    size_t gkl;
    const crm_value *gv;
    int mrc;
    (void)wkey;
    (void)wkl;
    if (a->id_plan) {
        for (size_t i = 0; i < a->seen_ids->u.arr.n; i++)
            if (a->seen_ids->u.arr.items[i]->u.str.len == idlen &&
                memcmp(a->seen_ids->u.arr.items[i]->u.str.s, id, idlen) == 0)
                return 0;
        crm_arr_push(a->seen_ids, crm_value_str(id, idlen));
    }
    mrc = mdb_get(a->t->txn, a->rt->dbi, &k, &v);
    if (mrc == MDB_NOTFOUND)
        return 0;
    if (mrc) {
        a->rc = crm_store_mdb_err(a->t, mrc, a->err, "aggregate get");
        return 1;
    }
    if (!(rec = crm_mp_decode_trusted(v.mv_data, v.mv_size))) {
        a->rc = crm_err_set(a->err, CRM_INTERNAL, "record does not decode");
        return 1;
    }
    if (!filter_match(a->f, rec)) {
        crm_value_free(rec);
        return 0;
    }
    gv = a->group_by ? crm_map_get(rec, a->group_by) : NULL;
    gkl = crm_key_encode(gv, a->gkk, gk);
    size_t lo = 0, hi = a->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (keycmp(a->groups[mid].k, a->groups[mid].kl, gk, gkl) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == a->n || keycmp(a->groups[lo].k, a->groups[lo].kl, gk, gkl) != 0) {
        agg g;
        if (a->n >= MAX_GROUPS) {
            crm_value_free(rec);
            a->rc = crm_err_set(a->err, CRM_TOO_LARGE, "more than %d groups", MAX_GROUPS);
            return 1;
        }
        if (a->n == a->cap) {
            size_t nc = a->cap ? a->cap * 2 : 16;
            agg *ng = realloc(a->groups, nc * sizeof *ng);
            if (!ng) {
                crm_value_free(rec);
                a->rc = crm_err_set(a->err, CRM_INTERNAL, "out of memory");
                return 1;
            }
            a->groups = ng;
            a->cap = nc;
        }
        memset(&g, 0, sizeof g);
        memcpy(g.k, gk, gkl);
        g.kl = gkl;
        g.keyv = gv ? crm_value_dup(gv) : crm_value_nil();
        g.acc = calloc(a->nm ? a->nm : 1, sizeof *g.acc);
        if (!g.keyv || !g.acc) {
            crm_value_free(g.keyv);
            free(g.acc);
            crm_value_free(rec);
            a->rc = crm_err_set(a->err, CRM_INTERNAL, "out of memory");
            return 1;
        }
        for (size_t i = 0; i < a->nm; i++)
            g.acc[i].int_only = 1;
        memmove(&a->groups[lo + 1], &a->groups[lo], (a->n - lo) * sizeof *a->groups);
        a->groups[lo] = g;
        a->n++;
    }
    agg *g = &a->groups[lo];
    g->count++;
    for (size_t i = 0; i < a->nm; i++)
        if (a->m[i].kind != M_COUNT &&
            acc_add(&g->acc[i], &a->m[i], crm_map_get(rec, a->m[i].field)) != 0) {
            crm_value_free(rec);
            a->rc = crm_err_set(a->err, CRM_INTERNAL, "out of memory");
            return 1;
        }
    crm_value_free(rec);
    return 0;
}

static crm_value *metric_value(const agg *g, const metric *m, const struct acc *a)
{
    switch (m->kind) {
    case M_COUNT:
        return crm_value_int(g->count);
    case M_SUM:
        if (a->int_only && !a->overflow)
            return crm_value_int(a->isum);
        return crm_value_num(a->dsum);
    case M_AVG:
        return a->n ? crm_value_num(a->dsum / (double)a->n) : crm_value_nil();
    case M_MIN:
        return a->min ? crm_value_dup(a->min) : crm_value_nil();
    case M_MAX:
        return a->max ? crm_value_dup(a->max) : crm_value_nil();
    }
    return crm_value_nil();
}

int crm_txn_aggregate(crm_txn *t, const char *coll, const crm_value *where, const char *group_by,
                      const char *const *metrics, size_t nmetrics, crm_value **groups, crm_err *err)
{
    const crm_coll_rt *rt = crm_store_coll(t->s, coll);
    filter *f = NULL;
    metric *m = NULL;
    plan p;
    astate a;
    int rc;

    *groups = NULL;
    memset(&p, 0, sizeof p);
    memset(&a, 0, sizeof a);
    if (!rt)
        return crm_err_set(err, CRM_BAD_REQUEST, "unknown collection \"%s\"", coll ? coll : "");
    if (group_by && !known_field(rt->c, group_by))
        return crm_err_set(err, CRM_BAD_REQUEST, "group_by: %s has no field \"%.64s\"",
                           rt->c->name, group_by);
    if (nmetrics > 64)
        return crm_err_set(err, CRM_BAD_REQUEST, "at most 64 metrics");
    if (!(m = calloc(nmetrics ? nmetrics : 1, sizeof *m)) || !(f = malloc(sizeof *f))) {
        rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < nmetrics; i++) {
        const char *s = metrics[i], *colon = s ? strchr(s, ':') : NULL;
        static const struct { const char *p; int k; } kinds[] = {
            {"sum", M_SUM}, {"min", M_MIN}, {"max", M_MAX}, {"avg", M_AVG}};
        m[i].name = s;
        if (s && strcmp(s, "count") == 0) {
            m[i].kind = M_COUNT;
            continue;
        }
        int ok = 0;
        for (size_t k = 0; colon && k < 4; k++)
            if ((size_t)(colon - s) == strlen(kinds[k].p) && strncmp(s, kinds[k].p, 3) == 0) {
                m[i].kind = kinds[k].k;
                m[i].field = colon + 1;
                ok = 1;
            }
        if (!ok || !*m[i].field) {
            rc = crm_err_set(err, CRM_BAD_REQUEST,
                             "metric \"%.64s\": use count, sum:F, min:F, max:F or avg:F",
                             s ? s : "");
            goto done;
        }
        if (!known_field(rt->c, m[i].field)) {
            rc = crm_err_set(err, CRM_BAD_REQUEST, "metric %s: %s has no field \"%.64s\"", s,
                             rt->c->name, m[i].field);
            goto done;
        }
        if ((m[i].kind == M_SUM || m[i].kind == M_AVG) &&
            field_kk(rt->c, m[i].field, NULL) != CRM_KK_INT &&
            field_kk(rt->c, m[i].field, NULL) != CRM_KK_NUM &&
            field_kk(rt->c, m[i].field, NULL) != CRM_KK_ANY) {
            rc = crm_err_set(err, CRM_BAD_REQUEST, "metric %s: %s is not a number field", s,
                             m[i].field);
            goto done;
        }
    }
    if ((rc = filter_compile(rt->c, where, f, err)) != CRM_OK)
        goto done;
    if ((rc = plan_pick(rt, f, &p, err)) != CRM_OK)
        goto done;
    a.t = t;
    a.rt = rt;
    a.f = f;
    a.group_by = group_by;
    a.gkk = group_by ? field_kk(rt->c, group_by, NULL) : CRM_KK_ANY;
    a.m = m;
    a.nm = nmetrics;
    a.err = err;
    a.id_plan = p.kind == P_IDS;
    if (a.id_plan && !(a.seen_ids = crm_value_arr())) {
        rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
        goto done;
    }
    rc = walk(t, rt, &p, 0, NULL, 0, emit_agg, &a, err);
    if (rc == CRM_OK)
        rc = a.rc;
    if (rc != CRM_OK)
        goto done;
    /* Without group_by there is always one group, even over no records. */
    if (!group_by && a.n == 0) {
        a.groups = calloc(1, sizeof *a.groups);
        if (!a.groups || !(a.groups[0].keyv = crm_value_nil()) ||
            !(a.groups[0].acc = calloc(nmetrics ? nmetrics : 1, sizeof *a.groups[0].acc))) {
            rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
            goto done;
        }
        for (size_t i = 0; i < nmetrics; i++)
            a.groups[0].acc[i].int_only = 1;
        a.n = a.cap = 1;
    }
    {
        crm_value *arr = crm_value_arr();
        if (!arr) {
            rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
            goto done;
        }
        for (size_t i = 0; i < a.n; i++) {
            crm_value *gm = crm_value_map();
            int bad = 1;
            if (gm) { /* the map owns the key from here, also on failure */
                bad = crm_map_set(gm, "key", a.groups[i].keyv) != 0;
                a.groups[i].keyv = NULL;
            }
            if (!bad && crm_map_set(gm, "count", crm_value_int(a.groups[i].count)) != 0)
                bad = 1;
            for (size_t j = 0; !bad && j < nmetrics; j++)
                if (m[j].kind != M_COUNT &&
                    crm_map_set(gm, m[j].name, metric_value(&a.groups[i], &m[j], &a.groups[i].acc[j])) != 0)
                    bad = 1;
            if (bad || crm_arr_push(arr, gm) != 0) {
                if (bad)
                    crm_value_free(gm);
                crm_value_free(arr);
                rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
                goto done;
            }
        }
        *groups = arr;
    }
done:
    for (size_t i = 0; i < a.n; i++) {
        crm_value_free(a.groups[i].keyv);
        for (size_t j = 0; a.groups[i].acc && j < nmetrics; j++) {
            crm_value_free(a.groups[i].acc[j].min);
            crm_value_free(a.groups[i].acc[j].max);
        }
        free(a.groups[i].acc);
    }
    free(a.groups);
    crm_value_free(a.seen_ids);
    free(p.ranges);
    free(f);
    free(m);
    return rc;
}
