/* benchws -- what the benchmarks that drive a real crmd share (bench_ws,
 * bench_peers): the ~250-byte contact they all create, the requests as JSON
 * or msgpack, a WebSocket client for an epoll loop, and crmd as a child
 * process.  Everything dies (bench_die) on a broken invariant: a benchmark
 * has no caller to hand an error to. */
#ifndef CRM_BENCH_WS_H
#define CRM_BENCH_WS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "fanout.h"

#define REQ_CAP 4096        /* the largest request the writers build */
#define RX_INIT 8192        /* a connection's first receive buffer */
#define QUERY_CITIES 1000   /* preloaded: PER_CITY records in each of these cities */
#define PER_CITY 10
#define BENCH_NCITIES 20

/* ---- the contact every benchmark creates ---- */

/* 11 string fields, about 250 bytes as a JSON object.  The email
 * "<tag><k, 8 digits>@mail.example.com" makes a contact unique and lets a
 * subscriber tell which write a push is for (contact_key). */
#define CONTACT_FIELDS 11
typedef struct contact {
    char name[48], email[80], phone[32], street[48], city[40], postcode[8], owner[16];
    const char *job_title, *country, *source, *language; /* static strings */
} contact;

extern const char *const bench_cities[BENCH_NCITIES]; /* the cities of the create rows */
extern const char *const contact_field_names[CONTACT_FIELDS];

/* Fills c for key k (tag: a short prefix, "c", "q", "f") in city. */
void contact_make(contact *c, const char *tag, uint64_t k, const char *city);
/* Field i (0..CONTACT_FIELDS) of c, in the order of contact_field_names. */
const char *contact_field(const contact *c, int i);
/* Finds the next contact email with prefix tag in m[from..n) in any encoding
 * (JSON, msgpack, a notification payload): 0 with its key in *k and the
 * offset after it in *next, or -1 when there is none. */
int contact_key(const uint8_t *m, size_t n, const char *tag, size_t from, uint64_t *k,
                size_t *next);
/* "QC-0042": the preloaded query city i. */
void query_city(char *out, size_t n, unsigned i);

/* ---- requests: the same request as JSON or msgpack ---- */

/* A writer into p[0..cap) (p owned by the caller); mp: msgpack, else JSON.
 * Initialise as {buf, 0, sizeof buf, mp, 0, {0}, {0}}. */
typedef struct wb {
    uint8_t *p;
    size_t n, cap;
    int mp, depth;
    int cnt[8], arr[8];
} wb;

void wb_open(wb *w, unsigned n, int arr); /* a map (arr 0) or array of n items, n < 16 */
void wb_close(wb *w);
void wb_key(wb *w, const char *k);
void wb_str(wb *w, const char *s); /* strings that need no JSON escaping */
void wb_uint(wb *w, uint64_t u);
void wb_kstr(wb *w, const char *k, const char *v);

/* Opens a request map of n entries (n < 16) and writes its "ref" and "op";
 * the caller writes the other n - 2, then wb_close. */
void req_begin(wb *w, unsigned n, uint64_t ref, const char *op);
/* {"ref":R,"op":"subscribe","collection":"contacts"} */
void req_subscribe(wb *w, uint64_t ref);
/* {"ref":R,"op":"create","collection":"contacts","record":{the contact}} */
void req_create(wb *w, uint64_t ref, const char *tag, uint64_t k, const char *city);
void req_create_contact(wb *w, uint64_t ref, const contact *c);
void req_get(wb *w, uint64_t ref, const char *id);
/* where city = query_city(city), limit PER_CITY */
void req_query(wb *w, uint64_t ref, unsigned city);
void req_query_city(wb *w, uint64_t ref, const char *city);

/* 0 (ref and ok filled in) when m is a reply {"ref": int, "ok": bool, ...} as crmd
 * writes it (ref first, then ok), -1 otherwise (a push; an echo without ok
 * gets *ok = -1). */
int reply_ref(int mp, const uint8_t *m, size_t n, uint64_t *ref, int *ok);
/* How many times needle occurs in m[0..n) ("\"_rev\":": records in a reply). */
size_t count_sub(const uint8_t *m, size_t n, const char *needle);
/* The printable bytes of m, for a log line. */
void error_text(const uint8_t *m, size_t n, char *out, size_t cap);

/* ---- the WebSocket client ---- */

enum { ROLE_LOAD, ROLE_SUB, ROLE_WRITER };

/* One client connection; its buffers are owned by it (conn_free). */
typedef struct conn {
    int fd, mp, role, closed, close_code, epout;
    uint8_t *rx, *tx, *msg;
    size_t rxlen, rxcap, txlen, txoff, txcap, msglen, msgcap;
    /* the window: slots of requests in flight */
    int outstanding, nfree;
    int *free_slots;
    int64_t *slot_sent;
    uint64_t gen;
    /* blocking set-up: the reply waited for */
    uint64_t want_ref;
    int got, got_ok;
    char got_err[200];
    /* fan-out subscriber: what it received (fanout.h), overflow events */
    fan_rx fan;
    uint64_t overflows;
} conn;

/* Called for each whole message read; ud is the caller's. */
typedef void deliver_fn(void *ud, conn *c, const uint8_t *m, size_t n, int64_t now);

/* Opens a WebSocket to 127.0.0.1:port/ws (blocking), offering proto (NULL:
 * none), authenticates with token (NULL: not), and makes window slots. */
void conn_open(conn *c, int port, const char *proto, const char *token, int window);
/* From now on non-blocking, under epoll ep (data.ptr = c). */
void conn_nonblock(conn *c, int ep);
/* Appends one masked frame / the request in w to the send buffer. */
void ws_frame(conn *c, int opcode, const uint8_t *p, size_t len);
void ws_send_wb(conn *c, const wb *w);
/* Writes what the send buffer holds; ep < 0: blocking (set-up), else waits
 * for EPOLLOUT under ep when the socket is full. */
void conn_flush(conn *c, int ep);
/* Handles every whole frame in the receive buffer / reads what is there
 * (non-blocking) and handles it: 0, or -1 on EOF or error (c->closed). */
void conn_frames(void *ud, conn *c, deliver_fn *deliver, int64_t now);
int conn_read(void *ud, conn *c, deliver_fn *deliver);
/* Blocking: sends the request in w and waits for its reply (ref): 0 when it
 * came with ok true, else -1 (c->got_err says why). */
int conn_call(conn *c, const wb *w, uint64_t ref, int timeout_ms);
void conn_free(conn *c);

/* ---- crmd as a child process ---- */

typedef struct bench_crmd_proc {
    /* set by the caller: the binary, schemas, scripts and plugins folders
     * (a missing folder: none), the data folder and the log file */
    char crmd[4096], schemas[4096], scripts[4096], plugins[4096], data[4200], log[4200];
    /* set here */
    char token[512];
    int port;
    pid_t pid; /* -1 when not running */
} bench_crmd_proc;

/* `crmd token create --role admin` into e->token. */
void bench_crmd_token_create(bench_crmd_proc *e);
/* `crmd serve --listen 127.0.0.1:0 --rate 10000000 ...` (the default
 * per-connection limit of 10,000 requests/s would cap one-connection rows);
 * waits for its port. */
void bench_crmd_start(bench_crmd_proc *e);
/* SIGTERM and wait: its exit status, or -1. */
int bench_crmd_stop(bench_crmd_proc *e);
/* Lines crmd logged besides ready and stopped (the first copied to stderr). */
int bench_crmd_log_other(const bench_crmd_proc *e);

/* crmd's /metrics: group commits, writes in them, seconds spent in them. */
typedef struct commits {
    double batches, writes, secs;
} commits;
commits crmd_commits(int port);
/* crmd's /metrics, the whole body (malloc'd, NUL-terminated; empty when the
 * server did not answer within 3 s). */
char *crmd_metrics(int port);
/* The value of metric name (a line "name value") in body: 0, or -1 when the
 * body has no such line. */
int crmd_metric(const char *body, const char *name, double *v);

#endif
