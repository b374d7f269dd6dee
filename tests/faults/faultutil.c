/* faultutil -- see faultutil.h. */
#include "faultutil.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codec.h"
#include "schema.h"
#include "store.h"

int fault_fail(const char *name, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: FAIL: ", name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

const char *fault_schemas(void)
{
    const char *s = getenv("CRM_SCHEMAS");
    return s ? s : "../schemas";
}

const char *fault_crmd(void)
{
    const char *b = getenv("CRMD_BIN");
    if (!b) {
        fprintf(stderr, "CRMD_BIN is not set\n");
        exit(2);
    }
    return b;
}

void fault_ledger_free(fault_ledger *l)
{
    free(l->st);
    memset(l, 0, sizeof *l);
}

void fault_id(const char *tag, int i, char *id, size_t cap)
{
    snprintf(id, cap, "c_%s%07d", tag, i);
}

/* A text frame with a zero mask key: the payload goes out as it is, so a
 * trace of the server's reads shows the request (RFC 6455 allows any key). */
static int send_plain(ws_client *c, const char *text, size_t len)
{
    uint8_t hdr[14];
    size_t h = 0;
    hdr[h++] = 0x81;
    if (len < 126) {
        hdr[h++] = (uint8_t)(0x80 | len);
    } else if (len < 65536) {
        hdr[h++] = 0x80 | 126;
        hdr[h++] = (uint8_t)(len >> 8);
        hdr[h++] = (uint8_t)len;
    } else {
        hdr[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            hdr[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    memset(hdr + h, 0, 4);
    h += 4;
    return ws_send_raw(c, hdr, h) || ws_send_raw(c, text, len) ? -1 : 0;
}

static void ledger_put(fault_ledger *l, int i, int st)
{
    l->st[i] = (signed char)st;
    if (st == FAULT_OK) {
        l->ok++;
        if (i > l->last_ok)
            l->last_ok = i;
    } else if (st == FAULT_UNAVAILABLE) {
        l->unavailable++;
        if (l->first_unavailable < 0 || i < l->first_unavailable)
            l->first_unavailable = i;
    } else {
        l->other++;
    }
}

int fault_storm(ws_client *c, const char *tag, fault_ledger *l, int count, int window, int pad,
                int plain, int stop_after_unavailable, int timeout_ms)
{
    int base = l->n, sent = 0, answered = 0, unavail = 0, send_failed = 0;
    char *body = malloc((size_t)pad + 512), *padding = malloc((size_t)pad + 1);
    if (!body || !padding)
        abort();
    memset(padding, 'x', (size_t)pad);
    padding[pad] = 0;
    if (!l->st) {
        l->last_ok = l->first_unavailable = -1;
    }
    if (l->n + count > l->cap) {
        l->cap = l->n + count;
        if (!(l->st = realloc(l->st, (size_t)l->cap)))
            abort();
    }
    memset(l->st + l->n, FAULT_NONE, (size_t)count);
    while (answered < count) {
        while (!send_failed && sent < count && sent - answered < window &&
               !(stop_after_unavailable > 0 && unavail >= stop_after_unavailable)) {
            char id[64];
            int i = base + sent;
            fault_id(tag, i, id, sizeof id);
            int len = snprintf(body, (size_t)pad + 512,
                               "{\"op\": \"create\", \"ref\": %d, \"collection\": \"contacts\", "
                               "\"record\": {\"id\": \"%s\", \"name\": \"n%s\", \"street\": \"%.200s\", "
                               "\"job_title\": \"%.100s\"}}",
                               i + 1, id, id, padding, pad > 200 ? padding + 200 : "");
            if ((plain ? send_plain(c, body, (size_t)len) : ws_send_json(c, body)) != 0) {
                send_failed = 1; /* closed: still read what the server sent before */
                break;
            }
            sent++;
            l->n = base + sent;
        }
        if (answered == sent)
            break; /* stopped sending */
        int close_code = 0;
        crm_value *r = ws_recv(c, timeout_ms, &close_code);
        if (!r) {
            fprintf(stderr, "storm: %s after %d answers (close code %d)\n",
                    close_code ? "closed" : "no answer", answered, close_code);
            break;
        }
        const crm_value *ref = crm_map_get(r, "ref");
        if (ref && ref->type == CRM_T_INT && ref->u.i >= base + 1 && ref->u.i <= base + sent) {
            const char *code = ws_code(r);
            int st = strcmp(code, "OK") == 0            ? FAULT_OK
                     : strcmp(code, "UNAVAILABLE") == 0 ? FAULT_UNAVAILABLE
                                                        : FAULT_OTHER;
            if (st == FAULT_OTHER && l->other < 5)
                fprintf(stderr, "storm: write %lld: %s %s\n", (long long)ref->u.i - 1, code,
                        ws_message(r));
            if (st == FAULT_UNAVAILABLE && !l->unavailable)
                snprintf(l->unavailable_msg, sizeof l->unavailable_msg, "%s", ws_message(r));
            if (st == FAULT_UNAVAILABLE)
                unavail++;
            ledger_put(l, (int)ref->u.i - 1, st);
            answered++;
        }
        crm_value_free(r);
    }
    free(body);
    free(padding);
    return answered;
}

int fault_connect(ws_client *c, const crmd_proc *p)
{
    char *tok = crmd_token(p, "admin");
    int rc = -1;
    if (tok && ws_connect(c, p->port, NULL, NULL, NULL) == 0) {
        rc = ws_auth(c, tok, 10000);
        if (rc != 0)
            ws_close(c);
    }
    free(tok);
    return rc;
}

int fault_check_acked(const crmd_proc *p, const char *tag, const fault_ledger *l,
                      int *absent_unavail)
{
    ws_client c;
    int bad = 0, absent = 0;
    if (fault_connect(&c, p) != 0)
        return l->ok ? l->ok : 1;
    for (int i = 0; i < l->n; i++) {
        char id[64], name[80];
        crm_value *r;
        if (l->st[i] != FAULT_OK && l->st[i] != FAULT_UNAVAILABLE)
            continue;
        fault_id(tag, i, id, sizeof id);
        snprintf(name, sizeof name, "n%s", id);
        r = ws_request(&c, 10000, NULL,
                       "{\"op\": \"get\", \"collection\": \"contacts\", \"id\": \"%s\"}", id);
        int found = r && strcmp(ws_code(r), "OK") == 0;
        const crm_value *res = r ? crm_map_get(r, "result") : NULL;
        if (l->st[i] == FAULT_OK &&
            (!found || strcmp(crm_map_str(res, "name", ""), name) != 0)) {
            if (bad < 5)
                fprintf(stderr, "acked %s: %s\n", id, r ? ws_code(r) : "no answer");
            bad++;
        }
        if (l->st[i] == FAULT_UNAVAILABLE && r && strcmp(ws_code(r), "NOT_FOUND") == 0)
            absent++;
        crm_value_free(r);
    }
    ws_close(&c);
    if (absent_unavail)
        *absent_unavail = absent;
    return bad;
}

pid_t fault_reader_start(const char *data, int *cmd_out)
{
    int ready[2], cmd[2];
    char b;
    pid_t pid;
    if (pipe(ready) || pipe(cmd))
        return -1;
    if ((pid = fork()) == 0) {
        crm_schema *sc;
        crm_store *s;
        crm_txn *t;
        crm_err err;
        uint64_t n;
        close(ready[0]);
        close(cmd[1]);
        if (crm_schema_load_dir(fault_schemas(), &sc, &err) != CRM_OK ||
            crm_store_open(data, sc, NULL, &s, &err) != CRM_OK ||
            crm_store_begin_read(s, &t, &err) != CRM_OK)
            _exit(2);
        (void)!write(ready[1], "r", 1);
        if (read(cmd[0], &b, 1) != 1)
            _exit(3);
        int rc = crm_txn_count(t, "contacts", &n, &err) == CRM_OK && n > 0 ? 0 : 4;
        crm_txn_end(t);
        crm_store_close(s); /* frees its reader slot (a killed one does not) */
        crm_schema_free(sc);
        _exit(rc);
    }
    close(ready[1]);
    close(cmd[0]);
    if (read(ready[0], &b, 1) != 1)
        pid = -1;
    close(ready[0]);
    *cmd_out = cmd[1];
    return pid;
}

int fault_reader_finish(pid_t pid, int cmd)
{
    int st = -1;
    (void)!write(cmd, "g", 1);
    close(cmd);
    if (waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* The journal is fault_shim's (its header comment): records of u64 offset,
 * u64 length of the old bytes, u64 file size before the write, then the old
 * bytes. */
long fault_journal_undo(const char *journal, const char *mdb, long *bytes)
{
    char *j = NULL;
    size_t n = 0, off = 0;
    long count = 0;
    size_t *at = NULL;
    uint64_t synced_size = 0;
    int fd;
    FILE *f = fopen(journal, "r");
    struct stat st;
    *bytes = 0;
    if (!f)
        return 0; /* nothing written since the last sync */
    if (fstat(fileno(f), &st) != 0 || !(j = malloc((size_t)st.st_size + 1)) ||
        fread(j, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
        fclose(f);
        free(j);
        return -1;
    }
    fclose(f);
    n = (size_t)st.st_size;
    /* index the records, then undo from the last */
    while (off + 24 <= n) {
        uint64_t h[3];
        memcpy(h, j + off, sizeof h);
        if (off + 24 + h[1] > n)
            break; /* killed while appending: its write never happened */
        if (!(at = realloc(at, (size_t)(count + 1) * sizeof *at)))
            abort();
        at[count++] = off;
        if (count == 1)
            synced_size = h[2];
        off += 24 + h[1];
    }
    if ((fd = open(mdb, O_WRONLY)) < 0) {
        free(j);
        free(at);
        return -1;
    }
    for (long i = count - 1; i >= 0; i--) {
        uint64_t h[3];
        memcpy(h, j + at[i], sizeof h);
        if (h[1] && pwrite(fd, j + at[i] + 24, h[1], (off_t)h[0]) != (ssize_t)h[1]) {
            count = -1;
            break;
        }
        *bytes += (long)h[1];
    }
    if (count > 0 && ftruncate(fd, (off_t)synced_size) != 0)
        count = -1;
    close(fd);
    free(j);
    free(at);
    return count;
}

int fault_start_journaled(crmd_proc *p, const char *shim, const char *journal, const char *data)
{
    int rc;
    setenv("LD_PRELOAD", shim, 1);
    setenv("CRM_FAULT_JOURNAL", journal, 1);
    rc = crmd_start(p, fault_crmd(), fault_schemas(), data);
    unsetenv("LD_PRELOAD");
    unsetenv("CRM_FAULT_JOURNAL");
    return rc;
}
