/*
 * crash_hooks -- after-hooks and timers take effect exactly once across
 * SIGKILL (issues 4 and 5; reliability plan R1).
 *
 * A real crmd runs with a C plugin (hookmark.c) and a Lua script, each with
 * an after-hook on contacts.create; the plugin's hook also schedules a
 * keyed timer.  Every hook and the timer write one "marks" record
 * {from: contact id, by: "c" | "lua" | "timer"}.  Each cycle, four clients
 * pipeline creates over WebSocket; the server is SIGKILLed at a random
 * moment with requests in flight, and restarted on the same data folder.
 * Between the kill and the restart the test opens the store itself and
 * counts the cycles in which some after-hook cursor was behind the feed
 * (the window "change committed, hook not yet run" that the kill must hit
 * for the test to mean anything) and timers were pending.
 *
 * At the end the server runs until the hooks and timers have caught up,
 * stops, and the test checks, from the store: every acknowledged contact is
 * present; every contact has exactly one mark of each kind (none lost,
 * none twice); no dead letters; crm_store_verify passes.
 *
 * Env: CRM_CRASH_CYCLES (default 20), CRM_CRASH_SEED, CRMD_BIN,
 * CRM_HOOK_PLUGINS (the folder holding hookmark.so).  Exit 0 on success.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "schema.h"
#include "store.h"
#include "tmpdir.h"
#include "wsclient.h"

#define NCLIENTS 4
#define PIPELINE 24

static const char CONTACTS[] =
    "{\"collection\": \"contacts\", \"id_prefix\": \"c_\", \"fields\": {"
    " \"name\": {\"type\": \"string\", \"required\": true}}}";
static const char MARKS[] =
    "{\"collection\": \"marks\", \"id_prefix\": \"m_\", \"fields\": {"
    " \"from\": {\"type\": \"string\", \"required\": true, \"index\": true},"
    " \"by\":   {\"type\": \"string\", \"required\": true, \"index\": true}}}";
static const char SCRIPT[] =
    "-- the Lua side of crash_hooks: one mark per contact created\n"
    "crm.on(\"contacts.create\", function(ev)\n"
    "  crm.create(\"marks\", {from = ev.id, by = \"lua\"})\n"
    "end, {phase = \"after\", name = \"marker\"})\n";

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int fail(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "crash_hooks: FAIL: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

typedef struct idlist {
    char **ids;
    size_t n, cap;
} idlist;

static void idlist_add(idlist *l, const char *id)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 1024;
        l->ids = realloc(l->ids, l->cap * sizeof *l->ids);
        if (!l->ids)
            abort();
    }
    l->ids[l->n++] = strdup(id);
}

static int auth(ws_client *c, const char *token)
{
    char req[512];
    crm_value *r;
    int ok;
    snprintf(req, sizeof req, "{\"op\": \"auth\", \"ref\": 1, \"token\": \"%s\"}", token);
    if (ws_send_json(c, req) != 0 || !(r = ws_reply(c, 1, 5000, NULL)))
        return -1;
    ok = crm_map_get(r, "ok") && crm_map_get(r, "ok")->u.b;
    crm_value_free(r);
    return ok ? 0 : -1;
}

static int count_pending_timers_cb(void *ud, const void *k, size_t kl, const void *v, size_t vl)
{
    (void)k;
    (void)kl;
    (void)v;
    (void)vl;
    (*(int *)ud)++;
    return 0;
}

/* Is some after-hook behind the feed, and are timers pending?  Opens the
 * store of the dead server directly. */
static int inspect(const char *data, const crm_schema *schema, int *behind, int *timers)
{
    crm_store *s;
    crm_txn *t;
    crm_err e;
    const char *names[] = {"hookmark/marker", "crash.lua/marker"};
    *behind = *timers = 0;
    if (crm_store_open(data, schema, NULL, &s, &e) != CRM_OK)
        return fail("reopen after kill: %s", e.msg);
    if (crm_store_begin_read(s, &t, &e) != CRM_OK) {
        crm_store_close(s);
        return fail("read: %s", e.msg);
    }
    for (size_t i = 0; i < 2; i++) {
        const void *v;
        size_t vl;
        if (crm_txn_aux_get(t, CRM_AUX_CURSORS, names[i], strlen(names[i]), &v, &vl, &e) ==
                CRM_OK &&
            vl == 8) {
            const uint8_t *b = v;
            uint64_t cur = 0;
            for (int k = 0; k < 8; k++)
                cur = cur << 8 | b[k];
            if (cur < crm_store_last_seq(s))
                *behind = 1;
        }
    }
    crm_txn_aux_scan(t, CRM_AUX_TIMERS, NULL, 0, 0, count_pending_timers_cb, timers, &e);
    crm_txn_end(t);
    crm_store_close(s);
    return 0;
}

static int metric(int port, const char *name, long long *out)
{
    char *body = NULL, *p;
    int status = 0;
    if (http_get(port, "/metrics", &status, &body) != 0 || status != 200) {
        free(body);
        return -1;
    }
    for (p = body; (p = strstr(p, name)); p++)
        if ((p == body || p[-1] == '\n') && p[strlen(name)] == ' ') {
            *out = atoll(p + strlen(name) + 1);
            free(body);
            return 0;
        }
    free(body);
    return -1;
}

int main(void)
{
    const char *bin = getenv("CRMD_BIN"), *plugdir = getenv("CRM_HOOK_PLUGINS");
    int cycles = getenv("CRM_CRASH_CYCLES") ? atoi(getenv("CRM_CRASH_CYCLES")) : 20;
    unsigned seed = getenv("CRM_CRASH_SEED") ? (unsigned)atoi(getenv("CRM_CRASH_SEED"))
                                              : (unsigned)time(NULL);
    char *sdir = crm_tmpdir_make("hooks-schemas"), *scripts = crm_tmpdir_make("hooks-scripts");
    char *data = crm_tmpdir_make("hooks-data"), args[2048], *token = NULL;
    crm_schema *schema = NULL;
    crm_err e;
    idlist acked = {0};
    int behind_hits = 0, timer_hits = 0, rc = 1;
    long long seqno = 0;

    if (!bin || !plugdir) {
        fprintf(stderr, "crash_hooks: CRMD_BIN and CRM_HOOK_PLUGINS must be set (ctest sets them)\n");
        return 1;
    }
    srand(seed);
    fprintf(stderr, "crash_hooks: %d cycles, seed %u\n", cycles, seed);
    crm_tmpdir_write(sdir, "contacts.json", CONTACTS);
    crm_tmpdir_write(sdir, "marks.json", MARKS);
    crm_tmpdir_write(scripts, "crash.lua", SCRIPT);
    if (crm_schema_load_dir(sdir, &schema, &e) != CRM_OK)
        return fail("schema: %s", e.msg);
    snprintf(args, sizeof args, "--scripts %s --plugins %s", scripts, plugdir);
    setenv("CRMD_ARGS", args, 1);

    for (int cycle = 0; cycle < cycles; cycle++) {
        crmd_proc p;
        ws_client c[NCLIENTS];
        int64_t kill_at;
        int behind, timers;
        memset(&p, 0, sizeof p);
        if (crmd_start(&p, bin, sdir, data) != 0) {
            rc = fail("cycle %d: crmd did not start", cycle);
            goto out;
        }
        if (!token && !(token = crmd_token(&p, "admin"))) {
            rc = fail("no token");
            goto out;
        }
        for (int i = 0; i < NCLIENTS; i++)
            if (ws_connect(&c[i], p.port, "crm.v1.json", NULL, NULL) != 0 || auth(&c[i], token) != 0) {
                rc = fail("cycle %d: connect/auth", cycle);
                goto out;
            }
        kill_at = now_ms() + 60 + rand() % 400;
        for (;;) {
            long long first[NCLIENTS];
            int killed = 0;
            for (int i = 0; i < NCLIENTS; i++) {
                first[i] = seqno + 1;
                for (int k = 0; k < PIPELINE; k++) {
                    char req[256];
                    seqno++;
                    snprintf(req, sizeof req,
                             "{\"op\": \"create\", \"ref\": %lld, \"collection\": \"contacts\","
                             " \"record\": {\"id\": \"c_%lld\", \"name\": \"n%lld\"}}",
                             seqno, seqno, seqno);
                    ws_send_json(&c[i], req);
                }
            }
            if (now_ms() >= kill_at) {
                /* kill with these requests in flight, after a random moment */
                usleep((useconds_t)(rand() % 3000));
                kill(p.pid, SIGKILL);
                waitpid(p.pid, NULL, 0);
                killed = 1;
            }
            for (int i = 0; i < NCLIENTS && !killed; i++)
                for (int k = 0; k < PIPELINE; k++) {
                    long long ref = first[i] + k;
                    crm_value *r = ws_reply(&c[i], ref, 10000, NULL);
                    const crm_value *ok = r ? crm_map_get(r, "ok") : NULL;
                    char id[32];
                    if (!r) {
                        rc = fail("cycle %d: no reply to %lld", cycle, ref);
                        goto out;
                    }
                    if (ok && ok->type == CRM_T_BOOL && ok->u.b) {
                        snprintf(id, sizeof id, "c_%lld", ref);
                        idlist_add(&acked, id);
                    } else {
                        char *j = crm_json_encode(r, NULL);
                        rc = fail("cycle %d: create refused: %s", cycle, j);
                        free(j);
                        crm_value_free(r);
                        goto out;
                    }
                    crm_value_free(r);
                }
            if (killed)
                break;
        }
        for (int i = 0; i < NCLIENTS; i++)
            ws_close(&c[i]);
        if (inspect(data, schema, &behind, &timers) != 0)
            goto out;
        behind_hits += behind;
        timer_hits += timers > 0;
        free(p.data);
        free(p.bin);
        free(p.schemas);
    }

    /* settle: run until every hook and timer has caught up */
    {
        crmd_proc p;
        long long lag = -1, runs = 0;
        /* a liveness bound, not a speed test: the backlog the kill cycles
         * leave is a few thousand hook and timer runs, which an ASan build
         * sharing the machine with another test works through at about
         * 200 a second */
        int64_t start = now_ms(), until = start + 120000;
        memset(&p, 0, sizeof p);
        if (crmd_start(&p, bin, sdir, data) != 0) {
            rc = fail("final start");
            goto out;
        }
        for (;;) {
            if (metric(p.port, "crmd_after_hook_lag", &lag) != 0) {
                rc = fail("no crmd_after_hook_lag in /metrics");
                goto out;
            }
            metric(p.port, "crmd_timer_runs_total", &runs);
            if (lag == 0 && now_ms() > start + 1000) /* timers are due 0.2 s after their hook */
                break;
            if (now_ms() > until) {
                rc = fail("hooks did not catch up (lag %lld)", lag);
                goto out;
            }
            usleep(100000);
        }
        usleep(600000); /* the last timers (0.2 s) */
        if (crmd_stop_keep(&p) != 0) { /* not crmd_stop: that removes the data */
            rc = fail("crmd did not stop cleanly");
            goto out;
        }
    }

    /* verify from the store itself */
    {
        crm_store *s;
        crm_txn *t;
        uint64_t ncontacts = 0, nmarks = 0, ndead = 0;
        int pending = 0;
        if (crm_store_open(data, schema, NULL, &s, &e) != CRM_OK) {
            rc = fail("final open: %s", e.msg);
            goto out;
        }
        if (crm_store_verify(s, &e) != CRM_OK) {
            crm_store_close(s);
            rc = fail("verify: %s", e.msg);
            goto out;
        }
        crm_store_begin_read(s, &t, &e);
        crm_txn_count(t, "contacts", &ncontacts, &e);
        crm_txn_count(t, "marks", &nmarks, &e);
        crm_txn_count(t, "dead_letters", &ndead, &e);
        crm_txn_aux_scan(t, CRM_AUX_TIMERS, NULL, 0, 0, count_pending_timers_cb, &pending, &e);
        rc = 0;
        for (size_t i = 0; i < acked.n && rc == 0; i++) {
            crm_value *rec = NULL;
            if (crm_txn_get(t, "contacts", acked.ids[i], &rec, &e) != CRM_OK)
                rc = fail("acknowledged %s is missing", acked.ids[i]);
            crm_value_free(rec);
        }
        /* every contact: one mark of each kind */
        {
            crm_query q = {"contacts", NULL, NULL, 1000, NULL};
            char *after = NULL;
            do {
                crm_value *recs = NULL;
                char *next = NULL;
                q.after = after;
                if (crm_txn_query(t, &q, &recs, &next, &e) != CRM_OK) {
                    rc = fail("query: %s", e.msg);
                    break;
                }
                for (size_t i = 0; i < recs->u.arr.n && rc == 0; i++) {
                    const char *id = crm_map_str(recs->u.arr.items[i], "id", "");
                    char where[160];
                    crm_value *w, *marks = NULL;
                    char *mnext = NULL;
                    int c = 0, l = 0, tm = 0;
                    snprintf(where, sizeof where, "{\"from\": \"%s\"}", id);
                    w = crm_json_decode(where, strlen(where), NULL, &e);
                    crm_query mq = {"marks", w, NULL, 100, NULL};
                    if (crm_txn_query(t, &mq, &marks, &mnext, &e) == CRM_OK) {
                        for (size_t k = 0; k < marks->u.arr.n; k++) {
                            const char *by = crm_map_str(marks->u.arr.items[k], "by", "");
                            c += strcmp(by, "c") == 0;
                            l += strcmp(by, "lua") == 0;
                            tm += strcmp(by, "timer") == 0;
                        }
                    }
                    if (c != 1 || l != 1 || tm != 1)
                        rc = fail("contact %s has marks c=%d lua=%d timer=%d (want 1 each)", id,
                                  c, l, tm);
                    crm_value_free(marks);
                    crm_value_free(w);
                    free(mnext);
                }
                crm_value_free(recs);
                free(after);
                after = next;
            } while (after && rc == 0);
            free(after);
        }
        if (rc == 0 && nmarks != 3 * ncontacts)
            rc = fail("%llu marks for %llu contacts", (unsigned long long)nmarks,
                      (unsigned long long)ncontacts);
        if (rc == 0 && ndead != 0)
            rc = fail("%llu dead letters", (unsigned long long)ndead);
        if (rc == 0 && pending != 0)
            rc = fail("%d timers still pending", pending);
        if (rc == 0 && behind_hits == 0)
            rc = fail("no kill landed between a commit and its after-hooks: the test proved nothing");
        crm_txn_end(t);
        crm_store_close(s);
        if (rc == 0)
            fprintf(stderr,
                    "crash_hooks: ok: %d kills, %zu acknowledged creates, %llu contacts, %llu marks "
                    "(c + lua + timer, each exactly once); kills with after-hooks behind: %d, "
                    "with timers pending: %d\n",
                    cycles, acked.n, (unsigned long long)ncontacts, (unsigned long long)nmarks,
                    behind_hits, timer_hits);
    }
out:
    crm_schema_free(schema);
    if (rc == 0) {
        crm_tmpdir_remove(data);
    } else {
        fprintf(stderr, "crash_hooks: data kept in %s (seed %u)\n", data, seed);
        free(data);
    }
    crm_tmpdir_remove(sdir);
    crm_tmpdir_remove(scripts);
    for (size_t i = 0; i < acked.n; i++)
        free(acked.ids[i]);
    free(acked.ids);
    free(token);
    return rc;
}
