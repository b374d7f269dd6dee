/*
 * auth -- tokens and roles.
 *
 * Tokens: "crm_" + 43 characters of base64url over 32 random bytes.  Only
 * the SHA-256 of a token is stored (aux table "tokens": hash -> msgpack
 * {role, created}); the token itself is printed once by `crmd token create`
 * and never stored or logged.  A token id (the first 12 hex digits of the
 * hash) names it in logs and as the session's user.
 *
 * Roles: admin is built in and may do everything; the others come from
 * roles.json (schema.h checked its shape).  A grant may hide fields.
 * Never: keeps a token in clear anywhere.
 */
#ifndef CRM_AUTH_H
#define CRM_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "schema.h"
#include "store.h"

#define CRM_TOKEN_HASH_LEN 32

enum { CRM_PERM_READ = 1, CRM_PERM_WRITE = 2, CRM_PERM_SUBSCRIBE = 4 };

/* SHA-256 of the token text. */
void crm_token_hash(const char *token, size_t len, uint8_t out[CRM_TOKEN_HASH_LEN]);
/* "4f2a9c01b7e3": a printable id of a token hash (13 bytes with NUL). */
void crm_token_id(const uint8_t hash[CRM_TOKEN_HASH_LEN], char out[13]);

/* Makes and stores a new token for role (which must be admin or declared in
 * schema->roles).  *token_out: malloc'd text the caller prints and frees. */
int crm_token_create(crm_store *s, const crm_schema *schema, const char *role, char **token_out,
                     crm_err *err);
/* Revokes by token text.  NOT_FOUND when unknown. */
int crm_token_revoke(crm_store *s, const char *token, crm_err *err);
/* Looks a token hash up in t; fills role (cap bytes).  UNAUTHENTICATED when
 * unknown or revoked. */
int crm_token_lookup(crm_txn *t, const uint8_t hash[CRM_TOKEN_HASH_LEN], char *role, size_t cap,
                     crm_err *err);

/* Permission bits of role on collection coll (admin: all). */
int crm_role_perms(const crm_schema *s, const char *role, const char *coll);
/* Borrowed list of the fields role may not see in coll (an array of
 * strings), or NULL when none. */
const crm_value *crm_role_hidden(const crm_schema *s, const char *role, const char *coll);
/* Is method granted to role (exact name or a "prefix.*" grant)? */
int crm_role_may_call(const crm_schema *s, const char *role, const char *method);
/* Does role exist (admin or declared)? */
int crm_role_exists(const crm_schema *s, const char *role);

/* Removes hidden fields from rec in place (rec may be NULL). */
void crm_role_strip(const crm_value *hidden, crm_value *rec);
/* Is field one of the hidden ones? */
int crm_role_hides(const crm_value *hidden, const char *field);

#endif
