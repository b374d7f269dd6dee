/*
 * old_api -- a plugin as built against an older, shorter crm_api (one that
 * ended before alloc and ctx_plugin were added).  It must keep loading: a
 * kernel's table only grows at its end.  It uses only the members its own
 * table had, and serves "old.hello".
 */
#include <stddef.h>
#include <string.h>

#include <crm/plugin.h>

static const crm_api *api;

static int hello(crm_ctx *ctx, const crm_value *params, crm_value **result, void *ud)
{
    static const char text[] = "hello from an older plugin";
    *result = api->value_str(text, sizeof text - 1);
    return *result ? CRM_OK : api->error(ctx, CRM_INTERNAL, "out of memory");
}

static int init(crm_plugin *p, const crm_api *a, char *errbuf, size_t cap)
{
    api = a;
    return api->method(p, "old.hello", hello, NULL);
}

static const crm_plugin_info info = {CRM_PLUGIN_ABI, (uint32_t)offsetof(crm_api, alloc), "old_api",
                                     "0.0.1", init, NULL};

CRM_PLUGIN_EXPORT const crm_plugin_info *crm_plugin_entry(void);
CRM_PLUGIN_EXPORT const crm_plugin_info *crm_plugin_entry(void)
{
    return &info;
}
