/*
 * test_log -- kernel/log.c: each call is one line of JSON, ts, level and
 * event first; fields follow and cannot replace those three; lines below
 * the level are dropped; hostile text (quotes, newlines, control bytes,
 * bad UTF-8) still makes one valid JSON line; level names round-trip.
 * Lines are parsed with jansson, a parser we did not write.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "log.h"
#include "value.h"

static char captured[65536];
static size_t ncaptured;
static int nlines;

static void sink(const char *line, size_t len, void *ud)
{
    (void)ud;
    assert_true(len > 0 && line[len - 1] == '\n');
    assert_null(memchr(line, '\n', len - 1)); /* one line, whatever the text */
    assert_true(ncaptured + len < sizeof captured);
    memcpy(captured + ncaptured, line, len);
    ncaptured += len;
    captured[ncaptured] = 0;
    nlines++;
}

static int setup(void **state)
{
    (void)state;
    ncaptured = 0;
    nlines = 0;
    captured[0] = 0;
    crm_log_set_sink(sink, NULL);
    crm_log_set_level(CRM_LOG_INFO);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    crm_log_set_sink(NULL, NULL);
    crm_log_set_level(CRM_LOG_INFO);
    return 0;
}

/* The last captured line, parsed. */
static json_t *last_line(void)
{
    json_error_t je;
    char *start;
    json_t *o;
    assert_true(ncaptured > 0);
    captured[ncaptured - 1] = 0;
    start = strrchr(captured, '\n');
    start = start ? start + 1 : captured;
    o = json_loads(start, JSON_REJECT_DUPLICATES, &je);
    captured[ncaptured - 1] = '\n';
    if (!o)
        fail_msg("not JSON (%s): %s", je.text, start);
    return o;
}

static void test_a_line_is_ts_level_event_then_fields(void **state)
{
    crm_value *f = crm_value_map();
    json_t *o;
    void *it;
    (void)state;
    crm_map_set(f, "port", crm_value_int(8420));
    crm_map_set(f, "level", crm_value_cstr("forged")); /* cannot replace the real one */
    crm_map_set(f, "msg", crm_value_cstr("hello"));
    crm_log_fields(CRM_LOG_WARN, "ready", f);
    assert_int_equal(nlines, 1);
    o = last_line();
    it = json_object_iter(o);
    assert_string_equal(json_object_iter_key(it), "ts");
    assert_string_equal(json_object_iter_key(it = json_object_iter_next(o, it)), "level");
    assert_string_equal(json_object_iter_key(it = json_object_iter_next(o, it)), "event");
    assert_string_equal(json_object_iter_key(it = json_object_iter_next(o, it)), "port");
    assert_string_equal(json_string_value(json_object_get(o, "level")), "warn");
    assert_string_equal(json_string_value(json_object_get(o, "event")), "ready");
    assert_int_equal(json_integer_value(json_object_get(o, "port")), 8420);
    assert_string_equal(json_string_value(json_object_get(o, "msg")), "hello");
    assert_int_equal(json_object_size(o), 5);
    const char *ts = json_string_value(json_object_get(o, "ts"));
    assert_non_null(ts);
    assert_int_equal(strlen(ts), 24);
    assert_true(ts[4] == '-' && ts[10] == 'T' && ts[19] == '.' && ts[23] == 'Z');
    json_decref(o);
}

static void test_lines_below_the_level_are_dropped(void **state)
{
    (void)state;
    crm_log(CRM_LOG_DEBUG, "x", "not shown");
    crm_log_fields(CRM_LOG_DEBUG, "x", crm_value_map()); /* freed though dropped (ASan) */
    assert_int_equal(nlines, 0);
    crm_log_set_level(CRM_LOG_ERROR);
    crm_log(CRM_LOG_WARN, "x", "not shown");
    assert_int_equal(nlines, 0);
    crm_log(CRM_LOG_ERROR, "x", "shown %d", 1);
    assert_int_equal(nlines, 1);
    crm_log_set_level(CRM_LOG_DEBUG);
    crm_log(CRM_LOG_DEBUG, "x", "shown");
    crm_log(99, "x", "an unknown level counts as error");
    assert_int_equal(nlines, 3);
    json_t *o = last_line();
    assert_string_equal(json_string_value(json_object_get(o, "level")), "error");
    json_decref(o);
    crm_log_set_level(42); /* ignored */
    assert_int_equal(crm_log_level(), CRM_LOG_DEBUG);
}

static void test_hostile_text_stays_one_valid_json_line(void **state)
{
    static const char nasty[] = "a\"b\\c\nd\re\tf\x01g\x7f h\xff\xfe i\xc3\x28 \xe2\x82\xac";
    json_t *o;
    (void)state;
    crm_log(CRM_LOG_INFO, "script", "%s", nasty);
    o = last_line();
    const char *msg = json_string_value(json_object_get(o, "msg"));
    assert_non_null(msg);
    assert_non_null(strstr(msg, "a\"b\\c\nd\re\tf\x01g"));
    assert_non_null(strstr(msg, "\xe2\x82\xac"));    /* valid UTF-8 kept */
    assert_non_null(strstr(msg, "\xef\xbf\xbd"));    /* bad bytes as U+FFFD */
    json_decref(o);
    /* an event name with a quote is escaped too */
    crm_log(CRM_LOG_INFO, "we\"ird", "x");
    o = last_line();
    assert_string_equal(json_string_value(json_object_get(o, "event")), "we\"ird");
    json_decref(o);
}

static void test_level_names_round_trip(void **state)
{
    (void)state;
    for (int l = CRM_LOG_DEBUG; l <= CRM_LOG_ERROR; l++)
        assert_int_equal(crm_log_level_parse(crm_log_level_name(l)), l);
    assert_int_equal(crm_log_level_parse("verbose"), -1);
    assert_int_equal(crm_log_level_parse(NULL), -1);
    assert_string_equal(crm_log_level_name(7), "error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_a_line_is_ts_level_event_then_fields, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lines_below_the_level_are_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_text_stays_one_valid_json_line, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_level_names_round_trip, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
