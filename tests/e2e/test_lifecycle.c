/*
 * test_lifecycle -- scripts/lifecycle.lua in a real crmd over WebSocket:
 * orders move a contact prospect -> new_customer -> repeat -> loyal (by
 * count, and by spending), cancelled/refunded orders do not count and a
 * withdrawn order moves the stage back; every transition is a
 * lifecycle_transitions record pushed to a subscriber, with life_phase from
 * the phase table; under a fast clock (--time-scale) with the script's
 * inactivity periods edited to 1 day each, an idle customer goes at_risk and
 * then churned while one kept active by interactions does not, and a new
 * order brings the churned one back; the durable inactivity timer fires
 * across a server restart.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "codec.h"
#include "tmpdir.h"
#include "testutil.h"
#include "wsclient.h"

typedef struct fixture {
    crmd_proc p;
    char *scripts, *data, *token;
    double scale;
    char args[1024];
} fixture;

/* A copy of scripts/lifecycle.lua alone (other features' scripts are not
 * loaded); fast != 0: inactivity periods edited to 1 day each. */
static void start(fixture *f, double scale, int fast)
{
    char *src = crm_test_script_text("lifecycle.lua");
    if (fast) {
        crm_test_replace_once(&src, "at_risk_after_days = 90,", "at_risk_after_days = 1,");
        crm_test_replace_once(&src, "churned_after_days = 90,", "churned_after_days = 1,");
    }
    f->scripts = crm_tmpdir_make("lifecycle-scripts");
    crm_tmpdir_write(f->scripts, "lifecycle.lua", src);
    free(src);
    f->data = crm_tmpdir_make("lifecycle-data");
    f->scale = scale;
    snprintf(f->args, sizeof f->args, "--scripts %s --time-scale %g", f->scripts, scale);
    assert_int_equal(crmd_start_with(&f->p, f->data, "%s", f->args), 0);
    assert_non_null(f->token = crmd_token(&f->p, "admin"));
}

/* Stops the server but keeps its data folder. */
static void stop_keep(fixture *f)
{
    assert_int_equal(crmd_stop_keep(&f->p), 0);
}

static void restart(fixture *f)
{
    assert_int_equal(crmd_start_with(&f->p, f->data, "%s", f->args), 0);
}

static int teardown(void **state)
{
    fixture *f = *state;
    assert_int_equal(crmd_stop(&f->p), 0); /* removes the data folder */
    crm_tmpdir_remove(f->scripts);
    free(f->data);
    free(f->token);
    free(f);
    return 0;
}

static int setup_plain(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    start(f, 1, 0);
    *state = f;
    return 0;
}

static int setup_fast(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    start(f, 21600, 1); /* 6 hours a second: 1 day = 4 s */
    *state = f;
    return 0;
}

static void connect_authed(fixture *f, ws_client *c)
{
    assert_int_equal(ws_connect(c, f->p.port, "crm.v1.json", NULL, NULL), 0);
    assert_int_equal(ws_auth(c, f->token, 5000), 0);
}


static crm_value *req_pushes(ws_client *c, crm_value *pushes, const char *fmt, ...)
{
    va_list ap;
    crm_value *r;
    va_start(ap, fmt);
    r = ws_vrequest(c, 10000, pushes, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    return r;
}
#define req(c, ...) req_pushes(c, NULL, __VA_ARGS__)

static crm_value *result_of(crm_value *r)
{
    if (strcmp(ws_code(r), "OK") != 0) {
        char *j = crm_json_encode(r, NULL);
        fail_msg("request failed: %s", j);
    }
    return crm_map_get(r, "result");
}

/* Creates a contact; returns its id (malloc'd) and its _created in *created. */
static char *new_contact(ws_client *c, const char *name, int64_t *created)
{
    crm_value *r = req(c, "{\"op\": \"create\", \"collection\": \"contacts\", \"record\": {\"name\": \"%s\"}}", name);
    crm_value *rec = result_of(r);
    char *id = strdup(crm_map_str(rec, "id", ""));
    assert_string_equal(crm_map_str(rec, "lifecycle_stage", ""), "prospect");
    assert_string_equal(crm_map_str(rec, "life_phase", ""), "acquisition");
    assert_true(crm_map_int(rec, "stage_changed_at", 0) > 0);
    if (created)
        *created = crm_map_int(rec, "_created", 0);
    crm_value_free(r);
    return id;
}

static char *order(ws_client *c, const char *contact, int64_t amount, const char *status,
                   int64_t at)
{
    crm_value *r = req(c, "{\"op\": \"create\", \"collection\": \"orders\", \"record\": {\"contact\": \"%s\","
                          " \"amount\": %lld, \"currency\": \"EUR\", \"status\": \"%s\", \"ordered_at\": %lld}}",
                       contact, (long long)amount, status, (long long)at);
    char *id = strdup(crm_map_str(result_of(r), "id", ""));
    crm_value_free(r);
    return id;
}

static void interaction(ws_client *c, const char *contact, int64_t at)
{
    crm_value *r = req(c, "{\"op\": \"create\", \"collection\": \"interactions\", \"record\": {\"contact\": \"%s\","
                          " \"kind\": \"call\", \"at\": %lld}}",
                       contact, (long long)at);
    result_of(r);
    crm_value_free(r);
}

/* An interaction with its owner, direction and outcome (NULL: left out). */
static void interaction_by(ws_client *c, const char *contact, int64_t at, const char *owner,
                           const char *direction, const char *outcome)
{
    char extra[256] = "";
    size_t n = 0;
    crm_value *r;
    if (owner)
        n += (size_t)snprintf(extra + n, sizeof extra - n, ", \"owner\": \"%s\"", owner);
    if (direction)
        n += (size_t)snprintf(extra + n, sizeof extra - n, ", \"direction\": \"%s\"", direction);
    if (outcome)
        snprintf(extra + n, sizeof extra - n, ", \"outcome\": \"%s\"", outcome);
    r = req(c, "{\"op\": \"create\", \"collection\": \"interactions\", \"record\": {\"contact\": \"%s\","
               " \"kind\": \"email\", \"at\": %lld%s}}",
            contact, (long long)at, extra);
    result_of(r);
    crm_value_free(r);
}

static crm_value *get_contact(ws_client *c, const char *id)
{
    return req(c, "{\"op\": \"get\", \"collection\": \"contacts\", \"id\": \"%s\"}", id);
}

/* Polls the contact until field has the string value (or int when s is
 * NULL) within secs; returns the contact reply (caller frees). */
static crm_value *wait_field(ws_client *c, const char *id, const char *field, const char *s,
                             int64_t i, double secs)
{
    double t0 = crm_test_now_s();
    for (;;) {
        crm_value *r = get_contact(c, id);
        const crm_value *rec = result_of(r);
        int ok = s ? strcmp(crm_map_str(rec, field, ""), s) == 0 : crm_map_int(rec, field, -1) == i;
        if (ok)
            return r;
        if (crm_test_now_s() - t0 > secs) {
            char *j = crm_json_encode(rec, NULL);
            fail_msg("contact %s: %s did not become %s within %.1f s: %s", id, field, s ? s : "(int)",
                     secs, j);
        }
        crm_value_free(r);
        usleep(20000);
    }
}
#define wait_stage(c, id, stage, secs) wait_field(c, id, "lifecycle_stage", stage, 0, secs)

static void check_contact(crm_value *r, const char *stage, const char *phase, int64_t count,
                          int64_t spent)
{
    const crm_value *rec = result_of(r);
    assert_string_equal(crm_map_str(rec, "lifecycle_stage", ""), stage);
    assert_string_equal(crm_map_str(rec, "life_phase", ""), phase);
    assert_int_equal(crm_map_int(rec, "order_count", -1), count);
    assert_int_equal(crm_map_int(rec, "total_spent", -1), spent);
    crm_value_free(r);
}

/* The contact's transitions, oldest first, as "from>to:reason;" text. */
static void transitions(ws_client *c, const char *contact, char *out, size_t cap)
{
    crm_value *r = req(c, "{\"op\": \"query\", \"collection\": \"lifecycle_transitions\", \"where\": {\"contact\": \"%s\"},"
                          " \"order_by\": \"at\", \"limit\": 100}", contact);
    const crm_value *recs = crm_map_get(result_of(r), "records");
    out[0] = 0;
    for (size_t i = 0; i < recs->u.arr.n; i++) {
        const crm_value *t = recs->u.arr.items[i];
        size_t n = strlen(out);
        snprintf(out + n, cap - n, "%s>%s:%s;", crm_map_str(t, "from", "-"), crm_map_str(t, "to", "?"),
                 crm_map_str(t, "reason", "?"));
        assert_true(crm_map_int(t, "at", 0) > 0);
    }
    crm_value_free(r);
}

static void test_stages_from_orders(void **state)
{
    fixture *f = *state;
    ws_client c, sub;
    char buf[1024];
    int64_t t0;
    crm_value *r, *pushes = crm_value_arr();
    connect_authed(f, &c);
    connect_authed(f, &sub);

    /* a subscriber to transitions */
    r = req(&sub, "{\"op\": \"subscribe\", \"collection\": \"lifecycle_transitions\"}");
    result_of(r);
    crm_value_free(r);

    char *ann = new_contact(&c, "Ann", &t0);
    char *o1 = order(&c, ann, 3000, "paid", t0);
    check_contact(wait_stage(&c, ann, "new_customer", 5), "new_customer", "growth", 1, 3000);
    r = get_contact(&c, ann);
    assert_int_equal(crm_map_int(result_of(r), "first_order_at", 0), t0);
    assert_int_equal(crm_map_int(result_of(r), "last_order_at", 0), t0);
    crm_value_free(r);

    free(order(&c, ann, 2000, "pending", t0 + 1000));
    check_contact(wait_stage(&c, ann, "repeat", 5), "repeat", "growth", 2, 5000);

    /* cancelled and refunded orders do not count; a later counted one does */
    free(order(&c, ann, 99999, "cancelled", t0 + 2000));
    free(order(&c, ann, 99999, "refunded", t0 + 2500));
    char *o3 = order(&c, ann, 1000, "shipped", t0 + 3000);
    check_contact(wait_field(&c, ann, "order_count", NULL, 3, 5), "repeat", "growth", 3, 6000);
    r = get_contact(&c, ann);
    assert_int_equal(crm_map_int(result_of(r), "last_order_at", 0), t0 + 3000);
    crm_value_free(r);

    /* an order refunded later is withdrawn; last_order_at goes back */
    r = req(&c, "{\"op\": \"update\", \"collection\": \"orders\", \"id\": \"%s\", \"patch\": {\"status\": \"refunded\"}}", o3);
    result_of(r);
    crm_value_free(r);
    check_contact(wait_field(&c, ann, "order_count", NULL, 2, 5), "repeat", "growth", 2, 5000);
    r = get_contact(&c, ann);
    assert_int_equal(crm_map_int(result_of(r), "last_order_at", 0), t0 + 1000);
    crm_value_free(r);
    /* a status change between counted statuses changes nothing; an amount change does */
    r = req(&c, "{\"op\": \"update\", \"collection\": \"orders\", \"id\": \"%s\", \"patch\": {\"status\": \"completed\", \"amount\": 3500}}", o1);
    result_of(r);
    crm_value_free(r);
    check_contact(wait_field(&c, ann, "total_spent", NULL, 5500, 5), "repeat", "growth", 2, 5500);

    /* 5 orders: loyal */
    free(order(&c, ann, 100, "paid", t0 + 4000));
    free(order(&c, ann, 100, "paid", t0 + 5000));
    check_contact(wait_field(&c, ann, "order_count", NULL, 4, 5), "repeat", "growth", 4, 5700);
    free(order(&c, ann, 100, "paid", t0 + 6000));
    check_contact(wait_stage(&c, ann, "loyal", 5), "loyal", "maturity", 5, 5800);
    transitions(&c, ann, buf, sizeof buf);
    assert_string_equal(buf, "prospect>new_customer:first_order;new_customer>repeat:repeat_order;"
                             "repeat>loyal:loyalty_threshold;");

    /* loyal by spending: two orders worth 1,000.00 in total */
    char *bob = new_contact(&c, "Bob", NULL);
    free(order(&c, bob, 60000, "paid", t0));
    check_contact(wait_stage(&c, bob, "new_customer", 5), "new_customer", "growth", 1, 60000);
    free(order(&c, bob, 40000, "paid", t0 + 1));
    check_contact(wait_stage(&c, bob, "loyal", 5), "loyal", "maturity", 2, 100000);

    /* the only order deleted: back to prospect, dates removed */
    char *cid = new_contact(&c, "Carl", NULL);
    char *co = order(&c, cid, 500, "paid", t0);
    check_contact(wait_stage(&c, cid, "new_customer", 5), "new_customer", "growth", 1, 500);
    r = req(&c, "{\"op\": \"delete\", \"collection\": \"orders\", \"id\": \"%s\"}", co);
    result_of(r);
    crm_value_free(r);
    check_contact(wait_stage(&c, cid, "prospect", 5), "prospect", "acquisition", 0, 0);
    r = get_contact(&c, cid);
    assert_null(crm_map_get(result_of(r), "first_order_at"));
    assert_null(crm_map_get(result_of(r), "last_order_at"));
    crm_value_free(r);
    transitions(&c, cid, buf, sizeof buf);
    assert_string_equal(buf, "prospect>new_customer:first_order;new_customer>prospect:order_withdrawn;");

    /* a manual stage change is recorded too, with its phase */
    r = req(&c, "{\"op\": \"update\", \"collection\": \"contacts\", \"id\": \"%s\", \"patch\": {\"lifecycle_stage\": \"churned\", \"life_phase\": \"growth\"}}", cid);
    assert_string_equal(crm_map_str(result_of(r), "life_phase", ""), "termination");
    crm_value_free(r);
    transitions(&c, cid, buf, sizeof buf);
    assert_string_equal(buf, "prospect>new_customer:first_order;new_customer>prospect:order_withdrawn;"
                             "prospect>churned:manual;");

    /* the subscriber saw every transition: Ann 3, Bob 2, Carl 3 */
    {
        double w0 = crm_test_now_s();
        size_t n = 0;
        while (crm_test_now_s() - w0 < 5) {
            n = 0;
            for (size_t i = 0; i < pushes->u.arr.n; i++)
                if (strcmp(crm_map_str(pushes->u.arr.items[i], "collection", ""), "lifecycle_transitions") == 0)
                    n++;
            if (n >= 8)
                break;
            crm_value *p = ws_recv(&sub, 200, NULL);
            if (p && crm_arr_push(pushes, p) != 0)
                crm_value_free(p);
        }
        assert_int_equal(n, 8);
        const crm_value *first = crm_map_get(pushes->u.arr.items[0], "record");
        assert_string_equal(crm_map_str(first, "contact", ""), ann);
        assert_string_equal(crm_map_str(first, "to", ""), "new_customer");
        assert_string_equal(crm_map_str(first, "to_phase", ""), "growth");
        assert_int_equal(strncmp(crm_map_str(first, "source", ""), "orders/o_", 9), 0);
    }
    crm_value_free(pushes);
    free(ann);
    free(o1);
    free(o3);
    free(bob);
    free(cid);
    free(co);
    ws_close(&c);
    ws_close(&sub);
}

/* The server clock, estimated from a record's _created seen at real time t_real. */
typedef struct sclock {
    int64_t server_ms;
    double real_s, scale;
} sclock;

static int64_t server_now(const sclock *k)
{
    return k->server_ms + (int64_t)((crm_test_now_s() - k->real_s) * k->scale * 1000.0);
}

static void test_inactivity_at_risk_churned_and_back(void **state)
{
    fixture *f = *state;
    ws_client c;
    char buf[1024];
    sclock k;
    int64_t created;
    double t_order, t_risk, t_churn;
    crm_value *r;
    connect_authed(f, &c);

    char *dora = new_contact(&c, "Dora", &created);
    k.server_ms = created;
    k.real_s = crm_test_now_s();
    k.scale = f->scale;
    char *eve = new_contact(&c, "Eve", NULL);
    char *pete = new_contact(&c, "Pete", NULL); /* a prospect: never lapses */
    interaction(&c, pete, server_now(&k));
    free(order(&c, dora, 1000, "paid", server_now(&k)));
    free(order(&c, eve, 1000, "paid", server_now(&k)));
    t_order = crm_test_now_s();
    crm_value_free(wait_stage(&c, dora, "new_customer", 3));
    crm_value_free(wait_stage(&c, eve, "new_customer", 3));

    /* Eve is kept active by a call every 1.5 s (9 server hours); Dora is idle */
    {
        double last_call = crm_test_now_s();
        for (;;) {
            r = get_contact(&c, dora);
            int risk = strcmp(crm_map_str(result_of(r), "lifecycle_stage", ""), "at_risk") == 0;
            crm_value_free(r);
            if (risk)
                break;
            assert_true(crm_test_now_s() - t_order < 15);
            if (crm_test_now_s() - last_call > 1.5) {
                interaction(&c, eve, server_now(&k));
                last_call = crm_test_now_s();
            }
            usleep(20000);
        }
        t_risk = crm_test_now_s() - t_order;
        r = get_contact(&c, dora);
        assert_string_equal(crm_map_str(result_of(r), "life_phase", ""), "decline");
        crm_value_free(r);
        for (;;) {
            r = get_contact(&c, dora);
            int churned = strcmp(crm_map_str(result_of(r), "lifecycle_stage", ""), "churned") == 0;
            crm_value_free(r);
            if (churned)
                break;
            assert_true(crm_test_now_s() - t_order < 25);
            if (crm_test_now_s() - last_call > 1.5) {
                interaction(&c, eve, server_now(&k));
                last_call = crm_test_now_s();
            }
            usleep(20000);
        }
        t_churn = crm_test_now_s() - t_order;
    }
    print_message("at_risk after %.2f s, churned after %.2f s (1 server day = %.2f s)\n", t_risk,
                  t_churn, 86400 / f->scale);
    /* 1 day and 2 days of a 6-hours-a-second clock: 4 s and 8 s */
    assert_true(t_risk > 3 && t_risk < 8);
    assert_true(t_churn > 7 && t_churn < 14);
    r = get_contact(&c, dora);
    assert_string_equal(crm_map_str(result_of(r), "life_phase", ""), "termination");
    crm_value_free(r);
    check_contact(get_contact(&c, eve), "new_customer", "growth", 1, 1000);
    check_contact(get_contact(&c, pete), "prospect", "acquisition", 0, 0);

    /* a new order brings Dora back: two orders, so repeat */
    free(order(&c, dora, 2000, "paid", server_now(&k)));
    check_contact(wait_stage(&c, dora, "repeat", 3), "repeat", "growth", 2, 3000);
    transitions(&c, dora, buf, sizeof buf);
    assert_string_equal(buf, "prospect>new_customer:first_order;new_customer>at_risk:inactivity;"
                             "at_risk>churned:inactivity;churned>repeat:reactivated;");
    transitions(&c, eve, buf, sizeof buf);
    assert_string_equal(buf, "prospect>new_customer:first_order;");
    transitions(&c, pete, buf, sizeof buf);
    assert_string_equal(buf, "");

    /* an interaction brings an at_risk customer back too */
    for (;;) {
        r = get_contact(&c, eve);
        int risk = strcmp(crm_map_str(result_of(r), "lifecycle_stage", ""), "at_risk") == 0;
        crm_value_free(r);
        if (risk)
            break;
        assert_true(crm_test_now_s() - t_order < 40);
        usleep(20000);
    }
    interaction(&c, eve, server_now(&k));
    check_contact(wait_stage(&c, eve, "new_customer", 3), "new_customer", "growth", 1, 1000);
    transitions(&c, eve, buf, sizeof buf);
    assert_string_equal(buf, "prospect>new_customer:first_order;new_customer>at_risk:inactivity;"
                             "at_risk>new_customer:reactivated;");
    free(dora);
    free(eve);
    free(pete);
    ws_close(&c);
}

static void test_inactivity_timer_survives_restart(void **state)
{
    fixture *f = *state;
    ws_client c;
    char buf[1024];
    int64_t created;
    double t0;
    crm_value *r;
    connect_authed(f, &c);
    char *finn = new_contact(&c, "Finn", &created);
    free(order(&c, finn, 700, "paid", created));
    crm_value_free(wait_stage(&c, finn, "new_customer", 3));
    ws_close(&c);

    /* down before the at_risk timer (4 s) is due */
    stop_keep(f);
    sleep(1);
    restart(f);
    t0 = crm_test_now_s();
    connect_authed(f, &c);
    r = get_contact(&c, finn);
    assert_string_equal(crm_map_str(result_of(r), "lifecycle_stage", ""), "new_customer");
    crm_value_free(r);
    crm_value_free(wait_stage(&c, finn, "at_risk", 10));
    print_message("at_risk %.2f s after the restart\n", crm_test_now_s() - t0);
    ws_close(&c);

    /* down again while at_risk: the churn timer fires after the next restart */
    stop_keep(f);
    restart(f);
    t0 = crm_test_now_s();
    connect_authed(f, &c);
    r = get_contact(&c, finn);
    assert_string_equal(crm_map_str(result_of(r), "lifecycle_stage", ""), "at_risk");
    crm_value_free(r);
    crm_value_free(wait_stage(&c, finn, "churned", 10));
    print_message("churned %.2f s after the second restart\n", crm_test_now_s() - t0);
    transitions(&c, finn, buf, sizeof buf);
    assert_string_equal(buf, "prospect>new_customer:first_order;new_customer>at_risk:inactivity;"
                             "at_risk>churned:inactivity;");
    free(finn);
    ws_close(&c);
}


/* Only interactions with the customer count as activity: not one by a
 * system owner, not an outbound one nobody answered; and a stage set by
 * hand that the first order corrects downwards is "recomputed", not
 * "order_withdrawn". */
static void test_activity_is_with_the_customer(void **state)
{
    fixture *f = *state;
    ws_client c;
    char buf[1024];
    int64_t t0;
    char *ann = NULL, *bo, *marker;
    crm_value *r;
    connect_authed(f, &c);
    bo = new_contact(&c, "Bo", &t0);
    marker = new_contact(&c, "Marker", NULL);
    free(order(&c, bo, 100, "paid", t0));
    crm_value_free(wait_stage(&c, bo, "new_customer", 5));
    /* system-made and unanswered: Bo's last_interaction_at stays unset */
    interaction_by(&c, bo, t0 + 1000, "system", NULL, NULL);
    interaction_by(&c, bo, t0 + 2000, "rep_1", "outbound", "no_response");
    interaction_by(&c, bo, t0 + 3000, "rep_1", "outbound", NULL);
    /* the after-hook takes the feed in order: once Marker's counts, Bo's ran */
    interaction_by(&c, marker, t0 + 4000, "rep_1", "inbound", NULL);
    crm_value_free(wait_field(&c, marker, "last_interaction_at", NULL, t0 + 4000, 5));
    r = get_contact(&c, bo);
    assert_null(crm_map_get(result_of(r), "last_interaction_at"));
    crm_value_free(r);
    /* answered outbound, and inbound, count */
    interaction_by(&c, bo, t0 + 5000, "rep_1", "outbound", "positive");
    crm_value_free(wait_field(&c, bo, "last_interaction_at", NULL, t0 + 5000, 5));
    interaction_by(&c, bo, t0 + 6000, NULL, "inbound", NULL);
    crm_value_free(wait_field(&c, bo, "last_interaction_at", NULL, t0 + 6000, 5));

    /* created as loyal by hand, then a first order: new_customer, recomputed */
    r = req(&c, "{\"op\": \"create\", \"collection\": \"contacts\", \"record\": {\"name\": \"Ann\","
                " \"lifecycle_stage\": \"loyal\"}}");
    ann = strdup(crm_map_str(result_of(r), "id", ""));
    crm_value_free(r);
    free(order(&c, ann, 100, "paid", t0));
    crm_value_free(wait_stage(&c, ann, "new_customer", 5));
    transitions(&c, ann, buf, sizeof buf);
    assert_non_null(strstr(buf, "loyal>new_customer:recomputed;"));
    assert_null(strstr(buf, "order_withdrawn"));
    ws_close(&c);
    free(ann);
    free(bo);
    free(marker);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stages_from_orders, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_activity_is_with_the_customer, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_inactivity_at_risk_churned_and_back, setup_fast, teardown),
        cmocka_unit_test_setup_teardown(test_inactivity_timer_survives_restart, setup_fast, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
