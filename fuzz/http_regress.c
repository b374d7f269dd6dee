/*
 * http_regress -- the raw HTTP seeds of fuzz/corpus/http/ sent to a real
 * crmd, each on its own connection, exactly as stored; after every one the
 * server must still be running and answer GET /healthz and a WebSocket
 * ping.  These are the requests behind bugs Debian's libwebsockets 4.1.6
 * carries (a use-after-free on a bad `Upgrade:` on a keep-alive connection,
 * a negative Content-Length; see shared/reliability-plan.md) and their
 * neighbours.  libFuzzer cannot drive a real server fast enough to search
 * this space, so the corpus is kept by hand and replayed here in both ctest
 * builds (build-asan runs an ASan crmd).
 *
 *   http_regress CRMD_BIN SCHEMAS DIR
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "wsclient.h"

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int skip_dot(const struct dirent *d)
{
    return d->d_name[0] != '.';
}

/* Sends the file's bytes on a new connection and reads whatever comes back
 * until the server closes or 1 s of silence.  Returns the bytes read. */
static long send_raw(int port, const char *path)
{
    FILE *f = fopen(path, "rb");
    char buf[65536];
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    struct sockaddr_in sa = {0};
    long got = 0;
    int fd;
    if (f)
        fclose(f);
    if (!n)
        return -1;
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    (void)!write(fd, buf, n); /* the server may hang up early: fine */
    for (;;) {
        struct pollfd pf = {fd, POLLIN, 0};
        ssize_t r;
        if (poll(&pf, 1, 1000) <= 0 || (r = read(fd, buf, sizeof buf)) <= 0)
            break;
        got += r;
    }
    close(fd);
    return got;
}

static int server_ok(const crmd_proc *p)
{
    int status = 0, st;
    char *body = NULL;
    ws_client c;
    crm_value *r;
    if (waitpid(p->pid, &st, WNOHANG) != 0) {
        fprintf(stderr, "http_regress: crmd died (status %d)\n", st);
        return 0;
    }
    if (http_get(p->port, "/healthz", &status, &body) != 0 || status != 200) {
        fprintf(stderr, "http_regress: /healthz gave %d\n", status);
        free(body);
        return 0;
    }
    free(body);
    if (ws_connect(&c, p->port, "crm.v1.json", NULL, &status) != 0) {
        fprintf(stderr, "http_regress: WebSocket upgrade refused (%d)\n", status);
        return 0;
    }
    ws_send_json(&c, "{\"ref\": 1, \"op\": \"ping\"}");
    r = ws_reply(&c, 1, 5000, NULL);
    ws_close(&c);
    if (!r || strcmp(crm_map_str(r, "result", ""), "pong") != 0) {
        fprintf(stderr, "http_regress: no pong\n");
        crm_value_free(r);
        return 0;
    }
    crm_value_free(r);
    return 1;
}

int main(int argc, char **argv)
{
    crmd_proc p;
    struct dirent **list;
    int n, failed = 0;
    if (argc != 4) {
        fprintf(stderr, "usage: http_regress CRMD_BIN SCHEMAS DIR\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (crmd_start(&p, argv[1], argv[2], NULL) != 0) {
        fprintf(stderr, "http_regress: crmd did not start\n");
        return 1;
    }
    if ((n = scandir(argv[3], &list, skip_dot, by_name)) <= 0) {
        fprintf(stderr, "http_regress: no seeds in %s\n", argv[3]);
        crmd_stop(&p);
        return 1;
    }
    for (int i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", argv[3], list[i]->d_name);
        long got = send_raw(p.port, path);
        int ok = server_ok(&p);
        printf("%-40s %6ld bytes back, server %s\n", list[i]->d_name, got, ok ? "up" : "DOWN");
        free(list[i]);
        if (!ok) {
            failed = 1;
            for (i++; i < n; i++)
                free(list[i]);
            break;
        }
    }
    free(list);
    int st = crmd_stop(&p);
    if (!failed && st != 0) {
        fprintf(stderr, "http_regress: crmd exited with %d\n", st);
        failed = 1;
    }
    return failed;
}
