/*
 * bench_features -- the CRM features on the write path (issue 6):
 *  (a) orders per second with every feature's hooks on (the bundled
 *      schemas, the repo's scripts/ and the build's plugins/, loaded
 *      in-process as `crmd serve` loads them) against the kernel's bare
 *      create rate (same schemas, no scripts or plugins), in the same run:
 *      batches of 64 creates through crm_store_apply with the bus's unit in
 *      each batch (the server's group commit), fsync per batch.  A slice is
 *      the creates plus running every after-hook and due timer they caused
 *      (the time to drain counts), so the rate is what the features can
 *      sustain, not what they postpone.  Slices alternate; median reported.
 *  (b) the time `crmd demo` takes (crm_demo_run, in-process, durable) at
 *      CRM_BENCH_DEMO_CONTACTS contacts (default 10000, about 10 orders each).
 *  (c) a full value recomputation (scripts/customer_value.lua's
 *      value.recompute) over the generated customers: the time until its
 *      chunked job is done, and the longest single stall of the event loop
 *      while it runs, measured as the longest single crm_store_apply of a
 *      bus round (a round is what the server's loop does between two polls:
 *      nothing else is served during it).
 *
 * Env: CRM_BENCH_DIR (stores; default .), CRM_BENCH_SECONDS (per slice,
 * default 1), CRM_BENCH_DEMO_CONTACTS, CRM_BENCH_VALUE_DIR (also (c) on that
 * store), CRM_BENCH_VALUE_ONLY=1 (only that), CRM_BENCH_SLOW_ROUNDS=MS (print
 * every round longer than MS to stderr).  Output: Markdown on stdout.
 */
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bus.h"
#include "codec.h"
#include "demo.h"
#include "lua_host.h"
#include "benchutil.h"
#include "machine.h"
#include "plugin.h"
#include "schema.h"
#include "store.h"

#define BATCH 64
#define SLICES 5
#define NCONTACTS 2000

static char repo[PATH_MAX], scripts_dir[PATH_MAX + 16], schemas_dir[PATH_MAX + 16],
    plugins_dir[PATH_MAX + 16];

static void find_dirs(void)
{
    char exe[PATH_MAX], tmp[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        bench_die("cannot read /proc/self/exe");
    exe[n] = '\0';
    /* BUILD/bench/bench_features -> BUILD/plugins */
    snprintf(tmp, sizeof tmp, "%s", exe);
    snprintf(plugins_dir, sizeof plugins_dir, "%s/plugins", dirname(dirname(tmp)));
    /* REPO/bench/bench_features.c -> REPO */
    snprintf(tmp, sizeof tmp, "%s", __FILE__);
    snprintf(repo, sizeof repo, "%s", dirname(dirname(tmp)));
    snprintf(scripts_dir, sizeof scripts_dir, "%s/scripts", repo);
    snprintf(schemas_dir, sizeof schemas_dir, "%s/schemas", repo);
}

static void quiet_log(void *ud, int level, const char *who, const char *msg)
{
    (void)ud;
    if (level >= CRM_LOG_ERROR)
        fprintf(stderr, "bench_features: %s: %s\n", who, msg);
}

typedef struct variant {
    const char *name;
    int features;
    crm_store *s;
    crm_bus *bus;
    crm_plugins *plugins;
    crm_lua *lua;
    uint64_t next;
    double rates[SLICES];
    uint64_t writes_per_order_x100;
} variant;

/* One batch as the server runs it (crm_bus_apply: u has room for the bus's
 * unit); returns the apply's seconds.  *ran (may be NULL): the bus's unit
 * was in it. */
static double apply_round(crm_bus *bus, crm_unit *u, size_t n, int *ran)
{
    crm_err e;
    double t0 = bench_now_s();
    if (crm_bus_apply(bus, u, n, ran, &e) != CRM_OK)
        bench_die("apply: %s", e.msg);
    return bench_now_s() - t0;
}

static double apply_batch(crm_store *s, crm_bus *bus, crm_unit *u, size_t n)
{
    (void)s;
    return apply_round(bus, u, n, NULL);
}

/* Runs after-hooks and due timers until nothing is due now; returns the
 * longest single round. */
static double drain(crm_store *s, crm_bus *bus, uint64_t *rounds)
{
    crm_unit u[1];
    double worst = 0;
    /* CRM_BENCH_SLOW_ROUNDS=MS: each round longer than MS goes to stderr */
    const double slow_ms = getenv("CRM_BENCH_SLOW_ROUNDS") ? atof(getenv("CRM_BENCH_SLOW_ROUNDS")) : 0;
    (void)s;
    for (;;) {
        int64_t ms;
        int ran;
        double t = apply_round(bus, u, 0, &ran);
        if (ran) {
            if (t > worst)
                worst = t;
            if (slow_ms > 0 && t * 1000 > slow_ms)
                fprintf(stderr, "bench_features: round %llu took %.1f ms\n",
                        (unsigned long long)(rounds ? *rounds : 0), t * 1000);
            if (rounds)
                ++*rounds;
            continue;
        }
        ms = crm_bus_next_work_ms(bus);
        if (ms < 0 || ms > 2000)
            return worst;
        usleep((useconds_t)(ms > 0 ? ms : 1) * 1000);
    }
}

static crm_value *json(const char *text)
{
    crm_limits lim = CRM_LIMITS_DEFAULT;
    crm_err e;
    crm_value *v = crm_json_decode(text, strlen(text), &lim, &e);
    if (!v)
        bench_die("json: %s", e.msg);
    return v;
}

static void create_many(variant *v, const char *coll, crm_value **recs, size_t n)
{
    crm_write w[BATCH];
    crm_unit u[BATCH + 1];
    for (size_t at = 0; at < n; at += BATCH) {
        size_t k = n - at < BATCH ? n - at : BATCH;
        memset(w, 0, sizeof w);
        memset(u, 0, sizeof u);
        for (size_t i = 0; i < k; i++) {
            w[i].op = CRM_OP_CREATE;
            w[i].coll = coll;
            w[i].data = recs[at + i];
            u[i].writes = &w[i];
            u[i].n = 1;
        }
        apply_batch(v->s, v->bus, u, k);
        for (size_t i = 0; i < k; i++) {
            if (u[i].rc != CRM_OK)
                bench_die("%s: create %s: %s", v->name, coll, u[i].err.msg);
            crm_write_clear(&w[i]);
            crm_value_free(recs[at + i]);
        }
    }
}

static void variant_open(variant *v, const char *base, const crm_schema *schema)
{
    char dir[PATH_MAX + 64];
    crm_store_opts o;
    crm_bus_opts bo;
    crm_err e;
    crm_value *recs[NCONTACTS];
    snprintf(dir, sizeof dir, "%s/%s", base, v->features ? "features" : "bare");
    crm_store_opts_default(&o);
    o.map_size = (size_t)1 << 30;
    if (crm_store_open(dir, schema, &o, &v->s, &e) != CRM_OK)
        bench_die("open %s: %s", dir, e.msg);
    crm_bus_opts_default(&bo);
    bo.log = quiet_log;
    if (crm_bus_new(v->s, &bo, &v->bus, &e) != CRM_OK)
        bench_die("bus: %s", e.msg);
    if (v->features) {
        if (crm_plugins_load(v->bus, plugins_dir, &v->plugins, &e) != CRM_OK)
            bench_die("plugins: %s", e.msg);
        if (crm_lua_open(v->bus, scripts_dir, NULL, &v->lua, &e) != CRM_OK)
            bench_die("scripts: %s", e.msg);
        /* segments as a company would have them */
        static const char *segs[] = {
            "{\"name\": \"Loyal\", \"rules\": {\"stage\": \"loyal\"}}",
            "{\"name\": \"Lapsed\", \"rules\": {\"stage\": [\"at_risk\", \"churned\"]}}",
            "{\"name\": \"Big spenders\", \"rules\": {\"field\": \"total_spent\", \"gte\": 100000}}",
            "{\"name\": \"Berlin newsletter\", \"rules\": {\"all\": [{\"field\": \"city\", \"eq\": "
            "\"Berlin\"}, {\"field\": \"consent_email\", \"eq\": true}]}}"};
        crm_value *sr[4];
        for (int i = 0; i < 4; i++)
            sr[i] = json(segs[i]);
        create_many(v, "segments", sr, 4);
    }
    for (int i = 0; i < NCONTACTS; i++) {
        char t[256];
        snprintf(t, sizeof t,
                 "{\"id\": \"c_b%05d\", \"name\": \"Anna Schmidt %d\", \"email\": \"anna.%d@example.com\", "
                 "\"city\": \"%s\", \"country\": \"DE\", \"consent_email\": %s}",
                 i, i, i, i % 3 ? "Hamburg" : "Berlin", i % 2 ? "true" : "false");
        recs[i] = json(t);
    }
    create_many(v, "contacts", recs, NCONTACTS);
    drain(v->s, v->bus, NULL);
}

static void variant_close(variant *v)
{
    crm_lua_close(v->lua);
    crm_plugins_unload(v->plugins);
    crm_bus_free(v->bus);
    crm_store_close(v->s);
}

/* Orders for `seconds`, then the hooks' work drained; orders per second. */
static double slice(variant *v, double seconds)
{
    crm_write w[BATCH];
    crm_unit u[BATCH + 1];
    crm_value *recs[BATCH];
    double t0 = bench_now_s();
    uint64_t done = 0;
    do {
        memset(w, 0, sizeof w);
        memset(u, 0, sizeof u);
        for (int i = 0; i < BATCH; i++) {
            uint64_t k = v->next++;
            char t[300];
            /* amounts log-normal-ish from a hash; a few contacts get many orders */
            uint64_t h = k * 0x9e3779b97f4a7c15ULL;
            int64_t amount = 500 + (int64_t)((h >> 40) % 20000) * (int64_t)((h >> 20) % 4 + 1);
            snprintf(t, sizeof t,
                     "{\"contact\": \"c_b%05d\", \"amount\": %" PRId64 ", \"currency\": \"EUR\", "
                     "\"status\": \"completed\", \"ordered_at\": %" PRId64 ", \"channel\": \"web\"}",
                     (int)((h >> 8) % NCONTACTS), amount, (int64_t)time(NULL) * 1000);
            recs[i] = json(t);
            w[i].op = CRM_OP_CREATE;
            w[i].coll = "orders";
            w[i].data = recs[i];
            u[i].writes = &w[i];
            u[i].n = 1;
        }
        apply_batch(v->s, v->bus, u, BATCH);
        for (int i = 0; i < BATCH; i++) {
            if (u[i].rc != CRM_OK)
                bench_die("%s: order: %s", v->name, u[i].err.msg);
            crm_write_clear(&w[i]);
            crm_value_free(recs[i]);
        }
        done += BATCH;
    } while (bench_now_s() - t0 < seconds);
    drain(v->s, v->bus, NULL);
    return (double)done / (bench_now_s() - t0);
}

/* (c): value.recompute on the store in dir (made by crmd demo). */
static void value_section(const crm_schema *schema, const char *ddir, const char *what)
{
    crm_err e;
    crm_store *s;
    crm_bus *bus;
    crm_plugins *pl;
    crm_lua *lua;
    crm_bus_opts bo;
    crm_value *res = NULL;
    uint64_t rounds = 0, customers = 0, contacts = 0;
    double t0, total, worst;
    if (crm_store_open(ddir, schema, NULL, &s, &e) != CRM_OK)
        bench_die("open demo: %s", e.msg);
    crm_bus_opts_default(&bo);
    bo.log = quiet_log;
    if (crm_bus_new(s, &bo, &bus, &e) != CRM_OK ||
        crm_plugins_load(bus, plugins_dir, &pl, &e) != CRM_OK ||
        crm_lua_open(bus, scripts_dir, NULL, &lua, &e) != CRM_OK)
        bench_die("demo store: %s", e.msg);
    if (!crm_bus_has_method(bus, "value.recompute"))
        bench_die("no value.recompute method in %s", scripts_dir);
    drain(s, bus, NULL);
    {
        crm_txn *t;
        if (crm_store_begin_read(s, &t, &e) == CRM_OK) {
            crm_txn_count(t, "contacts", &contacts, &e);
            crm_txn_end(t);
        }
    }
    t0 = bench_now_s();
    if (crm_bus_call_now(bus, "value.recompute", NULL, "bench", "admin", &res, &e) != CRM_OK)
        bench_die("value.recompute: %s", e.msg);
    worst = bench_now_s() - t0; /* the call's own batch */
    crm_value_free(res);
    {
        double w = drain(s, bus, &rounds);
        if (w > worst)
            worst = w;
    }
    total = bench_now_s() - t0;
    {
        /* the finished job's own account (value.status .last) */
        if (crm_bus_call_now(bus, "value.status", NULL, "bench", "admin", &res, &e) == CRM_OK &&
            res) {
            const crm_value *last = crm_map_get(res, "last");
            char *txt = last ? crm_json_encode(last, NULL) : NULL;
            customers = (uint64_t)crm_map_int(last, "customers", 0);
            fprintf(stderr, "bench_features: value.status last = %s\n", txt ? txt : "null");
            free(txt);
        }
        crm_value_free(res);
    }
    printf("## (c) Full value recomputation, %" PRIu64 " contacts\n\n", contacts);
    printf("`value.recompute` (scripts/customer_value.lua, a chunked job: two passes of "
           "pages run by a timer) over the %" PRIu64 " contacts %s (%" PRIu64 " of them "
           "customers), every "
           "feature loaded (the scores it writes trigger the segments' hooks too). The "
           "stall is the longest single bus round (one `crm_store_apply` of the bus's unit: "
           "the server's loop serves nothing else meanwhile), measured in-process.\n\n",
           contacts, what, customers);
    printf("| what | figure |\n|---|---:|\n");
    printf("| time until the job is done (and the hooks it caused) | %.2f s |\n", total);
    printf("| bus rounds | %" PRIu64 " |\n", rounds);
    printf("| longest single round (event-loop stall) | %.1f ms |\n\n", worst * 1000);
    crm_lua_close(lua);
    crm_plugins_unload(pl);
    crm_bus_free(bus);
    crm_store_close(s);
    }

int main(void)
{
    const char *where = getenv("CRM_BENCH_DIR") ? getenv("CRM_BENCH_DIR") : ".";
    double secs = getenv("CRM_BENCH_SECONDS") ? atof(getenv("CRM_BENCH_SECONDS")) : 1.0;
    long demo_contacts = getenv("CRM_BENCH_DEMO_CONTACTS") ? atol(getenv("CRM_BENCH_DEMO_CONTACTS"))
                                                           : 10000;
    char base[PATH_MAX], cpu[256], load[64], fs[64], ddir[PATH_MAX + 16];
    crm_schema *schema;
    crm_err e;

    find_dirs();
    snprintf(base, sizeof base, "%s/crmd-bench-features-XXXXXX", where);
    if (!mkdtemp(base))
        bench_die("mkdtemp in %s", where);
    if (crm_schema_load_dir(schemas_dir, &schema, &e) != CRM_OK)
        bench_die("schema: %s", e.msg);
    bench_cpu_model(cpu, sizeof cpu);
    bench_loadavg(load, sizeof load);
    bench_fs_type(base, fs, sizeof fs);
    printf("# The CRM features on the write path\n\n");
    printf("Machine: %s, %ld GiB, load %s, store on %s, fsync per batch (as served). "
           "Reproduce: `make bench` (or `build/bench/bench_features`).\n\n",
           cpu, bench_mem_gib(), load, fs);

    /* CRM_BENCH_VALUE_ONLY=1 with CRM_BENCH_VALUE_DIR: only (c) on that store */
    if (!getenv("CRM_BENCH_VALUE_ONLY")) {
    /* (a) */
    {
        variant vs[] = {{.name = "bare kernel", .features = 0}, {.name = "all features", .features = 1}};
        for (int i = 0; i < 2; i++)
            variant_open(&vs[i], base, schema);
        fprintf(stderr, "bench_features: (a) %zu plugins, %zu scripts\n",
                crm_plugins_count(vs[1].plugins), crm_lua_count(vs[1].lua));
        for (int i = 0; i < 2; i++)
            slice(&vs[i], secs / 4);
        for (int k = 0; k < SLICES; k++)
            for (int i = 0; i < 2; i++)
                vs[i].rates[k] = slice(&vs[i], secs);
        printf("## (a) Orders per second, every feature's hooks on vs the bare kernel\n\n");
        printf("Bundled schemas; \"all features\" loads `scripts/` (%zu scripts) and the "
               "build's `plugins/` (%zu plugins) in-process; %d contacts, 4 active segments. "
               "Batches of %d order creates through `crm_store_apply` with the bus's unit "
               "(after-hooks, timers) in each batch; a slice is %.1f s of creates plus the "
               "time to run every after-hook and timer they caused; %d slices alternating, "
               "median.\n\n",
               crm_lua_count(vs[1].lua), crm_plugins_count(vs[1].plugins), NCONTACTS, BATCH, secs,
               SLICES);
        printf("| variant | orders/s | vs bare |\n|---|---:|---:|\n");
        for (int i = 0; i < 2; i++)
            printf("| %s | %.0f | %.0f%% |\n", vs[i].name, bench_median(vs[i].rates, SLICES),
                   100.0 * bench_median(vs[i].rates, SLICES) / bench_median(vs[0].rates, SLICES));
        printf("\n");
        {
            uint64_t orders = vs[1].next, seq = crm_store_last_seq(vs[1].s);
            printf("Writes per order with the features (feed entries / orders, setup "
                   "included): %.1f.\n\n",
                   (double)seq / (double)(orders ? orders : 1));
        }
        fflush(stdout);
        for (int i = 0; i < 2; i++)
            variant_close(&vs[i]);
    }

    /* (b) */
    snprintf(ddir, sizeof ddir, "%s/demo", base);
    {
        crm_demo_opts o;
        crm_demo_stats st;
        crm_demo_opts_default(&o);
        o.data = ddir;
        o.schemas = schemas_dir;
        o.scripts = scripts_dir;
        o.plugins = plugins_dir;
        o.contacts = demo_contacts;
        o.value_recompute = 0; /* measured on its own in (c) */
        o.stats = &st;
        if (crm_demo_run(&o, &e) != CRM_OK)
            bench_die("demo: %s", e.msg);
        uint64_t records = st.contacts + st.orders + st.interactions + st.tickets;
        printf("## (b) The demo generator\n\n");
        printf("`crmd demo --contacts %ld` (in-process `crm_demo_run`, durable, every feature "
               "loaded; `value.recompute` left to (c)). The full default (100,000 contacts) is "
               "`make demo`; this size fits a benchmark run.\n\n",
               demo_contacts);
        printf("| what | figure |\n|---|---:|\n");
        printf("| contacts | %" PRIu64 " |\n| orders | %" PRIu64 " |\n| interactions | %" PRIu64
               " |\n| tickets (workflow steps) | %" PRIu64 " (%" PRIu64 ") |\n",
               st.contacts, st.orders, st.interactions, st.tickets, st.ticket_updates);
        printf("| feed entries (every write, hooks' included) | %" PRIu64 " |\n", st.last_seq);
        printf("| hook runs / timer runs | %" PRIu64 " / %" PRIu64 " |\n", st.hook_runs,
               st.timer_runs);
        printf("| refused writes / dead letters | %" PRIu64 " / %" PRIu64 " |\n", st.refused,
               st.dead_letters);
        printf("| time: records (hooks keeping up) | %.1f s |\n", st.seconds_records);
        printf("| time: hooks catching up after | %.1f s |\n", st.seconds_drain);
        printf("| total | %.1f s (%.0f generated records/s) |\n\n", st.seconds_total,
               (double)records / st.seconds_total);
        fflush(stdout);
    }

    /* (c) */
    value_section(schema, ddir, "generated in (b)");
    }
    if (getenv("CRM_BENCH_VALUE_DIR"))
        value_section(schema, getenv("CRM_BENCH_VALUE_DIR"),
                      "of a store made by a full-size `crmd demo` (CRM_BENCH_VALUE_DIR)");
    crm_schema_free(schema);
    bench_rm_tree(base);
    return 0;
}
