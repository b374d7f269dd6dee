/*
 * webhooks_http -- the delivery worker of the webhooks plugin: one thread
 * running libcurl's multi interface, so every HTTP transfer runs off the
 * event loop and a slow or dead receiver holds up nothing but its own
 * subscription (docs/features/webhooks.md).
 *
 * The writer thread (the plugin's hooks and timers) hands jobs in (wh_http_submit) and takes results out
 * (wh_http_results); the worker never touches crm_api record members, a
 * crm_ctx or a crm_event.  Per subscription the worker keeps a FIFO and has
 * at most one transfer in flight, so deliveries of one subscription happen
 * in the order they were submitted; a failed head is retried with
 * exponential back-off and, after max_attempts, reported dead and skipped.
 * All transfers of all subscriptions run concurrently.
 *
 * Locking: one mutex, held only to link and unlink list items.
 */
#ifndef WEBHOOKS_HTTP_H
#define WEBHOOKS_HTTP_H

#include <stddef.h>
#include <stdint.h>

#define WH_ID_MAX 128 /* a record id (CRM_ID_MAX) */

typedef struct wh_http_cfg {
    long connect_timeout_ms, timeout_ms;
    long retry_base_ms, retry_max_ms; /* back-off: base * 2^(attempts-1), capped */
    int max_attempts;                 /* then the delivery is reported dead */
} wh_http_cfg;

/* One delivery.  All strings are owned by the job (wh_job_free frees them). */
typedef struct wh_job {
    struct wh_job *next;
    char sub[WH_ID_MAX + 1];
    unsigned gen;         /* the subscription's generation when handed over */
    char *url, *secret;
    char *outbox_id;      /* the webhook_outbox record this delivers */
    uint64_t seq;
    int attempts;         /* attempts made before (kept in the outbox record) */
    char *body;
    size_t blen;
} wh_job;

enum { WH_DELIVERED = 1, WH_FAILED, WH_DEAD };

/* What became of one attempt.  WH_FAILED: the job stays at its queue's head
 * and is tried again; WH_DELIVERED and WH_DEAD: it is done. */
typedef struct wh_result {
    struct wh_result *next;
    int kind;
    char sub[WH_ID_MAX + 1];
    unsigned gen;
    char *outbox_id;      /* owned */
    uint64_t seq;
    int attempts;         /* attempts made so far, this one included */
    long status;          /* HTTP status, 0 when no response came */
    char error[200];      /* "" when delivered */
    int removed;          /* the loop's: its outbox record was deleted by this result */
} wh_result;

/* Starts the worker (curl_global_init first).  0, or -1 with a message. */
int wh_http_start(const wh_http_cfg *cfg, char *err, size_t cap);
/* Stops and joins the worker, dropping every job and result; in-flight
 * transfers are abandoned.  Safe when not started. */
void wh_http_stop(void);
/* Hands j to the worker (takes it; frees it when the worker is not running). */
void wh_http_submit(wh_job *j);
/* Forget every job of sub older than gen, in flight or queued; later jobs
 * of sub are expected to carry gen.  Used when a subscription's URL, secret
 * or active flag changes, or it is deleted. */
void wh_http_drop(const char *sub, unsigned gen);
/* The results finished so far, oldest first (caller's: wh_result_free each);
 * NULL when none. */
wh_result *wh_http_results(void);
/* Puts a list taken with wh_http_results back in front (the loop could not
 * record it: its transaction failed). */
void wh_http_requeue(wh_result *list);
/* Jobs queued or in flight, for the status method. */
size_t wh_http_backlog(void);

void wh_job_free(wh_job *j);
void wh_result_free(wh_result *r);

/* hex = lowercase hex of HMAC-SHA256(secret, "<ts>.<body>"): what
 * X-Crmd-Signature carries after "sha256=".  hex holds 65 bytes. */
void wh_sign(const char *secret, long long ts, const char *body, size_t blen, char hex[65]);

#endif
