/* testutil -- small helpers every test file would otherwise write again. */
#ifndef CRM_TEST_UTIL_H
#define CRM_TEST_UTIL_H

#include <sys/types.h>

#include "bus.h"
#include "store.h"
#include "value.h"

/* Parses a JSON literal of a test (default limits).  A literal that does not
 * parse is a bug in the test: it is reported and the program aborts.
 * Caller owns the result. */
crm_value *crm_test_json(const char *json);

/* One write through crm_store_write1; json NULL for a delete.  *result (may
 * be NULL) gets the stored record, caller's; *err_out the error. */
int crm_test_write(crm_store *s, crm_op op, const char *coll, const char *id, const char *json,
                   crm_value **result, crm_err *err_out);
/* Runs bus rounds (after-hooks, due timers) until it has nothing to do now:
 * 0, or -1 when it did not settle in 500 rounds. */
int crm_test_pump(crm_store *s, crm_bus *b);
/* Records in coll (UINT64_MAX when it cannot be read). */
uint64_t crm_test_count(crm_store *s, const char *coll);

/* Seconds on the monotonic clock. */
double crm_test_now_s(void);
/* The whole file as a NUL-terminated string (caller frees), or NULL. */
char *crm_test_read_file(const char *path);
/* A new temp folder holding a copy of every *.json of the schemas folder
 * src, with the roles of extra_roles (JSON text of a map: role -> grants)
 * added to roles.json.  Caller removes it with crm_tmpdir_remove.  A
 * problem is a bug in the test: reported, and the program aborts. */
char *crm_test_schemas_with_roles(const char *src, const char *extra_roles);

/* A process's memory figure from /proc/PID/status in KiB (field such as
 * "RssAnon", "VmRSS", "VmHWM"), or -1. */
long crm_test_proc_kb(pid_t pid, const char *field);
/* Open file descriptors of a process (/proc/PID/fd), or -1. */
int crm_test_proc_fds(pid_t pid);

#endif
