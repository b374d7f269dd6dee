/*
 * plugin -- the loader of C plugins: every NAME.so of the plugins folder,
 * dlopen'ed, checked against the ABI this crmd speaks, configured from
 * NAME.json beside it, initialised, sealed; finalised in reverse order at
 * shutdown.
 *
 * Owns: the dlopen handles, and the bus owners (crm_plugin) it creates, one
 * per plugin.  Never: calls into a plugin except through the entry point's
 * init and fini; keeps a plugin loaded whose init failed.
 *
 * The public side of this contract is <crm/plugin.h>; docs/plugins.md is
 * the guide.  Not to be confused with that header: this one is the
 * kernel's ("plugin.h" in kernel/, <crm/plugin.h> in include/).
 *
 * Threads: the main thread, before the writer starts and after it stopped
 * (init and fini call into plugins,
 * which may only touch the api there).
 */
#ifndef CRM_KERNEL_PLUGIN_H
#define CRM_KERNEL_PLUGIN_H

#include <stddef.h>

#include "bus.h"
#include "err.h"

typedef struct crm_plugins crm_plugins;

/* Loads every regular file named *.so in dir (other files are ignored), in
 * byte order of the file names, so the order is the same on every machine
 * and locale.  A dir that does not exist means no plugins (*out is then an
 * empty set, not NULL).  For each file:
 *   - dlopen(RTLD_NOW|RTLD_LOCAL); the symbol CRM_PLUGIN_ENTRY must exist
 *     and return a crm_plugin_info with an init;
 *   - info->abi must equal CRM_PLUGIN_ABI and info->api_size must be at most
 *     sizeof(crm_api) (an older, shorter table loads; a longer one is refused);
 *   - NAME.json beside NAME.so, when present, must hold a JSON object: the
 *     plugin's configuration (api->config);
 *   - the plugin's name (info->name, else NAME) must be unique;
 *   - info->init runs with a new bus owner; then the owner is sealed (no
 *     registration after init).
 * The first failure unloads what was loaded (fini in reverse order) and
 * returns its code, with a message that starts with the file's path:
 *   "DIR/x.so: built for plugin ABI 2, this crmd speaks ABI 1"
 *   "DIR/x.so: needs a crm_api of 312 bytes, this crmd has 296"
 *   "DIR/x.so: init failed: <the plugin's message>" (when init wrote none:
 *       why the bus refused its last registration, if one was refused)
 *   "DIR/x.json: invalid JSON at line 1, column 2: ..."
 * Codes: BAD_REQUEST for a file that is not a usable plugin (refused ABI,
 * size, entry point, configuration, duplicate name, dlopen error); the
 * code init returned (INTERNAL when it is not a crm_code) for a failed init;
 * UNAVAILABLE when dir cannot be read; INTERNAL on OOM.
 * b is borrowed and must outlive the set.  Logs one line per plugin loaded
 * through crm_bus_log.  Caller owns *out: crm_plugins_unload. */
int crm_plugins_load(crm_bus *b, const char *dir, crm_plugins **out, crm_err *err);

/* Runs every plugin's fini in reverse load order, removes its registrations
 * (crm_bus_owner_free) and dlcloses it; frees ps.  NULL is fine.  Call it
 * before crm_bus_free. */
void crm_plugins_unload(crm_plugins *ps);

/* How many plugins ps holds (0 for NULL). */
size_t crm_plugins_count(const crm_plugins *ps);

/* The i-th plugin the load skipped because it is quarantined (crashguard.h),
 * by file name without .so, and its recorded crashes; NULL past the last
 * (at most CRM_PLUGINS_QUARANTINE_MAX are kept).  Borrowed from ps.
 * /healthz and /metrics name them: the server runs without them. */
#define CRM_PLUGINS_QUARANTINE_MAX 32
const char *crm_plugins_quarantined(const crm_plugins *ps, size_t i, int *crashes);

#endif
