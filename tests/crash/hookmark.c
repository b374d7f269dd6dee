/*
 * hookmark -- the C plugin of the hook crash test (crash_hooks.c): for
 * every contact created, an after-hook writes one "marks" record
 * {from: id, by: "c"} and schedules a keyed timer that writes
 * {from: id, by: "timer"}.  The test counts them after SIGKILLs: exactly
 * one of each per contact, or exactly-once is broken.
 * Built with only <crm/plugin.h>, like any plugin out of tree.
 */
#include <string.h>

#include <crm/plugin.h>

static const crm_api *api;

static int mark(crm_ctx *c, const char *from, const char *by)
{
    crm_value *m = api->value_map();
    int rc;
    if (!m || api->map_set(m, "from", api->value_str(from, strlen(from))) ||
        api->map_set(m, "by", api->value_str(by, strlen(by)))) {
        api->value_free(m);
        return api->error(c, CRM_INTERNAL, "out of memory");
    }
    rc = api->create(c, "marks", m, NULL);
    api->value_free(m);
    return rc;
}

static int after_contact(crm_ctx *c, crm_event *ev, void *ud)
{
    crm_value *payload;
    int rc;
    (void)ud;
    if ((rc = mark(c, ev->id, "c")) != CRM_OK)
        return rc;
    payload = api->value_map();
    if (!payload || api->map_set(payload, "from", api->value_str(ev->id, strlen(ev->id)))) {
        api->value_free(payload);
        return api->error(c, CRM_INTERNAL, "out of memory");
    }
    rc = api->schedule(c, 0.2, "mark", payload, ev->id);
    api->value_free(payload);
    return rc;
}

static int on_mark(crm_ctx *c, const char *name, const crm_value *payload, void *ud)
{
    const crm_value *from = api->map_get(payload, "from");
    (void)name;
    (void)ud;
    if (!from || from->type != CRM_T_STR)
        return api->error(c, CRM_BAD_REQUEST, "timer payload without from");
    return mark(c, from->u.str.s, "timer");
}

static int init(crm_plugin *p, const crm_api *a, char *errbuf, size_t cap)
{
    (void)errbuf;
    (void)cap;
    api = a;
    if (a->on(p, "contacts.create", CRM_AFTER, "marker", after_contact, NULL) != CRM_OK ||
        a->on_timer(p, "mark", on_mark, NULL) != CRM_OK)
        return CRM_INTERNAL;
    return CRM_OK;
}

CRM_PLUGIN_DECLARE("hookmark", "1", init, NULL)
