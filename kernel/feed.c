/*
 * feed -- the durable change feed.
 *
 * Key: 8-byte big-endian seq.  Value: 8-byte big-endian commit time (so
 * retention reads no msgpack) followed by a msgpack map
 * {seq, ts, collection, op, id, rev, prev_rev, record?, prev?}; record and
 * prev are the very bytes stored in the collection, copied, not re-encoded.
 * prev (the record before an update or delete) lets subscribers tell a
 * record leaving their filter and lets after-hooks see ev.prev.
 * Entries are appended inside the write's own nested transaction, so an
 * aborted write never takes a seq and the feed has no gaps.
 */
#include "store_int.h"

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

#define TRIM_MAX_PER_BATCH 1024 /* bounded work per commit */

static void pack_cstr(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

int crm_feed_append(crm_txn *t, const char *coll, crm_op op, const char *id, int64_t rev,
                    int64_t prev_rev, const uint8_t *rec_bytes, size_t rec_len,
                    const uint8_t *prev_bytes, size_t prev_len, uint64_t *seq, crm_err *err)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint8_t hdr[8], key[8];
    MDB_val k = {8, key}, v;
    int mrc;
    uint64_t s = t->seq + 1;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    crm_be64_put(hdr, (uint64_t)t->now);
    msgpack_sbuffer_write(&sb, (const char *)hdr, 8);
    msgpack_pack_map(&pk, 7 + (rec_bytes != NULL) + (prev_bytes != NULL) + (t->depth > 0));
    pack_cstr(&pk, "seq");
    msgpack_pack_uint64(&pk, s);
    pack_cstr(&pk, "ts");
    msgpack_pack_int64(&pk, t->now);
    pack_cstr(&pk, "collection");
    pack_cstr(&pk, coll);
    pack_cstr(&pk, "op");
    pack_cstr(&pk, crm_op_name(op));
    pack_cstr(&pk, "id");
    pack_cstr(&pk, id);
    pack_cstr(&pk, "rev");
    msgpack_pack_int64(&pk, rev);
    pack_cstr(&pk, "prev_rev");
    msgpack_pack_int64(&pk, prev_rev);
    if (t->depth > 0) { /* after-hooks of this change run one level deeper */
        pack_cstr(&pk, "depth");
        msgpack_pack_int(&pk, t->depth);
    }
    if (rec_bytes) {
        pack_cstr(&pk, "record");
        msgpack_sbuffer_write(&sb, (const char *)rec_bytes, rec_len);
    }
    if (prev_bytes) {
        pack_cstr(&pk, "prev");
        msgpack_sbuffer_write(&sb, (const char *)prev_bytes, prev_len);
    }
    if (!sb.data) {
        msgpack_sbuffer_destroy(&sb);
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    }
    crm_be64_put(key, s);
    v.mv_size = sb.size;
    v.mv_data = sb.data;
    mrc = mdb_put(t->txn, t->s->feed, &k, &v, MDB_APPEND);
    msgpack_sbuffer_destroy(&sb);
    if (mrc)
        return crm_store_mdb_err(t, mrc, err, "feed append");
    t->seq = s;
    t->feed_bytes += v.mv_size;
    if (seq)
        *seq = s;
    return CRM_OK;
}

int crm_feed_trim(crm_txn *t, crm_err *err)
{
    const crm_store_opts *o = &t->s->o;
    MDB_cursor *cur;
    MDB_val k, v;
    int mrc, n = 0;

    if (o->feed_max_age_ms <= 0 && o->feed_max_bytes == 0)
        return CRM_OK;
    if ((mrc = mdb_cursor_open(t->txn, t->s->feed, &cur)))
        return crm_store_mdb_err(t, mrc, err, "feed cursor");
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && n < TRIM_MAX_PER_BATCH;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), n++) {
        int64_t ts = v.mv_size >= 8 ? (int64_t)crm_be64_get(v.mv_data) : 0;
        int old = o->feed_max_age_ms > 0 && ts < t->now - o->feed_max_age_ms;
        int big = o->feed_max_bytes > 0 && t->feed_bytes > o->feed_max_bytes;
        /* The newest entry always stays, so the feed's end is never lost. */
        if ((!old && !big) || crm_be64_get(k.mv_data) >= t->seq ||
            crm_be64_get(k.mv_data) > t->s->feed_floor)
            break;
        t->feed_bytes -= v.mv_size < t->feed_bytes ? v.mv_size : t->feed_bytes;
        if ((mrc = mdb_cursor_del(cur, 0)))
            break;
    }
    mdb_cursor_close(cur);
    if (mrc && mrc != MDB_NOTFOUND)
        return crm_store_mdb_err(t, mrc, err, "feed trim");
    return CRM_OK;
}

int crm_feed_bounds(crm_txn *t, uint64_t *first, uint64_t *last, crm_err *err)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int mrc;
    *first = *last = 0;
    if ((mrc = mdb_cursor_open(t->txn, t->s->feed, &cur)))
        return crm_store_mdb_err(t, mrc, err, "feed cursor");
    if ((mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST)) == 0 && k.mv_size == 8)
        *first = crm_be64_get(k.mv_data);
    if (mrc == 0 && (mrc = mdb_cursor_get(cur, &k, &v, MDB_LAST)) == 0 && k.mv_size == 8)
        *last = crm_be64_get(k.mv_data);
    mdb_cursor_close(cur);
    if (mrc && mrc != MDB_NOTFOUND)
        return crm_store_mdb_err(t, mrc, err, "feed bounds");
    return CRM_OK;
}

static crm_op op_parse(const char *s)
{
    if (strcmp(s, "create") == 0)
        return CRM_OP_CREATE;
    if (strcmp(s, "update") == 0)
        return CRM_OP_UPDATE;
    return CRM_OP_DELETE;
}

/* Peeks an entry's collection and op; 0 when they cannot be read so (the
 * entry is then decoded and judged by the callback). */
static int peek_head(const MDB_val *v, char *coll, size_t cap, crm_op *op)
{
    static const char *const keys[] = {"collection", "op"};
    const char *vals[2];
    size_t lens[2];
    char ops[8];
    if (v->mv_size < 8 ||
        crm_mp_peek_strs((const uint8_t *)v->mv_data + 8, v->mv_size - 8, keys, 2, vals, lens) != 2 ||
        lens[0] >= cap || lens[1] >= sizeof ops)
        return 0;
    memcpy(coll, vals[0], lens[0]);
    coll[lens[0]] = '\0';
    memcpy(ops, vals[1], lens[1]);
    ops[lens[1]] = '\0';
    *op = op_parse(ops);
    return 1;
}

int crm_feed_read(crm_txn *t, uint64_t since, size_t max,
                  int (*fn)(void *ud, const crm_feed_entry *e), void *ud, uint64_t *last_out,
                  crm_err *err)
{
    return crm_feed_read_where(t, since, max, NULL, fn, ud, last_out, err);
}

int crm_feed_read_where(crm_txn *t, uint64_t since, size_t max,
                        int (*want)(void *ud, const char *coll, crm_op op),
                        int (*fn)(void *ud, const crm_feed_entry *e), void *ud,
                        uint64_t *last_out, crm_err *err)
{
    size_t looked = 0;
    MDB_cursor *cur;
    MDB_val k, v;
    uint8_t key[8];
    int mrc, rc = CRM_OK;
    size_t count = 0;
    uint64_t first, last;

    if (last_out)
        *last_out = since;
    if ((rc = crm_feed_bounds(t, &first, &last, err)) != CRM_OK)
        return rc;
    /* since == first-1 is fine: nothing between since and first is missing;
     * since == 0 means "everything retained" (spec). */
    if (since > crm_store_last_seq(t->s) && since > last)
        return crm_err_set(err, CRM_CONFLICT,
                           "seq %llu is ahead of this store (last is %llu): resync",
                           (unsigned long long)since, (unsigned long long)last);
    if (since > 0 && since < last && first > 0 && since + 1 < first)
        return crm_err_set(err, CRM_CONFLICT,
                           "seq %llu is older than the feed retains (oldest is %llu): resync",
                           (unsigned long long)since, (unsigned long long)first);
    if (since >= last)
        return CRM_OK;
    if ((mrc = mdb_cursor_open(t->txn, t->s->feed, &cur)))
        return crm_store_mdb_err(t, mrc, err, "feed cursor");
    crm_be64_put(key, since + 1);
    k.mv_size = 8;
    k.mv_data = key;
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); mrc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        crm_value *m;
        crm_feed_entry e;
        const crm_value *rec;
        int stop;
        if (want) {
            char coll[128];
            crm_op op;
            if (max && ++looked > 16 * max)
                break;
            if (peek_head(&v, coll, sizeof coll, &op) && !want(ud, coll, op)) {
                if (last_out)
                    *last_out = crm_be64_get(k.mv_data);
                continue;
            }
        }
        if (v.mv_size < 8 || !(m = crm_mp_decode_trusted((uint8_t *)v.mv_data + 8, v.mv_size - 8))) {
            rc = crm_err_set(err, CRM_INTERNAL, "feed entry %llu does not decode",
                             (unsigned long long)crm_be64_get(k.mv_data));
            break;
        }
        e.seq = (uint64_t)crm_map_int(m, "seq", 0);
        e.ts = crm_map_int(m, "ts", 0);
        e.coll = crm_map_str(m, "collection", "");
        e.op = op_parse(crm_map_str(m, "op", ""));
        e.id = crm_map_str(m, "id", "");
        e.rev = crm_map_int(m, "rev", 0);
        e.prev_rev = crm_map_int(m, "prev_rev", 0);
        rec = crm_map_get(m, "record");
        e.record = rec && rec->type == CRM_T_MAP ? rec : NULL;
        rec = crm_map_get(m, "prev");
        e.prev = rec && rec->type == CRM_T_MAP ? rec : NULL;
        e.depth = (int)crm_map_int(m, "depth", 0);
        e.owner = &m;
        stop = fn(ud, &e);
        if (last_out)
            *last_out = e.seq;
        crm_value_free(m); /* NULL when the callback kept it */
        if (stop || (max && ++count >= max))
            break;
    }
    mdb_cursor_close(cur);
    if (rc == CRM_OK && mrc && mrc != MDB_NOTFOUND)
        rc = crm_store_mdb_err(t, mrc, err, "feed read");
    return rc;
}
