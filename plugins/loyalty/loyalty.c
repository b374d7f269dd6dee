/*
 * loyalty -- the loyalty programme (issue 6): points per amount spent,
 * tiers with thresholds and benefits, expiry by durable timer, atomic
 * redemption, and a ledger that always sums to the balance.
 *
 * Records (schemas/loyalty_accounts.json, schemas/loyalty_ledger.json):
 *  - one account per contact, id "la_<contact id>", created on the first
 *    earn.  points = the balance, lifetime_points = all points earned (less
 *    revoked earns), tier and tier_since.  Its extra map holds the state the
 *    rules need:
 *      extra.lots          open earns, oldest first: {line, order, at,
 *                          expires_at, remaining}; sum(remaining) == points
 *      extra.recent        (tier_basis "rolling") earns inside the window:
 *                          {order, at, points}
 *      extra.tier_history  the last tier changes: {from, to, at, why, basis}
 *  - one ledger line per change of points: earn (+), redeem (-), expire
 *    (-), adjust (+ or -), each with balance_after.  dedupe_key makes every
 *    automatic line happen once: earn:<order>, revoke:<order>,
 *    redeem:order:<order>, refund:<order>, expire:<earn line>.
 *
 * Events (configuration: loyalty.json beside loyalty.so; defaults below):
 *  - after orders.* ("loyalty.orders"): an order whose status becomes one of
 *    earn_on earns floor(amount / per) * points (rates[currency]) times the
 *    tier's multiplier; one whose status becomes one of revoke_on takes the
 *    earn back (adjust line) and gives back points redeemed on it.
 *  - before orders.create ("loyalty.order_redeem"): points_redeemed > 0 is
 *    redeemed in the order's own transaction; a short balance REJECTS the
 *    order.
 *  - timer loyalty.expire (keyed by the earn line): what is left of that
 *    earn lapses (expire line).
 *  - timer loyalty.tier_review (keyed by the account; rolling basis only):
 *    the tier is recomputed when the oldest earn leaves the window.
 *  - methods loyalty.redeem, loyalty.balance, loyalty.adjust.
 *
 * Every change to an account is one read, in-memory changes, one update
 * guarded by the revision read: hooks, timers and methods run inside a
 * transaction on the writer thread, so the read-check-write is atomic and a
 * redemption can never take the balance below zero.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <crm/plugin.h>

static const crm_api *api;

#define DAY_MS 86400000.0
#define MAX_TIERS 16
#define MAX_RATES 64

static const char DEFAULTS[] =
    "{"
    " \"rates\": {\"EUR\": {\"points\": 1, \"per\": 100}, \"USD\": {\"points\": 1, \"per\": 100},"
    "            \"GBP\": {\"points\": 1, \"per\": 100}, \"CHF\": {\"points\": 1, \"per\": 100}},"
    " \"earn_on\": [\"paid\", \"completed\"],"
    " \"revoke_on\": [\"cancelled\", \"refunded\"],"
    " \"revoke_mode\": \"full\","
    " \"refund_redeemed_on_cancel\": true,"
    " \"redeem_on_order\": true,"
    " \"expiry_days\": 365,"
    " \"tier_basis\": \"lifetime\","
    " \"tier_window_days\": 365,"
    " \"tier_history_max\": 20,"
    " \"tiers\": ["
    "  {\"name\": \"basic\", \"threshold\": 0, \"multiplier\": 1.0, \"benefits\": []},"
    "  {\"name\": \"silver\", \"threshold\": 1000, \"multiplier\": 1.25,"
    "   \"benefits\": [\"free_shipping\"]},"
    "  {\"name\": \"gold\", \"threshold\": 5000, \"multiplier\": 1.5,"
    "   \"benefits\": [\"free_shipping\", \"priority_support\"]},"
    "  {\"name\": \"platinum\", \"threshold\": 20000, \"multiplier\": 2.0,"
    "   \"benefits\": [\"free_shipping\", \"priority_support\", \"birthday_gift\", \"lounge_access\"]}"
    " ]"
    "}";
static crm_value *defaults; /* ours, freed in fini */

typedef struct tier {
    const char *name;
    int64_t threshold;
    double mult;
    const crm_value *benefits; /* borrowed from the configuration */
} tier;

typedef struct rate {
    const char *currency;
    int64_t points, per;
} rate;

static struct {
    tier tiers[MAX_TIERS];
    size_t ntiers;
    rate rates[MAX_RATES];
    size_t nrates;
    const crm_value *earn_on, *revoke_on;
    int revoke_full, refund_on_cancel, redeem_on_order, rolling;
    double expiry_days, window_days;
    int64_t history_max;
} cfg;

/* ---- small helpers ---- */

static const crm_value *conf(crm_plugin *p, const char *key)
{
    const crm_value *v = api->config(p, key);
    return v ? v : api->map_get(defaults, key);
}

static const char *str_of(const crm_value *m, const char *key)
{
    const crm_value *v = m ? api->map_get(m, key) : NULL;
    return v && v->type == CRM_T_STR ? v->u.str.s : NULL;
}

static int64_t int_of(const crm_value *m, const char *key, int64_t fallback)
{
    const crm_value *v = m ? api->map_get(m, key) : NULL;
    if (v && v->type == CRM_T_INT)
        return v->u.i;
    if (v && v->type == CRM_T_NUM)
        return (int64_t)v->u.n;
    return fallback;
}

static int put(crm_value *m, const char *key, crm_value *v)
{
    return v ? api->map_set(m, key, v) : -1;
}

static int put_str(crm_value *m, const char *key, const char *s)
{
    return put(m, key, api->value_str(s, strlen(s)));
}

static int put_int(crm_value *m, const char *key, int64_t i)
{
    return put(m, key, api->value_int(i));
}

static int oom(crm_ctx *ctx)
{
    return api->error(ctx, CRM_INTERNAL, "loyalty: out of memory");
}

/* A copy of s in per-call memory. */
static char *ctx_strdup(crm_ctx *ctx, const char *s)
{
    size_t n = strlen(s);
    char *d = api->alloc(ctx, n + 1);
    if (d)
        memcpy(d, s, n + 1);
    return d;
}

static int in_list(const crm_value *arr, const char *s)
{
    if (!arr || arr->type != CRM_T_ARR || !s)
        return 0;
    for (size_t i = 0; i < arr->u.arr.n; i++) {
        const crm_value *v = arr->u.arr.items[i];
        if (v->type == CRM_T_STR && strcmp(v->u.str.s, s) == 0)
            return 1;
    }
    return 0;
}

static const tier *tier_named(const char *name)
{
    for (size_t i = 0; name && i < cfg.ntiers; i++)
        if (strcmp(cfg.tiers[i].name, name) == 0)
            return &cfg.tiers[i];
    return &cfg.tiers[0];
}

/* The highest tier whose threshold q reaches. */
static const tier *tier_for(int64_t q)
{
    const tier *t = &cfg.tiers[0];
    for (size_t i = 0; i < cfg.ntiers; i++)
        if (q >= cfg.tiers[i].threshold)
            t = &cfg.tiers[i];
    return t;
}

/* A ledger line with this dedupe key exists: 1 (its record in *line when
 * line is not NULL, caller's), 0 none, <0 an error code negated. */
static int ledger_find(crm_ctx *ctx, const char *key, crm_value **line)
{
    crm_value *where = api->value_map(), *page = NULL;
    const crm_value *recs;
    int rc, found = 0;
    if (!where || put_str(where, "dedupe_key", key)) {
        api->value_free(where);
        return -oom(ctx);
    }
    rc = api->query(ctx, "loyalty_ledger", where, NULL, 1, NULL, &page);
    api->value_free(where);
    if (rc != CRM_OK)
        return -rc;
    recs = api->map_get(page, "records");
    if (recs && recs->type == CRM_T_ARR && recs->u.arr.n > 0) {
        found = 1;
        if (line && !(*line = api->value_dup(recs->u.arr.items[0]))) {
            api->value_free(page);
            return -oom(ctx);
        }
    }
    api->value_free(page);
    return found;
}

/* ---- the account, loaded for one change ---- */

typedef struct acc {
    crm_value *rec;   /* as read (or created), ours */
    crm_value *extra; /* the copy we change, ours */
    crm_value *lots;  /* borrowed from extra */
    const char *id, *contact;
    int64_t rev, points, lifetime, tier_since;
    const char *tier; /* a configured tier's name (borrowed) or rec's */
    int changed;
} acc;

static void acc_free(acc *a)
{
    api->value_free(a->rec);
    api->value_free(a->extra);
    memset(a, 0, sizeof *a);
}

static crm_value *ensure_arr(crm_value *m, const char *key)
{
    crm_value *v = api->map_get(m, key);
    if (v && v->type == CRM_T_ARR)
        return v;
    if (put(m, key, api->value_arr()))
        return NULL;
    return api->map_get(m, key);
}

/* Loads the contact's account into *a; creates it when create is set and
 * there is none.  NOT_FOUND (with a message) otherwise. */
static int acc_load_(crm_ctx *ctx, const char *contact, int create, acc *a)
{
    char *id;
    int rc;
    const crm_value *ex;
    memset(a, 0, sizeof *a);
    if (!contact || !*contact)
        return api->error(ctx, CRM_BAD_REQUEST, "loyalty: a contact id is required");
    if (!(id = api->alloc(ctx, strlen(contact) + 4)))
        return oom(ctx);
    sprintf(id, "la_%s", contact);
    rc = api->get(ctx, "loyalty_accounts", id, &a->rec);
    if (rc == CRM_NOT_FOUND) {
        /* an account made by hand (another id): the unique index on contact */
        crm_value *where = api->value_map(), *page = NULL;
        const crm_value *recs;
        if (!where || put_str(where, "contact", contact)) {
            api->value_free(where);
            return oom(ctx);
        }
        rc = api->query(ctx, "loyalty_accounts", where, NULL, 1, NULL, &page);
        api->value_free(where);
        if (rc != CRM_OK)
            return rc;
        recs = api->map_get(page, "records");
        if (recs && recs->type == CRM_T_ARR && recs->u.arr.n > 0)
            a->rec = api->value_dup(recs->u.arr.items[0]);
        api->value_free(page);
        if (!a->rec) {
            crm_value *rec;
            int64_t now = api->now(ctx);
            if (!create)
                return api->error(ctx, CRM_NOT_FOUND, "contact %s has no loyalty account",
                                  contact);
            if (!(rec = api->value_map()) || put_str(rec, "id", id) ||
                put_str(rec, "contact", contact) || put_int(rec, "points", 0) ||
                put_int(rec, "lifetime_points", 0) || put_str(rec, "tier", cfg.tiers[0].name) ||
                put_int(rec, "tier_since", now) || put_int(rec, "joined_at", now) ||
                put_str(rec, "status", "active") || put(rec, "extra", api->value_map())) {
                api->value_free(rec);
                return oom(ctx);
            }
            rc = api->create(ctx, "loyalty_accounts", rec, &a->rec);
            api->value_free(rec);
            if (rc != CRM_OK)
                return rc;
        }
    } else if (rc != CRM_OK) {
        return rc;
    }
    if (!a->rec)
        return oom(ctx);
    a->id = str_of(a->rec, "id");
    a->contact = str_of(a->rec, "contact");
    a->rev = int_of(a->rec, "_rev", 0);
    a->points = int_of(a->rec, "points", 0);
    a->lifetime = int_of(a->rec, "lifetime_points", 0);
    a->tier_since = int_of(a->rec, "tier_since", 0);
    a->tier = str_of(a->rec, "tier") ? str_of(a->rec, "tier") : cfg.tiers[0].name;
    ex = api->map_get(a->rec, "extra");
    a->extra = ex && ex->type == CRM_T_MAP ? api->value_dup(ex) : api->value_map();
    if (!a->extra || !(a->lots = ensure_arr(a->extra, "lots")) || !a->id)
        return oom(ctx);
    return CRM_OK;
}

static int acc_load(crm_ctx *ctx, const char *contact, int create, acc *a)
{
    int rc = acc_load_(ctx, contact, create, a);
    if (rc != CRM_OK)
        acc_free(a);
    return rc;
}

/* Writes the account back, guarded by the revision read. */
static int acc_save(crm_ctx *ctx, acc *a)
{
    crm_value *patch = api->value_map(), *out = NULL;
    int rc;
    if (!patch || put_int(patch, "points", a->points) ||
        put_int(patch, "lifetime_points", a->lifetime) || put_str(patch, "tier", a->tier) ||
        put_int(patch, "tier_since", a->tier_since) || put(patch, "extra", api->value_dup(a->extra))) {
        api->value_free(patch);
        return oom(ctx);
    }
    rc = api->update(ctx, "loyalty_accounts", a->id, patch, a->rev, &out);
    api->value_free(patch);
    if (rc == CRM_OK)
        a->rev = int_of(out, "_rev", a->rev + 1);
    api->value_free(out);
    return rc;
}

/* Writes a ledger line for a change already applied to a->points.  extra
 * is taken (may be NULL).  *line_id (may be NULL) gets the line's id in
 * per-call memory. */
static int ledger_write(crm_ctx *ctx, acc *a, const char *kind, int64_t points, const char *reason,
                        const char *order, const char *dedupe, int64_t expires_at,
                        crm_value *extra, const char **line_id)
{
    crm_value *rec = api->value_map(), *out = NULL;
    char why[201];
    int rc;
    snprintf(why, sizeof why, "%s", reason ? reason : kind);
    if (!rec || put_str(rec, "account", a->id) || put_str(rec, "contact", a->contact) ||
        put_str(rec, "kind", kind) || put_int(rec, "points", points) ||
        put_int(rec, "balance_after", a->points) || put_str(rec, "reason", why) ||
        (order && put_str(rec, "order", order)) || (dedupe && put_str(rec, "dedupe_key", dedupe)) ||
        (expires_at > 0 && put_int(rec, "expires_at", expires_at))) {
        api->value_free(extra);
        api->value_free(rec);
        return oom(ctx);
    }
    if (extra && put(rec, "extra", extra)) { /* put took extra */
        api->value_free(rec);
        return oom(ctx);
    }
    rc = api->create(ctx, "loyalty_ledger", rec, &out);
    api->value_free(rec);
    if (rc == CRM_OK && line_id) {
        const char *id = str_of(out, "id");
        if (!id || !(*line_id = ctx_strdup(ctx, id)))
            rc = oom(ctx);
    }
    api->value_free(out);
    a->changed = 1;
    return rc;
}

/* Takes up to n points from the open lots, the lot of prefer_line first
 * (when given), then the oldest; each part is recorded in from (an array,
 * may be NULL) as {line, points}.  Empty lots are dropped.  Returns how
 * many points the lots gave, or -1 on OOM.  The caller changes a->points. */
static int64_t lots_take(acc *a, int64_t n, const char *prefer_line, crm_value *from)
{
    int64_t left = n;
    crm_value *keep;
    for (int pass = prefer_line ? 0 : 1; pass < 2 && left > 0; pass++) {
        for (size_t i = 0; i < a->lots->u.arr.n && left > 0; i++) {
            crm_value *lot = a->lots->u.arr.items[i];
            const char *line = str_of(lot, "line");
            int64_t rem = int_of(lot, "remaining", 0), take;
            if (rem <= 0 || (pass == 0 && (!line || strcmp(line, prefer_line) != 0)))
                continue;
            take = rem < left ? rem : left;
            if (put_int(lot, "remaining", rem - take))
                return -1;
            left -= take;
            if (from) {
                crm_value *part = api->value_map();
                if (!part || put_str(part, "line", line ? line : "?") ||
                    put_int(part, "points", take)) {
                    api->value_free(part);
                    return -1;
                }
                if (api->arr_push(from, part))
                    return -1;
            }
        }
    }
    /* compact: a new array of the lots still open */
    if (!(keep = api->value_arr()))
        return -1;
    for (size_t i = 0; i < a->lots->u.arr.n; i++) {
        crm_value *lot = a->lots->u.arr.items[i];
        if (int_of(lot, "remaining", 0) > 0 && api->arr_push(keep, api->value_dup(lot))) {
            api->value_free(keep);
            return -1;
        }
    }
    if (api->map_set(a->extra, "lots", keep))
        return -1;
    a->lots = api->map_get(a->extra, "lots");
    return n - left;
}

/* Takes n points (n <= a->points): the lots first; points that no lot
 * holds (an account set by hand) are taken last. */
static int take_points(crm_ctx *ctx, acc *a, int64_t n, const char *prefer_line, crm_value *from)
{
    if (lots_take(a, n, prefer_line, from) < 0)
        return oom(ctx);
    a->points -= n;
    return CRM_OK;
}

/* Adds n points as a new lot that lapses after expiry_days (0: never),
 * with its expiry timer. */
static int add_lot(crm_ctx *ctx, acc *a, const char *line, const char *order, int64_t n)
{
    int64_t now = api->now(ctx);
    crm_value *lot = api->value_map(), *payload;
    if (!lot || put_str(lot, "line", line) || (order && put_str(lot, "order", order)) ||
        put_int(lot, "at", now) || put_int(lot, "remaining", n) ||
        (cfg.expiry_days > 0 && put_int(lot, "expires_at", now + (int64_t)(cfg.expiry_days * DAY_MS)))) {
        api->value_free(lot);
        return oom(ctx);
    }
    if (api->arr_push(a->lots, lot))
        return oom(ctx);
    if (cfg.expiry_days <= 0)
        return CRM_OK;
    if (!(payload = api->value_map()) || put_str(payload, "account", a->id) ||
        put_str(payload, "line", line)) {
        api->value_free(payload);
        return oom(ctx);
    }
    {
        int rc = api->schedule(ctx, cfg.expiry_days * 86400.0, "loyalty.expire", payload, line);
        api->value_free(payload);
        return rc;
    }
}

static int64_t lot_expires(const acc *a, int64_t *points)
{
    for (size_t i = 0; i < a->lots->u.arr.n; i++) {
        const crm_value *lot = a->lots->u.arr.items[i];
        int64_t at = int_of(lot, "expires_at", 0);
        if (at > 0) {
            *points = int_of(lot, "remaining", 0);
            return at;
        }
    }
    return 0;
}

/* ---- tiers ---- */

/* The points the tier is judged by: lifetime, or earned in the window
 * (extra.recent pruned of what left it). */
static int64_t qualifying(crm_ctx *ctx, acc *a, int prune, int64_t *oldest)
{
    int64_t now = api->now(ctx), from = now - (int64_t)(cfg.window_days * DAY_MS), sum = 0;
    crm_value *recent, *keep;
    *oldest = 0;
    if (!cfg.rolling)
        return a->lifetime;
    if (!(recent = ensure_arr(a->extra, "recent")))
        return -1;
    keep = prune ? api->value_arr() : NULL;
    for (size_t i = 0; i < recent->u.arr.n; i++) {
        const crm_value *e = recent->u.arr.items[i];
        int64_t at = int_of(e, "at", 0);
        if (at <= from)
            continue;
        sum += int_of(e, "points", 0);
        if (!*oldest || at < *oldest)
            *oldest = at;
        if (keep && api->arr_push(keep, api->value_dup(e))) {
            api->value_free(keep);
            return -1;
        }
    }
    if (keep && api->map_set(a->extra, "recent", keep))
        return -1;
    return sum;
}

/* Puts the account in the tier its points reach; records a change in
 * extra.tier_history and the log; (rolling) schedules the next review. */
static int tier_eval(crm_ctx *ctx, acc *a, const char *why)
{
    int64_t oldest, q = qualifying(ctx, a, 1, &oldest), now = api->now(ctx);
    const tier *t;
    if (q < 0)
        return oom(ctx);
    t = tier_for(q);
    if (strcmp(t->name, a->tier) != 0) {
        crm_value *hist = ensure_arr(a->extra, "tier_history"), *e = api->value_map(), *keep;
        int up = t->threshold > tier_named(a->tier)->threshold;
        if (!hist || !e || put_str(e, "from", a->tier) || put_str(e, "to", t->name) ||
            put_int(e, "at", now) || put_str(e, "why", why) || put_int(e, "basis", q)) {
            api->value_free(e);
            return oom(ctx);
        }
        if (api->arr_push(hist, e)) /* takes e */
            return oom(ctx);
        if ((int64_t)hist->u.arr.n > cfg.history_max) { /* keep the newest */
            size_t skip = hist->u.arr.n - (size_t)cfg.history_max;
            if (!(keep = api->value_arr()))
                return oom(ctx);
            for (size_t i = skip; i < hist->u.arr.n; i++)
                if (api->arr_push(keep, api->value_dup(hist->u.arr.items[i]))) {
                    api->value_free(keep);
                    return oom(ctx);
                }
            if (api->map_set(a->extra, "tier_history", keep))
                return oom(ctx);
        }
        api->log(api->ctx_plugin(ctx), CRM_LOG_INFO, "account %s (contact %s): tier %s -> %s (%s; %s %lld points: %s)",
                 a->id, a->contact, a->tier, t->name, up ? "upgrade" : "downgrade",
                 cfg.rolling ? "window" : "lifetime", (long long)q, why);
        a->tier = t->name;
        a->tier_since = now;
        a->changed = 1;
    }
    if (cfg.rolling) {
        int rc;
        if (oldest > 0) {
            crm_value *payload = api->value_map();
            double secs = (double)(oldest + (int64_t)(cfg.window_days * DAY_MS) - now) / 1000.0 + 0.001;
            if (!payload || put_str(payload, "account", a->id)) {
                api->value_free(payload);
                return oom(ctx);
            }
            rc = api->schedule(ctx, secs > 0.001 ? secs : 0.001, "loyalty.tier_review", payload, a->id);
            api->value_free(payload);
            return rc;
        }
        rc = api->cancel(ctx, "loyalty.tier_review", a->id);
        return rc == CRM_NOT_FOUND ? CRM_OK : rc;
    }
    return CRM_OK;
}

/* ---- earning and revoking, from orders ---- */

static const rate *rate_for(const char *currency)
{
    for (size_t i = 0; currency && i < cfg.nrates; i++)
        if (strcmp(cfg.rates[i].currency, currency) == 0)
            return &cfg.rates[i];
    return NULL;
}

static int earn(crm_ctx *ctx, const char *order_id, const crm_value *order)
{
    crm_plugin *p = api->ctx_plugin(ctx);
    const char *currency = str_of(order, "currency"), *contact = str_of(order, "contact");
    const rate *r = rate_for(currency);
    int64_t amount = int_of(order, "amount", 0), base, pts;
    char key[160], reason[201];
    const tier *t;
    const char *line = NULL;
    crm_value *extra;
    acc a;
    int rc;

    if (!r) {
        api->log(p, CRM_LOG_DEBUG, "order %s: no earn rate for currency %s", order_id,
                 currency ? currency : "?");
        return CRM_OK;
    }
    snprintf(key, sizeof key, "earn:%s", order_id);
    base = amount / r->per * r->points;
    if (base <= 0)
        return CRM_OK;
    if ((rc = acc_load(ctx, contact, 1, &a)) != CRM_OK)
        return rc;
    if (strcmp(str_of(a.rec, "status") ? str_of(a.rec, "status") : "active", "closed") == 0) {
        acc_free(&a);
        return CRM_OK;
    }
    t = tier_named(a.tier);
    pts = (int64_t)((double)base * t->mult + 1e-9);
    a.points += pts;
    a.lifetime += pts;
    snprintf(reason, sizeof reason, "order %s: %lld %s", str_of(order, "number") ? str_of(order, "number") : order_id,
             (long long)amount, currency);
    if (!(extra = api->value_map()) || put_int(extra, "base", base) ||
        put(extra, "multiplier", api->value_num(t->mult)) || put_str(extra, "tier", t->name) ||
        put_int(extra, "amount", amount) || put_str(extra, "currency", currency)) {
        api->value_free(extra);
        acc_free(&a);
        return oom(ctx);
    }
    /* An order earns once: the unique dedupe_key refuses a second earn
     * line (CONFLICT), which leaves the transaction as it was, before
     * anything else is written.  Cheaper than looking first. */
    rc = ledger_write(ctx, &a, "earn", pts, reason, order_id, key,
                      cfg.expiry_days > 0 ? api->now(ctx) + (int64_t)(cfg.expiry_days * DAY_MS) : 0,
                      extra, &line);
    if (rc == CRM_CONFLICT) {
        acc_free(&a);
        return CRM_OK;
    }
    if (rc == CRM_OK)
        rc = add_lot(ctx, &a, line, order_id, pts);
    if (rc == CRM_OK && cfg.rolling) {
        crm_value *recent = ensure_arr(a.extra, "recent"), *e = api->value_map();
        if (!recent || !e || put_str(e, "order", order_id) || put_int(e, "at", api->now(ctx)) ||
            put_int(e, "points", pts)) {
            api->value_free(e);
            rc = oom(ctx);
        } else if (api->arr_push(recent, e)) { /* takes e */
            rc = oom(ctx);
        }
    }
    if (rc == CRM_OK) {
        char why[200];
        snprintf(why, sizeof why, "earn on order %s", order_id);
        rc = tier_eval(ctx, &a, why);
    }
    if (rc == CRM_OK)
        rc = acc_save(ctx, &a);
    acc_free(&a);
    return rc;
}

/* Points redeemed on the order come back as a new lot. */
static int refund_redeemed(crm_ctx *ctx, const char *order_id)
{
    char key[160], rkey[160], reason[201];
    crm_value *line = NULL, *extra;
    const char *nid = NULL;
    int64_t n;
    acc a;
    int rc;
    snprintf(key, sizeof key, "redeem:order:%s", order_id);
    snprintf(rkey, sizeof rkey, "refund:%s", order_id);
    if ((rc = ledger_find(ctx, key, &line)) <= 0)
        return rc < 0 ? -rc : CRM_OK;
    n = -int_of(line, "points", 0);
    if (n <= 0 || (rc = ledger_find(ctx, rkey, NULL)) != 0) {
        api->value_free(line);
        return rc < 0 ? -rc : CRM_OK;
    }
    rc = acc_load(ctx, str_of(line, "contact"), 0, &a);
    api->value_free(line);
    if (rc != CRM_OK)
        return rc == CRM_NOT_FOUND ? CRM_OK : rc;
    a.points += n;
    snprintf(reason, sizeof reason, "order %s cancelled: %lld redeemed points returned", order_id,
             (long long)n);
    if (!(extra = api->value_map()) || put_str(extra, "returns", key)) {
        api->value_free(extra);
        acc_free(&a);
        return oom(ctx);
    }
    rc = ledger_write(ctx, &a, "adjust", n, reason, order_id, rkey,
                      cfg.expiry_days > 0 ? api->now(ctx) + (int64_t)(cfg.expiry_days * DAY_MS) : 0,
                      extra, &nid);
    if (rc == CRM_OK)
        rc = add_lot(ctx, &a, nid, order_id, n);
    if (rc == CRM_OK)
        rc = acc_save(ctx, &a);
    acc_free(&a);
    return rc;
}

static int revoke(crm_ctx *ctx, const char *order_id, const char *status)
{
    char key[160], rkey[160], reason[201], why[200];
    crm_value *line = NULL, *extra = NULL, *from = NULL;
    const char *earn_line;
    int64_t earned, take = 0;
    acc a;
    int rc;
    snprintf(key, sizeof key, "earn:%s", order_id);
    snprintf(rkey, sizeof rkey, "revoke:%s", order_id);
    if ((rc = ledger_find(ctx, key, &line)) <= 0)
        return rc < 0 ? -rc : CRM_OK; /* never earned */
    if ((rc = ledger_find(ctx, rkey, NULL)) != 0) {
        api->value_free(line);
        return rc < 0 ? -rc : CRM_OK; /* taken back already */
    }
    earned = int_of(line, "points", 0);
    if (!(earn_line = ctx_strdup(ctx, str_of(line, "id") ? str_of(line, "id") : ""))) {
        api->value_free(line);
        return oom(ctx);
    }
    rc = acc_load(ctx, str_of(line, "contact"), 0, &a);
    api->value_free(line);
    if (rc != CRM_OK)
        return rc == CRM_NOT_FOUND ? CRM_OK : rc;
    if (cfg.revoke_full) {
        take = earned < a.points ? earned : a.points;
    } else {
        for (size_t i = 0; i < a.lots->u.arr.n; i++)
            if (strcmp(str_of(a.lots->u.arr.items[i], "line") ? str_of(a.lots->u.arr.items[i], "line") : "", earn_line) == 0)
                take = int_of(a.lots->u.arr.items[i], "remaining", 0);
    }
    if (!(from = api->value_arr()) || !(extra = api->value_map())) {
        rc = oom(ctx);
        goto done;
    }
    if ((rc = take_points(ctx, &a, take, earn_line, from)) != CRM_OK)
        goto done;
    a.lifetime = a.lifetime > earned ? a.lifetime - earned : 0;
    if (cfg.rolling) { /* the earn no longer counts for the tier */
        crm_value *recent = ensure_arr(a.extra, "recent"), *keep = api->value_arr();
        if (!recent || !keep) {
            api->value_free(keep);
            rc = oom(ctx);
            goto done;
        }
        for (size_t i = 0; i < recent->u.arr.n; i++) {
            const char *o = str_of(recent->u.arr.items[i], "order");
            if ((!o || strcmp(o, order_id) != 0) &&
                api->arr_push(keep, api->value_dup(recent->u.arr.items[i]))) {
                api->value_free(keep);
                rc = oom(ctx);
                goto done;
            }
        }
        if (api->map_set(a.extra, "recent", keep)) {
            rc = oom(ctx);
            goto done;
        }
    }
    snprintf(reason, sizeof reason, "order %s %s: %lld of %lld earned points taken back", order_id,
             status, (long long)take, (long long)earned);
    if (put_int(extra, "earned", earned) || put_str(extra, "earn_line", earn_line)) {
        rc = oom(ctx);
        goto done;
    }
    rc = put(extra, "from", from); /* takes from */
    from = NULL;
    if (rc) {
        rc = oom(ctx);
        goto done;
    }
    rc = ledger_write(ctx, &a, "adjust", -take, reason, order_id, rkey, 0, extra, NULL);
    extra = NULL;
    if (rc != CRM_OK)
        goto done;
    rc = api->cancel(ctx, "loyalty.expire", earn_line);
    if (rc == CRM_NOT_FOUND || rc == CRM_OK) {
        /* a lot still open keeps its timer */
        for (size_t i = 0; i < a.lots->u.arr.n; i++) {
            const char *l = str_of(a.lots->u.arr.items[i], "line");
            if (l && strcmp(l, earn_line) == 0 && cfg.expiry_days > 0) {
                crm_value *payload = api->value_map();
                int64_t left = int_of(a.lots->u.arr.items[i], "expires_at", 0) - api->now(ctx);
                if (!payload || put_str(payload, "account", a.id) || put_str(payload, "line", l)) {
                    api->value_free(payload);
                    rc = oom(ctx);
                    goto done;
                }
                rc = api->schedule(ctx, left > 0 ? (double)left / 1000.0 : 0.001, "loyalty.expire",
                                   payload, l);
                api->value_free(payload);
                if (rc != CRM_OK)
                    goto done;
            }
        }
        rc = CRM_OK;
    }
    if (rc != CRM_OK)
        goto done;
    snprintf(why, sizeof why, "order %s %s", order_id, status);
    if ((rc = tier_eval(ctx, &a, why)) == CRM_OK)
        rc = acc_save(ctx, &a);
done:
    api->value_free(from);
    api->value_free(extra);
    acc_free(&a);
    return rc;
}

/* after orders.*: act when the status changes (or an order is created). */
static int on_order(crm_ctx *ctx, crm_event *ev, void *ud)
{
    const char *status, *was;
    int rc = CRM_OK;
    (void)ud;
    if (!ev->record) /* delete: the ledger keeps what happened */
        return CRM_OK;
    status = str_of(ev->record, "status");
    was = ev->prev ? str_of(ev->prev, "status") : NULL;
    if (!status || (was && strcmp(was, status) == 0))
        return CRM_OK;
    if (in_list(cfg.earn_on, status))
        return earn(ctx, ev->id, ev->record);
    if (in_list(cfg.revoke_on, status)) {
        if ((rc = revoke(ctx, ev->id, status)) == CRM_OK && cfg.refund_on_cancel)
            rc = refund_redeemed(ctx, ev->id);
    }
    return rc;
}

/* ---- redemption ---- */

/* Redeems n points from the contact's account: REJECTED when the balance
 * is short.  dedupe may be NULL. */
static int redeem(crm_ctx *ctx, const char *contact, int64_t n, const char *reason,
                  const char *order_ref, const char *order_id, const char *dedupe, acc *a,
                  const char **line_id)
{
    crm_value *from, *extra;
    int rc;
    memset(a, 0, sizeof *a); /* the caller frees it on every path */
    if (n <= 0)
        return api->error(ctx, CRM_BAD_REQUEST, "loyalty: points to redeem must be a positive integer");
    if ((rc = acc_load(ctx, contact, 0, a)) != CRM_OK)
        return rc == CRM_NOT_FOUND ? api->error(ctx, CRM_REJECTED,
                                                "insufficient points: contact %s has no loyalty account (balance 0), asked %lld",
                                                contact, (long long)n)
                                   : rc;
    if (strcmp(str_of(a->rec, "status") ? str_of(a->rec, "status") : "active", "active") != 0)
        return api->error(ctx, CRM_REJECTED, "loyalty account %s is %s: no redemption", a->id,
                          str_of(a->rec, "status"));
    if (a->points < n)
        return api->error(ctx, CRM_REJECTED, "insufficient points: balance %lld, asked %lld",
                          (long long)a->points, (long long)n);
    if (dedupe && (rc = ledger_find(ctx, dedupe, NULL)) != 0)
        return rc < 0 ? -rc
                      : api->error(ctx, CRM_CONFLICT, "loyalty: already redeemed (%s)", dedupe);
    if (!(from = api->value_arr()))
        return oom(ctx);
    if ((rc = take_points(ctx, a, n, NULL, from)) != CRM_OK) {
        api->value_free(from);
        return rc;
    }
    if (!(extra = api->value_map()) || put(extra, "from", from) ||
        (order_id && put_str(extra, "order", order_id))) {
        api->value_free(extra);
        return oom(ctx);
    }
    if ((rc = ledger_write(ctx, a, "redeem", -n, reason, order_ref, dedupe, 0, extra, line_id)) != CRM_OK)
        return rc;
    return acc_save(ctx, a);
}

/* before orders.create: points_redeemed > 0 is redeemed with the order. */
static int on_order_create(crm_ctx *ctx, crm_event *ev, void *ud)
{
    int64_t n = int_of(ev->record, "points_redeemed", 0);
    char key[160], reason[201];
    const char *number;
    acc a;
    int rc;
    (void)ud;
    if (n <= 0)
        return CRM_OK;
    number = str_of(ev->record, "number");
    snprintf(key, sizeof key, "redeem:order:%s", ev->id);
    snprintf(reason, sizeof reason, "redeemed on order %s", number ? number : ev->id);
    /* the order is not stored yet: its id goes in extra, not in the ref */
    rc = redeem(ctx, str_of(ev->record, "contact"), n, reason, NULL, ev->id, key, &a, NULL);
    acc_free(&a);
    return rc;
}

/* ---- timers ---- */

static int on_expire(crm_ctx *ctx, const char *name, const crm_value *payload, void *ud)
{
    const char *account = str_of(payload, "account"), *line = str_of(payload, "line");
    crm_value *rec = NULL, *extra = NULL;
    char key[160], reason[201];
    int64_t rem = 0, at = 0, lot_at = 0;
    acc a;
    int rc;
    (void)name;
    (void)ud;
    if (!account || !line)
        return CRM_OK;
    rc = api->get(ctx, "loyalty_accounts", account, &rec);
    if (rc != CRM_OK)
        return rc == CRM_NOT_FOUND ? CRM_OK : rc;
    rc = acc_load(ctx, str_of(rec, "contact"), 0, &a);
    api->value_free(rec);
    if (rc != CRM_OK)
        return rc == CRM_NOT_FOUND ? CRM_OK : rc;
    for (size_t i = 0; i < a.lots->u.arr.n; i++) {
        const crm_value *lot = a.lots->u.arr.items[i];
        const char *l = str_of(lot, "line");
        if (l && strcmp(l, line) == 0) {
            rem = int_of(lot, "remaining", 0);
            at = int_of(lot, "expires_at", 0);
            lot_at = int_of(lot, "at", 0);
        }
    }
    if (rem <= 0) { /* used up, taken back or expired already */
        acc_free(&a);
        return CRM_OK;
    }
    if (rem > a.points)
        rem = a.points;
    if ((rc = take_points(ctx, &a, rem, line, NULL)) != CRM_OK)
        goto done;
    snprintf(key, sizeof key, "expire:%s", line);
    snprintf(reason, sizeof reason, "%lld points of %s lapsed", (long long)rem, line);
    if (!(extra = api->value_map()) || put_str(extra, "lot", line) ||
        put_int(extra, "earned_at", lot_at) || put_int(extra, "due", at)) {
        rc = oom(ctx);
        goto done;
    }
    rc = ledger_write(ctx, &a, "expire", -rem, reason, NULL, key, 0, extra, NULL);
    extra = NULL;
    if (rc == CRM_OK)
        rc = acc_save(ctx, &a);
done:
    api->value_free(extra);
    acc_free(&a);
    return rc;
}

static int on_tier_review(crm_ctx *ctx, const char *name, const crm_value *payload, void *ud)
{
    const char *account = str_of(payload, "account");
    crm_value *rec = NULL;
    acc a;
    int rc;
    (void)name;
    (void)ud;
    if (!account)
        return CRM_OK;
    if ((rc = api->get(ctx, "loyalty_accounts", account, &rec)) != CRM_OK)
        return rc == CRM_NOT_FOUND ? CRM_OK : rc;
    rc = acc_load(ctx, str_of(rec, "contact"), 0, &a);
    api->value_free(rec);
    if (rc != CRM_OK)
        return rc == CRM_NOT_FOUND ? CRM_OK : rc;
    /* saved also without a tier change: extra.recent was pruned */
    if ((rc = tier_eval(ctx, &a, "points left the tier window")) == CRM_OK)
        rc = acc_save(ctx, &a);
    acc_free(&a);
    return rc;
}

/* ---- methods ---- */

static const char *param_str(const crm_value *params, const char *key)
{
    return params && params->type == CRM_T_MAP ? str_of(params, key) : NULL;
}

static int param_points(crm_ctx *ctx, const crm_value *params, int64_t *n)
{
    const crm_value *v = params && params->type == CRM_T_MAP ? api->map_get(params, "points") : NULL;
    if (!v || v->type != CRM_T_INT)
        return api->error(ctx, CRM_BAD_REQUEST, "loyalty: points must be an integer");
    *n = v->u.i;
    return CRM_OK;
}

/* The account as the methods report it. */
static crm_value *report(crm_ctx *ctx, acc *a, const char *contact)
{
    crm_value *r = api->value_map();
    const tier *t = a && a->rec ? tier_named(a->tier) : &cfg.tiers[0], *next = NULL;
    int64_t oldest, q = 0, exp_pts = 0, exp_at = a && a->rec ? lot_expires(a, &exp_pts) : 0;
    if (!r)
        return NULL;
    if (a && a->rec && (q = qualifying(ctx, a, 0, &oldest)) < 0) {
        api->value_free(r);
        return NULL;
    }
    for (size_t i = 0; i < cfg.ntiers; i++)
        if (cfg.tiers[i].threshold > t->threshold) {
            next = &cfg.tiers[i];
            break;
        }
    if (put_str(r, "contact", contact) ||
        put(r, "account", a && a->rec ? api->value_str(a->id, strlen(a->id)) : api->value_nil()) ||
        put_int(r, "points", a && a->rec ? a->points : 0) ||
        put_int(r, "lifetime_points", a && a->rec ? a->lifetime : 0) ||
        put_str(r, "tier", t->name) ||
        put(r, "tier_since", a && a->rec ? api->value_int(a->tier_since) : api->value_nil()) ||
        put(r, "multiplier", api->value_num(t->mult)) ||
        put(r, "benefits", t->benefits ? api->value_dup(t->benefits) : api->value_arr()) ||
        put_str(r, "tier_basis", cfg.rolling ? "rolling" : "lifetime") ||
        put_int(r, "qualifying_points", q) ||
        put_str(r, "status", a && a->rec && str_of(a->rec, "status") ? str_of(a->rec, "status") : "none")) {
        api->value_free(r);
        return NULL;
    }
    if (next) {
        crm_value *n = api->value_map();
        if (!n || put_str(n, "name", next->name) || put_int(n, "threshold", next->threshold) ||
            put_int(n, "points_needed", next->threshold - q)) {
            api->value_free(n);
            api->value_free(r);
            return NULL;
        }
        if (put(r, "next_tier", n)) { /* takes n */
            api->value_free(r);
            return NULL;
        }
    } else if (put(r, "next_tier", api->value_nil())) {
        api->value_free(r);
        return NULL;
    }
    if (exp_at > 0) {
        crm_value *e = api->value_map();
        if (!e || put_int(e, "at", exp_at) || put_int(e, "points", exp_pts)) {
            api->value_free(e);
            api->value_free(r);
            return NULL;
        }
        if (put(r, "next_expiry", e)) { /* takes e */
            api->value_free(r);
            return NULL;
        }
    } else if (put(r, "next_expiry", api->value_nil())) {
        api->value_free(r);
        return NULL;
    }
    return r;
}

/* loyalty.redeem {contact, points, reason?, order?, key?} */
static int m_redeem(crm_ctx *ctx, const crm_value *params, crm_value **result, void *ud)
{
    const char *contact = param_str(params, "contact"), *order = param_str(params, "order"),
               *why = param_str(params, "reason"), *k = param_str(params, "key"), *line = NULL;
    char key[160], *dedupe = NULL;
    int64_t n = 0; /* param_points sets it; gcc -O3 cannot see that */
    acc a;
    int rc;
    (void)ud;
    if (!contact)
        return api->error(ctx, CRM_BAD_REQUEST, "loyalty.redeem needs {contact, points, reason}");
    if ((rc = param_points(ctx, params, &n)) != CRM_OK)
        return rc;
    if (k) {
        snprintf(key, sizeof key, "redeem:%s", k);
        dedupe = key;
    } else if (order) {
        snprintf(key, sizeof key, "redeem:order:%s", order);
        dedupe = key;
    }
    rc = redeem(ctx, contact, n, why ? why : "redeemed", order, order, dedupe, &a, &line);
    if (rc == CRM_OK) {
        if (!(*result = report(ctx, &a, contact)) ||
            put_str(*result, "line", line) || put_int(*result, "redeemed", n))
            rc = oom(ctx);
    }
    acc_free(&a);
    return rc;
}

/* loyalty.balance {contact} */
static int m_balance(crm_ctx *ctx, const crm_value *params, crm_value **result, void *ud)
{
    const char *contact = param_str(params, "contact");
    acc a;
    int rc;
    (void)ud;
    if (!contact)
        return api->error(ctx, CRM_BAD_REQUEST, "loyalty.balance needs {contact}");
    rc = acc_load(ctx, contact, 0, &a);
    if (rc != CRM_OK && rc != CRM_NOT_FOUND) {
        acc_free(&a);
        return rc;
    }
    *result = report(ctx, rc == CRM_OK ? &a : NULL, contact);
    acc_free(&a);
    return *result ? CRM_OK : oom(ctx);
}

/* loyalty.adjust {contact, points (signed, not 0), reason}: a correction
 * or goodwill by an operator.  Positive: a new lot (expires like an earn);
 * negative: taken oldest first, REJECTED below zero.  Does not count for
 * the tier. */
static int m_adjust(crm_ctx *ctx, const crm_value *params, crm_value **result, void *ud)
{
    const char *contact = param_str(params, "contact"), *why = param_str(params, "reason"),
               *line = NULL, *user = api->caller_user(ctx);
    crm_value *extra = NULL, *from = NULL;
    int64_t n = 0; /* param_points sets it; gcc -O3 cannot see that */
    acc a;
    int rc;
    (void)ud;
    if (!contact || !why || !*why)
        return api->error(ctx, CRM_BAD_REQUEST, "loyalty.adjust needs {contact, points, reason}");
    if ((rc = param_points(ctx, params, &n)) != CRM_OK)
        return rc;
    if (n == 0)
        return api->error(ctx, CRM_BAD_REQUEST, "loyalty.adjust: points must not be 0");
    if ((rc = acc_load(ctx, contact, n > 0, &a)) != CRM_OK) {
        acc_free(&a);
        return rc == CRM_NOT_FOUND ? api->error(ctx, CRM_REJECTED, "insufficient points: contact %s has no loyalty account", contact) : rc;
    }
    if (n < 0 && a.points < -n) {
        rc = api->error(ctx, CRM_REJECTED, "insufficient points: balance %lld, asked %lld",
                        (long long)a.points, (long long)-n);
        goto done;
    }
    if (!(extra = api->value_map()) || put_str(extra, "by", user ? user : "?") ||
        put_str(extra, "role", api->caller_role(ctx) ? api->caller_role(ctx) : "?")) {
        rc = oom(ctx);
        goto done;
    }
    if (n < 0) {
        if (!(from = api->value_arr())) {
            rc = oom(ctx);
            goto done;
        }
        if ((rc = take_points(ctx, &a, -n, NULL, from)) != CRM_OK)
            goto done;
        rc = put(extra, "from", from); /* takes from */
        from = NULL;
        if (rc) {
            rc = oom(ctx);
            goto done;
        }
    } else {
        a.points += n;
    }
    rc = ledger_write(ctx, &a, "adjust", n, why, NULL, NULL,
                      n > 0 && cfg.expiry_days > 0 ? api->now(ctx) + (int64_t)(cfg.expiry_days * DAY_MS) : 0,
                      extra, &line);
    extra = NULL;
    if (rc == CRM_OK && n > 0)
        rc = add_lot(ctx, &a, line, NULL, n);
    if (rc == CRM_OK)
        rc = acc_save(ctx, &a);
    if (rc == CRM_OK && (!(*result = report(ctx, &a, contact)) || put_str(*result, "line", line)))
        rc = oom(ctx);
done:
    api->value_free(extra);
    api->value_free(from);
    acc_free(&a);
    return rc;
}

/* ---- configuration and init ---- */

static int bad(char *errbuf, size_t cap, const char *msg, const char *what)
{
    snprintf(errbuf, cap, "loyalty.json: %s%s%s", msg, what ? ": " : "", what ? what : "");
    return CRM_BAD_REQUEST;
}

static int num_ok(const crm_value *v, double *out)
{
    if (v && v->type == CRM_T_INT)
        *out = (double)v->u.i;
    else if (v && v->type == CRM_T_NUM)
        *out = v->u.n;
    else
        return 0;
    return 1;
}

static int str_list_ok(const crm_value *v)
{
    if (!v || v->type != CRM_T_ARR)
        return 0;
    for (size_t i = 0; i < v->u.arr.n; i++)
        if (v->u.arr.items[i]->type != CRM_T_STR)
            return 0;
    return 1;
}

static int load_config(crm_plugin *p, char *errbuf, size_t cap)
{
    const crm_value *v;
    const char *s;
    double d;

    memset(&cfg, 0, sizeof cfg);
    v = conf(p, "tiers");
    if (!v || v->type != CRM_T_ARR || v->u.arr.n == 0 || v->u.arr.n > MAX_TIERS)
        return bad(errbuf, cap, "tiers must be a list of 1 to 16 tiers", NULL);
    for (size_t i = 0; i < v->u.arr.n; i++) {
        const crm_value *t = v->u.arr.items[i], *b;
        tier *x = &cfg.tiers[cfg.ntiers];
        double m = 1.0;
        if (t->type != CRM_T_MAP || !(x->name = str_of(t, "name")))
            return bad(errbuf, cap, "every tier needs a name", NULL);
        if (!num_ok(api->map_get(t, "threshold"), &d) || d < 0)
            return bad(errbuf, cap, "a tier's threshold must be a number >= 0", x->name);
        x->threshold = (int64_t)d;
        if (api->map_get(t, "multiplier") && (!num_ok(api->map_get(t, "multiplier"), &m) || m <= 0 || m > 1000))
            return bad(errbuf, cap, "a tier's multiplier must be a number > 0", x->name);
        x->mult = m;
        b = api->map_get(t, "benefits");
        if (b && !str_list_ok(b))
            return bad(errbuf, cap, "a tier's benefits must be a list of names", x->name);
        x->benefits = b;
        for (size_t j = 0; j < cfg.ntiers; j++)
            if (cfg.tiers[j].threshold == x->threshold || strcmp(cfg.tiers[j].name, x->name) == 0)
                return bad(errbuf, cap, "two tiers with the same name or threshold", x->name);
        cfg.ntiers++;
    }
    /* ascending by threshold */
    for (size_t i = 1; i < cfg.ntiers; i++)
        for (size_t j = i; j > 0 && cfg.tiers[j - 1].threshold > cfg.tiers[j].threshold; j--) {
            tier t = cfg.tiers[j];
            cfg.tiers[j] = cfg.tiers[j - 1];
            cfg.tiers[j - 1] = t;
        }
    if (cfg.tiers[0].threshold != 0)
        return bad(errbuf, cap, "the lowest tier must have threshold 0", cfg.tiers[0].name);

    v = conf(p, "rates");
    if (!v || v->type != CRM_T_MAP || v->u.map.n > MAX_RATES)
        return bad(errbuf, cap, "rates must map a currency to {\"points\": n, \"per\": minor units}", NULL);
    for (size_t i = 0; i < v->u.map.n; i++) {
        const crm_value *r = v->u.map.kv[i].val;
        rate *x = &cfg.rates[cfg.nrates++];
        x->currency = v->u.map.kv[i].key;
        x->points = int_of(r, "points", 0);
        x->per = int_of(r, "per", 0);
        if (r->type != CRM_T_MAP || x->points <= 0 || x->per <= 0)
            return bad(errbuf, cap, "a rate needs points > 0 and per > 0", x->currency);
    }

    cfg.earn_on = conf(p, "earn_on");
    cfg.revoke_on = conf(p, "revoke_on");
    if (!str_list_ok(cfg.earn_on) || !str_list_ok(cfg.revoke_on))
        return bad(errbuf, cap, "earn_on and revoke_on must be lists of order statuses", NULL);
    for (size_t i = 0; i < cfg.earn_on->u.arr.n; i++)
        if (in_list(cfg.revoke_on, cfg.earn_on->u.arr.items[i]->u.str.s))
            return bad(errbuf, cap, "a status cannot be in both earn_on and revoke_on",
                       cfg.earn_on->u.arr.items[i]->u.str.s);

    s = str_of(api->config(p, NULL), "revoke_mode");
    s = s ? s : str_of(defaults, "revoke_mode");
    if (strcmp(s, "full") != 0 && strcmp(s, "remaining") != 0)
        return bad(errbuf, cap, "revoke_mode must be \"full\" or \"remaining\"", s);
    cfg.revoke_full = strcmp(s, "full") == 0;

    s = str_of(api->config(p, NULL), "tier_basis");
    s = s ? s : str_of(defaults, "tier_basis");
    if (strcmp(s, "lifetime") != 0 && strcmp(s, "rolling") != 0)
        return bad(errbuf, cap, "tier_basis must be \"lifetime\" or \"rolling\"", s);
    cfg.rolling = strcmp(s, "rolling") == 0;

    if (!num_ok(conf(p, "expiry_days"), &cfg.expiry_days) || cfg.expiry_days < 0)
        return bad(errbuf, cap, "expiry_days must be a number >= 0 (0: points never lapse)", NULL);
    if (!num_ok(conf(p, "tier_window_days"), &cfg.window_days) || cfg.window_days <= 0)
        return bad(errbuf, cap, "tier_window_days must be a number > 0", NULL);
    if (!num_ok(conf(p, "tier_history_max"), &d) || d < 0)
        return bad(errbuf, cap, "tier_history_max must be a number >= 0", NULL);
    cfg.history_max = (int64_t)d;
    v = conf(p, "redeem_on_order");
    if (!v || v->type != CRM_T_BOOL)
        return bad(errbuf, cap, "redeem_on_order must be true or false", NULL);
    cfg.redeem_on_order = v->u.b;
    v = conf(p, "refund_redeemed_on_cancel");
    if (!v || v->type != CRM_T_BOOL)
        return bad(errbuf, cap, "refund_redeemed_on_cancel must be true or false", NULL);
    cfg.refund_on_cancel = v->u.b;
    return CRM_OK;
}

/* Accounts and ledger lines are this plugin's alone: a write any other
 * code makes (a client, even admin; another plugin or script) could break
 * the ledger-sums-to-balance invariant, so it is refused.  Corrections go
 * through loyalty.adjust, which writes both sides together. */
static int guard_own(crm_ctx *ctx, crm_event *ev, void *ud)
{
    (void)ud;
    if (api->write_origin(ctx) == api->ctx_plugin(ctx))
        return CRM_OK;
    /* the kernel's on_delete cascade (schemas): an account goes with its
     * contact, a ledger line with its account; the invariant holds, as
     * nothing of the account is left */
    if (strcmp(ev->op, "delete") == 0 && ev->prev) {
        const char *owner_coll = strcmp(ev->collection, "loyalty_accounts") == 0 ? "contacts"
                                                                                 : "loyalty_accounts";
        const char *owner_field = strcmp(ev->collection, "loyalty_accounts") == 0 ? "contact"
                                                                                  : "account";
        const crm_value *owner = api->map_get(ev->prev, owner_field);
        crm_value *rec = NULL;
        int rc = owner && owner->type == CRM_T_STR ? api->get(ctx, owner_coll, owner->u.str.s, &rec)
                                                   : CRM_OK;
        api->value_free(rec);
        if (rc == CRM_NOT_FOUND)
            return CRM_OK;
    }
    return api->error(ctx, CRM_REJECTED,
                      "%s records are written by the loyalty plugin only (use loyalty.redeem or "
                      "loyalty.adjust)",
                      ev->collection);
}

static int loyalty_init(crm_plugin *p, const crm_api *a, char *errbuf, size_t cap)
{
    int rc;
    api = a;
    if (api->from_json(DEFAULTS, sizeof DEFAULTS - 1, &defaults, NULL) != CRM_OK) {
        snprintf(errbuf, cap, "loyalty: built-in defaults do not parse");
        return CRM_INTERNAL;
    }
    if ((rc = load_config(p, errbuf, cap)) != CRM_OK)
        goto fail;
    if ((rc = api->on(p, "orders.*", CRM_AFTER, "loyalty.orders", on_order, NULL)) != CRM_OK ||
        (cfg.redeem_on_order &&
         (rc = api->on(p, "orders.create", CRM_BEFORE, "loyalty.order_redeem", on_order_create,
                       NULL)) != CRM_OK) ||
        (rc = api->on_timer(p, "loyalty.expire", on_expire, NULL)) != CRM_OK ||
        (rc = api->on_timer(p, "loyalty.tier_review", on_tier_review, NULL)) != CRM_OK ||
        (rc = api->method(p, "loyalty.redeem", m_redeem, NULL)) != CRM_OK ||
        (rc = api->method(p, "loyalty.balance", m_balance, NULL)) != CRM_OK ||
        (rc = api->method(p, "loyalty.adjust", m_adjust, NULL)) != CRM_OK ||
        (rc = api->on(p, "loyalty_accounts.*", CRM_BEFORE, "loyalty.guard_accounts", guard_own,
                      NULL)) != CRM_OK ||
        (rc = api->on(p, "loyalty_ledger.*", CRM_BEFORE, "loyalty.guard_ledger", guard_own,
                      NULL)) != CRM_OK) {
        snprintf(errbuf, cap, "%s", api->registration_error(p));
        goto fail;
    }
    api->log(p, CRM_LOG_INFO,
             "loyalty ready: %zu tiers (%s basis), %zu currencies, points lapse after %g days%s",
             cfg.ntiers, cfg.rolling ? "rolling" : "lifetime", cfg.nrates, cfg.expiry_days,
             cfg.expiry_days > 0 ? "" : " (never)");
    return CRM_OK;
fail:
    api->value_free(defaults);
    defaults = NULL;
    return rc;
}

static void loyalty_fini(crm_plugin *p, const crm_api *a)
{
    (void)p;
    a->value_free(defaults);
    defaults = NULL;
}

CRM_PLUGIN_DECLARE("loyalty", "1.0", loyalty_init, loyalty_fini)
