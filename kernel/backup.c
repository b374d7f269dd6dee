/*
 * backup -- compacted copies of the LMDB environment and atomic restores
 * (see backup.h for the guarantees).
 *
 * This file opens LMDB environments itself (the live one read-only, copies
 * and backups read-only without a lock file) because a backup is a copy
 * of the whole environment, below any one store handle; it reads nothing
 * of the store's format except the meta key "last_seq" (store.c META_SEQ),
 * and restore checks that through crm_store_open too.
 */
#include "backup.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "datalock.h"
#include "keys.h"
#include "schema.h"
#include "store.h"
#include "value.h"

#define MAX_DBS 4096              /* named databases a store may hold here */
#define MANIFEST_MAX (1u << 20)
#define COPY_TRIES 5              /* MDB_MAP_RESIZED: the server grew its map */

/* ---- small file helpers ---- */

static int join(char *out, size_t cap, const char *a, const char *b)
{
    return (size_t)snprintf(out, cap, "%s/%s", a, b) >= cap ? -1 : 0;
}

/* fsync a file or folder by path: a rename is durable only once the folder
 * holding it is synced. */
static int sync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc;
    if (fd < 0)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

/* The folder that holds path ("." when none), for syncing renames. */
static void parent_of(const char *path, char *out, size_t cap)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(out, cap, ".");
    else if (slash == path)
        snprintf(out, cap, "/");
    else
        snprintf(out, cap, "%.*s", (int)(slash - path), path);
}

/* path without trailing slashes (so "data/" + ".restore-X" is a sibling). */
static int trim_path(const char *in, char *out, size_t cap)
{
    size_t n = strlen(in);
    while (n > 1 && in[n - 1] == '/')
        n--;
    if (n == 0 || n >= cap)
        return -1;
    memcpy(out, in, n);
    out[n] = '\0';
    return 0;
}

/* Removes the files a staging or temporary folder can hold, then it. */
static void remove_staging(const char *dir)
{
    static const char *const names[] = {"data.mdb", "lock.mdb", CRM_BACKUP_MANIFEST,
                                        CRM_DATALOCK_FILE};
    char p[4200];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (join(p, sizeof p, dir, names[i]) == 0)
            unlink(p);
    rmdir(dir);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- LMDB ---- */

static int mdb_fail(crm_err *err, int code, const char *what, const char *path, int mrc)
{
    return crm_err_set(err, code, "%s %s: %s", what, path, mdb_strerror(mrc));
}

/* Opens an environment folder read-only.  nolock: a copy or backup no one
 * else uses (no lock.mdb is made in it); else the live store, sharing the
 * server's lock file so our read transaction is seen by its writer. */
static int env_open_ro(const char *dir, int nolock, MDB_env **out, crm_err *err)
{
    MDB_env *env;
    int mrc;
    *out = NULL;
    if ((mrc = mdb_env_create(&env)))
        return mdb_fail(err, CRM_UNAVAILABLE, "lmdb", dir, mrc);
    /* 0 before open: take the map size the last writer recorded */
    if ((mrc = mdb_env_set_maxdbs(env, MAX_DBS)) || (mrc = mdb_env_set_mapsize(env, 0)) ||
        (mrc = mdb_env_set_maxreaders(env, 512)) ||
        (mrc = mdb_env_open(env, dir, MDB_RDONLY | MDB_NOTLS | (nolock ? MDB_NOLOCK : 0),
                            0600))) {
        mdb_env_close(env);
        return mdb_fail(err, CRM_UNAVAILABLE, "cannot open", dir, mrc);
    }
    if ((mrc = crm_store_env_whole(env, dir, err)) != CRM_OK) {
        mdb_env_close(env);
        return mrc;
    }
    *out = env;
    return CRM_OK;
}

/* Entry counts of every named database (a new map name -> count, caller's)
 * and meta's last_seq.  Refuses an environment that is not a crmd store. */
static int inspect(MDB_env *env, const char *dir, crm_value **dbs_out, uint64_t *last_seq,
                   uint64_t *records, crm_err *err)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_dbi main_dbi, dbi;
    MDB_val k, v;
    crm_value *dbs = crm_value_map();
    int mrc, rc = CRM_OK, has_meta = 0, has_feed = 0;
    size_t n = 0;

    *dbs_out = NULL;
    *last_seq = *records = 0;
    if (!dbs)
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    if ((mrc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) ||
        (mrc = mdb_dbi_open(txn, NULL, 0, &main_dbi)) ||
        (mrc = mdb_cursor_open(txn, main_dbi, &cur))) {
        rc = mdb_fail(err, CRM_UNAVAILABLE, "cannot read", dir, mrc);
        goto out;
    }
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        char name[512];
        MDB_stat st;
        if (k.mv_size == 0 || k.mv_size >= sizeof name || memchr(k.mv_data, 0, k.mv_size)) {
            rc = crm_err_set(err, CRM_BAD_REQUEST, "%s: a database with a bad name", dir);
            goto out;
        }
        memcpy(name, k.mv_data, k.mv_size);
        name[k.mv_size] = '\0';
        if (++n > MAX_DBS) {
            rc = crm_err_set(err, CRM_BAD_REQUEST, "%s: more than %d databases", dir, MAX_DBS);
            goto out;
        }
        if ((mrc = mdb_dbi_open(txn, name, 0, &dbi)) || (mrc = mdb_stat(txn, dbi, &st))) {
            rc = crm_err_set(err, CRM_BAD_REQUEST, "%s: database %s: %s", dir, name,
                             mdb_strerror(mrc));
            goto out;
        }
        if (crm_map_set(dbs, name, crm_value_int((int64_t)st.ms_entries)) != 0) {
            rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
            goto out;
        }
        if (strncmp(name, "c:", 2) == 0)
            *records += st.ms_entries;
        if (strcmp(name, "feed") == 0)
            has_feed = 1;
        if (strcmp(name, "meta") == 0) {
            MDB_val mk = {8, "last_seq"}, mv; /* store.c META_SEQ */
            has_meta = 1;
            mrc = mdb_get(txn, dbi, &mk, &mv);
            if (mrc == 0 && mv.mv_size == 8)
                *last_seq = crm_be64_get(mv.mv_data);
            else if (mrc != MDB_NOTFOUND) {
                rc = crm_err_set(err, CRM_BAD_REQUEST, "%s: meta last_seq unreadable", dir);
                goto out;
            }
        }
    }
    if (mrc != MDB_NOTFOUND) {
        rc = mdb_fail(err, CRM_UNAVAILABLE, "cannot read", dir, mrc);
        goto out;
    }
    if (!has_meta || !has_feed) {
        rc = crm_err_set(err, CRM_BAD_REQUEST, "%s is an LMDB environment but not a crmd store "
                         "(no meta or feed database)", dir);
        goto out;
    }
    *dbs_out = dbs;
    dbs = NULL;
out:
    if (cur)
        mdb_cursor_close(cur);
    if (txn)
        mdb_txn_abort(txn);
    crm_value_free(dbs);
    return rc;
}

/* mdb_env_copy2 with MDB_CP_COMPACT into the empty folder dest, retried
 * when the server grew its map since we opened (MDB_MAP_RESIZED). */
static int copy_compact(MDB_env *env, const char *src, const char *dest, crm_err *err)
{
    char p[4200];
    int mrc = 0;
    if (join(p, sizeof p, dest, "data.mdb") != 0)
        return crm_err_set(err, CRM_BAD_REQUEST, "path too long");
    for (int i = 0; i < COPY_TRIES; i++) {
        mrc = mdb_env_copy2(env, dest, MDB_CP_COMPACT);
        if (mrc != MDB_MAP_RESIZED)
            break;
        unlink(p); /* the copy opens data.mdb with O_EXCL */
        if ((mrc = mdb_env_set_mapsize(env, 0)))
            break;
    }
    if (mrc) {
        unlink(p);
        return crm_err_set(err, CRM_UNAVAILABLE, "copy of %s to %s failed: %s", src, dest,
                           mdb_strerror(mrc));
    }
    if (sync_path(p) != 0)
        return crm_err_set(err, CRM_UNAVAILABLE, "fsync %s: %s", p, strerror(errno));
    return CRM_OK;
}

static uint64_t file_size(const char *dir, const char *name)
{
    char p[4200];
    struct stat st;
    if (join(p, sizeof p, dir, name) != 0 || stat(p, &st) != 0)
        return 0;
    return (uint64_t)st.st_size;
}

/* ---- the manifest ---- */

static int write_manifest(const char *dir, const char *source, uint64_t last_seq, uint64_t bytes,
                          crm_value *dbs, crm_err *err)
{
    crm_value *m = crm_value_map();
    char p[4200], *json = NULL, abs[4096];
    size_t len = 0;
    FILE *f;
    int ok;
    if (!realpath(source, abs))
        snprintf(abs, sizeof abs, "%s", source);
    if (!m || crm_map_set(m, "format", crm_value_cstr(CRM_BACKUP_FORMAT)) ||
        crm_map_set(m, "version", crm_value_int(CRM_BACKUP_VERSION)) ||
        crm_map_set(m, "created_ms", crm_value_int(now_ms())) ||
        crm_map_set(m, "source", crm_value_cstr(abs)) ||
        crm_map_set(m, "last_seq", crm_value_int((int64_t)last_seq)) ||
        crm_map_set(m, "bytes", crm_value_int((int64_t)bytes)) ||
        crm_map_set(m, "databases", dbs) || !(json = crm_json_encode(m, &len))) {
        crm_value_free(m);
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    }
    crm_value_free(m);
    if (join(p, sizeof p, dir, CRM_BACKUP_MANIFEST) != 0 || !(f = fopen(p, "wbx"))) {
        free(json);
        return crm_err_set(err, CRM_UNAVAILABLE, "%s: %s", p, strerror(errno));
    }
    ok = fwrite(json, 1, len, f) == len && fputc('\n', f) != EOF && fflush(f) == 0 &&
         fsync(fileno(f)) == 0;
    ok = (fclose(f) == 0) && ok;
    free(json);
    if (!ok)
        return crm_err_set(err, CRM_UNAVAILABLE, "%s: %s", p, strerror(errno));
    return CRM_OK;
}

/* The manifest of backup folder src (caller's), checked for format and
 * version. */
static int read_manifest(const char *src, crm_value **out, crm_err *err)
{
    char p[4200], *buf;
    crm_value *m;
    const crm_value *dbs, *seq;
    FILE *f;
    size_t n;
    *out = NULL;
    if (join(p, sizeof p, src, CRM_BACKUP_MANIFEST) != 0 || !(f = fopen(p, "rb")))
        return crm_err_set(err, CRM_BAD_REQUEST, "%s is not a crmd backup (no %s: %s)", src,
                           CRM_BACKUP_MANIFEST, strerror(errno));
    if (!(buf = malloc(MANIFEST_MAX + 1))) {
        fclose(f);
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    }
    n = fread(buf, 1, MANIFEST_MAX + 1, f);
    fclose(f);
    if (n > MANIFEST_MAX) {
        free(buf);
        return crm_err_set(err, CRM_BAD_REQUEST, "%s is larger than %u bytes", p, MANIFEST_MAX);
    }
    m = crm_json_decode(buf, n, NULL, err);
    free(buf);
    if (!m)
        return crm_err_set(err, CRM_BAD_REQUEST, "%s: %s", p, err->msg);
    dbs = m->type == CRM_T_MAP ? crm_map_get(m, "databases") : NULL;
    seq = m->type == CRM_T_MAP ? crm_map_get(m, "last_seq") : NULL;
    if (m->type != CRM_T_MAP || strcmp(crm_map_str(m, "format", ""), CRM_BACKUP_FORMAT) != 0 ||
        !dbs || dbs->type != CRM_T_MAP || !seq || seq->type != CRM_T_INT) {
        crm_value_free(m);
        return crm_err_set(err, CRM_BAD_REQUEST, "%s is not a crmd backup manifest", p);
    }
    if (crm_map_int(m, "version", 0) != CRM_BACKUP_VERSION) {
        crm_value_free(m);
        return crm_err_set(err, CRM_BAD_REQUEST, "%s: backup format version %lld; this crmd "
                           "reads version %d", p, (long long)crm_map_int(m, "version", 0),
                           CRM_BACKUP_VERSION);
    }
    *out = m;
    return CRM_OK;
}

/* ---- backup ---- */

int crm_backup_create(const char *data, const char *dest_in, crm_backup_info *info,
                      crm_err *err)
{
    char dest[4096], tmp[4200], parent[4096], p[4200];
    MDB_env *live = NULL, *copy = NULL;
    crm_value *dbs = NULL;
    crm_backup_info bi;
    struct stat st;
    int rc;

    crm_err_clear(err);
    memset(&bi, 0, sizeof bi);
    if (trim_path(dest_in, dest, sizeof dest) != 0)
        return crm_err_set(err, CRM_BAD_REQUEST, "bad backup path");
    if (join(p, sizeof p, data, "data.mdb") != 0 || stat(p, &st) != 0)
        return crm_err_set(err, CRM_NOT_FOUND, "no store in %s (%s)", data, strerror(errno));
    if (lstat(dest, &st) == 0)
        return crm_err_set(err, CRM_CONFLICT, "%s exists; a backup goes to a new path", dest);
    snprintf(tmp, sizeof tmp, "%s.partial-XXXXXX", dest);
    if (!mkdtemp(tmp))
        return crm_err_set(err, CRM_UNAVAILABLE, "cannot make %s: %s", tmp, strerror(errno));
    if ((rc = env_open_ro(data, 0, &live, err)) != CRM_OK ||
        (rc = copy_compact(live, data, tmp, err)) != CRM_OK)
        goto fail;
    mdb_env_close(live);
    live = NULL;
    /* what the copy holds, from the copy itself: the manifest describes
     * exactly this snapshot */
    if ((rc = env_open_ro(tmp, 1, &copy, err)) != CRM_OK ||
        (rc = inspect(copy, tmp, &dbs, &bi.last_seq, &bi.records, err)) != CRM_OK)
        goto fail;
    bi.databases = dbs->u.map.n;
    mdb_env_close(copy);
    copy = NULL;
    bi.bytes = file_size(tmp, "data.mdb");
    rc = write_manifest(tmp, data, bi.last_seq, bi.bytes, dbs, err);
    dbs = NULL; /* the manifest took it */
    if (rc != CRM_OK)
        goto fail;
    if (sync_path(tmp) != 0) {
        rc = crm_err_set(err, CRM_UNAVAILABLE, "fsync %s: %s", tmp, strerror(errno));
        goto fail;
    }
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dest, RENAME_NOREPLACE) != 0) {
        rc = crm_err_set(err, errno == EEXIST ? CRM_CONFLICT : CRM_UNAVAILABLE,
                         "cannot rename %s to %s: %s", tmp, dest, strerror(errno));
        goto fail;
    }
    parent_of(dest, parent, sizeof parent);
    sync_path(parent);
    if (info)
        *info = bi;
    return CRM_OK;
fail:
    crm_value_free(dbs);
    if (live)
        mdb_env_close(live);
    if (copy)
        mdb_env_close(copy);
    remove_staging(tmp);
    return rc;
}

/* ---- restore ---- */

/* The databases found in the backup must be the manifest's, count for
 * count: a truncated copy or a manifest from another backup shows here. */
static int match_manifest(const crm_value *m, const crm_value *dbs, uint64_t last_seq,
                          const char *src, crm_err *err)
{
    const crm_value *want = crm_map_get(m, "databases");
    if ((uint64_t)crm_map_int(m, "last_seq", -1) != last_seq)
        return crm_err_set(err, CRM_BAD_REQUEST,
                           "%s: data.mdb is at seq %llu but the manifest says %lld", src,
                           (unsigned long long)last_seq, (long long)crm_map_int(m, "last_seq", -1));
    if (want->u.map.n != dbs->u.map.n)
        return crm_err_set(err, CRM_BAD_REQUEST,
                           "%s: data.mdb holds %zu databases but the manifest lists %zu", src,
                           dbs->u.map.n, want->u.map.n);
    for (size_t i = 0; i < want->u.map.n; i++) {
        const char *name = want->u.map.kv[i].key;
        const crm_value *w = want->u.map.kv[i].val, *got = crm_map_get(dbs, name);
        if (!got || !crm_value_equal(w, got))
            return crm_err_set(err, CRM_BAD_REQUEST,
                               "%s: database %s holds %lld entries but the manifest says %lld",
                               src, name, got ? (long long)got->u.i : -1LL,
                               w->type == CRM_T_INT ? (long long)w->u.i : -1LL);
    }
    return CRM_OK;
}

/* Opens the staged copy as the server will (current schemas; missing
 * collections and indexes are made, as at any start) and verifies it. */
static int verify_staged(const char *staging, const char *schemas_dir, uint64_t last_seq,
                         crm_err *err)
{
    crm_schema *schema = NULL;
    crm_store *s = NULL;
    int rc;
    if ((rc = crm_schema_load_dir(schemas_dir, &schema, err)) != CRM_OK)
        return rc;
    if ((rc = crm_store_open(staging, schema, NULL, &s, err)) != CRM_OK) {
        rc = crm_err_set(err, CRM_BAD_REQUEST, "the backup does not open as a store: %s",
                         err->msg);
    } else if (crm_store_last_seq(s) != last_seq) {
        rc = crm_err_set(err, CRM_BAD_REQUEST, "the restored store is at seq %llu, expected %llu",
                         (unsigned long long)crm_store_last_seq(s),
                         (unsigned long long)last_seq);
    } else if ((rc = crm_store_verify(s, err)) != CRM_OK) {
        rc = crm_err_set(err, CRM_BAD_REQUEST, "the backup fails verification: %s", err->msg);
    }
    crm_store_close(s);
    crm_schema_free(schema);
    return rc;
}

int crm_backup_restore(const char *src_in, const char *data_in, const char *schemas_dir,
                       crm_backup_info *info, crm_err *err)
{
    char src[4096], data[4096], staging[4200], parent[4096], p[4200], old[4200];
    crm_datalock *lock = NULL;
    MDB_env *env = NULL;
    crm_value *m = NULL, *dbs = NULL;
    crm_backup_info bi;
    struct stat st;
    int rc, have_old;

    crm_err_clear(err);
    memset(&bi, 0, sizeof bi);
    staging[0] = '\0';
    if (trim_path(src_in, src, sizeof src) != 0 || trim_path(data_in, data, sizeof data) != 0)
        return crm_err_set(err, CRM_BAD_REQUEST, "bad path");
    {
        char rs[4096], rd[4096];
        if (realpath(src, rs) && realpath(data, rd) && strcmp(rs, rd) == 0)
            return crm_err_set(err, CRM_BAD_REQUEST, "%s is the data folder itself", src);
    }
    if ((rc = read_manifest(src, &m, err)) != CRM_OK)
        return rc;
    /* held to the end: no server may start on data while we swap */
    if ((rc = crm_datalock_take(data, "crmd restore", &lock, err)) != CRM_OK)
        goto out;
    if ((rc = env_open_ro(src, 1, &env, err)) != CRM_OK)
        goto out;
    if ((rc = inspect(env, src, &dbs, &bi.last_seq, &bi.records, err)) != CRM_OK ||
        (rc = match_manifest(m, dbs, bi.last_seq, src, err)) != CRM_OK)
        goto out;
    bi.databases = dbs->u.map.n;
    /* staged beside data, so the swap is a rename on one file system */
    snprintf(staging, sizeof staging, "%s.restore-XXXXXX", data);
    if (!mkdtemp(staging)) {
        rc = crm_err_set(err, CRM_UNAVAILABLE, "cannot make %s: %s", staging, strerror(errno));
        staging[0] = '\0';
        goto out;
    }
    /* a compacting copy walks every tree of the backup: unreadable pages
     * fail here, before anything is replaced */
    if ((rc = copy_compact(env, src, staging, err)) != CRM_OK)
        goto out;
    mdb_env_close(env);
    env = NULL;
    if ((rc = verify_staged(staging, schemas_dir, bi.last_seq, err)) != CRM_OK)
        goto out;
    if (join(p, sizeof p, staging, "lock.mdb") == 0)
        unlink(p); /* made by the check; the server makes its own */
    bi.bytes = file_size(staging, "data.mdb");
    if (join(p, sizeof p, staging, "data.mdb") != 0 || sync_path(p) != 0 ||
        sync_path(staging) != 0) {
        rc = crm_err_set(err, CRM_UNAVAILABLE, "fsync %s: %s", staging, strerror(errno));
        goto out;
    }
    /* the one step that changes data: both names always exist, each
     * holding a whole store */
    if (renameat2(AT_FDCWD, staging, AT_FDCWD, data, RENAME_EXCHANGE) != 0) {
        rc = crm_err_set(err, CRM_UNAVAILABLE, "cannot swap %s into %s: %s", staging, data,
                         strerror(errno));
        goto out;
    }
    parent_of(data, parent, sizeof parent);
    sync_path(parent);
    /* staging now holds the old data: keep it under a dated name, or drop
     * the folder when there was no store in it */
    have_old = join(p, sizeof p, staging, "data.mdb") == 0 && stat(p, &st) == 0;
    if (have_old) {
        time_t now = time(NULL);
        struct tm tm;
        char stamp[32];
        gmtime_r(&now, &tm);
        strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
        snprintf(old, sizeof old, "%s.pre-restore-%s", data, stamp);
        for (int i = 1; i < 100 && lstat(old, &st) == 0; i++)
            snprintf(old, sizeof old, "%s.pre-restore-%s-%d", data, stamp, i);
        if (rename(staging, old) == 0)
            snprintf(bi.old_data, sizeof bi.old_data, "%s", old);
        else
            snprintf(bi.old_data, sizeof bi.old_data, "%s", staging);
        sync_path(parent);
    } else {
        remove_staging(staging);
    }
    staging[0] = '\0';
    if (info)
        *info = bi;
    rc = CRM_OK;
out:
    if (env)
        mdb_env_close(env);
    if (staging[0])
        remove_staging(staging);
    crm_value_free(dbs);
    crm_value_free(m);
    crm_datalock_release(lock);
    return rc;
}
