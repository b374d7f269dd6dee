/*
 * net -- the WebSocket API and HTTP endpoints on libwebsockets.
 *
 * Owns the lws context, the sessions, their send queues, the pending write
 * batch (group commit: every write that arrives in one loop turn is applied
 * in one crm_store_apply, and acknowledged only after that commit), and the
 * fan-out of committed changes to subscriptions.  One thread: the loop.
 * Never: acknowledges a write before its commit returned.
 */
#ifndef CRM_NET_H
#define CRM_NET_H

#include <stddef.h>
#include <stdint.h>

#include "bus.h"
#include "err.h"
#include "schema.h"
#include "store.h"

typedef struct crm_net crm_net;

typedef struct crm_net_opts {
    const char *host;          /* listen address; default 127.0.0.1 */
    int port;                  /* 0 = pick a free port (see crm_net_port) */
    size_t max_message;        /* default 1 MiB */
    int max_depth;             /* default 32 */
    size_t max_message_preauth;/* default 16 KiB */
    int auth_deadline_ms;      /* default 10000 */
    int max_inflight;          /* pending requests per connection; default 1024 */
    int max_subs;              /* subscriptions per connection; default 64 */
    size_t send_queue_max;     /* memory queued per connection (messages and their overhead):
                                * a push past it overflows, a reply past it pauses reading
                                * the connection until half is sent; default 8 MiB */
    int rate_per_sec;          /* requests per second per connection; default 10000 */
    const char *const *origins;/* allowed Origin values (NULL-terminated) besides same-host */
    const char *const *hosts;  /* Host names answered besides IP addresses and localhost
                                * (NULL-terminated; NULL = none): a page of another name
                                * that resolves here (DNS rebinding) gets 403 */
    const char *web_dir;       /* static files served under / (the dashboard); NULL = none */
    const char *tls_cert;      /* PEM certificate (chain) and its key: wss:// and https:// */
    const char *tls_key;       /* only; NULL = plain ws:// and http:// */
    int ping_secs;             /* a quiet connection is pinged after this; default 30 */
    int idle_secs;             /* and closed when nothing (not even a pong) came for this; default 75 */
    crm_bus *bus;              /* hooks, timers, methods (borrowed); NULL = none */
    const struct crm_plugins *plugins; /* borrowed; /healthz and /metrics name the
                                        * quarantined ones (plugin.h); NULL = none */
    /* SIGHUP: when *reload_flag becomes non-zero (set from a signal handler,
     * followed by crm_net_wake) the loop clears it and calls on_reload. */
    volatile int *reload_flag;
    void (*on_reload)(void *ud);
    void *reload_ud;
} crm_net_opts;

void crm_net_opts_default(crm_net_opts *o);

/* Borrowed store and schema must outlive the server. */
int crm_net_create(crm_store *store, const crm_schema *schema, const crm_net_opts *opts,
                   crm_net **out, crm_err *err);
/* The port actually listened on. */
int crm_net_port(const crm_net *n);
/* 1 when the server speaks TLS (wss://, https://). */
int crm_net_tls(const crm_net *n);
/* Runs the loop until *stop becomes non-zero (set from a signal handler,
 * followed by crm_net_wake) or the store has failed (crm_store_failed: the
 * caller then exits).  Then finishes in-flight writes, closes every client
 * with 1001 and returns. */
int crm_net_run(crm_net *n, volatile int *stop);
/* Wakes the loop (safe from a signal handler). */
void crm_net_wake(crm_net *n);
void crm_net_destroy(crm_net *n);

#endif
