/*
 * keys -- byte encodings whose memcmp order is the value order: index keys,
 * record ids, feed keys, and the opaque query cursor.
 *
 * Index key of a value (prefix-free, so "value key ‖ id" splits cleanly):
 *   nil / absent   0x05
 *   false / true   0x10 / 0x11
 *   int-typed      0x20 + 8 bytes big-endian int64 with the sign bit flipped
 *   number-typed   0x21 + 8 bytes of the IEEE double made order-preserving
 *   string-typed   0x30 + bytes with 0x00 escaped as 0x00 0xFF, then 0x00 0x01;
 *                  past CRM_KEY_STR_MAX escaped bytes the string is cut and
 *                  ends 0x00 0x02 + 8-byte hash (LMDB keys are <= 511 bytes).
 *                  Order among strings that share their first
 *                  CRM_KEY_STR_MAX bytes is by hash; equality stays exact
 *                  through the hash, and queries re-check every candidate.
 * nil sorts first, like crm_value_cmp.  (Indexes hold no entry for records
 * without a value: nil keys order query results, they are not stored.)
 */
#ifndef CRM_KEYS_H
#define CRM_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "schema.h"
#include "value.h"

#define CRM_KEY_STR_MAX 320
#define CRM_KEY_MAX 400 /* longest value key: 1 + 320 + 2 + 8 */
#define CRM_ID_MAX 128  /* bytes in a record id */

/* Which of the encodings a field's values use. */
typedef enum crm_keykind { CRM_KK_INT, CRM_KK_NUM, CRM_KK_STR, CRM_KK_BOOL, CRM_KK_ANY } crm_keykind;
crm_keykind crm_keykind_of(crm_ftype t);

/* Encodes v (NULL = absent) as a value key of kind kk into out (at least
 * CRM_KEY_MAX bytes).  A value of another kind than kk is encoded by its
 * own kind (ints in a number field as doubles).  Returns the length. */
size_t crm_key_encode(const crm_value *v, crm_keykind kk, uint8_t *out);

/* For a string-kind prefix query: the key bytes every string starting with
 * s[0..len) begins with (no terminator). Returns the length. */
size_t crm_key_prefix(const char *s, size_t len, uint8_t *out);

/* Length of the value key at the start of k (0 if malformed). */
size_t crm_key_len(const uint8_t *k, size_t n);

/* Record ids: 13 Crockford base32 characters of a 64-bit clock
 * (ms << 20 | counter), so ids sort by creation time. */
uint64_t crm_id_clock_next(uint64_t last, int64_t now_ms);
void crm_id_format(uint64_t clock, char out[14]);
/* A client-supplied id: 1..128 bytes of [A-Za-z0-9_.:@-]. */
int crm_id_valid(const char *id, size_t len);

void crm_be64_put(uint8_t *p, uint64_t v);
uint64_t crm_be64_get(const uint8_t *p);

/* base64url without padding; out needs 4*ceil(n/3)+1 bytes.  Decode returns
 * the byte count or -1 for bad input. */
size_t crm_b64url_encode(const uint8_t *in, size_t n, char *out);
long crm_b64url_decode(const char *in, size_t n, uint8_t *out, size_t cap);

#endif
