/*
 * power_loss -- acknowledged writes survive a simulated power loss
 * (reliability plan R3).
 *
 * A SIGKILL keeps the page cache, so by itself it cannot show that crmd
 * syncs what it acknowledges.  Here crmd runs with fault_shim's journal
 * (CRM_FAULT_JOURNAL): before each write to data.mdb that is not yet
 * durable, the shim saves the bytes it overwrites; a successful fdatasync
 * empties the journal (every write to the file is durable from then on);
 * writes through LMDB's O_DSYNC meta descriptor are durable when they
 * return.  Each cycle: a client pipelines creates, crmd is SIGKILLed at a
 * random moment (50-300 ms), the test undoes the journal backwards (and
 * truncates the file to its size at the last sync) -- the disk of a machine
 * that lost power, with every unsynced write lost -- and restarts crmd on
 * it.  Pass: crmd opens the store every time, and after the last cycle every
 * acknowledged write is there and crm_store_verify passes.
 *
 * This is the worst case of "unsynced writes lost" at the granularity of
 * LMDB's writes, not a disk that reorders or tears sectors (LazyFS or a
 * FUSE file system would go further).
 *
 * Env: CRMD_BIN, CRM_SCHEMAS, CRM_FAULT_SHIM, CRM_POWER_CYCLES (default 5;
 * make soak 50), CRM_POWER_SEED.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "faultutil.h"
#include "schema.h"
#include "store.h"
#include "testutil.h"
#include "tmpdir.h"

#define NAME "power_loss"

int main(void)
{
    const char *shim = getenv("CRM_FAULT_SHIM"), *cy = getenv("CRM_POWER_CYCLES"),
               *seed_env = getenv("CRM_POWER_SEED");
    int cycles = cy ? atoi(cy) : 5;
    unsigned seed = seed_env ? (unsigned)atoi(seed_env) : (unsigned)time(NULL);
    char *dir = crm_tmpdir_make("power"), data[2048], journal[2048], mdb[4096];
    char *token = NULL;
    crmd_proc p;
    fault_ledger l = {0};
    long undone_total = 0, bytes_total = 0;
    int bad, rc;

    signal(SIGPIPE, SIG_IGN);
    if (!shim)
        return fault_fail(NAME, "CRM_FAULT_SHIM is not set");
    srand(seed);
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(journal, sizeof journal, "%s/journal", dir);
    snprintf(mdb, sizeof mdb, "%s/data.mdb", data);
    {   /* an ASan crmd wants its runtime first; the shim has none */
        const char *a = getenv("ASAN_OPTIONS");
        char opts[1024];
        snprintf(opts, sizeof opts, "%s%sverify_asan_link_order=0", a ? a : "", a ? ":" : "");
        setenv("ASAN_OPTIONS", opts, 1);
    }
    /* a kill that lands between a sync and the next write undoes nothing; a
     * run that has not undone anything yet goes on (up to 4x + 20 cycles),
     * so that it proves something even on a slow (sanitized) build */
    int cycle;
    for (cycle = 0; cycle < cycles || (undone_total == 0 && cycle < 4 * cycles + 20); cycle++) {
        ws_client c;
        long undone, bytes;
        pid_t killer;
        int delay_ms = 50 + rand() % 251;
        rc = fault_start_journaled(&p, shim, journal, data);
        if (rc != 0)
            return fault_fail(NAME, "cycle %d: crmd did not open the store after the power loss",
                              cycle);
        if (!token && !(token = crmd_token(&p, "admin"))) {
            crmd_stop_keep(&p);
            return fault_fail(NAME, "no token");
        }
        if (ws_connect(&c, p.port, NULL, NULL, NULL) != 0 || ws_auth(&c, token, 10000) != 0) {
            crmd_stop_keep(&p);
            /* the token was written (and synced) by `crmd token create` */
            return fault_fail(NAME, "cycle %d: cannot authenticate: the token was lost", cycle);
        }
        if ((killer = fork()) == 0) {
            usleep((useconds_t)delay_ms * 1000);
            kill(p.pid, SIGKILL);
            _exit(0);
        }
        fault_storm(&c, "p", &l, 1000000, 32, 200, 0, 0, 10000);
        ws_close(&c);
        waitpid(killer, NULL, 0);
        crmd_stop_keep(&p); /* reaps the killed server */
        undone = fault_journal_undo(journal, mdb, &bytes);
        if (undone < 0)
            return fault_fail(NAME, "cycle %d: cannot undo the journal", cycle);
        unlink(journal);
        undone_total += undone;
        bytes_total += bytes;
    }
    /* the last restart, without the shim: everything acknowledged is there */
    if (crmd_start(&p, fault_crmd(), fault_schemas(), data) != 0)
        return fault_fail(NAME, "crmd did not open the store at the end");
    bad = fault_check_acked(&p, "p", &l, NULL);
    crmd_stop_keep(&p);
    if (bad)
        printf(NAME ": %d of %d acknowledged writes lost\n", bad, l.ok);
    {
        crm_schema *sc;
        crm_store *s;
        crm_err err;
        if (crm_schema_load_dir(fault_schemas(), &sc, &err) != CRM_OK ||
            crm_store_open(data, sc, NULL, &s, &err) != CRM_OK)
            return fault_fail(NAME, "reopen: %s", err.msg);
        rc = crm_store_verify(s, &err);
        crm_store_close(s);
        crm_schema_free(sc);
        if (rc != CRM_OK)
            return fault_fail(NAME, "verify: %s", err.msg);
    }
    printf(NAME ": seed %u, %d power losses: %d writes sent, %d acknowledged, %ld unsynced writes "
           "undone (%ld KiB); acknowledged lost = %d; the store opened every time; "
           "crm_store_verify OK\n",
           seed, cycle, l.n, l.ok, undone_total, bytes_total >> 10, bad);
    free(token);
    if (bad)
        return fault_fail(NAME, "%d acknowledged writes lost", bad);
    if (undone_total == 0)
        return fault_fail(NAME, "no unsynced write was ever undone: the test proves nothing");
    fault_ledger_free(&l);
    crm_tmpdir_remove(dir);
    printf(NAME ": PASS\n");
    return 0;
}
