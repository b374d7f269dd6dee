/* machine -- what the benchmarks say about the machine they ran on. */
#include "machine.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void bench_cpu_model(char *out, size_t n)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    snprintf(out, n, "unknown");
    if (!f)
        return;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0) {
            char *c = strchr(line, ':');
            if (c) {
                c += 1 + (c[1] == ' ');
                c[strcspn(c, "\n")] = 0;
                snprintf(out, n, "%s", c);
            }
            break;
        }
    fclose(f);
}

long bench_mem_gib(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    long kb = 0;
    if (f) {
        if (fscanf(f, "MemTotal: %ld kB", &kb) != 1)
            kb = 0;
        fclose(f);
    }
    return (kb + (1 << 19)) >> 20;
}

/* "0.12/0.30/0.25" from /proc/loadavg. */
void bench_loadavg(char *out, size_t n)
{
    FILE *f = fopen("/proc/loadavg", "r");
    double a, b, c;
    snprintf(out, n, "unknown");
    if (f) {
        if (fscanf(f, "%lf %lf %lf", &a, &b, &c) == 3)
            snprintf(out, n, "%.2f/%.2f/%.2f", a, b, c);
        fclose(f);
    }
}

/* The type of the filesystem holding path, from the longest matching mount
 * point in /proc/mounts ("ext4"). */
void bench_fs_type(const char *path, char *out, size_t n)
{
    char real[4096], dev[512], mnt[4096], type[64];
    size_t best = 0;
    FILE *f = fopen("/proc/mounts", "r");
    snprintf(out, n, "unknown");
    if (!realpath(path, real) || !f) {
        if (f)
            fclose(f);
        return;
    }
    while (fscanf(f, "%511s %4095s %63s %*[^\n]", dev, mnt, type) == 3) {
        size_t l = strlen(mnt);
        if (strncmp(real, mnt, l) == 0 && (real[l] == '/' || real[l] == 0 || l == 1) &&
            l >= best) {
            best = l;
            snprintf(out, n, "%s", type);
        }
    }
    fclose(f);
}
