/*
 * fuzz_filter -- a where (JSON) compiled by crm_filter_compile on the fixed
 * "people" collection of fuzz.h and matched against fixed records, checked
 * against the other implementation of the same rules: crm_txn_query over a
 * real store holding those records (which uses the indexes for eq, ranges,
 * in and prefix, and sorts by order_by).  Both must accept the same wheres,
 * and for an accepted one both must pick the same records, whatever the
 * order.  Subscriptions use the filter; queries use the store: a difference
 * is a client seeing a change pushed that its query would not return.
 */
#include <ftw.h>
#include <unistd.h>

#include "fuzz.h"
#include "schema.h"
#include "store.h"

static crm_schema *schema;
static const crm_collection *people;
static crm_store *store;
static crm_value *all; /* the stored records, as the store returns them */
static char dir[] = "/tmp/crm-fuzz-filter-XXXXXX";

static const char *const recs[] = {
    "{\"name\": \"Ada\", \"age\": 36, \"score\": 0.5, \"vip\": true, \"born\": 0, "
    "\"tier\": \"gold\", \"tags\": [\"a\", \"b\"], \"extra\": {\"k\": 1}, "
    "\"email\": \"ada@example.org\", \"org\": \"o_1\"}",
    "{\"name\": \"Bob\", \"age\": 0, \"score\": -0.0, \"tier\": \"silver\", \"tags\": []}",
    "{\"name\": \"bob\", \"age\": 200, \"score\": 1e300, \"born\": -1, \"email\": \"\"}",
    "{\"name\": \"Adam\", \"score\": 9007199254740993, \"tier\": \"bronze\", \"vip\": false}",
    "{\"name\": \"\\u00e9l\\u00e8ve\", \"age\": 36, \"score\": 36, \"born\": 9223372036854775807}",
    "{\"name\": \"Zo\\u0000e\", \"tags\": [\"a\"], \"extra\": {}, \"org\": \"o_2\"}",
    "{\"name\": \"A\", \"age\": 1, \"score\": -1e-300, \"born\": -9223372036854775807}",
};

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(p);
}

static void cleanup(void)
{
    crm_value_free(all);
    if (store)
        crm_store_close(store);
    crm_schema_free(schema);
    nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    crm_store_opts o;
    crm_err err;
    crm_txn *t;
    crm_query q = {.coll = "people", .limit = 1000};
    char *next = NULL;

    schema = fuzz_people_schema(NULL);
    people = crm_schema_find(schema, "people");
    FUZZ_CHECK(mkdtemp(dir), "mkdtemp");
    atexit(cleanup);
    crm_store_opts_default(&o);
    o.no_sync = 1;
    FUZZ_CHECK(crm_store_open(dir, schema, &o, &store, &err) == CRM_OK, "%s", err.msg);
    for (int i = 1; i <= 2; i++) {
        char id[8];
        crm_value *org = fuzz_json("{\"name\": \"org\"}");
        crm_write w = {.op = CRM_OP_CREATE, .coll = "orgs", .id = id, .data = org};
        snprintf(id, sizeof id, "o_%d", i);
        FUZZ_CHECK(crm_store_write1(store, &w) == CRM_OK, "%s", w.err.msg);
        crm_write_clear(&w);
        crm_value_free(org);
    }
    for (size_t i = 0; i < sizeof recs / sizeof *recs; i++) {
        crm_value *r = fuzz_json(recs[i]);
        crm_write w = {.op = CRM_OP_CREATE, .coll = "people", .data = r};
        FUZZ_CHECK(crm_store_write1(store, &w) == CRM_OK, "record %zu: %s", i, w.err.msg);
        crm_write_clear(&w);
        crm_value_free(r);
    }
    FUZZ_CHECK(crm_store_begin_read(store, &t, &err) == CRM_OK, "%s", err.msg);
    FUZZ_CHECK(crm_txn_query(t, &q, &all, &next, &err) == CRM_OK, "%s", err.msg);
    FUZZ_CHECK(all->u.arr.n == sizeof recs / sizeof *recs && !next, "setup query");
    crm_txn_end(t);
    return 0;
}

/* The ids of the records the query returns, in id order, as one string. */
static int query_ids(const crm_value *where, const char *order_by, char *out, size_t cap,
                     crm_err *err)
{
    crm_query q = {.coll = "people", .where = where, .order_by = order_by, .limit = 1000};
    crm_value *res = NULL;
    char *next = NULL;
    crm_txn *t;
    int rc;
    FUZZ_CHECK(crm_store_begin_read(store, &t, err) == CRM_OK, "%s", err->msg);
    rc = crm_txn_query(t, &q, &res, &next, err);
    crm_txn_end(t);
    out[0] = 0;
    if (rc != CRM_OK)
        return rc;
    FUZZ_CHECK(!next, "more than one page of %zu records", all->u.arr.n);
    /* all is in id order; mark which of them came back */
    for (size_t i = 0; i < all->u.arr.n; i++) {
        const char *id = crm_map_str(all->u.arr.items[i], "id", "");
        int found = 0;
        for (size_t j = 0; j < res->u.arr.n; j++)
            found |= strcmp(crm_map_str(res->u.arr.items[j], "id", "?"), id) == 0;
        if (found) {
            strncat(out, id, cap - strlen(out) - 2);
            strcat(out, " ");
        }
    }
    crm_value_free(res);
    return CRM_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const orders[] = {NULL, "age", "-score", "name", "-born", "tier"};
    crm_err err, qerr;
    crm_filter *f = NULL;
    crm_value *where = crm_json_decode((const char *)data, size, NULL, &err);
    char fids[512] = "", qids[512];
    int rc;

    if (!where)
        return 0;
    rc = crm_filter_compile(people, where, &f, &err);
    if (where->type != CRM_T_MAP) {
        /* the wire layer passes only maps; anything else: no crash */
        if (rc == CRM_OK)
            (void)crm_filter_match(f, all->u.arr.items[0]);
        crm_filter_free(f);
        crm_value_free(where);
        return 0;
    }
    if (rc == CRM_OK) {
        FUZZ_CHECK(f, "compiled to NULL");
        for (size_t i = 0; i < all->u.arr.n; i++) {
            const crm_value *r = all->u.arr.items[i];
            int m = crm_filter_match(f, r);
            FUZZ_CHECK(m == crm_filter_match(f, r), "match is not repeatable");
            if (m) {
                strncat(fids, crm_map_str(r, "id", ""), sizeof fids - strlen(fids) - 2);
                strcat(fids, " ");
            }
        }
        if (where->u.map.n == 0)
            FUZZ_CHECK(strlen(fids) > 0, "an empty where matched nothing");
    } else {
        FUZZ_CHECK(rc == CRM_BAD_REQUEST && err.msg[0], "compile: %s %s", crm_code_name(rc),
                   err.msg);
    }
    for (size_t o = 0; o < sizeof orders / sizeof *orders; o++) {
        int qrc = query_ids(where, orders[o], qids, sizeof qids, &qerr);
        FUZZ_CHECK((qrc == CRM_OK) == (rc == CRM_OK),
                   "filter says %s (%s), query by %s says %s (%s)\n  where %s",
                   crm_code_name(rc), rc ? err.msg : "", orders[o] ? orders[o] : "id",
                   crm_code_name(qrc), qrc ? qerr.msg : "", fuzz_show(where));
        if (rc == CRM_OK)
            FUZZ_CHECK(strcmp(fids, qids) == 0,
                       "filter matches [%s], query by %s returns [%s]\n  where %s", fids,
                       orders[o] ? orders[o] : "id", qids, fuzz_show(where));
    }
    crm_filter_free(f);
    crm_value_free(where);
    return 0;
}
