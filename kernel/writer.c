/*
 * writer -- the write transaction on a thread of its own (writer.h).
 */
#include "writer.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crashguard.h"

const double crm_writer_commit_bounds[12] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                             0.01,   0.025,   0.05,   0.1,   0.5,    1.0};

struct pend;

typedef struct job {
    struct job *next;
    void (*fn)(void *ud);
    void *ud;
} job;

struct crm_writer {
    crm_store *s;
    crm_bus *bus;
    void (*wake)(void *ud);
    void *wake_ud;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;      /* the writer waits here for work */
    pthread_cond_t idle_cond; /* drain waits here for the queue to empty */
    /* under lock */
    crm_wsub *qh, *qt;        /* submitted, not yet taken by the writer */
    crm_wsub *dh, *dt;        /* done, not yet taken by the loop */
    job *jh, *jt;
    size_t in_flight;         /* submitted and not yet done */
    int stop;
    crm_writer_stats st;
    int meta_async;
    crm_unit *units;            /* writer thread: the batch's units, reused */
    size_t ucap;
    /* the syncer (meta_async stores only) */
    pthread_t syncer;
    int has_syncer;
    pthread_cond_t sync_cond;   /* the syncer waits here for batches */
    pthread_cond_t sync_idle;   /* sync_drain waits here */
    struct pend *st_head, *st_tail; /* under lock: committed, not yet flushed */
    int syncing, sync_stop;     /* under lock */
    size_t awaiting;            /* under lock: submissions queued at the syncer */
    _Atomic uint64_t covered_seq; /* durable through a later commit's flush */
    _Atomic uint64_t durable_seq; /* durable and handed back: may be pushed */
};

static double secs_between(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

static void note_batch(crm_writer_stats *st, size_t nwrites, double secs)
{
    int b = 0;
    st->batches++;
    st->batch_writes += nwrites;
    st->commit_sum_s += secs;
    while (b < 11 && (size_t)1 << b < nwrites)
        b++;
    st->batch_hist[b]++;
    for (b = 0; b < 11 && secs > crm_writer_commit_bounds[b]; b++)
        ;
    st->commit_hist[b]++;
}

static void sync_drain(crm_writer *w);

/* One batch: every queued submission's units (in queue order) plus the
 * bus's round when it has work, in one commit. */
static void run_batch(crm_writer *w, crm_wsub *subs)
{
    size_t total = 0, nwrites = 0, at = 0;
    crm_unit *units;
    crm_err err;
    struct timespec t0, t1;
    int rc;

    for (crm_wsub *x = subs; x; x = x->next) {
        total += x->n;
        nwrites += x->nwrites;
    }
    if (total + 1 > w->ucap) { /* grow-only: a large calloc per batch showed in profiles */
        crm_unit *nu = realloc(w->units, (total + 1) * sizeof *nu);
        if (nu) {
            w->units = nu;
            w->ucap = total + 1;
        }
    }
    if (total + 1 > w->ucap) {
        for (crm_wsub *x = subs; x; x = x->next) {
            crm_err_set(&x->err, CRM_UNAVAILABLE, "out of memory");
            x->rc = CRM_UNAVAILABLE;
            for (size_t i = 0; i < x->n; i++) {
                x->units[i].rc = CRM_UNAVAILABLE;
                x->units[i].err = x->err;
            }
        }
        return;
    }
    units = w->units;
    memset(units, 0, (total + 1) * sizeof *units); /* +1: the bus's unit */
    for (crm_wsub *x = subs; x; x = x->next) {
        memcpy(units + at, x->units, x->n * sizeof *units);
        at += x->n;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (w->bus)
        rc = crm_bus_apply(w->bus, units, total, NULL, &err);
    else if (total)
        rc = crm_store_apply(w->s, units, total, &err);
    else {
        rc = CRM_OK;
        crm_err_clear(&err);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    at = 0;
    for (crm_wsub *x = subs; x; x = x->next) {
        memcpy(x->units, units + at, x->n * sizeof *units);
        at += x->n;
        x->rc = rc;
        x->err = err;
    }
    if (rc == CRM_OK)
        for (crm_wsub *x = subs; x; x = x->next)
            if (x->after_commit) {
                /* an erasure's batch: one bus round first, so that a plugin
                 * keeping copies of records in memory (the webhooks worker's
                 * deliveries) hears of the erasure before its reply */
                if (w->bus && crm_bus_next_work_ms(w->bus) == 0) {
                    crm_unit room[1]; /* the round's own unit goes here */
                    crm_err ignored;
                    (void)crm_bus_apply(w->bus, room, 0, NULL, &ignored);
                }
                /* the after-commit work (a compaction, which reopens the
                 * environment) sees a durable batch and no flush running */
                if (w->meta_async) {
                    sync_drain(w);
                    if (crm_store_sync(w->s, &err) != CRM_OK)
                        break;
                    atomic_store(&w->covered_seq, crm_store_last_seq(w->s));
                }
                x->after_commit(x);
            }
    if (total) {
        pthread_mutex_lock(&w->lock);
        note_batch(&w->st, nwrites, secs_between(&t0, &t1));
        pthread_mutex_unlock(&w->lock);
    }
}

static void publish_bus_stats(crm_writer *w)
{
    crm_bus_stats bs;
    uint64_t seq = crm_store_last_seq(w->s);
    if (!w->bus)
        return;
    crm_bus_stats_get(w->bus, &bs);
    pthread_mutex_lock(&w->lock);
    w->st.bus = bs;
    w->st.bus_seq = seq;
    pthread_mutex_unlock(&w->lock);
}

/* Waits (lock held) until there is a submission, a job, a stop, or the bus
 * has work now. */
static void wait_for_work(crm_writer *w)
{
    while (!w->qh && !w->jh && !w->stop) {
        int64_t ms = w->bus ? crm_bus_next_work_ms(w->bus) : -1;
        if (crm_store_failed(w->s, NULL) != CRM_OK)
            ms = -1; /* a failed store: wait to be stopped */
        else if (ms == 0)
            return;
        if (ms < 0) {
            pthread_cond_wait(&w->cond, &w->lock);
        } else {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += ms / 1000;
            until.tv_nsec += (ms % 1000) * 1000000;
            if (until.tv_nsec >= 1000000000) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000;
            }
            if (pthread_cond_timedwait(&w->cond, &w->lock, &until) == ETIMEDOUT &&
                !w->qh && !w->jh && !w->stop)
                return; /* the bus's work is due (next_work_ms says so again) */
        }
    }
}

static size_t list_len(const crm_wsub *x)
{
    size_t k = 0;
    for (; x; x = x->next)
        k++;
    return k;
}

static void list_append(crm_wsub **h, crm_wsub **t, crm_wsub *x)
{
    crm_wsub *last = x;
    if (!x)
        return;
    while (last->next)
        last = last->next;
    if (*t)
        (*t)->next = x;
    else
        *h = x;
    *t = last;
}

/* a, then b: one list */
static crm_wsub *concat(crm_wsub *a, crm_wsub *b)
{
    crm_wsub *t = a;
    if (!a)
        return b;
    while (t->next)
        t = t->next;
    t->next = b;
    return a;
}

/* Hands subs back to the loop (lock held); returns whether it did. */
static int hand_back(crm_writer *w, crm_wsub *subs)
{
    size_t k = list_len(subs);
    if (!k)
        return 0;
    list_append(&w->dh, &w->dt, subs);
    w->in_flight -= k;
    if (!w->in_flight)
        pthread_cond_broadcast(&w->idle_cond);
    return 1;
}

/* A flush could not make committed batches durable: the store has failed
 * (the server exits), and none of their writes may be acknowledged. */
static void fail_undurable(crm_wsub *subs, const crm_err *why)
{
    for (crm_wsub *x = subs; x; x = x->next) {
        x->rc = CRM_UNAVAILABLE;
        x->err = *why;
        x->outcome_unknown = 1;
        for (size_t i = 0; i < x->n; i++) {
            x->units[i].rc = CRM_UNAVAILABLE;
            x->units[i].err = *why;
        }
    }
}

/* ---- the syncer: the flush that makes a meta_async commit durable ----
 *
 * After the writer commits batch K (its data pages flushed, its meta page
 * written but not flushed) it queues K here and goes on with batch K+1.
 * The syncer flushes the file (K's meta page is then on disk) and hands
 * K's submissions back: the second flush of a commit leaves the writer's
 * path and overlaps with the next batch's work.  When the writer's next
 * commit has already flushed (covered_seq), the syncer's flush is skipped:
 * under load one flush per batch.  Entries are taken in order, so replies
 * keep the order of the batches. */

typedef struct pend {
    struct pend *next;
    crm_wsub *subs;   /* may be NULL (a bus round: changes to push) */
    uint64_t seq;     /* the store's last seq after this batch */
    int committed;    /* 0: the batch failed; its subs keep their errors */
} pend;

/* Queues a batch for the syncer (writer thread).  0, or -1 on OOM (then
 * the caller flushes itself). */
static int sync_push(crm_writer *w, crm_wsub *subs, uint64_t seq, int committed)
{
    pend *p = malloc(sizeof *p);
    if (!p)
        return -1;
    p->next = NULL;
    p->subs = subs;
    p->seq = seq;
    p->committed = committed;
    pthread_mutex_lock(&w->lock);
    if (w->st_tail)
        w->st_tail->next = p;
    else
        w->st_head = p;
    w->st_tail = p;
    w->awaiting += list_len(subs);
    pthread_cond_signal(&w->sync_cond);
    pthread_mutex_unlock(&w->lock);
    return 0;
}

/* Flushes unless a commit already did (covered_seq >= seq); returns
 * CRM_OK or the failed flush's code (err filled). */
static int make_durable(crm_writer *w, uint64_t seq, crm_err *err)
{
    if (atomic_load(&w->covered_seq) >= seq) {
        pthread_mutex_lock(&w->lock);
        w->st.flushes_skipped++;
        pthread_mutex_unlock(&w->lock);
        return CRM_OK;
    }
    pthread_mutex_lock(&w->lock);
    w->st.flushes_own++;
    pthread_mutex_unlock(&w->lock);
    return crm_store_sync(w->s, err);
}

/* Makes everything up to seq durable (make_durable), then hands subs back
 * and wakes the loop; when the flush failed, the subs of committed batches
 * get no reply (fail_undurable).  Syncer thread, or the writer when it
 * flushes itself.  The lock is not held. */
static void flush_and_hand_back(crm_writer *w, uint64_t seq, pend *list)
{
    crm_wsub *done = NULL;
    crm_err err;
    int rc = make_durable(w, seq, &err);
    if (rc == CRM_OK && seq > atomic_load(&w->durable_seq))
        atomic_store(&w->durable_seq, seq);
    for (pend *p = list; p; p = p->next) {
        if (rc != CRM_OK && p->committed)
            fail_undurable(p->subs, &err);
        done = concat(done, p->subs);
    }
    pthread_mutex_lock(&w->lock);
    hand_back(w, done);
    pthread_mutex_unlock(&w->lock);
    w->wake(w->wake_ud); /* acks to send, changes to push */
}

static void *syncer_main(void *ud)
{
    crm_writer *w = ud;
    pthread_setname_np(pthread_self(), "crmd-sync");
    pthread_mutex_lock(&w->lock);
    for (;;) {
        pend *batch, *p;
        uint64_t seq = 0;
        size_t n = 0;
        while (!w->st_head && !w->sync_stop)
            pthread_cond_wait(&w->sync_cond, &w->lock);
        if (!w->st_head)
            break;
        batch = w->st_head;
        w->st_head = w->st_tail = NULL;
        w->syncing = 1;
        pthread_mutex_unlock(&w->lock);

        for (p = batch; p; p = p->next) {
            seq = p->seq > seq ? p->seq : seq;
            n += list_len(p->subs);
        }
        flush_and_hand_back(w, seq, batch);
        while (batch) {
            p = batch;
            batch = p->next;
            free(p);
        }

        pthread_mutex_lock(&w->lock);
        w->awaiting -= n;
        w->syncing = 0;
        pthread_cond_broadcast(&w->sync_idle);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* Waits until the syncer has nothing queued or running (writer thread:
 * before a compaction reopens the environment under it). */
static void sync_drain(crm_writer *w)
{
    pthread_mutex_lock(&w->lock);
    while (w->st_head || w->syncing)
        pthread_cond_wait(&w->sync_idle, &w->lock);
    pthread_mutex_unlock(&w->lock);
}

static void *writer_main(void *ud)
{
    crm_writer *w = ud;
    void *altstack = crm_crashguard_thread_init();
    pthread_setname_np(pthread_self(), "crmd-writer"); /* top -H, perf, gdb */
    pthread_mutex_lock(&w->lock);
    for (;;) {
        crm_wsub *subs;
        job *jobs;
        uint64_t seq0, commits0;
        int committed;
        wait_for_work(w);
        if (w->stop && !w->qh && !w->jh)
            break;
        jobs = w->jh;
        w->jh = w->jt = NULL;
        subs = w->qh;
        w->qh = w->qt = NULL;
        pthread_mutex_unlock(&w->lock);

        while (jobs) {
            job *j = jobs;
            jobs = j->next;
            j->fn(j->ud);
            free(j);
        }
        seq0 = crm_store_last_seq(w->s);
        commits0 = crm_store_commits(w->s);
        if (subs || (w->bus && !w->stop && crm_bus_next_work_ms(w->bus) == 0))
            run_batch(w, subs);
        publish_bus_stats(w);
        committed = crm_store_commits(w->s) != commits0;
        if (!w->meta_async) {
            /* every commit flushed its meta page: durable on return */
            atomic_store(&w->durable_seq, crm_store_last_seq(w->s));
            pthread_mutex_lock(&w->lock);
            if (hand_back(w, subs) || crm_store_last_seq(w->s) != seq0) {
                pthread_mutex_unlock(&w->lock);
                w->wake(w->wake_ud); /* acks to send, changes to push */
                pthread_mutex_lock(&w->lock);
            }
            continue;
        }
        if (committed) /* its flush carried every earlier commit's meta page */
            atomic_store(&w->covered_seq, seq0);
        if (subs || committed) {
            /* after the syncer's flush (or a later commit's); a failed
             * batch goes the same way, so that replies keep their order.
             * With nothing else to do, the writer flushes itself: handing
             * over to the syncer would only add a thread's wake-up to the
             * reply's latency (one client, one request at a time). */
            int idle;
            pthread_mutex_lock(&w->lock);
            idle = !w->qh && !w->jh && !w->st_head && !w->syncing;
            pthread_mutex_unlock(&w->lock);
            if (idle && w->bus && crm_bus_next_work_ms(w->bus) == 0)
                idle = 0; /* after-hooks to run: they overlap with the syncer's flush */
            if (idle || sync_push(w, subs, crm_store_last_seq(w->s), committed) != 0) {
                pend self = {NULL, subs, crm_store_last_seq(w->s), committed};
                sync_drain(w); /* replies keep their order */
                flush_and_hand_back(w, self.seq, &self);
            }
        }
        pthread_mutex_lock(&w->lock);
    }
    pthread_mutex_unlock(&w->lock);
    crm_crashguard_thread_done(altstack);
    return NULL;
}

/* The bus asks from within a round whether client writes wait behind it
 * (writer thread; the loop may be adding to the queue). */
static int clients_waiting(void *ud)
{
    crm_writer *w = ud;
    int waiting;
    pthread_mutex_lock(&w->lock);
    waiting = w->qh != NULL || w->jh != NULL;
    pthread_mutex_unlock(&w->lock);
    return waiting;
}

static void stop_syncer(crm_writer *w)
{
    if (!w->has_syncer)
        return;
    pthread_mutex_lock(&w->lock);
    w->sync_stop = 1;
    pthread_cond_signal(&w->sync_cond);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->syncer, NULL);
    w->has_syncer = 0;
}

static void destroy(crm_writer *w)
{
    while (w->jh) { /* posted after the stop: never ran */
        job *j = w->jh;
        w->jh = j->next;
        free(j);
    }
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    pthread_cond_destroy(&w->idle_cond);
    pthread_cond_destroy(&w->sync_cond);
    pthread_cond_destroy(&w->sync_idle);
    free(w->units);
    free(w);
}

int crm_writer_start(crm_store *s, crm_bus *b, void (*wake)(void *ud), void *wake_ud,
                     crm_writer **out, crm_err *err)
{
    crm_writer *w = calloc(1, sizeof *w);
    int rc;
    *out = NULL;
    if (!w)
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    w->s = s;
    w->bus = b;
    w->wake = wake;
    w->wake_ud = wake_ud;
    w->st.has_bus = b != NULL;
    w->meta_async = crm_store_meta_async(s);
    atomic_init(&w->durable_seq, crm_store_last_seq(s));
    atomic_init(&w->covered_seq, crm_store_last_seq(s));
    w->st.bus_seq = crm_store_last_seq(s);
    if (b)
        crm_bus_stats_get(b, &w->st.bus);
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    pthread_cond_init(&w->idle_cond, NULL);
    pthread_cond_init(&w->sync_cond, NULL);
    pthread_cond_init(&w->sync_idle, NULL);
    if (w->meta_async && (rc = pthread_create(&w->syncer, NULL, syncer_main, w)) != 0) {
        destroy(w);
        return crm_err_set(err, CRM_UNAVAILABLE, "syncer thread: %s", strerror(rc));
    }
    w->has_syncer = w->meta_async;
    if (b)
        crm_bus_set_clients_waiting(b, clients_waiting, w);
    if ((rc = pthread_create(&w->thread, NULL, writer_main, w)) != 0) {
        if (b)
            crm_bus_set_clients_waiting(b, NULL, NULL);
        stop_syncer(w);
        destroy(w);
        return crm_err_set(err, CRM_UNAVAILABLE, "writer thread: %s", strerror(rc));
    }
    *out = w;
    return CRM_OK;
}

void crm_writer_submit(crm_writer *w, crm_wsub *sub)
{
    sub->next = NULL;
    pthread_mutex_lock(&w->lock);
    if (w->qt)
        w->qt->next = sub;
    else
        w->qh = sub;
    w->qt = sub;
    w->in_flight++;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

int crm_writer_post(crm_writer *w, void (*fn)(void *ud), void *ud)
{
    job *j = calloc(1, sizeof *j);
    if (!j)
        return -1;
    j->fn = fn;
    j->ud = ud;
    pthread_mutex_lock(&w->lock);
    if (w->jt)
        w->jt->next = j;
    else
        w->jh = j;
    w->jt = j;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return 0;
}

crm_wsub *crm_writer_take_done(crm_writer *w)
{
    crm_wsub *d;
    pthread_mutex_lock(&w->lock);
    d = w->dh;
    w->dh = w->dt = NULL;
    pthread_mutex_unlock(&w->lock);
    return d;
}

uint64_t crm_writer_durable_seq(crm_writer *w)
{
    return atomic_load(&w->durable_seq);
}

size_t crm_writer_in_flight(crm_writer *w)
{
    size_t n;
    pthread_mutex_lock(&w->lock);
    n = w->in_flight;
    pthread_mutex_unlock(&w->lock);
    return n;
}

void crm_writer_stats_get(crm_writer *w, crm_writer_stats *st)
{
    pthread_mutex_lock(&w->lock);
    *st = w->st;
    st->in_flight = w->in_flight;
    st->awaiting_flush = w->awaiting;
    pthread_mutex_unlock(&w->lock);
}

void crm_writer_drain(crm_writer *w)
{
    pthread_mutex_lock(&w->lock);
    while (w->in_flight)
        pthread_cond_wait(&w->idle_cond, &w->lock);
    pthread_mutex_unlock(&w->lock);
}

void crm_writer_stop(crm_writer *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->stop = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    if (w->bus)
        crm_bus_set_clients_waiting(w->bus, NULL, NULL);
    stop_syncer(w); /* after the writer: it flushes what the writer's last batches left */
    destroy(w);
}
