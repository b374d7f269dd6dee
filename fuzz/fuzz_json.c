/*
 * fuzz_json -- crm_json_decode with the default limits (what a client's
 * text frame meets), then the round trip: encode, decode again, and require
 * the same tree (type-exact, see fuzz_same), a fixed point on the second
 * encode, and the same tree once more through msgpack.
 */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    crm_err err;
    crm_limits re = FUZZ_LIMITS_REREAD;
    crm_value *v = crm_json_decode((const char *)data, size, NULL, &err), *w, *x;
    char *j, *j2;
    uint8_t *m;
    size_t len, len2, mlen;

    if (!v) {
        fuzz_check_decode_err(&err);
        return 0;
    }
    j = crm_json_encode(v, &len);
    FUZZ_CHECK(j, "encode failed");
    FUZZ_CHECK(strlen(j) == len, "encoded length %zu, strlen %zu", len, strlen(j));
    FUZZ_CHECK(crm_utf8_valid(j, len), "encoder wrote bad UTF-8: %s", j);
    w = crm_json_decode(j, len, &re, &err);
    FUZZ_CHECK(w, "our own output does not decode: %s\n  %s", err.msg, j);
    FUZZ_CHECK(crm_value_cmp(v, w) == 0 && fuzz_same(v, w), "round trip changed the value\n  %s",
               j);
    j2 = crm_json_encode(w, &len2);
    FUZZ_CHECK(j2 && len2 == len && memcmp(j, j2, len) == 0, "second encode differs\n  %s\n  %s",
               j, j2 ? j2 : "(null)");

    /* the same tree through the other codec */
    m = crm_mp_encode(v, &mlen);
    FUZZ_CHECK(m, "msgpack encode failed");
    x = crm_mp_decode(m, mlen, &re, &err);
    FUZZ_CHECK(x, "msgpack of a decoded JSON value does not decode: %s\n  %s", err.msg, j);
    FUZZ_CHECK(fuzz_same(v, x), "JSON -> msgpack changed the value\n  %s\n  %s", j,
               fuzz_show(x));

    free(m);
    free(j2);
    free(j);
    crm_value_free(x);
    crm_value_free(w);
    crm_value_free(v);
    return 0;
}
