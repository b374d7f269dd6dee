/*
 * wsclient -- a small blocking WebSocket client for tests (RFC 6455 over a
 * plain TCP socket), and a helper that runs a real crmd on a free loopback
 * port.  Written here rather than on libwebsockets so tests can also send
 * frames a well-behaved library never would (hostile-input tests).
 */
#ifndef CRM_TEST_WSCLIENT_H
#define CRM_TEST_WSCLIENT_H

#include <stdarg.h>
#include <stddef.h>
#include <sys/types.h>

#include "value.h"

typedef struct lwsc lwsc;

typedef struct ws_client {
    int fd;
    int msgpack;
    lwsc *lws; /* set when the client runs over libwebsockets */
} ws_client;

/* When non-zero, ws_connect makes clients on libwebsockets' own client
 * (lwsclient.h) instead of our raw framing; every call below works the same
 * on both, except that an lws client cannot send malformed frames and its
 * refused handshakes report no HTTP status. */
extern int ws_client_use_lws;
/* When non-zero, ws_connect makes lws clients over TLS (wss://), accepting
 * a self-signed certificate (tests of `crmd serve --tls-cert`). */
extern int ws_client_tls;

/* Connects to 127.0.0.1:port/ws offering subprotocol (NULL: none).
 * Returns 0, or -1 (with the HTTP status in *status when one came). */
int ws_connect(ws_client *c, int port, const char *subprotocol, const char *origin, int *status);
/* The same on our raw framing with the request path (e.g. "/ws?token=...")
 * and extra header lines (each ending in \r\n; NULL: none) of the caller. */
int ws_connect_ex(ws_client *c, int port, const char *path, const char *subprotocol,
                  const char *origin, const char *extra_headers, int *status);
void ws_close(ws_client *c);
/* Sends one frame (opcode 1 text, 2 binary) with the given payload. */
int ws_send_frame(ws_client *c, int opcode, const void *buf, size_t len);
/* Writes bytes to the socket as they are (no framing, no masking): for
 * hand-made frame headers and other hostile input. */
int ws_send_raw(ws_client *c, const void *buf, size_t len);
/* Encodes v in the client's format and sends it. */
int ws_send_value(ws_client *c, const crm_value *v);
/* Sends JSON text parsed into a value (then in the client's format). */
int ws_send_json(ws_client *c, const char *json);
/* Receives one whole message within timeout_ms.  Returns a decoded value the
 * caller frees, or NULL on timeout/close (*close_code gets the close code
 * when the server closed, else 0). */
crm_value *ws_recv(ws_client *c, int timeout_ms, int *close_code);
/* Receives until a reply with this integer ref arrives (pushes in between
 * are appended to *pushes when non-NULL, else freed). */
crm_value *ws_reply(ws_client *c, long long ref, int timeout_ms, crm_value *pushes);

/* Sends {"op": "auth", "token": token} and waits for the answer: 0 when the
 * server said ok, -1 otherwise. */
int ws_auth(ws_client *c, const char *token, int timeout_ms);
/* Sends a request given as printf-style JSON text of an object without
 * "ref" (e.g. "{\"op\": \"get\", ...}"), adding the next ref of a
 * process-wide counter, and returns its reply (caller frees) or NULL on
 * timeout.  Pushes that arrive first go to pushes when non-NULL. */
crm_value *ws_request(ws_client *c, int timeout_ms, crm_value *pushes, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
crm_value *ws_vrequest(ws_client *c, int timeout_ms, crm_value *pushes, const char *fmt,
                       va_list ap);
/* A reply's error code ("OK" for a success) and message ("" for a success);
 * borrowed from reply. */
const char *ws_code(const crm_value *reply);
const char *ws_message(const crm_value *reply);

/* GET path over plain HTTP/1.1 (Connection: close).  *body: malloc'd text
 * after the headers (caller frees). 0, or -1 when no response came. */
int http_get(int port, const char *path, int *status, char **body);
/* The same over TLS (https://), accepting any certificate. */
int https_get(int port, const char *path, int *status, char **body);

typedef struct crmd_proc {
    pid_t pid;
    pid_t log_pid; /* the process copying crmd's stderr to its log (crmd_spawn) */
    int port;
    char *data, *bin, *schemas;
} crmd_proc;

/* Starts `crmd serve` (bin) on a free port with data in a new temp folder
 * (or data when given), schemas, and static files from $CRM_WEB; waits for
 * its ready line. */
int crmd_start(crmd_proc *p, const char *bin, const char *schemas, const char *data);
/* crmd_start of $CRMD_BIN with $CRM_SCHEMAS, and the space-separated flags
 * that fmt makes (printf-style; in place of $CRMD_ARGS) after the usual ones:
 * "--plugins DIR", "--scripts DIR --time-scale 60". */
int crmd_start_with(crmd_proc *p, const char *data, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Runs argv (argv[0] the crmd binary; NULL-terminated) and waits for its
 * ready line (p->port).  data: the folder crmd_stop removes (copied; NULL =
 * none); schemas: for crmd_token.  log: when non-NULL, crmd's stderr is also
 * appended to this file (tests that read the log). */
int crmd_spawn(crmd_proc *p, const char *data, const char *schemas, const char *const *argv,
               const char *log);
/* SIGTERM, wait; returns the exit status (or -1).  Removes the data folder. */
int crmd_stop(crmd_proc *p);
/* The same, but the data folder stays (restart tests): p is cleared. */
int crmd_stop_keep(crmd_proc *p);
/* Runs `crmd token create --role role`; returns a malloc'd token. */
char *crmd_token(const crmd_proc *p, const char *role);

#endif
