/*
 * test_query -- queries and aggregates against a brute-force oracle.
 *
 * Thousands of seeded random records go into a real LMDB; thousands of
 * seeded random queries (every operator, indexed and unindexed fields,
 * ascending and descending order, every limit) are paged to the end through
 * their cursors and compared with a filter-and-sort written here from the
 * spec, independent of the kernel's matcher.  Then paging while writes go
 * on, and aggregates against sums computed here.  Set CRM_TEST_SEED to
 * replay a failure; the seed is printed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "codec.h"
#include "schema.h"
#include "store.h"
#include "tmpdir.h"

#define NRECORDS 2000

static const char *const SCHEMA =
    "{\"collection\": \"people\", \"strict\": true, \"fields\": {"
    " \"name\": {\"type\": \"string\", \"index\": true},"
    " \"city\": {\"type\": \"string\"},"
    " \"points\": {\"type\": \"int\", \"index\": true},"
    " \"score\": {\"type\": \"number\"},"
    " \"rate\": {\"type\": \"number\", \"index\": true},"
    " \"vip\": {\"type\": \"bool\", \"index\": true},"
    " \"stage\": {\"type\": \"enum\", \"values\": [\"prospect\", \"customer\", \"loyal\"], \"index\": true},"
    " \"age\": {\"type\": \"int\"},"
    " \"tags\": {\"type\": \"array\", \"items\": \"string\"},"
    " \"code\": {\"type\": \"string\", \"index\": \"unique\"}"
    "}}";

static const char *const NAMES[] = {"ann", "anna", "annabel", "bob", "bobby", "carl", "dora",
                                    "eve", "Zed", "al", "ánne"};
static const char *const CITIES[] = {"Shanghai", "Paris", "Lima", "Oslo", "Paraná"};
static const char *const STAGES[] = {"prospect", "customer", "loyal"};
static const char *const TAGS[] = {"vip", "new", "b2b", "churn"};

typedef struct fixture {
    char *dir, *sdir;
    crm_schema *schema;
    crm_store *store;
    crm_value *all; /* every record as stored, in id order */
    uint64_t rng;
} fixture;

static uint64_t rnd(fixture *f)
{
    f->rng ^= f->rng << 13;
    f->rng ^= f->rng >> 7;
    f->rng ^= f->rng << 17;
    return f->rng;
}
static size_t pick(fixture *f, size_t n) { return (size_t)(rnd(f) % n); }

/* A random record; fields are left out now and then so absent values are
 * exercised too. */
static crm_value *random_record(fixture *f, int i)
{
    crm_value *r = crm_value_map();
    char code[32];
    if (pick(f, 10))
        crm_map_set(r, "name", crm_value_cstr(NAMES[pick(f, 11)]));
    if (pick(f, 10))
        crm_map_set(r, "city", crm_value_cstr(CITIES[pick(f, 5)]));
    if (pick(f, 10))
        crm_map_set(r, "points", crm_value_int((int64_t)pick(f, 40) * 50 - 200));
    if (pick(f, 10))
        crm_map_set(r, "score", pick(f, 2) ? crm_value_num((double)pick(f, 1000) / 10.0)
                                           : crm_value_int((int64_t)pick(f, 100)));
    if (pick(f, 10))
        crm_map_set(r, "rate", pick(f, 2) ? crm_value_num((double)pick(f, 200) / 8.0 - 5)
                                          : crm_value_int((int64_t)pick(f, 20) - 5));
    if (pick(f, 10))
        crm_map_set(r, "vip", crm_value_bool((int)pick(f, 2)));
    crm_map_set(r, "stage", crm_value_cstr(STAGES[pick(f, 3)]));
    if (pick(f, 3))
        crm_map_set(r, "age", crm_value_int(18 + (int64_t)pick(f, 60)));
    if (pick(f, 2)) {
        crm_value *tags = crm_value_arr();
        size_t n = pick(f, 3);
        for (size_t k = 0; k < n; k++)
            crm_arr_push(tags, crm_value_cstr(TAGS[pick(f, 4)]));
        crm_map_set(r, "tags", tags);
    }
    if (pick(f, 4)) {
        snprintf(code, sizeof code, "K%05d", i);
        crm_map_set(r, "code", crm_value_cstr(code));
    }
    return r;
}

static void load_schema(fixture *f)
{
    crm_err err;
    f->sdir = crm_tmpdir_make("qschema");
    crm_tmpdir_write(f->sdir, "people.json", SCHEMA);
    assert_int_equal(crm_schema_load_dir(f->sdir, &f->schema, &err), CRM_OK);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    crm_store_opts o;
    crm_err err;
    const char *seed = getenv("CRM_TEST_SEED");
    f->rng = seed ? strtoull(seed, NULL, 10) : 0x5eed1234abcdULL;
    if (!f->rng)
        f->rng = 1;
    fprintf(stderr, "# seed %llu\n", (unsigned long long)f->rng);
    load_schema(f);
    f->dir = crm_tmpdir_make("query");
    crm_store_opts_default(&o);
    o.no_sync = 1;
    assert_int_equal(crm_store_open(f->dir, f->schema, &o, &f->store, &err), CRM_OK);

    /* load in batches of 100 through group commit */
    for (int b = 0; b < NRECORDS / 100; b++) {
        crm_write w[100];
        crm_unit u[100] = {0};
        crm_value *recs[100];
        memset(w, 0, sizeof w);
        for (int i = 0; i < 100; i++) {
            recs[i] = random_record(f, b * 100 + i);
            w[i].op = CRM_OP_CREATE;
            w[i].coll = "people";
            w[i].data = recs[i];
            u[i].writes = &w[i];
            u[i].n = 1;
        }
        assert_int_equal(crm_store_apply(f->store, u, 100, &err), CRM_OK);
        for (int i = 0; i < 100; i++) {
            assert_int_equal(u[i].rc, CRM_OK);
            crm_write_clear(&w[i]);
            crm_value_free(recs[i]);
        }
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    crm_store_close(f->store);
    crm_schema_free(f->schema);
    crm_value_free(f->all);
    crm_tmpdir_remove(f->dir);
    crm_tmpdir_remove(f->sdir);
    free(f);
    return 0;
}

/* ---- the oracle: the spec's semantics, written independently ---- */

/* Order of two values of one field: absent < bool < number < string. */
static int rank_of(const crm_value *v)
{
    if (!v || v->type == CRM_T_NIL)
        return 0;
    if (v->type == CRM_T_BOOL)
        return 1;
    if (v->type == CRM_T_INT || v->type == CRM_T_NUM)
        return 2;
    if (v->type == CRM_T_STR)
        return 3;
    return 4;
}

static double num(const crm_value *v) { return v->type == CRM_T_INT ? (double)v->u.i : v->u.n; }

static int oracle_cmp(const crm_value *a, const crm_value *b)
{
    int ra = rank_of(a), rb = rank_of(b);
    if (ra != rb)
        return ra < rb ? -1 : 1;
    switch (ra) {
    case 1:
        return a->u.b - b->u.b;
    case 2:
        return num(a) < num(b) ? -1 : num(a) > num(b);
    case 3: {
        size_t n = a->u.str.len < b->u.str.len ? a->u.str.len : b->u.str.len;
        int c = memcmp(a->u.str.s, b->u.str.s, n);
        if (c)
            return c < 0 ? -1 : 1;
        return (a->u.str.len > b->u.str.len) - (a->u.str.len < b->u.str.len);
    }
    default:
        return 0;
    }
}

static int scalar_holds(const crm_value *fv, const char *op, const crm_value *x)
{
    if (strcmp(op, "eq") == 0) {
        if (x->type == CRM_T_NIL)
            return !fv || fv->type == CRM_T_NIL;
        return fv && rank_of(fv) == rank_of(x) && oracle_cmp(fv, x) == 0;
    }
    if (strcmp(op, "in") == 0) {
        for (size_t i = 0; i < x->u.arr.n; i++)
            if (scalar_holds(fv, "eq", x->u.arr.items[i]))
                return 1;
        return 0;
    }
    if (strcmp(op, "prefix") == 0)
        return fv && fv->type == CRM_T_STR && fv->u.str.len >= x->u.str.len &&
               memcmp(fv->u.str.s, x->u.str.s, x->u.str.len) == 0;
    if (!fv || rank_of(fv) != rank_of(x) || rank_of(x) < 2)
        return 0;
    int c = oracle_cmp(fv, x);
    if (strcmp(op, "lt") == 0)
        return c < 0;
    if (strcmp(op, "lte") == 0)
        return c <= 0;
    if (strcmp(op, "gt") == 0)
        return c > 0;
    return c >= 0;
}

static int holds(const crm_value *rec, const char *field, const char *op, const crm_value *x)
{
    const crm_value *fv = crm_map_get(rec, field);
    if (strcmp(op, "ne") == 0)
        return !holds(rec, field, "eq", x);
    if (fv && fv->type == CRM_T_ARR) {
        for (size_t i = 0; i < fv->u.arr.n; i++)
            if (scalar_holds(fv->u.arr.items[i], op, x))
                return 1;
        return 0;
    }
    return scalar_holds(fv, op, x);
}

static int oracle_match(const crm_value *rec, const crm_value *where)
{
    for (size_t i = 0; where && i < where->u.map.n; i++) {
        const char *field = where->u.map.kv[i].key;
        const crm_value *c = where->u.map.kv[i].val;
        if (c->type == CRM_T_MAP) {
            for (size_t j = 0; j < c->u.map.n; j++)
                if (!holds(rec, field, c->u.map.kv[j].key, c->u.map.kv[j].val))
                    return 0;
        } else if (!holds(rec, field, "eq", c)) {
            return 0;
        }
    }
    return 1;
}

static const char *sort_field;
static int sort_desc;

static int oracle_order(const void *a, const void *b)
{
    const crm_value *x = *(const crm_value *const *)a, *y = *(const crm_value *const *)b;
    int c = sort_field ? oracle_cmp(crm_map_get(x, sort_field), crm_map_get(y, sort_field)) : 0;
    if (c == 0)
        c = strcmp(crm_map_str(x, "id", ""), crm_map_str(y, "id", ""));
    return sort_desc ? -c : c;
}

/* ---- helpers ---- */

static crm_value *all_records(fixture *f)
{
    crm_txn *t;
    crm_err err;
    crm_value *out = crm_value_arr();
    char *next = NULL;
    crm_query q = {"people", NULL, NULL, 1000, NULL};
    assert_int_equal(crm_store_begin_read(f->store, &t, &err), CRM_OK);
    for (;;) {
        crm_value *recs;
        char *nx;
        q.after = next;
        assert_int_equal(crm_txn_query(t, &q, &recs, &nx, &err), CRM_OK);
        for (size_t i = 0; i < recs->u.arr.n; i++)
            crm_arr_push(out, crm_value_dup(recs->u.arr.items[i]));
        crm_value_free(recs);
        free(next);
        next = nx;
        if (!next)
            break;
    }
    crm_txn_end(t);
    return out;
}

static crm_value *random_operand(fixture *f, const char *field)
{
    if (strcmp(field, "name") == 0 || strcmp(field, "city") == 0 || strcmp(field, "tags") == 0) {
        if (strcmp(field, "tags") == 0)
            return crm_value_cstr(TAGS[pick(f, 4)]);
        return crm_value_cstr(strcmp(field, "name") == 0 ? NAMES[pick(f, 11)] : CITIES[pick(f, 5)]);
    }
    if (strcmp(field, "stage") == 0)
        return crm_value_cstr(STAGES[pick(f, 3)]);
    if (strcmp(field, "vip") == 0)
        return crm_value_bool((int)pick(f, 2));
    if (strcmp(field, "code") == 0) {
        char c[16];
        snprintf(c, sizeof c, "K%05d", (int)pick(f, NRECORDS));
        return crm_value_cstr(c);
    }
    if (strcmp(field, "id") == 0) {
        const crm_value *r = f->all->u.arr.items[pick(f, f->all->u.arr.n)];
        return crm_value_cstr(crm_map_str(r, "id", ""));
    }
    /* numbers: sometimes fractional, also on the int fields */
    if (pick(f, 3) == 0)
        return crm_value_num((double)pick(f, 2000) / 7.0 - 100);
    if (strcmp(field, "points") == 0)
        return crm_value_int((int64_t)pick(f, 44) * 50 - 250);
    return crm_value_int((int64_t)pick(f, 120) - 10);
}

static const char *const FIELDS[] = {"name", "city", "points", "score", "rate", "vip",
                                     "stage", "age", "tags", "code", "id"};
static const char *const OPS[] = {"eq", "ne", "lt", "lte", "gt", "gte", "in", "prefix"};

static crm_value *random_where(fixture *f)
{
    crm_value *w = crm_value_map();
    size_t n = pick(f, 4);
    for (size_t i = 0; i < n; i++) {
        const char *field = FIELDS[pick(f, 11)];
        const char *op = OPS[pick(f, 8)];
        crm_value *opnd;
        int is_str = strcmp(field, "name") == 0 || strcmp(field, "city") == 0 ||
                     strcmp(field, "stage") == 0 || strcmp(field, "tags") == 0 ||
                     strcmp(field, "code") == 0 || strcmp(field, "id") == 0;
        if (strcmp(op, "prefix") == 0 && !is_str)
            op = "eq";
        if (strcmp(field, "vip") == 0 && strcmp(op, "in") && strcmp(op, "ne"))
            op = "eq"; /* ordering operators need numbers or strings */
        if (strcmp(op, "in") == 0) {
            opnd = crm_value_arr();
            size_t k = pick(f, 4);
            for (size_t j = 0; j < k; j++)
                crm_arr_push(opnd, random_operand(f, field));
            if (pick(f, 8) == 0)
                crm_arr_push(opnd, crm_value_nil());
        } else if (strcmp(op, "prefix") == 0) {
            crm_value *full = random_operand(f, field);
            size_t len = pick(f, full->u.str.len + 1);
            opnd = crm_value_str(full->u.str.s, len);
            crm_value_free(full);
        } else if (strcmp(op, "eq") == 0 && pick(f, 10) == 0) {
            opnd = crm_value_nil();
        } else {
            opnd = random_operand(f, field);
        }
        if (strcmp(op, "eq") == 0 && pick(f, 2)) {
            crm_map_set(w, field, opnd); /* shorthand equality */
        } else {
            crm_value *m = crm_map_get(w, field);
            if (!m || m->type != CRM_T_MAP) {
                m = crm_value_map();
                crm_map_set(w, field, m);
            }
            crm_map_set(m, op, opnd);
        }
    }
    return w;
}

static void assert_same_list(const crm_value *got, crm_value **want, size_t nwant, const char *what)
{
    if (got->u.arr.n != nwant) {
        char *j = crm_json_encode(got, NULL);
        fprintf(stderr, "%s: got %zu records, want %zu\n", what, got->u.arr.n, nwant);
        free(j);
    }
    assert_int_equal(got->u.arr.n, nwant);
    for (size_t i = 0; i < nwant; i++) {
        const char *a = crm_map_str(got->u.arr.items[i], "id", "?");
        const char *b = crm_map_str(want[i], "id", "?");
        if (strcmp(a, b) != 0)
            fprintf(stderr, "%s: position %zu: got %s, want %s\n", what, i, a, b);
        assert_string_equal(a, b);
    }
}

/* ---- tests ---- */

static void random_queries_match_brute_force(void **state)
{
    fixture *f = *state;
    crm_err err;
#if defined(__SANITIZE_ADDRESS__)
    int nq = 600; /* ASan makes each decode ~4x dearer; the plain build runs 2000 */
#else
    int nq = 2000;
#endif
    size_t pages = 0;
    f->all = all_records(f);
    assert_int_equal(f->all->u.arr.n, NRECORDS);
    for (int qi = 0; qi < nq; qi++) {
        crm_value *where = random_where(f);
        static const char *const ORDERS[] = {NULL, "name", "-name", "points", "-points",
                                             "score", "-score", "age", "-age", "-id", "vip",
                                             "rate", "-rate", "stage", "code", "-_created"};
        const char *ob = ORDERS[pick(f, 16)];
        size_t limit = 1 + pick(f, 3) * pick(f, 200);
        crm_value **want = malloc(NRECORDS * sizeof *want);
        size_t nwant = 0;
        crm_value *got = crm_value_arr();
        char *next = NULL;
        crm_txn *t;
        char what[600];
        char *wj = crm_json_encode(where, NULL);
        snprintf(what, sizeof what, "query %d where %s order_by %s limit %zu", qi, wj,
                 ob ? ob : "(id)", limit);
        free(wj);

        for (size_t i = 0; i < f->all->u.arr.n; i++)
            if (oracle_match(f->all->u.arr.items[i], where))
                want[nwant++] = f->all->u.arr.items[i];
        sort_desc = ob && ob[0] == '-';
        sort_field = ob ? (ob[0] == '-' ? ob + 1 : ob) : NULL;
        if (sort_field && strcmp(sort_field, "id") == 0)
            sort_field = NULL;
        qsort(want, nwant, sizeof *want, oracle_order);
        /* at most ~6 pages: an unindexed order rescans the matches per page */
        if (limit < nwant / 6)
            limit = nwant / 6 + pick(f, 3);

        assert_int_equal(crm_store_begin_read(f->store, &t, &err), CRM_OK);
        for (int guard = 0;; guard++) {
            crm_query q = {"people", where, ob, limit, next};
            crm_value *recs;
            char *nx = NULL;
            int rc = crm_txn_query(t, &q, &recs, &nx, &err);
            if (rc != CRM_OK)
                fprintf(stderr, "%s: %s\n", what, err.msg);
            assert_int_equal(rc, CRM_OK);
            assert_true(recs->u.arr.n <= limit);
            for (size_t i = 0; i < recs->u.arr.n; i++)
                crm_arr_push(got, crm_value_dup(recs->u.arr.items[i]));
            crm_value_free(recs);
            free(next);
            next = nx;
            pages++;
            if (!next)
                break;
            assert_true(guard < NRECORDS + 2);
        }
        crm_txn_end(t);
        assert_same_list(got, want, nwant, what);
        crm_value_free(got);
        crm_value_free(where);
        free(want);
    }
    fprintf(stderr, "# %d queries, %zu pages compared\n", nq, pages);
}

static void bad_queries_are_bad_request(void **state)
{
    fixture *f = *state;
    crm_txn *t;
    crm_err err;
    crm_value *recs;
    char *next;
    static const char *const bad_wheres[] = {
        "{\"nope\": 1}",                    /* unknown field in a strict collection */
        "{\"points\": {\"gte\": \"x\"}}",   /* wrong type */
        "{\"points\": {\"between\": 1}}",   /* unknown operator */
        "{\"name\": {\"in\": \"ann\"}}",    /* in needs a list */
        "{\"points\": {\"prefix\": \"1\"}}",/* prefix on a number */
        "{\"vip\": {\"gt\": true}}",        /* ordering a bool */
        "[1, 2]",                           /* not a map */
    };
    assert_int_equal(crm_store_begin_read(f->store, &t, &err), CRM_OK);
    for (size_t i = 0; i < sizeof bad_wheres / sizeof *bad_wheres; i++) {
        crm_value *w = crm_json_decode(bad_wheres[i], strlen(bad_wheres[i]), &CRM_LIMITS_DEFAULT, &err);
        crm_query q = {"people", w, NULL, 10, NULL};
        assert_non_null(w);
        assert_int_equal(crm_txn_query(t, &q, &recs, &next, &err), CRM_BAD_REQUEST);
        assert_null(recs);
        crm_value_free(w);
    }
    {
        crm_query q = {"people", NULL, "nope", 10, NULL};
        assert_int_equal(crm_txn_query(t, &q, &recs, &next, &err), CRM_BAD_REQUEST);
        assert_non_null(strstr(err.msg, "nope"));
    }
    {
        crm_query q = {"people", NULL, NULL, 1001, NULL};
        assert_int_equal(crm_txn_query(t, &q, &recs, &next, &err), CRM_BAD_REQUEST);
    }
    {
        crm_query q = {"nobody", NULL, NULL, 10, NULL};
        assert_int_equal(crm_txn_query(t, &q, &recs, &next, &err), CRM_BAD_REQUEST);
        assert_string_equal(err.msg, "unknown collection \"nobody\"");
    }
    {
        crm_query q = {"people", NULL, NULL, 10, "!!!"};
        assert_int_equal(crm_txn_query(t, &q, &recs, &next, &err), CRM_BAD_REQUEST);
    }
    {   /* a cursor made for another order is refused */
        crm_query q = {"people", NULL, "points", 5, NULL};
        assert_int_equal(crm_txn_query(t, &q, &recs, &next, &err), CRM_OK);
        assert_non_null(next);
        crm_value_free(recs);
        q.order_by = "name";
        q.after = next;
        assert_int_equal(crm_txn_query(t, &q, &recs, &next, &err), CRM_BAD_REQUEST);
        free((char *)q.after);
    }
    crm_txn_end(t);
}

/* Paging while writes go on: every record that exists from start to end and
 * is never changed appears exactly once; nothing appears twice. */
static void paging_under_concurrent_writes(void **state)
{
    fixture *f = *state;
    crm_err err;
    static const char *const orders[] = {NULL, "points", "-name", "age"};
    for (size_t oi = 0; oi < 4; oi++) {
        crm_value *before = all_records(f);
        crm_value *seen = crm_value_map();
        crm_value *touched = crm_value_map();
        char *next = NULL;
        int page = 0;
        for (;;) {
            crm_txn *t;
            crm_value *recs;
            char *nx;
            crm_query q = {"people", NULL, orders[oi], 37, next};
            assert_int_equal(crm_store_begin_read(f->store, &t, &err), CRM_OK);
            assert_int_equal(crm_txn_query(t, &q, &recs, &nx, &err), CRM_OK);
            crm_txn_end(t);
            for (size_t i = 0; i < recs->u.arr.n; i++) {
                const char *id = crm_map_str(recs->u.arr.items[i], "id", "");
                /* never twice, unless an update moved it past the cursor */
                if (crm_map_get(seen, id))
                    assert_non_null(crm_map_get(touched, id));
                crm_map_set(seen, id, crm_value_bool(1));
            }
            crm_value_free(recs);
            free(next);
            next = nx;
            if (!next)
                break;
            /* between pages: 5 creates, 2 updates, 1 delete */
            crm_write w[8];
            crm_unit u[8] = {0};
            crm_value *data[8];
            memset(w, 0, sizeof w);
            for (int i = 0; i < 8; i++) {
                u[i].writes = &w[i];
                u[i].n = 1;
                w[i].coll = "people";
                if (i < 5) {
                    data[i] = random_record(f, 100000 + page * 10 + i + (int)oi * 100000);
                    crm_map_del(data[i], "code");
                    w[i].op = CRM_OP_CREATE;
                } else {
                    const crm_value *victim = before->u.arr.items[pick(f, before->u.arr.n)];
                    const char *vid = crm_map_str(victim, "id", "");
                    w[i].id = vid;
                    crm_map_set(touched, vid, crm_value_bool(1));
                    if (i < 7) {
                        data[i] = crm_value_map();
                        crm_map_set(data[i], "points", crm_value_int((int64_t)pick(f, 2000)));
                        crm_map_set(data[i], "name", crm_value_cstr(NAMES[pick(f, 11)]));
                        w[i].op = CRM_OP_UPDATE;
                    } else {
                        data[i] = NULL;
                        w[i].op = CRM_OP_DELETE;
                    }
                }
                w[i].data = data[i];
            }
            assert_int_equal(crm_store_apply(f->store, u, 8, &err), CRM_OK);
            for (int i = 0; i < 8; i++) {
                crm_write_clear(&w[i]);
                crm_value_free(data[i]);
            }
            page++;
        }
        for (size_t i = 0; i < before->u.arr.n; i++) {
            const char *id = crm_map_str(before->u.arr.items[i], "id", "");
            if (!crm_map_get(touched, id)) {
                if (!crm_map_get(seen, id))
                    fprintf(stderr, "order %s: %s was skipped\n", orders[oi] ? orders[oi] : "id", id);
                assert_non_null(crm_map_get(seen, id));
            }
        }
        crm_value_free(before);
        crm_value_free(seen);
        crm_value_free(touched);
    }
    assert_int_equal(crm_store_verify(f->store, &err), CRM_OK);
}

static void aggregates_match_brute_force(void **state)
{
    fixture *f = *state;
    crm_err err;
    crm_txn *t;
    static const char *const metrics[] = {"count", "sum:points", "min:points", "max:points",
                                          "avg:score", "min:name", "sum:score"};
    static const char *const groupings[] = {NULL, "stage", "city", "vip", "points"};
    crm_value *all = f->all = all_records(f);
    assert_int_equal(crm_store_begin_read(f->store, &t, &err), CRM_OK);
    for (int round = 0; round < 60; round++) {
        crm_value *where = round < 5 ? NULL : random_where(f);
        const char *gb = groupings[round % 5];
        crm_value *groups;
        int64_t total = 0;
        assert_int_equal(crm_txn_aggregate(t, "people", where, gb, metrics, 7, &groups, &err),
                         CRM_OK);
        if (!gb)
            assert_int_equal(groups->u.arr.n, 1);
        for (size_t g = 0; g < groups->u.arr.n; g++) {
            const crm_value *gm = groups->u.arr.items[g];
            const crm_value *key = crm_map_get(gm, "key");
            int64_t count = 0, isum = 0, nscore = 0;
            double dscore = 0;
            const crm_value *minp = NULL, *maxp = NULL, *minname = NULL;
            assert_non_null(key);
            if (g > 0) /* groups come sorted by key */
                assert_true(oracle_cmp(crm_map_get(groups->u.arr.items[g - 1], "key"), key) < 0);
            for (size_t i = 0; i < all->u.arr.n; i++) {
                const crm_value *r = all->u.arr.items[i], *v;
                if (!oracle_match(r, where))
                    continue;
                if (gb && oracle_cmp(crm_map_get(r, gb), key->type == CRM_T_NIL ? NULL : key) != 0)
                    continue;
                count++;
                if ((v = crm_map_get(r, "points"))) {
                    isum += v->u.i;
                    if (!minp || oracle_cmp(v, minp) < 0)
                        minp = v;
                    if (!maxp || oracle_cmp(v, maxp) > 0)
                        maxp = v;
                }
                if ((v = crm_map_get(r, "score"))) {
                    dscore += num(v);
                    nscore++;
                }
                if ((v = crm_map_get(r, "name")) && (!minname || oracle_cmp(v, minname) < 0))
                    minname = v;
            }
            total += count;
            assert_int_equal(crm_map_int(gm, "count", -1), count);
            assert_int_equal(crm_map_int(gm, "sum:points", -1), isum);
            if (minp) {
                assert_int_equal(crm_map_int(gm, "min:points", -1), minp->u.i);
                assert_int_equal(crm_map_int(gm, "max:points", -1), maxp->u.i);
            } else {
                assert_int_equal(crm_map_get(gm, "min:points")->type, CRM_T_NIL);
            }
            if (nscore) {
                double avg = crm_value_as_double(crm_map_get(gm, "avg:score"));
                assert_true(avg > dscore / (double)nscore - 1e-9 && avg < dscore / (double)nscore + 1e-9);
            } else {
                assert_int_equal(crm_map_get(gm, "avg:score")->type, CRM_T_NIL);
            }
            if (minname)
                assert_string_equal(crm_map_str(gm, "min:name", ""), minname->u.str.s);
        }
        if (gb) { /* the groups cover every matching record */
            int64_t want = 0;
            for (size_t i = 0; i < all->u.arr.n; i++)
                want += oracle_match(all->u.arr.items[i], where);
            assert_int_equal(total, want);
        }
        crm_value_free(groups);
        crm_value_free(where);
    }
    {
        static const char *const bad[] = {"median:points"};
        static const char *const sum_text[] = {"sum:name"}, *const avg_text[] = {"avg:city"};
        crm_value *groups;
        assert_int_equal(crm_txn_aggregate(t, "people", NULL, NULL, sum_text, 1, &groups, &err),
                         CRM_BAD_REQUEST);
        assert_int_equal(crm_txn_aggregate(t, "people", NULL, NULL, avg_text, 1, &groups, &err),
                         CRM_BAD_REQUEST);
        assert_non_null(strstr(err.msg, "not a number field"));
        assert_int_equal(crm_txn_aggregate(t, "people", NULL, NULL, bad, 1, &groups, &err),
                         CRM_BAD_REQUEST);
        assert_int_equal(crm_txn_aggregate(t, "people", NULL, "nope", metrics, 1, &groups, &err),
                         CRM_BAD_REQUEST);
    }
    crm_txn_end(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(random_queries_match_brute_force, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_queries_are_bad_request, setup, teardown),
        cmocka_unit_test_setup_teardown(aggregates_match_brute_force, setup, teardown),
        cmocka_unit_test_setup_teardown(paging_under_concurrent_writes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
