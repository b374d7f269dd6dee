/*
 * clv_recovery -- how well the clv plugin's maximum-likelihood fit recovers
 * known BG/NBD and Gamma-Gamma parameters, by simulation (no server): for
 * each sample size, K data sets simulated from the CDNOW-like parameters,
 * fitted with plugins/clv/clv_model.h; prints the median and the 5th/95th
 * percentiles of the relative error of each parameter and the fit time.
 * This is what the tolerances of tests/e2e/test_clv.c are based on.
 *   cc -O2 -o /tmp/clv_recovery bench/clv_recovery.c -lm && /tmp/clv_recovery 2000 20
 */
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "../plugins/clv/clv_model.h"
#include "../tests/e2e/clv_sim.h"

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 2000, K = argc > 2 ? atoi(argv[2]) : 20;
    const double truth[7] = {0.24, 4.41, 0.79, 2.43, 6.25, 3.74, 15.44};
    const char *names[10] = {"r", "alpha", "a", "b", "p", "q", "gamma", "r/alpha", "a/(a+b)", "pg/(q-1)"};
    double *err[10];
    clv_cust *c = calloc((size_t)n, sizeof *c);
    double secs = 0;
    for (int j = 0; j < 10; j++)
        err[j] = calloc((size_t)K, sizeof(double));
    for (int k = 0; k < K; k++) {
        clv_sim sim;
        clv_sim_seed(&sim, 12345 + (uint64_t)k * 7919);
        for (int i = 0; i < n; i++) {
            clv_sim_cust sc;
            clv_sim_one(&sim, truth, 66 + 12 * clv_sim_u(&sim), &sc);
            c[i].x = sc.x;
            c[i].tx = sc.tx;
            c[i].T = sc.T;
            c[i].n = sc.x + 1;
            c[i].m = sc.spent / (sc.x + 1);
        }
        double out[7], ll[2];
        int evals;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        clv_fit(c, (size_t)n, 4000, 3, out, ll, &evals);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        secs += (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        for (int j = 0; j < 7; j++)
            err[j][k] = out[j] / truth[j] - 1;
        err[7][k] = (out[0] / out[1]) / (truth[0] / truth[1]) - 1;
        err[8][k] = (out[2] / (out[2] + out[3])) / (truth[2] / (truth[2] + truth[3])) - 1;
        err[9][k] = (out[4] * out[6] / (out[5] - 1)) / (truth[4] * truth[6] / (truth[5] - 1)) - 1;
    }
    printf("n=%d K=%d mean fit %.3f s\n", n, K, secs / K);
    for (int j = 0; j < 10; j++) {
        qsort(err[j], (size_t)K, sizeof(double), cmpd);
        double mx = 0;
        for (int k = 0; k < K; k++)
            mx = fmax(mx, fabs(err[j][k]));
        printf("%-9s p5 %+6.1f%%  median %+6.1f%%  p95 %+6.1f%%  max |err| %5.1f%%\n", names[j],
               100 * err[j][(int)(0.05 * K)], 100 * err[j][K / 2], 100 * err[j][(int)(0.95 * (K - 1))],
               100 * mx);
    }
    return 0;
}
