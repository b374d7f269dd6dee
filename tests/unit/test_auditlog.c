/*
 * test_auditlog -- the audit trail, erasure and compaction at the store
 * level (kernel/audit.c, crm_txn_erase, crm_feed_scrub, crm_store_compact):
 * real LMDB in a temp folder.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "audit.h"
#include "codec.h"
#include "schema.h"
#include "store.h"
#include "testutil.h"
#include "tmpdir.h"

static const char *const CONTACTS =
    "{\"collection\": \"contacts\", \"id_prefix\": \"c_\", \"fields\": {"
    " \"name\":  {\"type\": \"string\", \"required\": true, \"personal\": true},"
    " \"email\": {\"type\": \"string\", \"index\": \"unique\", \"personal\": true},"
    " \"city\":  {\"type\": \"string\", \"index\": true}}}";

typedef struct fixture {
    char *dir, *sdir;
    crm_schema *schema;
    crm_store *store;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    crm_store_opts o;
    crm_err err;
    f->sdir = crm_tmpdir_make("auschema");
    crm_tmpdir_write(f->sdir, "contacts.json", CONTACTS);
    assert_int_equal(crm_schema_load_dir(f->sdir, &f->schema, &err), CRM_OK);
    f->dir = crm_tmpdir_make("austore");
    crm_store_opts_default(&o);
    o.no_sync = 1;
    assert_int_equal(crm_store_open(f->dir, f->schema, &o, &f->store, &err), CRM_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    crm_err err;
    if (crm_store_verify(f->store, &err) != CRM_OK)
        fail_msg("verify: %s", err.msg);
    crm_store_close(f->store);
    crm_schema_free(f->schema);
    crm_tmpdir_remove(f->dir);
    crm_tmpdir_remove(f->sdir);
    free(f);
    return 0;
}

/* Every entry, oldest first (caller frees). */
static crm_value *entries(fixture *f)
{
    crm_txn *t;
    crm_err err;
    crm_value *e = NULL;
    uint64_t next = 0;
    crm_audit_filter flt = {.limit = CRM_AUDIT_MAX_LIMIT};
    assert_int_equal(crm_store_begin_read(f->store, &t, &err), CRM_OK);
    assert_int_equal(crm_audit_query(t, &flt, &e, &next, &err), CRM_OK);
    assert_int_equal(next, 0);
    crm_txn_end(t);
    return e;
}

static void chain_intact(fixture *f, uint64_t n)
{
    crm_txn *t;
    crm_err err;
    crm_audit_report r;
    assert_int_equal(crm_store_begin_read(f->store, &t, &err), CRM_OK);
    assert_int_equal(crm_audit_verify(t, &r, &err), CRM_OK);
    assert_int_equal(r.entries, n);
    crm_txn_end(t);
}

static int audit_then_fail(void *ud, crm_txn *t, crm_err *err)
{
    crm_audit_rec a = {"privacy.export", "contacts", "c_1", 0, 0, NULL, NULL};
    (void)ud;
    assert_int_equal(crm_txn_audit(t, &a, err), CRM_OK);
    return crm_err_set(err, CRM_REJECTED, "changed my mind");
}

static int method_writes(void *ud, crm_txn *t, crm_err *err)
{
    crm_value *rec = crm_test_json("{\"name\": \"Made by a method\"}");
    crm_write w = {.op = CRM_OP_CREATE, .coll = "contacts", .id = "c_m", .data = rec};
    int rc = crm_txn_write(t, &w);
    (void)ud;
    if (rc != CRM_OK)
        *err = w.err;
    crm_write_clear(&w);
    crm_value_free(rec);
    return rc;
}

/* A method's writes (a function unit with a caller) are marked as such. */
static void test_method_writes_marked(void **state)
{
    fixture *f = *state;
    crm_unit u = {.fn = method_writes, .user = "token:cccccccccccc", .role = "crm_operator"};
    crm_err err;
    crm_value *e;
    assert_int_equal(crm_store_apply(f->store, &u, 1, &err), CRM_OK);
    assert_int_equal(u.rc, CRM_OK);
    e = entries(f);
    assert_int_equal(e->u.arr.n, 1);
    assert_string_equal(crm_map_str(e->u.arr.items[0], "user", ""), "token:cccccccccccc");
    assert_string_equal(crm_map_str(e->u.arr.items[0], "role", ""), "crm_operator");
    assert_string_equal(crm_map_str(e->u.arr.items[0], "via", ""), "method");
    crm_value_free(e);
    chain_intact(f, 1);
}

/* An entry exists exactly for what committed: a refused write, a failed tx
 * and a failing function unit leave none, in the same batch as one that
 * stays; the entry names the unit's user and role. */
static void test_entries_only_for_what_committed(void **state)
{
    fixture *f = *state;
    crm_value *ok = crm_test_json("{\"name\": \"Ann\", \"email\": \"a@x\"}"),
              *ok2 = crm_test_json("{\"name\": \"Bo\"}"),
              *bad = crm_test_json("{\"email\": \"b@x\"}"), *patch = crm_test_json("{\"city\": \"Oslo\"}");
    crm_write w[4] = {{.op = CRM_OP_CREATE, .coll = "contacts", .id = "c_1", .data = ok},
                      {.op = CRM_OP_CREATE, .coll = "contacts", .data = bad},
                      {.op = CRM_OP_CREATE, .coll = "contacts", .id = "c_2", .data = ok2},
                      {.op = CRM_OP_UPDATE, .coll = "contacts", .id = "c_404", .data = patch}};
    crm_unit u[4] = {{.writes = &w[0], .n = 1, .user = "token:aaaaaaaaaaaa", .role = "admin"},
                     {.writes = &w[1], .n = 1, .user = "token:bbbbbbbbbbbb", .role = "sales"},
                     {.writes = &w[2], .n = 2, .user = "token:bbbbbbbbbbbb", .role = "sales"},
                     {.fn = audit_then_fail, .user = "token:aaaaaaaaaaaa", .role = "admin"}};
    crm_err err;
    crm_value *e;
    assert_int_equal(crm_store_apply(f->store, u, 4, &err), CRM_OK);
    assert_int_equal(u[0].rc, CRM_OK);
    assert_int_equal(u[1].rc, CRM_VALIDATION);
    if (u[2].rc != CRM_NOT_FOUND)
        fail_msg("tx: %s %s", crm_code_name(u[2].rc), u[2].err.msg);
    assert_int_equal(u[3].rc, CRM_REJECTED);
    e = entries(f);
    assert_int_equal(e->u.arr.n, 1);
    assert_string_equal(crm_map_str(e->u.arr.items[0], "action", ""), "create");
    assert_string_equal(crm_map_str(e->u.arr.items[0], "id", ""), "c_1");
    assert_string_equal(crm_map_str(e->u.arr.items[0], "user", ""), "token:aaaaaaaaaaaa");
    assert_string_equal(crm_map_str(e->u.arr.items[0], "role", ""), "admin");
    assert_null(crm_map_get(e->u.arr.items[0], "via"));
    assert_int_equal(crm_map_int(e->u.arr.items[0], "feed_seq", 0), 1);
    crm_value_free(e);
    for (int i = 0; i < 4; i++)
        crm_write_clear(&w[i]);
    /* a write without a unit user is the system's; an update names its fields */
    assert_int_equal(crm_test_write(f->store, CRM_OP_UPDATE, "contacts", "c_1",
                                    "{\"city\": \"Oslo\", \"email\": \"a2@x\"}", NULL, &err),
                     CRM_OK);
    e = entries(f);
    assert_int_equal(e->u.arr.n, 2);
    assert_string_equal(crm_map_str(e->u.arr.items[1], "user", ""), "system");
    assert_string_equal(crm_map_str(e->u.arr.items[1], "via", ""), "system");
    {
        const crm_value *fl = crm_map_get(e->u.arr.items[1], "fields");
        assert_non_null(fl);
        assert_int_equal(fl->u.arr.n, 2);
    }
    crm_value_free(e);
    chain_intact(f, 2);
    crm_value_free(ok);
    crm_value_free(ok2);
    crm_value_free(bad);
    crm_value_free(patch);
}

/* The chain goes on across a close and reopen (its head is in the store). */
static void test_chain_survives_reopen(void **state)
{
    fixture *f = *state;
    crm_store_opts o;
    crm_err err;
    assert_int_equal(crm_test_write(f->store, CRM_OP_CREATE, "contacts", "c_1", "{\"name\": \"A\"}", NULL,
                                    &err), CRM_OK);
    crm_store_close(f->store);
    crm_store_opts_default(&o);
    o.no_sync = 1;
    assert_int_equal(crm_store_open(f->dir, f->schema, &o, &f->store, &err), CRM_OK);
    assert_int_equal(crm_test_write(f->store, CRM_OP_DELETE, "contacts", "c_1", NULL, NULL, &err),
                     CRM_OK);
    chain_intact(f, 2);
}

static int erase_c1(void *ud, crm_txn *t, crm_err *err)
{
    size_t *nf = ud;
    const char *colls[] = {"contacts"}, *ids[] = {"c_1"};
    uint64_t rewritten = 0;
    int rc = crm_txn_erase(t, "contacts", "c_1", nf, err);
    if (rc == CRM_OK)
        rc = crm_feed_scrub(t, colls, ids, 1, &rewritten, err);
    if (rc == CRM_OK && *nf > 0 && rewritten != 2) /* the create and the update (the erase's
                                                     * own entry is clean already) */
        rc = crm_err_set(err, CRM_INTERNAL, "%llu feed entries rewritten, not 2",
                         (unsigned long long)rewritten);
    return rc;
}

static int feed_has(void *ud, const crm_feed_entry *e)
{
    int *found = ud;
    char *a = e->record ? crm_json_encode(e->record, NULL) : NULL;
    char *b = e->prev ? crm_json_encode(e->prev, NULL) : NULL;
    if ((a && strstr(a, "Secret")) || (b && strstr(b, "Secret")))
        (*found)++;
    free(a);
    free(b);
    return 0;
}

/* Erasure: personal fields go from the record and every feed entry; the
 * rest stays; the audit names the fields; compaction leaves a working
 * store, refused while a read transaction is open. */
static void test_erase_scrub_compact(void **state)
{
    fixture *f = *state;
    crm_err err;
    crm_value *rec = NULL, *e;
    crm_txn *t;
    size_t nf = 0;
    int found = 0;
    uint64_t seq;
    crm_unit u = {.fn = erase_c1, .fn_ud = &nf, .user = "token:aaaaaaaaaaaa", .role = "admin"};
    assert_int_equal(crm_test_write(f->store, CRM_OP_CREATE, "contacts", "c_1",
                                    "{\"name\": \"Secret Sam\", \"email\": \"Secret@x\", \"city\": \"Rome\"}",
                                    NULL, &err), CRM_OK);
    assert_int_equal(crm_test_write(f->store, CRM_OP_UPDATE, "contacts", "c_1",
                                    "{\"city\": \"Milan\"}", NULL, &err), CRM_OK);
    assert_int_equal(crm_test_write(f->store, CRM_OP_CREATE, "contacts", "c_2",
                                    "{\"name\": \"Secret Other\"}", NULL, &err), CRM_OK);
    assert_int_equal(crm_store_apply(f->store, &u, 1, &err), CRM_OK);
    if (u.rc != CRM_OK)
        fail_msg("erase: %s", u.err.msg);
    assert_int_equal(nf, 2);
    assert_int_equal(crm_store_begin_read(f->store, &t, &err), CRM_OK);
    assert_int_equal(crm_txn_get(t, "contacts", "c_1", &rec, &err), CRM_OK);
    assert_string_equal(crm_map_str(rec, "name", ""), "[erased]");
    assert_null(crm_map_get(rec, "email"));
    assert_string_equal(crm_map_str(rec, "city", ""), "Milan");
    crm_value_free(rec);
    /* c_2's own entry still holds its name: only c_1's were scrubbed */
    assert_int_equal(crm_feed_read(t, 0, 0, feed_has, &found, NULL, &err), CRM_OK);
    assert_int_equal(found, 1);
    /* compaction needs no reader of ours */
    assert_int_equal(crm_store_compact(f->store, &err), CRM_CONFLICT);
    crm_txn_end(t);
    seq = crm_store_last_seq(f->store);
    assert_int_equal(crm_store_compact(f->store, &err), CRM_OK);
    assert_int_equal(crm_store_last_seq(f->store), seq);
    assert_int_equal(crm_test_write(f->store, CRM_OP_UPDATE, "contacts", "c_2", "{\"city\": \"Bari\"}",
                                    NULL, &err), CRM_OK);
    e = entries(f);
    {
        const crm_value *er = NULL;
        for (size_t i = 0; i < e->u.arr.n; i++)
            if (strcmp(crm_map_str(e->u.arr.items[i], "action", ""), "erase") == 0)
                er = e->u.arr.items[i];
        assert_non_null(er);
        assert_string_equal(crm_map_str(er, "user", ""), "token:aaaaaaaaaaaa");
        assert_int_equal(crm_map_get(er, "fields")->u.arr.n, 2);
    }
    chain_intact(f, e->u.arr.n);
    crm_value_free(e);
    /* nothing left to erase: no write, no entry */
    nf = 9;
    {
        crm_audit_report r;
        crm_unit u2 = {.fn = erase_c1, .fn_ud = &nf};
        assert_int_equal(crm_store_apply(f->store, &u2, 1, &err), CRM_OK);
        assert_int_equal(u2.rc, CRM_OK);
        assert_int_equal(nf, 0);
        assert_int_equal(crm_store_begin_read(f->store, &t, &err), CRM_OK);
        assert_int_equal(crm_audit_verify(t, &r, &err), CRM_OK);
        crm_txn_end(t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_entries_only_for_what_committed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chain_survives_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_method_writes_marked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_erase_scrub_compact, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
