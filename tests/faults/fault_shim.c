/*
 * fault_shim -- an LD_PRELOAD library that makes the data file's sync fail
 * (reliability plan R7), for a real crmd and its real LMDB.
 *
 *   CRM_FAULT_FSYNC_EIO_AT=N   the Nth fdatasync/fsync of a file named
 *                              data.mdb (counted from process start) returns
 *                              EIO without syncing; once.
 *   CRM_FAULT_LOG=path         appends one line per injected fault.
 *
 * LMDB (liblmdb.so) calls fdatasync through the PLT, so interposing it here
 * reaches the store's real commit path; nothing of crmd is changed.
 */

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long syncs;

static int is_data_file(int fd)
{
    char link[64], path[4096];
    ssize_t n;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink(link, path, sizeof path - 1);
    if (n <= 0)
        return 0;
    path[n] = 0;
    n = (ssize_t)strlen(path);
    return n >= 8 && strcmp(path + n - 8, "data.mdb") == 0;
}

static void note(const char *what, long nth)
{
    const char *log = getenv("CRM_FAULT_LOG");
    int fd;
    char line[128];
    int len;
    if (!log || (fd = open(log, O_WRONLY | O_APPEND | O_CREAT, 0600)) < 0)
        return;
    len = snprintf(line, sizeof line, "%s #%ld -> EIO (pid %d)\n", what, nth, (int)getpid());
    (void)!write(fd, line, (size_t)len);
    close(fd);
}

/* 1 when this call must fail. */
static int inject(int fd, const char *what)
{
    const char *at = getenv("CRM_FAULT_FSYNC_EIO_AT");
    long nth;
    if (!at || !is_data_file(fd))
        return 0;
    nth = __atomic_add_fetch(&syncs, 1, __ATOMIC_SEQ_CST);
    if (nth != atol(at))
        return 0;
    note(what, nth);
    errno = EIO;
    return 1;
}

int fdatasync(int fd)
{
    static int (*real)(int);
    if (inject(fd, "fdatasync"))
        return -1;
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}

int fsync(int fd)
{
    static int (*real)(int);
    if (inject(fd, "fsync"))
        return -1;
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}
