/*
 * lwsclient -- the same blocking client API as wsclient.h, implemented on
 * libwebsockets' own client (the issue asks for a C client over lws, so the
 * end-to-end scenarios run over a stack we did not write the framing of).
 * Each client owns one lws context and services it only while a call waits.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libwebsockets.h>

#include "lwsclient.h"

typedef struct rxmsg {
    struct rxmsg *next;
    size_t len;
    unsigned char data[];
} rxmsg;

struct lwsc {
    struct lws_context *ctx;
    struct lws *wsi;
    int established, closed, close_code, binary;
    unsigned char *part; /* fragments of the message being received */
    size_t partlen;
    rxmsg *qh, *qt;
    unsigned char *tx;   /* LWS_PRE + txlen, waiting for WRITEABLE */
    size_t txlen;
    int txbinary;
    lws_sorted_usec_list_t wake;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    lwsc *c = lws_context_user(lws_get_context(wsi));
    (void)user;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        c->established = 1;
        break;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
    case LWS_CALLBACK_CLIENT_CLOSED:
        c->closed = 1;
        c->wsi = NULL;
        break;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (len >= 2)
            c->close_code = ((unsigned char *)in)[0] << 8 | ((unsigned char *)in)[1];
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE: {
        unsigned char *nb = realloc(c->part, c->partlen + len + 1);
        if (!nb)
            return -1;
        c->part = nb;
        memcpy(c->part + c->partlen, in, len);
        c->partlen += len;
        if (lws_is_final_fragment(wsi)) {
            rxmsg *m = malloc(sizeof *m + c->partlen + 1);
            if (!m)
                return -1;
            m->next = NULL;
            m->len = c->partlen;
            memcpy(m->data, c->part, c->partlen);
            m->data[m->len] = 0;
            if (c->qt)
                c->qt->next = m;
            else
                c->qh = m;
            c->qt = m;
            c->partlen = 0;
        }
        break;
    }
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (c->tx) {
            int w = lws_write(wsi, c->tx + LWS_PRE, c->txlen,
                              c->txbinary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
            free(c->tx);
            c->tx = NULL;
            if (w < (int)c->txlen)
                return -1;
        }
        break;
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols protocols[] = {{"crm-test-client", cb, 0, 0, 0, NULL, 0},
                                                 {NULL, NULL, 0, 0, 0, NULL, 0}};

static void wake_cb(lws_sorted_usec_list_t *sul)
{
    (void)sul;
}

/* Services until done(c) or the deadline; returns done(c).  lws 4.1 ignores
 * lws_service's timeout and sleeps until its next timer, so a 20 ms timer
 * bounds each wait (else a wait for "nothing arrives" lasts ~30 s). */
static int service_until(lwsc *c, int (*done)(lwsc *), int timeout_ms)
{
    int64_t until = now_ms() + timeout_ms;
    while (!done(c) && now_ms() < until) {
        lws_sul_schedule(c->ctx, 0, &c->wake, wake_cb, 20 * LWS_US_PER_MS);
        lws_service(c->ctx, 0);
    }
    lws_sul_cancel(&c->wake);
    return done(c);
}

static int is_open_or_closed(lwsc *c) { return c->established || c->closed; }
static int sent_or_closed(lwsc *c) { return !c->tx || c->closed; }
static int has_msg_or_closed(lwsc *c) { return c->qh || c->closed; }

lwsc *lwsc_connect(int port, const char *subprotocol, const char *origin)
{
    return lwsc_connect_tls(port, subprotocol, origin, 0);
}

lwsc *lwsc_connect_tls(int port, const char *subprotocol, const char *origin, int tls)
{
    struct lws_context_creation_info info;
    struct lws_client_connect_info ci;
    char host[64];
    lwsc *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    lws_set_log_level(LLL_ERR, NULL);
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.user = c;
    if (tls)
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    if (!(c->ctx = lws_create_context(&info))) {
        free(c);
        return NULL;
    }
    snprintf(host, sizeof host, "127.0.0.1:%d", port);
    memset(&ci, 0, sizeof ci);
    ci.context = c->ctx;
    ci.address = "127.0.0.1";
    ci.port = port;
    ci.path = "/ws";
    ci.host = host;
    /* lws writes "Origin: http://<origin>" itself: hand it the host part */
    if (origin && strncmp(origin, "http://", 7) == 0)
        origin += 7;
    ci.origin = origin;
    ci.protocol = subprotocol;
    ci.ietf_version_or_minus_one = -1;
    ci.pwsi = &c->wsi;
    if (tls)
        ci.ssl_connection = LCCSCF_USE_SSL | LCCSCF_ALLOW_SELFSIGNED |
                            LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK;
    c->binary = subprotocol && strcmp(subprotocol, "crm.v1.msgpack") == 0;
    if (!lws_client_connect_via_info(&ci) || !service_until(c, is_open_or_closed, 5000) ||
        !c->established || c->closed) {
        lwsc_close(c);
        return NULL;
    }
    return c;
}

void lwsc_close(lwsc *c)
{
    if (!c)
        return;
    lws_context_destroy(c->ctx);
    while (c->qh) {
        rxmsg *m = c->qh;
        c->qh = m->next;
        free(m);
    }
    free(c->part);
    free(c->tx);
    free(c);
}

int lwsc_send(lwsc *c, int binary, const void *buf, size_t len)
{
    if (c->closed || c->tx || !(c->tx = malloc(LWS_PRE + len + 1)))
        return -1;
    memcpy(c->tx + LWS_PRE, buf, len);
    c->txlen = len;
    c->txbinary = binary;
    lws_callback_on_writable(c->wsi);
    return service_until(c, sent_or_closed, 5000) && !c->tx ? 0 : -1;
}

unsigned char *lwsc_recv(lwsc *c, int timeout_ms, size_t *len, int *close_code)
{
    rxmsg *m;
    unsigned char *out;
    if (close_code)
        *close_code = 0;
    service_until(c, has_msg_or_closed, timeout_ms);
    if (!c->qh) {
        if (close_code && c->closed)
            *close_code = c->close_code;
        return NULL;
    }
    m = c->qh;
    c->qh = m->next;
    if (!c->qh)
        c->qt = NULL;
    *len = m->len;
    out = malloc(m->len + 1);
    if (out) {
        memcpy(out, m->data, m->len + 1);
    }
    free(m);
    return out;
}
