/*
 * audit -- the audit trail: who (token id and role, never a token) changed,
 * erased or exported what, and when.
 *
 * Append-only and hash-chained: LMDB database "audit", key = 8-byte
 * big-endian audit seq (1, 2, ...; appended with MDB_APPEND), value = the
 * SHA-256 of the previous entry (32 bytes; zeros for the first) followed by
 * a msgpack map {seq, ts, user, role, via?, action, collection?, id?, rev?,
 * feed_seq?, fields?, detail?}.  An entry's hash is SHA-256(key ‖ value);
 * meta "audit_head" holds the last seq and hash, so editing, removing or
 * inserting any entry, the last one included, breaks the chain.
 *
 * Every entry is written in the same LMDB transaction as what it records
 * (store writes: store.c; erasure, export, tokens: their callers), so the
 * audit and the data never disagree across a crash.  Entries hold field
 * names and record ids, never field values, so erasure never rewrites them.
 *
 * Threads: like the store (writes on the loop thread; reads anywhere).
 */
#ifndef CRM_AUDIT_H
#define CRM_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "store.h"
#include "value.h"

#define CRM_AUDIT_MAX_LIMIT 1000
#define CRM_AUDIT_DEFAULT_LIMIT 100

/* One entry to append; everything borrowed for the call. */
typedef struct crm_audit_rec {
    const char *action;      /* "create" "update" "delete" "erase" "privacy.erase"
                              * "privacy.export" "token.create" "token.revoke" */
    const char *coll, *id;   /* the subject, or NULL */
    int64_t rev;             /* 0 = none */
    uint64_t feed_seq;       /* 0 = none */
    const crm_value *fields; /* an array of field names, or NULL */
    const crm_value *detail; /* a map of facts that are not personal values, or NULL */
} crm_audit_rec;

/* Appends a in write transaction t, for t's actor (crm_txn_set_actor or
 * the unit's user/role; "system" when none). */
int crm_txn_audit(crm_txn *t, const crm_audit_rec *a, crm_err *err);

typedef struct crm_audit_filter {
    int64_t from_ms, to_ms;      /* ts range, inclusive; 0 = open */
    const char *coll, *id;       /* NULL = any */
    const char *user, *action;   /* NULL = any */
    uint64_t after, before;      /* seq cursor (exclusive); 0 = from the start / end */
    int desc;                    /* newest first (walks back from before) */
    size_t limit;                /* 0 = CRM_AUDIT_DEFAULT_LIMIT; max CRM_AUDIT_MAX_LIMIT */
} crm_audit_filter;

/* The entries matching f: *entries a new array of maps (the entry fields
 * plus "hash", hex), caller owns; *next the seq to pass as after (asc) or
 * before (desc) for the next page, 0 when none.  At most 100,000 entries
 * are scanned per call (then *next says where to go on).  BAD_REQUEST for
 * a limit past the maximum. */
int crm_audit_query(crm_txn *t, const crm_audit_filter *f, crm_value **entries, uint64_t *next,
                    crm_err *err);

typedef struct crm_audit_report {
    uint64_t entries;   /* entries walked */
    uint64_t last;      /* last seq */
    uint64_t bad_seq;   /* the first broken entry (0 when intact) */
    char why[256];
} crm_audit_report;

/* Walks the chain in read transaction t: CRM_OK when intact; CONFLICT with
 * r->bad_seq and r->why naming the first broken entry; other codes for a
 * store failure. */
int crm_audit_verify(crm_txn *t, crm_audit_report *r, crm_err *err);

/* `crmd audit verify [--data DIR]` (argv[0] is "audit"); the exit code. */
int crm_audit_cli(int argc, char **argv);

#endif
