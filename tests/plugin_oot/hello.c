/*
 * hello -- the plugin of docs/plugins.md's tutorial, built out of tree by
 * the plugin_oot test with nothing but the installed <crm/plugin.h> and
 * `pkg-config --cflags crmd-plugin`.
 *
 *  - method hello.greet: {"name": "Ann"} -> "Hello, Ann!" (the greeting
 *    comes from hello.json beside hello.so)
 *  - before contacts.create: a contact needs an email or a phone (REJECTED)
 */
#include <stdio.h>
#include <string.h>

#include <crm/plugin.h>

static const crm_api *api; /* the kernel's table, kept from init */

static int need_reach(crm_ctx *ctx, crm_event *ev, void *ud)
{
    if (api->map_get(ev->record, "email") || api->map_get(ev->record, "phone"))
        return CRM_OK;
    return api->error(ctx, CRM_REJECTED, "a contact needs an email or a phone");
}

static int greet(crm_ctx *ctx, const crm_value *params, crm_value **result, void *ud)
{
    const crm_value *g = api->config(api->ctx_plugin(ctx), "greeting");
    const crm_value *name = params && params->type == CRM_T_MAP ? api->map_get(params, "name") : NULL;
    char text[256];
    if (!name || name->type != CRM_T_STR)
        return api->error(ctx, CRM_BAD_REQUEST, "hello.greet needs a name");
    snprintf(text, sizeof text, "%s, %s!", g && g->type == CRM_T_STR ? g->u.str.s : "Hello",
             name->u.str.s);
    *result = api->value_str(text, strlen(text)); /* the kernel owns it now */
    return *result ? CRM_OK : api->error(ctx, CRM_INTERNAL, "out of memory");
}

static int hello_init(crm_plugin *p, const crm_api *a, char *errbuf, size_t cap)
{
    api = a;
    if (api->on(p, "contacts.create", CRM_BEFORE, "hello.need_reach", need_reach, NULL) != CRM_OK ||
        api->method(p, "hello.greet", greet, NULL) != CRM_OK) {
        snprintf(errbuf, cap, "could not register the hook and the method");
        return CRM_INTERNAL;
    }
    api->log(p, CRM_LOG_INFO, "hello is ready");
    return CRM_OK;
}

CRM_PLUGIN_DECLARE("hello", "1.0", hello_init, NULL)
