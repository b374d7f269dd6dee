/*
 * main -- command line, signals, start-up and orderly shutdown.
 *
 * `crmd serve` loads the schemas (a bad file stops start-up with its name
 * and the problem), opens the store, serves the WebSocket API and HTTP
 * endpoints, reports readiness as one JSON log line (with the port) and runs
 * until SIGTERM or SIGINT, then finishes in-flight writes and exits 0.
 * `crmd token create|revoke` manage tokens; the token is printed once, on
 * the last line of stdout, and stored only as a hash.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "codec.h"
#include "net.h"
#include "schema.h"
#include "store.h"

#define CRMD_VERSION "0.1.0"

typedef struct crmd_args {
    const char *data, *schemas, *scripts, *plugins, *listen;
} crmd_args;

static volatile int stop_signal;
static crm_net *the_net;

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

static void usage(FILE *f)
{
    fprintf(f,
            "usage: crmd serve [--data DIR] [--schemas DIR] [--scripts DIR] [--plugins DIR]\n"
            "                  [--listen HOST:PORT]\n"
            "       crmd token create [--data DIR] [--schemas DIR] --role ROLE\n"
            "       crmd token revoke [--data DIR] [--schemas DIR] TOKEN\n"
            "       crmd version\n"
            "defaults: --data ./data --schemas ./schemas --scripts ./scripts\n"
            "          --plugins ./plugins --listen 127.0.0.1:8420\n");
}

static int parse_serve(int argc, char **argv, crmd_args *a)
{
    static const struct option opts[] = {
        {"data", required_argument, 0, 'd'},    {"schemas", required_argument, 0, 's'},
        {"scripts", required_argument, 0, 'l'}, {"plugins", required_argument, 0, 'p'},
        {"listen", required_argument, 0, 'L'},  {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int c;
    a->data = "./data";
    a->schemas = "./schemas";
    a->scripts = "./scripts";
    a->plugins = "./plugins";
    a->listen = "127.0.0.1:8420";
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd': a->data = optarg; break;
        case 's': a->schemas = optarg; break;
        case 'l': a->scripts = optarg; break;
        case 'p': a->plugins = optarg; break;
        case 'L': a->listen = optarg; break;
        case 'h': usage(stdout); exit(0);
        default: return -1;
        }
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
    crm_err err;
    struct sigaction sa;
    char detail[1024];

    char host[256];
    int port;
    crm_net_opts no;
    if (parse_serve(argc, argv, &a) != 0 || optind != argc ||
        parse_listen(a.listen, host, sizeof host, &port) != 0) {
        usage(stderr);
        return 2;
    }
    if (crm_schema_load_dir(a.schemas, &schema, &err) != CRM_OK) {
        log_line("error", "bad schema", err.msg);
        return 1;
    }
    if (crm_store_open(a.data, schema, NULL, &store, &err) != CRM_OK) {
        log_line("error", "store", err.msg);
        crm_schema_free(schema);
        return 1;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    crm_net_opts_default(&no);
    no.host = host;
    no.port = port;
    if (crm_net_create(store, schema, &no, &the_net, &err) != CRM_OK) {
        log_line("error", "listen", err.msg);
        crm_store_close(store);
        crm_schema_free(schema);
        return 1;
    }
    snprintf(detail, sizeof detail,
             "crmd %s listening on %s:%d (ws://%s:%d/ws): %zu collections, data %s, last seq %llu",
             CRMD_VERSION, host, crm_net_port(the_net), host, crm_net_port(the_net),
             schema->ncolls, a.data, (unsigned long long)crm_store_last_seq(store));
    log_line("info", "ready", detail);
    crm_net_run(the_net, &stop_signal);
    log_line("info", "stopped", stop_signal == SIGINT ? "SIGINT" : "SIGTERM");
    crm_net_destroy(the_net);
    the_net = NULL;
    crm_store_close(store);
    crm_schema_free(schema);
    return 0;
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

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "serve") == 0)
        return cmd_serve(argc - 1, argv + 1);
    if (strcmp(argv[1], "token") == 0)
        return cmd_token(argc - 1, argv + 1);
    if (strcmp(argv[1], "version") == 0) {
        printf("crmd %s\n", CRMD_VERSION);
        return 0;
    }
    usage(stderr);
    return 2;
}
