/*
 * config -- one table of options drives the file, the flags, the defaults,
 * --print-config and the tests, so a key cannot exist in one and be
 * missing in another.
 *
 * Why INI and libinih: the options are flat (a few sections of scalars),
 * operators know the format from systemd, git and PHP, comments are part
 * of it (the example file is the documentation), and Debian ships inih as
 * a tiny C library.  JSON (jansson, already linked) was the other choice,
 * but it has no comments and reports no line for a key after parsing, and
 * refusing a bad key with its line is the point.  We feed inih our own
 * line reader, so we know the line of every key, and we refuse what inih
 * would silently accept: overlong lines (inih would cut them in two), NUL
 * bytes and unknown sections.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ini.h>

#include "config.h"
#include "crashguard.h"
#include "log.h"
#include "store.h"

#define MAX_LINE 4096 /* bytes of one line, newline excluded */
#define MAX_PATH 4095

enum kind { K_LISTEN, K_PATH, K_OPTPATH, K_ORIGIN, K_HOST, K_LEVEL, K_INT, K_SIZE, K_I64, K_U64, K_DOUBLE };

typedef struct opt {
    const char *section; /* "" = a command-line flag only */
    const char *name;
    int kind;
    size_t off;
    long long min, max;
    int64_t scale; /* K_I64: stored = written * scale */
} opt;

#define OFF(f) offsetof(crm_config, f)
static const opt opts[] = {
    {"server", "listen", K_LISTEN, OFF(listen), 0, 0, 1},
    {"server", "origin", K_ORIGIN, OFF(origins), 0, 0, 1},
    {"server", "host", K_HOST, OFF(hosts), 0, 0, 1},
    {"server", "log-level", K_LEVEL, OFF(log_level), 0, 0, 1},
    {"paths", "data", K_PATH, OFF(data), 0, 0, 1},
    {"paths", "schemas", K_PATH, OFF(schemas), 0, 0, 1},
    {"paths", "scripts", K_PATH, OFF(scripts), 0, 0, 1},
    {"paths", "plugins", K_PATH, OFF(plugins), 0, 0, 1},
    {"paths", "web", K_OPTPATH, OFF(web), 0, 0, 1},
    {"limits", "max-message", K_SIZE, OFF(net.max_message), 1024, 64LL << 20, 1},
    {"limits", "max-depth", K_INT, OFF(net.max_depth), 2, 256, 1},
    {"limits", "auth-deadline-ms", K_INT, OFF(net.auth_deadline_ms), 100, 3600000, 1},
    {"limits", "rate", K_INT, OFF(net.rate_per_sec), 1, 10000000, 1},
    {"limits", "max-subs", K_INT, OFF(net.max_subs), 1, 100000, 1},
    {"limits", "max-inflight", K_INT, OFF(net.max_inflight), 1, 1000000, 1},
    {"limits", "send-queue", K_SIZE, OFF(net.send_queue_max), 65536, 1LL << 34, 1},
    {"limits", "ping-secs", K_INT, OFF(net.ping_secs), 1, 3600, 1},
    {"limits", "idle-secs", K_INT, OFF(net.idle_secs), 2, 36000, 1},
    {"limits", "plugin-crashes", K_INT, OFF(plugin_crashes), 0, 1000, 1},
    {"tls", "tls-cert", K_OPTPATH, OFF(tls_cert), 0, 0, 1},
    {"tls", "tls-key", K_OPTPATH, OFF(tls_key), 0, 0, 1},
    {"feed", "retention-days", K_I64, OFF(feed_max_age_ms), 0, 36500, 86400000},
    {"feed", "retention-bytes", K_U64, OFF(feed_max_bytes), 0, 1LL << 50, 1},
    {"store", "commit-flushes", K_INT, OFF(commit_flushes), 1, 2, 1},
    {"", "time-scale", K_DOUBLE, OFF(time_scale), 0, 0, 1},
    {"", "map-size-mib", K_I64, OFF(map_size_mib), 0, 1LL << 20, 1},
    {"", "map-max-mib", K_I64, OFF(map_max_mib), 0, 1LL << 20, 1},
};
#define NOPTS (sizeof opts / sizeof *opts)
static const char *const sections[] = {"server", "paths", "limits", "tls", "feed", "store"};

_Static_assert(NOPTS <= sizeof ((crm_config *)0)->line_of / sizeof(int), "line_of too small");

static void *field(crm_config *c, const opt *o) { return (char *)c + o->off; }
static const void *cfield(const crm_config *c, const opt *o) { return (const char *)c + o->off; }

static const opt *find(const char *name)
{
    for (size_t i = 0; i < NOPTS; i++)
        if (strcmp(opts[i].name, name) == 0)
            return &opts[i];
    return NULL;
}

/* ---- defaults ---- */

int crm_config_init(crm_config *c, crm_err *err)
{
    crm_store_opts so;
    memset(c, 0, sizeof *c);
    crm_net_opts_default(&c->net);
    crm_store_opts_default(&so);
    c->feed_max_age_ms = so.feed_max_age_ms;
    c->feed_max_bytes = so.feed_max_bytes;
    c->log_level = CRM_LOG_INFO;
    c->plugin_crashes = CRM_CRASHGUARD_DEFAULT_MAX;
    c->commit_flushes = 1;
    c->time_scale = 1.0;
    c->listen = strdup("127.0.0.1:8420");
    c->data = strdup("./data");
    c->schemas = strdup("./schemas");
    c->scripts = strdup("./scripts");
    c->plugins = strdup("./plugins");
    c->web = strdup("./web");
    c->tls_cert = strdup("");
    c->tls_key = strdup("");
    if (!c->listen || !c->data || !c->schemas || !c->scripts || !c->plugins || !c->web ||
        !c->tls_cert || !c->tls_key) {
        crm_config_free(c);
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    }
    return CRM_OK;
}

/* origin and host: lists of at most CRM_CONFIG_MAX_ORIGINS strings */
static int is_list(const opt *o) { return o->kind == K_ORIGIN || o->kind == K_HOST; }

static void clear_list(char **l)
{
    for (size_t i = 0; l[i]; i++) {
        free(l[i]);
        l[i] = NULL;
    }
}

void crm_config_clear_origins(crm_config *c)
{
    clear_list(c->origins);
}

void crm_config_free(crm_config *c)
{
    for (size_t i = 0; i < NOPTS; i++)
        if (opts[i].kind == K_LISTEN || opts[i].kind == K_PATH || opts[i].kind == K_OPTPATH) {
            char **s = field(c, &opts[i]);
            free(*s);
            *s = NULL;
        }
    clear_list(c->origins);
    clear_list(c->hosts);
    free(c->path);
    c->path = NULL;
}

/* ---- one value ---- */

static int plain_text(const char *v)
{
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

/* A whole number in [min, max]: digits only, no sign, no unit. */
static int whole(const char *v, long long min, long long max, long long *out)
{
    long long x = 0;
    if (!*v)
        return -1;
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9' || x > (max - (*p - '0')) / 10)
            return -1;
        x = x * 10 + (*p - '0');
    }
    if (x < min)
        return -1;
    *out = x;
    return 0;
}

static int parse_listen(const char *v, char *host, size_t cap, int *port)
{
    const char *colon = strrchr(v, ':');
    long long p;
    if (!colon || colon == v || (size_t)(colon - v) >= cap || whole(colon + 1, 0, 65535, &p) != 0)
        return -1;
    memcpy(host, v, (size_t)(colon - v));
    host[colon - v] = '\0';
    *port = (int)p;
    return 0;
}

/* Sets o from text v; why gets the reason on failure. */
static int set_opt(crm_config *c, const opt *o, const char *v, char *why, size_t cap)
{
    long long x;
    void *f = field(c, o);
    char *copy;
    if (!plain_text(v)) {
        snprintf(why, cap, "control characters are not allowed");
        return -1;
    }
    switch (o->kind) {
    case K_LISTEN: {
        char host[256];
        int port;
        if (parse_listen(v, host, sizeof host, &port) != 0) {
            snprintf(why, cap, "must be HOST:PORT with a port from 0 to 65535, not \"%s\"", v);
            return -1;
        }
        break;
    }
    case K_PATH:
    case K_OPTPATH:
        if (o->kind == K_PATH && !*v) {
            snprintf(why, cap, "must not be empty");
            return -1;
        }
        if (strlen(v) > MAX_PATH) {
            snprintf(why, cap, "longer than %d bytes", MAX_PATH);
            return -1;
        }
        break;
    case K_ORIGIN: {
        size_t n = 0;
        const char *rest = strncmp(v, "http://", 7) == 0    ? v + 7
                           : strncmp(v, "https://", 8) == 0 ? v + 8
                                                            : NULL;
        if (!rest || !*rest || strchr(rest, '/') || strchr(v, ' ') || strlen(v) >= 256) {
            snprintf(why, cap, "must be an origin like https://crm.example.com "
                               "(scheme and host, no path), not \"%s\"", v);
            return -1;
        }
        while (c->origins[n])
            n++;
        if (n == CRM_CONFIG_MAX_ORIGINS) {
            snprintf(why, cap, "at most %d origins", CRM_CONFIG_MAX_ORIGINS);
            return -1;
        }
        if (!(c->origins[n] = strdup(v))) {
            snprintf(why, cap, "out of memory");
            return -1;
        }
        return 0;
    }
    case K_HOST: {
        size_t n = 0, len = strlen(v);
        if (!len || len > 253 || strspn(v, "abcdefghijklmnopqrstuvwxyz"
                                           "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") != len ||
            v[0] == '.' || v[0] == '-') {
            snprintf(why, cap, "must be a host name like crm.example.com (no scheme, port "
                               "or path), not \"%s\"", v);
            return -1;
        }
        while (c->hosts[n])
            n++;
        if (n == CRM_CONFIG_MAX_ORIGINS) {
            snprintf(why, cap, "at most %d host names", CRM_CONFIG_MAX_ORIGINS);
            return -1;
        }
        if (!(c->hosts[n] = strdup(v))) {
            snprintf(why, cap, "out of memory");
            return -1;
        }
        return 0;
    }
    case K_LEVEL: {
        int l = crm_log_level_parse(v);
        if (l < 0) {
            snprintf(why, cap, "must be debug, info, warn or error, not \"%s\"", v);
            return -1;
        }
        *(int *)f = l;
        return 0;
    }
    case K_DOUBLE: {
        char *end;
        double d = strtod(v, &end);
        if (!*v || *end || !(d >= 0.001 && d <= 1e6)) {
            snprintf(why, cap, "must be a number from 0.001 to 1000000");
            return -1;
        }
        *(double *)f = d;
        return 0;
    }
    default:
        if (whole(v, o->min, o->max, &x) != 0) {
            snprintf(why, cap, "must be a whole number from %lld to %lld, not \"%s\"", o->min,
                     o->max, v);
            return -1;
        }
        if (o->kind == K_INT)
            *(int *)f = (int)x;
        else if (o->kind == K_SIZE)
            *(size_t *)f = (size_t)x;
        else if (o->kind == K_I64)
            *(int64_t *)f = (int64_t)x * o->scale;
        else
            *(uint64_t *)f = (uint64_t)x;
        return 0;
    }
    /* the string kinds */
    if (!(copy = strdup(v))) {
        snprintf(why, cap, "out of memory");
        return -1;
    }
    free(*(char **)f);
    *(char **)f = copy;
    return 0;
}

int crm_config_set(crm_config *c, const char *key, const char *value, crm_err *err)
{
    const opt *o = find(key);
    char why[200];
    if (!o)
        return crm_err_set(err, CRM_BAD_REQUEST, "unknown option %s", key);
    if (set_opt(c, o, value, why, sizeof why) != 0)
        return crm_err_set(err, CRM_BAD_REQUEST, "%s: %s", key, why);
    return CRM_OK;
}

/* ---- the file ---- */

typedef struct reader {
    FILE *f;
    int line;
    char why[200]; /* set when the reader itself refuses a line */
} reader;

static int known_section(const char *s, size_t n)
{
    for (size_t i = 0; i < sizeof sections / sizeof *sections; i++)
        if (strlen(sections[i]) == n && memcmp(sections[i], s, n) == 0)
            return 1;
    return 0;
}

/* inih's line source: one line per call, refusing what inih would get
 * wrong silently.  num is inih's buffer size (MAX_LINE + 3). */
static char *read_line(char *str, int num, void *stream)
{
    reader *r = stream;
    int ch, n = 0;
    while ((ch = getc(r->f)) != EOF) {
        if (ch == 0) {
            snprintf(r->why, sizeof r->why, "a NUL byte");
            r->line++;
            return NULL;
        }
        if (n >= num - 2 || n >= MAX_LINE + 1) {
            snprintf(r->why, sizeof r->why, "line longer than %d bytes", MAX_LINE);
            r->line++;
            return NULL;
        }
        str[n++] = (char)ch;
        if (ch == '\n')
            break;
    }
    if (n == 0)
        return NULL;
    str[n] = '\0';
    r->line++;
    /* sections: inih would accept any name (and cut long ones) */
    const char *p = str + strspn(str, " \t\r\n");
    if (r->line == 1 && (unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB &&
        (unsigned char)p[2] == 0xBF)
        p += 3;
    if (*p == '[') {
        const char *end = strchr(p, ']');
        if (!end) {
            snprintf(r->why, sizeof r->why, "a section line needs its closing ]");
            return NULL;
        }
        if (!known_section(p + 1, (size_t)(end - p - 1))) {
            snprintf(r->why, sizeof r->why,
                     "unknown section [%.*s] (the sections: server, paths, limits, tls, feed, store)",
                     (int)(end - p - 1 > 64 ? 64 : end - p - 1), p + 1);
            return NULL;
        }
    }
    return str;
}

typedef struct loader {
    crm_config *c;
    reader *r;
    char why[300];
} loader;

static int on_key(void *user, const char *section, const char *name, const char *value)
{
    loader *l = user;
    const opt *o = find(name);
    char why[200];
    if (!o) {
        snprintf(l->why, sizeof l->why, "unknown key \"%.64s\"%s%s%s", name, *section ? " in [" : "",
                 section, *section ? "]" : "");
        return 0;
    }
    if (!*o->section) {
        snprintf(l->why, sizeof l->why, "%s is a command-line flag only (--%s)", name, name);
        return 0;
    }
    if (strcmp(section, o->section) != 0) {
        snprintf(l->why, sizeof l->why, "%s belongs in [%s], %s%s%s", name, o->section,
                 *section ? "not in [" : "not before any section", section, *section ? "]" : "");
        return 0;
    }
    size_t i = (size_t)(o - opts), vlen = strlen(value);
    char unquoted[MAX_LINE + 1];
    if (vlen >= 2 && value[0] == '"' && value[vlen - 1] == '"') {
        /* "./my data" and "" read as what is between the quotes */
        memcpy(unquoted, value + 1, vlen - 2);
        unquoted[vlen - 2] = '\0';
        value = unquoted;
    }
    if (l->c->line_of[i] && !is_list(o)) {
        snprintf(l->why, sizeof l->why, "%s is set twice (first on line %d)", name,
                 l->c->line_of[i]);
        return 0;
    }
    if (set_opt(l->c, o, value, why, sizeof why) != 0) {
        snprintf(l->why, sizeof l->why, "%s: %s", name, why);
        return 0;
    }
    if (!l->c->line_of[i])
        l->c->line_of[i] = l->r->line;
    return 1;
}

int crm_config_load(crm_config *c, const char *path, crm_err *err)
{
    reader r = {0};
    loader l = {c, &r, ""};
    int rc;
    if (!(r.f = fopen(path, "r")))
        return crm_err_set(err, CRM_UNAVAILABLE, "%s: %s", path, strerror(errno));
    /* Debian builds inih with these as run-time settings (process-wide;
     * crmd reads no other INI) */
    ini_allow_multiline = false;   /* an indented line is a line, not a continuation */
    ini_allow_bom = true;
    ini_start_comment_prefixes = (char *)"#;";
    ini_allow_inline_comments = true; /* " # ..." or " ; ..." after a value */
    ini_inline_comment_prefixes = (char *)"#;";
    ini_use_stack = true;
    ini_max_line = MAX_LINE + 3;
    ini_stop_on_first_error = true;
    ini_allow_no_value = false;
    rc = ini_parse_stream(read_line, &r, on_key, &l);
    if (ferror(r.f)) {
        int e = errno;
        fclose(r.f);
        return crm_err_set(err, CRM_UNAVAILABLE, "%s: %s", path, strerror(e));
    }
    fclose(r.f);
    if (r.why[0])
        return crm_err_set(err, CRM_BAD_REQUEST, "%s:%d: %s", path, r.line, r.why);
    if (l.why[0])
        return crm_err_set(err, CRM_BAD_REQUEST, "%s:%d: %s", path, r.line, l.why);
    if (rc == -2)
        return crm_err_set(err, CRM_INTERNAL, "%s: out of memory", path);
    if (rc != 0)
        return crm_err_set(err, CRM_BAD_REQUEST,
                           "%s:%d: expected \"key = value\", a [section] or a # comment", path,
                           rc);
    free(c->path);
    if (!(c->path = strdup(path)))
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    return CRM_OK;
}

/* ---- checks across keys ---- */

int crm_config_listen(const crm_config *c, char *host, size_t cap, int *port)
{
    return parse_listen(c->listen, host, cap, port);
}

int crm_config_check(const crm_config *c, crm_err *err)
{
    char host[256];
    int port;
    if (crm_config_listen(c, host, sizeof host, &port) != 0)
        return crm_err_set(err, CRM_BAD_REQUEST, "listen: must be HOST:PORT");
    if (c->net.idle_secs <= c->net.ping_secs)
        return crm_err_set(err, CRM_BAD_REQUEST,
                           "idle-secs (%d) must be longer than ping-secs (%d)", c->net.idle_secs,
                           c->net.ping_secs);
    if (!*c->tls_cert != !*c->tls_key)
        return crm_err_set(err, CRM_BAD_REQUEST,
                           "tls-cert and tls-key go together: %s is empty",
                           *c->tls_cert ? "tls-key" : "tls-cert");
    if (*c->tls_cert && access(c->tls_cert, R_OK) != 0)
        return crm_err_set(err, CRM_BAD_REQUEST, "tls-cert %s: %s", c->tls_cert,
                           strerror(errno));
    if (*c->tls_key && access(c->tls_key, R_OK) != 0)
        return crm_err_set(err, CRM_BAD_REQUEST, "tls-key %s: %s", c->tls_key, strerror(errno));
    return CRM_OK;
}

/* ---- the command line ---- */

int crm_config_args(crm_config *c, int argc, char **argv, const char *default_path,
                    int *help, int *print, crm_err *err)
{
    enum { O_CONFIG = 1000, O_HELP, O_PRINT, O_KEY };
    struct option lo[NOPTS + 4];
    const char *file = NULL;
    int ch, flag_origins = 0, flag_hosts = 0;
    *help = *print = 0;
    for (size_t i = 0; i < NOPTS; i++)
        lo[i] = (struct option){opts[i].name, required_argument, NULL, O_KEY + (int)i};
    lo[NOPTS] = (struct option){"config", required_argument, NULL, O_CONFIG};
    lo[NOPTS + 1] = (struct option){"help", no_argument, NULL, O_HELP};
    lo[NOPTS + 2] = (struct option){"print-config", no_argument, NULL, O_PRINT};
    lo[NOPTS + 3] = (struct option){NULL, 0, NULL, 0};
    opterr = 0;
    /* pass 1: which file (flags are applied over it in pass 2) */
    optind = 0;
    while ((ch = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
        if (ch == O_CONFIG)
            file = optarg;
        else if (ch == O_HELP)
            *help = 1;
    }
    if (*help)
        return CRM_OK;
    if (file) {
        if (crm_config_load(c, file, err) != CRM_OK)
            return err ? err->code : CRM_BAD_REQUEST;
    } else if (default_path && access(default_path, F_OK) == 0) {
        if (crm_config_load(c, default_path, err) != CRM_OK)
            return err ? err->code : CRM_BAD_REQUEST;
    }
    /* pass 2: the flags */
    optind = 0;
    while ((ch = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
        char why[200];
        if (ch == ':')
            return crm_err_set(err, CRM_BAD_REQUEST, "%s needs a value", argv[optind - 1]);
        if (ch == '?')
            return crm_err_set(err, CRM_BAD_REQUEST, "unknown option %s", argv[optind - 1]);
        if (ch == O_PRINT)
            *print = 1;
        if (ch < O_KEY)
            continue;
        const opt *o = &opts[ch - O_KEY];
        if (o->kind == K_ORIGIN && !flag_origins++)
            clear_list(c->origins); /* flags replace the file's list */
        if (o->kind == K_HOST && !flag_hosts++)
            clear_list(c->hosts);
        if (set_opt(c, o, optarg, why, sizeof why) != 0)
            return crm_err_set(err, CRM_BAD_REQUEST, "--%s: %s", o->name, why);
    }
    if (optind < argc)
        return crm_err_set(err, CRM_BAD_REQUEST, "unexpected argument %s", argv[optind]);
    return crm_config_check(c, err);
}

/* ---- the table, for docs and tests ---- */

const char *crm_config_key(size_t i) { return i < NOPTS ? opts[i].name : NULL; }
const char *crm_config_section(size_t i) { return i < NOPTS ? opts[i].section : NULL; }

const char *crm_config_format(const crm_config *c, size_t i, char *buf, size_t cap)
{
    const opt *o;
    const void *f;
    if (i >= NOPTS || !cap)
        return cap ? (buf[0] = '\0', buf) : buf;
    o = &opts[i];
    f = cfield(c, o);
    buf[0] = '\0';
    switch (o->kind) {
    case K_LISTEN:
    case K_PATH:
    case K_OPTPATH: snprintf(buf, cap, "%s", *(char *const *)f ? *(char *const *)f : ""); break;
    case K_ORIGIN:
    case K_HOST: {
        char *const *l = (char *const *)f;
        size_t n = 0;
        for (size_t k = 0; l[k] && n < cap; k++)
            n += (size_t)snprintf(buf + n, cap - n, "%s%s", k ? " " : "", l[k]);
        break;
    }
    case K_LEVEL: snprintf(buf, cap, "%s", crm_log_level_name(*(const int *)f)); break;
    case K_INT: snprintf(buf, cap, "%d", *(const int *)f); break;
    case K_SIZE: snprintf(buf, cap, "%zu", *(const size_t *)f); break;
    case K_I64: snprintf(buf, cap, "%lld", (long long)(*(const int64_t *)f / o->scale)); break;
    case K_U64: snprintf(buf, cap, "%llu", (unsigned long long)*(const uint64_t *)f); break;
    case K_DOUBLE: snprintf(buf, cap, "%g", *(const double *)f); break;
    }
    return buf;
}

const char *crm_config_diff(const crm_config *a, const crm_config *b)
{
    char x[MAX_PATH * 2], y[MAX_PATH * 2];
    for (size_t i = 0; i < NOPTS; i++) {
        crm_config_format(a, i, x, sizeof x);
        crm_config_format(b, i, y, sizeof y);
        if (strcmp(x, y) != 0)
            return opts[i].name;
    }
    /* retention-days shows whole days; a finer age still differs */
    if (a->feed_max_age_ms != b->feed_max_age_ms)
        return "retention-days";
    return NULL;
}

void crm_config_write(const crm_config *c, FILE *f)
{
    char buf[MAX_PATH * 2];
    const char *section = "";
    fprintf(f, "# crmd serve --print-config: the options in effect (docs/config.md)\n");
    for (size_t i = 0; i < NOPTS; i++) {
        const opt *o = &opts[i];
        if (!*o->section)
            continue;
        if (strcmp(section, o->section) != 0) {
            fprintf(f, "%s[%s]\n", *section ? "\n" : "", o->section);
            section = o->section;
        }
        if (is_list(o)) {
            char *const *l = (char *const *)cfield(c, o);
            if (!l[0])
                fprintf(f, "# %s = %s\n", o->name,
                        o->kind == K_ORIGIN ? "(none: only pages of this server's own host)"
                                            : "(none: IP addresses and localhost only)");
            for (size_t k = 0; l[k]; k++)
                fprintf(f, "%s = %s\n", o->name, l[k]);
            continue;
        }
        fprintf(f, "%s = %s\n", o->name, crm_config_format(c, i, buf, sizeof buf));
    }
}
