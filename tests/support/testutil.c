/* testutil -- small helpers shared by the tests. */
#include "testutil.h"

#include <dirent.h>
#include <stdint.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "tmpdir.h"

crm_value *crm_test_json(const char *json)
{
    crm_err err;
    crm_value *v = crm_json_decode(json, strlen(json), NULL, &err);
    if (!v) {
        fprintf(stderr, "bad test JSON %s: %s\n", json, err.msg);
        abort();
    }
    return v;
}

int crm_test_write(crm_store *s, crm_op op, const char *coll, const char *id, const char *json,
                   crm_value **result, crm_err *err_out)
{
    crm_write w;
    crm_value *v = json ? crm_test_json(json) : NULL;
    int rc;
    memset(&w, 0, sizeof w);
    w.op = op;
    w.coll = coll;
    w.id = id;
    w.data = v;
    rc = crm_store_write1(s, &w);
    if (err_out)
        *err_out = w.err;
    if (result) {
        *result = w.result;
        w.result = NULL;
    }
    crm_write_clear(&w);
    crm_value_free(v);
    return rc;
}

int crm_test_pump(crm_store *s, crm_bus *b)
{
    crm_err e;
    (void)s;
    return crm_bus_drain(b, 500, &e) == CRM_OK ? 0 : -1;
}

uint64_t crm_test_count(crm_store *s, const char *coll)
{
    crm_txn *t;
    crm_err e;
    uint64_t n = 0;
    if (crm_store_begin_read(s, &t, &e) != CRM_OK)
        return UINT64_MAX;
    if (crm_txn_count(t, coll, &n, &e) != CRM_OK)
        n = UINT64_MAX;
    crm_txn_end(t);
    return n;
}

double crm_test_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

char *crm_test_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)n + 1)) != NULL) {
        if (fread(buf, 1, (size_t)n, f) == (size_t)n) {
            buf[n] = '\0';
        } else {
            free(buf);
            buf = NULL;
        }
    }
    fclose(f);
    return buf;
}

char *crm_test_schemas_with_roles(const char *src, const char *extra_roles)
{
    char *dir = crm_tmpdir_make("schemas"), path[4096];
    DIR *d = opendir(src);
    struct dirent *e;
    if (!d) {
        fprintf(stderr, "schemas folder %s cannot be read\n", src);
        abort();
    }
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        char *text;
        if (n < 6 || strcmp(e->d_name + n - 5, ".json") != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", src, e->d_name);
        if (!(text = crm_test_read_file(path))) {
            fprintf(stderr, "%s cannot be read\n", path);
            abort();
        }
        if (strcmp(e->d_name, "roles.json") == 0) {
            crm_value *doc = crm_test_json(text), *more = crm_test_json(extra_roles);
            crm_value *roles = crm_map_get(doc, "roles");
            if (!roles || roles->type != CRM_T_MAP || more->type != CRM_T_MAP) {
                fprintf(stderr, "%s or the extra roles are not maps of roles\n", path);
                abort();
            }
            for (size_t i = 0; i < more->u.map.n; i++)
                crm_map_set(roles, more->u.map.kv[i].key, crm_value_dup(more->u.map.kv[i].val));
            free(text);
            text = crm_json_encode(doc, NULL);
            crm_value_free(doc);
            crm_value_free(more);
        }
        crm_tmpdir_write(dir, e->d_name, text);
        free(text);
    }
    closedir(d);
    return dir;
}

int crm_test_run(const char *cmd, char **out)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    FILE *f;
    int st;
    if (!buf || !(f = popen(cmd, "r"))) {
        fprintf(stderr, "cannot run %s\n", cmd);
        abort();
    }
    for (;;) {
        size_t k;
        if (n + 1 == cap) {
            char *b = realloc(buf, cap *= 2);
            if (!b)
                abort();
            buf = b;
        }
        if (!(k = fread(buf + n, 1, cap - 1 - n, f)))
            break;
        n += k;
    }
    buf[n] = '\0';
    st = pclose(f);
    if (out)
        *out = buf;
    else
        free(buf);
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

char *crm_test_last_line(const char *cmd)
{
    char *out, *start, *last = NULL;
    size_t n;
    if (crm_test_run(cmd, &out) == 0 && (n = strlen(out)) > 0) {
        if (out[n - 1] == '\n')
            out[--n] = '\0';
        start = strrchr(out, '\n');
        last = strdup(start ? start + 1 : out);
    }
    free(out);
    return last;
}

char *crm_test_plugin_dir(const char *tag, const char *name, const char *config_json)
{
    const char *from = getenv("CRM_PLUGINS");
    char so[4096], link[4096], json[512], *dir;
    if (!from) {
        fprintf(stderr, "CRM_PLUGINS is not set\n");
        abort();
    }
    snprintf(so, sizeof so, "%s/%s.so", from, name);
    if (access(so, R_OK) != 0) {
        fprintf(stderr, "%s cannot be read\n", so);
        abort();
    }
    dir = crm_tmpdir_make(tag);
    snprintf(link, sizeof link, "%s/%s.so", dir, name);
    if (symlink(so, link) != 0) {
        fprintf(stderr, "cannot link %s to %s\n", link, so);
        abort();
    }
    if (config_json) {
        snprintf(json, sizeof json, "%s.json", name);
        crm_tmpdir_write(dir, json, config_json);
    }
    return dir;
}

char *crm_test_script_text(const char *name)
{
    const char *dir = getenv("CRM_SCRIPTS");
    char path[4096], *text;
    if (!dir) {
        fprintf(stderr, "CRM_SCRIPTS is not set\n");
        abort();
    }
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (!(text = crm_test_read_file(path))) {
        fprintf(stderr, "%s cannot be read\n", path);
        abort();
    }
    return text;
}

void crm_test_replace_once(char **text, const char *from, const char *to)
{
    char *at = strstr(*text, from), *out;
    size_t pre, fl = strlen(from), tl = strlen(to), n = strlen(*text);
    if (!at) {
        fprintf(stderr, "\"%s\" is not in the text\n", from);
        abort();
    }
    pre = (size_t)(at - *text);
    if (!(out = malloc(n - fl + tl + 1)))
        abort();
    memcpy(out, *text, pre);
    memcpy(out + pre, to, tl);
    memcpy(out + pre + tl, at + fl, n - pre - fl + 1);
    free(*text);
    *text = out;
}

long crm_test_proc_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    size_t n = strlen(field);
    long kb = -1;
    FILE *f;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    if (!(f = fopen(path, "r")))
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            kb = strtol(line + n + 1, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

int crm_test_proc_fds(pid_t pid)
{
    char path[64];
    int n = 0;
    DIR *d;
    struct dirent *e;
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    if (!(d = opendir(path)))
        return -1;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

void crm_test_buf_add(crm_test_buf *b, const char *fmt, ...)
{
    va_list ap;
    int need;
    va_start(ap, fmt);
    need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (need < 0)
        abort();
    if (b->n + (size_t)need + 1 > b->cap) {
        char *g;
        b->cap = (b->n + (size_t)need + 1) * 2;
        if (!(g = realloc(b->s, b->cap)))
            abort();
        b->s = g;
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    b->n += (size_t)need;
}

size_t crm_test_file_hits(const char *path, const char *needle)
{
    FILE *f = fopen(path, "rb");
    size_t n = 0, len = strlen(needle), cap = 1 << 20, have = 0;
    char *buf = malloc(cap + len);
    if (!f || !buf || !len) {
        if (f)
            fclose(f);
        free(buf);
        return 0;
    }
    for (;;) {
        size_t r = fread(buf + have, 1, cap, f), total = have + r;
        for (char *p = buf; (p = memmem(p, total - (size_t)(p - buf), needle, len)); p++)
            n++;
        if (r == 0)
            break;
        /* keep a tail so a needle across two reads is found once */
        have = total < len - 1 ? total : len - 1;
        memmove(buf, buf + total - have, have);
    }
    fclose(f);
    free(buf);
    return n;
}

void crm_test_die_with_parent(pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) /* died before the prctl */
        _exit(127);
}
