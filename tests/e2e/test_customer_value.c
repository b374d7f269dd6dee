/*
 * test_customer_value -- scripts/customer_value.lua (with scripts/lifecycle.lua,
 * which keeps the order figures on each contact) in a real crmd over
 * WebSocket: 300 contacts and about a thousand orders (some cancelled) go in
 * through the normal write path; value.recompute runs the two-pass chunked
 * job (pages of 50 here, so many timer calls); then every contact's rfm_r/f/m,
 * abc_class, clv, value_class and churn_risk must equal an independent
 * computation in this file from the orders the test itself made, with the
 * formulas of docs/features/customer_value.md, plus hand-checked values for
 * a few special customers; scores of a non-customer are removed.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "codec.h"
#include "tmpdir.h"
#include "testutil.h"
#include "wsclient.h"

#define NC 300
#define DAY 86400000.0

typedef struct fixture {
    crmd_proc p;
    char *scripts, *token;
} fixture;

static void copy_script(const char *dir, const char *name, const char *from, const char *to)
{
    char *src = crm_test_script_text(name);
    if (from)
        crm_test_replace_once(&src, from, to);
    crm_tmpdir_write(dir, name, src);
    free(src);
}

static int setup_scaled(void **state, const char *scale)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(getenv("CRM_SCRIPTS"));
    f->scripts = crm_tmpdir_make("value-scripts");
    copy_script(f->scripts, "lifecycle.lua", NULL, NULL);
    copy_script(f->scripts, "customer_value.lua", "  page = 200,", "  page = 50,");
    assert_int_equal(
        crmd_start_with(&f->p, NULL, "--scripts %s --time-scale %s", f->scripts, scale), 0);
    assert_non_null(f->token = crmd_token(&f->p, "admin"));
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_scaled(state, "1");
}

static int setup_fast(void **state)
{
    return setup_scaled(state, "86400"); /* a day a second */
}

static int teardown(void **state)
{
    fixture *f = *state;
    assert_int_equal(crmd_stop(&f->p), 0);
    crm_tmpdir_remove(f->scripts);
    free(f->token);
    free(f);
    return 0;
}

static void connect_authed(fixture *f, ws_client *c)
{
    assert_int_equal(ws_connect(c, f->p.port, "crm.v1.json", NULL, NULL), 0);
    assert_int_equal(ws_auth(c, f->token, 5000), 0);
}


/* Sends body (JSON object text without ref) and returns the result (fails on error). */
static crm_value *send_req(ws_client *c, const char *body)
{
    crm_value *r = ws_request(c, 20000, NULL, "%s", body);
    assert_non_null(r);
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

typedef struct cust {
    int64_t n, spent, first, last;
    int64_t wn, wspent; /* in the RFM window (the last 365 days before the job's now) */
} cust;

/* every counted order the test made, for the RFM window */
typedef struct order_made {
    int contact;
    int64_t amount, at;
} order_made;

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int64_t below(const int64_t *a, int n, int64_t v)
{
    int64_t k = 0;
    while (k < n && a[k] < v)
        k++;
    return k;
}

static int64_t quintile(const int64_t *a, int n, int64_t v)
{
    int64_t s = 1 + (5 * below(a, n, v)) / n;
    return s > 5 ? 5 : s;
}

static int64_t clv_of(const cust *c, int64_t now)
{
    double aov = (double)c->spent / (double)c->n;
    double tenure = fmax((double)(now - c->first) / DAY, 365);
    double per_year = (double)c->n / (tenure / 365);
    double v = (aov * 0.30 - 500) * per_year * 3;
    return (int64_t)floor(v + 0.5);
}

static double churn_of(const cust *c, int64_t now)
{
    double gap = c->n >= 2 ? (double)(c->last - c->first) / DAY / (double)(c->n - 1) : 90;
    double ratio, risk;
    gap = fmax(gap, 7);
    ratio = (double)(now - c->last > 0 ? now - c->last : 0) / DAY / gap;
    risk = fmin(1, fmax(0, (ratio - 1) / (3 - 1)));
    return floor(risk * 1000 + 0.5) / 1000;
}

static void test_scores_equal_independent_computation(void **state)
{
    fixture *f = *state;
    ws_client c;
    cust cs[NC];
    int64_t t, now, total_orders = 0, total_spent = 0;
    crm_value *r;
    crm_test_buf b = {0};
    order_made *made = calloc(NC * 7, sizeof *made);
    int nmade = 0;
    connect_authed(f, &c);
    memset(cs, 0, sizeof cs);

    /* the server's clock, from a record it makes */
    r = req(&c, "{\"op\": \"create\", \"collection\": \"contacts\", \"record\": {\"id\": \"c_clock\", \"name\": \"Clock\"}}");
    t = crm_map_int(crm_map_get(r, "result"), "_created", 0);
    crm_value_free(r);
    assert_true(t > 0);

    /* 300 contacts; c_v299 carries stale scores that must go */
    for (int i = 0; i < NC; i += 100) {
        b.n = 0;
        crm_test_buf_add(&b, "{\"op\": \"tx\", \"ops\": [");
        for (int j = i; j < i + 100; j++)
            crm_test_buf_add(&b, "%s{\"op\": \"create\", \"collection\": \"contacts\", \"record\": {\"id\": \"c_v%03d\", \"name\": \"V%d\"%s}}",
                   j > i ? "," : "", j, j,
                   j == NC - 1 ? ", \"rfm_r\": 3, \"abc_class\": \"A\", \"clv\": 5" : "");
        crm_test_buf_add(&b, "]}");
        crm_value_free(send_req(&c, b.s));
    }
    /* orders: contact 0 a whale (3 x 50,000.00), contact 1 tiny (2 x 1.00),
     * 298 none-to-six orders over two years, every 10th cancelled or refunded,
     * the last contact none */
    {
        int in_tx = 0;
        b.n = 0;
        for (int i = 0; i < NC; i++) {
            int n = i == 0 ? 3 : i == 1 ? 2 : i == NC - 1 ? 0 : (int)(next_rand() % 7);
            for (int k = 0; k < n; k++) {
                int64_t amount = i == 0 ? 5000000 : i == 1 ? 100 : 500 + (int64_t)(next_rand() % 50000);
                /* the whale and the tiny customer buy inside the RFM window */
                int64_t at = t - (int64_t)(next_rand() % ((i <= 1 ? 300ull : 730ull) * 86400000ull));
                int dropped = i > 1 && next_rand() % 10 == 0;
                const char *status = dropped ? (next_rand() % 2 ? "cancelled" : "refunded") : "paid";
                if (in_tx == 0)
                    crm_test_buf_add(&b, "{\"op\": \"tx\", \"ops\": [");
                crm_test_buf_add(&b, "%s{\"op\": \"create\", \"collection\": \"orders\", \"record\": {\"contact\": \"c_v%03d\","
                           " \"amount\": %lld, \"currency\": \"EUR\", \"status\": \"%s\", \"ordered_at\": %lld}}",
                       in_tx ? "," : "", i, (long long)amount, status, (long long)at);
                if (++in_tx == 100) {
                    crm_test_buf_add(&b, "]}");
                    crm_value_free(send_req(&c, b.s));
                    b.n = 0;
                    in_tx = 0;
                }
                if (dropped)
                    continue;
                made[nmade++] = (order_made){i, amount, at};
                cs[i].n++;
                cs[i].spent += amount;
                if (!cs[i].first || at < cs[i].first)
                    cs[i].first = at;
                if (at > cs[i].last)
                    cs[i].last = at;
                total_orders++;
                total_spent += amount;
            }
        }
        if (in_tx) {
            crm_test_buf_add(&b, "]}");
            crm_value_free(send_req(&c, b.s));
        }
    }
    /* lifecycle.lua's after-hooks have counted every order */
    {
        double t0 = crm_test_now_s();
        int64_t got_n = -1, got_s = -1;
        while (crm_test_now_s() - t0 < 30) {
            r = req(&c, "{\"op\": \"aggregate\", \"collection\": \"contacts\", \"metrics\": [\"sum:order_count\", \"sum:total_spent\"]}");
            const crm_value *g = crm_map_get(r, "result");
            g = crm_map_get(g, "groups")->u.arr.items[0];
            got_n = (int64_t)crm_value_as_double(crm_map_get(g, "sum:order_count"));
            got_s = (int64_t)crm_value_as_double(crm_map_get(g, "sum:total_spent"));
            crm_value_free(r);
            if (got_n == total_orders && got_s == total_spent)
                break;
            usleep(50000);
        }
        assert_int_equal(got_n, total_orders);
        assert_int_equal(got_s, total_spent);
    }

    /* the chunked job */
    {
        double t0 = crm_test_now_s();
        char job[128];
        r = req(&c, "{\"op\": \"call\", \"method\": \"value.recompute\", \"params\": {}}");
        now = crm_map_int(crm_map_get(r, "result"), "now", 0);
        snprintf(job, sizeof job, "%s", crm_map_str(crm_map_get(r, "result"), "job", ""));
        crm_value_free(r);
        for (;;) {
            r = req(&c, "{\"op\": \"call\", \"method\": \"value.status\", \"params\": {}}");
            const crm_value *last = crm_map_get(crm_map_get(r, "result"), "last");
            if (last && strcmp(crm_map_str(last, "job", ""), job) == 0) {
                print_message("value job: %lld contacts, %lld customers, %lld updated, %lld pages in %.2f s;"
                              " cpu %.3f s, longest page %.1f ms\n",
                              (long long)crm_map_int(last, "contacts", 0), (long long)crm_map_int(last, "customers", 0),
                              (long long)crm_map_int(last, "updated", 0), (long long)crm_map_int(last, "pages", 0),
                              crm_test_now_s() - t0, crm_value_as_double(crm_map_get(last, "cpu_s")),
                              1000 * crm_value_as_double(crm_map_get(last, "max_page_s")));
                assert_int_equal(crm_map_int(last, "contacts", 0), NC + 1);
                assert_true(crm_map_int(last, "pages", 0) >= 2 * (NC + 1) / 50);
                crm_value_free(r);
                break;
            }
            crm_value_free(r);
            assert_true(crm_test_now_s() - t0 < 60);
            usleep(50000);
        }
    }

    /* the independent computation: frequency and monetary over the RFM
     * window (rfm_window_days = 365), ABC and CLV over the whole history */
    int64_t R[NC], F[NC], M[NC], S[NC], V[NC], clv[NC];
    int n = 0, in_window = 0;
    int64_t revenue = 0, a_cut = 0, b_cut = 0;
    for (int k = 0; k < nmade; k++)
        if (made[k].at >= now - 365 * (int64_t)DAY) {
            cs[made[k].contact].wn++;
            cs[made[k].contact].wspent += made[k].amount;
            in_window++;
        }
    /* the data set has orders on both sides of the window's edge */
    assert_true(in_window > 0 && in_window < nmade);
    free(made);
    for (int i = 0; i < NC; i++) {
        if (!cs[i].n)
            continue;
        clv[i] = clv_of(&cs[i], now);
        R[n] = cs[i].last;
        F[n] = cs[i].wn;
        M[n] = cs[i].wspent;
        S[n] = cs[i].spent;
        V[n] = clv[i];
        revenue += cs[i].spent;
        n++;
    }
    qsort(R, (size_t)n, sizeof *R, cmp_i64);
    qsort(F, (size_t)n, sizeof *F, cmp_i64);
    qsort(M, (size_t)n, sizeof *M, cmp_i64);
    qsort(S, (size_t)n, sizeof *S, cmp_i64);
    qsort(V, (size_t)n, sizeof *V, cmp_i64);
    {
        double cum = 0, ag = (double)revenue * 0.80, bg = (double)revenue * (0.80 + 0.15);
        int a_set = 0;
        for (int i = n - 1; i >= 0; i--) {
            cum += (double)S[i];
            if (!a_set && cum >= ag) {
                a_cut = S[i];
                a_set = 1;
            }
            if (cum >= bg) {
                b_cut = S[i];
                break;
            }
        }
    }
    r = req(&c, "{\"op\": \"query\", \"collection\": \"contacts\", \"where\": {\"id\": {\"prefix\": \"c_v\"}}, \"limit\": 1000}");
    const crm_value *recs = crm_map_get(crm_map_get(r, "result"), "records");
    assert_int_equal(recs->u.arr.n, NC);
    int classes[4] = {0}, abc[3] = {0};
    for (size_t k = 0; k < recs->u.arr.n; k++) {
        const crm_value *rec = recs->u.arr.items[k];
        int i = atoi(crm_map_str(rec, "id", "") + 3);
        const cust *x = &cs[i];
        if (!x->n) {
            assert_null(crm_map_get(rec, "rfm_r"));
            assert_null(crm_map_get(rec, "abc_class"));
            assert_null(crm_map_get(rec, "clv"));
            assert_null(crm_map_get(rec, "value_class"));
            assert_null(crm_map_get(rec, "churn_risk"));
            continue;
        }
        int64_t er = quintile(R, n, x->last), ef = quintile(F, n, x->wn), em = quintile(M, n, x->wspent);
        int64_t ecs = quintile(V, n, clv[i]);
        const char *eabc = revenue > 0 && x->spent > 0 && x->spent >= a_cut ? "A"
                           : revenue > 0 && x->spent > 0 && x->spent >= b_cut ? "B" : "C";
        const char *evc = clv[i] < 0 ? "below_zero"
                          : em >= 4 && ecs >= 4 ? "most_valuable"
                          : ecs >= 4 ? "most_growable" : "maintain";
        assert_int_equal(crm_map_int(rec, "order_count", -1), x->n);
        assert_int_equal(crm_map_int(rec, "total_spent", -1), x->spent);
        assert_int_equal(crm_map_int(rec, "rfm_r", 0), er);
        assert_int_equal(crm_map_int(rec, "rfm_f", 0), ef);
        assert_int_equal(crm_map_int(rec, "rfm_m", 0), em);
        assert_true(llabs(crm_map_int(rec, "clv", INT64_MIN) - clv[i]) <= 1);
        assert_string_equal(crm_map_str(rec, "abc_class", ""), eabc);
        assert_string_equal(crm_map_str(rec, "value_class", ""), evc);
        assert_true(fabs(crm_value_as_double(crm_map_get(rec, "churn_risk")) - churn_of(x, now)) < 0.0015);
        classes[evc[0] == 'b' ? 0 : evc[5] == 'v' ? 1 : evc[5] == 'g' ? 2 : 3]++;
        abc[eabc[0] - 'A']++;
        /* hand-checked: the whale and the tiny customer */
        if (i == 0) {
            assert_string_equal(eabc, "A");
            assert_int_equal(em, 5);
            assert_string_equal(evc, "most_valuable");
        }
        if (i == 1) {
            /* AOV 1.00: 1.00 x 0.30 - 5.00 per order < 0 */
            assert_string_equal(evc, "below_zero");
            assert_int_equal(em, 1);
            assert_string_equal(eabc, "C");
            assert_true(clv[i] < 0);
        }
    }
    print_message("%d customers: below_zero %d, most_valuable %d, most_growable %d, maintain %d; A %d, B %d, C %d\n",
                  n, classes[0], classes[1], classes[2], classes[3], abc[0], abc[1], abc[2]);
    /* the data set exercises every class */
    for (int k = 0; k < 4; k++)
        assert_true(classes[k] > 0);
    for (int k = 0; k < 3; k++)
        assert_true(abc[k] > 0);
    crm_value_free(r);
    free(b.s);
    ws_close(&c);
}

/* The daily timer, armed by the first order, starts jobs by itself. */
static void test_daily_timer_runs_the_job(void **state)
{
    fixture *f = *state;
    ws_client c;
    crm_value *r;
    double t0;
    int64_t t;
    connect_authed(f, &c);
    r = req(&c, "{\"op\": \"create\", \"collection\": \"contacts\", \"record\": {\"id\": \"c_d\", \"name\": \"D\"}}");
    t = crm_map_int(crm_map_get(r, "result"), "_created", 0);
    crm_value_free(r);
    crm_value_free(req(&c, "{\"op\": \"create\", \"collection\": \"orders\", \"record\": {\"contact\": \"c_d\","
                           " \"amount\": 5000, \"currency\": \"EUR\", \"status\": \"paid\", \"ordered_at\": %lld}}",
                       (long long)t));
    t0 = crm_test_now_s();
    for (;;) {
        r = req(&c, "{\"op\": \"call\", \"method\": \"value.status\", \"params\": {}}");
        const crm_value *last = crm_map_get(crm_map_get(r, "result"), "last");
        int done = last && strcmp(crm_map_str(last, "reason", ""), "daily") == 0 &&
                   crm_map_int(last, "customers", 0) == 1;
        crm_value_free(r);
        if (done)
            break;
        assert_true(crm_test_now_s() - t0 < 10);
        usleep(50000);
    }
    print_message("daily job ran %.2f s after the first order (1 day = 1 s)\n", crm_test_now_s() - t0);
    r = req(&c, "{\"op\": \"get\", \"collection\": \"contacts\", \"id\": \"c_d\"}");
    const crm_value *rec = crm_map_get(r, "result");
    /* one customer: nobody below it, so scores 1; A; CLV (5000*0.3-500)*1*3 = 3000 */
    assert_int_equal(crm_map_int(rec, "rfm_r", 0), 1);
    assert_int_equal(crm_map_int(rec, "rfm_m", 0), 1);
    assert_string_equal(crm_map_str(rec, "abc_class", ""), "A");
    assert_int_equal(crm_map_int(rec, "clv", 0), 3000);
    crm_value_free(r);
    ws_close(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_scores_equal_independent_computation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_daily_timer_runs_the_job, setup_fast, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
