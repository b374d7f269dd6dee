/*
 * test_audit -- the audit trail end to end (issue 7, reliability plan R21),
 * on a real crmd with the bundled schemas and scripts (so hooks write too).
 *
 * Two clients (admin and sales) do every op class: create, update, delete,
 * tx, a refused write, privacy.export and privacy.erase; tokens are created
 * and one revoked with the command line while the server runs (another
 * process appending to the chain).  Then, through the `audit` op:
 *   - every performed write, export, erase and token op has its entry, with
 *     the right token id and role (counted: logged / performed);
 *   - the refused write has none;
 *   - writes made by hooks are marked "via": "hook" and carry the client
 *     whose change caused them;
 *   - no entry holds a personal value or a token;
 *   - filters (collection, id, user, action, time) and paging work.
 * Then, with the server stopped: `crmd audit verify` passes; one byte of one
 * entry changed with LMDB directly is reported at that entry; put back, the
 * chain passes again; the last entry removed is reported too.
 */
#include <lmdb.h>
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

#include "auth.h"
#include "codec.h"
#include "keys.h"
#include "testutil.h"
#include "tmpdir.h"
#include "wsclient.h"

#define T 20000

typedef struct done_op {
    char action[24], coll[40], id[160], user[40], role[24];
} done_op;

static done_op performed[256];
static size_t nperformed;
static char marker[32];

static void note(const char *action, const char *coll, const char *id, const char *user,
                 const char *role)
{
    done_op *o = &performed[nperformed++];
    assert_true(nperformed < sizeof performed / sizeof *performed);
    snprintf(o->action, sizeof o->action, "%s", action);
    snprintf(o->coll, sizeof o->coll, "%s", coll ? coll : "");
    snprintf(o->id, sizeof o->id, "%s", id ? id : "");
    snprintf(o->user, sizeof o->user, "%s", user);
    snprintf(o->role, sizeof o->role, "%s", role);
}

static crm_value *ok_result(crm_value *reply)
{
    assert_non_null(reply);
    if (strcmp(ws_code(reply), "OK") != 0)
        fail_msg("%s: %s", ws_code(reply), ws_message(reply));
    return crm_map_get(reply, "result");
}

static void user_of(const char *token, char out[40])
{
    uint8_t h[CRM_TOKEN_HASH_LEN];
    char id[13];
    crm_token_hash(token, strlen(token), h);
    crm_token_id(h, id);
    snprintf(out, 40, "token:%s", id);
}

/* Every audit entry, oldest first, paging with after/next. */
static crm_value *all_entries(ws_client *c)
{
    crm_value *all = crm_value_arr();
    long long after = 0;
    for (;;) {
        crm_value *r = ws_request(c, T, NULL, "{\"op\":\"audit\",\"limit\":7,\"after\":%lld}", after);
        crm_value *res = ok_result(r), *e = crm_map_get(res, "entries");
        const crm_value *next = crm_map_get(res, "next");
        for (size_t i = 0; i < e->u.arr.n; i++) {
            assert_int_equal(crm_map_int(e->u.arr.items[i], "seq", 0), (int64_t)all->u.arr.n + 1);
            crm_arr_push(all, crm_value_dup(e->u.arr.items[i]));
        }
        if (!next || next->type == CRM_T_NIL) {
            crm_value_free(r);
            return all;
        }
        after = crm_map_int(res, "next", 0);
        crm_value_free(r);
    }
}

static int entry_matches(const crm_value *e, const done_op *o)
{
    return strcmp(crm_map_str(e, "action", ""), o->action) == 0 &&
           strcmp(crm_map_str(e, "collection", ""), o->coll) == 0 &&
           strcmp(crm_map_str(e, "id", ""), o->id) == 0 &&
           strcmp(crm_map_str(e, "user", ""), o->user) == 0 &&
           strcmp(crm_map_str(e, "role", ""), o->role) == 0 && !crm_map_get(e, "via");
}

static int run_verify(const char *bin, const char *data, char *out, size_t cap)
{
    char cmd[4400], *all;
    int rc;
    snprintf(cmd, sizeof cmd, "'%s' audit verify --data '%s' 2>&1", bin, data);
    rc = crm_test_run(cmd, &all);
    snprintf(out, cap, "%s", all);
    free(all);
    return rc;
}

/* Opens the data folder's LMDB directly (the server is stopped). */
static void lmdb_open(const char *dir, MDB_env **env, MDB_txn **txn, MDB_dbi *dbi)
{
    assert_int_equal(mdb_env_create(env), 0);
    assert_int_equal(mdb_env_set_maxdbs(*env, 512), 0);
    assert_int_equal(mdb_env_set_mapsize(*env, (size_t)1 << 30), 0);
    assert_int_equal(mdb_env_open(*env, dir, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(*env, NULL, 0, txn), 0);
    assert_int_equal(mdb_dbi_open(*txn, "audit", 0, dbi), 0);
}

static void test_audit_trail(void **state)
{
    crmd_proc p;
    ws_client a, s;
    char *admin, *sales, *extra, ua[40], us[40], ids[8][160], cmd[4096], out[4096];
    crm_value *r, *res, *all;
    size_t logged = 0, hook_entries = 0, hook_by_sales = 0;
    (void)state;

    snprintf(marker, sizeof marker, "zqa%08x", (unsigned)getpid() * 2654435761u);
    assert_int_equal(crmd_start_with(&p, NULL, "--scripts %s", getenv("CRM_SCRIPTS")), 0);
    /* tokens made by another process while the server runs */
    assert_non_null(admin = crmd_token(&p, "admin"));
    assert_non_null(sales = crmd_token(&p, "sales"));
    assert_non_null(extra = crmd_token(&p, "analyst"));
    user_of(admin, ua);
    user_of(sales, us);
    note("token.create", NULL, NULL, "cli", "local");
    note("token.create", NULL, NULL, "cli", "local");
    note("token.create", NULL, NULL, "cli", "local");
    assert_int_equal(ws_connect(&a, p.port, NULL, NULL, NULL), 0);
    assert_int_equal(ws_auth(&a, admin, T), 0);
    assert_int_equal(ws_connect(&s, p.port, NULL, NULL, NULL), 0);
    assert_int_equal(ws_auth(&s, sales, T), 0);

    for (int i = 0; i < 8; i++) {
        ws_client *c = i % 2 ? &s : &a;
        r = ws_request(c, T, NULL,
                       "{\"op\":\"create\",\"collection\":\"contacts\",\"record\":{\"name\":\"P%d %s\","
                       "\"email\":\"%d%s@example.com\"}}",
                       i, marker, i, marker);
        snprintf(ids[i], sizeof ids[i], "%s", crm_map_str(ok_result(r), "id", ""));
        note("create", "contacts", ids[i], i % 2 ? us : ua, i % 2 ? "sales" : "admin");
        crm_value_free(r);
    }
    for (int i = 0; i < 3; i++) {
        r = ws_request(&s, T, NULL,
                       "{\"op\":\"update\",\"collection\":\"contacts\",\"id\":\"%s\","
                       "\"patch\":{\"phone\":\"+1 %s\"}}",
                       ids[i], marker);
        ok_result(r);
        note("update", "contacts", ids[i], us, "sales");
        crm_value_free(r);
    }
    r = ws_request(&a, T, NULL, "{\"op\":\"delete\",\"collection\":\"contacts\",\"id\":\"%s\"}", ids[7]);
    ok_result(r);
    note("delete", "contacts", ids[7], ua, "admin");
    crm_value_free(r);
    /* a tx: an order (hooks run on it) and an update */
    r = ws_request(&s, T, NULL,
                   "{\"op\":\"tx\",\"ops\":[{\"op\":\"create\",\"collection\":\"orders\",\"record\":"
                   "{\"contact\":\"%s\",\"amount\":5000,\"currency\":\"EUR\",\"ordered_at\":1700000000000,"
                   "\"status\":\"paid\"}},{\"op\":\"update\",\"collection\":\"contacts\",\"id\":\"%s\","
                   "\"patch\":{\"city\":\"Rome\"}}]}",
                   ids[1], ids[1]);
    res = ok_result(r);
    note("create", "orders", crm_map_str(res->u.arr.items[0], "id", ""), us, "sales");
    note("update", "contacts", ids[1], us, "sales");
    crm_value_free(r);
    /* refused: nothing to log */
    r = ws_request(&s, T, NULL, "{\"op\":\"create\",\"collection\":\"contacts\",\"record\":{\"email\":\"x@y\"}}");
    assert_string_equal(ws_code(r), "VALIDATION");
    crm_value_free(r);
    r = ws_request(&a, T, NULL, "{\"op\":\"privacy.export\",\"id\":\"%s\"}", ids[1]);
    ok_result(r);
    note("privacy.export", "contacts", ids[1], ua, "admin");
    crm_value_free(r);
    r = ws_request(&a, T, NULL, "{\"op\":\"privacy.erase\",\"id\":\"%s\"}", ids[2]);
    ok_result(r);
    note("privacy.erase", "contacts", ids[2], ua, "admin");
    note("erase", "contacts", ids[2], ua, "admin");
    crm_value_free(r);
    /* revoke by the command line, while serving */
    snprintf(cmd, sizeof cmd, "'%s' token revoke --data '%s' --schemas '%s' '%s' >/dev/null", p.bin,
             p.data, p.schemas, extra);
    assert_int_equal(system(cmd), 0);
    note("token.revoke", NULL, NULL, "cli", "local");
    usleep(800 * 1000); /* after-hooks catch up */
    r = ws_request(&a, T, NULL, "{\"op\":\"ping\"}");
    crm_value_free(r);

    all = all_entries(&a);
    {
        char *json = crm_json_encode(all, NULL);
        assert_null(strstr(json, marker)); /* no personal value */
        assert_null(strstr(json, admin));  /* no token */
        assert_null(strstr(json, sales));
        assert_null(strstr(json, extra));
        free(json);
    }
    for (size_t i = 0; i < nperformed; i++) {
        int found = 0;
        for (size_t j = 0; j < all->u.arr.n && !found; j++)
            found = entry_matches(all->u.arr.items[j], &performed[i]);
        if (!found)
            fail_msg("no audit entry for %s %s/%s by %s", performed[i].action, performed[i].coll,
                     performed[i].id, performed[i].user);
        logged++;
    }
    for (size_t j = 0; j < all->u.arr.n; j++) {
        const crm_value *e = all->u.arr.items[j];
        const char *via = crm_map_str(e, "via", "");
        assert_non_null(crm_map_get(e, "ts"));
        assert_int_equal(strlen(crm_map_str(e, "hash", "")), 64);
        if (strcmp(via, "hook") == 0) {
            hook_entries++;
            hook_by_sales += strcmp(crm_map_str(e, "user", ""), us) == 0;
            /* the client whose change caused it, or the system (timers) */
            assert_true(strcmp(crm_map_str(e, "user", ""), us) == 0 ||
                        strcmp(crm_map_str(e, "user", ""), ua) == 0 ||
                        strcmp(crm_map_str(e, "user", ""), "system") == 0);
        }
        /* an update names the fields it changed, never their values */
        if (strcmp(crm_map_str(e, "action", ""), "update") == 0 && !crm_map_get(e, "via") &&
            strcmp(crm_map_str(e, "id", ""), ids[0]) == 0) {
            const crm_value *f = crm_map_get(e, "fields");
            assert_non_null(f);
            assert_int_equal(f->u.arr.n, 1);
            assert_string_equal(f->u.arr.items[0]->u.str.s, "phone");
        }
    }
    assert_true(hook_by_sales > 0); /* the scripts' after-hooks on sales' order */
    printf("R21 audit: %zu of %zu performed ops logged (%.0f%%) with the right token id and role; "
           "%zu entries in all, %zu made by hooks (%zu attributed to the sales client)\n",
           logged, nperformed, 100.0 * (double)logged / (double)nperformed, all->u.arr.n,
           hook_entries, hook_by_sales);

    /* filters and paging */
    r = ws_request(&a, T, NULL, "{\"op\":\"audit\",\"collection\":\"contacts\",\"id\":\"%s\"}", ids[0]);
    res = ok_result(r);
    for (size_t i = 0; i < crm_map_get(res, "entries")->u.arr.n; i++)
        assert_string_equal(crm_map_str(crm_map_get(res, "entries")->u.arr.items[i], "id", ""), ids[0]);
    assert_true(crm_map_get(res, "entries")->u.arr.n >= 2); /* create, update */
    crm_value_free(r);
    r = ws_request(&a, T, NULL, "{\"op\":\"audit\",\"user\":\"%s\",\"action\":\"delete\"}", ua + 6);
    res = ok_result(r);
    assert_int_equal(crm_map_get(res, "entries")->u.arr.n, 1);
    crm_value_free(r);
    r = ws_request(&a, T, NULL, "{\"op\":\"audit\",\"desc\":true,\"limit\":1}");
    res = ok_result(r);
    assert_int_equal(crm_map_int(crm_map_get(res, "entries")->u.arr.items[0], "seq", 0),
                     (int64_t)all->u.arr.n);
    assert_int_equal(crm_map_int(res, "next", 0), (int64_t)all->u.arr.n);
    crm_value_free(r);
    r = ws_request(&a, T, NULL, "{\"op\":\"audit\",\"desc\":true,\"limit\":2,\"before\":3}");
    res = ok_result(r);
    assert_int_equal(crm_map_get(res, "entries")->u.arr.n, 2);
    assert_int_equal(crm_map_int(crm_map_get(res, "entries")->u.arr.items[0], "seq", 0), 2);
    crm_value_free(r);
    r = ws_request(&a, T, NULL, "{\"op\":\"audit\",\"from\":1,\"to\":2}");
    assert_int_equal(crm_map_get(ok_result(r), "entries")->u.arr.n, 0);
    crm_value_free(r);
    r = ws_request(&a, T, NULL, "{\"op\":\"audit\",\"limit\":1001}");
    assert_string_equal(ws_code(r), "BAD_REQUEST");
    crm_value_free(r);
    r = ws_request(&s, T, NULL, "{\"op\":\"audit\"}");
    assert_string_equal(ws_code(r), "FORBIDDEN");
    crm_value_free(r);

    ws_close(&a);
    ws_close(&s);
    {
        char data[2048], bin[2048], want[160];
        size_t n = all->u.arr.n;
        uint64_t k_seq = n / 2;
        uint8_t key[8], *copy;
        MDB_env *env;
        MDB_txn *txn;
        MDB_dbi dbi;
        MDB_val k = {8, key}, v;
        size_t at;
        snprintf(data, sizeof data, "%s", p.data);
        snprintf(bin, sizeof bin, "%s", p.bin);
        assert_int_equal(crmd_stop_keep(&p), 0);

        assert_int_equal(run_verify(bin, data, out, sizeof out), 0);
        snprintf(want, sizeof want, "audit chain intact: %zu entries", n);
        if (!strstr(out, want))
            fail_msg("verify said: %s", out);

        /* change one byte of entry k_seq: the first letter of its user */
        lmdb_open(data, &env, &txn, &dbi);
        {
            MDB_cursor *cur;
            MDB_val ck, cv;
            size_t bytes = 0, cnt = 0;
            assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
            while (mdb_cursor_get(cur, &ck, &cv, cnt ? MDB_NEXT : MDB_FIRST) == 0) {
                bytes += ck.mv_size + cv.mv_size;
                cnt++;
            }
            mdb_cursor_close(cur);
            assert_int_equal(cnt, n);
            printf("R21 audit entries: %zu, %.0f bytes each on average (key, hash link and map)\n",
                   cnt, (double)bytes / (double)cnt);
        }
        crm_be64_put(key, k_seq);
        assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
        assert_non_null(copy = malloc(v.mv_size));
        memcpy(copy, v.mv_data, v.mv_size);
        {
            uint8_t *u = memmem(copy + 32, v.mv_size - 32, "\xa4user", 5);
            assert_non_null(u);
            at = (size_t)(u - copy) + 6; /* past the key and the value's fixstr header */
        }
        copy[at] ^= 0x01;
        v.mv_data = copy;
        assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
        assert_int_equal(mdb_txn_commit(txn), 0);
        mdb_env_close(env);
        assert_int_equal(run_verify(bin, data, out, sizeof out), 1);
        snprintf(want, sizeof want, "BROKEN at entry %llu:", (unsigned long long)k_seq);
        if (!strstr(out, want))
            fail_msg("verify did not name entry %llu: %s", (unsigned long long)k_seq, out);
        printf("R21 tamper: one byte of entry %llu of %zu changed: %s", (unsigned long long)k_seq, n,
               out);

        /* put back: intact again (the check is exact, not a false alarm) */
        lmdb_open(data, &env, &txn, &dbi);
        copy[at] ^= 0x01;
        v.mv_data = copy;
        assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
        assert_int_equal(mdb_txn_commit(txn), 0);
        mdb_env_close(env);
        assert_int_equal(run_verify(bin, data, out, sizeof out), 0);
        free(copy);

        /* the last entry removed: the head no longer matches */
        lmdb_open(data, &env, &txn, &dbi);
        crm_be64_put(key, n);
        assert_int_equal(mdb_del(txn, dbi, &k, NULL), 0);
        assert_int_equal(mdb_txn_commit(txn), 0);
        mdb_env_close(env);
        assert_int_equal(run_verify(bin, data, out, sizeof out), 1);
        assert_non_null(strstr(out, "BROKEN"));
        printf("R21 tamper: last entry removed: %s", out);
        crm_tmpdir_remove(strdup(data));
    }
    crm_value_free(all);
    free(admin);
    free(sales);
    free(extra);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_audit_trail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
