/*
 * test_cell -- typed CSV cells and ISO 8601 times (kernel/cell.c): every
 * accepted form, the refusals, and format -> parse round trips.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cell.h"

static int64_t t(const char *s)
{
    int64_t ms = -42;
    assert_int_equal(crm_time_parse(s, strlen(s), &ms), 0);
    return ms;
}

static void times_parse(void **state)
{
    int64_t ms;
    (void)state;
    assert_int_equal(t("1970-01-01"), 0);
    assert_int_equal(t("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(t("2000-02-29"), 951782400000LL);
    assert_int_equal(t("2024-03-01T12:00"), 1709294400000LL);
    assert_int_equal(t("2024-03-01 12:00:00.25Z"), 1709294400250LL);
    assert_int_equal(t("2024-03-01T12:00:00.123456789Z"), 1709294400123LL);
    assert_int_equal(t("2024-03-01T14:00:00+02:00"), 1709294400000LL);
    assert_int_equal(t("2024-03-01T07:30:00-0430"), 1709294400000LL);
    assert_int_equal(t("2024-03-01T13:00:00+01"), 1709294400000LL);
    assert_int_equal(t("1969-12-31T23:59:59.999Z"), -1);
    assert_int_equal(t("0000-01-01"), -62167219200000LL);
    static const char *bad[] = {"", "2024", "2024-13-01", "2023-02-29", "2024-04-31",
                                "2024-03-01T24:00", "2024-03-01T12:60", "2024-03-01T12:00:60",
                                "2024-03-01T12:00:00.", "2024-03-01T12:00:00.1234567890",
                                "2024-03-01T12:00Zjunk", "2024-03-01T12:00+2", "24-03-01",
                                "2024-3-1", "2024-03-01T", "+2024-03-01", "2024-03-01T12:00+02:75"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        if (crm_time_parse(bad[i], strlen(bad[i]), &ms) == 0)
            fail_msg("accepted %s", bad[i]);
    }
}

static void times_format_round_trip(void **state)
{
    static const int64_t v[] = {0, 1, -1, 999, 1709294400000LL, 1709294400250LL,
                                951782400000LL, -62167219200000LL, 253402300799999LL};
    char out[32];
    (void)state;
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        int64_t back;
        assert_int_equal(crm_time_format(v[i], out), 0);
        assert_int_equal(crm_time_parse(out, strlen(out), &back), 0);
        assert_int_equal(back, v[i]);
    }
    assert_int_equal(crm_time_format(1709294400000LL, out), 0);
    assert_string_equal(out, "2024-03-01T12:00:00Z");
    assert_int_equal(crm_time_format(-1, out), 0);
    assert_string_equal(out, "1969-12-31T23:59:59.999Z");
    assert_int_equal(crm_time_format(253402300800000LL, out), -1); /* year 10000 */
}

static crm_value *cell(crm_ftype type, const char *text, int *rc)
{
    crm_field f;
    crm_value *v = NULL;
    crm_err err;
    memset(&f, 0, sizeof f);
    f.name = "f";
    f.type = type;
    *rc = crm_cell_parse(&f, text, strlen(text), &v, &err);
    return v;
}

static void cells_by_type(void **state)
{
    crm_value *v;
    int rc;
    (void)state;
    v = cell(CRM_F_INT, "-42", &rc);
    assert_int_equal(v->u.i, -42);
    crm_value_free(v);
    v = cell(CRM_F_NUMBER, "1.5e3", &rc);
    assert_int_equal(v->type, CRM_T_NUM);
    assert_true(v->u.n == 1500.0);
    crm_value_free(v);
    v = cell(CRM_F_NUMBER, "7", &rc);
    assert_int_equal(v->type, CRM_T_INT);
    crm_value_free(v);
    v = cell(CRM_F_BOOL, "TRUE", &rc);
    assert_true(v->u.b);
    crm_value_free(v);
    v = cell(CRM_F_BOOL, "0", &rc);
    assert_false(v->u.b);
    crm_value_free(v);
    v = cell(CRM_F_TIMESTAMP, "1709294400000", &rc);
    assert_int_equal(v->u.i, 1709294400000LL);
    crm_value_free(v);
    v = cell(CRM_F_TIMESTAMP, "2024-03-01T12:00:00Z", &rc);
    assert_int_equal(v->u.i, 1709294400000LL);
    crm_value_free(v);
    v = cell(CRM_F_ARRAY, "[1, \"a\"]", &rc);
    assert_int_equal(v->u.arr.n, 2);
    crm_value_free(v);
    v = cell(CRM_F_MAP, "{\"a\": {\"b\": null}}", &rc);
    assert_int_equal(v->type, CRM_T_MAP);
    crm_value_free(v);
    v = cell(CRM_F_STRING, " keeps spaces, \"quotes\" ", &rc);
    assert_string_equal(v->u.str.s, " keeps spaces, \"quotes\" ");
    crm_value_free(v);

    static const struct { crm_ftype t; const char *s; } bad[] = {
        {CRM_F_INT, "4x"}, {CRM_F_INT, "1.0"}, {CRM_F_INT, "99999999999999999999"},
        {CRM_F_INT, "-"}, {CRM_F_INT, " 1"}, {CRM_F_NUMBER, "inf"}, {CRM_F_NUMBER, "nan"},
        {CRM_F_NUMBER, "0x10"}, {CRM_F_NUMBER, "1e999"}, {CRM_F_NUMBER, ".5"},
        {CRM_F_NUMBER, "1."}, {CRM_F_BOOL, "yes"}, {CRM_F_TIMESTAMP, "yesterday"},
        {CRM_F_ARRAY, "{}"}, {CRM_F_MAP, "[]"}, {CRM_F_ARRAY, "[1,"}, {CRM_F_STRING, "\xff"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        v = cell(bad[i].t, bad[i].s, &rc);
        if (rc != CRM_BAD_REQUEST || v)
            fail_msg("accepted %s as %d", bad[i].s, (int)bad[i].t);
    }
}

static void format_cells(void **state)
{
    crm_field ts = {.type = CRM_F_TIMESTAMP};
    crm_value *v = crm_value_int(1709294400250LL);
    size_t len;
    char *s;
    (void)state;
    s = crm_cell_format(&ts, v, &len);
    assert_string_equal(s, "2024-03-01T12:00:00.250Z");
    assert_int_equal(len, strlen(s));
    free(s);
    s = crm_cell_format(NULL, v, &len); /* not a timestamp: the number */
    assert_string_equal(s, "1709294400250");
    free(s);
    crm_value_free(v);
    v = crm_value_num(0.1);
    s = crm_cell_format(NULL, v, &len);
    assert_string_equal(s, "0.1");
    free(s);
    crm_value_free(v);
    s = crm_cell_format(NULL, NULL, &len);
    assert_string_equal(s, "");
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(times_parse),
        cmocka_unit_test(times_format_round_trip),
        cmocka_unit_test(cells_by_type),
        cmocka_unit_test(format_cells),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
