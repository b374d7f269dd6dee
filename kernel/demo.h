/*
 * demo -- `crmd demo`: fills a store with realistic synthetic CRM data
 * (companies, agents, segments, campaigns, contacts, orders attributed to
 * campaigns, interactions, deals, NPS surveys, tickets moving through their
 * workflow) through the same write path as a served
 * write: the schema, store, bus, plugins and scripts are opened in-process
 * as `crmd serve` opens them, writes go through crm_store_apply in batches
 * (group commit) with the bus's unit in every batch, so before-hooks,
 * after-hooks and timers run as they would when served.
 *
 * Deterministic for a seed: the same seed, size and end date give the same
 * records (ids included; the store's _created/_updated and the values hooks
 * derive from the server clock are the real time).  Guide:
 * docs/features/demo.md.
 */
#ifndef CRM_DEMO_H
#define CRM_DEMO_H

#include <stdint.h>

#include "err.h"

typedef struct crm_demo_stats {
    uint64_t companies, agents, segments, contacts, orders, interactions, tickets;
    uint64_t campaigns, deals, surveys; /* surveys: the NPS ones generated (complaints.lua
                                         * adds CSAT surveys of its own on close) */
    uint64_t ticket_updates;    /* workflow steps applied */
    uint64_t refused;           /* writes the store or a hook refused (counted, skipped) */
    uint64_t hook_runs, timer_runs, hook_failures, timer_failures, dead_letters;
    uint64_t batches, last_seq;
    double seconds_records;     /* generating and writing (hooks keeping up) */
    double seconds_drain;       /* after-hooks and due timers still to run afterwards */
    double seconds_value;       /* value.recompute, when run */
    double seconds_total;
} crm_demo_stats;

typedef struct crm_demo_opts {
    const char *data, *schemas, *scripts, *plugins; /* as for `crmd serve` */
    long contacts;          /* default 100000 (about 10 orders each) */
    uint64_t seed;          /* default 1 */
    int years;              /* history length, default 2 */
    int64_t end_ms;         /* the history ends here; 0 = today 00:00 UTC */
    int force;              /* add to a store that already holds records */
    int value_recompute;    /* run value.recompute (when a script offers it) at
                             * the end and wait for it; default 1 */
    int progress;           /* 1 = progress on stderr (a bar on a TTY, else a
                             * line every 10 s); 0 = silent; default 1 */
    int no_sync;            /* MDB_NOSYNC (benchmarks only); default 0 */
    crm_demo_stats *stats;  /* filled when not NULL */
} crm_demo_opts;

void crm_demo_opts_default(crm_demo_opts *o);

/* Generates the data.  CONFLICT when the store holds records and !force,
 * or when a server (or an import) holds the data folder (datalock.h);
 * the code of the first failure to open the schema, store, plugins or
 * scripts (as `crmd serve` reports it); UNAVAILABLE when a batch cannot be
 * committed.  Writes refused one by one (a hook's REJECTED, say) are
 * counted in stats->refused and skipped. */
int crm_demo_run(const crm_demo_opts *o, crm_err *err);

#endif
