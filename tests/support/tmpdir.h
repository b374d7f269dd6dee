/* tmpdir -- temporary folders for tests that use a real LMDB. */
#ifndef CRM_TEST_TMPDIR_H
#define CRM_TEST_TMPDIR_H

/* Creates a fresh folder under $TMPDIR (or /tmp); returns a malloc'd path
 * the caller frees with crm_tmpdir_remove. Aborts the test program on failure. */
char *crm_tmpdir_make(const char *tag);
/* Removes the folder and everything in it, then frees path. */
void crm_tmpdir_remove(char *path);
/* Writes text to dir/name; aborts on failure. */
void crm_tmpdir_write(const char *dir, const char *name, const char *text);

#endif
