/*
 * bad_event -- an init that returns the code of a refused registration
 * without writing a message of its own: start-up stops, and the message is
 * the one the bus gave for the refusal ("init failed: event
 * \"nosuch.create\": no collection \"nosuch\"").
 */
#include <crm/plugin.h>

static int never(crm_ctx *ctx, crm_event *ev, void *ud)
{
    return CRM_OK;
}

static int init(crm_plugin *p, const crm_api *api, char *errbuf, size_t cap)
{
    return api->on(p, "nosuch.create", CRM_BEFORE, NULL, never, NULL);
}

CRM_PLUGIN_DECLARE("bad_event", "0.0.1", init, NULL)
