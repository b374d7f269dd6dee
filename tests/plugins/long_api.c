/*
 * long_api -- a plugin built against a crm_api 64 bytes longer than this
 * crmd's (as if from a newer header with eight more members).  The kernel's
 * table is too short for it: refused with "DIR/long_api.so: needs a crm_api
 * of N+64 bytes, this crmd has N".
 */
#include <stdio.h>

#include <crm/plugin.h>

static int init(crm_plugin *p, const crm_api *api, char *errbuf, size_t cap)
{
    snprintf(errbuf, cap, "long_api's init ran: the size check did not stop it");
    return CRM_INTERNAL;
}

static const crm_plugin_info info = {CRM_PLUGIN_ABI, (uint32_t)sizeof(crm_api) + 64, "long_api",
                                     "0.0.1", init, NULL};

CRM_PLUGIN_EXPORT const crm_plugin_info *crm_plugin_entry(void);
CRM_PLUGIN_EXPORT const crm_plugin_info *crm_plugin_entry(void)
{
    return &info;
}
