/*
 * main -- command line, signals, start-up and orderly shutdown.
 *
 * `crmd serve` takes its options from the built-in defaults, a config file
 * and the flags, in that order (kernel/config.h, docs/config.md), loads the
 * schemas (a bad file stops start-up with its name and the problem), opens
 * the store, serves the WebSocket API and HTTP
 * endpoints, reports readiness as one JSON log line (with the port; every
 * log line is JSON, kernel/log.h) and runs
 * until SIGTERM or SIGINT, then finishes in-flight writes and exits 0.
 * After a commit fails with an I/O error it answers what is in flight with
 * UNAVAILABLE and exits 3 (crm_store_failed): restart it.
 * `crmd token create|revoke` manage tokens; the token is printed once, on
 * the last line of stdout, and stored only as a hash.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "auth.h"
#include "bus.h"
#include "cli_data.h"
#include "codec.h"
#include "config.h"
#include "crashguard.h"
#include "datalock.h"
#include "demo.h"
#include "log.h"
#include "lua_host.h"
#include "net.h"
#include "plugin.h"
#include "schema.h"
#include "store.h"

#define CRMD_VERSION "0.1.0"

static volatile int stop_signal, reload_signal;
static crm_net *the_net;

/* SIGHUP reloads scripts: the loop does it (crm_net_opts.on_reload). */
static void on_hup(int sig)
{
    (void)sig;
    reload_signal = 1;
    if (the_net)
        crm_net_wake(the_net);
}

static void on_stop(int sig)
{
    stop_signal = sig;
    if (the_net)
        crm_net_wake(the_net);
}

/* The server clock: real time, or (--time-scale N, for tests of SLA-style
 * timers) time running N times faster.  It starts from the later of now
 * and the last commit, so a fast clock never runs backwards across a
 * restart and timers due "while down" fire as they should. */
typedef struct server_clock {
    double scale;
    int64_t base_ms, start_real_ms;
} server_clock;

static int64_t real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t scaled_clock(void *ud)
{
    server_clock *c = ud;
    return c->base_ms + (int64_t)((double)(real_ms() - c->start_real_ms) * c->scale);
}

static void on_reload(void *ud)
{
    crm_lua *lua = ud;
    crm_err err;
    if (crm_lua_reload(lua, &err) == CRM_OK) {
        crm_log(CRM_LOG_INFO, "reload", "scripts reloaded: %zu scripts", crm_lua_count(lua));
    } else {
        crm_log(CRM_LOG_ERROR, "reload_refused", "reload refused; the running scripts stay: %s",
                err.msg);
    }
}

/* The defaults come from the option table (kernel/config.c), so this text
 * cannot disagree with the file format or docs/config.md. */
static void usage(FILE *f)
{
    crm_config d;
    char buf[256];
    size_t col = 0;
    fprintf(f,
            "usage: crmd serve [--config FILE] [--print-config] [--listen HOST:PORT]\n"
            "                  [--data DIR] [--schemas DIR] [--scripts DIR] [--plugins DIR]\n"
            "                  [--web DIR] [--origin URL]... [--log-level LEVEL]\n"
            "                  [--tls-cert PEM --tls-key PEM]\n"
            "                  [--max-message BYTES] [--max-depth N] [--auth-deadline-ms MS]\n"
            "                  [--rate PER_SEC] [--max-subs N] [--max-inflight N]\n"
            "                  [--send-queue BYTES] [--ping-secs S] [--idle-secs S]\n"
            "                  [--retention-days D] [--retention-bytes B] [--time-scale N]\n"
            "       crmd token create [--config FILE] [--data DIR] [--schemas DIR] --role ROLE\n"
            "       crmd token revoke [--config FILE] [--data DIR] [--schemas DIR] TOKEN\n"
            "       crmd audit verify [--data DIR]\n"
            "       crmd demo [--data DIR] [--schemas DIR] [--scripts DIR] [--plugins DIR]\n"
            "                 [--contacts N] [--seed S] [--years Y] [--force] [--no-value]\n"
            "                 [--quiet]   (synthetic CRM data through the hooks; docs/features/demo.md)\n"
            "       crmd version\n"
            "serve and token read " CRM_CONFIG_DEFAULT_PATH " when it exists and no --config\n"
            "is given; a flag wins over the file (docs/config.md).  Defaults:\n");
    if (crm_config_init(&d, NULL) != CRM_OK)
        return;
    for (size_t i = 0; crm_config_key(i); i++) {
        int n;
        crm_config_format(&d, i, buf, sizeof buf);
        n = fprintf(f, "  --%s %s", crm_config_key(i),
                    *buf                                    ? buf
                    : strcmp(crm_config_key(i), "origin") == 0 ? "(none)"
                                                            : "\"\"");
        col += (size_t)n;
        if (col > 60 || !crm_config_key(i + 1)) {
            fputc('\n', f);
            col = 0;
        }
    }
    fprintf(f, "  (--origin: browser origins allowed besides the server's own host, repeatable;\n"
               "   --tls-cert/--tls-key: serve wss:// and https://; --time-scale: the server\n"
               "   clock runs N times faster, for tests)\n");
    crm_config_free(&d);
    crm_cli_data_usage(f);
}

/* A whole number in [min, max], or -1 after a message. */
static long long num_arg(const char *flag, const char *v, long long min, long long max)
{
    char *end;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || x < min || x > max) {
        fprintf(stderr, "crmd: --%s must be a whole number from %lld to %lld\n", flag, min, max);
        return -1;
    }
    return x;
}

/* The ready line: tests and benches find the port by its text "listening
 * on HOST:PORT", so that wording stays; the same facts follow as fields. */
static void log_ready(const crm_config *cfg, const char *host, int port, int tls,
                      const crm_schema *schema, crm_plugins *plugins, crm_lua *lua,
                      crm_store *store)
{
    char msg[1024], url[320];
    crm_value *f = crm_value_map();
    snprintf(url, sizeof url, "%s://%s:%d/ws", tls ? "wss" : "ws", host, port);
    snprintf(msg, sizeof msg,
             "crmd %s listening on %s:%d (%s): %zu collections, %zu plugins, %zu scripts, "
             "data %s, last seq %llu",
             CRMD_VERSION, host, port, url, schema->ncolls, crm_plugins_count(plugins),
             crm_lua_count(lua), cfg->data, (unsigned long long)crm_store_last_seq(store));
    if (f && (crm_map_set(f, "msg", crm_value_cstr(msg)) != 0 ||
              crm_map_set(f, "version", crm_value_cstr(CRMD_VERSION)) != 0 ||
              crm_map_set(f, "host", crm_value_cstr(host)) != 0 ||
              crm_map_set(f, "port", crm_value_int(port)) != 0 ||
              crm_map_set(f, "url", crm_value_cstr(url)) != 0 ||
              crm_map_set(f, "tls", crm_value_bool(tls)) != 0 ||
              crm_map_set(f, "config", cfg->path ? crm_value_cstr(cfg->path) : crm_value_nil()) != 0 ||
              crm_map_set(f, "collections", crm_value_int((int64_t)schema->ncolls)) != 0 ||
              crm_map_set(f, "plugins", crm_value_int((int64_t)crm_plugins_count(plugins))) != 0 ||
              crm_map_set(f, "scripts", crm_value_int((int64_t)crm_lua_count(lua))) != 0 ||
              crm_map_set(f, "data", crm_value_cstr(cfg->data)) != 0 ||
              crm_map_set(f, "last_seq", crm_value_int((int64_t)crm_store_last_seq(store))) != 0)) {
        crm_value_free(f);
        f = NULL;
    }
    if (!f) { /* out of memory: the ready line must still say the port */
        crm_log(CRM_LOG_INFO, "ready", "%s", msg);
        return;
    }
    crm_log_fields(CRM_LOG_INFO, "ready", f);
}

static int cmd_serve(int argc, char **argv)
{
    crm_config cfg;
    crm_net_opts net;
    crm_schema *schema = NULL;
    crm_store *store = NULL;
    crm_bus *bus = NULL;
    crm_plugins *plugins = NULL;
    crm_lua *lua = NULL;
    crm_datalock *lock = NULL;
    crm_store_opts so;
    crm_bus_opts bo;
    server_clock clock = {1.0, 0, 0};
    crm_err err;
    struct sigaction sa;
    int rc = 1, help, print;
    char host[256];
    int port;

    if (crm_config_init(&cfg, &err) != CRM_OK) {
        fprintf(stderr, "crmd: %s\n", err.msg);
        return 1;
    }
    /* the config file, then the flags over it (kernel/config.h) */
    if (crm_config_args(&cfg, argc, argv, CRM_CONFIG_DEFAULT_PATH, &help, &print, &err) !=
        CRM_OK) {
        fprintf(stderr, "crmd: %s\n(crmd serve --help lists the options; docs/config.md)\n",
                err.msg);
        crm_config_free(&cfg);
        return 2;
    }
    if (help || print) {
        if (help)
            usage(stdout);
        else
            crm_config_write(&cfg, stdout);
        crm_config_free(&cfg);
        return 0;
    }
    crm_log_set_level(cfg.log_level);
    crm_config_listen(&cfg, host, sizeof host, &port);
    if (crm_schema_load_dir(cfg.schemas, &schema, &err) != CRM_OK) {
        crm_log(CRM_LOG_ERROR, "bad_schema", "%s", err.msg);
        crm_config_free(&cfg);
        return 1;
    }
    crm_store_opts_default(&so);
    so.feed_max_age_ms = cfg.feed_max_age_ms;
    so.feed_max_bytes = cfg.feed_max_bytes;
    so.meta_async = cfg.commit_flushes == 1; /* the writer acks after the next flush */
    if (cfg.map_size_mib) /* test flags (R5): a tiny map and its ceiling */
        so.map_size = (size_t)cfg.map_size_mib << 20;
    if (cfg.map_max_mib)
        so.map_max = (size_t)cfg.map_max_mib << 20;
    if (cfg.time_scale != 1.0) {
        clock.scale = cfg.time_scale;
        so.clock_ms = scaled_clock;
        so.clock_ud = &clock;
    }
    clock.start_real_ms = clock.base_ms = real_ms();
    /* one writer per data folder: refuses while import or restore has it */
    if (crm_datalock_take(cfg.data, "crmd serve", &lock, &err) != CRM_OK ||
        crm_store_open(cfg.data, schema, &so, &store, &err) != CRM_OK) {
        crm_log(CRM_LOG_ERROR, "store", "%s", err.msg);
        goto out;
    }
    if (crm_store_last_commit_ms(store) > clock.base_ms)
        clock.base_ms = crm_store_last_commit_ms(store);
    crm_bus_opts_default(&bo);
    bo.time_scale = cfg.time_scale;
    if (crm_bus_new(store, &bo, &bus, &err) != CRM_OK) {
        crm_log(CRM_LOG_ERROR, "bus", "%s", err.msg);
        goto out;
    }
    /* a plugin that crashes the server is named in DATA/plugin-crashes, and
     * left out after plugin-crashes crashes (R19) */
    if (crm_crashguard_install(cfg.data, cfg.plugin_crashes, &err) != CRM_OK) {
        crm_log(CRM_LOG_ERROR, "crashguard", "%s", err.msg);
        goto out;
    }
    /* plugins first, then scripts: hooks run in that order */
    if (crm_plugins_load(bus, cfg.plugins, &plugins, &err) != CRM_OK) {
        crm_log(CRM_LOG_ERROR, "plugin_refused", "plugin refused: %s", err.msg);
        goto out;
    }
    if (crm_lua_open(bus, cfg.scripts, NULL, &lua, &err) != CRM_OK) {
        crm_log(CRM_LOG_ERROR, "script_refused", "script refused: %s", err.msg);
        goto out;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    net = cfg.net;
    net.host = host;
    net.port = port;
    net.origins = (const char *const *)cfg.origins;
    net.hosts = (const char *const *)cfg.hosts;
    net.web_dir = *cfg.web ? cfg.web : NULL;
    net.tls_cert = *cfg.tls_cert ? cfg.tls_cert : NULL;
    net.tls_key = *cfg.tls_key ? cfg.tls_key : NULL;
    net.bus = bus;
    net.plugins = plugins;
    net.reload_flag = &reload_signal;
    net.on_reload = on_reload;
    net.reload_ud = lua;
    if (crm_net_create(store, schema, &net, &the_net, &err) != CRM_OK) {
        crm_log(CRM_LOG_ERROR, "listen", "%s", err.msg);
        goto out;
    }
    log_ready(&cfg, host, crm_net_port(the_net), net.tls_cert != NULL, schema, plugins, lua,
              store);
    crm_net_run(the_net, &stop_signal);
    if (crm_store_failed(store, &err) != CRM_OK) {
        /* exit code 3: restart me (the store on disk is the truth) */
        crm_log(CRM_LOG_ERROR, "stopped", "store failed: %s", err.msg);
        rc = 3;
    } else {
        crm_log(CRM_LOG_INFO, "stopped", "%s", stop_signal == SIGINT ? "SIGINT" : "SIGTERM");
        rc = 0;
    }
    crm_net_destroy(the_net);
    the_net = NULL;
out:
    crm_lua_close(lua);
    crm_plugins_unload(plugins);
    crm_bus_free(bus);
    crm_store_close(store);
    crm_schema_free(schema);
    crm_datalock_release(lock);
    crm_config_free(&cfg);
    return rc;
}

/* For subcommands other than serve that open the store: the config file
 * (path, else ./crmd.conf when it exists) gives the defaults of data,
 * schemas and the feed's retention, so a tool writes to the store the
 * server uses and never trims the feed shorter than it does.  0, or 1
 * after a message. */
static int tool_config(const char *path, crm_config *cfg)
{
    crm_err err;
    if (crm_config_init(cfg, &err) != CRM_OK) {
        fprintf(stderr, "crmd: %s\n", err.msg);
        return 1;
    }
    if (!path && access(CRM_CONFIG_DEFAULT_PATH, F_OK) == 0)
        path = CRM_CONFIG_DEFAULT_PATH;
    if (path && (crm_config_load(cfg, path, &err) != CRM_OK || crm_config_check(cfg, &err) != CRM_OK)) {
        fprintf(stderr, "crmd: %s\n", err.msg);
        crm_config_free(cfg);
        return 1;
    }
    return 0;
}

static int cmd_token(int argc, char **argv)
{
    static const struct option opts[] = {{"data", required_argument, 0, 'd'},
                                         {"schemas", required_argument, 0, 's'},
                                         {"role", required_argument, 0, 'r'},
                                         {"config", required_argument, 0, 'c'},
                                         {0, 0, 0, 0}};
    const char *data = NULL, *schemas = NULL, *role = NULL, *config = NULL, *sub;
    crm_schema *schema = NULL;
    crm_store *store = NULL;
    crm_store_opts so;
    crm_config cfg;
    crm_err err;
    int c, rc = 1;
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    sub = argv[1];
    optind = 1;
    while ((c = getopt_long(argc - 1, argv + 1, "", opts, NULL)) != -1) {
        if (c == 'd')
            data = optarg;
        else if (c == 's')
            schemas = optarg;
        else if (c == 'r')
            role = optarg;
        else if (c == 'c')
            config = optarg;
        else
            return 2;
    }
    if (tool_config(config, &cfg) != 0)
        return 1;
    if (!data)
        data = cfg.data;
    if (!schemas)
        schemas = cfg.schemas;
    crm_store_opts_default(&so);
    so.feed_max_age_ms = cfg.feed_max_age_ms;
    so.feed_max_bytes = cfg.feed_max_bytes;
    if (crm_schema_load_dir(schemas, &schema, &err) != CRM_OK) {
        fprintf(stderr, "crmd: %s\n", err.msg);
        crm_config_free(&cfg);
        return 1;
    }
    if (crm_store_open(data, schema, &so, &store, &err) != CRM_OK) {
        fprintf(stderr, "crmd: %s\n", err.msg);
        crm_schema_free(schema);
        crm_config_free(&cfg);
        return 1;
    }
    if (strcmp(sub, "create") == 0 && role && optind == argc - 1) {
        char *token;
        if (crm_token_create(store, schema, role, &token, &err) == CRM_OK) {
            uint8_t hash[CRM_TOKEN_HASH_LEN];
            char id[13];
            crm_token_hash(token, strlen(token), hash);
            crm_token_id(hash, id);
            printf("token %s for role %s (shown once; only its hash is kept)\n%s\n", id, role, token);
            free(token);
            rc = 0;
        } else {
            fprintf(stderr, "crmd: %s\n", err.msg);
        }
    } else if (strcmp(sub, "revoke") == 0 && optind == argc - 2) {
        if (crm_token_revoke(store, argv[optind + 1], &err) == CRM_OK) {
            printf("revoked\n");
            rc = 0;
        } else {
            fprintf(stderr, "crmd: %s\n", err.msg);
        }
    } else {
        usage(stderr);
        rc = 2;
    }
    crm_store_close(store);
    crm_schema_free(schema);
    crm_config_free(&cfg);
    return rc;
}

/* `crmd demo`: flags -> crm_demo_run (kernel/demo.c), then a summary. */
static int cmd_demo(int argc, char **argv)
{
    static const struct option opts[] = {
        {"data", required_argument, 0, 'd'},     {"schemas", required_argument, 0, 's'},
        {"scripts", required_argument, 0, 'l'},  {"plugins", required_argument, 0, 'p'},
        {"contacts", required_argument, 0, 'c'}, {"seed", required_argument, 0, 'S'},
        {"years", required_argument, 0, 'y'},    {"force", no_argument, 0, 'f'},
        {"no-value", no_argument, 0, 'n'},       {"quiet", no_argument, 0, 'q'},
        {0, 0, 0, 0}};
    crm_demo_opts o;
    crm_demo_stats st;
    crm_err err;
    long long x;
    int c;
    crm_demo_opts_default(&o);
    o.stats = &st;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd': o.data = optarg; break;
        case 's': o.schemas = optarg; break;
        case 'l': o.scripts = optarg; break;
        case 'p': o.plugins = optarg; break;
        case 'f': o.force = 1; break;
        case 'n': o.value_recompute = 0; break;
        case 'q': o.progress = 0; break;
        case 'c':
            if ((x = num_arg("contacts", optarg, 1, 100000000)) < 0)
                return 2;
            o.contacts = (long)x;
            break;
        case 'S':
            if ((x = num_arg("seed", optarg, 0, 1LL << 62)) < 0)
                return 2;
            o.seed = (uint64_t)x;
            break;
        case 'y':
            if ((x = num_arg("years", optarg, 1, 20)) < 0)
                return 2;
            o.years = (int)x;
            break;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (crm_demo_run(&o, &err) != CRM_OK) {
        fprintf(stderr, "crmd demo: %s\n", err.msg);
        return 1;
    }
    printf("crmd demo: %llu contacts, %llu orders, %llu interactions, %llu tickets "
           "(%llu workflow steps), %llu companies, %llu agents, %llu segments, "
           "%llu campaigns, %llu deals, %llu NPS surveys in %s\n"
           "crmd demo: %.1f s (records %.1f s, hooks catching up %.1f s, value %.1f s); "
           "%llu hook runs, %llu timer runs, %llu refused, %llu hook failures, "
           "%llu dead letters\n",
           (unsigned long long)st.contacts, (unsigned long long)st.orders,
           (unsigned long long)st.interactions, (unsigned long long)st.tickets,
           (unsigned long long)st.ticket_updates, (unsigned long long)st.companies,
           (unsigned long long)st.agents, (unsigned long long)st.segments,
           (unsigned long long)st.campaigns, (unsigned long long)st.deals,
           (unsigned long long)st.surveys, o.data,
           st.seconds_total, st.seconds_records, st.seconds_drain, st.seconds_value,
           (unsigned long long)st.hook_runs, (unsigned long long)st.timer_runs,
           (unsigned long long)st.refused,
           (unsigned long long)(st.hook_failures + st.timer_failures),
           (unsigned long long)st.dead_letters);
    return 0;
}

int main(int argc, char **argv)
{
    /* LMDB allocates 3 MiB (a dirty-page list and a free-page list) for each
     * nested transaction, and the writer opens one for every hook run that
     * writes.  With glibc's adaptive defaults each of those blocks went to
     * the kernel and back (heap growth, trim, page faults): about a sixth of
     * the writer's time under the peer benchmark's hooks.  Blocks this size
     * stay in the heap; up to 64 MiB of free heap is kept rather than trimmed. */
    mallopt(M_MMAP_THRESHOLD, 16 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "serve") == 0)
        return cmd_serve(argc - 1, argv + 1);
    if (strcmp(argv[1], "demo") == 0)
        return cmd_demo(argc - 1, argv + 1);
    if (strcmp(argv[1], "token") == 0)
        return cmd_token(argc - 1, argv + 1);
    if (crm_cli_data_is(argv[1]))
        return crm_cli_data_run(argc - 1, argv + 1);
    if (strcmp(argv[1], "audit") == 0) /* kernel/audit_cli.c */
        return crm_audit_cli(argc - 1, argv + 1);
    if (strcmp(argv[1], "version") == 0) {
        printf("crmd %s\n", CRMD_VERSION);
        return 0;
    }
    usage(stderr);
    return 2;
}
