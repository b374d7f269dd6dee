/*
 * crm/plugin.h -- the one public header of crmd.
 *
 * Today it holds what every part of crmd shares with plugins: the stable
 * error codes (their names are the wire strings of spec/protocol.md) and the
 * error carrier.  The plugin function table (crm_api) grows here, at the end
 * only, once the plugin loader lands (issue 5).
 *
 * Codes never move: a retired code keeps its number (curl's rule).
 */
#ifndef CRM_PLUGIN_H
#define CRM_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CRM_PLUGIN_ABI 1 /* bump only if a member changes meaning; aim for never */

enum crm_code {
    CRM_OK = 0,
    CRM_BAD_REQUEST,
    CRM_UNAUTHENTICATED,
    CRM_FORBIDDEN,
    CRM_NOT_FOUND,
    CRM_CONFLICT,
    CRM_VALIDATION,
    CRM_REJECTED,
    CRM_TOO_LARGE,
    CRM_RATE_LIMITED,
    CRM_UNAVAILABLE,
    CRM_SCRIPT_ERROR,
    CRM_INTERNAL,
    CRM_CODE_LAST /* never use */
};

/* An error: a stable code plus a human message (curl's CURL_ERROR_SIZE). */
typedef struct crm_err {
    int code;
    char msg[256];
} crm_err;

#ifdef __cplusplus
}
#endif
#endif
