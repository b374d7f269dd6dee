/*
 * map_full -- the LMDB map fills while a long reader pins old pages
 * (reliability plan R5).
 *
 * crmd runs with a tiny map (1 MiB, growing up to 4 MiB) and the feed kept
 * to 1 MiB (test flags --map-size-mib, --map-max-mib; --retention-bytes).
 * 100 contacts are created; then another process opens the store and holds
 * a read transaction, so no page freed after its snapshot can be reused,
 * while one client updates the contacts round-robin.  The map grows to its
 * ceiling and writes are refused with UNAVAILABLE; crmd stays up.  The
 * reader ends; 2,000 more updates all succeed (freed pages are reused) and
 * data.mdb stays within the 4 MiB ceiling.  Every contact then
 * holds the value of its last acknowledged update.  Then once more with a
 * reader that is SIGKILLed instead of ending: its slot stays in the lock
 * file, and crmd must reclaim it (mdb_reader_check on a full map) rather
 * than refuse writes until a restart.
 *
 * Env: CRMD_BIN, CRM_SCHEMAS.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "faultutil.h"
#include "testutil.h"
#include "tmpdir.h"

#define NAME "map_full"
#define NREC 100

static long last_acked[NREC]; /* per contact: the value of its last acked update */

typedef struct tally {
    int ok, unavailable, other;
    char msg[256];
    double max_reply_s;
} tally;

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* Updates contact k % NREC to value k for k in [from, from + count), 16 in
 * flight; stops after stop_unavail UNAVAILABLE answers (0: never). */
static int updates(ws_client *c, long from, int count, int stop_unavail, tally *t)
{
    long sent = 0, answered = 0;
    double sent_at[16 * 4] = {0};
    while (answered < count) {
        while (sent < count && sent - answered < 16 && !(stop_unavail && t->unavailable >= stop_unavail)) {
            char req[512], id[64];
            long k = from + sent;
            fault_id("m", (int)(k % NREC), id, sizeof id);
            snprintf(req, sizeof req,
                     "{\"op\": \"update\", \"ref\": %ld, \"collection\": \"contacts\", \"id\": \"%s\", "
                     "\"patch\": {\"job_title\": \"v%ld\", \"street\": \"%0200ld\"}}",
                     k + 1000000, id, k, k);
            if (ws_send_json(c, req) != 0)
                return -1;
            sent_at[k % 64] = crm_test_now_s();
            sent++;
        }
        if (answered == sent)
            break;
        crm_value *r = ws_recv(c, 20000, NULL);
        const crm_value *ref;
        if (!r)
            return -1;
        ref = crm_map_get(r, "ref");
        if (ref && ref->type == CRM_T_INT && ref->u.i >= 1000000) {
            long k = (long)ref->u.i - 1000000;
            const char *code = ws_code(r);
            double dt = crm_test_now_s() - sent_at[k % 64];
            if (dt > t->max_reply_s)
                t->max_reply_s = dt;
            if (strcmp(code, "OK") == 0) {
                t->ok++;
                if (k > last_acked[k % NREC])
                    last_acked[k % NREC] = k;
            } else if (strcmp(code, "UNAVAILABLE") == 0) {
                if (!t->unavailable++)
                    snprintf(t->msg, sizeof t->msg, "%s", ws_message(r));
            } else {
                if (t->other++ < 5)
                    fprintf(stderr, "update %ld: %s %s\n", k, code, ws_message(r));
            }
            answered++;
        }
        crm_value_free(r);
    }
    return 0;
}

int main(void)
{
    char *dir = crm_tmpdir_make("mapfull"), data[2048], mdb[4096];
    crmd_proc p;
    ws_client c;
    fault_ledger l = {0};
    tally t1 = {0}, t2 = {0}, t3 = {0}, t4 = {0};
    pid_t rd;
    int cmd, st, bad = 0;
    long size_full, size_after;
    double t0, fill_s;

    signal(SIGPIPE, SIG_IGN);
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(mdb, sizeof mdb, "%s/data.mdb", data);
    setenv("CRMD_ARGS", "--map-size-mib 1 --map-max-mib 4 --retention-bytes 1048576 --rate 1000000", 1);
    if (crmd_start(&p, fault_crmd(), fault_schemas(), data) != 0)
        return fault_fail(NAME, "crmd did not start");
    if (fault_connect(&c, &p) != 0)
        return fault_fail(NAME, "cannot connect");
    fault_storm(&c, "m", &l, NREC, 16, 64, 0, 0, 10000);
    if (l.ok != NREC)
        return fault_fail(NAME, "%d of %d creates acknowledged", l.ok, NREC);
    for (int i = 0; i < NREC; i++)
        last_acked[i] = -1;

    if ((rd = fault_reader_start(data, &cmd)) <= 0)
        return fault_fail(NAME, "the reader did not start");
    t0 = crm_test_now_s();
    if (updates(&c, 0, 200000, 20, &t1) != 0)
        return fault_fail(NAME, "connection lost while the reader held its snapshot");
    fill_s = crm_test_now_s() - t0;
    size_full = file_size(mdb);
    printf(NAME ": reader holding a snapshot: %d updates acknowledged, then %d UNAVAILABLE "
           "(\"%s\") after %.1f s; data.mdb %ld KiB; slowest answer %.0f ms\n",
           t1.ok, t1.unavailable, t1.msg, fill_s, size_full >> 10, t1.max_reply_s * 1000);
    if (t1.unavailable < 20)
        return fault_fail(NAME, "the map never filled");
    if (t1.other)
        return fault_fail(NAME, "%d answers neither OK nor UNAVAILABLE", t1.other);
    if (waitpid(p.pid, &st, WNOHANG) != 0)
        return fault_fail(NAME, "crmd died on a full map");
    if ((st = fault_reader_finish(rd, cmd)) != 0)
        return fault_fail(NAME, "the long reader could not read its snapshot (%d)", st);

    /* the reader is gone: its pages come back */
    if (updates(&c, 1000000, 2000, 0, &t2) != 0)
        return fault_fail(NAME, "connection lost after the reader ended");
    size_after = file_size(mdb);
    printf(NAME ": reader ended: %d of 2000 updates acknowledged, %d UNAVAILABLE; data.mdb %ld KiB "
           "(%ld KiB at the ceiling)\n",
           t2.ok, t2.unavailable, size_after >> 10, size_full >> 10);
    /* again, but the reader is killed: its slot stays in the lock file
     * (a dead process's), and must not pin the map until a restart */
    if ((rd = fault_reader_start(data, &cmd)) <= 0)
        return fault_fail(NAME, "the second reader did not start");
    if (updates(&c, 2000000, 200000, 20, &t3) != 0)
        return fault_fail(NAME, "connection lost while the second reader held its snapshot");
    kill(rd, SIGKILL);
    waitpid(rd, &st, 0);
    close(cmd);
    if (updates(&c, 3000000, 2000, 0, &t4) != 0)
        return fault_fail(NAME, "connection lost after the second reader was killed");
    printf(NAME ": second reader: %d acknowledged, then %d UNAVAILABLE; SIGKILLed: %d of 2000 "
           "updates acknowledged after; data.mdb %ld KiB\n",
           t3.ok, t3.unavailable, t4.ok, file_size(mdb) >> 10);
    for (int i = 0; i < NREC; i++) {
        char id[64], want[32];
        crm_value *r;
        fault_id("m", i, id, sizeof id);
        snprintf(want, sizeof want, "v%ld", last_acked[i]);
        r = ws_request(&c, 10000, NULL, "{\"op\": \"get\", \"collection\": \"contacts\", \"id\": \"%s\"}", id);
        if (!r || strcmp(crm_map_str(crm_map_get(r, "result"), "job_title", ""), want) != 0) {
            if (bad++ < 5)
                fprintf(stderr, "%s: job_title is not %s\n", id, want);
        }
        crm_value_free(r);
    }
    ws_close(&c);
    crmd_stop(&p);
    unsetenv("CRMD_ARGS");
    printf(NAME ": %d of %d contacts differ from their last acknowledged update\n", bad, NREC);
    if (t2.ok != 2000)
        return fault_fail(NAME, "writes did not resume after the reader ended");
    if (t3.unavailable < 20)
        return fault_fail(NAME, "the map did not fill again under the second reader");
    if (t4.ok != 2000)
        return fault_fail(NAME, "a killed reader still pins the map: %d of 2000 updates acknowledged",
                          t4.ok);
    if (size_after > 4L << 20) /* the file never outgrows the map's ceiling */
        return fault_fail(NAME, "data.mdb grew to %ld bytes past the 4 MiB ceiling", size_after);
    if (bad)
        return fault_fail(NAME, "%d acknowledged updates lost", bad);
    fault_ledger_free(&l);
    crm_tmpdir_remove(dir);
    printf(NAME ": PASS\n");
    return 0;
}
