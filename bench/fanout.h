/* fanout -- the fan-out measurement bench_ws and bench_peers share: one
 * writer thread creates the contacts "f<k>" at a fixed rate (one in flight),
 * every subscriber notes when each of them reached it, and the figures come
 * from those times.  The connections stay the caller's (a WebSocket conn, a
 * peer's pconn): it gives the writer's blocking create and a view of its
 * subscribers as callbacks.  A broken invariant dies (bench_die). */
#ifndef CRM_BENCH_FANOUT_H
#define CRM_BENCH_FANOUT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* What one subscriber received; got_at (owned here, fan_rx_free) holds the
 * receipt time of each write, 0 = not yet. */
typedef struct fan_rx {
    int64_t *got_at;
    uint64_t npush, dups, others;
} fan_rx;

/* Makes r ready for nwrites writes. */
void fan_rx_init(fan_rx *r, int nwrites);
void fan_rx_free(fan_rx *r);
/* Write k came at now: its first receipt, a duplicate, or (k out of range)
 * some other message. */
void fan_rx_note(fan_rx *r, int nwrites, uint64_t k, int64_t now);

/* The writer's create k, blocking: 0 when acknowledged, else -1 with err
 * filled in (cap bytes), and *gone set when its connection is closed (the
 * writer then stops). */
typedef int fan_create_fn(void *ud, int k, char *err, size_t cap, int *gone);

typedef struct fan_writer {
    int nwrites;
    int64_t t0, interval;
    /* written by the writer thread, read once it is done */
    int64_t *t_send, *t_ack;
    int *ack_ok;
    int acked, errors;
    char first_err[200];
    atomic_int done;
    fan_create_fn *create;
    void *ud;
    pthread_t th;
} fan_writer;

/* rate creates a second for secs seconds through create(ud, ...). */
void fan_writer_init(fan_writer *f, double rate, double secs, fan_create_fn *create, void *ud);
/* Starts the thread: create k leaves at now + delay_ns + k / rate (later when
 * the previous ack was late). */
void fan_writer_start(fan_writer *f, int64_t delay_ns);
void fan_writer_join(fan_writer *f);
void fan_writer_free(fan_writer *f);

/* Subscriber i of the caller's set: its receipts, and *closed whether its
 * connection is gone. */
typedef fan_rx *fan_sub_fn(void *subs, int i, int *closed);

/* After the writer is done: 1 when every open subscriber has every
 * acknowledged write, or when 5 s passed since the first call that saw the
 * writer done (*done_at, 0 at first); else 0 (keep reading). */
int fan_settled(const fan_writer *f, fan_sub_fn *sub, void *subs, int nsubs, int64_t now,
                int64_t *done_at);

/* The figures of a fan-out, in ms: commit->receipt (from the writer reading
 * its ack; a receipt before the ack counts 0, in negative), send->receipt,
 * and the writer's ack latency; over the acknowledged writes only. */
typedef struct fan_stats {
    int writes, acked;
    uint64_t expected, received, missing, dups, others, negative, write_errors;
    double rate, p50, p99, p999, max, s50, s99, s999, ack50, ack99;
} fan_stats;

void fan_stats_compute(const fan_writer *f, fan_sub_fn *sub, void *subs, int nsubs,
                       fan_stats *out);

#endif
