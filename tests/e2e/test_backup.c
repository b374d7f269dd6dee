/*
 * test_backup -- `crmd backup` and `crmd restore` end to end:
 *  - a backup taken while two writers storm a real server (no pause)
 *    holds every write acknowledged before the backup started;
 *  - restore is refused while the server holds the data folder, and the
 *    served data is untouched;
 *  - restore into a new folder gives a store a real server serves: the
 *    token made on the original authenticates (aux tables came along),
 *    every acknowledged record is there, new writes succeed;
 *  - a backup whose manifest does not match its data is refused and the
 *    data folder is left as it was; a good restore over existing data
 *    keeps the old data in DATA.pre-restore-*;
 *  - a truncated backup (4 KiB short, or half) is refused with a message
 *    (it was a SIGBUS), the data folder left as it was;
 *  - a second backup to the same path is refused.
 */
#include <dirent.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "tmpdir.h"
#include "testutil.h"
#include "wsclient.h"

#define WRITERS 2
#define MAX_IDS 200000

static crmd_proc p, p2; /* stopped by the teardown when an assertion failed */

/* Acknowledged creates, in the order their acks arrived (any writer). */
static struct {
    pthread_mutex_t lock;
    char (*ids)[48];
    size_t n;
} acked = {PTHREAD_MUTEX_INITIALIZER, NULL, 0};

static atomic_int stop_writers;
static const char *token;

static size_t acked_count(void)
{
    size_t n;
    pthread_mutex_lock(&acked.lock);
    n = acked.n;
    pthread_mutex_unlock(&acked.lock);
    return n;
}

/* Creates contacts one after another (each waits for its ack) until told
 * to stop; records the id of every acknowledged create. */
static void *writer(void *arg)
{
    int w = (int)(intptr_t)arg;
    ws_client c;
    long long ref = 0;
    if (ws_connect(&c, p.port, "crm.v1.json", NULL, NULL) != 0 || ws_auth(&c, token, 5000) != 0)
        return (void *)1;
    while (!atomic_load(&stop_writers)) {
        char req[512];
        crm_value *r;
        const crm_value *res;
        ++ref;
        snprintf(req, sizeof req,
                 "{\"ref\": %lld, \"op\": \"create\", \"collection\": \"contacts\", \"record\": "
                 "{\"name\": \"storm %d-%lld\", \"email\": \"w%d-%lld@storm.example\"}}",
                 ref, w, ref, w, ref);
        if (ws_send_json(&c, req) != 0 || !(r = ws_reply(&c, ref, 20000, NULL))) {
            ws_close(&c);
            return (void *)1;
        }
        res = crm_map_get(r, "result");
        if (strcmp(ws_code(r), "OK") == 0 && res && crm_map_str(res, "id", NULL)) {
            pthread_mutex_lock(&acked.lock);
            if (acked.n < MAX_IDS)
                snprintf(acked.ids[acked.n++], 48, "%s", crm_map_str(res, "id", ""));
            pthread_mutex_unlock(&acked.lock);
        }
        crm_value_free(r);
    }
    ws_close(&c);
    return NULL;
}

static int teardown(void **state)
{
    (void)state;
    if (p.pid > 0)
        crmd_stop(&p);
    if (p2.pid > 0)
        crmd_stop(&p2);
    return 0;
}

static int count_prefixed(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    assert_non_null(d);
    while ((e = readdir(d)))
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

static void backup_under_load_then_restore(void **state)
{
    const char *bin = getenv("CRMD_BIN"), *schemas = getenv("CRM_SCHEMAS");
    char *work, cmd[16384], bk[1024], restored[1024], bad[1024], *out;
    pthread_t th[WRITERS];
    size_t before, after;
    ws_client c;
    int rc;
    (void)state;
    assert_non_null(bin);
    assert_non_null(schemas);
    assert_non_null(acked.ids = calloc(MAX_IDS, sizeof *acked.ids));
    work = crm_tmpdir_make("backup");
    snprintf(bk, sizeof bk, "%s/bk", work);
    snprintf(restored, sizeof restored, "%s/restored", work);
    snprintf(bad, sizeof bad, "%s/bad", work);

    assert_int_equal(crmd_start(&p, bin, schemas, NULL), 0);
    assert_non_null(token = crmd_token(&p, "admin"));
    for (int i = 0; i < WRITERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, writer, (void *)(intptr_t)i), 0);
    while (acked_count() < 1500)
        usleep(10000);

    /* the backup, while both writers keep going */
    before = acked_count();
    snprintf(cmd, sizeof cmd, "'%s' backup '%s' --data '%s' 2>&1", bin, bk, p.data);
    rc = crm_test_run(cmd, &out);
    fprintf(stderr, "%s", out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "crmd backup: "));
    free(out);
    after = acked_count();
    while (acked_count() < after + 50) /* the server kept serving */
        usleep(10000);
    atomic_store(&stop_writers, 1);
    for (int i = 0; i < WRITERS; i++) {
        void *ret;
        pthread_join(th[i], &ret);
        assert_null(ret);
    }
    fprintf(stderr, "%zu acked before the backup, %zu when it ended, %zu in all\n", before, after,
            acked.n);

    /* a second backup to the same path is refused */
    rc = crm_test_run(cmd, &out);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "exists"));
    free(out);

    /* restore is refused while the server holds its folder */
    snprintf(cmd, sizeof cmd, "'%s' restore '%s' --data '%s' --schemas '%s' 2>&1", bin, bk,
             p.data, schemas);
    rc = crm_test_run(cmd, &out);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "is in use by crmd serve"));
    free(out);
    assert_int_equal(ws_connect(&c, p.port, "crm.v1.json", NULL, NULL), 0);
    assert_int_equal(ws_auth(&c, token, 5000), 0);
    {
        crm_value *r = ws_request(&c, 5000, NULL,
                                  "{\"op\": \"get\", \"collection\": \"contacts\", \"id\": \"%s\"}",
                                  acked.ids[acked.n - 1]);
        assert_non_null(r);
        assert_string_equal(ws_code(r), "OK"); /* the latest write is still served */
        crm_value_free(r);
    }
    ws_close(&c);

    /* restore into a folder that does not exist yet */
    snprintf(cmd, sizeof cmd, "'%s' restore '%s' --data '%s' --schemas '%s' 2>&1", bin, bk,
             restored, schemas);
    rc = crm_test_run(cmd, &out);
    fprintf(stderr, "%s", out);
    assert_int_equal(rc, 0);
    free(out);
    assert_int_equal(count_prefixed(work, "restored.pre-restore-"), 0); /* nothing replaced */

    assert_int_equal(crmd_start(&p2, bin, schemas, restored), 0);
    assert_int_equal(ws_connect(&c, p2.port, "crm.v1.json", NULL, NULL), 0);
    assert_int_equal(ws_auth(&c, token, 5000), 0); /* tokens came along */
    for (size_t i = 0; i < before; i++) {
        crm_value *r = ws_request(&c, 5000, NULL,
                                  "{\"op\": \"get\", \"collection\": \"contacts\", \"id\": \"%s\"}",
                                  acked.ids[i]);
        assert_non_null(r);
        if (strcmp(ws_code(r), "OK") != 0)
            fprintf(stderr, "acknowledged %s (%zu of %zu) is missing: %s\n", acked.ids[i], i,
                    before, ws_message(r));
        assert_string_equal(ws_code(r), "OK");
        crm_value_free(r);
    }
    {
        crm_value *r = ws_request(&c, 5000, NULL,
                                  "{\"op\": \"aggregate\", \"collection\": \"contacts\", "
                                  "\"metrics\": [\"count\"]}");
        const crm_value *g = crm_map_get(crm_map_get(r, "result"), "groups");
        long long n;
        assert_non_null(g);
        n = crm_map_int(g->u.arr.items[0], "count", -1);
        assert_true(n >= (long long)before && n <= (long long)acked.n);
        crm_value_free(r);
        r = ws_request(&c, 5000, NULL,
                       "{\"op\": \"create\", \"collection\": \"contacts\", \"record\": "
                       "{\"name\": \"after restore\", \"email\": \"after@restore.example\"}}");
        assert_string_equal(ws_code(r), "OK"); /* the restored store takes writes */
        crm_value_free(r);
    }
    ws_close(&c);
    assert_int_equal(crmd_stop_keep(&p2), 0);

    /* a backup whose manifest disagrees with its data: refused, data kept */
    snprintf(cmd, sizeof cmd,
             "cp -r '%s' '%s' && sed -i 's/\"c:contacts\":[0-9]*/\"c:contacts\":1/' "
             "'%s/crmd-backup.json'",
             bk, bad, bad);
    assert_int_equal(crm_test_run(cmd, NULL), 0);
    snprintf(cmd, sizeof cmd, "'%s' restore '%s' --data '%s' --schemas '%s' 2>&1", bin, bad,
             restored, schemas);
    rc = crm_test_run(cmd, &out);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "manifest"));
    assert_non_null(strstr(out, "is unchanged"));
    free(out);
    assert_int_equal(count_prefixed(work, "restored.pre-restore-"), 0);
    assert_int_equal(count_prefixed(work, "restored.restore-"), 0); /* staging cleaned up */

    /* a truncated copy (4 KiB short, and half its size): refused with a
     * message, not a SIGBUS from a page past the end of the mapped file */
    for (int cut = 0; cut < 2; cut++) {
        char trunc[1100], path[1200];
        struct stat st;
        snprintf(trunc, sizeof trunc, "%s/trunc%d", work, cut);
        snprintf(path, sizeof path, "%s/data.mdb", trunc);
        snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", bk, trunc);
        assert_int_equal(crm_test_run(cmd, NULL), 0);
        assert_int_equal(stat(path, &st), 0);
        assert_true(st.st_size > 8 * 4096);
        assert_int_equal(truncate(path, cut == 0 ? st.st_size - 4096 : st.st_size / 2), 0);
        snprintf(cmd, sizeof cmd, "'%s' restore '%s' --data '%s' --schemas '%s' 2>&1", bin, trunc,
                 restored, schemas);
        rc = crm_test_run(cmd, &out);
        fprintf(stderr, "%s", out);
        assert_int_equal(rc, 1);
        assert_non_null(strstr(out, "is truncated"));
        assert_non_null(strstr(out, "is unchanged"));
        free(out);
    }
    assert_int_equal(count_prefixed(work, "restored.pre-restore-"), 0);
    assert_int_equal(count_prefixed(work, "restored.restore-"), 0);

    /* a good restore over existing data keeps the old data beside it */
    snprintf(cmd, sizeof cmd, "'%s' restore '%s' --data '%s' --schemas '%s' 2>&1", bin, bk,
             restored, schemas);
    rc = crm_test_run(cmd, &out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "kept in"));
    free(out);
    assert_int_equal(count_prefixed(work, "restored.pre-restore-"), 1);

    assert_int_equal(crmd_stop(&p), 0);
    crm_tmpdir_remove(work);
    free((char *)token);
    free(acked.ids);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(backup_under_load_then_restore, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
