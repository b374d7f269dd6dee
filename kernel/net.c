/*
 * net -- libwebsockets glue: the listening vhost, subprotocols, message
 * reassembly, send queues (one lws_write per WRITEABLE, as lws asks), HTTP
 * endpoints (/healthz, /metrics), the loop and orderly shutdown.
 * Requests themselves are ops.c's business.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "log.h"
#include "net_int.h"
#include "plugin.h"

int64_t crm_net_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void crm_net_opts_default(crm_net_opts *o)
{
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 8420;
    o->max_message = 1u << 20;
    o->max_depth = 32;
    o->max_message_preauth = 16u << 10;
    o->auth_deadline_ms = 10000;
    o->max_inflight = 1024;
    o->max_subs = 64;
    o->send_queue_max = 8u << 20;
    o->rate_per_sec = 10000;
    o->ping_secs = 30;
    o->idle_secs = 75;
}

/* ---- send queue ---- */

int crm_sess_send(crm_sess *s, const void *buf, size_t len, int push)
{
    outmsg *m;
    size_t cap = s->net->o.send_queue_max;
    if (s->close_code && !s->close_drain)
        return -1;
    if (push && s->qbytes + crm_outmsg_cost(len) > cap)
        return -1;
    if (!(m = malloc(sizeof *m + LWS_PRE + len)))
        return -1;
    m->next = NULL;
    m->len = len;
    m->binary = s->msgpack;
    memcpy(m->buf + LWS_PRE, buf, len);
    if (s->qt)
        s->qt->next = m;
    else
        s->qh = m;
    s->qt = m;
    s->qbytes += crm_outmsg_cost(len);
    /* Replies are never dropped, so a client that sends requests and reads
     * no answers would grow this queue without bound (1 GB in 10 s of
     * pipelined pings, before this): past the limit, stop reading its
     * requests until it has read half of what waits (SERVER_WRITEABLE). */
    if (s->qbytes > cap)
        crm_sess_pause_rx(s, CRM_RX_QUEUE, 1);
    lws_callback_on_writable(s->wsi);
    return 0;
}

void crm_sess_pause_rx(crm_sess *s, int reason, int on)
{
    int before = s->rx_paused;
    s->rx_paused = on ? before | reason : before & ~reason;
    if (s->wsi && !before != !s->rx_paused)
        lws_rx_flow_control(s->wsi, !s->rx_paused);
}

int crm_sess_send_value(crm_sess *s, const crm_value *v, int push)
{
    size_t len = 0;
    int rc;
    if (s->msgpack) {
        uint8_t *b = crm_mp_encode(v, &len);
        if (!b)
            return -1;
        rc = crm_sess_send(s, b, len, push);
        free(b);
    } else {
        char *b = crm_json_encode(v, &len);
        if (!b)
            return -1;
        rc = crm_sess_send(s, b, len, push);
        free(b);
    }
    return rc;
}

void crm_sess_close(crm_sess *s, int code, const char *why, int drain)
{
    if (s->close_code)
        return;
    s->close_code = code;
    s->close_why = why;
    s->close_drain = drain;
    lws_callback_on_writable(s->wsi);
}

static void sess_free_queue(crm_sess *s)
{
    while (s->qh) {
        outmsg *m = s->qh;
        s->qh = m->next;
        free(m);
    }
    s->qt = NULL;
    s->qbytes = 0;
}

/* ---- HTTP ---- */

/* Writes a whole response; the transaction is not completed (see http_reply). */
static int http_write(struct lws *wsi, int status, const char *type, const char *body, size_t len)
{
    unsigned char hdr[LWS_PRE + 512], *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof hdr - 1;
    unsigned char *out;
    if (lws_add_http_common_headers(wsi, (unsigned)status, type, (lws_filepos_t)len, &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    out = malloc(LWS_PRE + len + 1);
    if (!out)
        return -1;
    memcpy(out + LWS_PRE, body, len);
    if (lws_write(wsi, out + LWS_PRE, len, LWS_WRITE_HTTP_FINAL) != (int)len) {
        free(out);
        return -1;
    }
    free(out);
    return 0;
}

static int http_reply(struct lws *wsi, int status, const char *type, const char *body, size_t len)
{
    if (http_write(wsi, status, type, body, len))
        return -1;
    return -1; /* one request per connection: see LWS_CALLBACK_HTTP_FILE_COMPLETION */
}

/* Appends printf output to a growing buffer. */
typedef struct sbuf {
    char *b;
    size_t n, cap;
} sbuf;

static void sb_printf(sbuf *sb, const char *fmt, ...) CRM_PRINTF(2, 3);
static void sb_printf(sbuf *sb, const char *fmt, ...)
{
    va_list ap;
    int need;
    for (;;) {
        va_start(ap, fmt);
        need = vsnprintf(sb->b ? sb->b + sb->n : NULL, sb->b ? sb->cap - sb->n : 0, fmt, ap);
        va_end(ap);
        if (need < 0)
            return;
        if (sb->b && sb->n + (size_t)need < sb->cap) {
            sb->n += (size_t)need;
            return;
        }
        size_t nc = sb->cap ? sb->cap * 2 : 4096;
        while (nc < sb->n + (size_t)need + 1)
            nc *= 2;
        char *nb = realloc(sb->b, nc);
        if (!nb)
            return;
        sb->b = nb;
        sb->cap = nc;
    }
}

/* A plugin's file name as a JSON string's or a metric label's contents:
 * anything but letters, digits, '_', '-' and '.' becomes '_'. */
static const char *label_safe(const char *name, char *buf, size_t cap)
{
    size_t i = 0;
    for (; name[i] && i + 1 < cap; i++) {
        char ch = name[i];
        buf[i] = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                         ch == '_' || ch == '-' || ch == '.'
                     ? ch
                     : '_';
    }
    buf[i] = '\0';
    return buf;
}

static void metrics_text(crm_net *n, sbuf *sb)
{
    crm_writer_stats ws;
    crm_writer_stats_get(n->writer, &ws);
    sb_printf(sb, "# HELP crmd_connections Open WebSocket connections.\n# TYPE crmd_connections gauge\n"
                  "crmd_connections %llu\n", (unsigned long long)n->conns_now);
    sb_printf(sb, "# TYPE crmd_connections_total counter\ncrmd_connections_total %llu\n",
              (unsigned long long)n->conns_total);
    sb_printf(sb, "# HELP crmd_requests_total Requests by op and result code.\n"
                  "# TYPE crmd_requests_total counter\n");
    for (int o = 0; o < OPI_LAST; o++)
        for (int c = 0; c < CRM_CODE_LAST; c++)
            if (n->requests[o][c])
                sb_printf(sb, "crmd_requests_total{op=\"%s\",code=\"%s\"} %llu\n", crm_op_names[o],
                          crm_code_name(c), (unsigned long long)n->requests[o][c]);
    sb_printf(sb, "# HELP crmd_commit_batch_size Writes per group commit.\n"
                  "# TYPE crmd_commit_batch_size histogram\n");
    uint64_t cum = 0;
    for (int i = 0; i < 11; i++) {
        cum += ws.batch_hist[i];
        sb_printf(sb, "crmd_commit_batch_size_bucket{le=\"%d\"} %llu\n", 1 << i, (unsigned long long)cum);
    }
    cum += ws.batch_hist[11];
    sb_printf(sb, "crmd_commit_batch_size_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    sb_printf(sb, "crmd_commit_batch_size_sum %llu\ncrmd_commit_batch_size_count %llu\n",
              (unsigned long long)ws.batch_writes, (unsigned long long)ws.batches);
    sb_printf(sb, "# HELP crmd_commit_seconds Group commit latency.\n"
                  "# TYPE crmd_commit_seconds histogram\n");
    cum = 0;
    for (int i = 0; i < 12; i++) {
        cum += ws.commit_hist[i];
        sb_printf(sb, "crmd_commit_seconds_bucket{le=\"%g\"} %llu\n", crm_writer_commit_bounds[i], (unsigned long long)cum);
    }
    sb_printf(sb, "crmd_commit_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)ws.batches);
    sb_printf(sb, "crmd_commit_seconds_sum %.6f\ncrmd_commit_seconds_count %llu\n", ws.commit_sum_s,
              (unsigned long long)ws.batches);
    sb_printf(sb, "# HELP crmd_writer_batches_in_flight Batches handed to the writer thread, not yet answered.\n"
                  "# TYPE crmd_writer_batches_in_flight gauge\ncrmd_writer_batches_in_flight %zu\n",
              ws.in_flight);
    sb_printf(sb, "# HELP crmd_writer_awaiting_flush Of them: committed, waiting for the flush that makes them durable.\n"
                  "# TYPE crmd_writer_awaiting_flush gauge\ncrmd_writer_awaiting_flush %zu\n",
              ws.awaiting_flush);
    sb_printf(sb, "# HELP crmd_writer_sync_flushes_total Flushes the syncer made to make commits durable (commit-flushes = 1).\n"
                  "# TYPE crmd_writer_sync_flushes_total counter\ncrmd_writer_sync_flushes_total %llu\n",
              (unsigned long long)ws.flushes_own);
    sb_printf(sb, "# HELP crmd_writer_sync_skipped_total Syncer flushes saved: a later commit's flush had made the batch durable.\n"
                  "# TYPE crmd_writer_sync_skipped_total counter\ncrmd_writer_sync_skipped_total %llu\n",
              (unsigned long long)ws.flushes_skipped);
    sb_printf(sb, "# TYPE crmd_feed_seq gauge\ncrmd_feed_seq %llu\n",
              (unsigned long long)crm_store_last_seq(n->store));
    sb_printf(sb, "# TYPE crmd_subscriptions gauge\ncrmd_subscriptions %llu\n",
              (unsigned long long)n->subs_now);
    sb_printf(sb, "# TYPE crmd_overflows_total counter\ncrmd_overflows_total %llu\n",
              (unsigned long long)n->overflows);
    sb_printf(sb, "# HELP crmd_origin_refused_total WebSocket upgrades refused for their Origin (403).\n"
                  "# TYPE crmd_origin_refused_total counter\ncrmd_origin_refused_total %llu\n",
              (unsigned long long)n->origins_refused);
    sb_printf(sb, "# HELP crmd_host_refused_total HTTP requests and upgrades refused for their Host name (403).\n"
                  "# TYPE crmd_host_refused_total counter\ncrmd_host_refused_total %llu\n",
              (unsigned long long)n->hosts_refused);
    {
        size_t nq = 0;
        int crashes;
        char name[128];
        const char *q;
        while (crm_plugins_quarantined(n->o.plugins, nq, NULL))
            nq++;
        sb_printf(sb, "# HELP crmd_plugins_quarantined Plugins not loaded: they crashed the server too often (docs/plugins.md).\n"
                      "# TYPE crmd_plugins_quarantined gauge\ncrmd_plugins_quarantined %zu\n", nq);
        if (nq)
            sb_printf(sb, "# HELP crmd_plugin_crashes Recorded crashes of each quarantined plugin.\n"
                          "# TYPE crmd_plugin_crashes gauge\n");
        for (size_t i = 0; (q = crm_plugins_quarantined(n->o.plugins, i, &crashes)); i++)
            sb_printf(sb, "crmd_plugin_crashes{plugin=\"%s\"} %d\n", label_safe(q, name, sizeof name),
                      crashes);
    }
    if (ws.has_bus) {
        const crm_bus_stats st = ws.bus; /* the writer's, as of its last batch */
        sb_printf(sb, "# HELP crmd_after_hook_lag Changes the slowest after-hook has not run yet.\n"
                      "# TYPE crmd_after_hook_lag gauge\ncrmd_after_hook_lag %llu\n",
                  (unsigned long long)(ws.bus_seq > st.min_cursor ? ws.bus_seq - st.min_cursor : 0));
        sb_printf(sb, "# TYPE crmd_after_hook_consumers gauge\ncrmd_after_hook_consumers %zu\n",
                  st.consumers);
        sb_printf(sb, "# TYPE crmd_hook_runs_total counter\ncrmd_hook_runs_total %llu\n",
                  (unsigned long long)st.hook_runs);
        sb_printf(sb, "# TYPE crmd_hook_failures_total counter\ncrmd_hook_failures_total %llu\n",
                  (unsigned long long)st.hook_failures);
        sb_printf(sb, "# TYPE crmd_timer_runs_total counter\ncrmd_timer_runs_total %llu\n",
                  (unsigned long long)st.timer_runs);
        sb_printf(sb, "# TYPE crmd_timer_failures_total counter\ncrmd_timer_failures_total %llu\n",
                  (unsigned long long)st.timer_failures);
        sb_printf(sb, "# TYPE crmd_dead_letters_total counter\ncrmd_dead_letters_total %llu\n",
                  (unsigned long long)st.dead_letters);
    }
}

static const char *mime_of(const char *path)
{
    static const struct { const char *ext, *type; } types[] = {
        {".html", "text/html; charset=utf-8"}, {".js", "text/javascript"},
        {".mjs", "text/javascript"}, {".css", "text/css"}, {".svg", "image/svg+xml"},
        {".png", "image/png"}, {".json", "application/json"}, {".ico", "image/x-icon"},
        {".woff2", "font/woff2"}, {".txt", "text/plain; charset=utf-8"}};
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof *types; i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}

/* Static files of the dashboard folder.  Only plain relative paths: any
 * ".." segment, backslash or control byte is refused before the file system
 * sees it, so a request can never leave the folder. */
static int serve_static(struct lws *wsi, crm_net *n, const char *path)
{
    char file[4096];
    struct stat st;
    int rc;
    if (!n->o.web_dir || path[0] != '/')
        return http_reply(wsi, 404, "text/plain", "not found\n", 10);
    for (const char *p = path; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == '\\' ||
            (p[0] == '.' && p[1] == '.' && (p == path || p[-1] == '/') && (p[2] == '/' || !p[2])))
            return http_reply(wsi, 403, "text/plain", "forbidden\n", 10);
    if (strcmp(path, "/") == 0)
        path = "/index.html";
    if ((size_t)snprintf(file, sizeof file, "%s%s", n->o.web_dir, path) >= sizeof file ||
        stat(file, &st) != 0 || !S_ISREG(st.st_mode))
        return http_reply(wsi, 404, "text/plain", "not found\n", 10);
    rc = lws_serve_http_file(wsi, file, mime_of(file), NULL, 0);
    return rc == 0 ? 0 : -1; /* > 0: done at once; the connection closes */
}

static int on_http(struct lws *wsi, crm_net *n, const char *path)
{
    if (strcmp(path, "/healthz") == 0) {
        /* 200 while serving; "degraded" names what runs without it */
        sbuf sb = {0};
        char name[128];
        int crashes, rc;
        const char *q = crm_plugins_quarantined(n->o.plugins, 0, &crashes);
        sb_printf(&sb, "{\"ok\":%s,\"status\":\"%s\",\"seq\":%llu", q ? "false" : "true",
                  q ? "degraded" : "ok", (unsigned long long)crm_store_last_seq(n->store));
        if (q) {
            sb_printf(&sb, ",\"quarantined\":[");
            for (size_t i = 0; (q = crm_plugins_quarantined(n->o.plugins, i, &crashes)); i++)
                sb_printf(&sb, "%s{\"plugin\":\"%s\",\"crashes\":%d}", i ? "," : "",
                          label_safe(q, name, sizeof name), crashes);
            sb_printf(&sb, "]");
        }
        sb_printf(&sb, "}");
        rc = sb.b ? http_reply(wsi, 200, "application/json", sb.b, sb.n) : -1;
        free(sb.b);
        return rc;
    }
    if (strcmp(path, "/metrics") == 0) {
        sbuf sb = {0};
        int rc;
        metrics_text(n, &sb);
        rc = sb.b ? http_reply(wsi, 200, "text/plain; version=0.0.4", sb.b, sb.n) : -1;
        free(sb.b);
        return rc;
    }
    return serve_static(wsi, n, path);
}

/* ---- the callback ---- */

/* Browser pages from other origins are refused before the upgrade; clients
 * that send no Origin (not browsers) are let through. */
static int origin_allowed(struct lws *wsi, crm_net *n)
{
    char origin[256], host[256];
    const char *o;
    if (lws_hdr_copy(wsi, origin, sizeof origin, WSI_TOKEN_ORIGIN) <= 0)
        return 1;
    for (const char *const *a = n->o.origins; a && *a; a++)
        if (strcmp(*a, origin) == 0)
            return 1;
    if (lws_hdr_copy(wsi, host, sizeof host, WSI_TOKEN_HOST) <= 0)
        return 0;
    o = strstr(origin, "://");
    return o && strcmp(o + 3, host) == 0;
}

/* The Host a request names must be an IP address, localhost, or a name in
 * the `host` list.  A browser page whose own name was made to resolve here
 * (DNS rebinding) sends that name, is same-origin with itself, and would
 * otherwise read this server as its own.  No Host (not a browser): let
 * through. */
static int host_allowed(struct lws *wsi, const crm_net *n)
{
    char host[300], name[300];
    unsigned char addr[16];
    size_t len;
    if (lws_hdr_copy(wsi, host, sizeof host, WSI_TOKEN_HOST) <= 0)
        return 1;
    if (host[0] == '[') { /* [v6]:port */
        char *end = strchr(host, ']');
        if (!end)
            return 0;
        len = (size_t)(end - host - 1);
        memcpy(name, host + 1, len);
    } else {
        char *colon = strchr(host, ':');
        len = colon ? (size_t)(colon - host) : strlen(host);
        memcpy(name, host, len);
    }
    name[len] = '\0';
    if (len && name[len - 1] == '.')
        name[--len] = '\0'; /* the absolute form "localhost." */
    if (inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1 ||
        strcasecmp(name, "localhost") == 0)
        return 1;
    for (const char *const *h = n->o.hosts; h && *h; h++)
        if (strcasecmp(*h, name) == 0)
            return 1;
    return 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    crm_sess *s = user;
    crm_net *n = lws_context_user(lws_get_context(wsi));

    switch (reason) {
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: {
        /* The same checks as below, but here a refusal can still answer
         * over HTTP: a browser (and R17's test) sees 403 before any
         * upgrade, where returning 1 from the filter only hangs up.  On >0
         * lws completes the transaction itself. */
        char uri[64];
        if (!in || strcasecmp((const char *)in, "websocket") != 0)
            break;
        if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0 || strcmp(uri, "/ws") != 0)
            return http_write(wsi, 404, "text/plain", "not found\n", 10) ? -1 : 1;
        if (!host_allowed(wsi, n)) {
            n->hosts_refused++;
            return http_write(wsi, 403, "text/plain", "host not allowed\n", 17) ? -1 : 1;
        }
        if (!origin_allowed(wsi, n)) {
            n->origins_refused++;
            return http_write(wsi, 403, "text/plain", "origin not allowed\n", 19) ? -1 : 1;
        }
        break;
    }
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        char uri[64];
        if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0 || strcmp(uri, "/ws") != 0)
            return 1;
        return host_allowed(wsi, n) && origin_allowed(wsi, n) ? 0 : 1;
    }
    case LWS_CALLBACK_ESTABLISHED:
        memset(s, 0, sizeof *s);
        s->wsi = wsi;
        s->net = n;
        s->is_ws = 1;
        s->msgpack = strcmp(lws_get_protocol(wsi)->name, "crm.v1.msgpack") == 0;
        s->connected_ms = s->bucket_ms = crm_net_now_ms();
        s->bucket = n->o.rate_per_sec;
        s->next = n->sessions;
        if (n->sessions)
            n->sessions->prev = s;
        n->sessions = s;
        n->conns_now++;
        n->conns_total++;
        if (crm_log_level() <= CRM_LOG_DEBUG) {
            char peer[64] = "";
            lws_get_peer_simple(wsi, peer, sizeof peer);
            crm_log(CRM_LOG_DEBUG, "connect", "%s from %s", lws_get_protocol(wsi)->name, peer);
        }
        break;
    case LWS_CALLBACK_RECEIVE: {
        size_t limit = s->authed ? n->o.max_message : n->o.max_message_preauth;
        if (s->close_code)
            break;
        /* crm.v1.json (and no subprotocol) speaks text frames only (spec) */
        if (!s->msgpack && lws_frame_is_binary(wsi)) {
            free(s->rx);
            s->rx = NULL;
            s->rxlen = 0;
            crm_sess_close(s, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE,
                           "binary frame on a JSON connection (use crm.v1.msgpack)", 0);
            crm_sess_pause_rx(s, CRM_RX_CLOSING, 1);
            break;
        }
        /* Past the limit: close at once.  Waiting for the final fragment
         * let a client stream continuation frames (or one frame declaring
         * 2^62 bytes) for ever, the server reading and dropping them. */
        if (s->rxlen + len > limit) {
            free(s->rx);
            s->rx = NULL;
            s->rxlen = 0;
            /* from SERVER_WRITEABLE: returning -1 here, inside a frame, made
             * lws drop the connection without sending the close frame */
            crm_sess_close(s, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "message too large", 0);
            crm_sess_pause_rx(s, CRM_RX_CLOSING, 1); /* and read no more of what it streams */
            break;
        }
        if (lws_is_first_fragment(wsi) && lws_is_final_fragment(wsi) && !s->rxlen) {
            crm_ops_message(s, in, len); /* the common case: no copy */
            break;
        }
        unsigned char *nb = realloc(s->rx, s->rxlen + len + 1);
        if (!nb)
            return -1;
        s->rx = nb;
        memcpy(s->rx + s->rxlen, in, len);
        s->rxlen += len;
        if (lws_is_final_fragment(wsi)) {
            unsigned char *msg = s->rx;
            size_t ml = s->rxlen;
            s->rx = NULL;
            s->rxlen = 0;
            crm_ops_message(s, msg, ml);
            free(msg);
        }
        break;
    }
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (s->close_code && (!s->close_drain || !s->qh)) {
            const char *why = s->close_why ? s->close_why : "";
            lws_close_reason(wsi, (enum lws_close_status)s->close_code, (unsigned char *)why,
                             strlen(why));
            return -1;
        }
        /* as many queued messages as the socket takes now: one per
         * WRITEABLE capped a subscriber at one message per loop pass */
        while (s->qh && !lws_send_pipe_choked(wsi)) {
            outmsg *m = s->qh;
            int w = lws_write(wsi, m->buf + LWS_PRE, m->len,
                              m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
            if (w < (int)m->len)
                return -1;
            s->qh = m->next;
            if (!s->qh)
                s->qt = NULL;
            s->qbytes -= crm_outmsg_cost(m->len);
            free(m);
            if ((s->rx_paused & CRM_RX_QUEUE) && s->qbytes <= n->o.send_queue_max / 2)
                crm_sess_pause_rx(s, CRM_RX_QUEUE, 0);
        }
        if (s->qh || s->close_code)
            lws_callback_on_writable(wsi);
        break;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        /* lws_cancel_service: the writer has committed batches (or a
         * signal woke us); once per protocol, and collecting is cheap
         * when there is nothing */
        if (n && n->writer)
            crm_ops_collect(n);
        break;
    case LWS_CALLBACK_CLOSED:
        if (!s->is_ws)
            break;
        crm_ops_forget(s);
        sess_free_queue(s);
        free(s->rx);
        s->rx = NULL;
        if (s->prev)
            s->prev->next = s->next;
        else
            n->sessions = s->next;
        if (s->next)
            s->next->prev = s->prev;
        n->conns_now--;
        s->is_ws = 0;
        /* user is "token:ID", the token's id, never its secret (R18) */
        crm_log(CRM_LOG_DEBUG, "disconnect", "%s%s%s", s->user[0] ? s->user : "not authenticated",
                s->close_why ? ": " : "", s->close_why ? s->close_why : "");
        break;
    case LWS_CALLBACK_HTTP:
        if (!host_allowed(wsi, n)) {
            n->hosts_refused++;
            return http_reply(wsi, 403, "text/plain", "host not allowed\n", 17);
        }
        return on_http(wsi, n, in ? (const char *)in : "/");
    case LWS_CALLBACK_HTTP_FILE_COMPLETION:
        /* No keep-alive: every HTTP connection closes after its one
         * response.  libwebsockets 4.1.6 reads freed header memory when the
         * next request on a kept-alive connection carries a bad Upgrade
         * (ASan: heap-use-after-free in strcasecmp, test_hostile's
         * bad_upgrade_on_keep_alive; fixed upstream after 4.1.6). */
        return -1;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* protocols[0] also serves plain HTTP and upgrades that name no
 * subprotocol: those speak JSON (spec). */
static const struct lws_protocols protocols[] = {
    {"crm.v1.json", callback, sizeof(crm_sess), 0, 0, NULL, 0},
    {"crm.v1.msgpack", callback, sizeof(crm_sess), 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0}};

/* ---- loop ---- */

static void flush_cb(lws_sorted_usec_list_t *sul)
{
    crm_net *n = lws_container_of(sul, crm_net, flush_sul);
    n->flush_scheduled = 0;
    crm_ops_flush(n);
}

static void tick_cb(lws_sorted_usec_list_t *sul)
{
    crm_net *n = lws_container_of(sul, crm_net, tick_sul);
    crm_ops_tick(n);
    lws_sul_schedule(n->ctx, 0, &n->tick_sul, tick_cb, 250 * LWS_US_PER_MS);
}

static void agg_cb(lws_sorted_usec_list_t *sul)
{
    crm_net *n = lws_container_of(sul, crm_net, agg_sul);
    n->agg_scheduled = 0;
    crm_subs_agg_tick(n);
}

void crm_net_schedule_agg(crm_net *n, int ms)
{
    if (n->agg_scheduled)
        return;
    n->agg_scheduled = 1;
    lws_sul_schedule(n->ctx, 0, &n->agg_sul, agg_cb, (lws_usec_t)ms * LWS_US_PER_MS);
}

/* Called by ops.c when the first write of a batch arrives: the flush runs
 * once this loop turn has read everything that is ready. */
void crm_net_schedule_flush(crm_net *n)
{
    if (n->flush_scheduled)
        return;
    n->flush_scheduled = 1;
    lws_sul_schedule(n->ctx, 0, &n->flush_sul, flush_cb, 1);
}

/* lws' own messages become log lines: "[2026/11/23 14:50:00:1234] E: text\n"
 * -> {"event":"lws","msg":"text"}. */
static void lws_emit(int level, const char *line)
{
    const char *p = line;
    size_t n;
    if (*p == '[' && (p = strchr(p, ']')) != NULL && p[1] == ' ' && p[2] && p[3] == ':')
        p += 4;
    else
        p = line;
    p += strspn(p, " ");
    n = strcspn(p, "\n");
    crm_log(level & LLL_ERR ? CRM_LOG_ERROR : level & LLL_WARN ? CRM_LOG_WARN : CRM_LOG_INFO,
            "lws", "%.*s", (int)n, p);
}

/* The writer's wake-up (any thread): lws_cancel_service makes the loop
 * call back with LWS_CALLBACK_EVENT_WAIT_CANCELLED. */
static void writer_wake(void *ud)
{
    crm_net *n = ud;
    lws_cancel_service(n->ctx);
}

int crm_net_swap_store(crm_net *n, crm_store *store, crm_err *err)
{
    crm_ops_settle(n);
    crm_writer_stop(n->writer);
    n->writer = NULL;
    n->store = store;
    if (!store)
        return CRM_OK;
    n->pushed_seq = crm_store_last_seq(store);
    return crm_writer_start(store, n->o.bus, writer_wake, n, &n->writer, err);
}

int crm_net_create(crm_store *store, const crm_schema *schema, const crm_net_opts *opts,
                   crm_net **out, crm_err *err)
{
    struct lws_context_creation_info info;
    crm_net *n = calloc(1, sizeof *n);
    *out = NULL;
    if (!n)
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    n->store = store;
    n->schema = schema;
    if (opts)
        n->o = *opts;
    else
        crm_net_opts_default(&n->o);
    n->pushed_seq = crm_store_last_seq(store);
    lws_set_log_level(LLL_ERR | (crm_log_level() <= CRM_LOG_WARN ? LLL_WARN : 0), lws_emit);
    memset(&info, 0, sizeof info);
    info.port = n->o.port; /* 0: the kernel picks a free port */
    info.iface = n->o.host;
    info.protocols = protocols;
    info.user = n;
    info.options = LWS_SERVER_OPTION_VALIDATE_UTF8 | LWS_SERVER_OPTION_DISABLE_IPV6;
    info.timeout_secs = 10;
    /* dead peers: lws pings a quiet connection, and hangs up on one that
     * stayed silent (no message, no pong) for idle_secs */
    n->idle_policy.secs_since_valid_ping = (uint16_t)n->o.ping_secs;
    n->idle_policy.secs_since_valid_hangup = (uint16_t)n->o.idle_secs;
    info.retry_and_idle_policy = &n->idle_policy;
    /* Header buffers for connections still sending their HTTP head (about
     * 4 KiB each, made on demand, freed at the upgrade).  A connection that
     * finds none waits for one: with 256, 256 connections trickling their
     * headers (slowloris) held every new client off for timeout_secs at a
     * time, and those beyond 256 lived 2 x timeout_secs. */
    info.max_http_header_pool = 4096;
    info.pt_serv_buf_size = 64 * 1024;
    if (n->o.tls_cert && n->o.tls_key) {
        /* wss:// and https:// only: without ALLOW_NON_SSL_ON_SSL_PORT a
         * plain connection to this port fails its handshake */
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = n->o.tls_cert;
        info.ssl_private_key_filepath = n->o.tls_key;
    }
    n->ctx = lws_create_context(&info);
    if (!n->ctx) {
        if (info.ssl_cert_filepath)
            crm_err_set(err, CRM_UNAVAILABLE,
                        "cannot listen on %s:%d with TLS certificate %s and key %s "
                        "(the lws lines above say why)",
                        n->o.host, n->o.port, n->o.tls_cert, n->o.tls_key);
        else
            crm_err_set(err, CRM_UNAVAILABLE, "cannot listen on %s:%d", n->o.host, n->o.port);
        free(n);
        return CRM_UNAVAILABLE;
    }
    n->vh = lws_get_vhost_by_name(n->ctx, "default");
    n->port = n->vh ? lws_get_vhost_listen_port(n->vh) : n->o.port;
    if (crm_writer_start(store, n->o.bus, writer_wake, n, &n->writer, err) != CRM_OK) {
        lws_context_destroy(n->ctx);
        free(n);
        return err->code;
    }
    lws_sul_schedule(n->ctx, 0, &n->tick_sul, tick_cb, 250 * LWS_US_PER_MS);
    *out = n;
    return CRM_OK;
}

int crm_net_port(const crm_net *n)
{
    return n->port;
}

int crm_net_tls(const crm_net *n)
{
    return n->o.tls_cert && n->o.tls_key;
}

void crm_net_wake(crm_net *n)
{
    lws_cancel_service(n->ctx);
}

int crm_net_run(crm_net *n, volatile int *stop)
{
    /* A failed commit (crm_store_failed) ends the loop too: no later write
     * may be acknowledged, and main exits so a supervisor restarts us. */
    while (!*stop && crm_store_failed(n->store, NULL) == CRM_OK) {
        if (n->o.reload_flag && *n->o.reload_flag) {
            *n->o.reload_flag = 0;
            /* scripts are the writer's: it reloads them between batches */
            if (n->o.on_reload && crm_writer_post(n->writer, n->o.on_reload, n->o.reload_ud) != 0)
                crm_log(CRM_LOG_ERROR, "reload_refused", "reload refused: out of memory");
        }
        if (lws_service(n->ctx, 0) < 0)
            break;
    }
    /* orderly stop: in-flight writes finish (acknowledged or failed), then
     * every client is told 1001 once its queue has drained */
    crm_ops_settle(n);
    for (crm_sess *s = n->sessions; s; s = s->next)
        crm_sess_close(s, LWS_CLOSE_STATUS_GOINGAWAY, "server shutting down", 1);
    int64_t until = crm_net_now_ms() + 2000;
    while (n->sessions && crm_net_now_ms() < until)
        lws_service(n->ctx, 0);
    return CRM_OK;
}

void crm_net_destroy(crm_net *n)
{
    if (!n)
        return;
    /* the writer wakes the loop through ctx: it stops first */
    if (n->writer) {
        crm_writer_drain(n->writer);
        crm_ops_collect(n);
    }
    crm_writer_stop(n->writer);
    n->writer = NULL;
    lws_context_destroy(n->ctx);
    for (size_t i = 0; i < n->nbatch; i++) { /* only when crm_net_run never flushed */
        for (size_t j = 0; j < n->batch[i].nw; j++)
            crm_write_clear(&n->batch[i].writes[j]);
        free(n->batch[i].writes);
        crm_value_free(n->batch[i].req);
    }
    free(n->batch);
    free(n->spare);
    free(n);
}
