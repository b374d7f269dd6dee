/*
 * store -- LMDB environment, transactions, the write path and gets.
 *
 * The write path for one write, inside its own nested transaction:
 * schema validation and defaults, before-hooks (which may change the record
 * or write more), validation again, refs, unique indexes, then record +
 * index entries + feed entry.  Group commit wraps many of those in one
 * outer transaction and one fsync (design.md, "Threading and the write path").
 */
#include "store_int.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#include "audit.h"
#include "codec.h"

#define DEFAULT_MAP_SIZE ((size_t)1 << 30) /* address space, not disk: the file grows as written */
#define DEFAULT_MAP_MAX ((size_t)16 << 30)
#define DEFAULT_FEED_AGE_MS ((int64_t)7 * 24 * 3600 * 1000)

static const char META_SEQ[] = "last_seq";
static const char META_IDCLOCK[] = "id_clock";
static const char META_FEEDBYTES[] = "feed_bytes";
static const char META_LASTCOMMIT[] = "last_commit_ms";

const char *crm_op_name(crm_op op)
{
    switch (op) {
    case CRM_OP_CREATE:
        return "create";
    case CRM_OP_UPDATE:
        return "update";
    case CRM_OP_DELETE:
        return "delete";
    }
    return "?";
}

void crm_store_opts_default(crm_store_opts *o)
{
    memset(o, 0, sizeof *o);
    o->map_size = DEFAULT_MAP_SIZE;
    o->map_max = DEFAULT_MAP_MAX;
    o->feed_max_age_ms = DEFAULT_FEED_AGE_MS;
}

static int64_t real_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t crm_store_now(const crm_store *s)
{
    return s->o.clock_ms ? s->o.clock_ms(s->o.clock_ud) : real_clock();
}

int64_t crm_store_last_commit_ms(const crm_store *s)
{
    int64_t ids = (int64_t)(s->id_clock >> 20); /* stores from before last_commit_ms */
    return s->last_commit_ms > ids ? s->last_commit_ms : ids;
}
void crm_store_set_feed_floor(crm_store *s, uint64_t floor) { s->feed_floor = floor; }
int crm_txn_depth(const crm_txn *t) { return t->depth; }
int64_t crm_txn_now(const crm_txn *t) { return t->now; }
uint64_t crm_txn_last_seq(const crm_txn *t) { return t->seq; }

const crm_schema *crm_store_schema(const crm_store *s) { return s->schema; }
uint64_t crm_store_last_seq(const crm_store *s) { return atomic_load(&s->last_seq); }
size_t crm_store_map_size(const crm_store *s) { return s->map_size; }
crm_store *crm_txn_store(crm_txn *t) { return t->s; }

const crm_coll_rt *crm_store_coll(const crm_store *s, const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < s->ncolls; i++)
        if (strcmp(s->colls[i].c->name, name) == 0)
            return &s->colls[i];
    return NULL;
}

static int is_fatal_mdb(int mrc)
{
    return mrc == MDB_MAP_FULL || mrc == MDB_TXN_FULL || mrc == MDB_BAD_TXN ||
           mrc == MDB_PAGE_FULL || mrc == MDB_CURSOR_FULL || mrc == ENOSPC || mrc == EIO ||
           mrc == ENOMEM || mrc == MDB_CORRUPTED || mrc == MDB_PANIC;
}

int crm_store_mdb_err(crm_txn *t, int mrc, crm_err *err, const char *what)
{
    if (t && is_fatal_mdb(mrc)) {
        crm_txn *top = t;
        while (top->parent)
            top = top->parent;
        if (!top->fatal || mrc == MDB_MAP_FULL)
            top->fatal = mrc;
        t->fatal = mrc;
    }
    if (mrc == MDB_MAP_FULL || mrc == ENOSPC)
        return crm_err_set(err, CRM_UNAVAILABLE, "store is full (%s)", what);
    if (is_fatal_mdb(mrc))
        return crm_err_set(err, CRM_UNAVAILABLE, "%s: %s", what, mdb_strerror(mrc));
    return crm_err_set(err, CRM_INTERNAL, "%s: %s", what, mdb_strerror(mrc));
}

static size_t index_key(const crm_field *fd, const crm_value *rec, const char *id, size_t idlen,
                        uint8_t *key);

/* Spoils the whole batch t belongs to (its outermost txn is aborted). */
static void mark_fatal(crm_txn *t)
{
    crm_txn *top = t;
    while (top->parent)
        top = top->parent;
    if (!top->fatal)
        top->fatal = MDB_BAD_TXN;
    if (!t->fatal)
        t->fatal = top->fatal;
}

static int has_dependents(const crm_schema *sc, const char *coll);

/* ---- open / close ---- */

static int meta_get_u64(MDB_txn *txn, MDB_dbi dbi, const char *key, uint64_t *out)
{
    MDB_val k = {strlen(key), (void *)key}, v;
    int mrc = mdb_get(txn, dbi, &k, &v);
    *out = 0;
    if (mrc == MDB_NOTFOUND)
        return 0;
    if (mrc)
        return mrc;
    if (v.mv_size == 8)
        *out = crm_be64_get(v.mv_data);
    return 0;
}

static int meta_put_u64(MDB_txn *txn, MDB_dbi dbi, const char *key, uint64_t val)
{
    uint8_t b[8];
    MDB_val k = {strlen(key), (void *)key}, v = {8, b};
    crm_be64_put(b, val);
    return mdb_put(txn, dbi, &k, &v, 0);
}

static unsigned env_flags(const crm_store *s)
{
    /* MDB_NOTLS: read txns belong to the caller, not the thread */
    return MDB_NOTLS | (s->o.no_sync ? MDB_NOSYNC : 0) | (s->o.meta_async ? MDB_NOMETASYNC : 0);
}

static void store_free(crm_store *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->npool; i++) {
        mdb_txn_abort(s->pool[i]->txn);
        free(s->pool[i]);
    }
    pthread_mutex_destroy(&s->pool_lock);
    pthread_mutex_destroy(&s->excl_lock);
    pthread_cond_destroy(&s->excl_cond);
    for (size_t i = 0; i < s->ncolls; i++) {
        free(s->colls[i].idx);
        free(s->colls[i].idx_fields);
    }
    free(s->colls);
    if (s->env)
        mdb_env_close(s->env);
    free(s->dir);
    free(s);
}

int crm_store_open(const char *dir, const crm_schema *schema, const crm_store_opts *opts,
                   crm_store **out, crm_err *err)
{
    crm_store *s = calloc(1, sizeof *s);
    MDB_txn *txn = NULL;
    int mrc, rc = CRM_OK, dead = 0;
    size_t ndbs;
    MDB_envinfo info;

    *out = NULL;
    if (!s)
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    if (opts)
        s->o = *opts;
    else
        crm_store_opts_default(&s->o);
    if (!s->o.map_size)
        s->o.map_size = DEFAULT_MAP_SIZE;
    if (!s->o.map_max)
        s->o.map_max = DEFAULT_MAP_MAX;
    if (s->o.map_max < s->o.map_size)
        s->o.map_max = s->o.map_size;
    s->schema = schema;
    atomic_init(&s->readers, 0);
    s->feed_floor = UINT64_MAX;
    atomic_init(&s->exclusive, 0);
    atomic_init(&s->failed, 0);
    pthread_mutex_init(&s->pool_lock, NULL);
    pthread_mutex_init(&s->excl_lock, NULL);
    pthread_cond_init(&s->excl_cond, NULL);

    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        rc = crm_err_set(err, CRM_UNAVAILABLE, "data folder %s: %s", dir, strerror(errno));
        goto fail;
    }
    if (!(s->dir = strdup(dir))) {
        rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
        goto fail;
    }

    ndbs = 8;
    for (size_t i = 0; i < schema->ncolls; i++)
        ndbs += 1 + schema->colls[i].nindexes;
    if ((mrc = mdb_env_create(&s->env)) || (mrc = mdb_env_set_maxdbs(s->env, (MDB_dbi)ndbs + 8)) ||
        (mrc = mdb_env_set_maxreaders(s->env, 512)) ||
        (mrc = mdb_env_set_mapsize(s->env, s->o.map_size))) {
        rc = crm_err_set(err, CRM_UNAVAILABLE, "lmdb: %s", mdb_strerror(mrc));
        goto fail;
    }
    /* MDB_NOTLS: read txns belong to the caller, not the thread.  Never
     * MDB_WRITEMAP (reliability-plan.md: ENOSPC becomes SIGBUS). */
    if ((mrc = mdb_env_open(s->env, dir, env_flags(s), 0600))) {
        rc = crm_err_set(err, CRM_UNAVAILABLE, "cannot open store in %s: %s", dir,
                         mdb_strerror(mrc));
        goto fail;
    }
    /* Reader slots left by killed processes would pin old pages forever. */
    mdb_reader_check(s->env, &dead);
    if (mdb_env_info(s->env, &info) == 0 && info.me_mapsize > s->o.map_size)
        s->map_size = info.me_mapsize; /* a bigger map from an earlier run */
    else
        s->map_size = s->o.map_size;

    if ((mrc = mdb_txn_begin(s->env, NULL, 0, &txn)))
        goto mdb_fail;
    /* A compaction killed half-way leaves its copy, which may hold erased
     * data.  Under the write lock: a server compacting right now holds it
     * until its copy has been swapped in. */
    crm_store_compact_cleanup(dir);
    if ((mrc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->meta)) ||
        (mrc = mdb_dbi_open(txn, "feed", MDB_CREATE, &s->feed)) ||
        (mrc = mdb_dbi_open(txn, "x:" CRM_AUX_TOKENS, MDB_CREATE, &s->tokens)) ||
        (mrc = mdb_dbi_open(txn, "x:" CRM_AUX_CURSORS, MDB_CREATE, &s->cursors)) ||
        (mrc = mdb_dbi_open(txn, "x:" CRM_AUX_TIMERS, MDB_CREATE, &s->timers)) ||
        (mrc = mdb_dbi_open(txn, "x:" CRM_AUX_TIMER_KEYS, MDB_CREATE, &s->timer_keys)) ||
        (mrc = mdb_dbi_open(txn, "audit", MDB_CREATE, &s->audit)))
        goto mdb_fail;
    s->colls = calloc(schema->ncolls ? schema->ncolls : 1, sizeof *s->colls);
    if (!s->colls) {
        rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < schema->ncolls; i++) {
        const crm_collection *c = &schema->colls[i];
        crm_coll_rt *rt = &s->colls[s->ncolls++];
        char name[160];
        rt->c = c;
        rt->dependents = has_dependents(schema, c->name);
        snprintf(name, sizeof name, "c:%s", c->name);
        if ((mrc = mdb_dbi_open(txn, name, MDB_CREATE, &rt->dbi)))
            goto mdb_fail;
        rt->idx = calloc(c->nindexes ? c->nindexes : 1, sizeof *rt->idx);
        rt->idx_fields = calloc(c->nindexes ? c->nindexes : 1, sizeof *rt->idx_fields);
        if (!rt->idx || !rt->idx_fields) {
            rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
            goto fail;
        }
        for (size_t f = 0; f < c->nfields; f++) {
            const crm_field *fd = &c->fields[f];
            MDB_stat st;
            int existed;
            if (fd->slot < 0)
                continue;
            snprintf(name, sizeof name, "i:%s:%s", c->name, fd->name);
            existed = mdb_dbi_open(txn, name, 0, &rt->idx[fd->slot]) == 0;
            if (!existed && (mrc = mdb_dbi_open(txn, name, MDB_CREATE, &rt->idx[fd->slot])))
                goto mdb_fail;
            rt->idx_fields[fd->slot] = fd;
            /* An index declared after records exist: build it now. */
            if (!existed && mdb_stat(txn, rt->dbi, &st) == 0 && st.ms_entries > 0) {
                MDB_cursor *cur;
                MDB_val k, v;
                if ((mrc = mdb_cursor_open(txn, rt->dbi, &cur)))
                    goto mdb_fail;
                for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0;
                     mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
                    crm_value *rec = crm_mp_decode_trusted(v.mv_data, v.mv_size);
                    uint8_t key[CRM_KEY_MAX + CRM_ID_MAX];
                    size_t kl;
                    MDB_val ik, iv = {k.mv_size, k.mv_data};
                    if (!rec)
                        continue;
                    if (k.mv_size > CRM_ID_MAX) {
                        crm_value_free(rec);
                        continue;
                    }
                    kl = index_key(fd, rec, k.mv_data, k.mv_size, key);
                    crm_value_free(rec);
                    if (!kl)
                        continue; /* sparse: no value, no entry */
                    ik.mv_size = kl;
                    ik.mv_data = key;
                    if ((mrc = mdb_put(txn, rt->idx[fd->slot], &ik, &iv, 0)))
                        break;
                }
                mdb_cursor_close(cur);
                if (mrc && mrc != MDB_NOTFOUND)
                    goto mdb_fail;
            }
        }
    }
    uint64_t seq0 = 0;
    if ((mrc = meta_get_u64(txn, s->meta, META_SEQ, &seq0)) ||
        (mrc = meta_get_u64(txn, s->meta, META_IDCLOCK, &s->id_clock)) ||
        (mrc = meta_get_u64(txn, s->meta, META_FEEDBYTES, &s->feed_bytes)) ||
        (mrc = meta_get_u64(txn, s->meta, META_LASTCOMMIT, (uint64_t *)&s->last_commit_ms)))
        goto mdb_fail;
    atomic_store(&s->last_seq, seq0);
    if ((mrc = mdb_txn_commit(txn))) {
        txn = NULL;
        goto mdb_fail;
    }
    *out = s;
    return CRM_OK;

mdb_fail:
    rc = crm_err_set(err, CRM_UNAVAILABLE, "cannot open store in %s: %s", dir, mdb_strerror(mrc));
fail:
    if (txn)
        mdb_txn_abort(txn);
    store_free(s);
    return rc;
}

int crm_store_reopen_env(crm_store *s, crm_err *err)
{
    MDB_txn *txn = NULL;
    int mrc, dead = 0;
    size_t ndbs = 8;

    if (s->env)
        mdb_env_close(s->env);
    s->env = NULL;
    for (size_t i = 0; i < s->ncolls; i++)
        ndbs += 1 + s->colls[i].c->nindexes;
    if ((mrc = mdb_env_create(&s->env)) || (mrc = mdb_env_set_maxdbs(s->env, (MDB_dbi)ndbs + 8)) ||
        (mrc = mdb_env_set_maxreaders(s->env, 512)) ||
        (mrc = mdb_env_set_mapsize(s->env, s->map_size)) ||
        (mrc = mdb_env_open(s->env, s->dir, env_flags(s), 0600)))
        goto fail;
    mdb_reader_check(s->env, &dead);
    if ((mrc = mdb_txn_begin(s->env, NULL, 0, &txn)) ||
        (mrc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->meta)) ||
        (mrc = mdb_dbi_open(txn, "feed", MDB_CREATE, &s->feed)) ||
        (mrc = mdb_dbi_open(txn, "x:" CRM_AUX_TOKENS, MDB_CREATE, &s->tokens)) ||
        (mrc = mdb_dbi_open(txn, "x:" CRM_AUX_CURSORS, MDB_CREATE, &s->cursors)) ||
        (mrc = mdb_dbi_open(txn, "x:" CRM_AUX_TIMERS, MDB_CREATE, &s->timers)) ||
        (mrc = mdb_dbi_open(txn, "x:" CRM_AUX_TIMER_KEYS, MDB_CREATE, &s->timer_keys)) ||
        (mrc = mdb_dbi_open(txn, "audit", MDB_CREATE, &s->audit)))
        goto fail;
    for (size_t i = 0; i < s->ncolls; i++) {
        crm_coll_rt *rt = &s->colls[i];
        char name[160];
        snprintf(name, sizeof name, "c:%s", rt->c->name);
        if ((mrc = mdb_dbi_open(txn, name, MDB_CREATE, &rt->dbi)))
            goto fail;
        for (size_t j = 0; j < rt->c->nindexes; j++) {
            snprintf(name, sizeof name, "i:%s:%s", rt->c->name, rt->idx_fields[j]->name);
            if ((mrc = mdb_dbi_open(txn, name, MDB_CREATE, &rt->idx[j])))
                goto fail;
        }
    }
    if ((mrc = mdb_txn_commit(txn))) {
        txn = NULL;
        goto fail;
    }
    return CRM_OK;
fail:
    if (txn)
        mdb_txn_abort(txn);
    if (s->env)
        mdb_env_close(s->env);
    s->env = NULL;
    return crm_err_set(err, CRM_UNAVAILABLE, "reopening the store in %s: %s", s->dir,
                       mdb_strerror(mrc));
}

void crm_store_close(crm_store *s)
{
    store_free(s);
}

void crm_store_set_before(crm_store *s, crm_before_fn fn, void *ud)
{
    s->before = fn;
    s->before_ud = ud;
}

/* ---- transactions ---- */

/* Counts a new reader in, after any exclusive section (grow_map, the file
 * swap of a compaction): the counter is raised first and the flag read
 * after it (both sequentially consistent), so either the writer sees this
 * reader and waits for it, or this reader sees the flag, steps back and
 * waits for the writer. */
static void reader_enter(crm_store *s)
{
    for (;;) {
        atomic_fetch_add(&s->readers, 1);
        if (!atomic_load(&s->exclusive))
            return;
        atomic_fetch_sub(&s->readers, 1);
        pthread_mutex_lock(&s->excl_lock);
        while (atomic_load(&s->exclusive))
            pthread_cond_wait(&s->excl_cond, &s->excl_lock);
        pthread_mutex_unlock(&s->excl_lock);
    }
}

int crm_store_exclusive_begin(crm_store *s, int timeout_ms)
{
    struct timespec nap = {0, 200000}; /* 0.2 ms: readers are short */
    atomic_store(&s->exclusive, 1);
    for (int waited_us = 0; atomic_load(&s->readers) > 0; waited_us += 200) {
        if (waited_us >= timeout_ms * 1000) {
            crm_store_exclusive_end(s);
            return -1;
        }
        nanosleep(&nap, NULL);
    }
    return 0;
}

void crm_store_exclusive_end(crm_store *s)
{
    pthread_mutex_lock(&s->excl_lock);
    atomic_store(&s->exclusive, 0);
    pthread_cond_broadcast(&s->excl_cond);
    pthread_mutex_unlock(&s->excl_lock);
}

int crm_store_begin_read(crm_store *s, crm_txn **out, crm_err *err)
{
    crm_txn *t = NULL;
    int mrc;
    *out = NULL;
    pthread_mutex_lock(&s->pool_lock);
    if (s->npool > 0)
        t = s->pool[--s->npool];
    pthread_mutex_unlock(&s->pool_lock);
    reader_enter(s);
    if (t) {
        if ((mrc = mdb_txn_renew(t->txn)) == 0) {
            *out = t;
            return CRM_OK;
        }
        mdb_txn_abort(t->txn); /* fall back to a new one */
        free(t);
    }
    if (!(t = calloc(1, sizeof *t))) {
        atomic_fetch_sub(&s->readers, 1);
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    }
    t->s = s;
    mrc = s->env ? mdb_txn_begin(s->env, NULL, MDB_RDONLY, &t->txn) : EIO; /* EIO: a failed reopen */
    if (mrc == MDB_MAP_RESIZED) { /* another process grew the map */
        mdb_env_set_mapsize(s->env, 0);
        mrc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &t->txn);
    }
    if (mrc) {
        atomic_fetch_sub(&s->readers, 1);
        free(t);
        return crm_err_set(err, CRM_UNAVAILABLE, "read transaction: %s", mdb_strerror(mrc));
    }
    *out = t;
    return CRM_OK;
}

uint64_t crm_txn_snapshot_seq(crm_txn *t)
{
    uint64_t seq = 0;
    if (t->write)
        return t->seq;
    if (meta_get_u64(t->txn, t->s->meta, META_SEQ, &seq) != 0)
        return crm_store_last_seq(t->s);
    return seq;
}

void crm_txn_end(crm_txn *t)
{
    crm_store *s;
    if (!t)
        return;
    s = t->s;
    if (!t->write) {
        mdb_txn_reset(t->txn);
        atomic_fetch_sub(&s->readers, 1);
        pthread_mutex_lock(&s->pool_lock);
        if (s->npool < (int)(sizeof s->pool / sizeof *s->pool)) {
            s->pool[s->npool++] = t;
            t = NULL;
        }
        pthread_mutex_unlock(&s->pool_lock);
        if (!t)
            return;
    }
    mdb_txn_abort(t->txn);
    free(t);
}

static int txn_child(crm_txn *parent, crm_txn *child, crm_err *err)
{
    int mrc;
    *child = *parent;
    child->parent = parent;
    child->fatal = 0;
    child->lazy = 0;
    if ((mrc = mdb_txn_begin(parent->s->env, parent->txn, 0, &child->txn)))
        return crm_store_mdb_err(parent, mrc, err, "nested transaction");
    return CRM_OK;
}

void crm_txn_take_counters(crm_txn *p, const crm_txn *child)
{
    p->seq = child->seq;
    p->id_clock = child->id_clock;
    p->feed_bytes = child->feed_bytes;
    p->audit_seq = child->audit_seq;
    memcpy(p->audit_hash, child->audit_hash, sizeof p->audit_hash);
}

void crm_txn_actor(const crm_txn *t, const char **user, const char **role)
{
    *user = t->user;
    *role = t->role;
}

void crm_txn_set_actor(crm_txn *t, const char *user, const char *role)
{
    t->user = user;
    t->role = role;
    t->via_method = 0;
}

static int txn_child_commit(crm_txn *child, crm_err *err)
{
    int mrc = mdb_txn_commit(child->txn);
    crm_txn *p = child->parent;
    if (mrc)
        return crm_store_mdb_err(p, mrc, err, "nested commit");
    crm_txn_take_counters(p, child);
    return CRM_OK;
}

/* ---- reads ---- */

static int bad_coll(crm_err *err, const char *coll)
{
    return crm_err_set(err, CRM_BAD_REQUEST, "unknown collection \"%s\"", coll ? coll : "");
}

int crm_txn_get_raw(crm_txn *t, const char *coll, const char *id, const void **buf, size_t *len,
                    crm_err *err)
{
    const crm_coll_rt *rt = crm_store_coll(t->s, coll);
    MDB_val k, v;
    int mrc;
    if (!rt)
        return bad_coll(err, coll);
    if (!id || !crm_id_valid(id, strlen(id)))
        return crm_err_set(err, CRM_NOT_FOUND, "%s/%.130s does not exist", coll, id ? id : "");
    k.mv_size = strlen(id);
    k.mv_data = (void *)id;
    mrc = mdb_get(t->txn, rt->dbi, &k, &v);
    if (mrc == MDB_NOTFOUND)
        return crm_err_set(err, CRM_NOT_FOUND, "%s/%s does not exist", coll, id);
    if (mrc)
        return crm_store_mdb_err(t, mrc, err, "get");
    *buf = v.mv_data;
    *len = v.mv_size;
    return CRM_OK;
}

int crm_txn_get(crm_txn *t, const char *coll, const char *id, crm_value **out, crm_err *err)
{
    const void *buf;
    size_t len;
    int rc = crm_txn_get_raw(t, coll, id, &buf, &len, err);
    *out = NULL;
    if (rc != CRM_OK)
        return rc;
    if (!(*out = crm_mp_decode_trusted(buf, len)))
        return crm_err_set(err, CRM_INTERNAL, "%s/%s: stored record does not decode", coll, id);
    return CRM_OK;
}

int crm_txn_count(crm_txn *t, const char *coll, uint64_t *out, crm_err *err)
{
    const crm_coll_rt *rt = crm_store_coll(t->s, coll);
    MDB_stat st;
    int mrc;
    if (!rt)
        return bad_coll(err, coll);
    if ((mrc = mdb_stat(t->txn, rt->dbi, &st)))
        return crm_store_mdb_err(t, mrc, err, "stat");
    *out = st.ms_entries;
    return CRM_OK;
}

/* ---- the write path ---- */

void crm_write_clear(crm_write *w)
{
    crm_value_free(w->details);
    crm_value_free(w->result);
    w->details = NULL;
    w->result = NULL;
    w->rc = CRM_OK;
    w->seq = 0;
    crm_err_clear(&w->err);
}

/* Index key of field fd's value in rec for record id. */
/* Indexes are sparse: a record without a value for the field (absent or
 * nil) has no entry, so writes of records that leave most indexed fields
 * empty stay cheap.  Returns 0 then.  (query.c only walks an index for a
 * condition that excludes nil.) */
static size_t index_key(const crm_field *fd, const crm_value *rec, const char *id, size_t idlen,
                        uint8_t *key)
{
    const crm_value *v = rec ? crm_map_get(rec, fd->name) : NULL;
    size_t kl;
    if (!v || v->type == CRM_T_NIL)
        return 0;
    kl = crm_key_encode(v, crm_keykind_of(fd->type), key);
    memcpy(key + kl, id, idlen);
    return kl + idlen;
}

/* CONFLICT when another record holds value key vk in a unique index. */
static int unique_check(crm_txn *t, const crm_coll_rt *rt, const crm_field *fd, const uint8_t *vk,
                        size_t vkl, const crm_value *val, const char *id, crm_err *err)
{
    MDB_cursor *cur;
    MDB_val k = {vkl, (void *)vk}, v;
    int mrc, rc = CRM_OK;
    if ((mrc = mdb_cursor_open(t->txn, rt->idx[fd->slot], &cur)))
        return crm_store_mdb_err(t, mrc, err, "index cursor");
    mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (mrc == 0 && k.mv_size >= vkl && memcmp(k.mv_data, vk, vkl) == 0) {
        size_t idl = k.mv_size - vkl;
        if (idl != strlen(id) || memcmp((char *)k.mv_data + vkl, id, idl) != 0) {
            char shown[64] = "";
            if (val && val->type == CRM_T_STR)
                snprintf(shown, sizeof shown, " \"%.40s\"", val->u.str.s);
            else if (val && val->type == CRM_T_INT)
                snprintf(shown, sizeof shown, " %lld", (long long)val->u.i);
            rc = crm_err_set(err, CRM_CONFLICT, "%s: %s%s is already used by %.*s", rt->c->name,
                             fd->name, shown, (int)(idl > 130 ? 130 : idl),
                             (char *)k.mv_data + vkl);
            break;
        }
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (rc == CRM_OK && mrc && mrc != MDB_NOTFOUND)
        rc = crm_store_mdb_err(t, mrc, err, "unique check");
    mdb_cursor_close(cur);
    return rc;
}

/* Moves index entries from old to new (either may be NULL). */
static int index_update(crm_txn *t, const crm_coll_rt *rt, const crm_value *oldr,
                        const crm_value *newr, const char *id, int check_unique, crm_err *err)
{
    size_t idlen = strlen(id);
    for (size_t i = 0; i < rt->c->nindexes; i++) {
        const crm_field *fd = rt->idx_fields[i];
        uint8_t ok[CRM_KEY_MAX + CRM_ID_MAX], nk[CRM_KEY_MAX + CRM_ID_MAX];
        size_t okl = 0, nkl = 0;
        int mrc, rc;
        if (oldr)
            okl = index_key(fd, oldr, id, idlen, ok);
        if (newr)
            nkl = index_key(fd, newr, id, idlen, nk);
        /* ok and nk are filled whenever okl and nkl are not 0 (memcmp of 0
         * bytes reads nothing), which cppcheck cannot follow */
        // cppcheck-suppress uninitvar
        if (okl == nkl && memcmp(ok, nk, okl) == 0)
            continue; /* unchanged, or absent before and after */
        if (okl) {
            MDB_val k = {okl, ok};
            mrc = mdb_del(t->txn, rt->idx[i], &k, NULL);
            if (mrc && mrc != MDB_NOTFOUND)
                return crm_store_mdb_err(t, mrc, err, "index delete");
        }
        if (nkl) {
            MDB_val k = {nkl, nk}, v = {idlen, (void *)id};
            const crm_value *val = crm_map_get(newr, fd->name);
            if (check_unique && fd->index == CRM_INDEX_UNIQUE &&
                (rc = unique_check(t, rt, fd, nk, nkl - idlen, val, id, err)) != CRM_OK)
                return rc;
            if ((mrc = mdb_put(t->txn, rt->idx[i], &k, &v, 0)))
                return crm_store_mdb_err(t, mrc, err, "index put");
        }
    }
    return CRM_OK;
}

/* Every unique index whose value changes must be free, checked before the
 * write touches anything (so a refused write leaves the txn as it was). */
static int unique_precheck(crm_txn *t, const crm_coll_rt *rt, const crm_value *oldr,
                           const crm_value *newr, const char *id, crm_err *err)
{
    size_t idlen = strlen(id);
    for (size_t i = 0; i < rt->c->nindexes; i++) {
        const crm_field *fd = rt->idx_fields[i];
        uint8_t ok[CRM_KEY_MAX + CRM_ID_MAX], nk[CRM_KEY_MAX + CRM_ID_MAX];
        size_t okl, nkl;
        int rc;
        if (fd->index != CRM_INDEX_UNIQUE || !(nkl = index_key(fd, newr, id, idlen, nk)))
            continue;
        okl = oldr ? index_key(fd, oldr, id, idlen, ok) : 0;
        if (okl == nkl && memcmp(ok, nk, nkl) == 0)
            continue;
        if ((rc = unique_check(t, rt, fd, nk, nkl - idlen, crm_map_get(newr, fd->name), id, err)) !=
            CRM_OK)
            return rc;
    }
    return CRM_OK;
}

/* Every ref field whose value is new must name an existing record. */
static int refs_check(crm_txn *t, const crm_coll_rt *rt, const crm_value *oldr,
                      const crm_value *newr, crm_write *w)
{
    for (size_t i = 0; i < rt->c->nfields; i++) {
        const crm_field *fd = &rt->c->fields[i];
        const crm_value *v, *ov;
        const crm_coll_rt *target;
        MDB_val k, d;
        int mrc;
        if (fd->type != CRM_F_REF || !(v = crm_map_get(newr, fd->name)) || v->type != CRM_T_STR)
            continue;
        if (oldr && (ov = crm_map_get(oldr, fd->name)) && crm_value_equal(ov, v))
            continue;
        target = crm_store_coll(t->s, fd->ref_to);
        k.mv_size = v->u.str.len;
        k.mv_data = v->u.str.s;
        mrc = (!target || !crm_id_valid(v->u.str.s, v->u.str.len))
                  ? MDB_NOTFOUND
                  : mdb_get(t->txn, target->dbi, &k, &d);
        if (mrc == MDB_NOTFOUND) {
            char msg[200];
            snprintf(msg, sizeof msg, "%s/%.130s does not exist", fd->ref_to, v->u.str.s);
            crm_err_set(&w->err, CRM_VALIDATION, "%s: %s", fd->name, msg);
            w->details = crm_value_map();
            if (w->details) {
                crm_value *fields = crm_value_map();
                if (crm_map_set(w->details, "fields", fields) == 0)
                    crm_map_set(fields, fd->name, crm_value_cstr(msg));
            }
            return CRM_VALIDATION;
        }
        if (mrc)
            return crm_store_mdb_err(t, mrc, &w->err, "ref check");
    }
    return CRM_OK;
}

/* Sets the system fields the store owns. */
static int set_system(crm_value *rec, const char *id, int64_t rev, int64_t created, int64_t updated)
{
    return crm_map_set(rec, "id", crm_value_cstr(id)) | crm_map_set(rec, "_rev", crm_value_int(rev)) |
           crm_map_set(rec, "_created", crm_value_int(created)) |
           crm_map_set(rec, "_updated", crm_value_int(updated));
}

static void strip_system(crm_value *rec)
{
    crm_map_del(rec, "id");
    crm_map_del(rec, "_rev");
    crm_map_del(rec, "_created");
    crm_map_del(rec, "_updated");
}

static int validate(const crm_coll_rt *rt, crm_value *rec, int is_create, crm_write *w)
{
    crm_value_free(w->details);
    w->details = NULL;
    return crm_schema_validate(rt->c, rec, is_create, &w->details, &w->err);
}

static int run_before(crm_txn *t, const crm_coll_rt *rt, crm_write *w, const char *id,
                      crm_value *rec, const crm_value *prev, int is_create)
{
    crm_change ch = {rt->c->name, w->op, id, rec, prev, t->depth};
    int rc;
    if (!t->s->before)
        return CRM_OK;
    t->depth++;
    rc = t->s->before(t->s->before_ud, t, &ch, &w->err);
    t->depth--;
    if (rc != CRM_OK) {
        if (w->err.code != rc)
            w->err.code = rc;
        return rc;
    }
    /* A hook may have broken the record: check it again. */
    if (rec)
        return validate(rt, rec, is_create, w);
    return CRM_OK;
}

/* ---- refs to a deleted record (schema "on_delete") ---- */

/* Whether deleting a record of coll may write other records: some ref field
 * names coll with on_delete cascade or set_null (once per collection, at
 * open: crm_coll_rt.dependents). */
static int has_dependents(const crm_schema *sc, const char *coll)
{
    for (size_t i = 0; i < sc->ncolls; i++)
        for (size_t j = 0; j < sc->colls[i].nfields; j++) {
            const crm_field *fd = &sc->colls[i].fields[j];
            if (fd->type == CRM_F_REF && strcmp(fd->ref_to, coll) == 0 &&
                (fd->on_delete == CRM_ON_DELETE_CASCADE || fd->on_delete == CRM_ON_DELETE_SET_NULL))
                return 1;
        }
    return 0;
}

/* One page (up to limit) of the records of c whose field fd names id. */
static int referrers(crm_txn *t, const crm_collection *c, const crm_field *fd, const char *id,
                     size_t limit, const char *after, crm_value **recs, char **next, crm_err *err)
{
    crm_value *where = crm_value_map();
    crm_query q = {c->name, where, NULL, limit, after};
    int rc;
    *recs = NULL;
    *next = NULL;
    if (!where || crm_map_set(where, fd->name, crm_value_cstr(id)) != 0) {
        crm_value_free(where);
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    }
    rc = crm_txn_query(t, &q, recs, next, err);
    crm_value_free(where);
    return rc;
}

/* Refuses (CONFLICT) the delete of coll/id while a record refers to it
 * through a ref with on_delete restrict; read-only, before any change. */
static int refs_restrict(crm_txn *t, const char *coll, const char *id, crm_write *w)
{
    const crm_schema *sc = t->s->schema;
    for (size_t i = 0; i < sc->ncolls; i++)
        for (size_t j = 0; j < sc->colls[i].nfields; j++) {
            const crm_collection *c = &sc->colls[i];
            const crm_field *fd = &c->fields[j];
            crm_value *recs;
            char *next;
            int rc;
            if (fd->type != CRM_F_REF || strcmp(fd->ref_to, coll) != 0 ||
                fd->on_delete != CRM_ON_DELETE_RESTRICT)
                continue;
            /* two: a record referring to itself does not hold its own delete */
            if ((rc = referrers(t, c, fd, id, 2, NULL, &recs, &next, &w->err)) != CRM_OK)
                return rc;
            free(next);
            for (size_t k = 0; k < recs->u.arr.n; k++) {
                const char *rid = crm_map_str(recs->u.arr.items[k], "id", "");
                if (strcmp(c->name, coll) == 0 && strcmp(rid, id) == 0)
                    continue;
                rc = crm_err_set(&w->err, CRM_CONFLICT,
                                 "%s/%.130s is referred to by %s/%.130s (its %s; on_delete "
                                 "restrict): delete or change that first",
                                 coll, id, c->name, rid, fd->name);
                /* the wire's details: which record holds the delete */
                if ((w->details = crm_value_map()) &&
                    (crm_map_set(w->details, "referred_by", crm_value_cstr(c->name)) != 0 ||
                     crm_map_set(w->details, "id", crm_value_cstr(rid)) != 0 ||
                     crm_map_set(w->details, "field", crm_value_cstr(fd->name)) != 0)) {
                    crm_value_free(w->details);
                    w->details = NULL;
                }
                crm_value_free(recs);
                return rc;
            }
            crm_value_free(recs);
        }
    return CRM_OK;
}

/* After coll/id's own delete, in t: the records referring to it through a
 * ref with on_delete cascade are deleted, and through set_null lose the
 * field, each by a write of its own (before-hooks, feed, audit, and their
 * own refs' rules in turn). */
static int refs_cascade(crm_txn *t, const char *coll, const char *id, crm_write *w)
{
    const crm_schema *sc = t->s->schema;
    if (t->depth >= CRM_MAX_HOOK_DEPTH)
        return crm_err_set(&w->err, CRM_CONFLICT,
                           "deletes that cascade are cut off at depth %d", CRM_MAX_HOOK_DEPTH);
    for (size_t i = 0; i < sc->ncolls; i++)
        for (size_t j = 0; j < sc->colls[i].nfields; j++) {
            const crm_collection *c = &sc->colls[i];
            const crm_field *fd = &c->fields[j];
            char *after = NULL;
            int rc = CRM_OK;
            if (fd->type != CRM_F_REF || strcmp(fd->ref_to, coll) != 0 ||
                (fd->on_delete != CRM_ON_DELETE_CASCADE && fd->on_delete != CRM_ON_DELETE_SET_NULL))
                continue;
            do {
                crm_value *recs, *patch = NULL;
                char *next;
                rc = referrers(t, c, fd, id, CRM_QUERY_MAX_LIMIT, after, &recs, &next, &w->err);
                free(after);
                after = next;
                if (rc == CRM_OK && fd->on_delete == CRM_ON_DELETE_SET_NULL &&
                    (!(patch = crm_value_map()) || crm_map_set(patch, fd->name, crm_value_nil()) != 0))
                    rc = crm_err_set(&w->err, CRM_INTERNAL, "out of memory");
                for (size_t k = 0; rc == CRM_OK && k < recs->u.arr.n; k++) {
                    crm_write sub;
                    memset(&sub, 0, sizeof sub);
                    sub.op = patch ? CRM_OP_UPDATE : CRM_OP_DELETE;
                    sub.coll = c->name;
                    sub.id = crm_map_str(recs->u.arr.items[k], "id", "");
                    sub.data = patch;
                    t->depth++;
                    rc = crm_txn_write(t, &sub);
                    t->depth--;
                    if (rc != CRM_OK)
                        crm_err_set(&w->err, rc, "%s of %s/%.130s (its %s names %s/%.130s): %.200s",
                                    patch ? "on_delete set_null" : "on_delete cascade", c->name,
                                    sub.id, fd->name, coll, id, sub.err.msg);
                    crm_write_clear(&sub);
                }
                crm_value_free(patch);
                crm_value_free(recs);
            } while (rc == CRM_OK && after);
            free(after);
            if (rc != CRM_OK)
                return rc;
        }
    return CRM_OK;
}

/* direct: w runs in t itself, not in a nested txn (see crm_txn_write). */
static int write_body(crm_txn *t, crm_write *w, int direct, uint8_t **enc_out)
{
    int mutating = 0, cascades = 0;
    const crm_coll_rt *rt = crm_store_coll(t->s, w->coll);
    crm_value *rec = NULL, *old = NULL;
    char idbuf[CRM_ID_MAX + 1];
    const char *id = w->id;
    uint8_t *enc = NULL, *prev_bytes = NULL;
    size_t enclen = 0, prev_len = 0;
    int rc = CRM_OK, mrc;
    int64_t rev = 1, prev_rev = 0, created = t->now;
    MDB_val k, v;

    *enc_out = NULL;
    if (!rt)
        return bad_coll(&w->err, w->coll);
    if (t->depth > CRM_MAX_HOOK_DEPTH)
        return crm_err_set(&w->err, CRM_SCRIPT_ERROR,
                           "hooks that trigger hooks are cut off at depth %d", CRM_MAX_HOOK_DEPTH);

    if (w->op == CRM_OP_CREATE) {
        const crm_value *given;
        if (!w->data || w->data->type != CRM_T_MAP)
            return crm_err_set(&w->err, CRM_BAD_REQUEST, "record must be a map");
        given = crm_map_get(w->data, "id");
        if (!id && given) {
            if (given->type != CRM_T_STR)
                return crm_err_set(&w->err, CRM_BAD_REQUEST, "id must be a string");
            /* an id is a C string from here on: "X\0evil" would be stored as X */
            if (memchr(given->u.str.s, 0, given->u.str.len))
                return crm_err_set(&w->err, CRM_BAD_REQUEST,
                                   "id must be 1-128 characters of A-Z a-z 0-9 _ . : @ -");
            id = given->u.str.s;
        }
        if (id) {
            if (!crm_id_valid(id, strlen(id)))
                return crm_err_set(&w->err, CRM_BAD_REQUEST,
                                   "id must be 1-128 characters of A-Z a-z 0-9 _ . : @ -");
        } else {
            char digits[14];
            t->id_clock = crm_id_clock_next(t->id_clock, t->now);
            crm_id_format(t->id_clock, digits);
            snprintf(idbuf, sizeof idbuf, "%s%s", rt->c->id_prefix, digits);
            id = idbuf;
        }
        k.mv_size = strlen(id);
        k.mv_data = (void *)id;
        mrc = mdb_get(t->txn, rt->dbi, &k, &v);
        if (mrc == 0)
            return crm_err_set(&w->err, CRM_CONFLICT, "%s/%s already exists", rt->c->name, id);
        if (mrc != MDB_NOTFOUND)
            return crm_store_mdb_err(t, mrc, &w->err, "get");
        if (!(rec = crm_value_dup(w->data)))
            return crm_err_set(&w->err, CRM_INTERNAL, "out of memory");
        strip_system(rec);
        if ((rc = validate(rt, rec, 1, w)) != CRM_OK)
            goto done;
        if ((rc = run_before(t, rt, w, id, rec, NULL, 1)) != CRM_OK)
            goto done;
    } else {
        if (!id)
            return crm_err_set(&w->err, CRM_BAD_REQUEST, "id is required");
        {
            const void *raw;
            size_t rawlen;
            if ((rc = crm_txn_get_raw(t, rt->c->name, id, &raw, &rawlen, &w->err)) != CRM_OK)
                return rc;
            /* a copy: LMDB's bytes move with our first put (and the feed keeps them) */
            if (!(prev_bytes = malloc(rawlen ? rawlen : 1)))
                return crm_err_set(&w->err, CRM_INTERNAL, "out of memory");
            memcpy(prev_bytes, raw, rawlen);
            prev_len = rawlen;
            if (!(old = crm_mp_decode_trusted(prev_bytes, prev_len))) {
                free(prev_bytes);
                return crm_err_set(&w->err, CRM_INTERNAL, "%s/%s: stored record does not decode",
                                   rt->c->name, id);
            }
        }
        prev_rev = crm_map_int(old, "_rev", 0);
        created = crm_map_int(old, "_created", t->now);
        rev = prev_rev + 1;
        if (w->if_rev && w->if_rev != prev_rev) {
            rc = crm_err_set(&w->err, CRM_CONFLICT, "%s/%s is at rev %lld, not %lld", rt->c->name,
                             id, (long long)prev_rev, (long long)w->if_rev);
            goto done;
        }
        if (w->op == CRM_OP_UPDATE) {
            const crm_value *patch = w->data;
            if (!patch || patch->type != CRM_T_MAP) {
                rc = crm_err_set(&w->err, CRM_BAD_REQUEST, "patch must be a map");
                goto done;
            }
            if (!(rec = crm_value_dup(old))) {
                rc = crm_err_set(&w->err, CRM_INTERNAL, "out of memory");
                goto done;
            }
            for (size_t i = 0; i < patch->u.map.n; i++) {
                const crm_kv *kv = &patch->u.map.kv[i];
                if (strcmp(kv->key, "id") == 0) {
                    if (kv->val->type != CRM_T_STR || strcmp(kv->val->u.str.s, id) != 0) {
                        rc = crm_err_set(&w->err, CRM_BAD_REQUEST, "a record's id cannot change");
                        goto done;
                    }
                    continue;
                }
                if (crm_is_system_field(kv->key))
                    continue; /* clients echo _rev etc. back; the store owns them */
                if (kv->val->type == CRM_T_NIL) {
                    crm_map_del(rec, kv->key);
                } else if (crm_map_set(rec, kv->key, crm_value_dup(kv->val)) != 0) {
                    rc = crm_err_set(&w->err, CRM_INTERNAL, "out of memory");
                    goto done;
                }
            }
            strip_system(rec);
            if ((rc = validate(rt, rec, 0, w)) != CRM_OK)
                goto done;
            if ((rc = run_before(t, rt, w, id, rec, old, 0)) != CRM_OK)
                goto done;
        } else if ((rc = run_before(t, rt, w, id, NULL, old, 0)) != CRM_OK) {
            goto done;
        }
    }

    k.mv_size = strlen(id);
    k.mv_data = (void *)id;
    if (rec) {
        strip_system(rec); /* hooks do not set system fields */
        if ((rc = refs_check(t, rt, old, rec, w)) != CRM_OK)
            goto done;
        if (set_system(rec, id, rev, created, t->now) != 0 || !(enc = crm_mp_encode(rec, &enclen))) {
            rc = crm_err_set(&w->err, CRM_INTERNAL, "out of memory");
            goto done;
        }
        if ((rc = unique_precheck(t, rt, old, rec, id, &w->err)) != CRM_OK)
            goto done;
        mutating = 1; /* from here on only an LMDB error or OOM can fail */
        if ((rc = index_update(t, rt, old, rec, id, 0, &w->err)) != CRM_OK)
            goto done;
        v.mv_size = enclen;
        v.mv_data = enc;
        if ((mrc = mdb_put(t->txn, rt->dbi, &k, &v, 0))) {
            rc = crm_store_mdb_err(t, mrc, &w->err, "put");
            goto done;
        }
    } else {
        if ((rc = refs_restrict(t, rt->c->name, id, w)) != CRM_OK)
            goto done;
        /* cascades write after this delete: undone with it (a real nested
         * txn; crm_txn_write gave such a delete a lazy child, never t) */
        if ((cascades = rt->dependents) && (rc = crm_txn_ensure(t, &w->err)) != CRM_OK)
            goto done;
        mutating = 1;
        if ((rc = index_update(t, rt, old, NULL, id, 0, &w->err)) != CRM_OK)
            goto done;
        if ((mrc = mdb_del(t->txn, rt->dbi, &k, NULL))) {
            rc = crm_store_mdb_err(t, mrc, &w->err, "delete");
            goto done;
        }
    }
    if ((rc = crm_feed_append(t, rt->c->name, w->op, id, rev, prev_rev, enc, enclen, prev_bytes,
                              prev_len, &w->seq, &w->err)) != CRM_OK)
        goto done;
    /* in the same txn as the change: the audit and the data never disagree */
    if ((rc = crm_audit_write_op(t, w->op, rt->c->name, id, rev, w->seq, old, rec, &w->err)) !=
        CRM_OK)
        goto done;
    if (cascades && (rc = refs_cascade(t, rt->c->name, id, w)) != CRM_OK)
        goto done;
    if (rec) {
        w->result = rec;
        rec = NULL;
    } else {
        w->result = crm_value_map();
        if (!w->result || crm_map_set(w->result, "id", crm_value_cstr(id)) != 0 ||
            crm_map_set(w->result, "_rev", crm_value_int(rev)) != 0) {
            rc = crm_err_set(&w->err, CRM_INTERNAL, "out of memory");
            goto done;
        }
    }
    *enc_out = enc;
    enc = NULL;
done:
    crm_value_free(rec);
    crm_value_free(old);
    free(enc);
    free(prev_bytes);
    if (rc != CRM_OK) {
        w->seq = 0;
        /* half a write may be in t: without a nested txn of its own to
         * abort, the whole batch must go (it is retried or failed whole) */
        if (mutating && (direct || t->lazy))
            mark_fatal(t);
    }
    return rc;
}

int crm_txn_ensure(crm_txn *t, crm_err *err)
{
    int mrc;
    if (!t->lazy)
        return CRM_OK;
    /* its parent is never lazy: a write into a lazy txn ensures it first */
    if ((mrc = mdb_txn_begin(t->s->env, t->parent->txn, 0, &t->txn)))
        return crm_store_mdb_err(t->parent, mrc, err, "nested transaction");
    t->lazy = 0;
    return CRM_OK;
}

int crm_txn_write(crm_txn *t, crm_write *w)
{
    crm_txn child;
    uint8_t *enc = NULL;
    int rc;

    crm_write_clear(w);
    if (!t->write)
        return w->rc = crm_err_set(&w->err, CRM_INTERNAL, "write in a read transaction");
    if ((rc = crm_txn_ensure(t, &w->err)) != CRM_OK)
        return w->rc = w->err.code = rc;
    const crm_coll_rt *wrt = w->op == CRM_OP_DELETE && w->coll ? crm_store_coll(t->s, w->coll) : NULL;
    if (!t->s->before && !(wrt && wrt->dependents)) {
        /* No hooks (and no delete that cascades): every refusal (validation, refs, unique, if_rev) is
         * found before the write touches t, so it needs no nested txn of
         * its own -- LMDB's nested txns cost about a fifth of a create.
         * With hooks, a hook's write may fail after earlier ones, and a
         * hook may catch that failure and go on: those keep their nesting. */
        rc = write_body(t, w, 1, &enc);
        free(enc);
        if (rc != CRM_OK) {
            crm_value_free(w->result);
            w->result = NULL;
            w->rc = w->err.code = rc;
        }
        return rc;
    }
    /* With before-hooks: a lazy child.  Hooks that only look at or change
     * the record (the common case) leave it lazy, and the write goes
     * straight into t like a write without hooks (every refusal is still
     * found before the first change).  A hook that writes makes it a real
     * nested txn, so a later refusal undoes the hook's writes too. */
    child = *t;
    child.parent = t;
    child.fatal = 0;
    child.lazy = 1;
    rc = write_body(&child, w, 0, &enc);
    free(enc);
    if (child.lazy) {
        if (rc == CRM_OK)
            crm_txn_take_counters(t, &child);
    } else if (rc == CRM_OK) {
        rc = txn_child_commit(&child, &w->err);
    } else {
        mdb_txn_abort(child.txn);
    }
    if (child.fatal && !t->fatal)
        t->fatal = child.fatal;
    if (rc != CRM_OK) { /* keep the details (they say why), drop any result */
        crm_value_free(w->result);
        w->result = NULL;
        w->rc = w->err.code = rc;
    }
    return rc;
}

/* ---- erasure ---- */

#define ERASED "[erased]"

int crm_scrub_record(const crm_collection *c, crm_value *rec, const char *id, size_t *changed)
{
    for (size_t i = 0; i < c->nfields; i++) {
        const crm_field *fd = &c->fields[i];
        const crm_value *v;
        char ph[CRM_ID_MAX + 16];
        if (!fd->personal || !(v = crm_map_get(rec, fd->name)) || v->type == CRM_T_NIL)
            continue;
        if (v->type == CRM_T_STR && strncmp(v->u.str.s, ERASED, sizeof ERASED - 2) == 0)
            continue; /* erased before */
        if (fd->required && fd->type == CRM_F_STRING) {
            /* the record stays valid; a unique index needs a value of its own */
            if (fd->index == CRM_INDEX_UNIQUE)
                snprintf(ph, sizeof ph, ERASED " %s", id);
            else
                snprintf(ph, sizeof ph, ERASED);
            if (fd->has_max && strlen(ph) > fd->max)
                ph[fd->max >= 1 ? (size_t)fd->max : 1] = '\0';
            if (crm_map_set(rec, fd->name, crm_value_cstr(ph)) != 0)
                return -1;
        } else {
            crm_map_del(rec, fd->name);
        }
        (*changed)++;
    }
    return 0;
}

int crm_txn_erase(crm_txn *t, const char *coll, const char *id, size_t *nfields, crm_err *err)
{
    const crm_coll_rt *rt = crm_store_coll(t->s, coll);
    const void *raw;
    size_t rawlen, changed = 0, enclen = 0, penclen = 0;
    crm_value *old = NULL, *rec = NULL, *pold = NULL, *names = NULL;
    uint8_t *enc = NULL, *penc = NULL;
    int64_t rev;
    uint64_t seq = 0;
    int rc, mrc;
    MDB_val k, v;

    if (nfields)
        *nfields = 0;
    if (!t->write)
        return crm_err_set(err, CRM_INTERNAL, "erase in a read transaction");
    if (!rt)
        return bad_coll(err, coll);
    if ((rc = crm_txn_ensure(t, err)) != CRM_OK)
        return rc;
    if ((rc = crm_txn_get_raw(t, coll, id, &raw, &rawlen, err)) != CRM_OK)
        return rc;
    if (!(old = crm_mp_decode_trusted(raw, rawlen)))
        return crm_err_set(err, CRM_INTERNAL, "%s/%s: stored record does not decode", coll, id);
    if (!(rec = crm_value_dup(old)) || !(pold = crm_value_dup(old)) || !(names = crm_value_arr())) {
        rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < rt->c->nfields; i++) {
        const crm_field *fd = &rt->c->fields[i];
        const crm_value *fv = crm_map_get(old, fd->name);
        if (fd->personal && fv && fv->type != CRM_T_NIL &&
            !(fv->type == CRM_T_STR && strncmp(fv->u.str.s, ERASED, sizeof ERASED - 2) == 0) &&
            crm_arr_push(names, crm_value_cstr(fd->name)) != 0) {
            rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
            goto done;
        }
    }
    if (crm_scrub_record(rt->c, rec, id, &changed) != 0 ||
        crm_scrub_record(rt->c, pold, id, &changed) != 0) {
        rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
        goto done;
    }
    if (changed == 0)
        goto done; /* nothing personal left: nothing to write */
    rev = crm_map_int(old, "_rev", 0) + 1;
    if (crm_map_set(rec, "_rev", crm_value_int(rev)) != 0 ||
        crm_map_set(rec, "_updated", crm_value_int(t->now)) != 0 ||
        !(enc = crm_mp_encode(rec, &enclen)) || !(penc = crm_mp_encode(pold, &penclen))) {
        rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
        goto done;
    }
    /* from here LMDB errors leave t half-written: the caller's nested txn
     * (a unit) is aborted on any error */
    if ((rc = index_update(t, rt, old, rec, id, 0, err)) != CRM_OK)
        goto done;
    k.mv_size = strlen(id);
    k.mv_data = (void *)id;
    v.mv_size = enclen;
    v.mv_data = enc;
    if ((mrc = mdb_put(t->txn, rt->dbi, &k, &v, 0))) {
        rc = crm_store_mdb_err(t, mrc, err, "put");
        goto done;
    }
    if ((rc = crm_feed_append(t, coll, CRM_OP_UPDATE, id, rev, rev - 1, enc, enclen, penc, penclen,
                              &seq, err)) != CRM_OK)
        goto done;
    {
        crm_audit_rec a = {"erase", coll, id, rev, seq, names, NULL};
        if ((rc = crm_txn_audit(t, &a, err)) != CRM_OK)
            goto done;
    }
    if (nfields)
        *nfields = names->u.arr.n;
done:
    crm_value_free(old);
    crm_value_free(rec);
    crm_value_free(pold);
    crm_value_free(names);
    free(enc);
    free(penc);
    return rc;
}

int crm_txn_nest(crm_txn *t, int depth, int (*fn)(void *ud, crm_txn *child, crm_err *err),
                 void *ud, crm_err *err)
{
    crm_txn child;
    int rc;
    crm_err_clear(err);
    if (!t->write)
        return crm_err_set(err, CRM_INTERNAL, "nested transaction of a read transaction");
    if ((rc = crm_txn_ensure(t, err)) != CRM_OK)
        return rc;
    if ((rc = txn_child(t, &child, err)) != CRM_OK)
        return rc;
    if (depth >= 0)
        child.depth = depth;
    rc = fn(ud, &child, err);
    if (rc == CRM_OK && child.fatal)
        rc = crm_err_set(err, CRM_UNAVAILABLE, "the write transaction failed");
    if (rc == CRM_OK) {
        rc = txn_child_commit(&child, err);
    } else {
        if (err->code == CRM_OK)
            crm_err_set(err, rc, "failed");
        mdb_txn_abort(child.txn);
    }
    if (child.fatal && !t->fatal)
        t->fatal = child.fatal;
    return rc;
}

/* Runs one unit in a nested transaction of top. */
static void apply_unit(crm_txn *top, crm_unit *u)
{
    crm_txn child;
    int rc;
    u->rc = CRM_OK;
    crm_err_clear(&u->err);
    top->user = u->user;
    top->role = u->role;
    top->via_method = u->fn != NULL;
    if (u->fn) {
        u->rc = crm_txn_nest(top, -1, u->fn, u->fn_ud, &u->err);
        return;
    }
    if (u->n == 1) { /* a single write needs no second level */
        u->rc = crm_txn_write(top, &u->writes[0]);
        if (u->rc != CRM_OK)
            u->err = u->writes[0].err;
        return;
    }
    if ((rc = txn_child(top, &child, &u->err)) != CRM_OK) {
        u->rc = rc;
        return;
    }
    for (size_t i = 0; i < u->n; i++) {
        crm_write *w = &u->writes[i];
        if ((rc = crm_txn_write(&child, w)) != CRM_OK) {
            u->rc = rc;
            u->err.code = rc; /* name the op of the tx that failed */
            snprintf(u->err.msg, sizeof u->err.msg, "op %zu: %.200s", i, w->err.msg);
            break;
        }
    }
    if (u->rc == CRM_OK)
        u->rc = txn_child_commit(&child, &u->err);
    else
        mdb_txn_abort(child.txn);
    if (child.fatal && !top->fatal)
        top->fatal = child.fatal;
    if (u->rc != CRM_OK) /* all or nothing: no write of a failed unit stays */
        for (size_t i = 0; i < u->n; i++) {
            crm_value_free(u->writes[i].result);
            u->writes[i].result = NULL;
            u->writes[i].seq = 0;
        }
}

static void fail_all(crm_unit *units, size_t n, int rc, const crm_err *e)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < units[i].n; j++) {
            crm_write_clear(&units[i].writes[j]);
            units[i].writes[j].rc = rc;
            units[i].writes[j].err = *e;
        }
        units[i].rc = rc;
        units[i].err = *e;
    }
}

/* Clears the reader slots of processes that died holding a read txn (a
 * killed `crmd backup`, a tool): their snapshot would pin every page freed
 * since, and a full map would stay full until a restart.  Returns how many
 * it cleared. */
static int reclaim_readers(crm_store *s)
{
    int dead = 0;
    if (mdb_reader_check(s->env, &dead) != 0)
        return 0;
    return dead;
}

/* Doubles the map (up to map_max) when no reader pins it.  0 = grown. */
static int grow_map(crm_store *s)
{
    size_t next = s->map_size * 2;
    int rc;
    if (s->map_size >= s->o.map_max)
        return -1;
    if (next > s->o.map_max)
        next = s->o.map_max;
    /* the map is moved: no read txn of this process may be open (lmdb.h,
     * mdb_env_set_mapsize); a reader held for a whole second (a long
     * export in-process) keeps the map as it is */
    if (crm_store_exclusive_begin(s, 1000) != 0)
        return -1;
    rc = mdb_env_set_mapsize(s->env, next);
    if (rc == 0)
        s->map_size = next;
    crm_store_exclusive_end(s);
    return rc == 0 ? 0 : -1;
}

/* LMDB reports a short write as EIO (mdb_page_flush: "short write,
 * filesystem full?"), and a filesystem with a few bytes left takes part of
 * a write: EIO with (almost) no space left is a full disk, not a failing
 * one. */
static int disk_full(crm_store *s)
{
    const char *dir = NULL;
    struct statvfs st;
    if (mdb_env_get_path(s->env, &dir) != 0 || !dir || statvfs(dir, &st) != 0)
        return 0;
    return (unsigned long long)st.f_bavail * st.f_frsize < ((unsigned long long)1 << 20);
}

/* A commit that failed for another reason than room: the state on disk is
 * unknown from here on (crm_store_failed). */
static void note_commit_failure(crm_store *s, int mrc)
{
    if (mrc != MDB_MAP_FULL && mrc != ENOSPC && !s->failed)
        s->failed = mrc;
}

uint64_t crm_store_commits(const crm_store *s) { return s->commits; }
int crm_store_meta_async(const crm_store *s) { return s->o.meta_async; }

int crm_store_env_whole(MDB_env *env, const char *dir, crm_err *err)
{
    MDB_envinfo info;
    MDB_stat st;
    struct stat fs;
    mdb_filehandle_t fd;
    unsigned long long need;
    if (mdb_env_info(env, &info) || mdb_env_stat(env, &st) || mdb_env_get_fd(env, &fd) ||
        fstat(fd, &fs) != 0)
        return crm_err_set(err, CRM_UNAVAILABLE, "%s/data.mdb: cannot read its size", dir);
    need = ((unsigned long long)info.me_last_pgno + 1) * st.ms_psize;
    if ((unsigned long long)fs.st_size < need)
        return crm_err_set(err, CRM_BAD_REQUEST,
                           "%s/data.mdb is truncated: %lld bytes, but its pages need %llu",
                           dir, (long long)fs.st_size, need);
    return CRM_OK;
}

int crm_store_sync(crm_store *s, crm_err *err)
{
    int mrc;
    if (s->failed)
        return crm_store_failed(s, err);
    if (!s->env)
        return crm_err_set(err, CRM_UNAVAILABLE, "the store is closed");
    if ((mrc = mdb_env_sync(s->env, 1)) == 0)
        return CRM_OK;
    /* as after a failed commit: what reached the disk is unknown */
    if (!s->failed)
        s->failed = mrc;
    return crm_err_set(err, CRM_UNAVAILABLE, "sync failed: %s", mdb_strerror(mrc));
}

int crm_store_failed(const crm_store *s, crm_err *err)
{
    if (!s->failed)
        return CRM_OK;
    if (err)
        crm_err_set(err, CRM_UNAVAILABLE,
                    "the store stopped after a failed commit (%s): restart the server",
                    mdb_strerror(s->failed));
    return CRM_UNAVAILABLE;
}

int crm_store_apply(crm_store *s, crm_unit *units, size_t n, crm_err *err)
{
    crm_txn top;
    int mrc, rc = CRM_OK;
    uint64_t audit0;

    if (s->failed) {
        crm_err e;
        crm_store_failed(s, &e);
        fail_all(units, n, CRM_UNAVAILABLE, &e);
        return crm_err_set(err, CRM_UNAVAILABLE, "%s", e.msg);
    }
    for (int attempt = 0;; attempt++) {
        memset(&top, 0, sizeof top);
        top.s = s;
        top.write = 1;
        top.now = crm_store_now(s);
        top.seq = s->last_seq;
        top.id_clock = s->id_clock;
        top.feed_bytes = s->feed_bytes;
        mrc = s->env ? mdb_txn_begin(s->env, NULL, 0, &top.txn) : EIO;
        if (mrc == MDB_MAP_RESIZED) {
            mdb_env_set_mapsize(s->env, 0);
            mrc = mdb_txn_begin(s->env, NULL, 0, &top.txn);
        }
        /* the chain head is read from the store, not cached: another
         * process (crmd token create) may have appended since */
        if (!mrc && (mrc = crm_audit_head_get(top.txn, s->meta, &top.audit_seq, top.audit_hash))) {
            mdb_txn_abort(top.txn);
            top.txn = NULL;
        }
        if (mrc) {
            crm_err e;
            if (mrc == MDB_PANIC) /* a failed meta write: LMDB gave up */
                note_commit_failure(s, mrc);
            crm_store_mdb_err(NULL, mrc, &e, "write transaction");
            e.code = CRM_UNAVAILABLE;
            fail_all(units, n, CRM_UNAVAILABLE, &e);
            return crm_err_set(err, CRM_UNAVAILABLE, "%s", e.msg);
        }
        audit0 = top.audit_seq;
        for (size_t i = 0; i < n && !top.fatal; i++)
            apply_unit(&top, &units[i]);
        if (!top.fatal) {
            crm_err e;
            if (crm_feed_trim(&top, &e) != CRM_OK && !top.fatal)
                top.fatal = MDB_BAD_TXN;
        }
        if (!top.fatal) {
            if ((mrc = meta_put_u64(top.txn, s->meta, META_SEQ, top.seq)) ||
                (mrc = meta_put_u64(top.txn, s->meta, META_IDCLOCK, top.id_clock)) ||
                (mrc = meta_put_u64(top.txn, s->meta, META_FEEDBYTES, top.feed_bytes)) ||
                (mrc = meta_put_u64(top.txn, s->meta, META_LASTCOMMIT, (uint64_t)top.now)) ||
                (top.audit_seq != audit0 &&
                 (mrc = crm_audit_head_put(top.txn, s->meta, top.audit_seq, top.audit_hash))))
                top.fatal = mrc;
        }
        if (!top.fatal) {
            mrc = mdb_txn_commit(top.txn); /* the one fsync of the batch */
            top.txn = NULL;
            if (mrc == 0) {
                atomic_store(&s->last_seq, top.seq);
                s->commits++;
                s->id_clock = top.id_clock;
                s->feed_bytes = top.feed_bytes;
                s->last_commit_ms = top.now;
                return CRM_OK;
            }
            if (mrc == EIO && disk_full(s))
                mrc = ENOSPC;
            note_commit_failure(s, mrc);
            top.fatal = mrc;
        } else {
            mdb_txn_abort(top.txn);
            top.txn = NULL;
        }
        if (top.fatal == MDB_MAP_FULL && attempt < 8 &&
            (reclaim_readers(s) > 0 || grow_map(s) == 0)) {
            for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < units[i].n; j++)
                    crm_write_clear(&units[i].writes[j]);
            continue;
        }
        {
            crm_err e;
            if (top.fatal == MDB_MAP_FULL)
                crm_err_set(&e, CRM_UNAVAILABLE,
                            "store is full: the map is at its ceiling of %zu MiB%s",
                            s->o.map_max >> 20,
                            atomic_load(&s->readers) > 0 ? " or a reader holds it" : "");
            else
                crm_err_set(&e, CRM_UNAVAILABLE, "commit failed: %s", mdb_strerror(top.fatal));
            fail_all(units, n, CRM_UNAVAILABLE, &e);
            rc = crm_err_set(err, CRM_UNAVAILABLE, "%s", e.msg);
        }
        return rc;
    }
}

int crm_store_write1(crm_store *s, crm_write *w)
{
    crm_unit u = {.writes = w, .n = 1};
    crm_err e;
    if (crm_store_apply(s, &u, 1, &e) != CRM_OK)
        return w->rc;
    return u.rc;
}

/* ---- verification ---- */

static int verify_coll(crm_txn *t, const crm_coll_rt *rt, crm_err *err)
{
    MDB_cursor *cur;
    MDB_val k, v;
    MDB_stat st;
    uint64_t nrec = 0, *nvalued = calloc(rt->c->nindexes + 1, sizeof *nvalued);
    int mrc, rc = CRM_OK;

    if (!nvalued)
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    if ((mrc = mdb_cursor_open(t->txn, rt->dbi, &cur))) {
        free(nvalued);
        return crm_store_mdb_err(t, mrc, err, "verify cursor");
    }
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && rc == CRM_OK;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        crm_value *rec = crm_mp_decode_trusted(v.mv_data, v.mv_size);
        const char *rid;
        nrec++;
        if (!rec) {
            rc = crm_err_set(err, CRM_INTERNAL, "%s/%.*s does not decode", rt->c->name,
                             (int)k.mv_size, (char *)k.mv_data);
            break;
        }
        rid = crm_map_str(rec, "id", "");
        if (strlen(rid) != k.mv_size || memcmp(rid, k.mv_data, k.mv_size) != 0)
            rc = crm_err_set(err, CRM_INTERNAL, "%s/%.*s holds id \"%s\"", rt->c->name,
                             (int)k.mv_size, (char *)k.mv_data, rid);
        for (size_t i = 0; rc == CRM_OK && i < rt->c->nindexes; i++) {
            uint8_t key[CRM_KEY_MAX + CRM_ID_MAX];
            MDB_val ik, iv;
            ik.mv_size = index_key(rt->idx_fields[i], rec, rid, strlen(rid), key);
            ik.mv_data = key;
            if (!ik.mv_size)
                continue;
            nvalued[i]++;
            if (mdb_get(t->txn, rt->idx[i], &ik, &iv) != 0)
                rc = crm_err_set(err, CRM_INTERNAL, "%s/%s: index %s has no entry for it",
                                 rt->c->name, rid, rt->idx_fields[i]->name);
        }
        crm_value_free(rec);
    }
    mdb_cursor_close(cur);
    for (size_t i = 0; rc == CRM_OK && i < rt->c->nindexes; i++) {
        if ((mrc = mdb_stat(t->txn, rt->idx[i], &st)))
            rc = crm_store_mdb_err(t, mrc, err, "verify stat");
        else if (st.ms_entries != nvalued[i])
            rc = crm_err_set(err, CRM_INTERNAL,
                             "%s: index %s has %llu entries for %llu records with a value (of %llu)",
                             rt->c->name, rt->idx_fields[i]->name,
                             (unsigned long long)st.ms_entries, (unsigned long long)nvalued[i],
                             (unsigned long long)nrec);
    }
    free(nvalued);
    return rc;
}

int crm_store_verify(crm_store *s, crm_err *err)
{
    crm_txn *t;
    MDB_stat st;
    uint64_t first, last;
    int rc = crm_store_begin_read(s, &t, err);
    if (rc != CRM_OK)
        return rc;
    for (size_t i = 0; i < s->ncolls && rc == CRM_OK; i++)
        rc = verify_coll(t, &s->colls[i], err);
    if (rc == CRM_OK && (rc = crm_feed_bounds(t, &first, &last, err)) == CRM_OK &&
        mdb_stat(t->txn, s->feed, &st) == 0) {
        uint64_t expect = last ? last - first + 1 : 0;
        if (st.ms_entries != expect)
            rc = crm_err_set(err, CRM_INTERNAL, "feed holds %llu entries between %llu and %llu",
                             (unsigned long long)st.ms_entries, (unsigned long long)first,
                             (unsigned long long)last);
        else if (last && last != s->last_seq)
            rc = crm_err_set(err, CRM_INTERNAL, "feed ends at %llu but meta says %llu",
                             (unsigned long long)last, (unsigned long long)s->last_seq);
    }
    crm_txn_end(t);
    return rc;
}

/* ---- auxiliary tables ---- */

static int aux_dbi(crm_store *s, const char *table, MDB_dbi *dbi, crm_err *err)
{
    if (strcmp(table, CRM_AUX_TOKENS) == 0) {
        *dbi = s->tokens;
        return CRM_OK;
    }
    if (strcmp(table, CRM_AUX_CURSORS) == 0) {
        *dbi = s->cursors;
        return CRM_OK;
    }
    if (strcmp(table, CRM_AUX_TIMERS) == 0) {
        *dbi = s->timers;
        return CRM_OK;
    }
    if (strcmp(table, CRM_AUX_TIMER_KEYS) == 0) {
        *dbi = s->timer_keys;
        return CRM_OK;
    }
    return crm_err_set(err, CRM_INTERNAL, "no table %s", table);
}

int crm_txn_aux_put(crm_txn *t, const char *table, const void *key, size_t klen,
                    const void *val, size_t vlen, crm_err *err)
{
    MDB_dbi dbi = 0;
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
    int mrc, rc;
    if (!t->write)
        return crm_err_set(err, CRM_INTERNAL, "aux write in a read transaction");
    if ((rc = crm_txn_ensure(t, err)) != CRM_OK || (rc = aux_dbi(t->s, table, &dbi, err)) != CRM_OK)
        return rc;
    mrc = val ? mdb_put(t->txn, dbi, &k, &v, 0) : mdb_del(t->txn, dbi, &k, NULL);
    if (mrc == MDB_NOTFOUND)
        return crm_err_set(err, CRM_NOT_FOUND, "not found");
    if (mrc)
        return crm_store_mdb_err(t, mrc, err, "aux write");
    return CRM_OK;
}

int crm_txn_aux_scan(crm_txn *t, const char *table, const void *from, size_t flen, size_t max,
                     int (*fn)(void *ud, const void *k, size_t kl, const void *v, size_t vl),
                     void *ud, crm_err *err)
{
    MDB_dbi dbi = 0;
    MDB_cursor *cur;
    MDB_val k = {flen, (void *)from}, v;
    size_t n = 0;
    int mrc, rc;
    if ((rc = aux_dbi(t->s, table, &dbi, err)) != CRM_OK)
        return rc;
    if ((mrc = mdb_cursor_open(t->txn, dbi, &cur)))
        return crm_store_mdb_err(t, mrc, err, "aux cursor");
    for (mrc = mdb_cursor_get(cur, &k, &v, from && flen ? MDB_SET_RANGE : MDB_FIRST); mrc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (fn(ud, k.mv_data, k.mv_size, v.mv_data, v.mv_size) || (max && ++n >= max))
            break;
    }
    mdb_cursor_close(cur);
    if (mrc && mrc != MDB_NOTFOUND)
        return crm_store_mdb_err(t, mrc, err, "aux scan");
    return CRM_OK;
}

int crm_txn_aux_get(crm_txn *t, const char *table, const void *key, size_t klen,
                    const void **val, size_t *vlen, crm_err *err)
{
    MDB_dbi dbi = 0;
    MDB_val k = {klen, (void *)key}, v;
    int mrc, rc = aux_dbi(t->s, table, &dbi, err);
    if (rc != CRM_OK)
        return rc;
    mrc = mdb_get(t->txn, dbi, &k, &v);
    if (mrc == MDB_NOTFOUND)
        return crm_err_set(err, CRM_NOT_FOUND, "not found");
    if (mrc)
        return crm_store_mdb_err(t, mrc, err, "aux get");
    *val = v.mv_data;
    *vlen = v.mv_size;
    return CRM_OK;
}

int crm_store_aux_put(crm_store *s, const char *table, const void *key, size_t klen,
                      const void *val, size_t vlen, crm_err *err)
{
    MDB_dbi dbi = 0;
    MDB_txn *txn;
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
    int mrc, rc = aux_dbi(s, table, &dbi, err);
    if (rc != CRM_OK)
        return rc;
    if (s->failed)
        return crm_store_failed(s, err);
    if ((mrc = s->env ? mdb_txn_begin(s->env, NULL, 0, &txn) : EIO))
        return crm_store_mdb_err(NULL, mrc, err, "aux write");
    mrc = val ? mdb_put(txn, dbi, &k, &v, 0) : mdb_del(txn, dbi, &k, NULL);
    if (mrc) {
        mdb_txn_abort(txn);
        if (mrc == MDB_NOTFOUND)
            return crm_err_set(err, CRM_NOT_FOUND, "not found");
        return crm_store_mdb_err(NULL, mrc, err, "aux write");
    }
    if ((mrc = mdb_txn_commit(txn))) {
        if (mrc == EIO && disk_full(s))
            mrc = ENOSPC;
        note_commit_failure(s, mrc);
        return crm_store_mdb_err(NULL, mrc, err, "aux commit");
    }
    return CRM_OK;
}
