/*
 * test_authz -- the permission matrix end to end (issue 3, reliability plan
 * R16): a real crmd with the bundled schemas, one authenticated connection
 * per role of schemas/roles.json plus admin, and every op against every
 * collection.
 *
 * The expected answer of each cell is computed here from roles.json itself
 * (decoded with crm_json_decode, the rules applied by this file, not by
 * kernel/auth.c): admin may do everything; read = get, query, aggregate;
 * write = create, update, delete, tx; subscribe needs subscribe and read; a
 * named collection grant takes the place of "*"; a method is granted by exact
 * name or by a "prefix.*"; anything not granted is FORBIDDEN.  Data is set up
 * with the admin token first (one valid record per collection, built from
 * the schema files with every required field and ref), so an allowed op is
 * expected to succeed outright, not merely to avoid FORBIDDEN.
 *
 * Hidden fields: every field that some grant hides is also filled in on the
 * seed records, then checked for every role that may read the collection:
 * absent exactly when the role's grant hides it (get, query, subscription
 * snapshot, live pushes, since-replay, write replies), and naming it in
 * where / order_by / "-field" / group_by / metrics / aggregate subscriptions
 * / create record / update patch / tx is FORBIDDEN exactly then.
 *
 * A second server runs the same matrix for a few extra roles written to a
 * temporary copy of the schemas (a role that may write a collection whose
 * fields it may not see, a "*" grant with a hide list, a named grant that
 * takes rights away from "*", subscribe without read), since the bundled
 * roles never combine write with hide.
 *
 * The test prints how many cells it checked and lists every mismatch; any
 * mismatch fails it.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "codec.h"
#include "schema.h"
#include "testutil.h"
#include "tmpdir.h"
#include "wsclient.h"

enum { P_READ = 1, P_WRITE = 2, P_SUB = 4 };

#define MAX_COLLS 64
#define MAX_ROLES 32

typedef struct world {
    crmd_proc p;
    char *schemas_dir;   /* owned when a temporary copy */
    int own_schemas;
    crm_schema *sch;     /* collections (kernel loader: field types, required, refs) */
    crm_value *roles;    /* roles.json "roles" map, decoded here */
    const char *role_names[MAX_ROLES];
    size_t nroles;
    const char *only[MAX_ROLES]; /* roles to check (NULL-terminated; all when empty) */
    ws_client admin;
    long long ref;
    int uniq;
    char seed[MAX_COLLS][160];
    uint64_t s0;         /* feed seq once seeding is done */
    crm_value *fill[MAX_COLLS]; /* per collection: declared fields some grant hides */
    int cells;
    crm_value *mism;     /* array of strings */
} world;

/* ---- expected permissions, from roles.json ---- */

static const crm_value *grant_of(const crm_value *roles, const char *role, const char *coll)
{
    const crm_value *g = crm_map_get(roles, role), *x;
    if (!g || g->type != CRM_T_MAP)
        return NULL;
    if ((x = crm_map_get(g, coll)))
        return x;
    return crm_map_get(g, "*");
}

static int exp_perms(const crm_value *roles, const char *role, const char *coll)
{
    const crm_value *g, *list;
    int p = 0;
    if (strcmp(role, "admin") == 0)
        return P_READ | P_WRITE | P_SUB;
    if (!(g = grant_of(roles, role, coll)))
        return 0;
    list = g->type == CRM_T_MAP ? crm_map_get(g, "can") : g;
    for (size_t i = 0; list && list->type == CRM_T_ARR && i < list->u.arr.n; i++) {
        const char *s = list->u.arr.items[i]->type == CRM_T_STR ? list->u.arr.items[i]->u.str.s : "";
        p |= strcmp(s, "read") == 0 ? P_READ : strcmp(s, "write") == 0 ? P_WRITE
             : strcmp(s, "subscribe") == 0 ? P_SUB : 0;
    }
    return p;
}

static int exp_hides(const crm_value *roles, const char *role, const char *coll, const char *field)
{
    const crm_value *g, *h;
    if (strcmp(role, "admin") == 0 || !(g = grant_of(roles, role, coll)) || g->type != CRM_T_MAP ||
        !(h = crm_map_get(g, "hide")) || h->type != CRM_T_ARR)
        return 0;
    for (size_t i = 0; i < h->u.arr.n; i++)
        if (h->u.arr.items[i]->type == CRM_T_STR && strcmp(h->u.arr.items[i]->u.str.s, field) == 0)
            return 1;
    return 0;
}

static int exp_may_call(const crm_value *roles, const char *role, const char *method)
{
    const crm_value *g, *m;
    if (strcmp(role, "admin") == 0)
        return 1;
    if (!(g = crm_map_get(roles, role)) || !(m = crm_map_get(g, "methods")) || m->type != CRM_T_ARR)
        return 0;
    for (size_t i = 0; i < m->u.arr.n; i++) {
        const crm_value *x = m->u.arr.items[i];
        size_t n;
        if (x->type != CRM_T_STR)
            continue;
        n = x->u.str.len;
        if (strcmp(x->u.str.s, method) == 0)
            return 1;
        if (n >= 2 && strcmp(x->u.str.s + n - 2, ".*") == 0 && strlen(method) > n - 1 &&
            strncmp(method, x->u.str.s, n - 1) == 0)
            return 1;
    }
    return 0;
}

/* ---- requests ---- */

static crm_value *req_new(world *w, const char *op, const char *coll)
{
    crm_value *r = crm_value_map();
    crm_map_set(r, "ref", crm_value_int(++w->ref));
    crm_map_set(r, "op", crm_value_cstr(op));
    if (coll)
        crm_map_set(r, "collection", crm_value_cstr(coll));
    return r;
}

static char *show(const crm_value *v)
{
    char *j = crm_json_encode(v, NULL);
    return j ? j : strdup("(unprintable)");
}

/* Sends r (taken) on c and returns its reply (pushes in between are dropped). */
static crm_value *rpc(ws_client *c, crm_value *r)
{
    long long ref = crm_map_int(r, "ref", 0);
    crm_value *reply;
    assert_int_equal(ws_send_value(c, r), 0);
    reply = ws_reply(c, ref, 15000, NULL);
    if (!reply) {
        char *j = show(r);
        fprintf(stderr, "no reply to %s\n", j);
        free(j);
    }
    crm_value_free(r);
    assert_non_null(reply);
    return reply;
}

static int is_ok(const crm_value *reply)
{
    const crm_value *ok = crm_map_get(reply, "ok");
    return ok && ok->type == CRM_T_BOOL && ok->u.b;
}

/* "OK" or the error code. */
static const char *outcome(const crm_value *reply)
{
    if (is_ok(reply))
        return "OK";
    return crm_map_str(crm_map_get(reply, "error"), "code", "(no code)");
}

static void mismatch(world *w, const char *fmt, ...) CRM_PRINTF(2, 3);
static void mismatch(world *w, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    crm_arr_push(w->mism, crm_value_cstr(buf));
}

/* One cell: want is "OK", "FORBIDDEN", "NOT_FOUND", or "!FORBIDDEN" (any
 * answer but FORBIDDEN).  Returns 1 when it matched. */
static int cell(world *w, const char *what, const char *want, const crm_value *reply)
{
    const char *got = outcome(reply);
    int match = want[0] == '!' ? strcmp(got, want + 1) != 0 : strcmp(got, want) == 0;
    w->cells++;
    if (!match)
        mismatch(w, "%s: expected %s, got %s (%s)", what, want, got,
                 crm_map_str(crm_map_get(reply, "error"), "message", ""));
    return match;
}

/* The reply's result when ok; asserts (a setup step, not a cell). */
static const crm_value *must_ok(const crm_value *reply, const char *what)
{
    if (!is_ok(reply)) {
        char *j = show(reply);
        fprintf(stderr, "setup step %s failed: %s\n", what, j);
        free(j);
    }
    assert_true(is_ok(reply));
    return crm_map_get(reply, "result");
}

/* ---- records from the schema ---- */

static crm_value *gen_value(const crm_field *fd, const char *tag)
{
    switch (fd->type) {
    case CRM_F_STRING: {
        char s[256];
        size_t n, min = fd->has_min ? (size_t)fd->min : 1, max = fd->has_max ? (size_t)fd->max : 200;
        snprintf(s, sizeof s, "v%s", tag);
        n = strlen(s);
        while (n < min && n + 1 < sizeof s)
            s[n++] = 'x';
        if (n > max)
            n = max;
        return crm_value_str(s, n);
    }
    case CRM_F_INT:
    case CRM_F_TIMESTAMP: {
        int64_t v = fd->type == CRM_F_TIMESTAMP ? 1700000000000 : 1;
        if (fd->has_min && v < (int64_t)fd->min)
            v = (int64_t)fd->min;
        if (fd->has_max && v > (int64_t)fd->max)
            v = (int64_t)fd->max;
        return crm_value_int(v);
    }
    case CRM_F_NUMBER: {
        double v = 0.5;
        if (fd->has_min && v < fd->min)
            v = fd->min;
        if (fd->has_max && v > fd->max)
            v = fd->max;
        return crm_value_num(v);
    }
    case CRM_F_BOOL:
        return crm_value_bool(1);
    case CRM_F_ENUM:
        return crm_value_cstr(fd->values[0]);
    case CRM_F_ARRAY: { /* min elements of the item type (webhooks.collections needs one) */
        crm_value *a = crm_value_arr();
        crm_field item = {.name = fd->name, .type = fd->items == CRM_F_ANY ? CRM_F_STRING : fd->items};
        for (size_t i = 0; fd->has_min && i < (size_t)fd->min; i++)
            crm_arr_push(a, gen_value(&item, tag));
        return a;
    }
    case CRM_F_MAP: {
        crm_value *m = crm_value_map();
        crm_map_set(m, "k", crm_value_cstr(tag));
        return m;
    }
    default:
        return crm_value_nil();
    }
}

static size_t coll_index(const world *w, const crm_collection *c)
{
    return (size_t)(c - w->sch->colls);
}

static void next_tag(world *w, char *tag, size_t cap)
{
    snprintf(tag, cap, "u%d", ++w->uniq);
}

static void admin_create(world *w, const crm_collection *c, const char *id, crm_value *rec);
static const char *seed_of(world *w, const crm_collection *c);

/* A valid record of c: every required field; the fields of w->fill when
 * fill is set.  Unique required refs get a fresh target when fresh_refs
 * (else the target's seed, fine for a request that is to be refused). */
static crm_value *make_record(world *w, const crm_collection *c, int fill, int fresh_refs)
{
    crm_value *rec = crm_value_map();
    const crm_value *extra = w->fill[coll_index(w, c)];
    char tag[32];
    next_tag(w, tag, sizeof tag);
    for (size_t i = 0; i < c->nfields; i++) {
        const crm_field *fd = &c->fields[i];
        int wanted = fd->required;
        for (size_t k = 0; fill && extra && k < extra->u.arr.n; k++)
            wanted |= strcmp(extra->u.arr.items[k]->u.str.s, fd->name) == 0;
        if (!wanted)
            continue;
        if (fd->type == CRM_F_REF) {
            const crm_collection *to = crm_schema_find(w->sch, fd->ref_to);
            assert_non_null(to);
            if (fd->index == CRM_INDEX_UNIQUE && fresh_refs) {
                char id[160];
                snprintf(id, sizeof id, "%sref_%s", to->id_prefix, tag);
                admin_create(w, to, id, make_record(w, to, 0, 1));
                crm_map_set(rec, fd->name, crm_value_cstr(id));
            } else {
                crm_map_set(rec, fd->name, crm_value_cstr(seed_of(w, to)));
            }
        } else {
            crm_map_set(rec, fd->name, gen_value(fd, tag));
        }
    }
    return rec;
}

/* Takes rec. */
static void admin_create(world *w, const crm_collection *c, const char *id, crm_value *rec)
{
    crm_value *r = req_new(w, "create", c->name), *reply;
    crm_map_set(r, "id", crm_value_cstr(id));
    crm_map_set(r, "record", rec);
    reply = rpc(&w->admin, r);
    must_ok(reply, "admin create");
    crm_value_free(reply);
}

static const char *seed_of(world *w, const crm_collection *c)
{
    char *id = w->seed[coll_index(w, c)];
    if (!id[0]) {
        snprintf(id, sizeof w->seed[0], "%sseed", c->id_prefix);
        admin_create(w, c, id, make_record(w, c, 1, 1));
    }
    return id;
}

/* A patch for c that names no field role hides: a map field if there is
 * one, else a plain string field. */
static crm_value *make_patch(world *w, const crm_collection *c, const char *role)
{
    crm_value *patch = crm_value_map();
    char tag[32];
    next_tag(w, tag, sizeof tag);
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < c->nfields; i++) {
            const crm_field *fd = &c->fields[i];
            if (fd->type != (pass == 0 ? CRM_F_MAP : CRM_F_STRING) || fd->index == CRM_INDEX_UNIQUE ||
                exp_hides(w->roles, role, c->name, fd->name))
                continue;
            crm_map_set(patch, fd->name, gen_value(fd, tag));
            return patch;
        }
    return patch;
}

/* ---- setup ---- */

static void collect_fill(world *w)
{
    /* every field that any grant of any role hides, where c declares it */
    for (size_t ci = 0; ci < w->sch->ncolls; ci++) {
        const crm_collection *c = &w->sch->colls[ci];
        crm_value *f = crm_value_arr();
        for (size_t r = 0; r < w->roles->u.map.n; r++) {
            const crm_value *grants = w->roles->u.map.kv[r].val;
            for (size_t g = 0; grants->type == CRM_T_MAP && g < grants->u.map.n; g++) {
                const crm_value *gv = grants->u.map.kv[g].val, *h;
                if (gv->type != CRM_T_MAP || !(h = crm_map_get(gv, "hide")) || h->type != CRM_T_ARR)
                    continue;
                for (size_t k = 0; k < h->u.arr.n; k++) {
                    const char *name = h->u.arr.items[k]->type == CRM_T_STR ? h->u.arr.items[k]->u.str.s : "";
                    int dup = 0;
                    const crm_field *fd = crm_collection_field(c, name);
                    for (size_t j = 0; j < f->u.arr.n; j++)
                        dup |= strcmp(f->u.arr.items[j]->u.str.s, name) == 0;
                    /* refs would need their own targets; the bundled hides are plain fields */
                    if (!dup && fd && fd->type != CRM_F_REF)
                        crm_arr_push(f, crm_value_cstr(name));
                }
            }
        }
        w->fill[ci] = f;
    }
}

static char *read_text(const char *path)
{
    char *text = crm_test_read_file(path);
    assert_non_null(text);
    return text;
}

static int start_world(void **state, const char *extra_roles)
{
    world *w = calloc(1, sizeof *w);
    const char *bin = getenv("CRMD_BIN"), *schemas = getenv("CRM_SCHEMAS");
    crm_err err;
    char path[4096], *text, *admin_tok;
    crm_value *doc;
    assert_non_null(bin);
    assert_non_null(schemas);
    if (extra_roles) {
        crm_value *more = crm_test_json(extra_roles);
        w->schemas_dir = crm_test_schemas_with_roles(schemas, extra_roles);
        w->own_schemas = 1;
        /* only the extra roles here: admin and the bundled ones had the first run */
        for (size_t i = 0; i < more->u.map.n && i + 1 < MAX_ROLES; i++)
            w->only[i] = strdup(more->u.map.kv[i].key);
        crm_value_free(more);
    } else {
        w->schemas_dir = (char *)schemas;
    }
    if (crm_schema_load_dir(w->schemas_dir, &w->sch, &err) != CRM_OK)
        fprintf(stderr, "schemas: %s\n", err.msg);
    assert_non_null(w->sch);
    assert_true(w->sch->ncolls <= MAX_COLLS);
    snprintf(path, sizeof path, "%s/roles.json", w->schemas_dir);
    text = read_text(path);
    doc = crm_json_decode(text, strlen(text), NULL, &err);
    free(text);
    assert_non_null(doc);
    w->roles = crm_map_take(doc, "roles");
    crm_value_free(doc);
    assert_non_null(w->roles);
    assert_int_equal(w->roles->type, CRM_T_MAP);
    w->role_names[w->nroles++] = "admin";
    for (size_t i = 0; i < w->roles->u.map.n && w->nroles < MAX_ROLES; i++)
        w->role_names[w->nroles++] = w->roles->u.map.kv[i].key;
    w->mism = crm_value_arr();
    collect_fill(w);

    assert_int_equal(crmd_start(&w->p, bin, w->schemas_dir, NULL), 0);
    admin_tok = crmd_token(&w->p, "admin");
    assert_non_null(admin_tok);
    assert_int_equal(ws_connect(&w->admin, w->p.port, "crm.v1.json", NULL, NULL), 0);
    crm_value *r = req_new(w, "auth", NULL), *reply;
    crm_map_set(r, "token", crm_value_cstr(admin_tok));
    reply = rpc(&w->admin, r);
    must_ok(reply, "admin auth");
    crm_value_free(reply);
    free(admin_tok);
    *state = w;
    return 0;
}

static int setup_bundled(void **state)
{
    return start_world(state, NULL);
}

/* hidden_writer: writes what it may not see (a named grant with a hide list,
 * and "*" with another); narrowed: named grants that take rights away from
 * "*" (an empty one takes all); sub_no_read: subscribe without read (refused),
 * write without read (allowed). */
static const char *const extra_roles_json =
    "{\"hidden_writer\": {"
    "   \"contacts\": {\"can\": [\"read\", \"write\", \"subscribe\"], \"hide\": [\"phone\", \"email\"]},"
    "   \"*\": {\"can\": [\"read\", \"write\", \"subscribe\"], \"hide\": [\"owner\", \"notes\"]},"
    "   \"methods\": [\"reports.daily\", \"loyalty.*\"]},"
    " \"narrowed\": {\"*\": [\"read\", \"write\", \"subscribe\"], \"tickets\": [\"read\"], \"orders\": []},"
    " \"sub_no_read\": {\"tickets\": [\"subscribe\"], \"deals\": [\"write\"],"
    "                   \"companies\": [\"subscribe\", \"write\"]}}";

static int setup_extra(void **state)
{
    return start_world(state, extra_roles_json);
}

static int teardown_world(void **state)
{
    world *w = *state;
    ws_close(&w->admin);
    assert_int_equal(crmd_stop(&w->p), 0);
    crm_schema_free(w->sch);
    crm_value_free(w->roles);
    crm_value_free(w->mism);
    for (size_t i = 0; i < MAX_COLLS; i++)
        crm_value_free(w->fill[i]);
    for (size_t i = 0; i < MAX_ROLES && w->only[i]; i++)
        free((char *)w->only[i]);
    if (w->own_schemas)
        crm_tmpdir_remove(w->schemas_dir);
    free(w);
    return 0;
}

/* ---- the matrix ---- */

static int wanted_role(const world *w, const char *role)
{
    if (!w->only[0])
        return 1;
    for (size_t i = 0; i < MAX_ROLES && w->only[i]; i++)
        if (strcmp(w->only[i], role) == 0)
            return 1;
    return 0;
}

static void unsubscribe(world *w, ws_client *c, const crm_value *reply)
{
    crm_value *r = req_new(w, "unsubscribe", NULL), *rep;
    crm_map_set(r, "sub", crm_value_int(crm_map_int(crm_map_get(reply, "result"), "sub", 0)));
    rep = rpc(c, r);
    must_ok(rep, "unsubscribe");
    crm_value_free(rep);
}

/* Cells for each field some grant hides: present in rec exactly when role
 * may see it (rec may be NULL: the record itself was missing). */
static void visibility_cells(world *w, const char *where, const char *role, const crm_collection *c,
                             const crm_value *rec)
{
    const crm_value *fill = w->fill[coll_index(w, c)];
    for (size_t k = 0; k < fill->u.arr.n; k++) {
        const char *f = fill->u.arr.items[k]->u.str.s;
        int hidden = exp_hides(w->roles, role, c->name, f);
        int present = rec && crm_map_get(rec, f) != NULL;
        w->cells++;
        if (!rec)
            mismatch(w, "%s/%s %s: the record is missing, cannot check field %s", role, c->name, where, f);
        else if (present == hidden)
            mismatch(w, "%s/%s %s: field %s is %s, expected %s", role, c->name, where, f,
                     present ? "present" : "absent", hidden ? "hidden" : "visible");
    }
}

static const crm_value *find_record(const crm_value *recs, const char *id)
{
    for (size_t i = 0; recs && recs->type == CRM_T_ARR && i < recs->u.arr.n; i++)
        if (strcmp(crm_map_str(recs->u.arr.items[i], "id", ""), id) == 0)
            return recs->u.arr.items[i];
    return NULL;
}

/* Waits for a change push of subscription sub about id; NULL on timeout. */
static crm_value *wait_push(ws_client *c, int64_t sub, const char *id, int timeout_ms)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int left;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        left = timeout_ms - (int)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000);
        if (left <= 0)
            return NULL;
        crm_value *v = ws_recv(c, left, NULL);
        if (!v)
            return NULL;
        if (strcmp(crm_map_str(v, "event", ""), "change") == 0 && crm_map_int(v, "sub", -1) == sub &&
            strcmp(crm_map_str(v, "id", ""), id) == 0)
            return v;
        crm_value_free(v);
    }
}

static void matrix_role_coll(world *w, ws_client *c, const char *role, const crm_collection *coll)
{
    const char *cn = coll->name;
    int p = exp_perms(w->roles, role, cn);
    const char *R = p & P_READ ? "OK" : "FORBIDDEN";
    const char *W = p & P_WRITE ? "OK" : "FORBIDDEN";
    const char *S = (p & P_SUB) && (p & P_READ) ? "OK" : "FORBIDDEN";
    char what[256], target[160], id[160];
    crm_value *r, *reply;

    /* a record of this cell's own to update and delete */
    snprintf(target, sizeof target, "%st_%s", coll->id_prefix, role);
    admin_create(w, coll, target, make_record(w, coll, 1, 1));

#define CELL(opname, want)                                                 \
    do {                                                                   \
        snprintf(what, sizeof what, "%s/%s %s", role, cn, opname);         \
        reply = rpc(c, r);                                                 \
        cell(w, what, want, reply);                                        \
    } while (0)

    r = req_new(w, "get", cn);
    crm_map_set(r, "id", crm_value_cstr(seed_of(w, coll)));
    CELL("get", R);
    if (is_ok(reply))
        visibility_cells(w, "get", role, coll, crm_map_get(reply, "result"));
    crm_value_free(reply);

    r = req_new(w, "query", cn);
    crm_map_set(r, "limit", crm_value_int(1000));
    CELL("query", R);
    if (is_ok(reply))
        visibility_cells(w, "query", role, coll,
                         find_record(crm_map_get(crm_map_get(reply, "result"), "records"), seed_of(w, coll)));
    crm_value_free(reply);

    r = req_new(w, "aggregate", cn);
    crm_value *metrics = crm_value_arr();
    crm_arr_push(metrics, crm_value_cstr("count"));
    crm_map_set(r, "metrics", metrics);
    CELL("aggregate", R);
    crm_value_free(reply);

    r = req_new(w, "create", cn);
    snprintf(id, sizeof id, "%sc_%s", coll->id_prefix, role);
    crm_map_set(r, "id", crm_value_cstr(id));
    crm_map_set(r, "record", make_record(w, coll, 0, p & P_WRITE));
    CELL("create", W);
    crm_value_free(reply);

    r = req_new(w, "update", cn);
    crm_map_set(r, "id", crm_value_cstr(target));
    crm_map_set(r, "patch", make_patch(w, coll, role));
    CELL("update", W);
    if (is_ok(reply))
        visibility_cells(w, "update reply", role, coll, crm_map_get(reply, "result"));
    crm_value_free(reply);

    r = req_new(w, "delete", cn);
    crm_map_set(r, "id", crm_value_cstr(target));
    CELL("delete", W);
    crm_value_free(reply);

    r = req_new(w, "tx", NULL);
    {
        crm_value *ops = crm_value_arr(), *op = crm_value_map();
        snprintf(id, sizeof id, "%sx_%s", coll->id_prefix, role);
        crm_map_set(op, "op", crm_value_cstr("create"));
        crm_map_set(op, "collection", crm_value_cstr(cn));
        crm_map_set(op, "id", crm_value_cstr(id));
        crm_map_set(op, "record", make_record(w, coll, 0, p & P_WRITE));
        crm_arr_push(ops, op);
        crm_map_set(r, "ops", ops);
    }
    CELL("tx(create)", W);
    crm_value_free(reply);

    r = req_new(w, "subscribe", cn);
    CELL("subscribe", S);
    if (is_ok(reply))
        unsubscribe(w, c, reply);
    crm_value_free(reply);

    r = req_new(w, "subscribe", cn);
    crm_map_set(r, "since", crm_value_int((int64_t)w->s0));
    CELL("subscribe since", S);
    if (is_ok(reply))
        unsubscribe(w, c, reply);
    crm_value_free(reply);

    r = req_new(w, "subscribe", cn);
    {
        crm_value *agg = crm_value_map(), *m = crm_value_arr();
        crm_arr_push(m, crm_value_cstr("count"));
        crm_map_set(agg, "metrics", m);
        crm_map_set(r, "aggregate", agg);
    }
    CELL("subscribe aggregate", S);
    if (is_ok(reply))
        unsubscribe(w, c, reply);
    crm_value_free(reply);
#undef CELL
}

static void call_cells(world *w, ws_client *c, const char *role)
{
    const crm_value *g = crm_map_get(w->roles, role), *m = g ? crm_map_get(g, "methods") : NULL;
    crm_value *names = crm_value_arr();
    /* every grant (a prefix grant as one name under it), near misses, and a stranger */
    for (size_t i = 0; m && m->type == CRM_T_ARR && i < m->u.arr.n; i++) {
        const char *x = m->u.arr.items[i]->u.str.s;
        size_t n = strlen(x);
        char buf[256];
        if (n >= 2 && strcmp(x + n - 2, ".*") == 0) {
            snprintf(buf, sizeof buf, "%.*s.probe", (int)(n - 2), x);
            crm_arr_push(names, crm_value_cstr(buf));
            snprintf(buf, sizeof buf, "%.*s", (int)(n - 2), x); /* the prefix alone */
            crm_arr_push(names, crm_value_cstr(buf));
            snprintf(buf, sizeof buf, "%.*sx.probe", (int)(n - 2), x); /* a longer word */
            crm_arr_push(names, crm_value_cstr(buf));
        } else {
            crm_arr_push(names, crm_value_cstr(x));
            snprintf(buf, sizeof buf, "%sx", x);
            crm_arr_push(names, crm_value_cstr(buf));
        }
    }
    crm_arr_push(names, crm_value_cstr("zz_nobody.method"));
    crm_arr_push(names, crm_value_cstr("loyalty.balance"));
    crm_arr_push(names, crm_value_cstr("tickets.escalate"));
    for (size_t i = 0; i < names->u.arr.n; i++) {
        const char *name = names->u.arr.items[i]->u.str.s;
        char what[300];
        crm_value *r = req_new(w, "call", NULL), *reply;
        crm_map_set(r, "method", crm_value_cstr(name));
        crm_map_set(r, "params", crm_value_map());
        reply = rpc(c, r);
        snprintf(what, sizeof what, "%s call %s", role, name);
        /* no methods exist yet: a granted call finds nothing */
        cell(w, what, exp_may_call(w->roles, role, name) ? "NOT_FOUND" : "FORBIDDEN", reply);
        crm_value_free(reply);
    }
    crm_value_free(names);
}

static void refill_seed(world *w, const crm_collection *coll);

/* Naming a field in a where, order_by, group_by, metric, aggregate
 * subscription or write: FORBIDDEN exactly when role's grant hides it (or
 * when the op is not granted at all); otherwise the op goes through. */
static void usage_cells(world *w, ws_client *c, const char *role, const crm_collection *coll)
{
    /* never NULL; said so because gcc -O3 follows req_new's NULL check back
     * to the names printed below (format-truncation) */
    const char *cn = coll->name ? coll->name : "";
    const crm_value *fill = w->fill[coll_index(w, coll)];
    int p = exp_perms(w->roles, role, cn);
    for (size_t k = 0; k < fill->u.arr.n; k++) {
        const char *f = fill->u.arr.items[k]->u.str.s;
        const crm_field *fd = crm_collection_field(coll, f);
        int hidden = exp_hides(w->roles, role, cn, f);
        int numeric = fd->type == CRM_F_INT || fd->type == CRM_F_NUMBER || fd->type == CRM_F_TIMESTAMP;
        const char *R = !(p & P_READ) || hidden ? "FORBIDDEN" : "OK";
        const char *S = !(p & P_READ) || !(p & P_SUB) || hidden ? "FORBIDDEN" : "OK";
        const char *W = !(p & P_WRITE) || hidden ? "FORBIDDEN" : "OK";
        char what[300], tag[32], buf[160];
        crm_value *r, *reply;
        next_tag(w, tag, sizeof tag);

#define UCELL(label, want)                                                     \
    do {                                                                       \
        snprintf(what, sizeof what, "%s/%s %s (field %s)", role, cn, label, f); \
        reply = rpc(c, r);                                                     \
        cell(w, what, want, reply);                                            \
    } while (0)

        /* where: equality and an operator map */
        r = req_new(w, "query", cn);
        {
            crm_value *wh = crm_value_map();
            crm_map_set(wh, f, gen_value(fd, tag));
            crm_map_set(r, "where", wh);
        }
        UCELL("query where", R);
        crm_value_free(reply);
        r = req_new(w, "query", cn);
        {
            crm_value *wh = crm_value_map(), *opm = crm_value_map(), *in = crm_value_arr();
            crm_arr_push(in, gen_value(fd, tag));
            crm_map_set(opm, "in", in);
            crm_map_set(wh, f, opm);
            crm_map_set(r, "where", wh);
        }
        UCELL("query where {in}", R);
        crm_value_free(reply);
        r = req_new(w, "query", cn);
        crm_map_set(r, "order_by", crm_value_cstr(f));
        UCELL("query order_by", R);
        crm_value_free(reply);
        r = req_new(w, "query", cn);
        snprintf(buf, sizeof buf, "-%s", f);
        crm_map_set(r, "order_by", crm_value_cstr(buf));
        UCELL("query order_by -field", R);
        crm_value_free(reply);

        r = req_new(w, "aggregate", cn);
        crm_map_set(r, "group_by", crm_value_cstr(f));
        UCELL("aggregate group_by", R);
        crm_value_free(reply);
        r = req_new(w, "aggregate", cn);
        {
            crm_value *wh = crm_value_map();
            crm_map_set(wh, f, gen_value(fd, tag));
            crm_map_set(r, "where", wh);
        }
        UCELL("aggregate where", R);
        crm_value_free(reply);
        static const char *const aggs[] = {"sum", "min", "max", "avg"};
        for (size_t a = 0; a < 4; a++) {
            crm_value *m = crm_value_arr();
            char label[64];
            r = req_new(w, "aggregate", cn);
            snprintf(buf, sizeof buf, "%s:%s", aggs[a], f);
            crm_arr_push(m, crm_value_cstr(buf));
            crm_map_set(r, "metrics", m);
            snprintf(label, sizeof label, "aggregate metrics %s:", aggs[a]);
            /* over a string field the metric itself may be refused: only
             * FORBIDDEN-ness is asserted then */
            UCELL(label, strcmp(R, "OK") == 0 && !numeric ? "!FORBIDDEN" : R);
            crm_value_free(reply);
        }

        /* subscriptions: where, and aggregate subscriptions */
        r = req_new(w, "subscribe", cn);
        {
            crm_value *wh = crm_value_map();
            crm_map_set(wh, f, gen_value(fd, tag));
            crm_map_set(r, "where", wh);
        }
        UCELL("subscribe where", S);
        if (is_ok(reply))
            unsubscribe(w, c, reply);
        crm_value_free(reply);
        r = req_new(w, "subscribe", cn);
        {
            crm_value *agg = crm_value_map();
            crm_map_set(agg, "group_by", crm_value_cstr(f));
            crm_map_set(r, "aggregate", agg);
        }
        UCELL("subscribe aggregate group_by", S);
        if (is_ok(reply))
            unsubscribe(w, c, reply);
        crm_value_free(reply);
        r = req_new(w, "subscribe", cn);
        {
            crm_value *agg = crm_value_map(), *m = crm_value_arr();
            snprintf(buf, sizeof buf, "max:%s", f);
            crm_arr_push(m, crm_value_cstr(buf));
            crm_map_set(agg, "metrics", m);
            crm_map_set(r, "aggregate", agg);
        }
        UCELL("subscribe aggregate metrics max:", strcmp(S, "OK") == 0 && !numeric ? "!FORBIDDEN" : S);
        if (is_ok(reply))
            unsubscribe(w, c, reply);
        crm_value_free(reply);
        r = req_new(w, "subscribe", cn);
        {
            crm_value *agg = crm_value_map(), *wh = crm_value_map();
            crm_map_set(wh, f, gen_value(fd, tag));
            crm_map_set(agg, "where", wh);
            crm_map_set(r, "aggregate", agg);
        }
        UCELL("subscribe aggregate where", S);
        if (is_ok(reply))
            unsubscribe(w, c, reply);
        crm_value_free(reply);

        /* writes: create with it, update setting it, update removing it, tx */
        r = req_new(w, "create", cn);
        {
            crm_value *rec = make_record(w, coll, 0, strcmp(W, "OK") == 0);
            crm_map_set(rec, f, gen_value(fd, tag));
            crm_map_set(r, "record", rec);
        }
        UCELL("create record", W);
        crm_value_free(reply);
        r = req_new(w, "update", cn);
        crm_map_set(r, "id", crm_value_cstr(seed_of(w, coll)));
        {
            crm_value *patch = crm_value_map();
            next_tag(w, tag, sizeof tag);
            crm_map_set(patch, f, gen_value(fd, tag));
            crm_map_set(r, "patch", patch);
        }
        UCELL("update patch", W);
        crm_value_free(reply);
        r = req_new(w, "update", cn);
        crm_map_set(r, "id", crm_value_cstr(seed_of(w, coll)));
        {
            crm_value *patch = crm_value_map();
            crm_map_set(patch, f, crm_value_nil());
            crm_map_set(r, "patch", patch);
        }
        UCELL("update patch null", W);
        crm_value_free(reply);
        r = req_new(w, "tx", NULL);
        {
            crm_value *ops = crm_value_arr(), *op = crm_value_map(), *patch = crm_value_map();
            next_tag(w, tag, sizeof tag);
            crm_map_set(patch, f, gen_value(fd, tag));
            crm_map_set(op, "op", crm_value_cstr("update"));
            crm_map_set(op, "collection", crm_value_cstr(cn));
            crm_map_set(op, "id", crm_value_cstr(seed_of(w, coll)));
            crm_map_set(op, "patch", patch);
            crm_arr_push(ops, op);
            crm_map_set(r, "ops", ops);
        }
        UCELL("tx update patch", W);
        crm_value_free(reply);
#undef UCELL
    }
    if (fill->u.arr.n && (p & P_WRITE))
        refill_seed(w, coll); /* the writes above may have changed or removed them */
}

/* The seed with every filled field set again (admin), so visibility checks
 * that follow have values to look for. */
static void refill_seed(world *w, const crm_collection *coll)
{
    const crm_value *fill = w->fill[coll_index(w, coll)];
    crm_value *r, *reply, *patch = crm_value_map();
    char tag[32];
    next_tag(w, tag, sizeof tag);
    for (size_t k = 0; k < fill->u.arr.n; k++) {
        const char *f = fill->u.arr.items[k]->u.str.s;
        crm_map_set(patch, f, gen_value(crm_collection_field(coll, f), tag));
    }
    r = req_new(w, "update", coll->name);
    crm_map_set(r, "id", crm_value_cstr(seed_of(w, coll)));
    crm_map_set(r, "patch", patch);
    reply = rpc(&w->admin, r);
    must_ok(reply, "refill seed");
    crm_value_free(reply);
}

/* Snapshot, live pushes (an update and a create by admin) and a since
 * replay carry exactly the fields role may see. */
static void subscription_visibility(world *w, ws_client *c, const char *role, const crm_collection *coll)
{
    const char *cn = coll->name;
    int p = exp_perms(w->roles, role, cn);
    crm_value *r, *reply, *push;
    int64_t sub, seq0;
    char newid[160];
    if (!(p & P_READ) || !(p & P_SUB) || w->fill[coll_index(w, coll)]->u.arr.n == 0)
        return;
    refill_seed(w, coll);
    r = req_new(w, "subscribe", cn);
    crm_map_set(r, "snapshot", crm_value_bool(1));
    reply = rpc(c, r);
    {
        char what[256];
        snprintf(what, sizeof what, "%s/%s subscribe snapshot", role, cn);
        if (!cell(w, what, "OK", reply)) {
            crm_value_free(reply);
            return;
        }
    }
    sub = crm_map_int(crm_map_get(reply, "result"), "sub", 0);
    seq0 = crm_map_int(crm_map_get(reply, "result"), "seq", 0);
    visibility_cells(w, "snapshot", role, coll,
                     find_record(crm_map_get(crm_map_get(reply, "result"), "records"), seed_of(w, coll)));
    crm_value_free(reply);

    refill_seed(w, coll); /* a live update */
    push = wait_push(c, sub, seed_of(w, coll), 5000);
    visibility_cells(w, "live update push", role, coll, push ? crm_map_get(push, "record") : NULL);
    crm_value_free(push);

    snprintf(newid, sizeof newid, "%slive_%s", coll->id_prefix, role);
    admin_create(w, coll, newid, make_record(w, coll, 1, 1)); /* a live create */
    push = wait_push(c, sub, newid, 5000);
    visibility_cells(w, "live create push", role, coll, push ? crm_map_get(push, "record") : NULL);
    crm_value_free(push);

    r = req_new(w, "unsubscribe", NULL);
    crm_map_set(r, "sub", crm_value_int(sub));
    reply = rpc(c, r);
    must_ok(reply, "unsubscribe");
    crm_value_free(reply);

    /* since: the same two changes replayed from the feed */
    r = req_new(w, "subscribe", cn);
    crm_map_set(r, "since", crm_value_int(seq0));
    reply = rpc(c, r);
    must_ok(reply, "subscribe since");
    sub = crm_map_int(crm_map_get(reply, "result"), "sub", 0);
    crm_value_free(reply);
    push = wait_push(c, sub, seed_of(w, coll), 5000);
    visibility_cells(w, "since replay (update)", role, coll, push ? crm_map_get(push, "record") : NULL);
    crm_value_free(push);
    push = wait_push(c, sub, newid, 5000);
    visibility_cells(w, "since replay (create)", role, coll, push ? crm_map_get(push, "record") : NULL);
    crm_value_free(push);
    r = req_new(w, "unsubscribe", NULL);
    crm_map_set(r, "sub", crm_value_int(sub));
    reply = rpc(c, r);
    must_ok(reply, "unsubscribe");
    crm_value_free(reply);
}

/* A role that may write but not see some fields: its write replies do not
 * show them, and its writes leave them in place. */
static void write_visibility(world *w, ws_client *c, const char *role, const crm_collection *coll)
{
    const char *cn = coll->name;
    const crm_value *fill = w->fill[coll_index(w, coll)];
    int p = exp_perms(w->roles, role, cn), any_hidden = 0;
    crm_value *r, *reply, *before, *after;
    char what[256];
    for (size_t k = 0; k < fill->u.arr.n; k++)
        any_hidden |= exp_hides(w->roles, role, cn, fill->u.arr.items[k]->u.str.s);
    if (!(p & P_WRITE) || !any_hidden)
        return;
    refill_seed(w, coll);
    r = req_new(w, "get", cn);
    crm_map_set(r, "id", crm_value_cstr(seed_of(w, coll)));
    before = rpc(&w->admin, r);
    must_ok(before, "admin get");

    r = req_new(w, "tx", NULL);
    {
        crm_value *ops = crm_value_arr(), *op = crm_value_map();
        crm_map_set(op, "op", crm_value_cstr("update"));
        crm_map_set(op, "collection", crm_value_cstr(cn));
        crm_map_set(op, "id", crm_value_cstr(seed_of(w, coll)));
        crm_map_set(op, "patch", make_patch(w, coll, role));
        crm_arr_push(ops, op);
        crm_map_set(r, "ops", ops);
    }
    reply = rpc(c, r);
    snprintf(what, sizeof what, "%s/%s tx(update) of a record with hidden fields", role, cn);
    if (cell(w, what, "OK", reply)) {
        const crm_value *res = crm_map_get(reply, "result");
        visibility_cells(w, "tx reply", role, coll,
                         res && res->type == CRM_T_ARR && res->u.arr.n ? res->u.arr.items[0] : NULL);
    }
    crm_value_free(reply);

    r = req_new(w, "get", cn);
    crm_map_set(r, "id", crm_value_cstr(seed_of(w, coll)));
    after = rpc(&w->admin, r);
    must_ok(after, "admin get");
    for (size_t k = 0; k < fill->u.arr.n; k++) {
        const char *f = fill->u.arr.items[k]->u.str.s;
        w->cells++;
        if (!crm_value_equal(crm_map_get(crm_map_get(before, "result"), f),
                             crm_map_get(crm_map_get(after, "result"), f)))
            mismatch(w, "%s/%s: an update by the role changed field %s it may not see", role, cn, f);
    }
    crm_value_free(before);
    crm_value_free(after);
}

static void seed_everything(world *w)
{
    crm_value *r, *reply;
    for (size_t ci = 0; ci < w->sch->ncolls; ci++)
        seed_of(w, &w->sch->colls[ci]);
    /* the feed position once seeded: subscribe since it replays little */
    r = req_new(w, "subscribe", w->sch->colls[0].name);
    reply = rpc(&w->admin, r);
    w->s0 = (uint64_t)crm_map_int(must_ok(reply, "admin subscribe"), "seq", 0);
    unsubscribe(w, &w->admin, reply);
    crm_value_free(reply);
    /* the seeds hold every field some grant hides (the checks depend on it) */
    for (size_t ci = 0; ci < w->sch->ncolls; ci++) {
        const crm_collection *c = &w->sch->colls[ci];
        r = req_new(w, "get", c->name);
        crm_map_set(r, "id", crm_value_cstr(seed_of(w, c)));
        reply = rpc(&w->admin, r);
        for (size_t k = 0; k < w->fill[ci]->u.arr.n; k++)
            assert_non_null(crm_map_get(must_ok(reply, "admin get"), w->fill[ci]->u.arr.items[k]->u.str.s));
        crm_value_free(reply);
    }
}

static void run_matrix(void **state)
{
    world *w = *state;
    struct timespec t0, t1;
    int cells_before;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    seed_everything(w);
    for (size_t ri = 0; ri < w->nroles; ri++) {
        const char *role = w->role_names[ri];
        ws_client c;
        crm_value *r, *reply;
        if (!wanted_role(w, role))
            continue;
        char *tok = crmd_token(&w->p, role);
        assert_non_null(tok);
        assert_int_equal(ws_connect(&c, w->p.port, "crm.v1.json", NULL, NULL), 0);
        r = req_new(w, "auth", NULL);
        crm_map_set(r, "token", crm_value_cstr(tok));
        reply = rpc(&c, r);
        assert_string_equal(crm_map_str(must_ok(reply, "auth"), "role", ""), role);
        crm_value_free(reply);
        free(tok);
        cells_before = w->cells;
        for (size_t ci = 0; ci < w->sch->ncolls; ci++) {
            const crm_collection *coll = &w->sch->colls[ci];
            matrix_role_coll(w, &c, role, coll);
            usage_cells(w, &c, role, coll);
            subscription_visibility(w, &c, role, coll);
            write_visibility(w, &c, role, coll);
        }
        call_cells(w, &c, role);
        fprintf(stderr, "# role %-18s %4d cells\n", role, w->cells - cells_before);
        ws_close(&c);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fprintf(stderr, "# authz: %d cells checked, %zu mismatches (%.1f s)\n", w->cells, w->mism->u.arr.n,
            (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    for (size_t i = 0; i < w->mism->u.arr.n; i++)
        fprintf(stderr, "MISMATCH %s\n", w->mism->u.arr.items[i]->u.str.s);
    assert_int_equal(w->mism->u.arr.n, 0);
}

/* The roles of schemas/roles.json and admin. */
static void bundled_roles(void **state)
{
    run_matrix(state);
}

/* Extra roles in a temporary copy of the schemas (see the top). */
static void extra_roles(void **state)
{
    run_matrix(state);
}


/* R16, the last part: a revoked token's connection, with its record and
 * aggregate subscriptions, is cut (close 1008) within a second of
 * `crmd token revoke` returning.  One connection per role that may
 * subscribe to something (and admin); each first receives a live push (so
 * the subscriptions are real), then every token is revoked in turn. */
static void revoked_tokens_lose_their_subscriptions(void **state)
{
    world *w = *state;
    ws_client c[MAX_ROLES];
    char *tok[MAX_ROLES];
    const char *coll_of[MAX_ROLES];
    double t_rev[MAX_ROLES], t_cut[MAX_ROLES], worst = 0;
    int n = 0, late = 0, not_1008 = 0, pushed = 0;
    for (size_t ri = 0; ri < w->nroles && n < MAX_ROLES; ri++) {
        const char *role = w->role_names[ri], *coll = NULL;
        for (size_t ci = 0; ci < w->sch->ncolls && !coll; ci++) {
            int p = exp_perms(w->roles, role, w->sch->colls[ci].name);
            if ((p & P_READ) && (p & P_SUB) && strcmp(w->sch->colls[ci].name, "dead_letters") != 0)
                coll = w->sch->colls[ci].name;
        }
        if (!coll)
            continue;
        assert_non_null(tok[n] = crmd_token(&w->p, role));
        assert_int_equal(ws_connect(&c[n], w->p.port, "crm.v1.json", NULL, NULL), 0);
        assert_int_equal(ws_auth(&c[n], tok[n], 5000), 0);
        crm_value *r = ws_request(&c[n], 5000, NULL, "{\"op\": \"subscribe\", \"collection\": \"%s\"}", coll);
        must_ok(r, "subscribe");
        crm_value_free(r);
        r = ws_request(&c[n], 5000, NULL,
                       "{\"op\": \"subscribe\", \"collection\": \"%s\", \"aggregate\": {\"metrics\": [\"count\"]}}",
                       coll);
        must_ok(r, "aggregate subscribe");
        crm_value_free(r);
        coll_of[n++] = coll;
    }
    /* a live change for each: pushed */
    for (int i = 0; i < n; i++) {
        const crm_collection *cc = crm_schema_find(w->sch, coll_of[i]);
        char id[160];
        snprintf(id, sizeof id, "%srev_%d", cc->id_prefix, i);
        admin_create(w, cc, id, make_record(w, cc, 0, 1));
        crm_value *push = wait_push(&c[i], 1, id, 5000);
        pushed += push != NULL;
        crm_value_free(push);
    }
    for (int i = 0; i < n; i++) {
        char cmd[8192];
        snprintf(cmd, sizeof cmd, "'%s' token revoke --data '%s' --schemas '%s' '%s' >/dev/null", w->p.bin,
                 w->p.data, w->p.schemas, tok[i]);
        assert_int_equal(system(cmd), 0);
        t_rev[i] = crm_test_now_s();
        t_cut[i] = 0;
    }
    for (int i = 0; i < n; i++) {
        int code = 0;
        crm_value *v;
        /* pushes may still come until the cut; then the close */
        while ((v = ws_recv(&c[i], 5000, &code)))
            crm_value_free(v);
        t_cut[i] = crm_test_now_s();
        double took = t_cut[i] - t_rev[i];
        worst = took > worst ? took : worst;
        w->cells += 2;
        if (code != 1008) {
            not_1008++;
            mismatch(w, "revoked token %d: closed with %d, expected 1008", i, code);
        }
        if (took > 1.5) {
            late++;
            mismatch(w, "revoked token %d: cut %.2f s after the revoke", i, took);
        }
        ws_close(&c[i]);
        free(tok[i]);
    }
    fprintf(stderr, "# authz revocation: %d connections (each with a record and an aggregate "
                    "subscription, %d got a live push first), all cut: %d not 1008, %d late; the last "
                    "cut %.2f s after its revoke returned\n",
            n, pushed, not_1008, late, worst);
    for (size_t i = 0; i < w->mism->u.arr.n; i++)
        fprintf(stderr, "MISMATCH %s\n", w->mism->u.arr.items[i]->u.str.s);
    assert_int_equal(pushed, n);
    assert_int_equal(w->mism->u.arr.n, 0);
    assert_true(n >= 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(bundled_roles, setup_bundled, teardown_world),
        cmocka_unit_test_setup_teardown(extra_roles, setup_extra, teardown_world),
        cmocka_unit_test_setup_teardown(revoked_tokens_lose_their_subscriptions, setup_bundled, teardown_world),
    };
    return cmocka_run_group_tests_name("authz", tests, NULL, NULL);
}
