/*
 * reject -- a small, well-behaved before-hook that says no: a contact whose
 * name contains the configured word (reject.json {"word": ...}, default
 * "Mallory") is refused with REJECTED and a message naming the word; every
 * other contact passes untouched.
 */
#include <string.h>

#include <crm/plugin.h>

static const crm_api *api;

static int screen(crm_ctx *ctx, crm_event *ev, void *ud)
{
    const crm_value *w = api->config(api->ctx_plugin(ctx), "word");
    const char *word = w && w->type == CRM_T_STR ? w->u.str.s : "Mallory";
    const crm_value *name = api->map_get(ev->record, "name");
    if (name && name->type == CRM_T_STR && strstr(name->u.str.s, word))
        return api->error(ctx, CRM_REJECTED, "reject plugin: no contacts named %s", word);
    return CRM_OK;
}

static int init(crm_plugin *p, const crm_api *a, char *errbuf, size_t cap)
{
    api = a;
    return api->on(p, "contacts.create", CRM_BEFORE, "reject.screen", screen, NULL);
}

CRM_PLUGIN_DECLARE("reject", "0.0.1", init, NULL)
