/*
 * test_demo -- `crmd demo` end to end: the generator fills a temp store
 * (300 contacts) with the CRM features loaded in-process (copies of
 * scripts lifecycle.lua, complaints.lua, customer_value.lua and links to
 * build/plugins loyalty and segments), then a real `crmd serve` on that
 * data with the same features answers over WebSocket:
 *  - the counts of contacts, orders, interactions, tickets, companies,
 *    agents and segments are what the generator reported;
 *  - lifecycle stages are spread (prospects, customers, lapsed ones);
 *  - every contact with a counted order that earned points (paid or
 *    completed) has a loyalty account, and only contacts do;
 *  - segments have members (member_count > 0 and segment_members records);
 *  - tickets stand in several workflow states, closed ones have surveys;
 *  - RFM scores were computed (value.recompute ran at the end);
 *  - no dead letters, and a second run on the same folder is refused.
 * Also: the same seed gives the same records (a second store, compared by
 * a few aggregates).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "tmpdir.h"
#include "testutil.h"
#include "wsclient.h"

#define CONTACTS "300"


static crm_value *req(ws_client *c, const char *fmt, ...)
{
    va_list ap;
    crm_value *r;
    va_start(ap, fmt);
    r = ws_vrequest(c, 20000, NULL, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    if (!crm_map_get(r, "ok")->u.b) {
        fprintf(stderr, "unexpected error: %s %s\n", ws_code(r), ws_message(r));
        fail();
    }
    return r;
}

/* The groups of an aggregate reply: key -> count. */
static long long group_count(const crm_value *r, const char *key)
{
    const crm_value *groups = crm_map_get(crm_map_get(r, "result"), "groups");
    assert_non_null(groups);
    for (size_t i = 0; i < groups->u.arr.n; i++) {
        const crm_value *g = groups->u.arr.items[i], *k = crm_map_get(g, "key");
        if ((!key && (!k || k->type == CRM_T_NIL)) ||
            (key && k && k->type == CRM_T_STR && !strcmp(k->u.str.s, key)))
            return crm_map_int(g, "count", 0);
    }
    return 0;
}

static long long count(ws_client *c, const char *coll, const char *where)
{
    crm_value *r = req(c, "{\"op\": \"aggregate\", \"collection\": \"%s\"%s%s, \"metrics\": [\"count\"]}",
                       coll, where ? ", \"where\": " : "", where ? where : "");
    long long n = group_count(r, NULL);
    crm_value_free(r);
    return n;
}

/* "N word" in the generator's summary line. */
static long long reported(const char *out, const char *word)
{
    char pat[64];
    const char *p = out;
    snprintf(pat, sizeof pat, " %s", word);
    while ((p = strstr(p, pat))) {
        const char *q = p;
        while (q > out && q[-1] >= '0' && q[-1] <= '9')
            q--;
        if (q < p)
            return atoll(q);
        p += strlen(pat);
    }
    return -1;
}

static char *features_scripts, *features_plugins;

static void make_features(void)
{
    const char *src = getenv("CRM_SCRIPTS"), *pl = getenv("CRM_PLUGINS");
    static const char *scripts[] = {"lifecycle.lua", "complaints.lua", "customer_value.lua"};
    static const char *plugins[] = {"loyalty.so", "loyalty.json", "segments.so", "segments.json"};
    char a[1024], b[1100];
    assert_non_null(src);
    assert_non_null(pl);
    features_scripts = crm_tmpdir_make("demo-scripts");
    features_plugins = crm_tmpdir_make("demo-plugins");
    for (size_t i = 0; i < 3; i++) {
        FILE *f;
        char *text;
        long n;
        snprintf(a, sizeof a, "%s/%s", src, scripts[i]);
        assert_non_null(f = fopen(a, "rb"));
        fseek(f, 0, SEEK_END);
        n = ftell(f);
        rewind(f);
        assert_non_null(text = calloc(1, (size_t)n + 1));
        assert_int_equal(fread(text, 1, (size_t)n, f), (size_t)n);
        fclose(f);
        crm_tmpdir_write(features_scripts, scripts[i], text);
        free(text);
    }
    for (size_t i = 0; i < 4; i++) {
        snprintf(a, sizeof a, "%s/%s", pl, plugins[i]);
        snprintf(b, sizeof b, "%s/%s", features_plugins, plugins[i]);
        assert_int_equal(access(a, R_OK), 0);
        assert_int_equal(symlink(a, b), 0);
    }
}

/* Runs crmd demo; returns its stdout (malloc'd) and exit status. */
static char *run_demo(const char *data, const char *extra, int *status)
{
    char cmd[4096], *out;
    snprintf(cmd, sizeof cmd,
             "'%s' demo --data '%s' --schemas '%s' --scripts '%s' --plugins '%s' "
             "--contacts " CONTACTS " --seed 7 --quiet %s",
             getenv("CRMD_BIN"), data, getenv("CRM_SCHEMAS"), features_scripts, features_plugins,
             extra ? extra : "");
    *status = crm_test_run(cmd, &out);
    return out;
}

static crmd_proc p; /* stopped by the teardown when an assertion failed */

static int teardown(void **state)
{
    (void)state;
    if (p.pid > 0)
        crmd_stop(&p);
    return 0;
}

static void test_demo(void **state)
{
    char *data, *data2, *out, *out2, *token, buf[512];
    int status;
    ws_client c;
    crm_value *r;
    (void)state;
    make_features();
    data = crm_tmpdir_make("demo-data");
    out = run_demo(data, NULL, &status);
    fprintf(stderr, "%s", out);
    assert_int_equal(status, 0);
    long long n_contacts = reported(out, "contacts,"), n_orders = reported(out, "orders,"),
              n_inter = reported(out, "interactions,"), n_tickets = reported(out, "tickets"),
              n_companies = reported(out, "companies,"), n_agents = reported(out, "agents,"),
              n_segments = reported(out, "segments"), refused = reported(out, "refused,"),
              dead = reported(out, "dead letters"), n_campaigns = reported(out, "campaigns,"),
              n_deals = reported(out, "deals,"), n_nps = reported(out, "NPS surveys");
    assert_int_equal(n_contacts, 300);
    assert_true(n_orders > 300 * 5 && n_orders < 300 * 20);
    assert_true(n_inter > 300);
    assert_true(n_tickets > 10);
    assert_int_equal(n_agents, 12);
    assert_int_equal(n_segments, 6);
    assert_true(n_companies >= 5);
    assert_int_equal(refused, 0);
    assert_int_equal(dead, 0);
    assert_int_equal(n_campaigns, 24); /* one a month over the default two years */
    assert_true(n_deals > 0);
    assert_true(n_nps > 0);

    /* a second run on the same folder is refused */
    out2 = run_demo(data, NULL, &status);
    assert_int_not_equal(status, 0);
    free(out2);

    /* the same seed, another folder: the same records */
    data2 = crm_tmpdir_make("demo-data2");
    out2 = run_demo(data2, "--no-value", &status);
    assert_int_equal(status, 0);
    assert_int_equal(reported(out2, "orders,"), n_orders);
    assert_int_equal(reported(out2, "interactions,"), n_inter);
    assert_int_equal(reported(out2, "tickets"), n_tickets);
    free(out2);
    crm_tmpdir_remove(data2);

    assert_int_equal(crmd_start_with(&p, data, "--scripts %s --plugins %s", features_scripts,
                                     features_plugins),
                     0);
    assert_non_null(token = crmd_token(&p, "admin"));
    assert_int_equal(ws_connect(&c, p.port, "crm.v1.json", NULL, NULL), 0);
    snprintf(buf, sizeof buf, "{\"ref\": 1, \"op\": \"auth\", \"token\": \"%s\"}", token);
    assert_int_equal(ws_send_json(&c, buf), 0);
    assert_non_null(r = ws_reply(&c, 1, 5000, NULL));
    assert_true(crm_map_get(r, "ok")->u.b);
    crm_value_free(r);

    /* counts match the report */
    assert_int_equal(count(&c, "contacts", NULL), n_contacts);
    assert_int_equal(count(&c, "orders", NULL), n_orders);
    assert_int_equal(count(&c, "interactions", NULL), n_inter);
    assert_int_equal(count(&c, "tickets", NULL), n_tickets);
    assert_int_equal(count(&c, "companies", NULL), n_companies);
    assert_int_equal(count(&c, "agents", NULL), n_agents);
    assert_int_equal(count(&c, "segments", NULL), n_segments);
    assert_int_equal(count(&c, "dead_letters", NULL), 0);
    assert_int_equal(count(&c, "campaigns", NULL), n_campaigns);
    assert_int_equal(count(&c, "deals", NULL), n_deals);
    assert_int_equal(count(&c, "surveys", "{\"kind\": \"nps\"}"), n_nps);
    /* orders attributed to campaigns, each campaign's response_count their number */
    {
        long long attributed = count(&c, "orders", "{\"campaign\": {\"prefix\": \"cp_\"}}");
        r = req(&c, "{\"op\": \"aggregate\", \"collection\": \"campaigns\", "
                    "\"metrics\": [\"sum:response_count\"]}");
        const crm_value *g = crm_map_get(crm_map_get(r, "result"), "groups")->u.arr.items[0];
        fprintf(stderr, "orders attributed to campaigns: %lld\n", attributed);
        assert_true(attributed > 0);
        assert_int_equal((long long)crm_value_as_double(crm_map_get(g, "sum:response_count")),
                         attributed);
        crm_value_free(r);
    }
    /* won deals point at an order, lost ones carry a reason */
    assert_int_equal(count(&c, "deals", "{\"stage\": \"won\", \"order\": {\"prefix\": \"o_\"}}"),
                     count(&c, "deals", "{\"stage\": \"won\"}"));
    assert_int_equal(count(&c, "deals", "{\"stage\": \"lost\", \"lost_reason\": {\"prefix\": \"\"}}"),
                     count(&c, "deals", "{\"stage\": \"lost\"}"));

    /* lifecycle stages are spread */
    r = req(&c, "{\"op\": \"aggregate\", \"collection\": \"contacts\", \"group_by\": "
                "\"lifecycle_stage\", \"metrics\": [\"count\"]}");
    {
        long long pr = group_count(r, "prospect"), nc = group_count(r, "new_customer"),
                  rp = group_count(r, "repeat"), lo = group_count(r, "loyal"),
                  ar = group_count(r, "at_risk"), ch = group_count(r, "churned");
        fprintf(stderr, "stages: prospect %lld new %lld repeat %lld loyal %lld at_risk %lld "
                        "churned %lld\n", pr, nc, rp, lo, ar, ch);
        assert_int_equal(pr + nc + rp + lo + ar + ch, n_contacts);
        assert_true(pr > 0 && pr < n_contacts / 2);
        assert_true(lo + rp + nc > 0);
        assert_true(ch > 0);
        assert_true(lo > 0);
    }
    crm_value_free(r);
    assert_true(count(&c, "lifecycle_transitions", NULL) >= n_contacts / 2);

    /* loyalty: an account for every contact with an earning order, no more */
    {
        long long accounts = count(&c, "loyalty_accounts", NULL);
        long long earners = 0;
        char *after = NULL;
        /* contacts with a paid or completed order: walk the orders */
        char **seen = calloc((size_t)n_contacts + 1, sizeof *seen);
        assert_non_null(seen);
        for (;;) {
            crm_value *page;
            const crm_value *recs, *next;
            if (after)
                page = req(&c, "{\"op\": \"query\", \"collection\": \"orders\", \"where\": "
                               "{\"status\": {\"in\": [\"paid\", \"completed\"]}}, \"limit\": 1000, "
                               "\"after\": \"%s\"}", after);
            else
                page = req(&c, "{\"op\": \"query\", \"collection\": \"orders\", \"where\": "
                               "{\"status\": {\"in\": [\"paid\", \"completed\"]}}, \"limit\": 1000}");
            recs = crm_map_get(crm_map_get(page, "result"), "records");
            assert_non_null(recs);
            for (size_t i = 0; i < recs->u.arr.n; i++) {
                const char *who = crm_map_str(recs->u.arr.items[i], "contact", "");
                long long k;
                for (k = 0; k < earners; k++)
                    if (!strcmp(seen[k], who))
                        break;
                if (k == earners) {
                    assert_true(earners < n_contacts);
                    seen[earners++] = strdup(who);
                }
            }
            next = crm_map_get(crm_map_get(page, "result"), "next");
            free(after);
            after = next && next->type == CRM_T_STR ? strdup(next->u.str.s) : NULL;
            crm_value_free(page);
            if (!after)
                break;
        }
        fprintf(stderr, "loyalty accounts %lld, contacts with earning orders %lld\n", accounts,
                earners);
        assert_true(earners > n_contacts / 2);
        assert_int_equal(accounts, earners);
        for (long long k = 0; k < earners; k++) {
            snprintf(buf, sizeof buf, "{\"contact\": \"%s\"}", seen[k]);
            if (k % 10 == 0) /* a sample, each by its unique contact */
                assert_int_equal(count(&c, "loyalty_accounts", buf), 1);
            free(seen[k]);
        }
        free(seen);
        assert_true(count(&c, "loyalty_accounts", "{\"tier\": {\"ne\": \"basic\"}}") > 0);
        assert_true(count(&c, "loyalty_ledger", NULL) >= earners);
    }

    /* segments have members, and member_count agrees with the records */
    {
        crm_value *page = req(&c, "{\"op\": \"query\", \"collection\": \"segments\", \"limit\": 100}");
        const crm_value *recs = crm_map_get(crm_map_get(page, "result"), "records");
        long long nonzero = 0;
        for (size_t i = 0; i < recs->u.arr.n; i++) {
            const crm_value *s = recs->u.arr.items[i];
            long long mc = crm_map_int(s, "member_count", 0);
            snprintf(buf, sizeof buf, "{\"segment\": \"%s\"}", crm_map_str(s, "id", ""));
            fprintf(stderr, "segment %s: %lld members\n", crm_map_str(s, "name", ""), mc);
            assert_int_equal(count(&c, "segment_members", buf), mc);
            nonzero += mc > 0;
        }
        assert_true(nonzero >= 4);
        crm_value_free(page);
    }

    /* tickets through the workflow */
    r = req(&c, "{\"op\": \"aggregate\", \"collection\": \"tickets\", \"group_by\": \"state\", "
                "\"metrics\": [\"count\"]}");
    {
        long long closed = group_count(r, "closed");
        fprintf(stderr, "tickets: new %lld assigned %lld in_progress %lld resolved %lld closed %lld\n",
                group_count(r, "new"), group_count(r, "assigned"), group_count(r, "in_progress"),
                group_count(r, "resolved"), closed);
        assert_true(closed > 0);
        assert_true(closed < n_tickets);
        assert_int_equal(group_count(r, "new"), 0); /* every ticket got an agent */
        assert_true(count(&c, "surveys", NULL) >= closed);
    }
    crm_value_free(r);
    assert_int_equal(count(&c, "tickets", "{\"assignee\": {\"eq\": null}}"), 0);

    /* value scores computed at the end of the run */
    assert_true(count(&c, "contacts", "{\"rfm_r\": {\"gte\": 1}}") > n_contacts / 2);

    ws_close(&c);
    assert_int_equal(crmd_stop(&p), 0);
    p.pid = 0;
    free(token);
    free(out);
    free(data); /* crmd_stop removed the folder */
    crm_tmpdir_remove(features_scripts);
    crm_tmpdir_remove(features_plugins);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_demo)};
    return cmocka_run_group_tests(tests, NULL, teardown);
}
