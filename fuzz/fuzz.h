/*
 * fuzz.h -- what the fuzz targets share (issue 8, reliability plan R9).
 *
 * Each fuzz_<target>.c defines LLVMFuzzerTestOneInput (and maybe
 * LLVMFuzzerInitialize).  The same file is built twice: with libFuzzer
 * (CRM_FUZZ=ON, clang) to search, and with replay.c's main() in every normal
 * build so ctest runs the committed corpus -- seeds and every crash ever
 * found -- under gcc, and under ASan+UBSan in build-asan.
 *
 * A target fails by abort(): libFuzzer and ctest both see that as a crash,
 * with the message printed first.
 */
#ifndef CRM_FUZZ_H
#define CRM_FUZZ_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "err.h"
#include "value.h"

#define FUZZ_CHECK(cond, ...)                                                    \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "fuzz: property failed at %s:%d: %s\n  ", __FILE__, \
                    __LINE__, #cond);                                            \
            fprintf(stderr, __VA_ARGS__);                                        \
            fputc('\n', stderr);                                                 \
            abort();                                                             \
        }                                                                        \
    } while (0)

/* Stricter than crm_value_cmp() == 0, which calls int 5 and num 5.0 equal
 * and ignores map order: the same types, the same bits of every number
 * (so -0.0 is not 0.0), and map keys in the same order.  A codec round trip
 * must keep all of that. */
static inline int fuzz_same(const crm_value *a, const crm_value *b)
{
    if (a->type != b->type)
        return 0;
    switch (a->type) {
    case CRM_T_NIL:
        return 1;
    case CRM_T_BOOL:
        return !a->u.b == !b->u.b;
    case CRM_T_INT:
        return a->u.i == b->u.i;
    case CRM_T_NUM:
        return a->u.n == b->u.n && signbit(a->u.n) == signbit(b->u.n);
    case CRM_T_STR:
        return a->u.str.len == b->u.str.len && memcmp(a->u.str.s, b->u.str.s, a->u.str.len) == 0;
    case CRM_T_ARR:
        if (a->u.arr.n != b->u.arr.n)
            return 0;
        for (size_t i = 0; i < a->u.arr.n; i++)
            if (!fuzz_same(a->u.arr.items[i], b->u.arr.items[i]))
                return 0;
        return 1;
    case CRM_T_MAP:
        if (a->u.map.n != b->u.map.n)
            return 0;
        for (size_t i = 0; i < a->u.map.n; i++) {
            const crm_kv *x = &a->u.map.kv[i], *y = &b->u.map.kv[i];
            if (x->klen != y->klen || memcmp(x->key, y->key, x->klen) != 0 ||
                !fuzz_same(x->val, y->val))
                return 0;
        }
        return 1;
    }
    return 0;
}

/* JSON text of v for a failure message; never NULL.  Leaks: used only on
 * the way to abort(). */
static inline const char *fuzz_show(const crm_value *v)
{
    char *j = v ? crm_json_encode(v, NULL) : NULL;
    return j ? j : "(none)";
}

/* A decode failure must say why with one of the documented codes. */
static inline void fuzz_check_decode_err(const crm_err *err)
{
    FUZZ_CHECK(err->code == CRM_BAD_REQUEST || err->code == CRM_TOO_LARGE, "code %d (%s): %s",
               err->code, crm_code_name(err->code), err->msg);
    FUZZ_CHECK(err->msg[0] != 0, "an error without a message");
}

/* The decoded outputs of a round trip may grow past the input limit (JSON
 * escapes), so the second decode allows more bytes, never more depth. */
#define FUZZ_LIMITS_REREAD ((crm_limits){1u << 30, 32})

/* The small fixed schema of the schema and filter targets: every field
 * type, plain and unique indexes, a ref, bounds. */
#define FUZZ_PEOPLE_JSON                                                              \
    "{\"collection\": \"people\", \"strict\": true, \"id_prefix\": \"p_\", "         \
    "\"fields\": {"                                                                   \
    "\"name\": {\"type\": \"string\", \"required\": true, \"max\": 100, \"index\": true}," \
    "\"email\": {\"type\": \"string\", \"index\": \"unique\"},"                       \
    "\"age\": {\"type\": \"int\", \"min\": 0, \"max\": 200, \"index\": true},"        \
    "\"score\": {\"type\": \"number\", \"index\": true},"                             \
    "\"vip\": {\"type\": \"bool\", \"default\": false},"                              \
    "\"born\": {\"type\": \"timestamp\", \"index\": true},"                           \
    "\"tier\": {\"type\": \"enum\", \"values\": [\"gold\", \"silver\", \"bronze\"], \"index\": true}," \
    "\"org\": {\"type\": \"ref\", \"to\": \"orgs\", \"index\": true},"                \
    "\"tags\": {\"type\": \"array\", \"items\": \"string\", \"max\": 10},"            \
    "\"extra\": {\"type\": \"map\"}}}"
#define FUZZ_ORGS_JSON \
    "{\"collection\": \"orgs\", \"id_prefix\": \"o_\", \"fields\": {\"name\": {\"type\": \"string\"}}}"
#define FUZZ_ROLES_JSON                                                                   \
    "{\"roles\": {\"clerk\": {\"people\": [\"read\", \"write\"], \"orgs\": [\"read\"]},"  \
    " \"auditor\": {\"*\": [\"read\"], \"people\": {\"can\": [\"read\"], \"hide\": [\"email\"]}}," \
    " \"bot\": {\"methods\": [\"people.*\"]}}}"

/* Parses a JSON literal of the harness (aborts when it does not parse). */
static inline crm_value *fuzz_json(const char *s)
{
    crm_err err;
    crm_value *v = crm_json_decode(s, strlen(s), NULL, &err);
    FUZZ_CHECK(v, "harness JSON: %s", err.msg);
    return v;
}

/* A schema of FUZZ_PEOPLE_JSON and FUZZ_ORGS_JSON, with roles when
 * roles_json is not NULL. */
#include "schema.h"
static inline crm_schema *fuzz_people_schema(const char *roles_json)
{
    crm_value *p = fuzz_json(FUZZ_PEOPLE_JSON), *o = fuzz_json(FUZZ_ORGS_JSON);
    crm_value *r = roles_json ? fuzz_json(roles_json) : NULL;
    const crm_value *colls[2] = {p, o};
    crm_schema *s = NULL;
    crm_err err;
    FUZZ_CHECK(crm_schema_from_values(colls, 2, r, &s, &err) == CRM_OK, "%s", err.msg);
    crm_value_free(p);
    crm_value_free(o);
    crm_value_free(r);
    return s;
}

#endif
