/*
 * transfer -- `crmd import` and `crmd export`: one collection to and from
 * CSV (RFC 4180) or NDJSON (one JSON object per line).
 *
 * Import (import.c) writes through the same path as a served write: the
 * schemas, store, bus, plugins and scripts are opened in-process as `crmd
 * serve` opens them, and rows are committed in batches (group commit) with
 * the bus's unit in each, so before-hooks, after-hooks and timers run as
 * they would when served.  It takes the data folder's lock (datalock.h):
 * it refuses to run beside a server on the same folder.  Every row is its
 * own unit: a bad row is reported (line number and reason) and skipped,
 * the others go on.  With a key field, a row whose key matches a stored
 * record updates it (and one that changes nothing is not written), so
 * re-running an import creates no duplicates.  The input is streamed:
 * memory is bounded by the line, record and batch limits, not the file.
 *
 * Export (export.c) reads one snapshot (one read transaction) and may run
 * beside a server; it takes no lock and writes nothing to the store.  A
 * file is written under a temporary name and renamed when complete.
 *
 * File formats (docs/operations.md):
 *   CSV     a header row naming the fields; cells typed by the schema
 *           (cell.h); an empty unquoted cell is an absent field, "" an
 *           empty string; export writes id, the schema's fields in order,
 *           then _rev, _created, _updated, CRLF line ends, and quotes cells
 *           that need it.
 *   NDJSON  one object per line, as the store holds it (timestamps as ms;
 *           import also takes ISO 8601 strings for timestamp fields).
 * id is kept: a row with an id creates the record under that id (or, with
 * --key id, updates it).  _rev, _created and _updated are the store's and
 * are ignored on import.
 */
#ifndef CRM_TRANSFER_H
#define CRM_TRANSFER_H

#include <stdint.h>
#include <stdio.h>

#include "err.h"

typedef enum crm_format { CRM_FORMAT_NONE = 0, CRM_FORMAT_CSV, CRM_FORMAT_NDJSON } crm_format;

/* "csv", "ndjson" / "jsonl" (any case) -> format; NONE otherwise. */
crm_format crm_format_parse(const char *name);
/* From a file name's extension (.csv, .ndjson, .jsonl); NONE otherwise. */
crm_format crm_format_of_path(const char *path);

typedef struct crm_import_stats {
    uint64_t lines;        /* physical lines read */
    uint64_t rows;         /* data rows seen (header and blank lines not counted) */
    uint64_t created, updated, unchanged, bad;
    uint64_t batches;
    uint64_t hook_runs, hook_failures;
    double seconds;
} crm_import_stats;

typedef struct crm_import_opts {
    const char *data, *schemas, *scripts, *plugins; /* as for `crmd serve` */
    const char *coll;
    const char *path;      /* "-" = stdin */
    crm_format format;
    const char *key;       /* NULL: every row creates; else an indexed field or "id" */
    size_t batch;          /* rows per commit; default 256 */
    size_t max_line;       /* bytes in one line; default 1 MiB */
    size_t max_record;     /* bytes in one CSV record (quoted newlines join lines);
                            * default 4 MiB */
    size_t max_fields;     /* columns; default 1024 */
    uint64_t max_bad;      /* stop after this many bad rows; 0 = never */
    int progress;          /* progress on stderr (crm_progress); default 1 */
    FILE *report;          /* bad rows, one line each; default stderr */
    crm_import_stats *stats; /* filled when not NULL */
} crm_import_opts;

void crm_import_opts_default(crm_import_opts *o);

/* Runs the import.  CRM_OK when the whole input was read (bad rows are
 * counted in stats->bad and reported; they are not an error).  Otherwise:
 * CONFLICT (a server or another import holds the data folder),
 * BAD_REQUEST (unknown collection, bad key field, unreadable header or a
 * strict collection's unknown column, max_bad reached), NOT_FOUND (no
 * input file), UNAVAILABLE (a batch could not be committed: the rows
 * before it are in; re-run with a key to finish), or the code of the
 * first failure to open the schemas, store, plugins or scripts. */
int crm_import_run(const crm_import_opts *o, crm_err *err);

typedef struct crm_export_stats {
    uint64_t records, bytes;
    uint64_t seq;          /* the snapshot's last seq */
    double seconds;
} crm_export_stats;

typedef struct crm_export_opts {
    const char *data, *schemas;
    const char *coll;
    const char *path;      /* "-" = stdout */
    crm_format format;
    int progress;          /* default 1 */
    crm_export_stats *stats;
} crm_export_opts;

void crm_export_opts_default(crm_export_opts *o);

/* Writes every record of the collection (replacing path when it exists,
 * only once the new file is complete).  Errors: BAD_REQUEST (unknown
 * collection), UNAVAILABLE (store or I/O; a partial file is removed). */
int crm_export_run(const crm_export_opts *o, crm_err *err);

#endif
