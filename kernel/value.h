/*
 * value -- the one internal value every part of crmd speaks: JSON and
 * msgpack decode into it, schemas validate it, the store encodes it.
 *
 * A crm_value is a small tree: nil, bool, int (int64), num (finite double),
 * str (bytes + length, always NUL-terminated, valid UTF-8 when it came from
 * outside), arr, map.  Map keys are strings; maps keep insertion order and
 * never hold a key twice.
 *
 * Ownership: every constructor returns a new tree the caller owns (free it
 * with crm_value_free), or NULL when memory runs out.  Containers take
 * ownership of the values put into them, also when the call fails (the value
 * is then freed), so a chain of builds never leaks on OOM.
 */
#ifndef CRM_VALUE_H
#define CRM_VALUE_H

#include <stddef.h>
#include <stdint.h>

/* crm_type, crm_kv and struct crm_value are part of the plugin ABI and are
 * defined in <crm/plugin.h>. */
#include <crm/plugin.h>

/* ---- constructors: caller owns the result; NULL on OOM ---- */
crm_value *crm_value_nil(void);
crm_value *crm_value_bool(int b);
crm_value *crm_value_int(int64_t i);
crm_value *crm_value_num(double n);
crm_value *crm_value_str(const char *s, size_t len); /* copies s */
crm_value *crm_value_cstr(const char *s);            /* copies s */
crm_value *crm_value_arr(void);
crm_value *crm_value_map(void);

/* Frees v and everything below it; NULL is fine. */
void crm_value_free(crm_value *v);

/* Deep copy; caller owns it; NULL on OOM (or when v is NULL). */
crm_value *crm_value_dup(const crm_value *v);

/* ---- arrays ---- */
/* Appends item (ownership passes to arr even on failure). 0 ok, -1 OOM. */
int crm_arr_push(crm_value *arr, crm_value *item);

/* ---- maps ---- */
/* Borrowed pointer to the value under key, or NULL when absent. */
crm_value *crm_map_get(const crm_value *map, const char *key);
crm_value *crm_map_getn(const crm_value *map, const char *key, size_t klen);
/* Sets key to val, replacing (and freeing) an old value; val is owned by
 * the map afterwards, also on failure. 0 ok, -1 OOM. */
int crm_map_set(crm_value *map, const char *key, crm_value *val);
int crm_map_setn(crm_value *map, const char *key, size_t klen, crm_value *val);
/* Removes key (freeing its value). Returns 1 if it was there, 0 if not. */
int crm_map_del(crm_value *map, const char *key);
/* Removes key and hands its value to the caller (NULL when absent). */
crm_value *crm_map_take(crm_value *map, const char *key);

/* Convenience readers: the typed value under key, or the fallback.
 * crm_map_int also takes a num that holds an integer exactly (5.0). */
const char *crm_map_str(const crm_value *map, const char *key, const char *fallback);
int64_t crm_map_int(const crm_value *map, const char *key, int64_t fallback);

/* ---- comparison ----
 * A total order used for sorting and equality: nil < bool < numbers < str <
 * arr < map.  int and num compare by numeric value (an int64 beyond 2^53
 * still compares exactly against another int).  Strings compare bytewise.
 * In detail: false < true; int against num is exact both ways (2^53 + 1 >
 * 2^53 as a num); -0.0 equals 0; a NaN num (never decoded, but computable)
 * sorts below every other number.  Arrays compare item by item, a prefix
 * first.  Maps ignore key order (records with the same fields are equal
 * however they arrived): by size, then pair by pair in bytewise key order.
 * A NULL pointer (an absent field) compares as nil.  crm_value_equal is
 * exactly crm_value_cmp() == 0. */
int crm_value_cmp(const crm_value *a, const crm_value *b);
int crm_value_equal(const crm_value *a, const crm_value *b);
/* True for int and num. */
int crm_value_is_number(const crm_value *v);
/* The numeric value of an int or num as a double (0 for others). */
double crm_value_as_double(const crm_value *v);

/* Name of a type, for error messages: "null", "bool", "int", "number",
 * "string", "array", "map" (the schema's words); "unknown" otherwise. */
const char *crm_type_name(crm_type t);

/* Checks that s[0..len) is valid UTF-8 (no overlongs, no surrogates). */
int crm_utf8_valid(const char *s, size_t len);

#endif
