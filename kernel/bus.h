/*
 * bus -- hook registry and dispatch, durable after-hook cursors, durable
 * timers, `call` methods, and the crm_api function table that plugins (and
 * the Lua host, which is a thin layer over it) use.
 *
 * Owns: the registrations of every owner (a C plugin or a Lua script), the
 * before-hook the store calls inside each write's nested transaction, the
 * after-hook consumers (one durable cursor each, aux table "cursors"), the
 * timers (aux tables "timers" and "timer_keys"), retries with back-off and
 * the dead_letters collection.
 *
 * Exactly once: after-hooks and timers run inside the group commit (the net
 * layer adds crm_bus_unit to every batch): a hook's writes and its cursor's
 * step, or a timer's writes and its removal, are in one nested transaction
 * of the batch, so they commit together or not at all.
 *
 * Threads: the writer thread (writer.h) once the server serves; the
 * calling thread for in-process tools (demo, import, tests).
 */
#ifndef CRM_BUS_H
#define CRM_BUS_H

#include <crm/plugin.h>

#include "store.h"

typedef struct crm_bus crm_bus;

typedef struct crm_bus_opts {
    int max_attempts;      /* a failing after-hook / timer is tried this often, then
                            * dead-lettered; default 5 */
    int backoff_ms;        /* first retry delay, doubled per attempt; default 50 */
    size_t max_per_round;  /* feed entries per consumer, and due timers, per batch; default 512 */
    int round_budget_ms;   /* after-hooks stop taking further events in a round once it has
                            * run this long, or as long as the batch's client writes took
                            * before it if that is longer (each consumer that gets a turn
                            * runs at least one), so a burst of hook work cannot hold the
                            * writes behind it, and hooks keep up with a busy writer
                            * instead of falling ever further behind; with the slowest
                            * consumer over 4 x max_per_round changes behind, a round
                            * has no time limit (the hooks' lag stays bounded, client
                            * writes wait instead); turns rotate among consumers;
                            * default 10; 0 = no limit.  With clients_waiting set, the
                            * budget binds only while it says clients wait: with nobody
                            * waiting, a round takes all it may (max_per_round per
                            * consumer), so hooks catching up on an idle server pay one
                            * commit, and its flushes, per max_per_round changes rather
                            * than per 10 ms of hooks (on a busy disk a flush alone may
                            * take tens of ms) */
    /* Whether client writes wait behind the current round (the writer's
     * queue; crm_bus_set_clients_waiting); called from within rounds, on
     * the writer thread.  NULL: the budget always binds. */
    int (*clients_waiting)(void *ud);
    void *clients_waiting_ud;
    /* Log sink (level CRM_LOG_*, who: "plugin loyalty", "script lifecycle.lua"
     * or "bus").  NULL = stderr JSON lines. */
    void (*log)(void *ud, int level, const char *who, const char *msg);
    void *log_ud;
    /* How much faster the store's clock runs than real time (tests); the
     * bus turns timer due times into real waits with it.  Default 1. */
    double time_scale;
} crm_bus_opts;

void crm_bus_opts_default(crm_bus_opts *o);

/* Creates the bus over store s (borrowed, must outlive it) and installs its
 * before-hook dispatcher in s.  The schema must have a dead_letters
 * collection (crm_schema_load_dir adds it).  opts may be NULL. */
int crm_bus_new(crm_store *s, const crm_bus_opts *opts, crm_bus **out, crm_err *err);
/* Frees the bus; every owner must have been freed first. */
void crm_bus_free(crm_bus *b);
/* Sets opts.clients_waiting (the writer, when it starts; NULL when it stops). */
void crm_bus_set_clients_waiting(crm_bus *b, int (*fn)(void *ud), void *ud);

/* The function table handed to plugins (static storage, never freed). */
const crm_api *crm_bus_api(crm_bus *b);

/* ---- owners ---- */
/* A new owner of registrations: kind "plugin" or "script", name e.g. "loyalty"
 * or "lifecycle.lua" (copied).  config: the owner's configuration map,
 * ownership passes to the owner (may be NULL), also on failure (then it is
 * freed).  NULL on OOM. */
crm_plugin *crm_bus_owner_new(crm_bus *b, const char *kind, const char *name, crm_value *config);
/* Removes every registration of p (hooks, timers, methods) and frees p.
 * Durable state (cursors, pending timers) stays: a reload that registers
 * the same names carries on from it. */
void crm_bus_owner_free(crm_plugin *p);
/* Host data: the Lua host or plugin loader hangs its own state here. */
void crm_bus_owner_set_host(crm_plugin *p, void *host);
/* The name the crash guard records while p's code runs (crashguard.h;
 * borrowed, must outlive p); NULL = none (scripts). */
void crm_bus_owner_set_guard(crm_plugin *p, const char *name);
void *crm_bus_owner_host(crm_plugin *p);
crm_bus *crm_bus_owner_bus(crm_plugin *p);
/* Registrations are refused (CRM_BAD_REQUEST) once an owner is sealed;
 * hosts seal owners after init/load. */
void crm_bus_owner_seal(crm_plugin *p);
/* Why the owner's last registration was refused (borrowed; "" if none). */
const char *crm_bus_owner_errmsg(crm_plugin *p);

/* ---- the write path ---- */

/* A unit for the group commit that runs due after-hooks and timers, or NULL
 * when there is nothing to do now.  The net layer appends it to its batch,
 * then calls crm_bus_unit_done with the batch's result. */
crm_unit *crm_bus_unit(crm_bus *b);
void crm_bus_unit_done(crm_bus *b, crm_unit *u, int batch_rc);
/* One batch as the server runs it: units[0..n) plus, when the bus has work
 * now, its unit (appended at units[n], so units must have room for n + 1),
 * in one crm_store_apply; then crm_bus_unit_done.  *ran_bus (may be NULL)
 * says whether the bus's unit was in it.  n may be 0 (a bus-only round;
 * nothing is applied when the bus has nothing to do).  Returns the apply's
 * code (CRM_OK with nothing to do). */
int crm_bus_apply(crm_bus *b, crm_unit *units, size_t n, int *ran_bus, crm_err *err);
/* Runs bus-only rounds until nothing is due now, at most max_rounds (0 =
 * no limit).  CRM_OK when it settled; UNAVAILABLE when a round's commit
 * failed or max_rounds ran out first. */
int crm_bus_drain(crm_bus *b, size_t max_rounds, crm_err *err);

/* Milliseconds until the bus has work (0 = now), or -1 when it has none
 * until the next commit or schedule. */
int64_t crm_bus_next_work_ms(crm_bus *b);

/* ---- methods ---- */

/* True when a method of that name is registered. */
int crm_bus_has_method(crm_bus *b, const char *method);
/* Runs method inside t (a nested transaction of a batch).  user/role: the
 * caller (borrowed).  *result: the method's result, caller's (NULL = null).
 * NOT_FOUND for an unknown method; else the method's code and message. */
int crm_bus_call(crm_bus *b, crm_txn *t, const char *method, const crm_value *params,
                 const char *user, const char *role, crm_value **result, crm_err *err);

/* crm_bus_call in a batch of its own (one commit): for in-process callers
 * (crmd demo, benchmarks, tests).  params NULL = an empty map.  Returns
 * the method's code, or the commit's when the batch failed. */
int crm_bus_call_now(crm_bus *b, const char *method, const crm_value *params, const char *user,
                     const char *role, crm_value **result, crm_err *err);

/* ---- introspection (metrics, tests) ---- */
typedef struct crm_bus_stats {
    uint64_t hook_runs, hook_failures, timer_runs, timer_failures, dead_letters;
    uint64_t min_cursor;   /* the slowest after-hook consumer's cursor (last_seq if none) */
    size_t consumers, timers_pending;
} crm_bus_stats;
void crm_bus_stats_get(crm_bus *b, crm_bus_stats *st);

/* ---- logging ---- */

/* The owner's log line, as api->log would write it. */
void crm_bus_log(crm_bus *b, int level, const char *who, const char *fmt, ...) CRM_PRINTF(4, 5);

#endif
