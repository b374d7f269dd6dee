/*
 * test_config -- the config file and flags of `crmd serve` (kernel/config.c).
 *
 * Covers: crmd.conf.example equals the built-in defaults and sets every key
 * (so the documented defaults cannot drift from the code); a file setting
 * every key to another value is read exactly; each kind of bad file is
 * refused with FILE:LINE and the exact reason (unknown key and section, a
 * key in the wrong section or before any, set twice, bad and out-of-range
 * numbers, listen, log level, origins, empty path, control bytes, a line
 * that is no key, an unclosed section, an overlong line, a NUL byte, a
 * flag-only key); checks across keys; flags over the file (and the default
 * file when no --config); bad flags; --print-config output read back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "log.h"
#include "tmpdir.h"

static char *dir;

static int setup(void **state)
{
    (void)state;
    dir = crm_tmpdir_make("config");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    crm_tmpdir_remove(dir);
    dir = NULL;
    return 0;
}

/* dir/name with text (len bytes, so a NUL can be inside); returns the path. */
static const char *put(const char *name, const char *text, size_t len)
{
    static char path[4096];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return path;
}

static const char *put_text(const char *name, const char *text)
{
    return put(name, text, strlen(text));
}

static size_t key_index(const char *key)
{
    for (size_t i = 0; crm_config_key(i); i++)
        if (strcmp(crm_config_key(i), key) == 0)
            return i;
    fail_msg("no key %s", key);
    return 0;
}

static void test_example_file_equals_the_built_in_defaults(void **state)
{
    crm_config def, ex;
    crm_err err;
    char path[4096];
    const char *d;
    (void)state;
    assert_non_null(getenv("CRM_SCHEMAS"));
    snprintf(path, sizeof path, "%s/../crmd.conf.example", getenv("CRM_SCHEMAS"));
    assert_int_equal(crm_config_init(&def, &err), CRM_OK);
    assert_int_equal(crm_config_init(&ex, &err), CRM_OK);
    if (crm_config_load(&ex, path, &err) != CRM_OK)
        fail_msg("%s", err.msg);
    if ((d = crm_config_diff(&def, &ex)) != NULL) {
        char a[256], b[256];
        fail_msg("crmd.conf.example says %s = %s, the built-in default is %s", d,
                 crm_config_format(&ex, key_index(d), b, sizeof b),
                 crm_config_format(&def, key_index(d), a, sizeof a));
    }
    /* every file key is written out (origin only as a comment: its default
     * is no origin at all) */
    for (size_t i = 0; crm_config_key(i); i++) {
        if (!*crm_config_section(i) || strcmp(crm_config_key(i), "origin") == 0 ||
            strcmp(crm_config_key(i), "host") == 0)
            continue;
        if (!ex.line_of[i])
            fail_msg("crmd.conf.example does not set %s", crm_config_key(i));
    }
    assert_int_equal(crm_config_check(&ex, &err), CRM_OK);
    crm_config_free(&def);
    crm_config_free(&ex);
}

static void test_a_file_setting_every_key_is_read_exactly(void **state)
{
    crm_config c;
    crm_err err;
    char text[8192];
    const char *path;
    (void)state;
    put_text("cert.pem", "not checked here\n");
    put_text("key.pem", "not checked here\n");
    snprintf(text, sizeof text,
             "\xEF\xBB\xBF# a comment\n"
             "; another\n"
             "[server]\n"
             "listen = 0.0.0.0:9000   # inline comment\n"
             "origin = https://crm.example.com\n"
             "origin = http://localhost:5173\n"
             "log-level = warn\n"
             "\n"
             "  [paths]\n"
             "  data = /srv/crm/data\n"
             "schemas=/srv/crm/schemas\n"
             "scripts = \"/srv/crm/my scripts\"\n"
             "plugins = /srv/crm/plugins\n"
             "web = \"\"\n"
             "[limits]\n"
             "max-message = 2048\n"
             "max-depth = 8\n"
             "auth-deadline-ms = 500\n"
             "rate = 20\n"
             "max-subs = 3\n"
             "max-inflight = 7\n"
             "send-queue = 65536\n"
             "ping-secs = 5\n"
             "idle-secs = 11\n"
             "[tls]\n"
             "tls-cert = %s/cert.pem\n"
             "tls-key = %s/key.pem\n"
             "[feed]\n"
             "retention-days = 30\n"
             "retention-bytes = 1073741824\n",
             dir, dir);
    path = put_text("good.conf", text);
    assert_int_equal(crm_config_init(&c, &err), CRM_OK);
    if (crm_config_load(&c, path, &err) != CRM_OK)
        fail_msg("%s", err.msg);
    assert_string_equal(c.listen, "0.0.0.0:9000");
    assert_string_equal(c.origins[0], "https://crm.example.com");
    assert_string_equal(c.origins[1], "http://localhost:5173");
    assert_null(c.origins[2]);
    assert_int_equal(c.log_level, CRM_LOG_WARN);
    assert_string_equal(c.data, "/srv/crm/data");
    assert_string_equal(c.schemas, "/srv/crm/schemas");
    assert_string_equal(c.scripts, "/srv/crm/my scripts"); /* the quotes dropped */
    assert_string_equal(c.plugins, "/srv/crm/plugins");
    assert_string_equal(c.web, "");
    assert_int_equal(c.net.max_message, 2048);
    assert_int_equal(c.net.max_depth, 8);
    assert_int_equal(c.net.auth_deadline_ms, 500);
    assert_int_equal(c.net.rate_per_sec, 20);
    assert_int_equal(c.net.max_subs, 3);
    assert_int_equal(c.net.max_inflight, 7);
    assert_int_equal(c.net.send_queue_max, 65536);
    assert_int_equal(c.net.ping_secs, 5);
    assert_int_equal(c.net.idle_secs, 11);
    assert_true(strstr(c.tls_cert, "/cert.pem") != NULL);
    assert_true(strstr(c.tls_key, "/key.pem") != NULL);
    assert_int_equal(c.feed_max_age_ms, 30LL * 86400000);
    assert_int_equal(c.feed_max_bytes, 1073741824ULL);
    assert_int_equal(c.line_of[key_index("listen")], 4);
    assert_int_equal(c.line_of[key_index("data")], 10);
    assert_string_equal(c.path, path);
    assert_int_equal(crm_config_check(&c, &err), CRM_OK);
    {
        char host[256];
        int port;
        assert_int_equal(crm_config_listen(&c, host, sizeof host, &port), 0);
        assert_string_equal(host, "0.0.0.0");
        assert_int_equal(port, 9000);
    }
    crm_config_free(&c);
}

/* Each bad file: its text, the line and the exact reason. */
static void expect_refused(const char *text, size_t len, int line, const char *why)
{
    crm_config c;
    crm_err err;
    char want[1024];
    const char *path = put("bad.conf", text, len);
    assert_int_equal(crm_config_init(&c, &err), CRM_OK);
    if (crm_config_load(&c, path, &err) == CRM_OK)
        fail_msg("accepted:\n%s", text);
    snprintf(want, sizeof want, "%s:%d: %s", path, line, why);
    assert_int_equal(err.code, CRM_BAD_REQUEST);
    assert_string_equal(err.msg, want);
    crm_config_free(&c);
}
#define REFUSED(text, line, why) expect_refused(text, sizeof text - 1, line, why)

static void test_bad_files_are_refused_with_file_line_and_reason(void **state)
{
    char big[6000], origins[2048];
    size_t n;
    (void)state;
    REFUSED("[limits]\nmax-mesage = 5\n", 2, "unknown key \"max-mesage\" in [limits]");
    REFUSED("# c\n[limit]\nrate = 5\n", 2,
            "unknown section [limit] (the sections: server, paths, limits, tls, feed, store)");
    REFUSED("[server]\nmax-message = 2048\n", 2, "max-message belongs in [limits], not in [server]");
    REFUSED("max-message = 2048\n", 1, "max-message belongs in [limits], not before any section");
    REFUSED("[limits]\nmax-message = 1k\n", 2,
            "max-message: must be a whole number from 1024 to 67108864, not \"1k\"");
    REFUSED("[limits]\nmax-depth = 257\n", 2,
            "max-depth: must be a whole number from 2 to 256, not \"257\"");
    REFUSED("[limits]\nrate = -5\n", 2,
            "rate: must be a whole number from 1 to 10000000, not \"-5\"");
    REFUSED("[limits]\nsend-queue = 99999999999999999999999\n", 2,
            "send-queue: must be a whole number from 65536 to 17179869184, not "
            "\"99999999999999999999999\"");
    REFUSED("[limits]\nrate = \n", 2, "rate: must be a whole number from 1 to 10000000, not \"\"");
    REFUSED("[limits]\n# c\nrate = 5\nrate = 6\n", 4, "rate is set twice (first on line 3)");
    REFUSED("[server]\nlisten = localhost\n", 2,
            "listen: must be HOST:PORT with a port from 0 to 65535, not \"localhost\"");
    REFUSED("[server]\nlisten = 127.0.0.1:65536\n", 2,
            "listen: must be HOST:PORT with a port from 0 to 65535, not \"127.0.0.1:65536\"");
    REFUSED("[server]\nlog-level = verbose\n", 2,
            "log-level: must be debug, info, warn or error, not \"verbose\"");
    REFUSED("[server]\norigin = crm.example.com\n", 2,
            "origin: must be an origin like https://crm.example.com (scheme and host, no "
            "path), not \"crm.example.com\"");
    REFUSED("[server]\norigin = https://crm.example.com/app\n", 2,
            "origin: must be an origin like https://crm.example.com (scheme and host, no "
            "path), not \"https://crm.example.com/app\"");
    REFUSED("[paths]\ndata =\n", 2, "data: must not be empty");
    REFUSED("[paths]\ndata = a\x01" "b\n", 2, "data: control characters are not allowed");
    REFUSED("[limits]\nthis is not a key\n", 2,
            "expected \"key = value\", a [section] or a # comment");
    REFUSED("[limits\nrate = 5\n", 1, "a section line needs its closing ]");
    REFUSED("[server]\ntime-scale = 2\n", 2, "time-scale is a command-line flag only (--time-scale)");
    REFUSED("[paths]\ndata = x\0y\n", 2, "a NUL byte");
    /* a line longer than 4096 bytes: inih alone would cut it in two */
    n = (size_t)snprintf(big, sizeof big, "[paths]\n# ok\ndata = /");
    memset(big + n, 'a', 4200);
    memcpy(big + n + 4200, "\n", 2);
    expect_refused(big, strlen(big), 3, "line longer than 4096 bytes");
    /* 17 origins */
    n = (size_t)snprintf(origins, sizeof origins, "[server]\n");
    for (int i = 0; i < 17; i++)
        n += (size_t)snprintf(origins + n, sizeof origins - n, "origin = https://o%d.example\n", i);
    expect_refused(origins, n, 18, "origin: at most 16 origins");
}

static void test_missing_file_and_checks_across_keys(void **state)
{
    crm_config c;
    crm_err err;
    char want[4096];
    const char *path;
    (void)state;
    assert_int_equal(crm_config_init(&c, &err), CRM_OK);
    snprintf(want, sizeof want, "%s/nope.conf", dir);
    assert_int_equal(crm_config_load(&c, want, &err), CRM_UNAVAILABLE);
    strncat(want, ": No such file or directory", sizeof want - strlen(want) - 1);
    assert_string_equal(err.msg, want);

    path = put_text("pi.conf", "[limits]\nping-secs = 30\nidle-secs = 30\n");
    assert_int_equal(crm_config_load(&c, path, &err), CRM_OK);
    assert_int_equal(crm_config_check(&c, &err), CRM_BAD_REQUEST);
    assert_string_equal(err.msg, "idle-secs (30) must be longer than ping-secs (30)");
    crm_config_free(&c);

    assert_int_equal(crm_config_init(&c, &err), CRM_OK);
    put_text("cert.pem", "x\n");
    snprintf(want, sizeof want, "[tls]\ntls-cert = %s/cert.pem\n", dir);
    path = put_text("tls.conf", want);
    assert_int_equal(crm_config_load(&c, path, &err), CRM_OK);
    assert_int_equal(crm_config_check(&c, &err), CRM_BAD_REQUEST);
    assert_string_equal(err.msg, "tls-cert and tls-key go together: tls-key is empty");
    assert_int_equal(crm_config_set(&c, "tls-key", "/nonexistent/key.pem", &err), CRM_OK);
    assert_int_equal(crm_config_check(&c, &err), CRM_BAD_REQUEST);
    assert_string_equal(err.msg, "tls-key /nonexistent/key.pem: No such file or directory");
    crm_config_free(&c);
}

static void test_flags_win_over_the_file(void **state)
{
    crm_config c;
    crm_err err;
    int help, print;
    char cfg[4096];
    const char *path = put_text("f.conf", "[server]\n"
                                          "origin = https://a.example\n"
                                          "origin = https://b.example\n"
                                          "[limits]\n"
                                          "max-message = 2048\n"
                                          "rate = 5\n");
    snprintf(cfg, sizeof cfg, "%s", path);
    (void)state;
    {
        char *argv[] = {"serve",    "--max-message", "4096", "--config",
                        cfg,        "--origin",      "https://c.example", NULL};
        assert_int_equal(crm_config_init(&c, &err), CRM_OK);
        if (crm_config_args(&c, 7, argv, NULL, &help, &print, &err) != CRM_OK)
            fail_msg("%s", err.msg);
        assert_int_equal(c.net.max_message, 4096); /* the flag, given before --config */
        assert_int_equal(c.net.rate_per_sec, 5);   /* the file */
        assert_int_equal(c.net.max_depth, 32);     /* the default */
        assert_string_equal(c.origins[0], "https://c.example"); /* flags replace the list */
        assert_null(c.origins[1]);
        assert_string_equal(c.path, cfg);
        assert_false(help);
        assert_false(print);
        crm_config_free(&c);
    }
    {   /* no --config: the default file when it exists */
        char *argv[] = {"serve", "--rate", "9", NULL};
        assert_int_equal(crm_config_init(&c, &err), CRM_OK);
        assert_int_equal(crm_config_args(&c, 3, argv, cfg, &help, &print, &err), CRM_OK);
        assert_int_equal(c.net.max_message, 2048);
        assert_int_equal(c.net.rate_per_sec, 9);
        assert_string_equal(c.origins[1], "https://b.example");
        crm_config_free(&c);
    }
    {   /* and no file at all when it does not */
        char *argv[] = {"serve", "--print-config", NULL};
        char none[4096];
        snprintf(none, sizeof none, "%s/absent.conf", dir);
        assert_int_equal(crm_config_init(&c, &err), CRM_OK);
        assert_int_equal(crm_config_args(&c, 2, argv, none, &help, &print, &err), CRM_OK);
        assert_true(print);
        assert_null(c.path);
        crm_config_free(&c);
    }
    {   /* a bad file stops even with flags */
        char *argv[] = {"serve", "--config", NULL, "--rate", "3", NULL};
        argv[2] = (char *)put_text("g.conf", "[limits]\nrate = x\n");
        assert_int_equal(crm_config_init(&c, &err), CRM_OK);
        assert_int_equal(crm_config_args(&c, 5, argv, NULL, &help, &print, &err),
                         CRM_BAD_REQUEST);
        assert_non_null(strstr(err.msg, "g.conf:2: rate: must be a whole number"));
        crm_config_free(&c);
    }
}

static void expect_bad_args(int argc, char **argv, const char *why)
{
    crm_config c;
    crm_err err;
    int help, print;
    assert_int_equal(crm_config_init(&c, &err), CRM_OK);
    assert_int_equal(crm_config_args(&c, argc, argv, NULL, &help, &print, &err),
                     CRM_BAD_REQUEST);
    assert_string_equal(err.msg, why);
    crm_config_free(&c);
}

static void test_bad_flags_are_refused_clearly(void **state)
{
    char *a1[] = {"serve", "--max-message", "1", NULL};
    char *a2[] = {"serve", "--nope", NULL};
    char *a3[] = {"serve", "extra", NULL};
    char *a4[] = {"serve", "--rate", NULL};
    char *a5[] = {"serve", "--ping-secs", "80", NULL};
    char *a6[] = {"serve", "--time-scale", "0", NULL};
    char *a7[] = {"serve", "--config", "/nonexistent/crmd.conf", NULL};
    (void)state;
    expect_bad_args(3, a1, "--max-message: must be a whole number from 1024 to 67108864, not \"1\"");
    expect_bad_args(2, a2, "unknown option --nope");
    expect_bad_args(2, a3, "unexpected argument extra");
    expect_bad_args(2, a4, "--rate needs a value");
    expect_bad_args(3, a5, "idle-secs (75) must be longer than ping-secs (80)");
    expect_bad_args(3, a6, "--time-scale: must be a number from 0.001 to 1000000");
    {
        crm_config c;
        crm_err err;
        int help, print;
        assert_int_equal(crm_config_init(&c, &err), CRM_OK);
        assert_int_equal(crm_config_args(&c, 3, a7, NULL, &help, &print, &err), CRM_UNAVAILABLE);
        assert_string_equal(err.msg, "/nonexistent/crmd.conf: No such file or directory");
        crm_config_free(&c);
    }
}

static void test_print_config_reads_back_the_same(void **state)
{
    crm_config a, b;
    crm_err err;
    char path[4096];
    FILE *f;
    (void)state;
    assert_int_equal(crm_config_init(&a, &err), CRM_OK);
    assert_int_equal(crm_config_set(&a, "listen", "127.0.0.1:0", &err), CRM_OK);
    assert_int_equal(crm_config_set(&a, "origin", "https://x.example", &err), CRM_OK);
    assert_int_equal(crm_config_set(&a, "origin", "http://y.example:8080", &err), CRM_OK);
    assert_int_equal(crm_config_set(&a, "retention-days", "0", &err), CRM_OK);
    assert_int_equal(crm_config_set(&a, "log-level", "debug", &err), CRM_OK);
    assert_int_equal(crm_config_set(&a, "web", "", &err), CRM_OK);
    assert_int_equal(crm_config_set(&a, "max-inflight", "12", &err), CRM_OK);
    snprintf(path, sizeof path, "%s/printed.conf", dir);
    assert_non_null(f = fopen(path, "w"));
    crm_config_write(&a, f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(crm_config_init(&b, &err), CRM_OK);
    if (crm_config_load(&b, path, &err) != CRM_OK)
        fail_msg("%s", err.msg);
    assert_null(crm_config_diff(&a, &b));
    assert_int_equal(b.feed_max_age_ms, 0);
    assert_int_equal(b.net.max_inflight, 12);
    crm_config_free(&a);
    crm_config_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_example_file_equals_the_built_in_defaults, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_file_setting_every_key_is_read_exactly, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_files_are_refused_with_file_line_and_reason,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_file_and_checks_across_keys, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_flags_win_over_the_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_flags_are_refused_clearly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_print_config_reads_back_the_same, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
