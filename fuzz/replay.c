/*
 * replay -- runs a fuzz target over files without libFuzzer, so every
 * normal build (and build-asan) replays the committed corpus in ctest.
 *
 *   replay_<target> DIR|FILE...
 *
 * Directories are read one level deep in byte order of the names (files
 * starting with '.' are skipped).  A failing input aborts inside the
 * target, after its name was printed.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    uint8_t *buf;
    size_t n;
    if (!f || fstat(fileno(f), &st) != 0) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        if (f)
            fclose(f);
        return -1;
    }
    /* a copy of exactly the file's size, so ASan sees reads past the end */
    buf = malloc(st.st_size ? (size_t)st.st_size : 1);
    n = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
    fclose(f);
    if (!buf || n != (size_t)st.st_size) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        free(buf);
        return -1;
    }
    fprintf(stderr, "replay: %s (%zu bytes)\n", path, n);
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int skip_dot(const struct dirent *d)
{
    return d->d_name[0] != '.';
}

int main(int argc, char **argv)
{
    int files = 0, bad = 0;
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        struct stat st;
        struct dirent **list;
        int n;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: no such file %s\n", argv[i]);
            bad++;
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            bad += run_file(argv[i]) != 0;
            files++;
            continue;
        }
        if ((n = scandir(argv[i], &list, skip_dot, by_name)) < 0) {
            fprintf(stderr, "replay: cannot list %s\n", argv[i]);
            bad++;
            continue;
        }
        for (int j = 0; j < n; j++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], list[j]->d_name);
            bad += run_file(path) != 0;
            files++;
            free(list[j]);
        }
        free(list);
    }
    printf("replayed %d inputs, %d unreadable\n", files, bad);
    /* an empty corpus is a broken test, not a pass */
    return bad || files == 0 ? 1 : 0;
}
