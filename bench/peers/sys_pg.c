/* sys_pg -- PostgreSQL 15 as a peer: Debian's postgresql-15, a fresh
 * cluster (initdb) in a folder of its own, on a loopback port, run as the
 * postgres user when the benchmark runs as root (PostgreSQL refuses root),
 * synchronous_commit on and fsync on (the defaults, set explicitly), the
 * schema bench/peers/postgres/schema.sql.  Driven with libpq's asynchronous
 * calls (prepared statements, non-blocking socket) under the load
 * generator's epoll; notifications are read with PQnotifies. */
#include <errno.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "benchutil.h"
#include "peer.h"

#define PG_USER "crmbench" /* the cluster's superuser (trust, loopback only) */

typedef struct pg_conn {
    PGconn *db;
    int inflight;
    peer_reply r; /* the reply being assembled */
} pg_conn;

static struct {
    int port;
    char data[4200], log[4200], conninfo[512];
} ps;

static const char *pg_bindir(void)
{
    const char *b = getenv("CRM_PG_BINDIR");
    return b && *b ? b : "/usr/lib/postgresql/15/bin";
}

static void pg_exec(PGconn *db, const char *sql)
{
    PGresult *res = PQexec(db, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        bench_die("postgres: %s: %s", sql, PQerrorMessage(db));
    PQclear(res);
}

static void pg_start(peer *p, const peer_cfg *cfg)
{
    char initdb[4200], postgres[4200], port[16], maxc[32], sql_path[4200], *sql;
    const char *user = geteuid() == 0 ? "postgres" : NULL;
    PGconn *db;
    PGresult *res;
    long n;
    snprintf(initdb, sizeof initdb, "%s/initdb", pg_bindir());
    snprintf(postgres, sizeof postgres, "%s/postgres", pg_bindir());
    if (access(initdb, X_OK) != 0 || access(postgres, X_OK) != 0)
        bench_die("no PostgreSQL 15 in %s (apt-get install postgresql-15, or set CRM_PG_BINDIR)",
                  pg_bindir());
    snprintf(ps.data, sizeof ps.data, "%s/pgdata", cfg->dir);
    snprintf(ps.log, sizeof ps.log, "%s/postgres.log", cfg->dir);
    if (user) { /* initdb, run as postgres, creates pgdata in cfg->dir */
        struct passwd *pw = getpwnam(user);
        if (!pw || chown(cfg->dir, pw->pw_uid, pw->pw_gid) != 0)
            bench_die("postgres: cannot hand %s to the postgres user", cfg->dir);
    }
    {
        char *argv[] = {initdb, "-D", ps.data, "-U", PG_USER, "-A", "trust", "-E", "UTF8",
                        "--locale=C", "--no-sync", NULL};
        if (peer_run(argv, ps.log, user, 120) != 0)
            bench_die("postgres: initdb failed (log: %s)", ps.log);
    }
    ps.port = peer_free_port();
    snprintf(port, sizeof port, "port=%d", ps.port);
    snprintf(maxc, sizeof maxc, "max_connections=%d", cfg->max_conns + 16);
    {
        char sock[4300];
        snprintf(sock, sizeof sock, "unix_socket_directories=%s", ps.data);
        char *argv[] = {postgres, "-D", ps.data, "-c", "listen_addresses=127.0.0.1", "-c", port,
                        "-c", sock, "-c", maxc, "-c", "synchronous_commit=on", "-c", "fsync=on",
                        "-c", "full_page_writes=on", NULL};
        p->pid = peer_spawn(argv, ps.log, user);
    }
    peer_wait_port(ps.port, p->pid, 60, ps.log);
    snprintf(ps.conninfo, sizeof ps.conninfo,
             "host=127.0.0.1 port=%d user=" PG_USER " dbname=postgres connect_timeout=10",
             ps.port);
    for (int i = 0;; i++) { /* the port opens a moment before connections are accepted */
        db = PQconnectdb(ps.conninfo);
        if (PQstatus(db) == CONNECTION_OK)
            break;
        if (i == 100)
            bench_die("postgres: connect: %s", PQerrorMessage(db));
        PQfinish(db);
        usleep(100000);
    }
    snprintf(sql_path, sizeof sql_path, "%s/bench/peers/postgres/schema.sql", cfg->src);
    sql = bench_xmalloc(1 << 16);
    if ((n = peer_read_file(sql_path, sql, 1 << 16)) <= 0)
        bench_die("cannot read %s", sql_path);
    pg_exec(db, sql);
    free(sql);
    res = PQexec(db, "SHOW server_version");
    snprintf(p->version, sizeof p->version, "PostgreSQL %s",
             PQresultStatus(res) == PGRES_TUPLES_OK ? PQgetvalue(res, 0, 0) : "?");
    PQclear(res);
    PQfinish(db);
    snprintf(p->setup, sizeof p->setup,
             "a fresh cluster (`initdb`), `postgres -c synchronous_commit=on -c fsync=on -c "
             "full_page_writes=on`, other settings at their defaults; the schema "
             "`bench/peers/postgres/schema.sql` (contacts with a bigserial key and an index on "
             "city; a PL/pgSQL AFTER INSERT trigger upserting the loyalty row and calling "
             "`pg_notify` with the row as JSON); create = prepared `INSERT ... RETURNING id`, "
             "get = `SELECT ... WHERE id = $1`, query = `SELECT ... WHERE city = $1 LIMIT 10`; "
             "libpq, one connection (one backend process) per client; the subscriber: `LISTEN "
             "contacts`");
}

static int pg_stop(peer *p)
{
    int rc = peer_stop_pid(p->pid, SIGINT, 60); /* SIGINT: fast shutdown */
    p->pid = -1;
    return rc;
}

static void pg_prepare(PGconn *db, const char *name, const char *sql, int nparams)
{
    PGresult *res = PQprepare(db, name, sql, nparams, NULL);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        bench_die("postgres: prepare %s: %s", name, PQerrorMessage(db));
    PQclear(res);
}

static void pg_open(peer *p, pconn *c)
{
    pg_conn *pc = bench_xcalloc(1, sizeof *pc);
    pc->db = PQconnectdb(ps.conninfo);
    if (PQstatus(pc->db) != CONNECTION_OK)
        bench_die("postgres: connect: %s", PQerrorMessage(pc->db));
    pg_prepare(pc->db, "create",
               "INSERT INTO contacts (name, email, phone, job_title, street, city, postcode, "
               "country, owner, source, language) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "
               "$10, $11) RETURNING id",
               CONTACT_FIELDS);
    pg_prepare(pc->db, "get", "SELECT * FROM contacts WHERE id = $1::bigint", 1);
    pg_prepare(pc->db, "by_city", "SELECT * FROM contacts WHERE city = $1 LIMIT 10", 1);
    c->impl = pc;
    c->fd = PQsocket(pc->db);
    c->p = p;
}

static void pg_close(pconn *c)
{
    pg_conn *pc = c->impl;
    if (!pc)
        return;
    PQfinish(pc->db);
    free(pc);
    c->impl = NULL;
    c->fd = -1;
}

static void pg_send(pconn *c, int op, const contact *ct, const char *arg)
{
    pg_conn *pc = c->impl;
    const char *vals[CONTACT_FIELDS];
    int ok;
    if (PQisnonblocking(pc->db) == 0)
        PQsetnonblocking(pc->db, 1);
    if (op == PEER_CREATE) {
        for (int i = 0; i < CONTACT_FIELDS; i++)
            vals[i] = contact_field(ct, i);
        ok = PQsendQueryPrepared(pc->db, "create", CONTACT_FIELDS, vals, NULL, NULL, 0);
    } else {
        vals[0] = arg;
        ok = PQsendQueryPrepared(pc->db, op == PEER_GET ? "get" : "by_city", 1, vals, NULL, NULL,
                                 0);
    }
    if (!ok)
        bench_die("postgres: send: %s", PQerrorMessage(pc->db));
    pc->inflight = 1;
    memset(&pc->r, 0, sizeof pc->r);
    pc->r.ok = 1;
}

static int pg_flush(pconn *c)
{
    pg_conn *pc = c->impl;
    int rc = PQflush(pc->db);
    if (rc < 0)
        c->closed = 1;
    return rc;
}

static int pg_read(pconn *c, peer_reply_fn *fn, void *ud)
{
    pg_conn *pc = c->impl;
    PGnotify *nt;
    if (!PQconsumeInput(pc->db)) {
        c->closed = 1;
        return -1;
    }
    while ((nt = PQnotifies(pc->db))) {
        peer_reply r;
        memset(&r, 0, sizeof r);
        r.push = 1;
        r.body = (const uint8_t *)nt->extra;
        r.len = strlen(nt->extra);
        fn(ud, c, &r);
        PQfreemem(nt);
    }
    while (pc->inflight && !PQisBusy(pc->db)) {
        PGresult *res = PQgetResult(pc->db);
        ExecStatusType st;
        if (!res) { /* the request is over */
            pc->inflight = 0;
            fn(ud, c, &pc->r);
            break;
        }
        st = PQresultStatus(res);
        if (st == PGRES_TUPLES_OK) {
            pc->r.nrec = PQntuples(res);
            if (pc->r.nrec > 0 && PQnfields(res) == 1 && !strcmp(PQfname(res, 0), "id"))
                snprintf(pc->r.id, sizeof pc->r.id, "%s", PQgetvalue(res, 0, 0));
        } else if (st != PGRES_COMMAND_OK) {
            pc->r.ok = 0;
            snprintf(pc->r.err, sizeof pc->r.err, "%s", PQresultErrorMessage(res));
        }
        PQclear(res);
    }
    return 0;
}

static void pg_subscribe(pconn *c)
{
    pg_conn *pc = c->impl;
    pg_exec(pc->db, "LISTEN contacts");
    c->sub = 1;
}

void peer_pg_init(peer *p)
{
    memset(p, 0, sizeof *p);
    p->name = "PostgreSQL";
    p->pid = -1;
    p->start = pg_start;
    p->stop = pg_stop;
    p->open = pg_open;
    p->close = pg_close;
    p->send = pg_send;
    p->flush = pg_flush;
    p->read = pg_read;
    p->subscribe = pg_subscribe;
}
