/*
 * fuzz_request -- whole WebSocket messages through the server's own message
 * path, crm_ops_message(): decode (JSON or msgpack by the session's
 * subprotocol), envelope checks, rate and in-flight limits, permissions and
 * hidden fields, every op's argument checks, the write batch, the group
 * commit (crm_ops_settle: apply on the writer thread, acknowledge, held reads, subscription
 * pushes, aggregate ticks) against a real LMDB store and the bundled
 * schemas/.
 *
 * What is real: a crm_net made by crm_net_create (its lws context listens
 * on a loopback port nobody connects to), the store, the schema.  What is
 * not: libwebsockets' framing and the socket.  The session is made here the
 * way LWS_CALLBACK_ESTABLISHED makes it, with no wsi; the two lws calls the
 * message path makes through a session (lws_callback_on_writable, to flush
 * the send queue, and the same from crm_sess_close) are linked to a no-op
 * (-Wl,--wrap), and replies are read from the session's send queue instead
 * of a socket.  Driving lws itself per input would cost a TCP connection,
 * an HTTP upgrade and several poll turns per execution (a few hundred
 * inputs a second); the frame reassembly in net.c's LWS_CALLBACK_RECEIVE is
 * therefore not covered here (tests/e2e/test_hostile.c sends hostile frames
 * to a real server).
 *
 * Input: byte 0 picks the session: bit 0 msgpack, bits 1-3 the role
 * (0 not authenticated, 1 admin, 2.. the roles of schemas/roles.json).
 * The rest is one or more messages separated by the two bytes FE FE (never
 * in UTF-8 text; in msgpack two fixints -2).  Each input gets a new, empty
 * store, so an input always does the same thing.
 *
 * Checked: every reply the server queues decodes in the session's format as
 * a map; a reply with "ok" is {ref, ok: true, result} or {ref, ok: false,
 * error: {code, message}} with a known code; an undecodable message closes
 * with 1007/1009; an unauthenticated session changes nothing in the store.
 */
#include <ftw.h>
#include <unistd.h>

#include "fuzz.h"
#include "net_int.h"

#ifndef CRM_FUZZ_SCHEMAS
#define CRM_FUZZ_SCHEMAS "schemas"
#endif

/* ---- the lws calls a session makes, without a connection ---- */

int __wrap_lws_callback_on_writable(struct lws *wsi);
int __wrap_lws_callback_on_writable(struct lws *wsi)
{
    return 0;
}

static crm_schema *schema;
static crm_store *store;
static crm_net *net;
static char dir[] = "/tmp/crm-fuzz-request-XXXXXX";
static const char *roles[8] = {NULL, "admin"};
static int nroles = 2;
static int verbose;

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    return ftw->level == 0 ? 0 : remove(p);
}

static void open_store(void)
{
    crm_store_opts o;
    crm_err err;
    crm_store_opts_default(&o);
    o.no_sync = 1;
    o.map_size = 8u << 20;
    nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    FUZZ_CHECK(crm_store_open(dir, schema, &o, &store, &err) == CRM_OK, "%s", err.msg);
}

static void cleanup(void)
{
    if (net)
        crm_net_swap_store(net, NULL, NULL);
    if (net)
        crm_net_destroy(net);
    if (store)
        crm_store_close(store);
    crm_schema_free(schema);
    nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *sd = getenv("CRM_SCHEMAS") ? getenv("CRM_SCHEMAS") : CRM_FUZZ_SCHEMAS;
    crm_net_opts no;
    crm_err err;
    verbose = getenv("CRM_FUZZ_VERBOSE") != NULL;
    FUZZ_CHECK(crm_schema_load_dir(sd, &schema, &err) == CRM_OK, "%s: %s", sd, err.msg);
    for (size_t i = 0; schema->roles && i < schema->roles->u.map.n && nroles < 8; i++)
        roles[nroles++] = schema->roles->u.map.kv[i].key;
    FUZZ_CHECK(mkdtemp(dir), "mkdtemp");
    atexit(cleanup);
    open_store();
    crm_net_opts_default(&no);
    no.port = 0;
    FUZZ_CHECK(crm_net_create(store, schema, &no, &net, &err) == CRM_OK, "%s", err.msg);
    crm_net_swap_store(net, NULL, &err); /* each input starts the writer on its own store */
    crm_store_close(store);
    store = NULL;
    return 0;
}

static int known_code(const char *name)
{
    for (int c = CRM_OK + 1; c < CRM_CODE_LAST; c++)
        if (strcmp(name, crm_code_name(c)) == 0)
            return 1;
    return 0;
}

static void check_reply(const crm_sess *s, const outmsg *m)
{
    crm_limits lim = {1u << 30, 64};
    crm_err err;
    const unsigned char *b = m->buf + LWS_PRE;
    crm_value *v = s->msgpack ? crm_mp_decode(b, m->len, &lim, &err)
                              : crm_json_decode((const char *)b, m->len, &lim, &err);
    const crm_value *ok, *e;
    FUZZ_CHECK(v, "a reply does not decode: %s\n  %.*s", err.msg, (int)m->len, (const char *)b);
    FUZZ_CHECK(v->type == CRM_T_MAP, "a reply is not a map: %s", fuzz_show(v));
    if ((ok = crm_map_get(v, "ok"))) {
        FUZZ_CHECK(ok->type == CRM_T_BOOL && crm_map_get(v, "ref"), "bad reply %s", fuzz_show(v));
        if (ok->u.b) {
            FUZZ_CHECK(crm_map_get(v, "result"), "ok without result: %s", fuzz_show(v));
        } else {
            e = crm_map_get(v, "error");
            FUZZ_CHECK(e && e->type == CRM_T_MAP && known_code(crm_map_str(e, "code", "")) &&
                           crm_map_str(e, "message", NULL),
                       "bad error reply %s", fuzz_show(v));
        }
    }
    crm_value_free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    crm_sess *s;
    const uint8_t *p, *end;
    int role, started_authed;
    crm_err err;

    if (size < 1)
        return 0;
    if (!store)
        open_store();
    FUZZ_CHECK(crm_net_swap_store(net, store, &err) == CRM_OK, "%s", err.msg);
    net->pushed_seq = 0;
    net->flush_scheduled = net->agg_scheduled = 0;

    /* as LWS_CALLBACK_ESTABLISHED, and auth done when a role is picked */
    s = calloc(1, sizeof *s);
    FUZZ_CHECK(s, "out of memory");
    s->net = net;
    s->is_ws = 1;
    s->msgpack = data[0] & 1;
    s->connected_ms = s->bucket_ms = crm_net_now_ms();
    s->bucket = net->o.rate_per_sec;
    role = (data[0] >> 1) & 7;
    if (role < nroles && roles[role]) {
        s->authed = 1;
        s->token_checked_ms = s->connected_ms;
        snprintf(s->role, sizeof s->role, "%s", roles[role]);
        snprintf(s->user, sizeof s->user, "token:fuzz");
    }
    /* a session that starts without a role can never get one here (the
     * store holds no token); one that starts with a role may lose it to a
     * failed `auth`, after writing while it had it */
    started_authed = s->authed;
    s->next = net->sessions;
    if (net->sessions)
        net->sessions->prev = s;
    net->sessions = s;

    for (p = data + 1, end = data + size; p <= end && !s->close_code;) {
        const uint8_t *q = p;
        while (q + 1 < end && !(q[0] == 0xfe && q[1] == 0xfe))
            q++;
        if (q + 1 >= end)
            q = end;
        crm_ops_message(s, p, (size_t)(q - p));
        if (s->close_code) {
            int c = s->close_code;
            FUZZ_CHECK(c == LWS_CLOSE_STATUS_INVALID_PAYLOAD ||
                           c == LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
                       "closed with %d", c);
        }
        p = q + 2;
    }
    /* the loop's turn ends: commit, acknowledge, run held reads (which may
     * queue more writes), push */
    for (int turns = 0; (net->nbatch || s->pending) && turns < 64; turns++)
        crm_ops_settle(net);
    crm_ops_settle(net);
    crm_subs_agg_tick(net);
    FUZZ_CHECK(!net->nbatch && !s->pending, "writes still pending after 64 flushes");
    if (!started_authed)
        FUZZ_CHECK(crm_store_last_seq(store) == 0, "an unauthenticated session wrote");

    for (const outmsg *m = s->qh; m; m = m->next) {
        check_reply(s, m);
        if (verbose) /* CRM_FUZZ_VERBOSE=1: what the server answered */
            fprintf(stderr, "  reply: %.*s\n", s->msgpack ? 0 : (int)m->len,
                    (const char *)m->buf + LWS_PRE);
    }

    /* as LWS_CALLBACK_CLOSED */
    crm_ops_forget(s);
    while (s->qh) {
        outmsg *m = s->qh;
        s->qh = m->next;
        free(m);
    }
    free(s->rx);
    if (s->prev)
        s->prev->next = s->next;
    else
        net->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    free(s);

    crm_net_swap_store(net, NULL, &err); /* the writer lets go of the store */
    crm_store_close(store);
    store = NULL;
    return 0;
}
