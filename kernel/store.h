/*
 * store -- the LMDB record store: records, secondary indexes, the change
 * feed, group commit, queries and aggregates.
 *
 * Owns the LMDB environment.  One database per collection (id -> msgpack
 * record), one per indexed field ("value key ‖ id" -> id), "feed" (seq ->
 * change) and "meta" (counters).  Every write goes through crm_store_apply
 * (group commit: one LMDB write transaction per batch, one nested
 * transaction per unit so a failing unit leaves the others intact, one
 * commit = one fsync).  The record, its index entries and its feed entry are
 * written in the same transaction, so they are durable together or not at all.
 *
 * Threads: one thread writes (the writer, kernel/writer.h; the calling
 * thread for in-process tools).  Read transactions may be used from any
 * thread (MDB_NOTLS), one thread at a time each; crm_store_last_seq and
 * crm_store_failed may be read from any thread.
 * Never: MDB_WRITEMAP (a full disk would kill the process with SIGBUS).
 */
#ifndef CRM_STORE_H
#define CRM_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "schema.h"
#include "value.h"

typedef struct crm_store crm_store;
typedef struct crm_txn crm_txn;

typedef struct crm_store_opts {
    size_t map_size;            /* initial map size; default 1 GiB (growth needs no reader open) */
    size_t map_max;             /* auto-grow ceiling; default 16 GiB */
    int64_t feed_max_age_ms;    /* retention by age; default 7 days; 0 = keep forever */
    uint64_t feed_max_bytes;    /* retention by size; default 0 = no size cap */
    int no_sync;                /* MDB_NOSYNC: tests and benchmarks only */
    /* MDB_NOMETASYNC: a commit flushes its data pages but writes its meta
     * page without a flush of its own, so it is durable only once the next
     * commit's flush (or crm_store_sync) has run.  For a caller that
     * acknowledges a batch only then (the writer: one flush per batch
     * under load instead of two).  Default 0: every commit is durable when
     * crm_store_apply returns. */
    int meta_async;
    /* The clock for _created/_updated, ids and feed ages; NULL = real time.
     * Lets tests make time pass. */
    int64_t (*clock_ms)(void *ud);
    void *clock_ud;
} crm_store_opts;

/* Fills o with the defaults above. */
void crm_store_opts_default(crm_store_opts *o);

/* Opens (creating when needed) the store in dir for the collections of
 * schema, which must outlive the store (borrowed).  Clears reader slots left
 * by killed processes.  opts may be NULL (defaults).  Errors: UNAVAILABLE
 * (cannot open or create), INTERNAL. */
int crm_store_open(const char *dir, const crm_schema *schema, const crm_store_opts *opts,
                   crm_store **out, crm_err *err);
/* Closes the store; every transaction must have ended. */
void crm_store_close(crm_store *s);

const crm_schema *crm_store_schema(const crm_store *s);
/* Last committed seq (0 when the feed has never had a change). */
uint64_t crm_store_last_seq(const crm_store *s);
/* Current map size in bytes (grows on demand). */
size_t crm_store_map_size(const crm_store *s);
/* Now, on the store's clock (ms since the epoch). */
int64_t crm_store_now(const crm_store *s);
/* The time of the last committed batch (ms; 0 for a new store): a clock
 * that runs faster for tests restarts from here so it never goes back. */
int64_t crm_store_last_commit_ms(const crm_store *s);

/* ---- writes ---- */

typedef enum crm_op { CRM_OP_CREATE = 1, CRM_OP_UPDATE = 2, CRM_OP_DELETE = 3 } crm_op;
const char *crm_op_name(crm_op op); /* "create", "update", "delete" */

typedef struct crm_write {
    /* request: borrowed, valid through crm_store_apply */
    crm_op op;
    const char *coll;
    const char *id;         /* create: optional (server makes one); else required */
    const crm_value *data;  /* create: the record; update: the patch (nil removes a field) */
    int64_t if_rev;         /* update/delete: CONFLICT unless the record is at this rev; 0 = any */
    /* result: filled by the store; release with crm_write_clear */
    int rc;
    crm_err err;
    crm_value *details;     /* VALIDATION: {"fields": {...}}, else NULL */
    crm_value *result;      /* create/update: stored record; delete: {id, _rev} */
    uint64_t seq;           /* feed seq of this change */
} crm_write;

/* Frees a write's results (not its request) and resets them. */
void crm_write_clear(crm_write *w);

/* An all-or-nothing group: one request, or the ops of a `tx`. */
typedef struct crm_unit {
    crm_write *writes;      /* borrowed */
    size_t n;
    int rc;                 /* CRM_OK, or the first failing write's code */
    crm_err err;            /* that write's message */
    /* Instead of writes: work done by fn inside the unit's nested
     * transaction (the bus: after-hooks, timers, `call` methods).  fn
     * returns CRM_OK to keep its writes, or a code (err filled) to undo
     * them.  n must be 0. */
    int (*fn)(void *ud, crm_txn *t, crm_err *err);
    void *fn_ud;
    /* Who asked (borrowed, valid through crm_store_apply): the audit trail
     * and the feed name them for every write of the unit.  user is a token
     * id ("token:4f2a9c01b7e3"), never a token; NULL = "system". */
    const char *user, *role;
} crm_unit;

/* Applies units in one LMDB write transaction with one commit.  Each unit
 * runs in its own nested transaction: when one of its writes fails, none of
 * the unit's writes stay (their results are cleared, unit rc/err say why)
 * and the other units go on.  Returns CRM_OK when the batch committed (then
 * every unit with rc == CRM_OK is durable, unless opts.no_sync), or
 * UNAVAILABLE when it could not (disk full, map at its ceiling, I/O error):
 * then no unit is applied and every unit's rc says so.  On a full map the
 * reader slots of dead processes are cleared (their snapshots pin freed
 * pages), else the map is grown (doubling, up to map_max) when no read
 * transaction is open in this process, and the batch retried.
 * Write errors: BAD_REQUEST (unknown collection, bad id), NOT_FOUND,
 * CONFLICT (if_rev mismatch, unique index, id taken), VALIDATION (schema;
 * a ref to a missing record), REJECTED (a before-hook), UNAVAILABLE. */
int crm_store_apply(crm_store *s, crm_unit *units, size_t n, crm_err *err);

/* CRM_OK, or UNAVAILABLE (err says why) once a commit has failed with an
 * I/O error (anything but a full disk or map): after a failed fsync the
 * page cache no longer says what is on disk (Linux may drop the dirty pages
 * and report the error once), so the store refuses every later write and
 * the server must exit; reopening reads the truth from disk.  err may be
 * NULL.  A full disk or map is not a failure: writes resume once space
 * returns. */
int crm_store_failed(const crm_store *s, crm_err *err);

/* Flushes the data file: every batch committed so far is durable when it
 * returns CRM_OK (with opts.meta_async, the last commit's meta page needs
 * this or a later commit).  A failed flush is a failed store
 * (crm_store_failed): UNAVAILABLE. */
int crm_store_sync(crm_store *s, crm_err *err);
/* Commits made so far by this process (a batch with nothing to write makes
 * none): the writer tells by it whether a flush happened. */
uint64_t crm_store_commits(const crm_store *s);
/* Whether the store was opened with opts.meta_async. */
int crm_store_meta_async(const crm_store *s);

/* CRM_OK when the file of an opened LMDB environment holds every page its
 * meta page counts; BAD_REQUEST naming dir's data.mdb and both sizes when it
 * is shorter (a truncated copy).  LMDB maps the file and trusts the meta
 * page: a page past the end is a SIGBUS at the first read, not an error, so
 * an open of a copy (a backup: its pages are written end to end) checks this
 * first.  Not for a live store: pages freed in the transaction that made
 * them may lie past its end without being referenced. */
struct MDB_env;
int crm_store_env_whole(struct MDB_env *env, const char *dir, crm_err *err);

/* Convenience: one unit of one write, committed alone. */
int crm_store_write1(crm_store *s, crm_write *w);

/* ---- before-hooks ---- */

/* What a before-hook sees.  record is the validated record about to be
 * stored (create/update; NULL for delete) and may be changed in place; it is
 * validated again afterwards.  prev is the stored record (update/delete) or
 * NULL.  Borrowed: valid during the call. */
typedef struct crm_change {
    const char *coll;
    crm_op op;
    const char *id;
    crm_value *record;
    const crm_value *prev;
    int depth;              /* 0 for a client write, +1 per hook write below it */
} crm_change;

/* Called for every write inside its nested transaction t; it may read and
 * write through t (crm_txn_write): those writes belong to the same unit.
 * Return CRM_OK to go on, or an error code with err filled (REJECTED for a
 * refusal) to fail the write. */
typedef int (*crm_before_fn)(void *ud, crm_txn *t, crm_change *ch, crm_err *err);
void crm_store_set_before(crm_store *s, crm_before_fn fn, void *ud);

/* Hook writes nest at most this deep (SCRIPT_ERROR past it). */
#define CRM_MAX_HOOK_DEPTH 16

/* Sets who the writes made in t (and its nested transactions) are for:
 * the bus uses it so after-hook writes are attributed to the client whose
 * change triggered them; kernel ops run as function units use it so their
 * writes are not marked as a method's.  Borrowed: must outlive t's writes. */
void crm_txn_set_actor(crm_txn *t, const char *user, const char *role);
/* Who t writes for (as crm_txn_set_actor or the unit set it); NULL: the
 * system.  Borrowed. */
void crm_txn_actor(const crm_txn *t, const char **user, const char **role);

/* Runs fn(ud, child, err) in a nested transaction of write transaction t:
 * kept when fn returns CRM_OK, undone otherwise (and then t is as it was).
 * depth >= 0 sets the hook depth of the writes fn makes (-1 keeps t's). */
int crm_txn_nest(crm_txn *t, int depth, int (*fn)(void *ud, crm_txn *child, crm_err *err),
                 void *ud, crm_err *err);
/* Hook depth of t (0 for a client's write). */
int crm_txn_depth(const crm_txn *t);
/* The time of t's batch (one clock reading per batch), ms. */
int64_t crm_txn_now(const crm_txn *t);
/* Seq of the last change written in t so far (committed or not). */
uint64_t crm_txn_last_seq(const crm_txn *t);

/* Performs one write inside a write transaction t (a hook's transaction), in
 * a nested transaction of its own so a failure leaves t as it was.  Fills w's
 * results like crm_store_apply; returns w->rc. */
int crm_txn_write(crm_txn *t, crm_write *w);

/* ---- reads ---- */

/* A read transaction: a consistent snapshot until crm_txn_end. */
int crm_store_begin_read(crm_store *s, crm_txn **out, crm_err *err);
/* The last seq committed as of t's snapshot (a read txn sees every change
 * up to it and none after): where a subscription's pushes must start. */
uint64_t crm_txn_snapshot_seq(crm_txn *t);

/* Takes the map for the calling thread alone (the writer, to grow the map
 * or swap the file after a compaction): new read txns of this process
 * wait, and this waits up to timeout_ms for the open ones to end.  0 =
 * taken (end it with crm_store_exclusive_end), -1 = readers stayed open.
 * The caller must hold no read txn of its own. */
int crm_store_exclusive_begin(crm_store *s, int timeout_ms);
void crm_store_exclusive_end(crm_store *s);

/* Ends a read transaction (a write transaction is ended by apply). */
void crm_txn_end(crm_txn *t);
crm_store *crm_txn_store(crm_txn *t);

/* The record; caller owns *out.  NOT_FOUND when absent ("contacts/c_9 does
 * not exist"), BAD_REQUEST for an unknown collection. */
int crm_txn_get(crm_txn *t, const char *coll, const char *id, crm_value **out, crm_err *err);
/* The stored msgpack bytes, borrowed: valid until the txn ends or its next
 * write (lmdb.h's MDB_val rule). */
int crm_txn_get_raw(crm_txn *t, const char *coll, const char *id, const void **buf,
                    size_t *len, crm_err *err);
/* Number of records in a collection. */
int crm_txn_count(crm_txn *t, const char *coll, uint64_t *out, crm_err *err);

/* Checks that every index of every collection agrees with the records (one
 * entry per record per index, each under the record's current value) and that
 * the feed has no gap between its oldest and newest entry.  For tests, the
 * crash test and operators; reads everything.  CRM_OK or INTERNAL naming the
 * first disagreement. */
int crm_store_verify(crm_store *s, crm_err *err);

/* ---- privacy: erasure and compaction (docs/privacy.md) ---- */

/* Erases the personal fields (schema option "personal") of coll/id inside
 * write transaction t, without before-hooks or validation (a hook may not
 * veto an erasure): each present personal field is removed, a required
 * string one gets the placeholder "[erased]".  The record's _rev moves on;
 * the feed gets an update entry (its prev scrubbed too) and the audit an
 * "erase" entry naming the fields.  *nfields (may be NULL): fields erased
 * (0: nothing to do, nothing written).  NOT_FOUND, BAD_REQUEST, UNAVAILABLE. */
int crm_txn_erase(crm_txn *t, const char *coll, const char *id, size_t *nfields, crm_err *err);

/* Rewrites every retained feed entry of the records colls[i]/ids[i] (i < n)
 * in write transaction t with the personal fields of their collection
 * scrubbed from "record" and "prev".  *rewritten: entries changed. */
int crm_feed_scrub(crm_txn *t, const char *const *colls, const char *const *ids, size_t n,
                   uint64_t *rewritten, crm_err *err);

/* Rewrites the data file as a compacted copy (mdb_env_copy2 with
 * MDB_CP_COMPACT), swaps it in and reopens the environment, so bytes LMDB
 * kept in free pages (erased values) leave the data folder.  Only between
 * batches with no read transaction open in this process (BUSY-like
 * CONFLICT otherwise: try again later); the store handle, its collections
 * and every seq stay valid.  Another process with the folder open during
 * the swap keeps the old file: run it while crmd is the only user.
 * UNAVAILABLE when the copy or the reopen failed (the store is then closed
 * for writes if the reopen failed). */
int crm_store_compact(crm_store *s, crm_err *err);
/* Removes a copy a killed compaction left in dir (called by open). */
void crm_store_compact_cleanup(const char *dir);

/* ---- auxiliary tables ----
 * Small key-value tables beside the collections for kernel modules (tokens
 * today).  Names: CRM_AUX_TOKENS.  Each put is its own durable commit (not
 * part of a group): these are rare administrative writes, possibly from
 * another process (crmd token create) while a server runs. */
#define CRM_AUX_TOKENS "tokens"
#define CRM_AUX_CURSORS "cursors"       /* after-hook consumer name -> be64 seq */
#define CRM_AUX_TIMERS "timers"         /* be64 due ms | be64 n -> msgpack timer */
#define CRM_AUX_TIMER_KEYS "timer_keys" /* timer NUL key -> timers key */
/* *val is borrowed (lmdb.h's rule).  NOT_FOUND when absent. */
int crm_txn_aux_get(crm_txn *t, const char *table, const void *key, size_t klen,
                    const void **val, size_t *vlen, crm_err *err);
/* Inside write transaction t (part of its batch).  val NULL deletes
 * (NOT_FOUND when absent). */
int crm_txn_aux_put(crm_txn *t, const char *table, const void *key, size_t klen,
                    const void *val, size_t vlen, crm_err *err);
/* Calls fn for each entry with key >= from (from NULL: the first), in key
 * order, until fn returns non-zero or max entries (0 = all).  Key and value
 * are borrowed during the call; fn must not write to t. */
int crm_txn_aux_scan(crm_txn *t, const char *table, const void *from, size_t flen, size_t max,
                     int (*fn)(void *ud, const void *k, size_t kl, const void *v, size_t vl),
                     void *ud, crm_err *err);
/* val NULL deletes (NOT_FOUND when absent). */
int crm_store_aux_put(crm_store *s, const char *table, const void *key, size_t klen,
                      const void *val, size_t vlen, crm_err *err);

/* ---- queries (query.c) ---- */

typedef struct crm_query {
    const char *coll;
    const crm_value *where;   /* NULL or a map: field -> value | {op: value} */
    const char *order_by;     /* NULL = id; "-field" = descending */
    size_t limit;             /* 0 = default 100; more than 1000 is BAD_REQUEST */
    const char *after;        /* cursor from a previous page, or NULL */
} crm_query;

#define CRM_QUERY_DEFAULT_LIMIT 100
#define CRM_QUERY_MAX_LIMIT 1000

/* Runs q.  *records is a new array of records (caller owns); *next is a new
 * cursor string (caller frees) or NULL on the last page.  The cursor is the
 * sort position of the last record, so paging stays correct (no repeats, no
 * skips of records that stay put) while writes go on.  Errors: BAD_REQUEST
 * (bad where / order_by / cursor / limit, unknown field in a strict
 * collection). */
int crm_txn_query(crm_txn *t, const crm_query *q, crm_value **records, char **next,
                  crm_err *err);

/* Aggregates over the records matching where: metrics are "count",
 * "sum:F", "min:F", "max:F", "avg:F".  *groups is a new array of maps
 * {"key": group value (nil without group_by), "count": n, "sum:F": ...}
 * sorted by key.  Errors: BAD_REQUEST, TOO_LARGE (more than 100000 groups). */
int crm_txn_aggregate(crm_txn *t, const char *coll, const crm_value *where,
                      const char *group_by, const char *const *metrics, size_t nmetrics,
                      crm_value **groups, crm_err *err);

/* A where compiled once for repeated matching (subscriptions match every
 * committed change).  It borrows where, which must outlive it.  Errors as
 * crm_txn_query's for a bad where (BAD_REQUEST). */
typedef struct crm_filter crm_filter;
int crm_filter_compile(const crm_collection *c, const crm_value *where, crm_filter **out,
                       crm_err *err);
/* True when rec matches (an empty where matches everything). */
int crm_filter_match(const crm_filter *f, const crm_value *rec);
void crm_filter_free(crm_filter *f);

/* ---- change feed (feed.c) ---- */

typedef struct crm_feed_entry {
    uint64_t seq;
    int64_t ts;               /* commit-batch time, ms */
    const char *coll;
    crm_op op;
    const char *id;
    int64_t rev, prev_rev;    /* prev_rev 0 on create */
    const crm_value *record;  /* the record after; NULL for delete */
    const crm_value *prev;    /* the record before; NULL for create */
    int depth;                /* hook depth of the write (0: a client's) */
    const char *user, *role;  /* who caused it (audit.h); NULL: the system */
    /* The decoded entry that coll, id, record and prev live in.  A callback
     * may keep it: take *owner and set *owner = NULL; it then frees it with
     * crm_value_free when done. */
    crm_value **owner;
} crm_feed_entry;

/* Calls fn for every retained entry with seq > since, in order, at most max
 * (0 = all); fn returns non-zero to stop.  Entries are borrowed during the
 * call.  CONFLICT (details resync) when since is older than the oldest
 * retained entry; *last_out (may be NULL) gets the last seq visited. */
int crm_feed_read(crm_txn *t, uint64_t since, size_t max,
                  int (*fn)(void *ud, const crm_feed_entry *e), void *ud, uint64_t *last_out,
                  crm_err *err);
/* crm_feed_read, but entries for which want(ud, coll, op) is 0 are passed
 * over without being decoded (their header is peeked); max counts the
 * entries given to fn, and at most 16 * max are looked at. */
int crm_feed_read_where(crm_txn *t, uint64_t since, size_t max,
                        int (*want)(void *ud, const char *coll, crm_op op),
                        int (*fn)(void *ud, const crm_feed_entry *e), void *ud,
                        uint64_t *last_out, crm_err *err);
/* Retention never drops entries after floor (the slowest after-hook
 * consumer's cursor); UINT64_MAX = no floor (the default). */
void crm_store_set_feed_floor(crm_store *s, uint64_t floor);
/* Oldest retained seq (0 when empty) and last seq in this snapshot. */
int crm_feed_bounds(crm_txn *t, uint64_t *first, uint64_t *last, crm_err *err);

#endif
