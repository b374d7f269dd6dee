/*
 * init_fails -- a plugin whose init registers a hook and a method and then
 * fails, as one would that finds its configuration lacking.  Start-up must
 * stop with "DIR/init_fails.so: init failed: no licence_key in its
 * configuration", and the loader removes what it registered.
 */
#include <stdio.h>

#include <crm/plugin.h>

static const crm_api *api;

static int never(crm_ctx *ctx, crm_event *ev, void *ud)
{
    return api->error(ctx, CRM_INTERNAL, "init_fails's hook ran after its init failed");
}

static int never_m(crm_ctx *ctx, const crm_value *params, crm_value **result, void *ud)
{
    return api->error(ctx, CRM_INTERNAL, "init_fails's method ran after its init failed");
}

static int init(crm_plugin *p, const crm_api *a, char *errbuf, size_t cap)
{
    api = a;
    api->on(p, "contacts.create", CRM_BEFORE, NULL, never, NULL);
    api->method(p, "init_fails.never", never_m, NULL);
    if (!api->config(p, "licence_key")) {
        snprintf(errbuf, cap, "no licence_key in its configuration");
        return CRM_BAD_REQUEST;
    }
    return CRM_OK;
}

CRM_PLUGIN_DECLARE("init_fails", "0.0.1", init, NULL)
