/* auth -- tokens (stored hashed) and role checks; see auth.h. */
#include "auth.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "audit.h"
#include "codec.h"
#include "keys.h"

void crm_token_hash(const char *token, size_t len, uint8_t out[CRM_TOKEN_HASH_LEN])
{
    unsigned int n = 0;
    if (!EVP_Digest(token, len, out, &n, EVP_sha256(), NULL) || n != CRM_TOKEN_HASH_LEN) {
        /* never fall back to anything weaker: an all-zero hash matches nothing stored */
        memset(out, 0, CRM_TOKEN_HASH_LEN);
    }
}

void crm_token_id(const uint8_t hash[CRM_TOKEN_HASH_LEN], char out[13])
{
    for (int i = 0; i < 6; i++)
        snprintf(out + 2 * i, 3, "%02x", hash[i]);
}

/* A token put or delete and its audit entry, in one commit. */
typedef struct token_op {
    const uint8_t *hash;
    const void *val;   /* NULL: revoke */
    size_t vlen;
    const char *role;  /* the token's role (create), for the audit */
} token_op;

static int token_unit(void *ud, crm_txn *t, crm_err *err)
{
    token_op *op = ud;
    char id[13];
    crm_value *detail = crm_value_map();
    int rc;
    crm_token_id(op->hash, id);
    if (!detail || crm_map_set(detail, "token", crm_value_cstr(id)) ||
        (op->role && crm_map_set(detail, "token_role", crm_value_cstr(op->role)))) {
        crm_value_free(detail);
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    }
    crm_txn_set_actor(t, "cli", "local");
    rc = crm_txn_aux_put(t, CRM_AUX_TOKENS, op->hash, CRM_TOKEN_HASH_LEN, op->val, op->vlen, err);
    if (rc == CRM_OK) {
        crm_audit_rec a = {op->val ? "token.create" : "token.revoke", NULL, NULL, 0, 0, NULL, detail};
        rc = crm_txn_audit(t, &a, err);
    }
    crm_value_free(detail);
    return rc;
}

static int token_apply(crm_store *s, token_op *op, crm_err *err)
{
    crm_unit u = {.fn = token_unit, .fn_ud = op, .user = "cli", .role = "local"};
    crm_err e;
    if (crm_store_apply(s, &u, 1, &e) != CRM_OK) {
        *err = e;
        return e.code;
    }
    if (u.rc != CRM_OK)
        *err = u.err;
    return u.rc;
}

int crm_token_create(crm_store *s, const crm_schema *schema, const char *role, char **token_out,
                     crm_err *err)
{
    uint8_t raw[32], hash[CRM_TOKEN_HASH_LEN];
    char text[4 + 44];
    crm_value *meta;
    uint8_t *enc;
    size_t enclen;
    int rc;

    *token_out = NULL;
    if (!crm_role_exists(schema, role))
        return crm_err_set(err, CRM_BAD_REQUEST, "unknown role \"%.64s\"", role);
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
        return crm_err_set(err, CRM_INTERNAL, "no randomness for a token");
    memcpy(text, "crm_", 4);
    crm_b64url_encode(raw, sizeof raw, text + 4);
    crm_token_hash(text, strlen(text), hash);
    if (!(meta = crm_value_map()) || crm_map_set(meta, "role", crm_value_cstr(role)) ||
        crm_map_set(meta, "created", crm_value_int(crm_store_now(s)))) {
        crm_value_free(meta);
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    }
    enc = crm_mp_encode(meta, &enclen);
    crm_value_free(meta);
    if (!enc)
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    {
        token_op op = {hash, enc, enclen, role};
        rc = token_apply(s, &op, err);
    }
    free(enc);
    if (rc != CRM_OK)
        return rc;
    if (!(*token_out = strdup(text)))
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    return CRM_OK;
}

int crm_token_revoke(crm_store *s, const char *token, crm_err *err)
{
    uint8_t hash[CRM_TOKEN_HASH_LEN];
    int rc;
    crm_token_hash(token, strlen(token), hash);
    {
        token_op op = {hash, NULL, 0, NULL};
        rc = token_apply(s, &op, err);
    }
    if (rc == CRM_NOT_FOUND)
        return crm_err_set(err, CRM_NOT_FOUND, "no such token");
    return rc;
}

int crm_token_lookup(crm_txn *t, const uint8_t hash[CRM_TOKEN_HASH_LEN], char *role, size_t cap,
                     crm_err *err)
{
    const void *val;
    size_t vlen;
    crm_value *meta;
    int rc = crm_txn_aux_get(t, CRM_AUX_TOKENS, hash, CRM_TOKEN_HASH_LEN, &val, &vlen, err);
    if (rc == CRM_NOT_FOUND)
        return crm_err_set(err, CRM_UNAUTHENTICATED, "unknown or revoked token");
    if (rc != CRM_OK)
        return rc;
    if (!(meta = crm_mp_decode_trusted(val, vlen)))
        return crm_err_set(err, CRM_INTERNAL, "token record does not decode");
    snprintf(role, cap, "%s", crm_map_str(meta, "role", ""));
    crm_value_free(meta);
    return CRM_OK;
}

/* ---- roles ---- */

static const crm_value *grant_of(const crm_schema *s, const char *role, const char *coll)
{
    const crm_value *grants = s->roles ? crm_map_get(s->roles, role) : NULL;
    const crm_value *g;
    if (!grants)
        return NULL;
    if ((g = crm_map_get(grants, coll)))
        return g; /* a named grant takes the place of "*" */
    return crm_map_get(grants, "*");
}

int crm_role_exists(const crm_schema *s, const char *role)
{
    return strcmp(role, "admin") == 0 || (s->roles && crm_map_get(s->roles, role));
}

int crm_role_perms(const crm_schema *s, const char *role, const char *coll)
{
    const crm_value *g, *list;
    int perms = 0;
    if (strcmp(role, "admin") == 0)
        return CRM_PERM_READ | CRM_PERM_WRITE | CRM_PERM_SUBSCRIBE;
    if (!coll || strcmp(coll, "methods") == 0 || !(g = grant_of(s, role, coll)))
        return 0;
    list = g->type == CRM_T_MAP ? crm_map_get(g, "can") : g;
    for (size_t i = 0; list && list->type == CRM_T_ARR && i < list->u.arr.n; i++) {
        const char *p = list->u.arr.items[i]->type == CRM_T_STR ? list->u.arr.items[i]->u.str.s : "";
        if (strcmp(p, "read") == 0)
            perms |= CRM_PERM_READ;
        else if (strcmp(p, "write") == 0)
            perms |= CRM_PERM_WRITE;
        else if (strcmp(p, "subscribe") == 0)
            perms |= CRM_PERM_SUBSCRIBE;
    }
    return perms;
}

const crm_value *crm_role_hidden(const crm_schema *s, const char *role, const char *coll)
{
    const crm_value *g, *h;
    if (strcmp(role, "admin") == 0 || !(g = grant_of(s, role, coll)) || g->type != CRM_T_MAP)
        return NULL;
    h = crm_map_get(g, "hide");
    return h && h->type == CRM_T_ARR && h->u.arr.n ? h : NULL;
}

int crm_role_may_call(const crm_schema *s, const char *role, const char *method)
{
    const crm_value *grants, *list;
    if (strcmp(role, "admin") == 0)
        return 1;
    if (!s->roles || !(grants = crm_map_get(s->roles, role)) ||
        !(list = crm_map_get(grants, "methods")) || list->type != CRM_T_ARR)
        return 0;
    for (size_t i = 0; i < list->u.arr.n; i++) {
        const crm_value *m = list->u.arr.items[i];
        size_t n;
        if (m->type != CRM_T_STR)
            continue;
        n = m->u.str.len;
        if (strcmp(m->u.str.s, method) == 0)
            return 1;
        if (n >= 2 && strcmp(m->u.str.s + n - 2, ".*") == 0 && strncmp(method, m->u.str.s, n - 1) == 0)
            return 1;
    }
    return 0;
}

int crm_role_hides(const crm_value *hidden, const char *field)
{
    for (size_t i = 0; hidden && i < hidden->u.arr.n; i++)
        if (hidden->u.arr.items[i]->type == CRM_T_STR && strcmp(hidden->u.arr.items[i]->u.str.s, field) == 0)
            return 1;
    return 0;
}

void crm_role_strip(const crm_value *hidden, crm_value *rec)
{
    if (!rec || rec->type != CRM_T_MAP)
        return;
    for (size_t i = 0; hidden && i < hidden->u.arr.n; i++)
        if (hidden->u.arr.items[i]->type == CRM_T_STR)
            crm_map_del(rec, hidden->u.arr.items[i]->u.str.s);
}
