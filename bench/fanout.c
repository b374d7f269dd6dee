/* fanout -- see fanout.h. */
#include "fanout.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "benchutil.h"

void fan_rx_init(fan_rx *r, int nwrites)
{
    memset(r, 0, sizeof *r);
    r->got_at = bench_xcalloc((size_t)nwrites, sizeof *r->got_at);
}

void fan_rx_free(fan_rx *r)
{
    free(r->got_at);
    r->got_at = NULL;
}

void fan_rx_note(fan_rx *r, int nwrites, uint64_t k, int64_t now)
{
    if (k >= (uint64_t)nwrites) {
        r->others++;
    } else if (r->got_at[k]) {
        r->dups++;
    } else {
        r->got_at[k] = now;
        r->npush++;
    }
}

void fan_writer_init(fan_writer *f, double rate, double secs, fan_create_fn *create, void *ud)
{
    memset(f, 0, sizeof *f);
    f->nwrites = (int)(rate * secs + 0.5);
    f->interval = (int64_t)(1e9 / rate);
    f->t_send = bench_xcalloc((size_t)f->nwrites, sizeof *f->t_send);
    f->t_ack = bench_xcalloc((size_t)f->nwrites, sizeof *f->t_ack);
    f->ack_ok = bench_xcalloc((size_t)f->nwrites, sizeof *f->ack_ok);
    f->create = create;
    f->ud = ud;
    atomic_init(&f->done, 0);
}

/* Its own thread with a blocking connection, so that reading its ack is
 * never queued behind the subscribers' pushes in the caller's loop. */
static void *writer_main(void *arg)
{
    fan_writer *f = arg;
    for (int k = 0; k < f->nwrites; k++) {
        int64_t due = f->t0 + (int64_t)k * f->interval;
        struct timespec ts = {(time_t)(due / 1000000000), (long)(due % 1000000000)};
        char err[200] = "";
        int gone = 0;
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
        f->t_send[k] = bench_now_ns();
        if (f->create(f->ud, k, err, sizeof err, &gone) == 0) {
            f->t_ack[k] = bench_now_ns();
            f->ack_ok[k] = 1;
            f->acked++;
        } else {
            f->errors++;
            if (!f->first_err[0])
                snprintf(f->first_err, sizeof f->first_err, "%s", err);
            if (gone)
                break;
        }
    }
    atomic_store(&f->done, 1);
    return NULL;
}

void fan_writer_start(fan_writer *f, int64_t delay_ns)
{
    f->t0 = bench_now_ns() + delay_ns;
    if (pthread_create(&f->th, NULL, writer_main, f) != 0)
        bench_die("pthread_create failed");
}

void fan_writer_join(fan_writer *f)
{
    pthread_join(f->th, NULL);
}

void fan_writer_free(fan_writer *f)
{
    free(f->t_send);
    free(f->t_ack);
    free(f->ack_ok);
    f->t_send = f->t_ack = NULL;
    f->ack_ok = NULL;
}

int fan_settled(const fan_writer *f, fan_sub_fn *sub, void *subs, int nsubs, int64_t now,
                int64_t *done_at)
{
    if (!atomic_load(&f->done))
        return 0;
    if (!*done_at)
        *done_at = now;
    for (int i = 0; i < nsubs; i++) {
        int closed = 0;
        fan_rx *r = sub(subs, i, &closed);
        if (!closed && r->npush < (uint64_t)f->acked)
            return now - *done_at > 5 * (int64_t)1000000000;
    }
    return 1;
}

void fan_stats_compute(const fan_writer *f, fan_sub_fn *sub, void *subs, int nsubs,
                       fan_stats *fr)
{
    size_t cap = (size_t)nsubs * (size_t)f->nwrites, nl = 0, ns = 0, na = 0;
    int64_t *lat = bench_xmalloc(cap * sizeof *lat), *slat = bench_xmalloc(cap * sizeof *slat),
            *alat = bench_xmalloc((size_t)f->nwrites * sizeof *alat);
    memset(fr, 0, sizeof *fr);
    fr->writes = f->nwrites;
    fr->acked = f->acked;
    fr->write_errors = (uint64_t)f->errors;
    if (f->nwrites > 1)
        fr->rate = (f->nwrites - 1) / ((double)(f->t_send[f->nwrites - 1] - f->t_send[0]) / 1e9);
    for (int k = 0; k < f->nwrites; k++)
        if (f->ack_ok[k])
            alat[na++] = f->t_ack[k] - f->t_send[k];
    for (int i = 0; i < nsubs; i++) {
        int closed = 0;
        const fan_rx *r = sub(subs, i, &closed);
        fr->dups += r->dups;
        fr->others += r->others;
        for (int k = 0; k < f->nwrites; k++) {
            if (!f->ack_ok[k])
                continue;
            fr->expected++;
            if (!r->got_at[k]) {
                fr->missing++;
                continue;
            }
            fr->received++;
            int64_t d = r->got_at[k] - f->t_ack[k];
            if (d < 0) { /* read before the writer read its ack */
                fr->negative++;
                d = 0;
            }
            lat[nl++] = d;
            slat[ns++] = r->got_at[k] - f->t_send[k];
        }
    }
    qsort(lat, nl, sizeof *lat, bench_cmp_i64);
    qsort(slat, ns, sizeof *slat, bench_cmp_i64);
    qsort(alat, na, sizeof *alat, bench_cmp_i64);
    fr->p50 = bench_pct_ms(lat, nl, 0.5);
    fr->p99 = bench_pct_ms(lat, nl, 0.99);
    fr->p999 = bench_pct_ms(lat, nl, 0.999);
    fr->max = nl ? (double)lat[nl - 1] / 1e6 : NAN;
    fr->s50 = bench_pct_ms(slat, ns, 0.5);
    fr->s99 = bench_pct_ms(slat, ns, 0.99);
    fr->s999 = bench_pct_ms(slat, ns, 0.999);
    fr->ack50 = bench_pct_ms(alat, na, 0.5);
    fr->ack99 = bench_pct_ms(alat, na, 0.99);
    free(lat);
    free(slat);
    free(alat);
}
