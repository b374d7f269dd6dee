/*
 * export -- `crmd export`: one collection, one read snapshot, to CSV or
 * NDJSON (see transfer.h).  Beside a running server this is one more LMDB
 * reader: it pins the snapshot's pages until it ends, and writes nothing.
 */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "audit.h"
#include "cell.h"
#include "codec.h"
#include "progress.h"
#include "schema.h"
#include "store.h"
#include "transfer.h"

#define PAGE 1000 /* records per query page (CRM_QUERY_MAX_LIMIT) */

crm_format crm_format_parse(const char *name)
{
    if (!name)
        return CRM_FORMAT_NONE;
    if (strcasecmp(name, "csv") == 0)
        return CRM_FORMAT_CSV;
    if (strcasecmp(name, "ndjson") == 0 || strcasecmp(name, "jsonl") == 0)
        return CRM_FORMAT_NDJSON;
    return CRM_FORMAT_NONE;
}

crm_format crm_format_of_path(const char *path)
{
    const char *dot = path ? strrchr(path, '.') : NULL;
    return dot && !strchr(dot, '/') ? crm_format_parse(dot + 1) : CRM_FORMAT_NONE;
}

void crm_export_opts_default(crm_export_opts *o)
{
    memset(o, 0, sizeof *o);
    o->data = "./data";
    o->schemas = "./schemas";
    o->path = "-";
    o->progress = 1;
}

/* RFC 4180: quote a cell holding a comma, quote, CR or LF; also an empty
 * string (so it reads back as "" and not as an absent field) and one with
 * spaces at either end (which some readers trim). */
static int put_cell(FILE *f, const char *s, size_t len, int is_string)
{
    int quote = (is_string && len == 0) ||
                (len && (s[0] == ' ' || s[0] == '\t' || s[len - 1] == ' ' || s[len - 1] == '\t'));
    for (size_t i = 0; i < len && !quote; i++)
        quote = s[i] == ',' || s[i] == '"' || s[i] == '\r' || s[i] == '\n';
    if (!quote)
        return fwrite(s, 1, len, f) == len ? 0 : -1;
    if (fputc('"', f) == EOF)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '"' && fputc('"', f) == EOF)
            return -1;
        if (fputc(s[i], f) == EOF)
            return -1;
    }
    return fputc('"', f) == EOF ? -1 : 0;
}

static const char *const SYSTEM_TAIL[] = {"_rev", "_created", "_updated"};

static int csv_header(FILE *f, const crm_collection *c)
{
    int rc = put_cell(f, "id", 2, 0);
    for (size_t i = 0; i < c->nfields && rc == 0; i++)
        rc = fputc(',', f) == EOF ? -1 : put_cell(f, c->fields[i].name, strlen(c->fields[i].name), 0);
    for (size_t i = 0; i < 3 && rc == 0; i++)
        rc = fputc(',', f) == EOF ? -1 : put_cell(f, SYSTEM_TAIL[i], strlen(SYSTEM_TAIL[i]), 0);
    return rc == 0 && fputs("\r\n", f) != EOF ? 0 : -1;
}

static int csv_cell(FILE *f, const crm_field *fd, const crm_value *v)
{
    size_t len;
    char *s = crm_cell_format(fd, v, &len);
    int rc;
    if (!s)
        return -1;
    rc = put_cell(f, s, len, v && v->type == CRM_T_STR);
    free(s);
    return rc;
}

static int csv_row(FILE *f, const crm_collection *c, const crm_value *rec)
{
    int rc = csv_cell(f, NULL, crm_map_get(rec, "id"));
    for (size_t i = 0; i < c->nfields && rc == 0; i++)
        rc = fputc(',', f) == EOF ? -1
                                  : csv_cell(f, &c->fields[i], crm_map_get(rec, c->fields[i].name));
    for (size_t i = 0; i < 3 && rc == 0; i++) {
        static const crm_field ts = {.type = CRM_F_TIMESTAMP};
        rc = fputc(',', f) == EOF ? -1
                                  : csv_cell(f, i ? &ts : NULL, crm_map_get(rec, SYSTEM_TAIL[i]));
    }
    return rc == 0 && fputs("\r\n", f) != EOF ? 0 : -1;
}

static int ndjson_row(FILE *f, const crm_value *rec)
{
    size_t len;
    char *s = crm_json_encode(rec, &len);
    int rc = s && fwrite(s, 1, len, f) == len && fputc('\n', f) != EOF ? 0 : -1;
    free(s);
    return rc;
}

/* The audit entry of an export (who: the operating-system user running the
 * command; what: the collection, format, record count and feed position). */
typedef struct export_audit {
    const char *coll;
    const crm_export_opts *o;
    const crm_export_stats *st;
} export_audit;

static int export_audit_unit(void *ud, crm_txn *t, crm_err *err)
{
    export_audit *ea = ud;
    crm_value *detail = crm_value_map();
    const struct passwd *pw = getpwuid(getuid());
    int rc;
    if (!detail ||
        crm_map_set(detail, "format",
                    crm_value_cstr(ea->o->format == CRM_FORMAT_CSV ? "csv" : "ndjson")) ||
        crm_map_set(detail, "records", crm_value_int((int64_t)ea->st->records)) ||
        crm_map_set(detail, "seq", crm_value_int((int64_t)ea->st->seq)) ||
        crm_map_set(detail, "os_user", crm_value_cstr(pw && pw->pw_name ? pw->pw_name : "?"))) {
        crm_value_free(detail);
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    }
    {
        crm_audit_rec a = {"export", ea->coll, NULL, 0, 0, NULL, detail};
        rc = crm_txn_audit(t, &a, err);
    }
    crm_value_free(detail);
    return rc;
}

static int audit_export(crm_store *s, const char *coll, const crm_export_opts *o,
                        const crm_export_stats *st, crm_err *err)
{
    export_audit ea = {coll, o, st};
    crm_unit u = {.fn = export_audit_unit, .fn_ud = &ea, .user = "cli:export", .role = "local"};
    crm_err e;
    if (crm_store_apply(s, &u, 1, &e) != CRM_OK) {
        *err = e;
        return e.code;
    }
    if (u.rc != CRM_OK)
        *err = u.err;
    return u.rc;
}

int crm_export_run(const crm_export_opts *o, crm_err *err)
{
    crm_schema *schema = NULL;
    crm_store *store = NULL;
    crm_txn *t = NULL;
    const crm_collection *c;
    crm_export_stats st;
    crm_progress pr;
    char tmp[4200] = "";
    char *after = NULL;
    FILE *f = NULL;
    uint64_t total = 0, first;
    double t0 = crm_progress_now();
    int rc, to_stdout = strcmp(o->path, "-") == 0;

    crm_err_clear(err);
    memset(&st, 0, sizeof st);
    crm_progress_init(&pr, "crmd export", o->progress);
    if (o->format != CRM_FORMAT_CSV && o->format != CRM_FORMAT_NDJSON)
        return crm_err_set(err, CRM_BAD_REQUEST, "no format (csv or ndjson)");
    if ((rc = crm_schema_load_dir(o->schemas, &schema, err)) != CRM_OK)
        return rc;
    if (!(c = crm_schema_find(schema, o->coll))) {
        rc = crm_err_set(err, CRM_BAD_REQUEST, "unknown collection %s", o->coll);
        goto out;
    }
    if ((rc = crm_store_open(o->data, schema, NULL, &store, err)) != CRM_OK ||
        (rc = crm_store_begin_read(store, &t, err)) != CRM_OK ||
        (rc = crm_txn_count(t, c->name, &total, err)) != CRM_OK ||
        (rc = crm_feed_bounds(t, &first, &st.seq, err)) != CRM_OK)
        goto out;
    if (to_stdout) {
        f = stdout;
    } else {
        int fd;
        snprintf(tmp, sizeof tmp, "%s.partial-XXXXXX", o->path);
        if ((fd = mkstemp(tmp)) < 0 || !(f = fdopen(fd, "wb"))) {
            rc = crm_err_set(err, CRM_UNAVAILABLE, "cannot write %s: %s", tmp, strerror(errno));
            if (fd >= 0)
                close(fd);
            goto out;
        }
    }
    crm_progress_phase(&pr, c->name, total);
    if (o->format == CRM_FORMAT_CSV && csv_header(f, c) != 0)
        goto io_fail;
    for (;;) {
        crm_query q = {c->name, NULL, NULL, PAGE, after};
        crm_value *recs = NULL;
        char *next = NULL;
        int wrc = 0;
        if ((rc = crm_txn_query(t, &q, &recs, &next, err)) != CRM_OK)
            goto out;
        for (size_t i = 0; i < recs->u.arr.n && wrc == 0; i++) {
            wrc = o->format == CRM_FORMAT_CSV ? csv_row(f, c, recs->u.arr.items[i])
                                              : ndjson_row(f, recs->u.arr.items[i]);
            st.records++;
        }
        crm_value_free(recs);
        free(after);
        after = next;
        if (wrc != 0)
            goto io_fail;
        pr.done = st.records;
        crm_progress_show(&pr, 0);
        if (!after)
            break;
    }
    if (fflush(f) != 0 || (!to_stdout && fsync(fileno(f)) != 0))
        goto io_fail;
    {
        off_t at = ftello(f); /* -1 on a pipe */
        st.bytes = at > 0 ? (uint64_t)at : 0;
    }
    if (!to_stdout) {
        FILE *g = f;
        f = NULL;
        if (fclose(g) != 0 || rename(tmp, o->path) != 0) {
            rc = crm_err_set(err, CRM_UNAVAILABLE, "cannot write %s: %s", o->path,
                             strerror(errno));
            goto out;
        }
        tmp[0] = '\0';
    }
    crm_progress_show(&pr, 1);
    crm_txn_end(t);
    t = NULL;
    rc = audit_export(store, c->name, o, &st, err);
    goto out;
io_fail:
    rc = crm_err_set(err, CRM_UNAVAILABLE, "cannot write %s: %s", to_stdout ? "stdout" : o->path,
                     strerror(errno));
out:
    free(after);
    if (f && !to_stdout)
        fclose(f);
    if (tmp[0])
        unlink(tmp);
    if (t)
        crm_txn_end(t);
    crm_store_close(store);
    crm_schema_free(schema);
    st.seconds = crm_progress_now() - t0;
    if (o->stats)
        *o->stats = st;
    return rc;
}
