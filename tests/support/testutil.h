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

/* In a child right after fork(), before exec: the child gets SIGKILL when
 * the test process dies (also when ctest's timeout kills it), so no crmd
 * outlives its test; exits at once if the parent is already gone. */
void crm_test_die_with_parent(pid_t parent);
/* Seconds on the monotonic clock. */
double crm_test_now_s(void);
/* The whole file as a NUL-terminated string (caller frees), or NULL. */
char *crm_test_read_file(const char *path);
/* Occurrences of needle in the file at path (0 when it cannot be read),
 * read in pieces: a data.mdb may be large. */
size_t crm_test_file_hits(const char *path, const char *needle);
/* A new temp folder holding a copy of every *.json of the schemas folder
 * src, with the roles of extra_roles (JSON text of a map: role -> grants)
 * added to roles.json.  Caller removes it with crm_tmpdir_remove.  A
 * problem is a bug in the test: reported, and the program aborts. */
char *crm_test_schemas_with_roles(const char *src, const char *extra_roles);

/* A new temp folder (tag) for `crmd serve --plugins` holding only the plugin
 * NAME: a link to $CRM_PLUGINS/NAME.so and, when config_json is not NULL,
 * NAME.json with that text.  Caller removes it with crm_tmpdir_remove.  A
 * problem is a bug in the test: reported, and the program aborts. */
char *crm_test_plugin_dir(const char *tag, const char *name, const char *config_json);
/* The text of the shipped script $CRM_SCRIPTS/name (caller frees); aborts
 * when it cannot be read. */
char *crm_test_script_text(const char *name);
/* Replaces the one occurrence of from in *text (malloc'd; replaced by a new
 * malloc'd string) with to; aborts when from is not there. */
void crm_test_replace_once(char **text, const char *from, const char *to);

/* Runs cmd through sh (add 2>&1 to capture stderr too): its exit code (-1
 * when it did not exit normally).  *out (may be NULL) gets everything it
 * printed on stdout, NUL-terminated, caller frees. */
int crm_test_run(const char *cmd, char **out);
/* Runs cmd (crm_test_run): the last line it printed on stdout, without its
 * newline (caller frees), or NULL when it printed nothing or did not exit 0. */
char *crm_test_last_line(const char *cmd);
/* A process's memory figure from /proc/PID/status in KiB (field such as
 * "RssAnon", "VmRSS", "VmHWM"), or -1. */
long crm_test_proc_kb(pid_t pid, const char *field);
/* Open file descriptors of a process (/proc/PID/fd), or -1. */
int crm_test_proc_fds(pid_t pid);

/* A growing text buffer (request bodies built piece by piece): start with
 * {0}; s is malloc'd and NUL-terminated, the caller frees it; aborts on OOM. */
typedef struct crm_test_buf {
    char *s;
    size_t n, cap;
} crm_test_buf;
void crm_test_buf_add(crm_test_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
