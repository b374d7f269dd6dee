/*
 * net_int -- structures shared by net.c (libwebsockets glue, sessions,
 * send queues, HTTP) and ops.c (requests, the write batch, subscriptions).
 * Nothing else includes this header.
 */
#ifndef CRM_NET_INT_H
#define CRM_NET_INT_H

#include <libwebsockets.h>
#include <stdatomic.h>

#include "auth.h"
#include "codec.h"
#include "bus.h"
#include "net.h"
#include "writer.h"

typedef struct outmsg {
    struct outmsg *next;
    size_t len;
    int binary;
    unsigned char buf[]; /* LWS_PRE headroom, then len bytes */
} outmsg;

/* What one queued message of len bytes costs in memory (its malloc with
 * the allocator's 8-byte header, rounded to 16 as glibc does): the
 * send-queue limit counts this, so a flood of tiny replies is bounded as
 * tightly as a few big ones. */
#define crm_outmsg_cost(len) ((sizeof(outmsg) + LWS_PRE + (len) + 8 + 15) / 16 * 16)

typedef struct crm_sub {
    struct crm_sub *next;
    int id;
    char coll[72];
    crm_value *where;   /* owned; NULL = every record */
    crm_filter *filter; /* where, compiled once; borrows where */
    crm_value *agg;     /* aggregate subscriptions: the aggregate args (owned) */
    crm_value *groups;  /* the figures last pushed (owned) */
    int dirty;          /* a matching change came since the last push */
    int64_t pushed_ms;
    uint64_t from_seq;  /* pushes start after this seq */
} crm_sub;

/* One per connection, allocated by lws (per_session_data_size), zeroed. */
typedef struct crm_sess {
    struct lws *wsi;
    crm_net *net;
    int is_ws, msgpack, authed;
    int auth_failures;          /* refused auths on this connection (op_auth closes at 5) */
    char role[72];
    char user[32];
    uint8_t token_hash[CRM_TOKEN_HASH_LEN];
    unsigned char *rx;  /* reassembly of a fragmented message */
    size_t rxlen;
    outmsg *qh, *qt;
    size_t qbytes;      /* memory the queue holds (crm_outmsg_cost of each) */
    int rx_paused;      /* why reading is stopped: CRM_RX_* bits (0: reading) */
    int close_code;     /* when set: close (after the queue when close_drain) */
    int close_drain;
    const char *close_why;
    crm_sub *subs;
    int nsubs, next_sub;
    int pending;        /* writes of this session in the current batch */
    crm_value *deferred;/* requests held until this session's writes commit */
    int64_t connected_ms, token_checked_ms;
    double bucket;      /* rate limit tokens */
    int64_t bucket_ms;
    struct crm_sess *next, *prev;
} crm_sess;

typedef struct crm_item {
    crm_sess *s;        /* NULL once the session closed */
    crm_value *req;     /* owned: the request; writes borrow from it */
    crm_write *writes;
    size_t nw;
    int is_tx;
    int op;             /* metrics index */
    /* a `call`: method and params borrowed from req; runs as a function unit */
    const char *method;
    const crm_value *params;
    crm_value *result;  /* owned: the method's result */
    char user[32], role[72]; /* who asked: the audit trail names them */
    crm_bus *bus;
    /* a kernel op run as a function unit of the batch (privacy.*), with
     * the item as its ud; its result goes in result like a call's */
    int (*unit_fn)(void *ud, crm_txn *t, crm_err *err);
    int compact;        /* compact the store after this item committed */
} crm_item;

enum { OPI_AUTH, OPI_PING, OPI_SCHEMA, OPI_GET, OPI_CREATE, OPI_UPDATE, OPI_DELETE, OPI_TX,
       OPI_QUERY, OPI_AGGREGATE, OPI_SUBSCRIBE, OPI_UNSUBSCRIBE, OPI_CALL, OPI_AUDIT,
       OPI_PRIVACY_EXPORT, OPI_PRIVACY_ERASE, OPI_OTHER, OPI_LAST };

struct crm_net {
    struct lws_context *ctx;
    struct lws_vhost *vh;
    crm_store *store;
    const crm_schema *schema;
    crm_net_opts o;
    lws_retry_bo_t idle_policy; /* ping and hang-up of quiet connections */
    int port;
    crm_sess *sessions;
    crm_item *batch;
    size_t nbatch, capbatch;
    crm_item *spare;        /* a landed batch's items array, kept for the next one */
    size_t spare_cap;
    int flush_scheduled;
    lws_sorted_usec_list_t flush_sul, tick_sul, agg_sul;
    int agg_scheduled;
    uint64_t pushed_seq;
    /* metrics */
    uint64_t conns_now, conns_total, subs_now, overflows;
    uint64_t origins_refused; /* upgrades answered 403 for a foreign Origin */
    uint64_t hosts_refused;   /* requests answered 403 for a Host name not allowed */
    uint64_t requests[OPI_LAST][CRM_CODE_LAST];
    /* The write transaction's thread (writer.h): batches go there, and
     * come back through crm_ops_collect once committed. */
    crm_writer *writer;
    struct crm_flight *flights; /* batches the writer has (ops.c) */
    _Atomic uint64_t compactions; /* counted on the writer thread */
};

extern const char *const crm_op_names[OPI_LAST];
void crm_net_schedule_flush(crm_net *n);
/* Runs crm_subs_agg_tick in ms (once, however often asked before it runs). */
void crm_net_schedule_agg(crm_net *n, int ms);

/* ---- net.c ---- */
/* Serves store from now on (the in-process fuzz target gives every input
 * a new store): settles the batch, restarts the writer over store.
 * store NULL: settles and stops the writer (before the store is closed). */
int crm_net_swap_store(crm_net *n, crm_store *store, crm_err *err);
/* Queues bytes for the session (copied).  push: a subscription event, which
 * may overflow; returns -1 when the queue is past its limit. */
int crm_sess_send(crm_sess *s, const void *buf, size_t len, int push);
/* Encodes v in the session's format and queues it; v stays the caller's. */
int crm_sess_send_value(crm_sess *s, const crm_value *v, int push);
/* Reasons to stop reading a session's requests (crm_sess_pause_rx). */
enum { CRM_RX_QUEUE = 1,   /* its send queue is past send_queue_max */
       CRM_RX_CLOSING = 2 }; /* closing (a message past the limit) */
/* Sets (on) or clears a reason to stop reading s; reading resumes when no
 * reason is left.  No-op for a session without a connection. */
void crm_sess_pause_rx(crm_sess *s, int reason, int on);
/* Asks the loop to close the session: drain: after its queue. */
void crm_sess_close(crm_sess *s, int code, const char *why, int drain);
int64_t crm_net_now_ms(void);

/* ---- ops.c: replies and argument checks, shared with subs.c ---- */
/* Replies to req (its ref echoed); both take ownership of result / details. */
void crm_reply_ok(crm_sess *s, const crm_value *req, int opi, crm_value *result);
void crm_reply_err(crm_sess *s, const crm_value *req, int opi, int code, const char *msg,
                   crm_value *details);
void crm_reply_crm_err(crm_sess *s, const crm_value *req, int opi, const crm_err *err);
/* Typed arguments of req: BAD_REQUEST when of the wrong type (or missing and
 * required); *out borrowed from req, NULL when absent. */
int crm_arg_str(const crm_value *req, const char *key, int required, const char **out, crm_err *err);
int crm_arg_int(const crm_value *req, const char *key, int64_t min, int64_t max, int64_t *out,
                int *present, crm_err *err);
int crm_arg_map(const crm_value *req, const char *key, int required, const crm_value **out,
                crm_err *err);
/* The collection argument: known (NOT_FOUND) and granted perm (FORBIDDEN). */
int crm_arg_coll(crm_sess *s, const crm_value *req, int perm, const char **coll, crm_err *err);
/* FORBIDDEN when map m names a hidden field. */
int crm_hidden_keys(const crm_value *hidden, const crm_value *m, const char *what, crm_err *err);
/* The aggregate op over args {where?, group_by?, metrics?} as role s sees
 * coll: a new {"groups": [...]} the caller owns, or NULL with err filled. */
crm_value *crm_run_aggregate(crm_sess *s, const char *coll, const crm_value *args, crm_err *err);
/* A copy of rec without the hidden fields; caller owns it. */
crm_value *crm_strip_copy(const crm_value *hidden, const crm_value *rec);

/* ---- subs.c ---- */
void crm_subs_subscribe(crm_sess *s, const crm_value *req, int opi);
void crm_subs_unsubscribe(crm_sess *s, const crm_value *req, int opi);
/* Pushes every change committed since the last call to the subscriptions. */
void crm_subs_fanout(crm_net *n);
/* Recomputes dirty aggregate subscriptions and pushes changed figures
 * (at most one push per subscription per CRM_AGG_COALESCE_MS). */
void crm_subs_agg_tick(crm_net *n);
#define CRM_AGG_COALESCE_MS 100
/* Ends one subscription of s. */
void crm_sub_remove(crm_sess *s, crm_sub *sub);

/* ---- ops.c: the write batch, shared with ops_admin.c ---- */
/* Queues req (taken) as a function unit of the next batch: fn(item, t, err)
 * runs in the group commit and leaves its result in item->result, which is
 * the reply.  -1 on OOM (req is then still the caller's). */
int crm_batch_add_fn(crm_sess *s, crm_value *req, int opi,
                     int (*fn)(void *ud, crm_txn *t, crm_err *err), int compact);

/* ---- ops_admin.c: admin-only ops (docs/audit.md, docs/privacy.md) ---- */
/* The audit query; answers at once. */
void crm_admin_audit(crm_sess *s, const crm_value *req, int opi);
/* privacy.export / privacy.erase: checked, then queued in the batch; takes req. */
void crm_admin_privacy(crm_sess *s, crm_value *req, int opi);
/* Compacts the store after an erasure committed.  Writer thread only
 * (between batches, readers held off meanwhile).  Returns 1 when it
 * compacted; a failure is logged. */
int crm_admin_compact_now(crm_net *n);

/* ---- ops.c ---- */
/* A whole message arrived on s. */
void crm_ops_message(crm_sess *s, const unsigned char *buf, size_t len);
/* Hands the pending batch to the writer (no wait). */
void crm_ops_flush(crm_net *n);
/* Acknowledges the batches the writer has committed, pushes what they
 * changed, runs requests held behind them.  Loop thread. */
void crm_ops_collect(crm_net *n);
/* flush, wait for the writer, collect: the batch is answered on return
 * (shutdown; the in-process fuzz target). */
void crm_ops_settle(crm_net *n);
/* Session s is closing: drop its references. */
void crm_ops_forget(crm_sess *s);
/* Periodic: auth deadlines and revoked tokens. */
void crm_ops_tick(crm_net *n);

#endif
