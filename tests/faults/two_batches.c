/*
 * two_batches -- acknowledged writes survive a power loss that strikes
 * while two batches are in flight on the writer thread (commit-flushes = 1;
 * reliability plan R3, kernel/writer.h).
 *
 * Over a store opened with MDB_NOMETASYNC the writer commits batch K (its
 * data pages flushed, its meta page written but not flushed) and hands it
 * back for its replies only once batch K+1's commit has flushed the file,
 * or after a flush of its own when nothing follows.  Under load two batches
 * are then in flight: K, committed and awaiting that flush, and K+1, being
 * applied.  A power loss at that moment takes K back (its meta page never
 * reached the disk); this test shows that none of K's writes had been
 * acknowledged.
 *
 * crmd runs with fault_shim's power-loss journal (CRM_FAULT_JOURNAL; see
 * power_loss.c) and a script whose before-hook on contacts.create
 * busy-waits 3 ms, so that a batch takes long enough for the next one to
 * gather behind it; NCLIENTS connections (one thread each) pipeline
 * creates.  Each cycle, while the load runs, the test scrapes /metrics until
 * one scrape, taken once a round of creates was acknowledged, shows
 * crmd_writer_awaiting_flush >= 1 and crmd_writer_batches_in_flight above
 * it (so >= 2: the gauges count the loop's submissions, and those awaiting
 * the flush are the last committed batch's, so the others are queued or
 * being applied behind it), and SIGKILLs crmd at once (after DEADLINE_S
 * without that state it kills anyway; the cycle does not count).
 * Then it undoes the journal (fault_journal_undo: the disk of a machine that
 * lost power, every write since the last sync lost), opens the store itself
 * and runs crm_store_verify, restarts crmd without the shim and gets every
 * create of the cycle: each acknowledged one must be there with its name;
 * the unanswered ones that are absent are counted (lost, but never
 * acknowledged: allowed).  The last cycle also checks every acknowledged
 * write of every cycle.
 *
 * Pass: no acknowledged write lost, the store opens and verifies after
 * every power loss, the two-batches state was seen before at least half of
 * the kills, and some unsynced write was undone.
 *
 * Env: CRMD_BIN, CRM_SCHEMAS, CRM_FAULT_SHIM, CRM_TWO_BATCHES_CYCLES
 * (default 5), CRM_TWO_BATCHES_SEED.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "faultutil.h"
#include "schema.h"
#include "store.h"
#include "testutil.h"
#include "tmpdir.h"

#define NAME "two_batches"
#define NCLIENTS 6
#define WINDOW 4       /* creates in flight per connection */
#define PAD 200        /* bytes of padding per record */
#define DEADLINE_S 8.0 /* per cycle, for the state to show (ASan is slow) */

/* 3 ms of busy waiting per create (far under the 1 s budget of a hook
 * call): a batch of n creates takes about 3n ms to apply. */
static const char SCRIPT[] =
    "-- two_batches: every create spends 3 ms here, so that the next batch\n"
    "-- gathers while one is applied and committed\n"
    "crm.on(\"contacts.create\", function(ev)\n"
    "  local stop = crm.clock() + 0.003\n"
    "  while crm.clock() < stop do end\n"
    "end, {phase = \"before\"})\n";

/* One connection of the load, and its ledger over every cycle. */
typedef struct loader {
    char tag[8];
    fault_ledger l;
    int from; /* l.n when this cycle's storm began */
    ws_client c;
    pthread_t th;
} loader;

static void *load_main(void *ud)
{
    loader *ld = ud;
    /* until crmd dies: the kill closes the connection */
    fault_storm(&ld->c, ld->tag, &ld->l, 1000000, WINDOW, PAD, 0, 0, 60000);
    return NULL;
}

/* The value of gauge name in a /metrics body: 0, or -1 when absent. */
static int gauge(const char *body, const char *name, long *out)
{
    size_t n = strlen(name);
    for (const char *at = body; (at = strstr(at, name)); at += n)
        if ((at == body || at[-1] == '\n') && at[n] == ' ') {
            *out = strtol(at + n + 1, NULL, 10);
            return 0;
        }
    return -1;
}

/* Scrapes /metrics until one scrape shows, once at least min_acked creates
 * have been acknowledged, two batches in flight: one committed and awaiting
 * the flush that makes it durable (crmd_writer_awaiting_flush >= 1) and
 * more handed over behind it, queued or being applied
 * (crmd_writer_batches_in_flight above that, so >= 2).  Gives up at
 * deadline (crm_test_now_s).  Returns 1 when it saw that state, 0 at the
 * deadline, -1 when the gauges are missing; *in_flight, *awaiting and
 * *acked get the last scrape's values. */
static int wait_two_batches(int port, long min_acked, double deadline, long *in_flight,
                            long *awaiting, long *acked, int *scrapes)
{
    *in_flight = *awaiting = *acked = -1;
    while (crm_test_now_s() < deadline) {
        char *body = NULL;
        int status = 0;
        if (http_get(port, "/metrics", &status, &body) == 0 && status == 200) {
            (*scrapes)++;
            if (gauge(body, "crmd_writer_batches_in_flight", in_flight) != 0 ||
                gauge(body, "crmd_writer_awaiting_flush", awaiting) != 0) {
                free(body);
                return -1;
            }
            /* the counter shows once it is not zero */
            if (gauge(body, "crmd_requests_total{op=\"create\",code=\"OK\"}", acked) != 0)
                *acked = 0;
            if (*acked >= min_acked && *awaiting >= 1 && *in_flight > *awaiting) {
                free(body);
                return 1;
            }
        }
        free(body);
        usleep(500);
    }
    return 0;
}

/* Gets every create of this cycle (ld[k].from on) over a fresh connection:
 * returns how many acknowledged ones are missing or wrong (-1 when it cannot
 * connect); *lost gets how many unanswered ones are absent, *kept how many
 * are there all the same, *acked how many were acknowledged. */
static int check_cycle(const crmd_proc *p, const char *token, const loader *ld, int *acked,
                       int *lost, int *kept)
{
    ws_client c;
    int bad = 0;
    *acked = *lost = *kept = 0;
    if (ws_connect(&c, p->port, NULL, NULL, NULL) != 0 || ws_auth(&c, token, 10000) != 0)
        return -1;
    for (int k = 0; k < NCLIENTS; k++)
        for (int i = ld[k].from; i < ld[k].l.n; i++) {
            char id[64], name[80];
            int st = ld[k].l.st[i], found;
            crm_value *r;
            fault_id(ld[k].tag, i, id, sizeof id);
            snprintf(name, sizeof name, "n%s", id);
            r = ws_request(&c, 10000, NULL,
                           "{\"op\": \"get\", \"collection\": \"contacts\", \"id\": \"%s\"}", id);
            found = r && strcmp(ws_code(r), "OK") == 0 &&
                    strcmp(crm_map_str(crm_map_get(r, "result"), "name", ""), name) == 0;
            if (st == FAULT_OK) {
                (*acked)++;
                if (!found) {
                    if (bad < 5)
                        fprintf(stderr, NAME ": acknowledged %s: %s\n", id,
                                r ? ws_code(r) : "no answer");
                    bad++;
                }
            } else if (st == FAULT_NONE) {
                if (found)
                    (*kept)++;
                else if (r && strcmp(ws_code(r), "NOT_FOUND") == 0)
                    (*lost)++;
            }
            crm_value_free(r);
        }
    ws_close(&c);
    return bad;
}

/* Opens the store in data in this process and verifies it: 0 or -1. */
static int open_verify(const char *data, const crm_schema *sc, crm_err *err)
{
    crm_store *s;
    int rc;
    if (crm_store_open(data, sc, NULL, &s, err) != CRM_OK)
        return -1;
    rc = crm_store_verify(s, err);
    crm_store_close(s);
    return rc == CRM_OK ? 0 : -1;
}

int main(void)
{
    const char *shim = getenv("CRM_FAULT_SHIM"), *cy = getenv("CRM_TWO_BATCHES_CYCLES"),
               *seed_env = getenv("CRM_TWO_BATCHES_SEED");
    int cycles = cy ? atoi(cy) : 5;
    unsigned seed = seed_env ? (unsigned)atoi(seed_env) : (unsigned)time(NULL);
    char *dir = crm_tmpdir_make("twobatch"), *scripts = crm_tmpdir_make("twobatch-scripts");
    char data[2048], journal[2048], mdb[4096], args[4200], *token = NULL;
    crm_schema *sc = NULL;
    crm_err err;
    crmd_proc p;
    loader ld[NCLIENTS];
    long undone_total = 0, bytes_total = 0;
    int seen = 0, undid = 0, sent = 0, acked_total = 0, lost_total = 0, kept_total = 0;
    int bad = 0, rc, cycle;

    signal(SIGPIPE, SIG_IGN);
    if (!shim)
        return fault_fail(NAME, "CRM_FAULT_SHIM is not set");
    if (cycles < 1)
        cycles = 1;
    srand(seed);
    memset(ld, 0, sizeof ld);
    for (int k = 0; k < NCLIENTS; k++)
        snprintf(ld[k].tag, sizeof ld[k].tag, "t%d", k);
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(journal, sizeof journal, "%s/journal", dir);
    snprintf(mdb, sizeof mdb, "%s/data.mdb", data);
    crm_tmpdir_write(scripts, "slow.lua", SCRIPT);
    snprintf(args, sizeof args, "--scripts %s", scripts);
    setenv("CRMD_ARGS", args, 1);
    {   /* an ASan crmd wants its runtime first; the shim has none */
        const char *a = getenv("ASAN_OPTIONS");
        char opts[1024];
        snprintf(opts, sizeof opts, "%s%sverify_asan_link_order=0", a ? a : "", a ? ":" : "");
        setenv("ASAN_OPTIONS", opts, 1);
    }
    if (crm_schema_load_dir(fault_schemas(), &sc, &err) != CRM_OK)
        return fault_fail(NAME, "schemas: %s", err.msg);
    /* the token, written (and synced) before any power loss */
    if (crmd_start(&p, fault_crmd(), fault_schemas(), data) != 0)
        return fault_fail(NAME, "crmd did not start");
    token = crmd_token(&p, "admin");
    crmd_stop_keep(&p);
    if (!token)
        return fault_fail(NAME, "no token");

    /* a kill that lands just after a flush undoes nothing; a run that has
     * undone nothing yet goes on (up to 4x + 20 cycles), as power_loss.c
     * does, so it proves something on a slow (sanitized) build too */
    for (cycle = 0; cycle < cycles || (undone_total == 0 && cycle < 4 * cycles + 20); cycle++) {
        long undone, bytes, in_flight = -1, awaiting = -1, acked_before = -1;
        int scrapes = 0, hit, acked, lost, kept, nth = 0;
        rc = fault_start_journaled(&p, shim, journal, data);
        if (rc != 0)
            return fault_fail(NAME, "cycle %d: crmd did not start with the shim", cycle);
        for (int k = 0; k < NCLIENTS; k++, nth++) {
            ld[k].from = ld[k].l.n;
            if (ws_connect(&ld[k].c, p.port, NULL, NULL, NULL) != 0)
                break;
            if (ws_auth(&ld[k].c, token, 10000) != 0) {
                ws_close(&ld[k].c);
                break;
            }
        }
        if (nth < NCLIENTS) {
            for (int k = 0; k < nth; k++)
                ws_close(&ld[k].c);
            crmd_stop_keep(&p);
            return fault_fail(NAME, "cycle %d: cannot connect and authenticate", cycle);
        }
        for (nth = 0; nth < NCLIENTS; nth++)
            if (pthread_create(&ld[nth].th, NULL, load_main, &ld[nth]) != 0)
                break;
        /* let the load run for a random while, then watch the writer; the
         * kill means something once a round of creates was acknowledged */
        if (nth == NCLIENTS)
            usleep((useconds_t)(100 + rand() % 301) * 1000);
        hit = nth == NCLIENTS ? wait_two_batches(p.port, NCLIENTS * WINDOW,
                                                 crm_test_now_s() + DEADLINE_S, &in_flight,
                                                 &awaiting, &acked_before, &scrapes)
                              : -2;
        kill(p.pid, SIGKILL); /* the power goes out */
        for (int k = 0; k < nth; k++)
            pthread_join(ld[k].th, NULL);
        for (int k = 0; k < NCLIENTS; k++)
            ws_close(&ld[k].c);
        crmd_stop_keep(&p); /* reaps the killed server */
        if (hit == -2)
            return fault_fail(NAME, "cycle %d: cannot start the load", cycle);
        if (hit < 0)
            return fault_fail(NAME, "no crmd_writer_* gauges in /metrics");
        seen += hit;

        undone = fault_journal_undo(journal, mdb, &bytes);
        if (undone < 0)
            return fault_fail(NAME, "cycle %d: cannot undo the journal", cycle);
        unlink(journal);
        undone_total += undone;
        bytes_total += bytes;
        undid += undone > 0;
        if (open_verify(data, sc, &err) != 0)
            return fault_fail(NAME, "cycle %d: after the power loss: %s", cycle, err.msg);

        /* restart without the shim: every acknowledged create is there */
        if (crmd_start(&p, fault_crmd(), fault_schemas(), data) != 0)
            return fault_fail(NAME, "cycle %d: crmd did not open the store after the power loss",
                              cycle);
        rc = check_cycle(&p, token, ld, &acked, &lost, &kept);
        if (rc == 0 && cycle == cycles - 1)
            for (int k = 0; k < NCLIENTS; k++)
                rc += fault_check_acked(&p, ld[k].tag, &ld[k].l, NULL);
        crmd_stop_keep(&p);
        if (rc < 0)
            return fault_fail(NAME, "cycle %d: cannot connect to check", cycle);
        for (int k = 0; k < NCLIENTS; k++)
            sent += ld[k].l.n - ld[k].from;
        acked_total += acked;
        lost_total += lost;
        kept_total += kept;
        printf(NAME ": cycle %d: %s (scrape %d: in flight %ld, awaiting flush %ld, %ld "
               "acknowledged so far); %d acknowledged in all, %ld unsynced writes undone, "
               "unanswered creates: %d lost, %d kept; acknowledged lost = %d\n",
               cycle, hit ? "killed with two batches in flight" : "deadline: killed anyway",
               scrapes, in_flight, awaiting, acked_before, acked, undone, lost, kept, rc);
        fflush(stdout);
        if (rc > 0) {
            bad = rc;
            cycle++;
            break;
        }
    }
    printf(NAME ": seed %u, %d power losses, %d of them with two batches in flight; %d creates "
           "sent, %d acknowledged; %ld unsynced writes undone (%ld KiB) in %d cycles; unanswered "
           "creates lost %d, kept %d; acknowledged lost = %d\n",
           seed, cycle, seen, sent, acked_total, undone_total, bytes_total >> 10, undid,
           lost_total, kept_total, bad);
    free(token);
    crm_schema_free(sc);
    for (int k = 0; k < NCLIENTS; k++)
        fault_ledger_free(&ld[k].l);
    if (bad)
        return fault_fail(NAME, "%d acknowledged writes lost (data kept in %s)", bad, dir);
    if (seen * 2 < cycle)
        return fault_fail(NAME, "two batches in flight before only %d of %d kills", seen, cycle);
    if (undone_total == 0)
        return fault_fail(NAME, "no unsynced write was ever undone: the test proves nothing");
    crm_tmpdir_remove(dir);
    crm_tmpdir_remove(scripts);
    printf(NAME ": PASS\n");
    return 0;
}
