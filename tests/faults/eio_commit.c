/*
 * eio_commit -- an fsync that fails (reliability plan R7).
 *
 * A real crmd runs with fault_shim preloaded: the Nth fdatasync of its
 * data.mdb returns EIO.  One client pipelines creates.  The write batch
 * whose commit hit the EIO must not be acknowledged; the server must stop
 * acknowledging (every later answer UNAVAILABLE or none) and exit with code
 * 3; restarted without the shim, every acknowledged write is there, and the
 * writes answered UNAVAILABLE are not (LMDB writes its meta page only after
 * the data sync succeeded).
 *
 * Env: CRMD_BIN, CRM_SCHEMAS, CRM_FAULT_SHIM (the .so), CRM_FAULT_AT (N,
 * default 40).  Exit 0 on success.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "faultutil.h"
#include "testutil.h"
#include "tmpdir.h"

#define NAME "eio_commit"

/* One run with the Nth data sync failing.  0 on a pass; adds its figures. */
static int run(const char *shim, const char *at, int *acked, int *unavail, int *unanswered)
{
    char *dir = crm_tmpdir_make("eio"), data[4096], log[4096], *logtext;
    crmd_proc p;
    ws_client c;
    fault_ledger l = {0};
    int rc, absent = 0, bad;

    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(log, sizeof log, "%s/faults.log", dir);
    setenv("LD_PRELOAD", shim, 1);
    setenv("CRM_FAULT_FSYNC_EIO_AT", at, 1);
    setenv("CRM_FAULT_LOG", log, 1);
    rc = crmd_start(&p, fault_crmd(), fault_schemas(), data);
    unsetenv("LD_PRELOAD");
    unsetenv("CRM_FAULT_FSYNC_EIO_AT");
    if (rc != 0)
        return fault_fail(NAME, "crmd did not start");
    if (fault_connect(&c, &p) != 0)
        return fault_fail(NAME, "cannot connect");
    fault_storm(&c, "e", &l, 20000, 32, 64, 0, 0, 10000);
    ws_close(&c);
    rc = crmd_stop_keep(&p);
    logtext = crm_test_read_file(log);
    printf(NAME ": sync #%s fails: %d writes sent, %d acknowledged, %d UNAVAILABLE, %d other, "
           "%d unanswered; crmd exit %d; shim: %s",
           at, l.n, l.ok, l.unavailable, l.other, l.n - l.ok - l.unavailable - l.other, rc,
           logtext ? logtext : "(no injection)\n");
    if (!logtext || !strstr(logtext, "fdatasync"))
        return fault_fail(NAME, "the shim injected nothing");
    free(logtext);
    if (rc != 3)
        return fault_fail(NAME, "crmd exited %d after a failed sync, expected 3", rc);
    /* The answers to the failed batch (UNAVAILABLE) may be lost: the server
     * closes with requests of ours unread, and the kernel then resets the
     * connection, dropping what we had not read yet.  Never an OK, though. */
    if (l.unavailable && l.last_ok > l.first_unavailable)
        return fault_fail(NAME, "write %d acknowledged after write %d failed", l.last_ok,
                          l.first_unavailable);
    if (l.other)
        return fault_fail(NAME, "%d answers neither OK nor UNAVAILABLE", l.other);

    /* restart without the shim: the disk is the truth */
    if (crmd_start(&p, fault_crmd(), fault_schemas(), data) != 0)
        return fault_fail(NAME, "crmd did not restart");
    bad = fault_check_acked(&p, "e", &l, &absent);
    crmd_stop(&p);
    printf(NAME ": after restart: %d of %d acknowledged missing; %d of %d UNAVAILABLE absent\n",
           bad, l.ok, absent, l.unavailable);
    if (bad)
        return fault_fail(NAME, "%d acknowledged writes lost", bad);
    if (absent != l.unavailable)
        return fault_fail(NAME, "%d writes answered UNAVAILABLE are in the store",
                          l.unavailable - absent);
    *acked += l.ok;
    *unavail += l.unavailable;
    *unanswered += l.n - l.ok - l.unavailable;
    fault_ledger_free(&l);
    crm_tmpdir_remove(dir);
    return 0;
}

int main(void)
{
    const char *shim = getenv("CRM_FAULT_SHIM");
    static const char *const at[] = {"10", "25", "40", "60", "100"};
    int acked = 0, unavail = 0, unanswered = 0;

    signal(SIGPIPE, SIG_IGN);
    if (!shim)
        return fault_fail(NAME, "CRM_FAULT_SHIM is not set");
    {   /* an ASan crmd wants its runtime first; the shim has none */
        const char *a = getenv("ASAN_OPTIONS");
        char opts[1024];
        snprintf(opts, sizeof opts, "%s%sverify_asan_link_order=0", a ? a : "", a ? ":" : "");
        setenv("ASAN_OPTIONS", opts, 1);
    }
    for (size_t i = 0; i < sizeof at / sizeof *at; i++)
        if (run(shim, at[i], &acked, &unavail, &unanswered) != 0)
            return 1;
    printf(NAME ": PASS: %zu runs, %d acknowledged writes all present after restart, "
           "%d answered UNAVAILABLE (all absent), %d unanswered, 0 acknowledged after a failed sync\n",
           sizeof at / sizeof *at, acked, unavail, unanswered);
    return 0;
}
