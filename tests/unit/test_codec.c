/*
 * test_codec -- the value tree and both codecs.
 *
 * Covers: constructors and the map/array ownership rules (set replaces in
 * place, del/take keep insertion order, failed inserts free their value);
 * deep copies; the total order (type ranks, exact int-vs-num, unordered map
 * equality, antisymmetry and transitivity over random values); the UTF-8
 * validator (overlongs, surrogates, out of range, truncated); JSON round
 * trips of every type and the exact encoder output (shortest numbers,
 * escapes, U+FFFD for bad bytes); JSON errors (malformed, too large, depth
 * 32/33/200/100000, bad UTF-8, duplicate keys); msgpack round trips and
 * exact bytes; hostile msgpack (giant declared counts, every truncated
 * prefix, bin/ext, non-string and duplicate keys, trailing bytes, depth,
 * NaN/Inf, uint64 above int64); garbage and mutated input through the
 * trusted and checked decoders; and seeded random trees through both codecs.
 *
 * CRM_TEST_SEED=<n> replays the random tests with another seed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>

#include "codec.h"
#include "testutil.h"

/* ---- helpers ---- */

#define LIT(s) s, sizeof s - 1 /* a literal and its length, NULs included */
#define MPE(at, what) "invalid msgpack at byte " #at ": " what

static const crm_limits DEF = CRM_LIMITS_DEFAULT;

#define J(json) crm_test_json(json)

static void assert_has(const char *haystack, const char *needle)
{
    if (!strstr(haystack, needle))
        fail_msg("expected \"%s\" in \"%s\"", needle, haystack);
}

/* Encodes v as JSON and compares with the expected text. */
static void assert_json_text(const crm_value *v, const char *want)
{
    size_t len = 0;
    char *s = crm_json_encode(v, &len);
    assert_non_null(s);
    assert_string_equal(s, want);
    assert_int_equal(len, strlen(want));
    free(s);
}

static void expect_json_err(const char *buf, size_t len, const crm_limits *lim, int code,
                            const char *msg)
{
    crm_err err;
    crm_value *v = crm_json_decode(buf, len, lim, &err);
    if (v)
        fail_msg("decoded what should fail: %.60s", buf);
    assert_int_equal(err.code, code);
    if (msg)
        assert_has(err.msg, msg);
}

/* The check and the checked decoder refuse bytes with the same error; the
 * trusted decoder returns NULL when trusted_fails. */
static void expect_mp_err(const uint8_t *b, size_t n, const crm_limits *lim, const char *msg,
                          int trusted_fails)
{
    crm_err e1, e2;
    crm_value *v;
    assert_int_equal(crm_mp_check(b, n, lim, &e1), CRM_BAD_REQUEST);
    assert_null(crm_mp_decode(b, n, lim, &e2));
    assert_int_equal(e2.code, CRM_BAD_REQUEST);
    assert_string_equal(e1.msg, e2.msg);
    if (msg)
        assert_string_equal(e1.msg, msg);
    v = crm_mp_decode_trusted(b, n);
    if (trusted_fails)
        assert_null(v);
    crm_value_free(v);
}

static void assert_mp_ok(const uint8_t *b, size_t n, const crm_limits *lim)
{
    crm_err err;
    crm_value *v, *t;
    int rc = crm_mp_check(b, n, lim, &err);
    if (rc != CRM_OK)
        fail_msg("check refused valid msgpack: %s", err.msg);
    if (!(v = crm_mp_decode(b, n, lim, &err)))
        fail_msg("decode refused valid msgpack: %s", err.msg);
    assert_non_null(t = crm_mp_decode_trusted(b, n));
    assert_true(crm_value_equal(v, t));
    crm_value_free(v);
    crm_value_free(t);
}

/* n nested JSON arrays around 1 (or nothing when n is 0: just "1"). */
static char *nest_json(int n, char open, char close)
{
    char *s = malloc((size_t)n * 2 + 2), *p = s;
    assert_non_null(s);
    for (int i = 0; i < n; i++)
        *p++ = open;
    if (open == '{')
        assert_true(n == 0); /* objects need keys: use nest_objects */
    *p++ = '1';
    for (int i = 0; i < n; i++)
        *p++ = close;
    *p = '\0';
    return s;
}

/* n nested {"a": ...} around 1. */
static char *nest_objects(int n)
{
    char *s = malloc((size_t)n * 6 + 2), *p = s;
    assert_non_null(s);
    for (int i = 0; i < n; i++) {
        memcpy(p, "{\"a\":", 5);
        p += 5;
    }
    *p++ = '1';
    for (int i = 0; i < n; i++)
        *p++ = '}';
    *p = '\0';
    return s;
}

/* n nested one-item msgpack arrays around nil. */
static uint8_t *nest_mp(size_t n, size_t *len)
{
    uint8_t *b = malloc(n + 1);
    assert_non_null(b);
    memset(b, 0x91, n);
    b[n] = 0xc0;
    *len = n + 1;
    return b;
}

/* A value nested n arrays deep. */
static crm_value *nest_value(int n)
{
    crm_value *v = crm_value_nil();
    for (int i = 0; i < n; i++) {
        crm_value *a = crm_value_arr();
        assert_int_equal(crm_arr_push(a, v), 0);
        v = a;
    }
    return v;
}

/* ---- seeded randomness (xorshift64*) ---- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static unsigned rndn(unsigned n) { return (unsigned)(rnd() % n); }

static void seed_rng(uint64_t dflt)
{
    const char *s = getenv("CRM_TEST_SEED");
    rng_state = s ? strtoull(s, NULL, 0) : dflt;
    if (!rng_state)
        rng_state = 1;
}

/* Appends one random code point as UTF-8 (ASCII, controls and NUL weighted
 * in, surrogates skipped). */
static size_t rnd_utf8(char *out, int allow_nul)
{
    unsigned r = rndn(10), cp;
    if (r < 5)
        cp = 0x20 + rndn(0x5f);
    else if (r == 5)
        cp = rndn(0x20); /* controls, NUL included */
    else if (r == 6)
        cp = 0x80 + rndn(0x780);
    else if (r == 7)
        cp = 0x800 + rndn(0xf800);
    else if (r == 8)
        cp = 0x10000 + rndn(0x100000);
    else
        cp = "\"\\/"[rndn(3)];
    if (cp >= 0xd800 && cp <= 0xdfff)
        cp = 0xfffd;
    if (cp == 0 && !allow_nul)
        cp = 'z';
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

static crm_value *rnd_str(int allow_nul)
{
    char buf[4 * 24];
    size_t n = 0, chars = rndn(rndn(4) == 0 ? 24 : 6);
    for (size_t i = 0; i < chars; i++)
        n += rnd_utf8(buf + n, allow_nul);
    return crm_value_str(buf, n);
}

static double rnd_double(void)
{
    double d;
    switch (rndn(4)) {
    case 0:
        return (double)(int64_t)rnd() / 1024.0;
    case 1:
        return (double)rndn(100000) / 100.0; /* prices */
    default:
        do {
            uint64_t u = rnd();
            memcpy(&d, &u, sizeof d);
        } while (!isfinite(d));
        return d;
    }
}

static int64_t rnd_int(void)
{
    switch (rndn(4)) {
    case 0:
        return (int64_t)rndn(256) - 128;
    case 1:
        return (int64_t)(rnd() >> rndn(64));
    case 2:
        return -(int64_t)(rnd() >> (1 + rndn(63)));
    default:
        return rndn(2) ? INT64_MAX - (int64_t)rndn(3) : INT64_MIN + (int64_t)rndn(3);
    }
}

static crm_value *rnd_value(int depth)
{
    unsigned kind = rndn(depth >= 6 ? 5 : 8);
    crm_value *v;
    switch (kind) {
    case 0:
        return crm_value_nil();
    case 1:
        return crm_value_bool((int)rndn(2));
    case 2:
        return crm_value_int(rnd_int());
    case 3:
        return crm_value_num(rnd_double());
    case 4:
        return rnd_str(1);
    case 5:
        v = crm_value_arr();
        for (unsigned i = rndn(6); i > 0; i--)
            assert_int_equal(crm_arr_push(v, rnd_value(depth + 1)), 0);
        return v;
    default:
        v = crm_value_map();
        for (unsigned i = rndn(rndn(8) == 0 ? 40 : 7); i > 0; i--) {
            crm_value *k = rnd_str(0);
            assert_int_equal(crm_map_setn(v, k->u.str.s, k->u.str.len, rnd_value(depth + 1)), 0);
            crm_value_free(k);
        }
        return v;
    }
}

/* ---- the value tree ---- */

static void constructors_and_types(void **state)
{
    crm_value *v;
    (void)state;
    v = crm_value_nil();
    assert_int_equal(v->type, CRM_T_NIL);
    crm_value_free(v);
    v = crm_value_bool(5);
    assert_int_equal(v->type, CRM_T_BOOL);
    assert_int_equal(v->u.b, 1);
    crm_value_free(v);
    v = crm_value_int(INT64_MIN);
    assert_true(v->u.i == INT64_MIN);
    crm_value_free(v);
    v = crm_value_num(2.5);
    assert_true(v->u.n == 2.5);
    assert_true(crm_value_is_number(v));
    assert_true(crm_value_as_double(v) == 2.5);
    crm_value_free(v);
    v = crm_value_str("a\0b", 3); /* embedded NUL kept, NUL-terminated */
    assert_int_equal(v->u.str.len, 3);
    assert_memory_equal(v->u.str.s, "a\0b\0", 4);
    assert_false(crm_value_is_number(v));
    assert_true(crm_value_as_double(v) == 0);
    crm_value_free(v);
    v = crm_value_cstr("héllo");
    assert_int_equal(v->u.str.len, 6);
    assert_string_equal(v->u.str.s, "héllo");
    crm_value_free(v);
    v = crm_value_str(NULL, 0);
    assert_int_equal(v->u.str.len, 0);
    assert_string_equal(v->u.str.s, "");
    crm_value_free(v);
    assert_null(crm_value_cstr(NULL));
    crm_value_free(NULL);

    assert_string_equal(crm_type_name(CRM_T_NIL), "null");
    assert_string_equal(crm_type_name(CRM_T_BOOL), "bool");
    assert_string_equal(crm_type_name(CRM_T_INT), "int");
    assert_string_equal(crm_type_name(CRM_T_NUM), "number");
    assert_string_equal(crm_type_name(CRM_T_STR), "string");
    assert_string_equal(crm_type_name(CRM_T_ARR), "array");
    assert_string_equal(crm_type_name(CRM_T_MAP), "map");
    assert_string_equal(crm_type_name((crm_type)99), "unknown");
}

static void arrays_take_ownership(void **state)
{
    crm_value *a = crm_value_arr(), *m = crm_value_map();
    (void)state;
    for (int i = 0; i < 1000; i++)
        assert_int_equal(crm_arr_push(a, crm_value_int(i)), 0);
    assert_int_equal(a->u.arr.n, 1000);
    for (int i = 0; i < 1000; i++)
        assert_true(a->u.arr.items[i]->u.i == i);
    assert_int_equal(crm_arr_push(a, NULL), -1); /* a failed constructor */
    assert_int_equal(a->u.arr.n, 1000);
    /* pushing onto a non-array fails and frees the item (ASan: no leak) */
    assert_int_equal(crm_arr_push(m, crm_value_cstr("lost")), -1);
    assert_int_equal(crm_arr_push(NULL, crm_value_cstr("lost")), -1);
    crm_value_free(a);
    crm_value_free(m);
}

static void maps_set_replace_del_take(void **state)
{
    crm_value *m = crm_value_map(), *v, *a = crm_value_arr();
    (void)state;
    assert_int_equal(crm_map_set(m, "name", crm_value_cstr("Ada")), 0);
    assert_int_equal(crm_map_set(m, "age", crm_value_int(36)), 0);
    assert_int_equal(crm_map_set(m, "city", crm_value_cstr("London")), 0);
    assert_int_equal(m->u.map.n, 3);

    /* replacing keeps the key's place and frees the old value */
    assert_int_equal(crm_map_set(m, "age", crm_value_int(37)), 0);
    assert_int_equal(m->u.map.n, 3);
    assert_string_equal(m->u.map.kv[1].key, "age");
    assert_int_equal(crm_map_int(m, "age", -1), 37);
    assert_json_text(m, "{\"name\":\"Ada\",\"age\":37,\"city\":\"London\"}");

    assert_string_equal(crm_map_str(m, "name", "?"), "Ada");
    assert_string_equal(crm_map_str(m, "age", "?"), "?"); /* wrong type */
    assert_string_equal(crm_map_str(m, "nope", "?"), "?");
    assert_int_equal(crm_map_int(m, "name", -1), -1);
    assert_int_equal(crm_map_int(m, "nope", -2), -2);
    assert_null(crm_map_get(m, "nam"));
    assert_null(crm_map_get(m, "names"));
    assert_non_null(crm_map_getn(m, "name_and_more", 4));
    assert_null(crm_map_get(a, "name")); /* not a map */
    assert_null(crm_map_get(NULL, "name"));

    /* del and take shift, so the order of the rest is kept */
    assert_int_equal(crm_map_set(m, "zip", crm_value_cstr("N1")), 0);
    assert_int_equal(crm_map_del(m, "name"), 1);
    assert_int_equal(crm_map_del(m, "name"), 0);
    assert_json_text(m, "{\"age\":37,\"city\":\"London\",\"zip\":\"N1\"}");
    v = crm_map_take(m, "city");
    assert_non_null(v);
    assert_string_equal(v->u.str.s, "London");
    crm_value_free(v);
    assert_null(crm_map_take(m, "city"));
    assert_json_text(m, "{\"age\":37,\"zip\":\"N1\"}");

    /* nums that hold an integer read as ints; others do not */
    assert_int_equal(crm_map_set(m, "f", crm_value_num(5.0)), 0);
    assert_int_equal(crm_map_set(m, "g", crm_value_num(5.5)), 0);
    assert_int_equal(crm_map_set(m, "h", crm_value_num(1e300)), 0);
    assert_int_equal(crm_map_int(m, "f", -1), 5);
    assert_int_equal(crm_map_int(m, "g", -1), -1);
    assert_int_equal(crm_map_int(m, "h", -1), -1);

    /* keys carry their length */
    assert_int_equal(crm_map_setn(m, "k\0x", 3, crm_value_int(1)), 0);
    assert_int_equal(crm_map_setn(m, "k", 1, crm_value_int(2)), 0);
    assert_int_equal(crm_map_getn(m, "k\0x", 3)->u.i, 1);
    assert_int_equal(crm_map_get(m, "k")->u.i, 2);

    /* a failed set frees its value; a NULL value (failed constructor) fails */
    assert_int_equal(crm_map_set(a, "x", crm_value_cstr("lost")), -1);
    assert_int_equal(crm_map_set(NULL, "x", crm_value_cstr("lost")), -1);
    assert_int_equal(crm_map_set(m, "x", NULL), -1);
    assert_null(crm_map_get(m, "x"));

    /* many keys: growth, lookups, deletes from the middle */
    for (int i = 0; i < 300; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(crm_map_set(m, k, crm_value_int(i)), 0);
    }
    for (int i = 0; i < 300; i += 2) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(crm_map_del(m, k), 1);
    }
    for (int i = 0; i < 300; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(crm_map_int(m, k, -1), i % 2 ? i : -1);
    }
    crm_value_free(m);
    crm_value_free(a);
}

static void dup_is_deep(void **state)
{
    crm_value *o = J("{\"a\":[1,2.5,\"x\",{\"b\":null}],\"c\":{\"d\":true},\"e\":\"\",\"f\":[]}");
    crm_value *d = crm_value_dup(o);
    (void)state;
    assert_non_null(d);
    assert_true(crm_value_equal(o, d));
    assert_ptr_not_equal(crm_map_get(o, "a"), crm_map_get(d, "a"));
    assert_int_equal(crm_map_set(crm_map_get(o, "c"), "d", crm_value_bool(0)), 0);
    assert_false(crm_value_equal(o, d));
    assert_true(crm_map_get(crm_map_get(d, "c"), "d")->u.b);
    assert_json_text(d, "{\"a\":[1,2.5,\"x\",{\"b\":null}],\"c\":{\"d\":true},"
                        "\"e\":\"\",\"f\":[]}");
    assert_null(crm_value_dup(NULL));
    crm_value_free(o);
    crm_value_free(d);
}

/* ---- the order ---- */

static int sgn(int c) { return (c > 0) - (c < 0); }

static void cmp_orders_types_and_numbers(void **state)
{
    /* strictly ascending */
    const char *ladder[] = {"null", "false", "true", "-1e300", "-5", "-4.5", "-0.5", "0",
                            "0.5",  "1",     "1.5",  "2",      "1e300", "\"\"", "\"A\"", "\"a\"",
                            "\"ab\"", "\"b\"", "\"\xc3\xa9\"", "[]", "[null]", "[1]",
                            "[1,2]", "[2]", "{}", "{\"a\":1}", "{\"a\":2}", "{\"b\":0}",
                            "{\"a\":1,\"b\":1}"};
    size_t n = sizeof ladder / sizeof *ladder;
    crm_value *v[sizeof ladder / sizeof *ladder];
    (void)state;
    for (size_t i = 0; i < n; i++)
        v[i] = J(ladder[i]);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            int c = crm_value_cmp(v[i], v[j]);
            if (sgn(c) != (i > j) - (i < j))
                fail_msg("cmp(%s, %s) = %d", ladder[i], ladder[j], c);
            assert_int_equal(crm_value_equal(v[i], v[j]), i == j);
        }
    for (size_t i = 0; i < n; i++)
        crm_value_free(v[i]);
}

static int cmp_iv(int64_t i, double d)
{
    crm_value *a = crm_value_int(i), *b = crm_value_num(d);
    int c = crm_value_cmp(a, b);
    assert_int_equal(sgn(c), -sgn(crm_value_cmp(b, a)));
    crm_value_free(a);
    crm_value_free(b);
    return sgn(c);
}

static void cmp_int_against_num_is_exact(void **state)
{
    const int64_t p53 = (int64_t)1 << 53;
    crm_value *a, *b;
    (void)state;
    assert_int_equal(cmp_iv(3, 3.0), 0);
    assert_int_equal(cmp_iv(3, 3.5), -1);
    assert_int_equal(cmp_iv(4, 3.5), 1);
    assert_int_equal(cmp_iv(-3, -3.5), 1);
    assert_int_equal(cmp_iv(-4, -3.5), -1);
    assert_int_equal(cmp_iv(p53 + 1, (double)p53), 1); /* a double cast would say 0 */
    assert_int_equal(cmp_iv(p53, (double)p53), 0);
    assert_int_equal(cmp_iv(INT64_MAX, 9223372036854775808.0), -1);
    assert_int_equal(cmp_iv(INT64_MIN, -9223372036854775808.0), 0);
    assert_int_equal(cmp_iv(INT64_MIN, -1e19), 1);
    assert_int_equal(cmp_iv(0, -0.0), 0);
    assert_int_equal(cmp_iv(0, 1e-300), -1);
    assert_int_equal(cmp_iv(INT64_MIN, NAN), 1); /* NaN sorts below every number */

    /* ints beyond 2^53 compare exactly with each other */
    a = crm_value_int(p53 + 1);
    b = crm_value_int(p53);
    assert_int_equal(sgn(crm_value_cmp(a, b)), 1);
    crm_value_free(a);
    crm_value_free(b);

    a = crm_value_num(NAN);
    b = crm_value_num(NAN);
    assert_int_equal(crm_value_cmp(a, b), 0);
    crm_value_free(b);
    b = crm_value_num(-INFINITY);
    assert_int_equal(sgn(crm_value_cmp(a, b)), -1);
    crm_value_free(a);
    crm_value_free(b);

    a = crm_value_num(-0.0);
    b = crm_value_num(0.0);
    assert_true(crm_value_equal(a, b));
    crm_value_free(a);
    crm_value_free(b);

    /* absent (NULL) compares as nil */
    a = crm_value_nil();
    assert_int_equal(crm_value_cmp(NULL, a), 0);
    assert_int_equal(crm_value_cmp(NULL, NULL), 0);
    b = crm_value_bool(0);
    assert_int_equal(sgn(crm_value_cmp(NULL, b)), -1);
    crm_value_free(a);
    crm_value_free(b);
}

static void cmp_maps_ignore_key_order(void **state)
{
    crm_value *a = J("{\"a\":1,\"b\":[2,3],\"c\":{\"x\":1,\"y\":2}}");
    crm_value *b = J("{\"c\":{\"y\":2,\"x\":1},\"a\":1,\"b\":[2,3]}");
    crm_value *c = J("{\"c\":{\"y\":2,\"x\":1},\"a\":1,\"b\":[2,4]}");
    crm_value *d = J("{\"a\":1,\"b\":[2,4],\"c\":{\"x\":1,\"y\":2}}");
    crm_value *e = J("{\"a\":0,\"b\":[2,4],\"c\":{\"x\":1,\"y\":2}}");
    crm_value *big1 = crm_value_map(), *big2 = crm_value_map();
    (void)state;
    assert_true(crm_value_equal(a, b));
    assert_int_equal(crm_value_cmp(b, a), 0);
    assert_int_equal(sgn(crm_value_cmp(a, c)), -1);
    assert_int_equal(sgn(crm_value_cmp(c, a)), 1);
    assert_int_equal(crm_value_cmp(c, d), 0);
    /* same key order: the answer comes from the smallest key that differs */
    assert_int_equal(sgn(crm_value_cmp(d, e)), 1);
    assert_int_equal(sgn(crm_value_cmp(e, d)), -1);

    /* maps past the on-stack sort buffer */
    for (int i = 0; i < 100; i++) {
        char k[16];
        snprintf(k, sizeof k, "f%03d", i);
        assert_int_equal(crm_map_set(big1, k, crm_value_int(i)), 0);
        snprintf(k, sizeof k, "f%03d", 99 - i);
        assert_int_equal(crm_map_set(big2, k, crm_value_int(99 - i)), 0);
    }
    assert_true(crm_value_equal(big1, big2));
    assert_int_equal(crm_map_set(big2, "f050", crm_value_int(1000)), 0);
    assert_int_equal(sgn(crm_value_cmp(big1, big2)), -1);
    assert_int_equal(sgn(crm_value_cmp(big2, big1)), 1);
    assert_int_equal(crm_map_del(big2, "f050"), 1);
    assert_int_equal(crm_map_set(big2, "f050x", crm_value_int(50)), 0);
    assert_int_equal(sgn(crm_value_cmp(big1, big2)), -1); /* "f050" < "f050x" */

    crm_value_free(a);
    crm_value_free(b);
    crm_value_free(c);
    crm_value_free(d);
    crm_value_free(e);
    crm_value_free(big1);
    crm_value_free(big2);
}

/* Antisymmetry, transitivity and agreement of equal with cmp over random
 * values, a dup of each included so equal pairs occur. */
static void cmp_is_a_total_order(void **state)
{
    enum { N = 120 };
    crm_value *v[N];
    (void)state;
    seed_rng(0xc0ffee);
    for (int i = 0; i < N; i += 2) {
        v[i] = rndn(3) ? rnd_value(4) : crm_value_int((int64_t)rndn(5) - 2);
        v[i + 1] = rndn(2) ? crm_value_dup(v[i]) : crm_value_num((double)rndn(5) - 2);
    }
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            int cij = sgn(crm_value_cmp(v[i], v[j]));
            assert_int_equal(cij, -sgn(crm_value_cmp(v[j], v[i])));
            assert_int_equal(crm_value_equal(v[i], v[j]), cij == 0);
            for (int k = 0; k < N; k += 7) {
                int cjk = sgn(crm_value_cmp(v[j], v[k]));
                if (cij <= 0 && cjk <= 0)
                    assert_true(crm_value_cmp(v[i], v[k]) <= 0);
            }
        }
    for (int i = 0; i < N; i++)
        crm_value_free(v[i]);
}

/* ---- UTF-8 ---- */

static int utf8(const char *s) { return crm_utf8_valid(s, strlen(s)); }

static void utf8_validator(void **state)
{
    const char *good[] = {
        "", "plain ascii that is longer than eight bytes", "\xc2\x80", "\xdf\xbf", "h\xc3\xa9llo",
        "\xe0\xa0\x80", "\xe2\x82\xac", "\xed\x9f\xbf", "\xee\x80\x80", "\xef\xbf\xbf",
        "\xf0\x90\x80\x80", "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf", "12345678\xe2\x82\xac",
    };
    const char *bad[] = {
        "\x80", "\xbf", "a\x80", "\xc0\x80", "\xc1\xbf", /* overlong two-byte */
        "\xe0\x80\x80", "\xe0\x9f\xbf",                  /* overlong three-byte */
        "\xf0\x80\x80\x80", "\xf0\x8f\xbf\xbf",          /* overlong four-byte */
        "\xed\xa0\x80", "\xed\xbf\xbf", "\xed\xb0\x80",  /* surrogates */
        "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xf7\xbf\xbf\xbf", /* above U+10FFFF */
        "\xf8\x88\x80\x80\x80", "\xfe", "\xff",
        "\xc3", "\xe2\x82", "\xf0\x9f\x98", "0123456789abcdef\xe2\x82", /* truncated */
        "\xe2\x28\xa1", "\xc3\x28", "\xf0\x9f\x28\x80", "\xf0\x9f\x98\x28", /* bad continuation */
    };
    char buf[40];
    (void)state;
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        if (!utf8(good[i]))
            fail_msg("refused good[%zu]", i);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (utf8(bad[i]))
            fail_msg("accepted bad[%zu]", i);
    assert_true(crm_utf8_valid("a\0b", 3)); /* NUL is a valid character */
    assert_false(crm_utf8_valid("\xe2\x82\xac", 2));
    /* a bad byte at every offset of the word-at-a-time ASCII skip */
    for (size_t at = 0; at < 32; at++) {
        memset(buf, 'a', 32);
        buf[at] = (char)0xff;
        assert_false(crm_utf8_valid(buf, 32));
        buf[at] = 'a';
        assert_true(crm_utf8_valid(buf, 32));
    }
}

/* ---- JSON ---- */

static void json_decodes_every_type(void **state)
{
    const char *text =
        "{\"n\":null,\"t\":true,\"f\":false,\"i\":-42,\"max\":9223372036854775807,"
        "\"min\":-9223372036854775808,\"x\":1.5,\"e\":1e300,\"z\":-0.0,"
        "\"s\":\"h\\u00e9llo \\\"q\\\" \\\\ \\n\\t\\u0001 \\ud83d\\ude00\","
        "\"nul\":\"a\\u0000b\",\"a\":[1,[2,[]],{}],\"o\":{\"k\":\"v\"}}";
    crm_value *v = J(text), *w, *s;
    char *out;
    size_t len;
    (void)state;
    assert_int_equal(v->type, CRM_T_MAP);
    assert_int_equal(v->u.map.n, 13);
    assert_int_equal(crm_map_get(v, "n")->type, CRM_T_NIL);
    assert_int_equal(crm_map_get(v, "t")->u.b, 1);
    assert_int_equal(crm_map_get(v, "f")->u.b, 0);
    assert_int_equal(crm_map_get(v, "i")->type, CRM_T_INT);
    assert_true(crm_map_get(v, "i")->u.i == -42);
    assert_true(crm_map_get(v, "max")->u.i == INT64_MAX);
    assert_true(crm_map_get(v, "min")->u.i == INT64_MIN);
    assert_int_equal(crm_map_get(v, "x")->type, CRM_T_NUM);
    assert_true(crm_map_get(v, "x")->u.n == 1.5);
    assert_true(crm_map_get(v, "e")->u.n == 1e300);
    assert_int_equal(crm_map_get(v, "z")->type, CRM_T_NUM);
    assert_true(signbit(crm_map_get(v, "z")->u.n));
    s = crm_map_get(v, "s");
    assert_string_equal(s->u.str.s, "h\xc3\xa9llo \"q\" \\ \n\t\x01 \xf0\x9f\x98\x80");
    s = crm_map_get(v, "nul");
    assert_int_equal(s->u.str.len, 3);
    assert_memory_equal(s->u.str.s, "a\0b", 3);
    assert_int_equal(crm_map_get(v, "a")->u.arr.n, 3);
    assert_string_equal(v->u.map.kv[12].key, "o"); /* key order as sent */

    out = crm_json_encode(v, &len);
    assert_non_null(out);
    assert_int_equal(len, strlen(out));
    assert_string_equal(out, "{\"n\":null,\"t\":true,\"f\":false,\"i\":-42,"
                             "\"max\":9223372036854775807,\"min\":-9223372036854775808,"
                             "\"x\":1.5,\"e\":1e+300,\"z\":-0.0,"
                             "\"s\":\"h\xc3\xa9llo \\\"q\\\" \\\\ \\n\\t\\u0001 \xf0\x9f\x98\x80\","
                             "\"nul\":\"a\\u0000b\",\"a\":[1,[2,[]],{}],\"o\":{\"k\":\"v\"}}");
    w = J(out);
    assert_true(crm_value_equal(v, w));
    free(out);
    crm_value_free(v);
    crm_value_free(w);

    /* any value may stand at the top; the wire layer wants objects itself */
    v = J(" 12 ");
    assert_true(v->type == CRM_T_INT && v->u.i == 12);
    crm_value_free(v);
    v = J("\"s\"");
    assert_string_equal(v->u.str.s, "s");
    crm_value_free(v);
    v = J("null");
    assert_int_equal(v->type, CRM_T_NIL);
    crm_value_free(v);
}

static void json_encoder_output(void **state)
{
    struct {
        double d;
        const char *text;
    } nums[] = {
        {0.1, "0.1"},         {1.0, "1.0"},          {-2.0, "-2.0"},
        {0.0, "0.0"},         {-0.0, "-0.0"},        {1e300, "1e+300"},
        {1e21, "1e+21"},      {123456.789, "123456.789"},
        {1.0 / 3, "0.3333333333333333"}, {5e-324, "4.94065645841247e-324"},
        {NAN, "null"},        {INFINITY, "null"},    {-INFINITY, "null"},
        {19.99, "19.99"},     {9007199254740993.0, "9007199254740992.0"},
    };
    crm_value *v;
    char *s;
    (void)state;
    for (size_t i = 0; i < sizeof nums / sizeof *nums; i++) {
        v = crm_value_num(nums[i].d);
        assert_json_text(v, nums[i].text);
        crm_value_free(v);
    }
    v = crm_value_int(INT64_MIN);
    assert_json_text(v, "-9223372036854775808");
    crm_value_free(v);
    v = crm_value_int(0);
    assert_json_text(v, "0");
    crm_value_free(v);

    /* every control character escaped; '/' and DEL left alone */
    v = crm_value_str("\x00\x01\x08\x09\x0a\x0c\x0d\x1f\"\\/\x7f", 12);
    assert_json_text(v, "\"\\u0000\\u0001\\b\\t\\n\\f\\r\\u001f\\\"\\\\/\x7f\"");
    crm_value_free(v);

    /* bytes that are not UTF-8 go out as U+FFFD, one per bad byte */
    v = crm_value_str("a\xff" "b\xc3" "c\xe2\x82" "d\xed\xa0\x80" "e\xe2\x82\xac", 15);
    s = crm_json_encode(v, NULL);
    assert_string_equal(s, "\"a\xef\xbf\xbd" "b\xef\xbf\xbd" "c\xef\xbf\xbd\xef\xbf\xbd"
                           "d\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" "e\xe2\x82\xac\"");
    assert_true(utf8(s));
    crm_value_free(v);
    free(s);

    /* keys are escaped the same way */
    v = crm_value_map();
    assert_int_equal(crm_map_set(v, "a\"b\n", crm_value_bool(1)), 0);
    assert_json_text(v, "{\"a\\\"b\\n\":true}");
    crm_value_free(v);

    assert_null(crm_json_encode(NULL, NULL));
}

static void json_refuses_malformed_input(void **state)
{
    const char *bad[] = {"", "   ", "{", "{\"a\":", "{\"a\" 1}", "[1,2", "[1,]", "{\"a\":1,}",
                         "tru", "nul", "'a'", "{a:1}", "1 2", "{} x", "NaN", "Infinity", "-",
                         "01", "1.", ".5", "\"abc", "\"\\x\"", "\"a\x01\"", "[1]]", "}"};
    crm_err err;
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        expect_json_err(bad[i], strlen(bad[i]), &DEF, CRM_BAD_REQUEST, "invalid JSON at line 1");
    expect_json_err(LIT("[1,\n2,\n]"), &DEF, CRM_BAD_REQUEST, "invalid JSON at line 3, column 1: ");
    expect_json_err(LIT("18446744073709551616"), &DEF, CRM_BAD_REQUEST, "too big integer");
    expect_json_err(LIT("[1e400]"), &DEF, CRM_BAD_REQUEST, "real number overflow");
    /* bytes that are not UTF-8, and a lone surrogate */
    expect_json_err(LIT("\"\xff\""), &DEF, CRM_BAD_REQUEST, "invalid JSON");
    expect_json_err(LIT("\"\xc0\x80\""), &DEF, CRM_BAD_REQUEST, "invalid JSON");
    expect_json_err(LIT("\"\xed\xa0\x80\""), &DEF, CRM_BAD_REQUEST, "invalid JSON");
    expect_json_err(LIT("{\"\xe2\x82\":1}"), &DEF, CRM_BAD_REQUEST, "invalid JSON");
    expect_json_err(LIT("\"\\ud800\""), &DEF, CRM_BAD_REQUEST, "invalid Unicode");
    expect_json_err(LIT("{\"a\\u0000\":1}"), &DEF, CRM_BAD_REQUEST, "NUL byte in object key");
    /* duplicate keys, at any level */
    expect_json_err(LIT("{\"a\":1,\"a\":2}"), &DEF, CRM_BAD_REQUEST, "duplicate object key");
    expect_json_err(LIT("{\"x\":[{\"b\":1,\"c\":2,\"b\":3}]}"), &DEF, CRM_BAD_REQUEST,
                    "duplicate object key");
    /* embedded NUL outside a string, and a length shorter than the text */
    expect_json_err(LIT("{}\0"), &DEF, CRM_BAD_REQUEST, "invalid JSON");
    expect_json_err("{\"a\":1}", 5, &DEF, CRM_BAD_REQUEST, "invalid JSON");
    /* err may be NULL */
    assert_null(crm_json_decode("{", 1, &DEF, NULL));
    assert_null(crm_json_decode(NULL, 0, &DEF, &err));
    assert_int_equal(err.code, CRM_BAD_REQUEST);
}

static void json_size_limit(void **state)
{
    size_t n = (1u << 20) + 1;
    char *big = malloc(n + 1);
    crm_err err;
    crm_value *v;
    crm_limits small = {10, 32};
    (void)state;
    /* a valid string of exactly the limit decodes; one byte more does not */
    memset(big, 'a', n);
    big[0] = '"';
    big[n - 2] = '"';
    v = crm_json_decode(big, n - 1, &DEF, &err);
    assert_non_null(v);
    assert_int_equal(v->u.str.len, n - 3);
    crm_value_free(v);
    big[n - 2] = 'a';
    big[n - 1] = '"';
    expect_json_err(big, n, &DEF, CRM_TOO_LARGE, NULL);
    assert_null(crm_json_decode(big, n, &DEF, &err));
    assert_string_equal(err.msg, "message is 1048577 bytes, the limit is 1048576");
    free(big);

    expect_json_err(LIT("[1,2,3,4,5]"), &small, CRM_TOO_LARGE,
                    "message is 11 bytes, the limit is 10");
    v = crm_json_decode("[1,2,3,45]", 10, &small, &err);
    assert_non_null(v);
    crm_value_free(v);
}

static void json_depth_limit(void **state)
{
    crm_limits l0 = {1u << 20, 0}, l2048 = {1u << 22, 2048};
    crm_value *v;
    char *s;
    crm_err err;
    (void)state;
    /* the top-level container is depth 1: 32 pass, 33 fail */
    s = nest_json(32, '[', ']');
    v = J(s);
    crm_value_free(v);
    free(s);
    s = nest_json(33, '[', ']');
    expect_json_err(s, strlen(s), &DEF, CRM_BAD_REQUEST, NULL);
    assert_null(crm_json_decode(s, strlen(s), &DEF, &err));
    assert_string_equal(err.msg, "nesting deeper than 32");
    free(s);
    s = nest_objects(32);
    v = J(s);
    crm_value_free(v);
    free(s);
    s = nest_objects(33);
    expect_json_err(s, strlen(s), &DEF, CRM_BAD_REQUEST, "nesting deeper than 32");
    free(s);
    /* far deeper: refused by the pre-pass, cleanly, not by jansson */
    s = nest_json(200, '[', ']');
    expect_json_err(s, strlen(s), &DEF, CRM_BAD_REQUEST, "nesting deeper than 32");
    free(s);
    s = nest_json(100000, '[', ']');
    expect_json_err(s, strlen(s), &DEF, CRM_BAD_REQUEST, "nesting deeper than 32");
    free(s);
    s = malloc(100001);
    memset(s, '[', 100000); /* unclosed */
    expect_json_err(s, 100000, &DEF, CRM_BAD_REQUEST, "nesting deeper than 32");
    free(s);
    /* brackets inside strings do not count, escaped quotes included */
    v = J("[\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\","
          "\"\\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"]");
    crm_value_free(v);
    /* depth 0 admits scalars only */
    v = crm_json_decode("\"x\"", 3, &l0, &err);
    assert_non_null(v);
    crm_value_free(v);
    expect_json_err(LIT("[]"), &l0, CRM_BAD_REQUEST, "nesting deeper than 0");
    expect_json_err(LIT("{}"), &l0, CRM_BAD_REQUEST, "nesting deeper than 0");
    /* as deep as jansson goes (2048 values, the 1 inside counting), and more */
    s = nest_json(2047, '[', ']');
    v = crm_json_decode(s, strlen(s), &l2048, &err);
    assert_non_null(v);
    crm_value_free(v);
    free(s);
    s = nest_json(2049, '[', ']');
    expect_json_err(s, strlen(s), &l2048, CRM_BAD_REQUEST, "nesting deeper than 2048");
    free(s);
}

static void json_encode_refuses_what_jansson_cannot_read(void **state)
{
    crm_value *v = nest_value(2047), *w;
    crm_limits deep = {1u << 20, 4096};
    char *s;
    size_t len;
    (void)state;
    s = crm_json_encode(v, &len);
    assert_non_null(s);
    w = crm_json_decode(s, len, &deep, NULL);
    assert_non_null(w);
    assert_true(crm_value_equal(v, w));
    free(s);
    crm_value_free(v);
    crm_value_free(w);
    v = nest_value(2048);
    assert_null(crm_json_encode(v, NULL));
    crm_value_free(v);
}

/* ---- msgpack ---- */

static void mp_exact_bytes(void **state)
{
    crm_value *v = J("{\"a\":1,\"b\":[true,false,null],\"c\":-1,\"d\":300,\"e\":\"hi\"}");
    const uint8_t want[] = {0x85, 0xa1, 'a', 0x01, 0xa1, 'b', 0x93, 0xc3, 0xc2, 0xc0, 0xa1, 'c',
                            0xff, 0xa1, 'd', 0xcd, 0x01, 0x2c, 0xa1, 'e', 0xa2, 'h', 'i'};
    const uint8_t half[] = {0xcb, 0x3f, 0xe0, 0, 0, 0, 0, 0, 0};
    size_t len = 0;
    uint8_t *b = crm_mp_encode(v, &len);
    (void)state;
    assert_non_null(b);
    assert_int_equal(len, sizeof want);
    assert_memory_equal(b, want, sizeof want);
    free(b);
    crm_value_free(v);

    v = crm_value_num(0.5);
    b = crm_mp_encode(v, &len);
    assert_int_equal(len, sizeof half);
    assert_memory_equal(b, half, sizeof half);
    free(b);
    crm_value_free(v);

    /* non-finite nums are written as nil, as JSON writes null */
    v = crm_value_num(NAN);
    b = crm_mp_encode(v, &len);
    assert_int_equal(len, 1);
    assert_int_equal(b[0], 0xc0);
    free(b);
    crm_value_free(v);
    assert_null(crm_mp_encode(NULL, &len));
}

static void mp_round_trips(void **state)
{
    const char *docs[] = {
        "{}", "[]", "null", "true", "0", "-1", "\"\"", "1.5", "\"a\\u0000b\"",
        "{\"id\":\"c_01\",\"name\":\"Ada Lovelace\",\"tags\":[\"vip\",\"uk\"],\"points\":1200,"
        "\"score\":4.75,\"active\":true,\"company\":null,\"addr\":{\"city\":\"London\","
        "\"zip\":\"N1\",\"geo\":[51.5,-0.12]},\"notes\":\"h\\u00e9llo \\ud83d\\ude00\"}",
    };
    const int64_t ints[] = {0, 1, -1, 127, 128, -32, -33, -128, -129, 255, 256, 32767, 32768,
                            -32768, -32769, 65535, 65536, INT32_MAX, (int64_t)INT32_MAX + 1,
                            INT32_MIN, (int64_t)INT32_MIN - 1, UINT32_MAX,
                            (int64_t)UINT32_MAX + 1, INT64_MAX, INT64_MIN};
    (void)state;
    for (size_t i = 0; i < sizeof docs / sizeof *docs; i++) {
        crm_value *v = J(docs[i]), *w, *t;
        crm_err err;
        size_t len;
        uint8_t *b = crm_mp_encode(v, &len);
        assert_non_null(b);
        assert_int_equal(crm_mp_check(b, len, &DEF, &err), CRM_OK);
        w = crm_mp_decode(b, len, &DEF, &err);
        t = crm_mp_decode_trusted(b, len);
        assert_non_null(w);
        assert_non_null(t);
        assert_true(crm_value_equal(v, w));
        assert_true(crm_value_equal(v, t));
        assert_int_equal(w->type, v->type); /* 1.0 stays num, 1 stays int */
        free(b);
        crm_value_free(v);
        crm_value_free(w);
        crm_value_free(t);
    }
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        crm_value *v = crm_value_int(ints[i]), *w;
        size_t len;
        uint8_t *b = crm_mp_encode(v, &len);
        w = crm_mp_decode(b, len, &DEF, NULL);
        assert_non_null(w);
        assert_int_equal(w->type, CRM_T_INT);
        assert_true(w->u.i == ints[i]);
        free(b);
        crm_value_free(v);
        crm_value_free(w);
    }
}

static void mp_decodes_every_int_and_float_form(void **state)
{
    struct {
        uint8_t b[10];
        size_t n;
        int64_t i;
    } ints[] = {
        {{0x7f}, 1, 127},
        {{0xe0}, 1, -32},
        {{0xcc, 0xff}, 2, 255},
        {{0xcd, 0xff, 0xff}, 3, 65535},
        {{0xce, 0xff, 0xff, 0xff, 0xff}, 5, 4294967295},
        {{0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9, INT64_MAX},
        {{0xd0, 0x80}, 2, -128},
        {{0xd0, 0x7f}, 2, 127},
        {{0xd1, 0x80, 0x00}, 3, -32768},
        {{0xd2, 0x80, 0, 0, 0}, 5, INT32_MIN},
        {{0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0}, 9, INT64_MIN},
        {{0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9, -1},
    };
    const uint8_t f32[] = {0xca, 0x3f, 0xc0, 0x00, 0x00}; /* 1.5f */
    const uint8_t big[] = {0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0};
    const uint8_t bigkey[] = {0x81, 0xa1, 'a',  0xcf, 0xff, 0xff,
                              0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    const uint8_t nan64[] = {0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0};
    const uint8_t inf64[] = {0xcb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0};
    const uint8_t ninf64[] = {0xcb, 0xff, 0xf0, 0, 0, 0, 0, 0, 0};
    const uint8_t nan32[] = {0xca, 0x7f, 0xc0, 0x00, 0x00};
    const uint8_t inf32[] = {0xca, 0x7f, 0x80, 0x00, 0x00};
    const uint8_t nan_in[] = {0x92, 0x01, 0xca, 0xff, 0xc0, 0x00, 0x00};
    crm_value *v;
    (void)state;
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        assert_mp_ok(ints[i].b, ints[i].n, &DEF);
        v = crm_mp_decode(ints[i].b, ints[i].n, &DEF, NULL);
        assert_int_equal(v->type, CRM_T_INT);
        assert_true(v->u.i == ints[i].i);
        crm_value_free(v);
    }
    v = crm_mp_decode(f32, sizeof f32, &DEF, NULL);
    assert_int_equal(v->type, CRM_T_NUM);
    assert_true(v->u.n == 1.5);
    crm_value_free(v);

    expect_mp_err(big, sizeof big, &DEF, "invalid msgpack at byte 0: integer above the int64 range",
                  1);
    expect_mp_err(bigkey, sizeof bigkey, &DEF,
                  "invalid msgpack at byte 3: integer above the int64 range", 1);
    expect_mp_err(nan64, sizeof nan64, &DEF, MPE(0, "numbers must be finite"), 1);
    expect_mp_err(inf64, sizeof inf64, &DEF, MPE(0, "numbers must be finite"), 1);
    expect_mp_err(ninf64, sizeof ninf64, &DEF, "invalid msgpack at byte 0: numbers must be finite",
                  1);
    expect_mp_err(nan32, sizeof nan32, &DEF, MPE(0, "numbers must be finite"), 1);
    expect_mp_err(inf32, sizeof inf32, &DEF, MPE(0, "numbers must be finite"), 1);
    expect_mp_err(nan_in, sizeof nan_in, &DEF, "invalid msgpack at byte 2: numbers must be finite",
                  1);
}

static void mp_giant_declared_lengths_fail_fast(void **state)
{
    const uint8_t arr32[] = {0xdd, 0x05, 0xf5, 0xe1, 0x00}; /* 100,000,000 items */
    const uint8_t map32[] = {0xdf, 0xff, 0xff, 0xff, 0xff};
    const uint8_t str32[] = {0xdb, 0xff, 0xff, 0xff, 0xff, 'a'};
    const uint8_t arr16[] = {0xdc, 0xff, 0xff, 1, 2, 3};
    const uint8_t map16[] = {0xde, 0x00, 0x02, 0xa1, 'a', 0x01}; /* 2 pairs need 4 bytes */
    const uint8_t fix[] = {0x9f, 1, 2, 3};
    const uint8_t nested[] = {0x92, 0x01, 0xdd, 0x05, 0xf5, 0xe1, 0x00, 0x01};
    const uint8_t keystr[] = {0x81, 0xdb, 0x7f, 0xff, 0xff, 0xff, 0x01};
    (void)state;
    expect_mp_err(arr32, sizeof arr32, &DEF,
                  "invalid msgpack at byte 0: declares 100000000 items, only 0 bytes follow", 1);
    expect_mp_err(map32, sizeof map32, &DEF,
                  "invalid msgpack at byte 0: declares 4294967295 pairs, only 0 bytes follow", 1);
    expect_mp_err(str32, sizeof str32, &DEF,
                  "invalid msgpack at byte 0: declares 4294967295 string bytes, only 1 bytes "
                  "follow",
                  1);
    expect_mp_err(arr16, sizeof arr16, &DEF,
                  "invalid msgpack at byte 0: declares 65535 items, only 3 bytes follow", 1);
    expect_mp_err(map16, sizeof map16, &DEF,
                  "invalid msgpack at byte 0: declares 2 pairs, only 3 bytes follow", 1);
    expect_mp_err(fix, sizeof fix, &DEF,
                  "invalid msgpack at byte 0: declares 15 items, only 3 bytes follow", 1);
    expect_mp_err(nested, sizeof nested, &DEF,
                  "invalid msgpack at byte 2: declares 100000000 items, only 1 bytes follow", 1);
    expect_mp_err(keystr, sizeof keystr, &DEF,
                  "invalid msgpack at byte 1: declares 2147483647 string bytes, only 1 bytes "
                  "follow",
                  1);
}

/* Many copies of a giant-count frame: if any decoder reserved what the
 * header claims (2.4 GB for msgpack-c), this would take seconds or abort. */
static void mp_giant_counts_allocate_nothing(void **state)
{
    uint8_t frame[64];
    crm_err err;
    (void)state;
    for (int i = 0; i < 10000; i++) {
        memset(frame, 0xc0, sizeof frame);
        frame[0] = 0xdd;
        frame[1] = (uint8_t)(0x80 | (i & 0x7f));
        frame[2] = 0xff;
        frame[3] = 0xff;
        frame[4] = 0xff;
        assert_null(crm_mp_decode(frame, sizeof frame, &DEF, &err));
        assert_null(crm_mp_decode_trusted(frame, sizeof frame));
        frame[0] = 0x91; /* the same one level down */
        frame[1] = 0xdf;
        assert_null(crm_mp_decode_trusted(frame, sizeof frame));
    }
}

static void mp_every_truncated_prefix_fails(void **state)
{
    crm_value *v = J("{\"id\":\"c_01\",\"n\":-300,\"big\":9223372036854775807,\"x\":0.25,"
                     "\"s\":\"h\\u00e9llo\",\"long\":\"0123456789012345678901234567890123456789\","
                     "\"a\":[1,[2,[3,{}]],[]],\"m\":{\"k\":null,\"t\":true}}");
    size_t len;
    uint8_t *b = crm_mp_encode(v, &len);
    (void)state;
    assert_non_null(b);
    for (size_t n = 0; n < len; n++) {
        uint8_t *copy = malloc(n ? n : 1); /* exact size: ASan sees any over-read */
        crm_err err;
        memcpy(copy, b, n);
        assert_int_equal(crm_mp_check(copy, n, &DEF, &err), CRM_BAD_REQUEST);
        assert_has(err.msg, "invalid msgpack at byte");
        assert_null(crm_mp_decode(copy, n, &DEF, &err));
        assert_int_equal(err.code, CRM_BAD_REQUEST);
        assert_null(crm_mp_decode_trusted(copy, n));
        free(copy);
    }
    assert_mp_ok(b, len, &DEF);
    expect_mp_err(b, 0, &DEF, "invalid msgpack at byte 0: truncated", 1);
    expect_mp_err(NULL, 0, &DEF, "invalid msgpack at byte 0: truncated", 1);
    free(b);
    crm_value_free(v);
}

static void mp_refuses_bin_and_ext(void **state)
{
    const struct {
        uint8_t b[8];
        size_t n;
    } cases[] = {
        {{0xc1}, 1},                         /* never used */
        {{0xc4, 0x01, 'a'}, 3},              /* bin8 */
        {{0xc5, 0x00, 0x01, 'a'}, 4},        /* bin16 */
        {{0xc6, 0, 0, 0, 0x01, 'a'}, 6},     /* bin32 */
        {{0xc7, 0x01, 0x05, 'a'}, 4},        /* ext8 */
        {{0xc8, 0x00, 0x01, 0x05, 'a'}, 5},  /* ext16 */
        {{0xc9, 0, 0, 0, 1, 0x05, 'a'}, 7},  /* ext32 */
        {{0xd4, 0x05, 'a'}, 3},              /* fixext1 */
        {{0xd5, 0x05, 'a', 'b'}, 4},         /* fixext2 */
        {{0xd6, 0xff, 0, 0, 0, 1}, 6},       /* fixext4: the timestamp type too */
        {{0xd7, 0x05, 1, 2, 3, 4, 5, 6}, 8}, /* fixext8 (payload cut: refused first) */
        {{0xd8, 0x05, 1}, 3},                /* fixext16 */
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char want[128];
        uint8_t in_map[12] = {0x81, 0xa1, 'k'};
        snprintf(want, sizeof want,
                 "invalid msgpack at byte 0: type 0x%02x is not accepted (bin and ext are refused)",
                 cases[i].b[0]);
        expect_mp_err(cases[i].b, cases[i].n, &DEF, want, 1);
        memcpy(in_map + 3, cases[i].b, cases[i].n);
        snprintf(want, sizeof want,
                 "invalid msgpack at byte 3: type 0x%02x is not accepted (bin and ext are refused)",
                 cases[i].b[0]);
        expect_mp_err(in_map, cases[i].n + 3, &DEF, want, 1);
    }
}

static void mp_map_keys(void **state)
{
    const uint8_t int_key[] = {0x81, 0x01, 0x02};
    const uint8_t nil_key[] = {0x81, 0xc0, 0x02};
    const uint8_t arr_key[] = {0x81, 0x91, 0xa1, 'a', 0x02};
    const uint8_t map_key[] = {0x81, 0x80, 0x02};
    const uint8_t second[] = {0x82, 0xa1, 'a', 0x01, 0xc3, 0x02};
    const uint8_t nul_key[] = {0x81, 0xa3, 'a', 0, 'b', 0x01};
    const uint8_t bad_key[] = {0x81, 0xa2, 0xc3, 0x28, 0x01};
    const uint8_t dup[] = {0x83, 0xa1, 'a', 0x01, 0xa1, 'b', 0x02, 0xa1, 'a', 0x03};
    const uint8_t dup_deep[] = {0x91, 0x81, 0xa1, 'x', 0x82, 0xa2, 'i', 'd', 0x01, 0xa2, 'i', 'd',
                                0x02};
    const uint8_t str8_key[] = {0x81, 0xd9, 0x01, 'a', 0x01};
    const uint8_t empty_key[] = {0x81, 0xa0, 0x01};
    crm_err err;
    crm_value *v;
    uint8_t big[512];
    size_t n = 0;
    (void)state;
    expect_mp_err(int_key, sizeof int_key, &DEF, MPE(1, "map keys must be strings"),
                  1);
    expect_mp_err(nil_key, sizeof nil_key, &DEF, MPE(1, "map keys must be strings"),
                  1);
    expect_mp_err(arr_key, sizeof arr_key, &DEF, MPE(1, "map keys must be strings"),
                  1);
    expect_mp_err(map_key, sizeof map_key, &DEF, MPE(1, "map keys must be strings"),
                  1);
    expect_mp_err(second, sizeof second, &DEF, MPE(4, "map keys must be strings"),
                  1);
    expect_mp_err(nul_key, sizeof nul_key, &DEF,
                  "invalid msgpack at byte 1: map keys must not contain NUL bytes", 0);
    expect_mp_err(bad_key, sizeof bad_key, &DEF,
                  "invalid msgpack at byte 1: strings must be valid UTF-8", 0);

    /* duplicates: the check passes them (it allocates nothing), the decoder
     * refuses them; the trusted decoder (store bytes, written from maps that
     * cannot hold a key twice) does not look, and keeps both, first wins */
    assert_int_equal(crm_mp_check(dup, sizeof dup, &DEF, &err), CRM_OK);
    assert_null(crm_mp_decode(dup, sizeof dup, &DEF, &err));
    assert_int_equal(err.code, CRM_BAD_REQUEST);
    assert_string_equal(err.msg, "invalid msgpack: duplicate key \"a\"");
    {
        crm_value *t = crm_mp_decode_trusted(dup, sizeof dup);
        assert_non_null(t);
        assert_int_equal(t->u.map.n, 3);
        assert_int_equal(crm_map_int(t, "a", 0), 1);
        crm_value_free(t);
    }
    assert_null(crm_mp_decode(dup_deep, sizeof dup_deep, &DEF, &err));
    assert_string_equal(err.msg, "invalid msgpack: duplicate key \"id\"");

    /* a map past the scan size: duplicates found by sorting */
    big[n++] = 0xde;
    big[n++] = 0;
    big[n++] = 40;
    for (int i = 0; i < 40; i++) {
        big[n++] = 0xa3;
        big[n++] = 'k';
        big[n++] = (uint8_t)('0' + (i == 39 ? 17 : i) / 10);
        big[n++] = (uint8_t)('0' + (i == 39 ? 17 : i) % 10);
        big[n++] = (uint8_t)i;
    }
    assert_int_equal(crm_mp_check(big, n, &DEF, &err), CRM_OK);
    assert_null(crm_mp_decode(big, n, &DEF, &err));
    assert_string_equal(err.msg, "invalid msgpack: duplicate key \"k17\"");
    big[n - 3] = '9'; /* k39: no duplicate now */
    big[n - 2] = '9';
    v = crm_mp_decode(big, n, &DEF, &err);
    assert_non_null(v);
    assert_int_equal(v->u.map.n, 40);
    assert_int_equal(crm_map_int(v, "k99", -1), 39);
    crm_value_free(v);

    assert_mp_ok(str8_key, sizeof str8_key, &DEF);
    assert_mp_ok(empty_key, sizeof empty_key, &DEF);
}

static void mp_strings_must_be_utf8(void **state)
{
    const uint8_t bad[] = {0x92, 0xa1, 'a', 0xa3, 0xed, 0xa0, 0x80};
    const uint8_t nul[] = {0xa3, 'a', 0, 'b'};
    crm_value *v;
    (void)state;
    expect_mp_err(bad, sizeof bad, &DEF, "invalid msgpack at byte 3: strings must be valid UTF-8",
                  0);
    /* the trusted decoder does not re-validate what crmd itself wrote */
    v = crm_mp_decode_trusted(bad, sizeof bad);
    assert_non_null(v);
    crm_value_free(v);
    assert_mp_ok(nul, sizeof nul, &DEF);
}

static void mp_trailing_bytes(void **state)
{
    const uint8_t two[] = {0x01, 0x02};
    const uint8_t map_then[] = {0x81, 0xa1, 'a', 0x01, 0xc0};
    const uint8_t empty_then[] = {0x90, 0x90};
    (void)state;
    expect_mp_err(two, sizeof two, &DEF,
                  "invalid msgpack at byte 1: trailing bytes after the message", 1);
    expect_mp_err(map_then, sizeof map_then, &DEF,
                  "invalid msgpack at byte 4: trailing bytes after the message", 1);
    expect_mp_err(empty_then, sizeof empty_then, &DEF,
                  "invalid msgpack at byte 1: trailing bytes after the message", 1);
}

static void mp_depth_limits(void **state)
{
    crm_limits deep = {1u << 20, 300}, l0 = {1u << 20, 0};
    const uint8_t empty33[] = {0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91,
                               0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91,
                               0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x90};
    size_t len;
    uint8_t *b;
    crm_value *v;
    (void)state;
    b = nest_mp(32, &len);
    assert_mp_ok(b, len, &DEF);
    free(b);
    b = nest_mp(33, &len);
    expect_mp_err(b, len, &DEF, "nesting deeper than 32", 0);
    free(b);
    expect_mp_err(empty33, sizeof empty33, &DEF, "nesting deeper than 32", 0); /* empty counts */
    b = nest_mp(200, &len);
    expect_mp_err(b, len, &DEF, "nesting deeper than 32", 0);
    free(b);
    b = nest_mp(100000, &len);
    expect_mp_err(b, len, &DEF, "nesting deeper than 32", 1);
    free(b);
    /* limits above the check's stack are capped at 256 */
    b = nest_mp(256, &len);
    assert_mp_ok(b, len, &deep);
    free(b);
    b = nest_mp(257, &len);
    expect_mp_err(b, len, &deep, "nesting deeper than 256", 0);
    free(b);
    /* depth 0: scalars only */
    assert_mp_ok((const uint8_t *)"\x01", 1, &l0);
    expect_mp_err((const uint8_t *)"\x90", 1, &l0, "nesting deeper than 0", 0);

    /* the trusted reader takes what the store may hold, 1024, and no more */
    b = nest_mp(1024, &len);
    v = crm_mp_decode_trusted(b, len);
    assert_non_null(v);
    crm_value_free(v);
    free(b);
    b = nest_mp(1025, &len);
    assert_null(crm_mp_decode_trusted(b, len));
    free(b);
    /* and the encoder refuses to write what the reader would refuse */
    v = nest_value(1024);
    b = crm_mp_encode(v, &len);
    assert_non_null(b);
    free(b);
    crm_value_free(v);
    v = nest_value(1025);
    assert_null(crm_mp_encode(v, &len));
    crm_value_free(v);
}

static void mp_size_limit(void **state)
{
    crm_limits small = {4, 32};
    const uint8_t five[] = {0x94, 1, 2, 3, 4};
    crm_err err;
    (void)state;
    assert_int_equal(crm_mp_check(five, sizeof five, &small, &err), CRM_TOO_LARGE);
    assert_string_equal(err.msg, "message is 5 bytes, the limit is 4");
    assert_null(crm_mp_decode(five, sizeof five, &small, &err));
    assert_int_equal(err.code, CRM_TOO_LARGE);
    assert_mp_ok(five + 1, 1, &small);
}

/* Random bytes, and valid messages with bytes flipped: nothing crashes, the
 * trusted reader never reads past the end, and whatever the check passes the
 * decoder decodes (unless a map repeats a key). */
static void mp_garbage_and_mutations(void **state)
{
    crm_value *base = J("{\"id\":\"c_1\",\"a\":[1,-2,3.5,\"x\",{\"y\":null}],\"s\":\"h\\u00e9\","
                        "\"n\":70000,\"b\":true,\"m\":{\"k\":{\"j\":[[],{}]}}}");
    size_t blen;
    uint8_t *valid = crm_mp_encode(base, &blen);
    (void)state;
    seed_rng(0x5eed);
    for (int iter = 0; iter < 100000; iter++) {
        size_t n;
        uint8_t *b;
        crm_err err;
        crm_value *v;
        if (iter % 2) {
            n = rndn(40);
            b = malloc(n ? n : 1);
            for (size_t i = 0; i < n; i++)
                b[i] = (uint8_t)(rndn(3) ? rnd() : 0x90 + rndn(0x70));
        } else {
            n = blen;
            b = malloc(n);
            memcpy(b, valid, n);
            for (unsigned k = 1 + rndn(3); k > 0; k--)
                b[rndn((unsigned)n)] = (uint8_t)rnd();
            if (rndn(4) == 0)
                n = rndn((unsigned)n);
        }
        crm_value_free(crm_mp_decode_trusted(b, n));
        if (crm_mp_check(b, n, &DEF, &err) == CRM_OK) {
            v = crm_mp_decode(b, n, &DEF, &err);
            if (!v)
                assert_has(err.msg, "duplicate key");
            crm_value_free(v);
        } else {
            assert_null(crm_mp_decode(b, n, &DEF, &err));
        }
        free(b);
    }
    free(valid);
    crm_value_free(base);
}

/* ---- both codecs ---- */

static void random_trees_round_trip(void **state)
{
    (void)state;
    seed_rng(0x2545F4914F6CDD1Dull);
    for (int iter = 0; iter < 4000; iter++) {
        crm_value *v = rnd_value(0), *j, *m, *t;
        size_t jlen, mlen, mlen2;
        crm_err err;
        char *js = crm_json_encode(v, &jlen);
        uint8_t *mp = crm_mp_encode(v, &mlen), *mp2;
        assert_non_null(js);
        assert_non_null(mp);
        assert_int_equal(jlen, strlen(js)); /* NUL travels escaped */
        if (!(j = crm_json_decode(js, jlen, &DEF, &err)))
            fail_msg("iteration %d: JSON did not read back: %s\n%s", iter, err.msg, js);
        if (!crm_value_equal(v, j))
            fail_msg("iteration %d: JSON changed the value\n%s", iter, js);
        if (!(m = crm_mp_decode(mp, mlen, &DEF, &err)))
            fail_msg("iteration %d: msgpack did not read back: %s", iter, err.msg);
        assert_true(crm_value_equal(v, m));
        assert_non_null(t = crm_mp_decode_trusted(mp, mlen));
        assert_true(crm_value_equal(v, t));
        /* equal trees with the same key order encode to the same bytes */
        mp2 = crm_mp_encode(j, &mlen2);
        assert_int_equal(mlen, mlen2);
        assert_memory_equal(mp, mp2, mlen);
        free(js);
        free(mp);
        free(mp2);
        crm_value_free(v);
        crm_value_free(j);
        crm_value_free(m);
        crm_value_free(t);
    }
}

/* crm_mp_peek_strs finds top-level string values up to the first container,
 * and never reads past the end of a cut buffer. */
static void mp_peek_reads_header_strings_only(void **state)
{
    static const char *const keys[] = {"collection", "op", "late"};
    const char *vals[3];
    size_t lens[3], len;
    const char *json = "{\"seq\": 70000, \"ts\": -5, \"f\": 1.5, \"b\": true, \"n\": null, "
                       "\"collection\": \"orders\", \"op\": \"update\", "
                       "\"record\": {\"late\": \"x\"}, \"late\": \"y\"}";
    crm_value *v = crm_json_decode(json, strlen(json), &DEF, NULL);
    uint8_t *mp;
    (void)state;
    assert_non_null(v);
    assert_non_null(mp = crm_mp_encode(v, &len));
    assert_int_equal(crm_mp_peek_strs(mp, len, keys, 3, vals, lens), 2);
    assert_int_equal(lens[0], 6);
    assert_memory_equal(vals[0], "orders", 6);
    assert_int_equal(lens[1], 6);
    assert_memory_equal(vals[1], "update", 6);
    assert_null(vals[2]); /* after a container: not seen */
    /* every cut of the buffer: no read past it, found only what fits */
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *part = malloc(cut ? cut : 1);
        size_t found;
        assert_non_null(part);
        memcpy(part, mp, cut);
        found = crm_mp_peek_strs(part, cut, keys, 3, vals, lens);
        assert_true(found <= 2);
        for (size_t i = 0; i < 3; i++)
            if (vals[i])
                assert_true((const uint8_t *)vals[i] + lens[i] <= part + cut);
        free(part);
    }
    /* not a map */
    assert_int_equal(crm_mp_peek_strs((const uint8_t *)"\x93\x01\x02\x03", 4, keys, 3, vals, lens), 0);
    free(mp);
    crm_value_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mp_peek_reads_header_strings_only),
        cmocka_unit_test(constructors_and_types),
        cmocka_unit_test(arrays_take_ownership),
        cmocka_unit_test(maps_set_replace_del_take),
        cmocka_unit_test(dup_is_deep),
        cmocka_unit_test(cmp_orders_types_and_numbers),
        cmocka_unit_test(cmp_int_against_num_is_exact),
        cmocka_unit_test(cmp_maps_ignore_key_order),
        cmocka_unit_test(cmp_is_a_total_order),
        cmocka_unit_test(utf8_validator),
        cmocka_unit_test(json_decodes_every_type),
        cmocka_unit_test(json_encoder_output),
        cmocka_unit_test(json_refuses_malformed_input),
        cmocka_unit_test(json_size_limit),
        cmocka_unit_test(json_depth_limit),
        cmocka_unit_test(json_encode_refuses_what_jansson_cannot_read),
        cmocka_unit_test(mp_exact_bytes),
        cmocka_unit_test(mp_round_trips),
        cmocka_unit_test(mp_decodes_every_int_and_float_form),
        cmocka_unit_test(mp_giant_declared_lengths_fail_fast),
        cmocka_unit_test(mp_giant_counts_allocate_nothing),
        cmocka_unit_test(mp_every_truncated_prefix_fails),
        cmocka_unit_test(mp_refuses_bin_and_ext),
        cmocka_unit_test(mp_map_keys),
        cmocka_unit_test(mp_strings_must_be_utf8),
        cmocka_unit_test(mp_trailing_bytes),
        cmocka_unit_test(mp_depth_limits),
        cmocka_unit_test(mp_size_limit),
        cmocka_unit_test(mp_garbage_and_mutations),
        cmocka_unit_test(random_trees_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
