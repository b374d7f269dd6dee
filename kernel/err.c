/* err -- stable code names and the error carrier. */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>

static const char *const code_names[CRM_CODE_LAST] = {
    [CRM_OK] = "OK",
    [CRM_BAD_REQUEST] = "BAD_REQUEST",
    [CRM_UNAUTHENTICATED] = "UNAUTHENTICATED",
    [CRM_FORBIDDEN] = "FORBIDDEN",
    [CRM_NOT_FOUND] = "NOT_FOUND",
    [CRM_CONFLICT] = "CONFLICT",
    [CRM_VALIDATION] = "VALIDATION",
    [CRM_REJECTED] = "REJECTED",
    [CRM_TOO_LARGE] = "TOO_LARGE",
    [CRM_RATE_LIMITED] = "RATE_LIMITED",
    [CRM_UNAVAILABLE] = "UNAVAILABLE",
    [CRM_SCRIPT_ERROR] = "SCRIPT_ERROR",
    [CRM_INTERNAL] = "INTERNAL",
};

const char *crm_code_name(int code)
{
    if (code < 0 || code >= CRM_CODE_LAST)
        return "INTERNAL";
    return code_names[code];
}

int crm_err_set(crm_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

void crm_err_clear(crm_err *err)
{
    if (err) {
        err->code = CRM_OK;
        err->msg[0] = '\0';
    }
}
