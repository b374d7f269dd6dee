/*
 * segments -- segmentation: declarative rules stored in `segments`, live
 * membership stored in `segment_members` (docs/features/segmentation.md).
 *
 * Records:
 *  - segments: name, rules (the rule tree below), active, target (only
 *    "contacts" is evaluated), member_count and evaluated_at (kept by this
 *    plugin; a client's own change to them is ignored), extra.segmentation
 *    (the status of the latest backfill: state, run, chunks, scanned, added,
 *    removed, started_at, finished_at, error).
 *  - segment_members: {segment, contact, key = "SEGMENT/CONTACT", since}, one
 *    per contact that matches an active segment; clients query or subscribe
 *    with where {"segment": ID}.
 *
 * Hooks:
 *  - before segments.create / segments.update ("segments.validate"): a new
 *    or changed rule is checked and a bad one REJECTED with a message naming
 *    the place and the problem ("rules.all[2]: unknown field \"citty\"").
 *  - after contacts.* ("segments.contacts"): the contact, as it is now, is
 *    evaluated against every active segment; memberships are created and
 *    removed, and member_count moves with them in the same transaction.
 *  - after segments.* ("segments.segments"): a created segment, a changed
 *    rule, a change of active, or a delete starts a backfill.
 *  - timer segments.backfill (keyed by the segment id, so a newer run
 *    replaces an older one): one chunk of chunk_size contacts (query with a
 *    cursor), then it schedules itself with the cursor.  A deleted or
 *    inactive segment has its members removed, chunk_size per call.
 *  - methods segments.validate {rules} and segments.refresh {segment}.
 *
 * Everything a consultant may change is in segments.json (see DEFAULTS).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <crm/plugin.h>

static const crm_api *api;

#define TIMER "segments.backfill"
#define MEMBERS "segment_members"
#define MAX_DEPTH_CAP 8

/* Used for every key segments.json does not set.  "fields" lists the
 * contact fields a rule may name, with their type: "string", "int",
 * "number", "timestamp", "bool", "ref", "array" (of strings), "map" (any
 * path below it, e.g. extra.vip_level) or a list of enum values.  A key of
 * segments.json's "fields" adds a field or replaces its type. */
static const char DEFAULTS[] =
    "{\"chunk_size\": 100, \"chunk_pause_seconds\": 0,"
    " \"backfill_share\": 0.5, \"backfill_burst_ms\": 25,"
    " \"max_conditions\": 100, \"max_depth\": 2, \"max_in_values\": 1000,"
    " \"tags_field\": \"tags\", \"stage_field\": \"lifecycle_stage\","
    " \"score_fields\": [\"rfm_r\", \"rfm_f\", \"rfm_m\", \"value_class\", \"abc_class\","
    "   \"clv\", \"churn_risk\"],"
    " \"fields\": {"
    "  \"id\": \"string\", \"_rev\": \"int\", \"_created\": \"timestamp\","
    "  \"_updated\": \"timestamp\","
    "  \"code\": \"string\", \"name\": \"string\", \"job_title\": \"string\","
    "  \"email\": \"string\", \"phone\": \"string\", \"company\": \"ref\","
    "  \"street\": \"string\", \"city\": \"string\", \"postcode\": \"string\","
    "  \"country\": \"string\", \"region\": \"string\", \"industry\": \"string\","
    "  \"language\": \"string\", \"birth_date\": \"timestamp\", \"owner\": \"string\","
    "  \"source\": [\"web\", \"referral\", \"event\", \"campaign\", \"partner\", \"store\","
    "             \"phone\", \"social\", \"import\", \"other\"],"
    "  \"customer_type\": [\"consumer\", \"b2b\", \"channel\"],"
    "  \"credit_limit\": \"int\","
    "  \"payment_terms\": [\"prepaid\", \"on_delivery\", \"net_15\", \"net_30\", \"net_45\","
    "                    \"net_60\", \"net_90\"],"
    "  \"currency\": \"string\", \"tags\": \"array\","
    "  \"lifecycle_stage\": [\"prospect\", \"new_customer\", \"repeat\", \"loyal\", \"at_risk\","
    "                      \"churned\"],"
    "  \"stage_changed_at\": \"timestamp\","
    "  \"life_phase\": [\"acquisition\", \"growth\", \"maturity\", \"decline\", \"termination\"],"
    "  \"value_class\": [\"most_valuable\", \"most_growable\", \"maintain\", \"below_zero\"],"
    "  \"abc_class\": [\"A\", \"B\", \"C\"],"
    "  \"consent_email\": \"bool\", \"consent_sms\": \"bool\","
    "  \"consent_updated_at\": \"timestamp\", \"last_order_at\": \"timestamp\","
    "  \"last_interaction_at\": \"timestamp\", \"order_count\": \"int\","
    "  \"total_spent\": \"int\", \"rfm_r\": \"int\", \"rfm_f\": \"int\", \"rfm_m\": \"int\","
    "  \"clv\": \"int\", \"churn_risk\": \"number\", \"notes\": \"string\", \"extra\": \"map\"}}";

/* The configuration in force: DEFAULTS overlaid with segments.json. */
static struct {
    crm_value *all; /* ours */
    int64_t chunk_size, max_conditions, max_depth, max_in;
    double pause, share, burst_ms;
    const char *tags_field, *stage_field;
    const crm_value *score_fields, *fields; /* borrowed from all */
} cfg;

/* Non-zero while this plugin writes a segment: the before-hook then lets
 * member_count, evaluated_at and extra.segmentation through. */
static int internal_write;

/* The active, usable segments (ours; NULL: not loaded).  Dropped whenever
 * the after-hook on segments sees a change that matters; that hook also
 * starts a backfill, which walks every contact after the drop, so a
 * contact evaluated meanwhile with the older list is corrected by it. */
static crm_value *seg_cache;

/* Backfill pacing, across all segments (timers due together run in the
 * same round): a bucket of backfill_burst_ms that refills at backfill_share
 * of wall time.  A chunk runs only while the bucket is not empty; otherwise
 * it is put off until it refills.  In memory only: it paces, it keeps no
 * state that matters. */
static struct {
    double tokens, last;
    int started;
} pace;

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* 0 when a chunk may run now, else the seconds to wait. */
static double pace_wait(void)
{
    double now = mono_ms();
    if (!pace.started) {
        pace.started = 1;
        pace.tokens = cfg.burst_ms;
        pace.last = now;
    }
    pace.tokens += (now - pace.last) * cfg.share;
    if (pace.tokens > cfg.burst_ms)
        pace.tokens = cfg.burst_ms;
    pace.last = now;
    return pace.tokens > 0 ? 0 : -pace.tokens / cfg.share / 1000.0 + 0.002;
}

/* ---- small helpers ---- */

static const char *str_of(const crm_value *map, const char *key)
{
    const crm_value *v = map && map->type == CRM_T_MAP ? api->map_get(map, key) : NULL;
    return v && v->type == CRM_T_STR ? v->u.str.s : NULL;
}

static int64_t int_of(const crm_value *map, const char *key, int64_t fallback)
{
    const crm_value *v = map && map->type == CRM_T_MAP ? api->map_get(map, key) : NULL;
    if (v && v->type == CRM_T_INT)
        return v->u.i;
    if (v && v->type == CRM_T_NUM)
        return (int64_t)v->u.n;
    return fallback;
}

static int put(crm_value *map, const char *key, crm_value *v)
{
    if (!v)
        return -1;
    return api->map_set(map, key, v);
}

static int put_str(crm_value *map, const char *key, const char *s)
{
    return put(map, key, api->value_str(s, strlen(s)));
}

static int oom(crm_ctx *ctx)
{
    return api->error(ctx, CRM_INTERNAL, "segments: out of memory");
}

/* Deep equality through JSON text (both NULL/absent are equal). */
static int same_json(const crm_value *a, const crm_value *b)
{
    char *ja, *jb;
    int eq;
    if (a && a->type == CRM_T_NIL)
        a = NULL;
    if (b && b->type == CRM_T_NIL)
        b = NULL;
    if (!a || !b)
        return a == b;
    ja = api->to_json(a, NULL);
    jb = api->to_json(b, NULL);
    eq = ja && jb && strcmp(ja, jb) == 0;
    api->mem_free(ja);
    api->mem_free(jb);
    return eq;
}

/* ---- rule checking ---- */

typedef struct vstate {
    char msg[256];
    int64_t nconds;
} vstate;

static int vfail(vstate *vs, const char *path, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static int vfail(vstate *vs, const char *path, const char *fmt, ...)
{
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(vs->msg, sizeof vs->msg, "%s: %s", path, what);
    return -1;
}

static const char *const FIELD_OPS[] = {"eq", "ne", "gt", "gte", "lt", "lte", "in", "exists",
                                        "prefix"};
#define N_FIELD_OPS (sizeof FIELD_OPS / sizeof *FIELD_OPS)

static int is_field_op(const char *k)
{
    for (size_t i = 0; i < N_FIELD_OPS; i++)
        if (strcmp(k, FIELD_OPS[i]) == 0)
            return 1;
    return 0;
}

static int is_number(const crm_value *v)
{
    return v->type == CRM_T_INT || v->type == CRM_T_NUM;
}

static const char *type_name(const crm_value *v)
{
    switch (v->type) {
    case CRM_T_NIL: return "null";
    case CRM_T_BOOL: return "a bool";
    case CRM_T_INT: case CRM_T_NUM: return "a number";
    case CRM_T_STR: return "a string";
    case CRM_T_ARR: return "a list";
    default: return "a map";
    }
}

/* While a client's write of a segment is checked: its ctx and role, so a
 * rule cannot name a contact field roles.json hides from that role (the
 * members it selects would reveal the field, one prefix at a time). */
static crm_ctx *rule_ctx;
static const char *rule_role;

/* The type descriptor of a field path: the configured type of its first
 * part; a path with dots needs a "map" field.  NULL and a message if the
 * field is unknown, or hidden from the writing client's role. */
static const crm_value *field_type(const char *path, vstate *vs, const char *where, int *below_map)
{
    char base[80];
    const char *dot = strchr(path, '.');
    size_t n = dot ? (size_t)(dot - path) : strlen(path);
    const crm_value *t;
    *below_map = 0;
    if (n == 0 || n >= sizeof base || (dot && dot[1] == '\0')) {
        vfail(vs, where, "\"%s\" is not a field name", path);
        return NULL;
    }
    memcpy(base, path, n);
    base[n] = '\0';
    t = api->map_get(cfg.fields, base);
    if (!t) {
        vfail(vs, where, "unknown field \"%s\" (segments.json \"fields\" lists the fields a rule may use)",
              base);
        return NULL;
    }
    if (rule_role && CRM_API_HAS(api, field_hidden) &&
        api->field_hidden(rule_ctx, rule_role, "contacts", base)) {
        vfail(vs, where, "field \"%s\" is hidden from role %s (roles.json): a rule may not use it",
              base, rule_role);
        return NULL;
    }
    if (dot) {
        if (t->type != CRM_T_STR || strcmp(t->u.str.s, "map") != 0) {
            vfail(vs, where, "\"%s\": only a map field has parts below it, %s is not a map", path,
                  base);
            return NULL;
        }
        *below_map = 1;
    }
    return t;
}

/* Does operand v suit a field of type t for op? */
static int operand_ok(const crm_value *t, int below_map, const char *op, const crm_value *v,
                      const char *field, vstate *vs, const char *where)
{
    const char *ts = t->type == CRM_T_STR ? t->u.str.s : "enum";
    int ordered = strcmp(op, "gt") == 0 || strcmp(op, "gte") == 0 || strcmp(op, "lt") == 0 ||
                  strcmp(op, "lte") == 0;
    if (v->type == CRM_T_NIL) {
        if (strcmp(op, "eq") == 0 || strcmp(op, "ne") == 0 || strcmp(op, "in") == 0)
            return 0; /* eq null = absent, ne null = present */
        return vfail(vs, where, "%s needs a value, not null", op);
    }
    if (v->type == CRM_T_ARR || v->type == CRM_T_MAP)
        return vfail(vs, where, "%s needs a single value, got %s", op, type_name(v));
    if (below_map)
        return ordered && v->type == CRM_T_BOOL
                   ? vfail(vs, where, "%s does not order bools", op)
                   : 0;
    if (strcmp(op, "prefix") == 0 && v->type != CRM_T_STR)
        return vfail(vs, where, "prefix needs a string, got %s", type_name(v));
    if (!strcmp(ts, "int") || !strcmp(ts, "number") || !strcmp(ts, "timestamp")) {
        if (strcmp(op, "prefix") == 0)
            return vfail(vs, where, "prefix works on text, and %s is a number", field);
        if (!is_number(v))
            return vfail(vs, where, "%s is a number field (%s), got %s", field, ts, type_name(v));
        return 0;
    }
    if (!strcmp(ts, "bool")) {
        if (ordered || strcmp(op, "prefix") == 0)
            return vfail(vs, where, "%s is a bool: use eq, ne, in or exists", field);
        if (v->type != CRM_T_BOOL)
            return vfail(vs, where, "%s is a bool field, got %s", field, type_name(v));
        return 0;
    }
    if (!strcmp(ts, "map"))
        return vfail(vs, where, "%s is a map: compare a part of it, e.g. \"%s.key\"", field, field);
    /* text: string, ref, array (of strings), enum */
    if (v->type != CRM_T_STR)
        return vfail(vs, where, "%s holds text, got %s", field, type_name(v));
    if (t->type == CRM_T_ARR && !ordered && strcmp(op, "prefix") != 0) {
        for (size_t i = 0; i < t->u.arr.n; i++)
            if (t->u.arr.items[i]->type == CRM_T_STR &&
                strcmp(t->u.arr.items[i]->u.str.s, v->u.str.s) == 0)
                return 0;
        return vfail(vs, where, "\"%s\" is not a value of %s", v->u.str.s, field);
    }
    return 0;
}

/* {"field": F, OP: V} or {"score": F, OP: V} */
static int check_field_cond(const crm_value *c, const char *kind, vstate *vs, const char *where)
{
    const crm_value *f = api->map_get(c, kind), *t, *opv = NULL;
    const char *op = NULL;
    int below_map;
    if (f->type != CRM_T_STR)
        return vfail(vs, where, "\"%s\" must name a field, got %s", kind, type_name(f));
    for (size_t i = 0; i < c->u.map.n; i++) {
        const char *k = c->u.map.kv[i].key;
        if (strcmp(k, kind) == 0)
            continue;
        if (!is_field_op(k))
            return vfail(vs, where,
                         "unknown key \"%s\" (operators: eq ne gt gte lt lte in exists prefix)", k);
        if (op)
            return vfail(vs, where, "one operator per condition, found %s and %s", op, k);
        op = k;
        opv = c->u.map.kv[i].val;
    }
    if (!op)
        return vfail(vs, where, "condition on %s has no operator (eq ne gt gte lt lte in exists prefix)",
                     f->u.str.s);
    if (strcmp(kind, "score") == 0) {
        int known = 0;
        for (size_t i = 0; cfg.score_fields && i < cfg.score_fields->u.arr.n; i++)
            if (cfg.score_fields->u.arr.items[i]->type == CRM_T_STR &&
                strcmp(cfg.score_fields->u.arr.items[i]->u.str.s, f->u.str.s) == 0)
                known = 1;
        if (!known)
            return vfail(vs, where, "\"%s\" is not a value score (segments.json \"score_fields\")",
                         f->u.str.s);
    }
    if (!(t = field_type(f->u.str.s, vs, where, &below_map)))
        return -1;
    if (strcmp(op, "exists") == 0) {
        if (opv->type != CRM_T_BOOL)
            return vfail(vs, where, "exists needs true or false, got %s", type_name(opv));
        return 0;
    }
    if (strcmp(op, "in") == 0) {
        if (opv->type != CRM_T_ARR || opv->u.arr.n == 0)
            return vfail(vs, where, "in needs a non-empty list, got %s",
                         opv->type == CRM_T_ARR ? "an empty list" : type_name(opv));
        if ((int64_t)opv->u.arr.n > cfg.max_in)
            return vfail(vs, where, "in has %zu values, at most %lld are allowed", opv->u.arr.n,
                         (long long)cfg.max_in);
        for (size_t i = 0; i < opv->u.arr.n; i++) {
            char w2[200];
            snprintf(w2, sizeof w2, "%s.in[%zu]", where, i);
            if (operand_ok(t, below_map, "in", opv->u.arr.items[i], f->u.str.s, vs, w2))
                return -1;
        }
        return 0;
    }
    {
        char w2[200];
        snprintf(w2, sizeof w2, "%s.%s", where, op);
        return operand_ok(t, below_map, op, opv, f->u.str.s, vs, w2);
    }
}

static int check_node(const crm_value *r, int depth, vstate *vs, const char *where);

static int check_group(const crm_value *list, const char *kind, int depth, vstate *vs,
                       const char *where)
{
    if (depth >= cfg.max_depth)
        return vfail(vs, where, "groups nest at most %lld deep (segments.json \"max_depth\")",
                     (long long)cfg.max_depth);
    if (list->type != CRM_T_ARR)
        return vfail(vs, where, "\"%s\" needs a list of conditions, got %s", kind, type_name(list));
    if (list->u.arr.n == 0)
        return vfail(vs, where, "\"%s\" needs at least one condition", kind);
    for (size_t i = 0; i < list->u.arr.n; i++) {
        char w2[200];
        snprintf(w2, sizeof w2, "%s.%s[%zu]", where, kind, i);
        if (check_node(list->u.arr.items[i], depth + 1, vs, w2))
            return -1;
    }
    return 0;
}

static int check_node(const crm_value *r, int depth, vstate *vs, const char *where)
{
    const crm_value *v;
    if (r->type != CRM_T_MAP)
        return vfail(vs, where, "a condition must be a map, got %s", type_name(r));
    if (r->u.map.n == 0)
        return vfail(vs, where, "empty condition");
    if (++vs->nconds > cfg.max_conditions)
        return vfail(vs, where, "more than %lld conditions (segments.json \"max_conditions\")",
                     (long long)cfg.max_conditions);
    if ((v = api->map_get(r, "all")) || (v = api->map_get(r, "any"))) {
        const char *kind = api->map_get(r, "all") ? "all" : "any";
        if (r->u.map.n != 1)
            return vfail(vs, where, "a group has only its \"%s\" key", kind);
        return check_group(v, kind, depth, vs, where);
    }
    if (api->map_get(r, "field"))
        return check_field_cond(r, "field", vs, where);
    if (api->map_get(r, "score"))
        return check_field_cond(r, "score", vs, where);
    if ((v = api->map_get(r, "tags"))) {
        const crm_value *list;
        const char *how;
        if (r->u.map.n != 1)
            return vfail(vs, where, "a tags condition has only its \"tags\" key");
        if (v->type != CRM_T_MAP || v->u.map.n != 1)
            return vfail(vs, where, "tags needs {\"any\": [...]}, {\"all\": [...]} or {\"none\": [...]}");
        how = v->u.map.kv[0].key;
        list = v->u.map.kv[0].val;
        if (strcmp(how, "any") && strcmp(how, "all") && strcmp(how, "none"))
            return vfail(vs, where, "tags: unknown key \"%s\" (any, all or none)", how);
        if (list->type != CRM_T_ARR || list->u.arr.n == 0)
            return vfail(vs, where, "tags.%s needs a non-empty list of tags", how);
        if ((int64_t)list->u.arr.n > cfg.max_in)
            return vfail(vs, where, "tags.%s has more than %lld tags", how, (long long)cfg.max_in);
        for (size_t i = 0; i < list->u.arr.n; i++)
            if (list->u.arr.items[i]->type != CRM_T_STR)
                return vfail(vs, where, "tags.%s[%zu] must be a string, got %s", how, i,
                             type_name(list->u.arr.items[i]));
        return 0;
    }
    if ((v = api->map_get(r, "stage"))) {
        const crm_value *t = api->map_get(cfg.fields, cfg.stage_field);
        if (r->u.map.n != 1)
            return vfail(vs, where, "a stage condition has only its \"stage\" key");
        if (v->type != CRM_T_STR && (v->type != CRM_T_ARR || v->u.arr.n == 0))
            return vfail(vs, where, "stage needs a stage or a non-empty list of stages, got %s",
                         type_name(v));
        if (!t)
            return vfail(vs, where, "the stage field %s is not among the fields", cfg.stage_field);
        if (v->type == CRM_T_STR)
            return operand_ok(t, 0, "eq", v, cfg.stage_field, vs, where);
        for (size_t i = 0; i < v->u.arr.n; i++) {
            char w2[200];
            snprintf(w2, sizeof w2, "%s.stage[%zu]", where, i);
            if (v->u.arr.items[i]->type == CRM_T_NIL)
                return vfail(vs, w2, "a stage, not null");
            if (operand_ok(t, 0, "in", v->u.arr.items[i], cfg.stage_field, vs, w2))
                return -1;
        }
        return 0;
    }
    return vfail(vs, where,
                 "unknown condition (keys: all, any, field, score, tags, stage; got \"%s\")",
                 r->u.map.kv[0].key);
}

/* 0 when rules is a valid rule tree, else -1 and vs->msg. */
static int check_rules(const crm_value *rules, vstate *vs)
{
    memset(vs, 0, sizeof *vs);
    if (!rules || rules->type == CRM_T_NIL)
        return vfail(vs, "rules", "a segment needs rules, e.g. {\"all\": [{\"field\": \"city\", \"eq\": \"Berlin\"}]}");
    return check_node(rules, 0, vs, "rules");
}

/* ---- rule evaluation (on checked rules; anything odd is simply false) ---- */

static const crm_value *path_get(const crm_value *rec, const char *path)
{
    const crm_value *cur = rec;
    char part[80];
    while (cur && cur->type == CRM_T_MAP) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        if (n >= sizeof part)
            return NULL;
        memcpy(part, path, n);
        part[n] = '\0';
        cur = api->map_get(cur, part);
        if (!dot)
            return cur && cur->type != CRM_T_NIL ? cur : NULL;
        path = dot + 1;
    }
    return NULL;
}

/* -2: not comparable; else -1, 0, 1. */
static int compare(const crm_value *a, const crm_value *b)
{
    if (is_number(a) && is_number(b)) {
        if (a->type == CRM_T_INT && b->type == CRM_T_INT)
            return a->u.i < b->u.i ? -1 : a->u.i > b->u.i;
        double x = a->type == CRM_T_INT ? (double)a->u.i : a->u.n;
        double y = b->type == CRM_T_INT ? (double)b->u.i : b->u.n;
        return x < y ? -1 : x > y;
    }
    if (a->type == CRM_T_STR && b->type == CRM_T_STR) {
        size_t n = a->u.str.len < b->u.str.len ? a->u.str.len : b->u.str.len;
        int c = memcmp(a->u.str.s, b->u.str.s, n);
        if (c)
            return c < 0 ? -1 : 1;
        return a->u.str.len < b->u.str.len ? -1 : a->u.str.len > b->u.str.len;
    }
    if (a->type == CRM_T_BOOL && b->type == CRM_T_BOOL)
        return (!!a->u.b == !!b->u.b) ? 0 : -2;
    return -2;
}

/* op on one present scalar x */
static int scalar_holds(const char *op, const crm_value *x, const crm_value *v)
{
    int c;
    if (strcmp(op, "in") == 0) {
        for (size_t i = 0; i < v->u.arr.n; i++)
            if (compare(x, v->u.arr.items[i]) == 0)
                return 1;
        return 0;
    }
    if (strcmp(op, "prefix") == 0)
        return x->type == CRM_T_STR && v->type == CRM_T_STR && x->u.str.len >= v->u.str.len &&
               memcmp(x->u.str.s, v->u.str.s, v->u.str.len) == 0;
    c = compare(x, v);
    if (c == -2)
        return 0;
    if (!strcmp(op, "eq")) return c == 0;
    if (!strcmp(op, "gt")) return c > 0;
    if (!strcmp(op, "gte")) return c >= 0;
    if (!strcmp(op, "lt")) return c < 0;
    if (!strcmp(op, "lte")) return c <= 0;
    return 0;
}

/* The query op's semantics: absent only matches eq null, ne v, in lists
 * with null; a list field matches when any element does ("ne": none equal). */
static int field_holds(const crm_value *rec, const crm_value *c, const char *kind)
{
    const char *field = str_of(c, kind), *op = NULL;
    const crm_value *x, *v = NULL;
    for (size_t i = 0; i < c->u.map.n; i++)
        if (strcmp(c->u.map.kv[i].key, kind) != 0) {
            op = c->u.map.kv[i].key;
            v = c->u.map.kv[i].val;
        }
    if (!field || !op)
        return 0;
    x = path_get(rec, field);
    if (strcmp(op, "exists") == 0)
        return v->type == CRM_T_BOOL && (!!v->u.b == (x != NULL));
    if (!x) {
        if (!strcmp(op, "eq"))
            return v->type == CRM_T_NIL;
        if (!strcmp(op, "ne"))
            return v->type != CRM_T_NIL;
        if (!strcmp(op, "in") && v->type == CRM_T_ARR)
            for (size_t i = 0; i < v->u.arr.n; i++)
                if (v->u.arr.items[i]->type == CRM_T_NIL)
                    return 1;
        return 0;
    }
    if (v->type == CRM_T_NIL)
        return strcmp(op, "ne") == 0;
    if (!strcmp(op, "ne")) {
        if (x->type == CRM_T_ARR) {
            for (size_t i = 0; i < x->u.arr.n; i++)
                if (compare(x->u.arr.items[i], v) == 0)
                    return 0;
            return 1;
        }
        return compare(x, v) != 0;
    }
    if (!strcmp(op, "in") && v->type != CRM_T_ARR)
        return 0;
    if (x->type == CRM_T_ARR) {
        for (size_t i = 0; i < x->u.arr.n; i++)
            if (scalar_holds(op, x->u.arr.items[i], v))
                return 1;
        return 0;
    }
    return scalar_holds(op, x, v);
}

static int has_tag(const crm_value *tags, const crm_value *tag)
{
    if (!tags)
        return 0;
    if (tags->type == CRM_T_STR)
        return compare(tags, tag) == 0;
    if (tags->type != CRM_T_ARR)
        return 0;
    for (size_t i = 0; i < tags->u.arr.n; i++)
        if (compare(tags->u.arr.items[i], tag) == 0)
            return 1;
    return 0;
}

static int rule_holds(const crm_value *r, const crm_value *rec)
{
    const crm_value *v;
    if (!r || r->type != CRM_T_MAP)
        return 0;
    if ((v = api->map_get(r, "all"))) {
        for (size_t i = 0; v->type == CRM_T_ARR && i < v->u.arr.n; i++)
            if (!rule_holds(v->u.arr.items[i], rec))
                return 0;
        return v->type == CRM_T_ARR;
    }
    if ((v = api->map_get(r, "any"))) {
        for (size_t i = 0; v->type == CRM_T_ARR && i < v->u.arr.n; i++)
            if (rule_holds(v->u.arr.items[i], rec))
                return 1;
        return 0;
    }
    if (api->map_get(r, "field"))
        return field_holds(rec, r, "field");
    if (api->map_get(r, "score"))
        return field_holds(rec, r, "score");
    if ((v = api->map_get(r, "tags"))) {
        const crm_value *tags = path_get(rec, cfg.tags_field), *list;
        const char *how;
        size_t hits = 0;
        if (v->type != CRM_T_MAP || v->u.map.n != 1)
            return 0;
        how = v->u.map.kv[0].key;
        list = v->u.map.kv[0].val;
        if (list->type != CRM_T_ARR)
            return 0;
        for (size_t i = 0; i < list->u.arr.n; i++)
            hits += (size_t)has_tag(tags, list->u.arr.items[i]);
        if (!strcmp(how, "any"))
            return hits > 0;
        if (!strcmp(how, "all"))
            return hits == list->u.arr.n;
        return hits == 0; /* none */
    }
    if ((v = api->map_get(r, "stage"))) {
        const crm_value *st = path_get(rec, cfg.stage_field);
        if (!st)
            return 0;
        if (v->type == CRM_T_STR)
            return compare(st, v) == 0;
        for (size_t i = 0; v->type == CRM_T_ARR && i < v->u.arr.n; i++)
            if (compare(st, v->u.arr.items[i]) == 0)
                return 1;
        return 0;
    }
    return 0;
}

/* Does the segment select contacts with rules that check out now?  *why
 * (may be NULL) gets the reason it does not. */
static int segment_usable(const crm_value *seg, vstate *vs)
{
    const char *target = str_of(seg, "target");
    const crm_value *active = api->map_get(seg, "active");
    memset(vs, 0, sizeof *vs);
    if (active && active->type == CRM_T_BOOL && !active->u.b) {
        snprintf(vs->msg, sizeof vs->msg, "inactive");
        return 0;
    }
    if (target && strcmp(target, "contacts") != 0) {
        snprintf(vs->msg, sizeof vs->msg, "target %s is not evaluated (contacts only)", target);
        return 0;
    }
    return check_rules(api->map_get(seg, "rules"), vs) == 0;
}

/* ---- membership writes ---- */

typedef struct delta {
    char *seg; /* per-call memory */
    int64_t d;
} delta;

typedef struct deltas {
    delta *v;
    size_t n, cap;
} deltas;

static int delta_add(crm_ctx *ctx, deltas *ds, const char *seg, int64_t d)
{
    for (size_t i = 0; i < ds->n; i++)
        if (strcmp(ds->v[i].seg, seg) == 0) {
            ds->v[i].d += d;
            return 0;
        }
    if (ds->n == ds->cap) {
        size_t cap = ds->cap ? ds->cap * 2 : 8;
        delta *g = api->alloc(ctx, cap * sizeof *g);
        if (!g)
            return -1;
        if (ds->n)
            memcpy(g, ds->v, ds->n * sizeof *g);
        ds->v = g;
        ds->cap = cap;
    }
    size_t len = strlen(seg);
    if (!(ds->v[ds->n].seg = api->alloc(ctx, len + 1)))
        return -1;
    memcpy(ds->v[ds->n].seg, seg, len + 1);
    ds->v[ds->n].d = d;
    ds->n++;
    return 0;
}

/* Creates the membership; *added = 1 when a record was made. */
static int member_add(crm_ctx *ctx, const char *seg, const char *contact, int *added)
{
    crm_value *rec = api->value_map();
    size_t kl = strlen(seg) + strlen(contact) + 2;
    char *key = api->alloc(ctx, kl);
    int rc;
    *added = 0;
    if (!rec || !key) {
        api->value_free(rec);
        return oom(ctx);
    }
    snprintf(key, kl, "%s/%s", seg, contact);
    if (put_str(rec, "segment", seg) || put_str(rec, "contact", contact) ||
        put_str(rec, "key", key) || put(rec, "since", api->value_int(api->now(ctx)))) {
        api->value_free(rec);
        return oom(ctx);
    }
    rc = api->create(ctx, MEMBERS, rec, NULL);
    api->value_free(rec);
    if (rc == CRM_CONFLICT) /* already a member: nothing to do */
        return CRM_OK;
    if (rc == CRM_VALIDATION) {
        /* the segment was deleted further down the feed (this consumer can
         * run ahead of the one that hears of the delete): no member to add */
        crm_value *seg_rec = NULL;
        int grc = api->get(ctx, "segments", seg, &seg_rec);
        api->value_free(seg_rec);
        if (grc == CRM_NOT_FOUND)
            return CRM_OK;
    }
    if (rc == CRM_OK)
        *added = 1;
    return rc;
}

static int member_remove(crm_ctx *ctx, const crm_value *m, int *removed)
{
    const char *id = str_of(m, "id");
    int rc;
    *removed = 0;
    if (!id)
        return CRM_OK;
    rc = api->remove(ctx, MEMBERS, id, 0);
    if (rc == CRM_NOT_FOUND)
        return CRM_OK;
    if (rc == CRM_OK)
        *removed = 1;
    return rc;
}

/* Writes the segment's member_count (+d), evaluated_at and, when status is
 * given, extra.segmentation (status is taken).  A segment that is gone is
 * fine.  seg may be NULL: it is read first. */
static int segment_write(crm_ctx *ctx, const char *id, const crm_value *seg, int64_t d,
                         crm_value *status)
{
    crm_value *got = NULL, *patch = NULL, *extra = NULL;
    int64_t count;
    int rc;
    if (!seg) {
        rc = api->get(ctx, "segments", id, &got);
        if (rc == CRM_NOT_FOUND) {
            api->value_free(status);
            return CRM_OK;
        }
        if (rc != CRM_OK) {
            api->value_free(status);
            return rc;
        }
        seg = got;
    }
    count = int_of(seg, "member_count", 0) + d;
    if (count < 0) {
        api->log(api->ctx_plugin(ctx), CRM_LOG_WARN,
                 "segment %s: member_count would go below zero (%lld), kept at 0", id,
                 (long long)count);
        count = 0;
    }
    if (!(patch = api->value_map()) || put(patch, "member_count", api->value_int(count)) ||
        put(patch, "evaluated_at", api->value_int(api->now(ctx))))
        goto nomem;
    if (status) {
        const crm_value *old = api->map_get(seg, "extra");
        extra = old && old->type == CRM_T_MAP ? api->value_dup(old) : api->value_map();
        if (!extra || api->map_set(extra, "segmentation", status)) {
            status = NULL;
            goto nomem;
        }
        status = NULL;
        if (api->map_set(patch, "extra", extra)) {
            extra = NULL;
            goto nomem;
        }
        extra = NULL;
    }
    internal_write++;
    rc = api->update(ctx, "segments", id, patch, 0, NULL);
    internal_write--;
    if (rc == CRM_NOT_FOUND)
        rc = CRM_OK;
    api->value_free(patch);
    api->value_free(got);
    return rc;
nomem:
    api->value_free(status);
    api->value_free(extra);
    api->value_free(patch);
    api->value_free(got);
    return oom(ctx);
}

/* Every record of coll matching where, one query per page of 1000; the
 * pages are appended to keep (an array the caller frees). */
static int query_all(crm_ctx *ctx, const char *coll, const crm_value *where, crm_value *keep)
{
    char *after = NULL;
    for (;;) {
        crm_value *page = NULL;
        const crm_value *next;
        int rc = api->query(ctx, coll, where, NULL, 1000, after, &page);
        if (rc != CRM_OK)
            return rc;
        if (api->arr_push(keep, page))
            return oom(ctx);
        next = api->map_get(page, "next");
        if (!next || next->type != CRM_T_STR)
            return CRM_OK;
        if (!(after = api->alloc(ctx, next->u.str.len + 1)))
            return oom(ctx);
        memcpy(after, next->u.str.s, next->u.str.len + 1);
    }
}

/* The records of pages (query_all's) as one array in per-call memory. */
static const crm_value **flatten(crm_ctx *ctx, const crm_value *pages, size_t *n)
{
    const crm_value **out;
    size_t total = 0, k = 0;
    *n = 0;
    for (size_t i = 0; i < pages->u.arr.n; i++) {
        const crm_value *recs = api->map_get(pages->u.arr.items[i], "records");
        total += recs && recs->type == CRM_T_ARR ? recs->u.arr.n : 0;
    }
    if (!(out = api->alloc(ctx, (total ? total : 1) * sizeof *out)))
        return NULL;
    for (size_t i = 0; i < pages->u.arr.n; i++) {
        const crm_value *recs = api->map_get(pages->u.arr.items[i], "records");
        for (size_t j = 0; recs && recs->type == CRM_T_ARR && j < recs->u.arr.n; j++)
            out[k++] = recs->u.arr.items[j];
    }
    *n = k;
    return out;
}

/* ---- after contacts.*: this contact against every active segment ---- */

static int on_contact(crm_ctx *ctx, crm_event *ev, void *ud)
{
    crm_value *contact = NULL, *segs = api->value_arr(), *mems = api->value_arr();
    crm_value *where = api->value_map(), *mwhere = api->value_map();
    deltas ds = {0};
    const crm_value **seglist, **memlist;
    unsigned char *handled;
    size_t nseg, nmem;
    int rc = CRM_OK;
    (void)ud;

    if (!segs || !mems || !where || !mwhere || put(where, "active", api->value_bool(1)) ||
        put_str(mwhere, "contact", ev->id)) {
        rc = oom(ctx);
        goto out;
    }
    if (!seg_cache) {
        const crm_value **all;
        size_t nall;
        crm_value *fresh;
        if ((rc = query_all(ctx, "segments", where, segs)) != CRM_OK)
            goto out;
        if (!(all = flatten(ctx, segs, &nall)) || !(fresh = api->value_arr())) {
            rc = oom(ctx);
            goto out;
        }
        for (size_t i = 0; i < nall; i++) {
            vstate vs;
            if (str_of(all[i], "id") && segment_usable(all[i], &vs) &&
                api->arr_push(fresh, api->value_dup(all[i]))) {
                api->value_free(fresh);
                rc = oom(ctx);
                goto out;
            }
        }
        seg_cache = fresh;
    }
    seglist = (const crm_value **)seg_cache->u.arr.items;
    nseg = seg_cache->u.arr.n;
    if (nseg == 0)
        goto out; /* no active segment: nothing to keep (purges remove the rest) */
    rc = api->get(ctx, "contacts", ev->id, &contact);
    if (rc == CRM_NOT_FOUND) {
        contact = NULL; /* deleted (now): it leaves every segment */
        rc = CRM_OK;
    } else if (rc != CRM_OK) {
        goto out;
    }
    if ((rc = query_all(ctx, MEMBERS, mwhere, mems)) != CRM_OK)
        goto out;
    if (!(memlist = flatten(ctx, mems, &nmem)) ||
        !(handled = api->alloc(ctx, nmem + 1))) {
        rc = oom(ctx);
        goto out;
    }
    memset(handled, 0, nmem + 1);
    for (size_t s = 0; s < nseg; s++) {
        const crm_value *seg = seglist[s], *member = NULL;
        const char *sid = str_of(seg, "id");
        int match;
        if (!sid)
            continue;
        match = contact && rule_holds(api->map_get(seg, "rules"), contact);
        for (size_t k = 0; k < nmem && !member; k++) {
            const char *ms = str_of(memlist[k], "segment");
            if (!handled[k] && ms && strcmp(ms, sid) == 0) {
                member = memlist[k];
                handled[k] = 1;
            }
        }
        if (match && !member) {
            int added;
            if ((rc = member_add(ctx, sid, ev->id, &added)) != CRM_OK)
                goto out;
            if (added && delta_add(ctx, &ds, sid, 1)) {
                rc = oom(ctx);
                goto out;
            }
        } else if (!match && member) {
            int removed;
            if ((rc = member_remove(ctx, member, &removed)) != CRM_OK)
                goto out;
            if (removed && delta_add(ctx, &ds, sid, -1)) {
                rc = oom(ctx);
                goto out;
            }
        }
    }
    /* memberships of segments that are inactive, unusable or gone */
    for (size_t k = 0; k < nmem; k++) {
        if (!handled[k]) {
            int removed;
            const char *ms = str_of(memlist[k], "segment");
            if ((rc = member_remove(ctx, memlist[k], &removed)) != CRM_OK)
                goto out;
            if (removed && ms && delta_add(ctx, &ds, ms, -1)) {
                rc = oom(ctx);
                goto out;
            }
        }
    }
    for (size_t i = 0; i < ds.n; i++)
        if (ds.v[i].d && (rc = segment_write(ctx, ds.v[i].seg, NULL, ds.v[i].d, NULL)) != CRM_OK)
            goto out;
out:
    api->value_free(contact);
    api->value_free(segs);
    api->value_free(mems);
    api->value_free(where);
    api->value_free(mwhere);
    return rc;
}

/* ---- backfill ---- */

static int schedule_run(crm_ctx *ctx, const char *seg, double delay, const char *after)
{
    crm_value *payload = api->value_map();
    int rc;
    if (!payload || put_str(payload, "segment", seg) || (after && put_str(payload, "after", after))) {
        api->value_free(payload);
        return oom(ctx);
    }
    rc = api->schedule(ctx, delay, TIMER, payload, seg);
    api->value_free(payload);
    return rc;
}

/* A new status map from the segment's current one (counters kept unless
 * fresh). */
static crm_value *status_from(const crm_value *seg, int fresh, crm_ctx *ctx)
{
    const crm_value *old = api->map_get(api->map_get(seg, "extra"), "segmentation");
    crm_value *st = !fresh && old && old->type == CRM_T_MAP ? api->value_dup(old) : api->value_map();
    if (st && fresh) {
        if (put(st, "run", api->value_int(int_of(old, "run", 0) + 1)) ||
            put(st, "chunks", api->value_int(0)) || put(st, "scanned", api->value_int(0)) ||
            put(st, "added", api->value_int(0)) || put(st, "removed", api->value_int(0)) ||
            put(st, "started_at", api->value_int(api->now(ctx)))) {
            api->value_free(st);
            return NULL;
        }
    }
    return st;
}

static int bump(crm_value *st, const char *key, int64_t by)
{
    return put(st, key, api->value_int(int_of(st, key, 0) + by));
}

/* Removes up to chunk_size members of the segment (gone, inactive or
 * unusable), and reschedules while more are left. */
static int purge_chunk(crm_ctx *ctx, const char *sid, const crm_value *seg, const char *why)
{
    crm_value *where = api->value_map(), *page = NULL, *st = NULL;
    const crm_value *recs;
    int64_t removed = 0;
    size_t n = 0;
    int rc;
    if (!where || put_str(where, "segment", sid)) {
        api->value_free(where);
        return oom(ctx);
    }
    rc = api->query(ctx, MEMBERS, where, NULL, (size_t)cfg.chunk_size, NULL, &page);
    api->value_free(where);
    if (rc != CRM_OK)
        return rc;
    recs = api->map_get(page, "records");
    for (size_t i = 0; recs && recs->type == CRM_T_ARR && i < recs->u.arr.n; i++) {
        int r;
        n++;
        if ((rc = member_remove(ctx, recs->u.arr.items[i], &r)) != CRM_OK)
            goto out;
        removed += r;
    }
    if (seg) {
        const char *state = n == (size_t)cfg.chunk_size ? "purging" : "inactive";
        if (!(st = status_from(seg, 0, ctx)) || put_str(st, "state", state) ||
            bump(st, "chunks", 1) || bump(st, "removed", removed) ||
            (strcmp(state, "inactive") == 0 &&
             put(st, "finished_at", api->value_int(api->now(ctx)))) ||
            put_str(st, "reason", why)) {
            api->value_free(st);
            rc = oom(ctx);
            goto out;
        }
        if ((rc = segment_write(ctx, sid, seg, -removed, st)) != CRM_OK)
            goto out;
    }
    if (n == (size_t)cfg.chunk_size)
        rc = schedule_run(ctx, sid, cfg.pause, NULL);
    else
        api->log(api->ctx_plugin(ctx), CRM_LOG_INFO, "segment %s: members removed (%s)", sid, why);
out:
    api->value_free(page);
    return rc;
}

/* One chunk of contacts after the cursor against the segment's rules. */
static int eval_chunk(crm_ctx *ctx, const char *sid, const crm_value *seg, const char *after)
{
    crm_value *page = NULL, *mpage = NULL, *where = NULL, *in = NULL, *ids = NULL, *st = NULL;
    const crm_value *recs, *mrecs, *next, *rules = api->map_get(seg, "rules");
    int64_t added = 0, removed = 0;
    size_t n;
    int rc, done;

    rc = api->query(ctx, "contacts", NULL, NULL, (size_t)cfg.chunk_size, after, &page);
    if (rc != CRM_OK)
        return rc;
    recs = api->map_get(page, "records");
    n = recs && recs->type == CRM_T_ARR ? recs->u.arr.n : 0;
    next = api->map_get(page, "next");
    done = !next || next->type != CRM_T_STR || n == 0;
    if (n) {
        /* this chunk's memberships in one query: segment = S, contact in ids */
        if (!(where = api->value_map()) || !(in = api->value_map()) || !(ids = api->value_arr()))
            goto nomem;
        for (size_t i = 0; i < n; i++) {
            const char *cid = str_of(recs->u.arr.items[i], "id");
            if (cid && api->arr_push(ids, api->value_str(cid, strlen(cid))))
                goto nomem;
        }
        if (api->map_set(in, "in", ids)) {
            ids = NULL;
            goto nomem;
        }
        ids = NULL;
        if (put_str(where, "segment", sid) || api->map_set(where, "contact", in)) {
            in = NULL;
            goto nomem;
        }
        in = NULL;
        if ((rc = api->query(ctx, MEMBERS, where, NULL, 1000, NULL, &mpage)) != CRM_OK)
            goto out;
        mrecs = api->map_get(mpage, "records");
        for (size_t i = 0; i < n; i++) {
            const crm_value *c = recs->u.arr.items[i], *member = NULL;
            const char *cid = str_of(c, "id");
            int match = rule_holds(rules, c), r;
            if (!cid)
                continue;
            for (size_t j = 0; mrecs && mrecs->type == CRM_T_ARR && j < mrecs->u.arr.n; j++) {
                const char *mc = str_of(mrecs->u.arr.items[j], "contact");
                if (mc && strcmp(mc, cid) == 0) {
                    member = mrecs->u.arr.items[j];
                    break;
                }
            }
            if (match && !member) {
                if ((rc = member_add(ctx, sid, cid, &r)) != CRM_OK)
                    goto out;
                added += r;
            } else if (!match && member) {
                if ((rc = member_remove(ctx, member, &r)) != CRM_OK)
                    goto out;
                removed += r;
            }
        }
    }
    if (!(st = status_from(seg, after == NULL, ctx)) ||
        put_str(st, "state", done ? "done" : "backfilling") || bump(st, "chunks", 1) ||
        bump(st, "scanned", (int64_t)n) || bump(st, "added", added) ||
        bump(st, "removed", removed) || api->map_del(st, "reason") < 0 ||
        (done && put(st, "finished_at", api->value_int(api->now(ctx)))))
        goto nomem;
    if (done)
        api->log(api->ctx_plugin(ctx), CRM_LOG_INFO,
                 "segment %s: backfill run %lld done in %lld chunks: %lld contacts, +%lld -%lld, "
                 "%lld members",
                 sid, (long long)int_of(st, "run", 0), (long long)int_of(st, "chunks", 0),
                 (long long)int_of(st, "scanned", 0), (long long)int_of(st, "added", 0),
                 (long long)int_of(st, "removed", 0),
                 (long long)(int_of(seg, "member_count", 0) + added - removed));
    rc = segment_write(ctx, sid, seg, added - removed, st);
    st = NULL;
    if (rc == CRM_OK && !done)
        rc = schedule_run(ctx, sid, cfg.pause, next->u.str.s);
    goto out;
nomem:
    rc = oom(ctx);
out:
    api->value_free(st);
    api->value_free(ids);
    api->value_free(in);
    api->value_free(where);
    api->value_free(mpage);
    api->value_free(page);
    return rc;
}

/* timer segments.backfill {segment, after?}: what it does depends on the
 * segment as it is now, so a run always follows the latest state. */
static int backfill(crm_ctx *ctx, const char *name, const crm_value *payload, void *ud)
{
    const char *sid = str_of(payload, "segment"), *after = str_of(payload, "after");
    crm_value *seg = NULL;
    vstate vs;
    double wait, t0;
    int rc;
    (void)name;
    (void)ud;
    if (!sid)
        return CRM_OK;
    if ((wait = pace_wait()) > 0) /* other chunks just ran: later, same cursor */
        return api->schedule(ctx, wait, TIMER, payload, sid);
    t0 = mono_ms();
    rc = api->get(ctx, "segments", sid, &seg);
    if (rc == CRM_NOT_FOUND)
        rc = purge_chunk(ctx, sid, NULL, "deleted");
    else if (rc == CRM_OK && !segment_usable(seg, &vs))
        rc = purge_chunk(ctx, sid, seg, vs.msg);
    else if (rc == CRM_OK)
        rc = eval_chunk(ctx, sid, seg, after);
    api->value_free(seg);
    pace.tokens -= mono_ms() - t0;
    return rc;
}

/* ---- segments: before (check) and after (start a run) ---- */

static int restore(crm_value *rec, const crm_value *prev, const char *key)
{
    const crm_value *v = prev ? api->map_get(prev, key) : NULL;
    if (v)
        return put(rec, key, api->value_dup(v));
    api->map_del(rec, key);
    return 0;
}

static int before_segment(crm_ctx *ctx, crm_event *ev, void *ud)
{
    crm_value *rec = ev->record, *extra, *st;
    const crm_value *prev_st;
    int create = strcmp(ev->op, "create") == 0;
    (void)ud;
    if (internal_write || !rec)
        return CRM_OK;
    if (create || !same_json(api->map_get(rec, "rules"), api->map_get(ev->prev, "rules")) ||
        !same_json(api->map_get(rec, "target"), api->map_get(ev->prev, "target"))) {
        const char *target = str_of(rec, "target");
        vstate vs;
        if (target && strcmp(target, "contacts") != 0)
            return api->error(ctx, CRM_REJECTED,
                              "target: segmentation evaluates contacts only, not %s", target);
        int bad;
        rule_ctx = ctx;
        rule_role = api->caller_role(ctx); /* NULL: a plugin's or script's write */
        bad = check_rules(api->map_get(rec, "rules"), &vs);
        rule_ctx = NULL;
        rule_role = NULL;
        if (bad)
            return api->error(ctx, CRM_REJECTED, "%s", vs.msg);
    }
    if (create) {
        crm_value *where = api->value_map(), *page = NULL;
        const crm_value *recs;
        int rc;
        /* members of an earlier segment with this id still being removed */
        if (!where || put_str(where, "segment", ev->id)) {
            api->value_free(where);
            return oom(ctx);
        }
        rc = api->query(ctx, MEMBERS, where, NULL, 1, NULL, &page);
        api->value_free(where);
        if (rc != CRM_OK)
            return rc;
        recs = api->map_get(page, "records");
        rc = recs && recs->type == CRM_T_ARR && recs->u.arr.n > 0;
        api->value_free(page);
        if (rc)
            return api->error(ctx, CRM_REJECTED,
                              "segment id %s: the members of a deleted segment with this id are "
                              "still being removed; try again shortly", ev->id);
        st = api->value_map();
        if (!st || put_str(st, "state", "pending") ||
            put(rec, "member_count", api->value_int(0))) {
            api->value_free(st);
            return oom(ctx);
        }
        api->map_del(rec, "evaluated_at");
    } else {
        /* the plugin's own fields: a client's change to them is ignored */
        if (restore(rec, ev->prev, "member_count") || restore(rec, ev->prev, "evaluated_at"))
            return oom(ctx);
        prev_st = api->map_get(api->map_get(ev->prev, "extra"), "segmentation");
        st = prev_st ? api->value_dup(prev_st) : NULL;
        if (prev_st && !st)
            return oom(ctx);
    }
    extra = api->map_get(rec, "extra");
    if (!st) {
        if (extra && extra->type == CRM_T_MAP)
            api->map_del(extra, "segmentation");
        return CRM_OK;
    }
    if (!extra || extra->type != CRM_T_MAP) {
        if (put(rec, "extra", api->value_map())) {
            api->value_free(st);
            return oom(ctx);
        }
        extra = api->map_get(rec, "extra");
    }
    if (api->map_set(extra, "segmentation", st))
        return oom(ctx);
    return CRM_OK;
}

static int on_segment(crm_ctx *ctx, crm_event *ev, void *ud)
{
    (void)ud;
    if (strcmp(ev->op, "update") == 0 && ev->record && ev->prev &&
        same_json(api->map_get(ev->record, "rules"), api->map_get(ev->prev, "rules")) &&
        same_json(api->map_get(ev->record, "active"), api->map_get(ev->prev, "active")) &&
        same_json(api->map_get(ev->record, "target"), api->map_get(ev->prev, "target")))
        return CRM_OK; /* member_count, status, name...: nothing to re-evaluate */
    api->value_free(seg_cache); /* reloaded by the next contact change */
    seg_cache = NULL;
    api->log(api->ctx_plugin(ctx), CRM_LOG_INFO, "segment %s %sd: backfill scheduled", ev->id,
             ev->op);
    return schedule_run(ctx, ev->id, 0, NULL);
}

/* ---- methods ---- */

/* segments.validate {rules} -> {"ok": true} or {"ok": false, "error": msg} */
static int m_validate(crm_ctx *ctx, const crm_value *params, crm_value **result, void *ud)
{
    vstate vs;
    crm_value *r = api->value_map();
    int ok;
    (void)ud;
    ok = check_rules(params && params->type == CRM_T_MAP ? api->map_get(params, "rules") : NULL,
                     &vs) == 0;
    if (!r || put(r, "ok", api->value_bool(ok)) || (!ok && put_str(r, "error", vs.msg))) {
        api->value_free(r);
        return oom(ctx);
    }
    *result = r;
    return CRM_OK;
}

/* segments.refresh {segment} -> {"scheduled": id}: a new run from the start
 * (after segments.json changed, say). */
static int m_refresh(crm_ctx *ctx, const crm_value *params, crm_value **result, void *ud)
{
    const char *sid = str_of(params, "segment");
    crm_value *seg = NULL;
    int rc;
    (void)ud;
    if (!sid)
        return api->error(ctx, CRM_BAD_REQUEST, "segments.refresh needs {\"segment\": ID}");
    if ((rc = api->get(ctx, "segments", sid, &seg)) != CRM_OK)
        return rc;
    api->value_free(seg);
    if ((rc = schedule_run(ctx, sid, 0, NULL)) != CRM_OK)
        return rc;
    if (!(*result = api->value_map()) || put_str(*result, "scheduled", sid))
        return oom(ctx);
    return CRM_OK;
}

/* ---- entry point ---- */

static int conf_int(const char *key, int64_t lo, int64_t hi, int64_t *out, char *errbuf,
                    size_t cap)
{
    const crm_value *v = api->map_get(cfg.all, key);
    if (!v || v->type != CRM_T_INT || v->u.i < lo || v->u.i > hi) {
        snprintf(errbuf, cap, "segments.json: %s must be an integer from %lld to %lld", key,
                 (long long)lo, (long long)hi);
        return -1;
    }
    *out = v->u.i;
    return 0;
}

static int segments_init(crm_plugin *p, const crm_api *a, char *errbuf, size_t cap)
{
    const crm_value *conf, *v;
    crm_err e;
    api = a;
    memset(&cfg, 0, sizeof cfg);
    if (api->from_json(DEFAULTS, sizeof DEFAULTS - 1, &cfg.all, &e) != CRM_OK) {
        snprintf(errbuf, cap, "built-in defaults: %s", e.msg);
        return CRM_INTERNAL;
    }
    /* overlay segments.json: each key replaces the default; "fields" merges */
    conf = api->config(p, NULL);
    for (size_t i = 0; conf && i < conf->u.map.n; i++) {
        const crm_kv *kv = &conf->u.map.kv[i];
        if (!api->map_get(cfg.all, kv->key)) {
            snprintf(errbuf, cap, "segments.json: unknown key \"%s\"", kv->key);
            goto fail;
        }
        if (strcmp(kv->key, "fields") == 0 && kv->val->type == CRM_T_MAP) {
            crm_value *fields = api->map_get(cfg.all, "fields");
            for (size_t j = 0; j < kv->val->u.map.n; j++) {
                const crm_value *t = kv->val->u.map.kv[j].val;
                if (t->type == CRM_T_NIL) {
                    api->map_del(fields, kv->val->u.map.kv[j].key);
                    continue;
                }
                if (api->map_set(fields, kv->val->u.map.kv[j].key, api->value_dup(t))) {
                    snprintf(errbuf, cap, "out of memory");
                    goto fail;
                }
            }
        } else if (api->map_set(cfg.all, kv->key, api->value_dup(kv->val))) {
            snprintf(errbuf, cap, "out of memory");
            goto fail;
        }
    }
    if (conf_int("chunk_size", 1, 1000, &cfg.chunk_size, errbuf, cap) ||
        conf_int("max_conditions", 1, 10000, &cfg.max_conditions, errbuf, cap) ||
        conf_int("max_depth", 1, MAX_DEPTH_CAP, &cfg.max_depth, errbuf, cap) ||
        conf_int("max_in_values", 1, 1000, &cfg.max_in, errbuf, cap))
        goto fail;
    v = api->map_get(cfg.all, "chunk_pause_seconds");
    if (!v || !is_number(v) || (cfg.pause = v->type == CRM_T_INT ? (double)v->u.i : v->u.n) < 0 ||
        cfg.pause > 3600) {
        snprintf(errbuf, cap, "segments.json: chunk_pause_seconds must be a number from 0 to 3600");
        goto fail;
    }
    v = api->map_get(cfg.all, "backfill_share");
    if (!v || !is_number(v) || (cfg.share = v->type == CRM_T_INT ? (double)v->u.i : v->u.n) < 0.01 ||
        cfg.share > 1) {
        snprintf(errbuf, cap, "segments.json: backfill_share must be a number from 0.01 to 1");
        goto fail;
    }
    v = api->map_get(cfg.all, "backfill_burst_ms");
    if (!v || !is_number(v) ||
        (cfg.burst_ms = v->type == CRM_T_INT ? (double)v->u.i : v->u.n) < 1 || cfg.burst_ms > 10000) {
        snprintf(errbuf, cap, "segments.json: backfill_burst_ms must be a number from 1 to 10000");
        goto fail;
    }
    cfg.tags_field = str_of(cfg.all, "tags_field");
    cfg.stage_field = str_of(cfg.all, "stage_field");
    cfg.score_fields = api->map_get(cfg.all, "score_fields");
    cfg.fields = api->map_get(cfg.all, "fields");
    if (!cfg.tags_field || !cfg.stage_field) {
        snprintf(errbuf, cap, "segments.json: tags_field and stage_field must be field names");
        goto fail;
    }
    if (!cfg.score_fields || cfg.score_fields->type != CRM_T_ARR) {
        snprintf(errbuf, cap, "segments.json: score_fields must be a list of field names");
        goto fail;
    }
    if (!cfg.fields || cfg.fields->type != CRM_T_MAP) {
        snprintf(errbuf, cap, "segments.json: fields must map field names to types");
        goto fail;
    }
    for (size_t i = 0; i < cfg.fields->u.map.n; i++) {
        const crm_value *t = cfg.fields->u.map.kv[i].val;
        static const char *const types[] = {"string", "int", "number", "timestamp", "bool",
                                            "ref", "array", "map"};
        int ok = t->type == CRM_T_ARR && t->u.arr.n > 0;
        for (size_t j = 0; ok && j < t->u.arr.n; j++)
            ok = t->u.arr.items[j]->type == CRM_T_STR;
        for (size_t j = 0; !ok && t->type == CRM_T_STR && j < sizeof types / sizeof *types; j++)
            ok = strcmp(t->u.str.s, types[j]) == 0;
        if (!ok) {
            snprintf(errbuf, cap,
                     "segments.json: fields.%s must be string, int, number, timestamp, bool, ref, "
                     "array, map or a list of enum values",
                     cfg.fields->u.map.kv[i].key);
            goto fail;
        }
    }
    for (size_t i = 0; i < cfg.score_fields->u.arr.n; i++) {
        const crm_value *s = cfg.score_fields->u.arr.items[i];
        if (s->type != CRM_T_STR || !api->map_get(cfg.fields, s->u.str.s)) {
            snprintf(errbuf, cap, "segments.json: score_fields[%zu] is not one of the fields", i);
            goto fail;
        }
    }
    if (api->on(p, "segments.create", CRM_BEFORE, "segments.validate", before_segment, NULL) ||
        api->on(p, "segments.update", CRM_BEFORE, "segments.validate_update", before_segment,
                NULL) ||
        api->on(p, "contacts.*", CRM_AFTER, "segments.contacts", on_contact, NULL) ||
        api->on(p, "segments.*", CRM_AFTER, "segments.segments", on_segment, NULL) ||
        api->on_timer(p, TIMER, backfill, NULL) ||
        api->method(p, "segments.validate", m_validate, NULL) ||
        api->method(p, "segments.refresh", m_refresh, NULL)) {
        snprintf(errbuf, cap, "could not register: %s", api->registration_error(p));
        goto fail;
    }
    api->log(p, CRM_LOG_INFO, "segments ready: chunks of %lld contacts, pause %.3f s",
             (long long)cfg.chunk_size, cfg.pause);
    return CRM_OK;
fail:
    api->value_free(cfg.all);
    cfg.all = NULL;
    return CRM_BAD_REQUEST;
}

static void segments_fini(crm_plugin *p, const crm_api *a)
{
    (void)p;
    a->value_free(seg_cache);
    seg_cache = NULL;
    a->value_free(cfg.all);
    cfg.all = NULL;
}

CRM_PLUGIN_DECLARE("segments", "1.0.0", segments_init, segments_fini)
