/*
 * import -- `crmd import`: CSV or NDJSON rows into one collection through
 * the served write path (see transfer.h).
 *
 * CSV is parsed by libcsv (Debian's libcsv-dev) in strict mode: RFC 4180
 * quoting, quoted newlines, CR, LF or CRLF line ends; a stray quote is an
 * error rather than guessed at.  It is fed one physical line at a time so
 * every record knows the line it started on, and its field buffer grows
 * through bounded_realloc, which refuses past the record limit: a file
 * with an unclosed quote cannot make us hold more than one record.
 *
 * Each row is a unit of the group commit whose function looks the key up,
 * then creates or updates inside the unit's nested transaction, so a later
 * row of the same batch sees an earlier one's record (no duplicates within
 * a batch either) and a refused row leaves nothing behind.
 */
#include <csv.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bus.h"
#include "cell.h"
#include "codec.h"
#include "datalock.h"
#include "lua_host.h"
#include "plugin.h"
#include "progress.h"
#include "schema.h"
#include "store.h"
#include "transfer.h"

#define LAG_MAX 4096         /* feed entries the after-hooks may trail by (as crmd demo) */
#define DRAIN_WAIT_MS 2000   /* at the end, wait for hook retries due within this */
#define MAX_REPORTED 1000    /* bad rows reported one by one; then only counted */

/* The record limit for libcsv's field buffer.  libcsv's realloc hook has no
 * user pointer, so it is a process-wide value, set by each import before
 * it parses (imports do not run concurrently in one process). */
static size_t csv_cap = 4u << 20;

static void *bounded_realloc(void *p, size_t n)
{
    return n > csv_cap + 1024 ? NULL : realloc(p, n);
}

/* RFC 4180: spaces are part of a field. */
static int no_space(unsigned char c)
{
    (void)c;
    return 0;
}

enum { OUT_NONE, OUT_CREATED, OUT_UPDATED, OUT_UNCHANGED };

typedef struct imp imp;

typedef struct row {
    imp *d;
    uint64_t line;
    crm_value *rec;  /* owned: the fields to write (no system fields) */
    char *id;        /* owned: the row's id, or NULL */
    int outcome;     /* set by row_unit */
} row;

typedef struct cell {
    char *s;   /* owned; NULL for an empty unquoted cell */
    size_t len;
} cell;

struct imp {
    const crm_import_opts *o;
    const char *name;          /* the input's name in reports */
    crm_schema *schema;
    const crm_collection *c;
    int key_is_id;
    crm_datalock *lock;
    crm_store *store;
    crm_bus *bus;
    crm_plugins *plugins;
    crm_lua *lua;
    crm_import_stats st;
    crm_progress pr;
    FILE *in, *report;
    uint64_t bytes;
    /* the batch */
    row *rows;
    crm_unit *units;           /* room for the bus's unit */
    size_t n;
    /* CSV */
    struct csv_parser csv;
    int csv_ready;
    uint64_t line, rec_line;
    cell *cells;
    size_t ncells, rec_bytes;
    const char *rec_bad;       /* why the record being read is refused, or NULL */
    char **cols;               /* header */
    const crm_field **colf;    /* per column: the field, or NULL (id, system, undeclared) */
    size_t ncols;
    int have_header;
    /* a fatal problem found inside a libcsv callback */
    int fatal;
    crm_err ferr;
};

void crm_import_opts_default(crm_import_opts *o)
{
    memset(o, 0, sizeof *o);
    o->data = "./data";
    o->schemas = "./schemas";
    o->scripts = "./scripts";
    o->plugins = "./plugins";
    o->path = "-";
    o->batch = 256;
    o->max_line = 1u << 20;
    o->max_record = 4u << 20;
    o->max_fields = 1024;
    o->progress = 1;
}

/* ---- reporting ---- */

static void report(imp *d, uint64_t line, const char *fmt, ...) CRM_PRINTF(3, 4);

/* A bad row: "FILE:LINE: reason", counted; the first MAX_REPORTED shown. */
static void report(imp *d, uint64_t line, const char *fmt, ...)
{
    va_list ap;
    d->st.bad++;
    if (d->st.bad > MAX_REPORTED)
        return;
    if (d->report == stderr)
        crm_progress_clear(&d->pr);
    fprintf(d->report, "%s:%" PRIu64 ": ", d->name, line);
    va_start(ap, fmt);
    vfprintf(d->report, fmt, ap);
    va_end(ap);
    fputc('\n', d->report);
    if (d->st.bad == MAX_REPORTED)
        fprintf(d->report, "%s: more bad rows are counted, not shown\n", d->name);
    fflush(d->report);
}

static void import_log(void *ud, int level, const char *who, const char *msg)
{
    imp *d = ud;
    if (level < CRM_LOG_WARN)
        return;
    crm_progress_clear(&d->pr);
    fprintf(stderr, "crmd import: %s %s: %s\n", level == CRM_LOG_WARN ? "warning" : "error", who,
            msg);
}

/* ---- one row, inside its unit's nested transaction ---- */

static int row_unit(void *ud, crm_txn *t, crm_err *err)
{
    row *r = ud;
    imp *d = r->d;
    const char *coll = d->c->name, *key = d->o->key;
    crm_value *old = NULL;
    char *target = NULL;
    crm_write w;
    int rc;

    if (key && d->key_is_id) {
        if (!r->id)
            return crm_err_set(err, CRM_VALIDATION, "id: the key field is empty");
        rc = crm_txn_get(t, coll, r->id, &old, err);
        if (rc == CRM_NOT_FOUND)
            crm_err_clear(err);
        else if (rc != CRM_OK)
            return rc;
    } else if (key) {
        const crm_value *kv = crm_map_get(r->rec, key);
        crm_value *where = crm_value_map(), *recs = NULL;
        char *next = NULL;
        crm_query q = {coll, where, NULL, 2, NULL};
        if (!kv || kv->type == CRM_T_NIL) {
            crm_value_free(where);
            return crm_err_set(err, CRM_VALIDATION, "%s: the key field is empty", key);
        }
        if (!where || crm_map_set(where, key, crm_value_dup(kv)) != 0)
            return crm_err_set(err, CRM_INTERNAL, "out of memory");
        rc = crm_txn_query(t, &q, &recs, &next, err);
        crm_value_free(where);
        free(next);
        if (rc != CRM_OK)
            return rc;
        if (recs->u.arr.n > 1) {
            crm_value_free(recs);
            return crm_err_set(err, CRM_CONFLICT, "%s: more than one %s record has this value",
                               key, coll);
        }
        if (recs->u.arr.n == 1)
            old = crm_value_dup(recs->u.arr.items[0]);
        crm_value_free(recs);
    }
    if (old) {
        int same = 1;
        const char *oid = crm_map_str(old, "id", NULL);
        if (!oid || !(target = strdup(oid))) {
            crm_value_free(old);
            return crm_err_set(err, CRM_INTERNAL, "out of memory");
        }
        if (r->id && strcmp(r->id, target) != 0) {
            rc = crm_err_set(err, CRM_CONFLICT, "id %s: the record with this %s is %s", r->id,
                             key, target);
            crm_value_free(old);
            free(target);
            return rc;
        }
        for (size_t i = 0; i < r->rec->u.map.n && same; i++)
            same = crm_value_equal(r->rec->u.map.kv[i].val,
                                   crm_map_get(old, r->rec->u.map.kv[i].key));
        crm_value_free(old);
        if (same) { /* a re-run: nothing to write, no feed entry, no hooks */
            r->outcome = OUT_UNCHANGED;
            free(target);
            return CRM_OK;
        }
    }
    memset(&w, 0, sizeof w);
    w.op = target ? CRM_OP_UPDATE : CRM_OP_CREATE;
    w.coll = coll;
    w.id = target ? target : r->id;
    w.data = r->rec;
    rc = crm_txn_write(t, &w);
    if (rc != CRM_OK)
        *err = w.err;
    else
        r->outcome = target ? OUT_UPDATED : OUT_CREATED;
    crm_write_clear(&w);
    free(target);
    return rc;
}

/* ---- batches ---- */

static void row_free(row *r)
{
    crm_value_free(r->rec);
    free(r->id);
    memset(r, 0, sizeof *r);
}

/* --max-bad: BAD_REQUEST once that many rows were bad. */
static int bad_limit(imp *d, crm_err *err)
{
    if (d->o->max_bad && d->st.bad >= d->o->max_bad)
        return crm_err_set(err, CRM_BAD_REQUEST, "stopped after %" PRIu64 " bad rows", d->st.bad);
    return CRM_OK;
}

static uint64_t lag(imp *d)
{
    crm_bus_stats bs;
    crm_bus_stats_get(d->bus, &bs);
    return crm_store_last_seq(d->store) - bs.min_cursor;
}

static void show(imp *d, int final)
{
    d->pr.done = d->bytes;
    snprintf(d->pr.note, sizeof d->pr.note, "%" PRIu64 " rows, %" PRIu64 " bad", d->st.rows,
             d->st.bad);
    crm_progress_show(&d->pr, final);
}

static int flush(imp *d, crm_err *err)
{
    int rc, ran;
    if (!d->n)
        return CRM_OK;
    for (size_t i = 0; i < d->n; i++) {
        memset(&d->units[i], 0, sizeof d->units[i]);
        d->units[i].fn = row_unit;
        d->units[i].fn_ud = &d->rows[i];
        d->units[i].user = "cli:import"; /* the audit trail and the feed name who */
        d->units[i].role = "local";
        d->rows[i].outcome = OUT_NONE;
    }
    rc = crm_bus_apply(d->bus, d->units, d->n, &ran, err);
    if (rc != CRM_OK) {
        rc = crm_err_set(err, rc, "the batch of lines %" PRIu64 "..%" PRIu64 " was not "
                         "committed (%s); the lines before it are in", d->rows[0].line,
                         d->rows[d->n - 1].line, err->msg);
    } else {
        d->st.batches++;
        for (size_t i = 0; i < d->n; i++) {
            crm_unit *u = &d->units[i];
            if (u->rc != CRM_OK)
                report(d, d->rows[i].line, "%s%s", u->rc == CRM_REJECTED ? "rejected: " : "",
                       u->err.msg);
            else if (d->rows[i].outcome == OUT_CREATED)
                d->st.created++;
            else if (d->rows[i].outcome == OUT_UPDATED)
                d->st.updated++;
            else
                d->st.unchanged++;
        }
    }
    for (size_t i = 0; i < d->n; i++)
        row_free(&d->rows[i]);
    d->n = 0;
    /* after-hooks keep up: the feed they trail by stays bounded */
    while (rc == CRM_OK && lag(d) > LAG_MAX) {
        crm_unit none[1];
        rc = crm_bus_apply(d->bus, none, 0, &ran, err);
        if (!ran)
            break;
    }
    show(d, 0);
    return rc == CRM_OK ? bad_limit(d, err) : rc;
}

/* Takes rec and id (owned). */
static int add_row(imp *d, uint64_t line, crm_value *rec, char *id, crm_err *err)
{
    row *r = &d->rows[d->n++];
    r->d = d;
    r->line = line;
    r->rec = rec;
    r->id = id;
    return d->n >= d->o->batch ? flush(d, err) : CRM_OK;
}

/* ---- NDJSON ---- */

static int ndjson_line(imp *d, const char *buf, size_t len, crm_err *err)
{
    crm_limits lim = {d->o->max_line, CRM_CELL_MAX_DEPTH};
    crm_value *rec, *idv;
    crm_err je;
    char *id = NULL;
    size_t i = 0;

    while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n'))
        i++;
    if (i == len)
        return CRM_OK; /* blank */
    d->st.rows++;
    if (!(rec = crm_json_decode(buf, len, &lim, &je))) {
        report(d, d->line, "%s", je.msg);
        return CRM_OK;
    }
    if (rec->type != CRM_T_MAP) {
        report(d, d->line, "not a JSON object");
        crm_value_free(rec);
        return CRM_OK;
    }
    crm_map_del(rec, "_rev");
    crm_map_del(rec, "_created");
    crm_map_del(rec, "_updated");
    if ((idv = crm_map_take(rec, "id")) && idv->type != CRM_T_NIL) {
        if (idv->type != CRM_T_STR || !(id = strdup(idv->u.str.s))) {
            report(d, d->line, "id: not a string");
            crm_value_free(idv);
            crm_value_free(rec);
            return CRM_OK;
        }
    }
    crm_value_free(idv);
    /* timestamps may come as ISO 8601 text */
    for (size_t k = 0; k < rec->u.map.n; k++) {
        const crm_field *fd = crm_collection_field(d->c, rec->u.map.kv[k].key);
        crm_value *v = rec->u.map.kv[k].val;
        int64_t ms;
        if (fd && fd->type == CRM_F_TIMESTAMP && v->type == CRM_T_STR) {
            if (crm_time_parse(v->u.str.s, v->u.str.len, &ms) != 0) {
                report(d, d->line, "%s: not a time (ISO 8601 or ms since the epoch): \"%.40s\"",
                       fd->name, v->u.str.s);
                crm_value_free(rec);
                free(id);
                return CRM_OK;
            }
            crm_value_free(v);
            if (!(rec->u.map.kv[k].val = crm_value_int(ms))) {
                rec->u.map.kv[k].val = crm_value_nil();
                crm_value_free(rec);
                free(id);
                return crm_err_set(err, CRM_INTERNAL, "out of memory");
            }
        }
    }
    return add_row(d, d->line, rec, id, err);
}

/* ---- CSV ---- */

static void cells_clear(imp *d)
{
    for (size_t i = 0; i < d->ncells; i++)
        free(d->cells[i].s);
    d->ncells = 0;
    d->rec_bytes = 0;
    d->rec_bad = NULL;
}

static void on_field(void *s, size_t len, void *ud)
{
    imp *d = ud;
    cell *c;
    if (d->rec_bad)
        return;
    if (d->ncells >= d->o->max_fields) {
        d->rec_bad = "too many fields";
        return;
    }
    d->rec_bytes += len;
    if (d->rec_bytes > d->o->max_record) {
        d->rec_bad = "record too long";
        return;
    }
    c = &d->cells[d->ncells];
    c->len = len;
    c->s = NULL;
    if (s) {
        if (!(c->s = malloc(len + 1))) {
            d->rec_bad = "out of memory";
            return;
        }
        memcpy(c->s, s, len);
        c->s[len] = '\0';
    }
    d->ncells++;
}

static int set_header(imp *d)
{
    const char *key = d->o->key;
    int key_seen = !key;
    if (d->rec_bad)
        return crm_err_set(&d->ferr, CRM_BAD_REQUEST, "%s:%" PRIu64 ": header: %s", d->name,
                           d->rec_line, d->rec_bad);
    if (!(d->cols = calloc(d->ncells, sizeof *d->cols)) ||
        !(d->colf = calloc(d->ncells, sizeof *d->colf)))
        return crm_err_set(&d->ferr, CRM_INTERNAL, "out of memory");
    for (size_t i = 0; i < d->ncells; i++) {
        const char *name = d->cells[i].s ? d->cells[i].s : "";
        d->cols[i] = d->cells[i].s;
        d->cells[i].s = NULL;
        d->ncols++;
        if (!*name || strlen(name) != d->cells[i].len)
            return crm_err_set(&d->ferr, CRM_BAD_REQUEST,
                               "%s:%" PRIu64 ": header: column %zu has no name", d->name,
                               d->rec_line, i + 1);
        for (size_t j = 0; j < i; j++)
            if (strcmp(d->cols[j], name) == 0)
                return crm_err_set(&d->ferr, CRM_BAD_REQUEST,
                                   "%s:%" PRIu64 ": header: column %s appears twice", d->name,
                                   d->rec_line, name);
        d->colf[i] = crm_collection_field(d->c, name);
        if (!d->colf[i] && !crm_is_system_field(name) && d->c->strict)
            return crm_err_set(&d->ferr, CRM_BAD_REQUEST,
                               "%s:%" PRIu64 ": header: unknown field %s (collection %s is "
                               "strict)",
                               d->name, d->rec_line, name, d->c->name);
        if (key && strcmp(name, key) == 0)
            key_seen = 1;
    }
    if (!key_seen)
        return crm_err_set(&d->ferr, CRM_BAD_REQUEST,
                           "%s:%" PRIu64 ": header: no column for the key field %s", d->name,
                           d->rec_line, key);
    d->have_header = 1;
    return CRM_OK;
}

/* One CSV record -> a row (or a report). */
static int csv_record(imp *d, crm_err *err)
{
    crm_value *rec;
    char *id = NULL;
    d->st.rows++;
    if (d->rec_bad) {
        report(d, d->rec_line, "%s", d->rec_bad);
        return CRM_OK;
    }
    if (d->ncells != d->ncols) {
        report(d, d->rec_line, "%zu fields, the header has %zu", d->ncells, d->ncols);
        return CRM_OK;
    }
    if (!(rec = crm_value_map()))
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    for (size_t i = 0; i < d->ncols; i++) {
        const char *name = d->cols[i];
        const crm_field *fd = d->colf[i];
        cell *c = &d->cells[i];
        crm_value *v;
        crm_err ce;
        if (!c->s)
            continue; /* empty, unquoted: absent */
        if (strcmp(name, "id") == 0) {
            if (c->len && !(id = strdup(c->s))) {
                crm_value_free(rec);
                return crm_err_set(err, CRM_INTERNAL, "out of memory");
            }
            continue;
        }
        if (crm_is_system_field(name))
            continue; /* the store's own */
        /* "" is an empty string for text fields, absent for the others */
        if (c->len == 0 && fd && fd->type != CRM_F_STRING && fd->type != CRM_F_ENUM &&
            fd->type != CRM_F_REF)
            continue;
        if (crm_cell_parse(fd, c->s, c->len, &v, &ce) != CRM_OK) {
            crm_value_free(rec);
            free(id);
            if (ce.code == CRM_INTERNAL)
                return crm_err_set(err, CRM_INTERNAL, "%s", ce.msg);
            report(d, d->rec_line, "%s: %s", name, ce.msg);
            return CRM_OK;
        }
        if (crm_map_set(rec, name, v) != 0) {
            crm_value_free(rec);
            free(id);
            return crm_err_set(err, CRM_INTERNAL, "out of memory");
        }
    }
    return add_row(d, d->rec_line, rec, id, err);
}

static void on_record(int c, void *ud)
{
    imp *d = ud;
    (void)c;
    if (d->fatal)
        return;
    if (!d->have_header) {
        if (set_header(d) != CRM_OK)
            d->fatal = 1;
    } else if (csv_record(d, &d->ferr) != CRM_OK) {
        d->fatal = 1;
    }
    cells_clear(d);
}

static int csv_reset(imp *d)
{
    if (d->csv_ready)
        csv_free(&d->csv);
    d->csv_ready = 0;
    if (csv_init(&d->csv, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL | CSV_EMPTY_IS_NULL) != 0)
        return -1;
    csv_set_space_func(&d->csv, no_space);
    csv_set_realloc_func(&d->csv, bounded_realloc);
    d->csv_ready = 1;
    cells_clear(d);
    return 0;
}

/* The record being read is broken: report it, drop it, start afresh. */
static int csv_broken(imp *d, crm_err *err)
{
    int e = csv_error(&d->csv);
    d->st.rows++;
    if (e == CSV_EPARSE)
        report(d, d->rec_line, "CSV quoting error on line %" PRIu64 " (a quote inside an "
               "unquoted field, or text after a closing quote)", d->line);
    else
        report(d, d->rec_line, "record longer than %zu bytes (an unclosed quote?)",
               d->o->max_record);
    if (csv_reset(d) != 0)
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    return CRM_OK;
}

static int csv_line(imp *d, const char *buf, size_t len, crm_err *err)
{
    /* libcsv's documented struct: pstate 0 is "no record begun", so this
     * line starts a record (blank lines between records are skipped) */
    if (d->csv.pstate == 0)
        d->rec_line = d->line;
    if (csv_parse(&d->csv, buf, len, on_field, on_record, d) != len && !d->fatal)
        return csv_broken(d, err);
    if (d->fatal) {
        *err = d->ferr;
        return err->code ? err->code : CRM_INTERNAL;
    }
    return CRM_OK;
}

static int csv_end(imp *d, crm_err *err)
{
    if (csv_fini(&d->csv, on_field, on_record, d) != 0 && !d->fatal) {
        d->st.rows++;
        report(d, d->rec_line, "unterminated quoted field (it runs to the end of the input)");
    }
    if (d->fatal) {
        *err = d->ferr;
        return err->code ? err->code : CRM_INTERNAL;
    }
    if (!d->have_header)
        return crm_err_set(err, CRM_BAD_REQUEST, "%s: no header row", d->name);
    return CRM_OK;
}

/* ---- reading lines ---- */

/* The next physical line (with its line end) into buf; *len its length.
 * 1 = a line, 0 = end of input, -1 = read error.  A line longer than cap
 * is consumed to its end and reported with *too_long. */
static int read_line(imp *d, char *buf, size_t cap, size_t *len, int *too_long)
{
    size_t n = 0;
    int ch = EOF;
    *too_long = 0;
    while ((ch = getc_unlocked(d->in)) != EOF) {
        d->bytes++;
        if (n < cap)
            buf[n++] = (char)ch;
        else
            *too_long = 1;
        if (ch == '\n')
            break;
    }
    *len = n;
    if (ferror(d->in))
        return -1;
    return n || *too_long ? 1 : 0;
}

/* ---- the run ---- */

static int open_host(imp *d, crm_err *err)
{
    const crm_import_opts *o = d->o;
    crm_bus_opts bo;
    int rc;
    if ((rc = crm_store_open(o->data, d->schema, NULL, &d->store, err)) != CRM_OK)
        return rc;
    crm_bus_opts_default(&bo);
    bo.log = import_log;
    bo.log_ud = d;
    if ((rc = crm_bus_new(d->store, &bo, &d->bus, err)) != CRM_OK)
        return rc;
    /* plugins first, then scripts: hooks run in that order (as served) */
    if ((rc = crm_plugins_load(d->bus, o->plugins, &d->plugins, err)) != CRM_OK)
        return rc;
    return crm_lua_open(d->bus, o->scripts, NULL, &d->lua, err);
}

static int check_key(imp *d, crm_err *err)
{
    const crm_field *fd;
    if (!d->o->key)
        return CRM_OK;
    if (strcmp(d->o->key, "id") == 0) {
        d->key_is_id = 1;
        return CRM_OK;
    }
    if (!(fd = crm_collection_field(d->c, d->o->key)))
        return crm_err_set(err, CRM_BAD_REQUEST, "--key %s: %s has no such field", d->o->key,
                           d->c->name);
    if (fd->index == CRM_INDEX_NONE)
        return crm_err_set(err, CRM_BAD_REQUEST,
                           "--key %s: %s.%s has no index (declare \"index\" in its schema)",
                           d->o->key, d->c->name, d->o->key);
    return CRM_OK;
}

/* After the last batch: run the after-hooks (and hook retries due soon). */
static int drain(imp *d, crm_err *err)
{
    int rc = CRM_OK;
    crm_progress_phase(&d->pr, "hooks", 0);
    for (;;) {
        int64_t ms;
        if ((rc = crm_bus_drain(d->bus, 0, err)) != CRM_OK)
            break;
        ms = crm_bus_next_work_ms(d->bus);
        if (ms < 0 || ms > DRAIN_WAIT_MS)
            break;
        usleep((useconds_t)(ms > 0 ? ms : 1) * 1000);
    }
    return rc;
}

static int run(imp *d, crm_err *err)
{
    const crm_import_opts *o = d->o;
    size_t cap = o->max_line, len;
    char *buf;
    struct stat st;
    int rc = CRM_OK, got = 0, too_long;

    if (!(buf = malloc(cap)))
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    crm_progress_phase(&d->pr, d->c->name,
                       fstat(fileno(d->in), &st) == 0 && S_ISREG(st.st_mode) ? (uint64_t)st.st_size
                                                                               : 0);
    d->pr.bytes = 1;
    if (o->format == CRM_FORMAT_CSV) {
        csv_cap = o->max_record;
        if (csv_reset(d) != 0) {
            free(buf);
            return crm_err_set(err, CRM_INTERNAL, "out of memory");
        }
    }
    while (rc == CRM_OK && (rc = bad_limit(d, err)) == CRM_OK &&
           (got = read_line(d, buf, cap, &len, &too_long)) == 1) {
        d->line++;
        d->st.lines++;
        if (too_long) {
            if (o->format == CRM_FORMAT_CSV && !d->have_header) {
                rc = crm_err_set(err, CRM_BAD_REQUEST,
                                 "%s:%" PRIu64 ": header longer than %zu bytes", d->name,
                                 d->line, cap);
                break;
            }
            d->st.rows++;
            report(d, o->format == CRM_FORMAT_CSV && d->csv.pstate ? d->rec_line : d->line,
                   "line longer than %zu bytes", cap);
            if (o->format == CRM_FORMAT_CSV && csv_reset(d) != 0)
                rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
            continue;
        }
        {
            const char *p = buf;
            if (d->line == 1 && len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) {
                p += 3; /* a UTF-8 byte order mark, as spreadsheets write */
                len -= 3;
            }
            rc = o->format == CRM_FORMAT_CSV ? csv_line(d, p, len, err)
                                             : ndjson_line(d, p, len, err);
        }
    }
    free(buf);
    if (rc == CRM_OK && got < 0)
        rc = crm_err_set(err, CRM_UNAVAILABLE, "%s: read error: %s", d->name, strerror(errno));
    if (rc == CRM_OK && o->format == CRM_FORMAT_CSV)
        rc = csv_end(d, err);
    if (rc == CRM_OK)
        rc = flush(d, err);
    show(d, 1);
    if (rc == CRM_OK)
        rc = drain(d, err);
    return rc;
}

int crm_import_run(const crm_import_opts *o, crm_err *err)
{
    imp *d = calloc(1, sizeof *d);
    double t0 = crm_progress_now();
    int rc;

    crm_err_clear(err);
    if (!d)
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    d->o = o;
    d->report = o->report ? o->report : stderr;
    d->name = strcmp(o->path, "-") == 0 ? "<stdin>" : o->path;
    crm_progress_init(&d->pr, "crmd import", o->progress);
    if (o->format != CRM_FORMAT_CSV && o->format != CRM_FORMAT_NDJSON) {
        rc = crm_err_set(err, CRM_BAD_REQUEST, "no format (csv or ndjson)");
        goto out;
    }
    if (!o->batch || !o->max_line || !o->max_record || !o->max_fields) {
        rc = crm_err_set(err, CRM_BAD_REQUEST, "batch and limits must be positive");
        goto out;
    }
    if (!(d->rows = calloc(o->batch, sizeof *d->rows)) ||
        !(d->units = calloc(o->batch + 1, sizeof *d->units)) ||
        !(d->cells = calloc(o->max_fields, sizeof *d->cells))) {
        rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
        goto out;
    }
    if ((rc = crm_schema_load_dir(o->schemas, &d->schema, err)) != CRM_OK)
        goto out;
    if (!(d->c = crm_schema_find(d->schema, o->coll))) {
        rc = crm_err_set(err, CRM_BAD_REQUEST, "unknown collection %s", o->coll);
        goto out;
    }
    if ((rc = check_key(d, err)) != CRM_OK)
        goto out;
    if (strcmp(o->path, "-") == 0) {
        d->in = stdin;
    } else if (!(d->in = fopen(o->path, "rb"))) {
        rc = crm_err_set(err, errno == ENOENT ? CRM_NOT_FOUND : CRM_UNAVAILABLE, "%s: %s",
                         o->path, strerror(errno));
        goto out;
    }
    /* one writer per folder: no server, no second import */
    if ((rc = crm_datalock_take(o->data, "crmd import", &d->lock, err)) != CRM_OK)
        goto out;
    if ((rc = open_host(d, err)) != CRM_OK)
        goto out;
    if (o->progress)
        fprintf(stderr, "crmd import: %s into %s in %s%s%s; %zu plugins, %zu scripts\n", d->name,
                d->c->name, o->data, o->key ? ", key " : "", o->key ? o->key : "",
                crm_plugins_count(d->plugins), crm_lua_count(d->lua));
    rc = run(d, err);
out:
    if (d->bus) {
        crm_bus_stats bs;
        crm_bus_stats_get(d->bus, &bs);
        d->st.hook_runs = bs.hook_runs;
        d->st.hook_failures = bs.hook_failures;
    }
    d->st.seconds = crm_progress_now() - t0;
    if (o->stats)
        *o->stats = d->st;
    for (size_t i = 0; i < d->n; i++)
        row_free(&d->rows[i]);
    if (d->cells)
        cells_clear(d);
    if (d->csv_ready)
        csv_free(&d->csv);
    for (size_t i = 0; i < d->ncols; i++)
        free(d->cols[i]);
    free(d->cols);
    free(d->colf);
    free(d->cells);
    free(d->rows);
    free(d->units);
    if (d->in && d->in != stdin)
        fclose(d->in);
    crm_lua_close(d->lua);
    crm_plugins_unload(d->plugins);
    crm_bus_free(d->bus);
    crm_store_close(d->store);
    crm_schema_free(d->schema);
    crm_datalock_release(d->lock);
    free(d);
    return rc;
}
