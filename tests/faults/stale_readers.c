/*
 * stale_readers -- reader slots of killed processes are reclaimed
 * (reliability plan R6).
 *
 * A stale reader slot pins the pages of its snapshot forever: the file only
 * grows.  Here a real crmd serves writes; two other processes open the same
 * store and hold a read transaction each.  One of them and crmd are
 * SIGKILLed.  Before the restart the lock file still lists the dead readers;
 * crmd restarts (crm_store_open calls mdb_reader_check) and then every slot
 * in use belongs to a live process: the reader that was not killed keeps
 * its slot and can still read its snapshot, and writes go on.
 *
 * Env: CRMD_BIN, CRM_SCHEMAS.
 */
#include <errno.h>
#include <lmdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "faultutil.h"
#include "schema.h"
#include "store.h"
#include "tmpdir.h"

#define NAME "stale_readers"

typedef struct slots {
    int used, dead, of_pid;
    pid_t pid;
} slots;

static int count_slot(const char *msg, void *ud)
{
    slots *s = ud;
    int pid;
    if (sscanf(msg, "%d", &pid) != 1 || pid <= 0) /* the header line */
        return 0;
    s->used++;
    if (kill(pid, 0) != 0 && errno == ESRCH)
        s->dead++;
    if (pid == s->pid)
        s->of_pid++;
    return 0;
}

/* Reader slots in use in data's lock file; of_pid counts those of pid. */
static int list_slots(const char *data, pid_t pid, slots *out)
{
    MDB_env *env;
    int rc;
    memset(out, 0, sizeof *out);
    out->pid = pid;
    if (mdb_env_create(&env) || mdb_env_set_maxdbs(env, 256) || mdb_env_set_maxreaders(env, 512))
        return -1;
    rc = mdb_env_open(env, data, MDB_RDONLY | MDB_NOTLS, 0600);
    if (rc == 0)
        rc = mdb_reader_list(env, count_slot, out) < 0 ? -1 : 0;
    mdb_env_close(env);
    return rc ? -1 : 0;
}

int main(void)
{
    char *dir = crm_tmpdir_make("stale"), data[4096];
    crmd_proc p;
    ws_client c;
    fault_ledger l = {0};
    pid_t victim, live, crmd;
    int victim_cmd, live_cmd, st, rc;
    slots before, after;

    signal(SIGPIPE, SIG_IGN);
    snprintf(data, sizeof data, "%s/data", dir);
    if (crmd_start(&p, fault_crmd(), fault_schemas(), data) != 0)
        return fault_fail(NAME, "crmd did not start");
    if (fault_connect(&c, &p) != 0)
        return fault_fail(NAME, "cannot connect");
    fault_storm(&c, "s", &l, 200, 16, 64, 0, 0, 10000);
    if ((victim = fault_reader_start(data, &victim_cmd)) <= 0 || (live = fault_reader_start(data, &live_cmd)) <= 0)
        return fault_fail(NAME, "the readers did not start");
    fault_storm(&c, "s", &l, 200, 16, 64, 0, 0, 10000); /* writes past their snapshots */
    ws_close(&c);

    crmd = p.pid;
    kill(victim, SIGKILL);
    waitpid(victim, &st, 0);
    kill(crmd, SIGKILL);
    crmd_stop_keep(&p); /* reaps it */
    if (list_slots(data, live, &before) != 0)
        return fault_fail(NAME, "cannot read the reader table");
    printf(NAME ": after SIGKILL of a reader and of crmd: %d slots in use, %d of dead processes, "
           "%d of the live reader\n",
           before.used, before.dead, before.of_pid);
    if (before.dead < 1)
        return fault_fail(NAME, "no stale slot to reclaim: the test proves nothing");

    if (crmd_start(&p, fault_crmd(), fault_schemas(), data) != 0)
        return fault_fail(NAME, "crmd did not restart");
    if (fault_connect(&c, &p) != 0)
        return fault_fail(NAME, "cannot connect after restart");
    fault_storm(&c, "s", &l, 200, 16, 64, 0, 0, 10000);
    ws_close(&c);
    if (list_slots(data, live, &after) != 0)
        return fault_fail(NAME, "cannot read the reader table");
    printf(NAME ": after restart: %d slots in use, %d of dead processes, %d of the live reader; "
           "%d of %d writes acknowledged\n",
           after.used, after.dead, after.of_pid, l.ok, l.n);
    st = fault_reader_finish(live, live_cmd);
    rc = crmd_stop(&p);
    close(victim_cmd);
    if (after.dead != 0)
        return fault_fail(NAME, "%d stale slots left after the restart", after.dead);
    if (after.of_pid != 1)
        return fault_fail(NAME, "the live reader holds %d slots (expected 1)", after.of_pid);
    if (st != 0)
        return fault_fail(NAME, "the live reader could not read its snapshot (status %d)", st);
    if (l.ok != l.n)
        return fault_fail(NAME, "%d of %d writes acknowledged", l.ok, l.n);
    if (rc != 0)
        return fault_fail(NAME, "crmd exited %d", rc);
    fault_ledger_free(&l);
    crm_tmpdir_remove(dir);
    printf(NAME ": PASS\n");
    return 0;
}
