/*
 * bus_timers -- durable timers (api->schedule, api->cancel, firing).
 *
 * A timer is a row of aux table "timers" keyed by due time (8-byte big
 * endian ms on the store clock) then a counter, so a scan from the start
 * meets them in due order.  A keyed timer also has a row in "timer_keys"
 * (timer NUL key -> its timers key) so scheduling it again replaces it.
 * Scheduling is part of the caller's transaction: a hook whose write is
 * undone leaves no timer behind.  Firing removes the row in the same
 * nested transaction as the handler's writes, so a timer fires exactly
 * once; timers that came due while the server was down fire at start.
 */
#include "bus_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "keys.h"

#define TIMER_KEY_MAX 256
#define MAX_DELAY_S (10.0 * 365 * 24 * 3600)

/* "timer NUL key" into buf; 0 when too long. */
static size_t keyed_name(const char *timer, const char *key, char *buf, size_t cap)
{
    size_t tl = strlen(timer), kl = strlen(key);
    if (tl + 1 + kl > cap)
        return 0;
    memcpy(buf, timer, tl);
    buf[tl] = '\0';
    memcpy(buf + tl + 1, key, kl);
    return tl + 1 + kl;
}

static crm_timer_retry **retry_find(crm_bus *b, const uint8_t key[16])
{
    crm_timer_retry **r;
    for (r = &b->retries; *r; r = &(*r)->next)
        if (memcmp((*r)->key, key, 16) == 0)
            break;
    return r;
}

static void retry_drop(crm_bus *b, const uint8_t key[16])
{
    crm_timer_retry **r = retry_find(b, key);
    if (*r) {
        crm_timer_retry *dead = *r;
        *r = dead->next;
        free(dead);
    }
}

void crm_bus_timers_forget(crm_bus *b)
{
    while (b->retries) {
        crm_timer_retry *next = b->retries->next;
        free(b->retries);
        b->retries = next;
    }
}

/* Removes the keyed timer (timer, key) if one is pending. */
static int drop_keyed(crm_txn *t, crm_bus *b, const char *kn, size_t knl, crm_err *err)
{
    const void *v;
    size_t vl;
    uint8_t old[16];
    int rc = crm_txn_aux_get(t, CRM_AUX_TIMER_KEYS, kn, knl, &v, &vl, err);
    if (rc == CRM_NOT_FOUND)
        return CRM_NOT_FOUND;
    if (rc != CRM_OK)
        return rc;
    if (vl != 16)
        return crm_err_set(err, CRM_INTERNAL, "a timer key row is damaged");
    memcpy(old, v, 16); /* borrowed bytes move with the next write */
    rc = crm_txn_aux_put(t, CRM_AUX_TIMERS, old, 16, NULL, 0, err);
    if (rc != CRM_OK && rc != CRM_NOT_FOUND)
        return rc;
    retry_drop(b, old);
    return crm_txn_aux_put(t, CRM_AUX_TIMER_KEYS, kn, knl, NULL, 0, err);
}

int crm_bus_schedule(crm_ctx *c, double seconds, const char *timer, const crm_value *payload,
                     const char *key)
{
    crm_bus *b;
    crm_value *row;
    uint8_t tk[16], *enc;
    size_t enclen, knl = 0;
    char kn[CRM_BUS_NAME_MAX + TIMER_KEY_MAX + 2];
    int64_t due;
    int rc;

    if (!c || !c->t)
        return CRM_BAD_REQUEST; /* no ctx to carry a message: outside a call */
    b = c->b;
    crm_err_clear(&c->err);
    if (!timer || !*timer || strlen(timer) >= CRM_BUS_NAME_MAX)
        return crm_err_set(&c->err, CRM_BAD_REQUEST, "a timer needs a name of 1-%d bytes",
                           CRM_BUS_NAME_MAX - 1);
    if (!isfinite(seconds) || seconds < 0 || seconds > MAX_DELAY_S)
        return crm_err_set(&c->err, CRM_BAD_REQUEST,
                           "timer %s: seconds must be from 0 to 10 years", timer);
    if (key && (!*key || strlen(key) > TIMER_KEY_MAX))
        return crm_err_set(&c->err, CRM_BAD_REQUEST, "timer %s: key must be 1-%d bytes", timer,
                           TIMER_KEY_MAX);
    if (key) {
        knl = keyed_name(timer, key, kn, sizeof kn);
        rc = drop_keyed(c->t, b, kn, knl, &c->err);
        if (rc != CRM_OK && rc != CRM_NOT_FOUND)
            return rc;
        crm_err_clear(&c->err);
    }
    due = crm_txn_now(c->t) + llround(seconds * 1000.0);
    crm_be64_put(tk, (uint64_t)due);
    crm_be64_put(tk + 8, ++b->timer_ctr);
    row = crm_value_map();
    if (!row || crm_map_set(row, "timer", crm_value_cstr(timer)) ||
        (key && crm_map_set(row, "key", crm_value_cstr(key))) ||
        (payload && crm_map_set(row, "payload", crm_value_dup(payload))) ||
        !(enc = crm_mp_encode(row, &enclen))) {
        crm_value_free(row);
        return crm_err_set(&c->err, CRM_INTERNAL, "out of memory");
    }
    crm_value_free(row);
    rc = crm_txn_aux_put(c->t, CRM_AUX_TIMERS, tk, 16, enc, enclen, &c->err);
    free(enc);
    if (rc == CRM_OK && key)
        rc = crm_txn_aux_put(c->t, CRM_AUX_TIMER_KEYS, kn, knl, tk, 16, &c->err);
    if (rc == CRM_OK && due < b->next_due)
        b->next_due = due;
    if (rc == CRM_OK && due < b->sched_min)
        b->sched_min = due;
    return rc;
}

int crm_bus_cancel(crm_ctx *c, const char *timer, const char *key)
{
    char kn[CRM_BUS_NAME_MAX + TIMER_KEY_MAX + 2];
    size_t knl;
    int rc;
    if (!c || !c->t)
        return CRM_BAD_REQUEST;
    crm_err_clear(&c->err);
    if (!timer || !key || !(knl = keyed_name(timer, key, kn, sizeof kn)))
        return crm_err_set(&c->err, CRM_BAD_REQUEST, "cancel needs a timer name and its key");
    rc = drop_keyed(c->t, c->b, kn, knl, &c->err);
    if (rc == CRM_NOT_FOUND)
        return crm_err_set(&c->err, CRM_NOT_FOUND, "no pending timer %s with key %s", timer, key);
    return rc;
}

/* ---- firing ---- */

typedef struct due_timer {
    uint8_t key[16];
    crm_value *row;
} due_timer;

typedef struct scan {
    int64_t now;
    due_timer *due;
    size_t n, cap, seen;
    int64_t next;    /* due time of the first timer not yet due */
    int oom;
} scan;

static int scan_cb(void *ud, const void *k, size_t kl, const void *v, size_t vl)
{
    scan *sc = ud;
    int64_t due;
    sc->seen++;
    if (kl != 16)
        return 0;
    due = (int64_t)crm_be64_get(k);
    if (due > sc->now) {
        sc->next = due;
        return 1;
    }
    if (sc->n == sc->cap) {
        size_t cap = sc->cap ? sc->cap * 2 : 16;
        due_timer *g = realloc(sc->due, cap * sizeof *g);
        if (!g) {
            sc->oom = 1;
            return 1;
        }
        sc->due = g;
        sc->cap = cap;
    }
    memcpy(sc->due[sc->n].key, k, 16);
    sc->due[sc->n].row = crm_mp_decode_trusted(v, vl);
    sc->n++;
    return 0;
}

typedef struct fire {
    crm_bus *b;
    due_timer *dt;
    int dead;          /* dead-letter instead of running */
    int attempts;
    const char *error;
} fire;

static int remove_row(crm_txn *t, const due_timer *dt, crm_err *err)
{
    const char *key = crm_map_str(dt->row, "key", NULL);
    const char *timer = crm_map_str(dt->row, "timer", "");
    int rc = crm_txn_aux_put(t, CRM_AUX_TIMERS, dt->key, 16, NULL, 0, err);
    if (rc != CRM_OK)
        return rc;
    if (key) {
        char kn[CRM_BUS_NAME_MAX + TIMER_KEY_MAX + 2];
        size_t knl = keyed_name(timer, key, kn, sizeof kn);
        const void *v;
        size_t vl;
        /* only if the key still points here (it always should) */
        if (knl && crm_txn_aux_get(t, CRM_AUX_TIMER_KEYS, kn, knl, &v, &vl, err) == CRM_OK &&
            vl == 16 && memcmp(v, dt->key, 16) == 0)
            rc = crm_txn_aux_put(t, CRM_AUX_TIMER_KEYS, kn, knl, NULL, 0, err);
    }
    crm_err_clear(err);
    return rc == CRM_NOT_FOUND ? CRM_OK : rc;
}

static int fire_fn(void *ud, crm_txn *t, crm_err *err)
{
    fire *f = ud;
    const char *timer = crm_map_str(f->dt->row, "timer", "");
    const crm_value *payload = crm_map_get(f->dt->row, "payload");
    crm_named *h;
    crm_ctx c;
    int rc;

    if ((rc = remove_row(t, f->dt, err)) != CRM_OK)
        return rc;
    if (f->dead) {
        dead_letter d = {"timer", timer, NULL, f->error, NULL, NULL,
                         crm_map_str(f->dt->row, "key", NULL), f->attempts, 0, payload};
        h = crm_bus_find_timer(f->b, timer);
        d.owner = h ? h->owner->who : NULL;
        return crm_bus_dead_letter(f->b, t, &d, err);
    }
    if (!(h = crm_bus_find_timer(f->b, timer)))
        return crm_err_set(err, CRM_NOT_FOUND, "no handler is registered for timer %s", timer);
    crm_ctx_init(&c, f->b, h->owner, t, NULL, NULL);
    rc = ((crm_timer_fn)h->fn)(&c, timer, payload, h->ud);
    if (rc != CRM_OK) {
        if (c.err.code != CRM_OK && c.err.msg[0])
            *err = c.err;
        else
            crm_err_set(err, rc, "%s: timer %s failed", h->owner->who, timer);
        err->code = rc;
    }
    crm_ctx_done(&c);
    return rc;
}

void crm_bus_timers_round(crm_bus *b, crm_txn *t)
{
    scan sc;
    crm_err e;
    int64_t next;

    memset(&sc, 0, sizeof sc);
    sc.now = crm_txn_now(t);
    sc.next = INT64_MAX;
    if (crm_txn_aux_scan(t, CRM_AUX_TIMERS, NULL, 0, b->o.max_per_round, scan_cb, &sc, &e) !=
        CRM_OK)
        sc.next = sc.now + 1000;
    if (sc.oom || (sc.n && sc.seen >= b->o.max_per_round && sc.next == INT64_MAX))
        sc.next = sc.now; /* more are due than one round takes */
    b->timers_count = sc.seen;
    next = sc.next;
    for (size_t i = 0; i < sc.n; i++) {
        due_timer *dt = &sc.due[i];
        crm_timer_retry **rp = retry_find(b, dt->key), *r = *rp;
        fire f = {b, dt, 0, 0, NULL};
        int rc;
        if (!dt->row) { /* a row we cannot read: drop it rather than spin */
            crm_txn_aux_put(t, CRM_AUX_TIMERS, dt->key, 16, NULL, 0, &e);
            continue;
        }
        if (r && r->retry_at > sc.now) {
            if (r->retry_at < next)
                next = r->retry_at;
            continue;
        }
        rc = crm_txn_nest(t, -1, fire_fn, &f, &e);
        b->stats.timer_runs++;
        if (rc == CRM_OK) {
            retry_drop(b, dt->key);
            continue;
        }
        b->stats.timer_failures++;
        if (!r) {
            if (!(r = calloc(1, sizeof *r)))
                continue;
            memcpy(r->key, dt->key, 16);
            r->next = b->retries;
            b->retries = r;
        }
        r->attempts++;
        if (r->attempts >= b->o.max_attempts) {
            char why[300];
            snprintf(why, sizeof why, "%s: %s", crm_code_name(rc), e.msg);
            f.dead = 1;
            f.attempts = r->attempts;
            f.error = why;
            if (crm_txn_nest(t, -1, fire_fn, &f, &e) == CRM_OK) {
                retry_drop(b, dt->key);
                continue;
            }
        } else {
            crm_bus_log(b, CRM_LOG_WARN, "bus", "timer %s failed (attempt %d of %d): %s: %s",
                        crm_map_str(dt->row, "timer", ""), r->attempts, b->o.max_attempts,
                        crm_code_name(rc), e.msg);
        }
        {
            int64_t ms = b->o.backoff_ms;
            for (int k = 1; k < r->attempts && ms < 60000; k++)
                ms *= 2;
            r->retry_at = sc.now + ms;
            if (r->retry_at < next)
                next = r->retry_at;
        }
    }
    for (size_t i = 0; i < sc.n; i++)
        crm_value_free(sc.due[i].row);
    free(sc.due);
    /* timers scheduled during this round (by hooks or handlers) count too */
    b->next_due = next < b->sched_min ? next : b->sched_min;
}

void crm_bus_timers_done(crm_bus *b, int committed)
{
    (void)committed;
    (void)b;
}

size_t crm_bus_timers_pending(crm_bus *b) { return b->timers_count; }

static int first_cb(void *ud, const void *k, size_t kl, const void *v, size_t vl)
{
    (void)v;
    (void)vl;
    if (kl == 16)
        *(int64_t *)ud = (int64_t)crm_be64_get(k);
    return 1;
}

int64_t crm_bus_timers_first_due(crm_bus *b)
{
    crm_txn *t;
    crm_err e;
    int64_t due = INT64_MAX;
    if (crm_store_begin_read(b->s, &t, &e) != CRM_OK)
        return 0;
    if (crm_txn_aux_scan(t, CRM_AUX_TIMERS, NULL, 0, 1, first_cb, &due, &e) != CRM_OK)
        due = 0;
    crm_txn_end(t);
    return due;
}
