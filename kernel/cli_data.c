/*
 * cli_data -- flags and output of `crmd backup|restore|import|export`
 * (see cli_data.h; the guide is docs/operations.md).
 */
#include "cli_data.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "backup.h"
#include "transfer.h"

void crm_cli_data_usage(FILE *f)
{
    fprintf(f,
            "       crmd backup PATH [--data DIR]      (a compacted copy; safe while serving)\n"
            "       crmd restore BACKUP [--data DIR] [--schemas DIR]   (server stopped)\n"
            "       crmd import COLLECTION FILE|- [--format csv|ndjson] [--key FIELD]\n"
            "                 [--batch N] [--max-line BYTES] [--max-record BYTES]\n"
            "                 [--max-fields N] [--max-bad N] [--quiet]\n"
            "                 [--data DIR] [--schemas DIR] [--scripts DIR] [--plugins DIR]\n"
            "       crmd export COLLECTION [FILE|-] [--format csv|ndjson] [--quiet]\n"
            "                 [--data DIR] [--schemas DIR]   (docs/operations.md)\n");
}

int crm_cli_data_is(const char *cmd)
{
    return strcmp(cmd, "backup") == 0 || strcmp(cmd, "restore") == 0 ||
           strcmp(cmd, "import") == 0 || strcmp(cmd, "export") == 0;
}

static int usage_err(const char *cmd)
{
    fprintf(stderr, "usage:\n");
    crm_cli_data_usage(stderr);
    (void)cmd;
    return 2;
}

/* A whole number in [min, max] into *out; -1 after a message. */
static int num(const char *flag, const char *v, long long min, long long max, long long *out)
{
    char *end;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || x < min || x > max) {
        fprintf(stderr, "crmd: --%s must be a whole number from %lld to %lld\n", flag, min, max);
        return -1;
    }
    *out = x;
    return 0;
}

enum {
    O_DATA = 1000, O_SCHEMAS, O_SCRIPTS, O_PLUGINS, O_FORMAT, O_KEY, O_BATCH, O_MAXLINE,
    O_MAXREC, O_MAXFIELDS, O_MAXBAD, O_QUIET
};

static const struct option OPTS[] = {
    {"data", required_argument, 0, O_DATA},         {"schemas", required_argument, 0, O_SCHEMAS},
    {"scripts", required_argument, 0, O_SCRIPTS},   {"plugins", required_argument, 0, O_PLUGINS},
    {"format", required_argument, 0, O_FORMAT},     {"key", required_argument, 0, O_KEY},
    {"batch", required_argument, 0, O_BATCH},       {"max-line", required_argument, 0, O_MAXLINE},
    {"max-record", required_argument, 0, O_MAXREC}, {"max-fields", required_argument, 0, O_MAXFIELDS},
    {"max-bad", required_argument, 0, O_MAXBAD},    {"quiet", no_argument, 0, O_QUIET},
    {0, 0, 0, 0}};

typedef struct args {
    const char *data, *schemas, *scripts, *plugins, *format, *key;
    long long batch, max_line, max_record, max_fields, max_bad;
    int quiet;
    const char *pos[3];
    int npos;
} args;

/* Flags any data tool may take; each tool then refuses what it does not use. */
static int parse(int argc, char **argv, args *a, unsigned allowed)
{
    int c;
    memset(a, 0, sizeof *a);
    a->data = "./data";
    a->schemas = "./schemas";
    a->scripts = "./scripts";
    a->plugins = "./plugins";
    optind = 1;
    while ((c = getopt_long(argc, argv, "", OPTS, NULL)) != -1) {
        if (c < O_DATA || !(allowed & (1u << (c - O_DATA))))
            return -1;
        switch (c) {
        case O_DATA: a->data = optarg; break;
        case O_SCHEMAS: a->schemas = optarg; break;
        case O_SCRIPTS: a->scripts = optarg; break;
        case O_PLUGINS: a->plugins = optarg; break;
        case O_FORMAT: a->format = optarg; break;
        case O_KEY: a->key = optarg; break;
        case O_QUIET: a->quiet = 1; break;
        case O_BATCH: if (num("batch", optarg, 1, 100000, &a->batch)) return -1; break;
        case O_MAXLINE: if (num("max-line", optarg, 1024, 1LL << 30, &a->max_line)) return -1; break;
        case O_MAXREC: if (num("max-record", optarg, 1024, 1LL << 30, &a->max_record)) return -1; break;
        case O_MAXFIELDS: if (num("max-fields", optarg, 1, 100000, &a->max_fields)) return -1; break;
        case O_MAXBAD: if (num("max-bad", optarg, 0, 1LL << 62, &a->max_bad)) return -1; break;
        }
    }
    for (int i = optind; i < argc; i++) {
        if (a->npos == 3)
            return -1;
        a->pos[a->npos++] = argv[i];
    }
    return 0;
}

#define A(o) (1u << ((o) - O_DATA))

static int cmd_backup(int argc, char **argv)
{
    args a;
    crm_backup_info bi;
    crm_err err;
    if (parse(argc, argv, &a, A(O_DATA)) != 0 || a.npos != 1)
        return usage_err("backup");
    if (crm_backup_create(a.data, a.pos[0], &bi, &err) != CRM_OK) {
        fprintf(stderr, "crmd backup: %s\n", err.msg);
        return 1;
    }
    printf("crmd backup: %s: seq %" PRIu64 ", %" PRIu64 " records, %" PRIu64
           " databases, %" PRIu64 " bytes\n",
           a.pos[0], bi.last_seq, bi.records, bi.databases, bi.bytes);
    return 0;
}

static int cmd_restore(int argc, char **argv)
{
    args a;
    crm_backup_info bi;
    crm_err err;
    if (parse(argc, argv, &a, A(O_DATA) | A(O_SCHEMAS)) != 0 || a.npos != 1)
        return usage_err("restore");
    if (crm_backup_restore(a.pos[0], a.data, a.schemas, &bi, &err) != CRM_OK) {
        fprintf(stderr, "crmd restore: %s; %s is unchanged\n", err.msg, a.data);
        return 1;
    }
    printf("crmd restore: %s now holds %s: seq %" PRIu64 ", %" PRIu64 " records\n", a.data,
           a.pos[0], bi.last_seq, bi.records);
    if (bi.old_data[0])
        printf("crmd restore: the data it replaced is kept in %s\n", bi.old_data);
    return 0;
}

static crm_format pick_format(const char *flag, const char *path)
{
    if (flag)
        return crm_format_parse(flag);
    return crm_format_of_path(path);
}

static int cmd_import(int argc, char **argv)
{
    args a;
    crm_import_opts o;
    crm_import_stats st;
    crm_err err;
    int rc;
    if (parse(argc, argv, &a,
              A(O_DATA) | A(O_SCHEMAS) | A(O_SCRIPTS) | A(O_PLUGINS) | A(O_FORMAT) | A(O_KEY) |
                  A(O_BATCH) | A(O_MAXLINE) | A(O_MAXREC) | A(O_MAXFIELDS) | A(O_MAXBAD) |
                  A(O_QUIET)) != 0 ||
        a.npos != 2)
        return usage_err("import");
    crm_import_opts_default(&o);
    o.data = a.data;
    o.schemas = a.schemas;
    o.scripts = a.scripts;
    o.plugins = a.plugins;
    o.coll = a.pos[0];
    o.path = a.pos[1];
    o.key = a.key;
    o.progress = !a.quiet;
    o.stats = &st;
    if (a.batch)
        o.batch = (size_t)a.batch;
    if (a.max_line)
        o.max_line = (size_t)a.max_line;
    if (a.max_record)
        o.max_record = (size_t)a.max_record;
    if (a.max_fields)
        o.max_fields = (size_t)a.max_fields;
    o.max_bad = (uint64_t)a.max_bad;
    if (!(o.format = pick_format(a.format, o.path))) {
        fprintf(stderr, "crmd import: say --format csv or --format ndjson (or name the file "
                        ".csv / .ndjson)\n");
        return 2;
    }
    rc = crm_import_run(&o, &err);
    if (rc == CRM_OK || st.lines)
        printf("crmd import: %" PRIu64 " rows: %" PRIu64 " created, %" PRIu64 " updated, %" PRIu64
               " unchanged, %" PRIu64 " bad; %" PRIu64 " batches, %" PRIu64 " hook runs, %.1f s\n",
               st.rows, st.created, st.updated, st.unchanged, st.bad, st.batches, st.hook_runs,
               st.seconds);
    fflush(stdout);
    if (rc != CRM_OK) {
        fprintf(stderr, "crmd import: %s\n", err.msg);
        return 1;
    }
    return st.bad ? 3 : 0;
}

static int cmd_export(int argc, char **argv)
{
    args a;
    crm_export_opts o;
    crm_export_stats st;
    crm_err err;
    if (parse(argc, argv, &a, A(O_DATA) | A(O_SCHEMAS) | A(O_FORMAT) | A(O_QUIET)) != 0 ||
        a.npos < 1 || a.npos > 2)
        return usage_err("export");
    crm_export_opts_default(&o);
    o.data = a.data;
    o.schemas = a.schemas;
    o.coll = a.pos[0];
    o.path = a.npos == 2 ? a.pos[1] : "-";
    o.progress = !a.quiet;
    o.stats = &st;
    if (!(o.format = pick_format(a.format, o.path))) {
        fprintf(stderr, "crmd export: say --format csv or --format ndjson (or name the file "
                        ".csv / .ndjson)\n");
        return 2;
    }
    if (crm_export_run(&o, &err) != CRM_OK) {
        fprintf(stderr, "crmd export: %s\n", err.msg);
        return 1;
    }
    /* the summary goes to stderr: stdout may be the data */
    if (!a.quiet)
        fprintf(stderr, "crmd export: %" PRIu64 " %s records at seq %" PRIu64 ", %.1f s\n",
                st.records, o.coll, st.seq, st.seconds);
    return 0;
}

int crm_cli_data_run(int argc, char **argv)
{
    /* --help (or -h) anywhere: the usage on stdout, exit 0, before getopt
     * would call it an unrecognized option */
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage:\n");
            crm_cli_data_usage(stdout);
            return 0;
        }
    if (strcmp(argv[0], "backup") == 0)
        return cmd_backup(argc, argv);
    if (strcmp(argv[0], "restore") == 0)
        return cmd_restore(argc, argv);
    if (strcmp(argv[0], "import") == 0)
        return cmd_import(argc, argv);
    if (strcmp(argv[0], "export") == 0)
        return cmd_export(argc, argv);
    return usage_err(argv[0]);
}
