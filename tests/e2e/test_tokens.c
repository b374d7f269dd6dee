/*
 * test_tokens -- token hygiene end to end (reliability plan R18).
 *
 * A real crmd whose log (its stderr, and that of every `crmd token`
 * command) goes to a file.  Tokens for admin and every role of roles.json
 * are made, used (auth, a write, a subscription), one is revoked and tried
 * again, wrong and malformed tokens are tried, and every token is also
 * offered where a server must not take it: the query string of /ws
 * (?token=, ?access_token=, ?auth=), an Authorization: Bearer header, a
 * cookie, and the query string of /healthz and /metrics.  None of those
 * authenticates a connection (every op but auth and ping stays
 * UNAUTHENTICATED).
 *
 * Then the server stops and the log and every file of the data folder are
 * searched for each token's text and for its 43 random characters alone:
 * 0 hits.  Positive controls show the search can find what it looks for:
 * each token's SHA-256 (what the store keeps) is found in the data files,
 * and the log holds the server's last line.
 */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth.h"
#include "codec.h"
#include "testutil.h"
#include "tmpdir.h"
#include "wsclient.h"

#define MAX_TOKENS 16

/* Occurrences of needle (n bytes) in the file at path. */
static int hits_in_file(const char *path, const void *needle, size_t n)
{
    int fd = open(path, O_RDONLY), hits = 0;
    struct stat st;
    uint8_t *buf;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    buf = malloc((size_t)st.st_size + 1);
    assert_non_null(buf);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    for (const uint8_t *p = buf; got >= n && (p = memmem(p, got - (size_t)(p - buf), needle, n)); p++)
        hits++;
    free(buf);
    return hits;
}

/* The same over every file under dir (files counted in *nfiles). */
static int hits_in_dir(const char *dir, const void *needle, size_t n, int *nfiles)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int hits = 0;
    assert_non_null(d);
    while ((e = readdir(d))) {
        char path[4096];
        struct stat st;
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (lstat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode))
            hits += hits_in_dir(path, needle, n, nfiles);
        else if (S_ISREG(st.st_mode)) {
            hits += hits_in_file(path, needle, n);
            if (nfiles)
                (*nfiles)++;
        }
    }
    closedir(d);
    return hits;
}

static const char *code_of(const crm_value *r)
{
    return r ? ws_code(r) : "(no reply)";
}

/* A connection opened with path and extra headers is not authenticated:
 * ping works, get is UNAUTHENTICATED.  Returns 1 when that holds. */
static int not_authenticated(int port, const char *path, const char *headers)
{
    ws_client c;
    crm_value *r;
    int ok;
    if (ws_connect_ex(&c, port, path, "crm.v1.json", NULL, headers, NULL) != 0)
        return 1; /* refused outright: not authenticated either */
    r = ws_request(&c, 5000, NULL, "{\"op\": \"ping\"}");
    ok = r && strcmp(code_of(r), "OK") == 0;
    crm_value_free(r);
    r = ws_request(&c, 5000, NULL, "{\"op\": \"get\", \"collection\": \"companies\", \"id\": \"co_t\"}");
    ok = ok && r && strcmp(code_of(r), "UNAUTHENTICATED") == 0;
    if (!ok)
        fprintf(stderr, "MISMATCH %s %s: get answered %s\n", path, headers ? headers : "", code_of(r));
    crm_value_free(r);
    ws_close(&c);
    return ok;
}

static void token_plaintext_never_stored_logged_or_taken_from_the_url(void **state)
{
    (void)state;
    const char *bin = getenv("CRMD_BIN"), *schemas = getenv("CRM_SCHEMAS");
    char *logdir = crm_tmpdir_make("tokenlog"), logpath[4096], *tok[MAX_TOKENS];
    const char *roles[MAX_TOKENS];
    int ntok = 0, saved_err, logfd, refused = 0, offered = 0, status;
    crmd_proc p;
    crm_err err;
    crm_schema *sch;
    assert_non_null(bin);
    assert_non_null(schemas);
    assert_int_equal(crm_schema_load_dir(schemas, &sch, &err), CRM_OK);

    /* the server's log, and the token commands', go to a file */
    snprintf(logpath, sizeof logpath, "%s/crmd.log", logdir);
    fflush(stderr);
    saved_err = dup(2);
    assert_true((logfd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600)) >= 0);
    dup2(logfd, 2);
    close(logfd);
    int started = crmd_start(&p, bin, schemas, NULL);

    roles[ntok++] = "admin";
    for (size_t i = 0; sch->roles && i < sch->roles->u.map.n && ntok < MAX_TOKENS; i++)
        roles[ntok++] = sch->roles->u.map.kv[i].key;
    for (int i = 0; started == 0 && i < ntok; i++)
        tok[i] = crmd_token(&p, roles[i]);

    /* use each: auth, a write for admin, a subscription where granted */
    int used = 0;
    for (int i = 0; started == 0 && i < ntok; i++) {
        ws_client c;
        if (!tok[i] || ws_connect(&c, p.port, i & 1 ? "crm.v1.msgpack" : "crm.v1.json", NULL, NULL) != 0)
            continue;
        if (ws_auth(&c, tok[i], 5000) == 0) {
            used++;
            crm_value *r = i == 0 ? ws_request(&c, 5000, NULL,
                                               "{\"op\": \"create\", \"collection\": \"companies\", "
                                               "\"id\": \"co_t\", \"record\": {\"name\": \"Token Test\"}}")
                                  : ws_request(&c, 5000, NULL,
                                               "{\"op\": \"subscribe\", \"collection\": \"contacts\"}");
            crm_value_free(r);
        }
        ws_close(&c);
    }
    /* one revoked, then tried again; wrong and malformed ones */
    if (started == 0 && ntok > 1 && tok[1]) {
        char cmd[8192];
        ws_client c;
        snprintf(cmd, sizeof cmd, "'%s' token revoke --data '%s' --schemas '%s' '%s' >/dev/null", bin, p.data,
                 schemas, tok[1]);
        assert_int_equal(system(cmd), 0);
        assert_int_equal(ws_connect(&c, p.port, "crm.v1.json", NULL, NULL), 0);
        assert_int_equal(ws_auth(&c, tok[1], 5000), -1);
        assert_int_equal(ws_auth(&c, "crm_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 5000), -1);
        char wrong[64];
        snprintf(wrong, sizeof wrong, "%.40sXYZ", tok[0]); /* a near miss of a good one */
        assert_int_equal(ws_auth(&c, wrong, 5000), -1);
        ws_close(&c);
    }
    /* where a token must never be taken from */
    for (int i = 0; started == 0 && i < ntok; i++) {
        char q[256], h[256];
        static const char *const params[] = {"token", "access_token", "auth"};
        if (!tok[i])
            continue;
        for (size_t k = 0; k < 3; k++) {
            snprintf(q, sizeof q, "/ws?%s=%s", params[k], tok[i]);
            refused += not_authenticated(p.port, q, NULL);
            offered++;
        }
        snprintf(h, sizeof h, "Authorization: Bearer %s\r\n", tok[i]);
        refused += not_authenticated(p.port, "/ws", h);
        offered++;
        snprintf(h, sizeof h, "Cookie: token=%s\r\n", tok[i]);
        refused += not_authenticated(p.port, "/ws", h);
        offered++;
        char *body = NULL;
        snprintf(q, sizeof q, "/healthz?token=%s", tok[i]);
        if (http_get(p.port, q, &status, &body) == 0)
            free(body);
        snprintf(q, sizeof q, "/metrics?access_token=%s", tok[i]);
        if (http_get(p.port, q, &status, &body) == 0)
            free(body);
        snprintf(q, sizeof q, "/index.html?token=%s", tok[i]);
        if (http_get(p.port, q, &status, &body) == 0)
            free(body);
    }
    char *data = started == 0 ? strdup(p.data) : NULL;
    int stopped = started == 0 ? crmd_stop_keep(&p) : -1;
    /* the forwarder of the server's log ends when the server does */
    usleep(200000);
    fflush(stderr);
    dup2(saved_err, 2);
    close(saved_err);
    assert_int_equal(started, 0);
    assert_int_equal(stopped, 0);

    /* search */
    int log_hits = 0, data_hits = 0, hash_found = 0, nfiles = 0, id_in_log = 0;
    char *log = crm_test_read_file(logpath);
    assert_non_null(log);
    /* the log is the server's (its ready line is read by crmd_start) */
    assert_non_null(strstr(log, "\"stopped\""));
    for (int i = 0; i < ntok; i++) {
        uint8_t hash[CRM_TOKEN_HASH_LEN];
        char id[13];
        assert_non_null(tok[i]);
        assert_int_equal(strlen(tok[i]), 47);
        crm_token_hash(tok[i], strlen(tok[i]), hash);
        crm_token_id(hash, id);
        id_in_log += strstr(log, id) != NULL;
        /* the whole token and its random part alone */
        log_hits += hits_in_file(logpath, tok[i], strlen(tok[i])) + hits_in_file(logpath, tok[i] + 4, 43);
        int nf = 0;
        data_hits += hits_in_dir(data, tok[i], strlen(tok[i]), &nf) + hits_in_dir(data, tok[i] + 4, 43, NULL);
        nfiles = nf;
        /* positive control: the stored hash (the revoked one's is deleted) */
        hash_found += hits_in_dir(data, hash, sizeof hash, NULL) > 0;
    }
    fprintf(stderr, "# R18: %d tokens (%d roles) used; offered %d times in a URL, header or cookie: %d "
                    "refused; log %zu bytes, %d data files searched: %d + %d hits of token text; %d of %d "
                    "stored hashes found (control), %d token ids in the log\n",
            ntok, ntok, offered, refused, strlen(log), nfiles, log_hits, data_hits, hash_found, ntok,
            id_in_log);
    assert_int_equal(used, ntok);
    assert_int_equal(refused, offered);
    assert_int_equal(log_hits, 0);
    assert_int_equal(data_hits, 0);
    assert_true(nfiles >= 1);
    assert_true(hash_found >= ntok - 1); /* all but the revoked one */
    free(log);
    for (int i = 0; i < ntok; i++)
        free(tok[i]);
    crm_tmpdir_remove(data);
    crm_tmpdir_remove(logdir);
    crm_schema_free(sch);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(token_plaintext_never_stored_logged_or_taken_from_the_url),
    };
    return cmocka_run_group_tests_name("tokens", tests, NULL, NULL);
}
