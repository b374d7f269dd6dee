/*
 * audit_cli -- `crmd audit verify [--data DIR]`: walks the audit chain of a
 * data folder and reports the first broken entry.  Exit 0 intact, 1 broken
 * or unreadable, 2 usage.  Safe while crmd serves (a read transaction).
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "schema.h"
#include "store.h"

int crm_audit_cli(int argc, char **argv)
{
    static const struct option opts[] = {{"data", required_argument, 0, 'd'}, {0, 0, 0, 0}};
    const char *data = "./data";
    crm_schema empty = {0}; /* the audit needs no collections */
    crm_store *store = NULL;
    crm_txn *t = NULL;
    crm_audit_report r;
    crm_err err;
    int c, rc;

    if (argc < 2 || strcmp(argv[1], "verify") != 0) {
        fprintf(stderr, "usage: crmd audit verify [--data DIR]\n");
        return 2;
    }
    optind = 1;
    while ((c = getopt_long(argc - 1, argv + 1, "", opts, NULL)) != -1) {
        if (c != 'd') {
            fprintf(stderr, "usage: crmd audit verify [--data DIR]\n");
            return 2;
        }
        data = optarg;
    }
    if (optind != argc - 1) {
        fprintf(stderr, "usage: crmd audit verify [--data DIR]\n");
        return 2;
    }
    {
        char f[4200];
        snprintf(f, sizeof f, "%s/data.mdb", data);
        if (access(f, R_OK) != 0) { /* do not make an empty store and call it intact */
            fprintf(stderr, "crmd: no store in %s\n", data);
            return 1;
        }
    }
    if (crm_store_open(data, &empty, NULL, &store, &err) != CRM_OK ||
        crm_store_begin_read(store, &t, &err) != CRM_OK) {
        fprintf(stderr, "crmd: %s\n", err.msg);
        crm_store_close(store);
        return 1;
    }
    rc = crm_audit_verify(t, &r, &err);
    crm_txn_end(t);
    crm_store_close(store);
    if (rc == CRM_OK) {
        printf("audit chain intact: %llu entries, last %llu\n", (unsigned long long)r.entries,
               (unsigned long long)r.last);
        return 0;
    }
    if (rc == CRM_CONFLICT) {
        printf("audit chain BROKEN at entry %llu: %s (entries 1 to %llu are intact)\n",
               (unsigned long long)r.bad_seq, r.why,
               (unsigned long long)(r.bad_seq ? r.bad_seq - 1 : 0));
        return 1;
    }
    fprintf(stderr, "crmd: %s\n", err.msg);
    return 1;
}
