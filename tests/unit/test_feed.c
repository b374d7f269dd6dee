/*
 * test_feed -- the change feed through the real store (LMDB in a temp folder).
 *
 * Covers: every committed change gets the next seq, gap-free, while batches
 * mix succeeding and failing units (VALIDATION, CONFLICT, NOT_FOUND and
 * failing tx units take no seq) and each write's w->seq is its feed entry;
 * crm_feed_read replays from any point with the right entry fields, honours
 * max and an early stop; crm_feed_bounds and the last seq survive a reopen
 * and the sequence continues after it; retention by age (fake clock) and by
 * size, always keeping the newest entry, with reads from a trimmed seq
 * refused (CONFLICT, "resync") and the meta byte count matching the entries
 * kept; crm_store_verify after each test; and a seeded random run of 2,000
 * writes whose feed, replayed alone, rebuilds exactly the store's contents.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <lmdb.h>

#include "codec.h"
#include "schema.h"
#include "store.h"
#include "testutil.h"
#include "tmpdir.h"

static const char *const NOTES =
    "{\"collection\": \"notes\", \"id_prefix\": \"n_\", \"fields\": {"
    " \"title\": {\"type\": \"string\", \"required\": true, \"max\": 100},"
    " \"n\":     {\"type\": \"int\", \"min\": 0, \"index\": true},"
    " \"code\":  {\"type\": \"string\", \"index\": \"unique\"},"
    " \"grp\":   {\"type\": \"string\", \"index\": true},"
    " \"blob\":  {\"type\": \"string\"},"
    " \"tags\":  {\"type\": \"array\", \"items\": \"string\"}"
    "}}";
static const char *const PEOPLE =
    "{\"collection\": \"people\", \"id_prefix\": \"p_\", \"fields\": {"
    " \"name\": {\"type\": \"string\", \"required\": true},"
    " \"note\": {\"type\": \"ref\", \"to\": \"notes\", \"on_delete\": \"restrict\"}"
    "}}";

#define T0 ((int64_t)1700000000000)

typedef struct fixture {
    char *dir, *sdir;
    crm_schema *schema;
    crm_store *store;
    crm_store_opts opts;
    int64_t now;
} fixture;

static int64_t fake_clock(void *ud) { return ((fixture *)ud)->now; }

static void open_store(fixture *f)
{
    crm_err err = {0, ""};
    int rc = crm_store_open(f->dir, f->schema, &f->opts, &f->store, &err);
    if (rc != CRM_OK)
        fail_msg("open: %s", err.msg);
}

static void close_store(fixture *f)
{
    crm_store_close(f->store);
    f->store = NULL;
}

static void verify(fixture *f)
{
    crm_err err = {0, ""};
    if (crm_store_verify(f->store, &err) != CRM_OK)
        fail_msg("verify: %s", err.msg);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    crm_err err = {0, ""};
    if (!f)
        return -1;
    f->sdir = crm_tmpdir_make("fschema");
    crm_tmpdir_write(f->sdir, "notes.json", NOTES);
    crm_tmpdir_write(f->sdir, "people.json", PEOPLE);
    if (crm_schema_load_dir(f->sdir, &f->schema, &err) != CRM_OK) {
        fprintf(stderr, "schema: %s\n", err.msg);
        return -1;
    }
    f->dir = crm_tmpdir_make("feed");
    crm_store_opts_default(&f->opts);
    f->opts.no_sync = 1;
    f->opts.feed_max_age_ms = 0; /* keep everything unless a test says otherwise */
    f->opts.clock_ms = fake_clock;
    f->opts.clock_ud = f;
    f->now = T0;
    open_store(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (f->store) {
        verify(f);
        crm_store_close(f->store);
    }
    crm_schema_free(f->schema);
    crm_tmpdir_remove(f->dir);
    crm_tmpdir_remove(f->sdir);
    free(f);
    return 0;
}

#define J(json) crm_test_json(json)

/* ---- batches: units of writes with owned request data ---- */

#define BATCH_MAX_WRITES 96
#define BATCH_MAX_UNITS 48

typedef struct batch {
    crm_write w[BATCH_MAX_WRITES];
    crm_value *data[BATCH_MAX_WRITES];
    char ids[BATCH_MAX_WRITES][40];
    size_t nw;
    crm_unit u[BATCH_MAX_UNITS];
    size_t nu;
} batch;

static void batch_init(batch *b) { memset(b, 0, sizeof *b); }

static void batch_free(batch *b)
{
    for (size_t i = 0; i < b->nw; i++) {
        crm_write_clear(&b->w[i]);
        crm_value_free(b->data[i]);
    }
    b->nw = b->nu = 0;
}

/* Starts a new unit; the writes added next belong to it. */
static void unit(batch *b)
{
    assert_true(b->nu < BATCH_MAX_UNITS);
    b->u[b->nu].writes = &b->w[b->nw];
    b->u[b->nu].n = 0;
    b->nu++;
}

/* Adds a write to the current unit; data (consumed, may be NULL) is its
 * record or patch; id may be NULL. */
static crm_write *addv(batch *b, crm_op op, const char *coll, const char *id, crm_value *data,
                       int64_t if_rev)
{
    crm_write *w;
    assert_true(b->nu > 0 && b->nw < BATCH_MAX_WRITES);
    w = &b->w[b->nw];
    memset(w, 0, sizeof *w);
    b->data[b->nw] = data;
    if (id) {
        snprintf(b->ids[b->nw], sizeof b->ids[b->nw], "%s", id);
        w->id = b->ids[b->nw];
    }
    w->op = op;
    w->coll = coll;
    w->data = data;
    w->if_rev = if_rev;
    b->nw++;
    b->u[b->nu - 1].n++;
    return w;
}

static crm_write *add(batch *b, crm_op op, const char *coll, const char *id, const char *json,
                      int64_t if_rev)
{
    return addv(b, op, coll, id, json ? J(json) : NULL, if_rev);
}

/* A unit of one write. */
static crm_write *add1(batch *b, crm_op op, const char *coll, const char *id, const char *json,
                       int64_t if_rev)
{
    unit(b);
    return add(b, op, coll, id, json, if_rev);
}

static void apply(fixture *f, batch *b)
{
    crm_err err = {0, ""};
    int rc = crm_store_apply(f->store, b->u, b->nu, &err);
    if (rc != CRM_OK)
        fail_msg("apply: %s", err.msg);
}

/* ---- collecting feed entries ---- */

typedef struct got {
    uint64_t seq;
    int64_t ts;
    char coll[32];
    crm_op op;
    char id[160];
    int64_t rev, prev_rev;
    crm_value *record; /* owned copy; NULL for delete */
} got;

typedef struct gotv {
    got *v;
    size_t n, cap;
    uint64_t stop_at; /* fn returns 1 on this seq (0 = never) */
} gotv;

static int collect(void *ud, const crm_feed_entry *e)
{
    gotv *g = ud;
    got *x;
    if (g->n == g->cap) {
        g->cap = g->cap ? g->cap * 2 : 64;
        g->v = realloc(g->v, g->cap * sizeof *g->v);
        assert_non_null(g->v);
    }
    x = &g->v[g->n++];
    memset(x, 0, sizeof *x);
    x->seq = e->seq;
    x->ts = e->ts;
    assert_true(strlen(e->coll) < sizeof x->coll);
    strcpy(x->coll, e->coll);
    x->op = e->op;
    assert_true(strlen(e->id) < sizeof x->id);
    strcpy(x->id, e->id);
    x->rev = e->rev;
    x->prev_rev = e->prev_rev;
    x->record = e->record ? crm_value_dup(e->record) : NULL;
    if (e->record)
        assert_non_null(x->record);
    return g->stop_at && e->seq == g->stop_at;
}

static int want_people_and_deletes(void *ud, const char *coll, crm_op op)
{
    (void)ud;
    return strcmp(coll, "people") == 0 || op == CRM_OP_DELETE;
}

typedef struct kept {
    crm_value *whole[64];
    const char *coll[64], *id[64];
    size_t n;
} kept;

static int keep_entry(void *ud, const crm_feed_entry *e)
{
    kept *k = ud;
    assert_true(k->n < 64);
    assert_non_null(e->owner);
    assert_non_null(*e->owner);
    k->whole[k->n] = *e->owner;
    *e->owner = NULL;
    k->coll[k->n] = e->coll;
    k->id[k->n] = e->id;
    k->n++;
    return 0;
}

static void gotv_free(gotv *g)
{
    for (size_t i = 0; i < g->n; i++)
        crm_value_free(g->v[i].record);
    free(g->v);
    memset(g, 0, sizeof *g);
}

/* Reads the feed from since (max entries, 0 = all) into g; returns the rc. */
static int read_feed(fixture *f, uint64_t since, size_t max, gotv *g, uint64_t *last_out,
                     crm_err *err)
{
    crm_txn *t;
    crm_err e = {0, ""};
    int rc;
    if (crm_store_begin_read(f->store, &t, &e) != CRM_OK)
        fail_msg("begin_read: %s", e.msg);
    rc = crm_feed_read(t, since, max, collect, g, last_out, err ? err : &e);
    crm_txn_end(t);
    return rc;
}

static void bounds(fixture *f, uint64_t *first, uint64_t *last)
{
    crm_txn *t;
    crm_err e = {0, ""};
    if (crm_store_begin_read(f->store, &t, &e) != CRM_OK)
        fail_msg("begin_read: %s", e.msg);
    if (crm_feed_bounds(t, first, last, &e) != CRM_OK)
        fail_msg("bounds: %s", e.msg);
    crm_txn_end(t);
}

/* The stored record, or NULL when absent. */
static crm_value *get_rec(fixture *f, const char *coll, const char *id)
{
    crm_txn *t;
    crm_err e = {0, ""};
    crm_value *v = NULL;
    int rc;
    if (crm_store_begin_read(f->store, &t, &e) != CRM_OK)
        fail_msg("begin_read: %s", e.msg);
    rc = crm_txn_get(t, coll, id, &v, &e);
    crm_txn_end(t);
    if (rc == CRM_NOT_FOUND)
        return NULL;
    if (rc != CRM_OK)
        fail_msg("get %s/%s: %s", coll, id, e.msg);
    return v;
}

/* Makes n notes n0..n(n-1) in one batch; returns the last seq. */
static uint64_t make_notes(fixture *f, int from, int n)
{
    batch b;
    batch_init(&b);
    for (int i = from; i < from + n; i++) {
        char id[32], json[96];
        snprintf(id, sizeof id, "n%d", i);
        snprintf(json, sizeof json, "{\"title\": \"note %d\", \"n\": %d}", i, i);
        add1(&b, CRM_OP_CREATE, "notes", id, json, 0);
    }
    apply(f, &b);
    for (size_t i = 0; i < b.nu; i++)
        if (b.u[i].rc != CRM_OK)
            fail_msg("make_notes unit %zu: %s", i, b.u[i].err.msg);
    batch_free(&b);
    return crm_store_last_seq(f->store);
}

/* ------------------------------------------------------------------ */

static void test_seq_is_gap_free_across_batches_mixing_failing_units(void **state)
{
    fixture *f = *state;
    batch b;
    gotv g = {0};
    uint64_t next = 1;
    static const int want_rc[] = {CRM_OK,        CRM_VALIDATION, CRM_OK,        CRM_CONFLICT,
                                  CRM_CONFLICT,  CRM_NOT_FOUND,  CRM_CONFLICT,  CRM_VALIDATION,
                                  CRM_OK,        CRM_NOT_FOUND,  CRM_VALIDATION, CRM_VALIDATION,
                                  CRM_OK,        CRM_CONFLICT};
    crm_value *v;

    assert_int_equal(crm_store_last_seq(f->store), 0);
    batch_init(&b);
    add1(&b, CRM_OP_CREATE, "notes", "a", "{\"title\": \"A\", \"code\": \"k1\"}", 0); /* 1 */
    add1(&b, CRM_OP_CREATE, "notes", NULL, "{\"n\": 1}", 0);           /* VALIDATION: title */
    add1(&b, CRM_OP_CREATE, "notes", "b", "{\"title\": \"B\"}", 0);    /* 2 */
    add1(&b, CRM_OP_CREATE, "notes", "a", "{\"title\": \"dup\"}", 0);  /* CONFLICT: id taken */
    add1(&b, CRM_OP_CREATE, "notes", "c", "{\"title\": \"C\", \"code\": \"k1\"}", 0); /* unique */
    add1(&b, CRM_OP_UPDATE, "notes", "nope", "{\"title\": \"x\"}", 0); /* NOT_FOUND */
    /* a tx whose last write fails: none of its three writes stays */
    unit(&b);
    add(&b, CRM_OP_CREATE, "notes", "d", "{\"title\": \"D\"}", 0);
    add(&b, CRM_OP_UPDATE, "notes", "a", "{\"n\": 1}", 0);
    add(&b, CRM_OP_UPDATE, "notes", "a", "{\"n\": 2}", 1); /* a is at rev 2 now: CONFLICT */
    /* a tx whose first write fails */
    unit(&b);
    add(&b, CRM_OP_UPDATE, "notes", "b", "{\"n\": -1}", 0); /* VALIDATION: min */
    add(&b, CRM_OP_CREATE, "notes", "d2", "{\"title\": \"D2\"}", 0);
    /* a tx that succeeds: 3, 4, 5 */
    unit(&b);
    add(&b, CRM_OP_CREATE, "notes", "e", "{\"title\": \"E\"}", 0);
    add(&b, CRM_OP_UPDATE, "notes", "b", "{\"n\": 2}", 0);
    add(&b, CRM_OP_DELETE, "notes", "a", NULL, 0);
    add1(&b, CRM_OP_DELETE, "notes", "zzz", NULL, 0);                  /* NOT_FOUND */
    add1(&b, CRM_OP_UPDATE, "notes", "b", "{\"n\": \"many\"}", 0);     /* VALIDATION: type */
    add1(&b, CRM_OP_CREATE, "people", NULL, "{\"name\": \"P\", \"note\": \"gone\"}",
         0);                                                           /* VALIDATION: ref */
    add1(&b, CRM_OP_UPDATE, "notes", "e", "{\"title\": \"E2\"}", 1);   /* 6 */
    add1(&b, CRM_OP_DELETE, "notes", "e", NULL, 1);                    /* CONFLICT: rev 2 */
    assert_int_equal(b.nu, sizeof want_rc / sizeof *want_rc);
    apply(f, &b);

    for (size_t i = 0; i < b.nu; i++) {
        crm_unit *u = &b.u[i];
        if (u->rc != want_rc[i])
            fail_msg("unit %zu: rc %d (%s), want %d", i, u->rc, u->err.msg, want_rc[i]);
        for (size_t j = 0; j < u->n; j++) {
            crm_write *w = &u->writes[j];
            if (u->rc == CRM_OK) {
                assert_int_equal(w->rc, CRM_OK);
                assert_int_equal(w->seq, next);
                assert_non_null(w->result);
                next++;
            } else {
                assert_int_equal(w->seq, 0);
                assert_null(w->result);
            }
        }
    }
    assert_int_equal(next - 1, 6);
    assert_int_equal(crm_store_last_seq(f->store), 6);

    /* the feed holds exactly those six, in order, each as its write */
    assert_int_equal(read_feed(f, 0, 0, &g, NULL, NULL), CRM_OK);
    assert_int_equal(g.n, 6);
    {
        size_t k = 0;
        for (size_t i = 0; i < b.nw; i++) {
            crm_write *w = &b.w[i];
            if (!w->seq)
                continue;
            assert_int_equal(g.v[k].seq, w->seq);
            assert_int_equal(g.v[k].op, w->op);
            assert_string_equal(g.v[k].coll, w->coll);
            assert_string_equal(g.v[k].id, crm_map_str(w->result, "id", "?"));
            k++;
        }
        assert_int_equal(k, 6);
    }
    gotv_free(&g);
    batch_free(&b);

    /* nothing of the failed units stayed */
    assert_null((v = get_rec(f, "notes", "d")));
    assert_null((v = get_rec(f, "notes", "d2")));
    assert_null((v = get_rec(f, "notes", "c")));
    assert_null((v = get_rec(f, "notes", "a")));
    v = get_rec(f, "notes", "b");
    assert_non_null(v);
    assert_int_equal(crm_map_int(v, "n", -1), 2);
    assert_int_equal(crm_map_int(v, "_rev", -1), 2);
    crm_value_free(v);

    /* a batch where everything fails takes no seq */
    batch_init(&b);
    add1(&b, CRM_OP_CREATE, "notes", NULL, "{}", 0);
    add1(&b, CRM_OP_DELETE, "notes", "a", NULL, 0);
    add1(&b, CRM_OP_UPDATE, "notes", "b", "{\"title\": \"B2\"}", 1);
    apply(f, &b);
    for (size_t i = 0; i < b.nu; i++) {
        assert_int_not_equal(b.u[i].rc, CRM_OK);
        assert_int_equal(b.w[i].seq, 0);
    }
    assert_int_equal(crm_store_last_seq(f->store), 6);
    batch_free(&b);

    /* the next batch goes on at 7, single writes committed alone too */
    {
        crm_value *rec = J("{\"title\": \"F\"}");
        crm_write w = {.op = CRM_OP_CREATE, .coll = "notes", .data = rec};
        assert_int_equal(crm_store_write1(f->store, &w), CRM_OK);
        assert_int_equal(w.seq, 7);
        crm_write_clear(&w);
        crm_value_free(rec);
    }
    assert_int_equal(crm_store_last_seq(f->store), 7);
    assert_int_equal(read_feed(f, 6, 0, &g, NULL, NULL), CRM_OK);
    assert_int_equal(g.n, 1);
    assert_int_equal(g.v[0].seq, 7);
    gotv_free(&g);
    verify(f);
}

/* ------------------------------------------------------------------ */

typedef struct expect {
    uint64_t seq;
    int64_t ts;
    const char *coll;
    crm_op op;
    char id[40];
    int64_t rev, prev_rev;
    crm_value *record; /* owned; NULL for delete */
} expect;

static void check_entry(const got *gv, const expect *ex)
{
    assert_int_equal(gv->seq, ex->seq);
    assert_int_equal(gv->ts, ex->ts);
    assert_string_equal(gv->coll, ex->coll);
    assert_int_equal(gv->op, ex->op);
    assert_string_equal(gv->id, ex->id);
    assert_int_equal(gv->rev, ex->rev);
    assert_int_equal(gv->prev_rev, ex->prev_rev);
    if (ex->op == CRM_OP_DELETE) {
        assert_null(gv->record);
    } else {
        assert_non_null(gv->record);
        if (!crm_value_equal(gv->record, ex->record)) {
            char *a = crm_json_encode(gv->record, NULL), *b = crm_json_encode(ex->record, NULL);
            fail_msg("seq %llu: feed record %s, write result %s", (unsigned long long)gv->seq,
                     a ? a : "?", b ? b : "?");
        }
        assert_int_equal(crm_map_int(gv->record, "_rev", -1), ex->rev);
        assert_string_equal(crm_map_str(gv->record, "id", "?"), ex->id);
    }
}

static void test_feed_read_replays_from_any_seq_with_correct_entries(void **state)
{
    fixture *f = *state;
    expect ex[64];
    size_t nex = 0;
    gotv g = {0};
    uint64_t last_out;
    crm_err err;

    /* 12 creates in 3 batches, 10 updates, 5 deletes, 3 people: 30 changes */
    for (int round = 0; round < 6; round++) {
        batch b;
        batch_init(&b);
        f->now += 1000 + round;
        for (int i = 0; i < 5; i++) {
            char id[32], json[128];
            int k = round * 5 + i;
            if (round < 2 || (round == 2 && i < 2)) { /* creates n0..n11 */
                snprintf(id, sizeof id, "n%d", k);
                snprintf(json, sizeof json, "{\"title\": \"t%d\", \"tags\": [\"x%d\"]}", k, k);
                add1(&b, CRM_OP_CREATE, "notes", id, json, 0);
            } else if (round == 2 || round == 3 || (round == 4 && i < 2)) { /* 10 updates */
                snprintf(id, sizeof id, "n%d", k % 4);
                snprintf(json, sizeof json, "{\"n\": %d, \"tags\": null}", k);
                add1(&b, CRM_OP_UPDATE, "notes", id, json, 0);
            } else if (round == 4 || (round == 5 && i < 2)) { /* 5 deletes */
                snprintf(id, sizeof id, "n%d", 11 - k % 6);
                add1(&b, CRM_OP_DELETE, "notes", id, NULL, 0);
            } else { /* 3 people */
                snprintf(json, sizeof json, "{\"name\": \"p%d\", \"note\": \"n0\"}", k);
                add1(&b, CRM_OP_CREATE, "people", NULL, json, 0);
            }
        }
        apply(f, &b);
        for (size_t i = 0; i < b.nw; i++) {
            crm_write *w = &b.w[i];
            expect *e = &ex[nex++];
            if (w->rc != CRM_OK)
                fail_msg("round %d write %zu: %s", round, i, w->err.msg);
            e->seq = w->seq;
            e->ts = f->now;
            e->coll = w->coll;
            e->op = w->op;
            snprintf(e->id, sizeof e->id, "%s", crm_map_str(w->result, "id", "?"));
            e->rev = crm_map_int(w->result, "_rev", -1);
            e->prev_rev = w->op == CRM_OP_CREATE ? 0 : e->rev - 1;
            e->record = w->op == CRM_OP_DELETE ? NULL : crm_value_dup(w->result);
        }
        batch_free(&b);
    }
    assert_int_equal(nex, 30);
    assert_int_equal(crm_store_last_seq(f->store), 30);

    /* from 0: everything, in order, fields right */
    assert_int_equal(read_feed(f, 0, 0, &g, &last_out, NULL), CRM_OK);
    assert_int_equal(g.n, 30);
    assert_int_equal(last_out, 30);
    for (size_t i = 0; i < g.n; i++) {
        assert_int_equal(ex[i].seq, i + 1);
        check_entry(&g.v[i], &ex[i]);
    }
    /* a delete's rev is one past the rev it removed */
    for (size_t i = 0; i < nex; i++)
        if (ex[i].op == CRM_OP_DELETE)
            assert_int_equal(g.v[i].rev, g.v[i].prev_rev + 1);
    gotv_free(&g);

    /* from every S: exactly the entries with seq > S */
    /* a seq ahead of the store (a restored backup, say) asks for a resync */
    for (uint64_t s = 31; s <= 32; s++) {
        assert_int_equal(read_feed(f, s, 0, &g, &last_out, &err), CRM_CONFLICT);
        assert_non_null(strstr(err.msg, "resync"));
        gotv_free(&g);
    }
    for (uint64_t s = 0; s <= 30; s++) {
        size_t want = s >= 30 ? 0 : 30 - s;
        assert_int_equal(read_feed(f, s, 0, &g, &last_out, &err), CRM_OK);
        assert_int_equal(g.n, want);
        for (size_t i = 0; i < g.n; i++)
            check_entry(&g.v[i], &ex[s + i]);
        assert_int_equal(last_out, want ? 30 : s);
        gotv_free(&g);
    }

    /* max limits the count */
    assert_int_equal(read_feed(f, 0, 7, &g, &last_out, NULL), CRM_OK);
    assert_int_equal(g.n, 7);
    assert_int_equal(g.v[6].seq, 7);
    assert_int_equal(last_out, 7);
    gotv_free(&g);
    assert_int_equal(read_feed(f, 10, 3, &g, &last_out, NULL), CRM_OK);
    assert_int_equal(g.n, 3);
    assert_int_equal(g.v[0].seq, 11);
    assert_int_equal(g.v[2].seq, 13);
    assert_int_equal(last_out, 13);
    gotv_free(&g);
    assert_int_equal(read_feed(f, 28, 10, &g, &last_out, NULL), CRM_OK);
    assert_int_equal(g.n, 2);
    gotv_free(&g);

    /* fn returning non-zero stops after that entry */
    g.stop_at = 4;
    assert_int_equal(read_feed(f, 0, 0, &g, &last_out, NULL), CRM_OK);
    assert_int_equal(g.n, 4);
    assert_int_equal(g.v[3].seq, 4);
    assert_int_equal(last_out, 4);
    gotv_free(&g);
    g.stop_at = 21;
    assert_int_equal(read_feed(f, 20, 0, &g, &last_out, NULL), CRM_OK);
    assert_int_equal(g.n, 1);
    assert_int_equal(last_out, 21);
    gotv_free(&g);

    /* read_where: only the wanted entries are given, in order, with the
     * same fields; the others are passed over (last_out still reaches the
     * end); a callback may keep the decoded entry */
    {
        crm_txn *t;
        crm_err e2;
        size_t nwant = 0;
        for (size_t i = 0; i < nex; i++)
            nwant += strcmp(ex[i].coll, "people") == 0 || ex[i].op == CRM_OP_DELETE;
        assert_int_equal(crm_store_begin_read(f->store, &t, &e2), CRM_OK);
        assert_int_equal(crm_feed_read_where(t, 0, 0, want_people_and_deletes, collect, &g,
                                             &last_out, &e2), CRM_OK);
        crm_txn_end(t);
        assert_int_equal(g.n, nwant);
        assert_int_equal(nwant, 8); /* 3 people, 5 deletes */
        assert_int_equal(last_out, 30);
        for (size_t i = 0, j = 0; i < nex; i++)
            if (strcmp(ex[i].coll, "people") == 0 || ex[i].op == CRM_OP_DELETE)
                check_entry(&g.v[j++], &ex[i]);
        gotv_free(&g);
        /* max counts the entries given */
        assert_int_equal(crm_store_begin_read(f->store, &t, &e2), CRM_OK);
        assert_int_equal(crm_feed_read_where(t, 0, 2, want_people_and_deletes, collect, &g,
                                             &last_out, &e2), CRM_OK);
        crm_txn_end(t);
        assert_int_equal(g.n, 2);
        assert_int_equal(last_out, g.v[1].seq);
        gotv_free(&g);
        /* taking the entry: its parts stay valid after the read */
        {
            kept k = {0};
            assert_int_equal(crm_store_begin_read(f->store, &t, &e2), CRM_OK);
            assert_int_equal(crm_feed_read(t, 0, 0, keep_entry, &k, NULL, &e2), CRM_OK);
            crm_txn_end(t);
            assert_int_equal(k.n, 30);
            for (size_t i = 0; i < k.n; i++) {
                assert_string_equal(k.coll[i], ex[i].coll);
                assert_string_equal(k.id[i], ex[i].id);
                crm_value_free(k.whole[i]);
            }
        }
    }

    /* a record in the feed is the record stored then: the last update of
     * n1 (never deleted) equals the stored record */
    {
        crm_value *stored = get_rec(f, "notes", "n1");
        const expect *lastup = NULL;
        assert_non_null(stored);
        for (size_t i = 0; i < nex; i++)
            if (strcmp(ex[i].id, "n1") == 0)
                lastup = &ex[i];
        assert_non_null(lastup);
        assert_true(crm_value_equal(stored, lastup->record));
        assert_null(crm_map_get(stored, "tags")); /* removed by a nil in the patch */
        crm_value_free(stored);
    }
    for (size_t i = 0; i < nex; i++)
        crm_value_free(ex[i].record);
}

/* ------------------------------------------------------------------ */

static void test_bounds_and_last_seq_survive_reopen_with_sync(void **state)
{
    fixture *f = *state;
    uint64_t first, last;
    gotv g = {0};

    /* this test runs with fsync on: the path production uses */
    close_store(f);
    f->opts.no_sync = 0;
    open_store(f);

    bounds(f, &first, &last);
    assert_int_equal(first, 0);
    assert_int_equal(last, 0);
    assert_int_equal(crm_store_last_seq(f->store), 0);
    assert_int_equal(read_feed(f, 0, 0, &g, NULL, NULL), CRM_OK);
    assert_int_equal(g.n, 0);

    assert_int_equal(make_notes(f, 0, 5), 5);
    bounds(f, &first, &last);
    assert_int_equal(first, 1);
    assert_int_equal(last, 5);

    close_store(f);
    open_store(f);
    assert_int_equal(crm_store_last_seq(f->store), 5);
    bounds(f, &first, &last);
    assert_int_equal(first, 1);
    assert_int_equal(last, 5);
    verify(f);

    /* the sequence continues, it does not restart */
    assert_int_equal(make_notes(f, 5, 2), 7);
    assert_int_equal(read_feed(f, 5, 0, &g, NULL, NULL), CRM_OK);
    assert_int_equal(g.n, 2);
    assert_int_equal(g.v[0].seq, 6);
    assert_string_equal(g.v[0].id, "n5");
    assert_int_equal(g.v[1].seq, 7);
    assert_string_equal(g.v[1].id, "n6");
    gotv_free(&g);

    /* a failing batch right before close does not move it */
    {
        batch b;
        batch_init(&b);
        add1(&b, CRM_OP_CREATE, "notes", "n0", "{\"title\": \"again\"}", 0);
        apply(f, &b);
        assert_int_equal(b.u[0].rc, CRM_CONFLICT);
        batch_free(&b);
    }
    close_store(f);
    open_store(f);
    assert_int_equal(crm_store_last_seq(f->store), 7);
    bounds(f, &first, &last);
    assert_int_equal(first, 1);
    assert_int_equal(last, 7);
    assert_int_equal(read_feed(f, 0, 0, &g, NULL, NULL), CRM_OK);
    assert_int_equal(g.n, 7);
    for (size_t i = 0; i < g.n; i++)
        assert_int_equal(g.v[i].seq, i + 1);
    gotv_free(&g);
    assert_int_equal(make_notes(f, 7, 1), 8);
}

/* ------------------------------------------------------------------ */

static void expect_resync(fixture *f, uint64_t since)
{
    gotv g = {0};
    crm_err err = {0, ""};
    int rc = read_feed(f, since, 0, &g, NULL, &err);
    if (rc != CRM_CONFLICT)
        fail_msg("read from %llu: rc %d, want CONFLICT", (unsigned long long)since, rc);
    assert_int_equal(err.code, CRM_CONFLICT);
    if (!strstr(err.msg, "resync"))
        fail_msg("no \"resync\" in \"%s\"", err.msg);
    assert_int_equal(g.n, 0);
    gotv_free(&g);
}

/* Reads from since and expects entries first..last exactly. */
static void expect_range(fixture *f, uint64_t since, uint64_t first, uint64_t last)
{
    gotv g = {0};
    crm_err err = {0, ""};
    int rc = read_feed(f, since, 0, &g, NULL, &err);
    if (rc != CRM_OK)
        fail_msg("read from %llu: %s", (unsigned long long)since, err.msg);
    assert_int_equal(g.n, last >= first ? last - first + 1 : 0);
    for (size_t i = 0; i < g.n; i++)
        assert_int_equal(g.v[i].seq, first + i);
    gotv_free(&g);
}

static void test_retention_by_age_trims_old_entries_and_keeps_the_newest(void **state)
{
    fixture *f = *state;
    uint64_t first, last;

    close_store(f);
    f->opts.feed_max_age_ms = 1000;
    open_store(f);

    f->now = T0;
    assert_int_equal(make_notes(f, 0, 3), 3); /* 1..3 at T0 */
    f->now = T0 + 600;
    assert_int_equal(make_notes(f, 3, 3), 6); /* 4..6 at T0+600 */

    /* exactly max_age old is still kept */
    f->now = T0 + 1000;
    assert_int_equal(make_notes(f, 6, 1), 7);
    bounds(f, &first, &last);
    assert_int_equal(first, 1);
    assert_int_equal(last, 7);

    /* one ms later the T0 entries go */
    f->now = T0 + 1001;
    assert_int_equal(make_notes(f, 7, 1), 8);
    bounds(f, &first, &last);
    assert_int_equal(first, 4);
    assert_int_equal(last, 8);
    expect_range(f, 0, 4, 8); /* since 0 replays everything retained (spec) */
    expect_resync(f, 1);
    expect_resync(f, 2);
    expect_range(f, 3, 4, 8); /* first-1 is fine: nothing is missing */
    expect_range(f, 5, 6, 8);
    verify(f);

    f->now = T0 + 1601;
    assert_int_equal(make_notes(f, 8, 1), 9);
    bounds(f, &first, &last);
    assert_int_equal(first, 7);
    assert_int_equal(last, 9);
    expect_resync(f, 5);
    expect_range(f, 6, 7, 9);

    /* much later, a batch in which every unit fails: it trims everything
     * old but the newest entry, which always stays */
    f->now = T0 + 100000;
    {
        batch b;
        batch_init(&b);
        add1(&b, CRM_OP_CREATE, "notes", NULL, "{\"n\": 1}", 0);
        apply(f, &b);
        assert_int_equal(b.u[0].rc, CRM_VALIDATION);
        batch_free(&b);
    }
    bounds(f, &first, &last);
    assert_int_equal(first, 9);
    assert_int_equal(last, 9);
    assert_int_equal(crm_store_last_seq(f->store), 9);
    expect_resync(f, 7);
    expect_range(f, 8, 9, 9);
    expect_range(f, 9, 10, 9); /* nothing newer */
    verify(f);

    /* retention survives reopen and the seq goes on */
    close_store(f);
    open_store(f);
    bounds(f, &first, &last);
    assert_int_equal(first, 9);
    assert_int_equal(last, 9);
    f->now = T0 + 100001;
    assert_int_equal(make_notes(f, 9, 2), 11);
    bounds(f, &first, &last);
    assert_int_equal(first, 10); /* 9 was written at T0+1601: now too old */
    assert_int_equal(last, 11);
    expect_resync(f, 8);
    expect_range(f, 9, 10, 11);

    /* the records themselves are never trimmed */
    for (int i = 0; i < 11; i++) {
        char id[16];
        crm_value *v;
        snprintf(id, sizeof id, "n%d", i);
        v = get_rec(f, "notes", id);
        assert_non_null(v);
        crm_value_free(v);
    }
}

/* Sums the feed's value sizes and reads meta's feed_bytes straight from
 * LMDB (the store must be closed). */
static void raw_feed_bytes(const char *dir, uint64_t *sum, uint64_t *meta, size_t *largest,
                           size_t *entries)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi feed, mdbi;
    MDB_cursor *cur;
    MDB_val k, v;
    int mrc;
    *sum = *meta = 0;
    *largest = *entries = 0;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 64), 0);
    assert_int_equal(mdb_env_open(env, dir, MDB_RDONLY | MDB_NOTLS, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "feed", 0, &feed), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &mdbi), 0);
    assert_int_equal(mdb_cursor_open(txn, feed, &cur), 0);
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        *sum += v.mv_size;
        if (v.mv_size > *largest)
            *largest = v.mv_size;
        (*entries)++;
    }
    assert_int_equal(mrc, MDB_NOTFOUND);
    mdb_cursor_close(cur);
    k.mv_data = (void *)"feed_bytes";
    k.mv_size = strlen("feed_bytes");
    assert_int_equal(mdb_get(txn, mdbi, &k, &v), 0);
    assert_int_equal(v.mv_size, 8);
    for (int i = 0; i < 8; i++)
        *meta = (*meta << 8) | ((const uint8_t *)v.mv_data)[i];
    mdb_txn_abort(txn);
    mdb_env_close(env);
}

static void test_retention_by_size_keeps_the_feed_under_its_cap(void **state)
{
    fixture *f = *state;
    const uint64_t cap = 4096;
    uint64_t first, last, sum, meta;
    size_t largest, entries;
    char blob[201];

    close_store(f);
    f->opts.feed_max_bytes = cap;
    open_store(f);
    memset(blob, 'b', 200);
    blob[200] = '\0';

    for (int round = 0; round < 20; round++) {
        batch b;
        batch_init(&b);
        for (int i = 0; i < 10; i++) {
            char json[320];
            snprintf(json, sizeof json, "{\"title\": \"s%d\", \"blob\": \"%s\"}", round * 10 + i,
                     blob);
            add1(&b, CRM_OP_CREATE, "notes", NULL, json, 0);
        }
        apply(f, &b);
        for (size_t i = 0; i < b.nu; i++)
            assert_int_equal(b.u[i].rc, CRM_OK);
        batch_free(&b);
        f->now++;
    }
    assert_int_equal(crm_store_last_seq(f->store), 200);
    bounds(f, &first, &last);
    assert_true(first > 1);
    assert_int_equal(last, 200);
    expect_resync(f, first - 2);
    expect_range(f, first - 1, first, 200);
    verify(f);

    /* the byte count the store keeps is the bytes of the entries it keeps,
     * under the cap, and no more was trimmed than needed */
    close_store(f);
    raw_feed_bytes(f->dir, &sum, &meta, &largest, &entries);
    assert_int_equal(entries, last - first + 1);
    assert_int_equal(sum, meta);
    assert_true(sum <= cap);
    assert_true(sum + largest > cap);
    open_store(f);

    /* one entry bigger than the cap: everything older goes, it stays */
    {
        char *big = malloc(8192), *json = malloc(8300);
        batch b;
        assert_non_null(big);
        assert_non_null(json);
        memset(big, 'z', 8000);
        big[8000] = '\0';
        snprintf(json, 8300, "{\"title\": \"huge\", \"blob\": \"%s\"}", big);
        batch_init(&b);
        add1(&b, CRM_OP_CREATE, "notes", "huge", json, 0);
        apply(f, &b);
        assert_int_equal(b.u[0].rc, CRM_OK);
        assert_int_equal(b.w[0].seq, 201);
        batch_free(&b);
        free(big);
        free(json);
    }
    bounds(f, &first, &last);
    assert_int_equal(first, 201);
    assert_int_equal(last, 201);
    expect_range(f, 200, 201, 201);
    expect_resync(f, 199);
    verify(f);

    /* small writes after it push it out again */
    assert_int_equal(make_notes(f, 0, 3), 204);
    bounds(f, &first, &last);
    assert_true(first > 201);
    assert_int_equal(last, 204);
    verify(f);
    close_store(f);
    raw_feed_bytes(f->dir, &sum, &meta, &largest, &entries);
    assert_int_equal(sum, meta);
    assert_true(sum <= cap);
    open_store(f);
}

/* ------------------------------------------------------------------ */
/* randomized: the feed alone rebuilds the store                       */
/* ------------------------------------------------------------------ */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static int pick(int n) { return (int)(rnd() % (uint64_t)n); }

/* Ids the run has seen (live or deleted), per collection. */
typedef struct idset {
    char ids[1200][40];
    size_t n;
} idset;

static void idset_add(idset *s, const char *id)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->ids[i], id) == 0)
            return;
    assert_true(s->n < sizeof s->ids / sizeof *s->ids);
    snprintf(s->ids[s->n++], sizeof s->ids[0], "%s", id);
}

static const char *idset_pick(idset *s, char *buf, size_t bufsz)
{
    if (s->n == 0 || pick(20) == 0) {
        snprintf(buf, bufsz, "missing%d", pick(50)); /* NOT_FOUND */
        return buf;
    }
    return s->ids[pick((int)s->n)];
}

/* A record rebuilt from the feed. */
typedef struct rebuilt {
    char coll[16];
    char id[40];
    int64_t rev;
    crm_value *rec; /* NULL once deleted */
} rebuilt;

typedef struct state_map {
    rebuilt *r;
    size_t n, cap;
} state_map;

static rebuilt *state_find(state_map *m, const char *coll, const char *id, int add_it)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->r[i].id, id) == 0 && strcmp(m->r[i].coll, coll) == 0)
            return &m->r[i];
    if (!add_it)
        return NULL;
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 256;
        m->r = realloc(m->r, m->cap * sizeof *m->r);
        assert_non_null(m->r);
    }
    memset(&m->r[m->n], 0, sizeof m->r[m->n]);
    snprintf(m->r[m->n].coll, sizeof m->r[m->n].coll, "%s", coll);
    snprintf(m->r[m->n].id, sizeof m->r[m->n].id, "%s", id);
    return &m->r[m->n++];
}

typedef struct replay {
    state_map *m;
    uint64_t next_seq;
    const uint8_t *expect_op; /* per seq: the op the writes reported */
    char (*expect_id)[40];
} replay;

static int replay_one(void *ud, const crm_feed_entry *e)
{
    replay *rp = ud;
    rebuilt *r;
    if (e->seq != rp->next_seq)
        fail_msg("feed seq %llu, want %llu", (unsigned long long)e->seq,
                 (unsigned long long)rp->next_seq);
    rp->next_seq++;
    assert_int_equal(e->op, rp->expect_op[e->seq]);
    assert_string_equal(e->id, rp->expect_id[e->seq]);
    r = state_find(rp->m, e->coll, e->id, e->op == CRM_OP_CREATE);
    if (!r)
        fail_msg("seq %llu: %s of %s/%s which the feed never created",
                 (unsigned long long)e->seq, crm_op_name(e->op), e->coll, e->id);
    switch (e->op) {
    case CRM_OP_CREATE:
        /* an id may come back after a delete */
        assert_null(r->rec);
        assert_int_equal(e->prev_rev, 0);
        assert_int_equal(e->rev, 1);
        break;
    case CRM_OP_UPDATE:
    case CRM_OP_DELETE:
        assert_non_null(r->rec);
        assert_int_equal(e->prev_rev, r->rev);
        assert_int_equal(e->rev, r->rev + 1);
        break;
    }
    crm_value_free(r->rec);
    r->rec = NULL;
    r->rev = e->rev;
    if (e->op == CRM_OP_DELETE) {
        assert_null(e->record);
        r->rev = 0;
    } else {
        assert_non_null(e->record);
        assert_int_equal(crm_map_int(e->record, "_rev", -1), e->rev);
        assert_string_equal(crm_map_str(e->record, "id", "?"), e->id);
        r->rec = crm_value_dup(e->record);
        assert_non_null(r->rec);
    }
    return 0;
}

#define RANDOM_WRITES 2000

static void random_note(char *json, size_t sz, int broken)
{
    int kind = broken ? pick(3) : -1;
    char code[32] = "", grp[32] = "", n[32] = "";
    if (pick(3) == 0)
        snprintf(code, sizeof code, ", \"code\": \"k%d\"", pick(120)); /* unique: collides */
    if (pick(2) == 0)
        snprintf(grp, sizeof grp, ", \"grp\": \"g%d\"", pick(5));
    snprintf(n, sizeof n, ", \"n\": %d", kind == 0 ? -1 - pick(5) : pick(1000));
    if (kind == 1) /* no title */
        snprintf(json, sz, "{\"tags\": [\"a\"]%s%s%s}", code, grp, n);
    else if (kind == 2) /* wrong item type */
        snprintf(json, sz, "{\"title\": \"t\", \"tags\": [\"a\", %d]%s}", pick(9), n);
    else
        snprintf(json, sz, "{\"title\": \"t%d\", \"tags\": [\"x%d\"]%s%s%s}", pick(100000),
                 pick(10), code, grp, n);
}

static void random_patch(char *json, size_t sz, int broken)
{
    switch (broken ? 3 + pick(2) : pick(3)) {
    case 0:
        snprintf(json, sz, "{\"n\": %d, \"grp\": \"g%d\"}", pick(1000), pick(5));
        break;
    case 1:
        snprintf(json, sz, "{\"code\": \"k%d\", \"tags\": null}", pick(120));
        break;
    case 2:
        snprintf(json, sz, "{\"grp\": null, \"code\": null, \"title\": \"u%d\"}", pick(1000));
        break;
    case 3:
        snprintf(json, sz, "{\"title\": null}"); /* required */
        break;
    default:
        snprintf(json, sz, "{\"n\": \"lots\"}");
        break;
    }
}

/* Adds one random write to the current unit of b. */
static void random_write(batch *b, idset *notes, idset *people)
{
    char json[256], idbuf[40];
    int broken = pick(12) == 0;
    int r = pick(100);
    if (r < 40) { /* create note: client id (may be taken) or server id */
        random_note(json, sizeof json, broken);
        if (pick(2)) {
            snprintf(idbuf, sizeof idbuf, "r%d", pick(600));
            add(b, CRM_OP_CREATE, "notes", idbuf, json, 0);
        } else {
            add(b, CRM_OP_CREATE, "notes", NULL, json, 0);
        }
    } else if (r < 50) { /* create person, ref to a note that may be gone */
        const char *note = idset_pick(notes, idbuf, sizeof idbuf);
        snprintf(json, sizeof json, "{\"name\": \"p%d\", \"note\": \"%s\"}", pick(1000), note);
        add(b, CRM_OP_CREATE, "people", NULL, json, 0);
    } else if (r < 78) { /* update note, sometimes with a stale if_rev */
        const char *id = idset_pick(notes, idbuf, sizeof idbuf);
        random_patch(json, sizeof json, broken);
        add(b, CRM_OP_UPDATE, "notes", id, json, pick(8) == 0 ? 1 + pick(3) : 0);
    } else if (r < 85) { /* update person */
        const char *id = idset_pick(people, idbuf, sizeof idbuf);
        snprintf(json, sizeof json, "{\"name\": \"q%d\"}", pick(1000));
        add(b, CRM_OP_UPDATE, "people", id, json, 0);
    } else if (r < 96) {
        const char *id = idset_pick(notes, idbuf, sizeof idbuf);
        add(b, CRM_OP_DELETE, "notes", id, NULL, pick(10) == 0 ? 1 + pick(3) : 0);
    } else {
        const char *id = idset_pick(people, idbuf, sizeof idbuf);
        add(b, CRM_OP_DELETE, "people", id, NULL, 0);
    }
}

static void test_random_writes_feed_replay_rebuilds_the_store(void **state)
{
    fixture *f = *state;
    idset *notes = calloc(1, sizeof *notes), *people = calloc(1, sizeof *people);
    uint8_t *exp_op = calloc(RANDOM_WRITES + 2, 1);
    char(*exp_id)[40] = calloc(RANDOM_WRITES + 2, sizeof *exp_id);
    state_map m = {0};
    uint64_t seed = 0x5eed2024ULL;
    const char *env = getenv("CRM_TEST_SEED");
    int writes = 0, nbatches = 0;
    int fails[CRM_CODE_LAST] = {0};
    int failed_tx = 0, ok_tx = 0;

    assert_non_null(notes);
    assert_non_null(people);
    assert_non_null(exp_op);
    assert_non_null(exp_id);
    if (env && *env)
        seed = strtoull(env, NULL, 0);
    rng_state = seed ? seed : 1;
    print_message("random feed run, seed %llu (CRM_TEST_SEED to repeat)\n",
                  (unsigned long long)seed);

    while (writes < RANDOM_WRITES) {
        batch *b = malloc(sizeof *b);
        int nunits = 1 + pick(16);
        uint64_t seq = crm_store_last_seq(f->store);
        assert_non_null(b);
        batch_init(b);
        for (int u = 0; u < nunits && writes < RANDOM_WRITES; u++) {
            int n = pick(5) == 0 ? 2 + pick(3) : 1; /* a tx of 2-4 writes */
            unit(b);
            for (int i = 0; i < n && writes < RANDOM_WRITES; i++, writes++)
                random_write(b, notes, people);
        }
        f->now += 1 + pick(5);
        apply(f, b);
        nbatches++;
        /* units in order take the next seqs; failed units take none */
        for (size_t u = 0; u < b->nu; u++) {
            crm_unit *un = &b->u[u];
            if (un->rc != CRM_OK) {
                assert_true(un->rc == CRM_VALIDATION || un->rc == CRM_CONFLICT ||
                            un->rc == CRM_NOT_FOUND);
                fails[un->rc]++;
                if (un->n > 1)
                    failed_tx++;
                for (size_t i = 0; i < un->n; i++) {
                    assert_int_equal(un->writes[i].seq, 0);
                    assert_null(un->writes[i].result);
                }
                continue;
            }
            if (un->n > 1)
                ok_tx++;
            for (size_t i = 0; i < un->n; i++) {
                crm_write *w = &un->writes[i];
                const char *id;
                assert_int_equal(w->rc, CRM_OK);
                assert_int_equal(w->seq, ++seq);
                assert_true(seq <= RANDOM_WRITES);
                assert_non_null(w->result);
                id = crm_map_str(w->result, "id", NULL);
                assert_non_null(id);
                exp_op[seq] = (uint8_t)w->op;
                snprintf(exp_id[seq], sizeof exp_id[seq], "%s", id);
                if (w->op == CRM_OP_CREATE)
                    idset_add(strcmp(w->coll, "notes") == 0 ? notes : people, id);
            }
        }
        assert_int_equal(crm_store_last_seq(f->store), seq);
        batch_free(b);
        free(b);
    }

    /* the run exercised what it meant to */
    assert_true(fails[CRM_VALIDATION] > 0);
    assert_true(fails[CRM_CONFLICT] > 0);
    assert_true(fails[CRM_NOT_FOUND] > 0);
    assert_true(failed_tx > 0);
    assert_true(ok_tx > 0);
    assert_true(crm_store_last_seq(f->store) > RANDOM_WRITES / 3);
    print_message("%d batches, %llu changes; failed units: %d VALIDATION, %d CONFLICT, "
                  "%d NOT_FOUND; tx units %d ok, %d failed\n",
                  nbatches, (unsigned long long)crm_store_last_seq(f->store),
                  fails[CRM_VALIDATION], fails[CRM_CONFLICT], fails[CRM_NOT_FOUND], ok_tx,
                  failed_tx);
    verify(f);

    /* rebuild every record from the feed alone */
    {
        crm_txn *t;
        crm_err err = {0, ""};
        replay rp = {&m, 1, exp_op, exp_id};
        uint64_t last_out = 0, live_notes = 0, live_people = 0, count;
        assert_int_equal(crm_store_begin_read(f->store, &t, &err), CRM_OK);
        if (crm_feed_read(t, 0, 0, replay_one, &rp, &last_out, &err) != CRM_OK)
            fail_msg("replay: %s", err.msg);
        assert_int_equal(rp.next_seq - 1, crm_store_last_seq(f->store));
        assert_int_equal(last_out, crm_store_last_seq(f->store));

        /* it equals the store, record by record, including the deleted ones */
        for (size_t i = 0; i < m.n; i++) {
            crm_value *v = NULL;
            int rc = crm_txn_get(t, m.r[i].coll, m.r[i].id, &v, &err);
            if (!m.r[i].rec) {
                if (rc != CRM_NOT_FOUND)
                    fail_msg("%s/%s: deleted in the feed, rc %d in the store", m.r[i].coll,
                             m.r[i].id, rc);
                continue;
            }
            if (rc != CRM_OK)
                fail_msg("%s/%s: in the feed, not in the store: %s", m.r[i].coll, m.r[i].id,
                         err.msg);
            if (!crm_value_equal(v, m.r[i].rec)) {
                char *a = crm_json_encode(v, NULL), *b = crm_json_encode(m.r[i].rec, NULL);
                fail_msg("%s/%s: store %s, feed %s", m.r[i].coll, m.r[i].id, a ? a : "?",
                         b ? b : "?");
            }
            crm_value_free(v);
            if (strcmp(m.r[i].coll, "notes") == 0)
                live_notes++;
            else
                live_people++;
        }
        /* and the store holds nothing the feed does not explain */
        assert_int_equal(crm_txn_count(t, "notes", &count, &err), CRM_OK);
        assert_int_equal(count, live_notes);
        assert_int_equal(crm_txn_count(t, "people", &count, &err), CRM_OK);
        assert_int_equal(count, live_people);
        assert_true(live_notes > 0);
        crm_txn_end(t);
    }
    for (size_t i = 0; i < m.n; i++)
        crm_value_free(m.r[i].rec);
    free(m.r);
    free(notes);
    free(people);
    free(exp_op);
    free(exp_id);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_seq_is_gap_free_across_batches_mixing_failing_units,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_feed_read_replays_from_any_seq_with_correct_entries,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_bounds_and_last_seq_survive_reopen_with_sync, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_retention_by_age_trims_old_entries_and_keeps_the_newest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_by_size_keeps_the_feed_under_its_cap,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_writes_feed_replay_rebuilds_the_store, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
