/*
 * codec_msgpack -- msgpack bytes <-> crm_value: the store's record format
 * and the wire's binary encoding.
 *
 * Untrusted bytes first go through crm_mp_check: one forward pass, no
 * recursion, no allocation, a fixed stack of remaining-item counts.  Every
 * declared length is checked against the bytes that remain (an array of N
 * items needs N more bytes, a map of N pairs 2N), so a 5-byte frame claiming
 * 100 million items is refused before anything is reserved for it.
 *
 * Packing is msgpack-c's packer (it picks the smallest form of each int).
 * Unpacking is our own reader, not msgpack_unpack_next, for three reasons:
 * msgpack-c 4.0's C unpacker refuses nesting deeper than 32 (its
 * MSGPACK_EMBED_STACK_SIZE), which would fail limits above the default and
 * deeper records the store holds; it reserves whatever a declared count asks
 * for, which a corrupt record handed to crm_mp_decode_trusted (no pre-pass)
 * could abuse; and it builds a zone of msgpack_objects that we would only
 * convert and throw away.  The reader bounds-checks every byte, so garbage
 * yields NULL, never a crash, and it reserves at most MP_PREALLOC items
 * ahead of the bytes that actually arrive.
 */
#include <math.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

#define MP_CHECK_MAX_DEPTH 256    /* crm_mp_check's stack; deeper limits are capped here */
#define MP_TRUSTED_MAX_DEPTH 1024 /* the reader's recursion for store bytes; encode refuses more */
#define MP_PREALLOC 256           /* items reserved ahead; larger counts grow as items arrive */
#define MP_DUP_SCAN 16            /* maps up to this size check keys by scan, larger ones sort */

/* ---- the one place that reads a type byte ---- */

enum {
    MP_TRUNCATED, /* the head runs past the end */
    MP_REFUSED,   /* bin, ext, fixext, or the never-used 0xc1 */
    MP_BIGUINT,   /* a uint64 above INT64_MAX */
    MP_NIL,
    MP_BOOL,
    MP_INT,
    MP_FLOAT,
    MP_STR,
    MP_ARR,
    MP_MAP
};

typedef struct mp_head {
    size_t size; /* bytes of the head: type byte, length field, fixed-size payload */
    uint64_t n;  /* str: bytes that follow; arr: items; map: pairs */
    int64_t i;
    double d;
    int b;
} mp_head;

/* Two's complement of the low `bits` bits, without an implementation-defined
 * conversion. */
static int64_t sign_extend(uint64_t u, unsigned bits)
{
    uint64_t sign = (uint64_t)1 << (bits - 1), mask = sign | (sign - 1);
    return u & sign ? -(int64_t)(~u & mask) - 1 : (int64_t)u;
}

static int mp_read_head(const uint8_t *p, size_t avail, mp_head *h)
{
    uint64_t u = 0;
    size_t w;
    uint8_t b;

    if (avail == 0)
        return MP_TRUNCATED;
    b = p[0];
    h->size = 1;
    if (b <= 0x7f || b >= 0xe0) { /* positive and negative fixint */
        h->i = sign_extend(b, 8);
        return MP_INT;
    }
    if (b <= 0x9f) {
        h->n = b & 0x0f;
        return b <= 0x8f ? MP_MAP : MP_ARR;
    }
    if (b <= 0xbf) {
        h->n = b & 0x1f;
        return MP_STR;
    }
    switch (b) {
    case 0xc0:
        return MP_NIL;
    case 0xc2:
    case 0xc3:
        h->b = b == 0xc3;
        return MP_BOOL;
    case 0xca:
        w = 4;
        break;
    case 0xcb:
        w = 8;
        break;
    case 0xcc: case 0xcd: case 0xce: case 0xcf:
        w = (size_t)1 << (b - 0xcc);
        break;
    case 0xd0: case 0xd1: case 0xd2: case 0xd3:
        w = (size_t)1 << (b - 0xd0);
        break;
    case 0xd9: case 0xda: case 0xdb:
        w = (size_t)1 << (b - 0xd9);
        break;
    case 0xdc: case 0xde:
        w = 2;
        break;
    case 0xdd: case 0xdf:
        w = 4;
        break;
    default:
        return MP_REFUSED;
    }
    if (avail - 1 < w)
        return MP_TRUNCATED;
    h->size += w;
    for (size_t k = 1; k <= w; k++)
        u = u << 8 | p[k];
    switch (b) {
    case 0xca: {
        uint32_t u32 = (uint32_t)u;
        float f;
        memcpy(&f, &u32, sizeof f);
        h->d = f;
        return MP_FLOAT;
    }
    case 0xcb:
        memcpy(&h->d, &u, sizeof h->d);
        return MP_FLOAT;
    case 0xcc: case 0xcd: case 0xce: case 0xcf:
        if (u > INT64_MAX)
            return MP_BIGUINT;
        h->i = (int64_t)u;
        return MP_INT;
    case 0xd0: case 0xd1: case 0xd2: case 0xd3:
        h->i = sign_extend(u, (unsigned)w * 8);
        return MP_INT;
    case 0xd9: case 0xda: case 0xdb:
        h->n = u;
        return MP_STR;
    case 0xdc: case 0xdd:
        h->n = u;
        return MP_ARR;
    default:
        h->n = u;
        return MP_MAP;
    }
}

static int mp_bad(crm_err *err, size_t at, const char *what)
{
    return crm_err_set(err, CRM_BAD_REQUEST, "invalid msgpack at byte %zu: %s", at, what);
}

/* The error for a head that is not a value we accept, or a declared length
 * the remaining bytes cannot hold. */
static int mp_bad_head(crm_err *err, const uint8_t *buf, size_t at, int kind, const mp_head *h,
                       size_t rest)
{
    switch (kind) {
    case MP_TRUNCATED:
        return mp_bad(err, at, "truncated");
    case MP_REFUSED:
        return crm_err_set(err, CRM_BAD_REQUEST,
                           "invalid msgpack at byte %zu: type 0x%02x is not accepted "
                           "(bin and ext are refused)",
                           at, buf[at]);
    case MP_BIGUINT:
        return mp_bad(err, at, "integer above the int64 range");
    case MP_FLOAT:
        return mp_bad(err, at, "numbers must be finite");
    default:
        return crm_err_set(err, CRM_BAD_REQUEST,
                           "invalid msgpack at byte %zu: declares %llu %s, only %zu bytes follow",
                           at, (unsigned long long)h->n,
                           kind == MP_STR ? "string bytes" : kind == MP_ARR ? "items" : "pairs",
                           rest);
    }
}

/* ---- the bounded pre-pass ---- */

int crm_mp_check(const uint8_t *buf, size_t len, const crm_limits *lim, crm_err *err)
{
    /* left[d]: items still due in the open container d (a map's keys and
     * values count separately, so a key is due when the count is even) */
    uint64_t left[MP_CHECK_MAX_DEPTH];
    uint8_t is_map[MP_CHECK_MAX_DEPTH];
    const crm_limits dflt = CRM_LIMITS_DEFAULT;
    int depth = 0, max_depth;
    size_t i = 0;

    if (!lim)
        lim = &dflt;
    if (len > lim->max_bytes)
        return crm_err_set(err, CRM_TOO_LARGE, "message is %zu bytes, the limit is %zu", len,
                           lim->max_bytes);
    if (!buf) {
        buf = (const uint8_t *)"";
        len = 0;
    }
    max_depth = lim->max_depth < MP_CHECK_MAX_DEPTH ? lim->max_depth : MP_CHECK_MAX_DEPTH;
    do {
        mp_head h;
        size_t at = i;
        int kind = mp_read_head(buf + i, len - i, &h);
        /* cppcheck-suppress uninitvar ; depth > 0 means entry depth-1 is set */
        int key = depth > 0 && is_map[depth - 1] && left[depth - 1] % 2 == 0;
        uint64_t items = 0;

        if (kind < MP_NIL)
            return mp_bad_head(err, buf, at, kind, &h, 0);
        if (key && kind != MP_STR)
            return mp_bad(err, at, "map keys must be strings");
        i += h.size;
        switch (kind) {
        case MP_FLOAT:
            if (!isfinite(h.d))
                return mp_bad_head(err, buf, at, kind, &h, 0);
            break;
        case MP_STR:
            if (h.n > len - i)
                return mp_bad_head(err, buf, at, kind, &h, len - i);
            if (!crm_utf8_valid((const char *)buf + i, h.n))
                return mp_bad(err, at, "strings must be valid UTF-8");
            /* keys are C strings to the rest of crmd (crm_map_get) */
            if (key && memchr(buf + i, 0, h.n))
                return mp_bad(err, at, "map keys must not contain NUL bytes");
            i += h.n;
            break;
        case MP_ARR:
        case MP_MAP:
            if (depth >= max_depth)
                return crm_err_set(err, CRM_BAD_REQUEST, "nesting deeper than %d", max_depth);
            items = kind == MP_MAP ? 2 * h.n : h.n; /* n < 2^32: no overflow */
            if (items > len - i)
                return mp_bad_head(err, buf, at, kind, &h, len - i);
            break;
        default:
            break;
        }
        if (depth > 0)
            left[depth - 1]--;
        if (items > 0) {
            left[depth] = items;
            is_map[depth] = kind == MP_MAP;
            depth++;
        }
        while (depth > 0 && left[depth - 1] == 0)
            depth--;
    } while (depth > 0);
    if (i != len)
        return mp_bad(err, i, "trailing bytes after the message");
    return CRM_OK;
}

/* ---- the reader ---- */

typedef struct mp_in {
    const uint8_t *buf;
    size_t len, i;
    int max_depth;
    crm_err *err; /* NULL for trusted bytes: nobody reads the reason */
    int trusted;  /* bytes the store wrote from maps: their keys are unique */
} mp_in;

static crm_value *mp_oom(mp_in *in, crm_value *partial)
{
    crm_value_free(partial);
    crm_err_set(in->err, CRM_INTERNAL, "out of memory");
    return NULL;
}

static crm_value *mp_value(mp_in *in, int depth);

static int key_cmp(const void *x, const void *y)
{
    const crm_kv *a = *(const crm_kv *const *)x, *b = *(const crm_kv *const *)y;
    int c = memcmp(a->key, b->key, a->klen < b->klen ? a->klen : b->klen);
    return c ? c : (a->klen > b->klen) - (a->klen < b->klen);
}

/* A duplicate among m's keys, for maps too big to scan pair by pair: sort
 * pointers and compare neighbours.  Sets *dup; -1 on OOM. */
static int mp_find_dup(const crm_value *m, const crm_kv **dup)
{
    size_t n = m->u.map.n;
    const crm_kv **s = malloc(n * sizeof *s);
    *dup = NULL;
    if (!s)
        return -1;
    for (size_t k = 0; k < n; k++)
        s[k] = &m->u.map.kv[k];
    qsort(s, n, sizeof *s, key_cmp);
    for (size_t k = 1; k < n && !*dup; k++)
        if (key_cmp(&s[k - 1], &s[k]) == 0)
            *dup = s[k];
    free(s);
    return 0;
}

static crm_value *mp_dup_key(mp_in *in, crm_value *m, const char *key, size_t klen)
{
    crm_err_set(in->err, CRM_BAD_REQUEST, "invalid msgpack: duplicate key \"%.*s\"",
                (int)(klen < 64 ? klen : 64), key);
    crm_value_free(m);
    return NULL;
}

static crm_value *mp_container(mp_in *in, int kind, const mp_head *h, size_t at, int depth)
{
    uint64_t n = h->n;
    size_t cap = n < MP_PREALLOC ? (size_t)n : MP_PREALLOC;
    crm_value *v;

    if (depth >= in->max_depth) {
        crm_err_set(in->err, CRM_BAD_REQUEST, "nesting deeper than %d", in->max_depth);
        return NULL;
    }
    if ((kind == MP_MAP ? 2 * n : n) > in->len - in->i) {
        mp_bad_head(in->err, in->buf, at, kind, h, in->len - in->i);
        return NULL;
    }
    if (kind == MP_ARR) {
        if (!(v = crm_value_arr()))
            return mp_oom(in, NULL);
        if (cap && !(v->u.arr.items = malloc(cap * sizeof *v->u.arr.items)))
            return mp_oom(in, v);
        v->u.arr.cap = cap;
        for (uint64_t k = 0; k < n; k++) {
            crm_value *item = mp_value(in, depth + 1);
            if (!item) {
                crm_value_free(v);
                return NULL;
            }
            if (crm_arr_push(v, item) != 0)
                return mp_oom(in, v);
        }
        return v;
    }

    if (!(v = crm_value_map()))
        return mp_oom(in, NULL);
    if (cap && !(v->u.map.kv = malloc(cap * sizeof *v->u.map.kv)))
        return mp_oom(in, v);
    v->u.map.cap = cap;
    for (uint64_t k = 0; k < n; k++) {
        size_t kat = in->i;
        mp_head kh;
        int kk = mp_read_head(in->buf + in->i, in->len - in->i, &kh);
        const char *key;
        crm_kv *kv;

        if (kk != MP_STR) {
            if (kk < MP_NIL)
                mp_bad_head(in->err, in->buf, kat, kk, &kh, 0);
            else
                mp_bad(in->err, kat, "map keys must be strings");
            crm_value_free(v);
            return NULL;
        }
        in->i += kh.size;
        if (kh.n > in->len - in->i) {
            mp_bad_head(in->err, in->buf, kat, kk, &kh, in->len - in->i);
            crm_value_free(v);
            return NULL;
        }
        key = (const char *)in->buf + in->i;
        in->i += kh.n;
        if (!in->trusted && n <= MP_DUP_SCAN && crm_map_getn(v, key, kh.n))
            return mp_dup_key(in, v, key, kh.n);
        if (v->u.map.n == v->u.map.cap) {
            crm_kv *nk = realloc(v->u.map.kv, 2 * v->u.map.cap * sizeof *nk);
            if (!nk)
                return mp_oom(in, v);
            v->u.map.kv = nk;
            v->u.map.cap *= 2;
        }
        kv = &v->u.map.kv[v->u.map.n];
        if (!(kv->key = malloc(kh.n + 1)))
            return mp_oom(in, v);
        memcpy(kv->key, key, kh.n);
        kv->key[kh.n] = '\0';
        kv->klen = kh.n;
        if (!(kv->val = mp_value(in, depth + 1))) {
            free(kv->key);
            crm_value_free(v);
            return NULL;
        }
        v->u.map.n++;
    }
    if (!in->trusted && n > MP_DUP_SCAN) {
        const crm_kv *dup;
        if (mp_find_dup(v, &dup) != 0)
            return mp_oom(in, v);
        if (dup)
            return mp_dup_key(in, v, dup->key, dup->klen);
    }
    return v;
}

/* depth: containers above this value. */
static crm_value *mp_value(mp_in *in, int depth)
{
    size_t at = in->i;
    mp_head h;
    int kind = mp_read_head(in->buf + at, in->len - at, &h);
    crm_value *v;

    if (kind < MP_NIL) {
        mp_bad_head(in->err, in->buf, at, kind, &h, 0);
        return NULL;
    }
    in->i += h.size;
    switch (kind) {
    case MP_NIL:
        v = crm_value_nil();
        break;
    case MP_BOOL:
        v = crm_value_bool(h.b);
        break;
    case MP_INT:
        v = crm_value_int(h.i);
        break;
    case MP_FLOAT:
        if (!isfinite(h.d)) {
            mp_bad_head(in->err, in->buf, at, kind, &h, 0);
            return NULL;
        }
        v = crm_value_num(h.d);
        break;
    case MP_STR:
        if (h.n > in->len - in->i) {
            mp_bad_head(in->err, in->buf, at, kind, &h, in->len - in->i);
            return NULL;
        }
        v = crm_value_str((const char *)in->buf + in->i, h.n);
        in->i += h.n;
        break;
    default:
        return mp_container(in, kind, &h, at, depth);
    }
    return v ? v : mp_oom(in, NULL);
}

static crm_value *mp_decode(const uint8_t *buf, size_t len, int max_depth, int trusted,
                            crm_err *err)
{
    mp_in in = {buf ? buf : (const uint8_t *)"", buf ? len : 0, 0, max_depth, err, trusted};
    crm_value *v = mp_value(&in, 0);
    if (v && in.i != in.len) {
        mp_bad(err, in.i, "trailing bytes after the message");
        crm_value_free(v);
        return NULL;
    }
    return v;
}

crm_value *crm_mp_decode(const uint8_t *buf, size_t len, const crm_limits *lim, crm_err *err)
{
    const crm_limits dflt = CRM_LIMITS_DEFAULT;
    if (!lim)
        lim = &dflt;
    if (crm_mp_check(buf, len, lim, err) != CRM_OK)
        return NULL;
    return mp_decode(buf, len,
                     lim->max_depth < MP_CHECK_MAX_DEPTH ? lim->max_depth : MP_CHECK_MAX_DEPTH, 0,
                     err);
}

crm_value *crm_mp_decode_trusted(const uint8_t *buf, size_t len)
{
    return mp_decode(buf, len, MP_TRUSTED_MAX_DEPTH, 1, NULL);
}

size_t crm_mp_peek_strs(const uint8_t *buf, size_t len, const char *const *keys, size_t n,
                        const char **vals, size_t *lens)
{
    mp_head h;
    size_t at, found = 0;
    uint64_t pairs;
    for (size_t i = 0; i < n; i++) {
        vals[i] = NULL;
        lens[i] = 0;
    }
    if (mp_read_head(buf, len, &h) != MP_MAP)
        return 0;
    pairs = h.n;
    at = h.size;
    for (uint64_t p = 0; p < pairs && found < n; p++) {
        const uint8_t *k;
        size_t kl;
        int vt;
        if (mp_read_head(buf + at, len - at, &h) != MP_STR || h.n > len - at - h.size)
            return found;
        k = buf + at + h.size;
        kl = (size_t)h.n;
        at += h.size + kl;
        vt = mp_read_head(buf + at, len - at, &h);
        if (vt == MP_ARR || vt == MP_MAP || vt == MP_TRUNCATED || vt == MP_REFUSED)
            return found;
        if (vt == MP_STR) {
            if (h.n > len - at - h.size)
                return found;
            for (size_t i = 0; i < n; i++)
                if (!vals[i] && strlen(keys[i]) == kl && memcmp(keys[i], k, kl) == 0) {
                    vals[i] = (const char *)buf + at + h.size;
                    lens[i] = (size_t)h.n;
                    found++;
                }
            at += h.size + (size_t)h.n;
        } else {
            at += h.size;
        }
    }
    return found;
}

/* ---- encode ---- */

typedef struct mp_out {
    uint8_t *p;
    size_t n, cap;
    int failed; /* OOM, or a value we must not write; later writes are dropped */
} mp_out;

static int mp_write(void *data, const char *buf, size_t len)
{
    mp_out *o = data;
    if (o->failed)
        return -1;
    if (len > o->cap - o->n) {
        size_t nc = o->cap ? o->cap : 256;
        uint8_t *np;
        while (nc - o->n < len) {
            if (nc > SIZE_MAX / 2)
                return o->failed = 1, -1;
            nc *= 2;
        }
        if (!(np = realloc(o->p, nc)))
            return o->failed = 1, -1;
        o->p = np;
        o->cap = nc;
    }
    memcpy(o->p + o->n, buf, len);
    o->n += len;
    return 0;
}

static void mp_put_str(msgpack_packer *pk, mp_out *o, const char *s, size_t len)
{
    if (len > UINT32_MAX) {
        o->failed = 1;
        return;
    }
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, s, len);
}

/* Refuses what the reader would refuse, so the store never writes a record
 * it cannot read back: deeper than MP_TRUSTED_MAX_DEPTH, or counts beyond
 * msgpack's 32 bits.  Non-finite nums go out as nil, as in JSON. */
static void mp_put(msgpack_packer *pk, mp_out *o, const crm_value *v, int depth)
{
    if (o->failed)
        return;
    switch (v->type) {
    case CRM_T_NIL:
        msgpack_pack_nil(pk);
        return;
    case CRM_T_BOOL:
        if (v->u.b)
            msgpack_pack_true(pk);
        else
            msgpack_pack_false(pk);
        return;
    case CRM_T_INT:
        msgpack_pack_int64(pk, v->u.i);
        return;
    case CRM_T_NUM:
        if (isfinite(v->u.n))
            msgpack_pack_double(pk, v->u.n);
        else
            msgpack_pack_nil(pk);
        return;
    case CRM_T_STR:
        mp_put_str(pk, o, v->u.str.s, v->u.str.len);
        return;
    case CRM_T_ARR:
        if (depth >= MP_TRUSTED_MAX_DEPTH || v->u.arr.n > UINT32_MAX)
            break;
        msgpack_pack_array(pk, v->u.arr.n);
        for (size_t i = 0; i < v->u.arr.n; i++)
            mp_put(pk, o, v->u.arr.items[i], depth + 1);
        return;
    case CRM_T_MAP:
        if (depth >= MP_TRUSTED_MAX_DEPTH || v->u.map.n > UINT32_MAX)
            break;
        msgpack_pack_map(pk, v->u.map.n);
        for (size_t i = 0; i < v->u.map.n; i++) {
            mp_put_str(pk, o, v->u.map.kv[i].key, v->u.map.kv[i].klen);
            mp_put(pk, o, v->u.map.kv[i].val, depth + 1);
        }
        return;
    }
    o->failed = 1;
}

uint8_t *crm_mp_encode(const crm_value *v, size_t *len_out)
{
    mp_out o = {0};
    msgpack_packer pk;
    if (!v)
        return NULL;
    msgpack_packer_init(&pk, &o, mp_write);
    mp_put(&pk, &o, v, 0);
    if (o.failed || !o.p) {
        free(o.p);
        return NULL;
    }
    if (len_out)
        *len_out = o.n;
    return o.p;
}
