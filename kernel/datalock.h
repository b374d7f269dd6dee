/*
 * datalock -- who has a data folder to itself.
 *
 * `crmd serve`, `crmd import`, `crmd restore` and `crmd demo` each need a
 * data folder to themselves: a second writer process would interleave its batches with
 * the server's hooks and timers, and a restore swaps the folder out from
 * under whoever has it open.  They take an exclusive flock(2) on
 * DIR/crmd.lock, which holds a line naming the holder ("crmd serve pid
 * 1234") for the refusal message.  The kernel drops the lock when the
 * holder exits, also on a crash or kill -9, so there is no stale lock to
 * clean up.
 *
 * Readers that LMDB already makes safe beside a server (`crmd backup`,
 * `crmd export`, `crmd token`) take no lock.
 */
#ifndef CRM_DATALOCK_H
#define CRM_DATALOCK_H

#include "err.h"

typedef struct crm_datalock crm_datalock;

#define CRM_DATALOCK_FILE "crmd.lock"

/* Creates dir when missing and takes its lock for `what` (e.g. "crmd
 * serve"; copied into the lock file).  On success the caller owns *out and
 * releases it with crm_datalock_release.  CONFLICT when another process
 * holds it: "data folder D is in use by crmd serve pid 1234; stop it
 * first"; UNAVAILABLE when the folder or file cannot be made. */
int crm_datalock_take(const char *dir, const char *what, crm_datalock **out, crm_err *err);

/* Releases and frees; NULL is fine. */
void crm_datalock_release(crm_datalock *l);

#endif
