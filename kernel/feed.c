/*
 * feed -- the durable change feed.
 *
 * Key: 8-byte big-endian seq.  Value: 8-byte big-endian commit time (so
 * retention reads no msgpack) followed by a msgpack map
 * {seq, ts, collection, op, id, rev, prev_rev, record?, prev?}; record and
 * prev are the very bytes stored in the collection, copied, not re-encoded.
 * prev (the record before an update or delete) lets subscribers tell a
 * record leaving their filter and lets after-hooks see ev.prev.
 * "by"/"by_role" name who caused the change (a token id, never a token; the
 * audit trail and after-hooks' attribution use it; absent for the system).
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
    msgpack_pack_map(&pk, 7 + (rec_bytes != NULL) + (prev_bytes != NULL) + (t->depth > 0) +
                              2 * (t->user != NULL));
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
    if (t->user) { /* who caused it: after-hook writes are attributed to them */
        pack_cstr(&pk, "by");
        pack_cstr(&pk, t->user);
        pack_cstr(&pk, "by_role");
        pack_cstr(&pk, t->role ? t->role : "");
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
        e.user = crm_map_str(m, "by", NULL);
        e.role = crm_map_str(m, "by_role", NULL);
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

/* ---- erasure ---- */

typedef struct scrub_target {
    const crm_collection *c;
    const char *coll, *id;
    size_t clen, idlen;
} scrub_target;

static int target_cmp(const void *a, const void *b)
{
    const scrub_target *x = a, *y = b;
    size_t n = x->clen < y->clen ? x->clen : y->clen;
    int c = memcmp(x->coll, y->coll, n);
    if (c || x->clen != y->clen)
        return c ? c : x->clen < y->clen ? -1 : 1;
    n = x->idlen < y->idlen ? x->idlen : y->idlen;
    c = memcmp(x->id, y->id, n);
    if (c || x->idlen != y->idlen)
        return c ? c : x->idlen < y->idlen ? -1 : 1;
    return 0;
}

/* Reads one msgpack scalar at *p (< end): a string sets *s and *sl; an integer
 * is skipped.  -1 for anything else (then the caller decodes the entry). */
static int mp_scalar(const uint8_t **p, const uint8_t *end, const char **s, size_t *sl)
{
    const uint8_t *q = *p;
    size_t len = 0, hdr = 1;
    uint8_t b;
    *s = NULL;
    if (q >= end)
        return -1;
    b = *q;
    if (b <= 0x7f || b >= 0xe0) {
        *p = q + 1;
        return 0;
    }
    switch (b) {
    case 0xcc: case 0xd0: len = 1; break;
    case 0xcd: case 0xd1: len = 2; break;
    case 0xce: case 0xd2: len = 4; break;
    case 0xcf: case 0xd3: len = 8; break;
    default:
        if (b >= 0xa0 && b <= 0xbf) {
            len = b & 0x1f;
        } else if (b == 0xd9 && q + 2 <= end) {
            len = q[1];
            hdr = 2;
        } else if (b == 0xda && q + 3 <= end) {
            len = (size_t)q[1] << 8 | q[2];
            hdr = 3;
        } else {
            return -1;
        }
        if ((size_t)(end - q) < hdr + len)
            return -1;
        *s = (const char *)q + hdr;
        *sl = len;
        *p = q + hdr + len;
        return 0;
    }
    if ((size_t)(end - q) < 1 + len)
        return -1;
    *p = q + 1 + len;
    return 0;
}

/* The collection and id of a feed entry's msgpack map, read from its head
 * without decoding it (they come before record and prev).  -1: not found
 * that way. */
static int entry_subject(const uint8_t *p, size_t n, scrub_target *out)
{
    const uint8_t *end = p + n;
    size_t nk;
    if (n < 1)
        return -1;
    if (*p >= 0x80 && *p <= 0x8f) {
        nk = *p & 0x0f;
        p++;
    } else if (*p == 0xde && n >= 3) {
        nk = (size_t)p[1] << 8 | p[2];
        p += 3;
    } else {
        return -1;
    }
    out->coll = out->id = NULL;
    for (size_t i = 0; i < nk && !(out->coll && out->id); i++) {
        const char *k, *v;
        size_t kl, vl;
        if (mp_scalar(&p, end, &k, &kl) != 0 || !k || mp_scalar(&p, end, &v, &vl) != 0)
            return -1;
        if (kl == 10 && memcmp(k, "collection", 10) == 0 && v) {
            out->coll = v;
            out->clen = vl;
        } else if (kl == 2 && memcmp(k, "id", 2) == 0 && v) {
            out->id = v;
            out->idlen = vl;
        }
    }
    return out->coll && out->id ? 0 : -1;
}

/* Scrubs the map under key in m (when it is a map); *changed += fields. */
static int scrub_in(crm_value *m, const char *key, const scrub_target *tg, size_t *changed)
{
    crm_value *r = crm_map_get(m, key);
    if (!r || r->type != CRM_T_MAP)
        return 0;
    return crm_scrub_record(tg->c, r, tg->id, changed);
}

/* The collection named (len bytes) when it declares "about", else NULL. */
static const crm_collection *about_coll(const crm_schema *sc, const char *name, size_t len)
{
    for (size_t i = 0; i < sc->ncolls; i++)
        if (sc->colls[i].about_coll && strlen(sc->colls[i].name) == len &&
            memcmp(sc->colls[i].name, name, len) == 0)
            return &sc->colls[i];
    return NULL;
}

/* Whether the record or the prev of entry m (of about-collection c) is
 * about one of the targets. */
static int about_target(const crm_value *m, const crm_collection *c, const scrub_target *tg,
                        size_t n)
{
    static const char *const keys[2] = {"record", "prev"};
    for (int i = 0; i < 2; i++) {
        const crm_value *r = crm_map_get(m, keys[i]);
        const char *coll, *id;
        scrub_target key = {0};
        if (!r || r->type != CRM_T_MAP)
            continue;
        coll = crm_map_str(r, c->about_coll, NULL);
        id = crm_map_str(r, c->about_id, NULL);
        if (!coll || !id)
            continue;
        key.coll = coll;
        key.clen = strlen(coll);
        key.id = id;
        key.idlen = strlen(id);
        if (bsearch(&key, tg, n, sizeof *tg, target_cmp))
            return 1;
    }
    return 0;
}

int crm_feed_scrub(crm_txn *t, const char *const *colls, const char *const *ids, size_t n,
                   uint64_t *rewritten, crm_err *err)
{
    MDB_cursor *cur;
    MDB_val k, v;
    scrub_target *tg;
    int mrc, rc = CRM_OK;

    *rewritten = 0;
    if (!t->write)
        return crm_err_set(err, CRM_INTERNAL, "feed scrub in a read transaction");
    if (n == 0)
        return CRM_OK;
    if ((rc = crm_txn_ensure(t, err)) != CRM_OK)
        return rc;
    if (!(tg = calloc(n, sizeof *tg)))
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const crm_coll_rt *rt = crm_store_coll(t->s, colls[i]);
        if (!rt) {
            free(tg);
            return crm_err_set(err, CRM_BAD_REQUEST, "unknown collection \"%.64s\"", colls[i]);
        }
        tg[i].c = rt->c;
        tg[i].coll = rt->c->name;
        tg[i].clen = strlen(rt->c->name);
        tg[i].id = ids[i];
        tg[i].idlen = strlen(ids[i]);
    }
    /* one pass over the feed; each entry's subject looked up in the sorted
     * targets, read from the entry's head without decoding it */
    qsort(tg, n, sizeof *tg, target_cmp);
    if ((mrc = mdb_cursor_open(t->txn, t->s->feed, &cur))) {
        free(tg);
        return crm_store_mdb_err(t, mrc, err, "feed cursor");
    }
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && rc == CRM_OK;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const scrub_target *hit = NULL;
        scrub_target key = {0}, self;
        const crm_collection *about = NULL;
        crm_value *m;
        size_t changed = 0;
        if (v.mv_size < 8 || k.mv_size != 8)
            continue;
        if (entry_subject((const uint8_t *)v.mv_data + 8, v.mv_size - 8, &key) == 0) {
            /* not a target itself: only an entry of an about-collection may
             * still carry a target's data (a webhook delivery's body) */
            if (!(hit = bsearch(&key, tg, n, sizeof *tg, target_cmp)) &&
                !(about = about_coll(t->s->schema, key.coll, key.clen)))
                continue;
        }
        if (!(m = crm_mp_decode_trusted((uint8_t *)v.mv_data + 8, v.mv_size - 8)))
            continue;
        if (!hit && !about) { /* an entry laid out otherwise: look it up decoded */
            const char *c = crm_map_str(m, "collection", ""), *id = crm_map_str(m, "id", "");
            key.coll = c;
            key.clen = strlen(c);
            key.id = id;
            key.idlen = strlen(id);
            if (!(hit = bsearch(&key, tg, n, sizeof *tg, target_cmp)))
                about = about_coll(t->s->schema, c, strlen(c));
        }
        if (!hit && about && about_target(m, about, tg, n)) {
            /* scrubbed as a record of its own collection, under its own id */
            self.c = about;
            self.coll = about->name;
            self.clen = strlen(about->name);
            self.id = crm_map_str(m, "id", "");
            self.idlen = strlen(self.id);
            hit = &self;
        }
        if (hit && (scrub_in(m, "record", hit, &changed) || scrub_in(m, "prev", hit, &changed)))
            rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
        if (rc == CRM_OK && hit && changed) {
            size_t len;
            uint8_t *enc = crm_mp_encode(m, &len), *buf = enc ? malloc(8 + len) : NULL;
            if (!buf) {
                rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
            } else {
                /* the key copied: k points into the page, which the put
                 * may rearrange before it reads the key */
                uint8_t kb[8];
                MDB_val nk = {8, kb}, nv = {8 + len, buf};
                size_t oldlen = v.mv_size;
                memcpy(kb, k.mv_data, 8);
                memcpy(buf, v.mv_data, 8); /* the commit time stays */
                memcpy(buf + 8, enc, len);
                if ((mrc = mdb_cursor_put(cur, &nk, &nv, MDB_CURRENT))) {
                    rc = crm_store_mdb_err(t, mrc, err, "feed scrub");
                } else {
                    t->feed_bytes += nv.mv_size;
                    t->feed_bytes -= oldlen < t->feed_bytes ? oldlen : t->feed_bytes;
                    (*rewritten)++;
                }
            }
            free(buf);
            free(enc);
        }
        crm_value_free(m);
    }
    mdb_cursor_close(cur);
    free(tg);
    if (rc == CRM_OK && mrc && mrc != MDB_NOTFOUND)
        rc = crm_store_mdb_err(t, mrc, err, "feed scrub");
    return rc;
}
