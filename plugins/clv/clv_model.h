/*
 * clv_model.h -- the numerics of the clv plugin, free of any crmd type so
 * that a test or a bench can compile them on their own:
 *  - BG/NBD (Fader, Hardie and Lee 2005, "Counting your customers the easy
 *    way"): log-likelihood, P(alive), expected purchases in (T, T+t];
 *  - Gamma-Gamma spend model (Fader and Hardie 2013): log-likelihood and the
 *    conditional expected average spend;
 *  - Nelder-Mead on the negative log-likelihood in log-parameter space.
 * Uses libm (lgamma, log, exp, log1p, pow).
 */
#ifndef CLV_MODEL_H
#define CLV_MODEL_H

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* One customer: x repeat purchases, t_x time of the last purchase since the
 * first, T age since the first purchase (both in the configured unit); n
 * purchases whose spend is averaged into m (the spend model). */
typedef struct clv_cust {
    double x, tx, T;
    double n, m;
} clv_cust;

/* BG/NBD log-likelihood of one customer, equation (6) of FHL 2005:
 *   L = B(a, b+x)/B(a, b) * Gamma(r+x)/Gamma(r) * alpha^r
 *       * [ (alpha+T)^-(r+x) + [x>0] a/(b+x-1) * (alpha+t_x)^-(r+x) ]     */
static inline double clv_bgnbd_ll1(double r, double alpha, double a, double b, double x, double tx,
                                   double T)
{
    double A1 = lgamma(r + x) - lgamma(r) + r * log(alpha);
    double A2 = lgamma(a + b) + lgamma(b + x) - lgamma(b) - lgamma(a + b + x);
    double A3 = -(r + x) * log(alpha + T);
    if (x > 0) {
        double A4 = log(a) - log(b + x - 1) - (r + x) * log(alpha + tx);
        double hi = A3 > A4 ? A3 : A4, lo = A3 > A4 ? A4 : A3;
        return A1 + A2 + hi + log1p(exp(lo - hi));
    }
    return A1 + A2 + A3;
}

/* Gamma-Gamma log-likelihood of one customer with n purchases of mean m:
 *   f(m | p,q,gamma,n) = Gamma(pn+q) / (Gamma(pn) Gamma(q))
 *                        * gamma^q m^(pn-1) n^(pn) / (gamma + n m)^(pn+q)     */
static inline double clv_gg_ll1(double p, double q, double g, double n, double m)
{
    double px = p * n;
    return lgamma(px + q) - lgamma(px) - lgamma(q) + q * log(g) + (px - 1) * log(m) + px * log(n) -
           (px + q) * log(g + n * m);
}

/* Sum of the BG/NBD log-likelihood; the lgamma terms that depend on x
 * only are computed once per distinct x below 256 (a small cache). */
static inline double clv_bgnbd_ll(const clv_cust *c, size_t n, double r, double alpha, double a,
                                  double b)
{
    enum { XC = 256 };
    double cache[XC];
    double k0 = -lgamma(r) + r * log(alpha) + lgamma(a + b) - lgamma(b), s = 0;
    for (int i = 0; i < XC; i++)
        cache[i] = NAN;
    for (size_t i = 0; i < n; i++) {
        double x = c[i].x, A12;
        int xi = (int)x;
        if (xi < XC && !isnan(cache[xi])) {
            A12 = cache[xi];
        } else {
            A12 = lgamma(r + x) + lgamma(b + x) - lgamma(a + b + x);
            if (xi < XC)
                cache[xi] = A12;
        }
        double A3 = -(r + x) * log(alpha + c[i].T);
        if (x > 0) {
            double A4 = log(a) - log(b + x - 1) - (r + x) * log(alpha + c[i].tx);
            double hi = A3 > A4 ? A3 : A4, lo = A3 > A4 ? A4 : A3;
            s += A12 + hi + log1p(exp(lo - hi));
        } else {
            s += A12 + A3;
        }
    }
    return s + (double)n * k0;
}

/* Sum of the Gamma-Gamma log-likelihood over the customers with x > 0
 * (repeat buyers, as in Fader and Hardie's note) and a positive mean. */
static inline double clv_gg_ll(const clv_cust *c, size_t n, double p, double q, double g)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        if (c[i].x > 0 && c[i].m > 0 && c[i].n > 0)
            s += clv_gg_ll1(p, q, g, c[i].n, c[i].m);
    return s;
}

/* Gauss hypergeometric 2F1(a, b; c; z) for 0 <= z < 1 by its series. */
static inline double clv_hyp2f1(double a, double b, double c, double z)
{
    double term = 1, sum = 1;
    for (int k = 0; k < 100000; k++) {
        term *= (a + k) * (b + k) / ((c + k) * (k + 1)) * z;
        sum += term;
        if (fabs(term) <= 1e-14 * fabs(sum))
            break;
    }
    return sum;
}

/* P(alive | x, t_x, T), FHL 2005 equation (11) */
static inline double clv_p_alive(double r, double alpha, double a, double b, double x, double tx,
                                 double T)
{
    if (x <= 0)
        return 1.0;
    double lr = log(a) - log(b + x - 1) + (r + x) * (log(alpha + T) - log(alpha + tx));
    return 1.0 / (1.0 + exp(lr));
}

/* E[Y(t) | x, t_x, T]: expected purchases in the next t units, FHL 2005
 * equation (10). */
static inline double clv_expected(double r, double alpha, double a, double b, double x, double tx,
                                  double T, double t)
{
    if (t <= 0)
        return 0;
    double z = t / (alpha + T + t);
    double h = clv_hyp2f1(r + x, b + x, a + b + x - 1, z);
    double num = (a + b + x - 1) / (a - 1) * (1 - pow((alpha + T) / (alpha + T + t), r + x) * h);
    double den = 1;
    if (x > 0)
        den += a / (b + x - 1) * pow((alpha + T) / (alpha + tx), r + x);
    return num / den;
}

/* E[M | p, q, gamma, n, m]: expected average spend of a customer with n
 * purchases averaging m (Fader and Hardie 2013, equation (5)); with n = 0 it
 * is the population mean p gamma / (q - 1) (q > 1). */
static inline double clv_expected_spend(double p, double q, double g, double n, double m)
{
    return p * (g + n * m) / (p * n + q - 1);
}

/* ---- Nelder-Mead, minimising f over R^d (d <= 4) ---- */
typedef double (*clv_objective)(const double *v, void *ud);

typedef struct clv_nm_result {
    double best[4], fbest;
    int evals, iterations;
} clv_nm_result;

static inline void clv_nelder_mead(clv_objective f, void *ud, int d, const double *start,
                                   double step, int max_evals, double ftol, clv_nm_result *res)
{
    double s[5][4], fs[5], c[4], xr[4], xe[4], xc[4];
    int evals = 0, it = 0;
    for (int i = 0; i <= d; i++) {
        for (int j = 0; j < d; j++)
            s[i][j] = start[j] + (i == j + 1 ? step : 0);
        fs[i] = f(s[i], ud);
        evals++;
    }
    while (evals < max_evals) {
        /* order: best first */
        for (int i = 1; i <= d; i++)
            for (int k = i; k > 0 && fs[k] < fs[k - 1]; k--) {
                double t = fs[k];
                fs[k] = fs[k - 1];
                fs[k - 1] = t;
                for (int j = 0; j < d; j++) {
                    t = s[k][j];
                    s[k][j] = s[k - 1][j];
                    s[k - 1][j] = t;
                }
            }
        double spread = 0;
        for (int i = 1; i <= d; i++)
            for (int j = 0; j < d; j++)
                spread = fmax(spread, fabs(s[i][j] - s[0][j]));
        if (fabs(fs[d] - fs[0]) <= ftol * (fabs(fs[0]) + 1e-10) && spread < 1e-6)
            break;
        it++;
        for (int j = 0; j < d; j++) {
            c[j] = 0;
            for (int i = 0; i < d; i++)
                c[j] += s[i][j] / d;
        }
        for (int j = 0; j < d; j++)
            xr[j] = c[j] + (c[j] - s[d][j]);
        double fr = f(xr, ud);
        evals++;
        if (fr < fs[0]) {
            for (int j = 0; j < d; j++)
                xe[j] = c[j] + 2 * (c[j] - s[d][j]);
            double fe = f(xe, ud);
            evals++;
            if (fe < fr) {
                memcpy(s[d], xe, sizeof xe);
                fs[d] = fe;
            } else {
                memcpy(s[d], xr, sizeof xr);
                fs[d] = fr;
            }
        } else if (fr < fs[d - 1]) {
            memcpy(s[d], xr, sizeof xr);
            fs[d] = fr;
        } else {
            int outside = fr < fs[d];
            for (int j = 0; j < d; j++)
                xc[j] = outside ? c[j] + 0.5 * (xr[j] - c[j]) : c[j] + 0.5 * (s[d][j] - c[j]);
            double fc = f(xc, ud);
            evals++;
            if (fc < (outside ? fr : fs[d])) {
                memcpy(s[d], xc, sizeof xc);
                fs[d] = fc;
            } else { /* shrink towards the best */
                for (int i = 1; i <= d; i++) {
                    for (int j = 0; j < d; j++)
                        s[i][j] = s[0][j] + 0.5 * (s[i][j] - s[0][j]);
                    fs[i] = f(s[i], ud);
                    evals++;
                }
            }
        }
    }
    int bi = 0;
    for (int i = 1; i <= d; i++)
        if (fs[i] < fs[bi])
            bi = i;
    memcpy(res->best, s[bi], sizeof(double) * (size_t)d);
    res->fbest = fs[bi];
    res->evals += evals;
    res->iterations += it;
}

typedef struct clv_data {
    const clv_cust *c;
    size_t n;
} clv_data;

static inline double clv_bgnbd_neg(const double *v, void *ud)
{
    const clv_data *d = ud;
    double ll;
    for (int j = 0; j < 4; j++)
        if (v[j] < -20 || v[j] > 20)
            return 1e300;
    ll = clv_bgnbd_ll(d->c, d->n, exp(v[0]), exp(v[1]), exp(v[2]), exp(v[3]));
    return isfinite(ll) ? -ll : 1e300;
}

static inline double clv_gg_neg(const double *v, void *ud)
{
    const clv_data *d = ud;
    double ll;
    for (int j = 0; j < 3; j++)
        if (v[j] < -20 || v[j] > 20)
            return 1e300;
    ll = clv_gg_ll(d->c, d->n, exp(v[0]), exp(v[1]), exp(v[2]));
    return isfinite(ll) ? -ll : 1e300;
}

/* Fits both models: restarts Nelder-Mead from its own best point until the
 * log-likelihood stops improving (at most `restarts` times).  out: r, alpha,
 * a, b, p, q, gamma; ll[0] BG/NBD, ll[1] Gamma-Gamma (NAN when fewer than
 * two repeat buyers); evals: objective evaluations. */
static inline void clv_fit(const clv_cust *c, size_t n, int max_evals, int restarts, double *out,
                           double *ll, int *evals)
{
    clv_data d = {c, n};
    clv_nm_result res;
    double start[4] = {0, 0, 0, 0}, prev = INFINITY;
    double meanT = 0;
    size_t repeat = 0;
    memset(&res, 0, sizeof res);
    for (size_t i = 0; i < n; i++) {
        meanT += c[i].T / (double)n;
        repeat += c[i].x > 0;
    }
    start[1] = log(fmax(meanT, 1e-3) / 10); /* alpha is on the scale of T */
    for (int k = 0; k <= restarts; k++) {
        clv_nelder_mead(clv_bgnbd_neg, &d, 4, start, 1.0, max_evals, 1e-10, &res);
        memcpy(start, res.best, sizeof start);
        if (prev - res.fbest < 1e-7 * fabs(res.fbest))
            break;
        prev = res.fbest;
    }
    for (int j = 0; j < 4; j++)
        out[j] = exp(res.best[j]);
    ll[0] = -res.fbest;
    *evals = res.evals;
    if (repeat < 2) {
        out[4] = out[5] = out[6] = NAN;
        ll[1] = NAN;
        return;
    }
    double gs[3] = {0, log(2), 0}, msum = 0;
    size_t mn = 0;
    for (size_t i = 0; i < n; i++)
        if (c[i].x > 0 && c[i].m > 0) {
            msum += c[i].m;
            mn++;
        }
    gs[2] = log(fmax(msum / (double)(mn ? mn : 1), 1e-6)); /* gamma on the scale of spend */
    memset(&res, 0, sizeof res);
    prev = INFINITY;
    for (int k = 0; k <= restarts; k++) {
        clv_nelder_mead(clv_gg_neg, &d, 3, gs, 1.0, max_evals, 1e-10, &res);
        memcpy(gs, res.best, sizeof gs);
        if (prev - res.fbest < 1e-7 * fabs(res.fbest))
            break;
        prev = res.fbest;
    }
    for (int j = 0; j < 3; j++)
        out[4 + j] = exp(res.best[j]);
    ll[1] = -res.fbest;
    *evals += res.evals;
}

#endif
