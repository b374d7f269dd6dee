/*
 * plugin -- the C plugin loader (see plugin.h for the contract).
 *
 * Modelled on Redis's moduleLoad and SQLite's sqlite3LoadExtension: dlopen
 * with RTLD_NOW|RTLD_LOCAL (an unresolved symbol fails here, at start-up,
 * not at the first call; nothing a plugin defines can shadow another's
 * symbols), one entry point, a version check that names the file and both
 * sides (nginx's "module ... version %ui instead of %ui"), and on a failed
 * init everything the plugin registered is removed before dlclose, so no
 * pointer into unmapped code stays behind in the bus.
 *
 * Never: runs anything of a plugin before its ABI and table size are
 * checked (only its entry point, which returns a static struct); keeps a
 * half-loaded plugin; dlcloses a plugin whose registrations are still in
 * the bus.
 */
#include "plugin.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec.h"
#include "crashguard.h"
#include "value.h"

/* A configuration file larger than this is refused (it is read whole). */
#define CONFIG_MAX_BYTES (16u << 20)

typedef struct loaded {
    void *dl;                    /* dlopen handle */
    const crm_plugin_info *info; /* static storage inside the .so */
    crm_plugin *owner;           /* the bus owner of its registrations */
    char *path;                  /* "DIR/x.so", for messages */
    char *name;                  /* info->name, else the file name without .so */
    char *stem;                  /* the file name without .so: the crash guard's name */
} loaded;

struct crm_plugins {
    crm_bus *b;
    loaded *v;
    size_t n;
    char *quarantined[CRM_PLUGINS_QUARANTINE_MAX]; /* names skipped at load */
    int crashes[CRM_PLUGINS_QUARANTINE_MAX];
    size_t nq;
};

/* ---- helpers ---- */

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b); /* bytes, not locale */
}

static char *join(const char *dir, const char *name, const char *ext)
{
    size_t n = strlen(dir) + 1 + strlen(name) + strlen(ext) + 1;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s%s", dir, name, ext);
    return p;
}

/* The names of dir's regular *.so files, sorted; *out NULL and *n 0 when
 * dir does not exist. */
static int list_dir(const char *dir, char ***out, size_t *n, crm_err *err)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char **v = NULL;
    size_t cnt = 0, cap = 0;
    *out = NULL;
    *n = 0;
    if (!d) {
        if (errno == ENOENT)
            return CRM_OK; /* no folder, no plugins */
        return crm_err_set(err, CRM_UNAVAILABLE, "%s: %s", dir, strerror(errno));
    }
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        struct stat st;
        char *path;
        if (len <= 3 || strcmp(e->d_name + len - 3, ".so") != 0)
            continue;
        if (!(path = join(dir, e->d_name, "")))
            goto oom;
        /* stat, not lstat: a symlink to a plugin is a plugin */
        int reg = stat(path, &st) == 0 && S_ISREG(st.st_mode);
        free(path);
        if (!reg)
            continue;
        if (cnt == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            char **nv = realloc(v, ncap * sizeof *v);
            if (!nv)
                goto oom;
            v = nv;
            cap = ncap;
        }
        if (!(v[cnt] = strdup(e->d_name)))
            goto oom;
        cnt++;
    }
    closedir(d);
    if (cnt)
        qsort(v, cnt, sizeof *v, by_name);
    *out = v;
    *n = cnt;
    return CRM_OK;
oom:
    closedir(d);
    for (size_t i = 0; i < cnt; i++)
        free(v[i]);
    free(v);
    return crm_err_set(err, CRM_INTERNAL, "out of memory");
}

/* NAME.json beside the plugin: *out the decoded map (caller's), or NULL
 * when there is no such file. */
static int read_config(const char *path, crm_value **out, crm_err *err)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    crm_limits lim = {CONFIG_MAX_BYTES, 32};
    crm_err jerr;
    *out = NULL;
    if (!f) {
        if (errno == ENOENT)
            return CRM_OK;
        return crm_err_set(err, CRM_BAD_REQUEST, "%s: %s", path, strerror(errno));
    }
    for (;;) {
        if (len == cap) {
            if (cap > CONFIG_MAX_BYTES) {
                fclose(f);
                free(buf);
                return crm_err_set(err, CRM_BAD_REQUEST, "%s: larger than %u bytes", path,
                                   CONFIG_MAX_BYTES);
            }
            size_t ncap = cap ? cap * 2 : 4096;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                fclose(f);
                free(buf);
                return crm_err_set(err, CRM_INTERNAL, "out of memory");
            }
            buf = nb;
            cap = ncap;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0)
            break;
    }
    if (ferror(f)) {
        fclose(f);
        free(buf);
        return crm_err_set(err, CRM_BAD_REQUEST, "%s: read error", path);
    }
    fclose(f);
    *out = crm_json_decode(buf ? buf : "", len, &lim, &jerr);
    free(buf);
    if (!*out)
        return crm_err_set(err, jerr.code == CRM_INTERNAL ? CRM_INTERNAL : CRM_BAD_REQUEST,
                           "%s: %s", path, jerr.msg);
    if ((*out)->type != CRM_T_MAP) {
        crm_value_free(*out);
        *out = NULL;
        return crm_err_set(err, CRM_BAD_REQUEST, "%s: must hold a JSON object", path);
    }
    return CRM_OK;
}

/* fini, remove registrations, dlclose: the exact reverse of a load. */
static void unload_one(crm_bus *b, loaded *l)
{
    if (l->info && l->info->fini && l->owner) {
        const char *prev = crm_crashguard_enter(l->stem);
        l->info->fini(l->owner, crm_bus_api(b));
        crm_crashguard_leave(prev);
    }
    if (l->owner) {
        crm_bus_log(b, CRM_LOG_INFO, "plugins", "unloaded %s", l->path);
        crm_bus_owner_free(l->owner);
    }
    if (l->dl)
        dlclose(l->dl);
    free(l->path);
    free(l->name);
    free(l->stem);
    memset(l, 0, sizeof *l);
}

/* ---- one plugin ---- */

/* A plugin file larger than this is refused (it is copied whole). */
#define PLUGIN_MAX_BYTES (256u << 20)

/* dlopens a private copy of path.  dlopen maps the file it opens, so an
 * in-place overwrite of a loaded plugin (`cp new.so plugins/`, which
 * truncates and rewrites the same inode) rewrote the running code under the
 * server, which crashed.  The copy is a temp file ($TMPDIR, else /tmp),
 * unlinked as soon as it is mapped: nobody can change it, the original may
 * be replaced at any time, and the next start loads the new one.  (A memfd
 * opened as /proc/self/fd/N was tried first; its name pointed at other
 * files once the descriptor was reused, which the sanitizers' exit-time
 * module scan tripped over.) */
static void *open_private_copy(const char *path, const char *stem, char *why, size_t cap)
{
    char tmp[4096], buf[65536];
    const char *dir = getenv("TMPDIR");
    int in = open(path, O_RDONLY | O_CLOEXEC), out;
    size_t total = 0;
    ssize_t n = 0;
    void *dl = NULL;
    if (in < 0) {
        snprintf(why, cap, "%s", strerror(errno));
        return NULL;
    }
    if ((size_t)snprintf(tmp, sizeof tmp, "%s/crmd-plugin-%.40s-XXXXXX.so",
                         dir && *dir ? dir : "/tmp", stem) >= sizeof tmp ||
        (out = mkostemps(tmp, 3, O_CLOEXEC)) < 0) {
        snprintf(why, cap, "a private copy in %s: %s", dir && *dir ? dir : "/tmp", strerror(errno));
        close(in);
        return NULL;
    }
    while ((n = read(in, buf, sizeof buf)) > 0) {
        if ((total += (size_t)n) > PLUGIN_MAX_BYTES) {
            snprintf(why, cap, "larger than %u MiB", PLUGIN_MAX_BYTES >> 20);
            break;
        }
        for (ssize_t off = 0, w; off < n; off += w)
            if ((w = write(out, buf + off, (size_t)(n - off))) <= 0) {
                snprintf(why, cap, "copying it: %s", strerror(errno));
                n = -2;
                break;
            }
        if (n < 0)
            break;
    }
    if (n == -1)
        snprintf(why, cap, "reading it: %s", strerror(errno));
    close(in);
    if (close(out) != 0 && n == 0) {
        snprintf(why, cap, "copying it: %s", strerror(errno));
        n = -2;
    }
    if (n == 0 && !(dl = dlopen(tmp, RTLD_NOW | RTLD_LOCAL))) {
        const char *e = dlerror();
        snprintf(why, cap, "%s", e ? e : "dlopen failed");
    }
    unlink(tmp); /* mapped (or refused): the name is no longer needed */
    return dl;
}

static int load_one(crm_plugins *ps, const char *dir, const char *file, crm_err *err)
{
    crm_bus *b = ps->b;
    loaded l = {0};
    crm_value *config = NULL;
    char *json_path = NULL, *stem = NULL, who[160], errbuf[256];
    crm_plugin_entry_fn entry;
    void *sym;
    const char *guard_prev = NULL;
    int rc;

    if (!(l.path = join(dir, file, "")) || !(stem = strndup(file, strlen(file) - 3)) ||
        !(json_path = join(dir, stem, ".json"))) {
        rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
        goto fail;
    }
    {
        int crashes = 0;
        if (crm_crashguard_quarantined(stem, &crashes)) {
            crm_bus_log(b, CRM_LOG_ERROR, "plugins",
                        "%s: not loaded: quarantined after crashing the server %d times "
                        "(remove its lines from DATA/%s to load it again)",
                        l.path, crashes, CRM_CRASHGUARD_FILE);
            if (ps->nq < CRM_PLUGINS_QUARANTINE_MAX && (ps->quarantined[ps->nq] = strdup(stem)))
                ps->crashes[ps->nq++] = crashes;
            free(l.path);
            free(stem);
            free(json_path);
            return CRM_OK;
        }
    }
    l.stem = stem;
    stem = NULL;
    /* from dlopen (its constructors) to the end of init, a crash is this
     * plugin's (R19) */
    guard_prev = crm_crashguard_enter(l.stem);
    /* RTLD_NOW: a missing symbol fails here.  RTLD_LOCAL: the plugin's
     * symbols stay its own (two plugins may both define `init`). */
    if (!(l.dl = open_private_copy(l.path, l.stem, errbuf, sizeof errbuf))) {
        rc = crm_err_set(err, CRM_BAD_REQUEST, "%s: cannot load: %s", l.path, errbuf);
        goto fail;
    }
    dlerror();
    if (!(sym = dlsym(l.dl, CRM_PLUGIN_ENTRY))) {
        rc = crm_err_set(err, CRM_BAD_REQUEST,
                         "%s: not a crmd plugin (no %s; declare one with CRM_PLUGIN_DECLARE)",
                         l.path, CRM_PLUGIN_ENTRY);
        goto fail;
    }
    /* ISO C has no object-to-function pointer cast; POSIX guarantees the
     * representation is the same (dlsym's rationale). */
    memcpy(&entry, &sym, sizeof entry);
    if (!(l.info = entry())) {
        rc = crm_err_set(err, CRM_BAD_REQUEST, "%s: %s returned NULL", l.path, CRM_PLUGIN_ENTRY);
        goto fail;
    }
    if (l.info->abi != CRM_PLUGIN_ABI) {
        rc = crm_err_set(err, CRM_BAD_REQUEST, "%s: built for plugin ABI %u, this crmd speaks ABI %u",
                         l.path, (unsigned)l.info->abi, (unsigned)CRM_PLUGIN_ABI);
        goto fail;
    }
    if (l.info->api_size > sizeof(crm_api)) {
        rc = crm_err_set(err, CRM_BAD_REQUEST, "%s: needs a crm_api of %u bytes, this crmd has %zu",
                         l.path, (unsigned)l.info->api_size, sizeof(crm_api));
        goto fail;
    }
    /* A table shorter than its own header is no crm_api of any version. */
    if (l.info->api_size < offsetof(crm_api, value_nil)) {
        rc = crm_err_set(err, CRM_BAD_REQUEST, "%s: declares a crm_api of %u bytes, fewer than its header",
                         l.path, (unsigned)l.info->api_size);
        goto fail;
    }
    if (!l.info->init) {
        rc = crm_err_set(err, CRM_BAD_REQUEST, "%s: has no init", l.path);
        goto fail;
    }
    const char *name = l.info->name && *l.info->name ? l.info->name : l.stem;
    for (size_t i = 0; i < ps->n; i++)
        if (strcmp(ps->v[i].name, name) == 0) {
            rc = crm_err_set(err, CRM_BAD_REQUEST, "%s: a plugin named \"%s\" is already loaded (%s)",
                             l.path, name, ps->v[i].path);
            goto fail;
        }
    if (!(l.name = strdup(name))) {
        rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
        goto fail;
    }
    if ((rc = read_config(json_path, &config, err)) != CRM_OK)
        goto fail;
    /* config passes to the owner, also when that fails */
    l.owner = crm_bus_owner_new(b, "plugin", name, config);
    config = NULL;
    if (!l.owner) {
        rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
        goto fail;
    }
    crm_bus_owner_set_host(l.owner, ps);
    crm_bus_owner_set_guard(l.owner, l.stem);

    errbuf[0] = 0;
    rc = l.info->init(l.owner, crm_bus_api(b), errbuf, sizeof errbuf);
    if (rc != CRM_OK) {
        errbuf[sizeof errbuf - 1] = 0; /* a plugin may forget the NUL */
        if (rc < 0 || rc >= CRM_CODE_LAST)
            rc = CRM_INTERNAL;
        const char *refused = crm_bus_owner_errmsg(l.owner);
        if (errbuf[0])
            crm_err_set(err, rc, "%s: init failed: %s", l.path, errbuf);
        else if (refused && *refused) /* most likely why: a registration it made was refused */
            crm_err_set(err, rc, "%s: init failed: %s", l.path, refused);
        else
            crm_err_set(err, rc, "%s: init failed: %s (no message)", l.path, crm_code_name(rc));
        /* removes whatever init registered before it failed; no fini: init
         * did not finish, so there is nothing fini could expect to undo */
        crm_bus_owner_free(l.owner);
        l.owner = NULL;
        goto fail;
    }
    crm_crashguard_leave(guard_prev);
    crm_bus_owner_seal(l.owner);
    ps->v[ps->n++] = l;
    snprintf(who, sizeof who, "plugin %s", name);
    /* init succeeded although a registration was refused: the plugin did
     * not check a return code.  It loads (its init said so), but say it. */
    const char *refused = crm_bus_owner_errmsg(l.owner);
    if (refused && *refused)
        crm_bus_log(b, CRM_LOG_WARN, who, "%s: a registration was refused: %s", l.path, refused);
    crm_bus_log(b, CRM_LOG_INFO, who, "loaded %s: %s %s (plugin ABI %u, crm_api of %u bytes, this crmd has %zu)",
                l.path, name, l.info->version ? l.info->version : "(no version)",
                (unsigned)l.info->abi, (unsigned)l.info->api_size, sizeof(crm_api));
    free(stem);
    free(json_path);
    return CRM_OK;
fail:
    crm_crashguard_leave(guard_prev);
    crm_value_free(config);
    l.info = NULL; /* no fini for a plugin that never loaded */
    unload_one(b, &l);
    free(stem);
    free(json_path);
    return rc;
}

/* ---- the set ---- */

int crm_plugins_load(crm_bus *b, const char *dir, crm_plugins **out, crm_err *err)
{
    crm_plugins *ps = calloc(1, sizeof *ps);
    char **names = NULL;
    size_t n = 0;
    int rc;
    *out = NULL;
    if (!ps)
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    ps->b = b;
    if ((rc = list_dir(dir, &names, &n, err)) != CRM_OK)
        goto done;
    if (n && !(ps->v = calloc(n, sizeof *ps->v))) {
        rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        if ((rc = load_one(ps, dir, names[i], err)) != CRM_OK)
            goto done;
    rc = CRM_OK;
done:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (rc != CRM_OK) {
        crm_plugins_unload(ps);
        return rc;
    }
    *out = ps;
    return CRM_OK;
}

void crm_plugins_unload(crm_plugins *ps)
{
    if (!ps)
        return;
    for (size_t i = ps->n; i-- > 0;)
        unload_one(ps->b, &ps->v[i]);
    for (size_t i = 0; i < ps->nq; i++)
        free(ps->quarantined[i]);
    free(ps->v);
    free(ps);
}

size_t crm_plugins_count(const crm_plugins *ps)
{
    return ps ? ps->n : 0;
}

const char *crm_plugins_quarantined(const crm_plugins *ps, size_t i, int *crashes)
{
    if (!ps || i >= ps->nq)
        return NULL;
    if (crashes)
        *crashes = ps->crashes[i];
    return ps->quarantined[i];
}
