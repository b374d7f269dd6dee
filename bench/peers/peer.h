/* peer -- one system under test in bench_peers (crmd, Redis, PostgreSQL,
 * Tarantool), seen by the load generator as: start a server, open
 * connections, send one of three requests, read replies and pushes, make a
 * connection a subscriber, stop.  The load generator (main.c) owns the
 * epoll loop, the clock and the statistics; a peer owns its wire protocol.
 *
 * Every peer does the same work for a request (docs/benchmarks.md):
 *  - PEER_CREATE: store the contact durably (fsync before the reply), credit
 *    10 loyalty points to the new contact's account in the same transaction,
 *    and notify the subscribers of the change (the record in the payload);
 *    crmd alone also runs an after-hook that writes one activity record per
 *    new contact (its derived-data path, reported apart: hooks below);
 *  - PEER_GET: the contact by the id its create returned;
 *  - PEER_QUERY: at most 10 contacts of a city, through an index on city.
 * A broken invariant dies (bench_die): there is no caller to hand it to. */
#ifndef CRM_BENCH_PEER_H
#define CRM_BENCH_PEER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "benchws.h"

enum { PEER_CREATE, PEER_GET, PEER_QUERY };

/* What the benchmark gives every peer's start. */
typedef struct peer_cfg {
    const char *dir;     /* an empty folder of this peer's own, on the benchmark's disk */
    const char *src;     /* the source tree (bench/peers/<peer>/ holds its set-up files) */
    const char *crmd;    /* the crmd binary */
    int max_conns;       /* connections the server must accept at once */
} peer_cfg;

/* A reply to a request, or a push to a subscriber. */
typedef struct peer_reply {
    int push;            /* 1: a change notification, not a reply */
    int ok;              /* a reply: the request succeeded */
    long nrec;           /* records in a get's or a query's reply */
    char id[32];         /* a create's reply: the new contact's id */
    char err[200];       /* a failed reply: why */
    const uint8_t *body; /* a push: bytes holding the changed contact(s) (contact_key) */
    size_t len;
} peer_reply;

struct peer;

/* One client connection.  impl belongs to the peer (freed by close); the rest
 * to the load generator. */
typedef struct pconn {
    const struct peer *p;
    int fd;                 /* what epoll waits on */
    int closed;
    void *impl;
    /* the load generator's */
    int busy, epout, sub;
    int64_t sent_at;
    fan_rx fan;             /* fan-out subscriber: what it received */
} pconn;

typedef void peer_reply_fn(void *ud, pconn *c, const peer_reply *r);

typedef struct peer {
    const char *name;       /* "crmd", "Redis", ... */
    char version[96];       /* "Redis 7.0.15" */
    char setup[1024];       /* how it was configured, for the report (Markdown) */
    pid_t pid;              /* the server process (its children count too) */
    void *state;            /* the peer's own */
    /* Starts the server in cfg->dir and loads the schema; dies on failure. */
    void (*start)(struct peer *p, const peer_cfg *cfg);
    /* Stops it and waits for it: 0 when it exited cleanly. */
    int (*stop)(struct peer *p);
    /* Connects (blocking): ready for requests, c->fd set. */
    void (*open)(struct peer *p, pconn *c);
    void (*close)(pconn *c);
    /* Queues one request: PEER_CREATE ct, PEER_GET id arg, PEER_QUERY city arg. */
    void (*send)(pconn *c, int op, const contact *ct, const char *arg);
    /* Writes what is queued: 0 all of it, 1 the socket is full, -1 error. */
    int (*flush)(pconn *c);
    /* Reads what is there (non-blocking), calls fn for each reply and push:
     * 0, or -1 when the connection is gone. */
    int (*read)(pconn *c, peer_reply_fn *fn, void *ud);
    /* Makes c a subscriber to the contacts' changes (blocking); from then on
     * its pushes come through read.  A subscriber sends nothing else. */
    void (*subscribe)(pconn *c);
    /* Optional (crmd): its group commits so far: commits, writes in them and
     * seconds spent in them (from /metrics). */
    void (*commits)(struct peer *p, double out[3]);
    /* Optional (crmd): its after-hooks (from /metrics): out[0] the lag
     * (crmd_after_hook_lag: feed changes the slowest after-hook has not run
     * yet), out[1] after-hook runs so far, out[2] the feed's last seq; 0, or
     * -1 when /metrics did not answer with them. */
    int (*hooks)(struct peer *p, double out[3]);
} peer;

/* The four peers. */
void peer_crmd_init(peer *p);
void peer_redis_init(peer *p);
void peer_pg_init(peer *p);
void peer_tarantool_init(peer *p);

/* ---- helpers the peers share (proc.c) ---- */

/* A free TCP port on 127.0.0.1 (bound and released: a server started right
 * after takes it). */
int peer_free_port(void);
/* Forks and execs argv with stdout and stderr to log; as_user: run as that
 * user (when this process is root; NULL: as this process).  The child is
 * stopped by peer_kill_all at exit if nothing stopped it before. */
pid_t peer_spawn(char *const argv[], const char *log, const char *as_user);
/* Waits until 127.0.0.1:port accepts a connection (dies after secs, or if
 * pid exits first, naming log). */
void peer_wait_port(int port, pid_t pid, double secs, const char *log);
/* peer_spawn, then waits up to secs for it to exit: 0 when it exited with 0. */
int peer_run(char *const argv[], const char *log, const char *as_user, double secs);
/* Registers a child forked elsewhere (bench_crmd_start) for peer_kill_all. */
void peer_adopt(pid_t pid);
/* SIGTERM (sig) and wait up to secs, then SIGKILL: 0 when it exited with 0. */
int peer_stop_pid(pid_t pid, int sig, double secs);
/* Stops every child still running (atexit, and on SIGINT/SIGTERM). */
void peer_kill_all(void);
/* A peer's flush: writes tx[*off..*len) to c (non-blocking); 0 when all of it
 * went (then *off = *len = 0), 1 when the socket is full, -1 on an error
 * (c->closed set). */
int peer_flush_buf(pconn *c, const void *tx, size_t *off, size_t *len);
/* CPU seconds of pid and its direct children (PostgreSQL's backends). */
double peer_tree_cpu_s(pid_t pid);
/* Reads a whole small file (at most cap-1 bytes) into buf: its length or -1. */
long peer_read_file(const char *path, char *buf, size_t cap);
/* Blocking request on c: sends, waits for the reply (pushes dropped), 0 when
 * it came back ok (r filled in), -1 otherwise. */
int peer_call(pconn *c, int op, const contact *ct, const char *arg, peer_reply *r,
              int timeout_ms);

#endif
