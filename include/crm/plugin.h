/*
 * crm/plugin.h -- the one public header of crmd: what a C plugin may use.
 *
 * A plugin is a shared object in the plugins folder.  It exports one symbol,
 * the entry point crm_plugin_entry (declare it with CRM_PLUGIN_DECLARE), and
 * links against no kernel symbol: everything it may do goes through the
 * table of function pointers (crm_api) that the kernel hands to its init.
 * The Lua `crm` module is a thin layer over the same table, so a C plugin
 * and a Lua script can always do the same things.
 *
 * Compatibility rules (SQLite's extension table, Redis's module API):
 *  - crm_api only ever grows at its end.  A plugin built against an older,
 *    shorter table keeps loading; a plugin that needs a longer table than
 *    the kernel has is refused at load with both sizes in the message.
 *  - CRM_PLUGIN_ABI changes only if a member changes meaning (aim: never).
 *  - Error codes never move: a retired code keeps its number.
 *
 * Threads: the kernel calls a plugin on one thread at a time.  init runs
 * on the main thread before the server serves, fini after it stopped;
 * every hook, timer and method runs on the kernel's writer thread, which
 * owns the write transaction: one call at a time, never two at once, and
 * each call sees the memory the previous one left (the kernel orders
 * them), so a plugin
 * needs no locks for state only its callbacks touch.  Every member may be
 * called only from inside such a call (init, a hook, a timer, a method),
 * on the thread that made it.  The event loop (sockets, reads, pushes) is
 * another thread and does not wait for a plugin, but every write queued
 * behind the running batch does: never block, sleep or do network I/O in
 * a callback.  Hand slow work to a thread of your own and bring results
 * back as records through a later hook or timer (docs/plugins.md shows
 * how).
 *
 * Ownership, said once here and at each member: a crm_value* a member
 * *returns* through an out-parameter is the caller's (free it with
 * api->value_free) unless it says "borrowed"; values *passed in* are
 * borrowed for the call.  Strings passed in are copied when kept.
 */
#ifndef CRM_PLUGIN_H
#define CRM_PLUGIN_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CRM_PLUGIN_ABI 1 /* bump only if a member changes meaning; aim for never */

enum crm_code {
    CRM_OK = 0,
    CRM_BAD_REQUEST,
    CRM_UNAUTHENTICATED,
    CRM_FORBIDDEN,
    CRM_NOT_FOUND,
    CRM_CONFLICT,
    CRM_VALIDATION,
    CRM_REJECTED,
    CRM_TOO_LARGE,
    CRM_RATE_LIMITED,
    CRM_UNAVAILABLE,
    CRM_SCRIPT_ERROR,
    CRM_INTERNAL,
    CRM_CODE_LAST /* never use */
};

/* An error: a stable code plus a human message (curl's CURL_ERROR_SIZE). */
typedef struct crm_err {
    int code;
    char msg[256];
} crm_err;

/* ---- values ----
 * Records, patches, where-filters, method params and results are trees of
 * crm_value: the same tree the wire's JSON and msgpack decode into.  The
 * layout below is part of the ABI: read it directly.  Build and free trees
 * only through the api members (the kernel's allocator owns them). */
typedef enum crm_type {
    CRM_T_NIL = 0,
    CRM_T_BOOL,
    CRM_T_INT,  /* int64 */
    CRM_T_NUM,  /* finite double */
    CRM_T_STR,  /* bytes + length, NUL-terminated, valid UTF-8 */
    CRM_T_ARR,
    CRM_T_MAP   /* string keys, insertion order, no key twice */
} crm_type;

typedef struct crm_value crm_value;

typedef struct crm_kv {
    char *key; /* owned by the map, NUL-terminated */
    size_t klen;
    crm_value *val; /* owned by the map */
} crm_kv;

struct crm_value {
    crm_type type;
    union {
        int b;
        int64_t i;
        double n;
        struct {
            char *s; /* owned, NUL-terminated */
            size_t len;
        } str;
        struct {
            crm_value **items; /* owned */
            size_t n, cap;
        } arr;
        struct {
            crm_kv *kv; /* owned */
            size_t n, cap;
        } map;
    } u;
};

/* ---- what the kernel calls ---- */

typedef struct crm_plugin crm_plugin; /* a loaded plugin (or a Lua script): the owner of registrations */
typedef struct crm_ctx crm_ctx;       /* one call into a plugin: its transaction, caller and memory */
typedef struct crm_where crm_where;   /* a compiled where-filter (api->where_compile) */

enum crm_phase { CRM_BEFORE = 1, CRM_AFTER = 2 };
enum crm_log_level { CRM_LOG_DEBUG = 0, CRM_LOG_INFO, CRM_LOG_WARN, CRM_LOG_ERROR };

/* A record event.  Everything is borrowed for the duration of the call. */
typedef struct crm_event {
    const char *collection;
    const char *op;         /* "create", "update" or "delete" */
    const char *id;
    crm_value *record;      /* the record (before: about to be stored, and the
                             * hook may change it in place; after: as stored);
                             * NULL for delete */
    const crm_value *prev;  /* the record before the change; NULL on create */
    uint64_t seq;           /* after-hooks: the change's feed seq; before: 0 */
    int phase;              /* CRM_BEFORE or CRM_AFTER */
} crm_event;

/* Hooks, timers and methods return CRM_OK, or an error code after filling
 * the message with api->error (a code without a message gets a generic one).
 *  - before-hook: runs inside the write's nested transaction.  CRM_REJECTED
 *    refuses the write (the client gets REJECTED with the message); any other
 *    code fails it with that code.  Writes made through ctx belong to the same
 *    transaction and are undone with it.
 *  - after-hook: runs once the change is durable, from the change feed,
 *    through a durable cursor of its own.  Its writes and the cursor's step
 *    commit together, so its effect happens exactly once, also across a
 *    crash.  A failure undoes its writes; it is retried with back-off and
 *    then parked in the dead_letters collection, and the feed goes on.
 *  - timer: fired once its time comes (also after a restart), in a
 *    transaction that removes the timer, so it fires exactly once; a failure
 *    is retried and dead-lettered like an after-hook.
 *  - method: serves the `call` op inside a write transaction (its writes
 *    are atomic with each other and acknowledged after the commit); *result
 *    becomes the reply's result (ownership passes to the kernel; NULL = null). */
typedef int (*crm_hook_fn)(crm_ctx *ctx, crm_event *ev, void *ud);
typedef int (*crm_timer_fn)(crm_ctx *ctx, const char *name, const crm_value *payload, void *ud);
typedef int (*crm_method_fn)(crm_ctx *ctx, const crm_value *params, crm_value **result,
                             void *ud);

/* ---- the function table ---- */
typedef struct crm_api {
    uint32_t abi;      /* CRM_PLUGIN_ABI of the kernel */
    uint32_t size;     /* sizeof(crm_api) in the kernel: members past your size are absent */

    /* -- values (any thread may build and free values) -- */
    crm_value *(*value_nil)(void);               /* new values: caller owns; NULL on OOM */
    crm_value *(*value_bool)(int b);
    crm_value *(*value_int)(int64_t i);
    crm_value *(*value_num)(double n);           /* NaN and infinities are refused (NULL) */
    crm_value *(*value_str)(const char *s, size_t len); /* copies s; must be UTF-8 */
    crm_value *(*value_arr)(void);
    crm_value *(*value_map)(void);
    crm_value *(*value_dup)(const crm_value *v); /* deep copy, caller owns */
    void (*value_free)(crm_value *v);            /* NULL is fine */
    /* Containers take ownership of val/item, also when they fail. 0 ok, -1 OOM. */
    int (*map_set)(crm_value *map, const char *key, crm_value *val);
    crm_value *(*map_get)(const crm_value *map, const char *key); /* borrowed; NULL if absent */
    int (*map_del)(crm_value *map, const char *key);               /* 1 removed, 0 absent */
    int (*arr_push)(crm_value *arr, crm_value *item);
    /* JSON text of v: a new NUL-terminated string the caller frees with
     * api->mem_free; NULL on OOM. */
    char *(*to_json)(const crm_value *v, size_t *len);
    /* Parses JSON text into *out (caller owns).  CRM_BAD_REQUEST on bad text. */
    int (*from_json)(const char *text, size_t len, crm_value **out, crm_err *err);
    void (*mem_free)(void *p);                   /* frees what to_json returned */

    /* -- records: inside a call, in ctx's transaction --
     * Reads see everything committed before and every earlier write of the
     * same transaction.  Writes run the write path in full (schema, refs,
     * unique indexes, before-hooks, feed) in a nested transaction: a refused
     * write leaves the transaction as it was, and the caller may go on.
     * Return CRM_OK or a code; the message is in api->errmsg(ctx). */
    int (*get)(crm_ctx *ctx, const char *coll, const char *id, crm_value **out);
                                                 /* NOT_FOUND when absent; *out caller's */
    int (*create)(crm_ctx *ctx, const char *coll, const crm_value *rec, crm_value **out);
                                                 /* *out (may be NULL): the stored record, caller's */
    int (*update)(crm_ctx *ctx, const char *coll, const char *id, const crm_value *patch,
                  int64_t if_rev, crm_value **out); /* if_rev 0 = any rev; nil in patch removes */
    int (*remove)(crm_ctx *ctx, const char *coll, const char *id, int64_t if_rev);
    /* Like the wire's query: *out = {"records": [...], "next": cursor|null},
     * caller's.  where may be NULL; order_by "-field" sorts descending; limit
     * 0 = 100 (max 1000); after = a previous page's next, or NULL. */
    int (*query)(crm_ctx *ctx, const char *coll, const crm_value *where, const char *order_by,
                 size_t limit, const char *after, crm_value **out);

    /* -- errors -- */
    /* Sets ctx's error and returns code, for `return api->error(ctx,
     * CRM_REJECTED, "credit limit is %d", lim);` */
    int (*error)(crm_ctx *ctx, int code, const char *fmt, ...)
#if defined(__GNUC__)
        __attribute__((format(printf, 3, 4)))
#endif
        ;
    const char *(*errmsg)(crm_ctx *ctx);         /* last error message on ctx; borrowed */

    /* -- registration: from init (or, for Lua, while a script loads) --
     * event is "collection.op" (op: create, update, delete, or * for all;
     * collection * for every collection, e.g. "*.*").
     * name makes an after-hook's durable cursor survive reloads and
     * restarts; NULL derives one from the owner and event.  A new after-hook
     * starts at the current end of the feed. */
    int (*on)(crm_plugin *p, const char *event, int phase, const char *name, crm_hook_fn fn,
              void *ud);
    int (*on_timer)(crm_plugin *p, const char *timer, crm_timer_fn fn, void *ud);
    int (*method)(crm_plugin *p, const char *method, crm_method_fn fn, void *ud);

    /* -- timers: durable; part of ctx's transaction (undone with it) --
     * Fires the handler registered for timer after seconds (on the server
     * clock, which a test setting may run faster).  key, when not NULL,
     * names the timer: scheduling (timer, key) again replaces the pending
     * one.  payload (may be NULL) is copied. */
    int (*schedule)(crm_ctx *ctx, double seconds, const char *timer, const crm_value *payload,
                    const char *key);
    int (*cancel)(crm_ctx *ctx, const char *timer, const char *key); /* NOT_FOUND if none */
    int64_t (*now)(crm_ctx *ctx);                /* server clock, ms since the epoch */

    /* -- the caller: methods get the caller's identity; so do before-hooks
     * running for a client's write (crmd 0.3; NULL when a plugin's or a
     * script's write triggered them); after-hooks and timers get NULL -- */
    const char *(*caller_user)(crm_ctx *ctx);    /* token id; borrowed */
    const char *(*caller_role)(crm_ctx *ctx);    /* role name; borrowed */

    /* -- logging and configuration -- */
    void (*log)(crm_plugin *p, int level, const char *fmt, ...)
#if defined(__GNUC__)
        __attribute__((format(printf, 3, 4)))
#endif
        ;
    /* The plugin's configuration (plugins/NAME.json beside NAME.so), a map;
     * NULL when there is none.  key NULL returns the whole map.  Borrowed,
     * valid until fini. */
    const crm_value *(*config)(crm_plugin *p, const char *key);
    const char *(*plugin_name)(crm_plugin *p);   /* borrowed */

    /* -- per-call memory: freed by the kernel when the call returns -- */
    void *(*alloc)(crm_ctx *ctx, size_t n);      /* NULL on OOM; 16-byte aligned */
    crm_plugin *(*ctx_plugin)(crm_ctx *ctx);     /* the plugin this call belongs to */
    /* The message of p's most recent refused registration (on, on_timer,
     * method); "" when none was refused.  Borrowed, valid until p's next
     * registration. */
    const char *(*registration_error)(crm_plugin *p);
    /* In a before-hook: the plugin or script whose hook, timer or method
     * made the write being checked, or NULL when a client made it (through
     * the WebSocket API).  Lets a plugin keep its own collections to itself
     * (refuse writes that are not its own).  NULL outside a before-hook. */
    crm_plugin *(*write_origin)(crm_ctx *ctx);

    /* -- where-filters (crmd 0.2) --
     * The wire's `where` (field -> value | {op: value}, ops eq ne lt lte gt
     * gte in prefix), compiled once and matched against records, with the
     * semantics of the query op and of record subscriptions.
     * where_compile checks where against collection coll as the query op
     * does (unknown field of a strict collection, bad operator: BAD_REQUEST
     * with the message in err, which may be NULL); where NULL or nil matches
     * everything.  where is copied.  *out is the caller's: free it with
     * where_free.  In init or a callback (it reads the schemas, which never
     * change while serving); it needs no ctx.  where_match and where_free may run on any thread. */
    int (*where_compile)(crm_plugin *p, const char *coll, const crm_value *where,
                         crm_where **out, crm_err *err);
    int (*where_match)(const crm_where *w, const crm_value *rec); /* 1 match, 0 not (or not a map) */
    void (*where_free)(crm_where *w);                             /* NULL is fine */

    /* -- roles (crmd 0.3) --
     * 1 when schemas/roles.json hides field of coll from role (reads,
     * filters and subscriptions of that role never see it), else 0 (also
     * for admin, an unknown role, or role NULL).  A plugin that evaluates
     * filters on a client's behalf (segment rules) refuses hidden fields
     * with it, as the query op does.  Any callback; needs no ctx state. */
    int (*field_hidden)(crm_ctx *ctx, const char *role, const char *coll, const char *field);
    /* new members go here, at the end */
} crm_api;

/* True when the kernel's table has member m (a plugin built against a newer
 * header may run on an older kernel only if it checks before use):
 *     if (CRM_API_HAS(api, registration_error)) ...                       */
#define CRM_API_HAS(api, m) \
    (offsetof(crm_api, m) + sizeof(((crm_api *)0)->m) <= (size_t)(api)->size)

/* ---- the entry point ---- */

/* init registers hooks, timers and methods and returns CRM_OK, or an error
 * code with a message in errbuf (start-up stops with it; every registration
 * the plugin made is removed).  fini (may be NULL) runs at shutdown. */
typedef struct crm_plugin_info {
    uint32_t abi;        /* CRM_PLUGIN_ABI the plugin was built with */
    uint32_t api_size;   /* sizeof(crm_api) the plugin was built with */
    const char *name;    /* short name; defaults to the file name */
    const char *version; /* the plugin's own version, for logs */
    int (*init)(crm_plugin *p, const crm_api *api, char *errbuf, size_t errcap);
    void (*fini)(crm_plugin *p, const crm_api *api);
} crm_plugin_info;

#define CRM_PLUGIN_ENTRY "crm_plugin_entry"
typedef const crm_plugin_info *(*crm_plugin_entry_fn)(void);

/* In one source file of the plugin:
 *     CRM_PLUGIN_DECLARE("loyalty", "1.0", my_init, my_fini);           */
#if defined(__GNUC__)
#define CRM_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define CRM_PLUGIN_EXPORT
#endif
#define CRM_PLUGIN_DECLARE(name, version, init, fini)                                   \
    CRM_PLUGIN_EXPORT const crm_plugin_info *crm_plugin_entry(void);                     \
    CRM_PLUGIN_EXPORT const crm_plugin_info *crm_plugin_entry(void)                      \
    {                                                                                    \
        static const crm_plugin_info info = {CRM_PLUGIN_ABI, (uint32_t)sizeof(crm_api), \
                                             name, version, init, fini};                 \
        return &info;                                                                    \
    }

#ifdef __cplusplus
}
#endif
#endif
