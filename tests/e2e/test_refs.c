/*
 * test_refs -- what a ref does when the record it names is deleted
 * (schema "on_delete"), with the bundled schemas and plugins in a real
 * crmd.  A contact with an order, a ticket, a deal, an interaction and a
 * loyalty account (the loyalty plugin's, opened by the order):
 *  - deleting the contact is refused (CONFLICT, details naming the
 *    referring record) while the order or the ticket refers to it
 *    (on_delete restrict), also inside a tx (nothing of the tx is applied);
 *  - with those gone, the delete goes through and takes the account, its
 *    ledger lines and the interaction with it (cascade) and clears the
 *    deal's contact (set_null): no record refers to the deleted id;
 *  - ids the server makes are never those of deleted records; a contact
 *    later created with the deleted id by the client inherits nothing.
 * Before, the delete returned ok and left them all behind, and a new
 * contact with the same id inherited the old loyalty balance.
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

#include "testutil.h"
#include "wsclient.h"

static crmd_proc p;
static ws_client c;

static crm_value *req(const char *fmt, ...)
{
    va_list ap;
    crm_value *r;
    va_start(ap, fmt);
    r = ws_vrequest(&c, 20000, NULL, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    return r;
}

/* The result's id of an OK reply (caller frees). */
static char *ok_id(crm_value *r)
{
    char *id;
    if (strcmp(ws_code(r), "OK") != 0)
        fail_msg("expected OK, got %s %s", ws_code(r), ws_message(r));
    id = strdup(crm_map_str(crm_map_get(r, "result"), "id", ""));
    crm_value_free(r);
    return id;
}

static size_t count(const char *coll, const char *field, const char *id)
{
    crm_value *r = req("{\"op\": \"query\", \"collection\": \"%s\", \"where\": {\"%s\": \"%s\"}, "
                       "\"limit\": 1000}",
                       coll, field, id);
    size_t n;
    assert_string_equal(ws_code(r), "OK");
    n = crm_map_get(crm_map_get(r, "result"), "records")->u.arr.n;
    crm_value_free(r);
    return n;
}

static int wait_count(const char *coll, const char *field, const char *id, size_t n)
{
    for (int i = 0; i < 600; i++) {
        if (count(coll, field, id) == n)
            return 1;
        usleep(50000);
    }
    return 0;
}

static void delete_refused_then_cascades(void **state)
{
    char *tok, *ct, *ct2, *order, *ticket, *deal, *again;
    crm_value *r;
    (void)state;
    assert_int_equal(crmd_start_with(&p, NULL, "--plugins %s", getenv("CRM_PLUGINS")), 0);
    assert_non_null(tok = crmd_token(&p, "admin"));
    assert_int_equal(ws_connect(&c, p.port, "crm.v1.json", NULL, NULL), 0);
    assert_int_equal(ws_auth(&c, tok, 5000), 0);
    free(tok);

    ct = ok_id(req("{\"op\": \"create\", \"collection\": \"contacts\", \"record\": {\"name\": \"Ada\"}}"));
    order = ok_id(req("{\"op\": \"create\", \"collection\": \"orders\", \"record\": {\"contact\": \"%s\", "
                      "\"amount\": 12000, \"currency\": \"EUR\", \"ordered_at\": 1700000000000, "
                      "\"status\": \"paid\"}}",
                      ct));
    ticket = ok_id(req("{\"op\": \"create\", \"collection\": \"tickets\", \"record\": {\"contact\": "
                       "\"%s\", \"subject\": \"late parcel\"}}",
                       ct));
    deal = ok_id(req("{\"op\": \"create\", \"collection\": \"deals\", \"record\": {\"contact\": \"%s\", "
                     "\"title\": \"renewal\"}}",
                     ct));
    free(ok_id(req("{\"op\": \"create\", \"collection\": \"interactions\", \"record\": {\"contact\": "
                   "\"%s\", \"kind\": \"call\", \"at\": 1700000000000}}",
                   ct)));
    /* the loyalty plugin opens the account from the order (an after-hook) */
    assert_true(wait_count("loyalty_accounts", "contact", ct, 1));
    assert_true(count("loyalty_ledger", "contact", ct) >= 1);

    /* restrict: refused while the order and the ticket refer to it */
    r = req("{\"op\": \"delete\", \"collection\": \"contacts\", \"id\": \"%s\"}", ct);
    assert_string_equal(ws_code(r), "CONFLICT");
    assert_non_null(strstr(ws_message(r), "is referred to by"));
    {
        const crm_value *d = crm_map_get(crm_map_get(r, "error"), "details");
        assert_non_null(d);
        assert_true(strcmp(crm_map_str(d, "referred_by", ""), "orders") == 0 ||
                    strcmp(crm_map_str(d, "referred_by", ""), "tickets") == 0);
    }
    crm_value_free(r);
    /* inside a tx: nothing of it is applied */
    r = req("{\"op\": \"tx\", \"ops\": [{\"op\": \"update\", \"collection\": \"contacts\", \"id\": "
            "\"%s\", \"patch\": {\"city\": \"Oslo\"}}, {\"op\": \"delete\", \"collection\": "
            "\"contacts\", \"id\": \"%s\"}]}",
            ct, ct);
    assert_string_equal(ws_code(r), "CONFLICT");
    crm_value_free(r);
    r = req("{\"op\": \"get\", \"collection\": \"contacts\", \"id\": \"%s\"}", ct);
    assert_string_equal(ws_code(r), "OK");
    assert_null(crm_map_get(crm_map_get(r, "result"), "city"));
    crm_value_free(r);
    assert_int_equal(count("interactions", "contact", ct), 1); /* nothing cascaded */
    assert_int_equal(count("loyalty_accounts", "contact", ct), 1);

    /* the order and the ticket deleted: the contact goes, with what depends on it */
    free(ok_id(req("{\"op\": \"delete\", \"collection\": \"tickets\", \"id\": \"%s\"}", ticket)));
    free(ok_id(req("{\"op\": \"delete\", \"collection\": \"orders\", \"id\": \"%s\"}", order)));
    r = req("{\"op\": \"delete\", \"collection\": \"contacts\", \"id\": \"%s\"}", ct);
    if (strcmp(ws_code(r), "OK") != 0)
        fail_msg("delete: %s %s", ws_code(r), ws_message(r));
    crm_value_free(r);
    assert_int_equal(count("loyalty_accounts", "contact", ct), 0); /* cascade */
    assert_int_equal(count("loyalty_ledger", "contact", ct), 0);   /* cascade, via the account */
    assert_int_equal(count("interactions", "contact", ct), 0);     /* cascade */
    assert_int_equal(count("deals", "contact", ct), 0);            /* set_null */
    r = req("{\"op\": \"get\", \"collection\": \"deals\", \"id\": \"%s\"}", deal);
    assert_string_equal(ws_code(r), "OK");
    assert_null(crm_map_get(crm_map_get(r, "result"), "contact"));
    assert_string_equal(crm_map_str(crm_map_get(r, "result"), "title", ""), "renewal");
    crm_value_free(r);

    /* ids: the server never makes a deleted one again; a client may choose
     * it, and the new record inherits nothing */
    ct2 = ok_id(req("{\"op\": \"create\", \"collection\": \"contacts\", \"record\": {\"name\": \"Bo\"}}"));
    assert_string_not_equal(ct2, ct);
    again = ok_id(req("{\"op\": \"create\", \"collection\": \"contacts\", \"record\": {\"id\": \"%s\", "
                      "\"name\": \"Ada again\"}}",
                      ct));
    assert_string_equal(again, ct);
    r = req("{\"op\": \"call\", \"method\": \"loyalty.balance\", \"params\": {\"contact\": \"%s\"}}", ct);
    if (strcmp(ws_code(r), "OK") == 0)
        assert_int_equal(crm_map_int(crm_map_get(r, "result"), "points", 0), 0);
    crm_value_free(r);
    assert_int_equal(count("loyalty_accounts", "contact", ct), 0);

    ws_close(&c);
    assert_int_equal(crmd_stop(&p), 0);
    free(ct);
    free(ct2);
    free(again);
    free(order);
    free(ticket);
    free(deal);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(delete_refused_then_cascades),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
