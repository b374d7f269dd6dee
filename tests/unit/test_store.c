/*
 * test_store -- the write path against a real LMDB in a temp folder:
 * records and system fields, ids, revs, indexes kept in step on create,
 * update and delete, unique conflicts, refs, group-commit isolation between
 * units, all-or-nothing tx units, before-hooks, a full map that grows and
 * then refuses cleanly, and reader slots left by a killed process.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>

#include "codec.h"
#include "schema.h"
#include "store.h"
#include "testutil.h"
#include "tmpdir.h"

static const char *const COMPANIES =
    "{\"collection\": \"companies\", \"id_prefix\": \"co_\", \"fields\": {"
    " \"name\": {\"type\": \"string\", \"required\": true}}}";
static const char *const CONTACTS =
    "{\"collection\": \"contacts\", \"strict\": true, \"id_prefix\": \"c_\", \"fields\": {"
    " \"name\":    {\"type\": \"string\", \"required\": true, \"max\": 200},"
    " \"email\":   {\"type\": \"string\", \"index\": \"unique\"},"
    " \"city\":    {\"type\": \"string\", \"index\": true},"
    " \"points\":  {\"type\": \"int\", \"default\": 0, \"min\": 0, \"index\": true},"
    " \"stage\":   {\"type\": \"enum\", \"values\": [\"prospect\", \"customer\", \"loyal\"],"
    "               \"default\": \"prospect\", \"index\": true},"
    " \"company\": {\"type\": \"ref\", \"to\": \"companies\"},"
    " \"blob\":    {\"type\": \"string\"},"
    " \"badge\":   {\"type\": \"string\", \"index\": \"unique\"}"
    "}}";

typedef struct fixture {
    char *dir, *sdir;
    crm_schema *schema;
    crm_store *store;
    crm_store_opts opts;
    int64_t now;
} fixture;

static int64_t fake_clock(void *ud) { return ((fixture *)ud)->now; }

static void open_store(fixture *f)
{
    crm_err err;
    int rc = crm_store_open(f->dir, f->schema, &f->opts, &f->store, &err);
    if (rc != CRM_OK)
        fprintf(stderr, "open: %s\n", err.msg);
    assert_int_equal(rc, CRM_OK);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    crm_err err;
    f->sdir = crm_tmpdir_make("sschema");
    crm_tmpdir_write(f->sdir, "companies.json", COMPANIES);
    crm_tmpdir_write(f->sdir, "contacts.json", CONTACTS);
    assert_int_equal(crm_schema_load_dir(f->sdir, &f->schema, &err), CRM_OK);
    f->dir = crm_tmpdir_make("store");
    crm_store_opts_default(&f->opts);
    f->opts.no_sync = 1;
    f->opts.clock_ms = fake_clock;
    f->opts.clock_ud = f;
    f->now = 1700000000000;
    open_store(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    crm_err err;
    if (f->store) {
        assert_int_equal(crm_store_verify(f->store, &err), CRM_OK);
        crm_store_close(f->store);
    }
    crm_schema_free(f->schema);
    crm_tmpdir_remove(f->dir);
    crm_tmpdir_remove(f->sdir);
    free(f);
    return 0;
}

#define J(json) crm_test_json(json)

/* One write, committed alone; returns its rc; *result (may be NULL) gets the result. */
static int write1(fixture *f, crm_op op, const char *coll, const char *id, const char *json,
                  int64_t if_rev, crm_value **result, crm_err *err_out)
{
    crm_value *data = json ? J(json) : NULL;
    crm_write w = {.op = op, .coll = coll, .id = id, .data = data, .if_rev = if_rev};
    int rc = crm_store_write1(f->store, &w);
    if (err_out)
        *err_out = w.err;
    if (result) {
        *result = w.result;
        w.result = NULL;
    }
    crm_write_clear(&w);
    crm_value_free(data);
    return rc;
}

static crm_value *get(fixture *f, const char *coll, const char *id, int *rc_out)
{
    crm_txn *t;
    crm_err err;
    crm_value *v = NULL;
    assert_int_equal(crm_store_begin_read(f->store, &t, &err), CRM_OK);
    *rc_out = crm_txn_get(t, coll, id, &v, &err);
    crm_txn_end(t);
    return v;
}

/* ids of query results, joined by commas */
static void query_ids(fixture *f, const char *where_json, const char *order, char *out, size_t cap)
{
    crm_txn *t;
    crm_err err;
    crm_value *where = where_json ? J(where_json) : NULL, *recs;
    char *next;
    crm_query q = {"contacts", where, order, 1000, NULL};
    assert_int_equal(crm_store_begin_read(f->store, &t, &err), CRM_OK);
    assert_int_equal(crm_txn_query(t, &q, &recs, &next, &err), CRM_OK);
    out[0] = 0;
    for (size_t i = 0; i < recs->u.arr.n; i++) {
        size_t l = strlen(out);
        snprintf(out + l, cap - l, "%s%s", i ? "," : "", crm_map_str(recs->u.arr.items[i], "id", "?"));
    }
    crm_value_free(recs);
    free(next);
    crm_value_free(where);
    crm_txn_end(t);
}

/* ---- records, ids, revs ---- */

static void create_fills_system_fields_and_defaults(void **state)
{
    fixture *f = *state;
    crm_value *r;
    crm_err err;
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", NULL, "{\"name\": \"Ann\"}", 0, &r, &err),
                     CRM_OK);
    const char *id = crm_map_str(r, "id", "");
    assert_int_equal(strlen(id), 2 + 13); /* "c_" + 13 sortable characters */
    assert_memory_equal(id, "c_", 2);
    assert_int_equal(crm_map_int(r, "_rev", 0), 1);
    assert_int_equal(crm_map_int(r, "_created", 0), f->now);
    assert_int_equal(crm_map_int(r, "_updated", 0), f->now);
    assert_int_equal(crm_map_int(r, "points", -1), 0);
    assert_string_equal(crm_map_str(r, "stage", ""), "prospect");
    int rc;
    crm_value *g = get(f, "contacts", id, &rc);
    assert_int_equal(rc, CRM_OK);
    assert_true(crm_value_equal(g, r));
    crm_value_free(g);
    crm_value_free(r);
}

static void server_ids_sort_by_creation(void **state)
{
    fixture *f = *state;
    char prev[64] = "";
    for (int i = 0; i < 300; i++) {
        crm_value *r;
        if (i % 100 == 0)
            f->now += 1; /* also within one millisecond */
        assert_int_equal(write1(f, CRM_OP_CREATE, "companies", NULL, "{\"name\": \"x\"}", 0, &r, NULL),
                         CRM_OK);
        const char *id = crm_map_str(r, "id", "");
        assert_true(strcmp(prev, id) < 0);
        snprintf(prev, sizeof prev, "%s", id);
        crm_value_free(r);
    }
    /* the clock going backwards does not break the order, across a reopen too */
    crm_store_close(f->store);
    f->now -= 100000;
    open_store(f);
    crm_value *r;
    assert_int_equal(write1(f, CRM_OP_CREATE, "companies", NULL, "{\"name\": \"x\"}", 0, &r, NULL),
                     CRM_OK);
    assert_true(strcmp(prev, crm_map_str(r, "id", "")) < 0);
    crm_value_free(r);
}

static void client_ids_are_checked(void **state)
{
    fixture *f = *state;
    crm_err err;
    crm_value *r;
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", "c_9", "{\"name\": \"Nine\"}", 0, &r, NULL),
                     CRM_OK);
    assert_string_equal(crm_map_str(r, "id", ""), "c_9");
    crm_value_free(r);
    /* also given inside the record */
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", NULL, "{\"id\": \"c_10\", \"name\": \"Ten\"}",
                            0, NULL, NULL), CRM_OK);
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", "c_9", "{\"name\": \"Again\"}", 0, NULL, &err),
                     CRM_CONFLICT);
    assert_string_equal(err.msg, "contacts/c_9 already exists");
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", "bad id", "{\"name\": \"x\"}", 0, NULL, &err),
                     CRM_BAD_REQUEST);
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", NULL, "{\"id\": 5, \"name\": \"x\"}", 0, NULL,
                            &err), CRM_BAD_REQUEST);
    char longid[200];
    memset(longid, 'a', 129);
    longid[129] = 0;
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", longid, "{\"name\": \"x\"}", 0, NULL, &err),
                     CRM_BAD_REQUEST);
    assert_int_equal(write1(f, CRM_OP_CREATE, "nope", NULL, "{\"name\": \"x\"}", 0, NULL, &err),
                     CRM_BAD_REQUEST);
    assert_string_equal(err.msg, "unknown collection \"nope\"");
}

static void update_patches_and_bumps_rev(void **state)
{
    fixture *f = *state;
    crm_value *r;
    crm_err err;
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", "c_1",
                            "{\"name\": \"Ann\", \"city\": \"Oslo\", \"points\": 5}", 0, NULL, NULL),
                     CRM_OK);
    f->now += 1000;
    /* a field set to null is removed; system fields echoed back are ignored */
    assert_int_equal(write1(f, CRM_OP_UPDATE, "contacts", "c_1",
                            "{\"city\": null, \"points\": 7, \"_rev\": 99, \"_created\": 1}", 0, &r, NULL),
                     CRM_OK);
    assert_null(crm_map_get(r, "city"));
    assert_int_equal(crm_map_int(r, "points", 0), 7);
    assert_int_equal(crm_map_int(r, "_rev", 0), 2);
    assert_int_equal(crm_map_int(r, "_created", 0), f->now - 1000);
    assert_int_equal(crm_map_int(r, "_updated", 0), f->now);
    assert_string_equal(crm_map_str(r, "name", ""), "Ann");
    crm_value_free(r);
    /* if_rev */
    assert_int_equal(write1(f, CRM_OP_UPDATE, "contacts", "c_1", "{\"points\": 8}", 1, NULL, &err),
                     CRM_CONFLICT);
    assert_string_equal(err.msg, "contacts/c_1 is at rev 2, not 1");
    assert_int_equal(write1(f, CRM_OP_UPDATE, "contacts", "c_1", "{\"points\": 8}", 2, NULL, NULL),
                     CRM_OK);
    /* validation on the merged record */
    assert_int_equal(write1(f, CRM_OP_UPDATE, "contacts", "c_1", "{\"points\": -1}", 0, NULL, &err),
                     CRM_VALIDATION);
    assert_int_equal(write1(f, CRM_OP_UPDATE, "contacts", "c_1", "{\"name\": null}", 0, NULL, &err),
                     CRM_VALIDATION);
    assert_string_equal(err.msg, "name: is required");
    assert_int_equal(write1(f, CRM_OP_UPDATE, "contacts", "c_1", "{\"id\": \"c_2\"}", 0, NULL, &err),
                     CRM_BAD_REQUEST);
    assert_int_equal(write1(f, CRM_OP_UPDATE, "contacts", "c_404", "{\"points\": 1}", 0, NULL, &err),
                     CRM_NOT_FOUND);
    assert_string_equal(err.msg, "contacts/c_404 does not exist");
}

static void delete_removes_and_reports_rev(void **state)
{
    fixture *f = *state;
    crm_value *r;
    crm_err err;
    int rc;
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", "c_1", "{\"name\": \"Ann\"}", 0, NULL, NULL),
                     CRM_OK);
    assert_int_equal(write1(f, CRM_OP_DELETE, "contacts", "c_1", NULL, 5, NULL, &err), CRM_CONFLICT);
    assert_int_equal(write1(f, CRM_OP_DELETE, "contacts", "c_1", NULL, 1, &r, NULL), CRM_OK);
    assert_string_equal(crm_map_str(r, "id", ""), "c_1");
    assert_int_equal(crm_map_int(r, "_rev", 0), 2);
    crm_value_free(r);
    assert_null(get(f, "contacts", "c_1", &rc));
    assert_int_equal(rc, CRM_NOT_FOUND);
    assert_int_equal(write1(f, CRM_OP_DELETE, "contacts", "c_1", NULL, 0, NULL, &err), CRM_NOT_FOUND);
}

/* ---- indexes ---- */

static void indexes_follow_create_update_delete(void **state)
{
    fixture *f = *state;
    char ids[4096];
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", "a", "{\"name\": \"A\", \"city\": \"Oslo\", \"points\": 10}", 0, NULL, NULL), CRM_OK);
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", "b", "{\"name\": \"B\", \"city\": \"Lima\", \"points\": 30}", 0, NULL, NULL), CRM_OK);
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", "c", "{\"name\": \"C\", \"city\": \"Oslo\", \"points\": 20}", 0, NULL, NULL), CRM_OK);
    query_ids(f, "{\"city\": \"Oslo\"}", NULL, ids, sizeof ids);
    assert_string_equal(ids, "a,c");
    query_ids(f, NULL, "points", ids, sizeof ids);
    assert_string_equal(ids, "a,c,b");
    assert_int_equal(write1(f, CRM_OP_UPDATE, "contacts", "a", "{\"city\": \"Lima\", \"points\": 40}", 0, NULL, NULL), CRM_OK);
    query_ids(f, "{\"city\": \"Oslo\"}", NULL, ids, sizeof ids);
    assert_string_equal(ids, "c");
    query_ids(f, "{\"city\": \"Lima\"}", "-points", ids, sizeof ids);
    assert_string_equal(ids, "a,b");
    assert_int_equal(write1(f, CRM_OP_UPDATE, "contacts", "c", "{\"city\": null}", 0, NULL, NULL), CRM_OK);
    query_ids(f, "{\"city\": null}", NULL, ids, sizeof ids);
    assert_string_equal(ids, "c");
    assert_int_equal(write1(f, CRM_OP_DELETE, "contacts", "b", NULL, 0, NULL, NULL), CRM_OK);
    query_ids(f, "{\"points\": {\"gte\": 0}}", "points", ids, sizeof ids);
    assert_string_equal(ids, "c,a");
}

static void unique_index_conflicts(void **state)
{
    fixture *f = *state;
    crm_err err;
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", "a", "{\"name\": \"A\", \"email\": \"a@x.org\"}", 0, NULL, NULL), CRM_OK);
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", "b", "{\"name\": \"B\", \"email\": \"a@x.org\"}", 0, NULL, &err), CRM_CONFLICT);
    assert_string_equal(err.msg, "contacts: email \"a@x.org\" is already used by a");
    /* absent values are not unique */
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", "b", "{\"name\": \"B\"}", 0, NULL, NULL), CRM_OK);
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", "c", "{\"name\": \"C\"}", 0, NULL, NULL), CRM_OK);
    assert_int_equal(write1(f, CRM_OP_UPDATE, "contacts", "b", "{\"email\": \"a@x.org\"}", 0, NULL, &err), CRM_CONFLICT);
    /* re-saving one's own value is fine */
    assert_int_equal(write1(f, CRM_OP_UPDATE, "contacts", "a", "{\"email\": \"a@x.org\", \"name\": \"A2\"}", 0, NULL, NULL), CRM_OK);
    /* freed by an update, then taken */
    assert_int_equal(write1(f, CRM_OP_UPDATE, "contacts", "a", "{\"email\": \"new@x.org\"}", 0, NULL, NULL), CRM_OK);
    assert_int_equal(write1(f, CRM_OP_UPDATE, "contacts", "b", "{\"email\": \"a@x.org\"}", 0, NULL, NULL), CRM_OK);
    /* freed by a delete */
    assert_int_equal(write1(f, CRM_OP_DELETE, "contacts", "b", NULL, 0, NULL, NULL), CRM_OK);
    assert_int_equal(write1(f, CRM_OP_UPDATE, "contacts", "c", "{\"email\": \"a@x.org\"}", 0, NULL, NULL), CRM_OK);
    /* long strings: distinct values sharing a 400-byte start stay distinct */
    char rec[1200];
    char big[700];
    memset(big, 'q', 600);
    big[600] = 0;
    snprintf(rec, sizeof rec, "{\"name\": \"L1\", \"email\": \"%s1\"}", big);
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", "l1", rec, 0, NULL, NULL), CRM_OK);
    snprintf(rec, sizeof rec, "{\"name\": \"L2\", \"email\": \"%s2\"}", big);
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", "l2", rec, 0, NULL, NULL), CRM_OK);
    snprintf(rec, sizeof rec, "{\"name\": \"L3\", \"email\": \"%s1\"}", big);
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", "l3", rec, 0, NULL, &err), CRM_CONFLICT);
}

/* A write refused by its second unique index must leave no trace of the
 * first, also now that writes without hooks run without a nested txn. */
static void refused_write_leaves_no_trace(void **state)
{
    fixture *f = *state;
    crm_err err;
    char ids[4096];
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", "a", "{\"name\": \"A\", \"email\": \"a@x\", \"badge\": \"B1\"}", 0, NULL, NULL), CRM_OK);
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", "b", "{\"name\": \"B\", \"badge\": \"B2\", \"city\": \"Oslo\"}", 0, NULL, NULL), CRM_OK);
    crm_value *p1 = J("{\"email\": \"new@x\", \"badge\": \"B1\", \"city\": \"Rome\"}");
    crm_value *p2 = J("{\"name\": \"C\", \"email\": \"c@x\"}");
    crm_write w[2] = {{.op = CRM_OP_UPDATE, .coll = "contacts", .id = "b", .data = p1},
                      {.op = CRM_OP_CREATE, .coll = "contacts", .id = "c", .data = p2}};
    crm_unit u[2] = {{.writes = &w[0], .n = 1}, {.writes = &w[1], .n = 1}};
    assert_int_equal(crm_store_apply(f->store, u, 2, &err), CRM_OK);
    assert_int_equal(u[0].rc, CRM_CONFLICT);
    assert_int_equal(u[1].rc, CRM_OK);
    query_ids(f, "{\"email\": \"new@x\"}", NULL, ids, sizeof ids);
    assert_string_equal(ids, "");
    query_ids(f, "{\"city\": \"Oslo\"}", NULL, ids, sizeof ids);
    assert_string_equal(ids, "b");
    query_ids(f, "{\"email\": \"c@x\"}", NULL, ids, sizeof ids);
    assert_string_equal(ids, "c");
    assert_int_equal(crm_store_verify(f->store, &err), CRM_OK);
    crm_write_clear(&w[0]);
    crm_write_clear(&w[1]);
    crm_value_free(p1);
    crm_value_free(p2);
}

static void refs_must_exist(void **state)
{
    fixture *f = *state;
    crm_err err;
    crm_value *r;
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", "a", "{\"name\": \"A\", \"company\": \"co_1\"}", 0, NULL, &err), CRM_VALIDATION);
    assert_string_equal(err.msg, "company: companies/co_1 does not exist");
    assert_int_equal(write1(f, CRM_OP_CREATE, "companies", "co_1", "{\"name\": \"Acme\"}", 0, NULL, NULL), CRM_OK);
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", "a", "{\"name\": \"A\", \"company\": \"co_1\"}", 0, &r, NULL), CRM_OK);
    assert_string_equal(crm_map_str(r, "company", ""), "co_1");
    crm_value_free(r);
}

static void validation_details_name_fields(void **state)
{
    fixture *f = *state;
    crm_value *data = J("{\"name\": 5, \"stage\": \"vip\", \"bogus\": 1}");
    crm_write w = {.op = CRM_OP_CREATE, .coll = "contacts", .data = data};
    assert_int_equal(crm_store_write1(f->store, &w), CRM_VALIDATION);
    assert_non_null(w.details);
    const crm_value *fields = crm_map_get(w.details, "fields");
    assert_non_null(fields);
    assert_string_equal(crm_map_str(fields, "name", ""), "must be a string");
    assert_non_null(crm_map_get(fields, "stage"));
    assert_string_equal(crm_map_str(fields, "bogus", ""), "unknown field");
    crm_write_clear(&w);
    crm_value_free(data);
}

/* ---- group commit ---- */

static void failing_unit_does_not_spoil_the_batch(void **state)
{
    fixture *f = *state;
    crm_err err;
    crm_value *good1 = J("{\"name\": \"G1\", \"email\": \"g@x\"}");
    crm_value *dup = J("{\"name\": \"D\", \"email\": \"g@x\"}");
    crm_value *bad = J("{\"points\": 3}");
    crm_value *good2 = J("{\"name\": \"G2\"}");
    crm_write w[4] = {
        {.op = CRM_OP_CREATE, .coll = "contacts", .id = "g1", .data = good1},
        {.op = CRM_OP_CREATE, .coll = "contacts", .id = "d", .data = dup},
        {.op = CRM_OP_CREATE, .coll = "contacts", .id = "bad", .data = bad},
        {.op = CRM_OP_CREATE, .coll = "contacts", .id = "g2", .data = good2},
    };
    crm_unit u[4] = {0};
    for (int i = 0; i < 4; i++) {
        u[i].writes = &w[i];
        u[i].n = 1;
    }
    uint64_t seq0 = crm_store_last_seq(f->store);
    assert_int_equal(crm_store_apply(f->store, u, 4, &err), CRM_OK);
    assert_int_equal(u[0].rc, CRM_OK);
    assert_int_equal(u[1].rc, CRM_CONFLICT);
    assert_int_equal(u[2].rc, CRM_VALIDATION);
    assert_int_equal(u[3].rc, CRM_OK);
    assert_int_equal(w[0].seq, seq0 + 1);
    assert_int_equal(w[3].seq, seq0 + 2); /* failures take no seq */
    assert_int_equal(crm_store_last_seq(f->store), seq0 + 2);
    int rc;
    crm_value_free(get(f, "contacts", "g1", &rc));
    assert_int_equal(rc, CRM_OK);
    assert_null(get(f, "contacts", "d", &rc));
    crm_value_free(get(f, "contacts", "g2", &rc));
    assert_int_equal(rc, CRM_OK);
    for (int i = 0; i < 4; i++)
        crm_write_clear(&w[i]);
    crm_value_free(good1);
    crm_value_free(dup);
    crm_value_free(bad);
    crm_value_free(good2);
}

static void tx_unit_is_all_or_nothing(void **state)
{
    fixture *f = *state;
    crm_err err;
    int rc;
    crm_value *a = J("{\"name\": \"A\", \"email\": \"same@x\"}");
    crm_value *b = J("{\"name\": \"B\", \"email\": \"same@x\"}");
    crm_value *c = J("{\"name\": \"C\"}");
    crm_write w[3] = {
        {.op = CRM_OP_CREATE, .coll = "contacts", .id = "ta", .data = a},
        {.op = CRM_OP_CREATE, .coll = "contacts", .id = "tb", .data = b}, /* conflicts with ta */
        {.op = CRM_OP_CREATE, .coll = "contacts", .id = "tc", .data = c},
    };
    crm_unit u[2] = {{.writes = &w[0], .n = 2}, {.writes = &w[2], .n = 1}};
    assert_int_equal(crm_store_apply(f->store, u, 2, &err), CRM_OK);
    assert_int_equal(u[0].rc, CRM_CONFLICT);
    assert_non_null(strstr(u[0].err.msg, "op 1:"));
    assert_null(w[0].result); /* its first write was undone with it */
    assert_int_equal(u[1].rc, CRM_OK);
    assert_null(get(f, "contacts", "ta", &rc));
    assert_int_equal(rc, CRM_NOT_FOUND);
    crm_value_free(get(f, "contacts", "tc", &rc));
    assert_int_equal(rc, CRM_OK);
    for (int i = 0; i < 3; i++)
        crm_write_clear(&w[i]);
    crm_value_free(a);
    crm_value_free(b);
    crm_value_free(c);
}

/* ---- before-hooks ---- */

typedef struct hookstate {
    int calls;
    int mode; /* 0 change record, 1 reject, 2 write a company, 3 recurse forever */
} hookstate;

static int hook(void *ud, crm_txn *t, crm_change *ch, crm_err *err)
{
    hookstate *h = ud;
    h->calls++;
    if (h->mode == 0 && ch->record && strcmp(ch->coll, "contacts") == 0)
        return crm_map_set(ch->record, "city", crm_value_cstr("Hooked")) ? CRM_INTERNAL : CRM_OK;
    if (h->mode == 1 && strcmp(ch->coll, "contacts") == 0)
        return crm_err_set(err, CRM_REJECTED, "no contacts today");
    if ((h->mode == 2 && strcmp(ch->coll, "contacts") == 0) || h->mode == 3) {
        crm_value *rec = crm_value_map();
        crm_map_set(rec, "name", crm_value_cstr("made by hook"));
        crm_write w = {.op = CRM_OP_CREATE, .coll = "companies", .data = rec};
        int rc = crm_txn_write(t, &w);
        if (rc != CRM_OK)
            *err = w.err;
        crm_write_clear(&w);
        crm_value_free(rec);
        return rc;
    }
    return CRM_OK;
}

static void before_hooks_change_reject_and_write(void **state)
{
    fixture *f = *state;
    hookstate h = {0, 0};
    crm_value *r;
    crm_err err;
    uint64_t n;
    crm_txn *t;
    crm_store_set_before(f->store, hook, &h);

    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", "h1", "{\"name\": \"A\"}", 0, &r, NULL), CRM_OK);
    assert_string_equal(crm_map_str(r, "city", ""), "Hooked");
    crm_value_free(r);

    h.mode = 1;
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", "h2", "{\"name\": \"B\"}", 0, NULL, &err), CRM_REJECTED);
    assert_string_equal(err.msg, "no contacts today");

    /* a hook's write belongs to the same unit: undone when the unit fails */
    h.mode = 2;
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", "h3", "{\"name\": \"C\"}", 0, NULL, NULL), CRM_OK);
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", "h3", "{\"name\": \"C\"}", 0, NULL, &err), CRM_CONFLICT);
    assert_int_equal(crm_store_begin_read(f->store, &t, &err), CRM_OK);
    assert_int_equal(crm_txn_count(t, "companies", &n, &err), CRM_OK);
    crm_txn_end(t);
    assert_int_equal(n, 1);

    /* hooks that trigger hooks are cut off at depth 16 */
    h.mode = 3;
    h.calls = 0;
    assert_int_equal(write1(f, CRM_OP_CREATE, "companies", NULL, "{\"name\": \"loop\"}", 0, NULL, &err),
                     CRM_SCRIPT_ERROR);
    assert_non_null(strstr(err.msg, "depth 16"));
    assert_true(h.calls >= 16 && h.calls <= 18);
    assert_int_equal(crm_store_begin_read(f->store, &t, &err), CRM_OK);
    assert_int_equal(crm_txn_count(t, "companies", &n, &err), CRM_OK);
    crm_txn_end(t);
    assert_int_equal(n, 1); /* the whole chain was undone */
    crm_store_set_before(f->store, NULL, NULL);
}

/* ---- limits of the map ---- */

static void full_map_grows_then_refuses_cleanly(void **state)
{
    fixture *f = *state;
    crm_err err;
    char rec[4200], blob[4001];
    int acked = 0, refused = 0;
    memset(blob, 'z', 4000);
    blob[4000] = 0;
    crm_store_close(f->store);
    crm_tmpdir_remove(f->dir);
    f->dir = crm_tmpdir_make("full");
    f->opts.map_size = 256 << 10;
    f->opts.map_max = 2 << 20;
    open_store(f);
    size_t start = crm_store_map_size(f->store);
    for (int i = 0; i < 2000 && refused < 5; i++) {
        char id[32];
        snprintf(id, sizeof id, "big%d", i);
        snprintf(rec, sizeof rec, "{\"name\": \"n%d\", \"blob\": \"%s\"}", i, blob);
        int rc = write1(f, CRM_OP_CREATE, "contacts", id, rec, 0, NULL, &err);
        if (rc == CRM_OK) {
            assert_int_equal(refused, 0); /* no success after the ceiling */
            acked++;
        } else {
            assert_int_equal(rc, CRM_UNAVAILABLE);
            assert_non_null(strstr(err.msg, "full"));
            refused++;
        }
    }
    assert_true(refused > 0);
    assert_true(crm_store_map_size(f->store) > start);
    assert_true(crm_store_map_size(f->store) <= (2u << 20));
    /* everything acknowledged is readable and consistent */
    for (int i = 0; i < acked; i++) {
        char id[32];
        int rc;
        snprintf(id, sizeof id, "big%d", i);
        crm_value_free(get(f, "contacts", id, &rc));
        assert_int_equal(rc, CRM_OK);
    }
    assert_int_equal(crm_store_verify(f->store, &err), CRM_OK);
    /* deletes still work at the ceiling (they free pages) and a bigger ceiling resumes writes */
    crm_store_close(f->store);
    f->opts.map_max = 16 << 20;
    open_store(f);
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", "after", "{\"name\": \"after\"}", 0, NULL, NULL), CRM_OK);
    fprintf(stderr, "# %d acked before the 2 MiB ceiling, %d refused\n", acked, refused);
}

static int count_lines(const char *msg, void *ctx)
{
    (void)msg;
    (*(int *)ctx)++;
    return 0;
}

/* LMDB resets its reader table when the first process opens an environment,
 * so a stale slot only survives while another live process holds the
 * environment open (a running crmd, say).  Child "holder" keeps it open and
 * reports the reader table; child "reader" takes a read txn and is killed;
 * then our open must clear the dead slot. */
static void stale_readers_are_cleared_at_open(void **state)
{
    fixture *f = *state;
    int to_holder[2], from_holder[2], from_reader[2];
    char c;
    int lines;
    pid_t holder, reader;
    crm_store_close(f->store);
    f->store = NULL;
    assert_int_equal(pipe(to_holder), 0);
    assert_int_equal(pipe(from_holder), 0);
    assert_int_equal(pipe(from_reader), 0);
    holder = fork();
    if (holder == 0) {
        MDB_env *env;
        int mrc;
        close(to_holder[1]); /* so closing ours ends the loop below */
        if ((mrc = mdb_env_create(&env)) || (mrc = mdb_env_set_maxdbs(env, 64)) ||
            (mrc = mdb_env_open(env, f->dir, MDB_NOTLS, 0600))) {
            fprintf(stderr, "holder child: %s\n", mdb_strerror(mrc));
            _exit(1);
        }
        (void)!write(from_holder[1], "o", 1);
        while (read(to_holder[0], &c, 1) == 1) {
            int n = 0;
            mdb_reader_list(env, count_lines, &n);
            (void)!write(from_holder[1], &n, sizeof n);
        }
        _exit(0);
    }
    assert_int_equal(read(from_holder[0], &c, 1), 1);
    reader = fork();
    if (reader == 0) {
        crm_store *s;
        crm_txn *t;
        crm_err err;
        if (crm_store_open(f->dir, f->schema, &f->opts, &s, &err) != CRM_OK ||
            crm_store_begin_read(s, &t, &err) != CRM_OK) {
            fprintf(stderr, "reader child: %s\n", err.msg);
            _exit(1);
        }
        (void)!write(from_reader[1], "r", 1);
        pause(); /* killed while holding the read txn */
        _exit(0);
    }
    assert_int_equal(read(from_reader[0], &c, 1), 1);
    kill(reader, SIGKILL);
    waitpid(reader, NULL, 0);
    assert_int_equal(write(to_holder[1], "?", 1), 1);
    assert_int_equal(read(from_holder[0], &lines, sizeof lines), sizeof lines);
    assert_int_equal(lines, 2); /* a header line and the dead reader */
    open_store(f);              /* clears it */
    assert_int_equal(write(to_holder[1], "?", 1), 1);
    assert_int_equal(read(from_holder[0], &lines, sizeof lines), sizeof lines);
    assert_int_equal(lines, 1); /* "(no active readers)" */
    close(to_holder[1]);
    waitpid(holder, NULL, 0);
    close(to_holder[0]);
    close(from_holder[0]);
    close(from_holder[1]);
    close(from_reader[0]);
    close(from_reader[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(create_fills_system_fields_and_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(server_ids_sort_by_creation, setup, teardown),
        cmocka_unit_test_setup_teardown(client_ids_are_checked, setup, teardown),
        cmocka_unit_test_setup_teardown(update_patches_and_bumps_rev, setup, teardown),
        cmocka_unit_test_setup_teardown(delete_removes_and_reports_rev, setup, teardown),
        cmocka_unit_test_setup_teardown(indexes_follow_create_update_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(unique_index_conflicts, setup, teardown),
        cmocka_unit_test_setup_teardown(refs_must_exist, setup, teardown),
        cmocka_unit_test_setup_teardown(refused_write_leaves_no_trace, setup, teardown),
        cmocka_unit_test_setup_teardown(validation_details_name_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(failing_unit_does_not_spoil_the_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(tx_unit_is_all_or_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(before_hooks_change_reject_and_write, setup, teardown),
        cmocka_unit_test_setup_teardown(full_map_grows_then_refuses_cleanly, setup, teardown),
        cmocka_unit_test_setup_teardown(stale_readers_are_cleared_at_open, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
