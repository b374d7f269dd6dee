/* benchutil -- small helpers every benchmark would otherwise write again. */
#ifndef CRM_BENCH_UTIL_H
#define CRM_BENCH_UTIL_H

#include <stddef.h>

/* Prints "PROGRAM: message" on stderr and exits 1. */
void bench_die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
/* Seconds on the monotonic clock. */
double bench_now_s(void);
/* The median of v[0..n) (v is left as it was). */
double bench_median(const double *v, size_t n);
/* Writes text to dir/name, or dies. */
void bench_write_file(const char *dir, const char *name, const char *text);

#endif
