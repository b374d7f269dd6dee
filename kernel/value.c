/*
 * value -- the crm_value tree: construction and ownership, arrays and maps,
 * the total order, and the UTF-8 check every decoder relies on.
 *
 * Maps hold a record's fields, a few dozen at most, so they are one array of
 * key/value pairs in insertion order and a key is found by a linear scan: no
 * hashing and no per-map index to keep in step.  The decoders do not go
 * through crm_map_set (a hostile 100,000-key object would make that scan
 * quadratic); they fill the pair array directly and refuse duplicates
 * themselves.  Nothing here may assume a string is NUL-free: lengths are
 * carried everywhere and the trailing NUL is only a convenience for callers.
 */
#include "value.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- construction ---- */

static crm_value *new_value(crm_type t)
{
    crm_value *v = calloc(1, sizeof *v);
    if (v)
        v->type = t;
    return v;
}

crm_value *crm_value_nil(void) { return new_value(CRM_T_NIL); }
crm_value *crm_value_arr(void) { return new_value(CRM_T_ARR); }
crm_value *crm_value_map(void) { return new_value(CRM_T_MAP); }

crm_value *crm_value_bool(int b)
{
    crm_value *v = new_value(CRM_T_BOOL);
    if (v)
        v->u.b = b != 0;
    return v;
}

crm_value *crm_value_int(int64_t i)
{
    crm_value *v = new_value(CRM_T_INT);
    if (v)
        v->u.i = i;
    return v;
}

crm_value *crm_value_num(double n)
{
    crm_value *v = new_value(CRM_T_NUM);
    if (v)
        v->u.n = n;
    return v;
}

crm_value *crm_value_str(const char *s, size_t len)
{
    crm_value *v;
    if (len == SIZE_MAX || (!s && len))
        return NULL;
    if (!(v = malloc(sizeof *v)))
        return NULL;
    if (!(v->u.str.s = malloc(len + 1))) {
        free(v);
        return NULL;
    }
    v->type = CRM_T_STR;
    if (len)
        memcpy(v->u.str.s, s, len);
    v->u.str.s[len] = '\0';
    v->u.str.len = len;
    return v;
}

crm_value *crm_value_cstr(const char *s) { return s ? crm_value_str(s, strlen(s)) : NULL; }

void crm_value_free(crm_value *v)
{
    if (!v)
        return;
    switch (v->type) {
    case CRM_T_STR:
        free(v->u.str.s);
        break;
    case CRM_T_ARR:
        for (size_t i = 0; i < v->u.arr.n; i++)
            crm_value_free(v->u.arr.items[i]);
        free(v->u.arr.items);
        break;
    case CRM_T_MAP:
        for (size_t i = 0; i < v->u.map.n; i++) {
            free(v->u.map.kv[i].key);
            crm_value_free(v->u.map.kv[i].val);
        }
        free(v->u.map.kv);
        break;
    default:
        break;
    }
    free(v);
}

/* Containers are copied at their exact size: a copy is rarely grown. */
crm_value *crm_value_dup(const crm_value *v)
{
    crm_value *d;
    size_t n;
    if (!v)
        return NULL;
    switch (v->type) {
    case CRM_T_STR:
        return crm_value_str(v->u.str.s, v->u.str.len);
    case CRM_T_ARR:
        if (!(d = crm_value_arr()))
            return NULL;
        if ((n = v->u.arr.n) == 0)
            return d;
        if (!(d->u.arr.items = malloc(n * sizeof *d->u.arr.items))) {
            free(d);
            return NULL;
        }
        d->u.arr.cap = n;
        for (size_t i = 0; i < n; i++) {
            if (!(d->u.arr.items[i] = crm_value_dup(v->u.arr.items[i]))) {
                crm_value_free(d);
                return NULL;
            }
            d->u.arr.n++;
        }
        return d;
    case CRM_T_MAP:
        if (!(d = crm_value_map()))
            return NULL;
        if ((n = v->u.map.n) == 0)
            return d;
        if (!(d->u.map.kv = malloc(n * sizeof *d->u.map.kv))) {
            free(d);
            return NULL;
        }
        d->u.map.cap = n;
        for (size_t i = 0; i < n; i++) {
            const crm_kv *src = &v->u.map.kv[i];
            crm_kv *kv = &d->u.map.kv[i];
            if (!(kv->key = malloc(src->klen + 1))) {
                crm_value_free(d);
                return NULL;
            }
            memcpy(kv->key, src->key, src->klen + 1);
            kv->klen = src->klen;
            if (!(kv->val = crm_value_dup(src->val))) {
                free(kv->key);
                crm_value_free(d);
                return NULL;
            }
            d->u.map.n++;
        }
        return d;
    default:
        if ((d = new_value(v->type)))
            d->u = v->u;
        return d;
    }
}

/* ---- arrays ---- */

int crm_arr_push(crm_value *arr, crm_value *item)
{
    if (!item)
        return -1;
    if (!arr || arr->type != CRM_T_ARR) {
        crm_value_free(item);
        return -1;
    }
    if (arr->u.arr.n == arr->u.arr.cap) {
        size_t nc = arr->u.arr.cap ? arr->u.arr.cap * 2 : 4;
        crm_value **ni = nc < SIZE_MAX / sizeof *ni ? realloc(arr->u.arr.items, nc * sizeof *ni)
                                                    : NULL;
        if (!ni) {
            crm_value_free(item);
            return -1;
        }
        arr->u.arr.items = ni;
        arr->u.arr.cap = nc;
    }
    arr->u.arr.items[arr->u.arr.n++] = item;
    return 0;
}

/* ---- maps ---- */

static crm_kv *map_find(const crm_value *map, const char *key, size_t klen)
{
    crm_kv *kv, *end;
    /* an empty map may have no kv array yet, and NULL + 0 is undefined in
     * C (clang's UBSan reports it; found by fuzz/fuzz_schema.c) */
    if (!map || map->type != CRM_T_MAP || (!key && klen) || map->u.map.n == 0)
        return NULL;
    for (kv = map->u.map.kv, end = kv + map->u.map.n; kv < end; kv++)
        if (kv->klen == klen && memcmp(kv->key, key, klen) == 0)
            return kv;
    return NULL;
}

crm_value *crm_map_getn(const crm_value *map, const char *key, size_t klen)
{
    crm_kv *kv = map_find(map, key, klen);
    return kv ? kv->val : NULL;
}

crm_value *crm_map_get(const crm_value *map, const char *key)
{
    return key ? crm_map_getn(map, key, strlen(key)) : NULL;
}

int crm_map_setn(crm_value *map, const char *key, size_t klen, crm_value *val)
{
    crm_kv *kv;
    if (!val)
        return -1;
    if (!map || map->type != CRM_T_MAP || (!key && klen) || klen == SIZE_MAX) {
        crm_value_free(val);
        return -1;
    }
    if ((kv = map_find(map, key, klen))) {
        crm_value_free(kv->val);
        kv->val = val;
        return 0;
    }
    if (map->u.map.n == map->u.map.cap) {
        size_t nc = map->u.map.cap ? map->u.map.cap * 2 : 8;
        crm_kv *nk = nc < SIZE_MAX / sizeof *nk ? realloc(map->u.map.kv, nc * sizeof *nk) : NULL;
        if (!nk) {
            crm_value_free(val);
            return -1;
        }
        map->u.map.kv = nk;
        map->u.map.cap = nc;
    }
    kv = &map->u.map.kv[map->u.map.n];
    if (!(kv->key = malloc(klen + 1))) {
        crm_value_free(val);
        return -1;
    }
    if (klen)
        memcpy(kv->key, key, klen);
    kv->key[klen] = '\0';
    kv->klen = klen;
    kv->val = val;
    map->u.map.n++;
    return 0;
}

int crm_map_set(crm_value *map, const char *key, crm_value *val)
{
    if (!key) {
        crm_value_free(val);
        return -1;
    }
    return crm_map_setn(map, key, strlen(key), val);
}

crm_value *crm_map_take(crm_value *map, const char *key)
{
    crm_kv *kv = key ? map_find(map, key, strlen(key)) : NULL;
    crm_value *v;
    size_t after;
    if (!kv)
        return NULL;
    v = kv->val;
    free(kv->key);
    /* shift rather than swap with the last pair: insertion order is kept */
    after = map->u.map.n - (size_t)(kv - map->u.map.kv) - 1;
    memmove(kv, kv + 1, after * sizeof *kv);
    map->u.map.n--;
    return v;
}

int crm_map_del(crm_value *map, const char *key)
{
    crm_value *v = crm_map_take(map, key);
    if (!v)
        return 0;
    crm_value_free(v);
    return 1;
}

const char *crm_map_str(const crm_value *map, const char *key, const char *fallback)
{
    const crm_value *v = crm_map_get(map, key);
    return v && v->type == CRM_T_STR ? v->u.str.s : fallback;
}

/* A num counts when it holds an integer exactly (a client may send 5.0). */
int64_t crm_map_int(const crm_value *map, const char *key, int64_t fallback)
{
    const crm_value *v = crm_map_get(map, key);
    if (v && v->type == CRM_T_INT)
        return v->u.i;
    if (v && v->type == CRM_T_NUM && v->u.n >= -9223372036854775808.0 &&
        v->u.n < 9223372036854775808.0 && v->u.n == floor(v->u.n))
        return (int64_t)v->u.n;
    return fallback;
}

/* ---- numbers and the order ---- */

int crm_value_is_number(const crm_value *v)
{
    return v && (v->type == CRM_T_INT || v->type == CRM_T_NUM);
}

double crm_value_as_double(const crm_value *v)
{
    if (v && v->type == CRM_T_INT)
        return (double)v->u.i;
    if (v && v->type == CRM_T_NUM)
        return v->u.n;
    return 0;
}

static int type_rank(const crm_value *v)
{
    static const int rank[] = {[CRM_T_NIL] = 0, [CRM_T_BOOL] = 1, [CRM_T_INT] = 2,
                               [CRM_T_NUM] = 2, [CRM_T_STR] = 3,  [CRM_T_ARR] = 4,
                               [CRM_T_MAP] = 5};
    return v && (unsigned)v->type <= CRM_T_MAP ? rank[v->type] : 0;
}

#define SIGN(a, b) (((a) > (b)) - ((a) < (b)))

/* NaN never comes from a decoder, but a computed num can hold one; it sorts
 * below every other number so the order stays total. */
static int cmp_num(double a, double b)
{
    if (isnan(a) || isnan(b))
        return isnan(b) - isnan(a);
    return SIGN(a, b);
}

/* int against num, exactly: converting the int to double would make
 * 2^53 + 1 equal to 2^53. */
static int cmp_int_num(int64_t i, double d)
{
    int64_t di;
    if (isnan(d))
        return 1;
    if (d >= 9223372036854775808.0) /* 2^63: above every int64 */
        return -1;
    if (d < -9223372036854775808.0)
        return 1;
    di = (int64_t)d; /* truncates toward zero */
    if (i != di)
        return SIGN(i, di);
    d -= (double)di; /* the fraction, exact */
    return d > 0 ? -1 : d < 0 ? 1 : 0;
}

static int cmp_bytes(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c ? (c < 0 ? -1 : 1) : SIGN(alen, blen);
}

static int cmp_kv_key(const void *x, const void *y)
{
    const crm_kv *a = *(const crm_kv *const *)x, *b = *(const crm_kv *const *)y;
    return cmp_bytes(a->key, a->klen, b->key, b->klen);
}

/* The pair with the smallest key above prev's (the first when prev is NULL):
 * the allocation-free way to walk a map in key order when sorting cannot get
 * memory. */
static const crm_kv *next_in_key_order(const crm_value *m, const crm_kv *prev)
{
    const crm_kv *best = NULL;
    for (size_t i = 0; i < m->u.map.n; i++) {
        const crm_kv *kv = &m->u.map.kv[i];
        if (prev && cmp_kv_key(&kv, &prev) <= 0)
            continue;
        if (!best || cmp_kv_key(&kv, &best) < 0)
            best = kv;
    }
    return best;
}

/* Maps are unordered for comparison (two records with the same fields are
 * equal however they arrived): by size, then pair by pair in key order. */
static int cmp_map(const crm_value *a, const crm_value *b)
{
    size_t n = a->u.map.n, i;
    const crm_kv *stack[2 * 32], **sa, **sb, *pa = NULL, *pb = NULL;
    const crm_kv *first = NULL;
    int c, fc = 0;

    if (n != b->u.map.n)
        return SIGN(n, b->u.map.n);
    /* Common case: the same keys in the same order.  The answer is then the
     * value difference under the smallest key, found in one pass. */
    for (i = 0; i < n; i++) {
        const crm_kv *x = &a->u.map.kv[i], *y = &b->u.map.kv[i];
        if (x->klen != y->klen || memcmp(x->key, y->key, x->klen) != 0)
            break;
        if ((c = crm_value_cmp(x->val, y->val)) && (!first || cmp_kv_key(&x, &first) < 0)) {
            first = x;
            fc = c;
        }
    }
    if (i == n)
        return fc;

    if (n <= 32) {
        sa = stack;
        sb = stack + 32;
    } else if (n < SIZE_MAX / (2 * sizeof *sa) && (sa = malloc(2 * n * sizeof *sa))) {
        sb = sa + n;
    } else {
        for (i = 0; i < n; i++) {
            pa = next_in_key_order(a, pa);
            pb = next_in_key_order(b, pb);
            if ((c = cmp_kv_key(&pa, &pb)) || (c = crm_value_cmp(pa->val, pb->val)))
                return c;
        }
        return 0;
    }
    for (i = 0; i < n; i++) {
        sa[i] = &a->u.map.kv[i];
        sb[i] = &b->u.map.kv[i];
    }
    qsort(sa, n, sizeof *sa, cmp_kv_key);
    qsort(sb, n, sizeof *sb, cmp_kv_key);
    for (c = 0, i = 0; i < n && !c; i++)
        if (!(c = cmp_kv_key(&sa[i], &sb[i])))
            c = crm_value_cmp(sa[i]->val, sb[i]->val);
    if (sa != stack)
        free(sa);
    return c;
}

int crm_value_cmp(const crm_value *a, const crm_value *b)
{
    int ra = type_rank(a), rb = type_rank(b);
    if (ra != rb)
        return SIGN(ra, rb);
    if (ra == 0) /* nil, or an absent (NULL) value, which compares as nil */
        return 0;
    switch (a->type) {
    case CRM_T_BOOL:
        return SIGN(a->u.b, b->u.b);
    case CRM_T_INT:
        return b->type == CRM_T_INT ? SIGN(a->u.i, b->u.i) : cmp_int_num(a->u.i, b->u.n);
    case CRM_T_NUM:
        return b->type == CRM_T_NUM ? cmp_num(a->u.n, b->u.n) : -cmp_int_num(b->u.i, a->u.n);
    case CRM_T_STR:
        return cmp_bytes(a->u.str.s, a->u.str.len, b->u.str.s, b->u.str.len);
    case CRM_T_ARR:
        for (size_t i = 0; i < a->u.arr.n && i < b->u.arr.n; i++) {
            int c = crm_value_cmp(a->u.arr.items[i], b->u.arr.items[i]);
            if (c)
                return c;
        }
        return SIGN(a->u.arr.n, b->u.arr.n);
    default:
        return cmp_map(a, b);
    }
}

int crm_value_equal(const crm_value *a, const crm_value *b) { return crm_value_cmp(a, b) == 0; }

const char *crm_type_name(crm_type t)
{
    static const char *const names[] = {[CRM_T_NIL] = "null",   [CRM_T_BOOL] = "bool",
                                        [CRM_T_INT] = "int",    [CRM_T_NUM] = "number",
                                        [CRM_T_STR] = "string", [CRM_T_ARR] = "array",
                                        [CRM_T_MAP] = "map"};
    return (unsigned)t <= CRM_T_MAP ? names[t] : "unknown";
}

/* ---- UTF-8 ---- */

/* Unicode 15, table 3-7: the second byte's range depends on the first, which
 * is what rules out overlongs (E0 80..9F, F0 80..8F), surrogates (ED A0..BF)
 * and code points above U+10FFFF (F4 90..BF). */
int crm_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str, *end = s + len;
    while (s < end) {
        unsigned c = *s, lo = 0x80, hi = 0xBF;
        size_t n;
        if (c < 0x80) {
            /* ASCII dominates: skip it eight bytes at a time */
            uint64_t w;
            while (end - s >= 8 && (memcpy(&w, s, 8), !(w & 0x8080808080808080u)))
                s += 8;
            while (s < end && *s < 0x80)
                s++;
            continue;
        }
        if (c < 0xC2) {
            return 0; /* stray continuation byte, or an overlong C0/C1 lead */
        } else if (c < 0xE0) {
            n = 1;
        } else if (c < 0xF0) {
            n = 2;
            lo = c == 0xE0 ? 0xA0 : 0x80;
            hi = c == 0xED ? 0x9F : 0xBF;
        } else if (c < 0xF5) {
            n = 3;
            lo = c == 0xF0 ? 0x90 : 0x80;
            hi = c == 0xF4 ? 0x8F : 0xBF;
        } else {
            return 0;
        }
        if ((size_t)(end - s) <= n || s[1] < lo || s[1] > hi)
            return 0;
        for (size_t k = 2; k <= n; k++)
            if ((s[k] & 0xC0) != 0x80)
                return 0;
        s += n + 1;
    }
    return 1;
}
