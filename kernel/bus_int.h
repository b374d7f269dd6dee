/*
 * bus_int -- the bus's private structures, shared by bus.c (registry,
 * dispatch, after-hooks, methods), bus_timers.c (durable timers) and
 * bus_api.c (the crm_api table).  Nothing else includes this header.
 */
#ifndef CRM_BUS_INT_H
#define CRM_BUS_INT_H

#include <stdarg.h>

#include "bus.h"

#define CRM_BUS_NAME_MAX 128
#define CRM_DEAD_LETTERS "dead_letters"

struct crm_plugin {
    crm_bus *b;
    char kind[16];
    char *name;
    char who[160];        /* "plugin loyalty", "script lifecycle.lua": log lines */
    crm_value *config;    /* owned */
    void *host;
    int sealed;
    crm_err err;          /* the last refused registration */
    const char *guard;    /* the name the crash guard records while its code runs
                           * (a plugin's file name; borrowed); NULL = none */
    struct crm_plugin *next;
};

typedef struct crm_hook {
    struct crm_hook *next;
    crm_plugin *owner;
    char coll[CRM_BUS_NAME_MAX];
    char op[8];           /* create, update, delete or * */
    int phase;
    crm_hook_fn fn;
    void *ud;
    /* after-hooks: a consumer of the feed */
    char *name;           /* durable cursor name: "<owner>/<name or event>" */
    uint64_t cursor;      /* committed */
    uint64_t next_cursor; /* where the current round got to (kept if it commits) */
    int attempts;         /* failures in a row on the entry after cursor */
    int64_t retry_at;     /* store clock, ms */
    char lasterr[256];
    /* Events to decode next round (0: not yet known).  A round decodes what
     * it takes before running any, and the round budget may stop it after
     * a few: taking max_per_round every time decoded hundreds of entries
     * per round to run a handful (after-hooks then fell behind a busy
     * writer).  Doubles while a round runs all it took, shrinks to what
     * the budget let run. */
    size_t take;
} crm_hook;

typedef struct crm_named {  /* a timer handler or a method */
    struct crm_named *next;
    crm_plugin *owner;
    char *name;
    void *fn;             /* crm_timer_fn or crm_method_fn */
    void *ud;
} crm_named;

typedef struct crm_timer_retry {
    struct crm_timer_retry *next;
    uint8_t key[16];
    int attempts;
    int64_t retry_at;
} crm_timer_retry;

struct crm_arena_block {
    struct crm_arena_block *next;
    _Alignas(16) unsigned char data[];
};

struct crm_ctx {
    crm_bus *b;
    crm_plugin *p;
    crm_txn *t;           /* NULL outside a call (init) */
    const char *user, *role;
    crm_plugin *origin;   /* before-hooks: whose code made the write (NULL: a client) */
    const char *crash_prev; /* the crash guard's name before this call */
    crm_err err;
    struct crm_arena_block *arena;
};

struct crm_bus {
    crm_store *s;
    crm_bus_opts o;
    crm_plugin *owners;
    crm_hook *hooks;      /* registration order */
    crm_named *timers, *methods;
    crm_unit unit;
    int in_round;
    int64_t next_due;     /* earliest known due timer (store clock); INT64_MAX = none */
    int64_t sched_min;    /* earliest timer scheduled during the current round */
    double round_deadline; /* monotonic ms: the current round's budget ends */
    double batch_start;    /* monotonic ms: crm_bus_apply began the batch */
    size_t round_turn;    /* which after-hook consumer goes first in the next round */
    uint64_t timer_ctr;
    crm_timer_retry *retries;
    size_t timers_count;  /* as of the last scan */
    crm_bus_stats stats;
    crm_api api;
    /* the owners whose code is running now, innermost last: a write made
     * while one runs is that owner's (write_origin) */
    crm_plugin *running[4 * CRM_MAX_HOOK_DEPTH + 8];
    int nrunning;
};

void crm_ctx_init(crm_ctx *c, crm_bus *b, crm_plugin *p, crm_txn *t, const char *user,
                  const char *role);
void crm_ctx_done(crm_ctx *c);
void crm_bus_vlog(crm_bus *b, int level, const char *who, const char *fmt, va_list ap);

/* bus.c */
int crm_bus_on(crm_plugin *p, const char *event, int phase, const char *name, crm_hook_fn fn,
               void *ud);
int crm_bus_on_timer(crm_plugin *p, const char *timer, crm_timer_fn fn, void *ud);
int crm_bus_method(crm_plugin *p, const char *method, crm_method_fn fn, void *ud);
int crm_bus_cursor_load(crm_bus *b, crm_hook *h);
int crm_bus_round(void *ud, crm_txn *t, crm_err *err);
typedef struct dead_letter {
    const char *kind, *handler, *owner, *error, *coll, *op, *record_id;
    int attempts;
    uint64_t seq;
    const crm_value *payload;
} dead_letter;
int crm_bus_dead_letter(crm_bus *b, crm_txn *t, const struct dead_letter *d, crm_err *err);
crm_named *crm_bus_find_timer(crm_bus *b, const char *name);

/* bus_timers.c */
int crm_bus_schedule(crm_ctx *c, double seconds, const char *timer, const crm_value *payload,
                     const char *key);
int crm_bus_cancel(crm_ctx *c, const char *timer, const char *key);
void crm_bus_timers_round(crm_bus *b, crm_txn *t);
void crm_bus_timers_done(crm_bus *b, int committed);
void crm_bus_timers_forget(crm_bus *b);
size_t crm_bus_timers_pending(crm_bus *b);
/* Due time of the first pending timer (INT64_MAX: none; 0 when unreadable). */
int64_t crm_bus_timers_first_due(crm_bus *b);

/* bus_api.c */
void crm_bus_api_init(crm_bus *b);
void crm_bus_api_forget(crm_bus *b);

#endif
