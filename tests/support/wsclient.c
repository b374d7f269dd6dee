/* wsclient -- blocking RFC 6455 client and a crmd process runner (tests). */
#include "wsclient.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "codec.h"
#include "lwsclient.h"
#include "testutil.h"
#include "tmpdir.h"

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Reads exactly len bytes within timeout_ms. */
static int read_all(int fd, void *buf, size_t len, int timeout_ms)
{
    char *p = buf;
    while (len) {
        struct pollfd pf = {fd, POLLIN, 0};
        int pr = poll(&pf, 1, timeout_ms);
        ssize_t r;
        if (pr <= 0)
            return -1;
        r = read(fd, p, len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

int ws_client_use_lws;
int ws_client_tls;

static int raw_send_frame(ws_client *c, int opcode, const void *buf, size_t len);

int ws_connect(ws_client *c, int port, const char *subprotocol, const char *origin, int *status)
{
    if (ws_client_use_lws || ws_client_tls) {
        c->msgpack = subprotocol && strcmp(subprotocol, "crm.v1.msgpack") == 0;
        if (status)
            *status = 0;
        c->fd = -1;
        c->lws = lwsc_connect_tls(port, subprotocol, origin, ws_client_tls);
        return c->lws ? 0 : -1;
    }
    return ws_connect_ex(c, port, "/ws", subprotocol, origin, NULL, status);
}

int ws_connect_ex(ws_client *c, int port, const char *path, const char *subprotocol,
                  const char *origin, const char *extra_headers, int *status)
{
    struct sockaddr_in sa = {0};
    char req[4096], resp[4096];
    size_t n = 0;
    int one = 1;
    c->msgpack = subprotocol && strcmp(subprotocol, "crm.v1.msgpack") == 0;
    if (status)
        *status = 0;
    c->lws = NULL;
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0)
        return -1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        goto fail;
    int len = snprintf(req, sizeof req,
                       "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "Sec-WebSocket-Version: 13\r\n%s%s%s%s%s%s%s\r\n",
                       path, port, extra_headers ? extra_headers : "",
                       subprotocol ? "Sec-WebSocket-Protocol: " : "",
                       subprotocol ? subprotocol : "", subprotocol ? "\r\n" : "",
                       origin ? "Origin: " : "", origin ? origin : "", origin ? "\r\n" : "");
    if (len < 0 || (size_t)len >= sizeof req || write_all(c->fd, req, (size_t)len) != 0)
        goto fail;
    /* read the response head byte by byte: the frames after it are ours */
    while (n + 1 < sizeof resp) {
        if (read_all(c->fd, resp + n, 1, 3000) != 0)
            goto fail;
        n++;
        if (n >= 4 && memcmp(resp + n - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    resp[n] = 0;
    if (status)
        sscanf(resp, "HTTP/1.%*d %d", status); /* lws answers a refused upgrade as HTTP/1.0 */
    if (strncmp(resp, "HTTP/1.1 101", 12) != 0)
        goto fail;
    return 0;
fail:
    close(c->fd);
    c->fd = -1;
    return -1;
}

void ws_close(ws_client *c)
{
    if (c->lws) {
        lwsc_close(c->lws);
        c->lws = NULL;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

int ws_send_frame(ws_client *c, int opcode, const void *buf, size_t len)
{
    if (c->lws)
        return lwsc_send(c->lws, opcode == 2, buf, len);
    return raw_send_frame(c, opcode, buf, len);
}

static int raw_send_frame(ws_client *c, int opcode, const void *buf, size_t len)
{
    uint8_t hdr[14], mask[4] = {0x12, 0x34, 0x56, 0x78};
    size_t h = 0;
    uint8_t *copy;
    int rc;
    hdr[h++] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        hdr[h++] = (uint8_t)(0x80 | len);
    } else if (len < 65536) {
        hdr[h++] = 0x80 | 126;
        hdr[h++] = (uint8_t)(len >> 8);
        hdr[h++] = (uint8_t)len;
    } else {
        hdr[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            hdr[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    memcpy(hdr + h, mask, 4);
    h += 4;
    if (!(copy = malloc(len ? len : 1)))
        return -1;
    for (size_t i = 0; i < len; i++)
        copy[i] = ((const uint8_t *)buf)[i] ^ mask[i & 3];
    rc = write_all(c->fd, hdr, h) || write_all(c->fd, copy, len) ? -1 : 0;
    free(copy);
    return rc;
}

int ws_send_raw(ws_client *c, const void *buf, size_t len)
{
    return write_all(c->fd, buf, len);
}

int ws_send_value(ws_client *c, const crm_value *v)
{
    size_t len;
    int rc;
    if (c->msgpack) {
        uint8_t *b = crm_mp_encode(v, &len);
        rc = b ? ws_send_frame(c, 2, b, len) : -1;
        free(b);
    } else {
        char *b = crm_json_encode(v, &len);
        rc = b ? ws_send_frame(c, 1, b, len) : -1;
        free(b);
    }
    return rc;
}

int ws_send_json(ws_client *c, const char *json)
{
    crm_value *v = crm_test_json(json);
    int rc = ws_send_value(c, v);
    crm_value_free(v);
    return rc;
}

crm_value *ws_recv(ws_client *c, int timeout_ms, int *close_code)
{
    uint8_t *msg = NULL;
    size_t mlen = 0;
    if (close_code)
        *close_code = 0;
    if (c->lws) {
        if (!(msg = lwsc_recv(c->lws, timeout_ms, &mlen, close_code)))
            return NULL;
        goto decode;
    }
    for (;;) {
        uint8_t h[2], ext[8];
        uint64_t len;
        int op, fin;
        uint8_t *nb;
        if (read_all(c->fd, h, 2, timeout_ms) != 0)
            goto fail;
        fin = h[0] & 0x80;
        op = h[0] & 0x0f;
        len = h[1] & 0x7f;
        if (len == 126) {
            if (read_all(c->fd, ext, 2, timeout_ms))
                goto fail;
            len = (uint64_t)ext[0] << 8 | ext[1];
        } else if (len == 127) {
            if (read_all(c->fd, ext, 8, timeout_ms))
                goto fail;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | ext[i];
        }
        if (len > (64u << 20))
            goto fail;
        if (!(nb = realloc(msg, mlen + len + 1)))
            goto fail;
        msg = nb;
        if (len && read_all(c->fd, msg + mlen, len, timeout_ms))
            goto fail;
        if (op == 8) { /* close */
            if (close_code && len >= 2)
                *close_code = msg[mlen] << 8 | msg[mlen + 1];
            goto fail;
        }
        if (op == 9 || op == 10) /* ping / pong: not part of a message */
            continue;
        mlen += len;
        if (fin)
            break;
    }
decode: {
        crm_err err;
        crm_limits lim = {64u << 20, 64};
        crm_value *v = c->msgpack ? crm_mp_decode(msg, mlen, &lim, &err)
                                  : crm_json_decode((char *)msg, mlen, &lim, &err);
        if (!v)
            fprintf(stderr, "ws_recv: undecodable message: %s\n", err.msg);
        free(msg);
        return v;
    }
fail:
    free(msg);
    return NULL;
}

crm_value *ws_reply(ws_client *c, long long ref, int timeout_ms, crm_value *pushes)
{
    for (;;) {
        crm_value *v = ws_recv(c, timeout_ms, NULL);
        const crm_value *r;
        if (!v)
            return NULL;
        r = crm_map_get(v, "ref");
        if (r && r->type == CRM_T_INT && r->u.i == ref)
            return v;
        if (pushes && crm_map_get(v, "event"))
            crm_arr_push(pushes, v);
        else
            crm_value_free(v);
    }
}

/* ---- running crmd ---- */

/* Copies bytes to stderr and, when log_fd >= 0, to the log file too. */
static void copy_out(int log_fd, const char *buf, size_t len)
{
    (void)!write(2, buf, len);
    if (log_fd >= 0)
        (void)!write(log_fd, buf, len);
}

int crmd_spawn(crmd_proc *p, const char *data, const char *schemas, const char *const *argv,
               const char *log)
{
    int errpipe[2], log_fd = -1;
    char line[4096];
    size_t n = 0;
    memset(p, 0, sizeof *p);
    p->bin = strdup(argv[0]);
    p->schemas = schemas ? strdup(schemas) : NULL;
    p->data = data ? strdup(data) : NULL;
    if (log && (log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644)) < 0)
        return -1;
    if (pipe(errpipe) != 0) {
        if (log_fd >= 0)
            close(log_fd);
        return -1;
    }
    pid_t parent = getpid();
    p->pid = fork();
    if (p->pid == 0) {
        /* a test killed by ctest's timeout takes its crmd with it (the
         * log copier below ends at the pipe's EOF) */
        crm_test_die_with_parent(parent);
        dup2(errpipe[1], 2);
        close(errpipe[0]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(errpipe[1]);
    /* the ready line carries the port: "listening on 127.0.0.1:PORT" */
    while (n + 1 < sizeof line && read_all(errpipe[0], line + n, 1, 10000) == 0) {
        if (line[n] == '\n') {
            char *at;
            if (log_fd >= 0)
                (void)!write(log_fd, line, n + 1);
            line[n] = 0;
            at = strstr(line, "listening on 127.0.0.1:");
            if (at) {
                p->port = atoi(at + strlen("listening on 127.0.0.1:"));
                break;
            }
            fprintf(stderr, "crmd: %s\n", line);
            n = 0;
            continue;
        }
        n++;
    }
    /* keep reading its log in the background so it never blocks on stderr */
    if ((p->log_pid = fork()) == 0) {
        char buf[4096];
        ssize_t r;
        while ((r = read(errpipe[0], buf, sizeof buf)) > 0)
            copy_out(log_fd, buf, (size_t)r);
        _exit(0);
    }
    close(errpipe[0]);
    if (log_fd >= 0)
        close(log_fd);
    return p->port > 0 ? 0 : -1;
}

static int start_args(crmd_proc *p, const char *bin, const char *schemas, const char *data,
                      const char *extra)
{
    const char *web = getenv("CRM_WEB");
    char *dir = data ? strdup(data) : crm_tmpdir_make("e2e");
    /* no scripts or plugins unless CRMD_ARGS names them (a later flag
     * wins): the defaults are relative to the cwd, which is the build's */
    const char *argv[40] = {bin, "serve", "--data", dir, "--schemas", schemas,
                            "--listen", "127.0.0.1:0", "--web", web ? web : "./web",
                            "--scripts", "/nonexistent/crmd-test-no-scripts",
                            "--plugins", "/nonexistent/crmd-test-no-plugins"};
    int argc = 14, rc;
    char *copy = extra ? strdup(extra) : NULL, *save = NULL;
    /* CRMD_ARGS: extra flags, space-separated (tests of limits) */
    for (char *tok = copy ? strtok_r(copy, " ", &save) : NULL; tok && argc < 39;
         tok = strtok_r(NULL, " ", &save))
        argv[argc++] = tok;
    argv[argc] = NULL;
    rc = crmd_spawn(p, dir, schemas, argv, NULL);
    free(copy);
    free(dir);
    return rc;
}

int crmd_start(crmd_proc *p, const char *bin, const char *schemas, const char *data)
{
    return start_args(p, bin, schemas, data, getenv("CRMD_ARGS"));
}

int crmd_start_with(crmd_proc *p, const char *data, const char *fmt, ...)
{
    char args[4096];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof args)
        return -1;
    return start_args(p, getenv("CRMD_BIN"), getenv("CRM_SCHEMAS"), data, args);
}

static int stop_proc(crmd_proc *p, int keep_data)
{
    int st = -1;
    if (p->pid > 0) {
        kill(p->pid, SIGTERM);
        if (waitpid(p->pid, &st, 0) != p->pid)
            st = -1;
        p->pid = 0;
    }
    /* crmd is gone: its log copier reads to the end and exits, so the log
     * holds every line (a test reads it next) */
    if (p->log_pid > 0)
        waitpid(p->log_pid, NULL, 0);
    free(p->bin);
    free(p->schemas);
    if (keep_data)
        free(p->data);
    else
        crm_tmpdir_remove(p->data);
    memset(p, 0, sizeof *p);
    return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int crmd_stop(crmd_proc *p) { return stop_proc(p, 0); }
int crmd_stop_keep(crmd_proc *p) { return stop_proc(p, 1); }

char *crmd_token(const crmd_proc *p, const char *role)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' token create --data '%s' --schemas '%s' --role '%s'", p->bin,
             p->data, p->schemas, role);
    return crm_test_last_line(cmd);
}

/* A connected loopback TCP socket, or -1. */
static int tcp_connect(int port)
{
    struct sockaddr_in sa = {0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* The status and body of a whole HTTP/1.1 response in buf (n bytes, room
 * for one more); frees buf. */
static int http_response(char *buf, size_t n, int *status, char **body)
{
    if (!buf)
        return -1;
    buf[n] = 0;
    sscanf(buf, "HTTP/1.1 %d", status);
    char *sep = strstr(buf, "\r\n\r\n");
    *body = strdup(sep ? sep + 4 : "");
    free(buf);
    return *status ? 0 : -1;
}

int http_get(int port, const char *path, int *status, char **body)
{
    char req[1024], *buf = NULL;
    size_t n = 0, cap = 0;
    int fd = tcp_connect(port), len;
    *status = 0;
    *body = NULL;
    if (fd < 0)
        return -1;
    len = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n",
                   path, port);
    if (write_all(fd, req, (size_t)len) != 0) {
        close(fd);
        return -1;
    }
    for (;;) { /* until the server closes (Connection: close) */
        struct pollfd pf = {fd, POLLIN, 0};
        ssize_t r;
        if (n + 4096 + 1 > cap) {
            char *nb = realloc(buf, cap = cap ? cap * 2 : 8192);
            if (!nb)
                break;
            buf = nb;
        }
        if (poll(&pf, 1, 3000) <= 0 || (r = read(fd, buf + n, 4096)) <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    return http_response(buf, n, status, body);
}

int https_get(int port, const char *path, int *status, char **body)
{
    char req[1024], *buf = NULL;
    size_t n = 0, cap = 0;
    struct timeval tv = {3, 0};
    SSL_CTX *ctx = NULL;
    SSL *ssl = NULL;
    int fd = tcp_connect(port), len, rc = -1;
    *status = 0;
    *body = NULL;
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    /* no verification: the tests' servers use a throw-away certificate */
    if (!(ctx = SSL_CTX_new(TLS_client_method())) || !(ssl = SSL_new(ctx)) ||
        SSL_set_fd(ssl, fd) != 1 || SSL_connect(ssl) != 1)
        goto out;
    len = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n",
                   path, port);
    if (SSL_write(ssl, req, len) != len)
        goto out;
    for (;;) {
        int r;
        if (n + 4096 + 1 > cap) {
            char *nb = realloc(buf, cap = cap ? cap * 2 : 8192);
            if (!nb)
                break;
            buf = nb;
        }
        if ((r = SSL_read(ssl, buf + n, 4096)) <= 0)
            break;
        n += (size_t)r;
    }
    rc = http_response(buf, n, status, body);
    buf = NULL;
out:
    free(buf);
    if (ssl)
        SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    return rc;
}

int ws_auth(ws_client *c, const char *token, int timeout_ms)
{
    crm_value *r = ws_request(c, timeout_ms, NULL, "{\"op\": \"auth\", \"token\": \"%s\"}", token);
    int ok = r && strcmp(ws_code(r), "OK") == 0;
    crm_value_free(r);
    return ok ? 0 : -1;
}

static long long next_request_ref = 1000000;

crm_value *ws_vrequest(ws_client *c, int timeout_ms, crm_value *pushes, const char *fmt,
                       va_list ap)
{
    char *body = NULL, *buf;
    long long ref = next_request_ref++;
    int n = vasprintf(&body, fmt, ap);
    crm_value *r = NULL;
    const char *open = body ? strchr(body, '{') : NULL;
    if (n < 0 || !open) {
        free(body);
        return NULL;
    }
    if (asprintf(&buf, "{\"ref\": %lld, %s", ref, open + 1) >= 0) {
        if (ws_send_json(c, buf) == 0)
            r = ws_reply(c, ref, timeout_ms, pushes);
        free(buf);
    }
    free(body);
    return r;
}

crm_value *ws_request(ws_client *c, int timeout_ms, crm_value *pushes, const char *fmt, ...)
{
    va_list ap;
    crm_value *r;
    va_start(ap, fmt);
    r = ws_vrequest(c, timeout_ms, pushes, fmt, ap);
    va_end(ap);
    return r;
}

const char *ws_code(const crm_value *reply)
{
    const crm_value *e = crm_map_get(reply, "error");
    return e ? crm_map_str(e, "code", "") : "OK";
}

const char *ws_message(const crm_value *reply)
{
    const crm_value *e = crm_map_get(reply, "error");
    return e ? crm_map_str(e, "message", "") : "";
}
