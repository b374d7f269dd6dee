/*
 * store_int -- the store's private structures, shared by store.c (writes,
 * gets), feed.c (the change feed) and query.c (queries, aggregates).
 * audit.c (the audit trail, written in the same transactions) and
 * compact.c (erasure's compaction) are part of the store too.  Nothing
 * else includes this header.
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
    int dependents;       /* a ref with on_delete cascade or set_null names it:
                           * its deletes write other records (set at open) */
} crm_coll_rt;

struct crm_store {
    MDB_env *env;
    const crm_schema *schema;
    crm_store_opts o;
    crm_coll_rt *colls;
    size_t ncolls;
    MDB_dbi feed, meta, tokens, cursors, timers, timer_keys, audit;
    char *dir;            /* the data folder (compaction reopens the env there) */
    uint64_t feed_floor;  /* trim keeps entries after this seq */
    /* committed counters (the write txn carries its own working copies) */
    _Atomic uint64_t last_seq; /* read by the loop thread (fanout, metrics) */
    uint64_t id_clock, feed_bytes;
    int64_t last_commit_ms; /* the clock of the last committed batch */
    uint64_t commits;       /* successful crm_store_apply commits */
    size_t map_size;
    /* An I/O error at commit (EIO, MDB_PANIC...): what reached the disk is
     * unknown, so no later write may be acknowledged (crm_store_failed). */
    atomic_int failed;
    atomic_int readers;   /* open read txns: the map may only grow at zero */
    /* Set while the writer needs the map to itself (growing it, swapping
     * the file after a compaction): new read txns wait until it clears,
     * and the writer waits for readers to reach zero (crm_store_exclusive). */
    atomic_int exclusive;
    pthread_mutex_t excl_lock;
    pthread_cond_t excl_cond;
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
    /* Who the writes are for (borrowed; NULL = the system), and whether they
     * come through a method (`call`): the audit trail records both. */
    const char *user, *role;
    int via_method;
    /* The audit chain's head as of this txn (like seq: children carry it
     * and hand it back on commit). */
    uint64_t audit_seq;
    uint8_t audit_hash[32];
};

/* store.c: closes and reopens the environment in s->dir (compaction swapped
 * the file), opening every database again.  On failure s->env is NULL and
 * every later transaction fails with UNAVAILABLE. */
int crm_store_reopen_env(crm_store *s, crm_err *err);

/* Copies the counters a nested txn advanced (seq, ids, feed bytes, audit
 * head) back into its parent. */
void crm_txn_take_counters(crm_txn *parent, const crm_txn *child);

/* audit.c: appends the entry of one store write (create/update/delete) in
 * t; old/rec are the records before/after (NULL when none). */
int crm_audit_write_op(crm_txn *t, crm_op op, const char *coll, const char *id, int64_t rev,
                       uint64_t feed_seq, const crm_value *old, const crm_value *rec,
                       crm_err *err);
/* audit.c: the chain head stored in meta (seq 0 and a zero hash when
 * empty), read at the start of every batch. */
int crm_audit_head_get(MDB_txn *txn, MDB_dbi meta, uint64_t *seq, uint8_t hash[32]);
int crm_audit_head_put(MDB_txn *txn, MDB_dbi meta, uint64_t seq, const uint8_t hash[32]);

/* store.c: the personal fields of c in rec removed (a required string gets
 * the placeholder "[erased]"); *changed: how many. */
int crm_scrub_record(const crm_collection *c, crm_value *rec, const char *id, size_t *changed);

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
