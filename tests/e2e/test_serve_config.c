/*
 * test_serve_config -- `crmd serve --config FILE` on a real server: the file's
 * listen address and limits are the ones served (a message past its
 * max-message closes with 1009), a flag wins over the file, a bad file
 * stops crmd with FILE:LINE; every line crmd logs is one JSON object with
 * ts, level and event (parsed with jansson), the token never appears in it
 * (R18); and with tls-cert and tls-key, wss:// and https:// work with a
 * throw-away self-signed certificate while plain ws:// and http:// to the
 * same port fail.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "codec.h"
#include "testutil.h"
#include "tmpdir.h"
#include "wsclient.h"

static char *dir; /* config files, logs and certificates of one test */
static crmd_proc p; /* the test's crmd: teardown stops it if a test failed */

static int setup(void **state)
{
    (void)state;
    dir = crm_tmpdir_make("config-e2e");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ws_client_tls = 0;
    if (p.pid > 0)
        crmd_stop(&p);
    crm_tmpdir_remove(dir);
    dir = NULL;
    return 0;
}

/* A port nobody listens on right now (the kernel's pick for port 0). */
static int free_port(void)
{
    struct sockaddr_in sa = {0};
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;
    assert_true(fd >= 0);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

/* dir/name: a config for data, the test schemas and no scripts or plugins,
 * with the extra text (more keys of [server] first, then sections). */
static void write_conf(const char *name, const char *data, const char *server_keys,
                       const char *sections)
{
    char text[8192];
    const char *web = getenv("CRM_WEB");
    snprintf(text, sizeof text,
             "# written by test_serve_config\n"
             "[server]\n%s\n"
             "[paths]\n"
             "data = %s\n"
             "schemas = %s\n"
             "scripts = /nonexistent/crmd-test-no-scripts\n"
             "plugins = /nonexistent/crmd-test-no-plugins\n"
             "web = %s\n"
             "%s",
             server_keys, data, getenv("CRM_SCHEMAS"), web ? web : "./web", sections);
    crm_tmpdir_write(dir, name, text);
}

static void path_of(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

/* Sends a ping padded to size bytes; 1 when answered, else 0 (*code: the
 * close code). */
static int padded_ping(ws_client *c, size_t size, int *code)
{
    char *m = malloc(size);
    crm_value *r;
    assert_non_null(m);
    memset(m, ' ', size);
    memcpy(m, "{\"ref\": 9, \"op\": \"ping\"", strlen("{\"ref\": 9, \"op\": \"ping\""));
    m[size - 1] = '}';
    *code = 0;
    assert_int_equal(ws_send_frame(c, 1, m, size), 0);
    free(m);
    r = ws_recv(c, 3000, code);
    if (!r)
        return 0;
    assert_string_equal(ws_code(r), "OK");
    crm_value_free(r);
    return 1;
}

/* Every line of the log is a JSON object {ts, level, event, ...}; returns
 * the number of lines and checks the ready line said port (and url). */
static int check_log(const char *log_path, int port, const char *url_prefix, const char *secret)
{
    char *text = crm_test_read_file(log_path), *save = NULL;
    int lines = 0, ready = 0, stopped = 0;
    assert_non_null(text);
    if (secret && strstr(text, secret))
        fail_msg("the token's secret is in crmd's log (R18):\n%s", text);
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_error_t je;
        json_t *o = json_loads(line, JSON_REJECT_DUPLICATES, &je);
        const char *ts, *level, *event;
        if (!o || !json_is_object(o))
            fail_msg("not a JSON object (%s): %s", o ? "not an object" : je.text, line);
        ts = json_string_value(json_object_get(o, "ts"));
        level = json_string_value(json_object_get(o, "level"));
        event = json_string_value(json_object_get(o, "event"));
        if (!ts || !level || !event)
            fail_msg("ts, level and event must be strings: %s", line);
        /* 2026-11-23T14:38:06.123Z */
        if (strlen(ts) != 24 || ts[4] != '-' || ts[10] != 'T' || ts[19] != '.' || ts[23] != 'Z')
            fail_msg("ts is not UTC with milliseconds: %s", line);
        if (strcmp(level, "debug") && strcmp(level, "info") && strcmp(level, "warn") &&
            strcmp(level, "error"))
            fail_msg("unknown level: %s", line);
        /* the first three keys, in this order (jansson keeps insertion order) */
        void *it = json_object_iter(o);
        assert_string_equal(json_object_iter_key(it), "ts");
        assert_string_equal(json_object_iter_key(it = json_object_iter_next(o, it)), "level");
        assert_string_equal(json_object_iter_key(json_object_iter_next(o, it)), "event");
        if (strcmp(event, "ready") == 0) {
            const char *url = json_string_value(json_object_get(o, "url"));
            ready++;
            assert_int_equal(json_integer_value(json_object_get(o, "port")), port);
            assert_non_null(url);
            assert_true(strncmp(url, url_prefix, strlen(url_prefix)) == 0);
            assert_non_null(strstr(json_string_value(json_object_get(o, "msg")),
                                   "listening on 127.0.0.1:"));
        }
        if (strcmp(event, "stopped") == 0)
            stopped++;
        json_decref(o);
        lines++;
    }
    assert_int_equal(ready, 1);
    assert_int_equal(stopped, 1);
    free(text);
    return lines;
}

/* `crmd token create --config conf --role role`: the token (last line of
 * stdout), malloc'd, or NULL. */
static char *token_by_config(const char *conf, const char *role)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' token create --config '%s' --role '%s'", getenv("CRMD_BIN"),
             conf, role);
    return crm_test_last_line(cmd);
}

static void test_config_file_sets_listen_limits_and_logs(void **state)
{
    char conf[4096], log[4096], server_keys[256], *data = crm_tmpdir_make("config-data"), *admin;
    const char *bin = getenv("CRMD_BIN");
    ws_client c;
    crm_value *r;
    int port = free_port(), code;
    (void)state;
    snprintf(server_keys, sizeof server_keys, "listen = 127.0.0.1:%d\nlog-level = debug\n", port);
    write_conf("crmd.conf", data, server_keys,
               "[limits]\nmax-message = 4096\n[feed]\nretention-days = 30\n");
    path_of(conf, sizeof conf, "crmd.conf");
    path_of(log, sizeof log, "crmd.log");
    const char *argv[] = {bin, "serve", "--config", conf, NULL};
    assert_int_equal(crmd_spawn(&p, data, getenv("CRM_SCHEMAS"), argv, log), 0);
    assert_int_equal(p.port, port); /* the file's listen */
    /* crmd token reads the same file: its token lands in the served store */
    assert_non_null(admin = token_by_config(conf, "admin"));

    assert_int_equal(ws_connect(&c, p.port, "crm.v1.json", NULL, NULL), 0);
    assert_int_equal(ws_auth(&c, admin, 3000), 0);
    r = ws_request(&c, 3000, NULL,
                   "{\"op\": \"create\", \"collection\": \"contacts\", \"record\": {\"name\": \"Ann\"}}");
    assert_non_null(r);
    assert_string_equal(ws_code(r), "OK");
    crm_value_free(r);
    assert_true(padded_ping(&c, 3000, &code)); /* under the file's max-message */
    assert_false(padded_ping(&c, 5000, &code)); /* over it (the default is 1 MiB) */
    assert_int_equal(code, 1009);
    ws_close(&c);
    assert_int_equal(crmd_stop(&p), 0);
    /* debug level: connect and disconnect lines too, all JSON */
    assert_true(check_log(log, port, "ws://", admin) >= 3);
    {
        char *text = crm_test_read_file(log);
        assert_non_null(strstr(text, "\"event\":\"connect\""));
        assert_non_null(strstr(text, conf)); /* the ready line names the file */
        free(text);
    }
    free(data);
    free(admin);
}

static void test_a_flag_wins_over_the_file(void **state)
{
    char conf[4096], log[4096], *data = crm_tmpdir_make("config-data"), *admin;
    const char *bin = getenv("CRMD_BIN");
    ws_client c;
    int code, port;
    (void)state;
    write_conf("crmd.conf", data, "listen = 127.0.0.1:1\nlog-level = error\n",
               "[limits]\nmax-message = 4096\n");
    path_of(conf, sizeof conf, "crmd.conf");
    path_of(log, sizeof log, "crmd.log");
    const char *argv[] = {bin,  "serve", "--config", conf, "--max-message", "8192",
                          "--listen", "127.0.0.1:0", "--log-level", "info", NULL};
    assert_int_equal(crmd_spawn(&p, data, getenv("CRM_SCHEMAS"), argv, log), 0);
    assert_true(p.port > 1);
    assert_non_null(admin = crmd_token(&p, "admin"));
    assert_int_equal(ws_connect(&c, p.port, NULL, NULL, NULL), 0);
    assert_int_equal(ws_auth(&c, admin, 3000), 0);
    assert_true(padded_ping(&c, 5000, &code)); /* the flag's 8192, not the file's 4096 */
    assert_false(padded_ping(&c, 9000, &code));
    assert_int_equal(code, 1009);
    ws_close(&c);
    port = p.port;
    assert_int_equal(crmd_stop(&p), 0);
    check_log(log, port, "ws://", admin);
    free(data);
    free(admin);
}

static void test_a_bad_file_stops_crmd_with_file_and_line(void **state)
{
    char conf[4096], log[4096], want[4200], *text;
    const char *bin = getenv("CRMD_BIN");
    (void)state;
    write_conf("bad.conf", "/nonexistent/data", "listen = 127.0.0.1:0\n",
               "[limits]\nrate = 100\nmax-mesage = 4096\n");
    path_of(conf, sizeof conf, "bad.conf");
    path_of(log, sizeof log, "crmd.log");
    const char *argv[] = {bin, "serve", "--config", conf, NULL};
    assert_int_equal(crmd_spawn(&p, NULL, NULL, argv, log), -1);
    assert_int_equal(crmd_stop(&p), 2);
    text = crm_test_read_file(log);
    assert_non_null(text);
    snprintf(want, sizeof want, "%s:13: unknown key \"max-mesage\" in [limits]", conf);
    if (!strstr(text, want))
        fail_msg("expected \"%s\" in:\n%s", want, text);
    free(text);
}

static void test_tls_serves_wss_and_https_only(void **state)
{
    char cert[4096], key[4096], log[4096], cmd[9000], *data = crm_tmpdir_make("config-data");
    char *admin, *body = NULL;
    const char *bin = getenv("CRMD_BIN");
    ws_client c;
    crm_value *r;
    int status = 0, port;
    (void)state;
    path_of(cert, sizeof cert, "cert.pem");
    path_of(key, sizeof key, "key.pem");
    path_of(log, sizeof log, "crmd.log");
    /* a throw-away self-signed certificate (the openssl CLI) */
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout '%s' -out '%s' -days 2 -subj /CN=127.0.0.1 >/dev/null 2>&1",
             key, cert);
    assert_int_equal(system(cmd), 0);
    const char *argv[] = {bin, "serve", "--data", data, "--schemas", getenv("CRM_SCHEMAS"),
                          "--listen", "127.0.0.1:0", "--scripts", "/nonexistent/none",
                          "--plugins", "/nonexistent/none", "--tls-cert", cert,
                          "--tls-key", key, NULL};
    assert_int_equal(crmd_spawn(&p, data, getenv("CRM_SCHEMAS"), argv, log), 0);
    assert_non_null(admin = crmd_token(&p, "admin"));

    /* wss:// with libwebsockets' client: an authenticated write and read */
    ws_client_tls = 1;
    assert_int_equal(ws_connect(&c, p.port, "crm.v1.json", NULL, NULL), 0);
    assert_int_equal(ws_auth(&c, admin, 5000), 0);
    r = ws_request(&c, 5000, NULL,
                   "{\"op\": \"create\", \"collection\": \"contacts\", \"record\": {\"name\": \"Tls\"}}");
    assert_non_null(r);
    assert_string_equal(ws_code(r), "OK");
    char id[64];
    snprintf(id, sizeof id, "%s", crm_map_str(crm_map_get(r, "result"), "id", ""));
    assert_true(id[0] != '\0');
    crm_value_free(r);
    r = ws_request(&c, 5000, NULL, "{\"op\": \"get\", \"collection\": \"contacts\", \"id\": \"%s\"}", id);
    assert_non_null(r);
    assert_string_equal(ws_code(r), "OK");
    assert_string_equal(crm_map_str(crm_map_get(r, "result"), "name", ""), "Tls");
    crm_value_free(r);
    ws_close(&c);
    ws_client_tls = 0;

    /* https:// */
    assert_int_equal(https_get(p.port, "/healthz", &status, &body), 0);
    assert_int_equal(status, 200);
    assert_non_null(strstr(body, "\"ok\":true"));
    free(body);
    body = NULL;

    /* plain ws:// and http:// to the TLS port fail */
    assert_int_equal(ws_connect(&c, p.port, "crm.v1.json", NULL, NULL), -1);
    status = 0;
    http_get(p.port, "/healthz", &status, &body);
    assert_int_not_equal(status, 200);
    free(body);

    /* the server is still fine after the plain attempts */
    assert_int_equal(https_get(p.port, "/healthz", &status, &body), 0);
    assert_int_equal(status, 200);
    free(body);
    port = p.port;
    assert_int_equal(crmd_stop(&p), 0);
    check_log(log, port, "wss://", admin);
    free(data);
    free(admin);
}

/* The HTTP status crmd answers a GET of path naming host in its Host header
 * (with a WebSocket upgrade and that Origin when origin is not NULL). */
static int status_for_host(int port, const char *path, const char *host, const char *origin)
{
    struct sockaddr_in sa = {0};
    char req[1024], resp[256];
    int fd = socket(AF_INET, SOCK_STREAM, 0), n, got = 0, status = -1;
    struct timeval tv = {5, 0};
    assert_true(fd >= 0);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (origin)
        n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nOrigin: %s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n", path, host, origin);
    else
        n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                     path, host);
    assert_int_equal(send(fd, req, (size_t)n, 0), n);
    while (got < (int)sizeof resp - 1 && !memchr(resp, '\n', (size_t)got)) {
        ssize_t r = recv(fd, resp + got, sizeof resp - 1 - (size_t)got, 0);
        if (r <= 0)
            break;
        got += (int)r;
    }
    resp[got] = '\0';
    close(fd);
    if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1)
        status = -1;
    return status;
}

/* R17, DNS rebinding: only IP addresses, localhost and the configured host
 * names are answered; a page of another name gets 403 on HTTP and on the
 * upgrade, even with a matching Origin. */
static void test_only_allowed_host_names_are_answered(void **state)
{
    char log[4096], host[128], origin[160], *data = crm_tmpdir_make("config-data");
    const char *bin = getenv("CRMD_BIN");
    (void)state;
    path_of(log, sizeof log, "crmd.log");
    const char *argv[] = {bin, "serve", "--listen", "127.0.0.1:0", "--data", data, "--schemas",
                          getenv("CRM_SCHEMAS"), "--scripts", "/nonexistent", "--plugins",
                          "/nonexistent", "--host", "crm.example.com", "--host",
                          "CRM2.example.com", NULL};
    assert_int_equal(crmd_spawn(&p, data, getenv("CRM_SCHEMAS"), argv, log), 0);
    snprintf(host, sizeof host, "127.0.0.1:%d", p.port);
    assert_int_equal(status_for_host(p.port, "/healthz", host, NULL), 200);
    assert_int_equal(status_for_host(p.port, "/healthz", "localhost", NULL), 200);
    assert_int_equal(status_for_host(p.port, "/healthz", "[::1]:8420", NULL), 200);
    assert_int_equal(status_for_host(p.port, "/healthz", "crm.example.com:8420", NULL), 200);
    assert_int_equal(status_for_host(p.port, "/healthz", "crm2.EXAMPLE.com", NULL), 200);
    assert_int_equal(status_for_host(p.port, "/healthz", "evil.example:8420", NULL), 403);
    assert_int_equal(status_for_host(p.port, "/metrics", "crm.example.com.evil.example", NULL), 403);
    /* the upgrade: a rebound page's Origin matches its Host, and is still refused */
    snprintf(host, sizeof host, "evil.example:%d", p.port);
    snprintf(origin, sizeof origin, "http://evil.example:%d", p.port);
    assert_int_equal(status_for_host(p.port, "/ws", host, origin), 403);
    snprintf(host, sizeof host, "crm.example.com:%d", p.port);
    snprintf(origin, sizeof origin, "http://crm.example.com:%d", p.port);
    assert_int_equal(status_for_host(p.port, "/ws", host, origin), 101);
    {
        int st;
        char *body = NULL;
        assert_int_equal(http_get(p.port, "/metrics", &st, &body), 0);
        assert_non_null(strstr(body, "crmd_host_refused_total 3"));
        free(body);
    }
    assert_int_equal(crmd_stop(&p), 0);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_config_file_sets_listen_limits_and_logs, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_flag_wins_over_the_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_bad_file_stops_crmd_with_file_and_line, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tls_serves_wss_and_https_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_only_allowed_host_names_are_answered, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
