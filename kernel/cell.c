/*
 * cell -- typed cell text (see cell.h).  Dates use Howard Hinnant's
 * days-from-civil arithmetic, not timegm/strptime: no locale, no TZ
 * environment, and every year 0000..9999 the same way.
 */
#include "cell.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "codec.h"

static int bad(crm_err *err, const char *what, const char *text, size_t len)
{
    return crm_err_set(err, CRM_BAD_REQUEST, "%s: \"%.*s\"%s", what, (int)(len > 40 ? 40 : len),
                       text, len > 40 ? "..." : "");
}

/* ---- dates ---- */

static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int month_days(int64_t y, int m)
{
    static const int n[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : n[m - 1];
}

/* Exactly n digits at s[*i], advancing *i; -1 if not there. */
static int digits(const char *s, size_t len, size_t *i, int n)
{
    int v = 0;
    if (*i + (size_t)n > len)
        return -1;
    for (int k = 0; k < n; k++) {
        char c = s[*i + (size_t)k];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    *i += (size_t)n;
    return v;
}

int crm_time_parse(const char *s, size_t len, int64_t *ms)
{
    size_t i = 0;
    int y, mo, d, h = 0, mi = 0, se = 0, frac = 0, off = 0;
    if ((y = digits(s, len, &i, 4)) < 0 || i >= len || s[i++] != '-' ||
        (mo = digits(s, len, &i, 2)) < 1 || mo > 12 || i >= len || s[i++] != '-' ||
        (d = digits(s, len, &i, 2)) < 1 || d > month_days(y, mo))
        return -1;
    if (i < len && (s[i] == 'T' || s[i] == 't' || s[i] == ' ')) {
        i++;
        if ((h = digits(s, len, &i, 2)) < 0 || h > 23 || i >= len || s[i++] != ':' ||
            (mi = digits(s, len, &i, 2)) < 0 || mi > 59)
            return -1;
        if (i < len && s[i] == ':') {
            i++;
            if ((se = digits(s, len, &i, 2)) < 0 || se > 59)
                return -1;
            if (i < len && (s[i] == '.' || s[i] == ',')) {
                int nd = 0;
                i++;
                while (i < len && s[i] >= '0' && s[i] <= '9') {
                    if (nd < 3)
                        frac = frac * 10 + (s[i] - '0'); /* below 1 ms: dropped */
                    nd++;
                    i++;
                }
                if (nd == 0 || nd > 9)
                    return -1;
                for (; nd < 3; nd++)
                    frac *= 10;
            }
        }
        if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
            i++;
        } else if (i < len && (s[i] == '+' || s[i] == '-')) {
            int sign = s[i++] == '-' ? -1 : 1, oh, om = 0;
            if ((oh = digits(s, len, &i, 2)) < 0 || oh > 23)
                return -1;
            if (i < len && s[i] == ':')
                i++;
            if (i < len && (om = digits(s, len, &i, 2)) < 0)
                return -1;
            if (om > 59)
                return -1;
            off = sign * (oh * 60 + om);
        }
    }
    if (i != len)
        return -1;
    *ms = ((days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se) - (int64_t)off * 60) *
              1000 + frac;
    return 0;
}

int crm_time_format(int64_t ms, char *out)
{
    int64_t days, y, rem;
    int m, d;
    if (ms < -62167219200000LL || ms > 253402300799999LL) /* 0000-01-01 .. 9999-12-31 */
        return -1;
    days = ms >= 0 ? ms / 86400000 : -((-ms + 86399999) / 86400000);
    rem = ms - days * 86400000;
    civil_from_days(days, &y, &m, &d);
    char tmp[96]; /* the compiler cannot see the fields' ranges: room for any int */
    if (rem % 1000)
        snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (int)y, m, d,
                 (int)(rem / 3600000), (int)(rem / 60000 % 60), (int)(rem / 1000 % 60),
                 (int)(rem % 1000));
    else
        snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02dZ", (int)y, m, d, (int)(rem / 3600000),
                 (int)(rem / 60000 % 60), (int)(rem / 1000 % 60));
    snprintf(out, 32, "%.31s", tmp);
    return 0;
}

/* ---- parsing ---- */

/* -?[0-9]+ within int64; 0 or -1. */
static int parse_int(const char *s, size_t len, int64_t *out)
{
    char buf[32];
    char *end;
    size_t i = s[0] == '-' ? 1 : 0;
    long long v;
    if (len == 0 || len >= sizeof buf || i == len)
        return -1;
    for (size_t k = i; k < len; k++)
        if (s[k] < '0' || s[k] > '9')
            return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    errno = 0;
    v = strtoll(buf, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

/* The JSON number grammar, then strtod; 0 or -1. */
static int parse_num(const char *s, size_t len, double *out)
{
    char buf[64];
    size_t i = 0;
    if (len == 0 || len >= sizeof buf)
        return -1;
    if (s[i] == '-')
        i++;
    if (i >= len || s[i] < '0' || s[i] > '9')
        return -1;
    while (i < len && s[i] >= '0' && s[i] <= '9')
        i++;
    if (i < len && s[i] == '.') {
        size_t st = ++i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == st)
            return -1;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        size_t st;
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        st = i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == st)
            return -1;
    }
    if (i != len)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    *out = strtod(buf, NULL);
    return isfinite(*out) ? 0 : -1;
}

static int ieq(const char *s, size_t len, const char *w)
{
    return strlen(w) == len && strncasecmp(s, w, len) == 0;
}

int crm_cell_parse(const crm_field *fd, const char *s, size_t len, crm_value **out,
                   crm_err *err)
{
    crm_ftype t = fd ? fd->type : CRM_F_STRING;
    int64_t i;
    double n;
    crm_value *v = NULL;

    *out = NULL;
    if (!crm_utf8_valid(s, len))
        return crm_err_set(err, CRM_BAD_REQUEST, "not valid UTF-8");
    switch (t) {
    case CRM_F_STRING:
    case CRM_F_ENUM:
    case CRM_F_REF:
        v = crm_value_str(s, len);
        break;
    case CRM_F_INT:
        if (parse_int(s, len, &i) != 0)
            return bad(err, "not a whole number", s, len);
        v = crm_value_int(i);
        break;
    case CRM_F_NUMBER:
        if (parse_int(s, len, &i) == 0)
            v = crm_value_int(i);
        else if (parse_num(s, len, &n) == 0)
            v = crm_value_num(n);
        else
            return bad(err, "not a number", s, len);
        break;
    case CRM_F_BOOL:
        if (ieq(s, len, "true") || ieq(s, len, "1"))
            v = crm_value_bool(1);
        else if (ieq(s, len, "false") || ieq(s, len, "0"))
            v = crm_value_bool(0);
        else
            return bad(err, "not true or false", s, len);
        break;
    case CRM_F_TIMESTAMP:
        if (parse_int(s, len, &i) != 0 && crm_time_parse(s, len, &i) != 0)
            return bad(err, "not a time (ISO 8601 or ms since the epoch)", s, len);
        v = crm_value_int(i);
        break;
    case CRM_F_ARRAY:
    case CRM_F_MAP:
    case CRM_F_ANY: {
        crm_limits lim = {len + 1, CRM_CELL_MAX_DEPTH};
        crm_err je;
        v = crm_json_decode(s, len, &lim, &je);
        if (!v) {
            if (t == CRM_F_ANY) { /* system fields only: keep the text */
                v = crm_value_str(s, len);
                break;
            }
            return crm_err_set(err, CRM_BAD_REQUEST, "not JSON (%s): %s",
                               t == CRM_F_ARRAY ? "an array" : "a map", je.msg);
        }
        if ((t == CRM_F_ARRAY && v->type != CRM_T_ARR) ||
            (t == CRM_F_MAP && v->type != CRM_T_MAP)) {
            crm_value_free(v);
            return bad(err, t == CRM_F_ARRAY ? "not a JSON array" : "not a JSON map", s, len);
        }
        break;
    }
    }
    if (!v)
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    *out = v;
    return CRM_OK;
}

/* ---- formatting ---- */

char *crm_cell_format(const crm_field *fd, const crm_value *v, size_t *len_out)
{
    char buf[32], *s;
    if (!v || v->type == CRM_T_NIL) {
        s = strdup("");
        *len_out = 0;
        return s;
    }
    if (v->type == CRM_T_STR) {
        if (!(s = malloc(v->u.str.len + 1)))
            return NULL;
        memcpy(s, v->u.str.s, v->u.str.len + 1);
        *len_out = v->u.str.len;
        return s;
    }
    if (v->type == CRM_T_BOOL) {
        s = strdup(v->u.b ? "true" : "false");
        *len_out = s ? strlen(s) : 0;
        return s;
    }
    if (v->type == CRM_T_INT && fd && fd->type == CRM_F_TIMESTAMP &&
        crm_time_format(v->u.i, buf) == 0) {
        s = strdup(buf);
        *len_out = s ? strlen(s) : 0;
        return s;
    }
    /* numbers, arrays, maps: their JSON (the shortest exact number form) */
    return crm_json_encode(v, len_out);
}
