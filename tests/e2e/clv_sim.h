/*
 * clv_sim.h -- customers simulated from known BG/NBD and Gamma-Gamma
 * parameters (for tests/e2e/test_clv.c and bench/clv_recovery.c).
 *
 * BG/NBD (Fader, Hardie and Lee 2005): each customer has a purchase rate
 * lambda ~ Gamma(shape r, rate alpha) and a dropout probability
 * p ~ Beta(a, b); while alive, purchases follow a Poisson process with rate
 * lambda; after each repeat purchase the customer drops out with
 * probability p.  Gamma-Gamma: each customer has nu ~ Gamma(q, rate gamma),
 * and every purchase (the first one too) spends z ~ Gamma(p, rate nu).
 */
#ifndef CLV_SIM_H
#define CLV_SIM_H

#include <math.h>
#include <stdint.h>

typedef struct clv_sim {
    uint64_t s;
} clv_sim;

typedef struct clv_sim_cust {
    double x, tx, T; /* repeat purchases, last purchase since the first, age */
    double spent;    /* sum of the x + 1 purchases */
} clv_sim_cust;

static inline void clv_sim_seed(clv_sim *g, uint64_t seed)
{
    /* a scrambled start, so that nearby seeds give streams far apart */
    uint64_t z = seed + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 33)) * 0xFF51AFD7ED558CCDull;
    z = (z ^ (z >> 33)) * 0xC4CEB9FE1A85EC53ull;
    g->s = z ^ (z >> 33);
}

static inline double clv_sim_u(clv_sim *g) /* (0, 1) */
{
    /* splitmix64 */
    uint64_t z = (g->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return ((double)(z >> 11) + 0.5) / 9007199254740992.0;
}

static inline double clv_sim_normal(clv_sim *g)
{
    return sqrt(-2 * log(clv_sim_u(g))) * cos(6.283185307179586 * clv_sim_u(g));
}

/* Gamma(shape k, scale 1): Marsaglia and Tsang, with the k < 1 boost */
static inline double clv_sim_gamma(clv_sim *g, double k)
{
    if (k < 1)
        return clv_sim_gamma(g, k + 1) * pow(clv_sim_u(g), 1 / k);
    double d = k - 1.0 / 3, c = 1 / sqrt(9 * d);
    for (;;) {
        double x = clv_sim_normal(g), v = 1 + c * x;
        if (v <= 0)
            continue;
        v = v * v * v;
        double u = clv_sim_u(g);
        if (log(u) < 0.5 * x * x + d - d * v + d * log(v))
            return d * v;
    }
}

static inline double clv_sim_beta(clv_sim *g, double a, double b)
{
    double x = clv_sim_gamma(g, a), y = clv_sim_gamma(g, b);
    return x / (x + y);
}

/* One customer observed for T units.  par: r, alpha, a, b, p, q, gamma. */
static inline void clv_sim_one(clv_sim *g, const double *par, double T, clv_sim_cust *out)
{
    double lambda = clv_sim_gamma(g, par[0]) / par[1];
    double drop = clv_sim_beta(g, par[2], par[3]);
    double nu = clv_sim_gamma(g, par[5]) / par[6];
    double t = 0;
    out->x = 0;
    out->tx = 0;
    out->T = T;
    out->spent = clv_sim_gamma(g, par[4]) / nu;
    for (;;) {
        t += -log(clv_sim_u(g)) / lambda;
        if (t > T)
            break;
        out->x += 1;
        out->tx = t;
        out->spent += clv_sim_gamma(g, par[4]) / nu;
        if (clv_sim_u(g) < drop)
            break;
    }
}

#endif
