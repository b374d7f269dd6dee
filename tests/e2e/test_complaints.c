/*
 * test_complaints -- the complaint workflow (scripts/complaints.lua) in a real
 * crmd over WebSocket, loaded alone from a temp scripts folder:
 *  - business hours: tickets.sla_due over nights, weekends, a lunch break,
 *    yearly and one-off holidays and both DST switches, against deadlines
 *    worked out by hand (the calendar is pinned in the test's copy);
 *  - the state machine: every move of the happy path and the reopens pass,
 *    invalid moves are REJECTED naming both states; automatic assignment
 *    (least-loaded, by team) and agents.open_tickets; a CSAT survey on close;
 *    tickets.history newest first and contacts.extra.tickets;
 *  - round-robin assignment (strategy switched in the copy's config);
 *  - an SLA breach on a fast clock: the server is restarted between the
 *    scheduling and the deadline, the ticket is escalated after the restart
 *    (level 1, then level 2), a ticket resolved in time and a ticket with a
 *    later deadline are not.
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

#include "tmpdir.h"
#include "value.h"
#include "testutil.h"
#include "wsclient.h"

#define HOUR_MS 3600000LL

/* Pinned calendar for the arithmetic cases: CET/CEST, Mon-Fri 9-17 with a
 * lunch break on Wednesdays, two kinds of holiday. */
static const char CAL_OVERRIDE[] =
    "CONFIG.calendar = {utc_offset_minutes = 60, dst = \"eu\",\n"
    "  hours = {mon = {\"09:00\", \"17:00\"}, tue = {\"09:00\", \"17:00\"},\n"
    "           wed = {\"09:00\", \"12:00\", \"13:00\", \"17:00\"},\n"
    "           thu = {\"09:00\", \"17:00\"}, fri = {\"09:00\", \"17:00\"}},\n"
    "  holidays = {\"12-24\", \"12-25\", \"12-26\", \"2027-01-04\"}}\n";

static const char RR_OVERRIDE[] = "CONFIG.assignment.strategy = \"round_robin\"\n";

/* Always open, 4 h for urgent, levels at the deadline and an hour later. */
static const char FAST_OVERRIDE[] =
    "CONFIG.calendar = {utc_offset_minutes = 0, dst = \"none\", holidays = {},\n"
    "  hours = {mon = {\"00:00\", \"24:00\"}, tue = {\"00:00\", \"24:00\"}, wed = {\"00:00\", \"24:00\"},\n"
    "           thu = {\"00:00\", \"24:00\"}, fri = {\"00:00\", \"24:00\"}, sat = {\"00:00\", \"24:00\"},\n"
    "           sun = {\"00:00\", \"24:00\"}}}\n"
    "CONFIG.sla.hours = {urgent = 4, high = 8, normal = 24, low = 72}\n"
    "CONFIG.escalation.after_hours = {0, 1}\n";

typedef struct fixture {
    crmd_proc p;
    char *scripts, *token, *args;
} fixture;

/* The repo's complaints.lua, with override lines put at the end of its
 * configuration section (where a consultant would edit). */
static void write_script(const char *dir, const char *override)
{
    static const char mark[] = "-- end of configuration";
    char *src = crm_test_script_text("complaints.lua");
    char *with = malloc(strlen(override) + sizeof mark);
    assert_non_null(with);
    sprintf(with, "%s%s", override, mark);
    crm_test_replace_once(&src, mark, with);
    crm_tmpdir_write(dir, "complaints.lua", src);
    free(with);
    free(src);
}

static void start(fixture *f, const char *data)
{
    assert_int_equal(crmd_start_with(&f->p, data, "%s", f->args), 0);
}

static fixture *setup_with(const char *override, const char *extra_args)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->scripts = crm_tmpdir_make("complaints-scripts");
    write_script(f->scripts, override);
    f->args = malloc(strlen(f->scripts) + 128);
    sprintf(f->args, "--scripts %s %s", f->scripts, extra_args);
    start(f, NULL);
    assert_non_null(f->token = crmd_token(&f->p, "admin"));
    return f;
}

static int setup_calendar(void **state) { *state = setup_with(CAL_OVERRIDE, ""); return 0; }
static int setup_default(void **state) { *state = setup_with("", ""); return 0; }
static int setup_rr(void **state) { *state = setup_with(RR_OVERRIDE, ""); return 0; }
static int setup_fast(void **state) { *state = setup_with(FAST_OVERRIDE, "--time-scale 3600"); return 0; }

static int teardown(void **state)
{
    fixture *f = *state;
    assert_int_equal(crmd_stop(&f->p), 0); /* removes its data folder */
    crm_tmpdir_remove(f->scripts);
    free(f->token);
    free(f->args);
    free(f);
    return 0;
}

/* Stops the server (SIGTERM) and starts it again on the same data. */
static void restart(fixture *f)
{
    char *data = strdup(f->p.data);
    assert_int_equal(crmd_stop_keep(&f->p), 0);
    start(f, data);
    free(data);
}

static void connect_authed(fixture *f, ws_client *c)
{
    assert_int_equal(ws_connect(c, f->p.port, "crm.v1.json", NULL, NULL), 0);
    assert_int_equal(ws_auth(c, f->token, 5000), 0);
}


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

/* A request that must succeed; returns the reply (result under "result"). */
static crm_value *ok(ws_client *c, const char *fmt, ...)
{
    char body[4096];
    va_list ap;
    crm_value *r;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    r = req(c, "%s", body);
    if (strcmp(ws_code(r), "OK") != 0)
        fail_msg("%s -> %s %s", body, ws_code(r), ws_message(r));
    return r;
}

static const crm_value *res(const crm_value *r) { return crm_map_get(r, "result"); }

static crm_value *get_rec(ws_client *c, const char *coll, const char *id)
{
    return ok(c, "{\"op\": \"get\", \"collection\": \"%s\", \"id\": \"%s\"}", coll, id);
}

static int64_t field_int(ws_client *c, const char *coll, const char *id, const char *field)
{
    crm_value *r = get_rec(c, coll, id);
    int64_t v = crm_map_int(res(r), field, -1);
    crm_value_free(r);
    return v;
}

static char *field_str(ws_client *c, const char *coll, const char *id, const char *field)
{
    crm_value *r = get_rec(c, coll, id);
    char *v = strdup(crm_map_str(res(r), field, ""));
    crm_value_free(r);
    return v;
}

static void set_state(ws_client *c, const char *id, const char *state)
{
    crm_value_free(ok(c, "{\"op\": \"update\", \"collection\": \"tickets\", \"id\": \"%s\","
                         " \"patch\": {\"state\": \"%s\"}}", id, state));
}

static void expect_rejected(ws_client *c, const char *id, const char *from, const char *to)
{
    char want[128];
    crm_value *r = req(c, "{\"op\": \"update\", \"collection\": \"tickets\", \"id\": \"%s\","
                          " \"patch\": {\"state\": \"%s\"}}", id, to);
    assert_string_equal(ws_code(r), "REJECTED");
    snprintf(want, sizeof want, "%s -> %s", from, to);
    if (!strstr(ws_message(r), want))
        fail_msg("message \"%s\" does not name %s", ws_message(r), want);
    crm_value_free(r);
}

static void create_ticket(ws_client *c, const char *id, const char *extra)
{
    crm_value_free(ok(c, "{\"op\": \"create\", \"collection\": \"tickets\", \"record\": {\"id\": \"%s\","
                         " \"contact\": \"c_zoe\", \"subject\": \"%s\"%s%s}}",
                      id, id, *extra ? ", " : "", extra));
}

static char *assignee_of(ws_client *c, const char *id) { return field_str(c, "tickets", id, "assignee"); }

/* ---- business hours ---- */

static int64_t utc_ms(int y, int mo, int d, int h, int mi)
{
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    return (int64_t)timegm(&tm) * 1000;
}

static void test_business_hours(void **state)
{
    fixture *f = *state;
    static const struct {
        const char *what;
        int from[5];     /* UTC */
        double hours;
        int due[5];      /* UTC */
    } cases[] = {
        {"within a day", {2026, 11, 23, 9, 0}, 4, {2026, 11, 23, 13, 0}},
        {"over a night", {2026, 11, 23, 14, 0}, 4, {2026, 11, 24, 10, 0}},
        {"from the night, to closing", {2026, 11, 24, 2, 0}, 8, {2026, 11, 24, 16, 0}},
        {"over a weekend", {2026, 11, 27, 15, 0}, 4, {2026, 11, 30, 11, 0}},
        {"from a Saturday", {2026, 11, 28, 11, 0}, 4, {2026, 11, 30, 12, 0}},
        {"over a lunch break", {2026, 11, 25, 10, 0}, 2, {2026, 11, 25, 13, 0}},
        {"over yearly holidays", {2026, 12, 22, 14, 0}, 24, {2026, 12, 29, 15, 0}},
        {"over a one-off holiday", {2027, 1, 1, 15, 0}, 8, {2027, 1, 5, 15, 0}},
        {"into summer time", {2026, 3, 27, 15, 0}, 4, {2026, 3, 30, 10, 0}},
        {"into winter time", {2026, 10, 23, 14, 0}, 4, {2026, 10, 26, 11, 0}},
        {"zero hours from the evening", {2026, 11, 23, 19, 0}, 0, {2026, 11, 24, 8, 0}},
        {"72 hours", {2026, 11, 23, 8, 0}, 72, {2026, 12, 4, 10, 0}},
    };
    ws_client c;
    crm_value *r;
    connect_authed(f, &c);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int64_t from = utc_ms(cases[i].from[0], cases[i].from[1], cases[i].from[2], cases[i].from[3],
                              cases[i].from[4]);
        int64_t want = utc_ms(cases[i].due[0], cases[i].due[1], cases[i].due[2], cases[i].due[3],
                              cases[i].due[4]);
        r = ok(&c, "{\"op\": \"call\", \"method\": \"tickets.sla_due\", \"params\":"
                   " {\"hours\": %g, \"from\": %lld}}", cases[i].hours, (long long)from);
        print_message("%-28s %s + %gh -> %s\n", cases[i].what, crm_map_str(res(r), "from_local", ""),
                      cases[i].hours, crm_map_str(res(r), "due_local", ""));
        if (crm_map_int(res(r), "due", 0) != want)
            fail_msg("%s: due %lld, want %lld (%s)", cases[i].what,
                     (long long)crm_map_int(res(r), "due", 0), (long long)want,
                     crm_map_str(res(r), "due_local", ""));
        crm_value_free(r);
    }
    /* by priority: urgent is 4 business hours */
    r = ok(&c, "{\"op\": \"call\", \"method\": \"tickets.sla_due\", \"params\":"
               " {\"priority\": \"urgent\", \"from\": %lld}}", (long long)utc_ms(2026, 11, 27, 15, 0));
    assert_int_equal(crm_map_int(res(r), "due", 0), utc_ms(2026, 11, 30, 11, 0));
    crm_value_free(r);
    r = req(&c, "{\"op\": \"call\", \"method\": \"tickets.sla_due\", \"params\": {\"priority\": \"whenever\"}}");
    assert_string_equal(ws_code(r), "REJECTED");
    crm_value_free(r);
    ws_close(&c);
}

/* ---- the workflow ---- */

static void make_people(ws_client *c)
{
    crm_value_free(ok(c, "{\"op\": \"create\", \"collection\": \"contacts\", \"record\": {\"id\": \"c_zoe\", \"name\": \"Zoe\"}}"));
    crm_value_free(ok(c, "{\"op\": \"create\", \"collection\": \"contacts\", \"record\": {\"id\": \"c_max\", \"name\": \"Max\"}}"));
    crm_value_free(ok(c, "{\"op\": \"create\", \"collection\": \"agents\", \"record\": {\"id\": \"ag_ann\", \"name\": \"Ann\", \"team\": \"billing\"}}"));
    crm_value_free(ok(c, "{\"op\": \"create\", \"collection\": \"agents\", \"record\": {\"id\": \"ag_bob\", \"name\": \"Bob\", \"team\": \"billing\"}}"));
    crm_value_free(ok(c, "{\"op\": \"create\", \"collection\": \"agents\", \"record\": {\"id\": \"ag_cid\", \"name\": \"Cid\", \"team\": \"general\"}}"));
    crm_value_free(ok(c, "{\"op\": \"create\", \"collection\": \"agents\", \"record\": {\"id\": \"ag_dan\", \"name\": \"Dan\", \"team\": \"billing\", \"active\": false}}"));
}

static int64_t count_where(ws_client *c, const char *coll, const char *where)
{
    crm_value *r = ok(c, "{\"op\": \"query\", \"collection\": \"%s\", \"where\": %s}", coll, where);
    int64_t n = (int64_t)crm_map_get(res(r), "records")->u.arr.n;
    crm_value_free(r);
    return n;
}

/* contacts.extra.tickets of contact: total, open, and last_at = _created of ticket newest */
static void expect_summary(ws_client *c, const char *contact, int64_t total, int64_t open,
                           const char *newest)
{
    crm_value *r = get_rec(c, "contacts", contact);
    const crm_value *x = crm_map_get(crm_map_get(res(r), "extra"), "tickets");
    assert_non_null(x);
    assert_int_equal(crm_map_int(x, "total", -1), total);
    assert_int_equal(crm_map_int(x, "open", -1), open);
    assert_int_equal(crm_map_int(x, "last_at", -1), field_int(c, "tickets", newest, "_created"));
    crm_value_free(r);
}

static void test_workflow(void **state)
{
    fixture *f = *state;
    ws_client c;
    crm_value *r;
    char *s;
    connect_authed(f, &c);
    make_people(&c);

    /* least-loaded among the active agents of the team (category billing -> team billing) */
    create_ticket(&c, "t_1", "\"category\": \"billing\", \"priority\": \"urgent\"");
    r = get_rec(&c, "tickets", "t_1");
    assert_string_equal(crm_map_str(res(r), "state", ""), "assigned");
    assert_string_equal(crm_map_str(res(r), "team", ""), "billing");
    assert_string_equal(crm_map_str(res(r), "assignee", ""), "ag_ann");
    assert_true(crm_map_int(res(r), "sla_due_at", 0) > crm_map_int(res(r), "_created", 0));
    crm_value_free(r);
    create_ticket(&c, "t_2", "\"category\": \"billing\"");
    s = assignee_of(&c, "t_2");
    assert_string_equal(s, "ag_bob");
    free(s);
    create_ticket(&c, "t_3", "\"team\": \"general\"");
    s = assignee_of(&c, "t_3");
    assert_string_equal(s, "ag_cid");
    free(s);
    assert_int_equal(field_int(&c, "agents", "ag_ann", "open_tickets"), 1);
    assert_int_equal(field_int(&c, "agents", "ag_bob", "open_tickets"), 1);
    assert_int_equal(field_int(&c, "agents", "ag_dan", "open_tickets"), 0);

    /* invalid moves are refused, naming both states */
    expect_rejected(&c, "t_1", "assigned", "resolved");
    expect_rejected(&c, "t_1", "assigned", "closed");
    expect_rejected(&c, "t_1", "assigned", "new");
    /* the happy path */
    set_state(&c, "t_1", "in_progress");
    assert_true(field_int(&c, "tickets", "t_1", "first_response_at") > 0);
    expect_rejected(&c, "t_1", "in_progress", "closed");
    set_state(&c, "t_1", "resolved");
    assert_true(field_int(&c, "tickets", "t_1", "resolved_at") > 0);
    assert_int_equal(field_int(&c, "agents", "ag_ann", "open_tickets"), 0);
    set_state(&c, "t_1", "closed");
    assert_true(field_int(&c, "tickets", "t_1", "closed_at") > 0);
    expect_rejected(&c, "t_1", "closed", "resolved");
    expect_rejected(&c, "t_1", "closed", "new");

    /* Ann has the fewest open tickets now: the next billing ticket is hers */
    create_ticket(&c, "t_4", "\"category\": \"billing\", \"priority\": \"low\"");
    s = assignee_of(&c, "t_4");
    assert_string_equal(s, "ag_ann");
    free(s);

    /* a survey for the closed ticket */
    {
        double t0 = crm_test_now_s();
        while (count_where(&c, "surveys", "{\"ticket\": \"t_1\"}") == 0 && crm_test_now_s() - t0 < 5)
            usleep(20000);
        r = ok(&c, "{\"op\": \"query\", \"collection\": \"surveys\", \"where\": {\"ticket\": \"t_1\"}}");
        assert_int_equal(crm_map_get(res(r), "records")->u.arr.n, 1);
        {
            const crm_value *sv = crm_map_get(res(r), "records")->u.arr.items[0];
            assert_string_equal(crm_map_str(sv, "kind", ""), "csat");
            assert_string_equal(crm_map_str(sv, "state", ""), "sent");
            assert_string_equal(crm_map_str(sv, "contact", ""), "c_zoe");
            /* a CSAT score is 1..5: 9 is refused */
            {
                crm_value *e = ws_request(&c, 10000, NULL,
                                          "{\"op\": \"update\", \"collection\": \"surveys\", \"id\": "
                                          "\"%s\", \"patch\": {\"state\": \"answered\", \"score\": 9}}",
                                          crm_map_str(sv, "id", ""));
                assert_non_null(e);
                assert_string_equal(ws_code(e), "REJECTED");
                assert_non_null(strstr(ws_message(e), "a csat score is 1 to 5, got 9"));
                crm_value_free(e);
            }
            /* answered with 4: the ticket's satisfaction becomes 4 */
            crm_value_free(ok(&c, "{\"op\": \"update\", \"collection\": \"surveys\", \"id\": \"%s\", "
                                  "\"patch\": {\"state\": \"answered\", \"score\": 4}}",
                              crm_map_str(sv, "id", "")));
        }
        crm_value_free(r);
        {
            double t1 = crm_test_now_s();
            while (field_int(&c, "tickets", "t_1", "satisfaction") != 4 && crm_test_now_s() - t1 < 10)
                usleep(20000);
            assert_int_equal(field_int(&c, "tickets", "t_1", "satisfaction"), 4);
        }
    }

    /* reopen from closed, back to assigned, and from resolved to in_progress */
    set_state(&c, "t_1", "assigned");
    r = get_rec(&c, "tickets", "t_1");
    assert_int_equal(crm_map_int(res(r), "reopened_count", 0), 1);
    assert_null(crm_map_get(res(r), "closed_at"));
    assert_string_equal(crm_map_str(res(r), "assignee", ""), "ag_ann");
    crm_value_free(r);
    assert_int_equal(field_int(&c, "agents", "ag_ann", "open_tickets"), 2);
    set_state(&c, "t_1", "in_progress");
    set_state(&c, "t_1", "resolved");
    set_state(&c, "t_1", "in_progress");
    assert_int_equal(field_int(&c, "tickets", "t_1", "reopened_count"), 2);

    /* a hand-picked assignee must be an agent; reassigning moves the load */
    r = req(&c, "{\"op\": \"update\", \"collection\": \"tickets\", \"id\": \"t_2\", \"patch\": {\"assignee\": \"nobody\"}}");
    assert_string_equal(ws_code(r), "REJECTED");
    crm_value_free(r);
    crm_value_free(ok(&c, "{\"op\": \"update\", \"collection\": \"tickets\", \"id\": \"t_2\", \"patch\": {\"assignee\": \"ag_cid\"}}"));
    assert_int_equal(field_int(&c, "agents", "ag_bob", "open_tickets"), 0);
    assert_int_equal(field_int(&c, "agents", "ag_cid", "open_tickets"), 2);

    /* a priority change moves the deadline (urgent is sooner than normal) */
    {
        int64_t before = field_int(&c, "tickets", "t_2", "sla_due_at");
        crm_value_free(ok(&c, "{\"op\": \"update\", \"collection\": \"tickets\", \"id\": \"t_2\", \"patch\": {\"priority\": \"urgent\"}}"));
        assert_true(field_int(&c, "tickets", "t_2", "sla_due_at") < before);
    }

    /* a ticket of another contact; the history and the summary of Zoe */
    crm_value_free(ok(&c, "{\"op\": \"create\", \"collection\": \"tickets\", \"record\": {\"id\": \"t_9\","
                          " \"contact\": \"c_max\", \"subject\": \"other\"}}"));
    set_state(&c, "t_3", "in_progress");
    set_state(&c, "t_3", "resolved");
    set_state(&c, "t_3", "closed");
    r = ok(&c, "{\"op\": \"call\", \"method\": \"tickets.history\", \"params\": {\"contact\": \"c_zoe\"}}");
    {
        const crm_value *list = crm_map_get(res(r), "tickets");
        static const char *const newest_first[] = {"t_4", "t_3", "t_2", "t_1"};
        assert_int_equal(crm_map_int(res(r), "total", 0), 4);
        assert_int_equal(list->u.arr.n, 4);
        for (size_t i = 0; i < 4; i++)
            assert_string_equal(crm_map_str(list->u.arr.items[i], "id", ""), newest_first[i]);
        assert_int_equal(crm_map_int(res(r), "open", -1), 3); /* t_1 in progress, t_2, t_4 */
    }
    crm_value_free(r);
    /* the summary on the contact is kept in the write's transaction: exact at once */
    expect_summary(&c, "c_zoe", 4, 3, "t_4");
    expect_summary(&c, "c_max", 1, 1, "t_9");
    /* moving a ticket to another contact, and deleting one */
    crm_value_free(ok(&c, "{\"op\": \"update\", \"collection\": \"tickets\", \"id\": \"t_4\", \"patch\": {\"contact\": \"c_max\"}}"));
    expect_summary(&c, "c_zoe", 3, 2, "t_3");
    expect_summary(&c, "c_max", 2, 2, "t_9");
    crm_value_free(ok(&c, "{\"op\": \"delete\", \"collection\": \"tickets\", \"id\": \"t_4\"}"));
    expect_summary(&c, "c_max", 1, 1, "t_9");
    assert_int_equal(count_where(&c, "surveys", "{\"contact\": \"c_zoe\"}"), 2); /* t_1 and t_3 */

    /* recount agrees with the counters kept by the hooks */
    {
        int64_t ann = field_int(&c, "agents", "ag_ann", "open_tickets");
        int64_t cid = field_int(&c, "agents", "ag_cid", "open_tickets");
        crm_value_free(ok(&c, "{\"op\": \"update\", \"collection\": \"agents\", \"id\": \"ag_ann\", \"patch\": {\"open_tickets\": 40}}"));
        crm_value_free(ok(&c, "{\"op\": \"call\", \"method\": \"tickets.recount_agents\", \"params\": {}}"));
        assert_int_equal(field_int(&c, "agents", "ag_ann", "open_tickets"), ann);
        assert_int_equal(field_int(&c, "agents", "ag_cid", "open_tickets"), cid);
    }
    ws_close(&c);
}

static void test_round_robin(void **state)
{
    fixture *f = *state;
    ws_client c;
    static const char *const want[] = {"ag_ann", "ag_bob", "ag_ann", "ag_bob", "ag_ann", "ag_bob"};
    connect_authed(f, &c);
    make_people(&c);
    for (int i = 0; i < 6; i++) {
        char id[16];
        char *s;
        snprintf(id, sizeof id, "t_rr%d", i);
        create_ticket(&c, id, "\"category\": \"billing\"");
        s = assignee_of(&c, id);
        assert_string_equal(s, want[i]);
        free(s);
        if (i == 0) { /* Ann's load drops to 0, but it is Bob's turn */
            set_state(&c, id, "in_progress");
            set_state(&c, id, "resolved");
        }
    }
    ws_close(&c);
}

/* ---- SLA escalation across a restart ---- */

static void test_sla_escalation_survives_restart(void **state)
{
    fixture *f = *state;
    ws_client c;
    crm_value *r;
    int64_t created, due, now;
    double t0;
    connect_authed(f, &c);
    make_people(&c);
    create_ticket(&c, "t_late", "\"priority\": \"urgent\"");
    create_ticket(&c, "t_done", "\"priority\": \"urgent\"");
    create_ticket(&c, "t_slow", "\"priority\": \"low\"");
    r = get_rec(&c, "tickets", "t_late");
    created = crm_map_int(res(r), "_created", 0);
    due = crm_map_int(res(r), "sla_due_at", 0);
    crm_value_free(r);
    assert_int_equal(due - created, 4 * HOUR_MS); /* always-open calendar */
    set_state(&c, "t_done", "in_progress");
    set_state(&c, "t_done", "resolved"); /* in time: its timer is cancelled */
    /* low (72 h) raised to urgent: the deadline and its timer move to 4 h from the change */
    create_ticket(&c, "t_raised", "\"priority\": \"low\"");
    r = ok(&c, "{\"op\": \"update\", \"collection\": \"tickets\", \"id\": \"t_raised\","
               " \"patch\": {\"priority\": \"urgent\"}}");
    assert_int_equal(crm_map_int(res(r), "sla_due_at", 0) - crm_map_int(res(r), "_updated", 0),
                     4 * HOUR_MS);
    crm_value_free(r);
    ws_close(&c);

    t0 = crm_test_now_s();
    restart(f);
    print_message("restart took %.3f s\n", crm_test_now_s() - t0);
    connect_authed(f, &c);
    r = ok(&c, "{\"op\": \"call\", \"method\": \"tickets.sla_due\", \"params\": {\"hours\": 0}}");
    now = crm_map_int(res(r), "from", 0);
    crm_value_free(r);
    print_message("server clock after restart: %.2f h after creation, deadline at 4 h\n",
                  (double)(now - created) / HOUR_MS);
    assert_true(now < due); /* the restart came between scheduling and deadline */
    assert_int_equal(field_int(&c, "tickets", "t_late", "escalation_level"), 0);

    t0 = crm_test_now_s();
    while (field_int(&c, "tickets", "t_late", "escalation_level") < 1 && crm_test_now_s() - t0 < 20)
        usleep(50000);
    r = get_rec(&c, "tickets", "t_late");
    assert_int_equal(crm_map_int(res(r), "escalation_level", 0), 1);
    assert_true(crm_map_int(res(r), "escalated_at", 0) >= due);
    print_message("escalated %.2f h after the deadline (server clock), %.2f s after the restart\n",
                  (double)(crm_map_int(res(r), "escalated_at", 0) - due) / HOUR_MS, crm_test_now_s() - t0);
    {
        const crm_value *tags = crm_map_get(res(r), "tags");
        assert_non_null(tags);
        assert_int_equal(tags->u.arr.n, 1);
        assert_string_equal(tags->u.arr.items[0]->u.str.s, "sla_breached");
    }
    crm_value_free(r);

    /* the second level, one business hour after the deadline */
    t0 = crm_test_now_s();
    while (field_int(&c, "tickets", "t_late", "escalation_level") < 2 && crm_test_now_s() - t0 < 20)
        usleep(50000);
    r = get_rec(&c, "tickets", "t_late");
    assert_int_equal(crm_map_int(res(r), "escalation_level", 0), 2);
    assert_true(crm_map_int(res(r), "escalated_at", 0) >= due + HOUR_MS);
    crm_value_free(r);

    t0 = crm_test_now_s();
    while (field_int(&c, "tickets", "t_raised", "escalation_level") < 1 && crm_test_now_s() - t0 < 20)
        usleep(50000);
    assert_true(field_int(&c, "tickets", "t_raised", "escalation_level") >= 1);
    assert_int_equal(field_int(&c, "tickets", "t_done", "escalation_level"), 0);
    assert_int_equal(field_int(&c, "tickets", "t_slow", "escalation_level"), 0);
    /* no third level is configured */
    usleep(1500000);
    assert_int_equal(field_int(&c, "tickets", "t_late", "escalation_level"), 2);
    ws_close(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_business_hours, setup_calendar, teardown),
        cmocka_unit_test_setup_teardown(test_workflow, setup_default, teardown),
        cmocka_unit_test_setup_teardown(test_round_robin, setup_rr, teardown),
        cmocka_unit_test_setup_teardown(test_sla_escalation_survives_restart, setup_fast, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
