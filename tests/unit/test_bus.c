/*
 * test_bus -- hooks, after-hook consumers, timers and methods through the
 * crm_api table, on a real LMDB in a temp folder: before-hooks change and
 * refuse writes and their own writes are undone with a refusal; after-hooks
 * run once per change, from a durable cursor that survives a reopen; a
 * poison change is retried, dead-lettered, and the feed goes on; hook
 * chains stop at depth 16; timers fire once when due (also after a
 * reopen), keyed timers replace each other, cancel works; methods see
 * their caller.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "bus.h"
#include "schema.h"
#include "store.h"
#include "testutil.h"
#include "tmpdir.h"

static const char *const COMPANIES =
    "{\"collection\": \"companies\", \"id_prefix\": \"co_\", \"fields\": {"
    " \"name\": {\"type\": \"string\", \"required\": true},"
    " \"from\": {\"type\": \"string\", \"index\": true}}}";
static const char *const CONTACTS =
    "{\"collection\": \"contacts\", \"id_prefix\": \"c_\", \"fields\": {"
    " \"name\":  {\"type\": \"string\", \"required\": true},"
    " \"email\": {\"type\": \"string\", \"index\": \"unique\"},"
    " \"tag\":   {\"type\": \"string\"}}}";

typedef struct fixture {
    char *dir, *sdir;
    crm_schema *schema;
    crm_store *store;
    crm_bus *bus;
    crm_plugin *p;
    const crm_api *api;
    int64_t now;
    int after_calls, timer_calls, poison_calls;
    char last_timer_payload[64];
} fixture;

static fixture *F; /* hooks reach the fixture through their ud; this is for asserts */

static int64_t fake_clock(void *ud) { return ((fixture *)ud)->now; }

static void open_all(fixture *f)
{
    crm_err err;
    crm_store_opts o;
    crm_bus_opts bo;
    crm_store_opts_default(&o);
    o.no_sync = 1;
    o.clock_ms = fake_clock;
    o.clock_ud = f;
    assert_int_equal(crm_store_open(f->dir, f->schema, &o, &f->store, &err), CRM_OK);
    crm_bus_opts_default(&bo);
    bo.max_attempts = 3;
    bo.backoff_ms = 100;
    assert_int_equal(crm_bus_new(f->store, &bo, &f->bus, &err), CRM_OK);
    f->api = crm_bus_api(f->bus);
    f->p = crm_bus_owner_new(f->bus, "plugin", "t", NULL);
    assert_non_null(f->p);
}

static void close_all(fixture *f)
{
    crm_bus_owner_free(f->p);
    crm_bus_free(f->bus);
    crm_store_close(f->store);
    f->p = NULL;
    f->bus = NULL;
    f->store = NULL;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    crm_err err;
    f->sdir = crm_tmpdir_make("bschema");
    crm_tmpdir_write(f->sdir, "companies.json", COMPANIES);
    crm_tmpdir_write(f->sdir, "contacts.json", CONTACTS);
    assert_int_equal(crm_schema_load_dir(f->sdir, &f->schema, &err), CRM_OK);
    assert_non_null(crm_schema_find(f->schema, "dead_letters")); /* added by the loader */
    f->dir = crm_tmpdir_make("bus");
    f->now = 1700000000000;
    open_all(f);
    F = f;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    close_all(f);
    crm_schema_free(f->schema);
    crm_tmpdir_remove(f->dir);
    crm_tmpdir_remove(f->sdir);
    free(f);
    return 0;
}

/* ---- helpers ---- */

static int write1(fixture *f, crm_op op, const char *coll, const char *id, const char *json,
                  crm_err *err_out)
{
    return crm_test_write(f->store, op, coll, id, json, NULL, err_out);
}

/* Runs bus rounds until it has nothing to do now. */
static void pump(fixture *f)
{
    if (crm_test_pump(f->store, f->bus) != 0)
        fail_msg("the bus did not settle");
}

static uint64_t count(fixture *f, const char *coll)
{
    uint64_t n = crm_test_count(f->store, coll);
    assert_true(n != UINT64_MAX);
    return n;
}

static crm_value *first_dead_letter(fixture *f)
{
    crm_txn *t;
    crm_err e;
    crm_query q = {"dead_letters", NULL, NULL, 10, NULL};
    crm_value *recs = NULL, *one = NULL;
    char *next = NULL;
    assert_int_equal(crm_store_begin_read(f->store, &t, &e), CRM_OK);
    assert_int_equal(crm_txn_query(t, &q, &recs, &next, &e), CRM_OK);
    crm_txn_end(t);
    free(next);
    if (recs->u.arr.n)
        one = crm_value_dup(recs->u.arr.items[0]);
    crm_value_free(recs);
    return one;
}

/* ---- before-hooks ---- */

static int before_contact(crm_ctx *c, crm_event *ev, void *ud)
{
    fixture *f = ud;
    const crm_value *name = f->api->map_get(ev->record, "name");
    crm_value *co;
    int rc;
    /* a write of the hook's own, which must vanish if the contact is refused */
    co = f->api->value_map();
    f->api->map_set(co, "name", f->api->value_str("made by hook", 12));
    rc = f->api->create(c, "companies", co, NULL);
    f->api->value_free(co);
    if (rc != CRM_OK)
        return rc;
    if (name && name->type == CRM_T_STR && strcmp(name->u.str.s, "Mallory") == 0)
        return f->api->error(c, CRM_REJECTED, "no Mallory here");
    /* change the record on its way in */
    f->api->map_set(ev->record, "tag", f->api->value_str("checked", 7));
    return CRM_OK;
}

static void test_before_hook_changes_and_rejects(void **state)
{
    fixture *f = *state;
    crm_err err;
    crm_txn *t;
    crm_value *rec;
    assert_int_equal(f->api->on(f->p, "contacts.create", CRM_BEFORE, NULL, before_contact, f),
                     CRM_OK);
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", "c_1", "{\"name\": \"Ann\"}", &err), CRM_OK);
    assert_int_equal(crm_store_begin_read(f->store, &t, &err), CRM_OK);
    assert_int_equal(crm_txn_get(t, "contacts", "c_1", &rec, &err), CRM_OK);
    crm_txn_end(t);
    assert_string_equal(crm_map_str(rec, "tag", ""), "checked");
    crm_value_free(rec);
    assert_int_equal(count(f, "companies"), 1);

    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", "c_2", "{\"name\": \"Mallory\"}", &err),
                     CRM_REJECTED);
    assert_string_equal(err.msg, "no Mallory here");
    assert_int_equal(count(f, "contacts"), 1);
    assert_int_equal(count(f, "companies"), 1); /* the hook's own write went with it */

    /* registrations are refused once the owner is sealed, and bad events always */
    assert_int_equal(f->api->on(f->p, "nosuch.create", CRM_BEFORE, NULL, before_contact, f),
                     CRM_BAD_REQUEST);
    assert_non_null(strstr(crm_bus_owner_errmsg(f->p), "nosuch"));
    assert_int_equal(f->api->on(f->p, "contacts.explode", CRM_AFTER, NULL, before_contact, f),
                     CRM_BAD_REQUEST);
    crm_bus_owner_seal(f->p);
    assert_int_equal(f->api->on(f->p, "contacts.create", CRM_AFTER, NULL, before_contact, f),
                     CRM_BAD_REQUEST);
}

/* ---- after-hooks ---- */

static int after_contact(crm_ctx *c, crm_event *ev, void *ud)
{
    fixture *f = ud;
    crm_value *co = f->api->value_map();
    const crm_value *name = f->api->map_get(ev->record, "name");
    int rc;
    f->after_calls++;
    if (name && strcmp(name->u.str.s, "poison") == 0) {
        f->poison_calls++;
        f->api->value_free(co);
        return f->api->error(c, CRM_INTERNAL, "poison pill %s", ev->id);
    }
    f->api->map_set(co, "name", f->api->value_str("for", 3));
    f->api->map_set(co, "from", f->api->value_str(ev->id, strlen(ev->id)));
    rc = f->api->create(c, "companies", co, NULL);
    f->api->value_free(co);
    return rc;
}

static void test_after_hook_exactly_once_and_durable_cursor(void **state)
{
    fixture *f = *state;
    char id[16];
    assert_int_equal(f->api->on(f->p, "contacts.create", CRM_AFTER, "mirror", after_contact, f),
                     CRM_OK);
    crm_bus_owner_seal(f->p);
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof id, "c_%d", i);
        assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", id, "{\"name\": \"x\"}", NULL), CRM_OK);
    }
    assert_int_equal(crm_bus_next_work_ms(f->bus), 0);
    pump(f);
    assert_int_equal(f->after_calls, 20);
    assert_int_equal(count(f, "companies"), 20);
    assert_int_equal(crm_bus_next_work_ms(f->bus), -1);

    /* more changes, then a "restart" before the bus ran: the cursor is durable */
    for (int i = 20; i < 25; i++) {
        snprintf(id, sizeof id, "c_%d", i);
        assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", id, "{\"name\": \"x\"}", NULL), CRM_OK);
    }
    close_all(f);
    open_all(f);
    assert_int_equal(f->api->on(f->p, "contacts.create", CRM_AFTER, "mirror", after_contact, f),
                     CRM_OK);
    pump(f);
    assert_int_equal(count(f, "companies"), 25); /* 5 more, none twice */
    assert_int_equal(f->after_calls, 25);
    assert_int_equal(crm_store_verify(f->store, &(crm_err){0}), CRM_OK);
}

/* An after-hook slower than the round budget (10 ms): one event a round
 * while client writes wait (each round is a commit, and its flushes), all
 * the round may take when none do (the writer's clients_waiting says so). */
static int slow_after(crm_ctx *c, crm_event *ev, void *ud)
{
    fixture *f = ud;
    (void)c;
    (void)ev;
    f->after_calls++;
    usleep(11000); /* over the 10 ms budget, whatever the machine */
    return CRM_OK;
}

static int waiting_answer;
static int clients_waiting_stub(void *ud)
{
    (void)ud;
    return waiting_answer;
}

static int rounds_to_settle(fixture *f)
{
    crm_unit room[1];
    crm_err err;
    int ran = 1, rounds = 0;
    while (ran) {
        assert_int_equal(crm_bus_apply(f->bus, room, 0, &ran, &err), CRM_OK);
        rounds += ran;
        assert_true(rounds < 1000);
    }
    return rounds;
}

static void test_round_budget_binds_only_while_clients_wait(void **state)
{
    fixture *f = *state;
    char id[16];
    int waited, idle;
    assert_int_equal(f->api->on(f->p, "contacts.create", CRM_AFTER, "slow", slow_after, f), CRM_OK);
    crm_bus_owner_seal(f->p);
    crm_bus_set_clients_waiting(f->bus, clients_waiting_stub, NULL);
    waiting_answer = 1;
    for (int i = 0; i < 12; i++) {
        snprintf(id, sizeof id, "w_%d", i);
        assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", id, "{\"name\": \"x\"}", NULL), CRM_OK);
    }
    waited = rounds_to_settle(f);
    assert_int_equal(f->after_calls, 12);
    assert_int_equal(waited, 12); /* one event per round: the budget binds */
    waiting_answer = 0;
    for (int i = 0; i < 40; i++) {
        snprintf(id, sizeof id, "i_%d", i);
        assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", id, "{\"name\": \"x\"}", NULL), CRM_OK);
    }
    idle = rounds_to_settle(f);
    assert_int_equal(f->after_calls, 52);
    print_message("12 slow events with clients waiting: %d rounds; 40 with none: %d rounds\n", waited,
                  idle);
    assert_true(idle <= 4); /* take grows 4 -> 8 -> 16 -> 32 at most */
    crm_bus_set_clients_waiting(f->bus, NULL, NULL);
}

static void test_poison_event_dead_lettered_feed_goes_on(void **state)
{
    fixture *f = *state;
    crm_value *dl;
    crm_bus_stats st;
    assert_int_equal(f->api->on(f->p, "contacts.create", CRM_AFTER, NULL, after_contact, f),
                     CRM_OK);
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", "c_a", "{\"name\": \"a\"}", NULL), CRM_OK);
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", "c_p", "{\"name\": \"poison\"}", NULL), CRM_OK);
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", "c_b", "{\"name\": \"b\"}", NULL), CRM_OK);
    pump(f);
    assert_int_equal(f->poison_calls, 1);
    assert_int_equal(count(f, "companies"), 1); /* c_a done; c_b waits behind the poison */
    assert_true(crm_bus_next_work_ms(f->bus) > 0); /* backing off */
    for (int i = 0; i < 10 && count(f, "dead_letters") == 0; i++) {
        f->now += 1000;
        pump(f);
    }
    assert_int_equal(f->poison_calls, 3); /* max_attempts */
    assert_int_equal(count(f, "dead_letters"), 1);
    assert_int_equal(count(f, "companies"), 2); /* c_b after it */
    dl = first_dead_letter(f);
    assert_string_equal(crm_map_str(dl, "kind", ""), "after_hook");
    assert_string_equal(crm_map_str(dl, "record_id", ""), "c_p");
    assert_non_null(strstr(crm_map_str(dl, "error", ""), "poison pill c_p"));
    assert_int_equal(crm_map_int(dl, "attempts", 0), 3);
    crm_value_free(dl);
    crm_bus_stats_get(f->bus, &st);
    assert_int_equal(st.dead_letters, 1);
    assert_int_equal(st.min_cursor, crm_store_last_seq(f->store));
}

/* every company made makes another: a chain the bus must cut */
static int after_chain(crm_ctx *c, crm_event *ev, void *ud)
{
    fixture *f = ud;
    crm_value *co = f->api->value_map();
    int rc;
    f->after_calls++;
    f->api->map_set(co, "name", f->api->value_str("chain", 5));
    rc = f->api->create(c, "companies", co, NULL);
    f->api->value_free(co);
    return rc;
}

static void test_hook_chain_cut_at_depth_16(void **state)
{
    fixture *f = *state;
    crm_value *dl;
    assert_int_equal(f->api->on(f->p, "companies.create", CRM_AFTER, NULL, after_chain, f), CRM_OK);
    assert_int_equal(write1(f, CRM_OP_CREATE, "companies", NULL, "{\"name\": \"seed\"}", NULL), CRM_OK);
    pump(f);
    /* the client's write is depth 0; hooks made depths 1..16; the 16th is not run */
    assert_int_equal(count(f, "companies"), 1 + CRM_MAX_HOOK_DEPTH);
    assert_int_equal(f->after_calls, CRM_MAX_HOOK_DEPTH);
    assert_int_equal(count(f, "dead_letters"), 1);
    dl = first_dead_letter(f);
    assert_non_null(strstr(crm_map_str(dl, "error", ""), "depth 16"));
    crm_value_free(dl);
    assert_int_equal(crm_bus_next_work_ms(f->bus), -1); /* settled: no loop */
}

/* ---- timers and methods ---- */

static int on_ping(crm_ctx *c, const char *name, const crm_value *payload, void *ud)
{
    fixture *f = ud;
    f->timer_calls++;
    snprintf(f->last_timer_payload, sizeof f->last_timer_payload, "%s",
             crm_map_str(payload, "n", "?"));
    (void)c;
    (void)name;
    return CRM_OK;
}

static int call(fixture *f, const char *method, const char *params_json, crm_value **result)
{
    crm_value *params = crm_test_json(params_json), *res = NULL;
    crm_err e;
    int rc = crm_bus_call_now(f->bus, method, params, "tok1", "sales", &res, &e);
    crm_value_free(params);
    if (result)
        *result = res;
    else
        crm_value_free(res);
    return rc;
}

/* schedule {seconds, n, key?} or cancel {cancel: key} */
static int m_sched(crm_ctx *c, const crm_value *params, crm_value **result, void *ud)
{
    fixture *f = ud;
    const crm_value *cancel = f->api->map_get(params, "cancel");
    crm_value *payload;
    int rc;
    if (cancel)
        return f->api->cancel(c, "ping", cancel->u.str.s);
    payload = f->api->value_map();
    f->api->map_set(payload, "n", f->api->value_dup(f->api->map_get(params, "n")));
    rc = f->api->schedule(c, (double)crm_map_int(params, "seconds", 0), "ping", payload,
                          crm_map_str(params, "key", NULL));
    f->api->value_free(payload);
    *result = f->api->value_str(f->api->caller_role(c), strlen(f->api->caller_role(c)));
    return rc;
}

static void test_timers_fire_once_replace_cancel_and_survive_reopen(void **state)
{
    fixture *f = *state;
    crm_value *res = NULL;
    assert_int_equal(f->api->on_timer(f->p, "ping", on_ping, f), CRM_OK);
    assert_int_equal(f->api->method(f->p, "t.sched", m_sched, f), CRM_OK);
    assert_int_equal(call(f, "t.sched", "{\"seconds\": 60, \"n\": \"one\"}", &res), CRM_OK);
    assert_string_equal(res->u.str.s, "sales"); /* the method saw its caller */
    crm_value_free(res);
    pump(f);
    assert_int_equal(f->timer_calls, 0);
    assert_true(crm_bus_next_work_ms(f->bus) > 0);
    f->now += 61000;
    pump(f);
    assert_int_equal(f->timer_calls, 1);
    assert_string_equal(f->last_timer_payload, "one");
    f->now += 100000;
    pump(f);
    assert_int_equal(f->timer_calls, 1); /* once */

    /* keyed: the second schedule replaces the first */
    assert_int_equal(call(f, "t.sched", "{\"seconds\": 10, \"n\": \"a\", \"key\": \"k\"}", NULL), CRM_OK);
    assert_int_equal(call(f, "t.sched", "{\"seconds\": 20, \"n\": \"b\", \"key\": \"k\"}", NULL), CRM_OK);
    f->now += 30000;
    pump(f);
    assert_int_equal(f->timer_calls, 2);
    assert_string_equal(f->last_timer_payload, "b");

    /* cancel */
    assert_int_equal(call(f, "t.sched", "{\"seconds\": 5, \"n\": \"c\", \"key\": \"z\"}", NULL), CRM_OK);
    assert_int_equal(call(f, "t.sched", "{\"cancel\": \"z\"}", NULL), CRM_OK);
    assert_int_equal(call(f, "t.sched", "{\"cancel\": \"z\"}", NULL), CRM_NOT_FOUND);
    f->now += 10000;
    pump(f);
    assert_int_equal(f->timer_calls, 2);

    /* due while "down": fires after the reopen */
    assert_int_equal(call(f, "t.sched", "{\"seconds\": 5, \"n\": \"late\"}", NULL), CRM_OK);
    close_all(f);
    f->now += 3600000;
    open_all(f);
    assert_int_equal(f->api->on_timer(f->p, "ping", on_ping, f), CRM_OK);
    assert_int_equal(crm_bus_next_work_ms(f->bus), 0);
    pump(f);
    assert_int_equal(f->timer_calls, 3);
    assert_string_equal(f->last_timer_payload, "late");

    /* unknown method */
    assert_int_equal(call(f, "t.nope", "{}", NULL), CRM_NOT_FOUND);
}

static int failing_timer(crm_ctx *c, const char *name, const crm_value *payload, void *ud)
{
    fixture *f = ud;
    f->timer_calls++;
    (void)name;
    (void)payload;
    return f->api->error(c, CRM_CONFLICT, "always busy");
}

static int m_sched_fail(crm_ctx *c, const crm_value *params, crm_value **result, void *ud)
{
    fixture *f = ud;
    (void)params;
    (void)result;
    return f->api->schedule(c, 0, "bad", NULL, NULL);
}

static void test_failing_timer_dead_lettered(void **state)
{
    fixture *f = *state;
    crm_value *dl;
    assert_int_equal(f->api->on_timer(f->p, "bad", failing_timer, f), CRM_OK);
    assert_int_equal(f->api->method(f->p, "t.bad", m_sched_fail, f), CRM_OK);
    assert_int_equal(call(f, "t.bad", "{}", NULL), CRM_OK);
    for (int i = 0; i < 10 && count(f, "dead_letters") == 0; i++) {
        pump(f);
        f->now += 1000;
    }
    assert_int_equal(f->timer_calls, 3);
    dl = first_dead_letter(f);
    assert_non_null(dl);
    assert_string_equal(crm_map_str(dl, "kind", ""), "timer");
    assert_string_equal(crm_map_str(dl, "handler", ""), "bad");
    assert_non_null(strstr(crm_map_str(dl, "error", ""), "always busy"));
    crm_value_free(dl);
    f->now += 100000;
    pump(f);
    assert_int_equal(f->timer_calls, 3);
    assert_int_equal(crm_bus_next_work_ms(f->bus), -1);
}

static void test_api_table_checks_its_inputs(void **state)
{
    fixture *f = *state;
    const crm_api *a = f->api;
    crm_value *v = NULL;
    assert_int_equal(a->abi, CRM_PLUGIN_ABI);
    assert_int_equal(a->size, sizeof(crm_api));
    assert_null(a->value_num(0.0 / 0.0));
    assert_null(a->value_str("\xff\xfe", 2));
    assert_int_equal(a->map_set(NULL, "k", a->value_int(1)), -1); /* and no leak */
    assert_int_equal(a->get(NULL, "contacts", "c_1", &v), CRM_BAD_REQUEST);
    assert_null(v);
    assert_int_equal(a->from_json("{\"a\": [1, 2.5, \"x\"]}", 20, &v, NULL), CRM_OK);
    {
        char *s = a->to_json(v, NULL);
        assert_string_equal(s, "{\"a\":[1,2.5,\"x\"]}");
        a->mem_free(s);
    }
    a->value_free(v);
    assert_int_equal(a->from_json("{bad", 4, &v, NULL), CRM_BAD_REQUEST);
    assert_null(a->config(f->p, "x"));
    assert_string_equal(a->plugin_name(f->p), "t");
    assert_true(a->now(NULL) == f->now);
    /* names clash between different owners, not with a reload of the same one */
    {
        crm_plugin *other = crm_bus_owner_new(f->bus, "plugin", "other", NULL);
        crm_plugin *again = crm_bus_owner_new(f->bus, "plugin", "t", NULL);
        assert_int_equal(a->method(f->p, "m.x", m_sched, f), CRM_OK);
        assert_int_equal(a->method(other, "m.x", m_sched, f), CRM_CONFLICT);
        assert_int_equal(a->method(again, "m.x", m_sched, f), CRM_OK);
        assert_int_equal(a->method(f->p, "m.x", m_sched, f), CRM_CONFLICT);
        crm_bus_owner_free(other);
        crm_bus_owner_free(again);
        assert_true(crm_bus_has_method(f->bus, "m.x"));
    }
}

/* ---- write_origin ---- */

static const crm_plugin *seen_origin[4];
static int nseen;

static int before_company(crm_ctx *c, crm_event *ev, void *ud)
{
    fixture *f = ud;
    (void)ev;
    if (nseen < 4)
        seen_origin[nseen++] = f->api->write_origin(c);
    return CRM_OK;
}

static void test_write_origin_tells_clients_from_plugins(void **state)
{
    fixture *f = *state;
    crm_plugin *guard = crm_bus_owner_new(f->bus, "plugin", "guard", NULL);
    nseen = 0;
    assert_int_equal(f->api->on(guard, "companies.create", CRM_BEFORE, NULL, before_company, f), CRM_OK);
    assert_int_equal(f->api->on(f->p, "contacts.create", CRM_AFTER, NULL, after_contact, f), CRM_OK);
    /* a client's write: no origin */
    assert_int_equal(write1(f, CRM_OP_CREATE, "companies", NULL, "{\"name\": \"c\"}", NULL), CRM_OK);
    /* plugin t's after-hook writes a company: its origin is t */
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", "c_o", "{\"name\": \"o\"}", NULL), CRM_OK);
    pump(f);
    assert_int_equal(nseen, 2);
    assert_null(seen_origin[0]);
    assert_ptr_equal(seen_origin[1], f->p);
    assert_string_equal(f->api->plugin_name((crm_plugin *)seen_origin[1]), "t");
    assert_null(f->api->write_origin(NULL));
    crm_bus_owner_free(guard);
}

/* ---- "*" events and where-filters (webhooks, issue 7) ---- */

static char every_seen[8][32];
static int nevery;

static int after_every(crm_ctx *c, crm_event *ev, void *ud)
{
    (void)c;
    (void)ud;
    if (nevery < 8)
        snprintf(every_seen[nevery++], sizeof every_seen[0], "%s.%s", ev->collection, ev->op);
    return CRM_OK;
}

static void test_star_collection_and_where_filters(void **state)
{
    fixture *f = *state;
    const crm_api *a = f->api;
    crm_where *w = NULL;
    crm_value *where = NULL, *rec = NULL;
    crm_err e;
    nevery = 0;
    /* one after-hook on every collection, one on every delete */
    assert_int_equal(a->on(f->p, "*.*", CRM_AFTER, "every", after_every, f), CRM_OK);
    assert_int_equal(a->on(f->p, "*.bogus", CRM_AFTER, NULL, after_every, f), CRM_BAD_REQUEST);
    assert_int_equal(write1(f, CRM_OP_CREATE, "contacts", "c_1", "{\"name\": \"a\"}", NULL), CRM_OK);
    assert_int_equal(write1(f, CRM_OP_CREATE, "companies", "co_1", "{\"name\": \"b\"}", NULL), CRM_OK);
    assert_int_equal(write1(f, CRM_OP_DELETE, "contacts", "c_1", NULL, NULL), CRM_OK);
    pump(f);
    assert_int_equal(nevery, 3);
    assert_string_equal(every_seen[0], "contacts.create");
    assert_string_equal(every_seen[1], "companies.create");
    assert_string_equal(every_seen[2], "contacts.delete");

    /* where: compiled against the collection, matched like a query */
    assert_int_equal(a->from_json("{\"tag\": {\"in\": [\"x\", \"y\"]}, \"name\": {\"prefix\": \"An\"}}", 53,
                                  &where, NULL), CRM_OK);
    assert_int_equal(a->where_compile(f->p, "contacts", where, &w, &e), CRM_OK);
    a->value_free(where); /* w keeps a copy */
    assert_int_equal(a->from_json("{\"name\": \"Ann\", \"tag\": \"y\"}", 27, &rec, NULL), CRM_OK);
    assert_int_equal(a->where_match(w, rec), 1);
    a->map_set(rec, "tag", a->value_str("z", 1));
    assert_int_equal(a->where_match(w, rec), 0);
    assert_int_equal(a->where_match(w, NULL), 0);
    a->value_free(rec);
    a->where_free(w);
    a->where_free(NULL);
    /* refusals, with the query op's messages */
    assert_int_equal(a->from_json("{\"nope\": 1}", 11, &where, NULL), CRM_OK);
    assert_int_equal(a->where_compile(f->p, "contacts", where, &w, &e), CRM_BAD_REQUEST);
    assert_null(w);
    assert_string_equal(e.msg, "where: contacts has no field \"nope\"");
    assert_int_equal(a->where_compile(f->p, "nowhere", where, &w, &e), CRM_BAD_REQUEST);
    assert_string_equal(e.msg, "no collection \"nowhere\"");
    a->value_free(where);
    /* NULL matches everything */
    assert_int_equal(a->where_compile(f->p, "companies", NULL, &w, NULL), CRM_OK);
    assert_int_equal(a->from_json("{\"name\": \"b\"}", 13, &rec, NULL), CRM_OK);
    assert_int_equal(a->where_match(w, rec), 1);
    a->value_free(rec);
    a->where_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_before_hook_changes_and_rejects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_after_hook_exactly_once_and_durable_cursor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_budget_binds_only_while_clients_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_poison_event_dead_lettered_feed_goes_on, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hook_chain_cut_at_depth_16, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timers_fire_once_replace_cancel_and_survive_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failing_timer_dead_lettered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_table_checks_its_inputs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_origin_tells_clients_from_plugins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_star_collection_and_where_filters, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
