/*
 * test_schema -- loading the schemas folder and validating records.
 *
 * Covers: the bundled schemas load (every collection the design names,
 * roles.json read as roles and not as a collection); every kind of bad
 * schema file stops loading with the file's name and the problem in the
 * message (bad JSON, unknown type or option, enum/ref/index/default/min/max
 * mistakes, misnamed files, reserved and malformed names, bad roles.json,
 * an empty folder, an oversized file, over-deep nesting); and
 * crm_schema_validate for every field type and option: type checks, UTF-8
 * length bounds, int conversion of 5.0, array item types, required fields
 * on create and update, defaults on create only, strict and non-strict
 * collections, nil removal, system fields, and the exact shape of the
 * VALIDATION details and message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>

#include "codec.h"
#include "schema.h"
#include "testutil.h"
#include "tmpdir.h"

/* ------------------------------------------------------------------ */
/* helpers                                                             */
/* ------------------------------------------------------------------ */

#define J(json) crm_test_json(json)

static void assert_has(const char *haystack, const char *needle)
{
    if (!strstr(haystack, needle))
        fail_msg("expected \"%s\" in \"%s\"", needle, haystack);
}

/* A valid collection that other test files may point refs at. */
static const char *const COMPANIES_OK =
    "{\"collection\": \"companies\", \"fields\": {\"name\": {\"type\": \"string\"}}}";

typedef struct sfile {
    const char *name;
    const char *text;
} sfile;

/* Writes files into a fresh folder and loads it.  Returns the rc; *out
 * and *err as crm_schema_load_dir leaves them. */
static int load_files(const sfile *files, size_t n, crm_schema **out, crm_err *err)
{
    char *dir = crm_tmpdir_make("schema");
    int rc;
    for (size_t i = 0; i < n; i++)
        crm_tmpdir_write(dir, files[i].name, files[i].text);
    rc = crm_schema_load_dir(dir, out, err);
    crm_tmpdir_remove(dir);
    return rc;
}

/* Loads companies.json (valid) plus name=text and expects loading to stop
 * with a message holding the file name and the problem. */
static void expect_refused(const char *name, const char *text, const char *problem)
{
    sfile files[2] = {{"companies.json", COMPANIES_OK}, {name, text}};
    crm_schema *s = (crm_schema *)1;
    crm_err err = {0, ""};
    int rc = load_files(files, 2, &s, &err);
    if (rc == CRM_OK) {
        crm_schema_free(s);
        fail_msg("%s loaded but should have been refused (%s)", name, problem);
    }
    assert_null(s);
    assert_int_equal(err.code, rc);
    assert_has(err.msg, name);
    assert_has(err.msg, problem);
}

/* Same, for a roles.json next to a valid contacts collection. */
static const char *const CONTACTS_OK =
    "{\"collection\": \"contacts\", \"fields\": {"
    " \"name\": {\"type\": \"string\", \"required\": true},"
    " \"phone\": {\"type\": \"string\"},"
    " \"company\": {\"type\": \"ref\", \"to\": \"companies\"}}}";

static void expect_roles_refused(const char *roles, const char *problem)
{
    sfile files[3] = {{"companies.json", COMPANIES_OK},
                      {"contacts.json", CONTACTS_OK},
                      {"roles.json", roles}};
    crm_schema *s = (crm_schema *)1;
    crm_err err = {0, ""};
    int rc = load_files(files, 3, &s, &err);
    if (rc == CRM_OK) {
        crm_schema_free(s);
        fail_msg("roles.json loaded but should have been refused (%s)", problem);
    }
    assert_null(s);
    assert_int_equal(rc, CRM_BAD_REQUEST);
    assert_has(err.msg, "roles.json");
    assert_has(err.msg, problem);
}

/* ------------------------------------------------------------------ */
/* the bundled schemas                                                 */
/* ------------------------------------------------------------------ */

static const char *schemas_dir(void)
{
    const char *d = getenv("CRM_SCHEMAS");
    if (!d || !*d)
        fail_msg("CRM_SCHEMAS is not set (ctest sets it; else export CRM_SCHEMAS=.../schemas)");
    return d;
}

static void test_bundled_schemas_load_with_every_designed_collection(void **state)
{
    static const char *const designed[] = {
        "contacts", "companies",        "interactions",   "orders",
        "deals",    "tickets",          "loyalty_accounts", "loyalty_ledger",
        "segments", "campaigns",        "surveys",
    };
    const char *dir = schemas_dir();
    crm_schema *s = NULL;
    crm_err err = {0, ""};
    int rc = crm_schema_load_dir(dir, &s, &err);
    (void)state;
    if (rc != CRM_OK)
        fail_msg("bundled schemas do not load: %s", err.msg);
    assert_non_null(s);
    for (size_t i = 0; i < sizeof designed / sizeof *designed; i++) {
        const crm_collection *c = crm_schema_find(s, designed[i]);
        if (!c)
            fail_msg("bundled schemas lack collection %s", designed[i]);
        assert_string_equal(c->name, designed[i]);
        assert_true(c->nfields > 0);
        assert_non_null(c->source);
    }

    /* roles.json is the roles declaration, not a collection */
    assert_non_null(s->roles);
    assert_int_equal(s->roles->type, CRM_T_MAP);
    assert_true(s->roles->u.map.n > 0);
    assert_null(crm_schema_find(s, "roles"));

    /* exactly one collection per other *.json file */
    {
        DIR *d = opendir(dir);
        struct dirent *de;
        size_t files = 0;
        assert_non_null(d);
        while ((de = readdir(d))) {
            size_t l = strlen(de->d_name);
            if (de->d_name[0] != '.' && l > 5 && strcmp(de->d_name + l - 5, ".json") == 0 &&
                strcmp(de->d_name, "roles.json") != 0)
                files++;
        }
        closedir(d);
        assert_int_equal(s->ncolls, files);
    }
    /* every ref points at a collection that exists */
    for (size_t i = 0; i < s->ncolls; i++)
        for (size_t f = 0; f < s->colls[i].nfields; f++)
            if (s->colls[i].fields[f].type == CRM_F_REF)
                assert_non_null(crm_schema_find(s, s->colls[i].fields[f].ref_to));
    crm_schema_free(s);
}

static void test_minimal_folder_without_roles_loads_with_null_roles(void **state)
{
    sfile files[2] = {{"companies.json", COMPANIES_OK}, {"contacts.json", CONTACTS_OK}};
    crm_schema *s = NULL;
    crm_err err = {0, ""};
    (void)state;
    assert_int_equal(load_files(files, 2, &s, &err), CRM_OK);
    assert_non_null(s);
    /* the two files, then the kernel's own dead_letters (not declared here) */
    assert_int_equal(s->ncolls, 3);
    assert_string_equal(s->colls[2].name, "dead_letters");
    assert_null(s->roles);
    /* sorted by file name: start-up is deterministic */
    assert_string_equal(s->colls[0].name, "companies");
    assert_string_equal(s->colls[1].name, "contacts");
    assert_int_equal(crm_collection_field(crm_schema_find(s, "contacts"), "company")->type,
                     CRM_F_REF);
    crm_schema_free(s);
}

/* ------------------------------------------------------------------ */
/* bad schema files                                                    */
/* ------------------------------------------------------------------ */

static void test_refuses_invalid_json(void **state)
{
    (void)state;
    expect_refused("contacts.json",
                   "{\"collection\": \"contacts\", \"fields\": {\"name\": {\"type\": }}}",
                   "contacts.json: invalid JSON");
    expect_refused("contacts.json", "{\"collection\": \"contacts\", \"fields\": ",
                   "contacts.json: invalid JSON");
    expect_refused("contacts.json", "", "contacts.json: invalid JSON");
    /* roles.json is parsed by the same rules */
    expect_refused("roles.json", "{\"roles\": {", "roles.json: invalid JSON");
}

static void test_refuses_unknown_type(void **state)
{
    (void)state;
    expect_refused("contacts.json",
                   "{\"collection\": \"contacts\", \"fields\": {\"email\": {\"type\": \"text\"}}}",
                   "field email: unknown type \"text\"");
}

static void test_refuses_unknown_option_typo_requried(void **state)
{
    (void)state;
    expect_refused("contacts.json",
                   "{\"collection\": \"contacts\", \"fields\": "
                   "{\"name\": {\"type\": \"string\", \"requried\": true}}}",
                   "field name: unknown option \"requried\"");
}

/* "personal": true marks fields privacy.erase removes (docs/privacy.md). */
static void test_personal_option(void **state)
{
    crm_schema *sch = NULL;
    crm_err err;
    const crm_collection *c;
    size_t personal = 0;
    (void)state;
    expect_refused("contacts.json",
                   "{\"collection\": \"contacts\", \"fields\": "
                   "{\"name\": {\"type\": \"string\", \"personal\": \"yes\"}}}",
                   "field name: \"personal\" must be true or false");
    expect_refused("contacts.json",
                   "{\"collection\": \"contacts\", \"fields\": "
                   "{\"boss\": {\"type\": \"ref\", \"to\": \"contacts\", \"personal\": true}}}",
                   "field boss: \"personal\" does not apply to ref fields");
    /* the bundled contacts mark the identifying fields, and only those */
    assert_int_equal(crm_schema_load_dir(schemas_dir(), &sch, &err), CRM_OK);
    assert_non_null(c = crm_schema_find(sch, "contacts"));
    for (size_t i = 0; i < c->nfields; i++) {
        const crm_field *f = &c->fields[i];
        int want = strcmp(f->name, "name") == 0 || strcmp(f->name, "email") == 0 ||
                   strcmp(f->name, "phone") == 0 || strcmp(f->name, "street") == 0;
        if (want)
            assert_true(f->personal);
        if (strcmp(f->name, "city") == 0 || strcmp(f->name, "company") == 0 ||
            strcmp(f->name, "total_spent") == 0)
            assert_false(f->personal);
        personal += f->personal != 0;
    }
    assert_true(personal >= 4);
    crm_schema_free(sch);
}

/* "on_delete" of a ref: restrict | cascade | set_null | none; restrict by
 * default for a required ref, set_null for an optional one; set_null never
 * on a required ref; only refs have it. */
static void test_on_delete_option(void **state)
{
    crm_schema *sch = NULL;
    crm_err err;
    const crm_collection *c;
    (void)state;
    expect_refused("links.json",
                   "{\"collection\": \"links\", \"fields\": {\"to\": {\"type\": \"ref\", "
                   "\"to\": \"companies\", \"on_delete\": \"orphan\"}}}",
                   "\"on_delete\" must be \"restrict\", \"cascade\", \"set_null\" or \"none\"");
    expect_refused("links.json",
                   "{\"collection\": \"links\", \"fields\": {\"to\": {\"type\": \"ref\", "
                   "\"to\": \"companies\", \"required\": true, \"on_delete\": \"set_null\"}}}",
                   "\"on_delete\": \"set_null\" cannot apply to a required ref");
    expect_refused("links.json",
                   "{\"collection\": \"links\", \"fields\": {\"n\": {\"type\": \"int\", "
                   "\"on_delete\": \"cascade\"}}}",
                   "\"on_delete\" applies to ref fields only");
    assert_int_equal(crm_schema_load_dir(schemas_dir(), &sch, &err), CRM_OK);
    c = crm_schema_find(sch, "orders");
    assert_int_equal(crm_collection_field(c, "contact")->on_delete, CRM_ON_DELETE_RESTRICT);
    assert_int_equal(crm_collection_field(c, "company")->on_delete, CRM_ON_DELETE_SET_NULL);
    c = crm_schema_find(sch, "loyalty_accounts");
    assert_int_equal(crm_collection_field(c, "contact")->on_delete, CRM_ON_DELETE_CASCADE);
    c = crm_schema_find(sch, "segment_members");
    assert_int_equal(crm_collection_field(c, "contact")->on_delete, CRM_ON_DELETE_NONE);
    { /* docs/features/customer_value.md: analysts may start a fit */
        const crm_value *m = crm_map_get(crm_map_get(sch->roles, "analyst"), "methods");
        int fit = 0;
        assert_non_null(m);
        for (size_t i = 0; i < m->u.arr.n; i++)
            fit |= strcmp(m->u.arr.items[i]->u.str.s, "value.fit") == 0;
        assert_true(fit);
    }
    /* every bundled ref says what it does */
    for (size_t i = 0; i < sch->ncolls; i++)
        for (size_t j = 0; j < sch->colls[i].nfields; j++)
            if (sch->colls[i].fields[j].type == CRM_F_REF)
                assert_non_null(crm_map_get(crm_map_get(crm_map_get(sch->colls[i].source, "fields"),
                                                        sch->colls[i].fields[j].name),
                                            "on_delete"));
    crm_schema_free(sch);
    /* the defaults */
    {
        sfile files[2] = {{"companies.json", COMPANIES_OK},
                          {"links.json", "{\"collection\": \"links\", \"fields\": {"
                                         "\"a\": {\"type\": \"ref\", \"to\": \"companies\", \"required\": true},"
                                         "\"b\": {\"type\": \"ref\", \"to\": \"companies\"}}}"}};
        assert_int_equal(load_files(files, 2, &sch, &err), CRM_OK);
        c = crm_schema_find(sch, "links");
        assert_int_equal(crm_collection_field(c, "a")->on_delete, CRM_ON_DELETE_RESTRICT);
        assert_int_equal(crm_collection_field(c, "b")->on_delete, CRM_ON_DELETE_SET_NULL);
        crm_schema_free(sch);
    }
}

/* "about": {"collection": F1, "id": F2} names two string fields of the
 * collection; the bundled webhook collections declare it. */
static void test_about_option(void **state)
{
    crm_schema *sch = NULL;
    crm_err err;
    const crm_collection *c;
    (void)state;
    expect_refused("copies.json",
                   "{\"collection\": \"copies\", \"about\": \"contacts\", \"fields\": "
                   "{\"c\": {\"type\": \"string\"}}}",
                   "\"about\" must be {\"collection\": FIELD, \"id\": FIELD}");
    expect_refused("copies.json",
                   "{\"collection\": \"copies\", \"about\": {\"collection\": \"c\", \"id\": \"i\"}, "
                   "\"fields\": {\"c\": {\"type\": \"string\"}}}",
                   "\"about\": i must name a string field");
    expect_refused("copies.json",
                   "{\"collection\": \"copies\", \"about\": {\"collection\": \"c\", \"id\": \"i\"}, "
                   "\"fields\": {\"c\": {\"type\": \"string\"}, \"i\": {\"type\": \"int\"}}}",
                   "\"about\": i must name a string field");
    assert_int_equal(crm_schema_load_dir(schemas_dir(), &sch, &err), CRM_OK);
    assert_non_null(c = crm_schema_find(sch, "webhook_outbox"));
    assert_string_equal(c->about_coll, "collection");
    assert_string_equal(c->about_id, "record_id");
    assert_true(crm_collection_field(c, "body")->personal);
    assert_null(crm_schema_find(sch, "contacts")->about_coll);
    crm_schema_free(sch);
}

static void test_refuses_enum_without_values(void **state)
{
    (void)state;
    expect_refused("contacts.json",
                   "{\"collection\": \"contacts\", \"fields\": {\"stage\": {\"type\": \"enum\"}}}",
                   "field stage: an enum needs \"values\"");
    expect_refused("contacts.json",
                   "{\"collection\": \"contacts\", \"fields\": "
                   "{\"stage\": {\"type\": \"enum\", \"values\": []}}}",
                   "field stage: \"values\" must be a non-empty list of strings");
}

static void test_refuses_enum_values_that_are_not_strings(void **state)
{
    (void)state;
    expect_refused("contacts.json",
                   "{\"collection\": \"contacts\", \"fields\": "
                   "{\"stage\": {\"type\": \"enum\", \"values\": [\"a\", 2]}}}",
                   "field stage: \"values\" must be a non-empty list of strings");
    expect_refused("contacts.json",
                   "{\"collection\": \"contacts\", \"fields\": "
                   "{\"stage\": {\"type\": \"enum\", \"values\": \"a\"}}}",
                   "field stage: \"values\" must be a non-empty list of strings");
}

static void test_refuses_ref_without_to(void **state)
{
    (void)state;
    expect_refused("contacts.json",
                   "{\"collection\": \"contacts\", \"fields\": {\"company\": {\"type\": \"ref\"}}}",
                   "field company: a ref needs \"to\"");
}

static void test_refuses_ref_to_unknown_collection(void **state)
{
    (void)state;
    expect_refused("contacts.json",
                   "{\"collection\": \"contacts\", \"fields\": "
                   "{\"company\": {\"type\": \"ref\", \"to\": \"nowhere\"}}}",
                   "field company: \"to\" names unknown collection \"nowhere\"");
}

static void test_refuses_index_on_array_field(void **state)
{
    (void)state;
    expect_refused("contacts.json",
                   "{\"collection\": \"contacts\", \"fields\": "
                   "{\"tags\": {\"type\": \"array\", \"items\": \"string\", \"index\": true}}}",
                   "field tags: array and map fields cannot be indexed");
}

static void test_refuses_default_of_the_wrong_type(void **state)
{
    (void)state;
    expect_refused("contacts.json",
                   "{\"collection\": \"contacts\", \"fields\": "
                   "{\"points\": {\"type\": \"int\", \"default\": \"zero\"}}}",
                   "field points: default must be an integer");
    expect_refused("contacts.json",
                   "{\"collection\": \"contacts\", \"fields\": "
                   "{\"stage\": {\"type\": \"enum\", \"values\": [\"a\"], \"default\": \"b\"}}}",
                   "field stage: default must be one of \"a\" (got \"b\")");
}

static void test_refuses_default_outside_min_max(void **state)
{
    (void)state;
    expect_refused("contacts.json",
                   "{\"collection\": \"contacts\", \"fields\": "
                   "{\"points\": {\"type\": \"int\", \"min\": 0, \"default\": -1}}}",
                   "field points: default value must be at least 0");
    expect_refused("contacts.json",
                   "{\"collection\": \"contacts\", \"fields\": "
                   "{\"points\": {\"type\": \"int\", \"max\": 10, \"default\": 11}}}",
                   "field points: default value must be at most 10");
    expect_refused("contacts.json",
                   "{\"collection\": \"contacts\", \"fields\": "
                   "{\"code\": {\"type\": \"string\", \"max\": 3, \"default\": \"abcd\"}}}",
                   "field code: default length must be at most 3");
}

static void test_refuses_min_greater_than_max(void **state)
{
    (void)state;
    expect_refused("contacts.json",
                   "{\"collection\": \"contacts\", \"fields\": "
                   "{\"points\": {\"type\": \"int\", \"min\": 5, \"max\": 4}}}",
                   "field points: \"min\" is greater than \"max\"");
}

static void test_refuses_file_name_not_matching_collection(void **state)
{
    (void)state;
    expect_refused("people.json",
                   "{\"collection\": \"contacts\", \"fields\": {\"name\": {\"type\": \"string\"}}}",
                   "declares collection \"contacts\"; the file must be named contacts.json");
}

static void test_refuses_collection_named_methods(void **state)
{
    (void)state;
    expect_refused("methods.json",
                   "{\"collection\": \"methods\", \"fields\": {\"name\": {\"type\": \"string\"}}}",
                   "no collection may be called \"methods\"");
}

static void test_refuses_bad_field_names(void **state)
{
    (void)state;
    expect_refused("contacts.json",
                   "{\"collection\": \"contacts\", \"fields\": {\"Name\": {\"type\": \"string\"}}}",
                   "field Name: field names are [a-z][a-z0-9_]*");
    expect_refused("contacts.json",
                   "{\"collection\": \"contacts\", \"fields\": {\"_x\": {\"type\": \"string\"}}}",
                   "field _x: field names are [a-z][a-z0-9_]*");
    expect_refused("contacts.json",
                   "{\"collection\": \"contacts\", \"fields\": {\"id\": {\"type\": \"string\"}}}",
                   "field id: field names are [a-z][a-z0-9_]*, at most 64 characters, and not a "
                   "system field");
    expect_refused("contacts.json",
                   "{\"collection\": \"contacts\", \"fields\": {\"na-me\": {\"type\": \"string\"}}}",
                   "field na-me: field names are");
}

static void test_refuses_unknown_top_level_key(void **state)
{
    (void)state;
    expect_refused("contacts.json",
                   "{\"collection\": \"contacts\", \"colour\": \"red\", \"fields\": {}}",
                   "unknown key \"colour\"");
}

static void test_refuses_strict_that_is_not_a_bool(void **state)
{
    (void)state;
    expect_refused("contacts.json",
                   "{\"collection\": \"contacts\", \"strict\": \"yes\", \"fields\": {}}",
                   "\"strict\" must be true or false");
}

static void test_refuses_roles_naming_unknown_collection(void **state)
{
    (void)state;
    expect_roles_refused("{\"roles\": {\"agent\": {\"nowhere\": [\"read\"]}}}",
                         "role agent: unknown collection \"nowhere\"");
}

static void test_refuses_roles_hiding_unknown_field(void **state)
{
    (void)state;
    expect_roles_refused(
        "{\"roles\": {\"agent\": {\"contacts\": {\"can\": [\"read\"], \"hide\": [\"ssn\"]}}}}",
        "role agent: contacts: hides unknown field \"ssn\"");
}

static void test_refuses_roles_with_bad_permission_word(void **state)
{
    (void)state;
    expect_roles_refused("{\"roles\": {\"agent\": {\"contacts\": [\"read\", \"wrtie\"]}}}",
                         "role agent: contacts: permissions are \"read\", \"write\", \"subscribe\"");
}

static void test_refuses_roles_declaring_admin(void **state)
{
    (void)state;
    expect_roles_refused("{\"roles\": {\"admin\": {\"*\": [\"read\"]}}}",
                         "role admin is built in; do not declare it");
}

static void test_roles_hiding_a_known_field_and_granting_methods_load(void **state)
{
    sfile files[3] = {
        {"companies.json", COMPANIES_OK},
        {"contacts.json", CONTACTS_OK},
        {"roles.json", "{\"roles\": {\"agent\": {"
                       "\"contacts\": {\"can\": [\"read\", \"subscribe\"], \"hide\": [\"phone\"]},"
                       "\"*\": [\"read\"], \"methods\": [\"tickets.*\"]}}}"}};
    crm_schema *s = NULL;
    crm_err err = {0, ""};
    (void)state;
    if (load_files(files, 3, &s, &err) != CRM_OK)
        fail_msg("valid roles.json refused: %s", err.msg);
    assert_non_null(crm_map_get(s->roles, "agent"));
    assert_int_equal(s->ncolls, 3); /* + dead_letters */
    crm_schema_free(s);
}

static void test_refuses_empty_schemas_folder(void **state)
{
    char *dir = crm_tmpdir_make("schema-empty");
    crm_schema *s = (crm_schema *)1;
    crm_err err = {0, ""};
    const char *base = strrchr(dir, '/') + 1;
    (void)state;
    assert_int_equal(crm_schema_load_dir(dir, &s, &err), CRM_BAD_REQUEST);
    assert_null(s);
    assert_has(err.msg, base);
    assert_has(err.msg, "holds no collection");

    /* a folder holding only roles.json has no collection either */
    crm_tmpdir_write(dir, "roles.json", "{\"roles\": {}}");
    assert_int_equal(crm_schema_load_dir(dir, &s, &err), CRM_BAD_REQUEST);
    assert_has(err.msg, "holds no collection");
    crm_tmpdir_remove(dir);
}

static void test_refuses_missing_schemas_folder(void **state)
{
    crm_schema *s = (crm_schema *)1;
    crm_err err = {0, ""};
    (void)state;
    assert_int_equal(crm_schema_load_dir("/nonexistent/crmd-schemas", &s, &err), CRM_BAD_REQUEST);
    assert_null(s);
    assert_has(err.msg, "/nonexistent/crmd-schemas");
}

static void test_refuses_file_over_one_mib(void **state)
{
    size_t n = 2u << 20;
    char *big = malloc(n + 1);
    crm_schema *s = (crm_schema *)1;
    crm_err err = {0, ""};
    sfile files[2];
    (void)state;
    assert_non_null(big);
    /* valid JSON, just too large: a long description */
    {
        const char *head = "{\"collection\": \"contacts\", \"description\": \"";
        const char *tail = "\", \"fields\": {}}";
        size_t hl = strlen(head), tl = strlen(tail);
        memcpy(big, head, hl);
        memset(big + hl, 'x', n - hl - tl);
        memcpy(big + n - tl, tail, tl);
        big[n] = '\0';
    }
    files[0] = (sfile){"companies.json", COMPANIES_OK};
    files[1] = (sfile){"contacts.json", big};
    assert_int_equal(load_files(files, 2, &s, &err), CRM_TOO_LARGE);
    assert_null(s);
    assert_has(err.msg, "contacts.json");
    assert_has(err.msg, "larger than 1048576 bytes");
    free(big);
}

static void test_refuses_forty_deep_nesting(void **state)
{
    char doc[512];
    size_t l = 0;
    (void)state;
    l += (size_t)snprintf(doc + l, sizeof doc - l,
                          "{\"collection\": \"contacts\", \"fields\": {\"x\": {\"type\": \"map\", "
                          "\"description\": \"d\", \"default\": ");
    for (int i = 0; i < 40; i++)
        doc[l++] = '[';
    for (int i = 0; i < 40; i++)
        doc[l++] = ']';
    l += (size_t)snprintf(doc + l, sizeof doc - l, "}}}");
    assert_true(l < sizeof doc);
    expect_refused("contacts.json", doc, "contacts.json: nesting deeper than 32");
}

/* ------------------------------------------------------------------ */
/* validation                                                          */
/* ------------------------------------------------------------------ */

/* Every type and option; no required fields, no defaults. */
static const char *const THINGS =
    "{\"collection\": \"things\", \"strict\": true, \"fields\": {"
    " \"s\":   {\"type\": \"string\", \"min\": 2, \"max\": 5},"
    " \"i\":   {\"type\": \"int\", \"min\": 0, \"max\": 100},"
    " \"num\": {\"type\": \"number\", \"min\": -1.5, \"max\": 1.5},"
    " \"b\":   {\"type\": \"bool\"},"
    " \"ts\":  {\"type\": \"timestamp\"},"
    " \"e\":   {\"type\": \"enum\", \"values\": [\"red\", \"green\"]},"
    " \"r\":   {\"type\": \"ref\", \"to\": \"things\"},"
    " \"arr\": {\"type\": \"array\", \"min\": 1, \"max\": 3},"
    " \"as\":  {\"type\": \"array\", \"items\": \"string\"},"
    " \"ai\":  {\"type\": \"array\", \"items\": \"int\"},"
    " \"an\":  {\"type\": \"array\", \"items\": \"number\"},"
    " \"ab\":  {\"type\": \"array\", \"items\": \"bool\"},"
    " \"at\":  {\"type\": \"array\", \"items\": \"timestamp\"},"
    " \"am\":  {\"type\": \"array\", \"items\": \"map\"},"
    " \"m\":   {\"type\": \"map\"}"
    "}}";

/* Required and default behaviour. */
static const char *const PEOPLE =
    "{\"collection\": \"people\", \"fields\": {"
    " \"name\":  {\"type\": \"string\", \"required\": true},"
    " \"age\":   {\"type\": \"int\"},"
    " \"level\": {\"type\": \"int\", \"default\": 7},"
    " \"stage\": {\"type\": \"enum\", \"values\": [\"new\", \"old\"], \"default\": \"new\"},"
    " \"tags\":  {\"type\": \"array\", \"items\": \"string\", \"default\": [\"a\"]}"
    "}}";

static const char *const LOOSE =
    "{\"collection\": \"loose\", \"strict\": false, \"fields\": {"
    " \"name\": {\"type\": \"string\"}}}";

typedef struct vfix {
    crm_collection things, people, loose;
} vfix;

static void parse_coll(const char *json, crm_collection *c)
{
    crm_value *v = J(json);
    crm_err err = {0, ""};
    int rc = crm_collection_parse(v, c, &err);
    crm_value_free(v);
    if (rc != CRM_OK)
        fail_msg("test collection refused: %s", err.msg);
}

static int vsetup(void **state)
{
    vfix *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    parse_coll(THINGS, &f->things);
    parse_coll(PEOPLE, &f->people);
    parse_coll(LOOSE, &f->loose);
    *state = f;
    return 0;
}

static int vteardown(void **state)
{
    vfix *f = *state;
    crm_collection_clear(&f->things);
    crm_collection_clear(&f->people);
    crm_collection_clear(&f->loose);
    free(f);
    return 0;
}

/* Validates rec (consumed) as a create in c.  When field is NULL the record
 * must pass; else it must fail with exactly "field: msg" and details
 * {"fields": {field: msg}}. */
static void check_rec(const crm_collection *c, crm_value *rec, int is_create, const char *field,
                      const char *msg)
{
    crm_value *details = (crm_value *)1;
    crm_err err = {0, ""};
    int rc = crm_schema_validate(c, rec, is_create, &details, &err);
    if (!field) {
        if (rc != CRM_OK)
            fail_msg("expected valid, got %s", err.msg);
        assert_null(details);
    } else {
        char want[300];
        crm_value *fields;
        const crm_value *m;
        if (rc != CRM_VALIDATION)
            fail_msg("expected VALIDATION on %s (%s), got rc %d", field, msg, rc);
        assert_int_equal(err.code, CRM_VALIDATION);
        snprintf(want, sizeof want, "%s: %s", field, msg);
        assert_string_equal(err.msg, want);
        assert_non_null(details);
        assert_int_equal(details->type, CRM_T_MAP);
        assert_int_equal(details->u.map.n, 1);
        fields = crm_map_get(details, "fields");
        assert_non_null(fields);
        assert_int_equal(fields->type, CRM_T_MAP);
        assert_int_equal(fields->u.map.n, 1);
        m = crm_map_get(fields, field);
        assert_non_null(m);
        assert_int_equal(m->type, CRM_T_STR);
        assert_string_equal(m->u.str.s, msg);
    }
    crm_value_free(details);
    crm_value_free(rec);
}

/* One-field record {key: v} (v consumed). */
static crm_value *rec1(const char *key, crm_value *v)
{
    crm_value *r = crm_value_map();
    assert_non_null(r);
    assert_int_equal(crm_map_set(r, key, v), 0);
    return r;
}

static void ok1(const crm_collection *c, const char *json)
{
    check_rec(c, J(json), 1, NULL, NULL);
}

static void bad1(const crm_collection *c, const char *json, const char *field, const char *msg)
{
    check_rec(c, J(json), 1, field, msg);
}

static void test_validate_string_type_and_length_in_utf8_characters(void **state)
{
    vfix *f = *state;
    ok1(&f->things, "{\"s\": \"ab\"}");
    ok1(&f->things, "{\"s\": \"h\xc3\xa9llo\"}");                    /* héllo: 5 chars, 6 bytes */
    ok1(&f->things, "{\"s\": \"\xf0\x9f\x98\x80\xf0\x9f\x98\x80\"}"); /* 2 emoji: 2 chars, 8 bytes */
    bad1(&f->things, "{\"s\": 5}", "s", "must be a string");
    bad1(&f->things, "{\"s\": [\"ab\"]}", "s", "must be a string");
    bad1(&f->things, "{\"s\": \"a\"}", "s", "length must be at least 2");
    bad1(&f->things, "{\"s\": \"\xc3\xa9\"}", "s", "length must be at least 2"); /* 1 char, 2 bytes */
    bad1(&f->things, "{\"s\": \"h\xc3\xa9llo!\"}", "s", "length must be at most 5");
    bad1(&f->things, "{\"s\": \"abcdef\"}", "s", "length must be at most 5");
}

static void test_validate_int_accepts_integral_float_and_converts_it(void **state)
{
    vfix *f = *state;
    crm_value *r;
    crm_err err;
    ok1(&f->things, "{\"i\": 5}");
    ok1(&f->things, "{\"i\": 0}");
    ok1(&f->things, "{\"i\": 100}");

    /* 5.0 passes and is stored as an int */
    r = rec1("i", crm_value_num(5.0));
    assert_int_equal(crm_schema_validate(&f->things, r, 1, NULL, &err), CRM_OK);
    assert_int_equal(crm_map_get(r, "i")->type, CRM_T_INT);
    assert_int_equal(crm_map_get(r, "i")->u.i, 5);
    crm_value_free(r);

    check_rec(&f->things, rec1("i", crm_value_num(5.5)), 1, "i", "must be an integer");
    check_rec(&f->things, rec1("i", crm_value_num(1e30)), 1, "i", "must be an integer");
    bad1(&f->things, "{\"i\": \"5\"}", "i", "must be an integer");
    bad1(&f->things, "{\"i\": true}", "i", "must be an integer");
    bad1(&f->things, "{\"i\": -1}", "i", "value must be at least 0");
    bad1(&f->things, "{\"i\": 101}", "i", "value must be at most 100");
    check_rec(&f->things, rec1("i", crm_value_num(101.0)), 1, "i", "value must be at most 100");
}

static void test_validate_number_takes_int_and_float(void **state)
{
    vfix *f = *state;
    crm_value *r;
    crm_err err;
    ok1(&f->things, "{\"num\": 1}");
    ok1(&f->things, "{\"num\": -1.5}");
    check_rec(&f->things, rec1("num", crm_value_num(0.25)), 1, NULL, NULL);
    /* a number field keeps a float a float */
    r = rec1("num", crm_value_num(1.0));
    assert_int_equal(crm_schema_validate(&f->things, r, 1, NULL, &err), CRM_OK);
    assert_int_equal(crm_map_get(r, "num")->type, CRM_T_NUM);
    crm_value_free(r);
    bad1(&f->things, "{\"num\": \"1\"}", "num", "must be a number");
    bad1(&f->things, "{\"num\": false}", "num", "must be a number");
    check_rec(&f->things, rec1("num", crm_value_num(1.75)), 1, "num", "value must be at most 1.5");
    bad1(&f->things, "{\"num\": -2}", "num", "value must be at least -1.5");
}

static void test_validate_bool(void **state)
{
    vfix *f = *state;
    ok1(&f->things, "{\"b\": true}");
    ok1(&f->things, "{\"b\": false}");
    bad1(&f->things, "{\"b\": 1}", "b", "must be a bool");
    bad1(&f->things, "{\"b\": \"true\"}", "b", "must be a bool");
}

static void test_validate_timestamp_is_integer_milliseconds(void **state)
{
    vfix *f = *state;
    crm_value *r;
    crm_err err;
    ok1(&f->things, "{\"ts\": 1700000000000}");
    r = rec1("ts", crm_value_num(1700000000000.0));
    assert_int_equal(crm_schema_validate(&f->things, r, 1, NULL, &err), CRM_OK);
    assert_int_equal(crm_map_get(r, "ts")->type, CRM_T_INT);
    assert_int_equal(crm_map_get(r, "ts")->u.i, 1700000000000LL);
    crm_value_free(r);
    check_rec(&f->things, rec1("ts", crm_value_num(1.5)), 1, "ts",
              "must be an integer (milliseconds since the epoch)");
    bad1(&f->things, "{\"ts\": \"2024-01-01\"}", "ts",
         "must be an integer (milliseconds since the epoch)");
}

static void test_validate_enum_only_declared_values(void **state)
{
    vfix *f = *state;
    ok1(&f->things, "{\"e\": \"red\"}");
    ok1(&f->things, "{\"e\": \"green\"}");
    bad1(&f->things, "{\"e\": \"blue\"}", "e", "must be one of \"red\", \"green\" (got \"blue\")");
    bad1(&f->things, "{\"e\": \"Red\"}", "e", "must be one of \"red\", \"green\" (got \"Red\")");
    bad1(&f->things, "{\"e\": 1}", "e", "must be a string");
}

static void test_validate_ref_is_a_non_empty_string(void **state)
{
    vfix *f = *state;
    ok1(&f->things, "{\"r\": \"t_1\"}");
    bad1(&f->things, "{\"r\": \"\"}", "r", "must be a non-empty id");
    bad1(&f->things, "{\"r\": 3}", "r", "must be a string");
    bad1(&f->things, "{\"r\": {\"id\": \"t_1\"}}", "r", "must be a string");
}

static void test_validate_array_items_of_each_type_name_the_index(void **state)
{
    vfix *f = *state;
    crm_value *r;
    crm_err err;
    ok1(&f->things, "{\"as\": []}");
    ok1(&f->things, "{\"as\": [\"a\", \"b\"]}");
    bad1(&f->things, "{\"as\": [\"a\", 1]}", "as", "item 1 must be a string");
    ok1(&f->things, "{\"ai\": [1, 2, 3]}");
    bad1(&f->things, "{\"ai\": [1, 2, \"3\"]}", "ai", "item 2 must be an integer");
    {
        crm_value *a = crm_value_arr();
        crm_arr_push(a, crm_value_int(1));
        crm_arr_push(a, crm_value_num(2.5));
        check_rec(&f->things, rec1("ai", a), 1, "ai", "item 1 must be an integer");
    }
    /* integral floats in an int array become ints too */
    {
        crm_value *a = crm_value_arr();
        crm_arr_push(a, crm_value_num(4.0));
        r = rec1("ai", a);
        assert_int_equal(crm_schema_validate(&f->things, r, 1, NULL, &err), CRM_OK);
        assert_int_equal(crm_map_get(r, "ai")->u.arr.items[0]->type, CRM_T_INT);
        crm_value_free(r);
    }
    ok1(&f->things, "{\"an\": [1, 2.5]}");
    bad1(&f->things, "{\"an\": [1, \"x\"]}", "an", "item 1 must be a number");
    ok1(&f->things, "{\"ab\": [true, false]}");
    bad1(&f->things, "{\"ab\": [0]}", "ab", "item 0 must be a bool");
    ok1(&f->things, "{\"at\": [1700000000000]}");
    bad1(&f->things, "{\"at\": [1, \"now\"]}", "at",
         "item 1 must be an integer (milliseconds since the epoch)");
    ok1(&f->things, "{\"am\": [{}, {\"k\": 1}]}");
    bad1(&f->things, "{\"am\": [{}, []]}", "am", "item 1 must be a map");
    /* no items type: anything goes */
    ok1(&f->things, "{\"arr\": [1, \"x\", {}]}");
    bad1(&f->things, "{\"as\": \"a\"}", "as", "must be an array");
    bad1(&f->things, "{\"arr\": {}}", "arr", "must be an array");
}

static void test_validate_array_length_bounds(void **state)
{
    vfix *f = *state;
    ok1(&f->things, "{\"arr\": [1]}");
    ok1(&f->things, "{\"arr\": [1, 2, 3]}");
    bad1(&f->things, "{\"arr\": []}", "arr", "length must be at least 1");
    bad1(&f->things, "{\"arr\": [1, 2, 3, 4]}", "arr", "length must be at most 3");
}

static void test_validate_map(void **state)
{
    vfix *f = *state;
    ok1(&f->things, "{\"m\": {}}");
    ok1(&f->things, "{\"m\": {\"a\": [1, {\"b\": null}]}}");
    bad1(&f->things, "{\"m\": []}", "m", "must be a map");
    bad1(&f->things, "{\"m\": \"x\"}", "m", "must be a map");
}

static void test_validate_required_on_create_and_still_on_update(void **state)
{
    vfix *f = *state;
    check_rec(&f->people, J("{\"age\": 3}"), 1, "name", "is required");
    check_rec(&f->people, J("{\"age\": 3}"), 0, "name", "is required");
    check_rec(&f->people, J("{\"name\": \"Ann\"}"), 0, NULL, NULL);
    check_rec(&f->people, J("{\"name\": \"Ann\"}"), 1, NULL, NULL);
    /* present but of the wrong type: one problem, the type */
    check_rec(&f->people, J("{\"name\": 1}"), 1, "name", "must be a string");
}

static void test_validate_defaults_fill_on_create_only(void **state)
{
    vfix *f = *state;
    crm_value *r = J("{\"name\": \"Ann\"}");
    crm_value *want = J("{\"name\": \"Ann\", \"level\": 7, \"stage\": \"new\", \"tags\": [\"a\"]}");
    crm_err err;
    assert_int_equal(crm_schema_validate(&f->people, r, 1, NULL, &err), CRM_OK);
    assert_true(crm_value_equal(r, want));
    assert_int_equal(crm_map_get(r, "level")->type, CRM_T_INT);
    crm_value_free(r);
    crm_value_free(want);

    /* a given value wins over the default */
    r = J("{\"name\": \"Ann\", \"level\": 3}");
    assert_int_equal(crm_schema_validate(&f->people, r, 1, NULL, &err), CRM_OK);
    assert_int_equal(crm_map_int(r, "level", -1), 3);
    crm_value_free(r);

    /* update: no default comes back */
    r = J("{\"name\": \"Ann\"}");
    assert_int_equal(crm_schema_validate(&f->people, r, 0, NULL, &err), CRM_OK);
    assert_null(crm_map_get(r, "level"));
    assert_null(crm_map_get(r, "stage"));
    assert_null(crm_map_get(r, "tags"));
    assert_int_equal(r->u.map.n, 1);
    crm_value_free(r);

    /* the default is a copy: changing a record leaves the schema's alone */
    r = J("{\"name\": \"Ann\"}");
    assert_int_equal(crm_schema_validate(&f->people, r, 1, NULL, &err), CRM_OK);
    crm_arr_push(crm_map_get(r, "tags"), crm_value_cstr("b"));
    crm_value_free(r);
    r = J("{\"name\": \"Bob\"}");
    assert_int_equal(crm_schema_validate(&f->people, r, 1, NULL, &err), CRM_OK);
    assert_int_equal(crm_map_get(r, "tags")->u.arr.n, 1);
    crm_value_free(r);
}

static void test_validate_strict_refuses_unknown_fields(void **state)
{
    vfix *f = *state;
    bad1(&f->things, "{\"zzz\": 1}", "zzz", "unknown field");
    bad1(&f->things, "{\"b\": true, \"colour\": \"red\"}", "colour", "unknown field");
    bad1(&f->things, "{\"_x\": 1}", "_x", "unknown field");
}

static void test_validate_non_strict_accepts_unknown_but_not_underscore(void **state)
{
    vfix *f = *state;
    crm_value *r = J("{\"name\": \"x\", \"colour\": \"red\", \"n\": [1, {}]}");
    crm_value *copy = crm_value_dup(r);
    crm_err err;
    assert_int_equal(crm_schema_validate(&f->loose, r, 1, NULL, &err), CRM_OK);
    assert_true(crm_value_equal(r, copy)); /* kept as given */
    crm_value_free(r);
    crm_value_free(copy);
    bad1(&f->loose, "{\"_secret\": 1}", "_secret", "names starting with _ are reserved");
    /* declared fields are still checked */
    bad1(&f->loose, "{\"name\": 1, \"other\": 1}", "name", "must be a string");
}

static void test_validate_nil_fields_are_removed(void **state)
{
    vfix *f = *state;
    crm_value *r = J("{\"s\": null, \"b\": true, \"i\": null, \"zzz\": null}");
    crm_err err;
    /* a nil unknown field in a strict collection is just absent */
    assert_int_equal(crm_schema_validate(&f->things, r, 1, NULL, &err), CRM_OK);
    assert_int_equal(r->u.map.n, 1);
    assert_non_null(crm_map_get(r, "b"));
    crm_value_free(r);

    /* nil means absent: a required field set to nil is missing... */
    check_rec(&f->people, J("{\"name\": null}"), 0, "name", "is required");
    /* ...and on create a defaulted field set to nil gets its default */
    r = J("{\"name\": \"Ann\", \"level\": null}");
    assert_int_equal(crm_schema_validate(&f->people, r, 1, NULL, &err), CRM_OK);
    assert_int_equal(crm_map_int(r, "level", -1), 7);
    crm_value_free(r);
}

static void test_validate_leaves_system_fields_alone(void **state)
{
    vfix *f = *state;
    crm_value *r = J("{\"id\": \"t_1\", \"_rev\": 3, \"_created\": 10, \"_updated\": 20, "
                     "\"b\": true}");
    crm_value *copy = crm_value_dup(r);
    crm_err err;
    /* strict, yet system fields are not "unknown"; their values are untouched */
    assert_int_equal(crm_schema_validate(&f->things, r, 1, NULL, &err), CRM_OK);
    assert_true(crm_value_equal(r, copy));
    crm_value_free(r);
    crm_value_free(copy);

    /* not type-checked either: the store owns them */
    r = J("{\"id\": 7, \"_rev\": \"x\", \"name\": \"Ann\"}");
    copy = crm_value_dup(r);
    assert_int_equal(crm_schema_validate(&f->people, r, 0, NULL, &err), CRM_OK);
    assert_true(crm_value_equal(r, copy));
    crm_value_free(r);
    crm_value_free(copy);
    assert_true(crm_is_system_field("id"));
    assert_true(crm_is_system_field("_rev"));
    assert_true(crm_is_system_field("_created"));
    assert_true(crm_is_system_field("_updated"));
    assert_false(crm_is_system_field("_other"));
    assert_false(crm_is_system_field("ids"));
}

static void test_validate_details_list_every_failing_field(void **state)
{
    vfix *f = *state;
    crm_value *r = J("{\"name\": 1, \"age\": \"x\", \"zzz\": true, \"stage\": \"mid\"}");
    crm_value *details = NULL;
    crm_value *want = J("{\"fields\": {\"name\": \"must be a string\", "
                        "\"age\": \"must be an integer\", \"zzz\": \"unknown field\", "
                        "\"stage\": \"must be one of \\\"new\\\", \\\"old\\\" (got \\\"mid\\\")\"}}");
    crm_err err = {0, ""};
    /* people is strict by default: "strict" is absent from its file */
    assert_int_equal(f->people.strict, 1);
    assert_int_equal(crm_schema_validate(&f->people, r, 1, &details, &err), CRM_VALIDATION);
    assert_non_null(details);
    if (!crm_value_equal(details, want)) {
        char *got = crm_json_encode(details, NULL);
        fail_msg("details: %s", got ? got : "?");
    }
    /* exactly one key at the top */
    assert_int_equal(details->u.map.n, 1);
    assert_string_equal(err.msg, "name: must be a string (and 3 more)");
    assert_int_equal(err.code, CRM_VALIDATION);
    crm_value_free(details);
    crm_value_free(want);
    crm_value_free(r);

    /* a missing required field is listed too, after the record's own problems */
    r = J("{\"age\": 1.5, \"level\": \"high\"}");
    want = J("{\"fields\": {\"age\": \"must be an integer\", \"level\": \"must be an integer\", "
             "\"name\": \"is required\"}}");
    details = NULL;
    assert_int_equal(crm_schema_validate(&f->people, r, 1, &details, &err), CRM_VALIDATION);
    assert_non_null(details);
    assert_true(crm_value_equal(details, want));
    assert_string_equal(err.msg, "age: must be an integer (and 2 more)");
    crm_value_free(details);
    crm_value_free(want);
    crm_value_free(r);

    /* two problems: "(and 1 more)"; details may be NULL */
    r = J("{\"age\": \"x\"}");
    assert_int_equal(crm_schema_validate(&f->people, r, 0, NULL, &err), CRM_VALIDATION);
    assert_string_equal(err.msg, "age: must be an integer (and 1 more)");
    crm_value_free(r);

    /* err may be NULL too */
    r = J("{\"age\": \"x\"}");
    assert_int_equal(crm_schema_validate(&f->people, r, 0, NULL, NULL), CRM_VALIDATION);
    crm_value_free(r);

}

static void test_validate_refuses_a_record_that_is_not_a_map(void **state)
{
    vfix *f = *state;
    crm_value *details = (crm_value *)1;
    crm_value *r = J("[1, 2]");
    crm_err err;
    assert_int_equal(crm_schema_validate(&f->things, r, 1, &details, &err), CRM_VALIDATION);
    assert_string_equal(err.msg, "a record must be a map");
    assert_null(details);
    crm_value_free(r);
    assert_int_equal(crm_schema_validate(&f->things, NULL, 1, NULL, &err), CRM_VALIDATION);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bundled_schemas_load_with_every_designed_collection),
        cmocka_unit_test(test_minimal_folder_without_roles_loads_with_null_roles),
        cmocka_unit_test(test_refuses_invalid_json),
        cmocka_unit_test(test_refuses_unknown_type),
        cmocka_unit_test(test_refuses_unknown_option_typo_requried),
        cmocka_unit_test(test_personal_option),
        cmocka_unit_test(test_about_option),
        cmocka_unit_test(test_on_delete_option),
        cmocka_unit_test(test_refuses_enum_without_values),
        cmocka_unit_test(test_refuses_enum_values_that_are_not_strings),
        cmocka_unit_test(test_refuses_ref_without_to),
        cmocka_unit_test(test_refuses_ref_to_unknown_collection),
        cmocka_unit_test(test_refuses_index_on_array_field),
        cmocka_unit_test(test_refuses_default_of_the_wrong_type),
        cmocka_unit_test(test_refuses_default_outside_min_max),
        cmocka_unit_test(test_refuses_min_greater_than_max),
        cmocka_unit_test(test_refuses_file_name_not_matching_collection),
        cmocka_unit_test(test_refuses_collection_named_methods),
        cmocka_unit_test(test_refuses_bad_field_names),
        cmocka_unit_test(test_refuses_unknown_top_level_key),
        cmocka_unit_test(test_refuses_strict_that_is_not_a_bool),
        cmocka_unit_test(test_refuses_roles_naming_unknown_collection),
        cmocka_unit_test(test_refuses_roles_hiding_unknown_field),
        cmocka_unit_test(test_refuses_roles_with_bad_permission_word),
        cmocka_unit_test(test_refuses_roles_declaring_admin),
        cmocka_unit_test(test_roles_hiding_a_known_field_and_granting_methods_load),
        cmocka_unit_test(test_refuses_empty_schemas_folder),
        cmocka_unit_test(test_refuses_missing_schemas_folder),
        cmocka_unit_test(test_refuses_file_over_one_mib),
        cmocka_unit_test(test_refuses_forty_deep_nesting),
        cmocka_unit_test_setup_teardown(test_validate_string_type_and_length_in_utf8_characters,
                                        vsetup, vteardown),
        cmocka_unit_test_setup_teardown(test_validate_int_accepts_integral_float_and_converts_it,
                                        vsetup, vteardown),
        cmocka_unit_test_setup_teardown(test_validate_number_takes_int_and_float, vsetup,
                                        vteardown),
        cmocka_unit_test_setup_teardown(test_validate_bool, vsetup, vteardown),
        cmocka_unit_test_setup_teardown(test_validate_timestamp_is_integer_milliseconds, vsetup,
                                        vteardown),
        cmocka_unit_test_setup_teardown(test_validate_enum_only_declared_values, vsetup,
                                        vteardown),
        cmocka_unit_test_setup_teardown(test_validate_ref_is_a_non_empty_string, vsetup,
                                        vteardown),
        cmocka_unit_test_setup_teardown(test_validate_array_items_of_each_type_name_the_index,
                                        vsetup, vteardown),
        cmocka_unit_test_setup_teardown(test_validate_array_length_bounds, vsetup, vteardown),
        cmocka_unit_test_setup_teardown(test_validate_map, vsetup, vteardown),
        cmocka_unit_test_setup_teardown(test_validate_required_on_create_and_still_on_update,
                                        vsetup, vteardown),
        cmocka_unit_test_setup_teardown(test_validate_defaults_fill_on_create_only, vsetup,
                                        vteardown),
        cmocka_unit_test_setup_teardown(test_validate_strict_refuses_unknown_fields, vsetup,
                                        vteardown),
        cmocka_unit_test_setup_teardown(test_validate_non_strict_accepts_unknown_but_not_underscore,
                                        vsetup, vteardown),
        cmocka_unit_test_setup_teardown(test_validate_nil_fields_are_removed, vsetup, vteardown),
        cmocka_unit_test_setup_teardown(test_validate_leaves_system_fields_alone, vsetup,
                                        vteardown),
        cmocka_unit_test_setup_teardown(test_validate_details_list_every_failing_field, vsetup,
                                        vteardown),
        cmocka_unit_test_setup_teardown(test_validate_refuses_a_record_that_is_not_a_map, vsetup,
                                        vteardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
