/*
 * fuzz_schema -- one JSON document, read two ways:
 *   - as a collection file (crm_collection_parse): when accepted, its
 *     description must be self-consistent (index slots, field lookup), the
 *     whole schema must build from it, and fixed records must validate to
 *     OK or VALIDATION with details -- and a record accepted on create must
 *     be accepted again as it now stands (defaults filled in are valid);
 *   - as a roles.json (crm_roles_check) against the small fixed schema of
 *     fuzz.h: when accepted, crm_schema_from_values must accept it too, and
 *     every permission question about every declared role must answer.
 */
#include "auth.h"
#include "fuzz.h"
#include "schema.h"

static crm_schema *fixed;
static crm_value *records[4];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fixed = fuzz_people_schema(FUZZ_ROLES_JSON);
    records[0] = fuzz_json("{}");
    records[1] = fuzz_json("{\"name\": \"Ada\", \"age\": 36, \"score\": 0.5, \"vip\": true, "
                           "\"born\": 0, \"tier\": \"gold\", \"tags\": [\"a\", \"b\"], "
                           "\"extra\": {\"k\": [1, null]}, \"email\": \"ada@example.org\", "
                           "\"org\": \"o_1\", \"id\": \"p_1\", \"_rev\": 3}");
    records[2] = fuzz_json("{\"name\": 5, \"age\": -1, \"tier\": \"tin\", \"x\": null, "
                           "\"tags\": [1, 2], \"score\": 1e300, \"born\": 1.5}");
    records[3] = fuzz_json("{\"name\": \"\", \"code\": \"\", \"count\": 9007199254740993, "
                           "\"amount\": 0.1, \"when\": -1, \"list\": [], \"m\": {}}");
    return 0;
}

static void check_collection(const crm_value *doc)
{
    crm_collection c;
    crm_err err;
    size_t indexed = 0;
    if (crm_collection_parse(doc, &c, &err) != CRM_OK) {
        FUZZ_CHECK(err.msg[0], "refused without a message");
        crm_collection_clear(&c);
        return;
    }
    FUZZ_CHECK(c.name && c.name[0] && c.id_prefix, "accepted without a name");
    for (size_t i = 0; i < c.nfields; i++) {
        const crm_field *f = &c.fields[i];
        FUZZ_CHECK(crm_collection_field(&c, f->name) == f, "field %s not found by name", f->name);
        if (f->index != CRM_INDEX_NONE) {
            FUZZ_CHECK(f->slot >= 0 && (size_t)f->slot < c.nindexes, "field %s: slot %d of %zu",
                       f->name, f->slot, c.nindexes);
            indexed++;
        }
    }
    FUZZ_CHECK(indexed == c.nindexes, "%zu indexed fields, nindexes %zu", indexed, c.nindexes);

    for (size_t r = 0; r < sizeof records / sizeof *records; r++) {
        crm_value *rec = crm_value_dup(records[r]), *details = NULL;
        int rc = crm_schema_validate(&c, rec, 1, &details, &err);
        FUZZ_CHECK(rc == CRM_OK || rc == CRM_VALIDATION, "validate: %s", crm_code_name(rc));
        if (rc == CRM_OK) {
            FUZZ_CHECK(!details, "details on success");
            /* what create stored must pass again, as create and as update */
            rc = crm_schema_validate(&c, rec, 1, &details, &err);
            FUZZ_CHECK(rc == CRM_OK, "record accepted once, refused again: %s\n  %s", err.msg,
                       fuzz_show(rec));
            rc = crm_schema_validate(&c, rec, 0, &details, &err);
            FUZZ_CHECK(rc == CRM_OK, "created record refused as update: %s\n  %s", err.msg,
                       fuzz_show(rec));
        } else {
            FUZZ_CHECK(details && details->type == CRM_T_MAP &&
                           crm_map_get(details, "fields") &&
                           crm_map_get(details, "fields")->type == CRM_T_MAP,
                       "VALIDATION without details.fields: %s", err.msg);
        }
        crm_value_free(details);
        crm_value_free(rec);
    }

    /* a schema of it alone: refs to other collections may fail, never crash */
    crm_schema *s = NULL;
    const crm_value *one[1] = {doc};
    if (crm_schema_from_values(one, 1, NULL, &s, &err) == CRM_OK)
        FUZZ_CHECK(crm_schema_find(s, c.name), "collection %s not in its schema", c.name);
    crm_schema_free(s);
    crm_collection_clear(&c);
}

static void check_roles(const crm_value *doc)
{
    static const char *const colls[] = {"people", "orgs", "nope", "*", ""};
    static const char *const methods[] = {"people.x", "people.", "orgs.y", "x", ""};
    crm_err err;
    crm_schema *s = NULL;
    const crm_value *roles;
    if (crm_roles_check(doc, fixed, &err) != CRM_OK) {
        FUZZ_CHECK(err.msg[0], "refused without a message");
        return;
    }
    crm_value *p = fuzz_json(FUZZ_PEOPLE_JSON), *o = fuzz_json(FUZZ_ORGS_JSON);
    const crm_value *cv[2] = {p, o};
    FUZZ_CHECK(crm_schema_from_values(cv, 2, doc, &s, &err) == CRM_OK,
               "roles check accepted what the schema refuses: %s", err.msg);
    roles = crm_map_get(doc, "roles");
    for (size_t i = 0; roles && roles->type == CRM_T_MAP && i < roles->u.map.n; i++) {
        const char *role = roles->u.map.kv[i].key;
        FUZZ_CHECK(crm_role_exists(s, role), "declared role %s does not exist", role);
        for (size_t c = 0; c < sizeof colls / sizeof *colls; c++) {
            const crm_value *h = crm_role_hidden(s, role, colls[c]);
            FUZZ_CHECK(!h || h->type == CRM_T_ARR, "hidden list of %s is not an array", role);
            (void)crm_role_perms(s, role, colls[c]);
        }
        for (size_t m = 0; m < sizeof methods / sizeof *methods; m++)
            (void)crm_role_may_call(s, role, methods[m]);
    }
    crm_schema_free(s);
    crm_value_free(p);
    crm_value_free(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    crm_err err;
    crm_value *doc = crm_json_decode((const char *)data, size, NULL, &err);
    if (!doc)
        return 0;
    check_collection(doc);
    check_roles(doc);
    crm_value_free(doc);
    return 0;
}
