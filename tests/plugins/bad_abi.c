/*
 * bad_abi -- a plugin built for a plugin ABI this crmd does not speak
 * (CRM_PLUGIN_ABI + 1).  The loader must refuse it before calling anything
 * but its entry point: "DIR/bad_abi.so: built for plugin ABI 2, this crmd
 * speaks ABI 1".  Its init would fail the test loudly if it ever ran.
 */
#include <stdio.h>

#include <crm/plugin.h>

static int init(crm_plugin *p, const crm_api *api, char *errbuf, size_t cap)
{
    snprintf(errbuf, cap, "bad_abi's init ran: the ABI check did not stop it");
    return CRM_INTERNAL;
}

static const crm_plugin_info info = {CRM_PLUGIN_ABI + 1, (uint32_t)sizeof(crm_api), "bad_abi",
                                     "0.0.1", init, NULL};

CRM_PLUGIN_EXPORT const crm_plugin_info *crm_plugin_entry(void);
CRM_PLUGIN_EXPORT const crm_plugin_info *crm_plugin_entry(void)
{
    return &info;
}
