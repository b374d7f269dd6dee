/*
 * disk_full -- the disk fills up under a write storm (reliability plan R4).
 *
 * The test enters a mount namespace of its own (root, or an unprivileged
 * user namespace; exit 77 = skip where neither is allowed) and mounts an
 * 8 MiB tmpfs for the data folder, with a 2 MiB filler file on it.  A real
 * crmd storms creates until 50 of them are answered UNAVAILABLE.  Then:
 * crmd still runs and /healthz answers; every acknowledged write reads
 * back; the filler is deleted and new writes succeed without a restart;
 * after a restart everything acknowledged is there and crm_store_verify
 * passes.  Real ENOSPC from a real filesystem (and the short writes LMDB
 * reports as EIO, see kernel/store.c disk_full).
 *
 * Env: CRMD_BIN, CRM_SCHEMAS.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "faultutil.h"
#include "schema.h"
#include "store.h"
#include "testutil.h"
#include "tmpdir.h"

#define NAME "disk_full"

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY);
    ssize_t n = -1;
    if (fd >= 0) {
        n = write(fd, text, strlen(text));
        close(fd);
    }
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* A private mount namespace: 0, or -1 when this machine allows none. */
static int private_mounts(void)
{
    uid_t uid = getuid();
    gid_t gid = getgid();
    if (unshare(CLONE_NEWNS) != 0) {
        char map[64];
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
            return -1;
        write_file("/proc/self/setgroups", "deny");
        snprintf(map, sizeof map, "0 %d 1", (int)uid);
        if (write_file("/proc/self/uid_map", map) != 0)
            return -1;
        snprintf(map, sizeof map, "0 %d 1", (int)gid);
        if (write_file("/proc/self/gid_map", map) != 0)
            return -1;
    }
    return mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

int main(void)
{
    char *dir = crm_tmpdir_make("diskfull"), data[2048], filler[2048], mdb[4096];
    char *buf, *body = NULL;
    crmd_proc p;
    ws_client c;
    fault_ledger l = {0};
    int fd, status = 0, bad, rc;
    long full_size;
    double t0, fill_s;
    int acked_before, unavail;

    signal(SIGPIPE, SIG_IGN);
    if (private_mounts() != 0 || mount("tmpfs", dir, "tmpfs", 0, "size=8m,mode=0700") != 0) {
        printf(NAME ": SKIP: cannot mount a tmpfs here (%s)\n", strerror(errno));
        crm_tmpdir_remove(dir);
        return 77;
    }
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(filler, sizeof filler, "%s/filler", dir);
    snprintf(mdb, sizeof mdb, "%s/data.mdb", data);
    /* 2 MiB to delete later: "free some space" */
    if ((fd = open(filler, O_WRONLY | O_CREAT, 0600)) < 0 || !(buf = calloc(1, 1 << 20)))
        return fault_fail(NAME, "filler: %s", strerror(errno));
    for (int i = 0; i < 2; i++)
        if (write(fd, buf, 1 << 20) != 1 << 20)
            return fault_fail(NAME, "filler: %s", strerror(errno));
    close(fd);
    free(buf);

    if (crmd_start(&p, fault_crmd(), fault_schemas(), data) != 0)
        return fault_fail(NAME, "crmd did not start");
    if (fault_connect(&c, &p) != 0)
        return fault_fail(NAME, "cannot connect");
    t0 = crm_test_now_s();
    fault_storm(&c, "d", &l, 200000, 16, 300, 0, 50, 10000);
    fill_s = crm_test_now_s() - t0;
    full_size = file_size(mdb);
    acked_before = l.ok;
    unavail = l.unavailable;
    printf(NAME ": %d writes sent in %.1f s: %d acknowledged, %d UNAVAILABLE, %d other; "
           "data.mdb %ld KiB when full; first refusal: \"%s\"\n",
           l.n, fill_s, l.ok, l.unavailable, l.other, full_size >> 10, l.unavailable_msg);
    if (l.unavailable < 50)
        return fault_fail(NAME, "the disk never filled (%d UNAVAILABLE)", l.unavailable);
    if (l.other)
        return fault_fail(NAME, "%d answers neither OK nor UNAVAILABLE", l.other);
    if (waitpid(p.pid, &status, WNOHANG) != 0)
        return fault_fail(NAME, "crmd died on a full disk (status %d)", status);
    if (http_get(p.port, "/healthz", &rc, &body) != 0 || rc != 200)
        return fault_fail(NAME, "/healthz answered %d on a full disk", rc);
    free(body);
    /* the writes that failed were answered; the one after is one more try */
    bad = fault_check_acked(&p, "d", &l, NULL);
    printf(NAME ": disk full: crmd up, /healthz 200, %d of %d acknowledged missing\n", bad, l.ok);
    if (bad)
        return fault_fail(NAME, "%d acknowledged writes unreadable on a full disk", bad);

    /* free space: writes resume without a restart */
    unlink(filler);
    fault_storm(&c, "d", &l, 500, 16, 300, 0, 0, 10000);
    ws_close(&c);
    printf(NAME ": after deleting 2 MiB: %d of 500 more writes acknowledged, %d UNAVAILABLE\n",
           l.ok - acked_before, l.unavailable - unavail);
    if (l.ok - acked_before < 500)
        return fault_fail(NAME, "writes did not resume after space was freed");
    if ((rc = crmd_stop_keep(&p)) != 0)
        return fault_fail(NAME, "crmd exited %d", rc);

    /* restart: everything acknowledged is there, and the store is whole */
    if (crmd_start(&p, fault_crmd(), fault_schemas(), data) != 0)
        return fault_fail(NAME, "crmd did not restart");
    bad = fault_check_acked(&p, "d", &l, NULL);
    crmd_stop_keep(&p);
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
    printf(NAME ": after restart: %d of %d acknowledged missing; crm_store_verify OK\n", bad, l.ok);
    if (bad)
        return fault_fail(NAME, "%d acknowledged writes lost", bad);
    umount(dir);
    fault_ledger_free(&l);
    crm_tmpdir_remove(dir);
    printf(NAME ": PASS\n");
    return 0;
}
