/*
 * test_plugins -- C plugins end to end (issue 5): real crmd processes
 * started with --plugins on folders this test assembles from the bundled
 * example plugin (build/plugins) and the test plugins (tests/plugins/),
 * driven over WebSocket.
 *
 *  - example: its methods answer `call` with the caller's role (admin, a
 *    role granted "example.*", and a role that is not: FORBIDDEN); its
 *    before-hook refuses a write (REJECTED, the plugin's message, no trace
 *    left) and changes the records it lets through; its after-hook writes
 *    the confirmation and the contact's figures once; its timer fires, and
 *    is cancelled with the order; a delete removes what it wrote; its
 *    configuration is the one beside it.  A second plugin's before-hook
 *    (reject.so) refuses a write too.
 *  - start-up refusals, each with crmd exiting non-zero and its message on
 *    stderr: a wrong ABI, a table too short for the plugin, a failing init,
 *    a configuration that is not JSON, a .so that is no plugin, and the
 *    first refusal in file-name order wins.
 *  - load order: copies of one plugin under names whose byte order differs
 *    from any locale's load in byte order, each with its own configuration;
 *    fini runs in reverse at SIGTERM; a plugin built against an older,
 *    shorter table loads; a missing folder means no plugins.
 *  - a loaded plugin's file overwritten in place (cp over it) while the
 *    server runs: the plugin keeps working from its private copy.
 *
 * The after-hook's exactly-once across SIGKILL is tests/crash's.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "codec.h"
#include "testutil.h"
#include "tmpdir.h"
#include "wsclient.h"

#ifndef CRM_TEST_PLUGIN_DIR
#error "tests/plugins/CMakeLists.txt defines CRM_TEST_PLUGIN_DIR"
#endif
#ifndef CRM_BUNDLED_PLUGIN_DIR
#error "tests/plugins/CMakeLists.txt defines CRM_BUNDLED_PLUGIN_DIR"
#endif

/* ---- files ---- */

/* A missing file (a log not written yet) reads as "". */
static char *read_text(const char *path)
{
    char *text = crm_test_read_file(path);
    return text ? text : strdup("");
}

/* Copies a built plugin into dir under the name as (a copy, not a link:
 * each name is its own inode, so dlopen gives each its own instance). */
static void add_plugin(const char *dir, const char *from_dir, const char *name, const char *as)
{
    char src[4096], dst[4096], buf[65536];
    size_t n;
    snprintf(src, sizeof src, "%s/%s.so", from_dir, name);
    snprintf(dst, sizeof dst, "%s/%s.so", dir, as ? as : name);
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    if (!in)
        fail_msg("%s: %s (build the plugins first)", src, strerror(errno));
    assert_non_null(out);
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
    chmod(dst, 0755);
}

static void add_test_plugin(const char *dir, const char *name, const char *as)
{
    add_plugin(dir, CRM_TEST_PLUGIN_DIR, name, as);
}

/* ---- a crmd of our own: stderr kept in a file to read afterwards ---- */

typedef struct srv {
    crmd_proc p;  /* pid, port, data, bin, schemas: for crmd_token */
    char *logdir; /* holds crmd.log */
    char log[4096];
    int status;   /* exit status once it has exited, else -1 */
} srv;

static void msleep(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Starts crmd serve with --plugins plugins.  0 once it listens (s->p.port);
 * -1 when it exited first (s->status) or never got ready. */
static int srv_start(srv *s, const char *schemas, const char *plugins)
{
    const char *bin = getenv("CRMD_BIN"), *web = getenv("CRM_WEB");
    assert_non_null(bin);
    memset(s, 0, sizeof *s);
    s->status = -1;
    s->p.bin = strdup(bin);
    s->p.schemas = strdup(schemas);
    s->p.data = crm_tmpdir_make("plugins-data");
    s->logdir = crm_tmpdir_make("plugins-log");
    snprintf(s->log, sizeof s->log, "%s/crmd.log", s->logdir);
    pid_t parent = getpid();
    s->p.pid = fork();
    assert_true(s->p.pid >= 0);
    if (s->p.pid == 0) {
        crm_test_die_with_parent(parent); /* no crmd outlives a killed test */
        int fd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0)
            _exit(126);
        dup2(fd, 2);
        dup2(fd, 1);
        execl(bin, bin, "serve", "--data", s->p.data, "--schemas", schemas, "--listen",
              "127.0.0.1:0", "--web", web ? web : "./web", "--plugins", plugins, (char *)NULL);
        _exit(127);
    }
    for (int waited = 0; waited < 20000; waited += 20) {
        int st;
        char *text = read_text(s->log), *at = strstr(text, "listening on 127.0.0.1:");
        if (at) {
            s->p.port = atoi(at + strlen("listening on 127.0.0.1:"));
            free(text);
            return 0;
        }
        free(text);
        if (waitpid(s->p.pid, &st, WNOHANG) == s->p.pid) {
            s->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            s->p.pid = 0;
            return -1;
        }
        msleep(20);
    }
    return -1;
}

/* SIGTERM and wait: the exit status. */
static int srv_stop(srv *s)
{
    int st;
    if (s->p.pid > 0) {
        kill(s->p.pid, SIGTERM);
        if (waitpid(s->p.pid, &st, 0) == s->p.pid)
            s->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        s->p.pid = 0;
    }
    return s->status;
}

static void srv_free(srv *s)
{
    if (s->p.pid > 0) {
        kill(s->p.pid, SIGKILL);
        waitpid(s->p.pid, NULL, 0);
        s->p.pid = 0;
    }
    crm_tmpdir_remove(s->p.data);
    crm_tmpdir_remove(s->logdir);
    free(s->p.bin);
    free(s->p.schemas);
    memset(s, 0, sizeof *s);
}

/* True when one line of the log says needle: as it is written, or once a
 * JSON log line is decoded (its strings unescaped). */
static int line_has(const char *line, size_t len, const char *needle)
{
    crm_err err;
    crm_value *v = NULL;
    int found = 0;
    char *copy = strndup(line, len);
    assert_non_null(copy);
    if (strstr(copy, needle))
        found = 1;
    else if ((v = crm_json_decode(line, len, NULL, &err)) && v->type == CRM_T_MAP) {
        for (size_t i = 0; !found && i < v->u.map.n; i++) {
            const crm_value *x = v->u.map.kv[i].val;
            found = x->type == CRM_T_STR && strstr(x->u.str.s, needle);
        }
    }
    if (v)
        crm_value_free(v);
    free(copy);
    return found;
}

/* The line number (from 1) of the first line at or after line `from` that
 * says needle, or 0. */
static int log_find(const char *log, const char *needle, int from)
{
    int no = 1;
    for (const char *p = log; *p; no++) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (no >= from && line_has(p, len, needle))
            return no;
        p += len + (nl ? 1 : 0);
    }
    return 0;
}

static void expect_log(const char *logpath, const char *needle)
{
    char *log = read_text(logpath);
    if (!log_find(log, needle, 1))
        fail_msg("crmd's log lacks \"%s\"; it has:\n%s", needle, log);
    free(log);
}

/* crmd on this plugins folder must refuse to start, saying message. */
static void expect_refused(const char *plugins, const char *message)
{
    srv s;
    if (srv_start(&s, getenv("CRM_SCHEMAS"), plugins) == 0) {
        char *log = read_text(s.log);
        srv_stop(&s);
        fail_msg("crmd started with %s; log:\n%s", plugins, log);
    }
    assert_int_not_equal(s.status, 0);
    assert_int_not_equal(s.status, -1);
    expect_log(s.log, message);
    srv_free(&s);
}

/* ---- WebSocket helpers ---- */

static long long next_ref;

/* Sends a request (JSON text after the ref) and returns its reply. */
static crm_value *req(ws_client *c, const char *fmt, ...)
{
    char buf[8192];
    va_list ap;
    long long ref = ++next_ref;
    int n = snprintf(buf, sizeof buf, "{\"ref\": %lld, ", ref);
    va_start(ap, fmt);
    vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    va_end(ap);
    assert_int_equal(ws_send_json(c, buf), 0);
    crm_value *r = ws_reply(c, ref, 10000, NULL);
    if (!r)
        fail_msg("no reply to %s", buf);
    return r;
}

static const crm_value *ok_result(const crm_value *r)
{
    const crm_value *ok = crm_map_get(r, "ok");
    if (!ok || ok->type != CRM_T_BOOL || !ok->u.b) {
        char *j = crm_json_encode(r, NULL);
        fail_msg("expected ok, got %s", j);
    }
    return crm_map_get(r, "result");
}

static void expect_error(const crm_value *r, const char *code, const char *message)
{
    const crm_value *e = crm_map_get(r, "error");
    if (!e || strcmp(crm_map_str(e, "code", ""), code) != 0 ||
        (message && strcmp(crm_map_str(e, "message", ""), message) != 0)) {
        char *j = crm_json_encode(r, NULL);
        fail_msg("expected %s \"%s\", got %s", code, message ? message : "...", j);
    }
}

static void connect_as(ws_client *c, int port, const char *token)
{
    assert_int_equal(ws_connect(c, port, "crm.v1.json", NULL, NULL), 0);
    crm_value *r = req(c, "\"op\": \"auth\", \"token\": \"%s\"}", token);
    ok_result(r);
    crm_value_free(r);
}

/* A string field of the reply's result (copied), e.g. the new id. */
static char *result_str(crm_value *r, const char *key)
{
    char *s = strdup(crm_map_str(ok_result(r), key, ""));
    crm_value_free(r);
    return s;
}

/* Queries until exactly want records match (after-hooks and timers run
 * after the write's ack); returns the last reply's records, caller frees. */
static crm_value *query_until(ws_client *c, const char *coll, const char *where, size_t want,
                              int timeout_ms)
{
    for (int waited = 0;; waited += 50) {
        crm_value *r = req(c, "\"op\": \"query\", \"collection\": \"%s\", \"where\": %s}",
                           coll, where);
        const crm_value *recs = crm_map_get(ok_result(r), "records");
        if (recs->u.arr.n == want || waited >= timeout_ms) {
            crm_value *out = crm_value_dup(recs);
            if (recs->u.arr.n != want) {
                char *j = crm_json_encode(recs, NULL);
                fail_msg("%s where %s: %zu records after %d ms, want %zu: %s", coll, where,
                         recs->u.arr.n, waited, want, j);
            }
            crm_value_free(r);
            return out;
        }
        crm_value_free(r);
        msleep(50);
    }
}

/* ---- the example plugin, with reject.so beside it ---- */

typedef struct world {
    srv s;
    char *plugins, *schemas;
    char *admin, *user, *sales; /* tokens */
    ws_client c;                /* authenticated as admin */
} world;

static int example_up(void **state)
{
    world *w = calloc(1, sizeof *w);
    w->schemas = crm_test_schemas_with_roles(getenv("CRM_SCHEMAS"),
                                    "{\"plugin_user\": {\"contacts\": [\"read\"], "
                                    "\"methods\": [\"example.*\"]}}");
    w->plugins = crm_tmpdir_make("plugins-example");
    add_plugin(w->plugins, CRM_BUNDLED_PLUGIN_DIR, "example", NULL);
    crm_tmpdir_write(w->plugins, "example.json",
                     "{\"forbidden_words\": [\"lottery\", \"Crypto Giveaway\"],"
                     " \"followup_seconds\": 1, \"subject_prefix\": \"Order\","
                     " \"big_order_where\": {\"amount\": {\"gte\": 1000}}}");
    add_test_plugin(w->plugins, "reject", NULL);
    crm_tmpdir_write(w->plugins, "reject.json", "{\"word\": \"Mallory\"}");
    if (srv_start(&w->s, w->schemas, w->plugins) != 0) {
        char *log = read_text(w->s.log);
        fail_msg("crmd did not start (status %d):\n%s", w->s.status, log);
    }
    w->admin = crmd_token(&w->s.p, "admin");
    w->user = crmd_token(&w->s.p, "plugin_user");
    w->sales = crmd_token(&w->s.p, "sales");
    assert_non_null(w->admin);
    assert_non_null(w->user);
    assert_non_null(w->sales);
    connect_as(&w->c, w->s.p.port, w->admin);
    expect_log(w->s.log, "loaded");
    *state = w;
    return 0;
}

static int example_down(void **state)
{
    world *w = *state;
    ws_close(&w->c);
    assert_int_equal(srv_stop(&w->s), 0);
    srv_free(&w->s);
    crm_tmpdir_remove(w->plugins);
    crm_tmpdir_remove(w->schemas);
    free(w->admin);
    free(w->user);
    free(w->sales);
    free(w);
    return 0;
}

static char *new_contact(ws_client *c, const char *name)
{
    return result_str(req(c, "\"op\": \"create\", \"collection\": \"contacts\", \"record\": "
                             "{\"name\": \"%s\"}}", name),
                      "id");
}

static void echo_answers_with_the_callers_role(void **state)
{
    world *w = *state;
    ws_client c;
    crm_value *r = req(&w->c, "\"op\": \"call\", \"method\": \"example.echo\", \"params\": "
                              "{\"n\": 1, \"s\": \"h\\u00e9\", \"list\": [true, null, 2.5]}}");
    const crm_value *res = ok_result(r);
    crm_value *want = crm_test_json("{\"n\": 1, \"s\": \"h\\u00e9\", \"list\": [true, null, 2.5]}");
    assert_true(crm_value_equal(crm_map_get(res, "params"), want));
    crm_value_free(want);
    assert_string_equal(crm_map_str(res, "json", ""), "{\"n\":1,\"s\":\"h\xc3\xa9\",\"list\":[true,null,2.5]}");
    assert_string_equal(crm_map_str(res, "role", ""), "admin");
    assert_true(crm_map_get(res, "admin")->u.b);
    assert_string_equal(crm_map_str(res, "plugin", ""), "example");
    assert_true(strlen(crm_map_str(res, "user", "")) > 0);
    int64_t now = crm_map_int(res, "now", 0), wall = (int64_t)time(NULL) * 1000;
    assert_true(now > wall - 60000 && now < wall + 60000);
    crm_value_free(r);

    /* a role granted example.* gets its own name back */
    connect_as(&c, w->s.p.port, w->user);
    r = req(&c, "\"op\": \"call\", \"method\": \"example.stats\", \"params\": {}}");
    assert_string_equal(crm_map_str(ok_result(r), "role", ""), "plugin_user");
    crm_value_free(r);
    r = req(&c, "\"op\": \"call\", \"method\": \"example.echo\"}");
    res = ok_result(r);
    assert_string_equal(crm_map_str(res, "role", ""), "plugin_user");
    assert_false(crm_map_get(res, "admin")->u.b);
    crm_value_free(r);
    ws_close(&c);

    /* a role without it may not call; nobody may call what is not there */
    connect_as(&c, w->s.p.port, w->sales);
    r = req(&c, "\"op\": \"call\", \"method\": \"example.echo\", \"params\": {}}");
    expect_error(r, "FORBIDDEN", NULL);
    crm_value_free(r);
    ws_close(&c);
    r = req(&w->c, "\"op\": \"call\", \"method\": \"example.nothing\", \"params\": {}}");
    expect_error(r, "NOT_FOUND", NULL);
    crm_value_free(r);
}

static void before_hook_rejects_a_write(void **state)
{
    world *w = *state;
    char *cid = new_contact(&w->c, "Rita Reject"), where[256];
    crm_value *r, *recs;
    snprintf(where, sizeof where, "{\"contact\": \"%s\"}", cid);

    r = req(&w->c, "\"op\": \"create\", \"collection\": \"interactions\", \"record\": {\"contact\": "
                   "\"%s\", \"kind\": \"call\", \"at\": 1700000000000, \"subject\": \"You won the LOTTERY\"}}",
            cid);
    expect_error(r, "REJECTED", "interactions may not mention \"lottery\" (in subject)");
    crm_value_free(r);
    r = req(&w->c, "\"op\": \"create\", \"collection\": \"interactions\", \"record\": {\"contact\": "
                   "\"%s\", \"kind\": \"chat\", \"at\": 1700000000001, \"notes\": \"a crypto giveaway!\"}}",
            cid);
    expect_error(r, "REJECTED", "interactions may not mention \"Crypto Giveaway\" (in notes)");
    crm_value_free(r);
    /* refused writes leave nothing behind */
    recs = query_until(&w->c, "interactions", where, 0, 0);
    crm_value_free(recs);

    /* an accepted one carries the hook's change, in the reply and stored */
    r = req(&w->c, "\"op\": \"create\", \"collection\": \"interactions\", \"record\": {\"contact\": "
                   "\"%s\", \"kind\": \"call\", \"at\": 1700000000002, \"subject\": \"Quarterly review\"}}",
            cid);
    assert_string_equal(crm_map_str(crm_map_get(ok_result(r), "extra"), "screened_by", ""), "example");
    crm_value_free(r);
    recs = query_until(&w->c, "interactions", where, 1, 0);
    assert_string_equal(crm_map_str(crm_map_get(recs->u.arr.items[0], "extra"), "screened_by", ""),
                        "example");
    crm_value_free(recs);
    free(cid);
}

static void second_plugins_before_hook_rejects(void **state)
{
    world *w = *state;
    crm_value *r = req(&w->c, "\"op\": \"create\", \"collection\": \"contacts\", \"record\": "
                              "{\"name\": \"Mallory Meyer\"}}");
    expect_error(r, "REJECTED", "reject plugin: no contacts named Mallory");
    crm_value_free(r);
    crm_value *recs = query_until(&w->c, "contacts", "{\"name\": \"Mallory Meyer\"}", 0, 0);
    crm_value_free(recs);
    free(new_contact(&w->c, "Mal Lory")); /* others pass */
}

/* `cp other.so plugins/reject.so` while the server runs: the file is
 * truncated and rewritten in place (the same inode).  The running plugin
 * is a private copy, so its hook still refuses Mallory and the server
 * lives (it crashed: the rewrite replaced the code it had mapped). */
static void overwritten_in_place_keeps_running(void **state)
{
    world *w = *state;
    char src[4096], dst[4096], buf[65536];
    crm_value *r;
    size_t n;
    FILE *in, *out;
    snprintf(src, sizeof src, "%s/example.so", CRM_BUNDLED_PLUGIN_DIR);
    snprintf(dst, sizeof dst, "%s/reject.so", w->plugins);
    assert_non_null(in = fopen(src, "rb"));
    assert_non_null(out = fopen(dst, "r+b")); /* no new inode: what cp does */
    assert_int_equal(ftruncate(fileno(out), 0), 0);
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
    for (int i = 0; i < 3; i++) {
        r = req(&w->c, "\"op\": \"create\", \"collection\": \"contacts\", \"record\": "
                       "{\"name\": \"Mallory Overwrite %d\"}}", i);
        expect_error(r, "REJECTED", "reject plugin: no contacts named Mallory");
        crm_value_free(r);
    }
    free(new_contact(&w->c, "After Overwrite"));
}

static char *new_order(ws_client *c, const char *contact, const char *number, int amount)
{
    return result_str(req(c, "\"op\": \"create\", \"collection\": \"orders\", \"record\": "
                             "{\"contact\": \"%s\", \"number\": \"%s\", \"amount\": %d, "
                             "\"currency\": \"EUR\", \"ordered_at\": 1700000000000}}",
                          contact, number, amount),
                      "id");
}

static void after_hook_writes_the_confirmation_once(void **state)
{
    world *w = *state;
    char *cid = new_contact(&w->c, "Ann Lee"), where[256];
    char *o1 = new_order(&w->c, cid, "N-1", 1500);
    crm_value *recs, *r;
    snprintf(where, sizeof where, "{\"contact\": \"%s\", \"kind\": \"email\"}", cid);

    recs = query_until(&w->c, "interactions", where, 1, 10000);
    const crm_value *it = recs->u.arr.items[0], *extra = crm_map_get(it, "extra");
    assert_string_equal(crm_map_str(it, "subject", ""), "Order N-1 confirmed for Ann Lee");
    assert_string_equal(crm_map_str(it, "direction", ""), "outbound");
    assert_string_equal(crm_map_str(extra, "order", ""), o1);
    assert_int_equal(crm_map_int(crm_map_get(extra, "order_summary"), "amount", 0), 1500);
    assert_null(crm_map_get(crm_map_get(extra, "order_summary"), "items"));
    /* the plugin's own write went through the before-hook too */
    assert_string_equal(crm_map_str(extra, "screened_by", ""), "example");
    crm_value_free(recs);

    r = req(&w->c, "\"op\": \"get\", \"collection\": \"contacts\", \"id\": \"%s\"}", cid);
    assert_int_equal(crm_map_int(ok_result(r), "order_count", 0), 1);
    assert_int_equal(crm_map_int(ok_result(r), "total_spent", 0), 1500);
    assert_int_equal(crm_map_int(ok_result(r), "last_order_at", 0), 1700000000000LL);
    crm_value_free(r);

    /* a second order adds up; the first confirmation is not written again */
    char *o2 = new_order(&w->c, cid, "N-2", 500);
    recs = query_until(&w->c, "interactions", where, 2, 10000);
    crm_value_free(recs);
    for (int waited = 0;; waited += 50) {
        r = req(&w->c, "\"op\": \"get\", \"collection\": \"contacts\", \"id\": \"%s\"}", cid);
        if (crm_map_int(ok_result(r), "order_count", 0) == 2 || waited > 10000)
            break;
        crm_value_free(r);
        msleep(50);
    }
    assert_int_equal(crm_map_int(ok_result(r), "order_count", 0), 2);
    assert_int_equal(crm_map_int(ok_result(r), "total_spent", 0), 2000);
    crm_value_free(r);
    msleep(500);
    recs = query_until(&w->c, "interactions", where, 2, 0);
    crm_value_free(recs);
    free(o2);
    free(o1);
    free(cid);
}

static void timer_follows_up_unless_cancelled(void **state)
{
    world *w = *state;
    char *cid = new_contact(&w->c, "Bo Berg"), where[256], cwhere[256];
    char *keep = new_order(&w->c, cid, "F-1", 100);
    char *drop = new_order(&w->c, cid, "F-2", 200);
    crm_value *r, *recs;
    snprintf(where, sizeof where, "{\"contact\": \"%s\", \"kind\": \"call\"}", cid);
    snprintf(cwhere, sizeof cwhere, "{\"contact\": \"%s\", \"kind\": \"email\"}", cid);
    /* both confirmations written means both follow-ups are scheduled */
    recs = query_until(&w->c, "interactions", cwhere, 2, 10000);
    crm_value_free(recs);
    r = req(&w->c, "\"op\": \"update\", \"collection\": \"orders\", \"id\": \"%s\", \"patch\": "
                   "{\"status\": \"cancelled\"}}", drop);
    ok_result(r);
    crm_value_free(r);

    /* followup_seconds is 1 in the test's example.json */
    recs = query_until(&w->c, "interactions", where, 1, 15000);
    const crm_value *it = recs->u.arr.items[0];
    assert_string_equal(crm_map_str(it, "outcome", ""), "follow_up");
    assert_string_equal(crm_map_str(it, "subject", ""), "Follow-up call on order F-1");
    assert_string_equal(crm_map_str(crm_map_get(it, "extra"), "order", ""), keep);
    crm_value_free(recs);
    msleep(1500); /* the cancelled one would have fired by now */
    recs = query_until(&w->c, "interactions", where, 1, 0);
    crm_value_free(recs);
    free(keep);
    free(drop);
    free(cid);
}

static void delete_removes_what_the_hook_wrote(void **state)
{
    world *w = *state;
    char *cid = new_contact(&w->c, "Cy Cole"), where[256];
    char *o1 = new_order(&w->c, cid, "D-1", 100);
    char *o2 = new_order(&w->c, cid, "D-2", 100);
    crm_value *r, *recs;
    snprintf(where, sizeof where, "{\"contact\": \"%s\", \"kind\": \"email\"}", cid);
    recs = query_until(&w->c, "interactions", where, 2, 10000);
    crm_value_free(recs);
    r = req(&w->c, "\"op\": \"delete\", \"collection\": \"orders\", \"id\": \"%s\"}", o1);
    ok_result(r);
    crm_value_free(r);
    recs = query_until(&w->c, "interactions", where, 1, 10000);
    assert_string_equal(crm_map_str(crm_map_get(recs->u.arr.items[0], "extra"), "order", ""), o2);
    crm_value_free(recs);
    free(o1);
    free(o2);
    free(cid);
}

static void stats_count_and_show_its_configuration(void **state)
{
    world *w = *state;
    crm_value *r = req(&w->c, "\"op\": \"call\", \"method\": \"example.stats\", \"params\": {}}");
    const crm_value *res = ok_result(r);
    crm_value *words = crm_test_json("[\"lottery\", \"Crypto Giveaway\"]");
    assert_string_equal(crm_map_str(res, "role", ""), "admin");
    assert_true(crm_value_equal(crm_map_get(res, "forbidden_words"), words)); /* ours, not the default */
    assert_int_equal(crm_map_int(res, "rejected", 0), 2);
    assert_true(crm_map_int(res, "orders", 0) >= 6);
    assert_true(crm_map_int(res, "followups", 0) >= 1);
    assert_true(crm_map_int(res, "cancelled", 0) >= 1);
    assert_true(crm_map_int(res, "echoes", 0) >= 2);
    /* its confirmations (one per order) were its own writes, per write_origin;
     * the interactions the test created were not */
    assert_true(crm_map_int(res, "own_writes", 0) >= 6);
    assert_true(crm_map_int(res, "own_writes", 0) < crm_map_int(res, "screened", 0) +
                                                         crm_map_int(res, "rejected", 0));
    assert_int_equal(crm_map_get(res, "avg_amount")->type, CRM_T_NUM);
    /* where_match: the 1500 order is big (gte 1000), the 100-500 ones are not */
    assert_true(crm_map_int(res, "big_orders", 0) >= 1);
    assert_true(crm_map_int(res, "big_orders", 0) < crm_map_int(res, "orders", 0));
    crm_value_free(words);
    crm_value_free(r);
}

/* ---- start-up refusals ---- */

static void refused(const char *tag, const char *name, const char *as, const char *fmt, ...)
{
    char *dir = crm_tmpdir_make(tag), msg[1024], head[4096];
    va_list ap;
    add_test_plugin(dir, name, as);
    snprintf(head, sizeof head, "%s/%s.so: ", dir, as ? as : name);
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    strncat(head, msg, sizeof head - strlen(head) - 1);
    expect_refused(dir, head);
    crm_tmpdir_remove(dir);
}

static void wrong_abi_is_refused(void **state)
{
    refused("plugins-abi", "bad_abi", NULL, "built for plugin ABI %d, this crmd speaks ABI %d",
            CRM_PLUGIN_ABI + 1, CRM_PLUGIN_ABI);
}

static void table_too_short_for_the_plugin_is_refused(void **state)
{
    refused("plugins-size", "long_api", NULL, "needs a crm_api of %zu bytes, this crmd has %zu",
            sizeof(crm_api) + 64, sizeof(crm_api));
}

static void failing_init_stops_start_up(void **state)
{
    refused("plugins-init", "init_fails", NULL, "init failed: no licence_key in its configuration");
}

static void refused_registration_is_init_failures_message(void **state)
{
    refused("plugins-event", "bad_event", NULL,
            "init failed: event \"nosuch.create\": no collection \"nosuch\"");
}

static void no_entry_point_is_refused(void **state)
{
    refused("plugins-noentry", "noentry", NULL, "not a crmd plugin");
}

static void bad_configuration_is_refused(void **state)
{
    char *dir = crm_tmpdir_make("plugins-json"), head[4096];
    add_test_plugin(dir, "order", "cfg");
    crm_tmpdir_write(dir, "cfg.json", "{\"tag\": ");
    snprintf(head, sizeof head, "%s/cfg.json: invalid JSON", dir);
    expect_refused(dir, head);
    crm_tmpdir_write(dir, "cfg.json", "[1, 2]");
    snprintf(head, sizeof head, "%s/cfg.json: must hold a JSON object", dir);
    expect_refused(dir, head);
    crm_tmpdir_remove(dir);
}

static void first_refusal_in_name_order_wins(void **state)
{
    char *dir = crm_tmpdir_make("plugins-first"), head[4096], *log;
    srv s;
    /* made in another order than their names sort in */
    add_test_plugin(dir, "long_api", "z_long");
    add_test_plugin(dir, "bad_abi", "b_abi");
    add_test_plugin(dir, "order", "a_fine");
    assert_int_not_equal(srv_start(&s, getenv("CRM_SCHEMAS"), dir), 0);
    assert_int_not_equal(s.status, 0);
    log = read_text(s.log);
    /* a_fine loads, b_abi is refused, so a_fine is finalised; z_long is
     * never looked at */
    snprintf(head, sizeof head, "%s/b_abi.so: built for plugin ABI", dir);
    int init = log_find(log, "init a_fine", 1), refusal = log_find(log, head, 1);
    if (!init || !refusal || !log_find(log, "fini a_fine", init))
        fail_msg("expected init a_fine, the refusal of b_abi.so, fini a_fine in:\n%s", log);
    assert_int_equal(log_find(log, "z_long", 1), 0);
    free(log);
    srv_free(&s);
    crm_tmpdir_remove(dir);
}

/* ---- load order, configuration per plugin, fini, older tables ---- */

static void plugins_load_in_name_order(void **state)
{
    char *dir = crm_tmpdir_make("plugins-order"), *log, *admin, line[256];
    static const char *const order[] = {"B_three", "a_one", "b_two"}; /* byte order */
    ws_client c;
    crm_value *r;
    srv s;
    /* created in another order than they load */
    add_test_plugin(dir, "order", "b_two");
    add_test_plugin(dir, "order", "a_one");
    add_test_plugin(dir, "old_api", NULL);
    add_test_plugin(dir, "order", "B_three");
    for (size_t i = 0; i < 3; i++) {
        char name[64], json[128];
        snprintf(name, sizeof name, "%s.json", order[i]);
        snprintf(json, sizeof json, "{\"tag\": \"tag of %s\"}", order[i]);
        crm_tmpdir_write(dir, name, json);
    }
    crm_tmpdir_write(dir, "README.txt", "not a plugin: ignored");
    if (srv_start(&s, getenv("CRM_SCHEMAS"), dir) != 0)
        fail_msg("crmd did not start: %s", (log = read_text(s.log)));
    admin = crmd_token(&s.p, "admin");
    assert_non_null(admin);
    connect_as(&c, s.p.port, admin);
    /* each plugin has its own configuration and owner */
    for (size_t i = 0; i < 3; i++) {
        r = req(&c, "\"op\": \"call\", \"method\": \"order.%s\", \"params\": {}}", order[i]);
        const crm_value *res = ok_result(r);
        snprintf(line, sizeof line, "tag of %s", order[i]);
        assert_string_equal(crm_map_str(res, "name", ""), order[i]);
        assert_string_equal(crm_map_str(res, "tag", ""), line);
        assert_true(crm_map_get(res, "same_owner")->u.b);
        crm_value_free(r);
    }
    /* built against a shorter, older table: loads and works */
    r = req(&c, "\"op\": \"call\", \"method\": \"old.hello\", \"params\": {}}");
    assert_string_equal(ok_result(r)->u.str.s, "hello from an older plugin");
    crm_value_free(r);
    ws_close(&c);
    free(admin);
    assert_int_equal(srv_stop(&s), 0);

    /* loaded in byte order of file names, finalised in reverse */
    log = read_text(s.log);
    int at = 1;
    for (size_t i = 0; i < 3; i++) {
        snprintf(line, sizeof line, "init %s", order[i]);
        if (!(at = log_find(log, line, at)))
            fail_msg("\"%s\" missing or out of order in:\n%s", line, log);
    }
    snprintf(line, sizeof line, "%s/old_api.so", dir);
    if (!log_find(log, line, at))
        fail_msg("old_api.so was not loaded after b_two.so:\n%s", log);
    for (size_t i = 3; i-- > 0;) {
        snprintf(line, sizeof line, "fini %s", order[i]);
        if (!(at = log_find(log, line, at)))
            fail_msg("\"%s\" missing or out of order (fini runs in reverse) in:\n%s", line, log);
    }
    free(log);
    srv_free(&s);
    crm_tmpdir_remove(dir);
}

static void missing_folder_means_no_plugins(void **state)
{
    char *dir = crm_tmpdir_make("plugins-none"), path[4096], *admin;
    ws_client c;
    srv s;
    snprintf(path, sizeof path, "%s/absent", dir);
    if (srv_start(&s, getenv("CRM_SCHEMAS"), path) != 0)
        fail_msg("crmd did not start: %s", read_text(s.log));
    admin = crmd_token(&s.p, "admin");
    connect_as(&c, s.p.port, admin);
    crm_value *r = req(&c, "\"op\": \"call\", \"method\": \"example.echo\", \"params\": {}}");
    expect_error(r, "NOT_FOUND", NULL);
    crm_value_free(r);
    ws_close(&c);
    free(admin);
    assert_int_equal(srv_stop(&s), 0);
    srv_free(&s);
    crm_tmpdir_remove(dir);
}

int main(void)
{
    const struct CMUnitTest example[] = {
        cmocka_unit_test(echo_answers_with_the_callers_role),
        cmocka_unit_test(before_hook_rejects_a_write),
        cmocka_unit_test(second_plugins_before_hook_rejects),
        cmocka_unit_test(after_hook_writes_the_confirmation_once),
        cmocka_unit_test(timer_follows_up_unless_cancelled),
        cmocka_unit_test(delete_removes_what_the_hook_wrote),
        cmocka_unit_test(stats_count_and_show_its_configuration),
        cmocka_unit_test(overwritten_in_place_keeps_running), /* last: it rewrites reject.so */
    };
    const struct CMUnitTest loader[] = {
        cmocka_unit_test(wrong_abi_is_refused),
        cmocka_unit_test(table_too_short_for_the_plugin_is_refused),
        cmocka_unit_test(failing_init_stops_start_up),
        cmocka_unit_test(refused_registration_is_init_failures_message),
        cmocka_unit_test(no_entry_point_is_refused),
        cmocka_unit_test(bad_configuration_is_refused),
        cmocka_unit_test(first_refusal_in_name_order_wins),
        cmocka_unit_test(plugins_load_in_name_order),
        cmocka_unit_test(missing_folder_means_no_plugins),
    };
    int failed = cmocka_run_group_tests_name("example plugin", example, example_up, example_down);
    failed += cmocka_run_group_tests_name("loader", loader, NULL, NULL);
    return failed ? 1 : 0;
}
