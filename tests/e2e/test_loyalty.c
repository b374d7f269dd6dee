/*
 * test_loyalty -- the loyalty plugin (plugins/loyalty) in a real crmd over
 * WebSocket, on the bundled schemas, each test with its own loyalty.json
 * (a copy of build/plugins/loyalty.so linked into a temp plugins folder):
 *  - earn: points per currency rate on the earn statuses, once per order
 *    (dedupe), none for a currency without a rate; a tier upgrade pushed to
 *    a subscriber of the account, the tier's multiplier on the next earn,
 *    benefits in loyalty.balance; redemption refused when short, taking the
 *    oldest points first; a cancelled order takes its points back (adjust)
 *    and the tier downgrade is pushed; points_redeemed on an order is
 *    redeemed with it (REJECTED when short) and returned on cancel;
 *  - concurrent redemptions from many connections that together exceed the
 *    balance: exactly the ones that fit succeed;
 *  - expiry and a rolling tier window on a fast clock: what is left of each
 *    earn lapses as an expire line, a consumed earn leaves none, the tier
 *    falls when the window passes; a random mixed sequence over several
 *    contacts keeps sum(ledger) == points >= 0 for every account at every
 *    check, and ends with every point lapsed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "tmpdir.h"
#include "testutil.h"
#include "wsclient.h"

typedef struct fixture {
    crmd_proc p;
    char *plugins, *token;
} fixture;

/* A crmd with only the loyalty plugin, configured with config_json. */
static fixture *start(const char *config_json, const char *extra_args)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->plugins = crm_test_plugin_dir("loyalty-plugins", "loyalty", config_json);
    assert_int_equal(crmd_start_with(&f->p, NULL, "--plugins %s %s", f->plugins,
                                     extra_args ? extra_args : ""),
                     0);
    assert_non_null(f->token = crmd_token(&f->p, "admin"));
    return f;
}

static void stop(fixture *f)
{
    assert_int_equal(crmd_stop(&f->p), 0);
    crm_tmpdir_remove(f->plugins);
    free(f->token);
    free(f);
}

static void connect_authed(fixture *f, ws_client *c)
{
    assert_int_equal(ws_connect(c, f->p.port, "crm.v1.json", NULL, NULL), 0);
    assert_int_equal(ws_auth(c, f->token, 5000), 0);
}

static long long next_ref = 100;

/* Sends a request (printf-style JSON without ref) and returns its reply. */
static crm_value *req(ws_client *c, const char *fmt, ...)
{
    va_list ap;
    crm_value *r;
    va_start(ap, fmt);
    r = ws_vrequest(c, 10000, NULL, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    return r;
}

static void ok(crm_value *r)
{
    if (strcmp(ws_code(r), "OK") != 0)
        fprintf(stderr, "unexpected error: %s %s\n", ws_code(r), ws_message(r));
    assert_string_equal(ws_code(r), "OK");
    crm_value_free(r);
}

static void contact(ws_client *c, const char *id)
{
    ok(req(c, "{\"op\": \"create\", \"collection\": \"contacts\", \"record\": {\"id\": \"%s\", \"name\": \"%s\"}}",
           id, id));
}

static void order(ws_client *c, const char *id, const char *who, long long amount,
                  const char *currency, const char *status)
{
    ok(req(c, "{\"op\": \"create\", \"collection\": \"orders\", \"record\": {\"id\": \"%s\","
              " \"contact\": \"%s\", \"amount\": %lld, \"currency\": \"%s\", \"status\": \"%s\","
              " \"ordered_at\": 1700000000000}}",
           id, who, amount, currency, status));
}

static void order_status(ws_client *c, const char *id, const char *status)
{
    ok(req(c, "{\"op\": \"update\", \"collection\": \"orders\", \"id\": \"%s\", \"patch\": {\"status\": \"%s\"}}",
           id, status));
}

/* loyalty.balance: the reply, caller's. */
static crm_value *balance(ws_client *c, const char *who)
{
    crm_value *r = req(c, "{\"op\": \"call\", \"method\": \"loyalty.balance\", \"params\": {\"contact\": \"%s\"}}", who);
    assert_string_equal(ws_code(r), "OK");
    return r;
}

static int64_t points_of(ws_client *c, const char *who)
{
    crm_value *r = balance(c, who);
    int64_t n = crm_map_int(crm_map_get(r, "result"), "points", -1);
    crm_value_free(r);
    return n;
}

/* Polls until the contact's balance is want (after-hooks are asynchronous). */
static void wait_points(ws_client *c, const char *who, int64_t want, double secs)
{
    double t0 = crm_test_now_s();
    int64_t n;
    while ((n = points_of(c, who)) != want && crm_test_now_s() - t0 < secs)
        usleep(20000);
    if (n != want)
        fprintf(stderr, "%s: points %lld, want %lld\n", who, (long long)n, (long long)want);
    assert_int_equal(n, want);
}

static crm_value *redeem(ws_client *c, const char *who, long long pts, const char *extra)
{
    return req(c, "{\"op\": \"call\", \"method\": \"loyalty.redeem\", \"params\": {\"contact\": \"%s\","
                  " \"points\": %lld, \"reason\": \"test\"%s}}",
               who, pts, extra ? extra : "");
}

typedef struct ledger_stats {
    int64_t sum, lines, min_balance_after, by_kind[4], count_kind[4];
} ledger_stats;

static int kind_ix(const char *k)
{
    return strcmp(k, "earn") == 0 ? 0 : strcmp(k, "redeem") == 0 ? 1 : strcmp(k, "expire") == 0 ? 2 : 3;
}

/* Every ledger line of the account, read page by page, summed here. */
static ledger_stats ledger(ws_client *c, const char *account, const char *extra_where)
{
    ledger_stats s;
    char after[256] = "";
    memset(&s, 0, sizeof s);
    s.min_balance_after = INT64_MAX;
    for (;;) {
        char afterarg[300] = "";
        crm_value *r;
        const crm_value *recs, *next;
        if (*after)
            snprintf(afterarg, sizeof afterarg, ", \"after\": \"%s\"", after);
        r = req(c, "{\"op\": \"query\", \"collection\": \"loyalty_ledger\", \"where\": {\"account\": \"%s\"%s},"
                   " \"limit\": 1000%s}",
                account, extra_where ? extra_where : "", afterarg);
        assert_string_equal(ws_code(r), "OK");
        recs = crm_map_get(crm_map_get(r, "result"), "records");
        for (size_t i = 0; i < recs->u.arr.n; i++) {
            const crm_value *l = recs->u.arr.items[i];
            int64_t pts = crm_map_int(l, "points", 0), ba = crm_map_int(l, "balance_after", -1);
            int k = kind_ix(crm_map_str(l, "kind", "?"));
            s.sum += pts;
            s.lines++;
            s.by_kind[k] += pts;
            s.count_kind[k]++;
            if (ba < s.min_balance_after)
                s.min_balance_after = ba;
            if (k == 0)
                assert_true(pts > 0);
            if (k == 1 || k == 2)
                assert_true(pts < 0);
        }
        next = crm_map_get(crm_map_get(r, "result"), "next");
        if (!next || next->type != CRM_T_STR) {
            crm_value_free(r);
            break;
        }
        snprintf(after, sizeof after, "%s", next->u.str.s);
        crm_value_free(r);
    }
    return s;
}

/* The account record (caller's), or NULL when there is none. */
static crm_value *account(ws_client *c, const char *who)
{
    crm_value *r = req(c, "{\"op\": \"get\", \"collection\": \"loyalty_accounts\", \"id\": \"la_%s\"}", who);
    crm_value *rec;
    if (strcmp(ws_code(r), "NOT_FOUND") == 0) {
        crm_value_free(r);
        return NULL;
    }
    assert_string_equal(ws_code(r), "OK");
    rec = crm_map_take(r, "result");
    crm_value_free(r);
    return rec;
}

/* The invariant on a consistent view: the account read before and after
 * the ledger with the same revision.  Returns the balance. */
static int64_t check_invariant(ws_client *c, const char *who)
{
    char id[128];
    snprintf(id, sizeof id, "la_%s", who);
    for (int attempt = 0; attempt < 50; attempt++) {
        crm_value *a = account(c, who), *b;
        ledger_stats s;
        int64_t rev, pts;
        if (!a) {
            s = ledger(c, id, NULL);
            assert_int_equal(s.lines, 0);
            return 0;
        }
        rev = crm_map_int(a, "_rev", -1);
        pts = crm_map_int(a, "points", -1);
        s = ledger(c, id, NULL);
        b = account(c, who);
        if (crm_map_int(b, "_rev", -2) == rev) {
            crm_value_free(a);
            crm_value_free(b);
            if (s.sum != pts)
                fprintf(stderr, "%s: ledger sums to %lld, account has %lld\n", who, (long long)s.sum,
                        (long long)pts);
            assert_int_equal(s.sum, pts);
            assert_true(pts >= 0);
            if (s.lines)
                assert_true(s.min_balance_after >= 0);
            return pts;
        }
        crm_value_free(a);
        crm_value_free(b);
    }
    fail_msg("the account of %s never held still", who);
    return -1;
}

/* Reads pushes on the subscriber until an account change with this tier
 * (within secs). */
static void wait_tier_push(ws_client *sub, const char *tier, double secs)
{
    double t0 = crm_test_now_s();
    while (crm_test_now_s() - t0 < secs) {
        crm_value *m = ws_recv(sub, 500, NULL);
        const crm_value *rec;
        if (!m)
            continue;
        rec = crm_map_get(m, "record");
        if (strcmp(crm_map_str(m, "event", ""), "change") == 0 && rec &&
            strcmp(crm_map_str(rec, "tier", ""), tier) == 0) {
            crm_value_free(m);
            return;
        }
        crm_value_free(m);
    }
    fail_msg("no push of tier %s within %.0f s", tier, secs);
}

static void subscribe_account(ws_client *sub, const char *who)
{
    ok(req(sub, "{\"op\": \"subscribe\", \"collection\": \"loyalty_accounts\", \"where\": {\"contact\": \"%s\"}}", who));
}

/* basic 0 (x1), silver 100 (x2), gold 1000 (x3); EUR 1 per 100, JPY 1 per 1. */
static const char CONFIG_EARN[] =
    "{\"rates\": {\"EUR\": {\"points\": 1, \"per\": 100}, \"JPY\": {\"points\": 1, \"per\": 1}},"
    " \"earn_on\": [\"paid\", \"completed\"], \"revoke_on\": [\"cancelled\", \"refunded\"],"
    " \"expiry_days\": 365, \"tier_basis\": \"lifetime\","
    " \"tiers\": [{\"name\": \"silver\", \"threshold\": 100, \"multiplier\": 2, \"benefits\": [\"free_shipping\"]},"
    "            {\"name\": \"basic\", \"threshold\": 0},"
    "            {\"name\": \"gold\", \"threshold\": 1000, \"multiplier\": 3, \"benefits\": [\"free_shipping\", \"lounge\"]}]}";

static void test_earn_tiers_redeem_cancel(void **state)
{
    fixture *f = start(CONFIG_EARN, NULL);
    ws_client c, sub;
    crm_value *r, *acc;
    const crm_value *res;
    ledger_stats s;
    (void)state;
    connect_authed(f, &c);
    connect_authed(f, &sub);
    contact(&c, "c_ann");
    subscribe_account(&sub, "c_ann");

    /* no account yet: zeros, the lowest tier */
    r = balance(&c, "c_ann");
    res = crm_map_get(r, "result");
    assert_int_equal(crm_map_int(res, "points", -1), 0);
    assert_string_equal(crm_map_str(res, "tier", ""), "basic");
    assert_int_equal(crm_map_get(res, "account")->type, CRM_T_NIL);
    crm_value_free(r);

    /* 50.99 EUR paid: floor(5099 / 100) = 50 points, basic x1 */
    order(&c, "o_a1", "c_ann", 5099, "EUR", "paid");
    wait_points(&c, "c_ann", 50, 10);
    /* pending earns nothing; paid earns 60 -> 110: silver, pushed */
    order(&c, "o_a2", "c_ann", 6000, "EUR", "pending");
    order_status(&c, "o_a2", "paid");
    wait_tier_push(&sub, "silver", 10);
    r = balance(&c, "c_ann");
    res = crm_map_get(r, "result");
    assert_int_equal(crm_map_int(res, "points", -1), 110);
    assert_int_equal(crm_map_int(res, "lifetime_points", -1), 110);
    assert_string_equal(crm_map_str(res, "tier", ""), "silver");
    assert_int_equal(crm_map_get(res, "benefits")->u.arr.n, 1);
    assert_string_equal(crm_map_get(res, "benefits")->u.arr.items[0]->u.str.s, "free_shipping");
    assert_string_equal(crm_map_str(crm_map_get(res, "next_tier"), "name", ""), "gold");
    assert_int_equal(crm_map_int(crm_map_get(res, "next_tier"), "points_needed", -1), 890);
    assert_int_equal(crm_map_int(crm_map_get(res, "next_expiry"), "points", -1), 50);
    crm_value_free(r);

    /* paid -> completed does not earn twice; a currency without a rate
     * earns nothing; then silver's x2 on 10.00 EUR: 20 (after-hooks run in
     * feed order, so once o_a4 earned, the others were seen) */
    order_status(&c, "o_a2", "completed");
    order(&c, "o_a3", "c_ann", 100000, "XXX", "paid");
    order(&c, "o_a4", "c_ann", 1000, "EUR", "paid");
    wait_points(&c, "c_ann", 130, 10);
    s = ledger(&c, "la_c_ann", ", \"dedupe_key\": \"earn:o_a2\"");
    assert_int_equal(s.lines, 1);
    assert_int_equal(s.sum, 60);
    s = ledger(&c, "la_c_ann", ", \"order\": \"o_a3\"");
    assert_int_equal(s.lines, 0);
    assert_int_equal(check_invariant(&c, "c_ann"), 130);

    /* redemption: refused when short, never below zero; takes the oldest */
    r = redeem(&c, "c_ann", 131, NULL);
    assert_string_equal(ws_code(r), "REJECTED");
    assert_non_null(strstr(ws_message(r), "insufficient points: balance 130, asked 131"));
    crm_value_free(r);
    r = redeem(&c, "c_ann", 0, NULL);
    assert_string_equal(ws_code(r), "BAD_REQUEST");
    crm_value_free(r);
    r = redeem(&c, "c_nobody", 5, NULL);
    assert_string_equal(ws_code(r), "REJECTED");
    crm_value_free(r);
    /* accounts and ledger are the plugin's alone: even admin cannot write
     * them directly (write_origin), so the invariant cannot be broken by hand */
    r = req(&c, "{\"op\": \"update\", \"collection\": \"loyalty_accounts\", \"id\": \"la_c_ann\","
                " \"patch\": {\"points\": 100000}}");
    assert_string_equal(ws_code(r), "REJECTED");
    assert_non_null(strstr(ws_message(r), "written by the loyalty plugin only"));
    crm_value_free(r);
    r = req(&c, "{\"op\": \"create\", \"collection\": \"loyalty_ledger\", \"record\":"
                " {\"account\": \"la_c_ann\", \"kind\": \"adjust\", \"points\": 5}}");
    assert_string_equal(ws_code(r), "REJECTED");
    crm_value_free(r);
    {   /* the bundled loyalty_operator role (methods loyalty.*) redeems;
         * the plugin's own writes need no grant on the loyalty collections */
        char *tok = crmd_token(&f->p, "loyalty_operator"), buf[256];
        ws_client op;
        assert_non_null(tok);
        assert_int_equal(ws_connect(&op, f->p.port, "crm.v1.json", NULL, NULL), 0);
        snprintf(buf, sizeof buf, "{\"ref\": 1, \"op\": \"auth\", \"token\": \"%s\"}", tok);
        assert_int_equal(ws_send_json(&op, buf), 0);
        r = ws_reply(&op, 1, 5000, NULL);
        assert_non_null(r);
        assert_true(crm_map_get(r, "ok")->u.b);
        crm_value_free(r);
        r = redeem(&op, "c_ann", 30, NULL);
        ws_close(&op);
        free(tok);
    }
    assert_string_equal(ws_code(r), "OK");
    assert_int_equal(crm_map_int(crm_map_get(r, "result"), "points", -1), 100);
    assert_int_equal(crm_map_int(crm_map_get(r, "result"), "redeemed", -1), 30);
    crm_value_free(r);
    r = balance(&c, "c_ann"); /* o_a1's 50 was the oldest: 20 of it left */
    assert_int_equal(crm_map_int(crm_map_get(crm_map_get(r, "result"), "next_expiry"), "points", -1), 20);
    crm_value_free(r);
    /* idempotent with a key */
    ok(redeem(&c, "c_ann", 5, ", \"key\": \"pos-1\""));
    r = redeem(&c, "c_ann", 5, ", \"key\": \"pos-1\"");
    assert_string_equal(ws_code(r), "CONFLICT");
    crm_value_free(r);
    assert_int_equal(points_of(&c, "c_ann"), 95);

    /* cancelling o_a1 takes its 50 back (its lot's 15, then the oldest
     * others), lifetime 130 -> 80: back to basic, pushed */
    order_status(&c, "o_a1", "cancelled");
    wait_tier_push(&sub, "basic", 10);
    wait_points(&c, "c_ann", 45, 10);
    s = ledger(&c, "la_c_ann", ", \"dedupe_key\": \"revoke:o_a1\"");
    assert_int_equal(s.lines, 1);
    assert_int_equal(s.sum, -50);
    acc = account(&c, "c_ann");
    assert_int_equal(crm_map_int(acc, "lifetime_points", -1), 80);
    assert_string_equal(crm_map_str(acc, "tier", ""), "basic");
    {
        const crm_value *hist = crm_map_get(crm_map_get(acc, "extra"), "tier_history");
        assert_non_null(hist);
        assert_int_equal(hist->u.arr.n, 2);
        assert_string_equal(crm_map_str(hist->u.arr.items[0], "to", ""), "silver");
        assert_string_equal(crm_map_str(hist->u.arr.items[1], "from", ""), "silver");
        assert_string_equal(crm_map_str(hist->u.arr.items[1], "to", ""), "basic");
    }
    crm_value_free(acc);
    /* refunded after cancelled: taken back once only */
    order_status(&c, "o_a1", "refunded");

    /* points_redeemed on an order: redeemed with it, REJECTED when short */
    r = req(&c, "{\"op\": \"create\", \"collection\": \"orders\", \"record\": {\"id\": \"o_a5\","
                " \"contact\": \"c_ann\", \"amount\": 100, \"currency\": \"EUR\", \"points_redeemed\": 46,"
                " \"ordered_at\": 1700000000000}}");
    assert_string_equal(ws_code(r), "REJECTED");
    assert_non_null(strstr(ws_message(r), "insufficient points"));
    crm_value_free(r);
    r = req(&c, "{\"op\": \"get\", \"collection\": \"orders\", \"id\": \"o_a5\"}");
    assert_string_equal(ws_code(r), "NOT_FOUND"); /* the order was refused whole */
    crm_value_free(r);
    ok(req(&c, "{\"op\": \"create\", \"collection\": \"orders\", \"record\": {\"id\": \"o_a5\","
               " \"contact\": \"c_ann\", \"amount\": 100, \"currency\": \"EUR\", \"points_redeemed\": 40,"
               " \"ordered_at\": 1700000000000}}"));
    assert_int_equal(points_of(&c, "c_ann"), 5); /* in the order's own transaction */
    order_status(&c, "o_a5", "cancelled");     /* never earned; the 40 come back */
    wait_points(&c, "c_ann", 45, 10);
    s = ledger(&c, "la_c_ann", ", \"dedupe_key\": \"refund:o_a5\"");
    assert_int_equal(s.sum, 40);
    order(&c, "o_a6", "c_ann", 300, "JPY", "paid"); /* 1 point per yen */
    wait_points(&c, "c_ann", 345, 10);

    s = ledger(&c, "la_c_ann", NULL);
    assert_int_equal(s.by_kind[0], 50 + 60 + 20 + 300);
    assert_int_equal(s.by_kind[1], -30 - 5 - 40);
    assert_int_equal(s.by_kind[3], -50 + 40);
    assert_int_equal(check_invariant(&c, "c_ann"), 345);
    ws_close(&sub);
    ws_close(&c);
    stop(f);
}

#define NCONN 8

static void test_concurrent_redemptions(void **state)
{
    fixture *f = start(CONFIG_EARN, NULL);
    ws_client c, conns[NCONN];
    int okn = 0, rejected = 0;
    long long refs[NCONN][3];
    (void)state;
    connect_authed(f, &c);
    contact(&c, "c_bob");
    order(&c, "o_b1", "c_bob", 5000, "EUR", "paid");
    order(&c, "o_b2", "c_bob", 5000, "EUR", "paid"); /* 50 + 50: silver from here on */
    wait_points(&c, "c_bob", 100, 10);
    for (int i = 0; i < NCONN; i++)
        connect_authed(f, &conns[i]);
    /* 24 redemptions of 7 (168 points) against 100, pipelined on 8
     * connections at once: exactly 14 fit */
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < NCONN; i++) {
            char buf[512];
            refs[i][k] = next_ref++;
            snprintf(buf, sizeof buf,
                     "{\"ref\": %lld, \"op\": \"call\", \"method\": \"loyalty.redeem\","
                     " \"params\": {\"contact\": \"c_bob\", \"points\": 7, \"reason\": \"race %d.%d\"}}",
                     refs[i][k], i, k);
            assert_int_equal(ws_send_json(&conns[i], buf), 0);
        }
    for (int i = 0; i < NCONN; i++)
        for (int k = 0; k < 3; k++) {
            crm_value *r = ws_reply(&conns[i], refs[i][k], 10000, NULL);
            assert_non_null(r);
            if (strcmp(ws_code(r), "OK") == 0) {
                okn++;
                assert_true(crm_map_int(crm_map_get(r, "result"), "points", -1) >= 0);
            } else {
                assert_string_equal(ws_code(r), "REJECTED");
                assert_non_null(strstr(ws_message(r), "insufficient points"));
                rejected++;
            }
            crm_value_free(r);
        }
    assert_int_equal(okn, 14);
    assert_int_equal(rejected, NCONN * 3 - 14);
    assert_int_equal(check_invariant(&c, "c_bob"), 2);
    {
        ledger_stats s = ledger(&c, "la_c_bob", ", \"kind\": \"redeem\"");
        assert_int_equal(s.lines, 14);
        assert_int_equal(s.sum, -98);
    }
    for (int i = 0; i < NCONN; i++)
        ws_close(&conns[i]);
    ws_close(&c);
    stop(f);
}

/* A day is 20 s of real time (--time-scale 4320): points lapse after a day,
 * tiers look at the last half day (10 s). */
static const char CONFIG_EXPIRY[] =
    "{\"rates\": {\"EUR\": {\"points\": 1, \"per\": 100}},"
    " \"expiry_days\": 1, \"tier_basis\": \"rolling\", \"tier_window_days\": 0.5,"
    " \"tiers\": [{\"name\": \"basic\", \"threshold\": 0, \"benefits\": []},"
    "            {\"name\": \"silver\", \"threshold\": 120, \"multiplier\": 1, \"benefits\": [\"free_shipping\"]}]}";

#define NPEOPLE 4

static void test_expiry_and_mixed_sequence(void **state)
{
    fixture *f = start(CONFIG_EXPIRY, "--time-scale 4320");
    ws_client c, sub;
    ledger_stats s;
    crm_value *r;
    double t_start = crm_test_now_s();
    int64_t earned_eve;
    (void)state;
    connect_authed(f, &c);
    connect_authed(f, &sub);
    contact(&c, "c_eve");
    subscribe_account(&sub, "c_eve");

    /* 100, then 50 (silver by the window), redeem 120: the first earn is
     * used up, 30 of the second is left; a third earn is cancelled */
    order(&c, "o_e1", "c_eve", 10000, "EUR", "paid");
    wait_points(&c, "c_eve", 100, 10);
    order(&c, "o_e2", "c_eve", 5000, "EUR", "paid");
    wait_tier_push(&sub, "silver", 10);
    wait_points(&c, "c_eve", 150, 10);
    ok(redeem(&c, "c_eve", 120, NULL));
    order(&c, "o_e3", "c_eve", 7000, "EUR", "paid");
    wait_points(&c, "c_eve", 100, 10);
    order_status(&c, "o_e3", "cancelled");
    wait_points(&c, "c_eve", 30, 10);
    assert_true(crm_test_now_s() - t_start < 10); /* the steps above ran well inside a day */

    /* a random mixed sequence over several people (fixed seed) */
    {
        char who[NPEOPLE][16];
        int norders = 0;
        srand(6);
        for (int i = 0; i < NPEOPLE; i++) {
            snprintf(who[i], sizeof who[i], "c_p%d", i);
            contact(&c, who[i]);
        }
        for (int step = 0; step < 60; step++) {
            int i = rand() % NPEOPLE, what = rand() % 10;
            char oid[32];
            if (what < 5 || norders == 0) {
                snprintf(oid, sizeof oid, "o_m%d", norders++);
                order(&c, oid, who[i], 1000 + rand() % 20000, "EUR",
                      rand() % 4 ? "paid" : "pending");
            } else if (what < 7) {
                snprintf(oid, sizeof oid, "o_m%d", rand() % norders);
                order_status(&c, oid, rand() % 2 ? "cancelled" : "paid");
            } else {
                r = redeem(&c, who[i], 1 + rand() % 150, NULL);
                if (strcmp(ws_code(r), "OK") != 0)
                    assert_string_equal(ws_code(r), "REJECTED");
                crm_value_free(r);
            }
            if (step % 15 == 14)
                for (int k = 0; k < NPEOPLE; k++)
                    check_invariant(&c, who[k]);
        }
        /* the window passes: eve falls back to basic, pushed */
        wait_tier_push(&sub, "basic", 30);
        /* then every point lapses */
        for (int k = 0; k < NPEOPLE; k++) {
            wait_points(&c, who[k], 0, 60);
            check_invariant(&c, who[k]);
        }
    }
    wait_points(&c, "c_eve", 0, 60);
    assert_int_equal(check_invariant(&c, "c_eve"), 0);
    /* eve: one expire line of 30 (o_e2's rest); o_e1, used up, left none */
    s = ledger(&c, "la_c_eve", NULL);
    assert_int_equal(s.count_kind[2], 1);
    assert_int_equal(s.by_kind[2], -30);
    earned_eve = s.by_kind[0];
    assert_int_equal(earned_eve, 100 + 50 + 70);
    s = ledger(&c, "la_c_eve", ", \"kind\": \"expire\", \"dedupe_key\": {\"prefix\": \"expire:\"}");
    assert_int_equal(s.lines, 1);
    r = balance(&c, "c_eve");
    assert_string_equal(crm_map_str(crm_map_get(r, "result"), "tier", ""), "basic");
    assert_int_equal(crm_map_get(crm_map_get(r, "result"), "next_expiry")->type, CRM_T_NIL);
    assert_int_equal(crm_map_int(crm_map_get(r, "result"), "lifetime_points", -1), 150);
    crm_value_free(r);
    ws_close(&sub);
    ws_close(&c);
    stop(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_earn_tiers_redeem_cancel),
        cmocka_unit_test(test_concurrent_redemptions),
        cmocka_unit_test(test_expiry_and_mixed_sequence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
