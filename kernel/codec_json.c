/*
 * codec_json -- JSON text <-> crm_value.
 *
 * Decoding is jansson's: it checks UTF-8 (surrogates included), refuses
 * duplicate keys, integers beyond int64 and reals that overflow, and bounds
 * its own recursion (2048).  Before it runs, one cheap pass measures bracket
 * nesting so a 100,000-deep message is refused with our depth message rather
 * than after jansson has built 2048 levels of it.
 *
 * Encoding is direct, not through a json_t tree: every record read goes out
 * this way, and building a second tree just to print it doubled the work.
 * It also lets numbers print in their shortest exact form (0.1, not jansson's
 * 0.10000000000000001) and keeps the output valid UTF-8 whatever a string
 * holds: bytes that are not UTF-8 (a Lua script can store any bytes) go out
 * as U+FFFD instead of breaking the client's text frame.  The tests check
 * every encoding against jansson's decoder.
 */
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

/* ---- decode ---- */

/* jansson (2.14, Debian 12) can lose a character of a string when growing
 * its lexer's buffer fails, and the document still parses: a silently
 * changed value (found by tests/faults/oom.c, failing each allocation in
 * turn).  So jansson allocates through these, and a decode during which an
 * allocation failed is refused as out of memory, whatever jansson returned. */
static _Thread_local int json_alloc_failed;

static void *json_alloc(size_t n)
{
    void *p = malloc(n);
    if (!p)
        json_alloc_failed = 1;
    return p;
}

static void json_release(void *p) { free(p); }

static pthread_once_t json_alloc_once = PTHREAD_ONCE_INIT;
static void json_alloc_setup(void) { json_set_alloc_funcs(json_alloc, json_release); }

/* Nesting of [ and { outside strings; exact for valid JSON, and for invalid
 * JSON either answer is fine because jansson refuses it anyway. */
static int json_too_deep(const char *buf, size_t len, int max_depth)
{
    const unsigned char *s = (const unsigned char *)buf;
    int depth = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned c = s[i];
        if (c == '"') {
            for (i++; i < len && s[i] != '"'; i++)
                if (s[i] == '\\')
                    i++;
        } else if (c == '[' || c == '{') {
            if (++depth > max_depth)
                return 1;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return 0;
}

static crm_value *oom(crm_value *partial, crm_err *err)
{
    crm_value_free(partial);
    crm_err_set(err, CRM_INTERNAL, "out of memory");
    return NULL;
}

/* v, or the out-of-memory error when a constructor returned NULL. */
static crm_value *made(crm_value *v, crm_err *err) { return v ? v : oom(NULL, err); }

/* depth: containers above j.  Recursion is bounded by max_depth, and max_depth
 * by jansson's own 2048 however it is configured. */
static crm_value *from_json(json_t *j, int depth, int max_depth, crm_err *err)
{
    crm_value *v;
    size_t n, k = 0;

    switch (json_typeof(j)) {
    case JSON_NULL:
        return made(crm_value_nil(), err);
    case JSON_TRUE:
    case JSON_FALSE:
        return made(crm_value_bool(json_is_true(j)), err);
    case JSON_INTEGER:
        return made(crm_value_int((int64_t)json_integer_value(j)), err);
    case JSON_REAL:
        if (!isfinite(json_real_value(j))) {
            crm_err_set(err, CRM_BAD_REQUEST, "numbers must be finite");
            return NULL;
        }
        return made(crm_value_num(json_real_value(j)), err);
    case JSON_STRING:
        return made(crm_value_str(json_string_value(j), json_string_length(j)), err);
    case JSON_ARRAY:
    case JSON_OBJECT:
        break;
    }
    if (depth >= max_depth) {
        crm_err_set(err, CRM_BAD_REQUEST, "nesting deeper than %d", max_depth);
        return NULL;
    }
    if (json_is_array(j)) {
        if (!(v = crm_value_arr()))
            return oom(NULL, err);
        if ((n = json_array_size(j)) == 0)
            return v;
        if (!(v->u.arr.items = malloc(n * sizeof *v->u.arr.items)))
            return oom(v, err);
        v->u.arr.cap = n;
        for (k = 0; k < n; k++) {
            crm_value *item = from_json(json_array_get(j, k), depth + 1, max_depth, err);
            if (!item) {
                crm_value_free(v);
                return NULL;
            }
            v->u.arr.items[v->u.arr.n++] = item;
        }
        return v;
    } else {
        const char *key;
        size_t klen;
        json_t *item;
        if (!(v = crm_value_map()))
            return oom(NULL, err);
        if ((n = json_object_size(j)) == 0)
            return v;
        if (!(v->u.map.kv = malloc(n * sizeof *v->u.map.kv)))
            return oom(v, err);
        v->u.map.cap = n;
        /* jansson refused duplicates and keeps insertion order, so the pairs
         * go straight in: no per-key search. */
        json_object_keylen_foreach(j, key, klen, item)
        {
            crm_kv *kv = &v->u.map.kv[v->u.map.n];
            if (v->u.map.n == n || !(kv->key = malloc(klen + 1)))
                return oom(v, err);
            memcpy(kv->key, key, klen);
            kv->key[klen] = '\0';
            kv->klen = klen;
            if (!(kv->val = from_json(item, depth + 1, max_depth, err))) {
                free(kv->key);
                crm_value_free(v);
                return NULL;
            }
            v->u.map.n++;
        }
        return v;
    }
}

crm_value *crm_json_decode(const char *buf, size_t len, const crm_limits *lim, crm_err *err)
{
    const crm_limits dflt = CRM_LIMITS_DEFAULT;
    json_error_t je;
    json_t *j;
    crm_value *v;

    if (!lim)
        lim = &dflt;
    if (len > lim->max_bytes) {
        crm_err_set(err, CRM_TOO_LARGE, "message is %zu bytes, the limit is %zu", len,
                    lim->max_bytes);
        return NULL;
    }
    if (json_too_deep(buf, len, lim->max_depth)) {
        crm_err_set(err, CRM_BAD_REQUEST, "nesting deeper than %d", lim->max_depth);
        return NULL;
    }
    /* DECODE_ANY: a scalar is a valid document; the wire layer wants an object
     * and says so itself.  ALLOW_NUL: "\u0000" is a valid string character
     * and our strings carry their length (jansson still refuses it in keys). */
    pthread_once(&json_alloc_once, json_alloc_setup);
    json_alloc_failed = 0;
    j = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (json_alloc_failed) {
        json_decref(j);
        return oom(NULL, err);
    }
    if (!j) {
        if (json_error_code(&je) == json_error_out_of_memory)
            return oom(NULL, err);
        crm_err_set(err, CRM_BAD_REQUEST, "invalid JSON at line %d, column %d: %s", je.line,
                    je.column, je.text);
        return NULL;
    }
    v = from_json(j, 0, lim->max_depth, err);
    json_decref(j);
    return v;
}

/* ---- encode ---- */

typedef struct jbuf {
    char *p;
    size_t n, cap;
    int failed;
} jbuf;

/* Room for more bytes; on failure the buffer is marked and every later write
 * is dropped, so callers check once at the end. */
static int jb_room(jbuf *b, size_t more)
{
    size_t nc;
    char *np;
    if (b->failed)
        return 0;
    if (more <= b->cap - b->n)
        return 1;
    for (nc = b->cap ? b->cap : 256; nc - b->n < more; nc *= 2)
        if (nc > SIZE_MAX / 2)
            return b->failed = 1, 0;
    if (!(np = realloc(b->p, nc)))
        return b->failed = 1, 0;
    b->p = np;
    b->cap = nc;
    return 1;
}

static void jb_put(jbuf *b, const void *s, size_t n)
{
    if (jb_room(b, n)) {
        memcpy(b->p + b->n, s, n);
        b->n += n;
    }
}

static void jb_putc(jbuf *b, char c)
{
    if (jb_room(b, 1))
        b->p[b->n++] = c;
}

static void put_int(jbuf *b, int64_t i)
{
    char tmp[24], *e = tmp + sizeof tmp, *p = e;
    uint64_t u = i < 0 ? 0 - (uint64_t)i : (uint64_t)i;
    do
        *--p = (char)('0' + u % 10);
    while (u /= 10);
    if (i < 0)
        *--p = '-';
    jb_put(b, p, (size_t)(e - p));
}

/* The shortest of %.15g..%.17g that reads back as the same double, with ".0"
 * added when it would otherwise read back as an int. */
static void put_num(jbuf *b, double d)
{
    char tmp[40];
    int n = 0;
    if (!isfinite(d)) {
        jb_put(b, "null", 4);
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(tmp, sizeof tmp - 2, "%.*g", prec, d);
        if (prec == 17 || strtod(tmp, NULL) == d)
            break;
    }
    /* a locale with a decimal comma would print one; JSON wants a point */
    for (char *c = tmp; *c; c++)
        if (*c == ',')
            *c = '.';
    if (!strpbrk(tmp, ".eE")) {
        memcpy(tmp + n, ".0", 3);
        n += 2;
    }
    jb_put(b, tmp, (size_t)n);
}

static void put_str(jbuf *b, const char *str, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str, *end = s + len;
    jb_room(b, len + 2);
    jb_putc(b, '"');
    while (s < end) {
        const unsigned char *run = s;
        while (s < end && *s >= 0x20 && *s < 0x80 && *s != '"' && *s != '\\')
            s++;
        jb_put(b, run, (size_t)(s - run));
        if (s == end)
            break;
        if (*s >= 0x80) {
            size_t n = *s >= 0xF0 ? 4 : *s >= 0xE0 ? 3 : 2;
            if (n <= (size_t)(end - s) && crm_utf8_valid((const char *)s, n)) {
                jb_put(b, s, n);
                s += n;
            } else {
                jb_put(b, "\xEF\xBF\xBD", 3); /* U+FFFD for one bad byte */
                s++;
            }
            continue;
        }
        switch (*s) {
        case '"': jb_put(b, "\\\"", 2); break;
        case '\\': jb_put(b, "\\\\", 2); break;
        case '\b': jb_put(b, "\\b", 2); break;
        case '\f': jb_put(b, "\\f", 2); break;
        case '\n': jb_put(b, "\\n", 2); break;
        case '\r': jb_put(b, "\\r", 2); break;
        case '\t': jb_put(b, "\\t", 2); break;
        default: {
            char u[6] = {'\\', 'u', '0', '0', hex[*s >> 4], hex[*s & 15]};
            jb_put(b, u, 6);
        }
        }
        s++;
    }
    jb_putc(b, '"');
}

/* depth: containers above v.  jansson reads values at most
 * JSON_PARSER_MAX_DEPTH deep, a scalar counting as a level of its own, so
 * anything deeper is refused here rather than written unreadable. */
static void put_value(jbuf *b, const crm_value *v, int depth)
{
    if (depth >= JSON_PARSER_MAX_DEPTH) {
        b->failed = 1;
        return;
    }
    switch (v->type) {
    case CRM_T_NIL:
        jb_put(b, "null", 4);
        return;
    case CRM_T_BOOL:
        if (v->u.b)
            jb_put(b, "true", 4);
        else
            jb_put(b, "false", 5);
        return;
    case CRM_T_INT:
        put_int(b, v->u.i);
        return;
    case CRM_T_NUM:
        put_num(b, v->u.n);
        return;
    case CRM_T_STR:
        put_str(b, v->u.str.s, v->u.str.len);
        return;
    case CRM_T_ARR:
    case CRM_T_MAP:
        break;
    default:
        b->failed = 1;
        return;
    }
    if (v->type == CRM_T_ARR) {
        jb_putc(b, '[');
        for (size_t i = 0; i < v->u.arr.n && !b->failed; i++) {
            if (i)
                jb_putc(b, ',');
            put_value(b, v->u.arr.items[i], depth + 1);
        }
        jb_putc(b, ']');
    } else {
        jb_putc(b, '{');
        for (size_t i = 0; i < v->u.map.n && !b->failed; i++) {
            if (i)
                jb_putc(b, ',');
            put_str(b, v->u.map.kv[i].key, v->u.map.kv[i].klen);
            jb_putc(b, ':');
            put_value(b, v->u.map.kv[i].val, depth + 1);
        }
        jb_putc(b, '}');
    }
}

char *crm_json_encode(const crm_value *v, size_t *len_out)
{
    jbuf b = {0};
    if (!v)
        return NULL;
    put_value(&b, v, 0);
    jb_putc(&b, '\0');
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    if (len_out)
        *len_out = b.n - 1;
    return b.p;
}
