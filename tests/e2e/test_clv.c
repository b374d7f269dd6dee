/*
 * test_clv -- plugins/clv (BG/NBD + Gamma-Gamma) in a real crmd over
 * WebSocket, loaded alone from a temp plugins folder.
 *
 *  - value.loglik for one customer (the CDNOW example of Fader, Hardie and
 *    Lee 2005: x = 2, t_x = 30.43, T = 38.86 weeks) equals the value worked
 *    out by hand from the paper's formula (product form, Python's math
 *    module), and E[Y(39)] the paper's 1.226.
 *  - NCUST customers simulated in this file from known parameters (CDNOW's
 *    fit: r 0.24, alpha 4.41, a 0.79, b 2.43; p 6.25, q 3.74, gamma 15.44),
 *    written as contacts with the summary fields lifecycle.lua keeps;
 *    value.fit; pings are answered while the job runs (longest reply
 *    printed); value.model gives parameters within tolerances taken from
 *    bench/clv_recovery.c (beyond the worst of 100 simulated data sets of
 *    this size), a log-likelihood that this file recomputes independently
 *    and that is at least the one at the true parameters; every customer
 *    gets clv, churn_risk = 1 - P(alive) (checked against this file's own
 *    P(alive)) and extra.value; non-customers get nothing; a second
 *    value.fit during the job is CONFLICT; the model survives a restart.
 */
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "clv_sim.h"
#include "codec.h"
#include "tmpdir.h"
#include "testutil.h"
#include "wsclient.h"

/* customers simulated; CLV_TEST_CUSTOMERS=N overrides it for a measurement
 * (the tolerances are those of n = 5000, looser than needed for more) */
static int NCUST = 5000;
#define NNON 20
#define WEEK_MS (7 * 86400000.0)

typedef struct fixture {
    crmd_proc p;
    char *plugins, *token, *args;
} fixture;

static char *slurp(const char *path)
{
    char *text = crm_test_read_file(path);
    assert_non_null(text);
    return text;
}

static void start(fixture *f, const char *data)
{
    assert_int_equal(crmd_start_with(&f->p, data, "%s", f->args), 0);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    char src[1024], *json;
    assert_non_null(getenv("CRM_PLUGINS"));
    snprintf(src, sizeof src, "%s/clv.json", getenv("CRM_PLUGINS"));
    json = slurp(src); /* the shipped configuration, as is */
    f->plugins = crm_test_plugin_dir("clv-plugins", "clv", json);
    free(json);
    f->args = malloc(strlen(f->plugins) + 128);
    sprintf(f->args, "--plugins %s --scripts %s/no-scripts", f->plugins, f->plugins);
    start(f, NULL);
    assert_non_null(f->token = crmd_token(&f->p, "admin"));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    assert_int_equal(crmd_stop(&f->p), 0);
    crm_tmpdir_remove(f->plugins);
    free(f->token);
    free(f->args);
    free(f);
    return 0;
}

static void restart(fixture *f)
{
    char *data = strdup(f->p.data);
    assert_int_equal(crmd_stop_keep(&f->p), 0);
    start(f, data);
    free(data);
}

static void connect_authed(fixture *f, ws_client *c)
{
    assert_int_equal(ws_connect(c, f->p.port, "crm.v1.json", NULL, NULL), 0);
    assert_int_equal(ws_auth(c, f->token, 5000), 0);
}


/* Sends body (a JSON object without ref); returns the whole reply. */
static crm_value *send_raw(ws_client *c, const char *body)
{
    crm_value *r = ws_request(c, 60000, NULL, "%s", body);
    assert_non_null(r);
    return r;
}

static crm_value *send_req(ws_client *c, const char *body)
{
    crm_value *r = send_raw(c, body);
    if (crm_map_get(r, "error")) {
        char *j = crm_json_encode(r, NULL);
        fail_msg("request failed: %s", j);
    }
    return r;
}

static crm_value *req(ws_client *c, const char *fmt, ...)
{
    char body[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    return send_req(c, body);
}

static double num(const crm_value *m, const char *k)
{
    const crm_value *v = crm_map_get(m, k);
    assert_non_null(v);
    return crm_value_as_double(v);
}

/* ---- the formulas, written again here from the papers (not the plugin's code) ---- */
static double bgnbd_ll(double r, double al, double a, double b, double x, double tx, double T)
{
    double l = exp(lgamma(r + x) - lgamma(r) + r * log(al) + lgamma(a + b) + lgamma(b + x) - lgamma(b) -
                   lgamma(a + b + x));
    double s = pow(al + T, -(r + x)) + (x > 0 ? a / (b + x - 1) * pow(al + tx, -(r + x)) : 0);
    return log(l * s);
}

static double gg_ll(double p, double q, double g, double n, double m)
{
    return lgamma(p * n + q) - lgamma(p * n) - lgamma(q) + q * log(g) + (p * n - 1) * log(m) +
           p * n * log(n) - (p * n + q) * log(g + n * m);
}

static double p_alive(double r, double al, double a, double b, double x, double tx, double T)
{
    return x == 0 ? 1 : 1 / (1 + a / (b + x - 1) * pow((al + T) / (al + tx), r + x));
}

static void test_loglik_by_hand(void **state)
{
    fixture *f = *state;
    ws_client c;
    crm_value *r;
    const crm_value *res;
    connect_authed(f, &c);
    r = req(&c, "{\"op\": \"call\", \"method\": \"value.loglik\", \"params\": {\"r\": 0.24, \"alpha\": 4.41,"
                " \"a\": 0.79, \"b\": 2.43, \"x\": 2, \"t_x\": 30.43, \"T\": 38.86, \"t\": 39,"
                " \"p\": 6.25, \"q\": 3.74, \"gamma\": 15.44, \"n\": 3, \"m\": 35.5}}");
    res = crm_map_get(r, "result");
    /* by hand (python3, math module):
     *   L = B(a,b+x)/B(a,b) Gamma(r+x)/Gamma(r) alpha^r [(alpha+T)^-(r+x) + a/(b+x-1) (alpha+t_x)^-(r+x)]
     *   f = Gamma(pn+q)/(Gamma(pn)Gamma(q)) gamma^q m^(pn-1) n^(pn) / (gamma+nm)^(pn+q) */
    print_message("LL bgnbd %.12f gg %.12f p_alive %.9f E[Y(39)] %.6f E[M] %.6f\n", num(res, "bgnbd"),
                  num(res, "gg"), num(res, "p_alive"), num(res, "expected"), num(res, "expected_spend"));
    assert_true(fabs(num(res, "bgnbd") - -9.465857120312211) < 1e-9);
    assert_true(fabs(num(res, "gg") - -4.090552209678848) < 1e-9);
    assert_true(fabs(num(res, "p_alive") - 0.7276811548689407) < 1e-12);
    assert_true(fabs(num(res, "expected") - 1.2273675177553904) < 1e-9);
    assert_true(fabs(num(res, "expected") - 1.226) < 0.002); /* FHL 2005, section 6 */
    assert_true(fabs(num(res, "expected_spend") - 35.46416938110749) < 1e-9);
    /* the test's own formula agrees too */
    assert_true(fabs(bgnbd_ll(0.24, 4.41, 0.79, 2.43, 2, 30.43, 38.86) - num(res, "bgnbd")) < 1e-9);
    assert_true(fabs(gg_ll(6.25, 3.74, 15.44, 3, 35.5) - num(res, "gg")) < 1e-9);
    crm_value_free(r);
    /* x = 0: alive for sure, no t_x term */
    r = req(&c, "{\"op\": \"call\", \"method\": \"value.loglik\", \"params\": {\"r\": 0.24, \"alpha\": 4.41,"
                " \"a\": 0.79, \"b\": 2.43, \"x\": 0, \"t_x\": 0, \"T\": 60}}");
    res = crm_map_get(r, "result");
    assert_true(fabs(num(res, "bgnbd") - bgnbd_ll(0.24, 4.41, 0.79, 2.43, 0, 0, 60)) < 1e-9);
    assert_true(num(res, "p_alive") == 1.0);
    crm_value_free(r);
    r = send_raw(&c, "{\"op\": \"call\", \"method\": \"value.loglik\", \"params\": {\"r\": -1, \"alpha\": 1,"
                     " \"a\": 1, \"b\": 1, \"x\": 0, \"t_x\": 0, \"T\": 1}}");
    assert_string_equal(crm_map_str(crm_map_get(r, "error"), "code", ""), "BAD_REQUEST");
    crm_value_free(r);
    ws_close(&c);
}

typedef struct sim_rec {
    clv_sim_cust s;
    int64_t first, last, n, spent;
} sim_rec;

static void test_fit_recovers_known_parameters(void **state)
{
    fixture *f = *state;
    ws_client c;
    crm_value *r;
    const double truth[7] = {0.24, 4.41, 0.79, 2.43, 6.25, 3.74, 15.44};
    sim_rec *cs;
    if (getenv("CLV_TEST_CUSTOMERS") && atoi(getenv("CLV_TEST_CUSTOMERS")) >= 5000)
        NCUST = atoi(getenv("CLV_TEST_CUSTOMERS"));
    cs = calloc((size_t)NCUST, sizeof *cs);
    crm_test_buf b = {0};
    int64_t t;
    clv_sim sim;
    connect_authed(f, &c);

    r = req(&c, "{\"op\": \"call\", \"method\": \"value.model\", \"params\": {}}");
    assert_string_equal(crm_map_str(crm_map_get(r, "result"), "status", ""), "none");
    crm_value_free(r);

    /* the server's clock, from a record it makes */
    r = req(&c, "{\"op\": \"create\", \"collection\": \"contacts\", \"record\": {\"id\": \"c_clock\", \"name\": \"Clock\"}}");
    t = crm_map_int(crm_map_get(r, "result"), "_created", 0);
    crm_value_free(r);
    assert_true(t > 0);

    /* a cohort acquired over 12 weeks, observed 66 to 78 weeks (as CDNOW) */
    clv_sim_seed(&sim, 20260501);
    double t0 = crm_test_now_s();
    for (int i = 0; i < NCUST; i += 100) {
        b.n = 0;
        crm_test_buf_add(&b, "{\"op\": \"tx\", \"ops\": [");
        for (int j = i; j < i + 100 && j < NCUST; j++) {
            sim_rec *s = &cs[j];
            clv_sim_one(&sim, truth, 66 + 12 * clv_sim_u(&sim), &s->s);
            s->first = t - (int64_t)llround(s->s.T * WEEK_MS);
            s->last = s->first + (int64_t)llround(s->s.tx * WEEK_MS);
            s->n = (int64_t)s->s.x + 1;
            s->spent = (int64_t)llround(s->s.spent * 100); /* cents */
            crm_test_buf_add(&b, "%s{\"op\": \"create\", \"collection\": \"contacts\", \"record\": {\"id\": \"c_s%06d\", \"name\": \"S%d\","
                       " \"order_count\": %lld, \"total_spent\": %lld, \"first_order_at\": %lld, \"last_order_at\": %lld,"
                       " \"extra\": {\"keep\": \"me\"}}}",
                       j > i ? "," : "", j, j, (long long)s->n, (long long)s->spent, (long long)s->first,
                       (long long)s->last);
        }
        crm_test_buf_add(&b, "]}");
        crm_value_free(send_req(&c, b.s));
    }
    b.n = 0;
    crm_test_buf_add(&b, "{\"op\": \"tx\", \"ops\": [");
    for (int j = 0; j < NNON; j++)
        crm_test_buf_add(&b, "%s{\"op\": \"create\", \"collection\": \"contacts\", \"record\": {\"id\": \"c_n%03d\", \"name\": \"N%d\"}}",
               j ? "," : "", j, j);
    crm_test_buf_add(&b, "]}");
    crm_value_free(send_req(&c, b.s));
    print_message("%d customers written in %.2f s\n", NCUST, crm_test_now_s() - t0);

    /* the fit, with pings meanwhile */
    double max_ping = 0, started = crm_test_now_s();
    long pings = 0;
    char job[64];
    r = req(&c, "{\"op\": \"call\", \"method\": \"value.fit\", \"params\": {}}");
    snprintf(job, sizeof job, "%s", crm_map_str(crm_map_get(r, "result"), "job", ""));
    crm_value_free(r);
    r = send_raw(&c, "{\"op\": \"call\", \"method\": \"value.fit\", \"params\": {}}");
    assert_string_equal(crm_map_str(crm_map_get(r, "error"), "code", ""), "CONFLICT");
    crm_value_free(r);
    crm_value *model = NULL;
    int saw_fitting = 0;
    for (;;) {
        for (int k = 0; k < 5; k++) {
            double p0 = crm_test_now_s();
            r = req(&c, "{\"op\": \"ping\"}");
            crm_value_free(r);
            max_ping = fmax(max_ping, crm_test_now_s() - p0);
            pings++;
            usleep(10000);
        }
        r = req(&c, "{\"op\": \"call\", \"method\": \"value.model\", \"params\": {}}");
        const crm_value *m = crm_map_get(r, "result");
        const char *st = crm_map_str(m, "status", "");
        saw_fitting |= strcmp(st, "fitting") == 0;
        assert_string_not_equal(st, "failed");
        if (strcmp(st, "ready") == 0 && strcmp(crm_map_str(m, "job", ""), job) == 0) {
            model = crm_value_dup(m);
            crm_value_free(r);
            break;
        }
        crm_value_free(r);
        assert_true(crm_test_now_s() - started < 120);
    }
    const crm_value *st = crm_map_get(model, "stats");
    print_message("job: %.2f s end to end; fit %.0f ms on the worker (%lld evaluations); collect %.0f ms, write %.0f ms,"
                  " %lld pages, longest chunk %.1f ms; %ld pings, longest %.1f ms; saw fitting: %d\n",
                  crm_test_now_s() - started, num(model, "fit_ms"), (long long)crm_map_int(model, "evals", 0),
                  num(st, "collect_ms"), num(st, "write_ms"), (long long)crm_map_int(st, "pages", 0),
                  num(st, "max_chunk_ms"), pings, 1000 * max_ping, saw_fitting);
    assert_true(max_ping < 3.0);

    static const char *names[7] = {"r", "alpha", "a", "b", "p", "q", "gamma"};
    double par[7];
    for (int j = 0; j < 7; j++) {
        par[j] = num(model, names[j]);
        print_message("%-5s fitted %8.4f  true %8.4f  (%+.1f%%)\n", names[j], par[j], truth[j],
                      100 * (par[j] / truth[j] - 1));
    }
    /* tolerances at n = 5000: beyond the worst of 100 simulated data sets of
     * this size in bench/clv_recovery.c (see the doc) */
    assert_true(fabs(par[0] / truth[0] - 1) < 0.12);
    assert_true(fabs(par[1] / truth[1] - 1) < 0.20);
    assert_true(fabs(par[2] / truth[2] - 1) < 0.45);
    assert_true(fabs(par[3] / truth[3] - 1) < 0.65);
    assert_true(fabs(par[5] / truth[5] - 1) < 0.20);
    /* p and gamma lie on a ridge (only their product is pinned down well):
     * the population mean spend p gamma / (q - 1) within 8 %, each within a factor 2.5 */
    assert_true(fabs((par[4] * par[6] / (par[5] - 1)) / (truth[4] * truth[6] / (truth[5] - 1)) - 1) < 0.08);
    assert_true(par[4] / truth[4] < 2.5 && truth[4] / par[4] < 2.5);
    assert_true(par[6] / truth[6] < 2.5 && truth[6] / par[6] < 2.5);
    assert_int_equal(crm_map_int(model, "n_customers", 0), NCUST);
    assert_int_equal(crm_map_int(model, "written", 0), NCUST);
    int64_t fitted_at = crm_map_int(model, "fitted_at", 0);
    assert_true(fitted_at >= t);

    /* the log-likelihoods, recomputed here, and the maximum is a maximum */
    {
        double ll_fit = 0, ll_true = 0, gg_fit = 0, gg_true = 0;
        int64_t repeat = 0;
        for (int i = 0; i < NCUST; i++) {
            const sim_rec *s = &cs[i];
            double x = (double)(s->n - 1);
            double tx = x > 0 ? (double)(s->last - s->first) / WEEK_MS : 0;
            double T = (double)(fitted_at - s->first) / WEEK_MS;
            double m = (double)s->spent / (double)s->n / 100;
            ll_fit += bgnbd_ll(par[0], par[1], par[2], par[3], x, tx, T);
            ll_true += bgnbd_ll(truth[0], truth[1], truth[2], truth[3], x, tx, T);
            if (x > 0) {
                gg_fit += gg_ll(par[4], par[5], par[6], (double)s->n, m);
                gg_true += gg_ll(truth[4], truth[5], truth[6], (double)s->n, m);
                repeat++;
            }
        }
        print_message("LL BG/NBD fitted %.4f (server %.4f), at the truth %.4f; Gamma-Gamma %.4f (server %.4f), truth %.4f\n",
                      ll_fit, num(model, "ll_bgnbd"), ll_true, gg_fit, num(model, "ll_gg"), gg_true);
        assert_true(fabs(ll_fit - num(model, "ll_bgnbd")) < 1e-6 * fabs(ll_fit));
        assert_true(fabs(gg_fit - num(model, "ll_gg")) < 1e-6 * fabs(gg_fit));
        assert_true(ll_fit >= ll_true - 1e-6);
        assert_true(gg_fit >= gg_true - 1e-6);
        assert_int_equal(crm_map_int(model, "n_repeat", 0), repeat);
    }

    /* predictions on every customer; none on non-customers */
    {
        char *after = NULL;
        int seen = 0, non = 0;
        double sum_pa = 0, sum_e = 0;
        for (;;) {
            char body[512];
            snprintf(body, sizeof body, "{\"op\": \"query\", \"collection\": \"contacts\", \"limit\": 1000%s%s%s}",
                     after ? ", \"after\": \"" : "", after ? after : "", after ? "\"" : "");
            r = send_req(&c, body);
            const crm_value *res = crm_map_get(r, "result"), *recs = crm_map_get(res, "records");
            for (size_t k = 0; k < recs->u.arr.n; k++) {
                const crm_value *rec = recs->u.arr.items[k];
                const char *id = crm_map_str(rec, "id", "");
                const crm_value *ex = crm_map_get(rec, "extra");
                if (strncmp(id, "c_s", 3) != 0) {
                    assert_null(crm_map_get(rec, "churn_risk"));
                    assert_null(crm_map_get(rec, "clv"));
                    assert_true(!ex || !crm_map_get(ex, "value"));
                    non++;
                    continue;
                }
                const sim_rec *s = &cs[atoi(id + 3)];
                const crm_value *v = crm_map_get(ex, "value");
                assert_non_null(v);
                assert_string_equal(crm_map_str(ex, "keep", ""), "me"); /* the rest of extra stays */
                double x = (double)(s->n - 1);
                double tx = x > 0 ? (double)(s->last - s->first) / WEEK_MS : 0;
                double T = (double)(fitted_at - s->first) / WEEK_MS;
                double pa = p_alive(par[0], par[1], par[2], par[3], x, tx, T);
                assert_true(fabs(num(v, "p_alive") - pa) < 1e-5);
                assert_true(fabs(num(rec, "churn_risk") - (1 - num(v, "p_alive"))) < 2e-6);
                assert_true(num(v, "expected_purchases") >= 0);
                assert_true(num(v, "expected_purchases") < 60);
                assert_true(num(v, "expected_spend") > 0);
                assert_int_equal(crm_map_int(rec, "clv", INT64_MIN), (int64_t)num(v, "clv"));
                assert_true(crm_map_int(rec, "clv", -1) >= 0);
                assert_true(num(v, "x") == x);
                sum_pa += pa;
                sum_e += num(v, "expected_purchases");
                seen++;
            }
            const crm_value *next = crm_map_get(res, "next");
            free(after);
            after = next && next->type == CRM_T_STR ? strdup(next->u.str.s) : NULL;
            crm_value_free(r);
            if (!after)
                break;
        }
        print_message("%d customers with predictions (mean P(alive) %.3f, mean purchases next 52 weeks %.3f), %d others untouched\n",
                      seen, sum_pa / seen, sum_e / seen, non);
        assert_int_equal(seen, NCUST);
        assert_int_equal(non, NNON + 1);
    }
    ws_close(&c);

    /* the model survives a restart */
    restart(f);
    connect_authed(f, &c);
    r = req(&c, "{\"op\": \"call\", \"method\": \"value.model\", \"params\": {}}");
    assert_string_equal(crm_map_str(crm_map_get(r, "result"), "status", ""), "ready");
    assert_true(num(crm_map_get(r, "result"), "r") == par[0]);
    assert_true(num(crm_map_get(r, "result"), "gamma") == par[6]);
    crm_value_free(r);
    ws_close(&c);
    crm_value_free(model);
    free(b.s);
    free(cs);
}


/* The model and scripts/customer_value.lua together: one CLV per contact.
 * After value.fit and a value.recompute of the script, every customer's clv
 * is the model's (extra.value.clv) and its value_class is ranked by that
 * same clv: below_zero exactly when it is negative.  (Before, the script
 * ranked by its own CLV: a contact could read below_zero next to a
 * positive clv.) */
static int setup_with_value_script(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    char src[1024], *json, *lua;
    assert_non_null(getenv("CRM_PLUGINS"));
    snprintf(src, sizeof src, "%s/clv.json", getenv("CRM_PLUGINS"));
    json = slurp(src);
    f->plugins = crm_test_plugin_dir("clv-plugins", "clv", json);
    free(json);
    assert_non_null(lua = crm_test_script_text("customer_value.lua"));
    snprintf(src, sizeof src, "%s/scripts", f->plugins);
    assert_int_equal(mkdir(src, 0700), 0); /* removed with the plugins folder */
    crm_tmpdir_write(f->plugins, "scripts/customer_value.lua", lua);
    free(lua);
    f->args = malloc(strlen(f->plugins) + 128);
    sprintf(f->args, "--plugins %s --scripts %s/scripts", f->plugins, f->plugins);
    start(f, NULL);
    assert_non_null(f->token = crmd_token(&f->p, "admin"));
    *state = f;
    return 0;
}

static void test_one_clv_per_contact(void **state)
{
    fixture *f = *state;
    ws_client c;
    crm_value *r;
    const double truth[7] = {0.24, 4.41, 0.79, 2.43, 6.25, 3.74, 15.44};
    const int n = 400;
    crm_test_buf b = {0};
    clv_sim sim;
    int64_t t;
    char job[64];
    int checked = 0, below = 0;
    double started;
    connect_authed(f, &c);
    r = req(&c, "{\"op\": \"create\", \"collection\": \"contacts\", \"record\": {\"id\": \"c_clock\", \"name\": \"Clock\"}}");
    t = crm_map_int(crm_map_get(r, "result"), "_created", 0);
    crm_value_free(r);
    clv_sim_seed(&sim, 20261208);
    for (int i = 0; i < n; i += 100) {
        b.n = 0;
        crm_test_buf_add(&b, "{\"op\": \"tx\", \"ops\": [");
        for (int j = i; j < i + 100 && j < n; j++) {
            sim_rec s;
            clv_sim_one(&sim, truth, 66 + 12 * clv_sim_u(&sim), &s.s);
            s.first = t - (int64_t)llround(s.s.T * WEEK_MS);
            s.last = s.first + (int64_t)llround(s.s.tx * WEEK_MS);
            crm_test_buf_add(&b, "%s{\"op\": \"create\", \"collection\": \"contacts\", \"record\": {\"id\": \"c_v%04d\", \"name\": \"V%d\","
                       " \"order_count\": %lld, \"total_spent\": %lld, \"first_order_at\": %lld, \"last_order_at\": %lld}}",
                       j > i ? "," : "", j, j, (long long)s.s.x + 1, (long long)llround(s.s.spent * 100),
                       (long long)s.first, (long long)s.last);
        }
        crm_test_buf_add(&b, "]}");
        crm_value_free(send_req(&c, b.s));
    }
    free(b.s);
    r = req(&c, "{\"op\": \"call\", \"method\": \"value.fit\", \"params\": {}}");
    snprintf(job, sizeof job, "%s", crm_map_str(crm_map_get(r, "result"), "job", ""));
    crm_value_free(r);
    started = crm_test_now_s();
    for (;;) {
        r = req(&c, "{\"op\": \"call\", \"method\": \"value.model\", \"params\": {}}");
        const crm_value *m = crm_map_get(r, "result");
        int done = strcmp(crm_map_str(m, "status", ""), "ready") == 0 &&
                   strcmp(crm_map_str(m, "job", ""), job) == 0;
        assert_string_not_equal(crm_map_str(m, "status", ""), "failed");
        crm_value_free(r);
        if (done)
            break;
        assert_true(crm_test_now_s() - started < 120);
        usleep(50000);
    }
    /* the script's job, after the fit: it ranks and leaves clv alone */
    r = req(&c, "{\"op\": \"call\", \"method\": \"value.recompute\", \"params\": {}}");
    snprintf(job, sizeof job, "%s", crm_map_str(crm_map_get(r, "result"), "job", ""));
    crm_value_free(r);
    started = crm_test_now_s();
    for (;;) {
        r = req(&c, "{\"op\": \"call\", \"method\": \"value.status\", \"params\": {}}");
        const crm_value *last = crm_map_get(crm_map_get(r, "result"), "last");
        int done = last && strcmp(crm_map_str(last, "job", ""), job) == 0;
        crm_value_free(r);
        if (done)
            break;
        assert_true(crm_test_now_s() - started < 120);
        usleep(50000);
    }
    for (int i = 0; i < n; i++) {
        const crm_value *rec, *v;
        r = req(&c, "{\"op\": \"get\", \"collection\": \"contacts\", \"id\": \"c_v%04d\"}", i);
        rec = crm_map_get(r, "result");
        v = crm_map_get(crm_map_get(rec, "extra"), "value");
        assert_non_null(v);
        assert_non_null(crm_map_get(rec, "clv"));
        assert_int_equal(crm_map_int(rec, "clv", -1), (int64_t)llround(num(v, "clv")));
        assert_non_null(crm_map_get(rec, "value_class"));
        if ((crm_map_int(rec, "clv", 0) < 0) != (strcmp(crm_map_str(rec, "value_class", ""), "below_zero") == 0))
            fail_msg("c_v%04d: clv %lld but value_class %s", i, (long long)crm_map_int(rec, "clv", 0),
                     crm_map_str(rec, "value_class", ""));
        below += strcmp(crm_map_str(rec, "value_class", ""), "below_zero") == 0;
        checked++;
        crm_value_free(r);
    }
    print_message("%d customers: clv the model's, value_class from it (%d below_zero)\n", checked, below);
    ws_close(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_loglik_by_hand, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fit_recovers_known_parameters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_clv_per_contact, setup_with_value_script, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
