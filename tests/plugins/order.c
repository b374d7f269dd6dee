/*
 * order -- copied under several file names into one plugins folder to show
 * the load order and per-plugin configuration.  Its name is the file name
 * (info->name is NULL).  init logs "init NAME", fini logs "fini NAME", and
 * it serves the method "order.NAME" returning {"name": NAME, "tag": the
 * "tag" of its own NAME.json}.
 */
#include <stdio.h>
#include <string.h>

#include <crm/plugin.h>

static const crm_api *api;

static int whoami(crm_ctx *ctx, const crm_value *params, crm_value **result, void *ud)
{
    crm_plugin *p = api->ctx_plugin(ctx);
    const char *name = api->plugin_name(p);
    const crm_value *tag = api->config(p, "tag");
    crm_value *r = api->value_map();
    if (!r || api->map_set(r, "name", api->value_str(name, strlen(name))) ||
        api->map_set(r, "tag", tag ? api->value_dup(tag) : api->value_nil()) ||
        api->map_set(r, "same_owner", api->value_bool(ud == (void *)p))) {
        api->value_free(r);
        return api->error(ctx, CRM_INTERNAL, "out of memory");
    }
    *result = r;
    return CRM_OK;
}

static int init(crm_plugin *p, const crm_api *a, char *errbuf, size_t cap)
{
    char method[128];
    api = a;
    snprintf(method, sizeof method, "order.%s", api->plugin_name(p));
    api->log(p, CRM_LOG_INFO, "init %s", api->plugin_name(p));
    return api->method(p, method, whoami, p);
}

static void fini(crm_plugin *p, const crm_api *a)
{
    a->log(p, CRM_LOG_INFO, "fini %s", a->plugin_name(p));
}

CRM_PLUGIN_DECLARE(NULL, "0.0.1", init, fini)
