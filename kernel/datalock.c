/*
 * datalock -- the exclusive flock on DATA/crmd.lock (see datalock.h).
 * Never: deletes the lock file (a second process could lock the unlinked
 * inode while a third creates a fresh one, and both would think they own
 * the folder).
 */
#include "datalock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct crm_datalock {
    int fd;
};

int crm_datalock_take(const char *dir, const char *what, crm_datalock **out, crm_err *err)
{
    char path[4096], line[160];
    crm_datalock *l;
    int fd, n;

    *out = NULL;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return crm_err_set(err, CRM_UNAVAILABLE, "data folder %s: %s", dir, strerror(errno));
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, CRM_DATALOCK_FILE) >= sizeof path)
        return crm_err_set(err, CRM_UNAVAILABLE, "data folder path too long");
    if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0)
        return crm_err_set(err, CRM_UNAVAILABLE, "%s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        if (e == EWOULDBLOCK) {
            /* the holder's own line; it wrote it right after locking */
            n = (int)pread(fd, line, sizeof line - 1, 0);
            line[n > 0 ? n : 0] = '\0';
            line[strcspn(line, "\n")] = '\0';
            close(fd);
            return crm_err_set(err, CRM_CONFLICT, "data folder %s is in use by %s; stop it first",
                               dir, *line ? line : "another crmd");
        }
        close(fd);
        return crm_err_set(err, CRM_UNAVAILABLE, "%s: flock: %s", path, strerror(e));
    }
    n = snprintf(line, sizeof line, "%.100s pid %ld\n", what, (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)n, 0) != n) {
        /* the lock holds without its note; the refusal just names nobody */
    }
    if (!(l = malloc(sizeof *l))) {
        close(fd);
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    }
    l->fd = fd;
    *out = l;
    return CRM_OK;
}

void crm_datalock_release(crm_datalock *l)
{
    if (!l)
        return;
    close(l->fd); /* drops the flock */
    free(l);
}
