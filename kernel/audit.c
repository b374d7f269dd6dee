/* audit -- the hash-chained audit trail; see audit.h. */
#include "audit.h"

#include <msgpack.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "store_int.h"

#define HASH_LEN 32
#define SCAN_MAX 100000 /* entries one query looks at: bounded work per request */

static const char META_AUDIT_HEAD[] = "audit_head";

int crm_audit_head_get(MDB_txn *txn, MDB_dbi meta, uint64_t *seq, uint8_t hash[32])
{
    MDB_val k = {sizeof META_AUDIT_HEAD - 1, (void *)META_AUDIT_HEAD}, v;
    int mrc = mdb_get(txn, meta, &k, &v);
    *seq = 0;
    memset(hash, 0, HASH_LEN);
    if (mrc == MDB_NOTFOUND)
        return 0;
    if (mrc)
        return mrc;
    if (v.mv_size != 8 + HASH_LEN)
        return MDB_CORRUPTED;
    *seq = crm_be64_get(v.mv_data);
    memcpy(hash, (uint8_t *)v.mv_data + 8, HASH_LEN);
    return 0;
}

int crm_audit_head_put(MDB_txn *txn, MDB_dbi meta, uint64_t seq, const uint8_t hash[32])
{
    uint8_t b[8 + HASH_LEN];
    MDB_val k = {sizeof META_AUDIT_HEAD - 1, (void *)META_AUDIT_HEAD}, v = {sizeof b, b};
    crm_be64_put(b, seq);
    memcpy(b + 8, hash, HASH_LEN);
    return mdb_put(txn, meta, &k, &v, 0);
}

static void pack_cstr(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static int is_name(const crm_value *v)
{
    return v && v->type == CRM_T_STR;
}

/* Field names whose value differs between old and rec (either may be
 * NULL); system fields left out.  pk NULL: count only. */
static size_t diff_fields(const crm_value *old, const crm_value *rec, msgpack_packer *pk)
{
    size_t n = 0;
    for (size_t i = 0; rec && i < rec->u.map.n; i++) {
        const crm_kv *kv = &rec->u.map.kv[i];
        if (crm_is_system_field(kv->key) || crm_value_equal(kv->val, crm_map_get(old, kv->key)))
            continue;
        if (pk)
            pack_cstr(pk, kv->key);
        n++;
    }
    for (size_t i = 0; old && i < old->u.map.n; i++) {
        const crm_kv *kv = &old->u.map.kv[i];
        if (crm_is_system_field(kv->key) || (rec && crm_map_get(rec, kv->key)))
            continue;
        if (pk)
            pack_cstr(pk, kv->key);
        n++;
    }
    return n;
}

/* Appends one entry: a, or for a store write (a->action NULL) op with the
 * fields diffed from old/rec. */
static int append(crm_txn *t, const crm_audit_rec *a, const crm_value *old, const crm_value *rec,
                  crm_err *err)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint8_t key[8], *detail = NULL;
    size_t detail_len = 0, nfields = 0;
    const char *via = t->depth > 0 ? "hook" : !t->user ? "system" : t->via_method ? "method" : NULL;
    MDB_val k, v;
    int mrc;
    uint64_t seq = t->audit_seq + 1;

    if (a->detail && a->detail->type == CRM_T_MAP && !(detail = crm_mp_encode(a->detail, &detail_len)))
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    if (!a->fields && old && rec)
        nfields = diff_fields(old, rec, NULL);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    /* [key 8][prev hash 32][map]: hashed as one buffer */
    crm_be64_put(key, seq);
    msgpack_sbuffer_write(&sb, (const char *)key, 8);
    msgpack_sbuffer_write(&sb, (const char *)t->audit_hash, HASH_LEN);
    msgpack_pack_map(&pk, 5 + (via != NULL) + (a->coll != NULL) + (a->id != NULL) + (a->rev != 0) +
                              (a->feed_seq != 0) + (a->fields != NULL || nfields > 0) +
                              (detail != NULL));
    pack_cstr(&pk, "seq");
    msgpack_pack_uint64(&pk, seq);
    pack_cstr(&pk, "ts");
    msgpack_pack_int64(&pk, t->now);
    pack_cstr(&pk, "user");
    pack_cstr(&pk, t->user ? t->user : "system");
    pack_cstr(&pk, "role");
    pack_cstr(&pk, t->role ? t->role : "system");
    if (via) {
        pack_cstr(&pk, "via");
        pack_cstr(&pk, via);
    }
    pack_cstr(&pk, "action");
    pack_cstr(&pk, a->action);
    if (a->coll) {
        pack_cstr(&pk, "collection");
        pack_cstr(&pk, a->coll);
    }
    if (a->id) {
        pack_cstr(&pk, "id");
        pack_cstr(&pk, a->id);
    }
    if (a->rev) {
        pack_cstr(&pk, "rev");
        msgpack_pack_int64(&pk, a->rev);
    }
    if (a->feed_seq) {
        pack_cstr(&pk, "feed_seq");
        msgpack_pack_uint64(&pk, a->feed_seq);
    }
    if (a->fields) {
        size_t n = 0;
        for (size_t i = 0; a->fields->type == CRM_T_ARR && i < a->fields->u.arr.n; i++)
            n += is_name(a->fields->u.arr.items[i]);
        pack_cstr(&pk, "fields");
        msgpack_pack_array(&pk, n);
        for (size_t i = 0; a->fields->type == CRM_T_ARR && i < a->fields->u.arr.n; i++)
            if (is_name(a->fields->u.arr.items[i]))
                pack_cstr(&pk, a->fields->u.arr.items[i]->u.str.s);
    } else if (nfields > 0) {
        pack_cstr(&pk, "fields");
        msgpack_pack_array(&pk, nfields);
        diff_fields(old, rec, &pk);
    }
    if (detail) {
        pack_cstr(&pk, "detail");
        msgpack_sbuffer_write(&sb, (const char *)detail, detail_len);
        free(detail);
    }
    if (!sb.data) {
        msgpack_sbuffer_destroy(&sb);
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    }
    k.mv_size = 8;
    k.mv_data = sb.data;
    v.mv_size = sb.size - 8;
    v.mv_data = sb.data + 8;
    mrc = mdb_put(t->txn, t->s->audit, &k, &v, MDB_APPEND);
    if (!mrc)
        SHA256((const unsigned char *)sb.data, sb.size, t->audit_hash);
    msgpack_sbuffer_destroy(&sb);
    if (mrc)
        return crm_store_mdb_err(t, mrc, err, "audit append");
    t->audit_seq = seq;
    return CRM_OK;
}

int crm_txn_audit(crm_txn *t, const crm_audit_rec *a, crm_err *err)
{
    int rc;
    if (!t->write)
        return crm_err_set(err, CRM_INTERNAL, "audit entry in a read transaction");
    if (!a || !a->action)
        return crm_err_set(err, CRM_INTERNAL, "audit entry without an action");
    if ((rc = crm_txn_ensure(t, err)) != CRM_OK)
        return rc;
    return append(t, a, NULL, NULL, err);
}

int crm_audit_write_op(crm_txn *t, crm_op op, const char *coll, const char *id, int64_t rev,
                       uint64_t feed_seq, const crm_value *old, const crm_value *rec,
                       crm_err *err)
{
    crm_audit_rec a = {crm_op_name(op), coll, id, rev, feed_seq, NULL, NULL};
    /* an update names the fields it changed; a create or delete is whole */
    return append(t, &a, op == CRM_OP_UPDATE ? old : NULL, op == CRM_OP_UPDATE ? rec : NULL, err);
}

/* ---- reading ---- */

/* SHA-256(key ‖ value) of a stored entry, without a copy. */
static void entry_hash(const MDB_val *k, const MDB_val *v, uint8_t out[HASH_LEN])
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned int n = 0;
    /* on failure the hash is all zeros: it then matches no link, and the
     * chain is reported broken rather than passed */
    memset(out, 0, HASH_LEN);
    if (c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) &&
        EVP_DigestUpdate(c, k->mv_data, k->mv_size) && EVP_DigestUpdate(c, v->mv_data, v->mv_size))
        EVP_DigestFinal_ex(c, out, &n);
    EVP_MD_CTX_free(c);
}

static void hex(const uint8_t *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static int matches(const crm_audit_filter *f, const crm_value *m)
{
    int64_t ts = crm_map_int(m, "ts", 0);
    if ((f->from_ms && ts < f->from_ms) || (f->to_ms && ts > f->to_ms))
        return 0;
    if (f->coll && strcmp(crm_map_str(m, "collection", ""), f->coll) != 0)
        return 0;
    if (f->id && strcmp(crm_map_str(m, "id", ""), f->id) != 0)
        return 0;
    if (f->user && strcmp(crm_map_str(m, "user", ""), f->user) != 0)
        return 0;
    if (f->action && strcmp(crm_map_str(m, "action", ""), f->action) != 0)
        return 0;
    return 1;
}

int crm_audit_query(crm_txn *t, const crm_audit_filter *f, crm_value **entries, uint64_t *next,
                    crm_err *err)
{
    MDB_cursor *cur;
    MDB_val k, v;
    uint8_t key[8];
    size_t limit = f->limit ? f->limit : CRM_AUDIT_DEFAULT_LIMIT, scanned = 0;
    uint64_t last = 0;
    int mrc, rc = CRM_OK;
    MDB_cursor_op step = f->desc ? MDB_PREV : MDB_NEXT;

    *entries = NULL;
    *next = 0;
    if (limit > CRM_AUDIT_MAX_LIMIT)
        return crm_err_set(err, CRM_BAD_REQUEST, "limit must be 1 to %d", CRM_AUDIT_MAX_LIMIT);
    if (!(*entries = crm_value_arr()))
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    if ((mrc = mdb_cursor_open(t->txn, t->s->audit, &cur)))
        return crm_store_mdb_err(t, mrc, err, "audit cursor");
    k.mv_size = 8;
    k.mv_data = key;
    if (!f->desc) {
        crm_be64_put(key, f->after + 1);
        mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    } else if (f->before) {
        crm_be64_put(key, f->before);
        mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        /* the first entry before `before`: step back from where it would be */
        mrc = mrc == MDB_NOTFOUND ? mdb_cursor_get(cur, &k, &v, MDB_LAST)
                                  : mrc ? mrc : mdb_cursor_get(cur, &k, &v, MDB_PREV);
        if (mrc == 0 && crm_be64_get(k.mv_data) >= f->before)
            mrc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    } else {
        mrc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    }
    for (; mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, step)) {
        crm_value *m;
        uint8_t h[HASH_LEN];
        char hx[2 * HASH_LEN + 1];
        if (k.mv_size != 8 || v.mv_size < HASH_LEN) {
            rc = crm_err_set(err, CRM_INTERNAL, "audit entry with a bad key or value");
            break;
        }
        last = crm_be64_get(k.mv_data);
        if (scanned++ >= SCAN_MAX) {
            *next = f->desc ? last + 1 : last - 1; /* go on from this one */
            break;
        }
        if (!(m = crm_mp_decode_trusted((uint8_t *)v.mv_data + HASH_LEN, v.mv_size - HASH_LEN))) {
            rc = crm_err_set(err, CRM_INTERNAL, "audit entry %llu does not decode",
                             (unsigned long long)last);
            break;
        }
        if (!matches(f, m)) {
            crm_value_free(m);
            continue;
        }
        entry_hash(&k, &v, h); /* of the key and value as stored */
        hex(h, HASH_LEN, hx);
        if (crm_map_set(m, "hash", crm_value_cstr(hx)) != 0 || crm_arr_push(*entries, m) != 0) {
            rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
            break;
        }
        if ((*entries)->u.arr.n >= limit) {
            /* a next page only when there is something past this one */
            MDB_val k2, v2;
            if (mdb_cursor_get(cur, &k2, &v2, step) == 0)
                *next = last;
            break;
        }
    }
    mdb_cursor_close(cur);
    if (rc == CRM_OK && mrc && mrc != MDB_NOTFOUND)
        rc = crm_store_mdb_err(t, mrc, err, "audit read");
    if (rc != CRM_OK) {
        crm_value_free(*entries);
        *entries = NULL;
        *next = 0;
    }
    return rc;
}

static int broken(crm_audit_report *r, uint64_t seq, const char *fmt, unsigned long long a,
                  unsigned long long b)
{
    r->bad_seq = seq;
    snprintf(r->why, sizeof r->why, fmt, a, b);
    return CRM_CONFLICT;
}

int crm_audit_verify(crm_txn *t, crm_audit_report *r, crm_err *err)
{
    MDB_cursor *cur;
    MDB_val k, v;
    uint8_t prev[HASH_LEN] = {0}, head_hash[HASH_LEN];
    uint64_t expect = 1, head_seq;
    int mrc, rc = CRM_OK;

    memset(r, 0, sizeof *r);
    if ((mrc = crm_audit_head_get(t->txn, t->s->meta, &head_seq, head_hash)))
        return crm_store_mdb_err(t, mrc, err, "audit head");
    if ((mrc = mdb_cursor_open(t->txn, t->s->audit, &cur)))
        return crm_store_mdb_err(t, mrc, err, "audit cursor");
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && rc == CRM_OK;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        uint64_t seq = k.mv_size == 8 ? crm_be64_get(k.mv_data) : 0;
        crm_value *m;
        if (k.mv_size != 8 || v.mv_size < HASH_LEN) {
            rc = broken(r, expect, "entry after %llu has a bad key or value%.0llu",
                        (unsigned long long)expect - 1, 0);
            break;
        }
        if (seq != expect) {
            rc = broken(r, expect, "entry %llu is missing (next is %llu)", expect, seq);
            break;
        }
        if (memcmp(v.mv_data, prev, HASH_LEN) != 0) {
            /* Entry seq-1 changed, or entry seq's link did.  If seq itself is
             * intact (its hash is what the next entry, or the head, carries),
             * the change is in seq-1. */
            uint8_t h[HASH_LEN];
            MDB_val k2, v2;
            int seq_ok;
            entry_hash(&k, &v, h);
            if (mdb_cursor_get(cur, &k2, &v2, MDB_NEXT) == 0)
                seq_ok = v2.mv_size >= HASH_LEN && memcmp(v2.mv_data, h, HASH_LEN) == 0;
            else
                seq_ok = head_seq == seq && memcmp(head_hash, h, HASH_LEN) == 0;
            if (seq_ok && seq > 1)
                rc = broken(r, seq - 1,
                            "entry %llu was altered (its hash no longer matches the link in "
                            "entry %llu)",
                            seq - 1, seq);
            else
                rc = broken(r, seq, "entry %llu was altered (it does not carry the hash of entry %llu)",
                            seq, seq - 1);
            break;
        }
        m = crm_mp_decode_trusted((uint8_t *)v.mv_data + HASH_LEN, v.mv_size - HASH_LEN);
        if (!m || (uint64_t)crm_map_int(m, "seq", 0) != seq || !crm_map_str(m, "action", NULL)) {
            crm_value_free(m);
            rc = broken(r, seq, "entry %llu does not decode as an audit entry%.0llu", seq, 0);
            break;
        }
        crm_value_free(m);
        entry_hash(&k, &v, prev);
        r->entries++;
        r->last = seq;
        expect = seq + 1;
    }
    mdb_cursor_close(cur);
    if (rc == CRM_OK && mrc && mrc != MDB_NOTFOUND)
        return crm_store_mdb_err(t, mrc, err, "audit read");
    if (rc == CRM_OK && head_seq != r->last)
        rc = broken(r, r->last + 1, "the chain ends at %llu but its head says %llu",
                    (unsigned long long)r->last, (unsigned long long)head_seq);
    else if (rc == CRM_OK && memcmp(prev, head_hash, HASH_LEN) != 0)
        rc = broken(r, r->last, "entry %llu does not match the recorded head hash%.0llu",
                    (unsigned long long)r->last, 0);
    if (rc == CRM_CONFLICT)
        crm_err_set(err, CRM_CONFLICT, "audit chain broken at entry %llu: %s",
                    (unsigned long long)r->bad_seq, r->why);
    return rc;
}
