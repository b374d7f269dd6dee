/*
 * test_privacy -- export and erasure of one contact end to end (issue 7,
 * reliability plan R20), on a real crmd with the bundled schemas and
 * scripts (so hooks write records of their own about the contact).
 *
 * A contact whose name, email and phone hold a unique marker, orders and
 * tickets referring to it whose personal fields (notes, subject) hold it
 * too, and updates, so the marker sits in many change-feed entries (record
 * and prev).  Then:
 *   - privacy.export returns the contact and every record whose ref field
 *     points at it: checked against a query per ref field of every schema;
 *   - privacy.erase with "compact": false: the marker is gone from every
 *     record and every feed entry the server hands out, yet still in the
 *     data file (LMDB keeps freed pages): the baseline count is printed;
 *   - privacy.erase again (compaction on): 0 hits in every file of the data
 *     folder, and 0 in a copy made afterwards with `mdb_copy -c`;
 *   - a subscription opened before the compaction still gets pushes after
 *     it, and the audit trail names both ops and the admin token.
 * Figures (hits, export size and time) are printed for docs/reliability.md.
 */
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "codec.h"
#include "schema.h"
#include "store.h"
#include "testutil.h"
#include "tmpdir.h"
#include "wsclient.h"

#define T 20000 /* ms per request: erasure compacts, the machine is shared */
#define EXTRA_ORDERS 2000 /* CRM_PRIVACY_ORDERS overrides (a larger export, by hand) */

static char marker[32];
static size_t hits_total;

/* Occurrences of marker in one file. */
static size_t hits_in(const char *path)
{
    return crm_test_file_hits(path, marker);
}

static int walk_cb(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (type == FTW_F)
        hits_total += hits_in(path);
    return 0;
}

/* Occurrences of the marker in every file below dir. */
static size_t hits_under(const char *dir)
{
    hits_total = 0;
    nftw(dir, walk_cb, 16, FTW_PHYS);
    return hits_total;
}

static int has_marker(const crm_value *v)
{
    char *json = v ? crm_json_encode(v, NULL) : NULL;
    int found = json && strstr(json, marker) != NULL;
    free(json);
    return found;
}

static crm_value *ok_result(crm_value *reply)
{
    assert_non_null(reply);
    if (strcmp(ws_code(reply), "OK") != 0)
        fail_msg("%s: %s", ws_code(reply), ws_message(reply));
    return crm_map_get(reply, "result");
}

/* ids in an array of records */
static int has_id(const crm_value *arr, const char *id)
{
    for (size_t i = 0; arr && arr->type == CRM_T_ARR && i < arr->u.arr.n; i++)
        if (strcmp(crm_map_str(arr->u.arr.items[i], "id", ""), id) == 0)
            return 1;
    return 0;
}

static void test_export_erase(void **state)
{
    crmd_proc p;
    ws_client c, sub;
    crm_schema *sch;
    crm_err err;
    char *token, cid[160], other[160], oid[3][160], tid[2][160], cmd[4400], backup[2048];
    crm_value *r, *res, *pushes;
    size_t base_hits, before_hits, after_hits, backup_hits, expect_related = 0;
    double t0, export_s;
    (void)state;

    snprintf(marker, sizeof marker, "zqm%08x%04x", (unsigned)getpid() * 2654435761u,
             (unsigned)(crm_test_now_s() * 1000) & 0xffff);
    assert_int_equal(crmd_start_with(&p, NULL, "--scripts %s", getenv("CRM_SCRIPTS")), 0);
    assert_non_null(token = crmd_token(&p, "admin"));
    assert_int_equal(crm_schema_load_dir(getenv("CRM_SCHEMAS"), &sch, &err), CRM_OK);
    assert_int_equal(ws_connect(&c, p.port, NULL, NULL, NULL), 0);
    assert_int_equal(ws_auth(&c, token, T), 0);
    assert_int_equal(ws_connect(&sub, p.port, NULL, NULL, NULL), 0);
    assert_int_equal(ws_auth(&sub, token, T), 0);

    /* the subject, and a bystander who must keep every field */
    r = ws_request(&c, T, NULL,
                   "{\"op\":\"create\",\"collection\":\"contacts\",\"record\":{\"name\":\"Erin %s\","
                   "\"email\":\"%s@example.com\",\"phone\":\"+49 %s\",\"street\":\"%s street 1\","
                   "\"city\":\"Berlin\"}}",
                   marker, marker, marker, marker);
    snprintf(cid, sizeof cid, "%s", crm_map_str(ok_result(r), "id", ""));
    crm_value_free(r);
    r = ws_request(&c, T, NULL,
                   "{\"op\":\"create\",\"collection\":\"contacts\",\"record\":{\"name\":\"Bea Bystander\","
                   "\"email\":\"bea@example.com\",\"phone\":\"+49 1\"}}");
    snprintf(other, sizeof other, "%s", crm_map_str(ok_result(r), "id", ""));
    crm_value_free(r);
    for (int i = 0; i < 3; i++) {
        r = ws_request(&c, T, NULL,
                       "{\"op\":\"create\",\"collection\":\"orders\",\"record\":{\"contact\":\"%s\","
                       "\"amount\":%d,\"currency\":\"EUR\",\"ordered_at\":%lld,\"notes\":\"for %s\"}}",
                       cid, 1000 + i, 1700000000000LL + i, marker);
        snprintf(oid[i], sizeof oid[i], "%s", crm_map_str(ok_result(r), "id", ""));
        crm_value_free(r);
    }
    for (int i = 0; i < 2; i++) {
        r = ws_request(&c, T, NULL,
                       "{\"op\":\"create\",\"collection\":\"tickets\",\"record\":{\"contact\":\"%s\","
                       "\"subject\":\"%s cannot log in\",\"description\":\"call %s\"}}",
                       cid, marker, marker);
        snprintf(tid[i], sizeof tid[i], "%s", crm_map_str(ok_result(r), "id", ""));
        crm_value_free(r);
    }
    /* updates: the marker goes into many more feed entries (record and prev) */
    for (int i = 0; i < 6; i++) {
        r = ws_request(&c, T, NULL,
                       "{\"op\":\"update\",\"collection\":\"contacts\",\"id\":\"%s\","
                       "\"patch\":{\"job_title\":\"%s title %d\"}}",
                       cid, marker, i);
        ok_result(r);
        crm_value_free(r);
    }
    r = ws_request(&c, T, NULL,
                   "{\"op\":\"update\",\"collection\":\"tickets\",\"id\":\"%s\","
                   "\"patch\":{\"resolution\":\"%s was told\"}}",
                   tid[0], marker);
    ok_result(r);
    crm_value_free(r);
    /* bulk, so the export has some size to it */
    int extra = getenv("CRM_PRIVACY_ORDERS") ? atoi(getenv("CRM_PRIVACY_ORDERS")) : EXTRA_ORDERS;
    for (int b = 0; b < extra / 100; b++) {
        char ops[100 * 200], *o = ops;
        o += sprintf(o, "{\"op\":\"tx\",\"ops\":[");
        for (int i = 0; i < 100; i++)
            o += sprintf(o, "%s{\"op\":\"create\",\"collection\":\"orders\",\"record\":{\"contact\":"
                            "\"%s\",\"amount\":%d,\"currency\":\"EUR\",\"ordered_at\":%lld}}",
                         i ? "," : "", cid, 10 + i, 1700000100000LL + b * 100 + i);
        sprintf(o, "]}");
        r = ws_request(&c, T, NULL, "%s", ops);
        ok_result(r);
        crm_value_free(r);
    }
    /* let after-hooks (scripts) catch up, then subscribe for later */
    usleep(500 * 1000);
    r = ws_request(&sub, T, NULL, "{\"op\":\"subscribe\",\"collection\":\"contacts\"}");
    ok_result(r);
    crm_value_free(r);

    /* ---- export ---- */
    t0 = crm_test_now_s();
    r = ws_request(&c, T, NULL, "{\"op\":\"privacy.export\",\"collection\":\"contacts\",\"id\":\"%s\"}",
                   cid);
    export_s = crm_test_now_s() - t0;
    res = ok_result(r);
    assert_string_equal(crm_map_str(crm_map_get(res, "record"), "id", ""), cid);
    assert_true(has_marker(crm_map_get(res, "record")));
    {
        const crm_value *rel = crm_map_get(res, "related");
        assert_non_null(rel);
        for (int i = 0; i < 3; i++)
            assert_true(has_id(crm_map_get(rel, "orders"), oid[i]));
        for (int i = 0; i < 2; i++)
            assert_true(has_id(crm_map_get(rel, "tickets"), tid[i]));
        /* complete: every record any ref field of any schema points at cid */
        for (size_t ci = 0; ci < sch->ncolls; ci++) {
            const crm_collection *cc = &sch->colls[ci];
            const crm_value *got = crm_map_get(rel, cc->name);
            size_t want = 0;
            for (size_t fi = 0; fi < cc->nfields; fi++) {
                const crm_field *fd = &cc->fields[fi];
                const char *after = NULL;
                char *after_own = NULL;
                if (fd->type != CRM_F_REF || strcmp(fd->ref_to, "contacts") != 0)
                    continue;
                do {
                    crm_value *q;
                    if (after)
                        q = ws_request(&c, T, NULL,
                                       "{\"op\":\"query\",\"collection\":\"%s\",\"where\":{\"%s\":\"%s\"},"
                                       "\"limit\":1000,\"after\":\"%s\"}",
                                       cc->name, fd->name, cid, after);
                    else
                        q = ws_request(&c, T, NULL,
                                       "{\"op\":\"query\",\"collection\":\"%s\",\"where\":{\"%s\":\"%s\"},"
                                       "\"limit\":1000}",
                                       cc->name, fd->name, cid);
                    const crm_value *qr = ok_result(q), *recs = crm_map_get(qr, "records");
                    for (size_t k = 0; k < recs->u.arr.n; k++) {
                        const char *rid = crm_map_str(recs->u.arr.items[k], "id", "");
                        if (!has_id(got, rid))
                            fail_msg("export misses %s/%s", cc->name, rid);
                        want++;
                    }
                    free(after_own);
                    after_own = crm_map_str(qr, "next", NULL) ? strdup(crm_map_str(qr, "next", "")) : NULL;
                    after = after_own;
                    crm_value_free(q);
                } while (after);
            }
            if (got)
                assert_int_equal(got->u.arr.n, want);
            expect_related += want;
        }
        assert_int_equal(crm_map_int(res, "count", 0), (int64_t)expect_related + 1);
    }
    {
        size_t jl = 0;
        char *json = crm_json_encode(res, &jl);
        printf("R20 export: %lld records (1 contact + %zu referring) in %.3f s, %zu bytes of JSON\n",
               (long long)crm_map_int(res, "count", 0), expect_related, export_s, jl);
        free(json);
    }
    crm_value_free(r);

    /* ---- erase, without compaction: the baseline ---- */
    base_hits = hits_under(p.data);
    t0 = crm_test_now_s();
    r = ws_request(&c, T, NULL,
                   "{\"op\":\"privacy.erase\",\"collection\":\"contacts\",\"id\":\"%s\",\"compact\":false}",
                   cid);
    res = ok_result(r);
    {
        char *json = crm_json_encode(res, NULL);
        printf("R20 erase without compaction, %.3f s: %s\n", crm_test_now_s() - t0, json);
        free(json);
    }
    assert_true(crm_map_int(res, "erased_records", 0) >= 6); /* contact, 3 orders, 2 tickets */
    assert_true(crm_map_int(res, "feed_entries", 0) > 0);
    assert_false(crm_map_get(res, "compacted") && crm_map_get(res, "compacted")->u.b);
    crm_value_free(r);
    before_hits = hits_under(p.data);
    {
        struct stat st;
        char f[2100];
        snprintf(f, sizeof f, "%s/data.mdb", p.data);
        printf("R20 data.mdb before compaction: %lld bytes\n",
               stat(f, &st) == 0 ? (long long)st.st_size : -1LL);
    }

    /* what the server hands out is clean already */
    r = ws_request(&c, T, NULL, "{\"op\":\"get\",\"collection\":\"contacts\",\"id\":\"%s\"}", cid);
    res = ok_result(r);
    assert_false(has_marker(res));
    assert_null(crm_map_get(res, "email"));
    assert_string_equal(crm_map_str(res, "name", ""), "[erased]");
    assert_string_equal(crm_map_str(res, "city", ""), "Berlin"); /* not personal */
    crm_value_free(r);
    r = ws_request(&c, T, NULL, "{\"op\":\"get\",\"collection\":\"contacts\",\"id\":\"%s\"}", other);
    assert_string_equal(crm_map_str(ok_result(r), "email", ""), "bea@example.com");
    crm_value_free(r);
    {
        /* the whole retained feed, replayed */
        ws_client f;
        int close_code = 0;
        size_t n;
        crm_value *m, *replay = crm_value_arr();
        assert_int_equal(ws_connect(&f, p.port, NULL, NULL, NULL), 0);
        assert_int_equal(ws_auth(&f, token, T), 0);
        for (size_t ci = 0; ci < 3; ci++) {
            static const char *const colls[] = {"contacts", "orders", "tickets"};
            r = ws_request(&f, T, replay,
                           "{\"op\":\"subscribe\",\"collection\":\"%s\",\"since\":0}", colls[ci]);
            ok_result(r);
            crm_value_free(r);
        }
        while ((m = ws_recv(&f, 1000, &close_code)))
            crm_arr_push(replay, m);
        n = replay->u.arr.n;
        printf("R20 feed replay after erasure: %zu entries, marker in %d\n", n, has_marker(replay));
        assert_false(has_marker(replay));
        assert_true(n > 10);
        crm_value_free(replay);
        ws_close(&f);
    }

    /* ---- erase again: nothing left to erase, but it compacts ---- */
    t0 = crm_test_now_s();
    r = ws_request(&c, T, NULL, "{\"op\":\"privacy.erase\",\"collection\":\"contacts\",\"id\":\"%s\"}",
                   cid);
    res = ok_result(r);
    assert_int_equal(crm_map_int(res, "erased_records", -1), 0);
    assert_non_null(crm_map_get(res, "compacted"));
    assert_true(crm_map_get(res, "compacted")->u.b);
    crm_value_free(r);
    {
        struct stat st;
        char f[2100];
        snprintf(f, sizeof f, "%s/data.mdb", p.data);
        printf("R20 second erase with compaction: %.3f s; data.mdb now %lld bytes\n",
               crm_test_now_s() - t0, stat(f, &st) == 0 ? (long long)st.st_size : -1LL);
    }
    after_hits = hits_under(p.data);

    /* a copy made after (what a backup holds) */
    {
        char *bdir = crm_tmpdir_make("privacy-backup");
        snprintf(backup, sizeof backup, "%s", bdir);
        snprintf(cmd, sizeof cmd, "mdb_copy -c '%s' '%s'", p.data, backup);
        assert_int_equal(system(cmd), 0);
        backup_hits = hits_under(backup);
        crm_tmpdir_remove(bdir);
    }
    printf("R20 marker hits in the data folder: %zu before erasure, %zu after erasure without "
           "compaction (baseline), %zu after compaction; %zu in an mdb_copy -c backup made after\n",
           base_hits, before_hits, after_hits, backup_hits);
    assert_true(base_hits > 0);
    assert_true(before_hits > 0); /* LMDB keeps freed pages: why erasure compacts */
    assert_int_equal(after_hits, 0);
    assert_int_equal(backup_hits, 0);

    /* the server serves on after the swap: reads, writes, and a
     * subscription opened before it */
    pushes = crm_value_arr();
    r = ws_request(&c, T, NULL,
                   "{\"op\":\"update\",\"collection\":\"contacts\",\"id\":\"%s\",\"patch\":{\"city\":\"Bonn\"}}",
                   other);
    ok_result(r);
    crm_value_free(r);
    {
        int got = 0, close_code = 0;
        crm_value *m;
        double until = crm_test_now_s() + 5;
        while (!got && crm_test_now_s() < until && (m = ws_recv(&sub, 1000, &close_code))) {
            const crm_value *rec = crm_map_get(m, "record");
            if (rec && strcmp(crm_map_str(rec, "id", ""), other) == 0 &&
                strcmp(crm_map_str(rec, "city", ""), "Bonn") == 0)
                got = 1;
            crm_value_free(m);
        }
        assert_true(got);
    }
    crm_value_free(pushes);

    /* the audit names both ops and who asked */
    r = ws_request(&c, T, NULL, "{\"op\":\"audit\",\"action\":\"privacy.export\",\"id\":\"%s\"}", cid);
    res = ok_result(r);
    assert_int_equal(crm_map_get(res, "entries")->u.arr.n, 1);
    assert_string_equal(crm_map_str(crm_map_get(res, "entries")->u.arr.items[0], "role", ""), "admin");
    crm_value_free(r);
    r = ws_request(&c, T, NULL, "{\"op\":\"audit\",\"action\":\"privacy.erase\",\"id\":\"%s\"}", cid);
    res = ok_result(r);
    assert_int_equal(crm_map_get(res, "entries")->u.arr.n, 2);
    assert_false(has_marker(res));
    crm_value_free(r);

    ws_close(&sub);
    ws_close(&c);
    free(token);
    {
        /* the store is whole after the rewrite and the swap: indexes agree
         * with the records, the feed has no gap, the audit chain holds */
        char data[2048], vcmd[4400];
        crm_store *st;
        snprintf(data, sizeof data, "%s", p.data);
        snprintf(vcmd, sizeof vcmd, "'%s' audit verify --data '%s' >/dev/null", p.bin, data);
        assert_int_equal(crmd_stop_keep(&p), 0);
        assert_int_equal(crm_store_open(data, sch, NULL, &st, &err), CRM_OK);
        if (crm_store_verify(st, &err) != CRM_OK)
            fail_msg("store verify after erasure and compaction: %s", err.msg);
        crm_store_close(st);
        assert_int_equal(system(vcmd), 0);
        crm_tmpdir_remove(strdup(data));
    }
    crm_schema_free(sch);
}

/* Only admin may export or erase; unknown records and bad arguments are
 * refused without touching anything. */
static void test_refusals(void **state)
{
    crmd_proc p;
    ws_client a, s;
    char *admin, *sales;
    crm_value *r;
    (void)state;
    assert_int_equal(crmd_start(&p, getenv("CRMD_BIN"), getenv("CRM_SCHEMAS"), NULL), 0);
    assert_non_null(admin = crmd_token(&p, "admin"));
    assert_non_null(sales = crmd_token(&p, "sales"));
    assert_int_equal(ws_connect(&a, p.port, NULL, NULL, NULL), 0);
    assert_int_equal(ws_auth(&a, admin, T), 0);
    assert_int_equal(ws_connect(&s, p.port, NULL, NULL, NULL), 0);
    assert_int_equal(ws_auth(&s, sales, T), 0);
    r = ws_request(&a, T, NULL,
                   "{\"op\":\"create\",\"collection\":\"contacts\",\"record\":{\"name\":\"Kim\"}}");
    const char *id = crm_map_str(ok_result(r), "id", "");
    char cid[160];
    snprintf(cid, sizeof cid, "%s", id);
    crm_value_free(r);
    static const char *const ops[] = {"privacy.export", "privacy.erase", "audit"};
    for (int i = 0; i < 3; i++) {
        r = ws_request(&s, T, NULL, "{\"op\":\"%s\",\"id\":\"%s\"}", ops[i], cid);
        assert_string_equal(ws_code(r), "FORBIDDEN");
        crm_value_free(r);
    }
    r = ws_request(&a, T, NULL, "{\"op\":\"privacy.erase\",\"id\":\"c_nope\"}");
    assert_string_equal(ws_code(r), "NOT_FOUND");
    crm_value_free(r);
    r = ws_request(&a, T, NULL, "{\"op\":\"privacy.export\"}");
    assert_string_equal(ws_code(r), "BAD_REQUEST");
    crm_value_free(r);
    r = ws_request(&a, T, NULL, "{\"op\":\"privacy.export\",\"collection\":\"nope\",\"id\":\"x\"}");
    assert_string_equal(ws_code(r), "NOT_FOUND");
    crm_value_free(r);
    r = ws_request(&a, T, NULL, "{\"op\":\"privacy.erase\",\"id\":\"%s\",\"compact\":\"yes\"}", cid);
    assert_string_equal(ws_code(r), "BAD_REQUEST");
    crm_value_free(r);
    r = ws_request(&a, T, NULL, "{\"op\":\"get\",\"collection\":\"contacts\",\"id\":\"%s\"}", cid);
    assert_string_equal(crm_map_str(ok_result(r), "name", ""), "Kim");
    crm_value_free(r);
    ws_close(&a);
    ws_close(&s);
    free(admin);
    free(sales);
    assert_int_equal(crmd_stop(&p), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_export_erase),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
