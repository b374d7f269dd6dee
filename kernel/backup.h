/*
 * backup -- `crmd backup` and `crmd restore`: a compacted, consistent copy
 * of the LMDB environment, and swapping one in.
 *
 * A backup is a folder: data.mdb (what mdb_env_copy2 with MDB_CP_COMPACT
 * writes: every database of the environment -- collections, indexes, the
 * feed, meta, tokens, cursors, timers -- as of one read transaction, free
 * pages left out) and crmd-backup.json, the manifest (format, version,
 * created_ms, source, last_seq, bytes, and the entry count of every
 * database).  It is written under a temporary name beside PATH and renamed
 * into place only when complete, so PATH either does not exist or holds a
 * whole backup.
 *
 * Copying beside a running server is LMDB's own guarantee: the copy is a
 * read transaction in a second process, which the lock file (store.c opens
 * the environment without MDB_NOLOCK) coordinates with the server's writer;
 * the server is never paused (its writes go on; pages the copy still reads
 * are not reused until it ends).
 *
 * Restore checks before it replaces anything: the manifest parses, the
 * copy's databases hold what the manifest says, the data opens as a store
 * for the current schemas with the manifest's last_seq, and
 * crm_store_verify passes (indexes agree with records, feed has no gap).
 * Then the staged folder and the data folder are exchanged in one
 * renameat2(RENAME_EXCHANGE): the data folder is at every instant either
 * the old data or the restored data.  The old data is kept beside it as
 * DATA.pre-restore-<time> (never deleted by crmd).
 *
 * Never: restores into a folder a server holds (crm_datalock refuses), or
 * writes into the backup folder (it is opened read-only, without a lock
 * file).  Backups are trusted input: LMDB does not defend against a
 * deliberately forged data.mdb.
 */
#ifndef CRM_BACKUP_H
#define CRM_BACKUP_H

#include <stdint.h>

#include "err.h"

#define CRM_BACKUP_MANIFEST "crmd-backup.json"
#define CRM_BACKUP_FORMAT "crmd-backup"
#define CRM_BACKUP_VERSION 1

typedef struct crm_backup_info {
    uint64_t last_seq;      /* the copy's meta last_seq */
    uint64_t records;       /* entries in the collections (c:*) */
    uint64_t bytes;         /* size of the copied data.mdb */
    uint64_t databases;     /* named databases copied */
    char old_data[4400];    /* restore: where the replaced data went ("" if none) */
} crm_backup_info;

/* Copies the store in data (which a server may be serving) to a new folder
 * dest, which must not exist.  info may be NULL.  Errors: NOT_FOUND (no
 * store in data), CONFLICT (dest exists), UNAVAILABLE (LMDB or I/O, e.g. a
 * full disk; nothing is left at dest). */
int crm_backup_create(const char *data, const char *dest, crm_backup_info *info, crm_err *err);

/* Replaces the store in data with the backup in src, after the checks
 * above against the schemas in schemas_dir.  data may not exist yet.
 * info may be NULL.  Errors: CONFLICT (a server or import holds data),
 * BAD_REQUEST (src is not a backup, or does not match its manifest, or
 * fails verification), UNAVAILABLE (I/O); on any error data is untouched. */
int crm_backup_restore(const char *src, const char *data, const char *schemas_dir,
                       crm_backup_info *info, crm_err *err);

#endif
