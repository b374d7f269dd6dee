/* machine -- what the benchmarks say about the machine they ran on. */
#ifndef CRM_BENCH_MACHINE_H
#define CRM_BENCH_MACHINE_H

#include <stddef.h>

/* "AMD EPYC ..." from /proc/cpuinfo, or "unknown". */
void bench_cpu_model(char *out, size_t n);
/* Total memory in GiB, rounded. */
long bench_mem_gib(void);
/* "0.12/0.30/0.25" from /proc/loadavg. */
void bench_loadavg(char *out, size_t n);
/* The type of the filesystem holding path ("ext4"), from /proc/mounts. */
void bench_fs_type(const char *path, char *out, size_t n);

#endif
