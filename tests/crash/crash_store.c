/*
 * crash_store -- proves that CRM_OK from crm_store_apply means "on disk": a
 * write the store acknowledged survives a SIGKILL of the writing process, with
 * its index entries and its feed entry, and a batch is all or nothing.
 *
 * How.  Each cycle the parent forks a child that opens the store with real
 * fsync (no_sync = 0) and commits batches as fast as it can: 1..64 units that
 * each create one "items" record (client-chosen id, unique tag, two indexes),
 * plus one unit that increments counters/ctr (guarded by if_rev, so a lost
 * update would show as a CONFLICT).  Only after crm_store_apply returns CRM_OK
 * does the child report every write of the batch (id, seq, counter value) to
 * the parent over a pipe, one fixed-size record per write(2).  The parent
 * SIGKILLs the child 20-150 ms after the fork, reopens the store itself and
 * checks:
 *   - crm_store_verify: every index agrees with the records, the feed has no
 *     gap between its oldest and newest entry, meta's last seq is the feed's;
 *   - every acknowledged record is present with exactly the content written,
 *     and its feed entry sits at the acknowledged seq;
 *   - the feed since the cycle began is exactly whole batches in order
 *     (creates then the counter update), gap-free, each entry's record equal
 *     to what was written: no batch is partly there;
 *   - the records of the first batch missing from the feed are all absent, the
 *     record count is what the committed batches explain, and the counter is
 *     the last acknowledged value or (when the batch in flight committed but
 *     was not yet acknowledged) that + 1.
 * The next cycle runs on the same data folder.  Batch sizes and record
 * contents are a function of (seed, cycle, batch, index), so the parent knows
 * what every write held without shipping it through the pipe, and a failing
 * seed (CRM_CRASH_SEED) replays the same writes (the kill moments differ).
 *
 * To keep every cycle's full verification cheap, the parent re-checks the
 * previous cycle's records (they have now survived a second kill) and deletes
 * them, so the store stays at about two cycles of records; the feed is capped
 * (feed_max_bytes) so retention trimming also runs under the kills.
 *
 * What it cannot prove: SIGKILL leaves the OS page cache intact, so this shows
 * the commit ordering and LMDB's recovery, not that fsync reached the disk
 * (reliability-plan.md R2, R3 cover that).
 *
 * Env: CRM_CRASH_CYCLES (default 100), CRM_CRASH_SEED (default from the clock).
 * Exit 0 when every cycle passed; 1 with a message naming the cycle, the seed
 * and the first disagreement (the data folder is then kept for inspection).
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "schema.h"
#include "store.h"
#include "testutil.h"
#include "tmpdir.h"

#define DEFAULT_CYCLES 100
#define KILL_MIN_MS 20
#define KILL_MAX_MS 150
#define MAX_BATCH 64
#define FEED_MAX_BYTES ((uint64_t)16 << 20) /* trims under the kills, far above one cycle (~2 MB) */

static const char ITEMS_JSON[] =
    "{\"collection\": \"items\", \"strict\": true, \"fields\": {"
    " \"n\":       {\"type\": \"int\", \"index\": true},"
    " \"tag\":     {\"type\": \"string\", \"index\": \"unique\"},"
    " \"payload\": {\"type\": \"string\"}}}";
static const char COUNTERS_JSON[] =
    "{\"collection\": \"counters\", \"fields\": {\"value\": {\"type\": \"int\"}}}";

/* ---- the ack record: what the child says the store acknowledged ---- */

#define ACK_MAGIC 0x43524b41u /* "AKRC": a torn or shifted record cannot pass */
enum { ACK_ITEM = 1, ACK_COUNTER = 2 };

/* 64 bytes, far below PIPE_BUF, so each write(2) lands whole or not at all;
 * the parent still copes with a partial tail. */
typedef struct crash_ack {
    uint32_t magic;
    uint32_t kind;
    uint32_t batch, index; /* the write's place: batch number, unit in it */
    uint64_t seq;          /* the feed seq crm_store_apply reported */
    int64_t value;         /* ACK_COUNTER: the counter after this batch */
    char id[32];
} crash_ack;

/* ---- deterministic workload: everything is a function of the seed ---- */

static uint64_t mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

enum { SALT_SIZE = 1, SALT_ITEM = 2 };

static uint64_t hash_at(uint64_t seed, uint32_t cycle, uint32_t batch, uint32_t i, uint32_t salt)
{
    return mix64(seed ^ mix64(((uint64_t)salt << 56) ^ ((uint64_t)cycle << 32) ^
                              ((uint64_t)batch << 8) ^ i));
}

static uint32_t batch_size(uint64_t seed, uint32_t cycle, uint32_t batch)
{
    return 1 + (uint32_t)(hash_at(seed, cycle, batch, 0, SALT_SIZE) % MAX_BATCH);
}

static void item_id(char *out, size_t n, uint32_t cycle, uint32_t batch, uint32_t i)
{
    snprintf(out, n, "b%" PRIu32 "_%" PRIu32 "_%" PRIu32, cycle, batch, i);
}

/* The record written as item (cycle, batch, i): n repeats often (the plain
 * index holds many equal values), tag is unique, and one record in 16 is
 * 2.5-4 KB so LMDB overflow pages are also written when the kill lands. */
static crm_value *item_make(uint64_t seed, uint32_t cycle, uint32_t batch, uint32_t i)
{
    static const char alpha[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -";
    uint64_t h = hash_at(seed, cycle, batch, i, SALT_ITEM), p = h;
    size_t len = ((h >> 16) & 15) == 0 ? 2500 + (size_t)((h >> 24) % 1500) : (size_t)((h >> 24) % 300);
    char tag[80], *payload = malloc(len + 1);
    crm_value *m = crm_value_map();
    if (!payload || !m) {
        fprintf(stderr, "crash_store: out of memory\n");
        abort();
    }
    for (size_t k = 0; k < len; k++) {
        p = mix64(p);
        payload[k] = alpha[p % (sizeof alpha - 1)];
    }
    payload[len] = 0;
    snprintf(tag, sizeof tag, "t%" PRIu32 "_%" PRIu32 "_%" PRIu32 "_%016" PRIx64, cycle, batch,
             i, h);
    if (crm_map_set(m, "n", crm_value_int((int64_t)(h % 1000) - 500)) != 0 ||
        crm_map_set(m, "tag", crm_value_cstr(tag)) != 0 ||
        crm_map_set(m, "payload", crm_value_str(payload, len)) != 0) {
        fprintf(stderr, "crash_store: out of memory\n");
        abort();
    }
    free(payload);
    return m;
}

/* Empty string when rec is exactly the item written under id (its fields plus
 * the system fields of a first revision); else what differs, in why. */
static const char *item_diff(const crm_value *rec, const char *id, const crm_value *want,
                             char *why, size_t n)
{
    const crm_value *v;
    why[0] = 0;
    if (!rec || rec->type != CRM_T_MAP) {
        snprintf(why, n, "not a map");
        return why;
    }
    for (size_t k = 0; k < want->u.map.n; k++) {
        const crm_kv *kv = &want->u.map.kv[k];
        if (!(v = crm_map_get(rec, kv->key)) || !crm_value_equal(v, kv->val)) {
            snprintf(why, n, "field %s differs from what was written", kv->key);
            return why;
        }
    }
    if (strcmp(crm_map_str(rec, "id", ""), id) != 0)
        snprintf(why, n, "id is \"%s\"", crm_map_str(rec, "id", ""));
    else if (crm_map_int(rec, "_rev", 0) != 1)
        snprintf(why, n, "_rev is %" PRId64 ", not 1", crm_map_int(rec, "_rev", 0));
    else if (!(v = crm_map_get(rec, "_created")) || v->type != CRM_T_INT ||
             crm_map_int(rec, "_updated", -1) != v->u.i)
        snprintf(why, n, "_created/_updated missing or unequal");
    else if (rec->u.map.n != want->u.map.n + 4)
        snprintf(why, n, "has %zu fields, expected %zu", rec->u.map.n, want->u.map.n + 4);
    return why;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void store_opts(crm_store_opts *o)
{
    crm_store_opts_default(o);
    o->no_sync = 0; /* the point of the test: real fsync on every commit */
    o->feed_max_bytes = FEED_MAX_BYTES;
}

/* What the parent knows between cycles; the child reads it through fork. */
typedef struct run {
    uint64_t seed;
    char *data, *sdir;
    crm_schema *schema;
    /* state after the previous cycle, as the parent verified it */
    int64_t counter;      /* counters/ctr value */
    uint64_t seq;         /* crm_store_last_seq */
    uint64_t count;       /* items records */
    uint32_t prev_cycle;  /* the previous cycle, whose records are still there */
    uint32_t prev_nb;     /* how many of its batches committed */
    int have_prev;
    /* figures for the summary */
    uint64_t acked_total, committed_total, batches_total, max_seq, inflight_committed;
    uint64_t no_ack_cycles;
    uint64_t feed_first;  /* oldest retained feed seq after the last cycle */
    int64_t reopen_ns_sum, reopen_ns_max;
    char msg[1024];       /* first failure */
} run;

/* ---- the child: writes until killed ---- */

static void child_fail(uint32_t cycle, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
static void child_fail(uint32_t cycle, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "crash_store child, cycle %" PRIu32 ": ", cycle);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    _exit(3); /* no atexit handlers: they belong to the parent */
}

static void write_all(uint32_t cycle, int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            child_fail(cycle, "write to the parent: %s", strerror(errno));
        p += w;
        n -= (size_t)w;
    }
}

static void child_main(const run *r, uint32_t cycle, int fd) __attribute__((noreturn));
static void child_main(const run *r, uint32_t cycle, int fd)
{
    crm_store *s;
    crm_store_opts o;
    crm_txn *t;
    crm_value *ctr, *data[MAX_BATCH + 1];
    crm_write w[MAX_BATCH + 1];
    crm_unit u[MAX_BATCH + 1];
    char ids[MAX_BATCH][32];
    crm_err err;
    int64_t value, rev;

    store_opts(&o);
    if (crm_store_open(r->data, r->schema, &o, &s, &err) != CRM_OK)
        child_fail(cycle, "open: %s", err.msg);
    if (crm_store_begin_read(s, &t, &err) != CRM_OK ||
        crm_txn_get(t, "counters", "ctr", &ctr, &err) != CRM_OK)
        child_fail(cycle, "reading counters/ctr: %s", err.msg);
    value = crm_map_int(ctr, "value", -1);
    rev = crm_map_int(ctr, "_rev", 0);
    crm_value_free(ctr);
    crm_txn_end(t);
    /* What a fresh opener sees must be what the parent saw before closing. */
    if (value != r->counter)
        child_fail(cycle, "counters/ctr is %" PRId64 " at open, the parent left %" PRId64, value,
                   r->counter);

    for (uint32_t b = 0;; b++) {
        uint32_t n = batch_size(r->seed, cycle, b);
        memset(w, 0, sizeof w);
        for (uint32_t i = 0; i < n; i++) {
            item_id(ids[i], sizeof ids[i], cycle, b, i);
            data[i] = item_make(r->seed, cycle, b, i);
            w[i].op = CRM_OP_CREATE;
            w[i].coll = "items";
            w[i].id = ids[i];
            w[i].data = data[i];
        }
        data[n] = crm_value_map();
        if (!data[n] || crm_map_set(data[n], "value", crm_value_int(value + 1)) != 0)
            child_fail(cycle, "out of memory");
        w[n].op = CRM_OP_UPDATE;
        w[n].coll = "counters";
        w[n].id = "ctr";
        w[n].data = data[n];
        w[n].if_rev = rev;
        for (uint32_t i = 0; i <= n; i++) {
            memset(&u[i], 0, sizeof u[i]);
            u[i].writes = &w[i];
            u[i].n = 1;
        }
        if (crm_store_apply(s, u, n + 1, &err) != CRM_OK)
            child_fail(cycle, "batch %" PRIu32 " did not commit: %s", b, err.msg);
        for (uint32_t i = 0; i <= n; i++)
            if (u[i].rc != CRM_OK)
                child_fail(cycle, "batch %" PRIu32 " unit %" PRIu32 " failed: %s %s", b, i,
                           crm_code_name(u[i].rc), u[i].err.msg);
        value++;
        rev = crm_map_int(w[n].result, "_rev", 0);
        /* Only now, after the commit (and its fsync) returned: the acks. */
        for (uint32_t i = 0; i <= n; i++) {
            crash_ack a;
            memset(&a, 0, sizeof a);
            a.magic = ACK_MAGIC;
            a.kind = i < n ? ACK_ITEM : ACK_COUNTER;
            a.batch = b;
            a.index = i;
            a.seq = w[i].seq;
            a.value = i < n ? 0 : value;
            snprintf(a.id, sizeof a.id, "%s", i < n ? ids[i] : "ctr");
            write_all(cycle, fd, &a, sizeof a);
        }
        for (uint32_t i = 0; i <= n; i++) {
            crm_write_clear(&w[i]);
            crm_value_free(data[i]);
        }
    }
}

/* ---- the parent: kill, reopen, verify ---- */

static int fail(run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(run *r, const char *fmt, ...)
{
    va_list ap;
    if (r->msg[0])
        return -1; /* keep the first failure: later ones are usually its echo */
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof r->msg, fmt, ap);
    va_end(ap);
    return -1;
}

typedef struct ackbuf {
    char *p;
    size_t len, cap;
} ackbuf;

static int read_some(run *r, int fd, ackbuf *b, int *eof)
{
    ssize_t n;
    if (b->cap - b->len < 4096) {
        size_t cap = b->cap ? b->cap * 2 : 65536;
        char *p = realloc(b->p, cap);
        if (!p)
            return fail(r, "out of memory reading acks");
        b->p = p;
        b->cap = cap;
    }
    n = read(fd, b->p + b->len, b->cap - b->len);
    if (n < 0 && errno == EINTR)
        return 0;
    if (n < 0)
        return fail(r, "reading acks: %s", strerror(errno));
    if (n == 0)
        *eof = 1;
    b->len += (size_t)n;
    return 0;
}

/* Runs one child for kill_ms, collecting its acks, then SIGKILLs and reaps it.
 * 0 when the child died of our SIGKILL. */
static int run_child(run *r, uint32_t cycle, int kill_ms, ackbuf *acks)
{
    int fds[2], status, eof = 0;
    pid_t pid, parent;
    int64_t deadline;

    if (pipe(fds) != 0)
        return fail(r, "pipe: %s", strerror(errno));
    fflush(NULL); /* or the child's copy of stdio buffers could print twice */
    parent = getpid();
    pid = fork();
    if (pid < 0)
        return fail(r, "fork: %s", strerror(errno));
    if (pid == 0) {
        crm_test_die_with_parent(parent); /* a killed test leaves no writer behind */
        close(fds[0]);
        child_main(r, cycle, fds[1]);
    }
    close(fds[1]);
    deadline = now_ns() + (int64_t)kill_ms * 1000000;
    /* Drain while it runs: a full pipe would stall the writer. */
    while (!eof) {
        int64_t left = (deadline - now_ns()) / 1000000;
        struct pollfd pf = {fds[0], POLLIN, 0};
        if (left <= 0)
            break;
        if (poll(&pf, 1, (int)left) <= 0)
            continue;
        if (left > 3) /* let acks gather: one wake-up per ack would slow the writer */
            usleep(2000);
        if (read_some(r, fds[0], acks, &eof) != 0)
            break;
    }
    kill(pid, SIGKILL);
    while (!eof && !r->msg[0])
        if (read_some(r, fds[0], acks, &eof) != 0)
            break;
    close(fds[0]);
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return fail(r, "waitpid: %s", strerror(errno));
    if (r->msg[0])
        return -1;
    if (WIFEXITED(status))
        return fail(r, "the writer exited by itself (status %d) before the kill at %d ms; "
                       "see its message above", WEXITSTATUS(status), kill_ms);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
        return fail(r, "the writer died of signal %d, not SIGKILL",
                    WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    return 0;
}

/* State of the walk over the feed entries one cycle wrote. */
typedef struct walk {
    run *r;
    crm_txn *t;
    uint32_t cycle;
    uint64_t expect_seq;
    uint32_t batch, index, size; /* position: the next entry is (batch, index) */
    uint64_t *seq0;              /* seq of each batch's first entry */
    size_t seq0_cap;
    int failed;
} walk;

static int walk_entry(void *ud, const crm_feed_entry *e)
{
    walk *w = ud;
    run *r = w->r;
    char id[32], why[160];
    if (e->seq != w->expect_seq) {
        fail(r, "feed gap: expected seq %" PRIu64 ", next entry is %" PRIu64, w->expect_seq,
             e->seq);
        return w->failed = 1;
    }
    w->expect_seq++;
    if (w->index == 0) {
        if (w->batch >= w->seq0_cap) {
            size_t cap = w->seq0_cap ? w->seq0_cap * 2 : 1024;
            uint64_t *p = realloc(w->seq0, cap * sizeof *p);
            if (!p) {
                fail(r, "out of memory");
                return w->failed = 1;
            }
            w->seq0 = p;
            w->seq0_cap = cap;
        }
        w->seq0[w->batch] = e->seq;
        w->size = batch_size(r->seed, w->cycle, w->batch);
    }
    if (w->index < w->size) {
        crm_value *want;
        item_id(id, sizeof id, w->cycle, w->batch, w->index);
        if (strcmp(e->coll, "items") != 0 || e->op != CRM_OP_CREATE || strcmp(e->id, id) != 0 ||
            e->rev != 1 || e->prev_rev != 0) {
            fail(r, "feed seq %" PRIu64 " is %s %s/%s rev %" PRId64 ", expected create items/%s",
                 e->seq, crm_op_name(e->op), e->coll, e->id, e->rev, id);
            return w->failed = 1;
        }
        want = item_make(r->seed, w->cycle, w->batch, w->index);
        if (*item_diff(e->record, id, want, why, sizeof why)) {
            fail(r, "feed seq %" PRIu64 " (create items/%s): record %s", e->seq, id, why);
            w->failed = 1;
        }
        crm_value_free(want);
        w->index++;
    } else {
        int64_t want = r->counter + w->batch + 1;
        if (strcmp(e->coll, "counters") != 0 || e->op != CRM_OP_UPDATE ||
            strcmp(e->id, "ctr") != 0 || !e->record ||
            crm_map_int(e->record, "value", -1) != want) {
            fail(r, "feed seq %" PRIu64 " is %s %s/%s (value %" PRId64 "), expected the counter "
                    "update of batch %" PRIu32 " to %" PRId64,
                 e->seq, crm_op_name(e->op), e->coll, e->id,
                 e->record ? crm_map_int(e->record, "value", -1) : -1, w->batch, want);
            return w->failed = 1;
        }
        w->batch++;
        w->index = 0;
    }
    return w->failed;
}

/* Checks that item (cycle, batch, i) is stored exactly as written. */
static int check_item(run *r, crm_txn *t, uint32_t cycle, uint32_t batch, uint32_t i,
                      const char *what)
{
    char id[32], why[160];
    crm_value *rec, *want;
    crm_err err;
    int rc;
    item_id(id, sizeof id, cycle, batch, i);
    if ((rc = crm_txn_get(t, "items", id, &rec, &err)) != CRM_OK)
        return fail(r, "%s items/%s is missing (%s: %s)", what, id, crm_code_name(rc), err.msg);
    want = item_make(r->seed, cycle, batch, i);
    item_diff(rec, id, want, why, sizeof why);
    crm_value_free(want);
    crm_value_free(rec);
    if (why[0])
        return fail(r, "%s items/%s: %s", what, id, why);
    return 0;
}

/* Everything the parent checks after the kill of cycle `cycle`. */
static int verify_cycle(run *r, crm_store *s, uint32_t cycle, const crash_ack *acks, size_t nacks)
{
    crm_txn *t = NULL;
    crm_err err;
    crm_value *ctr = NULL;
    walk w;
    uint64_t count, expect_count = r->count, last_seq = crm_store_last_seq(s);
    int64_t value, last_acked_value = r->counter;
    uint32_t nb, pos_b = 0, pos_i = 0;
    int rc = -1;

    memset(&w, 0, sizeof w);
    if (crm_store_verify(s, &err) != CRM_OK)
        return fail(r, "crm_store_verify: %s", err.msg);
    if (crm_store_begin_read(s, &t, &err) != CRM_OK)
        return fail(r, "read transaction: %s", err.msg);

    /* 1. Every acknowledgement, against the records.  Acks arrive in write
     * order, so the k-th ack must be the k-th write: none lost in the pipe. */
    for (size_t k = 0; k < nacks; k++) {
        const crash_ack *a = &acks[k];
        char id[32];
        if (a->magic != ACK_MAGIC)
            { fail(r, "ack %zu is garbled (magic %08" PRIx32 ")", k, a->magic); goto out; }
        if (a->batch != pos_b || a->index != pos_i)
            { fail(r, "ack %zu is for write %" PRIu32 ".%" PRIu32 ", expected %" PRIu32
                      ".%" PRIu32, k, a->batch, a->index, pos_b, pos_i); goto out; }
        if (pos_i < batch_size(r->seed, cycle, pos_b)) {
            item_id(id, sizeof id, cycle, a->batch, a->index);
            if (a->kind != ACK_ITEM || strcmp(a->id, id) != 0)
                { fail(r, "ack %zu names \"%.31s\", expected items/%s", k, a->id, id); goto out; }
            if (check_item(r, t, cycle, a->batch, a->index, "LOST: acknowledged") != 0)
                goto out;
            pos_i++;
        } else {
            if (a->kind != ACK_COUNTER || a->value != r->counter + a->batch + 1)
                { fail(r, "ack %zu: counter ack of batch %" PRIu32 " says %" PRId64
                          ", expected %" PRId64, k, a->batch, a->value,
                          r->counter + a->batch + 1); goto out; }
            last_acked_value = a->value;
            pos_b++;
            pos_i = 0;
        }
    }
    if (crm_txn_get(t, "counters", "ctr", &ctr, &err) != CRM_OK)
        { fail(r, "LOST: counters/ctr: %s", err.msg); goto out; }
    value = crm_map_int(ctr, "value", -1);
    if (value < last_acked_value)
        { fail(r, "LOST: counters/ctr is %" PRId64 ", but %" PRId64 " was acknowledged", value,
               last_acked_value); goto out; }
    if (value > last_acked_value + 1)
        { fail(r, "counters/ctr is %" PRId64 ", more than one batch past the last "
                  "acknowledged %" PRId64, value, last_acked_value); goto out; }
    if (crm_map_int(ctr, "_rev", 0) != value + 1)
        { fail(r, "counters/ctr is at rev %" PRId64 " with value %" PRId64 " (a lost update?)",
               crm_map_int(ctr, "_rev", 0), value); goto out; }

    /* 2. The feed since the cycle began: whole batches, in order, gap-free. */
    w.r = r;
    w.t = t;
    w.cycle = cycle;
    w.expect_seq = r->seq + 1;
    if (crm_feed_read(t, r->seq, 0, walk_entry, &w, NULL, &err) != CRM_OK)
        { fail(r, "crm_feed_read since %" PRIu64 ": %s", r->seq, err.msg); goto out; }
    if (w.failed)
        goto out;
    {
        uint64_t last;
        if (crm_feed_bounds(t, &r->feed_first, &last, &err) != CRM_OK)
            { fail(r, "crm_feed_bounds: %s", err.msg); goto out; }
    }
    if (w.index != 0)
        { fail(r, "batch %" PRIu32 " is only partly in the feed (%" PRIu32 " of %" PRIu32
                  " creates, no counter update): a batch must commit whole", w.batch, w.index,
               w.size); goto out; }
    if (w.expect_seq - 1 != last_seq)
        { fail(r, "the feed ends at %" PRIu64 " but the store's last seq is %" PRIu64,
               w.expect_seq - 1, last_seq); goto out; }
    nb = w.batch;
    if (value != r->counter + nb)
        { fail(r, "counters/ctr is %" PRId64 " but the feed holds %" PRIu32 " batches since %"
                  PRId64, value, nb, r->counter); goto out; }
    /* Acknowledged batches are committed; at most the one in flight more. */
    if (nb < pos_b + (pos_i > 0) || nb > pos_b + 1)
        { fail(r, "%" PRIu32 " batches in the feed, but acks cover %" PRIu32 " whole + %" PRIu32
                  " writes of the next", nb, pos_b, pos_i); goto out; }

    /* 3. Acked seqs are the feed's seqs for the same writes. */
    for (size_t k = 0; k < nacks; k++) {
        const crash_ack *a = &acks[k];
        uint64_t want = w.seq0[a->batch] + a->index; /* the counter comes after the creates */
        if (a->seq != want)
            { fail(r, "%s acknowledged at seq %" PRIu64 ", but the feed has it at %" PRIu64,
                   a->id, a->seq, want); goto out; }
    }

    /* 4. Every committed record as written; the first uncommitted batch absent. */
    for (uint32_t b = 0; b < nb; b++) {
        uint32_t n = batch_size(r->seed, cycle, b);
        for (uint32_t i = 0; i < n; i++)
            if (check_item(r, t, cycle, b, i, "committed") != 0)
                goto out;
        expect_count += n;
    }
    for (uint32_t i = 0, n = batch_size(r->seed, cycle, nb); i < n; i++) {
        char id[32];
        const void *buf;
        size_t len;
        item_id(id, sizeof id, cycle, nb, i);
        if (crm_txn_get_raw(t, "items", id, &buf, &len, &err) != CRM_NOT_FOUND)
            { fail(r, "items/%s exists, but its batch %" PRIu32 " is not in the feed", id, nb);
              goto out; }
    }
    if (crm_txn_count(t, "items", &count, &err) != CRM_OK)
        { fail(r, "count: %s", err.msg); goto out; }
    if (count != expect_count)
        { fail(r, "items holds %" PRIu64 " records, the committed batches explain %" PRIu64,
               count, expect_count); goto out; }

    r->acked_total += nacks;
    r->committed_total += expect_count - r->count + nb;
    r->batches_total += nb;
    r->inflight_committed += nb > pos_b;
    r->no_ack_cycles += nacks == 0;
    r->counter = value;
    r->count = expect_count;
    rc = 0;
out:
    crm_value_free(ctr);
    free(w.seq0);
    crm_txn_end(t);
    if (rc == 0) {
        /* remembered for the next cycle's re-check and clean-up */
        r->prev_cycle = cycle;
        r->prev_nb = nb;
        r->have_prev = 1;
    }
    return rc;
}

/* Re-checks the records of cycle prev (they have now survived a second kill)
 * and deletes them, so the store, and the cost of crm_store_verify, stays at
 * about two cycles of records however many cycles run. */
static int retire_cycle(run *r, crm_store *s, uint32_t prev, uint32_t nb)
{
    crm_txn *t;
    crm_err err;
    crm_write *w = NULL;
    crm_unit *u = NULL;
    char (*ids)[32] = NULL;
    size_t n = 0, k = 0;
    int rc = 0;

    for (uint32_t b = 0; b < nb; b++)
        n += batch_size(r->seed, prev, b);
    if (n == 0)
        return 0;
    if (crm_store_begin_read(s, &t, &err) != CRM_OK)
        return fail(r, "read transaction: %s", err.msg);
    for (uint32_t b = 0; b < nb && rc == 0; b++)
        for (uint32_t i = 0, m = batch_size(r->seed, prev, b); i < m && rc == 0; i++)
            rc = check_item(r, t, prev, b, i, "after a second kill, committed");
    crm_txn_end(t);
    if (rc != 0)
        return rc;
    w = calloc(n, sizeof *w);
    u = calloc(n, sizeof *u);
    ids = calloc(n, sizeof *ids);
    if (!w || !u || !ids) {
        rc = fail(r, "out of memory");
        goto out;
    }
    for (uint32_t b = 0; b < nb; b++)
        for (uint32_t i = 0, m = batch_size(r->seed, prev, b); i < m; i++, k++) {
            item_id(ids[k], sizeof ids[k], prev, b, i);
            w[k].op = CRM_OP_DELETE;
            w[k].coll = "items";
            w[k].id = ids[k];
            u[k].writes = &w[k];
            u[k].n = 1;
        }
    if (crm_store_apply(s, u, n, &err) != CRM_OK) {
        rc = fail(r, "deleting cycle %" PRIu32 "'s records: %s", prev, err.msg);
        goto out;
    }
    for (k = 0; k < n; k++)
        if (u[k].rc != CRM_OK) {
            rc = fail(r, "deleting items/%s: %s", ids[k], u[k].err.msg);
            break;
        }
    r->count -= n;
out:
    for (k = 0; w && k < n; k++)
        crm_write_clear(&w[k]);
    free(w);
    free(u);
    free(ids);
    return rc;
}

/* Opens the store (timed), verifies the cycle, retires the previous one. */
static int after_kill(run *r, uint32_t cycle, const ackbuf *b)
{
    crm_store *s;
    crm_store_opts o;
    crm_err err;
    int64_t t0 = now_ns(), dt;
    size_t nacks = b->len / sizeof(crash_ack);
    crash_ack *acks = NULL;
    uint32_t prev = r->prev_cycle, prev_nb = r->prev_nb;
    int had_prev = r->have_prev, rc;

    store_opts(&o);
    if (crm_store_open(r->data, r->schema, &o, &s, &err) != CRM_OK)
        return fail(r, "reopen after the kill: %s", err.msg);
    dt = now_ns() - t0;
    r->reopen_ns_sum += dt;
    if (dt > r->reopen_ns_max)
        r->reopen_ns_max = dt;
    /* A torn last record (killed inside write(2)) is not an ack: ignored. */
    if (nacks) {
        acks = malloc(nacks * sizeof *acks);
        if (!acks) {
            crm_store_close(s);
            return fail(r, "out of memory");
        }
        memcpy(acks, b->p, nacks * sizeof *acks); /* b->p need not be aligned for crash_ack */
    }
    rc = verify_cycle(r, s, cycle, acks, nacks);
    if (rc == 0 && had_prev)
        rc = retire_cycle(r, s, prev, prev_nb);
    if (rc == 0) {
        r->seq = crm_store_last_seq(s);
        if (r->seq > r->max_seq)
            r->max_seq = r->seq;
    }
    free(acks);
    crm_store_close(s);
    return rc;
}

/* First run: the counter record the children increment. */
static int seed_store(run *r)
{
    crm_store *s;
    crm_store_opts o;
    crm_err err;
    crm_value *data = crm_value_map();
    crm_write w;
    int rc;

    store_opts(&o);
    if (!data || crm_map_set(data, "value", crm_value_int(0)) != 0)
        return fail(r, "out of memory");
    if (crm_store_open(r->data, r->schema, &o, &s, &err) != CRM_OK) {
        crm_value_free(data);
        return fail(r, "open: %s", err.msg);
    }
    memset(&w, 0, sizeof w);
    w.op = CRM_OP_CREATE;
    w.coll = "counters";
    w.id = "ctr";
    w.data = data;
    rc = crm_store_write1(s, &w);
    if (rc != CRM_OK)
        fail(r, "creating counters/ctr: %s", w.err.msg);
    r->counter = 0;
    r->count = 0;
    r->seq = crm_store_last_seq(s);
    crm_write_clear(&w);
    crm_value_free(data);
    crm_store_close(s);
    return rc == CRM_OK ? 0 : -1;
}

static uint64_t env_u64(const char *name, uint64_t fallback)
{
    const char *v = getenv(name);
    char *end;
    unsigned long long x;
    if (!v || !*v)
        return fallback;
    errno = 0;
    x = strtoull(v, &end, 0);
    if (errno || *end) {
        fprintf(stderr, "crash_store: %s=\"%s\" is not a number\n", name, v);
        exit(1);
    }
    return x;
}

int main(void)
{
    run r;
    crm_err err;
    uint64_t cycles, rng;
    ackbuf acks = {NULL, 0, 0};
    int64_t t0 = now_ns();
    uint32_t c;

    memset(&r, 0, sizeof r);
    r.seed = env_u64("CRM_CRASH_SEED", mix64((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32)));
    cycles = env_u64("CRM_CRASH_CYCLES", DEFAULT_CYCLES);
    rng = r.seed;
    printf("crash_store: seed %" PRIu64 " (set CRM_CRASH_SEED to replay), %" PRIu64 " cycles\n",
           r.seed, cycles);

    r.sdir = crm_tmpdir_make("crash-schemas");
    crm_tmpdir_write(r.sdir, "items.json", ITEMS_JSON);
    crm_tmpdir_write(r.sdir, "counters.json", COUNTERS_JSON);
    if (crm_schema_load_dir(r.sdir, &r.schema, &err) != CRM_OK) {
        fprintf(stderr, "crash_store: schemas: %s\n", err.msg);
        return 1;
    }
    r.data = crm_tmpdir_make("crash-data");
    if (seed_store(&r) != 0) {
        fprintf(stderr, "crash_store: FAIL before the first cycle: %s\n", r.msg);
        return 1;
    }

    for (c = 0; c < cycles; c++) {
        int kill_ms;
        rng = mix64(rng);
        kill_ms = KILL_MIN_MS + (int)(rng % (KILL_MAX_MS - KILL_MIN_MS + 1));
        acks.len = 0;
        if (run_child(&r, c, kill_ms, &acks) != 0 || after_kill(&r, c, &acks) != 0) {
            fprintf(stderr,
                    "crash_store: FAIL in cycle %" PRIu32 " (kill at %d ms, seed %" PRIu64
                    "): %s\ncrash_store: data folder kept: %s\n",
                    c, kill_ms, r.seed, r.msg, r.data);
            return 1;
        }
    }

    printf("crash_store: PASS %" PRIu64 " cycles, %" PRIu64 " acked writes verified (%" PRIu64
           " committed writes in %" PRIu64 " batches; %" PRIu64 " kills left a committed batch "
           "not fully acked, %" PRIu64 " came before any ack), max seq %" PRIu64
           " (feed retained from %" PRIu64 "), reopen mean %.2f ms max %.2f ms, %.1f s\n",
           cycles, r.acked_total, r.committed_total, r.batches_total, r.inflight_committed,
           r.no_ack_cycles, r.max_seq, r.feed_first,
           cycles ? (double)r.reopen_ns_sum / (double)cycles / 1e6 : 0.0,
           (double)r.reopen_ns_max / 1e6, (double)(now_ns() - t0) / 1e9);
    free(acks.p);
    crm_schema_free(r.schema);
    crm_tmpdir_remove(r.data);
    crm_tmpdir_remove(r.sdir);
    return 0;
}
