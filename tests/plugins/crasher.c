/*
 * crasher -- a plugin that crashes the server (R19), where the test asks:
 *  - at load, in a constructor, when CRM_TEST_CRASH_AT_LOAD is set;
 *  - in init, when crasher.json says {"crash_in": "init"};
 *  - in a before-hook, on a contact named "crash" (every other passes).
 * Each is a real invalid write through a null pointer, as a buggy plugin
 * would make it.
 */
#include <stdlib.h>
#include <string.h>

#include <crm/plugin.h>

static const crm_api *api;
static int *volatile nowhere; /* NULL, and the compiler cannot know it */

/* not instrumented: under UBSan the sanitizer would stop the process
 * before the write, and the test wants the real fault */
__attribute__((no_sanitize("undefined"))) static void crash(void)
{
    *nowhere = 42;
}

__attribute__((constructor)) static void at_load(void)
{
    if (getenv("CRM_TEST_CRASH_AT_LOAD"))
        crash();
}

static int screen(crm_ctx *ctx, crm_event *ev, void *ud)
{
    const crm_value *name = api->map_get(ev->record, "name");
    (void)ctx;
    (void)ud;
    if (name && name->type == CRM_T_STR && strcmp(name->u.str.s, "crash") == 0)
        crash();
    return CRM_OK;
}

static int init(crm_plugin *p, const crm_api *a, char *errbuf, size_t cap)
{
    const crm_value *in;
    (void)errbuf;
    (void)cap;
    api = a;
    in = api->config(p, "crash_in");
    if (in && in->type == CRM_T_STR && strcmp(in->u.str.s, "init") == 0)
        crash();
    return api->on(p, "contacts.create", CRM_BEFORE, "crasher.screen", screen, NULL);
}

CRM_PLUGIN_DECLARE("crasher", "0.0.1", init, NULL)
