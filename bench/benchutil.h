/* benchutil -- small helpers every benchmark would otherwise write again. */
#ifndef CRM_BENCH_UTIL_H
#define CRM_BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

/* Prints "PROGRAM: message" on stderr and exits 1. */
void bench_die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
/* Seconds on the monotonic clock. */
double bench_now_s(void);
/* Nanoseconds on the monotonic clock. */
int64_t bench_now_ns(void);
/* The median of v[0..n) (v is left as it was). */
double bench_median(const double *v, size_t n);
/* Writes text to dir/name, or dies. */
void bench_write_file(const char *dir, const char *name, const char *text);
/* The positive number in environment variable name (whole: an integer), or
 * fallback when it is unset or empty; dies on anything else. */
double bench_env_num(const char *name, double fallback, int whole);
/* A fixed pseudo-random sequence (splitmix64): runs ask for the same keys. */
uint64_t bench_rng(void);
/* malloc, calloc and realloc that die when memory runs out (never NULL). */
void *bench_xmalloc(size_t n);
void *bench_xcalloc(size_t n, size_t sz);
void *bench_xrealloc(void *p, size_t n);
/* A /proc/PID/status field in kB ("VmRSS:"), or -1. */
long bench_proc_status_kb(pid_t pid, const char *field);
/* The sum of /proc/PID/stat fields field and field + 1 (numbered as in
 * proc(5): 14 utime + stime, 16 cutime + cstime), in seconds; 0 when it
 * cannot be read. */
double bench_proc_stat_s(pid_t pid, int field);
/* CPU seconds (user + system) of a process, of this process, and the busy
 * seconds of the whole machine (every CPU, interrupts included). */
double bench_proc_cpu_s(pid_t pid);
double bench_self_cpu_s(void);
double bench_machine_busy_s(void);
/* qsort comparator for int64_t; the q-quantile (nearest rank) of sorted
 * nanoseconds v[0..n), in ms (NAN when n is 0). */
int bench_cmp_i64(const void *a, const void *b);
double bench_pct_ms(const int64_t *v, size_t n, double q);
/* Raises the open-file limit to want (the hard limit too when allowed), or dies. */
void bench_raise_nofile(rlim_t want);
/* A blocking TCP connection to 127.0.0.1:port with TCP_NODELAY, or -1
 * (errno set); dies when no socket can be made. */
int bench_connect(int port);
/* Writes buf[*off..len) to a non-blocking fd, advancing *off: 0 when all of it
 * went, 1 when the socket is full, -1 on an error or a closed peer. */
int bench_write_nb(int fd, const void *buf, size_t *off, size_t len);
/* One read of at most cap bytes from a non-blocking fd (EINTR retried): the
 * bytes read, 0 when nothing is there yet, -1 on EOF or an error. */
ssize_t bench_read_nb(int fd, void *buf, size_t cap);
/* Removes path and everything under it (errors ignored: it is a temp folder). */
void bench_rm_tree(const char *path);

#endif
