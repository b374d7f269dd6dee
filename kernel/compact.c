/*
 * compact -- rewriting the data file without its free pages, so erased
 * values leave the data folder (store.h, crm_store_compact).
 *
 * LMDB keeps the bytes of deleted and overwritten records in free pages
 * (reliability-plan.md: a deleted marker was still in the file 5 times
 * after three more commits).  A compacting copy walks only the live trees,
 * copying the used part of each page, so those bytes stay behind; the copy
 * then takes the old file's place by rename(2), which is atomic: a crash
 * leaves either the old file or the complete new one.
 */
#include "store_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define COMPACT_DIR ".compact"

void crm_store_compact_cleanup(const char *dir)
{
    char tmp[PATH_MAX], f[PATH_MAX + 300];
    DIR *d;
    struct dirent *e;
    snprintf(tmp, sizeof tmp, "%s/" COMPACT_DIR, dir);
    if (!(d = opendir(tmp)))
        return;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(f, sizeof f, "%s/%s", tmp, e->d_name);
        unlink(f);
    }
    closedir(d);
    rmdir(tmp);
}

static int fsync_path(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC), rc;
    if (fd < 0)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

int crm_store_compact(crm_store *s, crm_err *err)
{
    char tmp[PATH_MAX], from[PATH_MAX + 16], to[PATH_MAX + 16];
    MDB_txn *w = NULL;
    int mrc;

    if (!s->env)
        return crm_err_set(err, CRM_UNAVAILABLE, "the store is closed");
    /* the env is closed below: no read transaction of ours may be open,
     * and none may begin until the new file is mapped */
    if (crm_store_exclusive_begin(s, 10000) != 0)
        return crm_err_set(err, CRM_CONFLICT, "a read transaction stayed open: compact later");
    pthread_mutex_lock(&s->pool_lock);
    for (int i = 0; i < s->npool; i++) {
        mdb_txn_abort(s->pool[i]->txn);
        free(s->pool[i]);
    }
    s->npool = 0;
    pthread_mutex_unlock(&s->pool_lock);

    crm_store_compact_cleanup(s->dir);
    snprintf(tmp, sizeof tmp, "%s/" COMPACT_DIR, s->dir);
    snprintf(from, sizeof from, "%s/data.mdb", tmp);
    snprintf(to, sizeof to, "%s/data.mdb", s->dir);
    if (mkdir(tmp, 0700) != 0) {
        crm_store_exclusive_end(s);
        return crm_err_set(err, CRM_UNAVAILABLE, "compaction folder %s: %s", tmp, strerror(errno));
    }
    /* Hold the write lock from the copy to the swap: a writer in another
     * process (crmd token create) waits instead of writing into the old
     * file.  The compacting copy itself reads through its own read txn. */
    if ((mrc = mdb_txn_begin(s->env, NULL, 0, &w)))
        goto fail;
    if ((mrc = mdb_env_copy2(s->env, tmp, MDB_CP_COMPACT)))
        goto fail;
    if (fsync_path(from, O_RDONLY) != 0 || rename(from, to) != 0) {
        mrc = errno;
        goto fail;
    }
    fsync_path(s->dir, O_RDONLY | O_DIRECTORY);
    mdb_txn_abort(w);
    w = NULL;
    crm_store_compact_cleanup(s->dir);
    /* our map still shows the old (now unlinked) file: map the new one */
    {
        int rc = crm_store_reopen_env(s, err);
        crm_store_exclusive_end(s);
        return rc;
    }

fail:
    if (w)
        mdb_txn_abort(w);
    crm_store_compact_cleanup(s->dir);
    crm_store_exclusive_end(s);
    return crm_err_set(err, CRM_UNAVAILABLE, "compaction failed: %s", mdb_strerror(mrc));
}
