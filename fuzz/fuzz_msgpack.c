/*
 * fuzz_msgpack -- the bounded pre-pass crm_mp_check and crm_mp_decode on the
 * same bytes (they must agree: the decoder refuses only what the check
 * accepts and leaves to it, duplicate keys), then the round trip through
 * crm_mp_encode (same tree, byte-identical re-encode), the trusted decoder
 * on the raw bytes (the store's reader: garbage must be safe) and on our
 * own bytes (must give the same tree), and the tree through JSON.
 */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    crm_err err, err2;
    crm_limits re = FUZZ_LIMITS_REREAD;
    int rc = crm_mp_check(data, size, NULL, &err);
    crm_value *v = crm_mp_decode(data, size, NULL, &err2), *w, *t, *x;
    uint8_t *m, *m2;
    char *j;
    size_t len, len2, jlen;

    /* the store's reader never sees client bytes, but garbage must not hurt */
    crm_value_free(crm_mp_decode_trusted(data, size));

    if (rc != CRM_OK) {
        fuzz_check_decode_err(&err);
        FUZZ_CHECK(!v, "check refused (%s) but decode accepted", err.msg);
        fuzz_check_decode_err(&err2);
        return 0;
    }
    if (!v) {
        fuzz_check_decode_err(&err2);
        FUZZ_CHECK(strstr(err2.msg, "duplicate key"),
                   "check accepted but decode refused: %s", err2.msg);
        return 0;
    }
    m = crm_mp_encode(v, &len);
    FUZZ_CHECK(m, "encode failed");
    FUZZ_CHECK(crm_mp_check(m, len, &re, &err) == CRM_OK, "our own output fails the check: %s",
               err.msg);
    w = crm_mp_decode(m, len, &re, &err);
    FUZZ_CHECK(w, "our own output does not decode: %s", err.msg);
    FUZZ_CHECK(crm_value_cmp(v, w) == 0 && fuzz_same(v, w), "round trip changed the value\n  %s\n  %s",
               fuzz_show(v), fuzz_show(w));
    m2 = crm_mp_encode(w, &len2);
    FUZZ_CHECK(m2 && len2 == len && memcmp(m, m2, len) == 0, "second encode differs");
    t = crm_mp_decode_trusted(m, len);
    FUZZ_CHECK(t && fuzz_same(v, t), "trusted decode of our bytes differs\n  %s", fuzz_show(v));

    /* the same tree through JSON */
    j = crm_json_encode(v, &jlen);
    FUZZ_CHECK(j, "JSON encode failed");
    x = crm_json_decode(j, jlen, &re, &err);
    FUZZ_CHECK(x, "JSON of a decoded msgpack value does not decode: %s\n  %s", err.msg, j);
    FUZZ_CHECK(fuzz_same(v, x), "msgpack -> JSON changed the value\n  %s\n  %s", j, fuzz_show(x));

    crm_value_free(x);
    free(j);
    crm_value_free(t);
    free(m2);
    crm_value_free(w);
    free(m);
    crm_value_free(v);
    return 0;
}
