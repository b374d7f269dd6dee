/*
 * clv -- predictive customer value: the BG/NBD purchase model (Fader, Hardie
 * and Lee 2005) and the Gamma-Gamma spend model (Fader and Hardie 2013),
 * fitted by maximum likelihood over every customer, and per-customer
 * predictions written back to the contacts (docs/features/customer_value.md,
 * section "Predictive value").
 *
 * One job at a time, driven by the durable timer clv.step (key "job"):
 *  1. collect: pages through contacts (chunk_size per timer call) and keeps
 *     each customer's summary (x, t_x, T, n, mean spend) in memory, from the
 *     fields scripts/lifecycle.lua keeps (order_count, first_order_at,
 *     last_order_at, total_spent);
 *  2. fit: the numbers go to the plugin's worker thread, which runs
 *     Nelder-Mead on both log-likelihoods; clv.step polls for the result
 *     every 0.2 s, so the event loop never waits for the fit;
 *  3. write: the parameters go into value_models/vm_bgnbd_gg, then the
 *     contacts are paged through again and each customer gets clv,
 *     churn_risk (1 - P(alive)) and extra.value {...}, computed from the
 *     record as read in that chunk's transaction.
 * A restart loses the in-memory summary: the pending clv.step timer then
 * starts the job again from the beginning.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <crm/plugin.h>

#include "clv_model.h"

#define MODEL_ID "vm_bgnbd_gg"
#define DAY_MS 86400000.0

static const crm_api *api;

/* configuration (clv.json), read once in init */
static struct {
    double unit_days, horizon, clv_horizon, clv_step, margin, discount, spend_scale, refit_days;
    int chunk, min_customers, write_clv, write_churn, max_evals, restarts;
} cfg;

enum { IDLE, COLLECTING, FITTING, WRITING };
static const char *phase_name[] = {"idle", "collecting", "fitting", "writing"};

/* the running job: writer thread only */
static struct {
    int phase;
    char id[64];
    int64_t now, started;
    clv_cust *c;
    size_t n, cap, repeat;
    int64_t contacts, written, pages;
    double max_chunk_ms, collect_ms, write_ms;
    double par[7], ll[2];
    int evals;
    double fit_ms;
    int have_gg;
} job;
static unsigned job_seq;

/* the worker: one fit at a time */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static pthread_t worker;
static int worker_started;
static struct {
    int stopping, pending, done;   /* under lock */
    const clv_cust *c;             /* borrowed from job while pending/running */
    size_t n;
    int max_evals, restarts;
    double par[7], ll[2], ms;
    int evals;
} w;

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void *work(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&lock);
    for (;;) {
        while (!w.stopping && !w.pending)
            pthread_cond_wait(&wake, &lock);
        if (w.stopping)
            break;
        const clv_cust *c = w.c;
        size_t n = w.n;
        int me = w.max_evals, rs = w.restarts, evals = 0;
        double par[7], ll[2], t0 = mono_ms();
        pthread_mutex_unlock(&lock); /* the fit: no lock held */
        clv_fit(c, n, me, rs, par, ll, &evals);
        double ms = mono_ms() - t0;
        pthread_mutex_lock(&lock);
        memcpy(w.par, par, sizeof par);
        memcpy(w.ll, ll, sizeof ll);
        w.evals = evals;
        w.ms = ms;
        w.pending = 0;
        w.done = 1;
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

/* ---- configuration ---- */
static double cfg_num(crm_plugin *p, const char *key, double def)
{
    const crm_value *v = api->config(p, key);
    if (v && v->type == CRM_T_INT)
        return (double)v->u.i;
    if (v && v->type == CRM_T_NUM)
        return v->u.n;
    return def;
}

static int cfg_bool(crm_plugin *p, const char *key, int def)
{
    const crm_value *v = api->config(p, key);
    return v && v->type == CRM_T_BOOL ? v->u.b : def;
}

/* ---- small value helpers ---- */
static int set_num(crm_value *m, const char *k, double x)
{
    return api->map_set(m, k, isfinite(x) ? api->value_num(x) : api->value_nil());
}
static int set_int(crm_value *m, const char *k, int64_t x)
{
    return api->map_set(m, k, api->value_int(x));
}
static int set_str(crm_value *m, const char *k, const char *s)
{
    return api->map_set(m, k, api->value_str(s, strlen(s)));
}
static int64_t get_int(const crm_value *m, const char *k, int64_t def)
{
    const crm_value *v = m ? api->map_get(m, k) : NULL;
    if (v && v->type == CRM_T_INT)
        return v->u.i;
    if (v && v->type == CRM_T_NUM)
        return (int64_t)v->u.n;
    return def;
}
static int has(const crm_value *m, const char *k)
{
    const crm_value *v = m ? api->map_get(m, k) : NULL;
    return v && v->type != CRM_T_NIL;
}

/* Writes patch into the model record (created on first use). */
static int model_put(crm_ctx *ctx, crm_value *patch)
{
    crm_value *cur = NULL;
    int rc = api->get(ctx, "value_models", MODEL_ID, &cur);
    api->value_free(cur);
    if (rc == CRM_NOT_FOUND) {
        /* a new record: drop the nils that mean "remove" in a patch */
        crm_value *rec = api->value_map();
        if (!rec)
            return api->error(ctx, CRM_INTERNAL, "out of memory");
        for (size_t i = 0; i < patch->u.map.n; i++)
            if (patch->u.map.kv[i].val->type != CRM_T_NIL)
                api->map_set(rec, patch->u.map.kv[i].key, api->value_dup(patch->u.map.kv[i].val));
        set_str(rec, "id", MODEL_ID);
        set_str(rec, "model", "bgnbd_gg");
        rc = api->create(ctx, "value_models", rec, NULL);
        api->value_free(rec);
    } else if (rc == CRM_OK) {
        rc = api->update(ctx, "value_models", MODEL_ID, patch, 0, NULL);
    }
    api->value_free(patch);
    return rc;
}

static crm_value *job_stats(void)
{
    crm_value *s = api->value_map();
    if (!s)
        return NULL;
    set_int(s, "contacts", job.contacts);
    set_int(s, "pages", job.pages);
    set_num(s, "max_chunk_ms", job.max_chunk_ms);
    set_num(s, "collect_ms", job.collect_ms);
    set_num(s, "write_ms", job.write_ms);
    return s;
}

/* The payload carries the counters as of this step's start: a step that
 * fails (or whose commit fails) is retried by the kernel with the same
 * payload, and starts again from them (the in-memory summary is cut back). */
static int schedule_step(crm_ctx *ctx, double seconds, const char *phase, const char *after)
{
    crm_value *pl = api->value_map();
    int rc;
    if (!pl || set_str(pl, "job", job.id) || set_str(pl, "phase", phase) ||
        set_int(pl, "n", (int64_t)job.n) || set_int(pl, "repeat", (int64_t)job.repeat) ||
        set_int(pl, "contacts", job.contacts) || set_int(pl, "written", job.written) ||
        (after && set_str(pl, "after", after))) {
        api->value_free(pl);
        return api->error(ctx, CRM_INTERNAL, "out of memory");
    }
    rc = api->schedule(ctx, seconds, "clv.step", pl, "job");
    api->value_free(pl);
    return rc;
}

static int start_job(crm_ctx *ctx, const char *reason)
{
    crm_value *patch;
    job.phase = COLLECTING;
    job.now = api->now(ctx);
    job.started = job.now;
    snprintf(job.id, sizeof job.id, "%lld-%u", (long long)job.now, ++job_seq);
    job.n = job.repeat = 0;
    job.contacts = job.written = job.pages = 0;
    job.max_chunk_ms = job.collect_ms = job.write_ms = job.fit_ms = 0;
    api->log(api->ctx_plugin(ctx), CRM_LOG_INFO, "fit job %s started (%s)", job.id, reason);
    patch = api->value_map();
    if (!patch || set_str(patch, "status", "collecting") || set_str(patch, "job", job.id) ||
        api->map_set(patch, "error", api->value_nil())) {
        api->value_free(patch);
        return api->error(ctx, CRM_INTERNAL, "out of memory");
    }
    int rc = model_put(ctx, patch);
    return rc ? rc : schedule_step(ctx, 0, "collect", NULL);
}

static int fail_job(crm_ctx *ctx, const char *why)
{
    crm_value *patch = api->value_map();
    api->log(api->ctx_plugin(ctx), CRM_LOG_WARN, "fit job %s failed: %s", job.id, why);
    job.phase = IDLE;
    if (!patch || set_str(patch, "status", "failed") || set_str(patch, "error", why)) {
        api->value_free(patch);
        return api->error(ctx, CRM_INTERNAL, "out of memory");
    }
    return model_put(ctx, patch);
}

/* ---- predictions for one contact record (writer thread) ---- */
typedef struct pred {
    double x, tx, T, p_alive, exp_purchases, exp_spend, clv;
} pred;

static int summarise(const crm_value *rec, int64_t now, clv_cust *out)
{
    int64_t k = get_int(rec, "order_count", 0);
    if (k < 1 || !has(rec, "first_order_at") || !has(rec, "last_order_at"))
        return 0;
    double unit = cfg.unit_days * DAY_MS;
    double first = (double)get_int(rec, "first_order_at", 0), last = (double)get_int(rec, "last_order_at", 0);
    out->x = (double)(k - 1);
    out->tx = fmax(0, (last - first) / unit);
    out->T = fmax(out->tx, ((double)now - first) / unit);
    out->n = (double)k;
    out->m = (double)get_int(rec, "total_spent", 0) / (double)k / cfg.spend_scale;
    if (out->x == 0)
        out->tx = 0;
    return 1;
}

static void predict(const clv_cust *c, pred *o)
{
    const double *P = job.par;
    o->x = c->x;
    o->tx = c->tx;
    o->T = c->T;
    o->p_alive = clv_p_alive(P[0], P[1], P[2], P[3], c->x, c->tx, c->T);
    o->exp_purchases = clv_expected(P[0], P[1], P[2], P[3], c->x, c->tx, c->T, cfg.horizon);
    o->exp_spend = job.have_gg && P[5] > 1 ? clv_expected_spend(P[4], P[5], P[6], c->n, c->m) : c->m;
    double sum = 0, prev = 0;
    int steps = (int)ceil(cfg.clv_horizon / cfg.clv_step);
    for (int k = 1; k <= steps; k++) {
        double t = fmin(k * cfg.clv_step, cfg.clv_horizon);
        double e = clv_expected(P[0], P[1], P[2], P[3], c->x, c->tx, c->T, t);
        sum += (e - prev) / pow(1 + cfg.discount, t * cfg.unit_days / 365.0);
        prev = e;
    }
    o->clv = cfg.margin * o->exp_spend * sum;
}

static int write_contact(crm_ctx *ctx, const crm_value *rec, const pred *o)
{
    const crm_value *id = api->map_get(rec, "id"), *ex = api->map_get(rec, "extra");
    crm_value *patch = api->value_map(), *extra = ex && ex->type == CRM_T_MAP ? api->value_dup(ex) : api->value_map();
    crm_value *v = api->value_map();
    int rc;
    if (!patch || !extra || !v || !id || id->type != CRM_T_STR) {
        api->value_free(patch);
        api->value_free(extra);
        api->value_free(v);
        return api->error(ctx, CRM_INTERNAL, "out of memory");
    }
    double scale = cfg.spend_scale;
    set_num(v, "p_alive", round(o->p_alive * 1e6) / 1e6);
    set_num(v, "expected_purchases", round(o->exp_purchases * 1e4) / 1e4);
    set_num(v, "horizon_units", cfg.horizon);
    set_num(v, "expected_spend", round(o->exp_spend * scale));
    set_num(v, "clv", round(o->clv * scale));
    set_num(v, "x", o->x);
    set_num(v, "t_x", round(o->tx * 1e4) / 1e4);
    set_num(v, "T", round(o->T * 1e4) / 1e4);
    set_int(v, "fitted_at", job.now);
    api->map_set(extra, "value", v);
    api->map_set(patch, "extra", extra);
    if (cfg.write_clv)
        set_int(patch, "clv", (int64_t)llround(o->clv * scale));
    if (cfg.write_churn)
        set_num(patch, "churn_risk", fmin(1, fmax(0, round((1 - o->p_alive) * 1e6) / 1e6)));
    rc = api->update(ctx, "contacts", id->u.str.s, patch, get_int(rec, "_rev", 0), NULL);
    api->value_free(patch);
    if (rc == CRM_NOT_FOUND || rc == CRM_CONFLICT)
        rc = CRM_OK; /* gone or changed under us: the next fit gets it */
    return rc;
}

/* ---- the job's steps ---- */
static int step_collect(crm_ctx *ctx, const char *after)
{
    crm_value *page = NULL;
    int rc = api->query(ctx, "contacts", NULL, NULL, (size_t)cfg.chunk, after, &page);
    if (rc)
        return rc;
    const crm_value *recs = api->map_get(page, "records"), *next = api->map_get(page, "next");
    for (size_t i = 0; recs && recs->type == CRM_T_ARR && i < recs->u.arr.n; i++) {
        clv_cust c;
        job.contacts++;
        if (!summarise(recs->u.arr.items[i], job.now, &c))
            continue;
        if (job.n == job.cap) {
            size_t cap = job.cap ? job.cap * 2 : 1024;
            clv_cust *nc = realloc(job.c, cap * sizeof *nc);
            if (!nc) {
                api->value_free(page);
                return api->error(ctx, CRM_INTERNAL, "out of memory");
            }
            job.c = nc;
            job.cap = cap;
        }
        job.c[job.n++] = c;
        job.repeat += c.x > 0;
    }
    job.pages++;
    if (next && next->type == CRM_T_STR) {
        rc = schedule_step(ctx, 0, "collect", next->u.str.s);
        api->value_free(page);
        return rc;
    }
    api->value_free(page);
    job.collect_ms = (double)(api->now(ctx) - job.started);
    if (job.n < (size_t)cfg.min_customers) {
        char why[160];
        snprintf(why, sizeof why, "%zu customers with orders, at least %d needed", job.n, cfg.min_customers);
        return fail_job(ctx, why);
    }
    /* hand the summary to the worker */
    pthread_mutex_lock(&lock);
    w.c = job.c;
    w.n = job.n;
    w.max_evals = cfg.max_evals;
    w.restarts = cfg.restarts;
    w.done = 0;
    w.pending = 1;
    pthread_cond_signal(&wake);
    pthread_mutex_unlock(&lock);
    job.phase = FITTING;
    crm_value *patch = api->value_map();
    if (!patch || set_str(patch, "status", "fitting")) {
        api->value_free(patch);
        return api->error(ctx, CRM_INTERNAL, "out of memory");
    }
    rc = model_put(ctx, patch);
    return rc ? rc : schedule_step(ctx, 0.2, "wait", NULL);
}

static int step_wait(crm_ctx *ctx)
{
    int done;
    pthread_mutex_lock(&lock);
    done = w.done;
    if (done) {
        memcpy(job.par, w.par, sizeof job.par);
        memcpy(job.ll, w.ll, sizeof job.ll);
        job.evals = w.evals;
        job.fit_ms = w.ms;
        w.done = 0;
    }
    pthread_mutex_unlock(&lock);
    if (!done)
        return schedule_step(ctx, 0.2, "wait", NULL);
    job.have_gg = isfinite(job.par[4]) && isfinite(job.par[5]) && isfinite(job.par[6]);
    for (int j = 0; j < 4; j++)
        if (!isfinite(job.par[j]) || job.par[j] <= 0)
            return fail_job(ctx, "the BG/NBD fit did not converge");
    api->log(api->ctx_plugin(ctx), CRM_LOG_INFO,
             "fit job %s: %zu customers, r %.4g alpha %.4g a %.4g b %.4g (LL %.6g); p %.4g q %.4g gamma %.4g (LL %.6g); %d evaluations in %.0f ms",
             job.id, job.n, job.par[0], job.par[1], job.par[2], job.par[3], job.ll[0], job.par[4], job.par[5],
             job.par[6], job.ll[1], job.evals, job.fit_ms);
    crm_value *patch = api->value_map();
    static const char *names[7] = {"r", "alpha", "a", "b", "p", "q", "gamma"};
    if (!patch)
        return api->error(ctx, CRM_INTERNAL, "out of memory");
    for (int j = 0; j < 7; j++)
        set_num(patch, names[j], job.par[j]);
    set_num(patch, "ll_bgnbd", job.ll[0]);
    set_num(patch, "ll_gg", job.ll[1]);
    set_int(patch, "n_customers", (int64_t)job.n);
    set_int(patch, "n_repeat", (int64_t)job.repeat);
    api->map_set(patch, "fitted_at", api->value_int(job.now));
    set_num(patch, "time_unit_days", cfg.unit_days);
    set_num(patch, "fit_ms", round(job.fit_ms * 10) / 10);
    set_int(patch, "evals", job.evals);
    /* whether contacts' clv and churn_risk are this model's: the value
     * script (scripts/customer_value.lua) leaves them alone when they are */
    api->map_set(patch, "writes_clv", api->value_bool(cfg.write_clv));
    api->map_set(patch, "writes_churn_risk", api->value_bool(cfg.write_churn));
    set_str(patch, "status", "writing");
    int rc = model_put(ctx, patch);
    /* the summary is no longer needed: predictions are made from each record as written */
    free(job.c);
    job.c = NULL;
    job.n = job.cap = 0;
    job.phase = WRITING;
    job.written = 0;
    job.n = 0;
    return rc ? rc : schedule_step(ctx, 0, "write", NULL);
}

static int step_write(crm_ctx *ctx, const char *after)
{
    crm_value *page = NULL;
    int rc = api->query(ctx, "contacts", NULL, NULL, (size_t)cfg.chunk, after, &page);
    if (rc)
        return rc;
    const crm_value *recs = api->map_get(page, "records"), *next = api->map_get(page, "next");
    for (size_t i = 0; rc == CRM_OK && recs && recs->type == CRM_T_ARR && i < recs->u.arr.n; i++) {
        clv_cust c;
        pred o;
        if (!summarise(recs->u.arr.items[i], job.now, &c))
            continue;
        predict(&c, &o);
        rc = write_contact(ctx, recs->u.arr.items[i], &o);
        job.written++;
    }
    job.pages++;
    if (rc == CRM_OK && next && next->type == CRM_T_STR) {
        rc = schedule_step(ctx, 0, "write", next->u.str.s);
        api->value_free(page);
        return rc;
    }
    api->value_free(page);
    if (rc)
        return rc;
    int64_t fin = api->now(ctx);
    job.write_ms = (double)fin - (double)job.started - job.collect_ms;
    job.phase = IDLE;
    crm_value *patch = api->value_map();
    if (!patch)
        return api->error(ctx, CRM_INTERNAL, "out of memory");
    set_str(patch, "status", "ready");
    set_int(patch, "written", job.written);
    api->map_set(patch, "finished_at", api->value_int(fin));
    api->map_set(patch, "stats", job_stats());
    rc = model_put(ctx, patch);
    api->log(api->ctx_plugin(ctx), CRM_LOG_INFO, "fit job %s: predictions written to %lld contacts",
             job.id, (long long)job.written);
    if (rc == CRM_OK && cfg.refit_days > 0)
        rc = api->schedule(ctx, cfg.refit_days * 86400.0, "clv.refit", NULL, "refit");
    return rc;
}

static int on_step(crm_ctx *ctx, const char *name, const crm_value *payload, void *ud)
{
    (void)name;
    (void)ud;
    const crm_value *jid = payload ? api->map_get(payload, "job") : NULL;
    const crm_value *ph = payload ? api->map_get(payload, "phase") : NULL;
    const crm_value *af = payload ? api->map_get(payload, "after") : NULL;
    const char *after = af && af->type == CRM_T_STR ? af->u.str.s : NULL;
    if (!jid || jid->type != CRM_T_STR || !ph || ph->type != CRM_T_STR)
        return CRM_OK;
    if (job.phase == IDLE || strcmp(jid->u.str.s, job.id) != 0) {
        /* a restart lost the job's in-memory state: begin again */
        int busy;
        pthread_mutex_lock(&lock);
        busy = w.pending;
        pthread_mutex_unlock(&lock);
        if (busy)
            return CRM_OK;
        return start_job(ctx, "restarted");
    }
    double t0 = mono_ms();
    int rc;
    if (job.phase == COLLECTING) {
        int64_t n0 = get_int(payload, "n", 0);
        if (n0 >= 0 && (size_t)n0 <= job.n) {
            job.n = (size_t)n0;
            job.repeat = (size_t)get_int(payload, "repeat", 0);
            job.contacts = get_int(payload, "contacts", 0);
        }
    } else if (job.phase == WRITING) {
        job.written = get_int(payload, "written", 0);
    }
    if (strcmp(ph->u.str.s, "collect") == 0 && job.phase == COLLECTING)
        rc = step_collect(ctx, after);
    else if (strcmp(ph->u.str.s, "wait") == 0 && job.phase == FITTING)
        rc = step_wait(ctx);
    else if (strcmp(ph->u.str.s, "write") == 0 && job.phase == WRITING)
        rc = step_write(ctx, after);
    else
        rc = CRM_OK;
    double dt = mono_ms() - t0;
    if (dt > job.max_chunk_ms)
        job.max_chunk_ms = dt;
    return rc;
}

static int on_refit(crm_ctx *ctx, const char *name, const crm_value *payload, void *ud)
{
    (void)name;
    (void)payload;
    (void)ud;
    if (job.phase != IDLE)
        return CRM_OK;
    return start_job(ctx, "periodic refit");
}

/* ---- methods ---- */

/* value.fit {}: starts a fit; CONFLICT while one runs. */
static int m_fit(crm_ctx *ctx, const crm_value *params, crm_value **result, void *ud)
{
    (void)params;
    (void)ud;
    if (job.phase != IDLE)
        return api->error(ctx, CRM_CONFLICT, "a fit is already running (job %s, %s)", job.id,
                          phase_name[job.phase]);
    int rc = start_job(ctx, "value.fit");
    if (rc)
        return rc;
    *result = api->value_map();
    if (!*result || set_str(*result, "job", job.id) || set_int(*result, "now", job.now) ||
        set_str(*result, "status", "collecting"))
        return api->error(ctx, CRM_INTERNAL, "out of memory");
    return CRM_OK;
}

/* value.model {}: the stored model record (parameters, log-likelihoods, n,
 * when fitted, status) plus the running job, if any. */
static int m_model(crm_ctx *ctx, const crm_value *params, crm_value **result, void *ud)
{
    (void)params;
    (void)ud;
    crm_value *rec = NULL;
    int rc = api->get(ctx, "value_models", MODEL_ID, &rec);
    if (rc == CRM_NOT_FOUND) {
        rec = api->value_map();
        if (rec)
            set_str(rec, "status", "none");
    } else if (rc) {
        return rc;
    }
    if (!rec)
        return api->error(ctx, CRM_INTERNAL, "out of memory");
    if (job.phase != IDLE) {
        crm_value *r = job_stats();
        if (r) {
            set_str(r, "job", job.id);
            set_str(r, "phase", phase_name[job.phase]);
            set_int(r, "customers", (int64_t)job.n);
            set_int(r, "written", job.written);
        }
        api->map_set(rec, "running", r);
    }
    *result = rec;
    return CRM_OK;
}

/* value.loglik {r, alpha, a, b, x, t_x, T} and/or {p, q, gamma, n, m}: the
 * log-likelihood of one customer under the given parameters (for checking
 * the formulas by hand); also P(alive) and, with t, E[Y(t)]. */
static int m_loglik(crm_ctx *ctx, const crm_value *params, crm_value **result, void *ud)
{
    (void)ud;
    double v[13];
    static const char *k[13] = {"r", "alpha", "a", "b", "x", "t_x", "T", "p", "q", "gamma", "n", "m", "t"};
    int got[13];
    if (!params || params->type != CRM_T_MAP)
        return api->error(ctx, CRM_BAD_REQUEST, "value.loglik needs a map of parameters");
    for (int i = 0; i < 13; i++) {
        const crm_value *x = api->map_get(params, k[i]);
        got[i] = x && (x->type == CRM_T_INT || x->type == CRM_T_NUM);
        v[i] = !got[i] ? 0 : x->type == CRM_T_INT ? (double)x->u.i : x->u.n;
    }
    *result = api->value_map();
    if (!*result)
        return api->error(ctx, CRM_INTERNAL, "out of memory");
    if (got[0] && got[1] && got[2] && got[3] && got[4] && got[5] && got[6]) {
        if (v[0] <= 0 || v[1] <= 0 || v[2] <= 0 || v[3] <= 0 || v[4] < 0 || v[5] < 0 || v[6] < v[5])
            return api->error(ctx, CRM_BAD_REQUEST, "need r, alpha, a, b > 0 and 0 <= t_x <= T");
        set_num(*result, "bgnbd", clv_bgnbd_ll1(v[0], v[1], v[2], v[3], v[4], v[5], v[6]));
        set_num(*result, "p_alive", clv_p_alive(v[0], v[1], v[2], v[3], v[4], v[5], v[6]));
        if (got[12])
            set_num(*result, "expected", clv_expected(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[12]));
    }
    if (got[7] && got[8] && got[9] && got[10] && got[11]) {
        if (v[7] <= 0 || v[8] <= 0 || v[9] <= 0 || v[10] < 1 || v[11] <= 0)
            return api->error(ctx, CRM_BAD_REQUEST, "need p, q, gamma, m > 0 and n >= 1");
        set_num(*result, "gg", clv_gg_ll1(v[7], v[8], v[9], v[10], v[11]));
        set_num(*result, "expected_spend", clv_expected_spend(v[7], v[8], v[9], v[10], v[11]));
    }
    return CRM_OK;
}

static int clv_init(crm_plugin *p, const crm_api *a, char *errbuf, size_t cap)
{
    int rc;
    api = a;
    cfg.unit_days = cfg_num(p, "time_unit_days", 7);
    cfg.horizon = cfg_num(p, "horizon_units", 52);
    cfg.clv_horizon = cfg_num(p, "clv_horizon_units", 156);
    cfg.clv_step = cfg_num(p, "clv_step_units", 4);
    cfg.margin = cfg_num(p, "margin", 0.30);
    cfg.discount = cfg_num(p, "discount_rate", 0.10);
    cfg.spend_scale = cfg_num(p, "spend_scale", 100);
    cfg.refit_days = cfg_num(p, "refit_every_days", 7);
    cfg.chunk = (int)cfg_num(p, "chunk_size", 200);
    cfg.min_customers = (int)cfg_num(p, "min_customers", 50);
    cfg.max_evals = (int)cfg_num(p, "max_evals", 4000);
    cfg.restarts = (int)cfg_num(p, "restarts", 3);
    cfg.write_clv = cfg_bool(p, "write_clv", 1);
    cfg.write_churn = cfg_bool(p, "write_churn_risk", 1);
    if (cfg.unit_days <= 0 || cfg.horizon < 0 || cfg.clv_horizon < 0 || cfg.clv_step <= 0 ||
        cfg.spend_scale <= 0 || cfg.discount <= -1 || cfg.chunk < 1 || cfg.chunk > 1000 ||
        cfg.min_customers < 2 || cfg.max_evals < 100 || cfg.restarts < 0) {
        snprintf(errbuf, cap,
                 "clv.json: need time_unit_days > 0, horizon_units >= 0, clv_step_units > 0, spend_scale > 0,"
                 " discount_rate > -1, chunk_size 1..1000, min_customers >= 2, max_evals >= 100, restarts >= 0");
        return CRM_BAD_REQUEST;
    }
    if ((rc = api->on_timer(p, "clv.step", on_step, NULL)) || (rc = api->on_timer(p, "clv.refit", on_refit, NULL)) ||
        (rc = api->method(p, "value.fit", m_fit, NULL)) || (rc = api->method(p, "value.model", m_model, NULL)) ||
        (rc = api->method(p, "value.loglik", m_loglik, NULL)))
        return rc;
    if (pthread_create(&worker, NULL, work, NULL) != 0) {
        snprintf(errbuf, cap, "cannot start the fit thread");
        return CRM_INTERNAL;
    }
    worker_started = 1;
    return CRM_OK;
}

static void clv_fini(crm_plugin *p, const crm_api *a)
{
    (void)p;
    (void)a;
    if (worker_started) {
        pthread_mutex_lock(&lock);
        w.stopping = 1;
        pthread_cond_signal(&wake);
        pthread_mutex_unlock(&lock);
        pthread_join(worker, NULL); /* waits for a fit in progress to end */
        worker_started = 0;
    }
    free(job.c);
    job.c = NULL;
}

CRM_PLUGIN_DECLARE("clv", "1.0", clv_init, clv_fini)
