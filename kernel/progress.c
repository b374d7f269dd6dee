/*
 * progress -- see progress.h.  Writes only to stderr; never fails.
 */
#include "progress.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double crm_progress_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void crm_progress_init(crm_progress *p, const char *who, int on)
{
    memset(p, 0, sizeof *p);
    p->on = on;
    p->tty = isatty(2);
    p->who = who;
    p->phase = "";
    p->t0 = p->last = crm_progress_now();
}

void crm_progress_phase(crm_progress *p, const char *phase, uint64_t total)
{
    p->phase = phase;
    p->done = 0;
    p->total = total;
    p->t0 = p->last = crm_progress_now();
    p->shown = 0;
}

static void fmt_dur(char *out, size_t cap, double s)
{
    if (s < 0 || s > 1e7)
        snprintf(out, cap, "--:--");
    else if (s >= 3600)
        snprintf(out, cap, "%d:%02d:%02d", (int)s / 3600, (int)s / 60 % 60, (int)s % 60);
    else
        snprintf(out, cap, "%d:%02d", (int)s / 60, (int)s % 60);
}

static void fmt_amount(const crm_progress *p, char *out, size_t cap, uint64_t x)
{
    if (!p->bytes)
        snprintf(out, cap, "%" PRIu64, x);
    else if (x >= (1u << 20))
        snprintf(out, cap, "%.1f MiB", (double)x / (1u << 20));
    else
        snprintf(out, cap, "%.1f KiB", (double)x / 1024);
}

void crm_progress_show(crm_progress *p, int final)
{
    double now = crm_progress_now(), el = now - p->t0, rate = el > 0 ? (double)p->done / el : 0;
    char eta[32], elapsed[32], done[32], total[32], per[40];
    if (!p->on)
        return;
    if (!final && now - p->last < (p->tty ? 0.2 : 10.0))
        return;
    p->last = now;
    fmt_dur(elapsed, sizeof elapsed, el);
    fmt_dur(eta, sizeof eta, rate > 0 && p->total > p->done ? (double)(p->total - p->done) / rate
                                                             : (p->total ? 0 : -1));
    fmt_amount(p, done, sizeof done, p->done);
    fmt_amount(p, total, sizeof total, p->total);
    fmt_amount(p, per, sizeof per, (uint64_t)rate);
    if (p->tty) {
        char bar[33];
        int fill = p->total ? (int)(32.0 * (double)(p->done > p->total ? p->total : p->done) /
                                    (double)p->total)
                            : 0;
        for (int i = 0; i < 32; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[32] = '\0';
        fprintf(stderr, "\r\033[K%-8s [%s] %s/%s %s/s %s ETA %s%s%s", p->phase, bar, done,
                p->total ? total : "?", per, elapsed, eta, p->note[0] ? "  " : "", p->note);
        if (final)
            fputc('\n', stderr);
    } else {
        fprintf(stderr, "%s: %s %s/%s (%s/s, %s elapsed, ETA %s)%s%s%s\n", p->who, p->phase, done,
                p->total ? total : "?", per, elapsed, eta, p->note[0] ? " " : "", p->note,
                final ? " done" : "");
    }
    p->shown = 1;
    fflush(stderr);
}

void crm_progress_clear(crm_progress *p)
{
    if (p->on && p->tty && p->shown)
        fputs("\r\033[K", stderr);
}
