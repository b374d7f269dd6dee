/*
 * faultutil -- what the fault tests (reliability plan R2-R7) share: a
 * pipelined write storm over one WebSocket with a ledger of what the server
 * answered, a check that every acknowledged write is in the store, and the
 * undo of fault_shim's power-loss journal.
 */
#ifndef CRM_TEST_FAULTUTIL_H
#define CRM_TEST_FAULTUTIL_H

#include "wsclient.h"

/* What the server answered to write i of a storm. */
enum { FAULT_NONE = 0, FAULT_OK, FAULT_UNAVAILABLE, FAULT_OTHER };

typedef struct fault_ledger {
    int n;            /* writes sent */
    int cap;
    signed char *st;  /* FAULT_* per write */
    int ok, unavailable, other;
    int last_ok;      /* index of the last OK write, -1 */
    int first_unavailable; /* -1 */
    char unavailable_msg[256]; /* the message of the first UNAVAILABLE */
} fault_ledger;

void fault_ledger_free(fault_ledger *l);

/* The record id and name of write i of a storm with tag (ids are stable so a
 * later check can look them up). */
void fault_id(const char *tag, int i, char *id, size_t cap);

/* Sends count creates of contacts (id fault_id(tag, l->n ...)), at most
 * window in flight, each with a body of pad bytes, and records every answer
 * in l (appended: a ledger can span several storms).  plain: frames with a
 * zero mask key, so the request text shows in a syscall trace.  Stops early
 * when the connection closes or no answer comes within timeout_ms; with
 * stop_after_unavailable > 0, also after that many UNAVAILABLE answers.
 * Returns the number of answers received. */
int fault_storm(ws_client *c, const char *tag, fault_ledger *l, int count, int window, int pad,
                int plain, int stop_after_unavailable, int timeout_ms);

/* Connects and authenticates as admin: 0 or -1. */
int fault_connect(ws_client *c, const crmd_proc *p);

/* Checks over a fresh connection that every write acknowledged in l is in
 * the store with its name.  Returns the number missing or wrong (0 is a
 * pass); *absent_unavail (may be NULL) gets how many UNAVAILABLE writes are
 * absent. */
int fault_check_acked(const crmd_proc *p, const char *tag, const fault_ledger *l,
                      int *absent_unavail);

/* Forks a process that opens the store in data (its own LMDB environment),
 * begins a read transaction and holds it (a long reader).  Returns its pid
 * once the transaction is open (-1 on failure); *cmd gets the pipe that
 * fault_reader_finish uses.  Fork it while this process has no LMDB
 * environment open. */
pid_t fault_reader_start(const char *data, int *cmd);
/* Tells the reader to read its snapshot, close the store and exit, and
 * reaps it: 0 when it could read (its snapshot holds contacts), else
 * non-zero. */
int fault_reader_finish(pid_t pid, int cmd);

/* crmd_start of fault_crmd() on data with fault_shim preloaded and its undo
 * journal at journal (CRM_FAULT_JOURNAL); the variables are unset again
 * afterwards, so later processes (a restart after the power loss) run
 * without the shim.  crmd_start's code. */
int fault_start_journaled(crmd_proc *p, const char *shim, const char *journal, const char *data);

/* Power loss (fault_shim's CRM_FAULT_JOURNAL): undoes the journal on the
 * data file mdb from its last record back, and truncates the file to its
 * size at the last sync -- the disk of a machine that lost power, with every
 * write not yet synced lost.  Returns the number of writes undone (0 when
 * there is no journal, -1 on error); *bytes gets how many bytes were
 * restored.  The caller removes the journal. */
long fault_journal_undo(const char *journal, const char *mdb, long *bytes);

/* $CRM_SCHEMAS or the source tree's schemas. */
const char *fault_schemas(void);
/* $CRMD_BIN (required; exits 2 when unset). */
const char *fault_crmd(void);

/* Prints "name: FAIL: ..." and returns 1. */
int fault_fail(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
