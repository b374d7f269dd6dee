/*
 * lwsclient -- a blocking WebSocket client on libwebsockets for tests.
 * wsclient.c routes to it when ws_client_use_lws is set, so the same
 * scenarios run over our raw framing and over lws' own client.
 */
#ifndef CRM_TEST_LWSCLIENT_H
#define CRM_TEST_LWSCLIENT_H

#include <stddef.h>

typedef struct lwsc lwsc;

/* NULL when the handshake fails (refused subprotocol or Origin, no server). */
lwsc *lwsc_connect(int port, const char *subprotocol, const char *origin);
/* The same over TLS when tls (wss://), accepting a self-signed certificate
 * and any host name: the tests' servers use a throw-away certificate. */
lwsc *lwsc_connect_tls(int port, const char *subprotocol, const char *origin, int tls);
void lwsc_close(lwsc *c);
/* One whole message as a text (binary = 0) or binary frame. */
int lwsc_send(lwsc *c, int binary, const void *buf, size_t len);
/* The next whole message (malloc'd, NUL-terminated, caller frees), or NULL
 * on timeout or close (*close_code: the peer's close code, else 0). */
unsigned char *lwsc_recv(lwsc *c, int timeout_ms, size_t *len, int *close_code);

#endif
