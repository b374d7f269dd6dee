/* tmpdir -- temporary folders for tests that use a real LMDB. */
#include "tmpdir.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *crm_tmpdir_make(const char *tag)
{
    const char *base = getenv("TMPDIR");
    char *path = NULL;
    if (!base || !*base)
        base = "/tmp";
    if (asprintf(&path, "%s/crmd-%s-XXXXXX", base, tag) < 0 || !mkdtemp(path)) {
        perror("crm_tmpdir_make");
        abort();
    }
    return path;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

void crm_tmpdir_remove(char *path)
{
    if (!path)
        return;
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(path);
}

void crm_tmpdir_write(const char *dir, const char *name, const char *text)
{
    char path[4096];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        abort();
    }
}
