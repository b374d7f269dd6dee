/*
 * main -- command line, signals, start-up and orderly shutdown.
 *
 * `crmd serve` loads the schemas (a bad file stops start-up with its name
 * and the problem), opens the store, serves the WebSocket API and HTTP
 * endpoints, reports readiness as one JSON log line (with the port) and runs
 * until SIGTERM or SIGINT, then finishes in-flight writes and exits 0.
 * After a commit fails with an I/O error it answers what is in flight with
 * UNAVAILABLE and exits 3 (crm_store_failed): restart it.
 * `crmd token create|revoke` manage tokens; the token is printed once, on
 * the last line of stdout, and stored only as a hash.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "bus.h"
#include "codec.h"
#include "demo.h"
#include "lua_host.h"
#include "net.h"
#include "plugin.h"
#include "schema.h"
#include "store.h"

#define CRMD_VERSION "0.1.0"

#define MAX_ORIGINS 16

typedef struct crmd_args {
    const char *data, *schemas, *scripts, *plugins, *listen, *web;
    double time_scale;                     /* the server clock's speed (tests) */
    size_t map_size, map_max;              /* 0: the store's defaults */
    uint64_t feed_max;                     /* 0: the store's default */
    crm_net_opts net;                      /* limits; defaults from crm_net_opts_default */
    const char *origins[MAX_ORIGINS + 1];  /* NULL-terminated */
} crmd_args;

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

/* One JSON object per line on stderr (design: structured logs); the JSON
 * codec does the escaping. */
static void log_line(const char *level, const char *msg, const char *detail)
{
    crm_value *m = crm_value_map();
    char *line = NULL;
    if (m && crm_map_set(m, "level", crm_value_cstr(level)) == 0 &&
        crm_map_set(m, "msg", crm_value_cstr(msg)) == 0 &&
        crm_map_set(m, "detail", crm_value_cstr(detail ? detail : "")) == 0)
        line = crm_json_encode(m, NULL);
    fprintf(stderr, "%s\n", line ? line : "{\"level\":\"error\",\"msg\":\"out of memory\"}");
    free(line);
    crm_value_free(m);
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
        char detail[64];
        snprintf(detail, sizeof detail, "%zu scripts", crm_lua_count(lua));
        log_line("info", "scripts reloaded", detail);
    } else {
        log_line("error", "reload refused; the running scripts stay", err.msg);
    }
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: crmd serve [--data DIR] [--schemas DIR] [--scripts DIR] [--plugins DIR]\n"
            "                  [--listen HOST:PORT] [--web DIR] [--origin URL]...\n"
            "                  [--max-message BYTES] [--max-depth N] [--auth-deadline-ms MS]\n"
            "                  [--rate PER_SEC] [--max-subs N] [--max-inflight N]\n"
            "                  [--send-queue BYTES] [--ping-secs S] [--idle-secs S]\n"
            "                  [--time-scale N]\n"
            "       crmd token create [--data DIR] [--schemas DIR] --role ROLE\n"
            "       crmd token revoke [--data DIR] [--schemas DIR] TOKEN\n"
            "       crmd demo [--data DIR] [--schemas DIR] [--scripts DIR] [--plugins DIR]\n"
            "                 [--contacts N] [--seed S] [--years Y] [--force] [--no-value]\n"
            "                 [--quiet]   (synthetic CRM data through the hooks; docs/features/demo.md)\n"
            "       crmd version\n"
            "defaults: --data ./data --schemas ./schemas --scripts ./scripts\n"
            "          --plugins ./plugins --listen 127.0.0.1:8420 --web ./web\n"
            "          --max-message 1048576 --max-depth 32 --auth-deadline-ms 10000\n"
            "          --rate 10000 --max-subs 64 --max-inflight 1024 --send-queue 8388608\n"
            "          --ping-secs 30 --idle-secs 75 --time-scale 1\n"
            "          (--time-scale: the server clock runs N times faster; for tests)\n"
            "          (--origin: browser origins allowed besides the server's own host)\n");
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

static int parse_serve(int argc, char **argv, crmd_args *a)
{
    static const struct option opts[] = {
        {"data", required_argument, 0, 'd'},    {"schemas", required_argument, 0, 's'},
        {"scripts", required_argument, 0, 'l'}, {"plugins", required_argument, 0, 'p'},
        {"listen", required_argument, 0, 'L'},  {"web", required_argument, 0, 'w'},
        {"origin", required_argument, 0, 'o'},  {"max-message", required_argument, 0, 'M'},
        {"max-depth", required_argument, 0, 'D'}, {"auth-deadline-ms", required_argument, 0, 'A'},
        {"rate", required_argument, 0, 'R'},    {"max-subs", required_argument, 0, 'S'},
        {"max-inflight", required_argument, 0, 'I'}, {"send-queue", required_argument, 0, 'Q'},
        {"ping-secs", required_argument, 0, 'P'}, {"idle-secs", required_argument, 0, 'T'},
        {"time-scale", required_argument, 0, 'X'},
        /* hidden, for the map-full test (R5): LMDB map size and growth
         * ceiling in MiB, feed retention by size (defaults:
         * crm_store_opts_default) */
        {"map-size-mib", required_argument, 0, 'm'}, {"map-max-mib", required_argument, 0, 'x'},
        {"feed-max-mib", required_argument, 0, 'F'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    int c, norigins = 0;
    long long x = 0;
    memset(a, 0, sizeof *a);
    a->data = "./data";
    a->schemas = "./schemas";
    a->scripts = "./scripts";
    a->plugins = "./plugins";
    a->listen = "127.0.0.1:8420";
    a->web = "./web";
    a->time_scale = 1.0;
    crm_net_opts_default(&a->net);
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        const char *name = NULL;
        switch (c) {
        case 'd': a->data = optarg; continue;
        case 's': a->schemas = optarg; continue;
        case 'l': a->scripts = optarg; continue;
        case 'p': a->plugins = optarg; continue;
        case 'L': a->listen = optarg; continue;
        case 'w': a->web = optarg; continue;
        case 'o':
            if (norigins == MAX_ORIGINS) {
                fprintf(stderr, "crmd: at most %d --origin flags\n", MAX_ORIGINS);
                return -1;
            }
            a->origins[norigins++] = optarg;
            continue;
        case 'M': name = "max-message"; x = num_arg(name, optarg, 1024, 64LL << 20); a->net.max_message = (size_t)x; break;
        case 'D': name = "max-depth"; x = num_arg(name, optarg, 2, 256); a->net.max_depth = (int)x; break;
        case 'A': name = "auth-deadline-ms"; x = num_arg(name, optarg, 100, 3600000); a->net.auth_deadline_ms = (int)x; break;
        case 'R': name = "rate"; x = num_arg(name, optarg, 1, 10000000); a->net.rate_per_sec = (int)x; break;
        case 'S': name = "max-subs"; x = num_arg(name, optarg, 1, 100000); a->net.max_subs = (int)x; break;
        case 'I': name = "max-inflight"; x = num_arg(name, optarg, 1, 1000000); a->net.max_inflight = (int)x; break;
        case 'Q': name = "send-queue"; x = num_arg(name, optarg, 65536, 1LL << 34); a->net.send_queue_max = (size_t)x; break;
        case 'P': name = "ping-secs"; x = num_arg(name, optarg, 1, 3600); a->net.ping_secs = (int)x; break;
        case 'T': name = "idle-secs"; x = num_arg(name, optarg, 2, 36000); a->net.idle_secs = (int)x; break;
        case 'm': name = "map-size-mib"; x = num_arg(name, optarg, 1, 1LL << 20); a->map_size = (size_t)x << 20; break;
        case 'x': name = "map-max-mib"; x = num_arg(name, optarg, 1, 1LL << 20); a->map_max = (size_t)x << 20; break;
        case 'F': name = "feed-max-mib"; x = num_arg(name, optarg, 1, 1LL << 20); a->feed_max = (uint64_t)x << 20; break;
        case 'X': {
            char *end;
            double v = strtod(optarg, &end);
            if (!*optarg || *end || !(v >= 0.001 && v <= 1e6)) {
                fprintf(stderr, "crmd: --time-scale must be a number from 0.001 to 1000000\n");
                return -1;
            }
            a->time_scale = v;
            continue;
        }
        case 'h': usage(stdout); exit(0);
        default: return -1;
        }
        if (x < 0)
            return -1;
    }
    a->net.origins = a->origins;
    if (a->net.idle_secs <= a->net.ping_secs) {
        fprintf(stderr, "crmd: --idle-secs must be longer than --ping-secs\n");
        return -1;
    }
    return optind <= argc ? 0 : -1;
}

/* "host:port" -> parts; port 0 lets the kernel choose (printed at ready). */
static int parse_listen(const char *listen, char *host, size_t cap, int *port)
{
    const char *colon = strrchr(listen, ':');
    char *end;
    long p;
    if (!colon || (size_t)(colon - listen) >= cap)
        return -1;
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    p = strtol(colon + 1, &end, 10);
    if (*end || p < 0 || p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}

static int cmd_serve(int argc, char **argv)
{
    crmd_args a;
    crm_schema *schema = NULL;
    crm_store *store = NULL;
    crm_bus *bus = NULL;
    crm_plugins *plugins = NULL;
    crm_lua *lua = NULL;
    crm_store_opts so;
    crm_bus_opts bo;
    server_clock clock = {1.0, 0, 0};
    crm_err err;
    struct sigaction sa;
    char detail[1024];
    int rc = 1;

    char host[256];
    int port;
    if (parse_serve(argc, argv, &a) != 0 || optind != argc ||
        parse_listen(a.listen, host, sizeof host, &port) != 0) {
        usage(stderr);
        return 2;
    }
    if (crm_schema_load_dir(a.schemas, &schema, &err) != CRM_OK) {
        log_line("error", "bad schema", err.msg);
        return 1;
    }
    crm_store_opts_default(&so);
    if (a.map_size)
        so.map_size = a.map_size;
    if (a.map_max)
        so.map_max = a.map_max;
    if (a.feed_max)
        so.feed_max_bytes = a.feed_max;
    if (a.time_scale != 1.0) {
        clock.scale = a.time_scale;
        so.clock_ms = scaled_clock;
        so.clock_ud = &clock;
    }
    clock.start_real_ms = clock.base_ms = real_ms();
    if (crm_store_open(a.data, schema, &so, &store, &err) != CRM_OK) {
        log_line("error", "store", err.msg);
        crm_schema_free(schema);
        return 1;
    }
    if (crm_store_last_commit_ms(store) > clock.base_ms)
        clock.base_ms = crm_store_last_commit_ms(store);
    crm_bus_opts_default(&bo);
    bo.time_scale = a.time_scale;
    if (crm_bus_new(store, &bo, &bus, &err) != CRM_OK) {
        log_line("error", "bus", err.msg);
        goto out;
    }
    /* plugins first, then scripts: hooks run in that order */
    if (crm_plugins_load(bus, a.plugins, &plugins, &err) != CRM_OK) {
        log_line("error", "plugin refused", err.msg);
        goto out;
    }
    if (crm_lua_open(bus, a.scripts, NULL, &lua, &err) != CRM_OK) {
        log_line("error", "script refused", err.msg);
        goto out;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    a.net.host = host;
    a.net.port = port;
    a.net.web_dir = a.web;
    a.net.bus = bus;
    a.net.reload_flag = &reload_signal;
    a.net.on_reload = on_reload;
    a.net.reload_ud = lua;
    if (crm_net_create(store, schema, &a.net, &the_net, &err) != CRM_OK) {
        log_line("error", "listen", err.msg);
        goto out;
    }
    snprintf(detail, sizeof detail,
             "crmd %s listening on %s:%d (ws://%s:%d/ws): %zu collections, %zu plugins, "
             "%zu scripts, data %s, last seq %llu",
             CRMD_VERSION, host, crm_net_port(the_net), host, crm_net_port(the_net),
             schema->ncolls, crm_plugins_count(plugins), crm_lua_count(lua), a.data,
             (unsigned long long)crm_store_last_seq(store));
    log_line("info", "ready", detail);
    crm_net_run(the_net, &stop_signal);
    if (crm_store_failed(store, &err) != CRM_OK) {
        /* exit code 3: restart me (the store on disk is the truth) */
        log_line("error", "stopped: store failed", err.msg);
        rc = 3;
    } else {
        log_line("info", "stopped", stop_signal == SIGINT ? "SIGINT" : "SIGTERM");
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
    return rc;
}

static int cmd_token(int argc, char **argv)
{
    static const struct option opts[] = {{"data", required_argument, 0, 'd'},
                                         {"schemas", required_argument, 0, 's'},
                                         {"role", required_argument, 0, 'r'},
                                         {0, 0, 0, 0}};
    const char *data = "./data", *schemas = "./schemas", *role = NULL, *sub;
    crm_schema *schema = NULL;
    crm_store *store = NULL;
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
        else
            return 2;
    }
    if (crm_schema_load_dir(schemas, &schema, &err) != CRM_OK) {
        fprintf(stderr, "crmd: %s\n", err.msg);
        return 1;
    }
    if (crm_store_open(data, schema, NULL, &store, &err) != CRM_OK) {
        fprintf(stderr, "crmd: %s\n", err.msg);
        crm_schema_free(schema);
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
           "(%llu workflow steps), %llu companies, %llu agents, %llu segments in %s\n"
           "crmd demo: %.1f s (records %.1f s, hooks catching up %.1f s, value %.1f s); "
           "%llu hook runs, %llu timer runs, %llu refused, %llu hook failures, "
           "%llu dead letters\n",
           (unsigned long long)st.contacts, (unsigned long long)st.orders,
           (unsigned long long)st.interactions, (unsigned long long)st.tickets,
           (unsigned long long)st.ticket_updates, (unsigned long long)st.companies,
           (unsigned long long)st.agents, (unsigned long long)st.segments, o.data,
           st.seconds_total, st.seconds_records, st.seconds_drain, st.seconds_value,
           (unsigned long long)st.hook_runs, (unsigned long long)st.timer_runs,
           (unsigned long long)st.refused,
           (unsigned long long)(st.hook_failures + st.timer_failures),
           (unsigned long long)st.dead_letters);
    return 0;
}

int main(int argc, char **argv)
{
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
    if (strcmp(argv[1], "version") == 0) {
        printf("crmd %s\n", CRMD_VERSION);
        return 0;
    }
    usage(stderr);
    return 2;
}
