/*
 * fault_shim -- an LD_PRELOAD library that makes the data file's sync fail
 * (reliability plan R7), for a real crmd and its real LMDB.
 *
 *   CRM_FAULT_FSYNC_EIO_AT=N   the Nth fdatasync/fsync of a file named
 *                              data.mdb (counted from process start) returns
 *                              EIO without syncing; once.
 *   CRM_FAULT_LOG=path         appends one line per injected fault.
 *   CRM_FAULT_JOURNAL=path     power-loss simulation (R3): before every write
 *                              to data.mdb through a descriptor without
 *                              O_DSYNC, the bytes it will overwrite (and the
 *                              file's size) are appended to path; a
 *                              successful fdatasync/fsync of data.mdb empties
 *                              it.  After a SIGKILL, undoing the journal
 *                              (fault_journal_undo, faultutil.c) leaves
 *                              data.mdb as a disk that lost every write
 *                              not yet synced.  Writes through the O_DSYNC
 *                              descriptor (LMDB's meta page) are durable
 *                              when they return: not journaled.
 *   CRM_FAULT_SYNC_IGNORED=1   with the journal: a sync does not empty it (a
 *                              disk that ignores flushes; the negative
 *                              control of power_loss.c: acked writes must
 *                              then be lost).
 *
 * LMDB (liblmdb.so) calls fdatasync, pwrite, writev through the PLT, so
 * interposing them here reaches the store's real commit path; nothing of
 * crmd is changed.
 *
 * Journal record: u64 offset, u64 length of old bytes saved, u64 file size
 * before the write, then the old bytes.
 */

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/uio.h>
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

static void journal_synced(int fd);

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
    if (real(fd) != 0)
        return -1;
    journal_synced(fd);
    return 0;
}

int fsync(int fd)
{
    static int (*real)(int);
    if (inject(fd, "fsync"))
        return -1;
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    if (real(fd) != 0)
        return -1;
    journal_synced(fd);
    return 0;
}

/* ---- power-loss journal ---- */

static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pread)(int, void *, size_t, off_t);

static void load_reals(void)
{
    if (!real_pwrite) {
        real_pwrite = (ssize_t(*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite64");
        real_write = (ssize_t(*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
        real_pread = (ssize_t(*)(int, void *, size_t, off_t))dlsym(RTLD_NEXT, "pread64");
    }
}

/* Saves what a write of len bytes at off on fd will overwrite. */
static void journal(int fd, off_t off, size_t len)
{
    const char *path = getenv("CRM_FAULT_JOURNAL");
    struct stat st;
    uint64_t hdr[3];
    char *old;
    int jfd, fl;
    ssize_t got;
    if (!path || len == 0 || !is_data_file(fd) || (fl = fcntl(fd, F_GETFL)) < 0 ||
        (fl & O_DSYNC) || fstat(fd, &st) != 0)
        return;
    load_reals();
    if (!(old = malloc(len)))
        abort();
    got = off < st.st_size ? real_pread(fd, old, len, off) : 0;
    if (got < 0)
        got = 0;
    hdr[0] = (uint64_t)off;
    hdr[1] = (uint64_t)got;
    hdr[2] = (uint64_t)st.st_size;
    if ((jfd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0600)) < 0)
        abort(); /* a write we could not undo would make the test lie */
    if (real_write(jfd, hdr, sizeof hdr) != (ssize_t)sizeof hdr ||
        (got > 0 && real_write(jfd, old, (size_t)got) != got))
        abort();
    close(jfd);
    free(old);
}

static void journal_synced(int fd)
{
    const char *path = getenv("CRM_FAULT_JOURNAL");
    if (path && is_data_file(fd) && !getenv("CRM_FAULT_SYNC_IGNORED"))
        (void)!truncate(path, 0);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    journal(fd, off, n);
    load_reals();
    return real_pwrite(fd, buf, n, off);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    return pwrite64(fd, buf, n, off);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    static ssize_t (*real)(int, const struct iovec *, int);
    if (getenv("CRM_FAULT_JOURNAL") && fd > 2) {
        size_t len = 0;
        int e = errno; /* lseek on a socket fails: leave errno as it was */
        off_t off = lseek(fd, 0, SEEK_CUR);
        errno = e;
        for (int i = 0; i < cnt; i++)
            len += iov[i].iov_len;
        if (off >= 0)
            journal(fd, off, len);
    }
    if (!real)
        real = (ssize_t(*)(int, const struct iovec *, int))dlsym(RTLD_NEXT, "writev");
    return real(fd, iov, cnt);
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    static ssize_t (*real)(int, const struct iovec *, int, off_t);
    size_t len = 0;
    for (int i = 0; i < cnt; i++)
        len += iov[i].iov_len;
    journal(fd, off, len);
    if (!real)
        real = (ssize_t(*)(int, const struct iovec *, int, off_t))dlsym(RTLD_NEXT, "pwritev");
    return real(fd, iov, cnt, off);
}

ssize_t write(int fd, const void *buf, size_t n)
{
    if (getenv("CRM_FAULT_JOURNAL") && fd > 2) {
        int e = errno;
        off_t off = lseek(fd, 0, SEEK_CUR);
        errno = e;
        if (off >= 0)
            journal(fd, off, n);
    }
    load_reals();
    return real_write(fd, buf, n);
}
