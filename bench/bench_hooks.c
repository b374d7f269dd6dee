/*
 * bench_hooks -- what hooks cost the write path (issues 4 and 5).
 *
 * Creates per second through crm_store_apply in batches of 64 units (the
 * server's group commit), on stores that differ only in their hooks:
 *   none | 1 C before-hook | 1 Lua before-hook | 5 Lua before-hooks |
 *   1 Lua after-hook (run as the server runs it: one bus unit per batch)
 * Each hook is "trivial" but real: it sets one field of the record (the
 * after-hook writes one small record of its own, as an automation would).
 * Both durable (fsync per batch, as served) and without fsync (the CPU cost
 * alone, the harsher view) are measured; variants alternate in slices and
 * the median slice is reported, as ratios to "none" measured in the same run.
 * For the after-hook the lag (changes not yet run by the hook) is printed at
 * the end of each slice: bounded lag = the hook keeps up.
 *
 * The C hook is registered through the crm_api table directly rather than
 * from a .so: a plugin's hook is called through the same function pointer.
 *
 * Env: CRM_BENCH_DIR (where the stores go; default .), CRM_BENCH_SECONDS
 * (per slice, default 0.5).  Output: Markdown on stdout.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bus.h"
#include "lua_host.h"
#include "benchutil.h"
#include "machine.h"
#include "schema.h"
#include "store.h"

#define BATCH 64
#define SLICES 5

static const char CONTACTS_JSON[] =
    "{\"collection\": \"contacts\", \"id_prefix\": \"c_\", \"fields\": {"
    " \"name\":  {\"type\": \"string\", \"required\": true, \"max\": 200},"
    " \"email\": {\"type\": \"string\", \"max\": 254, \"index\": \"unique\"},"
    " \"city\":  {\"type\": \"string\", \"index\": true},"
    " \"score\": {\"type\": \"int\", \"index\": true},"
    " \"tier\":  {\"type\": \"string\"}}}";
static const char NOTES_JSON[] =
    "{\"collection\": \"notes\", \"id_prefix\": \"n_\", \"fields\": {"
    " \"contact\": {\"type\": \"string\", \"index\": true}}}";

static const crm_api *API;

static int c_before(crm_ctx *c, crm_event *ev, void *ud)
{
    (void)c;
    (void)ud;
    return API->map_set(ev->record, "tier", API->value_str("bronze", 6)) == 0 ? CRM_OK
                                                                                : CRM_INTERNAL;
}

typedef struct variant {
    const char *name;
    int c_hooks, lua_before, lua_after;
    crm_store *s;
    crm_bus *bus;
    crm_lua *lua;
    crm_plugin *owner;
    uint64_t next_id;
    double rates[SLICES];
    uint64_t max_lag;
} variant;

static void variant_open(variant *v, const char *base, const crm_schema *schema, int sync)
{
    char dir[4096], sdir[4200];
    crm_store_opts o;
    crm_err e;
    snprintf(dir, sizeof dir, "%.3900s/%s-%s", base, v->name, sync ? "sync" : "nosync");
    for (char *p = dir + strlen(base) + 1; *p; p++)
        if (*p == ' ')
            *p = '_';
    crm_store_opts_default(&o);
    o.no_sync = !sync;
    o.map_size = (size_t)1 << 30;
    if (crm_store_open(dir, schema, &o, &v->s, &e) != CRM_OK)
        bench_die("open %s: %s", dir, e.msg);
    if (crm_bus_new(v->s, NULL, &v->bus, &e) != CRM_OK)
        bench_die("bus: %s", e.msg);
    API = crm_bus_api(v->bus);
    if (v->c_hooks) {
        v->owner = crm_bus_owner_new(v->bus, "plugin", "bench", NULL);
        if (API->on(v->owner, "contacts.create", CRM_BEFORE, NULL, c_before, NULL) != CRM_OK)
            bench_die("on: %s", crm_bus_owner_errmsg(v->owner));
        crm_bus_owner_seal(v->owner);
    }
    snprintf(sdir, sizeof sdir, "%s-scripts", dir);
    mkdir(sdir, 0700);
    for (int i = 0; i < v->lua_before; i++) {
        char name[32];
        snprintf(name, sizeof name, "before%d.lua", i);
        bench_write_file(sdir, name,
                   "crm.on(\"contacts.create\", function(ev) ev.record.tier = \"bronze\" end,"
                   " {phase = \"before\"})\n");
    }
    if (v->lua_after)
        bench_write_file(sdir, "after.lua",
                   "crm.on(\"contacts.create\", function(ev)\n"
                   "  crm.create(\"notes\", {contact = ev.id})\n"
                   "end, {phase = \"after\"})\n");
    if (crm_lua_open(v->bus, sdir, NULL, &v->lua, &e) != CRM_OK)
        bench_die("scripts: %s", e.msg);
}

static void variant_close(variant *v)
{
    crm_lua_close(v->lua);
    crm_bus_owner_free(v->owner);
    crm_bus_free(v->bus);
    crm_store_close(v->s);
}

static crm_value *contact(uint64_t k)
{
    crm_value *m = crm_value_map();
    char name[64], email[96];
    snprintf(name, sizeof name, "Anna Schmidt %" PRIu64, k);
    snprintf(email, sizeof email, "anna.%" PRIu64 "@example.com", k * 2654435761u % 1000000007u);
    if (!m || crm_map_set(m, "name", crm_value_cstr(name)) ||
        crm_map_set(m, "email", crm_value_cstr(email)) ||
        crm_map_set(m, "city", crm_value_cstr("Berlin")) ||
        crm_map_set(m, "score", crm_value_int((int64_t)(k * 7919 % 1000))))
        bench_die("out of memory");
    return m;
}

/* Creates for `seconds`; returns creates per second. */
static double slice(variant *v, double seconds)
{
    crm_write w[BATCH];
    crm_unit u[BATCH + 1];
    crm_value *recs[BATCH];
    crm_err e;
    double t0 = bench_now_s(), t;
    uint64_t done = 0;
    do {
        memset(w, 0, sizeof w);
        memset(u, 0, sizeof u);
        for (int i = 0; i < BATCH; i++) {
            recs[i] = contact(v->next_id++);
            w[i].op = CRM_OP_CREATE;
            w[i].coll = "contacts";
            w[i].data = recs[i];
            u[i].writes = &w[i];
            u[i].n = 1;
        }
        if (crm_bus_apply(v->bus, u, BATCH, NULL, &e) != CRM_OK) /* u has room for the bus's */
            bench_die("%s: apply: %s", v->name, e.msg);
        for (int i = 0; i < BATCH; i++) {
            if (u[i].rc != CRM_OK)
                bench_die("%s: create: %s", v->name, u[i].err.msg);
            crm_write_clear(&w[i]);
            crm_value_free(recs[i]);
        }
        done += BATCH;
        t = bench_now_s();
    } while (t - t0 < seconds);
    if (v->lua_after) {
        crm_bus_stats st;
        crm_bus_stats_get(v->bus, &st);
        if (crm_store_last_seq(v->s) - st.min_cursor > v->max_lag)
            v->max_lag = crm_store_last_seq(v->s) - st.min_cursor;
    }
    return (double)done / (t - t0);
}

int main(void)
{
    const char *where = getenv("CRM_BENCH_DIR") ? getenv("CRM_BENCH_DIR") : ".";
    double secs = getenv("CRM_BENCH_SECONDS") ? atof(getenv("CRM_BENCH_SECONDS")) : 0.5;
    char base[4000], sdir[4096], cpu[256], load[64], fs[64];
    crm_schema *schema;
    crm_err e;

    snprintf(base, sizeof base, "%s/crmd-bench-hooks-XXXXXX", where);
    if (!mkdtemp(base))
        bench_die("mkdtemp in %s", where);
    snprintf(sdir, sizeof sdir, "%s/schemas", base);
    mkdir(sdir, 0700);
    bench_write_file(sdir, "contacts.json", CONTACTS_JSON);
    bench_write_file(sdir, "notes.json", NOTES_JSON);
    if (crm_schema_load_dir(sdir, &schema, &e) != CRM_OK)
        bench_die("schema: %s", e.msg);
    bench_cpu_model(cpu, sizeof cpu);
    bench_loadavg(load, sizeof load);
    bench_fs_type(base, fs, sizeof fs);
    printf("# Hook cost on the write path\n\n");
    printf("Machine: %s, %ld GiB, load %s, store on %s. Batches of %d creates through "
           "crm_store_apply (the server's group commit); %d slices of %.1f s per variant, "
           "alternating; median slice. Ratios are to \"none\" in the same run. "
           "Reproduce: `make bench` (or `build/bench/bench_hooks`).\n\n",
           cpu, bench_mem_gib(), load, fs, BATCH, SLICES, secs);
    for (int sync = 1; sync >= 0; sync--) {
        variant vs[] = {
            {.name = "none", .c_hooks = 0, .lua_before = 0, .lua_after = 0},
            {.name = "1 C before-hook", .c_hooks = 1, .lua_before = 0, .lua_after = 0},
            {.name = "1 Lua before-hook", .c_hooks = 0, .lua_before = 1, .lua_after = 0},
            {.name = "5 Lua before-hooks", .c_hooks = 0, .lua_before = 5, .lua_after = 0},
            {.name = "1 Lua after-hook", .c_hooks = 0, .lua_before = 0, .lua_after = 1},
        };
        size_t nv = sizeof vs / sizeof *vs;
        for (size_t i = 0; i < nv; i++)
            variant_open(&vs[i], base, schema, sync);
        for (size_t i = 0; i < nv; i++)
            slice(&vs[i], secs / 4); /* warm up */
        for (int k = 0; k < SLICES; k++)
            for (size_t i = 0; i < nv; i++)
                vs[i].rates[k] = slice(&vs[i], secs);
        printf("## %s\n\n", sync ? "Durable (fsync per batch, as served)"
                                 : "Without fsync (CPU cost alone)");
        printf("| hooks | creates/s | vs none |\n|---|---:|---:|\n");
        for (size_t i = 0; i < nv; i++)
            printf("| %s | %.0f | %.0f%% |\n", vs[i].name, bench_median(vs[i].rates, SLICES),
                   100.0 * bench_median(vs[i].rates, SLICES) / bench_median(vs[0].rates, SLICES));
        printf("\nAfter-hook lag (changes not yet run) at the end of any slice: at most %" PRIu64
               " (one batch is %d).\n\n",
               vs[nv - 1].max_lag, BATCH);
        fflush(stdout);
        for (size_t i = 0; i < nv; i++)
            variant_close(&vs[i]);
    }
    crm_schema_free(schema);
    {
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
        if (system(cmd) != 0)
            fprintf(stderr, "bench_hooks: could not remove %s\n", base);
    }
    return 0;
}
