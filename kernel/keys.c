/* keys -- order-preserving byte encodings (see keys.h for the layout). */
#include "keys.h"

#include <math.h>
#include <string.h>

crm_keykind crm_keykind_of(crm_ftype t)
{
    switch (t) {
    case CRM_F_INT:
    case CRM_F_TIMESTAMP:
        return CRM_KK_INT;
    case CRM_F_NUMBER:
        return CRM_KK_NUM;
    case CRM_F_STRING:
    case CRM_F_ENUM:
    case CRM_F_REF:
        return CRM_KK_STR;
    case CRM_F_BOOL:
        return CRM_KK_BOOL;
    default:
        return CRM_KK_ANY;
    }
}

void crm_be64_put(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

uint64_t crm_be64_get(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static size_t put_num(double d, uint8_t *out)
{
    uint64_t bits;
    if (d == 0)
        d = 0; /* -0.0 and 0.0 are one key */
    memcpy(&bits, &d, 8);
    bits = (bits & 0x8000000000000000ULL) ? ~bits : bits | 0x8000000000000000ULL;
    out[0] = 0x21;
    crm_be64_put(out + 1, bits);
    return 9;
}

/* Escaped string body (no tag, no terminator); stops before CRM_KEY_STR_MAX
 * output bytes.  *cut says whether it stopped early. */
static size_t put_str_body(const char *s, size_t len, uint8_t *out, int *cut)
{
    size_t o = 0, i;
    for (i = 0; i < len && o + 2 <= CRM_KEY_STR_MAX; i++) {
        if (s[i] == 0) {
            out[o++] = 0x00;
            out[o++] = 0xFF;
        } else {
            out[o++] = (uint8_t)s[i];
        }
    }
    *cut = i < len;
    return o;
}

size_t crm_key_encode(const crm_value *v, crm_keykind kk, uint8_t *out)
{
    if (!v || v->type == CRM_T_NIL) {
        out[0] = 0x05;
        return 1;
    }
    switch (v->type) {
    case CRM_T_BOOL:
        out[0] = v->u.b ? 0x11 : 0x10;
        return 1;
    case CRM_T_INT:
        if (kk == CRM_KK_INT) {
            out[0] = 0x20;
            crm_be64_put(out + 1, (uint64_t)v->u.i ^ 0x8000000000000000ULL);
            return 9;
        }
        return put_num((double)v->u.i, out);
    case CRM_T_NUM:
        if (kk == CRM_KK_INT && v->u.n == floor(v->u.n) && fabs(v->u.n) < 9.2e18) {
            out[0] = 0x20;
            crm_be64_put(out + 1, (uint64_t)(int64_t)v->u.n ^ 0x8000000000000000ULL);
            return 9;
        }
        return put_num(v->u.n, out);
    case CRM_T_STR: {
        int cut;
        size_t o = 1;
        out[0] = 0x30;
        o += put_str_body(v->u.str.s, v->u.str.len, out + 1, &cut);
        out[o++] = 0x00;
        if (!cut) {
            out[o++] = 0x01;
        } else {
            out[o++] = 0x02;
            crm_be64_put(out + o, fnv1a(v->u.str.s, v->u.str.len));
            o += 8;
        }
        return o;
    }
    default:
        /* arrays and maps are never indexed; give them one fixed key so a
         * sort over them is at least stable (by id). */
        out[0] = v->type == CRM_T_ARR ? 0x40 : 0x41;
        return 1;
    }
}

size_t crm_key_prefix(const char *s, size_t len, uint8_t *out)
{
    int cut;
    out[0] = 0x30;
    return 1 + put_str_body(s, len, out + 1, &cut);
}

size_t crm_key_len(const uint8_t *k, size_t n)
{
    if (n == 0)
        return 0;
    switch (k[0]) {
    case 0x05:
    case 0x10:
    case 0x11:
    case 0x40:
    case 0x41:
        return 1;
    case 0x20:
    case 0x21:
        return n >= 9 ? 9 : 0;
    case 0x30:
        for (size_t i = 1; i + 1 < n; i++) {
            if (k[i] != 0)
                continue;
            if (k[i + 1] == 0x01)
                return i + 2;
            if (k[i + 1] == 0x02)
                return i + 10 <= n ? i + 10 : 0;
            i++; /* 0x00 0xFF: an escaped NUL */
        }
        return 0;
    default:
        return 0;
    }
}

/* ---- ids ---- */

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

uint64_t crm_id_clock_next(uint64_t last, int64_t now_ms)
{
    uint64_t t = now_ms > 0 ? ((uint64_t)now_ms << 20) : 0;
    return t > last ? t : last + 1;
}

void crm_id_format(uint64_t clock, char out[14])
{
    /* 13 digits of 5 bits = 65 bits; the top digit holds the top 4 bits. */
    for (int i = 12; i >= 0; i--) {
        out[i] = crockford[clock & 31];
        clock >>= 5;
    }
    out[13] = '\0';
}

int crm_id_valid(const char *id, size_t len)
{
    if (len == 0 || len > CRM_ID_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == ':' || c == '@' || c == '-'))
            return 0;
    }
    return 1;
}

/* ---- base64url ---- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t crm_b64url_encode(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = b64[(v >> 6) & 63];
        out[o++] = b64[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = b64[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

static int b64val(char c)
{
    const char *p = c ? strchr(b64, c) : NULL;
    return p ? (int)(p - b64) : -1;
}

long crm_b64url_decode(const char *in, size_t n, uint8_t *out, size_t cap)
{
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    if (n % 4 == 1)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int v = b64val(in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap)
                return -1;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    return (long)o;
}
