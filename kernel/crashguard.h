/*
 * crashguard -- which plugin crashed the server, and quarantine for a
 * plugin that keeps crashing it (reliability plan R19).
 *
 * A plugin is C in crmd's own process: a bad pointer in one of its hooks
 * takes the server down, and a supervisor (systemd's Restart=, see
 * docs/operations.md) starts it again, which runs the same hook on the same
 * kind of record and crashes again.  So on a fatal signal (SEGV, BUS, FPE,
 * ILL, ABRT) the handler appends "NAME SIGNAL\n" to DATA/plugin-crashes,
 * naming the plugin whose code the crashing thread was running (its init,
 * a hook, a timer or a method; the bus says which through
 * crm_crashguard_enter/leave), then lets the signal kill the process as it
 * would have.  At the next start the loader skips, with a warning, every
 * plugin named there at least max_crashes times: the server comes up
 * without it instead of crashing in a loop.  Deleting the file (or the
 * plugin's lines) lets it load again.
 *
 * Writes are committed before they are acknowledged, so a crash loses only
 * the batch it interrupted, never an acknowledged write.
 *
 * Threads: enter/leave are per thread (a plugin's worker thread that
 * crashes outside any hook is named "unknown").  install once, before the
 * plugins load.
 */
#ifndef CRM_CRASHGUARD_H
#define CRM_CRASHGUARD_H

#include "err.h"

#define CRM_CRASHGUARD_FILE "plugin-crashes"
#define CRM_CRASHGUARD_DEFAULT_MAX 3

/* Installs the fatal-signal handlers (on an alternate stack, so a stack
 * overflow is reported too) writing to DATA/plugin-crashes.  max_crashes:
 * quarantine after this many recorded crashes (0 = never quarantine).
 * CRM_OK, or UNAVAILABLE when the handlers cannot be installed. */
int crm_crashguard_install(const char *data_dir, int max_crashes, crm_err *err);

/* A thread other than the one that installed the guard (the writer) runs
 * plugin code: gives it an alternate signal stack of its own (they are per
 * thread), so its stack overflows are recorded too.  Returns the stack to
 * hand to crm_crashguard_thread_done when the thread ends (NULL when the
 * guard is not installed or no stack could be set). */
void *crm_crashguard_thread_init(void);
void crm_crashguard_thread_done(void *stack);

/* The plugin whose code this thread runs from now on (name borrowed; must
 * stay valid until the matching leave); returns the previous one, to give
 * back to leave.  NULL names no plugin (a script or the kernel). */
const char *crm_crashguard_enter(const char *plugin);
void crm_crashguard_leave(const char *previous);

/* 1 when plugin crashed the server max_crashes times or more (as recorded
 * in DATA/plugin-crashes when install ran); *count gets the number. */
int crm_crashguard_quarantined(const char *plugin, int *count);

#endif
