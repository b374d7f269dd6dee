/* testutil -- small helpers shared by the tests. */
#include "testutil.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
