/*
 * writer -- the thread that owns the LMDB write transaction, so that the
 * event loop never waits on the disk.
 *
 * The loop collects requests into submissions and hands each over with
 * crm_writer_submit, then goes on reading, answering reads and pushing.
 * The writer takes every submission queued since it last looked and
 * applies them as one batch (crm_bus_apply: their units, then the bus's
 * due after-hooks and timers; one commit), then hands each submission back
 * (crm_writer_take_done) and wakes the loop, which acknowledges it: a
 * submission comes back only once its commit is durable.  While a batch
 * commits, the next one gathers in the queue.
 *
 * Flushes: over a store opened with meta_async (MDB_NOMETASYNC) a commit
 * flushes its data pages and writes its meta page without a flush of its
 * own.  The writer then queues the batch for the syncer thread and goes on
 * with the next one; the syncer flushes the file (the meta page is then on
 * disk) and hands the batch back.  So the second flush of a commit is off
 * the writer's path, overlapping the next batch's work, and when the next
 * commit's own flush got there first the syncer skips it.  A read on the
 * loop may see batch K before it is durable (a power loss could still take
 * it back); acknowledgements and pushes never do (crm_writer_durable_seq).

 * With nothing submitted the writer still runs the bus: after-hooks behind
 * the feed, retries and timers as they fall due.  Jobs (a script reload, a
 * compaction) run on the writer between two batches, so scripts and plugins
 * are only ever called from the writer thread, one call at a time.
 *
 * Threads: crm_writer_start, submit, post, take_done, stats and stop are
 * for the loop thread (one thread); the submissions' units, after_commit and
 * jobs run on the writer thread.
 */
#ifndef CRM_WRITER_H
#define CRM_WRITER_H

#include "bus.h"
#include "store.h"

typedef struct crm_writer crm_writer;

/* One submission: units applied in one batch with whatever else is queued. */
typedef struct crm_wsub {
    crm_unit *units;   /* borrowed until handed back; n of them */
    size_t n;
    size_t nwrites;    /* client writes in the units (metrics) */
    /* result: the batch's crm_store_apply code (each unit has its own) */
    int rc;
    crm_err err;
    /* Set when the batch committed but the flush that was to make it
     * durable failed: whether it is on disk is unknown (the store has
     * failed and the server stops), so it gets no reply, as after a crash;
     * a client must not read UNAVAILABLE ("not written") into it. */
    int outcome_unknown;
    /* Runs on the writer once the batch committed (rc CRM_OK), before the
     * submission is handed back: work that needs the writer's side (a
     * compaction after an erasure).  May be NULL. */
    void (*after_commit)(struct crm_wsub *sub);
    void *ud;          /* the submitter's */
    struct crm_wsub *next; /* the writer's queue link */
} crm_wsub;

/* Upper bounds (seconds) of the commit-time histogram buckets. */
extern const double crm_writer_commit_bounds[12];

typedef struct crm_writer_stats {
    uint64_t batches;          /* commits of client writes */
    uint64_t batch_writes;     /* client writes in them */
    uint64_t batch_hist[12];   /* writes per commit: <= 1, 2, 4 ... 1024, more */
    uint64_t commit_hist[12];  /* seconds per commit, crm_writer_commit_bounds */
    double commit_sum_s;
    int has_bus;
    crm_bus_stats bus;         /* as of the last batch (taken on the writer) */
    uint64_t bus_seq;          /* the store's last seq when bus was taken */
    size_t in_flight;          /* submissions handed over, not yet handed back */
    size_t awaiting_flush;     /* of them: committed, waiting for the flush that
                                * makes them durable (commit-flushes = 1) */
    uint64_t flushes_own;      /* the syncer's flushes (crm_store_sync) */
    uint64_t flushes_skipped;  /* syncer turns a later commit's flush had covered */
} crm_writer_stats;

/* Starts the writer thread over store s and bus b (b may be NULL: no
 * hooks).  wake(wake_ud) is called from the writer thread whenever a
 * submission is done or a bus round committed changes; it must be safe to
 * call from another thread (lws_cancel_service is).  Borrowed: s, b,
 * wake_ud must outlive the writer. */
int crm_writer_start(crm_store *s, crm_bus *b, void (*wake)(void *ud), void *wake_ud,
                     crm_writer **out, crm_err *err);
/* Queues sub (borrowed until crm_writer_take_done returns it). */
void crm_writer_submit(crm_writer *w, crm_wsub *sub);
/* Runs fn(ud) on the writer thread before the next batch (a script
 * reload, a compaction).  -1 on OOM. */
int crm_writer_post(crm_writer *w, void (*fn)(void *ud), void *ud);
/* The submissions done since the last call, oldest first (linked by next),
 * or NULL. */
crm_wsub *crm_writer_take_done(crm_writer *w);
/* The last seq known durable: changes up to it may be pushed.  Any thread. */
uint64_t crm_writer_durable_seq(crm_writer *w);
/* Submissions handed over and not yet taken back. */
size_t crm_writer_in_flight(crm_writer *w);
void crm_writer_stats_get(crm_writer *w, crm_writer_stats *st);
/* Finishes every queued submission and job, stops the thread and frees w.
 * Submissions done and not yet taken are lost to the caller: take them
 * first (crm_writer_drain). */
void crm_writer_stop(crm_writer *w);
/* Waits until every submission handed over is done (it can then be taken). */
void crm_writer_drain(crm_writer *w);

#endif
