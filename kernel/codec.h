/*
 * codec -- the two wire and storage encodings of crm_value.
 *
 * JSON is decoded by jansson (Debian's libjansson-dev): it validates UTF-8,
 * rejects numbers it cannot hold exactly as int64 or double, keeps object
 * key order, and bounds its own recursion.  JSON is encoded directly (see
 * codec_json.c).  msgpack is packed with msgpack-c (libmsgpack-dev);
 * untrusted msgpack is first walked by crm_mp_check, a bounded,
 * non-recursive pass, because msgpack-c's unpacker trusts declared lengths
 * (a 5-byte frame can make it reserve gigabytes).  It is then read by our
 * own bounds-checked reader, not msgpack-c's unpacker, which also stops at
 * 32 levels of nesting (see codec_msgpack.c).
 *
 * Every decoder enforces: total size <= limits->max_bytes, nesting depth <=
 * limits->max_depth (the top-level container is depth 1), map keys are
 * strings and unique, strings are valid UTF-8, numbers are finite.
 * Decoders return a new tree the caller owns (crm_value_free), or NULL with
 * err (which may be NULL) filled: CRM_TOO_LARGE for size, CRM_INTERNAL
 * "out of memory", CRM_BAD_REQUEST for everything else.  Messages:
 *   "message is 1048577 bytes, the limit is 1048576"    (both codecs)
 *   "nesting deeper than 32"                            (both codecs)
 *   "invalid JSON at line L, column C: <jansson's text>"
 *   "invalid msgpack at byte N: <what>", e.g. "truncated",
 *       "declares 100000000 items, only 0 bytes follow",
 *       "trailing bytes after the message"
 *   "invalid msgpack: duplicate key \"k\""
 * A NULL limits pointer means CRM_LIMITS_DEFAULT.
 *
 * Encoders never write what the decoders would refuse: a non-finite num is
 * written as null/nil, and a tree nested too deep to read back (2048 levels
 * for JSON, a scalar counting as one; 1024 for msgpack) is not written at
 * all (NULL, as for OOM).  crmd's inputs are limited to 32, so only a tree
 * built in code can reach that.
 */
#ifndef CRM_CODEC_H
#define CRM_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "value.h"

typedef struct crm_limits {
    size_t max_bytes; /* whole message; default 1 MiB */
    int max_depth;    /* default 32 */
} crm_limits;

#define CRM_LIMITS_DEFAULT ((crm_limits){1u << 20, 32})

/* ---- JSON ---- */
/* Any value may stand at the top (the wire layer checks for an object).
 * "\u0000" is accepted in strings (they carry their length) but, as jansson
 * has it, not in keys. */
crm_value *crm_json_decode(const char *buf, size_t len, const crm_limits *lim, crm_err *err);
/* Compact JSON text of v in a malloc'd, NUL-terminated buffer the caller
 * frees; *len_out (may be NULL) gets its length. NULL on OOM.  Always valid
 * UTF-8: string bytes that are not UTF-8 go out as U+FFFD.  Nums print in
 * the shortest of 15..17 digits that reads back exactly, with ".0" when
 * integral so they read back as num, not int. */
char *crm_json_encode(const crm_value *v, size_t *len_out);

/* ---- msgpack ---- */
/* The bounded pre-pass: buf must hold exactly one msgpack object within the
 * limits, with only nil/bool/int/float/str/bin-free/array/map types (ext and
 * bin are refused), string map keys, valid UTF-8 strings and finite floats.
 * Returns CRM_OK or fills err.  Reads each byte at most once; no allocation.
 * Also refused: uint64 values above INT64_MAX, and NUL bytes in map keys
 * (keys are C strings to crm_map_get; JSON cannot carry them either).
 * Limits deeper than 256 are capped at 256 (the size of its stack).
 * Duplicate keys are not looked for here (that needs memory); the decoder
 * refuses them. */
int crm_mp_check(const uint8_t *buf, size_t len, const crm_limits *lim, crm_err *err);
/* crm_mp_check, then decode. */
crm_value *crm_mp_decode(const uint8_t *buf, size_t len, const crm_limits *lim, crm_err *err);
/* Decodes bytes crmd wrote itself (the store): no pre-pass.  NULL on OOM or
 * malformed bytes.  Garbage is safe: every read is bounds-checked, nesting
 * stops at 1024, and at most a few hundred items are reserved ahead of the
 * bytes that arrive.  Strings are not re-validated as UTF-8, and map keys
 * are not checked for duplicates (the store writes maps, whose keys are
 * unique; a duplicate in corrupt bytes is kept and the first one wins on
 * lookup, which is memory-safe). */
crm_value *crm_mp_decode_trusted(const uint8_t *buf, size_t len);
/* Reads string values of a top-level msgpack map without decoding it: for
 * each key in keys[0..n), vals[i] points into buf (not NUL-terminated) with
 * lens[i] bytes, or is NULL.  The scan stops at the first value that is not
 * a scalar (so keys must come before any container to be seen) or when all
 * are found.  Returns how many were found; bounds-checked, for the store's
 * own bytes (the feed header). */
size_t crm_mp_peek_strs(const uint8_t *buf, size_t len, const char *const *keys, size_t n,
                        const char **vals, size_t *lens);
/* msgpack bytes of v in a malloc'd buffer the caller frees; *len_out gets
 * the length. NULL on OOM.  Ints take their smallest form; nums are always
 * float64 (so 1.0 reads back as a num). */
uint8_t *crm_mp_encode(const crm_value *v, size_t *len_out);

#endif
