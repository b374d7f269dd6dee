/*
 * main -- command line, signals, start-up and orderly shutdown.
 *
 * Today `crmd serve` loads the schemas (a bad file stops start-up with its
 * name and the problem), opens the store, reports readiness as one JSON log
 * line and runs until SIGTERM or SIGINT.  The WebSocket API (issue 3) plugs
 * into this loop.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "schema.h"
#include "store.h"

#define CRMD_VERSION "0.1.0"

typedef struct crmd_args {
    const char *data, *schemas, *scripts, *plugins, *listen;
} crmd_args;

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig)
{
    stop_signal = sig;
}

/* One JSON object per line on stderr (design: structured logs). */
static void log_line(const char *level, const char *msg, const char *detail)
{
    char esc[1024];
    size_t o = 0;
    for (const char *p = detail ? detail : ""; *p && o + 7 < sizeof esc; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            esc[o++] = '\\';
            esc[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(esc + o, sizeof esc - o, "\\u%04x", c);
        } else {
            esc[o++] = (char)c;
        }
    }
    esc[o] = '\0';
    fprintf(stderr, "{\"level\":\"%s\",\"msg\":\"%s\",\"detail\":\"%s\"}\n", level, msg, esc);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: crmd serve [--data DIR] [--schemas DIR] [--scripts DIR] [--plugins DIR]\n"
            "                  [--listen HOST:PORT]\n"
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
    return optind == argc ? 0 : -1;
}

static int cmd_serve(int argc, char **argv)
{
    crmd_args a;
    crm_schema *schema = NULL;
    crm_store *store = NULL;
    crm_err err;
    struct sigaction sa;
    char detail[512];

    if (parse_serve(argc, argv, &a) != 0) {
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
    snprintf(detail, sizeof detail, "crmd %s: %zu collections, data %s, last seq %llu",
             CRMD_VERSION, schema->ncolls, a.data, (unsigned long long)crm_store_last_seq(store));
    log_line("info", "ready", detail);
    while (!stop_signal)
        pause();
    log_line("info", "stopping", stop_signal == SIGINT ? "SIGINT" : "SIGTERM");
    crm_store_close(store);
    crm_schema_free(schema);
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
    if (strcmp(argv[1], "version") == 0) {
        printf("crmd %s\n", CRMD_VERSION);
        return 0;
    }
    usage(stderr);
    return 2;
}
