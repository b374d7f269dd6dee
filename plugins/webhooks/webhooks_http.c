/*
 * webhooks_http -- the delivery worker (webhooks_http.h is the contract).
 *
 * One thread, one CURLM.  Each subscription the worker knows has a FIFO of
 * jobs and at most one easy handle in flight (its head), so its deliveries
 * are in order; every subscription's head runs at the same time, so a
 * receiver that never answers costs its own subscription a timeout and
 * nothing else.  curl_multi_poll sleeps until a socket is ready, the next
 * retry is due, or wh_http_submit / wh_http_drop / wh_http_stop wake it
 * with curl_multi_wakeup.
 */
#include "webhooks_http.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

/* ---- shared with the writer thread, under lock ---- */

typedef struct drop_msg {
    struct drop_msg *next;
    char sub[WH_ID_MAX + 1];
    unsigned gen;
} drop_msg;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    int running, stopping;
    wh_job *in, **in_tail;         /* submitted, not yet taken by the worker */
    drop_msg *drops, **drop_tail;
    wh_result *out, **out_tail;    /* finished, not yet taken by the loop */
    size_t backlog;                /* jobs submitted and not finished */
} sh;

/* ---- the worker's own ---- */

typedef struct wsub {
    struct wsub *next;
    char id[WH_ID_MAX + 1];
    unsigned gen;
    wh_job *head, **tail;
    CURL *easy;                    /* the head's transfer, when in flight */
    struct curl_slist *hdrs;
    int64_t retry_at;              /* monotonic ms; 0 = now */
    char errbuf[CURL_ERROR_SIZE];
} wsub;

static wh_http_cfg cfg;
static CURLM *multi;
static pthread_t thread;
static wsub *subs;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void wh_job_free(wh_job *j)
{
    if (!j)
        return;
    free(j->url);
    free(j->secret);
    free(j->outbox_id);
    free(j->body);
    free(j);
}

void wh_result_free(wh_result *r)
{
    if (!r)
        return;
    free(r->outbox_id);
    free(r);
}

/* ---- signing ---- */

void wh_sign(const char *secret, long long ts, const char *body, size_t blen, char hex[65])
{
    unsigned char md[32];
    size_t mdlen = 0;
    char tsbuf[32];
    int tl = snprintf(tsbuf, sizeof tsbuf, "%lld.", ts);
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM params[2] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
                            OSSL_PARAM_construct_end()};
    hex[0] = '\0';
    if (ctx && EVP_MAC_init(ctx, (const unsigned char *)secret, strlen(secret), params) == 1 &&
        EVP_MAC_update(ctx, (const unsigned char *)tsbuf, (size_t)tl) == 1 &&
        EVP_MAC_update(ctx, (const unsigned char *)body, blen) == 1 &&
        EVP_MAC_final(ctx, md, &mdlen, sizeof md) == 1 && mdlen == sizeof md) {
        for (size_t i = 0; i < mdlen; i++)
            snprintf(hex + 2 * i, 3, "%02x", md[i]);
    }
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
}

/* ---- results ---- */

static void post_result(const wsub *s, const wh_job *j, int kind, int attempts, long status,
                        const char *error)
{
    wh_result *r = calloc(1, sizeof *r);
    if (!r || !(r->outbox_id = strdup(j->outbox_id))) {
        /* the loop never hears of it: the outbox record stays, and is
         * delivered again after a restart (at least once) */
        free(r);
        return;
    }
    r->kind = kind;
    snprintf(r->sub, sizeof r->sub, "%s", s->id);
    r->gen = s->gen;
    r->seq = j->seq;
    r->attempts = attempts;
    r->status = status;
    snprintf(r->error, sizeof r->error, "%s", error ? error : "");
    pthread_mutex_lock(&lock);
    *sh.out_tail = r;
    sh.out_tail = &r->next;
    pthread_mutex_unlock(&lock);
}

/* ---- per-subscription queues (worker thread only) ---- */

static wsub *find_sub(const char *id, int create)
{
    wsub *s;
    for (s = subs; s; s = s->next)
        if (strcmp(s->id, id) == 0)
            return s;
    if (!create || !(s = calloc(1, sizeof *s)))
        return NULL;
    snprintf(s->id, sizeof s->id, "%s", id);
    s->tail = &s->head;
    s->next = subs;
    subs = s;
    return s;
}

static void abort_transfer(wsub *s)
{
    if (!s->easy)
        return;
    curl_multi_remove_handle(multi, s->easy);
    curl_easy_cleanup(s->easy);
    curl_slist_free_all(s->hdrs);
    s->easy = NULL;
    s->hdrs = NULL;
}

static void backlog_done(size_t n)
{
    pthread_mutex_lock(&lock);
    sh.backlog -= n <= sh.backlog ? n : sh.backlog;
    pthread_mutex_unlock(&lock);
}

/* Drops every job of s (and its transfer). */
static void clear_sub(wsub *s)
{
    size_t n = 0;
    abort_transfer(s);
    while (s->head) {
        wh_job *j = s->head;
        s->head = j->next;
        wh_job_free(j);
        n++;
    }
    s->tail = &s->head;
    s->retry_at = 0;
    backlog_done(n);
}

static void take_job(wh_job *j)
{
    wsub *s = find_sub(j->sub, 1);
    if (!s || j->gen < s->gen) { /* from before a drop */
        wh_job_free(j);
        backlog_done(1);
        return;
    }
    if (j->gen > s->gen) { /* a newer generation without its drop (cannot happen; be safe) */
        clear_sub(s);
        s->gen = j->gen;
    }
    j->next = NULL;
    *s->tail = j;
    s->tail = &j->next;
}

static void take_drop(const drop_msg *d)
{
    wsub *s = find_sub(d->sub, 0);
    if (!s || s->gen > d->gen)
        return;
    clear_sub(s);
    s->gen = d->gen;
}

/* ---- transfers ---- */

static size_t discard(char *p, size_t sz, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return sz * n; /* the receiver's body is not ours to keep */
}

static int start_transfer(wsub *s)
{
    wh_job *j = s->head;
    char hex[65], h[256];
    long long ts = (long long)time(NULL);
    CURL *e = curl_easy_init();
    struct curl_slist *hd = NULL, *t;
    if (!e)
        return -1;
    wh_sign(j->secret, ts, j->body, j->blen, hex);
    /* "Expect:" off: curl would otherwise wait up to a second for a
     * 100-continue before sending a body over 1 KiB */
    static const char *fixed[] = {"Content-Type: application/json", "Expect:",
                                  "User-Agent: crmd-webhooks/1.0"};
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
        if ((t = curl_slist_append(hd, fixed[i])))
            hd = t;
#define ADDH(...)                                      \
    do {                                               \
        snprintf(h, sizeof h, __VA_ARGS__);            \
        if ((t = curl_slist_append(hd, h)))            \
            hd = t;                                    \
    } while (0)
    ADDH("X-Crmd-Webhook: %s", s->id);
    ADDH("X-Crmd-Seq: %llu", (unsigned long long)j->seq);
    ADDH("X-Crmd-Timestamp: %lld", ts);
    ADDH("X-Crmd-Attempt: %d", j->attempts + 1);
    ADDH("X-Crmd-Signature: sha256=%s", hex);
#undef ADDH
    s->errbuf[0] = '\0';
    curl_easy_setopt(e, CURLOPT_URL, j->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, j->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)j->blen);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, cfg.connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, cfg.timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROXY, ""); /* never an environment proxy */
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, s->errbuf);
    curl_easy_setopt(e, CURLOPT_PRIVATE, s);
    if (curl_multi_add_handle(multi, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        curl_slist_free_all(hd);
        return -1;
    }
    s->easy = e;
    s->hdrs = hd;
    return 0;
}

static long backoff_ms(int attempts)
{
    long ms = cfg.retry_base_ms;
    for (int i = 1; i < attempts && ms < cfg.retry_max_ms; i++)
        ms *= 2;
    return ms < cfg.retry_max_ms ? ms : cfg.retry_max_ms;
}

static void finish_transfer(wsub *s, CURLcode cc)
{
    wh_job *j = s->head;
    long status = 0;
    char why[200];
    curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
    abort_transfer(s); /* frees the handle; the transfer is over */
    j->attempts++;
    if (cc == CURLE_OK && status >= 200 && status < 300) {
        post_result(s, j, WH_DELIVERED, j->attempts, status, NULL);
    } else {
        if (cc != CURLE_OK)
            snprintf(why, sizeof why, "%s%s%.150s", curl_easy_strerror(cc), s->errbuf[0] ? ": " : "",
                     s->errbuf);
        else
            snprintf(why, sizeof why, "HTTP %ld", status);
        if (j->attempts < cfg.max_attempts) {
            post_result(s, j, WH_FAILED, j->attempts, status, why);
            s->retry_at = mono_ms() + backoff_ms(j->attempts);
            return; /* stays at the head: order is kept */
        }
        post_result(s, j, WH_DEAD, j->attempts, status, why);
    }
    s->retry_at = 0;
    if (!(s->head = j->next))
        s->tail = &s->head;
    wh_job_free(j);
    backlog_done(1);
}

static void *work(void *arg)
{
    (void)arg;
    for (;;) {
        wh_job *in;
        drop_msg *drops;
        int running = 0, msgs;
        int64_t now, wait = 1000;
        CURLMsg *m;

        pthread_mutex_lock(&lock);
        if (sh.stopping) {
            pthread_mutex_unlock(&lock);
            break;
        }
        /* drops first: a drop and the jobs of its new generation may arrive together */
        drops = sh.drops;
        sh.drops = NULL;
        sh.drop_tail = &sh.drops;
        in = sh.in;
        sh.in = NULL;
        sh.in_tail = &sh.in;
        pthread_mutex_unlock(&lock);
        while (drops) {
            drop_msg *d = drops;
            drops = d->next;
            take_drop(d);
            free(d);
        }
        while (in) {
            wh_job *j = in;
            in = j->next;
            take_job(j);
        }

        now = mono_ms();
        for (wsub *s = subs; s; s = s->next) {
            if (s->easy || !s->head)
                continue;
            if (s->retry_at > now) {
                if (s->retry_at - now < wait)
                    wait = s->retry_at - now;
                continue;
            }
            if (start_transfer(s) != 0) { /* out of memory: try again shortly */
                s->retry_at = now + 100;
                if (wait > 100)
                    wait = 100;
            }
        }
        curl_multi_perform(multi, &running);
        while ((m = curl_multi_info_read(multi, &msgs))) {
            wsub *s = NULL;
            if (m->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&s);
            if (s && s->easy == m->easy_handle)
                finish_transfer(s, m->data.result);
            wait = 0; /* a head moved on: start the next one now */
        }
        if (wait > 0)
            curl_multi_poll(multi, NULL, 0, (int)wait, NULL);
    }
    return NULL;
}

/* ---- the writer thread's side ---- */

int wh_http_start(const wh_http_cfg *c, char *err, size_t cap)
{
    if (sh.running)
        return 0;
    cfg = *c;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, cap, "curl_global_init failed");
        return -1;
    }
    if (!(multi = curl_multi_init())) {
        curl_global_cleanup();
        snprintf(err, cap, "curl_multi_init failed");
        return -1;
    }
    sh.in_tail = &sh.in;
    sh.drop_tail = &sh.drops;
    sh.out_tail = &sh.out;
    sh.stopping = 0;
    if (pthread_create(&thread, NULL, work, NULL) != 0) {
        curl_multi_cleanup(multi);
        multi = NULL;
        curl_global_cleanup();
        snprintf(err, cap, "cannot start the delivery thread");
        return -1;
    }
    sh.running = 1;
    return 0;
}

void wh_http_stop(void)
{
    if (!sh.running)
        return;
    pthread_mutex_lock(&lock);
    sh.stopping = 1;
    pthread_mutex_unlock(&lock);
    curl_multi_wakeup(multi);
    pthread_join(thread, NULL);
    sh.running = 0;
    while (subs) {
        wsub *s = subs;
        subs = s->next;
        clear_sub(s);
        free(s);
    }
    while (sh.in) {
        wh_job *j = sh.in;
        sh.in = j->next;
        wh_job_free(j);
    }
    while (sh.drops) {
        drop_msg *d = sh.drops;
        sh.drops = d->next;
        free(d);
    }
    while (sh.out) {
        wh_result *r = sh.out;
        sh.out = r->next;
        wh_result_free(r);
    }
    sh.in_tail = &sh.in;
    sh.drop_tail = &sh.drops;
    sh.out_tail = &sh.out;
    sh.backlog = 0;
    curl_multi_cleanup(multi);
    multi = NULL;
    curl_global_cleanup();
}

void wh_http_submit(wh_job *j)
{
    if (!sh.running) {
        wh_job_free(j);
        return;
    }
    j->next = NULL;
    pthread_mutex_lock(&lock);
    *sh.in_tail = j;
    sh.in_tail = &j->next;
    sh.backlog++;
    pthread_mutex_unlock(&lock);
    curl_multi_wakeup(multi);
}

void wh_http_drop(const char *sub, unsigned gen)
{
    drop_msg *d;
    if (!sh.running || !(d = calloc(1, sizeof *d)))
        return;
    snprintf(d->sub, sizeof d->sub, "%s", sub);
    d->gen = gen;
    pthread_mutex_lock(&lock);
    *sh.drop_tail = d;
    sh.drop_tail = &d->next;
    pthread_mutex_unlock(&lock);
    curl_multi_wakeup(multi);
}

wh_result *wh_http_results(void)
{
    wh_result *r;
    pthread_mutex_lock(&lock);
    r = sh.out;
    sh.out = NULL;
    sh.out_tail = &sh.out;
    pthread_mutex_unlock(&lock);
    return r;
}

void wh_http_requeue(wh_result *list)
{
    wh_result *last = list;
    if (!list)
        return;
    while (last->next)
        last = last->next;
    pthread_mutex_lock(&lock);
    last->next = sh.out;
    if (!sh.out)
        sh.out_tail = &last->next;
    sh.out = list;
    pthread_mutex_unlock(&lock);
}

size_t wh_http_backlog(void)
{
    size_t n;
    pthread_mutex_lock(&lock);
    n = sh.backlog;
    pthread_mutex_unlock(&lock);
    return n;
}
