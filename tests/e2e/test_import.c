/*
 * test_import -- `crmd import` and `crmd export` end to end, with the
 * real crmd binary on temp folders:
 *  - a CSV with good and bad rows: each bad row is reported with its line
 *    number and reason (type errors, a schema violation, a field count, a
 *    CSV quoting error, a bad time, bad JSON in a cell), the good rows are
 *    stored (a quoted newline included, so a later row's line number is
 *    still right), and scripts/lifecycle.lua's hooks ran: its before-hook
 *    set life_phase and its after-hook wrote lifecycle_transitions;
 *  - the same import again with --key email creates nothing (no
 *    duplicates, no new transitions);
 *  - a strict collection's unknown column refuses the file; an NDJSON row
 *    with an unknown field is reported by line;
 *  - import is refused while a server holds the folder; export runs
 *    beside the server;
 *  - round trips: records with quotes, commas, newlines (LF and CRLF),
 *    tabs, edge spaces, empty strings, unicode, arrays, maps, numbers and
 *    timestamps, exported as CSV and as NDJSON, imported into fresh
 *    stores, come back equal field for field (ids included).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "codec.h"
#include "tmpdir.h"
#include "testutil.h"
#include "wsclient.h"

static crmd_proc p; /* stopped by the teardown when an assertion failed */
static char *work, *scripts;
static const char *bin, *schemas;

static int setup(void **state)
{
    char src[2048], *text;
    (void)state;
    bin = getenv("CRMD_BIN");
    schemas = getenv("CRM_SCHEMAS");
    assert_non_null(bin);
    assert_non_null(schemas);
    assert_non_null(getenv("CRM_SCRIPTS"));
    work = crm_tmpdir_make("import");
    scripts = crm_tmpdir_make("import-scripts");
    snprintf(src, sizeof src, "%s/lifecycle.lua", getenv("CRM_SCRIPTS"));
    assert_non_null(text = crm_test_read_file(src));
    crm_tmpdir_write(scripts, "lifecycle.lua", text);
    free(text);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (p.pid > 0)
        crmd_stop(&p);
    crm_tmpdir_remove(work);
    crm_tmpdir_remove(scripts);
    return 0;
}

/* `crmd import` into work/DATA; returns the exit code, *out stdout+stderr. */
static int import(const char *data, const char *coll, const char *file, const char *extra,
                  const char *with_scripts, char **out)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "'%s' import %s '%s/%s' --data '%s/%s' --schemas '%s' --scripts '%s' "
             "--plugins /nonexistent/crmd-no-plugins %s 2>&1",
             bin, coll, work, file, work, data, schemas,
             with_scripts ? with_scripts : "/nonexistent/crmd-no-scripts", extra ? extra : "");
    return crm_test_run(cmd, out);
}

static int export_to(const char *data, const char *coll, const char *file, const char *extra)
{
    char cmd[8192], *out;
    int rc;
    snprintf(cmd, sizeof cmd, "'%s' export %s '%s/%s' --data '%s/%s' --schemas '%s' --quiet %s 2>&1",
             bin, coll, work, file, work, data, schemas, extra ? extra : "");
    rc = crm_test_run(cmd, &out);
    if (rc != 0)
        fprintf(stderr, "%s", out);
    free(out);
    return rc;
}

/* An NDJSON file as an array of records. */
static crm_value *load_ndjson(const char *file)
{
    char path[2048], *text, *line, *save = NULL;
    crm_value *arr = crm_value_arr();
    snprintf(path, sizeof path, "%s/%s", work, file);
    assert_non_null(text = crm_test_read_file(path));
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        assert_int_equal(crm_arr_push(arr, crm_test_json(line)), 0);
    free(text);
    return arr;
}

static const crm_value *find(const crm_value *arr, const char *field, const char *value)
{
    for (size_t i = 0; i < arr->u.arr.n; i++)
        if (strcmp(crm_map_str(arr->u.arr.items[i], field, ""), value) == 0)
            return arr->u.arr.items[i];
    return NULL;
}

static size_t count_where(const crm_value *arr, const char *field, const char *value)
{
    size_t n = 0;
    for (size_t i = 0; i < arr->u.arr.n; i++)
        n += strcmp(crm_map_str(arr->u.arr.items[i], field, ""), value) == 0;
    return n;
}

static void write_file(const char *name, const char *text)
{
    crm_tmpdir_write(work, name, text);
}

/* Lines 1..12; a quoted newline makes Carl's record span lines 4-5. */
static const char MIXED_CSV[] =
    "name,email,lifecycle_stage,credit_limit,tags,birth_date,consent_email,notes\n"
    "Ann,ann@example.com,loyal,100,\"[\"\"vip\"\"]\",1990-05-01,true,first\n"
    "Bob,bob@example.com,prospect,lots,,,,\n"
    "Carl,carl@example.com,,5,,,false,\"two\n"
    "lines, and a comma\"\n"
    "Dana,dana@example.com,vip,1,,,,\n"
    "Eve,eve@example.com,prospect,1,,,\n"
    "\"Fay\"x,fay@example.com,,1,,,,\n"
    "G\xc3\xbcnther \xe2\x98\x83,gunther@example.com,loyal,7,,1980-02-29T12:30:00+02:00,1,\"say \"\"hi\"\"\"\n"
    "Hal,hal@example.com,,1,,1980-02-30,,\n"
    "Ida,ida@example.com,,1,[oops,,,\n"
    "Jo,jo@example.com,repeat,,,,,\n";

static void csv_good_and_bad_rows(void **state)
{
    char *out;
    crm_value *contacts, *trans;
    const crm_value *r;
    int rc;
    (void)state;
    write_file("mixed.csv", MIXED_CSV);
    rc = import("d1", "contacts", "mixed.csv", "--key email --quiet", scripts, &out);
    fprintf(stderr, "%s", out);
    assert_int_equal(rc, 3); /* finished, some rows bad */
    /* each bad row by its line and reason */
    assert_non_null(strstr(out, "mixed.csv:3: credit_limit: not a whole number: \"lots\""));
    assert_non_null(strstr(out, "mixed.csv:6: lifecycle_stage"));     /* not in the enum */
    assert_non_null(strstr(out, "mixed.csv:7: 7 fields, the header has 8"));
    assert_non_null(strstr(out, "mixed.csv:8: CSV quoting error"));
    assert_non_null(strstr(out, "mixed.csv:10: birth_date: not a time"));
    assert_non_null(strstr(out, "mixed.csv:11: tags: not JSON"));
    assert_null(strstr(out, "mixed.csv:2:"));
    assert_null(strstr(out, "mixed.csv:4:"));
    assert_null(strstr(out, "mixed.csv:9:"));
    assert_null(strstr(out, "mixed.csv:12:"));
    assert_non_null(strstr(out, "10 rows: 4 created, 0 updated, 0 unchanged, 6 bad"));
    free(out);

    assert_int_equal(export_to("d1", "contacts", "c1.ndjson", NULL), 0);
    contacts = load_ndjson("c1.ndjson");
    assert_int_equal(contacts->u.arr.n, 4);
    assert_non_null(r = find(contacts, "email", "ann@example.com"));
    assert_int_equal(crm_map_int(r, "credit_limit", 0), 100);
    assert_string_equal(crm_map_get(r, "tags")->u.arr.items[0]->u.str.s, "vip");
    assert_int_equal(crm_map_int(r, "birth_date", 0), 641520000000LL);
    assert_true(crm_map_get(r, "consent_email")->u.b);
    assert_string_equal(crm_map_str(r, "life_phase", ""), "maturity"); /* before-hook */
    assert_non_null(r = find(contacts, "email", "carl@example.com"));
    assert_string_equal(crm_map_str(r, "notes", ""), "two\nlines, and a comma");
    assert_non_null(r = find(contacts, "email", "gunther@example.com"));
    assert_string_equal(crm_map_str(r, "name", ""), "G\xc3\xbcnther \xe2\x98\x83");
    assert_string_equal(crm_map_str(r, "notes", ""), "say \"hi\"");
    assert_int_equal(crm_map_int(r, "birth_date", 0), 320668200000LL); /* 10:30 UTC */
    assert_non_null(find(contacts, "email", "jo@example.com"));

    /* the after-hook: one transition per contact created past prospect */
    assert_int_equal(export_to("d1", "lifecycle_transitions", "t1.ndjson", NULL), 0);
    trans = load_ndjson("t1.ndjson");
    assert_int_equal(count_where(trans, "reason", "created"), 3); /* Ann, Günther, Jo */
    crm_value_free(trans);

    /* again, keyed by email: nothing new */
    rc = import("d1", "contacts", "mixed.csv", "--key email --quiet", scripts, &out);
    assert_int_equal(rc, 3);
    assert_non_null(strstr(out, "10 rows: 0 created, 0 updated, 4 unchanged, 6 bad"));
    free(out);
    /* a changed cell updates the record it keys to */
    write_file("change.csv", "email,credit_limit\nann@example.com,250\n");
    rc = import("d1", "contacts", "change.csv", "--key email --quiet", scripts, &out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "1 rows: 0 created, 1 updated"));
    free(out);
    assert_int_equal(export_to("d1", "contacts", "c2.ndjson", NULL), 0);
    crm_value_free(contacts);
    contacts = load_ndjson("c2.ndjson");
    assert_int_equal(contacts->u.arr.n, 4);
    assert_int_equal(crm_map_int(find(contacts, "email", "ann@example.com"), "credit_limit", 0),
                     250);
    crm_value_free(contacts);
    assert_int_equal(export_to("d1", "lifecycle_transitions", "t2.ndjson", NULL), 0);
    trans = load_ndjson("t2.ndjson");
    assert_int_equal(trans->u.arr.n, 3);
    crm_value_free(trans);

    /* a strict collection refuses an unknown column: nothing is written */
    write_file("unknown.csv", "name,shoe_size\nZed,44\n");
    rc = import("d1", "contacts", "unknown.csv", "--quiet", scripts, &out);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "unknown.csv:1: header: unknown field shoe_size"));
    free(out);
    /* NDJSON: an unknown field, bad JSON and a good row, each by line */
    write_file("rows.ndjson", "{\"name\": \"Kim\", \"shoe_size\": 44}\n"
                              "{\"name\": \n"
                              "\n"
                              "{\"name\": \"Lu\", \"stage_changed_at\": \"2024-01-02T03:04:05Z\"}\n");
    rc = import("d1", "contacts", "rows.ndjson", "--quiet", scripts, &out);
    fprintf(stderr, "%s", out);
    assert_int_equal(rc, 3);
    assert_non_null(strstr(out, "rows.ndjson:1: shoe_size"));
    assert_non_null(strstr(out, "rows.ndjson:2: invalid JSON"));
    assert_non_null(strstr(out, "3 rows: 1 created"));
    free(out);
}

static void refused_while_serving(void **state)
{
    char data[2048], *out;
    crm_value *c;
    int rc;
    (void)state;
    write_file("one.csv", "name,email\nAnn,ann@example.com\n");
    assert_int_equal(import("d2", "contacts", "one.csv", "--quiet", NULL, &out), 0);
    free(out);
    snprintf(data, sizeof data, "%s/d2", work);
    assert_int_equal(crmd_start(&p, bin, schemas, data), 0);
    write_file("two.csv", "name,email\nBob,bob@example.com\n");
    rc = import("d2", "contacts", "two.csv", "--quiet", NULL, &out);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "is in use by crmd serve pid"));
    free(out);
    /* export is a reader: it runs beside the server */
    assert_int_equal(export_to("d2", "contacts", "served.ndjson", NULL), 0);
    c = load_ndjson("served.ndjson");
    assert_int_equal(c->u.arr.n, 1);
    crm_value_free(c);
    /* the export is in the audit trail, appended beside the running server */
    {
        ws_client a;
        char *tok = crmd_token(&p, "admin");
        crm_value *r;
        const crm_value *entries, *e;
        assert_non_null(tok);
        assert_int_equal(ws_connect(&a, p.port, "crm.v1.json", NULL, NULL), 0);
        assert_int_equal(ws_auth(&a, tok, 5000), 0);
        r = ws_request(&a, 5000, NULL, "{\"op\":\"audit\",\"action\":\"export\"}");
        assert_non_null(r);
        entries = crm_map_get(crm_map_get(r, "result"), "entries");
        assert_non_null(entries);
        assert_int_equal(entries->u.arr.n, 1);
        e = entries->u.arr.items[0];
        assert_string_equal(crm_map_str(e, "collection", ""), "contacts");
        assert_string_equal(crm_map_str(e, "user", ""), "cli:export");
        assert_int_equal(crm_map_int(crm_map_get(e, "detail"), "records", -1), 1);
        crm_value_free(r);
        ws_close(&a);
        free(tok);
    }
    assert_int_equal(crmd_stop_keep(&p), 0);
    /* and once the server is gone, the import goes in */
    assert_int_equal(import("d2", "contacts", "two.csv", "--quiet", NULL, &out), 0);
    free(out);
}

/* Awkward values, one record each (NDJSON as the store's JSON). */
static const char TRICKY[] =
    "{\"name\": \"Quote \\\"q\\\", comma, and\\nnewline\", \"email\": \"a@x.io\", \"tags\": "
    "[\"a,b\", \"c\\\"d\", \"\"], \"extra\": {\"k\": [1, 2.5, {\"x\": null}], \"s\": \"\\u00e9\"}}\n"
    "{\"name\": \"\\u00dcn\\u00efc\\u00f8d\\u00e9 \\u2603 \\ud834\\udd1e\", \"email\": "
    "\"b@x.io\", \"notes\": \"crlf\\r\\ninside\", \"churn_risk\": 0.1, \"credit_limit\": 0}\n"
    "{\"name\": \"  padded  \", \"email\": \"c@x.io\", \"notes\": \"\", \"job_title\": "
    "\"tab\\there\", \"birth_date\": 1234567890123, \"consent_sms\": true}\n"
    "{\"name\": \"=1+2\", \"email\": \"d@x.io\", \"city\": \"\\\"\", \"street\": \",\", "
    "\"churn_risk\": 0.30000000000000004, \"lifecycle_stage\": \"churned\"}\n";

/* Field for field equal, apart from what the store sets on every write. */
static void same_records(const crm_value *a, const crm_value *b)
{
    assert_int_equal(a->u.arr.n, b->u.arr.n);
    for (size_t i = 0; i < a->u.arr.n; i++) {
        crm_value *x = crm_value_dup(a->u.arr.items[i]);
        const crm_value *y0 = find(b, "id", crm_map_str(x, "id", ""));
        crm_value *y;
        assert_non_null(y0);
        y = crm_value_dup(y0);
        for (int k = 0; k < 2; k++) {
            crm_value *v = k ? y : x;
            crm_map_del(v, "_rev");
            crm_map_del(v, "_created");
            crm_map_del(v, "_updated");
        }
        if (!crm_value_equal(x, y)) {
            char *jx = crm_json_encode(x, NULL), *jy = crm_json_encode(y, NULL);
            fprintf(stderr, "differs:\n  %s\n  %s\n", jx, jy);
            free(jx);
            free(jy);
        }
        assert_true(crm_value_equal(x, y));
        crm_value_free(x);
        crm_value_free(y);
    }
}

static void round_trips(void **state)
{
    char *out;
    crm_value *a, *b, *c;
    (void)state;
    write_file("tricky.ndjson", TRICKY);
    assert_int_equal(import("src", "contacts", "tricky.ndjson", "--quiet", NULL, &out), 0);
    free(out);
    assert_int_equal(export_to("src", "contacts", "src.ndjson", NULL), 0);
    a = load_ndjson("src.ndjson");
    assert_int_equal(a->u.arr.n, 4);

    /* CSV */
    assert_int_equal(export_to("src", "contacts", "src.csv", NULL), 0);
    assert_int_equal(import("viacsv", "contacts", "src.csv", "--quiet", NULL, &out), 0);
    assert_non_null(strstr(out, "4 rows: 4 created"));
    free(out);
    assert_int_equal(export_to("viacsv", "contacts", "viacsv.ndjson", NULL), 0);
    b = load_ndjson("viacsv.ndjson");
    same_records(a, b);
    /* keyed by id, the same file again changes nothing */
    assert_int_equal(import("viacsv", "contacts", "src.csv", "--key id --quiet", NULL, &out), 0);
    assert_non_null(strstr(out, "4 rows: 0 created, 0 updated, 4 unchanged"));
    free(out);

    /* NDJSON, read from stdin */
    {
        char cmd[8192];
        snprintf(cmd, sizeof cmd,
                 "'%s' import contacts - --format ndjson --data '%s/viajson' --schemas '%s' "
                 "--scripts /nonexistent/x --plugins /nonexistent/x --quiet < '%s/src.ndjson' 2>&1",
                 bin, work, schemas, work);
        assert_int_equal(crm_test_run(cmd, &out), 0);
        free(out);
    }
    assert_int_equal(export_to("viajson", "contacts", "viajson.jsonl", NULL), 0);
    c = load_ndjson("viajson.jsonl");
    same_records(a, c);
    crm_value_free(a);
    crm_value_free(b);
    crm_value_free(c);
}

/* Imports file into d3's contacts with flags: its exit code is want and its
 * output holds says (and also, when not NULL). */
static void import_says(const char *file, const char *flags, int want, const char *says,
                        const char *also)
{
    char *out;
    int rc = import("d3", "contacts", file, flags, NULL, &out);
    assert_int_equal(rc, want);
    assert_non_null(strstr(out, says));
    if (also)
        assert_non_null(strstr(out, also));
    free(out);
}

/* Hostile input: every limit gives a report or a refusal, never a crash,
 * and the rows after a bad one still go in. */
static void limits(void **state)
{
    char *big = malloc(70000);
    size_t n = 0;
    (void)state;
    assert_non_null(big);
    /* a line past --max-line, then a good row */
    n += (size_t)sprintf(big + n, "name,notes\nA,");
    memset(big + n, 'x', 3000);
    n += 3000;
    n += (size_t)sprintf(big + n, "\nB,ok\n");
    big[n] = '\0';
    write_file("long.csv", big);
    import_says("long.csv", "--max-line 1024 --quiet", 3,
                "long.csv:2: line longer than 1024 bytes", "2 rows: 1 created");
    /* a quoted field never closed: it may grow to --max-record, then the
     * record is refused; at the end of the input it is reported too */
    n = (size_t)sprintf(big, "name,notes\nC,\"open\n");
    for (int i = 0; i < 200; i++)
        n += (size_t)sprintf(big + n, "still inside the quote, line %03d\n", i);
    write_file("unclosed.csv", big);
    import_says("unclosed.csv", "--max-record 2048 --quiet", 3,
                "unclosed.csv:2: record longer than 2048 bytes", NULL);
    write_file("unclosed2.csv", "name,notes\nD,ok\nE,\"open\nand on\n");
    import_says("unclosed2.csv", "--quiet", 3,
                "unclosed2.csv:3: unterminated quoted field", "1 created");
    /* too many fields in a row; a header past the limit refuses the file */
    write_file("wide.csv", "name,notes\nF,a,b,c,d,e\nG,fine\n");
    import_says("wide.csv", "--max-fields 4 --quiet", 3,
                "wide.csv:2: too many fields", "1 created");
    import_says("wide.csv", "--max-fields 1 --quiet", 1,
                "wide.csv:1: header: too many fields", NULL);
    /* not UTF-8; binary junk; an empty file */
    write_file("latin1.csv", "name\nJ\xfcrgen\n\x01\x02\\\n");
    import_says("latin1.csv", "--quiet", 3, "latin1.csv:2: name: not valid UTF-8", NULL);
    write_file("empty.csv", "");
    import_says("empty.csv", "--quiet", 1, "no header row", NULL);
    /* --max-bad stops early */
    write_file("allbad.ndjson", "1\n2\n3\n4\n");
    import_says("allbad.ndjson", "--max-bad 2 --batch 1 --quiet", 1,
                "stopped after 2 bad rows", NULL);
    free(big);
}

/* --help of each data tool: its usage on stdout, exit 0 (it was
 * "unrecognized option '--help'" and exit 1) */
static void help_is_usage(void **state)
{
    static const char *const tools[] = {"import", "export", "backup", "restore"};
    (void)state;
    for (size_t i = 0; i < sizeof tools / sizeof *tools; i++) {
        char cmd[4200], *out = NULL;
        snprintf(cmd, sizeof cmd, "'%s' %s --help 2>/dev/null", getenv("CRMD_BIN"), tools[i]);
        assert_int_equal(crm_test_run(cmd, &out), 0);
        assert_non_null(strstr(out, "usage:"));
        assert_non_null(strstr(out, "crmd import"));
        free(out);
        snprintf(cmd, sizeof cmd, "'%s' %s --help 2>&1", getenv("CRMD_BIN"), tools[i]);
        assert_int_equal(crm_test_run(cmd, &out), 0);
        assert_null(strstr(out, "unrecognized"));
        free(out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(help_is_usage),
        cmocka_unit_test(csv_good_and_bad_rows),
        cmocka_unit_test(refused_while_serving),
        cmocka_unit_test(round_trips),
        cmocka_unit_test(limits),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
