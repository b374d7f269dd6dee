/*
 * test_segments -- the segmentation plugin (plugins/segments) end to end:
 * a real crmd with only segments.so loaded (chunks of 25 contacts, a short
 * pause between chunks), the bundled schemas, driven over WebSocket.
 *
 *  - bad rules are REJECTED with a message naming the problem; good ones
 *    pass; segments.validate says the same; a client cannot set
 *    member_count.
 *  - 300 contacts, then five segments with different rules (field
 *    conditions, tags any/all/none, lifecycle stage, value scores, a nested
 *    group, a path into extra): the backfill runs in several chunks while a
 *    second connection keeps getting answers, and membership equals a
 *    brute-force evaluation done here, by C predicates written for each
 *    rule, over every contact fetched through the API; member_count equals
 *    the number of members.
 *  - a subscriber to segment_members where segment = X sees a contact enter.
 *  - about 3000 random creates, updates and deletes of contacts, with a
 *    rule edit, a deactivation, a delete and a reactivation of segments in
 *    between; once the hooks settle, membership equals brute force again
 *    for every segment, and the deleted segment has no members left; no
 *    hook or timer failed even once (/metrics).
 *  - a run under way when the server stops goes on after the restart from
 *    its cursor: the same run, every contact scanned exactly once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "tmpdir.h"
#include "testutil.h"
#include "wsclient.h"

#define N_CONTACTS 300
#define CHUNK 25
#define N_CHANGES 3000

typedef struct fixture {
    crmd_proc p;
    char *plugins, *token;
    ws_client c, c2;
} fixture;

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

static void auth(fixture *f, ws_client *c)
{
    assert_int_equal(ws_connect(c, f->p.port, "crm.v1.json", NULL, NULL), 0);
    assert_int_equal(ws_auth(c, f->token, 5000), 0);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    char config[256];
    assert_non_null(f);
    snprintf(config, sizeof config,
             "{\"chunk_size\": %d, \"chunk_pause_seconds\": 0.05, \"fields\": {\"nickname\": \"string\"}}",
             CHUNK);
    f->plugins = crm_test_plugin_dir("segments-plugins", "segments", config);
    assert_int_equal(crmd_start_with(&f->p, NULL, "--plugins %s", f->plugins), 0);
    assert_non_null(f->token = crmd_token(&f->p, "admin"));
    auth(f, &f->c);
    auth(f, &f->c2);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    ws_close(&f->c);
    ws_close(&f->c2);
    assert_int_equal(crmd_stop(&f->p), 0);
    crm_tmpdir_remove(f->plugins);
    free(f->token);
    free(f);
    return 0;
}

/* ---- requests ---- */

static long long next_ref = 100;

/* Sends body (a JSON object without ref) and returns the reply. */
static crm_value *req(ws_client *c, const char *fmt, ...)
{
    va_list ap;
    crm_value *r;
    va_start(ap, fmt);
    r = ws_vrequest(c, 15000, NULL, fmt, ap);
    va_end(ap);
    if (!r)
        fail_msg("no reply to %s", fmt);
    return r;
}

static crm_value *req_ok(ws_client *c, const char *what, const char *fmt, ...)
{
    char *body;
    va_list ap;
    crm_value *r;
    va_start(ap, fmt);
    assert_true(vasprintf(&body, fmt, ap) > 0);
    va_end(ap);
    r = req(c, "%s", body);
    if (strcmp(ws_code(r), "OK") != 0)
        fail_msg("%s: %s %s (%s)", what, ws_code(r), ws_message(r), body);
    free(body);
    return r;
}

/* Pipelined requests: bodies[i] sent with refs base+i, then every reply
 * collected (in any order); replies[i] the caller's. */
static void pipeline(ws_client *c, char **bodies, size_t n, crm_value **replies)
{
    long long base = next_ref;
    size_t got = 0;
    next_ref += (long long)n;
    for (size_t i = 0; i < n; i++) {
        char *buf;
        assert_true(asprintf(&buf, "{\"ref\": %lld, %s", base + (long long)i, bodies[i] + 1) > 0);
        assert_int_equal(ws_send_json(c, buf), 0);
        free(buf);
        replies[i] = NULL;
    }
    while (got < n) {
        crm_value *v = ws_recv(c, 15000, NULL);
        const crm_value *ref;
        if (!v)
            fail_msg("pipeline: %zu of %zu replies", got, n);
        ref = crm_map_get(v, "ref");
        if (ref && ref->type == CRM_T_INT && ref->u.i >= base && ref->u.i < base + (long long)n &&
            !replies[ref->u.i - base]) {
            replies[ref->u.i - base] = v;
            got++;
        } else {
            crm_value_free(v);
        }
    }
}

/* Every record of coll matching where_json (NULL: all), page by page; an
 * array the caller frees. */
static crm_value *fetch_all(ws_client *c, const char *coll, const char *where_json)
{
    crm_value *all = crm_value_arr();
    char *after = NULL;
    for (;;) {
        char cur[512] = "";
        crm_value *r;
        const crm_value *res, *recs, *next;
        if (after)
            snprintf(cur, sizeof cur, ", \"after\": \"%s\"", after);
        r = req_ok(c, "fetch", "{\"op\": \"query\", \"collection\": \"%s\", \"limit\": 1000%s%s%s}",
                   coll, where_json ? ", \"where\": " : "", where_json ? where_json : "", cur);
        res = crm_map_get(r, "result");
        recs = crm_map_get(res, "records");
        for (size_t i = 0; i < recs->u.arr.n; i++)
            crm_arr_push(all, crm_value_dup(recs->u.arr.items[i]));
        next = crm_map_get(res, "next");
        free(after);
        after = next && next->type == CRM_T_STR ? strdup(next->u.str.s) : NULL;
        crm_value_free(r);
        if (!after)
            return all;
    }
}

/* ---- the rules and their independent predicates ---- */

static const crm_value *fld(const crm_value *c, const char *k)
{
    const crm_value *v = crm_map_get(c, k);
    return v && v->type != CRM_T_NIL ? v : NULL;
}

static int str_is(const crm_value *c, const char *k, const char *s)
{
    const crm_value *v = fld(c, k);
    return v && v->type == CRM_T_STR && strcmp(v->u.str.s, s) == 0;
}

static int has_tag(const crm_value *c, const char *tag)
{
    const crm_value *t = fld(c, "tags");
    for (size_t i = 0; t && i < t->u.arr.n; i++)
        if (strcmp(t->u.arr.items[i]->u.str.s, tag) == 0)
            return 1;
    return 0;
}

static double num(const crm_value *c, const char *k, int *present)
{
    const crm_value *v = fld(c, k);
    *present = v && (v->type == CRM_T_INT || v->type == CRM_T_NUM);
    return !*present ? 0 : v->type == CRM_T_INT ? (double)v->u.i : v->u.n;
}

/* A: Berlin and spent at least 500.00 */
static int pred_a(const crm_value *c)
{
    int p;
    double s = num(c, "total_spent", &p);
    return str_is(c, "city", "Berlin") && p && s >= 50000;
}
/* B: vip or gold tag, or a loyal/repeat stage */
static int pred_b1(const crm_value *c)
{
    return has_tag(c, "vip") || has_tag(c, "gold") || str_is(c, "lifecycle_stage", "loyal") ||
           str_is(c, "lifecycle_stage", "repeat");
}
/* B after its edit: spent under 200.00 and not in Oslo (no city counts) */
static int pred_b2(const crm_value *c)
{
    int p;
    double s = num(c, "total_spent", &p);
    return p && s < 20000 && !str_is(c, "city", "Oslo");
}
/* C: recent (rfm_r >= 4) and either low churn risk or both newsletter and vip */
static int pred_c(const crm_value *c)
{
    int pr, pc;
    double r = num(c, "rfm_r", &pr), risk = num(c, "churn_risk", &pc);
    return pr && r >= 4 && ((pc && risk < 0.3) || (has_tag(c, "newsletter") && has_tag(c, "vip")));
}
/* D: no email, Paris or Rome, extra.level > 2, not churned */
static int pred_d(const crm_value *c)
{
    const crm_value *x = fld(c, "extra"), *lv = x ? crm_map_get(x, "level") : NULL;
    return !fld(c, "email") && (str_is(c, "city", "Paris") || str_is(c, "city", "Rome")) && lv &&
           lv->type == CRM_T_INT && lv->u.i > 2 && !str_is(c, "lifecycle_stage", "churned");
}
/* E: no vip tag */
static int pred_e(const crm_value *c) { return !has_tag(c, "vip"); }

static const char RULE_A[] =
    "{\"all\": [{\"field\": \"city\", \"eq\": \"Berlin\"}, {\"field\": \"total_spent\", \"gte\": 50000}]}";
static const char RULE_B1[] =
    "{\"any\": [{\"tags\": {\"any\": [\"vip\", \"gold\"]}}, {\"stage\": [\"loyal\", \"repeat\"]}]}";
static const char RULE_B2[] =
    "{\"all\": [{\"field\": \"total_spent\", \"lt\": 20000}, {\"field\": \"city\", \"ne\": \"Oslo\"}]}";
static const char RULE_C[] =
    "{\"all\": [{\"score\": \"rfm_r\", \"gte\": 4}, {\"any\": [{\"score\": \"churn_risk\", \"lt\": 0.3},"
    " {\"tags\": {\"all\": [\"newsletter\", \"vip\"]}}]}]}";
static const char RULE_D[] =
    "{\"all\": [{\"field\": \"email\", \"exists\": false}, {\"field\": \"city\", \"in\": [\"Paris\", \"Rome\"]},"
    " {\"field\": \"extra.level\", \"gt\": 2}, {\"field\": \"lifecycle_stage\", \"ne\": \"churned\"}]}";
static const char RULE_E[] = "{\"tags\": {\"none\": [\"vip\"]}}";

typedef struct seg {
    const char *name, *rule;
    int (*pred)(const crm_value *);
    char id[64];
    int deleted;
} seg;

/* ---- contacts ---- */

static const char *const CITIES[] = {"Berlin", "Paris", "Rome", "Oslo"};
static const char *const TAGS[] = {"vip", "gold", "newsletter", "b2b_lead"};
static const char *const STAGES[] = {"prospect", "new_customer", "repeat", "loyal", "at_risk",
                                     "churned"};

static void append(char **s, const char *fmt, ...)
{
    char *add, *n;
    va_list ap;
    va_start(ap, fmt);
    assert_true(vasprintf(&add, fmt, ap) >= 0);
    va_end(ap);
    assert_true(asprintf(&n, "%s%s", *s ? *s : "", add) >= 0);
    free(*s);
    free(add);
    *s = n;
}

static void add_tags(char **s)
{
    int first = 1;
    append(s, "[");
    for (int i = 0; i < 4; i++)
        if (rnd(3) == 0) {
            append(s, "%s\"%s\"", first ? "" : ", ", TAGS[i]);
            first = 0;
        }
    append(s, "]");
}

static int email_ctr;

/* One random field as "key": value (with null for removals on update). */
static void random_field(char **s, int which, int update)
{
    switch (which) {
    case 0:
        if (update && rnd(5) == 0)
            append(s, "\"city\": null");
        else
            append(s, "\"city\": \"%s\"", CITIES[rnd(4)]);
        break;
    case 1: append(s, "\"total_spent\": %u", rnd(100000)); break;
    case 2: append(s, "\"tags\": "); add_tags(s); break;
    case 3: append(s, "\"lifecycle_stage\": \"%s\"", STAGES[rnd(6)]); break;
    case 4:
        if (rnd(5) == 0)
            append(s, "\"rfm_r\": null");
        else
            append(s, "\"rfm_r\": %u", 1 + rnd(5));
        break;
    case 5:
        if (rnd(5) == 0)
            append(s, "\"churn_risk\": null");
        else
            append(s, "\"churn_risk\": 0.%02u", rnd(100));
        break;
    case 6:
        if (rnd(2))
            append(s, "\"email\": null");
        else
            append(s, "\"email\": \"p%d@example.org\"", ++email_ctr);
        break;
    default: append(s, "\"extra\": {\"level\": %u}", rnd(6)); break;
    }
}

static char *contact_body(int i)
{
    char *s = NULL;
    append(&s, "{\"op\": \"create\", \"collection\": \"contacts\", \"record\": {\"name\": \"P%d\"", i);
    for (int w = 0; w < 8; w++)
        if (w == 2 || w == 3 || rnd(5) != 0) {
            append(&s, ", ");
            random_field(&s, w, 0);
        }
    append(&s, "}}");
    return s;
}

/* ids of the live contacts, kept as the test creates and deletes them */
typedef struct idlist {
    char **v;
    size_t n, cap;
} idlist;

static void ids_add(idlist *l, const char *id)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 512;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        assert_non_null(l->v);
    }
    l->v[l->n++] = strdup(id);
}

static void create_contacts(fixture *f, idlist *ids, int from, int n)
{
    char **bodies = calloc((size_t)n, sizeof *bodies);
    crm_value **replies = calloc((size_t)n, sizeof *replies);
    for (int i = 0; i < n; i++)
        bodies[i] = contact_body(from + i);
    pipeline(&f->c, bodies, (size_t)n, replies);
    for (int i = 0; i < n; i++) {
        if (strcmp(ws_code(replies[i]), "OK") != 0)
            fail_msg("create: %s %s (%s)", ws_code(replies[i]), ws_message(replies[i]), bodies[i]);
        ids_add(ids, crm_map_str(crm_map_get(replies[i], "result"), "id", ""));
        free(bodies[i]);
        crm_value_free(replies[i]);
    }
    free(bodies);
    free(replies);
}

/* ---- membership against brute force ---- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* 0 when segment s's members equal its predicate over every contact and
 * member_count equals their number; else 1 with a description in why. */
static int check_segment(fixture *f, const crm_value *contacts, seg *s, char *why, size_t cap)
{
    char where[128];
    crm_value *members, *r;
    size_t nexp = 0, nmem;
    char **exp, **got;
    int bad = 0;
    int64_t count;

    snprintf(where, sizeof where, "{\"segment\": \"%s\"}", s->id);
    members = fetch_all(&f->c, "segment_members", where);
    nmem = members->u.arr.n;
    exp = calloc(contacts->u.arr.n + 1, sizeof *exp);
    got = calloc(nmem + 1, sizeof *got);
    if (!s->deleted)
        for (size_t i = 0; i < contacts->u.arr.n; i++)
            if (s->pred(contacts->u.arr.items[i]))
                exp[nexp++] = (char *)crm_map_str(contacts->u.arr.items[i], "id", "");
    for (size_t i = 0; i < nmem; i++)
        got[i] = (char *)crm_map_str(members->u.arr.items[i], "contact", "");
    qsort(exp, nexp, sizeof *exp, cmp_str);
    qsort(got, nmem, sizeof *got, cmp_str);
    if (nexp != nmem) {
        snprintf(why, cap, "%s: %zu members, brute force says %zu", s->name, nmem, nexp);
        bad = 1;
    }
    for (size_t i = 0; !bad && i < nexp; i++)
        if (strcmp(exp[i], got[i]) != 0) {
            snprintf(why, cap, "%s: member %s, brute force %s", s->name, got[i], exp[i]);
            bad = 1;
        }
    if (!bad && !s->deleted) {
        const crm_value *st;
        r = req_ok(&f->c, "get segment", "{\"op\": \"get\", \"collection\": \"segments\", \"id\": \"%s\"}",
                   s->id);
        count = crm_map_int(crm_map_get(r, "result"), "member_count", -1);
        st = crm_map_get(crm_map_get(crm_map_get(r, "result"), "extra"), "segmentation");
        if (count != (int64_t)nmem) {
            snprintf(why, cap, "%s: member_count %lld, members %zu", s->name, (long long)count, nmem);
            bad = 1;
        } else if (strcmp(crm_map_str(st, "state", ""), "done") != 0) {
            snprintf(why, cap, "%s: state %s", s->name, crm_map_str(st, "state", "?"));
            bad = 1;
        } else if (crm_map_int(crm_map_get(r, "result"), "evaluated_at", 0) <= 0) {
            snprintf(why, cap, "%s: no evaluated_at", s->name);
            bad = 1;
        }
        crm_value_free(r);
    }
    free(exp);
    free(got);
    crm_value_free(members);
    return bad;
}

/* Polls until every segment checks out (the hooks have settled), or fails. */
static void await_all(fixture *f, seg *segs, size_t n, double deadline_s, const char *when)
{
    double t0 = crm_test_now_s();
    char why[512] = "";
    for (;;) {
        crm_value *contacts = fetch_all(&f->c, "contacts", NULL);
        int bad = 0;
        for (size_t i = 0; i < n && !bad; i++)
            bad = check_segment(f, contacts, &segs[i], why, sizeof why);
        if (!bad) {
            size_t total = 0;
            for (size_t i = 0; i < n; i++) {
                size_t k = 0;
                for (size_t j = 0; !segs[i].deleted && j < contacts->u.arr.n; j++)
                    k += (size_t)segs[i].pred(contacts->u.arr.items[j]);
                total += k;
            }
            printf("# %s: %zu contacts, %zu memberships over %zu segments equal brute force "
                   "(settled in %.2f s)\n",
                   when, contacts->u.arr.n, total, n, crm_test_now_s() - t0);
            crm_value_free(contacts);
            return;
        }
        crm_value_free(contacts);
        if (crm_test_now_s() - t0 > deadline_s)
            fail_msg("%s: not settled after %.0f s: %s", when, deadline_s, why);
        usleep(100000);
    }
}

static void create_segment(fixture *f, seg *s)
{
    crm_value *r = req_ok(&f->c, "create segment",
                          "{\"op\": \"create\", \"collection\": \"segments\", \"record\": "
                          "{\"name\": \"%s\", \"rules\": %s, \"member_count\": 999}}",
                          s->name, s->rule);
    const crm_value *res = crm_map_get(r, "result");
    snprintf(s->id, sizeof s->id, "%s", crm_map_str(res, "id", ""));
    assert_int_equal(crm_map_int(res, "member_count", -1), 0); /* not the client's 999 */
    crm_value_free(r);
}

/* ---- tests ---- */

static void bad_rules_are_rejected(void **state)
{
    fixture *f = *state;
    static const struct {
        const char *rules, *message;
    } bad[] = {
        {"{\"all\": [{\"field\": \"citty\", \"eq\": \"Berlin\"}]}", "rules.all[0]: unknown field \"citty\""},
        {"{\"all\": [{\"field\": \"city\", \"equals\": \"Berlin\"}]}", "rules.all[0]: unknown key \"equals\""},
        {"{\"all\": [{\"field\": \"total_spent\", \"gte\": \"lots\"}]}",
         "rules.all[0].gte: total_spent is a number field (int), got a string"},
        {"{\"any\": []}", "rules: \"any\" needs at least one condition"},
        {"{\"all\": [{\"any\": [{\"all\": [{\"field\": \"city\", \"eq\": \"Rome\"}]}]}]}",
         "rules.all[0].any[0]: groups nest at most 2 deep"},
        {"{\"stage\": \"vip\"}", "rules: \"vip\" is not a value of lifecycle_stage"},
        {"{\"tags\": {\"some\": [\"vip\"]}}", "rules: tags: unknown key \"some\""},
        {"{\"score\": \"city\", \"eq\": \"Rome\"}", "rules: \"city\" is not a value score"},
        {"{\"field\": \"city\", \"in\": \"Rome\"}", "rules: in needs a non-empty list, got a string"},
        {"{\"field\": \"city\", \"eq\": \"Rome\", \"ne\": \"Oslo\"}", "rules: one operator per condition"},
        {"{\"field\": \"consent_email\", \"gt\": true}", "rules.gt: consent_email is a bool"},
        {"{\"whatever\": 1}", "rules: unknown condition"},
    };
    crm_value *r;
    char id[64];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        r = req(&f->c, "{\"op\": \"create\", \"collection\": \"segments\", \"record\": "
                       "{\"name\": \"bad %zu\", \"rules\": %s}}",
                i, bad[i].rules);
        assert_string_equal(ws_code(r), "REJECTED");
        if (!strstr(ws_message(r), bad[i].message))
            fail_msg("rule %s: message \"%s\" lacks \"%s\"", bad[i].rules, ws_message(r), bad[i].message);
        crm_value_free(r);
        /* the method says the same */
        r = req_ok(&f->c, "validate", "{\"op\": \"call\", \"method\": \"segments.validate\", "
                                      "\"params\": {\"rules\": %s}}", bad[i].rules);
        assert_false(crm_map_get(crm_map_get(r, "result"), "ok")->u.b);
        assert_non_null(strstr(crm_map_str(crm_map_get(r, "result"), "error", ""), bad[i].message));
        crm_value_free(r);
    }
    r = req(&f->c, "{\"op\": \"create\", \"collection\": \"segments\", \"record\": {\"name\": \"norules\"}}");
    assert_string_equal(ws_code(r), "REJECTED");
    assert_non_null(strstr(ws_message(r), "a segment needs rules"));
    crm_value_free(r);
    r = req(&f->c, "{\"op\": \"create\", \"collection\": \"segments\", \"record\": {\"name\": \"co\", "
                   "\"target\": \"companies\", \"rules\": %s}}", RULE_A);
    /* the schema says what the plugin evaluates: contacts only */
    assert_string_equal(ws_code(r), "VALIDATION");
    assert_non_null(strstr(ws_message(r), "must be one of \"contacts\""));
    crm_value_free(r);

    /* a good one, with a field segments.json adds; then a bad edit of it */
    r = req_ok(&f->c, "good", "{\"op\": \"create\", \"collection\": \"segments\", \"record\": "
                              "{\"name\": \"nick\", \"rules\": {\"field\": \"nickname\", \"exists\": true}}}");
    snprintf(id, sizeof id, "%s", crm_map_str(crm_map_get(r, "result"), "id", ""));
    crm_value_free(r);
    r = req(&f->c, "{\"op\": \"update\", \"collection\": \"segments\", \"id\": \"%s\", \"patch\": "
                   "{\"rules\": {\"field\": \"nickname\", \"exists\": 1}}}", id);
    assert_string_equal(ws_code(r), "REJECTED");
    assert_non_null(strstr(ws_message(r), "exists needs true or false"));
    crm_value_free(r);
    /* a client cannot set member_count; a rename passes */
    r = req_ok(&f->c, "rename", "{\"op\": \"update\", \"collection\": \"segments\", \"id\": \"%s\", "
                                "\"patch\": {\"name\": \"nick2\", \"member_count\": 77}}", id);
    assert_int_equal(crm_map_int(crm_map_get(r, "result"), "member_count", -1), 0);
    crm_value_free(r);
    r = req_ok(&f->c, "delete", "{\"op\": \"delete\", \"collection\": \"segments\", \"id\": \"%s\"}", id);
    crm_value_free(r);
}

/* A rule may not name a field hidden from the writing client's role: the
 * bundled marketing role may write segments and read their members but not
 * see contacts' email, and a rule on an email prefix recovered a hidden
 * email one character at a time. */
static void rules_cannot_use_hidden_fields(void **state)
{
    fixture *f = *state;
    ws_client m;
    char *tok;
    crm_value *r;
    assert_non_null(tok = crmd_token(&f->p, "marketing"));
    assert_int_equal(ws_connect(&m, f->p.port, "crm.v1.json", NULL, NULL), 0);
    assert_int_equal(ws_auth(&m, tok, 5000), 0);
    r = req(&m, "{\"op\": \"create\", \"collection\": \"segments\", \"record\": {\"name\": \"probe\", "
                "\"rules\": {\"all\": [{\"field\": \"email\", \"prefix\": \"a\"}]}}}");
    assert_string_equal(ws_code(r), "REJECTED");
    assert_non_null(strstr(ws_message(r), "field \"email\" is hidden from role marketing"));
    crm_value_free(r);
    r = req(&m, "{\"op\": \"create\", \"collection\": \"segments\", \"record\": {\"name\": \"probe2\", "
                "\"rules\": {\"any\": [{\"field\": \"city\", \"eq\": \"Oslo\"}, "
                "{\"field\": \"phone\", \"exists\": true}]}}}");
    assert_string_equal(ws_code(r), "REJECTED");
    assert_non_null(strstr(ws_message(r), "field \"phone\" is hidden from role marketing"));
    crm_value_free(r);
    /* a rule on fields it sees goes through; so does the admin's email rule */
    r = req_ok(&m, "visible", "{\"op\": \"create\", \"collection\": \"segments\", \"record\": "
                              "{\"name\": \"oslo\", \"rules\": {\"all\": [{\"field\": \"city\", \"eq\": \"Oslo\"}]}}}");
    crm_value_free(r);
    r = req_ok(&f->c, "admin email rule", "{\"op\": \"create\", \"collection\": \"segments\", \"record\": "
                                         "{\"name\": \"by mail\", \"rules\": {\"all\": [{\"field\": \"email\", "
                                         "\"prefix\": \"a\"}]}}}");
    crm_value_free(r);
    ws_close(&m);
    free(tok);
}

static void membership_equals_brute_force(void **state)
{
    fixture *f = *state;
    seg segs[] = {{"A berlin big", RULE_A, pred_a, "", 0},
                  {"B vip or loyal", RULE_B1, pred_b1, "", 0},
                  {"C recent safe", RULE_C, pred_c, "", 0},
                  {"D no email south", RULE_D, pred_d, "", 0},
                  {"E not vip", RULE_E, pred_e, "", 0}};
    const size_t nseg = sizeof segs / sizeof *segs;
    idlist ids = {0};
    double t0, max_ping = 0;
    int saw_running = 0, pings = 0, pings_while_running = 0;
    int64_t chunks = 0;
    crm_value *r;
    int sub_ok = 0;

    for (int i = 0; i < N_CONTACTS; i += 50)
        create_contacts(f, &ids, i, 50);

    /* segments over existing contacts: the backfill, in chunks, while c2 is served */
    for (size_t i = 0; i < nseg; i++)
        create_segment(f, &segs[i]);
    t0 = crm_test_now_s();
    for (;;) {
        double p0 = crm_test_now_s(), dt;
        const crm_value *st;
        r = req_ok(&f->c2, "ping", "{\"op\": \"ping\"}");
        crm_value_free(r);
        dt = crm_test_now_s() - p0;
        if (dt > max_ping)
            max_ping = dt;
        pings++;
        r = req_ok(&f->c2, "get", "{\"op\": \"get\", \"collection\": \"segments\", \"id\": \"%s\"}",
                   segs[4].id);
        st = crm_map_get(crm_map_get(crm_map_get(r, "result"), "extra"), "segmentation");
        if (strcmp(crm_map_str(st, "state", ""), "backfilling") == 0 &&
            crm_map_int(st, "chunks", 0) > 0) {
            saw_running = 1;
            pings_while_running++;
        }
        if (strcmp(crm_map_str(st, "state", ""), "done") == 0) {
            chunks = crm_map_int(st, "chunks", 0);
            assert_int_equal(crm_map_int(st, "scanned", 0), N_CONTACTS);
            assert_int_equal(crm_map_int(st, "run", 0), 1);
            crm_value_free(r);
            break;
        }
        crm_value_free(r);
        if (crm_test_now_s() - t0 > 60)
            fail_msg("the backfill did not finish in 60 s");
        usleep(10000);
    }
    printf("# backfill of %d contacts: %lld chunks in %.2f s; %d pings answered meanwhile "
           "(%d while it ran), slowest %.1f ms\n",
           N_CONTACTS, (long long)chunks, crm_test_now_s() - t0, pings, pings_while_running, max_ping * 1000);
    assert_true(chunks >= N_CONTACTS / CHUNK);
    assert_true(saw_running);
    assert_true(pings_while_running >= 2);
    assert_true(max_ping < 3.0);
    await_all(f, segs, nseg, 60, "after the backfill");

    /* a subscriber to segment A's members sees a contact enter */
    r = req_ok(&f->c2, "subscribe", "{\"op\": \"subscribe\", \"collection\": \"segment_members\", "
                                    "\"where\": {\"segment\": \"%s\"}}", segs[0].id);
    crm_value_free(r);
    r = req_ok(&f->c, "enter A", "{\"op\": \"update\", \"collection\": \"contacts\", \"id\": \"%s\", "
                                 "\"patch\": {\"city\": \"Berlin\", \"total_spent\": 99999}}", ids.v[0]);
    crm_value_free(r);
    t0 = crm_test_now_s();
    while (!sub_ok && crm_test_now_s() - t0 < 10) {
        crm_value *v = ws_recv(&f->c2, 1000, NULL);
        if (v && strcmp(crm_map_str(v, "event", ""), "change") == 0 &&
            strcmp(crm_map_str(crm_map_get(v, "record"), "contact", ""), ids.v[0]) == 0)
            sub_ok = 1;
        crm_value_free(v);
    }
    assert_true(sub_ok);

    /* random changes, with segment edits in between */
    for (int done = 0, round = 0; done < N_CHANGES; round++) {
        char *bodies[50];
        crm_value *replies[50];
        char *kinds = calloc(50, 1);
        size_t n = 0;
        for (; n < 50; n++, done++) {
            uint32_t k = rnd(100);
            char *s = NULL;
            if (k < 8 || ids.n < 50) {
                kinds[n] = 'c';
                bodies[n] = contact_body(1000 + done);
                continue;
            }
            uint32_t pick = rnd((uint32_t)ids.n);
            if (k < 13) {
                kinds[n] = 'd';
                append(&s, "{\"op\": \"delete\", \"collection\": \"contacts\", \"id\": \"%s\"}",
                       ids.v[pick]);
                free(ids.v[pick]); /* forget it now: never touched twice in a batch */
                ids.v[pick] = ids.v[--ids.n];
            } else {
                int w1 = (int)rnd(8), w2 = (int)rnd(8);
                kinds[n] = 'u';
                append(&s, "{\"op\": \"update\", \"collection\": \"contacts\", \"id\": \"%s\", "
                           "\"patch\": {", ids.v[pick]);
                random_field(&s, w1, 1);
                if (w2 != w1) {
                    append(&s, ", ");
                    random_field(&s, w2, 1);
                }
                append(&s, "}}");
            }
            bodies[n] = s;
        }
        pipeline(&f->c, bodies, n, replies);
        for (size_t i = 0; i < n; i++) {
            if (strcmp(ws_code(replies[i]), "OK") != 0)
                fail_msg("change: %s %s (%s)", ws_code(replies[i]), ws_message(replies[i]), bodies[i]);
            if (kinds[i] == 'c')
                ids_add(&ids, crm_map_str(crm_map_get(replies[i], "result"), "id", ""));
            free(bodies[i]);
            crm_value_free(replies[i]);
        }
        free(kinds);
        if (round == 10) { /* edit B's rule, deactivate D, delete E */
            r = req_ok(&f->c, "edit B", "{\"op\": \"update\", \"collection\": \"segments\", \"id\": "
                                        "\"%s\", \"patch\": {\"rules\": %s}}", segs[1].id, RULE_B2);
            crm_value_free(r);
            segs[1].pred = pred_b2;
            r = req_ok(&f->c, "deactivate D", "{\"op\": \"update\", \"collection\": \"segments\", "
                                              "\"id\": \"%s\", \"patch\": {\"active\": false}}", segs[3].id);
            crm_value_free(r);
            r = req_ok(&f->c, "delete E", "{\"op\": \"delete\", \"collection\": \"segments\", "
                                          "\"id\": \"%s\"}", segs[4].id);
            crm_value_free(r);
            segs[4].deleted = 1;
        }
        if (round == 20) {
            r = req_ok(&f->c, "reactivate D", "{\"op\": \"update\", \"collection\": \"segments\", "
                                              "\"id\": \"%s\", \"patch\": {\"active\": true}}", segs[3].id);
            crm_value_free(r);
        }
    }
    await_all(f, segs, nseg, 120, "after the random changes");

    /* D ran again when reactivated; B ran again for its edit */
    r = req_ok(&f->c, "get B", "{\"op\": \"get\", \"collection\": \"segments\", \"id\": \"%s\"}", segs[1].id);
    assert_true(crm_map_int(crm_map_get(crm_map_get(crm_map_get(r, "result"), "extra"), "segmentation"),
                            "run", 0) >= 2);
    crm_value_free(r);
    r = req_ok(&f->c, "get D", "{\"op\": \"get\", \"collection\": \"segments\", \"id\": \"%s\"}", segs[3].id);
    assert_true(crm_map_int(crm_map_get(crm_map_get(crm_map_get(r, "result"), "extra"), "segmentation"),
                            "run", 0) >= 2);
    crm_value_free(r);
    /* no after-hook or timer of the plugin failed, not even once */
    {
        int status;
        char *body = NULL;
        assert_int_equal(http_get(f->p.port, "/metrics", &status, &body), 0);
        assert_int_equal(status, 200);
        if (!strstr(body, "crmd_hook_failures_total 0\n") ||
            !strstr(body, "crmd_timer_failures_total 0\n"))
            fail_msg("hooks or timers failed:\n%s", body);
        free(body);
    }
    r = req_ok(&f->c, "dead letters", "{\"op\": \"query\", \"collection\": \"dead_letters\"}");
    assert_int_equal(crm_map_get(crm_map_get(r, "result"), "records")->u.arr.n, 0);
    crm_value_free(r);
    for (size_t i = 0; i < ids.n; i++)
        free(ids.v[i]);
    free(ids.v);
}

/* A run under way when the server stops goes on after the restart from its
 * cursor: same run, every contact scanned exactly once. */
static void backfill_survives_restart(void **state)
{
    fixture *f = *state;
    seg s = {"F restart", RULE_C, pred_c, "", 0};
    int64_t chunks_before = 0, ncontacts;
    double t0 = crm_test_now_s();
    char *data;
    crm_value *r, *contacts;
    const crm_value *st;

    create_segment(f, &s);
    for (;;) {
        r = req_ok(&f->c, "get", "{\"op\": \"get\", \"collection\": \"segments\", \"id\": \"%s\"}", s.id);
        st = crm_map_get(crm_map_get(crm_map_get(r, "result"), "extra"), "segmentation");
        if (strcmp(crm_map_str(st, "state", ""), "backfilling") == 0 && crm_map_int(st, "chunks", 0) >= 2)
            chunks_before = crm_map_int(st, "chunks", 0);
        if (strcmp(crm_map_str(st, "state", ""), "done") == 0)
            fail_msg("the run finished before the restart");
        crm_value_free(r);
        if (chunks_before)
            break;
        if (crm_test_now_s() - t0 > 30)
            fail_msg("the run did not start");
        usleep(5000);
    }
    ws_close(&f->c);
    ws_close(&f->c2);
    data = strdup(f->p.data);
    assert_int_equal(crmd_stop_keep(&f->p), 0);
    assert_int_equal(crmd_start_with(&f->p, data, "--plugins %s", f->plugins), 0);
    free(data);
    auth(f, &f->c);
    auth(f, &f->c2);
    await_all(f, &s, 1, 60, "after a restart in the middle of a run");
    contacts = fetch_all(&f->c, "contacts", NULL);
    ncontacts = (int64_t)contacts->u.arr.n;
    crm_value_free(contacts);
    r = req_ok(&f->c, "get", "{\"op\": \"get\", \"collection\": \"segments\", \"id\": \"%s\"}", s.id);
    st = crm_map_get(crm_map_get(crm_map_get(r, "result"), "extra"), "segmentation");
    printf("# restarted after chunk %lld of the run; it ended after chunk %lld, %lld contacts scanned\n",
           (long long)chunks_before, (long long)crm_map_int(st, "chunks", 0),
           (long long)crm_map_int(st, "scanned", 0));
    assert_int_equal(crm_map_int(st, "run", 0), 1);
    assert_true(crm_map_int(st, "chunks", 0) > chunks_before);
    assert_int_equal(crm_map_int(st, "scanned", 0), ncontacts);
    crm_value_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bad_rules_are_rejected),
        cmocka_unit_test(membership_equals_brute_force),
        cmocka_unit_test(backfill_survives_restart),
        cmocka_unit_test(rules_cannot_use_hidden_fields),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
