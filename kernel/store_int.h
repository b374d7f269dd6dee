/*
 * store_int -- the store's private structures, shared by store.c (writes,
 * gets), feed.c (the change feed) and query.c (queries, aggregates).
 * Nothing outside those three files includes this header.
 */
#ifndef CRM_STORE_INT_H
#define CRM_STORE_INT_H

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>

#include "keys.h"
#include "store.h"

typedef struct crm_coll_rt {
    const crm_collection *c;
    MDB_dbi dbi;          /* id -> msgpack record */
    MDB_dbi *idx;         /* per index slot: value key ‖ id -> id */
    const crm_field **idx_fields;
} crm_coll_rt;

struct crm_store {
    MDB_env *env;
    const crm_schema *schema;
    crm_store_opts o;
    crm_coll_rt *colls;
    size_t ncolls;
    MDB_dbi feed, meta, tokens, cursors, timers, timer_keys;
    uint64_t feed_floor;  /* trim keeps entries after this seq */
    /* committed counters (the write txn carries its own working copies) */
    uint64_t last_seq, id_clock, feed_bytes;
    int64_t last_commit_ms; /* the clock of the last committed batch */
    size_t map_size;
    /* An I/O error at commit (EIO, MDB_PANIC...): what reached the disk is
     * unknown, so no later write may be acknowledged (crm_store_failed). */
    int failed;
    atomic_int readers;   /* open read txns: the map may only grow at zero */
    crm_before_fn before;
    void *before_ud;
    /* ended read txns kept reset for reuse (mdb_txn_renew is far cheaper
     * than a new txn); any thread may begin reads, hence the lock */
    pthread_mutex_t pool_lock;
    crm_txn *pool[16];
    int npool;
};

struct crm_txn {
    crm_store *s;
    MDB_txn *txn;
    crm_txn *parent;
    int write;
    int depth;            /* hook nesting */
    int64_t now;          /* one clock reading per batch */
    uint64_t seq, id_clock, feed_bytes;
    int fatal;            /* an LMDB error that spoils the whole batch (MAP_FULL, I/O) */
    /* A write's transaction while its before-hooks run: it shares its
     * parent's LMDB txn (so a write whose hooks write nothing costs no
     * nested txn) until something writes into it; then crm_txn_ensure
     * begins its own nested txn, from a parent state this write has not
     * yet touched (hooks run before the write's own mutation). */
    int lazy;
};

/* Gives a lazy t its own nested LMDB txn (no-op otherwise); every write
 * into a txn calls it first. */
int crm_txn_ensure(crm_txn *t, crm_err *err);

const crm_coll_rt *crm_store_coll(const crm_store *s, const char *name);

/* Maps an LMDB error to UNAVAILABLE/INTERNAL with context; marks t fatal
 * when the error spoils the write transaction. */
int crm_store_mdb_err(crm_txn *t, int mrc, crm_err *err, const char *what);

/* feed.c: appends one change inside t (write txn). rec_bytes is the record's
 * msgpack (NULL for delete); prev_bytes the record before (NULL on create). */
int crm_feed_append(crm_txn *t, const char *coll, crm_op op, const char *id, int64_t rev,
                    int64_t prev_rev, const uint8_t *rec_bytes, size_t rec_len,
                    const uint8_t *prev_bytes, size_t prev_len, uint64_t *seq, crm_err *err);
/* feed.c: drops entries past retention; bounded work per call. */
int crm_feed_trim(crm_txn *t, crm_err *err);

#endif
