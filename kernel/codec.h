/*
 * codec -- the two wire and storage encodings of crm_value.
 *
 * JSON goes through jansson (Debian's libjansson-dev): it validates UTF-8,
 * rejects numbers it cannot hold exactly as int64 or double, keeps object
 * key order, and bounds its own recursion.  msgpack is packed with msgpack-c
 * (libmsgpack-dev); untrusted msgpack is first walked by crm_mp_check, a
 * bounded, non-recursive pass, because msgpack-c's unpacker trusts declared
 * lengths (a 5-byte frame can make it reserve gigabytes).
 *
 * Every decoder enforces: total size <= limits->max_bytes, nesting depth <=
 * limits->max_depth (the top-level container is depth 1), map keys are
 * strings and unique, strings are valid UTF-8, numbers are finite.
 * Decoders return a new tree the caller owns (crm_value_free), or NULL with
 * err filled: CRM_TOO_LARGE for size, CRM_BAD_REQUEST for everything else.
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
crm_value *crm_json_decode(const char *buf, size_t len, const crm_limits *lim, crm_err *err);
/* Compact JSON text of v in a malloc'd, NUL-terminated buffer the caller
 * frees; *len_out (may be NULL) gets its length. NULL on OOM. */
char *crm_json_encode(const crm_value *v, size_t *len_out);

/* ---- msgpack ---- */
/* The bounded pre-pass: buf must hold exactly one msgpack object within the
 * limits, with only nil/bool/int/float/str/bin-free/array/map types (ext and
 * bin are refused), string map keys, valid UTF-8 strings and finite floats.
 * Returns CRM_OK or fills err.  Reads each byte at most once; no allocation. */
int crm_mp_check(const uint8_t *buf, size_t len, const crm_limits *lim, crm_err *err);
/* crm_mp_check, then decode. */
crm_value *crm_mp_decode(const uint8_t *buf, size_t len, const crm_limits *lim, crm_err *err);
/* Decodes bytes crmd wrote itself (the store): no pre-pass.  NULL on OOM or
 * malformed bytes. */
crm_value *crm_mp_decode_trusted(const uint8_t *buf, size_t len);
/* msgpack bytes of v in a malloc'd buffer the caller frees; *len_out gets
 * the length. NULL on OOM. */
uint8_t *crm_mp_encode(const crm_value *v, size_t *len_out);

#endif
