/*
 * err -- error codes and messages shared by every kernel module.
 * The codes themselves live in <crm/plugin.h> so they are defined once.
 */
#ifndef CRM_ERR_H
#define CRM_ERR_H

#include <crm/plugin.h>

#if defined(__GNUC__)
#define CRM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CRM_PRINTF(a, b)
#endif

/* "NOT_FOUND" for CRM_NOT_FOUND; never NULL ("INTERNAL" for unknown codes). */
const char *crm_code_name(int code);

/* Fills err (which may be NULL) and returns code, so callers can write
 * `return crm_err_set(err, CRM_NOT_FOUND, "%s/%s does not exist", c, id);` */
int crm_err_set(crm_err *err, int code, const char *fmt, ...) CRM_PRINTF(3, 4);

/* Clears err to CRM_OK with an empty message; err may be NULL. */
void crm_err_clear(crm_err *err);

#endif
